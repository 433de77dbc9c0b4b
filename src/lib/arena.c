/* arena.c: the out-of-line parts of the chunked bump allocator (arena.h).
 *
 * Invariants (checked by tests/check_arena.c):
 *  - head == NULL  <=>  cur == NULL  <=>  the arena owns no chunk.
 *  - Chunks form one singly linked list from head. Chunks before cur are
 *    "full" (their used bytes are summed in used_before), cur is being
 *    bumped downwards (used: [ptr, data end), free: [start, ptr)), chunks
 *    after cur are free and reused in order.
 *  - Every chunk holds at least one ordinary chunk's data bytes, so an
 *    ordinary request always fits the next free chunk; only a request larger
 *    than an ordinary chunk can find the next chunk too small, and then that
 *    one chunk is replaced. Either way the slow path looks at cur and
 *    cur->next only: O(1), no scan of older chunks.
 *  - capacity == sum of chunk->size over the list; nchunks == its length.
 */
#include <string.h>

#include "spacesim/arena.h"

#if defined(SP_ASAN) && SP_ASAN
#define ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#else
#define ARENA_POISON(p, n) ((void)(p), (void)(n))
#endif

static char *chunk_data(sp_arena_chunk_t *c) { return (char *)c + SP_ARENA_CHUNK_HEADER; }

static int is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

int sp_arena_init(sp_arena_t *a, size_t chunk_size, const sp_allocator_t *alloc) {
    if (chunk_size == 0) chunk_size = SP_ARENA_DEFAULT_CHUNK;
    if (chunk_size < SP_ARENA_MIN_CHUNK) chunk_size = SP_ARENA_MIN_CHUNK;
    /* Keep the data part a whole number of SIMD blocks. */
    chunk_size &= ~(size_t)(SP_SIMD_ALIGN - 1);
    memset(a, 0, sizeof *a);
    a->chunk_size = chunk_size;
    a->alloc = alloc != NULL ? alloc : sp_allocator_default();
    return 0;
}

void sp_arena_destroy(sp_arena_t *a) {
    sp_arena_chunk_t *c = a->head;
    while (c != NULL) {
        sp_arena_chunk_t *next = c->next;
        size_t sys = c->sys_size;
        /* A custom allocator may reuse the bytes at once; hand them back
         * unpoisoned. */
        SP__ARENA_UNPOISON(c, sys);
        a->alloc->free(a->alloc->ctx, c, sys, SP_SIMD_ALIGN);
        c = next;
    }
    a->head = a->cur = NULL;
    a->ptr = a->start = NULL;
    a->used_before = 0;
    a->capacity = 0;
    a->nchunks = 0;
}

/* Make c the current chunk with its data empty. */
static char *chunk_end(sp_arena_chunk_t *c) { return chunk_data(c) + c->size; }

static void enter_chunk(sp_arena_t *a, sp_arena_chunk_t *c) {
    if (a->cur != NULL) a->used_before += (size_t)(chunk_end(a->cur) - a->ptr);
    a->cur = c;
    a->start = chunk_data(c);
    a->ptr = chunk_end(c);
}

void *sp__arena_alloc_slow(sp_arena_t *a, size_t size, size_t align) {
    if (!is_pow2(align)) {
        SP_ASSERT(!"sp_arena_alloc: align must be a power of two");
        return NULL;
    }
    if (size == 0) size = 1;
    /* Chunk data starts and ends SP_SIMD_ALIGN-aligned, so a fresh chunk
     * needs at most align - SP_SIMD_ALIGN bytes of padding. */
    size_t pad = align > SP_SIMD_ALIGN ? align - SP_SIMD_ALIGN : 0;
    size_t need;
    if (sp_size_add(size, pad, &need) != 0) return NULL;

    sp_arena_chunk_t *next = a->cur != NULL ? a->cur->next : a->head;
    if (next == NULL || next->size < need) {
        /* New chunk: ordinary size, or a dedicated one for a big request. */
        size_t data = a->chunk_size - SP_ARENA_CHUNK_HEADER;
        if (need > data) {
            if (sp_size_add(need, SP_SIMD_ALIGN - 1, &data) != 0) return NULL;
            data &= ~(size_t)(SP_SIMD_ALIGN - 1);
        }
        size_t sys;
        if (sp_size_add(data, SP_ARENA_CHUNK_HEADER, &sys) != 0) return NULL;
        sp_arena_chunk_t *c = a->alloc->alloc(a->alloc->ctx, sys, SP_SIMD_ALIGN);
        if (c == NULL) return NULL; /* arena unchanged */
        c->size = data;
        c->sys_size = sys;
        ARENA_POISON(chunk_data(c), data);
        if (next != NULL) {
            /* next is free and too small for this big request: replace it, so
             * the list never grows past what one pass of the workload needs
             * and the slow path stays O(1). */
            c->next = next->next;
            a->capacity -= next->size;
            a->nchunks--;
            SP__ARENA_UNPOISON(next, next->sys_size);
            a->alloc->free(a->alloc->ctx, next, next->sys_size, SP_SIMD_ALIGN);
        } else {
            c->next = NULL;
        }
        if (a->cur != NULL)
            a->cur->next = c;
        else
            a->head = c;
        a->capacity += data;
        a->nchunks++;
        next = c;
    }
    enter_chunk(a, next);

    SP_ASSERT(size <= (size_t)(a->ptr - a->start));
    uintptr_t p = ((uintptr_t)a->ptr - size) & ~(uintptr_t)(align - 1);
    SP_ASSERT(p >= (uintptr_t)a->start);
    a->ptr = (char *)p;
    SP__ARENA_UNPOISON((void *)p, size);
    return (void *)p;
}

sp_arena_cursor_t sp__arena_cursor_slow(sp_arena_t *a, sp_arena_cursor_t c, size_t size, size_t align) {
    /* Commit the cursor first: the slow path accounts cur's used bytes from
     * a->ptr when it leaves the chunk. */
    a->ptr = c.ptr;
    a->start = c.start;
    sp_arena_cursor_t n = {NULL, c.start};
    void *p = sp__arena_alloc_slow(a, size, align); /* NULL: arena unchanged */
    if (p != NULL) {
        n.ptr = a->ptr; /* == p: the bump goes downwards */
        n.start = a->start;
    }
    return n;
}

void *sp_arena_calloc(sp_arena_t *a, size_t count, size_t size, size_t align) {
    size_t bytes;
    if (sp_size_mul(count, size, &bytes) != 0) return NULL;
    void *p = sp_arena_alloc(a, bytes, align);
    if (p != NULL) memset(p, 0, bytes);
    return p;
}

/* Poison what was allocated after position (c, from) up to the chunk that
 * was current, last: the free part of c below from (bumping goes down) and
 * every chunk after c up to last. */
static void poison_from(sp_arena_chunk_t *c, char *from, sp_arena_chunk_t *last) {
#if defined(SP_ASAN) && SP_ASAN
    ARENA_POISON(chunk_data(c), (size_t)(from - chunk_data(c)));
    while (c != last && c->next != NULL) {
        c = c->next;
        ARENA_POISON(chunk_data(c), c->size);
    }
#else
    (void)c;
    (void)from;
    (void)last;
#endif
}

void sp_arena_rewind(sp_arena_t *a, sp_arena_mark_t m) {
    if (m.chunk == NULL) { /* mark taken before the first chunk */
        sp_arena_reset(a);
        return;
    }
#ifdef SP_DEBUG
    {
        /* The mark's chunk must be cur or before it, and its pointer must not
         * lie ahead of the current position. O(chunks): debug builds only. */
        sp_arena_chunk_t *c = a->head;
        while (c != NULL && c != m.chunk && c != a->cur) c = c->next;
        SP_ASSERT(c == m.chunk);
        SP_ASSERT(m.ptr >= chunk_data(m.chunk) && m.ptr <= chunk_data(m.chunk) + m.chunk->size);
        SP_ASSERT(m.chunk != a->cur || m.ptr >= a->ptr);
    }
#endif
    poison_from(m.chunk, m.ptr, a->cur);
    a->cur = m.chunk;
    a->ptr = m.ptr;
    a->start = chunk_data(m.chunk);
    a->used_before = m.used_before;
}

void sp_arena_reset(sp_arena_t *a) {
    if (a->head == NULL) return;
    poison_from(a->head, chunk_end(a->head), a->cur);
    a->cur = a->head;
    a->start = chunk_data(a->head);
    a->ptr = chunk_end(a->head);
    a->used_before = 0;
}
