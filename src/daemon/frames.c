/* frames.c: snapshot rounds: capture on the loop, build on a worker (see
 * frames.h). */
#include "daemon/frames.h"

#include <stdlib.h>

#include "cluster/cluster.h"

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
    sp_round_t *prev;       /* the round published before (a reference), or NULL: its frame is
                             * the base of an incremental capture */
    struct build_job *next; /* the chain's queue (d->build_q) */
} build_job_t;

int sp_frames_init(sp_daemon_t *d) {
    if (uv_mutex_init(&d->build_mu) != 0) return SP_ENOMEM;
    int rc = sp_mpmc_init(&d->caps, SP_FRAMES_SPARE_CAPTURES, sizeof(void *), NULL);
    if (rc != 0) uv_mutex_destroy(&d->build_mu);
    return rc;
}

void sp_frames_destroy(sp_daemon_t *d) {
    sp_frames_stop(d); /* normally done already */
    void *p;
    while (sp_mpmc_try_pop_ptr(&d->caps, &p) == 0) sp_world_capture_free(p);
    sp_mpmc_destroy(&d->caps);
    uv_mutex_destroy(&d->build_mu);
}

/* ---------------------------------------------------------------- the build chain
 *
 * An incremental capture is against the previous one, so its build needs
 * the previous round's frame: builds run one at a time, in publishing
 * order. A build published while another runs waits in d->build_q and is
 * submitted by the running one when it ends (any thread). In practice the
 * NPC AI round already orders them (the loop applies round N's AI, which
 * needs N's frame, before it publishes N + 1), so the queue is short. */

static void submit_build(sp_daemon_t *d, build_job_t *bj) {
    if (sp_pool_submit(d->pool, &bj->job, SP_POOL_HIGH, true) != 0) sp_pool_run_here(d->pool, &bj->job);
}

/* Loop (publish): bj runs now, or after the builds before it. */
static void chain_push(sp_daemon_t *d, build_job_t *bj) {
    uv_mutex_lock(&d->build_mu);
    bool wait = d->build_running;
    if (wait) {
        if (d->build_q_tail) d->build_q_tail->next = bj;
        else d->build_q = bj;
        d->build_q_tail = bj;
    } else {
        d->build_running = true;
    }
    uv_mutex_unlock(&d->build_mu);
    if (!wait) submit_build(d, bj);
}

/* A build's work ended (any thread): the next one in the queue runs. */
static void chain_next(sp_daemon_t *d) {
    uv_mutex_lock(&d->build_mu);
    build_job_t *next = d->build_q;
    if (next != NULL && sp_pool_stopping(d->pool)) next = NULL; /* sp_frames_stop disposes of them */
    if (next != NULL) {
        d->build_q = next->next;
        if (d->build_q == NULL) d->build_q_tail = NULL;
        next->next = NULL;
    } else {
        d->build_running = false;
    }
    uv_mutex_unlock(&d->build_mu);
    if (next != NULL) submit_build(d, next);
}

void sp_frames_stop(sp_daemon_t *d) {
    for (;;) {
        uv_mutex_lock(&d->build_mu);
        build_job_t *bj = d->build_q;
        if (bj != NULL) {
            d->build_q = bj->next;
            if (d->build_q == NULL) d->build_q_tail = NULL;
        }
        uv_mutex_unlock(&d->build_mu);
        if (bj == NULL) break;
        bj->job.done(&bj->job); /* never submitted: its done sees it never ran */
    }
    if (d->last_round) sp_round_release(d->last_round);
    d->last_round = NULL;
}

static void build_work(sp_pool_job_t *job, void **scratch) {
    (void)scratch;
    build_job_t *j = (build_job_t *)job;
    sp_daemon_t *d = j->d;
    sp_round_t *r = j->round;
    uint64_t t0 = sp_now_ns();
    /* The previous round's frame: its build ended before this one started
     * (the chain's mutex orders them). */
    const sp_frame_t *prev = j->prev ? j->prev->frame : NULL;
    sp_frame_t *f = sp_frame_build_delta(prev, r->cap);
    uint64_t ns = sp_now_ns() - t0;
    /* Relaxed: statistics for metrics. */
    atomic_store_explicit(&d->build_ns_last, ns, memory_order_relaxed);
    if (ns > atomic_load_explicit(&d->build_ns_max, memory_order_relaxed))
        atomic_store_explicit(&d->build_ns_max, ns, memory_order_relaxed);
    /* Give the capture back for the next round (or free it if the pool is full). */
    if (sp_mpmc_try_push_ptr(&d->caps, r->cap) != 0) sp_world_capture_free(r->cap);
    r->cap = NULL;
    r->frame = f;
    /* (No frame: build_done asks the world for a full capture next.) */
    /* The pool's queue pushes below publish r->frame to the jobs. */
    sp_airound_dispatch(&d->ai, r);
    sp_snapshots_dispatch(d, r);
    chain_next(d);
    sp_pool_wake(d->pool, (unsigned)d->conf.workers);
}

static void build_done(sp_pool_job_t *job) {
    build_job_t *j = (build_job_t *)job;
    sp_daemon_t *d = j->d;
    if (!sp_pool_job_ran(job)) {
        sp_snapshots_cancel(d, j->round); /* shutdown (the round frees its capture) */
    } else if (j->round->frame == NULL) {
        /* Out of memory, or an incremental capture whose base frame is
         * missing: the rounds after it cannot build on it either. */
        SP_LOGE("cannot build the frame of tick %llu (%s): round skipped; the next capture is full",
                (unsigned long long)j->round->tick,
                j->prev == NULL || j->prev->frame != NULL ? "out of memory" : "no previous frame");
        sp_world_capture_reset(d->world);
    }
    if (j->prev) sp_round_release(j->prev);
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
    if (sp_world_capture_delta(d->world, cap) != 0) {
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
    /* The NPCs see across borders (a world without NPCs needs no ghost frame). */
    if (d->cluster && sp_world_count_npc(d->world) > 0) r->ghosts = sp_cluster_ghost_frame(d->cluster);
    sp_snapshots_prepare(d, r);
    sp_airound_begin(&d->ai, r);
    bj->job.work = build_work;
    bj->job.done = build_done;
    bj->d = d;
    bj->round = r; /* the loop's reference goes to the build job */
    /* The base of the next incremental build: this round (one reference
     * for the loop, one for the next build job). */
    bj->prev = d->last_round;
    sp_round_retain(r);
    d->last_round = r;
    chain_push(d, bj);
    d->kick_workers = true;
}

void sp_frames_kick(sp_daemon_t *d) {
    if (!d->kick_workers) return;
    d->kick_workers = false;
    /* One worker: it runs the build, which wakes the others for the jobs it
     * submits. Each wake-up is a chance for the woken thread to take this CPU. */
    sp_pool_wake(d->pool, 1);
}

void sp_frames_publish_frame(sp_daemon_t *d, sp_frame_t *f) {
    sp_round_t *r = sp_round_new(f->tick);
    if (r == NULL) {
        SP_LOGW("out of memory: the round of tick %llu is skipped", (unsigned long long)f->tick);
        sp_frame_release(f);
        return;
    }
    r->frame = f; /* the round's reference now */
    r->events = sp_events_take(&d->events);
    sp_snapshots_prepare(d, r);
    sp_snapshots_dispatch(d, r);
    sp_round_release(r); /* the jobs hold what they need */
    d->kick_workers = true;
    sp_frames_kick(d);
}
