/* check_stress_stack.c: concurrent push/pop integrity of the Treiber stack
 * (the seed's LockFreeStack had a use-after-free in pop and was open to ABA).
 *
 * T threads each push their own items (thread id << 40 | sequence) and pop
 * in between, on a small pool so nodes are recycled constantly: the setting in
 * which an untagged Treiber stack corrupts its list. Every popped value sets
 * its bit in a shared bitmap (atomic fetch_or; a bit already set is a
 * duplicate); at the end every bit must be set (no loss). Variants: plain
 * push/pop, per-thread caches, and pop_all. No FIFO check: it is a stack.
 *
 * Environment: SP_STRESS_THREADS=N runs N threads only (default: 2 and 4);
 * SP_STRESS_ITEMS total pushes per run (default 4M, 1M under TSan). */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "../helpers/sp_check.h"
#include "spacesim/stack.h"

#define MAXT 64
#define SEQ_BITS 40

typedef enum { MODE_PLAIN, MODE_CACHED, MODE_POP_ALL } smode_t;

typedef struct srun srun_t;
typedef struct {
    srun_t *r;
    int id;
    sp_stack_cache_t cache;
    uint64_t count, errors;
} sworker_t;

struct srun {
    smode_t mode;
    int nt;
    uint64_t per_thread;
    sp_stack_t s;
    _Atomic uint64_t *bitmap;
    sworker_t w[MAXT];
};

static void record(sworker_t *w, void *v) {
    srun_t *r = w->r;
    uint64_t item = (uint64_t)(uintptr_t)v;
    uint64_t t = item >> SEQ_BITS, seq = item & (((uint64_t)1 << SEQ_BITS) - 1);
    if (t >= (uint64_t)r->nt || seq >= r->per_thread) {
        w->errors++; /* a value nobody pushed: corrupted list */
        return;
    }
    uint64_t bit = t * r->per_thread + seq;
    /* Relaxed: the bitmap is read only after join. */
    uint64_t old = atomic_fetch_or_explicit(&r->bitmap[bit / 64], (uint64_t)1 << (bit % 64), memory_order_relaxed);
    if (old & ((uint64_t)1 << (bit % 64))) w->errors++; /* popped twice */
    w->count++;
}

static void record_cb(void *ctx, void *v) { record(ctx, v); }

static int do_push(sworker_t *w, void *v) {
    return w->r->mode == MODE_CACHED ? sp_stack_push_cached(&w->cache, v) : sp_stack_push(&w->r->s, v);
}

/* Pop one (or, in pop_all mode, every 8th call, everything). */
static void do_pop(sworker_t *w, uint64_t i) {
    void *v;
    srun_t *r = w->r;
    if (r->mode == MODE_POP_ALL && (i & 7) == 0) {
        sp_stack_pop_all(&r->s, record_cb, w);
        return;
    }
    int rc = r->mode == MODE_CACHED ? sp_stack_pop_cached(&w->cache, &v) : sp_stack_pop(&r->s, &v);
    if (rc == 0) record(w, v);
}

static void *worker(void *arg) {
    sworker_t *w = arg;
    srun_t *r = w->r;
    sp_stack_cache_init(&w->cache, &r->s);
    uint64_t base = (uint64_t)w->id << SEQ_BITS;
    for (uint64_t i = 0; i < r->per_thread; i++) {
        void *v = (void *)(uintptr_t)(base | i);
        while (do_push(w, v) != 0) {
            do_pop(w, i); /* pool exhausted: make room */
            sched_yield();
        }
        /* Pop a bit less often than we push, so the stack stays non-empty
         * and pops race with pushes on a recycled pool. */
        if (i % 3 != 0) do_pop(w, i);
    }
    sp_stack_cache_flush(&w->cache);
    return NULL;
}

static void run_stack_stress(smode_t mode, int nt, uint64_t total) {
    srun_t *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->mode = mode;
    r->nt = nt;
    r->per_thread = total / (uint64_t)nt;
    /* Small pools: 8 nodes per thread, plus room for the caches' stashes. */
    size_t cap = (size_t)nt * 8 + (mode == MODE_CACHED ? (size_t)nt * SP_STACK_CACHE_MAX : 0);
    ck_assert_int_eq(sp_stack_init(&r->s, cap, NULL), 0);
    uint64_t nbits = r->per_thread * (uint64_t)nt;
    r->bitmap = calloc((size_t)((nbits + 63) / 64), sizeof *r->bitmap);
    ck_assert_ptr_nonnull(r->bitmap);

    pthread_t t[MAXT];
    for (int i = 0; i < nt; i++) {
        r->w[i].r = r;
        r->w[i].id = i;
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker, &r->w[i]), 0);
    }
    for (int i = 0; i < nt; i++) ck_assert_int_eq(pthread_join(t[i], NULL), 0);

    /* Drain what is left, single-threaded. */
    sworker_t rest = {.r = r};
    ck_assert_uint_le(sp_stack_pop_all(&r->s, record_cb, &rest), cap);
    ck_assert_int_eq(sp_stack_empty_approx(&r->s), 1);

    uint64_t count = rest.count, errors = rest.errors;
    for (int i = 0; i < nt; i++) {
        count += r->w[i].count;
        errors += r->w[i].errors;
    }
    ck_assert_uint_eq(errors, 0);
    ck_assert_uint_eq(count, nbits);
    for (uint64_t b = 0; b < nbits; b++)
        if (!(atomic_load_explicit(&r->bitmap[b / 64], memory_order_relaxed) & ((uint64_t)1 << (b % 64))))
            ck_abort_msg("value %llu lost", (unsigned long long)b);
    /* Every node is back in the pool: exactly cap pushes fit. */
    size_t pushed = 0;
    while (sp_stack_push(&r->s, NULL) == 0) pushed++;
    ck_assert_uint_eq(pushed, cap);
    sp_stack_destroy(&r->s);
    free(r->bitmap);
    free(r);
}

static uint64_t items(void) { return (uint64_t)sp_env_long("SP_STRESS_ITEMS", SP_UNDER_TSAN ? 1000000 : 4000000); }

static void run_configs(smode_t mode) {
    long t = sp_env_long("SP_STRESS_THREADS", 0);
    if (t > MAXT) t = MAXT;
    if (t > 0) {
        run_stack_stress(mode, (int)t, items());
    } else {
        run_stack_stress(mode, 2, items());
        run_stack_stress(mode, 4, items());
    }
}

START_TEST(test_stress_stack_push_pop_recycled_pool_every_value_once) { run_configs(MODE_PLAIN); }
END_TEST

START_TEST(test_stress_stack_cached_every_value_once_all_nodes_returned) { run_configs(MODE_CACHED); }
END_TEST

START_TEST(test_stress_stack_pop_all_racing_pushes_every_value_once) { run_configs(MODE_POP_ALL); }
END_TEST

static Suite *stress_suite(void) {
    Suite *s = suite_create("stress_stack");
    TCase *tc;
#define ADD(name, fn)                       \
    tc = tcase_create(name);                \
    tcase_set_timeout(tc, sp_timeout(600)); /* a safety net for a hang, not a speed check: preempted spinning threads on a loaded 2-core machine take minutes */ \
    tcase_add_test(tc, fn);                 \
    suite_add_tcase(s, tc)
    ADD("plain", test_stress_stack_push_pop_recycled_pool_every_value_once);
    ADD("cached", test_stress_stack_cached_every_value_once_all_nodes_returned);
    ADD("pop_all", test_stress_stack_pop_all_racing_pushes_every_value_once);
#undef ADD
    return s;
}

SP_CHECK_MAIN(stress_suite)
