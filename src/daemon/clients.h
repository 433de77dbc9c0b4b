/* clients.h: a connected client = its connection (net.h), its session
 * (session.h) and its snapshot state (snapstate.h), one owner each.
 *
 * clients.c provides net's alloc/closing/free callbacks (loop.c wires them):
 * a new client gets the next session id (none once they are exhausted);
 * when its connection closes, its session is detached if it said hello and
 * --reconnect-grace is not 0 (ships stay, owned, unsteerable, until a resume
 * or the deadline), otherwise it ends (its ships leave the world); at
 * shutdown neither: the checkpoint keeps every session as it is. When the
 * last reference drops (net.h: THE reference rule), its snapshot state is
 * destroyed and the struct freed.
 *
 * Detached sessions (d->detached) are this module's: at most --max-clients
 * of them (past that the one closest to its deadline ends early, which
 * bounds the ships a connect-spawn-disconnect loop can leave behind); they
 * end at their deadline (sp_clients_housekeeping, once a second); they are
 * saved in checkpoints with the live ones and the id counter, and a restart
 * detaches all of them again with a new full grace.
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
    uint32_t gw_pending;        /* gateway: its requests at a daemon (parked while > 0; gateway.h) */
} sp_client_t;

/* The client a connection belongs to. */
static inline sp_client_t *sp_client_of(sp_conn_t *c) { return (sp_client_t *)(void *)c; }

/* The next session id, never reused (0: exhausted; a gateway's range ends
 * SP_GW_SESSION_SPAN past its --session-base). */
uint32_t sp_clients_next_id(sp_daemon_t *d);

/* net's callbacks (ctx: the sp_daemon_t). */
sp_conn_t *sp_clients_alloc(void *ctx);
void sp_clients_closing(void *ctx, sp_conn_t *c, sp_close_kind_t kind);
void sp_clients_free(void *ctx, sp_conn_t *c);

/* Once a second: end the detached sessions whose grace is over (their
 * ships leave the world). O(detached). */
void sp_clients_housekeeping(sp_daemon_t *d, uint64_t now_ns);

/* hello's resume: find the session whose token hash is hash, detached or
 * still attached to another open connection (a client that reconnects
 * before the server saw its old connection drop: that connection is closed,
 * "session resumed on another connection"), and move it into *out (out of
 * the table; the old connection's session is emptied, so its close ends
 * nothing). Returns 0, or SP_ENOENT (no such session: wrong, expired or
 * never issued). O(detached + connections), constant-time compares. */
int sp_clients_take_session(sp_daemon_t *d, const sp_client_t *self, const uint8_t hash[SP_SHA256_BYTES],
                            sp_session_rec_t *out);

/* The daemon's checkpoint annex (sim/save.h): every session that said hello,
 * attached or detached, and the id counter:
 *   "SPSESS\0\0" (8) | version u32 (1) | next id u64 | count u32 |
 *   count x sp_session_rec_put() records.
 * *out from malloc (caller frees). Returns 0 or SP_ENOMEM. O(sessions). */
int sp_clients_save_sessions(const sp_daemon_t *d, uint8_t **out, size_t *len);

/* At start-up, with d->world just loaded: read the annex (len 0: a version 1
 * or 2 checkpoint, no sessions), detach every session in it with a new full
 * grace (ships that are gone or not the session's are dropped from it), and
 * remove from the world every player ship whose owner no saved session is
 * (nobody could ever command it again; a cluster daemon keeps them, since
 * a ship's owner may be another daemon's session). next_session goes past the saved
 * counter, every saved id and every owner in the world. Returns 0,
 * SP_ECORRUPT (bad annex: the checkpoint is refused) or SP_ENOMEM. */
int sp_clients_restore_sessions(sp_daemon_t *d, const uint8_t *annex, size_t len);

/* Send the same bytes to every connected client (NEW ones too). Returns
 * the number of clients it was sent to. */
size_t sp_clients_broadcast(sp_daemon_t *d, const void *data, size_t len);

#endif /* SP_DAEMON_CLIENTS_H */
