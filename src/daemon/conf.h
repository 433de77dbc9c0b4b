/* conf.h: spacesimd's configuration and exit codes.
 *
 * Filled once by main.c (defaults, then flags), read-only afterwards: any
 * module may read it from any thread. The protocol's limits come from
 * proto/spacesim_proto.def under one name each (SP_LIMIT_*, rpc.h); a field
 * here exists only for what a flag can change. */
#ifndef SP_DAEMON_CONF_H
#define SP_DAEMON_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPACESIMD_VERSION "0.1.0"

/* Exit codes (documented in --help). Only start-up code (main.c) turns a
 * failure into one of these; everything else returns 0 or SP_E*. */
enum {
    SP_EXIT_OK = 0,
    SP_EXIT_USAGE = 2,      /* bad flag or value, on the command line or in the --config file */
    SP_EXIT_CONFIG = 3,     /* --config, admin token file or --log-file unusable, bad environment */
    SP_EXIT_LISTEN = 4,     /* cannot bind/listen */
    SP_EXIT_CHECKPOINT = 5, /* checkpoint unusable (no writable directory, not a regular
                             * file, locked by another spacesimd), unreadable, corrupt */
    SP_EXIT_RUNTIME = 6,    /* out of memory or another fatal runtime error */
};

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
    int http_port;            /* web view, /metrics and /ws; 0 = off (the default) */
    char http_bind[64];       /* its address; "" = the same as bind (loopback by default) */
    char web_root[1024];      /* the page's files; "" = PKGDATADIR/web */
    int metrics_port;         /* the old flag for the same server: sets http_port */
    const char *port_file;    /* if set, the bound port is written there (tests) */
    const char *log_file;     /* if set, the log goes there (reopened on SIGHUP), else stderr */
    char admin_token[256];    /* from SPACESIM_ADMIN_TOKEN or --admin-token-file */
    bool have_admin_token;
    /* Limits: each protects the loop or the other clients from one client. */
    size_t max_msg;           /* bytes per request (MAX_MESSAGE_BYTES): bounds per-client input memory */
    size_t obuf_soft;         /* output bytes over which snapshots are skipped */
    double obuf_soft_secs;    /* and over which for this long the client is kicked */
    size_t obuf_hard;         /* output bytes over which the client is kicked at once */
    size_t sndbuf;            /* SO_SNDBUF of client sockets; 0 = the kernel's autotuning */
    double idle_ping_secs;    /* idle client is pinged after this (IDLE_PING_SEC) */
    double idle_timeout_secs; /* and closed ("timed out") after this (IDLE_TIMEOUT_SEC) */
    double rate_per_sec;      /* command token bucket refill (RATE_PER_SEC) */
    double rate_burst;        /* bucket size (RATE_BURST) */
    double rate_kick_secs;    /* a client held back by its rate this long is kicked; 0 = never */
    double request_timeout_secs; /* an unfinished message older than this closes the connection */
    int max_per_address;      /* connections from one IP address (loopback too): one host cannot take every slot */
    double default_radius;    /* interest radius before subscribe (DEFAULT_RADIUS) */
    double max_radius;        /* largest radius subscribe accepts (MAX_RADIUS) */
    double reconnect_grace_secs; /* a dropped session's ships wait this long for a resume
                                  * (default 30; 0 = removed with the connection) */
    long first_session_id;    /* hidden test flag: the first session id handed out (default 1) */
    /* Fair share of snapshot work (snapshots.h): what a big view may cost. */
    size_t snap_budget;       /* entities per client per round: at most this many enter a view per
                               * snapshot (nearest first), and a view of V entities gets a snapshot
                               * every ceil(V / snap_budget) rounds; default 8192 */
    double interest_cell;     /* edge of the interest cells, world units (default 1000): snapshots
                               * are shared per cell (icells.h); raised to keep at most
                               * SP_ICELLS_MAX_PER_AXIS cells per axis */
    double resync_secs;       /* at most one resync-asked full snapshot per client per this many
                               * seconds of game time (later resyncs coalesce); default 1, 0 = off */
    uint64_t stop_after_ticks; /* hidden test flag: at world tick >= N log the
                                * world hash and shut down; 0 = off */
    /* Cluster (src/cluster, issue 10): off while nats_url is "". */
    char nats_url[512];       /* nats://host:port of the NATS server (JetStream on) */
    char cells[32];           /* the grid of cells over x/y, "NxM"; default "2x2" */
    int node;                 /* this daemon's node, 0..1023 (its id space and its stream) */
    double cluster_ttl;       /* membership TTL, seconds; default 5 */
    double ghost_band;        /* border band of ghosts (cluster.c), world units; -1: the weapon range + 10 */
    const char *cluster_journal; /* hidden test flag: the ownership journal file, or NULL */
    long cluster_test_ships;  /* hidden test flag: -1 off; N >= 0: a ballistic world (no steering)
                               * with N collision-free ships on lanes */
    uint64_t cluster_pause_at; /* hidden test flag: pause after the step to tick N; 0 = off */
    int cluster_start_paused;  /* hidden test flag: 1 = start paused (spacesim-cells resume) */
    uint64_t cluster_test_hold_at; /* hidden test flag: publish no hand-off from this tick on */
    long cluster_test_refuse;  /* hidden test flag: refuse the first N hand-offs in (see cluster.h) */
    /* Gateway (gateway.h, spacesim-gw): on while upstream is not "". */
    char upstream[2048];      /* "host:port,host:port,...": the daemons */
    uint64_t session_base;    /* first session id handed out (default 2^31) */
} sp_dconf_t;

/* Fill the defaults: the .def's limits, 127.0.0.1:7777, one worker per core. */
void sp_dconf_default(sp_dconf_t *c);

#endif /* SP_DAEMON_CONF_H */
