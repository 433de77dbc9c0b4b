/* bench_stack.c: two threads (pinned to CPU0 and CPU1) each doing N
 * push+pop pairs on one shared stack (5M pairs per thread; 1M with --quick).
 * Figure: M pairs/s (both threads' pairs over the wall time).
 * Self-check: every pop must succeed (each thread pushes before it pops, so
 * a linearizable stack is never empty then) and the sum of popped values must
 * equal the sum of pushed values.
 *
 * Rows:
 *   sp_stack cached       sp_stack_push_cached / pop_cached (one CAS per op)
 *   sp_stack              sp_stack_push / pop (two CAS per op: this CPU's free-list
 *                         shard, uncontended, then the shared stack head)
 *   ck_stack MPMC         Concurrency Kit ck_stack_push_mpmc / ck_stack_pop_mpmc
 *                         (ABA-safe through a generation counter and a 16-byte
 *                         CAS); intrusive: each thread holds one entry and
 *                         pushes back whichever entry it popped last
 *   mutex stack           array stack under one pthread mutex
 *   spinlock stack        the same array stack under a test-and-test-and-set
 *                         spinlock (one atomic exchange per lock, `pause`
 *                         while it is held)
 * ck_stack is the real Concurrency Kit, linked into this process; without it
 * its lines say "skipped". */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "spacesim/stack.h"

#ifdef SP_HAVE_CK
#include <ck_stack.h>
#endif

#define CAP 1024

static uint64_t g_pairs; /* per thread */

typedef enum { S_SP_CACHED, S_SP, S_CK, S_MUTEX, S_SPIN } skind_t;

typedef struct {
    pthread_mutex_t lock;
    _Alignas(64) _Atomic int spin; /* the spinlock row's lock: 0 free, 1 held */
    size_t n;
    void *a[CAP];
} mstack_t;

static inline void spin_lock(_Atomic int *l) {
    /* Acquire on the exchange that takes the lock: the previous holder's
     * writes to the stack (released by spin_unlock) are visible to us. The
     * relaxed loads only wait for the line to show "free" before retrying. */
    while (atomic_exchange_explicit(l, 1, memory_order_acquire) != 0)
        while (atomic_load_explicit(l, memory_order_relaxed) != 0) __builtin_ia32_pause();
}
static inline void spin_unlock(_Atomic int *l) {
    /* Release: our stack writes happen before the next holder's acquire. */
    atomic_store_explicit(l, 0, memory_order_release);
}

#ifdef SP_HAVE_CK
typedef struct {
    ck_stack_entry_t e; /* first member: the container is the entry */
    uintptr_t v;
} ck_item_t;
#endif

typedef struct srun srun_t;
typedef struct {
    srun_t *r;
    int id;
    uint64_t pushed_sum, popped_sum, failures;
} sworker_t;

struct srun {
    skind_t kind;
    sp_stack_t s;
    mstack_t m;
#ifdef SP_HAVE_CK
    ck_stack_t ck __attribute__((aligned(16)));
    ck_item_t items[2];
#endif
    _Atomic int ready, go;
    sworker_t w[2];
};

static void *worker(void *arg) {
    sworker_t *w = arg;
    srun_t *r = w->r;
    sp_bench_pin_self(w->id);
    /* Release/acquire start pistol: see run_stack. */
    atomic_fetch_add_explicit(&r->ready, 1, memory_order_release);
    while (!atomic_load_explicit(&r->go, memory_order_acquire)) __builtin_ia32_pause();
    uintptr_t base = ((uintptr_t)w->id << 40) + 1;
    uint64_t n = g_pairs, psum = 0, qsum = 0, fail = 0;
    switch (r->kind) {
    case S_SP_CACHED: {
        sp_stack_cache_t c;
        sp_stack_cache_init(&c, &r->s);
        for (uint64_t i = 0; i < n; i++) {
            void *v;
            fail += sp_stack_push_cached(&c, (void *)(base + i)) != 0;
            psum += base + i;
            if (sp_stack_pop_cached(&c, &v) == 0)
                qsum += (uintptr_t)v;
            else
                fail++;
        }
        sp_stack_cache_flush(&c);
        break;
    }
    case S_SP:
        for (uint64_t i = 0; i < n; i++) {
            void *v;
            fail += sp_stack_push(&r->s, (void *)(base + i)) != 0;
            psum += base + i;
            if (sp_stack_pop(&r->s, &v) == 0)
                qsum += (uintptr_t)v;
            else
                fail++;
        }
        break;
    case S_CK:
#ifdef SP_HAVE_CK
    {
        ck_item_t *mine = &r->items[w->id];
        for (uint64_t i = 0; i < n; i++) {
            mine->v = base + i;
            psum += base + i;
            ck_stack_push_mpmc(&r->ck, &mine->e);
            ck_stack_entry_t *e = ck_stack_pop_mpmc(&r->ck);
            if (e == NULL) {
                fail++;
                break;
            }
            mine = (ck_item_t *)(void *)e;
            qsum += mine->v;
        }
    }
#endif
        break;
    case S_MUTEX:
        for (uint64_t i = 0; i < n; i++) {
            pthread_mutex_lock(&r->m.lock);
            if (r->m.n < CAP)
                r->m.a[r->m.n++] = (void *)(base + i);
            else
                fail++;
            pthread_mutex_unlock(&r->m.lock);
            psum += base + i;
            pthread_mutex_lock(&r->m.lock);
            if (r->m.n > 0)
                qsum += (uintptr_t)r->m.a[--r->m.n];
            else
                fail++;
            pthread_mutex_unlock(&r->m.lock);
        }
        break;
    case S_SPIN:
        for (uint64_t i = 0; i < n; i++) {
            spin_lock(&r->m.spin);
            if (r->m.n < CAP)
                r->m.a[r->m.n++] = (void *)(base + i);
            else
                fail++;
            spin_unlock(&r->m.spin);
            psum += base + i;
            spin_lock(&r->m.spin);
            if (r->m.n > 0)
                qsum += (uintptr_t)r->m.a[--r->m.n];
            else
                fail++;
            spin_unlock(&r->m.spin);
        }
        break;
    }
    w->pushed_sum = psum;
    w->popped_sum = qsum;
    w->failures = fail;
    return NULL;
}

static double run_stack(void *arg) {
    skind_t kind = *(const skind_t *)arg;
    srun_t *r = aligned_alloc(128, (sizeof(srun_t) + 127) / 128 * 128);
    if (r == NULL) return -1;
    *r = (srun_t){.kind = kind};
    if (kind == S_SP || kind == S_SP_CACHED) {
        if (sp_stack_init(&r->s, CAP, NULL) != 0) return -1;
    } else if (kind == S_MUTEX) {
        pthread_mutex_init(&r->m.lock, NULL);
    } else if (kind == S_SPIN) {
        atomic_init(&r->m.spin, 0);
    } else {
#ifdef SP_HAVE_CK
        ck_stack_init(&r->ck);
#else
        free(r);
        return -1;
#endif
    }
    atomic_init(&r->ready, 0);
    atomic_init(&r->go, 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        r->w[i].r = r;
        r->w[i].id = i;
        if (pthread_create(&t[i], NULL, worker, &r->w[i]) != 0) return -1;
    }
    /* Acquire: both workers are pinned and spinning. */
    while (atomic_load_explicit(&r->ready, memory_order_acquire) != 2) sched_yield();
    uint64_t t0 = sp_bench_now_ns();
    atomic_store_explicit(&r->go, 1, memory_order_release); /* start pistol */
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    uint64_t t1 = sp_bench_now_ns();
    uint64_t ps = r->w[0].pushed_sum + r->w[1].pushed_sum, qs = r->w[0].popped_sum + r->w[1].popped_sum;
    uint64_t fail = r->w[0].failures + r->w[1].failures;
    if (kind == S_SP || kind == S_SP_CACHED) {
        if (!sp_stack_empty_approx(&r->s)) fail++;
        sp_stack_destroy(&r->s);
    } else if (kind == S_MUTEX) {
        pthread_mutex_destroy(&r->m.lock);
    }
    free(r);
    if (fail != 0 || ps != qs) return -1;
    return (double)(2 * g_pairs) / ((double)(t1 - t0) / 1e9) / 1e6;
}

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "stack");
    g_pairs = sp_bench_quick() ? 1000000 : 5000000;
    static skind_t k_cached = S_SP_CACHED, k_sp = S_SP, k_mutex = S_MUTEX, k_spin = S_SPIN;
#ifdef SP_HAVE_CK
    static skind_t k_ck = S_CK;
#endif
    const char *u = "M pairs/s";
    sp_bench_row_t rows[] = {
        {.name = "sp_stack cached 2T", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_stack,
         .arg = &k_cached},
        {.name = "sp_stack 2T", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_stack, .arg = &k_sp},
        {.name = "mutex stack 2T", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_stack,
         .arg = &k_mutex},
        {.name = "spinlock stack 2T", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_stack,
         .arg = &k_spin},
#ifdef SP_HAVE_CK
        {.name = "ck_stack MPMC 2T", .unit = u, .higher_is_better = 1, .two_thread = 1, .fn = run_stack, .arg = &k_ck},
#endif
    };
    int nrows = (int)(sizeof rows / sizeof rows[0]);
    sp_bench_run(rows, nrows);
#ifdef SP_HAVE_CK
    sp_bench_report(&rows[0], &rows[4]);
    sp_bench_report(&rows[1], &rows[4]);
    printf("    note: ck_stack is intrusive (the caller owns the nodes; one CAS per push or pop); sp_stack copies\n"
           "    values into nodes of its own pool, so a plain push or pop also moves a node on the free list:\n"
           "    two CASes per operation, but the free-list one is on this CPU's shard, a line no other CPU\n"
           "    touches, so only the stack head is contended, as in ck_stack; the cached variant moves nodes\n"
           "    16 at a time and pays one CAS per operation\n");
#else
    printf("sp_stack cached 2T vs ck_stack MPMC 2T: skipped: Concurrency Kit (libck-dev) not installed "
           "(quickstart.sh bench installs it)\n");
    printf("sp_stack 2T vs ck_stack MPMC 2T: skipped: Concurrency Kit (libck-dev) not installed "
           "(quickstart.sh bench installs it)\n");
#endif
    sp_bench_report(&rows[0], &rows[3]);
    sp_bench_report(&rows[1], &rows[3]);
    sp_bench_report(&rows[0], &rows[2]);
    sp_bench_report(&rows[1], &rows[2]);
    return sp_bench_finish();
}
