/* snapshots.c: shared snapshot rounds (see snapshots.h). */
#include "daemon/snapshots.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/icells.h"
#include "daemon/clients.h"
#include "daemon/interest.h"
#include "daemon/log.h"
#include "rpc.h"
#include "sim/frame.h"
#include "snapshot.h"
#include "spacesim/error.h"

/* The wire quantization (spacesim_proto.def) must be the frame's: cell
 * contents are taken from frame rows without conversion (icells.c). */
#define SP__QUANT_CHECK(id, steps, meaning) \
    _Static_assert((steps) == SP_FRAME_##id##_SCALE, "quantization of " #id " differs from sim/frame.h");
SP_PROTO_QUANT_MAP(SP__QUANT_CHECK)
#undef SP__QUANT_CHECK

/* Update jobs per round: at most this many, of at least UPDATE_MIN_CELLS
 * touched cells each (fewer jobs than workers would leave a core idle; many
 * tiny ones cost more in queueing than they spread). */
#define UPDATE_MAX_JOBS 16
#define UPDATE_MIN_CELLS 8

typedef struct snap_job {
    sp_pool_job_t job; /* first: the pool hands this pointer back */
    sp_daemon_t *d;
    sp_round_t *round;
    sp_client_t *client;            /* retained; only the loop looks at it */
    sp_interest_t in;               /* copies: workers never read the client */
    sp_evset_t *pend[SP_PEND_ROUNDS]; /* events of rounds the client skipped, oldest first */
    int npend;
    sp_evset_t *events;             /* this round's (a reference of the job's own) */
    const sp_cview_t *base;         /* the client's view: read-only while the job runs */
    sp_csnap_t o;                   /* the snapshot, by reference to the round's chunks */
    msgpack_sbuffer ev;             /* the event notifications that go before it */
    size_t budget;                  /* entities that may enter the view (conf.snap_budget) */
    uint64_t cost_hint;             /* the client's last cost: dispatch order */
    size_t nevents;                 /* event notifications packed before the snapshot */
    int err;
    bool submitted;                 /* handed to the pool: counts in round->readers_left */
} snap_job_t;

typedef struct update_job {
    sp_pool_job_t job; /* first */
    sp_daemon_t *d;
    sp_round_t *round;
    size_t from, to;                /* touched cells of the round (icells.h) */
} update_job_t;

/* ---------------------------------------------------------------- scratch */

void sp_snapshots_scratch_free(unsigned slot, void *p) {
    if (slot == SP_SNAP_SCRATCH_SLOT && p != NULL) sp_icells_scratch_destroy(p);
    free(p);
}

/* This thread's cell scratch (pool slot SP_SNAP_SCRATCH_SLOT), or NULL. */
static sp_icells_scratch_t *cells_scratch(void **scratch) {
    sp_icells_scratch_t *s = scratch[SP_SNAP_SCRATCH_SLOT];
    if (s == NULL && (s = malloc(sizeof *s)) != NULL) {
        sp_icells_scratch_init(s);
        scratch[SP_SNAP_SCRATCH_SLOT] = s;
    }
    return s;
}

int sp_snapshots_init(sp_daemon_t *d) {
    double edge = d->conf.interest_cell;
    if (uv_mutex_init(&d->snap_mu) != 0) return SP_ENOMEM;
    int rc = sp_icells_init(&d->cells, d->wdef.half_extent, edge, &d->interest_edge);
    if (rc) {
        uv_mutex_destroy(&d->snap_mu);
        return rc;
    }
    if (d->interest_edge != edge)
        SP_LOGW("--interest-cell %.1f gives over %u cells per axis in a world of edge %.0f: using %.1f",
                edge, SP_ICELLS_MAX_PER_AXIS, 2.0 * d->wdef.half_extent, d->interest_edge);
    d->cells_ok = true;
    return 0;
}

void sp_snapshots_destroy(sp_daemon_t *d) {
    if (!d->cells_ok) return;
    sp_snapshots_stop(d); /* normally done already: the queue is empty */
    sp_icells_destroy(&d->cells);
    uv_mutex_destroy(&d->snap_mu);
    d->cells_ok = false;
}

/* ---------------------------------------------------------------- the store's phases
 *
 * A round is admitted by prepare (queued, oldest first, at most two in
 * flight: queued or holding the store), built by its build job, and takes
 * the store when it is the oldest, built, and the store is free: its update
 * jobs write the store, then its client jobs read it; when the last client
 * job's work ends (or the round had none), the next queued round that is
 * built takes the store, on that thread. So a round built while the previous
 * one's client jobs still run is not lost, it waits; and the loop's delay in
 * running dones never holds the store. */

static void update_start(sp_daemon_t *d, sp_round_t *r);

/* The queue's oldest round if it may take the store now (then it is taken
 * off the queue and the store is busy), else NULL. Under snap_mu. */
static sp_round_t *next_to_start_locked(sp_daemon_t *d) {
    if (d->snap_busy || d->snap_nq == 0 || !d->snap_q[0]->cells_built) return NULL;
    if (d->pool != NULL && sp_pool_stopping(d->pool)) return NULL; /* sp_snapshots_stop cancels them */
    sp_round_t *r = d->snap_q[0];
    d->snap_q[0] = d->snap_q[1];
    d->snap_q[1] = NULL;
    d->snap_nq--;
    d->snap_busy = true;
    return r;
}

/* Start r (taken off the queue by next_to_start_locked) and drop the queue's
 * reference. Any thread, without snap_mu. */
static void start_taken(sp_daemon_t *d, sp_round_t *r) {
    if (r == NULL) return;
    update_start(d, r);
    sp_round_release(r);
}

/* The started round's client jobs stopped reading the store: the store is
 * free, and the next round may take it. Any thread. */
static void store_free(sp_daemon_t *d) {
    uv_mutex_lock(&d->snap_mu);
    d->snap_busy = false;
    sp_round_t *next = next_to_start_locked(d);
    uv_mutex_unlock(&d->snap_mu);
    start_taken(d, next);
}

/* One of r's submitted client jobs is past its reads of the store (its work
 * ended, or it never ran). */
static void reader_finished(sp_daemon_t *d, sp_round_t *r) {
    /* acq_rel: each job's reads of the store happen before its decrement
     * (release), and the last one, which frees the store for the next
     * round's writes, sees them all (acquire; the decrements form one
     * release sequence). */
    if (atomic_fetch_sub_explicit(&r->readers_left, 1, memory_order_acq_rel) == 1) store_free(d);
}

/* Take r off the queue if it is there (dropping the queue's reference).
 * Loop thread (cancel paths). */
static void unqueue(sp_daemon_t *d, sp_round_t *r) {
    bool found = false;
    uv_mutex_lock(&d->snap_mu);
    for (unsigned i = 0; i < d->snap_nq; i++)
        if (d->snap_q[i] == r) {
            for (unsigned k = i; k + 1 < d->snap_nq; k++) d->snap_q[k] = d->snap_q[k + 1];
            d->snap_q[--d->snap_nq] = NULL;
            found = true;
            break;
        }
    uv_mutex_unlock(&d->snap_mu);
    if (found) sp_round_release(r);
}

void sp_snapshots_stop(sp_daemon_t *d) {
    if (!d->cells_ok) return;
    for (;;) {
        uv_mutex_lock(&d->snap_mu);
        sp_round_t *r = d->snap_nq > 0 ? d->snap_q[0] : NULL;
        if (r) sp_round_retain(r);
        uv_mutex_unlock(&d->snap_mu);
        if (r == NULL) return;
        sp_snapshots_cancel(d, r); /* takes it off the queue */
        sp_round_release(r);
    }
}

/* ---------------------------------------------------------------- interest */

static bool frame_pos(const void *src, uint64_t id, double out[3]) {
    const sp_frame_t *f = src;
    long row = sp_frame_find(f, id);
    if (row < 0) return false;
    for (int k = 0; k < 3; k++) out[k] = sp_frame_pos(f->rows[row].pos[k]);
    return true;
}

static bool world_pos(const void *src, uint64_t id, double out[3]) {
    sp_entity_info_t info;
    if (sp_world_inspect(src, id, &info) != 0) return false;
    for (int k = 0; k < 3; k++) out[k] = info.pos[k];
    return true;
}

static void interest_of(const sp_client_t *c, sp_interest_t *in) {
    in->session = c->session.id;
    in->radius = c->snap.radius;
    memcpy(in->centre, c->snap.centre, sizeof in->centre);
    memcpy(in->ships, c->session.ships, sizeof in->ships);
    in->nships = c->session.nships;
}

/* Pack the visible events of the skipped rounds (oldest first), then this
 * round's: at most SP_SNAP_MAX_EVENTS, the newest; older ones are counted
 * as dropped. */
static void pack_events(snap_job_t *j, msgpack_packer *pk, const double ctr[][3], int nctr) {
    const sp_evset_t *sets[SP_PEND_ROUNDS + 1];
    int ns = 0;
    for (int k = 0; k < j->npend; k++) sets[ns++] = j->pend[k];
    if (j->events) sets[ns++] = j->events;
    size_t vis = 0;
    for (int k = 0; k < ns; k++)
        for (uint32_t i = 0; i < sets[k]->n; i++) vis += sp_interest_sees_event(&j->in, &sets[k]->ev[i], ctr, nctr);
    size_t skip = vis > SP_SNAP_MAX_EVENTS ? vis - SP_SNAP_MAX_EVENTS : 0;
    if (skip) atomic_fetch_add_explicit(&j->d->events_capped, skip, memory_order_relaxed); /* statistic */
    for (int k = 0; k < ns; k++)
        for (uint32_t i = 0; i < sets[k]->n; i++) {
            const sp_world_event_t *e = &sets[k]->ev[i];
            if (!sp_interest_sees_event(&j->in, e, ctr, nctr)) continue;
            if (skip) {
                skip--;
                continue;
            }
            if (sp_event_pack(pk, e) == 0) j->nevents++;
        }
}

/* ---------------------------------------------------------------- the client job */

static void snap_assemble(snap_job_t *j, void **scratch) {
    const sp_frame_t *f = j->round->frame;
    sp_icells_scratch_t *cs = cells_scratch(scratch);
    if (f == NULL || cs == NULL) { /* the build failed: this round has no frame */
        j->err = SP_ENOMEM;
        return;
    }
    double ctr[SP_INTEREST_MAX_CENTRES][3];
    int nctr = sp_interest_centres(&j->in, frame_pos, f, ctr);
    const double(*cc)[3] = (const double(*)[3])ctr;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &j->ev, msgpack_sbuffer_write);
    pack_events(j, &pk, cc, nctr);
    j->err = sp_icells_snapshot(&j->d->cells, j->base, cc, nctr, j->in.radius, j->budget, cs, &j->o);
}

static void snap_work(sp_pool_job_t *job, void **scratch) {
    snap_job_t *j = (snap_job_t *)job;
    snap_assemble(j, scratch);
    /* j->o holds its own references to the chunks: from here on the job
     * needs nothing of the store. */
    reader_finished(j->d, j->round);
}

/* How many of e's events client c can see, judged now (its ships' current
 * positions in the world, or its subscribe centre). Loop thread. */
static size_t visible_now(const sp_daemon_t *d, const sp_client_t *c, const sp_evset_t *e) {
    sp_interest_t in;
    interest_of(c, &in);
    double ctr[SP_INTEREST_MAX_CENTRES][3];
    int nctr = sp_interest_centres(&in, world_pos, d->world, ctr);
    size_t n = 0;
    for (uint32_t i = 0; i < e->n; i++) n += sp_interest_sees_event(&in, &e->ev[i], (const double(*)[3])ctr, nctr);
    return n;
}

/* Keep e (retained) for c's next snapshot; past SP_PEND_ROUNDS the oldest
 * set goes, its visible events counted as dropped. Loop thread. */
static void pend_push(sp_daemon_t *d, sp_client_t *c, sp_evset_t *e) {
    sp_snapstate_t *s = &c->snap;
    if (s->npend == SP_PEND_ROUNDS) {
        d->st.events_dropped += visible_now(d, c, s->pend[0]);
        sp_evset_release(s->pend[0]);
        memmove(s->pend, s->pend + 1, (SP_PEND_ROUNDS - 1) * sizeof s->pend[0]);
        s->npend--;
    }
    sp_evset_retain(e);
    s->pend[s->npend++] = e;
}

/* A job's events were not delivered (encoding failed): give them back to the
 * client, ahead of what it gathered since (older first). Loop thread. */
static void pend_requeue(sp_daemon_t *d, sp_client_t *c, snap_job_t *j) {
    sp_snapstate_t *s = &c->snap;
    sp_evset_t *all[2 * SP_PEND_ROUNDS + 1];
    int n = 0;
    for (int k = 0; k < j->npend; k++) all[n++] = j->pend[k];
    if (j->events) all[n++] = j->events;
    for (int k = 0; k < s->npend; k++) all[n++] = s->pend[k];
    j->npend = 0;
    j->events = NULL;
    s->npend = 0;
    int first = n > SP_PEND_ROUNDS ? n - SP_PEND_ROUNDS : 0;
    for (int k = 0; k < first; k++) {
        d->st.events_dropped += visible_now(d, c, all[k]);
        sp_evset_release(all[k]);
    }
    for (int k = first; k < n; k++) s->pend[s->npend++] = all[k];
}

static void job_free(snap_job_t *j) {
    for (int k = 0; k < j->npend; k++) sp_evset_release(j->pend[k]);
    sp_evset_release(j->events);
    sp_csnap_destroy(&j->o);
    msgpack_sbuffer_destroy(&j->ev);
    sp_round_release(j->round);
    free(j);
}

/* The most parts one snapshot is written in without an allocation. */
#define DELIVER_STACK_PARTS 256

/* Hand the bytes to the socket: the events and the snapshot's head (copied
 * if they must wait), the round's chunks by reference, the tail. Only once
 * they are queued is the new view the baseline. */
static void deliver(sp_daemon_t *d, sp_client_t *c, snap_job_t *j) {
    const sp_csnap_t *o = &j->o;
    size_t n = o->nchunks + 3;
    sp_outpart_t stack_parts[DELIVER_STACK_PARTS], *parts = stack_parts;
    if (n > DELIVER_STACK_PARTS && (parts = malloc(n * sizeof *parts)) == NULL) {
        pend_requeue(d, c, j);
        return;
    }
    size_t k = 0;
    parts[k++] = (sp_outpart_t){j->ev.data, j->ev.size, NULL};
    parts[k++] = (sp_outpart_t){o->bytes.data, o->head, NULL};
    for (size_t i = 0; i < o->nchunks; i++) parts[k++] = (sp_outpart_t){o->chunks[i]->data, o->chunks[i]->len, o->chunks[i]};
    parts[k++] = (sp_outpart_t){o->bytes.data + o->head, o->bytes.size - o->head, NULL};
    int r = sp_conn_sendv(&c->conn, parts, k);
    if (parts != stack_parts) free(parts);
    if (r != 0) return;
    sp_cview_swap(&c->snap.view, &j->o.next);
    c->snap.view_count = o->count;
    if (o->full) { /* a full one: the resync interval counts from it */
        c->snap.had_full = true;
        c->snap.full_tick = j->round->tick;
    }
    c->snap.sent++;
    d->st.snapshots_sent++;
    d->st.events_sent += j->nevents;
    d->st.snapshot_bytes += o->bytes.size + o->chunk_bytes;
    d->st.snapshot_entities += o->count;
}

static void snap_done(sp_pool_job_t *job) {
    snap_job_t *j = (snap_job_t *)job;
    sp_daemon_t *d = j->d;
    sp_client_t *c = j->client;
    c->snap.pending = false;
    bool ran = sp_pool_job_ran(job);
    if (ran && j->err == 0) {
        /* The fair share: what the snapshot cost is paid back by the budget
         * of the rounds to come (sp_snapshots_prepare): the entities of the
         * full cells it carried, and one per cell of its view. */
        uint64_t cost = (uint64_t)j->o.full_entities + j->o.next.n;
        c->snap.debt += cost;
        c->snap.cost = cost;
    }
    if (ran && !c->conn.closing) {
        if (j->err == 0) {
            deliver(d, c, j);
        } else {
            if (j->err != SP_EAGAIN)
                SP_LOGW("client %u: snapshot failed: %s", c->session.id, sp_strerror(j->err));
            pend_requeue(d, c, j);
        }
    }
    if (!ran && j->submitted) reader_finished(d, j->round); /* shutdown: it never read the store */
    sp_conn_release(&c->conn);
    job_free(j);
}

/* May a resync's full snapshot go out in the round of `tick`? Yes when the
 * client has no baseline or got no full snapshot yet, or its last full one
 * is at least --resync-interval of game time old; otherwise the request
 * waits (and later ones coalesce with it). This bounds what `resync` spam
 * costs: a full snapshot re-sends every record of the view. */
static bool resync_due(const sp_daemon_t *d, const sp_snapstate_t *s, uint64_t tick) {
    if (!s->view.valid || !s->had_full) return true;
    uint64_t gap = (uint64_t)ceil(d->conf.resync_secs * d->conf.tick_hz);
    return tick - s->full_tick >= gap;
}

/* A job for c in round r (the job takes c's pending events), or NULL. */
static snap_job_t *job_new(sp_daemon_t *d, sp_client_t *c, sp_round_t *r) {
    snap_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) return NULL;
    sp_csnap_init(&j->o);
    msgpack_sbuffer_init(&j->ev);
    j->job.work = snap_work;
    j->job.done = snap_done;
    j->d = d;
    j->round = r;
    sp_round_retain(r);
    j->client = c;
    sp_conn_retain(&c->conn); /* until snap_done */
    interest_of(c, &j->in);
    j->budget = d->conf.snap_budget;
    sp_snapstate_t *s = &c->snap;
    j->cost_hint = s->cost;
    if (s->need_full && resync_due(d, s, r->tick)) {
        s->view.valid = false;
        s->need_full = false;
    }
    j->base = &s->view;
    memcpy(j->pend, s->pend, (size_t)s->npend * sizeof s->pend[0]); /* the job takes them */
    j->npend = s->npend;
    s->npend = 0;
    if (r->events) {
        sp_evset_retain(r->events);
        j->events = r->events;
    }
    s->pending = true;
    return j;
}

/* Dispatch order of a round's jobs: cheapest first (by the client's last
 * cost, then session id), so a small view is never queued behind big ones
 * of the same round (the pool's LOW queue is FIFO). */
static int cmp_job_cost(const void *a, const void *b) {
    const snap_job_t *x = (const snap_job_t *)*(sp_pool_job_t *const *)a;
    const snap_job_t *y = (const snap_job_t *)*(sp_pool_job_t *const *)b;
    if (x->cost_hint != y->cost_hint) return x->cost_hint < y->cost_hint ? -1 : 1;
    uint32_t sx = x->client->session.id, sy = y->client->session.id;
    return sx < sy ? -1 : sx > sy;
}

void sp_snapshots_prepare(sp_daemon_t *d, sp_round_t *r) {
    /* At most two rounds in flight (the store's phases above): a round that
     * starts while two are has no snapshots (every client keeps its events
     * for the next one it gets). So a round whose build ends while the
     * previous one's client jobs run still gets its snapshots, just later. */
    bool late = !d->cells_ok;
    if (!late) {
        uv_mutex_lock(&d->snap_mu);
        late = d->snap_nq + (d->snap_busy ? 1u : 0u) >= 2;
        uv_mutex_unlock(&d->snap_mu);
    }
    if (!late) {
        r->cells_jobs = calloc(UPDATE_MAX_JOBS, sizeof(update_job_t));
        late = r->cells_jobs == NULL;
    }
    if (late && d->net.nconns > 0) d->snap_rounds_late++;
    if (!late && d->net.nconns > 0) r->snap = malloc((size_t)d->net.nconns * sizeof *r->snap);
    uint64_t share = d->conf.snap_budget;
    for (sp_conn_t *k = d->net.conns; k; k = k->next) {
        sp_client_t *c = sp_client_of(k);
        if (c->session.state != SP_SESSION_READY) continue;
        sp_snapstate_t *s = &c->snap;
        /* Every round pays back one share of what its snapshots cost; while
         * some remains the client waits (snap_done says what a snapshot
         * costs). */
        s->debt = s->debt > share ? s->debt - share : 0;
        bool skip = late || s->pending || s->debt > 0 || r->snap == NULL;
        if (!skip && k->obuf_bytes > d->conf.obuf_soft) {
            /* Skip; the next snapshot is taken against what it really received. */
            d->st.snapshots_skipped++;
            s->skipped++;
            skip = true;
        }
        if (skip) {
            if (r->events) pend_push(d, c, r->events); /* they wait for the snapshot it gets */
            continue;
        }
        snap_job_t *j = job_new(d, c, r);
        if (j == NULL) break;
        r->snap[r->nsnap++] = &j->job;
    }
    if (late) return;
    /* Jobs are the first member of snap_job_t (the pool hands it back). */
    if (r->nsnap > 1) qsort(r->snap, r->nsnap, sizeof r->snap[0], cmp_job_cost);
    /* Queued: the store's update runs every round, clients or not (deltas
     * are against the previous round). The loop is the only one to add to
     * the queue, so the check above still holds. */
    sp_round_retain(r);
    uv_mutex_lock(&d->snap_mu);
    d->snap_q[d->snap_nq++] = r;
    uv_mutex_unlock(&d->snap_mu);
}

/* Submit r's client jobs (any thread; the store is at r's tick, or
 * unchanged, or emptied). */
static void submit_clients(sp_daemon_t *d, sp_round_t *r) {
    size_t n = r->nsnap;
    r->nsnap = 0;
    if (n == 0) {
        store_free(d); /* nobody reads this round's store */
        return;
    }
    /* Relaxed: the pool's queue pushes below publish it to the jobs. */
    atomic_store_explicit(&r->readers_left, (uint32_t)n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) ((snap_job_t *)r->snap[i])->submitted = true;
    for (size_t i = 0; i < n; i++)
        if (sp_pool_submit(d->pool, r->snap[i], SP_POOL_LOW, true) != 0) sp_pool_run_here(d->pool, r->snap[i]);
    sp_pool_wake(d->pool, (unsigned)d->conf.workers);
}

/* The store's round of r is over (the last update job, any thread). */
static void update_finish(sp_daemon_t *d, sp_round_t *r) {
    if (r->frame != NULL) sp_icells_end(&d->cells, !r->cells_failed);
    /* (No frame: sp_icells_begin never ran; the store stays as it was.) */
    submit_clients(d, r);
}

static void update_work(sp_pool_job_t *job, void **scratch) {
    update_job_t *u = (update_job_t *)job;
    sp_icells_scratch_t *s = cells_scratch(scratch);
    if (u->to > u->from && (s == NULL || sp_icells_update(&u->d->cells, u->from, u->to, s) != 0))
        /* Relaxed: read by sp_icells_end() after the join below. */
        atomic_store_explicit(&u->d->cells.failed, 1, memory_order_relaxed);
    /* acq_rel: each update job's writes to the store happen before its
     * decrement (release), and the last one sees them all (acquire) before
     * it ends the round and hands the store to the client jobs. */
    if (atomic_fetch_sub_explicit(&u->round->cells_left, 1, memory_order_acq_rel) == 1)
        update_finish(u->d, u->round);
}

static void update_done(sp_pool_job_t *job) {
    update_job_t *u = (update_job_t *)job;
    sp_daemon_t *d = u->d;
    sp_round_t *r = u->round;
    if (!sp_pool_job_ran(job) && atomic_fetch_sub_explicit(&r->cells_left, 1, memory_order_acq_rel) == 1) {
        /* Shutdown before the last one ran: the store's round never ends
         * well, and the clients' jobs were never submitted. */
        if (r->frame != NULL) sp_icells_end(&d->cells, false);
        sp_snapshots_cancel(d, r);
    }
    sp_round_release(r); /* u lives in r->cells_jobs: freed with the round */
}

void sp_snapshots_dispatch(sp_daemon_t *d, sp_round_t *r) {
    if (r->cells_jobs == NULL) return; /* a late round: nothing prepared */
    uv_mutex_lock(&d->snap_mu);
    r->cells_built = true;
    sp_round_t *next = next_to_start_locked(d); /* r, or an older one, or none (the store is busy) */
    uv_mutex_unlock(&d->snap_mu);
    start_taken(d, next);
}

/* r takes the store: begin, then its update jobs. Any thread. */
static void update_start(sp_daemon_t *d, sp_round_t *r) {
    update_job_t *jobs = r->cells_jobs;
    r->cells_dispatched = true;
    if (r->frame != NULL && sp_icells_begin(&d->cells, r->frame) != 0) {
        SP_LOGW("snapshot round of tick %llu: out of memory (the cell store starts over)",
                (unsigned long long)r->tick);
        r->cells_failed = true;
    }
    size_t nt = r->frame != NULL && !r->cells_failed ? d->cells.ntouched : 0;
    size_t njobs = (nt + UPDATE_MIN_CELLS - 1) / UPDATE_MIN_CELLS;
    if (njobs > UPDATE_MAX_JOBS) njobs = UPDATE_MAX_JOBS;
    if (njobs == 0) njobs = 1; /* an empty one: it ends the round all the same */
    /* Relaxed: the pool's queue pushes below publish it to the jobs. */
    atomic_store_explicit(&r->cells_left, (uint32_t)njobs, memory_order_relaxed);
    for (size_t k = 0; k < njobs; k++) {
        update_job_t *u = &jobs[k];
        u->job.work = update_work;
        u->job.done = update_done;
        u->d = d;
        u->round = r;
        sp_round_retain(r);
        u->from = nt * k / njobs;
        u->to = nt * (k + 1) / njobs;
    }
    for (size_t k = 0; k < njobs; k++)
        if (sp_pool_submit(d->pool, &jobs[k].job, SP_POOL_HIGH, true) != 0) sp_pool_run_here(d->pool, &jobs[k].job);
    sp_pool_wake(d->pool, (unsigned)d->conf.workers);
}

void sp_snapshots_cancel(sp_daemon_t *d, sp_round_t *r) {
    for (size_t i = 0; i < r->nsnap; i++) r->snap[i]->done(r->snap[i]); /* never submitted: not ran */
    r->nsnap = 0;
    /* Never started (shutdown before it took the store): off the queue. */
    if (r->cells_jobs != NULL && !r->cells_dispatched) unqueue(d, r);
}

uint64_t sp_snapshots_events_dropped(const sp_daemon_t *d) {
    /* Relaxed: a statistic. */
    return d->st.events_dropped + atomic_load_explicit(&d->events_capped, memory_order_relaxed);
}
