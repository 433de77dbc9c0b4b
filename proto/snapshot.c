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

void sp_snap_list_init(sp_snap_list_t *v) { memset(v, 0, sizeof *v); }

void sp_snap_list_destroy(sp_snap_list_t *v) {
    if (v == NULL) return;
    free(v->recs);
    free(v->scratch);
    free(v->rows);
    memset(v, 0, sizeof *v);
}

void sp_snap_list_reset(sp_snap_list_t *v) {
    v->len = 0;
    v->tick = 0;
    v->valid = false;
}

void sp_snap_list_swap(sp_snap_list_t *a, sp_snap_list_t *b) {
    sp_snap_list_t t = *a;
    *a = *b;
    *b = t;
}

size_t sp_snap_list_bytes(const sp_snap_list_t *v) {
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
static int scratch_reserve(sp_snap_list_t *v, size_t n) {
    void *p = v->scratch;
    int rc = array_reserve(&p, &v->scratch_cap, n, sizeof(sp_snap_rec_t));
    v->scratch = p;
    return rc;
}

/* Make v->rows hold at least n indexes (contents not kept). */
static int rows_reserve(sp_snap_list_t *v, size_t n) {
    void *p = v->rows;
    int rc = array_reserve(&p, &v->rows_cap, n, sizeof(uint32_t));
    v->rows = p;
    return rc;
}

/* The records built in scratch[0, n) become the view. */
static void scratch_commit(sp_snap_list_t *v, size_t n, uint64_t tick) {
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
static int recs_reserve(sp_snap_list_t *v, size_t n) {
    void *p = v->recs;
    int rc = array_reserve(&p, &v->cap, n, sizeof(sp_snap_rec_t));
    v->recs = p;
    return rc;
}

/* The encoder side validates its input first and then overwrites the view in
 * place: no scratch array, so a daemon's per-client views cost one array each
 * (only sp_snap_v1_apply(), on the client side, double-buffers). */
sp_snap_rec_t *sp_snap_list_reserve(sp_snap_list_t *v, size_t n) {
    if (v == NULL || recs_reserve(v, n) != 0) return NULL;
    return v->recs;
}

int sp_snap_list_set(sp_snap_list_t *v, uint64_t tick, const sp_snap_rec_t *recs, size_t n) {
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

const sp_snap_rec_t *sp_snap_list_find(const sp_snap_list_t *v, uint64_t id) {
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

bool sp_snap_list_equal(const sp_snap_list_t *a, const sp_snap_list_t *b) {
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

int sp_snap_v1_encode(const sp_snap_list_t *base, const sp_snap_list_t *next, msgpack_sbuffer *out,
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

int sp_snap_v1_encode_recs(uint64_t tick, const sp_snap_rec_t *recs, size_t n, const sp_snap_list_t *base,
                        sp_snap_list_t *next_out, msgpack_sbuffer *out, sp_snap_stats_t *stats) {
    if (base != NULL && base == next_out) return SP_EINVAL;
    int rc = sp_snap_list_set(next_out, tick, recs, n);
    if (rc) return rc;
    return sp_snap_v1_encode(base, next_out, out, stats);
}

/* ---------------------------------------------------------------- decode */

static bool obj_u32(const msgpack_object *o, uint32_t *v) {
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX) return false;
    *v = (uint32_t)o->via.u64;
    return true;
}
static bool add_i32(int32_t *v, int64_t d) {
    if (d > (int64_t)UINT32_MAX || d < -(int64_t)UINT32_MAX) return false; /* keeps the sum in int64 */
    int64_t x = (int64_t)*v + d;
    if (x < INT32_MIN || x > INT32_MAX) return false;
    *v = (int32_t)x;
    return true;
}

/* A cursor over one delta-coded list of integers, in either of two forms:
 * msgpack-c objects (a != NULL) or the list's msgpack bytes (p, end), so the
 * same staging code serves sp_snap_apply() and sp_snap_apply_bytes(). */
typedef struct cursor {
    const msgpack_object *a;      /* object form: the list's elements */
    const unsigned char *p, *end; /* byte form: the next element, the end of the bytes */
    uint32_t n, pos;              /* elements in the list, elements read */
    uint64_t id;
    bool has;
} cursor_t;

/* One msgpack integer at *pp: its bits in *u and whether it is negative (as
 * msgpack-c classifies it: a signed encoding of a value >= 0 is positive).
 * False for any other type or a truncated one; *pp moves past it. */
/* Payload bytes after the first byte b of a msgpack integer (0 for a
 * fixint: cc..cf are uint 1-8 bytes, d0..d3 int 1-8), or -1 for any other
 * type. */
static inline int raw_int_payload(unsigned char b) {
    if (b <= 0x7f || b >= 0xe0) return 0;
    if (b < 0xcc || b > 0xd3) return -1;
    return 1 << ((b - 0xcc) & 3);
}

static inline bool raw_num(const unsigned char **pp, const unsigned char *end, uint64_t *u, bool *neg) {
    const unsigned char *p = *pp;
    if (p >= end) return false;
    unsigned char b = *p++;
    int w = raw_int_payload(b);
    if (w == 0) {
        *neg = b >= 0xe0;
        *u = *neg ? (uint64_t)(int64_t)(int8_t)b : b;
        *pp = p;
        return true;
    }
    if (w < 0) return false;
    unsigned nb = (unsigned)w;
    if ((size_t)(end - p) < nb) return false;
    uint64_t v = 0;
    for (unsigned i = 0; i < nb; i++) v = (v << 8) | p[i];
    *pp = p + nb;
    if (b <= 0xcf) {
        *u = v;
        *neg = false;
        return true;
    }
    int64_t x = nb == 1 ? (int8_t)v : nb == 2 ? (int16_t)v : nb == 4 ? (int32_t)v : (int64_t)v;
    *neg = x < 0;
    *u = (uint64_t)x;
    return true;
}

/* The next element of the list as an integer (see raw_num). */
static inline bool cur_num(cursor_t *c, uint64_t *u, bool *neg) {
    if (c->pos >= c->n) return false;
    c->pos++;
    if (c->a == NULL) return raw_num(&c->p, c->end, u, neg);
    const msgpack_object *o = &c->a[c->pos - 1];
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *u = o->via.u64;
        *neg = false;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *u = (uint64_t)o->via.i64;
        *neg = true;
        return true;
    }
    return false;
}
static inline bool cur_i64(cursor_t *c, int64_t *v) {
    uint64_t u;
    bool neg;
    if (!cur_num(c, &u, &neg) || (!neg && u > (uint64_t)INT64_MAX)) return false;
    *v = (int64_t)u;
    return true;
}
static bool cur_u32(cursor_t *c, uint32_t *v) {
    uint64_t u;
    bool neg;
    if (!cur_num(c, &u, &neg) || neg || u > UINT32_MAX) return false;
    *v = (uint32_t)u;
    return true;
}
static bool cur_i32(cursor_t *c, int32_t *v) {
    int64_t x;
    if (!cur_i64(c, &x) || x < INT32_MIN || x > INT32_MAX) return false;
    *v = (int32_t)x;
    return true;
}

/* Read the next iddelta; false on a malformed one (0, not a uint, overflow). */
static bool cur_next(cursor_t *c) {
    if (c->pos >= c->n) {
        c->has = false;
        return true;
    }
    uint64_t d;
    bool neg;
    if (!cur_num(c, &d, &neg) || neg || d == 0) return false;
    uint64_t id = c->id + d;
    if (id < c->id) return false;
    c->id = id;
    c->has = true;
    return true;
}

static bool read_entered(cursor_t *c, sp_snap_rec_t *r) {
    uint32_t kind; /* the 10 values after the iddelta */
    memset(r, 0, sizeof *r);
    r->id = c->id;
    if (!cur_u32(c, &kind) || kind == 0 || kind > 255) return false;
    r->kind = (uint8_t)kind;
    for (int k = 0; k < 3; k++)
        if (!cur_i32(c, &r->pos[k])) return false;
    for (int k = 0; k < 3; k++)
        if (!cur_i32(c, &r->vel[k])) return false;
    return cur_u32(c, &r->hp) && cur_u32(c, &r->owner) && cur_u32(c, &r->radius);
}

static bool apply_change(cursor_t *c, sp_snap_rec_t *r) {
    int64_t op;
    if (!cur_i64(c, &op)) return false;
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
    for (unsigned k = 0; k < nv; k++)
        if (!cur_i64(c, &v[k])) return false;
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

/* Stage a changes-only delta of the sorted rows b[0, nb): every entry of
 * c is decoded into out[k] (a patched copy of its row) and its row index
 * into rows[k], validating all of it without touching b. out and rows hold
 * at least min(ceil(c->n / 2), nb) entries (each entry is at least 2 ints,
 * but a malformed last one may be 1 and is staged before it is refused, and
 * each names a distinct row). Returns 0 (*nout = entries) or SP_ECORRUPT. */
static int stage_patch(const sp_snap_rec_t *b, size_t nb, cursor_t *c, sp_snap_rec_t *out, uint32_t *rows,
                       size_t *nout) {
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
    *nout = k;
    return 0;
}

typedef struct merge_counts {
    uint32_t entered, changed, left;
} merge_counts_t;

/* Stage the merge of the sorted rows b[0, nb) (NULL, 0: none) with the
 * entered, changed and left lists into out (room for nb + e->n / 11
 * records, the most it can write). Runs of rows no list names are copied
 * with one memcpy each. Returns 0 (*nout records, id-ascending) or
 * SP_ECORRUPT. Reads b only. */
static int stage_merge(const sp_snap_rec_t *b, size_t nb, cursor_t *e, cursor_t *c, cursor_t *l,
                       sp_snap_rec_t *out, size_t *nout, merge_counts_t *mc) {
    size_t i = 0, n = 0;
    if (!cur_next(e) || !cur_next(c) || !cur_next(l)) return SP_ECORRUPT;
    for (;;) {
        /* The smallest id any list names next; rows below it are unchanged. */
        bool any = e->has || c->has || l->has;
        uint64_t ev = UINT64_MAX;
        if (e->has) ev = e->id;
        if (c->has && c->id < ev) ev = c->id;
        if (l->has && l->id < ev) ev = l->id;
        size_t j = any ? seek(b, i, nb, ev) : nb;
        if (j > i) {
            memcpy(out + n, b + i, (j - i) * sizeof *b);
            n += j - i;
            i = j;
        }
        if (!any) break;
        bool in_view = i < nb && b[i].id == ev;
        if (e->has && e->id == ev) {
            if (in_view) return SP_ECORRUPT; /* entered twice */
            if (!read_entered(e, &out[n++]) || !cur_next(e)) return SP_ECORRUPT;
            mc->entered++;
            continue; /* a changed/left list naming the same id fails next round */
        }
        if (!in_view) return SP_ECORRUPT; /* a changed or left id the view lacks */
        if (l->has && l->id == ev) {
            if (c->has && c->id == ev) return SP_ECORRUPT; /* changed and left */
            if (!cur_next(l)) return SP_ECORRUPT;
            mc->left++;
            i++;
            continue;
        }
        out[n] = b[i++];
        if (!apply_change(c, &out[n]) || !cur_next(c)) return SP_ECORRUPT;
        n++;
        mc->changed++;
    }
    *nout = n;
    return 0;
}

static cursor_t cursor_of(const msgpack_object *arr) {
    cursor_t c = {arr->via.array.ptr, NULL, NULL, arr->via.array.size, 0, 0, false};
    return c;
}

static void fill_stats(sp_snap_stats_t *stats, uint64_t tick, uint64_t base_tick, bool full, uint32_t entered,
                       uint32_t changed, uint32_t left, size_t count) {
    if (stats == NULL) return;
    memset(stats, 0, sizeof *stats);
    stats->tick = tick;
    stats->base_tick = base_tick;
    stats->full = full;
    stats->entered = entered;
    stats->changed = changed;
    stats->left = left;
    stats->count = (uint32_t)count;
}

int sp_snap_v1_apply(sp_snap_list_t *view, const msgpack_object *params, sp_snap_stats_t *stats) {
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
    cursor_t e = cursor_of(&p[2]), c = cursor_of(&p[3]), l = cursor_of(&p[4]);
    if (e.n % SP_SNAP_ENTERED_INTS != 0) return SP_ECORRUPT;
    if (full && (c.n != 0 || l.n != 0)) return SP_ECORRUPT;
    if (!full && (!view->valid || p[1].via.u64 != view->tick)) return SP_EPROTO; /* desync */

    if (!full && e.n == 0 && l.n == 0) {
        /* A changes-only delta (the steady state of a slowly moving scene):
         * stage the patched rows, then copy them over their originals. */
        if (count != view->len) return SP_ECORRUPT;
        size_t max_changed = (c.n + 1) / 2 < view->len ? (c.n + 1) / 2 : view->len;
        int rc = scratch_reserve(view, max_changed);
        if (rc == 0) rc = rows_reserve(view, max_changed);
        if (rc) return rc;
        size_t k;
        if ((rc = stage_patch(view->recs, view->len, &c, view->scratch, view->rows, &k)) != 0) return rc;
        for (size_t j = 0; j < k; j++) view->recs[view->rows[j]] = view->scratch[j]; /* valid: commit */
        view->tick = tick;
        fill_stats(stats, tick, p[1].via.u64, false, 0, (uint32_t)k, 0, view->len);
        return 0;
    }

    /* Otherwise one merge pass of the view and the three id lists into
     * scratch, swapped in at the end (the view is untouched until then). */
    const sp_snap_rec_t *b = full ? NULL : view->recs;
    size_t nb = full ? 0 : view->len;
    size_t max_out = nb + e.n / SP_SNAP_ENTERED_INTS;
    if (count > max_out) return SP_ECORRUPT;
    int rc = scratch_reserve(view, max_out);
    if (rc) return rc;
    size_t n;
    merge_counts_t mc = {0, 0, 0};
    if ((rc = stage_merge(b, nb, &e, &c, &l, view->scratch, &n, &mc)) != 0) return rc;
    if (n != count) return SP_ECORRUPT;
    scratch_commit(view, n, tick);
    fill_stats(stats, tick, full ? 0 : p[1].via.u64, full, mc.entered, mc.changed, mc.left, n);
    return 0;
}

/* ================================================================ protocol 2 */

/* ---------------------------------------------------------------- grid */

int sp_snap_grid_init(sp_snap_grid_t *g, double half_extent, double edge) {
    if (g == NULL || !(half_extent > 0) || !(edge > 0) || isinf(half_extent) || isinf(edge)) return SP_EINVAL;
    double n = ceil(2 * half_extent / edge);
    if (n < 1) n = 1;
    if (n > SP_SNAP_MAX_CELLS_PER_AXIS) return SP_EINVAL;
    g->half_extent = half_extent;
    g->edge = edge;
    g->n = (uint32_t)n;
    return 0;
}

/* ---------------------------------------------------------------- cell views */

/* What sp_snap_apply() will do with one chunk, decided and staged before
 * the view is written. */
enum { PLAN_PATCH, PLAN_REPLACE };
struct plan {
    cursor_t list[3];          /* the chunk's entered, changed and left lists, unread */
    uint32_t cell, n;          /* cell id, entities after */
    uint64_t cbase;            /* a delta chunk's cbase */
    size_t old;                /* index in view->cells, or SIZE_MAX: not in the view */
    bool has_old;              /* its old content stays until replaced (a delta, cell in view, not gone) */
    bool fullcell;             /* cbase nil: the chunk replaces the cell from nothing */
    uint8_t mode;
    size_t off;                /* scratch (and rows) offset of its staged records */
    size_t bound;              /* room reserved there */
    size_t staged;             /* records staged (PATCH: patched rows; REPLACE: == n) */
    sp_snap_rec_t *fresh;      /* REPLACE of a cell not in the view: its new array */
};

/* A snapshot's params as the front ends (objects or bytes) read them; the
 * chunks are in view->plan, the gone cells in view->gone. */
struct head {
    uint64_t tick, base, count;
    bool full;
    size_t nch, ngone;
    int err; /* 0, or SP_ECORRUPT found in the chunks or gone (reported after a desync) */
};

/* Staging buffers of a cell view (contents not kept). */
static int v2_scratch_reserve(sp_snap_view_t *v, size_t n) {
    void *p = v->scratch;
    int rc = array_reserve(&p, &v->scratch_cap, n, sizeof(sp_snap_rec_t));
    v->scratch = p;
    return rc;
}

static int v2_rows_reserve(sp_snap_view_t *v, size_t n) {
    void *p = v->rows;
    int rc = array_reserve(&p, &v->rows_cap, n, sizeof(uint32_t));
    v->rows = p;
    return rc;
}

/* Make the cell list hold at least n cells, keeping its content. */
static int cells_reserve_keep(sp_snap_view_t *v, size_t n) {
    if (n <= v->cells_cap) return 0;
    size_t cap = v->cells_cap ? v->cells_cap * 2 : 16;
    if (cap < n) cap = n;
    size_t bytes;
    if (sp_size_mul(cap, sizeof(sp_snap_cell_t), &bytes) != 0) return SP_ENOMEM;
    sp_snap_cell_t *p = realloc(v->cells, bytes);
    if (p == NULL) return SP_ENOMEM;
    v->cells = p;
    v->cells_cap = cap;
    return 0;
}

void sp_snap_view_init(sp_snap_view_t *v) { memset(v, 0, sizeof *v); }

void sp_snap_view_destroy(sp_snap_view_t *v) {
    if (v == NULL) return;
    for (size_t i = 0; i < v->ncells; i++) free(v->cells[i].recs);
    free(v->cells);
    free(v->spare);
    free(v->scratch);
    free(v->rows);
    free(v->plan);
    free(v->gone);
    free(v->idx_ids);
    free(v->idx_cells);
    memset(v, 0, sizeof *v);
}

static void idx_clear(sp_snap_view_t *v);

void sp_snap_view_reset(sp_snap_view_t *v) {
    idx_clear(v);
    for (size_t i = 0; i < v->ncells; i++) free(v->cells[i].recs);
    v->ncells = 0;
    v->count = 0;
    v->tick = 0;
    v->valid = false;
}

/* Index of the first cell >= id in v's cells (ncells if none). */
static size_t cell_lower(const sp_snap_cell_t *cells, size_t n, uint32_t id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cells[mid].cell < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

const sp_snap_cell_t *sp_snap_view_cell(const sp_snap_view_t *v, uint32_t cell) {
    size_t i = cell_lower(v->cells, v->ncells, cell);
    return i < v->ncells && v->cells[i].cell == cell ? &v->cells[i] : NULL;
}

static const sp_snap_rec_t *recs_find(const sp_snap_rec_t *r, size_t n, uint64_t id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && r[lo].id == id ? &r[lo] : NULL;
}

/* ---- the id index (entity id -> cell id), see sp_snap_view_t */

static size_t idx_slot(uint64_t id, size_t cap) {
    id ^= id >> 33; /* murmur3's finalizer: ids are dense, slots must not be */
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    return (size_t)id & (cap - 1);
}

/* Room for n entries at most half full (rehashing the present ones).
 * Returns 0 or SP_ENOMEM (index unchanged). */
static int idx_reserve(sp_snap_view_t *v, size_t n) {
    if (n <= v->idx_cap / 2) return 0;
    size_t cap = v->idx_cap ? v->idx_cap : 64;
    while (cap / 2 < n) {
        if (cap > SIZE_MAX / 2 / sizeof(uint64_t)) return SP_ENOMEM;
        cap *= 2;
    }
    uint64_t *ids = calloc(cap, sizeof *ids);
    uint32_t *cells = malloc(cap * sizeof *cells);
    if (ids == NULL || cells == NULL) {
        free(ids);
        free(cells);
        return SP_ENOMEM;
    }
    for (size_t i = 0; i < v->idx_cap; i++) {
        if (v->idx_ids[i] == 0) continue;
        size_t s = idx_slot(v->idx_ids[i], cap);
        while (ids[s] != 0) s = (s + 1) & (cap - 1);
        ids[s] = v->idx_ids[i];
        cells[s] = v->idx_cells[i];
    }
    free(v->idx_ids);
    free(v->idx_cells);
    v->idx_ids = ids;
    v->idx_cells = cells;
    v->idx_cap = cap;
    return 0;
}

/* id -> cell (capacity reserved by the caller). */
static void idx_put(sp_snap_view_t *v, uint64_t id, uint32_t cell) {
    size_t m = v->idx_cap - 1, s = idx_slot(id, v->idx_cap);
    while (v->idx_ids[s] != 0 && v->idx_ids[s] != id) s = (s + 1) & m;
    if (v->idx_ids[s] == 0) v->idx_len++;
    v->idx_ids[s] = id;
    v->idx_cells[s] = cell;
}

/* Forget id if the index has it in `cell` (backward-shift deletion: no
 * tombstones, probes stay short). */
static void idx_del(sp_snap_view_t *v, uint64_t id, uint32_t cell) {
    if (v->idx_cap == 0) return;
    size_t m = v->idx_cap - 1, s = idx_slot(id, v->idx_cap);
    while (v->idx_ids[s] != id) {
        if (v->idx_ids[s] == 0) return;
        s = (s + 1) & m;
    }
    if (v->idx_cells[s] != cell) return;
    v->idx_len--;
    for (size_t j = (s + 1) & m;; j = (j + 1) & m) {
        if (v->idx_ids[j] == 0) break;
        size_t h = idx_slot(v->idx_ids[j], v->idx_cap);
        /* j's entry may move to the hole s unless its home h lies in (s, j] */
        if (((j - h) & m) >= ((j - s) & m)) {
            v->idx_ids[s] = v->idx_ids[j];
            v->idx_cells[s] = v->idx_cells[j];
            s = j;
        }
    }
    v->idx_ids[s] = 0;
}

static void idx_clear(sp_snap_view_t *v) {
    if (v->idx_cap) memset(v->idx_ids, 0, v->idx_cap * sizeof *v->idx_ids);
    v->idx_len = 0;
}

const sp_snap_rec_t *sp_snap_view_find(const sp_snap_view_t *v, uint64_t id) {
    if (id == 0 || v->idx_cap == 0) return NULL;
    size_t m = v->idx_cap - 1, s = idx_slot(id, v->idx_cap);
    while (v->idx_ids[s] != id) {
        if (v->idx_ids[s] == 0) return NULL;
        s = (s + 1) & m;
    }
    const sp_snap_cell_t *c = sp_snap_view_cell(v, v->idx_cells[s]);
    return c ? recs_find(c->recs, c->len, id) : NULL;
}

/* A REPLACE plan that is a delta of a cell the view keeps: its rows are the
 * old ones minus `left` plus `entered`, so the index needs only those two
 * lists, not the whole cell (an entity crossing a cell border would
 * otherwise cost both cells' populations in index work). */
static bool idx_delta(const struct plan *q) { return q->has_old && !q->fullcell; }

/* Apply fn(view, id, cell) to every id of a delta-coded list already
 * validated by pass 2 (c unread; stride ints per entry, the iddelta first). */
static void idx_walk(sp_snap_view_t *v, cursor_t c, unsigned stride, uint32_t cell,
                     void (*fn)(sp_snap_view_t *, uint64_t, uint32_t)) {
    uint64_t u;
    bool neg;
    while (cur_next(&c) && c.has) {
        fn(v, c.id, cell);
        for (unsigned k = 1; k < stride; k++) (void)cur_num(&c, &u, &neg);
    }
}

static bool recs_valid(const sp_snap_rec_t *recs, size_t n) {
    if (recs == NULL && n > 0) return false;
    for (size_t i = 0; i < n; i++)
        if (recs[i].id == 0 || (i > 0 && recs[i].id <= recs[i - 1].id) || recs[i].kind == 0) return false;
    return n <= UINT32_MAX;
}

/* Make the cell's record array hold at least n records, keeping its
 * content. On failure the cell is unchanged. */
static int cell_reserve(sp_snap_cell_t *c, size_t n) {
    if (n <= c->cap) return 0;
    size_t cap = c->cap ? c->cap : 8;
    while (cap < n) cap = cap > UINT32_MAX / 2 ? n : cap * 2;
    if (cap > UINT32_MAX) return SP_ENOMEM;
    size_t bytes;
    if (sp_size_mul(cap, sizeof(sp_snap_rec_t), &bytes) != 0) return SP_ENOMEM;
    sp_snap_rec_t *p = realloc(c->recs, bytes);
    if (p == NULL) return SP_ENOMEM;
    c->recs = p;
    c->cap = (uint32_t)cap;
    return 0;
}

int sp_snap_view_put_cell(sp_snap_view_t *v, uint64_t tick, uint32_t cell, const sp_snap_rec_t *recs, size_t n) {
    if (v == NULL || !recs_valid(recs, n)) return SP_EINVAL;
    size_t i = cell_lower(v->cells, v->ncells, cell);
    bool have = i < v->ncells && v->cells[i].cell == cell;
    if (idx_reserve(v, v->count + n) != 0) return SP_ENOMEM;
    if (!have) {
        int rc = cells_reserve_keep(v, v->ncells + 1);
        if (rc) return rc;
        sp_snap_cell_t nc = {cell, 0, 0, NULL};
        if (cell_reserve(&nc, n) != 0) return SP_ENOMEM;
        memmove(v->cells + i + 1, v->cells + i, (v->ncells - i) * sizeof v->cells[0]);
        v->cells[i] = nc;
        v->ncells++;
    } else if (cell_reserve(&v->cells[i], n) != 0) {
        return SP_ENOMEM;
    }
    sp_snap_cell_t *c = &v->cells[i];
    v->count = v->count - c->len + n;
    for (uint32_t k = 0; k < c->len; k++) idx_del(v, c->recs[k].id, cell);
    if (n) memcpy(c->recs, recs, n * sizeof *recs);
    c->len = (uint32_t)n;
    for (size_t k = 0; k < n; k++) idx_put(v, recs[k].id, cell);
    v->tick = tick;
    v->valid = true;
    return 0;
}

bool sp_snap_view_equal(const sp_snap_view_t *a, const sp_snap_view_t *b) {
    if (a->valid != b->valid || a->tick != b->tick || a->ncells != b->ncells || a->count != b->count) return false;
    for (size_t i = 0; i < a->ncells; i++) {
        const sp_snap_cell_t *x = &a->cells[i], *y = &b->cells[i];
        if (x->cell != y->cell || x->len != y->len) return false;
        for (uint32_t k = 0; k < x->len; k++)
            if (!rec_equal(&x->recs[k], &y->recs[k])) return false;
    }
    return true;
}

size_t sp_snap_view_bytes(const sp_snap_view_t *v) {
    size_t b = (v->cells_cap + v->spare_cap) * sizeof(sp_snap_cell_t) + v->scratch_cap * sizeof(sp_snap_rec_t) +
               (v->rows_cap + v->gone_cap) * sizeof(uint32_t) + v->plan_cap * sizeof(struct plan) +
               v->idx_cap * (sizeof(uint64_t) + sizeof(uint32_t));
    for (size_t i = 0; i < v->ncells; i++) b += (size_t)v->cells[i].cap * sizeof(sp_snap_rec_t);
    return b;
}

/* ---------------------------------------------------------------- v2 decode */

static void plans_free_fresh(struct plan *pl, size_t n) {
    for (size_t k = 0; k < n; k++) {
        free(pl[k].fresh);
        pl[k].fresh = NULL;
    }
}

static int plan_reserve(sp_snap_view_t *v, size_t n) {
    void *p = v->plan;
    int rc = array_reserve(&p, &v->plan_cap, n, sizeof(struct plan));
    v->plan = p;
    return rc;
}
static int gone_reserve(sp_snap_view_t *v, size_t n) {
    void *p = v->gone;
    int rc = array_reserve(&p, &v->gone_cap, n, sizeof(uint32_t));
    v->gone = p;
    return rc;
}

/* The object front end: params as msgpack-c objects -> *h, view->plan (each
 * chunk's cell, cbase, lists and n) and view->gone. Returns SP_ECORRUPT for
 * a wrong top-level shape; errors inside the chunks or gone go to h->err
 * (a desync is reported first). */
static int front_objects(sp_snap_view_t *view, const msgpack_object *params, struct head *h) {
    memset(h, 0, sizeof *h);
    if (params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size < 5) return SP_ECORRUPT;
    const msgpack_object *p = params->via.array.ptr;
    if (p[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) return SP_ECORRUPT;
    h->tick = p[0].via.u64;
    h->full = p[1].type == MSGPACK_OBJECT_NIL;
    if (!h->full && p[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER) return SP_ECORRUPT;
    h->base = h->full ? 0 : p[1].via.u64;
    if (p[2].type != MSGPACK_OBJECT_ARRAY || p[3].type != MSGPACK_OBJECT_ARRAY) return SP_ECORRUPT;
    if (p[4].type != MSGPACK_OBJECT_POSITIVE_INTEGER) return SP_ECORRUPT;
    h->count = p[4].via.u64;
    if (!h->full && (!view->valid || h->base != view->tick)) return SP_EPROTO; /* before any allocation */

    const msgpack_object *gone = p[3].via.array.ptr;
    h->ngone = p[3].via.array.size;
    if ((h->err = gone_reserve(view, h->ngone)) != 0) return 0;
    for (size_t g = 0; g < h->ngone; g++) {
        if (gone[g].type != MSGPACK_OBJECT_POSITIVE_INTEGER || gone[g].via.u64 > UINT32_MAX) {
            h->err = SP_ECORRUPT;
            return 0;
        }
        view->gone[g] = (uint32_t)gone[g].via.u64;
    }
    const msgpack_object *chunks = p[2].via.array.ptr;
    h->nch = p[2].via.array.size;
    if ((h->err = plan_reserve(view, h->nch)) != 0) return 0;
    struct plan *pl = view->plan;
    for (size_t k = 0; k < h->nch; k++) {
        const msgpack_object *o = &chunks[k];
        struct plan *q = &pl[k];
        if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 6) goto corrupt;
        const msgpack_object *ch = o->via.array.ptr;
        if (ch[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || ch[0].via.u64 > UINT32_MAX) goto corrupt;
        q->cell = (uint32_t)ch[0].via.u64;
        q->fullcell = ch[1].type == MSGPACK_OBJECT_NIL;
        if (!q->fullcell && ch[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER) goto corrupt;
        q->cbase = q->fullcell ? 0 : ch[1].via.u64;
        for (int a = 0; a < 3; a++) {
            if (ch[2 + a].type != MSGPACK_OBJECT_ARRAY) goto corrupt;
            q->list[a] = cursor_of(&ch[2 + a]);
        }
        if (ch[5].type != MSGPACK_OBJECT_POSITIVE_INTEGER || ch[5].via.u64 > UINT32_MAX) goto corrupt;
        q->n = (uint32_t)ch[5].via.u64;
    }
    return 0;
corrupt:
    h->err = SP_ECORRUPT;
    return 0;
}

/* ---- the byte front end: msgpack read straight from the wire bytes */

/* An array header at *pp: its element count. */
static bool raw_array(const unsigned char **pp, const unsigned char *end, uint32_t *n) {
    const unsigned char *p = *pp;
    if (p >= end) return false;
    unsigned char b = *p++;
    unsigned nb = b == 0xdc ? 2 : b == 0xdd ? 4 : 0;
    if (nb == 0) {
        if (b < 0x90 || b > 0x9f) return false;
        *n = b & 0x0f;
    } else {
        if ((size_t)(end - p) < nb) return false;
        uint32_t v = 0;
        for (unsigned i = 0; i < nb; i++) v = (v << 8) | p[i];
        p += nb;
        *n = v;
    }
    *pp = p;
    return true;
}

/* Skip one msgpack object of any type at *pp (sp_rpc_object_size). */
static bool raw_skip(const unsigned char **pp, const unsigned char *end) {
    size_t k = sp_rpc_object_size(*pp, (size_t)(end - *pp));
    *pp += k;
    return k > 0;
}

/* A list of n integers at *pp: c reads it later; *pp moves past it. */
static bool raw_list(const unsigned char **pp, const unsigned char *end, cursor_t *c) {
    uint32_t n;
    if (!raw_array(pp, end, &n)) return false;
    const unsigned char *p = *pp;
    *c = (cursor_t){NULL, p, end, n, 0, 0, false};
    for (uint32_t i = 0; i < n; i++) { /* sizes told by first bytes: no value decoded */
        if (p >= end) return false;
        int w = raw_int_payload(*p);
        if (w < 0 || (size_t)(end - p) < 1 + (size_t)w) return false;
        p += 1 + (size_t)w;
    }
    *pp = p;
    return true;
}

static bool raw_u64(const unsigned char **pp, const unsigned char *end, uint64_t *v) {
    bool neg;
    return raw_num(pp, end, v, &neg) && !neg;
}

/* One chunk [cell, cbase|nil, entered, changed, left, n, ...] into q. */
static bool raw_chunk(const unsigned char **pp, const unsigned char *end, struct plan *q) {
    uint32_t m;
    uint64_t v;
    if (!raw_array(pp, end, &m) || m < 6) return false;
    if (!raw_u64(pp, end, &v) || v > UINT32_MAX) return false;
    q->cell = (uint32_t)v;
    q->fullcell = *pp < end && **pp == 0xc0;
    if (q->fullcell) {
        ++*pp;
        q->cbase = 0;
    } else if (!raw_u64(pp, end, &q->cbase)) {
        return false;
    }
    for (int a = 0; a < 3; a++)
        if (!raw_list(pp, end, &q->list[a])) return false;
    if (!raw_u64(pp, end, &v) || v > UINT32_MAX) return false;
    q->n = (uint32_t)v;
    for (uint32_t k = 6; k < m; k++) /* later versions' elements: ignored */
        if (!raw_skip(pp, end)) return false;
    return true;
}

/* The byte front end: the same as front_objects() from the params array's
 * msgpack bytes. The count comes after the chunks, so they are read first;
 * an error there is kept in h->err and the rest skipped to find it. */
static int front_bytes(sp_snap_view_t *view, const unsigned char *p, const unsigned char *end, struct head *h) {
    memset(h, 0, sizeof *h);
    uint32_t np, nch, ngone;
    if (!raw_array(&p, end, &np) || np < 5) return SP_ECORRUPT;
    if (!raw_u64(&p, end, &h->tick)) return SP_ECORRUPT;
    h->full = p < end && *p == 0xc0;
    if (h->full) p++;
    else if (!raw_u64(&p, end, &h->base)) return SP_ECORRUPT;
    const unsigned char *chunks = p;
    if (!raw_array(&p, end, &nch)) return SP_ECORRUPT;
    h->nch = nch;
    if (nch > (size_t)(end - p)) return SP_ECORRUPT; /* truncated: each chunk takes bytes */
    if ((h->err = plan_reserve(view, nch)) == 0) {
        struct plan *pl = view->plan;
        for (uint32_t k = 0; k < nch; k++)
            if (!raw_chunk(&p, end, &pl[k])) {
                h->err = SP_ECORRUPT;
                break;
            }
    }
    if (h->err) { /* find the end of the chunks another way */
        p = chunks;
        if (!raw_skip(&p, end)) return SP_ECORRUPT;
    }
    if (!raw_array(&p, end, &ngone)) return SP_ECORRUPT;
    h->ngone = ngone;
    if (ngone > (size_t)(end - p)) return SP_ECORRUPT;
    int gerr = h->err ? h->err : gone_reserve(view, ngone);
    for (uint32_t g = 0; g < ngone; g++) {
        uint64_t v;
        bool neg;
        if (!raw_num(&p, end, &v, &neg)) { /* not an integer: skip it as anything */
            if (!raw_skip(&p, end)) return SP_ECORRUPT;
            gerr = gerr ? gerr : SP_ECORRUPT;
            continue;
        }
        if (neg || v > UINT32_MAX) gerr = gerr ? gerr : SP_ECORRUPT;
        else if (gerr == 0) view->gone[g] = (uint32_t)v;
    }
    h->err = gerr;
    if (!raw_u64(&p, end, &h->count)) return SP_ECORRUPT;
    return 0;
}

/* The shared decoder of both front ends (sp_snap_apply's contract). */
static int apply_core(sp_snap_view_t *view, const struct head *h, sp_snap_stats_t *stats) {
    bool full = h->full;
    uint64_t tick = h->tick, base = h->base, count = h->count;
    if (!full && (!view->valid || base != view->tick)) return SP_EPROTO; /* desync */
    if (h->err) return h->err;

    /* gone: strictly ascending cell ids. */
    const uint32_t *gone = view->gone;
    size_t ngone = h->ngone;
    for (size_t g = 1; g < ngone; g++)
        if (gone[g] <= gone[g - 1]) return SP_ECORRUPT;

    /* Pass 1: every chunk's shape, its cell's place in the view, its mode
     * and the scratch room it needs. No decoding yet. */
    size_t nch = h->nch;
    struct plan *pl = view->plan;
    size_t ci = 0, gi = 0, need = 0;
    uint64_t total = full ? 0 : view->count;
    bool relist = full; /* the cell list changes: rebuild it */
    uint32_t nfull = 0;
    for (size_t k = 0; k < nch; k++) {
        struct plan *q = &pl[k];
        uint32_t cell = q->cell, n = q->n;
        bool fullcell = q->fullcell;
        if (k > 0 && cell <= pl[k - 1].cell) return SP_ECORRUPT;
        if (!fullcell && (full || q->cbase != base)) return SP_ECORRUPT;
        size_t ne = q->list[0].n, nc = q->list[1].n, nl = q->list[2].n;
        if (ne % SP_SNAP_ENTERED_INTS != 0) return SP_ECORRUPT;
        if (fullcell && (nc != 0 || nl != 0)) return SP_ECORRUPT;
        nfull += fullcell;
        ci += cell_lower(view->cells + ci, view->ncells - ci, cell);
        bool in_view = ci < view->ncells && view->cells[ci].cell == cell;
        while (gi < ngone && gone[gi] < cell) gi++;
        bool is_gone = gi < ngone && gone[gi] == cell;
        q->old = in_view ? ci : SIZE_MAX;
        q->has_old = !full && in_view && !is_gone;
        q->fresh = NULL;
        q->staged = 0;
        size_t old_len = q->has_old ? view->cells[ci].len : 0;
        size_t base_len = fullcell ? 0 : old_len; /* what the lists apply to */
        if (!in_view) relist = true;
        if (!fullcell && q->has_old && ne == 0 && nl == 0) {
            q->mode = PLAN_PATCH;
            if (n != old_len) return SP_ECORRUPT;
            q->bound = (nc + 1) / 2 < old_len ? (nc + 1) / 2 : old_len;
        } else {
            q->mode = PLAN_REPLACE;
            q->bound = base_len + ne / SP_SNAP_ENTERED_INTS;
            if (n > q->bound) return SP_ECORRUPT;
        }
        q->off = need;
        need += q->bound; /* <= view->count + message entries: no overflow */
        total = total - old_len + n;
    }
    if (!full) { /* the gone cells' entities leave (those the chunks reuse were counted above) */
        size_t vi = 0;
        for (size_t g = 0; g < ngone; g++) {
            uint32_t cell = gone[g];
            vi += cell_lower(view->cells + vi, view->ncells - vi, cell);
            if (vi >= view->ncells || view->cells[vi].cell != cell) continue;
            relist = true;
            total -= view->cells[vi].len; /* a chunk of a gone cell did not count it (has_old false) */
        }
    }
    if (total != count) return SP_ECORRUPT;

    /* Pass 2: decode every chunk into scratch, validating everything. */
    int rc = v2_scratch_reserve(view, need);
    if (rc == 0) rc = v2_rows_reserve(view, need);
    if (rc) return rc;
    uint32_t n_entered = 0, n_changed = 0, n_left = 0;
    for (size_t k = 0; k < nch; k++) {
        struct plan *q = &pl[k];
        const sp_snap_cell_t *oc = q->has_old && !q->fullcell ? &view->cells[q->old] : NULL;
        cursor_t e = q->list[0], c = q->list[1], l = q->list[2];
        if (q->mode == PLAN_PATCH) {
            rc = stage_patch(oc->recs, oc->len, &c, view->scratch + q->off, view->rows + q->off, &q->staged);
            n_changed += (uint32_t)q->staged;
        } else {
            merge_counts_t mc = {0, 0, 0};
            rc = stage_merge(oc ? oc->recs : NULL, oc ? oc->len : 0, &e, &c, &l, view->scratch + q->off, &q->staged,
                             &mc);
            if (rc == 0 && q->staged != q->n) rc = SP_ECORRUPT;
            n_entered += mc.entered;
            n_changed += mc.changed;
            n_left += mc.left;
        }
        if (rc) return rc;
    }

    /* Pass 3: all the memory the commit writes to (invisible to a reader
     * of the view: arrays grow with their content kept). */
    if (relist) {
        void *sp = view->spare;
        rc = array_reserve(&sp, &view->spare_cap, (full ? 0 : view->ncells) + nch, sizeof(sp_snap_cell_t));
        view->spare = sp;
        if (rc) return rc;
    }
    for (size_t k = 0; k < nch && rc == 0; k++) {
        struct plan *q = &pl[k];
        if (q->mode != PLAN_REPLACE) continue;
        if (q->old != SIZE_MAX) {
            rc = cell_reserve(&view->cells[q->old], q->n);
        } else if (q->n > 0) {
            size_t bytes;
            if (sp_size_mul(q->n, sizeof(sp_snap_rec_t), &bytes) != 0 || (q->fresh = malloc(bytes)) == NULL)
                rc = SP_ENOMEM;
        }
    }
    /* The id index: room for the view's entities before and after (the
     * old ones go first, then the new ones come). */
    if (rc == 0) rc = idx_reserve(view, (size_t)count > view->count ? (size_t)count : view->count);
    if (rc) {
        plans_free_fresh(pl, nch);
        return rc;
    }

    /* Commit: nothing can fail from here on. First the index forgets the
     * entities of the cells that are rebuilt or gone (all of them before
     * any is added: an entity moving from cell A to cell B is in both). A
     * patch keeps its cell's ids: nothing to do. */
    if (full) {
        idx_clear(view);
    } else {
        for (size_t k = 0; k < nch; k++) {
            const struct plan *q = &pl[k];
            if (q->mode != PLAN_REPLACE || q->old == SIZE_MAX) continue;
            const sp_snap_cell_t *c = &view->cells[q->old];
            if (idx_delta(q)) { /* the rows that stay keep their entry: only the left ones go */
                idx_walk(view, q->list[2], 1, c->cell, idx_del);
                continue;
            }
            for (uint32_t j = 0; j < c->len; j++) idx_del(view, c->recs[j].id, c->cell);
        }
        for (size_t g = 0; g < ngone; g++) {
            const sp_snap_cell_t *c = sp_snap_view_cell(view, gone[g]);
            if (c == NULL) continue;
            for (uint32_t j = 0; j < c->len; j++) idx_del(view, c->recs[j].id, c->cell);
        }
    }
    for (size_t k = 0; k < nch; k++) {
        const struct plan *q = &pl[k];
        if (q->mode != PLAN_REPLACE) continue;
        if (idx_delta(q)) { /* only the entered rows are new to the index */
            idx_walk(view, q->list[0], SP_SNAP_ENTERED_INTS, q->cell, idx_put);
            continue;
        }
        const sp_snap_rec_t *src = view->scratch + q->off;
        for (uint32_t j = 0; j < q->n; j++) idx_put(view, src[j].id, q->cell);
    }
    for (size_t k = 0; k < nch; k++) {
        struct plan *q = &pl[k];
        const sp_snap_rec_t *src = view->scratch + q->off;
        if (q->mode == PLAN_PATCH) {
            sp_snap_rec_t *dst = view->cells[q->old].recs;
            const uint32_t *rows = view->rows + q->off;
            for (size_t j = 0; j < q->staged; j++) dst[rows[j]] = src[j];
        } else if (q->old != SIZE_MAX) {
            sp_snap_cell_t *c = &view->cells[q->old];
            if (q->n) memcpy(c->recs, src, (size_t)q->n * sizeof *src);
            c->len = q->n;
        } else if (q->n) {
            memcpy(q->fresh, src, (size_t)q->n * sizeof *src);
        }
    }
    if (relist) {
        /* Merge the old cells (minus the gone ones, or none for a full
         * snapshot) with the chunks' cells, both ascending. */
        sp_snap_cell_t *out = view->spare;
        size_t m = 0, i = 0, k = 0;
        gi = 0;
        while (i < view->ncells || k < nch) {
            if (k < nch && (i >= view->ncells || pl[k].cell <= view->cells[i].cell)) {
                struct plan *q = &pl[k++];
                if (q->old != SIZE_MAX) {
                    out[m++] = view->cells[i++]; /* the same cell, updated above */
                } else {
                    out[m++] = (sp_snap_cell_t){q->cell, q->n, q->n, q->fresh};
                    q->fresh = NULL;
                }
                continue;
            }
            sp_snap_cell_t *c = &view->cells[i++];
            while (gi < ngone && gone[gi] < c->cell) gi++;
            bool is_gone = gi < ngone && gone[gi] == c->cell;
            if (full || is_gone) free(c->recs);
            else out[m++] = *c;
        }
        sp_snap_cell_t *t = view->cells;
        size_t tc = view->cells_cap;
        view->cells = view->spare;
        view->cells_cap = view->spare_cap;
        view->spare = t;
        view->spare_cap = tc;
        view->ncells = m;
    }
    view->count = (size_t)count;
    view->tick = tick;
    view->valid = true;
    if (stats) {
        fill_stats(stats, tick, base, full, n_entered, n_changed, n_left, (size_t)count);
        stats->chunks = (uint32_t)nch;
        stats->full_cells = nfull;
        stats->gone = (uint32_t)ngone;
    }
    return 0;
}

int sp_snap_apply(sp_snap_view_t *view, const msgpack_object *params, sp_snap_stats_t *stats) {
    if (view == NULL || params == NULL) return SP_EINVAL;
    struct head h;
    int rc = front_objects(view, params, &h);
    return rc ? rc : apply_core(view, &h, stats);
}

int sp_snap_apply_bytes(sp_snap_view_t *view, const void *params, size_t len, sp_snap_stats_t *stats) {
    if (view == NULL || (params == NULL && len > 0)) return SP_EINVAL;
    const unsigned char *p = params;
    struct head h;
    int rc = front_bytes(view, p, p + len, &h);
    return rc ? rc : apply_core(view, &h, stats);
}

/* ---------------------------------------------------------------- v2 encode */

int sp_snap_chunk_full(msgpack_sbuffer *out, uint32_t cell, const sp_snap_rec_t *recs, size_t n,
                       sp_snap_stats_t *stats) {
    if (out == NULL || !recs_valid(recs, n) || n > UINT32_MAX / SP_SNAP_ENTERED_INTS) return SP_EINVAL;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    walk_t w = {.pk = &pk};
    size_t before = out->size;
    int r = msgpack_pack_array(&pk, 6);
    r |= msgpack_pack_uint32(&pk, cell);
    r |= msgpack_pack_nil(&pk);
    r |= msgpack_pack_array(&pk, n * SP_SNAP_ENTERED_INTS);
    walk(NULL, 0, recs, n, SEC_ENTERED, &w);
    r |= msgpack_pack_array(&pk, 0);
    r |= msgpack_pack_array(&pk, 0);
    r |= msgpack_pack_uint64(&pk, n);
    if (r || w.err) {
        out->size = before;
        return SP_ENOMEM;
    }
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->full = true;
        stats->entered = stats->count = (uint32_t)n;
        stats->chunks = stats->full_cells = 1;
        stats->bytes = out->size - before;
    }
    return 0;
}

int sp_snap_chunk_delta(msgpack_sbuffer *out, uint32_t cell, uint64_t base_tick, const sp_snap_rec_t *old,
                        size_t nold, const sp_snap_rec_t *cur, size_t ncur, sp_snap_stats_t *stats) {
    return sp_snap_chunk_delta_sparse(out, cell, base_tick, old, nold, cur, ncur, ncur, stats);
}

/* (The walk emits nothing for an id in both lists with equal records, and
 * ids are coded against the previous *emitted* id: so leaving out ids that
 * did not change gives the same bytes.) */
int sp_snap_chunk_delta_sparse(msgpack_sbuffer *out, uint32_t cell, uint64_t base_tick, const sp_snap_rec_t *old,
                               size_t nold, const sp_snap_rec_t *cur, size_t ncur, uint64_t count,
                               sp_snap_stats_t *stats) {
    if (out == NULL || !recs_valid(old, nold) || !recs_valid(cur, ncur) || count < ncur) return SP_EINVAL;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    walk_t w = {.pk = &pk};
    walk(old, nold, cur, ncur, SEC_COUNT, &w);
    if (w.kind_changed) return SP_EINVAL; /* an id keeps its kind for life */
    size_t entered_ints;
    if (sp_size_mul(w.entered, SP_SNAP_ENTERED_INTS, &entered_ints) != 0 || entered_ints > UINT32_MAX ||
        w.changed_ints > UINT32_MAX)
        return SP_EINVAL;
    size_t before = out->size;
    int r = msgpack_pack_array(&pk, 6);
    r |= msgpack_pack_uint32(&pk, cell);
    r |= msgpack_pack_uint64(&pk, base_tick);
    r |= msgpack_pack_array(&pk, entered_ints);
    walk(old, nold, cur, ncur, SEC_ENTERED, &w);
    r |= msgpack_pack_array(&pk, w.changed_ints);
    walk(old, nold, cur, ncur, SEC_CHANGED, &w);
    r |= msgpack_pack_array(&pk, w.left);
    walk(old, nold, cur, ncur, SEC_LEFT, &w);
    r |= msgpack_pack_uint64(&pk, count);
    if (r || w.err) {
        out->size = before;
        return SP_ENOMEM;
    }
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->base_tick = base_tick;
        stats->entered = (uint32_t)w.entered;
        stats->changed = (uint32_t)w.changed;
        stats->left = (uint32_t)w.left;
        stats->count = (uint32_t)count;
        stats->chunks = 1;
        stats->bytes = out->size - before;
    }
    return 0;
}

int sp_snap_pack_head(msgpack_sbuffer *out, uint64_t tick, bool full, uint64_t base_tick, size_t nchunks) {
    if (out == NULL || nchunks > UINT32_MAX) return SP_EINVAL;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    size_t before = out->size;
    int r = sp_rpc_pack_notify_begin(&pk, "snapshot", 5);
    r |= msgpack_pack_uint64(&pk, tick);
    r |= full ? msgpack_pack_nil(&pk) : msgpack_pack_uint64(&pk, base_tick);
    r |= msgpack_pack_array(&pk, nchunks);
    if (r) {
        out->size = before;
        return SP_ENOMEM;
    }
    return 0;
}

int sp_snap_pack_tail(msgpack_sbuffer *out, const uint32_t *gone, size_t ngone, uint64_t count) {
    if (out == NULL || (gone == NULL && ngone > 0) || ngone > UINT32_MAX) return SP_EINVAL;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    size_t before = out->size;
    int r = msgpack_pack_array(&pk, ngone);
    for (size_t g = 0; g < ngone; g++) r |= msgpack_pack_uint32(&pk, gone[g]);
    r |= msgpack_pack_uint64(&pk, count);
    if (r) {
        out->size = before;
        return SP_ENOMEM;
    }
    return 0;
}

int sp_snap_assemble(msgpack_sbuffer *out, uint64_t tick, bool full, uint64_t base_tick,
                     const sp_snap_piece_t *chunks, size_t nchunks, const uint32_t *gone, size_t ngone,
                     uint64_t count) {
    if (out == NULL || (chunks == NULL && nchunks > 0)) return SP_EINVAL;
    size_t before = out->size;
    int rc = sp_snap_pack_head(out, tick, full, base_tick, nchunks);
    for (size_t k = 0; k < nchunks && rc == 0; k++)
        if (msgpack_sbuffer_write(out, chunks[k].data, chunks[k].len) != 0) rc = SP_ENOMEM;
    if (rc == 0) rc = sp_snap_pack_tail(out, gone, ngone, count);
    if (rc) out->size = before;
    return rc;
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
