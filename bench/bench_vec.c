/* bench_vec.c: sp_vec push throughput against a naive realloc-by-one array
 * (the floor we must beat) and a preallocated plain C array (the ceiling).
 *
 * Each run builds an array of N uint32_t (10M; 2M with --quick) holding
 * x_i = i * 2654435761 (mod 2^32) from empty, one push at a time, then frees
 * it. Timed: construction and free. Untimed: a check that every element is
 * exactly x_i (a wrong or lost element fails the run). Figure: M pushes/s.
 *
 * Rows:
 *   sp_vec_u32 push          typed inline push from an empty vector (growth included)
 *   sp_vec_u32 push reserved the same after one sp_vec_u32_reserve(N)
 *   realloc+1 array          realloc(p, (n + 1) * 4) before every store
 *   preallocated C array     malloc(N * 4) once, then a[i] = x_i (ceiling) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "spacesim/vec.h"

static size_t g_n;

static inline uint32_t value(size_t i) { return (uint32_t)i * 2654435761u; }

static int check(const uint32_t *a, size_t n) {
    if (n != g_n) return -1;
    for (size_t i = 0; i < n; i++)
        if (a[i] != value(i)) return -1;
    return 0;
}

static double figure(uint64_t ns) { return (double)g_n / ((double)ns / 1e9) / 1e6; }

static double run_sp_vec(void *arg) {
    int reserved = *(const int *)arg;
    sp_vec_u32_t v;
    uint64_t t0 = sp_bench_now_ns();
    sp_vec_u32_init(&v, NULL);
    if (reserved && sp_vec_u32_reserve(&v, g_n) != 0) return -1;
    for (size_t i = 0; i < g_n; i++)
        if (SP_UNLIKELY(sp_vec_u32_push(&v, value(i)) != 0)) return -1;
    uint64_t t1 = sp_bench_now_ns();
    if (check(sp_vec_u32_data(&v), sp_vec_u32_len(&v)) != 0) return -1;
    uint64_t t2 = sp_bench_now_ns();
    sp_vec_u32_destroy(&v);
    return figure((t1 - t0) + (sp_bench_now_ns() - t2));
}

static double run_realloc1(void *arg) {
    (void)arg;
    uint64_t t0 = sp_bench_now_ns();
    uint32_t *a = NULL;
    size_t n = 0;
    for (size_t i = 0; i < g_n; i++) {
        uint32_t *b = realloc(a, (n + 1) * sizeof *a);
        if (b == NULL) {
            free(a);
            return -1;
        }
        a = b;
        a[n++] = value(i);
    }
    uint64_t t1 = sp_bench_now_ns();
    int bad = check(a, n);
    uint64_t t2 = sp_bench_now_ns();
    free(a);
    uint64_t t3 = sp_bench_now_ns();
    return bad ? -1 : figure((t1 - t0) + (t3 - t2));
}

static double run_prealloc(void *arg) {
    (void)arg;
    uint64_t t0 = sp_bench_now_ns();
    uint32_t *a = malloc(g_n * sizeof *a);
    if (a == NULL) return -1;
    for (size_t i = 0; i < g_n; i++) a[i] = value(i);
    SP_BENCH_CLOBBER();
    uint64_t t1 = sp_bench_now_ns();
    int bad = check(a, g_n);
    uint64_t t2 = sp_bench_now_ns();
    free(a);
    uint64_t t3 = sp_bench_now_ns();
    return bad ? -1 : figure((t1 - t0) + (t3 - t2));
}

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "vec");
    g_n = sp_bench_quick() ? 2000000 : 10000000;
    printf("# %zu uint32 pushes per run into a fresh array; M pushes/s (construct + free)\n", g_n);
    static int grow = 0, reserved = 1;
    sp_bench_row_t rows[] = {
        {.name = "sp_vec_u32 push", .unit = "M pushes/s", .higher_is_better = 1, .fn = run_sp_vec, .arg = &grow},
        {.name = "realloc+1 array", .unit = "M pushes/s", .higher_is_better = 1, .fn = run_realloc1},
        {.name = "preallocated C array", .unit = "M pushes/s", .higher_is_better = 1, .fn = run_prealloc},
        {.name = "sp_vec_u32 push reserved",
         .unit = "M pushes/s",
         .higher_is_better = 1,
         .fn = run_sp_vec,
         .arg = &reserved},
    };
    sp_bench_run(rows, 4);
    sp_bench_report(&rows[0], &rows[1]);
    sp_bench_report(&rows[0], &rows[2]);
    sp_bench_report(&rows[3], &rows[2]);
    return sp_bench_finish();
}
