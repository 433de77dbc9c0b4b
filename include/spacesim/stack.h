/* spacesim/stack.h: bounded lock-free LIFO stack of pointers (Treiber stack).
 *
 * Design: ABA-safe and free of use-after-free by construction.
 *  - Nodes come from a fixed pool allocated at init and freed only at destroy
 *    (type-stable memory): a thread that read a stale head can still read that
 *    node's `next` field safely; it is never returned to the allocator while
 *    the stack exists. (The seed's pop read head->next after another thread
 *    could have freed head.)
 *  - A node is named by a 32-bit pool index. The stack head is one 64-bit word
 *    {index, tag}; every successful change of the head increments the 32-bit
 *    tag, so a pop whose CAS succeeds knows the head did not change since it
 *    read `next` (ABA would need exactly 2^32 changes of the head while one
 *    pop is preempted between its load and its CAS). A plain 8-byte CAS is
 *    enough; no 16-byte cmpxchg16b (which halves throughput).
 *  - The free list of the pool is itself a tagged stack of the same kind, so
 *    sp_stack_push takes a node from it and sp_stack_pop gives the node back.
 *    It is split in SP_STACK_FREE_SHARDS lists, each on its own 128-byte
 *    block, and a thread uses the one of the CPU it runs on (sched_getcpu(),
 *    a read of the rseq area, ~3 ns), taking from the others only when that
 *    one is empty: the free-list CAS then stays on a line that no other CPU
 *    touches, and the only contended line is the stack head, as in
 *    ck_stack (issue 13). The CPU is only a hint: a thread that migrates
 *    between reading it and its CAS still works, on a line shared with one
 *    more CPU for a moment.
 *    We chose a pool with tags over hazard pointers or epochs because it needs
 *    no per-thread registration, no deferred reclamation and gives a hard
 *    memory bound; the price is a fixed capacity chosen at init.
 *  - Optional per-thread node caches (sp_stack_cache_t) take nodes from the
 *    free list 16 at a time and give them back 16 at a time, so a push or pop
 *    costs one CAS on the shared head instead of two.
 *  - A thread whose CAS on a list word fails pauses before it retries, twice
 *    as long after each consecutive failure, up to 64 pauses (exponential
 *    backoff, as in Herlihy and Shavit's backoff stack): the thread that won
 *    keeps the head's line in its cache for a run of operations instead of
 *    both threads moving it on every one (issue 13: 3-6x ck_stack, which
 *    retries at once, with 2 threads). Still lock-free; short-term fairness is
 *    what it gives up: under contention one thread may finish several
 *    operations while another waits out its pause.
 *
 * Threads: push/pop/pop_all may be called from any number of threads at once.
 * An sp_stack_cache_t belongs to one thread at a time. init/destroy are
 * single-threaded. Lock-free; nothing allocates after init; nothing blocks. */
#ifndef SPACESIM_STACK_H
#define SPACESIM_STACK_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "spacesim/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest pool: indices are 32-bit and 0xFFFFFFFF means "none". */
#define SP_STACK_MAX_CAPACITY 0xFFFFFFFEu

/* Free-list shards (a power of two): one per CPU on machines up to that size,
 * shared by CPU number modulo this beyond. */
#define SP_STACK_FREE_SHARDS 8

/* Nodes a cache holds at most; it refills and flushes half of that at once. */
#define SP_STACK_CACHE_MAX 32

/* Pool node: private. */
struct sp__stack_node {
    _Atomic uint32_t next; /* index of the node below, or 0xFFFFFFFF */
    void *value;
};

/* The body is public so callers can embed the stack; fields are private. The
 * two heads sit 128 bytes apart (adjacent-line prefetch) whatever the
 * struct's own alignment. */
typedef struct sp_stack {
    unsigned char sp__pad_front[SP_FALSE_SHARING_RANGE];
    union {
        _Atomic uint64_t w; /* {index (low 32), tag (high 32)} of the top node */
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } head;
    union {
        _Atomic uint64_t w; /* {index, tag} of the first free node of this shard */
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } free[SP_STACK_FREE_SHARDS];
    struct sp__stack_node *nodes; /* read-only after init */
    uint32_t capacity;
    size_t mem_size;
    sp_allocator_t alloc;
} sp_stack_t;

/* A per-thread stash of free nodes for sp_stack_push_cached/pop_cached. */
typedef struct sp_stack_cache {
    sp_stack_t *stack;
    uint32_t n;
    uint32_t idx[SP_STACK_CACHE_MAX];
} sp_stack_cache_t;

/* Initialise an empty stack able to hold `capacity` values at once
 * (1..SP_STACK_MAX_CAPACITY; typical 1024..1M). alloc: NULL means
 * sp_allocator_default(). Allocates capacity * 16 bytes once.
 * Returns 0, SP_EINVAL (s == NULL or bad capacity), SP_EOVERFLOW or
 * SP_ENOMEM; on failure nothing is allocated. Single-threaded. */
SP_API int sp_stack_init(sp_stack_t *s, size_t capacity, const sp_allocator_t *alloc);

/* Free the pool. Values still on the stack are dropped (the stack does not
 * own what they point to). No other call may overlap it, and every cache must
 * have been flushed or abandoned. NULL or a zeroed struct is accepted. */
SP_API void sp_stack_destroy(sp_stack_t *s);

/* Push value (any pointer, NULL included). Returns 0, or SP_EAGAIN when no
 * free node was found (nothing changed): all `capacity` nodes are in use, or,
 * while other threads pop, the few nodes freed during the scan of the shards
 * went to shards already scanned (exact when no pop runs concurrently). Threads: any. Lock-free,
 * never allocates or blocks. Cost: two CAS, one on this CPU's free-list
 * shard (uncontended unless threads share the CPU) and one on the stack head;
 * when this CPU's shard is empty, one more load per other shard. */
SP_API int sp_stack_push(sp_stack_t *s, void *value);

/* Pop the most recently pushed value into *out. Returns 0, or SP_EAGAIN when
 * empty (*out untouched). Threads: any. Lock-free. Cost: two CAS, on the
 * stack head and on this CPU's free-list shard. */
SP_API int sp_stack_pop(sp_stack_t *s, void **out);

/* Detach the whole stack with one CAS, call fn(ctx, value) for each value in
 * LIFO order, then return all nodes to the pool with one CAS. Values pushed
 * concurrently land either in this batch or on the (new) stack, never lost.
 * fn may call push/pop on this stack (the detached nodes are simply not free
 * until pop_all returns). Returns the number of values. Threads: any. */
SP_API size_t sp_stack_pop_all(sp_stack_t *s, void (*fn)(void *ctx, void *value), void *ctx);

/* 1 if the stack was empty at some instant during the call, else 0. No
 * count is kept (a shared counter would be a second contended word per
 * operation). Threads: any. */
SP_API int sp_stack_empty_approx(const sp_stack_t *s);

/* The capacity given to sp_stack_init. Threads: any. */
SP_API size_t sp_stack_capacity(const sp_stack_t *s);

/* Bind an empty cache to s. The cache is plain memory owned by the caller;
 * one thread at a time uses it. Never fails. */
SP_API void sp_stack_cache_init(sp_stack_cache_t *c, sp_stack_t *s);

/* Like sp_stack_push/pop but free nodes come from / go to the cache c
 * (bound to this stack), touching the shared free list only once per 16
 * operations: one CAS on the stack head per operation otherwise.
 * Note: up to SP_STACK_CACHE_MAX nodes may sit in each cache, so push can
 * report SP_EAGAIN while other caches hold free nodes. Threads: the thread
 * that currently owns c; other threads may use the stack concurrently. */
SP_API int sp_stack_push_cached(sp_stack_cache_t *c, void *value);
SP_API int sp_stack_pop_cached(sp_stack_cache_t *c, void **out);

/* Return every cached node to the stack's pool (one CAS). Call before the
 * owning thread stops using the stack and before sp_stack_destroy. */
SP_API void sp_stack_cache_flush(sp_stack_cache_t *c);

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_STACK_H */
