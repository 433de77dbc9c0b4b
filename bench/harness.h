/* bench/harness.h: the measuring rules every spacesim benchmark follows
 * (../shared/BENCHMARKING.md):
 *
 *  1. Subject and baseline run in the same process, interleaved round-robin
 *     (round k runs every row once), --rounds N times (default 5); reports use
 *     the median with min-max.
 *  2. Each run checks its own result and returns a negative figure on a wrong
 *     answer; the harness then aborts the benchmark (exit 1).
 *  3. Rows marked two_thread are bracketed by a cache-line ping-pong probe
 *     between CPU0 and CPU1; each sample is tagged "near" or "far"; a run whose
 *     two probes disagree is redone. Ratios compare samples of one regime.
 *  4. Each run measures disturbance: /proc/stat busy time minus this process's
 *     getrusage time (runs over 50 ms only: jiffies are 10 ms), and the
 *     involuntary context switches of this process during the run (any
 *     length: a preempted benchmark thread is a disturbed run, and a
 *     two-thread run where one thread lost its CPU measures one thread
 *     alone). A run where others used more than --disturb (default 5%) of a
 *     CPU is redone (at most --max-redo times); redone runs are counted. A
 *     sample is marked disturbed when it was kept after the last redo or its
 *     threads were preempted more than SP_BENCH_CSW_CLEAN times (preemption
 *     alone does not redo a run: on a busy machine nearly all are). A
 *     comparison uses only undisturbed samples when both rows have at least
 *     3 of them in the compared regime, else all, and says which ("clean a/b"
 *     or "incl. disturbed"), then the median preemptions per run of each row
 *     ("preempted s/b").
 *  5. One line per comparison:
 *     "<subject> vs <baseline>: <ratio>x (<subject figure> vs <baseline figure>)".
 *
 * Usage:
 *     sp_bench_init(argc, argv, "mpmc");
 *     sp_bench_row_t rows[] = {
 *         {.name = "sp_mpmc 1P1C", .unit = "M items/s", .higher_is_better = 1,
 *          .two_thread = 1, .fn = run_sp_mpmc, .arg = &cfg},
 *         {.name = "mutex ring 1P1C", ...},
 *     };
 *     sp_bench_run(rows, 2);
 *     sp_bench_report(&rows[0], &rows[1]);
 *     return sp_bench_finish();
 */
#ifndef SP_BENCH_HARNESS_H
#define SP_BENCH_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#define SP_BENCH_MAX_ROUNDS 64
/* Involuntary context switches a run may have and still count as undisturbed
 * (pinning a thread to its CPU can cost one each). */
#define SP_BENCH_CSW_CLEAN 4

typedef enum { SP_REGIME_NONE = 0, SP_REGIME_NEAR = 1, SP_REGIME_FAR = 2 } sp_regime_t;

typedef struct sp_bench_row {
    const char *name;     /* printed as the subject/baseline name */
    const char *unit;     /* unit of the figure fn returns: "M items/s", "ns/alloc" */
    int higher_is_better; /* 1 for throughput, 0 for time per operation */
    int two_thread;       /* 1: bracket with ping-pong probes, tag the regime */
    /* One measured run. Returns the figure in `unit`, or a negative value when
     * the run's self-check failed (wrong checksum, lost item, bad pair set). */
    double (*fn)(void *arg);
    void *arg;

    /* Filled by sp_bench_run(). */
    double samples[SP_BENCH_MAX_ROUNDS];
    sp_regime_t regime[SP_BENCH_MAX_ROUNDS];
    unsigned char disturbed[SP_BENCH_MAX_ROUNDS]; /* see rule 4 above */
    long csw[SP_BENCH_MAX_ROUNDS];                /* involuntary context switches during the run */
    int nsamples;
} sp_bench_row_t;

/* Parse common flags (--rounds N, --max-redo N, --disturb PCT, --quick) and
 * print the machine line (CPU model, online CPUs, compiler). `title` names the
 * benchmark program. */
void sp_bench_init(int argc, char **argv, const char *title);

/* Number of rounds chosen on the command line (default 5, --quick 3). */
int sp_bench_rounds(void);
/* 1 when --quick was given: programs may shrink their problem sizes. */
int sp_bench_quick(void);

/* Run every row once per round, rounds interleaved, with redo and regime rules. */
void sp_bench_run(sp_bench_row_t *rows, int nrows);

/* Median / min / max of a row's samples (all regimes). */
double sp_bench_median(const sp_bench_row_t *row);
double sp_bench_min(const sp_bench_row_t *row);
double sp_bench_max(const sp_bench_row_t *row);

/* Print "<subject> vs <baseline>: <ratio>x (<s> <unit> vs <b> <unit>)" plus
 * min-max and, for two-thread rows, the regime. The ratio is "how many times
 * better" the subject is: s/b for throughput, b/s for time. Returns the ratio. */
double sp_bench_report(const sp_bench_row_t *subject, const sp_bench_row_t *baseline);

/* Print the summary (redone runs, regimes seen) and return the exit status. */
int sp_bench_finish(void);

/* Print a failure message and exit(1): for self-check failures outside fn. */
void sp_bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Monotonic clock in nanoseconds. */
uint64_t sp_bench_now_ns(void);

/* Pin the calling thread to `cpu` (modulo online CPUs). Returns 0 or -1. */
int sp_bench_pin_self(int cpu);

/* Online CPU count. */
int sp_bench_ncpus(void);

/* Median round-trip time in ns of a cache line bounced between threads pinned
 * to CPU0 and CPU1 (0 when there is only one CPU). */
double sp_bench_pingpong_ns(void);

/* Keep a value alive so the compiler cannot delete the work that made it. */
#define SP_BENCH_KEEP(x) __asm__ volatile("" : : "r"(x) : "memory")
/* Make the compiler forget what it knows about memory (defeats hoisting). */
#define SP_BENCH_CLOBBER() __asm__ volatile("" : : : "memory")

#endif /* SP_BENCH_HARNESS_H */
