/* stack.c: tagged-index Treiber stack over a type-stable node pool.
 * Design and ABA argument: include/spacesim/stack.h.
 *
 * Both the value stack and the free list are "tagged lists": a 64-bit word
 * {index low 32, tag high 32} naming the first node, each node holding the
 * index of the next. Invariants:
 *  - a node is on exactly one of: the value stack, the free list, a cache, or
 *    owned by the one thread between its pop and its push;
 *  - a node's `next` is written only by the thread that owns it (before its
 *    push), and `value` likewise; readers that do not own a node may read its
 *    `next` (that is why it is atomic) but act on it only if their CAS proves
 *    the list did not change;
 *  - every successful CAS on a list word increments the tag, so an unchanged
 *    word means an unchanged list. */
#include "spacesim/stack.h"

#include <sched.h>
#include <string.h>

#define NIL 0xFFFFFFFFu

/* A spin-wait hint (x86 PAUSE, Arm YIELD). */
#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ volatile("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* Most pauses after consecutive failed CASes on one list word (issue 13).
 * A failed CAS means another thread just changed the word, so its line is in
 * that thread's cache; retrying at once steals the line back and both threads
 * pay a transfer per operation (ck_stack does so). Backing off exponentially,
 * up to this cap, lets the winner run several operations on a line that stays
 * in its cache, which is what made the spinlock stack faster than every
 * lock-free one. Measured in the same process, 2 threads (bench_stack --quick
 * --rounds 5): caps 16, 32, 64, 128, 256 gave cached 3.8x, 1.7x, 4.6-6.3x, 3.9x,
 * 2.6x ck_stack; 64 kept. It stays lock-free (the loser waits a bounded time
 * because someone else succeeded); what it gives up is fairness over short
 * windows: one thread may complete a run of operations while the other waits. */
#define BACKOFF_MAX 64u

/* After the pause the caller retries with the word its failed CAS returned,
 * without a fresh load: a load would pull the line shared and make the next
 * CAS an upgrade, a second transfer (measured: a reload after the pause gave
 * 73-80 M pairs/s cached against 105-118 without, alternated binaries). */
static inline void cas_backoff(unsigned *b) {
    for (unsigned i = 0; i < *b; i++) CPU_RELAX();
    if (*b < BACKOFF_MAX) *b = *b ? *b * 2 : 1;
}

#define REFILL (SP_STACK_CACHE_MAX / 2)

static inline uint32_t w_idx(uint64_t w) { return (uint32_t)w; }
static inline uint64_t w_make(uint32_t idx, uint64_t old) {
    /* Next tag = old tag + 1 (wrapping in 32 bits). */
    return ((old & 0xFFFFFFFF00000000ull) + 0x100000000ull) | idx;
}

/* Push the owned chain first..last (already linked by next) onto list w. */
static void list_push(sp_stack_t *s, _Atomic uint64_t *w, uint32_t first, uint32_t last) {
    /* Relaxed: only a first guess for the CAS, which validates it. */
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
    unsigned b = 0;
    for (;;) {
        /* Relaxed: we own `last`; the release CAS below publishes this store. */
        atomic_store_explicit(&s->nodes[last].next, w_idx(old), memory_order_relaxed);
        /* Release on success: publishes the chain's next links and values (and,
         * for the free list, our earlier reads of the values) to the thread
         * whose acquire load/CAS in list_pop() takes these nodes. With relaxed
         * a popper could see the index but a stale value or next. Failure:
         * relaxed, we only retry with the fresh word. */
        if (atomic_compare_exchange_weak_explicit(w, &old, w_make(first, old), memory_order_release,
                                                  memory_order_relaxed))
            return;
        cas_backoff(&b);
    }
}

/* Pop one node from list w; returns its index or NIL when empty. */
static uint32_t list_pop(sp_stack_t *s, _Atomic uint64_t *w) {
    /* Acquire: pairs with the release CAS in list_push() that installed this
     * head, so the node's next (and value) written before it are visible. */
    uint64_t old = atomic_load_explicit(w, memory_order_acquire);
    unsigned b = 0;
    for (;;) {
        uint32_t idx = w_idx(old);
        if (idx == NIL) return NIL;
        /* Relaxed: the node is in the pool forever, so this read is safe even
         * if another thread popped it meanwhile; the value read is used only
         * if the CAS shows the word (tag included) unchanged, i.e. the node is
         * still on top and its next is what its pusher published. */
        uint32_t next = atomic_load_explicit(&s->nodes[idx].next, memory_order_relaxed);
        /* Acquire on success: we now own idx and read its value after this;
         * the word we replace is the same one the acquire load synchronised
         * with, acquire here keeps the argument local. Failure: acquire, since
         * the fresh word is used like the initial load (we read its node's
         * next). */
        if (atomic_compare_exchange_weak_explicit(w, &old, w_make(next, old), memory_order_acquire,
                                                  memory_order_acquire))
            return idx;
        cas_backoff(&b);
    }
}

/* Pop up to max nodes from list w with one CAS; stores them in out[] in list
 * order and returns how many. Walking the chain of a list we do not own is
 * safe (type-stable pool; next always holds a valid index or NIL) and the
 * result is used only if the CAS proves the list unchanged. */
static uint32_t list_pop_n(sp_stack_t *s, _Atomic uint64_t *w, uint32_t *out, uint32_t max) {
    /* Acquire: as in list_pop(). */
    uint64_t old = atomic_load_explicit(w, memory_order_acquire);
    unsigned b = 0;
    for (;;) {
        uint32_t k = 0, idx = w_idx(old);
        while (k < max && idx != NIL) {
            out[k++] = idx;
            /* Relaxed: validated by the CAS; see list_pop(). */
            idx = atomic_load_explicit(&s->nodes[idx].next, memory_order_relaxed);
        }
        if (k == 0) return 0;
        /* Acquire on success and failure: as in list_pop(). */
        if (atomic_compare_exchange_weak_explicit(w, &old, w_make(idx, old), memory_order_acquire,
                                                  memory_order_acquire))
            return k;
        cas_backoff(&b);
    }
}

/* The free-list shard of the CPU we run on. sched_getcpu() reads the rseq
 * area that glibc registers (~3 ns); a stale answer after a migration only
 * costs a shared line for a moment. */
static inline _Atomic uint64_t *home_free(sp_stack_t *s, unsigned *home) {
    int cpu = sched_getcpu();
    *home = cpu < 0 ? 0u : (unsigned)cpu & (SP_STACK_FREE_SHARDS - 1);
    return &s->free[*home].w;
}

/* Take one free node: this CPU's shard first, then the others in turn. */
static uint32_t free_pop(sp_stack_t *s) {
    unsigned home;
    uint32_t idx = list_pop(s, home_free(s, &home));
    for (unsigned i = 1; idx == NIL && i < SP_STACK_FREE_SHARDS; i++)
        idx = list_pop(s, &s->free[(home + i) & (SP_STACK_FREE_SHARDS - 1)].w);
    return idx;
}

/* Give the owned chain first..last back to this CPU's shard. */
static void free_push(sp_stack_t *s, uint32_t first, uint32_t last) {
    unsigned home;
    list_push(s, home_free(s, &home), first, last);
}

int sp_stack_init(sp_stack_t *s, size_t capacity, const sp_allocator_t *alloc) {
    if (s == NULL || capacity == 0 || capacity > SP_STACK_MAX_CAPACITY) return SP_EINVAL;
    if (alloc == NULL) alloc = sp_allocator_default();
    size_t bytes;
    if (sp_size_mul(capacity, sizeof(struct sp__stack_node), &bytes) != 0) return SP_EOVERFLOW;
    if (sp_size_add(bytes, SP_CACHELINE - 1, &bytes) != 0) return SP_EOVERFLOW;
    bytes = sp_align_up(bytes, SP_CACHELINE);
    struct sp__stack_node *nodes = alloc->alloc(alloc->ctx, bytes, SP_CACHELINE);
    if (nodes == NULL) return SP_ENOMEM;

    memset(s, 0, sizeof *s);
    s->nodes = nodes;
    s->capacity = (uint32_t)capacity;
    s->mem_size = bytes;
    s->alloc = *alloc;
    /* Single-threaded init: shard j holds the contiguous run of nodes
     * [j * capacity / SHARDS, (j + 1) * capacity / SHARDS), linked in order
     * (a shard may be empty when capacity < SHARDS). */
    for (unsigned j = 0; j < SP_STACK_FREE_SHARDS; j++) {
        uint32_t lo = (uint32_t)((uint64_t)capacity * j / SP_STACK_FREE_SHARDS);
        uint32_t hi = (uint32_t)((uint64_t)capacity * (j + 1) / SP_STACK_FREE_SHARDS);
        for (uint32_t i = lo; i < hi; i++) {
            atomic_init(&nodes[i].next, i + 1 < hi ? i + 1 : NIL);
            nodes[i].value = NULL;
        }
        atomic_init(&s->free[j].w, (uint64_t)(lo < hi ? lo : NIL));
    }
    atomic_init(&s->head.w, (uint64_t)NIL);
    return 0;
}

void sp_stack_destroy(sp_stack_t *s) {
    if (s == NULL || s->nodes == NULL) return;
    s->alloc.free(s->alloc.ctx, s->nodes, s->mem_size, SP_CACHELINE);
    s->nodes = NULL;
}

int sp_stack_push(sp_stack_t *s, void *value) {
    uint32_t idx = free_pop(s);
    if (idx == NIL) return SP_EAGAIN;
    s->nodes[idx].value = value; /* we own idx; published by list_push's release CAS */
    list_push(s, &s->head.w, idx, idx);
    return 0;
}

int sp_stack_pop(sp_stack_t *s, void **out) {
    uint32_t idx = list_pop(s, &s->head.w);
    if (idx == NIL) return SP_EAGAIN;
    *out = s->nodes[idx].value; /* owned since the acquire CAS in list_pop */
    free_push(s, idx, idx);
    return 0;
}

size_t sp_stack_pop_all(sp_stack_t *s, void (*fn)(void *ctx, void *value), void *ctx) {
    /* Detach the whole stack: CAS head -> {NIL, tag+1}. Acquire on the load
     * and on both CAS outcomes: pairs with the release CAS of every push in
     * the chain (a release sequence on the head word), making their values
     * and links visible. */
    uint64_t old = atomic_load_explicit(&s->head.w, memory_order_acquire);
    do {
        if (w_idx(old) == NIL) return 0;
    } while (!atomic_compare_exchange_weak_explicit(&s->head.w, &old, w_make(NIL, old), memory_order_acquire,
                                                    memory_order_acquire));
    uint32_t first = w_idx(old), last = first;
    size_t n = 0;
    for (uint32_t idx = first; idx != NIL;) {
        last = idx;
        /* Relaxed: the chain is ours now; its links were made visible above. */
        uint32_t next = atomic_load_explicit(&s->nodes[idx].next, memory_order_relaxed);
        if (fn != NULL) fn(ctx, s->nodes[idx].value);
        n++;
        idx = next;
    }
    free_push(s, first, last); /* the chain is still linked: one CAS */
    return n;
}

int sp_stack_empty_approx(const sp_stack_t *s) {
    /* Relaxed: a snapshot; nothing is read through it. */
    return w_idx(atomic_load_explicit(&((sp_stack_t *)s)->head.w, memory_order_relaxed)) == NIL;
}

size_t sp_stack_capacity(const sp_stack_t *s) { return s->capacity; }

void sp_stack_cache_init(sp_stack_cache_t *c, sp_stack_t *s) {
    c->stack = s;
    c->n = 0;
}

int sp_stack_push_cached(sp_stack_cache_t *c, void *value) {
    sp_stack_t *s = c->stack;
    if (c->n == 0) {
        unsigned home;
        c->n = list_pop_n(s, home_free(s, &home), c->idx, REFILL);
        for (unsigned i = 1; c->n == 0 && i < SP_STACK_FREE_SHARDS; i++)
            c->n = list_pop_n(s, &s->free[(home + i) & (SP_STACK_FREE_SHARDS - 1)].w, c->idx, REFILL);
        if (c->n == 0) return SP_EAGAIN;
    }
    uint32_t idx = c->idx[--c->n];
    s->nodes[idx].value = value; /* owned; published by list_push's release CAS */
    list_push(s, &s->head.w, idx, idx);
    return 0;
}

/* Give the REFILL oldest cached nodes back to the free list with one CAS. */
static void cache_spill(sp_stack_cache_t *c, uint32_t k) {
    sp_stack_t *s = c->stack;
    for (uint32_t i = 0; i + 1 < k; i++) {
        /* Relaxed: we own these nodes; list_push's release CAS publishes. */
        atomic_store_explicit(&s->nodes[c->idx[i]].next, c->idx[i + 1], memory_order_relaxed);
    }
    free_push(s, c->idx[0], c->idx[k - 1]);
    memmove(c->idx, c->idx + k, (c->n - k) * sizeof c->idx[0]);
    c->n -= k;
}

int sp_stack_pop_cached(sp_stack_cache_t *c, void **out) {
    sp_stack_t *s = c->stack;
    uint32_t idx = list_pop(s, &s->head.w);
    if (idx == NIL) return SP_EAGAIN;
    *out = s->nodes[idx].value; /* owned since list_pop's acquire CAS */
    if (c->n == SP_STACK_CACHE_MAX) cache_spill(c, REFILL);
    c->idx[c->n++] = idx;
    return 0;
}

void sp_stack_cache_flush(sp_stack_cache_t *c) {
    if (c->n > 0) cache_spill(c, c->n);
}
