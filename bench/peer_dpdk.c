/* bench/peer_dpdk.c: DPDK rte_ring behind plain C calls (see bench/peers.h).
 * Compiled alone with -std=gnu11 -fno-strict-aliasing: DPDK's ring copies
 * pointers through differently typed lvalues. No EAL: the ring lives in
 * 128-byte-aligned malloc memory initialised by rte_ring_init. */
#include "peers.h"

#include <stdlib.h>
#include <string.h>

#include <rte_ring.h>

void *peer_dpdk_create(unsigned count, int single) {
    unsigned flags = RING_F_EXACT_SZ | (single ? (RING_F_SP_ENQ | RING_F_SC_DEQ) : 0);
    /* With RING_F_EXACT_SZ the ring has the next power of two above count
     * slots (2048 for 1024): size the memory for those. */
    ssize_t sz = rte_ring_get_memsize(rte_align32pow2(count + 1));
    if (sz < 0) return NULL;
    /* rte_ring_get_memsize rounds to a cache line, and the struct wants
     * cache-line (128 B with the prefetch pair) alignment. */
    size_t bytes = ((size_t)sz + 127) / 128 * 128;
    struct rte_ring *r = aligned_alloc(128, bytes);
    if (r == NULL) return NULL;
    memset(r, 0, bytes);
    if (rte_ring_init(r, single ? "sp_bench_spsc" : "sp_bench_mpmc", count, flags) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void peer_dpdk_free(void *ring) { free(ring); }

/* rte_ring_enqueue / _dequeue follow the sync type the ring was made with. */
int peer_dpdk_enqueue(void *ring, void *obj) { return rte_ring_enqueue(ring, obj) == 0; }
int peer_dpdk_dequeue(void *ring, void **obj) { return rte_ring_dequeue(ring, obj) == 0; }

unsigned peer_dpdk_enqueue_burst(void *ring, void *const *objs, unsigned n) {
    return rte_ring_enqueue_burst(ring, objs, n, NULL);
}
unsigned peer_dpdk_dequeue_burst(void *ring, void **objs, unsigned n) {
    return rte_ring_dequeue_burst(ring, objs, n, NULL);
}
