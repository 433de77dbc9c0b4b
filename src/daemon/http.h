/* http.h: the HTTP + WebSocket server on --http-port (http.c): the web view's
 * static files, /metrics (Prometheus text, metrics.c) and /ws (the RPC over
 * WebSocket, handed to net.c as connections like the TCP ones).
 *
 * libwebsockets runs on the daemon's own libuv loop (a foreign loop for lws:
 * no second event loop, no thread); every callback runs on the loop thread.
 *
 * Threads: loop thread only, every function. */
#ifndef SP_DAEMON_HTTP_H
#define SP_DAEMON_HTTP_H

#include "daemon/daemon.h"

/* Listen on --http-bind (default: --bind):--http-port, serving --web-root
 * (default PKGDATADIR/web) at /, /metrics and /ws. Nothing when --http-port
 * is 0. Returns 0, or SP_EIO (no context: the libuv plugin missing, or the
 * port cannot be bound; logged). Allocates the lws context (~100 KiB). */
int sp_http_start(sp_daemon_t *d);
/* Stop: every lws connection is closed (their WebSocket connections must be
 * closed by net first, sp_net_close_all), and the context is destroyed; lws
 * closes its libuv handles from callbacks, so the loop must still run after
 * this for uv_loop_close() to succeed. Safe to call twice or unstarted. */
void sp_http_stop(sp_daemon_t *d);

#endif /* SP_DAEMON_HTTP_H */
