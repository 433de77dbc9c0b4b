/* workers.c: worker threads and the jobs they run.
 *
 * A round starts every snap_every = P ticks (snapshot cadence). On the loop
 * it costs only sp_world_capture(): a memcpy of the per-slot arrays a frame
 * needs into a reusable buffer (~60 bytes per slot; ~0.5 ms at 100k). The
 * rest runs on workers, from an immutable, reference-counted frame
 * (sim/frame.h), while the loop keeps stepping the world:
 *
 *  - Build (one per round): sp_frame_build() from the capture (id sort,
 *    quantization, spatial index: the ~4 ms at 100k entities that used to run
 *    on the loop), gives the capture back to a small pool, then queues the
 *    round's AI chunks and its snapshot jobs (prepared by the loop at round
 *    start) and wakes the workers. The loop remains the only writer of the
 *    world: workers see only the capture (a copy) and the frame.
 *
 *  - AI chunk: sp_ai_run_chunk() for chunk k of K of the frame's NPCs. Its
 *    SpaceMessages (ShipMovement, WeaponFired, ResourceMined; stamped with
 *    tick = frame tick, origin = chunk) go to the bus's main inbox; the bus
 *    notify hook (uv_async_send) wakes the loop, which moves them to a list.
 *    K is a function of the frame's NPC count (ai_chunk_count), never of the
 *    worker count, and chunks are contiguous runs of NPC rows, so the
 *    (origin, seq) order is NPC row order whatever K is.
 *
 *    Application tick (defined, not timing-dependent). A round dispatched on
 *    the frame of tick T (every snap_every = P ticks) is applied at the start
 *    of the tick whose pre-step world tick is T + P - 1, i.e. just before the
 *    step that produces tick T + P, and just before the next round is
 *    dispatched; so at most one AI round is in flight. Its messages are
 *    sorted by sp_msg_order_cmp() and applied in that order. If the round is
 *    not complete by then (frame build + chunks), that step does not run
 *    yet (a "stall"), but the loop never blocks for it: loop.c leaves the
 *    step pending and goes back to serving sockets; sp_workers_step_ready()
 *    tells it whether the step may run, and the round's last job wakes the
 *    loop (uv_async_send after ai_left reaches 0) to run it. Meanwhile the
 *    loop helps: sp_workers_help() runs at most one still-queued build/AI
 *    job per loop iteration (never a wait). Workers take build/AI jobs
 *    before snapshot jobs, so a stall lasts at most as long as the jobs
 *    already running plus the queued round jobs. The world after any tick
 *    is thus the same with 1 or N workers and under any scheduling
 *    (tests/net/check_daemon: --workers 1 vs 2, same hash).
 *
 *  - Snapshot: for one client, find the client's interest centres in the
 *    frame (its ships, or the subscribe centre), query the frame's spatial
 *    index, encode the full or delta snapshot against the view the client
 *    really received, plus the round's events that the client can see.
 *    The bytes and the next view come back as a result (a pointer through a
 *    lock-free MPMC queue; results do not fit a 128-byte SpaceMessage), and
 *    uv_async_send wakes the loop, which hands the bytes to the socket and
 *    only then makes the new view the client's baseline. So per-client O(N)
 *    work never runs on the loop thread.
 *
 * Alerts: admin alerts are broadcast as SystemAlert SpaceMessages on the
 * bus's broadcast ring; every worker receives each exactly once and counts
 * it (the client notification itself is sent by the loop).
 *
 * Sleeping: a worker with no job waits in sp_bus_worker_wait() (eventcount:
 * no lost wake-ups); the loop pushes jobs then calls sp_bus_worker_wake() for
 * each worker once per round. Never polling. */
#include "daemon/daemon.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "sim/ai.h"
#include "daemon/snapshim.h"
#include "spacesim/mpmc.h"

/* ---------------------------------------------------------------- rounds */

/* Events of the ticks since the previous round (the world records the
 * subject's position and the other party's owner, so workers can filter
 * them by interest). Immutable once the round starts; reference counted
 * because clients that skip a round keep it for their next snapshot. */
typedef struct sp_evset {
    _Atomic uint32_t refs;
    uint32_t n;
    sp_world_event_t ev[];
} evset_t;

static void evset_retain(evset_t *e) {
    /* Relaxed: the caller already holds a reference (shared_ptr copy). */
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

static void evset_release(evset_t *e) {
    if (e == NULL) return;
    /* acq_rel: every holder's reads happen before the last one's free. */
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) free(e);
}

struct job;

typedef struct round {
    _Atomic uint32_t refs;     /* loop + ai_round + one per job */
    uint64_t tick;             /* world tick of the capture */
    sp_world_capture_t *cap;   /* filled by the loop; the build job returns it to the pool */
    const sp_frame_t *frame;   /* written by the build job before it queues the other jobs
                                * (the queue push publishes it); NULL if the build failed */
    evset_t *events;           /* NULL when none */
    struct job **snap;         /* snapshot jobs, queued by the build job */
    size_t nsnap;
} round_t;

static void round_release(round_t *r) {
    /* acq_rel: the last releaser must see every other job's reads of the
     * round completed before it frees it (acquire), and our own reads must
     * happen before another thread's free (release). */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        sp_frame_release(r->frame);
        sp_world_capture_free(r->cap); /* only if never built (shutdown) */
        evset_release(r->events);
        free(r->snap);
        free(r);
    }
}

typedef enum { JOB_AI = 1, JOB_SNAP = 2, JOB_BUILD = 3 } job_kind_t;

typedef struct job {
    job_kind_t kind;
    round_t *round;
    /* AI */
    uint32_t chunk, nchunks;
    /* snapshot */
    sp_client_t *client; /* only compared/used by the loop; workers read the copies below */
    uint32_t session;
    double radius;
    double centre[3];
    uint64_t ships[SP_MAX_SHIPS_PER_CLIENT];
    int nships;
    evset_t *pend[SP_PEND_ROUNDS]; /* events of rounds the client skipped, oldest first */
    int npend;
    evset_t *events;             /* this round's (a reference of the job's own) */
    const sp_d_view_t *base; /* NULL = full; read-only while the job runs */
    sp_d_view_t *next;
    msgpack_sbuffer out;
    size_t visible;
    size_t nevents;         /* event notifications packed before the snapshot */
    struct sp_workers *ws;
    int err;
} job_t;

struct sp_workers {
    sp_daemon_t *d;
    int n;
    pthread_t *threads;
    sp_bus_t bus;
    sp_mpmc_t rjobs;   /* job_t *: frame builds and AI chunks; workers take these first */
    sp_mpmc_t caps;    /* sp_world_capture_t *: spare capture buffers */
    sp_mpmc_t jobs;    /* job_t *: snapshot jobs */
    sp_mpmc_t results; /* job_t * (snapshot results) */
    _Atomic int stop;
    /* AI round state (loop thread, except ai_left and the mutex/condvar). */
    round_t *ai_round;
    uint64_t ai_tick;     /* frame tick of ai_round */
    uint64_t ai_apply_at; /* pre-step world tick at which it is applied */
    /* Jobs of ai_round not finished yet: 1 for the build, which adds its
     * chunk count before it ends. Decremented by whoever ran the job; the
     * one that takes it to 0 wakes the loop (uv_async_send). */
    _Atomic uint32_t ai_left;
    sp_msg_t *ai_msgs, *ai_tmp;
    size_t ai_n, ai_cap, ai_tmp_cap;
    struct wscratch *loop_scratch; /* for build/AI jobs the loop runs (sp_workers_help) */
    _Atomic uint64_t alerts_seen;
    /* Events gathered since the last round (loop thread). */
    sp_world_event_t *ev;
    size_t nev, capev;
    /* Frame build statistics (written by the builder; relaxed: metrics). */
    _Atomic uint64_t build_ns_last, build_ns_max;
    _Atomic uint64_t events_capped; /* events cut by the per-snapshot cap (workers; relaxed) */
    bool kick; /* a round was queued: wake a worker after the tick (loop thread) */
};

/* ---------------------------------------------------------------- worker side */

/* AI chunks of a round: one per SP_AI_CHUNK_NPCS NPCs, at most
 * SP_AI_MAX_CHUNKS. A function of the frame only (never of --workers). */
#define SP_AI_CHUNK_NPCS 256u
#define SP_AI_MAX_CHUNKS 64u
static uint32_t ai_chunk_count(uint32_t npcs) {
    uint32_t k = (npcs + SP_AI_CHUNK_NPCS - 1) / SP_AI_CHUNK_NPCS;
    if (k < 1) k = 1;
    return k > SP_AI_MAX_CHUNKS ? SP_AI_MAX_CHUNKS : k;
}


typedef struct wscratch wscratch_t;
struct wscratch {
    uint32_t *rows;
    size_t cap;
    sp_msg_t *msgs;
    size_t mcap;
};

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static size_t query(const sp_frame_t *f, const double c[3], double r, wscratch_t *s, size_t at) {
    for (;;) {
        size_t room = s->cap - at;
        size_t n = sp_frame_query_sphere(f, (float)c[0], (float)c[1], (float)c[2], (float)r, s->rows + at, room);
        if (n <= room) return n;
        size_t cap = s->cap * 2;
        while (cap < at + n) cap *= 2;
        uint32_t *nr = realloc(s->rows, cap * sizeof *nr);
        if (nr == NULL) return room; /* degrade: a partial view */
        s->rows = nr;
        s->cap = cap;
    }
}

/* Can a client (session, interest spheres of `radius` around ctr) see e? */
static bool event_visible(uint32_t session, double radius, const sp_world_event_t *e, const double (*ctr)[3],
                          int nctr) {
    if (e->owner == session || e->other_owner == session) return true;
    double r2 = radius * radius;
    for (int i = 0; i < nctr; i++) {
        double dx = e->pos[0] - ctr[i][0], dy = e->pos[1] - ctr[i][1], dz = e->pos[2] - ctr[i][2];
        if (dx * dx + dy * dy + dz * dz <= r2) return true;
    }
    return false;
}

static bool visible_event(const job_t *j, const sp_world_event_t *e, const double (*ctr)[3], int nctr) {
    return event_visible(j->session, j->radius, e, ctr, nctr);
}

static void pack_cstr(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }

static void pack_event(msgpack_packer *pk, const sp_world_event_t *e) {
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, 2);
    pack_cstr(pk, "event");
    msgpack_pack_array(pk, 1);
    switch (e->type) {
    case SP_EV_WEAPON_FIRED:
        msgpack_pack_map(pk, 6);
        pack_cstr(pk, "type"), pack_cstr(pk, "WeaponFired");
        pack_cstr(pk, "tick"), msgpack_pack_uint64(pk, e->tick);
        pack_cstr(pk, "ship_id"), msgpack_pack_uint64(pk, e->subject);
        pack_cstr(pk, "target_id"), msgpack_pack_uint64(pk, e->other);
        pack_cstr(pk, "hit"), e->hit ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        pack_cstr(pk, "damage"), msgpack_pack_double(pk, e->value);
        break;
    case SP_EV_RESOURCE_MINED:
        msgpack_pack_map(pk, 6);
        pack_cstr(pk, "type"), pack_cstr(pk, "ResourceMined");
        pack_cstr(pk, "tick"), msgpack_pack_uint64(pk, e->tick);
        pack_cstr(pk, "ship_id"), msgpack_pack_uint64(pk, e->subject);
        pack_cstr(pk, "asteroid_id"), msgpack_pack_uint64(pk, e->other);
        pack_cstr(pk, "resource_type"), pack_cstr(pk, sp_resource_name(e->resource) ? sp_resource_name(e->resource) : "");
        pack_cstr(pk, "amount"), msgpack_pack_double(pk, e->value);
        break;
    default: /* ENTITY_DESTROYED of a ship */
        msgpack_pack_map(pk, 6);
        pack_cstr(pk, "type"), pack_cstr(pk, "ShipDestroyed");
        pack_cstr(pk, "tick"), msgpack_pack_uint64(pk, e->tick);
        pack_cstr(pk, "ship_id"), msgpack_pack_uint64(pk, e->subject);
        pack_cstr(pk, "owner"), msgpack_pack_uint32(pk, e->owner);
        pack_cstr(pk, "by"), msgpack_pack_uint64(pk, e->other);
        pack_cstr(pk, "cause"),
            pack_cstr(pk, e->cause == SP_CAUSE_WEAPON      ? "weapon"
                          : e->cause == SP_CAUSE_COLLISION ? "collision"
                                                           : "other");
        break;
    }
}

/* Most event notifications packed ahead of one snapshot. */
#define SP_SNAP_MAX_EVENTS 4096

static struct sp_workers *ws_of(const job_t *j) { return j->ws; }

static void run_snapshot(job_t *j, wscratch_t *s) {
    const sp_frame_t *f = j->round->frame;
    double ctr[SP_MAX_SHIPS_PER_CLIENT + 1][3];
    int nctr = 0;
    for (int i = 0; i < j->nships; i++) {
        long row = sp_frame_find(f, j->ships[i]);
        if (row < 0) continue;
        for (int k = 0; k < 3; k++) ctr[nctr][k] = sp_frame_pos(f->rows[row].pos[k]);
        nctr++;
    }
    if (nctr == 0) {
        memcpy(ctr[0], j->centre, sizeof ctr[0]);
        nctr = 1;
    }
    size_t n = 0;
    for (int i = 0; i < nctr; i++) n += query(f, ctr[i], j->radius, s, n);
    if (nctr > 1 && n > 1) { /* union of spheres: sort, unique */
        qsort(s->rows, n, sizeof s->rows[0], cmp_u32);
        size_t w = 1;
        for (size_t i = 1; i < n; i++)
            if (s->rows[i] != s->rows[w - 1]) s->rows[w++] = s->rows[i];
        n = w;
    }
    j->visible = n;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->out, msgpack_sbuffer_write);
    /* Events: those of the rounds the client skipped (oldest first), then
     * this round's; the ones the client can see, at most SP_SNAP_MAX_EVENTS
     * (the newest; older ones beyond are counted as dropped). */
    const evset_t *sets[SP_PEND_ROUNDS + 1];
    int ns = 0;
    for (int k = 0; k < j->npend; k++) sets[ns++] = j->pend[k];
    if (j->events) sets[ns++] = j->events;
    size_t vis = 0;
    for (int k = 0; k < ns; k++)
        for (uint32_t i = 0; i < sets[k]->n; i++)
            if (visible_event(j, &sets[k]->ev[i], (const double(*)[3])ctr, nctr)) vis++;
    size_t skip = vis > SP_SNAP_MAX_EVENTS ? vis - SP_SNAP_MAX_EVENTS : 0;
    if (skip) atomic_fetch_add_explicit(&ws_of(j)->events_capped, skip, memory_order_relaxed); /* statistic */
    for (int k = 0; k < ns; k++)
        for (uint32_t i = 0; i < sets[k]->n; i++) {
            const sp_world_event_t *e = &sets[k]->ev[i];
            if (!visible_event(j, e, (const double(*)[3])ctr, nctr)) continue;
            if (skip) {
                skip--;
                continue;
            }
            pack_event(&pk, e);
            j->nevents++;
        }
    j->err = sp_d_snap_encode(f, s->rows, n, j->base, j->next, &j->out);
}

static void collect_main(sp_workers_t *ws);

/* One job (build or AI chunk) of the AI round is finished (any thread). */
static void ai_chunk_done(sp_workers_t *ws) {
    /* Release: the job's messages, pushed to the main inbox before this (and,
     * for the build, its ai_left increment and r->frame), happen before the
     * loop's acquire load in sp_workers_step_ready() that sees ai_left == 0
     * and then drains the inbox expecting all of them. Relaxed would let the
     * loop see 0 and apply the round without this job's last messages. */
    if (atomic_fetch_sub_explicit(&ws->ai_left, 1, memory_order_release) == 1)
        uv_async_send(&ws->d->wake); /* a step may be waiting for this round (loop.c) */
}

/* on_loop: run by the loop thread (sp_workers_help); it drains the main inbox
 * itself when the inbox is full (nobody else would). */
static void run_ai(sp_workers_t *ws, job_t *j, wscratch_t *s, bool on_loop) {
    const sp_frame_t *f = j->round->frame;
    size_t cap = sp_ai_chunk_max_msgs(f, j->chunk, j->nchunks);
    if (cap > s->mcap) {
        sp_msg_t *nm = realloc(s->msgs, cap * sizeof *nm);
        if (nm == NULL) cap = 0;
        else {
            s->msgs = nm;
            s->mcap = cap;
        }
    }
    size_t n = 0;
    if (cap > 0 && sp_ai_run_chunk(f, j->chunk, j->nchunks, f->tick, s->msgs, s->mcap, &n) != 0) n = 0;
    size_t sent = 0;
    while (sent < n) {
        size_t k = sp_bus_send_to_main_n(&ws->bus, s->msgs + sent, n - sent);
        sent += k;
        if (k == 0) {
            /* Main inbox full: the loop drains it on every wake-up (the
             * bus notify after each send is one). */
            if (on_loop) {
                collect_main(ws);
                continue;
            }
            if (atomic_load_explicit(&ws->stop, memory_order_relaxed)) break;
            sched_yield();
        }
    }
    ai_chunk_done(ws);
}

static void wake_all(sp_workers_t *ws) {
    for (int i = 0; i < ws->n; i++) sp_bus_worker_wake(&ws->bus, (unsigned)i);
}

static void push_result(sp_workers_t *ws, job_t *j) {
    while (sp_mpmc_try_push_ptr(&ws->results, j) != 0) sched_yield(); /* sized for all clients */
    uv_async_send(&ws->d->wake);
}

static void run_job(sp_workers_t *ws, job_t *j, wscratch_t *s, bool on_loop);

/* Build the round's frame from its capture, then queue the round's AI chunks
 * and snapshot jobs. Any thread (a worker, or the loop: sp_workers_help). */
static void run_build(sp_workers_t *ws, job_t *j, wscratch_t *s, bool on_loop) {
    round_t *r = j->round;
    uint64_t t0 = sp_now_ns();
    sp_frame_t *f = sp_frame_build(r->cap);
    uint64_t ns = sp_now_ns() - t0;
    /* Relaxed: statistics for metrics. */
    atomic_store_explicit(&ws->build_ns_last, ns, memory_order_relaxed);
    if (ns > atomic_load_explicit(&ws->build_ns_max, memory_order_relaxed))
        atomic_store_explicit(&ws->build_ns_max, ns, memory_order_relaxed);
    /* Give the capture back for the next round (or free it if the pool is full). */
    if (sp_mpmc_try_push_ptr(&ws->caps, r->cap) != 0) sp_world_capture_free(r->cap);
    r->cap = NULL;
    r->frame = f;
    if (f == NULL) SP_LOGE("cannot build the frame of tick %llu: out of memory (round skipped)", (unsigned long long)r->tick);
    /* AI chunks. ai_left still holds this build's 1, so adding first keeps it
     * above 0 until every chunk is accounted for. Relaxed: same-variable RMW
     * order; the chunks' own decrements release their results. */
    uint32_t chunks = (f != NULL && f->npc_count > 0) ? ai_chunk_count(f->npc_count) : 0;
    atomic_fetch_add_explicit(&ws->ai_left, chunks, memory_order_relaxed);
    for (uint32_t k = 0; k < chunks; k++) {
        job_t *aj = calloc(1, sizeof *aj);
        if (aj == NULL) {
            SP_LOGE("out of memory queueing NPC AI chunk %u: its NPCs skip this round", k);
            ai_chunk_done(ws);
            continue;
        }
        aj->kind = JOB_AI;
        aj->round = r;
        aj->chunk = k;
        aj->nchunks = chunks;
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed); /* the job's; we hold one */
        /* The push (release) publishes r->frame and the job to the popper. */
        if (sp_mpmc_try_push_ptr(&ws->rjobs, aj) != 0) run_job(ws, aj, s, on_loop); /* queue full: here */
    }
    for (size_t i = 0; i < r->nsnap; i++) {
        job_t *sj = r->snap[i];
        if (f == NULL) {
            sj->err = SP_ENOMEM;
            round_release(sj->round);
            sj->round = NULL;
            push_result(ws, sj);
        } else if (sp_mpmc_try_push_ptr(&ws->jobs, sj) != 0) {
            run_job(ws, sj, s, on_loop);
        }
    }
    free(r->snap);
    r->snap = NULL;
    r->nsnap = 0;
    wake_all(ws);
    ai_chunk_done(ws); /* the build's own count */
}

/* Run any job and dispose of it (AI/build: freed; snapshot: to the results). */
static void run_job(sp_workers_t *ws, job_t *j, wscratch_t *s, bool on_loop) {
    switch (j->kind) {
    case JOB_BUILD:
        run_build(ws, j, s, on_loop);
        round_release(j->round);
        free(j);
        break;
    case JOB_AI:
        run_ai(ws, j, s, on_loop);
        round_release(j->round);
        free(j);
        break;
    default:
        run_snapshot(j, s);
        round_release(j->round);
        j->round = NULL;
        push_result(ws, j);
        break;
    }
}

typedef struct warg {
    sp_workers_t *ws;
    unsigned idx;
} warg_t;

static void *worker_main(void *arg) {
    warg_t *wa = arg;
    sp_workers_t *ws = wa->ws;
    unsigned me = wa->idx;
    free(wa);
    /* SCHED_BATCH: a throughput thread that does not preempt the loop thread
     * when woken (the kernel skips wake-up preemption for batch tasks), so
     * the loop's tick is not cut in two by a worker landing on its CPU.
     * Best effort: unprivileged and harmless if refused. */
    struct sched_param sp = {0};
    (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    wscratch_t s = {0};
    s.cap = 4096;
    s.rows = malloc(s.cap * sizeof *s.rows);
    if (s.rows == NULL) s.cap = 0;
    for (;;) {
        sp_msg_t m;
        while (sp_bus_recv_worker(&ws->bus, me, &m) == 0) {
            if (m.kind == SP_MSG_SYSTEM_ALERT)
                atomic_fetch_add_explicit(&ws->alerts_seen, 1, memory_order_relaxed); /* statistic */
        }
        void *p;
        if (sp_mpmc_try_pop_ptr(&ws->rjobs, &p) == 0 || sp_mpmc_try_pop_ptr(&ws->jobs, &p) == 0) {
            run_job(ws, p, &s, false);
            continue;
        }
        /* Acquire: pairs with the release store in sp_workers_stop(). */
        if (atomic_load_explicit(&ws->stop, memory_order_acquire)) break;
        sp_bus_worker_wait(&ws->bus, me, 200);
    }
    free(s.rows);
    free(s.msgs);
    return NULL;
}

static void notify_main(void *ctx) { uv_async_send((uv_async_t *)ctx); }

static size_t pow2_at_least(size_t n) {
    size_t p = 2;
    while (p < n) p <<= 1;
    return p;
}

int sp_workers_start(sp_daemon_t *d, int n) {
    sp_workers_t *ws = calloc(1, sizeof *ws);
    if (ws == NULL) return SP_ENOMEM;
    ws->d = d;
    ws->n = n;
    size_t npc = d->world ? sp_world_count_kind(d->world, SP_KIND_SHIP) : 0;
    sp_bus_def_t def = sp_bus_def_default((unsigned)n);
    def.main_capacity = pow2_at_least(4 * npc + 4096);
    int r = sp_bus_init_def(&ws->bus, &def, NULL);
    if (r < 0) {
        free(ws);
        return r;
    }
    sp_bus_set_main_notify(&ws->bus, notify_main, &d->wake);
    size_t qcap = pow2_at_least((size_t)d->conf.max_clients + 1024);
    if ((r = sp_mpmc_init(&ws->rjobs, pow2_at_least(SP_AI_MAX_CHUNKS + 16), sizeof(void *), NULL)) < 0 ||
        (r = sp_mpmc_init(&ws->caps, 4, sizeof(void *), NULL)) < 0 ||
        (r = sp_mpmc_init(&ws->jobs, qcap, sizeof(void *), NULL)) < 0 ||
        (r = sp_mpmc_init(&ws->results, qcap, sizeof(void *), NULL)) < 0) {
        sp_mpmc_destroy(&ws->rjobs);
        sp_mpmc_destroy(&ws->caps);
        sp_mpmc_destroy(&ws->jobs);
        sp_bus_destroy(&ws->bus);
        free(ws);
        return r;
    }
    ws->loop_scratch = calloc(1, sizeof *ws->loop_scratch);
    if (ws->loop_scratch == NULL) return SP_ENOMEM;
    ws->threads = calloc((size_t)n, sizeof *ws->threads);
    if (ws->threads == NULL) return SP_ENOMEM;
    d->workers = ws;
    for (int i = 0; i < n; i++) {
        warg_t *wa = malloc(sizeof *wa);
        if (wa == NULL) return SP_ENOMEM;
        wa->ws = ws;
        wa->idx = (unsigned)i;
        if (pthread_create(&ws->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            ws->n = i;
            return SP_EAGAIN;
        }
    }
    return 0;
}

static void free_job(job_t *j) {
    for (int k = 0; k < j->npend; k++) evset_release(j->pend[k]);
    evset_release(j->events);
    if (j->next) sp_d_view_free(j->next);
    if (j->kind == JOB_SNAP) msgpack_sbuffer_destroy(&j->out);
    if (j->round) round_release(j->round);
    free(j);
}

void sp_workers_stop(sp_daemon_t *d) {
    sp_workers_t *ws = d->workers;
    if (ws == NULL) return;
    /* Release: orders nothing in particular but pairs with the workers'
     * acquire load, so they exit after the jobs queued before it. */
    atomic_store_explicit(&ws->stop, 1, memory_order_release);
    for (int i = 0; i < ws->n; i++) sp_bus_worker_wake(&ws->bus, (unsigned)i);
    for (int i = 0; i < ws->n; i++) pthread_join(ws->threads[i], NULL);
    void *p;
    while (sp_mpmc_try_pop_ptr(&ws->rjobs, &p) == 0 || sp_mpmc_try_pop_ptr(&ws->jobs, &p) == 0) {
        job_t *j = p;
        if (j->kind == JOB_BUILD) { /* its round's snapshot jobs were never queued */
            round_t *r = j->round;
            for (size_t i = 0; i < r->nsnap; i++) {
                r->snap[i]->client->snap_pending = false;
                sp_client_unref(r->snap[i]->client);
                free_job(r->snap[i]);
            }
            r->nsnap = 0;
        }
        if (j->kind == JOB_SNAP) {
            j->client->snap_pending = false;
            sp_client_unref(j->client);
        }
        free_job(j);
    }
    while (sp_mpmc_try_pop_ptr(&ws->caps, &p) == 0) sp_world_capture_free(p);
    while (sp_mpmc_try_pop_ptr(&ws->results, &p) == 0) {
        job_t *j = p;
        j->client->snap_pending = false;
        sp_client_unref(j->client);
        free_job(j);
    }
    if (ws->ai_round) round_release(ws->ai_round);
    sp_mpmc_destroy(&ws->rjobs);
    sp_mpmc_destroy(&ws->caps);
    sp_mpmc_destroy(&ws->jobs);
    sp_mpmc_destroy(&ws->results);
    sp_bus_destroy(&ws->bus);
    if (ws->loop_scratch) {
        free(ws->loop_scratch->rows);
        free(ws->loop_scratch->msgs);
        free(ws->loop_scratch);
    }
    free(ws->threads);
    free(ws->ai_msgs);
    free(ws->ai_tmp);
    free(ws->ev);
    free(ws);
    d->workers = NULL;
}

/* ---------------------------------------------------------------- loop side */

/* Record this step's events (loop thread, right after sp_world_step). */
void sp_workers_collect_events(sp_daemon_t *d) {
    sp_workers_t *ws = d->workers;
    size_t n = 0;
    const sp_world_event_t *ev = sp_world_events(d->world, &n);
    for (size_t i = 0; i < n; i++) {
        const sp_world_event_t *e = &ev[i];
        if (e->type == SP_EV_COLLISION) continue;
        if (e->type == SP_EV_ENTITY_DESTROYED && e->kind != SP_KIND_SHIP) continue;
        if (ws->nev == ws->capev) {
            size_t cap = ws->capev ? ws->capev * 2 : 256;
            if (cap > 1u << 20) return; /* bounded: drop beyond a million per round */
            sp_world_event_t *ne = realloc(ws->ev, cap * sizeof *ne);
            if (ne == NULL) return;
            ws->ev = ne;
            ws->capev = cap;
        }
        ws->ev[ws->nev++] = *e;
    }
}

/* Move the main inbox's messages (the AI round's intents) to ai_msgs.
 * Loop thread. */
static void collect_main(sp_workers_t *ws) {
    sp_msg_t buf[256];
    size_t k;
    while ((k = sp_bus_recv_main_n(&ws->bus, buf, 256)) > 0) {
        if (ws->ai_n + k > ws->ai_cap) {
            size_t cap = ws->ai_cap ? ws->ai_cap : 1024;
            while (cap < ws->ai_n + k) cap *= 2;
            sp_msg_t *nm = realloc(ws->ai_msgs, cap * sizeof *nm);
            if (nm == NULL) {
                /* Out of memory: these intents are lost (logged); the
                 * world stays consistent, only this run's determinism is
                 * gone, which the log says. */
                SP_LOGE("out of memory collecting %zu NPC intents: dropped", k);
                continue;
            }
            ws->ai_msgs = nm;
            ws->ai_cap = cap;
        }
        memcpy(ws->ai_msgs + ws->ai_n, buf, k * sizeof buf[0]);
        ws->ai_n += k;
    }
}

/* Is every job of ai_round done? Acquire: pairs with the release decrement
 * in ai_chunk_done(); after it every message of the round is in the main
 * inbox (collect_main then gets them all). Loop thread. */
static bool ai_round_done(sp_workers_t *ws) {
    return atomic_load_explicit(&ws->ai_left, memory_order_acquire) == 0;
}

/* Run one queued build/AI job on the loop thread; false if none is queued.
 * Only jobs of ai_round are ever in rjobs (a round's build is queued after
 * the previous round was applied). */
static bool help_one(sp_workers_t *ws) {
    void *p;
    if (sp_mpmc_try_pop_ptr(&ws->rjobs, &p) != 0) return false;
    run_job(ws, p, ws->loop_scratch, true);
    return true;
}

/* The round's messages in sp_msg_order_cmp order (tick, origin, seq).
 * A chunk's messages reach the inbox in seq order (one thread pushes them, in
 * order, into a FIFO), so a stable counting sort by origin usually gives that
 * order in O(n) (qsort of 10k 128-byte messages cost ~0.3 ms of the tick);
 * the result is checked against sp_msg_order_cmp and qsort is the fallback,
 * so the order is the defined one in every case. */
static const sp_msg_t *order_msgs(sp_workers_t *ws) {
    size_t n = ws->ai_n;
    if (n < 2) return ws->ai_msgs;
    uint32_t cnt[SP_AI_MAX_CHUNKS + 1];
    memset(cnt, 0, sizeof cnt);
    bool ok = ws->ai_tmp_cap >= n;
    for (size_t i = 0; ok && i < n; i++) {
        if (ws->ai_msgs[i].hdr.origin >= SP_AI_MAX_CHUNKS) ok = false;
        else cnt[ws->ai_msgs[i].hdr.origin + 1]++;
    }
    if (!ok && ws->ai_tmp_cap < n) {
        sp_msg_t *t = realloc(ws->ai_tmp, n * sizeof *t);
        if (t != NULL) {
            ws->ai_tmp = t;
            ws->ai_tmp_cap = n;
            return order_msgs(ws);
        }
    }
    if (ok) {
        for (uint32_t o = 0; o < SP_AI_MAX_CHUNKS; o++) cnt[o + 1] += cnt[o];
        for (size_t i = 0; i < n; i++) ws->ai_tmp[cnt[ws->ai_msgs[i].hdr.origin]++] = ws->ai_msgs[i];
        for (size_t i = 1; ok && i < n; i++)
            if (sp_msg_order_cmp(&ws->ai_tmp[i - 1], &ws->ai_tmp[i]) >= 0) ok = false;
        if (ok) return ws->ai_tmp;
    }
    qsort(ws->ai_msgs, n, sizeof ws->ai_msgs[0], sp_msg_order_cmp_qsort);
    return ws->ai_msgs;
}

/* Apply ai_round (complete: the loop runs the step only when
 * sp_workers_step_ready() said so). */
static void apply_ai_round(sp_daemon_t *d) {
    sp_workers_t *ws = d->workers;
    SP_ASSERT(ai_round_done(ws));
    if (!ai_round_done(ws)) {
        /* Unreachable (see sp_workers_snapshot_round). Release builds keep
         * the defined result rather than apply half a round: finish it here,
         * the old blocking way. */
        SP_LOGE("NPC AI round of tick %llu applied before it was complete: waiting (bug)",
                (unsigned long long)ws->ai_tick);
        while (!ai_round_done(ws)) {
            collect_main(ws); /* a worker may be waiting for room */
            if (!help_one(ws)) sched_yield();
        }
    }
    collect_main(ws);
    const sp_msg_t *m = order_msgs(ws);
    for (size_t i = 0; i < ws->ai_n; i++) {
        if (m[i].hdr.tick != ws->ai_tick || sp_msg_validate(&m[i]) != 0) continue;
        (void)sp_world_apply_msg(d->world, &m[i]); /* a stale intent is normal */
    }
    d->st.worker_msgs += ws->ai_n;
    ws->ai_n = 0;
    round_release(ws->ai_round);
    ws->ai_round = NULL;
}

/* Is an AI round due before the step from the current world tick? */
static bool ai_round_due(const sp_daemon_t *d) {
    const sp_workers_t *ws = d->workers;
    return ws != NULL && ws->ai_round != NULL && sp_world_tick(d->world) >= ws->ai_apply_at;
}

bool sp_workers_step_ready(sp_daemon_t *d) {
    if (!ai_round_due(d)) return true;
    collect_main(d->workers); /* room for the workers' messages; never blocks */
    return ai_round_done(d->workers);
}

bool sp_workers_help(sp_daemon_t *d) {
    if (!ai_round_due(d) || ai_round_done(d->workers)) return false;
    return help_one(d->workers);
}

void sp_workers_apply_due(sp_daemon_t *d) {
    if (ai_round_due(d)) apply_ai_round(d);
}

/* Results: hand snapshot bytes to sockets; collect AI messages (applied by
 * sp_workers_apply_due at their tick, never here). */
/* ---------------------------------------------------------------- pending events */

/* How many of e's events client c can see, judged by the loop now (its
 * ships' current positions, or its subscribe centre). Loop thread. */
static size_t visible_now(sp_daemon_t *d, const sp_client_t *c, const evset_t *e) {
    double ctr[SP_MAX_SHIPS_PER_CLIENT + 1][3];
    int nctr = 0;
    for (int i = 0; i < c->nships; i++) {
        sp_entity_info_t info;
        if (sp_world_inspect(d->world, c->ships[i], &info) != 0) continue;
        for (int k = 0; k < 3; k++) ctr[nctr][k] = info.pos[k];
        nctr++;
    }
    if (nctr == 0) {
        memcpy(ctr[0], c->centre, sizeof ctr[0]);
        nctr = 1;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < e->n; i++)
        if (event_visible(c->session, c->radius, &e->ev[i], (const double(*)[3])ctr, nctr)) n++;
    return n;
}

/* Keep e (retained) for c's next snapshot; past SP_PEND_ROUNDS the oldest
 * set goes, its visible events counted as dropped. Loop thread. */
static void pend_push(sp_daemon_t *d, sp_client_t *c, evset_t *e) {
    if (c->npend == SP_PEND_ROUNDS) {
        d->st.events_dropped += visible_now(d, c, c->pend[0]);
        evset_release(c->pend[0]);
        memmove(c->pend, c->pend + 1, (SP_PEND_ROUNDS - 1) * sizeof c->pend[0]);
        c->npend--;
    }
    evset_retain(e);
    c->pend[c->npend++] = e;
}

/* A job's events were not delivered (encoding failed): give them back to the
 * client, ahead of what it gathered since (older first). Loop thread. */
static void pend_requeue(sp_daemon_t *d, sp_client_t *c, job_t *j) {
    evset_t *all[2 * SP_PEND_ROUNDS + 1];
    int n = 0;
    for (int k = 0; k < j->npend; k++) all[n++] = j->pend[k];
    if (j->events) all[n++] = j->events;
    for (int k = 0; k < c->npend; k++) all[n++] = c->pend[k];
    j->npend = 0;
    j->events = NULL;
    c->npend = 0;
    int first = n > SP_PEND_ROUNDS ? n - SP_PEND_ROUNDS : 0;
    for (int k = 0; k < first; k++) {
        d->st.events_dropped += visible_now(d, c, all[k]);
        evset_release(all[k]);
    }
    for (int k = first; k < n; k++) c->pend[c->npend++] = all[k];
}

void sp_workers_client_free(sp_client_t *c) {
    for (int k = 0; k < c->npend; k++) evset_release(c->pend[k]);
    c->npend = 0;
}

uint64_t sp_workers_events_dropped(const sp_daemon_t *d) {
    uint64_t n = d->st.events_dropped;
    /* Relaxed: a statistic. */
    if (d->workers) n += atomic_load_explicit(&d->workers->events_capped, memory_order_relaxed);
    return n;
}

void sp_workers_drain(sp_daemon_t *d) {
    sp_workers_t *ws = d->workers;
    if (ws == NULL) return;
    void *p;
    while (sp_mpmc_try_pop_ptr(&ws->results, &p) == 0) {
        job_t *j = p;
        sp_client_t *c = j->client;
        c->snap_pending = false;
        if (c->state != SP_CLIENT_CLOSING && j->err == 0) {
            if (sp_client_send(c, j->out.data, j->out.size) == 0) {
                /* The bytes are on their way in order: make this the baseline. */
                if (c->view) sp_d_view_free(c->view);
                c->view = j->next;
                j->next = NULL;
                c->snaps_sent++;
                d->st.snapshots_sent++;
                d->st.events_sent += j->nevents;
                d->st.snapshot_bytes += j->out.size;
                d->st.snapshot_entities += j->visible;
            }
        } else if (j->err != 0 && c->state != SP_CLIENT_CLOSING) {
            SP_LOGW("client %u: snapshot encoding failed: %s", c->session, sp_strerror(j->err));
            pend_requeue(d, c, j);
        }
        sp_client_unref(c);
        free_job(j);
    }
    collect_main(ws);
}

void sp_workers_snapshot_round(sp_daemon_t *d) {
    sp_workers_t *ws = d->workers;
    /* The previous AI round is applied at tick T + P - 1, before this one
     * (tick T + P) is dispatched; a round can still be pending only if the
     * tick numbering jumped (never: the world tick moves by one per step and
     * P is fixed): apply it now. */
    if (ws->ai_round != NULL) apply_ai_round(d);
    void *p;
    sp_world_capture_t *cap = NULL;
    if (sp_mpmc_try_pop_ptr(&ws->caps, &p) == 0) cap = p;
    else if (sp_world_capture_create(NULL, &cap) != 0) cap = NULL;
    round_t *r = calloc(1, sizeof *r);
    if (cap == NULL || r == NULL || sp_world_capture(d->world, cap) != 0) {
        SP_LOGW("cannot capture the world: out of memory (round skipped; events kept for the next)");
        sp_world_capture_free(cap);
        free(r);
        return;
    }
    r->cap = cap;
    r->tick = sp_world_tick(d->world);
    if (ws->nev > 0) {
        evset_t *es = malloc(sizeof *es + ws->nev * sizeof es->ev[0]);
        if (es != NULL) {
            atomic_init(&es->refs, 1); /* the round's; not shared yet */
            es->n = (uint32_t)ws->nev;
            memcpy(es->ev, ws->ev, ws->nev * sizeof es->ev[0]);
            r->events = es;
        }
        ws->nev = 0;
    }
    /* Relaxed: the round is not shared yet; the job pushes publish it. */
    atomic_store_explicit(&r->refs, 1, memory_order_relaxed);

    /* Snapshot jobs, queued by the build job once the frame exists. */
    if (d->nclients > 0) r->snap = malloc((size_t)d->nclients * sizeof *r->snap);
    for (sp_client_t *c = d->clients; c; c = c->next) {
        if (c->state != SP_CLIENT_READY) continue;
        bool skip = c->snap_pending || r->snap == NULL;
        if (!skip && c->obuf_bytes > d->conf.obuf_soft) {
            /* Skip; the next delta is taken against what it really received. */
            d->st.snapshots_skipped++;
            skip = true;
        }
        if (skip) {
            /* Its events wait for the snapshot it really gets. */
            if (r->events) pend_push(d, c, r->events);
            continue;
        }
        job_t *j = calloc(1, sizeof *j);
        if (j == NULL) break;
        j->next = sp_d_view_new();
        if (j->next == NULL) {
            free(j);
            break;
        }
        msgpack_sbuffer_init(&j->out);
        j->kind = JOB_SNAP;
        j->round = r;
        j->client = c;
        j->session = c->session;
        j->radius = c->radius;
        memcpy(j->centre, c->centre, sizeof j->centre);
        memcpy(j->ships, c->ships, sizeof j->ships);
        j->nships = c->nships;
        if (c->need_full && c->view) {
            sp_d_view_free(c->view);
            c->view = NULL;
        }
        c->need_full = false;
        j->base = c->view;
        j->ws = ws;
        memcpy(j->pend, c->pend, (size_t)c->npend * sizeof c->pend[0]); /* the job takes them */
        j->npend = c->npend;
        c->npend = 0;
        if (r->events) {
            evset_retain(r->events);
            j->events = r->events;
        }
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed); /* the job's */
        r->snap[r->nsnap++] = j;
        c->snap_pending = true;
        c->refs++; /* the job refers to c until the loop drains its result */
    }

    /* The AI round of this frame: applied at tick T + P - 1. */
    ws->ai_round = r;
    ws->ai_tick = r->tick;
    ws->ai_apply_at = r->tick + d->snap_every - 1;
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed); /* held by ai_round */
    /* Relaxed: the build job that decrements it is published by the push. */
    atomic_store_explicit(&ws->ai_left, 1, memory_order_relaxed);
    job_t *bj = calloc(1, sizeof *bj);
    if (bj == NULL) {
        /* Cannot even queue the build: do it here (still correct, just slow). */
        job_t tmp = {.kind = JOB_BUILD, .round = r};
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
        run_build(ws, &tmp, ws->loop_scratch, true);
        round_release(r);
    } else {
        bj->kind = JOB_BUILD;
        bj->round = r;
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed); /* the job's */
        if (sp_mpmc_try_push_ptr(&ws->rjobs, bj) != 0) run_job(ws, bj, ws->loop_scratch, true);
    }
    round_release(r); /* the loop's own reference */
    ws->kick = true;
}

void sp_workers_kick(sp_daemon_t *d) {
    sp_workers_t *ws = d->workers;
    if (ws == NULL || !ws->kick) return;
    ws->kick = false;
    /* One worker: it runs the build, which wakes the others for the jobs it
     * queues. Each wake-up is a chance for the woken thread to take this CPU. */
    sp_bus_worker_wake(&ws->bus, 0);
}

size_t sp_workers_queue_depth(const sp_daemon_t *d, size_t *results) {
    const sp_workers_t *ws = d->workers;
    if (ws == NULL) {
        *results = 0;
        return 0;
    }
    sp_bus_depths_t bd;
    sp_bus_depths(&ws->bus, &bd);
    *results = sp_mpmc_size_approx(&ws->results) + bd.main;
    return sp_mpmc_size_approx(&ws->jobs) + sp_mpmc_size_approx(&ws->rjobs);
}

void sp_workers_broadcast_alert(sp_daemon_t *d, const char *text, size_t len, int priority) {
    sp_workers_t *ws = d->workers;
    if (ws == NULL) return;
    sp_msg_t m;
    if (len > SP_MSG_ALERT_MAX) len = SP_MSG_ALERT_MAX; /* the bus carries the first 95 bytes */
    if (sp_msg_system_alert_n(&m, text, len, (uint8_t)priority) != 0) return;
    sp_msg_stamp(&m, sp_world_tick(d->world), SP_MSG_ORIGIN_LOOP, 0);
    if (sp_bus_broadcast(&ws->bus, &m) != 0) SP_LOGW("alert not broadcast to workers: bus ring full");
}

uint64_t sp_workers_alerts_seen(const sp_daemon_t *d) {
    /* Relaxed: a statistic. */
    return d->workers ? atomic_load_explicit(&d->workers->alerts_seen, memory_order_relaxed) : 0;
}
