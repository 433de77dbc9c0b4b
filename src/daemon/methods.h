/* methods.h: the handlers of the RPC methods (methods.c) and their table.
 *
 * sp_method_handlers[id] is method id's handler (SP_METHOD_* of rpc.h),
 * generated from the .def: every method has one. The dispatcher calls it
 * after the generic checks (dispatch.h).
 *
 * Threads: loop thread only. */
#ifndef SP_DAEMON_METHODS_H
#define SP_DAEMON_METHODS_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/daemon.h"
#include "daemon/request.h"

typedef void (*sp_method_fn)(const sp_request_t *q);

extern const sp_method_fn sp_method_handlers[SP_METHOD__COUNT];

/* A SystemAlert event to every client (one encoding) and, as a SpaceMessage,
 * to every worker. from: the sender's session (0: the server). */
void sp_methods_broadcast_alert(sp_daemon_t *d, const char *text, size_t len, int priority, uint32_t from);

/* The stats values of this process (keys and types: SP_PROTO_STATS_MAP). */
void sp_methods_stats_values(const sp_daemon_t *d, sp_stat_value_t *v);

/* Worker results waiting for the loop (finished jobs + inbox messages). */
size_t sp_methods_result_depth(const sp_daemon_t *d);

#endif /* SP_DAEMON_METHODS_H */
