/* check_stress_bus.c: producers send to workers and broadcast while workers
 * consume and reply to the main thread, all through one sp_bus_t.
 *
 * Message plan:
 *   direct   WeaponFired  origin = producer p, seq = p's direct counter,
 *                         tick = destination worker, ship_id = item id,
 *                         target_id = mix(ship_id) (payload check).
 *   broadcast ShipMovement origin = p, seq = p's broadcast counter,
 *                         ship_id = item id, position/velocity derived from it.
 *   stop     SystemAlert  broadcast by main after every reply arrived.
 *   reply    WeaponFired  origin = worker w, seq = w's reply counter, carrying
 *                         the direct message's ship_id/target_id.
 * Checks (all exact, no sleeps):
 *   - routing: a worker only receives direct messages addressed to it;
 *   - per-origin FIFO: each worker sees every producer's seqs strictly
 *     increasing; main sees each worker's reply seqs contiguous 0,1,2,...;
 *   - exactly once end to end: main sets one bit per (producer, seq) and
 *     fails on a duplicate; at the end every bit is set;
 *   - broadcasts: every worker sees every broadcast exactly once, each
 *     producer's contiguous and in order, and all workers see the SAME global
 *     order (equal hash chains over the received (origin, seq) sequence);
 *   - payloads intact (torn copies would break mix()/derived floats);
 *   - the main notify hook ran once per successful send_to_main_n call.
 * Workers sleep in sp_bus_worker_wait(-1) (no timeout) when idle: a lost
 * wake-up hangs the test until its Check timeout, failing it.
 *
 * Environment: SP_STRESS_THREADS=N gives N producers and N workers (default
 * 2+2); SP_STRESS_ITEMS = direct messages in total (default 2M, 1M under
 * TSan); broadcasts are 1/8 of that, each delivered to every worker, and
 * each direct message is also replied to, so the bus carries > 2x ITEMS.
 * sched_yield() on a full queue or ring is backoff on 2 shared cores, not a
 * timing assumption. */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../helpers/sp_check.h"
#include "spacesim/bus.h"

#define MAXT 16
#define SEQ_BITS 40
#define BCAST_EVERY 8
#define BATCH 32

static uint64_t mix(uint64_t x) { /* splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct run run_t;

typedef struct {
    run_t *r;
    unsigned id;
    /* producer results */
    uint64_t sent_to[MAXT]; /* direct messages sent to each worker */
    uint64_t bcasts;
    /* worker results */
    uint64_t last_seq[MAXT];   /* last direct seq + 1 from each producer (0 = none) */
    uint64_t next_bseq[MAXT];  /* next expected broadcast seq from each producer */
    uint64_t direct, bcast_seen, chain, replies, notify_calls, waits, errors;
    int stopped;
} thr_t;

struct run {
    sp_bus_t bus;
    unsigned np, nw;
    uint64_t per_producer;
    _Atomic uint64_t *seen; /* np * per_producer bits, set by main only */
    _Atomic uint64_t notify_hook_calls;
    thr_t prod[MAXT], work[MAXT];
};

static void count_notify(void *ctx) {
    run_t *r = ctx;
    /* Relaxed: a statistics counter read after join. */
    atomic_fetch_add_explicit(&r->notify_hook_calls, 1, memory_order_relaxed);
}

static uint64_t item_id(unsigned p, uint64_t seq) { return ((uint64_t)(p + 1) << SEQ_BITS) | seq; }

static void *producer(void *arg) {
    thr_t *t = arg;
    run_t *r = t->r;
    unsigned p = t->id;
    uint64_t bseq = 0;
    for (uint64_t seq = 0; seq < r->per_producer; seq++) {
        uint64_t id = item_id(p, seq);
        unsigned w = (unsigned)(mix(id) % r->nw);
        sp_msg_t m;
        if (sp_msg_weapon_fired(&m, id, mix(id), (float)(seq & 0xffff)) != 0) t->errors++;
        sp_msg_stamp(&m, w, p, (uint32_t)seq);
        while (sp_bus_send_to_worker(&r->bus, w, &m) == SP_EAGAIN) sched_yield();
        t->sent_to[w]++;
        if (seq % BCAST_EVERY == BCAST_EVERY - 1) {
            uint64_t bid = item_id(p, bseq);
            float pos[3] = {(float)(bid & 0xfff), (float)((bid >> 12) & 0xfff), (float)p};
            float vel[3] = {(float)(bseq & 0x3ff), 1.0f, -1.0f};
            if (sp_msg_ship_movement(&m, bid, pos, vel) != 0) t->errors++;
            sp_msg_stamp(&m, 0, p, (uint32_t)bseq);
            while (sp_bus_broadcast(&r->bus, &m) == SP_EAGAIN) sched_yield();
            bseq++;
        }
    }
    t->bcasts = bseq;
    return NULL;
}

static void handle(thr_t *t, const sp_msg_t *m, sp_msg_t *replies, size_t *nrep) {
    run_t *r = t->r;
    unsigned o = m->hdr.origin;
    switch (m->kind) {
    case SP_MSG_WEAPON_FIRED: {
        uint64_t id = m->u.weapon_fired.ship_id;
        if (o >= r->np || m->hdr.tick != t->id || (id >> SEQ_BITS) != o + 1 ||
            (id & (((uint64_t)1 << SEQ_BITS) - 1)) != m->hdr.seq || m->u.weapon_fired.target_id != mix(id) ||
            m->u.weapon_fired.damage != (float)(m->hdr.seq & 0xffff)) {
            t->errors++;
            return;
        }
        if ((uint64_t)m->hdr.seq + 1 <= t->last_seq[o]) t->errors++; /* per-origin FIFO */
        t->last_seq[o] = (uint64_t)m->hdr.seq + 1;
        t->direct++;
        sp_msg_t *rep = &replies[(*nrep)++];
        *rep = *m;
        sp_msg_stamp(rep, o, t->id, (uint32_t)t->replies++);
        break;
    }
    case SP_MSG_SHIP_MOVEMENT: {
        uint64_t id = m->u.ship_movement.ship_id, bseq = m->hdr.seq;
        if (o >= r->np || id != item_id(o, bseq) || m->u.ship_movement.position[0] != (float)(id & 0xfff) ||
            m->u.ship_movement.position[1] != (float)((id >> 12) & 0xfff) ||
            m->u.ship_movement.position[2] != (float)o || m->u.ship_movement.velocity[0] != (float)(bseq & 0x3ff)) {
            t->errors++;
            return;
        }
        if (bseq != t->next_bseq[o]) t->errors++; /* each producer's broadcasts contiguous, in order */
        t->next_bseq[o] = bseq + 1;
        t->chain = mix(t->chain ^ (((uint64_t)o << 32) | bseq));
        t->bcast_seen++;
        break;
    }
    case SP_MSG_SYSTEM_ALERT:
        if (strcmp(m->u.system_alert.text, "stop") != 0) t->errors++;
        t->stopped = 1;
        break;
    default: t->errors++;
    }
}

static void flush_replies(thr_t *t, sp_msg_t *replies, size_t n) {
    size_t done = 0;
    while (done < n) {
        size_t k = sp_bus_send_to_main_n(&t->r->bus, replies + done, n - done);
        if (k == 0) {
            sched_yield(); /* main inbox full: main is draining it */
            continue;
        }
        t->notify_calls++;
        done += k;
    }
}

static void *worker(void *arg) {
    thr_t *t = arg;
    run_t *r = t->r;
    sp_msg_t in[BATCH], replies[BATCH];
    int idle = 0;
    for (;;) {
        size_t n = sp_bus_recv_worker_n(&r->bus, t->id, in, BATCH);
        if (n == 0) {
            /* After "stop" every producer has finished (main joined them
             * before broadcasting it), so an empty inbox is final. */
            if (t->stopped) break;
            if (++idle < 8) {
                sched_yield();
                continue;
            }
            idle = 0;
            t->waits++;
            if (sp_bus_worker_wait(&r->bus, t->id, -1) < 0) t->errors++;
            continue;
        }
        idle = 0;
        size_t nrep = 0;
        for (size_t i = 0; i < n; i++) handle(t, &in[i], replies, &nrep);
        flush_replies(t, replies, nrep);
    }
    return NULL;
}

START_TEST(test_stress_bus_exactly_once_fifo_and_broadcast_total_order) {
    static run_t r; /* large: keep it off the stack */
    memset(&r, 0, sizeof r);
    long threads = sp_env_long("SP_STRESS_THREADS", 2);
    long items = sp_env_long("SP_STRESS_ITEMS", SP_UNDER_TSAN ? 1000000 : 2000000);
    if (threads > MAXT) threads = MAXT;
    r.np = r.nw = (unsigned)threads;
    r.per_producer = (uint64_t)items / r.np;
    ck_assert_uint_gt(r.per_producer, 0);
    /* A small broadcast ring (8 slots) so broadcasters constantly hit the
     * back-pressure path and slots are reused many times per second. */
    sp_bus_def_t def = {.workers = r.nw, .worker_capacity = 256, .main_capacity = 1024, .broadcast_capacity = 8};
    ck_assert_int_eq(sp_bus_init_def(&r.bus, &def, NULL), 0);
    sp_bus_set_main_notify(&r.bus, count_notify, &r);
    atomic_init(&r.notify_hook_calls, 0);
    uint64_t bits = r.np * r.per_producer;
    r.seen = calloc((size_t)(bits / 64 + 1), sizeof *r.seen);
    ck_assert_ptr_nonnull(r.seen);

    pthread_t pt[MAXT], wt[MAXT];
    for (unsigned i = 0; i < r.nw; i++) {
        r.work[i].r = &r;
        r.work[i].id = i;
        ck_assert_int_eq(pthread_create(&wt[i], NULL, worker, &r.work[i]), 0);
    }
    for (unsigned i = 0; i < r.np; i++) {
        r.prod[i].r = &r;
        r.prod[i].id = i;
        ck_assert_int_eq(pthread_create(&pt[i], NULL, producer, &r.prod[i]), 0);
    }

    /* Main: drain replies until every direct message came back. */
    uint64_t expect_reply_seq[MAXT] = {0}, got = 0, errors = 0;
    sp_msg_t buf[BATCH];
    while (got < bits) {
        size_t n = sp_bus_recv_main_n(&r.bus, buf, BATCH);
        if (n == 0) {
            sched_yield();
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            const sp_msg_t *m = &buf[i];
            unsigned w = m->hdr.origin;
            uint64_t id = m->u.weapon_fired.ship_id;
            uint64_t p = (id >> SEQ_BITS) - 1, seq = id & (((uint64_t)1 << SEQ_BITS) - 1);
            if (w >= r.nw || m->hdr.seq != expect_reply_seq[w] || p >= r.np || seq >= r.per_producer ||
                m->u.weapon_fired.target_id != mix(id)) {
                errors++;
                continue;
            }
            expect_reply_seq[w]++;
            uint64_t bit = p * r.per_producer + seq;
            /* Relaxed: only this thread touches the bitmap. */
            uint64_t old = atomic_fetch_or_explicit(&r.seen[bit / 64], (uint64_t)1 << (bit % 64),
                                                    memory_order_relaxed);
            if (old & ((uint64_t)1 << (bit % 64))) errors++; /* duplicate */
            got++;
        }
    }
    for (unsigned i = 0; i < r.np; i++) ck_assert_int_eq(pthread_join(pt[i], NULL), 0);
    sp_msg_t stop;
    ck_assert_int_eq(sp_msg_system_alert(&stop, "stop", 255), 0);
    while (sp_bus_broadcast(&r.bus, &stop) == SP_EAGAIN) sched_yield();
    for (unsigned i = 0; i < r.nw; i++) ck_assert_int_eq(pthread_join(wt[i], NULL), 0);

    ck_assert_uint_eq(errors, 0);
    ck_assert_uint_eq(got, bits);
    for (uint64_t b = 0; b < bits; b++)
        if (!(atomic_load_explicit(&r.seen[b / 64], memory_order_relaxed) & ((uint64_t)1 << (b % 64))))
            ck_abort_msg("item %llu never came back", (unsigned long long)b);
    uint64_t total_bcasts = 0, notify_calls = 0;
    for (unsigned p = 0; p < r.np; p++) {
        ck_assert_uint_eq(r.prod[p].errors, 0);
        total_bcasts += r.prod[p].bcasts;
    }
    ck_assert_uint_eq(total_bcasts, (r.per_producer / BCAST_EVERY) * r.np);
    uint64_t waits = 0;
    for (unsigned w = 0; w < r.nw; w++) {
        thr_t *t = &r.work[w];
        ck_assert_uint_eq(t->errors, 0);
        uint64_t routed = 0;
        for (unsigned p = 0; p < r.np; p++) routed += r.prod[p].sent_to[w];
        ck_assert_uint_eq(t->direct, routed);            /* routing: all of its own, nothing else */
        ck_assert_uint_eq(t->replies, routed);
        ck_assert_uint_eq(expect_reply_seq[w], routed);
        ck_assert_uint_eq(t->bcast_seen, total_bcasts);  /* every broadcast, exactly once */
        for (unsigned p = 0; p < r.np; p++) ck_assert_uint_eq(t->next_bseq[p], r.prod[p].bcasts);
        ck_assert_uint_eq(t->chain, r.work[0].chain);     /* one global broadcast order */
        ck_assert_int_eq(t->stopped, 1);
        notify_calls += t->notify_calls;
        waits += t->waits;
    }
    ck_assert_uint_eq(atomic_load_explicit(&r.notify_hook_calls, memory_order_relaxed), notify_calls);
    if (getenv("SP_STRESS_VERBOSE") != NULL)
        fprintf(stderr, "bus stress: %u producers, %u workers, %llu direct, %llu replies, %llu broadcasts x %u, %llu sleeps\n",
                r.np, r.nw, (unsigned long long)bits, (unsigned long long)got, (unsigned long long)total_bcasts, r.nw,
                (unsigned long long)waits);
    sp_bus_depths_t d;
    sp_bus_depths(&r.bus, &d);
    ck_assert_uint_eq(d.main + d.worker_total + d.broadcast_lag_max, 0);
    free(r.seen);
    sp_bus_destroy(&r.bus);
}
END_TEST

static Suite *stress_bus_suite(void) {
    Suite *s = suite_create("stress_bus");
    TCase *tc = tcase_create("bus_mpmc_broadcast");
    tcase_set_timeout(tc, sp_timeout(600)); /* a safety net for a hang, not a speed check: preempted spinning threads on a loaded 2-core machine take minutes */
    tcase_add_test(tc, test_stress_bus_exactly_once_fifo_and_broadcast_total_order);
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(stress_bus_suite)
