/* net.h: the TCP server and its connections: sockets, input framing, output
 * queues and the limits that keep one connection from hurting the others.
 *
 * Two transports, one connection type. A connection is a TCP socket of the
 * RPC port, or a WebSocket of the HTTP port (http.c runs libwebsockets on the
 * same loop and hands each /ws connection to net through sp_net_ws_*()).
 * Both carry the same MessagePack-RPC: the same framer, rate, limits, kicks,
 * output queue and callbacks, so nothing above net knows the transport. On
 * a WebSocket each binary message carries exactly one MessagePack message,
 * both ways (sp_conn_send() splits a buffer of several at their boundaries);
 * a text frame, a message ending inside a MessagePack message or holding
 * more than one is bad input (an error notification, then a kick).
 *
 * net owns each connection's socket, input buffer and output queue, and
 * nothing else: what a connection is for (a session, a view) belongs to
 * whoever embeds the sp_conn_t (clients.c), reached through callbacks.
 *
 * Connection life cycle (one line per state):
 *   open     accepted, reading; complete messages go to cb.message
 *   held     open, but its rate (cb.admit) refused the next message: the
 *            socket is not read (TCP pushes back on the client), the bytes
 *            already read wait in the connection's held buffer, and a timer
 *            resumes it when a token is due; back to open once the held
 *            bytes are consumed
 *   closing  sp_conn_close() called: cb.closing ran, unlinked, uv_close()
 *            issued; pending writes are cancelled by libuv (their write_cb
 *            still runs and frees the buffers)
 *   freed    the last reference dropped: cb.free releases the owner's struct
 *
 * THE reference rule (the only one): a connection, and the struct that
 * embeds it, lives while refs > 0. References: 1 for the libuv handle
 * (dropped in its close callback), 1 for its resume timer once created
 * (the first time it is held; dropped in the timer's close callback), 1 per write request in flight (dropped
 * in its write callback), and 1 per job elsewhere that still points at it
 * (sp_conn_retain/sp_conn_release, e.g. a snapshot being encoded). Nothing
 * else frees it, so a callback holding a reference can always look at it
 * (Redis freeClientAsync: never freed in the middle of a callback).
 *
 * Threads: loop thread only, every function. */
#ifndef SP_DAEMON_NET_H
#define SP_DAEMON_NET_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/conf.h"
#include "daemon/rbuf.h"
#include "daemon/stats.h"

/* Why a connection ends. KICK (a limit or bad input: counted in kicks) is
 * told apart from the rest by this, never by the text of the reason. */
typedef enum sp_close_kind {
    SP_CLOSE_PEER = 0,  /* the client closed, or a socket error */
    SP_CLOSE_TIMEOUT,   /* idle too long */
    SP_CLOSE_KICK,      /* the server cut it off: limit or bad input */
    SP_CLOSE_SHUTDOWN,  /* the server is stopping */
} sp_close_kind_t;

typedef struct sp_conn sp_conn_t;
typedef struct sp_net sp_net_t;
struct lws;                     /* libwebsockets' connection (http.c owns it) */

typedef enum sp_transport {
    SP_TRANSPORT_TCP = 0,       /* the RPC port: a byte stream */
    SP_TRANSPORT_WS,            /* /ws on the HTTP port: one message per binary frame */
} sp_transport_t;

/* What net asks of the owner of connections. ctx is sp_net_t.ctx. */
typedef struct sp_net_cb {
    /* A zeroed sp_conn_t for a new connection, embedded in the owner's
     * struct, with ->log_id set; NULL when out of memory (refused). */
    sp_conn_t *(*alloc)(void *ctx);
    /* May c's next message be framed now? 0 = yes (a token was taken), else
     * the nanoseconds until it may (the connection is held meanwhile).
     * Asked once per message, before any of its bytes is framed. */
    uint64_t (*admit)(void *ctx, sp_conn_t *c, uint64_t now_ns);
    /* One complete message (at most conf->max_msg bytes, at most
     * SP_RPC_MAX_DEPTH deep); o is valid during the call only. */
    void (*message)(void *ctx, sp_conn_t *c, const msgpack_object *o);
    /* sp_conn_close() was called (once): end what the connection was for. */
    void (*closing)(void *ctx, sp_conn_t *c, sp_close_kind_t kind);
    /* The last reference dropped: free the owner's struct. */
    void (*free)(void *ctx, sp_conn_t *c);
} sp_net_cb_t;

struct sp_conn {
    uv_tcp_t tcp;               /* tcp.data == this (TCP only) */
    sp_transport_t transport;
    /* WebSocket only: its lws connection (NULL once lws closed it: then the
     * "handle" reference is gone), the queue of whole messages not yet given
     * to lws_write (net.c's ws_out_t; obuf_bytes counts them), the messages
     * delivered from the current WebSocket message (at most 1), and whether
     * that message ended while its bytes were held by the rate. */
    struct lws *wsi;
    void *wq_head, *wq_tail;
    uint32_t ws_msgs;
    bool ws_final_pending;
    bool ws_from_held;          /* consuming held bytes (several messages: no per-message count) */
    sp_close_kind_t close_kind;
    sp_net_t *net;
    sp_conn_t *prev, *next;     /* net->conns */
    uint32_t log_id;            /* the owner's id, in log lines */
    int refs;                   /* see THE reference rule above */
    bool closing;
    bool read_stopped;          /* shutdown: read nothing more */
    bool held;                  /* held by its rate (state "held" above) */
    bool resume_init;           /* resume timer initialised (and referenced) */
    char peer[64];              /* "ip:port" */
    char close_reason[96];
    struct sp_addr_slot *addr;  /* its address's connection count (net.c) */
    /* Input: the incomplete tail of a message (net.c's partial_t), only
     * while one is incomplete: an idle connection holds no input buffer. */
    void *partial;
    uint64_t msg_start_ns;      /* when that unfinished message began (--request-timeout) */
    /* Held by its rate: the bytes read but not yet framed (net.c's held_t),
     * the timer that resumes it, and the current run of being held: it
     * began at over_rate_since and goes on while the connection is held
     * again within SP_RATE_RUN_GAP_NS of its last release (released_ns). */
    void *held_bytes;
    uv_timer_t resume;
    uint64_t over_rate_since, released_ns;
    /* Output: bytes handed to uv_write (or queued for lws) and not yet
     * written; bytes_out counts every byte sent since it opened. */
    size_t obuf_bytes;
    uint64_t bytes_out;
    uint64_t opened_ns;         /* when it was accepted (clients' connected_seconds) */
    uint64_t over_soft_since_ns; /* 0 = under the soft limit */
    /* Liveness: a complete message resets it (bytes of an unfinished one
     * do not: a client trickling a message never finishes is not alive). */
    uint64_t last_rx_ns;
    bool ping_sent;
};

struct sp_net {
    uv_loop_t *loop;
    const sp_dconf_t *conf;
    sp_dstats_t *st;
    sp_net_cb_t cb;
    void *ctx;
    uv_tcp_t server;
    bool listening;
    sp_conn_t *conns;           /* open connections, newest first */
    int nconns;
    /* Open connections per IP address (--max-per-address): a chained hash
     * of sp_addr_slot, one per address with at least one connection. */
    struct sp_addr_slot **addr_buckets;
    size_t addr_mask;
    msgpack_sbuffer sbuf;       /* net's own notifications (errors, pings) */
    msgpack_packer pk;
};

/* A connection held back by its rate longer than --rate-kick-seconds is
 * kicked ("kicked: rate", counted in kicks and rate_kicks). Being held is
 * one run while the connection is held again within this time of being
 * released: a client that keeps sending faster than its rate stays in the
 * run, one that only sent a burst leaves it once the burst is consumed. */
#define SP_RATE_RUN_GAP_NS 1000000000ull

/* Set up (no socket yet). */
void sp_net_init(sp_net_t *n, uv_loop_t *loop, const sp_dconf_t *conf, sp_dstats_t *st, const sp_net_cb_t *cb,
                 void *ctx);
void sp_net_destroy(sp_net_t *n);

/* Bind and listen on conf->bind:conf->port (port 0: any free one), store
 * the bound port in *port_out, and write it to conf->port_file if set.
 * Returns 0, SP_EINVAL (bad address), SP_EIO (cannot listen), SP_ENOMEM
 * (the per-address table) or SP_EPERM (cannot write the port file); the
 * reason is logged. */
int sp_net_listen(sp_net_t *n, int *port_out);
void sp_net_stop_accepting(sp_net_t *n);

/* Queue bytes for the connection (copied). Returns 0, or -1 when the
 * connection is closing or was just closed (write error, over the hard
 * output limit: "kicked: output buffer over hard limit"). */
int sp_conn_send(sp_conn_t *c, const void *data, size_t len);
/* One part of an output message: len bytes at data, copied if they must
 * wait for the socket (ref NULL), or lying inside the shared buffer ref,
 * which is then referenced until the socket took them, never copied. */
typedef struct sp_outpart {
    const void *data;
    size_t len;
    sp_rbuf_t *ref;
} sp_outpart_t;
/* Queue the parts, in order, as one write (writev): as sp_conn_send(),
 * including the output limits (shared bytes count as queued bytes too).
 * The caller keeps its own references. WebSocket connections copy (each
 * message must be contiguous for lws). Same returns as sp_conn_send(). */
int sp_conn_sendv(sp_conn_t *c, const sp_outpart_t *parts, size_t n);
/* Send sb's content and clear sb. Same returns. */
int sp_conn_send_sbuf(sp_conn_t *c, msgpack_sbuffer *sb);

/* Close (once; later calls do nothing): log "client N peer disconnected:
 * reason", count a KICK, call cb.closing, unlink. Safe anywhere on the loop
 * thread, including inside the connection's own callbacks. */
void sp_conn_close(sp_conn_t *c, sp_close_kind_t kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "tcp" or "websocket" (for operators: the `clients` method); static. */
const char *sp_conn_transport_name(const sp_conn_t *c);

/* cb.admit's answer "not now, and not for a rate": the connection is held
 * (not read; its unframed bytes kept) with no timer and no run of being
 * held (never kicked for it), until the owner calls sp_conn_unpark(). A
 * gateway parks a client while one of its requests is answered by a daemon,
 * so responses keep request order (PROTOCOL.md). */
#define SP_NET_ADMIT_PARK UINT64_MAX
/* Resume a parked connection (no-op unless it is held): from the next timer
 * phase, cb.admit is asked again for its next held message. */
void sp_conn_unpark(sp_conn_t *c);

void sp_conn_retain(sp_conn_t *c);
void sp_conn_release(sp_conn_t *c);

/* Once a second: idle pings and timeouts (judged by complete messages),
 * unfinished messages older than --request-timeout ("timed out: slow
 * request"), connections stuck over the soft output limit. O(connections). */
void sp_net_housekeeping(sp_net_t *n, uint64_t now);
/* Stop reading every connection, held ones included (shutdown: answer
 * nothing more). */
void sp_net_stop_reading(sp_net_t *n);
/* True while some connection still has output queued. */
bool sp_net_output_pending(const sp_net_t *n);
/* Close every connection. */
void sp_net_close_all(sp_net_t *n, const char *reason);

/* WebSocket connections (http.c's lws callbacks, loop thread). The "handle"
 * reference of THE reference rule is the lws connection's: taken by open,
 * dropped by sp_net_ws_closed().
 *
 * A /ws connection was established on socket fd: a new connection through
 * cb.alloc, counted against --max-clients and --max-per-address like an
 * accepted TCP one (over them it gets the error notification and is closed).
 * Returns it, or NULL (out of memory: the caller closes wsi). */
sp_conn_t *sp_net_ws_open(sp_net_t *n, struct lws *wsi, int fd);
/* Bytes of a WebSocket message (a fragment: first/final say where it is in
 * the message). Framed, admitted and delivered exactly like TCP input; the
 * rate holds the connection with lws_rx_flow_control(). */
void sp_net_ws_rx(sp_conn_t *c, const void *data, size_t len, bool binary, bool first, bool final);
/* lws says c may write: one queued message goes to lws_write(). Returns 0,
 * or -1 when lws must close the connection (c is closing, or a write
 * failed); the close reason is set with lws_close_reason(). */
int sp_net_ws_writable(sp_conn_t *c);
/* lws closed c's connection (peer, error, our -1, or context destroyed):
 * close c if not closing yet, drop the handle's reference. c->wsi is NULL
 * afterwards; c itself may be freed. */
void sp_net_ws_closed(sp_conn_t *c);

/* Bind + listen a TCP server on bind:port for a connection callback: the
 * one listen code of the RPC port. Returns 0, or a
 * negative libuv error (the server handle is then closed). */
int sp_listen_tcp(uv_loop_t *loop, uv_tcp_t *server, const char *bind, int port, int backlog, uv_connection_cb cb);

#endif /* SP_DAEMON_NET_H */
