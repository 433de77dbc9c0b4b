/* clients.c: clients, their creation, end and release (see clients.h). */
#include "daemon/clients.h"

#include <stdlib.h>

#include "daemon/clock.h"

_Static_assert(offsetof(sp_client_t, conn) == 0, "sp_client_of() casts a connection to its client");

sp_conn_t *sp_clients_alloc(void *ctx) {
    sp_daemon_t *d = ctx;
    sp_client_t *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->d = d;
    sp_session_init(&c->session, d->next_session++, d->conf.rate_burst, sp_now_ns());
    sp_snapstate_init(&c->snap, d->conf.default_radius);
    c->conn.log_id = c->session.id;
    return &c->conn;
}

void sp_clients_closing(void *ctx, sp_conn_t *conn, sp_close_kind_t kind) {
    sp_daemon_t *d = ctx;
    (void)kind;
    /* At shutdown the ships stay: the checkpoint keeps them as they are. */
    if (d->world != NULL && !d->shutting_down) sp_session_end(&sp_client_of(conn)->session, d->world);
}

void sp_clients_free(void *ctx, sp_conn_t *conn) {
    (void)ctx;
    sp_client_t *c = sp_client_of(conn);
    sp_snapstate_destroy(&c->snap);
    free(c);
}

size_t sp_clients_broadcast(sp_daemon_t *d, const void *data, size_t len) {
    size_t n = 0;
    sp_conn_t *c = d->net.conns;
    while (c) {
        sp_conn_t *next = c->next; /* a send may close (and unlink) c */
        sp_conn_send(c, data, len);
        n++;
        c = next;
    }
    return n;
}
