/* net.c: the TCP server, per-client input framing and output queue.
 *
 * Client life cycle (one line per state, memcached conn_states style):
 *   NEW      accepted; TCP_NODELAY set; only ping and hello are served
 *   READY    hello done; the client is a session and receives snapshots
 *   CLOSING  sp_client_close() called: unlinked from d->clients, uv_close()
 *            issued; pending writes are cancelled by libuv (their write_cb
 *            still runs and frees the buffers); the struct is freed when the
 *            last reference goes: the handle's (close_cb) and one per
 *            snapshot job still on a worker (Redis freeClientAsync: never
 *            freed in the middle of a callback that still uses it).
 *
 * Input framing. A MessagePack-RPC stream has no length prefix, so messages
 * are framed by proto's sp_rpc_scan() (the same framer sp_rpc_decoder_t
 * uses: one copy of the security checks), which walks msgpack headers (never
 * the payload) and enforces, as each header arrives and before any byte of
 * the message is copied or allocated:
 *  - a declared str/bin/ext length, array/map count, or the running size of
 *    the message, over conf.max_msg (64 KiB) -> error notification
 *    TOO_LARGE, then close;
 *  - nesting of arrays/maps deeper than MAX_DEPTH (16), or a 0xc1 byte ->
 *    error notification PARSE_ERROR, then close. Every message handed to
 *    session.c is therefore at most 16 deep and at most max_msg bytes, which
 *    bounds msgpack-c's allocations (about 24 bytes per wire byte) and any
 *    recursion over the decoded object.
 * Complete messages are decoded straight from the read buffer when they are
 * whole in it; only the incomplete tail of a message is copied, together
 * with the framer's state, into the client's own buffer (a partial_t behind
 * c->ibuf), allocated lazily and freed as soon as that message completes, so
 * the bytes of a message in progress are scanned once and an idle client
 * costs sizeof(sp_client_t) plus libuv's handle.
 *
 * Output. sp_client_send() tries uv_try_write() first (no allocation when the
 * socket has room and nothing is queued), and queues the rest with uv_write()
 * in one allocation (request + bytes). obuf_bytes counts queued bytes:
 *  - over conf.obuf_soft: snapshots are skipped for this client (workers.c),
 *    and if it stays over for obuf_soft_secs it is kicked (housekeeping);
 *  - over conf.obuf_hard: kicked at once ("kicked: output buffer over hard
 *    limit"). So a client that does not read costs at most obuf_hard bytes
 *    and never slows anyone else: the loop never blocks on a socket. */
#include "daemon/daemon.h"
#include "daemon/snapshim.h"
#include "rpc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP_READ_BUF (64u * 1024u)

/* One read buffer for every client: libuv calls alloc_cb then read_cb
 * synchronously on the loop thread, so it is never shared by two reads. */
static char g_rbuf[SP_READ_BUF];
static bool g_rbuf_busy;

typedef struct write_req {
    uv_write_t req;
    sp_client_t *c;
    size_t len;
    char data[];
} write_req_t;

/* ---------------------------------------------------------------- framing */

/* The incomplete tail of a message, behind c->ibuf (daemon.h's field, whose
 * storage this file alone owns): the framer's state and the bytes so far.
 * c->ilen = bytes held, c->icap = capacity of bytes[]. Exists only while a
 * message is incomplete; its bytes never exceed conf.max_msg (the framer
 * refuses a longer prefix). */
typedef struct partial {
    sp_rpc_scan_t scan;
    uint8_t bytes[];
} partial_t;

static partial_t *partial_of(sp_client_t *c) { return (partial_t *)(void *)c->ibuf; }

static void partial_free(sp_client_t *c) {
    free(c->ibuf);
    c->ibuf = NULL;
    c->ilen = c->icap = 0;
}

/* ---------------------------------------------------------------- closing */

static void free_client(sp_client_t *c) {
    sp_workers_client_free(c);
    sp_session_release(c);
    sp_d_view_free(c->view);
    free(c->ibuf);
    free(c);
}

void sp_client_unref(sp_client_t *c) {
    if (--c->refs == 0) free_client(c);
}

static void on_close(uv_handle_t *h) { sp_client_unref((sp_client_t *)h->data); }

void sp_client_close(sp_client_t *c, const char *fmt, ...) {
    if (c->state == SP_CLIENT_CLOSING) return;
    sp_daemon_t *d = c->d;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->close_reason, sizeof c->close_reason, fmt, ap);
    va_end(ap);
    c->state = SP_CLIENT_CLOSING;
    if (strncmp(c->close_reason, "kicked", 6) == 0) d->st.kicks++;
    SP_LOGI("client %u %s disconnected: %s", c->session, c->peer, c->close_reason);
    if (c->prev) c->prev->next = c->next;
    else d->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    d->nclients--;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

void sp_net_close_all(sp_daemon_t *d, const char *reason) {
    while (d->clients) sp_client_close(d->clients, "%s", reason);
}

/* ---------------------------------------------------------------- output */

static void on_write(uv_write_t *req, int status) {
    write_req_t *w = (write_req_t *)req;
    sp_client_t *c = w->c;
    c->obuf_bytes -= w->len;
    if (c->obuf_bytes <= c->d->conf.obuf_soft) c->over_soft_since_ns = 0;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        sp_client_close(c, "write error: %s", uv_strerror(status));
    sp_client_unref(c);
}

int sp_client_send(sp_client_t *c, const void *data, size_t len) {
    if (c->state == SP_CLIENT_CLOSING) return -1;
    if (len == 0) return 0;
    sp_daemon_t *d = c->d;
    size_t off = 0;
    if (c->obuf_bytes == 0) {
        uv_buf_t b = uv_buf_init((char *)(uintptr_t)data, (unsigned)len);
        int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (r >= 0) {
            off = (size_t)r;
        } else if (r != UV_EAGAIN) {
            sp_client_close(c, "write error: %s", uv_strerror(r));
            return -1;
        }
    }
    d->st.bytes_out += len;
    if (off == len) return 0;
    size_t rem = len - off;
    if (c->obuf_bytes + rem > d->conf.obuf_hard) {
        sp_client_close(c, "kicked: output buffer over hard limit (%zu bytes queued)", c->obuf_bytes + rem);
        return -1;
    }
    write_req_t *w = malloc(sizeof *w + rem);
    if (w == NULL) {
        sp_client_close(c, "kicked: out of memory for output");
        return -1;
    }
    memcpy(w->data, (const char *)data + off, rem);
    w->c = c;
    w->len = rem;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)rem);
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r < 0) {
        free(w);
        sp_client_close(c, "write error: %s", uv_strerror(r));
        return -1;
    }
    c->refs++; /* the write request refers to c until on_write */
    c->obuf_bytes += rem;
    if (c->obuf_bytes > d->conf.obuf_soft && c->over_soft_since_ns == 0) c->over_soft_since_ns = sp_now_ns();
    return 0;
}

int sp_client_send_sbuf(sp_client_t *c) {
    sp_daemon_t *d = c->d;
    int r = sp_client_send(c, d->sbuf.data, d->sbuf.size);
    msgpack_sbuffer_clear(&d->sbuf);
    return r;
}

/* ---------------------------------------------------------------- input */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    if (g_rbuf_busy) { /* cannot happen with libuv's synchronous alloc/read pairing */
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    g_rbuf_busy = true;
    *buf = uv_buf_init(g_rbuf, sizeof g_rbuf);
}

/* Decode and dispatch one complete message of n bytes. */
static void dispatch(sp_client_t *c, const uint8_t *p, size_t n) {
    static msgpack_unpacked up;
    static bool up_init;
    if (!up_init) {
        msgpack_unpacked_init(&up);
        up_init = true;
    }
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&up, (const char *)p, n, &off);
    if (r != MSGPACK_UNPACK_SUCCESS || off != n) {
        /* Not reached for framed input unless msgpack-c runs out of memory. */
        sp_session_notify_error(c, SP_RPCERR_PARSE_ERROR, "parse error: invalid MessagePack");
        sp_client_close(c, "kicked: malformed MessagePack");
        return;
    }
    c->d->st.bytes_in += n;
    sp_session_handle(c, &up.data);
}

/* The framer refused the client's message: say why, then close. */
static void refuse(sp_client_t *c, const sp_rpc_scan_t *scan) {
    size_t max = c->d->conf.max_msg;
    char m[96];
    switch ((sp_rpc_scan_fail_t)scan->fail) {
    case SP_RPC_SCAN_TOO_LARGE:
        snprintf(m, sizeof m, "message too large: limit is %zu bytes", max);
        sp_session_notify_error(c, SP_RPCERR_TOO_LARGE, m);
        sp_client_close(c, "kicked: message over %zu bytes", max);
        return;
    case SP_RPC_SCAN_TOO_DEEP:
        snprintf(m, sizeof m, "parse error: nested deeper than %u arrays/maps", SP_RPC_MAX_DEPTH);
        sp_session_notify_error(c, SP_RPCERR_PARSE_ERROR, m);
        sp_client_close(c, "kicked: message nested too deep");
        return;
    case SP_RPC_SCAN_BAD_BYTE:
    case SP_RPC_SCAN_OK: /* not reached: refuse() follows a failed scan */
    default:
        sp_session_notify_error(c, SP_RPCERR_PARSE_ERROR, "parse error: invalid MessagePack type byte 0xc1");
        sp_client_close(c, "kicked: malformed MessagePack");
        return;
    }
}

/* Keep data[0, n), the start of an incomplete message whose framer state is
 * *scan, as the client's partial message. n <= max_msg. */
static void partial_start(sp_client_t *c, const sp_rpc_scan_t *scan, const uint8_t *data, size_t n) {
    size_t cap = n < 1024 ? 1024 : n;
    partial_t *pt = malloc(sizeof *pt + cap);
    if (pt == NULL) {
        sp_client_close(c, "kicked: out of memory for input");
        return;
    }
    pt->scan = *scan;
    memcpy(pt->bytes, data, n);
    c->ibuf = (uint8_t *)pt;
    c->ilen = n;
    c->icap = cap;
}

/* Append data[0, n) to the partial message. ilen + n <= max_msg (framed). */
static bool partial_append(sp_client_t *c, const uint8_t *data, size_t n) {
    if (c->ilen + n > c->icap) {
        size_t cap = c->icap * 2;
        if (cap < c->ilen + n) cap = c->ilen + n;
        partial_t *np = realloc(c->ibuf, sizeof(partial_t) + cap);
        if (np == NULL) {
            sp_client_close(c, "kicked: out of memory for input");
            return false;
        }
        c->ibuf = (uint8_t *)np;
        c->icap = cap;
    }
    memcpy(partial_of(c)->bytes + c->ilen, data, n);
    c->ilen += n;
    return true;
}

/* Frame and dispatch data[0, len) of one read. A message left incomplete by
 * an earlier read is finished first (its tail appended, then dispatched from
 * the client's buffer); every message whole in data is dispatched in place;
 * an incomplete last one is copied with its framer state. */
static void consume(sp_client_t *c, const uint8_t *data, size_t len) {
    const size_t max = c->d->conf.max_msg;
    size_t off = 0, used;
    if (c->ibuf != NULL) {
        partial_t *pt = partial_of(c);
        int r = sp_rpc_scan(&pt->scan, data, len, max, &used);
        if (r < 0) {
            refuse(c, &pt->scan);
            return;
        }
        if (!partial_append(c, data, used)) return;
        if (r == 0) return; /* still incomplete: all of data was taken */
        dispatch(c, partial_of(c)->bytes, c->ilen);
        partial_free(c); /* after dispatch: the decoded objects point into it */
        off = used;
    }
    sp_rpc_scan_t scan;
    sp_rpc_scan_init(&scan);
    while (off < len && c->state != SP_CLIENT_CLOSING) {
        int r = sp_rpc_scan(&scan, data + off, len - off, max, &used);
        if (r < 0) {
            refuse(c, &scan);
            return;
        }
        if (r == 0) {
            partial_start(c, &scan, data + off, len - off);
            return;
        }
        dispatch(c, data + off, used);
        off += used;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    sp_client_t *c = (sp_client_t *)s->data;
    if (buf->base == g_rbuf) g_rbuf_busy = false;
    if (nread == 0) return;
    if (nread < 0) {
        if (nread == UV_EOF) sp_client_close(c, "closed");
        else sp_client_close(c, "read error: %s", uv_strerror((int)nread));
        return;
    }
    if (c->state == SP_CLIENT_CLOSING) return;
    c->last_rx_ns = sp_now_ns();
    c->ping_sent = false;
    consume(c, (const uint8_t *)buf->base, (size_t)nread);
}

/* ---------------------------------------------------------------- accept */

static void on_connection(uv_stream_t *server, int status) {
    sp_daemon_t *d = (sp_daemon_t *)server->data;
    if (status < 0) {
        SP_LOGW("accept failed: %s", uv_strerror(status));
        return;
    }
    sp_client_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        SP_LOGE("out of memory accepting a client");
        return;
    }
    uv_tcp_init(d->loop, &c->tcp);
    c->tcp.data = c;
    c->d = d;
    c->refs = 1;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    c->session = d->next_session++;
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        char ip[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
    }
    uint64_t now = sp_now_ns();
    c->last_rx_ns = now;
    c->tokens = d->conf.rate_burst;
    c->tokens_ns = now;
    c->radius = d->conf.default_radius;
    /* Link first so sp_client_close() can unlink uniformly. */
    c->next = d->clients;
    if (d->clients) d->clients->prev = c;
    d->clients = c;
    d->nclients++;
    d->st.clients_total++;
    if (d->nclients > d->conf.max_clients) {
        sp_session_notify_error(c, 11, "server full: too many clients");
        sp_client_close(c, "kicked: max clients (%d) reached", d->conf.max_clients);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    SP_LOGI("client %u %s connected (%d clients)", c->session, c->peer, d->nclients);
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r < 0) sp_client_close(c, "read error: %s", uv_strerror(r));
}

int sp_net_listen(sp_daemon_t *d) {
    struct sockaddr_storage addr;
    int r;
    if (strchr(d->conf.bind, ':') != NULL)
        r = uv_ip6_addr(d->conf.bind, d->conf.port, (struct sockaddr_in6 *)&addr);
    else
        r = uv_ip4_addr(d->conf.bind, d->conf.port, (struct sockaddr_in *)&addr);
    if (r < 0) {
        SP_LOGE("invalid --bind address '%s': %s", d->conf.bind, uv_strerror(r));
        return SP_EXIT_USAGE;
    }
    uv_tcp_init(d->loop, &d->server);
    d->server.data = d;
    r = uv_tcp_bind(&d->server, (const struct sockaddr *)&addr, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)&d->server, 511, on_connection);
    if (r < 0) {
        SP_LOGE("cannot listen on %s:%d: %s", d->conf.bind, d->conf.port, uv_strerror(r));
        uv_close((uv_handle_t *)&d->server, NULL);
        return SP_EXIT_LISTEN;
    }
    struct sockaddr_storage bound;
    int bl = sizeof bound;
    int port = d->conf.port;
    if (uv_tcp_getsockname(&d->server, (struct sockaddr *)&bound, &bl) == 0) {
        port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    }
    d->conf.port = port;
    d->listening = true;
    SP_LOGI("listening on %s port %d", d->conf.bind, port);
    if (d->conf.port_file) {
        /* Written atomically (temp + rename) so a reader never sees half. */
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.tmp", d->conf.port_file);
        FILE *f = fopen(tmp, "w");
        if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
            rename(tmp, d->conf.port_file) != 0) {
            SP_LOGE("cannot write --port-file %s: %s", d->conf.port_file, strerror(errno));
            return SP_EXIT_CONFIG;
        }
    }
    return 0;
}

void sp_net_stop_accepting(sp_daemon_t *d) {
    if (!d->listening) return;
    d->listening = false;
    uv_close((uv_handle_t *)&d->server, NULL);
    SP_LOGI("stopped accepting connections");
}

/* Once a second: idle pings and timeouts, clients stuck over the soft limit. */
void sp_net_housekeeping(sp_daemon_t *d, uint64_t now) {
    sp_client_t *c = d->clients;
    while (c) {
        sp_client_t *next = c->next; /* c may be unlinked below */
        double idle = (double)(now - c->last_rx_ns) / 1e9;
        if (idle >= d->conf.idle_timeout_secs) {
            sp_client_close(c, "timed out");
        } else if (c->over_soft_since_ns != 0 &&
                   (double)(now - c->over_soft_since_ns) / 1e9 >= d->conf.obuf_soft_secs) {
            sp_client_close(c, "kicked: output buffer over soft limit (%zu bytes) for %.0f s", c->obuf_bytes,
                            d->conf.obuf_soft_secs);
        } else if (idle >= d->conf.idle_ping_secs && !c->ping_sent) {
            /* Server ping: a notification the client need not answer; any
             * bytes from the client (a ping request) reset the idle clock. */
            msgpack_pack_array(&d->pk, 3);
            msgpack_pack_int(&d->pk, 2);
            msgpack_pack_str_with_body(&d->pk, "ping", 4);
            msgpack_pack_array(&d->pk, 0);
            sp_client_send_sbuf(c);
            c->ping_sent = true;
        }
        c = next;
    }
}
