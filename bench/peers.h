/* bench/peers.h: C entry points into the peer libraries that cannot be
 * included in a spacesim benchmark's own translation unit.
 *
 *  - DPDK rte_ring (bench/peer_dpdk.c): its inline ring code breaks strict
 *    aliasing (clang -O2 returns NULL items), so it is compiled alone with
 *    -std=gnu11 -fno-strict-aliasing and DPDK's pkg-config flags. The ring is
 *    made without the EAL: rte_ring_get_memsize + rte_ring_init on aligned
 *    malloc memory (rte_ring_create needs rte_eal_init and hugepages).
 *  - moodycamel::ConcurrentQueue (bench/peer_moody.cpp): a C++ header; this
 *    shim is the only C++ in the project and is linked into benchmarks only.
 *
 * Each wrapper is one out-of-line call around the peer's inline fast path,
 * which costs ~1 ns per call on these machines; the benchmarks say so. Both
 * shims are bench-only: neither libspacesim nor `make check` needs them. */
#ifndef SP_BENCH_PEERS_H
#define SP_BENCH_PEERS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* DPDK rte_ring holding exactly `count` pointers (RING_F_EXACT_SZ).
 * single != 0: single-producer/single-consumer ring (RING_F_SP_ENQ |
 * RING_F_SC_DEQ), else multi/multi. NULL on failure. */
void *peer_dpdk_create(unsigned count, int single);
void peer_dpdk_free(void *ring);
/* 1 when one pointer moved, 0 when full/empty. mp/mc or sp/sc after the ring's flags. */
int peer_dpdk_enqueue(void *ring, void *obj);
int peer_dpdk_dequeue(void *ring, void **obj);
/* Burst: moves up to n pointers, returns how many (DPDK's _burst calls). */
unsigned peer_dpdk_enqueue_burst(void *ring, void *const *objs, unsigned n);
unsigned peer_dpdk_dequeue_burst(void *ring, void **objs, unsigned n);

/* moodycamel::ConcurrentQueue<void *> pre-sized for `capacity` items with up to
 * `producers` explicit producers; producer/consumer tokens are per thread. */
void *peer_moody_create(size_t capacity, int producers);
void peer_moody_free(void *q);
void *peer_moody_ptok(void *q);
void peer_moody_ptok_free(void *tok);
void *peer_moody_ctok(void *q);
void peer_moody_ctok_free(void *tok);
/* try_enqueue never allocates (fails when the pre-sized blocks are full). 1 or 0. */
int peer_moody_try_enqueue(void *q, void *ptok, void *item);
int peer_moody_try_dequeue(void *q, void *ctok, void **item);
/* Bulk: try_enqueue_bulk is all-or-nothing (returns n or 0);
 * try_dequeue_bulk returns how many it took, up to n. */
size_t peer_moody_try_enqueue_bulk(void *q, void *ptok, void *const *items, size_t n);
size_t peer_moody_try_dequeue_bulk(void *q, void *ctok, void **items, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* SP_BENCH_PEERS_H */
