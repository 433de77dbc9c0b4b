/* workers.c: worker threads and the jobs they run.
 *
 * Two kinds of job, both reading only an immutable, reference-counted frame
 * (sim/frame.h) so the loop keeps stepping the world meanwhile:
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
 *    not complete by then, the loop WAITS for it (a "stall", counted and
 *    logged at most every 5 s): first it runs still-queued AI jobs itself,
 *    then it sleeps on a condition variable until the in-flight chunks end.
 *    The world after any tick is thus the same with 1 or N workers and under
 *    any scheduling (tests/net/check_daemon: --workers 1 vs 2, same hash).
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
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim/ai.h"
#include "daemon/snapshim.h"
#include "spacesim/mpmc.h"

/* ---------------------------------------------------------------- rounds */

/* Events of the ticks since the previous snapshot round, with a position so
 * workers can filter them by interest. Immutable once the round starts. */
typedef struct devent {
    sp_world_event_t ev;
    float pos[3];
    uint32_t other_owner;
} devent_t;

typedef struct round {
    _Atomic uint32_t refs; /* loop + one per job */
    const sp_frame_t *frame;
    devent_t *events;
    size_t nevents;
} round_t;

static void round_release(round_t *r) {
    /* acq_rel: the last releaser must see every other job's reads of the
     * round completed before it frees it (acquire), and our own reads must
     * happen before another thread's free (release). */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        sp_frame_release(r->frame);
        free(r->events);
        free(r);
    }
}

typedef enum { JOB_AI = 1, JOB_SNAP = 2 } job_kind_t;

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
    const sp_d_view_t *base; /* NULL = full; read-only while the job runs */
    sp_d_view_t *next;
    msgpack_sbuffer out;
    size_t visible;
    int err;
} job_t;

struct sp_workers {
    sp_daemon_t *d;
    int n;
    pthread_t *threads;
    sp_bus_t bus;
    sp_mpmc_t rjobs;   /* job_t *: AI chunks; workers take these first */
    sp_mpmc_t jobs;    /* job_t *: snapshot jobs */
    sp_mpmc_t results; /* job_t * (snapshot results) */
    _Atomic int stop;
    /* AI round state (loop thread, except ai_left and the mutex/condvar). */
    round_t *ai_round;
    uint64_t ai_tick;     /* frame tick of ai_round */
    uint64_t ai_apply_at; /* pre-step world tick at which it is applied */
    /* Chunks of ai_round not finished yet. Decremented by whoever ran the
     * chunk, under ai_mu, with a broadcast of ai_cv when it reaches 0. */
    _Atomic uint32_t ai_left;
    pthread_mutex_t ai_mu;
    pthread_cond_t ai_cv;
    sp_msg_t *ai_msgs;
    size_t ai_n, ai_cap;
    struct wscratch *loop_scratch; /* for AI jobs the loop runs while stalled */
    _Atomic uint64_t alerts_seen;
    /* Events gathered since the last round (loop thread). */
    devent_t *ev;
    size_t nev, capev;
    const sp_frame_t *last_frame; /* positions of entities destroyed since */
};

/* ---------------------------------------------------------------- worker side */

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

static bool visible_event(const job_t *j, const devent_t *e, const double (*ctr)[3], int nctr) {
    if (e->ev.owner == j->session || e->other_owner == j->session) return true;
    double r2 = j->radius * j->radius;
    for (int i = 0; i < nctr; i++) {
        double dx = e->pos[0] - ctr[i][0], dy = e->pos[1] - ctr[i][1], dz = e->pos[2] - ctr[i][2];
        if (dx * dx + dy * dy + dz * dz <= r2) return true;
    }
    return false;
}

static void pack_cstr(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }

static void pack_event(msgpack_packer *pk, const devent_t *de) {
    const sp_world_event_t *e = &de->ev;
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
    for (size_t i = 0; i < j->round->nevents; i++) {
        const devent_t *e = &j->round->events[i];
        if (visible_event(j, e, (const double(*)[3])ctr, nctr)) pack_event(&pk, e);
    }
    j->err = sp_d_snap_encode(f, s->rows, n, j->base, j->next, &j->out);
}

static void collect_main(sp_workers_t *ws);

/* One chunk of the AI round is finished (any thread). */
static void ai_chunk_done(sp_workers_t *ws) {
    pthread_mutex_lock(&ws->ai_mu);
    /* Release: the chunk's messages, pushed to the main inbox before this,
     * happen before the loop's acquire load that sees ai_left == 0 and then
     * drains the inbox expecting all of them. (The mutex orders it for the
     * waiter too; the fast path in sp_workers_apply_due reads without it.) */
    if (atomic_fetch_sub_explicit(&ws->ai_left, 1, memory_order_release) == 1)
        pthread_cond_broadcast(&ws->ai_cv);
    pthread_mutex_unlock(&ws->ai_mu);
}

/* on_loop: run by the loop thread while it waits for the round; it drains the
 * main inbox itself when the inbox is full (nobody else would). */
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
            /* Main inbox full: the loop drains it on every wake-up and while
             * it waits for the round. */
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

typedef struct warg {
    sp_workers_t *ws;
    unsigned idx;
} warg_t;

static void *worker_main(void *arg) {
    warg_t *wa = arg;
    sp_workers_t *ws = wa->ws;
    unsigned me = wa->idx;
    free(wa);
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
            job_t *j = p;
            if (j->kind == JOB_AI) {
                run_ai(ws, j, &s, false);
                round_release(j->round);
                free(j);
            } else {
                run_snapshot(j, &s);
                round_release(j->round);
                j->round = NULL;
                while (sp_mpmc_try_push_ptr(&ws->results, j) != 0) sched_yield(); /* sized for all clients */
                uv_async_send(&ws->d->wake);
            }
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

/* AI chunks of a round: one per SP_AI_CHUNK_NPCS NPCs, at most
 * SP_AI_MAX_CHUNKS. A function of the frame only (never of --workers). */
#define SP_AI_CHUNK_NPCS 256u
#define SP_AI_MAX_CHUNKS 64u
static uint32_t ai_chunk_count(uint32_t npcs) {
    uint32_t k = (npcs + SP_AI_CHUNK_NPCS - 1) / SP_AI_CHUNK_NPCS;
    if (k < 1) k = 1;
    return k > SP_AI_MAX_CHUNKS ? SP_AI_MAX_CHUNKS : k;
}

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
        (r = sp_mpmc_init(&ws->jobs, qcap, sizeof(void *), NULL)) < 0 ||
        (r = sp_mpmc_init(&ws->results, qcap, sizeof(void *), NULL)) < 0) {
        sp_mpmc_destroy(&ws->rjobs);
        sp_mpmc_destroy(&ws->jobs);
        sp_bus_destroy(&ws->bus);
        free(ws);
        return r;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&ws->ai_mu, NULL);
    pthread_cond_init(&ws->ai_cv, &ca);
    pthread_condattr_destroy(&ca);
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
    if (j->next) sp_d_view_free(j->next);
    msgpack_sbuffer_destroy(&j->out);
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
        if (j->kind == JOB_SNAP) {
            j->client->snap_pending = false;
            sp_client_unref(j->client);
        }
        free_job(j);
    }
    while (sp_mpmc_try_pop_ptr(&ws->results, &p) == 0) {
        job_t *j = p;
        j->client->snap_pending = false;
        sp_client_unref(j->client);
        free_job(j);
    }
    if (ws->ai_round) round_release(ws->ai_round);
    if (ws->last_frame) sp_frame_release(ws->last_frame);
    sp_mpmc_destroy(&ws->rjobs);
    sp_mpmc_destroy(&ws->jobs);
    sp_mpmc_destroy(&ws->results);
    sp_bus_destroy(&ws->bus);
    pthread_mutex_destroy(&ws->ai_mu);
    pthread_cond_destroy(&ws->ai_cv);
    if (ws->loop_scratch) {
        free(ws->loop_scratch->rows);
        free(ws->loop_scratch->msgs);
        free(ws->loop_scratch);
    }
    free(ws->threads);
    free(ws->ai_msgs);
    free(ws->ev);
    free(ws);
    d->workers = NULL;
}

/* ---------------------------------------------------------------- loop side */

static void wake_all(sp_workers_t *ws) {
    for (int i = 0; i < ws->n; i++) sp_bus_worker_wake(&ws->bus, (unsigned)i);
}

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
            devent_t *ne = realloc(ws->ev, cap * sizeof *ne);
            if (ne == NULL) return;
            ws->ev = ne;
            ws->capev = cap;
        }
        devent_t *de = &ws->ev[ws->nev++];
        memset(de, 0, sizeof *de);
        de->ev = *e;
        sp_entity_info_t info;
        if (sp_world_inspect(d->world, e->subject, &info) == 0) {
            memcpy(de->pos, info.pos, sizeof de->pos);
        } else if (ws->last_frame) {
            long row = sp_frame_find(ws->last_frame, e->subject);
            if (row >= 0)
                for (int k = 0; k < 3; k++) de->pos[k] = sp_frame_pos(ws->last_frame->rows[row].pos[k]);
        }
        if (e->other && sp_world_inspect(d->world, e->other, &info) == 0) de->other_owner = info.owner;
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

/* The loop waits for the AI round: runs still-queued AI jobs itself, then
 * sleeps on ai_cv until the chunks that workers are running are done,
 * draining the main inbox every millisecond (a worker may be waiting for
 * room there). */
static void ai_wait(sp_workers_t *ws) {
    for (;;) {
        /* Acquire: pairs with the release decrement in ai_chunk_done(). */
        if (atomic_load_explicit(&ws->ai_left, memory_order_acquire) == 0) return;
        void *p;
        if (sp_mpmc_try_pop_ptr(&ws->rjobs, &p) == 0) {
            job_t *j = p;
            run_ai(ws, j, ws->loop_scratch, true);
            round_release(j->round);
            free(j);
            continue;
        }
        collect_main(ws);
        pthread_mutex_lock(&ws->ai_mu);
        /* Acquire: as above; under the mutex no decrement can slip between
         * this check and the wait (the decrement takes the mutex too). */
        if (atomic_load_explicit(&ws->ai_left, memory_order_acquire) != 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&ws->ai_cv, &ws->ai_mu, &ts);
        }
        pthread_mutex_unlock(&ws->ai_mu);
    }
}

static void apply_ai_round(sp_daemon_t *d) {
    sp_workers_t *ws = d->workers;
    /* Acquire: pairs with the release decrement in ai_chunk_done(); after it
     * every message of the round is in the main inbox. */
    if (atomic_load_explicit(&ws->ai_left, memory_order_acquire) != 0) {
        uint64_t t0 = sp_now_ns();
        ai_wait(ws);
        uint64_t ns = sp_now_ns() - t0;
        d->st.ai_stalls++;
        d->st.ai_stall_ns_sum += ns;
        if (ns > d->st.ai_stall_ns_max) d->st.ai_stall_ns_max = ns;
        uint64_t n = sp_log_ratelimit_ok(&d->stall_rl, sp_now_ns() / 1000000u);
        if (n)
            SP_LOGW("NPC AI round of tick %llu not done at its application tick: waited %.2f ms; "
                    "%llu stall(s) since the last warning",
                    (unsigned long long)ws->ai_tick, (double)ns / 1e6, (unsigned long long)n);
    }
    collect_main(ws);
    qsort(ws->ai_msgs, ws->ai_n, sizeof ws->ai_msgs[0], sp_msg_order_cmp_qsort);
    for (size_t i = 0; i < ws->ai_n; i++) {
        if (ws->ai_msgs[i].hdr.tick != ws->ai_tick || sp_msg_validate(&ws->ai_msgs[i]) != 0) continue;
        (void)sp_world_apply_msg(d->world, &ws->ai_msgs[i]); /* a stale intent is normal */
    }
    d->st.worker_msgs += ws->ai_n;
    ws->ai_n = 0;
    round_release(ws->ai_round);
    ws->ai_round = NULL;
}

void sp_workers_apply_due(sp_daemon_t *d) {
    sp_workers_t *ws = d->workers;
    if (ws == NULL || ws->ai_round == NULL) return;
    if (sp_world_tick(d->world) < ws->ai_apply_at) return;
    apply_ai_round(d);
}

/* Results: hand snapshot bytes to sockets; collect AI messages (applied by
 * sp_workers_apply_due at their tick, never here). */
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
                d->st.snapshot_bytes += j->out.size;
                d->st.snapshot_entities += j->visible;
            }
        } else if (j->err != 0 && c->state != SP_CLIENT_CLOSING) {
            SP_LOGW("client %u: snapshot encoding failed: %s", c->session, sp_strerror(j->err));
        }
        sp_client_unref(c);
        free_job(j);
    }
    collect_main(ws);
}

void sp_workers_snapshot_round(sp_daemon_t *d) {
    sp_workers_t *ws = d->workers;
    const sp_frame_t *f = sp_world_publish_frame(d->world);
    if (f == NULL) {
        SP_LOGW("cannot publish a frame: out of memory (snapshot round skipped)");
        return;
    }
    round_t *r = malloc(sizeof *r);
    if (r == NULL) {
        sp_frame_release(f);
        return;
    }
    r->frame = f;
    r->events = ws->ev;
    r->nevents = ws->nev;
    ws->ev = NULL;
    ws->nev = ws->capev = 0;
    /* Relaxed: the round is not shared yet; the job pushes publish it. */
    atomic_store_explicit(&r->refs, 1, memory_order_relaxed);
    if (ws->last_frame) sp_frame_release(ws->last_frame);
    sp_frame_retain(f);
    ws->last_frame = f;

    /* The previous AI round is applied at tick T + P - 1, before this one
     * (tick T + P) is dispatched; a round can still be pending only if the
     * tick numbering jumped (never in practice): apply it now. */
    if (ws->ai_round != NULL) apply_ai_round(d);
    /* AI round on the same frame. */
    if (f->npc_count > 0) {
        uint32_t chunks = ai_chunk_count(f->npc_count);
        ws->ai_round = r;
        ws->ai_tick = f->tick;
        ws->ai_apply_at = f->tick + d->snap_every - 1;
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed); /* held by ai_round */
        /* Relaxed: no chunk of this round runs before the pushes below,
         * which publish this store to the worker that pops the job. */
        atomic_store_explicit(&ws->ai_left, chunks, memory_order_relaxed);
        for (uint32_t k = 0; k < chunks; k++) {
            job_t *j = calloc(1, sizeof *j);
            if (j != NULL) {
                j->kind = JOB_AI;
                j->round = r;
                j->chunk = k;
                j->nchunks = chunks;
                atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed); /* the job's */
            }
            if (j == NULL || sp_mpmc_try_push_ptr(&ws->rjobs, j) != 0) {
                /* Cannot queue (out of memory / full): run it here, now. */
                if (j == NULL) {
                    SP_LOGE("out of memory queueing NPC AI chunk %u: its NPCs skip this round", k);
                    ai_chunk_done(ws);
                    continue;
                }
                run_ai(ws, j, ws->loop_scratch, true);
                round_release(r);
                free(j);
            }
        }
    }

    for (sp_client_t *c = d->clients; c; c = c->next) {
        if (c->state != SP_CLIENT_READY || c->snap_pending) continue;
        if (c->obuf_bytes > d->conf.obuf_soft) {
            /* Skip; the next delta is taken against what it really received. */
            d->st.snapshots_skipped++;
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
        atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed); /* the job's */
        if (sp_mpmc_try_push_ptr(&ws->jobs, j) != 0) {
            j->round = NULL;
            round_release(r);
            free_job(j);
            d->st.snapshots_skipped++;
            continue;
        }
        c->snap_pending = true;
        c->refs++; /* the job refers to c until the loop drains its result */
    }
    round_release(r); /* the loop's own reference */
    wake_all(ws);
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
    return sp_mpmc_size_approx(&ws->jobs);
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
