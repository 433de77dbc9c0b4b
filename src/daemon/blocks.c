/* blocks.c: big freed blocks kept for reuse (see blocks.h). */
#include "daemon/blocks.h"

#include <string.h>

#include "spacesim/error.h"

static void *blocks_alloc(void *ctx, size_t size, size_t align) {
    sp_blocks_t *b = ctx;
    const sp_allocator_t *libc = sp_allocator_default();
    if (size < SP_BLOCKS_MIN) return libc->alloc(libc->ctx, size, align);
    void *p = NULL;
    uv_mutex_lock(&b->mu);
    /* The smallest kept block that fits, if it is not much bigger. */
    int best = -1;
    for (unsigned i = 0; i < b->n; i++)
        if (b->keep[i].align == align && b->keep[i].size >= size && b->keep[i].size - size <= size / 4 &&
            (best < 0 || b->keep[i].size < b->keep[best].size))
            best = (int)i;
    if (best >= 0) {
        p = b->keep[best].p;
        b->keep[best] = b->keep[--b->n];
        b->reused++;
    } else {
        b->fresh++;
    }
    uv_mutex_unlock(&b->mu);
    return p != NULL ? p : libc->alloc(libc->ctx, size, align);
}

/* (A reused block may be bigger than the size it is freed with: it is kept
 * as that size, which it holds at least.) */
static void blocks_free(void *ctx, void *ptr, size_t size, size_t align) {
    sp_blocks_t *b = ctx;
    const sp_allocator_t *libc = sp_allocator_default();
    if (ptr == NULL) return;
    if (size < SP_BLOCKS_MIN) {
        libc->free(libc->ctx, ptr, size, align);
        return;
    }
    void *drop = ptr;
    size_t drop_size = size, drop_align = align;
    uv_mutex_lock(&b->mu);
    if (b->n < SP_BLOCKS_KEEP) {
        b->keep[b->n].p = ptr;
        b->keep[b->n].size = size;
        b->keep[b->n].align = align;
        b->n++;
        drop = NULL;
    } else {
        /* Full: keep the bigger ones (the frames are the biggest blocks). */
        unsigned small = 0;
        for (unsigned i = 1; i < b->n; i++)
            if (b->keep[i].size < b->keep[small].size) small = i;
        if (b->keep[small].size < size) {
            drop = b->keep[small].p;
            drop_size = b->keep[small].size;
            drop_align = b->keep[small].align;
            b->keep[small].p = ptr;
            b->keep[small].size = size;
            b->keep[small].align = align;
        }
    }
    uv_mutex_unlock(&b->mu);
    if (drop != NULL) libc->free(libc->ctx, drop, drop_size, drop_align);
}

int sp_blocks_init(sp_blocks_t *b) {
    memset(b, 0, sizeof *b);
    if (uv_mutex_init(&b->mu) != 0) return SP_ENOMEM;
    b->a.alloc = blocks_alloc;
    b->a.free = blocks_free;
    b->a.ctx = b;
    return 0;
}

void sp_blocks_destroy(sp_blocks_t *b) {
    const sp_allocator_t *libc = sp_allocator_default();
    for (unsigned i = 0; i < b->n; i++) libc->free(libc->ctx, b->keep[i].p, b->keep[i].size, b->keep[i].align);
    b->n = 0;
    uv_mutex_destroy(&b->mu);
}
