/* bench_arena.c: sp_arena against the real peers, in one process: glibc
 * malloc+free, glibc obstack, mimalloc and jemalloc (both loaded with
 * dlopen(RTLD_LOCAL), so they never replace malloc for the rest of the
 * process; a missing one is skipped with a line that says so).
 *
 * Two workloads, identical for every row: N small objects (10M; 2M with
 * --quick) of 16..64 bytes, sizes from a fixed xorshift sequence; each object
 * is written to (its index and size in its first 16 bytes) so the memory is
 * real, and checked afterwards (untimed: a wrong, overlapping or misaligned
 * allocation fails the run).
 *  - batches: BATCH objects at a time, then the batch is released (free()
 *    of each object, obstack_free() to the batch base, sp_arena_reset()): a
 *    per-tick scratch pattern.
 *  - all live: all N objects allocated, then released at once (free() of
 *    each, obstack_free() of everything, sp_arena_destroy()); the memory is
 *    new to the process, so page faults are part of the cost. Its figure is
 *    also printed as bandwidth (bytes handed out per second) next to a
 *    STREAM-like write of the same number of bytes, measured in the same run
 *    into fresh memory (what any allocator of new memory pays) and into
 *    memory already faulted in (the DRAM write limit).
 * "sp_arena cursor" is the same arena through sp_arena_cursor_alloc (the
 * bump pointer in a local, so in registers: arena.h).
 * The "sp_arena" rows keep one arena per row across runs and release with
 * sp_arena_reset (its chunks stay, as mimalloc, jemalloc and glibc keep freed
 * memory in the process); "sp_arena destroyed per run" gives every chunk
 * back with sp_arena_destroy after each run, so each run faults its memory
 * in anew.
 * Figures: timed ns per object of allocation + write + release.
 *
 * Targets (issue 13): sp_arena >= 2x obstack and >= 4x mimalloc in both.
 * obstack is measured twice: as glibc configures it (4064-byte chunks) and
 * with the arena's 64 KiB chunks, its best case here.
 *
 * Layout note: the arena bumps downwards (arena.h); its inline fast path is
 * a subtract, a mask, two compares and a store of the bump pointer. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
static void **g_ptrs; /* the objects of the current batch (all N when all live) */
static size_t g_n;
static size_t g_bytes; /* sum of the N object sizes */

/* A malloc/free pair loaded with dlopen(RTLD_LOCAL): its symbols are not
 * added to the global scope, so glibc stays this process's malloc. */
typedef struct {
    const char *name;    /* row name */
    const char *lib;     /* soname */
    const char *package; /* Debian package, for the "skipped" line */
    const char *msym, *fsym;
    void *(*malloc_fn)(size_t);
    void (*free_fn)(void *);
} dlalloc_t;

static dlalloc_t g_mimalloc = {"mimalloc", "libmimalloc.so.2", "libmimalloc-dev", "mi_malloc", "mi_free", NULL, NULL};
/* Debian's jemalloc has no prefix: dlsym on its handle finds its own malloc. */
static dlalloc_t g_jemalloc = {"jemalloc", "libjemalloc.so.2", "libjemalloc-dev", "malloc", "free", NULL, NULL};

/* jemalloc uses initial-exec TLS, which dlopen can place only in the static
 * TLS surplus glibc reserves at start-up ("cannot allocate memory in static
 * TLS block" otherwise). main() re-executes the program once with a larger
 * surplus (glibc.rtld.optional_static_tls) unless the caller set
 * GLIBC_TUNABLES already. */
static void reexec_with_static_tls(char **argv) {
    if (getenv("GLIBC_TUNABLES") != NULL) return;
    setenv("GLIBC_TUNABLES", "glibc.rtld.optional_static_tls=65536", 1);
    fflush(stdout);
    execv("/proc/self/exe", argv);
    unsetenv("GLIBC_TUNABLES"); /* exec failed: go on without, jemalloc is then skipped */
}

static int dlalloc_load(dlalloc_t *d) {
    void *h = dlopen(d->lib, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) return -1;
    d->malloc_fn = (void *(*)(size_t))dlsym(h, d->msym);
    d->free_fn = (void (*)(void *))dlsym(h, d->fsym);
    return d->malloc_fn != NULL && d->free_fn != NULL ? 0 : -1;
}

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

/* Every row runs one of the two workloads: arg points to a row_t. */
typedef enum { A_ARENA, A_CURSOR, A_MALLOC, A_OBSTACK, A_DL } akind_t;
typedef struct {
    akind_t kind;
    int all_live;     /* 1: all N live, then released at once; 0: batches */
    int keep;         /* A_ARENA: one arena for every run of the row, released
                       * with sp_arena_reset (chunks kept, as mimalloc and
                       * jemalloc keep freed memory in the process); 0: a new
                       * arena per run, released with sp_arena_destroy */
    sp_arena_t *kept; /* keep: the row's arena */
    size_t chunk;     /* A_OBSTACK: chunk size, 0 = glibc's default (4064) */
    dlalloc_t *dl;    /* A_DL */
} arow_t;

/* The allocation loop of every row, inlined per allocator (the switch is on
 * a constant after inlining into each case of run()). */
#define ALLOC_LOOP(ALLOC)                                        \
    for (size_t i = 0; i < n; i++) {                             \
        size_t idx = base + i, size = g_sizes[idx % NSIZES];     \
        void *p = ALLOC;                                         \
        if (p == NULL) return -1;                                \
        touch(p, idx, size);                                     \
        g_ptrs[i] = p;                                           \
    }

static double run(void *arg) {
    const arow_t *row = arg;
    size_t step = row->all_live ? g_n : BATCH;
    uint64_t timed = 0;
    sp_arena_t own, *ap = row->keep ? row->kept : &own;
    if (!row->keep) sp_arena_init(&own, 0, NULL);
#define a (*ap)
#ifdef HAVE_OBSTACK_H
    struct obstack ob;
    void *first = NULL;
    if (row->kind == A_OBSTACK) {
        if (!obstack_specify_allocation(&ob, row->chunk, ALIGN, malloc, free)) return -1;
        first = obstack_alloc(&ob, 1); /* base to free back to */
    }
#endif
    for (size_t base = 0; base < g_n; base += step) {
        size_t n = g_n - base < step ? g_n - base : step;
        void *batch_base = NULL;
        uint64_t t0 = sp_bench_now_ns();
        switch (row->kind) {
        case A_ARENA:
            ALLOC_LOOP(sp_arena_alloc(&a, size, ALIGN));
            break;
        case A_CURSOR: {
            sp_arena_cursor_t cur = sp_arena_cursor(&a);
            ALLOC_LOOP(sp_arena_cursor_alloc(&a, &cur, size, ALIGN));
            sp_arena_cursor_end(&a, &cur);
            break;
        }
        case A_MALLOC:
            ALLOC_LOOP(malloc(size));
            break;
        case A_DL: {
            void *(*m)(size_t) = row->dl->malloc_fn;
            ALLOC_LOOP(m(size));
            break;
        }
        case A_OBSTACK:
#ifdef HAVE_OBSTACK_H
            ALLOC_LOOP(obstack_alloc(&ob, size));
            batch_base = g_ptrs[0];
#endif
            break;
        }
        uint64_t t1 = sp_bench_now_ns();
        if (verify(base, n) != 0) return -1;
        uint64_t t2 = sp_bench_now_ns();
        switch (row->kind) {
        case A_CURSOR:
        case A_ARENA:
            if (row->all_live && !row->keep)
                sp_arena_destroy(&a);
            else
                sp_arena_reset(&a);
            break;
        case A_MALLOC:
            for (size_t i = 0; i < n; i++) free(g_ptrs[i]);
            break;
        case A_DL: {
            void (*f)(void *) = row->dl->free_fn;
            for (size_t i = 0; i < n; i++) f(g_ptrs[i]);
            break;
        }
        case A_OBSTACK:
#ifdef HAVE_OBSTACK_H
            obstack_free(&ob, row->all_live ? first : batch_base);
#endif
            (void)batch_base;
            break;
        }
        timed += (t1 - t0) + (sp_bench_now_ns() - t2);
    }
    if (!row->keep) sp_arena_destroy(&a);
#undef a
#ifdef HAVE_OBSTACK_H
    if (row->kind == A_OBSTACK) {
        obstack_free(&ob, first);
        obstack_free(&ob, NULL);
    }
#endif
    return (double)timed / (double)g_n;
}

/* STREAM-like write of g_bytes: 8-byte stores over one buffer. prefault: 1
 * to fault the pages in before the timed pass (the DRAM write limit), 0 to
 * time a buffer fresh from malloc (page faults included, as for the
 * all-live workload). Figure: GB/s. */
static double run_write(void *arg) {
    int prefault = *(const int *)arg;
    size_t words = g_bytes / 8;
    uint64_t *buf = malloc(words * 8);
    if (buf == NULL) return -1;
    if (prefault) memset(buf, 1, words * 8);
    uint64_t t0 = sp_bench_now_ns();
    for (size_t i = 0; i < words; i++) buf[i] = i;
    SP_BENCH_CLOBBER();
    uint64_t t1 = sp_bench_now_ns();
    int ok = buf[words / 2] == words / 2 && buf[words - 1] == words - 1;
    free(buf);
    if (!ok) return -1;
    return (double)(words * 8) / (double)(t1 - t0);
}

enum { R_ARENA, R_CURSOR, R_ARENA_DESTROY, R_MALLOC, R_OB_DEF, R_OB_64K, R_MIMALLOC, R_JEMALLOC, R_PER_PATTERN };

int main(int argc, char **argv) {
    reexec_with_static_tls(argv);
    sp_bench_init(argc, argv, "arena");
    g_n = sp_bench_quick() ? 2000000 : 10000000;
    make_sizes();
    g_ptrs = malloc(g_n * sizeof *g_ptrs);
    if (g_ptrs == NULL) sp_bench_fail("no memory for %zu pointers", g_n);
    for (size_t i = 0; i < g_n; i++) g_bytes += g_sizes[i % NSIZES];
    int have_mi = dlalloc_load(&g_mimalloc) == 0, have_je = dlalloc_load(&g_jemalloc) == 0;
#ifdef HAVE_OBSTACK_H
    int have_ob = 1;
#else
    int have_ob = 0;
#endif
    printf("# %zu objects of 16..64 B (%.0f MB), align %d; ns per object (alloc + write + release)\n", g_n,
           (double)g_bytes / 1e6, ALIGN);
    static const char *const pattern_name[2] = {"batches of 4096", "all live"};
    static const char *const base_name[R_PER_PATTERN] = {
        "sp_arena", "sp_arena cursor", "sp_arena destroyed per run", "glibc malloc+free", "glibc obstack (default chunks)", "glibc obstack (64 KiB chunks)",
        "mimalloc", "jemalloc"};
    static char names[2][R_PER_PATTERN][96];
    static arow_t args[2][R_PER_PATTERN];
    int present[R_PER_PATTERN] = {1, 1, 1, 1, have_ob, have_ob, have_mi, have_je};
    static sp_arena_t kept[2][2]; /* [pattern][cursor row] */
    for (int i = 0; i < 4; i++) sp_arena_init(&kept[i / 2][i % 2], 0, NULL);
    sp_bench_row_t rows[2 * R_PER_PATTERN + 2];
    int slot[2][R_PER_PATTERN], nrows = 0;
    for (int pat = 0; pat < 2; pat++)
        for (int i = 0; i < R_PER_PATTERN; i++) {
            slot[pat][i] = -1;
            if (!present[i] || (pat == 0 && i == R_ARENA_DESTROY)) continue; /* batches: reset only */
            snprintf(names[pat][i], sizeof names[pat][i], "%s, %s", base_name[i], pattern_name[pat]);
            args[pat][i] = (arow_t){.kind = i == R_CURSOR ? A_CURSOR : i <= R_ARENA_DESTROY ? A_ARENA : i == R_MALLOC ? A_MALLOC
                                                         : i <= R_OB_64K      ? A_OBSTACK
                                                                              : A_DL,
                                    .all_live = pat,
                                    .keep = i == R_ARENA || i == R_CURSOR,
                                    .kept = &kept[pat][i == R_CURSOR],
                                    .chunk = i == R_OB_64K ? 64 * 1024 : 0,
                                    .dl = i == R_MIMALLOC ? &g_mimalloc : &g_jemalloc};
            slot[pat][i] = nrows;
            rows[nrows++] = (sp_bench_row_t){.name = names[pat][i], .unit = "ns/object", .fn = run,
                                             .arg = &args[pat][i]};
        }
    static int fresh = 0, faulted = 1;
    int w_fresh = nrows, w_faulted = nrows + 1;
    rows[nrows++] = (sp_bench_row_t){.name = "STREAM-like write, fresh memory", .unit = "GB/s",
                                     .higher_is_better = 1, .fn = run_write, .arg = &fresh};
    rows[nrows++] = (sp_bench_row_t){.name = "STREAM-like write, faulted-in memory", .unit = "GB/s",
                                     .higher_is_better = 1, .fn = run_write, .arg = &faulted};
    sp_bench_run(rows, nrows);
    for (int pat = 0; pat < 2; pat++)
        for (int i = 1; i < R_PER_PATTERN; i++) {
            if (pat == 0 && i == R_ARENA_DESTROY) continue;
            if (i > R_ARENA_DESTROY && slot[pat][i] >= 0) /* the cursor against the peers too */
                sp_bench_report(&rows[slot[pat][R_CURSOR]], &rows[slot[pat][i]]);
            if (slot[pat][i] < 0) {
                const char *pkg = i == R_MIMALLOC ? "mimalloc (libmimalloc-dev)"
                                  : i == R_JEMALLOC ? "jemalloc (libjemalloc-dev)"
                                                    : "glibc obstack (<obstack.h>)";
                printf("sp_arena, %s vs %s, %s: skipped: %s not installed (quickstart.sh bench installs it)\n",
                       pattern_name[pat], base_name[i], pattern_name[pat], pkg);
                continue;
            }
            sp_bench_report(&rows[slot[pat][R_ARENA]], &rows[slot[pat][i]]);
        }
    /* The all-live loop as bandwidth: bytes handed out per second. */
    for (int i = 0; i < R_PER_PATTERN; i++) {
        if (slot[1][i] < 0) continue;
        double ns = sp_bench_median(&rows[slot[1][i]]);
        printf("%s, all live: %.2f GB/s of objects handed out and written (STREAM-like write of the same %.0f MB "
               "in this run: %.2f GB/s into fresh memory, %.2f GB/s into faulted-in memory)\n",
               base_name[i], ns > 0 ? (double)g_bytes / (ns * (double)g_n) : 0.0, (double)g_bytes / 1e6,
               sp_bench_median(&rows[w_fresh]), sp_bench_median(&rows[w_faulted]));
    }
    for (int i = 0; i < 4; i++) sp_arena_destroy(&kept[i / 2][i % 2]);
    free(g_ptrs);
    return sp_bench_finish();
}
