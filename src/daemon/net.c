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
 * Input framing. A MessagePack-RPC stream has no length prefix, so the framer
 * walks msgpack headers (never the payload) to find where one message ends.
 * It keeps (scan_pos, scan_need) per client so a slowly arriving message is
 * scanned once. Limits, checked before any byte is copied or allocated:
 *  - a declared str/bin/ext length, or the running size of the message, over
 *    conf.max_msg (64 KiB) -> error notification TOO_LARGE, then close;
 *  - more than SP_MAX_OBJECTS objects in one message -> same (a request has a
 *    handful; this bounds the unpacker's allocations to a few hundred KiB).
 * Complete messages are decoded straight from the read buffer when they are
 * whole in it; only the tail of an incomplete one is copied into the
 * client's own ibuf, allocated lazily and freed as soon as it empties, so an
 * idle client costs sizeof(sp_client_t) plus libuv's handle.
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

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SP_MAX_OBJECTS 4096u
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

enum { SCAN_MORE = 0, SCAN_DONE = 1, SCAN_BAD = -1, SCAN_BIG = -2 };

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Advance over complete headers of buf[*pos..len). Returns SCAN_DONE with
 * *pos at the end of the message, SCAN_MORE (state saved), SCAN_BAD (0xc1)
 * or SCAN_BIG (over a limit). */
static int frame_scan(const uint8_t *buf, size_t len, size_t *pos, size_t *need, size_t limit) {
    size_t p = *pos, n = *need;
    if (n == 0) n = 1;
    while (n > 0) {
        if (p > limit) return SCAN_BIG;
        if (p >= len) break;
        uint8_t b = buf[p];
        size_t hdr = 1;
        uint64_t body = 0, add = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b >= 0x80 && b <= 0x8f) {
            add = 2u * (b & 0x0f);
        } else if (b >= 0x90 && b <= 0x9f) {
            add = b & 0x0f;
        } else if (b >= 0xa0 && b <= 0xbf) {
            body = b & 0x1f;
        } else {
            int lenb = 0;
            switch (b) {
            case 0xc1: return SCAN_BAD;
            case 0xc4: case 0xd9: lenb = 1; break;
            case 0xc5: case 0xda: lenb = 2; break;
            case 0xc6: case 0xdb: lenb = 4; break;
            case 0xc7: lenb = 1; hdr = 1; break; /* ext8: len, type */
            case 0xc8: lenb = 2; break;
            case 0xc9: lenb = 4; break;
            case 0xca: body = 4; break;
            case 0xcb: body = 8; break;
            case 0xcc: case 0xd0: body = 1; break;
            case 0xcd: case 0xd1: body = 2; break;
            case 0xce: case 0xd2: body = 4; break;
            case 0xcf: case 0xd3: body = 8; break;
            case 0xd4: body = 2; break;
            case 0xd5: body = 3; break;
            case 0xd6: body = 5; break;
            case 0xd7: body = 9; break;
            case 0xd8: body = 17; break;
            case 0xdc: case 0xde: lenb = 2; break;
            case 0xdd: case 0xdf: lenb = 4; break;
            default: return SCAN_BAD;
            }
            if (lenb) {
                if (len - p < 1u + (size_t)lenb) break; /* header incomplete */
                uint64_t v = be(buf + p + 1, lenb);
                hdr = 1u + (size_t)lenb;
                if (b == 0xc7 || b == 0xc8 || b == 0xc9) {
                    hdr += 1; /* ext type byte */
                    body = v;
                } else if (b == 0xdc || b == 0xdd) {
                    add = v;
                } else if (b == 0xde || b == 0xdf) {
                    add = 2u * v;
                } else {
                    body = v;
                }
            }
        }
        /* Declared sizes are checked before waiting for (or copying) them. */
        if (body > limit || add > SP_MAX_OBJECTS) return SCAN_BIG;
        if (p + hdr + body > limit) return SCAN_BIG;
        if (len - p < hdr + body) break; /* wait for the rest of this item */
        p += hdr + (size_t)body;
        n = n - 1 + (size_t)add;
        if (n > SP_MAX_OBJECTS) return SCAN_BIG;
    }
    *pos = p;
    *need = n;
    if (n == 0) {
        *need = 0;
        return SCAN_DONE;
    }
    return SCAN_MORE;
}

/* ---------------------------------------------------------------- closing */

static void free_client(sp_client_t *c) {
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
        sp_session_notify_error(c, 1, "parse error: invalid MessagePack");
        sp_client_close(c, "kicked: malformed MessagePack");
        return;
    }
    c->d->st.bytes_in += n;
    sp_session_handle(c, &up.data);
}

/* Process data[0..len): dispatch complete messages and keep the tail. */
static void consume(sp_client_t *c, const uint8_t *data, size_t len, bool from_ibuf) {
    sp_daemon_t *d = c->d;
    size_t start = 0;
    while (start < len && c->state != SP_CLIENT_CLOSING) {
        size_t pos = c->scan_pos, need = c->scan_need;
        int r = frame_scan(data + start, len - start, &pos, &need, d->conf.max_msg);
        if (r == SCAN_DONE) {
            c->scan_pos = 0;
            c->scan_need = 0;
            dispatch(c, data + start, pos);
            start += pos;
            continue;
        }
        if (r == SCAN_BIG) {
            char m[96];
            snprintf(m, sizeof m, "message too large: limit is %zu bytes", d->conf.max_msg);
            sp_session_notify_error(c, 13, m);
            sp_client_close(c, "kicked: message over %zu bytes", d->conf.max_msg);
            return;
        }
        if (r == SCAN_BAD) {
            sp_session_notify_error(c, 1, "parse error: invalid MessagePack type byte 0xc1");
            sp_client_close(c, "kicked: malformed MessagePack");
            return;
        }
        c->scan_pos = pos;
        c->scan_need = need;
        break;
    }
    if (c->state == SP_CLIENT_CLOSING) return;
    size_t rest = len - start;
    if (from_ibuf) {
        if (rest == 0) {
            free(c->ibuf);
            c->ibuf = NULL;
            c->ilen = c->icap = 0;
        } else if (start > 0) {
            memmove(c->ibuf, c->ibuf + start, rest);
            c->ilen = rest;
        }
        return;
    }
    if (rest > 0) {
        /* rest <= max_msg: the framer would have refused a longer prefix. */
        size_t cap = rest < 1024 ? 1024 : rest;
        c->ibuf = malloc(cap);
        if (c->ibuf == NULL) {
            sp_client_close(c, "kicked: out of memory for input");
            return;
        }
        memcpy(c->ibuf, data + start, rest);
        c->ilen = rest;
        c->icap = cap;
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
    const uint8_t *data = (const uint8_t *)buf->base;
    size_t n = (size_t)nread;
    if (c->ilen == 0) {
        consume(c, data, n, false);
        return;
    }
    /* Append to the pending partial message. ilen <= max_msg and n <= 64 KiB. */
    if (c->ilen + n > c->icap) {
        size_t cap = c->icap * 2;
        if (cap < c->ilen + n) cap = c->ilen + n;
        uint8_t *nb = realloc(c->ibuf, cap);
        if (nb == NULL) {
            sp_client_close(c, "kicked: out of memory for input");
            return;
        }
        c->ibuf = nb;
        c->icap = cap;
    }
    memcpy(c->ibuf + c->ilen, data, n);
    c->ilen += n;
    consume(c, c->ibuf, c->ilen, true);
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
