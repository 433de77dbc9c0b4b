/* check_stack.c: unit tests of the tagged-index Treiber stack
 * (spacesim/stack.h), including the seed's ABA / use-after-free defect as a
 * white-box check and a short concurrent push/pop integrity test (the long
 * one is tests/stress/check_stress_stack.c). */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "helpers/sp_alloc.h"
#include "helpers/sp_check.h"
#include "spacesim/stack.h"

#define V(i) ((void *)(uintptr_t)(i))

START_TEST(test_stack_init_rejects_bad_capacity_and_oom) {
    sp_stack_t s;
    ck_assert_int_eq(sp_stack_init(&s, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_stack_init(NULL, 4, NULL), SP_EINVAL);
#if SIZE_MAX > 0xFFFFFFFFu
    ck_assert_int_eq(sp_stack_init(&s, (size_t)SP_STACK_MAX_CAPACITY + 1, NULL), SP_EINVAL);
#endif
    sp_test_alloc_t f; /* the shared allocator of tests/helpers/sp_alloc.h */
    sp_test_alloc_init(&f, 0, 0); /* every call fails */
    sp_allocator_t failing = sp_test_allocator(&f);
    ck_assert_int_eq(sp_stack_init(&s, 16, &failing), SP_ENOMEM);
    ck_assert_int_ge(sp_test_alloc_get(&f.calls), 1);
    ck_assert_int_eq(sp_test_alloc_get(&f.live_bytes), 0);
}
END_TEST

START_TEST(test_stack_lifo_order_and_empty_eagain) {
    sp_stack_t s;
    ck_assert_int_eq(sp_stack_init(&s, 8, NULL), 0);
    ck_assert_int_eq(sp_stack_empty_approx(&s), 1);
    for (uintptr_t i = 1; i <= 5; i++) ck_assert_int_eq(sp_stack_push(&s, V(i)), 0);
    ck_assert_int_eq(sp_stack_empty_approx(&s), 0);
    for (uintptr_t i = 5; i >= 1; i--) {
        void *p = NULL;
        ck_assert_int_eq(sp_stack_pop(&s, &p), 0);
        ck_assert_ptr_eq(p, V(i));
    }
    void *p = &s;
    ck_assert_int_eq(sp_stack_pop(&s, &p), SP_EAGAIN);
    ck_assert_ptr_eq(p, &s); /* untouched */
    ck_assert_int_eq(sp_stack_empty_approx(&s), 1);
    /* NULL is a value like any other. */
    ck_assert_int_eq(sp_stack_push(&s, NULL), 0);
    p = &s;
    ck_assert_int_eq(sp_stack_pop(&s, &p), 0);
    ck_assert_ptr_null(p);
    sp_stack_destroy(&s);
}
END_TEST

START_TEST(test_stack_push_past_capacity_3_eagain_then_reuses_nodes) {
    sp_stack_t s;
    ck_assert_int_eq(sp_stack_init(&s, 3, NULL), 0);
    ck_assert_uint_eq(sp_stack_capacity(&s), 3);
    for (int round = 0; round < 4; round++) {
        for (uintptr_t i = 0; i < 3; i++) ck_assert_int_eq(sp_stack_push(&s, V(10 * round + i)), 0);
        ck_assert_int_eq(sp_stack_push(&s, V(99)), SP_EAGAIN);
        for (uintptr_t i = 3; i-- > 0;) {
            void *p;
            ck_assert_int_eq(sp_stack_pop(&s, &p), 0);
            ck_assert_ptr_eq(p, V(10 * round + i));
        }
    }
    sp_stack_destroy(&s);
}
END_TEST

static void collect(void *ctx, void *v) {
    uintptr_t *acc = ctx;
    acc[acc[0] + 1] = (uintptr_t)v;
    acc[0]++;
}

START_TEST(test_stack_pop_all_lifo_and_frees_every_node) {
    sp_stack_t s;
    ck_assert_int_eq(sp_stack_init(&s, 6, NULL), 0);
    ck_assert_uint_eq(sp_stack_pop_all(&s, collect, NULL), 0); /* empty: fn not called */
    for (uintptr_t i = 1; i <= 6; i++) ck_assert_int_eq(sp_stack_push(&s, V(i)), 0);
    uintptr_t acc[8] = {0};
    ck_assert_uint_eq(sp_stack_pop_all(&s, collect, acc), 6);
    ck_assert_uint_eq(acc[0], 6);
    for (int i = 0; i < 6; i++) ck_assert_uint_eq(acc[i + 1], 6 - i);
    ck_assert_int_eq(sp_stack_empty_approx(&s), 1);
    /* All 6 nodes went back to the pool. */
    for (uintptr_t i = 1; i <= 6; i++) ck_assert_int_eq(sp_stack_push(&s, V(i)), 0);
    ck_assert_int_eq(sp_stack_push(&s, V(7)), SP_EAGAIN);
    ck_assert_uint_eq(sp_stack_pop_all(&s, NULL, NULL), 6);
    sp_stack_destroy(&s);
}
END_TEST

/* Seed defect (ABA): pop read head, then head->next, then CAS'd head. If
 * between the read and the CAS the top node is popped and the same node is
 * pushed again (the pool hands it straight back), a plain pointer CAS would
 * succeed with a stale next. Here the node index comes back on top but the
 * head word must differ (the tag moved), so the stalled pop's CAS fails. */
START_TEST(test_stack_aba_same_node_back_on_top_changes_head_word) {
    sp_stack_t s;
    ck_assert_int_eq(sp_stack_init(&s, 4, NULL), 0);
    ck_assert_int_eq(sp_stack_push(&s, V(1)), 0);
    ck_assert_int_eq(sp_stack_push(&s, V(2)), 0);
    uint64_t seen = atomic_load(&s.head.w); /* a pop stalls here, after reading next */
    void *p;
    ck_assert_int_eq(sp_stack_pop(&s, &p), 0);  /* another thread pops 2 */
    ck_assert_int_eq(sp_stack_pop(&s, &p), 0);  /* ... and 1 */
    ck_assert_int_eq(sp_stack_push(&s, V(3)), 0); /* ... and pushes 3: reuses a node */
    ck_assert_int_eq(sp_stack_push(&s, V(4)), 0); /* ... 4 reuses the old top node */
    uint64_t now = atomic_load(&s.head.w);
    ck_assert_uint_eq((uint32_t)now, (uint32_t)seen); /* same node index on top: the ABA setup */
    ck_assert_uint_ne(now, seen);                      /* but the tag differs: CAS would fail */
    uint64_t expect = seen;
    ck_assert(!atomic_compare_exchange_strong(&s.head.w, &expect, seen + 1));
    ck_assert_int_eq(sp_stack_pop(&s, &p), 0);
    ck_assert_ptr_eq(p, V(4));
    ck_assert_int_eq(sp_stack_pop(&s, &p), 0);
    ck_assert_ptr_eq(p, V(3));
    sp_stack_destroy(&s);
}
END_TEST

START_TEST(test_stack_cached_push_pop_lifo_and_flush_returns_nodes) {
    sp_stack_t s;
    ck_assert_int_eq(sp_stack_init(&s, 40, NULL), 0);
    sp_stack_cache_t c;
    sp_stack_cache_init(&c, &s);
    for (uintptr_t i = 0; i < 40; i++) ck_assert_int_eq(sp_stack_push_cached(&c, V(i)), 0);
    ck_assert_int_eq(sp_stack_push_cached(&c, V(99)), SP_EAGAIN);
    for (uintptr_t i = 40; i-- > 0;) {
        void *p;
        ck_assert_int_eq(sp_stack_pop_cached(&c, &p), 0);
        ck_assert_ptr_eq(p, V(i));
    }
    ck_assert_uint_gt(c.n, 0); /* some nodes sit in the cache */
    /* Uncached pushes see only the shared pool until the cache is flushed. */
    uint32_t cached = c.n;
    int pushed = 0;
    while (sp_stack_push(&s, V(1)) == 0) pushed++;
    ck_assert_int_eq(pushed, 40 - (int)cached);
    sp_stack_cache_flush(&c);
    ck_assert_uint_eq(c.n, 0);
    while (sp_stack_push(&s, V(1)) == 0) pushed++;
    ck_assert_int_eq(pushed, 40);
    sp_stack_destroy(&s);
}
END_TEST

/* Seed regression: concurrent push/pop integrity. Two threads push distinct
 * values and pop on a tiny pool (so nodes are reused constantly, the ABA
 * setting); every value must come out exactly once. */
#define RT_PER_THREAD 200000
typedef struct {
    sp_stack_t *s;
    int id;
    int cached;
    uint8_t *seen; /* one byte per value, written by whoever popped it */
    long popped;
} rt_arg_t;

static void rt_record(rt_arg_t *a, void *v) {
    uintptr_t x = (uintptr_t)v;
    ck_assert_uint_lt(x, 2 * RT_PER_THREAD);
    /* Relaxed atomic increment: two poppers of one value would both land
     * here; the final check finds the 2. */
    __atomic_fetch_add(&a->seen[x], 1, __ATOMIC_RELAXED);
    a->popped++;
}

static void *rt_thread(void *p) {
    rt_arg_t *a = p;
    sp_stack_cache_t c;
    sp_stack_cache_init(&c, a->s);
    for (uintptr_t i = 0; i < RT_PER_THREAD; i++) {
        void *v = V(a->id * RT_PER_THREAD + i), *out;
        for (;;) {
            int rc = a->cached ? sp_stack_push_cached(&c, v) : sp_stack_push(a->s, v);
            if (rc == 0) break;
            if ((a->cached ? sp_stack_pop_cached(&c, &out) : sp_stack_pop(a->s, &out)) == 0) rt_record(a, out);
        }
        if ((i & 1) && (a->cached ? sp_stack_pop_cached(&c, &out) : sp_stack_pop(a->s, &out)) == 0)
            rt_record(a, out);
    }
    sp_stack_cache_flush(&c);
    return NULL;
}

static void run_integrity(int cached) {
    sp_stack_t s;
    ck_assert_int_eq(sp_stack_init(&s, cached ? 80 : 4, NULL), 0);
    uint8_t *seen = calloc(2 * RT_PER_THREAD, 1);
    ck_assert_ptr_nonnull(seen);
    rt_arg_t a[2] = {{&s, 0, cached, seen, 0}, {&s, 1, cached, seen, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, rt_thread, &a[i]), 0);
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    rt_arg_t rest = {&s, 0, 0, seen, 0};
    void *out;
    while (sp_stack_pop(&s, &out) == 0) rt_record(&rest, out);
    ck_assert_int_eq(a[0].popped + a[1].popped + rest.popped, 2 * RT_PER_THREAD);
    for (long i = 0; i < 2 * RT_PER_THREAD; i++)
        if (seen[i] != 1) ck_abort_msg("value %ld popped %d times", i, seen[i]);
    free(seen);
    sp_stack_destroy(&s);
}

START_TEST(test_stack_two_threads_push_pop_tiny_pool_every_value_once) { run_integrity(0); }
END_TEST

START_TEST(test_stack_two_threads_cached_every_value_once) { run_integrity(1); }
END_TEST

static Suite *stack_suite(void) {
    Suite *s = suite_create("stack");
    TCase *tc;
#define ADD(name, fn)        \
    tc = tcase_create(name); \
    tcase_set_timeout(tc, sp_timeout(30)); \
    tcase_add_test(tc, fn);  \
    suite_add_tcase(s, tc)
    ADD("init", test_stack_init_rejects_bad_capacity_and_oom);
    ADD("lifo", test_stack_lifo_order_and_empty_eagain);
    ADD("capacity", test_stack_push_past_capacity_3_eagain_then_reuses_nodes);
    ADD("pop_all", test_stack_pop_all_lifo_and_frees_every_node);
    ADD("aba", test_stack_aba_same_node_back_on_top_changes_head_word);
    ADD("cache", test_stack_cached_push_pop_lifo_and_flush_returns_nodes);
    ADD("concurrent_integrity", test_stack_two_threads_push_pop_tiny_pool_every_value_once);
    ADD("concurrent_integrity_cached", test_stack_two_threads_cached_every_value_once);
#undef ADD
    return s;
}

SP_CHECK_MAIN(stack_suite)
