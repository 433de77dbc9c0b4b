/* check_stress_mpmc.c: many producers and consumers on the MPMC queue (single
 * ops via the pointer fast path, batch ops, 128-byte by-value messages) and
 * one producer/one consumer on the SPSC ring; the burst ring (sp_mpmc_burst_t)
 * in multi mode (2P2C, 4P4C) and single mode (1P1C), with burst sizes that
 * vary from 1 to 16 so reservations wrap the ring at every offset; the SPSC
 * batch ring (sp_spsc_batch_t) 1P1C on 64 slots with batches of 1..40 mixed
 * with single calls, its items pointing to notes written just before the
 * push (a missing release/acquire edge is a race TSan reports on the plain
 * slots or the notes, and a stale read shows in the note's check word).
 *
 * Each item is (producer id << 40 | sequence). Consumers check per-producer
 * FIFO (every consumer sees each producer's sequences strictly increasing)
 * and set the item's bit in a shared bitmap with an atomic fetch_or, failing
 * if it was already set (duplicate); at the end every bit must be set (no loss)
 * and the per-producer sums of sequences must match.
 *
 * Environment: SP_STRESS_THREADS=N runs N producers + N consumers only
 * (default: 2P2C and 4P4C); SP_STRESS_ITEMS total items per run (default 4M,
 * 1M under TSan). Spinning threads call sched_yield() when the queue is full
 * or empty (2 cores are shared by up to 8 threads): that is backoff, not a
 * timing assumption; totals are exact. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../helpers/sp_check.h"
#include "spacesim/mpmc.h"
#include "spacesim/spsc.h"

#define MAXT 64
#define SEQ_BITS 40
#define BATCH 16

typedef enum { MODE_PTR, MODE_BATCH, MODE_MSG, MODE_SPSC, MODE_BURST, MODE_SPSC_BATCH, MODE_SPSCB } mode_t_;

/* MODE_SPSC_BATCH, MODE_SPSCB: what a pushed pointer points to, written (plain stores)
 * by the producer just before the push; the consumer reads it after the pop,
 * so a missing release/acquire edge is a data race TSan reports, and a torn
 * or stale read shows as check != ~item. */
typedef struct {
    uint64_t item;
    uint64_t check;
} note_t;

typedef struct {
    uint64_t item;
    uint64_t check; /* ~item: detects torn copies */
    unsigned char fill[112];
} msg_t;

typedef struct run run_t;
typedef struct {
    run_t *r;
    int id;
    /* consumer results */
    uint64_t last[MAXT]; /* last sequence + 1 seen from each producer (0 = none) */
    uint64_t sum[MAXT];
    uint64_t count;
    uint64_t errors; /* FIFO violations, duplicates, torn messages */
    uint64_t calls;  /* pop calls, to vary the batch sizes */
} worker_t;

struct run {
    mode_t_ mode;
    int np, nc;
    uint64_t per_producer;
    sp_mpmc_t q;
    sp_spsc_t sq;
    sp_spsc_batch_t bsq;
    sp_mpmc_burst_t bq;
    note_t *notes; /* MODE_SPSC_BATCH, MODE_SPSCB: one per item */
    _Atomic uint64_t *bitmap; /* np * per_producer bits */
    _Atomic int producers_left;
    worker_t w[2 * MAXT];
};

static void consume(worker_t *w, uint64_t item) {
    run_t *r = w->r;
    uint64_t p = item >> SEQ_BITS, seq = item & (((uint64_t)1 << SEQ_BITS) - 1);
    if (p >= (uint64_t)r->np || seq >= r->per_producer) {
        w->errors++;
        return;
    }
    if (seq + 1 <= w->last[p]) w->errors++; /* per-producer FIFO broken */
    w->last[p] = seq + 1;
    w->sum[p] += seq;
    w->count++;
    uint64_t bit = p * r->per_producer + seq;
    /* Relaxed: the bitmap is only read after the threads are joined. */
    uint64_t old = atomic_fetch_or_explicit(&r->bitmap[bit / 64], (uint64_t)1 << (bit % 64), memory_order_relaxed);
    if (old & ((uint64_t)1 << (bit % 64))) w->errors++; /* duplicate */
}

static void *producer(void *arg) {
    worker_t *w = arg;
    run_t *r = w->r;
    uint64_t base = (uint64_t)w->id << SEQ_BITS;
    uint64_t n = r->per_producer;
    for (uint64_t i = 0; i < n;) {
        int ok = 0;
        switch (r->mode) {
        case MODE_PTR:
            ok = sp_mpmc_try_push_ptr(&r->q, (void *)(uintptr_t)(base | i)) == 0;
            i += ok;
            break;
        case MODE_BATCH: {
            uint64_t b[BATCH];
            size_t k = n - i < BATCH ? (size_t)(n - i) : BATCH;
            for (size_t j = 0; j < k; j++) b[j] = base | (i + j);
            size_t done = sp_mpmc_try_push_n(&r->q, b, k);
            i += done;
            ok = done > 0;
            break;
        }
        case MODE_MSG: {
            msg_t m;
            m.item = base | i;
            m.check = ~m.item;
            memset(m.fill, (int)(i & 0xff), sizeof m.fill);
            ok = sp_mpmc_try_push(&r->q, &m) == 0;
            i += ok;
            break;
        }
        case MODE_BURST: {
            uint64_t b[BATCH];
            size_t want = 1 + (size_t)(i % BATCH); /* 1..16: every wrap offset */
            size_t k = n - i < want ? (size_t)(n - i) : want;
            for (size_t j = 0; j < k; j++) b[j] = base | (i + j); /* item 0 is NULL: allowed here */
            size_t done = sp_mpmc_burst_push(&r->bq, (void *const *)(void *)b, k);
            i += done;
            ok = done > 0;
            break;
        }
        case MODE_SPSC:
            /* +1: the SPSC ring cannot carry NULL (item 0). */
            ok = sp_spsc_try_push(&r->sq, (void *)(uintptr_t)((base | i) + 1)) == 0;
            i += ok;
            break;
        case MODE_SPSC_BATCH:
        case MODE_SPSCB: {
            /* Sizes cycle through 1..40 (above the 64-slot ring's quarter, so
             * both probe paths and the slot-by-slot one run), every 7th call a
             * single push, so pos also moves past the batch limit. */
            void *b[40];
            size_t want = (i / 3) % 7 == 0 ? 1 : 1 + (size_t)(i % 40);
            size_t k = n - i < want ? (size_t)(n - i) : want;
            for (size_t j = 0; j < k; j++) {
                note_t *nt = &r->notes[i + j];
                nt->item = base | (i + j);
                nt->check = ~nt->item;
                b[j] = nt;
            }
            size_t done;
            if (r->mode == MODE_SPSCB)
                done = k == 1 ? (sp_spsc_batch_try_push(&r->bsq, b[0]) == 0) : sp_spsc_batch_try_push_n(&r->bsq, b, k);
            else
                done = k == 1 ? (sp_spsc_try_push(&r->sq, b[0]) == 0) : sp_spsc_try_push_n(&r->sq, b, k);
            i += done;
            ok = done > 0;
            break;
        }
        }
        if (!ok) sched_yield();
    }
    /* Release: our pushes happen before a consumer that acquires
     * producers_left == 0 concludes the queue is drained. */
    atomic_fetch_sub_explicit(&r->producers_left, 1, memory_order_release);
    return NULL;
}

/* One pop attempt of whatever mode; returns items consumed. */
static size_t pop_some(worker_t *w) {
    run_t *r = w->r;
    switch (r->mode) {
    case MODE_PTR: {
        void *p;
        if (sp_mpmc_try_pop_ptr(&r->q, &p) != 0) return 0;
        consume(w, (uint64_t)(uintptr_t)p);
        return 1;
    }
    case MODE_BATCH: {
        uint64_t b[BATCH];
        size_t k = sp_mpmc_try_pop_n(&r->q, b, BATCH);
        for (size_t j = 0; j < k; j++) consume(w, b[j]);
        return k;
    }
    case MODE_MSG: {
        msg_t m;
        if (sp_mpmc_try_pop(&r->q, &m) != 0) return 0;
        if (m.check != ~m.item || m.fill[0] != (unsigned char)(m.item & 0xff) ||
            m.fill[111] != (unsigned char)(m.item & 0xff))
            w->errors++;
        consume(w, m.item);
        return 1;
    }
    case MODE_BURST: {
        void *b[BATCH];
        size_t k = sp_mpmc_burst_pop(&r->bq, b, 1 + (size_t)(w->count % BATCH));
        for (size_t j = 0; j < k; j++) consume(w, (uint64_t)(uintptr_t)b[j]);
        return k;
    }
    case MODE_SPSC: {
        void *b[BATCH];
        size_t k = sp_spsc_try_pop_n(&r->sq, b, (w->count & 1) ? BATCH : 1); /* mix single and batch */
        for (size_t j = 0; j < k; j++) consume(w, (uint64_t)(uintptr_t)b[j] - 1);
        return k;
    }
    case MODE_SPSC_BATCH:
    case MODE_SPSCB: {
        /* Batch sizes 1..37 and every 5th call a single pop, as the producer. */
        void *b[40];
        size_t k, want = 1 + (size_t)(w->calls % 37);
        int single = w->calls++ % 5 == 0;
        if (r->mode == MODE_SPSCB)
            k = single ? sp_spsc_batch_try_pop(&r->bsq, &b[0]) == 0 : sp_spsc_batch_try_pop_n(&r->bsq, b, want);
        else
            k = single ? sp_spsc_try_pop(&r->sq, &b[0]) == 0 : sp_spsc_try_pop_n(&r->sq, b, want);
        for (size_t j = 0; j < k; j++) {
            const note_t *nt = b[j];
            if (nt->check != ~nt->item) w->errors++; /* torn or stale */
            consume(w, nt->item);
        }
        return k;
    }
    }
    return 0;
}

static void *consumer(void *arg) {
    worker_t *w = arg;
    for (;;) {
        if (pop_some(w) > 0) continue;
        /* Acquire: pairs with the producers' release decrement; once it reads
         * 0, every push is visible, so an empty pop below means drained. */
        if (atomic_load_explicit(&w->r->producers_left, memory_order_acquire) == 0) {
            while (pop_some(w) > 0) {
            }
            return NULL;
        }
        sched_yield();
    }
}

static void run_stress(mode_t_ mode, int np, int nc, uint64_t total) {
    int single = mode == MODE_BURST && np == 1 && nc == 1;
    run_t *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->mode = mode;
    r->np = np;
    r->nc = nc;
    r->per_producer = total / (uint64_t)np;
    if (mode == MODE_SPSC)
        ck_assert_int_eq(sp_spsc_init(&r->sq, 1024, NULL), 0);
    else if (mode == MODE_SPSC_BATCH || mode == MODE_SPSCB) {
        if (mode == MODE_SPSCB)
            ck_assert_int_eq(sp_spsc_batch_init(&r->bsq, 64, NULL), 0); /* small: full and empty often */
        else
            ck_assert_int_eq(sp_spsc_init(&r->sq, 64, NULL), 0); /* small: full and empty often, limits wrap */
        r->notes = calloc((size_t)total, sizeof *r->notes);
        ck_assert_ptr_nonnull(r->notes);
    }
    else if (mode == MODE_BURST)
        ck_assert_int_eq(sp_mpmc_burst_init(&r->bq, 256, single, NULL), 0); /* small: full and empty often */
    else
        ck_assert_int_eq(sp_mpmc_init(&r->q, mode == MODE_MSG ? 256 : 1024, mode == MODE_MSG ? sizeof(msg_t) : 8, NULL),
                         0);
    size_t words = (size_t)((r->per_producer * (uint64_t)np + 63) / 64);
    r->bitmap = calloc(words, sizeof *r->bitmap);
    ck_assert_ptr_nonnull(r->bitmap);
    atomic_init(&r->producers_left, np);

    pthread_t t[2 * MAXT];
    for (int i = 0; i < np + nc; i++) {
        r->w[i].r = r;
        r->w[i].id = i < np ? i : i - np;
        ck_assert_int_eq(pthread_create(&t[i], NULL, i < np ? producer : consumer, &r->w[i]), 0);
    }
    for (int i = 0; i < np + nc; i++) ck_assert_int_eq(pthread_join(t[i], NULL), 0);

    uint64_t count = 0, errors = 0;
    for (int c = np; c < np + nc; c++) {
        count += r->w[c].count;
        errors += r->w[c].errors;
    }
    ck_assert_uint_eq(errors, 0);
    ck_assert_uint_eq(count, r->per_producer * (uint64_t)np);
    uint64_t want = r->per_producer * (r->per_producer - 1) / 2;
    for (int p = 0; p < np; p++) {
        uint64_t s = 0;
        for (int c = np; c < np + nc; c++) s += r->w[c].sum[p];
        ck_assert_uint_eq(s, want);
    }
    uint64_t nbits = r->per_producer * (uint64_t)np;
    for (uint64_t b = 0; b < nbits; b++)
        if (!(atomic_load_explicit(&r->bitmap[b / 64], memory_order_relaxed) & ((uint64_t)1 << (b % 64))))
            ck_abort_msg("item %llu never received", (unsigned long long)b);
    if (mode == MODE_SPSCB) {
        ck_assert_uint_eq(sp_spsc_batch_size_approx(&r->bsq), 0);
        sp_spsc_batch_destroy(&r->bsq);
        free(r->notes);
    } else if (mode == MODE_SPSC || mode == MODE_SPSC_BATCH) {
        ck_assert_uint_eq(sp_spsc_size_approx(&r->sq), 0);
        sp_spsc_destroy(&r->sq);
        free(r->notes);
    } else if (mode == MODE_BURST) {
        ck_assert_uint_eq(sp_mpmc_burst_size_approx(&r->bq), 0);
        sp_mpmc_burst_destroy(&r->bq);
    } else {
        ck_assert_uint_eq(sp_mpmc_size_approx(&r->q), 0);
        sp_mpmc_destroy(&r->q);
    }
    free(r->bitmap);
    free(r);
}

static uint64_t items(void) { return (uint64_t)sp_env_long("SP_STRESS_ITEMS", SP_UNDER_TSAN ? 1000000 : 4000000); }

static void run_configs(mode_t_ mode, uint64_t total) {
    long t = sp_env_long("SP_STRESS_THREADS", 0);
    if (t > MAXT) t = MAXT;
    if (t > 0) {
        run_stress(mode, (int)t, (int)t, total);
    } else {
        run_stress(mode, 2, 2, total);
        run_stress(mode, 4, 4, total);
    }
}

START_TEST(test_stress_mpmc_ptr_ops_every_item_once_fifo_per_producer) { run_configs(MODE_PTR, items()); }
END_TEST

START_TEST(test_stress_mpmc_batch_ops_every_item_once_fifo_per_producer) { run_configs(MODE_BATCH, items()); }
END_TEST

START_TEST(test_stress_mpmc_msg128_by_value_never_torn_every_item_once) {
    /* 128-byte copies are ~10x the work per item: a quarter of the items. */
    run_configs(MODE_MSG, items() / 4);
}
END_TEST

START_TEST(test_stress_spsc_every_item_once_in_order) { run_stress(MODE_SPSC, 1, 1, items()); }
END_TEST

START_TEST(test_stress_spsc_batch_probes_every_item_once_in_order_never_torn) {
    run_stress(MODE_SPSC_BATCH, 1, 1, items() / 2); /* 16 bytes of notes per item */
}
END_TEST

START_TEST(test_stress_spsc_batch_ring_every_item_once_in_order_never_stale) {
    run_stress(MODE_SPSCB, 1, 1, items() / 2); /* 16 bytes of notes per item */
}
END_TEST

START_TEST(test_stress_burst_multi_every_item_once_fifo_per_producer) { run_configs(MODE_BURST, items()); }
END_TEST

START_TEST(test_stress_burst_single_every_item_once_in_order) { run_stress(MODE_BURST, 1, 1, items()); }
END_TEST

static Suite *stress_suite(void) {
    Suite *s = suite_create("stress_mpmc");
    TCase *tc;
#define ADD(name, fn)                       \
    tc = tcase_create(name);                \
    tcase_set_timeout(tc, sp_timeout(600)); /* a safety net for a hang, not a speed check: preempted spinning threads on a loaded 2-core machine take minutes */ \
    tcase_add_test(tc, fn);                 \
    suite_add_tcase(s, tc)
    ADD("mpmc_ptr", test_stress_mpmc_ptr_ops_every_item_once_fifo_per_producer);
    ADD("mpmc_batch", test_stress_mpmc_batch_ops_every_item_once_fifo_per_producer);
    ADD("mpmc_msg128", test_stress_mpmc_msg128_by_value_never_torn_every_item_once);
    ADD("spsc", test_stress_spsc_every_item_once_in_order);
    ADD("spsc_batch", test_stress_spsc_batch_probes_every_item_once_in_order_never_torn);
    ADD("spsc_batch_ring", test_stress_spsc_batch_ring_every_item_once_in_order_never_stale);
    ADD("burst_multi", test_stress_burst_multi_every_item_once_fifo_per_producer);
    ADD("burst_single", test_stress_burst_single_every_item_once_in_order);
#undef ADD
    return s;
}

SP_CHECK_MAIN(stress_suite)
