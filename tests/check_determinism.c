/* check_determinism.c: same seed + same inputs => same world, whatever the
 * number of threads that compute the NPC decisions.
 *
 * A scripted scenario (demo world + player ships with scripted commands) runs
 * N ticks three ways: AI chunks computed in place on the test thread, by 1
 * worker thread and by 2 worker threads through the real message bus
 * (spacesim/bus.h), results collected from the main inbox in arrival order
 * (timing-dependent), sorted with sp_msg_order_cmp and applied. The world
 * hashes must agree tick by tick. No stored constant: float contraction and
 * libm differ between compilers, so runs are compared within the test. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/sp_check.h"
#include "sim/ai.h"
#include "sim/frame.h"
#include "sim/world.h"
#include "spacesim/bus.h"

#define NCHUNKS 5u /* more chunks than workers: work is split unevenly on purpose */
#define TICKS 240
#define CHECKPOINTS 8

typedef struct run_result {
    uint64_t hash[CHECKPOINTS];
    uint64_t applied, rejected, fired, mined;
} run_result_t;

/* ---------------------------------------------------------------- scenario */

static sp_world_t *make_world(uint64_t seed, int grid_threads) {
    sp_world_def_t d = sp_world_def_default();
    d.seed = seed;
    d.half_extent = 600.0f; /* dense: NPCs meet asteroids and each other */
    d.grid_threads = grid_threads;
    sp_world_t *w;
    ck_assert_int_eq(sp_world_create(&d, &w), 0);
    ck_assert_int_eq(sp_world_populate_demo(w, 3000, 240), 0);
    ck_assert_int_eq(sp_world_set_respawn(w, 240, 3000, 20, 3), 0); /* fights and mining are refilled */
    return w;
}

/* Player commands: a pure function of (tick, world state). */
static void player_script(sp_world_t *w, sp_entity_id_t *players, int np, uint64_t tick) {
    if (tick == 0) {
        for (int k = 0; k < np; k++) {
            float p[3] = {(float)(k * 40 - 80), 10.0f, -20.0f};
            ck_assert_int_eq(sp_world_spawn_ship(w, (uint32_t)(k + 1), 0, p, &players[k]), 0);
        }
    }
    for (int k = 0; k < np; k++) {
        if ((tick + (uint64_t)k * 7) % 50 == 0) {
            float v[3] = {(float)((int)(tick % 90) - 45), (float)(k * 10 - 15), 20.0f - (float)k};
            sp_world_set_desired_velocity(w, players[k], v, NULL);
        }
        if (tick % 33 == (uint64_t)k) {
            sp_fire_result_t r;
            sp_world_fire(w, players[k], players[(k + 1) % np], &r);
        }
    }
}

static int cmp_msg(const void *a, const void *b) { return sp_msg_order_cmp_qsort(a, b); }

static void apply_all(sp_world_t *w, sp_msg_t *m, size_t n, run_result_t *res) {
    qsort(m, n, sizeof *m, cmp_msg);
    for (size_t k = 0; k < n; k++) {
        int rc = sp_world_apply_msg(w, &m[k]);
        if (rc == 0) {
            res->applied++;
            if (m[k].kind == SP_MSG_WEAPON_FIRED) res->fired++;
            if (m[k].kind == SP_MSG_RESOURCE_MINED) res->mined++;
        } else {
            res->rejected++;
        }
    }
}

/* ---------------------------------------------------------------- bus workers */

typedef struct pool {
    sp_bus_t bus;
    unsigned nworkers;
    pthread_t th[4];
    /* The frame of the current round. Written by the test thread before it
     * sends the round's job messages; the bus's release (enqueue) / acquire
     * (dequeue) pair orders this store before the worker's load, so relaxed
     * is enough here. */
    _Atomic(const sp_frame_t *) frame;
    atomic_int quit;
} pool_t;

typedef struct worker_arg {
    pool_t *p;
    unsigned id;
} worker_arg_t;

static void send_main(pool_t *p, const sp_msg_t *m) {
    while (sp_bus_send_to_main(&p->bus, m) == SP_EAGAIN) sched_yield();
}

/* Job = SystemAlert "ai" with hdr.seq = chunk, hdr.tick = tick. Reply: the
 * chunk's messages, then a SystemAlert "done" marker. */
static void *worker_main(void *argp) {
    worker_arg_t *a = argp;
    pool_t *p = a->p;
    sp_msg_t job;
    size_t cap = 4096;
    sp_msg_t *out = malloc(cap * sizeof *out);
    for (;;) {
        if (sp_bus_recv_worker(&p->bus, a->id, &job) != 0) {
            if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
            sp_bus_worker_wait(&p->bus, a->id, 50);
            continue;
        }
        const sp_frame_t *f = atomic_load_explicit(&p->frame, memory_order_relaxed);
        uint32_t chunk = job.hdr.seq;
        size_t need = sp_ai_chunk_max_msgs(f, chunk, NCHUNKS), n = 0;
        if (need > cap) {
            cap = need;
            out = realloc(out, cap * sizeof *out);
        }
        int rc = sp_ai_run_chunk(f, chunk, NCHUNKS, job.hdr.tick, out, cap, &n);
        for (size_t k = 0; rc == 0 && k < n; k++) send_main(p, &out[k]);
        sp_msg_t done;
        sp_msg_system_alert(&done, rc == 0 ? "done" : "fail", 0);
        sp_msg_stamp(&done, job.hdr.tick, SP_MSG_ORIGIN_LOOP, chunk);
        send_main(p, &done);
    }
    free(out);
    return NULL;
}

static void pool_start(pool_t *p, worker_arg_t *args, unsigned nworkers) {
    memset(p, 0, sizeof *p);
    ck_assert_int_eq(sp_bus_init(&p->bus, nworkers, 256, NULL), 0);
    p->nworkers = nworkers;
    atomic_init(&p->frame, NULL);
    atomic_init(&p->quit, 0);
    for (unsigned i = 0; i < nworkers; i++) {
        args[i].p = p;
        args[i].id = i;
        ck_assert_int_eq(pthread_create(&p->th[i], NULL, worker_main, &args[i]), 0);
    }
}

static void pool_stop(pool_t *p) {
    /* Release: pairs with the workers' acquire load of quit. */
    atomic_store_explicit(&p->quit, 1, memory_order_release);
    for (unsigned i = 0; i < p->nworkers; i++) sp_bus_worker_wake(&p->bus, i);
    for (unsigned i = 0; i < p->nworkers; i++) pthread_join(p->th[i], NULL);
    sp_bus_destroy(&p->bus);
}

/* ---------------------------------------------------------------- runs */

/* nworkers 0 = in place on this thread (chunks in reverse order, to show the
 * order of computation does not matter either). */
static void run(uint64_t seed, unsigned nworkers, int grid_threads, int ticks, run_result_t *res) {
    memset(res, 0, sizeof *res);
    sp_world_t *w = make_world(seed, grid_threads);
    sp_entity_id_t players[4];
    pool_t pool;
    worker_arg_t args[4];
    if (nworkers > 0) pool_start(&pool, args, nworkers);
    size_t cap = 8192, n;
    sp_msg_t *msgs = malloc(cap * sizeof *msgs);
    for (uint64_t t = 0; t < (uint64_t)ticks; t++) {
        player_script(w, players, 4, sp_world_tick(w));
        sp_frame_t *f = sp_world_publish_frame(w);
        ck_assert_ptr_nonnull(f);
        size_t total = 0;
        for (uint32_t c = 0; c < NCHUNKS; c++) total += sp_ai_chunk_max_msgs(f, c, NCHUNKS);
        if (total > cap) {
            cap = total;
            msgs = realloc(msgs, cap * sizeof *msgs);
        }
        n = 0;
        if (nworkers == 0) {
            for (uint32_t c = NCHUNKS; c-- > 0;) {
                size_t k;
                ck_assert_int_eq(sp_ai_run_chunk(f, c, NCHUNKS, f->tick, msgs + n, cap - n, &k), 0);
                n += k;
            }
        } else {
            atomic_store_explicit(&pool.frame, f, memory_order_relaxed);
            for (uint32_t c = 0; c < NCHUNKS; c++) {
                sp_msg_t job;
                sp_msg_system_alert(&job, "ai", 0);
                sp_msg_stamp(&job, f->tick, SP_MSG_ORIGIN_LOOP, c);
                while (sp_bus_send_to_worker(&pool.bus, c % nworkers, &job) == SP_EAGAIN) sched_yield();
            }
            unsigned done = 0;
            while (done < NCHUNKS) {
                sp_msg_t m;
                if (sp_bus_recv_main(&pool.bus, &m) != 0) {
                    sched_yield();
                    continue;
                }
                if (m.kind == SP_MSG_SYSTEM_ALERT) {
                    ck_assert_str_eq(m.u.system_alert.text, "done");
                    done++;
                    continue;
                }
                ck_assert_uint_lt(n, cap);
                msgs[n++] = m;
            }
        }
        apply_all(w, msgs, n, res);
        sp_frame_release(f);
        ck_assert_int_eq(sp_world_step(w), 0);
        if ((t + 1) % (uint64_t)(ticks / CHECKPOINTS) == 0) res->hash[(t + 1) / (uint64_t)(ticks / CHECKPOINTS) - 1] = sp_world_hash(w);
    }
    free(msgs);
    if (nworkers > 0) pool_stop(&pool);
    sp_world_free(w);
}

START_TEST(test_determinism_ai_inplace_equals_1_and_2_bus_workers) {
    run_result_t r0, r1, r2;
    run(1234, 0, 1, TICKS, &r0);
    run(1234, 1, 1, TICKS, &r1);
    run(1234, 2, 1, TICKS, &r2);
    for (int k = 0; k < CHECKPOINTS; k++) {
        ck_assert_uint_eq(r1.hash[k], r0.hash[k]);
        ck_assert_uint_eq(r2.hash[k], r0.hash[k]);
    }
    ck_assert_uint_eq(r1.applied, r0.applied);
    ck_assert_uint_eq(r2.rejected, r0.rejected);
    /* For the log (restructures compare it before and after). */
    fprintf(stderr, "determinism: world hash after %d ticks %016llx (in place, 1 and 2 bus workers)\n", TICKS,
            (unsigned long long)r0.hash[CHECKPOINTS - 1]);
    /* The scenario exercises every intent kind, so the check means something. */
    ck_assert_uint_gt(r0.fired, 0);
    ck_assert_uint_gt(r0.mined, 0);
    ck_assert_uint_gt(r0.applied, TICKS * 200);
}
END_TEST

START_TEST(test_determinism_different_seed_diverges) {
    run_result_t a, b;
    run(1234, 0, 1, 64, &a);
    run(1235, 0, 1, 64, &b);
    ck_assert_uint_ne(a.hash[CHECKPOINTS - 1], b.hash[CHECKPOINTS - 1]);
}
END_TEST

/* All asteroids awake (sleep off) so the broadphase has ~34k spheres and its
 * pool runs 2 threads (it splits at >= 2 x 16384 spheres): same hashes as
 * with 1 grid thread. */
START_TEST(test_determinism_grid_threads_1_vs_2_all_awake) {
    uint64_t h[2][3];
    for (int g = 0; g < 2; g++) {
        sp_world_def_t d = sp_world_def_default();
        d.seed = 99;
        d.half_extent = 900.0f;
        d.grid_threads = g + 1;
        sp_world_t *w;
        ck_assert_int_eq(sp_world_create(&d, &w), 0);
        sp_world_set_sleep_enabled(w, 0);
        ck_assert_int_eq(sp_world_populate_demo(w, 34000, 500), 0);
        ck_assert_uint_eq(sp_world_count_sleeping(w), 0);
        for (int t = 0; t < 30; t++) {
            ck_assert_int_eq(sp_world_step(w), 0);
            if (t % 10 == 9) h[g][t / 10] = sp_world_hash(w);
        }
        sp_world_free(w);
    }
    for (int k = 0; k < 3; k++) ck_assert_uint_eq(h[0][k], h[1][k]);
}
END_TEST

static Suite *determinism_suite(void) {
    Suite *s = suite_create("determinism");
    TCase *tc = tcase_create("bus_workers");
    tcase_set_timeout(tc, sp_timeout(60));
    tcase_add_test(tc, test_determinism_ai_inplace_equals_1_and_2_bus_workers);
    suite_add_tcase(s, tc);
    tc = tcase_create("seed");
    tcase_set_timeout(tc, sp_timeout(60));
    tcase_add_test(tc, test_determinism_different_seed_diverges);
    suite_add_tcase(s, tc);
    tc = tcase_create("grid_threads");
    tcase_set_timeout(tc, sp_timeout(60));
    tcase_add_test(tc, test_determinism_grid_threads_1_vs_2_all_awake);
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(determinism_suite)
