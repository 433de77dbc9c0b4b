/* session.c: MessagePack-RPC dispatch and the methods of a session.
 *
 * Requests [0, msgid, method, params] get exactly one response
 * [1, msgid, error, result]; client notifications [2, method, params] are
 * executed without a response (a failed one is silently dropped). A response
 * [1, ...] from a client, or anything else without a usable msgid, gets an
 * `error` notification and the connection is closed. Errors are maps
 * {"code": int, "message": str}, codes from proto/spacesim_proto.def.
 *
 * Order of checks for every request (documented in proto/PROTOCOL.md):
 * nesting depth (MAX_DEPTH, and size: by the framer in net.c before the
 * message is decoded), shape (sp_rpc_classify), rate limit (token
 * bucket: every message costs one token, so a flooding client gets
 * RATE_LIMITED replies and cannot monopolise the loop), method known, hello
 * done (only ping and hello before it), admin for admin methods, arity and
 * parameter types against the .def signature (sp_rpc_check_params: the
 * message names the param), then the method's own checks and ownership.
 *
 * Commands run on the loop thread between ticks, in arrival order, directly
 * on the world (the loop is its only writer), so their result (hit, damage,
 * mined amount) is known when the response is written. Worker intents are
 * applied at the start of a tick in sp_msg_order_cmp() order (loop.c). */
#include "daemon/daemon.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rpc.h"
#include "spacesim_proto.def"

enum {
#define X(id, code, msg) E_##id = code,
    SP_PROTO_ERROR_MAP(X)
#undef X
};

enum {
#define X(id, name, mn, mx, hello, admin, sig) M_##id,
    SP_PROTO_METHOD_MAP(X)
#undef X
    M_COUNT
};

typedef struct method_info {
    const char *name;
    int min_params, max_params;
    int needs_hello, admin_only;
} method_info_t;

static const method_info_t methods[M_COUNT] = {
#define X(id, name, mn, mx, hello, admin, sig) {name, mn, mx, hello, admin},
    SP_PROTO_METHOD_MAP(X)
#undef X
};

/* ---------------------------------------------------------------- packing */

static void pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str_with_body(pk, s, n);
}

static void pack_err_map(msgpack_packer *pk, int code, const char *msg) {
    msgpack_pack_map(pk, 2);
    pack_str(pk, "code");
    msgpack_pack_int(pk, code);
    pack_str(pk, "message");
    pack_str(pk, msg);
}

void sp_session_send_error(sp_client_t *c, uint64_t msgid, bool have_id, int code, const char *msg) {
    msgpack_packer *pk = &c->d->pk;
    if (!have_id) {
        sp_session_notify_error(c, code, msg);
        return;
    }
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, 1);
    msgpack_pack_uint64(pk, msgid);
    pack_err_map(pk, code, msg);
    msgpack_pack_nil(pk);
    sp_client_send_sbuf(c);
}

/* [2, "error", [{"code", "message"}]]: for input that had no usable msgid. */
void sp_session_notify_error(sp_client_t *c, int code, const char *msg) {
    msgpack_packer *pk = &c->d->pk;
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, 2);
    pack_str(pk, "error");
    msgpack_pack_array(pk, 1);
    pack_err_map(pk, code, msg);
    sp_client_send_sbuf(c);
}

/* Begin a success response; the caller packs the result then sends. */
static msgpack_packer *begin_result(sp_client_t *c, uint64_t msgid) {
    msgpack_packer *pk = &c->d->pk;
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, 1);
    msgpack_pack_uint64(pk, msgid);
    msgpack_pack_nil(pk);
    return pk;
}

/* ---------------------------------------------------------------- params */

/* The .def's limits as constants (MAX_NAME_BYTES, MAX_ALERT_BYTES, MAX_DEPTH...). */
enum {
#define X(id, value, what) L_##id = (value),
    SP_PROTO_LIMIT_MAP(X)
#undef X
};
_Static_assert(L_MAX_SHIPS == SP_MAX_SHIPS_PER_CLIENT, "daemon.h and spacesim_proto.def disagree on ships per session");

/* A finite coordinate or velocity component as a float the world accepts:
 * clamped to +-1e9 first, so a huge double never becomes inf. */
static float clamp_f(double v) { return (float)(v > 1e9 ? 1e9 : v < -1e9 ? -1e9 : v); }

/* Map an sp_world_* error to an RPC error. */
static int world_err(int e, const char **msg) {
    switch (e) {
    case SP_ENOENT: *msg = "no such entity"; return E_NOT_FOUND;
    case SP_EINVAL: *msg = "wrong kind of entity or invalid value"; return E_INVALID_PARAMS;
    case SP_EBUSY: *msg = "cooling down"; return E_COOLDOWN;
    case SP_ERANGE: *msg = "out of range"; return E_OUT_OF_RANGE;
    case SP_ELIMIT: *msg = "world entity limit reached"; return E_LIMIT;
    case SP_EPERM: *msg = "forbidden"; return E_FORBIDDEN;
    default: *msg = "internal error"; return E_INTERNAL;
    }
}

/* Is `ship` a live ship owned by this session? 0, or an RPC error code. */
static int own_ship(sp_client_t *c, uint64_t ship, const char **msg) {
    sp_entity_info_t info;
    int r = sp_world_inspect(c->d->world, ship, &info);
    if (r < 0) {
        *msg = "no such entity";
        return E_NOT_FOUND;
    }
    if (info.kind != SP_KIND_SHIP) {
        *msg = "not a ship";
        return E_INVALID_PARAMS;
    }
    if (info.owner != c->session || c->session == 0) {
        *msg = "not your ship";
        return E_FORBIDDEN;
    }
    return 0;
}

/* Drop ids of ships that no longer exist (destroyed in combat). */
static void prune_ships(sp_client_t *c) {
    sp_entity_info_t info;
    for (int i = 0; i < c->nships;) {
        if (sp_world_inspect(c->d->world, c->ships[i], &info) < 0) c->ships[i] = c->ships[--c->nships];
        else i++;
    }
}

static uint64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Constant-time comparison (the token must not leak through timing). */
static bool token_eq(const char *a, size_t alen, const char *b, size_t blen) {
    unsigned char diff = (unsigned char)(alen != blen);
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* ---------------------------------------------------------------- alerts */

void sp_session_broadcast_alert(sp_daemon_t *d, const char *text, size_t len, int priority, uint32_t from) {
    msgpack_packer *pk = &d->pk;
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, 2);
    pack_str(pk, "event");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 5);
    pack_str(pk, "type");
    pack_str(pk, "SystemAlert");
    pack_str(pk, "tick");
    msgpack_pack_uint64(pk, sp_world_tick(d->world));
    pack_str(pk, "message");
    msgpack_pack_str_with_body(pk, text, len);
    pack_str(pk, "priority");
    msgpack_pack_int(pk, priority);
    pack_str(pk, "from");
    msgpack_pack_uint32(pk, from);
    /* One encoding, sent to every client (NEW ones too: "every client"). */
    size_t n = d->sbuf.size;
    char *copy = malloc(n);
    if (copy != NULL) {
        memcpy(copy, d->sbuf.data, n);
        msgpack_sbuffer_clear(&d->sbuf);
        sp_client_t *c = d->clients;
        while (c) {
            sp_client_t *next = c->next;
            sp_client_send(c, copy, n);
            d->st.events_sent++;
            c = next;
        }
        free(copy);
    } else {
        msgpack_sbuffer_clear(&d->sbuf);
    }
    sp_workers_broadcast_alert(d, text, len, priority);
}

/* ---------------------------------------------------------------- methods */

/* stats: every key of SP_PROTO_STATS_MAP (the .def: PROTOCOL.md documents
 * them and tests/net/check_daemon checks each is sent), then any extras. */
enum {
#define X(id, key, type, what) S_##id,
    SP_PROTO_STATS_MAP(X)
#undef X
    S_COUNT
};

typedef struct stat_kv {
    const char *key;
    bool is_float;
    uint64_t u;
    double f;
} stat_kv_t;

#define SP_STATS_EXTRA_MAX 8 /* room for daemon-specific keys after the .def's */

static void do_stats(sp_client_t *c, uint64_t msgid) {
    sp_daemon_t *d = c->d;
    double p50, p99, mx;
    sp_tick_percentiles(d, &p50, &p99, &mx);
    size_t results = 0;
    size_t jobs = sp_workers_queue_depth(d, &results);
    uint64_t oq = 0, oq_max = 0;
    for (const sp_client_t *k = d->clients; k; k = k->next) {
        oq += k->obuf_bytes;
        if (k->obuf_bytes > oq_max) oq_max = k->obuf_bytes;
    }
    stat_kv_t kv[S_COUNT + SP_STATS_EXTRA_MAX];
    static const struct { const char *key; bool is_float; } def[S_COUNT] = {
#define X(id, key, type, what) [S_##id] = {key, type[0] == 'f'},
        SP_PROTO_STATS_MAP(X)
#undef X
    };
    for (int i = 0; i < S_COUNT; i++) kv[i] = (stat_kv_t){def[i].key, def[i].is_float, 0, 0.0};
#define SET_U(id, v) (kv[S_##id].u = (uint64_t)(v))
#define SET_F(id, v) (kv[S_##id].f = (double)(v))
    SET_U(TICK, sp_world_tick(d->world));
    SET_U(ENTITIES, sp_world_count(d->world));
    SET_U(CLIENTS, (uint64_t)d->nclients);
    SET_F(TICK_MS_P50, p50);
    SET_F(TICK_MS_P99, p99);
    SET_F(TICK_MS_MAX, mx);
    SET_U(OVERRUNS, d->st.overruns);
    SET_F(DILATION, d->st.dilation);
    SET_U(BYTES_OUT, d->st.bytes_out);
    SET_U(BYTES_IN, d->st.bytes_in);
    SET_F(BYTES_OUT_PER_SEC, d->st.bytes_out_per_sec);
    SET_U(JOB_QUEUE_DEPTH, jobs);
    SET_U(RESULT_QUEUE_DEPTH, results);
    SET_U(OUT_QUEUE_BYTES, oq);
    SET_U(OUT_QUEUE_MAX_BYTES, oq_max);
    SET_U(SNAPSHOTS_SENT, d->st.snapshots_sent);
    SET_U(SNAPSHOTS_DROPPED, d->st.snapshots_skipped);
    SET_U(SNAPSHOT_BYTES, d->st.snapshot_bytes);
    SET_U(COMMANDS, d->st.commands);
    SET_F(COMMANDS_PER_SEC, d->st.cmds_per_sec);
    SET_U(KICKS, d->st.kicks);
    SET_U(EVENTS_SENT, d->st.events_sent);
    SET_U(WORKER_MESSAGES, d->st.worker_msgs);
    SET_U(WORKERS, d->conf.workers);
    SET_U(EVENTS_DROPPED, sp_workers_events_dropped(d));
    SET_U(AI_STALLS, d->st.ai_stalls);
    SET_U(WORLD_HASH, sp_world_hash(d->world));
#undef SET_U
#undef SET_F
    size_t n = S_COUNT;
    /* Extras (not in the .def; clients ignore unknown keys), at most
     * SP_STATS_EXTRA_MAX: kv[n++] = (stat_kv_t){"key", false, value, 0}; */
    msgpack_packer *pk = begin_result(c, msgid);
    msgpack_pack_map(pk, n);
    for (size_t i = 0; i < n; i++) {
        pack_str(pk, kv[i].key);
        if (kv[i].is_float) msgpack_pack_double(pk, kv[i].f);
        else msgpack_pack_uint64(pk, kv[i].u);
    }
    sp_client_send_sbuf(c);
}

static void do_inspect(sp_client_t *c, uint64_t msgid, uint64_t id) {
    sp_entity_info_t e;
    if (sp_world_inspect(c->d->world, id, &e) < 0) {
        sp_session_send_error(c, msgid, true, E_NOT_FOUND, "no such entity");
        return;
    }
    msgpack_packer *pk = begin_result(c, msgid);
    int extra = e.kind == SP_KIND_ASTEROID ? 2 : 0;
    msgpack_pack_map(pk, (size_t)(9 + extra));
    pack_str(pk, "id");
    msgpack_pack_uint64(pk, e.id);
    pack_str(pk, "kind");
    pack_str(pk, sp_entity_kind_name(e.kind) ? sp_entity_kind_name(e.kind) : "?");
    pack_str(pk, "pos");
    msgpack_pack_array(pk, 3);
    for (int i = 0; i < 3; i++) msgpack_pack_double(pk, e.pos[i]);
    pack_str(pk, "vel");
    msgpack_pack_array(pk, 3);
    for (int i = 0; i < 3; i++) msgpack_pack_double(pk, e.vel[i]);
    pack_str(pk, "hp");
    msgpack_pack_double(pk, e.hp);
    pack_str(pk, "max_hp");
    msgpack_pack_double(pk, e.max_hp);
    pack_str(pk, "radius");
    msgpack_pack_double(pk, e.radius);
    pack_str(pk, "owner");
    if (e.owner == 0) msgpack_pack_nil(pk);
    else msgpack_pack_uint32(pk, e.owner);
    pack_str(pk, "cargo");
    msgpack_pack_map(pk, SP_RESOURCE_COUNT);
    for (int r = 0; r < SP_RESOURCE_COUNT; r++) {
        pack_str(pk, sp_resource_name(r));
        msgpack_pack_double(pk, e.cargo[r]);
    }
    if (extra) {
        pack_str(pk, "resource_type");
        pack_str(pk, e.resource >= 0 ? sp_resource_name(e.resource) : "");
        pack_str(pk, "amount");
        msgpack_pack_double(pk, e.amount);
    }
    sp_client_send_sbuf(c);
}

static void reply_true(sp_client_t *c, uint64_t msgid, bool have_id) {
    if (!have_id) return;
    msgpack_pack_true(begin_result(c, msgid));
    sp_client_send_sbuf(c);
}

/* Token bucket: refill rate_per_sec, capacity rate_burst, one per request. */
static bool take_token(sp_client_t *c, uint64_t now) {
    sp_daemon_t *d = c->d;
    double dt = (double)(now - c->tokens_ns) / 1e9;
    c->tokens_ns = now;
    c->tokens += dt * d->conf.rate_per_sec;
    if (c->tokens > d->conf.rate_burst) c->tokens = d->conf.rate_burst;
    if (c->tokens < 1.0) return false;
    c->tokens -= 1.0;
    return true;
}

/* Send err (code + message) to the request, or drop it for a notification. */
static void send_rpc_error(sp_client_t *c, uint64_t msgid, bool have_id, const sp_rpc_error_t *err) {
    if (have_id) sp_session_send_error(c, msgid, true, err->code, err->message);
}

void sp_session_handle(sp_client_t *c, const msgpack_object *o) {
    sp_daemon_t *d = c->d;
    char msg[160];
    /* 1. Shape. Nesting deeper than MAX_DEPTH never gets here: the framer
     * (sp_rpc_scan() in net.c) refused it with PARSE_ERROR and closed. */
    sp_rpc_msg_t m;
    int rc = sp_rpc_classify(o, &m);
    bool is_response = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size > 0 &&
                       o->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.array.ptr[0].via.u64 == 1;
    if (is_response) {
        /* The server never sends requests, so a response from a client is a
         * confused client: say so, then close (PROTOCOL.md, Transport). */
        sp_session_notify_error(c, E_INVALID_REQUEST, "invalid request: clients must not send responses");
        sp_client_close(c, "kicked: client sent a response");
        return;
    }
    if (rc != 0) {
        bool is_request = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size > 0 &&
                          o->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                          o->via.array.ptr[0].via.u64 == 0;
        snprintf(msg, sizeof msg, "invalid request: %s", m.reason ? m.reason : "not an RPC message");
        if (is_request && m.has_msgid) {
            sp_session_send_error(c, m.msgid, true, E_INVALID_REQUEST, msg);
            return;
        }
        sp_session_notify_error(c, E_INVALID_REQUEST, msg);
        sp_client_close(c, "kicked: invalid request");
        return;
    }
    const bool have_id = m.type == SP_RPC_REQUEST; /* else a notification: no response */
    const uint64_t msgid = m.msgid;
    /* 2. Rate limit: every well-formed message costs a token. */
    d->st.commands++;
    if (!take_token(c, sp_now_ns())) {
        if (have_id) sp_session_send_error(c, msgid, true, E_RATE_LIMITED, "rate limited: slow down");
        return;
    }
    /* 3. Method known, 4. hello done, 5. admin, 6. arity and param types. */
    sp_rpc_error_t err = {0, ""};
    if (m.method_id < 0) {
        sp_rpc_check_params(&m, &err); /* METHOD_NOT_FOUND naming the method */
        send_rpc_error(c, msgid, have_id, &err);
        return;
    }
    const method_info_t *mi = &methods[m.method_id];
    if (mi->needs_hello && c->state != SP_CLIENT_READY) {
        sp_session_send_error(c, msgid, have_id, E_NOT_AUTHENTICATED, "call hello first");
        return;
    }
    if (mi->admin_only && !c->admin) {
        sp_session_send_error(c, msgid, have_id, E_FORBIDDEN, "forbidden: admin token required");
        return;
    }
    if (sp_rpc_check_params(&m, &err) != 0) {
        send_rpc_error(c, msgid, have_id, &err);
        return;
    }
    /* From here every param inside the signature has its type; the getters
     * below cannot fail. Range checks name the param. */
    const msgpack_object *params = m.params;
    const uint32_t np = sp_rpc_param_count(params);
    const char *em = NULL;
    int code;
    switch (m.method_id) {
    case M_PING: {
        if (!have_id) return;
        msgpack_packer *pk = begin_result(c, msgid);
        msgpack_pack_map(pk, 2);
        pack_str(pk, "tick");
        msgpack_pack_uint64(pk, sp_world_tick(d->world));
        pack_str(pk, "server_time_ns");
        msgpack_pack_uint64(pk, realtime_ns());
        sp_client_send_sbuf(c);
        return;
    }
    case M_HELLO: {
        if (c->state == SP_CLIENT_READY) {
            sp_session_send_error(c, msgid, have_id, E_INVALID_REQUEST, "invalid request: hello already done");
            return;
        }
        const char *name, *tok;
        size_t namelen, toklen;
        sp_rpc_param_str(params, 0, &name, &namelen, NULL);
        if (namelen == 0 || namelen > L_MAX_NAME_BYTES) {
            snprintf(msg, sizeof msg, "param 0: name must be 1 to %d bytes, got %zu", L_MAX_NAME_BYTES, namelen);
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, msg);
            return;
        }
        bool admin = false;
        if (!sp_rpc_param_is_nil(params, 1)) {
            sp_rpc_param_str(params, 1, &tok, &toklen, NULL);
            if (!d->conf.have_admin_token ||
                !token_eq(tok, toklen, d->conf.admin_token, strlen(d->conf.admin_token))) {
                SP_LOGW("client %u %s: hello with a wrong admin token", c->session, c->peer);
                sp_session_send_error(c, msgid, have_id, E_FORBIDDEN, "forbidden: wrong admin token");
                return;
            }
            admin = true;
        }
        size_t nl = namelen < sizeof c->name - 1 ? namelen : sizeof c->name - 1;
        memcpy(c->name, name, nl);
        c->name[nl] = '\0';
        for (size_t i = 0; i < nl; i++)
            if ((unsigned char)c->name[i] < 0x20 || c->name[i] == 0x7f) c->name[i] = '?';
        c->admin = admin;
        c->state = SP_CLIENT_READY;
        SP_LOGI("client %u %s hello as '%s'%s", c->session, c->peer, c->name, admin ? " (admin)" : "");
        if (!have_id) return;
        msgpack_packer *pk = begin_result(c, msgid);
        msgpack_pack_map(pk, 5);
        pack_str(pk, "session");
        msgpack_pack_uint32(pk, c->session);
        pack_str(pk, "protocol");
        msgpack_pack_int(pk, SP_PROTO_VERSION);
        pack_str(pk, "tick_hz");
        msgpack_pack_int(pk, d->conf.tick_hz);
        pack_str(pk, "snapshot_hz");
        msgpack_pack_int(pk, d->conf.snapshot_hz);
        pack_str(pk, "admin");
        if (admin) msgpack_pack_true(pk);
        else msgpack_pack_false(pk);
        sp_client_send_sbuf(c);
        return;
    }
    case M_SPAWN: {
        /* Optional position (nil or absent: the server places the ship). A
         * point outside the world is clamped inside its walls by the world. */
        float pos[3];
        bool have_pos = !sp_rpc_param_is_nil(params, 0);
        if (have_pos) {
            double v[3];
            sp_rpc_param_vec3(params, 0, v, NULL);
            for (int i = 0; i < 3; i++) pos[i] = clamp_f(v[i]);
        }
        prune_ships(c);
        if (c->nships >= d->conf.max_ships || c->nships >= SP_MAX_SHIPS_PER_CLIENT) {
            snprintf(msg, sizeof msg, "limit reached: at most %d ships per session", c->nships);
            sp_session_send_error(c, msgid, have_id, E_LIMIT, msg);
            return;
        }
        sp_entity_id_t id;
        int r = sp_world_spawn_ship(d->world, c->session, 0, have_pos ? pos : NULL, &id);
        if (r < 0) {
            code = world_err(r, &em);
            sp_session_send_error(c, msgid, have_id, code, em);
            return;
        }
        c->ships[c->nships++] = id;
        if (!have_id) return;
        msgpack_packer *pk = begin_result(c, msgid);
        msgpack_pack_map(pk, 1);
        pack_str(pk, "ship_id");
        msgpack_pack_uint64(pk, id);
        sp_client_send_sbuf(c);
        return;
    }
    case M_MOVE: {
        uint64_t ship;
        double dv[3];
        float v[3], out[3];
        sp_rpc_param_uint(params, 0, &ship, NULL);
        sp_rpc_param_vec3(params, 1, dv, NULL);
        for (int i = 0; i < 3; i++) v[i] = clamp_f(dv[i]);
        if ((code = own_ship(c, ship, &em)) != 0) {
            sp_session_send_error(c, msgid, have_id, code, em);
            return;
        }
        int r = sp_world_set_desired_velocity(d->world, ship, v, out);
        if (r < 0) {
            code = world_err(r, &em);
            sp_session_send_error(c, msgid, have_id, code, em);
            return;
        }
        reply_true(c, msgid, have_id);
        return;
    }
    case M_FIRE: {
        uint64_t ship, target;
        sp_rpc_param_uint(params, 0, &ship, NULL);
        sp_rpc_param_uint(params, 1, &target, NULL);
        if ((code = own_ship(c, ship, &em)) != 0) {
            sp_session_send_error(c, msgid, have_id, code, em);
            return;
        }
        sp_fire_result_t fr;
        int r = sp_world_fire(d->world, ship, target, &fr);
        if (r < 0) {
            code = world_err(r, &em);
            if (r == SP_EBUSY) em = "weapon cooling down";
            else if (r == SP_ERANGE) em = "target out of weapon range";
            else if (r == SP_EINVAL) em = "param 1: target must be another ship or an asteroid";
            sp_session_send_error(c, msgid, have_id, code, em);
            return;
        }
        if (!have_id) return;
        msgpack_packer *pk = begin_result(c, msgid);
        msgpack_pack_map(pk, 3);
        pack_str(pk, "hit");
        if (fr.hit) msgpack_pack_true(pk);
        else msgpack_pack_false(pk);
        pack_str(pk, "damage");
        msgpack_pack_double(pk, fr.damage);
        pack_str(pk, "destroyed");
        if (fr.destroyed) msgpack_pack_true(pk);
        else msgpack_pack_false(pk);
        sp_client_send_sbuf(c);
        return;
    }
    case M_MINE: {
        uint64_t ship, ast;
        sp_rpc_param_uint(params, 0, &ship, NULL);
        sp_rpc_param_uint(params, 1, &ast, NULL);
        if ((code = own_ship(c, ship, &em)) != 0) {
            sp_session_send_error(c, msgid, have_id, code, em);
            return;
        }
        sp_mine_result_t mr;
        int r = sp_world_mine(d->world, ship, ast, &mr);
        if (r < 0) {
            code = world_err(r, &em);
            if (r == SP_EBUSY) em = "mining laser cooling down";
            else if (r == SP_ERANGE) em = "asteroid out of mining range";
            else if (r == SP_EINVAL) em = "param 1: not an asteroid";
            sp_session_send_error(c, msgid, have_id, code, em);
            return;
        }
        if (!have_id) return;
        msgpack_packer *pk = begin_result(c, msgid);
        msgpack_pack_map(pk, 3);
        pack_str(pk, "resource_type");
        pack_str(pk, sp_resource_name(mr.resource_type) ? sp_resource_name(mr.resource_type) : "");
        pack_str(pk, "amount");
        msgpack_pack_double(pk, mr.amount);
        pack_str(pk, "depleted");
        if (mr.depleted) msgpack_pack_true(pk);
        else msgpack_pack_false(pk);
        sp_client_send_sbuf(c);
        return;
    }
    case M_SUBSCRIBE: {
        double r, centre[3] = {0, 0, 0};
        sp_rpc_param_float(params, 0, &r, NULL);
        if (r < 0 || r > d->conf.max_radius) {
            snprintf(msg, sizeof msg, "param 0: radius must be 0 to %.0f, got %g", d->conf.max_radius, r);
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, msg);
            return;
        }
        if (np == 2) sp_rpc_param_vec3(params, 1, centre, NULL);
        c->radius = r;
        for (int i = 0; i < 3; i++) c->centre[i] = clamp_f(centre[i]);
        reply_true(c, msgid, have_id);
        return;
    }
    case M_INSPECT: {
        uint64_t id;
        sp_rpc_param_uint(params, 0, &id, NULL);
        if (have_id) do_inspect(c, msgid, id);
        return;
    }
    case M_ALERT: {
        const char *text;
        size_t len;
        int64_t prio = 1;
        sp_rpc_param_str(params, 0, &text, &len, NULL);
        if (len > L_MAX_ALERT_BYTES) {
            snprintf(msg, sizeof msg, "param 0: message must be at most %d bytes, got %zu", L_MAX_ALERT_BYTES, len);
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, msg);
            return;
        }
        if (np == 2) sp_rpc_param_int(params, 1, &prio, NULL);
        if (prio < 0 || prio > 255) {
            snprintf(msg, sizeof msg, "param 1: priority must be 0 to 255, got %lld", (long long)prio);
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, msg);
            return;
        }
        SP_LOGI("client %u %s alert (priority %d): %.*s", c->session, c->peer, (int)prio, (int)len, text);
        /* Reply first so the caller's response precedes its own event copy. */
        reply_true(c, msgid, have_id);
        sp_session_broadcast_alert(d, text, len, (int)prio, c->session);
        return;
    }
    case M_STATS:
        if (have_id) do_stats(c, msgid);
        return;
    case M_RESYNC:
        c->need_full = true;
        reply_true(c, msgid, have_id);
        return;
    default:
        sp_session_send_error(c, msgid, have_id, E_INTERNAL, "internal error: method not implemented");
        return;
    }
}

/* Called when the client struct is freed: its ships leave the world. */
void sp_session_release(sp_client_t *c) {
    sp_daemon_t *d = c->d;
    if (d->world == NULL || d->shutting_down) return; /* checkpointed as they are */
    for (int i = 0; i < c->nships; i++) sp_world_destroy(d->world, c->ships[i]);
    c->nships = 0;
}
