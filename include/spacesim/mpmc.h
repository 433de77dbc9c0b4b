/* spacesim/mpmc.h: bounded lock-free multi-producer/multi-consumer queue.
 *
 * A power-of-two ring of cells, each cell holding a sequence number and one
 * element stored by value (Dmitry Vyukov's bounded MPMC queue). Producers
 * claim a position by CAS on `tail`, consumers by CAS on `head`; the per-cell
 * sequence number says whether the cell is free for the lap of a given
 * position (seq == pos), full (seq == pos + 1) or still in use by the previous
 * lap. So:
 *  - every one of the `capacity` cells is usable (no wasted slot);
 *  - a producer never overwrites a cell whose consumer has not finished copying
 *    it out (the consumer publishes seq = pos + capacity only after its copy);
 *  - a failed CAS only means another thread moved the index forward; the
 *    loser re-reads and retries, nobody is ever left behind (no livelock);
 *  - `head` and `tail` are free-running counters, compared only through their
 *    unsigned difference, so sizes stay correct across ring and counter wrap;
 *  - no allocation per item: elements are copied into the cells.
 * FIFO: items of one producer are dequeued in the order that producer
 * enqueued them (positions are claimed in order and consumed in order).
 *
 * Progress: producers never wait for producers, consumers never wait for
 * consumers; a consumer sees a cell as empty (SP_EAGAIN) while the producer
 * that claimed it has not yet published it (a descheduled producer delays the
 * items behind it, it never corrupts them).
 *
 * Layout: the producer index and the consumer index each live in their own
 * 128-byte block (adjacent-line prefetch pulls 128-byte pairs on Zen), each
 * with a read-only copy of the ring geometry, so a push touches the tail
 * block and one cell, a pop the head block and one cell. Cells are NOT padded:
 * pointer-sized items use 16-byte cells (seq + pointer).
 *
 * Threads: all try_* functions may be called by any number of threads at
 * once. init/destroy are single-threaded (no other call may overlap them).
 * None of the push/pop functions allocate or block. */
#ifndef SPACESIM_MPMC_H
#define SPACESIM_MPMC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "spacesim/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_mpmc sp_mpmc_t;

/* Bytes in front of the element inside a cell (the sequence number). */
#define SP_MPMC_CELL_HDR sizeof(size_t)

/* One side of the queue: an index written by that side only, plus read-only
 * copies of the geometry so the hot path touches a single block. */
struct sp__mpmc_side {
    _Atomic size_t pos;   /* producer side: tail (next position to push); consumer side: head */
    unsigned char *cells; /* read-only after init: the cell array */
    size_t mask;          /* read-only after init: capacity - 1 */
    size_t cell_size;     /* read-only after init: bytes per cell */
    size_t elem_size;     /* read-only after init */
};

/* The struct body is public only so the pointer fast paths below can be
 * inline; fields are private: use the functions. Embed it or allocate it with
 * any alignment (the padding does not depend on the struct's alignment). */
struct sp_mpmc {
    unsigned char sp__pad_front[SP_FALSE_SHARING_RANGE];
    union {
        struct sp__mpmc_side s;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } prod;
    union {
        struct sp__mpmc_side s;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } cons;
    /* Cold fields: read only by size_approx/capacity/destroy. */
    size_t capacity;
    size_t elem_size;
    void *mem;       /* allocation holding the cells */
    size_t mem_size; /* its size, for the allocator's free */
    sp_allocator_t alloc;
};

/* Initialise an empty queue of `capacity` cells holding elements of
 * `elem_size` bytes each (copied in and out by value).
 * capacity: a power of two >= 2 (typical 1024); elem_size >= 1 (8 for
 * pointers, ~128 for bus messages). alloc: NULL means sp_allocator_default().
 * Returns 0, SP_EINVAL (bad capacity/elem_size or q == NULL), SP_EOVERFLOW (the
 * cell array size overflows), or SP_ENOMEM; on failure *q is not usable and
 * nothing is allocated. Allocates once: capacity * cell size bytes, 128-byte
 * aligned, where cell size = 8 + elem_size rounded up to 8 (to 64 when
 * elem_size > 56). Single-threaded. */
SP_API int sp_mpmc_init(sp_mpmc_t *q, size_t capacity, size_t elem_size, const sp_allocator_t *alloc);

/* Free the cells. Elements still queued are dropped (they are plain bytes; the
 * queue owns nothing they point to). No other call may overlap it; *q must be
 * re-initialised before reuse. NULL or a zeroed struct is accepted. */
SP_API void sp_mpmc_destroy(sp_mpmc_t *q);

/* Copy elem_size bytes from *elem into the queue.
 * Returns 0, or SP_EAGAIN when the queue is full (nothing was written).
 * Threads: any number of producers and consumers at once. Lock-free for
 * producers among themselves; never allocates or blocks. Ownership: the bytes
 * are copied; the caller keeps elem. Cost: one CAS plus one cell copy. */
SP_API int sp_mpmc_try_push(sp_mpmc_t *q, const void *elem);

/* Copy the oldest element into *out (elem_size bytes) and remove it.
 * Returns 0, or SP_EAGAIN when the queue is empty (or the next element is
 * claimed but not yet published by its producer); *out is then untouched.
 * Threads: any. Never allocates or blocks. */
SP_API int sp_mpmc_try_pop(sp_mpmc_t *q, void *out);

/* Push elems[0..k) for the largest k <= n that fits right now, with one CAS
 * for the whole prefix (the k elements occupy consecutive positions, so
 * they come out contiguous and in order). Returns k (0 when full or n == 0).
 * elems is an array of n elements of elem_size bytes. Threads: any. Never
 * allocates or blocks. */
SP_API size_t sp_mpmc_try_push_n(sp_mpmc_t *q, const void *elems, size_t n);

/* Pop up to max elements into out[0..k) (an array of elem_size-byte
 * elements), oldest first, with one CAS for the batch. Returns k (0 when
 * empty or max == 0). Threads: any. Never allocates or blocks. */
SP_API size_t sp_mpmc_try_pop_n(sp_mpmc_t *q, void *out, size_t max);

/* Number of queued elements at some instant during the call, in
 * [0, capacity]. Approximate while other threads push or pop (it may
 * count elements whose push or pop is still in progress). Threads: any. */
SP_API size_t sp_mpmc_size_approx(const sp_mpmc_t *q);

/* The capacity given to sp_mpmc_init (every cell is usable). Threads: any. */
SP_API size_t sp_mpmc_capacity(const sp_mpmc_t *q);

/* ------------------------------------------------------------------------
 * Pointer fast path: unchecked twins of try_push/try_pop for queues created
 * with elem_size == sizeof(void *). They are inline, copy the pointer with a
 * plain store (no memcpy call), and require elem_size == sizeof(void *)
 * (checked only by SP_ASSERT under --enable-debug; on any other queue the
 * behaviour is undefined). Same contract otherwise: 0 or SP_EAGAIN, any
 * threads, never block, never allocate. The value may be any pointer,
 * including NULL. */

SP_INLINE int sp_mpmc_try_push_ptr(sp_mpmc_t *q, void *p) {
    struct sp__mpmc_side *s = &q->prod.s;
    SP_ASSERT(s->elem_size == sizeof(void *));
    /* Relaxed: tail is only a hint for which position to try; the CAS below
     * validates it and the cell's seq (acquire) orders the payload. */
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed);
    for (;;) {
        /* Pointer queues have 16-byte cells (asserted at init): a shift, not
         * a multiply by cell_size, and one load fewer (issue 13). */
        unsigned char *cell = s->cells + ((pos & s->mask) << 4);
        _Atomic size_t *seqp = (_Atomic size_t *)(void *)cell;
        /* Acquire: pairs with the consumer's release store of seq = pos in
         * sp_mpmc_try_pop_ptr(); it orders the consumer's read of the old
         * payload before our overwrite below. With relaxed, our write could
         * land before the previous lap's consumer has read the cell. */
        size_t seq = atomic_load_explicit(seqp, memory_order_acquire);
        intptr_t dif = (intptr_t)(seq - pos);
        if (dif == 0) {
            /* Claim position pos. Relaxed on both outcomes: the claim only
             * decides ownership among producers; nothing is published through
             * tail (payload visibility goes through seq). On failure pos is
             * reloaded with the current tail, so a loser never stays behind. */
            if (atomic_compare_exchange_weak_explicit(&s->pos, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                *(void **)(void *)(cell + SP_MPMC_CELL_HDR) = p;
                /* Release: publishes the payload written just above to the
                 * consumer that acquires seq == pos + 1. With relaxed, a
                 * consumer could read the previous lap's pointer. */
                atomic_store_explicit(seqp, pos + 1, memory_order_release);
                return 0;
            }
        } else if (dif < 0) {
            return SP_EAGAIN; /* the cell still holds the previous lap: full */
        } else {
            /* Another producer took pos already; catch up. Relaxed: as above. */
            pos = atomic_load_explicit(&s->pos, memory_order_relaxed);
        }
    }
}

SP_INLINE int sp_mpmc_try_pop_ptr(sp_mpmc_t *q, void **out) {
    struct sp__mpmc_side *s = &q->cons.s;
    SP_ASSERT(s->elem_size == sizeof(void *));
    /* Relaxed: head is a hint validated by the CAS; see try_push_ptr. */
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed);
    for (;;) {
        unsigned char *cell = s->cells + ((pos & s->mask) << 4); /* 16-byte cells, as in push */
        _Atomic size_t *seqp = (_Atomic size_t *)(void *)cell;
        /* Acquire: pairs with the producer's release store of seq = pos + 1;
         * makes the payload visible. With relaxed we could read a stale
         * pointer. */
        size_t seq = atomic_load_explicit(seqp, memory_order_acquire);
        intptr_t dif = (intptr_t)(seq - (pos + 1));
        if (dif == 0) {
            /* Claim among consumers; relaxed for the same reason as the push
             * CAS (ordering is carried by seq). */
            if (atomic_compare_exchange_weak_explicit(&s->pos, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                *out = *(void **)(void *)(cell + SP_MPMC_CELL_HDR);
                /* Release: our read of the payload above happens before the
                 * next lap's producer (which acquires seq == pos + capacity)
                 * overwrites it. With relaxed the producer could overwrite the
                 * cell before we have read it (the seed's defect). */
                atomic_store_explicit(seqp, pos + s->mask + 1, memory_order_release);
                return 0;
            }
        } else if (dif < 0) {
            return SP_EAGAIN; /* not yet published for this lap: empty */
        } else {
            pos = atomic_load_explicit(&s->pos, memory_order_relaxed);
        }
    }
}

/* ------------------------------------------------------------------------
 * Burst mode: sp_mpmc_burst_t, a head/tail ring of pointers (DPDK rte_ring's
 * design), for callers that move items in runs of ~16-64 and accept its
 * weaker progress.
 *
 * Each side has a head (next position to reserve) and a tail (positions
 * before it are finished and visible to the other side). A burst reserves
 * its run with one CAS on its own head (a plain store in single mode), copies
 * the pointers into 8-byte slots (half the lines of sp_mpmc's 16-byte cells,
 * and no per-cell sequence to read and write), then publishes the whole run
 * with one store to its own tail. Each side also keeps a private cached copy
 * of the other side's tail and reads the other side's line only when that
 * copy says there is not enough room (producer) or not enough items
 * (consumer): in the steady state a burst touches its own index line and the
 * slot lines, and the other side's index line at most once.
 *
 * The price, which sp_mpmc does not pay: tails advance in reservation order,
 * so a producer preempted between its reservation and its tail store blocks
 * every later producer's tail store (they spin, yielding, until it resumes)
 * and keeps the consumers from seeing any item pushed after its own; the
 * same holds for a preempted consumer and the producers. So it is not
 * lock-free when several threads share a side; with one thread per side
 * (or `single` mode) it is wait-free. Use sp_mpmc when a descheduled thread
 * must not stall the others.
 *
 * Items: any pointer value, NULL included. FIFO per producer (runs are
 * contiguous and in reservation order). No allocation after init.
 * Threads: with single == 0 any number of producers and consumers; with
 * single != 0 exactly one producer thread and one consumer thread at a time
 * (no CAS, no tail wait: DPDK's sp/sc mode). init/destroy single-threaded. */

struct sp__mpmc_burst_side {
    _Atomic size_t head;  /* next position to reserve; written by this side only */
    _Atomic size_t tail;  /* positions < tail are finished; read by the other side */
    _Atomic size_t other; /* this side's cached copy of the other side's tail */
    void **slots;         /* read-only after init */
    size_t mask;          /* read-only after init: capacity - 1 */
    int single;           /* read-only after init: one thread on this side */
};

/* Public body so callers can embed it; fields are private. The two sides
 * are 128 bytes apart whatever the struct's alignment. */
typedef struct sp_mpmc_burst {
    unsigned char sp__pad_front[SP_FALSE_SHARING_RANGE];
    union {
        struct sp__mpmc_burst_side s;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } prod;
    union {
        struct sp__mpmc_burst_side s;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } cons;
    size_t capacity;
    size_t mem_size;
    sp_allocator_t alloc;
} sp_mpmc_burst_t;

/* Initialise an empty burst ring of `capacity` pointer slots (a power of two
 * >= 2, typical 1024; every slot is usable). single != 0: one producer and
 * one consumer thread only. alloc: NULL means sp_allocator_default().
 * Allocates capacity * 8 bytes once (128-byte aligned). Returns 0, SP_EINVAL,
 * SP_EOVERFLOW or SP_ENOMEM (nothing allocated on failure). Single-threaded. */
SP_API int sp_mpmc_burst_init(sp_mpmc_burst_t *q, size_t capacity, int single, const sp_allocator_t *alloc);

/* Free the slots; queued pointers are dropped (not owned). NULL or a zeroed
 * struct is accepted. No other call may overlap it. */
SP_API void sp_mpmc_burst_destroy(sp_mpmc_burst_t *q);

/* Push items[0..k) for the largest k <= n that fits now; returns k (0 when
 * full or n == 0). The k items occupy consecutive positions. Threads: see
 * above (any producer, or the one producer in single mode). Never allocates;
 * may spin (yielding) while an earlier producer finishes its burst. */
SP_API size_t sp_mpmc_burst_push(sp_mpmc_burst_t *q, void *const *items, size_t n);

/* Pop up to max items into out[0..k), oldest first; returns k (0 when empty
 * or max == 0). Threads and waiting: as sp_mpmc_burst_push, for consumers. */
SP_API size_t sp_mpmc_burst_pop(sp_mpmc_burst_t *q, void **out, size_t max);

/* Items queued at some instant during the call, in [0, capacity]; exact when
 * no burst is in progress. Threads: any. */
SP_API size_t sp_mpmc_burst_size_approx(const sp_mpmc_burst_t *q);

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_MPMC_H */
