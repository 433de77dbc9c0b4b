/* clients/common.c: see common.h. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spacesim/error.h"

uint64_t spc_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double spc_now(void) { return (double)spc_now_ns() / 1e9; }

/* ---------------------------------------------------------------- word parser */

/* A tiny recursive-descent JSON reader that packs as it reads. Depth is
 * bounded so a hostile argument cannot blow the stack. */
typedef struct jp {
    const char *s;
    msgpack_packer *pk;
    char *err;
    size_t errlen;
    int depth;
} jp_t;

static int jp_fail(jp_t *p, const char *what) {
    snprintf(p->err, p->errlen, "%s at \"%.20s\"", what, p->s);
    return -1;
}

static void jp_ws(jp_t *p) {
    while (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r') p->s++;
}

static int jp_value(jp_t *p);

/* Numbers: integers that fit int64/uint64 stay integers; 0x hex accepted. */
static int jp_number(jp_t *p) {
    const char *s = p->s;
    char *end;
    if ((s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))) {
        errno = 0;
        unsigned long long u = strtoull(s, &end, 16);
        if (errno || end == s + 2) return jp_fail(p, "bad hex number");
        p->s = end;
        return msgpack_pack_uint64(p->pk, u);
    }
    size_t n = strspn(s, "+-0123456789");
    bool is_int = n > 0 && (s[n] == '\0' || strchr(".eE", s[n]) == NULL);
    if (is_int) {
        errno = 0;
        if (s[0] == '-') {
            long long v = strtoll(s, &end, 10);
            if (!errno && end == s + n) {
                p->s = end;
                return msgpack_pack_int64(p->pk, v);
            }
        } else {
            unsigned long long v = strtoull(s[0] == '+' ? s + 1 : s, &end, 10);
            if (!errno && end == s + n) {
                p->s = end;
                return msgpack_pack_uint64(p->pk, v);
            }
        }
    }
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || errno == ERANGE || !isfinite(d)) return jp_fail(p, "bad number");
    p->s = end;
    return msgpack_pack_double(p->pk, d);
}

static int jp_string(jp_t *p) {
    const char *s = p->s + 1; /* after the quote */
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out) return jp_fail(p, "out of memory");
    for (;;) {
        char ch = *s++;
        if (ch == '\0') {
            free(out);
            return jp_fail(p, "unterminated string");
        }
        if (ch == '"') break;
        if (ch != '\\') {
            *o++ = ch;
            continue;
        }
        ch = *s++;
        switch (ch) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case '/': case '\\': case '"': *o++ = ch; break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4; i++) {
                char h = *s++;
                cp <<= 4;
                if (h >= '0' && h <= '9') cp |= (unsigned)(h - '0');
                else if (h >= 'a' && h <= 'f') cp |= (unsigned)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F') cp |= (unsigned)(h - 'A' + 10);
                else {
                    free(out);
                    return jp_fail(p, "bad \\u escape");
                }
            }
            /* BMP only (no surrogate pairs): enough for a command line. */
            if (cp < 0x80) *o++ = (char)cp;
            else if (cp < 0x800) {
                *o++ = (char)(0xc0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *o++ = (char)(0xe0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default: free(out); return jp_fail(p, "bad escape");
        }
    }
    p->s = s;
    size_t len = (size_t)(o - out);
    int rc = msgpack_pack_str(p->pk, len);
    if (rc == 0) rc = msgpack_pack_str_body(p->pk, out, len);
    free(out);
    return rc;
}

/* Containers: msgpack needs the element count up front, so the elements are
 * packed into a temporary buffer while counting, then the header and the
 * body bytes are appended. */
static int jp_container(jp_t *p, char open) {
    char close = open == '[' ? ']' : '}';
    if (++p->depth > 32) return jp_fail(p, "nesting too deep");
    /* Pass 1: pack the elements into `sink`, counting them. */
    msgpack_sbuffer sink;
    msgpack_sbuffer_init(&sink);
    msgpack_packer dry;
    msgpack_packer_init(&dry, &sink, msgpack_sbuffer_write);
    jp_t q = *p;
    q.pk = &dry;
    q.s++;
    uint32_t n = 0;
    jp_ws(&q);
    if (*q.s != close) {
        for (;;) {
            jp_ws(&q);
            if (open == '{') {
                if (*q.s != '"') {
                    msgpack_sbuffer_destroy(&sink);
                    return jp_fail(&q, "expected a \"key\"");
                }
                if (jp_string(&q) != 0) {
                    msgpack_sbuffer_destroy(&sink);
                    return -1;
                }
                jp_ws(&q);
                if (*q.s != ':') {
                    msgpack_sbuffer_destroy(&sink);
                    return jp_fail(&q, "expected ':'");
                }
                q.s++;
            }
            if (jp_value(&q) != 0) {
                msgpack_sbuffer_destroy(&sink);
                return -1;
            }
            n++;
            jp_ws(&q);
            if (*q.s == ',') {
                q.s++;
                continue;
            }
            if (*q.s == close) break;
            msgpack_sbuffer_destroy(&sink);
            return jp_fail(&q, open == '[' ? "expected ',' or ']'" : "expected ',' or '}'");
        }
    }
    q.s++;
    /* Pass 2: the header, then the already-packed body bytes. */
    int rc = open == '[' ? msgpack_pack_array(p->pk, n) : msgpack_pack_map(p->pk, n);
    if (rc == 0 && sink.size) rc = msgpack_pack_str_body(p->pk, sink.data, sink.size); /* raw append */
    msgpack_sbuffer_destroy(&sink);
    p->s = q.s;
    p->depth--;
    return rc;
}

static int jp_word_is(const char *s, const char *w) {
    size_t n = strlen(w);
    return strncmp(s, w, n) == 0 && strchr(" \t\r\n,]}:", s[n]) != NULL;
}

static int jp_value(jp_t *p) {
    jp_ws(p);
    const char *s = p->s;
    if (*s == '[' || *s == '{') return jp_container(p, *s);
    if (*s == '"') return jp_string(p);
    if (jp_word_is(s, "null") || jp_word_is(s, "nil")) {
        p->s += s[1] == 'u' ? 4 : 3;
        return msgpack_pack_nil(p->pk);
    }
    if (jp_word_is(s, "true")) {
        p->s += 4;
        return msgpack_pack_true(p->pk);
    }
    if (jp_word_is(s, "false")) {
        p->s += 5;
        return msgpack_pack_false(p->pk);
    }
    if ((*s >= '0' && *s <= '9') || *s == '-' || *s == '+' || *s == '.') return jp_number(p);
    return jp_fail(p, "unexpected character");
}

int spc_pack_word(msgpack_packer *pk, const char *word, char *err, size_t errlen) {
    /* Try the word as one JSON-ish value; fall back to a plain string only
     * for words that do not look like JSON (so "[1, 2" is an error, not a
     * string the server would reject with a less helpful message). */
    msgpack_sbuffer tmp;
    msgpack_sbuffer_init(&tmp);
    msgpack_packer tp;
    msgpack_packer_init(&tp, &tmp, msgpack_sbuffer_write);
    char e[160] = "";
    jp_t p = {word, &tp, e, sizeof e, 0};
    int rc = jp_value(&p);
    if (rc == 0) {
        jp_ws(&p);
        if (*p.s != '\0') rc = jp_fail(&p, "trailing characters");
    }
    bool jsonish = word[0] == '[' || word[0] == '{' || word[0] == '"';
    if (rc == 0) {
        rc = msgpack_pack_str_body(pk, tmp.data, tmp.size) == 0 ? 0 : -1;
    } else if (jsonish) {
        snprintf(err, errlen, "cannot parse argument '%s': %s", word, e);
        rc = -1;
    } else {
        size_t n = strlen(word);
        rc = (msgpack_pack_str(pk, n) == 0 && msgpack_pack_str_body(pk, word, n) == 0) ? 0 : -1;
    }
    msgpack_sbuffer_destroy(&tmp);
    return rc;
}

/* ---------------------------------------------------------------- JSON out */

int spc_buf_printf(spc_buf_t *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return -1;
        if (b->p && (size_t)n < room) {
            b->len += (size_t)n;
            return 0;
        }
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
}

void spc_buf_free(spc_buf_t *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static int json_str(spc_buf_t *b, const char *s, size_t n) {
    if (spc_buf_printf(b, "\"") != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc;
        if (c == '"') rc = spc_buf_printf(b, "\\\"");
        else if (c == '\\') rc = spc_buf_printf(b, "\\\\");
        else if (c == '\n') rc = spc_buf_printf(b, "\\n");
        else if (c == '\t') rc = spc_buf_printf(b, "\\t");
        else if (c == '\r') rc = spc_buf_printf(b, "\\r");
        else if (c < 0x20 || c == 0x7f) rc = spc_buf_printf(b, "\\u%04x", c);
        else rc = spc_buf_printf(b, "%c", c);
        if (rc) return -1;
    }
    return spc_buf_printf(b, "\"");
}

/* Shortest text that reads back as the same double (or float32). */
static int json_float(spc_buf_t *b, double d, bool f32) {
    if (!isfinite(d)) return spc_buf_printf(b, "null");
    char s[40];
    for (int prec = f32 ? 6 : 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, d);
        if (f32 ? (float)strtod(s, NULL) == (float)d : strtod(s, NULL) == d) break;
    }
    if (!strpbrk(s, ".eE")) strcat(s, ".0");
    return spc_buf_printf(b, "%s", s);
}

static int json_nl(spc_buf_t *b, int indent) {
    if (indent < 0) return 0;
    return spc_buf_printf(b, "\n%*s", indent, "");
}

int spc_json_append(spc_buf_t *b, const msgpack_object *o, int indent) {
    int in = indent < 0 ? -1 : indent + 2;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return spc_buf_printf(b, "null");
    case MSGPACK_OBJECT_BOOLEAN: return spc_buf_printf(b, o->via.boolean ? "true" : "false");
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return spc_buf_printf(b, "%llu", (unsigned long long)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return spc_buf_printf(b, "%lld", (long long)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32: return json_float(b, o->via.f64, true);
    case MSGPACK_OBJECT_FLOAT64: return json_float(b, o->via.f64, false);
    case MSGPACK_OBJECT_STR: return json_str(b, o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: {
        if (spc_buf_printf(b, "\"0x") != 0) return -1;
        for (uint32_t i = 0; i < o->via.bin.size; i++)
            if (spc_buf_printf(b, "%02x", (unsigned char)o->via.bin.ptr[i]) != 0) return -1;
        return spc_buf_printf(b, "\"");
    }
    case MSGPACK_OBJECT_EXT: return spc_buf_printf(b, "{\"ext_type\": %d, \"size\": %u}", o->via.ext.type, o->via.ext.size);
    case MSGPACK_OBJECT_ARRAY: {
        const msgpack_object_array *a = &o->via.array;
        if (a->size == 0) return spc_buf_printf(b, "[]");
        /* Arrays of scalars stay on one line even when pretty (vec3, cargo). */
        bool flat = true;
        for (uint32_t i = 0; i < a->size; i++)
            if (a->ptr[i].type == MSGPACK_OBJECT_ARRAY || a->ptr[i].type == MSGPACK_OBJECT_MAP) flat = false;
        if (spc_buf_printf(b, "[") != 0) return -1;
        for (uint32_t i = 0; i < a->size; i++) {
            if (i && spc_buf_printf(b, flat || in < 0 ? ", " : ",") != 0) return -1;
            if (!flat && json_nl(b, in) != 0) return -1;
            if (spc_json_append(b, &a->ptr[i], flat ? -1 : in) != 0) return -1;
        }
        if (!flat && json_nl(b, indent) != 0) return -1;
        return spc_buf_printf(b, "]");
    }
    case MSGPACK_OBJECT_MAP: {
        const msgpack_object_map *m = &o->via.map;
        if (m->size == 0) return spc_buf_printf(b, "{}");
        if (spc_buf_printf(b, "{") != 0) return -1;
        for (uint32_t i = 0; i < m->size; i++) {
            if (i && spc_buf_printf(b, in < 0 ? ", " : ",") != 0) return -1;
            if (json_nl(b, in) != 0) return -1;
            const msgpack_object *k = &m->ptr[i].key;
            if (k->type == MSGPACK_OBJECT_STR) {
                if (json_str(b, k->via.str.ptr, k->via.str.size) != 0) return -1;
            } else {
                spc_buf_t kb = {0};
                int rc = spc_json_append(&kb, k, -1);
                if (rc == 0) rc = json_str(b, kb.p, kb.len);
                spc_buf_free(&kb);
                if (rc) return -1;
            }
            if (spc_buf_printf(b, ": ") != 0) return -1;
            if (spc_json_append(b, &m->ptr[i].val, in) != 0) return -1;
        }
        if (json_nl(b, indent) != 0) return -1;
        return spc_buf_printf(b, "}");
    }
    }
    return spc_buf_printf(b, "null");
}

void spc_print_json(FILE *f, const msgpack_object *o, int indent) {
    spc_buf_t b = {0};
    if (spc_json_append(&b, o, indent) == 0 && b.p) fputs(b.p, f);
    spc_buf_free(&b);
}

const msgpack_object *spc_get(const msgpack_object *o, const char *key) {
    return o ? sp_rpc_map_get(o, key) : NULL;
}

bool spc_num(const msgpack_object *o, double *out) {
    if (!o) return false;
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return true;
    default: return false;
    }
}

bool spc_u64(const msgpack_object *o, uint64_t *out) {
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return false;
    *out = o->via.u64;
    return true;
}

const char *spc_error_name(int64_t code) {
    switch (code) {
#define SPC__ERRNAME(id, c, msg) \
    case c: return #id;
        SP_PROTO_ERROR_MAP(SPC__ERRNAME)
#undef SPC__ERRNAME
    default: break;
    }
    static __thread char buf[32];
    snprintf(buf, sizeof buf, "ERROR_%lld", (long long)code);
    return buf;
}

/* ---------------------------------------------------------------- network */

int spc_resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len, char *err,
                size_t errlen) {
    if (port < 1 || port > 65535) {
        snprintf(err, errlen, "port %d out of range (1..65535)", port);
        return -1;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve host '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int spc_connect(spc_conn_t *c, const char *host, int port, double timeout_s, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->next_id = 1;
    snprintf(c->where, sizeof c->where, "%s:%d", host, port);
    struct sockaddr_storage ss;
    socklen_t sl;
    if (spc_resolve(host, port, &ss, &sl, err, errlen) != 0) return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int rc = connect(fd, (struct sockaddr *)&ss, sl);
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        double deadline = spc_now() + timeout_s;
        for (;;) {
            double left = deadline - spc_now();
            if (left <= 0) {
                close(fd);
                snprintf(err, errlen,
                         "cannot connect to %s: timed out after %.1f s (host down or filtered?)",
                         c->where, timeout_s);
                return -1;
            }
            int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
            if (pr < 0 && errno == EINTR) continue;
            if (pr > 0) break;
        }
        int soerr = 0;
        socklen_t el = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el);
        errno = soerr;
        rc = soerr ? -1 : 0;
    }
    if (rc != 0) {
        int e = errno;
        close(fd);
        if (e == ECONNREFUSED)
            snprintf(err, errlen,
                     "cannot connect to %s: connection refused (is spacesimd running there? "
                     "start it with: spacesimd --port %d)",
                     c->where, port);
        else
            snprintf(err, errlen, "cannot connect to %s: %s", c->where, strerror(e));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    sp_rpc_decoder_init(&c->dec, SPC_MAX_INBOUND);
    return 0;
}

void spc_close(spc_conn_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    sp_rpc_decoder_destroy(&c->dec);
}

static int wait_fd(int fd, short ev, double deadline) {
    struct pollfd pfd = {fd, ev, 0};
    int ms = -1;
    if (deadline > 0) {
        double left = deadline - spc_now();
        if (left <= 0) return 0;
        ms = (int)(left * 1000) + 1;
    }
    int pr = poll(&pfd, 1, ms);
    if (pr < 0) return errno == EINTR ? -2 : -1;
    return pr;
}

int spc_send(spc_conn_t *c, const void *p, size_t n, double deadline, char *err, size_t errlen) {
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w > 0) {
            s += w;
            n -= (size_t)w;
            c->bytes_out += (uint64_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(c->fd, POLLOUT, deadline);
            if (r == 0) {
                snprintf(err, errlen, "timed out sending to %s", c->where);
                return -1;
            }
            continue;
        }
        snprintf(err, errlen, "send to %s failed: %s", c->where, strerror(errno));
        return -1;
    }
    return 0;
}

int spc_read(spc_conn_t *c, double deadline, sp_rpc_msg_t *m, char *err, size_t errlen) {
    for (;;) {
        int rc = sp_rpc_decoder_next(&c->dec, m);
        if (rc == 1) {
            if (m->type == SP_RPC_INVALID) {
                snprintf(err, errlen, "protocol error: the server sent a message that is not MessagePack-RPC (%s)",
                         m->reason ? m->reason : "bad shape");
                return -1;
            }
            return 1;
        }
        if (rc < 0) {
            snprintf(err, errlen, "protocol error: the byte stream from %s is not valid MessagePack (%s)", c->where,
                     sp_strerror(rc));
            return -1;
        }
        if (c->eof) {
            snprintf(err, errlen, "%s closed the connection", c->where);
            return -1;
        }
        int w = wait_fd(c->fd, POLLIN, deadline);
        if (w == 0) return 0;
        if (w == -2) return -2;
        char buf[65536];
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r < 0) {
            if (errno == EINTR) return -2;
            if (errno == EAGAIN || errno == EWOULDBLOCK) continue;
            snprintf(err, errlen, "read from %s failed: %s", c->where, strerror(errno));
            return -1;
        }
        if (r == 0) {
            c->eof = true;
            continue;
        }
        c->bytes_in += (uint64_t)r;
        int fr = sp_rpc_decoder_feed(&c->dec, buf, (size_t)r);
        (void)fr; /* a stream error surfaces from next() after earlier messages */
    }
}

int spc_send_words(spc_conn_t *c, const char *method, char *const *words, int nwords, uint32_t *msgid,
                   double deadline, char *err, size_t errlen) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t id = c->next_id++;
    err[0] = '\0';
    int rc = sp_rpc_pack_request_begin(&pk, id, method, (uint32_t)nwords);
    for (int i = 0; rc == 0 && i < nwords; i++) rc = spc_pack_word(&pk, words[i], err, errlen);
    if (rc == 0) rc = spc_send(c, sb.data, sb.size, deadline, err, errlen);
    else if (!err[0]) snprintf(err, errlen, "out of memory");
    msgpack_sbuffer_destroy(&sb);
    if (rc == 0 && msgid) *msgid = id;
    return rc == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- views */

void spc_view_init(spc_view_t *v) {
    v->proto = SP_PROTO_VERSION;
    sp_snap_view_init(&v->cells);
    sp_snap_list_init(&v->list);
}

void spc_view_destroy(spc_view_t *v) {
    sp_snap_view_destroy(&v->cells);
    sp_snap_list_destroy(&v->list);
}

void spc_view_set_protocol(spc_view_t *v, int64_t proto) {
    v->proto = proto >= 2 ? 2 : 1;
    spc_view_reset(v);
}

int spc_view_apply(spc_view_t *v, const msgpack_object *params, sp_snap_stats_t *stats) {
    return v->proto >= 2 ? sp_snap_apply(&v->cells, params, stats) : sp_snap_v1_apply(&v->list, params, stats);
}

void spc_view_reset(spc_view_t *v) {
    sp_snap_view_reset(&v->cells);
    sp_snap_list_reset(&v->list);
}

size_t spc_view_count(const spc_view_t *v) { return v->proto >= 2 ? v->cells.count : v->list.len; }

const sp_snap_rec_t *spc_view_find(const spc_view_t *v, uint64_t id) {
    return v->proto >= 2 ? sp_snap_view_find(&v->cells, id) : sp_snap_list_find(&v->list, id);
}

const sp_snap_rec_t *spc_view_next(const spc_view_t *v, spc_view_iter_t *it) {
    if (v->proto < 2) return it->i < v->list.len ? &v->list.recs[it->i++] : NULL;
    while (it->cell < v->cells.ncells) {
        const sp_snap_cell_t *c = &v->cells.cells[it->cell];
        if (it->i < c->len) return &c->recs[it->i++];
        it->cell++;
        it->i = 0;
    }
    return NULL;
}
