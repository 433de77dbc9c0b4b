/* pool.c: the thread pool (see pool.h).
 *
 * Queues: one MPMC ring of job pointers per priority, one for finished jobs.
 * A push into a ring publishes everything written to the job before it (the
 * ring's release store of the cell sequence, paired with the popper's
 * acquire load), so `work` sees what the submitter wrote and `done` sees
 * what `work` wrote, without further fences.
 *
 * Sleeping. A worker with nothing to do sleeps on a condvar. The lost
 * wake-up is avoided by meeting on one atomic: a worker announces itself
 * with an RMW on `sleepers` (+1) and then re-checks the queues, both under
 * the mutex; a submitter pushes and then reads `sleepers` with an RMW (+0).
 * The two RMWs are ordered in `sleepers`' modification order: if the
 * worker's comes first, the submitter reads it and signals (under the
 * mutex, which the worker holds until it is in pthread_cond_wait); if the
 * submitter's comes first, the worker's acq_rel RMW reads from it and so
 * synchronises with it, and the push before it is visible to the worker's
 * re-check. Either way no job is left with every worker asleep. (RMWs, not
 * fences: ThreadSanitizer does not model atomic_thread_fence.) Workers also wake every 200 ms on their own, so
 * on_worker_turn runs at least that often (a per-worker mailbox is read
 * even when no job comes). */
#include "daemon/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spacesim/error.h"
#include "spacesim/mpmc.h"

typedef struct worker {
    struct sp_pool *p;
    unsigned idx;
    void *scratch[SP_POOL_SCRATCH];
} worker_t;

struct sp_pool {
    uv_loop_t *loop;
    uv_async_t async;           /* finished jobs -> loop */
    sp_pool_def_t def;
    sp_mpmc_t q[2];             /* sp_pool_job_t *, by priority */
    sp_mpmc_t doneq;            /* sp_pool_job_t *, finished */
    worker_t *w;
    pthread_t *threads;
    unsigned nthreads;          /* started */
    _Atomic int stop;
    _Atomic unsigned sleepers;  /* workers in (or entering) the condvar wait */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *loop_scratch[SP_POOL_SCRATCH];
    pthread_t loop_thread;      /* the thread that created the pool */
};

/* The scratch slots of the thread running jobs (a worker's, or the loop's
 * for sp_pool_help / sp_pool_run_here on the loop). */
static _Thread_local void **tls_scratch;

static bool take(sp_pool_t *p, sp_pool_job_t **job) {
    void *v;
    if (sp_mpmc_try_pop_ptr(&p->q[SP_POOL_HIGH], &v) == 0 || sp_mpmc_try_pop_ptr(&p->q[SP_POOL_LOW], &v) == 0) {
        *job = v;
        return true;
    }
    return false;
}

static void finish(sp_pool_t *p, sp_pool_job_t *job) {
    job->ran_ = 1;
    /* A full ring only means the loop has not drained yet: a worker waits
     * for it; the loop itself (a job it runs: sp_pool_help/run_here) drains
     * it here, since waiting for itself would never end. */
    bool on_loop = pthread_equal(pthread_self(), p->loop_thread) != 0;
    while (sp_mpmc_try_push_ptr(&p->doneq, job) != 0) {
        if (on_loop) sp_pool_drain(p);
        else sched_yield();
    }
    uv_async_send(&p->async);
}

static void run(sp_pool_t *p, sp_pool_job_t *job, void **scratch) {
    job->work(job, scratch);
    finish(p, job);
}

static bool queues_empty(sp_pool_t *p) {
    return sp_mpmc_size_approx(&p->q[SP_POOL_HIGH]) == 0 && sp_mpmc_size_approx(&p->q[SP_POOL_LOW]) == 0;
}

static void sleep_a_while(sp_pool_t *p) {
    pthread_mutex_lock(&p->mu);
    /* acq_rel RMW: meets the submitter's RMW in sp_pool_wake (top of file);
     * the re-check below then sees any job pushed before that RMW. */
    atomic_fetch_add_explicit(&p->sleepers, 1, memory_order_acq_rel);
    /* Acquire: pairs with the release store of stop in sp_pool_free. */
    if (!atomic_load_explicit(&p->stop, memory_order_acquire) && queues_empty(p)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    /* Relaxed: only a hint for submitters; the mutex orders the rest. */
    atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_relaxed);
    pthread_mutex_unlock(&p->mu);
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    sp_pool_t *p = w->p;
    if (p->def.batch_sched) {
        /* SCHED_BATCH: the kernel skips wake-up preemption for batch tasks,
         * so a woken worker does not cut the loop's tick in two. Best
         * effort: harmless if refused. */
        struct sched_param sp = {0};
        (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    }
    tls_scratch = w->scratch;
    for (;;) {
        /* Acquire: pairs with the release store in sp_pool_free(); once it
         * is seen, queued jobs are left to sp_pool_free (never run). */
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        if (p->def.on_worker_turn) p->def.on_worker_turn(p->def.ctx, w->idx);
        sp_pool_job_t *job;
        if (take(p, &job)) {
            run(p, job, w->scratch);
            continue;
        }
        sleep_a_while(p);
    }
    return NULL;
}

static void on_async(uv_async_t *a) { sp_pool_drain(a->data); }

static void free_scratch(sp_pool_t *p, void **s) {
    for (unsigned i = 0; i < SP_POOL_SCRATCH; i++) {
        if (s[i] == NULL) continue;
        if (p->def.scratch_free) p->def.scratch_free(i, s[i]);
        else free(s[i]);
        s[i] = NULL;
    }
}

static size_t pow2_at_least(size_t n) {
    size_t v = 2;
    while (v < n) v <<= 1;
    return v;
}

static void destroy_queues(sp_pool_t *p) {
    sp_mpmc_destroy(&p->q[0]);
    sp_mpmc_destroy(&p->q[1]);
    sp_mpmc_destroy(&p->doneq);
}

int sp_pool_create(uv_loop_t *loop, const sp_pool_def_t *def, sp_pool_t **out) {
    if (def->threads < 1) return SP_EINVAL;
    sp_pool_t *p = calloc(1, sizeof *p);
    if (p == NULL) return SP_ENOMEM;
    p->loop = loop;
    p->def = *def;
    size_t cap = pow2_at_least(def->max_jobs + 16);
    int r;
    if ((r = sp_mpmc_init(&p->q[0], cap, sizeof(void *), NULL)) < 0 ||
        (r = sp_mpmc_init(&p->q[1], cap, sizeof(void *), NULL)) < 0 ||
        (r = sp_mpmc_init(&p->doneq, cap, sizeof(void *), NULL)) < 0) {
        destroy_queues(p);
        free(p);
        return r;
    }
    p->w = calloc(def->threads, sizeof *p->w);
    p->threads = calloc(def->threads, sizeof *p->threads);
    if (p->w == NULL || p->threads == NULL) {
        destroy_queues(p);
        free(p->w);
        free(p->threads);
        free(p);
        return SP_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    uv_async_init(loop, &p->async, on_async);
    p->async.data = p;
    tls_scratch = p->loop_scratch; /* create runs on the loop thread */
    p->loop_thread = pthread_self();
    for (unsigned i = 0; i < def->threads; i++) {
        p->w[i].p = p;
        p->w[i].idx = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->w[i]) != 0) {
            sp_pool_free(p);
            return SP_EAGAIN;
        }
        p->nthreads++;
    }
    *out = p;
    return 0;
}

static void on_async_closed(uv_handle_t *h) {
    sp_pool_t *p = h->data;
    destroy_queues(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->w);
    free(p->threads);
    free(p);
}

void sp_pool_free(sp_pool_t *p) {
    if (p == NULL) return;
    /* Release: pairs with the workers' acquire loads; they exit once the
     * queues are empty or they see it. */
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++) {
        pthread_join(p->threads[i], NULL);
        free_scratch(p, p->w[i].scratch);
    }
    sp_pool_drain(p);
    /* Jobs never run: their done is told so (sp_pool_job_ran() false). */
    sp_pool_job_t *job;
    while (take(p, &job)) {
        job->ran_ = 0;
        job->done(job);
    }
    sp_pool_drain(p); /* done callbacks above may have finished others */
    free_scratch(p, p->loop_scratch);
    uv_close((uv_handle_t *)&p->async, on_async_closed);
}

int sp_pool_submit(sp_pool_t *p, sp_pool_job_t *job, sp_pool_prio_t prio, bool defer_wake) {
    job->ran_ = 0;
    /* Relaxed: a stopping pool refuses new work; the flag itself orders nothing. */
    if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return SP_EAGAIN;
    if (sp_mpmc_try_push_ptr(&p->q[prio], job) != 0) return SP_EAGAIN;
    if (!defer_wake) sp_pool_wake(p, 1);
    return 0;
}

void sp_pool_wake(sp_pool_t *p, unsigned n) {
    /* acq_rel RMW (+0), not a load: it meets the worker's announcement in
     * `sleepers`' modification order (top of file), after our pushes. */
    if (atomic_fetch_add_explicit(&p->sleepers, 0, memory_order_acq_rel) == 0) return;
    pthread_mutex_lock(&p->mu);
    if (n >= p->nthreads) pthread_cond_broadcast(&p->cv);
    else
        while (n--) pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void sp_pool_run_here(sp_pool_t *p, sp_pool_job_t *job) { run(p, job, tls_scratch ? tls_scratch : p->loop_scratch); }

bool sp_pool_help(sp_pool_t *p, sp_pool_prio_t prio) {
    void *v;
    if (sp_mpmc_try_pop_ptr(&p->q[prio], &v) != 0) return false;
    run(p, v, p->loop_scratch);
    return true;
}

void sp_pool_drain(sp_pool_t *p) {
    void *v;
    while (sp_mpmc_try_pop_ptr(&p->doneq, &v) == 0) {
        sp_pool_job_t *job = v;
        job->done(job);
    }
}

size_t sp_pool_queued(const sp_pool_t *p) {
    return sp_mpmc_size_approx(&p->q[0]) + sp_mpmc_size_approx(&p->q[1]);
}

size_t sp_pool_finished(const sp_pool_t *p) { return sp_mpmc_size_approx(&p->doneq); }

bool sp_pool_job_ran(const sp_pool_job_t *job) { return job->ran_ != 0; }

bool sp_pool_stopping(const sp_pool_t *p) {
    /* Acquire: pairs with the release store in sp_pool_free(). */
    return atomic_load_explicit(&p->stop, memory_order_acquire) != 0;
}
