/* spacesim/spsc.h: bounded single-producer/single-consumer rings of pointers:
 * sp_spsc_t for single items (below) and sp_spsc_batch_t for batches (at the
 * end of this file; 2x sp_spsc_t's batch calls, 0.7x its single-item calls).
 *
 * FastForward-style (Giacomoni et al., PPoPP'08): a slot holding NULL is
 * empty, any other value is an item. Neither side reads the other's index:
 * each learns what it may do from the slots themselves, so the only shared
 * cache lines are the slots, and those move from producer to consumer in
 * whole-line runs of 8 pointers. Producer and consumer state each sit in
 * their own 128-byte block. All `capacity` slots are usable.
 *
 * The batch calls probe ahead as B-Queue does (Wang et al., 2013): the
 * consumer empties slots in order and the producer fills them in order, so
 * one slot seen empty (full) proves every slot before it empty (full). Each
 * side keeps a private limit up to which it knows the slots are free (full),
 * learnt from one probe far ahead, and only probes again when the limit runs
 * out; when the far probe fails it backtracks to nearer slots, so a batch call
 * still returns 0 only when the ring is full (empty). The consumer
 * write-prefetches (PREFETCHW) the lines of its next batch when its limit
 * says they are already full, so they arrive in its cache exclusive, ready
 * for the reads and the NULL stores, while it works on this batch (issue 13:
 * 1.2-1.3x the step-2 ring in the same run, near regime; 2x in the far one).
 *
 * Items are non-NULL pointers (NULL marks an empty slot): sp_spsc_try_push
 * rejects NULL with SP_EINVAL. FIFO. No allocation after init.
 *
 * Threads: exactly one producer thread (try_push*) and one consumer thread
 * (try_pop*) at a time; handing a role to another thread needs a
 * synchronising hand-off (a join, a lock). init/destroy are single-threaded. */
#ifndef SPACESIM_SPSC_H
#define SPACESIM_SPSC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "spacesim/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sp__spsc_side {
    _Atomic size_t pos;     /* written only by this side (relaxed); read by size_approx */
    _Atomic(void *) *slots; /* read-only after init */
    size_t mask;            /* read-only after init: capacity - 1 */
    size_t limit;           /* this side only: slots [pos, limit) are known free (producer) or
                             * full (consumer); stale (limit - pos > capacity) once pos passes it */
};

/* How far the producer's batch probe looks: a quarter of the ring, so one
 * probe covers 8 batches of 32 in a ring of 1024 and the probed line is far
 * from the consumer's. The consumer probes 4 batches ahead. */
#define SP__SPSC_PROD_PROBE_DIV 4
#define SP__SPSC_CONS_PROBE_MUL 4

/* Write-prefetch: fetch the line exclusive. x86 has PREFETCHW on every AMD
 * and on Intel since Broadwell (a no-op on older ones); GCC only emits it for
 * __builtin_prefetch(p, 1) with -mprfchw, so it is written out here. */
#if defined(__x86_64__) || defined(__i386__)
#define SP__PREFETCHW(p) __asm__("prefetchw %0" : : "m"(*(const char *)(p)))
#else
#define SP__PREFETCHW(p) __builtin_prefetch((p), 1)
#endif

/* Slots [pos, limit) this side may use without a probe: 0 when limit is
 * stale (single-item calls moved pos past it). */
SP_INLINE size_t sp__spsc_known(const struct sp__spsc_side *s, size_t pos) {
    size_t known = s->limit - pos;
    return known > s->mask + 1 ? 0 : known;
}

/* Public body for the inline fast paths; fields are private. Any alignment
 * works: the padding keeps the two sides 128 bytes apart regardless. */
typedef struct sp_spsc {
    unsigned char sp__pad_front[SP_FALSE_SHARING_RANGE];
    union {
        struct sp__spsc_side s;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } prod;
    union {
        struct sp__spsc_side s;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } cons;
    size_t capacity;
    size_t mem_size;
    sp_allocator_t alloc;
} sp_spsc_t;

/* Initialise an empty ring of `capacity` pointer slots (power of two >= 2,
 * typical 1024). alloc: NULL means sp_allocator_default(). Allocates
 * capacity * 8 bytes once. Returns 0, SP_EINVAL, SP_EOVERFLOW or SP_ENOMEM
 * (nothing allocated on failure). Single-threaded. */
SP_API int sp_spsc_init(sp_spsc_t *q, size_t capacity, const sp_allocator_t *alloc);

/* Free the slots; queued pointers are dropped (not owned). NULL or a zeroed
 * struct is accepted. No other call may overlap it. */
SP_API void sp_spsc_destroy(sp_spsc_t *q);

/* Queued items at some instant during the call, in [0, capacity]; exact when
 * neither side is active. Threads: any. */
SP_API size_t sp_spsc_size_approx(const sp_spsc_t *q);

/* The capacity given to sp_spsc_init. Threads: any. */
SP_API size_t sp_spsc_capacity(const sp_spsc_t *q);

/* Push p (non-NULL). Returns 0, SP_EAGAIN when full, SP_EINVAL when p is
 * NULL. Producer thread only. Wait-free, inline, no allocation. */
SP_INLINE int sp_spsc_try_push(sp_spsc_t *q, void *p) {
    struct sp__spsc_side *s = &q->prod.s;
    if (SP_UNLIKELY(p == NULL)) return SP_EINVAL;
    /* Relaxed: our own index, written only by this thread. */
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed);
    _Atomic(void *) *slot = &s->slots[pos & s->mask];
    /* Relaxed: the consumer's NULL store and our later store are to the same
     * object, so coherence alone orders its read of the old item before our
     * overwrite; the item is the slot's own value, nothing else to acquire. */
    if (atomic_load_explicit(slot, memory_order_relaxed) != NULL) return SP_EAGAIN;
    /* Release: whatever the producer wrote into *p before pushing is visible
     * to the consumer that acquires this slot. Pairs with the acquire load in
     * sp_spsc_try_pop. With relaxed the consumer could see the pointer but
     * stale contents of the object it points to. */
    atomic_store_explicit(slot, p, memory_order_release);
    atomic_store_explicit(&s->pos, pos + 1, memory_order_relaxed); /* own index; read only by size_approx */
    return 0;
}

/* Pop the oldest item into *out. Returns 0, or SP_EAGAIN when empty (*out
 * untouched). Consumer thread only. Wait-free, inline. */
SP_INLINE int sp_spsc_try_pop(sp_spsc_t *q, void **out) {
    struct sp__spsc_side *s = &q->cons.s;
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* own index */
    _Atomic(void *) *slot = &s->slots[pos & s->mask];
    /* Acquire: pairs with the producer's release store of the item, so the
     * pointed-to data is visible. */
    void *p = atomic_load_explicit(slot, memory_order_acquire);
    if (p == NULL) return SP_EAGAIN;
    /* Release: hands the slot back. For try_push, same-object coherence would
     * do; release is for try_push_n, which infers from one later slot seen
     * empty that this one is empty too (a plain MOV on x86). */
    atomic_store_explicit(slot, NULL, memory_order_release);
    atomic_store_explicit(&s->pos, pos + 1, memory_order_relaxed); /* own index */
    *out = p;
    return 0;
}

/* Push items[0..k) for the largest k <= n that fits; returns k. NULL items
 * are not allowed (the batch stops before the first NULL). Producer only.
 * Wait-free, inline. Cost: stores only while the known-free limit lasts; one
 * probe load per quarter ring otherwise (two or a slot-by-slot scan when the
 * ring is nearly full). */
SP_INLINE size_t sp_spsc_try_push_n(sp_spsc_t *q, void *const *items, size_t n) {
    struct sp__spsc_side *s = &q->prod.s;
    _Atomic(void *) *const slots = s->slots;
    const size_t mask = s->mask;
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* own index */
    if (n > mask + 1) n = mask + 1;
    size_t known = sp__spsc_known(s, pos);
    if (known < n) {
        size_t far = (mask + 1) / SP__SPSC_PROD_PROBE_DIV;
        if (far < n) far = n;
        /* Acquire, here and below: pairs with the consumer's release store of
         * NULL. The consumer empties slots in order, so the slot seen empty
         * proves every slot before it empty, and its reads of their old items
         * happen before our overwrites. With relaxed, a slot before the probed
         * one could still hold an unread item for all we know (on weak memory
         * the NULL stores may become visible out of order). */
        if (atomic_load_explicit(&slots[(pos + far - 1) & mask], memory_order_acquire) == NULL) {
            known = far;
        } else if (atomic_load_explicit(&slots[(pos + n - 1) & mask], memory_order_acquire) == NULL) {
            known = n;
        } else {
            /* Nearly full: take the free prefix slot by slot (acquire, as above). */
            known = 0;
            while (known < n && atomic_load_explicit(&slots[(pos + known) & mask], memory_order_acquire) == NULL)
                known++;
        }
        s->limit = pos + known;
    }
    size_t k = 0;
    for (; k < n && k < known && items[k] != NULL; k++) {
        /* Release: publishes the item's pointee and, because items are stored
         * in order, every earlier item of this batch, to the consumer that
         * acquires this slot or a later one. With relaxed the consumer could
         * see the pointer but stale contents of the object. */
        atomic_store_explicit(&slots[(pos + k) & mask], items[k], memory_order_release);
    }
    atomic_store_explicit(&s->pos, pos + k, memory_order_relaxed); /* own index; read only by size_approx */
    return k;
}

/* Pop up to max items into out[0..k), oldest first; returns k (0 only when
 * the ring is empty). Consumer only. Wait-free, inline. Cost: loads of the
 * batch's slots and their NULL stores while the known-full limit lasts; a
 * probe 4 batches ahead otherwise, backtracking (at most log2(max) + 2 loads)
 * when fewer than max items are there. */
SP_INLINE size_t sp_spsc_try_pop_n(sp_spsc_t *q, void **out, size_t max) {
    struct sp__spsc_side *s = &q->cons.s;
    _Atomic(void *) *const slots = s->slots;
    const size_t mask = s->mask;
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* own index */
    if (max > mask + 1) max = mask + 1; /* never scan a slot twice */
    if (max == 0) return 0;
    size_t known = sp__spsc_known(s, pos);
    if (known < max) {
        size_t far = max * SP__SPSC_CONS_PROBE_MUL;
        if (far > mask + 1 || far / SP__SPSC_CONS_PROBE_MUL != max) far = mask + 1;
        /* Acquire, in every probe: pairs with the producer's release store of
         * the item; the producer fills slots in order, so the slot seen full
         * proves every slot before it full and their items (and pointees)
         * visible. With relaxed we could read a slot before its item lands. */
        if (far > max && atomic_load_explicit(&slots[(pos + far - 1) & mask], memory_order_acquire) != NULL) {
            known = far;
        } else if (atomic_load_explicit(&slots[(pos + max - 1) & mask], memory_order_acquire) != NULL) {
            known = max;
        } else {
            /* Fewer than max: find the end of the full prefix by halving.
             * lo slots are known full; hi bounds the count as seen by the
             * probe above, which the producer may have passed since (then lo
             * can exceed hi: the loop must test lo < hi, not hi - lo). */
            size_t lo = known, hi = max - 1;
            if (lo == 0) {
                if (atomic_load_explicit(&slots[pos & mask], memory_order_acquire) == NULL) return 0; /* empty */
                lo = 1;
            }
            while (lo < hi) {
                size_t mid = lo + (hi - lo + 1) / 2; /* probe slot pos + mid - 1 */
                if (atomic_load_explicit(&slots[(pos + mid - 1) & mask], memory_order_acquire) != NULL)
                    lo = mid;
                else
                    hi = mid - 1;
            }
            known = lo;
        }
        s->limit = pos + known;
    }
    size_t k = known < max ? known : max;
    for (size_t i = 0; i < k; i++) {
        /* Relaxed: these slots are below the limit, learnt from an acquire
         * load of this slot or a later one earlier in this thread. */
        out[i] = atomic_load_explicit(&slots[(pos + i) & mask], memory_order_relaxed);
    }
    for (size_t i = 0; i < k; i++) {
        /* Release: our read of the item happens before the producer's
         * overwrite, and (stores in order) so do the earlier NULL stores: the
         * producer infers a whole run of free slots from one probe. */
        atomic_store_explicit(&slots[(pos + i) & mask], NULL, memory_order_release);
    }
    atomic_store_explicit(&s->pos, pos + k, memory_order_relaxed); /* own index */
    /* The next batch's lines, if the limit says they are full already: fetch
     * them exclusive now (we will read them, then write NULL into them). Only
     * known-full lines: prefetching a line the producer is still filling
     * would steal it from under its stores. */
    size_t ahead = sp__spsc_known(s, pos + k);
    if (ahead > max) ahead = max;
    for (size_t i = 0; i < ahead; i += 8) SP__PREFETCHW(&slots[(pos + k + i) & mask]);
    return k;
}

/* ---------------------------------------------------------------- sp_spsc_batch_t
 *
 * The same contract as sp_spsc_t (bounded SPSC ring of pointers, FIFO, each
 * item exactly once, all `capacity` slots usable, no allocation after init),
 * built for batches: Lamport's ring with two free-running indices, each side
 * caching the other's. Use it when items move in batches (try_push_n /
 * try_pop_n of 8 or more); for one item at a time sp_spsc_t is faster (issue
 * 13, same run: this ring's single-item path is ~0.7x sp_spsc_t's).
 *
 * Why a second ring (measured, issue 13): sp_spsc_t's consumer stores NULL
 * into every slot it empties, so each slot line crosses between the cores
 * twice per lap (items one way, NULLs back) and the producer's probes read
 * lines the consumer is working on. DPDK's sp/sc ring only ever has the
 * consumer read the slots, and that alone made it faster than sp_spsc_t's
 * batch calls. Here the slots also go one way; in addition:
 *  - each side reads the other's index only when its cached copy says full
 *    (producer) or fewer than `max` items (consumer), where DPDK reads it on
 *    every call;
 *  - a batch call publishes its whole batch with one release store of its
 *    index;
 *  - each side's private state (its position, its cached copy of the other's
 *    index) and each published index sit in four separate 128-byte blocks, so
 *    no write to private state invalidates a line the other side reads;
 *  - the consumer prefetches the slot lines of its next batch when its
 *    cached index says they are already published.
 * Items may be any pointer value, NULL included (no slot value means empty).
 *
 * Threads: exactly one producer thread (try_push*) and one consumer thread
 * (try_pop*) at a time; handing a role to another thread needs a
 * synchronising hand-off (a join, a lock). init/destroy are single-threaded. */

struct sp__spsc_batch_side {
    size_t pos;    /* this side's next position; private */
    size_t cached; /* the other side's published index, as last read; private */
    void **slots;  /* read-only after init (the pointer; the slots are the ring) */
    size_t mask;   /* read-only after init: capacity - 1 */
};

typedef struct sp_spsc_batch {
    unsigned char sp__pad_front[SP_FALSE_SHARING_RANGE];
    union {
        struct sp__spsc_batch_side s;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } prod; /* producer's private block */
    union {
        _Atomic size_t tail; /* written by the producer (release), read by the consumer */
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } pub_prod;
    union {
        struct sp__spsc_batch_side s;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } cons; /* consumer's private block */
    union {
        _Atomic size_t head; /* written by the consumer (release), read by the producer */
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } pub_cons;
    size_t capacity;
    size_t mem_size;
    sp_allocator_t alloc;
} sp_spsc_batch_t;

/* Initialise an empty ring of `capacity` pointer slots (power of two >= 2,
 * typical 1024). alloc: NULL means sp_allocator_default(). Allocates
 * capacity * 8 bytes once. Returns 0, SP_EINVAL, SP_EOVERFLOW or SP_ENOMEM
 * (nothing allocated on failure). Single-threaded. */
SP_API int sp_spsc_batch_init(sp_spsc_batch_t *q, size_t capacity, const sp_allocator_t *alloc);

/* Free the slots; queued pointers are dropped (not owned). NULL or a zeroed
 * struct is accepted. No other call may overlap it. */
SP_API void sp_spsc_batch_destroy(sp_spsc_batch_t *q);

/* Queued items at some instant during the call, in [0, capacity]; exact when
 * neither side is active. Threads: any. */
SP_API size_t sp_spsc_batch_size_approx(const sp_spsc_batch_t *q);

/* The capacity given to sp_spsc_batch_init. Threads: any. */
SP_API size_t sp_spsc_batch_capacity(const sp_spsc_batch_t *q);

/* Push items[0..k) for the largest k <= n that fits; returns k (0 only when
 * the ring was full when the consumer's index was read). Producer thread
 * only. Wait-free, inline, no allocation. Cost: k slot stores and one
 * release store; one acquire load of the consumer's index when the cached
 * copy leaves fewer than n slots free. */
SP_INLINE size_t sp_spsc_batch_try_push_n(sp_spsc_batch_t *q, void *const *items, size_t n) {
    struct sp__spsc_batch_side *s = &q->prod.s;
    const size_t cap = s->mask + 1, pos = s->pos;
    size_t room = cap - (pos - s->cached);
    if (room < n) {
        /* Acquire: pairs with the consumer's release store of head in
         * sp_spsc_batch_try_pop_n: its reads of the slots below head happen
         * before our overwrites of them. With relaxed, on weak memory we
         * could overwrite a slot the consumer has not read yet. */
        s->cached = atomic_load_explicit(&q->pub_cons.head, memory_order_acquire);
        room = cap - (pos - s->cached);
        if (room < n) n = room;
    }
    void **const slots = s->slots;
    const size_t mask = s->mask;
    /* Plain stores: the slots [pos, pos + n) are ours until the release
     * below publishes them; the consumer reads none of them before. */
    for (size_t i = 0; i < n; i++) slots[(pos + i) & mask] = items[i];
    s->pos = pos + n;
    /* Release: publishes the n slot stores above (and whatever the producer
     * wrote into the pointees) to the consumer's acquire load of tail. With
     * relaxed the consumer could read a slot before its item lands. One
     * store per batch: the whole batch becomes visible at once. */
    atomic_store_explicit(&q->pub_prod.tail, pos + n, memory_order_release);
    return n;
}

/* Pop up to max items into out[0..k), oldest first; returns k (0 only when
 * the ring was empty when the producer's index was read). Consumer thread
 * only. Wait-free, inline. Cost: k slot loads and one release store; one
 * acquire load of the producer's index when the cached copy shows fewer than
 * max items; a read prefetch of the next batch's slot lines when they are
 * known published. */
SP_INLINE size_t sp_spsc_batch_try_pop_n(sp_spsc_batch_t *q, void **out, size_t max) {
    struct sp__spsc_batch_side *s = &q->cons.s;
    const size_t pos = s->pos;
    size_t avail = s->cached - pos;
    if (avail < max) {
        /* Acquire: pairs with the producer's release store of tail in
         * sp_spsc_batch_try_push_n, so the slots below tail hold their items
         * (and the pointees are visible). With relaxed we could read a slot
         * before its item lands. */
        s->cached = atomic_load_explicit(&q->pub_prod.tail, memory_order_acquire);
        avail = s->cached - pos;
        if (avail < max) max = avail;
    }
    void **const slots = s->slots;
    const size_t mask = s->mask;
    /* Plain loads: slots below the tail acquired above (or earlier in this
     * thread) are published and the producer does not touch them until our
     * release of head passes them. */
    for (size_t i = 0; i < max; i++) out[i] = slots[(pos + i) & mask];
    s->pos = pos + max;
    /* Release: our reads of the slots above happen before the producer's
     * overwrites, which it makes only after acquiring a head past them. With
     * relaxed, on weak memory the producer could overwrite a slot before our
     * load of it. One store per batch. */
    atomic_store_explicit(&q->pub_cons.head, pos + max, memory_order_release);
    /* The next batch's lines, when the cached tail says they are published:
     * start their transfer now, so the next call finds them here (a read
     * prefetch: we only read slots). Lines not yet published are left alone:
     * prefetching one would pull it from under the producer's stores. */
    size_t ahead = s->cached - (pos + max);
    if (ahead > max) ahead = max;
    for (size_t i = 0; i < ahead; i += 8) __builtin_prefetch(&slots[(pos + max + i) & mask], 0);
    return max;
}

/* Push p (any value, NULL included). Returns 0, or SP_EAGAIN when full.
 * Producer thread only. Wait-free, inline. One release store per item. */
SP_INLINE int sp_spsc_batch_try_push(sp_spsc_batch_t *q, void *p) {
    return sp_spsc_batch_try_push_n(q, &p, 1) == 1 ? 0 : SP_EAGAIN;
}

/* Pop the oldest item into *out. Returns 0, or SP_EAGAIN when empty (*out
 * untouched). Consumer thread only. Wait-free, inline. */
SP_INLINE int sp_spsc_batch_try_pop(sp_spsc_batch_t *q, void **out) {
    return sp_spsc_batch_try_pop_n(q, out, 1) == 1 ? 0 : SP_EAGAIN;
}

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_SPSC_H */
