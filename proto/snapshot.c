/* snapshot.c: snapshot encode/decode against per-client views, and event
 * notification packers. The wire format is documented at the top of
 * snapshot.h and, normatively, in proto/PROTOCOL.md ("Snapshots").
 *
 * Encoding walks the base view and the next view (both sorted by id) in
 * step, like a merge: ids only in next are "entered", only in base "left",
 * in both "changed" when a field differs. msgpack arrays need their length
 * first, so one counting walk precedes one emitting walk per section; each
 * walk is a branchy O(|base| + |next|) loop over 48-byte records, cheap next
 * to the socket write, and it needs no allocation (workers can run it on the
 * immutable frame without touching any shared state).
 *
 * Applying (client side) validates everything before it writes the view:
 * a changes-only delta is decoded into scratch copies of the changed rows
 * and then copied over them in place; any other snapshot is merged into the
 * scratch array, which is then swapped with the view's records. */
#include "snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "rpc.h"

#define ALL_FIELDS (SP_SNAP_F_POS | SP_SNAP_F_VEL | SP_SNAP_F_HP | SP_SNAP_F_OWNER | SP_SNAP_F_RADIUS)
#define SMALL_MOVE_MAX 2  /* |d| per axis coded in the op itself */
#define SMALL_OPS 125     /* 5^3 */

/* ---------------------------------------------------------------- views */

void sp_snap_view_init(sp_snap_view_t *v) { memset(v, 0, sizeof *v); }

void sp_snap_view_destroy(sp_snap_view_t *v) {
    if (v == NULL) return;
    free(v->recs);
    free(v->scratch);
    free(v->rows);
    memset(v, 0, sizeof *v);
}

void sp_snap_view_reset(sp_snap_view_t *v) {
    v->len = 0;
    v->tick = 0;
    v->valid = false;
}

void sp_snap_view_swap(sp_snap_view_t *a, sp_snap_view_t *b) {
    sp_snap_view_t t = *a;
    *a = *b;
    *b = t;
}

size_t sp_snap_view_bytes(const sp_snap_view_t *v) {
    return (v->cap + v->scratch_cap) * sizeof(sp_snap_rec_t) + v->rows_cap * sizeof(uint32_t);
}

/* Make the array *arr (capacity *capp elements of elem bytes) hold at least
 * n elements; contents are NOT kept (the callers overwrite them all). Grows
 * by doubling from 16. On failure the array is unchanged. */
static int array_reserve(void **arr, size_t *capp, size_t n, size_t elem) {
    if (n <= *capp) return 0;
    size_t cap = *capp ? *capp : 16;
    while (cap < n) cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    size_t bytes;
    if (sp_size_mul(cap, elem, &bytes) != 0) return SP_ENOMEM;
    void *p = malloc(bytes);
    if (p == NULL) return SP_ENOMEM;
    free(*arr);
    *arr = p;
    *capp = cap;
    return 0;
}

/* Make v->scratch hold at least n records (contents not kept). */
static int scratch_reserve(sp_snap_view_t *v, size_t n) {
    void *p = v->scratch;
    int rc = array_reserve(&p, &v->scratch_cap, n, sizeof(sp_snap_rec_t));
    v->scratch = p;
    return rc;
}

/* Make v->rows hold at least n indexes (contents not kept). */
static int rows_reserve(sp_snap_view_t *v, size_t n) {
    void *p = v->rows;
    int rc = array_reserve(&p, &v->rows_cap, n, sizeof(uint32_t));
    v->rows = p;
    return rc;
}

/* The records built in scratch[0, n) become the view. */
static void scratch_commit(sp_snap_view_t *v, size_t n, uint64_t tick) {
    sp_snap_rec_t *r = v->recs;
    size_t c = v->cap;
    v->recs = v->scratch;
    v->cap = v->scratch_cap;
    v->scratch = r;
    v->scratch_cap = c;
    v->len = n;
    v->tick = tick;
    v->valid = true;
}

/* Make v->recs hold at least n records; contents are NOT kept (the callers
 * overwrite them all). On failure v is unchanged. */
static int recs_reserve(sp_snap_view_t *v, size_t n) {
    void *p = v->recs;
    int rc = array_reserve(&p, &v->cap, n, sizeof(sp_snap_rec_t));
    v->recs = p;
    return rc;
}

/* The encoder side validates its input first and then overwrites the view in
 * place: no scratch array, so a daemon's per-client views cost one array each
 * (only sp_snap_apply(), on the client side, double-buffers). */
sp_snap_rec_t *sp_snap_view_reserve(sp_snap_view_t *v, size_t n) {
    if (v == NULL || recs_reserve(v, n) != 0) return NULL;
    return v->recs;
}

int sp_snap_view_set(sp_snap_view_t *v, uint64_t tick, const sp_snap_rec_t *recs, size_t n) {
    if (v == NULL || (recs == NULL && n > 0) || (n > 0 && recs == v->recs)) return SP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (recs[i].id == 0 || (i > 0 && recs[i].id <= recs[i - 1].id) || recs[i].kind == 0) return SP_EINVAL;
    int rc = recs_reserve(v, n);
    if (rc) return rc;
    if (n) memcpy(v->recs, recs, n * sizeof *recs);
    v->len = n;
    v->tick = tick;
    v->valid = true;
    return 0;
}

const sp_snap_rec_t *sp_snap_view_find(const sp_snap_view_t *v, uint64_t id) {
    size_t lo = 0, hi = v->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->recs[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < v->len && v->recs[lo].id == id ? &v->recs[lo] : NULL;
}

static bool rec_equal(const sp_snap_rec_t *a, const sp_snap_rec_t *b) {
    return a->id == b->id && a->kind == b->kind && a->owner == b->owner && a->hp == b->hp &&
           a->radius == b->radius && memcmp(a->pos, b->pos, sizeof a->pos) == 0 &&
           memcmp(a->vel, b->vel, sizeof a->vel) == 0;
}

bool sp_snap_view_equal(const sp_snap_view_t *a, const sp_snap_view_t *b) {
    if (a->valid != b->valid || a->tick != b->tick || a->len != b->len) return false;
    for (size_t i = 0; i < a->len; i++)
        if (!rec_equal(&a->recs[i], &b->recs[i])) return false;
    return true;
}

/* ---------------------------------------------------------------- encode */

/* The "changed" entry of b -> c: returns the number of values after the op
 * (0..9), or -1 when nothing changed. */
static int diff(const sp_snap_rec_t *b, const sp_snap_rec_t *c, int64_t *op, int64_t vals[9]) {
    int64_t dp[3], dv[3];
    unsigned mask = 0;
    for (int k = 0; k < 3; k++) {
        dp[k] = (int64_t)c->pos[k] - b->pos[k];
        dv[k] = (int64_t)c->vel[k] - b->vel[k];
        if (dp[k]) mask |= SP_SNAP_F_POS;
        if (dv[k]) mask |= SP_SNAP_F_VEL;
    }
    int64_t dh = (int64_t)c->hp - (int64_t)b->hp;
    if (dh) mask |= SP_SNAP_F_HP;
    if (c->owner != b->owner) mask |= SP_SNAP_F_OWNER;
    if (c->radius != b->radius) mask |= SP_SNAP_F_RADIUS;
    if (mask == 0) return -1;
    if (mask == SP_SNAP_F_POS && dp[0] >= -SMALL_MOVE_MAX && dp[0] <= SMALL_MOVE_MAX && dp[1] >= -SMALL_MOVE_MAX &&
        dp[1] <= SMALL_MOVE_MAX && dp[2] >= -SMALL_MOVE_MAX && dp[2] <= SMALL_MOVE_MAX) {
        *op = (dp[0] + 2) * 25 + (dp[1] + 2) * 5 + (dp[2] + 2);
        return 0;
    }
    int n = 0;
    *op = -(int64_t)mask;
    if (mask & SP_SNAP_F_POS)
        for (int k = 0; k < 3; k++) vals[n++] = dp[k];
    if (mask & SP_SNAP_F_VEL)
        for (int k = 0; k < 3; k++) vals[n++] = dv[k];
    if (mask & SP_SNAP_F_HP) vals[n++] = dh;
    if (mask & SP_SNAP_F_OWNER) vals[n++] = c->owner;
    if (mask & SP_SNAP_F_RADIUS) vals[n++] = c->radius;
    return n;
}

enum { SEC_COUNT, SEC_ENTERED, SEC_CHANGED, SEC_LEFT };

typedef struct walk {
    msgpack_packer *pk;
    int err;                     /* msgpack writer failures, OR-ed */
    uint64_t prev;               /* previous id of the section being emitted */
    size_t entered, changed, changed_ints, left;
    bool kind_changed;
} walk_t;

static void emit_id(walk_t *w, uint64_t id) {
    w->err |= msgpack_pack_uint64(w->pk, id - w->prev);
    w->prev = id;
}

static void walk(const sp_snap_rec_t *b, size_t nb, const sp_snap_rec_t *c, size_t nc, int sec, walk_t *w) {
    size_t i = 0, j = 0;
    w->prev = 0;
    while (i < nb || j < nc) {
        if (j >= nc || (i < nb && b[i].id < c[j].id)) { /* left */
            if (sec == SEC_COUNT) w->left++;
            else if (sec == SEC_LEFT) emit_id(w, b[i].id);
            i++;
        } else if (i >= nb || c[j].id < b[i].id) { /* entered */
            if (sec == SEC_COUNT) {
                w->entered++;
            } else if (sec == SEC_ENTERED) {
                const sp_snap_rec_t *r = &c[j];
                emit_id(w, r->id);
                w->err |= msgpack_pack_uint8(w->pk, r->kind);
                for (int k = 0; k < 3; k++) w->err |= msgpack_pack_int32(w->pk, r->pos[k]);
                for (int k = 0; k < 3; k++) w->err |= msgpack_pack_int32(w->pk, r->vel[k]);
                w->err |= msgpack_pack_uint32(w->pk, r->hp);
                w->err |= msgpack_pack_uint32(w->pk, r->owner);
                w->err |= msgpack_pack_uint32(w->pk, r->radius);
            }
            j++;
        } else { /* in both */
            if (sec == SEC_COUNT || sec == SEC_CHANGED) {
                int64_t op, vals[9];
                int n = diff(&b[i], &c[j], &op, vals);
                if (b[i].kind != c[j].kind) w->kind_changed = true;
                if (n >= 0 && sec == SEC_COUNT) {
                    w->changed++;
                    w->changed_ints += 2 + (size_t)n;
                } else if (n >= 0) {
                    emit_id(w, c[j].id);
                    w->err |= msgpack_pack_int64(w->pk, op);
                    for (int k = 0; k < n; k++) w->err |= msgpack_pack_int64(w->pk, vals[k]);
                }
            }
            i++;
            j++;
        }
    }
}

int sp_snap_encode_views(const sp_snap_view_t *base, const sp_snap_view_t *next, msgpack_sbuffer *out,
                         sp_snap_stats_t *stats) {
    if (next == NULL || !next->valid || out == NULL) return SP_EINVAL;
    bool full = base == NULL || !base->valid;
    const sp_snap_rec_t *b = full ? NULL : base->recs;
    size_t nb = full ? 0 : base->len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    walk_t w = {.pk = &pk};
    walk(b, nb, next->recs, next->len, SEC_COUNT, &w);
    if (w.kind_changed) return SP_EINVAL; /* an id keeps its kind for life */
    size_t entered_ints;
    if (sp_size_mul(w.entered, SP_SNAP_ENTERED_INTS, &entered_ints) != 0 || entered_ints > UINT32_MAX ||
        w.changed_ints > UINT32_MAX || next->len > UINT32_MAX)
        return SP_EINVAL;
    size_t before = out->size;
    int r = sp_rpc_pack_notify_begin(&pk, "snapshot", 6);
    r |= msgpack_pack_uint64(&pk, next->tick);
    r |= full ? msgpack_pack_nil(&pk) : msgpack_pack_uint64(&pk, base->tick);
    r |= msgpack_pack_array(&pk, entered_ints);
    walk(b, nb, next->recs, next->len, SEC_ENTERED, &w);
    r |= msgpack_pack_array(&pk, w.changed_ints);
    walk(b, nb, next->recs, next->len, SEC_CHANGED, &w);
    r |= msgpack_pack_array(&pk, w.left);
    walk(b, nb, next->recs, next->len, SEC_LEFT, &w);
    r |= msgpack_pack_uint64(&pk, next->len);
    if (r || w.err) {
        out->size = before;
        return SP_ENOMEM;
    }
    if (stats) {
        stats->tick = next->tick;
        stats->base_tick = full ? 0 : base->tick;
        stats->full = full;
        stats->entered = (uint32_t)w.entered;
        stats->changed = (uint32_t)w.changed;
        stats->left = (uint32_t)w.left;
        stats->count = (uint32_t)next->len;
        stats->bytes = out->size - before;
    }
    return 0;
}

int sp_snap_encode_recs(uint64_t tick, const sp_snap_rec_t *recs, size_t n, const sp_snap_view_t *base,
                        sp_snap_view_t *next_out, msgpack_sbuffer *out, sp_snap_stats_t *stats) {
    if (base != NULL && base == next_out) return SP_EINVAL;
    int rc = sp_snap_view_set(next_out, tick, recs, n);
    if (rc) return rc;
    return sp_snap_encode_views(base, next_out, out, stats);
}

/* ---------------------------------------------------------------- decode */

static bool obj_i64(const msgpack_object *o, int64_t *v) {
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) { *v = o->via.i64; return true; }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return true;
    }
    return false;
}
static bool obj_u32(const msgpack_object *o, uint32_t *v) {
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX) return false;
    *v = (uint32_t)o->via.u64;
    return true;
}
static bool obj_i32(const msgpack_object *o, int32_t *v) {
    int64_t x;
    if (!obj_i64(o, &x) || x < INT32_MIN || x > INT32_MAX) return false;
    *v = (int32_t)x;
    return true;
}
static bool add_i32(int32_t *v, int64_t d) {
    if (d > (int64_t)UINT32_MAX || d < -(int64_t)UINT32_MAX) return false; /* keeps the sum in int64 */
    int64_t x = (int64_t)*v + d;
    if (x < INT32_MIN || x > INT32_MAX) return false;
    *v = (int32_t)x;
    return true;
}

/* A cursor over one delta-coded id list. */
typedef struct cursor {
    const msgpack_object *a;
    uint32_t n, pos;
    uint64_t id;
    bool has;
} cursor_t;

/* Read the next iddelta; false on a malformed one (0, not a uint, overflow). */
static bool cur_next(cursor_t *c) {
    if (c->pos >= c->n) {
        c->has = false;
        return true;
    }
    const msgpack_object *o = &c->a[c->pos++];
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 == 0) return false;
    uint64_t id = c->id + o->via.u64;
    if (id < c->id) return false;
    c->id = id;
    c->has = true;
    return true;
}

static bool read_entered(cursor_t *c, sp_snap_rec_t *r) {
    const msgpack_object *v = &c->a[c->pos]; /* the 10 values after the iddelta */
    uint32_t kind;
    memset(r, 0, sizeof *r);
    r->id = c->id;
    if (!obj_u32(&v[0], &kind) || kind == 0 || kind > 255) return false;
    r->kind = (uint8_t)kind;
    for (int k = 0; k < 3; k++)
        if (!obj_i32(&v[1 + k], &r->pos[k]) || !obj_i32(&v[4 + k], &r->vel[k])) return false;
    if (!obj_u32(&v[7], &r->hp) || !obj_u32(&v[8], &r->owner) || !obj_u32(&v[9], &r->radius)) return false;
    c->pos += SP_SNAP_ENTERED_INTS - 1;
    return true;
}

static bool apply_change(cursor_t *c, sp_snap_rec_t *r) {
    if (c->pos >= c->n) return false;
    int64_t op;
    if (!obj_i64(&c->a[c->pos++], &op)) return false;
    if (op >= 0 && op < SMALL_OPS) {
        int64_t d[3] = {op / 25 - 2, (op / 5) % 5 - 2, op % 5 - 2};
        for (int k = 0; k < 3; k++)
            if (!add_i32(&r->pos[k], d[k])) return false;
        return true;
    }
    if (op >= 0 || op < -(int64_t)ALL_FIELDS) return false;
    unsigned mask = (unsigned)(-op);
    int64_t v[9];
    unsigned nv = 0;
    if (mask & SP_SNAP_F_POS) nv += 3;
    if (mask & SP_SNAP_F_VEL) nv += 3;
    nv += !!(mask & SP_SNAP_F_HP) + !!(mask & SP_SNAP_F_OWNER) + !!(mask & SP_SNAP_F_RADIUS);
    if (c->n - c->pos < nv) return false;
    for (unsigned k = 0; k < nv; k++)
        if (!obj_i64(&c->a[c->pos + k], &v[k])) return false;
    c->pos += nv;
    unsigned i = 0;
    if (mask & SP_SNAP_F_POS)
        for (int k = 0; k < 3; k++)
            if (!add_i32(&r->pos[k], v[i++])) return false;
    if (mask & SP_SNAP_F_VEL)
        for (int k = 0; k < 3; k++)
            if (!add_i32(&r->vel[k], v[i++])) return false;
    if (mask & SP_SNAP_F_HP) {
        int64_t d = v[i++];
        if (d > (int64_t)UINT32_MAX || d < -(int64_t)UINT32_MAX) return false;
        int64_t h = (int64_t)r->hp + d;
        if (h < 0 || h > (int64_t)UINT32_MAX) return false;
        r->hp = (uint32_t)h;
    }
    if (mask & SP_SNAP_F_OWNER) {
        int64_t o = v[i++];
        if (o < 0 || o > (int64_t)UINT32_MAX) return false;
        r->owner = (uint32_t)o;
    }
    if (mask & SP_SNAP_F_RADIUS) {
        int64_t o = v[i++];
        if (o < 0 || o > (int64_t)UINT32_MAX) return false;
        r->radius = (uint32_t)o;
    }
    return true;
}

/* First k in [i, n) with b[k].id >= id, or n. A few rows are probed one by
 * one (ids a delta names are usually close together: one mispredicted
 * branch each), then an exponential and binary search takes over, so walking
 * k ascending ids through n rows costs O(k log(n / k)) at worst. */
static size_t seek_far(const sp_snap_rec_t *b, size_t i, size_t n, uint64_t id) {
    if (i >= n || b[i].id >= id) return i;
    size_t lo = i, hi = i + 1, step = 1; /* invariant: b[lo].id < id */
    while (hi < n && b[hi].id < id) {
        lo = hi;
        step = step > (SIZE_MAX - i) / 2 ? SIZE_MAX - i : step * 2;
        hi = i + step;
    }
    if (hi > n) hi = n;
    while (lo + 1 < hi) { /* b[lo].id < id; hi == n or b[hi].id >= id */
        size_t mid = lo + (hi - lo) / 2;
        if (b[mid].id < id) lo = mid;
        else hi = mid;
    }
    return hi;
}

static inline size_t seek(const sp_snap_rec_t *b, size_t i, size_t n, uint64_t id) {
    for (size_t stop = n - i < 8 ? n : i + 8; i < stop; i++)
        if (b[i].id >= id) return i;
    return seek_far(b, i, n, id);
}

/* A delta with only a "changed" list (the steady state of a slowly moving
 * scene): patch the changed rows in place instead of rebuilding the view.
 * All-or-nothing: pass 1 decodes every entry into scratch (a copy of its
 * row, patched) and its row index into rows, validating all of it without
 * touching the view; only when the whole list is good does pass 2 copy the
 * patched rows over their originals. */
static int apply_changes_in_place(sp_snap_view_t *view, cursor_t *c, uint64_t tick, uint32_t *n_changed) {
    sp_snap_rec_t *b = view->recs;
    size_t nb = view->len; /* <= UINT32_MAX: it came from a uint32 count */
    /* Each entry is at least 2 ints (iddelta, op) and names a distinct row. */
    size_t max_changed = c->n / 2 < nb ? c->n / 2 : nb;
    int rc = scratch_reserve(view, max_changed);
    if (rc == 0) rc = rows_reserve(view, max_changed);
    if (rc) return rc;
    sp_snap_rec_t *out = view->scratch;
    uint32_t *rows = view->rows;
    size_t k = 0, i = 0;
    if (!cur_next(c)) return SP_ECORRUPT;
    while (c->has) {
        i = seek(b, i, nb, c->id);
        if (i >= nb || b[i].id != c->id) return SP_ECORRUPT; /* not in the view */
        out[k] = b[i];
        rows[k] = (uint32_t)i++;
        if (!apply_change(c, &out[k]) || !cur_next(c)) return SP_ECORRUPT;
        k++;
    }
    for (size_t j = 0; j < k; j++) b[rows[j]] = out[j]; /* valid: commit */
    view->tick = tick;
    *n_changed = (uint32_t)k;
    return 0;
}

static void fill_stats(sp_snap_stats_t *stats, uint64_t tick, uint64_t base_tick, bool full, uint32_t entered,
                       uint32_t changed, uint32_t left, size_t count) {
    if (stats == NULL) return;
    stats->tick = tick;
    stats->base_tick = base_tick;
    stats->full = full;
    stats->entered = entered;
    stats->changed = changed;
    stats->left = left;
    stats->count = (uint32_t)count;
    stats->bytes = 0;
}

int sp_snap_apply(sp_snap_view_t *view, const msgpack_object *params, sp_snap_stats_t *stats) {
    if (view == NULL || params == NULL) return SP_EINVAL;
    if (params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size < 6) return SP_ECORRUPT;
    const msgpack_object *p = params->via.array.ptr;
    if (p[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) return SP_ECORRUPT;
    uint64_t tick = p[0].via.u64;
    bool full = p[1].type == MSGPACK_OBJECT_NIL;
    if (!full && p[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER) return SP_ECORRUPT;
    for (int k = 2; k <= 4; k++)
        if (p[k].type != MSGPACK_OBJECT_ARRAY) return SP_ECORRUPT;
    uint32_t count;
    if (!obj_u32(&p[5], &count)) return SP_ECORRUPT;
    cursor_t e = {p[2].via.array.ptr, p[2].via.array.size, 0, 0, false};
    cursor_t c = {p[3].via.array.ptr, p[3].via.array.size, 0, 0, false};
    cursor_t l = {p[4].via.array.ptr, p[4].via.array.size, 0, 0, false};
    if (e.n % SP_SNAP_ENTERED_INTS != 0) return SP_ECORRUPT;
    if (full && (c.n != 0 || l.n != 0)) return SP_ECORRUPT;
    if (!full && (!view->valid || p[1].via.u64 != view->tick)) return SP_EPROTO; /* desync */

    uint32_t n_changed = 0, n_left = 0, n_entered = 0;
    if (!full && e.n == 0 && l.n == 0) {
        if (count != view->len) return SP_ECORRUPT;
        int rc = apply_changes_in_place(view, &c, tick, &n_changed);
        if (rc) return rc;
        fill_stats(stats, tick, p[1].via.u64, false, 0, n_changed, 0, view->len);
        return 0;
    }

    /* Otherwise one merge pass of the view and the three id lists into
     * scratch, swapped in at the end (the view is untouched until then).
     * Runs of rows no list names are copied with one memcpy each. */
    const sp_snap_rec_t *b = full ? NULL : view->recs;
    size_t nb = full ? 0 : view->len;
    size_t max_out = nb + e.n / SP_SNAP_ENTERED_INTS;
    if (count > max_out) return SP_ECORRUPT;
    int rc = scratch_reserve(view, max_out);
    if (rc) return rc;
    sp_snap_rec_t *out = view->scratch;
    size_t i = 0, n = 0;
    if (!cur_next(&e) || !cur_next(&c) || !cur_next(&l)) return SP_ECORRUPT;
    for (;;) {
        /* The smallest id any list names next; rows below it are unchanged. */
        bool any = e.has || c.has || l.has;
        uint64_t ev = UINT64_MAX;
        if (e.has) ev = e.id;
        if (c.has && c.id < ev) ev = c.id;
        if (l.has && l.id < ev) ev = l.id;
        size_t j = any ? seek(b, i, nb, ev) : nb;
        if (j > i) {
            memcpy(out + n, b + i, (j - i) * sizeof *b);
            n += j - i;
            i = j;
        }
        if (!any) break;
        bool in_view = i < nb && b[i].id == ev;
        if (e.has && e.id == ev) {
            if (in_view) return SP_ECORRUPT; /* entered twice */
            if (!read_entered(&e, &out[n++]) || !cur_next(&e)) return SP_ECORRUPT;
            n_entered++;
            continue; /* a changed/left list naming the same id fails next round */
        }
        if (!in_view) return SP_ECORRUPT; /* a changed or left id the view lacks */
        if (l.has && l.id == ev) {
            if (c.has && c.id == ev) return SP_ECORRUPT; /* changed and left */
            if (!cur_next(&l)) return SP_ECORRUPT;
            n_left++;
            i++;
            continue;
        }
        out[n] = b[i++];
        if (!apply_change(&c, &out[n]) || !cur_next(&c)) return SP_ECORRUPT;
        n++;
        n_changed++;
    }
    if (n != count) return SP_ECORRUPT;
    scratch_commit(view, n, tick);
    fill_stats(stats, tick, full ? 0 : p[1].via.u64, full, n_entered, n_changed, n_left, n);
    return 0;
}

/* ---------------------------------------------------------------- events */

static const char *const event_names[SP_EVENT__COUNT] = {
#define SP__EVENT_NAME(id, name) [SP_EVENT_##id] = name,
    SP_PROTO_EVENT_MAP(SP__EVENT_NAME)
#undef SP__EVENT_NAME
};

const char *sp_event_name(int type) {
    return type >= 0 && type < SP_EVENT__COUNT ? event_names[type] : NULL;
}

int sp_event_lookup(const char *name, size_t len) {
    for (int i = 0; i < SP_EVENT__COUNT; i++)
        if (strlen(event_names[i]) == len && memcmp(event_names[i], name, len) == 0) return i;
    return -1;
}

int sp_event_pack_begin(msgpack_packer *pk, int type, uint64_t tick, uint32_t nfields) {
    const char *name = sp_event_name(type);
    if (name == NULL) return SP_EINVAL;
    int r = sp_rpc_pack_notify_begin(pk, "event", 1);
    r |= msgpack_pack_map(pk, 2 + (size_t)nfields);
    r |= sp_rpc_pack_cstr(pk, "type");
    r |= sp_rpc_pack_cstr(pk, name);
    r |= sp_rpc_pack_cstr(pk, "tick");
    r |= msgpack_pack_uint64(pk, tick);
    return r ? SP_ENOMEM : 0;
}

/* Field keys of every event, from SP_PROTO_EVENT_FIELD_MAP: the packers
 * below take their keys, their order and their count from the .def. */
static const struct ev_field {
    int type;
    const char *key;
} ev_fields[] = {
#define SP__EV_FIELD(ev, key, type) {SP_EVENT_##ev, key},
    SP_PROTO_EVENT_FIELD_MAP(SP__EV_FIELD)
#undef SP__EV_FIELD
};

/* Key of the k-th field of event `type` ("" when the .def has fewer). */
static const char *ev_key(int type, unsigned k) {
    for (size_t i = 0; i < sizeof ev_fields / sizeof ev_fields[0]; i++)
        if (ev_fields[i].type == type && k-- == 0) return ev_fields[i].key;
    return "";
}

static uint32_t ev_nfields(int type) {
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof ev_fields / sizeof ev_fields[0]; i++) n += ev_fields[i].type == type;
    return n;
}

static int kv_u64(msgpack_packer *pk, const char *k, uint64_t v) {
    return sp_rpc_pack_cstr(pk, k) | msgpack_pack_uint64(pk, v);
}
static int kv_f64(msgpack_packer *pk, const char *k, double v) {
    return sp_rpc_pack_cstr(pk, k) | msgpack_pack_double(pk, v);
}

int sp_event_pack_weapon_fired(msgpack_packer *pk, uint64_t tick, uint64_t ship_id, uint64_t target_id, bool hit,
                               double damage) {
    const int t = SP_EVENT_WEAPON_FIRED;
    int r = sp_event_pack_begin(pk, t, tick, ev_nfields(t));
    if (r) return r;
    r |= kv_u64(pk, ev_key(t, 0), ship_id);
    r |= kv_u64(pk, ev_key(t, 1), target_id);
    r |= sp_rpc_pack_cstr(pk, ev_key(t, 2)) | (hit ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    r |= kv_f64(pk, ev_key(t, 3), damage);
    return r ? SP_ENOMEM : 0;
}

int sp_event_pack_resource_mined(msgpack_packer *pk, uint64_t tick, uint64_t ship_id, uint64_t asteroid_id,
                                 int resource, double amount) {
    const int t = SP_EVENT_RESOURCE_MINED;
    int r = sp_event_pack_begin(pk, t, tick, ev_nfields(t));
    if (r) return r;
    r |= kv_u64(pk, ev_key(t, 0), ship_id);
    r |= kv_u64(pk, ev_key(t, 1), asteroid_id);
    r |= sp_rpc_pack_cstr(pk, ev_key(t, 2)) | sp_rpc_pack_cstr(pk, sp_proto_resource_name(resource));
    r |= kv_f64(pk, ev_key(t, 3), amount);
    return r ? SP_ENOMEM : 0;
}

int sp_event_pack_system_alert(msgpack_packer *pk, uint64_t tick, const char *message, size_t len,
                               int64_t priority, uint32_t from) {
    if (message == NULL && len > 0) return SP_EINVAL;
    const int t = SP_EVENT_SYSTEM_ALERT;
    int r = sp_event_pack_begin(pk, t, tick, ev_nfields(t));
    if (r) return r;
    r |= sp_rpc_pack_cstr(pk, ev_key(t, 0)) | msgpack_pack_str(pk, len) |
         msgpack_pack_str_body(pk, message ? message : "", len);
    r |= sp_rpc_pack_cstr(pk, ev_key(t, 1)) | msgpack_pack_int64(pk, priority);
    r |= kv_u64(pk, ev_key(t, 2), from);
    return r ? SP_ENOMEM : 0;
}

int sp_event_pack_ship_destroyed(msgpack_packer *pk, uint64_t tick, uint64_t ship_id, uint32_t owner, uint64_t by,
                                 const char *cause) {
    const int t = SP_EVENT_SHIP_DESTROYED;
    int r = sp_event_pack_begin(pk, t, tick, ev_nfields(t));
    if (r) return r;
    r |= kv_u64(pk, ev_key(t, 0), ship_id);
    r |= kv_u64(pk, ev_key(t, 1), owner);
    r |= kv_u64(pk, ev_key(t, 2), by);
    r |= sp_rpc_pack_cstr(pk, ev_key(t, 3)) | sp_rpc_pack_cstr(pk, cause ? cause : "other");
    return r ? SP_ENOMEM : 0;
}
