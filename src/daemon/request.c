/* request.c: replies to client messages (see request.h). */
#include "daemon/request.h"

#include <stdarg.h>
#include <stdio.h>

static void send_reply(sp_client_t *c) { sp_conn_send_sbuf(&c->conn, &c->d->reply); }

void sp_request_error(const sp_request_t *q, int code, const char *fmt, ...) {
    if (!q->have_id) return;
    char msg[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    msgpack_sbuffer_clear(&q->d->reply);
    if (sp_rpc_pack_response_error(&q->d->reply_pk, q->msgid, code, msg) == 0) send_reply(q->c);
    else msgpack_sbuffer_clear(&q->d->reply);
}

msgpack_packer *sp_request_packer(const sp_request_t *q) {
    msgpack_sbuffer_clear(&q->d->reply);
    return &q->d->reply_pk;
}

void sp_request_reply(const sp_request_t *q, int pack_rc) {
    if (pack_rc != 0) {
        sp_request_error(q, SP_RPCERR_INTERNAL, "internal error: out of memory");
        return;
    }
    send_reply(q->c);
}

void sp_request_notify_error(sp_client_t *c, int code, const char *message) {
    msgpack_sbuffer_clear(&c->d->reply);
    if (sp_rpc_pack_error_notify(&c->d->reply_pk, code, message) == 0) send_reply(c);
    else msgpack_sbuffer_clear(&c->d->reply);
}
