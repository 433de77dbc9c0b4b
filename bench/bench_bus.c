/* bench_bus.c: message-bus pipeline throughput, sp_bus against a
 * mutex+condvar bus (the classic design the daemon would otherwise use).
 *
 * One run: the main thread (pinned to CPU0) streams N messages (128-byte
 * sp_msg_t; 2M, 500k with --quick) to worker 0 (pinned to CPU1), which
 * answers each one on the main inbox; main keeps at most `capacity` messages
 * in flight and drains replies as they come. Figure: M messages/s carried
 * main -> worker -> main. Self-check: main receives exactly N replies, in
 * FIFO order (reply seq == count), carrying sum(ship_id) == N(N+1)/2 and the
 * worker's transformation (target_id == ship_id * 3); otherwise the run fails.
 *
 * When idle, workers sleep the way their bus intends: the sp_bus worker spins
 * 64 polls then sp_bus_worker_wait(); the baseline worker waits on its
 * condition variable at once (that is the mutex+condvar design). Main never
 * sleeps in either (it polls, as a libuv loop woken by uv_async would drain).
 *
 * Rows (two-thread, regime-tagged):
 *   sp_bus 1 worker            per-message send/recv calls
 *   sp_bus 1 worker batched    recv_worker_n / send_to_main_n / recv_main_n, 32 at a time
 *   mutex+condvar bus          two mutex-protected rings, condvar for the worker */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "spacesim/bus.h"

#define CAP 1024
#define BATCH 32

static uint64_t g_n;
static uint64_t g_sleeps[2], g_runs[2]; /* sp_bus worker sleeps, per row kind (diagnostic) */

static void make_msg(sp_msg_t *m, uint64_t i) {
    sp_msg_weapon_fired(m, i + 1, 0, 1.0f);
    sp_msg_stamp(m, 0, SP_MSG_ORIGIN_LOOP, (uint32_t)i);
}

/* The worker's job: stamp the reply and derive target_id. */
static void transform(sp_msg_t *m, uint32_t reply_seq) {
    m->u.weapon_fired.target_id = m->u.weapon_fired.ship_id * 3;
    sp_msg_stamp(m, 0, 0, reply_seq);
}

typedef struct {
    uint64_t got, sum;
    int bad;
} tally_t;

static void take_reply(tally_t *t, const sp_msg_t *m) {
    if (m->hdr.seq != (uint32_t)t->got || m->u.weapon_fired.target_id != m->u.weapon_fired.ship_id * 3) t->bad = 1;
    t->sum += m->u.weapon_fired.ship_id;
    t->got++;
}

static double finish(const tally_t *t, uint64_t ns) {
    if (t->bad || t->got != g_n || t->sum != g_n * (g_n + 1) / 2) return -1.0;
    return (double)g_n / ((double)ns / 1e9) / 1e6;
}

/* ---------------------------------------------------------------- sp_bus */

typedef struct {
    sp_bus_t bus;
    int batched;
    _Atomic int ready;
} spb_t;

static void *spb_worker(void *arg) {
    spb_t *b = arg;
    sp_bench_pin_self(1);
    /* Release: tells main the worker runs on its CPU (acquire in the runner). */
    atomic_store_explicit(&b->ready, 1, memory_order_release);
    uint32_t seq = 0;
    int idle = 0;
    sp_msg_t in[BATCH];
    for (;;) {
        size_t n = b->batched ? sp_bus_recv_worker_n(&b->bus, 0, in, BATCH)
                              : (sp_bus_recv_worker(&b->bus, 0, &in[0]) == 0 ? 1 : 0);
        if (n == 0) {
            if (++idle >= 64) {
                idle = 0;
                g_sleeps[b->batched]++;
                sp_bus_worker_wait(&b->bus, 0, -1);
            }
            continue;
        }
        idle = 0;
        for (size_t i = 0; i < n; i++) {
            if (in[i].kind == SP_MSG_SYSTEM_ALERT) return NULL; /* stop */
            transform(&in[i], seq++);
        }
        if (b->batched) {
            for (size_t done = 0; done < n;) done += sp_bus_send_to_main_n(&b->bus, in + done, n - done);
        } else {
            while (sp_bus_send_to_main(&b->bus, &in[0]) != 0) {
            }
        }
    }
}

static double run_sp_bus(void *arg) {
    static spb_t b;
    b.batched = *(const int *)arg;
    atomic_init(&b.ready, 0);
    if (sp_bus_init(&b.bus, 1, CAP, NULL) != 0) return -1.0;
    sp_bench_pin_self(0);
    pthread_t t;
    if (pthread_create(&t, NULL, spb_worker, &b) != 0) return -1.0;
    /* Acquire: pairs with the worker's release store of ready. */
    while (!atomic_load_explicit(&b.ready, memory_order_acquire)) {
    }
    tally_t tally = {0};
    sp_msg_t out[BATCH];
    uint64_t sent = 0;
    uint64_t t0 = sp_bench_now_ns();
    while (tally.got < g_n) {
        /* Keep up to CAP in flight, so neither inbox overflows. */
        while (sent < g_n && sent - tally.got < CAP) {
            sp_msg_t m;
            make_msg(&m, sent);
            if (sp_bus_send_to_worker(&b.bus, 0, &m) != 0) break;
            sent++;
        }
        if (b.batched) {
            size_t n = sp_bus_recv_main_n(&b.bus, out, BATCH);
            for (size_t i = 0; i < n; i++) take_reply(&tally, &out[i]);
        } else {
            while (sp_bus_recv_main(&b.bus, &out[0]) == 0) take_reply(&tally, &out[0]);
        }
    }
    uint64_t ns = sp_bench_now_ns() - t0;
    sp_msg_t stop;
    sp_msg_system_alert(&stop, "stop", 0);
    while (sp_bus_send_to_worker(&b.bus, 0, &stop) != 0) {
    }
    pthread_join(t, NULL);
    g_runs[b.batched]++;
    sp_bus_destroy(&b.bus);
    return finish(&tally, ns);
}

/* ---------------------------------------------------------------- mutex+condvar baseline */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t nonempty; /* signalled on push when a consumer waits */
    int waiting;
    uint64_t head, tail; /* guarded by mu */
    sp_msg_t ring[CAP];
} mq_t;

static void mq_init(mq_t *q) {
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->nonempty, NULL);
    q->waiting = 0;
    q->head = q->tail = 0;
}

static void mq_destroy(mq_t *q) {
    pthread_cond_destroy(&q->nonempty);
    pthread_mutex_destroy(&q->mu);
}

static int mq_try_push(mq_t *q, const sp_msg_t *m) {
    pthread_mutex_lock(&q->mu);
    if (q->tail - q->head == CAP) {
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    q->ring[q->tail++ % CAP] = *m;
    if (q->waiting) pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static int mq_pop(mq_t *q, sp_msg_t *out, int block) {
    pthread_mutex_lock(&q->mu);
    while (q->tail == q->head) {
        if (!block) {
            pthread_mutex_unlock(&q->mu);
            return -1;
        }
        q->waiting++;
        pthread_cond_wait(&q->nonempty, &q->mu);
        q->waiting--;
    }
    *out = q->ring[q->head++ % CAP];
    pthread_mutex_unlock(&q->mu);
    return 0;
}

typedef struct {
    mq_t inbox, main;
    _Atomic int ready;
} mbus_t;

static void *mbus_worker(void *arg) {
    mbus_t *b = arg;
    sp_bench_pin_self(1);
    /* Release: tells main the worker runs on its CPU. */
    atomic_store_explicit(&b->ready, 1, memory_order_release);
    uint32_t seq = 0;
    sp_msg_t m;
    for (;;) {
        mq_pop(&b->inbox, &m, 1);
        if (m.kind == SP_MSG_SYSTEM_ALERT) return NULL;
        transform(&m, seq++);
        while (mq_try_push(&b->main, &m) != 0) {
        }
    }
}

static double run_mutex_bus(void *arg) {
    (void)arg;
    static mbus_t b;
    mq_init(&b.inbox);
    mq_init(&b.main);
    atomic_init(&b.ready, 0);
    sp_bench_pin_self(0);
    pthread_t t;
    if (pthread_create(&t, NULL, mbus_worker, &b) != 0) return -1.0;
    /* Acquire: pairs with the worker's release store of ready. */
    while (!atomic_load_explicit(&b.ready, memory_order_acquire)) {
    }
    tally_t tally = {0};
    uint64_t sent = 0;
    sp_msg_t out;
    uint64_t t0 = sp_bench_now_ns();
    while (tally.got < g_n) {
        while (sent < g_n && sent - tally.got < CAP) {
            sp_msg_t m;
            make_msg(&m, sent);
            if (mq_try_push(&b.inbox, &m) != 0) break;
            sent++;
        }
        while (mq_pop(&b.main, &out, 0) == 0) take_reply(&tally, &out);
    }
    uint64_t ns = sp_bench_now_ns() - t0;
    sp_msg_t stop;
    sp_msg_system_alert(&stop, "stop", 0);
    while (mq_try_push(&b.inbox, &stop) != 0) {
    }
    pthread_join(t, NULL);
    mq_destroy(&b.inbox);
    mq_destroy(&b.main);
    return finish(&tally, ns);
}

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "bus");
    g_n = sp_bench_quick() ? 500000 : 2000000;
    printf("# %llu sp_msg_t (128 B) per run, main(CPU0) -> worker(CPU1) -> main, <= %d in flight; "
           "M messages/s round trip\n",
           (unsigned long long)g_n, CAP);
    static int single = 0, batched = 1;
    sp_bench_row_t rows[] = {
        {.name = "sp_bus 1 worker", .unit = "M msgs/s", .higher_is_better = 1, .two_thread = 1,
         .fn = run_sp_bus, .arg = &single},
        {.name = "mutex+condvar bus", .unit = "M msgs/s", .higher_is_better = 1, .two_thread = 1,
         .fn = run_mutex_bus},
        {.name = "sp_bus 1 worker batched", .unit = "M msgs/s", .higher_is_better = 1, .two_thread = 1,
         .fn = run_sp_bus, .arg = &batched},
    };
    sp_bench_run(rows, 3);
    sp_bench_report(&rows[0], &rows[1]);
    sp_bench_report(&rows[2], &rows[1]);
    for (int k = 0; k < 2; k++)
        if (g_runs[k] > 0)
            printf("# sp_bus%s worker went to sleep %.0f times per run (%.2f per 1000 messages)\n",
                   k ? " batched" : "", (double)g_sleeps[k] / (double)g_runs[k],
                   1000.0 * (double)g_sleeps[k] / (double)g_runs[k] / (double)g_n);
    return sp_bench_finish();
}
