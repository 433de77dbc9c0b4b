/* airound.h: the NPC AI round, the part of the daemon determinism rests on.
 *
 * A round is dispatched on the frame of tick T (every snap_every = P
 * ticks): K chunks of the frame's NPCs, each run by sp_ai_run_chunk() on a
 * worker (HIGH priority in the pool). A chunk's SpaceMessages (ShipMovement,
 * WeaponFired, ResourceMined; stamped tick = T, origin = chunk, seq in NPC
 * row order) go to the bus's main inbox. K is a function of the frame's NPC
 * count (never of the worker count) and chunks are contiguous runs of NPC
 * rows, so the (origin, seq) order is NPC row order whatever K is.
 *
 * Application tick (defined, not timing-dependent). The round of tick T is
 * applied at the start of the tick whose pre-step world tick is T + P - 1,
 * i.e. just before the step that produces tick T + P, and just before the
 * next round is dispatched; so at most one round is in flight. Its messages
 * are sorted by sp_msg_order_cmp() and applied in that order. If the round
 * is not complete by then (frame build + chunks), that step does not run
 * yet (a "stall"), but the loop never blocks: sp_airound_step_ready() says
 * false and the loop keeps serving sockets; when the round's last job is
 * done, on_ready is called (on the loop) to run the step. Meanwhile the
 * loop may help: sp_airound_help() runs one queued HIGH job per call. The
 * world after any tick is thus the same with 1 or N workers and under any
 * scheduling (tests/net/check_daemon: --workers 1 vs 2, same hash).
 *
 * Completion is counted on the loop thread only: the round is complete when
 * the build's done and every chunk's done have run (each done follows its
 * work, and the pool's done queue publishes what work wrote; a chunk pushed
 * its messages to the inbox before its work returned).
 *
 * Threads: everything on the loop thread, except sp_airound_dispatch (the
 * frame build job, any thread). */
#ifndef SP_DAEMON_AIROUND_H
#define SP_DAEMON_AIROUND_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/pool.h"
#include "daemon/round.h"
#include "daemon/stats.h"
#include "sim/world.h"
#include "spacesim/bus.h"
#include "spacesim/msg.h"

typedef struct sp_airound {
    sp_pool_t *pool;
    sp_bus_t *bus;              /* main inbox: the chunks' SpaceMessages */
    sp_dstats_t *st;
    pthread_t loop_thread;
    uint64_t period;            /* P = snap_every */
    void (*on_ready)(void *ctx); /* the round a step waits for is complete */
    void *ctx;
    /* The round in flight (loop thread). */
    sp_round_t *round;          /* NULL when none */
    uint64_t tick;              /* its frame tick T */
    uint64_t apply_at;          /* pre-step world tick at which it is applied */
    bool build_done;            /* the frame build's done ran */
    uint32_t nchunks;           /* chunks submitted (written by the build's work,
                                 * read on the loop after its done) */
    uint32_t chunks_done;
    sp_msg_t *msgs, *tmp;       /* the round's messages, collected from the inbox */
    size_t n, cap, tmp_cap;
    /* A cluster daemon's: fire an NPC's shot at a target this world does
     * not hold (a ghost); NULL: such intents fail as stale. Loop thread. */
    void (*fire_ghost)(void *ctx, uint64_t shooter, uint64_t target);
    /* ... and mine for an NPC miner whose intent found no asteroid here. */
    void (*mine_ghost)(void *ctx, uint64_t ship, int resource);
    void *fire_ghost_ctx;       /* both hooks' ctx */
} sp_airound_t;

void sp_airound_init(sp_airound_t *ar, sp_pool_t *pool, sp_bus_t *bus, sp_dstats_t *st, uint64_t period,
                     void (*on_ready)(void *ctx), void *ctx);
void sp_airound_destroy(sp_airound_t *ar);

/* The round of r (retained) starts now: applied at r->tick + period - 1.
 * The previous one must have been applied. Loop thread. */
void sp_airound_begin(sp_airound_t *ar, sp_round_t *r);
/* From the frame build's work (any thread), r->frame set: submit the chunks
 * (a full queue runs them right here). */
void sp_airound_dispatch(sp_airound_t *ar, sp_round_t *r);
/* The frame build's done ran (loop). */
void sp_airound_build_done(sp_airound_t *ar, sp_round_t *r);

/* May the step from world tick `tick` run now? False when the round due
 * before it is not complete; also makes room in the inbox. Never blocks. */
bool sp_airound_step_ready(sp_airound_t *ar, uint64_t tick);
/* While a step waits: run at most one queued job of the round here. */
bool sp_airound_help(sp_airound_t *ar, uint64_t tick);
/* Apply the round if `tick` (pre-step world tick) is its application tick.
 * Call only when sp_airound_step_ready() is true. Before sp_world_step(). */
void sp_airound_apply_due(sp_airound_t *ar, sp_world_t *w);
/* Apply the round in flight now, whatever the tick (waits for it if it is
 * not complete: only when the tick numbering jumped, never in practice). */
void sp_airound_apply_now(sp_airound_t *ar, sp_world_t *w);
/* Move the inbox's messages to the round's list (the bus notify). */
void sp_airound_collect(sp_airound_t *ar);

#endif /* SP_DAEMON_AIROUND_H */
