/* dispatch.c: the generic checks of every client message (see dispatch.h). */
#include "daemon/dispatch.h"

#include <stdio.h>

#include "daemon/clients.h"
#include "daemon/methods.h"
#include "daemon/request.h"
#include "rpc.h"

static bool is_kind(const msgpack_object *o, uint64_t kind) {
    return o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size > 0 &&
           o->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.array.ptr[0].via.u64 == kind;
}

/* 1. Shape. False when the message goes no further (answered or closed). */
static bool check_shape(sp_client_t *c, const msgpack_object *o, sp_rpc_msg_t *m) {
    if (is_kind(o, 1)) {
        /* The server never sends requests, so a response from a client is a
         * confused client: say so, then close (PROTOCOL.md, Transport). */
        sp_request_notify_error(c, SP_RPCERR_INVALID_REQUEST, "invalid request: clients must not send responses");
        sp_conn_close(&c->conn, SP_CLOSE_KICK, "kicked: client sent a response");
        return false;
    }
    if (sp_rpc_classify(o, m) == 0) return true;
    char msg[160];
    snprintf(msg, sizeof msg, "invalid request: %s", m->reason ? m->reason : "not an RPC message");
    if (is_kind(o, 0) && m->has_msgid) {
        sp_request_t q = {.d = c->d, .c = c, .msgid = (uint32_t)m->msgid, .have_id = true};
        sp_request_error(&q, SP_RPCERR_INVALID_REQUEST, "%s", msg);
        return false;
    }
    sp_request_notify_error(c, SP_RPCERR_INVALID_REQUEST, msg);
    sp_conn_close(&c->conn, SP_CLOSE_KICK, "kicked: invalid request");
    return false;
}

/* 2-5. The method's row. False when refused (answered). */
static bool check_row(const sp_request_t *q, const sp_rpc_msg_t *m) {
    sp_rpc_error_t err = {0, ""};
    if (m->method_id < 0) {
        sp_rpc_check_params(m, &err); /* METHOD_NOT_FOUND naming the method */
        sp_request_error(q, err.code, "%s", err.message);
        return false;
    }
    const sp_method_info_t *row = sp_method_info(m->method_id);
    if (row->needs_hello && q->c->session.state != SP_SESSION_READY) {
        sp_request_error(q, SP_RPCERR_NOT_AUTHENTICATED, "call hello first");
        return false;
    }
    if (row->admin_only && !q->c->session.admin) {
        sp_request_error(q, SP_RPCERR_FORBIDDEN,
                         "forbidden: admin token required (hello with the token the server reads from "
                         "SPACESIM_ADMIN_TOKEN or --admin-token-file)");
        return false;
    }
    if (sp_rpc_check_params(m, &err) != 0) {
        sp_request_error(q, err.code, "%s", err.message);
        return false;
    }
    return true;
}

void sp_dispatch(void *ctx, sp_conn_t *conn, const msgpack_object *o) {
    sp_daemon_t *d = ctx;
    sp_client_t *c = sp_client_of(conn);
    sp_rpc_msg_t m;
    if (!check_shape(c, o, &m)) return;
    sp_request_t q = {.d = d,
                      .c = c,
                      .msgid = (uint32_t)m.msgid,
                      .have_id = m.type == SP_RPC_REQUEST,
                      .params = m.params,
                      .np = sp_rpc_param_count(m.params)};
    d->st.commands++;
    if (!check_row(&q, &m)) return;
    sp_method_handlers[m.method_id](&q);
}

uint64_t sp_dispatch_admit(void *ctx, sp_conn_t *conn, uint64_t now_ns) {
    sp_daemon_t *d = ctx;
    sp_client_t *c = sp_client_of(conn);
    /* A gateway's client whose request is at a daemon waits for its answer
     * (responses in request order), without it counting as over its rate. */
    if (c->gw_pending > 0) return SP_NET_ADMIT_PARK;
    /* An admin session is not rate limited: a gateway carries all its
     * players' commands on one connection (their rate is the gateway's). */
    if (c->session.admin) return 0;
    return sp_session_take_token(&sp_client_of(conn)->session, now_ns, d->conf.rate_per_sec, d->conf.rate_burst);
}
