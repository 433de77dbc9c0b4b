/* netclient.c: see netclient.h. */
#include "netclient.h"

#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#ifndef SPACESIMD_PATH
#define SPACESIMD_PATH "src/daemon/spacesimd"
#endif

double nc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A bounded wait used only while polling for an external process's state
 * (port file, exit): not a race fix, the caller re-checks a condition. */
static void nap(void) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int nc_daemon_prepare(nc_daemon_t *d) {
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "/tmp/spacesimd-test-XXXXXX");
    if (mkdtemp(d->dir) == NULL) return -1;
    snprintf(d->log, sizeof d->log, "%s/daemon.log", d->dir);
    snprintf(d->portfile, sizeof d->portfile, "%s/port", d->dir);
    return 0;
}

int nc_daemon_start(nc_daemon_t *d, const char *const *args, const char *env_token, double timeout_s,
                    int *exit_status) {
    if (d->dir[0] == '\0' && nc_daemon_prepare(d) != 0) return -1;
    unlink(d->portfile);
    const char *argv[64];
    int n = 0;
    argv[n++] = SPACESIMD_PATH;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = d->portfile;
    argv[n++] = "--workers";
    argv[n++] = "2";
    for (int i = 0; args && args[i] && n < 62; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* Never outlive a test runner that crashed. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        if (env_token) setenv("SPACESIM_ADMIN_TOKEN", env_token, 1);
        else unsetenv("SPACESIM_ADMIN_TOKEN");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    double deadline = nc_now() + timeout_s;
    while (nc_now() < deadline) {
        FILE *f = fopen(d->portfile, "r");
        if (f) {
            int port = 0;
            int ok = fscanf(f, "%d", &port);
            fclose(f);
            if (ok == 1 && port > 0) {
                d->port = port;
                return 0;
            }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = 0;
            if (exit_status) *exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            return -1;
        }
        nap();
    }
    if (exit_status) *exit_status = -1;
    nc_daemon_stop(d, SIGKILL, 5);
    return -1;
}

int nc_daemon_stop(nc_daemon_t *d, int sig, double timeout_s) {
    if (d->pid <= 0) return -1;
    kill(d->pid, sig);
    double deadline = nc_now() + timeout_s;
    int st;
    for (;;) {
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid) break;
        if (nc_now() > deadline) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &st, 0);
            d->pid = 0;
            return -1;
        }
        nap();
    }
    d->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

bool nc_log_contains(const nc_daemon_t *d, const char *needle) { return nc_file_contains(d->log, needle); }

int nc_wait_file_contains(const char *path, const char *needle, double timeout_s) {
    double deadline = nc_now() + timeout_s;
    for (;;) {
        if (nc_file_contains(path, needle)) return 0;
        if (nc_now() > deadline) return -1;
        nap();
    }
}

bool nc_file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        if (strstr(line, needle)) found = true;
    fclose(f);
    return found;
}

void nc_daemon_cleanup(nc_daemon_t *d) {
    if (d->pid > 0) nc_daemon_stop(d, SIGKILL, 5);
    if (getenv("NC_KEEP_LOGS")) return;
    DIR *dir = opendir(d->dir);
    if (dir) {
        struct dirent *e;
        char p[600];
        while ((e = readdir(dir))) {
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "%s/%s", d->dir, e->d_name);
            unlink(p);
        }
        closedir(dir);
    }
    rmdir(d->dir);
}

/* ---------------------------------------------------------------- client */

int nc_connect(nc_t *c, int port) { return nc_connect_rcvbuf(c, port, 0); }

int nc_connect_rcvbuf(nc_t *c, int port, int rcvbuf) {
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    /* Before connect(): the window scale is agreed in the handshake, so a
     * buffer shrunk afterwards still lets the peer send a full window. */
    if (rcvbuf > 0) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(c->fd);
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    msgpack_unpacker_init(&c->up, 64 * 1024);
    c->next_id = 1;
    return 0;
}

void nc_close(nc_t *c) {
    free(c->ws_raw);
    free(c->ws_msg);
    c->ws_raw = c->ws_msg = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    for (size_t i = 0; i < c->nnotes; i++) nc_note_free(c->notes[i]);
    c->nnotes = 0;
    msgpack_unpacker_destroy(&c->up);
}

static int send_all(nc_t *c, const void *p, size_t n) {
    const char *q = p;
    while (n > 0) {
        ssize_t w = send(c->fd, q, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        q += w;
        n -= (size_t)w;
    }
    return 0;
}

int nc_send_raw(nc_t *c, const void *p, size_t n) {
    if (c->ws) return nc_ws_frame(c, 2, true, p, n);
    return send_all(c, p, n);
}

/* ---------------------------------------------------------------- WebSocket */

static bool grow(uint8_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need) nc *= 2;
    uint8_t *np = realloc(*p, nc);
    if (np == NULL) return false;
    *p = np;
    *cap = nc;
    return true;
}

int nc_ws_frame(nc_t *c, int opcode, bool fin, const void *p, size_t n) {
    uint8_t *f = malloc(n + 14);
    if (f == NULL) return -1;
    size_t h = 0;
    f[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (n < 126) {
        f[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t)(n >> 8);
        f[h++] = (uint8_t)n;
    } else {
        f[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) f[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    memcpy(f + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) f[h + i] = ((const uint8_t *)p)[i] ^ mask[i & 3];
    int r = send_all(c, f, h + n);
    free(f);
    return r;
}

/* A whole binary message arrived: it must be one MessagePack message. */
static void ws_message(nc_t *c, const uint8_t *p, size_t n) {
    c->ws_msgs++;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, (const char *)p, n, &off) != MSGPACK_UNPACK_SUCCESS || off != n)
        c->ws_bad_framing = true;
    msgpack_unpacked_destroy(&u);
    if (!msgpack_unpacker_reserve_buffer(&c->up, n)) return;
    memcpy(msgpack_unpacker_buffer(&c->up), p, n);
    msgpack_unpacker_buffer_consumed(&c->up, n);
}

/* Received bytes of the WebSocket stream: take every whole frame. */
static void ws_feed(nc_t *c, const uint8_t *p, size_t n) {
    if (!grow(&c->ws_raw, &c->ws_raw_cap, c->ws_raw_len + n)) {
        c->closed = true;
        return;
    }
    memcpy(c->ws_raw + c->ws_raw_len, p, n);
    c->ws_raw_len += n;
    size_t off = 0;
    for (;;) {
        const uint8_t *f = c->ws_raw + off;
        size_t have = c->ws_raw_len - off;
        if (have < 2) break;
        size_t h = 2;
        uint64_t len = f[1] & 0x7f;
        if (len == 126) {
            if (have < 4) break;
            len = ((uint64_t)f[2] << 8) | f[3];
            h = 4;
        } else if (len == 127) {
            if (have < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | f[2 + i];
            h = 10;
        }
        if (f[1] & 0x80) h += 4; /* a server never masks; tolerated */
        if (have < h + len) break;
        int op = f[0] & 0x0f;
        const uint8_t *pl = f + h;
        if (op == 8) { /* close: code and reason */
            if (len >= 2) c->ws_close_code = (pl[0] << 8) | pl[1];
            snprintf(c->ws_close_reason, sizeof c->ws_close_reason, "%.*s", len > 2 ? (int)(len - 2) : 0,
                     (const char *)pl + 2);
            c->closed = true;
        } else if (op == 0 || op == 1 || op == 2) {
            if (!grow(&c->ws_msg, &c->ws_msg_cap, c->ws_msg_len + len)) {
                c->closed = true;
                return;
            }
            memcpy(c->ws_msg + c->ws_msg_len, pl, len);
            c->ws_msg_len += len;
            if (f[0] & 0x80) {
                ws_message(c, c->ws_msg, c->ws_msg_len);
                c->ws_msg_len = 0;
            }
        }
        off += h + len;
    }
    memmove(c->ws_raw, c->ws_raw + off, c->ws_raw_len - off);
    c->ws_raw_len -= off;
}

int nc_connect_ws(nc_t *c, int port, const char *origin, int *status) {
    if (status) *status = 0;
    if (nc_connect(c, port) != 0) { /* leave c closable */
        c->fd = -1;
        msgpack_unpacker_init(&c->up, 1024);
        return -1;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: spacesim\r\n%s%s%s\r\n",
                     port, origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "");
    if (send_all(c, req, (size_t)n) != 0) return -1;
    char resp[4096];
    size_t got = 0;
    double deadline = nc_now() + 5;
    char *end = NULL;
    while (end == NULL) {
        double left = deadline - nc_now();
        if (left <= 0 || got + 1 >= sizeof resp) return -1;
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0) continue;
        ssize_t r = recv(c->fd, resp + got, sizeof resp - 1 - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
        resp[got] = '\0';
        end = strstr(resp, "\r\n\r\n");
    }
    int code = 0;
    if (got > 12) sscanf(resp, "HTTP/1.1 %d", &code);
    if (status) *status = code;
    if (end == NULL || code != 101) return -1;
    c->ws = true;
    size_t hl = (size_t)(end + 4 - resp);
    if (got > hl) ws_feed(c, (const uint8_t *)resp + hl, got - hl);
    return 0;
}

static uint32_t vsend_req(nc_t *c, const char *method, const char *fmt, va_list ap) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t id = c->next_id++;
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, id);
    msgpack_pack_str_with_body(&pk, method, strlen(method));
    msgpack_pack_array(&pk, strlen(fmt));
    for (const char *f = fmt; *f; f++) {
        switch (*f) {
        case 'u': msgpack_pack_uint64(&pk, va_arg(ap, uint64_t)); break;
        case 'i': msgpack_pack_int64(&pk, va_arg(ap, long long)); break;
        case 'd': msgpack_pack_double(&pk, va_arg(ap, double)); break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            msgpack_pack_str_with_body(&pk, s, strlen(s));
            break;
        }
        case 'n': msgpack_pack_nil(&pk); break;
        case 'b': if (va_arg(ap, int)) msgpack_pack_true(&pk); else msgpack_pack_false(&pk); break;
        case 'v': {
            const double *v = va_arg(ap, const double *);
            msgpack_pack_array(&pk, 3);
            for (int i = 0; i < 3; i++) msgpack_pack_double(&pk, v[i]);
            break;
        }
        default: msgpack_pack_nil(&pk); break;
        }
    }
    nc_send_raw(c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return id;
}

uint32_t nc_send_req(nc_t *c, const char *method, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    uint32_t id = vsend_req(c, method, fmt, ap);
    va_end(ap);
    return id;
}

/* Read one message with a deadline into *out (caller-initialised). 1 ok,
 * 0 timeout, -1 EOF/error. */
static int read_msg(nc_t *c, double deadline, msgpack_unpacked *out) {
    for (;;) {
        msgpack_unpack_return r = msgpack_unpacker_next(&c->up, out);
        if (r == MSGPACK_UNPACK_SUCCESS) return 1;
        if (r == MSGPACK_UNPACK_PARSE_ERROR || r == MSGPACK_UNPACK_NOMEM_ERROR) return -1;
        if (c->closed) return -1;
        double left = deadline - nc_now();
        if (left <= 0) return 0;
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        if (c->ws) {
            uint8_t buf[65536];
            ssize_t n = recv(c->fd, buf, sizeof buf, 0);
            if (n <= 0) {
                if (n < 0 && errno == EINTR) continue;
                c->closed = true;
                continue;
            }
            c->bytes_in += (size_t)n;
            ws_feed(c, buf, (size_t)n);
            continue;
        }
        if (!msgpack_unpacker_reserve_buffer(&c->up, 64 * 1024)) return -1;
        ssize_t n = recv(c->fd, msgpack_unpacker_buffer(&c->up), msgpack_unpacker_buffer_capacity(&c->up), 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            c->closed = true;
            continue; /* drain what is buffered first */
        }
        c->bytes_in += (size_t)n;
        msgpack_unpacker_buffer_consumed(&c->up, (size_t)n);
    }
}

/* The next message in a new heap msgpack_unpacked (free with
 * nc_note_free()), or NULL on timeout, close or error. */
static msgpack_unpacked *read_new_msg(nc_t *c, double deadline) {
    msgpack_unpacked *u = malloc(sizeof *u);
    msgpack_unpacked_init(u);
    if (read_msg(c, deadline, u) <= 0) {
        nc_note_free(u);
        return NULL;
    }
    return u;
}

static void queue_note(nc_t *c, msgpack_unpacked *u) {
    if (c->nnotes == NC_MAX_NOTES) { /* drop the oldest */
        nc_note_free(c->notes[0]);
        memmove(c->notes, c->notes + 1, (NC_MAX_NOTES - 1) * sizeof c->notes[0]);
        c->nnotes--;
    }
    c->notes[c->nnotes++] = u;
}

static void fill_resp(nc_resp_t *resp) {
    const msgpack_object *a = resp->msg.data.via.array.ptr;
    resp->error = a[2].type == MSGPACK_OBJECT_NIL ? NULL : &a[2];
    resp->result = &a[3];
    resp->code = 0;
    resp->message[0] = '\0';
    if (resp->error) {
        const msgpack_object *code = nc_get(resp->error, "code");
        const msgpack_object *m = nc_get(resp->error, "message");
        resp->code = code ? (int64_t)code->via.i64 : -1;
        if (m && m->type == MSGPACK_OBJECT_STR)
            snprintf(resp->message, sizeof resp->message, "%.*s", (int)m->via.str.size, m->via.str.ptr);
    }
}

int nc_wait_resp(nc_t *c, uint32_t msgid, double timeout_s, nc_resp_t *resp) {
    double deadline = nc_now() + timeout_s;
    for (;;) {
        msgpack_unpacked *u = read_new_msg(c, deadline);
        if (u == NULL) return -1;
        const msgpack_object *o = &u->data;
        if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 4 && o->via.array.ptr[0].via.u64 == 1) {
            if (o->via.array.ptr[1].via.u64 == msgid) {
                resp->msg = *u; /* take over the zone */
                free(u);
                fill_resp(resp);
                return 0;
            }
            nc_note_free(u); /* a stale response */
            continue;
        }
        queue_note(c, u);
    }
}

void nc_resp_free(nc_resp_t *resp) { msgpack_unpacked_destroy(&resp->msg); }

int nc_call(nc_t *c, double timeout_s, nc_resp_t *resp, const char *method, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    uint32_t id = vsend_req(c, method, fmt, ap);
    va_end(ap);
    return nc_wait_resp(c, id, timeout_s, resp);
}

static bool note_is(const msgpack_unpacked *u, const char *method) {
    const msgpack_object *o = &u->data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3) return false;
    if (o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.array.ptr[0].via.u64 != 2) return false;
    return method == NULL || nc_str_eq(&o->via.array.ptr[1], method);
}

msgpack_unpacked *nc_next_note(nc_t *c, const char *method, double timeout_s) {
    for (size_t i = 0; i < c->nnotes; i++) {
        if (note_is(c->notes[i], method)) {
            msgpack_unpacked *u = c->notes[i];
            memmove(c->notes + i, c->notes + i + 1, (c->nnotes - i - 1) * sizeof c->notes[0]);
            c->nnotes--;
            return u;
        }
    }
    double deadline = nc_now() + timeout_s;
    for (;;) {
        msgpack_unpacked *u = read_new_msg(c, deadline);
        if (u == NULL) return NULL;
        if (note_is(u, method)) return u;
        if (note_is(u, NULL)) queue_note(c, u);
        else nc_note_free(u);
    }
}

msgpack_unpacked *nc_wait_event(nc_t *c, const char *type, bool (*match)(const msgpack_object *ev, const void *ctx),
                                const void *ctx, double timeout_s) {
    double deadline = nc_now() + timeout_s;
    for (;;) {
        double left = deadline - nc_now();
        msgpack_unpacked *u = nc_next_note(c, "event", left > 0 ? left : 0);
        if (u == NULL) return NULL;
        const msgpack_object *p = nc_note_params(u);
        const msgpack_object *ev = p->type == MSGPACK_OBJECT_ARRAY && p->via.array.size > 0 ? &p->via.array.ptr[0] : NULL;
        if (ev && (type == NULL || nc_str_eq(nc_get(ev, "type"), type)) && (match == NULL || match(ev, ctx))) return u;
        nc_note_free(u);
    }
}

void nc_note_free(msgpack_unpacked *u) {
    if (!u) return;
    msgpack_unpacked_destroy(u);
    free(u);
}

const msgpack_object *nc_note_params(const msgpack_unpacked *u) { return &u->data.via.array.ptr[2]; }

int nc_wait_closed(nc_t *c, double timeout_s) {
    double deadline = nc_now() + timeout_s;
    char buf[65536];
    while (!c->closed) {
        double left = deadline - nc_now();
        if (left <= 0) return -1;
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0) continue;
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n <= 0 && !(n < 0 && errno == EINTR)) c->closed = true;
        else if (n > 0 && c->ws) ws_feed(c, (const uint8_t *)buf, (size_t)n);
    }
    return 0;
}

bool nc_str_eq(const msgpack_object *o, const char *s) {
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

const msgpack_object *nc_get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (nc_str_eq(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

static double num(const msgpack_object *o) {
    if (!o) return NAN;
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return (double)o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return (double)o->via.i64;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return o->via.f64;
    default: return NAN;
    }
}

uint64_t nc_get_u64(const msgpack_object *map, const char *key) {
    const msgpack_object *o = nc_get(map, key);
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64 : 0;
}

double nc_get_num(const msgpack_object *map, const char *key) { return num(nc_get(map, key)); }

/* ---------------------------------------------------------------- view */

static nc_ent_t *view_find_mut(nc_view_t *v, uint64_t id) {
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v->e[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < v->n && v->e[lo].id == id ? &v->e[lo] : NULL;
}

const nc_ent_t *nc_view_find(const nc_view_t *v, uint64_t id) { return view_find_mut((nc_view_t *)v, id); }


/* Decode with proto/snapshot.h (the daemon's wire format), then copy the
 * dequantized records for the tests. */
int nc_view_apply(nc_view_t *v, const msgpack_object *params) {
    if (v->pv == NULL) {
        v->pv = malloc(sizeof(sp_snap_list_t));
        if (v->pv == NULL) return -1;
        sp_snap_list_init(v->pv);
    }
    sp_snap_list_t *pv = v->pv;
    if (params->type == MSGPACK_OBJECT_ARRAY && params->via.array.size >= 2 &&
        params->via.array.ptr[1].type == MSGPACK_OBJECT_NIL)
        v->fulls++;
    if (sp_snap_v1_apply(pv, params, NULL) != 0) return -1;
    if (pv->len > v->cap) {
        v->cap = pv->len * 2;
        v->e = realloc(v->e, v->cap * sizeof *v->e);
    }
    v->n = pv->len;
    for (size_t i = 0; i < pv->len; i++) {
        const sp_snap_rec_t *r = &pv->recs[i];
        nc_ent_t *e = &v->e[i];
        e->id = r->id;
        e->kind = r->kind;
        for (int k = 0; k < 3; k++) e->pos[k] = r->pos[k] / 16.0;
        for (int k = 0; k < 3; k++) e->vel[k] = r->vel[k] / 64.0;
        e->hp = r->hp / 16.0;
        e->owner = r->owner;
    }
    v->tick = pv->tick;
    v->snapshots++;
    return 0;
}

int nc_wait_view(nc_t *c, nc_view_t *v, bool (*pred)(const nc_view_t *v, const void *ctx), const void *ctx,
                 double timeout_s) {
    double deadline = nc_now() + timeout_s;
    while (!pred(v, ctx)) {
        double left = deadline - nc_now();
        msgpack_unpacked *u = nc_next_note(c, "snapshot", left > 0 ? left : 0);
        if (u == NULL) return -1;
        int r = nc_view_apply(v, nc_note_params(u));
        nc_note_free(u);
        if (r != 0) return -1;
    }
    return 0;
}

static bool tick_reached(const nc_view_t *v, const void *ctx) {
    return v->snapshots > 0 && v->tick >= *(const uint64_t *)ctx;
}

int nc_wait_view_tick(nc_t *c, nc_view_t *v, uint64_t tick, double timeout_s) {
    return nc_wait_view(c, v, tick_reached, &tick, timeout_s);
}

static bool has_entity(const nc_view_t *v, const void *ctx) { return nc_view_find(v, *(const uint64_t *)ctx) != NULL; }

int nc_wait_view_has(nc_t *c, nc_view_t *v, uint64_t id, double timeout_s) {
    return nc_wait_view(c, v, has_entity, &id, timeout_s);
}

uint64_t nc_server_tick(nc_t *c, double timeout_s) {
    nc_resp_t r;
    if (nc_call(c, timeout_s, &r, "ping", "") != 0) return 0;
    uint64_t t = r.error == NULL ? nc_get_u64(r.result, "tick") : 0;
    nc_resp_free(&r);
    return t;
}

void nc_view_free(nc_view_t *v) {
    if (v->pv) {
        sp_snap_list_destroy(v->pv);
        free(v->pv);
    }
    free(v->e);
    memset(v, 0, sizeof *v);
}
