/* clients/load.c: spacesim-load, a load generator for spacesimd (libuv).
 *
 * One process, --threads libuv loops (default 2, one thread each; the
 * clients are dealt round-robin between them, so the generator has two cores
 * to keep up with a daemon on the same machine and is never the bottleneck,
 * issue 9 point 4), many TCP clients. Each client connects (at
 * --connect-rate, spread over --ramp), says hello, spawns a ship, then sends
 * the --mix commands at a CONSTANT rate (open loop): every command has an
 * intended send time on a fixed schedule, and its latency is measured from
 * that intended time, not from when it was actually written. A server (or a
 * generator) that stalls therefore shows up as latency instead of silently
 * lowering the request rate (coordinated omission, Gil Tene / wrk2). How late
 * the generator itself was is reported as send_lag, so you can tell whose
 * fault a tail is.
 *
 * Every snapshot is decoded into the client's view with proto/snapshot.h's
 * sp_snap_apply() (protocol 2: per-cell chunks, so applying one costs what
 * it carries, not the view; sp_snap_v1_apply() for a protocol 1 daemon),
 * exactly as a real client would, so deltas are exercised (desyncs and
 * malformed snapshots are counted as errors and resynced).
 * Latencies go into log-linear histograms (clients/hdr.h); percentiles are
 * read from the counters, never by sorting samples.
 *
 * Responses come in request order per connection (proto/PROTOCOL.md), so the
 * in-flight requests of a client are a FIFO ring: O(1) matching.
 *
 * Output: a progress line per second on stderr; at the end a report on
 * stdout, optionally --json FILE and --svg FILE, and --assert thresholds that
 * decide the exit status (0 held, 1 failed, 2 bad usage / could not run).
 * The report carries the generator's own CPU over the sending phase (user +
 * system seconds of each loop thread, getrusage RUSAGE_THREAD, and as % of
 * one core), so a run says whether its figures are the daemon's or ours. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "common.h"
#include "hdr.h"
#include "opts.h"
#include "snapshot.h"
#include "spacesim/error.h"

#define LOAD_VERSION "0.1.0"
#define MAX_CLIENTS 100000
#define MAX_DURATION 3600
#define DRAIN_SECONDS 2.0
#define NS 1000000000ull

/* ---------------------------------------------------------------- mix */

/* Commands the mix can schedule. */
enum { K_MOVE, K_FIRE, K_MINE, K_PING, K_INSPECT, K__COUNT };
static const char *const kind_name[K__COUNT] = {"move", "fire", "mine", "ping", "inspect"};

/* Error replies that are normal game outcomes under a random load (the
 * target moved away, the weapon is cooling down, the target just died):
 * counted by kind but not as "errors" (which mean the server or the
 * transport misbehaved). */
static bool game_outcome(int64_t code) {
    return code == SP_RPCERR_NOT_FOUND || code == SP_RPCERR_OUT_OF_RANGE || code == SP_RPCERR_COOLDOWN;
}

/* ---------------------------------------------------------------- state */

typedef struct pend {
    uint32_t msgid;
    uint8_t method;      /* sp_method_t */
    uint8_t flags;       /* PEND_* */
    uint64_t intended;   /* ns, uv_hrtime clock */
} pend_t;

/* PEND_LOAD: part of the load proper (the mix, or a scenario hook): counted in
 * commands_sent/responses and in the "all" histogram; set-up requests (hello,
 * spawn, subscribe, resync, the final stats) are only in the per-method table.
 * PEND_SCRIPT: sent by a scenario hook; its answer goes to on_response. */
enum { PEND_LOAD = 1, PEND_SCRIPT = 2 };

enum cstate { C_WAITING, C_CONNECTING, C_HELLO, C_SPAWN, C_RUNNING, C_CLOSED };

typedef struct lthr lthr_t;

typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    lthr_t *thr;         /* the loop thread that owns this client, for its whole life */
    uint32_t idx;
    uint8_t state;
    bool closing, resync_sent;
    bool was_running;    /* C_RUNNING when the run finished (set by its thread before closing) */
    uint32_t session;
    uint64_t ship;
    uint32_t next_id;
    sp_rpc_decoder_t dec;
    spc_view_t view;     /* in the daemon's protocol (hello's "protocol") */
    pend_t *pend;        /* FIFO ring of in-flight requests */
    uint32_t phead, plen, pcap;
    uint64_t start_ns;   /* when this client may connect */
    uint64_t snaps, first_snap_ns;
    uint64_t bytes_in;
    uint32_t rng_pad;
} client_t;

typedef struct sched {
    uint64_t due;
    uint32_t client;
    uint8_t kind;
} sched_t;

typedef struct errkind {
    char name[48];
    uint64_t n;
    bool counts_as_error;
} errkind_t;

typedef struct point {
    double t, p50, p90, p99, max, snap_rate, cmds, mb_in, cpu_pct;
    uint32_t clients;
} point_t;

/* One loop thread (issue 9 point 4: the generator is never the bottleneck).
 * Clients are dealt round-robin to --threads loops (client i to thread
 * i % nthreads); each loop owns its clients, their sockets, schedule heap,
 * histograms and counters outright, so the hot path shares nothing and takes
 * no lock. What crosses threads: the interval figures the progress line reads
 * (a mutex and relaxed counters below), the phase flags in G (atomics), and
 * the merge of everything into G after the threads are joined. Callbacks find
 * their thread through the thread-local TL (set once when the thread starts). */
struct lthr {
    uint32_t index;
    uv_loop_t loop;
    uv_thread_t tid;
    uv_timer_t tick;
    sched_t *heap;
    size_t hlen, hcap;
    long next_to_start;          /* next client index to connect (stride nthreads) */
    bool sending_over, draining, stopped, stats_sent, stats_wanted;
    uint64_t t_stop;             /* ns: end of this thread's drain */
    uint32_t stats_client, stats_msgid;
    uint32_t running_at_end;
    /* Clients of this thread in C_RUNNING. Written by this thread only;
     * read (relaxed) by thread 0 to pick who sends the final stats request:
     * a stale value only picks a thread that then finds nobody and says so. */
    _Atomic uint32_t running;
    hdr_t *by_method[SP_METHOD__COUNT];
    hdr_t *all, *lag;
    uint64_t sent, answered, snaps, events, bytes_in, bytes_out;
    errkind_t errs[64];
    int nerrs;
    /* Read by the progress line on thread 0 while this thread runs:
     * statistics, relaxed is enough (a count may land in the next second). */
    _Atomic uint64_t errors_total, sent_interval, snaps_interval, bytes_interval;
    /* The interval histogram is read and reset by thread 0 once a second:
     * imu guards it (uncontended but for that moment). */
    uv_mutex_t imu;
    hdr_t *interval;
    /* The thread's own CPU (getrusage RUSAGE_THREAD) when the sending phase
     * started and ended: its cost over the measured window. */
    double cpu_user0, cpu_sys0, cpu_user, cpu_sys;
    bool cpu_marked;
    msgpack_sbuffer sb;          /* request packing buffer (one per loop) */
    uint64_t rng;
    char readbuf[65536];         /* one per loop: the decoder copies what it is fed */
};

static _Thread_local lthr_t *TL;

static struct {
    /* options */
    const char *host;
    int port;
    long nclients;
    int nthreads;
    bool threads_given;
    double duration, connect_rate, ramp, radius;
    double mix[K__COUNT];
    const char *json_path, *svg_path, *hdr_path, *asserts, *script_path;
    bool log_latency, mix_given;
    uint64_t seed;
    bool quiet;
    /* runtime */
    struct sockaddr_storage addr;
    client_t *clients;
    lthr_t *thr;                 /* nthreads loops; thr[0] runs on the main thread */
    uv_timer_t progress;         /* thread 0's loop */
    uv_signal_t sigint;          /* thread 0's loop */
    uint64_t t0;
    /* End of the sending phase, ns. Ctrl-C (thread 0) or a scenario error may
     * move it earlier; each loop polls it every millisecond. A plain deadline
     * published on its own: relaxed is enough (a loop seeing it 1 ms late
     * sends 1 ms longer). */
    _Atomic uint64_t t_end;
    _Atomic bool interrupted;    /* relaxed: a request to hurry, nothing hangs on it */
    /* Loops that have drained (phase 2 over). Release by each, acquire by
     * thread 0, which then reads nothing else of theirs: a counter is enough. */
    _Atomic int ndrained;
    /* Which thread sends the final stats request (-1: not decided). Thread 0
     * stores it once (release), the chosen thread loads it (acquire). */
    _Atomic int stats_thread;
    /* The stats answer is in server_stats_json: stored (release) by the
     * thread that got it after writing the string, loaded (acquire) by
     * thread 0 before it ends the run. */
    _Atomic bool stats_got;
    /* The run is over: stored (release) by thread 0, loaded (acquire) by
     * every loop's tick, which then closes its clients and returns. */
    _Atomic bool done;
    uint64_t t_final;            /* thread 0: give up waiting for the stats answer */
    /* Statistics across threads: relaxed (a peak may lag by a message). */
    _Atomic uint32_t running, connected_peak;
    /* figures: merged from the threads after they are joined */
    hdr_t *by_method[SP_METHOD__COUNT];
    hdr_t *all, *lag;
    uint64_t sent, answered, snaps, events, bytes_in, bytes_out, errors_total;
    uint32_t running_at_end;
    errkind_t errs[64];
    int nerrs;
    point_t *series;             /* thread 0's progress timer only */
    size_t nseries, cseries;
    double prog_cpu;             /* process CPU seconds at the previous progress line */
    char *server_stats_json;
} G;

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spacesim-load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static uint64_t rnd(void) {
    /* xorshift64*, one state per loop thread: reproducible with --seed (and
     * the same --threads), no libc state. */
    uint64_t *r = &TL->rng;
    *r ^= *r >> 12;
    *r ^= *r << 25;
    *r ^= *r >> 27;
    return *r * 2685821657736338717ull;
}
static double rnd01(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

/* Count one error of kind `name` in list errs (the calling loop's, or G's
 * when merging); counts: it is a real error, not a game outcome. */
static void errs_add(errkind_t *errs, int *nerrs, const char *name, uint64_t n, bool counts) {
    for (int i = 0; i < *nerrs; i++)
        if (strcmp(errs[i].name, name) == 0) {
            errs[i].n += n;
            return;
        }
    if (*nerrs < (int)(sizeof G.errs / sizeof G.errs[0])) {
        snprintf(errs[*nerrs].name, sizeof G.errs[0].name, "%s", name);
        errs[*nerrs].n = n;
        errs[*nerrs].counts_as_error = counts;
        (*nerrs)++;
    }
}

static void count_error(const char *name, bool counts) {
    errs_add(TL->errs, &TL->nerrs, name, 1, counts);
    if (counts) atomic_fetch_add_explicit(&TL->errors_total, 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------- heap */

/* The calling loop's schedule (a binary min-heap on due time). */
static void heap_push(sched_t s) {
    lthr_t *t = TL;
    if (t->hlen == t->hcap) {
        t->hcap = t->hcap ? t->hcap * 2 : 1024;
        t->heap = realloc(t->heap, t->hcap * sizeof *t->heap);
        if (!t->heap) fatal("out of memory");
    }
    size_t i = t->hlen++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (t->heap[p].due <= s.due) break;
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i] = s;
}

static sched_t heap_pop(void) {
    lthr_t *t = TL;
    sched_t top = t->heap[0], last = t->heap[--t->hlen];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t md = last.due;
        if (l < t->hlen && t->heap[l].due < md) {
            m = l;
            md = t->heap[l].due;
        }
        if (r < t->hlen && t->heap[r].due < md) m = r;
        if (m == i) break;
        t->heap[i] = t->heap[m];
        i = m;
    }
    if (t->hlen) t->heap[i] = last;
    return top;
}

/* ---------------------------------------------------------------- sending */

typedef struct wreq {
    uv_write_t req;
    char data[];
} wreq_t;

static void on_write(uv_write_t *req, int status) {
    if (status < 0 && status != UV_ECANCELED) count_error("write_failed", true);
    free(req);
}

static void client_close(client_t *c, const char *why);

/* Write bytes in order: try a direct write first (no allocation in the
 * common case); queue the rest (uv_try_write refuses while a queued write is
 * pending, so order is kept). */
static int client_write(client_t *c, const char *p, size_t n) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (w == (int)n) {
        TL->bytes_out += n;
        return 0;
    }
    if (w < 0 && w != UV_EAGAIN) {
        client_close(c, "write_failed");
        return -1;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    wreq_t *wr = malloc(sizeof *wr + (n - done));
    if (!wr) fatal("out of memory");
    memcpy(wr->data, p + done, n - done);
    b = uv_buf_init(wr->data, (unsigned)(n - done));
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(wr);
        client_close(c, "write_failed");
        return -1;
    }
    TL->bytes_out += n;
    return 0;
}

static void pend_push(client_t *c, uint32_t msgid, int method, int flags, uint64_t intended) {
    if (c->plen == c->pcap) {
        uint32_t ncap = c->pcap ? c->pcap * 2 : 16;
        pend_t *np = malloc(ncap * sizeof *np);
        if (!np) fatal("out of memory");
        for (uint32_t i = 0; i < c->plen; i++) np[i] = c->pend[(c->phead + i) % c->pcap];
        free(c->pend);
        c->pend = np;
        c->pcap = ncap;
        c->phead = 0;
    }
    c->pend[(c->phead + c->plen) % c->pcap] = (pend_t){msgid, (uint8_t)method, (uint8_t)flags, intended};
    c->plen++;
}

/* Pack and send one request; params are packed by the callback. */
typedef void (*pack_fn)(msgpack_packer *pk, client_t *c, void *arg);

static void send_req_flags(client_t *c, int method, uint32_t nparams, pack_fn fn, void *arg, uint64_t intended,
                           int flags) {
    msgpack_sbuffer *sb = &TL->sb; /* one reusable buffer per loop thread */
    msgpack_packer pk;
    sb->size = 0;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    uint32_t id = c->next_id++;
    const sp_method_info_t *mi = sp_method_info(method);
    if (sp_rpc_pack_request_begin(&pk, id, mi->name, nparams) != 0) fatal("out of memory");
    if (fn) fn(&pk, c, arg);
    if (client_write(c, sb->data, sb->size) != 0) return;
    pend_push(c, id, method, flags, intended);
}

/* Methods the mix sends (the load proper); hello, spawn, subscribe, resync
 * and the final stats are set-up. */
static bool load_method(int method) {
    return method == SP_METHOD_MOVE || method == SP_METHOD_FIRE || method == SP_METHOD_MINE ||
           method == SP_METHOD_PING || method == SP_METHOD_INSPECT;
}

static void send_req(client_t *c, int method, uint32_t nparams, pack_fn fn, void *arg, uint64_t intended) {
    send_req_flags(c, method, nparams, fn, arg, intended, load_method(method) ? PEND_LOAD : 0);
}


static void pack_hello(msgpack_packer *pk, client_t *c, void *arg) {
    (void)arg;
    char name[32];
    snprintf(name, sizeof name, "load-%u", c->idx);
    sp_rpc_pack_cstr(pk, name);
    msgpack_pack_nil(pk);
}

static void pack_radius(msgpack_packer *pk, client_t *c, void *arg) {
    (void)c;
    (void)arg;
    msgpack_pack_double(pk, G.radius);
}

static void pack_move(msgpack_packer *pk, client_t *c, void *arg) {
    (void)arg;
    /* A random heading at 2..20 units/s: the ship wanders (a patrol). */
    double v[3], n = 0;
    for (int i = 0; i < 3; i++) {
        v[i] = rnd01() * 2 - 1;
        n += v[i] * v[i];
    }
    n = sqrt(n);
    double speed = 2 + rnd01() * 18;
    msgpack_pack_uint64(pk, c->ship);
    msgpack_pack_array(pk, 3);
    for (int i = 0; i < 3; i++) msgpack_pack_double(pk, n > 0 ? v[i] / n * speed : 0);
}

/* Nearest entity of `kind` in the client's view (not its own ships). */
static uint64_t nearest(client_t *c, int kind) {
    const sp_snap_rec_t *me = spc_view_find(&c->view, c->ship);
    uint64_t best = 0;
    double bd = INFINITY;
    spc_view_iter_t it = {0};
    for (const sp_snap_rec_t *r; (r = spc_view_next(&c->view, &it));) {
        if (r->kind != kind || r->id == c->ship || (kind == SP_KIND_SHIP && c->session && r->owner == c->session)) continue;
        if (!me) return r->id;
        double d = 0;
        for (int k = 0; k < 3; k++) {
            double dd = (double)r->pos[k] - (double)me->pos[k];
            d += dd * dd;
        }
        if (d < bd) {
            bd = d;
            best = r->id;
        }
    }
    return best;
}

static void pack_target(msgpack_packer *pk, client_t *c, void *arg) {
    msgpack_pack_uint64(pk, c->ship);
    msgpack_pack_uint64(pk, *(uint64_t *)arg);
}

static void pack_ship(msgpack_packer *pk, client_t *c, void *arg) {
    (void)arg;
    msgpack_pack_uint64(pk, c->ship);
}

static void send_scheduled(client_t *c, int kind, uint64_t intended) {
    uint64_t t;
    TL->sent++;
    atomic_fetch_add_explicit(&TL->sent_interval, 1, memory_order_relaxed);
    switch (kind) {
    case K_MOVE: send_req(c, SP_METHOD_MOVE, 2, pack_move, NULL, intended); break;
    case K_FIRE:
        /* Nearest other ship; with none in view, any id we know is fine:
         * the server answers NOT_FOUND and the round trip still counts. */
        t = nearest(c, SP_KIND_SHIP);
        if (!t) {
            spc_view_iter_t it = {0};
            const sp_snap_rec_t *any = spc_view_next(&c->view, &it);
            t = any ? any->id : 1;
        }
        if (t == c->ship) t = 1;
        send_req(c, SP_METHOD_FIRE, 2, pack_target, &t, intended);
        break;
    case K_MINE:
        t = nearest(c, SP_KIND_ASTEROID);
        if (!t) t = 1;
        send_req(c, SP_METHOD_MINE, 2, pack_target, &t, intended);
        break;
    case K_PING: send_req(c, SP_METHOD_PING, 0, NULL, NULL, intended); break;
    case K_INSPECT: send_req(c, SP_METHOD_INSPECT, 1, pack_ship, NULL, intended); break;
    default: break;
    }
}

/* ---------------------------------------------------------------- scenarios (Lua)
 *
 * spacesim-load -s FILE: one Lua 5.4 state for the whole process, and a
 * scenario run has one loop thread (main() forces --threads 1), so no
 * locking; hooks per client. A client is a userdata holding
 * its index; its user value is the script's per-client `state` table. The
 * methods a hook calls send requests through send_req_flags() with the same
 * open-loop accounting as the mix: the intended time is when the hook was
 * due (G.hook_due), so a hook that runs late still shows as latency.
 *
 * A Lua error (load or run time) prints FILE:LINE and the message, stops the
 * sending phase like Ctrl-C (the report is still printed) and makes the exit
 * status 2: a broken scenario must never look like a passing run. */
enum { H_SETUP, H_SNAPSHOT, H_EVENT, H_TIMER, H_RESPONSE, H__COUNT };
static const char *const hook_name[H__COUNT] = {"setup", "on_snapshot", "on_event", "on_timer", "on_response"};

#define K_TIMER K__COUNT /* a schedule entry that runs on_timer, not a mix command */
#define LUA_CLIENT_MT "spacesim.client"
#define LUA_MAX_DEPTH 32  /* msgpack <-> Lua nesting; deeper is refused (no unbounded recursion) */

static struct {
    lua_State *L;
    bool has[H__COUNT];
    bool failed;          /* a hook raised an error: no more hooks run */
    uint64_t timer_ns;    /* global `timer`, seconds, default 1 */
    uint64_t hook_due;    /* intended send time of requests made by the running hook */
    int *client_ref;      /* registry ref of each client's userdata, LUA_NOREF before setup */
    uint64_t hooks_run;
} S;

static void script_stop(const char *msg) {
    if (S.failed) return;
    S.failed = true;
    fprintf(stderr, "spacesim-load: scenario error: %s\nspacesim-load: stopping the run\n", msg);
    count_error("script_error", true);
    /* Scenarios run on one loop thread (main() makes it so): this store
     * only races with the Ctrl-C handler on the same thread. */
    if (!TL->sending_over) atomic_store_explicit(&G.t_end, uv_hrtime(), memory_order_relaxed);
}

/* Message handler of every hook call: errors raised by C functions
 * (luaL_argerror, luaL_error at level 1) carry no position; name the first
 * Lua frame's FILE:LINE so the message always says where. */
static int lua_msgh(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = luaL_typename(L, 1);
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
        size_t n = strlen(ar.short_src);
        if (strncmp(msg, ar.short_src, n) == 0 && msg[n] == ':') break; /* already located */
        lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
        return 1;
    }
    lua_pushstring(L, msg);
    return 1;
}

static client_t *lua_client(lua_State *L, int idx) {
    uint32_t *u = luaL_checkudata(L, idx, LUA_CLIENT_MT);
    return &G.clients[*u];
}

/* Lua value at idx -> msgpack. Integers stay integers; a table with only
 * keys 1..n is an array, any other a map (string keys). */
static int lua_pack(lua_State *L, int idx, msgpack_packer *pk, int depth) {
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return msgpack_pack_nil(pk);
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            lua_Integer v = lua_tointeger(L, idx);
            return v < 0 ? msgpack_pack_int64(pk, v) : msgpack_pack_uint64(pk, (uint64_t)v);
        }
        return msgpack_pack_double(pk, lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t n;
        const char *str = lua_tolstring(L, idx, &n);
        return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, str, n);
    }
    case LUA_TTABLE: {
        if (depth >= LUA_MAX_DEPTH) return luaL_error(L, "table nested deeper than %d", LUA_MAX_DEPTH);
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        size_t count = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            count++;
            lua_pop(L, 1);
        }
        if ((lua_Integer)count == n) {
            msgpack_pack_array(pk, (uint32_t)n);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, i);
                lua_pack(L, -1, pk, depth + 1);
                lua_pop(L, 1);
            }
            return 0;
        }
        msgpack_pack_map(pk, (uint32_t)count);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pushvalue(L, -2); /* tostring on a copy: lua_next needs the key untouched */
            size_t kn;
            const char *k = luaL_tolstring(L, -1, &kn);
            msgpack_pack_str(pk, kn);
            msgpack_pack_str_body(pk, k, kn);
            lua_pop(L, 2);
            lua_pack(L, -1, pk, depth + 1);
            lua_pop(L, 1);
        }
        return 0;
    }
    default: return luaL_error(L, "cannot send a %s to the server", luaL_typename(L, idx));
    }
}

/* msgpack -> Lua value on the stack (maps as tables, arrays 1-based). */
static void lua_push_obj(lua_State *L, const msgpack_object *o, int depth) {
    luaL_checkstack(L, 4, "msgpack to Lua");
    switch (o->type) {
    case MSGPACK_OBJECT_BOOLEAN: lua_pushboolean(L, o->via.boolean); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: lua_pushinteger(L, (lua_Integer)o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: lua_pushinteger(L, (lua_Integer)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: lua_pushnumber(L, o->via.f64); break;
    case MSGPACK_OBJECT_STR: lua_pushlstring(L, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: lua_pushlstring(L, o->via.bin.ptr, o->via.bin.size); break;
    case MSGPACK_OBJECT_ARRAY:
        if (depth >= LUA_MAX_DEPTH) {
            lua_pushnil(L);
            break;
        }
        lua_createtable(L, (int)o->via.array.size, 0);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            lua_push_obj(L, &o->via.array.ptr[i], depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case MSGPACK_OBJECT_MAP:
        if (depth >= LUA_MAX_DEPTH) {
            lua_pushnil(L);
            break;
        }
        lua_createtable(L, 0, (int)o->via.map.size);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            lua_push_obj(L, &o->via.map.ptr[i].key, depth + 1);
            lua_push_obj(L, &o->via.map.ptr[i].val, depth + 1);
            if (lua_isnil(L, -2)) lua_pop(L, 2);
            else lua_rawset(L, -3);
        }
        break;
    default: lua_pushnil(L); break;
    }
}

/* Send method with the Lua arguments from stack index `first` on. */
typedef struct packed {
    const char *p;
    size_t n;
} packed_t;
static void pack_raw(msgpack_packer *pk, client_t *c, void *arg) {
    (void)c;
    const packed_t *r = arg;
    if (r->n) msgpack_pack_str_body(pk, r->p, r->n); /* raw append of already-packed params */
}

static int lua_send(lua_State *L, client_t *c, int method, int first) {
    if (c->state != C_RUNNING || TL->sending_over) {
        lua_pushboolean(L, 0); /* the run is over or the client is gone: nothing sent */
        return 1;
    }
    int top = lua_gettop(L);
    /* One loop thread: one reusable buffer. lua_pack() may raise (longjmp
     * out of here), which a local buffer would leak. send_req_flags() has
     * its own buffer, so this one is not overwritten while it is read. */
    static msgpack_sbuffer sb;
    sb.size = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int i = first; i <= top; i++) lua_pack(L, i, &pk, 0);
    packed_t r = {sb.data, sb.size};
    TL->sent++;
    atomic_fetch_add_explicit(&TL->sent_interval, 1, memory_order_relaxed);
    send_req_flags(c, method, (uint32_t)(top - first + 1), pack_raw, &r, S.hook_due, PEND_LOAD | PEND_SCRIPT);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_call(lua_State *L) {
    client_t *c = lua_client(L, 1);
    size_t n;
    const char *name = luaL_checklstring(L, 2, &n);
    int m = sp_method_lookup(name, n);
    if (m < 0) return luaL_error(L, "client:call: no method named '%s'", name);
    if (m == SP_METHOD_HELLO) return luaL_error(L, "client:call: the load generator says hello itself");
    return lua_send(L, c, m, 3);
}

static int l_move(lua_State *L) {
    client_t *c = lua_client(L, 1);
    double v[3] = {luaL_checknumber(L, 2), luaL_checknumber(L, 3), luaL_checknumber(L, 4)};
    lua_settop(L, 1);
    lua_pushinteger(L, (lua_Integer)c->ship);
    lua_createtable(L, 3, 0);
    for (int i = 0; i < 3; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return lua_send(L, c, SP_METHOD_MOVE, 2);
}

static int target_call(lua_State *L, int method) {
    client_t *c = lua_client(L, 1);
    lua_Integer t = luaL_checkinteger(L, 2);
    lua_settop(L, 1);
    lua_pushinteger(L, (lua_Integer)c->ship);
    lua_pushinteger(L, t);
    return lua_send(L, c, method, 2);
}
static int l_fire(lua_State *L) { return target_call(L, SP_METHOD_FIRE); }
static int l_mine(lua_State *L) { return target_call(L, SP_METHOD_MINE); }

static int l_ping(lua_State *L) {
    client_t *c = lua_client(L, 1);
    lua_settop(L, 1);
    return lua_send(L, c, SP_METHOD_PING, 2);
}

static int l_inspect(lua_State *L) {
    client_t *c = lua_client(L, 1);
    lua_Integer id = luaL_optinteger(L, 2, (lua_Integer)c->ship);
    lua_settop(L, 1);
    lua_pushinteger(L, id);
    return lua_send(L, c, SP_METHOD_INSPECT, 2);
}

static const char *kind_str(uint8_t k) {
    return k == 1 ? "ship" : k == 2 ? "asteroid" : k == 3 ? "projectile" : "other";
}

static void push_rec(lua_State *L, const sp_snap_rec_t *r) {
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, (lua_Integer)r->id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, kind_str(r->kind));
    lua_setfield(L, -2, "kind");
    lua_pushnumber(L, sp_snap_pos(r->pos[0]));
    lua_setfield(L, -2, "x");
    lua_pushnumber(L, sp_snap_pos(r->pos[1]));
    lua_setfield(L, -2, "y");
    lua_pushnumber(L, sp_snap_pos(r->pos[2]));
    lua_setfield(L, -2, "z");
    lua_pushinteger(L, r->owner);
    lua_setfield(L, -2, "owner");
    lua_pushnumber(L, sp_snap_radius(r->radius));
    lua_setfield(L, -2, "radius");
}

/* client:view(): every entity in view (a new table each call: O(view)). */
static int l_view(lua_State *L) {
    client_t *c = lua_client(L, 1);
    lua_createtable(L, (int)spc_view_count(&c->view), 0);
    spc_view_iter_t it = {0};
    lua_Integer i = 0;
    for (const sp_snap_rec_t *r; (r = spc_view_next(&c->view, &it));) {
        push_rec(L, r);
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

static int l_nearest(lua_State *L) {
    client_t *c = lua_client(L, 1);
    static const char *const kinds[] = {"ship", "asteroid", "projectile", NULL};
    int k = luaL_checkoption(L, 2, NULL, kinds) + 1;
    uint64_t id = nearest(c, k);
    const sp_snap_rec_t *r = id ? spc_view_find(&c->view, id) : NULL;
    if (!r) lua_pushnil(L);
    else push_rec(L, r);
    return 1;
}

static int l_pos(lua_State *L) {
    client_t *c = lua_client(L, 1);
    const sp_snap_rec_t *me = spc_view_find(&c->view, c->ship);
    if (!me) return 0;
    for (int i = 0; i < 3; i++) lua_pushnumber(L, sp_snap_pos(me->pos[i]));
    return 3;
}

static int l_index(lua_State *L) {
    client_t *c = lua_client(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "id") == 0) lua_pushinteger(L, c->idx);
    else if (strcmp(k, "ship") == 0) lua_pushinteger(L, (lua_Integer)c->ship);
    else if (strcmp(k, "session") == 0) lua_pushinteger(L, c->session);
    else if (strcmp(k, "state") == 0) lua_getiuservalue(L, 1, 1);
    else {
        lua_getfield(L, lua_upvalueindex(1), k); /* a method, or nil */
    }
    return 1;
}

static void lua_report_error(void) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", lua_tostring(S.L, -1) ? lua_tostring(S.L, -1) : "(error object is not a string)");
    lua_pop(S.L, 1);
    script_stop(msg);
}

/* Call hook h for client c with nargs arguments already pushed after it.
 * Stack: [msgh, fn, client, args...] built here around the args. */
static void hook_call(int h, client_t *c, int nargs, uint64_t due) {
    lua_State *L = S.L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, lua_msgh);
    lua_getglobal(L, hook_name[h]);
    lua_rawgeti(L, LUA_REGISTRYINDEX, S.client_ref[c->idx]);
    lua_rotate(L, base + 1, 3); /* msgh fn client before the args */
    S.hook_due = due;
     S.hooks_run++;
    if (lua_pcall(L, nargs + 1, 0, base + 1) != LUA_OK) lua_report_error();
    lua_settop(L, base);
}

static bool hook_wanted(int h, const client_t *c) {
    return S.L && S.has[h] && !S.failed && !TL->sending_over && S.client_ref[c->idx] != LUA_NOREF;
}

/* After spawn: make the client's userdata, then setup(client). */
static void script_client_ready(client_t *c) {
    if (!S.L || S.failed) return;
    lua_State *L = S.L;
    uint32_t *u = lua_newuserdatauv(L, sizeof *u, 1);
    *u = c->idx;
    luaL_setmetatable(L, LUA_CLIENT_MT);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    S.client_ref[c->idx] = luaL_ref(L, LUA_REGISTRYINDEX);
    uint64_t now = uv_hrtime();
    if (S.has[H_TIMER]) heap_push((sched_t){now + (uint64_t)(rnd01() * (double)S.timer_ns), c->idx, K_TIMER});
    if (hook_wanted(H_SETUP, c)) hook_call(H_SETUP, c, 0, now);
}

static void script_on_snapshot(client_t *c) {
    if (hook_wanted(H_SNAPSHOT, c)) hook_call(H_SNAPSHOT, c, 0, uv_hrtime());
}

static void script_on_event(client_t *c, const msgpack_object *params) {
    if (!hook_wanted(H_EVENT, c)) return;
    const msgpack_object *ev = params->type == MSGPACK_OBJECT_ARRAY && params->via.array.size
                                   ? &params->via.array.ptr[0] : params;
    lua_push_obj(S.L, ev, 0);
    hook_call(H_EVENT, c, 1, uv_hrtime());
}

static void script_on_response(client_t *c, int method, const sp_rpc_msg_t *m) {
    if (!hook_wanted(H_RESPONSE, c)) return;
    bool ok = m->error->type == MSGPACK_OBJECT_NIL;
    lua_pushstring(S.L, sp_method_info(method)->name);
    lua_pushboolean(S.L, ok);
    lua_push_obj(S.L, ok ? m->result : m->error, 0);
    hook_call(H_RESPONSE, c, 3, uv_hrtime());
}

/* Load the scenario before any connection: a syntax error or a failing
 * top-level chunk is reported (FILE:LINE) and the run does not start. */
static void script_load(const char *path) {
    lua_State *L = luaL_newstate();
    if (!L) fatal("out of memory for the Lua state");
    luaL_openlibs(L);
    static const luaL_Reg methods[] = {
        {"call", l_call}, {"move", l_move}, {"fire", l_fire}, {"mine", l_mine}, {"ping", l_ping},
        {"inspect", l_inspect}, {"view", l_view}, {"nearest", l_nearest}, {"pos", l_pos}, {NULL, NULL},
    };
    luaL_newmetatable(L, LUA_CLIENT_MT);
    luaL_newlib(L, methods);
    lua_pushcclosure(L, l_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    /* Reproducible with --seed, like the mix. */
    lua_getglobal(L, "math");
    lua_getfield(L, -1, "randomseed");
    lua_pushinteger(L, (lua_Integer)G.seed);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    lua_pushinteger(L, G.nclients);
    lua_setglobal(L, "clients");
    lua_pushnumber(L, G.duration);
    lua_setglobal(L, "duration");
    lua_pushcfunction(L, lua_msgh);
    int rc = luaL_loadfile(L, path);
    if (rc == LUA_ERRFILE) fatal("cannot read the scenario: %s", lua_tostring(L, -1));
    if (rc == LUA_OK) rc = lua_pcall(L, 0, 0, -2);
    if (rc != LUA_OK) {
        fprintf(stderr, "spacesim-load: scenario error: %s\n", lua_tostring(L, -1));
        exit(2);
    }
    lua_pop(L, 1);
    bool any = false;
    for (int h = 0; h < H__COUNT; h++) {
        int t = lua_getglobal(L, hook_name[h]);
        if (t != LUA_TNIL && t != LUA_TFUNCTION) fatal("scenario %s: %s is a %s, not a function", path, hook_name[h],
                                                       lua_typename(L, t));
        S.has[h] = t == LUA_TFUNCTION;
        any |= S.has[h];
        lua_pop(L, 1);
    }
    if (!any)
        fatal("scenario %s defines none of setup, on_snapshot, on_event, on_timer, on_response: nothing to run", path);
    lua_getglobal(L, "timer");
    int isnum;
    double t = lua_tonumberx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum) t = 1.0;
    if (!(t >= 0.01 && t <= 3600)) fatal("scenario %s: timer = %g s is out of range: allowed 0.01..3600", path, t);
    S.timer_ns = (uint64_t)(t * 1e9);
    S.client_ref = malloc(sizeof(int) * (size_t)G.nclients);
    if (!S.client_ref) fatal("out of memory");
    for (long i = 0; i < G.nclients; i++) S.client_ref[i] = LUA_NOREF;
    S.L = L;
}

/* ---------------------------------------------------------------- lifecycle */

static void on_close(uv_handle_t *h) {
    client_t *c = h->data;
    sp_rpc_decoder_destroy(&c->dec);
    spc_view_destroy(&c->view);
    free(c->pend);
    c->pend = NULL;
    c->plen = c->pcap = 0;
}

/* c enters (up) or leaves C_RUNNING: its thread's count and the global one. */
static void client_running(client_t *c, bool up) {
    lthr_t *t = c->thr;
    uint32_t n = atomic_load_explicit(&t->running, memory_order_relaxed); /* only this thread writes it */
    atomic_store_explicit(&t->running, up ? n + 1 : n - 1, memory_order_relaxed);
    if (!up) {
        atomic_fetch_sub_explicit(&G.running, 1, memory_order_relaxed);
        return;
    }
    uint32_t all = atomic_fetch_add_explicit(&G.running, 1, memory_order_relaxed) + 1;
    uint32_t peak = atomic_load_explicit(&G.connected_peak, memory_order_relaxed);
    while (all > peak &&
           !atomic_compare_exchange_weak_explicit(&G.connected_peak, &peak, all, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

static void client_close(client_t *c, const char *why) {
    if (c->closing) return;
    if (why) count_error(why, true);
    if (c->state == C_RUNNING) client_running(c, false);
    /* Requests still in flight on a dropped connection are lost. */
    if (why && c->plen) {
        for (uint32_t i = 0; i < c->plen; i++) count_error("lost_in_flight", true);
    }
    c->plen = 0;
    c->state = C_CLOSED;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void start_schedule(client_t *c) {
    uint64_t now = uv_hrtime();
    for (int k = 0; k < K__COUNT; k++) {
        if (G.mix[k] <= 0) continue;
        uint64_t interval = (uint64_t)((double)NS / G.mix[k]);
        /* Random phase, so the clients' commands spread over the interval. */
        heap_push((sched_t){now + (uint64_t)(rnd01() * (double)interval), c->idx, (uint8_t)k});
    }
}

static void record_latency(int method, int flags, uint64_t ns) {
    lthr_t *t = TL;
    if (method >= 0 && method < SP_METHOD__COUNT) hdr_record(t->by_method[method], ns);
    if (!(flags & PEND_LOAD)) return;
    hdr_record(t->all, ns);
    uv_mutex_lock(&t->imu);
    hdr_record(t->interval, ns);
    uv_mutex_unlock(&t->imu);
}

static void handle_response(client_t *c, const sp_rpc_msg_t *m) {
    if (c->plen == 0) {
        count_error("unexpected_response", true);
        return;
    }
    pend_t p = c->pend[c->phead];
    if (p.msgid != m->msgid) {
        /* Out of order would break the protocol's promise: count it and
         * look the id up anyway. */
        count_error("response_out_of_order", true);
        uint32_t j;
        for (j = 0; j < c->plen; j++)
            if (c->pend[(c->phead + j) % c->pcap].msgid == m->msgid) break;
        if (j == c->plen) return;
        pend_t *q = &c->pend[(c->phead + j) % c->pcap];
        pend_t tmp = *q;
        *q = c->pend[c->phead];
        p = tmp;
    }
    c->phead = (c->phead + 1) % c->pcap;
    c->plen--;
    uint64_t now = uv_hrtime();
    if (p.flags & PEND_LOAD) TL->answered++;
    record_latency(p.method, p.flags, now - p.intended);
    bool ok = m->error->type == MSGPACK_OBJECT_NIL;
    if (!ok) {
        int64_t code = 0;
        const char *msg;
        size_t ml;
        char name[48];
        if (sp_rpc_parse_error(m->error, &code, &msg, &ml) != 0) code = 0;
        snprintf(name, sizeof name, "%s:%s", sp_method_info(p.method)->name, spc_error_name(code));
        count_error(name, !game_outcome(code));
    }
    if (p.flags & PEND_SCRIPT) {
        script_on_response(c, p.method, m);
        return;
    }
    if (TL->stats_wanted && c->idx == TL->stats_client && m->msgid == TL->stats_msgid) {
        spc_buf_t b = {0};
        if (ok && spc_json_append(&b, m->result, -1) == 0) G.server_stats_json = b.p;
        else spc_buf_free(&b);
        /* Publishes server_stats_json to thread 0 (acquire in on_tick). */
        atomic_store_explicit(&G.stats_got, true, memory_order_release);
        return;
    }
    switch (p.method) {
    case SP_METHOD_HELLO:
        if (!ok) {
            client_close(c, "hello_refused");
            return;
        }
        {
            uint64_t s = 0, proto = SP_PROTO_VERSION;
            spc_u64(spc_get(m->result, "session"), &s);
            c->session = (uint32_t)s;
            /* Before the next message: the first snapshot follows hello's answer. */
            spc_u64(spc_get(m->result, "protocol"), &proto);
            spc_view_set_protocol(&c->view, (int64_t)proto);
        }
        if (G.radius > 0) send_req(c, SP_METHOD_SUBSCRIBE, 1, pack_radius, NULL, uv_hrtime());
        c->state = C_SPAWN;
        send_req(c, SP_METHOD_SPAWN, 0, NULL, NULL, uv_hrtime());
        break;
    case SP_METHOD_SPAWN:
        if (!ok || !spc_u64(spc_get(m->result, "ship_id"), &c->ship)) {
            client_close(c, "spawn_failed");
            return;
        }
        c->state = C_RUNNING;
        client_running(c, true);
        if (!TL->sending_over) {
            start_schedule(c);
            script_client_ready(c);
        }
        break;
    default: break;
    }
}

static void handle_notify(client_t *c, const sp_rpc_msg_t *m) {
    if (m->method_len == 8 && memcmp(m->method, "snapshot", 8) == 0) {
        /* Read from the wire bytes when on_read left it lazy (protocol 2). */
        int rc = m->lazy ? sp_snap_apply_bytes(&c->view.cells, m->params_bytes, m->params_len, NULL)
                         : spc_view_apply(&c->view, m->params, NULL);
        if (rc == 0) {
            uint64_t now = uv_hrtime();
            if (c->snaps == 0) c->first_snap_ns = now;
            c->snaps++;
            c->resync_sent = false;
            if (!TL->sending_over) {
                TL->snaps++;
                atomic_fetch_add_explicit(&TL->snaps_interval, 1, memory_order_relaxed);
            }
            script_on_snapshot(c);
            return;
        }
        count_error(rc == SP_EPROTO ? "snapshot_desync" : rc == SP_ECORRUPT ? "snapshot_malformed" : "snapshot_oom",
                    true);
        spc_view_reset(&c->view);
        if (!c->resync_sent) {
            c->resync_sent = true;
            send_req(c, SP_METHOD_RESYNC, 0, NULL, NULL, uv_hrtime());
        }
        return;
    }
    if (m->method_len == 5 && memcmp(m->method, "event", 5) == 0) {
        TL->events++;
        script_on_event(c, m->params);
        return;
    }
    if (m->method_len == 5 && memcmp(m->method, "error", 5) == 0) {
        const msgpack_object *e = m->params->via.array.size ? &m->params->via.array.ptr[0] : NULL;
        int64_t code = 0;
        const char *msg;
        size_t ml;
        char name[48];
        if (!e || sp_rpc_parse_error(e, &code, &msg, &ml) != 0) code = 0;
        snprintf(name, sizeof name, "server_error:%s", spc_error_name(code));
        count_error(name, true);
        return;
    }
    /* "ping" keepalive reminders need no answer: we send commands anyway. */
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    /* The decoder copies what it is fed: one read buffer per loop thread
     * serves every client of that loop. */
    *buf = uv_buf_init(TL->readbuf, sizeof TL->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    client_t *c = s->data;
    (void)buf;
    if (n == 0) return;
    if (n < 0) {
        bool over = atomic_load_explicit(&G.done, memory_order_relaxed); /* only picks a label */
        client_close(c, n == UV_EOF ? (over ? NULL : "closed_by_server") : "read_failed");
        return;
    }
    c->bytes_in += (uint64_t)n;
    TL->bytes_in += (uint64_t)n;
    atomic_fetch_add_explicit(&TL->bytes_interval, (uint64_t)n, memory_order_relaxed);
    sp_rpc_decoder_feed(&c->dec, buf->base, (size_t)n);
    for (;;) {
        sp_rpc_msg_t m;
        /* Lazily: a protocol-2 snapshot is applied from its bytes, without
         * building msgpack-c objects for it (most of what a client reads);
         * every other notification is unpacked as usual. */
        int rc = sp_rpc_decoder_next_lazy(&c->dec, &m);
        if (rc == 0) break;
        if (rc == 1 && m.lazy) {
            bool snap = c->view.proto >= 2 && m.method_len == 8 && memcmp(m.method, "snapshot", 8) == 0;
            /* An event nobody's script hooks is only counted: no objects
             * either (the daemon sends ~100 per client per second). */
            if (!snap && m.method_len == 5 && memcmp(m.method, "event", 5) == 0 && !hook_wanted(H_EVENT, c)) {
                TL->events++;
                continue;
            }
            if (!snap) rc = sp_rpc_decoder_unpack(&c->dec, &m) == 0 ? 1 : SP_ENOMEM;
        }
        if (rc < 0) {
            client_close(c, rc == SP_EMSGSIZE ? "message_too_large" : rc == SP_ENOMEM ? "out_of_memory" : "protocol_error");
            return;
        }
        if (m.type == SP_RPC_RESPONSE) handle_response(c, &m);
        else if (m.type == SP_RPC_NOTIFY) handle_notify(c, &m);
        else count_error("protocol_error", true);
        if (c->closing) return;
    }
}

static void on_connect(uv_connect_t *req, int status) {
    client_t *c = req->data;
    if (status < 0) {
        char name[48];
        snprintf(name, sizeof name, "connect:%s", uv_err_name(status));
        client_close(c, name);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = C_HELLO;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
    send_req(c, SP_METHOD_HELLO, 2, pack_hello, NULL, uv_hrtime());
}

static void client_start(client_t *c) {
    sp_rpc_decoder_init(&c->dec, SPC_MAX_INBOUND);
    spc_view_init(&c->view);
    c->next_id = 1;
    if (uv_tcp_init(&c->thr->loop, &c->tcp) != 0) fatal("uv_tcp_init failed");
    c->tcp.data = c;
    c->creq.data = c;
    c->state = C_CONNECTING;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&G.addr, on_connect);
    if (rc != 0) {
        char name[48];
        snprintf(name, sizeof name, "connect:%s", uv_err_name(rc));
        client_close(c, name);
    }
}

/* ---------------------------------------------------------------- timers */

/* CPU seconds (user, sys) of the calling thread, or of the process. */
static void cpu_now(bool thread, double *user, double *sys) {
    struct rusage ru;
#ifdef RUSAGE_THREAD
    int who = thread ? RUSAGE_THREAD : RUSAGE_SELF;
#else
    int who = RUSAGE_SELF; /* no per-thread figures here: each thread reports the process */
    (void)thread;
#endif
    if (getrusage(who, &ru) != 0) {
        *user = *sys = 0;
        return;
    }
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) {
        if (h->type == UV_TCP) client_close(h->data, NULL);
        else uv_close(h, NULL);
    }
}

/* The run is over for this loop: note which clients were still running,
 * then close every handle (its uv_run returns once they are closed). */
static void thread_stop(void) {
    lthr_t *t = TL;
    if (t->stopped) return;
    t->stopped = true;
    if (!t->cpu_marked) {
        cpu_now(true, &t->cpu_user, &t->cpu_sys);
        t->cpu_marked = true;
    }
    t->running_at_end = atomic_load_explicit(&t->running, memory_order_relaxed);
    for (long i = t->index; i < G.nclients; i += G.nthreads) G.clients[i].was_running = G.clients[i].state == C_RUNNING;
    uv_walk(&t->loop, close_walk, NULL);
}

/* Every millisecond on every loop: start due connections, send due commands;
 * at the end of the sending phase drain this loop's answers; then thread 0
 * has one client ask the server for its stats and ends the run. */
static void on_tick(uv_timer_t *timer) {
    (void)timer;
    lthr_t *t = TL;
    uint64_t now = uv_hrtime();
    if (atomic_load_explicit(&G.done, memory_order_acquire)) {
        thread_stop();
        return;
    }
    if (!t->sending_over && now >= atomic_load_explicit(&G.t_end, memory_order_relaxed)) {
        /* Stop sending; wait for the answers still in flight. */
        t->sending_over = true;
        t->draining = true;
        t->t_stop = now + (uint64_t)(DRAIN_SECONDS * 1e9);
        cpu_now(true, &t->cpu_user, &t->cpu_sys);
        t->cpu_marked = true;
    }
    if (!t->sending_over) {
        while (t->next_to_start < G.nclients && G.clients[t->next_to_start].start_ns <= now) {
            client_start(&G.clients[t->next_to_start]);
            t->next_to_start += G.nthreads;
        }
        while (t->hlen && t->heap[0].due <= now) {
            sched_t s = heap_pop();
            client_t *c = &G.clients[s.client];
            if (c->state != C_RUNNING) continue;
            hdr_record(t->lag, now - s.due);
            if (s.kind == K_TIMER) {
                /* on_timer runs on the same fixed schedule as the mix: its
                 * requests are timed from the due time, not from now. */
                if (!hook_wanted(H_TIMER, c)) continue;
                hook_call(H_TIMER, c, 0, s.due);
                s.due += S.timer_ns;
            } else {
                send_scheduled(c, s.kind, s.due);
                s.due += (uint64_t)((double)NS / G.mix[s.kind]);
            }
            if (c->state != C_RUNNING) continue;
            heap_push(s);
        }
        return;
    }
    bool hurry = atomic_load_explicit(&G.interrupted, memory_order_relaxed);
    if (t->draining) {
        uint64_t inflight = 0;
        for (long i = t->index; i < G.nclients; i += G.nthreads)
            if (G.clients[i].state == C_RUNNING) inflight += G.clients[i].plen;
        if (inflight == 0 || now >= t->t_stop || hurry) {
            /* Requests that never got an answer: their latency is at least
             * the time they have waited; record that (a stalled server must
             * not look fast) and count them. */
            for (long i = t->index; i < G.nclients; i += G.nthreads) {
                client_t *c = &G.clients[i];
                if (c->state != C_RUNNING) continue;
                for (uint32_t j = 0; j < c->plen; j++) {
                    pend_t *p = &c->pend[(c->phead + j) % c->pcap];
                    record_latency(p->method, p->flags, now - p->intended);
                    count_error("timeout", true);
                }
                c->plen = 0;
            }
            t->draining = false;
            /* Pairs with thread 0's acquire load: nothing else is published. */
            atomic_fetch_add_explicit(&G.ndrained, 1, memory_order_release);
        }
        return;
    }
    int st = atomic_load_explicit(&G.stats_thread, memory_order_acquire);
    if (st == (int)t->index && !t->stats_sent) {
        /* This loop was picked: one request for the server's own figures. */
        t->stats_sent = true;
        client_t *c = NULL;
        for (long i = t->index; i < G.nclients && !c; i += G.nthreads)
            if (G.clients[i].state == C_RUNNING) c = &G.clients[i];
        if (c) {
            t->stats_wanted = true;
            t->stats_client = c->idx;
            t->stats_msgid = c->next_id;
            send_req(c, SP_METHOD_STATS, 0, NULL, NULL, now);
        } else {
            atomic_store_explicit(&G.stats_got, true, memory_order_release); /* nobody left to ask */
        }
    }
    if (t->index != 0) return;
    if (st < 0) {
        if (atomic_load_explicit(&G.ndrained, memory_order_acquire) < G.nthreads) return;
        int pick = -1;
        for (int i = 0; i < G.nthreads && pick < 0; i++)
            if (atomic_load_explicit(&G.thr[i].running, memory_order_relaxed)) pick = i;
        if (pick < 0) atomic_store_explicit(&G.stats_got, true, memory_order_release);
        atomic_store_explicit(&G.stats_thread, pick < 0 ? G.nthreads : pick, memory_order_release);
        G.t_final = now + (uint64_t)(DRAIN_SECONDS * 1e9);
        return;
    }
    if (atomic_load_explicit(&G.stats_got, memory_order_acquire) || now >= G.t_final || hurry) {
        atomic_store_explicit(&G.done, true, memory_order_release);
        thread_stop();
    }
}

/* Thread 0, once a second: the progress line and the --svg series, from
 * every loop's interval figures. */
static void on_progress(uv_timer_t *timer) {
    (void)timer;
    static hdr_t iv; /* thread 0 only; 58 KiB, so not on the stack */
    double el = (double)(uv_hrtime() - G.t0) / 1e9;
    uint32_t running = atomic_load_explicit(&G.running, memory_order_relaxed);
    uint64_t sent = 0, snaps = 0, bytes = 0, errors = 0;
    hdr_reset(&iv);
    for (int i = 0; i < G.nthreads; i++) {
        lthr_t *t = &G.thr[i];
        sent += atomic_exchange_explicit(&t->sent_interval, 0, memory_order_relaxed);
        snaps += atomic_exchange_explicit(&t->snaps_interval, 0, memory_order_relaxed);
        bytes += atomic_exchange_explicit(&t->bytes_interval, 0, memory_order_relaxed);
        errors += atomic_load_explicit(&t->errors_total, memory_order_relaxed);
        uv_mutex_lock(&t->imu);
        hdr_add(&iv, t->interval);
        hdr_reset(t->interval);
        uv_mutex_unlock(&t->imu);
    }
    double u, sy;
    cpu_now(false, &u, &sy);
    point_t p = {0};
    p.t = el;
    p.p50 = (double)hdr_percentile(&iv, 50) / 1e6;
    p.p90 = (double)hdr_percentile(&iv, 90) / 1e6;
    p.p99 = (double)hdr_percentile(&iv, 99) / 1e6;
    p.max = iv.total ? (double)iv.max / 1e6 : 0;
    p.cmds = (double)sent;
    p.snap_rate = running ? (double)snaps / running : 0;
    p.mb_in = (double)bytes / 1e6;
    p.clients = running;
    p.cpu_pct = (u + sy - G.prog_cpu) * 100; /* over ~1 s */
    G.prog_cpu = u + sy;
    if (!TL->sending_over) {
        if (G.nseries == G.cseries) {
            G.cseries = G.cseries ? G.cseries * 2 : 64;
            G.series = realloc(G.series, G.cseries * sizeof *G.series);
            if (!G.series) fatal("out of memory");
        }
        G.series[G.nseries++] = p;
        if (!G.quiet)
            fprintf(stderr,
                    "[%5.1fs] clients %u/%ld  cmds %6.0f/s  snaps %7llu/s (%.1f/client)  in %6.2f MB/s  errors %llu  "
                    "rtt p50 %.2f p99 %.2f max %.2f ms  load cpu %.0f%%\n",
                    el, running, G.nclients, p.cmds, (unsigned long long)snaps, p.snap_rate, p.mb_in,
                    (unsigned long long)errors, p.p50, p.p99, p.max, p.cpu_pct);
    }
}

static void on_sigint(uv_signal_t *s, int sig) {
    (void)s;
    (void)sig;
    if (atomic_load_explicit(&G.interrupted, memory_order_relaxed)) exit(130);
    atomic_store_explicit(&G.interrupted, true, memory_order_relaxed);
    fprintf(stderr, "spacesim-load: interrupted: finishing (Ctrl-C again to quit at once)\n");
    uint64_t now = uv_hrtime();
    if (now < atomic_load_explicit(&G.t_end, memory_order_relaxed))
        atomic_store_explicit(&G.t_end, now, memory_order_relaxed);
}

/* ---------------------------------------------------------------- report */

typedef struct metric {
    char name[64];
    double v;
} metric_t;
static metric_t *g_metrics;
static size_t g_nmetrics, g_cmetrics;

static void metric(const char *name, double v) {
    if (g_nmetrics == g_cmetrics) {
        g_cmetrics = g_cmetrics ? g_cmetrics * 2 : 64;
        g_metrics = realloc(g_metrics, g_cmetrics * sizeof *g_metrics);
        if (!g_metrics) fatal("out of memory");
    }
    snprintf(g_metrics[g_nmetrics].name, sizeof g_metrics[0].name, "%s", name);
    g_metrics[g_nmetrics].v = v;
    g_nmetrics++;
}

static const metric_t *metric_find(const char *name) {
    for (size_t i = 0; i < g_nmetrics; i++)
        if (strcmp(g_metrics[i].name, name) == 0) return &g_metrics[i];
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

/* The server's stats are flattened into server_<key> metrics (numbers only). */
static void metrics_from_server_stats(void) {
    if (!G.server_stats_json) return;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    char err[128];
    if (spc_pack_word(&pk, G.server_stats_json, err, sizeof err) == 0) {
        msgpack_zone z;
        msgpack_zone_init(&z, 4096);
        msgpack_object o;
        if (msgpack_unpack(sb.data, sb.size, NULL, &z, &o) == MSGPACK_UNPACK_SUCCESS && o.type == MSGPACK_OBJECT_MAP) {
            for (uint32_t i = 0; i < o.via.map.size; i++) {
                const msgpack_object *k = &o.via.map.ptr[i].key;
                double v;
                if (k->type != MSGPACK_OBJECT_STR || !spc_num(&o.via.map.ptr[i].val, &v)) continue;
                char name[64];
                snprintf(name, sizeof name, "server_%.*s", (int)k->via.str.size, k->via.str.ptr);
                metric(name, v);
            }
        }
        msgpack_zone_destroy(&z);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* The generator's own CPU over the sending phase (issue 9 point 4: it must
 * never be the bottleneck, and the report says so with figures): user and
 * system seconds of every loop thread, as % of one core over the run. */
static void cpu_metrics(double dur, double *user, double *sys, double *pct, double *max_thread_pct) {
    *user = *sys = *max_thread_pct = 0;
    char k[64];
    for (int i = 0; i < G.nthreads; i++) {
        const lthr_t *t = &G.thr[i];
        double u = t->cpu_user - t->cpu_user0, sy = t->cpu_sys - t->cpu_sys0;
        *user += u;
        *sys += sy;
        double tp = dur > 0 ? (u + sy) / dur * 100 : 0;
        if (tp > *max_thread_pct) *max_thread_pct = tp;
        snprintf(k, sizeof k, "load_cpu_pct_thread%d", i);
        metric(k, tp);
    }
    *pct = dur > 0 ? (*user + *sys) / dur * 100 : 0;
    metric("load_threads", G.nthreads);
    metric("load_cpu_user_s", *user);
    metric("load_cpu_sys_s", *sys);
    metric("load_cpu_pct", *pct);
    metric("load_cpu_pct_thread_max", *max_thread_pct);
}

static void build_metrics(double dur, double *snap_min, double *snap_med, size_t *measured) {
    /* Per-client snapshot rates: snapshots after the first one, over the
     * time from the first one to the end of the run. Clients with less than
     * a second of snapshots are not measured (they joined too late). The
     * per-client rates are sorted for the median (one double per client;
     * latencies are never sorted). */
    double *rates = malloc(sizeof(double) * (size_t)(G.nclients ? G.nclients : 1));
    if (!rates) fatal("out of memory");
    uint64_t t_end = atomic_load_explicit(&G.t_end, memory_order_relaxed); /* threads joined: final */
    size_t n = 0;
    for (long i = 0; i < G.nclients; i++) {
        client_t *c = &G.clients[i];
        if (c->snaps < 2 || c->first_snap_ns == 0 || c->first_snap_ns >= t_end) {
            if (c->was_running || c->snaps) rates[n++] = 0; /* connected but starved */
            continue;
        }
        double span = (double)(t_end - c->first_snap_ns) / 1e9;
        if (span < 1.0) {
            n += 0;
            continue;
        }
        rates[n++] = (double)(c->snaps - 1) / span;
    }
    qsort(rates, n, sizeof *rates, cmp_double);
    *snap_min = n ? rates[0] : 0;
    *snap_med = n ? (n % 2 ? rates[n / 2] : (rates[n / 2 - 1] + rates[n / 2]) / 2) : 0;
    *measured = n;
    free(rates);

    metric("clients", (double)G.nclients);
    metric("clients_connected", (double)atomic_load_explicit(&G.connected_peak, memory_order_relaxed));
    metric("clients_at_end", (double)G.running_at_end);
    metric("duration_s", dur);
    metric("commands_sent", (double)G.sent);
    metric("responses", (double)G.answered);
    metric("commands_per_sec", dur > 0 ? (double)G.sent / dur : 0);
    metric("p50_ms", ms(hdr_percentile(G.all, 50)));
    metric("p90_ms", ms(hdr_percentile(G.all, 90)));
    metric("p99_ms", ms(hdr_percentile(G.all, 99)));
    metric("p999_ms", ms(hdr_percentile(G.all, 99.9)));
    metric("max_ms", ms(G.all->total ? G.all->max : 0));
    metric("mean_ms", hdr_mean(G.all) / 1e6);
    metric("send_lag_p99_ms", ms(hdr_percentile(G.lag, 99)));
    metric("send_lag_max_ms", ms(G.lag->total ? G.lag->max : 0));
    metric("snapshots", (double)G.snaps);
    metric("snapshots_per_sec", dur > 0 ? (double)G.snaps / dur : 0);
    metric("snap_rate_min", *snap_min);
    metric("snap_rate_median", *snap_med);
    metric("snap_clients_measured", (double)*measured);
    metric("events", (double)G.events);
    metric("bytes_in", (double)G.bytes_in);
    metric("bytes_out", (double)G.bytes_out);
    metric("mb_per_s_in", dur > 0 ? (double)G.bytes_in / 1e6 / dur : 0);
    metric("errors", (double)G.errors_total);
    uint64_t game = 0;
    for (int i = 0; i < G.nerrs; i++)
        if (!G.errs[i].counts_as_error) game += G.errs[i].n;
    metric("game_errors", (double)game);
    if (S.L) metric("scenario_hooks", (double)S.hooks_run);
    double u, sy, pct, tmax;
    cpu_metrics(dur, &u, &sy, &pct, &tmax);
    for (int m = 0; m < SP_METHOD__COUNT; m++) {
        const hdr_t *h = G.by_method[m];
        if (!h->total) continue;
        const char *nm = sp_method_info(m)->name;
        char k[64];
        snprintf(k, sizeof k, "%s_count", nm);
        metric(k, (double)h->total);
        snprintf(k, sizeof k, "%s_p50_ms", nm);
        metric(k, ms(hdr_percentile(h, 50)));
        snprintf(k, sizeof k, "%s_p90_ms", nm);
        metric(k, ms(hdr_percentile(h, 90)));
        snprintf(k, sizeof k, "%s_p99_ms", nm);
        metric(k, ms(hdr_percentile(h, 99)));
        snprintf(k, sizeof k, "%s_p999_ms", nm);
        metric(k, ms(hdr_percentile(h, 99.9)));
        snprintf(k, sizeof k, "%s_max_ms", nm);
        metric(k, ms(h->max));
    }
    metrics_from_server_stats();
}

static void print_report(double dur, double snap_min, double snap_med, size_t measured) {
    printf("\nspacesim-load: %ld clients against %s:%d for %.1f s (mix", G.nclients, G.host, G.port, dur);
    for (int k = 0; k < K__COUNT; k++)
        if (G.mix[k] > 0) printf(" %s=%g", kind_name[k], G.mix[k]);
    printf(" per client per second%s%s)\n", G.script_path ? "; scenario " : "", G.script_path ? G.script_path : "");
    printf("connected: %u at peak, %u at the end; commands sent %llu, answered %llu (%.0f/s)\n",
           atomic_load_explicit(&G.connected_peak, memory_order_relaxed), G.running_at_end,
           (unsigned long long)G.sent, (unsigned long long)G.answered,
           dur > 0 ? (double)G.sent / dur : 0);
    printf("\nround-trip time from the intended send time, ms (log-linear histogram, <0.8%% error)\n");
    printf("  %-10s %9s %9s %9s %9s %9s %9s\n", "method", "count", "p50", "p90", "p99", "p99.9", "max");
    for (int m = 0; m < SP_METHOD__COUNT; m++) {
        const hdr_t *h = G.by_method[m];
        if (!h->total) continue;
        printf("  %-10s %9llu %9.3f %9.3f %9.3f %9.3f %9.3f\n", sp_method_info(m)->name, (unsigned long long)h->total,
               ms(hdr_percentile(h, 50)), ms(hdr_percentile(h, 90)), ms(hdr_percentile(h, 99)),
               ms(hdr_percentile(h, 99.9)), ms(h->max));
    }
    printf("  %-10s %9llu %9.3f %9.3f %9.3f %9.3f %9.3f\n", "all (load)", (unsigned long long)G.all->total,
           ms(hdr_percentile(G.all, 50)), ms(hdr_percentile(G.all, 90)), ms(hdr_percentile(G.all, 99)),
           ms(hdr_percentile(G.all, 99.9)), ms(G.all->total ? G.all->max : 0));
    printf("  generator send lag: p99 %.3f ms, max %.3f ms (high values: the load generator is the bottleneck)\n",
           ms(hdr_percentile(G.lag, 99)), ms(G.lag->total ? G.lag->max : 0));
    printf("\nsnapshots: %llu decoded (%.0f/s); per client per second: min %.2f, median %.2f (%zu clients measured)\n",
           (unsigned long long)G.snaps, dur > 0 ? (double)G.snaps / dur : 0, snap_min, snap_med, measured);
    printf("events: %llu\n", (unsigned long long)G.events);
    printf("bytes: in %llu (%.2f MB/s), out %llu\n", (unsigned long long)G.bytes_in,
           dur > 0 ? (double)G.bytes_in / 1e6 / dur : 0, (unsigned long long)G.bytes_out);
    printf("errors: %llu", (unsigned long long)G.errors_total);
    if (G.errors_total) {
        printf(" (by kind:");
        for (int i = 0; i < G.nerrs; i++)
            if (G.errs[i].counts_as_error) printf(" %s=%llu", G.errs[i].name, (unsigned long long)G.errs[i].n);
        printf(")");
    }
    printf("\ngame outcomes answered with an error (not counted as errors):");
    bool any = false;
    for (int i = 0; i < G.nerrs; i++)
        if (!G.errs[i].counts_as_error) {
            printf(" %s=%llu", G.errs[i].name, (unsigned long long)G.errs[i].n);
            any = true;
        }
    printf("%s\n", any ? "" : " none");
    const metric_t *cu = metric_find("load_cpu_user_s"), *cs = metric_find("load_cpu_sys_s");
    const metric_t *cp = metric_find("load_cpu_pct");
    printf("load generator cpu: %.2f s user + %.2f s sys over %.1f s = %.0f%% of one core, %d loop thread%s (",
           cu ? cu->v : 0, cs ? cs->v : 0, dur, cp ? cp->v : 0, G.nthreads, G.nthreads == 1 ? "" : "s");
    for (int i = 0; i < G.nthreads; i++) {
        char k[64];
        snprintf(k, sizeof k, "load_cpu_pct_thread%d", i);
        const metric_t *m = metric_find(k);
        printf("%sthread %d %.0f%%", i ? ", " : "", i, m ? m->v : 0);
    }
    printf(")%s\n", metric_find("load_cpu_pct_thread_max") && metric_find("load_cpu_pct_thread_max")->v > 90
                        ? ": near a full core, the generator may be the bottleneck" : "");
    printf("server stats: %s\n", G.server_stats_json ? G.server_stats_json : "(unavailable)");
}

/* Write b to path and free it. Returns 0, or -1 after a message. */
static int write_buf(const char *path, spc_buf_t *b) {
    FILE *f = fopen(path, "w");
    if (!f || !b->p || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0) {
        fprintf(stderr, "spacesim-load: cannot write %s: %s\n", path, strerror(errno));
        spc_buf_free(b);
        return -1;
    }
    spc_buf_free(b);
    return 0;
}

static int write_json(const char *path, double dur) {
    spc_buf_t b = {0};
    spc_buf_printf(&b, "{\n  \"target\": \"%s:%d\",\n  \"mix\": {", G.host, G.port);
    bool first = true;
    for (int k = 0; k < K__COUNT; k++)
        if (G.mix[k] > 0) {
            spc_buf_printf(&b, "%s\"%s\": %g", first ? "" : ", ", kind_name[k], G.mix[k]);
            first = false;
        }
    spc_buf_printf(&b, "},\n");
    if (G.script_path) {
        spc_buf_t q = {0};
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_str(&pk, strlen(G.script_path));
        msgpack_pack_str_body(&pk, G.script_path, strlen(G.script_path));
        msgpack_zone z;
        msgpack_zone_init(&z, 256);
        msgpack_object o;
        if (msgpack_unpack(sb.data, sb.size, NULL, &z, &o) == MSGPACK_UNPACK_SUCCESS && spc_json_append(&q, &o, -1) == 0)
            spc_buf_printf(&b, "  \"scenario\": %s,\n", q.p);
        msgpack_zone_destroy(&z);
        msgpack_sbuffer_destroy(&sb);
        spc_buf_free(&q);
    }
    for (size_t i = 0; i < g_nmetrics; i++)
        if (strncmp(g_metrics[i].name, "server_", 7) != 0)
            spc_buf_printf(&b, "  \"%s\": %.6g,\n", g_metrics[i].name, g_metrics[i].v);
    spc_buf_printf(&b, "  \"errors_by_kind\": {");
    first = true;
    for (int i = 0; i < G.nerrs; i++) {
        spc_buf_printf(&b, "%s\"%s\": %llu", first ? "" : ", ", G.errs[i].name, (unsigned long long)G.errs[i].n);
        first = false;
    }
    spc_buf_printf(&b, "},\n  \"methods\": {");
    first = true;
    for (int m = 0; m < SP_METHOD__COUNT; m++) {
        const hdr_t *h = G.by_method[m];
        if (!h->total) continue;
        spc_buf_printf(&b,
                       "%s\n    \"%s\": {\"count\": %llu, \"p50_ms\": %.6g, \"p90_ms\": %.6g, \"p99_ms\": %.6g, "
                       "\"p999_ms\": %.6g, \"max_ms\": %.6g}",
                       first ? "" : ",", sp_method_info(m)->name, (unsigned long long)h->total,
                       ms(hdr_percentile(h, 50)), ms(hdr_percentile(h, 90)), ms(hdr_percentile(h, 99)),
                       ms(hdr_percentile(h, 99.9)), ms(h->max));
        first = false;
    }
    spc_buf_printf(&b, "\n  },\n  \"series\": [");
    for (size_t i = 0; i < G.nseries; i++) {
        const point_t *p = &G.series[i];
        spc_buf_printf(&b,
                       "%s\n    {\"t\": %.2f, \"clients\": %u, \"cmds\": %.0f, \"snap_rate\": %.3f, \"mb_in\": %.4f, "
                       "\"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f, \"load_cpu_pct\": %.1f}",
                       i ? "," : "", p->t, p->clients, p->cmds, p->snap_rate, p->mb_in, p->p50, p->p90, p->p99,
                       p->max, p->cpu_pct);
    }
    spc_buf_printf(&b, "\n  ],\n  \"server_stats\": %s\n}\n", G.server_stats_json ? G.server_stats_json : "null");
    (void)dur;
    return write_buf(path, &b);
}

/* One --assert clause, "NAME OP VALUE". */
typedef struct clause {
    char name[64];
    int op; /* 0 <, 1 <=, 2 >, 3 >=, 4 ==, 5 != */
    double want;
} clause_t;
static const char *const op_text[] = {"<", "<=", ">", ">=", "==", "!="};

/* Parse cl into *out. Returns 0, or -1 after a message naming the problem. */
static int parse_clause(char *cl, clause_t *out) {
    while (*cl == ' ') cl++;
    size_t nl = strcspn(cl, "<>=!");
    if (nl == 0 || nl >= sizeof out->name) {
        fprintf(stderr, "spacesim-load: --assert: cannot read '%s' (want NAME<VALUE, ops < <= > >= == !=)\n", cl);
        return -1;
    }
    memcpy(out->name, cl, nl);
    out->name[nl] = '\0';
    while (nl && out->name[nl - 1] == ' ') out->name[--nl] = '\0';
    const char *op = cl + strcspn(cl, "<>=!");
    size_t oplen = 1;
    if (strncmp(op, "<=", 2) == 0) out->op = 1, oplen = 2;
    else if (strncmp(op, ">=", 2) == 0) out->op = 3, oplen = 2;
    else if (strncmp(op, "==", 2) == 0) out->op = 4, oplen = 2;
    else if (strncmp(op, "!=", 2) == 0) out->op = 5, oplen = 2;
    else if (*op == '<') out->op = 0;
    else if (*op == '>') out->op = 2;
    else {
        fprintf(stderr, "spacesim-load: --assert: bad operator in '%s'\n", cl);
        return -1;
    }
    char *end;
    out->want = strtod(op + oplen, &end);
    while (*end == ' ') end++;
    if (end == op + oplen || *end) {
        fprintf(stderr, "spacesim-load: --assert: bad number in '%s'\n", cl);
        return -1;
    }
    return 0;
}

/* Every well-formed clause of spec, in order (at most cap). */
static size_t parse_clauses(const char *spec, clause_t *out, size_t cap) {
    size_t n = 0;
    char *copy = strdup(spec), *save = NULL;
    if (!copy) fatal("out of memory");
    for (char *cl = strtok_r(copy, ",", &save); cl && n < cap; cl = strtok_r(NULL, ",", &save))
        if (parse_clause(cl, &out[n]) == 0) n++;
    free(copy);
    return n;
}

/* --assert 'p99_ms<50,snap_rate_min>=19': every clause must hold. Returns
 * 0 all held, 1 some failed, 2 a clause is malformed or names no metric. */
static int check_asserts(const char *spec, bool print) {
    int status = 0;
    char *copy = strdup(spec), *save = NULL;
    if (!copy) fatal("out of memory");
    for (char *cl = strtok_r(copy, ",", &save); cl; cl = strtok_r(NULL, ",", &save)) {
        clause_t k;
        if (parse_clause(cl, &k) != 0) {
            status = 2;
            continue;
        }
        while (*cl == ' ') cl++;
        const metric_t *m = metric_find(k.name);
        if (!m) {
            if (!print) continue; /* validating before the run: names are checked after it */
            fprintf(stderr, "spacesim-load: --assert: no metric named '%s'; known:", k.name);
            for (size_t i = 0; i < g_nmetrics; i++) fprintf(stderr, " %s", g_metrics[i].name);
            fprintf(stderr, "\n");
            status = 2;
            continue;
        }
        double v = m->v, want = k.want;
        int opn = k.op;
        bool ok = opn == 0 ? v < want : opn == 1 ? v <= want : opn == 2 ? v > want : opn == 3 ? v >= want
                : opn == 4 ? v == want : v != want;
        if (print) printf("assert %-28s %s (%s = %.6g)\n", cl, ok ? "PASS" : "FAIL", k.name, v);
        if (!ok && status == 0) status = 1;
    }
    free(copy);
    return status;
}

/* ---------------------------------------------------------------- chart */

/* A "nice" tick step for an axis of `span` with about `n` ticks: 1, 2 or 5
 * times a power of ten, so the labels are round numbers. */
static double nice_step(double span, int n) {
    if (!(span > 0)) span = 1;
    double raw = span / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* A tick label without float noise: 0.3, not 0.30000000000000004. */
static void tick_label(char *buf, size_t n, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    snprintf(buf, n, "%.*f", dec, v);
}

/* Does an --assert metric belong on the latency panel (ms) or the snapshot
 * panel (per client per second)? 0 neither. */
static int clause_panel(const char *name) {
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, "_ms") == 0 && strncmp(name, "send_lag", 8) != 0 &&
        strncmp(name, "server_", 7) != 0)
        return 1;
    if (strcmp(name, "snap_rate_min") == 0 || strcmp(name, "snap_rate_median") == 0) return 2;
    return 0;
}

/* A two-panel SVG line chart: RTT percentiles per second (top, ms, linear
 * or --log-latency) and snapshots per client per second (bottom), with the
 * --assert thresholds of either panel drawn as labelled dashed lines. Axes
 * end on round values and carry 1/2/5 ticks; the title and the subtitle
 * (the run's parameters) have their own lines above the first panel. */
static int write_svg(const char *path) {
    const double W = 900, H = 600, L = 70, R = 30, T = 90, ph = 200, gap = 70, pw = W - L - R;
    double tmax = 1, ymax = 0, ymin = INFINITY, smax = 0;
    clause_t cl[32];
    size_t ncl = G.asserts ? parse_clauses(G.asserts, cl, 32) : 0;
    for (size_t i = 0; i < G.nseries; i++) {
        const point_t *p = &G.series[i];
        if (p->t > tmax) tmax = p->t;
        double vs[3] = {p->p50, p->p99, p->max};
        for (int k = 0; k < 3; k++) {
            if (vs[k] > ymax) ymax = vs[k];
            if (vs[k] > 0 && vs[k] < ymin) ymin = vs[k];
        }
        if (p->snap_rate > smax) smax = p->snap_rate;
    }
    for (size_t i = 0; i < ncl; i++) {
        int panel = clause_panel(cl[i].name);
        if (panel == 1 && cl[i].want > ymax) ymax = cl[i].want;
        if (panel == 1 && cl[i].want > 0 && cl[i].want < ymin) ymin = cl[i].want;
        if (panel == 2 && cl[i].want > smax) smax = cl[i].want;
    }
    if (!(ymax > 0)) ymax = 1;
    if (!isfinite(ymin)) ymin = ymax / 10;
    /* Linear: 0..ymax rounded up to a tick. Log: whole decades around the data. */
    double ystep = nice_step(ymax, 5), ytop = ceil(ymax / ystep - 1e-9) * ystep;
    double lo_dec = floor(log10(ymin)), hi_dec = ceil(log10(ymax));
    if (hi_dec <= lo_dec) hi_dec = lo_dec + 1;
    double sstep = nice_step(smax > 0 ? smax : 1, 5), stop = ceil((smax > 0 ? smax : 1) / sstep - 1e-9) * sstep;
    double tstep = nice_step(tmax, 8), tend = ceil(tmax / tstep - 1e-9) * tstep;

    spc_buf_t b = {0};
    spc_buf_printf(&b,
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
                   "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                   W, H);
    spc_buf_printf(&b, "<text x=\"%.0f\" y=\"26\" font-size=\"16\" font-weight=\"bold\">spacesim-load against %s:%d</text>\n",
                   L, G.host, G.port);
    spc_buf_printf(&b, "<text x=\"%.0f\" y=\"46\" fill=\"#555\">%ld clients, %.0f s", L, G.nclients, G.duration);
    bool anymix = false;
    for (int k = 0; k < K__COUNT; k++)
        if (G.mix[k] > 0) {
            spc_buf_printf(&b, "%s%s=%g", anymix ? "," : ", mix ", kind_name[k], G.mix[k]);
            anymix = true;
        }
    if (G.script_path) spc_buf_printf(&b, ", scenario %s", G.script_path);
    spc_buf_printf(&b, "; open loop, latency from the intended send time</text>\n");
    for (int panel = 0; panel < 2; panel++) {
        double y0 = T + panel * (ph + gap);
        bool logy = panel == 0 && G.log_latency;
        /* value -> y pixel */
#define YPIX(v)                                                                                                    \
    (logy ? y0 + ph - ph * (log10((v) > 0 ? (v) : pow(10, lo_dec)) - lo_dec) / (hi_dec - lo_dec)                 \
          : y0 + ph - ph * (v) / (panel == 0 ? ytop : stop))
        spc_buf_printf(&b, "<text x=\"%.0f\" y=\"%.0f\" font-weight=\"bold\">%s</text>\n", L, y0 - 10,
                       panel == 0 ? (logy ? "round-trip time per second, ms (log scale): p50 blue, p99 red, max grey"
                                          : "round-trip time per second, ms: p50 blue, p99 red, max grey")
                                  : "snapshots per client per second (green)");
        spc_buf_printf(&b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n",
                       L, y0, pw, ph);
        char lab[32];
        if (logy) {
            for (double d = lo_dec; d <= hi_dec + 1e-9; d++)
                for (int m = 1; m <= 5; m += (m == 1 ? 1 : 3)) { /* 1, 2, 5 per decade */
                    double v = m * pow(10, d);
                    if (log10(v) > hi_dec + 1e-9) break;
                    double y = YPIX(v);
                    tick_label(lab, sizeof lab, v, pow(10, d));
                    spc_buf_printf(&b,
                                   "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>"
                                   "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                                   L, L + pw, y, y, m == 1 ? "#ddd" : "#f2f2f2", L - 6, y + 4, lab);
                }
        } else {
            double step = panel == 0 ? ystep : sstep, top = panel == 0 ? ytop : stop;
            for (double v = 0; v <= top + step / 2; v += step) {
                double y = YPIX(v);
                tick_label(lab, sizeof lab, v, step);
                spc_buf_printf(&b,
                               "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                               "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                               L, L + pw, y, y, L - 6, y + 4, lab);
            }
        }
        for (double t = 0; t <= tend + tstep / 2; t += tstep) {
            double x = L + pw * t / tend;
            tick_label(lab, sizeof lab, t, tstep);
            spc_buf_printf(&b, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%s s</text>\n", x, y0 + ph + 16, lab);
        }
        const int nlines = panel == 0 ? 3 : 1;
        static const char *const colours[] = {"#1f77b4", "#d62728", "#999", "#2ca02c"};
        for (int line = 0; line < nlines && G.nseries; line++) {
            spc_buf_printf(&b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                           colours[panel == 0 ? line : 3], panel == 0 && line == 2 ? " stroke-dasharray=\"4 3\"" : "");
            for (size_t i = 0; i < G.nseries; i++) {
                const point_t *p = &G.series[i];
                double v = panel == 1 ? p->snap_rate : line == 0 ? p->p50 : line == 1 ? p->p99 : p->max;
                spc_buf_printf(&b, "%.1f,%.1f ", L + pw * p->t / tend, YPIX(v));
            }
            spc_buf_printf(&b, "\"/>\n");
        }
        /* The thresholds: what the run was asserted against. */
        for (size_t i = 0; i < ncl; i++) {
            if (clause_panel(cl[i].name) != panel + 1) continue;
            double y = YPIX(cl[i].want);
            spc_buf_printf(&b,
                           "<line class=\"assert\" x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ff7f0e\" "
                           "stroke-width=\"1.5\" stroke-dasharray=\"8 4\"/>"
                           "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#ff7f0e\">assert %s%s%g</text>\n",
                           L, L + pw, y, y, L + pw - 4, y - 4, cl[i].name, op_text[cl[i].op], cl[i].want);
        }
#undef YPIX
    }
    spc_buf_printf(&b, "</svg>\n");
    return write_buf(path, &b);
}

/* ---------------------------------------------------------------- --hdr */

/* The latency spectrum of the load (G.all) in HdrHistogram's percentile
 * distribution text format (what HdrHistogram's outputPercentileDistribution
 * prints, in milliseconds): percentiles stepping by halving the distance to
 * 100% in 5 ticks each, then the Mean/Max footer. HdrHistogram's plotters
 * (plotFiles.html, HistogramLogAnalyzer) read it. Our buckets are those of
 * an HdrHistogram with 256 sub-buckets (< 0.8 % error). */
static int write_hdr(const char *path) {
    const hdr_t *h = G.all;
    spc_buf_t b = {0};
    spc_buf_printf(&b, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if (h->total) {
        double p = 0;
        for (;;) {
            uint64_t v = hdr_percentile(h, p);
            uint64_t below = 0;
            size_t vi = hdr_index(v);
            for (size_t i = 0; i <= vi; i++) below += h->counts[i];
            double frac = (double)below / (double)h->total;
            if (below >= h->total) break;
            spc_buf_printf(&b, "%12.3f %2.12f %10llu %14.2f\n", ms(v), frac, (unsigned long long)below,
                           1.0 / (1.0 - frac));
            /* HdrHistogram's percentile iterator: 5 ticks per half distance. */
            double ticks = 5 * pow(2, floor(log2(100.0 / (100.0 - (frac * 100 > p ? frac * 100 : p)))) + 1);
            double next = (frac * 100 > p ? frac * 100 : p) + 100.0 / ticks;
            if (next <= p) break;
            p = next;
            if (p >= 100) break;
        }
        spc_buf_printf(&b, "%12.3f %2.12f %10llu\n", ms(h->max), 1.0, (unsigned long long)h->total);
    }
    double mean = hdr_mean(h), var = 0;
    for (size_t i = 0; i < HDR_BUCKETS; i++)
        if (h->counts[i]) {
            double mid = ((double)hdr_bucket_lo(i) + (double)hdr_bucket_hi(i)) / 2 - mean;
            var += (double)h->counts[i] * mid * mid;
        }
    double sd = h->total ? sqrt(var / (double)h->total) : 0;
    spc_buf_printf(&b, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", mean / 1e6, sd / 1e6);
    spc_buf_printf(&b, "#[Max     = %12.3f, Total count    = %12llu]\n", ms(h->total ? h->max : 0),
                   (unsigned long long)h->total);
    spc_buf_printf(&b, "#[Buckets = %12d, SubBuckets     = %12d]\n", 64 - HDR_SUB_BITS + 1, (int)HDR_LINEAR);
    return write_buf(path, &b);
}

/* Fold every loop's figures into G (after the threads are joined). */
static void merge_threads(void) {
    for (int i = 0; i < G.nthreads; i++) {
        lthr_t *t = &G.thr[i];
        for (int m = 0; m < SP_METHOD__COUNT; m++) hdr_add(G.by_method[m], t->by_method[m]);
        hdr_add(G.all, t->all);
        hdr_add(G.lag, t->lag);
        G.sent += t->sent;
        G.answered += t->answered;
        G.snaps += t->snaps;
        G.events += t->events;
        G.bytes_in += t->bytes_in;
        G.bytes_out += t->bytes_out;
        G.errors_total += atomic_load_explicit(&t->errors_total, memory_order_relaxed);
        G.running_at_end += t->running_at_end;
        for (int e = 0; e < t->nerrs; e++)
            errs_add(G.errs, &G.nerrs, t->errs[e].name, t->errs[e].n, t->errs[e].counts_as_error);
    }
}

/* The report, files and asserts, once every loop has returned. Returns the
 * exit status. */
static int finish(void) {
    merge_threads();
    double dur = (double)(atomic_load_explicit(&G.t_end, memory_order_relaxed) - G.t0) / 1e9;
    double snap_min, snap_med;
    size_t measured;
    build_metrics(dur, &snap_min, &snap_med, &measured);
    print_report(dur, snap_min, snap_med, measured);
    int status = 0;
    if (G.json_path && write_json(G.json_path, dur) != 0) status = 2;
    if (G.svg_path && write_svg(G.svg_path) != 0) status = 2;
    if (G.hdr_path && write_hdr(G.hdr_path) != 0) status = 2;
    if (G.asserts) {
        int a = check_asserts(G.asserts, true);
        if (a > status) status = a;
    }
    if (S.failed) status = 2;
    if (atomic_load_explicit(&G.connected_peak, memory_order_relaxed) == 0) {
        fprintf(stderr, "spacesim-load: no client got a session: is spacesimd running on %s:%d?\n", G.host, G.port);
        if (status == 0) status = 2;
    }
    fflush(stdout);
    return status;
}

/* ---------------------------------------------------------------- main */

/* The one description of the command line: getopt_long, --help and the
 * manual page (spacesim-load --man, installed as spacesim-load.1) all come
 * from these tables (clients/opts.h). */
enum { O_CONNECT_RATE = SPC_OPT_FIRST, O_RAMP, O_MIX, O_RADIUS, O_JSON, O_SVG, O_HDR, O_LOG, O_ASSERT, O_SEED, O_THREADS };

static const spc_opt_t load_opts[] = {
    {'h', 'h', "host", "HOST", "server address (default 127.0.0.1)"},
    {'p', 'p', "port", "PORT", "server port (default 7777)"},
    {'c', 'c', "clients", "N", "concurrent clients, 1..100000 (default 10)"},
    {'d', 'd', "duration", "SECONDS", "run time, 1..3600 (default 10); the run stops by itself"},
    {O_CONNECT_RATE, 0, "connect-rate", "N", "new connections per second (default 1000)"},
    {O_RAMP, 0, "ramp", "SECONDS", "spread the client starts over this time (default 0)"},
    {O_MIX, 0, "mix", "SPEC",
     "commands per client per second, each on a constant schedule: move, fire, mine, ping, inspect "
     "(default move=5,fire=1,mine=1,ping=2); with -s the script sends instead, and --mix adds to it"},
    {'s', 's', "script", "FILE", "run the Lua scenario FILE: per-client hooks decide what each client sends "
                                 "(see SCENARIOS)"},
    {O_RADIUS, 0, "radius", "R", "subscribe each client with radius R (default: the server's)"},
    {O_JSON, 0, "json", "FILE", "write the report as JSON (the names --assert takes)"},
    {O_ASSERT, 0, "assert", "LIST", "thresholds, e.g. 'p99_ms<50,snap_rate_min>=19,errors==0'; exit 1 if one fails"},
    {O_SVG, 0, "svg", "FILE", "chart: round-trip p50/p99/max and snapshots per client per second over time, "
                              "with the --assert thresholds drawn"},
    {O_LOG, 0, "log-latency", NULL, "latency axis of the chart on a log scale (default linear)"},
    {O_HDR, 0, "hdr", "FILE", "write the full latency spectrum of the load commands in HdrHistogram's percentile text format "
                              "(milliseconds), which HdrHistogram's plotters read"},
    {O_SEED, 0, "seed", "N", "random seed for targets, headings and the scripts' math.random (default 1)"},
    {O_THREADS, 0, "threads", "N", "loop threads, 1..16, the clients dealt round-robin between them (default 2; "
                                   "1 with -s: the scenario's Lua state is not shared between threads)"},
    {'q', 'q', "quiet", NULL, "no progress lines"},
};

static const spc_optgroup_t load_groups[] = {
    {"Options", NULL, load_opts, sizeof load_opts / sizeof load_opts[0], 1},
};

static const char *const load_synopsis[] = {
    "[-h HOST] [-p PORT] [-c CLIENTS] [-d SECONDS] [--mix SPEC] [OPTIONS]",
    "[OPTIONS] -s SCENARIO.lua",
    NULL,
};

static const spc_section_t load_sections[] = {
    {"Open loop",
     "Each client connects, says hello, spawns a ship, then sends on a fixed schedule; latency counts from the "
     "INTENDED send time (a stalled server shows up as latency, not as a lower request rate: coordinated omission, "
     "as wrk2 measures it). How late the generator itself was is reported as send lag. Every snapshot is decoded "
     "into the client's view. Error replies that are game outcomes (NOT_FOUND, OUT_OF_RANGE, COOLDOWN) are listed "
     "apart and not counted as errors."},
    {"Scenarios",
     "With -s FILE, a Lua 5.4 script decides what each client does, the way wrk -s does. One Lua state serves every "
     "client of the process; the script defines any of these global functions (all optional):\n\n"
     "  setup(client)             once, after the client's hello and spawn\n"
     "  on_snapshot(client)       after each snapshot is applied to its view\n"
     "  on_event(client, event)   for each event notification (a table)\n"
     "  on_timer(client)          every `timer` seconds (global, default 1)\n"
     "  on_response(client, method, ok, result)  for each answer to the script\n\n"
     "client is a table with id (0..N-1), ship, session, and methods:\n\n"
     "  client:move(vx, vy, vz)   client:fire(target)   client:mine(asteroid)\n"
     "  client:ping()   client:inspect(id)   client:call(method, ...)\n"
     "  client:view()             entities in view: {id, kind, x, y, z, owner}\n"
     "  client:nearest(kind)      nearest entity of kind \"ship\", \"asteroid\"\n"
     "                            or \"projectile\" (not our own): table or nil\n"
     "  client:pos()              our ship's x, y, z (nil when not in view)\n"
     "  client.state              a table of the script's own, per client\n\n"
     "Requests a hook sends get the same open-loop accounting as --mix: they are timed from the moment the hook "
     "ran (the timer's due time for on_timer), and go into the same report, --json, --hdr and --assert. A Lua "
     "error stops the run: the message names FILE:LINE, the report is still printed, and the exit status is 2. "
     "Two examples are installed with the package (share/spacesim/scenarios): patrol.lua and miner.lua."},
    {"Metrics",
     "Names for --assert and --json: p50_ms p90_ms p99_ms p999_ms max_ms (all load commands), <method>_p99_ms and "
     "the like per method, snap_rate_min snap_rate_median commands_per_sec errors mb_per_s_in clients_connected "
     "send_lag_p99_ms, load_cpu_pct (the generator's own CPU over the run, % of one core; "
     "load_cpu_pct_thread_max, load_cpu_pct_threadN, load_cpu_user_s, load_cpu_sys_s), and server_<key> from the "
     "server's stats."},
    {"Exit status",
     "0 the run finished and every --assert held, 1 an assert failed, 2 bad usage, a scenario error, or no client "
     "connected."},
    {"Examples",
     "  spacesim-load -c 1000 -d 30 --assert 'p99_ms<50,errors==0'\n"
     "  spacesim-load -c 200 -d 20 --svg run.svg --log-latency --hdr run.hgrm\n"
     "  spacesim-load -c 2000 -d 60 -s /usr/local/share/spacesim/scenarios/patrol.lua"},
};

static const spc_prog_t load_prog = {
    .name = "spacesim-load",
    .version = LOAD_VERSION,
    .version_extra = "(protocol " SPC_STR(SP_PROTO_VERSION) ")",
    .summary = "open-loop load generator and scenario runner for spacesimd",
    .synopsis = load_synopsis,
    .description = "Drive spacesimd with many MessagePack-RPC clients from one process (one libuv loop per "
                   "--threads thread) and report round-trip times, snapshot rates, errors and the generator's own "
                   "CPU.",
    .groups = load_groups,
    .ngroups = sizeof load_groups / sizeof load_groups[0],
    .sections = load_sections,
    .nsections = sizeof load_sections / sizeof load_sections[0],
    .see_also = "spacesimd(1), spacesim-cli(1), wrk(1)",
};

/* One loop thread: its clients, from the first connection to the last close. */
static void thread_main(void *arg) {
    lthr_t *t = arg;
    TL = t;
    cpu_now(true, &t->cpu_user0, &t->cpu_sys0);
    uv_timer_start(&t->tick, on_tick, 0, 1);
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

static double parse_num(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : NAN;
    if (!s || errno || end == s || *end || !isfinite(v))
        fatal("%s needs a number, got '%s' (see spacesim-load --help)", opt, s ? s : "");
    if (v < lo || v > hi) fatal("%s %s is out of range: allowed %g..%g", opt, s, lo, hi);
    return v;
}

static void parse_mix(const char *spec) {
    memset(G.mix, 0, sizeof G.mix);
    char *copy = strdup(spec), *save = NULL;
    if (!copy) fatal("out of memory");
    for (char *it = strtok_r(copy, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(it, '=');
        if (!eq) fatal("--mix: '%s' is not NAME=RATE (e.g. move=5,fire=1)", it);
        *eq = '\0';
        int k;
        for (k = 0; k < K__COUNT; k++)
            if (strcmp(it, kind_name[k]) == 0) break;
        if (k == K__COUNT) fatal("--mix: unknown command '%s' (move, fire, mine, ping, inspect)", it);
        G.mix[k] = parse_num("--mix rate", eq + 1, 0, 1000);
    }
    free(copy);
    double total = 0;
    for (int k = 0; k < K__COUNT; k++) total += G.mix[k];
    if (total > 1000) fatal("--mix: %g commands per client per second is absurd (max 1000)", total);
    if (total > 200)
        fprintf(stderr, "spacesim-load: warning: %g commands/s per client exceeds the server's default rate limit "
                        "(200/s): expect RATE_LIMITED errors\n", total);
}

static int on_opt(int id, const char *v, void *ctx) {
    (void)ctx;
    switch (id) {
    case 'h': G.host = v; break;
    case 'p': G.port = (int)parse_num("-p", v, 1, 65535); break;
    case 'c': G.nclients = (long)parse_num("-c", v, 1, MAX_CLIENTS); break;
    case 'd': G.duration = parse_num("-d", v, 1, MAX_DURATION); break;
    case O_CONNECT_RATE: G.connect_rate = parse_num("--connect-rate", v, 1, 100000); break;
    case O_RAMP: G.ramp = parse_num("--ramp", v, 0, MAX_DURATION); break;
    case O_MIX:
        parse_mix(v);
        G.mix_given = true;
        break;
    case 's': G.script_path = v; break;
    case O_RADIUS: G.radius = parse_num("--radius", v, 1, 20000); break;
    case O_JSON: G.json_path = v; break;
    case O_SVG: G.svg_path = v; break;
    case O_LOG: G.log_latency = true; break;
    case O_HDR: G.hdr_path = v; break;
    case O_ASSERT: G.asserts = v; break;
    case O_SEED: G.seed = (uint64_t)parse_num("--seed", v, 0, 1e15); break;
    case O_THREADS:
        G.nthreads = (int)parse_num("--threads", v, 1, 16);
        G.threads_given = true;
        break;
    case 'q': G.quiet = true; break;
    default: return spc_opts_bad(&load_prog, "internal error: option %d", id);
    }
    return 0;
}

int main(int argc, char **argv) {
    G.host = SPC_DEFAULT_HOST;
    G.port = SPC_DEFAULT_PORT;
    G.nclients = 10;
    G.duration = 10;
    G.connect_rate = 1000;
    G.seed = 1;
    G.nthreads = 2;
    parse_mix("move=5,fire=1,mine=1,ping=2");
    int ind;
    int st = spc_opts_parse(&load_prog, 0, argc, argv, &ind, 0, on_opt, NULL);
    if (st >= 0) return st;
    if (G.script_path) {
        /* The script drives the clients; --mix given as well adds to it. */
        if (!G.mix_given) memset(G.mix, 0, sizeof G.mix);
        script_load(G.script_path);
    }
    if (G.ramp > G.duration) fatal("--ramp %g is longer than the run (-d %g)", G.ramp, G.duration);
    if (G.asserts && check_asserts(G.asserts, false) == 2) return 2;
    if (G.script_path && G.nthreads > 1) {
        if (G.threads_given) fatal("--threads %d with -s: a scenario runs on one thread (one Lua state)", G.nthreads);
        G.nthreads = 1;
    }
    if (G.nthreads > G.nclients) G.nthreads = (int)G.nclients; /* no idle loops */

    char err[256];
    socklen_t sl;
    if (spc_resolve(G.host, G.port, &G.addr, &sl, err, sizeof err) != 0) fatal("%s", err);

    /* One descriptor per client plus a few: raise the soft limit, and say
     * so clearly when the hard limit is too low. */
    struct rlimit rl;
    rlim_t need = (rlim_t)G.nclients + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
            fatal("%ld clients need %llu file descriptors but the hard limit is %llu (raise it: ulimit -Hn)",
                  G.nclients, (unsigned long long)need, (unsigned long long)rl.rlim_max);
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) fatal("cannot raise RLIMIT_NOFILE to %llu: %s",
                                                       (unsigned long long)need, strerror(errno));
    }

    G.clients = calloc((size_t)G.nclients, sizeof *G.clients);
    G.thr = calloc((size_t)G.nthreads, sizeof *G.thr);
    if (!G.clients || !G.thr) fatal("out of memory for %ld clients", G.nclients);
    G.all = malloc(sizeof(hdr_t));
    G.lag = malloc(sizeof(hdr_t));
    if (!G.all || !G.lag) fatal("out of memory");
    hdr_init(G.all);
    hdr_init(G.lag);
    for (int m = 0; m < SP_METHOD__COUNT; m++) {
        G.by_method[m] = malloc(sizeof(hdr_t));
        if (!G.by_method[m]) fatal("out of memory");
        hdr_init(G.by_method[m]);
    }
    atomic_init(&G.stats_thread, -1);
    for (int i = 0; i < G.nthreads; i++) {
        lthr_t *t = &G.thr[i];
        t->index = (uint32_t)i;
        t->next_to_start = i;
        /* Thread 0's stream is the one a single-loop run always had. */
        t->rng = (G.seed + (uint64_t)i * 0xD1B54A32D192ED03ull) * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
        if (t->rng == 0) t->rng = 1;
        if (uv_loop_init(&t->loop) != 0 || uv_mutex_init(&t->imu) != 0) fatal("cannot set up loop %d", i);
        for (int m = 0; m < SP_METHOD__COUNT; m++) t->by_method[m] = malloc(sizeof(hdr_t));
        t->all = malloc(sizeof(hdr_t));
        t->lag = malloc(sizeof(hdr_t));
        t->interval = malloc(sizeof(hdr_t));
        if (!t->all || !t->lag || !t->interval) fatal("out of memory");
        for (int m = 0; m < SP_METHOD__COUNT; m++) {
            if (!t->by_method[m]) fatal("out of memory");
            hdr_init(t->by_method[m]);
        }
        hdr_init(t->all);
        hdr_init(t->lag);
        hdr_init(t->interval);
        msgpack_sbuffer_init(&t->sb);
        uv_timer_init(&t->loop, &t->tick);
    }

    G.t0 = uv_hrtime();
    atomic_init(&G.t_end, G.t0 + (uint64_t)(G.duration * 1e9));
    for (long i = 0; i < G.nclients; i++) {
        client_t *c = &G.clients[i];
        c->idx = (uint32_t)i;
        c->thr = &G.thr[i % G.nthreads];
        c->state = C_WAITING;
        double by_rate = (double)i / G.connect_rate;
        double by_ramp = G.nclients > 1 ? G.ramp * (double)i / (double)(G.nclients - 1) : 0;
        c->start_ns = G.t0 + (uint64_t)((by_rate > by_ramp ? by_rate : by_ramp) * 1e9);
    }
    signal(SIGPIPE, SIG_IGN);
    lthr_t *t0 = &G.thr[0];
    uv_timer_init(&t0->loop, &G.progress);
    uv_timer_start(&G.progress, on_progress, 1000, 1000);
    uv_signal_init(&t0->loop, &G.sigint);
    uv_signal_start(&G.sigint, on_sigint, SIGINT);
    for (int i = 1; i < G.nthreads; i++)
        if (uv_thread_create(&G.thr[i].tid, thread_main, &G.thr[i]) != 0) fatal("cannot start loop thread %d", i);
    thread_main(t0);
    for (int i = 1; i < G.nthreads; i++) uv_thread_join(&G.thr[i].tid);
    int status = finish();
    for (int i = 0; i < G.nthreads; i++) uv_loop_close(&G.thr[i].loop);
    if (S.L) lua_close(S.L);
    return status;
}
