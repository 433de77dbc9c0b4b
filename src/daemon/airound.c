/* airound.c: the NPC AI round (see airound.h for the contract). */
#include "daemon/airound.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "sim/ai.h"
#include "spacesim/error.h"

/* AI chunks of a round: one per SP_AI_CHUNK_NPCS NPCs, at most
 * SP_AI_MAX_CHUNKS. A function of the frame only (never of --workers). */
#define SP_AI_CHUNK_NPCS 256u
#define SP_AI_MAX_CHUNKS 64u

/* Scratch slot of the chunk's message buffer (pool.h). */
#define SCRATCH_MSGS 1

typedef struct msgbuf {
    size_t cap;
    sp_msg_t m[];
} msgbuf_t;

typedef struct chunk_job {
    sp_pool_job_t job; /* first: the pool hands this pointer back */
    sp_airound_t *ar;
    sp_round_t *round;
    uint32_t chunk, nchunks;
} chunk_job_t;

static uint32_t chunk_count(uint32_t npcs) {
    uint32_t k = (npcs + SP_AI_CHUNK_NPCS - 1) / SP_AI_CHUNK_NPCS;
    if (k < 1) k = 1;
    return k > SP_AI_MAX_CHUNKS ? SP_AI_MAX_CHUNKS : k;
}

void sp_airound_init(sp_airound_t *ar, sp_pool_t *pool, sp_bus_t *bus, sp_dstats_t *st, uint64_t period,
                     void (*on_ready)(void *ctx), void *ctx) {
    memset(ar, 0, sizeof *ar);
    ar->pool = pool;
    ar->bus = bus;
    ar->st = st;
    ar->period = period;
    ar->on_ready = on_ready;
    ar->ctx = ctx;
    ar->loop_thread = pthread_self();
}

void sp_airound_destroy(sp_airound_t *ar) {
    if (ar->round) sp_round_release(ar->round);
    ar->round = NULL;
    free(ar->msgs);
    free(ar->tmp);
    ar->msgs = ar->tmp = NULL;
    ar->n = ar->cap = ar->tmp_cap = 0;
}

/* ---------------------------------------------------------------- collecting */

void sp_airound_collect(sp_airound_t *ar) {
    sp_msg_t buf[256];
    size_t k;
    while ((k = sp_bus_recv_main_n(ar->bus, buf, 256)) > 0) {
        if (ar->n + k > ar->cap) {
            size_t cap = ar->cap ? ar->cap : 1024;
            while (cap < ar->n + k) cap *= 2;
            sp_msg_t *nm = realloc(ar->msgs, cap * sizeof *nm);
            if (nm == NULL) {
                /* Out of memory: these intents are lost (logged); the world
                 * stays consistent, only this run's determinism is gone,
                 * which the log says. */
                SP_LOGE("out of memory collecting %zu NPC intents: dropped", k);
                continue;
            }
            ar->msgs = nm;
            ar->cap = cap;
        }
        memcpy(ar->msgs + ar->n, buf, k * sizeof buf[0]);
        ar->n += k;
    }
}

/* ---------------------------------------------------------------- chunks */

static msgbuf_t *chunk_buffer(void **scratch, size_t need) {
    msgbuf_t *b = scratch[SCRATCH_MSGS];
    if (b != NULL && b->cap >= need) return b;
    msgbuf_t *nb = realloc(b, sizeof *nb + need * sizeof nb->m[0]);
    if (nb == NULL) return b; /* keep the old one; the chunk may be skipped */
    nb->cap = need;
    scratch[SCRATCH_MSGS] = nb;
    return nb;
}

/* Hand the chunk's messages to the main inbox. When it is full the loop
 * drains it on its next wake-up (every send notifies it); a chunk run by the
 * loop itself (sp_airound_help) drains it here, since nobody else would. */
static void send_all(sp_airound_t *ar, const sp_msg_t *m, size_t n) {
    bool on_loop = pthread_equal(pthread_self(), ar->loop_thread) != 0;
    size_t sent = 0;
    while (sent < n) {
        size_t k = sp_bus_send_to_main_n(ar->bus, m + sent, n - sent);
        sent += k;
        if (k > 0) continue;
        if (on_loop) sp_airound_collect(ar);
        else sched_yield();
    }
}

static void chunk_work(sp_pool_job_t *job, void **scratch) {
    chunk_job_t *j = (chunk_job_t *)job;
    const sp_frame_t *f = j->round->frame;
    size_t need = sp_ai_chunk_max_msgs(f, j->chunk, j->nchunks);
    msgbuf_t *b = chunk_buffer(scratch, need);
    size_t n = 0;
    if (b != NULL && b->cap >= need &&
        sp_ai_run_chunk_ghosts(f, j->round->ghosts, j->chunk, j->nchunks, f->tick, b->m, b->cap, &n) != 0)
        n = 0;
    if (b == NULL || b->cap < need) SP_LOGE("out of memory for NPC AI chunk %u: its NPCs skip this round", j->chunk);
    if (n > 0) send_all(j->ar, b->m, n);
}

static bool round_complete(const sp_airound_t *ar) { return ar->build_done && ar->chunks_done == ar->nchunks; }

static void chunk_done(sp_pool_job_t *job) {
    chunk_job_t *j = (chunk_job_t *)job;
    sp_airound_t *ar = j->ar;
    /* A job never run (shutdown) counts too: nothing waits for it then. */
    if (ar->round == j->round) {
        ar->chunks_done++;
        if (round_complete(ar) && ar->on_ready) ar->on_ready(ar->ctx);
    }
    sp_round_release(j->round);
    free(j);
}

void sp_airound_dispatch(sp_airound_t *ar, sp_round_t *r) {
    const sp_frame_t *f = r->frame;
    uint32_t chunks = (f != NULL && f->npc_count > 0) ? chunk_count(f->npc_count) : 0;
    ar->nchunks = chunks; /* read by the loop after the build's done (airound.h) */
    for (uint32_t k = 0; k < chunks; k++) {
        chunk_job_t *j = calloc(1, sizeof *j);
        if (j == NULL) {
            /* Counted as done by the build's done: see sp_airound_build_done. */
            SP_LOGE("out of memory queueing NPC AI chunk %u: its NPCs skip this round", k);
            ar->nchunks--;
            continue;
        }
        j->job.work = chunk_work;
        j->job.done = chunk_done;
        j->ar = ar;
        j->round = r;
        j->chunk = k;
        j->nchunks = chunks;
        sp_round_retain(r); /* the job's */
        if (sp_pool_submit(ar->pool, &j->job, SP_POOL_HIGH, true) != 0) sp_pool_run_here(ar->pool, &j->job);
    }
}

void sp_airound_begin(sp_airound_t *ar, sp_round_t *r) {
    SP_ASSERT(ar->round == NULL);
    sp_round_retain(r); /* held until applied */
    ar->round = r;
    ar->tick = r->tick;
    ar->apply_at = r->tick + ar->period - 1;
    ar->build_done = false;
    ar->nchunks = 0;
    ar->chunks_done = 0;
}

void sp_airound_build_done(sp_airound_t *ar, sp_round_t *r) {
    if (ar->round != r) return;
    ar->build_done = true;
    if (round_complete(ar) && ar->on_ready) ar->on_ready(ar->ctx);
}

/* ---------------------------------------------------------------- applying */

/* The round's messages in sp_msg_order_cmp order (tick, origin, seq).
 * A chunk's messages reach the inbox in seq order (one thread pushes them, in
 * order, into a FIFO), so a stable counting sort by origin usually gives that
 * order in O(n) (qsort of 10k 128-byte messages cost ~0.3 ms of the tick);
 * the result is checked against sp_msg_order_cmp and qsort is the fallback,
 * so the order is the defined one in every case. */
static const sp_msg_t *order_msgs(sp_airound_t *ar) {
    size_t n = ar->n;
    if (n < 2) return ar->msgs;
    if (ar->tmp_cap < n) {
        sp_msg_t *t = realloc(ar->tmp, n * sizeof *t);
        if (t != NULL) {
            ar->tmp = t;
            ar->tmp_cap = n;
        }
    }
    bool ok = ar->tmp_cap >= n;
    uint32_t cnt[SP_AI_MAX_CHUNKS + 1];
    memset(cnt, 0, sizeof cnt);
    for (size_t i = 0; ok && i < n; i++) {
        if (ar->msgs[i].hdr.origin >= SP_AI_MAX_CHUNKS) ok = false;
        else cnt[ar->msgs[i].hdr.origin + 1]++;
    }
    if (ok) {
        for (uint32_t o = 0; o < SP_AI_MAX_CHUNKS; o++) cnt[o + 1] += cnt[o];
        for (size_t i = 0; i < n; i++) ar->tmp[cnt[ar->msgs[i].hdr.origin]++] = ar->msgs[i];
        for (size_t i = 1; ok && i < n; i++)
            if (sp_msg_order_cmp(&ar->tmp[i - 1], &ar->tmp[i]) >= 0) ok = false;
        if (ok) return ar->tmp;
    }
    qsort(ar->msgs, n, sizeof ar->msgs[0], sp_msg_order_cmp_qsort);
    return ar->msgs;
}

static void apply(sp_airound_t *ar, sp_world_t *w) {
    sp_airound_collect(ar);
    const sp_msg_t *m = order_msgs(ar);
    /* Prefetch distances (sp_world_prefetch_msg): the map entries 8
     * messages ahead, the slots 4 ahead; the apply order stays the same. */
    enum { AHEAD_MAP = 8, AHEAD_SLOT = 4 };
    for (size_t i = 0; i < ar->n; i++) {
        if (i + AHEAD_MAP < ar->n) sp_world_prefetch_msg(w, &m[i + AHEAD_MAP], 0);
        if (i + AHEAD_SLOT < ar->n) sp_world_prefetch_msg(w, &m[i + AHEAD_SLOT], 1);
        if (m[i].hdr.tick != ar->tick || sp_msg_validate(&m[i]) != 0) continue;
        int r = sp_world_apply_msg(w, &m[i]); /* a stale intent is normal */
        /* A fighter's shot at a ghost (a ship across the border): fired
         * there by the cluster's hook. */
        if (r == SP_ENOENT && m[i].kind == SP_MSG_WEAPON_FIRED && ar->fire_ghost)
            ar->fire_ghost(ar->fire_ghost_ctx, m[i].u.weapon_fired.ship_id, m[i].u.weapon_fired.target_id);
        /* A miner's intent that found no asteroid in range here: one across the border? */
        if (r == SP_ERANGE && m[i].kind == SP_MSG_RESOURCE_MINED && ar->mine_ghost)
            ar->mine_ghost(ar->fire_ghost_ctx, m[i].u.resource_mined.ship_id,
                           sp_resource_parse(m[i].u.resource_mined.resource_type, m[i].u.resource_mined.type_len));
    }
    ar->st->worker_msgs += ar->n;
    ar->n = 0;
    sp_round_release(ar->round);
    ar->round = NULL;
}

static bool due(const sp_airound_t *ar, uint64_t tick) { return ar->round != NULL && tick >= ar->apply_at; }

bool sp_airound_step_ready(sp_airound_t *ar, uint64_t tick) {
    if (!due(ar, tick)) return true;
    sp_pool_drain(ar->pool);  /* count the jobs that finished */
    sp_airound_collect(ar);   /* room for the workers' messages; never blocks */
    return round_complete(ar);
}

bool sp_airound_help(sp_airound_t *ar, uint64_t tick) {
    if (!due(ar, tick) || round_complete(ar)) return false;
    return sp_pool_help(ar->pool, SP_POOL_HIGH);
}

void sp_airound_apply_now(sp_airound_t *ar, sp_world_t *w) {
    if (ar->round == NULL) return;
    if (!round_complete(ar)) {
        /* Not reached (the loop runs a step only when step_ready said so,
         * and rounds are dispatched one period apart). Release builds keep
         * the defined result rather than apply half a round: finish it
         * here, the old blocking way. */
        SP_LOGE("NPC AI round of tick %llu applied before it was complete: waiting (bug)",
                (unsigned long long)ar->tick);
        while (!round_complete(ar)) {
            sp_pool_drain(ar->pool);
            sp_airound_collect(ar); /* a worker may be waiting for room */
            if (!round_complete(ar) && !sp_pool_help(ar->pool, SP_POOL_HIGH)) sched_yield();
        }
    }
    apply(ar, w);
}

void sp_airound_apply_due(sp_airound_t *ar, sp_world_t *w) {
    if (due(ar, sp_world_tick(w))) sp_airound_apply_now(ar, w);
}
