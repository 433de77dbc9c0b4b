/* rpc.c: MessagePack-RPC framing (bounded), classification, typed params,
 * packers. Wire format: see rpc.h and proto/PROTOCOL.md. */
#include "rpc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- names */

static const sp_method_info_t method_table[SP_METHOD__COUNT] = {
#define SP__METHOD_ROW(id, lc, nm, mn, mx, hello, admin, sig) \
    [SP_METHOD_##id] = {nm, (mn), (mx), (hello) != 0, (admin) != 0, sig},
    SP_PROTO_METHOD_MAP(SP__METHOD_ROW)
#undef SP__METHOD_ROW
};

const sp_method_info_t *sp_method_info(int id) {
    if (id < 0 || id >= SP_METHOD__COUNT) return NULL;
    return &method_table[id];
}

int sp_method_lookup(const char *name, size_t len) {
    if (name == NULL) return -1;
    for (int i = 0; i < SP_METHOD__COUNT; i++) {
        const char *m = method_table[i].name;
        if (strlen(m) == len && memcmp(m, name, len) == 0) return i;
    }
    return -1;
}

const char *sp_rpc_code_message(int code) {
    switch (code) {
#define SP__RPCERR_MSG(id, c, msg) \
    case c: return msg;
        SP_PROTO_ERROR_MAP(SP__RPCERR_MSG)
#undef SP__RPCERR_MSG
    default: return "unknown error";
    }
}

/* ---------------------------------------------------------------- framing */

/* Idle decoders keep a buffer only up to this size; larger ones are freed as
 * soon as everything was consumed (memory per idle client stays small). */
#define KEEP_BUF_BYTES 4096u
#define KEEP_SIZES 256u /* entries of the message-size FIFO an idle decoder keeps */
/* msgpack zone sizing. msgpack_zone_clear() frees every chunk but the one
 * the zone was made with, so a zone made with chunk C parses, after a clear,
 * any message whose objects fit in C without a single malloc. The chunk is
 * sized from the previous message (streams repeat their sizes: a client's
 * snapshots, a daemon's small commands): ZONE_PER_BYTE bytes of objects per
 * wire byte (24 B per one-byte element at worst; 16 covers typical snapshots,
 * and a bigger message only costs one extra chunk for itself), rounded up to
 * a power of two within [ZONE_CHUNK, ZONE_MAX]. A zone is remade when the
 * wanted size grew or fell to a quarter, so alternating sizes do not churn
 * and a connection that sent one big message does not keep its big chunk. */
#define ZONE_CHUNK 2048u
#define ZONE_MAX (1u << 20)
#define ZONE_PER_BYTE 16u

static size_t zone_want(size_t last_size) {
    size_t want = ZONE_CHUNK;
    while (want < ZONE_MAX && want / ZONE_PER_BYTE < last_size) want *= 2;
    return want;
}

int sp_rpc_decoder_init(sp_rpc_decoder_t *d, size_t max_message) {
    /* Element counts are kept in uint32 per container: limits past 4 GiB
     * could not be enforced exactly. */
    if (d == NULL || max_message > UINT32_MAX) return SP_EINVAL;
    memset(d, 0, sizeof *d);
    d->max_message = max_message ? max_message : SP_RPC_DEFAULT_MAX_MESSAGE;
    return 0;
}

void sp_rpc_decoder_destroy(sp_rpc_decoder_t *d) {
    if (d == NULL) return;
    free(d->buf);
    free(d->sizes);
    if (d->zone) msgpack_zone_free(d->zone);
    size_t max = d->max_message;
    memset(d, 0, sizeof *d);
    d->max_message = max;
}

size_t sp_rpc_decoder_buffered(const sp_rpc_decoder_t *d) { return d->len - d->start; }

/* Header size of a msgpack type byte (type byte + length/type fields), the
 * fixed payload of numbers, or 0 for 0xc1 (never used by msgpack). */
static unsigned header_size(unsigned char b, uint64_t *fixed_payload) {
    *fixed_payload = 0;
    if (b <= 0x7f || b >= 0xe0) return 1;          /* fixint */
    if (b <= 0xbf) return 1;                        /* fixmap, fixarray, fixstr */
    switch (b) {
    case 0xc0: case 0xc2: case 0xc3: return 1;      /* nil, false, true */
    case 0xc4: return 2;                            /* bin8 */
    case 0xc5: return 3;
    case 0xc6: return 5;
    case 0xc7: return 3;                            /* ext8: len8 + type */
    case 0xc8: return 4;
    case 0xc9: return 6;
    case 0xca: *fixed_payload = 4; return 1;        /* float32 */
    case 0xcb: *fixed_payload = 8; return 1;        /* float64 */
    case 0xcc: case 0xd0: *fixed_payload = 1; return 1;
    case 0xcd: case 0xd1: *fixed_payload = 2; return 1;
    case 0xce: case 0xd2: *fixed_payload = 4; return 1;
    case 0xcf: case 0xd3: *fixed_payload = 8; return 1;
    case 0xd4: *fixed_payload = 1; return 2;        /* fixext1: type + 1 */
    case 0xd5: *fixed_payload = 2; return 2;
    case 0xd6: *fixed_payload = 4; return 2;
    case 0xd7: *fixed_payload = 8; return 2;
    case 0xd8: *fixed_payload = 16; return 2;
    case 0xd9: return 2;                            /* str8 */
    case 0xda: return 3;
    case 0xdb: return 5;
    case 0xdc: return 3;                            /* array16 */
    case 0xdd: return 5;
    case 0xde: return 3;                            /* map16 */
    case 0xdf: return 5;
    default: return 0;                              /* 0xc1 */
    }
}

/* Payload bytes of 0xca..0xd3 (float32, float64, uint8-64, int8-64), as
 * header_size() gives them. */
static const unsigned char fixed_bytes[10] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};

static uint64_t be(const unsigned char *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

void sp_rpc_scan_init(sp_rpc_scan_t *s) { memset(s, 0, sizeof *s); }

bool sp_rpc_scan_idle(const sp_rpc_scan_t *s) { return s->msg_bytes == 0 && s->hdr_len == 0 && s->fail == 0; }

static int scan_fail(sp_rpc_scan_t *s, sp_rpc_scan_fail_t why) {
    s->fail = (uint8_t)why;
    return why == SP_RPC_SCAN_TOO_LARGE ? SP_EMSGSIZE : SP_EPROTO;
}

/* An item (leaf, empty container, or the last byte of a payload) finished:
 * close every container whose elements are all done. Returns true when the
 * top-level object, i.e. the message, is complete (and resets *s for the
 * next one). */
static bool item_done(sp_rpc_scan_t *s) {
    while (s->depth > 0 && s->remaining[s->depth - 1] == 0) s->depth--;
    if (s->depth != 0) return false;
    sp_rpc_scan_init(s);
    return true;
}

/* Declared payload bytes and child elements of a complete header h[0, hn). */
static void header_decode(const unsigned char *h, unsigned hn, uint64_t fixed, uint64_t *payload,
                          uint64_t *children, bool *container) {
    unsigned char b = h[0];
    *payload = fixed;
    *children = 0;
    *container = false;
    if (b >= 0x80 && b <= 0x8f) { *container = true; *children = 2u * (uint64_t)(b & 0x0f); }
    else if (b >= 0x90 && b <= 0x9f) { *container = true; *children = b & 0x0f; }
    else if (b >= 0xa0 && b <= 0xbf) *payload = b & 0x1f;
    else if (b == 0xc4 || b == 0xc5 || b == 0xc6 || b == 0xd9 || b == 0xda || b == 0xdb)
        *payload = be(h + 1, hn - 1);
    else if (b == 0xc7 || b == 0xc8 || b == 0xc9) *payload = be(h + 1, hn - 2); /* last byte: ext type */
    else if (b == 0xdc || b == 0xdd) { *container = true; *children = be(h + 1, hn - 1); }
    else if (b == 0xde || b == 0xdf) { *container = true; *children = 2u * be(h + 1, hn - 1); }
}

int sp_rpc_scan(sp_rpc_scan_t *s, const void *data, size_t len, size_t max_message, size_t *used) {
    const unsigned char *p = data;
    /* Element counts are kept in uint32 per container: a larger limit could
     * not be enforced exactly, so it is clamped. */
    const uint64_t max = max_message > UINT32_MAX ? UINT32_MAX : max_message;
    size_t i = 0;
    *used = 0;
    if (s->fail) return s->fail == SP_RPC_SCAN_TOO_LARGE ? SP_EMSGSIZE : SP_EPROTO;
    while (i < len) {
        if (s->skip > 0) { /* payload bytes of a str/bin/ext/number */
            uint64_t take = s->skip < (uint64_t)(len - i) ? s->skip : (uint64_t)(len - i);
            i += (size_t)take;
            s->skip -= take;
            s->msg_bytes += take;
            if (s->skip == 0 && item_done(s)) {
                *used = i;
                return 1;
            }
            continue;
        }
        if (s->hdr_len == 0 && s->depth > 0) {
            /* A run of such items (below) inside the innermost open
             * container, e.g. a snapshot's id and value lists: counted in
             * locals (stores through *s would be reloaded after every byte
             * read, as p may alias it), with the same per-item limit check,
             * and written back once. */
            uint32_t *remp = &s->remaining[s->depth - 1];
            uint32_t rem = *remp;
            uint64_t mb = s->msg_bytes, owed = s->owed;
            size_t j = i;
            while (rem > 0 && j < len) {
                unsigned char b = p[j];
                unsigned w = 0;
                if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) w = 1;
                else if (b >= 0xca && b <= 0xd3) w = 1u + fixed_bytes[b - 0xca];
                if (w == 0 || w > len - j) break;
                rem--;
                owed--;
                mb += w;
                j += w;
                if (mb + owed > max) {
                    *remp = rem;
                    s->owed = owed;
                    s->msg_bytes = mb;
                    *used = j;
                    return scan_fail(s, SP_RPC_SCAN_TOO_LARGE);
                }
            }
            if (j > i) {
                *remp = rem;
                s->owed = owed;
                s->msg_bytes = mb;
                i = j;
                if (rem == 0 && item_done(s)) {
                    *used = i;
                    return 1;
                }
                continue;
            }
        }
        if (s->hdr_len == 0) {
            /* Items whose size is told by their first byte (fixints, nil,
             * booleans, float32/64, [u]int8-64), when all of it is here:
             * most of a snapshot's records, so they skip the header and
             * payload machinery below, with the same counting and the same
             * limit check as that path makes for them. */
            unsigned char b = p[i];
            unsigned whole = 0; /* bytes of the whole item when its size is its first byte's */
            if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) whole = 1;
            else if (b >= 0xca && b <= 0xd3) whole = 1u + fixed_bytes[b - 0xca];
            if (whole > 0 && whole <= len - i) {
                if (s->depth > 0) {
                    s->remaining[s->depth - 1]--;
                    s->owed--;
                }
                s->msg_bytes += whole;
                i += whole;
                if (s->msg_bytes + s->owed > max) {
                    *used = i;
                    return scan_fail(s, SP_RPC_SCAN_TOO_LARGE);
                }
                if (item_done(s)) {
                    *used = i;
                    return 1;
                }
                continue;
            }
        }
        uint64_t fixed = 0;
        if (s->hdr_len == 0) { /* first byte of an item */
            unsigned need = header_size(p[i], &fixed);
            if (need == 0) {
                *used = i;
                return scan_fail(s, SP_RPC_SCAN_BAD_BYTE);
            }
            s->hdr_need = (uint8_t)need;
            if (s->depth > 0) { /* it is one of the elements its container owes */
                s->remaining[s->depth - 1]--;
                s->owed--;
            }
        }
        while (s->hdr_len < s->hdr_need && i < len) s->hdr[s->hdr_len++] = p[i++];
        if (s->hdr_len < s->hdr_need) {
            /* Partial header: bytes so far still count against the limit, and
             * an ext's declared length is judged before its type byte. */
            uint64_t low = s->msg_bytes + s->hdr_len + s->owed;
            unsigned char b = s->hdr[0];
            if ((b == 0xc7 || b == 0xc8 || b == 0xc9) && s->hdr_len == s->hdr_need - 1u)
                low = s->msg_bytes + s->hdr_need + be(s->hdr + 1, s->hdr_need - 2u) + s->owed;
            if (low > max) {
                *used = i;
                return scan_fail(s, SP_RPC_SCAN_TOO_LARGE);
            }
            break;
        }
        unsigned hn = s->hdr_need;
        s->msg_bytes += hn;
        s->hdr_len = 0;
        (void)header_size(s->hdr[0], &fixed);
        uint64_t payload, children;
        bool container;
        header_decode(s->hdr, hn, fixed, &payload, &children, &container);
        /* Every element still owed costs at least one byte, so this is a lower
         * bound of the finished message: refuse now, before buffering more. */
        if (s->msg_bytes + payload + children + s->owed > max) {
            *used = i;
            return scan_fail(s, SP_RPC_SCAN_TOO_LARGE);
        }
        /* Empty containers count as a level too (the daemon's MAX_DEPTH rule:
         * PROTOCOL.md), so depth is judged before the emptiness. */
        if (container && s->depth >= SP_RPC_MAX_DEPTH) {
            *used = i;
            return scan_fail(s, SP_RPC_SCAN_TOO_DEEP);
        }
        if (container && children > 0) {
            /* children <= max <= UINT32_MAX here (checked just above). */
            s->remaining[s->depth++] = (uint32_t)children;
            s->owed += children;
            continue;
        }
        if (payload > 0) {
            s->skip = payload;
            continue;
        }
        if (item_done(s)) {
            *used = i;
            return 1;
        }
    }
    *used = len;
    return 0;
}

/* Walk data[0, n) through the framer. Returns 0 or a stream error;
 * *complete_end is the offset just past the last message completed in this
 * chunk (0 when none), so the caller keeps exactly the good bytes. */
/* Remember the size of a message just framed (d->sizes: a FIFO of the
 * complete messages in [start, ready), so next_lazy() knows where each ends
 * without walking it again). Returns 0 or SP_ENOMEM. */
static int size_push(sp_rpc_decoder_t *d, size_t size) {
    if (d->sizes_head + d->sizes_n == d->sizes_cap) {
        if (d->sizes_head > 0) { /* the consumed front makes room */
            memmove(d->sizes, d->sizes + d->sizes_head, d->sizes_n * sizeof *d->sizes);
            d->sizes_head = 0;
        } else {
            size_t cap = d->sizes_cap ? 2 * d->sizes_cap : 16;
            uint32_t *ns = realloc(d->sizes, cap * sizeof *ns);
            if (ns == NULL) return SP_ENOMEM;
            d->sizes = ns;
            d->sizes_cap = cap;
        }
    }
    d->sizes[d->sizes_head + d->sizes_n++] = (uint32_t)size; /* <= max_message <= UINT32_MAX */
    return 0;
}

/* Walk data[0, n) through the framer. Returns 0 or a stream error;
 * *complete_end is the offset just past the last message completed in this
 * chunk (0 when none), so the caller keeps exactly the good bytes. Each
 * completed message's size goes to d->sizes (the first one includes the
 * bytes of it buffered by earlier feeds). */
static int scan(sp_rpc_decoder_t *d, const unsigned char *p, size_t n, size_t *complete_end) {
    size_t i = 0, carried = d->len - d->ready;
    *complete_end = 0;
    while (i < n) {
        size_t used;
        int r = sp_rpc_scan(&d->scan, p + i, n - i, d->max_message, &used);
        if (r < 0) return r;
        i += used;
        if (r == 0) break;
        int rc = size_push(d, carried + i - *complete_end);
        if (rc) return rc;
        carried = 0;
        d->messages++;
        *complete_end = i;
    }
    return 0;
}

/* Make room for `extra` more bytes after compacting consumed ones away. */
static int reserve(sp_rpc_decoder_t *d, size_t extra) {
    if (d->start > 0) {
        size_t keep = d->len - d->start;
        if (keep) memmove(d->buf, d->buf + d->start, keep);
        d->len = keep;
        d->ready -= d->start;
        d->start = 0;
    }
    size_t need;
    if (sp_size_add(d->len, extra, &need) != 0) return SP_ENOMEM;
    if (need <= d->cap) return 0;
    size_t cap = d->cap ? d->cap : 512;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { cap = need; break; }
        cap *= 2;
    }
    char *nb = realloc(d->buf, cap);
    if (nb == NULL) return SP_ENOMEM;
    d->buf = nb;
    d->cap = cap;
    return 0;
}

int sp_rpc_decoder_feed(sp_rpc_decoder_t *d, const void *data, size_t len) {
    if (d == NULL || (data == NULL && len > 0)) return SP_EINVAL;
    if (d->err) return d->err;
    /* Everything consumed: start afresh, and give a big buffer back. */
    if (d->start == d->len) {
        d->start = d->len = d->ready = 0;
        d->sizes_head = 0; /* sizes_n is 0: every message was taken */
        if (d->sizes_cap > KEEP_SIZES) {
            free(d->sizes);
            d->sizes = NULL;
            d->sizes_cap = 0;
        }
        if (d->cap > KEEP_BUF_BYTES) {
            free(d->buf);
            d->buf = NULL;
            d->cap = 0;
        }
    }
    if (len == 0) return 0;
    size_t good_end = 0, sizes_before = d->sizes_n;
    int rc = scan(d, data, len, &good_end);
    /* Keep every byte on success; on error only the messages completed before
     * the bad one (the bad one's earlier bytes are dropped below). */
    size_t keep = rc == 0 ? len : good_end;
    size_t old_ready_rel = 0;
    if (keep > 0) {
        int r2 = reserve(d, keep);
        if (r2 != 0) {
            d->sizes_n = sizes_before; /* this chunk's messages are not kept */
            d->err = r2;
            return r2;
        }
        memcpy(d->buf + d->len, data, keep);
        old_ready_rel = d->len;
        d->len += keep;
    }
    if (good_end > 0) d->ready = old_ready_rel + good_end;
    if (rc != 0) {
        d->len = d->ready; /* drop the incomplete bad message */
        d->err = rc; /* d->scan keeps the reason (scan.fail) */
    }
    return rc;
}

/* msgpack-c objects for the message at p[0, n) (complete and size-checked)
 * into d->obj, in the zone (see zone_want); *off = its bytes. */
static int unpack_msg(sp_rpc_decoder_t *d, const char *p, size_t n, size_t *off) {
    /* The previous message's objects are dead now: reuse its zone when its
     * chunk suits the stream's message size. */
    size_t want = zone_want(d->last_size);
    if (d->zone != NULL) {
        if (d->zone_chunk < want || d->zone_chunk / 4 >= want) {
            msgpack_zone_free(d->zone);
            d->zone = NULL;
        } else {
            msgpack_zone_clear(d->zone);
        }
    }
    if (d->zone == NULL) {
        d->zone = msgpack_zone_new(want);
        if (d->zone == NULL) return SP_ENOMEM;
        d->zone_chunk = want;
    }
    *off = 0;
    msgpack_unpack_return r = msgpack_unpack(p, n, off, d->zone, &d->obj);
    if (r != MSGPACK_UNPACK_SUCCESS && r != MSGPACK_UNPACK_EXTRA_BYTES) {
        /* The scanner accepted these bytes, so only allocation can fail here.
         * Drop the zone (a fresh one is made on retry). */
        msgpack_zone_free(d->zone);
        d->zone = NULL;
        return r == MSGPACK_UNPACK_NOMEM_ERROR ? SP_ENOMEM : SP_EPROTO;
    }
    d->last_size = *off;
    return 0;
}

/* The message at start was taken. */
static void size_pop(sp_rpc_decoder_t *d) {
    d->sizes_head++;
    d->sizes_n--;
}

int sp_rpc_decoder_next(sp_rpc_decoder_t *d, sp_rpc_msg_t *out) {
    if (d == NULL || out == NULL) return SP_EINVAL;
    if (d->start == d->ready) return d->err; /* 0 (need bytes) or the sticky error */
    const char *wire = d->buf + d->start;
    size_t size = d->sizes[d->sizes_head], off;
    int rc = unpack_msg(d, wire, size, &off); /* off == size: the framer and msgpack-c agree */
    if (rc) return rc;
    size_pop(d);
    d->start += size;
    (void)sp_rpc_classify(&d->obj, out);
    out->wire = wire;
    out->wire_size = size;
    return 1;
}

int sp_rpc_decoder_next_lazy(sp_rpc_decoder_t *d, sp_rpc_msg_t *out) {
    if (d == NULL || out == NULL) return SP_EINVAL;
    if (d->start == d->ready) return d->err;
    const unsigned char *p = (const unsigned char *)d->buf + d->start;
    const unsigned char *end = p + d->sizes[d->sizes_head]; /* this message's bytes */
    /* [2, method, params] as every encoder writes it: fixarray 3, fixint 2,
     * a fixstr or str8 method, an array. Anything else: the full path. */
    if (end - p < 4 || p[0] != 0x93 || p[1] != 0x02) return sp_rpc_decoder_next(d, out);
    const unsigned char *q = p + 2;
    size_t mlen;
    if (*q >= 0xa0 && *q <= 0xbf) {
        mlen = *q++ & 0x1fu;
    } else if (*q == 0xd9 && end - q >= 2) {
        mlen = q[1];
        q += 2;
    } else {
        return sp_rpc_decoder_next(d, out);
    }
    if ((size_t)(end - q) <= mlen) return sp_rpc_decoder_next(d, out);
    const unsigned char *meth = q;
    q += mlen;
    if (!((*q >= 0x90 && *q <= 0x9f) || *q == 0xdc || *q == 0xdd)) return sp_rpc_decoder_next(d, out);
    size_t plen = (size_t)(end - q); /* the params end the message */
    memset(out, 0, sizeof *out);
    out->type = SP_RPC_NOTIFY;
    out->method = (const char *)meth;
    out->method_len = mlen;
    out->method_id = sp_method_lookup(out->method, mlen);
    out->wire = (const char *)p;
    out->wire_size = (size_t)(q + plen - p);
    out->params_bytes = q;
    out->params_len = plen;
    out->lazy = true;
    size_pop(d);
    d->start += out->wire_size;
    return 1;
}

int sp_rpc_decoder_unpack(sp_rpc_decoder_t *d, sp_rpc_msg_t *m) {
    if (d == NULL || m == NULL) return SP_EINVAL;
    if (!m->lazy) return 0;
    const char *wire = m->wire;
    size_t size = m->wire_size, off;
    int rc = unpack_msg(d, wire, size, &off);
    if (rc) return rc;
    (void)sp_rpc_classify(&d->obj, m);
    m->wire = wire;
    m->wire_size = off;
    return 0;
}

/* ---------------------------------------------------------------- skip */

/* Skip one msgpack object of any type at *pp, containers nested at most
 * depth_left deep (an array of arrays: 2). False on a byte that starts no
 * type, or truncation; *pp moves only on success. */
static bool skip_object(const unsigned char **pp, const unsigned char *end, unsigned depth_left) {
    const unsigned char *p = *pp;
    if (p >= end) return false;
    /* The framer's own reading of a header (header_size, header_decode). */
    uint64_t fixed = 0, payload, kids;
    bool container;
    unsigned hn = header_size(*p, &fixed);
    if (hn == 0 || (size_t)(end - p) < hn) return false;
    header_decode(p, hn, fixed, &payload, &kids, &container);
    if (container && depth_left == 0) return false; /* a container (even an empty one) is a level */
    p += hn;
    if ((uint64_t)(end - p) < payload) return false;
    p += payload;
    if (kids > (uint64_t)(end - p)) return false; /* each element takes a byte at least */
    for (uint64_t k = 0; k < kids; k++)
        if (!skip_object(&p, end, depth_left - 1)) return false;
    *pp = p;
    return true;
}

size_t sp_rpc_object_size(const void *data, size_t len) {
    const unsigned char *p = data;
    if (p == NULL) return 0;
    return skip_object(&p, p + len, SP_RPC_MAX_DEPTH) ? (size_t)(p - (const unsigned char *)data) : 0;
}

/* ---------------------------------------------------------------- classify */

static bool get_u32(const msgpack_object *o, uint32_t *v) {
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX) return false;
    *v = (uint32_t)o->via.u64;
    return true;
}

static int invalid(sp_rpc_msg_t *m, const char *reason) {
    m->type = SP_RPC_INVALID;
    m->rpc_code = SP_RPCERR_INVALID_REQUEST;
    m->reason = reason;
    return SP_EPROTO;
}

int sp_rpc_classify(const msgpack_object *o, sp_rpc_msg_t *m) {
    memset(m, 0, sizeof *m);
    m->method_id = -1;
    m->root = o;
    if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY) return invalid(m, "message must be an array");
    uint32_t n = o->via.array.size;
    const msgpack_object *a = o->via.array.ptr;
    if (n == 0) return invalid(m, "message must not be empty");
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > 2)
        return invalid(m, "message type must be 0, 1 or 2");
    unsigned t = (unsigned)a[0].via.u64;
    if (t == SP_RPC_NOTIFY) {
        if (n != 3) return invalid(m, "notification must be [2, method, params]");
    } else {
        /* Recover the msgid first so even a malformed request gets an answer. */
        if (n >= 2 && get_u32(&a[1], &m->msgid)) m->has_msgid = true;
        if (n != 4)
            return invalid(m, t == SP_RPC_REQUEST ? "request must be [0, msgid, method, params]"
                                                  : "response must be [1, msgid, error, result]");
        if (!m->has_msgid) return invalid(m, "msgid must be an unsigned 32-bit integer");
    }
    if (t == SP_RPC_RESPONSE) {
        m->type = SP_RPC_RESPONSE;
        m->error = &a[2];
        m->result = &a[3];
        return 0;
    }
    const msgpack_object *meth = &a[t == SP_RPC_REQUEST ? 2 : 1];
    const msgpack_object *params = &a[t == SP_RPC_REQUEST ? 3 : 2];
    if (meth->type != MSGPACK_OBJECT_STR) return invalid(m, "method must be a string");
    if (params->type != MSGPACK_OBJECT_ARRAY) return invalid(m, "params must be an array");
    m->type = (sp_rpc_type_t)t;
    m->method = meth->via.str.ptr;
    m->method_len = meth->via.str.size;
    m->method_id = sp_method_lookup(m->method, m->method_len);
    m->params = params;
    return 0;
}

/* ---------------------------------------------------------------- params */

int sp_rpc_error_set(sp_rpc_error_t *err, int code, const char *fmt, ...) {
    if (err == NULL) return SP_EINVAL;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    if (w < 0) snprintf(err->message, sizeof err->message, "%s", sp_rpc_code_message(code));
    return SP_EINVAL;
}

const char *sp_rpc_type_name(const msgpack_object *o) {
    if (o == NULL) return "nothing";
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_EXT: return "ext";
    default: return "unknown";
    }
}

uint32_t sp_rpc_param_count(const msgpack_object *params) {
    if (params == NULL || params->type != MSGPACK_OBJECT_ARRAY) return 0;
    return params->via.array.size;
}

static const msgpack_object *param_at(const msgpack_object *params, uint32_t i) {
    if (i >= sp_rpc_param_count(params)) return NULL;
    return &params->via.array.ptr[i];
}

bool sp_rpc_param_is_nil(const msgpack_object *params, uint32_t i) {
    const msgpack_object *o = param_at(params, i);
    return o == NULL || o->type == MSGPACK_OBJECT_NIL;
}

static int type_error(sp_rpc_error_t *err, uint32_t i, const char *want, const msgpack_object *got) {
    if (got == NULL) return sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "param %u: missing (expected %s)", i, want);
    return sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "param %u: expected %s, got %s", i, want,
                            sp_rpc_type_name(got));
}

/* Number of an object: ints and floats; false for anything else. */
static bool as_number(const msgpack_object *o, double *v) {
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *v = (double)o->via.u64; return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *v = (double)o->via.i64; return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *v = o->via.f64; return true;
    default: return false;
    }
}

int sp_rpc_param_int(const msgpack_object *params, uint32_t i, int64_t *out, sp_rpc_error_t *err) {
    const msgpack_object *o = param_at(params, i);
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) { *out = o->via.i64; return 0; }
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "param %u: integer out of int64 range", i);
        *out = (int64_t)o->via.u64;
        return 0;
    }
    return type_error(err, i, "int", o);
}

int sp_rpc_param_uint(const msgpack_object *params, uint32_t i, uint64_t *out, sp_rpc_error_t *err) {
    const msgpack_object *o = param_at(params, i);
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) { *out = o->via.u64; return 0; }
    return type_error(err, i, "unsigned int", o);
}

int sp_rpc_param_float(const msgpack_object *params, uint32_t i, double *out, sp_rpc_error_t *err) {
    const msgpack_object *o = param_at(params, i);
    double v;
    if (o == NULL || !as_number(o, &v)) return type_error(err, i, "number", o);
    if (!isfinite(v)) return sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "param %u: number must be finite", i);
    *out = v;
    return 0;
}

int sp_rpc_param_bool(const msgpack_object *params, uint32_t i, bool *out, sp_rpc_error_t *err) {
    const msgpack_object *o = param_at(params, i);
    if (o && o->type == MSGPACK_OBJECT_BOOLEAN) { *out = o->via.boolean; return 0; }
    return type_error(err, i, "bool", o);
}

int sp_rpc_param_str(const msgpack_object *params, uint32_t i, const char **ptr, size_t *len,
                     sp_rpc_error_t *err) {
    const msgpack_object *o = param_at(params, i);
    if (o && o->type == MSGPACK_OBJECT_STR) {
        *ptr = o->via.str.ptr;
        *len = o->via.str.size;
        return 0;
    }
    return type_error(err, i, "str", o);
}

int sp_rpc_param_vec3(const msgpack_object *params, uint32_t i, double out[3], sp_rpc_error_t *err) {
    const msgpack_object *o = param_at(params, i);
    static const char want[] = "vec3 [x, y, z] of numbers";
    if (o == NULL || o->type != MSGPACK_OBJECT_ARRAY) return type_error(err, i, want, o);
    if (o->via.array.size != 3)
        return sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "param %u: expected %s, got array of %u", i,
                                want, o->via.array.size);
    double v[3];
    for (int k = 0; k < 3; k++) {
        if (!as_number(&o->via.array.ptr[k], &v[k]))
            return sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "param %u: expected %s, element %d is %s", i,
                                    want, k, sp_rpc_type_name(&o->via.array.ptr[k]));
        if (!isfinite(v[k]))
            return sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "param %u: element %d must be finite", i, k);
    }
    memcpy(out, v, sizeof v);
    return 0;
}

/* Copy at most 40 bytes of a client string into a message, replacing
 * anything but printable ASCII (the reply must stay valid UTF-8). */
static void sanitize(char *dst, size_t cap, const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap && i < 40; i++)
        dst[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    dst[k] = '\0';
}

static const char *sig_type_name(char t) {
    switch (t) {
    case 'n': return "number";
    case 'i': return "int";
    case 'u': return "unsigned int";
    case 's': return "str";
    case 'b': return "bool";
    case 'v': return "vec3 [x, y, z] of numbers";
    default: return "?";
    }
}

int sp_rpc_check_params(const sp_rpc_msg_t *m, sp_rpc_error_t *err) {
    if (m == NULL || (m->type != SP_RPC_REQUEST && m->type != SP_RPC_NOTIFY))
        return sp_rpc_error_set(err, SP_RPCERR_INVALID_REQUEST, "%s", "not a request");
    const sp_method_info_t *mi = sp_method_info(m->method_id);
    if (mi == NULL) {
        char name[48];
        sanitize(name, sizeof name, m->method, m->method_len);
        return sp_rpc_error_set(err, SP_RPCERR_METHOD_NOT_FOUND, "method not found: %s", name);
    }
    uint32_t n = sp_rpc_param_count(m->params);
    if (n < mi->min_params || n > mi->max_params) {
        if (mi->min_params == mi->max_params)
            return sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "%s: expected %u params, got %u", mi->name,
                                    mi->min_params, n);
        return sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "%s: expected %u to %u params, got %u", mi->name,
                                mi->min_params, mi->max_params, n);
    }
    const char *sig = mi->signature;
    for (uint32_t i = 0; i < n && *sig; i++) {
        bool nil_ok = false;
        if (*sig == '?') { nil_ok = true; sig++; }
        char t = *sig++;
        if (nil_ok && sp_rpc_param_is_nil(m->params, i)) continue;
        int rc;
        union { int64_t i; uint64_t u; double f; bool b; double v[3]; } tmp;
        const char *sp;
        size_t sl;
        switch (t) {
        case 'n': rc = sp_rpc_param_float(m->params, i, &tmp.f, err); break;
        case 'i': rc = sp_rpc_param_int(m->params, i, &tmp.i, err); break;
        case 'u': rc = sp_rpc_param_uint(m->params, i, &tmp.u, err); break;
        case 's': rc = sp_rpc_param_str(m->params, i, &sp, &sl, err); break;
        case 'b': rc = sp_rpc_param_bool(m->params, i, &tmp.b, err); break;
        case 'v': rc = sp_rpc_param_vec3(m->params, i, tmp.v, err); break;
        default: return sp_rpc_error_set(err, SP_RPCERR_INTERNAL, "bad signature for %s", mi->name);
        }
        if (rc != 0) {
            if (nil_ok)
                sp_rpc_error_set(err, SP_RPCERR_INVALID_PARAMS, "param %u: expected %s or nil, got %s", i,
                                 sig_type_name(t), sp_rpc_type_name(param_at(m->params, i)));
            return rc;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- packers */

int sp_rpc_pack_cstr(msgpack_packer *pk, const char *s) {
    size_t n = s ? strlen(s) : 0;
    int r = msgpack_pack_str(pk, n);
    r |= msgpack_pack_str_body(pk, s ? s : "", n);
    return r ? SP_ENOMEM : 0;
}

int sp_rpc_pack_request_begin(msgpack_packer *pk, uint32_t msgid, const char *method, uint32_t nparams) {
    int r = msgpack_pack_array(pk, 4);
    r |= msgpack_pack_uint8(pk, 0);
    r |= msgpack_pack_uint32(pk, msgid);
    r |= sp_rpc_pack_cstr(pk, method);
    r |= msgpack_pack_array(pk, nparams);
    return r ? SP_ENOMEM : 0;
}

int sp_rpc_pack_response_ok_begin(msgpack_packer *pk, uint32_t msgid) {
    int r = msgpack_pack_array(pk, 4);
    r |= msgpack_pack_uint8(pk, 1);
    r |= msgpack_pack_uint32(pk, msgid);
    r |= msgpack_pack_nil(pk);
    return r ? SP_ENOMEM : 0;
}

int sp_rpc_pack_error_map(msgpack_packer *pk, int code, const char *message) {
    int r = msgpack_pack_map(pk, 2);
    r |= sp_rpc_pack_cstr(pk, "code");
    r |= msgpack_pack_int(pk, code);
    r |= sp_rpc_pack_cstr(pk, "message");
    r |= sp_rpc_pack_cstr(pk, message ? message : sp_rpc_code_message(code));
    return r ? SP_ENOMEM : 0;
}

int sp_rpc_pack_response_error(msgpack_packer *pk, uint32_t msgid, int code, const char *message) {
    int r = msgpack_pack_array(pk, 4);
    r |= msgpack_pack_uint8(pk, 1);
    r |= msgpack_pack_uint32(pk, msgid);
    r |= sp_rpc_pack_error_map(pk, code, message);
    r |= msgpack_pack_nil(pk);
    return r ? SP_ENOMEM : 0;
}

int sp_rpc_pack_notify_begin(msgpack_packer *pk, const char *method, uint32_t nparams) {
    int r = msgpack_pack_array(pk, 3);
    r |= msgpack_pack_uint8(pk, 2);
    r |= sp_rpc_pack_cstr(pk, method);
    r |= msgpack_pack_array(pk, nparams);
    return r ? SP_ENOMEM : 0;
}

const msgpack_object *sp_rpc_map_get(const msgpack_object *o, const char *key) {
    if (o == NULL || o->type != MSGPACK_OBJECT_MAP || key == NULL) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl && memcmp(k->via.str.ptr, key, kl) == 0)
            return &o->via.map.ptr[i].val;
    }
    return NULL;
}

int sp_rpc_parse_error(const msgpack_object *o, int64_t *code, const char **msg, size_t *msg_len) {
    const msgpack_object *c = sp_rpc_map_get(o, "code");
    const msgpack_object *m = sp_rpc_map_get(o, "message");
    if (c == NULL || m == NULL || m->type != MSGPACK_OBJECT_STR) return SP_EPROTO;
    if (c->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) *code = c->via.i64;
    else if (c->type == MSGPACK_OBJECT_POSITIVE_INTEGER && c->via.u64 <= (uint64_t)INT64_MAX)
        *code = (int64_t)c->via.u64;
    else return SP_EPROTO;
    *msg = m->via.str.ptr;
    *msg_len = m->via.str.size;
    return 0;
}

/* The decoder's constants are the .def's limits. */
#define SP__LIMIT_VALUE(id, value, what) enum { SP__LIMIT_##id = (value) };
SP_PROTO_LIMIT_MAP(SP__LIMIT_VALUE)
#undef SP__LIMIT_VALUE
_Static_assert(SP_RPC_DEFAULT_MAX_MESSAGE == SP__LIMIT_MAX_MESSAGE_BYTES, "rpc.h and spacesim_proto.def disagree");
_Static_assert(SP_RPC_CLIENT_MAX_MESSAGE == SP__LIMIT_MAX_SERVER_MESSAGE_BYTES, "rpc.h and spacesim_proto.def disagree");
_Static_assert(SP_RPC_MAX_DEPTH == SP__LIMIT_MAX_DEPTH, "rpc.h and spacesim_proto.def disagree");

/* ---------------------------------------------------------------- results */

const char *sp_proto_resource_name(int resource) {
    switch (resource) {
#define SP__RES_NAME(id, idx, name) \
    case idx: return name;
        SP_RESOURCE_MAP(SP__RES_NAME)
#undef SP__RES_NAME
    default: return "unknown";
    }
}

const char *sp_proto_kind_name(int kind) {
    switch (kind) {
#define SP__KIND_NAME(id, value, name, ...) \
    case value: return name;
        SP_ENTITY_KIND_MAP(SP__KIND_NAME)
#undef SP__KIND_NAME
    default: return "unknown";
    }
}

int sp_rpc_pack_error_notify(msgpack_packer *pk, int code, const char *message) {
    int r = sp_rpc_pack_notify_begin(pk, "error", 1);
    r |= sp_rpc_pack_error_map(pk, code, message);
    return r ? SP_ENOMEM : 0;
}

int sp_rpc_pack_ping_notify(msgpack_packer *pk) { return sp_rpc_pack_notify_begin(pk, "ping", 0); }

static const struct stat_key {
    const char *key;
    bool is_float;
} stat_keys[SP_STAT__COUNT] = {
#define SP__STAT_KEY(id, key, type, what) [SP_STAT_##id] = {key, type[0] == 'f'},
    SP_PROTO_STATS_MAP(SP__STAT_KEY)
#undef SP__STAT_KEY
};

static int pack_key(msgpack_packer *pk, const char *key) { return sp_rpc_pack_cstr(pk, key); }

static int pack_vec3(msgpack_packer *pk, const double v[3]) {
    int r = msgpack_pack_array(pk, 3);
    for (int i = 0; i < 3; i++) r |= msgpack_pack_double(pk, v[i]);
    return r;
}

static int pack_cargo(msgpack_packer *pk, const double cargo[SP_RESOURCE_COUNT]) {
    int r = msgpack_pack_map(pk, SP_RESOURCE_COUNT);
    for (int i = 0; i < SP_RESOURCE_COUNT; i++)
        r |= sp_rpc_pack_cstr(pk, sp_proto_resource_name(i)) | msgpack_pack_double(pk, cargo[i]);
    return r;
}

int sp_rpc_pack_stat_entries(msgpack_packer *pk, const sp_stat_value_t v[SP_STAT__COUNT]) {
    int r = 0;
    for (int i = 0; i < SP_STAT__COUNT; i++) {
        r |= pack_key(pk, stat_keys[i].key);
        r |= stat_keys[i].is_float ? msgpack_pack_double(pk, v[i].f) : msgpack_pack_uint64(pk, v[i].u);
    }
    return r;
}

#define P_UINT(pk, key, v) (pack_key(pk, key) | msgpack_pack_uint64(pk, v))
#define P_FLOAT(pk, key, v) (pack_key(pk, key) | msgpack_pack_double(pk, v))
#define P_BOOL(pk, key, v) (pack_key(pk, key) | ((v) ? msgpack_pack_true(pk) : msgpack_pack_false(pk)))
#define P_STR(pk, key, v) (pack_key(pk, key) | sp_rpc_pack_cstr(pk, v))

static int pack_clients(msgpack_packer *pk, const sp_client_info_t *v, size_t n) {
#define CI_ONE(f, key, type) +1
#define CI_PACK(f, key, type) r |= P_##type(pk, key, c->f);
    int r = msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        const sp_client_info_t *c = &v[i];
        r |= msgpack_pack_map(pk, 0 SP_PROTO_CLIENT_INFO_MAP(CI_ONE));
        SP_PROTO_CLIENT_INFO_MAP(CI_PACK)
    }
    return r;
#undef CI_ONE
#undef CI_PACK
}

/* Map entries each field type contributes (r is the result struct). */
#define N_UINT(r, f) 1
#define N_INT(r, f) 1
#define N_FLOAT(r, f) 1
#define N_BOOL(r, f) 1
#define N_STR(r, f) 1
#define N_VEC3(r, f) 1
#define N_UINT_OR_NIL(r, f) 1
#define N_CARGO(r, f) 1
#define N_OPT_STR(r, f) ((r)->has_##f ? 1 : 0)
#define N_OPT_FLOAT(r, f) ((r)->has_##f ? 1 : 0)
#define N_STATS(r, f) SP_STAT__COUNT
#define N_CLIENTS(r, f) 1
/* Pack one field (key and value); P_UINT, P_FLOAT, P_BOOL, P_STR above. */
#define P_INT(pk, key, v) (pack_key(pk, key) | msgpack_pack_int64(pk, v))
#define P_CLIENTS(pk, key, list) (pack_key(pk, key) | pack_clients(pk, (list).v, (list).n))
#define P_VEC3(pk, key, v) (pack_key(pk, key) | pack_vec3(pk, v))
#define P_UINT_OR_NIL(pk, key, v) (pack_key(pk, key) | ((v) ? msgpack_pack_uint64(pk, v) : msgpack_pack_nil(pk)))
#define P_CARGO(pk, key, v) (pack_key(pk, key) | pack_cargo(pk, v))
#define P_OPT_STR(pk, key, v) (pack_key(pk, key) | sp_rpc_pack_cstr(pk, v))
#define P_OPT_FLOAT(pk, key, v) (pack_key(pk, key) | msgpack_pack_double(pk, v))
#define P_STATS(pk, key, v) sp_rpc_pack_stat_entries(pk, v)
#define G_UINT(r, f) 1
#define G_INT(r, f) 1
#define G_FLOAT(r, f) 1
#define G_BOOL(r, f) 1
#define G_STR(r, f) 1
#define G_VEC3(r, f) 1
#define G_UINT_OR_NIL(r, f) 1
#define G_CARGO(r, f) 1
#define G_OPT_STR(r, f) (r)->has_##f
#define G_OPT_FLOAT(r, f) (r)->has_##f
#define G_STATS(r, f) 1
#define G_CLIENTS(r, f) 1

#define RES_ONE(f, key, type) +1
#define RES_COUNT(f, key, type) +N_##type(r, f)
#define RES_PACK(f, key, type) \
    if (G_##type(r, f)) e |= P_##type(pk, key, r->f);
#define SP__RES_FN(id, lc, name, mn, mx, hello, admin, sig)                                           \
    int sp_rpc_pack_result_##lc(msgpack_packer *pk, uint32_t msgid, const sp_result_##lc##_t *r) {    \
        int e = sp_rpc_pack_response_ok_begin(pk, msgid);                                             \
        if ((0 SP_PROTO_RESULT_##id(RES_ONE)) == 0) return (e | msgpack_pack_true(pk)) ? SP_ENOMEM : 0; \
        if (r == NULL) return SP_EINVAL;                                                              \
        e |= msgpack_pack_map(pk, (size_t)(0 SP_PROTO_RESULT_##id(RES_COUNT)));                       \
        SP_PROTO_RESULT_##id(RES_PACK)                                                                \
        return e ? SP_ENOMEM : 0;                                                                     \
    }
SP_PROTO_METHOD_MAP(SP__RES_FN)
#undef SP__RES_FN
