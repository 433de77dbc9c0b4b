/* grid.c: uniform-grid / spatial-hash broadphase (see spacesim/grid.h).
 *
 * One call runs these phases; "par" phases are split over the pool by
 * contiguous index ranges, "ser" phases run on the caller's thread:
 *   1. scan   (par, input order)  bounds, rmin/rmax, NaN/inf detection
 *   2. layout (ser)               cell edge, dense box or hash table size
 *   3. keys   (par, input order)  cell (dense) or bucket (hash) of each sphere
 *   4. sort   (par)               stable counting sort: per-thread histograms,
 *                                 two-pass prefix, scatter into cell-ordered
 *                                 SoA copies (x, y, z, r, input index)
 *   5. pairs  (par, cell order)   half-shell sweep into per-thread buffers
 *                                 (AVX-512 kernel when available, else scalar)
 *   6. output (par)               concatenate (ORDER_CELL) or counting sort
 *                                 by a, then insertion sort by b (ORDER_AB)
 *
 * Determinism: phase 5 splits the cell-ordered spheres into contiguous
 * ranges and each thread emits its range's pairs in the serial sweep order,
 * so thread buffers concatenated in thread order are exactly the serial
 * output; phase 4 is a stable sort (same order for any thread count) and
 * phase 6 partitions by a. No result depends on timing or thread count.
 *
 * Pool synchronisation is a mutex and two condition variables (no atomics):
 * a job is published under the mutex with a new generation number, workers
 * run it and decrement `pending` under the mutex; the mutex orders all
 * writes of a phase before the reads of the next. Per-thread state lives in
 * 128-byte padded slots so the threads' counters do not false-share. */
#include "spacesim/grid.h"

#include <math.h>

/* The overlap test must be the plain IEEE sequence documented in grid.h in
 * every kernel: no fused multiply-add. GCC in ISO C mode (-std=c11) already
 * uses -ffp-contract=off; clang contracts within expressions unless told. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SP_GRID_HAVE_AVX512 1
#else
#define SP_GRID_HAVE_AVX512 0
#endif

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
/* sqrtss without the errno branch that sqrtf() carries (and without libm). */
static inline float grid_sqrtf(float v) { return _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(v))); }
#else
static inline float grid_sqrtf(float v) { return __builtin_sqrtf(v); }
#endif

/* One sphere's values, held in registers while it meets its candidates. */
typedef struct sphere4 {
    float x, y, z, r;
} sphere4_t;

/* Integer cell coordinates (hashed layout only). */
typedef struct cell3 {
    int64_t x, y, z;
} cell3_t;

/* Growable pair buffer owned by the grid. */
typedef struct pairbuf {
    sp_pair_t *p;
    size_t len, cap;
} pairbuf_t;

/* Per-thread state, written only by its thread during a phase and read by
 * the caller's thread after the phase (ordered by the pool mutex). */
typedef struct tslot {
    pairbuf_t buf;     /* phase 5 output */
    size_t candidates; /* phase 5 distance tests */
    int err;           /* phase 5: SP_ENOMEM when buf could not grow */
    float mn[3], mx[3]; /* phase 1 bounds */
    float rmin, rmax;   /* phase 1 radius range */
    float nanacc;       /* phase 1: NaN iff some input was NaN or inf */
    uint32_t csum;      /* phase 4: keys counted in this thread's cell range */
} tslot_t;

typedef union tslot_pad {
    tslot_t s;
    char pad[2 * SP_FALSE_SHARING_RANGE];
} tslot_pad_t;

typedef void (*job_fn)(sp_grid_t *g, int tid);

struct sp_grid {
    sp_grid_def_t def;
    const sp_allocator_t *alloc;
    sp_arena_t own_arena; /* scratch when the caller passes none */

    /* ---- pool. Lock rule: gen, job, active, pending and stop are read and
     * written only with mu held. Workers sleep on cv_go for a new gen; the
     * caller sleeps on cv_done for pending == 0. */
    pthread_mutex_t mu;
    pthread_cond_t cv_go, cv_done;
    unsigned long gen;
    job_fn job;
    int active;  /* threads taking part in the current job (tid < active) */
    int pending; /* workers that have not finished the current job */
    int stop;
    int nstarted; /* worker threads running (nthreads - 1 after create) */
    pthread_t th[SP_GRID_MAX_THREADS];

    /* ---- the current call: written by the caller's thread before a job is
     * published, read-only for workers during it. */
    const float *x, *y, *z, *r;
    size_t n;
    int nt; /* threads of this call */
    int hashed;
    int simd; /* phase 5 uses the AVX-512 kernel */
    double h, inv_h;   /* cell edge and its inverse */
    double ox, oy, oz; /* dense: box origin (min corner) */
    uint32_t NX, NXY;  /* dense: padded row and slab strides */
    unsigned hshift;   /* hash: 64 - log2(buckets) */
    size_t ncells;     /* dense cells incl. padding, or buckets */
    uint32_t *key;     /* [n] cell/bucket per input sphere */
    uint32_t *start;   /* [ncells + 2] first sorted index of each cell; [ncells..] = n */
    uint32_t *hist[SP_GRID_MAX_THREADS]; /* [ncells] per-thread counts, then write cursors */
    uint32_t *cnt;     /* [n] ORDER_AB: pairs per a, then write cursors */
    uint32_t *sid;     /* [n] input index of each sorted sphere */
    uint32_t *scell;   /* [n] cell/bucket of each sorted sphere */
    float *sx, *sy, *sz, *sr; /* [n] sorted spheres, SoA for 16-lane loads */
    cell3_t *sc;       /* [n] hash: cell coordinates of sorted spheres */

    pairbuf_t out; /* the result (ORDER_AB, or ORDER_CELL with > 1 thread) */
    sp_grid_stats_t stats;

    tslot_pad_t ts[SP_GRID_MAX_THREADS];
};

/* ------------------------------------------------------------------ pool */

static void *worker_main(void *arg);

typedef struct worker_arg {
    sp_grid_t *g;
    int tid;
} worker_arg_t;

/* A worker copies its argument (which lives on sp_grid_create()'s stack),
 * reports that through pending/cv_done, then waits for jobs. */
static void *worker_main(void *arg) {
    worker_arg_t wa = *(worker_arg_t *)arg;
    sp_grid_t *g = wa.g;
    pthread_mutex_lock(&g->mu);
    unsigned long seen = g->gen;
    /* Tell the creator we copied our argument. */
    g->pending--;
    pthread_cond_signal(&g->cv_done);
    for (;;) {
        while (g->gen == seen && !g->stop) pthread_cond_wait(&g->cv_go, &g->mu);
        if (g->stop) break;
        seen = g->gen;
        job_fn fn = g->job;
        int run = wa.tid < g->active;
        pthread_mutex_unlock(&g->mu);
        if (run) fn(g, wa.tid);
        pthread_mutex_lock(&g->mu);
        if (--g->pending == 0) pthread_cond_signal(&g->cv_done);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* Run fn(g, tid) for tid in [0, g->nt): tid 0 on the caller's thread, the
 * others on the pool. Returns when all have finished. */
static void pool_run(sp_grid_t *g, job_fn fn) {
    if (g->nt <= 1) {
        fn(g, 0);
        return;
    }
    pthread_mutex_lock(&g->mu);
    g->job = fn;
    g->active = g->nt;
    g->pending = g->nstarted;
    g->gen++;
    pthread_cond_broadcast(&g->cv_go);
    pthread_mutex_unlock(&g->mu);
    fn(g, 0);
    pthread_mutex_lock(&g->mu);
    while (g->pending > 0) pthread_cond_wait(&g->cv_done, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void pool_stop(sp_grid_t *g) {
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_broadcast(&g->cv_go);
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < g->nstarted; i++) pthread_join(g->th[i], NULL);
    g->nstarted = 0;
}

/* ------------------------------------------------------------- lifecycle */

sp_grid_def_t sp_grid_def_default(void) {
    sp_grid_def_t d;
    memset(&d, 0, sizeof d);
    d.cell_size = 0.0f;
    d.nthreads = 1;
    d.parallel_min = 16384;
    d.order = SP_GRID_ORDER_AB;
    d.mode = SP_GRID_MODE_AUTO;
    d.max_dense_cells = 0;
    d.allocator = NULL;
    return d;
}

int sp_grid_create(const sp_grid_def_t *def, sp_grid_t **out) {
    sp_grid_def_t d = def ? *def : sp_grid_def_default();
    if (out == NULL) return SP_EINVAL;
    if (d.nthreads < 1 || d.nthreads > SP_GRID_MAX_THREADS) return SP_EINVAL;
    if (!(d.cell_size >= 0.0f) || !isfinite(d.cell_size)) return SP_EINVAL;
    if (d.order != SP_GRID_ORDER_AB && d.order != SP_GRID_ORDER_CELL) return SP_EINVAL;
    if (d.mode != SP_GRID_MODE_AUTO && d.mode != SP_GRID_MODE_HASH) return SP_EINVAL;
    if (d.parallel_min == 0) d.parallel_min = 1;
    const sp_allocator_t *al = d.allocator ? d.allocator : sp_allocator_default();

    sp_grid_t *g = al->alloc(al->ctx, sizeof *g, SP_FALSE_SHARING_RANGE);
    if (g == NULL) return SP_ENOMEM;
    memset(g, 0, sizeof *g);
    g->def = d;
    g->alloc = al;
    sp_arena_init(&g->own_arena, 0, al);
    if (pthread_mutex_init(&g->mu, NULL) != 0) goto fail_mu;
    if (pthread_cond_init(&g->cv_go, NULL) != 0) goto fail_go;
    if (pthread_cond_init(&g->cv_done, NULL) != 0) goto fail_done;

    worker_arg_t wa[SP_GRID_MAX_THREADS];
    for (int i = 1; i < d.nthreads; i++) {
        wa[i].g = g;
        wa[i].tid = i;
        pthread_mutex_lock(&g->mu);
        g->pending = 1;
        pthread_mutex_unlock(&g->mu);
        if (pthread_create(&g->th[g->nstarted], NULL, worker_main, &wa[i]) != 0) {
            pool_stop(g);
            pthread_cond_destroy(&g->cv_done);
            pthread_cond_destroy(&g->cv_go);
            pthread_mutex_destroy(&g->mu);
            al->free(al->ctx, g, sizeof *g, SP_FALSE_SHARING_RANGE);
            return SP_EAGAIN;
        }
        g->nstarted++;
        /* Wait until the worker has copied wa[i] (it lives on our stack). */
        pthread_mutex_lock(&g->mu);
        while (g->pending > 0) pthread_cond_wait(&g->cv_done, &g->mu);
        pthread_mutex_unlock(&g->mu);
    }
    *out = g;
    return 0;

fail_done:
    pthread_cond_destroy(&g->cv_go);
fail_go:
    pthread_mutex_destroy(&g->mu);
fail_mu:
    al->free(al->ctx, g, sizeof *g, SP_FALSE_SHARING_RANGE);
    return SP_ENOMEM;
}

static void pairbuf_free(const sp_allocator_t *al, pairbuf_t *b) {
    if (b->p) al->free(al->ctx, b->p, b->cap * sizeof *b->p, SP_CACHELINE);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Make room for at least `need` pairs, keeping the contents. */
static int pairbuf_reserve(const sp_allocator_t *al, pairbuf_t *b, size_t need) {
    if (need <= b->cap) return 0;
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return SP_EOVERFLOW;
        cap *= 2;
    }
    size_t bytes;
    if (sp_size_mul(cap, sizeof(sp_pair_t), &bytes) != 0) return SP_EOVERFLOW;
    sp_pair_t *p = al->alloc(al->ctx, bytes, SP_CACHELINE);
    if (p == NULL) return SP_ENOMEM;
    if (b->len) memcpy(p, b->p, b->len * sizeof *p);
    if (b->p) al->free(al->ctx, b->p, b->cap * sizeof *b->p, SP_CACHELINE);
    b->p = p;
    b->cap = cap;
    return 0;
}

void sp_grid_free(sp_grid_t *g) {
    if (g == NULL) return;
    pool_stop(g);
    pthread_cond_destroy(&g->cv_done);
    pthread_cond_destroy(&g->cv_go);
    pthread_mutex_destroy(&g->mu);
    const sp_allocator_t *al = g->alloc;
    for (int i = 0; i < SP_GRID_MAX_THREADS; i++) pairbuf_free(al, &g->ts[i].s.buf);
    pairbuf_free(al, &g->out);
    sp_arena_destroy(&g->own_arena);
    al->free(al->ctx, g, sizeof *g, SP_FALSE_SHARING_RANGE);
}

void sp_grid_stats(const sp_grid_t *g, sp_grid_stats_t *out) {
    if (g == NULL || out == NULL) return;
    *out = g->stats;
}

/* ---------------------------------------------------------------- phases */

static inline void split(size_t n, int nt, int tid, size_t *lo, size_t *hi) {
    *lo = n * (size_t)tid / (size_t)nt;
    *hi = n * (size_t)(tid + 1) / (size_t)nt;
}

/* Phase 1: bounds and validation of input range. nanacc accumulates v*0 of
 * every value: 0 for finite values, NaN for NaN and +-inf. */
static void job_scan(sp_grid_t *g, int tid) {
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    float mnx = INFINITY, mny = INFINITY, mnz = INFINITY;
    float mxx = -INFINITY, mxy = -INFINITY, mxz = -INFINITY;
    float rmin = INFINITY, rmax = -INFINITY, acc = 0.0f;
    const float *x = g->x, *y = g->y, *z = g->z, *r = g->r;
    for (size_t i = lo; i < hi; i++) {
        float xi = x[i], yi = y[i], zi = z[i], ri = r[i];
        acc += xi * 0.0f + yi * 0.0f + zi * 0.0f + ri * 0.0f;
        mnx = xi < mnx ? xi : mnx;
        mxx = xi > mxx ? xi : mxx;
        mny = yi < mny ? yi : mny;
        mxy = yi > mxy ? yi : mxy;
        mnz = zi < mnz ? zi : mnz;
        mxz = zi > mxz ? zi : mxz;
        rmin = ri < rmin ? ri : rmin;
        rmax = ri > rmax ? ri : rmax;
    }
    t->mn[0] = mnx, t->mn[1] = mny, t->mn[2] = mnz;
    t->mx[0] = mxx, t->mx[1] = mxy, t->mx[2] = mxz;
    t->rmin = rmin, t->rmax = rmax, t->nanacc = acc;
}

/* Cell coordinate along one axis, hashed layout: floor(v / h) clamped to
 * +-2^62, computed in double (monotone in v, so overlapping spheres differ by
 * at most one cell; see the margin note in grid.h). */
static inline int64_t hash_coord(float v, double inv_h) {
    double u = (double)v * inv_h;
    const double lim = 4611686018427387904.0; /* 2^62 */
    if (u >= lim) return (int64_t)1 << 62;
    if (u <= -lim) return -((int64_t)1 << 62);
    int64_t t = (int64_t)u; /* truncates toward zero */
    if ((double)t > u) t--; /* floor for negatives */
    return t;
}

static inline uint32_t hash_bucket(int64_t cx, int64_t cy, int64_t cz, unsigned shift) {
    uint64_t hv = (uint64_t)cx * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)cy * UINT64_C(0xC2B2AE3D27D4EB4F) ^
                  (uint64_t)cz * UINT64_C(0x165667B19E3779F9);
    hv ^= hv >> 29;
    hv *= UINT64_C(0xBF58476D1CE4E5B9);
    return (uint32_t)(hv >> shift);
}

/* Phase 3: key of each input sphere. Dense: padded linear cell index
 * (ix+1) + NX*((iy+1) + NY*iz); coordinates are (v - origin) / h >= 0,
 * truncated (= floor), at most the box's last cell by monotonicity. */
static void job_keys(sp_grid_t *g, int tid) {
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    const float *x = g->x, *y = g->y, *z = g->z;
    uint32_t *key = g->key;
    const double inv_h = g->inv_h;
    if (!g->hashed) {
        const double ox = g->ox, oy = g->oy, oz = g->oz;
        const uint32_t NX = g->NX, NXY = g->NXY;
        for (size_t i = lo; i < hi; i++) {
            uint32_t ix = (uint32_t)(((double)x[i] - ox) * inv_h);
            uint32_t iy = (uint32_t)(((double)y[i] - oy) * inv_h);
            uint32_t iz = (uint32_t)(((double)z[i] - oz) * inv_h);
            key[i] = (ix + 1) + NX * (iy + 1) + NXY * iz;
        }
    } else {
        const unsigned sh = g->hshift;
        for (size_t i = lo; i < hi; i++) {
            key[i] = hash_bucket(hash_coord(x[i], inv_h), hash_coord(y[i], inv_h), hash_coord(z[i], inv_h), sh);
        }
    }
}

/* Record pair (sorted i, sorted j) whose difference d = s[j] - s[i] passed
 * the test. The pair is stored as input indices a < b with d from a to b
 * (negating a rounded difference is exact, so it equals x[b] - x[a]). */
static inline int emit(const sp_grid_t *g, tslot_t *t, size_t i, size_t j, float dx, float dy, float dz, float d2) {
    pairbuf_t *b = &t->buf;
    if (SP_UNLIKELY(b->len == b->cap)) {
        int rc = pairbuf_reserve(g->alloc, b, b->len + 1);
        if (rc != 0) {
            t->err = rc;
            return rc;
        }
    }
    uint32_t ia = g->sid[i], ib = g->sid[j];
    if (ia > ib) {
        uint32_t tmp = ia;
        ia = ib;
        ib = tmp;
        dx = -dx, dy = -dy, dz = -dz;
    }
    sp_pair_t *p = &b->p[b->len++];
    p->a = ia;
    p->b = ib;
    if (d2 > 0.0f) {
        float d = grid_sqrtf(d2);
        float inv = 1.0f / d;
        p->dist = d;
        p->nx = dx * inv, p->ny = dy * inv, p->nz = dz * inv;
    } else {
        p->dist = 0.0f;
        p->nx = 1.0f, p->ny = 0.0f, p->nz = 0.0f;
    }
    return 0;
}

/* Test sorted sphere i against sorted spheres [jb, je). */
static inline int run_range(const sp_grid_t *g, tslot_t *t, size_t i, sphere4_t si, size_t jb, size_t je) {
    const float *sx = g->sx, *sy = g->sy, *sz = g->sz, *sr = g->sr;
    for (size_t j = jb; j < je; j++) {
        float dx = sx[j] - si.x, dy = sy[j] - si.y, dz = sz[j] - si.z;
        float d2 = dx * dx + dy * dy + dz * dz;
        float rs = si.r + sr[j];
        if (d2 < rs * rs) {
            if (SP_UNLIKELY(emit(g, t, i, j, dx, dy, dz, d2) != 0)) return -1;
        }
    }
    return 0;
}

static inline sphere4_t sphere_at(const sp_grid_t *g, size_t i) {
    sphere4_t v = {g->sx[i], g->sy[i], g->sz[i], g->sr[i]};
    return v;
}

#if SP_GRID_HAVE_AVX512
/* As run_range() for 16 candidates at a time with AVX-512 masked loads
 * (masked-off lanes are never read, so runs may end anywhere). The lane
 * arithmetic is the same IEEE single-precision sequence as the scalar test
 * (sub, mul, add in the same order; no FMA), so both kernels accept exactly
 * the same pairs, and hits are emitted in increasing j as in the scalar
 * loop: the output does not depend on the kernel. */
__attribute__((target("avx512f"), always_inline)) static inline int run_range16(const sp_grid_t *g, tslot_t *t, size_t i,
                                                                 __m512 xi, __m512 yi, __m512 zi, __m512 ri,
                                                                 size_t jb, size_t je) {
    for (; jb < je; jb += 16) {
        size_t len = je - jb;
        __mmask16 m = len >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << len) - 1u);
        __m512 dx = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, g->sx + jb), xi);
        __m512 dy = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, g->sy + jb), yi);
        __m512 dz = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, g->sz + jb), zi);
        __m512 rs = _mm512_add_ps(ri, _mm512_maskz_loadu_ps(m, g->sr + jb));
        __m512 d2 = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(dx, dx), _mm512_mul_ps(dy, dy)), _mm512_mul_ps(dz, dz));
        unsigned hit = _mm512_mask_cmp_ps_mask(m, d2, _mm512_mul_ps(rs, rs), _CMP_LT_OQ);
        if (hit) {
            /* Emit the lanes' own values (recomputing in scalar code could
             * be contracted into FMAs under this target and differ). */
            float fdx[16], fdy[16], fdz[16], fd2[16];
            _mm512_storeu_ps(fdx, dx), _mm512_storeu_ps(fdy, dy);
            _mm512_storeu_ps(fdz, dz), _mm512_storeu_ps(fd2, d2);
            while (hit) {
                unsigned l = (unsigned)__builtin_ctz(hit);
                hit &= hit - 1;
                if (SP_UNLIKELY(emit(g, t, i, jb + l, fdx[l], fdy[l], fdz[l], fd2[l]) != 0)) return -1;
            }
        }
    }
    return 0;
}

__attribute__((target("avx512f"))) static void job_pairs_dense_avx512(sp_grid_t *g, int tid) {
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    t->buf.len = 0;
    t->err = 0;
    const uint32_t *start = g->start, *scell = g->scell;
    const size_t NX = g->NX, NXY = g->NXY;
    const size_t rows[4] = {NX, NXY - NX, NXY, NXY + NX};
    size_t cand = 0;
    for (size_t i = lo; i < hi; i++) {
        size_t c = scell[i];
        __m512 xi = _mm512_set1_ps(g->sx[i]), yi = _mm512_set1_ps(g->sy[i]);
        __m512 zi = _mm512_set1_ps(g->sz[i]), ri = _mm512_set1_ps(g->sr[i]);
        size_t e = start[c + 2];
        cand += e - (i + 1);
        if (run_range16(g, t, i, xi, yi, zi, ri, i + 1, e) != 0) return;
        for (int k = 0; k < 4; k++) {
            size_t rc = c + rows[k];
            size_t jb = start[rc - 1], je = start[rc + 2];
            cand += je - jb;
            if (run_range16(g, t, i, xi, yi, zi, ri, jb, je) != 0) return;
        }
    }
    t->candidates = cand;
}
#endif

/* Phase 5, dense layout: the half-shell of cell c is the rest of c plus c+1
 * (one run of the sorted array: cells are adjacent along x) and four rows of
 * three cells at (dy, dz) = (+1, 0), (-1, +1), (0, +1), (+1, +1). Padding
 * (one empty cell before and after each row, an empty row before and after
 * each slab, an empty slab on top) keeps every index in range and makes
 * rows never run into a neighbouring row's data. */
static void job_pairs_dense(sp_grid_t *g, int tid) {
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    t->buf.len = 0;
    t->err = 0;
    const uint32_t *start = g->start, *scell = g->scell;
    const size_t NX = g->NX, NXY = g->NXY;
    const size_t rows[4] = {NX, NXY - NX, NXY, NXY + NX};
    size_t cand = 0;
    for (size_t i = lo; i < hi; i++) {
        size_t c = scell[i];
        sphere4_t si = sphere_at(g, i);
        size_t e = start[c + 2];
        cand += e - (i + 1);
        if (run_range(g, t, i, si, i + 1, e) != 0) return;
        for (int k = 0; k < 4; k++) {
            size_t rc = c + rows[k];
            size_t jb = start[rc - 1], je = start[rc + 2];
            cand += je - jb;
            if (run_range(g, t, i, si, jb, je) != 0) return;
        }
    }
    t->candidates = cand;
}

/* The 13 half-shell offsets: (dx, dy, dz) with dz > 0, or dz == 0 and
 * dy > 0, or dz == dy == 0 and dx > 0. */
static const int8_t HALF_SHELL[13][3] = {
    {1, 0, 0},   {-1, 1, 0}, {0, 1, 0},  {1, 1, 0},  {-1, -1, 1}, {0, -1, 1}, {1, -1, 1},
    {-1, 0, 1},  {0, 0, 1},  {1, 0, 1},  {-1, 1, 1}, {0, 1, 1},   {1, 1, 1},
};

/* Phase 5, hashed layout: own bucket after i (same cell only), then the 13
 * half-shell cells' buckets, each filtered to spheres of exactly that cell,
 * so a bucket shared by several cells yields each pair once. */
static void job_pairs_hash(sp_grid_t *g, int tid) {
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    t->buf.len = 0;
    t->err = 0;
    const uint32_t *start = g->start, *scell = g->scell;
    const cell3_t *sc = g->sc;
    const unsigned sh = g->hshift;
    const int64_t lim = (int64_t)1 << 62;
    size_t cand = 0;
    for (size_t i = lo; i < hi; i++) {
        sphere4_t si = sphere_at(g, i);
        cell3_t ci = sc[i];
        size_t e = start[scell[i] + 1];
        for (size_t j = i + 1; j < e; j++) {
            if (sc[j].x != ci.x || sc[j].y != ci.y || sc[j].z != ci.z) continue;
            cand++;
            if (run_range(g, t, i, si, j, j + 1) != 0) return;
        }
        for (int k = 0; k < 13; k++) {
            int64_t nx = ci.x + HALF_SHELL[k][0], ny = ci.y + HALF_SHELL[k][1], nz = ci.z + HALF_SHELL[k][2];
            /* Beyond the clamp no sphere can sit (coordinates are clamped). */
            if (nx > lim || nx < -lim || ny > lim || ny < -lim || nz > lim) continue;
            uint32_t bk = hash_bucket(nx, ny, nz, sh);
            size_t jb = start[bk], je = start[bk + 1];
            for (size_t j = jb; j < je; j++) {
                if (sc[j].x != nx || sc[j].y != ny || sc[j].z != nz) continue;
                cand++;
                if (run_range(g, t, i, si, j, j + 1) != 0) return;
            }
        }
    }
    t->candidates = cand;
}

/* ------------------------------------------------------------------ call */

static void set_empty(sp_grid_t *g, size_t n, int nt, const sp_pair_t **pairs, size_t *npairs) {
    memset(&g->stats, 0, sizeof g->stats);
    g->stats.spheres = n;
    g->stats.threads_used = nt;
    *pairs = NULL;
    *npairs = 0;
}

/* Phase 4, counting sort split over threads and kept stable: thread t owns
 * input range t and cell range t. hist[t][c] = count of cell c in input
 * range t; the offsets interleave threads inside each cell in thread order,
 * so the sorted order equals the serial stable counting sort's, whatever the
 * thread count. */
static void job_hist(sp_grid_t *g, int tid) {
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    uint32_t *h = g->hist[tid];
    memset(h, 0, g->ncells * sizeof *h);
    const uint32_t *key = g->key;
    for (size_t i = lo; i < hi; i++) h[key[i]]++;
}

/* Sum of all threads' counts over this thread's cell range. */
static void job_prefix_sum(sp_grid_t *g, int tid) {
    size_t clo, chi;
    split(g->ncells, g->nt, tid, &clo, &chi);
    uint32_t sum = 0;
    for (int t = 0; t < g->nt; t++) {
        const uint32_t *h = g->hist[t];
        for (size_t c = clo; c < chi; c++) sum += h[c];
    }
    g->ts[tid].s.csum = sum;
}

/* Turn counts into write cursors and cell starts; csum holds this cell
 * range's first sorted index (set by the caller between the jobs). */
static void job_prefix_write(sp_grid_t *g, int tid) {
    size_t clo, chi;
    split(g->ncells, g->nt, tid, &clo, &chi);
    uint32_t run = g->ts[tid].s.csum;
    uint32_t *start = g->start;
    const int nt = g->nt;
    for (size_t c = clo; c < chi; c++) {
        start[c] = run;
        for (int t = 0; t < nt; t++) {
            uint32_t v = g->hist[t][c];
            g->hist[t][c] = run;
            run += v;
        }
    }
}

static void job_scatter(sp_grid_t *g, int tid) {
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    uint32_t *h = g->hist[tid];
    const uint32_t *key = g->key;
    const float *x = g->x, *y = g->y, *z = g->z, *r = g->r;
    float *sx = g->sx, *sy = g->sy, *sz = g->sz, *sr = g->sr;
    uint32_t *sid = g->sid, *scell = g->scell;
    cell3_t *sc = g->sc;
    for (size_t i = lo; i < hi; i++) {
        uint32_t c = key[i];
        uint32_t p = h[c]++;
        sid[p] = (uint32_t)i;
        scell[p] = c;
        sx[p] = x[i], sy[p] = y[i], sz[p] = z[i], sr[p] = r[i];
        if (sc) {
            sc[p].x = hash_coord(x[i], g->inv_h);
            sc[p].y = hash_coord(y[i], g->inv_h);
            sc[p].z = hash_coord(z[i], g->inv_h);
        }
    }
}

/* Phase 6, ORDER_CELL with several threads: each thread copies its buffer
 * to its place (thread order) in the result. */
static void job_concat(sp_grid_t *g, int tid) {
    size_t off = 0;
    for (int t = 0; t < tid; t++) off += g->ts[t].s.buf.len;
    const pairbuf_t *b = &g->ts[tid].s.buf;
    if (b->len) memcpy(g->out.p + off, b->p, b->len * sizeof *b->p);
}

/* Phase 6, ORDER_AB: counting sort of all threads' pairs by a, then each
 * a's few pairs (about 1.5 at typical densities) by b with insertion sort.
 * Thread t owns a in range t: it counts the pairs below its range (its
 * output offset) and in it, scatters those, sorts them. Every thread reads
 * all pairs (cheap: 24 bytes each, sequential); no writes are shared. */
static void job_order_ab(sp_grid_t *g, int tid) {
    size_t alo, ahi;
    split(g->n, g->nt, tid, &alo, &ahi);
    uint32_t *cnt = g->cnt;
    memset(cnt + alo, 0, (ahi - alo) * sizeof *cnt);
    size_t below = 0;
    for (int t = 0; t < g->nt; t++) {
        const pairbuf_t *b = &g->ts[t].s.buf;
        for (size_t k = 0; k < b->len; k++) {
            size_t a = b->p[k].a;
            if (a < alo)
                below++;
            else if (a < ahi)
                cnt[a]++;
        }
    }
    size_t run = below;
    for (size_t a = alo; a < ahi; a++) {
        size_t v = cnt[a];
        cnt[a] = (uint32_t)run;
        run += v;
    }
    sp_pair_t *o = g->out.p;
    for (int t = 0; t < g->nt; t++) {
        const pairbuf_t *b = &g->ts[t].s.buf;
        for (size_t k = 0; k < b->len; k++) {
            size_t a = b->p[k].a;
            if (a >= alo && a < ahi) o[cnt[a]++] = b->p[k];
        }
    }
    /* cnt[a] is now the end of a's run. */
    size_t begin = below;
    for (size_t a = alo; a < ahi; a++) {
        size_t end = cnt[a];
        for (size_t k = begin + 1; k < end; k++) {
            sp_pair_t v = o[k];
            size_t m = k;
            while (m > begin && o[m - 1].b > v.b) {
                o[m] = o[m - 1];
                m--;
            }
            o[m] = v;
        }
        begin = end;
    }
}

int sp_grid_find_pairs(sp_grid_t *g, sp_arena_t *scratch, const float *x, const float *y, const float *z,
                       const float *r, size_t n, const sp_pair_t **pairs, size_t *npairs) {
    if (pairs) *pairs = NULL;
    if (npairs) *npairs = 0;
    if (g == NULL || pairs == NULL || npairs == NULL) return SP_EINVAL;
    if (n > 0 && (x == NULL || y == NULL || z == NULL || r == NULL)) return SP_EINVAL;
    if (n >= (size_t)UINT32_MAX - 1) return SP_EOVERFLOW;

    int nt = g->def.nthreads;
    size_t per = n / g->def.parallel_min;
    if ((size_t)nt > per) nt = per < 1 ? 1 : (int)per;
    g->x = x, g->y = y, g->z = z, g->r = r;
    g->n = n;
    g->nt = nt;
    if (n == 0) {
        set_empty(g, 0, 1, pairs, npairs);
        return 0;
    }

    /* Phase 1. */
    pool_run(g, job_scan);
    float mn[3], mx[3], rmin = INFINITY, rmax = -INFINITY, acc = 0.0f;
    for (int k = 0; k < 3; k++) mn[k] = INFINITY, mx[k] = -INFINITY;
    for (int t = 0; t < nt; t++) {
        const tslot_t *s = &g->ts[t].s;
        for (int k = 0; k < 3; k++) {
            mn[k] = s->mn[k] < mn[k] ? s->mn[k] : mn[k];
            mx[k] = s->mx[k] > mx[k] ? s->mx[k] : mx[k];
        }
        rmin = s->rmin < rmin ? s->rmin : rmin;
        rmax = s->rmax > rmax ? s->rmax : rmax;
        acc += s->nanacc;
    }
    if (acc != acc || !(rmin >= 0.0f)) return SP_EINVAL;
    if (n == 1 || rmax == 0.0f) {
        set_empty(g, n, nt, pairs, npairs);
        return 0;
    }

    /* Phase 2: layout. */
    double h = 2.0 * (double)rmax * (1.0 + 1.0 / 1024.0);
    if ((double)g->def.cell_size > h) h = (double)g->def.cell_size;
    g->h = h;
    g->inv_h = 1.0 / h;
    double dims[3];
    for (int k = 0; k < 3; k++) {
        /* Same expression as job_keys() at v = max, so every key is inside. */
        double u = ((double)mx[k] - (double)mn[k]) * g->inv_h;
        dims[k] = (u < 4294967296.0 ? (double)(uint64_t)u : u) + 1.0; /* floor, u >= 0 */
    }
    double dense_cells = (dims[0] + 2.0) * (dims[1] + 2.0) * (dims[2] + 1.0);
    double limit = g->def.max_dense_cells ? (double)g->def.max_dense_cells : 32.0 * (double)n;
    if (limit < 4096.0) limit = 4096.0;
    if (limit > 2147483648.0) limit = 2147483648.0; /* uint32 cell indices */
    g->hashed = g->def.mode == SP_GRID_MODE_HASH || dense_cells > limit;
    if (!g->hashed) {
        g->ox = mn[0], g->oy = mn[1], g->oz = mn[2];
        g->NX = (uint32_t)dims[0] + 2;
        g->NXY = g->NX * ((uint32_t)dims[1] + 2);
        g->ncells = (size_t)dense_cells;
    } else {
        unsigned lg = 6;
        while (((size_t)1 << lg) < 2 * n) lg++;
        g->hshift = 64 - lg;
        g->ncells = (size_t)1 << lg;
    }

    sp_arena_t *ar = scratch ? scratch : &g->own_arena;
    sp_arena_mark_t mark = sp_arena_mark(ar);
    size_t used0 = sp_arena_used(ar);
    int rc = SP_ENOMEM;
    g->key = sp_arena_alloc_array(ar, n, sizeof(uint32_t), SP_CACHELINE);
    g->start = sp_arena_alloc_array(ar, g->ncells + 2, sizeof(uint32_t), SP_CACHELINE);
    g->sid = sp_arena_alloc_array(ar, n, sizeof(uint32_t), SP_CACHELINE);
    g->scell = sp_arena_alloc_array(ar, n, sizeof(uint32_t), SP_CACHELINE);
    g->sx = sp_arena_alloc_array(ar, n, sizeof(float), SP_CACHELINE);
    g->sy = sp_arena_alloc_array(ar, n, sizeof(float), SP_CACHELINE);
    g->sz = sp_arena_alloc_array(ar, n, sizeof(float), SP_CACHELINE);
    g->sr = sp_arena_alloc_array(ar, n, sizeof(float), SP_CACHELINE);
    g->sc = g->hashed ? sp_arena_alloc_array(ar, n, sizeof(cell3_t), SP_CACHELINE) : NULL;
    for (int t = 0; t < nt; t++) {
        g->hist[t] = sp_arena_alloc_array(ar, g->ncells, sizeof(uint32_t), SP_CACHELINE);
        if (g->hist[t] == NULL) goto out;
    }
    if (!g->key || !g->start || !g->sid || !g->scell || !g->sx || !g->sy || !g->sz || !g->sr || (g->hashed && !g->sc)) goto out;

    /* Phase 3. */
    pool_run(g, job_keys);

    /* Phase 4: parallel stable counting sort (see job_hist). */
    pool_run(g, job_hist);
    pool_run(g, job_prefix_sum);
    {
        uint32_t run = 0;
        for (int t = 0; t < nt; t++) {
            uint32_t v = g->ts[t].s.csum;
            g->ts[t].s.csum = run;
            run += v;
        }
        g->start[g->ncells] = g->start[g->ncells + 1] = (uint32_t)n;
    }
    pool_run(g, job_prefix_write);
    pool_run(g, job_scatter);

    /* Phase 5. */
    job_fn pairs_fn = job_pairs_dense;
    g->simd = 0;
#if SP_GRID_HAVE_AVX512
    if (!g->def.no_simd && __builtin_cpu_supports("avx512f")) pairs_fn = job_pairs_dense_avx512, g->simd = 1;
#endif
    if (g->hashed) pairs_fn = job_pairs_hash, g->simd = 0;
    pool_run(g, pairs_fn);
    size_t total = 0, cand = 0;
    for (int t = 0; t < nt; t++) {
        const tslot_t *s = &g->ts[t].s;
        if (s->err) {
            rc = s->err;
            goto out;
        }
        total += s->buf.len;
        cand += s->candidates;
    }

    /* Phase 6. */
    const sp_pair_t *res = NULL;
    if (g->def.order == SP_GRID_ORDER_CELL && nt == 1) {
        res = g->ts[0].s.buf.p;
    } else if (total > 0) {
        g->out.len = 0;
        rc = pairbuf_reserve(g->alloc, &g->out, total);
        if (rc != 0) goto out;
        if (g->def.order == SP_GRID_ORDER_CELL) {
            pool_run(g, job_concat);
        } else {
            rc = SP_ENOMEM;
            g->cnt = sp_arena_alloc_array(ar, n, sizeof(uint32_t), SP_CACHELINE);
            if (g->cnt == NULL) goto out;
            pool_run(g, job_order_ab);
        }
        g->out.len = total;
        res = g->out.p;
    }

    memset(&g->stats, 0, sizeof g->stats);
    g->stats.spheres = n;
    g->stats.pairs = total;
    g->stats.candidates = cand;
    g->stats.cells = g->ncells;
    g->stats.cell_size = h;
    g->stats.hashed = g->hashed;
    g->stats.threads_used = nt;
    g->stats.simd = g->simd;
    g->stats.scratch_bytes = sp_arena_used(ar) - used0;
    *pairs = total ? res : NULL;
    *npairs = total;
    rc = 0;
out:
    sp_arena_rewind(ar, mark);
    g->key = g->start = g->sid = g->scell = g->cnt = NULL;
    for (int t = 0; t < SP_GRID_MAX_THREADS; t++) g->hist[t] = NULL;
    g->sx = g->sy = g->sz = g->sr = NULL;
    g->sc = NULL;
    return rc;
}
