/* clients/cli.c: spacesim-cli, a redis-cli for spacesimd.
 *
 *   spacesim-cli [OPTIONS] METHOD [ARG ...] [';' METHOD [ARG ...]] ...
 *   spacesim-cli [OPTIONS] -e 'hello alice; spawn; move $ship_id [10,0,0]'
 *   spacesim-cli [OPTIONS] watch [--count N] [--radius R] [--center [x,y,z]]
 *   spacesim-cli [OPTIONS] map   [--frames N] [--radius R] [--center [x,y,z]] [--spawn]
 *
 * Every command of one invocation runs on ONE connection, in order: a
 * session's ships belong to its connection, so `spawn` then `move` only make
 * sense together (`spacesim-cli spawn` alone spawns a ship nobody can steer
 * afterwards). Methods other than ping need a session: unless the script
 * starts with its own `hello`, the CLI says hello first (name from -n, token
 * from SPACESIM_ADMIN_TOKEN so `alert` works for admins).
 *
 * Blocking I/O with poll() deadlines (proto/rpc.h frames the stream, so an
 * oversized or garbage reply is a clear protocol error, not a hang); watch
 * and map decode snapshots with proto/snapshot.h's sp_snap_apply() (protocol
 * 2, per-cell chunks; sp_snap_v1_apply() for a protocol 1 daemon, as hello
 * says), the same decoder the tests validate against the encoder. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <editline/readline.h>
#include <poll.h>

#include "common.h"
#include "opts.h"
#include "snapshot.h"
#include "spacesim/error.h"

#define CLI_VERSION "0.1.0"

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct opts {
    const char *host;
    int port;
    double timeout;
    const char *name;
    bool no_hello;
    bool raw;     /* one-line JSON even on a terminal */
    bool verbose;
} opts_t;

/* ---------------------------------------------------------------- options */

/* The one description of the command line: getopt_long, --help and the
 * manual page (spacesim-cli --man, installed as spacesim-cli.1) all come
 * from these tables (clients/opts.h). */
enum { O_NO_HELLO = SPC_OPT_FIRST, O_RAW, O_COUNT, O_FRAMES, O_RADIUS, O_CENTER, O_CENTRE, O_SPAWN };

static const spc_opt_t cli_opts[] = {
    {'h', 'h', "host", "HOST", "server address, a name or an IPv4/IPv6 address (default 127.0.0.1)"},
    {'p', 'p', "port", "PORT", "server port, 1..65535 (default 7777)"},
    {'t', 't', "timeout", "SECONDS", "deadline for connecting and for each response, in (0, 3600] (default 5)"},
    {'n', 'n', "name", "NAME", "session name for the automatic hello (default spacesim-cli)"},
    {'e', 'e', "exec", "SCRIPT", "run SCRIPT, commands separated by ';', all on one connection, then exit"},
    {'i', 'i', "interactive", NULL,
     "interactive mode even when commands are given on the command line: they run first, then the prompt"},
    {O_NO_HELLO, 0, "no-hello", NULL, "do not say hello first (only ping works without a session)"},
    {O_RAW, 0, "raw", NULL, "one-line JSON even on a terminal"},
    {'v', 'v', "verbose", NULL, "also print the result of the automatic hello"},
};

static const spc_opt_t live_opts[] = {
    {O_COUNT, 0, "count", "N", "watch: stop after N snapshots (default: until Ctrl-C)"},
    {O_FRAMES, 0, "frames", "N", "map: stop after drawing N frames (default: until q)"},
    {O_RADIUS, 0, "radius", "R", "subscribe with area-of-interest radius R, world units (default: the server's, 2000)"},
    {O_CENTER, 0, "center", "[X,Y,Z]", "centre of the area of interest (default: your ships, else the origin)"},
    {O_CENTRE, 0, "centre", "[X,Y,Z]", "same as --center"},
    {O_SPAWN, 0, "spawn", NULL, "map: spawn a ship first, so the view follows it"},
};

static const spc_optgroup_t cli_groups[] = {
    {"Options", NULL, cli_opts, sizeof cli_opts / sizeof cli_opts[0], 1},
    {"Options of watch and map", "These follow the word watch or map.", live_opts,
     sizeof live_opts / sizeof live_opts[0], 0},
};

static const char *const cli_synopsis[] = {
    "[OPTIONS]",
    "[OPTIONS] METHOD [ARG ...] [';' METHOD [ARG ...]] ...",
    "[OPTIONS] -e 'METHOD ARG ...; METHOD ARG ...'",
    "[OPTIONS] watch [--count N] [--radius R] [--center [X,Y,Z]]",
    "[OPTIONS] map [--frames N] [--radius R] [--center [X,Y,Z]] [--spawn]",
    NULL,
};

static const spc_section_t cli_sections[] = {
    {"Arguments",
     "Each argument becomes one MessagePack value: numbers (42, -1.5, 0x10), nil or null, true and false, JSON "
     "arrays and objects ([10,0,-2.5], {\"a\": 1}); anything else is a string (\"quoted\" JSON strings too). In a "
     "script, 'single quotes' make a string of anything, and $KEY is the value of KEY in an earlier result "
     "($ship_id after spawn, $session after hello)."},
    {"Sessions",
     "All commands of one invocation share ONE connection, and ships belong to the session of the connection that "
     "spawned them: a lone `spacesim-cli spawn` makes a ship no later invocation can move. Chain the steps with -e "
     "or ';' words, or use the interactive mode, where the ships live across typed commands.\n\n"
     "Unless the first command is hello, the CLI first sends hello [NAME, token], with the token from "
     "SPACESIM_ADMIN_TOKEN (needed for alert, clients and kick)."},
    {"Commands",
     "  ping | stats | inspect ID | alert MESSAGE [PRIORITY] | subscribe R [[X,Y,Z]]\n"
     "  spawn | move SHIP [VX,VY,VZ] | fire SHIP TARGET | mine SHIP ASTEROID | resync\n"
     "  limits | clients | kick SESSION [REASON]   (clients and kick: admin)\n"
     "  hello NAME [TOKEN]\n\n"
     "Any other word is sent as a method name too: the server answers METHOD_NOT_FOUND. Two steps run in the CLI "
     "itself, in scripts and at the prompt; they print nothing:\n\n"
     "  sleep SECONDS    wait that long (snapshots are read and dropped meanwhile)\n"
     "  wait-ticks N     wait until the server's tick has advanced by N\n\n"
     "And two live views, each alone on the command line:\n\n"
     "  watch   one line per snapshot and event (tick, entities seen, entered,\n"
     "          changed, left, bytes) until Ctrl-C or --count snapshots; the\n"
     "          summary rate counts the intervals between the first and the\n"
     "          last snapshot\n"
     "  map     live top-down view (x right, y up), legend at the bottom:\n"
     "          @ your ships, A NPC ships, P other players, * projectiles,\n"
     "          . small and o large asteroids; keys: + and - zoom, arrows or\n"
     "          h j k l pan, c recentres, q quits"},
    {"Interactive mode",
     "With no command (or with -i), the CLI connects, says hello and shows a prompt, HOST:PORT>, like redis-cli. "
     "Type commands as in a script (';' separates several on one line); results print as they come, an error reply "
     "prints (error) and the prompt comes back. The line editor is libedit: arrows and Emacs keys edit, up and down "
     "walk the history, kept in ~/.spacesim_cli_history (SPACESIM_CLI_HISTFILE overrides it). help lists the "
     "commands; quit, exit or Ctrl-D leaves. Between commands the CLI keeps reading the connection (snapshots are "
     "dropped) and pings the server, so the session and its ships stay alive while you think.\n\n"
     "When standard input is not a terminal, the same mode reads one line at a time without prompt or editing, so "
     "commands can be piped in: printf 'spawn\\ninspect $ship_id\\n' | spacesim-cli."},
    {"Exit status",
     "0 when every command succeeded (in interactive mode: when the session ended normally), 1 after an error reply "
     "in -e or command-line scripts, or a connection or protocol problem, 2 on bad usage."},
    {"Environment",
     "  SPACESIM_ADMIN_TOKEN   token sent with the automatic hello (never on argv)\n"
     "  SPACESIM_CLI_HISTFILE  history file of the interactive mode\n"
     "  NO_COLOR               map draws without colours"},
    {"Examples",
     "  spacesim-cli ping\n"
     "  spacesim-cli -e 'spawn; move $ship_id [10,0,0]; wait-ticks 30; inspect $ship_id'\n"
     "  spacesim-cli spawn ';' move '$ship_id' '[10,0,0]'\n"
     "  spacesim-cli watch --count 40 --radius 500\n"
     "  spacesim-cli map --spawn\n"
     "  spacesim-cli -h 10.0.0.5 -p 7777"},
};

static const spc_prog_t cli_prog = {
    .name = "spacesim-cli",
    .version = CLI_VERSION,
    .version_extra = "(protocol " SPC_STR(SP_PROTO_VERSION) ")",
    .summary = "command-line and interactive client for spacesimd",
    .synopsis = cli_synopsis,
    .description = "Send MessagePack-RPC requests to spacesimd and print each result as JSON (pretty on a "
                   "terminal, one line otherwise), watch the snapshot stream, or draw a live map.",
    .groups = cli_groups,
    .ngroups = sizeof cli_groups / sizeof cli_groups[0],
    .sections = cli_sections,
    .nsections = sizeof cli_sections / sizeof cli_sections[0],
    .see_also = "spacesimd(1), spacesim-load(1), redis-cli(1)",
};

/* ---------------------------------------------------------------- script */

typedef struct word {
    char *s;
    bool force_str; /* single-quoted in a script: always a string */
} word_t;

typedef struct cmd {
    word_t *w;
    int n;
} cmd_t;

typedef struct script {
    cmd_t *cmds;
    int n;
} script_t;

static void die_oom(void) {
    fprintf(stderr, "spacesim-cli: out of memory\n");
    exit(1);
}

static void cmd_push(cmd_t *c, char *s, bool force_str) {
    word_t *w = realloc(c->w, sizeof *w * (size_t)(c->n + 1));
    if (!w) die_oom();
    c->w = w;
    c->w[c->n].s = s;
    c->w[c->n].force_str = force_str;
    c->n++;
}

static cmd_t *script_new_cmd(script_t *sc) {
    cmd_t *c = realloc(sc->cmds, sizeof *c * (size_t)(sc->n + 1));
    if (!c) die_oom();
    sc->cmds = c;
    memset(&sc->cmds[sc->n], 0, sizeof(cmd_t));
    return &sc->cmds[sc->n++];
}

/* Split a script: ';' separates commands, whitespace separates words, but
 * not inside "double quotes" (kept: a JSON string), 'single quotes' (a raw
 * string) or [brackets]/{braces}. Returns 0 or -1 (message printed). */
static int parse_script(script_t *sc, const char *text) {
    cmd_t *cur = NULL;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        if (*p == '\0') break;
        if (*p == ';') {
            cur = NULL;
            p++;
            continue;
        }
        if (!cur) cur = script_new_cmd(sc);
        const char *start = p;
        bool single = *p == '\'';
        if (single) {
            const char *q = strchr(p + 1, '\'');
            if (!q) {
                fprintf(stderr, "spacesim-cli: unterminated ' in script\n");
                return -1;
            }
            char *s = strndup(p + 1, (size_t)(q - p - 1));
            if (!s) die_oom();
            cmd_push(cur, s, true);
            p = q + 1;
            continue;
        }
        int depth = 0;
        bool inq = false;
        while (*p) {
            char ch = *p;
            if (inq) {
                if (ch == '\\' && p[1]) p++;
                else if (ch == '"') inq = false;
            } else if (ch == '"') inq = true;
            else if (ch == '[' || ch == '{') depth++;
            else if (ch == ']' || ch == '}') depth--;
            else if (depth <= 0 && (ch == ' ' || ch == '\t' || ch == '\n' || ch == ';')) break;
            p++;
        }
        if (inq || depth > 0) {
            fprintf(stderr, "spacesim-cli: unbalanced %s in script near '%.20s'\n", inq ? "\"" : "brackets", start);
            return -1;
        }
        char *s = strndup(start, (size_t)(p - start));
        if (!s) die_oom();
        cmd_push(cur, s, false);
    }
    return 0;
}

/* Results remembered for $KEY substitution: key -> one-line JSON text. */
typedef struct var {
    char *key, *json;
} var_t;
static var_t *g_vars;
static int g_nvars;

static void remember(const msgpack_object *result) {
    if (result->type != MSGPACK_OBJECT_MAP) return;
    for (uint32_t i = 0; i < result->via.map.size; i++) {
        const msgpack_object *k = &result->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR) continue;
        spc_buf_t b = {0};
        if (spc_json_append(&b, &result->via.map.ptr[i].val, -1) != 0) continue;
        var_t *v = realloc(g_vars, sizeof *v * (size_t)(g_nvars + 1));
        if (!v) die_oom();
        g_vars = v;
        g_vars[g_nvars].key = strndup(k->via.str.ptr, k->via.str.size);
        g_vars[g_nvars].json = b.p;
        g_nvars++;
    }
}

static void vars_free(void) {
    for (int i = 0; i < g_nvars; i++) {
        free(g_vars[i].key);
        free(g_vars[i].json);
    }
    free(g_vars);
    g_vars = NULL;
    g_nvars = 0;
}

/* Words from argv are borrowed (owned == false); parsed ones are freed. */
static void script_free(script_t *sc, bool owned) {
    for (int i = 0; i < sc->n; i++) {
        if (owned)
            for (int k = 0; k < sc->cmds[i].n; k++) free(sc->cmds[i].w[k].s);
        free(sc->cmds[i].w);
    }
    free(sc->cmds);
    sc->cmds = NULL;
    sc->n = 0;
}

static const char *lookup_var(const char *key) {
    for (int i = g_nvars - 1; i >= 0; i--)
        if (strcmp(g_vars[i].key, key) == 0) return g_vars[i].json;
    return NULL;
}

/* ---------------------------------------------------------------- requests */

/* Send one request and wait for its response, skipping notifications (but
 * an `error` notification is fatal: the server closes after it). Returns
 * 0 ok (*result), 1 error reply or an argument refused before sending
 * (printed; the connection is still usable), -1 transport problem (printed).
 * *result points into c's decoder: valid until the next read. */
static int call(spc_conn_t *c, const opts_t *o, const cmd_t *cmd, const msgpack_object **result) {
    char err[512] = "";
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t id = c->next_id++;
    const char *method = cmd->w[0].s;
    int rc = sp_rpc_pack_request_begin(&pk, id, method, (uint32_t)(cmd->n - 1));
    for (int i = 1; rc == 0 && i < cmd->n; i++) {
        const word_t *w = &cmd->w[i];
        const char *text = w->s;
        if (!w->force_str && text[0] == '$' && text[1]) {
            text = lookup_var(text + 1);
            if (!text) {
                fprintf(stderr, "spacesim-cli: %s: no earlier result has a key '%s'\n", method, w->s + 1);
                msgpack_sbuffer_destroy(&sb);
                return 1; /* nothing was sent: the connection is still usable */
            }
        }
        if (w->force_str) {
            size_t n = strlen(text);
            rc = msgpack_pack_str(&pk, n) || msgpack_pack_str_body(&pk, text, n);
        } else if (spc_pack_word(&pk, text, err, sizeof err) != 0) {
            fprintf(stderr, "spacesim-cli: %s\n", err);
            msgpack_sbuffer_destroy(&sb);
            return 1; /* refused before sending */
        }
    }
    double deadline = spc_now() + o->timeout;
    if (rc == 0) rc = spc_send(c, sb.data, sb.size, deadline, err, sizeof err);
    msgpack_sbuffer_destroy(&sb);
    if (rc != 0) {
        fprintf(stderr, "spacesim-cli: %s\n", err[0] ? err : "out of memory");
        return -1;
    }
    for (;;) {
        sp_rpc_msg_t m;
        int r = spc_read(c, deadline, &m, err, sizeof err);
        if (r == 0) {
            fprintf(stderr,
                    "spacesim-cli: timed out: no response to '%s' from %s within %.1f s "
                    "(server overloaded, or not a spacesimd?)\n",
                    method, c->where, o->timeout);
            return -1;
        }
        if (r == -2) {
            fprintf(stderr, "spacesim-cli: interrupted\n");
            return -1;
        }
        if (r < 0) {
            fprintf(stderr, "spacesim-cli: %s\n", err);
            return -1;
        }
        if (m.type == SP_RPC_NOTIFY) {
            if (m.method_len == 5 && memcmp(m.method, "error", 5) == 0) {
                const msgpack_object *e = m.params->via.array.size ? &m.params->via.array.ptr[0] : NULL;
                int64_t code = 0;
                const char *msg = "";
                size_t ml = 0;
                if (e && sp_rpc_parse_error(e, &code, &msg, &ml) == 0)
                    fprintf(stderr, "spacesim-cli: the server refused our input and closed: %s: %.*s\n",
                            spc_error_name(code), (int)ml, msg);
                else
                    fprintf(stderr, "spacesim-cli: the server sent an error notification\n");
                return -1;
            }
            continue; /* snapshots and events are for watch/map */
        }
        if (m.type != SP_RPC_RESPONSE) {
            fprintf(stderr, "spacesim-cli: protocol error: the server sent a request\n");
            return -1;
        }
        if (m.msgid != id) {
            fprintf(stderr, "spacesim-cli: protocol error: response to msgid %u while waiting for %u\n", m.msgid, id);
            return -1;
        }
        if (m.error->type != MSGPACK_OBJECT_NIL) {
            int64_t code = 0;
            const char *msg = "";
            size_t ml = 0;
            if (sp_rpc_parse_error(m.error, &code, &msg, &ml) == 0)
                fprintf(stderr, "(error) %s: %.*s\n", spc_error_name(code), (int)ml, msg);
            else {
                fprintf(stderr, "(error) ");
                spc_print_json(stderr, m.error, -1);
                fputc('\n', stderr);
            }
            return 1;
        }
        *result = m.result;
        return 0;
    }
}

static int say_hello(spc_conn_t *c, const opts_t *o, const char *name) {
    cmd_t h = {0};
    word_t w[3] = {{"hello", false}, {(char *)name, true}, {"nil", false}};
    const char *tok = getenv("SPACESIM_ADMIN_TOKEN");
    if (tok && *tok) w[2] = (word_t){(char *)tok, true};
    h.w = w;
    h.n = 3;
    const msgpack_object *res;
    int rc = call(c, o, &h, &res);
    if (rc == 0) {
        remember(res);
        if (o->verbose) {
            spc_print_json(stdout, res, o->raw || !isatty(1) ? -1 : 0);
            fputc('\n', stdout);
        }
    }
    return rc;
}

/* ---------------------------------------------------------------- steps */

static int server_tick(spc_conn_t *c, const opts_t *o, uint64_t *tick);

/* Read and drop what the server pushes (snapshots, events) until `until`
 * (spc_now() seconds). A session that stops reading would have its
 * snapshots skipped and, past the hard output limit, be disconnected; an
 * `error` notification means the server is closing us; its `ping`
 * reminder (after a silence) is answered with a ping, so a long sleep or
 * an idle prompt never hits IDLE_TIMEOUT_SEC. Returns 0 at the deadline, 1
 * when interrupted (g_stop), -1 when the connection is gone (printed). */
static int drain_until(spc_conn_t *c, const opts_t *o, double until) {
    char err[512];
    while (!g_stop) {
        sp_rpc_msg_t m;
        int r = spc_read(c, until, &m, err, sizeof err);
        if (r == 0) return 0;
        if (r == -2) continue;
        if (r < 0) {
            fprintf(stderr, "spacesim-cli: %s\n", err);
            return -1;
        }
        if (m.type == SP_RPC_NOTIFY && m.method_len == 5 && memcmp(m.method, "error", 5) == 0) {
            fprintf(stderr, "spacesim-cli: the server sent an error notification and closes: ");
            spc_print_json(stderr, m.params, -1);
            fputc('\n', stderr);
            return -1;
        }
        if (m.type == SP_RPC_NOTIFY && m.method_len == 4 && memcmp(m.method, "ping", 4) == 0) {
            uint64_t t;
            if (server_tick(c, o, &t) < 0) return -1;
        }
    }
    return 1;
}

/* The server's current tick (a ping). Returns call()'s status. */
static int server_tick(spc_conn_t *c, const opts_t *o, uint64_t *tick) {
    word_t w[1] = {{"ping", false}};
    cmd_t ping = {w, 1};
    const msgpack_object *res;
    int rc = call(c, o, &ping, &res);
    if (rc == 0 && !spc_u64(spc_get(res, "tick"), tick)) {
        fprintf(stderr, "spacesim-cli: protocol error: ping result has no tick\n");
        return -1;
    }
    return rc;
}

/* wait-ticks N: ping until the tick has advanced by N. Between pings the
 * connection is drained for ~20 ms (under a tick at the usual 30 Hz, far
 * under the server's rate limit). A tick that does not move for the -t
 * timeout is an error (a stopped or overloaded server), not a hang. */
static int wait_ticks(spc_conn_t *c, const opts_t *o, uint64_t n) {
    uint64_t t0, t, last;
    int rc = server_tick(c, o, &t0);
    if (rc != 0) return rc;
    last = t0;
    double moved = spc_now();
    while (last - t0 < n) {
        int d = drain_until(c, o, spc_now() + 0.02);
        if (d != 0) return -1;
        if ((rc = server_tick(c, o, &t)) != 0) return rc;
        if (t != last) {
            last = t;
            moved = spc_now();
        } else if (spc_now() - moved > o->timeout) {
            fprintf(stderr, "(error) wait-ticks: the server's tick stayed at %llu for %.1f s\n",
                    (unsigned long long)t, o->timeout);
            return 1;
        }
    }
    return 0;
}

enum { B_NONE, B_SLEEP, B_WAIT, B_HELP, B_QUIT };
static int builtin(const char *w) {
    if (strcmp(w, "sleep") == 0) return B_SLEEP;
    if (strcmp(w, "wait-ticks") == 0) return B_WAIT;
    if (strcmp(w, "help") == 0) return B_HELP;
    if (strcmp(w, "quit") == 0 || strcmp(w, "exit") == 0) return B_QUIT;
    return B_NONE;
}

static bool parse_double(const char *s, double *out);
static void interactive_help(void);

/* Run one command: a request (result printed as JSON and remembered for
 * $KEY) or a CLI step. Returns 0 ok, 1 error reply or bad step (printed;
 * the caller decides whether to go on), -1 the connection is unusable. */
static int run_step(spc_conn_t *c, const opts_t *o, const cmd_t *cmd, int indent) {
    const char *w0 = cmd->w[0].s;
    int b = builtin(w0);
    if (b == B_SLEEP) {
        double sec;
        if (cmd->n != 2 || !parse_double(cmd->w[1].s, &sec) || sec < 0 || sec > 86400) {
            fprintf(stderr, "(error) usage: sleep SECONDS (0..86400, e.g. sleep 0.5)\n");
            return 1;
        }
        return drain_until(c, o, spc_now() + sec) == 0 ? 0 : -1;
    }
    if (b == B_WAIT) {
        char *end;
        unsigned long long n = cmd->n == 2 ? strtoull(cmd->w[1].s, &end, 10) : 0;
        if (cmd->n != 2 || *end || n < 1 || n > 1000000) {
            fprintf(stderr, "(error) usage: wait-ticks N (1..1000000 ticks, e.g. wait-ticks 30)\n");
            return 1;
        }
        return wait_ticks(c, o, n);
    }
    const msgpack_object *res;
    int rc = call(c, o, cmd, &res);
    if (rc != 0) return rc;
    remember(res);
    spc_print_json(stdout, res, indent);
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

static int open_session(spc_conn_t *c, const opts_t *o, bool hello) {
    char err[512];
    if (spc_connect(c, o->host, o->port, o->timeout, err, sizeof err) != 0) {
        fprintf(stderr, "spacesim-cli: %s\n", err);
        return -1;
    }
    if (hello && say_hello(c, o, o->name) != 0) {
        spc_close(c);
        return -1;
    }
    return 0;
}

static int run_script(const opts_t *o, script_t *sc) {
    /* Only ping (and the CLI's own steps, which ping) work without a session. */
    bool need_hello = false;
    if (!o->no_hello && strcmp(sc->cmds[0].w[0].s, "hello") != 0)
        for (int i = 0; i < sc->n; i++)
            if (strcmp(sc->cmds[i].w[0].s, "ping") != 0 && builtin(sc->cmds[i].w[0].s) == B_NONE) need_hello = true;
    spc_conn_t c;
    if (open_session(&c, o, need_hello) != 0) return 1;
    int status = 0;
    int indent = o->raw || !isatty(1) ? -1 : 0;
    for (int i = 0; status == 0 && i < sc->n; i++) {
        int b = builtin(sc->cmds[i].w[0].s);
        if (b == B_QUIT) break;
        if (b == B_HELP) {
            interactive_help();
            continue;
        }
        if (run_step(&c, o, &sc->cmds[i], indent) != 0) status = 1;
    }
    spc_close(&c);
    return status;
}

/* ---------------------------------------------------------------- interactive */

/* The interactive session: one connection for the whole prompt, so ships
 * spawned by one line are moved by the next. While the prompt waits for a
 * key, the connection must still be read (the server keeps pushing
 * snapshots) and pinged (IDLE_TIMEOUT_SEC disconnects a silent client):
 * libedit's readline() gets its characters from wait_key() below, which
 * does both between keys. (The callback interface, rl_callback_read_char,
 * redraws the prompt before the handler's output in this libedit.) */
static struct {
    spc_conn_t *c;
    const opts_t *o;
    bool tty, quit, broken;
    int indent;
    double next_ping;
} I;

#define KEEPALIVE_SEC 15.0 /* well inside IDLE_PING_SEC (30) */

/* Wait for input on fd 0 while serving the connection. Returns 1 when fd 0
 * is readable, 0 when the session must end (connection gone, Ctrl-C). */
static int wait_input(void) {
    while (!I.broken && !g_stop) {
        double left = I.next_ping - spc_now();
        struct pollfd pfd[2] = {{0, POLLIN, 0}, {I.c->fd, POLLIN, 0}};
        int pr = poll(pfd, 2, left > 0 ? (int)(left * 1000) + 1 : 0);
        if (pr < 0 && errno != EINTR) return 0;
        if (pr > 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) && drain_until(I.c, I.o, spc_now() + 0.001) < 0)
            I.broken = true;
        if (!I.broken && spc_now() >= I.next_ping) {
            uint64_t t;
            if (server_tick(I.c, I.o, &t) < 0) I.broken = true;
            I.next_ping = spc_now() + KEEPALIVE_SEC;
        }
        if (pr > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) return 1;
    }
    return 0;
}

/* libedit's character source (rl_getc_function): one byte of fd 0, or EOF
 * when the session ends. */
static int wait_key(FILE *f) {
    (void)f;
    for (;;) {
        if (!wait_input()) return EOF;
        unsigned char ch;
        ssize_t n = read(0, &ch, 1);
        if (n == 1) return ch;
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return EOF;
    }
}

static void interactive_help(void) {
    printf("Type a command as in a script; ';' separates several on one line:\n"
           "  ping | stats | inspect ID | alert MESSAGE [PRIORITY] | subscribe R [[X,Y,Z]]\n"
           "  spawn | move SHIP [VX,VY,VZ] | fire SHIP TARGET | mine SHIP ASTEROID | resync\n"
           "  limits | clients | kick SESSION [REASON]\n"
           "  sleep SECONDS | wait-ticks N | help | quit\n"
           "$KEY is a value from an earlier result: spawn, then move $ship_id [10,0,0].\n");
}

/* Run one typed line (owned: freed here). */
static void interactive_line(char *line) {
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (*p) {
        if (I.tty) add_history(line);
        script_t sc = {0};
        if (parse_script(&sc, p) == 0) {
            for (int i = 0; i < sc.n && !I.quit && !I.broken && !g_stop; i++) {
                int b = builtin(sc.cmds[i].w[0].s);
                if (b == B_QUIT) I.quit = true;
                else if (b == B_HELP) interactive_help();
                else if (run_step(I.c, I.o, &sc.cmds[i], I.indent) < 0) I.broken = true;
            }
        }
        script_free(&sc, true);
        fflush(stdout);
    }
    free(line);
}

static void history_path(char *buf, size_t n) {
    const char *env = getenv("SPACESIM_CLI_HISTFILE"), *home = getenv("HOME");
    if (env) snprintf(buf, n, "%s", env);
    else if (home && *home) snprintf(buf, n, "%s/.spacesim_cli_history", home);
    else buf[0] = '\0';
}

static int run_interactive(const opts_t *o, script_t *first) {
    spc_conn_t c;
    if (open_session(&c, o, !o->no_hello) != 0) return 1;
    memset(&I, 0, sizeof I);
    I.c = &c;
    I.o = o;
    I.tty = isatty(0);
    I.indent = o->raw || !isatty(1) ? -1 : 0;
    I.next_ping = spc_now() + KEEPALIVE_SEC;
    for (int i = 0; i < first->n && !I.broken; i++)
        if (run_step(&c, o, &first->cmds[i], I.indent) < 0) I.broken = true;
    char hist[1024], prompt[340];
    history_path(hist, sizeof hist);
    snprintf(prompt, sizeof prompt, "%s> ", c.where);
    if (I.tty) {
        rl_readline_name = "spacesim-cli";
        rl_getc_function = wait_key; /* before the first readline(): libedit installs it then */
        using_history();
        stifle_history(1000);
        if (hist[0]) read_history(hist);
        while (!I.quit && !I.broken && !g_stop) {
            char *line = readline(prompt);
            if (!line) break; /* Ctrl-D, or the session ended inside wait_key() */
            interactive_line(line);
        }
        if (hist[0]) {
            write_history(hist);
            history_truncate_file(hist, 1000);
        }
        if (!I.quit) fputc('\n', stdout);
    } else {
        /* Not a terminal: plain lines, no prompt, no editing (pipes, tests). */
        char *buf = NULL;
        size_t cap = 0;
        while (!I.quit && !I.broken && wait_input()) {
            ssize_t n = getline(&buf, &cap, stdin);
            if (n < 0) break;
            if (n && buf[n - 1] == '\n') buf[n - 1] = '\0';
            char *line = strdup(buf);
            if (!line) die_oom();
            interactive_line(line);
        }
        free(buf);
    }
    spc_close(&c);
    return I.broken ? 1 : 0;
}

/* ---------------------------------------------------------------- watch / map */

typedef struct live {
    spc_conn_t c;
    spc_view_t view;    /* in the daemon's protocol (hello's "protocol") */
    uint64_t session;
    uint64_t snapshots, bytes, events, desyncs;
    int bad_in_row; /* consecutive malformed snapshots */
    double radius;
    double center[3];
    bool has_center;
} live_t;

static int live_start(live_t *L, const opts_t *o, double radius, const char *center, bool spawn) {
    char err[512];
    memset(L, 0, sizeof *L);
    spc_view_init(&L->view);
    if (spc_connect(&L->c, o->host, o->port, o->timeout, err, sizeof err) != 0) {
        fprintf(stderr, "spacesim-cli: %s\n", err);
        return -1;
    }
    if (say_hello(&L->c, o, o->name) != 0) return -1;
    const char *s = lookup_var("session");
    L->session = s ? strtoull(s, NULL, 10) : 0;
    const char *proto = lookup_var("protocol");
    spc_view_set_protocol(&L->view, proto ? strtoll(proto, NULL, 10) : SP_PROTO_VERSION);
    L->radius = radius > 0 ? radius : 2000.0; /* DEFAULT_RADIUS of the protocol */
    if (radius > 0 || center) {
        char rb[64];
        snprintf(rb, sizeof rb, "%.17g", L->radius);
        word_t w[3] = {{"subscribe", false}, {rb, false}, {(char *)center, false}};
        cmd_t sub = {w, center ? 3 : 2};
        const msgpack_object *res;
        if (call(&L->c, o, &sub, &res) != 0) return -1;
    }
    if (center) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (spc_pack_word(&pk, center, err, sizeof err) == 0) {
            msgpack_zone z;
            msgpack_zone_init(&z, 256);
            msgpack_object obj;
            if (msgpack_unpack(sb.data, sb.size, NULL, &z, &obj) == MSGPACK_UNPACK_SUCCESS &&
                obj.type == MSGPACK_OBJECT_ARRAY && obj.via.array.size == 3) {
                for (int i = 0; i < 3; i++) spc_num(&obj.via.array.ptr[i], &L->center[i]);
                L->has_center = true;
            }
            msgpack_zone_destroy(&z);
        }
        msgpack_sbuffer_destroy(&sb);
    }
    if (spawn) {
        word_t w[1] = {{"spawn", false}};
        cmd_t sp = {w, 1};
        const msgpack_object *res;
        if (call(&L->c, o, &sp, &res) != 0) return -1;
        remember(res);
    }
    return 0;
}

static void live_end(live_t *L) {
    spc_close(&L->c);
    spc_view_destroy(&L->view);
}

/* Ask for a full snapshot after a desync (fire and forget: its response is
 * skipped by the read loop like any other response). */
static void send_simple(live_t *L, const char *method) {
    char err[256];
    spc_send_words(&L->c, method, NULL, 0, NULL, spc_now() + 5, err, sizeof err);
}

/* Handle one message in watch/map. Returns 1 when it was a snapshot that was
 * applied, 0 otherwise, -1 on a fatal problem (printed). */
static int live_handle(live_t *L, const sp_rpc_msg_t *m, bool print, sp_snap_stats_t *st) {
    if (m->type == SP_RPC_RESPONSE) {
        if (m->error->type != MSGPACK_OBJECT_NIL && print) {
            fprintf(stdout, "response %u: error ", m->msgid);
            spc_print_json(stdout, m->error, -1);
            fputc('\n', stdout);
        }
        return 0;
    }
    if (m->type != SP_RPC_NOTIFY) return 0;
    if (m->method_len == 8 && memcmp(m->method, "snapshot", 8) == 0) {
        int rc = spc_view_apply(&L->view, m->params, st);
        L->bytes += m->wire_size;
        if (rc == SP_EPROTO || rc == SP_ECORRUPT) {
            L->desyncs++;
            if (rc == SP_ECORRUPT && ++L->bad_in_row >= 5) {
                fprintf(stderr,
                        "spacesim-cli: protocol error: %s sends snapshots that do not follow proto/PROTOCOL.md "
                        "(5 malformed in a row); is the daemon built from the same sources?\n",
                        L->c.where);
                return -1;
            }
            if (print)
                printf("snapshot: %s; asking for a full one (resync)\n",
                       rc == SP_EPROTO ? "desync (base tick is not ours)" : "malformed snapshot");
            spc_view_reset(&L->view);
            send_simple(L, "resync");
            return 0;
        }
        if (rc != 0) {
            fprintf(stderr, "spacesim-cli: snapshot: %s\n", sp_strerror(rc));
            return -1;
        }
        L->snapshots++;
        L->bad_in_row = 0;
        st->bytes = m->wire_size;
        return 1;
    }
    if (m->method_len == 5 && memcmp(m->method, "event", 5) == 0) {
        L->events++;
        if (print) {
            const msgpack_object *ev = m->params->via.array.size ? &m->params->via.array.ptr[0] : m->params;
            const msgpack_object *t = spc_get(ev, "type"), *tick = spc_get(ev, "tick");
            uint64_t tk = 0;
            spc_u64(tick, &tk);
            printf("tick %-8llu event %-14.*s ", (unsigned long long)tk, t && t->type == MSGPACK_OBJECT_STR ? (int)t->via.str.size : 1,
                   t && t->type == MSGPACK_OBJECT_STR ? t->via.str.ptr : "?");
            spc_print_json(stdout, ev, -1);
            fputc('\n', stdout);
        }
        return 0;
    }
    if (m->method_len == 5 && memcmp(m->method, "error", 5) == 0) {
        fprintf(stderr, "spacesim-cli: server error: ");
        spc_print_json(stderr, m->params, -1);
        fputc('\n', stderr);
        return -1;
    }
    if (m->method_len == 4 && memcmp(m->method, "ping", 4) == 0) send_simple(L, "ping");
    return 0;
}

static int run_watch(const opts_t *o, long count, double radius, const char *center) {
    live_t L;
    if (live_start(&L, o, radius, center, false) != 0) {
        live_end(&L);
        return 1;
    }
    printf("watching %s as session %llu (Ctrl-C to stop)\n", L.c.where, (unsigned long long)L.session);
    fflush(stdout);
    double next_ping = spc_now() + 15, t0 = spc_now(), t_first = 0, t_last = 0;
    int status = 0;
    while (!g_stop) {
        sp_rpc_msg_t m;
        char err[512];
        int r = spc_read(&L.c, spc_now() + 1.0, &m, err, sizeof err);
        if (r == -2) continue;
        if (r < 0) {
            fprintf(stderr, "spacesim-cli: %s\n", err);
            status = 1;
            break;
        }
        if (spc_now() > next_ping) {
            send_simple(&L, "ping"); /* keeps the idle timer of a read-only client happy */
            next_ping = spc_now() + 15;
        }
        if (r == 0) continue;
        sp_snap_stats_t st;
        memset(&st, 0, sizeof st);
        int h = live_handle(&L, &m, true, &st);
        if (h < 0) {
            status = 1;
            break;
        }
        if (h == 1) {
            t_last = spc_now();
            if (L.snapshots == 1) t_first = t_last;
            if (st.full)
                printf("tick %-8llu full             seen %-6u entered %-5u changed %-5u left %-5u bytes %zu",
                       (unsigned long long)st.tick, st.count, st.entered, st.changed, st.left, st.bytes);
            else
                printf("tick %-8llu delta base %-6llu seen %-6u entered %-5u changed %-5u left %-5u bytes %zu",
                       (unsigned long long)st.tick, (unsigned long long)st.base_tick, st.count, st.entered,
                       st.changed, st.left, st.bytes);
            /* Protocol 2: the interest cells the snapshot named (full ones
             * are newly seen or resent after a skip) and those let go. */
            if (L.view.proto >= 2) printf(" cells %u (full %u) gone %u", st.chunks, st.full_cells, st.gone);
            putchar('\n');
            if (count > 0 && (long)L.snapshots >= count) break;
        }
        fflush(stdout);
    }
    /* The rate is over the window the snapshots really span: n snapshots
     * are n-1 intervals from the first to the last (counting from the start
     * made a 0.1 s run of 4 snapshots report 33.5/s against a 20/s stream). */
    double dt = spc_now() - t0, span = t_last - t_first;
    char rate[64];
    if (L.snapshots >= 2 && span > 0)
        snprintf(rate, sizeof rate, "%.1f snapshots/s over %.2f s", (double)(L.snapshots - 1) / span, span);
    else
        snprintf(rate, sizeof rate, "rate needs 2 snapshots");
    printf("%llu snapshots, %llu events, %llu bytes in %.1f s (%s, %.0f bytes/snapshot), %llu desyncs\n",
           (unsigned long long)L.snapshots, (unsigned long long)L.events, (unsigned long long)L.bytes, dt, rate,
           L.snapshots ? (double)L.bytes / (double)L.snapshots : 0.0, (unsigned long long)L.desyncs);
    live_end(&L);
    return status;
}

/* ---------------------------------------------------------------- map */

static struct termios g_tio;
static bool g_tio_saved;
static bool g_map_screen;

static void map_restore(void) {
    if (g_map_screen) fputs("\x1b[0m\x1b[?25h\x1b[?1049l", stdout);
    fflush(stdout);
    if (g_tio_saved) tcsetattr(0, TCSANOW, &g_tio);
}

typedef struct mapstate {
    int cols, rows;     /* drawing area in cells */
    double scale;       /* world units per cell column; a row is 2x (cells are tall) */
    double cx, cy;      /* centre in world units */
    bool follow;        /* centre on own ships */
    bool color;
    double pan_x, pan_y;
} mapstate_t;

static void term_size(int *cols, int *rows) {
    struct winsize ws;
    if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20 && ws.ws_row >= 8) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    } else {
        *cols = 80;
        *rows = 24;
    }
}

/* The legend names every glyph and every key, in two lines that fit an
 * 80-column terminal (tests/net/check_clients.c checks both). */
#define MAP_LEGEND_LINES 2
static const char *const map_legend[MAP_LEGEND_LINES] = {
    " @ you  A NPC ship  P other player  * projectile  . small  o large asteroid",
    " x right, y up    keys: + - zoom  arrows or h j k l pan  c recentre  q quit",
};

static void map_draw(live_t *L, mapstate_t *ms, const sp_snap_stats_t *st) {
    int W, H;
    term_size(&W, &H);
    ms->cols = W;
    ms->rows = H - 1 - MAP_LEGEND_LINES; /* status line on top, legend at the bottom */
    const spc_view_t *v = &L->view;
    size_t own = 0, ships = 0, npcs = 0, asts = 0, projs = 0;
    double ox = 0, oy = 0;
    spc_view_iter_t it = {0};
    for (const sp_snap_rec_t *r; (r = spc_view_next(v, &it));) {
        if (r->kind == SP_KIND_SHIP) {
            ships++;
            if (r->owner == 0) npcs++;
            if (L->session && r->owner == L->session) {
                own++;
                ox += sp_snap_pos(r->pos[0]);
                oy += sp_snap_pos(r->pos[1]);
            }
        } else if (r->kind == SP_KIND_ASTEROID) asts++;
        else if (r->kind == SP_KIND_PROJECTILE) projs++;
    }
    if (ms->follow && own) {
        ms->cx = ox / (double)own + ms->pan_x;
        ms->cy = oy / (double)own + ms->pan_y;
    } else {
        ms->cx = (L->has_center ? L->center[0] : 0) + ms->pan_x;
        ms->cy = (L->has_center ? L->center[1] : 0) + ms->pan_y;
    }
    /* cell: 0 empty, then priorities (higher wins) */
    size_t ncell = (size_t)ms->cols * (size_t)ms->rows;
    unsigned char *cell = calloc(ncell, 1);
    if (!cell) die_oom();
    it = (spc_view_iter_t){0};
    for (const sp_snap_rec_t *r; (r = spc_view_next(v, &it));) {
        double x = sp_snap_pos(r->pos[0]), y = sp_snap_pos(r->pos[1]);
        long col = lround((x - ms->cx) / ms->scale + ms->cols / 2.0);
        long row = lround((ms->cy - y) / (2 * ms->scale) + ms->rows / 2.0);
        if (col < 0 || col >= ms->cols || row < 0 || row >= ms->rows) continue;
        unsigned char pr;
        if (r->kind == SP_KIND_SHIP) pr = (L->session && r->owner == L->session) ? 6 : (r->owner ? 5 : 4);
        else if (r->kind == SP_KIND_PROJECTILE) pr = 3;
        else if (r->kind == SP_KIND_ASTEROID) pr = sp_snap_radius(r->radius) >= 2 * ms->scale ? 2 : 1;
        else pr = 1;
        unsigned char *c = &cell[(size_t)row * (size_t)ms->cols + (size_t)col];
        if (pr > *c) *c = pr;
    }
    spc_buf_t b = {0};
    spc_buf_printf(&b, "\x1b[H");
    char status[512];
    snprintf(status, sizeof status,
             " tick %llu  %.3g u/col  (%.0f,%.0f)%s  you %zu  ships %zu npc %zu  ast %zu  proj %zu  %zu B",
             (unsigned long long)st->tick, ms->scale, ms->cx, ms->cy, ms->follow && own ? "*" : "", own, ships, npcs,
             asts, projs, st->bytes);
    status[ms->cols < (int)sizeof status ? ms->cols : (int)sizeof status - 1] = '\0';
    spc_buf_printf(&b, "%s%-*s%s\r\n", ms->color ? "\x1b[7m" : "", ms->cols, status, ms->color ? "\x1b[0m" : "");
    static const char glyph[] = " .o*APa@";
    static const char *const colour[] = {"", "\x1b[2m", "\x1b[37m", "\x1b[35m", "\x1b[31m", "\x1b[36m", "", "\x1b[1;32m"};
    for (int row = 0; row < ms->rows; row++) {
        int last = 0;
        for (int col = 0; col < ms->cols; col++) {
            unsigned char c = cell[(size_t)row * (size_t)ms->cols + (size_t)col];
            int g = c == 6 ? 7 : c; /* own ships: '@' */
            if (ms->color && g != last) spc_buf_printf(&b, "\x1b[0m%s", colour[g]);
            last = g;
            spc_buf_printf(&b, "%c", glyph[g]);
        }
        spc_buf_printf(&b, "%s\r\n", ms->color ? "\x1b[0m" : "");
    }
    for (int i = 0; i < MAP_LEGEND_LINES; i++) {
        /* Narrower than 80 columns: cut, never wrap (a wrapped line would scroll the frame). */
        int n = (int)strlen(map_legend[i]);
        if (n > ms->cols) n = ms->cols;
        spc_buf_printf(&b, "%.*s%*s%s", n, map_legend[i], ms->cols - n, "", i + 1 < MAP_LEGEND_LINES ? "\r\n" : "");
    }
    if (b.p) fwrite(b.p, 1, b.len, stdout);
    fflush(stdout);
    spc_buf_free(&b);
    free(cell);
}

static void map_key(mapstate_t *ms, const char *k, ssize_t n, bool *quit) {
    for (ssize_t i = 0; i < n; i++) {
        char ch = k[i];
        double step = ms->scale * ms->cols / 8;
        if (ch == 'q' || ch == 'Q' || ch == 3) *quit = true;
        else if (ch == '+' || ch == '=') ms->scale /= 1.5;
        else if (ch == '-' || ch == '_') ms->scale *= 1.5;
        else if (ch == 'c') ms->pan_x = ms->pan_y = 0;
        else if (ch == 'h') ms->pan_x -= step;
        else if (ch == 'l') ms->pan_x += step;
        else if (ch == 'k') ms->pan_y += step;
        else if (ch == 'j') ms->pan_y -= step;
        else if (ch == 0x1b && i + 2 < n && k[i + 1] == '[') {
            char a = k[i + 2];
            if (a == 'A') ms->pan_y += step;
            else if (a == 'B') ms->pan_y -= step;
            else if (a == 'C') ms->pan_x += step;
            else if (a == 'D') ms->pan_x -= step;
            i += 2;
        }
    }
    if (ms->scale < 0.01) ms->scale = 0.01;
}

static int run_map(const opts_t *o, long frames, double radius, const char *center, bool spawn) {
    live_t L;
    if (live_start(&L, o, radius, center, spawn) != 0) {
        live_end(&L);
        return 1;
    }
    mapstate_t ms = {0};
    term_size(&ms.cols, &ms.rows);
    ms.rows -= 1 + MAP_LEGEND_LINES;
    ms.follow = true;
    ms.color = isatty(1) && getenv("NO_COLOR") == NULL;
    /* Fit the area of interest: 2R across the columns or down the rows (a
     * row is two columns tall). */
    double sx = 2 * L.radius / ms.cols, sy = 2 * L.radius / (2.0 * ms.rows);
    ms.scale = sx > sy ? sx : sy;
    bool interactive = isatty(0) && isatty(1);
    if (interactive && tcgetattr(0, &g_tio) == 0) {
        struct termios raw = g_tio;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(0, TCSANOW, &raw);
        g_tio_saved = true;
    }
    if (isatty(1)) {
        fputs("\x1b[?1049h\x1b[?25l\x1b[2J", stdout);
        g_map_screen = true;
    }
    atexit(map_restore);
    int status = 0;
    long drawn = 0;
    double next_ping = spc_now() + 15;
    bool quit = false;
    sp_snap_stats_t last = {0};
    while (!g_stop && !quit) {
        sp_rpc_msg_t m;
        char err[512];
        int r = spc_read(&L.c, spc_now() + (interactive ? 0.05 : 1.0), &m, err, sizeof err);
        if (interactive) {
            char k[16];
            ssize_t n = read(0, k, sizeof k);
            if (n > 0) {
                map_key(&ms, k, n, &quit);
                map_draw(&L, &ms, &last);
            }
        }
        if (spc_now() > next_ping) {
            send_simple(&L, "ping");
            next_ping = spc_now() + 15;
        }
        if (r == 0 || r == -2) continue;
        if (r < 0) {
            map_restore();
            g_map_screen = false;
            fprintf(stderr, "spacesim-cli: %s\n", err);
            status = 1;
            break;
        }
        sp_snap_stats_t st;
        memset(&st, 0, sizeof st);
        int h = live_handle(&L, &m, false, &st);
        if (h < 0) {
            status = 1;
            break;
        }
        if (h == 1) {
            last = st;
            map_draw(&L, &ms, &st);
            if (!g_map_screen) fputs("\n", stdout);
            if (frames > 0 && ++drawn >= frames) break;
        }
    }
    map_restore();
    g_map_screen = false;
    g_tio_saved = false;
    live_end(&L);
    return status;
}

/* ---------------------------------------------------------------- main */

static bool parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

typedef struct cli_args {
    opts_t o;
    const char *script_text;
    bool interactive;
    long count;
    double radius;
    const char *center;
    bool spawn, is_map;
} cli_args_t;

static int on_opt(int id, const char *arg, void *ctx) {
    cli_args_t *a = ctx;
    char *end;
    switch (id) {
    case 'h': a->o.host = arg; return 0;
    case 'p': {
        long p = strtol(arg, &end, 10);
        if (*end || p < 1 || p > 65535) return spc_opts_bad(&cli_prog, "-p needs a port 1..65535, got '%s'", arg);
        a->o.port = (int)p;
        return 0;
    }
    case 't':
        if (!parse_double(arg, &a->o.timeout) || a->o.timeout <= 0 || a->o.timeout > 3600)
            return spc_opts_bad(&cli_prog, "-t needs seconds in (0, 3600], got '%s'", arg);
        return 0;
    case 'n':
        if (!*arg) return spc_opts_bad(&cli_prog, "-n needs a NAME");
        a->o.name = arg;
        return 0;
    case 'e': a->script_text = arg; return 0;
    case 'i': a->interactive = true; return 0;
    case O_NO_HELLO: a->o.no_hello = true; return 0;
    case O_RAW: a->o.raw = true; return 0;
    case 'v': a->o.verbose = true; return 0;
    case O_COUNT:
    case O_FRAMES:
        a->count = strtol(arg, &end, 10);
        if (*end || a->count < 1) return spc_opts_bad(&cli_prog, "--%s needs a positive count, got '%s'",
                                                      id == O_COUNT ? "count" : "frames", arg);
        return 0;
    case O_RADIUS:
        if (!parse_double(arg, &a->radius) || a->radius <= 0)
            return spc_opts_bad(&cli_prog, "--radius needs a positive number, got '%s'", arg);
        return 0;
    case O_CENTER:
    case O_CENTRE: a->center = arg; return 0;
    case O_SPAWN:
        if (!a->is_map) return spc_opts_bad(&cli_prog, "--spawn is an option of map, not of watch");
        a->spawn = true;
        return 0;
    default: return spc_opts_bad(&cli_prog, "internal error: option %d", id);
    }
}

int main(int argc, char **argv) {
    cli_args_t a;
    memset(&a, 0, sizeof a);
    a.o = (opts_t){SPC_DEFAULT_HOST, SPC_DEFAULT_PORT, 5.0, "spacesim-cli", false, false, false};
    int i;
    /* In order: the first operand is the method, and what follows it is
     * its arguments (a negative number is an argument, not an option). */
    int st = spc_opts_parse(&cli_prog, 0, argc, argv, &i, 1, on_opt, &a);
    if (st >= 0) return st;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: poll() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!a.script_text && i < argc && (strcmp(argv[i], "watch") == 0 || strcmp(argv[i], "map") == 0)) {
        a.is_map = argv[i][0] == 'm';
        /* The live views' own options: the words after watch/map, no operands. */
        int j;
        st = spc_opts_parse(&cli_prog, 1, argc - i, argv + i, &j, 0, on_opt, &a);
        if (st >= 0) return st;
        if (a.interactive) return spc_opts_bad(&cli_prog, "-i and %s cannot be combined", argv[i]);
        st = a.is_map ? run_map(&a.o, a.count, a.radius, a.center, a.spawn)
                      : run_watch(&a.o, a.count, a.radius, a.center);
        vars_free();
        return st;
    }

    script_t sc = {0};
    if (a.script_text) {
        if (i < argc) return spc_opts_bad(&cli_prog, "-e takes the whole script; unexpected '%s'", argv[i]);
        if (parse_script(&sc, a.script_text) != 0) {
            script_free(&sc, true);
            return 2;
        }
    } else {
        cmd_t *cur = NULL;
        for (; i < argc; i++) {
            if (strcmp(argv[i], ";") == 0) {
                cur = NULL;
                continue;
            }
            if (!cur) cur = script_new_cmd(&sc);
            cmd_push(cur, argv[i], false);
        }
    }
    int status = 0;
    for (int k = 0; k < sc.n && status == 0; k++)
        if (strcmp(sc.cmds[k].w[0].s, "watch") == 0 || strcmp(sc.cmds[k].w[0].s, "map") == 0)
            status = spc_opts_bad(&cli_prog, "'%s' cannot be part of a script", sc.cmds[k].w[0].s);
    /* No command: the interactive mode, as redis-cli does. */
    if (status == 0) status = sc.n == 0 || a.interactive ? run_interactive(&a.o, &sc) : run_script(&a.o, &sc);
    script_free(&sc, a.script_text != NULL);
    vars_free();
    return status;
}
