/* frame.c: immutable world snapshots with an atomic reference count and a
 * coarse spatial index. See frame.h for the contracts. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "sim/frame.h"
#include "sim/world_int.h"

/* Round half away from zero, saturating. v * scale is exact in double (a
 * float times a power of two), and so is adding 0.5 to it, so this equals
 * lround() without the libm call (which dominated frame publishing). */
static int32_t q32(float v, float scale) {
    double x = (double)v * scale;
    if (!(x == x)) return 0;
    if (x >= 2147483647.0) return INT32_MAX;
    if (x <= -2147483648.0) return INT32_MIN;
    return (int32_t)(x >= 0.0 ? x + 0.5 : x - 0.5);
}
static uint32_t qu32(float v, float scale) {
    double x = (double)v * scale;
    if (!(x > 0.0)) return 0;
    if (x >= 4294967295.0) return UINT32_MAX;
    return (uint32_t)(x + 0.5);
}

static uint32_t cell_coord(int32_t q, float half, float inv_cell, uint32_t n) {
    float x = ((float)q / (float)SP_FRAME_POS_SCALE + half) * inv_cell;
    if (!(x > 0.0f)) return 0;
    uint32_t c = (uint32_t)x;
    return c >= n ? n - 1 : c;
}

/* What a frame is built from: the world's own arrays (publish) or a capture's
 * copies of them (sp_frame_build). tmp_a/tmp_b: count-sized scratch. */
typedef struct fsrc {
    uint32_t nslots, count;
    const uint32_t *gen, *owner, *wcd, *mcd;
    const uint8_t *kind, *flags;
    const int8_t *resource;
    const float *px, *py, *pz, *vx, *vy, *vz, *hp, *max_hp, *amount, *radius;
    uint32_t *tmp_a, *tmp_b;
    uint64_t tick;
    float half_extent, dt, ship_max_speed, weapon_range, weapon_damage, mining_range, mining_amount;
    const sp_allocator_t *alloc;
} fsrc_t;

/* The per-slot fields a capture copies: X(field, type). */
#define SP__CAP_FIELDS(X)                                                                             \
    X(gen, uint32_t) X(owner, uint32_t) X(wcd, uint32_t) X(mcd, uint32_t) X(px, float) X(py, float)    \
    X(pz, float) X(vx, float) X(vy, float) X(vz, float) X(hp, float) X(max_hp, float) X(amount, float) \
    X(radius, float) X(kind, uint8_t) X(flags, uint8_t) X(resource, int8_t)

struct sp_world_capture {
    fsrc_t src;
    uint32_t cap;      /* slots the arrays hold */
    char *block;       /* one allocation: every array, 64-byte aligned each */
    size_t block_bytes;
    const sp_allocator_t *alloc;
};

static void fsrc_def(fsrc_t *s, const sp_world_t *w) {
    const sp_world_def_t *d = &w->def;
    s->nslots = w->nslots;
    s->count = w->count;
    s->tick = w->tick;
    s->half_extent = d->half_extent;
    s->dt = d->dt;
    s->ship_max_speed = d->ship_max_speed;
    s->weapon_range = d->weapon_range;
    s->weapon_damage = d->weapon_damage;
    s->mining_range = d->mining_range;
    s->mining_amount = d->mining_amount;
    s->alloc = w->alloc;
}

static sp_frame_t *build(const fsrc_t *w) {
    uint32_t count = w->count;
    /* Live slots in slot order, then a stable LSD radix sort by generation
     * (16-bit digits; a digit pass is skipped when all keys share it, which
     * is the common case), giving id order = (generation, index). */
    uint32_t *a = w->tmp_a, *b = w->tmp_b, n = 0, gmin = UINT32_MAX, gmax = 0, npc = 0;
    for (uint32_t i = 0; i < w->nslots; i++) {
        if (w->kind[i] == SP_KIND_NONE) continue;
        a[n++] = i;
        uint32_t g = w->gen[i];
        if (g < gmin) gmin = g;
        if (g > gmax) gmax = g;
        if (w->kind[i] == SP_KIND_SHIP && (w->flags[i] & SP_ENT_NPC)) npc++;
    }
    SP_ASSERT(n == count);
    if (n > 0 && gmin != gmax) {
        for (int shift = 0; shift < 32; shift += 16) {
            if (((gmin ^ gmax) >> shift) == 0) break;
            uint32_t cnt[257];
            /* Two 8-bit sub-passes per 16-bit digit keep the histogram on the stack. */
            for (int sub = 0; sub < 16; sub += 8) {
                int sh = shift + sub;
                memset(cnt, 0, sizeof cnt);
                for (uint32_t k = 0; k < n; k++) cnt[((w->gen[a[k]] >> sh) & 0xff) + 1]++;
                if (cnt[((gmin >> sh) & 0xff) + 1] == n) continue; /* all equal: no-op */
                for (int d = 0; d < 256; d++) cnt[d + 1] += cnt[d];
                for (uint32_t k = 0; k < n; k++) b[cnt[(w->gen[a[k]] >> sh) & 0xff]++] = a[k];
                uint32_t *t = a;
                a = b;
                b = t;
            }
        }
    }
    /* Spatial index: a dense grid of cells_per_axis^3 cells over the world
     * cube, ~8 rows per cell, at most 64 per axis. */
    uint32_t cpa = (uint32_t)cbrt((double)count / 8.0);
    if (cpa < 1) cpa = 1;
    if (cpa > 64) cpa = 64;
    uint32_t ncells = cpa * cpa * cpa;
    size_t off_rows = sp_align_up(sizeof(sp_frame_t), 64);
    size_t off_npc = off_rows + (size_t)count * sizeof(sp_frame_row_t);
    size_t off_cs = off_npc + (size_t)npc * sizeof(uint32_t);
    size_t off_cr = off_cs + ((size_t)ncells + 1) * sizeof(uint32_t);
    size_t bytes = off_cr + (size_t)count * sizeof(uint32_t);
    char *mem = w->alloc->alloc(w->alloc->ctx, bytes, 64);
    if (mem == NULL) return NULL;
    sp_frame_t *f = (sp_frame_t *)mem;
    memset(f, 0, sizeof *f);
    sp_frame_row_t *rows = (sp_frame_row_t *)(mem + off_rows);
    uint32_t *npc_rows = (uint32_t *)(mem + off_npc);
    uint32_t *cell_start = (uint32_t *)(mem + off_cs);
    uint32_t *cell_rows = (uint32_t *)(mem + off_cr);
    f->tick = w->tick;
    f->count = count;
    f->npc_count = npc;
    f->half_extent = w->half_extent;
    f->dt = w->dt;
    f->ship_max_speed = w->ship_max_speed;
    f->weapon_range = w->weapon_range;
    f->weapon_damage = w->weapon_damage;
    f->mining_range = w->mining_range;
    f->mining_amount = w->mining_amount;
    f->rows = rows;
    f->npc_rows = npc_rows;
    f->cells_per_axis = cpa;
    f->cell_size = 2.0f * w->half_extent / (float)cpa;
    f->cell_start = cell_start;
    f->cell_rows = cell_rows;
    f->bytes_ = bytes;
    f->alloc_ = w->alloc;

    float inv_cell = 1.0f / f->cell_size, half = w->half_extent;
    memset(cell_start, 0, ((size_t)ncells + 1) * sizeof(uint32_t));
    uint32_t np = 0;
    for (uint32_t r = 0; r < count; r++) {
        uint32_t i = a[r];
        sp_frame_row_t *row = &rows[r];
        memset(row, 0, sizeof *row);
        row->id = sp_id_make(i, w->gen[i]);
        row->pos[0] = q32(w->px[i], SP_FRAME_POS_SCALE);
        row->pos[1] = q32(w->py[i], SP_FRAME_POS_SCALE);
        row->pos[2] = q32(w->pz[i], SP_FRAME_POS_SCALE);
        row->vel[0] = q32(w->vx[i], SP_FRAME_VEL_SCALE);
        row->vel[1] = q32(w->vy[i], SP_FRAME_VEL_SCALE);
        row->vel[2] = q32(w->vz[i], SP_FRAME_VEL_SCALE);
        row->hp = qu32(w->hp[i], SP_FRAME_HP_SCALE);
        row->max_hp = qu32(w->max_hp[i], SP_FRAME_HP_SCALE);
        row->owner = w->owner[i];
        row->amount = w->kind[i] == SP_KIND_ASTEROID ? qu32(w->amount[i], SP_FRAME_AMOUNT_SCALE) : 0;
        uint32_t rq = qu32(w->radius[i], SP_FRAME_RADIUS_SCALE);
        row->radius = (uint16_t)(rq > UINT16_MAX ? UINT16_MAX : rq);
        row->kind = w->kind[i];
        uint8_t fl = w->flags[i];
        if (w->kind[i] == SP_KIND_SHIP) {
            if (w->wcd[i] == 0) fl |= SP_ENT_WEAPON_READY;
            if (w->mcd[i] == 0) fl |= SP_ENT_MINE_READY;
            if (fl & SP_ENT_NPC) npc_rows[np++] = r;
        }
        row->flags = fl;
        row->resource = w->resource[i];
        uint32_t c = (cell_coord(row->pos[2], half, inv_cell, cpa) * cpa +
                      cell_coord(row->pos[1], half, inv_cell, cpa)) * cpa +
                     cell_coord(row->pos[0], half, inv_cell, cpa);
        b[r] = c; /* a and b are disjoint: b is free scratch here */
        cell_start[c + 1]++;
    }
    for (uint32_t c = 0; c < ncells; c++) cell_start[c + 1] += cell_start[c];
    /* Stable counting sort: rows of a cell stay in ascending row order. The
     * cursor array is cell_start shifted by one; undo the shift after. */
    for (uint32_t r = 0; r < count; r++) cell_rows[cell_start[b[r]]++] = r;
    for (uint32_t c = ncells; c > 0; c--) cell_start[c] = cell_start[c - 1];
    cell_start[0] = 0;
    /* Plain initialisation: the frame is not shared yet. Whoever hands it
     * to other threads (a queue or bus with release/acquire) publishes it. */
    atomic_init(&f->refs_, 1);
    return f;
}

sp_frame_t *sp_world_publish_frame(sp_world_t *w) {
    if (w == NULL) return NULL;
    fsrc_t s;
    memset(&s, 0, sizeof s);
    fsrc_def(&s, w);
#define SP__SRC_PTR(f, t) s.f = w->f;
    SP__CAP_FIELDS(SP__SRC_PTR)
#undef SP__SRC_PTR
    s.tmp_a = w->tmp_a;
    s.tmp_b = w->tmp_b;
    return build(&s);
}

int sp_world_capture_create(const sp_allocator_t *alloc, sp_world_capture_t **out) {
    if (out == NULL) return SP_EINVAL;
    if (alloc == NULL) alloc = sp_allocator_default();
    sp_world_capture_t *c = alloc->alloc(alloc->ctx, sizeof *c, 64);
    if (c == NULL) return SP_ENOMEM;
    memset(c, 0, sizeof *c);
    c->alloc = alloc;
    *out = c;
    return 0;
}

void sp_world_capture_free(sp_world_capture_t *c) {
    if (c == NULL) return;
    if (c->block) c->alloc->free(c->alloc->ctx, c->block, c->block_bytes, 64);
    c->alloc->free(c->alloc->ctx, c, sizeof *c, 64);
}

/* Bytes of the arrays for `slots` slots, each array rounded up to 64. */
static size_t cap_bytes(uint32_t slots) {
    size_t n = 0;
#define SP__CAP_SIZE(f, t) n += sp_align_up((size_t)slots * sizeof(t), 64);
    SP__CAP_FIELDS(SP__CAP_SIZE)
#undef SP__CAP_SIZE
    return n + 2 * sp_align_up((size_t)slots * sizeof(uint32_t), 64); /* tmp_a, tmp_b */
}

int sp_world_capture(const sp_world_t *w, sp_world_capture_t *c) {
    if (w == NULL || c == NULL) return SP_EINVAL;
    uint32_t need = w->nslots;
    if (need > c->cap || c->block == NULL) {
        /* Grow to the world's slot capacity (it grows by doubling), so
         * captures of a slowly growing world rarely reallocate. */
        uint32_t slots = w->cap > need ? w->cap : need;
        if (slots == 0) slots = 1;
        size_t bytes = cap_bytes(slots);
        char *blk = c->alloc->alloc(c->alloc->ctx, bytes, 64);
        if (blk == NULL) return SP_ENOMEM;
        if (c->block) c->alloc->free(c->alloc->ctx, c->block, c->block_bytes, 64);
        c->block = blk;
        c->block_bytes = bytes;
        c->cap = slots;
        size_t off = 0;
#define SP__CAP_CARVE(f, t)                                          \
    c->src.f = (t *)(blk + off);                                     \
    off += sp_align_up((size_t)slots * sizeof(t), 64);
        SP__CAP_FIELDS(SP__CAP_CARVE)
#undef SP__CAP_CARVE
        c->src.tmp_a = (uint32_t *)(blk + off);
        off += sp_align_up((size_t)slots * sizeof(uint32_t), 64);
        c->src.tmp_b = (uint32_t *)(blk + off);
    }
    fsrc_def(&c->src, w);
    /* The const pointers of src point into c->block, which c owns. */
#define SP__CAP_COPY(f, t) memcpy((void *)(uintptr_t)c->src.f, w->f, (size_t)need * sizeof(t));
    SP__CAP_FIELDS(SP__CAP_COPY)
#undef SP__CAP_COPY
    return 0;
}

uint64_t sp_world_capture_tick(const sp_world_capture_t *c) { return c->src.tick; }

sp_frame_t *sp_frame_build(sp_world_capture_t *c) {
    if (c == NULL || c->block == NULL) return NULL;
    return build(&c->src);
}

void sp_frame_retain(const sp_frame_t *cf) {
    sp_frame_t *f = (sp_frame_t *)cf;
    /* Relaxed: the caller already holds a reference, so the frame is alive
     * and no other memory is published by the increment (as with
     * shared_ptr copies). Ordering against the final free is provided by the
     * release/acquire pair in sp_frame_release(). */
    atomic_fetch_add_explicit(&f->refs_, 1, memory_order_relaxed);
}

void sp_frame_release(const sp_frame_t *cf) {
    if (cf == NULL) return;
    sp_frame_t *f = (sp_frame_t *)cf;
    /* acq_rel. Release half: this thread's reads of the frame happen before
     * its decrement, so whoever frees cannot free memory still being read.
     * Acquire half: the decrement that reaches 0 reads the end of the release
     * sequence of every earlier decrement on refs_, so all other threads'
     * reads happen before the free below. With relaxed, a reader's loads
     * could be reordered after the free. (The classic "release, then an
     * acquire fence only on the last one" is equivalent and cheaper on weak
     * CPUs, but ThreadSanitizer does not model standalone fences; on x86 the
     * RMW is a locked instruction either way.) */
    if (atomic_fetch_sub_explicit(&f->refs_, 1, memory_order_acq_rel) == 1) {
        const sp_allocator_t *a = f->alloc_;
        a->free(a->ctx, f, f->bytes_, 64);
    }
}

uint32_t sp_frame_refs(const sp_frame_t *f) {
    /* Relaxed: a statistic; the value may change right after the load. */
    return atomic_load_explicit(&((sp_frame_t *)f)->refs_, memory_order_relaxed);
}

long sp_frame_find(const sp_frame_t *f, sp_entity_id_t id) {
    uint32_t lo = 0, hi = f->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (f->rows[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < f->count && f->rows[lo].id == id) ? (long)lo : -1;
}

static int row_in(const sp_frame_row_t *row, double cx, double cy, double cz, double r2) {
    double dx = (double)row->pos[0] / SP_FRAME_POS_SCALE - cx;
    double dy = (double)row->pos[1] / SP_FRAME_POS_SCALE - cy;
    double dz = (double)row->pos[2] / SP_FRAME_POS_SCALE - cz;
    return dx * dx + dy * dy + dz * dz <= r2;
}

/* A run of rows of one cell, positioned on its next MATCHING row (key); the
 * heap is keyed by it. inside: the whole cell lies within the sphere, so its
 * rows need no distance test. */
typedef struct run {
    uint32_t key, pos, end, inside;
} run_t;

#define SP_FRAME_MAX_RUNS 1024

static void sift_down(run_t *h, uint32_t n, uint32_t k) {
    run_t v = h[k];
    for (;;) {
        uint32_t l = 2 * k + 1;
        if (l >= n) break;
        if (l + 1 < n && h[l + 1].key < h[l].key) l++;
        if (h[l].key >= v.key) break;
        h[k] = h[l];
        k = l;
    }
    h[k] = v;
}

static int32_t axis_cell(double v, double half, double inv, uint32_t n) {
    double x = (v + half) * inv;
    if (x < 0) return -1;
    if (x >= (double)n) return (int32_t)n;
    return (int32_t)x;
}

typedef struct qctx {
    const sp_frame_t *f;
    double cx, cy, cz, r2;
} qctx_t;

/* Advance a run to its next matching row; returns 0 when exhausted. */
static int run_settle(const qctx_t *q, run_t *r) {
    const uint32_t *cr = q->f->cell_rows;
    if (r->inside) {
        if (r->pos >= r->end) return 0;
        r->key = cr[r->pos];
        return 1;
    }
    while (r->pos < r->end) {
        uint32_t row = cr[r->pos];
        if (row_in(&q->f->rows[row], q->cx, q->cy, q->cz, q->r2)) {
            r->key = row;
            return 1;
        }
        r->pos++;
    }
    return 0;
}

size_t sp_frame_query_sphere(const sp_frame_t *f, float cx, float cy, float cz, float r,
                             uint32_t *out, size_t cap) {
    if (f == NULL || !(r >= 0.0f) || !isfinite(cx) || !isfinite(cy) || !isfinite(cz) || f->count == 0)
        return 0;
    double r2 = (double)r * r, half = f->half_extent, inv = 1.0 / f->cell_size;
    uint32_t n = f->cells_per_axis;
    int32_t lo[3], hi[3];
    double c[3] = {cx, cy, cz};
    for (int k = 0; k < 3; k++) {
        /* Rows outside the cube were clamped into the border cells. */
        lo[k] = axis_cell(c[k] - r, half, inv, n);
        hi[k] = axis_cell(c[k] + r, half, inv, n);
        if (lo[k] < 0) lo[k] = 0;
        if (hi[k] > (int32_t)n - 1) hi[k] = (int32_t)n - 1;
        if (lo[k] > hi[k]) return 0;
    }
    uint64_t ncells = (uint64_t)(hi[0] - lo[0] + 1) * (uint64_t)(hi[1] - lo[1] + 1) *
                      (uint64_t)(hi[2] - lo[2] + 1);
    size_t found = 0;
    if (isinf(r) || ncells > SP_FRAME_MAX_RUNS) {
        /* Big query: a linear scan is already in row (= id) order. */
        for (uint32_t i = 0; i < f->count; i++) {
            if (!row_in(&f->rows[i], cx, cy, cz, r2)) continue;
            if (found < cap) out[found] = i;
            found++;
        }
        return found;
    }
    /* K-way merge of the touched cells' runs (each ascending) with a binary
     * min-heap: output ascending without sorting and without scratch. Cells
     * wholly outside the sphere are skipped, cells wholly inside skip the
     * distance test, and only matching rows go through the heap. Border
     * cells also hold rows clamped in from outside the cube, so their outer
     * side is unbounded and they are never "inside". */
    run_t heap[SP_FRAME_MAX_RUNS];
    uint32_t hn = 0;
    qctx_t q = {f, cx, cy, cz, r2};
    double cs = f->cell_size, margin = cs * 1e-3 + 1.0 / SP_FRAME_POS_SCALE;
    for (int32_t z = lo[2]; z <= hi[2]; z++)
        for (int32_t y = lo[1]; y <= hi[1]; y++)
            for (int32_t x = lo[0]; x <= hi[0]; x++) {
                uint32_t cell = ((uint32_t)z * n + (uint32_t)y) * n + (uint32_t)x;
                uint32_t s = f->cell_start[cell], e = f->cell_start[cell + 1];
                if (s == e) continue;
                int32_t idx[3] = {x, y, z};
                double dmin2 = 0.0, dmax2 = 0.0;
                int border = 0;
                for (int k = 0; k < 3; k++) {
                    double b0 = idx[k] * cs - half - margin, b1 = (idx[k] + 1) * cs - half + margin;
                    if (idx[k] == 0) b0 = -INFINITY, border = 1;
                    if (idx[k] == (int32_t)n - 1) b1 = INFINITY, border = 1;
                    double dlo = c[k] - b0, dhi = b1 - c[k];
                    if (c[k] < b0) dmin2 += (b0 - c[k]) * (b0 - c[k]);
                    else if (c[k] > b1) dmin2 += (c[k] - b1) * (c[k] - b1);
                    double far = dlo > dhi ? dlo : dhi;
                    dmax2 += far * far;
                }
                if (dmin2 > r2) continue;
                run_t rn = {0, s, e, !border && dmax2 <= r2};
                if (run_settle(&q, &rn)) heap[hn++] = rn;
            }
    for (uint32_t k = hn / 2; k-- > 0;) sift_down(heap, hn, k);
    while (hn > 0) {
        if (found < cap) out[found] = heap[0].key;
        found++;
        heap[0].pos++;
        if (!run_settle(&q, &heap[0])) heap[0] = heap[--hn];
        if (hn > 0) sift_down(heap, hn, 0);
    }
    return found;
}
