/* check_arena.c: tests of the chunked bump allocator (spacesim/arena.h),
 * including the seed's defects: an allocation larger than a chunk aborted, each
 * allocation scanned every chunk, current_chunk never advanced. */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers/sp_alloc.h"
#include "helpers/sp_check.h"
#include "spacesim/arena.h"

/* ------------------------------------------------------------ test allocators */

/* The shared counting/failing allocator (tests/helpers/sp_alloc.h); its free
 * also checks that the arena hands back the size each chunk was allocated with. */
static sp_test_alloc_t cnt;
static sp_allocator_t counting;

static void reset_counting(void) {
    sp_test_alloc_init(&cnt, -1, 0);
    counting = sp_test_allocator(&cnt);
}

/* mmap-backed allocator that remembers its chunks, so a test can make old
 * chunks inaccessible and prove the arena never touches them again. */
#define MAX_MAPPED 256
static struct {
    void *p[MAX_MAPPED];
    size_t len[MAX_MAPPED];
    int n;
} mapped;

static size_t page_round(size_t n) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) & ~(pg - 1);
}

static void *mmap_alloc(void *ctx, size_t size, size_t align) {
    (void)ctx;
    (void)align; /* pages are 4096-aligned, more than the 64 asked */
    if (mapped.n == MAX_MAPPED) return NULL;
    size_t len = page_round(size);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    mapped.p[mapped.n] = p;
    mapped.len[mapped.n] = len;
    mapped.n++;
    return p;
}

static void mmap_free(void *ctx, void *ptr, size_t size, size_t align) {
    (void)ctx;
    (void)align;
    munmap(ptr, page_round(size));
}

static const sp_allocator_t mmapper = {mmap_alloc, mmap_free, NULL};

/* ------------------------------------------------------------ tests */

START_TEST(test_arena_alloc_aligned_for_every_pow2_to_4096) {
    sp_arena_t a;
    ck_assert_int_eq(sp_arena_init(&a, 4096, NULL), 0);
    unsigned char *ptrs[13 * 3];
    size_t sizes[13 * 3];
    int n = 0;
    for (size_t align = 1; align <= 4096; align <<= 1) {
        for (size_t k = 0; k < 3; k++) {
            size_t size = 1 + k * 37 + align / 2;
            unsigned char *p = sp_arena_alloc(&a, size, align);
            ck_assert_ptr_nonnull(p);
            ck_assert_uint_eq((uintptr_t)p & (align - 1), 0);
            memset(p, n & 0xff, size);
            ptrs[n] = p;
            sizes[n] = size;
            n++;
        }
    }
    /* No allocation overlapped another: every byte still has its pattern. */
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < sizes[i]; j++) ck_assert_uint_eq(ptrs[i][j], (unsigned)(i & 0xff));
    sp_arena_destroy(&a);
}
END_TEST

START_TEST(test_arena_alloc_larger_than_chunk_gets_own_chunk) {
    reset_counting();
    sp_arena_t a;
    sp_arena_init(&a, 4096, &counting);
    char *small = sp_arena_alloc(&a, 104, 8);
    ck_assert_ptr_nonnull(small);
    size_t big = (size_t)1 << 20;
    char *p = sp_arena_alloc(&a, big, 64);
    ck_assert_ptr_nonnull(p);
    memset(p, 0xab, big);
    ck_assert_uint_eq(p[big - 1] & 0xff, 0xab);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.allocs), 2);
    ck_assert_uint_ge(sp_arena_capacity(&a), big + (4096 - SP_ARENA_CHUNK_HEADER));
    ck_assert_uint_eq(sp_arena_used(&a), 104 + big);
    /* Allocation continues normally after the big one. */
    char *after = sp_arena_alloc(&a, 3000, 8);
    ck_assert_ptr_nonnull(after);
    ck_assert(after >= p + big || after + 3000 <= p);
    /* A huge alignment larger than the chunk also works. */
    char *huge_align = sp_arena_alloc(&a, 10, 8192);
    ck_assert_ptr_nonnull(huge_align);
    ck_assert_uint_eq((uintptr_t)huge_align & 8191, 0);
    sp_arena_destroy(&a);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.frees), sp_test_alloc_get(&cnt.allocs));
    ck_assert_int_eq(sp_test_alloc_get(&cnt.live_bytes), 0);
}
END_TEST

/* One "tick" of a scratch workload: mixed sizes, one big buffer. */
static void tick(sp_arena_t *a, void **out, int n) {
    for (int i = 0; i < n; i++) {
        size_t size = (i % 10 == 9) ? 20000 : 16 + (size_t)(i * 7) % 200;
        out[i] = sp_arena_alloc(a, size, (size_t)1 << (i % 7));
        ck_assert_ptr_nonnull(out[i]);
        memset(out[i], i, size);
    }
}

START_TEST(test_arena_reset_keeps_capacity_and_reuses_chunks) {
    reset_counting();
    sp_arena_t a;
    sp_arena_init(&a, 4096, &counting);
    void *first[300], *second[300];
    tick(&a, first, 300);
    long allocs = sp_test_alloc_get(&cnt.allocs);
    size_t cap = sp_arena_capacity(&a), used = sp_arena_used(&a), chunks = sp_arena_chunks(&a);
    ck_assert_int_gt(allocs, 10);
    ck_assert_uint_eq((size_t)allocs, chunks);
    sp_arena_reset(&a);
    ck_assert_uint_eq(sp_arena_used(&a), 0);
    ck_assert_uint_eq(sp_arena_capacity(&a), cap);
    tick(&a, second, 300);
    /* No new system allocation, same addresses, same usage. */
    ck_assert_int_eq(sp_test_alloc_get(&cnt.allocs), allocs);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.frees), 0);
    ck_assert_uint_eq(sp_arena_capacity(&a), cap);
    ck_assert_uint_eq(sp_arena_used(&a), used);
    for (int i = 0; i < 300; i++) ck_assert_ptr_eq(first[i], second[i]);
    sp_arena_destroy(&a);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.live_bytes), 0);
}
END_TEST

START_TEST(test_arena_rewind_restores_used_and_reuses_addresses) {
    reset_counting();
    sp_arena_t a;
    sp_arena_init(&a, 1024, &counting);
    void *keep = sp_arena_alloc(&a, 40, 8);
    ck_assert_ptr_nonnull(keep);
    memset(keep, 0x5a, 40);
    sp_arena_mark_t m = sp_arena_mark(&a);
    size_t used0 = sp_arena_used(&a);
    void *a1[200], *a2[200];
    for (int i = 0; i < 200; i++) a1[i] = sp_arena_alloc(&a, 48, 16); /* spans chunks */
    ck_assert_uint_gt(sp_arena_chunks(&a), 5);
    /* Nested scope inside. */
    sp_arena_mark_t inner = sp_arena_mark(&a);
    size_t used1 = sp_arena_used(&a);
    void *x = sp_arena_alloc(&a, 900, 8);
    sp_arena_rewind(&a, inner);
    ck_assert_uint_eq(sp_arena_used(&a), used1);
    ck_assert_ptr_eq(sp_arena_alloc(&a, 900, 8), x);
    long allocs = sp_test_alloc_get(&cnt.allocs);

    sp_arena_rewind(&a, m);
    ck_assert_uint_eq(sp_arena_used(&a), used0);
    for (int i = 0; i < 200; i++) a2[i] = sp_arena_alloc(&a, 48, 16);
    for (int i = 0; i < 200; i++) ck_assert_ptr_eq(a1[i], a2[i]);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.allocs), allocs); /* the chunks are reused */
    /* What was allocated before the mark is untouched. */
    for (int i = 0; i < 40; i++) ck_assert_uint_eq(((unsigned char *)keep)[i], 0x5a);
    sp_arena_destroy(&a);
}
END_TEST

START_TEST(test_arena_rewind_to_mark_before_first_chunk) {
    sp_arena_t a;
    sp_arena_init(&a, 1024, NULL);
    sp_arena_mark_t m = sp_arena_mark(&a);
    void *p = sp_arena_alloc(&a, 10, 8);
    sp_arena_alloc(&a, 5000, 8);
    sp_arena_rewind(&a, m);
    ck_assert_uint_eq(sp_arena_used(&a), 0);
    ck_assert_ptr_eq(sp_arena_alloc(&a, 10, 8), p);
    sp_arena_destroy(&a);
}
END_TEST

START_TEST(test_arena_allocator_consulted_once_per_new_chunk) {
    reset_counting();
    sp_arena_t a;
    sp_arena_init(&a, 4096, &counting);
    size_t per_chunk = (4096 - SP_ARENA_CHUNK_HEADER) / 64;
    size_t n = per_chunk * 100;
    for (size_t i = 0; i < n; i++) ck_assert_ptr_nonnull(sp_arena_alloc(&a, 64, 64));
    ck_assert_int_eq(sp_test_alloc_get(&cnt.allocs), 100);
    ck_assert_uint_eq(sp_arena_chunks(&a), 100);
    ck_assert_uint_eq(sp_arena_used(&a), n * 64);
    ck_assert_uint_eq(sp_arena_capacity(&a), 100 * (4096 - SP_ARENA_CHUNK_HEADER));
    ck_assert_ptr_nonnull(sp_arena_alloc(&a, 64, 64));
    ck_assert_int_eq(sp_test_alloc_get(&cnt.allocs), 101);
    sp_arena_destroy(&a);
}
END_TEST

START_TEST(test_arena_alloc_never_touches_old_chunks) {
    /* The seed scanned every chunk on each allocation. Here all chunks but
     * the current one are made inaccessible; any read or write of them would
     * crash this (forked) test. */
    memset(&mapped, 0, sizeof mapped);
    sp_arena_t a;
    sp_arena_init(&a, 8192, &mmapper);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 300; i++) ck_assert_ptr_nonnull(sp_arena_alloc(&a, 40 + (size_t)i % 24, 8));
        for (int k = 0; k < mapped.n - 1; k++)
            ck_assert_int_eq(mprotect(mapped.p[k], mapped.len[k], PROT_NONE), 0);
    }
    ck_assert_int_gt(mapped.n, 20);
    ck_assert_uint_eq((size_t)mapped.n, sp_arena_chunks(&a));
    /* Big allocations link a new chunk after the current one: still O(1). */
    ck_assert_ptr_nonnull(sp_arena_alloc(&a, 100000, 64));
    for (int k = 0; k < mapped.n; k++) mprotect(mapped.p[k], mapped.len[k], PROT_READ | PROT_WRITE);
    sp_arena_destroy(&a);
}
END_TEST

START_TEST(test_arena_count_size_overflow_returns_null) {
    reset_counting();
    sp_arena_t a;
    sp_arena_init(&a, 4096, &counting);
    sp_arena_alloc(&a, 104, 8);
    size_t used = sp_arena_used(&a);
    ck_assert_uint_eq(used, 104);
    ck_assert_ptr_null(sp_arena_alloc_array(&a, SIZE_MAX / 2 + 1, 2, 8));
    ck_assert_ptr_null(sp_arena_alloc_array(&a, SIZE_MAX / 8, 16, 8));
    ck_assert_ptr_null(sp_arena_calloc(&a, (size_t)1 << 33, (size_t)1 << 33, 8));
    ck_assert_ptr_null(sp_arena_alloc(&a, SIZE_MAX, 1));
    ck_assert_ptr_null(sp_arena_alloc(&a, SIZE_MAX - 100, 4096)); /* size + padding overflows */
    ck_assert_int_eq(sp_test_alloc_get(&cnt.allocs), 1);
    ck_assert_uint_eq(sp_arena_used(&a), used);
    ck_assert_ptr_nonnull(sp_arena_alloc_array(&a, 10, 8, 8));
    ck_assert_uint_eq(sp_arena_used(&a), used + 80);
    sp_arena_destroy(&a);
}
END_TEST

/* Misuse: SP_ASSERT aborts in --enable-debug builds (the TCase expects
 * SIGABRT there); release builds return NULL and change nothing. */
START_TEST(test_arena_align_not_pow2_is_rejected) {
    sp_arena_t a;
    sp_arena_init(&a, 1024, NULL);
    sp_arena_alloc(&a, 8, 8);
    size_t used = sp_arena_used(&a);
    ck_assert_ptr_null(sp_arena_alloc(&a, 16, 3));
    ck_assert_ptr_null(sp_arena_alloc(&a, 16, 0));
    ck_assert_ptr_null(sp_arena_alloc(&a, 5000, 24)); /* slow-path size */
    ck_assert_uint_eq(sp_arena_used(&a), used);
    sp_arena_destroy(&a);
}
END_TEST

START_TEST(test_arena_oom_returns_null_and_leaves_arena_unchanged) {
    reset_counting();
    sp_test_alloc_set(&cnt.fail_after, 1);
    sp_arena_t a;
    sp_arena_init(&a, 1024, &counting);
    void *p = sp_arena_alloc(&a, 900, 8);
    ck_assert_ptr_nonnull(p);
    size_t used = sp_arena_used(&a), cap = sp_arena_capacity(&a);
    ck_assert_ptr_null(sp_arena_alloc(&a, 900, 8));
    ck_assert_ptr_null(sp_arena_alloc(&a, 100000, 8));
    ck_assert_uint_eq(sp_arena_used(&a), used);
    ck_assert_uint_eq(sp_arena_capacity(&a), cap);
    ck_assert_uint_eq(sp_arena_chunks(&a), 1);
    /* What still fits in the current chunk is still served. */
    ck_assert_ptr_nonnull(sp_arena_alloc(&a, 16, 8));
    sp_test_alloc_set(&cnt.fail_after, -1);
    ck_assert_ptr_nonnull(sp_arena_alloc(&a, 900, 8));
    sp_arena_destroy(&a);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.live_bytes), 0);
}
END_TEST

/* The cursor (issue 13) is the same allocator with the bump pointer in a
 * local: the same request sequence, including chunk changes and a request
 * larger than a chunk, gives the same addresses and the same used() as
 * sp_arena_alloc on the same chunks. */
START_TEST(test_arena_cursor_gives_the_addresses_alloc_gives) {
    enum { N = 3000 };
    static void *via_cursor[N], *via_alloc[N];
    reset_counting();
    sp_arena_t a;
    sp_arena_init(&a, 1024, &counting);
    sp_arena_cursor_t c = sp_arena_cursor(&a);
    for (size_t i = 0; i < N; i++) {
        size_t size = i == 1000 ? 5000 : 1 + (i * 37) % 97, align = (size_t)1 << (i % 7);
        via_cursor[i] = sp_arena_cursor_alloc(&a, &c, size, align);
        ck_assert_ptr_nonnull(via_cursor[i]);
        ck_assert_uint_eq((uintptr_t)via_cursor[i] % align, 0);
        memset(via_cursor[i], (int)(i & 0xFF), size); /* ASan: the bytes are unpoisoned */
    }
    sp_arena_cursor_end(&a, &c);
    size_t used = sp_arena_used(&a), chunks = sp_arena_chunks(&a);
    ck_assert_uint_gt(chunks, 100);
    sp_arena_reset(&a);
    for (size_t i = 0; i < N; i++) {
        size_t size = i == 1000 ? 5000 : 1 + (i * 37) % 97, align = (size_t)1 << (i % 7);
        via_alloc[i] = sp_arena_alloc(&a, size, align);
    }
    ck_assert_uint_eq(sp_arena_used(&a), used);
    ck_assert_uint_eq(sp_arena_chunks(&a), chunks);
    for (size_t i = 0; i < N; i++) ck_assert_ptr_eq(via_cursor[i], via_alloc[i]);
    /* And a cursor started mid-chunk continues where alloc stopped. */
    char *x = sp_arena_alloc(&a, 24, 8);
    sp_arena_cursor_t c2 = sp_arena_cursor(&a);
    char *y = sp_arena_cursor_alloc(&a, &c2, 8, 8);
    ck_assert_ptr_eq(y + 8, x);
    sp_arena_cursor_end(&a, &c2);
    ck_assert_uint_eq(sp_arena_used(&a), used + 24 + 8);
    sp_arena_destroy(&a);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.live_bytes), 0);
}
END_TEST

START_TEST(test_arena_cursor_oom_returns_null_and_cursor_stays_usable) {
    reset_counting();
    sp_test_alloc_set(&cnt.fail_after, 1);
    sp_arena_t a;
    sp_arena_init(&a, 1024, &counting);
    sp_arena_cursor_t c = sp_arena_cursor(&a);
    ck_assert_ptr_nonnull(sp_arena_cursor_alloc(&a, &c, 900, 8));
    ck_assert_ptr_null(sp_arena_cursor_alloc(&a, &c, 900, 8)); /* needs a second chunk: fails */
    ck_assert_uint_eq(sp_arena_chunks(&a), 1);
    void *small = sp_arena_cursor_alloc(&a, &c, 16, 8); /* still fits the first chunk */
    ck_assert_ptr_nonnull(small);
    sp_test_alloc_set(&cnt.fail_after, -1);
    void *big = sp_arena_cursor_alloc(&a, &c, 900, 8);
    ck_assert_ptr_nonnull(big);
    sp_arena_cursor_end(&a, &c);
    ck_assert_uint_eq(sp_arena_chunks(&a), 2);
    ck_assert_uint_ge(sp_arena_used(&a), 900 + 16 + 900);
    /* The arena is usable directly again, after the cursor's allocations. */
    char *after = sp_arena_alloc(&a, 8, 8);
    ck_assert_ptr_eq(after + 8, big); /* downward bump: right below the cursor's last object */
    sp_arena_destroy(&a);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.live_bytes), 0);
}
END_TEST

START_TEST(test_arena_big_request_replaces_too_small_free_chunk) {
    reset_counting();
    sp_arena_t a;
    sp_arena_init(&a, 1024, &counting);
    sp_arena_alloc(&a, 504, 8);
    sp_arena_alloc(&a, 504, 8); /* second chunk */
    ck_assert_uint_eq(sp_arena_chunks(&a), 2);
    sp_arena_reset(&a);
    sp_arena_alloc(&a, 504, 8);
    ck_assert_ptr_nonnull(sp_arena_alloc(&a, 50000, 8)); /* free chunk 2 is too small */
    ck_assert_uint_eq(sp_arena_chunks(&a), 2);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.frees), 1);
    ck_assert_uint_eq(sp_arena_capacity(&a), (1024 - SP_ARENA_CHUNK_HEADER) + 50048);
    ck_assert_uint_eq(sp_arena_used(&a), 50504);
    sp_arena_destroy(&a);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.live_bytes), 0);
}
END_TEST

START_TEST(test_arena_destroy_frees_everything_and_allows_reuse) {
    reset_counting();
    sp_arena_t a;
    sp_arena_init(&a, 0, &counting);
    for (int i = 0; i < 10000; i++) sp_arena_alloc(&a, 33, 8);
    sp_arena_alloc(&a, 1 << 20, 8);
    ck_assert_int_gt(sp_test_alloc_get(&cnt.live_bytes), 0);
    sp_arena_destroy(&a);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.frees), sp_test_alloc_get(&cnt.allocs));
    ck_assert_int_eq(sp_test_alloc_get(&cnt.live_bytes), 0);
    ck_assert_uint_eq(sp_arena_capacity(&a), 0);
    ck_assert_uint_eq(sp_arena_used(&a), 0);
    ck_assert_ptr_nonnull(sp_arena_alloc(&a, 8, 8));
    sp_arena_destroy(&a);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.live_bytes), 0);
}
END_TEST

START_TEST(test_arena_calloc_zeroes_reused_memory) {
    sp_arena_t a;
    sp_arena_init(&a, 1024, NULL);
    unsigned char *p = sp_arena_alloc(&a, 300, 8);
    memset(p, 0xff, 300);
    sp_arena_reset(&a);
    unsigned char *q = sp_arena_calloc(&a, 75, 4, 8);
    ck_assert_ptr_eq(p, q);
    for (int i = 0; i < 300; i++) ck_assert_uint_eq(q[i], 0);
    sp_arena_destroy(&a);
}
END_TEST

START_TEST(test_arena_size_zero_gives_distinct_pointers) {
    sp_arena_t a;
    sp_arena_init(&a, 1024, NULL);
    void *p = sp_arena_alloc(&a, 0, 1);
    void *q = sp_arena_alloc(&a, 0, 1);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(q);
    ck_assert_ptr_ne(p, q);
    sp_arena_destroy(&a);
}
END_TEST

#if defined(SP_ASAN) && SP_ASAN
START_TEST(test_arena_rewound_and_reset_memory_is_poisoned) {
    sp_arena_t a;
    sp_arena_init(&a, 1024, NULL);
    char *keep = sp_arena_alloc(&a, 16, 8);
    sp_arena_mark_t m = sp_arena_mark(&a);
    char *p = sp_arena_alloc(&a, 64, 8);
    char *q = sp_arena_alloc(&a, 2000, 8); /* own chunk */
    ck_assert_int_eq(__asan_address_is_poisoned(p), 0);
    ck_assert_int_eq(__asan_address_is_poisoned(p - 1), 1); /* free space (bumping goes down) */
    sp_arena_rewind(&a, m);
    ck_assert_int_eq(__asan_address_is_poisoned(keep), 0);
    ck_assert_int_eq(__asan_address_is_poisoned(p), 1);
    ck_assert_int_eq(__asan_address_is_poisoned(q + 1000), 1);
    sp_arena_reset(&a);
    ck_assert_int_eq(__asan_address_is_poisoned(keep), 1);
    sp_arena_destroy(&a);
}
END_TEST
#endif

static Suite *arena_suite(void) {
    Suite *s = suite_create("arena");
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"alignment", test_arena_alloc_aligned_for_every_pow2_to_4096},
        {"large", test_arena_alloc_larger_than_chunk_gets_own_chunk},
        {"reset", test_arena_reset_keeps_capacity_and_reuses_chunks},
        {"rewind", test_arena_rewind_restores_used_and_reuses_addresses},
        {"rewind_empty", test_arena_rewind_to_mark_before_first_chunk},
        {"o1_alloc_count", test_arena_allocator_consulted_once_per_new_chunk},
        {"o1_old_chunks", test_arena_alloc_never_touches_old_chunks},
        {"overflow", test_arena_count_size_overflow_returns_null},
        {"oom", test_arena_oom_returns_null_and_leaves_arena_unchanged},
        {"replace", test_arena_big_request_replaces_too_small_free_chunk},
        {"cursor_same", test_arena_cursor_gives_the_addresses_alloc_gives},
        {"cursor_oom", test_arena_cursor_oom_returns_null_and_cursor_stays_usable},
        {"destroy", test_arena_destroy_frees_everything_and_allows_reuse},
        {"calloc", test_arena_calloc_zeroes_reused_memory},
        {"size_zero", test_arena_size_zero_gives_distinct_pointers},
#if defined(SP_ASAN) && SP_ASAN
        {"asan_poison", test_arena_rewound_and_reset_memory_is_poisoned},
#endif
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(20));
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    TCase *tc = tcase_create("align_misuse");
#ifdef SP_DEBUG
    tcase_add_test_raise_signal(tc, test_arena_align_not_pow2_is_rejected, SIGABRT);
#else
    tcase_add_test(tc, test_arena_align_not_pow2_is_rejected);
#endif
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(arena_suite)
