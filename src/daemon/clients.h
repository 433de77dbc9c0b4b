/* clients.h: a connected client = its connection (net.h), its session
 * (session.h) and its snapshot state (snapstate.h), one owner each.
 *
 * clients.c provides net's alloc/closing/free callbacks (loop.c wires them):
 * a new client gets the next session id; when its connection closes, its
 * session ends (its ships leave the world; not at shutdown, when they are
 * checkpointed as they are); when the last reference drops (net.h: THE
 * reference rule), its snapshot state is destroyed and the struct freed.
 *
 * Threads: loop thread only. */
#ifndef SP_DAEMON_CLIENTS_H
#define SP_DAEMON_CLIENTS_H

#include <stddef.h>

#include "daemon/daemon.h"
#include "daemon/net.h"
#include "daemon/session.h"
#include "daemon/snapstate.h"

typedef struct sp_client {
    sp_conn_t conn;             /* first: net's part (socket, buffers, refs) */
    sp_session_t session;       /* who, what it owns, its rate */
    sp_snapstate_t snap;        /* interest, view, pending events */
    sp_daemon_t *d;
} sp_client_t;

/* The client a connection belongs to. */
static inline sp_client_t *sp_client_of(sp_conn_t *c) { return (sp_client_t *)(void *)c; }

/* net's callbacks (ctx: the sp_daemon_t). */
sp_conn_t *sp_clients_alloc(void *ctx);
void sp_clients_closing(void *ctx, sp_conn_t *c, sp_close_kind_t kind);
void sp_clients_free(void *ctx, sp_conn_t *c);

/* Send the same bytes to every connected client (NEW ones too). Returns
 * the number of clients it was sent to. */
size_t sp_clients_broadcast(sp_daemon_t *d, const void *data, size_t len);

#endif /* SP_DAEMON_CLIENTS_H */
