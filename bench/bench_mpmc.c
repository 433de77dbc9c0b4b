/* bench_mpmc.c: queue throughput, pointer-sized items, ring of 1024.
 *
 * Each run moves N items (10M; 2M with --quick) from producer threads to
 * consumer threads; producers are pinned to CPU0/CPU1 alternately and each
 * consumer to the other CPU than its partner producer (1P1C: producer CPU0,
 * consumer CPU1). Timed: from the start signal until the last consumer is
 * done. Figure: M items/s. Self-check: every consumer checks per-producer FIFO
 * order, and the totals (count and sum of every item) must match exactly.
 * A thread that finds the queue full/empty spins with `pause`, yielding
 * every 256 failures (same policy for every row).
 *
 * Rows (every peer is the real library, linked into this process; a peer
 * that configure did not find is skipped with a line that says so):
 *   sp_mpmc 1P1C            sp_mpmc_try_push_ptr / try_pop_ptr (inline fast path)
 *   mutex+condvar ring 1P1C baseline written below: pthread mutex, two condvars
 *   plain Vyukov ring 1P1C  the textbook bounded MPMC queue (1024cores), written
 *                           below: 16-byte cells, one CAS per item
 *   ck_ring MPMC/SPSC 1P1C  Concurrency Kit ck_ring_enqueue_mpmc / _spsc
 *   DPDK mp/mc, sp/sc 1P1C  rte_ring_enqueue / rte_ring_dequeue on a ring made
 *                           MP/MC or SP/SC, 1024 usable slots (RING_F_EXACT_SZ)
 *   DPDK burst32 mp/mc, sp/sc  rte_ring_enqueue_burst / dequeue_burst, 32 at a time
 *   moodycamel 1P1C, bulk32 ConcurrentQueue<void *> with producer/consumer
 *                           tokens, try_enqueue / try_dequeue (_bulk, 32)
 *   sp_spsc 1P1C            FastForward ring sp_spsc_try_push / try_pop
 *   sp_mpmc batch32 1P1C    sp_mpmc_try_push_n / try_pop_n, 32 at a time
 *   sp_spsc batch32 1P1C    sp_spsc_try_push_n / try_pop_n, 32 at a time
 *   sp_spsc_batch 1P1C, batch32  the batch ring sp_spsc_batch_t (Lamport ring,
 *                           cached indices): try_push / try_pop, and
 *                           try_push_n / try_pop_n 32 at a time
 *   sp_mpmc_burst mp/mc, sp/sc burst32 1P1C  sp_mpmc_burst_push / pop, 32 at a
 *                           time: the head/tail burst ring (DPDK's design, with
 *                           cached indices), made multi/multi or single/single
 *   sp_mpmc 2P2C, mutex+condvar ring 2P2C
 * DPDK and moodycamel are reached through one out-of-line call per operation
 * (bench/peers.h: DPDK's inline ring code must be compiled without strict
 * aliasing, moodycamel is C++); sp_mpmc's batch calls are out of line too. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "spacesim/mpmc.h"
#include "spacesim/spsc.h"

#ifdef SP_HAVE_CK
#include <ck_ring.h>
#endif
#include "peers.h"

#define RING 1024
#define BATCH 32
#define MAXT 8
#define SEQ_BITS 40

static uint64_t g_items;

/* ------------------------------------------------------------ mutex+condvar ring baseline */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t not_full, not_empty;
    void *buf[RING];
    size_t head, tail; /* free-running, under lock */
    int waiting_p, waiting_c;
} mring_t;

static void mring_init(mring_t *r) {
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->not_full, NULL);
    pthread_cond_init(&r->not_empty, NULL);
    r->head = r->tail = 0;
    r->waiting_p = r->waiting_c = 0;
}
static void mring_destroy(mring_t *r) {
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->not_full);
    pthread_cond_destroy(&r->not_empty);
}
/* Blocking push/pop; signal only when someone waits (a fair, not naive, baseline). */
static void mring_push(mring_t *r, void *p) {
    pthread_mutex_lock(&r->lock);
    while (r->tail - r->head == RING) {
        r->waiting_p++;
        pthread_cond_wait(&r->not_full, &r->lock);
        r->waiting_p--;
    }
    r->buf[r->tail++ % RING] = p;
    if (r->waiting_c) pthread_cond_signal(&r->not_empty);
    pthread_mutex_unlock(&r->lock);
}
/* Returns 0 with an item, or -1 when `done` is set and the ring is empty. */
static int mring_pop(mring_t *r, void **out, _Atomic int *producers_left) {
    pthread_mutex_lock(&r->lock);
    while (r->tail == r->head) {
        /* Relaxed: read under the lock that the last producer's final push
         * also took, which orders it. */
        if (atomic_load_explicit(producers_left, memory_order_relaxed) == 0) {
            pthread_mutex_unlock(&r->lock);
            return -1;
        }
        r->waiting_c++;
        pthread_cond_wait(&r->not_empty, &r->lock);
        r->waiting_c--;
    }
    *out = r->buf[r->head++ % RING];
    if (r->waiting_p) pthread_cond_signal(&r->not_full);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* ------------------------------------------------------------ plain Vyukov ring baseline */

/* Dmitry Vyukov's bounded MPMC queue as published (1024cores.net), for
 * pointers: a cell is {seq, data}, 16 bytes; enqueue_pos and dequeue_pos on
 * their own 128-byte blocks. The orders are the published ones. */
typedef struct {
    _Atomic size_t seq;
    void *data;
} vcell_t;
typedef struct {
    _Alignas(128) vcell_t *buf;
    size_t mask;
    _Alignas(128) _Atomic size_t enq;
    _Alignas(128) _Atomic size_t deq;
    _Alignas(128) char end;
} vring_t;

static int vring_init(vring_t *v) {
    v->buf = aligned_alloc(128, RING * sizeof(vcell_t));
    if (v->buf == NULL) return -1;
    v->mask = RING - 1;
    /* Relaxed: single-threaded init, published by pthread_create. */
    for (size_t i = 0; i < RING; i++) atomic_store_explicit(&v->buf[i].seq, i, memory_order_relaxed);
    atomic_store_explicit(&v->enq, 0, memory_order_relaxed);
    atomic_store_explicit(&v->deq, 0, memory_order_relaxed);
    return 0;
}

static inline int vring_push(vring_t *v, void *data) {
    vcell_t *c;
    size_t pos = atomic_load_explicit(&v->enq, memory_order_relaxed); /* hint, validated by CAS */
    for (;;) {
        c = &v->buf[pos & v->mask];
        /* Acquire: pairs with the dequeuer's release of seq = pos. */
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            /* Relaxed: the claim only; the payload is published through seq. */
            if (atomic_compare_exchange_weak_explicit(&v->enq, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return 0;
        } else {
            pos = atomic_load_explicit(&v->enq, memory_order_relaxed);
        }
    }
    c->data = data;
    /* Release: publishes data to the dequeuer's acquire of seq == pos + 1. */
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    return 1;
}

static inline int vring_pop(vring_t *v, void **data) {
    vcell_t *c;
    size_t pos = atomic_load_explicit(&v->deq, memory_order_relaxed); /* hint */
    for (;;) {
        c = &v->buf[pos & v->mask];
        /* Acquire: pairs with the enqueuer's release of seq = pos + 1. */
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&v->deq, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return 0;
        } else {
            pos = atomic_load_explicit(&v->deq, memory_order_relaxed);
        }
    }
    *data = c->data;
    /* Release: our read of data happens before the next lap's enqueuer writes. */
    atomic_store_explicit(&c->seq, pos + v->mask + 1, memory_order_release);
    return 1;
}

/* ------------------------------------------------------------ run scaffolding */

typedef enum {
    Q_SP_MPMC,
    Q_MUTEX,
    Q_CK_MPMC,
    Q_SP_SPSC,
    Q_CK_SPSC,
    Q_SP_MPMC_BATCH,
    Q_SP_SPSC_BATCH,
    Q_VYUKOV,
    Q_DPDK,       /* single-item; mp/mc or sp/sc after cfg.single */
    Q_DPDK_BURST, /* burst 32; mp/mc or sp/sc after cfg.single */
    Q_MOODY,
    Q_MOODY_BULK,
    Q_SPSCB,       /* sp_spsc_batch_t, one at a time */
    Q_SPSCB_BATCH, /* sp_spsc_batch_t, 32 at a time */
    Q_SP_BURST, /* sp_mpmc_burst_t, 32 at a time; mp/mc or sp/sc after cfg.single */
} qkind_t;

typedef struct {
    qkind_t kind;
    int np, nc;
    int single; /* DPDK rows: 1 for an SP/SC ring */
} cfg_t;

typedef struct run run_t;
/* A consumer's self-check state. Kept in the consumer's own stack frame
 * during the run (the compiler may keep it in registers) and copied to its
 * worker_t at the end. */
typedef struct {
    uint64_t count, sum, errors;
    uint64_t next[MAXT]; /* per-producer: lowest sequence still acceptable */
} checker_t;
/* One per thread, each in its own 128-byte block: nothing a thread writes
 * shares a line (or an adjacent-line prefetch pair) with another thread's. */
typedef struct {
    _Alignas(128) run_t *r;
    int id;
    checker_t chk;
    uint64_t end_ns;
} worker_t;

struct run {
    cfg_t cfg;
    uint64_t per_producer;
    sp_mpmc_t mq;
    sp_spsc_t sq;
    sp_mpmc_burst_t bq;
    sp_spsc_batch_t bsq;
    mring_t mr;
#ifdef SP_HAVE_CK
    ck_ring_t ck;
    ck_ring_buffer_t *ckbuf;
#endif
    vring_t vr;
    void *dpdk;  /* struct rte_ring * (bench/peer_dpdk.c) */
    void *moody; /* moodycamel::ConcurrentQueue<void *> * */
    /* Start/stop flags in their own 128-byte block: polled by waiting threads. */
    _Alignas(128) _Atomic int ready;
    _Atomic int go;
    _Atomic int producers_left;
    worker_t w[2 * MAXT];
};

/* Wait policy after a failed attempt, the same for every lock-free row:
 * `pause`, and sched_yield after 256 CONSECUTIVE failures (the caller resets
 * *fails to 0 on success), i.e. only when the other side looks descheduled.
 * (A counter that was never reset yielded every 256th failure of the whole
 * run; on this shared machine each yield can hand the CPU to another
 * process for a time slice.) */
static inline void backoff(unsigned *fails) {
    if (++*fails % 256 == 0)
        sched_yield();
    else
        __builtin_ia32_pause();
}

static inline void check_item(checker_t *w, uint64_t v) {
    uint64_t item = v - 1; /* items travel as item + 1: the SPSC ring cannot carry NULL */
    uint64_t p = item >> SEQ_BITS, seq = item & (((uint64_t)1 << SEQ_BITS) - 1);
    if (p >= MAXT || seq < w->next[p]) w->errors++;
    else w->next[p] = seq + 1;
    w->count++;
    w->sum += item;
}

static void wait_go(run_t *r) {
    /* Release/acquire: ready counts arrivals; go is the start pistol (the
     * main thread acquires ready == n, then releases go). */
    atomic_fetch_add_explicit(&r->ready, 1, memory_order_release);
    while (!atomic_load_explicit(&r->go, memory_order_acquire)) __builtin_ia32_pause();
}

static void *producer(void *arg) {
    worker_t *w = arg;
    run_t *r = w->r;
    sp_bench_pin_self(w->id % 2);
    wait_go(r);
    uint64_t base = ((uint64_t)w->id << SEQ_BITS) + 1, n = r->per_producer;
    unsigned fails = 0;
    switch (r->cfg.kind) {
    case Q_SP_MPMC:
        for (uint64_t i = 0; i < n; i++) {
            while (sp_mpmc_try_push_ptr(&r->mq, (void *)(uintptr_t)(base + i)) != 0) backoff(&fails);
            fails = 0;
        }
        break;
    case Q_MUTEX:
        for (uint64_t i = 0; i < n; i++) mring_push(&r->mr, (void *)(uintptr_t)(base + i));
        break;
    case Q_SPSCB:
        for (uint64_t i = 0; i < n; i++) {
            while (sp_spsc_batch_try_push(&r->bsq, (void *)(uintptr_t)(base + i)) != 0) backoff(&fails);
            fails = 0;
        }
        break;
    case Q_SP_SPSC:
        for (uint64_t i = 0; i < n; i++) {
            while (sp_spsc_try_push(&r->sq, (void *)(uintptr_t)(base + i)) != 0) backoff(&fails);
            fails = 0;
        }
        break;
#ifdef SP_HAVE_CK
    case Q_CK_MPMC:
        for (uint64_t i = 0; i < n; i++) {
            while (!ck_ring_enqueue_mpmc(&r->ck, r->ckbuf, (void *)(uintptr_t)(base + i))) backoff(&fails);
            fails = 0;
        }
        break;
    case Q_CK_SPSC:
        for (uint64_t i = 0; i < n; i++) {
            while (!ck_ring_enqueue_spsc(&r->ck, r->ckbuf, (void *)(uintptr_t)(base + i))) backoff(&fails);
            fails = 0;
        }
        break;
#else
    case Q_CK_MPMC:
    case Q_CK_SPSC:
        break;
#endif
    case Q_VYUKOV:
        for (uint64_t i = 0; i < n; i++) {
            while (!vring_push(&r->vr, (void *)(uintptr_t)(base + i))) backoff(&fails);
            fails = 0;
        }
        break;
#ifdef SP_HAVE_DPDK
    case Q_DPDK:
        for (uint64_t i = 0; i < n; i++) {
            while (!peer_dpdk_enqueue(r->dpdk, (void *)(uintptr_t)(base + i))) backoff(&fails);
            fails = 0;
        }
        break;
#endif
#ifdef SP_HAVE_MOODY
    case Q_MOODY: {
        void *tok = peer_moody_ptok(r->moody);
        if (tok == NULL) abort();
        for (uint64_t i = 0; i < n; i++) {
            while (!peer_moody_try_enqueue(r->moody, tok, (void *)(uintptr_t)(base + i))) backoff(&fails);
            fails = 0;
        }
        peer_moody_ptok_free(tok);
        break;
    }
#endif
    case Q_DPDK_BURST:
    case Q_SPSCB_BATCH:
    case Q_MOODY_BULK:
    case Q_SP_BURST:
    case Q_SP_MPMC_BATCH:
    case Q_SP_SPSC_BATCH: {
        void *b[BATCH];
#ifdef SP_HAVE_MOODY
        void *tok = NULL;
        if (r->cfg.kind == Q_MOODY_BULK && (tok = peer_moody_ptok(r->moody)) == NULL) abort();
#endif
        for (uint64_t i = 0; i < n;) {
            size_t k = n - i < BATCH ? (size_t)(n - i) : BATCH;
            for (size_t j = 0; j < k; j++) b[j] = (void *)(uintptr_t)(base + i + j);
            size_t done = 0;
            while (done < k) {
                size_t d = 0;
                switch (r->cfg.kind) {
                case Q_SP_MPMC_BATCH:
                    d = sp_mpmc_try_push_n(&r->mq, b + done, k - done);
                    break;
                case Q_SP_SPSC_BATCH:
                    d = sp_spsc_try_push_n(&r->sq, b + done, k - done);
                    break;
                case Q_SP_BURST:
                    d = sp_mpmc_burst_push(&r->bq, b + done, k - done);
                    break;
                case Q_SPSCB_BATCH:
                    d = sp_spsc_batch_try_push_n(&r->bsq, b + done, k - done);
                    break;
#ifdef SP_HAVE_DPDK
                case Q_DPDK_BURST:
                    d = peer_dpdk_enqueue_burst(r->dpdk, b + done, (unsigned)(k - done));
                    break;
#endif
#ifdef SP_HAVE_MOODY
                case Q_MOODY_BULK:
                    d = peer_moody_try_enqueue_bulk(r->moody, tok, b + done, k - done);
                    break;
#endif
                default:
                    abort();
                }
                if (d == 0)
                    backoff(&fails);
                else
                    fails = 0;
                done += d;
            }
            i += k;
        }
#ifdef SP_HAVE_MOODY
        if (tok != NULL) peer_moody_ptok_free(tok);
#endif
        break;
    }
    default:
        abort(); /* a peer row whose peer is not compiled in never runs */
    }
    /* Release: our pushes happen before a consumer that acquires 0 decides
     * the queue is drained. */
    atomic_fetch_sub_explicit(&r->producers_left, 1, memory_order_release);
    if (r->cfg.kind == Q_MUTEX) {
        /* Wake consumers blocked on an empty ring so they see producers_left. */
        pthread_mutex_lock(&r->mr.lock);
        pthread_cond_broadcast(&r->mr.not_empty);
        pthread_mutex_unlock(&r->mr.lock);
    }
    return NULL;
}

/* One non-blocking pop attempt (not for Q_MUTEX); returns items consumed.
 * tok: the consumer's moodycamel token (NULL for the other rows). */
static inline size_t pop_some(run_t *r, checker_t *w, void *tok) {
    void *b[BATCH];
    (void)tok;
    switch (r->cfg.kind) {
    case Q_VYUKOV:
        if (!vring_pop(&r->vr, &b[0])) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
#ifdef SP_HAVE_DPDK
    case Q_DPDK:
        if (!peer_dpdk_dequeue(r->dpdk, &b[0])) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
    case Q_DPDK_BURST: {
        size_t k = peer_dpdk_dequeue_burst(r->dpdk, b, BATCH);
        for (size_t j = 0; j < k; j++) check_item(w, (uint64_t)(uintptr_t)b[j]);
        return k;
    }
#endif
#ifdef SP_HAVE_MOODY
    case Q_MOODY:
        if (!peer_moody_try_dequeue(r->moody, tok, &b[0])) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
    case Q_MOODY_BULK: {
        size_t k = peer_moody_try_dequeue_bulk(r->moody, tok, b, BATCH);
        for (size_t j = 0; j < k; j++) check_item(w, (uint64_t)(uintptr_t)b[j]);
        return k;
    }
#endif
    case Q_SP_MPMC:
        if (sp_mpmc_try_pop_ptr(&r->mq, &b[0]) != 0) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
    case Q_SP_SPSC:
        if (sp_spsc_try_pop(&r->sq, &b[0]) != 0) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
#ifdef SP_HAVE_CK
    case Q_CK_MPMC:
        if (!ck_ring_dequeue_mpmc(&r->ck, r->ckbuf, &b[0])) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
    case Q_CK_SPSC:
        if (!ck_ring_dequeue_spsc(&r->ck, r->ckbuf, &b[0])) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
#endif
    case Q_SP_MPMC_BATCH: {
        size_t k = sp_mpmc_try_pop_n(&r->mq, b, BATCH);
        for (size_t j = 0; j < k; j++) check_item(w, (uint64_t)(uintptr_t)b[j]);
        return k;
    }
    case Q_SP_SPSC_BATCH: {
        size_t k = sp_spsc_try_pop_n(&r->sq, b, BATCH);
        for (size_t j = 0; j < k; j++) check_item(w, (uint64_t)(uintptr_t)b[j]);
        return k;
    }
    case Q_SPSCB:
        if (sp_spsc_batch_try_pop(&r->bsq, &b[0]) != 0) return 0;
        check_item(w, (uint64_t)(uintptr_t)b[0]);
        return 1;
    case Q_SPSCB_BATCH: {
        size_t k = sp_spsc_batch_try_pop_n(&r->bsq, b, BATCH);
        for (size_t j = 0; j < k; j++) check_item(w, (uint64_t)(uintptr_t)b[j]);
        return k;
    }
    case Q_SP_BURST: {
        size_t k = sp_mpmc_burst_pop(&r->bq, b, BATCH);
        for (size_t j = 0; j < k; j++) check_item(w, (uint64_t)(uintptr_t)b[j]);
        return k;
    }
    default:
        return 0;
    }
}

static void *consumer(void *arg) {
    worker_t *w = arg;
    run_t *r = w->r;
    sp_bench_pin_self(w->id % 2 + 1);
    void *tok = NULL;
#ifdef SP_HAVE_MOODY
    if ((r->cfg.kind == Q_MOODY || r->cfg.kind == Q_MOODY_BULK) && (tok = peer_moody_ctok(r->moody)) == NULL)
        abort();
#endif
    wait_go(r);
    checker_t chk = {0};
    if (r->cfg.kind == Q_MUTEX) {
        void *p;
        while (mring_pop(&r->mr, &p, &r->producers_left) == 0) check_item(&chk, (uint64_t)(uintptr_t)p);
    } else {
        unsigned fails = 0;
        for (;;) {
            if (pop_some(r, &chk, tok) > 0) {
                fails = 0;
                continue;
            }
            /* Acquire: pairs with the producers' release decrement; after 0,
             * an empty pop means drained. */
            if (atomic_load_explicit(&r->producers_left, memory_order_acquire) == 0) {
                while (pop_some(r, &chk, tok) > 0) {
                }
                break;
            }
            backoff(&fails);
        }
    }
    w->end_ns = sp_bench_now_ns();
    w->chk = chk;
#ifdef SP_HAVE_MOODY
    if (tok != NULL) peer_moody_ctok_free(tok);
#endif
    return NULL;
}

static double run_queue(void *arg) {
    const cfg_t *cfg = arg;
    run_t *r = aligned_alloc(128, (sizeof(run_t) + 127) / 128 * 128);
    if (r == NULL) return -1;
    *r = (run_t){.cfg = *cfg};
    int np = cfg->np, nc = cfg->nc;
    r->per_producer = g_items / (uint64_t)np;
    switch (cfg->kind) {
    case Q_SP_MPMC:
    case Q_SP_MPMC_BATCH:
        if (sp_mpmc_init(&r->mq, RING, sizeof(void *), NULL) != 0) return -1;
        break;
    case Q_SP_SPSC:
    case Q_SP_SPSC_BATCH:
        if (sp_spsc_init(&r->sq, RING, NULL) != 0) return -1;
        break;
    case Q_SP_BURST:
        if (sp_mpmc_burst_init(&r->bq, RING, cfg->single, NULL) != 0) return -1;
        break;
    case Q_SPSCB:
    case Q_SPSCB_BATCH:
        if (sp_spsc_batch_init(&r->bsq, RING, NULL) != 0) return -1;
        break;
    case Q_MUTEX:
        mring_init(&r->mr);
        break;
    case Q_VYUKOV:
        if (vring_init(&r->vr) != 0) return -1;
        break;
    case Q_DPDK:
    case Q_DPDK_BURST:
#ifdef SP_HAVE_DPDK
        if ((r->dpdk = peer_dpdk_create(RING, cfg->single)) == NULL) return -1;
#else
        free(r);
        return -1;
#endif
        break;
    case Q_MOODY:
    case Q_MOODY_BULK:
#ifdef SP_HAVE_MOODY
        if ((r->moody = peer_moody_create(RING, np)) == NULL) return -1;
#else
        free(r);
        return -1;
#endif
        break;
    case Q_CK_MPMC:
    case Q_CK_SPSC:
#ifdef SP_HAVE_CK
        r->ckbuf = aligned_alloc(128, RING * sizeof(ck_ring_buffer_t));
        if (r->ckbuf == NULL) return -1;
        ck_ring_init(&r->ck, RING);
#else
        free(r);
        return -1;
#endif
        break;
    }
    atomic_init(&r->ready, 0);
    atomic_init(&r->go, 0);
    atomic_init(&r->producers_left, np);
    pthread_t t[2 * MAXT];
    for (int i = 0; i < np + nc; i++) {
        r->w[i].r = r;
        r->w[i].id = i < np ? i : i - np;
        if (pthread_create(&t[i], NULL, i < np ? producer : consumer, &r->w[i]) != 0) return -1;
    }
    /* Acquire: all threads have pinned themselves and are spinning. */
    while (atomic_load_explicit(&r->ready, memory_order_acquire) != np + nc) sched_yield();
    uint64_t t0 = sp_bench_now_ns();
    atomic_store_explicit(&r->go, 1, memory_order_release); /* start pistol; see wait_go */
    for (int i = 0; i < np + nc; i++) pthread_join(t[i], NULL);
    uint64_t t1 = 0;
    uint64_t count = 0, sum = 0, errors = 0;
    for (int i = np; i < np + nc; i++) {
        if (r->w[i].end_ns > t1) t1 = r->w[i].end_ns;
        count += r->w[i].chk.count;
        sum += r->w[i].chk.sum;
        errors += r->w[i].chk.errors;
    }
    /* Expected sum of all items (p << 40 | seq). */
    uint64_t n = r->per_producer, want = 0;
    for (int p = 0; p < np; p++) want += ((uint64_t)p << SEQ_BITS) * n + n * (n - 1) / 2;
    switch (cfg->kind) {
    case Q_SP_MPMC:
    case Q_SP_MPMC_BATCH:
        sp_mpmc_destroy(&r->mq);
        break;
    case Q_SP_SPSC:
    case Q_SP_SPSC_BATCH:
        sp_spsc_destroy(&r->sq);
        break;
    case Q_SP_BURST:
        sp_mpmc_burst_destroy(&r->bq);
        break;
    case Q_SPSCB:
    case Q_SPSCB_BATCH:
        sp_spsc_batch_destroy(&r->bsq);
        break;
    case Q_MUTEX:
        mring_destroy(&r->mr);
        break;
    case Q_VYUKOV:
        free(r->vr.buf);
        break;
    case Q_DPDK:
    case Q_DPDK_BURST:
#ifdef SP_HAVE_DPDK
        peer_dpdk_free(r->dpdk);
#endif
        break;
    case Q_MOODY:
    case Q_MOODY_BULK:
#ifdef SP_HAVE_MOODY
        peer_moody_free(r->moody);
#endif
        break;
    default:
#ifdef SP_HAVE_CK
        free(r->ckbuf);
#endif
        break;
    }
    free(r);
    if (errors != 0 || count != n * (uint64_t)np || sum != want) return -1;
    return (double)count / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* Rows, in the order of rows[] in main. */
enum {
    R_SP_MPMC,
    R_MUTEX,
    R_VYUKOV,
    R_SP_SPSC,
    R_SP_MPMC_B,
    R_SP_SPSC_B,
    R_SP_MPMC22,
    R_MUTEX22,
    R_CK_MPMC,
    R_CK_SPSC,
    R_DPDK_MPMC,
    R_DPDK_SPSC,
    R_DPDK_MPMC_B,
    R_DPDK_SPSC_B,
    R_MOODY,
    R_MOODY_B,
    R_SP_BURST,
    R_SP_BURST_SPSC,
    R_SPSCB,
    R_SPSCB_B,
    R_COUNT
};

static int row_present(int i) {
    switch (i) {
    case R_CK_MPMC:
    case R_CK_SPSC:
#ifdef SP_HAVE_CK
        return 1;
#else
        return 0;
#endif
    case R_DPDK_MPMC:
    case R_DPDK_SPSC:
    case R_DPDK_MPMC_B:
    case R_DPDK_SPSC_B:
#ifdef SP_HAVE_DPDK
        return 1;
#else
        return 0;
#endif
    case R_MOODY:
    case R_MOODY_B:
#ifdef SP_HAVE_MOODY
        return 1;
#else
        return 0;
#endif
    default:
        return 1;
    }
}

static const char *row_peer(int i) {
    return i == R_CK_MPMC || i == R_CK_SPSC ? "Concurrency Kit (libck-dev)"
           : i == R_MOODY || i == R_MOODY_B ? "moodycamel (libconcurrentqueue-dev)"
                                            : "DPDK (libdpdk-dev)";
}

static const char *const g_names[R_COUNT] = {
    [R_SP_MPMC] = "sp_mpmc 1P1C",
    [R_MUTEX] = "mutex+condvar ring 1P1C",
    [R_VYUKOV] = "plain Vyukov ring 1P1C",
    [R_SP_SPSC] = "sp_spsc 1P1C",
    [R_SP_MPMC_B] = "sp_mpmc batch32 1P1C",
    [R_SP_SPSC_B] = "sp_spsc batch32 1P1C",
    [R_SP_MPMC22] = "sp_mpmc 2P2C",
    [R_MUTEX22] = "mutex+condvar ring 2P2C",
    [R_CK_MPMC] = "ck_ring MPMC 1P1C",
    [R_CK_SPSC] = "ck_ring SPSC 1P1C",
    [R_DPDK_MPMC] = "DPDK rte_ring mp/mc 1P1C",
    [R_DPDK_SPSC] = "DPDK rte_ring sp/sc 1P1C",
    [R_DPDK_MPMC_B] = "DPDK rte_ring mp/mc burst32 1P1C",
    [R_DPDK_SPSC_B] = "DPDK rte_ring sp/sc burst32 1P1C",
    [R_MOODY] = "moodycamel 1P1C",
    [R_MOODY_B] = "moodycamel bulk32 1P1C",
    [R_SP_BURST] = "sp_mpmc_burst mp/mc burst32 1P1C",
    [R_SP_BURST_SPSC] = "sp_mpmc_burst sp/sc burst32 1P1C",
    [R_SPSCB] = "sp_spsc_batch 1P1C",
    [R_SPSCB_B] = "sp_spsc_batch batch32 1P1C",
};

/* SP_BENCH_ONLY=word,word... in the environment keeps only the rows whose
 * name contains one of the words (for quick experiments); comparisons with a
 * row left out are not printed. */
static int row_selected(int i) {
    const char *only = getenv("SP_BENCH_ONLY");
    if (only == NULL || *only == '\0') return 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", only);
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save))
        if (strstr(g_names[i], w) != NULL) return 1;
    return 0;
}

/* One comparison line, or the line saying the peer was not there. note: what
 * the line must add (a property the peer gives up), or NULL. */
static void report(sp_bench_row_t *rows, const int *slot, int s, int b, const char *note) {
    if (!row_selected(s) || !row_selected(b) || !row_present(s)) return;
    if (!row_present(b)) {
        printf("%s vs %s: skipped: %s not installed (quickstart.sh bench installs it)\n", g_names[s], g_names[b],
               row_peer(b));
        return;
    }
    sp_bench_report(&rows[slot[s]], &rows[slot[b]]);
    if (note != NULL) printf("    note: %s\n", note);
}

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "mpmc");
    g_items = sp_bench_quick() ? 2000000 : 10000000;
    static const cfg_t cfgs[R_COUNT] = {
        [R_SP_MPMC] = {Q_SP_MPMC, 1, 1, 0},        [R_MUTEX] = {Q_MUTEX, 1, 1, 0},
        [R_VYUKOV] = {Q_VYUKOV, 1, 1, 0},          [R_SP_SPSC] = {Q_SP_SPSC, 1, 1, 0},
        [R_SP_MPMC_B] = {Q_SP_MPMC_BATCH, 1, 1, 0}, [R_SP_SPSC_B] = {Q_SP_SPSC_BATCH, 1, 1, 0},
        [R_SP_MPMC22] = {Q_SP_MPMC, 2, 2, 0},      [R_MUTEX22] = {Q_MUTEX, 2, 2, 0},
        [R_CK_MPMC] = {Q_CK_MPMC, 1, 1, 0},        [R_CK_SPSC] = {Q_CK_SPSC, 1, 1, 0},
        [R_DPDK_MPMC] = {Q_DPDK, 1, 1, 0},         [R_DPDK_SPSC] = {Q_DPDK, 1, 1, 1},
        [R_DPDK_MPMC_B] = {Q_DPDK_BURST, 1, 1, 0}, [R_DPDK_SPSC_B] = {Q_DPDK_BURST, 1, 1, 1},
        [R_MOODY] = {Q_MOODY, 1, 1, 0},            [R_MOODY_B] = {Q_MOODY_BULK, 1, 1, 0},
        [R_SP_BURST] = {Q_SP_BURST, 1, 1, 0},      [R_SP_BURST_SPSC] = {Q_SP_BURST, 1, 1, 1},
        [R_SPSCB] = {Q_SPSCB, 1, 1, 0},            [R_SPSCB_B] = {Q_SPSCB_BATCH, 1, 1, 0},
    };
    sp_bench_row_t rows[R_COUNT];
    int slot[R_COUNT], nrows = 0;
    for (int i = 0; i < R_COUNT; i++) {
        slot[i] = -1;
        if (!row_present(i) || !row_selected(i)) continue;
        slot[i] = nrows;
        rows[nrows++] = (sp_bench_row_t){.name = g_names[i], .unit = "M items/s", .higher_is_better = 1,
                                         .two_thread = 1, .fn = run_queue, .arg = (void *)&cfgs[i]};
    }
    sp_bench_run(rows, nrows);
    report(rows, slot, R_SP_MPMC, R_MUTEX, NULL);
    report(rows, slot, R_SP_MPMC, R_VYUKOV, NULL);
    report(rows, slot, R_SP_MPMC, R_CK_MPMC, NULL);
    report(rows, slot, R_SP_MPMC, R_DPDK_MPMC, NULL);
    report(rows, slot, R_SP_MPMC, R_MOODY, NULL);
    /* The 10x-the-mutex-ring target, put in scale: every per-item MPMC ring
     * of this run against the same mutex ring. */
    report(rows, slot, R_VYUKOV, R_MUTEX, NULL);
    report(rows, slot, R_CK_MPMC, R_MUTEX, NULL);
    report(rows, slot, R_DPDK_MPMC, R_MUTEX, NULL);
    report(rows, slot, R_MOODY, R_MUTEX, NULL);
    report(rows, slot, R_SP_SPSC, R_CK_SPSC, NULL);
    report(rows, slot, R_SP_SPSC, R_DPDK_SPSC, NULL);
    report(rows, slot, R_SP_MPMC_B, R_DPDK_MPMC_B,
           "DPDK's burst ring moves one head/tail pair per burst and gives up a property sp_mpmc keeps: "
           "a producer stalled between its reservation and its tail update blocks every later producer's "
           "items (and a stalled consumer every producer)");
    report(rows, slot, R_SP_MPMC_B, R_MOODY_B, NULL);
    report(rows, slot, R_SP_MPMC_B, R_SP_MPMC, NULL);
    report(rows, slot, R_SP_BURST, R_DPDK_MPMC_B,
           "same design and same property as DPDK's burst ring (a producer stalled mid-burst blocks the later "
           "ones); sp_mpmc batch keeps per-cell progress instead");
    report(rows, slot, R_SP_BURST, R_SP_MPMC_B, NULL);
    report(rows, slot, R_SP_SPSC_B, R_DPDK_SPSC_B,
           "sp_spsc_t's consumer writes NULL into every slot, so each slot line crosses twice per lap; "
           "DPDK's and sp_spsc_batch_t's slots go one way");
    report(rows, slot, R_SPSCB_B, R_DPDK_SPSC_B, NULL);
    report(rows, slot, R_SPSCB_B, R_SP_SPSC_B, NULL);
    report(rows, slot, R_SP_BURST_SPSC, R_DPDK_SPSC_B, NULL);
    report(rows, slot, R_SP_BURST_SPSC, R_SP_SPSC_B, NULL);
    report(rows, slot, R_SP_SPSC_B, R_SP_SPSC, NULL);
    report(rows, slot, R_SPSCB, R_SP_SPSC, NULL);
    report(rows, slot, R_SPSCB, R_DPDK_SPSC, NULL);
    report(rows, slot, R_SP_MPMC22, R_MUTEX22, NULL);
    return sp_bench_finish();
}
