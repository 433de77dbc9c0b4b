/* session.c: MessagePack-RPC dispatch and the methods of a session.
 *
 * Requests [0, msgid, method, params] get exactly one response
 * [1, msgid, error, result]; client notifications [2, method, params] are
 * executed without a response (a failed one is silently counted). Errors are
 * maps {"code": int, "message": str}, codes from proto/spacesim_proto.def.
 *
 * Order of checks for every request: shape, rate limit (token bucket: every
 * request costs one token, so a flooding client gets RATE_LIMITED replies
 * and cannot monopolise the loop), method known, hello done (only ping and
 * hello before it), admin for admin methods, parameter types, ownership.
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

static bool get_num(const msgpack_object *o, double *out) {
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return isfinite(*out);
    default: return false;
    }
}

static bool get_u64(const msgpack_object *o, uint64_t *out) {
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return false;
    *out = o->via.u64;
    return true;
}

static bool get_vec3(const msgpack_object *o, float out[3]) {
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3) return false;
    for (int i = 0; i < 3; i++) {
        double v;
        if (!get_num(&o->via.array.ptr[i], &v) || fabs(v) > 1e9) return false;
        out[i] = (float)v;
    }
    return true;
}

static bool str_eq(const msgpack_object *o, const char *s) {
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

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

static void do_stats(sp_client_t *c, uint64_t msgid) {
    sp_daemon_t *d = c->d;
    double p50, p99, mx;
    sp_tick_percentiles(d, &p50, &p99, &mx);
    size_t results = 0;
    size_t jobs = sp_workers_queue_depth(d, &results);
    msgpack_packer *pk = begin_result(c, msgid);
    msgpack_pack_map(pk, 22);
#define KV_U(k, v) (pack_str(pk, k), msgpack_pack_uint64(pk, (uint64_t)(v)))
#define KV_F(k, v) (pack_str(pk, k), msgpack_pack_double(pk, (double)(v)))
    KV_U("tick", sp_world_tick(d->world));
    KV_U("entities", sp_world_count(d->world));
    KV_U("clients", (uint64_t)d->nclients);
    KV_F("tick_ms_p50", p50);
    KV_F("tick_ms_p99", p99);
    KV_F("tick_ms_max", mx);
    KV_U("overruns", d->st.overruns);
    KV_U("bytes_out", d->st.bytes_out);
    KV_U("bytes_in", d->st.bytes_in);
    KV_F("bytes_out_per_sec", d->st.bytes_out_per_sec);
    KV_U("job_queue_depth", jobs);
    KV_U("result_queue_depth", results);
    KV_U("snapshots_sent", d->st.snapshots_sent);
    KV_U("snapshots_dropped", d->st.snapshots_skipped);
    KV_U("snapshot_bytes", d->st.snapshot_bytes);
    KV_U("commands", d->st.commands);
    KV_F("commands_per_sec", d->st.cmds_per_sec);
    KV_F("dilation", d->st.dilation);
    KV_U("kicks", d->st.kicks);
    KV_U("events_sent", d->st.events_sent);
    KV_U("worker_messages", d->st.worker_msgs);
    KV_U("workers", (uint64_t)d->conf.workers);
#undef KV_U
#undef KV_F
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

void sp_session_handle(sp_client_t *c, const msgpack_object *o) {
    sp_daemon_t *d = c->d;
    uint64_t msgid = 0;
    bool have_id = false;
    const msgpack_object *mname, *params;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3) goto invalid;
    const msgpack_object *a = o->via.array.ptr;
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) goto invalid;
    if (a[0].via.u64 == 0 && o->via.array.size == 4) {
        if (a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[1].via.u64 > UINT32_MAX) goto invalid;
        msgid = a[1].via.u64;
        have_id = true;
        mname = &a[2];
        params = &a[3];
    } else if (a[0].via.u64 == 2 && o->via.array.size == 3) {
        mname = &a[1];
        params = &a[2];
    } else {
        goto invalid;
    }
    if (mname->type != MSGPACK_OBJECT_STR || params->type != MSGPACK_OBJECT_ARRAY) {
        sp_session_send_error(c, msgid, have_id, E_INVALID_REQUEST,
                              "invalid request: method must be a string and params an array");
        return;
    }
    d->st.commands++;
    uint64_t now = sp_now_ns();
    if (!take_token(c, now)) {
        if (have_id) sp_session_send_error(c, msgid, true, E_RATE_LIMITED, "rate limited: slow down");
        return;
    }
    int m = -1;
    for (int i = 0; i < M_COUNT; i++) {
        if (str_eq(mname, methods[i].name)) {
            m = i;
            break;
        }
    }
    char msg[160];
    if (m < 0) {
        snprintf(msg, sizeof msg, "method not found: %.*s", (int)(mname->via.str.size > 64 ? 64 : mname->via.str.size),
                 mname->via.str.ptr);
        sp_session_send_error(c, msgid, have_id, E_METHOD_NOT_FOUND, msg);
        return;
    }
    const method_info_t *mi = &methods[m];
    if (mi->needs_hello && c->state != SP_CLIENT_READY) {
        sp_session_send_error(c, msgid, have_id, E_NOT_AUTHENTICATED, "call hello first");
        return;
    }
    if (mi->admin_only && !c->admin) {
        sp_session_send_error(c, msgid, have_id, E_FORBIDDEN, "forbidden: admin token required");
        return;
    }
    uint32_t np = params->via.array.size;
    const msgpack_object *p = params->via.array.ptr;
    /* spawn takes an optional position (a daemon extension for tests and
     * scripted scenarios); everything else follows the .def arity. */
    int maxp = m == M_SPAWN ? 1 : mi->max_params;
    if ((int)np < mi->min_params || (int)np > maxp) {
        snprintf(msg, sizeof msg, "invalid params: %s takes %d to %d parameters, got %u", mi->name, mi->min_params,
                 maxp, np);
        sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, msg);
        return;
    }
    const char *em = NULL;
    int code;
    switch (m) {
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
            sp_session_send_error(c, msgid, have_id, E_INVALID_REQUEST, "hello already done");
            return;
        }
        if (p[0].type != MSGPACK_OBJECT_STR || p[0].via.str.size > 64) {
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, "invalid params: name must be a string of at most 64 bytes");
            return;
        }
        bool admin = false;
        if (np == 2 && p[1].type != MSGPACK_OBJECT_NIL) {
            if (p[1].type != MSGPACK_OBJECT_STR) {
                sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, "invalid params: token must be a string or nil");
                return;
            }
            if (!d->conf.have_admin_token ||
                !token_eq(p[1].via.str.ptr, p[1].via.str.size, d->conf.admin_token, strlen(d->conf.admin_token))) {
                SP_LOGW("client %u %s: hello with a wrong admin token", c->session, c->peer);
                sp_session_send_error(c, msgid, have_id, E_FORBIDDEN, "forbidden: wrong admin token");
                return;
            }
            admin = true;
        }
        size_t nl = p[0].via.str.size < sizeof c->name - 1 ? p[0].via.str.size : sizeof c->name - 1;
        memcpy(c->name, p[0].via.str.ptr, nl);
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
        float pos[3];
        bool have_pos = false;
        if (np == 1) {
            if (!get_vec3(&p[0], pos)) {
                sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, "invalid params: position must be [x, y, z]");
                return;
            }
            have_pos = true;
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
        float v[3], out[3];
        if (!get_u64(&p[0], &ship) || !get_vec3(&p[1], v)) {
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, "invalid params: move [ship_id, [vx, vy, vz]]");
            return;
        }
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
        if (!get_u64(&p[0], &ship) || !get_u64(&p[1], &target)) {
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, "invalid params: fire [ship_id, target_id]");
            return;
        }
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
        if (!get_u64(&p[0], &ship) || !get_u64(&p[1], &ast)) {
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, "invalid params: mine [ship_id, asteroid_id]");
            return;
        }
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
            else if (r == SP_EINVAL) em = "not an asteroid";
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
        double r;
        float centre[3] = {0, 0, 0};
        if (!get_num(&p[0], &r) || r < 0 || r > d->conf.max_radius || (np == 2 && !get_vec3(&p[1], centre))) {
            snprintf(msg, sizeof msg, "invalid params: subscribe [radius 0..%.0f, [x, y, z]?]", d->conf.max_radius);
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, msg);
            return;
        }
        c->radius = r;
        for (int i = 0; i < 3; i++) c->centre[i] = centre[i];
        reply_true(c, msgid, have_id);
        return;
    }
    case M_INSPECT: {
        uint64_t id;
        if (!get_u64(&p[0], &id)) {
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS, "invalid params: inspect [entity_id]");
            return;
        }
        if (have_id) do_inspect(c, msgid, id);
        return;
    }
    case M_ALERT: {
        double prio = 0;
        if (p[0].type != MSGPACK_OBJECT_STR || p[0].via.str.size > 512 ||
            (np == 2 && (!get_num(&p[1], &prio) || prio < 0 || prio > 255))) {
            sp_session_send_error(c, msgid, have_id, E_INVALID_PARAMS,
                                  "invalid params: alert [message (<= 512 bytes), priority 0..255]");
            return;
        }
        SP_LOGI("client %u %s alert (priority %d): %.*s", c->session, c->peer, (int)prio, (int)p[0].via.str.size,
                p[0].via.str.ptr);
        /* Reply first so the caller's response precedes its own event copy. */
        reply_true(c, msgid, have_id);
        sp_session_broadcast_alert(d, p[0].via.str.ptr, p[0].via.str.size, (int)prio, c->session);
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

invalid:
    /* A msgid may still be recoverable from a near-request. */
    if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size >= 2 && o->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        o->via.array.ptr[0].via.u64 == 0 && o->via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        sp_session_send_error(c, o->via.array.ptr[1].via.u64, true, E_INVALID_REQUEST,
                              "invalid request: expected [0, msgid, method, params]");
        return;
    }
    sp_session_notify_error(c, E_INVALID_REQUEST,
                            "invalid request: expected [0, msgid, method, params] or [2, method, params]");
    sp_client_close(c, "kicked: invalid request");
}

/* Called when the client struct is freed: its ships leave the world. */
void sp_session_release(sp_client_t *c) {
    sp_daemon_t *d = c->d;
    if (d->world == NULL || d->shutting_down) return; /* checkpointed as they are */
    for (int i = 0; i < c->nships; i++) sp_world_destroy(d->world, c->ships[i]);
    c->nships = 0;
}
