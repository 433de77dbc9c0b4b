/* check_pool.c: the daemon's thread pool (src/daemon/pool.h).
 *
 * Exactly once: every submitted job's done runs once, on the loop thread,
 * after its work, and sees what work wrote; jobs submitted by workers
 * (follow-ups, as the frame build does) too. Priorities: a queued HIGH job
 * is taken before a queued LOW one. Shutdown: jobs never run get their done
 * with sp_pool_job_ran() false. Scratch: per thread, kept across jobs, freed
 * once. Run under TSan by `make check-stress`. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "daemon/pool.h"
#include "helpers/sp_check.h"

typedef struct tjob {
    sp_pool_job_t job; /* first */
    struct ctx *ctx;
    uint32_t id;
    uint32_t input;    /* written before submit, read by work */
    uint32_t output;   /* written by work, read by done */
    int follow_ups;    /* work submits this many more jobs */
} tjob_t;

typedef struct ctx {
    sp_pool_t *pool;
    pthread_t loop_thread;
    uint8_t *done_count;      /* per id, loop thread only */
    _Atomic uint32_t next_id; /* ids for follow-ups (any thread) */
    uint32_t max_ids;
    uint32_t dones, not_ran, bad;
    _Atomic uint32_t scratch_allocs;
} ctx_t;

static void submit_new(ctx_t *c, int follow_ups, sp_pool_prio_t prio);

static void tjob_work(sp_pool_job_t *job, void **scratch) {
    tjob_t *j = (tjob_t *)job;
    /* Scratch: one counter per thread, allocated once and kept. */
    if (scratch[0] == NULL) {
        scratch[0] = calloc(1, sizeof(uint64_t));
        atomic_fetch_add_explicit(&j->ctx->scratch_allocs, 1, memory_order_relaxed); /* statistic */
    }
    (*(uint64_t *)scratch[0])++;
    j->output = j->input * 3u + 1u;
    for (int k = 0; k < j->follow_ups; k++) submit_new(j->ctx, 0, k % 2 ? SP_POOL_LOW : SP_POOL_HIGH);
}

static void tjob_done(sp_pool_job_t *job) {
    tjob_t *j = (tjob_t *)job;
    ctx_t *c = j->ctx;
    if (!pthread_equal(pthread_self(), c->loop_thread)) c->bad++;
    if (sp_pool_job_ran(job)) {
        if (j->output != j->input * 3u + 1u) c->bad++;
    } else {
        c->not_ran++;
    }
    if (j->id < c->max_ids) c->done_count[j->id]++;
    else c->bad++;
    c->dones++;
    free(j);
}

static void submit_new(ctx_t *c, int follow_ups, sp_pool_prio_t prio) {
    tjob_t *j = calloc(1, sizeof *j);
    ck_assert_ptr_nonnull(j);
    j->job.work = tjob_work;
    j->job.done = tjob_done;
    j->ctx = c;
    /* Relaxed: a unique id is all that is needed; the submit publishes the job. */
    j->id = atomic_fetch_add_explicit(&c->next_id, 1, memory_order_relaxed);
    j->input = j->id * 7u;
    j->follow_ups = follow_ups;
    if (sp_pool_submit(c->pool, &j->job, prio, false) != 0) sp_pool_run_here(c->pool, &j->job);
}

static void ctx_init(ctx_t *c, uv_loop_t *loop, unsigned threads, uint32_t max_ids) {
    memset(c, 0, sizeof *c);
    c->loop_thread = pthread_self();
    c->max_ids = max_ids;
    c->done_count = calloc(max_ids, 1);
    sp_pool_def_t def = {.threads = threads, .max_jobs = 4096};
    ck_assert_int_eq(sp_pool_create(loop, &def, &c->pool), 0);
}

static void on_tick(uv_timer_t *t) { (void)t; }

static void pump_until(uv_loop_t *loop, ctx_t *c, uint32_t want) {
    uint64_t deadline = uv_hrtime() + (uint64_t)sp_timeout(20) * 1000000000ull;
    while (c->dones < want && uv_hrtime() < deadline) uv_run(loop, UV_RUN_ONCE);
}

START_TEST(test_pool_every_done_runs_once_on_the_loop_after_its_work) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    enum { ROOTS = 20000, FOLLOW = 2 };
    ctx_t c;
    ctx_init(&c, &loop, 2, ROOTS * (FOLLOW + 1));
    /* A timer keeps uv_run(ONCE) from blocking forever if a wake-up were lost
     * (the test would then fail on the count, not hang). */
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, on_tick, 50, 50);
    for (int i = 0; i < ROOTS; i++) {
        submit_new(&c, FOLLOW, i % 3 ? SP_POOL_LOW : SP_POOL_HIGH);
        if (i % 512 == 0) sp_pool_drain(c.pool); /* the loop keeps up now and then */
    }
    pump_until(&loop, &c, ROOTS * (FOLLOW + 1));
    ck_assert_uint_eq(c.dones, ROOTS * (FOLLOW + 1));
    ck_assert_uint_eq(c.bad, 0);
    ck_assert_uint_eq(c.not_ran, 0);
    for (uint32_t i = 0; i < c.max_ids; i++) ck_assert_msg(c.done_count[i] == 1, "job %u done %u times", i, c.done_count[i]);
    uv_close((uv_handle_t *)&t, NULL);
    sp_pool_free(c.pool);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* One scratch per thread that ran jobs (2 workers, maybe the loop): never per job. */
    ck_assert_uint_le(atomic_load_explicit(&c.scratch_allocs, memory_order_relaxed), 3);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    free(c.done_count);
}
END_TEST

/* HIGH before LOW: with the only worker held busy, queue LOW then HIGH jobs;
 * the HIGH ones must all run before any LOW one. */
typedef struct order_job {
    sp_pool_job_t job;
    int prio;
    _Atomic int *seq;
    int *log;
    _Atomic int *gate;  /* the blocker waits until the test opens it */
    sp_pool_t *until_stopping; /* or until the pool is being freed */
} order_job_t;

static void order_work(sp_pool_job_t *job, void **scratch) {
    (void)scratch;
    order_job_t *j = (order_job_t *)job;
    if (j->until_stopping) {
        while (!sp_pool_stopping(j->until_stopping)) sched_yield();
        return;
    }
    if (j->gate) {
        /* Acquire: pairs with the test's release store opening the gate. */
        while (!atomic_load_explicit(j->gate, memory_order_acquire)) sched_yield();
        return;
    }
    /* Relaxed: one worker runs these; the done queue publishes log[]. */
    int k = atomic_fetch_add_explicit(j->seq, 1, memory_order_relaxed);
    j->log[k] = j->prio;
}

static int order_dones;
static void order_done(sp_pool_job_t *job) {
    order_dones++;
    free(job);
}

START_TEST(test_pool_high_jobs_run_before_queued_low_jobs) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    sp_pool_t *p;
    sp_pool_def_t def = {.threads = 1, .max_jobs = 256};
    ck_assert_int_eq(sp_pool_create(&loop, &def, &p), 0);
    _Atomic int gate = 0, seq = 0;
    int log[64];
    order_dones = 0;
    order_job_t *b = calloc(1, sizeof *b);
    *b = (order_job_t){{order_work, order_done, 0}, 0, &seq, log, &gate, NULL};
    ck_assert_int_eq(sp_pool_submit(p, &b->job, SP_POOL_LOW, false), 0);
    /* Wait until the worker took the blocker (the queues are empty again). */
    uint64_t deadline = uv_hrtime() + (uint64_t)sp_timeout(10) * 1000000000ull;
    while (sp_pool_queued(p) != 0 && uv_hrtime() < deadline) sched_yield();
    ck_assert_uint_eq(sp_pool_queued(p), 0);
    for (int i = 0; i < 32; i++) {
        order_job_t *j = calloc(1, sizeof *j);
        *j = (order_job_t){{order_work, order_done, 0}, i < 16 ? SP_POOL_LOW : SP_POOL_HIGH, &seq, log, NULL, NULL};
        ck_assert_int_eq(sp_pool_submit(p, &j->job, (sp_pool_prio_t)j->prio, false), 0);
    }
    atomic_store_explicit(&gate, 1, memory_order_release);
    while (order_dones < 33 && uv_hrtime() < deadline + 10000000000ull) uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(order_dones, 33);
    for (int k = 0; k < 16; k++) ck_assert_int_eq(log[k], SP_POOL_HIGH);
    for (int k = 16; k < 32; k++) ck_assert_int_eq(log[k], SP_POOL_LOW);
    sp_pool_free(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* sp_pool_help runs exactly one queued job on the loop; sp_pool_free gives
 * jobs never run to their done with ran == false. */
START_TEST(test_pool_help_runs_one_and_free_reports_jobs_never_run) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    sp_pool_t *p;
    sp_pool_def_t def = {.threads = 1, .max_jobs = 256};
    ck_assert_int_eq(sp_pool_create(&loop, &def, &p), 0);
    _Atomic int seq = 0;
    int log[64];
    order_dones = 0;
    order_job_t *b = calloc(1, sizeof *b);
    *b = (order_job_t){{order_work, order_done, 0}, 0, &seq, log, NULL, p};
    ck_assert_int_eq(sp_pool_submit(p, &b->job, SP_POOL_LOW, false), 0);
    uint64_t deadline = uv_hrtime() + (uint64_t)sp_timeout(10) * 1000000000ull;
    while (sp_pool_queued(p) != 0 && uv_hrtime() < deadline) sched_yield();
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.pool = p;
    c.loop_thread = pthread_self();
    c.max_ids = 8;
    c.done_count = calloc(8, 1);
    for (int i = 0; i < 5; i++) {
        tjob_t *j = calloc(1, sizeof *j);
        *j = (tjob_t){{tjob_work, tjob_done, 0}, &c, (uint32_t)i, (uint32_t)i, 0, 0};
        ck_assert_int_eq(sp_pool_submit(p, &j->job, SP_POOL_HIGH, true), 0);
    }
    ck_assert(sp_pool_help(p, SP_POOL_HIGH));
    ck_assert(!sp_pool_help(p, SP_POOL_LOW));
    ck_assert_uint_eq(sp_pool_queued(p), 4);
    sp_pool_drain(p);
    ck_assert_uint_eq(c.dones, 1); /* its done came through the done queue */
    /* Free while the worker is held by the blocker, which returns once the
     * pool is stopping: the worker then takes nothing more, so the 4 queued
     * jobs never run and their done says so. */
    sp_pool_free(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(order_dones, 1);
    ck_assert_uint_eq(c.dones, 5);
    ck_assert_uint_eq(c.not_ran, 4);
    ck_assert_uint_eq(c.bad, 0);
    for (int i = 0; i < 5; i++) ck_assert_uint_eq(c.done_count[i], 1);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    free(c.done_count);
}
END_TEST

static Suite *pool_suite(void) {
    Suite *s = suite_create("pool");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"exactly_once", test_pool_every_done_runs_once_on_the_loop_after_its_work},
        {"priorities", test_pool_high_jobs_run_before_queued_low_jobs},
        {"help_and_free", test_pool_help_runs_one_and_free_reports_jobs_never_run},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(60));
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(pool_suite)
