/* bench/harness.c: interleaved rounds, medians, regime probes and disturbance
 * accounting for spacesim benchmarks. See harness.h for the rules. */
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* A round trip above this is the "far" regime (BENCHMARKING.md: near is
 * ~55-110 ns, far ~330-400 ns or worse). */
#define FAR_THRESHOLD_NS 200.0

static int g_rounds = 5;
static int g_quick = 0;
static int g_max_redo = 3;
static int g_kept_disturbed; /* samples marked disturbed (see sp_bench_run) */
static double g_disturb = 0.05; /* fraction of one CPU others may use */
static int g_redone = 0;
static int g_regime_count[3];
static int g_failed = 0;

uint64_t sp_bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int sp_bench_ncpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int sp_bench_pin_self(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % sp_bench_ncpus(), &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 ? 0 : -1;
}

int sp_bench_rounds(void) { return g_rounds; }
int sp_bench_quick(void) { return g_quick; }

void sp_bench_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("BENCH FAILED: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    exit(1);
}

static void usage(const char *prog) {
    printf("usage: %s [--rounds N] [--quick] [--max-redo N] [--disturb PCT]\n", prog);
    exit(2);
}

void sp_bench_init(int argc, char **argv, const char *title) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            g_rounds = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--quick") == 0) {
            g_quick = 1;
            g_rounds = 3;
        } else if (strcmp(argv[i], "--max-redo") == 0 && i + 1 < argc) {
            g_max_redo = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--disturb") == 0 && i + 1 < argc) {
            g_disturb = atof(argv[++i]) / 100.0;
        } else {
            usage(argv[0]);
        }
    }
    if (g_rounds < 1) g_rounds = 1;
    if (g_rounds > SP_BENCH_MAX_ROUNDS) g_rounds = SP_BENCH_MAX_ROUNDS;
    if (g_max_redo < 0) g_max_redo = 0;

    char model[256] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *p = strchr(line, ':');
                if (p) {
                    p++;
                    while (*p == ' ') p++;
                    snprintf(model, sizeof model, "%s", p);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    printf("# %s: machine: %s, %d online CPUs, compiler %s, %d rounds (median, min-max)\n",
           title, model, sp_bench_ncpus(),
#ifdef __clang__
           "clang " __clang_version__,
#else
           "gcc " __VERSION__,
#endif
           g_rounds);
    fflush(stdout);
}

/* ------------------------------------------------------------ ping-pong probe */

struct pingpong {
    _Alignas(128) atomic_uint_fast64_t line; /* the bounced cache line */
    int iters;
};

static void *pong_thread(void *arg) {
    struct pingpong *pp = arg;
    sp_bench_pin_self(1);
    for (int i = 0; i < pp->iters; i++) {
        uint64_t want = 2u * (uint64_t)i + 1;
        /* Acquire pairs with the release store of the ping side; relaxed would
         * also measure the line transfer, but acquire keeps the probe honest
         * about what a real handoff costs. */
        while (atomic_load_explicit(&pp->line, memory_order_acquire) != want) {
        }
        atomic_store_explicit(&pp->line, want + 1, memory_order_release);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sp_bench_pingpong_ns(void) {
    if (sp_bench_ncpus() < 2) return 0.0;
    enum { BATCH = 2000, REPS = 5 };
    double rt[REPS];
    cpu_set_t saved;
    pthread_getaffinity_np(pthread_self(), sizeof saved, &saved);
    sp_bench_pin_self(0);
    for (int r = 0; r < REPS; r++) {
        struct pingpong pp;
        atomic_init(&pp.line, 0);
        pp.iters = BATCH;
        pthread_t t;
        if (pthread_create(&t, NULL, pong_thread, &pp) != 0) return 0.0;
        /* Wait for the first round trip so thread start-up is not measured. */
        uint64_t t0 = 0;
        for (int i = 0; i < BATCH; i++) {
            uint64_t v = 2u * (uint64_t)i;
            if (i == 1) t0 = sp_bench_now_ns();
            /* Release publishes our turn; pairs with pong's acquire load. */
            atomic_store_explicit(&pp.line, v + 1, memory_order_release);
            while (atomic_load_explicit(&pp.line, memory_order_acquire) != v + 2) {
            }
        }
        uint64_t t1 = sp_bench_now_ns();
        pthread_join(t, NULL);
        rt[r] = (double)(t1 - t0) / (BATCH - 1);
    }
    pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
    qsort(rt, REPS, sizeof rt[0], cmp_double);
    return rt[REPS / 2];
}

static sp_regime_t classify(double ns) {
    if (ns <= 0.0) return SP_REGIME_NONE;
    return ns < FAR_THRESHOLD_NS ? SP_REGIME_NEAR : SP_REGIME_FAR;
}

static const char *regime_name(sp_regime_t r) {
    return r == SP_REGIME_NEAR ? "near" : r == SP_REGIME_FAR ? "far" : "n/a";
}

/* ------------------------------------------------------------ disturbance */

/* Busy jiffies of all CPUs (steal counts as someone else's work). */
static double proc_busy_seconds(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1.0;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8) return -1.0;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

/* Involuntary context switches of this process so far (all threads). */
static long self_nivcsw(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nivcsw;
}

static double self_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------ runner */

void sp_bench_run(sp_bench_row_t *rows, int nrows) {
    for (int i = 0; i < nrows; i++) rows[i].nsamples = 0;
    for (int round = 0; round < g_rounds; round++) {
        for (int i = 0; i < nrows; i++) {
            sp_bench_row_t *row = &rows[i];
            double figure = 0.0;
            sp_regime_t regime = SP_REGIME_NONE;
            int disturbed = 0;
            long csw = 0;
            for (int attempt = 0;; attempt++) {
                double probe_a = row->two_thread ? sp_bench_pingpong_ns() : 0.0;
                double busy0 = proc_busy_seconds(), self0 = self_cpu_seconds();
                long csw0 = self_nivcsw();
                uint64_t t0 = sp_bench_now_ns();
                figure = row->fn(row->arg);
                double wall = (double)(sp_bench_now_ns() - t0) / 1e9;
                long csw1 = self_nivcsw();
                double busy1 = proc_busy_seconds(), self1 = self_cpu_seconds();
                double probe_b = row->two_thread ? sp_bench_pingpong_ns() : 0.0;
                if (figure < 0.0) {
                    g_failed = 1;
                    sp_bench_fail("%s: run %d failed its self-check", row->name, round);
                }
                /* Others' CPU time = all busy time - ours. Jiffies are 10 ms, so
                 * only judge runs long enough for the measure to mean something. */
                double others = (busy1 - busy0) - (self1 - self0);
                disturbed = busy0 >= 0.0 && wall > 0.05 && others / wall > g_disturb;
                csw = csw1 - csw0;
                regime = row->two_thread ? classify(probe_a) : SP_REGIME_NONE;
                int flipped = row->two_thread && classify(probe_a) != classify(probe_b);
                if ((!disturbed && !flipped) || attempt >= g_max_redo) break;
                g_redone++;
            }
            row->samples[row->nsamples] = figure;
            row->regime[row->nsamples] = regime;
            /* Disturbed: others' CPU time over the limit after the last redo,
             * or any of our threads preempted more than SP_BENCH_CSW_CLEAN
             * times (not a redo criterion: on a busy machine nearly every
             * run is preempted, and redoing would not end). */
            row->disturbed[row->nsamples] = (unsigned char)(disturbed || csw > SP_BENCH_CSW_CLEAN);
            row->csw[row->nsamples] = csw;
            g_kept_disturbed += row->disturbed[row->nsamples];
            row->nsamples++;
            g_regime_count[regime]++;
        }
    }
}

/* which: 0 median, -1 min, 1 max; over the samples of regime `only` (all
 * when SP_REGIME_NONE), the undisturbed ones only when `clean`. */
static double stat_of_clean(const sp_bench_row_t *row, int which, sp_regime_t only, int clean) {
    double v[SP_BENCH_MAX_ROUNDS];
    int n = 0;
    for (int i = 0; i < row->nsamples; i++)
        if ((only == SP_REGIME_NONE || row->regime[i] == only) && !(clean && row->disturbed[i]))
            v[n++] = row->samples[i];
    if (n == 0) return 0.0;
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    if (which == 0) return (n % 2) ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    return which < 0 ? v[0] : v[n - 1];
}

static double stat_of(const sp_bench_row_t *row, int which, sp_regime_t only) {
    return stat_of_clean(row, which, only, 0);
}

/* Median involuntary context switches per run of a row. */
static long median_csw(const sp_bench_row_t *row) {
    long v[SP_BENCH_MAX_ROUNDS];
    int n = row->nsamples;
    for (int i = 0; i < n; i++) v[i] = row->csw[i];
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            long t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n ? v[n / 2] : 0;
}

static int count_clean(const sp_bench_row_t *row, sp_regime_t only) {
    int n = 0;
    for (int i = 0; i < row->nsamples; i++)
        n += (only == SP_REGIME_NONE || row->regime[i] == only) && !row->disturbed[i];
    return n;
}

double sp_bench_median(const sp_bench_row_t *row) { return stat_of(row, 0, SP_REGIME_NONE); }
double sp_bench_min(const sp_bench_row_t *row) { return stat_of(row, -1, SP_REGIME_NONE); }
double sp_bench_max(const sp_bench_row_t *row) { return stat_of(row, 1, SP_REGIME_NONE); }

static int count_regime(const sp_bench_row_t *row, sp_regime_t r) {
    int n = 0;
    for (int i = 0; i < row->nsamples; i++) n += row->regime[i] == r;
    return n;
}

double sp_bench_report(const sp_bench_row_t *s, const sp_bench_row_t *b) {
    /* Two-thread rows: compare within the regime both rows saw most. */
    sp_regime_t only = SP_REGIME_NONE;
    if (s->two_thread && b->two_thread) {
        int near = count_regime(s, SP_REGIME_NEAR) < count_regime(b, SP_REGIME_NEAR)
                       ? count_regime(s, SP_REGIME_NEAR)
                       : count_regime(b, SP_REGIME_NEAR);
        int far = count_regime(s, SP_REGIME_FAR) < count_regime(b, SP_REGIME_FAR)
                      ? count_regime(s, SP_REGIME_FAR)
                      : count_regime(b, SP_REGIME_FAR);
        only = near >= far ? SP_REGIME_NEAR : SP_REGIME_FAR;
        if (near == 0 && far == 0) only = SP_REGIME_NONE;
    }
    int cs = count_clean(s, only), cb = count_clean(b, only);
    int clean = cs >= 3 && cb >= 3;
    double sm = stat_of_clean(s, 0, only, clean), bm = stat_of_clean(b, 0, only, clean);
    double ratio = 0.0;
    if (s->higher_is_better)
        ratio = bm > 0.0 ? sm / bm : 0.0;
    else
        ratio = sm > 0.0 ? bm / sm : 0.0;
    printf("%s vs %s: %.2fx (%.3g %s vs %.3g %s)", s->name, b->name, ratio, sm, s->unit, bm, b->unit);
    printf("  [min-max %.3g-%.3g vs %.3g-%.3g", stat_of_clean(s, -1, only, clean), stat_of_clean(s, 1, only, clean),
           stat_of_clean(b, -1, only, clean), stat_of_clean(b, 1, only, clean));
    if (only != SP_REGIME_NONE)
        printf("; regime %s, n=%d/%d", regime_name(only), count_regime(s, only), count_regime(b, only));
    if (clean)
        printf("; clean %d/%d", cs, cb);
    else
        printf("; incl. disturbed");
    printf("; preempted %ld/%ld]\n", median_csw(s), median_csw(b));

    /* SP_BENCH_SAMPLES=1: every sample of both rows in run order, with its
     * regime (n/f), to see bimodal rows and host flips. */
    const char *dump = getenv("SP_BENCH_SAMPLES");
    if (dump != NULL && *dump == '1') {
        const sp_bench_row_t *both[2] = {s, b};
        for (int k = 0; k < 2; k++) {
            printf("    samples %s:", both[k]->name);
            for (int i = 0; i < both[k]->nsamples; i++)
                printf(" %.3g%s%s", both[k]->samples[i], both[k]->regime[i] == SP_REGIME_FAR ? "f" : "",
                       both[k]->disturbed[i] ? "d" : "");
            printf("\n");
        }
    }
    fflush(stdout);
    return ratio;
}

int sp_bench_finish(void) {
    printf("# runs redone for disturbance or regime flips: %d; samples near=%d far=%d single-thread=%d; "
           "samples disturbed (others' CPU after the last redo, or preempted > %d times): %d\n", 
           g_redone, g_regime_count[SP_REGIME_NEAR], g_regime_count[SP_REGIME_FAR],
           g_regime_count[SP_REGIME_NONE], SP_BENCH_CSW_CLEAN, g_kept_disturbed);
    fflush(stdout);
    return g_failed ? 1 : 0;
}
