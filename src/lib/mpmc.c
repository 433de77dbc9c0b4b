/* mpmc.c: bounded lock-free MPMC queue (Vyukov ring with per-cell sequence
 * numbers). The algorithm and its invariants are described in
 * include/spacesim/mpmc.h; the pointer fast paths live there as inline
 * functions, the generic (by-value, any elem_size) paths here.
 *
 * Cell states for position pos (cell index pos & mask):
 *   seq == pos          free for the producer of pos
 *   seq == pos + 1      full, ready for the consumer of pos
 *   seq == pos + cap    emptied, free for the producer of pos + cap
 * seq only ever increases (mod 2^64) and is written only by the thread that
 * owns the cell (the producer that claimed pos, then its consumer). */
#include "spacesim/mpmc.h"
#include "spacesim/spsc.h"

#include <sched.h>
#include <string.h>

/* A spin-wait hint: lets the sibling hyperthread run and saves power. */
#if defined(__x86_64__) || defined(__i386__)
#define SP_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define SP_CPU_RELAX() __asm__ volatile("yield")
#else
#define SP_CPU_RELAX() ((void)0)
#endif

/* Copy one element; the elem_size == 8 branch is the common pointer case and
 * avoids a memcpy call (the compiler emits a single 8-byte move). */
static inline void copy_elem(void *dst, const void *src, size_t elem_size) {
    if (elem_size == sizeof(uint64_t))
        memcpy(dst, src, sizeof(uint64_t));
    else
        memcpy(dst, src, elem_size);
}

static inline _Atomic size_t *cell_seq(const struct sp__mpmc_side *s, size_t pos) {
    return (_Atomic size_t *)(void *)(s->cells + (pos & s->mask) * s->cell_size);
}

static inline unsigned char *cell_data(const struct sp__mpmc_side *s, size_t pos) {
    return s->cells + (pos & s->mask) * s->cell_size + SP_MPMC_CELL_HDR;
}

/* The slot array of a ring: n slots of elem bytes, rounded up to whole
 * false-sharing ranges and aligned to one, so no other data shares its
 * first or last line. *bytes: the size to free it with. Returns 0,
 * SP_EOVERFLOW or SP_ENOMEM. */
static int ring_alloc(const sp_allocator_t *alloc, size_t n, size_t elem, void **mem, size_t *bytes) {
    size_t b;
    if (sp_size_mul(n, elem, &b) != 0) return SP_EOVERFLOW;
    if (sp_size_add(b, SP_FALSE_SHARING_RANGE - 1, &b) != 0) return SP_EOVERFLOW;
    b = sp_align_up(b, SP_FALSE_SHARING_RANGE);
    *mem = alloc->alloc(alloc->ctx, b, SP_FALSE_SHARING_RANGE);
    if (*mem == NULL) return SP_ENOMEM;
    *bytes = b;
    return 0;
}

int sp_mpmc_init(sp_mpmc_t *q, size_t capacity, size_t elem_size, const sp_allocator_t *alloc) {
    if (q == NULL || capacity < 2 || (capacity & (capacity - 1)) != 0 || elem_size == 0) return SP_EINVAL;
    if (alloc == NULL) alloc = sp_allocator_default();

    size_t cell_size;
    if (sp_size_add(elem_size, SP_MPMC_CELL_HDR + SP_CACHELINE, &cell_size) != 0) return SP_EOVERFLOW;
    cell_size -= SP_CACHELINE; /* the extra line above only proves rounding cannot overflow */
    /* Small elements: pack cells (16 B for a pointer), no per-cell padding.
     * Large ones (bus messages): round to whole lines so two cells never share
     * a line and each copy is line-aligned. */
    cell_size = (cell_size <= SP_CACHELINE) ? sp_align_up(cell_size, 8) : sp_align_up(cell_size, SP_CACHELINE);
    /* elem_size 8 gives 16-byte cells: the pointer batch paths rely on it. */
    SP_ASSERT(elem_size != sizeof(void *) || cell_size == 16);

    size_t bytes;
    void *mem;
    int rc = ring_alloc(alloc, capacity, cell_size, &mem, &bytes);
    if (rc) return rc;

    memset(q, 0, sizeof *q);
    q->capacity = capacity;
    q->elem_size = elem_size;
    q->mem = mem;
    q->mem_size = bytes;
    q->alloc = *alloc;

    struct sp__mpmc_side geo = {.cells = mem, .mask = capacity - 1, .cell_size = cell_size, .elem_size = elem_size};
    for (size_t i = 0; i < capacity; i++) {
        /* Relaxed: init is single-threaded; whoever receives q after init
         * gets it through a synchronising hand-off (thread creation, a lock). */
        atomic_init(cell_seq(&geo, i), i);
    }
    q->prod.s = geo;
    q->cons.s = geo;
    atomic_init(&q->prod.s.pos, 0);
    atomic_init(&q->cons.s.pos, 0);
    return 0;
}

void sp_mpmc_destroy(sp_mpmc_t *q) {
    if (q == NULL || q->mem == NULL) return;
    q->alloc.free(q->alloc.ctx, q->mem, q->mem_size, SP_FALSE_SHARING_RANGE);
    q->mem = NULL;
    q->prod.s.cells = NULL;
    q->cons.s.cells = NULL;
}

int sp_mpmc_try_push(sp_mpmc_t *q, const void *elem) {
    struct sp__mpmc_side *s = &q->prod.s;
    /* Relaxed: tail is a hint validated by the CAS; ordering of the payload
     * is carried by the cell's seq (see sp_mpmc_try_push_ptr in mpmc.h). */
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed);
    for (;;) {
        _Atomic size_t *seqp = cell_seq(s, pos);
        /* Acquire: pairs with the release store of seq = pos by the previous
         * lap's consumer; its copy-out happens before our copy-in. */
        size_t seq = atomic_load_explicit(seqp, memory_order_acquire);
        intptr_t dif = (intptr_t)(seq - pos);
        if (dif == 0) {
            /* Relaxed claim: ownership only; on failure pos is refreshed. */
            if (atomic_compare_exchange_weak_explicit(&s->pos, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                copy_elem(cell_data(s, pos), elem, s->elem_size);
                /* Release: publishes the copy above to the consumer that
                 * acquires seq == pos + 1; relaxed could expose a torn element. */
                atomic_store_explicit(seqp, pos + 1, memory_order_release);
                return 0;
            }
        } else if (dif < 0) {
            return SP_EAGAIN;
        } else {
            pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* hint; see above */
        }
    }
}

int sp_mpmc_try_pop(sp_mpmc_t *q, void *out) {
    struct sp__mpmc_side *s = &q->cons.s;
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* hint, validated by CAS */
    for (;;) {
        _Atomic size_t *seqp = cell_seq(s, pos);
        /* Acquire: pairs with the producer's release of seq = pos + 1, so the
         * element's bytes are visible before we copy them out. */
        size_t seq = atomic_load_explicit(seqp, memory_order_acquire);
        intptr_t dif = (intptr_t)(seq - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&s->pos, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                copy_elem(out, cell_data(s, pos), s->elem_size);
                /* Release: our copy-out happens before the next lap's producer
                 * (acquire of seq == pos + cap) overwrites the cell. */
                atomic_store_explicit(seqp, pos + s->mask + 1, memory_order_release);
                return 0;
            }
        } else if (dif < 0) {
            return SP_EAGAIN;
        } else {
            pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* hint */
        }
    }
}

/* Batch claim: starting at the current index `pos`, count how many
 * consecutive cells are in the wanted state (seq == pos + i + off, off = 0 for
 * producers and 1 for consumers), up to n, then claim them all with one CAS
 * pos -> pos + k. Why that is safe: a cell's seq only changes when its owner
 * (the thread that claimed its position) finishes; while the index still
 * equals pos, no thread owns any position >= pos, so the states we observed
 * for positions pos..pos+k-1 cannot have moved on, and a successful CAS makes
 * us their owner. The acquire loads of seq order the previous owner's copy
 * before ours, exactly as in the single-item path. Returns k and the claimed
 * start position in *start. */
static size_t claim_n(struct sp__mpmc_side *s, size_t n, size_t off, size_t *start) {
    /* Geometry in locals: the compiler cannot keep fields of *s in registers
     * across the atomic loads otherwise. */
    unsigned char *const cells = s->cells;
    const size_t mask = s->mask, cs = s->cell_size;
    size_t pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* hint, validated by CAS */
    for (;;) {
        size_t k = 0;
        int behind = 0;
        while (k < n) {
            /* Acquire: pairs with the release store of the cell's previous
             * owner (producer: consumer's seq = pos; consumer: producer's
             * seq = pos + 1); see the single-item paths. */
            size_t seq = atomic_load_explicit((_Atomic size_t *)(void *)(cells + ((pos + k) & mask) * cs),
                                              memory_order_acquire);
            intptr_t dif = (intptr_t)(seq - (pos + k + off));
            if (dif != 0) {
                /* dif > 0 at k == 0: pos is stale (others moved on). */
                behind = (dif > 0 && k == 0);
                break;
            }
            k++;
        }
        if (k == 0) {
            if (!behind) return 0;
            pos = atomic_load_explicit(&s->pos, memory_order_relaxed); /* hint */
            continue;
        }
        /* Relaxed claim: ownership only, ordering is carried by seq. */
        if (atomic_compare_exchange_weak_explicit(&s->pos, &pos, pos + k, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *start = pos;
            return k;
        }
        /* pos now holds the current index; rescan from there. */
    }
}

size_t sp_mpmc_try_push_n(sp_mpmc_t *q, const void *elems, size_t n) {
    struct sp__mpmc_side *s = &q->prod.s;
    size_t pos;
    size_t k = claim_n(s, n, 0, &pos);
    unsigned char *const cells = s->cells;
    const size_t mask = s->mask, cs = s->cell_size, es = s->elem_size;
    if (es == sizeof(void *)) {
        /* Pointer cells are 16 bytes: seq, then the pointer. */
        void *const *src = elems;
        for (size_t i = 0; i < k; i++) {
            unsigned char *c = cells + (((pos + i) & mask) << 4);
            memcpy(c + SP_MPMC_CELL_HDR, &src[i], sizeof(void *));
            /* Release: publishes this cell's payload to its consumer (acquire
             * of seq == pos + i + 1). Cells are published one by one, in
             * order, so a consumer can start on the first while we fill the
             * rest. */
            atomic_store_explicit((_Atomic size_t *)(void *)c, pos + i + 1, memory_order_release);
        }
        return k;
    }
    const unsigned char *src = elems;
    for (size_t i = 0; i < k; i++) {
        unsigned char *c = cells + ((pos + i) & mask) * cs;
        memcpy(c + SP_MPMC_CELL_HDR, src + i * es, es);
        /* Release: as above. */
        atomic_store_explicit((_Atomic size_t *)(void *)c, pos + i + 1, memory_order_release);
    }
    return k;
}

size_t sp_mpmc_try_pop_n(sp_mpmc_t *q, void *out, size_t max) {
    struct sp__mpmc_side *s = &q->cons.s;
    size_t pos;
    size_t k = claim_n(s, max, 1, &pos);
    unsigned char *const cells = s->cells;
    const size_t mask = s->mask, cs = s->cell_size, es = s->elem_size, cap = mask + 1;
    if (es == sizeof(void *)) {
        void **dst = out;
        for (size_t i = 0; i < k; i++) {
            unsigned char *c = cells + (((pos + i) & mask) << 4);
            memcpy(&dst[i], c + SP_MPMC_CELL_HDR, sizeof(void *));
            /* Release: our copy-out happens before the next lap's producer
             * (acquire of seq == pos + i + cap) overwrites the cell. */
            atomic_store_explicit((_Atomic size_t *)(void *)c, pos + i + cap, memory_order_release);
        }
        return k;
    }
    unsigned char *dst = out;
    for (size_t i = 0; i < k; i++) {
        unsigned char *c = cells + ((pos + i) & mask) * cs;
        memcpy(dst + i * es, c + SP_MPMC_CELL_HDR, es);
        /* Release: as above. */
        atomic_store_explicit((_Atomic size_t *)(void *)c, pos + i + cap, memory_order_release);
    }
    return k;
}

/* Items between a consumer counter read first and a producer counter read
 * after it, for the *_size_approx() statistics: the unsigned difference of
 * free-running counters (correct across wrap), clamped to [0, cap] because
 * relaxed reads may see the two out of order. */
static size_t occupancy(size_t head, size_t tail, size_t cap) {
    size_t d = tail - head;
    if ((intptr_t)d < 0) return 0;
    return d > cap ? cap : d;
}

size_t sp_mpmc_size_approx(const sp_mpmc_t *q) {
    /* Relaxed: a snapshot for statistics. head is read first: tail only
     * grows, and head never passes tail, so reading tail afterwards normally
     * gives tail >= head; occupancy() clamps what reorderings leave. */
    size_t head = atomic_load_explicit(&q->cons.s.pos, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&q->prod.s.pos, memory_order_relaxed);
    return occupancy(head, tail, q->capacity);
}

size_t sp_mpmc_capacity(const sp_mpmc_t *q) { return q->capacity; }

/* ---------------------------------------------------------- burst mode
 * sp_mpmc_burst_t: head/tail ring (contract in mpmc.h). Invariants, with
 * free-running counters compared only through unsigned differences:
 *   cons.tail <= cons.head <= prod.tail <= prod.head <= cons.tail + capacity
 * Slots [cons.tail, prod.tail) hold published items; a producer owns
 * [its reservation, +k) from its head CAS until its tail store, a consumer
 * likewise. Slots are plain memory: every access to a slot is ordered by the
 * tail release/acquire pairs below, so there is no data race on them. */

int sp_mpmc_burst_init(sp_mpmc_burst_t *q, size_t capacity, int single, const sp_allocator_t *alloc) {
    if (q == NULL || capacity < 2 || (capacity & (capacity - 1)) != 0) return SP_EINVAL;
    if (alloc == NULL) alloc = sp_allocator_default();
    size_t bytes;
    void *mem;
    int rc = ring_alloc(alloc, capacity, sizeof(void *), &mem, &bytes);
    if (rc) return rc;
    void **slots = mem;
    memset(q, 0, sizeof *q);
    q->capacity = capacity;
    q->mem_size = bytes;
    q->alloc = *alloc;
    struct sp__mpmc_burst_side geo = {.slots = slots, .mask = capacity - 1, .single = single != 0};
    q->prod.s = geo;
    q->cons.s = geo;
    /* Single-threaded init; published to the users by their hand-off. */
    atomic_init(&q->prod.s.head, 0);
    atomic_init(&q->prod.s.tail, 0);
    atomic_init(&q->prod.s.other, 0);
    atomic_init(&q->cons.s.head, 0);
    atomic_init(&q->cons.s.tail, 0);
    atomic_init(&q->cons.s.other, 0);
    return 0;
}

void sp_mpmc_burst_destroy(sp_mpmc_burst_t *q) {
    if (q == NULL || q->prod.s.slots == NULL) return;
    q->alloc.free(q->alloc.ctx, q->prod.s.slots, q->mem_size, SP_FALSE_SHARING_RANGE);
    q->prod.s.slots = NULL;
    q->cons.s.slots = NULL;
}

/* Reserve up to n positions on side s, whose limit is the other side's tail
 * plus `lap` (capacity for producers, 0 for consumers): returns k and the
 * first position in *start. The caller then copies and calls finish(). */
static inline size_t burst_reserve(struct sp__mpmc_burst_side *s, _Atomic size_t *other_tail, size_t lap, size_t n,
                                   size_t *start) {
    const size_t cap = s->mask + 1;
    if (s->single) {
        /* Relaxed: head and the cached copy are written only by this thread.
         * The copy was read from the other side's tail with acquire (below),
         * earlier in this thread, which is what orders our slot accesses
         * after the other side's. */
        size_t h = atomic_load_explicit(&s->head, memory_order_relaxed);
        size_t c = atomic_load_explicit(&s->other, memory_order_relaxed);
        size_t room = c + lap - h; /* free slots (producer) or items (consumer) */
        if (room < n) {
            /* Acquire: pairs with the other side's release store of its tail;
             * a producer then overwrites only slots whose consumer has finished
             * reading them, a consumer reads only slots whose pointers are
             * written. With relaxed, either could race on the slot. */
            c = atomic_load_explicit(other_tail, memory_order_acquire);
            atomic_store_explicit(&s->other, c, memory_order_relaxed); /* own cache, single writer */
            room = c + lap - h;
        }
        size_t k = room < n ? room : n;
        *start = h;
        return k;
    }
    /* Relaxed: a first guess validated by the CAS. */
    size_t h = atomic_load_explicit(&s->head, memory_order_relaxed);
    for (;;) {
        /* Acquire: the cached copy is stored with release by the thread of
         * this side that read the other side's tail with acquire, so its
         * happens-before edge reaches us through this load (release chain). */
        size_t c = atomic_load_explicit(&s->other, memory_order_acquire);
        size_t room = c + lap - h;
        /* room > cap: the copy is older than h (another thread of this side
         * stored an older value after a newer one, or h moved on); refresh. */
        if (room > cap || room < n) {
            /* Acquire: as in single mode. */
            c = atomic_load_explicit(other_tail, memory_order_acquire);
            /* Release: passes our acquire of the other tail on to the threads
             * of this side that use the copy (see the acquire load above). */
            atomic_store_explicit(&s->other, c, memory_order_release);
            room = c + lap - h;
            if (room > cap) {
                /* h is older than the tail we just read: another thread of our
                 * side reserved past it. Relaxed: a new guess for the CAS. */
                h = atomic_load_explicit(&s->head, memory_order_relaxed);
                continue;
            }
        }
        size_t k = room < n ? room : n;
        if (k == 0) return 0;
        /* Relaxed on both outcomes: the CAS only decides which thread owns
         * [h, h + k); slot ordering is carried by the tails. On failure h is
         * the current head. */
        if (atomic_compare_exchange_weak_explicit(&s->head, &h, h + k, memory_order_relaxed, memory_order_relaxed)) {
            *start = h;
            return k;
        }
    }
}

/* Publish [h, h + k) on side s: tails advance in reservation order. */
static inline void burst_finish(struct sp__mpmc_burst_side *s, size_t h, size_t k) {
    if (s->single) {
        atomic_store_explicit(&s->head, h + k, memory_order_relaxed); /* own index */
    } else {
        /* Wait for the threads of our side that reserved before us. Acquire:
         * pairs with their release store of tail == h, so their slot accesses
         * happen before our release store below and hence before whatever the
         * other side does after acquiring it (a plain store does not continue
         * their release sequence). With relaxed, a consumer that sees our
         * tail could read an earlier producer's slots before they are written. */
        unsigned spins = 0;
        while (atomic_load_explicit(&s->tail, memory_order_acquire) != h) {
            /* The thread before us was preempted mid-burst: let it run. */
            if (++spins % 64 == 0)
                sched_yield();
            else
                SP_CPU_RELAX();
        }
    }
    /* Release: our slot writes (producer) or reads (consumer) happen before
     * the other side's acquire of this tail lets it read (or overwrite) them.
     * With relaxed, a consumer could read a slot before its pointer lands, or
     * a producer overwrite one that is still being read. */
    atomic_store_explicit(&s->tail, h + k, memory_order_release);
}

size_t sp_mpmc_burst_push(sp_mpmc_burst_t *q, void *const *items, size_t n) {
    struct sp__mpmc_burst_side *s = &q->prod.s;
    size_t h;
    size_t k = burst_reserve(s, &q->cons.s.tail, s->mask + 1, n, &h);
    if (k == 0) return 0;
    /* Two runs when the reservation wraps the ring. */
    size_t i0 = h & s->mask, first = s->mask + 1 - i0;
    if (first > k) first = k;
    memcpy(&s->slots[i0], items, first * sizeof(void *));
    memcpy(&s->slots[0], items + first, (k - first) * sizeof(void *));
    burst_finish(s, h, k);
    return k;
}

size_t sp_mpmc_burst_pop(sp_mpmc_burst_t *q, void **out, size_t max) {
    struct sp__mpmc_burst_side *s = &q->cons.s;
    size_t h;
    size_t k = burst_reserve(s, &q->prod.s.tail, 0, max, &h);
    if (k == 0) return 0;
    size_t i0 = h & s->mask, first = s->mask + 1 - i0;
    if (first > k) first = k;
    memcpy(out, &s->slots[i0], first * sizeof(void *));
    memcpy(out + first, &s->slots[0], (k - first) * sizeof(void *));
    burst_finish(s, h, k);
    return k;
}

size_t sp_mpmc_burst_size_approx(const sp_mpmc_burst_t *q) {
    /* Relaxed: a statistics snapshot; consumer tail first (it never passes
     * the producer tail), then clamped. */
    size_t c = atomic_load_explicit(&((sp_mpmc_burst_t *)q)->cons.s.tail, memory_order_relaxed);
    size_t p = atomic_load_explicit(&((sp_mpmc_burst_t *)q)->prod.s.tail, memory_order_relaxed);
    return occupancy(c, p, q->capacity);
}

/* ---------------------------------------------------------------- SPSC ring
 * The fast paths are inline in spacesim/spsc.h; only setup lives here. */

int sp_spsc_init(sp_spsc_t *q, size_t capacity, const sp_allocator_t *alloc) {
    if (q == NULL || capacity < 2 || (capacity & (capacity - 1)) != 0) return SP_EINVAL;
    if (alloc == NULL) alloc = sp_allocator_default();
    size_t bytes;
    void *mem;
    int rc = ring_alloc(alloc, capacity, sizeof(void *), &mem, &bytes);
    if (rc) return rc;
    _Atomic(void *) *slots = mem;
    memset(q, 0, sizeof *q);
    for (size_t i = 0; i < capacity; i++) atomic_init(&slots[i], NULL); /* single-threaded init */
    q->capacity = capacity;
    q->mem_size = bytes;
    q->alloc = *alloc;
    q->prod.s.slots = slots;
    q->prod.s.mask = capacity - 1;
    q->cons.s.slots = slots;
    q->cons.s.mask = capacity - 1;
    atomic_init(&q->prod.s.pos, 0);
    atomic_init(&q->cons.s.pos, 0);
    return 0;
}

void sp_spsc_destroy(sp_spsc_t *q) {
    if (q == NULL || q->prod.s.slots == NULL) return;
    q->alloc.free(q->alloc.ctx, (void *)q->prod.s.slots, q->mem_size, SP_FALSE_SHARING_RANGE);
    q->prod.s.slots = NULL;
    q->cons.s.slots = NULL;
}

size_t sp_spsc_size_approx(const sp_spsc_t *q) {
    /* Relaxed: statistics snapshot of the two private indices; consumer's
     * first (it never passes the producer), then clamped. */
    size_t head = atomic_load_explicit(&((sp_spsc_t *)q)->cons.s.pos, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&((sp_spsc_t *)q)->prod.s.pos, memory_order_relaxed);
    return occupancy(head, tail, q->capacity);
}

size_t sp_spsc_capacity(const sp_spsc_t *q) { return q->capacity; }

/* ---------------------------------------------------------------- SPSC batch ring
 * Lamport ring with cached indices; the fast paths are inline in
 * spacesim/spsc.h. */

int sp_spsc_batch_init(sp_spsc_batch_t *q, size_t capacity, const sp_allocator_t *alloc) {
    if (q == NULL || capacity < 2 || (capacity & (capacity - 1)) != 0) return SP_EINVAL;
    if (alloc == NULL) alloc = sp_allocator_default();
    size_t bytes;
    void *mem;
    int rc = ring_alloc(alloc, capacity, sizeof(void *), &mem, &bytes);
    if (rc) return rc;
    void **slots = mem;
    memset(q, 0, sizeof *q);
    memset(slots, 0, bytes); /* not needed for correctness: no slot is read before it is written */
    q->capacity = capacity;
    q->mem_size = bytes;
    q->alloc = *alloc;
    q->prod.s.slots = slots;
    q->prod.s.mask = capacity - 1;
    q->cons.s.slots = slots;
    q->cons.s.mask = capacity - 1;
    atomic_init(&q->pub_prod.tail, 0);
    atomic_init(&q->pub_cons.head, 0);
    return 0;
}

void sp_spsc_batch_destroy(sp_spsc_batch_t *q) {
    if (q == NULL || q->prod.s.slots == NULL) return;
    q->alloc.free(q->alloc.ctx, (void *)q->prod.s.slots, q->mem_size, SP_FALSE_SHARING_RANGE);
    q->prod.s.slots = NULL;
    q->cons.s.slots = NULL;
}

size_t sp_spsc_batch_size_approx(const sp_spsc_batch_t *q) {
    /* Relaxed: statistics snapshot of the two published indices; the
     * consumer's first (it never passes the producer's), then clamped. */
    size_t head = atomic_load_explicit(&((sp_spsc_batch_t *)q)->pub_cons.head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&((sp_spsc_batch_t *)q)->pub_prod.tail, memory_order_relaxed);
    return occupancy(head, tail, q->capacity);
}

size_t sp_spsc_batch_capacity(const sp_spsc_batch_t *q) { return q->capacity; }
