/* check_particles.c: the SoA particle system: cap, emit validation, SIMD
 * integration and ageing, swap-with-last removal, the read-only view, and the
 * seed's defects (AoS layout, `len` written behind the container's back). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "helpers/sp_alloc.h"
#include "helpers/sp_check.h"
#include "spacesim/particles.h"

static sp_particle_def_t pdef(float id, float life) {
    sp_particle_def_t d = {
        .x = id, .y = -id, .z = 2.0f * id, .vx = 1.0f + id, .vy = 0.5f, .vz = -3.0f, .life = life, .mass = id};
    return d;
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

START_TEST(test_particles_create_rejects_zero_cap_and_overflow) {
    sp_particles_t *ps = (sp_particles_t *)0x1;
    ck_assert_int_eq(sp_particles_create(0, NULL, &ps), SP_EINVAL);
    ck_assert_ptr_eq(ps, (sp_particles_t *)0x1);
    ck_assert_int_eq(sp_particles_create(4, NULL, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_particles_create(SIZE_MAX, NULL, &ps), SP_EOVERFLOW);
    ck_assert_int_eq(sp_particles_create(SIZE_MAX / 8, NULL, &ps), SP_EOVERFLOW);
    ck_assert_ptr_eq(ps, (sp_particles_t *)0x1);
    sp_particles_free(NULL);
}
END_TEST

START_TEST(test_particles_create_oom_returns_enomem_and_leaks_nothing) {
    sp_test_alloc_t c;
    for (int k = 1; k <= 2; k++) {
        sp_test_alloc_init(&c, -1, k); /* the k-th allocation fails */
        sp_allocator_t a = sp_test_allocator(&c);
        sp_particles_t *ps = NULL;
        ck_assert_int_eq(sp_particles_create(100, &a, &ps), SP_ENOMEM);
        ck_assert_ptr_null(ps);
        ck_assert_int_eq(sp_test_alloc_get(&c.live_bytes), 0);
    }
    sp_test_alloc_init(&c, -1, 0);
    sp_allocator_t a = sp_test_allocator(&c);
    sp_particles_t *ps = NULL;
    ck_assert_int_eq(sp_particles_create(100, &a, &ps), 0);
    ck_assert_int_gt(sp_test_alloc_get(&c.live_bytes), 8 * 100 * (long)sizeof(float) - 1);
    sp_particles_free(ps);
    ck_assert_int_eq(sp_test_alloc_get(&c.live_bytes), 0);
}
END_TEST

/* Seed defect: array of structs defeated SIMD. Eight separate arrays, each
 * 64-byte aligned and disjoint. */
START_TEST(test_particles_soa_arrays_64_byte_aligned_and_disjoint) {
    sp_particles_t *ps;
    ck_assert_int_eq(sp_particles_create(37, NULL, &ps), 0);
    sp_particles_view_t v = sp_particles_view(ps);
    const float *arr[8] = {v.x, v.y, v.z, v.vx, v.vy, v.vz, v.life, v.mass};
    for (int i = 0; i < 8; i++) {
        ck_assert_uint_eq((uintptr_t)arr[i] % 64, 0);
        for (int j = 0; j < 8; j++) {
            if (i == j) continue;
            /* Each array holds 37 floats without overlapping another. */
            ck_assert(arr[i] + 37 <= arr[j] || arr[j] + 37 <= arr[i]);
        }
    }
    ck_assert_uint_eq(v.count, 0);
    ck_assert_uint_eq(sp_particles_capacity(ps), 37);
    sp_particles_free(ps);
}
END_TEST

START_TEST(test_particles_emit_up_to_cap_then_elimit_unchanged) {
    sp_particles_t *ps;
    ck_assert_int_eq(sp_particles_create(3, NULL, &ps), 0);
    for (int i = 0; i < 3; i++) {
        sp_particle_def_t d = pdef((float)i, 10.0f);
        ck_assert_int_eq(sp_particles_emit(ps, &d), 0);
        ck_assert_uint_eq(sp_particles_count(ps), (size_t)i + 1);
    }
    sp_particle_def_t d = pdef(99.0f, 10.0f);
    ck_assert_int_eq(sp_particles_emit(ps, &d), SP_ELIMIT);
    ck_assert_uint_eq(sp_particles_count(ps), 3);
    sp_particles_view_t v = sp_particles_view(ps);
    ck_assert_uint_eq(v.count, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_float_eq(v.mass[i], (float)i);
        ck_assert_float_eq(v.x[i], (float)i);
        ck_assert_float_eq(v.y[i], -(float)i);
        ck_assert_float_eq(v.z[i], 2.0f * (float)i);
        ck_assert_float_eq(v.vx[i], 1.0f + (float)i);
        ck_assert_float_eq(v.vy[i], 0.5f);
        ck_assert_float_eq(v.vz[i], -3.0f);
        ck_assert_float_eq(v.life[i], 10.0f);
    }
    sp_particles_free(ps);
}
END_TEST

START_TEST(test_particles_emit_rejects_nonpositive_or_nonfinite) {
    sp_particles_t *ps;
    ck_assert_int_eq(sp_particles_create(8, NULL, &ps), 0);
    const float bad_life[] = {0.0f, -1.0f, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_life / sizeof bad_life[0]; i++) {
        sp_particle_def_t d = pdef(1.0f, bad_life[i]);
        ck_assert_int_eq(sp_particles_emit(ps, &d), SP_EINVAL);
    }
    sp_particle_def_t d = pdef(1.0f, 1.0f);
    d.vx = INFINITY;
    ck_assert_int_eq(sp_particles_emit(ps, &d), SP_EINVAL);
    d = pdef(1.0f, 1.0f);
    d.z = NAN;
    ck_assert_int_eq(sp_particles_emit(ps, &d), SP_EINVAL);
    ck_assert_uint_eq(sp_particles_count(ps), 0);
    sp_particles_free(ps);
}
END_TEST

START_TEST(test_particles_update_integrates_and_ages_exactly) {
    sp_particles_t *ps;
    const size_t n = 45; /* not a multiple of any vector width */
    ck_assert_int_eq(sp_particles_create(n, NULL, &ps), 0);
    for (size_t i = 0; i < n; i++) {
        sp_particle_def_t d = pdef((float)i * 0.37f, 5.0f);
        ck_assert_int_eq(sp_particles_emit(ps, &d), 0);
    }
    const float dt = 1.0f / 30.0f;
    size_t removed = 99;
    ck_assert_int_eq(sp_particles_update(ps, dt, &removed), 0);
    ck_assert_uint_eq(removed, 0);
    sp_particles_view_t v = sp_particles_view(ps);
    ck_assert_uint_eq(v.count, n);
    for (size_t i = 0; i < n; i++) {
        sp_particle_def_t d = pdef((float)i * 0.37f, 5.0f);
        volatile float tx = d.vx * dt, ty = d.vy * dt, tz = d.vz * dt; /* unfused reference */
        ck_assert_uint_eq(fbits(v.x[i]), fbits(d.x + tx));
        ck_assert_uint_eq(fbits(v.y[i]), fbits(d.y + ty));
        ck_assert_uint_eq(fbits(v.z[i]), fbits(d.z + tz));
        ck_assert_uint_eq(fbits(v.life[i]), fbits(5.0f - dt));
        ck_assert_uint_eq(fbits(v.vx[i]), fbits(d.vx)); /* velocity untouched */
        ck_assert_uint_eq(fbits(v.mass[i]), fbits(d.mass));
    }
    sp_particles_free(ps);
}
END_TEST

START_TEST(test_particles_update_rejects_bad_dt_unchanged) {
    sp_particles_t *ps;
    ck_assert_int_eq(sp_particles_create(4, NULL, &ps), 0);
    sp_particle_def_t d = pdef(1.0f, 1.0f);
    ck_assert_int_eq(sp_particles_emit(ps, &d), 0);
    ck_assert_int_eq(sp_particles_update(ps, -0.1f, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_particles_update(ps, NAN, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_particles_update(ps, INFINITY, NULL), SP_EINVAL);
    sp_particles_view_t v = sp_particles_view(ps);
    ck_assert_uint_eq(v.count, 1);
    ck_assert_float_eq(v.x[0], 1.0f);
    ck_assert_float_eq(v.life[0], 1.0f);
    /* dt == 0 is valid and changes nothing. */
    ck_assert_int_eq(sp_particles_update(ps, 0.0f, NULL), 0);
    v = sp_particles_view(ps); /* the old view expired with the update */
    ck_assert_float_eq(v.x[0], 1.0f);
    ck_assert_float_eq(v.life[0], 1.0f);
    ck_assert_uint_eq(sp_particles_count(ps), 1);
    sp_particles_free(ps);
}
END_TEST

/* Swap-with-last, holes filled in ascending order: ids 0..5, kill 1 and 3:
 * hole 1 <- 5: [0 5 2 3 4]; hole 3 <- 4: [0 5 2 4]. Then ids 0..7 with 2, 6
 * and 7 dead: hole 2 <- 5 after dropping the dead 7 and 6: [0 1 5 3 4].
 * Order is not preserved; this pins down the documented behaviour. */
START_TEST(test_particles_remove_dead_swaps_last_into_hole_order_not_kept) {
    sp_particles_t *ps;
    ck_assert_int_eq(sp_particles_create(6, NULL, &ps), 0);
    for (int i = 0; i < 6; i++) {
        sp_particle_def_t d = pdef((float)i, (i == 1 || i == 3) ? 0.5f : 2.0f);
        ck_assert_int_eq(sp_particles_emit(ps, &d), 0);
    }
    size_t removed = 0;
    ck_assert_int_eq(sp_particles_update(ps, 0.5f, &removed), 0); /* life == dt: dead (life <= 0) */
    ck_assert_uint_eq(removed, 2);
    sp_particles_view_t v = sp_particles_view(ps);
    ck_assert_uint_eq(v.count, 4);
    const float want[4] = {0, 5, 2, 4};
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq(v.mass[i], want[i]);
        /* Every field moved together with its particle. */
        volatile float t = (1.0f + want[i]) * 0.5f;
        ck_assert_float_eq(v.x[i], want[i] + t);
        ck_assert_float_eq(v.vx[i], 1.0f + want[i]);
        ck_assert_float_eq(v.life[i], 1.5f);
    }
    /* Dead particles at the end are dropped, not moved into holes. */
    sp_particles_clear(ps);
    sp_particles_t *ps8;
    ck_assert_int_eq(sp_particles_create(8, NULL, &ps8), 0);
    for (int i = 0; i < 8; i++) {
        sp_particle_def_t d = pdef((float)i, (i == 2 || i == 6 || i == 7) ? 0.5f : 2.0f);
        ck_assert_int_eq(sp_particles_emit(ps8, &d), 0);
    }
    ck_assert_int_eq(sp_particles_update(ps8, 0.5f, &removed), 0);
    ck_assert_uint_eq(removed, 3);
    v = sp_particles_view(ps8);
    ck_assert_uint_eq(v.count, 5);
    const float want8[5] = {0, 1, 5, 3, 4};
    for (int i = 0; i < 5; i++) ck_assert_float_eq(v.mass[i], want8[i]);
    sp_particles_free(ps8);
    for (int i = 0; i < 4; i++) {
        sp_particle_def_t d = pdef((float)i, 1.0f);
        ck_assert_int_eq(sp_particles_emit(ps, &d), 0);
    }
    /* All dead at once; last one dead; empty update. */
    ck_assert_int_eq(sp_particles_update(ps, 2.0f, &removed), 0);
    ck_assert_uint_eq(removed, 4);
    ck_assert_uint_eq(sp_particles_count(ps), 0);
    ck_assert_int_eq(sp_particles_update(ps, 1.0f, &removed), 0);
    ck_assert_uint_eq(removed, 0);
    sp_particles_free(ps);
}
END_TEST

/* Seed defect: `len` written behind the container's back. The view is a
 * copy; editing it changes nothing, and the container's count always equals
 * the number of live particles it reports. */
START_TEST(test_particles_count_owned_by_container_view_is_a_copy) {
    sp_particles_t *ps;
    ck_assert_int_eq(sp_particles_create(10, NULL, &ps), 0);
    for (int i = 0; i < 10; i++) {
        sp_particle_def_t d = pdef((float)i, (float)(i + 1));
        ck_assert_int_eq(sp_particles_emit(ps, &d), 0);
    }
    sp_particles_view_t v = sp_particles_view(ps);
    v.count = 0;
    ck_assert_uint_eq(sp_particles_count(ps), 10);
    ck_assert_uint_eq(sp_particles_view(ps).count, 10);
    size_t removed;
    ck_assert_int_eq(sp_particles_update(ps, 3.5f, &removed), 0);
    ck_assert_uint_eq(removed, 3);
    v = sp_particles_view(ps);
    ck_assert_uint_eq(v.count, 7);
    ck_assert_uint_eq(sp_particles_count(ps), 7);
    for (size_t i = 0; i < v.count; i++) ck_assert(v.life[i] > 0.0f);
    /* Room again: exactly 3 more emits fit. */
    for (int i = 0; i < 3; i++) {
        sp_particle_def_t d = pdef(100.0f + (float)i, 1.0f);
        ck_assert_int_eq(sp_particles_emit(ps, &d), 0);
    }
    sp_particle_def_t d = pdef(200.0f, 1.0f);
    ck_assert_int_eq(sp_particles_emit(ps, &d), SP_ELIMIT);
    sp_particles_clear(ps);
    ck_assert_uint_eq(sp_particles_count(ps), 0);
    ck_assert_uint_eq(sp_particles_view(ps).count, 0);
    ck_assert_int_eq(sp_particles_emit(ps, &d), 0);
    sp_particles_free(ps);
}
END_TEST

/* Many ticks against a simple AoS model: same live set, each particle's
 * fields bit-identical (found by its id in mass). */
typedef struct {
    float x, y, z, vx, vy, vz, life, mass;
    int alive;
} model_t;

START_TEST(test_particles_many_ticks_match_aos_model) {
    enum { N = 3000, TICKS = 60 };
    static model_t m[N];
    sp_particles_t *ps;
    ck_assert_int_eq(sp_particles_create(N, NULL, &ps), 0);
    uint32_t r = 777;
    for (int i = 0; i < N; i++) {
        r = r * 1664525u + 1013904223u;
        float life = 0.01f + (float)(r >> 8) / 16777216.0f * 2.5f;
        sp_particle_def_t d = {.x = (float)i * 0.1f, .y = 1.0f, .z = -2.0f, .vx = (float)(r & 255) - 128.0f,
                               .vy = 0.25f * (float)(i % 7), .vz = -1.5f, .life = life, .mass = (float)i};
        ck_assert_int_eq(sp_particles_emit(ps, &d), 0);
        m[i] = (model_t){d.x, d.y, d.z, d.vx, d.vy, d.vz, d.life, d.mass, 1};
    }
    const float dt = 1.0f / 30.0f;
    size_t alive = N;
    static int seen[N];
    for (int t = 0; t < TICKS; t++) {
        size_t removed, want_removed = 0;
        ck_assert_int_eq(sp_particles_update(ps, dt, &removed), 0);
        for (int i = 0; i < N; i++) {
            if (!m[i].alive) continue;
            volatile float tx = m[i].vx * dt, ty = m[i].vy * dt, tz = m[i].vz * dt;
            m[i].x += tx;
            m[i].y += ty;
            m[i].z += tz;
            m[i].life -= dt;
            if (m[i].life <= 0.0f) {
                m[i].alive = 0;
                want_removed++;
            }
        }
        alive -= want_removed;
        ck_assert_uint_eq(removed, want_removed);
        sp_particles_view_t v = sp_particles_view(ps);
        ck_assert_uint_eq(v.count, alive);
        memset(seen, 0, sizeof seen);
        for (size_t k = 0; k < v.count; k++) {
            int id = (int)v.mass[k];
            ck_assert(id >= 0 && id < N && m[id].alive && !seen[id]);
            seen[id] = 1;
            /* One assertion per particle keeps this fast under sanitizers. */
            int same = fbits(v.x[k]) == fbits(m[id].x) && fbits(v.y[k]) == fbits(m[id].y) &&
                       fbits(v.z[k]) == fbits(m[id].z) && fbits(v.life[k]) == fbits(m[id].life) &&
                       fbits(v.vx[k]) == fbits(m[id].vx) && fbits(v.vy[k]) == fbits(m[id].vy) &&
                       fbits(v.vz[k]) == fbits(m[id].vz);
            ck_assert_msg(same, "tick %d: particle %d differs from the model", t, id);
        }
    }
    ck_assert_uint_gt(alive, 0);   /* the run exercised both outcomes */
    ck_assert_uint_lt(alive, N);
    sp_particles_free(ps);
}
END_TEST

static Suite *particles_suite(void) {
    Suite *s = suite_create("particles");
    TCase *tc;

    tc = tcase_create("create");
    tcase_add_test(tc, test_particles_create_rejects_zero_cap_and_overflow);
    tcase_add_test(tc, test_particles_create_oom_returns_enomem_and_leaks_nothing);
    tcase_add_test(tc, test_particles_soa_arrays_64_byte_aligned_and_disjoint);
    suite_add_tcase(s, tc);

    tc = tcase_create("emit");
    tcase_add_test(tc, test_particles_emit_up_to_cap_then_elimit_unchanged);
    tcase_add_test(tc, test_particles_emit_rejects_nonpositive_or_nonfinite);
    suite_add_tcase(s, tc);

    tc = tcase_create("update");
    tcase_set_timeout(tc, sp_timeout(20));
    tcase_add_test(tc, test_particles_update_integrates_and_ages_exactly);
    tcase_add_test(tc, test_particles_update_rejects_bad_dt_unchanged);
    tcase_add_test(tc, test_particles_many_ticks_match_aos_model);
    suite_add_tcase(s, tc);

    tc = tcase_create("remove_dead");
    tcase_add_test(tc, test_particles_remove_dead_swaps_last_into_hole_order_not_kept);
    suite_add_tcase(s, tc);

    tc = tcase_create("count_ownership");
    tcase_add_test(tc, test_particles_count_owned_by_container_view_is_a_copy);
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(particles_suite)
