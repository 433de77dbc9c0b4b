/* spacesim/spsc.h: bounded single-producer/single-consumer ring of pointers.
 *
 * FastForward-style (Giacomoni et al., PPoPP'08): a slot holding NULL is
 * empty, any other value is an item. The producer checks only the slot it is
 * about to fill, the consumer only the slot it is about to empty; neither
 * reads the other's index, so in the steady state the only shared cache lines
 * are the slots themselves, and those move from producer to consumer in
 * whole-line batches of 8 pointers. Producer and consumer state each sit in
 * their own 128-byte block. All `capacity` slots are usable.
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
};

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
    /* Relaxed: hands the slot back; see try_push (same-object coherence). */
    atomic_store_explicit(slot, NULL, memory_order_relaxed);
    atomic_store_explicit(&s->pos, pos + 1, memory_order_relaxed); /* own index */
    *out = p;
    return 0;
}

/* Push items[0..k) for the largest k <= n that fits; returns k. NULL items
 * are not allowed (the batch stops before the first NULL). Producer only.
 * Checks the last slot of the batch first: the consumer empties slots in
 * order, so if that slot is empty, every slot before it is. */
SP_INLINE size_t sp_spsc_try_push_n(sp_spsc_t *q, void *const *items, size_t n) {
    struct sp__spsc_side *s = &q->prod.s;
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* own index */
    size_t k = 0;
    /* Relaxed: same-object coherence with the consumer's NULL stores. */
    if (n > 0 && n <= s->mask + 1 &&
        atomic_load_explicit(&s->slots[(pos + n - 1) & s->mask], memory_order_relaxed) == NULL) {
        for (; k < n && items[k] != NULL; k++) {
            /* Release: publishes the item's pointee, as in try_push. */
            atomic_store_explicit(&s->slots[(pos + k) & s->mask], items[k], memory_order_release);
        }
    } else {
        for (; k < n && items[k] != NULL; k++) {
            _Atomic(void *) *slot = &s->slots[(pos + k) & s->mask];
            if (atomic_load_explicit(slot, memory_order_relaxed) != NULL) break; /* full; coherence */
            atomic_store_explicit(slot, items[k], memory_order_release);        /* publish, as above */
        }
    }
    atomic_store_explicit(&s->pos, pos + k, memory_order_relaxed); /* own index */
    return k;
}

/* Pop up to max items into out[0..k), oldest first; returns k. Consumer only. */
SP_INLINE size_t sp_spsc_try_pop_n(sp_spsc_t *q, void **out, size_t max) {
    struct sp__spsc_side *s = &q->cons.s;
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* own index */
    size_t k = 0;
    if (max > s->mask + 1) max = s->mask + 1; /* never scan a slot twice */
    for (; k < max; k++) {
        /* Acquire: pairs with the producer's release store of this item. */
        void *p = atomic_load_explicit(&s->slots[(pos + k) & s->mask], memory_order_acquire);
        if (p == NULL) break;
        out[k] = p;
    }
    for (size_t i = 0; i < k; i++) {
        /* Relaxed: hands each slot back (same-object coherence, see try_push). */
        atomic_store_explicit(&s->slots[(pos + i) & s->mask], NULL, memory_order_relaxed);
    }
    atomic_store_explicit(&s->pos, pos + k, memory_order_relaxed); /* own index */
    return k;
}

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_SPSC_H */
