/* spacesim/bus.h: the message bus between the main loop and the workers.
 *
 * Three kinds of channel, all carrying sp_msg_t by value (128 bytes, copied;
 * nothing is allocated per message):
 *
 *  - one inbox per worker: an sp_mpmc_t. Any thread sends to worker w; only
 *    worker w receives from it.
 *  - the main inbox: an sp_mpmc_t that every worker (any thread) sends
 *    results to and the main loop receives from. An optional notify hook runs
 *    after each successful send (the daemon passes uv_async_send, so the
 *    libuv loop is woken instead of polling).
 *  - the broadcast ring: every broadcast reaches EVERY worker exactly once,
 *    and all workers see all broadcasts in the same order (the order in which
 *    broadcasters claimed ring positions). The seed pushed broadcasts on one
 *    shared stack, so each reached only one receiver, in LIFO order.
 *
 * Broadcast design (Disruptor-like). One ring of `broadcast_capacity` slots,
 * a shared publish counter `head` and one read cursor per worker. A
 * broadcaster claims position p by CAS on head, but only if every worker's
 * cursor is past p - capacity (the slot's previous message has been read by
 * all workers); otherwise it returns SP_EAGAIN and publishes nothing. It then
 * copies the message into slot p % capacity and publishes it by storing the
 * slot's sequence p + 1 with release. Worker w reads slot[cursor] when its
 * sequence is cursor + 1 (acquire), copies it, then advances its cursor with
 * release. Chosen over "copy into each worker's own queue" because a
 * broadcast costs one 128-byte copy and one CAS whatever the worker count,
 * the all-or-nothing rule is free (one claim, not W reservations), and every
 * worker sees one global order. The price: the slowest worker gates all
 * broadcasters (SP_EAGAIN, back-pressure), and a broadcaster descheduled
 * between its claim and its publish delays later broadcasts (they are
 * received in position order), exactly like an MPMC queue.
 * The memory-order argument is written next to each atomic in bus.c.
 *
 * Receive order of a worker: sp_bus_recv_worker() returns pending broadcasts
 * first, then inbox messages. Broadcasts are control traffic (tick start,
 * shutdown, alerts) and the broadcast ring is shared back-pressure: draining
 * it first keeps one worker's backlog from stalling every broadcaster. There
 * is no defined order between a broadcast and a direct message anyway (they
 * come from different producers); the daemon orders what it applies with
 * sp_msg_order_cmp().
 *
 * Sleeping. A worker with nothing to do may call sp_bus_worker_wait(): it
 * announces itself in a per-worker eventcount, re-checks its channels and
 * sleeps on a condition variable. Senders check the announcement after a
 * seq_cst fence (one load of a line that is only written when the worker
 * sleeps) and take the mutex only when the worker is actually asleep, so the
 * send/receive fast paths stay lock-free.
 *
 * Threads, summary:
 *   init/destroy/set_*_notify: single-threaded, before/after concurrent use.
 *   send_to_worker, broadcast, send_to_main(_n), depths: any thread.
 *   recv_worker(_n), worker_wait for worker w: one thread at a time per w
 *     (the worker itself). The broadcast cursor of w is single-consumer.
 *   recv_main(_n): any threads (the main inbox is MPMC), normally the loop.
 *   worker_wake: any thread. */
#ifndef SPACESIM_BUS_H
#define SPACESIM_BUS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "spacesim/common.h"
#include "spacesim/mpmc.h"
#include "spacesim/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Upper bound on workers (a sanity limit against garbage arguments; the
 * daemon runs one worker per core). */
#define SP_BUS_MAX_WORKERS 1024u

/* Sizes of a bus. Every capacity is a power of two >= 2 (queue cells or ring
 * slots of 128-byte messages). */
typedef struct sp_bus_def {
    unsigned workers;          /* 1..SP_BUS_MAX_WORKERS; typically cores - 1 */
    size_t worker_capacity;    /* per-worker inbox, typical 1024 */
    size_t main_capacity;      /* main inbox (all workers' results), typical 4096 */
    size_t broadcast_capacity; /* broadcast ring, typical 256 */
} sp_bus_def_t;

/* Typical sizes for `workers` workers: 1024 / 4096 / 256. */
SP_API sp_bus_def_t sp_bus_def_default(unsigned workers);

/* Private per-worker state (cursor, sleep eventcount); defined in bus.c. */
struct sp__bus_worker;
/* One broadcast slot; defined in bus.c. */
struct sp__bus_slot;

typedef void (*sp_bus_main_notify_fn)(void *ctx);
typedef void (*sp_bus_worker_notify_fn)(void *ctx, unsigned worker);

/* The bus. Caller-owned (embed or allocate it with any alignment: hot fields
 * are separated by padding arrays, not _Alignas, as in sp_mpmc_t),
 * initialised by sp_bus_init*(). Fields are private: use the functions. */
typedef struct sp_bus {
    unsigned char sp__pad_front[SP_FALSE_SHARING_RANGE];
    /* Broadcast publish counter: next position to claim. Written (CAS) by
     * broadcasters only; its own 128-byte block. */
    union {
        _Atomic uint64_t v;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } bc_head;
    /* Cached lower bound of min(worker cursors), so a broadcaster scans the W
     * cursors only when the ring looks full (Disruptor's gating cache). */
    union {
        _Atomic uint64_t v;
        unsigned char pad[SP_FALSE_SHARING_RANGE];
    } bc_gate;
    /* Read-only after init (set_*_notify excepted, before concurrent use). */
    unsigned workers;
    uint64_t bc_mask;          /* broadcast_capacity - 1 */
    struct sp__bus_slot *ring; /* broadcast_capacity slots */
    struct sp__bus_worker *w;  /* `workers` entries */
    sp_mpmc_t *inbox;          /* `workers` inboxes */
    sp_bus_main_notify_fn main_notify;
    void *main_notify_ctx;
    sp_bus_worker_notify_fn worker_notify;
    void *worker_notify_ctx;
    sp_bus_def_t def;
    sp_allocator_t alloc;
    void *mem;       /* one allocation: ring, worker entries, inboxes */
    size_t mem_size; /* its size, for the allocator's free */
    sp_mpmc_t main;  /* the main inbox (pads its own indices) */
} sp_bus_t;

/* ---------------------------------------------------------------- lifetime */

/* Initialise a bus with `workers` workers; the worker inboxes, the main inbox
 * and the broadcast ring all get `queue_capacity` entries (a power of two >= 2).
 * alloc: NULL means sp_allocator_default(); the bus keeps a copy.
 * Returns 0, SP_EINVAL (bus NULL, workers 0 or > SP_BUS_MAX_WORKERS, bad
 * capacity), SP_EOVERFLOW or SP_ENOMEM; on failure nothing stays allocated
 * and the bus must not be used or destroyed. Allocates: (workers + 1) queues,
 * the ring (capacity * 192 bytes) and workers * ~384 bytes of per-worker
 * state. Single-threaded. */
SP_API int sp_bus_init(sp_bus_t *bus, unsigned workers, size_t queue_capacity,
                       const sp_allocator_t *alloc);

/* Same with separate sizes (see sp_bus_def_t). Same returns. */
SP_API int sp_bus_init_def(sp_bus_t *bus, const sp_bus_def_t *def, const sp_allocator_t *alloc);

/* Free everything. Queued messages are dropped (they own nothing). No other
 * call may overlap it, and no thread may be inside sp_bus_worker_wait(). */
SP_API void sp_bus_destroy(sp_bus_t *bus);

/* Number of workers. Any thread. */
SP_API unsigned sp_bus_workers(const sp_bus_t *bus);

/* Hooks, called after every successful send so an event loop or a sleeping
 * thread can be woken: main notify after send_to_main(_n) (once per call),
 * worker notify after send_to_worker(w) and, for every worker, after a
 * broadcast. The hook runs on the sending thread, must be thread-safe and
 * should be cheap; coalescing is the callee's business (uv_async_send
 * coalesces). fn NULL removes the hook. Set them before any concurrent use:
 * the function/context pair is read without synchronisation. These hooks are
 * independent of sp_bus_worker_wait(), which needs no hook. */
SP_API void sp_bus_set_main_notify(sp_bus_t *bus, sp_bus_main_notify_fn fn, void *ctx);
SP_API void sp_bus_set_worker_notify(sp_bus_t *bus, sp_bus_worker_notify_fn fn, void *ctx);

/* ---------------------------------------------------------------- sending */

/* Copy *m into worker `worker`'s inbox. Returns 0; SP_ERANGE for a bad worker
 * index; SP_EINVAL for NULL; SP_EAGAIN when the inbox is full (nothing was
 * written; retry later or drop, the caller decides). Wakes the worker if it
 * sleeps in sp_bus_worker_wait(), then runs the worker hook. Any thread.
 * Lock-free, never allocates; takes the worker's mutex only if it sleeps.
 * Cost: one CAS, one 128-byte copy, one seq_cst fence. */
SP_API int sp_bus_send_to_worker(sp_bus_t *bus, unsigned worker, const sp_msg_t *m);

/* Publish *m to every worker: each worker will receive it exactly once, after
 * every broadcast published before it. Returns 0; SP_EINVAL for NULL;
 * SP_EAGAIN when the ring is full, i.e. some worker is broadcast_capacity
 * broadcasts behind: then NOTHING is published (no worker gets it). Wakes
 * sleeping workers and runs the worker hook once per worker. Any thread.
 * Lock-free among broadcasters, never allocates. Cost: one CAS and one
 * 128-byte copy; plus a scan of the W cursors when the ring looks full. */
SP_API int sp_bus_broadcast(sp_bus_t *bus, const sp_msg_t *m);

/* Copy *m into the main inbox. Returns 0, SP_EINVAL for NULL, or SP_EAGAIN
 * when full (nothing written). Runs the main hook on success. Any thread;
 * lock-free, never allocates. */
SP_API int sp_bus_send_to_main(sp_bus_t *bus, const sp_msg_t *m);

/* Copy the longest prefix of m[0..n) that fits into the main inbox with one
 * claim (the prefix stays contiguous and in order). Returns how many were
 * sent (0 when full or n == 0); runs the main hook once if > 0. Any thread. */
SP_API size_t sp_bus_send_to_main_n(sp_bus_t *bus, const sp_msg_t *m, size_t n);

/* ---------------------------------------------------------------- receiving */

/* Worker `worker` takes its next message into *out: the oldest unread
 * broadcast if any, else the oldest inbox message. Returns 0, SP_EAGAIN when
 * there is nothing (*out untouched), SP_ERANGE/SP_EINVAL for bad arguments.
 * Threads: only one thread at a time per worker (the worker itself).
 * Lock-free, never allocates or blocks. */
SP_API int sp_bus_recv_worker(sp_bus_t *bus, unsigned worker, sp_msg_t *out);

/* Up to max messages into out[0..k), broadcasts first (in order), then inbox
 * messages (in order). Returns k (0 when nothing or on bad arguments). Same
 * threads rule as sp_bus_recv_worker(). */
SP_API size_t sp_bus_recv_worker_n(sp_bus_t *bus, unsigned worker, sp_msg_t *out, size_t max);

/* The main loop takes the oldest message of the main inbox. Returns 0,
 * SP_EAGAIN when empty, SP_EINVAL for NULL. Any thread (MPMC). */
SP_API int sp_bus_recv_main(sp_bus_t *bus, sp_msg_t *out);

/* Up to max main-inbox messages into out[0..k), oldest first, one claim.
 * Returns k. Any thread. */
SP_API size_t sp_bus_recv_main_n(sp_bus_t *bus, sp_msg_t *out, size_t max);

/* ---------------------------------------------------------------- sleeping */

/* Block worker `worker` until a broadcast or an inbox message is pending, or
 * sp_bus_worker_wake() is called, or timeout_ms milliseconds pass
 * (timeout_ms < 0: no timeout; 0: just check). Returns 0 when it returned
 * because something may be pending (callers loop: a wake-up can be spurious,
 * and a message may still be in the middle of being published), SP_EAGAIN on
 * timeout with nothing pending, SP_ERANGE for a bad worker. Threads: the
 * worker itself only (same rule as recv_worker). Blocks; never allocates.
 * A send that happens after the worker announced itself always wakes it (the
 * eventcount's Dekker handshake, see bus.c): no lost wake-ups. */
SP_API int sp_bus_worker_wait(sp_bus_t *bus, unsigned worker, int timeout_ms);

/* Wake worker `worker` from sp_bus_worker_wait(), or make its next wait
 * return 0 at once if it is not waiting now (e.g. after setting a shutdown
 * flag outside the bus). Returns 0 or SP_ERANGE. Any thread; takes the
 * worker's mutex. */
SP_API int sp_bus_worker_wake(sp_bus_t *bus, unsigned worker);

/* ---------------------------------------------------------------- statistics */

typedef struct sp_bus_depths {
    size_t main;              /* messages waiting in the main inbox */
    size_t worker_total;      /* sum over worker inboxes */
    size_t worker_max;        /* deepest worker inbox */
    size_t broadcast_lag_max; /* broadcasts claimed but not yet read by the slowest worker */
} sp_bus_depths_t;

/* Approximate queue depths for metrics (each value was true at some instant
 * during the call; they are not one atomic snapshot). Any thread; reads only
 * relaxed counters; cost O(workers). */
SP_API void sp_bus_depths(const sp_bus_t *bus, sp_bus_depths_t *out);

/* Messages pending for one worker: inbox depth plus unread broadcasts
 * (approximate, as above). 0 for a bad worker index. Any thread. */
SP_API size_t sp_bus_worker_depth(const sp_bus_t *bus, unsigned worker);

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_BUS_H */
