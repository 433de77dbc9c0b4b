/* dispatch.h: one client message, from its shape to its method's handler.
 *
 * The generic checks run once, here, from the method's row of the .def (as
 * Redis's processCommand does from struct redisCommand), in this order
 * (documented in proto/PROTOCOL.md):
 *   0. rate, before the message is even framed (sp_dispatch_admit, net's
 *      admit callback): every message, request or notification, costs a
 *      token of the session's bucket (session.h). With the bucket empty net
 *      stops reading the connection until a token is due, so a flood is
 *      held back by TCP instead of being read, decoded and answered on the
 *      loop; a client held back for --rate-kick-seconds is kicked (net.h).
 *   1. shape (sp_rpc_classify): a response [1, ...] from a client, or any
 *      other object without a usable msgid, gets an `error` notification and
 *      the connection is closed; a request of the wrong shape with a
 *      readable msgid gets INVALID_REQUEST. (Size and nesting were checked
 *      by net's framer before the message was decoded.)
 *   2. method known (METHOD_NOT_FOUND naming it), 3. hello done for methods
 *      that need it (NOT_AUTHENTICATED), 4. admin for admin methods
 *      (FORBIDDEN), 5. arity and parameter types against the signature
 *      (INVALID_PARAMS naming the param: sp_rpc_check_params),
 * then the handler (methods.c) with an sp_request_t (request.h).
 * Requests [0, msgid, ...] get exactly one response; notifications
 * [2, ...] run the same way and get none, not even an error.
 *
 * Threads: loop thread only. */
#ifndef SP_DAEMON_DISPATCH_H
#define SP_DAEMON_DISPATCH_H

#include <msgpack.h>
#include <stdint.h>

#include "daemon/net.h"

/* net's message callback (ctx: the sp_daemon_t). */
void sp_dispatch(void *ctx, sp_conn_t *c, const msgpack_object *o);

/* net's admit callback: take a token for the next message of c. Returns 0,
 * or the nanoseconds until a token is due (the message must wait). O(1). */
uint64_t sp_dispatch_admit(void *ctx, sp_conn_t *c, uint64_t now_ns);

#endif /* SP_DAEMON_DISPATCH_H */
