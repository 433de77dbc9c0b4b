/* main.c: spacesimd command line, start-up and exit codes.
 *
 * Setup failures print one clear line and exit non-zero (memcached): the
 * exit codes are listed in --help and in daemon.h. The admin token is never
 * taken from argv (it would show in ps): SPACESIM_ADMIN_TOKEN or
 * --admin-token-file PATH (first line, trailing newline stripped). */
#include "daemon/checkpoint.h"
#include "daemon/daemon.h"
#include "daemon/loop.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/save.h"
#include "spacesim/error.h"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: spacesimd [OPTION]...\n"
            "Authoritative space-simulation server (MessagePack-RPC over TCP).\n\n"
            "  --bind ADDR              listen address (default 127.0.0.1)\n"
            "  --port N                 TCP port (default 7777; 0 = any free port, logged)\n"
            "  --workers N              worker threads (default: number of cores)\n"
            "  --tick-hz N              simulation ticks per second (default 60)\n"
            "  --snapshot-hz N          snapshots per second per client (default 20)\n"
            "  --world-size UNITS       edge of the cubic world (default 4000)\n"
            "  --demo-asteroids N       asteroids in a new world (default 5000)\n"
            "  --demo-npcs N            NPC ships in a new world (default 200); destroyed NPCs\n"
            "                           and depleted asteroids respawn (2%% of N, >= 2, per second)\n"
            "  --max-clients N          connection limit (default 2000)\n"
            "  --checkpoint PATH        resume from PATH if it exists; save to it\n"
            "  --checkpoint-every SECS  periodic checkpoint interval (default 60; 0 = only at exit)\n"
            "  --log-level LEVEL        error, warn, info (default) or debug\n"
            "  --seed N                 world generation seed (default 42)\n"
            "  --metrics-port N         Prometheus metrics on http://BIND:N/metrics (default off)\n"
            "  --admin-token-file PATH  read the admin token from PATH\n"
            "                           (or set SPACESIM_ADMIN_TOKEN; never on the command line)\n"
            "  --max-message BYTES      largest request accepted (default 65536)\n"
            "  --obuf-soft BYTES        output queue over which snapshots are skipped (default 262144)\n"
            "  --obuf-soft-seconds S    kick a client over the soft limit this long (default 10)\n"
            "  --obuf-hard BYTES        output queue that kicks a client at once (default 4194304)\n"
            "  --idle-timeout SECS      close a silent client after SECS (default 120)\n"
            "  --rate N                 commands per second per client (default 200, burst 2x)\n"
            "  --port-file PATH         write the bound port to PATH (for scripts and tests)\n"
            "  --help, --version\n\n"
            "Exit status: 0 ok, 2 bad usage, 3 configuration (token file), 4 cannot listen,\n"
            "5 checkpoint unreadable or corrupt, 6 runtime failure.\n");
}

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "spacesimd: invalid value '%s' for %s: expected an integer in [%ld, %ld]\n", s, flag, lo, hi);
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
        fprintf(stderr, "spacesimd: invalid value '%s' for %s: expected a number in [%g, %g]\n", s, flag, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
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

enum {
    O_BIND = 256, O_PORT, O_WORKERS, O_TICK, O_SNAP, O_WSIZE, O_AST, O_NPC, O_MAXC, O_CKPT, O_CKEVERY,
    O_LOG, O_SEED, O_METRICS, O_TOKFILE, O_MAXMSG, O_OSOFT, O_OSOFTS, O_OHARD, O_IDLE, O_RATE, O_PORTFILE,
    O_HELP, O_VERSION, O_STOPAFTER,
};

int main(int argc, char **argv) {
    static sp_daemon_t d;
    sp_dconf_t *c = &d.conf;
    sp_dconf_default(c);
    const char *token_file = NULL;
    static const struct option opts[] = {
        {"bind", required_argument, NULL, O_BIND},
        {"port", required_argument, NULL, O_PORT},
        {"workers", required_argument, NULL, O_WORKERS},
        {"tick-hz", required_argument, NULL, O_TICK},
        {"snapshot-hz", required_argument, NULL, O_SNAP},
        {"world-size", required_argument, NULL, O_WSIZE},
        {"demo-asteroids", required_argument, NULL, O_AST},
        {"demo-npcs", required_argument, NULL, O_NPC},
        {"max-clients", required_argument, NULL, O_MAXC},
        {"checkpoint", required_argument, NULL, O_CKPT},
        {"checkpoint-every", required_argument, NULL, O_CKEVERY},
        {"log-level", required_argument, NULL, O_LOG},
        {"seed", required_argument, NULL, O_SEED},
        {"metrics-port", required_argument, NULL, O_METRICS},
        {"admin-token-file", required_argument, NULL, O_TOKFILE},
        {"max-message", required_argument, NULL, O_MAXMSG},
        {"obuf-soft", required_argument, NULL, O_OSOFT},
        {"obuf-soft-seconds", required_argument, NULL, O_OSOFTS},
        {"obuf-hard", required_argument, NULL, O_OHARD},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"rate", required_argument, NULL, O_RATE},
        {"port-file", required_argument, NULL, O_PORTFILE},
        {"stop-after-ticks", required_argument, NULL, O_STOPAFTER}, /* hidden: tests */
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    int ch;
    long v;
    double dv;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *flag = optind > 1 ? argv[optind - 1] : "?";
        int bad = 0;
        switch (ch) {
        case O_BIND:
            if (strlen(optarg) >= sizeof c->bind) {
                fprintf(stderr, "spacesimd: --bind address too long\n");
                return SP_EXIT_USAGE;
            }
            snprintf(c->bind, sizeof c->bind, "%s", optarg);
            break;
        case O_PORT: bad = parse_long("--port", optarg, 0, 65535, &v); c->port = (int)v; break;
        case O_WORKERS: bad = parse_long("--workers", optarg, 1, 256, &v); c->workers = (int)v; break;
        case O_TICK: bad = parse_long("--tick-hz", optarg, 1, 1000, &v); c->tick_hz = (int)v; break;
        case O_SNAP: bad = parse_long("--snapshot-hz", optarg, 1, 1000, &v); c->snapshot_hz = (int)v; break;
        case O_WSIZE: bad = parse_double("--world-size", optarg, 10, 1e7, &c->world_size); break;
        case O_AST: bad = parse_long("--demo-asteroids", optarg, 0, 2000000, &c->demo_asteroids); break;
        case O_NPC: bad = parse_long("--demo-npcs", optarg, 0, 1000000, &c->demo_npcs); break;
        case O_MAXC: bad = parse_long("--max-clients", optarg, 1, 100000, &v); c->max_clients = (int)v; break;
        case O_CKPT:
            if (strlen(optarg) >= sizeof c->checkpoint - 8 || optarg[0] == '\0') {
                fprintf(stderr, "spacesimd: --checkpoint path empty or too long\n");
                return SP_EXIT_USAGE;
            }
            snprintf(c->checkpoint, sizeof c->checkpoint, "%s", optarg);
            break;
        case O_CKEVERY: bad = parse_double("--checkpoint-every", optarg, 0, 1e7, &c->checkpoint_every); break;
        case O_LOG: {
            sp_log_level_t lv;
            if (sp_log_level_parse(optarg, &lv) != 0) {
                fprintf(stderr, "spacesimd: invalid --log-level '%s': expected error, warn, info or debug\n", optarg);
                return SP_EXIT_USAGE;
            }
            sp_log_set_level(lv);
            break;
        }
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (errno || *end || optarg[0] == '\0' || optarg[0] == '-') {
                fprintf(stderr, "spacesimd: invalid --seed '%s': expected an unsigned integer\n", optarg);
                return SP_EXIT_USAGE;
            }
            c->seed = s;
            break;
        }
        case O_METRICS: bad = parse_long("--metrics-port", optarg, 0, 65535, &v); c->metrics_port = (int)v; break;
        case O_TOKFILE: token_file = optarg; break;
        case O_MAXMSG: bad = parse_long("--max-message", optarg, 64, 16 << 20, &v); c->max_msg = (size_t)v; break;
        case O_OSOFT: bad = parse_long("--obuf-soft", optarg, 1024, 1L << 30, &v); c->obuf_soft = (size_t)v; break;
        case O_OSOFTS: bad = parse_double("--obuf-soft-seconds", optarg, 0, 3600, &c->obuf_soft_secs); break;
        case O_OHARD: bad = parse_long("--obuf-hard", optarg, 4096, 1L << 31, &v); c->obuf_hard = (size_t)v; break;
        case O_IDLE:
            bad = parse_double("--idle-timeout", optarg, 0.1, 1e6, &c->idle_timeout_secs);
            c->idle_ping_secs = c->idle_timeout_secs / 4;
            break;
        case O_RATE:
            bad = parse_double("--rate", optarg, 1, 1e7, &dv);
            c->rate_per_sec = dv;
            c->rate_burst = 2 * dv;
            break;
        case O_PORTFILE: c->port_file = optarg; break;
        case O_STOPAFTER:
            bad = parse_long("--stop-after-ticks", optarg, 1, LONG_MAX, &v);
            c->stop_after_ticks = (uint64_t)v;
            break;
        case O_HELP: usage(stdout); return SP_EXIT_OK;
        case O_VERSION: printf("spacesimd %s (protocol 1)\n", SPACESIMD_VERSION); return SP_EXIT_OK;
        case ':':
            fprintf(stderr, "spacesimd: option %s needs a value\n", flag);
            return SP_EXIT_USAGE;
        default:
            fprintf(stderr, "spacesimd: unknown option '%s' (try --help)\n", flag);
            return SP_EXIT_USAGE;
        }
        if (bad) return SP_EXIT_USAGE;
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
    const char *env = getenv("SPACESIM_ADMIN_TOKEN");
    if (token_file != NULL) {
        if (read_token_file(token_file, c) != 0) return SP_EXIT_CONFIG;
    } else if (env != NULL && env[0] != '\0') {
        if (strlen(env) >= sizeof c->admin_token) {
            fprintf(stderr, "spacesimd: SPACESIM_ADMIN_TOKEN longer than %zu bytes\n", sizeof c->admin_token - 1);
            return SP_EXIT_CONFIG;
        }
        snprintf(c->admin_token, sizeof c->admin_token, "%s", env);
        c->have_admin_token = true;
    }

    SP_LOGI("spacesimd %s starting (pid %ld)%s", SPACESIMD_VERSION, (long)getpid(),
            c->have_admin_token ? "" : "; no admin token set: admin methods disabled");
    sp_daemon_init(&d);

    int r = c->checkpoint[0] ? sp_checkpoint_load(&d) : SP_ENOENT;
    if (r < 0 && r != SP_ENOENT) return SP_EXIT_CHECKPOINT;
    if (r == SP_ENOENT) {
        d.wdef = sp_world_def_default();
        d.wdef.seed = c->seed;
        d.wdef.half_extent = (float)(c->world_size / 2);
        d.wdef.dt = 1.0f / (float)c->tick_hz;
        int e = sp_world_create(&d.wdef, &d.world);
        if (e < 0) {
            SP_LOGE("cannot create the world: %s", sp_strerror(e));
            return SP_EXIT_RUNTIME;
        }
        e = sp_world_populate_demo(d.world, (uint32_t)c->demo_asteroids, (uint32_t)c->demo_npcs);
        if (e < 0) {
            SP_LOGE("cannot populate the demo world (%ld asteroids, %ld NPCs): %s", c->demo_asteroids, c->demo_npcs,
                    sp_strerror(e));
            return SP_EXIT_RUNTIME;
        }
        /* Keep the demo lively: once a second, bring back up to 2% of the
         * NPC ships (at least 2) and as many asteroids, toward the numbers
         * asked for. Deterministic (world rng) and saved in checkpoints, so
         * a resumed world goes on respawning the same way. */
        uint32_t per = (uint32_t)(c->demo_npcs / 50);
        if (per < 2) per = 2;
        sp_world_set_respawn(d.world, (uint32_t)c->demo_npcs, (uint32_t)c->demo_asteroids, (uint32_t)c->tick_hz, per);
        SP_LOGI("new world: seed %llu, size %.0f, %u entities (respawn up to %u NPCs and %u asteroids per second)",
                (unsigned long long)c->seed, c->world_size, sp_world_count(d.world), per, per);
    } else {
        d.wdef = *sp_world_def(d.world);
        float want = 1.0f / (float)c->tick_hz;
        if (d.wdef.dt != want)
            SP_LOGW("checkpoint step is %.5f s but --tick-hz %d wants %.5f s: keeping the checkpoint's step",
                    (double)d.wdef.dt, c->tick_hz, (double)want);
    }
    r = sp_daemon_run(&d);
    sp_world_free(d.world);
    sp_daemon_destroy(&d);
    return r;
}
