/* main.c: spacesimd command line, start-up and exit codes.
 *
 * Every flag is one row of `flags` below: its name, value type and range,
 * where it lands in sp_dconf_t and its help line; getopt_long's table and
 * --help are generated from the rows, so they cannot drift apart.
 *
 * Setup failures print one clear line and exit non-zero (memcached): the
 * exit codes are listed in --help and in conf.h. The admin token is never
 * taken from argv (it would show in ps): SPACESIM_ADMIN_TOKEN or
 * --admin-token-file PATH (first line, trailing newline stripped). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/checkpoint.h"
#include "daemon/daemon.h"
#include "daemon/loop.h"
#include "rpc.h"
#include "spacesim/error.h"

/* How a flag's value is read. */
typedef enum {
    F_INT,     /* int in [lo, hi] */
    F_LONG,    /* long in [lo, hi] */
    F_SIZE,    /* size_t in [lo, hi] */
    F_DOUBLE,  /* double in [lo, hi] */
    F_U64,     /* unsigned 64-bit */
    F_STR,     /* copied into a char[size] field: non-empty, shorter than size - slack */
    F_PATH,    /* a const char * pointing into argv */
    F_SPECIAL, /* handled by name in special() */
} ftype_t;

typedef struct flag {
    const char *name, *arg; /* --name ARG */
    ftype_t type;
    double lo, hi;
    size_t off, size;       /* field of sp_dconf_t (F_STR: its size) */
    const char *help;       /* printed as it is; \n + indent for a second line */
    bool hidden;
} flag_t;

#define C(field) offsetof(sp_dconf_t, field)
static const flag_t flags[] = {
    {"bind", "ADDR", F_STR, 0, 0, C(bind), sizeof(((sp_dconf_t *)0)->bind), "listen address (default 127.0.0.1)", false},
    {"port", "N", F_INT, 0, 65535, C(port), 0, "TCP port (default 7777; 0 = any free port, logged)", false},
    {"workers", "N", F_INT, 1, 256, C(workers), 0, "worker threads (default: number of cores)", false},
    {"tick-hz", "N", F_INT, 1, 1000, C(tick_hz), 0, "simulation ticks per second (default 60)", false},
    {"snapshot-hz", "N", F_INT, 1, 1000, C(snapshot_hz), 0, "snapshots per second per client (default 20)", false},
    {"world-size", "UNITS", F_DOUBLE, 10, 1e7, C(world_size), 0, "edge of the cubic world (default 4000)", false},
    {"demo-asteroids", "N", F_LONG, 0, 2000000, C(demo_asteroids), 0, "asteroids in a new world (default 5000)", false},
    {"demo-npcs", "N", F_LONG, 0, 1000000, C(demo_npcs), 0,
     "NPC ships in a new world (default 200); destroyed NPCs\n"
     "                           and depleted asteroids respawn (2% of N, >= 2, per second)",
     false},
    {"max-clients", "N", F_INT, 1, 100000, C(max_clients), 0, "connection limit (default 2000)", false},
    {"checkpoint", "PATH", F_STR, 0, 0, C(checkpoint), sizeof(((sp_dconf_t *)0)->checkpoint) - 8,
     "resume from PATH if it exists; save to it", false},
    {"checkpoint-every", "SECS", F_DOUBLE, 0, 1e7, C(checkpoint_every), 0,
     "periodic checkpoint interval (default 60; 0 = only at exit)", false},
    {"log-level", "LEVEL", F_SPECIAL, 0, 0, 0, 0, "error, warn, info (default) or debug", false},
    {"seed", "N", F_U64, 0, 0, C(seed), 0, "world generation seed (default 42)", false},
    {"metrics-port", "N", F_INT, 0, 65535, C(metrics_port), 0, "Prometheus metrics on http://BIND:N/metrics (default off)",
     false},
    {"admin-token-file", "PATH", F_SPECIAL, 0, 0, 0, 0,
     "read the admin token from PATH\n"
     "                           (or set SPACESIM_ADMIN_TOKEN; never on the command line)",
     false},
    {"max-message", "BYTES", F_SIZE, 64, 16 << 20, C(max_msg), 0, "largest request accepted (default 65536)", false},
    {"obuf-soft", "BYTES", F_SIZE, 1024, 1L << 30, C(obuf_soft), 0,
     "output queue over which snapshots are skipped (default 262144)", false},
    {"obuf-soft-seconds", "S", F_DOUBLE, 0, 3600, C(obuf_soft_secs), 0,
     "kick a client over the soft limit this long (default 10)", false},
    {"obuf-hard", "BYTES", F_SIZE, 4096, 1L << 31, C(obuf_hard), 0,
     "output queue that kicks a client at once (default 4194304)", false},
    {"idle-timeout", "SECS", F_SPECIAL, 0.1, 1e6, 0, 0, "close a silent client after SECS (default 120)", false},
    {"rate", "N", F_SPECIAL, 1, 1e7, 0, 0,
     "commands per second per client (default 200, burst 2x); past it\n"
     "                           the client's socket is not read until a token is due", false},
    {"rate-kick-seconds", "S", F_DOUBLE, 0, 1e6, C(rate_kick_secs), 0,
     "kick a client held back by its rate this long (default 10; 0 = never)", false},
    {"request-timeout", "SECS", F_DOUBLE, 0.1, 1e6, C(request_timeout_secs), 0,
     "close a client whose message stays unfinished this long (default 5)", false},
    {"max-per-address", "N", F_INT, 1, 100000, C(max_per_address), 0,
     "connections from one IP address, loopback included (default 64)", false},
    {"reconnect-grace", "SECS", F_DOUBLE, 0, 86400, C(reconnect_grace_secs), 0,
     "keep a dropped session's ships SECS for a resume (default 30; 0 = no resume)", false},
    {"first-session-id", "N", F_LONG, 1, 4294967295.0, C(first_session_id), 0, "tests: first session id handed out", true},
    {"port-file", "PATH", F_PATH, 0, 0, C(port_file), 0, "write the bound port to PATH (for scripts and tests)", false},
    {"log-file", "PATH", F_PATH, 0, 0, C(log_file), 0,
     "append the log to PATH instead of stderr; SIGHUP reopens it\n"
     "                           (after logrotate moved it)",
     false},
    {"stop-after-ticks", "N", F_SPECIAL, 1, (double)LONG_MAX, 0, 0, "tests: log the world hash at tick N and stop", true},
};
#undef C
#define NFLAGS (sizeof flags / sizeof flags[0])
enum { O_HELP = 256, O_VERSION, O_FLAG0 };

static void usage(FILE *f) {
    fprintf(f, "Usage: spacesimd [OPTION]...\n"
               "Authoritative space-simulation server (MessagePack-RPC over TCP).\n\n");
    for (size_t i = 0; i < NFLAGS; i++) {
        if (flags[i].hidden) continue;
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s %s", flags[i].name, flags[i].arg);
        fprintf(f, "  %-24s ", lhs);
        fputs(flags[i].help, f);
        fputc('\n', f);
    }
    fprintf(f, "  --help, --version\n\n"
               "Signals: SIGTERM, SIGINT: checkpoint, flush the clients, exit 0.\n"
               "  SIGHUP: reopen --log-file (ignored without it).  SIGUSR1: write a checkpoint now.\n\n"
               "Exit status: 0 ok, 2 bad usage, 3 configuration (token file, log file),\n"
               "4 cannot listen, 5 checkpoint unusable (directory missing or not writable,\n"
               "not a regular file, locked by another spacesimd), unreadable or corrupt,\n"
               "6 runtime failure.\n");
}

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "spacesimd: invalid value '%s' for --%s: expected an integer in [%ld, %ld]\n", s, flag, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *s == '\0' || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "spacesimd: invalid value '%s' for --%s: expected a number in [%g, %g]\n", s, flag, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '\0' || s[0] == '-') {
        fprintf(stderr, "spacesimd: invalid --%s '%s': expected an unsigned integer\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Flags that set more than one field, or none. */
static int special(const flag_t *fl, const char *v, sp_dconf_t *c, const char **token_file) {
    double dv;
    long lv;
    if (strcmp(fl->name, "log-level") == 0) {
        sp_log_level_t lv2;
        if (sp_log_level_parse(v, &lv2) != 0) {
            fprintf(stderr, "spacesimd: invalid --log-level '%s': expected error, warn, info or debug\n", v);
            return -1;
        }
        sp_log_set_level(lv2);
    } else if (strcmp(fl->name, "admin-token-file") == 0) {
        *token_file = v;
    } else if (strcmp(fl->name, "idle-timeout") == 0) {
        if (parse_double(fl->name, v, fl->lo, fl->hi, &c->idle_timeout_secs) != 0) return -1;
        c->idle_ping_secs = c->idle_timeout_secs / 4;
    } else if (strcmp(fl->name, "rate") == 0) {
        if (parse_double(fl->name, v, fl->lo, fl->hi, &dv) != 0) return -1;
        c->rate_per_sec = dv;
        c->rate_burst = 2 * dv;
    } else if (strcmp(fl->name, "stop-after-ticks") == 0) {
        if (parse_long(fl->name, v, (long)fl->lo, LONG_MAX, &lv) != 0) return -1;
        c->stop_after_ticks = (uint64_t)lv;
    }
    return 0;
}

/* Apply one flag's value to *c. 0, or -1 (message printed). */
static int apply(const flag_t *fl, const char *v, sp_dconf_t *c, const char **token_file) {
    char *field = (char *)c + fl->off;
    long lv;
    switch (fl->type) {
    case F_INT:
        if (parse_long(fl->name, v, (long)fl->lo, (long)fl->hi, &lv) != 0) return -1;
        *(int *)(void *)field = (int)lv;
        return 0;
    case F_LONG: return parse_long(fl->name, v, (long)fl->lo, (long)fl->hi, (long *)(void *)field);
    case F_SIZE:
        if (parse_long(fl->name, v, (long)fl->lo, (long)fl->hi, &lv) != 0) return -1;
        *(size_t *)(void *)field = (size_t)lv;
        return 0;
    case F_DOUBLE: return parse_double(fl->name, v, fl->lo, fl->hi, (double *)(void *)field);
    case F_U64: return parse_u64(fl->name, v, (uint64_t *)(void *)field);
    case F_STR:
        if (v[0] == '\0' || strlen(v) >= fl->size) {
            fprintf(stderr, "spacesimd: --%s value empty or too long\n", fl->name);
            return -1;
        }
        snprintf(field, fl->size, "%s", v);
        return 0;
    case F_PATH: *(const char **)(void *)field = v; return 0;
    case F_SPECIAL: return special(fl, v, c, token_file);
    }
    return -1;
}

/* Parse argv into *c. Returns -1 to go on, or the exit code to stop with. */
static int parse_args(int argc, char **argv, sp_dconf_t *c, const char **token_file) {
    struct option opts[NFLAGS + 3];
    for (size_t i = 0; i < NFLAGS; i++) opts[i] = (struct option){flags[i].name, required_argument, NULL, O_FLAG0 + (int)i};
    opts[NFLAGS] = (struct option){"help", no_argument, NULL, O_HELP};
    opts[NFLAGS + 1] = (struct option){"version", no_argument, NULL, O_VERSION};
    opts[NFLAGS + 2] = (struct option){NULL, 0, NULL, 0};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *flag = optind > 1 ? argv[optind - 1] : "?";
        if (ch == O_HELP) {
            usage(stdout);
            return SP_EXIT_OK;
        }
        if (ch == O_VERSION) {
            printf("spacesimd %s (protocol %d)\n", SPACESIMD_VERSION, SP_PROTO_VERSION);
            return SP_EXIT_OK;
        }
        if (ch == ':') {
            fprintf(stderr, "spacesimd: option %s needs a value\n", flag);
            return SP_EXIT_USAGE;
        }
        if (ch < O_FLAG0 || ch >= O_FLAG0 + (int)NFLAGS) {
            fprintf(stderr, "spacesimd: unknown option '%s' (try --help)\n", flag);
            return SP_EXIT_USAGE;
        }
        if (apply(&flags[ch - O_FLAG0], optarg, c, token_file) != 0) return SP_EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "spacesimd: unexpected argument '%s' (try --help)\n", argv[optind]);
        return SP_EXIT_USAGE;
    }
    if (c->obuf_hard < c->obuf_soft) {
        fprintf(stderr, "spacesimd: --obuf-hard (%zu) must be >= --obuf-soft (%zu)\n", c->obuf_hard, c->obuf_soft);
        return SP_EXIT_USAGE;
    }
    if (c->metrics_port != 0 && c->metrics_port == c->port) {
        fprintf(stderr, "spacesimd: --metrics-port must differ from --port\n");
        return SP_EXIT_USAGE;
    }
    return -1;
}

static int read_token_file(const char *path, sp_dconf_t *c) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "spacesimd: cannot read --admin-token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char buf[sizeof c->admin_token];
    if (fgets(buf, sizeof buf, f) == NULL) buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0') {
        fprintf(stderr, "spacesimd: --admin-token-file %s is empty\n", path);
        return -1;
    }
    snprintf(c->admin_token, sizeof c->admin_token, "%s", buf);
    c->have_admin_token = true;
    return 0;
}

/* The admin token from the file, else from the environment. 0 or -1. */
static int load_token(sp_dconf_t *c, const char *token_file) {
    if (token_file != NULL) return read_token_file(token_file, c);
    const char *env = getenv("SPACESIM_ADMIN_TOKEN");
    if (env == NULL || env[0] == '\0') return 0;
    if (strlen(env) >= sizeof c->admin_token) {
        fprintf(stderr, "spacesimd: SPACESIM_ADMIN_TOKEN longer than %zu bytes\n", sizeof c->admin_token - 1);
        return -1;
    }
    snprintf(c->admin_token, sizeof c->admin_token, "%s", env);
    c->have_admin_token = true;
    return 0;
}

/* A fresh demo world from the flags. 0, or the exit code. */
static int new_world(sp_daemon_t *d) {
    const sp_dconf_t *c = &d->conf;
    d->wdef = sp_world_def_default();
    d->wdef.seed = c->seed;
    d->wdef.half_extent = (float)(c->world_size / 2);
    d->wdef.dt = 1.0f / (float)c->tick_hz;
    int e = sp_world_create(&d->wdef, &d->world);
    if (e < 0) {
        SP_LOGE("cannot create the world: %s", sp_strerror(e));
        return SP_EXIT_RUNTIME;
    }
    e = sp_world_populate_demo(d->world, (uint32_t)c->demo_asteroids, (uint32_t)c->demo_npcs);
    if (e < 0) {
        SP_LOGE("cannot populate the demo world (%ld asteroids, %ld NPCs): %s", c->demo_asteroids, c->demo_npcs,
                sp_strerror(e));
        return SP_EXIT_RUNTIME;
    }
    /* Keep the demo lively: once a second, bring back up to 2% of the NPC
     * ships (at least 2) and as many asteroids, toward the numbers asked
     * for. Deterministic (world rng) and saved in checkpoints, so a resumed
     * world goes on respawning the same way. */
    uint32_t per = (uint32_t)(c->demo_npcs / 50);
    if (per < 2) per = 2;
    sp_world_set_respawn(d->world, (uint32_t)c->demo_npcs, (uint32_t)c->demo_asteroids, (uint32_t)c->tick_hz, per);
    SP_LOGI("new world: seed %llu, size %.0f, %u entities (respawn up to %u NPCs and %u asteroids per second)",
            (unsigned long long)c->seed, c->world_size, sp_world_count(d->world), per, per);
    return 0;
}

/* The world: resumed from the checkpoint, or new. 0, or the exit code. */
static int open_world(sp_daemon_t *d) {
    if (d->conf.checkpoint[0] && sp_checkpoint_lock(d) != 0) return SP_EXIT_CHECKPOINT;
    int r = d->conf.checkpoint[0] ? sp_checkpoint_load(d) : SP_ENOENT;
    if (r == SP_ENOENT) return new_world(d);
    if (r < 0) return SP_EXIT_CHECKPOINT;
    d->wdef = *sp_world_def(d->world);
    float want = 1.0f / (float)d->conf.tick_hz;
    if (d->wdef.dt != want)
        SP_LOGW("checkpoint step is %.5f s but --tick-hz %d wants %.5f s: keeping the checkpoint's step",
                (double)d->wdef.dt, d->conf.tick_hz, (double)want);
    return 0;
}

int main(int argc, char **argv) {
    static sp_daemon_t d;
    sp_dconf_t *c = &d.conf;
    sp_dconf_default(c);
    const char *token_file = NULL;
    int r = parse_args(argc, argv, c, &token_file);
    if (r >= 0) return r;
    if (load_token(c, token_file) != 0) return SP_EXIT_CONFIG;
    if (c->log_file && sp_log_open(c->log_file) != 0) {
        fprintf(stderr, "spacesimd: cannot open --log-file %s: %s\n", c->log_file, strerror(errno));
        return SP_EXIT_CONFIG;
    }
    SP_LOGI("spacesimd %s starting (pid %ld)%s", SPACESIMD_VERSION, (long)getpid(),
            c->have_admin_token ? "" : "; no admin token set: admin methods disabled");
    sp_daemon_init(&d);
    if ((r = open_world(&d)) != 0) return r;
    r = sp_daemon_run(&d);
    sp_world_free(d.world);
    sp_daemon_destroy(&d);
    return r;
}
