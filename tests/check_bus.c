/* check_bus.c: message bus routing, back-pressure, broadcast semantics, hooks
 * and the sleep/wake helper (single-threaded behaviour plus small two-thread
 * wake-up tests; the heavy concurrency lives in tests/stress). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "helpers/sp_alloc.h"
#include "helpers/sp_check.h"
#include "spacesim/bus.h"

/* A message whose payload identifies it: WeaponFired{ship_id = id}. */
static sp_msg_t mk(uint64_t id, uint32_t origin, uint32_t seq) {
    sp_msg_t m;
    ck_assert_int_eq(sp_msg_weapon_fired(&m, id, id * 3 + 1, (float)id), 0);
    sp_msg_stamp(&m, 1, origin, seq);
    return m;
}

static void assert_msg_id(const sp_msg_t *m, uint64_t id) {
    ck_assert_int_eq(m->kind, SP_MSG_WEAPON_FIRED);
    ck_assert_uint_eq(m->u.weapon_fired.ship_id, id);
    ck_assert_uint_eq(m->u.weapon_fired.target_id, id * 3 + 1);
}

START_TEST(test_bus_init_rejects_bad_arguments) {
    sp_bus_t bus;
    ck_assert_int_eq(sp_bus_init(NULL, 2, 8, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_bus_init(&bus, 0, 8, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_bus_init(&bus, SP_BUS_MAX_WORKERS + 1, 8, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_bus_init(&bus, 2, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_bus_init(&bus, 2, 1, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_bus_init(&bus, 2, 12, NULL), SP_EINVAL);
    sp_bus_def_t d = sp_bus_def_default(3);
    ck_assert_uint_eq(d.workers, 3);
    d.broadcast_capacity = 100;
    ck_assert_int_eq(sp_bus_init_def(&bus, &d, NULL), SP_EINVAL);
    d = sp_bus_def_default(3);
    ck_assert_int_eq(sp_bus_init_def(&bus, &d, NULL), 0);
    ck_assert_uint_eq(sp_bus_workers(&bus), 3);
    sp_bus_destroy(&bus);
}
END_TEST

/* Every allocation of init can fail; each failure returns SP_ENOMEM and frees
 * whatever was allocated before it. */
START_TEST(test_bus_init_oom_at_each_allocation_frees_everything) {
    /* The shared counting allocator of tests/helpers/sp_alloc.h; fail_at k
     * fails only the k-th call. */
    sp_test_alloc_t probe;
    sp_test_alloc_init(&probe, -1, 0);
    sp_allocator_t a = sp_test_allocator(&probe);
    sp_bus_t bus;
    ck_assert_int_eq(sp_bus_init(&bus, 3, 16, &a), 0);
    long total = sp_test_alloc_get(&probe.allocs);
    ck_assert_int_ge(total, 5); /* block + 3 inboxes + main */
    sp_bus_destroy(&bus);
    ck_assert_int_eq(sp_test_alloc_get(&probe.frees), total);
    ck_assert_int_eq(sp_test_alloc_get(&probe.live_bytes), 0);
    for (long k = 1; k <= total; k++) {
        sp_test_alloc_t c;
        sp_test_alloc_init(&c, -1, k);
        sp_allocator_t ak = sp_test_allocator(&c);
        ck_assert_int_eq(sp_bus_init(&bus, 3, 16, &ak), SP_ENOMEM);
        ck_assert_int_eq(sp_test_alloc_get(&c.calls), k); /* init stops at the failure */
        ck_assert_int_eq(sp_test_alloc_get(&c.allocs), sp_test_alloc_get(&c.frees));
        ck_assert_int_eq(sp_test_alloc_get(&c.live_bytes), 0);
    }
}
END_TEST

/* ---------------------------------------------------------------- fixture */

static sp_bus_t g_bus;

static void setup4(void) { ck_assert_int_eq(sp_bus_init(&g_bus, 4, 8, NULL), 0); }
static void teardown(void) { sp_bus_destroy(&g_bus); }

START_TEST(test_bus_send_to_worker_reaches_only_that_worker_fifo) {
    for (unsigned w = 0; w < 4; w++)
        for (uint64_t i = 0; i < 3; i++) {
            sp_msg_t m = mk(100 * (w + 1) + i, SP_MSG_ORIGIN_LOOP, (uint32_t)i);
            ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, w, &m), 0);
        }
    for (unsigned w = 0; w < 4; w++) {
        ck_assert_uint_eq(sp_bus_worker_depth(&g_bus, w), 3);
        sp_msg_t out;
        for (uint64_t i = 0; i < 3; i++) {
            ck_assert_int_eq(sp_bus_recv_worker(&g_bus, w, &out), 0);
            assert_msg_id(&out, 100 * (w + 1) + i);
            ck_assert_uint_eq(out.hdr.seq, i);
        }
        ck_assert_int_eq(sp_bus_recv_worker(&g_bus, w, &out), SP_EAGAIN);
    }
    sp_msg_t out;
    ck_assert_int_eq(sp_bus_recv_main(&g_bus, &out), SP_EAGAIN);
}
END_TEST

START_TEST(test_bus_bad_worker_id_is_erange_and_null_is_einval) {
    sp_msg_t m = mk(1, 0, 0), out;
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 4, &m), SP_ERANGE);
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 0xFFFFFFFFu, &m), SP_ERANGE);
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 4, &out), SP_ERANGE);
    ck_assert_int_eq(sp_bus_worker_wait(&g_bus, 4, 0), SP_ERANGE);
    ck_assert_int_eq(sp_bus_worker_wake(&g_bus, 4), SP_ERANGE);
    ck_assert_uint_eq(sp_bus_recv_worker_n(&g_bus, 4, &out, 1), 0);
    ck_assert_uint_eq(sp_bus_worker_depth(&g_bus, 4), 0);
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 0, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_bus_send_to_main(&g_bus, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_bus_recv_main(&g_bus, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 0, NULL), SP_EINVAL);
    /* Nothing was delivered anywhere. */
    for (unsigned w = 0; w < 4; w++) ck_assert_int_eq(sp_bus_recv_worker(&g_bus, w, &out), SP_EAGAIN);
}
END_TEST

START_TEST(test_bus_full_inbox_eagain_nothing_lost_or_duplicated) {
    sp_msg_t out;
    for (uint64_t i = 1; i <= 8; i++) {
        sp_msg_t m = mk(i, 0, (uint32_t)i);
        ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 2, &m), 0);
    }
    sp_msg_t extra = mk(999, 0, 999);
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 2, &extra), SP_EAGAIN);
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 2, &extra), SP_EAGAIN);
    ck_assert_uint_eq(sp_bus_worker_depth(&g_bus, 2), 8);
    /* Other workers are unaffected by one full inbox. */
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 1, &extra), 0);
    for (uint64_t i = 1; i <= 8; i++) {
        ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 2, &out), 0);
        assert_msg_id(&out, i);
    }
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 2, &out), SP_EAGAIN);
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 2, &extra), 0); /* room again */
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 2, &out), 0);
    assert_msg_id(&out, 999);
}
END_TEST

/* Seed regression: the seed pushed broadcasts on ONE shared stack, so with
 * several workers each broadcast reached exactly one of them, newest first.
 * Here every worker gets every broadcast, once, oldest first; also across
 * many laps of the ring (capacity 8, 50 broadcasts). */
START_TEST(test_bus_seed_broadcast_reaches_every_worker_once_in_order) {
    uint32_t next[4] = {0, 0, 0, 0};
    uint32_t sent = 0;
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 5; i++, sent++) {
            sp_msg_t m;
            char text[32];
            snprintf(text, sizeof text, "broadcast #%u", sent);
            ck_assert_int_eq(sp_msg_system_alert(&m, text, (uint8_t)sent), 0);
            sp_msg_stamp(&m, 0, SP_MSG_ORIGIN_LOOP, sent);
            ck_assert_int_eq(sp_bus_broadcast(&g_bus, &m), 0);
        }
        for (unsigned w = 0; w < 4; w++) {
            sp_msg_t out;
            while (sp_bus_recv_worker(&g_bus, w, &out) == 0) {
                ck_assert_int_eq(out.kind, SP_MSG_SYSTEM_ALERT);
                ck_assert_uint_eq(out.hdr.seq, next[w]);
                char text[32];
                snprintf(text, sizeof text, "broadcast #%u", next[w]);
                ck_assert_str_eq(out.u.system_alert.text, text);
                next[w]++;
            }
            ck_assert_uint_eq(next[w], sent);
        }
    }
    for (unsigned w = 0; w < 4; w++) ck_assert_uint_eq(next[w], 50);
}
END_TEST

/* Back-pressure: a worker that does not read holds the ring; a broadcast that
 * does not fit publishes nothing (no worker sees it), and the ring frees
 * exactly as the slow worker catches up. */
START_TEST(test_bus_broadcast_backpressure_publishes_nothing_when_a_worker_lags) {
    sp_msg_t out;
    for (uint32_t i = 0; i < 8; i++) {
        sp_msg_t m = mk(i + 1, SP_MSG_ORIGIN_LOOP, i);
        ck_assert_int_eq(sp_bus_broadcast(&g_bus, &m), 0);
        for (unsigned w = 0; w < 3; w++) { /* workers 0..2 keep up, worker 3 sleeps */
            ck_assert_int_eq(sp_bus_recv_worker(&g_bus, w, &out), 0);
            assert_msg_id(&out, i + 1);
        }
    }
    sp_msg_t refused = mk(77, SP_MSG_ORIGIN_LOOP, 8);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &refused), SP_EAGAIN);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &refused), SP_EAGAIN);
    sp_bus_depths_t d;
    sp_bus_depths(&g_bus, &d);
    ck_assert_uint_eq(d.broadcast_lag_max, 8);
    for (unsigned w = 0; w < 3; w++) {
        ck_assert_int_eq(sp_bus_recv_worker(&g_bus, w, &out), SP_EAGAIN); /* not published */
        ck_assert_uint_eq(sp_bus_worker_depth(&g_bus, w), 0);
    }
    ck_assert_uint_eq(sp_bus_worker_depth(&g_bus, 3), 8);
    /* The slow worker reads one: exactly one slot frees. */
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 3, &out), 0);
    assert_msg_id(&out, 1);
    sp_msg_t m9 = mk(9, SP_MSG_ORIGIN_LOOP, 8);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &m9), 0);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &refused), SP_EAGAIN);
    for (unsigned w = 0; w < 3; w++) {
        ck_assert_int_eq(sp_bus_recv_worker(&g_bus, w, &out), 0);
        assert_msg_id(&out, 9);
        ck_assert_int_eq(sp_bus_recv_worker(&g_bus, w, &out), SP_EAGAIN);
    }
    for (uint64_t i = 2; i <= 9; i++) {
        ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 3, &out), 0);
        assert_msg_id(&out, i);
    }
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 3, &out), SP_EAGAIN);
    sp_bus_depths(&g_bus, &d);
    ck_assert_uint_eq(d.broadcast_lag_max, 0);
}
END_TEST

START_TEST(test_bus_recv_worker_returns_broadcasts_before_inbox) {
    sp_msg_t a = mk(1, 0, 0), b = mk(2, 0, 1), c = mk(3, SP_MSG_ORIGIN_LOOP, 0), out;
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 1, &a), 0);
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 1, &b), 0);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &c), 0);
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 1, &out), 0);
    assert_msg_id(&out, 3);
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 1, &out), 0);
    assert_msg_id(&out, 1);
    /* Batch form: broadcasts first, then inbox, each in order. */
    sp_msg_t d = mk(4, SP_MSG_ORIGIN_LOOP, 1), e = mk(5, SP_MSG_ORIGIN_LOOP, 2);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &d), 0);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &e), 0);
    sp_msg_t batch[8];
    ck_assert_uint_eq(sp_bus_recv_worker_n(&g_bus, 1, batch, 8), 3);
    assert_msg_id(&batch[0], 4);
    assert_msg_id(&batch[1], 5);
    assert_msg_id(&batch[2], 2);
    /* Worker 0 still has all three broadcasts, in order, batch limited. */
    ck_assert_uint_eq(sp_bus_recv_worker_n(&g_bus, 0, batch, 2), 2);
    assert_msg_id(&batch[0], 3);
    assert_msg_id(&batch[1], 4);
    ck_assert_uint_eq(sp_bus_recv_worker_n(&g_bus, 0, batch, 8), 1);
    assert_msg_id(&batch[0], 5);
}
END_TEST

static int g_main_calls;
static void *g_main_ctx;
static void main_hook(void *ctx) {
    g_main_calls++;
    g_main_ctx = ctx;
}

START_TEST(test_bus_main_inbox_batch_order_and_notify_once_per_success) {
    int ctx_marker;
    g_main_calls = 0;
    sp_bus_set_main_notify(&g_bus, main_hook, &ctx_marker);
    for (uint64_t i = 0; i < 5; i++) {
        sp_msg_t m = mk(i + 1, (uint32_t)(i % 4), (uint32_t)i);
        ck_assert_int_eq(sp_bus_send_to_main(&g_bus, &m), 0);
    }
    ck_assert_int_eq(g_main_calls, 5);
    ck_assert_ptr_eq(g_main_ctx, &ctx_marker);
    sp_msg_t more[5];
    for (uint64_t i = 0; i < 5; i++) more[i] = mk(10 + i, 0, 0);
    ck_assert_uint_eq(sp_bus_send_to_main_n(&g_bus, more, 5), 3); /* capacity 8: prefix of 3 */
    ck_assert_int_eq(g_main_calls, 6);
    ck_assert_int_eq(sp_bus_send_to_main(&g_bus, &more[3]), SP_EAGAIN);
    ck_assert_uint_eq(sp_bus_send_to_main_n(&g_bus, more + 3, 2), 0);
    ck_assert_int_eq(g_main_calls, 6); /* no notify on failure */
    sp_bus_depths_t d;
    sp_bus_depths(&g_bus, &d);
    ck_assert_uint_eq(d.main, 8);
    sp_msg_t out[16];
    ck_assert_uint_eq(sp_bus_recv_main_n(&g_bus, out, 6), 6);
    for (uint64_t i = 0; i < 5; i++) assert_msg_id(&out[i], i + 1);
    assert_msg_id(&out[5], 10);
    ck_assert_int_eq(sp_bus_recv_main(&g_bus, &out[0]), 0);
    assert_msg_id(&out[0], 11);
    ck_assert_uint_eq(sp_bus_recv_main_n(&g_bus, out, 16), 1);
    assert_msg_id(&out[0], 12);
    ck_assert_int_eq(sp_bus_recv_main(&g_bus, &out[0]), SP_EAGAIN);
    sp_bus_set_main_notify(&g_bus, NULL, NULL);
    ck_assert_int_eq(sp_bus_send_to_main(&g_bus, &more[0]), 0);
    ck_assert_int_eq(g_main_calls, 6); /* hook removed */
}
END_TEST

static unsigned g_worker_calls[4];
static void worker_hook(void *ctx, unsigned w) {
    ck_assert_ptr_eq(ctx, g_worker_calls);
    ck_assert_uint_lt(w, 4);
    g_worker_calls[w]++;
}

START_TEST(test_bus_worker_notify_runs_for_target_and_for_all_on_broadcast) {
    memset(g_worker_calls, 0, sizeof g_worker_calls);
    sp_bus_set_worker_notify(&g_bus, worker_hook, g_worker_calls);
    sp_msg_t m = mk(1, 0, 0);
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 2, &m), 0);
    ck_assert_uint_eq(g_worker_calls[2], 1);
    ck_assert_uint_eq(g_worker_calls[0] + g_worker_calls[1] + g_worker_calls[3], 0);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &m), 0);
    ck_assert_uint_eq(g_worker_calls[0], 1);
    ck_assert_uint_eq(g_worker_calls[1], 1);
    ck_assert_uint_eq(g_worker_calls[2], 2);
    ck_assert_uint_eq(g_worker_calls[3], 1);
    for (int i = 0; i < 8; i++) ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 3, &m), 0);
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 3, &m), SP_EAGAIN); /* inbox of 8 full */
    ck_assert_uint_eq(g_worker_calls[3], 9); /* 1 broadcast + 8 sends, none for the refused one */
}
END_TEST

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

START_TEST(test_bus_worker_wait_times_out_or_returns_at_once_when_pending) {
    ck_assert_int_eq(sp_bus_worker_wait(&g_bus, 0, 0), SP_EAGAIN);
    double t0 = now_ms();
    ck_assert_int_eq(sp_bus_worker_wait(&g_bus, 0, 30), SP_EAGAIN);
    ck_assert_double_ge(now_ms() - t0, 25.0);
    sp_msg_t m = mk(5, 0, 0), out;
    ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 0, &m), 0);
    ck_assert_int_eq(sp_bus_worker_wait(&g_bus, 0, -1), 0);
    ck_assert_int_eq(sp_bus_worker_wait(&g_bus, 1, 0), SP_EAGAIN); /* not for worker 1 */
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 0, &out), 0);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &m), 0);
    for (unsigned w = 0; w < 4; w++) ck_assert_int_eq(sp_bus_worker_wait(&g_bus, w, -1), 0);
    /* An explicit wake makes the next wait return 0 even with nothing pending. */
    for (unsigned w = 0; w < 4; w++) ck_assert_int_eq(sp_bus_recv_worker(&g_bus, w, &out), 0);
    ck_assert_int_eq(sp_bus_worker_wake(&g_bus, 3), 0);
    ck_assert_int_eq(sp_bus_worker_wait(&g_bus, 3, -1), 0);
    ck_assert_int_eq(sp_bus_worker_wait(&g_bus, 3, 0), SP_EAGAIN);
}
END_TEST

/* Two threads: a worker that sleeps with NO timeout must be woken by every
 * send and every broadcast, whatever the interleaving (a lost wake-up hangs
 * the test until its Check timeout, which fails it). */
typedef struct {
    sp_bus_t *bus;
    unsigned worker;
    int n;
    uint64_t sum;
    _Atomic int ready; /* handshake so the sender only sends after the worker took the previous */
} waiter_arg_t;

static void *waiter_thread(void *p) {
    waiter_arg_t *a = p;
    for (int got = 0; got < a->n;) {
        sp_msg_t m;
        if (sp_bus_recv_worker(a->bus, a->worker, &m) == 0) {
            a->sum += m.u.weapon_fired.ship_id;
            got++;
            /* Release: hands "taken" to the sender (acquire below). */
            atomic_store_explicit(&a->ready, got, memory_order_release);
            continue;
        }
        ck_assert_int_ge(sp_bus_worker_wait(a->bus, a->worker, -1), 0);
    }
    return NULL;
}

START_TEST(test_bus_sleeping_worker_is_woken_by_every_send_and_broadcast) {
    waiter_arg_t a = {.bus = &g_bus, .worker = 2, .n = 400, .sum = 0};
    atomic_init(&a.ready, 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, waiter_thread, &a), 0);
    uint64_t expect = 0;
    for (int i = 0; i < a.n; i++) {
        /* Wait until the worker consumed message i-1, so message i usually
         * finds it asleep or about to sleep (the racy window under test).
         * Acquire: pairs with the worker's release store of ready. */
        while (atomic_load_explicit(&a.ready, memory_order_acquire) < i) sched_yield();
        sp_msg_t m = mk((uint64_t)i + 1, 0, (uint32_t)i);
        expect += (uint64_t)i + 1;
        if (i % 2 == 0) {
            ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 2, &m), 0);
        } else {
            ck_assert_int_eq(sp_bus_broadcast(&g_bus, &m), 0);
            /* Keep the other workers' cursors moving so the ring never fills. */
            for (unsigned w = 0; w < 4; w++) {
                sp_msg_t out;
                if (w != 2) ck_assert_int_eq(sp_bus_recv_worker(&g_bus, w, &out), 0);
            }
        }
    }
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_uint_eq(a.sum, expect);
}
END_TEST

/* The sender that slips in between the worker's first emptiness check and its
 * announcement is seen by nobody's wake-up but the worker's own re-check after
 * fence Y; without that re-check this wait (no timeout) never returns. The
 * library calls this hook exactly in that window. */
extern void (*sp__bus_test_before_announce)(sp_bus_t *bus, unsigned worker);
static int g_injected;
static void inject_send(sp_bus_t *bus, unsigned worker) {
    sp_msg_t m = mk(4242, 0, 0);
    if (g_injected++ == 0) ck_assert_int_eq(sp_bus_send_to_worker(bus, worker, &m), 0);
}
static void inject_broadcast(sp_bus_t *bus, unsigned worker) {
    (void)worker;
    sp_msg_t m = mk(4343, 0, 0);
    if (g_injected++ == 0) ck_assert_int_eq(sp_bus_broadcast(bus, &m), 0);
}

START_TEST(test_bus_wait_recheck_catches_send_racing_the_announcement) {
    sp_msg_t out;
    g_injected = 0;
    sp__bus_test_before_announce = inject_send;
    ck_assert_int_eq(sp_bus_worker_wait(&g_bus, 1, -1), 0);
    ck_assert_int_eq(g_injected, 1);
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 1, &out), 0);
    assert_msg_id(&out, 4242);
    g_injected = 0;
    sp__bus_test_before_announce = inject_broadcast;
    ck_assert_int_eq(sp_bus_worker_wait(&g_bus, 3, -1), 0);
    ck_assert_int_eq(g_injected, 1);
    ck_assert_int_eq(sp_bus_recv_worker(&g_bus, 3, &out), 0);
    assert_msg_id(&out, 4343);
    sp__bus_test_before_announce = NULL;
}
END_TEST

START_TEST(test_bus_depths_report_exact_values_when_quiescent) {
    sp_msg_t m = mk(1, 0, 0);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 0, &m), 0);
    for (int i = 0; i < 5; i++) ck_assert_int_eq(sp_bus_send_to_worker(&g_bus, 3, &m), 0);
    for (int i = 0; i < 2; i++) ck_assert_int_eq(sp_bus_send_to_main(&g_bus, &m), 0);
    ck_assert_int_eq(sp_bus_broadcast(&g_bus, &m), 0);
    sp_bus_depths_t d;
    sp_bus_depths(&g_bus, &d);
    ck_assert_uint_eq(d.main, 2);
    ck_assert_uint_eq(d.worker_total, 8);
    ck_assert_uint_eq(d.worker_max, 5);
    ck_assert_uint_eq(d.broadcast_lag_max, 1);
    ck_assert_uint_eq(sp_bus_worker_depth(&g_bus, 0), 4);
    ck_assert_uint_eq(sp_bus_worker_depth(&g_bus, 1), 1);
}
END_TEST

static Suite *bus_suite(void) {
    Suite *s = suite_create("bus");
    struct {
        const char *name;
        const TTest *t;
        int fixture;
    } cases[] = {
        {"init_args", test_bus_init_rejects_bad_arguments, 0},
        {"init_oom", test_bus_init_oom_at_each_allocation_frees_everything, 0},
        {"routing", test_bus_send_to_worker_reaches_only_that_worker_fifo, 1},
        {"bad_worker", test_bus_bad_worker_id_is_erange_and_null_is_einval, 1},
        {"full", test_bus_full_inbox_eagain_nothing_lost_or_duplicated, 1},
        {"seed_broadcast", test_bus_seed_broadcast_reaches_every_worker_once_in_order, 1},
        {"backpressure", test_bus_broadcast_backpressure_publishes_nothing_when_a_worker_lags, 1},
        {"recv_order", test_bus_recv_worker_returns_broadcasts_before_inbox, 1},
        {"main", test_bus_main_inbox_batch_order_and_notify_once_per_success, 1},
        {"worker_notify", test_bus_worker_notify_runs_for_target_and_for_all_on_broadcast, 1},
        {"wait", test_bus_worker_wait_times_out_or_returns_at_once_when_pending, 1},
        {"wake_threads", test_bus_sleeping_worker_is_woken_by_every_send_and_broadcast, 1},
        {"wait_recheck", test_bus_wait_recheck_catches_send_racing_the_announcement, 1},
        {"depths", test_bus_depths_report_exact_values_when_quiescent, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        if (cases[i].fixture) tcase_add_checked_fixture(tc, setup4, teardown);
        tcase_set_timeout(tc, sp_timeout(10));
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(bus_suite)
