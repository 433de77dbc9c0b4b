/* request.h: one client message being handled, and the replies to it.
 *
 * The dispatcher (dispatch.c) fills an sp_request_t per message and hands it
 * to the method's handler (methods.c). A request [0, msgid, ...] gets
 * exactly one response; a notification [2, ...] (have_id false) gets none,
 * not even an error (PROTOCOL.md): sp_request_error() and sp_request_reply()
 * drop their reply for it. Every reply is packed by proto (rpc.h), never by
 * hand: a handler fills its sp_result_<method>_t and calls
 * SP_REQUEST_RESULT(q, method, &res).
 *
 * Threads: loop thread only. */
#ifndef SP_DAEMON_REQUEST_H
#define SP_DAEMON_REQUEST_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/clients.h"
#include "daemon/daemon.h"
#include "rpc.h"

typedef struct sp_request {
    sp_daemon_t *d;
    sp_client_t *c;
    uint32_t msgid;
    bool have_id;                  /* false: a notification (no reply at all) */
    const msgpack_object *params;  /* checked against the method's signature */
    uint32_t np;                   /* params given */
} sp_request_t;

/* Answer the request with the error {code, message} (printf-style message).
 * Nothing for a notification. */
void sp_request_error(const sp_request_t *q, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The reply buffer to pack into (for SP_REQUEST_RESULT). */
msgpack_packer *sp_request_packer(const sp_request_t *q);
/* Send what was packed (pack_rc: the packer's return); on a packing failure
 * the partial reply is dropped and INTERNAL answered instead. */
void sp_request_reply(const sp_request_t *q, int pack_rc);

/* Answer with method lc's result *res (nothing for a notification). */
#define SP_REQUEST_RESULT(q, lc, res)                                                                 \
    do {                                                                                              \
        if ((q)->have_id) sp_request_reply((q), sp_rpc_pack_result_##lc(sp_request_packer(q), (q)->msgid, (res))); \
    } while (0)

/* An error notification [2, "error", [...]] (for input without a usable
 * msgid), always sent. */
void sp_request_notify_error(sp_client_t *c, int code, const char *message);

#endif /* SP_DAEMON_REQUEST_H */
