/* bench_grid.c: sphere broadphase, sp_grid against brute force and 2 vs 1 thread.
 *
 * Scene: N spheres of radius uniform in [0.5, 1.5], uniform in a cube sized
 * for ~1.5 overlapping neighbours per sphere: density rho = 1.5 / (4/3 pi
 * E[(r1 + r2)^3]) = 1.5 / (4/3 pi 9) ~ 0.0398 spheres per unit^3.
 *
 * Rows (figures are ms per full pair pass, lower is better):
 *   10k:  sp_grid 1 thread vs brute-force O(n^2) (plain loops, -O2); target >= 50x
 *   100k: sp_grid 2 threads vs sp_grid 1 thread
 *   1M:   sp_grid 2 threads vs sp_grid 1 thread
 *   moving 100k and 1M (issue 9): the coherent pass (Verlet list) vs the full
 *         pass vs a peer-style row-range grid, spheres in motion (see
 *         compare_moving())
 * SP_BENCH_GRID_MOVING=1 in the environment runs only the moving rows.
 * Self-check: every run compares its pair count and an (a, b) checksum with
 * the reference (brute force at 10k; the first 1-thread grid pass at 100k and
 * 1M, itself cross-checked against brute force on a 10k sub-scene at 10k),
 * and returns -1 on a mismatch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "spacesim/arena.h"
#include "spacesim/grid.h"

typedef struct scene {
    size_t n;
    float *x, *y, *z, *r;
} scene_t;

typedef struct result {
    size_t count;
    uint64_t sum; /* order-independent sum of mix(a, b) */
} result_t;

static uint64_t mix(uint64_t v) {
    v ^= v >> 30;
    v *= UINT64_C(0xBF58476D1CE4E5B9);
    v ^= v >> 27;
    v *= UINT64_C(0x94D049BB133111EB);
    return v ^ (v >> 31);
}

static scene_t make_scene(size_t n, uint64_t seed) {
    const double rho = 1.5 / (4.0 / 3.0 * M_PI * 9.0);
    float side = (float)cbrt((double)n / rho);
    scene_t s = {n, malloc(n * sizeof(float)), malloc(n * sizeof(float)), malloc(n * sizeof(float)),
                 malloc(n * sizeof(float))};
    if (!s.x || !s.y || !s.z || !s.r) sp_bench_fail("out of memory for %zu spheres", n);
    uint64_t st = seed;
    for (size_t i = 0; i < n; i++) {
        float u[4];
        for (int k = 0; k < 4; k++) u[k] = (float)(mix(st += UINT64_C(0x9E3779B97F4A7C15)) >> 40) / 16777216.0f;
        s.x[i] = u[0] * side, s.y[i] = u[1] * side, s.z[i] = u[2] * side;
        s.r[i] = 0.5f + u[3];
    }
    return s;
}

/* ------------------------------------------------------------ brute force */

/* The O(n^2) reference with the overlap rule of grid.h, storing pairs as
 * the grid does (so the comparison includes the output cost). */
typedef struct brute_ctx {
    const scene_t *s;
    sp_pair_t *out;
    size_t cap;
    result_t want;
} brute_ctx_t;

static result_t brute_pass(brute_ctx_t *c) {
    const scene_t *s = c->s;
    size_t np = 0;
    for (size_t a = 0; a < s->n; a++) {
        float xa = s->x[a], ya = s->y[a], za = s->z[a], ra = s->r[a];
        for (size_t b = a + 1; b < s->n; b++) {
            float dx = s->x[b] - xa, dy = s->y[b] - ya, dz = s->z[b] - za;
            float d2 = dx * dx + dy * dy + dz * dz;
            float rs = ra + s->r[b];
            if (d2 < rs * rs) {
                if (np == c->cap) sp_bench_fail("brute pair buffer too small");
                sp_pair_t *p = &c->out[np++];
                p->a = (uint32_t)a, p->b = (uint32_t)b;
                float d = sqrtf(d2);
                p->dist = d;
                float inv = d > 0 ? 1.0f / d : 0.0f;
                p->nx = d > 0 ? dx * inv : 1.0f, p->ny = dy * inv, p->nz = dz * inv;
            }
        }
    }
    result_t r = {np, 0};
    for (size_t k = 0; k < np; k++) r.sum += mix(((uint64_t)c->out[k].a << 32) | c->out[k].b);
    return r;
}

static double run_brute(void *arg) {
    brute_ctx_t *c = arg;
    uint64_t t0 = sp_bench_now_ns();
    result_t r = brute_pass(c);
    uint64_t t1 = sp_bench_now_ns();
    SP_BENCH_KEEP(c->out);
    if (r.count != c->want.count || r.sum != c->want.sum) return -1.0;
    return (double)(t1 - t0) / 1e6;
}

/* ------------------------------------------------------------------ grid */

typedef struct grid_ctx {
    const scene_t *s;
    sp_grid_t *g;
    sp_arena_t arena;
    int passes; /* per measured run */
    result_t want;
} grid_ctx_t;

static int grid_pass(grid_ctx_t *c, result_t *out) {
    const sp_pair_t *p;
    size_t np;
    int rc = sp_grid_find_pairs(c->g, &c->arena, c->s->x, c->s->y, c->s->z, c->s->r, c->s->n, &p, &np);
    if (rc != 0) return rc;
    result_t r = {np, 0};
    for (size_t k = 0; k < np; k++) {
        if (k > 0 && (p[k - 1].a > p[k].a || (p[k - 1].a == p[k].a && p[k - 1].b >= p[k].b))) return -100;
        r.sum += mix(((uint64_t)p[k].a << 32) | p[k].b);
    }
    *out = r;
    return 0;
}

static double run_grid(void *arg) {
    grid_ctx_t *c = arg;
    result_t r = {0, 0};
    uint64_t total = 0;
    for (int k = 0; k < c->passes; k++) {
        uint64_t t0 = sp_bench_now_ns();
        const sp_pair_t *p;
        size_t np;
        int rc = sp_grid_find_pairs(c->g, &c->arena, c->s->x, c->s->y, c->s->z, c->s->r, c->s->n, &p, &np);
        uint64_t t1 = sp_bench_now_ns();
        if (rc != 0) return -1.0;
        total += t1 - t0;
        SP_BENCH_KEEP(p);
    }
    /* Check the last pass's pairs outside the timed region. */
    if (grid_pass(c, &r) != 0) return -1.0;
    if (r.count != c->want.count || r.sum != c->want.sum) return -1.0;
    return (double)total / 1e6 / c->passes;
}

static void grid_init(grid_ctx_t *c, const scene_t *s, int nthreads, int passes) {
    memset(c, 0, sizeof *c);
    c->s = s;
    c->passes = passes;
    sp_grid_def_t d = sp_grid_def_default();
    d.nthreads = nthreads;
    int rc = sp_grid_create(&d, &c->g);
    if (rc != 0) sp_bench_fail("sp_grid_create: %s", sp_strerror(rc));
    sp_arena_init(&c->arena, 0, NULL);
}

static void grid_destroy(grid_ctx_t *c) {
    sp_grid_free(c->g);
    sp_arena_destroy(&c->arena);
}

static void print_scene(const char *what, const scene_t *s, const grid_ctx_t *c) {
    sp_grid_stats_t st;
    sp_grid_stats(c->g, &st);
    printf("%s: %zu spheres, %zu pairs (%.2f overlapping neighbours each), %zu candidates, %zu cells%s, "
           "threads %d, scratch %.1f MiB\n",
           what, s->n, st.pairs, 2.0 * (double)st.pairs / (double)s->n, st.candidates, st.cells,
           st.hashed ? " (hashed)" : "", st.threads_used, (double)st.scratch_bytes / 1048576.0);
}

/* 2 threads vs 1 thread at size n. */
static void compare_threads(size_t n, uint64_t seed, int passes) {
    scene_t s = make_scene(n, seed);
    grid_ctx_t g1, g2;
    grid_init(&g1, &s, 1, passes);
    grid_init(&g2, &s, 2, passes);
    result_t r1, r2;
    if (grid_pass(&g1, &r1) != 0 || grid_pass(&g2, &r2) != 0) sp_bench_fail("grid pass failed at %zu", n);
    if (r1.count != r2.count || r1.sum != r2.sum) sp_bench_fail("1 and 2 threads disagree at %zu", n);
    g1.want = g2.want = r1;
    char title[64];
    snprintf(title, sizeof title, "scene %zuk", n / 1000);
    print_scene(title, &s, &g2);
    char n1[64], n2[64];
    snprintf(n1, sizeof n1, "sp_grid %zuk 1 thread", n / 1000);
    snprintf(n2, sizeof n2, "sp_grid %zuk 2 threads", n / 1000);
    sp_bench_row_t rows[] = {
        {.name = n2, .unit = "ms/pass", .higher_is_better = 0, .two_thread = 1, .fn = run_grid, .arg = &g2},
        {.name = n1, .unit = "ms/pass", .higher_is_better = 0, .two_thread = 0, .fn = run_grid, .arg = &g1},
    };
    sp_bench_run(rows, 2);
    printf("%s: %.3f ms/pass median (min %.3f, max %.3f)\n", n1, sp_bench_median(&rows[1]), sp_bench_min(&rows[1]),
           sp_bench_max(&rows[1]));
    sp_bench_report(&rows[0], &rows[1]);
    grid_destroy(&g1);
    grid_destroy(&g2);
    free(s.x), free(s.y), free(s.z), free(s.r);
}

/* ------------------------------------------------- moving scenes (issue 9)
 *
 * The scene of make_scene() in motion: sphere i at tick t sits at
 * fold(p0 + v t), a triangle wave that reflects at the cube's faces, computed
 * in double from (p0, v, t) so every row sees bit-identical positions for a
 * tick whatever it ran before. Speeds are uniform in [-vmax, vmax] per axis
 * with vmax = 0.04 units per tick: ~2% of the spheres change cell per tick at
 * the automatic cell edge (~3 units). Input order stays random in space (as
 * the world's slot order is).
 *
 * Rows, each advancing its own tick counter by `passes` ticks per run (only
 * the pair call is timed; moving the spheres and checking are not). A run's
 * figure is its total over its ticks: for the coherent row that includes
 * the list's rebuilds (about one per 9 ticks here), so runs are kept long
 * enough (18-36 ticks) to hold some; a run of a few ticks would mostly
 * measure reuses and flatter it:
 *   coherent   sp_grid_find_pairs_coherent(): its Verlet list, rebuilt when
 *              the motion breaks it (a warm-up tick before the first run;
 *              each run's ticks include its rebuilds)
 *   full       sp_grid_find_pairs(), the full pass (counting sort every tick)
 *   row grid   a peer-style simple grid written plainly below
 *              (row_grid_pass(): radix sort by cell key each call, rows of
 *              cells scanned as ranges, scalar test, pairs unsorted)
 * Self-check: each tick's pair count and (a, b) checksum must equal the first
 * row's to reach that tick (a table indexed by tick). */

#define MAX_TICKS 4096

typedef struct motion {
    size_t n;
    float side;
    float *x0, *y0, *z0, *vx, *vy, *vz, *r;
    result_t want[MAX_TICKS];
    unsigned char have[MAX_TICKS];
} motion_t;

static float fold(float p0, float v, long t, float side) {
    double u = fmod((double)p0 + (double)v * (double)t, 2.0 * side);
    if (u < 0) u += 2.0 * side;
    return (float)(u <= side ? u : 2.0 * side - u);
}

typedef struct mrow {
    motion_t *m;
    float *x, *y, *z;
    long tick;
    int passes;
    int kind; /* 0 coherent, 1 full, 2 peer row grid */
    sp_grid_t *g;
    sp_arena_t arena;
    /* peer row grid */
    uint64_t *kv, *kv2;
    uint32_t *cstart, *sid;
    float *sx, *sy, *sz, *sr;
    size_t ccap;
    sp_pair_t *out;
    size_t cap;
} mrow_t;

static void mrow_place(mrow_t *w, long t) {
    const motion_t *m = w->m;
    for (size_t i = 0; i < m->n; i++) {
        w->x[i] = fold(m->x0[i], m->vx[i], t, m->side);
        w->y[i] = fold(m->y0[i], m->vy[i], t, m->side);
        w->z[i] = fold(m->z0[i], m->vz[i], t, m->side);
    }
}

/* The peer-style simple grid (what a plain engine broadphase does, written
 * plainly here, scalar): every call, cell edge 2 rmax (1 + 2^-10) over the
 * bounding box; each sphere's cell key (ix + NX (iy + NY iz)) sorted with the
 * sphere index by an LSD radix sort (11-bit digits); cell starts from the
 * sorted keys; spheres copied in key order; then each sphere scans the rows
 * of its half shell as ranges of the sorted array: cells ix-1..ix+1 of rows
 * (iy, iz) (own row: only after the sphere), (iy+1, iz), (iy-1..iy+1, iz+1).
 * Pairs are stored with a < b (input indices) in sweep order, unsorted. */
static size_t row_grid_pass(mrow_t *w) {
    const motion_t *m = w->m;
    const size_t n = m->n;
    const float *x = w->x, *y = w->y, *z = w->z, *r = m->r;
    float mn[3] = {x[0], y[0], z[0]}, mx[3] = {x[0], y[0], z[0]}, rmax = 0;
    for (size_t i = 0; i < n; i++) {
        float v[3] = {x[i], y[i], z[i]};
        for (int k = 0; k < 3; k++) mn[k] = v[k] < mn[k] ? v[k] : mn[k], mx[k] = v[k] > mx[k] ? v[k] : mx[k];
        rmax = r[i] > rmax ? r[i] : rmax;
    }
    double inv_h = 1.0 / (2.0 * (double)rmax * (1.0 + 1.0 / 1024.0));
    size_t d[3];
    for (int k = 0; k < 3; k++) d[k] = (size_t)(((double)mx[k] - mn[k]) * inv_h) + 1;
    /* One empty cell/row/slab of padding on every side keeps ranges in bounds. */
    const size_t NX = d[0] + 2, NY = d[1] + 2, NZ = d[2] + 2, ncells = NX * NY * NZ;
    if (ncells + 1 > w->ccap) sp_bench_fail("row grid: %zu cells", ncells);
    uint64_t *kv = w->kv, *tmp = w->kv2;
    for (size_t i = 0; i < n; i++) {
        size_t ix = (size_t)(((double)x[i] - mn[0]) * inv_h) + 1, iy = (size_t)(((double)y[i] - mn[1]) * inv_h) + 1;
        size_t iz = (size_t)(((double)z[i] - mn[2]) * inv_h) + 1;
        kv[i] = ((uint64_t)(ix + NX * (iy + NY * iz)) << 32) | i;
    }
    unsigned bits = 1;
    while (((size_t)1 << bits) < ncells) bits++;
    for (unsigned sh = 0; sh < bits; sh += 11) {
        size_t cnt[2048] = {0};
        for (size_t i = 0; i < n; i++) cnt[(kv[i] >> (32 + sh)) & 2047]++;
        size_t run = 0;
        for (int q = 0; q < 2048; q++) {
            size_t v = cnt[q];
            cnt[q] = run;
            run += v;
        }
        for (size_t i = 0; i < n; i++) tmp[cnt[(kv[i] >> (32 + sh)) & 2047]++] = kv[i];
        uint64_t *t = kv;
        kv = tmp, tmp = t;
    }
    uint32_t *start = w->cstart;
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)(kv[i] >> 32);
        while (c <= k) start[c++] = (uint32_t)i;
        uint32_t id = (uint32_t)kv[i];
        w->sx[i] = x[id], w->sy[i] = y[id], w->sz[i] = z[id], w->sr[i] = r[id], w->sid[i] = id;
    }
    while (c <= ncells) start[c++] = (uint32_t)n;
    size_t np = 0;
    const long rows[4][2] = {{1, 0}, {-1, 1}, {0, 1}, {1, 1}}; /* (dy, dz) */
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)(kv[i] >> 32);
        float xi = w->sx[i], yi = w->sy[i], zi = w->sz[i], ri = w->sr[i];
        for (int q = -1; q < 4; q++) {
            size_t jb, je;
            if (q < 0) {
                jb = i + 1, je = start[k + 2];
            } else {
                size_t rc = k + (size_t)((long)NX * rows[q][0] + (long)(NX * NY) * rows[q][1]);
                jb = start[rc - 1], je = start[rc + 2];
            }
            for (size_t j = jb; j < je; j++) {
                float dx = w->sx[j] - xi, dy = w->sy[j] - yi, dz = w->sz[j] - zi;
                float d2 = dx * dx + dy * dy + dz * dz, rs = ri + w->sr[j];
                if (!(d2 < rs * rs)) continue;
                if (np == w->cap) sp_bench_fail("row grid pair buffer too small");
                uint32_t a = w->sid[i], b = w->sid[j];
                if (a > b) {
                    uint32_t t = a;
                    a = b, b = t;
                    dx = -dx, dy = -dy, dz = -dz;
                }
                sp_pair_t *p = &w->out[np++];
                p->a = a, p->b = b;
                float dd = sqrtf(d2), inv = dd > 0 ? 1.0f / dd : 0.0f;
                p->dist = dd;
                p->nx = dd > 0 ? dx * inv : 1.0f, p->ny = dy * inv, p->nz = dz * inv;
            }
        }
    }
    return np;
}

/* One tick of row w: returns the pair call's ns, or -1 on a failed check. */
static double mrow_tick(mrow_t *w) {
    motion_t *m = w->m;
    long t = w->tick++;
    if (t >= MAX_TICKS) sp_bench_fail("more than %d ticks", MAX_TICKS);
    mrow_place(w, t);
    const sp_pair_t *p = NULL;
    size_t np = 0;
    uint64_t t0 = sp_bench_now_ns();
    if (w->kind == 0) {
        if (sp_grid_find_pairs_coherent(w->g, &w->arena, w->x, w->y, w->z, m->r, NULL, m->n, &p, &np) != 0) return -1;
    } else if (w->kind == 1) {
        if (sp_grid_find_pairs(w->g, &w->arena, w->x, w->y, w->z, m->r, m->n, &p, &np) != 0) return -1;
    } else {
        np = row_grid_pass(w);
        p = w->out;
    }
    uint64_t t1 = sp_bench_now_ns();
    result_t res = {np, 0};
    for (size_t k = 0; k < np; k++) res.sum += mix(((uint64_t)p[k].a << 32) | p[k].b);
    if (!m->have[t]) {
        m->want[t] = res;
        m->have[t] = 1;
    } else if (m->want[t].count != res.count || m->want[t].sum != res.sum) {
        return -1;
    }
    return (double)(t1 - t0);
}

static double run_mrow(void *arg) {
    mrow_t *w = arg;
    double total = 0;
    for (int k = 0; k < w->passes; k++) {
        double ns = mrow_tick(w);
        if (ns < 0) return -1.0;
        total += ns;
    }
    return total / 1e6 / w->passes;
}

static void mrow_init(mrow_t *w, motion_t *m, int kind, int nthreads, int passes) {
    memset(w, 0, sizeof *w);
    w->m = m, w->kind = kind, w->passes = passes;
    w->x = malloc(m->n * sizeof(float)), w->y = malloc(m->n * sizeof(float)), w->z = malloc(m->n * sizeof(float));
    if (!w->x || !w->y || !w->z) sp_bench_fail("out of memory");
    sp_arena_init(&w->arena, 0, NULL);
    if (kind < 2) {
        sp_grid_def_t d = sp_grid_def_default();
        d.nthreads = nthreads;
        int rc = sp_grid_create(&d, &w->g);
        if (rc != 0) sp_bench_fail("sp_grid_create: %s", sp_strerror(rc));
    } else {
        size_t n = m->n;
        w->kv = malloc(n * 8), w->kv2 = malloc(n * 8), w->sid = malloc(n * 4);
        w->sx = malloc(n * 4), w->sy = malloc(n * 4), w->sz = malloc(n * 4), w->sr = malloc(n * 4);
        w->ccap = 8 * n + 4096; /* the cube holds ~n/1.1 cells of edge 3 plus padding */
        w->cstart = malloc(w->ccap * 4);
        w->cap = 4 * n;
        w->out = malloc(w->cap * sizeof *w->out);
        if (!w->kv || !w->kv2 || !w->sid || !w->sx || !w->sy || !w->sz || !w->sr || !w->cstart || !w->out)
            sp_bench_fail("out of memory");
    }
    if (mrow_tick(w) < 0) sp_bench_fail("warm-up tick disagrees"); /* warm-up, not timed */
}

static void mrow_destroy(mrow_t *w) {
    sp_grid_free(w->g);
    sp_arena_destroy(&w->arena);
    free(w->x), free(w->y), free(w->z), free(w->out);
    free(w->kv), free(w->kv2), free(w->sid), free(w->cstart), free(w->sx), free(w->sy), free(w->sz), free(w->sr);
}

static void compare_moving(size_t n, uint64_t seed, int passes) {
    motion_t *m = calloc(1, sizeof *m);
    if (!m) sp_bench_fail("out of memory");
    scene_t s = make_scene(n, seed);
    m->n = n;
    m->side = (float)cbrt((double)n / (1.5 / (4.0 / 3.0 * M_PI * 9.0)));
    m->x0 = s.x, m->y0 = s.y, m->z0 = s.z, m->r = s.r;
    m->vx = malloc(n * sizeof(float)), m->vy = malloc(n * sizeof(float)), m->vz = malloc(n * sizeof(float));
    if (!m->vx || !m->vy || !m->vz) sp_bench_fail("out of memory");
    uint64_t st = seed * 1000003;
    const float vmax = 0.04f;
    for (size_t i = 0; i < n; i++) {
        float *v[3] = {&m->vx[i], &m->vy[i], &m->vz[i]};
        for (int k = 0; k < 3; k++)
            *v[k] = vmax * (2.0f * (float)(mix(st += UINT64_C(0x9E3779B97F4A7C15)) >> 40) / 16777216.0f - 1.0f);
    }
    mrow_t rows_ctx[5];
    mrow_init(&rows_ctx[0], m, 0, 2, passes);
    mrow_init(&rows_ctx[1], m, 0, 1, passes);
    mrow_init(&rows_ctx[2], m, 1, 2, passes);
    mrow_init(&rows_ctx[3], m, 1, 1, passes);
    mrow_init(&rows_ctx[4], m, 2, 1, passes);
    /* The coherent row's list over 24 ticks (not timed). */
    {
        unsigned long rebuilt = 0, ticks = 24;
        sp_grid_stats_t gs;
        for (unsigned long k = 0; k < ticks; k++) {
            if (mrow_tick(&rows_ctx[1]) < 0) sp_bench_fail("coherent tick disagrees");
            sp_grid_stats(rows_ctx[1].g, &gs);
            rebuilt += !gs.coherent;
        }
        printf("moving %zuk: %zu pairs, list %zu candidates (%.2fx the pairs), rebuilt %lu of %lu ticks\n", n / 1000,
               gs.pairs, gs.list_candidates, (double)gs.list_candidates / (double)gs.pairs, rebuilt, ticks);
    }
    char nm[5][64];
    const char *what[5] = {"coherent 2 threads", "coherent 1 thread", "full pass 2 threads", "full pass 1 thread",
                           "peer row grid 1 thread"};
    sp_bench_row_t rows[5];
    for (int k = 0; k < 5; k++) {
        snprintf(nm[k], sizeof nm[k], "moving %zuk %s", n / 1000, what[k]);
        rows[k] = (sp_bench_row_t){.name = nm[k], .unit = "ms/pass", .two_thread = k == 0 || k == 2,
                                   .fn = run_mrow, .arg = &rows_ctx[k]};
    }
    sp_bench_run(rows, 5);
    sp_bench_report(&rows[1], &rows[3]); /* coherent vs today's pass, 1 thread */
    sp_bench_report(&rows[0], &rows[2]); /* same, 2 threads */
    sp_bench_report(&rows[1], &rows[4]); /* coherent vs the peer-style grid */
    sp_bench_report(&rows[3], &rows[4]); /* the full pass vs the peer-style grid */
    for (int k = 0; k < 5; k++) mrow_destroy(&rows_ctx[k]);
    free(m->vx), free(m->vy), free(m->vz);
    free(s.x), free(s.y), free(s.z), free(s.r);
    free(m);
}

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "grid (sphere broadphase)");
    int quick = sp_bench_quick();
    const char *only = getenv("SP_BENCH_GRID_MOVING");
    if (only && *only == '1') {
        compare_moving(100000, 4, quick ? 18 : 36);
        compare_moving(1000000, 5, quick ? 9 : 18);
        return sp_bench_finish();
    }

    /* 10k: grid (1 thread) vs brute force, same pair set. */
    {
        scene_t s = make_scene(10000, 1);
        brute_ctx_t b = {&s, NULL, 1 << 20, {0, 0}};
        b.out = malloc(b.cap * sizeof *b.out);
        if (!b.out) sp_bench_fail("out of memory");
        b.want = brute_pass(&b);
        grid_ctx_t g;
        grid_init(&g, &s, 1, 20);
        g.want = b.want;
        result_t r;
        if (grid_pass(&g, &r) != 0 || r.count != b.want.count || r.sum != b.want.sum)
            sp_bench_fail("grid and brute force disagree at 10k: %zu vs %zu pairs", r.count, b.want.count);
        print_scene("scene 10k", &s, &g);
        sp_bench_row_t rows[] = {
            {.name = "sp_grid 10k 1 thread", .unit = "ms/pass", .fn = run_grid, .arg = &g},
            {.name = "brute force O(n^2) 10k", .unit = "ms/pass", .fn = run_brute, .arg = &b},
        };
        sp_bench_run(rows, 2);
        sp_bench_report(&rows[0], &rows[1]);
        grid_destroy(&g);
        free(b.out);
        free(s.x), free(s.y), free(s.z), free(s.r);
    }

    compare_threads(100000, 2, quick ? 5 : 10);
    compare_threads(1000000, 3, quick ? 1 : 3);
    compare_moving(100000, 4, quick ? 18 : 36);
    compare_moving(1000000, 5, quick ? 9 : 18);
    return sp_bench_finish();
}
