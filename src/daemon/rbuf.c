/* rbuf.c: reference-counted byte buffers (see rbuf.h). */
#include "daemon/rbuf.h"

#include <stdlib.h>
#include <string.h>

sp_rbuf_t *sp_rbuf_new(const void *data, size_t len, uint32_t tag) {
    if (len > SIZE_MAX - sizeof(sp_rbuf_t)) return NULL;
    sp_rbuf_t *b = malloc(sizeof *b + len);
    if (b == NULL) return NULL;
    /* Relaxed: nobody else has the buffer yet; whatever hands it to another
     * thread (a CAS into a cell's cache, the pool's queues) publishes it. */
    atomic_store_explicit(&b->refs, 1, memory_order_relaxed);
    b->tag = tag;
    b->key = 0;
    b->len = len;
    if (len) memcpy(b->data, data, len);
    return b;
}

void sp_rbuf_retain(sp_rbuf_t *b) {
    /* Relaxed: the caller holds a reference, so the count cannot reach 0
     * meanwhile; no data is published by taking a reference. */
    if (b) atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void sp_rbuf_release(sp_rbuf_t *b) {
    if (b == NULL) return;
    /* acq_rel: our reads of the bytes happen before another thread's free
     * (release), and the last releaser sees every holder's reads done
     * before it frees (acquire); relaxed could free bytes a writev still
     * reads on another thread's behalf. */
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) free(b);
}
