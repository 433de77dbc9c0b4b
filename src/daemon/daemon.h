/* daemon.h: spacesimd as one struct built from its subsystems (Box2D's
 * b2World style): each member below has its own module, its own header
 * stating its contract, and one owner.
 *
 * Threads: one libuv loop thread owns everything here and is the only
 * writer of the world. Worker threads (pool.h) see only the jobs handed to
 * them (an immutable frame plus job-owned buffers) and hand results back
 * through the pool's done queue. Fields that workers touch say so.
 *
 * The modules and their dependency order are drawn in docs/ARCHITECTURE.md
 * ("The daemon's files"); tests/daemon_layers.sh fails when a file includes
 * against that order. */
#ifndef SP_DAEMON_DAEMON_H
#define SP_DAEMON_DAEMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <msgpack.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/airound.h"
#include "daemon/blocks.h"
#include "daemon/icells.h"
#include "daemon/conf.h"
#include "daemon/events.h"
#include "daemon/log.h"
#include "daemon/net.h"
#include "daemon/pool.h"
#include "daemon/session.h"
#include "daemon/stats.h"
#include "sim/world.h"
#include "spacesim/bus.h"
#include "spacesim/mpmc.h"

struct lws_context;
struct sp_cluster;
struct sp_gw;

typedef struct sp_daemon {
    sp_dconf_t conf;            /* read-only once running (conf.h) */
    uv_loop_t *loop;
    sp_world_t *world;          /* written by the loop thread only */
    sp_world_def_t wdef;
    sp_dstats_t st;             /* stats.h */
    sp_net_t net;               /* the RPC port and its connections (net.h) */
    sp_pool_t *pool;            /* worker threads (pool.h) */
    sp_bus_t bus;               /* SpaceMessages: AI intents (main inbox), alerts (broadcast) */
    sp_airound_t ai;            /* the NPC AI round in flight (airound.h) */
    sp_events_t events;         /* events since the last snapshot round (events.h) */
    uint64_t next_session;      /* next session id: >= 1, never reused (checkpointed);
                                 * > SP_SESSION_ID_MAX: exhausted (session.h) */
    sp_session_table_t detached; /* sessions whose connection ended, within their grace (clients.c) */

    sp_blocks_t blocks;         /* the world's allocator (blocks.h): frames' pages stay mapped */

    /* Snapshot rounds (frames.c, snapshots.c). */
    uint64_t snap_every;        /* publish a frame every this many ticks */
    sp_mpmc_t caps;             /* sp_world_capture_t *: spare capture buffers */
    bool kick_workers;          /* a round was queued: wake the workers after the tick */
    /* The build chain (frames.c): builds run one at a time, in order, each
     * on the previous round's frame. build_mu guards build_running and the
     * queue (loop and workers); last_round is the loop's. */
    uv_mutex_t build_mu;
    bool build_running;
    struct build_job *build_q, *build_q_tail; /* frames.c's build jobs waiting for the running one */
    struct sp_round *last_round;  /* the round published last (a reference), or NULL */
    _Atomic uint64_t build_ns_last, build_ns_max; /* frame build times (workers; relaxed: metrics) */
    _Atomic uint64_t events_capped; /* events cut by the per-snapshot cap (workers; relaxed) */
    /* Shared snapshot encoding (icells.h, snapshots.c): the cell store is
     * written by a round's update jobs and read by its client jobs, so one
     * round holds it at a time; a round built meanwhile waits for it in
     * snap_q instead of being dropped. snap_mu guards snap_q, snap_nq,
     * snap_busy and the queued rounds' cells_built (the loop and workers
     * take it a few times per round). */
    sp_icells_t cells;
    bool cells_ok;              /* the store exists (init succeeded) */
    double interest_edge;       /* the cell edge in use (hello's interest_cell) */
    uv_mutex_t snap_mu;
    struct sp_round *snap_q[2]; /* rounds admitted by prepare, not started yet, oldest first (a
                                 * reference each): the store applies rounds in tick order */
    unsigned snap_nq;
    bool snap_busy;             /* a started round's update or client jobs hold the store */
    uint64_t snap_rounds_late;  /* rounds without snapshots: two were in flight already (loop) */
    _Atomic uint64_t alerts_seen;   /* SystemAlerts read by workers (relaxed: a statistic) */

    /* Tick clock (loop.c): fixed step, accumulator in ns. */
    uv_timer_t tick_timer;
    uv_idle_t tick_idle;        /* runs a step already due, or helps the AI round it waits for */
    uv_timer_t house_timer;     /* 1 Hz: idle pings, soft-limit kicks, rates, checkpoints */
    uv_timer_t flush_timer;     /* shutdown: waits for output queues to drain */
    uv_signal_t sig_term, sig_int;
    uv_signal_t sig_hup, sig_usr1; /* reopen --log-file; checkpoint now (loop.c) */
    uv_async_t wake;            /* bus main-inbox notify -> loop */
    uint64_t tick_ns;           /* 1e9 / tick_hz */
    uint64_t last_ns;
    uint64_t acc_ns;
    uint64_t start_ns;
    uint64_t ai_wait_since;     /* != 0: the due step waits for its AI round since then */
    uint64_t respawn_npc, respawn_ast; /* the respawn targets last set (a cluster daemon's change with its cells) */
    sp_log_ratelimit_t overrun_rl, skip_rl, stall_rl;
    uint64_t last_checkpoint_ns;
    int flush_rounds;

    /* The cluster's NATS side (src/cluster), NULL without --nats. Loop
     * thread; it runs its own NATS thread behind two rings. */
    struct sp_cluster *cluster;

    /* The gateway (gateway.h), NULL for a daemon: its world is a mirror of
     * the daemons' snapshots (no step, no AI) and commands go to them. */
    struct sp_gw *gw;

    /* HTTP + WebSocket server on --http-port (http.c), NULL when off. */
    struct lws_context *http;

    /* Replies to requests (request.c): one buffer, loop thread. */
    msgpack_sbuffer reply;
    msgpack_packer reply_pk;

    bool shutting_down;
    int exit_code;
} sp_daemon_t;

#endif /* SP_DAEMON_DAEMON_H */
