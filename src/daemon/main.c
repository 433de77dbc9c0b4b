/* main.c: spacesimd command line, configuration file, start-up and exit codes.
 *
 * Every flag is one row of `flags` below: its name, value type and range,
 * where it lands in sp_dconf_t and its help line. From the rows come
 * getopt_long's table, the keys of the --config file (config.h: the same
 * names without "--"), --print-config, --help and the manual page (the build
 * runs `spacesimd --man`, clients/opts.h renders both), so none can drift.
 * Order of precedence: defaults, then the --config file, then the command
 * line (the command line wins).
 *
 * Setup failures print one clear line and exit non-zero (memcached): the
 * exit codes are listed in --help and in conf.h. The admin token is never
 * taken from argv (it would show in ps) nor from the configuration file
 * (often world-readable): SPACESIM_ADMIN_TOKEN or --admin-token-file PATH
 * (first line, trailing newline stripped). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clients/opts.h"
#include "cluster/cluster.h"
#include "gw/gateway.h"
#include "daemon/checkpoint.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/loop.h"
#include "rpc.h"
#include "sim/handoff.h"
#include "spacesim/error.h"

#ifndef SP_WEBDIR
#define SP_WEBDIR "/usr/local/share/spacesim/web"
#endif
#ifndef SP_SYSCONFDIR
#define SP_SYSCONFDIR "/usr/local/etc"
#endif

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
    {"http-port", "N", F_INT, 0, 65535, C(http_port), 0,
     "HTTP + WebSocket: the web view on http://HTTP-BIND:N/, Prometheus\n"
     "                           metrics at /metrics, the RPC over WebSocket at /ws\n"
     "                           (default 0 = off)",
     false},
    {"http-bind", "ADDR", F_STR, 0, 0, C(http_bind), sizeof(((sp_dconf_t *)0)->http_bind),
     "address of --http-port (default: the --bind address)", false},
    {"web-root", "DIR", F_STR, 0, 0, C(web_root), sizeof(((sp_dconf_t *)0)->web_root),
     "the web view's files (default " SP_WEBDIR ")", false},
    {"metrics-port", "N", F_INT, 0, 65535, C(metrics_port), 0, "the same as --http-port (its older name)", false},
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
    {"sndbuf", "BYTES", F_SIZE, 0, 1L << 30, C(sndbuf), 0,
     "kernel send buffer of each client socket (default 0 = the\n"
     "                           kernel's, which grows to megabytes on loopback): a\n"
     "                           smaller one makes the output limits above see a\n"
     "                           client that does not read sooner",
     false},
    {"snapshot-budget", "N", F_SIZE, 256, 1e8, C(snap_budget), 0,
     "entities per client per snapshot round (default 8192): at most N\n"
     "                           enter a view per snapshot, nearest first; a view of V\n"
     "                           entities gets a snapshot every ceil(V/N) rounds",
     false},
    {"interest-cell", "UNITS", F_DOUBLE, 1, 1e7, C(interest_cell), 0,
     "edge of the interest cells (default 1000): snapshots are encoded once\n"
     "                           per cell and shared by every client that sees it; a\n"
     "                           view holds whole cells, so it may reach one cell edge\n"
     "                           beyond its radius",
     false},
    {"resync-interval", "SECS", F_DOUBLE, 0, 3600, C(resync_secs), 0,
     "at most one full snapshot per client per SECS for resync (default 1)", false},
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
    {"nats", "URL", F_STR, 0, 0, C(nats_url), sizeof(((sp_dconf_t *)0)->nats_url),
     "join a cluster through the NATS server (JetStream on) at URL,\n"
     "                           e.g. nats://127.0.0.1:4222: this daemon owns some cells of\n"
     "                           the world and hands entities that cross into another's\n"
     "                           cell to it (default: off, one process holds the world)",
     false},
    {"upstream", "LIST", F_STR, 0, 0, C(upstream), sizeof(((sp_dconf_t *)0)->upstream),
     "be the cluster's gateway (spacesim-gw): serve clients a merged\n"
     "                           world from the daemons at LIST (host:port,host:port,...),\n"
     "                           forwarding their commands; the same --world-size and admin\n"
     "                           token as the daemons (default: off, a daemon)",
     false},
    {"session-base", "N", F_U64, 0, 0, C(session_base), 0,
     "with --upstream: the first session id (default 2147483648); several\n"
     "                           gateways need ranges apart, e.g. 2^31 + k * 2^24",
     false},
    {"cells", "NxM", F_STR, 0, 0, C(cells), sizeof(((sp_dconf_t *)0)->cells),
     "with --nats: the grid of cells over x/y, the same on every daemon\n"
     "                           (default 2x2, at most 64x64)",
     false},
    {"node", "N", F_INT, 0, 1023, C(node), 0, "with --nats: this daemon's node number, unique in the cluster (default 0)",
     false},
    {"ghost-band", "UNITS", F_DOUBLE, -1, 100000, C(ghost_band), 0,
     "with --nats: entities this close to a cell another daemon owns are\n"
     "                           sent to it each step as ghosts, which its ships may fire at\n"
     "                           and mine (default -1: the weapon range + 10; 0: none)",
     false},
    {"cluster-ttl", "SECS", F_DOUBLE, 1, 3600, C(cluster_ttl), 0,
     "with --nats: membership TTL (default 5); a daemon that cannot\n"
     "                           refresh its membership for 0.8 x SECS stops writing",
     false},
    {"cluster-journal", "PATH", F_PATH, 0, 0, C(cluster_journal), 0, "tests: append ownership changes to PATH", true},
    {"cluster-test-ships", "N", F_LONG, 0, 100000, C(cluster_test_ships), 0,
     "tests: ballistic world with N collision-free ships on lanes", true},
    {"cluster-pause-at", "N", F_U64, 0, 0, C(cluster_pause_at), 0,
     "tests: pause (as spacesim-cells pause) after the step to tick N", true},
    {"cluster-start-paused", "0|1", F_INT, 0, 1, C(cluster_start_paused), 0,
     "tests: 1 = start paused, until spacesim-cells resume", true},
    {"cluster-test-hold-at", "TICK", F_U64, 0, 0, C(cluster_test_hold_at), 0,
     "tests: publish no hand-off from the step to TICK on (they stay in the outbox)", true},
    {"cluster-test-refuse", "N", F_LONG, 0, 1000000, C(cluster_test_refuse), 0,
     "tests: refuse the first N hand-offs in, as a full world and as out of memory in turn", true},
};
#undef C
#define NFLAGS (sizeof flags / sizeof flags[0])
/* Options that are not settings (so not keys of the file). */
enum { O_HELP = 'h', O_VERSION = 'V', O_CONFIG = 256, O_PRINT_CONFIG, O_MAN, O_FLAG0 };

/* What the command line asked besides settings. */
typedef struct args {
    const char *config;       /* --config FILE */
    bool print_config;        /* --print-config */
    const char *token_file;   /* --admin-token-file (argv or the file) */
} args_t;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Flags that set more than one field, or none. */
static int special(const flag_t *fl, const char *v, sp_src_t src, sp_dconf_t *c, void *ctx, char *err,
                   size_t errlen) {
    args_t *a = ctx;
    const char *dd = src == SP_SRC_ARGV ? "--" : "";
    flag_t num = *fl; /* the row's range, typed as a plain number */
    num.type = F_DOUBLE;
    if (strcmp(fl->name, "log-level") == 0) {
        sp_log_level_t lv2;
        if (sp_log_level_parse(v, &lv2) != 0) {
            snprintf(err, errlen, "invalid value '%s' for %slog-level: expected error, warn, info or debug", v, dd);
            return -1;
        }
        sp_log_set_level(lv2);
    } else if (strcmp(fl->name, "admin-token-file") == 0) {
        a->token_file = v;
    } else if (strcmp(fl->name, "idle-timeout") == 0) {
        num.off = offsetof(sp_dconf_t, idle_timeout_secs);
        if (sp_config_apply(NULL, &num, v, src, c, err, errlen) != 0) return -1;
        c->idle_ping_secs = c->idle_timeout_secs / 4;
    } else if (strcmp(fl->name, "rate") == 0) {
        num.off = offsetof(sp_dconf_t, rate_per_sec);
        if (sp_config_apply(NULL, &num, v, src, c, err, errlen) != 0) return -1;
        c->rate_burst = 2 * c->rate_per_sec;
    } else if (strcmp(fl->name, "stop-after-ticks") == 0) {
        num.type = F_U64;
        num.off = offsetof(sp_dconf_t, stop_after_ticks);
        if (sp_config_apply(NULL, &num, v, src, c, err, errlen) != 0) return -1;
        if (c->stop_after_ticks == 0) {
            snprintf(err, errlen, "invalid value '%s' for %sstop-after-ticks: expected N >= 1", v, dd);
            return -1;
        }
    }
    return 0;
}

/* The effective value of a special flag, as the file says it. */
static bool show_special(const flag_t *fl, const sp_dconf_t *c, const void *ctx, char *buf, size_t len) {
    const args_t *a = ctx;
    if (strcmp(fl->name, "log-level") == 0) {
        snprintf(buf, len, "%s", level_names[sp_log_get_level()]);
    } else if (strcmp(fl->name, "admin-token-file") == 0) {
        if (a->token_file == NULL) return false;
        snprintf(buf, len, "%s", a->token_file);
    } else if (strcmp(fl->name, "idle-timeout") == 0) {
        sp_config_fmt_double(buf, len, c->idle_timeout_secs);
    } else if (strcmp(fl->name, "rate") == 0) {
        sp_config_fmt_double(buf, len, c->rate_per_sec);
    } else {
        return false;
    }
    return true;
}

static args_t g_args;
static const sp_flagset_t flagset = {flags, NFLAGS, special, show_special, &g_args};

/* ---------------------------------------------------------------- --help and the page */

static const char *const synopsis[] = {"[--config FILE] [OPTION]...", "--print-config [--config FILE] [OPTION]...",
                                       NULL};

static const spc_section_t sections[] = {
    {"Configuration file",
     "--config FILE reads settings from an INI file: one 'key = value' per line, where the keys are the "
     "long options above without the two dashes (port = 7777). Lines starting with '#' or ';' are "
     "comments; a ';' after a space ends a value. There are no sections, and each key may appear once. "
     "The command line overrides the file. An unknown key, a bad value or a line without '=' stops "
     "spacesimd at start-up with FILE:LINE and exit status 2. Relative paths are relative to the "
     "working directory.\n\n"
     "The admin token is never a key: name a file that holds it (admin-token-file = PATH, readable by "
     "the daemon only) or set SPACESIM_ADMIN_TOKEN. --print-config writes the effective settings, "
     "every key with its help as a comment, in this format, so its output is a valid configuration "
     "file:\n\n"
     "  spacesimd --port 7000 --print-config > spacesimd.conf\n"
     "  spacesimd --config spacesimd.conf"},
    {"Signals",
     "SIGTERM and SIGINT shut down cleanly: stop accepting connections, write the checkpoint (with "
     "--checkpoint), flush the clients' output for at most 2 seconds, close them and exit 0. A second "
     "signal during that exits at once. SIGHUP reopens the --log-file (logrotate), and is ignored "
     "without one. SIGUSR1 writes a checkpoint now (with --checkpoint; otherwise a log line says there "
     "is none). SIGPIPE is ignored."},
    {"Exit status",
     "  0  ok (also after --help, --version, --print-config)\n"
     "  2  bad usage: an unknown option, a bad value, an error in the --config file\n"
     "  3  configuration: the --config file, the admin token file or the --log-file unusable, bad "
     "environment\n"
     "  4  cannot listen on the address or port\n"
     "  5  the checkpoint is unusable: its directory missing or not writable, not a regular file, "
     "locked by another spacesimd (named by its pid), unreadable, corrupt or truncated\n"
     "  6  runtime failure (out of memory, a failed checkpoint at shutdown)"},
    {"Environment",
     "SPACESIM_ADMIN_TOKEN: the token that unlocks the admin methods, unless --admin-token-file is "
     "given. Without either, admin methods are refused.\n\n"
     "NOTIFY_SOCKET: set by systemd for Type=notify services; spacesimd sends READY=1 once it listens "
     "and STOPPING=1 when it begins to shut down (see sd_notify(3)). Unset: nothing is sent."},
    {"Files",
     SP_SYSCONFDIR "/spacesim/spacesimd.conf.example: an example configuration file (every key, at its "
     "default).\n\n"
     "The --checkpoint PATH file: the world, written atomically (PATH.tmp, then renamed) every "
     "--checkpoint-every seconds and at shutdown; read at start-up when it exists.\n\n"
     "spacesimd.service: the systemd unit of the source tree (contrib/): Type=notify, DynamicUser, "
     "checkpoints in /var/lib/spacesim, the admin token from an EnvironmentFile."},
    {"Web view",
     "With --http-port N, http://HTTP-BIND:N/ serves a live map of the world in the browser (files "
     "of --web-root: index.html, app.js, style.css), with an operator's console behind the admin "
     "token, and /ws carries the same MessagePack-RPC as the TCP port over WebSocket (one message "
     "per binary frame, the same limits). libwebsockets serves it on the daemon's own event loop."},
    {"Metrics",
     "With --http-port N (or its old name --metrics-port), http://HTTP-BIND:N/metrics serves Prometheus text: tick-time histogram, "
     "counters of ticks, game time, bytes, snapshots, commands and kicks, gauges of clients, entities "
     "and queue depths, the process_* metrics and spacesim_build_info."},
};

/* The option list for --help and the page: every visible row of `flags`
 * (the page and --help cannot disagree with the parser), then the options
 * that are not settings. */
static spc_opt_t opt_rows[NFLAGS + 6];
static spc_optgroup_t opt_group = {"Options", NULL, opt_rows, 0, 0};
static char version_extra[32];
static const spc_prog_t prog = {
    .name = "spacesimd",
    .version = SPACESIMD_VERSION,
    .version_extra = version_extra,
    .summary = "authoritative space-simulation server",
    .synopsis = synopsis,
    .description = "spacesimd runs one simulated world (asteroids, NPC ships, players' ships) at a fixed "
                   "tick rate and serves it to clients over TCP with MessagePack-RPC: requests and "
                   "replies, events, and per-client snapshots of the entities around each client's ships "
                   "(proto/PROTOCOL.md in the source tree). It logs to stderr, one line per event.",
    .groups = &opt_group,
    .ngroups = 1,
    .sections = sections,
    .nsections = sizeof sections / sizeof sections[0],
    .see_also = "spacesim-cli(1), spacesim-load(1), systemd.exec(5), sd_notify(3)",
};

static void build_prog(void) {
    snprintf(version_extra, sizeof version_extra, "(protocol %d)", SP_PROTO_VERSION);
    size_t n = 0;
    opt_rows[n++] = (spc_opt_t){O_CONFIG, 0, "config", "FILE",
                                "read settings from FILE (INI, see CONFIGURATION FILE); the command line wins"};
    opt_rows[n++] = (spc_opt_t){O_PRINT_CONFIG, 0, "print-config", NULL,
                                "print the effective settings as a configuration file and exit"};
    for (size_t i = 0; i < NFLAGS; i++)
        if (!flags[i].hidden) opt_rows[n++] = (spc_opt_t){O_FLAG0 + (int)i, 0, flags[i].name, flags[i].arg, flags[i].help};
    opt_rows[n++] = (spc_opt_t){O_HELP, 'h', "help", NULL, "print this help and exit"};
    opt_rows[n++] = (spc_opt_t){O_VERSION, 'V', "version", NULL, "print the version and exit"};
    opt_group.n = n;
}

/* ---------------------------------------------------------------- argv */

/* Parse argv: settings into *c, the rest into *a. Returns -1 to go on, or
 * the exit code to stop with (after --help, --version, --man, a bad option). */
static int parse_args(int argc, char **argv, sp_dconf_t *c, args_t *a) {
    struct option opts[NFLAGS + 6];
    size_t n = 0;
    for (size_t i = 0; i < NFLAGS; i++) opts[n++] = (struct option){flags[i].name, required_argument, NULL, O_FLAG0 + (int)i};
    opts[n++] = (struct option){"config", required_argument, NULL, O_CONFIG};
    opts[n++] = (struct option){"print-config", no_argument, NULL, O_PRINT_CONFIG};
    opts[n++] = (struct option){"help", no_argument, NULL, O_HELP};
    opts[n++] = (struct option){"version", no_argument, NULL, O_VERSION};
    opts[n++] = (struct option){"man", no_argument, NULL, O_MAN}; /* hidden: the build writes spacesimd.1 */
    opts[n] = (struct option){NULL, 0, NULL, 0};
    int ch;
    char err[512];
    opterr = 0;
    optind = 0; /* glibc: 0 restarts the scan (main parses argv twice, around the file) */
    while ((ch = getopt_long(argc, argv, ":hV", opts, NULL)) != -1) {
        const char *flag = optind > 1 ? argv[optind - 1] : "?";
        switch (ch) {
        case O_HELP: spc_opts_help(&prog, stdout); return SP_EXIT_OK;
        case O_MAN: spc_opts_man(&prog, stdout); return SP_EXIT_OK;
        case O_VERSION: printf("spacesimd %s (protocol %d)\n", SPACESIMD_VERSION, SP_PROTO_VERSION); return SP_EXIT_OK;
        case O_CONFIG: a->config = optarg; continue;
        case O_PRINT_CONFIG: a->print_config = true; continue;
        case ':': fprintf(stderr, "spacesimd: option %s needs a value\n", flag); return SP_EXIT_USAGE;
        default: break;
        }
        if (ch < O_FLAG0 || ch >= O_FLAG0 + (int)NFLAGS) {
            fprintf(stderr, "spacesimd: unknown option '%s' (try --help)\n", flag);
            return SP_EXIT_USAGE;
        }
        if (sp_config_apply(&flagset, &flags[ch - O_FLAG0], optarg, SP_SRC_ARGV, c, err, sizeof err) != 0) {
            fprintf(stderr, "spacesimd: %s\n", err);
            return SP_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "spacesimd: unexpected argument '%s' (try --help)\n", argv[optind]);
        return SP_EXIT_USAGE;
    }
    return -1;
}

/* Settings that must agree with each other, wherever they came from. */
static int check_conf(const sp_dconf_t *c) {
    if (c->obuf_hard < c->obuf_soft) {
        fprintf(stderr, "spacesimd: --obuf-hard (%zu) must be >= --obuf-soft (%zu)\n", c->obuf_hard, c->obuf_soft);
        return SP_EXIT_USAGE;
    }
    if (c->metrics_port != 0 && c->http_port != 0 && c->metrics_port != c->http_port) {
        fprintf(stderr, "spacesimd: --metrics-port is the old name of --http-port: give one of them\n");
        return SP_EXIT_USAGE;
    }
    if (c->http_port != 0 && c->http_port == c->port) {
        fprintf(stderr, "spacesimd: --http-port must differ from --port\n");
        return SP_EXIT_USAGE;
    }
    return -1;
}

/* Defaults, then the file, then argv. Returns -1 to go on, or the exit code. */
static int configure(int argc, char **argv, sp_dconf_t *c) {
    build_prog();
    /* First pass into a scratch copy: --help and friends, bad options and
     * values are reported before the file is read, and --config is found. */
    sp_dconf_t scratch = *c;
    args_t first = {0};
    g_args = first;
    int r = parse_args(argc, argv, &scratch, &g_args);
    if (r >= 0) return r;
    first = g_args;
    g_args = (args_t){0};
    if (first.config != NULL && (r = sp_config_read(&flagset, first.config, c)) != 0)
        return r == SP_EINVAL ? SP_EXIT_USAGE : r == SP_EIO ? SP_EXIT_CONFIG : SP_EXIT_RUNTIME;
    if ((r = parse_args(argc, argv, c, &g_args)) >= 0) return r;
    if ((r = check_conf(c)) >= 0) return r;
    if (c->http_port == 0) c->http_port = c->metrics_port; /* the old name, one server */
    if (g_args.print_config) {
        sp_config_print(&flagset, c, stdout);
        return SP_EXIT_OK;
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

/* A cluster daemon mints ids past every id its earlier incarnations could
 * have minted (one may have died after its last checkpoint): incarnation k
 * starts at counter (k - 1) << 30. 0, or SP_EINVAL after logging. */
static int cluster_id_floor(sp_daemon_t *d) {
    uint64_t inc = sp_cluster_incarnation(d->cluster);
    if (inc > 1 && sp_world_set_id_floor(d->world, (inc - 1) << 30) != 0) {
        SP_LOGE("cluster: incarnation %llu of node %d has no id range left (2^30 ids each, 8192 in all): "
                "use another --node or a new NATS store",
                (unsigned long long)inc, d->conf.node);
        return SP_EINVAL;
    }
    return 0;
}

/* A fresh demo world from the flags. 0, or the exit code. */
static int new_world(sp_daemon_t *d) {
    const sp_dconf_t *c = &d->conf;
    d->wdef = sp_world_def_default();
    d->wdef.seed = c->seed;
    d->wdef.half_extent = (float)(c->world_size / 2);
    d->wdef.dt = 1.0f / (float)c->tick_hz;
    if (d->cluster) {
        d->wdef.id_node = (uint32_t)c->node;
        if (c->cluster_test_ships >= 0) d->wdef.ship_max_accel = 0.0f; /* ballistic: only walls turn ships */
    }
    d->wdef.allocator = &d->blocks.a;
    int e = sp_world_create(&d->wdef, &d->world);
    if (e < 0) {
        SP_LOGE("cannot create the world: %s", sp_strerror(e));
        return SP_EXIT_RUNTIME;
    }
    /* A restarted node mints ids past every id its earlier incarnations
     * could have minted (there is no checkpoint to carry the counter yet):
     * incarnation k starts at counter (k - 1) << 30. */
    if (d->cluster && cluster_id_floor(d) != 0) return SP_EXIT_RUNTIME;
    /* A cluster daemon holds its cells only: it makes the same draws as
     * one process would and keeps those in its cells (sp_world_set_region). */
    if (d->cluster) {
        /* Asteroids then NPCs, as one call draws them, each tallied per cell
         * (the respawn share: sp_daemon_set_respawn). */
        sp_world_set_region(d->world, sp_cluster_region, d->cluster);
        sp_cluster_tally(d->cluster, 0);
        e = sp_world_populate_demo(d->world, (uint32_t)c->demo_asteroids, 0);
        sp_cluster_tally(d->cluster, 1);
        if (e == 0) e = sp_world_populate_demo(d->world, 0, (uint32_t)c->demo_npcs);
        sp_cluster_tally(d->cluster, -1);
    } else {
        e = sp_world_populate_demo(d->world, (uint32_t)c->demo_asteroids, (uint32_t)c->demo_npcs);
    }
    if (e < 0) {
        SP_LOGE("cannot populate the demo world (%ld asteroids, %ld NPCs): %s", c->demo_asteroids, c->demo_npcs,
                sp_strerror(e));
        return SP_EXIT_RUNTIME;
    }
    /* Keep the demo lively (sp_daemon_set_respawn). Deterministic (world
     * rng) and saved in checkpoints, so a resumed world goes on respawning
     * the same way. */
    uint32_t per = sp_daemon_set_respawn(d);
    if (d->cluster && c->cluster_test_ships > 0 &&
        sp_cluster_spawn_test_ships(d->cluster, d->world, (uint32_t)c->cluster_test_ships, c->seed) != 0)
        return SP_EXIT_RUNTIME;
    SP_LOGI("new world: seed %llu, size %.0f, %u entities (respawn up to %u NPCs and %u asteroids per second)",
            (unsigned long long)c->seed, c->world_size, sp_world_count(d->world), per, per);
    return 0;
}

/* The world: resumed from the checkpoint, or new. 0, or the exit code. */
/* After the world exists (new or loaded): a cluster daemon starts at the
 * cluster's tick, so the frontier does not hold the others back while this
 * world counts up to it. */
static void cluster_join(sp_daemon_t *d) {
    uint64_t t = sp_cluster_join_tick(d->cluster);
    if (t > sp_world_tick(d->world)) {
        sp_world_set_tick(d->world, t);
        SP_LOGI("cluster: joining at tick %llu", (unsigned long long)t);
    }
}

static int open_world(sp_daemon_t *d) {
    if (d->conf.checkpoint[0] && sp_checkpoint_lock(d) != 0) return SP_EXIT_CHECKPOINT;
    int r = d->conf.checkpoint[0] ? sp_checkpoint_load(d) : SP_ENOENT;
    if (r == SP_ENOENT) {
        r = new_world(d);
        if (r == 0 && d->cluster) cluster_join(d);
        return r;
    }
    if (r < 0) return SP_EXIT_CHECKPOINT;
    if (d->cluster) {
        /* Its ids must be this node's (a checkpoint of another node, or a
         * one-process world of node 0 under --node 2, would mint theirs). */
        if (sp_world_def(d->world)->id_node != (uint32_t)d->conf.node) {
            SP_LOGE("checkpoint %s holds node %u's world, not node %d's; not starting", d->conf.checkpoint,
                    sp_world_def(d->world)->id_node, d->conf.node);
            return SP_EXIT_CHECKPOINT;
        }
        if (cluster_id_floor(d) != 0) return SP_EXIT_RUNTIME;
        sp_world_set_region(d->world, sp_cluster_region, d->cluster);
        cluster_join(d);
    }
    d->wdef = *sp_world_def(d->world);
    float want = 1.0f / (float)d->conf.tick_hz;
    if (d->wdef.dt != want)
        SP_LOGW("checkpoint step is %.5f s but --tick-hz %d wants %.5f s: keeping the checkpoint's step",
                (double)d->wdef.dt, d->conf.tick_hz, (double)want);
    return 0;
}

/* A gateway's world: empty, never stepped; merged frames carry its rounds
 * (gateway.h). Its definition gives the frames their cube and rules. */
static int open_mirror(sp_daemon_t *d) {
    const sp_dconf_t *c = &d->conf;
    d->wdef = sp_world_def_default();
    d->wdef.half_extent = (float)(c->world_size / 2);
    d->wdef.dt = 1.0f / (float)c->tick_hz;
    d->wdef.allocator = &d->blocks.a;
    int e = sp_world_create(&d->wdef, &d->world);
    if (e < 0) {
        SP_LOGE("cannot create the world: %s", sp_strerror(e));
        return SP_EXIT_RUNTIME;
    }
    return 0;
}

/* --nats: join the cluster before the world exists (its node, incarnation
 * and cells shape the world). Blocking, on the main thread: the loop does
 * not run yet. 0, or the exit code. */
static int open_cluster(sp_daemon_t *d) {
    const sp_dconf_t *c = &d->conf;
    sp_cluster_conf_t cc = {.url = c->nats_url, .node = (uint32_t)c->node, .ttl_secs = c->cluster_ttl,
                            .journal = c->cluster_journal, .pause_at = c->cluster_pause_at,
                            .start_paused = c->cluster_start_paused, .test_refuse = (uint64_t)c->cluster_test_refuse,
                            .test_hold_at = c->cluster_test_hold_at, .ghost_band = (float)c->ghost_band};
    if (sp_cells_parse(c->cells, &cc.cells.nx, &cc.cells.ny) != 0) {
        fprintf(stderr, "spacesimd: invalid value '%s' for --cells: expected NxM, 1..%u each\n", c->cells,
                SP_CELLS_MAX_SIDE);
        return SP_EXIT_USAGE;
    }
    cc.cells.half = (float)(c->world_size / 2);
    return sp_cluster_open(&cc, &d->cluster) == 0 ? 0 : SP_EXIT_RUNTIME;
}

int main(int argc, char **argv) {
    static sp_daemon_t d;
    sp_dconf_t *c = &d.conf;
    sp_dconf_default(c);
    int r = configure(argc, argv, c);
    if (r >= 0) return r;
    if (load_token(c, g_args.token_file) != 0) return SP_EXIT_CONFIG;
    if (c->log_file && sp_log_open(c->log_file) != 0) {
        fprintf(stderr, "spacesimd: cannot open --log-file %s: %s\n", c->log_file, strerror(errno));
        return SP_EXIT_CONFIG;
    }
    SP_LOGI("spacesimd %s starting (pid %ld)%s", SPACESIMD_VERSION, (long)getpid(),
            c->have_admin_token ? "" : "; no admin token set: admin methods disabled");
    sp_daemon_init(&d);
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    if (strcmp(base, "spacesim-gw") == 0 && !c->upstream[0]) {
        fprintf(stderr, "spacesim-gw: give the daemons with --upstream HOST:PORT[,HOST:PORT...]\n");
        return SP_EXIT_USAGE;
    }
    if (c->upstream[0]) {
        /* A gateway: an empty mirror world, no cluster, no checkpoint. */
        if (c->nats_url[0] || c->checkpoint[0]) {
            fprintf(stderr, "spacesimd: --upstream (a gateway) takes no --nats and no --checkpoint\n");
            return SP_EXIT_USAGE;
        }
        if (c->session_base > SP_SESSION_ID_MAX) {
            fprintf(stderr, "spacesimd: --session-base must be 1 to %u\n", SP_SESSION_ID_MAX);
            return SP_EXIT_USAGE;
        }
        if (!c->have_admin_token) {
            fprintf(stderr, "spacesimd: a gateway (--upstream) needs the cluster's admin token "
                            "(SPACESIM_ADMIN_TOKEN or --admin-token-file): it speaks to the daemons as an admin\n");
            return SP_EXIT_CONFIG;
        }
        if (c->session_base == 0) c->session_base = 1ull << 31;
        if (sp_gw_open(&d, c->upstream, &d.gw) != 0) return SP_EXIT_USAGE;
        d.next_session = c->session_base;
        if ((r = open_mirror(&d)) != 0) return r;
    } else {
        if (c->nats_url[0] && (r = open_cluster(&d)) != 0) return r;
        if ((r = open_world(&d)) != 0) return r;
    }
    r = sp_daemon_run(&d);
    sp_gw_free(d.gw);
    sp_cluster_free(d.cluster);
    sp_world_free(d.world);
    sp_daemon_destroy(&d);
    return r;
}
