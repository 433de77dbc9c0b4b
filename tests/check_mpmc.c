/* check_mpmc.c: unit tests of the bounded MPMC queue (spacesim/mpmc.h) and
 * the SPSC pointer ring (spacesim/spsc.h). Concurrency at scale lives in
 * tests/stress/check_stress_mpmc.c; here each seed defect has a deterministic
 * regression test, some of them white-box (they drive the indices by hand to
 * freeze another thread mid-operation). */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "helpers/sp_alloc.h"
#include "helpers/sp_check.h"
#include "spacesim/mpmc.h"
#include "spacesim/spsc.h"

/* ---------------------------------------------------------------- helpers */

/* The allocators below are the shared one of tests/helpers/sp_alloc.h:
 * fail_after 0 makes every call fail, -1 only counts. */
#define FAILING_ALLOCATOR(ctx, al) \
    sp_test_alloc_t ctx;           \
    sp_test_alloc_init(&ctx, 0, 0); \
    sp_allocator_t al = sp_test_allocator(&ctx)

static uint64_t u64_pop(sp_mpmc_t *q) {
    uint64_t v = 0xdeadbeef;
    ck_assert_int_eq(sp_mpmc_try_pop(q, &v), 0);
    return v;
}

/* ---------------------------------------------------------------- init */

START_TEST(test_mpmc_init_rejects_bad_capacity_and_elem_size) {
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 0, 8, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_mpmc_init(&q, 1, 8, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_mpmc_init(&q, 3, 8, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_mpmc_init(&q, 1000, 8, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_mpmc_init(&q, 16, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_mpmc_init(NULL, 16, 8, NULL), SP_EINVAL);
}
END_TEST

START_TEST(test_mpmc_init_huge_sizes_overflow) {
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, (size_t)1 << 62, 64, NULL), SP_EOVERFLOW);
    ck_assert_int_eq(sp_mpmc_init(&q, 2, SIZE_MAX - 4, NULL), SP_EOVERFLOW);
}
END_TEST

START_TEST(test_mpmc_init_oom_returns_enomem) {
    sp_mpmc_t q;
    FAILING_ALLOCATOR(f, failing);
    ck_assert_int_eq(sp_mpmc_init(&q, 16, 8, &failing), SP_ENOMEM);
    ck_assert_int_eq(sp_test_alloc_get(&f.calls), 1);
}
END_TEST

START_TEST(test_mpmc_destroy_frees_what_init_allocated) {
    sp_test_alloc_t c;
    sp_test_alloc_init(&c, -1, 0);
    sp_allocator_t a = sp_test_allocator(&c);
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 64, 128, &a), 0);
    ck_assert_int_eq(sp_test_alloc_get(&c.allocs), 1);
    ck_assert_int_ge(sp_test_alloc_get(&c.live_bytes), 64 * 136);
    sp_mpmc_destroy(&q); /* the allocator checks free gets the size alloc got */
    ck_assert_int_eq(sp_test_alloc_get(&c.frees), 1);
    ck_assert_int_eq(sp_test_alloc_get(&c.live_bytes), 0);
    sp_mpmc_destroy(&q); /* second destroy is a no-op */
    ck_assert_int_eq(sp_test_alloc_get(&c.frees), 1);
}
END_TEST

/* ---------------------------------------------------------------- capacity */

/* Seed defect: capacity-1 usable. Every one of the capacity cells must hold. */
START_TEST(test_mpmc_full_capacity_4_usable_then_full) {
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 4, sizeof(uint64_t), NULL), 0);
    ck_assert_uint_eq(sp_mpmc_capacity(&q), 4);
    for (uint64_t i = 0; i < 4; i++) ck_assert_int_eq(sp_mpmc_try_push(&q, &i), 0);
    uint64_t x = 99;
    ck_assert_int_eq(sp_mpmc_try_push(&q, &x), SP_EAGAIN);
    ck_assert_uint_eq(sp_mpmc_size_approx(&q), 4);
    for (uint64_t i = 0; i < 4; i++) ck_assert_uint_eq(u64_pop(&q), i);
    uint64_t v = 7;
    ck_assert_int_eq(sp_mpmc_try_pop(&q, &v), SP_EAGAIN);
    ck_assert_uint_eq(v, 7); /* untouched on failure */
    ck_assert_uint_eq(sp_mpmc_size_approx(&q), 0);
    sp_mpmc_destroy(&q);
}
END_TEST

/* Seed defect: len() wrong after the ring wraps. Run 3.5 laps of a ring of 8
 * with a varying fill level and check size and FIFO order at every step. */
START_TEST(test_mpmc_size_approx_exact_across_wrap_3_5_laps) {
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 8, sizeof(uint64_t), NULL), 0);
    uint64_t next_in = 0, next_out = 0;
    for (int step = 0; step < 28; step++) {
        int push = 1 + step % 5, pop = 1 + (step * 3) % 4;
        for (int i = 0; i < push; i++) {
            if (next_in - next_out == 8) {
                ck_assert_int_eq(sp_mpmc_try_push(&q, &next_in), SP_EAGAIN);
                break;
            }
            ck_assert_int_eq(sp_mpmc_try_push(&q, &next_in), 0);
            next_in++;
            ck_assert_uint_eq(sp_mpmc_size_approx(&q), next_in - next_out);
        }
        for (int i = 0; i < pop && next_out < next_in; i++) {
            ck_assert_uint_eq(u64_pop(&q), next_out);
            next_out++;
            ck_assert_uint_eq(sp_mpmc_size_approx(&q), next_in - next_out);
        }
    }
    ck_assert_uint_ge(next_out, 3 * 8 + 4); /* really went round 3.5 times */
    sp_mpmc_destroy(&q);
}
END_TEST

/* ---------------------------------------------------------------- by value */

typedef struct {
    uint64_t id;
    char text[112];
    uint32_t kind, prio;
} msg128_t;

START_TEST(test_mpmc_msg128_by_value_fifo_bytes_intact) {
    ck_assert_uint_eq(sizeof(msg128_t), 128);
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 16, sizeof(msg128_t), NULL), 0);
    for (int round = 0; round < 5; round++) {
        for (uint64_t i = 0; i < 16; i++) {
            msg128_t m;
            memset(&m, (int)(i + round), sizeof m);
            m.id = round * 100 + i;
            ck_assert_int_eq(sp_mpmc_try_push(&q, &m), 0);
        }
        for (uint64_t i = 0; i < 16; i++) {
            msg128_t m, want;
            memset(&want, (int)(i + round), sizeof want);
            want.id = round * 100 + i;
            ck_assert_int_eq(sp_mpmc_try_pop(&q, &m), 0);
            ck_assert_int_eq(memcmp(&m, &want, sizeof m), 0);
        }
    }
    sp_mpmc_destroy(&q);
}
END_TEST

START_TEST(test_mpmc_odd_elem_size_3_and_61_roundtrip) {
    size_t sizes[] = {1, 3, 61};
    for (size_t k = 0; k < 3; k++) {
        size_t es = sizes[k];
        sp_mpmc_t q;
        ck_assert_int_eq(sp_mpmc_init(&q, 4, es, NULL), 0);
        unsigned char in[64], out[64];
        for (int i = 0; i < 10; i++) {
            memset(in, 0x40 + i, es);
            memset(out, 0, sizeof out);
            ck_assert_int_eq(sp_mpmc_try_push(&q, in), 0);
            ck_assert_int_eq(sp_mpmc_try_pop(&q, out), 0);
            ck_assert_int_eq(memcmp(in, out, es), 0);
            ck_assert_uint_eq(out[es], 0); /* wrote exactly elem_size bytes */
        }
        sp_mpmc_destroy(&q);
    }
}
END_TEST

/* ---------------------------------------------------------------- batches */

START_TEST(test_mpmc_push_n_pushes_fitting_prefix_5_plus_3_of_10) {
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 8, sizeof(uint64_t), NULL), 0);
    uint64_t a[10];
    for (int i = 0; i < 10; i++) a[i] = 100 + i;
    ck_assert_uint_eq(sp_mpmc_try_push_n(&q, a, 5), 5);
    ck_assert_uint_eq(sp_mpmc_try_push_n(&q, a + 5, 5), 3); /* only 3 cells left */
    ck_assert_uint_eq(sp_mpmc_try_push_n(&q, a, 1), 0);
    ck_assert_uint_eq(sp_mpmc_size_approx(&q), 8);
    uint64_t out[16] = {0};
    ck_assert_uint_eq(sp_mpmc_try_pop_n(&q, out, 16), 8);
    for (int i = 0; i < 8; i++) ck_assert_uint_eq(out[i], 100 + i);
    ck_assert_uint_eq(sp_mpmc_try_pop_n(&q, out, 16), 0);
    ck_assert_uint_eq(sp_mpmc_try_push_n(&q, a, 0), 0);
    ck_assert_uint_eq(sp_mpmc_try_pop_n(&q, out, 0), 0);
    sp_mpmc_destroy(&q);
}
END_TEST

START_TEST(test_mpmc_batches_across_wrap_keep_fifo) {
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 16, sizeof(uint64_t), NULL), 0);
    uint64_t in = 0, out = 0, buf[7];
    for (int round = 0; round < 100; round++) {
        size_t n = 1 + round % 7;
        for (size_t i = 0; i < n; i++) buf[i] = in + i;
        size_t k = sp_mpmc_try_push_n(&q, buf, n);
        in += k;
        size_t m = sp_mpmc_try_pop_n(&q, buf, 1 + (round * 5) % 6);
        for (size_t i = 0; i < m; i++) ck_assert_uint_eq(buf[i], out++);
        ck_assert_uint_eq(sp_mpmc_size_approx(&q), in - out);
    }
    ck_assert_uint_gt(in, 3 * 16);
    sp_mpmc_destroy(&q);
}
END_TEST

/* ---------------------------------------------------------------- pointer fast path */

START_TEST(test_mpmc_ptr_fast_path_fifo_with_null_value) {
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 4, sizeof(void *), NULL), 0);
    int a, b;
    void *in[4] = {&a, NULL, &b, &a};
    for (int lap = 0; lap < 3; lap++) {
        for (int i = 0; i < 4; i++) ck_assert_int_eq(sp_mpmc_try_push_ptr(&q, in[i]), 0);
        ck_assert_int_eq(sp_mpmc_try_push_ptr(&q, &b), SP_EAGAIN);
        for (int i = 0; i < 4; i++) {
            void *p = (void *)&q;
            ck_assert_int_eq(sp_mpmc_try_pop_ptr(&q, &p), 0);
            ck_assert_ptr_eq(p, in[i]);
        }
        void *p = (void *)&q;
        ck_assert_int_eq(sp_mpmc_try_pop_ptr(&q, &p), SP_EAGAIN);
        ck_assert_ptr_eq(p, (void *)&q);
    }
    /* The fast path and the generic path agree on layout. */
    void *x = &a, *y = NULL;
    ck_assert_int_eq(sp_mpmc_try_push(&q, &x), 0);
    ck_assert_int_eq(sp_mpmc_try_pop_ptr(&q, &y), 0);
    ck_assert_ptr_eq(y, &a);
    ck_assert_int_eq(sp_mpmc_try_push_ptr(&q, &b), 0);
    ck_assert_int_eq(sp_mpmc_try_pop(&q, &y), 0);
    ck_assert_ptr_eq(y, &b);
    sp_mpmc_destroy(&q);
}
END_TEST

/* ---------------------------------------------------------------- seed defects, white-box */

/* Seed defect: a producer could overwrite a slot before its consumer emptied
 * it. Freeze a consumer between its claim and its copy-out (claim position 0
 * by hand, do not release the cell): the queue then reports size 3 but a
 * push must still fail, because cell 0 is not emptied yet. */
START_TEST(test_mpmc_push_never_overwrites_cell_claimed_but_not_emptied) {
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 4, sizeof(uint64_t), NULL), 0);
    for (uint64_t i = 0; i < 4; i++) ck_assert_int_eq(sp_mpmc_try_push(&q, &i), 0);
    /* "Consumer" claims position 0 and stalls. */
    size_t head = 0;
    ck_assert(atomic_compare_exchange_strong(&q.cons.s.pos, &head, 1));
    ck_assert_uint_eq(sp_mpmc_size_approx(&q), 3);
    uint64_t x = 42;
    ck_assert_int_eq(sp_mpmc_try_push(&q, &x), SP_EAGAIN);
    ck_assert_int_eq(sp_mpmc_try_push_ptr(&q, &x), SP_EAGAIN);
    ck_assert_uint_eq(sp_mpmc_try_push_n(&q, &x, 1), 0);
    /* The stalled consumer's cell still holds its element intact. */
    uint64_t held;
    memcpy(&held, q.cons.s.cells + SP_MPMC_CELL_HDR, sizeof held);
    ck_assert_uint_eq(held, 0);
    /* It finishes (releases the cell for the next lap); now the push fits. */
    atomic_store(((_Atomic size_t *)(void *)q.cons.s.cells), 0 + 4);
    ck_assert_int_eq(sp_mpmc_try_push(&q, &x), 0);
    for (uint64_t i = 1; i < 4; i++) ck_assert_uint_eq(u64_pop(&q), i);
    ck_assert_uint_eq(u64_pop(&q), 42);
    sp_mpmc_destroy(&q);
}
END_TEST

/* Seed defect: a failed tail CAS left tail behind and producers livelocked.
 * Freeze a producer that claimed position 0 (tail moved, cell unpublished):
 * our push must move on to position 1, not retry position 0 forever, and the
 * consumer must wait for position 0 (FIFO), then get both. */
START_TEST(test_mpmc_push_after_stalled_producer_claims_next_position) {
    sp_mpmc_t q;
    ck_assert_int_eq(sp_mpmc_init(&q, 8, sizeof(uint64_t), NULL), 0);
    size_t tail = 0;
    ck_assert(atomic_compare_exchange_strong(&q.prod.s.pos, &tail, 1)); /* stalled producer */
    uint64_t x = 11, v = 0;
    ck_assert_int_eq(sp_mpmc_try_push(&q, &x), 0);
    ck_assert_uint_eq(atomic_load(&q.prod.s.pos), 2);
    ck_assert_int_eq(sp_mpmc_try_pop(&q, &v), SP_EAGAIN); /* position 0 not published yet */
    /* Stalled producer completes position 0. */
    uint64_t ten = 10;
    memcpy(q.prod.s.cells + SP_MPMC_CELL_HDR, &ten, sizeof ten);
    atomic_store(((_Atomic size_t *)(void *)q.prod.s.cells), 1);
    ck_assert_uint_eq(u64_pop(&q), 10);
    ck_assert_uint_eq(u64_pop(&q), 11);
    /* An index that is behind (stale hint) catches up instead of spinning:
     * a pop/push pair issued after many others still works. */
    for (uint64_t i = 0; i < 20; i++) {
        ck_assert_int_eq(sp_mpmc_try_push(&q, &i), 0);
        ck_assert_uint_eq(u64_pop(&q), i);
    }
    sp_mpmc_destroy(&q);
}
END_TEST

/* ---------------------------------------------------------------- SPSC */

START_TEST(test_spsc_init_rejects_bad_capacity_and_oom) {
    sp_spsc_t q;
    ck_assert_int_eq(sp_spsc_init(&q, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_spsc_init(&q, 1, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_spsc_init(&q, 12, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_spsc_init(&q, (size_t)1 << 62, NULL), SP_EOVERFLOW);
    FAILING_ALLOCATOR(f, failing);
    ck_assert_int_eq(sp_spsc_init(&q, 16, &failing), SP_ENOMEM);
    ck_assert_int_eq(sp_test_alloc_get(&f.calls), 1);
}
END_TEST

START_TEST(test_spsc_full_capacity_fifo_and_null_rejected) {
    sp_spsc_t q;
    ck_assert_int_eq(sp_spsc_init(&q, 4, NULL), 0);
    uintptr_t base = 0x1000;
    ck_assert_int_eq(sp_spsc_try_push(&q, NULL), SP_EINVAL);
    for (int lap = 0; lap < 3; lap++) {
        for (uintptr_t i = 0; i < 4; i++) ck_assert_int_eq(sp_spsc_try_push(&q, (void *)(base + i)), 0);
        ck_assert_int_eq(sp_spsc_try_push(&q, (void *)base), SP_EAGAIN);
        ck_assert_uint_eq(sp_spsc_size_approx(&q), 4);
        for (uintptr_t i = 0; i < 4; i++) {
            void *p = NULL;
            ck_assert_int_eq(sp_spsc_try_pop(&q, &p), 0);
            ck_assert_ptr_eq(p, (void *)(base + i));
        }
        void *p = &q;
        ck_assert_int_eq(sp_spsc_try_pop(&q, &p), SP_EAGAIN);
        ck_assert_ptr_eq(p, &q);
        ck_assert_uint_eq(sp_spsc_size_approx(&q), 0);
    }
    ck_assert_uint_eq(sp_spsc_capacity(&q), 4);
    sp_spsc_destroy(&q);
}
END_TEST

START_TEST(test_spsc_batches_prefix_and_wrap) {
    sp_spsc_t q;
    ck_assert_int_eq(sp_spsc_init(&q, 8, NULL), 0);
    void *items[10], *out[16];
    for (uintptr_t i = 0; i < 10; i++) items[i] = (void *)(0x100 + i);
    ck_assert_uint_eq(sp_spsc_try_push_n(&q, items, 5), 5);
    ck_assert_uint_eq(sp_spsc_try_push_n(&q, items + 5, 5), 3); /* slow path: prefix that fits */
    ck_assert_uint_eq(sp_spsc_try_pop_n(&q, out, 16), 8);
    for (uintptr_t i = 0; i < 8; i++) ck_assert_ptr_eq(out[i], (void *)(0x100 + i));
    /* NULL stops a batch. */
    void *withnull[3] = {items[0], NULL, items[1]};
    ck_assert_uint_eq(sp_spsc_try_push_n(&q, withnull, 3), 1);
    ck_assert_uint_eq(sp_spsc_try_pop_n(&q, out, 16), 1);
    /* Many laps of mixed batch sizes keep FIFO. */
    uintptr_t in = 1, got = 1;
    for (int round = 0; round < 200; round++) {
        void *b[7];
        size_t n = 1 + round % 7;
        for (size_t i = 0; i < n; i++) b[i] = (void *)(in + i);
        in += sp_spsc_try_push_n(&q, b, n);
        size_t m = sp_spsc_try_pop_n(&q, out, 1 + (round * 3) % 5);
        for (size_t i = 0; i < m; i++) ck_assert_ptr_eq(out[i], (void *)got++);
        ck_assert_uint_eq(sp_spsc_size_approx(&q), in - got);
    }
    ck_assert_uint_gt(in, 100);
    sp_spsc_destroy(&q);
}
END_TEST

/* The probing batch calls (issue 13) are exact when one thread does both
 * sides: a push returns min(n, free slots), a pop min(max, queued items),
 * whatever mix of single and batch calls moved the indices past the limits
 * learnt from earlier probes; FIFO throughout. Ring of 64: the producer's
 * quarter-ring probe is 16 slots, the consumer's probe 4 batches (capped at
 * the ring), batch sizes up to 40. */
START_TEST(test_spsc_probing_batches_are_exact_single_thread) {
    sp_spsc_t q;
    ck_assert_int_eq(sp_spsc_init(&q, 64, NULL), 0);
    uintptr_t in = 1, got = 1;
    uint32_t rng = 12345;
    void *b[40], *out[40];
    for (int it = 0; it < 200000; it++) {
        rng = rng * 1103515245u + 12345u;
        uint32_t r = rng >> 8;
        size_t queued = in - got;
        if (r & 1) {
            size_t n = (r >> 1) % 7 == 0 ? 1 : 1 + (r >> 4) % 40;
            for (size_t i = 0; i < n; i++) b[i] = (void *)(in + i);
            size_t k = n == 1 && (r & 2) ? (size_t)(sp_spsc_try_push(&q, b[0]) == 0) : sp_spsc_try_push_n(&q, b, n);
            ck_assert_uint_eq(k, 64 - queued < n ? 64 - queued : n);
            in += k;
        } else {
            size_t m = (r >> 1) % 5 == 0 ? 1 : 1 + (r >> 4) % 37;
            size_t k = m == 1 && (r & 2) ? (size_t)(sp_spsc_try_pop(&q, &out[0]) == 0) : sp_spsc_try_pop_n(&q, out, m);
            ck_assert_uint_eq(k, queued < m ? queued : m);
            for (size_t i = 0; i < k; i++) ck_assert_ptr_eq(out[i], (void *)got++);
        }
        ck_assert_uint_eq(sp_spsc_size_approx(&q), in - got);
    }
    ck_assert_uint_gt(got, 100000);
    sp_spsc_destroy(&q);
}
END_TEST

/* ---------------------------------------------------------------- SPSC batch ring */

START_TEST(test_spsc_batch_init_rejects_bad_capacity_and_oom_frees_on_destroy) {
    sp_spsc_batch_t q;
    ck_assert_int_eq(sp_spsc_batch_init(&q, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_spsc_batch_init(&q, 1, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_spsc_batch_init(&q, 12, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_spsc_batch_init(NULL, 8, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_spsc_batch_init(&q, (size_t)1 << 62, NULL), SP_EOVERFLOW);
    FAILING_ALLOCATOR(f, failing);
    ck_assert_int_eq(sp_spsc_batch_init(&q, 16, &failing), SP_ENOMEM);
    ck_assert_int_eq(sp_test_alloc_get(&f.calls), 1);
    sp_test_alloc_t c;
    sp_test_alloc_init(&c, -1, 0);
    sp_allocator_t a = sp_test_allocator(&c);
    ck_assert_int_eq(sp_spsc_batch_init(&q, 64, &a), 0);
    ck_assert_int_ge(sp_test_alloc_get(&c.live_bytes), 64 * 8);
    ck_assert_uint_eq(sp_spsc_batch_capacity(&q), 64);
    sp_spsc_batch_destroy(&q);
    ck_assert_int_eq(sp_test_alloc_get(&c.live_bytes), 0);
    sp_spsc_batch_destroy(&q); /* second destroy is a no-op */
    ck_assert_int_eq(sp_test_alloc_get(&c.frees), 1);
}
END_TEST

/* Every slot usable, full and empty reported, NULL is an item, a batch takes
 * the prefix that fits, FIFO over laps. */
START_TEST(test_spsc_batch_full_capacity_null_item_prefix_fifo) {
    sp_spsc_batch_t q;
    ck_assert_int_eq(sp_spsc_batch_init(&q, 8, NULL), 0);
    void *items[10], *out[16];
    for (uintptr_t i = 0; i < 10; i++) items[i] = (void *)(0x100 + i);
    items[1] = NULL;
    ck_assert_uint_eq(sp_spsc_batch_try_push_n(&q, items, 5), 5);
    ck_assert_uint_eq(sp_spsc_batch_try_push_n(&q, items + 5, 5), 3); /* 8 usable: the prefix that fits */
    ck_assert_uint_eq(sp_spsc_batch_try_push_n(&q, items, 1), 0);     /* full */
    ck_assert_int_eq(sp_spsc_batch_try_push(&q, items[0]), SP_EAGAIN);
    ck_assert_uint_eq(sp_spsc_batch_size_approx(&q), 8);
    ck_assert_uint_eq(sp_spsc_batch_try_pop_n(&q, out, 3), 3);
    ck_assert_uint_eq(sp_spsc_batch_try_pop_n(&q, out + 3, 16), 5);
    for (uintptr_t i = 0; i < 8; i++) ck_assert_ptr_eq(out[i], items[i]);
    ck_assert_uint_eq(sp_spsc_batch_try_pop_n(&q, out, 16), 0); /* empty */
    void *p = &q;
    ck_assert_int_eq(sp_spsc_batch_try_pop(&q, &p), SP_EAGAIN);
    ck_assert_ptr_eq(p, &q); /* untouched */
    ck_assert_int_eq(sp_spsc_batch_try_push(&q, NULL), 0);
    ck_assert_int_eq(sp_spsc_batch_try_pop(&q, &p), 0);
    ck_assert_ptr_null(p);
    ck_assert_uint_eq(sp_spsc_batch_size_approx(&q), 0);
    sp_spsc_batch_destroy(&q);
}
END_TEST

/* One thread on both sides: a push returns exactly min(n, free slots) and a
 * pop min(max, queued), whatever the cached indices held (each side's cache
 * goes stale as the other side moves), over random mixes of single and batch
 * calls on 64 slots; FIFO throughout; size exact between calls. */
START_TEST(test_spsc_batch_ring_calls_are_exact_single_thread) {
    sp_spsc_batch_t q;
    ck_assert_int_eq(sp_spsc_batch_init(&q, 64, NULL), 0);
    uintptr_t in = 1, got = 1;
    uint32_t rng = 54321;
    void *b[80], *out[80];
    for (int it = 0; it < 200000; it++) {
        rng = rng * 1103515245u + 12345u;
        uint32_t r = rng >> 8;
        size_t queued = in - got;
        if (r & 1) {
            size_t n = (r >> 1) % 7 == 0 ? 1 : 1 + (r >> 4) % 70; /* up to more than the ring */
            for (size_t i = 0; i < n; i++) b[i] = (void *)(in + i);
            size_t k = n == 1 && (r & 2) ? (size_t)(sp_spsc_batch_try_push(&q, b[0]) == 0)
                                         : sp_spsc_batch_try_push_n(&q, b, n);
            ck_assert_uint_eq(k, 64 - queued < n ? 64 - queued : n);
            in += k;
        } else {
            size_t m = (r >> 1) % 5 == 0 ? 1 : 1 + (r >> 4) % 70;
            size_t k = m == 1 && (r & 2) ? (size_t)(sp_spsc_batch_try_pop(&q, &out[0]) == 0)
                                         : sp_spsc_batch_try_pop_n(&q, out, m);
            ck_assert_uint_eq(k, queued < m ? queued : m);
            for (size_t i = 0; i < k; i++) ck_assert_ptr_eq(out[i], (void *)got++);
        }
        ck_assert_uint_eq(sp_spsc_batch_size_approx(&q), in - got);
    }
    ck_assert_uint_gt(got, 100000);
    sp_spsc_batch_destroy(&q);
}
END_TEST

/* ---------------------------------------------------------------- burst ring */

START_TEST(test_burst_init_rejects_bad_capacity_and_oom_frees_on_destroy) {
    sp_mpmc_burst_t q;
    ck_assert_int_eq(sp_mpmc_burst_init(&q, 0, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_mpmc_burst_init(&q, 3, 1, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_mpmc_burst_init(NULL, 8, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_mpmc_burst_init(&q, (size_t)1 << 62, 0, NULL), SP_EOVERFLOW);
    FAILING_ALLOCATOR(f, failing);
    ck_assert_int_eq(sp_mpmc_burst_init(&q, 16, 0, &failing), SP_ENOMEM);
    sp_test_alloc_t c;
    sp_test_alloc_init(&c, -1, 0);
    sp_allocator_t a = sp_test_allocator(&c);
    ck_assert_int_eq(sp_mpmc_burst_init(&q, 64, 0, &a), 0);
    ck_assert_int_ge(sp_test_alloc_get(&c.live_bytes), 64 * 8);
    sp_mpmc_burst_destroy(&q);
    ck_assert_int_eq(sp_test_alloc_get(&c.live_bytes), 0);
    sp_mpmc_burst_destroy(&q); /* second destroy is a no-op */
    ck_assert_int_eq(sp_test_alloc_get(&c.frees), 1);
}
END_TEST

/* Both modes: every slot usable, a burst takes the prefix that fits, NULL is
 * an item, FIFO over many laps of mixed burst sizes (reservations wrap at
 * every offset), size exact between calls. */
static void burst_fifo(int single) {
    sp_mpmc_burst_t q;
    ck_assert_int_eq(sp_mpmc_burst_init(&q, 8, single, NULL), 0);
    void *items[10], *out[16];
    for (uintptr_t i = 0; i < 10; i++) items[i] = (void *)(0x100 + i);
    items[2] = NULL;
    ck_assert_uint_eq(sp_mpmc_burst_push(&q, items, 5), 5);
    ck_assert_uint_eq(sp_mpmc_burst_push(&q, items + 5, 5), 3); /* 8 usable: the prefix that fits */
    ck_assert_uint_eq(sp_mpmc_burst_push(&q, items, 1), 0);     /* full */
    ck_assert_uint_eq(sp_mpmc_burst_size_approx(&q), 8);
    ck_assert_uint_eq(sp_mpmc_burst_pop(&q, out, 16), 8);
    for (uintptr_t i = 0; i < 8; i++) ck_assert_ptr_eq(out[i], items[i]);
    ck_assert_uint_eq(sp_mpmc_burst_pop(&q, out, 16), 0); /* empty */
    uintptr_t in = 1, got = 1;
    for (int round = 0; round < 300; round++) {
        void *b[7];
        size_t n = 1 + round % 7;
        for (size_t i = 0; i < n; i++) b[i] = (void *)(in + i);
        in += sp_mpmc_burst_push(&q, b, n);
        size_t m = sp_mpmc_burst_pop(&q, out, 1 + (size_t)(round * 3) % 5);
        for (size_t i = 0; i < m; i++) ck_assert_ptr_eq(out[i], (void *)got++);
        ck_assert_uint_eq(sp_mpmc_burst_size_approx(&q), in - got);
    }
    ck_assert_uint_gt(in, 200);
    sp_mpmc_burst_destroy(&q);
}

START_TEST(test_burst_multi_prefix_full_empty_fifo_across_wrap) { burst_fifo(0); }
END_TEST

START_TEST(test_burst_single_prefix_full_empty_fifo_across_wrap) { burst_fifo(1); }
END_TEST

static Suite *mpmc_suite(void) {
    Suite *s = suite_create("mpmc");
    TCase *tc;
#define ADD(name, fn)                 \
    tc = tcase_create(name);          \
    tcase_add_test(tc, fn);           \
    suite_add_tcase(s, tc)
    ADD("init", test_mpmc_init_rejects_bad_capacity_and_elem_size);
    ADD("overflow", test_mpmc_init_huge_sizes_overflow);
    ADD("oom", test_mpmc_init_oom_returns_enomem);
    ADD("destroy", test_mpmc_destroy_frees_what_init_allocated);
    ADD("full_capacity", test_mpmc_full_capacity_4_usable_then_full);
    ADD("size_after_wrap", test_mpmc_size_approx_exact_across_wrap_3_5_laps);
    ADD("by_value", test_mpmc_msg128_by_value_fifo_bytes_intact);
    ADD("odd_sizes", test_mpmc_odd_elem_size_3_and_61_roundtrip);
    ADD("push_n_prefix", test_mpmc_push_n_pushes_fitting_prefix_5_plus_3_of_10);
    ADD("batches_wrap", test_mpmc_batches_across_wrap_keep_fifo);
    ADD("ptr_fast_path", test_mpmc_ptr_fast_path_fifo_with_null_value);
    ADD("no_overwrite", test_mpmc_push_never_overwrites_cell_claimed_but_not_emptied);
    ADD("no_left_behind", test_mpmc_push_after_stalled_producer_claims_next_position);
    ADD("spsc_init", test_spsc_init_rejects_bad_capacity_and_oom);
    ADD("spsc_fifo", test_spsc_full_capacity_fifo_and_null_rejected);
    ADD("spsc_batches", test_spsc_batches_prefix_and_wrap);
    ADD("spsc_probing_exact", test_spsc_probing_batches_are_exact_single_thread);
    ADD("spsc_batch_init", test_spsc_batch_init_rejects_bad_capacity_and_oom_frees_on_destroy);
    ADD("spsc_batch_fifo", test_spsc_batch_full_capacity_null_item_prefix_fifo);
    ADD("spsc_batch_exact", test_spsc_batch_ring_calls_are_exact_single_thread);
    ADD("burst_init", test_burst_init_rejects_bad_capacity_and_oom_frees_on_destroy);
    ADD("burst_multi", test_burst_multi_prefix_full_empty_fifo_across_wrap);
    ADD("burst_single", test_burst_single_prefix_full_empty_fifo_across_wrap);
#undef ADD
    return s;
}

SP_CHECK_MAIN(mpmc_suite)
