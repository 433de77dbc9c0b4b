/* bench_simd.c: the SoA integrate step pos += vel*dt.
 *
 * 1. Cache-resident (4096 floats, 32 KiB for pos+vel): sp_f32_integrate at
 *    each supported level vs the same loop compiled out of line with
 *    vectorization disabled. Figure: ns per call (lower is better).
 *    Target: the dispatched level >= 3x the scalar loop.
 * 2. Memory-bound (16M floats = 64 MiB per array): sp_f32_integrate with the
 *    range split in two halves over 2 threads pinned to CPU0/CPU1, vs a
 *    STREAM triad a = b + s*c (AVX2, 2 threads, same split) measured in the
 *    same run. Both count 12 bytes per element (two reads, one write; write-
 *    allocate traffic not counted, as STREAM does). Target: >= 0.8x.
 *
 * Self-checks: values are chosen so every result is exact in float (small
 * integers, dt = 0.5), so after k calls pos must equal pos0 + k*vel*dt
 * bit for bit; the triad is checked the same way. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"
#include "spacesim/simd.h"

#define SMALL_N 4096
#define BIG_N (16u * 1024u * 1024u)
static const float DT = 0.5f;

static float vel_of(size_t i) { return (float)((int)(i % 7) - 3); }
static float pos0_of(size_t i) { return (float)(i & 1023); }

/* ------------------------------------------------------------------ baseline loop */

/* The same loop, out of line, with vectorization disabled in both compilers
 * (clang ignores gcc's optimize attribute with a warning, hence the split). */
#if defined(__clang__)
__attribute__((noinline)) static void integrate_novec(float *pos, const float *vel, float dt, size_t n) {
#pragma clang loop vectorize(disable) interleave(disable)
    for (size_t i = 0; i < n; i++) pos[i] += vel[i] * dt;
}
#else
__attribute__((noinline, optimize("no-tree-vectorize"))) static void integrate_novec(float *pos, const float *vel,
                                                                                     float dt, size_t n) {
    for (size_t i = 0; i < n; i++) pos[i] += vel[i] * dt;
}
#endif

/* ------------------------------------------------------------------ small rows */

typedef struct {
    void (*fn)(float *, const float *, float, size_t);
    float *pos, *vel;
    int reps;
} small_t;

static double run_small(void *arg) {
    small_t *s = arg;
    for (size_t i = 0; i < SMALL_N; i++) s->pos[i] = pos0_of(i); /* warms the cache, untimed */
    uint64_t t0 = sp_bench_now_ns();
    for (int r = 0; r < s->reps; r++) {
        s->fn(s->pos, s->vel, DT, SMALL_N);
        SP_BENCH_CLOBBER();
    }
    uint64_t t1 = sp_bench_now_ns();
    for (size_t i = 0; i < SMALL_N; i++)
        if (s->pos[i] != pos0_of(i) + (float)s->reps * vel_of(i) * DT) return -1.0;
    return (double)(t1 - t0) / s->reps;
}

/* ------------------------------------------------------------------ big rows, 2 threads */

typedef struct big big_t;
struct big {
    int triad;    /* 0: sp_f32_integrate(p, v), 1: a = b + s*c */
    float *p, *v; /* integrate */
    float *a, *b, *c;
    int calls; /* completed integrate runs, for the self-check */
    pthread_barrier_t start;
    uint64_t t_start[2], t_end[2]; /* per worker; the span is max(end) - min(start) */
};
typedef struct {
    big_t *big;
    int t;
} worker_arg_t;

__attribute__((target("avx2"))) static void triad_avx2(float *restrict a, const float *restrict b,
                                                        const float *restrict c, float s, size_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm256_storeu_ps(a + i, _mm256_add_ps(_mm256_loadu_ps(b + i), _mm256_mul_ps(vs, _mm256_loadu_ps(c + i))));
        _mm256_storeu_ps(a + i + 8,
                         _mm256_add_ps(_mm256_loadu_ps(b + i + 8), _mm256_mul_ps(vs, _mm256_loadu_ps(c + i + 8))));
        _mm256_storeu_ps(a + i + 16,
                         _mm256_add_ps(_mm256_loadu_ps(b + i + 16), _mm256_mul_ps(vs, _mm256_loadu_ps(c + i + 16))));
        _mm256_storeu_ps(a + i + 24,
                         _mm256_add_ps(_mm256_loadu_ps(b + i + 24), _mm256_mul_ps(vs, _mm256_loadu_ps(c + i + 24))));
    }
    for (; i < n; i++) a[i] = b[i] + s * c[i];
}

static void triad_plain(float *restrict a, const float *restrict b, const float *restrict c, float s, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
}

static void *big_worker(void *p) {
    worker_arg_t *w = p;
    big_t *g = w->big;
    sp_bench_pin_self(w->t);
    size_t half = BIG_N / 2, lo = (size_t)w->t * half, n = w->t ? BIG_N - lo : half;
    pthread_barrier_wait(&g->start);
    /* Timed inside the workers: with 2 CPUs the main thread may not run again
     * until a worker finishes, so a clock read there would start late. */
    g->t_start[w->t] = sp_bench_now_ns();
    if (g->triad) {
        if (sp_simd_cpu_level() >= SP_SIMD_AVX2) triad_avx2(g->a + lo, g->b + lo, g->c + lo, DT, n);
        else triad_plain(g->a + lo, g->b + lo, g->c + lo, DT, n);
    } else {
        sp_f32_integrate(g->p + lo, g->v + lo, DT, n);
    }
    g->t_end[w->t] = sp_bench_now_ns();
    return NULL;
}

static double run_big(void *arg) {
    big_t *g = arg;
    if (g->triad) /* so a run that skipped its work fails the check below */
        for (size_t i = 0; i < BIG_N; i += 997) g->a[i] = -1.0f;
    pthread_t th[2];
    worker_arg_t wa[2] = {{g, 0}, {g, 1}};
    pthread_barrier_init(&g->start, NULL, 2);
    for (int t = 0; t < 2; t++)
        if (pthread_create(&th[t], NULL, big_worker, &wa[t]) != 0) sp_bench_fail("pthread_create");
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL); /* join: the workers' stores are visible */
    pthread_barrier_destroy(&g->start);
    uint64_t t0 = g->t_start[0] < g->t_start[1] ? g->t_start[0] : g->t_start[1];
    uint64_t t1 = g->t_end[0] > g->t_end[1] ? g->t_end[0] : g->t_end[1];

    /* Self-check on a stride through the whole range plus both ends. */
    if (g->triad) {
        for (size_t i = 0; i < BIG_N; i += (i < 64 || i > BIG_N - 64) ? 1 : 997)
            if (g->a[i] != pos0_of(i) + DT * (float)((i % 5) + 1)) return -1.0;
    } else {
        g->calls++;
        for (size_t i = 0; i < BIG_N; i += (i < 64 || i > BIG_N - 64) ? 1 : 997)
            if (g->p[i] != pos0_of(i) + (float)g->calls * vel_of(i) * DT) return -1.0;
    }
    return 12.0 * BIG_N / (double)(t1 - t0); /* bytes per ns = GB/s */
}

static float *big_alloc(void) {
    size_t bytes = (size_t)BIG_N * sizeof(float);
    float *p = aligned_alloc(2u << 20, bytes);
    if (p == NULL) sp_bench_fail("out of memory");
    madvise(p, bytes, MADV_HUGEPAGE); /* same for every array: fewer TLB misses for both rows */
    return p;
}

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "simd");
    printf("# simd: dispatched level %s (cpu supports %s)\n", sp_simd_level_name(), sp_simd_name(sp_simd_cpu_level()));

    /* Small, cache-resident rows: one per supported level, plus the baseline. */
    static _Alignas(64) float vel[SMALL_N];
    static _Alignas(64) float pos[SP_SIMD_LEVEL_COUNT + 1][SMALL_N];
    for (size_t i = 0; i < SMALL_N; i++) vel[i] = vel_of(i);
    const int reps = sp_bench_quick() ? 2000 : 5000;
    small_t sm[SP_SIMD_LEVEL_COUNT + 1];
    sp_bench_row_t rows[SP_SIMD_LEVEL_COUNT + 1];
    static char names[SP_SIMD_LEVEL_COUNT + 1][80];
    int nrows = 0, dispatched_row = -1;
    for (int l = SP_SIMD_LEVEL_COUNT - 1; l >= 0; l--) {
        const sp_simd_ops_t *ops = sp_simd_ops_for((sp_simd_level_t)l);
        if (ops == NULL) continue;
        if (ops == sp_simd_ops()) dispatched_row = nrows;
        snprintf(names[nrows], sizeof names[nrows], "sp_f32_integrate[%s] %d floats", ops->name, SMALL_N);
        sm[nrows] = (small_t){ops->integrate, pos[nrows], vel, reps};
        rows[nrows] = (sp_bench_row_t){.name = names[nrows], .unit = "ns/call", .fn = run_small, .arg = &sm[nrows]};
        nrows++;
    }
    snprintf(names[nrows], sizeof names[nrows], "scalar loop, vectorization disabled, %d floats", SMALL_N);
    sm[nrows] = (small_t){integrate_novec, pos[nrows], vel, reps};
    rows[nrows] = (sp_bench_row_t){.name = names[nrows], .unit = "ns/call", .fn = run_small, .arg = &sm[nrows]};
    int base = nrows++;
    sp_bench_run(rows, nrows);
    if (dispatched_row >= 0) {
        printf("# target: dispatched level >= 3x the non-vectorized loop\n");
        sp_bench_report(&rows[dispatched_row], &rows[base]);
    }
    for (int r = 0; r < base; r++)
        if (r != dispatched_row) sp_bench_report(&rows[r], &rows[base]);

    /* Big, memory-bound rows: 2 threads each. */
    big_t gi = {.triad = 0}, gt = {.triad = 1};
    gi.p = big_alloc();
    gi.v = big_alloc();
    gt.a = big_alloc();
    gt.b = big_alloc();
    gt.c = big_alloc();
    for (size_t i = 0; i < BIG_N; i++) {
        gi.p[i] = pos0_of(i);
        gi.v[i] = vel_of(i);
        gt.a[i] = 0.0f;
        gt.b[i] = pos0_of(i);
        gt.c[i] = (float)((i % 5) + 1);
    }
    sp_bench_row_t big[2] = {
        {.name = "sp_f32_integrate 16M floats, 2 threads", .unit = "GB/s", .higher_is_better = 1, .fn = run_big,
         .arg = &gi},
        {.name = "STREAM triad 16M floats, 2 threads", .unit = "GB/s", .higher_is_better = 1, .fn = run_big,
         .arg = &gt},
    };
    sp_bench_run(big, 2);
    printf("# target: >= 0.8x of the triad bandwidth (12 bytes/element both)\n");
    sp_bench_report(&big[0], &big[1]);

    free(gi.p);
    free(gi.v);
    free(gt.a);
    free(gt.b);
    free(gt.c);
    return sp_bench_finish();
}
