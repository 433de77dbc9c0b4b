/* vec.c: the out-of-line core of the growable vector (vec.h).
 *
 * Invariants (checked by tests/check_vec.c):
 *  - len <= cap; cap == 0 <=> data == the static sentinel (never freed).
 *  - When cap > 0, data came from v->alloc with size
 *    alloc_bytes(cap * elem_size) and alignment SP_SIMD_ALIGN. That size is
 *    recomputable from cap alone: growth picks bytes = round64(n * es) and
 *    sets cap = bytes / es, and then round64(cap * es) == bytes again
 *    (n * es <= cap * es <= bytes and bytes - n * es < 64).
 *  - Every size computation is checked; results above PTRDIFF_MAX count as
 *    overflow so that pointer differences over the storage stay defined.
 *  - A failing call leaves data, len and cap exactly as they were: new
 *    storage is allocated and filled before the old one is released. */
#include <stdint.h>
#include <string.h>

#include "spacesim/vec.h"

/* Storage of every empty vector: aligned so begin/end obey the alignment
 * contract, const so an (impossible) write through it faults loudly. */
static _Alignas(SP_SIMD_ALIGN) const unsigned char vec_empty[SP_SIMD_ALIGN];

#define EMPTY_DATA ((void *)(uintptr_t)vec_empty)

/* Bytes asked of the allocator for `bytes` of elements: a 64-byte multiple. */
static int alloc_bytes(size_t bytes, size_t *out) {
    size_t r;
    if (sp_size_add(bytes, SP_SIMD_ALIGN - 1, &r) != 0) return SP_EOVERFLOW;
    r &= ~(size_t)(SP_SIMD_ALIGN - 1);
    if (r > (size_t)PTRDIFF_MAX) return SP_EOVERFLOW;
    *out = r;
    return 0;
}

int sp_vec_init(sp_vec_t *v, size_t elem_size, const sp_allocator_t *alloc) {
    if (elem_size == 0 || elem_size > (size_t)PTRDIFF_MAX) return SP_EINVAL;
    v->data = EMPTY_DATA;
    v->len = 0;
    v->cap = 0;
    v->elem_size = elem_size;
    v->alloc = alloc != NULL ? alloc : sp_allocator_default();
    return 0;
}

static void free_storage(sp_vec_t *v) {
    if (v->cap == 0) return;
    size_t bytes = 0;
    /* Cannot fail: the same computation succeeded when this was allocated. */
    (void)alloc_bytes(v->cap * v->elem_size, &bytes);
    v->alloc->free(v->alloc->ctx, v->data, bytes, SP_SIMD_ALIGN);
}

void sp_vec_destroy(sp_vec_t *v) {
    free_storage(v);
    v->data = EMPTY_DATA;
    v->len = 0;
    v->cap = 0;
}

/* Move to storage for at least `want` elements (want > cap). */
static int regrow(sp_vec_t *v, size_t want) {
    size_t es = v->elem_size, raw, bytes;
    if (sp_size_mul(want, es, &raw) != 0) return SP_EOVERFLOW;
    int r = alloc_bytes(raw, &bytes);
    if (r != 0) return r;
    void *p = v->alloc->alloc(v->alloc->ctx, bytes, SP_SIMD_ALIGN);
    if (p == NULL) return SP_ENOMEM;
    SP_ASSERT(((uintptr_t)p & (SP_SIMD_ALIGN - 1)) == 0);
    if (v->len != 0) memcpy(p, v->data, v->len * es);
    free_storage(v);
    v->data = p;
    v->cap = bytes / es;
    return 0;
}

/* Grow to hold `required` elements, doubling when that is bigger so pushes
 * stay amortised O(1); if the doubled size overflows, try just `required`. */
static int grow_to(sp_vec_t *v, size_t required, int exact) {
    if (required <= v->cap) return 0;
    size_t want = required;
    if (!exact) {
        size_t dbl;
        if (sp_size_mul(v->cap, 2, &dbl) == 0 && dbl > want) want = dbl;
        /* At least one 64-byte block's worth, so tiny vectors don't regrow
         * on every early push. */
        size_t min = SP_SIMD_ALIGN / v->elem_size;
        if (want < min) want = min;
        /* If the generous size fails (overflow or no memory), fall back to
         * exactly what was asked for. */
        if (want != required && regrow(v, want) == 0) return 0;
    }
    return regrow(v, required);
}

int sp_vec_reserve(sp_vec_t *v, size_t additional) {
    size_t required;
    if (sp_size_add(v->len, additional, &required) != 0) return SP_EOVERFLOW;
    return grow_to(v, required, 0);
}

int sp_vec_reserve_exact(sp_vec_t *v, size_t additional) {
    size_t required;
    if (sp_size_add(v->len, additional, &required) != 0) return SP_EOVERFLOW;
    return grow_to(v, required, 1);
}

int sp__vec_grow(sp_vec_t *v) { return sp_vec_reserve(v, 1); }

/* If p points into v's live storage, its byte offset there, else SIZE_MAX.
 * Compared as integers: relational operators on pointers into different
 * objects are undefined. */
static size_t offset_in(const sp_vec_t *v, const void *p) {
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)v->data;
    if (v->cap != 0 && a >= b && a - b < v->cap * v->elem_size) return (size_t)(a - b);
    return SIZE_MAX;
}

int sp_vec_push(sp_vec_t *v, const void *elem) {
    if (SP_UNLIKELY(v->len == v->cap)) {
        size_t off = offset_in(v, elem);
        int r = sp__vec_grow(v);
        if (r != 0) return r;
        if (off != SIZE_MAX) elem = (const char *)v->data + off;
    }
    memcpy((char *)v->data + v->len * v->elem_size, elem, v->elem_size);
    v->len++;
    return 0;
}

int sp_vec_extend(sp_vec_t *v, const void *src, size_t n) {
    if (n == 0) return 0;
    size_t bytes;
    if (sp_size_mul(n, v->elem_size, &bytes) != 0) return SP_EOVERFLOW;
    size_t off = offset_in(v, src);
    int r = sp_vec_reserve(v, n);
    if (r != 0) return r;
    if (off != SIZE_MAX) src = (const char *)v->data + off;
    /* memmove: src may be the vector's own elements; the destination starts
     * at len, past them, but a slice may run up to len exactly. */
    memmove((char *)v->data + v->len * v->elem_size, src, bytes);
    v->len += n;
    return 0;
}

int sp_vec_pop(sp_vec_t *v, void *out) {
    if (v->len == 0) return SP_ERANGE;
    v->len--;
    if (out != NULL) memcpy(out, (char *)v->data + v->len * v->elem_size, v->elem_size);
    return 0;
}

int sp_vec_get(const sp_vec_t *v, size_t i, void *out) {
    if (i >= v->len) return SP_ERANGE;
    memcpy(out, (const char *)v->data + i * v->elem_size, v->elem_size);
    return 0;
}

int sp_vec_remove_swap(sp_vec_t *v, size_t i, void *out) {
    if (i >= v->len) return SP_ERANGE;
    size_t es = v->elem_size;
    char *slot = (char *)v->data + i * es;
    if (out != NULL) memcpy(out, slot, es);
    v->len--;
    if (i != v->len) memcpy(slot, (char *)v->data + v->len * es, es);
    return 0;
}

int sp_vec_resize(sp_vec_t *v, size_t n) {
    if (n <= v->len) {
        v->len = n;
        return 0;
    }
    int r = grow_to(v, n, 0);
    if (r != 0) return r;
    memset((char *)v->data + v->len * v->elem_size, 0, (n - v->len) * v->elem_size);
    v->len = n;
    return 0;
}
