/* cluster/cluster.h: one world over several spacesimd processes, through
 * NATS (issue 10: cells, membership, fencing, hand-off exactly once, one
 * clock, checkpoints, ghosts: the entities near a border sent to the
 * neighbour every step, which fire, mining, collisions and NPCs act on).
 * The design, the subjects, streams and buckets, and what survives which
 * kill are in docs/ARCHITECTURE.md, "Cluster"; this header is the contract
 * between the daemon and this module.
 *
 * Threads. nats.c never runs on the simulation loop (its reconnects block
 * the thread that drives them for a whole connect timeout). The module owns
 * one NATS thread of its own (plus nats.c's internal threads); everything it
 * says to the loop goes through an SPSC ring (NATS thread -> loop) and a
 * uv_async_send, everything the loop says to it through a second SPSC ring
 * (loop -> NATS thread), which the NATS thread polls between its blocking
 * calls, and a third (NATS thread -> loop) carries the numbers of the
 * departures the stream stored (the outbox, see the checkpoints below). The
 * loop never calls nats.c; the NATS thread never touches the world. Items
 * in the rings are malloc'd and owned by whichever side popped them.
 *
 * Life cycle (main thread, then loop thread):
 *   sp_cluster_open()      start-up, blocking: connect, streams, buckets,
 *                          incarnation, membership, claim unowned cells,
 *                          hear the peers' tick (sp_cluster_join_tick)
 *   world: new (sp_world_set_region, sp_cluster_tally around populate) or
 *          loaded (sp_cluster_restore from the checkpoint's annex)
 *   sp_cluster_spawn_test_ships()  (tests) ballistic ships on lanes
 *   sp_cluster_start()     the NATS thread and the loop's async handle
 *   per tick: sp_cluster_apply(); a due step waits while
 *             sp_cluster_waits() (the tick frontier); if
 *             !sp_cluster_frozen(): step, then sp_cluster_after_step()
 *   checkpoints: sp_cluster_checkpoint_annex() between steps
 *   sp_cluster_stop()      join the thread, leave the membership, close
 *                          the handle (shutdown)
 *   sp_cluster_free()      after the loop ended */
#ifndef SP_CLUSTER_CLUSTER_H
#define SP_CLUSTER_CLUSTER_H

#include <stdint.h>
#include <uv.h>

#include "cluster/cells.h"
#include "sim/frame.h"
#include "sim/handoff.h"
#include "sim/world.h"

typedef struct sp_cluster_conf {
    const char *url;     /* nats://host:port (copied) */
    uint32_t node;       /* this daemon's node, 0..SP_WORLD_MAX_NODES-1: its id space and its stream */
    sp_cells_t cells;    /* the grid; every daemon of a cluster must give the same one */
    double ttl_secs;     /* membership TTL, seconds (default 5): a daemon that could not refresh its
                          * key for 0.8 * ttl fences itself (stops writing) */
    const char *journal; /* tests: append ownership changes to this file (see docs), or NULL */
    uint64_t pause_at;   /* tests: pause (as spacesim-cells pause) after the step to this tick; 0 = never */
    int start_paused;    /* tests: start paused (the operator resumes; the frontier still announces) */
    float ghost_band;      /* border band of ghosts, world units; < 0: the weapon range + 10; 0: none */
    uint64_t test_hold_at; /* tests: from the step to this tick on, the NATS thread publishes no
                            * hand-off (they stay in the outbox); 0 = off */
    uint64_t test_refuse; /* tests: the first N hand-offs in (not returns) fail as if the world were
                           * full (SP_ELIMIT: sent back) and out of memory (SP_ENOMEM: redelivered)
                           * in turn; 0 = off */
} sp_cluster_conf_t;

typedef struct sp_cluster sp_cluster_t;

/* Connect and set up (main thread, before the loop runs; blocks for at most
 * a few NATS timeouts). Creates what is missing (the hand-off stream, this
 * node's durable consumer, the three KV buckets), takes the next
 * incarnation of this node, registers the membership key, creates the
 * ownership keys of cells nobody owns (KV create: a CAS) and reads the
 * ownership. Returns 0 and *out, or SP_EIO / SP_ENOMEM after logging why. */
int sp_cluster_open(const sp_cluster_conf_t *conf, sp_cluster_t **out);

/* This process's incarnation of its node (1 for the first start of a node
 * in this NATS store, then 2, ...). The world's id floor is derived from it:
 * incarnation k mints ids from counter (k - 1) << 30. */
uint64_t sp_cluster_incarnation(const sp_cluster_t *c);

/* The tick the world must start from: the highest tick a live peer
 * announced while sp_cluster_open listened (it waits up to 0.5 s to hear
 * each member), 0 when there is none. A daemon that joins a running
 * cluster, or a restarted one, steps in step with its peers from there
 * (the tick frontier, sp_cluster_waits, waits for the lowest tick). */
uint64_t sp_cluster_join_tick(const sp_cluster_t *c);

/* 1 if (x, y) lies in a cell this daemon owns, as the loop last heard:
 * the world's region (sp_world_set_region; ctx is the sp_cluster_t), so a
 * daemon populates and respawns only its own cells. Loop thread, or the
 * main thread before sp_cluster_start. O(1). */
int sp_cluster_region(void *ctx, float x, float y);

/* Cells this daemon owns, and the grid's cell count, as the loop last
 * heard. O(cells). */
uint32_t sp_cluster_cells_owned(const sp_cluster_t *c, uint32_t *ncells);

/* The demo world's share (main thread, then loop thread). While a tally is
 * on (what: 0 asteroids, 1 NPC ships; -1 off), sp_cluster_region counts
 * every point it is asked about per cell: the daemon turns it on around
 * sp_world_populate_demo, which asks for every draw, kept or not, so every
 * daemon of a cluster counts the same draws. sp_cluster_demo_share then
 * sums the counts over the cells this daemon owns now: its respawn targets,
 * which add up to the demo's numbers over the cluster. 0 and the sums, or
 * SP_ENOENT when nothing was tallied (a world loaded from a checkpoint).
 * O(cells). */
void sp_cluster_tally(sp_cluster_t *c, int what);
int sp_cluster_demo_share(const sp_cluster_t *c, uint64_t *asteroids, uint64_t *npcs);

/* Tests (--cluster-test-ships): spawn n ships that never collide, flying
 * ballistic along x or y on lanes 5 units apart, speeds 100-200 units/s,
 * from seed. The world must have ship_max_accel 0. Journaled as spawns.
 * Returns 0 or the world's error. Main thread, before sp_cluster_start. */
int sp_cluster_spawn_test_ships(sp_cluster_t *c, sp_world_t *w, uint32_t n, uint64_t seed);

/* Start the NATS thread and the async handle on loop (the loop thread's).
 * w is the world the loop owns. Returns 0 or SP_EAGAIN / SP_EIO. */
int sp_cluster_start(sp_cluster_t *c, uv_loop_t *loop, sp_world_t *w);

/* Loop thread: apply what came from NATS: imports (hand-offs in, judged by
 * epoch), ownership changes, fencing, control requests (dump, pause). Also
 * run from the async handle. Never blocks; O(items). */
void sp_cluster_apply(sp_cluster_t *c);

/* Loop thread: 1 while the world must not step: fenced (membership lapsed)
 * or paused by an operator (spacesim-cells pause, for audits). A paused
 * daemon that holds a hand-off stamped with a later tick is not frozen
 * until its world reached that tick (a peer was one tick ahead when the
 * pause reached it), so a paused cluster rests with nothing held early. */
int sp_cluster_frozen(const sp_cluster_t *c);

/* Loop thread: 1 while the tick frontier forbids the step from the
 * world's current tick (a live peer has not announced that tick yet, or a
 * hand-off its announcements cover has not arrived). Counts the wait
 * (fwaits, wall time) from the first 1 to the next 0. 0 while frozen (that
 * is no wait for the frontier, and ends one). Never blocks; O(early
 * imports). */
int sp_cluster_waits(sp_cluster_t *c);

/* Loop thread: fn(ctx) is called from sp_cluster_apply when a step that
 * waited for the frontier may run (the daemon restarts its tick then
 * instead of at the next tick period). */
void sp_cluster_on_ready(sp_cluster_t *c, void (*fn)(void *ctx), void *ctx);

/* Loop thread: steps that waited for the frontier, the wall time they
 * waited in total and the longest wait, nanoseconds. */
void sp_cluster_frontier_stats(const sp_cluster_t *c, uint64_t *waits, uint64_t *wait_ns, uint64_t *wait_max_ns);

/* Loop thread, after a step: every entity whose position lies in a cell
 * another daemon owns is exported, given epoch + 1, departed and queued to
 * the NATS thread for publishing. Entities in a cell nobody owns stay.
 * O(entities) (a scan of x/y) + O(leavers). */
void sp_cluster_after_step(sp_cluster_t *c);

/* Ghosts (cluster.c, "ghosts"): the newest copy a neighbour sent of its
 * entity `id` near the border (at most a few ticks old): 0 with *out and
 * the neighbour's node, or SP_ENOENT. Loop. */
int sp_cluster_ghost(const sp_cluster_t *c, uint64_t id, sp_remote_target_t *out, uint32_t *node);
/* Send an action's effect on a ghost to its node: what 1 = damage (value hp,
 * by the shooter), 2 = deplete (value amount, by the miner). Core NATS, at
 * most once. 0, SP_EAGAIN (the ring toward NATS is full, or fenced: not
 * sent), SP_ENOMEM. Loop. */
/* Fire ship `shooter` of this world at `target`, another daemon's entity
 * known here as a ghost: sp_world_fire_remote, then the damage to the
 * ghost's daemon. Returns as sp_world_fire (SP_ENOENT: no such ghost). Loop. */
int sp_cluster_fire_at_ghost(sp_cluster_t *c, uint64_t shooter, uint64_t target, sp_fire_result_t *out);
/* The same for mining an asteroid known as a ghost. */
int sp_cluster_mine_ghost(sp_cluster_t *c, uint64_t ship, uint64_t asteroid, sp_mine_result_t *out);
/* An NPC miner's intent that found no asteroid here: mine the nearest ghost
 * asteroid of that resource within mining range, if any. Returns as
 * sp_world_mine (SP_ERANGE: none in range). Loop. */
int sp_cluster_mine_nearest_ghost(sp_cluster_t *c, uint64_t ship, int resource);
/* A frame of the ghosts, ships and asteroids (positions extrapolated to the
 * world's tick), for the NPCs' AI; one reference; NULL when there are none
 * (or OOM). Loop. */
sp_frame_t *sp_cluster_ghost_frame(sp_cluster_t *c);
#define SP_CLUSTER_HIT_DAMAGE 1
#define SP_CLUSTER_HIT_DEPLETE 2
int sp_cluster_send_hit(sp_cluster_t *c, uint32_t node, int what, uint64_t target, uint64_t by, float value);

/* Checkpoints (issue 10 point 7; the format and the resume are described
 * in cluster.c, "checkpoints").
 *
 * sp_cluster_checkpoint_annex: loop thread, between steps: the bytes a
 * checkpoint carries for the cluster (node, incarnation, the stream
 * position to replay from, the cells' owners and epochs, the departures not
 * yet known to be stored). *out from malloc; 0, SP_ENOMEM, SP_EOVERFLOW.
 * O(cells + outbox + early + held).
 *
 * sp_cluster_annex_split: whether an annex starts with those bytes: 0 no
 * (a one-process checkpoint), 1 yes (*cl_len their length, *node whose),
 * SP_ECORRUPT. Any thread; needs no cluster.
 *
 * sp_cluster_restore: main thread, after sp_cluster_open, with the world
 * just loaded and before sp_cluster_start: put the departures back, then
 * replay the stream from the saved position, so the world holds every
 * entity it held or received and none it handed off since the checkpoint
 * (only the steps since are lost). Blocks while it reads the stream (about
 * 0.1 ms per message since). 0, SP_ECORRUPT, SP_EINVAL (another node's
 * checkpoint, another grid, another NATS store), SP_EIO. */
int sp_cluster_checkpoint_annex(const sp_cluster_t *c, uint8_t **out, size_t *len);
int sp_cluster_annex_split(const uint8_t *a, size_t len, size_t *cl_len, uint32_t *node);
int sp_cluster_restore(sp_cluster_t *c, sp_world_t *w, const uint8_t *a, size_t len);
/* Departures not yet known to be stored (what a checkpoint keeps). Loop
 * thread; O(outbox). */
size_t sp_cluster_outbox_len(const sp_cluster_t *c);

/* Shutdown, loop thread: stop and join the NATS thread (hand-offs queued
 * and not yet published are lost with the process, as every entity of a
 * stopped daemon is until persistence; see the docs), close the async
 * handle. */
void sp_cluster_stop(sp_cluster_t *c);

/* Free everything, after uv_run returned. NULL is a no-op. */
void sp_cluster_free(sp_cluster_t *c);

#endif /* SP_CLUSTER_CLUSTER_H */
