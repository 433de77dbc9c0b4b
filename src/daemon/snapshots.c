/* snapshots.c: per-client snapshot and event jobs (see snapshots.h). */
#include "daemon/snapshots.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/clients.h"
#include "daemon/interest.h"
#include "daemon/log.h"
#include "rpc.h"
#include "sim/frame.h"
#include "snapshot.h"
#include "spacesim/error.h"

/* The wire quantization (spacesim_proto.def) must be the frame's: views are
 * filled from frame rows without conversion (view_from_frame). */
#define SP__QUANT_CHECK(id, steps, meaning) \
    _Static_assert((steps) == SP_FRAME_##id##_SCALE, "quantization of " #id " differs from sim/frame.h");
SP_PROTO_QUANT_MAP(SP__QUANT_CHECK)
#undef SP__QUANT_CHECK

/* Scratch slots (pool.h; airound.c uses slot 1): the query's rows, the
 * bitmap that unites several spheres, the keys of the entering budget. */
#define SCRATCH_ROWS 0
#define SCRATCH_BITS 2
#define SCRATCH_KEYS 3

/* A grown-on-demand array of uint64 in a scratch slot. */
typedef struct u64buf {
    size_t cap;
    uint64_t v[];
} u64buf_t;

/* Room for n values in slot, or NULL on OOM (the slot then keeps its old
 * buffer). zeroed: a new buffer is zero-filled (the bitmap's invariant: it
 * is all zero between jobs, so only a grown one needs clearing). */
static uint64_t *u64_reserve(void **slot, size_t n, bool zeroed) {
    u64buf_t *b = *slot;
    if (b != NULL && b->cap >= n) return b->v;
    size_t cap = b ? b->cap : 1024;
    while (cap < n) cap *= 2;
    u64buf_t *nb = zeroed ? calloc(1, sizeof *nb + cap * sizeof nb->v[0]) : malloc(sizeof *nb + cap * sizeof nb->v[0]);
    if (nb == NULL) return NULL;
    nb->cap = cap;
    free(b);
    *slot = nb;
    return nb->v;
}

typedef struct rowbuf {
    size_t cap;
    uint32_t rows[];
} rowbuf_t;

typedef struct snap_job {
    sp_pool_job_t job; /* first: the pool hands this pointer back */
    sp_daemon_t *d;
    sp_round_t *round;
    sp_client_t *client;            /* retained; only the loop looks at it */
    sp_interest_t in;               /* copies: workers never read the client */
    sp_evset_t *pend[SP_PEND_ROUNDS]; /* events of rounds the client skipped, oldest first */
    int npend;
    sp_evset_t *events;             /* this round's (a reference of the job's own) */
    const sp_snap_list_t *base;     /* NULL = full; read-only while the job runs */
    sp_snap_list_t *next;
    msgpack_sbuffer out;
    size_t budget;                  /* entities that may enter the view (conf.snap_budget) */
    uint64_t cost_hint;             /* the client's last cost: dispatch order */
    size_t visible;                 /* entities in the area of interest: the job's cost */
    size_t in_view;                 /* entities in the view sent (visible minus those held back) */
    size_t nevents;                 /* event notifications packed before the snapshot */
    int err;
} snap_job_t;

/* ---------------------------------------------------------------- views */

static sp_snap_list_t *view_new(void) {
    sp_snap_list_t *v = malloc(sizeof *v);
    if (v) sp_snap_list_init(v);
    return v;
}

static void view_free(sp_snap_list_t *v) {
    if (v == NULL) return;
    sp_snap_list_destroy(v);
    free(v);
}

/* Fill v from frame rows (indices into f->rows, id-ascending as the query
 * returns them) at f->tick. Returns 0, SP_EINVAL (a row out of range or out
 * of order; v unchanged) or SP_ENOMEM. Reads only f->rows. */
static int view_from_frame(sp_snap_list_t *v, const sp_frame_t *f, const uint32_t *rows, size_t n) {
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i] >= f->count) return SP_EINVAL;
        const sp_frame_row_t *r = &f->rows[rows[i]];
        if (r->id <= prev || r->kind == 0) return SP_EINVAL;
        prev = r->id;
    }
    sp_snap_rec_t *recs = sp_snap_list_reserve(v, n);
    if (recs == NULL && n > 0) return SP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const sp_frame_row_t *r = &f->rows[rows[i]];
        sp_snap_rec_t *o = &recs[i];
        memset(o, 0, sizeof *o); /* padding too: views compare and hash cleanly */
        o->id = r->id;
        memcpy(o->pos, r->pos, sizeof o->pos);
        memcpy(o->vel, r->vel, sizeof o->vel);
        o->hp = r->hp;
        o->owner = r->owner;
        o->radius = r->radius;
        o->kind = r->kind;
    }
    v->len = n;
    v->tick = f->tick;
    v->valid = true;
    return 0;
}

/* ---------------------------------------------------------------- interest */

static bool frame_pos(const void *src, uint64_t id, double out[3]) {
    const sp_frame_t *f = src;
    long row = sp_frame_find(f, id);
    if (row < 0) return false;
    for (int k = 0; k < 3; k++) out[k] = sp_frame_pos(f->rows[row].pos[k]);
    return true;
}

static bool world_pos(const void *src, uint64_t id, double out[3]) {
    sp_entity_info_t info;
    if (sp_world_inspect(src, id, &info) != 0) return false;
    for (int k = 0; k < 3; k++) out[k] = info.pos[k];
    return true;
}

static void interest_of(const sp_client_t *c, sp_interest_t *in) {
    in->session = c->session.id;
    in->radius = c->snap.radius;
    memcpy(in->centre, c->snap.centre, sizeof in->centre);
    memcpy(in->ships, c->session.ships, sizeof in->ships);
    in->nships = c->session.nships;
}

/* Rows of the frame within r of c, appended at `at`; grows the buffer. */
static size_t query(const sp_frame_t *f, const double c[3], double r, rowbuf_t **bp, size_t at) {
    for (;;) {
        rowbuf_t *b = *bp;
        size_t room = b->cap - at;
        size_t n = sp_frame_query_sphere(f, (float)c[0], (float)c[1], (float)c[2], (float)r, b->rows + at, room);
        if (n <= room) return n;
        size_t cap = b->cap * 2;
        while (cap < at + n) cap *= 2;
        rowbuf_t *nb = realloc(b, sizeof *nb + cap * sizeof nb->rows[0]);
        if (nb == NULL) return room; /* degrade: a partial view */
        nb->cap = cap;
        *bp = nb;
    }
}


static void mark_row(void *ctx, uint32_t row) {
    uint64_t *bits = ctx;
    bits[row >> 6] |= 1ull << (row & 63);
}

/* Share of the world cube that the bounding box of the sphere (c, r)
 * covers, 0..1: what a query of it costs, in rows, relative to all. */
static double box_share(const sp_frame_t *f, const double c[3], double r) {
    double h = f->half_extent, share = 1;
    if (!(h > 0)) return 1;
    for (int k = 0; k < 3; k++) {
        double lo = c[k] - r < -h ? -h : c[k] - r, hi = c[k] + r > h ? h : c[k] + r;
        share *= hi > lo ? (hi - lo) / (2 * h) : 0;
    }
    return share;
}

/* Mark the rows within r of any centre in one pass over the spatial index
 * (16-byte entries, sequential), with the frame query's own test (a row's
 * quantized centre within r, in double, of the float centre). For views
 * whose spheres together would scan more than the whole index (a big
 * view's 16 spheres each cover the world: 16 scans become one, and no
 * callback per match). */
static void mark_linear(const sp_frame_t *f, const double ctr[][3], int nctr, double radius, uint64_t *bits) {
    double c[SP_INTEREST_MAX_CENTRES][3];
    for (int i = 0; i < nctr; i++)
        for (int k = 0; k < 3; k++) c[i][k] = (float)ctr[i][k];
    float rf = (float)radius;
    double r2 = (double)rf * rf;
    for (uint32_t e = 0; e < f->count; e++) {
        const sp_frame_cell_ent_t *x = &f->cell_ents[e];
        double px = (double)x->pos[0] / SP_FRAME_POS_SCALE, py = (double)x->pos[1] / SP_FRAME_POS_SCALE,
               pz = (double)x->pos[2] / SP_FRAME_POS_SCALE;
        for (int i = 0; i < nctr; i++) {
            double dx = px - c[i][0], dy = py - c[i][1], dz = pz - c[i][2];
            if (dx * dx + dy * dy + dz * dz <= r2) {
                mark_row(bits, x->row);
                break;
            }
        }
    }
}

/* The visible rows: the union of the spheres around the centres, in
 * ascending row (= id) order, unique. Returns the count (in (*bp)->rows).
 * One centre: the frame's sorted query. Several (up to 17 spheres, which
 * for a big view overlap almost wholly): each sphere's rows are marked in a
 * bitmap of the frame's rows, read back in order, O(matches + rows / 64),
 * instead of sorting the concatenated matches (16 spheres over a 100k view
 * were a 1.6M-element qsort per round); spheres that together cover more
 * than the world are one linear pass (mark_linear). */
static size_t visible_rows(const sp_frame_t *f, const sp_interest_t *in, const double ctr[][3], int nctr,
                           rowbuf_t **bp, void **scratch) {
    if (nctr == 1) return query(f, ctr[0], in->radius, bp, 0);
    size_t words = ((size_t)f->count + 63) / 64;
    uint64_t *bits = u64_reserve(&scratch[SCRATCH_BITS], words, true);
    if (bits == NULL) return query(f, ctr[0], in->radius, bp, 0); /* degrade: one centre's view */
    double share = 0;
    for (int i = 0; i < nctr; i++) share += box_share(f, ctr[i], in->radius);
    if (share > 1.0 && in->radius >= 0 && !isnan(in->radius)) {
        mark_linear(f, ctr, nctr, in->radius, bits);
    } else {
        for (int i = 0; i < nctr; i++)
            sp_frame_visit_sphere(f, (float)ctr[i][0], (float)ctr[i][1], (float)ctr[i][2], (float)in->radius,
                                  mark_row, bits);
    }
    size_t n = 0;
    for (size_t w = 0; w < words; w++) n += (size_t)__builtin_popcountll(bits[w]);
    rowbuf_t *b = *bp;
    if (n > b->cap) {
        size_t cap = b->cap * 2;
        while (cap < n) cap *= 2;
        rowbuf_t *nb = realloc(b, sizeof *nb + cap * sizeof nb->rows[0]);
        if (nb != NULL) {
            nb->cap = cap;
            *bp = b = nb;
        }
    }
    /* Read back and clear (the bitmap is all zero between jobs); past the
     * buffer (out of memory above) the view degrades to its first rows. */
    size_t k = 0;
    for (size_t w = 0; w < words; w++) {
        uint64_t x = bits[w];
        bits[w] = 0;
        for (; x != 0 && k < b->cap; x &= x - 1) b->rows[k++] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(x));
    }
    return k;
}

/* ---------------------------------------------------------------- budget */

static void swap_u64(uint64_t *a, uint64_t *b) {
    uint64_t t = *a;
    *a = *b;
    *b = t;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The k-th smallest (0-based) of n distinct keys (a is reordered).
 * Quickselect with a median-of-three pivot, O(n) expected; after about
 * 2 log2(n) rounds without converging it sorts what is left, so the worst
 * case stays O(n log n) whatever the positions. */
static uint64_t select_kth(uint64_t *a, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1;
    int rounds = 0;
    for (size_t m = n; m > 1; m >>= 1) rounds += 2;
    while (lo < hi) {
        if (rounds-- < 0) {
            qsort(a + lo, hi - lo + 1, sizeof a[0], cmp_u64);
            break;
        }
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo]) swap_u64(&a[mid], &a[lo]);
        if (a[hi] < a[lo]) swap_u64(&a[hi], &a[lo]);
        if (a[hi] < a[mid]) swap_u64(&a[hi], &a[mid]);
        uint64_t p = a[mid];
        /* Hoare partition: [lo, j] <= p <= [i, hi], j < i. The pivot value
         * lies inside the range, so neither scan runs off its end. */
        size_t i = lo, j = hi;
        for (;;) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i >= j) break;
            swap_u64(&a[i], &a[j]);
            i++;
            j--;
        }
        /* Here a[i..] >= p and a[..j] <= p with j <= i; when i == j, a[i] == p. */
        if (i == j) {
            if (k == i) return a[k];
            if (k < i) hi = i - 1;
            else lo = i + 1;
        } else if (k <= j) {
            hi = j;
        } else {
            lo = i;
        }
    }
    return a[k];
}

/* Sort key of a frame row for the entering budget: its squared distance to
 * the nearest centre (as float bits, which order like the values for
 * non-negative floats) above its row index (unique, so ties go by id). */
static uint64_t near_key(const sp_frame_t *f, uint32_t row, const double ctr[][3], int nctr) {
    const int32_t *q = f->rows[row].pos;
    double p[3] = {sp_frame_pos(q[0]), sp_frame_pos(q[1]), sp_frame_pos(q[2])};
    double best = INFINITY;
    for (int i = 0; i < nctr; i++) {
        double dx = p[0] - ctr[i][0], dy = p[1] - ctr[i][1], dz = p[2] - ctr[i][2];
        double d2 = dx * dx + dy * dy + dz * dz;
        if (d2 < best) best = d2;
    }
    float fd = (float)best;
    uint32_t bits;
    memcpy(&bits, &fd, sizeof bits);
    return (uint64_t)bits << 32 | row;
}

/* The entering budget: of the visible rows (ascending), keep every row
 * already in the baseline (a delta costs only what changed) and at most
 * `budget` of the others, the nearest to a centre first; the rest enter in
 * later snapshots. Filters rows in place and returns the new count.
 * Cost O(n + |base|), plus O(candidates * centres) when over budget. Out of
 * memory: the first `budget` candidates by id instead of the nearest. */
static size_t apply_budget(const sp_frame_t *f, const sp_snap_list_t *base, uint32_t *rows, size_t n,
                           size_t budget, const double ctr[][3], int nctr, void **scratch) {
    const sp_snap_rec_t *br = base && base->valid ? base->recs : NULL;
    size_t bn = br ? base->len : 0, bi = 0;
    /* Pass 1: count the candidates (rows whose id the baseline lacks). */
    size_t ncand = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = f->rows[rows[i]].id;
        while (bi < bn && br[bi].id < id) bi++;
        if (!(bi < bn && br[bi].id == id)) ncand++;
    }
    if (ncand <= budget) return n;
    uint64_t *keys = u64_reserve(&scratch[SCRATCH_KEYS], 2 * ncand, false);
    uint64_t thr = UINT64_MAX;
    if (keys != NULL) {
        /* keys[0, ncand): the candidates in row order; [ncand, 2 ncand): a
         * copy the selection reorders. */
        size_t c = 0;
        bi = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t id = f->rows[rows[i]].id;
            while (bi < bn && br[bi].id < id) bi++;
            if (!(bi < bn && br[bi].id == id)) keys[c++] = near_key(f, rows[i], ctr, nctr);
        }
        memcpy(keys + ncand, keys, ncand * sizeof keys[0]);
        thr = budget > 0 ? select_kth(keys + ncand, ncand, budget - 1) : 0;
    }
    /* Pass 2: keep the baseline's rows and the chosen candidates. */
    size_t w = 0, c = 0, taken = 0;
    bi = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = f->rows[rows[i]].id;
        while (bi < bn && br[bi].id < id) bi++;
        bool cand = !(bi < bn && br[bi].id == id);
        if (cand) {
            bool take = keys != NULL ? budget > 0 && keys[c] <= thr : taken < budget;
            c++;
            if (!take) continue;
            taken++;
        }
        rows[w++] = rows[i];
    }
    return w;
}

/* ---------------------------------------------------------------- the job */

/* Pack the visible events of the skipped rounds (oldest first), then this
 * round's: at most SP_SNAP_MAX_EVENTS, the newest; older ones are counted
 * as dropped. */
static void pack_events(snap_job_t *j, msgpack_packer *pk, const double ctr[][3], int nctr) {
    const sp_evset_t *sets[SP_PEND_ROUNDS + 1];
    int ns = 0;
    for (int k = 0; k < j->npend; k++) sets[ns++] = j->pend[k];
    if (j->events) sets[ns++] = j->events;
    size_t vis = 0;
    for (int k = 0; k < ns; k++)
        for (uint32_t i = 0; i < sets[k]->n; i++) vis += sp_interest_sees_event(&j->in, &sets[k]->ev[i], ctr, nctr);
    size_t skip = vis > SP_SNAP_MAX_EVENTS ? vis - SP_SNAP_MAX_EVENTS : 0;
    if (skip) atomic_fetch_add_explicit(&j->d->events_capped, skip, memory_order_relaxed); /* statistic */
    for (int k = 0; k < ns; k++)
        for (uint32_t i = 0; i < sets[k]->n; i++) {
            const sp_world_event_t *e = &sets[k]->ev[i];
            if (!sp_interest_sees_event(&j->in, e, ctr, nctr)) continue;
            if (skip) {
                skip--;
                continue;
            }
            if (sp_event_pack(pk, e) == 0) j->nevents++;
        }
}

static void snap_work(sp_pool_job_t *job, void **scratch) {
    snap_job_t *j = (snap_job_t *)job;
    const sp_frame_t *f = j->round->frame;
    if (f == NULL) { /* the build failed: this round has no frame */
        j->err = SP_ENOMEM;
        return;
    }
    rowbuf_t *b = scratch[SCRATCH_ROWS];
    if (b == NULL) {
        b = malloc(sizeof *b + 4096 * sizeof b->rows[0]);
        if (b == NULL) {
            j->err = SP_ENOMEM;
            return;
        }
        b->cap = 4096;
    }
    double ctr[SP_INTEREST_MAX_CENTRES][3];
    int nctr = sp_interest_centres(&j->in, frame_pos, f, ctr);
    const double(*cc)[3] = (const double(*)[3])ctr;
    size_t n = visible_rows(f, &j->in, cc, nctr, &b, scratch);
    scratch[SCRATCH_ROWS] = b;
    j->visible = n;
    n = apply_budget(f, j->base, b->rows, n, j->budget, cc, nctr, scratch);
    j->in_view = n;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->out, msgpack_sbuffer_write);
    pack_events(j, &pk, cc, nctr);
    j->err = view_from_frame(j->next, f, b->rows, n);
    if (j->err == 0) j->err = sp_snap_v1_encode(j->base, j->next, &j->out, NULL);
}

/* How many of e's events client c can see, judged now (its ships' current
 * positions in the world, or its subscribe centre). Loop thread. */
static size_t visible_now(const sp_daemon_t *d, const sp_client_t *c, const sp_evset_t *e) {
    sp_interest_t in;
    interest_of(c, &in);
    double ctr[SP_INTEREST_MAX_CENTRES][3];
    int nctr = sp_interest_centres(&in, world_pos, d->world, ctr);
    size_t n = 0;
    for (uint32_t i = 0; i < e->n; i++) n += sp_interest_sees_event(&in, &e->ev[i], (const double(*)[3])ctr, nctr);
    return n;
}

/* Keep e (retained) for c's next snapshot; past SP_PEND_ROUNDS the oldest
 * set goes, its visible events counted as dropped. Loop thread. */
static void pend_push(sp_daemon_t *d, sp_client_t *c, sp_evset_t *e) {
    sp_snapstate_t *s = &c->snap;
    if (s->npend == SP_PEND_ROUNDS) {
        d->st.events_dropped += visible_now(d, c, s->pend[0]);
        sp_evset_release(s->pend[0]);
        memmove(s->pend, s->pend + 1, (SP_PEND_ROUNDS - 1) * sizeof s->pend[0]);
        s->npend--;
    }
    sp_evset_retain(e);
    s->pend[s->npend++] = e;
}

/* A job's events were not delivered (encoding failed): give them back to the
 * client, ahead of what it gathered since (older first). Loop thread. */
static void pend_requeue(sp_daemon_t *d, sp_client_t *c, snap_job_t *j) {
    sp_snapstate_t *s = &c->snap;
    sp_evset_t *all[2 * SP_PEND_ROUNDS + 1];
    int n = 0;
    for (int k = 0; k < j->npend; k++) all[n++] = j->pend[k];
    if (j->events) all[n++] = j->events;
    for (int k = 0; k < s->npend; k++) all[n++] = s->pend[k];
    j->npend = 0;
    j->events = NULL;
    s->npend = 0;
    int first = n > SP_PEND_ROUNDS ? n - SP_PEND_ROUNDS : 0;
    for (int k = 0; k < first; k++) {
        d->st.events_dropped += visible_now(d, c, all[k]);
        sp_evset_release(all[k]);
    }
    for (int k = first; k < n; k++) s->pend[s->npend++] = all[k];
}

static void job_free(snap_job_t *j) {
    for (int k = 0; k < j->npend; k++) sp_evset_release(j->pend[k]);
    sp_evset_release(j->events);
    view_free(j->next);
    msgpack_sbuffer_destroy(&j->out);
    sp_round_release(j->round);
    free(j);
}

/* Hand the bytes to the socket; only then is the new view the baseline. */
static void deliver(sp_daemon_t *d, sp_client_t *c, snap_job_t *j) {
    if (sp_conn_send(&c->conn, j->out.data, j->out.size) != 0) return;
    view_free(c->snap.view);
    c->snap.view = j->next;
    j->next = NULL;
    if (j->base == NULL) { /* a full one: the resync interval counts from it */
        c->snap.had_full = true;
        c->snap.full_tick = j->round->tick;
    }
    c->snap.sent++;
    d->st.snapshots_sent++;
    d->st.events_sent += j->nevents;
    d->st.snapshot_bytes += j->out.size;
    d->st.snapshot_entities += j->in_view;
}

static void snap_done(sp_pool_job_t *job) {
    snap_job_t *j = (snap_job_t *)job;
    sp_daemon_t *d = j->d;
    sp_client_t *c = j->client;
    c->snap.pending = false;
    if (sp_pool_job_ran(job)) {
        /* The fair share: what the job cost is paid back by the budget of
         * the rounds to come (sp_snapshots_prepare), failed or not. */
        c->snap.debt += j->visible;
        c->snap.cost = j->visible;
    }
    if (sp_pool_job_ran(job) && !c->conn.closing) {
        if (j->err == 0) {
            deliver(d, c, j);
        } else {
            SP_LOGW("client %u: snapshot encoding failed: %s", c->session.id, sp_strerror(j->err));
            pend_requeue(d, c, j);
        }
    }
    sp_conn_release(&c->conn);
    job_free(j);
}

/* May a resync's full snapshot go out in the round of `tick`? Yes when the
 * client has no baseline or got no full snapshot yet, or its last full one
 * is at least --resync-interval of game time old; otherwise the request
 * waits (and later ones coalesce with it). This bounds what `resync` spam
 * costs: a full snapshot re-sends every record of the view. */
static bool resync_due(const sp_daemon_t *d, const sp_snapstate_t *s, uint64_t tick) {
    if (s->view == NULL || !s->had_full) return true;
    uint64_t gap = (uint64_t)ceil(d->conf.resync_secs * d->conf.tick_hz);
    return tick - s->full_tick >= gap;
}

/* A job for c in round r (the job takes c's pending events), or NULL. */
static snap_job_t *job_new(sp_daemon_t *d, sp_client_t *c, sp_round_t *r) {
    snap_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) return NULL;
    j->next = view_new();
    if (j->next == NULL) {
        free(j);
        return NULL;
    }
    msgpack_sbuffer_init(&j->out);
    j->job.work = snap_work;
    j->job.done = snap_done;
    j->d = d;
    j->round = r;
    sp_round_retain(r);
    j->client = c;
    sp_conn_retain(&c->conn); /* until snap_done */
    interest_of(c, &j->in);
    j->budget = d->conf.snap_budget;
    sp_snapstate_t *s = &c->snap;
    j->cost_hint = s->cost;
    if (s->need_full && resync_due(d, s, r->tick)) {
        view_free(s->view);
        s->view = NULL;
        s->need_full = false;
    }
    j->base = s->view;
    memcpy(j->pend, s->pend, (size_t)s->npend * sizeof s->pend[0]); /* the job takes them */
    j->npend = s->npend;
    s->npend = 0;
    if (r->events) {
        sp_evset_retain(r->events);
        j->events = r->events;
    }
    s->pending = true;
    return j;
}

/* Dispatch order of a round's jobs: cheapest first (by the client's last
 * cost, then session id), so a small view is never queued behind big ones
 * of the same round (the pool's LOW queue is FIFO). */
static int cmp_job_cost(const void *a, const void *b) {
    const snap_job_t *x = (const snap_job_t *)*(sp_pool_job_t *const *)a;
    const snap_job_t *y = (const snap_job_t *)*(sp_pool_job_t *const *)b;
    if (x->cost_hint != y->cost_hint) return x->cost_hint < y->cost_hint ? -1 : 1;
    uint32_t sx = x->client->session.id, sy = y->client->session.id;
    return sx < sy ? -1 : sx > sy;
}

void sp_snapshots_prepare(sp_daemon_t *d, sp_round_t *r) {
    if (d->net.nconns > 0) r->snap = malloc((size_t)d->net.nconns * sizeof *r->snap);
    uint64_t share = d->conf.snap_budget;
    for (sp_conn_t *k = d->net.conns; k; k = k->next) {
        sp_client_t *c = sp_client_of(k);
        if (c->session.state != SP_SESSION_READY) continue;
        sp_snapstate_t *s = &c->snap;
        /* Every round pays back one share of what its snapshots cost; while
         * some remains (its last view was bigger than the share) the client
         * waits, which gives a view of V entities a snapshot every
         * ceil(V / share) rounds and leaves a view within the share at the
         * full rate, whatever the others ask for. */
        s->debt = s->debt > share ? s->debt - share : 0;
        bool skip = s->pending || s->debt > 0 || r->snap == NULL;
        if (!skip && k->obuf_bytes > d->conf.obuf_soft) {
            /* Skip; the next delta is taken against what it really received. */
            d->st.snapshots_skipped++;
            s->skipped++;
            skip = true;
        }
        if (skip) {
            if (r->events) pend_push(d, c, r->events); /* they wait for the snapshot it gets */
            continue;
        }
        snap_job_t *j = job_new(d, c, r);
        if (j == NULL) break;
        r->snap[r->nsnap++] = &j->job;
    }
    /* Jobs are the first member of snap_job_t (the pool hands it back). */
    if (r->nsnap > 1) qsort(r->snap, r->nsnap, sizeof r->snap[0], cmp_job_cost);
}

void sp_snapshots_dispatch(sp_daemon_t *d, sp_round_t *r) {
    for (size_t i = 0; i < r->nsnap; i++)
        if (sp_pool_submit(d->pool, r->snap[i], SP_POOL_LOW, true) != 0) sp_pool_run_here(d->pool, r->snap[i]);
    r->nsnap = 0;
}

void sp_snapshots_cancel(sp_daemon_t *d, sp_round_t *r) {
    (void)d;
    for (size_t i = 0; i < r->nsnap; i++) r->snap[i]->done(r->snap[i]); /* never submitted: not ran */
    r->nsnap = 0;
}

uint64_t sp_snapshots_events_dropped(const sp_daemon_t *d) {
    /* Relaxed: a statistic. */
    return d->st.events_dropped + atomic_load_explicit(&d->events_capped, memory_order_relaxed);
}
