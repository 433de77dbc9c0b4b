/* bench_arena.c: sp_arena against glibc malloc+free and glibc obstack.
 *
 * Workload (identical for every row): N small objects (10M; 2M with --quick)
 * of 16..64 bytes, sizes from a fixed xorshift sequence, in batches of
 * BATCH objects, a per-tick scratch pattern. Each object is written to (its
 * index and size in the first 16 bytes, a tag in its last byte) so the
 * memory is real; after each batch every object is checked (untimed: a
 * wrong, overlapping or misaligned allocation fails the run) and then the
 * batch is released: free() of each object, obstack_free() to the batch
 * base, sp_arena_reset(). The figure is timed ns per object of allocation
 * plus release.
 *
 * Targets (issue): sp_arena >= 10x malloc+free and >= 2x obstack. obstack
 * is measured twice: as glibc configures it (4064-byte chunks) and with the
 * arena's 64 KiB chunks, its best case here.
 *
 * Layout note: the arena bumps downwards (arena.h); its inline fast path is
 * a subtract, a mask, two compares and a store of the bump pointer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "spacesim/arena.h"

#ifdef HAVE_OBSTACK_H
#include <obstack.h>
#define obstack_chunk_alloc malloc
#define obstack_chunk_free free
#endif

#define BATCH 4096
#define NSIZES 4096 /* table of sizes, L1 resident, cycled */
#define ALIGN 16    /* what malloc and obstack give on x86-64 */

static uint8_t g_sizes[NSIZES];
static void *g_ptrs[BATCH];
static size_t g_n;

static void make_sizes(void) {
    uint32_t x = 0x9e3779b9u;
    for (int i = 0; i < NSIZES; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        g_sizes[i] = (uint8_t)(16 + x % 49); /* 16..64 */
    }
}

/* The timed write every row does to a fresh object: its index and size in
 * the first 16 bytes (every object has at least 16). Two 8-byte stores, no
 * byte store: a char store may alias anything, which would force every row
 * to reload its allocator state from memory after each write. */
static inline void touch(void *p, size_t idx, size_t size) {
    uint64_t *q = p;
    q[0] = idx;
    q[1] = size;
}

static unsigned char pattern(size_t idx) { return (unsigned char)(idx * 31u + 7u); }

/* Untimed check of one batch; returns 0 if every object is intact. Fills
 * each object completely with its own byte pattern, then checks them all,
 * so any two objects that overlap, however slightly, fail the run. */
static int verify(size_t base, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint64_t *q = g_ptrs[i];
        size_t idx = base + i, size = g_sizes[idx % NSIZES];
        if (q == NULL || ((uintptr_t)q & (ALIGN - 1)) != 0) return -1;
        if (q[0] != idx || q[1] != size) return -1;
    }
    for (size_t i = 0; i < n; i++) memset(g_ptrs[i], pattern(base + i), g_sizes[(base + i) % NSIZES]);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *c = g_ptrs[i];
        size_t size = g_sizes[(base + i) % NSIZES];
        for (size_t j = 0; j < size; j++)
            if (c[j] != pattern(base + i)) return -1;
    }
    return 0;
}

static double run_arena(void *arg) {
    (void)arg;
    sp_arena_t a;
    sp_arena_init(&a, 0, NULL);
    uint64_t timed = 0;
    for (size_t base = 0; base < g_n; base += BATCH) {
        size_t n = g_n - base < BATCH ? g_n - base : BATCH;
        uint64_t t0 = sp_bench_now_ns();
        for (size_t i = 0; i < n; i++) {
            size_t idx = base + i, size = g_sizes[idx % NSIZES];
            void *p = sp_arena_alloc(&a, size, ALIGN);
            touch(p, idx, size);
            g_ptrs[i] = p;
        }
        uint64_t t1 = sp_bench_now_ns();
        if (verify(base, n) != 0) return -1;
        uint64_t t2 = sp_bench_now_ns();
        sp_arena_reset(&a);
        timed += (t1 - t0) + (sp_bench_now_ns() - t2);
    }
    sp_arena_destroy(&a);
    return (double)timed / (double)g_n;
}

static double run_malloc(void *arg) {
    (void)arg;
    uint64_t timed = 0;
    for (size_t base = 0; base < g_n; base += BATCH) {
        size_t n = g_n - base < BATCH ? g_n - base : BATCH;
        uint64_t t0 = sp_bench_now_ns();
        for (size_t i = 0; i < n; i++) {
            size_t idx = base + i, size = g_sizes[idx % NSIZES];
            void *p = malloc(size);
            if (p == NULL) return -1;
            touch(p, idx, size);
            g_ptrs[i] = p;
        }
        uint64_t t1 = sp_bench_now_ns();
        if (verify(base, n) != 0) return -1;
        uint64_t t2 = sp_bench_now_ns();
        for (size_t i = 0; i < n; i++) free(g_ptrs[i]);
        timed += (t1 - t0) + (sp_bench_now_ns() - t2);
    }
    return (double)timed / (double)g_n;
}

#ifdef HAVE_OBSTACK_H
/* arg: chunk size in bytes, or 0 for obstack's default (4064 bytes). */
static double run_obstack(void *arg) {
    size_t chunk = *(const size_t *)arg;
    struct obstack ob;
    if (!obstack_specify_allocation(&ob, chunk, ALIGN, malloc, free)) return -1;
    void *first = obstack_alloc(&ob, 1); /* base to free back to */
    uint64_t timed = 0;
    for (size_t base = 0; base < g_n; base += BATCH) {
        size_t n = g_n - base < BATCH ? g_n - base : BATCH;
        uint64_t t0 = sp_bench_now_ns();
        void *batch_base = NULL;
        for (size_t i = 0; i < n; i++) {
            size_t idx = base + i, size = g_sizes[idx % NSIZES];
            void *p = obstack_alloc(&ob, size);
            if (i == 0) batch_base = p;
            touch(p, idx, size);
            g_ptrs[i] = p;
        }
        uint64_t t1 = sp_bench_now_ns();
        if (verify(base, n) != 0) return -1;
        uint64_t t2 = sp_bench_now_ns();
        obstack_free(&ob, batch_base);
        timed += (t1 - t0) + (sp_bench_now_ns() - t2);
    }
    obstack_free(&ob, first);
    obstack_free(&ob, NULL);
    return (double)timed / (double)g_n;
}
#endif

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "arena");
    g_n = sp_bench_quick() ? 2000000 : 10000000;
    make_sizes();
#ifdef HAVE_OBSTACK_H
    static size_t ob_default = 0, ob_64k = 64 * 1024;
#endif
    printf("# %zu objects of 16..64 B, batches of %d, align %d; ns per object (alloc + write + release)\n",
           g_n, BATCH, ALIGN);
    sp_bench_row_t rows[] = {
        {.name = "sp_arena", .unit = "ns/object", .fn = run_arena},
        {.name = "glibc malloc+free", .unit = "ns/object", .fn = run_malloc},
#ifdef HAVE_OBSTACK_H
        {.name = "glibc obstack (default chunks)", .unit = "ns/object", .fn = run_obstack, .arg = &ob_default},
        /* Same 64 KiB chunks as the arena: the strongest obstack baseline. */
        {.name = "glibc obstack (64 KiB chunks)", .unit = "ns/object", .fn = run_obstack, .arg = &ob_64k},
#endif
    };
    int nrows = (int)(sizeof rows / sizeof rows[0]);
    sp_bench_run(rows, nrows);
    sp_bench_report(&rows[0], &rows[1]);
#ifdef HAVE_OBSTACK_H
    sp_bench_report(&rows[0], &rows[2]);
    sp_bench_report(&rows[0], &rows[3]);
#else
    printf("sp_arena vs glibc obstack: skipped (no <obstack.h>)\n");
#endif
    return sp_bench_finish();
}
