/* net.c: the TCP server, per-connection input framing and output queue.
 *
 * Input framing. A MessagePack-RPC stream has no length prefix, so messages
 * are framed by proto's sp_rpc_scan() (the same framer sp_rpc_decoder_t
 * uses: one copy of the security checks), which walks msgpack headers (never
 * the payload) and enforces, as each header arrives and before any byte of
 * the message is copied or allocated:
 *  - a declared str/bin/ext length, array/map count, or the running size of
 *    the message, over conf->max_msg (MAX_MESSAGE_BYTES) -> error
 *    notification TOO_LARGE, then close;
 *  - nesting of arrays/maps deeper than MAX_DEPTH, or a 0xc1 byte -> error
 *    notification PARSE_ERROR, then close. Every message handed to
 *    cb.message is therefore at most MAX_DEPTH deep and at most max_msg
 *    bytes, which bounds msgpack-c's allocations (about 24 bytes per wire
 *    byte) and any recursion over the decoded object.
 * Complete messages are decoded straight from the read buffer when they are
 * whole in it; only the incomplete tail of a message is copied, together
 * with the framer's state, into the connection's own buffer (a partial_t),
 * allocated lazily and freed as soon as that message completes, so the
 * bytes of a message in progress are scanned once and an idle connection
 * costs sizeof its owner's struct plus libuv's handle.
 *
 * Rate (dispatch.h, check 0). Before the first byte of each message is
 * framed, cb.admit takes a token. Without one the connection is held: the
 * rest of the read is kept as it is (held_t, at most one read buffer, not
 * framed), the socket is no longer read (uv_read_stop: the client's sends
 * block once the kernel buffers fill, which is TCP's back-pressure), and a
 * one-shot timer of the connection resumes it when the token is due. So an
 * excess message is never decoded nor answered, and its cost to the loop is
 * the timer: O(1) per held message, nothing for a connection never held
 * (its timer is created the first time it is held). A connection held again
 * and again for conf->rate_kick_secs is kicked (SP_RATE_RUN_GAP_NS).
 *
 * Slow senders. An unfinished message may take conf->request_timeout_secs
 * (from its first byte) to complete, then the connection is closed "timed
 * out: slow request"; idleness is judged by complete messages only; and one
 * IP address may hold at most conf->max_per_address connections (a chained
 * hash of counts, O(1) per accept and close), so one host trickling bytes
 * into many connections cannot take every --max-clients slot.
 *
 * Output. sp_conn_sendv() (and sp_conn_send(), a sendv of one part) tries
 * uv_try_write() first (no allocation when the socket has room and nothing
 * is queued), and queues the rest with uv_write() in one allocation
 * (request + buffers + the bytes of the unshared parts); it gathers several
 * parts (writev), and queues the shared ones (rbufs: a snapshot's cell
 * chunks) by reference instead of copying them. obuf_bytes counts queued
 * bytes, shared ones included:
 *  - over conf->obuf_soft: snapshots are skipped for this client
 *    (snapshots.c), and if it stays over for obuf_soft_secs it is kicked
 *    (housekeeping);
 *  - over conf->obuf_hard: kicked at once ("kicked: output buffer over hard
 *    limit"). So a client that does not read costs at most obuf_hard bytes
 *    and never slows anyone else: the loop never blocks on a socket.
 *
 * WebSocket connections (net.h, http.c) take the same paths: their bytes go
 * through consume() (a fragment at a time; a message must hold exactly one
 * MessagePack message, checked in deliver() and at the message's end), the
 * rate holds them with lws_rx_flow_control() instead of uv_read_stop(), and
 * their output is a queue of whole messages (ws_out_t) under the same
 * obuf_bytes limits, handed to lws_write() one per writable callback. */
#include "daemon/net.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/clock.h"
#include "daemon/log.h"
#include "rpc.h"
#include "spacesim/error.h"

#define SP_READ_BUF (64u * 1024u)

/* One read buffer for every connection: libuv calls alloc_cb then read_cb
 * synchronously on the loop thread, so it is never shared by two reads. */
static char g_rbuf[SP_READ_BUF];
static bool g_rbuf_busy;

/* A queued write: the bytes a first uv_try_write() left over. data holds
 * one uv_buf_t per part left, then refs, then copies of the unshared parts'
 * bytes; the buffers of shared parts point into their rbufs (one reference
 * each, in refs, released when the write completes). */
typedef struct write_req {
    uv_write_t req;
    sp_conn_t *c;
    size_t len;                 /* bytes queued (counted in obuf_bytes) */
    size_t nrefs;
    sp_rbuf_t **refs;           /* inside data, or NULL */
    _Alignas(16) char data[];
} write_req_t;

/* The incomplete tail of a message, behind c->partial: the framer's state
 * and the bytes so far. Its bytes never exceed conf->max_msg (the framer
 * refuses a longer prefix). */
typedef struct partial {
    sp_rpc_scan_t scan;
    size_t len, cap;
    uint8_t bytes[];
} partial_t;

/* The bytes of a held connection read but not framed yet, behind
 * c->held_bytes: bytes[off, len) are next. They start at a message boundary
 * (the connection was held before framing a message). */
typedef struct held {
    size_t off, len;
    uint8_t bytes[];
} held_t;

/* A whole message queued for a WebSocket, behind c->wq_head: lws_write()
 * needs LWS_PRE writable bytes before the payload. */
typedef struct ws_out {
    struct ws_out *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE + len */
} ws_out_t;

/* One address's count of open connections (--max-per-address). The key is
 * the IPv6 address, IPv4 mapped into ::ffff:0:0/96; all zero if unknown. */
typedef struct sp_addr_slot {
    struct sp_addr_slot *next; /* bucket chain */
    uint8_t key[16];
    int n;
} sp_addr_slot_t;

/* ---------------------------------------------------------------- references */

void sp_conn_retain(sp_conn_t *c) { c->refs++; }

const char *sp_conn_transport_name(const sp_conn_t *c) {
    return c->transport == SP_TRANSPORT_WS ? "websocket" : "tcp";
}

void sp_conn_release(sp_conn_t *c) {
    if (--c->refs > 0) return;
    free(c->partial);
    c->partial = NULL;
    free(c->held_bytes);
    c->held_bytes = NULL;
    ws_out_t *m = c->wq_head;
    while (m) {
        ws_out_t *next = m->next;
        free(m);
        m = next;
    }
    c->wq_head = c->wq_tail = NULL;
    c->net->cb.free(c->net->ctx, c);
}

static void on_close(uv_handle_t *h) { sp_conn_release((sp_conn_t *)h->data); }

/* ---------------------------------------------------------------- addresses */

static size_t addr_hash(const uint8_t key[16]) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (int i = 0; i < 16; i++) h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32));
}

/* Count one more connection from key. The slot, or NULL when out of memory. */
static sp_addr_slot_t *addr_acquire(sp_net_t *n, const uint8_t key[16]) {
    sp_addr_slot_t **b = &n->addr_buckets[addr_hash(key) & n->addr_mask];
    for (sp_addr_slot_t *s = *b; s; s = s->next)
        if (memcmp(s->key, key, 16) == 0) {
            s->n++;
            return s;
        }
    sp_addr_slot_t *s = malloc(sizeof *s);
    if (s == NULL) return NULL;
    memcpy(s->key, key, 16);
    s->n = 1;
    s->next = *b;
    *b = s;
    return s;
}

/* One connection fewer from s's address; the slot goes with the last one. */
static void addr_release(sp_net_t *n, sp_addr_slot_t *s) {
    if (--s->n > 0) return;
    sp_addr_slot_t **p = &n->addr_buckets[addr_hash(s->key) & n->addr_mask];
    while (*p != s) p = &(*p)->next;
    *p = s->next;
    free(s);
}

/* ---------------------------------------------------------------- closing */

void sp_conn_close(sp_conn_t *c, sp_close_kind_t kind, const char *fmt, ...) {
    if (c->closing) return;
    sp_net_t *n = c->net;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->close_reason, sizeof c->close_reason, fmt, ap);
    va_end(ap);
    c->closing = true;
    c->close_kind = kind;
    if (kind == SP_CLOSE_KICK) n->st->kicks++;
    SP_LOGI("client %u %s disconnected: %s", c->log_id, c->peer, c->close_reason);
    n->cb.closing(n->ctx, c, kind);
    if (c->prev) c->prev->next = c->next;
    else n->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    n->nconns--;
    if (c->addr) addr_release(n, c->addr);
    c->addr = NULL;
    /* The timer's reference goes in its close callback (uv_close stops it). */
    if (c->resume_init) uv_close((uv_handle_t *)&c->resume, on_close);
    if (c->transport == SP_TRANSPORT_TCP) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    /* WebSocket: like uv_close() cancelling queued writes, drop the queue
     * but its last message (the error notification of refuse_and_close(),
     * if that is what closes it); the writable callback sends it, then
     * tells lws to close. The handle's reference goes in sp_net_ws_closed. */
    ws_out_t *m = c->wq_head;
    while (m && m != c->wq_tail) {
        ws_out_t *next = m->next;
        c->obuf_bytes -= m->len;
        free(m);
        m = next;
    }
    c->wq_head = m;
    if (c->wsi) lws_callback_on_writable(c->wsi);
}

void sp_net_close_all(sp_net_t *n, const char *reason) {
    while (n->conns) sp_conn_close(n->conns, SP_CLOSE_SHUTDOWN, "%s", reason);
}

/* An error notification from net itself (framing, server full), then close. */
static void refuse_and_close(sp_conn_t *c, int code, const char *msg, const char *why) {
    sp_net_t *n = c->net;
    if (sp_rpc_pack_error_notify(&n->pk, code, msg) == 0) sp_conn_send_sbuf(c, &n->sbuf);
    else msgpack_sbuffer_clear(&n->sbuf);
    sp_conn_close(c, SP_CLOSE_KICK, "%s", why);
}

/* ---------------------------------------------------------------- output */

static void on_write(uv_write_t *req, int status) {
    write_req_t *w = (write_req_t *)req;
    sp_conn_t *c = w->c;
    c->obuf_bytes -= w->len;
    if (c->obuf_bytes <= c->net->conf->obuf_soft) c->over_soft_since_ns = 0;
    for (size_t k = 0; k < w->nrefs; k++) sp_rbuf_release(w->refs[k]);
    free(w);
    if (status < 0 && status != UV_ECANCELED) sp_conn_close(c, SP_CLOSE_PEER, "write error: %s", uv_strerror(status));
    sp_conn_release(c);
}

/* Queue one whole message for a WebSocket (the hard limit as for TCP). */
static int ws_queue(sp_conn_t *c, const void *data, size_t len) {
    sp_net_t *n = c->net;
    if (c->obuf_bytes + len > n->conf->obuf_hard) {
        sp_conn_close(c, SP_CLOSE_KICK, "kicked: output buffer over hard limit (%zu bytes queued)", c->obuf_bytes + len);
        return -1;
    }
    ws_out_t *m = malloc(sizeof *m + LWS_PRE + len);
    if (m == NULL) {
        sp_conn_close(c, SP_CLOSE_KICK, "kicked: out of memory for output");
        return -1;
    }
    m->next = NULL;
    m->len = len;
    memcpy(m->buf + LWS_PRE, data, len);
    if (c->wq_tail) ((ws_out_t *)c->wq_tail)->next = m;
    else c->wq_head = m;
    c->wq_tail = m;
    c->obuf_bytes += len;
    if (c->obuf_bytes > n->conf->obuf_soft && c->over_soft_since_ns == 0) c->over_soft_since_ns = sp_now_ns();
    lws_callback_on_writable(c->wsi);
    return 0;
}

/* A WebSocket message per MessagePack message: split data at the framer's
 * boundaries (headers only are walked: ~1 us per 100 objects). A buffer
 * that does not frame (never packed by proto) goes as one message. */
static int ws_send(sp_conn_t *c, const void *data, size_t len) {
    const uint8_t *p = data;
    size_t off = 0;
    c->net->st->bytes_out += len;
    c->bytes_out += len;
    while (off < len) {
        sp_rpc_scan_t scan;
        sp_rpc_scan_init(&scan);
        size_t used = 0;
        int r = sp_rpc_scan(&scan, p + off, len - off, SP_LIMIT_MAX_SERVER_MESSAGE_BYTES, &used);
        if (r != 1) used = len - off;
        if (ws_queue(c, p + off, used) != 0) return -1;
        off += used;
    }
    return 0;
}

/* The most parts one sendv takes without an allocation for its buffers. */
#define SENDV_STACK_PARTS 64

int sp_conn_sendv(sp_conn_t *c, const sp_outpart_t *parts, size_t n) {
    if (c->closing) return -1;
    size_t total = 0;
    for (size_t k = 0; k < n; k++) total += parts[k].len;
    if (total == 0) return 0;
    if (c->transport == SP_TRANSPORT_WS) {
        /* lws_write() wants each message contiguous behind LWS_PRE bytes:
         * WebSocket output is copied (ws_queue), so join the parts; one part
         * (sp_conn_send) already is. */
        if (n == 1) return ws_send(c, parts[0].data, total);
        char *all = malloc(total);
        if (all == NULL) {
            sp_conn_close(c, SP_CLOSE_KICK, "kicked: out of memory for output");
            return -1;
        }
        size_t at = 0;
        for (size_t k = 0; k < n; k++) {
            if (parts[k].len) memcpy(all + at, parts[k].data, parts[k].len);
            at += parts[k].len;
        }
        int r = ws_send(c, all, total);
        free(all);
        return r;
    }
    sp_net_t *net = c->net;
    uv_buf_t stack_bufs[SENDV_STACK_PARTS], *bufs = stack_bufs;
    if (n > SENDV_STACK_PARTS && (bufs = malloc(n * sizeof *bufs)) == NULL) {
        sp_conn_close(c, SP_CLOSE_KICK, "kicked: out of memory for output");
        return -1;
    }
    for (size_t k = 0; k < n; k++) bufs[k] = uv_buf_init((char *)(uintptr_t)parts[k].data, (unsigned)parts[k].len);
    size_t off = 0;
    if (c->obuf_bytes == 0) {
        /* libuv writes at most IOV_MAX buffers per call: the rest is queued. */
        int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
        if (r >= 0) {
            off = (size_t)r;
        } else if (r != UV_EAGAIN) {
            if (bufs != stack_bufs) free(bufs);
            sp_conn_close(c, SP_CLOSE_PEER, "write error: %s", uv_strerror(r));
            return -1;
        }
    }
    net->st->bytes_out += total;
    c->bytes_out += total;
    if (off == total) {
        if (bufs != stack_bufs) free(bufs);
        return 0;
    }
    size_t rem = total - off;
    if (c->obuf_bytes + rem > net->conf->obuf_hard) {
        if (bufs != stack_bufs) free(bufs);
        sp_conn_close(c, SP_CLOSE_KICK, "kicked: output buffer over hard limit (%zu bytes queued)", c->obuf_bytes + rem);
        return -1;
    }
    /* The parts (or their tails) not written: first part k0 from byte skip. */
    size_t k0 = 0, skip = off;
    while (k0 < n && skip >= parts[k0].len) skip -= parts[k0++].len;
    size_t nq = n - k0, copy = 0, nrefs = 0;
    for (size_t k = k0; k < n; k++) {
        if (parts[k].ref) nrefs++;
        else copy += parts[k].len - (k == k0 ? skip : 0);
    }
    size_t head = nq * sizeof(uv_buf_t) + nrefs * sizeof(sp_rbuf_t *);
    write_req_t *w = malloc(sizeof *w + head + copy);
    if (w == NULL) {
        if (bufs != stack_bufs) free(bufs);
        sp_conn_close(c, SP_CLOSE_KICK, "kicked: out of memory for output");
        return -1;
    }
    uv_buf_t *qb = (uv_buf_t *)(void *)w->data;
    w->refs = nrefs ? (sp_rbuf_t **)(void *)(w->data + nq * sizeof(uv_buf_t)) : NULL;
    w->nrefs = 0;
    char *cp = w->data + head;
    for (size_t k = k0; k < n; k++) {
        const char *src = (const char *)parts[k].data + (k == k0 ? skip : 0);
        size_t len = parts[k].len - (k == k0 ? skip : 0);
        if (parts[k].ref) {
            sp_rbuf_retain(parts[k].ref); /* until on_write: the bytes are not copied */
            w->refs[w->nrefs++] = parts[k].ref;
            qb[k - k0] = uv_buf_init((char *)(uintptr_t)src, (unsigned)len);
        } else {
            if (len) memcpy(cp, src, len);
            qb[k - k0] = uv_buf_init(cp, (unsigned)len);
            cp += len;
        }
    }
    if (bufs != stack_bufs) free(bufs);
    w->c = c;
    w->len = rem;
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, qb, (unsigned)nq, on_write);
    if (r < 0) {
        for (size_t k = 0; k < w->nrefs; k++) sp_rbuf_release(w->refs[k]);
        free(w);
        sp_conn_close(c, SP_CLOSE_PEER, "write error: %s", uv_strerror(r));
        return -1;
    }
    sp_conn_retain(c); /* the write request's, until on_write */
    c->obuf_bytes += rem;
    if (c->obuf_bytes > net->conf->obuf_soft && c->over_soft_since_ns == 0) c->over_soft_since_ns = sp_now_ns();
    return 0;
}

/* One path for both: a plain send is a sendv of one unshared part. Against
 * a copy of the path for one buffer, that costs a few instructions per call
 * and one uv_buf_t (16 bytes) more in a queued write's allocation: the
 * syscall, the malloc and the copy are the same. */
int sp_conn_send(sp_conn_t *c, const void *data, size_t len) {
    const sp_outpart_t part = {.data = data, .len = len, .ref = NULL};
    return sp_conn_sendv(c, &part, 1);
}

int sp_conn_send_sbuf(sp_conn_t *c, msgpack_sbuffer *sb) {
    int r = sp_conn_send(c, sb->data, sb->size);
    msgpack_sbuffer_clear(sb);
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

/* Decode and hand on one complete message of len bytes. */
static void deliver(sp_conn_t *c, const uint8_t *p, size_t len) {
    static msgpack_unpacked up;
    static bool up_init;
    if (!up_init) {
        msgpack_unpacked_init(&up);
        up_init = true;
    }
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&up, (const char *)p, len, &off);
    if (r != MSGPACK_UNPACK_SUCCESS || off != len) {
        /* Not reached for framed input unless msgpack-c runs out of memory. */
        refuse_and_close(c, SP_RPCERR_PARSE_ERROR, "parse error: invalid MessagePack", "kicked: malformed MessagePack");
        return;
    }
    sp_net_t *n = c->net;
    /* (Bytes held while the connection was held are several WebSocket
     * messages back to back, their boundaries not kept: not checked.) */
    if (c->transport == SP_TRANSPORT_WS && !c->ws_from_held && c->ws_msgs++ > 0) {
        refuse_and_close(c, SP_RPCERR_PARSE_ERROR, "parse error: one MessagePack message per WebSocket message",
                         "kicked: several messages in one WebSocket message");
        return;
    }
    n->st->bytes_in += len;
    /* Liveness counts complete messages only (slow senders, net.h). */
    c->last_rx_ns = sp_now_ns();
    c->ping_sent = false;
    n->cb.message(n->ctx, c, &up.data);
}

/* The framer refused the connection's message: say why, then close. */
static void refuse(sp_conn_t *c, const sp_rpc_scan_t *scan) {
    size_t max = c->net->conf->max_msg;
    char m[96], why[64];
    switch ((sp_rpc_scan_fail_t)scan->fail) {
    case SP_RPC_SCAN_TOO_LARGE:
        snprintf(m, sizeof m, "message too large: limit is %zu bytes", max);
        snprintf(why, sizeof why, "kicked: message over %zu bytes", max);
        refuse_and_close(c, SP_RPCERR_TOO_LARGE, m, why);
        return;
    case SP_RPC_SCAN_TOO_DEEP:
        snprintf(m, sizeof m, "parse error: nested deeper than %u arrays/maps", SP_RPC_MAX_DEPTH);
        refuse_and_close(c, SP_RPCERR_PARSE_ERROR, m, "kicked: message nested too deep");
        return;
    case SP_RPC_SCAN_BAD_BYTE:
    case SP_RPC_SCAN_OK: /* not reached: refuse() follows a failed scan */
    default:
        refuse_and_close(c, SP_RPCERR_PARSE_ERROR, "parse error: invalid MessagePack type byte 0xc1",
                         "kicked: malformed MessagePack");
        return;
    }
}

/* Keep data[0, len), the start of an incomplete message whose framer state
 * is *scan, as the connection's partial message. len <= max_msg. */
static void partial_start(sp_conn_t *c, const sp_rpc_scan_t *scan, const uint8_t *data, size_t len) {
    size_t cap = len < 1024 ? 1024 : len;
    partial_t *pt = malloc(sizeof *pt + cap);
    if (pt == NULL) {
        sp_conn_close(c, SP_CLOSE_KICK, "kicked: out of memory for input");
        return;
    }
    pt->scan = *scan;
    pt->len = len;
    pt->cap = cap;
    memcpy(pt->bytes, data, len);
    c->partial = pt;
    c->msg_start_ns = sp_now_ns(); /* its deadline runs from here (housekeeping) */
}

/* Append data[0, len) to the partial message. pt->len + len <= max_msg. */
static bool partial_append(sp_conn_t *c, const uint8_t *data, size_t len) {
    partial_t *pt = c->partial;
    if (pt->len + len > pt->cap) {
        size_t cap = pt->cap * 2;
        if (cap < pt->len + len) cap = pt->len + len;
        partial_t *np = realloc(pt, sizeof *np + cap);
        if (np == NULL) {
            sp_conn_close(c, SP_CLOSE_KICK, "kicked: out of memory for input");
            return false;
        }
        np->cap = cap;
        c->partial = pt = np;
    }
    memcpy(pt->bytes + pt->len, data, len);
    pt->len += len;
    return true;
}

/* Finish a message left incomplete by an earlier read with the start of
 * data. Returns the bytes of data it took, or -1 when the connection is
 * done with (closed, or all of data was taken and it is still incomplete). */
static long finish_partial(sp_conn_t *c, const uint8_t *data, size_t len) {
    partial_t *pt = c->partial;
    size_t used;
    int r = sp_rpc_scan(&pt->scan, data, len, c->net->conf->max_msg, &used);
    if (r < 0) {
        refuse(c, &pt->scan);
        return -1;
    }
    if (!partial_append(c, data, used)) return -1;
    if (r == 0) return -1; /* still incomplete: all of data was taken */
    pt = c->partial;
    deliver(c, pt->bytes, pt->len);
    free(c->partial); /* after delivery: the decoded objects pointed into it */
    c->partial = NULL;
    c->msg_start_ns = 0;
    return (long)used;
}

/* Check 0 (dispatch.h): may c's next message be framed now? If not, *wait_ns
 * says when, and c is in a run of being held, kicked once the run has lasted
 * conf->rate_kick_secs (then false too, with c closing). */
static bool admit(sp_conn_t *c, uint64_t *wait_ns) {
    sp_net_t *n = c->net;
    uint64_t now = sp_now_ns();
    uint64_t wait = n->cb.admit(n->ctx, c, now);
    if (wait == 0) return true;
    if (wait == SP_NET_ADMIT_PARK) { /* not a rate: no run of being held, no kick */
        *wait_ns = wait;
        return false;
    }
    if (c->over_rate_since == 0 || now - c->released_ns > SP_RATE_RUN_GAP_NS) c->over_rate_since = now;
    double kick = n->conf->rate_kick_secs;
    if (kick > 0 && (double)(now - c->over_rate_since) / 1e9 >= kick) {
        n->st->rate_kicks++;
        sp_conn_close(c, SP_CLOSE_KICK, "kicked: rate (held back by its command rate for %g s)", kick);
        return false;
    }
    *wait_ns = wait;
    return false;
}

/* Frame and deliver data[0, len). A message left incomplete by an earlier
 * read is finished first; every message whole in data is delivered in
 * place; an incomplete last one is copied with its framer state. Returns the
 * bytes used: len, or less when the rate refused the next message (data[ret,
 * len) starts at a message boundary and must wait *wait_ns), or len too when
 * the connection was closed. */
static size_t consume(sp_conn_t *c, const uint8_t *data, size_t len, uint64_t *wait_ns) {
    const size_t max = c->net->conf->max_msg;
    size_t off = 0, used;
    if (c->partial != NULL) {
        long took = finish_partial(c, data, len);
        if (took < 0) return len;
        off = (size_t)took;
    }
    sp_rpc_scan_t scan;
    sp_rpc_scan_init(&scan);
    while (off < len && !c->closing) {
        if (!admit(c, wait_ns)) return c->closing ? len : off;
        int r = sp_rpc_scan(&scan, data + off, len - off, max, &used);
        if (r < 0) {
            refuse(c, &scan);
            return len;
        }
        if (r == 0) {
            partial_start(c, &scan, data + off, len - off);
            return len;
        }
        deliver(c, data + off, used);
        off += used;
    }
    return len;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_resume(uv_timer_t *t);

/* A WebSocket message ended: it must not end inside a MessagePack message. */
static void ws_message_end(sp_conn_t *c) {
    if (c->closing || c->partial == NULL) return;
    refuse_and_close(c, SP_RPCERR_PARSE_ERROR, "parse error: a WebSocket message ended inside a MessagePack message",
                     "kicked: truncated MessagePack message");
}

/* Hold c (state "held", net.h) for wait_ns: stop reading, resume later.
 * Its unframed bytes are already in c->held_bytes. */
static void hold(sp_conn_t *c, uint64_t wait_ns) {
    if (!c->resume_init) {
        uv_timer_init(c->net->loop, &c->resume);
        c->resume.data = c;
        c->resume_init = true;
        sp_conn_retain(c); /* the timer's, until its close callback */
    }
    if (!c->held) {
        if (c->transport == SP_TRANSPORT_TCP) uv_read_stop((uv_stream_t *)&c->tcp);
        else if (c->wsi) lws_rx_flow_control(c->wsi, 0);
        c->held = true;
    }
    if (wait_ns == SP_NET_ADMIT_PARK) { /* until sp_conn_unpark() */
        uv_timer_stop(&c->resume);
        return;
    }
    /* libuv timers have millisecond resolution: round up, so the token is
     * due when it fires (at most one token early is impossible). */
    uint64_t ms = (wait_ns + 999999u) / 1000000u;
    uv_timer_start(&c->resume, on_resume, ms ? ms : 1, 0);
}

/* A token is due for a held connection: frame its held bytes as far as its
 * rate allows; once they are all used, read the socket again. */
static void on_resume(uv_timer_t *t) {
    sp_conn_t *c = (sp_conn_t *)t->data;
    if (c->closing || c->read_stopped || c->held_bytes == NULL) return;
    held_t *h = c->held_bytes;
    c->released_ns = sp_now_ns();
    uint64_t wait = 0;
    c->ws_from_held = true;
    size_t used = consume(c, h->bytes + h->off, h->len - h->off, &wait);
    c->ws_from_held = false;
    if (c->closing) return;
    if (used < h->len - h->off) {
        h->off += used;
        hold(c, wait);
        return;
    }
    free(h); /* after consume: what it delivered was decoded in place */
    c->held_bytes = NULL;
    c->held = false;
    if (c->transport == SP_TRANSPORT_WS) {
        if (c->ws_final_pending) ws_message_end(c);
        c->ws_final_pending = false;
        if (!c->closing && c->wsi) lws_rx_flow_control(c->wsi, 1);
        return;
    }
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r < 0) sp_conn_close(c, SP_CLOSE_PEER, "read error: %s", uv_strerror(r));
}

void sp_conn_unpark(sp_conn_t *c) {
    /* From the next timer phase, never from inside the caller's stack (it
     * may be this connection's own callback): on_resume asks admit again. */
    if (c->held && !c->closing && c->resume_init) uv_timer_start(&c->resume, on_resume, 0, 0);
}

/* Held by its rate: keep data[0, len), unframed, for later (appended to
 * what is held already, for WebSocket bytes lws hands over while held). */
static void keep_held(sp_conn_t *c, const uint8_t *data, size_t len, uint64_t wait) {
    held_t *old = c->held_bytes;
    size_t have = old ? old->len - old->off : 0;
    held_t *h = malloc(sizeof *h + have + len);
    if (h == NULL) {
        sp_conn_close(c, SP_CLOSE_KICK, "kicked: out of memory for input");
        return;
    }
    h->off = 0;
    h->len = have + len;
    if (old) memcpy(h->bytes, old->bytes + old->off, have);
    memcpy(h->bytes + have, data, len);
    free(old);
    c->held_bytes = h;
    if (wait) hold(c, wait);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    sp_conn_t *c = (sp_conn_t *)s->data;
    if (buf->base == g_rbuf) g_rbuf_busy = false;
    if (nread == 0) return;
    if (nread < 0) {
        if (nread == UV_EOF) sp_conn_close(c, SP_CLOSE_PEER, "closed");
        else sp_conn_close(c, SP_CLOSE_PEER, "read error: %s", uv_strerror((int)nread));
        return;
    }
    if (c->closing) return;
    uint64_t wait = 0;
    size_t len = (size_t)nread;
    size_t used = consume(c, (const uint8_t *)buf->base, len, &wait);
    if (c->closing || used == len) return;
    keep_held(c, (const uint8_t *)buf->base + used, len - used, wait);
}

/* ---------------------------------------------------------------- accept */

/* c->peer ("ip:port") and key, the address as 16 bytes (addr slot key),
 * from the peer address ss (NULL: unknown). */
static void peer_name(sp_conn_t *c, const struct sockaddr_storage *ssp, uint8_t key[16]) {
    snprintf(c->peer, sizeof c->peer, "?");
    memset(key, 0, 16);
    if (ssp == NULL) return;
    struct sockaddr_storage ss = *ssp;
    char ip[48] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &a->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        memcpy(key, &a->sin6_addr, 16);
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, port);
}

static bool conn_opened(sp_net_t *n, sp_conn_t *c, const uint8_t key[16]);

static void on_connection(uv_stream_t *server, int status) {
    sp_net_t *n = (sp_net_t *)server->data;
    if (status < 0) {
        SP_LOGW("accept failed: %s", uv_strerror(status));
        return;
    }
    sp_conn_t *c = n->cb.alloc(n->ctx);
    if (c == NULL) {
        SP_LOGE("out of memory accepting a client");
        return;
    }
    uv_tcp_init(n->loop, &c->tcp);
    c->tcp.data = c;
    c->net = n;
    c->refs = 1; /* the handle's */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    uint8_t key[16];
    peer_name(c, uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0 ? &ss : NULL, key);
    if (!conn_opened(n, c, key)) return;
    uv_tcp_nodelay(&c->tcp, 1);
    if (n->conf->sndbuf > 0) {
        /* What the kernel holds for a client that does not read is out of
         * the output limits' sight; a fixed send buffer bounds it (and
         * stops autotuning). Best effort: a refusal leaves the kernel's. */
        int v = (int)n->conf->sndbuf;
        (void)uv_send_buffer_size((uv_handle_t *)&c->tcp, &v);
    }
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r < 0) sp_conn_close(c, SP_CLOSE_PEER, "read error: %s", uv_strerror(r));
}

/* Link a new connection (either transport) and apply the connection limits.
 * False when it was refused (and is closing). */
static bool conn_opened(sp_net_t *n, sp_conn_t *c, const uint8_t key[16]) {
    c->last_rx_ns = c->opened_ns = sp_now_ns();
    /* Link first so sp_conn_close() can unlink uniformly. */
    c->next = n->conns;
    if (n->conns) n->conns->prev = c;
    n->conns = c;
    n->nconns++;
    n->st->clients_total++;
    c->addr = addr_acquire(n, key);
    if (c->addr == NULL) {
        sp_conn_close(c, SP_CLOSE_KICK, "kicked: out of memory accepting");
        return false;
    }
    char why[64];
    if (n->nconns > n->conf->max_clients) {
        snprintf(why, sizeof why, "kicked: max clients (%d) reached", n->conf->max_clients);
        refuse_and_close(c, SP_RPCERR_LIMIT, "server full: too many clients", why);
        return false;
    }
    if (c->addr->n > n->conf->max_per_address) {
        snprintf(why, sizeof why, "kicked: max per address (%d) reached", n->conf->max_per_address);
        refuse_and_close(c, SP_RPCERR_LIMIT, "too many connections from your address", why);
        return false;
    }
    SP_LOGI("client %u %s connected%s (%d clients)", c->log_id, c->peer,
            c->transport == SP_TRANSPORT_WS ? " over WebSocket" : "", n->nconns);
    return true;
}

/* ---------------------------------------------------------------- server */

void sp_net_init(sp_net_t *n, uv_loop_t *loop, const sp_dconf_t *conf, sp_dstats_t *st, const sp_net_cb_t *cb,
                 void *ctx) {
    memset(n, 0, sizeof *n);
    n->loop = loop;
    n->conf = conf;
    n->st = st;
    n->cb = *cb;
    n->ctx = ctx;
    msgpack_sbuffer_init(&n->sbuf);
    msgpack_packer_init(&n->pk, &n->sbuf, msgpack_sbuffer_write);
}

void sp_net_destroy(sp_net_t *n) {
    msgpack_sbuffer_destroy(&n->sbuf);
    /* Every slot went with its last connection (sp_net_close_all ran); any
     * left belong to a daemon that never closed them. */
    for (size_t i = 0; n->addr_buckets && i <= n->addr_mask; i++) {
        sp_addr_slot_t *s = n->addr_buckets[i];
        while (s) {
            sp_addr_slot_t *next = s->next;
            free(s);
            s = next;
        }
    }
    free(n->addr_buckets);
    n->addr_buckets = NULL;
}

int sp_listen_tcp(uv_loop_t *loop, uv_tcp_t *server, const char *bind, int port, int backlog, uv_connection_cb cb) {
    struct sockaddr_storage addr;
    int r = strchr(bind, ':') != NULL ? uv_ip6_addr(bind, port, (struct sockaddr_in6 *)&addr)
                                      : uv_ip4_addr(bind, port, (struct sockaddr_in *)&addr);
    if (r < 0) return r;
    uv_tcp_init(loop, server);
    r = uv_tcp_bind(server, (const struct sockaddr *)&addr, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)server, backlog, cb);
    if (r < 0) uv_close((uv_handle_t *)server, NULL);
    return r;
}

static int write_port_file(const char *path, int port) {
    /* Written atomically (temp + rename) so a reader never sees half. */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        SP_LOGE("cannot write --port-file %s: %s", path, strerror(errno));
        return SP_EPERM;
    }
    return 0;
}

int sp_net_listen(sp_net_t *n, int *port_out) {
    const sp_dconf_t *conf = n->conf;
    struct sockaddr_storage probe;
    if ((strchr(conf->bind, ':') ? uv_ip6_addr(conf->bind, 0, (struct sockaddr_in6 *)&probe)
                                 : uv_ip4_addr(conf->bind, 0, (struct sockaddr_in *)&probe)) < 0) {
        SP_LOGE("invalid --bind address '%s'", conf->bind);
        return SP_EINVAL;
    }
    /* About one bucket per client at --max-clients (a power of two). */
    size_t nb = 64;
    while (nb < (size_t)conf->max_clients && nb < (1u << 20)) nb <<= 1;
    n->addr_buckets = calloc(nb, sizeof *n->addr_buckets);
    if (n->addr_buckets == NULL) {
        SP_LOGE("out of memory for the per-address table");
        return SP_ENOMEM;
    }
    n->addr_mask = nb - 1;
    int r = sp_listen_tcp(n->loop, &n->server, conf->bind, conf->port, 511, on_connection);
    if (r < 0) {
        SP_LOGE("cannot listen on %s:%d: %s", conf->bind, conf->port, uv_strerror(r));
        return SP_EIO;
    }
    n->server.data = n;
    struct sockaddr_storage bound;
    int bl = sizeof bound;
    int port = conf->port;
    if (uv_tcp_getsockname(&n->server, (struct sockaddr *)&bound, &bl) == 0) {
        port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    }
    *port_out = port;
    n->listening = true;
    SP_LOGI("listening on %s port %d", conf->bind, port);
    return conf->port_file ? write_port_file(conf->port_file, port) : 0;
}

void sp_net_stop_accepting(sp_net_t *n) {
    if (!n->listening) return;
    n->listening = false;
    uv_close((uv_handle_t *)&n->server, NULL);
    SP_LOGI("stopped accepting connections");
}

void sp_net_housekeeping(sp_net_t *n, uint64_t now) {
    const sp_dconf_t *conf = n->conf;
    sp_conn_t *c = n->conns;
    while (c) {
        sp_conn_t *next = c->next; /* c may be unlinked below */
        double idle = (double)(now - c->last_rx_ns) / 1e9;
        if (c->partial != NULL && (double)(now - c->msg_start_ns) / 1e9 >= conf->request_timeout_secs) {
            sp_conn_close(c, SP_CLOSE_TIMEOUT, "timed out: slow request (a message unfinished after %g s)",
                          conf->request_timeout_secs);
        } else if (idle >= conf->idle_timeout_secs) {
            sp_conn_close(c, SP_CLOSE_TIMEOUT, "timed out");
        } else if (c->over_soft_since_ns != 0 &&
                   (double)(now - c->over_soft_since_ns) / 1e9 >= conf->obuf_soft_secs) {
            sp_conn_close(c, SP_CLOSE_KICK, "kicked: output buffer over soft limit (%zu bytes) for %.0f s",
                          c->obuf_bytes, conf->obuf_soft_secs);
        } else if (idle >= conf->idle_ping_secs && !c->ping_sent) {
            /* Server ping: a notification the client need not answer; any
             * complete message from the client (a ping request) resets the
             * idle clock. */
            if (sp_rpc_pack_ping_notify(&n->pk) == 0) sp_conn_send_sbuf(c, &n->sbuf);
            else msgpack_sbuffer_clear(&n->sbuf);
            c->ping_sent = true;
        }
        c = next;
    }
}

void sp_net_stop_reading(sp_net_t *n) {
    for (sp_conn_t *c = n->conns; c; c = c->next) {
        if (c->transport == SP_TRANSPORT_TCP) uv_read_stop((uv_stream_t *)&c->tcp);
        else if (c->wsi) lws_rx_flow_control(c->wsi, 0);
        if (c->resume_init) uv_timer_stop(&c->resume);
        c->read_stopped = true;
    }
}

bool sp_net_output_pending(const sp_net_t *n) {
    for (const sp_conn_t *c = n->conns; c; c = c->next)
        if (c->obuf_bytes > 0) return true;
    return false;
}

/* ---------------------------------------------------------------- WebSocket */

sp_conn_t *sp_net_ws_open(sp_net_t *n, struct lws *wsi, int fd) {
    sp_conn_t *c = n->cb.alloc(n->ctx);
    if (c == NULL) {
        SP_LOGE("out of memory accepting a WebSocket client");
        return NULL;
    }
    c->transport = SP_TRANSPORT_WS;
    c->wsi = wsi;
    c->net = n;
    c->refs = 1; /* the lws connection's, until sp_net_ws_closed */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    uint8_t key[16];
    peer_name(c, getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 ? &ss : NULL, key);
    conn_opened(n, c, key); /* refused: closing, lws closes it once written */
    return c;
}

void sp_net_ws_rx(sp_conn_t *c, const void *data, size_t len, bool binary, bool first, bool final) {
    if (c->closing || c->read_stopped) return;
    if (!binary) {
        refuse_and_close(c, SP_RPCERR_PARSE_ERROR, "parse error: send MessagePack in binary WebSocket messages",
                         "kicked: WebSocket text message");
        return;
    }
    if (c->held_bytes != NULL) { /* lws had these already: keep them behind the held ones */
        keep_held(c, data, len, 0);
        if (final) c->ws_final_pending = true;
        return;
    }
    if (first) c->ws_msgs = 0;
    uint64_t wait = 0;
    size_t used = consume(c, data, len, &wait);
    if (c->closing) return;
    if (used < len) {
        c->ws_final_pending = final;
        keep_held(c, (const uint8_t *)data + used, len - used, wait);
        return;
    }
    if (final) ws_message_end(c);
}

int sp_net_ws_writable(sp_conn_t *c) {
    if (c->wsi == NULL) return -1;
    ws_out_t *m = c->wq_head;
    if (m != NULL) {
        /* One lws_write() per writable callback (lws's rule): the close
         * frame of a closing connection goes on the next one. */
        c->wq_head = m->next;
        if (c->wq_head == NULL) c->wq_tail = NULL;
        c->obuf_bytes -= m->len;
        if (c->obuf_bytes <= c->net->conf->obuf_soft) c->over_soft_since_ns = 0;
        /* lws_write() takes the whole message: what the socket refuses now
         * lws keeps, and it calls us writable again only once that went. */
        int r = lws_write(c->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_BINARY);
        bool failed = r < (int)m->len;
        free(m);
        if (failed) {
            sp_conn_close(c, SP_CLOSE_PEER, "write error");
            return -1;
        }
        if (c->wq_head || c->closing) lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->closing) {
        enum lws_close_status st = c->close_kind == SP_CLOSE_KICK       ? LWS_CLOSE_STATUS_POLICY_VIOLATION
                                   : c->close_kind == SP_CLOSE_SHUTDOWN ? LWS_CLOSE_STATUS_GOINGAWAY
                                                                        : LWS_CLOSE_STATUS_NORMAL;
        /* The reason is offered for the close frame, but lws 4.1 takes a
         * -1 from the writable callback for a failed write and closes the
         * socket without one: clients see an abnormal close (1006) right
         * after the error notification, which is what carries the reason. */
        size_t rl = strlen(c->close_reason);
        lws_close_reason(c->wsi, st, (unsigned char *)c->close_reason, rl > 120 ? 120 : rl);
        return -1;
    }
    return 0;
}

void sp_net_ws_closed(sp_conn_t *c) {
    c->wsi = NULL;
    if (!c->closing) sp_conn_close(c, SP_CLOSE_PEER, "closed");
    sp_conn_release(c); /* the lws connection's */
}
