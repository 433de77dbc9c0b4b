/* bus.c: per-worker inboxes, the main inbox, the broadcast ring and the
 * per-worker sleep eventcount. The design is described in bus.h; this file
 * carries the memory-order argument at each atomic.
 *
 * Broadcast ring invariants (positions are free-running uint64_t, they never
 * wrap in practice: 2^64 broadcasts):
 *   I1  cursor[w] <= head for every worker w, and cursors only grow.
 *   I2  slot[p % cap].seq == p + 1  iff  the message of position p is
 *       published and not yet overwritten.
 *   I3  position p is claimed only when p - min(cursor) < cap, i.e. every
 *       worker has finished reading position p - cap from the same slot.
 *   I4  worker w reads position c only after observing slot seq == c + 1.
 * The stress test (tests/stress/check_stress_bus.c) checks the consequences:
 * every worker sees every broadcast exactly once, all in one order, with an
 * intact payload. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "spacesim/bus.h"

/* One broadcast slot, cache-line aligned so a broadcaster publishing slot p
 * does not share a line with workers reading slot p - 1 (192 bytes). */
struct sp__bus_slot {
    _Alignas(SP_CACHELINE) _Atomic uint64_t seq; /* I2: p + 1 when position p is readable */
    sp_msg_t msg;
};

/* Per-worker state, 256 bytes: the broadcast cursor, written on every
 * broadcast the worker reads, and the eventcount, read by every sender, sit
 * in separate 128-byte blocks so senders do not pull the cursor's line. */
struct sp__bus_worker {
    /* Next broadcast position worker w will read. Written only by worker w
     * (release), read by broadcasters (acquire) and statistics (relaxed). */
    _Alignas(SP_FALSE_SHARING_RANGE) _Atomic uint64_t cursor;
    /* Eventcount. `sleepers` is non-zero while worker w is inside
     * sp_bus_worker_wait() past its announcement; it is written only then,
     * so in steady state senders read a clean shared line. */
    _Alignas(SP_FALSE_SHARING_RANGE) _Atomic uint32_t sleepers;
    /* Lock rule: `wake` is read and written only with `mu` held. `mu` and
     * `cv` are used only on the sleep path (a worker going to sleep, a sender
     * that saw sleepers != 0, sp_bus_worker_wake()). */
    unsigned wake;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

_Static_assert(sizeof(struct sp__bus_worker) % SP_FALSE_SHARING_RANGE == 0, "worker entry padding");
_Static_assert(sizeof(struct sp__bus_slot) % SP_CACHELINE == 0, "slot padding");

static int is_pow2_ge2(size_t x) { return x >= 2 && (x & (x - 1)) == 0; }

sp_bus_def_t sp_bus_def_default(unsigned workers) {
    sp_bus_def_t d = {.workers = workers,
                      .worker_capacity = 1024,
                      .main_capacity = 4096,
                      .broadcast_capacity = 256};
    return d;
}

/* ---------------------------------------------------------------- lifetime */

static void destroy_sync(struct sp__bus_worker *wk) {
    pthread_cond_destroy(&wk->cv);
    pthread_mutex_destroy(&wk->mu);
}

static int init_sync(struct sp__bus_worker *wk) {
    pthread_condattr_t ca;
    if (pthread_mutex_init(&wk->mu, NULL) != 0) return SP_ENOMEM;
    if (pthread_condattr_init(&ca) != 0) goto fail_mu;
    /* Timed waits measure a monotonic clock, immune to wall-clock steps. */
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&wk->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        goto fail_mu;
    }
    pthread_condattr_destroy(&ca);
    return 0;
fail_mu:
    pthread_mutex_destroy(&wk->mu);
    return SP_ENOMEM;
}

int sp_bus_init_def(sp_bus_t *bus, const sp_bus_def_t *def, const sp_allocator_t *alloc) {
    if (bus == NULL || def == NULL) return SP_EINVAL;
    if (def->workers == 0 || def->workers > SP_BUS_MAX_WORKERS) return SP_EINVAL;
    if (!is_pow2_ge2(def->worker_capacity) || !is_pow2_ge2(def->main_capacity) ||
        !is_pow2_ge2(def->broadcast_capacity))
        return SP_EINVAL;
    if (alloc == NULL) alloc = sp_allocator_default();
    const unsigned nw = def->workers;

    /* One block: worker entries (128-aligned), ring slots (64-aligned), then
     * the inbox structs. Checked arithmetic: capacities come from config. */
    size_t wbytes, rbytes, ibytes, total;
    if (sp_size_mul(nw, sizeof(struct sp__bus_worker), &wbytes) != 0 ||
        sp_size_mul(def->broadcast_capacity, sizeof(struct sp__bus_slot), &rbytes) != 0 ||
        sp_size_mul(nw, sizeof(sp_mpmc_t), &ibytes) != 0 || sp_size_add(wbytes, rbytes, &total) != 0 ||
        sp_size_add(total, ibytes, &total) != 0)
        return SP_EOVERFLOW;

    /* Built in place: on failure *bus is garbage (documented) but nothing
     * stays allocated. */
    sp_bus_t *b = bus;
    memset(b, 0, sizeof *b);
    b->alloc = *alloc;
    b->def = *def;
    b->workers = nw;
    b->bc_mask = (uint64_t)def->broadcast_capacity - 1;
    b->mem_size = total;
    b->mem = alloc->alloc(alloc->ctx, total, SP_FALSE_SHARING_RANGE);
    if (b->mem == NULL) return SP_ENOMEM;
    memset(b->mem, 0, total);
    b->w = (struct sp__bus_worker *)b->mem;
    b->ring = (struct sp__bus_slot *)(void *)((unsigned char *)b->mem + wbytes);
    b->inbox = (sp_mpmc_t *)(void *)((unsigned char *)b->mem + wbytes + rbytes);
    atomic_init(&b->bc_head.v, 0);
    atomic_init(&b->bc_gate.v, 0);
    for (size_t i = 0; i < def->broadcast_capacity; i++) atomic_init(&b->ring[i].seq, 0);

    int rc = 0;
    unsigned sync_done = 0, inbox_done = 0;
    for (; sync_done < nw; sync_done++) {
        atomic_init(&b->w[sync_done].cursor, 0);
        atomic_init(&b->w[sync_done].sleepers, 0);
        b->w[sync_done].wake = 0;
        if ((rc = init_sync(&b->w[sync_done])) != 0) goto fail;
    }
    for (; inbox_done < nw; inbox_done++)
        if ((rc = sp_mpmc_init(&b->inbox[inbox_done], def->worker_capacity, sizeof(sp_msg_t), alloc)) != 0)
            goto fail;
    if ((rc = sp_mpmc_init(&b->main, def->main_capacity, sizeof(sp_msg_t), alloc)) != 0) goto fail;
    return 0;

fail:
    while (inbox_done > 0) sp_mpmc_destroy(&b->inbox[--inbox_done]);
    while (sync_done > 0) destroy_sync(&b->w[--sync_done]);
    alloc->free(alloc->ctx, b->mem, total, SP_FALSE_SHARING_RANGE);
    b->mem = NULL;
    return rc;
}

int sp_bus_init(sp_bus_t *bus, unsigned workers, size_t queue_capacity, const sp_allocator_t *alloc) {
    sp_bus_def_t d = {.workers = workers,
                      .worker_capacity = queue_capacity,
                      .main_capacity = queue_capacity,
                      .broadcast_capacity = queue_capacity};
    return sp_bus_init_def(bus, &d, alloc);
}

void sp_bus_destroy(sp_bus_t *bus) {
    if (bus == NULL || bus->mem == NULL) return;
    for (unsigned i = 0; i < bus->workers; i++) {
        sp_mpmc_destroy(&bus->inbox[i]);
        destroy_sync(&bus->w[i]);
    }
    sp_mpmc_destroy(&bus->main);
    bus->alloc.free(bus->alloc.ctx, bus->mem, bus->mem_size, SP_FALSE_SHARING_RANGE);
    bus->mem = NULL;
}

unsigned sp_bus_workers(const sp_bus_t *bus) { return bus->workers; }

void sp_bus_set_main_notify(sp_bus_t *bus, sp_bus_main_notify_fn fn, void *ctx) {
    bus->main_notify = fn;
    bus->main_notify_ctx = ctx;
}

void sp_bus_set_worker_notify(sp_bus_t *bus, sp_bus_worker_notify_fn fn, void *ctx) {
    bus->worker_notify = fn;
    bus->worker_notify_ctx = ctx;
}

/* ---------------------------------------------------------------- eventcount
 *
 * Handshake (Dekker) between a sender S and the sleeping worker W:
 *   S: make the message visible (the inbox CAS on tail + seq store, or the
 *      broadcast slot's seq store); seq_cst fence X; load W.sleepers.
 *   W: sleepers += 1; seq_cst fence Y; re-check its channels (load inbox
 *      tail, load the slot seq at its cursor); sleep only if both are empty.
 * X and Y are totally ordered in the single total order of seq_cst
 * operations, and C11 7.17.3p11 (N1570; C++ [atomics.order]) says: if A is
 * sequenced before fence X, fence Y before B, and X precedes Y in that order,
 * then B observes A or a later modification. So
 * if X precedes Y, W's re-check observes S's stores (they are sequenced
 * before X), so W does not sleep; if Y precedes X, S's load observes
 * sleepers != 0 and S takes the mutex, sets `wake` and signals. Either way no
 * wake-up is lost. With acquire/release only (no StoreLoad ordering), both
 * could read the old values: W sleeps on a message S never signals.
 * `wake` under the mutex covers the window between W's re-check and its
 * cond_wait: S sets it under the same mutex, W tests it before waiting.
 * The sleepers decrement is relaxed: a stale non-zero only costs S a
 * needless lock and W one spurious return. */

static void wake_locked(struct sp__bus_worker *wk) {
    wk->wake = 1;
    pthread_cond_signal(&wk->cv);
}

/* After one or more sends to worker w: wake it if it sleeps. The caller has
 * already executed the seq_cst fence X (see above) after its last send. */
static void wake_if_sleeping_fenced(struct sp__bus_worker *wk) {
    /* Relaxed: ordered after the sender's stores by the seq_cst fence X that
     * precedes this call; see the handshake above. */
    if (atomic_load_explicit(&wk->sleepers, memory_order_relaxed) != 0) {
        pthread_mutex_lock(&wk->mu);
        wake_locked(wk);
        pthread_mutex_unlock(&wk->mu);
    }
}

/* ---------------------------------------------------------------- broadcast */

static struct sp__bus_slot *slot_at(const sp_bus_t *bus, uint64_t pos) {
    return &bus->ring[pos & bus->bc_mask];
}

/* min over the worker cursors, with acquire: pairs with each worker's
 * release store of its cursor in bc_take(); everything the worker read from
 * the ring before advancing (its copies of the slots it passed) happens
 * before our caller overwrites those slots. With relaxed, a broadcaster could
 * overwrite a slot while a worker is still copying it (torn message). */
static uint64_t min_cursor(const sp_bus_t *bus) {
    uint64_t m = atomic_load_explicit(&bus->w[0].cursor, memory_order_acquire);
    for (unsigned i = 1; i < bus->workers; i++) {
        uint64_t c = atomic_load_explicit(&bus->w[i].cursor, memory_order_acquire);
        if (c < m) m = c;
    }
    return m;
}

int sp_bus_broadcast(sp_bus_t *bus, const sp_msg_t *m) {
    if (bus == NULL || m == NULL) return SP_EINVAL;
    const uint64_t cap = bus->bc_mask + 1;
    /* Relaxed: head only proposes a position; the CAS below validates it. */
    uint64_t h = atomic_load_explicit(&bus->bc_head.v, memory_order_relaxed);
    for (;;) {
        /* Acquire: pairs with the release store of bc_gate below (by any
         * broadcaster), which itself follows acquire loads of the cursors; by
         * transitivity the workers' reads of every slot below the gate happen
         * before our overwrite (I3). With relaxed, the cached gate would carry
         * no ordering and the overwrite could race with a slow reader. */
        uint64_t gate = atomic_load_explicit(&bus->bc_gate.v, memory_order_acquire);
        /* Signed difference: h may be stale (older than the gate); then it is
         * not "full", and the CAS below fails and refreshes h. */
        if ((int64_t)(h - gate) >= (int64_t)cap) {
            gate = min_cursor(bus);
            /* Release: publishes the cursor observations made in
             * min_cursor() to the broadcasters that acquire bc_gate. Racing
             * stores may move the gate backwards; it stays a lower bound of
             * every cursor (cursors only grow), which is all I3 needs. */
            atomic_store_explicit(&bus->bc_gate.v, gate, memory_order_release);
            if ((int64_t)(h - gate) >= (int64_t)cap) {
                /* Full for our h. Return SP_EAGAIN only if h is current, so a
                 * stale h cannot cause a false "full". Relaxed: as above. */
                uint64_t h2 = atomic_load_explicit(&bus->bc_head.v, memory_order_relaxed);
                if (h2 == h) return SP_EAGAIN; /* nothing claimed, nothing published */
                h = h2;
                continue;
            }
        }
        /* Claim position h. Relaxed on both outcomes: the CAS only decides
         * which broadcaster owns h (atomicity of the RMW suffices); the
         * ordering of our slot write after the readers is carried by the
         * acquire of bc_gate/cursors above (sequenced before the write), and
         * the payload is published through slot seq below. On failure h is
         * refreshed with the current head, so a loser never stays behind. */
        if (atomic_compare_exchange_weak_explicit(&bus->bc_head.v, &h, h + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            break;
    }
    struct sp__bus_slot *s = slot_at(bus, h);
    s->msg = *m;
    /* Release: publishes the payload written just above; pairs with the
     * acquire load of seq in bc_take(). With relaxed, a worker could see
     * seq == h + 1 and copy the previous lap's (or a half-written) message. */
    atomic_store_explicit(&s->seq, h + 1, memory_order_release);

    /* Fence X of the eventcount handshake, once for all workers. */
    atomic_thread_fence(memory_order_seq_cst);
    for (unsigned i = 0; i < bus->workers; i++) wake_if_sleeping_fenced(&bus->w[i]);
    if (bus->worker_notify != NULL)
        for (unsigned i = 0; i < bus->workers; i++) bus->worker_notify(bus->worker_notify_ctx, i);
    return 0;
}

/* Worker side: copy up to max consecutive published broadcasts into out and
 * advance the cursor once. Single consumer per worker. */
static size_t bc_take(sp_bus_t *bus, struct sp__bus_worker *wk, sp_msg_t *out, size_t max) {
    /* Relaxed: only this worker writes its cursor, so it reads its own
     * latest value. */
    const uint64_t c0 = atomic_load_explicit(&wk->cursor, memory_order_relaxed);
    size_t k = 0;
    while (k < max) {
        const struct sp__bus_slot *s = slot_at(bus, c0 + k);
        /* Acquire: pairs with the release store of seq in sp_bus_broadcast();
         * the message is complete once seq == pos + 1 is seen (I4). Any other
         * value means "not yet published" (the old lap's pos + 1 - cap, or 0):
         * a slot cannot be a lap ahead, since its broadcaster needed our
         * cursor past pos (I3). */
        if (atomic_load_explicit(&s->seq, memory_order_acquire) != c0 + k + 1) break;
        out[k] = s->msg;
        k++;
    }
    if (k > 0) {
        /* Release: our copies above happen before any broadcaster that
         * acquires this cursor value (min_cursor) reuses these slots. With
         * relaxed, the next lap could overwrite a slot we are still reading. */
        atomic_store_explicit(&wk->cursor, c0 + k, memory_order_release);
    }
    return k;
}

/* Is a broadcast or an inbox message pending for worker w? A hint (the
 * message may still be in flight); used by wait after fence Y. */
static int worker_pending(const sp_bus_t *bus, unsigned w) {
    const struct sp__bus_worker *wk = &bus->w[w];
    /* Relaxed loads: ordering comes from fence Y in sp_bus_worker_wait(); the
     * real receive re-reads seq with acquire. */
    uint64_t c = atomic_load_explicit(&wk->cursor, memory_order_relaxed);
    if (atomic_load_explicit(&slot_at(bus, c)->seq, memory_order_relaxed) == c + 1) return 1;
    return sp_mpmc_size_approx(&bus->inbox[w]) != 0;
}

/* ---------------------------------------------------------------- sending */

int sp_bus_send_to_worker(sp_bus_t *bus, unsigned worker, const sp_msg_t *m) {
    if (bus == NULL || m == NULL) return SP_EINVAL;
    if (worker >= bus->workers) return SP_ERANGE;
    int rc = sp_mpmc_try_push(&bus->inbox[worker], m);
    if (rc != 0) return rc;
    /* Fence X of the eventcount handshake: orders the push's stores (tail,
     * cell seq) before the load of sleepers. */
    atomic_thread_fence(memory_order_seq_cst);
    wake_if_sleeping_fenced(&bus->w[worker]);
    if (bus->worker_notify != NULL) bus->worker_notify(bus->worker_notify_ctx, worker);
    return 0;
}

int sp_bus_send_to_main(sp_bus_t *bus, const sp_msg_t *m) {
    if (bus == NULL || m == NULL) return SP_EINVAL;
    int rc = sp_mpmc_try_push(&bus->main, m);
    if (rc != 0) return rc;
    if (bus->main_notify != NULL) bus->main_notify(bus->main_notify_ctx);
    return 0;
}

size_t sp_bus_send_to_main_n(sp_bus_t *bus, const sp_msg_t *m, size_t n) {
    if (bus == NULL || m == NULL || n == 0) return 0;
    size_t k = sp_mpmc_try_push_n(&bus->main, m, n);
    if (k > 0 && bus->main_notify != NULL) bus->main_notify(bus->main_notify_ctx);
    return k;
}

/* ---------------------------------------------------------------- receiving */

int sp_bus_recv_worker(sp_bus_t *bus, unsigned worker, sp_msg_t *out) {
    if (bus == NULL || out == NULL) return SP_EINVAL;
    if (worker >= bus->workers) return SP_ERANGE;
    if (bc_take(bus, &bus->w[worker], out, 1) == 1) return 0;
    return sp_mpmc_try_pop(&bus->inbox[worker], out);
}

size_t sp_bus_recv_worker_n(sp_bus_t *bus, unsigned worker, sp_msg_t *out, size_t max) {
    if (bus == NULL || out == NULL || worker >= bus->workers || max == 0) return 0;
    size_t k = bc_take(bus, &bus->w[worker], out, max);
    if (k < max) k += sp_mpmc_try_pop_n(&bus->inbox[worker], out + k, max - k);
    return k;
}

int sp_bus_recv_main(sp_bus_t *bus, sp_msg_t *out) {
    if (bus == NULL || out == NULL) return SP_EINVAL;
    return sp_mpmc_try_pop(&bus->main, out);
}

size_t sp_bus_recv_main_n(sp_bus_t *bus, sp_msg_t *out, size_t max) {
    if (bus == NULL || out == NULL || max == 0) return 0;
    return sp_mpmc_try_pop_n(&bus->main, out, max);
}

/* ---------------------------------------------------------------- sleeping */

/* Test hook (tests/check_bus.c only; NULL otherwise): runs on the sleep path
 * just before the announcement, so a test can inject a send into the window
 * that the re-check after fence Y must cover. Costs one load on the sleep
 * path, nothing on the fast paths. Not declared in a header on purpose. */
void (*sp__bus_test_before_announce)(sp_bus_t *bus, unsigned worker);
void (*sp__bus_test_before_announce)(sp_bus_t *bus, unsigned worker) = NULL;

static void deadline_after(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int sp_bus_worker_wait(sp_bus_t *bus, unsigned worker, int timeout_ms) {
    if (bus == NULL) return SP_EINVAL;
    if (worker >= bus->workers) return SP_ERANGE;
    struct sp__bus_worker *wk = &bus->w[worker];
    if (worker_pending(bus, worker)) return 0;
    if (timeout_ms == 0) return SP_EAGAIN;
    struct timespec deadline;
    if (timeout_ms > 0) deadline_after(&deadline, timeout_ms);

    if (sp__bus_test_before_announce != NULL) sp__bus_test_before_announce(bus, worker);
    /* Announce. Relaxed RMW: its ordering before the re-check comes from the
     * seq_cst fence Y right after it (see the handshake comment). */
    atomic_fetch_add_explicit(&wk->sleepers, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst); /* fence Y */
    if (worker_pending(bus, worker)) {
        /* Relaxed: see the handshake comment (a stale count is harmless). */
        atomic_fetch_sub_explicit(&wk->sleepers, 1, memory_order_relaxed);
        return 0;
    }
    int woke;
    pthread_mutex_lock(&wk->mu);
    while (!wk->wake) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&wk->cv, &wk->mu);
        } else if (pthread_cond_timedwait(&wk->cv, &wk->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    woke = wk->wake != 0;
    wk->wake = 0;
    pthread_mutex_unlock(&wk->mu);
    /* Relaxed: as above. */
    atomic_fetch_sub_explicit(&wk->sleepers, 1, memory_order_relaxed);
    if (woke) return 0;
    return worker_pending(bus, worker) ? 0 : SP_EAGAIN;
}

int sp_bus_worker_wake(sp_bus_t *bus, unsigned worker) {
    if (bus == NULL) return SP_EINVAL;
    if (worker >= bus->workers) return SP_ERANGE;
    struct sp__bus_worker *wk = &bus->w[worker];
    pthread_mutex_lock(&wk->mu);
    wake_locked(wk);
    pthread_mutex_unlock(&wk->mu);
    return 0;
}

/* ---------------------------------------------------------------- statistics */

size_t sp_bus_worker_depth(const sp_bus_t *bus, unsigned worker) {
    if (bus == NULL || worker >= bus->workers) return 0;
    /* Relaxed: statistics snapshot. Cursor first: it never passes head (I1),
     * so reading head afterwards normally gives head >= cursor; clamp anyway. */
    uint64_t c = atomic_load_explicit(&bus->w[worker].cursor, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&bus->bc_head.v, memory_order_relaxed);
    uint64_t lag = (int64_t)(h - c) > 0 ? h - c : 0;
    return sp_mpmc_size_approx(&bus->inbox[worker]) + (size_t)lag;
}

void sp_bus_depths(const sp_bus_t *bus, sp_bus_depths_t *out) {
    memset(out, 0, sizeof *out);
    if (bus == NULL) return;
    out->main = sp_mpmc_size_approx(&bus->main);
    uint64_t minc = UINT64_MAX;
    for (unsigned i = 0; i < bus->workers; i++) {
        size_t d = sp_mpmc_size_approx(&bus->inbox[i]);
        out->worker_total += d;
        if (d > out->worker_max) out->worker_max = d;
        /* Relaxed: statistics snapshot. */
        uint64_t c = atomic_load_explicit(&bus->w[i].cursor, memory_order_relaxed);
        if (c < minc) minc = c;
    }
    /* Relaxed: statistics snapshot; head read after the cursors (see above). */
    uint64_t h = atomic_load_explicit(&bus->bc_head.v, memory_order_relaxed);
    out->broadcast_lag_max = (int64_t)(h - minc) > 0 ? (size_t)(h - minc) : 0;
}
