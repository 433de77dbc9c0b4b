/* frames.c: snapshot rounds: capture on the loop, build on a worker (see
 * frames.h). */
#include "daemon/frames.h"

#include <stdlib.h>

#include "daemon/clock.h"
#include "daemon/log.h"
#include "daemon/round.h"
#include "daemon/snapshots.h"
#include "spacesim/error.h"
#include "spacesim/mpmc.h"

typedef struct build_job {
    sp_pool_job_t job; /* first: the pool hands this pointer back */
    sp_daemon_t *d;
    sp_round_t *round;
} build_job_t;

int sp_frames_init(sp_daemon_t *d) { return sp_mpmc_init(&d->caps, SP_FRAMES_SPARE_CAPTURES, sizeof(void *), NULL); }

void sp_frames_destroy(sp_daemon_t *d) {
    void *p;
    while (sp_mpmc_try_pop_ptr(&d->caps, &p) == 0) sp_world_capture_free(p);
    sp_mpmc_destroy(&d->caps);
}

static void build_work(sp_pool_job_t *job, void **scratch) {
    (void)scratch;
    build_job_t *j = (build_job_t *)job;
    sp_daemon_t *d = j->d;
    sp_round_t *r = j->round;
    uint64_t t0 = sp_now_ns();
    sp_frame_t *f = sp_frame_build(r->cap);
    uint64_t ns = sp_now_ns() - t0;
    /* Relaxed: statistics for metrics. */
    atomic_store_explicit(&d->build_ns_last, ns, memory_order_relaxed);
    if (ns > atomic_load_explicit(&d->build_ns_max, memory_order_relaxed))
        atomic_store_explicit(&d->build_ns_max, ns, memory_order_relaxed);
    /* Give the capture back for the next round (or free it if the pool is full). */
    if (sp_mpmc_try_push_ptr(&d->caps, r->cap) != 0) sp_world_capture_free(r->cap);
    r->cap = NULL;
    r->frame = f;
    if (f == NULL) SP_LOGE("cannot build the frame of tick %llu: out of memory (round skipped)", (unsigned long long)r->tick);
    /* The pool's queue pushes below publish r->frame to the jobs. */
    sp_airound_dispatch(&d->ai, r);
    sp_snapshots_dispatch(d, r);
    sp_pool_wake(d->pool, (unsigned)d->conf.workers);
}

static void build_done(sp_pool_job_t *job) {
    build_job_t *j = (build_job_t *)job;
    sp_daemon_t *d = j->d;
    if (!sp_pool_job_ran(job)) sp_snapshots_cancel(d, j->round); /* shutdown */
    sp_airound_build_done(&d->ai, j->round);
    sp_round_release(j->round);
    free(j);
}

/* A capture of the world now (a spare one reused), or NULL on OOM. */
static sp_world_capture_t *capture(sp_daemon_t *d) {
    void *p;
    sp_world_capture_t *cap = NULL;
    if (sp_mpmc_try_pop_ptr(&d->caps, &p) == 0) cap = p;
    else if (sp_world_capture_create(NULL, &cap) != 0) return NULL;
    if (sp_world_capture(d->world, cap) != 0) {
        sp_world_capture_free(cap);
        return NULL;
    }
    return cap;
}

void sp_frames_publish(sp_daemon_t *d) {
    /* The previous AI round is applied at tick T + P - 1, before this one
     * (tick T + P) is published; one can still be pending only if the tick
     * numbering jumped (never: the world tick moves by one per step and P is
     * fixed): apply it now. */
    sp_airound_apply_now(&d->ai, d->world);
    sp_round_t *r = sp_round_new(sp_world_tick(d->world));
    build_job_t *bj = calloc(1, sizeof *bj);
    sp_world_capture_t *cap = r && bj ? capture(d) : NULL;
    if (cap == NULL) {
        SP_LOGW("cannot capture the world: out of memory (round skipped; events kept for the next)");
        if (r) sp_round_release(r);
        free(bj);
        return;
    }
    r->cap = cap;
    r->events = sp_events_take(&d->events);
    sp_snapshots_prepare(d, r);
    sp_airound_begin(&d->ai, r);
    bj->job.work = build_work;
    bj->job.done = build_done;
    bj->d = d;
    bj->round = r; /* the loop's reference goes to the build job */
    if (sp_pool_submit(d->pool, &bj->job, SP_POOL_HIGH, true) != 0) sp_pool_run_here(d->pool, &bj->job);
    d->kick_workers = true;
}

void sp_frames_kick(sp_daemon_t *d) {
    if (!d->kick_workers) return;
    d->kick_workers = false;
    /* One worker: it runs the build, which wakes the others for the jobs it
     * submits. Each wake-up is a chance for the woken thread to take this CPU. */
    sp_pool_wake(d->pool, 1);
}
