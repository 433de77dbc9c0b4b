/* check_grid.c: the sphere broadphase against a brute-force O(n^2) reference.
 *
 * The reference below is written straight from the overlap rule in grid.h
 * (a < b, d = p[b] - p[a], d2 < (r[a] + r[b])^2 in float) and shares no code
 * with the library. Every comparison asserts the exact pair sequence (sorted
 * by (a, b), so "each pair exactly once" is strict monotonicity) and the
 * distance and normal within 1e-5. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "helpers/sp_alloc.h"
#include "helpers/sp_check.h"
#include "spacesim/arena.h"
#include "spacesim/grid.h"

/* ------------------------------------------------------------ helpers */

typedef struct scene {
    size_t n;
    float *x, *y, *z, *r;
} scene_t;

static uint64_t rng_state;
static uint64_t rng_next(void) {
    uint64_t v = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    v = (v ^ (v >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    v = (v ^ (v >> 27)) * UINT64_C(0x94D049BB133111EB);
    return v ^ (v >> 31);
}
static float rng_unit(void) { return (float)(rng_next() >> 40) / 16777216.0f; }
static float rng_range(float lo, float hi) { return lo + (hi - lo) * rng_unit(); }

static scene_t scene_alloc(size_t n) {
    scene_t s;
    s.n = n;
    s.x = calloc(n + 1, sizeof(float));
    s.y = calloc(n + 1, sizeof(float));
    s.z = calloc(n + 1, sizeof(float));
    s.r = calloc(n + 1, sizeof(float));
    ck_assert(s.x && s.y && s.z && s.r);
    return s;
}

static void scene_free(scene_t *s) {
    free(s->x), free(s->y), free(s->z), free(s->r);
    memset(s, 0, sizeof *s);
}

/* n spheres uniformly in a cube of edge `side` centred at (cx, cy, cz), radii
 * uniform in [rlo, rhi]. */
static scene_t scene_random(uint64_t seed, size_t n, float side, float rlo, float rhi, float c) {
    rng_state = seed;
    scene_t s = scene_alloc(n);
    for (size_t i = 0; i < n; i++) {
        s.x[i] = c + rng_range(-side / 2, side / 2);
        s.y[i] = c + rng_range(-side / 2, side / 2);
        s.z[i] = c + rng_range(-side / 2, side / 2);
        s.r[i] = rng_range(rlo, rhi);
    }
    return s;
}

typedef struct pairlist {
    sp_pair_t *p;
    size_t n, cap;
} pairlist_t;

static void pl_push(pairlist_t *l, sp_pair_t v) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->p = realloc(l->p, l->cap * sizeof *l->p);
        ck_assert_ptr_nonnull(l->p);
    }
    l->p[l->n++] = v;
}

/* The O(n^2) reference, in (a, b) order. */
static pairlist_t brute(const scene_t *s) {
    pairlist_t l = {0};
    for (size_t a = 0; a < s->n; a++) {
        for (size_t b = a + 1; b < s->n; b++) {
            float dx = s->x[b] - s->x[a], dy = s->y[b] - s->y[a], dz = s->z[b] - s->z[a];
            float d2 = dx * dx + dy * dy + dz * dz;
            float rs = s->r[a] + s->r[b];
            if (d2 < rs * rs) {
                sp_pair_t p = {(uint32_t)a, (uint32_t)b, 0, 1, 0, 0};
                if (d2 > 0) {
                    p.dist = sqrtf(d2);
                    p.nx = dx / p.dist, p.ny = dy / p.dist, p.nz = dz / p.dist;
                }
                pl_push(&l, p);
            }
        }
    }
    return l;
}

static int pair_cmp(const void *pa, const void *pb) {
    const sp_pair_t *a = pa, *b = pb;
    if (a->a != b->a) return a->a < b->a ? -1 : 1;
    if (a->b != b->b) return a->b < b->b ? -1 : 1;
    return 0;
}

/* Assert got[0..ng) equals the reference exactly as a sequence. */
static void assert_same_pairs(const sp_pair_t *got, size_t ng, const pairlist_t *ref) {
    ck_assert_uint_eq(ng, ref->n);
    for (size_t k = 0; k < ng; k++) {
        const sp_pair_t *g = &got[k], *w = &ref->p[k];
        if (g->a != w->a || g->b != w->b)
            ck_abort_msg("pair %zu: got (%u,%u) want (%u,%u)", k, g->a, g->b, w->a, w->b);
        ck_assert_uint_lt(g->a, g->b);
        if (k > 0) ck_assert_int_lt(pair_cmp(&got[k - 1], g), 0); /* once, sorted */
        ck_assert_float_eq_tol(g->dist, w->dist, 1e-5f);
        ck_assert_float_eq_tol(g->nx, w->nx, 1e-5f);
        ck_assert_float_eq_tol(g->ny, w->ny, 1e-5f);
        ck_assert_float_eq_tol(g->nz, w->nz, 1e-5f);
    }
}

/* Run the grid with def on s; return a malloc'd copy of its pairs. */
static sp_pair_t *run_grid(const sp_grid_def_t *def, const scene_t *s, sp_arena_t *ar, size_t *np,
                           sp_grid_stats_t *st) {
    sp_grid_t *g = NULL;
    ck_assert_int_eq(sp_grid_create(def, &g), 0);
    const sp_pair_t *p = NULL;
    ck_assert_int_eq(sp_grid_find_pairs(g, ar, s->x, s->y, s->z, s->r, s->n, &p, np), 0);
    sp_pair_t *copy = malloc((*np + 1) * sizeof *copy);
    ck_assert_ptr_nonnull(copy);
    if (*np) {
        ck_assert_ptr_nonnull(p);
        memcpy(copy, p, *np * sizeof *copy);
    } else {
        ck_assert_ptr_null(p);
    }
    if (st) sp_grid_stats(g, st);
    sp_grid_free(g);
    return copy;
}

/* Compare one configuration against brute force on s. */
static void check_against_brute(const sp_grid_def_t *def, const scene_t *s, sp_grid_stats_t *st) {
    pairlist_t ref = brute(s);
    sp_arena_t ar;
    sp_arena_init(&ar, 0, NULL);
    size_t np;
    sp_pair_t *got = run_grid(def, s, &ar, &np, st);
    if (def->order == SP_GRID_ORDER_CELL) qsort(got, np, sizeof *got, pair_cmp);
    assert_same_pairs(got, np, &ref);
    ck_assert_uint_eq(sp_arena_used(&ar), 0); /* scratch was rewound */
    sp_arena_destroy(&ar);
    free(got);
    free(ref.p);
}

static sp_grid_def_t def_threads(int nt) {
    sp_grid_def_t d = sp_grid_def_default();
    d.nthreads = nt;
    d.parallel_min = 1; /* every thread takes part even for tiny inputs */
    return d;
}

/* Scenes: (n, side, rlo, rhi). Dense: ~tens of neighbours; sparse: ~0.1. */
static const struct {
    size_t n;
    float side, rlo, rhi;
} SCENES[] = {
    {2, 1.0f, 0.5f, 0.5f},     {17, 4.0f, 0.1f, 1.0f},    {500, 10.0f, 0.5f, 1.5f},
    {1000, 60.0f, 0.5f, 1.5f}, {2000, 25.0f, 0.5f, 1.5f}, {3000, 200.0f, 0.01f, 3.0f},
    {2500, 15.0f, 0.0f, 0.6f}, {3000, 40.0f, 0.05f, 0.1f},
};
#define NSCENES (sizeof SCENES / sizeof SCENES[0])

/* -------------------------------------------------------------- tests */

START_TEST(test_grid_random_scenes_match_brute_force_one_thread) {
    for (uint64_t seed = 1; seed <= 3; seed++) {
        scene_t s = scene_random(seed * 7919 + (uint64_t)_i, SCENES[_i].n, SCENES[_i].side, SCENES[_i].rlo,
                                 SCENES[_i].rhi, 0.0f);
        sp_grid_def_t d = def_threads(1);
        sp_grid_stats_t st;
        check_against_brute(&d, &s, &st);
        ck_assert_int_eq(st.threads_used, 1);
        scene_free(&s);
    }
}
END_TEST

START_TEST(test_grid_random_scenes_match_brute_force_two_threads) {
    for (uint64_t seed = 11; seed <= 12; seed++) {
        scene_t s = scene_random(seed * 104729 + (uint64_t)_i, SCENES[_i].n, SCENES[_i].side, SCENES[_i].rlo,
                                 SCENES[_i].rhi, -3.0f);
        sp_grid_def_t d = def_threads(2);
        sp_grid_stats_t st;
        check_against_brute(&d, &s, &st);
        ck_assert_int_eq(st.threads_used, 2);
        scene_free(&s);
    }
}
END_TEST

START_TEST(test_grid_hash_mode_matches_brute_force) {
    scene_t s = scene_random(99 + (uint64_t)_i, SCENES[_i].n, SCENES[_i].side, SCENES[_i].rlo, SCENES[_i].rhi,
                             -50.0f);
    sp_grid_def_t d = def_threads(1 + _i % 2);
    d.mode = SP_GRID_MODE_HASH;
    sp_grid_stats_t st;
    check_against_brute(&d, &s, &st);
    ck_assert_int_eq(st.hashed, 1);
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_cell_order_is_same_set_and_thread_independent) {
    scene_t s = scene_random(5, 3000, 30.0f, 0.5f, 1.5f, 0.0f);
    for (int mode = 0; mode < 2; mode++) {
        sp_grid_def_t d1 = def_threads(1), d2 = def_threads(2), d3 = def_threads(3);
        d1.order = d2.order = d3.order = SP_GRID_ORDER_CELL;
        d1.mode = d2.mode = d3.mode = mode ? SP_GRID_MODE_HASH : SP_GRID_MODE_AUTO;
        size_t n1, n2, n3;
        sp_pair_t *p1 = run_grid(&d1, &s, NULL, &n1, NULL);
        sp_pair_t *p2 = run_grid(&d2, &s, NULL, &n2, NULL);
        sp_pair_t *p3 = run_grid(&d3, &s, NULL, &n3, NULL);
        ck_assert_uint_gt(n1, 1000);
        ck_assert_uint_eq(n1, n2);
        ck_assert_uint_eq(n1, n3);
        ck_assert_int_eq(memcmp(p1, p2, n1 * sizeof *p1), 0);
        ck_assert_int_eq(memcmp(p1, p3, n1 * sizeof *p1), 0);
        free(p2);
        free(p3);
        check_against_brute(&d1, &s, NULL);
        free(p1);
    }
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_ab_order_bitwise_identical_for_1_2_4_threads) {
    scene_t s = scene_random(77, 4000, 45.0f, 0.5f, 1.5f, 1000.0f);
    size_t n1, n2, n4;
    sp_grid_def_t d1 = def_threads(1), d2 = def_threads(2), d4 = def_threads(4);
    sp_pair_t *p1 = run_grid(&d1, &s, NULL, &n1, NULL);
    sp_pair_t *p2 = run_grid(&d2, &s, NULL, &n2, NULL);
    sp_pair_t *p4 = run_grid(&d4, &s, NULL, &n4, NULL);
    ck_assert_uint_gt(n1, 1000);
    ck_assert_uint_eq(n1, n2);
    ck_assert_uint_eq(n1, n4);
    ck_assert_int_eq(memcmp(p1, p2, n1 * sizeof *p1), 0);
    ck_assert_int_eq(memcmp(p1, p4, n1 * sizeof *p1), 0);
    free(p1), free(p2), free(p4);
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_scalar_and_simd_kernels_give_identical_output) {
    scene_t s = scene_random(4242, 3000, 35.0f, 0.3f, 1.7f, 0.0f);
    sp_grid_def_t ds = def_threads(1), dv = def_threads(2);
    ds.no_simd = 1;
    size_t ns, nv;
    sp_grid_stats_t sts, stv;
    sp_pair_t *ps = run_grid(&ds, &s, NULL, &ns, &sts);
    sp_pair_t *pv = run_grid(&dv, &s, NULL, &nv, &stv);
    ck_assert_int_eq(sts.simd, 0);
    ck_assert_int_eq(stv.simd, __builtin_cpu_supports("avx512f") ? 1 : 0);
    ck_assert_uint_gt(ns, 1000);
    ck_assert_uint_eq(ns, nv);
    ck_assert_uint_eq(sts.candidates, stv.candidates);
    ck_assert_int_eq(memcmp(ps, pv, ns * sizeof *ps), 0);
    free(ps), free(pv);
    check_against_brute(&ds, &s, NULL);
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_empty_input_returns_no_pairs) {
    sp_grid_t *g;
    ck_assert_int_eq(sp_grid_create(NULL, &g), 0);
    const sp_pair_t *p = (const sp_pair_t *)&g; /* poison: must be overwritten */
    size_t np = 12345;
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, NULL, NULL, NULL, NULL, 0, &p, &np), 0);
    ck_assert_ptr_null(p);
    ck_assert_uint_eq(np, 0);
    sp_grid_free(g);
}
END_TEST

START_TEST(test_grid_single_sphere_returns_no_pairs) {
    float x = 1, y = 2, z = 3, r = 100;
    sp_grid_t *g;
    ck_assert_int_eq(sp_grid_create(NULL, &g), 0);
    const sp_pair_t *p;
    size_t np = 9;
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, &x, &y, &z, &r, 1, &p, &np), 0);
    ck_assert_uint_eq(np, 0);
    ck_assert_ptr_null(p);
    sp_grid_free(g);
}
END_TEST

START_TEST(test_grid_all_spheres_in_one_cell_give_every_pair_once) {
    const size_t n = 300;
    scene_t s = scene_random(3, n, 0.5f, 1.0f, 1.0f, 7.0f); /* box 0.5, radius 1 */
    for (int nt = 1; nt <= 2; nt++) {
        sp_grid_def_t d = def_threads(nt);
        sp_grid_stats_t st;
        size_t np;
        sp_pair_t *p = run_grid(&d, &s, NULL, &np, &st);
        ck_assert_uint_eq(np, n * (n - 1) / 2);
        size_t k = 0;
        for (uint32_t a = 0; a < n; a++)
            for (uint32_t b = a + 1; b < n; b++, k++) {
                ck_assert_uint_eq(p[k].a, a);
                ck_assert_uint_eq(p[k].b, b);
            }
        free(p);
    }
    sp_grid_def_t d = def_threads(1);
    check_against_brute(&d, &s, NULL);
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_zero_radii_points_never_overlap_each_other) {
    /* Points 0..3 (r = 0), two of them coincident; sphere 4 of radius 1 at the
     * origin contains points 0 and 1 strictly, touches point 2 exactly. */
    float x[] = {0.5f, 0.0f, 1.0f, 0.0f, 0.0f};
    float y[] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    float z[] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    float r[] = {0.0f, 0.0f, 0.0f, 0.0f, 1.0f};
    sp_grid_t *g;
    ck_assert_int_eq(sp_grid_create(NULL, &g), 0);
    const sp_pair_t *p;
    size_t np;
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, x, y, z, r, 5, &p, &np), 0);
    ck_assert_uint_eq(np, 3); /* (0,4) (1,4) (3,4); (1,3) coincident points: no */
    ck_assert_uint_eq(p[0].a, 0);
    ck_assert_uint_eq(p[0].b, 4);
    ck_assert_uint_eq(p[1].a, 1);
    ck_assert_uint_eq(p[1].b, 4);
    ck_assert_uint_eq(p[2].a, 3);
    ck_assert_uint_eq(p[2].b, 4);
    ck_assert_float_eq(p[0].dist, 0.5f);
    ck_assert_float_eq(p[0].nx, -1.0f); /* from point 0 (x=0.5) to sphere 4 (x=0) */
    float zr[] = {0, 0, 0, 0, 0};
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, x, y, z, zr, 5, &p, &np), 0);
    ck_assert_uint_eq(np, 0);
    ck_assert_ptr_null(p);
    sp_grid_free(g);
}
END_TEST

START_TEST(test_grid_coincident_centres_give_dist_0_normal_plus_x) {
    float x[] = {3.0f, 3.0f, 3.5f}, y[] = {-2.0f, -2.0f, -2.0f}, z[] = {1.0f, 1.0f, 1.0f};
    float r[] = {0.25f, 0.25f, 0.1f};
    sp_grid_t *g;
    ck_assert_int_eq(sp_grid_create(NULL, &g), 0);
    const sp_pair_t *p;
    size_t np;
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, x, y, z, r, 3, &p, &np), 0);
    ck_assert_uint_eq(np, 1);
    ck_assert_uint_eq(p[0].a, 0);
    ck_assert_uint_eq(p[0].b, 1);
    ck_assert_float_eq(p[0].dist, 0.0f);
    ck_assert_float_eq(p[0].nx, 1.0f);
    ck_assert_float_eq(p[0].ny, 0.0f);
    ck_assert_float_eq(p[0].nz, 0.0f);
    sp_grid_free(g);
}
END_TEST

START_TEST(test_grid_touching_spheres_are_not_a_pair_and_normal_points_a_to_b) {
    /* 0 and 1 touch exactly (d = 2 = r0 + r1); 2 overlaps 1 along -y from 1. */
    float x[] = {0.0f, 2.0f, 2.0f}, y[] = {0.0f, 0.0f, -1.5f}, z[] = {0.0f, 0.0f, 0.0f};
    float r[] = {1.0f, 1.0f, 1.0f};
    sp_grid_t *g;
    ck_assert_int_eq(sp_grid_create(NULL, &g), 0);
    const sp_pair_t *p;
    size_t np;
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, x, y, z, r, 3, &p, &np), 0);
    ck_assert_uint_eq(np, 1);
    ck_assert_uint_eq(p[0].a, 1);
    ck_assert_uint_eq(p[0].b, 2);
    ck_assert_float_eq_tol(p[0].dist, 1.5f, 1e-6f);
    ck_assert_float_eq_tol(p[0].nx, 0.0f, 1e-6f);
    ck_assert_float_eq_tol(p[0].ny, -1.0f, 1e-6f);
    sp_grid_free(g);
}
END_TEST

START_TEST(test_grid_far_apart_clusters_switch_to_hash_and_match_brute_force) {
    /* Three clusters 1e6 .. 1e30 apart: the dense box would need ~1e90 cells. */
    scene_t s = scene_alloc(1500);
    rng_state = 1234;
    const float centres[3] = {-1e30f, 0.0f, 3e6f};
    for (size_t i = 0; i < s.n; i++) {
        float c = centres[i % 3];
        float side = c == 0.0f ? 12.0f : (c < 0 ? 1e24f : 8.0f);
        s.x[i] = c + rng_range(-side, side);
        s.y[i] = rng_range(-side, side) - c;
        s.z[i] = c * 0.5f + rng_range(-side, side);
        s.r[i] = rng_range(0.5f, 1.5f);
    }
    /* Make a few exact duplicates at the huge coordinates, which must pair. */
    s.x[3] = s.x[0], s.y[3] = s.y[0], s.z[3] = s.z[0];
    sp_grid_def_t d = def_threads(2);
    sp_grid_stats_t st;
    check_against_brute(&d, &s, &st);
    ck_assert_int_eq(st.hashed, 1);
    ck_assert_uint_gt(st.pairs, 100);
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_large_coordinates_near_float_limits_match_brute_force) {
    scene_t s = scene_alloc(600);
    rng_state = 42;
    for (size_t i = 0; i < s.n; i++) {
        float sign = (i & 1) ? 1.0f : -1.0f;
        s.x[i] = sign * rng_range(1e37f, 3e38f);
        s.y[i] = rng_range(-1e5f, 1e5f);
        s.z[i] = (i % 5 == 0) ? s.x[i] : rng_range(-10.0f, 10.0f);
        s.r[i] = rng_range(0.0f, 2e4f);
    }
    /* Some overlapping neighbours: same x and z, y 1 apart. */
    for (size_t i = 0; i + 1 < s.n; i += 7) {
        s.x[i + 1] = s.x[i], s.z[i + 1] = s.z[i], s.y[i + 1] = s.y[i] + 1.0f;
    }
    for (int mode = 0; mode < 2; mode++) {
        sp_grid_def_t d = def_threads(1);
        d.mode = mode;
        sp_grid_stats_t st;
        check_against_brute(&d, &s, &st);
        ck_assert_uint_ge(st.pairs, 80);
    }
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_nan_inf_and_negative_radius_are_rejected) {
    float x[4] = {0, 1, 2, 3}, y[4] = {0}, z[4] = {0}, r[4] = {1, 1, 1, 1};
    float *arrs[4] = {x, y, z, r};
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    sp_grid_t *g;
    ck_assert_int_eq(sp_grid_create(NULL, &g), 0);
    const sp_pair_t *p;
    size_t np;
    for (int a = 0; a < 4; a++)
        for (int k = 0; k < 3; k++) {
            float keep = arrs[a][2];
            arrs[a][2] = bad[k];
            p = (const sp_pair_t *)x;
            np = 7;
            ck_assert_int_eq(sp_grid_find_pairs(g, NULL, x, y, z, r, 4, &p, &np), SP_EINVAL);
            ck_assert_ptr_null(p);
            ck_assert_uint_eq(np, 0);
            arrs[a][2] = keep;
        }
    r[1] = -0.5f;
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, x, y, z, r, 4, &p, &np), SP_EINVAL);
    r[1] = 1.0f;
    /* The same object still works afterwards. */
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, x, y, z, r, 4, &p, &np), 0);
    ck_assert_uint_eq(np, 3);
    sp_grid_free(g);
}
END_TEST

START_TEST(test_grid_bad_arguments_return_einval_or_eoverflow) {
    sp_grid_t *g = (sp_grid_t *)0x1;
    sp_grid_def_t d = sp_grid_def_default();
    d.nthreads = 0;
    ck_assert_int_eq(sp_grid_create(&d, &g), SP_EINVAL);
    d.nthreads = SP_GRID_MAX_THREADS + 1;
    ck_assert_int_eq(sp_grid_create(&d, &g), SP_EINVAL);
    d = sp_grid_def_default();
    d.cell_size = NAN;
    ck_assert_int_eq(sp_grid_create(&d, &g), SP_EINVAL);
    d.cell_size = -1.0f;
    ck_assert_int_eq(sp_grid_create(&d, &g), SP_EINVAL);
    d = sp_grid_def_default();
    d.order = (sp_grid_order_t)7;
    ck_assert_int_eq(sp_grid_create(&d, &g), SP_EINVAL);
    ck_assert_ptr_eq(g, (sp_grid_t *)0x1); /* untouched */
    ck_assert_int_eq(sp_grid_create(NULL, NULL), SP_EINVAL);

    ck_assert_int_eq(sp_grid_create(NULL, &g), 0);
    float v[2] = {0, 0};
    const sp_pair_t *p;
    size_t np;
    ck_assert_int_eq(sp_grid_find_pairs(NULL, NULL, v, v, v, v, 2, &p, &np), SP_EINVAL);
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, v, v, v, v, 2, NULL, &np), SP_EINVAL);
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, v, v, v, v, 2, &p, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, v, NULL, v, v, 2, &p, &np), SP_EINVAL);
    /* More spheres than 32-bit indices can name: rejected before any read. */
    ck_assert_int_eq(sp_grid_find_pairs(g, NULL, v, v, v, v, (size_t)UINT32_MAX, &p, &np), SP_EOVERFLOW);
    ck_assert_ptr_null(p);
    ck_assert_uint_eq(np, 0);
    sp_grid_free(g);
    sp_grid_free(NULL);
}
END_TEST

/* The shared failing allocator (tests/helpers/sp_alloc.h): the grid's pool
 * threads grow their pair buffers through it concurrently (the contract in
 * grid.h), which its atomic counters allow. */

START_TEST(test_grid_out_of_memory_returns_enomem_and_recovers) {
    scene_t s = scene_random(8, 3000, 30.0f, 0.5f, 1.5f, 0.0f);
    pairlist_t ref = brute(&s);
    int saw_enomem = 0, saw_ok = 0;
    for (long budget = 0; budget < 40 && !saw_ok; budget++) {
        sp_test_alloc_t f;
        sp_test_alloc_init(&f, budget, 0); /* the first `budget` allocations succeed */
        sp_allocator_t al = sp_test_allocator(&f);
        sp_grid_def_t d = def_threads(2);
        d.allocator = &al;
        sp_grid_t *g = NULL;
        int rc = sp_grid_create(&d, &g);
        if (rc != 0) {
            ck_assert_int_eq(rc, SP_ENOMEM);
            ck_assert_int_eq(sp_test_alloc_get(&f.live_bytes), 0);
            continue;
        }
        sp_arena_t ar;
        sp_arena_init(&ar, 0, &al);
        const sp_pair_t *p;
        size_t np;
        rc = sp_grid_find_pairs(g, &ar, s.x, s.y, s.z, s.r, s.n, &p, &np);
        if (rc == SP_ENOMEM) {
            saw_enomem = 1;
            ck_assert_ptr_null(p);
            ck_assert_uint_eq(np, 0);
            ck_assert_uint_eq(sp_arena_used(&ar), 0);
            /* Give it memory again: the same object now succeeds. */
            sp_test_alloc_set(&f.fail_after, sp_test_alloc_get(&f.allocs) + 1000);
            ck_assert_int_eq(sp_grid_find_pairs(g, &ar, s.x, s.y, s.z, s.r, s.n, &p, &np), 0);
        } else {
            ck_assert_int_eq(rc, 0);
            saw_ok = 1;
        }
        assert_same_pairs(p, np, &ref);
        sp_arena_destroy(&ar);
        sp_grid_free(g);
        ck_assert_int_eq(sp_test_alloc_get(&f.live_bytes), 0);
    }
    ck_assert(saw_enomem);
    ck_assert(saw_ok);
    free(ref.p);
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_seed_regression_grid_is_used_not_all_pairs) {
    /* The seed tested all n(n-1)/2 pairs and left its grid empty. At the
     * benchmark density each sphere should meet ~14 cells' worth (~15-40)
     * candidates, far from n/2. */
    const size_t n = 4000;
    scene_t s = scene_random(21, n, cbrtf((float)n / 0.0398f), 0.5f, 1.5f, 0.0f);
    sp_grid_def_t d = def_threads(1);
    sp_grid_stats_t st;
    check_against_brute(&d, &s, &st);
    ck_assert_int_eq(st.hashed, 0); /* AUTO picks the dense grid here */
    ck_assert_uint_lt(st.candidates, 40 * n);
    ck_assert_uint_gt(st.candidates, st.pairs);
    ck_assert_uint_gt(st.pairs, n / 4);
    ck_assert(st.cell_size >= 3.0 && st.cell_size < 3.01);
    ck_assert_uint_gt(st.scratch_bytes, n * 28);
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_caller_cell_size_is_a_minimum) {
    scene_t s = scene_random(31, 2000, 40.0f, 0.2f, 1.0f, 0.0f);
    sp_grid_def_t d = def_threads(1);
    sp_grid_stats_t st;
    d.cell_size = 7.5f; /* bigger than 2 rmax: used */
    check_against_brute(&d, &s, &st);
    ck_assert(st.cell_size == 7.5);
    d.cell_size = 0.1f; /* smaller than 2 rmax: raised */
    check_against_brute(&d, &s, &st);
    ck_assert(st.cell_size >= 2.0 && st.cell_size < 2.01);
    scene_free(&s);
}
END_TEST

START_TEST(test_grid_reused_object_handles_growing_and_shrinking_inputs) {
    sp_grid_def_t d = def_threads(2);
    sp_grid_t *g;
    ck_assert_int_eq(sp_grid_create(&d, &g), 0);
    sp_arena_t ar;
    sp_arena_init(&ar, 0, NULL);
    const size_t sizes[] = {100, 3000, 0, 1, 2500, 50};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        scene_t s = scene_random(k + 500, sizes[k], 20.0f, 0.5f, 1.5f, 0.0f);
        pairlist_t ref = brute(&s);
        const sp_pair_t *p;
        size_t np;
        ck_assert_int_eq(sp_grid_find_pairs(g, &ar, s.x, s.y, s.z, s.r, s.n, &p, &np), 0);
        assert_same_pairs(p, np, &ref);
        free(ref.p);
        scene_free(&s);
    }
    sp_arena_destroy(&ar);
    sp_grid_free(g);
}
END_TEST

START_TEST(test_grid_spheres_on_cell_boundaries_and_negative_coords) {
    /* Centres on exact multiples of the cell edge, negative and positive, so
     * neighbours sit in adjacent cells in every direction. */
    scene_t s = scene_alloc(27 * 8);
    size_t k = 0;
    for (int i = -1; i <= 1; i++)
        for (int j = -1; j <= 1; j++)
            for (int m = -1; m <= 1; m++)
                for (int q = 0; q < 8; q++, k++) {
                    s.x[k] = (float)i * 2.0f + (q & 1 ? 1.9f : 0.0f);
                    s.y[k] = (float)j * 2.0f + (q & 2 ? 1.9f : 0.0f);
                    s.z[k] = (float)m * 2.0f + (q & 4 ? 1.9f : 0.0f);
                    s.r[k] = 0.5f;
                }
    for (int mode = 0; mode < 2; mode++) {
        sp_grid_def_t d = def_threads(1);
        d.mode = mode;
        d.cell_size = 2.0f;
        check_against_brute(&d, &s, NULL);
    }
    scene_free(&s);
}
END_TEST

/* ------------------------------------------------- coherent pass (issue 9) */

/* Bitwise comparison: the coherent pass promises the full pass's output bit
 * for bit (same pairs, same order, same float bits, +0 vs -0 included). */
static void assert_bitwise(const sp_pair_t *got, size_t ng, const sp_pair_t *want, size_t nw) {
    ck_assert_uint_eq(ng, nw);
    if (ng == 0) return;
    for (size_t k = 0; k < ng; k++)
        if (memcmp(&got[k], &want[k], sizeof got[k]) != 0)
            ck_abort_msg("pair %zu: got (%u,%u,%a,%a,%a,%a) want (%u,%u,%a,%a,%a,%a)", k, got[k].a, got[k].b,
                         (double)got[k].dist, (double)got[k].nx, (double)got[k].ny, (double)got[k].nz, want[k].a,
                         want[k].b, (double)want[k].dist, (double)want[k].nx, (double)want[k].ny, (double)want[k].nz);
}

/* One coherent call on g checked against a full pass on `full` (a fresh
 * order every call) and, when brute_too, against brute force. */
static void coherent_check(sp_grid_t *g, sp_grid_t *full, const scene_t *s, const uint32_t *ids, int brute_too) {
    const sp_pair_t *p, *q;
    size_t np, nq;
    ck_assert_int_eq(sp_grid_find_pairs_coherent(g, NULL, s->x, s->y, s->z, s->r, ids, s->n, &p, &np), 0);
    ck_assert_int_eq(sp_grid_find_pairs(full, NULL, s->x, s->y, s->z, s->r, s->n, &q, &nq), 0);
    assert_bitwise(p, np, q, nq);
    if (brute_too) {
        pairlist_t ref = brute(s);
        assert_same_pairs(p, np, &ref);
        free(ref.p);
    }
}

/* Move every sphere by up to `step` per axis, reflecting at +-side/2. */
static void scene_move(scene_t *s, float side, float step) {
    for (size_t i = 0; i < s->n; i++) {
        float *v[3] = {&s->x[i], &s->y[i], &s->z[i]};
        for (int k = 0; k < 3; k++) {
            float c = *v[k] + rng_range(-step, step);
            if (c > side / 2) c = side - c;
            if (c < -side / 2) c = -side - c;
            *v[k] = c;
        }
    }
}

START_TEST(test_grid_coherent_moving_scene_matches_full_pass_and_brute_force) {
    /* _i: 0 = AVX-512 kernel where present, 1 = scalar; 1 and 3 threads. */
    for (int nt = 1; nt <= 3; nt += 2) {
        scene_t s = scene_random(100 + (uint64_t)nt, 3000, 40.0f, 0.5f, 1.5f, 0.0f);
        sp_grid_def_t d = def_threads(nt);
        d.no_simd = _i;
        sp_grid_t *g, *full;
        ck_assert_int_eq(sp_grid_create(&d, &g), 0);
        ck_assert_int_eq(sp_grid_create(&d, &full), 0);
        size_t reused = 0;
        for (int tick = 0; tick < 40; tick++) {
            coherent_check(g, full, &s, NULL, tick % 8 == 0);
            sp_grid_stats_t st;
            sp_grid_stats(g, &st);
            ck_assert_int_eq(st.threads_used, nt);
            ck_assert_uint_le(st.resorted, s.n);
            reused += (size_t)st.coherent;
            scene_move(&s, 40.0f, 0.05f); /* a few % change cell per tick */
        }
        /* The Verlet list really was reused. This motion is a random walk
         * (speed estimates from one list's span fall short of the next
         * span's wander), so about half the ticks rebuild. */
        ck_assert_uint_ge(reused, 15);
        sp_grid_free(g);
        sp_grid_free(full);
        scene_free(&s);
    }
}
END_TEST

START_TEST(test_grid_coherent_output_is_thread_count_independent) {
    sp_pair_t *first = NULL;
    size_t nfirst = 0;
    for (int nt = 1; nt <= 4; nt++) {
        scene_t s = scene_random(77, 4000, 30.0f, 0.3f, 1.2f, 5.0f);
        sp_grid_def_t d = def_threads(nt);
        sp_grid_t *g;
        ck_assert_int_eq(sp_grid_create(&d, &g), 0);
        const sp_pair_t *p = NULL;
        size_t np = 0;
        for (int tick = 0; tick < 10; tick++) {
            ck_assert_int_eq(sp_grid_find_pairs_coherent(g, NULL, s.x, s.y, s.z, s.r, NULL, s.n, &p, &np), 0);
            scene_move(&s, 30.0f, 0.3f);
        }
        if (nt == 1) {
            first = malloc((np + 1) * sizeof *first);
            ck_assert_ptr_nonnull(first);
            memcpy(first, p, np * sizeof *p);
            nfirst = np;
        } else {
            assert_bitwise(p, np, first, nfirst);
        }
        sp_grid_free(g);
        scene_free(&s);
    }
    ck_assert_uint_gt(nfirst, 100);
    free(first);
}
END_TEST

START_TEST(test_grid_coherent_ids_follow_spheres_added_removed_and_shuffled) {
    /* A pool of 3000 spheres with stable ids; each tick a different subset
     * is passed (some removed, some added back), in a shuffled order, with
     * ids naming them. Every tick must equal the full pass. */
    scene_t pool = scene_random(5, 3000, 35.0f, 0.5f, 1.5f, 0.0f);
    scene_t s = scene_alloc(3000);
    uint32_t *ids = calloc(3000, sizeof *ids), *perm = calloc(3000, sizeof *perm);
    ck_assert(ids && perm);
    for (int nt = 1; nt <= 2; nt++) {
        sp_grid_def_t d = def_threads(nt);
        sp_grid_t *g, *full;
        ck_assert_int_eq(sp_grid_create(&d, &g), 0);
        ck_assert_int_eq(sp_grid_create(&d, &full), 0);
        for (int tick = 0; tick < 30; tick++) {
            size_t n = 0;
            for (uint32_t k = 0; k < 3000; k++)
                if ((rng_next() % 10) != 0) perm[n++] = k; /* ~10% absent */
            /* Every third tick in id order (indices shift, ids do not),
             * otherwise shuffled (nothing stays at its index). */
            for (size_t k = n; tick % 3 != 0 && k > 1; k--) {
                size_t j = rng_next() % k;
                uint32_t t = perm[k - 1];
                perm[k - 1] = perm[j];
                perm[j] = t;
            }
            s.n = n;
            for (size_t k = 0; k < n; k++) {
                uint32_t id = perm[k];
                s.x[k] = pool.x[id], s.y[k] = pool.y[id], s.z[k] = pool.z[id], s.r[k] = pool.r[id];
                ids[k] = id * 3 + 1; /* sparse ids */
            }
            if (tick == 7) ids[5] = ids[9];              /* a duplicate id */
            if (tick == 11) ids[0] = (uint32_t)1 << 30;  /* too large: ids ignored this call */
            coherent_check(g, full, &s, ids, tick % 10 == 0);
            coherent_check(g, full, &s, NULL, 0); /* and without ids */
            scene_move(&pool, 35.0f, 0.1f);
        }
        sp_grid_free(g);
        sp_grid_free(full);
    }
    free(ids), free(perm);
    s.n = 3000;
    scene_free(&s);
    scene_free(&pool);
}
END_TEST

START_TEST(test_grid_coherent_many_cell_changes_and_adversarial_inputs) {
    sp_grid_def_t d = def_threads(2);
    sp_grid_t *g, *full;
    ck_assert_int_eq(sp_grid_create(&d, &g), 0);
    ck_assert_int_eq(sp_grid_create(&d, &full), 0);
    scene_t s = scene_random(9, 2000, 30.0f, 0.5f, 1.5f, 0.0f);
    coherent_check(g, full, &s, NULL, 1);
    /* Half the spheres teleport at once, several times. */
    for (int t = 0; t < 4; t++) {
        for (size_t i = 0; i < s.n; i += 2) s.x[i] = rng_range(-15, 15), s.y[i] = rng_range(-15, 15);
        coherent_check(g, full, &s, NULL, t == 0);
    }
    /* Everything in one cell (every pair), then spread out again. */
    for (size_t i = 0; i < 300; i++) s.x[i] = s.y[i] = s.z[i] = 0.001f * (float)(i % 7);
    scene_t one = s;
    one.n = 300;
    coherent_check(g, full, &one, NULL, 1);
    coherent_check(g, full, &s, NULL, 0);
    /* Huge radii (relayout with big cells), then back to small ones. */
    s.r[17] = 40.0f;
    coherent_check(g, full, &s, NULL, 1);
    s.r[17] = 0.5f;
    coherent_check(g, full, &s, NULL, 0);
    /* Leaving the box: one sphere far out (box rebuilt or hashed). */
    s.x[3] = 1e6f;
    coherent_check(g, full, &s, NULL, 1);
    s.x[3] = 3e37f, s.y[4] = -3e37f;
    coherent_check(g, full, &s, NULL, 1);
    s.x[3] = 1.0f, s.y[4] = 1.0f;
    coherent_check(g, full, &s, NULL, 0);
    /* Radius 0 everywhere: no pairs; then n = 1 and n = 0. */
    scene_t z = scene_random(10, 500, 5.0f, 0.0f, 0.0f, 0.0f);
    coherent_check(g, full, &z, NULL, 1);
    z.n = 1;
    coherent_check(g, full, &z, NULL, 1);
    z.n = 0;
    coherent_check(g, full, &z, NULL, 0);
    z.n = 500;
    /* A NaN is rejected and the next call is still right. */
    float keep = s.y[8];
    s.y[8] = NAN;
    const sp_pair_t *p;
    size_t np;
    ck_assert_int_eq(sp_grid_find_pairs_coherent(g, NULL, s.x, s.y, s.z, s.r, NULL, s.n, &p, &np), SP_EINVAL);
    ck_assert_ptr_null(p);
    s.y[8] = keep;
    coherent_check(g, full, &s, NULL, 1);
    /* Hash mode and cell order settings: still (a, b) order, same output. */
    sp_grid_def_t dh = def_threads(1);
    dh.mode = SP_GRID_MODE_HASH;
    dh.order = SP_GRID_ORDER_CELL;
    sp_grid_t *gh;
    ck_assert_int_eq(sp_grid_create(&dh, &gh), 0);
    coherent_check(gh, full, &s, NULL, 1);
    sp_grid_free(gh);
    ck_assert_int_eq(sp_grid_find_pairs_coherent(NULL, NULL, s.x, s.y, s.z, s.r, NULL, s.n, &p, &np), SP_EINVAL);
    ck_assert_int_eq(sp_grid_find_pairs_coherent(g, NULL, NULL, s.y, s.z, s.r, NULL, s.n, &p, &np), SP_EINVAL);
    sp_grid_free(g);
    sp_grid_free(full);
    scene_free(&z);
    scene_free(&s);
}
END_TEST

START_TEST(test_issue_9_zero_normal_components_are_plus_zero_in_any_order) {
    /* Two spheres with equal y and z: the normal's y and z are +0 whichever
     * of the two the sweep meets first (before the fix, -0 when the sweep
     * met b first, so the bits depended on the cell layout). */
    for (int flip = 0; flip < 2; flip++) {
        for (float off = 0.0f; off < 3.0f; off += 0.37f) {
            scene_t s = scene_alloc(2);
            s.x[flip] = off, s.x[1 - flip] = off + 0.5f;
            s.y[0] = s.y[1] = 2.0f, s.z[0] = s.z[1] = -1.0f;
            s.r[0] = s.r[1] = 1.0f;
            sp_grid_t *g;
            ck_assert_int_eq(sp_grid_create(NULL, &g), 0);
            const sp_pair_t *p;
            size_t np;
            for (int coh = 0; coh < 2; coh++) {
                int rc = coh ? sp_grid_find_pairs_coherent(g, NULL, s.x, s.y, s.z, s.r, NULL, 2, &p, &np)
                             : sp_grid_find_pairs(g, NULL, s.x, s.y, s.z, s.r, 2, &p, &np);
                ck_assert_int_eq(rc, 0);
                ck_assert_uint_eq(np, 1);
                ck_assert(!signbit(p[0].ny) && !signbit(p[0].nz));
                ck_assert_float_eq(p[0].nx, flip ? -1.0f : 1.0f);
            }
            sp_grid_free(g);
            scene_free(&s);
        }
    }
}
END_TEST

START_TEST(test_grid_coherent_out_of_memory_returns_enomem_and_recovers) {
    scene_t s = scene_random(8, 3000, 30.0f, 0.5f, 1.5f, 0.0f);
    pairlist_t ref = brute(&s);
    int saw_enomem = 0, saw_ok = 0;
    for (long budget = 0; budget < 60 && !saw_ok; budget++) {
        sp_test_alloc_t f;
        sp_test_alloc_init(&f, budget, 0); /* the first `budget` allocations succeed */
        sp_allocator_t al = sp_test_allocator(&f);
        sp_grid_def_t d = def_threads(2);
        d.allocator = &al;
        sp_grid_t *g = NULL;
        if (sp_grid_create(&d, &g) != 0) continue;
        const sp_pair_t *p;
        size_t np;
        int rc = sp_grid_find_pairs_coherent(g, NULL, s.x, s.y, s.z, s.r, NULL, s.n, &p, &np);
        if (rc == SP_ENOMEM) {
            saw_enomem = 1;
            ck_assert_ptr_null(p);
            sp_test_alloc_set(&f.fail_after, sp_test_alloc_get(&f.allocs) + 1000);
            ck_assert_int_eq(sp_grid_find_pairs_coherent(g, NULL, s.x, s.y, s.z, s.r, NULL, s.n, &p, &np), 0);
        } else {
            ck_assert_int_eq(rc, 0);
            saw_ok = 1;
        }
        assert_same_pairs(p, np, &ref);
        sp_grid_free(g);
        ck_assert_int_eq(sp_test_alloc_get(&f.live_bytes), 0);
    }
    ck_assert(saw_enomem);
    ck_assert(saw_ok);
    free(ref.p);
    scene_free(&s);
}
END_TEST

/* ------------------------------------------------ Verlet list (issue 9) */

/* A scene in ballistic motion: velocities up to vmax per axis per tick,
 * reflecting at +-side/2 (as the world's entities fly). */
typedef struct ballistic {
    scene_t s;
    float *vx, *vy, *vz;
    float side;
} ballistic_t;

static ballistic_t ballistic_new(uint64_t seed, size_t n, float side, float vmax) {
    ballistic_t b;
    b.s = scene_random(seed, n, side, 0.5f, 1.5f, 0.0f);
    b.side = side;
    b.vx = calloc(n + 1, sizeof(float)), b.vy = calloc(n + 1, sizeof(float)), b.vz = calloc(n + 1, sizeof(float));
    ck_assert(b.vx && b.vy && b.vz);
    for (size_t i = 0; i < n; i++)
        b.vx[i] = rng_range(-vmax, vmax), b.vy[i] = rng_range(-vmax, vmax), b.vz[i] = rng_range(-vmax, vmax);
    return b;
}

static void ballistic_step(ballistic_t *b) {
    for (size_t i = 0; i < b->s.n; i++) {
        float *p[3] = {&b->s.x[i], &b->s.y[i], &b->s.z[i]}, *v[3] = {&b->vx[i], &b->vy[i], &b->vz[i]};
        for (int k = 0; k < 3; k++) {
            float c = *p[k] + *v[k];
            if (c > b->side / 2 || c < -b->side / 2) *v[k] = -*v[k], c = *p[k] + *v[k];
            *p[k] = c;
        }
    }
}

static void ballistic_free(ballistic_t *b) {
    free(b->vx), free(b->vy), free(b->vz);
    scene_free(&b->s);
}

static sp_grid_stats_t stats_of(const sp_grid_t *g) {
    sp_grid_stats_t st;
    sp_grid_stats(g, &st);
    return st;
}

/* 1 when the last call did not take the list as it was: it rebuilt it, or
 * patched it (re-anchored the spheres that broke it). */
static int list_broken(const sp_grid_t *g) {
    sp_grid_stats_t st = stats_of(g);
    return !st.coherent || st.list_patched > 0;
}

/* 1 when (a, b) is among the pairs. */
static int has_pair(sp_grid_t *g, const scene_t *s, const uint32_t *ids, uint32_t a, uint32_t b) {
    const sp_pair_t *p;
    size_t np;
    ck_assert_int_eq(sp_grid_find_pairs_coherent(g, NULL, s->x, s->y, s->z, s->r, ids, s->n, &p, &np), 0);
    for (size_t k = 0; k < np; k++)
        if (p[k].a == a && p[k].b == b) return 1;
    return 0;
}

START_TEST(test_grid_verlet_ballistic_scene_reuses_list_rebuilds_and_matches_full_pass) {
    /* _i = 0..3: 1..4 threads. 80 ticks of flight: lists are reused, the
     * motion forces rebuilds, and every tick equals the full pass bit for
     * bit (brute force every 10th). */
    int nt = _i + 1;
    ballistic_t b = ballistic_new(300 + (uint64_t)nt, 4000, 45.0f, 0.08f);
    sp_grid_def_t d = def_threads(nt);
    sp_grid_t *g, *full;
    ck_assert_int_eq(sp_grid_create(&d, &g), 0);
    ck_assert_int_eq(sp_grid_create(&d, &full), 0);
    size_t reused = 0, rebuilt_after_reuse = 0, patched = 0;
    int prev = 0;
    for (int tick = 0; tick < 80; tick++) {
        coherent_check(g, full, &b.s, NULL, tick % 10 == 0);
        sp_grid_stats_t st = stats_of(g);
        patched += st.list_patched;
        if (st.list_patched) ck_assert_int_eq(st.coherent, 1);
        ck_assert_int_eq(st.threads_used, nt);
        ck_assert_uint_ge(st.list_candidates, st.pairs);
        ck_assert_uint_eq(st.candidates, st.list_candidates);
        reused += (size_t)st.coherent;
        rebuilt_after_reuse += (size_t)(!st.coherent && prev);
        prev = st.coherent;
        ballistic_step(&b);
    }
    ck_assert_uint_ge(reused, 55);             /* most ticks only test the list */
    ck_assert_uint_ge(rebuilt_after_reuse, 2); /* and the motion broke it several times */
    ck_assert_uint_ge(patched, 20);            /* and stragglers were patched in between */
    sp_grid_free(g);
    sp_grid_free(full);
    ballistic_free(&b);
}
END_TEST

/* Fly b until the list has been reused twice in a row. */
static void warm_up(sp_grid_t *g, sp_grid_t *full, ballistic_t *b, const uint32_t *ids) {
    int run = 0;
    for (int tick = 0; tick < 40 && run < 2; tick++) {
        coherent_check(g, full, &b->s, ids, 0);
        run = stats_of(g).coherent ? run + 1 : 0;
        ballistic_step(b);
    }
    ck_assert_int_eq(run, 2);
}

START_TEST(test_grid_verlet_sphere_jumping_past_its_skin_rebuilds_and_finds_new_pair) {
    ballistic_t b = ballistic_new(41, 2000, 30.0f, 0.05f);
    sp_grid_def_t d = def_threads(2);
    sp_grid_t *g, *full;
    ck_assert_int_eq(sp_grid_create(&d, &g), 0);
    ck_assert_int_eq(sp_grid_create(&d, &full), 0);
    for (int rep = 0; rep < 5; rep++) {
        warm_up(g, full, &b, NULL);
        /* Sphere 7 jumps next to sphere 1000 + rep (far away before). */
        uint32_t m = 1000 + (uint32_t)rep;
        b.s.x[7] = b.s.x[m] + 0.25f, b.s.y[7] = b.s.y[m], b.s.z[7] = b.s.z[m];
        coherent_check(g, full, &b.s, NULL, 1);
        ck_assert(list_broken(g)); /* rebuilt or patched */
        ck_assert(has_pair(g, &b.s, NULL, 7, m));
        ck_assert_int_eq(stats_of(g).coherent, 1); /* nothing moved since */
        ballistic_step(&b);
    }
    sp_grid_free(g);
    sp_grid_free(full);
    ballistic_free(&b);
}
END_TEST

START_TEST(test_grid_verlet_radius_growth_rebuilds_and_shrinking_reuses) {
    ballistic_t b = ballistic_new(42, 2000, 30.0f, 0.05f);
    sp_grid_def_t d = def_threads(1);
    sp_grid_t *g, *full;
    ck_assert_int_eq(sp_grid_create(&d, &g), 0);
    ck_assert_int_eq(sp_grid_create(&d, &full), 0);
    warm_up(g, full, &b, NULL);
    /* The smallest growth, one ulp, already rebuilds. */
    b.s.r[3] = nextafterf(b.s.r[3], INFINITY);
    coherent_check(g, full, &b.s, NULL, 0);
    ck_assert(list_broken(g)); /* rebuilt or patched */
    /* A growth that makes new pairs: all of them are found. */
    warm_up(g, full, &b, NULL);
    b.s.r[11] = 6.0f;
    coherent_check(g, full, &b.s, NULL, 1);
    ck_assert(list_broken(g)); /* rebuilt or patched */
    /* Shrinking keeps the list (lost pairs are dropped by the exact test). */
    warm_up(g, full, &b, NULL);
    b.s.r[11] = 0.5f;
    for (size_t i = 0; i < b.s.n; i += 3) b.s.r[i] *= 0.5f;
    coherent_check(g, full, &b.s, NULL, 1);
    ck_assert_int_eq(stats_of(g).coherent, 1);
    sp_grid_free(g);
    sp_grid_free(full);
    ballistic_free(&b);
}
END_TEST

START_TEST(test_grid_verlet_set_changes_rebuild_and_stay_exact) {
    ballistic_t b = ballistic_new(43, 3000, 35.0f, 0.05f);
    uint32_t *ids = calloc(3001, sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    for (uint32_t i = 0; i < 3000; i++) ids[i] = 5 * i + 2;
    sp_grid_def_t d = def_threads(2);
    sp_grid_t *g, *full;
    ck_assert_int_eq(sp_grid_create(&d, &g), 0);
    ck_assert_int_eq(sp_grid_create(&d, &full), 0);
    warm_up(g, full, &b, ids);
    /* One entity leaves: the last index (n changes). */
    b.s.n = 2999;
    coherent_check(g, full, &b.s, ids, 1);
    ck_assert(list_broken(g)); /* rebuilt or patched */
    warm_up(g, full, &b, ids);
    /* Same n, another entity at index 100 (one left, one entered) far from
     * where the old one was: that index's motion bound rebuilds. */
    ids[100] = 99999;
    b.s.x[100] = b.s.x[200] + 0.1f, b.s.y[100] = b.s.y[200], b.s.z[100] = b.s.z[200];
    coherent_check(g, full, &b.s, ids, 1);
    ck_assert(list_broken(g)); /* rebuilt or patched */
    /* Same n, new ids at unmoved indices: the list holds indices and stays
     * valid (the output depends on positions and radii only). */
    ids[300] = 88888, ids[301] = 77777;
    coherent_check(g, full, &b.s, ids, 0);
    ck_assert_int_eq(stats_of(g).coherent, 1);
    warm_up(g, full, &b, ids);
    /* Two entities swap their slots (same set, indices shift): rebuild. */
    {
        uint32_t t = ids[5];
        ids[5] = ids[6], ids[6] = t;
        float *v[4] = {b.s.x, b.s.y, b.s.z, b.s.r};
        for (int k = 0; k < 4; k++) {
            float f = v[k][5];
            v[k][5] = v[k][6], v[k][6] = f;
        }
    }
    coherent_check(g, full, &b.s, ids, 0);
    ck_assert(list_broken(g)); /* rebuilt or patched */
    /* ids dropped, then back, nothing moved: the list stays. */
    coherent_check(g, full, &b.s, NULL, 0);
    ck_assert_int_eq(stats_of(g).coherent, 1);
    coherent_check(g, full, &b.s, ids, 0);
    ck_assert_int_eq(stats_of(g).coherent, 1);
    /* Ids carry the motion history across a shuffle: after one, the next
     * lists still serve several calls (skins from each entity's own past,
     * not the mean's guess). */
    warm_up(g, full, &b, ids);
    {
        size_t n = b.s.n, before = stats_of(g).list_candidates;
        for (size_t k = 0; k + 1 < n; k += 2) {
            uint32_t t = ids[k];
            ids[k] = ids[k + 1], ids[k + 1] = t;
            float *v[7] = {b.s.x, b.s.y, b.s.z, b.s.r, b.vx, b.vy, b.vz};
            for (int q = 0; q < 7; q++) {
                float f = v[q][k];
                v[q][k] = v[q][k + 1], v[q][k + 1] = f;
            }
        }
        coherent_check(g, full, &b.s, ids, 0);
        ck_assert(list_broken(g)); /* rebuilt or patched */
        /* Without the ids' history every skin would be the clamp (the
         * displacement of an index is a neighbour's distance): a list much
         * larger than before the shuffle. */
        ck_assert_uint_le(stats_of(g).list_candidates, before + before / 4);
        ballistic_step(&b);
        size_t reused = 0;
        for (int t = 0; t < 8; t++) {
            coherent_check(g, full, &b.s, ids, 0);
            reused += (size_t)stats_of(g).coherent;
            ballistic_step(&b);
        }
        ck_assert_uint_ge(reused, 5);
    }
    /* Without ids, an entity entering at the end (n grows). */
    warm_up(g, full, &b, NULL);
    b.s.n = 3000;
    b.s.x[2999] = b.s.x[0] + 0.2f, b.s.y[2999] = b.s.y[0], b.s.z[2999] = b.s.z[0];
    ck_assert(has_pair(g, &b.s, NULL, 0, 2999));
    ck_assert(list_broken(g)); /* rebuilt or patched */
    coherent_check(g, full, &b.s, NULL, 1);
    sp_grid_free(g);
    sp_grid_free(full);
    free(ids);
    ballistic_free(&b);
}
END_TEST

START_TEST(test_grid_verlet_nan_is_rejected_and_the_list_survives) {
    ballistic_t b = ballistic_new(44, 2000, 30.0f, 0.05f);
    sp_grid_def_t d = def_threads(2);
    sp_grid_t *g, *full;
    ck_assert_int_eq(sp_grid_create(&d, &g), 0);
    ck_assert_int_eq(sp_grid_create(&d, &full), 0);
    warm_up(g, full, &b, NULL);
    float *fields[4] = {b.s.x, b.s.y, b.s.z, b.s.r};
    const float bad[3] = {NAN, INFINITY, -1.0f};
    for (int f = 0; f < 4; f++) {
        for (int k = 0; k < 3; k++) {
            if (f < 3 && k == 2) continue; /* negative coordinates are fine */
            float keep = fields[f][123];
            fields[f][123] = bad[k];
            const sp_pair_t *p = (const sp_pair_t *)1;
            size_t np = 1;
            ck_assert_int_eq(sp_grid_find_pairs_coherent(g, NULL, b.s.x, b.s.y, b.s.z, b.s.r, NULL, b.s.n, &p, &np),
                             SP_EINVAL);
            ck_assert_ptr_null(p);
            ck_assert_uint_eq(np, 0);
            fields[f][123] = keep;
            coherent_check(g, full, &b.s, NULL, 0);
            ck_assert_int_eq(stats_of(g).coherent, 1); /* the list was kept */
        }
    }
    /* Radii so large that the list's error bound does not hold: full pass. */
    b.s.r[9] = 0x1p61f;
    coherent_check(g, full, &b.s, NULL, 0);
    ck_assert(list_broken(g)); /* rebuilt or patched */
    b.s.r[9] = 1.0f;
    coherent_check(g, full, &b.s, NULL, 1);
    sp_grid_free(g);
    sp_grid_free(full);
    ballistic_free(&b);
}
END_TEST

START_TEST(test_grid_verlet_out_of_memory_in_a_rebuild_returns_enomem_and_recovers) {
    /* After a list was built and reused, every allocation from the k-th on
     * fails while a call must rebuild with a larger set: ENOMEM (or success
     * when it needed fewer), then a call with memory back is exact. */
    int saw_enomem = 0, saw_ok = 0;
    for (long budget = 0; budget < 40 && !saw_ok; budget++) {
        ballistic_t b = ballistic_new(45, 3000, 34.0f, 0.05f);
        b.s.n = 1000;
        sp_test_alloc_t f;
        sp_test_alloc_init(&f, -1, 0);
        sp_allocator_t al = sp_test_allocator(&f);
        sp_grid_def_t d = def_threads(2);
        d.allocator = &al;
        sp_grid_t *g, *full;
        ck_assert_int_eq(sp_grid_create(&d, &g), 0);
        ck_assert_int_eq(sp_grid_create(NULL, &full), 0);
        warm_up(g, full, &b, NULL);
        sp_test_alloc_set(&f.fail_after, sp_test_alloc_get(&f.allocs) + budget);
        b.s.n = 3000;
        const sp_pair_t *p;
        size_t np;
        int rc = sp_grid_find_pairs_coherent(g, NULL, b.s.x, b.s.y, b.s.z, b.s.r, NULL, b.s.n, &p, &np);
        if (rc == SP_ENOMEM) {
            saw_enomem = 1;
            ck_assert_ptr_null(p);
            ck_assert_uint_eq(np, 0);
        } else {
            ck_assert_int_eq(rc, 0);
            saw_ok = 1;
        }
        sp_test_alloc_set(&f.fail_after, -1);
        for (int t = 0; t < 3; t++) {
            coherent_check(g, full, &b.s, NULL, t == 0);
            ballistic_step(&b);
        }
        sp_grid_free(g);
        sp_grid_free(full);
        ck_assert_int_eq(sp_test_alloc_get(&f.live_bytes), 0);
        ballistic_free(&b);
    }
    ck_assert(saw_enomem);
    ck_assert(saw_ok);
}
END_TEST

START_TEST(test_grid_verlet_out_of_memory_in_a_patch_returns_enomem_and_recovers) {
    /* As above, with one sphere jumping (a patch: new pairs, the merge's
     * second block) instead of a larger set. */
    int saw_enomem = 0, saw_ok = 0;
    for (long budget = 0; budget < 20 && !saw_ok; budget++) {
        ballistic_t b = ballistic_new(46, 3000, 34.0f, 0.05f);
        sp_test_alloc_t f;
        sp_test_alloc_init(&f, -1, 0);
        sp_allocator_t al = sp_test_allocator(&f);
        sp_grid_def_t d = def_threads(1);
        d.allocator = &al;
        sp_grid_t *g, *full;
        ck_assert_int_eq(sp_grid_create(&d, &g), 0);
        ck_assert_int_eq(sp_grid_create(NULL, &full), 0);
        warm_up(g, full, &b, NULL);
        sp_test_alloc_set(&f.fail_after, sp_test_alloc_get(&f.allocs) + budget);
        for (int k = 0; k < 20; k++) /* 20 spheres jump onto others: new pairs */
            b.s.x[k] = b.s.x[2000 + k] + 0.3f, b.s.y[k] = b.s.y[2000 + k], b.s.z[k] = b.s.z[2000 + k];
        const sp_pair_t *p;
        size_t np;
        int rc = sp_grid_find_pairs_coherent(g, NULL, b.s.x, b.s.y, b.s.z, b.s.r, NULL, b.s.n, &p, &np);
        if (rc == SP_ENOMEM) {
            saw_enomem = 1;
            ck_assert_ptr_null(p);
        } else {
            ck_assert_int_eq(rc, 0);
            /* Patched, or rebuilt when the patch's own list could not grow. */
            sp_grid_stats_t st = stats_of(g);
            ck_assert(st.list_patched == 20 || !st.coherent);
            saw_ok = st.list_patched == 20;
        }
        sp_test_alloc_set(&f.fail_after, -1);
        for (int t = 0; t < 3; t++) {
            coherent_check(g, full, &b.s, NULL, t == 0);
            ballistic_step(&b);
        }
        sp_grid_free(g);
        sp_grid_free(full);
        ck_assert_int_eq(sp_test_alloc_get(&f.live_bytes), 0);
        ballistic_free(&b);
    }
    ck_assert(saw_enomem);
    ck_assert(saw_ok);
}
END_TEST

static Suite *grid_suite(void) {
    Suite *su = suite_create("grid");
    struct {
        const char *name;
        const TTest *t;
        int loop;
        double timeout;
    } cases[] = {
        {"random_one_thread", test_grid_random_scenes_match_brute_force_one_thread, (int)NSCENES, 30},
        {"random_two_threads", test_grid_random_scenes_match_brute_force_two_threads, (int)NSCENES, 30},
        {"hash_mode", test_grid_hash_mode_matches_brute_force, (int)NSCENES, 30},
        {"cell_order", test_grid_cell_order_is_same_set_and_thread_independent, 0, 30},
        {"ab_order_threads", test_grid_ab_order_bitwise_identical_for_1_2_4_threads, 0, 30},
        {"kernels", test_grid_scalar_and_simd_kernels_give_identical_output, 0, 30},
        {"empty", test_grid_empty_input_returns_no_pairs, 0, 10},
        {"single", test_grid_single_sphere_returns_no_pairs, 0, 10},
        {"one_cell", test_grid_all_spheres_in_one_cell_give_every_pair_once, 0, 30},
        {"zero_radii", test_grid_zero_radii_points_never_overlap_each_other, 0, 10},
        {"coincident", test_grid_coincident_centres_give_dist_0_normal_plus_x, 0, 10},
        {"touching", test_grid_touching_spheres_are_not_a_pair_and_normal_points_a_to_b, 0, 10},
        {"far_apart", test_grid_far_apart_clusters_switch_to_hash_and_match_brute_force, 0, 30},
        {"huge_coords", test_grid_large_coordinates_near_float_limits_match_brute_force, 0, 30},
        {"nan_inf", test_grid_nan_inf_and_negative_radius_are_rejected, 0, 10},
        {"bad_args", test_grid_bad_arguments_return_einval_or_eoverflow, 0, 10},
        {"oom", test_grid_out_of_memory_returns_enomem_and_recovers, 0, 60},
        {"seed_regression", test_grid_seed_regression_grid_is_used_not_all_pairs, 0, 30},
        {"cell_size", test_grid_caller_cell_size_is_a_minimum, 0, 30},
        {"reuse", test_grid_reused_object_handles_growing_and_shrinking_inputs, 0, 30},
        {"boundaries", test_grid_spheres_on_cell_boundaries_and_negative_coords, 0, 10},
        {"coherent_moving", test_grid_coherent_moving_scene_matches_full_pass_and_brute_force, 2, 60},
        {"coherent_threads", test_grid_coherent_output_is_thread_count_independent, 0, 30},
        {"coherent_ids", test_grid_coherent_ids_follow_spheres_added_removed_and_shuffled, 0, 60},
        {"coherent_adversarial", test_grid_coherent_many_cell_changes_and_adversarial_inputs, 0, 60},
        {"issue_9_plus_zero", test_issue_9_zero_normal_components_are_plus_zero_in_any_order, 0, 10},
        {"coherent_oom", test_grid_coherent_out_of_memory_returns_enomem_and_recovers, 0, 60},
        {"verlet_ballistic", test_grid_verlet_ballistic_scene_reuses_list_rebuilds_and_matches_full_pass, 4, 60},
        {"verlet_jump", test_grid_verlet_sphere_jumping_past_its_skin_rebuilds_and_finds_new_pair, 0, 60},
        {"verlet_radius", test_grid_verlet_radius_growth_rebuilds_and_shrinking_reuses, 0, 60},
        {"verlet_set", test_grid_verlet_set_changes_rebuild_and_stay_exact, 0, 60},
        {"verlet_nan", test_grid_verlet_nan_is_rejected_and_the_list_survives, 0, 60},
        {"verlet_oom", test_grid_verlet_out_of_memory_in_a_rebuild_returns_enomem_and_recovers, 0, 120},
        {"verlet_oom_patch", test_grid_verlet_out_of_memory_in_a_patch_returns_enomem_and_recovers, 0, 60},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(cases[i].timeout));
        if (cases[i].loop)
            tcase_add_loop_test(tc, cases[i].t, 0, cases[i].loop);
        else
            tcase_add_test(tc, cases[i].t);
        suite_add_tcase(su, tc);
    }
    return su;
}

SP_CHECK_MAIN(grid_suite)
