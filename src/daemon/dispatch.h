/* dispatch.h: one client message, from its shape to its method's handler.
 *
 * The generic checks run once, here, from the method's row of the .def (as
 * Redis's processCommand does from struct redisCommand), in this order
 * (documented in proto/PROTOCOL.md):
 *   1. shape (sp_rpc_classify): a response [1, ...] from a client, or any
 *      other object without a usable msgid, gets an `error` notification and
 *      the connection is closed; a request of the wrong shape with a
 *      readable msgid gets INVALID_REQUEST. (Size and nesting were checked
 *      by net's framer before the message was decoded.)
 *   2. rate: every well-formed message costs a token of the session's
 *      bucket (session.h); an empty bucket answers RATE_LIMITED.
 *   3. method known (METHOD_NOT_FOUND naming it), 4. hello done for methods
 *      that need it (NOT_AUTHENTICATED), 5. admin for admin methods
 *      (FORBIDDEN), 6. arity and parameter types against the signature
 *      (INVALID_PARAMS naming the param: sp_rpc_check_params),
 * then the handler (methods.c) with an sp_request_t (request.h).
 * Requests [0, msgid, ...] get exactly one response; notifications
 * [2, ...] run the same way and get none, not even an error.
 *
 * Threads: loop thread only. */
#ifndef SP_DAEMON_DISPATCH_H
#define SP_DAEMON_DISPATCH_H

#include <msgpack.h>

#include "daemon/net.h"

/* net's message callback (ctx: the sp_daemon_t). */
void sp_dispatch(void *ctx, sp_conn_t *c, const msgpack_object *o);

#endif /* SP_DAEMON_DISPATCH_H */
