/* check_simd.c: every supported level against the scalar level and against
 * references computed here, on lengths 0..67 and starting offsets 0..15
 * floats, with guard zones checked so a tail never reads or writes past its
 * range; dispatch rules and SP_SIMD forcing (in a re-executed child). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <immintrin.h>

#include "helpers/sp_check.h"
#include "spacesim/simd.h"

#define MAXN 67
#define BUFN (16 + MAXN + 32)
static const float SENTINEL = -12345.5f;

static _Alignas(64) float A[BUFN], B[BUFN], C[BUFN], D[BUFN], E[BUFN], F[BUFN];
static _Alignas(64) float R1[BUFN], R2[BUFN], R3[BUFN];

static uint32_t rng_state = 12345u;
static float rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return ((float)(rng_state >> 8) / 16777216.0f) * 200.0f - 100.0f;
}
static void fill_rand(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = rnd();
}
static void fill_const(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}
static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* The whole buffer outside [off, off+n) must still hold SENTINEL. */
static void check_guard(const float *buf, size_t off, size_t n, const char *what) {
    for (size_t i = 0; i < BUFN; i++) {
        if (i >= off && i < off + n) continue;
        ck_assert_msg(fbits(buf[i]) == fbits(SENTINEL), "%s wrote outside its range at %zu (off %zu n %zu)",
                      what, i, off, n);
    }
}

/* Unfused references, written as two statements (no contraction). */
static float ref_muladd(float p, float v, float s) {
    volatile float t = v * s;
    return p + t;
}
/* Fused reference: only called when the CPU has FMA (levels with fused=1). */
__attribute__((target("fma"))) static float ref_fma(float a, float x, float y) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(x), _mm_set_ss(y)));
}

static const sp_simd_ops_t *level_or_skip(int l) { return sp_simd_ops_for((sp_simd_level_t)l); }

/* Offsets for the three operands of one trial: all 16 residues, mixed. */
#define OFF_A(o) ((size_t)(o))
#define OFF_B(o) ((size_t)(((o) * 5 + 3) % 16))
#define OFF_D(o) ((size_t)(((o) * 7 + 1) % 16))

/* ------------------------------------------------------------------ dispatch */

START_TEST(test_simd_levels_up_to_cpu_have_tables_above_are_null) {
    sp_simd_level_t cpu = sp_simd_cpu_level();
    ck_assert_int_ge(cpu, SP_SIMD_SCALAR);
    ck_assert_int_lt(cpu, SP_SIMD_LEVEL_COUNT);
    for (int l = 0; l < SP_SIMD_LEVEL_COUNT; l++) {
        const sp_simd_ops_t *ops = sp_simd_ops_for((sp_simd_level_t)l);
        if (l <= (int)cpu) {
            ck_assert_ptr_nonnull(ops);
            ck_assert_int_eq(ops->level, l);
            ck_assert_str_eq(ops->name, sp_simd_name((sp_simd_level_t)l));
            ck_assert_int_eq(ops->fused, l >= SP_SIMD_AVX2);
        } else {
            ck_assert_ptr_null(ops);
        }
    }
    ck_assert_ptr_null(sp_simd_ops_for(SP_SIMD_LEVEL_COUNT));
    ck_assert_ptr_null(sp_simd_ops_for((sp_simd_level_t)-1));
}
END_TEST

START_TEST(test_simd_chosen_level_follows_env_and_cpu) {
    sp_simd_level_t want = sp_simd_choose(getenv("SP_SIMD"), sp_simd_cpu_level());
    ck_assert_int_eq(sp_simd_level(), want);
    ck_assert_str_eq(sp_simd_level_name(), sp_simd_name(want));
    ck_assert_ptr_eq(sp_simd_ops(), sp_simd_ops_for(want));
}
END_TEST

START_TEST(test_simd_choose_clamps_to_cpu_and_ignores_unknown) {
    ck_assert_int_eq(sp_simd_choose("scalar", SP_SIMD_AVX512), SP_SIMD_SCALAR);
    ck_assert_int_eq(sp_simd_choose("sse2", SP_SIMD_AVX512), SP_SIMD_SSE2);
    ck_assert_int_eq(sp_simd_choose("AVX2", SP_SIMD_AVX512), SP_SIMD_AVX2);
    ck_assert_int_eq(sp_simd_choose("avx512", SP_SIMD_AVX512), SP_SIMD_AVX512);
    /* Never above what the CPU supports. */
    ck_assert_int_eq(sp_simd_choose("avx512", SP_SIMD_SSE2), SP_SIMD_SSE2);
    ck_assert_int_eq(sp_simd_choose("avx2", SP_SIMD_SCALAR), SP_SIMD_SCALAR);
    /* Unset, empty and unknown values are ignored. */
    ck_assert_int_eq(sp_simd_choose(NULL, SP_SIMD_AVX2), SP_SIMD_AVX2);
    ck_assert_int_eq(sp_simd_choose("", SP_SIMD_AVX2), SP_SIMD_AVX2);
    ck_assert_int_eq(sp_simd_choose("avx1024", SP_SIMD_AVX512), SP_SIMD_AVX512);
    ck_assert_int_eq(sp_simd_parse_level("neon"), SP_EINVAL);
    ck_assert_int_eq(sp_simd_parse_level(NULL), SP_EINVAL);
    ck_assert_str_eq(sp_simd_name((sp_simd_level_t)9), "unknown");
}
END_TEST

/* Run this binary again with SP_SIMD=value (NULL: unset) and "--print-level";
 * the child prints "<chosen> <cpu> <fused-axpy 0/1>". */
static void run_child(const char *value, char *out, size_t outsz) {
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        if (value) setenv("SP_SIMD", value, 1);
        else unsetenv("SP_SIMD");
        execl("/proc/self/exe", "check_simd", "--print-level", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < outsz && (r = read(fds[0], out + got, outsz - 1 - got)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        ck_assert_int_gt(r, 0);
        got += (size_t)r;
    }
    out[got] = '\0';
    close(fds[0]);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (status %d)", st);
}

START_TEST(test_simd_env_forces_level_in_fresh_process) {
    static const char *const values[] = {"scalar", "sse2", "avx2", "avx512", "bogus", NULL};
    sp_simd_level_t cpu = sp_simd_cpu_level();
    for (size_t k = 0; k < sizeof values / sizeof values[0]; k++) {
        char out[128], chosen[32], cpuname[32];
        int fused = -1;
        run_child(values[k], out, sizeof out);
        ck_assert_int_eq(sscanf(out, "%31s %31s %d", chosen, cpuname, &fused), 3);
        sp_simd_level_t want = sp_simd_choose(values[k], cpu);
        ck_assert_msg(strcmp(chosen, sp_simd_name(want)) == 0, "SP_SIMD=%s chose %s, want %s",
                      values[k] ? values[k] : "(unset)", chosen, sp_simd_name(want));
        ck_assert_str_eq(cpuname, sp_simd_name(cpu));
        /* The forced level is really the one sp_f32_axpy runs. */
        ck_assert_int_eq(fused, want >= SP_SIMD_AVX2);
    }
}
END_TEST

/* Child side of the test above. a*x = 1 + 2^-11 + 2^-24 rounds to 1 + 2^-11
 * (tie to even), so y = -1 + a*x is 2^-11 unfused and 2^-11 + 2^-24 fused. */
static int print_level(void) {
    float y[1] = {-1.0f}, x[1] = {1.0f + 0x1p-12f};
    sp_f32_axpy(y, 1.0f + 0x1p-12f, x, 1);
    int fused = y[0] == 0x1p-11f + 0x1p-24f;
    printf("%s %s %d\n", sp_simd_level_name(), sp_simd_name(sp_simd_cpu_level()), fused);
    return 0;
}

/* ------------------------------------------------------------------ exact kernels */

START_TEST(test_simd_add_exact_vs_scalar_all_lengths_offsets) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    for (size_t n = 0; n <= MAXN; n++) {
        for (int o = 0; o < 16; o++) {
            fill_rand(A, BUFN);
            fill_rand(B, BUFN);
            fill_const(D, BUFN, SENTINEL);
            fill_const(R1, BUFN, SENTINEL);
            ops->add(D + OFF_D(o), A + OFF_A(o), B + OFF_B(o), n);
            sp_simd_ops_for(SP_SIMD_SCALAR)->add(R1 + OFF_D(o), A + OFF_A(o), B + OFF_B(o), n);
            for (size_t i = 0; i < n; i++) {
                float want = A[OFF_A(o) + i] + B[OFF_B(o) + i];
                ck_assert_msg(fbits(D[OFF_D(o) + i]) == fbits(want), "%s add n %zu off %d i %zu", ops->name, n, o, i);
                ck_assert_uint_eq(fbits(R1[OFF_D(o) + i]), fbits(want));
            }
            check_guard(D, OFF_D(o), n, ops->name);
        }
    }
    /* In place: dst == a. */
    fill_rand(A, BUFN);
    fill_rand(B, BUFN);
    memcpy(C, A, sizeof A);
    ops->add(A + 1, A + 1, B + 2, MAXN);
    for (size_t i = 0; i < MAXN; i++) ck_assert_uint_eq(fbits(A[1 + i]), fbits(C[1 + i] + B[2 + i]));
}
END_TEST

START_TEST(test_simd_scale_exact_vs_scalar_all_lengths_offsets) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    const float s = 0.3f;
    for (size_t n = 0; n <= MAXN; n++) {
        for (int o = 0; o < 16; o++) {
            fill_rand(A, BUFN);
            fill_const(D, BUFN, SENTINEL);
            ops->scale(D + OFF_D(o), A + OFF_A(o), s, n);
            for (size_t i = 0; i < n; i++)
                ck_assert_msg(fbits(D[OFF_D(o) + i]) == fbits(A[OFF_A(o) + i] * s), "%s scale n %zu off %d i %zu",
                              ops->name, n, o, i);
            check_guard(D, OFF_D(o), n, ops->name);
        }
    }
}
END_TEST

START_TEST(test_simd_integrate_exact_unfused_all_lengths_offsets) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    const float dt = 1.0f / 60.0f;
    for (size_t n = 0; n <= MAXN; n++) {
        for (int o = 0; o < 16; o++) {
            fill_const(D, BUFN, SENTINEL);
            fill_rand(D + OFF_D(o), n);
            memcpy(R1, D, sizeof D);
            memcpy(R2, D, sizeof D);
            fill_rand(B, BUFN);
            ops->integrate(D + OFF_D(o), B + OFF_B(o), dt, n);
            sp_simd_ops_for(SP_SIMD_SCALAR)->integrate(R2 + OFF_D(o), B + OFF_B(o), dt, n);
            for (size_t i = 0; i < n; i++) {
                float want = ref_muladd(R1[OFF_D(o) + i], B[OFF_B(o) + i], dt);
                ck_assert_msg(fbits(D[OFF_D(o) + i]) == fbits(want), "%s integrate n %zu off %d i %zu", ops->name, n,
                              o, i);
                ck_assert_uint_eq(fbits(R2[OFF_D(o) + i]), fbits(want));
            }
            check_guard(D, OFF_D(o), n, ops->name);
        }
    }
}
END_TEST

START_TEST(test_simd_integrate3_equals_three_integrates) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    const float dt = 0.0337f;
    for (size_t n = 0; n <= MAXN; n++) {
        for (int o = 0; o < 16; o++) {
            size_t ox = OFF_D(o), oy = OFF_A(o), oz = OFF_B(o);
            fill_const(D, BUFN, SENTINEL);
            fill_const(E, BUFN, SENTINEL);
            fill_const(F, BUFN, SENTINEL);
            fill_rand(D + ox, n);
            fill_rand(E + oy, n);
            fill_rand(F + oz, n);
            memcpy(R1, D, sizeof D);
            memcpy(R2, E, sizeof E);
            memcpy(R3, F, sizeof F);
            fill_rand(A, BUFN);
            fill_rand(B, BUFN);
            fill_rand(C, BUFN);
            ops->integrate3(D + ox, E + oy, F + oz, A + oz, B + ox, C + oy, dt, n);
            const sp_simd_ops_t *sc = sp_simd_ops_for(SP_SIMD_SCALAR);
            sc->integrate(R1 + ox, A + oz, dt, n);
            sc->integrate(R2 + oy, B + ox, dt, n);
            sc->integrate(R3 + oz, C + oy, dt, n);
            ck_assert_msg(memcmp(D, R1, sizeof D) == 0, "%s integrate3 x n %zu off %d", ops->name, n, o);
            ck_assert_msg(memcmp(E, R2, sizeof E) == 0, "%s integrate3 y n %zu off %d", ops->name, n, o);
            ck_assert_msg(memcmp(F, R3, sizeof F) == 0, "%s integrate3 z n %zu off %d", ops->name, n, o);
            check_guard(D, ox, n, ops->name);
            check_guard(E, oy, n, ops->name);
            check_guard(F, oz, n, ops->name);
        }
    }
}
END_TEST

/* Seed defect: its kernels had no fused multiply-add. Fused levels must match
 * an FMA reference bit for bit; unfused ones the mul-then-add reference. */
START_TEST(test_simd_axpy_exact_fused_or_unfused_per_level) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    const float a = -1.7f;
    for (size_t n = 0; n <= MAXN; n++) {
        for (int o = 0; o < 16; o++) {
            fill_const(D, BUFN, SENTINEL);
            fill_rand(D + OFF_D(o), n);
            memcpy(R1, D, sizeof D);
            fill_rand(A, BUFN);
            ops->axpy(D + OFF_D(o), a, A + OFF_A(o), n);
            for (size_t i = 0; i < n; i++) {
                float y0 = R1[OFF_D(o) + i], x = A[OFF_A(o) + i];
                float want = ops->fused ? ref_fma(a, x, y0) : ref_muladd(y0, x, a);
                ck_assert_msg(fbits(D[OFF_D(o) + i]) == fbits(want), "%s axpy n %zu off %d i %zu", ops->name, n, o,
                              i);
            }
            check_guard(D, OFF_D(o), n, ops->name);
        }
    }
}
END_TEST

/* age: life -= dt exactly, and the death mask matches life <= 0 bit for bit,
 * across 64-bit word boundaries (lengths up to 200); mask words past the
 * covering ones are untouched; bits past n are zero. */
START_TEST(test_simd_age_exact_with_death_mask_all_lengths_offsets) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    static _Alignas(64) float L[16 + 200 + 16], R[16 + 200 + 16];
    uint64_t mask[6];
    const float dt = 1.0f / 30.0f;
    for (size_t n = 0; n <= 200; n += (n < 70 ? 1 : 13)) {
        for (int o = 0; o < 16; o++) {
            for (size_t i = 0; i < n; i++) {
                /* Around zero after ageing, including exactly 0 and -0. */
                L[o + i] = (i % 9 == 0) ? dt : (i % 11 == 0) ? -0.0f : rnd() * 0.001f + dt * 0.5f;
            }
            memcpy(R, L, sizeof L);
            for (int w = 0; w < 6; w++) mask[w] = 0xA5A5A5A5A5A5A5A5ull;
            size_t got = ops->age(L + o, dt, n, mask);
            size_t want = 0, words = (n + 63) / 64;
            for (size_t i = 0; i < n; i++) {
                float l = R[o + i] - dt;
                int dead = l <= 0.0f;
                want += (size_t)dead;
                ck_assert_msg(fbits(L[o + i]) == fbits(l), "%s age n %zu off %d i %zu", ops->name, n, o, i);
                ck_assert_msg((int)((mask[i / 64] >> (i % 64)) & 1) == dead, "%s age bit n %zu off %d i %zu",
                              ops->name, n, o, i);
            }
            ck_assert_uint_eq(got, want);
            if (n % 64) ck_assert_uint_eq(mask[words - 1] >> (n % 64), 0);
            for (size_t w = words; w < 6; w++) ck_assert_uint_eq(mask[w], 0xA5A5A5A5A5A5A5A5ull);
            ck_assert_int_eq(memcmp(L, R, (size_t)o * sizeof(float)), 0); /* before the range */
            ck_assert_int_eq(memcmp(L + o + n, R + o + n, (16 - (size_t)o + 16 + 200 - n) * sizeof(float)), 0);
            memcpy(L, R, sizeof L);
            ck_assert_uint_eq(ops->age(L + o, dt, n, NULL), want); /* count only */
        }
    }
}
END_TEST

/* ------------------------------------------------------------------ toleranced kernels */

START_TEST(test_simd_dot_within_tolerance_all_lengths_offsets) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    for (size_t n = 0; n <= MAXN; n++) {
        for (int o = 0; o < 16; o++) {
            fill_rand(A, BUFN);
            fill_rand(B, BUFN);
            double ref = 0.0, mag = 0.0;
            for (size_t i = 0; i < n; i++) {
                double p = (double)A[OFF_A(o) + i] * (double)B[OFF_B(o) + i];
                ref += p;
                mag += fabs(p);
            }
            float got = ops->dot(A + OFF_A(o), B + OFF_B(o), n);
            float sc = sp_simd_ops_for(SP_SIMD_SCALAR)->dot(A + OFF_A(o), B + OFF_B(o), n);
            double tol = 1e-6 * mag + 1e-30;
            ck_assert_msg(fabs(got - ref) <= tol, "%s dot n %zu off %d: %g vs %g", ops->name, n, o, got, ref);
            ck_assert_msg(fabs(got - sc) <= 2 * tol, "%s dot vs scalar n %zu", ops->name, n);
            if (n == 0) ck_assert_uint_eq(fbits(got), fbits(0.0f));
        }
    }
    /* A known value: sum of i*i for i < 67 = 98021 (exact in float). */
    for (size_t i = 0; i < MAXN; i++) A[i + 3] = (float)i;
    ck_assert_float_eq(ops->dot(A + 3, A + 3, MAXN), 98021.0f);
}
END_TEST

static void check_unit(const float *v, const float *orig, size_t n, const char *name) {
    double ss = 0.0, len2 = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)orig[i] * orig[i];
    double inv = 1.0 / sqrt(ss);
    for (size_t i = 0; i < n; i++) {
        double want = orig[i] * inv;
        ck_assert_msg(fabs(v[i] - want) <= 2e-6 * fabs(want) + 1e-7, "%s normalize n %zu i %zu: %g vs %g", name, n,
                      i, v[i], want);
        len2 += (double)v[i] * v[i];
    }
    ck_assert_msg(fabs(len2 - 1.0) < 1e-5, "%s normalize n %zu length^2 %g", name, n, len2);
}

START_TEST(test_simd_normalize_unit_length_all_lengths_offsets) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    for (size_t n = 1; n <= MAXN; n++) {
        for (int o = 0; o < 16; o++) {
            fill_const(D, BUFN, SENTINEL);
            fill_rand(D + OFF_D(o), n);
            memcpy(R1, D + OFF_D(o), n * sizeof(float));
            ops->normalize(D + OFF_D(o), n);
            check_unit(D + OFF_D(o), R1, n, ops->name);
            check_guard(D, OFF_D(o), n, ops->name);
        }
    }
    ops->normalize(NULL, 0); /* n == 0 touches nothing */
}
END_TEST

START_TEST(test_simd_normalize_zero_stays_zero_extremes_normalise) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    for (size_t n = 1; n <= MAXN; n += 11) {
        fill_const(D, BUFN, 0.0f);
        ops->normalize(D + 1, n);
        for (size_t i = 0; i < BUFN; i++) ck_assert_uint_eq(fbits(D[i]), 0u);
        /* Squares underflow (1e-30^2) or overflow (1e30^2) float: still unit. */
        const float mags[] = {1e-30f, 1e-42f /* subnormal */, 1e30f, 3e38f};
        for (size_t m = 0; m < sizeof mags / sizeof mags[0]; m++) {
            for (size_t i = 0; i < n; i++) D[i] = mags[m] * (0.2f * (float)((i % 5) + 1)) * ((i & 1) ? -1.0f : 1.0f);
            for (size_t i = 0; i < n; i++) ck_assert(isfinite(D[i]));
            memcpy(R1, D, n * sizeof(float));
            ops->normalize(D, n);
            check_unit(D, R1, n, ops->name);
        }
        /* A NaN or infinite element makes the result NaN. */
        fill_const(D, BUFN, 1.0f);
        D[n - 1] = INFINITY;
        ops->normalize(D, n);
        ck_assert(isnan(D[0]));
    }
    /* 3-4-5. */
    D[0] = 3.0f;
    D[1] = 4.0f;
    ops->normalize(D, 2);
    ck_assert_float_eq_tol(D[0], 0.6f, 1e-7f);
    ck_assert_float_eq_tol(D[1], 0.8f, 1e-7f);
}
END_TEST

/* Arrays ending exactly at a page followed by an inaccessible page: no level
 * may touch memory past the end (masked tails really are masked). */
START_TEST(test_simd_tails_at_page_end_do_not_fault) {
    const sp_simd_ops_t *ops = level_or_skip(_i);
    if (ops == NULL) return;
    long pg = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, (size_t)pg * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(m != MAP_FAILED);
    ck_assert_int_eq(mprotect(m + pg * 3, (size_t)pg, PROT_NONE), 0);
    float *end = (float *)(m + pg * 3); /* one past the last accessible float */
    for (size_t n = 0; n <= MAXN; n++) {
        float *p = end - n, *q = p; /* in-place operands */
        for (size_t i = 0; i < n; i++) p[i] = (float)i + 1.0f;
        ops->add(p, q, p, n);
        ops->scale(p, p, 0.5f, n);
        ops->axpy(p, 2.0f, q, n);
        ops->integrate(p, q, 0.25f, n);
        ops->integrate3(p, p, p, q, q, q, 0.0f, n);
        uint64_t mask[2];
        ck_assert_uint_eq(ops->age(p, -1.0f, n, mask), 0);
        (void)ops->dot(p, q, n);
        ops->normalize(p, n);
        for (size_t i = 0; i < n; i++) ck_assert(p[i] > 0.0f);
    }
    munmap(m, (size_t)pg * 4);
}
END_TEST

/* The dispatched sp_f32_* entry points run the chosen level's kernels. */
START_TEST(test_simd_public_entry_points_match_chosen_table) {
    const sp_simd_ops_t *ops = sp_simd_ops();
    fill_rand(A, BUFN);
    fill_rand(B, BUFN);
    sp_f32_add(D, A, B, MAXN);
    ops->add(R1, A, B, MAXN);
    ck_assert_int_eq(memcmp(D, R1, MAXN * sizeof(float)), 0);
    sp_f32_scale(D, A, 2.5f, MAXN);
    ops->scale(R1, A, 2.5f, MAXN);
    ck_assert_int_eq(memcmp(D, R1, MAXN * sizeof(float)), 0);
    memcpy(D, A, sizeof A);
    memcpy(R1, A, sizeof A);
    sp_f32_axpy(D, 0.7f, B, MAXN);
    ops->axpy(R1, 0.7f, B, MAXN);
    ck_assert_int_eq(memcmp(D, R1, MAXN * sizeof(float)), 0);
    ck_assert_uint_eq(fbits(sp_f32_dot(A, B, MAXN)), fbits(ops->dot(A, B, MAXN)));
    memcpy(D, A, sizeof A);
    memcpy(R1, A, sizeof A);
    sp_f32_normalize(D, MAXN);
    ops->normalize(R1, MAXN);
    ck_assert_int_eq(memcmp(D, R1, MAXN * sizeof(float)), 0);
    memcpy(D, A, sizeof A);
    memcpy(R1, A, sizeof A);
    sp_f32_integrate(D, B, 0.5f, MAXN);
    ops->integrate(R1, B, 0.5f, MAXN);
    ck_assert_int_eq(memcmp(D, R1, MAXN * sizeof(float)), 0);
    memcpy(D, A, sizeof A);
    memcpy(E, B, sizeof B);
    memcpy(F, A, sizeof A);
    memcpy(R1, A, sizeof A);
    uint64_t m1[2], m2[2];
    ck_assert_uint_eq(sp_f32_age(D, 3.0f, MAXN, m1), ops->age(R1, 3.0f, MAXN, m2));
    ck_assert_int_eq(memcmp(m1, m2, sizeof m1), 0);
    ck_assert_int_eq(memcmp(D, R1, MAXN * sizeof(float)), 0);
    memcpy(D, A, sizeof A);
    sp_f32_integrate3(D, E, F, B, A, B, 0.25f, MAXN);
    for (size_t i = 0; i < MAXN; i++) {
        ck_assert_uint_eq(fbits(D[i]), fbits(ref_muladd(A[i], B[i], 0.25f)));
        ck_assert_uint_eq(fbits(E[i]), fbits(ref_muladd(B[i], A[i], 0.25f)));
    }
}
END_TEST

static Suite *simd_suite(void) {
    Suite *s = suite_create("simd");
    TCase *tc;

    tc = tcase_create("dispatch");
    tcase_add_test(tc, test_simd_levels_up_to_cpu_have_tables_above_are_null);
    tcase_add_test(tc, test_simd_chosen_level_follows_env_and_cpu);
    tcase_add_test(tc, test_simd_choose_clamps_to_cpu_and_ignores_unknown);
    tcase_add_test(tc, test_simd_env_forces_level_in_fresh_process);
    tcase_add_test(tc, test_simd_public_entry_points_match_chosen_table);
    suite_add_tcase(s, tc);

    /* Loop tests: _i is the level; unsupported levels return early. */
    tc = tcase_create("exact_kernels");
    tcase_set_timeout(tc, sp_timeout(30));
    tcase_add_loop_test(tc, test_simd_add_exact_vs_scalar_all_lengths_offsets, 0, SP_SIMD_LEVEL_COUNT);
    tcase_add_loop_test(tc, test_simd_scale_exact_vs_scalar_all_lengths_offsets, 0, SP_SIMD_LEVEL_COUNT);
    tcase_add_loop_test(tc, test_simd_integrate_exact_unfused_all_lengths_offsets, 0, SP_SIMD_LEVEL_COUNT);
    tcase_add_loop_test(tc, test_simd_integrate3_equals_three_integrates, 0, SP_SIMD_LEVEL_COUNT);
    tcase_add_loop_test(tc, test_simd_axpy_exact_fused_or_unfused_per_level, 0, SP_SIMD_LEVEL_COUNT);
    tcase_add_loop_test(tc, test_simd_tails_at_page_end_do_not_fault, 0, SP_SIMD_LEVEL_COUNT);
    tcase_add_loop_test(tc, test_simd_age_exact_with_death_mask_all_lengths_offsets, 0, SP_SIMD_LEVEL_COUNT);
    suite_add_tcase(s, tc);

    tc = tcase_create("toleranced_kernels");
    tcase_set_timeout(tc, sp_timeout(30));
    tcase_add_loop_test(tc, test_simd_dot_within_tolerance_all_lengths_offsets, 0, SP_SIMD_LEVEL_COUNT);
    tcase_add_loop_test(tc, test_simd_normalize_unit_length_all_lengths_offsets, 0, SP_SIMD_LEVEL_COUNT);
    tcase_add_loop_test(tc, test_simd_normalize_zero_stays_zero_extremes_normalise, 0, SP_SIMD_LEVEL_COUNT);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--print-level") == 0) return print_level();
    SRunner *sr = srunner_create(simd_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
