/* bench_mpmc.c: queue throughput, pointer-sized items, ring of 1024.
 *
 * Each run moves N items (10M; 2M with --quick) from producer threads to
 * consumer threads; producers are pinned to CPU0/CPU1 alternately and each
 * consumer to the other CPU than its partner producer (1P1C: producer CPU0,
 * consumer CPU1). Timed: from the start signal until the last consumer is
 * done. Figure: M items/s. Self-check: every consumer checks per-producer FIFO
 * order, and the totals (count and sum of every item) must match exactly.
 * A thread that finds the queue full/empty spins with `pause`, yielding
 * every 256 failures (same policy for every row).
 *
 * Rows:
 *   sp_mpmc 1P1C            sp_mpmc_try_push_ptr / try_pop_ptr (inline fast path)
 *   mutex+condvar ring 1P1C baseline written below: pthread mutex, two condvars
 *   ck_ring MPMC 1P1C       Concurrency Kit ck_ring_enqueue_mpmc / dequeue_mpmc
 *   sp_spsc 1P1C            FastForward ring sp_spsc_try_push / try_pop
 *   ck_ring SPSC 1P1C       ck_ring_enqueue_spsc / dequeue_spsc
 *   sp_mpmc batch32 1P1C    sp_mpmc_try_push_n / try_pop_n, 32 at a time
 *   sp_spsc batch32 1P1C    sp_spsc_try_push_n / try_pop_n, 32 at a time
 *   sp_mpmc 2P2C, mutex+condvar ring 2P2C
 * DPDK's rte_ring burst-32 MP/MC (~460 M items/s on this VM, per the brief;
 * 331 near / 106 far in BENCHMARKING.md) is not installed: the batch figure is
 * printed against that constant. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "spacesim/mpmc.h"
#include "spacesim/spsc.h"

#ifdef SP_HAVE_CK
#include <ck_ring.h>
#endif

#define RING 1024
#define BATCH 32
#define MAXT 8
#define SEQ_BITS 40
#define DPDK_BURST_MITEMS 460.0

static uint64_t g_items;

/* ------------------------------------------------------------ mutex+condvar ring baseline */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t not_full, not_empty;
    void *buf[RING];
    size_t head, tail; /* free-running, under lock */
    int waiting_p, waiting_c;
} mring_t;

static void mring_init(mring_t *r) {
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->not_full, NULL);
    pthread_cond_init(&r->not_empty, NULL);
    r->head = r->tail = 0;
    r->waiting_p = r->waiting_c = 0;
}
static void mring_destroy(mring_t *r) {
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->not_full);
    pthread_cond_destroy(&r->not_empty);
}
/* Blocking push/pop; signal only when someone waits (a fair, not naive, baseline). */
static void mring_push(mring_t *r, void *p) {
    pthread_mutex_lock(&r->lock);
    while (r->tail - r->head == RING) {
        r->waiting_p++;
        pthread_cond_wait(&r->not_full, &r->lock);
        r->waiting_p--;
    }
    r->buf[r->tail++ % RING] = p;
    if (r->waiting_c) pthread_cond_signal(&r->not_empty);
    pthread_mutex_unlock(&r->lock);
}
/* Returns 0 with an item, or -1 when `done` is set and the ring is empty. */
static int mring_pop(mring_t *r, void **out, _Atomic int *producers_left) {
    pthread_mutex_lock(&r->lock);
    while (r->tail == r->head) {
        /* Relaxed: read under the lock that the last producer's final push
         * also took, which orders it. */
        if (atomic_load_explicit(producers_left, memory_order_relaxed) == 0) {
            pthread_mutex_unlock(&r->lock);
            return -1;
        }
        r->waiting_c++;
        pthread_cond_wait(&r->not_empty, &r->lock);
        r->waiting_c--;
    }
    *out = r->buf[r->head++ % RING];
    if (r->waiting_p) pthread_cond_signal(&r->not_full);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* ------------------------------------------------------------ run scaffolding */

typedef enum {
    Q_SP_MPMC,
    Q_MUTEX,
    Q_CK_MPMC,
    Q_SP_SPSC,
    Q_CK_SPSC,
    Q_SP_MPMC_BATCH,
    Q_SP_SPSC_BATCH,
} qkind_t;

typedef struct {
    qkind_t kind;
    int np, nc;
} cfg_t;

typedef struct run run_t;
/* A consumer's self-check state. Kept in the consumer's own stack frame
 * during the run (the compiler may keep it in registers) and copied to its
 * worker_t at the end. */
typedef struct {
    uint64_t count, sum, errors;
    uint64_t next[MAXT]; /* per-producer: lowest sequence still acceptable */
} checker_t;
/* One per thread, each in its own 128-byte block: nothing a thread writes
 * shares a line (or an adjacent-line prefetch pair) with another thread's. */
typedef struct {
    _Alignas(128) run_t *r;
    int id;
    checker_t chk;
    uint64_t end_ns;
} worker_t;

struct run {
    cfg_t cfg;
    uint64_t per_producer;
    sp_mpmc_t mq;
    sp_spsc_t sq;
    mring_t mr;
#ifdef SP_HAVE_CK
    ck_ring_t ck;
    ck_ring_buffer_t *ckbuf;
#endif
    /* Start/stop flags in their own 128-byte block: polled by waiting threads. */
    _Alignas(128) _Atomic int ready;
    _Atomic int go;
    _Atomic int producers_left;
    worker_t w[2 * MAXT];
};

/* Wait policy after a failed attempt, the same for every lock-free row:
 * `pause`, and sched_yield after 256 CONSECUTIVE failures (the caller resets
 * *fails to 0 on success), i.e. only when the other side looks descheduled.
 * (A counter that was never reset yielded every 256th failure of the whole
 * run; on this shared machine each yield can hand the CPU to another
 * process for a time slice.) */
static inline void backoff(unsigned *fails) {
    if (++*fails % 256 == 0)
        sched_yield();
    else
        __builtin_ia32_pause();
}

static inline void check_item(checker_t *w, uint64_t v) {
    uint64_t item = v - 1; /* items travel as item + 1: the SPSC ring cannot carry NULL */
    uint64_t p = item >> SEQ_BITS, seq = item & (((uint64_t)1 << SEQ_BITS) - 1);
    if (p >= MAXT || seq < w->next[p]) w->errors++;
    else w->next[p] = seq + 1;
    w->count++;
    w->sum += item;
}

static void wait_go(run_t *r) {
    /* Release/acquire: ready counts arrivals; go is the start pistol (the
     * main thread acquires ready == n, then releases go). */
    atomic_fetch_add_explicit(&r->ready, 1, memory_order_release);
    while (!atomic_load_explicit(&r->go, memory_order_acquire)) __builtin_ia32_pause();
}

static void *producer(void *arg) {
    worker_t *w = arg;
    run_t *r = w->r;
    sp_bench_pin_self(w->id % 2);
    wait_go(r);
    uint64_t base = ((uint64_t)w->id << SEQ_BITS) + 1, n = r->per_producer;
    unsigned fails = 0;
    switch (r->cfg.kind) {
    case Q_SP_MPMC:
        for (uint64_t i = 0; i < n; i++) {
            while (sp_mpmc_try_push_ptr(&r->mq, (void *)(uintptr_t)(base + i)) != 0) backoff(&fails);
            fails = 0;
        }
        break;
    case Q_MUTEX:
        for (uint64_t i = 0; i < n; i++) mring_push(&r->mr, (void *)(uintptr_t)(base + i));
        break;
    case Q_SP_SPSC:
        for (uint64_t i = 0; i < n; i++) {
            while (sp_spsc_try_push(&r->sq, (void *)(uintptr_t)(base + i)) != 0) backoff(&fails);
            fails = 0;
        }
        break;
#ifdef SP_HAVE_CK
    case Q_CK_MPMC:
        for (uint64_t i = 0; i < n; i++) {
            while (!ck_ring_enqueue_mpmc(&r->ck, r->ckbuf, (void *)(uintptr_t)(base + i))) backoff(&fails);
            fails = 0;
        }
        break;
    case Q_CK_SPSC:
        for (uint64_t i = 0; i < n; i++) {
            while (!ck_ring_enqueue_spsc(&r->ck, r->ckbuf, (void *)(uintptr_t)(base + i))) backoff(&fails);
            fails = 0;
        }
        break;
#else
    case Q_CK_MPMC:
    case Q_CK_SPSC:
        break;
#endif
    case Q_SP_MPMC_BATCH:
    case Q_SP_SPSC_BATCH: {
        void *b[BATCH];
        for (uint64_t i = 0; i < n;) {
            size_t k = n - i < BATCH ? (size_t)(n - i) : BATCH;
            for (size_t j = 0; j < k; j++) b[j] = (void *)(uintptr_t)(base + i + j);
            size_t done = 0;
            while (done < k) {
                size_t d = r->cfg.kind == Q_SP_MPMC_BATCH ? sp_mpmc_try_push_n(&r->mq, b + done, k - done)
                                                           : sp_spsc_try_push_n(&r->sq, b + done, k - done);
                if (d == 0)
                    backoff(&fails);
                else
                    fails = 0;
                done += d;
            }
            i += k;
        }
        break;
    }
    }
    /* Release: our pushes happen before a consumer that acquires 0 decides
     * the queue is drained. */
    atomic_fetch_sub_explicit(&r->producers_left, 1, memory_order_release);
    if (r->cfg.kind == Q_MUTEX) {
        /* Wake consumers blocked on an empty ring so they see producers_left. */
        pthread_mutex_lock(&r->mr.lock);
        pthread_cond_broadcast(&r->mr.not_empty);
        pthread_mutex_unlock(&r->mr.lock);
    }
    return NULL;
}

/* One non-blocking pop attempt (not for Q_MUTEX); returns items consumed. */
static inline size_t pop_some(run_t *r, checker_t *w) {
    void *b[BATCH];
    switch (r->cfg.kind) {
    case Q_SP_MPMC:
        if (sp_mpmc_try_pop_ptr(&r->mq, &b[0]) != 0) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
    case Q_SP_SPSC:
        if (sp_spsc_try_pop(&r->sq, &b[0]) != 0) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
#ifdef SP_HAVE_CK
    case Q_CK_MPMC:
        if (!ck_ring_dequeue_mpmc(&r->ck, r->ckbuf, &b[0])) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
    case Q_CK_SPSC:
        if (!ck_ring_dequeue_spsc(&r->ck, r->ckbuf, &b[0])) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
#endif
    case Q_SP_MPMC_BATCH: {
        size_t k = sp_mpmc_try_pop_n(&r->mq, b, BATCH);
        for (size_t j = 0; j < k; j++) check_item(w, (uint64_t)(uintptr_t)b[j]);
        return k;
    }
    case Q_SP_SPSC_BATCH: {
        size_t k = sp_spsc_try_pop_n(&r->sq, b, BATCH);
        for (size_t j = 0; j < k; j++) check_item(w, (uint64_t)(uintptr_t)b[j]);
        return k;
    }
    default:
        return 0;
    }
}

static void *consumer(void *arg) {
    worker_t *w = arg;
    run_t *r = w->r;
    sp_bench_pin_self(w->id % 2 + 1);
    wait_go(r);
    checker_t chk = {0};
    if (r->cfg.kind == Q_MUTEX) {
        void *p;
        while (mring_pop(&r->mr, &p, &r->producers_left) == 0) check_item(&chk, (uint64_t)(uintptr_t)p);
    } else {
        unsigned fails = 0;
        for (;;) {
            if (pop_some(r, &chk) > 0) {
                fails = 0;
                continue;
            }
            /* Acquire: pairs with the producers' release decrement; after 0,
             * an empty pop means drained. */
            if (atomic_load_explicit(&r->producers_left, memory_order_acquire) == 0) {
                while (pop_some(r, &chk) > 0) {
                }
                break;
            }
            backoff(&fails);
        }
    }
    w->end_ns = sp_bench_now_ns();
    w->chk = chk;
    return NULL;
}

static double run_queue(void *arg) {
    const cfg_t *cfg = arg;
    run_t *r = aligned_alloc(128, (sizeof(run_t) + 127) / 128 * 128);
    if (r == NULL) return -1;
    *r = (run_t){.cfg = *cfg};
    int np = cfg->np, nc = cfg->nc;
    r->per_producer = g_items / (uint64_t)np;
    switch (cfg->kind) {
    case Q_SP_MPMC:
    case Q_SP_MPMC_BATCH:
        if (sp_mpmc_init(&r->mq, RING, sizeof(void *), NULL) != 0) return -1;
        break;
    case Q_SP_SPSC:
    case Q_SP_SPSC_BATCH:
        if (sp_spsc_init(&r->sq, RING, NULL) != 0) return -1;
        break;
    case Q_MUTEX:
        mring_init(&r->mr);
        break;
    case Q_CK_MPMC:
    case Q_CK_SPSC:
#ifdef SP_HAVE_CK
        r->ckbuf = aligned_alloc(128, RING * sizeof(ck_ring_buffer_t));
        if (r->ckbuf == NULL) return -1;
        ck_ring_init(&r->ck, RING);
#else
        free(r);
        return -1;
#endif
        break;
    }
    atomic_init(&r->ready, 0);
    atomic_init(&r->go, 0);
    atomic_init(&r->producers_left, np);
    pthread_t t[2 * MAXT];
    for (int i = 0; i < np + nc; i++) {
        r->w[i].r = r;
        r->w[i].id = i < np ? i : i - np;
        if (pthread_create(&t[i], NULL, i < np ? producer : consumer, &r->w[i]) != 0) return -1;
    }
    /* Acquire: all threads have pinned themselves and are spinning. */
    while (atomic_load_explicit(&r->ready, memory_order_acquire) != np + nc) sched_yield();
    uint64_t t0 = sp_bench_now_ns();
    atomic_store_explicit(&r->go, 1, memory_order_release); /* start pistol; see wait_go */
    for (int i = 0; i < np + nc; i++) pthread_join(t[i], NULL);
    uint64_t t1 = 0;
    uint64_t count = 0, sum = 0, errors = 0;
    for (int i = np; i < np + nc; i++) {
        if (r->w[i].end_ns > t1) t1 = r->w[i].end_ns;
        count += r->w[i].chk.count;
        sum += r->w[i].chk.sum;
        errors += r->w[i].chk.errors;
    }
    /* Expected sum of all items (p << 40 | seq). */
    uint64_t n = r->per_producer, want = 0;
    for (int p = 0; p < np; p++) want += ((uint64_t)p << SEQ_BITS) * n + n * (n - 1) / 2;
    switch (cfg->kind) {
    case Q_SP_MPMC:
    case Q_SP_MPMC_BATCH:
        sp_mpmc_destroy(&r->mq);
        break;
    case Q_SP_SPSC:
    case Q_SP_SPSC_BATCH:
        sp_spsc_destroy(&r->sq);
        break;
    case Q_MUTEX:
        mring_destroy(&r->mr);
        break;
    default:
#ifdef SP_HAVE_CK
        free(r->ckbuf);
#endif
        break;
    }
    free(r);
    if (errors != 0 || count != n * (uint64_t)np || sum != want) return -1;
    return (double)count / ((double)(t1 - t0) / 1e9) / 1e6;
}

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "mpmc");
    g_items = sp_bench_quick() ? 2000000 : 10000000;
    static cfg_t c_mpmc = {Q_SP_MPMC, 1, 1}, c_mutex = {Q_MUTEX, 1, 1}, c_spsc = {Q_SP_SPSC, 1, 1},
                 c_mpmc_b = {Q_SP_MPMC_BATCH, 1, 1}, c_spsc_b = {Q_SP_SPSC_BATCH, 1, 1},
                 c_mpmc22 = {Q_SP_MPMC, 2, 2}, c_mutex22 = {Q_MUTEX, 2, 2};
#ifdef SP_HAVE_CK
    static cfg_t c_ck = {Q_CK_MPMC, 1, 1}, c_ck_spsc = {Q_CK_SPSC, 1, 1};
#endif
    const char *u = "M items/s";
    sp_bench_row_t rows[] = {
        {.name = "sp_mpmc 1P1C", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_queue, .arg = &c_mpmc},
        {.name = "mutex+condvar ring 1P1C", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_queue,
         .arg = &c_mutex},
        {.name = "sp_spsc 1P1C", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_queue, .arg = &c_spsc},
        {.name = "sp_mpmc batch32 1P1C", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_queue,
         .arg = &c_mpmc_b},
        {.name = "sp_spsc batch32 1P1C", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_queue,
         .arg = &c_spsc_b},
        {.name = "sp_mpmc 2P2C", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_queue, .arg = &c_mpmc22},
        {.name = "mutex+condvar ring 2P2C", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_queue,
         .arg = &c_mutex22},
#ifdef SP_HAVE_CK
        {.name = "ck_ring MPMC 1P1C", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_queue, .arg = &c_ck},
        {.name = "ck_ring SPSC 1P1C", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_queue,
         .arg = &c_ck_spsc},
#endif
    };
    int nrows = (int)(sizeof rows / sizeof rows[0]);
    sp_bench_run(rows, nrows);
    sp_bench_report(&rows[0], &rows[1]);
#ifdef SP_HAVE_CK
    sp_bench_report(&rows[0], &rows[7]);
    sp_bench_report(&rows[2], &rows[8]);
#else
    printf("(Concurrency Kit not found at configure time: ck_ring rows skipped)\n");
#endif
    sp_bench_report(&rows[3], &rows[0]);
    sp_bench_report(&rows[4], &rows[2]);
    printf("sp_mpmc batch32 1P1C vs DPDK rte_ring burst32 (constant from the brief, not measured here): %.2fx "
           "(%.1f vs %.1f M items/s)\n",
           sp_bench_median(&rows[3]) / DPDK_BURST_MITEMS, sp_bench_median(&rows[3]), DPDK_BURST_MITEMS);
    printf("sp_spsc batch32 1P1C vs DPDK rte_ring burst32 (constant): %.2fx (%.1f vs %.1f M items/s)\n",
           sp_bench_median(&rows[4]) / DPDK_BURST_MITEMS, sp_bench_median(&rows[4]), DPDK_BURST_MITEMS);
    sp_bench_report(&rows[5], &rows[6]);
    return sp_bench_finish();
}
