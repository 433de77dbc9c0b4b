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
    uint32_t idmax;     /* coherent scan: largest id (ids given) */
    uint64_t *mv;       /* coherent: movers found, (cell << 32) | input index */
    size_t mv_len, mv_cap;
    uint32_t *hi, *hj;  /* coherent sweep: candidate hits as sorted (i, j) */
    size_t nh, hcap;
    double vsum;        /* Verlet rebuild: sum of mapped spheres' velocities */
    size_t vcnt;        /* and their count */
} tslot_t;

typedef union tslot_pad {
    tslot_t s;
    char pad[2 * SP_FALSE_SHARING_RANGE];
} tslot_pad_t;

typedef void (*job_fn)(sp_grid_t *g, int tid);

/* One copy of the spheres in cell order (coherent pass). */
typedef struct cset {
    float *x, *y, *z, *r;
    uint32_t *sid;  /* input index of the sphere in this call */
    uint32_t *cell; /* dense cell key (< 2^31); CELL_HOLE marks a place left empty */
    uint32_t *id;   /* what the next call looks the sphere up by (id or index); NO_ID = none */
} cset_t;

/* State of the coherent pass, kept between calls. Only the caller's thread
 * writes it outside jobs; jobs write disjoint parts of it (see each job). */
typedef struct coh {
    int valid;   /* layout and order describe a previous call */
    int use_ids; /* the kept ids are caller ids (1) or input indices (0) */
    double h, inv_h, o[3];
    uint32_t dims[3], NX, NXY;
    size_t ncells;
    size_t n;      /* spheres in cur */
    size_t n_old;  /* during a call: spheres kept from the previous call */
    size_t cap;    /* capacity of cur and nxt (spheres) */
    cset_t cur, nxt;
    int cur_which; /* cset_point() layout of cur's block (nxt has the other) */
    uint32_t *start;   /* [ncells + 2] first index of each cell in cur */
    size_t start_cap;
    uint32_t *inv;     /* [inv_cap] id -> input index of this call (a hint, checked) */
    size_t inv_cap;
    uint64_t *mv;      /* [cap] all movers of a call, sorted by cell */
    size_t m;          /* movers of the call */
    int simd;
} coh_t;

/* Verlet list of sp_grid_find_pairs_coherent(), kept between calls (see the
 * section "Verlet list" below for the rules). Written by the caller's thread
 * outside jobs; jobs write disjoint index ranges of its arrays. */
typedef struct vlist {
    int valid;     /* the list and the build state describe the last build */
    int use_ids;   /* ids were given at the build (id0 holds them) */
    int hist;      /* x0.. hold a previous build's state (a hint for skins) */
    int blind;     /* that build had no motion history (its skins were guesses) */
    size_t n;      /* spheres of the build */
    size_t cap;    /* capacity of the per-sphere arrays */
    float *x0, *y0, *z0, *r0; /* [cap] positions and radii at the build */
    float *skin;   /* [cap] skin s_i of the build (world units) */
    float *lim2;   /* [cap] squared displacement allowed before a rebuild */
    uint32_t *id0; /* [cap] ids at the build (use_ids) */
    float *q;      /* [4 * qcap] this call's x, y, z, r interleaved, for the filter */
    size_t qcap;
    uint32_t *ca, *cb; /* [ccap] the candidate pairs, a < b, sorted by (a, b) */
    size_t nc, ccap;
    uint32_t *inv; /* [inv_cap] id -> build index, rebuilds only (checked) */
    size_t inv_cap;
    unsigned long age;  /* calls served by the list, its build's included */
    unsigned rebuilds;  /* rebuilds so far (probe schedule of gain) */
    float gain;         /* skin scale, 1/64 .. 1 (see vl_rebuild) */
    int cmp;            /* this call: the check job compares with the build */
    float *sk, *R;      /* this call's rebuild: new skins, inflated radii (arena) */
    uint32_t *prev;     /* this call's rebuild: previous build index of i, or NO_ID */
    double vsum;        /* this call's rebuild: sum of mapped velocities */
    double vmean;       /* mean velocity of the last rebuild (patch skins) */
    uint8_t *mark;      /* [cap] 1: re-anchored by a patch since the rebuild; 2: this patch */
    uint32_t *amem;     /* [acap] the re-anchored spheres, in patch order */
    size_t na, acap;
    uint32_t *ca2;      /* [2 * ccap2] the other candidate block (patch merge) */
    size_t ccap2;
    uint64_t *np_buf;   /* [np_cap] a patch's new pairs, (a << 32) | b */
    size_t np_cap, np_len;
} vlist_t;

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
    sp_grid_order_t order; /* of this call (the coherent fallback forces AB) */
    const uint32_t *ids;   /* coherent: caller ids, NULL = none */
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

    coh_t coh; /* kept-order pass state kept between calls (the list's rebuild) */
    vlist_t vl; /* sp_grid_find_pairs_coherent(): the Verlet list */
    int vl_cand; /* the kept-order pass writes the list's candidates */

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

static void coh_free(sp_grid_t *g);
static void vl_free(sp_grid_t *g);
static int cand_reserve(const sp_allocator_t *al, vlist_t *v, size_t need);

void sp_grid_free(sp_grid_t *g) {
    if (g == NULL) return;
    pool_stop(g);
    pthread_cond_destroy(&g->cv_done);
    pthread_cond_destroy(&g->cv_go);
    pthread_mutex_destroy(&g->mu);
    const sp_allocator_t *al = g->alloc;
    for (int i = 0; i < SP_GRID_MAX_THREADS; i++) pairbuf_free(al, &g->ts[i].s.buf);
    pairbuf_free(al, &g->out);
    coh_free(g);
    vl_free(g);
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
    uint32_t idmax = 0;
    if (g->ids) {
        const uint32_t *ids = g->ids;
        for (size_t i = lo; i < hi; i++) idmax = ids[i] > idmax ? ids[i] : idmax;
    }
    t->idmax = idmax;
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

/* Store pair (ia, ib), ia < ib, with d = p[ib] - p[ia] and d2 = |d|^2. */
static inline void pair_fill(sp_pair_t *p, uint32_t ia, uint32_t ib, float dx, float dy, float dz, float d2) {
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
}

/* Record pair (sorted i, sorted j) whose difference d = s[j] - s[i] passed
 * the test. The pair is stored as input indices a < b with d from a to b.
 * When i is b, d = x[a] - x[b] is turned into x[b] - x[a] as 0 - d: exact
 * for every value and +0 for a zero difference, where plain negation gives
 * -0 (which made the sign of a zero normal component depend on which sphere
 * the sweep met first, hence on the cell layout). */
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
        dx = 0.0f - dx, dy = 0.0f - dy, dz = 0.0f - dz; /* = p[b] - p[a], +0 when equal */
    }
    pair_fill(&b->p[b->len++], ia, ib, dx, dy, dz, d2);
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

/* The full pass (both public functions validated the arguments' pointers). */
static int find_pairs_full(sp_grid_t *g, sp_arena_t *scratch, const float *x, const float *y, const float *z,
                           const float *r, size_t n, sp_grid_order_t order, const sp_pair_t **pairs,
                           size_t *npairs);

int sp_grid_find_pairs(sp_grid_t *g, sp_arena_t *scratch, const float *x, const float *y, const float *z,
                       const float *r, size_t n, const sp_pair_t **pairs, size_t *npairs) {
    if (pairs) *pairs = NULL;
    if (npairs) *npairs = 0;
    if (g == NULL || pairs == NULL || npairs == NULL) return SP_EINVAL;
    return find_pairs_full(g, scratch, x, y, z, r, n, g->def.order, pairs, npairs);
}

static int find_pairs_full(sp_grid_t *g, sp_arena_t *scratch, const float *x, const float *y, const float *z,
                           const float *r, size_t n, sp_grid_order_t order, const sp_pair_t **pairs,
                           size_t *npairs) {
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
    g->order = order;
    g->ids = NULL;
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
    if (g->order == SP_GRID_ORDER_CELL && nt == 1) {
        res = g->ts[0].s.buf.p;
    } else if (total > 0) {
        g->out.len = 0;
        rc = pairbuf_reserve(g->alloc, &g->out, total);
        if (rc != 0) goto out;
        if (g->order == SP_GRID_ORDER_CELL) {
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

/* ====================================================== kept-order pass
 *
 * kept_pass() builds the Verlet list below: it runs on the inflated radii at
 * a rebuild, and its kept cells also serve the list's patches (it was
 * sp_grid_find_pairs_coherent() before the list). Its phases ("par" split
 * over the pool by contiguous ranges, "ser" on the caller's thread):
 *   1. scan    (par, input order)  as the full pass, plus the largest id
 *   2. layout  (ser)  keep the previous box and cells, or build new ones
 *   3. ids     (ser)  inv[ids[i]] = i (the last index of a duplicate wins)
 *   4. gather  (par, kept order)  each kept sphere is looked up in this call
 *                     and re-read through its input index; one still in its
 *                     cell is rewritten in place, one that changed cell
 *                     becomes a mover and leaves a hole, a vanished one too
 *   5. added   (par, input order) spheres no kept entry claimed are movers
 *   6. re-sort (ser)  movers, stable LSD radix sort by cell (few per tick)
 *   7. merge   (ser)  kept spheres (holes skipped) and movers into the other
 *                     copy, cell by cell, writing the cell starts
 *   8. sweep   (par, cell order)  the half shell of the full pass over the
 *                     kept order; hits go to per-thread lists as (i, j)
 *   9. output  (par, by a)  counting sort of all hits by a, the pair record
 *                     written straight to its place, then each a's few pairs
 *                     sorted by b
 *
 * Determinism: movers are listed in kept order, then in input order (thread
 * lists concatenated in thread order) and the sort is stable, so even the
 * kept order does not depend on the thread count. The output is sorted by
 * (a, b) and each record is computed as d = p[b] - p[a] (negating a rounded
 * difference is exact), so it equals the full pass's bit for bit and depends
 * on this call's inputs only: the kept state decides the cost, never the
 * result.
 *
 * Correctness of the kept cells: a key is computed only after the scan proved
 * every sphere inside the kept box, and the cell edge is at least the full
 * pass's (2 rmax (1 + 2^-10)), so overlapping spheres are at most one cell
 * apart per axis, exactly as in the full pass. */

#define CELL_HOLE UINT32_C(0x80000000)
#define NO_ID UINT32_MAX

/* Make *p hold at least `need` elements of `elem` bytes, keeping the first
 * `keep`; new memory is zeroed when `zero`. Unchanged on failure. */
static int arr_reserve(const sp_allocator_t *al, void **p, size_t *cap, size_t need, size_t elem, size_t keep,
                       int zero) {
    if (need <= *cap) return 0;
    size_t nc = *cap < 64 ? 64 : *cap;
    while (nc < need) {
        if (nc > SIZE_MAX / 2) return SP_EOVERFLOW;
        nc *= 2;
    }
    size_t bytes;
    if (sp_size_mul(nc, elem, &bytes) != 0) return SP_EOVERFLOW;
    void *q = al->alloc(al->ctx, bytes, SP_CACHELINE);
    if (q == NULL) return SP_ENOMEM;
    if (zero) memset(q, 0, bytes);
    if (keep) memcpy(q, *p, keep * elem);
    if (*p) al->free(al->ctx, *p, *cap * elem, SP_CACHELINE);
    *p = q;
    *cap = nc;
    return 0;
}

/* A cset is one block of 7 arrays of cap 4-byte elements. Array k of copy
 * `which` starts CSET_PAD * (k + 7 * which) elements after k * cap: with a
 * power-of-two cap the arrays would otherwise all start at the same offset
 * modulo 4 KiB, and the 14 streams of the merge (and the 8 of the sweep)
 * would fall into the same L1 set of an 8-way cache and evict each other
 * (measured: the merge ran 10x slower). */
#define CSET_PAD 80 /* elements: 320 bytes, 5 cache lines */
#define CSET_ELEMS(cap) (7 * (cap) + 14 * CSET_PAD)
static void cset_point(cset_t *s, char *base, size_t cap, int which) {
    float *f = (float *)(void *)base;
    size_t o = (size_t)7 * CSET_PAD * (size_t)which;
    s->x = f + o;
    s->y = f + o + 1 * (cap + CSET_PAD), s->z = f + o + 2 * (cap + CSET_PAD), s->r = f + o + 3 * (cap + CSET_PAD);
    uint32_t *u = (uint32_t *)(void *)base + o;
    s->sid = u + 4 * (cap + CSET_PAD), s->cell = u + 5 * (cap + CSET_PAD), s->id = u + 6 * (cap + CSET_PAD);
}

/* The per-thread hit lists are one block: hi = block, hj = block + hcap. */
static int hits_reserve(const sp_allocator_t *al, tslot_t *t, size_t need) {
    if (need <= t->hcap) return 0;
    size_t nc = t->hcap < 1024 ? 1024 : t->hcap, bytes;
    while (nc < need) {
        if (nc > SIZE_MAX / 16) return SP_EOVERFLOW;
        nc *= 2;
    }
    if (sp_size_mul(nc, 8, &bytes) != 0) return SP_EOVERFLOW;
    uint32_t *q = al->alloc(al->ctx, bytes, SP_CACHELINE);
    if (q == NULL) return SP_ENOMEM;
    if (t->nh) memcpy(q, t->hi, t->nh * 4), memcpy(q + nc, t->hj, t->nh * 4);
    if (t->hi) al->free(al->ctx, t->hi, t->hcap * 8, SP_CACHELINE);
    t->hi = q;
    t->hj = q + nc;
    t->hcap = nc;
    return 0;
}

/* The block a copy was carved from (inverse of cset_point). */
static void *cset_base(const cset_t *s, int which) { return s->x - (size_t)7 * CSET_PAD * (size_t)which; }

static void coh_drop(coh_t *c) {
    c->valid = 0;
    c->n = 0;
}

static void coh_free(sp_grid_t *g) {
    const sp_allocator_t *al = g->alloc;
    coh_t *c = &g->coh;
    size_t bytes = CSET_ELEMS(c->cap) * 4; /* cur and nxt share one capacity */
    if (c->cur.x) al->free(al->ctx, cset_base(&c->cur, c->cur_which), bytes, SP_CACHELINE);
    if (c->nxt.x) al->free(al->ctx, cset_base(&c->nxt, !c->cur_which), bytes, SP_CACHELINE);
    if (c->start) al->free(al->ctx, c->start, c->start_cap * 4, SP_CACHELINE);
    if (c->inv) al->free(al->ctx, c->inv, c->inv_cap * 4, SP_CACHELINE);
    if (c->mv) al->free(al->ctx, c->mv, c->cap * 8, SP_CACHELINE);
    for (int i = 0; i < SP_GRID_MAX_THREADS; i++) {
        tslot_t *t = &g->ts[i].s;
        if (t->mv) al->free(al->ctx, t->mv, t->mv_cap * 8, SP_CACHELINE);
        if (t->hi) al->free(al->ctx, t->hi, t->hcap * 8, SP_CACHELINE);
    }
    memset(c, 0, sizeof *c);
}

/* Grow cur (keeping its c->n spheres), nxt and mv to hold `need` spheres,
 * all to one capacity c->cap. Unchanged on failure. */
static int coh_reserve(const sp_allocator_t *al, coh_t *c, size_t need) {
    if (need <= c->cap) return 0;
    size_t nc = c->cap < 256 ? 256 : c->cap, sbytes, mbytes;
    while (nc < need) nc *= 2; /* need < 2^32: no overflow */
    if (sp_size_mul(CSET_ELEMS(nc), 4, &sbytes) != 0 || sp_size_mul(nc, 8, &mbytes) != 0) return SP_EOVERFLOW;
    char *bc = al->alloc(al->ctx, sbytes, SP_CACHELINE);
    char *bn = bc ? al->alloc(al->ctx, sbytes, SP_CACHELINE) : NULL;
    uint64_t *bm = bn ? al->alloc(al->ctx, mbytes, SP_CACHELINE) : NULL;
    if (bm == NULL) {
        if (bn) al->free(al->ctx, bn, sbytes, SP_CACHELINE);
        if (bc) al->free(al->ctx, bc, sbytes, SP_CACHELINE);
        return SP_ENOMEM;
    }
    /* The sweep reads 16 lanes past a run's end (masked off in the test):
     * the padding after each array keeps that inside the block, and zeroing
     * the block keeps it defined. */
    memset(bc, 0, sbytes);
    memset(bn, 0, sbytes);
    /* Which copy is 0 or 1 goes with the block: cur and nxt swap blocks. */
    int wc = c->cur_which;
    cset_t t;
    cset_point(&t, bc, nc, wc);
    size_t keep = c->n * 4;
    if (keep) {
        memcpy(t.x, c->cur.x, keep), memcpy(t.y, c->cur.y, keep), memcpy(t.z, c->cur.z, keep);
        memcpy(t.r, c->cur.r, keep), memcpy(t.sid, c->cur.sid, keep), memcpy(t.cell, c->cur.cell, keep);
        memcpy(t.id, c->cur.id, keep);
    }
    if (c->cur.x) al->free(al->ctx, cset_base(&c->cur, c->cur_which), CSET_ELEMS(c->cap) * 4, SP_CACHELINE);
    if (c->nxt.x) al->free(al->ctx, cset_base(&c->nxt, !c->cur_which), CSET_ELEMS(c->cap) * 4, SP_CACHELINE);
    if (c->mv) al->free(al->ctx, c->mv, c->cap * 8, SP_CACHELINE);
    c->cur = t;
    cset_point(&c->nxt, bn, nc, !wc);
    c->mv = bm;
    c->cap = nc;
    return 0;
}

static inline uint32_t coh_key(const coh_t *c, float x, float y, float z) {
    uint32_t ix = (uint32_t)(((double)x - c->o[0]) * c->inv_h);
    uint32_t iy = (uint32_t)(((double)y - c->o[1]) * c->inv_h);
    uint32_t iz = (uint32_t)(((double)z - c->o[2]) * c->inv_h);
    return (ix + 1) + c->NX * (iy + 1) + c->NXY * iz;
}

/* 1 when every value in [mn, mx] gets a key inside the box: (v - o) / h is
 * >= 0 and truncates below dims (monotone in v, so the extremes decide). */
static int coh_box_holds(const coh_t *c, const float mn[3], const float mx[3]) {
    for (int k = 0; k < 3; k++) {
        if (!((double)mn[k] - c->o[k] >= 0.0)) return 0;
        if (!(((double)mx[k] - c->o[k]) * c->inv_h < (double)c->dims[k])) return 0;
    }
    return 1;
}

static double dense_limit(const sp_grid_t *g, size_t n) {
    double limit = g->def.max_dense_cells ? (double)g->def.max_dense_cells : 32.0 * (double)n;
    if (limit < 4096.0) limit = 4096.0;
    if (limit > 2147483648.0) limit = 2147483648.0; /* keys < 2^31: CELL_HOLE stays free */
    return limit;
}

/* New box for cell edge h around [mn, mx]: a margin of h + extent / 32 per
 * side (so spheres can drift a while before a rebuild), or none when that
 * would exceed the dense limit. Returns 0, or -1 when even the tight box is
 * too big (the data needs the hashed layout). */
static int coh_layout(sp_grid_t *g, const float mn[3], const float mx[3], double h, size_t n) {
    coh_t *c = &g->coh;
    double limit = dense_limit(g, n);
    for (int pass = 0; pass < 2; pass++) {
        coh_t t = *c;
        t.h = h;
        t.inv_h = 1.0 / h;
        int ok = 1;
        double cells = 1.0;
        for (int k = 0; k < 3 && ok; k++) {
            double lo = mn[k], hi = mx[k];
            double m = pass == 0 ? h + (hi - lo) / 32.0 : 0.0;
            t.o[k] = lo - m;
            double u = (hi + m - t.o[k]) * t.inv_h;
            if (!(u < 2147483000.0)) {
                ok = 0;
                break;
            }
            t.dims[k] = (uint32_t)u + 1;
            cells *= (double)t.dims[k] + (k < 2 ? 2.0 : 1.0);
        }
        if (!ok || cells > limit) continue;
        t.NX = t.dims[0] + 2;
        t.NXY = t.NX * (t.dims[1] + 2);
        t.ncells = (size_t)cells;
        if (!coh_box_holds(&t, mn, mx)) continue;
        *c = t;
        return 0;
    }
    return -1;
}

static inline int mv_push(const sp_allocator_t *al, tslot_t *t, uint32_t key, uint32_t i) {
    if (SP_UNLIKELY(t->mv_len == t->mv_cap)) {
        int rc = arr_reserve(al, (void **)&t->mv, &t->mv_cap, t->mv_len + 1, 8, t->mv_len, 0);
        if (rc != 0) {
            t->err = rc;
            return rc;
        }
    }
    t->mv[t->mv_len++] = ((uint64_t)key << 32) | i;
    return 0;
}

/* Phase 4: thread tid owns kept places [lo, hi) of cur and hit[] of the
 * input indices they claim (a kept id matches at most one index and kept ids
 * are distinct, so no byte is written by two threads). */
static void job_coh_gather(sp_grid_t *g, int tid) {
    coh_t *c = &g->coh;
    size_t lo, hi;
    split(c->n_old, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    t->mv_len = 0;
    t->err = 0;
    cset_t s = c->cur;
    const float *x = g->x, *y = g->y, *z = g->z, *r = g->r;
    const uint32_t *ids = c->use_ids ? g->ids : NULL, *inv = c->inv;
    const size_t n = g->n, inv_cap = c->inv_cap;
    uint8_t *hit = (uint8_t *)g->cnt;
    for (size_t p = lo; p < hi; p++) {
        uint32_t id = s.id[p], i;
        if (ids) {
            if (id >= inv_cap) goto gone;
            i = inv[id];
            if (i >= n || ids[i] != id) goto gone;
        } else {
            i = id;
            if (i >= n) goto gone;
        }
        hit[i] = 1;
        float xi = x[i], yi = y[i], zi = z[i];
        uint32_t k = coh_key(c, xi, yi, zi);
        if (SP_UNLIKELY(k != s.cell[p])) {
            s.cell[p] |= CELL_HOLE;
            if (mv_push(g->alloc, t, k, i) != 0) return;
            continue;
        }
        s.x[p] = xi, s.y[p] = yi, s.z[p] = zi, s.r[p] = r[i];
        s.sid[p] = i;
        continue;
    gone:
        s.cell[p] |= CELL_HOLE;
    }
    t->csum = (uint32_t)t->mv_len; /* where the added movers start (phase 5) */
}

/* Phase 5: input range tid; the spheres no kept place claimed. */
static void job_coh_added(sp_grid_t *g, int tid) {
    coh_t *c = &g->coh;
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    if (t->err) return;
    const uint8_t *hit = (const uint8_t *)g->cnt;
    const float *x = g->x, *y = g->y, *z = g->z;
    for (size_t i = lo; i < hi; i++) {
        if (hit[i]) continue;
        if (mv_push(g->alloc, t, coh_key(c, x[i], y[i], z[i]), (uint32_t)i) != 0) return;
    }
}

/* Phase 6: stable sort of mv[0..m) by cell (the high 32 bits); tmp has m. */
static void movers_sort(uint64_t *mv, uint64_t *tmp, size_t m, size_t ncells) {
    if (m <= 32) {
        for (size_t k = 1; k < m; k++) {
            uint64_t v = mv[k];
            size_t q = k;
            while (q > 0 && (mv[q - 1] >> 32) > (v >> 32)) {
                mv[q] = mv[q - 1];
                q--;
            }
            mv[q] = v;
        }
        return;
    }
    unsigned bits = 1;
    while (((size_t)1 << bits) < ncells) bits++;
    uint64_t *src = mv, *dst = tmp;
    for (unsigned sh = 0; sh < bits; sh += 11) {
        size_t cnt[2048];
        memset(cnt, 0, sizeof cnt);
        for (size_t q = 0; q < m; q++) cnt[(src[q] >> (32 + sh)) & 2047]++;
        size_t run = 0;
        for (int d = 0; d < 2048; d++) {
            size_t v = cnt[d];
            cnt[d] = run;
            run += v;
        }
        for (size_t q = 0; q < m; q++) dst[cnt[(src[q] >> (32 + sh)) & 2047]++] = src[q];
        uint64_t *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != mv) memcpy(mv, src, m * sizeof *mv);
}

/* Phase 7: cur (n_old places, holes skipped) merged with the sorted movers
 * into nxt, cells ascending; at equal cells kept spheres come first. Then
 * start[0 .. ncells + 2) without a branch per cell: start[c + 1] = 1 + the
 * last index in cell c, then a running max fills the empty cells (a loop
 * advancing a cell cursor per sphere mispredicted on nearly every sphere,
 * the cell gaps being random). */
static void coh_merge(sp_grid_t *g) {
    coh_t *c = &g->coh;
    const cset_t o = c->cur;
    cset_t w = c->nxt;
    const uint64_t *mv = c->mv;
    const size_t nold = c->n_old, m = c->m, ncells = c->ncells;
    const float *x = g->x, *y = g->y, *z = g->z, *r = g->r;
    const uint32_t *ids = c->use_ids ? g->ids : NULL, *inv = c->inv;
    uint32_t *start = c->start;
    size_t p = 0, q = 0, k = 0;
    uint32_t km = m ? (uint32_t)(mv[0] >> 32) : UINT32_MAX;
    for (;;) {
        /* Kept spheres up to the next mover's cell: the common case, a
         * straight copy with the cell starts filled as cells change. */
        while (p < nold) {
            uint32_t ko = o.cell[p];
            if (ko & CELL_HOLE) {
                p++;
                continue;
            }
            if (ko > km) break;
            w.x[k] = o.x[p], w.y[k] = o.y[p], w.z[k] = o.z[p], w.r[k] = o.r[p];
            w.sid[k] = o.sid[p], w.cell[k] = ko, w.id[k] = o.id[p];
            k++, p++;
        }
        if (q == m) {
            if (p == nold) break;
            continue; /* km is UINT32_MAX: the loop above drains cur */
        }
        uint32_t i = (uint32_t)mv[q];
        w.x[k] = x[i], w.y[k] = y[i], w.z[k] = z[i], w.r[k] = r[i];
        w.sid[k] = i, w.cell[k] = km;
        w.id[k] = ids ? (inv[ids[i]] == i ? ids[i] : NO_ID) : i;
        k++, q++;
        km = q < m ? (uint32_t)(mv[q] >> 32) : UINT32_MAX;
    }
    memset(start, 0, (ncells + 2) * sizeof *start);
    const uint32_t *cell = w.cell;
    for (size_t e = 0; e < k; e++) start[cell[e] + 1] = (uint32_t)(e + 1);
    uint32_t run = 0;
    for (size_t e = 1; e < ncells + 2; e++) {
        run = start[e] > run ? start[e] : run;
        start[e] = run;
    }
}

/* Make room for 16 more hits (a full-vector store) after t->nh. */
static inline int hits_room16(const sp_allocator_t *al, tslot_t *t) {
    if (SP_LIKELY(t->hcap - t->nh >= 16)) return 0;
    int rc = hits_reserve(al, t, t->nh + 16);
    if (rc != 0) t->err = rc;
    return rc;
}

/* Phase 8, portable kernel: sorted spheres [lo, hi) against their half
 * shell (same runs as job_pairs_dense), hits appended in sweep order. */
static void job_coh_sweep(sp_grid_t *g, int tid) {
    coh_t *c = &g->coh;
    size_t lo, hi;
    split(c->n, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    t->nh = 0;
    t->err = 0;
    const float *sx = c->cur.x, *sy = c->cur.y, *sz = c->cur.z, *sr = c->cur.r;
    const uint32_t *start = c->start, *cell = c->cur.cell;
    const size_t NX = c->NX, NXY = c->NXY;
    const size_t rows[4] = {NX, NXY - NX, NXY, NXY + NX};
    size_t cand = 0;
    for (size_t i = lo; i < hi; i++) {
        size_t cc = cell[i];
        size_t rb[5], re[5];
        rb[0] = i + 1, re[0] = start[cc + 2];
        for (int k = 0; k < 4; k++) rb[k + 1] = start[cc + rows[k] - 1], re[k + 1] = start[cc + rows[k] + 2];
        float xi = sx[i], yi = sy[i], zi = sz[i], ri = sr[i];
        for (int k = 0; k < 5; k++) {
            cand += re[k] - rb[k];
            for (size_t j = rb[k]; j < re[k]; j++) {
                float dx = sx[j] - xi, dy = sy[j] - yi, dz = sz[j] - zi;
                float d2 = dx * dx + dy * dy + dz * dz;
                float rs = ri + sr[j];
                if (d2 < rs * rs) {
                    if (hits_room16(g->alloc, t) != 0) return;
                    t->hi[t->nh] = (uint32_t)i, t->hj[t->nh] = (uint32_t)j;
                    t->nh++;
                }
            }
        }
    }
    t->candidates = cand;
}

#if SP_GRID_HAVE_AVX512
/* Phase 8, AVX-512 kernel: as job_coh_sweep, 16 candidates per step, with
 * no branch on the test's outcome: the hit lanes' j are compressed in a
 * register and stored as a full vector (the list keeps 16 spare slots), and
 * the count advances by the popcount. A run of up to 16 candidates (nearly
 * all at the automatic cell size) is one step, taken even when the run is
 * empty (all lanes masked off), so the loop branches are predictable. The
 * lane arithmetic is the scalar test's IEEE sequence (no FMA): same hits. */
/* 16 candidates [jb, jb + 16) of one run against sphere (xi, yi, zi, ri):
 * the mask of lanes below je that overlap. Plain (unmasked) loads: lanes past
 * je read the next entries or the zeroed padding after the array (see
 * coh_reserve) and are masked off in the compare. */
__attribute__((target("avx512f"), always_inline)) static inline __mmask16
test16(const float *sx, const float *sy, const float *sz, const float *sr, size_t jb, size_t je, __m512 xi, __m512 yi,
       __m512 zi, __m512 ri) {
    size_t len = je - jb;
    __mmask16 m = len >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << len) - 1u);
    __m512 dx = _mm512_sub_ps(_mm512_loadu_ps(sx + jb), xi);
    __m512 dy = _mm512_sub_ps(_mm512_loadu_ps(sy + jb), yi);
    __m512 dz = _mm512_sub_ps(_mm512_loadu_ps(sz + jb), zi);
    __m512 rs = _mm512_add_ps(ri, _mm512_loadu_ps(sr + jb));
    __m512 d2 = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(dx, dx), _mm512_mul_ps(dy, dy)), _mm512_mul_ps(dz, dz));
    return _mm512_mask_cmp_ps_mask(m, d2, _mm512_mul_ps(rs, rs), _CMP_LT_OQ);
}

/* Phase 8, AVX-512 kernel: as job_coh_sweep, 16 candidates per step and no
 * branch on the tests' outcome: the hit lanes' j are compressed in a
 * register and stored as a full vector (the list keeps spare room), and the
 * count advances by the popcount. The five runs' first 16 candidates (nearly
 * every run at the automatic cell size) are all tested before any store:
 * a store's address depends on the previous tests' popcounts, and the loads
 * of later tests waited for it (measured: 3x slower when each test was
 * followed by its store). Longer runs finish in a loop, rarely. The lane
 * arithmetic is the scalar test's IEEE sequence (no FMA): same hits. */
__attribute__((target("avx512f"))) static void job_coh_sweep_avx512(sp_grid_t *g, int tid) {
    coh_t *c = &g->coh;
    size_t lo, hi;
    split(c->n, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    t->nh = 0;
    t->err = 0;
    const float *sx = c->cur.x, *sy = c->cur.y, *sz = c->cur.z, *sr = c->cur.r;
    const uint32_t *start = c->start, *cell = c->cur.cell;
    const size_t NX = c->NX, NXY = c->NXY;
    const size_t rows[4] = {NX, NXY - NX, NXY, NXY + NX};
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    /* Locals, not t->: the stores below could alias *t as far as the
     * compiler knows, which would reload them after every store. */
    uint32_t *hl = t->hi, *hr = t->hj;
    size_t hcap = t->hcap, cand = 0, nh = 0;
    /* Room for one sphere's stores: 5 runs of 16 and the i store. */
    const size_t ROOM = 6 * 16;
    for (size_t i = lo; i < hi; i++) {
        if (SP_UNLIKELY(hcap - nh < ROOM)) {
            t->nh = nh;
            int rc = hits_reserve(g->alloc, t, nh + ROOM);
            if (rc != 0) {
                t->err = rc;
                return;
            }
            hl = t->hi, hr = t->hj, hcap = t->hcap;
        }
        size_t cc = cell[i];
        size_t rb[5], re[5];
        rb[0] = i + 1, re[0] = start[cc + 2];
        for (int k = 0; k < 4; k++) rb[k + 1] = start[cc + rows[k] - 1], re[k + 1] = start[cc + rows[k] + 2];
        __m512 xi = _mm512_set1_ps(sx[i]), yi = _mm512_set1_ps(sy[i]);
        __m512 zi = _mm512_set1_ps(sz[i]), ri = _mm512_set1_ps(sr[i]);
        __mmask16 hk[5];
        unsigned any = 0, longrun = 0;
        for (int k = 0; k < 5; k++) {
            hk[k] = test16(sx, sy, sz, sr, rb[k], re[k], xi, yi, zi, ri);
            any |= hk[k];
            longrun |= re[k] - rb[k] > 16;
            cand += re[k] - rb[k];
        }
        if (!(any | longrun)) continue;
        size_t nh0 = nh;
        for (int k = 0; k < 5; k++) {
            size_t jb = rb[k], je = re[k];
            __m512i vj = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)jb), iota);
            /* Register-form compress then a plain store: the memory form
             * of vpcompressd is microcoded and slow on Zen 4. */
            _mm512_storeu_si512((void *)(hr + nh), _mm512_maskz_compress_epi32(hk[k], vj));
            nh += (size_t)__builtin_popcount((unsigned)hk[k]);
            for (jb += 16; SP_UNLIKELY(jb < je); jb += 16) {
                if (SP_UNLIKELY(hcap - nh < ROOM)) {
                    t->nh = nh;
                    int rc = hits_reserve(g->alloc, t, nh + ROOM);
                    if (rc != 0) {
                        t->err = rc;
                        return;
                    }
                    hl = t->hi, hr = t->hj, hcap = t->hcap;
                }
                __mmask16 h = test16(sx, sy, sz, sr, jb, je, xi, yi, zi, ri);
                vj = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)jb), iota);
                _mm512_storeu_si512((void *)(hr + nh), _mm512_maskz_compress_epi32(h, vj));
                nh += (size_t)__builtin_popcount((unsigned)h);
            }
        }
        /* i for this sphere's hits: one store covers up to 16 (ROOM keeps
         * 16 spare past nh); more loop, rarely. */
        __m512i vi = _mm512_set1_epi32((int)(uint32_t)i);
        size_t q = nh0;
        do {
            _mm512_storeu_si512((void *)(hl + q), vi);
            q += 16;
        } while (q < nh);
    }
    t->nh = nh;
    t->candidates = cand;
}
#endif

/* Phase 9's counting half, shared by both writers below: thread tid's
 * input range [*alo, *ahi); cnt[a] for a in it becomes the output offset of
 * a's first pair (every thread's hits read once, pairs keyed by their lower
 * sorted index). Returns the pairs of all threads whose a is below the
 * range: where this thread's part of the output starts. */
static size_t coh_order_offsets(sp_grid_t *g, int tid, size_t *alo, size_t *ahi) {
    const uint32_t *sid = g->coh.cur.sid;
    uint32_t *cnt = g->cnt;
    split(g->n, g->nt, tid, alo, ahi);
    memset(cnt + *alo, 0, (*ahi - *alo) * sizeof *cnt);
    size_t below = 0;
    for (int t = 0; t < g->nt; t++) {
        const tslot_t *s = &g->ts[t].s;
        for (size_t k = 0; k < s->nh; k++) {
            uint32_t ia = sid[s->hi[k]], ib = sid[s->hj[k]];
            size_t a = ia < ib ? ia : ib;
            if (a < *alo)
                below++;
            else if (a < *ahi)
                cnt[a]++;
        }
    }
    size_t run = below;
    for (size_t a = *alo; a < *ahi; a++) {
        size_t v = cnt[a];
        cnt[a] = (uint32_t)run;
        run += v;
    }
    return below;
}

/* Phase 9: thread tid owns the pairs whose a is in its input range. It reads
 * every thread's hits twice (count, then place) and writes only its part of
 * cnt[] and of the output, so no write is shared. The record is computed
 * from the sorted copy exactly as emit() does in the full pass. */
static void job_coh_order(sp_grid_t *g, int tid) {
    coh_t *c = &g->coh;
    size_t alo, ahi;
    size_t below = coh_order_offsets(g, tid, &alo, &ahi);
    uint32_t *cnt = g->cnt;
    const uint32_t *sid = c->cur.sid;
    const float *sx = c->cur.x, *sy = c->cur.y, *sz = c->cur.z;
    sp_pair_t *o = g->out.p;
    for (int t = 0; t < g->nt; t++) {
        const tslot_t *s = &g->ts[t].s;
        for (size_t k = 0; k < s->nh; k++) {
            uint32_t i = s->hi[k], j = s->hj[k];
            uint32_t ia = sid[i], ib = sid[j];
            size_t a = ia < ib ? ia : ib;
            if (a < alo || a >= ahi) continue;
            float dx = sx[j] - sx[i], dy = sy[j] - sy[i], dz = sz[j] - sz[i];
            float d2 = dx * dx + dy * dy + dz * dz;
            if (ia > ib) {
                uint32_t tmp = ia;
                ia = ib;
                ib = tmp;
                dx = 0.0f - dx, dy = 0.0f - dy, dz = 0.0f - dz; /* = p[b] - p[a], +0 when equal */
            }
            pair_fill(&o[cnt[a]++], ia, ib, dx, dy, dz, d2);
        }
    }
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

/* The kept-order pass's fallback to the full pass, in (a, b) order; with
 * g->vl_cand the pairs' (a, b) go to the Verlet list's candidates. */
static int full_pass_ab(sp_grid_t *g, sp_arena_t *scratch, const float *x, const float *y, const float *z,
                        const float *r, size_t n, const sp_pair_t **pairs, size_t *npairs) {
    int rc = find_pairs_full(g, scratch, x, y, z, r, n, SP_GRID_ORDER_AB, pairs, npairs);
    if (rc != 0 || !g->vl_cand) return rc;
    vlist_t *v = &g->vl;
    size_t np = *npairs;
    rc = cand_reserve(g->alloc, v, np);
    if (rc != 0) {
        *pairs = NULL, *npairs = 0;
        return rc;
    }
    for (size_t k = 0; k < np; k++) v->ca[k] = (*pairs)[k].a, v->cb[k] = (*pairs)[k].b;
    v->nc = np;
    *pairs = NULL;
    return 0;
}

/* Phase 9 for the Verlet list's build: as job_coh_order, but only (a, b)
 * is written, to the candidate arrays (no distance or normal). */
static void job_coh_order_cand(sp_grid_t *g, int tid) {
    size_t alo, ahi;
    size_t below = coh_order_offsets(g, tid, &alo, &ahi);
    uint32_t *cnt = g->cnt;
    const uint32_t *sid = g->coh.cur.sid;
    uint32_t *ca = g->vl.ca, *cb = g->vl.cb;
    for (int t = 0; t < g->nt; t++) {
        const tslot_t *s = &g->ts[t].s;
        for (size_t k = 0; k < s->nh; k++) {
            uint32_t ia = sid[s->hi[k]], ib = sid[s->hj[k]];
            uint32_t a = ia < ib ? ia : ib, b = ia < ib ? ib : ia;
            if (a < alo || a >= ahi) continue;
            uint32_t pos = cnt[a]++;
            ca[pos] = a, cb[pos] = b;
        }
    }
    size_t begin = below;
    for (size_t a = alo; a < ahi; a++) {
        size_t end = cnt[a];
        for (size_t k = begin + 1; k < end; k++) {
            uint32_t v = cb[k];
            size_t m = k;
            while (m > begin && cb[m - 1] > v) {
                cb[m] = cb[m - 1];
                m--;
            }
            cb[m] = v;
        }
        begin = end;
    }
}

/* The kept-order pass (phases above): the Verlet list's rebuild. With
 * g->vl_cand set it leaves its pairs, (a, b) only, in g->vl.ca/cb (count
 * g->vl.nc) and returns no array. */
static int kept_pass(sp_grid_t *g, sp_arena_t *scratch, const float *x, const float *y, const float *z,
                     const float *r, const uint32_t *ids, size_t n, const sp_pair_t **pairs, size_t *npairs) {
    if (pairs) *pairs = NULL;
    if (npairs) *npairs = 0;
    if (g == NULL || pairs == NULL || npairs == NULL) return SP_EINVAL;
    if (n > 0 && (x == NULL || y == NULL || z == NULL || r == NULL)) return SP_EINVAL;
    if (n >= (size_t)UINT32_MAX - 1) return SP_EOVERFLOW;
    coh_t *c = &g->coh;
    if (g->def.mode == SP_GRID_MODE_HASH) {
        coh_drop(c);
        return full_pass_ab(g, scratch, x, y, z, r, n, pairs, npairs);
    }

    int nt = g->def.nthreads;
    size_t per = n / g->def.parallel_min;
    if ((size_t)nt > per) nt = per < 1 ? 1 : (int)per;
    g->x = x, g->y = y, g->z = z, g->r = r;
    g->n = n;
    g->nt = nt;
    g->order = SP_GRID_ORDER_AB;
    g->ids = ids;
    if (n == 0) {
        coh_drop(c);
        set_empty(g, 0, 1, pairs, npairs);
        return 0;
    }

    /* Phase 1. */
    pool_run(g, job_scan);
    float mn[3], mx[3], rmin = INFINITY, rmax = -INFINITY, acc = 0.0f;
    uint32_t idmax = 0;
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
        idmax = s->idmax > idmax ? s->idmax : idmax;
    }
    if (acc != acc || !(rmin >= 0.0f)) return SP_EINVAL; /* kept state untouched */
    if (n == 1 || rmax == 0.0f) {
        coh_drop(c);
        set_empty(g, n, nt, pairs, npairs);
        return 0;
    }

    /* Phase 2: keep the box, or build one. */
    double h = 2.0 * (double)rmax * (1.0 + 1.0 / 1024.0);
    if ((double)g->def.cell_size > h) h = (double)g->def.cell_size;
    int use_ids = ids != NULL && (uint64_t)idmax < SP_GRID_MAX_IDS &&
                  (uint64_t)idmax < 16 * (uint64_t)n + ((uint64_t)1 << 20);
    int keep = c->valid && c->use_ids == use_ids && h <= c->h && c->h <= 1.5 * h &&
               (double)c->ncells <= dense_limit(g, n) && coh_box_holds(c, mn, mx);
    if (!keep) {
        coh_drop(c);
        if (coh_layout(g, mn, mx, h, n) != 0)
            return full_pass_ab(g, scratch, x, y, z, r, n, pairs, npairs);
        c->use_ids = use_ids;
    }

    sp_arena_t *ar = scratch ? scratch : &g->own_arena;
    sp_arena_mark_t mark = sp_arena_mark(ar);
    size_t used0 = sp_arena_used(ar);
    const sp_allocator_t *al = g->alloc;
    int rc = coh_reserve(al, c, n > c->n ? n : c->n);
    if (rc == 0) rc = arr_reserve(al, (void **)&c->start, &c->start_cap, c->ncells + 2, 4, 0, 0);
    if (rc == 0 && use_ids) rc = arr_reserve(al, (void **)&c->inv, &c->inv_cap, (size_t)idmax + 1, 4, 0, 1);
    /* g->cnt holds the hit bytes of phases 4-5, then the counts of phase 9. */
    if (rc == 0) {
        g->cnt = sp_arena_alloc_array(ar, n, sizeof(uint32_t), SP_CACHELINE);
        if (g->cnt == NULL) rc = SP_ENOMEM;
    }
    if (rc != 0) goto fail;
    c->valid = 1;
    c->n_old = c->n;

    /* Phase 3: the last index of each id wins (serial, so duplicates are
     * resolved the same way whatever the thread count). */
    if (use_ids)
        for (size_t i = 0; i < n; i++) c->inv[ids[i]] = (uint32_t)i;

    /* Phases 4-5. */
    memset(g->cnt, 0, n);
    pool_run(g, job_coh_gather);
    pool_run(g, job_coh_added);
    size_t m = 0;
    for (int t = 0; t < nt; t++) {
        if (g->ts[t].s.err) {
            rc = g->ts[t].s.err;
            goto fail;
        }
        m += g->ts[t].s.mv_len;
    }

    /* Phase 6: movers in kept order (each thread's first part), then in
     * input order (second parts). */
    {
        size_t q = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int t = 0; t < nt; t++) {
                const tslot_t *s = &g->ts[t].s;
                size_t b = pass == 0 ? 0 : s->csum, e = pass == 0 ? s->csum : s->mv_len;
                if (e > b) memcpy(c->mv + q, s->mv + b, (e - b) * sizeof *c->mv);
                q += e - b;
            }
        c->m = m;
        uint64_t *tmp = NULL;
        if (m > 32) {
            tmp = sp_arena_alloc_array(ar, m, sizeof(uint64_t), SP_CACHELINE);
            if (tmp == NULL) {
                rc = SP_ENOMEM;
                goto fail;
            }
        }
        movers_sort(c->mv, tmp, m, c->ncells);
    }

    /* Phase 7, then cur := the merged copy. */
    coh_merge(g);
    {
        cset_t sw = c->cur;
        c->cur = c->nxt;
        c->nxt = sw;
        c->cur_which = !c->cur_which;
        c->n = n;
    }

    /* Phase 8. */
    job_fn sweep = job_coh_sweep;
    c->simd = 0;
#if SP_GRID_HAVE_AVX512
    if (!g->def.no_simd && __builtin_cpu_supports("avx512f")) sweep = job_coh_sweep_avx512, c->simd = 1;
#endif
    pool_run(g, sweep);
    size_t total = 0, cand = 0;
    for (int t = 0; t < nt; t++) {
        const tslot_t *s = &g->ts[t].s;
        if (s->err) {
            rc = s->err;
            goto fail;
        }
        total += s->nh;
        cand += s->candidates;
    }

    /* Phase 9. */
    if (g->vl_cand) {
        /* For the Verlet list: (a, b) only, into its candidate arrays. */
        rc = cand_reserve(al, &g->vl, total);
        if (rc != 0) goto fail;
        pool_run(g, job_coh_order_cand);
        g->vl.nc = total;
    } else if (total > 0) {
        g->out.len = 0;
        rc = pairbuf_reserve(al, &g->out, total);
        if (rc != 0) goto fail;
        pool_run(g, job_coh_order);
        g->out.len = total;
    }

    memset(&g->stats, 0, sizeof g->stats);
    g->stats.spheres = n;
    g->stats.pairs = total;
    g->stats.candidates = cand;
    g->stats.cells = c->ncells;
    g->stats.cell_size = c->h;
    g->stats.threads_used = nt;
    g->stats.simd = c->simd;
    g->stats.scratch_bytes = sp_arena_used(ar) - used0;
    g->stats.coherent = keep;
    g->stats.resorted = m;
    *pairs = total && !g->vl_cand ? g->out.p : NULL;
    *npairs = total;
    sp_arena_rewind(ar, mark);
    g->cnt = NULL;
    return 0;

fail:
    coh_drop(c);
    sp_arena_rewind(ar, mark);
    g->cnt = NULL;
    return rc;
}

/* ============================================================ Verlet list
 *
 * sp_grid_find_pairs_coherent() keeps a list of candidate pairs: the pairs
 * that overlap with every radius r_i inflated by a skin s_i >= 0, found by a
 * grid pass at the build, with each sphere's build position p0_i and radius
 * r0_i. While the list is valid (rules in grid.h) a call only tests its
 * candidates with the exact float rule, so the pair set is the full pass's.
 *
 * Why a valid list holds every pair (D: centre distance now, D0 at the build,
 * d_i = |p_i - p0_i|, u = 2^-24). A pair passing the float test now has
 * D < (r_a + r_b)(1 + 2^-21) + 2^-74 (at most 5 roundings on each side;
 * 2^-74 covers squares that underflow). The build found it when
 * D0 < (R_a + R_b)(1 - 2^-21) - 2^-74 with R_i = fl(r0_i + s_i), and
 * D0 <= D + d_a + d_b. Both hold when r_i <= r0_i and
 * d_i <= s_i - 2^-20 (2 r0_i + s_i) - 2^-71 for both spheres; the list allows
 * d_i <= lim_i = s_i (1 - 2^-16) - 2^-16 r0_i - 2^-60 (computed in double,
 * squared and rounded down to a float), which is smaller. A skin is at least
 * 2^-8 r0_i + 2^-40, so lim_i > 0 and a sphere that did not move never
 * invalidates the list. The inflated radii stay below 2^60 (else the list is
 * not used), so no square of the build overflows where it matters.
 *
 * Skins come from the motion: at a rebuild, sphere i's velocity is its
 * displacement since the previous build divided by the calls that list
 * served, v_i, and s_i = gain * VL_AGE * (1.25 v_i + 0.25 v_mean), clamped to
 * [2^-8 r_i + 2^-40, rmax / 2]: a list is meant to serve about VL_AGE calls.
 * Spheres without history (new, or the first build) take the mean skin.
 * gain (1/64 .. 1) halves when a list served only its own call (something
 * jumps: large skins only cost) and doubles back when a list served >= 3;
 * at 1/64, every 16th rebuild tries gain 1 again. Everything here is a
 * deterministic function of the inputs of the calls, not of thread count or
 * time; and the skins decide only the cost: the output is exact whatever
 * they are. */

#define VL_AGE 8 /* calls a list is sized to serve */

static void vl_free(sp_grid_t *g) {
    const sp_allocator_t *al = g->alloc;
    vlist_t *v = &g->vl;
    float **fa[] = {&v->x0, &v->y0, &v->z0, &v->r0, &v->skin, &v->lim2};
    for (size_t k = 0; k < sizeof fa / sizeof fa[0]; k++)
        if (*fa[k]) al->free(al->ctx, *fa[k], v->cap * 4, SP_CACHELINE);
    if (v->id0) al->free(al->ctx, v->id0, v->cap * 4, SP_CACHELINE);
    if (v->q) al->free(al->ctx, v->q, v->qcap * 16, SP_CACHELINE);
    if (v->ca) al->free(al->ctx, v->ca, v->ccap * 8, SP_CACHELINE);
    if (v->inv) al->free(al->ctx, v->inv, v->inv_cap * 4, SP_CACHELINE);
    if (v->mark) al->free(al->ctx, v->mark, v->cap, SP_CACHELINE);
    if (v->amem) al->free(al->ctx, v->amem, v->acap * 4, SP_CACHELINE);
    if (v->ca2) al->free(al->ctx, v->ca2, v->ccap2 * 8, SP_CACHELINE);
    if (v->np_buf) al->free(al->ctx, v->np_buf, v->np_cap * 8, SP_CACHELINE);
    memset(v, 0, sizeof *v);
}

/* Check (par, input range): validation as job_scan, the list's validity
 * (when v->cmp: motion within lim, no radius growth) as a count of spheres
 * that break it, and the interleaved
 * copy q used by the filter's gathers (one cache line per sphere met). */
static void job_vl_check(sp_grid_t *g, int tid) {
    vlist_t *v = &g->vl;
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    const float *x = g->x, *y = g->y, *z = g->z, *r = g->r;
    float *q = v->q;
    float rmin = INFINITY, rmax = -INFINITY, acc = 0.0f;
    uint32_t bad = 0;
    t->mv_len = 0;
    if (v->cmp) {
        const float *x0 = v->x0, *y0 = v->y0, *z0 = v->z0, *r0 = v->r0, *lim2 = v->lim2;
        for (size_t i = lo; i < hi; i++) {
            float xi = x[i], yi = y[i], zi = z[i], ri = r[i];
            acc += xi * 0.0f + yi * 0.0f + zi * 0.0f + ri * 0.0f;
            rmin = ri < rmin ? ri : rmin;
            rmax = ri > rmax ? ri : rmax;
            double dx = (double)xi - (double)x0[i], dy = (double)yi - (double)y0[i], dz = (double)zi - (double)z0[i];
            double d2 = dx * dx + dy * dy + dz * dz;
            /* NaN fails both tests (and is reported as SP_EINVAL anyway). */
            uint32_t b1 = !(d2 <= (double)lim2[i]) | !(ri <= r0[i]);
            /* Record the first few for a patch (mv has room reserved). */
            if (SP_UNLIKELY(b1) && t->mv_len < t->mv_cap) t->mv[t->mv_len++] = i;
            bad += b1;
            q[4 * i] = xi, q[4 * i + 1] = yi, q[4 * i + 2] = zi, q[4 * i + 3] = ri;
        }
    } else {
        for (size_t i = lo; i < hi; i++) {
            float xi = x[i], yi = y[i], zi = z[i], ri = r[i];
            acc += xi * 0.0f + yi * 0.0f + zi * 0.0f + ri * 0.0f;
            rmin = ri < rmin ? ri : rmin;
            rmax = ri > rmax ? ri : rmax;
            q[4 * i] = xi, q[4 * i + 1] = yi, q[4 * i + 2] = zi, q[4 * i + 3] = ri;
        }
    }
    t->nanacc = acc, t->rmin = rmin, t->rmax = rmax, t->csum = bad;
}

/* Rebuild, velocities (par, input range): sk[i] = sphere i's velocity since
 * the previous build (world units per call), or -1 when it has no history.
 * With ids, the previous build's index of an id is found through inv
 * (filled by the caller, checked against id0); without, index i is sphere i. */
static void job_vl_vel(sp_grid_t *g, int tid) {
    vlist_t *v = &g->vl;
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    const float *x = g->x, *y = g->y, *z = g->z;
    const uint32_t *ids = g->ids;
    float *sk = v->sk;
    const double per = 1.0 / (double)(v->age ? v->age : 1);
    double sum = 0.0;
    size_t cnt = 0;
    for (size_t i = lo; i < hi; i++) {
        size_t j = i;
        v->prev[i] = NO_ID;
        if (!v->hist) {
            sk[i] = -1.0f;
            continue;
        }
        if (v->use_ids) {
            if (ids == NULL || v->inv == NULL || ids[i] >= v->inv_cap) goto none;
            j = v->inv[ids[i]];
            if (j >= v->n || v->id0[j] != ids[i]) goto none;
        } else if (ids != NULL || i >= v->n) {
            goto none;
        }
        {
            double dx = (double)x[i] - (double)v->x0[j], dy = (double)y[i] - (double)v->y0[j];
            double dz = (double)z[i] - (double)v->z0[j];
            double vel = __builtin_sqrt(dx * dx + dy * dy + dz * dz) * per;
            if (!(vel < 1e30)) vel = 1e30;
            sk[i] = (float)vel;
            v->prev[i] = (uint32_t)j;
            sum += vel;
            cnt++;
            continue;
        }
    none:
        sk[i] = -1.0f;
    }
    t->vsum = sum, t->vcnt = cnt;
}

/* Rebuild, skins (par, input range): sk[i] becomes the skin, R[i] the
 * inflated radius (see the section comment). */
static void job_vl_skin(sp_grid_t *g, int tid) {
    vlist_t *v = &g->vl;
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    const float *r = g->r;
    float *sk = v->sk, *R = v->R;
    const double gk = (double)v->gain * VL_AGE, vmean = v->vsum;
    const double smax = (double)g->ts[0].s.rmax * 0.5;
    for (size_t i = lo; i < hi; i++) {
        double smin = (double)r[i] * (1.0 / 256.0) + 0x1p-40;
        double s = sk[i] >= 0.0f ? gk * (1.25 * (double)sk[i] + 0.25 * vmean) : gk * 1.5 * vmean;
        /* A sphere that turned (or bounced) since the last build shows a
         * short displacement: keep 3/4 of its previous skin. */
        if (v->prev) {
            uint32_t j = v->prev[i];
            if (j != NO_ID && (double)v->skin[j] * 0.75 > s) s = (double)v->skin[j] * 0.75;
        }
        s = s < smax ? s : smax;
        s = s > smin ? s : smin;
        sk[i] = (float)s;
        R[i] = r[i] + sk[i];
    }
}

/* Rebuild, store (par, input range): the build state of sphere i. */
static void job_vl_store(sp_grid_t *g, int tid) {
    vlist_t *v = &g->vl;
    size_t lo, hi;
    split(g->n, g->nt, tid, &lo, &hi);
    const float *x = g->x, *y = g->y, *z = g->z, *r = g->r, *sk = v->sk;
    for (size_t i = lo; i < hi; i++) {
        v->x0[i] = x[i], v->y0[i] = y[i], v->z0[i] = z[i], v->r0[i] = r[i];
        v->skin[i] = sk[i];
        double lim = (double)sk[i] * (1.0 - 0x1p-16) - (double)r[i] * 0x1p-16 - 0x1p-60;
        /* lim > 0 (skins >= 2^-8 r + 2^-40); the float is rounded down. */
        v->lim2[i] = (float)(lim * lim * (1.0 - 0x1p-20));
    }
    if (v->use_ids) memcpy(v->id0 + lo, g->ids + lo, (hi - lo) * sizeof *v->id0);
}

/* Filter (par, candidate range): each candidate tested with the exact rule
 * of grid.h on this call's values, without a branch on the outcome (hit
 * rates are ~1/3: a branch would mispredict often); see vl_fill() for the
 * records. */
static void vl_fill(const vlist_t *v, const uint32_t *hk, size_t nh, sp_pair_t *o);

static void job_vl_filter(sp_grid_t *g, int tid) {
    vlist_t *v = &g->vl;
    size_t lo, hi;
    split(v->nc, g->nt, tid, &lo, &hi);
    tslot_t *t = &g->ts[tid].s;
    t->buf.len = 0;
    t->nh = 0;
    t->candidates = hi - lo;
    enum { CHUNK = 2048, PF = 24 };
    t->err = pairbuf_reserve(g->alloc, &t->buf, hi - lo + 1);
    if (t->err == 0) t->err = hits_reserve(g->alloc, t, CHUNK + 1);
    if (t->err != 0) return;
    sp_pair_t *o = t->buf.p;
    const float *q = v->q;
    const uint32_t *ca = v->ca, *cb = v->cb;
    uint32_t *hk = t->hi;
    size_t np = 0;
    /* b is random in memory when the input order is random in space (q is
     * 16 MiB at 1M spheres): fetch its line PF candidates ahead (measured
     * at 1M: 35 -> 26 ms per reuse). The prefetch stops PF candidates
     * before hi, so cb is never read past the range. */
    size_t pf_end = hi > lo + PF ? hi - PF : lo;
    for (size_t c0 = lo; c0 < hi; c0 += CHUNK) {
        size_t c1 = hi - c0 > CHUNK ? c0 + CHUNK : hi, nh = 0;
        for (size_t k = c0; k < c1; k++) {
            if (SP_LIKELY(k < pf_end)) __builtin_prefetch(q + 4 * (size_t)cb[k + PF]);
            uint32_t a = ca[k], b = cb[k];
            const float *pa = q + 4 * (size_t)a, *pb = q + 4 * (size_t)b;
            float dx = pb[0] - pa[0], dy = pb[1] - pa[1], dz = pb[2] - pa[2];
            float d2 = dx * dx + dy * dy + dz * dz;
            float rs = pa[3] + pb[3];
            /* Only the candidate's index, at the cursor; the cursor moves on
             * a hit. The records follow per chunk, lines still cached. */
            hk[nh] = (uint32_t)k;
            nh += d2 < rs * rs;
        }
        vl_fill(v, hk, nh, o + np);
        np += nh;
    }
    t->buf.len = np;
}

/* The records of the filter's hits: candidate indices hk[0..nh), in
 * increasing order, written to o[0..nh) with the full pass's arithmetic.
 * d = p[b] - p[a] is what the full pass computes (it negates a - b exactly
 * when it met b first) and r[a] + r[b] commutes, so the records equal the
 * full pass's bit for bit; candidates are (a, b)-sorted, so thread buffers
 * concatenated in thread order are the (a, b)-sorted output. */
static void vl_fill(const vlist_t *v, const uint32_t *hk, size_t nh, sp_pair_t *o) {
    const float *q = v->q;
    const uint32_t *ca = v->ca, *cb = v->cb;
    for (size_t k = 0; k < nh; k++) {
        uint32_t a = ca[hk[k]], b = cb[hk[k]];
        const float *pa = q + 4 * (size_t)a, *pb = q + 4 * (size_t)b;
        float dx = pb[0] - pa[0], dy = pb[1] - pa[1], dz = pb[2] - pa[2];
        float d2 = dx * dx + dy * dy + dz * dz;
        pair_fill(&o[k], a, b, dx, dy, dz, d2);
    }
}

static int vl_grow(const sp_allocator_t *al, vlist_t *v, size_t n) {
    if (n <= v->cap) return 0;
    size_t nc = v->cap < 256 ? 256 : v->cap;
    while (nc < n) nc *= 2; /* n < 2^32: no overflow */
    size_t bytes;
    if (sp_size_mul(nc, 4, &bytes) != 0) return SP_EOVERFLOW;
    void *np[7];
    int k;
    for (k = 0; k < 7; k++) {
        np[k] = al->alloc(al->ctx, bytes, SP_CACHELINE);
        if (np[k] == NULL) break;
    }
    if (k < 7) {
        while (k-- > 0) al->free(al->ctx, np[k], bytes, SP_CACHELINE);
        return SP_ENOMEM;
    }
    uint8_t *mk = al->alloc(al->ctx, nc, SP_CACHELINE);
    if (mk == NULL) {
        for (k = 0; k < 7; k++) al->free(al->ctx, np[k], bytes, SP_CACHELINE);
        return SP_ENOMEM;
    }
    memset(mk, 0, nc);
    if (v->mark) al->free(al->ctx, v->mark, v->cap, SP_CACHELINE);
    v->mark = mk;
    v->na = 0;
    void **old[7] = {(void **)&v->x0, (void **)&v->y0, (void **)&v->z0, (void **)&v->r0,
                     (void **)&v->skin, (void **)&v->lim2, (void **)&v->id0};
    for (k = 0; k < 7; k++) {
        if (*old[k]) al->free(al->ctx, *old[k], v->cap * 4, SP_CACHELINE);
        *old[k] = np[k];
    }
    v->cap = nc;
    v->hist = 0; /* the previous build's state is gone */
    return 0;
}

/* The candidate arrays are one block: ca = block, cb = block + ccap. */
static int cand_reserve(const sp_allocator_t *al, vlist_t *v, size_t need) {
    if (need <= v->ccap && v->ca) return 0;
    size_t nc = v->ccap < 1024 ? 1024 : v->ccap, bytes;
    while (nc < need) {
        if (nc > SIZE_MAX / 16) return SP_EOVERFLOW;
        nc *= 2;
    }
    if (sp_size_mul(nc, 8, &bytes) != 0) return SP_EOVERFLOW;
    uint32_t *b = al->alloc(al->ctx, bytes, SP_CACHELINE);
    if (b == NULL) return SP_ENOMEM;
    if (v->ca) al->free(al->ctx, v->ca, v->ccap * 8, SP_CACHELINE);
    v->ca = b, v->cb = b + nc, v->ccap = nc, v->nc = 0;
    return 0;
}

/* Rebuild the list for this call (g->x.. set, validated, rmax in ts[0]).
 * Returns 0 (v->valid), 1 when the radii are too large for a list (the
 * caller runs the full pass), or an error; v->valid = 0 unless 0. */
static int vl_rebuild(sp_grid_t *g, sp_arena_t *scratch, size_t n, float rmax) {
    vlist_t *v = &g->vl;
    const sp_allocator_t *al = g->alloc;
    sp_arena_t *ar = scratch ? scratch : &g->own_arena;
    sp_arena_mark_t mark = sp_arena_mark(ar);
    int rc = SP_ENOMEM;
    v->valid = 0;
    v->sk = sp_arena_alloc_array(ar, n, sizeof(float), SP_CACHELINE);
    v->R = sp_arena_alloc_array(ar, n, sizeof(float), SP_CACHELINE);
    v->prev = sp_arena_alloc_array(ar, n, sizeof(uint32_t), SP_CACHELINE);
    if (v->sk == NULL || v->R == NULL || v->prev == NULL) goto out;

    /* Gain: did the previous list pay? (Not judged after a blind build.) */
    if (v->hist && !v->blind) {
        if (v->age <= 1) {
            v->gain = v->gain * 0.5f < 1.0f / 64 ? 1.0f / 64 : v->gain * 0.5f;
            if (v->gain == 1.0f / 64 && v->rebuilds % 16 == 15) v->gain = 1.0f;
        } else if (v->age >= 3) {
            v->gain = v->gain * 2.0f > 1.0f ? 1.0f : v->gain * 2.0f;
        }
    }
    if (v->gain == 0.0f) v->gain = 1.0f;
    v->rebuilds++;

    /* Velocities, through the previous build's ids when there were ids. */
    if (v->hist && v->use_ids && g->ids) {
        size_t need = 0;
        for (size_t j = 0; j < v->n; j++) need = v->id0[j] >= need ? (size_t)v->id0[j] + 1 : need;
        if (need <= 16 * (uint64_t)n + ((uint64_t)1 << 20)) {
            if (arr_reserve(al, (void **)&v->inv, &v->inv_cap, need, 4, 0, 0) != 0) goto out;
            for (size_t j = 0; j < v->n; j++) v->inv[v->id0[j]] = (uint32_t)j;
        } else {
            v->hist = 0;
        }
    }
    pool_run(g, job_vl_vel);
    double vsum = 0.0;
    size_t vcnt = 0;
    for (int t = 0; t < g->nt; t++) vsum += g->ts[t].s.vsum, vcnt += g->ts[t].s.vcnt;
    v->blind = vcnt == 0;
    v->vsum = vcnt ? vsum / (double)vcnt : 0.0; /* the mean, for job_vl_skin */
    g->ts[0].s.rmax = rmax;
    pool_run(g, job_vl_skin);
    float Rmax = 0.0f;
    for (size_t i = 0; i < n; i++) Rmax = v->R[i] > Rmax ? v->R[i] : Rmax;
    if (!(Rmax < 0x1p60f)) {
        rc = 1; /* radii too large for the list's error bound: no list */
        goto out;
    }

    const sp_pair_t *p;
    size_t np;
    /* The candidates: the kept-order pass on the inflated radii (measured
     * faster than the full pass here: between rebuilds few spheres change
     * its cells), (a, b) order. */
    const float *r = g->r;
    const int nt = g->nt;
    v->nc = 0;
    g->vl_cand = 1;
    rc = kept_pass(g, ar, g->x, g->y, g->z, v->R, g->ids, n, &p, &np);
    g->vl_cand = 0;
    /* The pass pointed g->r at the inflated radii (and set g->nt): the
     * store below must see the caller's radii. */
    g->r = r, g->nt = nt;
    if (rc == 0) rc = vl_grow(al, v, n);
    if (rc != 0) goto out;
    for (size_t k = 0; k < v->na; k++) v->mark[v->amem[k]] = 0; /* a new list: no patches */
    v->na = 0;
    v->vmean = v->vsum;
    v->use_ids = g->ids != NULL;
    pool_run(g, job_vl_store);
    v->n = n;
    v->hist = 1;
    v->age = 0;
    v->valid = 1;
    rc = 0;
out:
    sp_arena_rewind(ar, mark);
    v->sk = v->R = NULL;
    v->prev = NULL;
    return rc;
}

/* ------------------------------------------------------------ patches
 *
 * When few spheres break the list (the violators V: moved past lim, or a
 * radius grew), a call re-anchors them instead of rebuilding: each gets this
 * call's position and radius as its anchor and a new skin, its old
 * candidates are dropped and its new ones are found against the other
 * spheres' anchors, and the list is merged back in (a, b) order. The proof
 * in the section comment above never needs the anchors to date from one
 * call: a pair is a candidate when its two anchors overlap with inflated
 * radii, and a sphere within lim of its own anchor keeps it valid.
 *
 * The others' anchors are found through the kept-order pass's state of the
 * last rebuild (cells of edge h >= 2 max R over the build positions, with
 * R): a violator's new R is held below h / 2 / (1 + 2^-10), so its partners'
 * anchors lie in the 27 cells around its own. Spheres re-anchored since the
 * rebuild (the set A, marked) sit elsewhere than those cells say: they are
 * skipped there and tested directly against each violator (|V| |A| tests,
 * hence the bounds below). A patch is not tried (the call rebuilds) when
 * the kept state does not describe this n, when |V| > n/256 + 16 or
 * |A| + |V| > n/32 + 64, or when a violator left the kept box or its radius
 * alone needs bigger cells. Patches are serial (the caller's thread): they
 * cost O(|V| (27 cells + |A|) + candidates), the last for the merge. */

static inline size_t vl_patch_max(size_t n) { return n / 256 + 16; }

static int u64_cmp(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b;
}

static inline int np_push(const sp_allocator_t *al, vlist_t *v, uint32_t a, uint32_t b) {
    if (SP_UNLIKELY(v->np_len == v->np_cap)) {
        int rc = arr_reserve(al, (void **)&v->np_buf, &v->np_cap, v->np_len + 1, 8, v->np_len, 0);
        if (rc != 0) return rc;
    }
    v->np_buf[v->np_len++] = a < b ? ((uint64_t)a << 32) | b : ((uint64_t)b << 32) | a;
    return 0;
}

/* Re-anchor the nv violators listed in the threads' mv (ascending index).
 * Returns 0 (the list holds for this call), 1 when a patch does not apply
 * (nothing changed), or an error (then v->valid = 0: anchors have moved). */
static int vl_patch(sp_grid_t *g, size_t n, size_t nv, float rmax) {
    vlist_t *v = &g->vl;
    coh_t *c = &g->coh;
    const sp_allocator_t *al = g->alloc;
    if (!c->valid || c->n != n || nv > vl_patch_max(n) || v->na + nv > n / 32 + 64) return 1;
    const float *x = g->x, *y = g->y, *z = g->z, *r = g->r;
    const double hh = c->h * 0.5 / (1.0 + 0x1p-10); /* largest R a violator may take */
    if (arr_reserve(al, (void **)&v->amem, &v->acap, v->na + nv, 4, v->na, 0) != 0) return 1;
    uint32_t *vv = v->amem + v->na;
    size_t q = 0;
    for (int t = 0; t < g->nt; t++)
        for (size_t k = 0; k < g->ts[t].s.mv_len; k++) vv[q++] = (uint32_t)g->ts[t].s.mv[k];
    if (q != nv) return 1;
    for (size_t k = 0; k < nv; k++) {
        uint32_t a = vv[k];
        float p[3] = {x[a], y[a], z[a]};
        if (!coh_box_holds(c, p, p)) return 1;
        double smin = (double)r[a] * (1.0 / 256.0) + 0x1p-40;
        if (!((double)r[a] + smin * 1.001 < hh)) return 1;
    }
    /* From here on the list changes: errors drop it. */
    const double per = 1.0 / (double)(v->age ? v->age : 1), gk = (double)v->gain * VL_AGE;
    for (size_t k = 0; k < nv; k++) {
        uint32_t a = vv[k];
        double dx = (double)x[a] - v->x0[a], dy = (double)y[a] - v->y0[a], dz = (double)z[a] - v->z0[a];
        double vel = __builtin_sqrt(dx * dx + dy * dy + dz * dz) * per;
        double sk = gk * (1.25 * vel + 0.25 * v->vmean);
        if ((double)v->skin[a] * 0.75 > sk) sk = (double)v->skin[a] * 0.75;
        double smin = (double)r[a] * (1.0 / 256.0) + 0x1p-40, smax = (double)rmax * 0.5;
        if (smax > (hh - (double)r[a]) / 1.001) smax = (hh - (double)r[a]) / 1.001;
        sk = sk < smax ? sk : smax;
        sk = sk > smin ? sk : smin;
        v->x0[a] = x[a], v->y0[a] = y[a], v->z0[a] = z[a], v->r0[a] = r[a];
        v->skin[a] = (float)sk;
        double lim = (double)v->skin[a] * (1.0 - 0x1p-16) - (double)r[a] * 0x1p-16 - 0x1p-60;
        v->lim2[a] = (float)(lim * lim * (1.0 - 0x1p-20));
        v->mark[a] = 2;
    }
    /* New candidates of each violator: the build's test on anchors. */
    v->np_len = 0;
    const cset_t cs = c->cur;
    const uint32_t *start = c->start;
    const size_t NX = c->NX, NXY = c->NXY, na = v->na + nv;
    int rc = 0;
    for (size_t k = 0; k < nv && rc == 0; k++) {
        uint32_t a = vv[k];
        float xa = v->x0[a], ya = v->y0[a], za = v->z0[a], Ra = v->r0[a] + v->skin[a];
        size_t key = coh_key(c, xa, ya, za), iz = key / NXY;
        for (int ddz = -1; ddz <= 1 && rc == 0; ddz++) {
            if (ddz < 0 && iz == 0) continue;
            for (int ddy = -1; ddy <= 1 && rc == 0; ddy++)
                for (int ddx = -1; ddx <= 1 && rc == 0; ddx++) {
                    size_t cc = key + (size_t)((long)ddx + (long)NX * ddy + (long)NXY * ddz);
                    for (size_t j = start[cc]; j < start[cc + 1]; j++) {
                        uint32_t b = cs.sid[j];
                        if (v->mark[b]) continue; /* a itself, V and A: below */
                        float ex = cs.x[j] - xa, ey = cs.y[j] - ya, ez = cs.z[j] - za;
                        float d2 = ex * ex + ey * ey + ez * ez, rs = Ra + cs.r[j];
                        if (d2 < rs * rs && (rc = np_push(al, v, a, b)) != 0) break;
                    }
                }
        }
        for (size_t m = 0; m < na && rc == 0; m++) {
            uint32_t b = v->amem[m];
            if (b == a || (v->mark[b] == 2 && b < a)) continue; /* V x V once, from the lower */
            float ex = v->x0[b] - xa, ey = v->y0[b] - ya, ez = v->z0[b] - za;
            float d2 = ex * ex + ey * ey + ez * ez, rs = Ra + (v->r0[b] + v->skin[b]);
            if (d2 < rs * rs) rc = np_push(al, v, a, b);
        }
    }
    if (rc == 0 && v->np_len > 1) qsort(v->np_buf, v->np_len, sizeof *v->np_buf, u64_cmp);
    /* Merge: the old list without the violators' pairs, and the new ones. */
    size_t need = v->nc + v->np_len;
    if (rc == 0 && (need > v->ccap2 || v->ca2 == NULL)) {
        size_t nc2 = v->ccap2 < 1024 ? 1024 : v->ccap2, bytes;
        while (nc2 < need) nc2 *= 2; /* need < 2^40: no overflow */
        if (sp_size_mul(nc2, 8, &bytes) != 0) {
            rc = SP_EOVERFLOW;
        } else {
            uint32_t *b2 = al->alloc(al->ctx, bytes, SP_CACHELINE);
            if (b2 == NULL) {
                rc = SP_ENOMEM;
            } else {
                if (v->ca2) al->free(al->ctx, v->ca2, v->ccap2 * 8, SP_CACHELINE);
                v->ca2 = b2, v->ccap2 = nc2;
            }
        }
    }
    if (rc != 0) {
        for (size_t k = 0; k < nv; k++) v->mark[vv[k]] = 1;
        v->na += nv;
        v->valid = 0;
        return rc;
    }
    uint32_t *oa = v->ca2, *ob = v->ca2 + v->ccap2;
    const uint32_t *ia = v->ca, *ib = v->cb;
    const uint8_t *mk = v->mark;
    const uint64_t *nb = v->np_buf;
    size_t i = 0, j = 0, o = 0, nc = v->nc, nn = v->np_len;
    while (i < nc || j < nn) {
        if (i < nc && (mk[ia[i]] == 2 || mk[ib[i]] == 2)) {
            i++;
            continue;
        }
        uint64_t ko = i < nc ? ((uint64_t)ia[i] << 32) | ib[i] : UINT64_MAX;
        if (j < nn && nb[j] < ko) {
            oa[o] = (uint32_t)(nb[j] >> 32), ob[o] = (uint32_t)nb[j], o++, j++;
        } else {
            oa[o] = ia[i], ob[o] = ib[i], o++, i++;
        }
    }
    /* Swap the blocks (each 2 x its capacity: a's, then b's). */
    uint32_t *tb = v->ca;
    size_t tc = v->ccap;
    v->ca = v->ca2, v->cb = v->ca2 + v->ccap2, v->ccap = v->ccap2;
    v->ca2 = tb, v->ccap2 = tc;
    v->nc = o;
    for (size_t k = 0; k < nv; k++) v->mark[vv[k]] = 1;
    v->na += nv;
    return 0;
}

int sp_grid_find_pairs_coherent(sp_grid_t *g, sp_arena_t *scratch, const float *x, const float *y, const float *z,
                                const float *r, const uint32_t *ids, size_t n, const sp_pair_t **pairs,
                                size_t *npairs) {
    if (pairs) *pairs = NULL;
    if (npairs) *npairs = 0;
    if (g == NULL || pairs == NULL || npairs == NULL) return SP_EINVAL;
    if (n > 0 && (x == NULL || y == NULL || z == NULL || r == NULL)) return SP_EINVAL;
    if (n >= (size_t)UINT32_MAX - 1) return SP_EOVERFLOW;
    vlist_t *v = &g->vl;
    int nt = g->def.nthreads;
    size_t per = n / g->def.parallel_min;
    if ((size_t)nt > per) nt = per < 1 ? 1 : (int)per;
    g->x = x, g->y = y, g->z = z, g->r = r;
    g->n = n;
    g->nt = nt;
    g->order = SP_GRID_ORDER_AB;
    g->ids = ids;
    if (n == 0) {
        v->valid = 0;
        set_empty(g, 0, 1, pairs, npairs);
        return 0;
    }
    const sp_allocator_t *al = g->alloc;
    if (n > v->qcap) {
        /* q is 16 bytes per sphere; its contents need not survive. */
        size_t cap = v->qcap;
        int rc = arr_reserve(al, (void **)&v->q, &cap, n, 16, 0, 0);
        if (rc != 0) return rc;
        v->qcap = cap;
    }

    /* Room for the violators the check records (a patch's worth). */
    for (int t = 0; t < nt; t++) {
        tslot_t *ts = &g->ts[t].s;
        if (arr_reserve(al, (void **)&ts->mv, &ts->mv_cap, vl_patch_max(n), 8, 0, 0) != 0) return SP_ENOMEM;
    }
    /* Check: validation, validity, q. */
    /* Which entity sits at index i does not matter to the list (it holds
     * indices, and the check bounds each index's motion); ids only carry
     * the motion history to the next rebuild's skins. */
    v->cmp = v->valid && n == v->n;
    pool_run(g, job_vl_check);
    float rmin = INFINITY, rmax = -INFINITY, acc = 0.0f;
    size_t bad = 0;
    for (int t = 0; t < nt; t++) {
        const tslot_t *s = &g->ts[t].s;
        rmin = s->rmin < rmin ? s->rmin : rmin;
        rmax = s->rmax > rmax ? s->rmax : rmax;
        acc += s->nanacc;
        bad += s->csum;
    }
    if (acc != acc || !(rmin >= 0.0f)) return SP_EINVAL; /* the list stays as it was */
    if (n == 1 || rmax == 0.0f) {
        v->valid = 0;
        set_empty(g, n, nt, pairs, npairs);
        return 0;
    }
    int reuse = v->cmp && bad == 0;
    size_t patched = 0;
    sp_grid_stats_t bst;
    memset(&bst, 0, sizeof bst);
    if (!reuse && v->cmp) {
        int rc = vl_patch(g, n, bad, rmax);
        if (rc < 0) return rc;
        if (rc == 0) reuse = 1, patched = bad;
    }
    if (!reuse) {
        int rc = vl_rebuild(g, scratch, n, rmax);
        if (rc == 1) return find_pairs_full(g, scratch, x, y, z, r, n, SP_GRID_ORDER_AB, pairs, npairs);
        if (rc != 0) return rc;
        bst = g->stats; /* the rebuild's pass: cells, layout, scratch */
        g->x = x, g->y = y, g->z = z, g->r = r; /* the pass set g->r to the inflated radii */
        g->n = n, g->nt = nt, g->ids = ids;
    }
    v->age++;

    /* Filter, then the thread buffers in thread order. */
    pool_run(g, job_vl_filter);
    size_t total = 0;
    for (int t = 0; t < nt; t++) {
        if (g->ts[t].s.err) {
            v->valid = 0;
            return g->ts[t].s.err;
        }
        total += g->ts[t].s.buf.len;
    }
    const sp_pair_t *res = g->ts[0].s.buf.p;
    if (nt > 1 && total > 0) {
        g->out.len = 0;
        int rc = pairbuf_reserve(al, &g->out, total);
        if (rc != 0) {
            v->valid = 0;
            return rc;
        }
        pool_run(g, job_concat);
        g->out.len = total;
        res = g->out.p;
    }

    memset(&g->stats, 0, sizeof g->stats);
    g->stats.spheres = n;
    g->stats.pairs = total;
    g->stats.candidates = v->nc;
    g->stats.cells = bst.cells;
    g->stats.cell_size = bst.cell_size;
    g->stats.hashed = bst.hashed;
    g->stats.threads_used = nt;
    g->stats.scratch_bytes = bst.scratch_bytes;
    g->stats.coherent = reuse;
    g->stats.resorted = reuse ? 0 : n;
    g->stats.list_age = v->age;
    g->stats.list_candidates = v->nc;
    g->stats.list_patched = patched;
    *pairs = total ? res : NULL;
    *npairs = total;
    return 0;
}
