/* methods.c: one handler per RPC method, and the table that reaches them.
 *
 * The table is generated from SP_PROTO_METHOD_MAP (spacesim_proto.def): a
 * method listed there without a handler method_<lc> here fails to build.
 * By the time a handler runs, the dispatcher (dispatch.c) has done the
 * generic checks from the method's row: shape, rate, hello, admin, arity and
 * parameter types; every param inside the signature has its type, so the
 * sp_rpc_param_* getters below cannot fail. A handler does the method's own
 * checks (ranges, ownership), acts on the world (the loop is its only
 * writer, so results such as hit, damage or mined amount are known at once)
 * and answers with its result struct (request.h).
 *
 * Threads: loop thread only. */
#include "daemon/methods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster.h"
#include "daemon/clients.h"
#include "daemon/clock.h"
#include "gw/gateway.h"
#include "daemon/snapshots.h"
#include "snapshot.h"
#include "spacesim/error.h"

/* A finite coordinate or velocity component as a float the world accepts:
 * clamped to +-1e9 first, so a huge double never becomes inf. */
static float clamp_f(double v) { return (float)(v > 1e9 ? 1e9 : v < -1e9 ? -1e9 : v); }

/* An sp_world_* error as an RPC error code, with its default message. */
static int world_err(int e, const char **msg) {
    switch (e) {
    case SP_ENOENT: *msg = "no such entity"; return SP_RPCERR_NOT_FOUND;
    case SP_EINVAL: *msg = "wrong kind of entity or invalid value"; return SP_RPCERR_INVALID_PARAMS;
    case SP_EBUSY: *msg = "cooling down"; return SP_RPCERR_COOLDOWN;
    case SP_ERANGE: *msg = "out of range"; return SP_RPCERR_OUT_OF_RANGE;
    case SP_ELIMIT: *msg = "world entity limit reached"; return SP_RPCERR_LIMIT;
    case SP_EPERM: *msg = "forbidden"; return SP_RPCERR_FORBIDDEN;
    default: *msg = "internal error"; return SP_RPCERR_INTERNAL;
    }
}

/* Is `ship` a live ship of this session? If not, answer the error; false. */
static bool own_ship(const sp_request_t *q, uint64_t ship) {
    sp_entity_info_t info;
    if (sp_world_inspect(q->d->world, ship, &info) < 0) {
        sp_request_error(q, SP_RPCERR_NOT_FOUND, "no such entity");
        return false;
    }
    if (info.kind != SP_KIND_SHIP) {
        sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "not a ship");
        return false;
    }
    /* An admin session commands any ship: a gateway (spacesim-gw) commands
     * its players' ships through its one admin connection per daemon. */
    if ((info.owner != q->c->session.id || q->c->session.id == 0) && !q->c->session.admin) {
        sp_request_error(q, SP_RPCERR_FORBIDDEN, "not your ship");
        return false;
    }
    return true;
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

/* ---------------------------------------------------------------- methods */

static void method_ping(const sp_request_t *q) {
    sp_result_ping_t res = {.tick = sp_world_tick(q->d->world), .server_time_ns = realtime_ns()};
    SP_REQUEST_RESULT(q, ping, &res);
}

/* hello [name, admin_token | nil, resume_token | nil]: a fresh session, or
 * (resume_token given) the detached session it names back, with its id and
 * ships (session.h). Each successful hello hands out a new resume token; the
 * one used is spent. Tokens are never logged. */
static void method_hello(const sp_request_t *q) {
    sp_daemon_t *d = q->d;
    sp_session_t *s = &q->c->session;
    if (s->state == SP_SESSION_READY) {
        sp_request_error(q, SP_RPCERR_INVALID_REQUEST, "invalid request: hello already done");
        return;
    }
    const char *name, *tok, *rtok = NULL;
    size_t namelen, toklen, rlen = 0;
    sp_rpc_param_str(q->params, 0, &name, &namelen, NULL);
    if (namelen == 0 || namelen > SP_LIMIT_MAX_NAME_BYTES) {
        sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "param 0: name must be 1 to %d bytes, got %zu",
                         SP_LIMIT_MAX_NAME_BYTES, namelen);
        return;
    }
    if (!sp_session_name_ok(name, namelen)) {
        sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "param 0: name must be valid UTF-8");
        return;
    }
    if (q->np == 3 && !sp_rpc_param_is_nil(q->params, 2)) {
        sp_rpc_param_str(q->params, 2, &rtok, &rlen, NULL);
        if (rlen != SP_RESUME_TOKEN_CHARS) {
            sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "param 2: resume token must be %d characters, got %zu",
                             SP_RESUME_TOKEN_CHARS, rlen);
            return;
        }
    }
    bool admin = false;
    if (q->np >= 2 && !sp_rpc_param_is_nil(q->params, 1)) {
        sp_rpc_param_str(q->params, 1, &tok, &toklen, NULL);
        if (!d->conf.have_admin_token ||
            !token_eq(tok, toklen, d->conf.admin_token, strlen(d->conf.admin_token))) {
            SP_LOGW("client %u %s: hello with a wrong admin token", s->id, q->c->conn.peer);
            sp_request_error(q, SP_RPCERR_FORBIDDEN,
                             d->conf.have_admin_token
                                 ? "forbidden: wrong admin token"
                                 : "forbidden: this server has no admin token (start it with SPACESIM_ADMIN_TOKEN "
                                   "or --admin-token-file)");
            return;
        }
        admin = true;
    }
    if (d->gw && rtok == NULL) {
        /* A gateway's session gets its id now (gateway.h: past the owners
         * of its range already in the world, so once the world is merged). */
        if (!sp_gw_ready(d->gw)) {
            sp_request_error(q, SP_RPCERR_INTERNAL,
                             "internal error: the gateway is starting (its daemons' worlds are not merged yet); "
                             "retry hello");
            return;
        }
        s->id = sp_clients_next_id(d);
        q->c->conn.log_id = s->id;
    }
    if (rtok == NULL && s->id == 0) {
        sp_request_error(q, SP_RPCERR_LIMIT, "limit reached: session ids exhausted (only resumes are possible)");
        return;
    }
    char newtok[SP_RESUME_TOKEN_CHARS + 1];
    uint8_t newhash[SP_SHA256_BYTES];
    if (sp_session_new_token(newtok, newhash) != 0) {
        SP_LOGE("client %u %s: hello failed: no randomness for a resume token", s->id, q->c->conn.peer);
        sp_request_error(q, SP_RPCERR_INTERNAL, "internal error: no resume token");
        return;
    }
    if (rtok != NULL) {
        uint8_t h[SP_SHA256_BYTES];
        sp_session_rec_t rec;
        sp_session_token_hash(rtok, rlen, h);
        if (sp_clients_take_session(d, q->c, h, &rec) != 0) {
            explicit_bzero(newtok, sizeof newtok);
            SP_LOGW("client %u %s: hello with a resume token of no session", s->id, q->c->conn.peer);
            sp_request_error(q, SP_RPCERR_FORBIDDEN, "forbidden: no session to resume (wrong or expired token)");
            return;
        }
        uint32_t was = s->id;
        sp_session_resume(s, &rec);
        explicit_bzero(&rec, sizeof rec);
        if (d->gw) sp_gw_prune_ships(d->gw, s);
        else sp_session_prune_ships(s, d->world);
        q->c->conn.log_id = s->id;
        SP_LOGI("client %u %s resumes session %u (%d ship(s))", was, q->c->conn.peer, s->id, s->nships);
    }
    sp_session_hello(s, name, namelen, admin, newhash);
    SP_LOGI("client %u %s hello as '%s'%s", s->id, q->c->conn.peer, s->name, admin ? " (admin)" : "");
    sp_result_hello_t res = {.session = s->id,
                             .protocol = SP_PROTO_VERSION,
                             .tick_hz = d->conf.tick_hz,
                             .snapshot_hz = d->conf.snapshot_hz,
                             .admin = admin,
                             .resume_token = newtok,
                             .interest_cell = d->interest_edge,
                             .cells_per_axis = d->cells.grid.n};
    SP_REQUEST_RESULT(q, hello, &res);
    explicit_bzero(newtok, sizeof newtok);
}

static void method_spawn(const sp_request_t *q) {
    /* Optional position (nil or absent: the server places the ship). A point
     * outside the world is clamped inside its walls by the world. */
    sp_session_t *s = &q->c->session;
    if (q->d->gw) {
        sp_gw_spawn(q->d->gw, q);
        return;
    }
    /* spawn [pos, owner]: an admin session spawns a ship for another
     * session (a gateway's player, whose session lives at the gateway): the
     * ship is that owner's, not this session's, and does not count against
     * this session's MAX_SHIPS (the gateway bounds its players). */
    bool for_other = q->np == 2;
    uint32_t owner = s->id;
    if (for_other) {
        uint64_t o;
        sp_rpc_param_uint(q->params, 1, &o, NULL);
        if (!s->admin) {
            sp_request_error(q, SP_RPCERR_FORBIDDEN, "forbidden: param 1 (owner) needs an admin session");
            return;
        }
        if (o == 0 || o > SP_SESSION_ID_MAX) {
            sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "param 1: owner must be a session id 1 to %u",
                             SP_SESSION_ID_MAX);
            return;
        }
        owner = (uint32_t)o;
    }
    float pos[3];
    bool have_pos = !sp_rpc_param_is_nil(q->params, 0);
    if (have_pos) {
        double v[3];
        sp_rpc_param_vec3(q->params, 0, v, NULL);
        for (int i = 0; i < 3; i++) pos[i] = clamp_f(v[i]);
    }
    if (!for_other) {
        sp_session_prune_ships(s, q->d->world);
        if (s->nships >= SP_LIMIT_MAX_SHIPS) {
            sp_request_error(q, SP_RPCERR_LIMIT, "limit reached: at most %d ships per session", s->nships);
            return;
        }
    }
    sp_entity_id_t id;
    int r = sp_world_spawn_ship(q->d->world, owner, 0, have_pos ? pos : NULL, &id);
    if (r < 0) {
        const char *em;
        int code = world_err(r, &em);
        sp_request_error(q, code, "%s", em);
        return;
    }
    if (!for_other) sp_session_add_ship(s, id);
    sp_result_spawn_t res = {.ship_id = id};
    SP_REQUEST_RESULT(q, spawn, &res);
}

static void method_move(const sp_request_t *q) {
    if (q->d->gw) {
        sp_gw_command(q->d->gw, q, SP_METHOD_MOVE);
        return;
    }
    uint64_t ship;
    double dv[3];
    float v[3], out[3];
    sp_rpc_param_uint(q->params, 0, &ship, NULL);
    sp_rpc_param_vec3(q->params, 1, dv, NULL);
    for (int i = 0; i < 3; i++) v[i] = clamp_f(dv[i]);
    if (!own_ship(q, ship)) return;
    int r = sp_world_set_desired_velocity(q->d->world, ship, v, out);
    if (r < 0) {
        const char *em;
        int code = world_err(r, &em);
        sp_request_error(q, code, "%s", em);
        return;
    }
    SP_REQUEST_RESULT(q, move, NULL);
}

/* What fire and mine share: [ship, target] params, the ship must be ours,
 * then the world's action; its errors get the action's own words. */
typedef struct ship_action {
    const char *cooldown;   /* SP_EBUSY */
    const char *range;      /* SP_ERANGE */
    const char *bad_target; /* SP_EINVAL */
} ship_action_t;

/* Read [ship, target]; false (error answered) unless the ship is ours. */
static bool action_params(const sp_request_t *q, uint64_t *ship, uint64_t *target) {
    sp_rpc_param_uint(q->params, 0, ship, NULL);
    sp_rpc_param_uint(q->params, 1, target, NULL);
    return own_ship(q, *ship);
}

/* Answer the world's error r of an action. */
static void action_error(const sp_request_t *q, const ship_action_t *a, int r) {
    const char *em;
    int code = world_err(r, &em);
    if (r == SP_EBUSY) em = a->cooldown;
    else if (r == SP_ERANGE) em = a->range;
    else if (r == SP_EINVAL) em = a->bad_target;
    sp_request_error(q, code, "%s", em);
}

static void method_fire(const sp_request_t *q) {
    if (q->d->gw) {
        sp_gw_command(q->d->gw, q, SP_METHOD_FIRE);
        return;
    }
    static const ship_action_t fire = {"weapon cooling down", "target out of weapon range",
                                       "param 1: target must be another ship or an asteroid"};
    uint64_t ship, target;
    if (!action_params(q, &ship, &target)) return;
    sp_fire_result_t fr;
    int r = sp_world_fire(q->d->world, ship, target, &fr);
    /* A target across a border: its ghost here, the damage to its daemon. */
    if (r == SP_ENOENT && q->d->cluster) r = sp_cluster_fire_at_ghost(q->d->cluster, ship, target, &fr);
    if (r < 0) {
        action_error(q, &fire, r);
        return;
    }
    sp_result_fire_t res = {.hit = fr.hit != 0, .damage = fr.damage, .destroyed = fr.destroyed != 0};
    SP_REQUEST_RESULT(q, fire, &res);
}

static void method_mine(const sp_request_t *q) {
    if (q->d->gw) {
        sp_gw_command(q->d->gw, q, SP_METHOD_MINE);
        return;
    }
    static const ship_action_t mine = {"mining laser cooling down", "asteroid out of mining range",
                                       "param 1: not an asteroid"};
    uint64_t ship, ast;
    if (!action_params(q, &ship, &ast)) return;
    sp_mine_result_t mr;
    int r = sp_world_mine(q->d->world, ship, ast, &mr);
    /* An asteroid across a border: its ghost here, the amount off it at its daemon. */
    if (r == SP_ENOENT && q->d->cluster) r = sp_cluster_mine_ghost(q->d->cluster, ship, ast, &mr);
    if (r < 0) {
        action_error(q, &mine, r);
        return;
    }
    sp_result_mine_t res = {.resource_type = sp_proto_resource_name(mr.resource_type),
                            .amount = mr.amount,
                            .depleted = mr.depleted != 0};
    SP_REQUEST_RESULT(q, mine, &res);
}

static void method_subscribe(const sp_request_t *q) {
    double r, centre[3] = {0, 0, 0};
    sp_rpc_param_float(q->params, 0, &r, NULL);
    if (r < 0 || r > q->d->conf.max_radius) {
        sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "param 0: radius must be 0 to %.0f, got %g", q->d->conf.max_radius,
                         r);
        return;
    }
    if (q->np == 2) sp_rpc_param_vec3(q->params, 1, centre, NULL);
    for (int i = 0; i < 3; i++) centre[i] = clamp_f(centre[i]);
    sp_snapstate_subscribe(&q->c->snap, r, centre);
    SP_REQUEST_RESULT(q, subscribe, NULL);
}

static void method_inspect(const sp_request_t *q) {
    if (q->d->gw) {
        sp_gw_command(q->d->gw, q, SP_METHOD_INSPECT);
        return;
    }
    uint64_t id;
    sp_rpc_param_uint(q->params, 0, &id, NULL);
    sp_entity_info_t e;
    if (sp_world_inspect(q->d->world, id, &e) < 0) {
        sp_request_error(q, SP_RPCERR_NOT_FOUND, "no such entity");
        return;
    }
    sp_result_inspect_t res = {.id = e.id,
                               .kind = sp_proto_kind_name(e.kind),
                               .hp = e.hp,
                               .max_hp = e.max_hp,
                               .radius = e.radius,
                               .owner = e.owner};
    for (int i = 0; i < 3; i++) {
        res.pos[i] = e.pos[i];
        res.vel[i] = e.vel[i];
    }
    for (int r = 0; r < SP_RESOURCE_COUNT; r++) res.cargo[r] = e.cargo[r];
    if (e.kind == SP_KIND_ASTEROID) {
        res.has_resource_type = res.has_amount = true;
        res.resource_type = sp_proto_resource_name(e.resource);
        res.amount = e.amount;
    }
    SP_REQUEST_RESULT(q, inspect, &res);
}

static void method_alert(const sp_request_t *q) {
    sp_daemon_t *d = q->d;
    const char *text;
    size_t len;
    int64_t prio = 1;
    sp_rpc_param_str(q->params, 0, &text, &len, NULL);
    if (len > SP_LIMIT_MAX_ALERT_BYTES) {
        sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "param 0: message must be at most %d bytes, got %zu",
                         SP_LIMIT_MAX_ALERT_BYTES, len);
        return;
    }
    if (q->np == 2) sp_rpc_param_int(q->params, 1, &prio, NULL);
    if (prio < 0 || prio > 255) {
        sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "param 1: priority must be 0 to 255, got %lld", (long long)prio);
        return;
    }
    SP_LOGI("client %u %s alert (priority %d): %.*s", q->c->session.id, q->c->conn.peer, (int)prio, (int)len, text);
    /* Reply first so the caller's response precedes its own event copy. */
    SP_REQUEST_RESULT(q, alert, NULL);
    sp_methods_broadcast_alert(d, text, len, (int)prio, q->c->session.id);
    if (d->gw) sp_gw_alert(d->gw, text, len, (int)prio); /* the daemons' clients, other gateways among them */
}

/* Fill the stats values (keys and types: SP_PROTO_STATS_MAP). */
void sp_methods_stats_values(const sp_daemon_t *d, sp_stat_value_t *v) {
    double p50, p99, mx;
    sp_stats_tick_percentiles(&d->st, &p50, &p99, &mx);
    uint64_t oq = 0, oq_max = 0;
    for (const sp_conn_t *k = d->net.conns; k; k = k->next) {
        oq += k->obuf_bytes;
        if (k->obuf_bytes > oq_max) oq_max = k->obuf_bytes;
    }
#define U(id, x) (v[SP_STAT_##id].u = (uint64_t)(x))
#define F(id, x) (v[SP_STAT_##id].f = (double)(x))
    U(TICK, sp_world_tick(d->world));
    U(ENTITIES, sp_world_count(d->world));
    U(CLIENTS, (uint64_t)d->net.nconns);
    F(TICK_MS_P50, p50);
    F(TICK_MS_P99, p99);
    F(TICK_MS_MAX, mx);
    U(OVERRUNS, d->st.overruns);
    F(DILATION, d->st.dilation);
    U(BYTES_OUT, d->st.bytes_out);
    U(BYTES_IN, d->st.bytes_in);
    F(BYTES_OUT_PER_SEC, d->st.bytes_out_per_sec);
    U(JOB_QUEUE_DEPTH, sp_pool_queued(d->pool));
    U(RESULT_QUEUE_DEPTH, sp_methods_result_depth(d));
    U(OUT_QUEUE_BYTES, oq);
    U(OUT_QUEUE_MAX_BYTES, oq_max);
    U(SNAPSHOTS_SENT, d->st.snapshots_sent);
    U(SNAPSHOTS_DROPPED, d->st.snapshots_skipped);
    U(SNAPSHOT_BYTES, d->st.snapshot_bytes);
    U(SNAPSHOT_ROUNDS_LATE, d->snap_rounds_late);
    U(COMMANDS, d->st.commands);
    F(COMMANDS_PER_SEC, d->st.cmds_per_sec);
    U(KICKS, d->st.kicks);
    U(RATE_KICKS, d->st.rate_kicks);
    U(EVENTS_SENT, d->st.events_sent);
    U(WORKER_MESSAGES, d->st.worker_msgs);
    U(WORKERS, d->conf.workers);
    U(EVENTS_DROPPED, sp_snapshots_events_dropped(d));
    U(AI_STALLS, d->st.ai_stalls);
    uint64_t cw = 0, cw_ns = 0, cw_max = 0;
    if (d->cluster) sp_cluster_frontier_stats(d->cluster, &cw, &cw_ns, &cw_max);
    U(CLUSTER_WAITS, cw);
    F(CLUSTER_WAIT_MS, (double)cw_ns / 1e6);
    U(WORLD_HASH, sp_world_hash(d->world));
#undef U
#undef F
}

static void method_stats(const sp_request_t *q) {
    if (q->d->gw) {
        sp_gw_stats(q->d->gw, q);
        return;
    }
    sp_result_stats_t res = {0};
    sp_methods_stats_values(q->d, res.values);
    SP_REQUEST_RESULT(q, stats, &res);
}

static void method_resync(const sp_request_t *q) {
    sp_snapstate_resync(&q->c->snap);
    SP_REQUEST_RESULT(q, resync, NULL);
}

/* Admin: every connected client, newest first. */
static void method_clients(const sp_request_t *q) {
    sp_daemon_t *d = q->d;
    size_t n = (size_t)d->net.nconns, i = 0;
    sp_client_info_t *v = calloc(n ? n : 1, sizeof *v);
    if (v == NULL) {
        sp_request_error(q, SP_RPCERR_INTERNAL, "out of memory");
        return;
    }
    uint64_t now = sp_now_ns();
    for (sp_conn_t *k = d->net.conns; k && i < n; k = k->next, i++) {
        sp_client_t *c = sp_client_of(k);
        sp_client_info_t *e = &v[i];
        e->session = c->session.id;
        e->name = c->session.name;
        e->address = k->peer;
        e->transport = sp_conn_transport_name(k);
        e->admin = c->session.admin;
        e->ships = (uint64_t)c->session.nships;
        e->view_radius = c->snap.radius;
        e->view = c->snap.view_count;
        e->bytes_out = k->bytes_out;
        e->out_queue_bytes = k->obuf_bytes;
        e->snapshots_sent = c->snap.sent;
        e->snapshots_skipped = c->snap.skipped;
        e->connected_seconds = (double)(now - k->opened_ns) / 1e9;
    }
    sp_result_clients_t res = {0};
    res.clients.v = v;
    res.clients.n = i;
    SP_REQUEST_RESULT(q, clients, &res);
    free(v);
}

/* Admin: close the connection of a session, with an error notification
 * saying why. Its session then ends or waits for a resume as after any
 * disconnect (--reconnect-grace). */
static void method_kick(const sp_request_t *q) {
    sp_daemon_t *d = q->d;
    uint64_t id = 0;
    const char *why = "kicked by an operator";
    size_t wl = strlen(why);
    sp_rpc_param_uint(q->params, 0, &id, NULL);
    if (q->np == 2) sp_rpc_param_str(q->params, 1, &why, &wl, NULL);
    if (wl > SP_LIMIT_MAX_ALERT_BYTES) {
        sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "param 1: reason must be at most %d bytes, got %zu",
                         SP_LIMIT_MAX_ALERT_BYTES, wl);
        return;
    }
    sp_conn_t *k = d->net.conns;
    while (k && (sp_client_of(k)->session.id != id || id == 0)) k = k->next;
    if (k == NULL) {
        sp_request_error(q, SP_RPCERR_NOT_FOUND, "no connected client with session %llu", (unsigned long long)id);
        return;
    }
    sp_result_kick_t res = {0};
    res.session = id;
    SP_LOGI("client %u %s kicks session %llu: %.*s", q->c->session.id, q->c->conn.peer, (unsigned long long)id,
            (int)wl, why);
    SP_REQUEST_RESULT(q, kick, &res); /* first: the caller may kick itself */
    char msg[SP_LIMIT_MAX_ALERT_BYTES + 32];
    snprintf(msg, sizeof msg, "kicked by an operator: %.*s", (int)wl, why);
    msgpack_sbuffer_clear(&d->reply);
    if (sp_rpc_pack_error_notify(&d->reply_pk, SP_RPCERR_FORBIDDEN, msg) == 0) sp_conn_send_sbuf(k, &d->reply);
    msgpack_sbuffer_clear(&d->reply);
    sp_conn_close(k, SP_CLOSE_KICK, "kicked by an operator (session %u)", q->c->session.id);
}

/* Admin: remove an entity from the world (a gateway removes the ships of a
 * session that ended there). Like a destruction by command: a
 * ShipDestroyed event (cause "other") for a ship. */
static void method_remove(const sp_request_t *q) {
    if (q->d->gw) {
        sp_gw_command(q->d->gw, q, SP_METHOD_REMOVE);
        return;
    }
    uint64_t id;
    sp_rpc_param_uint(q->params, 0, &id, NULL);
    if (sp_world_destroy(q->d->world, id) < 0) {
        sp_request_error(q, SP_RPCERR_NOT_FOUND, "no such entity");
        return;
    }
    SP_REQUEST_RESULT(q, remove, NULL);
}

/* The limits this server applies to every client (its flags). */
static void method_limits(const sp_request_t *q) {
    const sp_dconf_t *c = &q->d->conf;
    sp_result_limits_t res = {0};
    res.max_clients = (uint64_t)c->max_clients;
    res.max_per_address = (uint64_t)c->max_per_address;
    res.max_message_bytes = c->max_msg;
    res.obuf_soft_bytes = c->obuf_soft;
    res.obuf_soft_seconds = c->obuf_soft_secs;
    res.obuf_hard_bytes = c->obuf_hard;
    res.rate_per_sec = c->rate_per_sec;
    res.rate_burst = c->rate_burst;
    res.rate_kick_seconds = c->rate_kick_secs;
    res.idle_timeout_seconds = c->idle_timeout_secs;
    res.request_timeout_seconds = c->request_timeout_secs;
    res.snapshot_budget = c->snap_budget;
    res.max_radius = c->max_radius;
    res.tick_hz = (uint64_t)c->tick_hz;
    res.snapshot_hz = (uint64_t)c->snapshot_hz;
    SP_REQUEST_RESULT(q, limits, &res);
}

/* ---------------------------------------------------------------- shared */

void sp_methods_broadcast_alert(sp_daemon_t *d, const char *text, size_t len, int priority, uint32_t from) {
    /* One encoding, sent to every client (NEW ones too: "every client"). */
    msgpack_sbuffer_clear(&d->reply);
    if (sp_event_pack_system_alert(&d->reply_pk, sp_world_tick(d->world), text, len, priority, from) == 0) {
        msgpack_sbuffer copy = d->reply; /* sends below never touch d->reply */
        msgpack_sbuffer_init(&d->reply);
        msgpack_packer_init(&d->reply_pk, &d->reply, msgpack_sbuffer_write);
        d->st.events_sent += sp_clients_broadcast(d, copy.data, copy.size);
        msgpack_sbuffer_destroy(&copy);
    }
    msgpack_sbuffer_clear(&d->reply);
    /* And to every worker, as a SystemAlert SpaceMessage (each counts it). */
    sp_msg_t m;
    if (len > SP_MSG_ALERT_MAX) len = SP_MSG_ALERT_MAX; /* the bus carries the first bytes */
    if (sp_msg_system_alert_n(&m, text, len, (uint8_t)priority) != 0) return;
    sp_msg_stamp(&m, sp_world_tick(d->world), SP_MSG_ORIGIN_LOOP, 0);
    if (sp_bus_broadcast(&d->bus, &m) != 0) SP_LOGW("alert not broadcast to workers: bus ring full");
}

size_t sp_methods_result_depth(const sp_daemon_t *d) {
    sp_bus_depths_t bd;
    sp_bus_depths(&d->bus, &bd);
    return sp_pool_finished(d->pool) + bd.main;
}

/* The table: one handler per method of the .def, in its order. */
const sp_method_fn sp_method_handlers[SP_METHOD__COUNT] = {
#define SP__HANDLER(id, lc, name, mn, mx, hello, admin, sig) [SP_METHOD_##id] = method_##lc,
    SP_PROTO_METHOD_MAP(SP__HANDLER)
#undef SP__HANDLER
};
