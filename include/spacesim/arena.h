/* spacesim/arena.h: chunked bump allocator for scratch memory.
 *
 * An arena hands out memory by bumping a pointer inside its current chunk
 * (downwards, from the chunk's end towards its start: that needs one
 * subtraction and one mask per allocation, against an add, a mask and an add
 * upwards, and the bump pointer is the loop-carried dependency of a burst of
 * allocations).
 * When the chunk is full it moves to the next chunk it already owns (after a
 * reset or rewind) or asks its sp_allocator_t for a new one. Nothing is ever
 * freed individually: sp_arena_reset() makes all memory free again but keeps
 * the chunks, sp_arena_rewind() returns to a sp_arena_mark() for scoped
 * scratch, sp_arena_destroy() gives the chunks back to the allocator.
 *
 * Typical use (per-tick scratch of the broadphase):
 *     sp_arena_t a;
 *     if (sp_arena_init(&a, 0, NULL) != 0) ...;        // 64 KiB chunks, libc
 *     for (;;) {                                        // each tick
 *         sp_arena_reset(&a);                           // keeps the chunks
 *         uint32_t *cells = sp_arena_alloc_array(&a, n, sizeof *cells, 64);
 *         sp_arena_mark_t m = sp_arena_mark(&a);
 *         ... temporary buffers ...
 *         sp_arena_rewind(&a, m);                       // drop just those
 *     }
 *     sp_arena_destroy(&a);
 *
 * Cost: sp_arena_alloc() is a static inline bump (a few instructions) in
 * this header; only when the current chunk is exhausted does it call the
 * out-of-line slow path, which is O(1): it looks at the next owned chunk
 * only, never scans older chunks (the seed scanned all of them on every
 * allocation and never advanced its current chunk). Requests larger than a
 * chunk get a chunk of their own (the seed aborted).
 *
 * Objects that own heap memory: the arena NEVER runs destructors. Reset,
 * rewind and destroy simply make the bytes reusable. If you place a struct
 * in the arena that owns memory elsewhere (a malloc'd string, an sp_vec_t,
 * a file descriptor), you must release that resource yourself before the
 * arena region holding it is reset, rewound or destroyed, or it leaks (the
 * seed copied such objects in and leaked them). Prefer plain data (floats,
 * indices, pairs) in arenas; keep owning objects elsewhere.
 *
 * Threads: an arena is not thread-safe. Use one arena per thread (e.g. one
 * per worker), or serialise every call on a given arena externally. Memory
 * handed out may be read by other threads once published by the caller's
 * own synchronisation.
 *
 * ASan: when built with --enable-sanitizers (SP_ASAN=1), free space, chunk
 * tails, alignment padding and regions released by reset/rewind are
 * poisoned, so a stale pointer into released arena memory is reported as a
 * use-after-poison. */
#ifndef SPACESIM_ARENA_H
#define SPACESIM_ARENA_H

#include <stdint.h>

#include "spacesim/common.h"

#if defined(SP_ASAN) && SP_ASAN
#include <sanitizer/asan_interface.h>
#define SP__ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SP__ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Default chunk size when sp_arena_init() gets 0: 64 KiB, allocator header
 * included (fits L2, big enough that the slow path runs once per ~1000
 * small objects). */
#define SP_ARENA_DEFAULT_CHUNK ((size_t)64 * 1024)
/* Smallest accepted chunk size; smaller values are raised to this. */
#define SP_ARENA_MIN_CHUNK ((size_t)256)
/* Bytes of each chunk taken by its header; chunk data starts SP_SIMD_ALIGN
 * aligned, so any alignment up to 64 costs no padding at a chunk start. */
#define SP_ARENA_CHUNK_HEADER ((size_t)SP_SIMD_ALIGN)

/* One chunk; its data follows the header at SP_ARENA_CHUNK_HEADER bytes.
 * Private to arena.c except for the fields the inline fast path needs. */
typedef struct sp_arena_chunk {
    struct sp_arena_chunk *next; /* next chunk in allocation order, or NULL */
    size_t size;                 /* usable data bytes */
    size_t sys_size;             /* bytes asked of the allocator (for free) */
} sp_arena_chunk_t;

/* The arena. Owned by the caller (init/destroy pair); fields are private:
 * read them only through the functions below. Chunks form one list in the
 * order they were first used; `cur` is the chunk being bumped, chunks after
 * it are free (kept from before a reset/rewind), chunks before it are full. */
typedef struct sp_arena {
    char *ptr;                   /* bump pointer in cur's data: [ptr, end) is used */
    char *start;                 /* start of cur's data: [start, ptr) is free */
    sp_arena_chunk_t *cur;       /* current chunk, NULL before the first */
    sp_arena_chunk_t *head;      /* first chunk, NULL before the first */
    size_t used_before;          /* bytes used in the chunks before cur */
    size_t capacity;             /* data bytes of all owned chunks */
    size_t chunk_size;           /* ordinary chunk size, header included */
    size_t nchunks;              /* chunks owned */
    const sp_allocator_t *alloc; /* never NULL after init */
} sp_arena_t;

/* A position in an arena, from sp_arena_mark(). Plain value; copy freely. */
typedef struct sp_arena_mark {
    sp_arena_chunk_t *chunk; /* cur at mark time (NULL: before any chunk) */
    char *ptr;               /* bump pointer at mark time */
    size_t used_before;      /* used_before at mark time */
} sp_arena_mark_t;

/* Initialise an empty arena. chunk_size: bytes per ordinary chunk asked of
 * the allocator, header included (0 = SP_ARENA_DEFAULT_CHUNK; values below
 * SP_ARENA_MIN_CHUNK are raised). alloc: NULL = sp_allocator_default(); it
 * must outlive the arena. Does not allocate (the first chunk is taken by the
 * first allocation). Returns 0 (cannot fail today; keep the check).
 * Threads: the caller owns *a. */
SP_API int sp_arena_init(sp_arena_t *a, size_t chunk_size, const sp_allocator_t *alloc);

/* Give every chunk back to the allocator and leave *a empty but still
 * initialised (allocating again is allowed). Runs no destructors: see the
 * note on owning objects at the top. Every pointer from the arena dies. */
SP_API void sp_arena_destroy(sp_arena_t *a);

/* Slow path of sp_arena_alloc(): move to the next owned chunk if the request
 * fits there, else allocate a new chunk (a dedicated one of the right size
 * for requests larger than an ordinary chunk). O(1). Internal; call
 * sp_arena_alloc(). */
SP_API void *sp__arena_alloc_slow(sp_arena_t *a, size_t size, size_t align);

/* Allocate `size` bytes aligned to `align` (a power of two, 1..any; up to
 * SP_SIMD_ALIGN costs no chunk-start padding). The memory is uninitialised
 * and stays valid until the arena is reset, rewound to a mark taken before
 * this call, or destroyed. size 0 is treated as 1 (a unique pointer).
 * Returns NULL when the allocator fails, when size + align overflows, or
 * when align is not a power of two (SP_ASSERT in debug builds); the arena is
 * unchanged then. Cost: inline bump; O(1) slow path when a chunk fills. */
SP_INLINE void *sp_arena_alloc(sp_arena_t *a, size_t size, size_t align) {
    if (align == 0 || (align & (align - 1)) != 0) {
        SP_ASSERT(!"sp_arena_alloc: align must be a power of two");
        return NULL;
    }
    if (size == 0) size = 1;
    /* Unsigned arithmetic on addresses. The first test keeps ptr - size from
     * wrapping; then rounding down to align can only cross start, which the
     * second test catches. With ptr == start == NULL (no chunk yet) the first
     * test fails for every size >= 1. */
    uintptr_t ptr = (uintptr_t)a->ptr, lo = (uintptr_t)a->start;
    if (SP_LIKELY(size <= ptr - lo)) {
        uintptr_t p = (ptr - size) & ~(uintptr_t)(align - 1);
        if (SP_LIKELY(p >= lo)) {
            a->ptr = (char *)p;
            SP__ARENA_UNPOISON((void *)p, size);
            return (void *)p;
        }
    }
    return sp__arena_alloc_slow(a, size, align);
}

/* ------------------------------------------------------------------------
 * Cursor: the bump pointer in the caller's registers, for hot loops.
 *
 * sp_arena_alloc() keeps the bump pointer in *a, so in a loop that also
 * stores through pointers (as every caller does: it writes the objects) the
 * compiler must store a->ptr and load it back on every allocation, and that
 * store-to-load round trip (~5 cycles) becomes the loop's critical path. A
 * cursor is a copy of {ptr, start} in a local variable whose address the
 * inline code never lets escape, so it lives in registers:
 *
 *     sp_arena_cursor_t c = sp_arena_cursor(&a);
 *     for (...) { T *p = sp_arena_cursor_alloc(&a, &c, sizeof *p, 16); ... }
 *     sp_arena_cursor_end(&a, &c);
 *
 * Between sp_arena_cursor() and sp_arena_cursor_end() the arena must be used
 * only through that cursor (no other alloc, mark, rewind or reset on *a):
 * *a's bump pointer is stale meanwhile. Same memory, alignment, lifetime and
 * failure rules as sp_arena_alloc(); the same sequence of requests returns
 * the same addresses. Threads: as the arena (one thread). Never allocates
 * but through the arena's slow path. */
typedef struct sp_arena_cursor {
    char *ptr;   /* bump pointer: [ptr, end) of the current chunk is used */
    char *start; /* start of the current chunk's data */
} sp_arena_cursor_t;

/* Slow path of sp_arena_cursor_alloc(): commits c to *a, allocates as
 * sp__arena_alloc_slow(), and returns the new cursor, whose ptr is the new
 * allocation; on failure returns ptr == NULL and leaves *a as it was (c
 * still valid). Internal. Returned by value (two registers) so the caller's
 * cursor never has its address taken. */
SP_API sp_arena_cursor_t sp__arena_cursor_slow(sp_arena_t *a, sp_arena_cursor_t c, size_t size, size_t align);

/* Start a cursor at the arena's current position. O(1). */
SP_INLINE sp_arena_cursor_t sp_arena_cursor(const sp_arena_t *a) {
    sp_arena_cursor_t c = {a->ptr, a->start};
    return c;
}

/* As sp_arena_alloc(a, size, align), through cursor c (see above). */
SP_INLINE void *sp_arena_cursor_alloc(sp_arena_t *a, sp_arena_cursor_t *c, size_t size, size_t align) {
    if (align == 0 || (align & (align - 1)) != 0) {
        SP_ASSERT(!"sp_arena_cursor_alloc: align must be a power of two");
        return NULL;
    }
    if (size == 0) size = 1;
    /* The same two tests as sp_arena_alloc(). */
    uintptr_t ptr = (uintptr_t)c->ptr, lo = (uintptr_t)c->start;
    if (SP_LIKELY(size <= ptr - lo)) {
        uintptr_t p = (ptr - size) & ~(uintptr_t)(align - 1);
        if (SP_LIKELY(p >= lo)) {
            c->ptr = (char *)p;
            SP__ARENA_UNPOISON((void *)p, size);
            return (void *)p;
        }
    }
    sp_arena_cursor_t n = sp__arena_cursor_slow(a, *c, size, align);
    if (n.ptr == NULL) return NULL;
    *c = n;
    return n.ptr;
}

/* Write the cursor's position back into *a; the arena may be used directly
 * again. c must not be used afterwards (start a new one). O(1). */
SP_INLINE void sp_arena_cursor_end(sp_arena_t *a, const sp_arena_cursor_t *c) {
    a->ptr = c->ptr;
    a->start = c->start;
}

/* Allocate an array of count elements of `size` bytes each, aligned to
 * `align`; count * size is checked and NULL is returned on overflow (arena
 * unchanged). Otherwise as sp_arena_alloc(). */
SP_INLINE void *sp_arena_alloc_array(sp_arena_t *a, size_t count, size_t size, size_t align) {
    size_t bytes;
    if (sp_size_mul(count, size, &bytes) != 0) return NULL;
    return sp_arena_alloc(a, bytes, align);
}

/* As sp_arena_alloc() but the memory is zero-filled. */
SP_API void *sp_arena_calloc(sp_arena_t *a, size_t count, size_t size, size_t align);

/* Current position, for a later sp_arena_rewind(). O(1), no allocation. */
SP_INLINE sp_arena_mark_t sp_arena_mark(const sp_arena_t *a) {
    sp_arena_mark_t m = {a->cur, a->ptr, a->used_before};
    return m;
}

/* Release everything allocated since mark m was taken: sp_arena_used() and
 * the bump position return to their values at the mark, and the following
 * allocations reuse the same addresses (same sizes and alignments give the
 * same pointers). Chunks are kept. Marks nest LIFO: m must come from this
 * arena since its last reset, and rewinding to m invalidates every mark
 * taken after m (rewinding to such a mark later is undefined). Runs no
 * destructors. O(1) (O(chunks released) under ASan, to poison them). */
SP_API void sp_arena_rewind(sp_arena_t *a, sp_arena_mark_t m);

/* Release every allocation but keep all chunks for reuse: after a reset, the
 * same allocation sequence asks the allocator for nothing new. Invalidates
 * all pointers and marks. Runs no destructors. O(1) (O(chunks) under ASan). */
SP_API void sp_arena_reset(sp_arena_t *a);

/* Bytes handed out since the last reset, counting alignment padding but not
 * the unused parts of chunks that were left for the next one. O(1). */
SP_INLINE size_t sp_arena_used(const sp_arena_t *a) {
    return a->cur == NULL ? 0 : a->used_before + (size_t)(a->start + a->cur->size - a->ptr);
}

/* Data bytes of all chunks the arena owns (used or free). O(1). */
SP_INLINE size_t sp_arena_capacity(const sp_arena_t *a) { return a->capacity; }

/* Number of chunks the arena owns. O(1). */
SP_INLINE size_t sp_arena_chunks(const sp_arena_t *a) { return a->nchunks; }

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_ARENA_H */
