/* sp_alloc.h: the one failing, counting allocator of the OOM tests.
 *
 * sp_test_alloc_t counts calls, frees and live bytes, checks that free
 * receives the size alloc was given (a size tag in front of each block), and
 * fails on demand:
 *   fail_after >= 0  every call fails once fail_after calls have succeeded
 *                    (0: every call fails; -1: never)
 *   fail_at > 0      only the fail_at-th call fails (1-based; 0: never)
 * Counters are atomic (relaxed: plain counters read after the code under
 * test returned, which joins or waits for any threads that allocated), so
 * code that allocates from several threads (the grid's pool) may use it.
 * Usage: sp_test_alloc_t a; sp_test_alloc_init(&a, -1, 0);
 *        sp_allocator_t al = sp_test_allocator(&a); ... &al ... */
#ifndef SP_TEST_ALLOC_H
#define SP_TEST_ALLOC_H

#include <check.h>
#include <stdatomic.h>
#include <string.h>

#include "spacesim/common.h"

typedef struct sp_test_alloc {
    atomic_long fail_after;  /* see above */
    atomic_long fail_at;
    atomic_long calls;       /* every alloc call, failed or not */
    atomic_long allocs;      /* successful ones */
    atomic_long frees;
    atomic_long live_bytes;
    atomic_long last_size;   /* size of the last successful alloc */
} sp_test_alloc_t;

static inline void sp_test_alloc_init(sp_test_alloc_t *a, long fail_after, long fail_at) {
    memset(a, 0, sizeof *a);
    atomic_store_explicit(&a->fail_after, fail_after, memory_order_relaxed); /* not shared yet */
    atomic_store_explicit(&a->fail_at, fail_at, memory_order_relaxed);
}

/* Counter reads and writes below are relaxed: see the top of this file. */
static inline void *sp_test_alloc_alloc(void *ctx, size_t size, size_t align) {
    sp_test_alloc_t *a = ctx;
    long call = atomic_fetch_add_explicit(&a->calls, 1, memory_order_relaxed) + 1;
    long fa = atomic_load_explicit(&a->fail_after, memory_order_relaxed);
    long at = atomic_load_explicit(&a->fail_at, memory_order_relaxed);
    if (at > 0 && call == at) return NULL;
    if (fa >= 0 && atomic_load_explicit(&a->allocs, memory_order_relaxed) >= fa) return NULL;
    if (align < sizeof(size_t)) align = sizeof(size_t);
    /* Room for a size tag in front, so free can verify its size argument. */
    unsigned char *p = sp_allocator_default()->alloc(NULL, size + align, align);
    if (p == NULL) return NULL;
    memcpy(p, &size, sizeof size);
    atomic_fetch_add_explicit(&a->allocs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&a->live_bytes, (long)size, memory_order_relaxed);
    atomic_store_explicit(&a->last_size, (long)size, memory_order_relaxed);
    return p + align;
}

static inline void sp_test_alloc_free(void *ctx, void *ptr, size_t size, size_t align) {
    sp_test_alloc_t *a = ctx;
    if (ptr == NULL) return;
    if (align < sizeof(size_t)) align = sizeof(size_t);
    unsigned char *p = (unsigned char *)ptr - align;
    size_t tagged;
    memcpy(&tagged, p, sizeof tagged);
    ck_assert_uint_eq(tagged, size); /* free must get the size alloc got */
    atomic_fetch_add_explicit(&a->frees, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&a->live_bytes, (long)size, memory_order_relaxed);
    sp_allocator_default()->free(NULL, p, size + align, align);
}

static inline sp_allocator_t sp_test_allocator(sp_test_alloc_t *a) {
    sp_allocator_t al = {sp_test_alloc_alloc, sp_test_alloc_free, a};
    return al;
}

/* Relaxed reads of the counters (see the top of this file). */
static inline long sp_test_alloc_get(atomic_long *counter) {
    return atomic_load_explicit(counter, memory_order_relaxed);
}
static inline void sp_test_alloc_set(atomic_long *field, long v) {
    atomic_store_explicit(field, v, memory_order_relaxed);
}

#endif /* SP_TEST_ALLOC_H */
