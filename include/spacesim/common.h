/* spacesim/common.h: definitions shared by every libspacesim module.
 *
 * Contents: the export macro, debug assertions, cache-line constants and the
 * allocator interface that collections take (CK's ck_malloc / Box2D's
 * b2AllocFcn: free receives the size, so arena- or pool-backed allocators need
 * no header per block).
 *
 * Threads: everything here is stateless; safe from any thread. */
#ifndef SPACESIM_COMMON_H
#define SPACESIM_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "spacesim/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SP_LIKELY(x) __builtin_expect(!!(x), 1)
#define SP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SP_INLINE static inline __attribute__((always_inline))
#else
#define SP_LIKELY(x) (x)
#define SP_UNLIKELY(x) (x)
#define SP_INLINE static inline
#endif

/* x86-64 cache line. Adjacent-line prefetch on Zen/Intel pulls pairs of lines,
 * so indices written by different threads are padded 128 bytes apart. */
#define SP_CACHELINE 64
#define SP_FALSE_SHARING_RANGE 128

/* Storage alignment of vectors and particle arrays: one full AVX-512 register. */
#define SP_SIMD_ALIGN 64

/* SP_ASSERT: misuse checks. Under --enable-debug (SP_DEBUG) a failed check
 * aborts with file and line; in release builds it compiles to nothing and the
 * caller must have a safe early return where one is possible (Box2D style). */
#ifdef SP_DEBUG
#include <stdio.h>
#include <stdlib.h>
#define SP_ASSERT(c)                                                              \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                              \
        }                                                                         \
    } while (0)
#else
#define SP_ASSERT(c) ((void)0)
#endif

/* Allocator interface. alloc returns memory aligned to at least `align` (a
 * power of two) or NULL; free receives the same size and alignment that alloc
 * was given. A NULL sp_allocator_t pointer anywhere in the API means
 * sp_allocator_default() (aligned_alloc/free from libc). */
typedef struct sp_allocator {
    void *(*alloc)(void *ctx, size_t size, size_t align);
    void (*free)(void *ctx, void *ptr, size_t size, size_t align);
    void *ctx;
} sp_allocator_t;

/* The libc-backed allocator. Never NULL; the returned object is static. */
SP_API const sp_allocator_t *sp_allocator_default(void);

/* Checked size arithmetic: store a*b or a+b in *out and return 0, or return
 * SP_EOVERFLOW and leave *out untouched. */
SP_INLINE int sp_size_mul(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return SP_EOVERFLOW;
    *out = r;
    return 0;
}
SP_INLINE int sp_size_add(size_t a, size_t b, size_t *out) {
    size_t r;
    if (__builtin_add_overflow(a, b, &r)) return SP_EOVERFLOW;
    *out = r;
    return 0;
}

/* Round x up to a multiple of the power of two `align`. Caller guarantees no
 * overflow (use sp_size_add first when x is untrusted). */
SP_INLINE size_t sp_align_up(size_t x, size_t align) { return (x + align - 1) & ~(align - 1); }

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_COMMON_H */
