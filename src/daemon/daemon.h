/* daemon.h: spacesimd internals shared by its source files.
 *
 * Threads: one libuv loop thread owns everything in sp_daemon_t and every
 * sp_client_t; it is the only writer of the world. Worker threads (workers.c)
 * see only jobs handed to them (an immutable frame plus job-owned buffers)
 * and hand results back through a lock-free queue, waking the loop with
 * uv_async_send(). Fields that workers touch say so.
 *
 * Files: main.c (flags, start-up, exit codes), loop.c (tick, dilation,
 * signals, shutdown), net.c (TCP server, client I/O, framing, output queue),
 * session.c (MessagePack-RPC dispatch, methods), workers.c (worker threads,
 * snapshot and AI jobs), checkpoint.c (atomic save / strict load), metrics.c
 * (Prometheus text on a tiny HTTP listener), log.c (one line per event). */
#ifndef SP_DAEMON_H
#define SP_DAEMON_H

#include <msgpack.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/log.h"
#include "sim/world.h"
#include "sim/frame.h"
#include "spacesim/bus.h"

#define SPACESIMD_VERSION "0.1.0"

/* Exit codes (documented in --help). */
enum {
    SP_EXIT_OK = 0,
    SP_EXIT_USAGE = 2,      /* bad flag or value */
    SP_EXIT_CONFIG = 3,     /* admin token file unreadable, bad environment */
    SP_EXIT_LISTEN = 4,     /* cannot bind/listen */
    SP_EXIT_CHECKPOINT = 5, /* checkpoint unreadable, corrupt or truncated */
    SP_EXIT_RUNTIME = 6,    /* out of memory or another fatal runtime error */
};

/* ---------------------------------------------------------------- config */
typedef struct sp_dconf {
    char bind[64];            /* listen address, default 127.0.0.1 */
    int port;                 /* default 7777; 0 = ephemeral (logged) */
    int workers;              /* worker threads, default nproc, >= 1 */
    int tick_hz;              /* simulation ticks per second, default 60 */
    int snapshot_hz;          /* snapshots per second per client, default 20 */
    double world_size;        /* edge of the cubic world, world units */
    long demo_asteroids;      /* asteroids in a fresh world */
    long demo_npcs;           /* NPC ships in a fresh world */
    int max_clients;          /* connections beyond this are refused */
    char checkpoint[1024];    /* path, or "" for none */
    double checkpoint_every;  /* seconds between checkpoints, 0 = only on shutdown */
    uint64_t seed;            /* world generation seed */
    int metrics_port;         /* 0 = off */
    const char *port_file;    /* if set, the bound port is written there (tests) */
    char admin_token[256];    /* from SPACESIM_ADMIN_TOKEN or --admin-token-file */
    bool have_admin_token;
    /* Limits: each protects the loop or the other clients from one client. */
    size_t max_msg;           /* bytes per request (64 KiB): bounds per-client input memory */
    size_t obuf_soft;         /* output bytes over which snapshots are skipped */
    double obuf_soft_secs;    /* and over which for this long the client is kicked */
    size_t obuf_hard;         /* output bytes over which the client is kicked at once */
    double idle_ping_secs;    /* idle client is pinged after this */
    double idle_timeout_secs; /* and closed ("timed out") after this */
    double rate_per_sec;      /* command token bucket refill */
    double rate_burst;        /* bucket size */
    int max_ships;            /* ships per session */
    double default_radius;    /* interest radius before subscribe */
    double max_radius;        /* largest radius subscribe accepts */
    uint64_t stop_after_ticks; /* hidden test flag: at world tick >= N log the
                                * world hash and shut down; 0 = off */
} sp_dconf_t;

/* Fill defaults. */
void sp_dconf_default(sp_dconf_t *c);

/* ---------------------------------------------------------------- stats */
#define SP_TICK_RING 1024 /* tick durations kept for p50/p99 */
#define SP_HIST_BUCKETS 14

typedef struct sp_dstats {
    uint64_t ticks;
    uint64_t overruns;          /* ticks that took longer than the tick period */
    uint64_t tick_ns_ring[SP_TICK_RING];
    uint64_t tick_ns_max;
    uint64_t hist[SP_HIST_BUCKETS + 1]; /* cumulative-by-le Prometheus buckets, last = +Inf */
    double tick_ns_sum;
    uint64_t bytes_out;
    uint64_t bytes_in;
    uint64_t snapshots_sent;
    uint64_t snapshots_skipped; /* client over its soft output limit */
    uint64_t snapshot_bytes;
    uint64_t snapshot_entities;
    uint64_t commands;
    uint64_t kicks;
    uint64_t clients_total;
    uint64_t events_sent;
    uint64_t events_dropped;    /* events a skipping client never got (pending bound) */
    uint64_t worker_msgs;       /* SpaceMessages applied from workers */
    uint64_t ai_stalls;         /* AI rounds not done at their application tick (the step waited;
                                 * the loop kept serving I/O) */
    uint64_t ai_stall_ns_sum, ai_stall_ns_max; /* wall time steps waited for their AI round */
    uint64_t ai_stall_ticks;    /* whole tick periods those waits lasted */
    uint64_t checkpoints;
    /* Rates over the last completed second (loop thread). */
    double cmds_per_sec;
    double bytes_out_per_sec;
    double dilation;            /* game seconds per wall second, 1.0 = real time */
    uint64_t rate_last_ns;
    uint64_t rate_last_cmds;
    uint64_t rate_last_bytes;
    uint64_t rate_last_ticks;
} sp_dstats_t;

/* ---------------------------------------------------------------- clients */
typedef enum sp_client_state {
    SP_CLIENT_NEW = 0,  /* connected; only ping and hello allowed */
    SP_CLIENT_READY,    /* hello done: a session, gets snapshots */
    SP_CLIENT_CLOSING,  /* uv_close called; freed in close_cb when no job refers to it */
} sp_client_state_t;

#define SP_MAX_SHIPS_PER_CLIENT 16

typedef struct sp_client sp_client_t;
struct sp_client {
    uv_tcp_t tcp; /* tcp.data == this */
    struct sp_daemon *d;
    sp_client_t *prev, *next; /* d->clients list */
    uint32_t session;         /* session id, >= 1, never reused in a run */
    uint8_t state;            /* sp_client_state_t */
    bool admin;
    bool read_stopped;
    int refs;                 /* 1 for the handle + 1 per in-flight snapshot job */
    char name[33];
    char peer[64];
    char close_reason[96];

    /* Input: bytes of an incomplete message (allocated lazily, at most
     * max_msg + read size; freed when empty so idle clients cost nothing). */
    uint8_t *ibuf;
    size_t ilen, icap;
    size_t scan_pos;  /* bytes of ibuf already scanned by the framer */
    size_t scan_need; /* msgpack objects still expected in the current message */

    /* Output: bytes handed to uv_write and not yet written. */
    size_t obuf_bytes;
    uint64_t over_soft_since_ns; /* 0 = under the soft limit */

    /* Interest and snapshots. */
    double radius;
    double centre[3];
    uint64_t ships[SP_MAX_SHIPS_PER_CLIENT];
    int nships;
    struct sp_d_view *view;  /* what the client really received; NULL = send full next */
    bool snap_pending;        /* a snapshot job for this client is in flight */
    bool need_full;           /* resync asked: next snapshot is full */
    uint64_t snaps_sent;
    /* Events of rounds this client skipped (over its output limit, or its
     * previous snapshot still being encoded), oldest first: shared,
     * reference-counted event sets, delivered (filtered by interest) with
     * the next snapshot it really gets. At most SP_PEND_ROUNDS; past that the
     * oldest is dropped and its visible events counted (events_dropped). */
#define SP_PEND_ROUNDS 64
    struct sp_evset *pend[SP_PEND_ROUNDS];
    int npend;

    /* Rate limit (token bucket) and liveness. */
    double tokens;
    uint64_t tokens_ns;
    uint64_t last_rx_ns;
    bool ping_sent;
};

/* ---------------------------------------------------------------- daemon */
typedef struct sp_workers sp_workers_t;

typedef struct sp_daemon {
    sp_dconf_t conf;
    uv_loop_t *loop;
    uv_tcp_t server;
    bool listening;
    uv_tcp_t metrics;
    bool metrics_on;
    uv_timer_t tick_timer;
    uv_idle_t tick_idle;    /* runs a step that is already due, or helps the AI round a
                             * pending step waits for (see loop.c) */
    uv_timer_t house_timer; /* 1 Hz: idle pings, soft-limit kicks, rates, checkpoints */
    uv_signal_t sig_term, sig_int;
    uv_async_t wake; /* workers -> loop */

    sp_world_t *world;
    sp_world_def_t wdef;
    sp_workers_t *workers;

    sp_client_t *clients; /* doubly linked list */
    int nclients;
    uint32_t next_session;

    /* Tick accounting: fixed step, accumulator in ns. */
    uint64_t tick_ns;   /* 1e9 / tick_hz */
    uint64_t snap_every; /* publish a frame every this many ticks */
    uint64_t last_ns;
    uint64_t acc_ns;
    uint64_t start_ns;
    uint64_t ai_wait_since; /* != 0: the due step waits for its AI round since then (loop.c) */
    sp_log_ratelimit_t overrun_rl;
    sp_log_ratelimit_t skip_rl;
    sp_log_ratelimit_t stall_rl;
    uint64_t last_checkpoint_ns;

    bool shutting_down;
    int exit_code;

    sp_dstats_t st;
    msgpack_sbuffer sbuf; /* loop-thread scratch for replies */
    msgpack_packer pk;
} sp_daemon_t;

/* loop.c */
int sp_daemon_init(sp_daemon_t *d);
int sp_daemon_run(sp_daemon_t *d);
void sp_daemon_shutdown(sp_daemon_t *d, const char *why);
uint64_t sp_now_ns(void);
void sp_tick_percentiles(const sp_daemon_t *d, double *p50_ms, double *p99_ms, double *max_ms);

/* net.c */
int sp_net_listen(sp_daemon_t *d);
void sp_net_stop_accepting(sp_daemon_t *d);
/* Queue bytes for the client (copied). Over the hard limit the client is
 * kicked and -1 returned. Loop thread. */
int sp_client_send(sp_client_t *c, const void *data, size_t len);
/* Send the scratch sbuffer's content and clear it. */
int sp_client_send_sbuf(sp_client_t *c);
/* Mark the client closing (once) and log the reason. Safe anywhere on the
 * loop thread, including inside its own read callback. */
void sp_client_close(sp_client_t *c, const char *reason_fmt, ...) __attribute__((format(printf, 2, 3)));
void sp_client_unref(sp_client_t *c);
void sp_net_housekeeping(sp_daemon_t *d, uint64_t now);
void sp_net_close_all(sp_daemon_t *d, const char *reason);

/* session.c */
/* Handle one complete request/notification. */
void sp_session_handle(sp_client_t *c, const msgpack_object *o);
/* Reply helpers write into d->sbuf and send it. */
void sp_session_send_error(sp_client_t *c, uint64_t msgid, bool have_id, int code, const char *msg);
void sp_session_notify_error(sp_client_t *c, int code, const char *msg);
void sp_session_broadcast_alert(sp_daemon_t *d, const char *text, size_t len, int priority, uint32_t from);
void sp_session_release(sp_client_t *c);

/* workers.c */
int sp_workers_start(sp_daemon_t *d, int n);
void sp_workers_stop(sp_daemon_t *d);
/* Publish the current frame and queue one snapshot job per ready client. */
void sp_workers_snapshot_round(sp_daemon_t *d);
/* Wake a worker for the round queued by sp_workers_snapshot_round(); the
 * loop calls it after the tick's work and accounting (a woken worker may
 * take the loop's CPU for a while: better after the tick than inside it). */
void sp_workers_kick(sp_daemon_t *d);
/* May the step from the current world tick run now? False when the AI round
 * due before it (its application tick) is not complete yet; the loop then
 * leaves the step pending and keeps serving I/O: the round's last job wakes
 * it (d->wake). Also moves the workers' messages out of the main inbox.
 * Loop thread; never blocks; O(messages waiting). */
bool sp_workers_step_ready(sp_daemon_t *d);
/* While a step waits for its AI round: run at most ONE of the round's
 * still-queued jobs (frame build or AI chunk) on the loop thread. Returns
 * true if it ran one (more may be queued: call again on a later loop
 * iteration), false if none is queued (workers are running the rest).
 * Loop thread; never waits; costs one job (~a chunk of 256 NPCs, or the
 * frame build). */
bool sp_workers_help(sp_daemon_t *d);
/* Apply the pending AI round if this tick (pre-step world tick) is its
 * application tick. Call only when sp_workers_step_ready() is true (it
 * never waits then). Loop thread, before sp_world_step(). */
void sp_workers_apply_due(sp_daemon_t *d);
/* Drain results (called from the async callback and before each tick):
 * snapshot bytes to sockets, AI intents to the pending list. Never changes
 * the world. */
void sp_workers_drain(sp_daemon_t *d);
/* Record the events of the step just run (loop thread). */
void sp_workers_collect_events(sp_daemon_t *d);
uint64_t sp_workers_alerts_seen(const sp_daemon_t *d);
/* Events dropped for clients (pending bound on the loop + per-snapshot cap on
 * workers). Loop thread. */
uint64_t sp_workers_events_dropped(const sp_daemon_t *d);
/* Release what the workers layer holds for a client being freed (its pending
 * events). Loop thread. */
void sp_workers_client_free(sp_client_t *c);
size_t sp_workers_queue_depth(const sp_daemon_t *d, size_t *results);
/* Broadcast a SystemAlert message to every worker. */
void sp_workers_broadcast_alert(sp_daemon_t *d, const char *text, size_t len, int priority);

/* checkpoint.c */
/* Synchronous checkpoint (shutdown): waits for an in-flight periodic one. */
int sp_checkpoint_write(sp_daemon_t *d);
/* Periodic checkpoint: serialize on the loop, checksum + write + fsync +
 * rename on the libuv threadpool; skipped while the previous one is busy. */
int sp_checkpoint_start(sp_daemon_t *d);
/* 0 = loaded, 1 = no file (fresh world wanted), <0 = refuse (message logged). */
int sp_checkpoint_load(sp_daemon_t *d);

/* metrics.c */
int sp_metrics_listen(sp_daemon_t *d);
void sp_metrics_close(sp_daemon_t *d);
void sp_tick_hist_add(sp_dstats_t *st, uint64_t ns);
extern const double sp_tick_hist_le_ms[SP_HIST_BUCKETS];

#endif /* SP_DAEMON_H */
