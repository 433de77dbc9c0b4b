/* gateway.c: the cluster's gateway, spacesim-gw (see gateway.h). */
#include "gw/gateway.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/clients.h"
#include "daemon/clock.h"
#include "daemon/frames.h"
#include "daemon/methods.h"
#include "rpc.h"
#include "snapshot.h"
#include "spacesim/error.h"

/* What a request sent to a daemon is for; its answer comes in request
 * order on that connection, so each upstream keeps a FIFO of these. */
typedef enum {
    P_HELLO,
    P_SUBSCRIBE,
    P_PING,
    P_RESYNC,
    P_CLIENT,   /* a client's command: relay the answer */
    P_STATS,    /* one daemon's part of a client's stats */
    P_QUIET,    /* alert: nobody waits for the answer */
    P_REMOVE,   /* remove of an ended session's ship: tried again on NOT_FOUND */
} pkind_t;

typedef struct gather gather_t;

typedef struct pending {
    pkind_t kind;
    uint32_t msgid;             /* on the upstream connection */
    sp_conn_t *conn;            /* P_CLIENT: the client (a reference), NULL once answered */
    uint32_t cmsgid;            /* the client's msgid */
    bool have_id;               /* the client wants an answer */
    int method;                 /* SP_METHOD_* */
    uint64_t entity;            /* the entity the command is about (routing, retries) */
    uint32_t owner;             /* spawn: the session the ship is for */
    int tries;
    int up;                     /* P_CLIENT: the upstream it was last sent to */
    uint64_t sent_ns;           /* when it was sent (a daemon that answers nothing is dropped) */
    char *params;               /* the params array's msgpack bytes (malloc), for retries */
    size_t params_len;
    gather_t *gather;           /* P_STATS */
    int part;                   /* P_STATS: the upstream's index */
} pending_t;

/* A client's stats: one part per upstream, answered when all are in. */
struct gather {
    gather_t *prev, *next;      /* sp_gw_t.gathers */
    uint64_t t0;                /* asked at */
    bool answered;              /* the client has its answer (parts may still be due) */
    sp_conn_t *conn;
    uint32_t msgid;
    bool have_id;
    int left;
    msgpack_sbuffer *part;      /* per upstream: its stats map (size 0: none) */
};

/* An event read from a daemon, waiting for the snapshot it precedes. */
typedef struct gw_event {
    sp_world_event_t ev;        /* pos and owners filled when it is applied */
} gw_event_t;

/* A snapshot notification's params, kept until the merge reaches its tick. */
typedef struct qsnap {
    uint64_t tick;
    char *bytes;
    size_t len;
    gw_event_t *ev;             /* the events that came before it */
    size_t nev;
} qsnap_t;

typedef enum { U_DOWN, U_CONNECTING, U_HELLO, U_READY } ustate_t;

typedef struct up {
    sp_gw_t *g;
    int idx;
    char name[96];              /* "host:port" */
    struct sockaddr_storage addr;
    ustate_t state;
    uv_tcp_t tcp;
    bool tcp_open;              /* tcp initialised, close pending or done */
    uv_connect_t creq;
    uv_timer_t retry;
    uint64_t backoff_ms;
    sp_rpc_decoder_t dec;
    uint32_t session;           /* our session there */
    uint32_t next_msgid;
    pending_t *fifo;            /* ring of pending requests */
    size_t fhead, fn, fcap;
    qsnap_t *q;                 /* ring of queued snapshots */
    size_t qhead, qn, qcap;
    gw_event_t *ev;             /* events since the last snapshot read */
    size_t nev, evcap;
    sp_snap_view_t view;        /* applied up to the merge */
    bool synced;                /* view valid (a full snapshot applied since connect / resync) */
    bool resyncing;
    size_t out_bytes;           /* written to the socket, not yet confirmed */
    const char *broken;         /* a send failed: closed from the retry timer (never inside a caller) */
    uint64_t last_tx_ns;
} up_t;

struct sp_gw {
    sp_daemon_t *d;
    up_t *up;
    int nup;
    sp_frame_t *frame;          /* the latest merged frame (one reference) */
    uint8_t *src;               /* per row of frame: the upstream holding it */
    uint8_t *age;               /* per row of frame: rounds it has been carried (0: in a view) */
    uint64_t merged_tick;
    /* merge scratch */
    sp_frame_row_t *rows;
    uint8_t *rsrc, *rage;
    uint64_t *rtick;
    size_t rcap;
    uint64_t *keys;             /* (id, index) pairs */
    size_t kcap;
    /* commands answered NOT_FOUND, to be re-routed after the next merge */
    pending_t *retry;
    size_t nretry, retry_cap;
    /* ships to remove whose daemon answered NOT_FOUND (mid hand-off): sent
     * again to their holder after a merge, a few times */
    struct rm { uint64_t id; int tries; } *rm;
    size_t nrm, rm_cap;
    int next_spawn;             /* round robin when no daemon holds the place */
    uv_timer_t ping;            /* keepalive of the upstream connections */
    uint64_t dil_tick, dil_ns;  /* sp_gw_dilation's previous reading */
    uint64_t pub_tick;          /* the tick of the last round published (merged_tick + tick_off) */
    uint64_t tick_off;          /* added to the daemons' ticks after their clock went back */
    gather_t *gathers;          /* stats being gathered, newest first */
    bool ready;                 /* every daemon has been merged once: hello is open */
    uint64_t started_ns;
    bool stopping;
    sp_gw_stats_t st;
    msgpack_sbuffer sb;         /* packing scratch */
    msgpack_packer pk;
};

/* ---------------------------------------------------------------- helpers */

static const msgpack_object *map_get(const msgpack_object *m, const char *key) {
    if (m == NULL || m->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl && memcmp(k->via.str.ptr, key, kl) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

static uint64_t obj_u64(const msgpack_object *o) {
    if (o == NULL) return 0;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return o->via.u64;
    return 0;
}

static double obj_f(const msgpack_object *o) {
    if (o == NULL) return 0;
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) return o->via.f64;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (double)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return (double)o->via.i64;
    return 0;
}

static bool obj_is(const msgpack_object *o, const char *s) {
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *n = realloc(*p, c * elem);
    if (n == NULL) return SP_ENOMEM;
    *p = n;
    *cap = c;
    return 0;
}

/* Send the client the bytes in g->sb (if it still listens), then clear. */
static void to_client(sp_gw_t *g, sp_conn_t *c) {
    if (c != NULL && !c->closing) sp_conn_send_sbuf(c, &g->sb);
    msgpack_sbuffer_clear(&g->sb);
}

static void client_error(sp_gw_t *g, sp_conn_t *c, uint32_t msgid, bool have_id, int code, const char *msg) {
    if (!have_id) return;
    msgpack_sbuffer_clear(&g->sb);
    if (sp_rpc_pack_response_error(&g->pk, msgid, code, msg) == 0) to_client(g, c);
    msgpack_sbuffer_clear(&g->sb);
}

/* The client's request is answered (or dropped): it may send the next. */
static void client_done(sp_conn_t *c) {
    if (c == NULL) return;
    sp_client_t *cl = sp_client_of(c);
    if (cl->gw_pending > 0) cl->gw_pending--;
    if (cl->gw_pending == 0) sp_conn_unpark(c);
    sp_conn_release(c);
}

static void pending_free(pending_t *p) {
    free(p->params);
    p->params = NULL;
}

/* ---------------------------------------------------------------- upstream I/O */

typedef struct wreq {
    uv_write_t req;
    up_t *u;
    size_t len;
    char data[];
} wreq_t;

static void close_up(up_t *u, const char *why);

static void on_write(uv_write_t *req, int status) {
    wreq_t *w = (wreq_t *)req;
    up_t *u = w->u;
    u->out_bytes -= w->len;
    free(w);
    if (status < 0 && u->state != U_DOWN) close_up(u, uv_strerror(status));
}

/* Bytes of a daemon's output queue beyond which it is treated as gone: a
 * daemon that stops reading must not grow the gateway without bound. */
#define UP_OUT_MAX (64u << 20)

static void on_broken(uv_timer_t *t);

/* A send failed: the connection is closed from the retry timer, not here:
 * up_send's callers are in the middle of walking queues, decoders and
 * client lists that close_up frees. */
static void mark_broken(up_t *u, const char *why) {
    if (u->broken) return;
    u->broken = why;
    uv_timer_start(&u->retry, on_broken, 0, 0);
}

static int up_send(up_t *u, const void *data, size_t len) {
    if (u->state == U_DOWN || u->state == U_CONNECTING || u->broken) return SP_EAGAIN;
    if (u->out_bytes + len > UP_OUT_MAX) {
        mark_broken(u, "output queue over 64 MiB (the daemon does not read)");
        return SP_EAGAIN;
    }
    wreq_t *w = malloc(sizeof *w + len);
    if (w == NULL) return SP_ENOMEM;
    w->u = u;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int r = uv_write(&w->req, (uv_stream_t *)&u->tcp, &b, 1, on_write);
    if (r < 0) {
        free(w);
        mark_broken(u, "write failed");
        return SP_EIO;
    }
    u->out_bytes += len;
    u->last_tx_ns = sp_now_ns();
    return 0;
}

/* The FIFO of pending requests: a linear array, [fhead, fhead + fn). Room
 * for one more at its end, or SP_ENOMEM. */
static int fifo_reserve(up_t *u) {
    if (u->fhead + u->fn < u->fcap) return 0;
    if (u->fhead > 0) {
        memmove(u->fifo, u->fifo + u->fhead, u->fn * sizeof *u->fifo);
        u->fhead = 0;
        return 0;
    }
    return grow((void **)&u->fifo, &u->fcap, u->fn + 1, sizeof *u->fifo);
}
static pending_t *fifo_front(up_t *u) { return u->fn ? &u->fifo[u->fhead] : NULL; }
static void fifo_pop(up_t *u) {
    u->fhead++;
    if (--u->fn == 0) u->fhead = 0;
}

/* Send the request method(params bytes; NULL: []) for *p, and queue a copy
 * of *p for its answer. SP_EAGAIN when the daemon is not connected; on any
 * error nothing is queued (a failed send closed the connection, which
 * failed what was queued before). */
static int up_request(up_t *u, pending_t *p, const char *method, const void *params, size_t plen) {
    if (u->state != U_READY && !(u->state == U_HELLO && (p->kind == P_HELLO || p->kind == P_SUBSCRIBE)))
        return SP_EAGAIN;
    sp_gw_t *g = u->g;
    p->msgid = ++u->next_msgid;
    msgpack_sbuffer_clear(&g->sb);
    int e = msgpack_pack_array(&g->pk, 4) | msgpack_pack_uint8(&g->pk, 0) | msgpack_pack_uint32(&g->pk, p->msgid) |
            sp_rpc_pack_cstr(&g->pk, method);
    if (e == 0) e = params ? msgpack_sbuffer_write(&g->sb, params, plen) : msgpack_pack_array(&g->pk, 0);
    if (e != 0 || fifo_reserve(u) != 0) {
        msgpack_sbuffer_clear(&g->sb);
        return SP_ENOMEM;
    }
    int r = up_send(u, g->sb.data, g->sb.size);
    msgpack_sbuffer_clear(&g->sb);
    if (r != 0) return r;
    p->sent_ns = sp_now_ns();
    u->fifo[u->fhead + u->fn++] = *p; /* room reserved above */
    return 0;
}

static void answer_client_failure(sp_gw_t *g, pending_t *p, const char *why);
static void gather_part(sp_gw_t *g, gather_t *ga, int part, const msgpack_object *result);

/* Everything waiting on u fails (it went down). */
static void fail_pending(up_t *u, const char *why) {
    sp_gw_t *g = u->g;
    while (u->fn) {
        pending_t p = *fifo_front(u);
        fifo_pop(u);
        if (p.kind == P_CLIENT) answer_client_failure(g, &p, why);
        else if (p.kind == P_STATS) gather_part(g, p.gather, p.part, NULL);
        pending_free(&p);
    }
}

static void start_connect(up_t *u);
static void on_retry(uv_timer_t *t) { start_connect((up_t *)t->data); }
static void on_broken(uv_timer_t *t) {
    up_t *u = t->data;
    const char *why = u->broken;
    close_up(u, why ? why : "write failed"); /* (it re-arms the timer for the reconnect) */
}

static void close_up(up_t *u, const char *why) {
    if (u->state == U_DOWN) return;
    sp_gw_t *g = u->g;
    SP_LOGW("gateway: daemon %s: %s; its entities leave the merged view until it is back", u->name, why);
    u->state = U_DOWN;
    u->broken = NULL;
    fail_pending(u, "daemon unavailable");
    for (size_t k = 0; k < u->qn; k++) {
        free(u->q[u->qhead + k].bytes);
        free(u->q[u->qhead + k].ev);
    }
    u->qhead = u->qn = 0;
    u->nev = 0;
    sp_snap_view_reset(&u->view);
    u->synced = false;
    u->resyncing = false;
    sp_rpc_decoder_destroy(&u->dec);
    if (u->tcp_open) {
        uv_read_stop((uv_stream_t *)&u->tcp);
        uv_close((uv_handle_t *)&u->tcp, NULL);
        u->tcp_open = false;
    }
    if (!g->stopping) {
        u->backoff_ms = u->backoff_ms ? u->backoff_ms * 2 : 100;
        if (u->backoff_ms > 2000) u->backoff_ms = 2000;
        uv_timer_start(&u->retry, on_retry, u->backoff_ms, 0);
    }
}

/* ---------------------------------------------------------------- events */

static int ev_type(const msgpack_object *t) {
    if (obj_is(t, "WeaponFired")) return SP_EV_WEAPON_FIRED;
    if (obj_is(t, "ResourceMined")) return SP_EV_RESOURCE_MINED;
    if (obj_is(t, "ShipDestroyed")) return SP_EV_ENTITY_DESTROYED;
    return 0;
}

static void read_event(up_t *u, const msgpack_object *params) {
    sp_gw_t *g = u->g;
    if (params == NULL || params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size < 1) return;
    const msgpack_object *m = &params->via.array.ptr[0];
    const msgpack_object *type = map_get(m, "type");
    if (obj_is(type, "SystemAlert")) {
        /* The daemon's broadcast: this gateway's own alert came back from
         * the daemon it sent it to (from = our session there), skip it. */
        uint64_t from = obj_u64(map_get(m, "from"));
        const msgpack_object *msg = map_get(m, "message");
        if (from != 0 && from == u->session) return;
        if (msg == NULL || msg->type != MSGPACK_OBJECT_STR) return;
        sp_methods_broadcast_alert(g->d, msg->via.str.ptr, msg->via.str.size, (int)obj_u64(map_get(m, "priority")),
                                   (uint32_t)from);
        return;
    }
    int t = ev_type(type);
    if (t == 0 || u->nev >= SP_EVENTS_MAX) return; /* (a daemon sends snapshots between them) */
    if (grow((void **)&u->ev, &u->evcap, u->nev + 1, sizeof *u->ev) != 0) return;
    gw_event_t *e = &u->ev[u->nev++];
    memset(e, 0, sizeof *e);
    e->ev.type = (uint8_t)t;
    e->ev.tick = obj_u64(map_get(m, "tick"));
    e->ev.resource = -1;
    e->ev.kind = SP_KIND_SHIP;
    if (t == SP_EV_WEAPON_FIRED) {
        e->ev.subject = obj_u64(map_get(m, "ship_id"));
        e->ev.other = obj_u64(map_get(m, "target_id"));
        const msgpack_object *hit = map_get(m, "hit");
        e->ev.hit = hit && hit->type == MSGPACK_OBJECT_BOOLEAN && hit->via.boolean;
        e->ev.value = (float)obj_f(map_get(m, "damage"));
    } else if (t == SP_EV_RESOURCE_MINED) {
        e->ev.subject = obj_u64(map_get(m, "ship_id"));
        e->ev.other = obj_u64(map_get(m, "asteroid_id"));
        e->ev.value = (float)obj_f(map_get(m, "amount"));
        const msgpack_object *rt = map_get(m, "resource_type");
        e->ev.resource = rt && rt->type == MSGPACK_OBJECT_STR ? (int8_t)sp_resource_parse(rt->via.str.ptr, rt->via.str.size) : -1;
    } else {
        e->ev.subject = obj_u64(map_get(m, "ship_id"));
        e->ev.owner = (uint32_t)obj_u64(map_get(m, "owner"));
        e->ev.other = obj_u64(map_get(m, "by"));
        const msgpack_object *cause = map_get(m, "cause");
        e->ev.cause = obj_is(cause, "weapon")      ? SP_CAUSE_WEAPON
                      : obj_is(cause, "collision") ? SP_CAUSE_COLLISION
                                                   : SP_CAUSE_COMMAND;
    }
}

/* Before the snapshot they came with is applied (the view still holds the
 * subject where it was): positions and owners, then into the round's list. */
static void apply_events(up_t *u, gw_event_t *ev, size_t n) {
    sp_events_t *es = &u->g->d->events;
    for (size_t i = 0; i < n; i++) {
        sp_world_event_t *e = &ev[i].ev;
        const sp_snap_rec_t *s = sp_snap_view_find(&u->view, e->subject);
        if (s) {
            for (int k = 0; k < 3; k++) e->pos[k] = (float)s->pos[k] / (float)SP_FRAME_POS_SCALE;
            if (e->type != SP_EV_ENTITY_DESTROYED) e->owner = s->owner;
        }
        const sp_snap_rec_t *o = e->other ? sp_snap_view_find(&u->view, e->other) : NULL;
        e->other_owner = o ? o->owner : 0;
        sp_events_push(es, e);
    }
}

/* ---------------------------------------------------------------- merge */

static int cmp_key(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

static int add_row(sp_gw_t *g, size_t *n, const sp_frame_row_t *row, uint8_t src, uint64_t tick, uint8_t age) {
    if (*n == g->rcap) {
        size_t cap = g->rcap ? g->rcap * 2 : 1024;
        sp_frame_row_t *r = realloc(g->rows, cap * sizeof *r);
        if (r == NULL) return SP_ENOMEM;
        g->rows = r;
        uint8_t *s = realloc(g->rsrc, cap);
        if (s == NULL) return SP_ENOMEM;
        g->rsrc = s;
        uint64_t *t = realloc(g->rtick, cap * sizeof *t);
        if (t == NULL) return SP_ENOMEM;
        g->rtick = t;
        uint8_t *a = realloc(g->rage, cap);
        if (a == NULL) return SP_ENOMEM;
        g->rage = a;
        g->rcap = cap;
    }
    g->rows[*n] = *row;
    g->rsrc[*n] = src;
    g->rtick[*n] = tick;
    g->rage[*n] = age;
    (*n)++;
    return 0;
}

static void row_of_rec(sp_frame_row_t *o, const sp_snap_rec_t *r) {
    memset(o, 0, sizeof *o);
    o->id = r->id;
    memcpy(o->pos, r->pos, sizeof o->pos);
    memcpy(o->vel, r->vel, sizeof o->vel);
    o->hp = o->max_hp = r->hp;
    o->owner = r->owner;
    o->radius = (uint16_t)(r->radius > UINT16_MAX ? UINT16_MAX : r->radius);
    o->kind = r->kind;
    o->resource = -1;
}

static bool live(const up_t *u) { return u->state == U_READY && u->synced; }

static bool all_live(const sp_gw_t *g) {
    for (int i = 0; i < g->nup; i++)
        if (!live(&g->up[i])) return false;
    return true;
}

/* Rounds an entity missing from every view is still shown (see merge). */
#define CARRY_ROUNDS 3

static void retries_run(sp_gw_t *g, uint64_t expire);
static void removes_run(sp_gw_t *g);


/* The second word of a row's sort key: for equal ids the row of the view at
 * the newest tick sorts first (then the lowest index). */
static uint64_t rank(uint64_t tick, size_t index) {
    uint64_t t = tick > UINT32_MAX ? UINT32_MAX : tick;
    return ((uint64_t)(UINT32_MAX - t) << 32) | (uint64_t)index;
}

/* The union of the views at tick T as the gateway's round. */
static void merge(sp_gw_t *g, uint64_t T) {
    uint64_t t0 = sp_now_ns();
    size_t n = 0;
    bool behind = false;
    for (int i = 0; i < g->nup; i++) {
        up_t *u = &g->up[i];
        if (!live(u)) continue;
        if (u->view.tick < T) behind = true;
        for (size_t c = 0; c < u->view.ncells; c++) {
            const sp_snap_cell_t *cell = &u->view.cells[c];
            for (uint32_t k = 0; k < cell->len; k++) {
                sp_frame_row_t row;
                row_of_rec(&row, &cell->recs[k]);
                if (add_row(g, &n, &row, (uint8_t)i, u->view.tick, 0) != 0) goto oom;
            }
        }
    }
    size_t fresh = n, prev_n = g->frame ? g->frame->count : 0;
    if (grow((void **)&g->keys, &g->kcap, 2 * (n + prev_n) + 2, sizeof *g->keys) != 0) goto oom;
    for (size_t k = 0; k < n; k++) {
        g->keys[2 * k] = g->rows[k].id;
        g->keys[2 * k + 1] = rank(g->rtick[k], k);
    }
    qsort(g->keys, n, 2 * sizeof *g->keys, cmp_key);
    /* A view behind T (it skipped a round): entities of the previous merge
     * that no view holds now may be on their way into it (a hand-off it
     * has not shown yet): carry them until it catches up. */
    if (behind && g->frame) {
        const sp_frame_t *pf = g->frame;
        for (uint32_t r = 0; r < pf->count; r++) {
            uint64_t id = pf->rows[r].id;
            size_t lo = 0, hi = fresh; /* lower bound among the sorted fresh keys */
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (g->keys[2 * mid] < id) lo = mid + 1;
                else hi = mid;
            }
            if (lo < fresh && g->keys[2 * lo] == id) continue;
            /* Not forever: an entity destroyed meanwhile looks the same. A
             * hand-off shows in the receiver's next round or two. */
            if (g->age[r] >= CARRY_ROUNDS) continue;
            size_t at = n;
            if (add_row(g, &n, &pf->rows[r], g->src[r], 0, (uint8_t)(g->age[r] + 1)) != 0) goto oom;
            g->keys[2 * at] = id;
            g->keys[2 * at + 1] = rank(0, at);
            g->st.carried++;
        }
        if (n > fresh) qsort(g->keys, n, 2 * sizeof *g->keys, cmp_key);
    }
    sp_frame_row_t *out = malloc((n ? n : 1) * sizeof *out);
    uint8_t *src = malloc(n ? n : 1), *age = malloc(n ? n : 1);
    if (out == NULL || src == NULL || age == NULL) {
        free(out);
        free(src);
        free(age);
        goto oom;
    }
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        if (m > 0 && out[m - 1].id == g->keys[2 * k]) {
            g->st.dup_ids++; /* the newer view's record is already in */
            continue;
        }
        size_t i = (size_t)(g->keys[2 * k + 1] & UINT32_MAX);
        out[m] = g->rows[i];
        src[m] = g->rsrc[i];
        age[m] = g->rage[i];
        m++;
    }
    uint64_t pub = T + g->tick_off;
    sp_frame_t *f = sp_frame_from_rows(g->d->world, pub, out, (uint32_t)m);
    /* Session ids stay past every owner of this gateway's range in the
     * world (a restarted gateway must not give a new player an old
     * player's ships: hello takes its id from next_session). */
    uint64_t base = g->d->conf.session_base;
    for (size_t k = 0; f != NULL && k < m; k++) {
        uint64_t o = out[k].owner;
        if (o >= base && o < base + SP_GW_SESSION_SPAN && o >= g->d->next_session) g->d->next_session = o + 1;
    }
    free(out);
    if (f == NULL) {
        free(src);
        free(age);
        goto oom;
    }
    if (g->frame) sp_frame_release(g->frame);
    free(g->src);
    free(g->age);
    g->frame = f;
    g->src = src;
    g->age = age;
    g->merged_tick = T;
    g->pub_tick = pub;
    g->st.merges++;
    g->st.entities = (uint32_t)m;
    sp_world_set_tick(g->d->world, pub);
    if (!g->ready && all_live(g)) {
        g->ready = true;
        SP_LOGI("gateway: every daemon's world merged (tick %llu, %zu entities): sessions open",
                (unsigned long long)T, m);
    }
    sp_frame_retain(f); /* the round's reference */
    sp_frames_publish_frame(g->d, f);
    sp_stats_tick(&g->d->st, sp_now_ns() - t0); /* a gateway's "tick" is its merge */
    retries_run(g, 0);
    removes_run(g);
    return;
oom:
    SP_LOGE("gateway: out of memory merging tick %llu (round skipped)", (unsigned long long)T);
}

/* Is this snapshot's base_tick nil (a full snapshot)? params: [tick, base, ...]. */
static bool is_full(const char *p, size_t len) {
    const unsigned char *b = (const unsigned char *)p;
    if (len < 2) return false;
    size_t off = (b[0] & 0xf0) == 0x90 ? 1 : b[0] == 0xdc ? 3 : b[0] == 0xdd ? 5 : 0;
    if (off == 0 || off >= len) return false;
    size_t t = sp_rpc_object_size(b + off, len - off);
    return t > 0 && off + t < len && b[off + t] == 0xc0;
}

static void queue_drop_front(up_t *u) {
    qsnap_t *s = &u->q[u->qhead];
    free(s->bytes);
    free(s->ev);
    u->qhead++;
    if (--u->qn == 0) u->qhead = 0;
}

/* Apply u's queued snapshot at its head (its events first). */
static void apply_front(sp_gw_t *g, up_t *u) {
    qsnap_t *s = &u->q[u->qhead];
    apply_events(u, s->ev, s->nev);
    if (u->resyncing && !is_full(s->bytes, s->len)) {
        queue_drop_front(u); /* deltas until the full snapshot asked for: ignored */
        return;
    }
    int r = sp_snap_apply_bytes(&u->view, s->bytes, s->len, NULL);
    if (r == 0) {
        u->synced = true;
        u->resyncing = false;
    } else {
        /* Out of step with the daemon's view of us (or a bad snapshot):
         * hold nothing of it until a full snapshot (resync) comes. */
        SP_LOGW("gateway: daemon %s: snapshot of tick %llu does not apply (%s): resync", u->name,
                (unsigned long long)s->tick, sp_strerror(r));
        sp_snap_view_reset(&u->view);
        u->synced = false;
        u->resyncing = true;
        g->st.resyncs++;
        pending_t p = {.kind = P_RESYNC};
        up_request(u, &p, "resync", NULL, 0);
    }
    queue_drop_front(u);
}

/* Merge as far as every live upstream has come. An upstream whose newest
 * snapshot is more than STALL_ROUNDS rounds older than the newest of the
 * others (a daemon that stopped, or whose connection stalls) is not waited
 * for: its view stays as it is, behind, until its snapshots come again. */
#define STALL_ROUNDS 10
static void try_merge(sp_gw_t *g) {
    uint64_t lat[SP_GW_MAX_UPSTREAMS], tmax = 0, T = UINT64_MAX;
    bool cand[SP_GW_MAX_UPSTREAMS];
    size_t maxq = 0;
    for (int i = 0; i < g->nup; i++) {
        up_t *u = &g->up[i];
        cand[i] = u->state == U_READY && (u->synced || u->qn > 0); /* else: nothing to offer yet */
        if (!cand[i]) continue;
        lat[i] = u->qn ? u->q[u->qhead + u->qn - 1].tick : u->view.tick;
        if (lat[i] > tmax) tmax = lat[i];
        if (u->qn > maxq) maxq = u->qn;
    }
    uint64_t stall = STALL_ROUNDS * g->d->snap_every;
    if (tmax > 0 && tmax + stall < g->merged_tick) {
        /* The daemons' clock went back (the whole cluster restarted from
         * an older checkpoint, or from tick 0): merge from their ticks on,
         * published past the last round (the cell store's ticks only go
         * forward), so clients see a world that goes on. */
        SP_LOGW("gateway: the daemons' clock went back from %llu to %llu: merging from there",
                (unsigned long long)g->merged_tick, (unsigned long long)tmax);
        g->tick_off = g->pub_tick; /* the next round is published past it */
        g->merged_tick = 0;
    }
    for (int i = 0; i < g->nup; i++)
        if (cand[i] && lat[i] + stall >= tmax && lat[i] < T) T = lat[i];
    if (T == UINT64_MAX) return;
    if (maxq > SP_GW_MAX_QUEUE) {
        /* A queue this long means its daemon is ahead of one we still wait
         * for: go on with what the others have; the slow view stays behind. */
        for (int i = 0; i < g->nup; i++) {
            up_t *u = &g->up[i];
            if (cand[i] && u->qn > SP_GW_MAX_QUEUE) {
                uint64_t t = u->q[u->qhead + u->qn - 1 - SP_GW_MAX_QUEUE / 2].tick;
                if (t > T) T = t;
            }
        }
        g->st.forced++;
    }
    if (T <= g->merged_tick) return;
    for (int i = 0; i < g->nup; i++) {
        up_t *u = &g->up[i];
        while (u->qn && u->q[u->qhead].tick <= T) apply_front(g, u);
    }
    merge(g, T);
}

/* ---------------------------------------------------------------- commands */

/* The upstream holding entity id in the merged frame, or -1. */
static int holder(const sp_gw_t *g, uint64_t id, const sp_frame_row_t **row) {
    if (g->frame == NULL) return -1;
    long r = sp_frame_find(g->frame, id);
    if (r < 0) return -1;
    if (row) *row = &g->frame->rows[r];
    return g->src[r];
}

static void answer_client_failure(sp_gw_t *g, pending_t *p, const char *why) {
    g->st.failed++;
    char msg[160];
    snprintf(msg, sizeof msg, "internal error: %s (the command had no effect or its answer was lost)", why);
    client_error(g, p->conn, p->cmsgid, p->have_id, SP_RPCERR_INTERNAL, msg);
    client_done(p->conn);
    p->conn = NULL;
}

static const char *method_name(int id) { return sp_method_info(id)->name; }

/* Send a client's command p (its params in p->params) to upstream ui. */
static void send_command(sp_gw_t *g, pending_t *p, int ui) {
    up_t *u = &g->up[ui];
    p->up = ui;
    pending_t copy = *p;
    int r = up_request(u, &copy, method_name(p->method), p->params, p->params_len);
    if (r != 0) {
        answer_client_failure(g, p, r == SP_EAGAIN ? "daemon unavailable" : "out of memory");
        pending_free(p);
        return;
    }
    g->st.forwarded++;
}

/* A pending client command from q (a client reference taken, parked). */
static int make_pending(sp_gw_t *g, const sp_request_t *q, int method, uint64_t entity, pending_t *p) {
    (void)g;
    memset(p, 0, sizeof *p);
    p->kind = P_CLIENT;
    p->conn = &q->c->conn;
    p->cmsgid = q->msgid;
    p->have_id = q->have_id;
    p->method = method;
    p->entity = entity;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (msgpack_pack_object(&pk, *q->params) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return SP_ENOMEM;
    }
    p->params = sb.data; /* ownership moves to the pending entry */
    p->params_len = sb.size;
    sp_conn_retain(p->conn);
    q->c->gw_pending++;
    return 0;
}

/* Does this session own ship `id` in the merged world? Answers the error if
 * not, as the daemon would. */
static bool own_ship(sp_gw_t *g, const sp_request_t *q, uint64_t id) {
    const sp_frame_row_t *row = NULL;
    if (holder(g, id, &row) < 0) {
        sp_request_error(q, SP_RPCERR_NOT_FOUND, "no such entity");
        return false;
    }
    if (row->kind != SP_KIND_SHIP) {
        sp_request_error(q, SP_RPCERR_INVALID_PARAMS, "not a ship");
        return false;
    }
    if (row->owner != q->c->session.id || q->c->session.id == 0) {
        sp_request_error(q, SP_RPCERR_FORBIDDEN, "not your ship");
        return false;
    }
    return true;
}

void sp_gw_command(sp_gw_t *g, const sp_request_t *q, int method) {
    uint64_t id;
    sp_rpc_param_uint(q->params, 0, &id, NULL);
    if (method != SP_METHOD_INSPECT && method != SP_METHOD_REMOVE && !own_ship(g, q, id)) return;
    int ui = holder(g, id, NULL);
    if (ui < 0) {
        sp_request_error(q, SP_RPCERR_NOT_FOUND, "no such entity");
        return;
    }
    if (method == SP_METHOD_FIRE || method == SP_METHOD_MINE) {
        /* The daemon resolves the action against its own world: a target
         * another daemon holds is not there (ghosts, which would carry
         * border entities to the neighbour, are not built). */
        uint64_t target;
        sp_rpc_param_uint(q->params, 1, &target, NULL);
        int ti = holder(g, target, NULL);
        if (ti < 0) {
            sp_request_error(q, SP_RPCERR_NOT_FOUND, "no such entity");
            return;
        }
        /* (A target another daemon holds: the ship's daemon resolves the
         * action against its ghost, cluster.c.) */
    }
    pending_t p;
    if (make_pending(g, q, method, id, &p) != 0) {
        sp_request_error(q, SP_RPCERR_INTERNAL, "internal error: out of memory");
        return;
    }
    send_command(g, &p, ui);
}

void sp_gw_spawn(sp_gw_t *g, const sp_request_t *q) {
    sp_session_t *s = &q->c->session;
    sp_gw_prune_ships(g, s);
    if (s->nships >= SP_LIMIT_MAX_SHIPS) {
        sp_request_error(q, SP_RPCERR_LIMIT, "limit reached: at most %d ships per session", s->nships);
        return;
    }
    if (q->np == 2) {
        sp_request_error(q, SP_RPCERR_FORBIDDEN, "forbidden: a gateway spawns ships for its own sessions only");
        return;
    }
    /* The daemon to ask: the one holding the most entities in the position's
     * interest cell (it likely owns the place), else round robin; the
     * cluster hands the ship to the cell's owner at once if need be. */
    int ui = -1;
    if (!sp_rpc_param_is_nil(q->params, 0) && q->np >= 1) {
        double v[3];
        sp_rpc_param_vec3(q->params, 0, v, NULL);
        size_t best = 0;
        for (int i = 0; i < g->nup; i++) {
            up_t *u = &g->up[i];
            if (!live(u)) continue;
            sp_snap_grid_t grid = g->d->cells.grid;
            const sp_snap_cell_t *c = sp_snap_view_cell(&u->view, sp_snap_grid_cell(&grid, v[0], v[1], v[2]));
            if (c && c->len > best) {
                best = c->len;
                ui = i;
            }
        }
    }
    for (int k = 0; ui < 0 && k < g->nup; k++) {
        int i = (g->next_spawn + k) % g->nup;
        if (live(&g->up[i])) ui = i;
    }
    if (ui < 0) {
        sp_request_error(q, SP_RPCERR_INTERNAL, "internal error: no daemon available");
        return;
    }
    g->next_spawn = (ui + 1) % g->nup;
    pending_t p;
    if (make_pending(g, q, SP_METHOD_SPAWN, 0, &p) != 0) {
        sp_request_error(q, SP_RPCERR_INTERNAL, "internal error: out of memory");
        return;
    }
    /* Its params as the daemon takes them: [pos | nil, owner]. */
    free(p.params);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int e = msgpack_pack_array(&pk, 2);
    e |= q->np >= 1 ? msgpack_pack_object(&pk, q->params->via.array.ptr[0]) : msgpack_pack_nil(&pk);
    e |= msgpack_pack_uint32(&pk, s->id);
    p.params = sb.data;
    p.params_len = sb.size;
    p.owner = s->id;
    if (e != 0) {
        answer_client_failure(g, &p, "out of memory");
        pending_free(&p);
        return;
    }
    send_command(g, &p, ui);
}

/* A client command's answer from a daemon. */
static void relay(sp_gw_t *g, pending_t *p, const sp_rpc_msg_t *m) {
    sp_conn_t *c = p->conn;
    bool not_found = m->error && m->error->type == MSGPACK_OBJECT_MAP &&
                     obj_u64(map_get(m->error, "code")) == SP_RPCERR_NOT_FOUND;
    if (not_found && p->method != SP_METHOD_SPAWN && p->tries < SP_GW_RETRIES && c && !c->closing) {
        /* The entity may have changed daemon between our check and its
         * command (a hand-off): ask again where it is after the next merge. */
        p->tries++;
        g->st.retried++;
        if (grow((void **)&g->retry, &g->retry_cap, g->nretry + 1, sizeof *g->retry) == 0) {
            p->sent_ns = sp_now_ns(); /* (now: when it began to wait for a merge) */
            g->retry[g->nretry++] = *p;
            p->params = NULL; /* moved */
            p->conn = NULL;
            return;
        }
    }
    if (p->method == SP_METHOD_SPAWN && (m->error == NULL || m->error->type == MSGPACK_OBJECT_NIL) && c) {
        uint64_t ship = obj_u64(map_get(m->result, "ship_id"));
        sp_client_t *cl = sp_client_of(c);
        if (ship && !c->closing && cl->session.state == SP_SESSION_READY && cl->session.id == p->owner &&
            sp_session_add_ship(&cl->session, ship) == 0)
            cl->session.gw_added_tick = g->merged_tick;
        else if (ship) sp_gw_end_ships(g, &ship, 1); /* its client is gone (or resumed elsewhere) */
    }
    if (p->have_id && c) {
        msgpack_sbuffer_clear(&g->sb);
        int e = msgpack_pack_array(&g->pk, 4) | msgpack_pack_uint8(&g->pk, 1) | msgpack_pack_uint32(&g->pk, p->cmsgid);
        e |= m->error ? msgpack_pack_object(&g->pk, *m->error) : msgpack_pack_nil(&g->pk);
        e |= m->result ? msgpack_pack_object(&g->pk, *m->result) : msgpack_pack_nil(&g->pk);
        if (e == 0) to_client(g, c);
        else client_error(g, c, p->cmsgid, true, SP_RPCERR_INTERNAL, "internal error: out of memory");
        msgpack_sbuffer_clear(&g->sb);
    }
    client_done(c);
    p->conn = NULL;
}

/* Re-route the commands waiting for a merge (after one), or answer those
 * queued before `expire` NOT_FOUND (on_ping: no merge came for a second, so
 * the entity is nowhere to be found; 0: none expire). */
static void retries_run(sp_gw_t *g, uint64_t expire) {
    size_t n = g->nretry;
    if (n == 0) return;
    pending_t *v = g->retry;
    g->retry = NULL;
    g->nretry = g->retry_cap = 0;
    for (size_t i = 0; i < n; i++) {
        pending_t *p = &v[i];
        int ui = holder(g, p->entity, NULL);
        /* fire and mine: a ship still at the daemon that answered NOT_FOUND
         * did not move; the target is what is gone. */
        bool same = ui == p->up && (p->method == SP_METHOD_FIRE || p->method == SP_METHOD_MINE);
        if (expire && p->sent_ns >= expire) { /* not yet: keep waiting for a merge */
            if (grow((void **)&g->retry, &g->retry_cap, g->nretry + 1, sizeof *g->retry) == 0) {
                g->retry[g->nretry++] = *p;
                continue;
            }
        }
        if (ui < 0 || p->conn == NULL || p->conn->closing || same || expire) {
            client_error(g, p->conn, p->cmsgid, p->have_id, SP_RPCERR_NOT_FOUND, "no such entity");
            client_done(p->conn);
            pending_free(p);
            continue;
        }
        send_command(g, p, ui);
    }
    free(v);
}

void sp_gw_prune_ships(sp_gw_t *g, sp_session_t *s) {
    /* A daemon that is down holds its ships out of the frame: not gone. */
    if (g->frame == NULL || !all_live(g)) return;
    int k = 0;
    for (int i = 0; i < s->nships; i++) {
        const sp_frame_row_t *row = NULL;
        /* A ship spawned since the last merge is not in the frame yet: kept
         * while the frame is older than its spawn could be seen (ids only
         * grow per node, so "not there yet" and "gone" look alike for one
         * round; a destroyed ship goes at the next prune). */
        if (holder(g, s->ships[i], &row) >= 0 || g->merged_tick <= s->gw_added_tick + 4 * g->d->snap_every)
            s->ships[k++] = s->ships[i];
    }
    s->nships = k;
}

/* Ask the daemon holding ship `id` (all live ones when none is known) to
 * remove it; tries: how often it was asked before. */
static void remove_ship(sp_gw_t *g, uint64_t id, int tries) {
    char buf[16];
    msgpack_sbuffer sb = {.size = 0, .data = buf, .alloc = sizeof buf};
    /* [id]: a fixarray of one uint64 (at most 10 bytes) */
    buf[0] = (char)0x91;
    buf[1] = (char)0xcf;
    for (int k = 0; k < 8; k++) buf[2 + k] = (char)(id >> (56 - 8 * k));
    sb.size = 10;
    int ui = holder(g, id, NULL);
    for (int k = 0; k < g->nup; k++) {
        if (ui >= 0 && k != ui) continue;
        if (ui < 0 && !live(&g->up[k])) continue; /* not merged yet: its daemon is unknown, ask all */
        pending_t p = {.kind = P_REMOVE, .entity = id, .tries = tries};
        up_request(&g->up[k], &p, "remove", sb.data, sb.size);
    }
}

void sp_gw_end_ships(sp_gw_t *g, const uint64_t *ships, int n) {
    for (int i = 0; i < n; i++) remove_ship(g, ships[i], 0);
}

void sp_gw_end_sessions(sp_gw_t *g) {
    sp_daemon_t *d = g->d;
    size_t n = 0;
    for (sp_conn_t *k = d->net.conns; k; k = k->next) {
        sp_session_t *s = &sp_client_of(k)->session;
        if (s->state != SP_SESSION_READY) continue;
        sp_gw_end_ships(g, s->ships, s->nships);
        n += (size_t)s->nships;
        s->nships = 0;
    }
    for (size_t i = 0; i < d->detached.n; i++) {
        sp_session_rec_t *r = &d->detached.v[i];
        sp_gw_end_ships(g, r->ships, r->nships);
        n += (size_t)r->nships;
        r->nships = 0;
    }
    if (n) SP_LOGI("gateway: %zu ship(s) of its sessions removed from the daemons", n);
}

/* A remove answered NOT_FOUND: the ship may be between two daemons. */
static void remove_again(sp_gw_t *g, const pending_t *p) {
    if (p->tries >= SP_GW_RETRIES || holder(g, p->entity, NULL) < 0) return; /* gone: nothing to remove */
    if (grow((void **)&g->rm, &g->rm_cap, g->nrm + 1, sizeof *g->rm) != 0) return;
    g->rm[g->nrm].id = p->entity;
    g->rm[g->nrm].tries = p->tries + 1;
    g->nrm++;
}

static void removes_run(sp_gw_t *g) {
    size_t n = g->nrm;
    if (n == 0) return;
    struct rm *v = g->rm;
    g->rm = NULL;
    g->nrm = g->rm_cap = 0;
    for (size_t i = 0; i < n; i++)
        if (holder(g, v[i].id, NULL) >= 0) remove_ship(g, v[i].id, v[i].tries);
    free(v);
}

void sp_gw_alert(sp_gw_t *g, const char *text, size_t len, int prio) {
    for (int i = 0; i < g->nup; i++) {
        up_t *u = &g->up[i];
        if (u->state != U_READY) continue;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (msgpack_pack_array(&pk, 2) == 0 && msgpack_pack_str_with_body(&pk, text, len) == 0 &&
            msgpack_pack_int(&pk, prio) == 0) {
            pending_t p = {.kind = P_QUIET};
            up_request(u, &p, "alert", sb.data, sb.size);
        }
        msgpack_sbuffer_destroy(&sb);
        return; /* one daemon: it broadcasts to its clients, every other gateway among them */
    }
}

/* ---------------------------------------------------------------- stats */

/* Answer the client with the parts in so far (missing ones nil). */
static void gather_answer(sp_gw_t *g, gather_t *ga) {
    if (ga->answered) return;
    ga->answered = true;
    sp_daemon_t *d = g->d;
    sp_result_stats_t res;
    memset(&res, 0, sizeof res);
    sp_methods_stats_values(d, res.values);
    res.values[SP_STAT_ENTITIES].u = g->st.entities;
    if (ga->have_id && ga->conn) {
        msgpack_packer *pk = &g->pk;
        msgpack_sbuffer_clear(&g->sb);
        int e = sp_rpc_pack_response_ok_begin(pk, ga->msgid);
        e |= msgpack_pack_map(pk, SP_STAT__COUNT + 3);
        e |= sp_rpc_pack_stat_entries(pk, res.values);
        /* The gateway's own figures. */
        e |= sp_rpc_pack_cstr(pk, "gateway") | msgpack_pack_map(pk, 10);
        e |= sp_rpc_pack_cstr(pk, "upstreams") | msgpack_pack_uint32(pk, (uint32_t)g->nup);
        uint32_t nl = 0;
        for (int i = 0; i < g->nup; i++) nl += live(&g->up[i]);
        e |= sp_rpc_pack_cstr(pk, "live") | msgpack_pack_uint32(pk, nl);
        e |= sp_rpc_pack_cstr(pk, "merges") | msgpack_pack_uint64(pk, g->st.merges);
        e |= sp_rpc_pack_cstr(pk, "dup_ids") | msgpack_pack_uint64(pk, g->st.dup_ids);
        e |= sp_rpc_pack_cstr(pk, "carried") | msgpack_pack_uint64(pk, g->st.carried);
        e |= sp_rpc_pack_cstr(pk, "forced") | msgpack_pack_uint64(pk, g->st.forced);
        e |= sp_rpc_pack_cstr(pk, "resyncs") | msgpack_pack_uint64(pk, g->st.resyncs);
        e |= sp_rpc_pack_cstr(pk, "forwarded") | msgpack_pack_uint64(pk, g->st.forwarded);
        e |= sp_rpc_pack_cstr(pk, "retried") | msgpack_pack_uint64(pk, g->st.retried);
        e |= sp_rpc_pack_cstr(pk, "failed") | msgpack_pack_uint64(pk, g->st.failed);
        /* Each daemon's own map, as it answered (nil: it did not). */
        e |= sp_rpc_pack_cstr(pk, "daemons") | msgpack_pack_array(pk, (size_t)g->nup);
        uint64_t ents = 0, clients = 0, tmin = UINT64_MAX, tmax = 0, waits = 0;
        double dil = 1e9, p99 = 0;
        int answered = 0;
        for (int i = 0; i < g->nup; i++) {
            e |= msgpack_pack_map(pk, 2);
            e |= sp_rpc_pack_cstr(pk, "address") | sp_rpc_pack_cstr(pk, g->up[i].name);
            e |= sp_rpc_pack_cstr(pk, "stats");
            msgpack_sbuffer *part = &ga->part[i];
            if (part->size == 0) {
                e |= msgpack_pack_nil(pk);
                continue;
            }
            e |= msgpack_sbuffer_write(&g->sb, part->data, part->size);
            msgpack_unpacked up;
            msgpack_unpacked_init(&up);
            if (msgpack_unpack_next(&up, part->data, part->size, NULL) == MSGPACK_UNPACK_SUCCESS) {
                const msgpack_object *o = &up.data;
                answered++;
                ents += obj_u64(map_get(o, "entities"));
                clients += obj_u64(map_get(o, "clients"));
                waits += obj_u64(map_get(o, "cluster_waits"));
                uint64_t t = obj_u64(map_get(o, "tick"));
                if (t < tmin) tmin = t;
                if (t > tmax) tmax = t;
                double dv = obj_f(map_get(o, "dilation")), pv = obj_f(map_get(o, "tick_ms_p99"));
                if (dv < dil) dil = dv;
                if (pv > p99) p99 = pv;
            }
            msgpack_unpacked_destroy(&up);
        }
        /* The cluster's figures: sums and extremes over the daemons that answered. */
        e |= sp_rpc_pack_cstr(pk, "cluster") | msgpack_pack_map(pk, 8);
        e |= sp_rpc_pack_cstr(pk, "daemons") | msgpack_pack_uint32(pk, (uint32_t)g->nup);
        e |= sp_rpc_pack_cstr(pk, "answered") | msgpack_pack_uint32(pk, (uint32_t)answered);
        e |= sp_rpc_pack_cstr(pk, "entities") | msgpack_pack_uint64(pk, ents);
        e |= sp_rpc_pack_cstr(pk, "daemon_clients") | msgpack_pack_uint64(pk, clients);
        e |= sp_rpc_pack_cstr(pk, "tick_min") | msgpack_pack_uint64(pk, answered ? tmin : 0);
        e |= sp_rpc_pack_cstr(pk, "tick_max") | msgpack_pack_uint64(pk, tmax);
        e |= sp_rpc_pack_cstr(pk, "dilation_min") | msgpack_pack_double(pk, answered ? dil : 0);
        e |= sp_rpc_pack_cstr(pk, "tick_ms_p99_max") | msgpack_pack_double(pk, p99);
        (void)waits;
        if (e == 0) to_client(g, ga->conn);
        else client_error(g, ga->conn, ga->msgid, true, SP_RPCERR_INTERNAL, "internal error: out of memory");
        msgpack_sbuffer_clear(&g->sb);
    }
    client_done(ga->conn);
    ga->conn = NULL;
}

/* Every part is in (answered or failed): answer if not yet, then free. */
static void gather_finish(sp_gw_t *g, gather_t *ga) {
    gather_answer(g, ga);
    if (ga->prev) ga->prev->next = ga->next;
    else g->gathers = ga->next;
    if (ga->next) ga->next->prev = ga->prev;
    for (int i = 0; i < g->nup; i++) msgpack_sbuffer_destroy(&ga->part[i]);
    free(ga->part);
    free(ga);
}

static void gather_part(sp_gw_t *g, gather_t *ga, int part, const msgpack_object *result) {
    if (result && result->type == MSGPACK_OBJECT_MAP) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &ga->part[part], msgpack_sbuffer_write);
        if (msgpack_pack_object(&pk, *result) != 0) msgpack_sbuffer_clear(&ga->part[part]);
    }
    if (--ga->left == 0) gather_finish(g, ga);
}

void sp_gw_stats(sp_gw_t *g, const sp_request_t *q) {
    gather_t *ga = calloc(1, sizeof *ga);
    if (ga) ga->part = calloc((size_t)g->nup, sizeof *ga->part);
    if (ga == NULL || ga->part == NULL) {
        free(ga);
        sp_request_error(q, SP_RPCERR_INTERNAL, "internal error: out of memory");
        return;
    }
    for (int i = 0; i < g->nup; i++) msgpack_sbuffer_init(&ga->part[i]);
    ga->conn = &q->c->conn;
    ga->msgid = q->msgid;
    ga->have_id = q->have_id;
    ga->left = g->nup + 1; /* one for this call: parts that fail at once cannot finish it early */
    sp_conn_retain(ga->conn);
    q->c->gw_pending++;
    ga->t0 = sp_now_ns();
    ga->next = g->gathers;
    if (g->gathers) g->gathers->prev = ga;
    g->gathers = ga;
    for (int i = 0; i < g->nup; i++) {
        pending_t p = {.kind = P_STATS, .gather = ga, .part = i};
        if (up_request(&g->up[i], &p, "stats", NULL, 0) != 0) ga->left--;
    }
    if (--ga->left == 0) gather_finish(g, ga);
}

/* ---------------------------------------------------------------- reading */

static void on_response(up_t *u, const sp_rpc_msg_t *m) {
    sp_gw_t *g = u->g;
    pending_t *front = fifo_front(u);
    if (front == NULL || front->msgid != m->msgid) {
        close_up(u, "answer out of order");
        return;
    }
    pending_t p = *front;
    fifo_pop(u);
    bool ok = m->error == NULL || m->error->type == MSGPACK_OBJECT_NIL;
    switch (p.kind) {
    case P_HELLO:
        if (!ok) {
            SP_LOGE("gateway: daemon %s refused the gateway's hello (is the admin token the same there?)", u->name);
            close_up(u, "hello refused");
            break;
        }
        u->session = (uint32_t)obj_u64(map_get(m->result, "session"));
        {
            /* Every entity of the world: no ship, a radius past the world's corners. */
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            double r = g->d->conf.world_size; /* > half the cube's diagonal (0.87 of it) */
            int e = msgpack_pack_array(&pk, 2) | msgpack_pack_double(&pk, r) | msgpack_pack_array(&pk, 3) |
                    msgpack_pack_double(&pk, 0) | msgpack_pack_double(&pk, 0) | msgpack_pack_double(&pk, 0);
            pending_t s = {.kind = P_SUBSCRIBE};
            if (e == 0) up_request(u, &s, "subscribe", sb.data, sb.size);
            msgpack_sbuffer_destroy(&sb);
        }
        break;
    case P_SUBSCRIBE:
        if (!ok) {
            close_up(u, "subscribe refused");
            break;
        }
        u->state = U_READY;
        u->backoff_ms = 0;
        SP_LOGI("gateway: daemon %s connected (session %u)", u->name, u->session);
        break;
    case P_CLIENT: relay(g, &p, m); break;
    case P_REMOVE:
        if (!ok && obj_u64(map_get(m->error, "code")) == SP_RPCERR_NOT_FOUND) remove_again(g, &p);
        break;
    case P_STATS: gather_part(g, p.gather, p.part, ok ? m->result : NULL); break;
    default: break;
    }
    pending_free(&p);
}

static void on_snapshot(up_t *u, const sp_rpc_msg_t *m) {
    const unsigned char *b = m->params_bytes;
    size_t len = m->params_len;
    /* Its tick, the params' first element. */
    size_t off = (b[0] & 0xf0) == 0x90 ? 1 : b[0] == 0xdc ? 3 : b[0] == 0xdd ? 5 : 0;
    msgpack_unpacked un;
    msgpack_unpacked_init(&un);
    uint64_t tick = 0;
    if (off && msgpack_unpack_next(&un, (const char *)b + off, len - off, NULL) == MSGPACK_UNPACK_SUCCESS)
        tick = obj_u64(&un.data);
    msgpack_unpacked_destroy(&un);
    if (tick == 0) {
        close_up(u, "unreadable snapshot");
        return;
    }
    if (u->qn >= 4 * SP_GW_MAX_QUEUE) {
        /* Far ahead of what is merged (a daemon with a clock of its own):
         * start over with it (reconnect, full snapshot). */
        close_up(u, "its snapshots are too far ahead of the other daemons'");
        return;
    }
    if (u->qhead + u->qn == u->qcap) {
        if (u->qhead > 0) {
            memmove(u->q, u->q + u->qhead, u->qn * sizeof *u->q);
            u->qhead = 0;
        } else if (grow((void **)&u->q, &u->qcap, u->qn + 1, sizeof *u->q) != 0) {
            close_up(u, "out of memory");
            return;
        }
    }
    qsnap_t *s = &u->q[u->qhead + u->qn];
    s->tick = tick;
    s->len = len;
    s->bytes = malloc(len);
    if (s->bytes == NULL) {
        close_up(u, "out of memory");
        return;
    }
    memcpy(s->bytes, b, len);
    s->ev = u->ev; /* the events read since the previous snapshot come with it */
    s->nev = u->nev;
    u->ev = NULL;
    u->nev = u->evcap = 0;
    u->qn++;
    try_merge(u->g);
}

static void on_up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    static char rbuf[1 << 16]; /* the loop's thread only; consumed (copied by the decoder) in on_up_read */
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    up_t *u = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        close_up(u, nread == UV_EOF ? "closed the connection" : uv_strerror((int)nread));
        return;
    }
    (void)sp_rpc_decoder_feed(&u->dec, buf->base, (size_t)nread); /* a stream error comes out of next below */
    sp_rpc_msg_t m;
    int r;
    while (u->state != U_DOWN && (r = sp_rpc_decoder_next_lazy(&u->dec, &m)) != 0) {
        if (r < 0) {
            close_up(u, r == SP_EMSGSIZE ? "message over the client limit" : "unreadable stream");
            return;
        }
        if (m.type == SP_RPC_RESPONSE) {
            on_response(u, &m);
        } else if (m.type == SP_RPC_NOTIFY) {
            if (m.lazy && m.method_len == 8 && memcmp(m.method, "snapshot", 8) == 0) {
                on_snapshot(u, &m);
                continue;
            }
            if (m.lazy && sp_rpc_decoder_unpack(&u->dec, &m) != 0) continue;
            if (m.method_len == 5 && memcmp(m.method, "event", 5) == 0) read_event(u, m.params);
            else if (m.method_len == 8 && memcmp(m.method, "snapshot", 8) == 0) {
                /* (not lazy: written in a form next_lazy does not take; never from our daemons) */
            } else if (m.method_len == 5 && memcmp(m.method, "error", 5) == 0) {
                SP_LOGW("gateway: daemon %s sent an error notification", u->name);
            }
        }
    }
}

static void on_connect(uv_connect_t *req, int status) {
    up_t *u = req->data;
    if (u->g->stopping) return;
    if (status < 0) {
        u->state = U_CONNECTING; /* so close_up logs and retries */
        close_up(u, uv_strerror(status));
        return;
    }
    u->state = U_HELLO;
    uv_tcp_nodelay(&u->tcp, 1);
    sp_rpc_decoder_init(&u->dec, SP_RPC_CLIENT_MAX_MESSAGE);
    uv_read_start((uv_stream_t *)&u->tcp, on_up_alloc, on_up_read);
    sp_daemon_t *d = u->g->d;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int e = msgpack_pack_array(&pk, 2) | sp_rpc_pack_cstr(&pk, "spacesim-gw");
    e |= d->conf.have_admin_token ? sp_rpc_pack_cstr(&pk, d->conf.admin_token) : msgpack_pack_nil(&pk);
    pending_t p = {.kind = P_HELLO};
    if (e == 0) up_request(u, &p, "hello", sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void start_connect(up_t *u) {
    if (u->g->stopping || u->state != U_DOWN) return;
    if (u->tcp_open) return;
    uv_tcp_init(u->g->d->loop, &u->tcp);
    u->tcp.data = u;
    u->tcp_open = true;
    u->creq.data = u;
    u->state = U_CONNECTING;
    int r = uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&u->addr, on_connect);
    if (r < 0) close_up(u, uv_strerror(r));
}

/* A daemon that leaves a request unanswered this long is treated as down
 * (its clients' requests fail with INTERNAL instead of waiting forever). */
#define UP_ANSWER_TIMEOUT_NS 10000000000ull

/* Once a second. Keepalive: the daemon closes a client silent for
 * --idle-timeout. Liveness: the oldest request of each daemon. */
/* A client's stats wait at most this long for the daemons' parts: a daemon
 * that has not answered by then is nil in "daemons". */
#define STATS_WAIT_NS 2000000000ull

static void on_ping(uv_timer_t *t) {
    sp_gw_t *g = t->data;
    uint64_t now = sp_now_ns();
    for (gather_t *ga = g->gathers; ga; ga = ga->next)
        if (!ga->answered && now - ga->t0 > STATS_WAIT_NS) gather_answer(g, ga);
    retries_run(g, now - 1000000000ull); /* no merge placed them within a second */
    for (int i = 0; i < g->nup; i++) {
        up_t *u = &g->up[i];
        const pending_t *front = fifo_front(u);
        if (u->state != U_DOWN && front && now - front->sent_ns > UP_ANSWER_TIMEOUT_NS) {
            close_up(u, "no answer for 10 s");
            continue;
        }
        if (u->state != U_READY || now - u->last_tx_ns < 10000000000ull) continue;
        pending_t p = {.kind = P_PING};
        up_request(u, &p, "ping", NULL, 0);
    }
}

/* ---------------------------------------------------------------- life */

int sp_gw_open(sp_daemon_t *d, const char *list, sp_gw_t **out) {
    sp_gw_t *g = calloc(1, sizeof *g);
    if (g == NULL) return SP_ENOMEM;
    g->d = d;
    g->up = calloc(SP_GW_MAX_UPSTREAMS, sizeof *g->up);
    if (g->up == NULL) {
        free(g);
        return SP_ENOMEM;
    }
    msgpack_sbuffer_init(&g->sb);
    msgpack_packer_init(&g->pk, &g->sb, msgpack_sbuffer_write);
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[96];
        if (len == 0 || len >= sizeof item || g->nup == SP_GW_MAX_UPSTREAMS) goto bad;
        memcpy(item, p, len);
        item[len] = 0;
        char *colon = strrchr(item, ':');
        if (colon == NULL) goto bad;
        *colon = 0;
        const char *host = item[0] == '[' ? item + 1 : item;
        if (item[0] == '[' && colon[-1] == ']') colon[-1] = 0;
        char *e = NULL;
        long port = strtol(colon + 1, &e, 10);
        if (*e || port < 1 || port > 65535) goto bad;
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL) {
            fprintf(stderr, "spacesim-gw: cannot resolve upstream '%s'\n", host);
            goto fail;
        }
        up_t *u = &g->up[g->nup];
        memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
        u->g = g;
        u->idx = g->nup;
        snprintf(u->name, sizeof u->name, "%.*s", (int)len, p);
        sp_snap_view_init(&u->view);
        g->nup++;
        p += len;
        if (*p == ',') p++;
    }
    if (g->nup == 0) goto bad;
    *out = g;
    return 0;
bad:
    fprintf(stderr, "spacesim-gw: invalid --upstream '%s': expected HOST:PORT[,HOST:PORT...] (at most %d)\n", list,
            SP_GW_MAX_UPSTREAMS);
fail:
    for (int i = 0; i < g->nup; i++) sp_snap_view_destroy(&g->up[i].view);
    msgpack_sbuffer_destroy(&g->sb);
    free(g->up);
    free(g);
    return SP_EINVAL;
}

int sp_gw_start(sp_gw_t *g) {
    g->started_ns = sp_now_ns();
    uv_timer_init(g->d->loop, &g->ping);
    g->ping.data = g;
    uv_timer_start(&g->ping, on_ping, 1000, 1000);
    for (int i = 0; i < g->nup; i++) {
        up_t *u = &g->up[i];
        uv_timer_init(g->d->loop, &u->retry);
        u->retry.data = u;
        u->state = U_DOWN;
        start_connect(u);
    }
    SP_LOGI("gateway: %d daemon(s) upstream; session ids from %llu", g->nup, (unsigned long long)g->d->next_session);
    return 0;
}

void sp_gw_stop(sp_gw_t *g) {
    if (g->stopping) return;
    g->stopping = true;
    for (int i = 0; i < g->nup; i++) {
        up_t *u = &g->up[i];
        if (u->state != U_DOWN) close_up(u, "gateway stopping");
        if (u->tcp_open) {
            uv_close((uv_handle_t *)&u->tcp, NULL);
            u->tcp_open = false;
        }
        uv_close((uv_handle_t *)&u->retry, NULL);
    }
    uv_close((uv_handle_t *)&g->ping, NULL);
    for (size_t i = 0; i < g->nretry; i++) {
        client_done(g->retry[i].conn);
        pending_free(&g->retry[i]);
    }
    g->nretry = 0;
}

void sp_gw_free(sp_gw_t *g) {
    if (g == NULL) return;
    for (int i = 0; i < g->nup; i++) {
        up_t *u = &g->up[i];
        sp_snap_view_destroy(&u->view);
        free(u->fifo);
        free(u->q);
        free(u->ev);
        sp_rpc_decoder_destroy(&u->dec);
    }
    if (g->frame) sp_frame_release(g->frame);
    free(g->src);
    free(g->age);
    free(g->rows);
    free(g->rsrc);
    free(g->rage);
    free(g->rtick);
    free(g->keys);
    free(g->retry);
    free(g->rm);
    msgpack_sbuffer_destroy(&g->sb);
    free(g->up);
    free(g);
}

bool sp_gw_ready(sp_gw_t *g) {
    if (!g->ready && g->st.merges > 0 && sp_now_ns() - g->started_ns > 10000000000ull) {
        g->ready = true;
        SP_LOGW("gateway: not every daemon is merged 10 s after the start: sessions open anyway");
    }
    return g->ready;
}

double sp_gw_dilation(sp_gw_t *g, uint64_t now) {
    double r = 1.0;
    if (g->dil_ns && now > g->dil_ns && g->merged_tick >= g->dil_tick)
        r = (double)(g->merged_tick - g->dil_tick) / ((double)(now - g->dil_ns) / 1e9 * g->d->conf.tick_hz);
    if (r > 1.0 && r < 1.05) r = 1.0; /* a round's jitter */
    g->dil_tick = g->merged_tick;
    g->dil_ns = now;
    return r;
}

