/* icells.c: the per-cell chunk cache and per-client assembly (see icells.h). */
#include "daemon/icells.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "spacesim/error.h"

/* ---------------------------------------------------------------- helpers */

/* *p (capacity *cap elements of size elem) holds at least n, content kept.
 * On failure *p is unchanged. */
static int grow(void **p, size_t *cap, size_t n, size_t elem) {
    if (n <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < n) c = c > SIZE_MAX / 4 ? n : c * 2;
    size_t bytes;
    if (sp_size_mul(c, elem, &bytes) != 0) return SP_ENOMEM;
    void *q = realloc(*p, bytes);
    if (q == NULL) return SP_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static uint32_t cell_of(const sp_snap_grid_t *g, const int32_t q[3]) {
    return sp_snap_grid_cell(g, (double)q[0] / SP_FRAME_POS_SCALE, (double)q[1] / SP_FRAME_POS_SCALE,
                             (double)q[2] / SP_FRAME_POS_SCALE);
}

/* Do two rows differ in what the wire carries? */
static bool wire_differs(const sp_frame_row_t *a, const sp_frame_row_t *b) {
    return memcmp(a->pos, b->pos, sizeof a->pos) != 0 || memcmp(a->vel, b->vel, sizeof a->vel) != 0 ||
           a->hp != b->hp || a->owner != b->owner || a->radius != b->radius || a->kind != b->kind;
}

/* ---------------------------------------------------------------- the store */

int sp_icells_init(sp_icells_t *cs, double half_extent, double edge, double *edge_out) {
    memset(cs, 0, sizeof *cs);
    if (!(half_extent > 0) || !(edge > 0) || isinf(half_extent) || isinf(edge)) return SP_EINVAL;
    /* At most SP_ICELLS_MAX_PER_AXIS per axis (a hair above the exact edge,
     * so rounding cannot make ceil() one more). */
    double min_edge = 2 * half_extent / SP_ICELLS_MAX_PER_AXIS * (1 + 1e-9);
    if (edge < min_edge) edge = min_edge;
    int rc = sp_snap_grid_init(&cs->grid, half_extent, edge);
    if (rc) return rc;
    uint32_t n = cs->grid.n;
    cs->ncells = n * n * n;
    cs->cell = calloc(cs->ncells, sizeof *cs->cell);
    cs->count = calloc(cs->ncells, sizeof *cs->count);
    if (cs->cell == NULL || cs->count == NULL) {
        sp_icells_destroy(cs);
        return SP_ENOMEM;
    }
    cs->epoch = 1;
    if (edge_out) *edge_out = edge;
    return 0;
}

/* Drop the cell's cached catch-up deltas (its contents change). */
static void catchups_release(sp_cell_t *c) {
    for (int k = 0; k < SP_ICELLS_HIST; k++)
        /* Relaxed: no reader runs while the store is written (icells.h phases). */
        sp_rbuf_release(atomic_exchange_explicit(&c->catchup[k], NULL, memory_order_relaxed));
}

/* Forget the cell's past contents and give their memory back. */
static void past_free(sp_cell_t *c) {
    for (int k = 0; k < SP_ICELLS_HIST; k++) {
        free(c->hist[k].recs);
        c->hist[k] = (sp_icells_past_t){NULL, 0, 0, 0};
    }
    c->hn = 0;
}

/* Empty cell c (memory kept), dropping its chunks. */
static void cell_clear(sp_cell_t *c) {
    c->len = 0;
    c->changed = 0;
    c->hn = 0;
    catchups_release(c);
    sp_rbuf_release(c->delta);
    c->delta = NULL;
    /* Relaxed: no reader runs while the store is written (icells.h phases). */
    sp_rbuf_release(atomic_exchange_explicit(&c->full, NULL, memory_order_relaxed));
}

void sp_icells_destroy(sp_icells_t *cs) {
    if (cs->cell) {
        for (uint32_t i = 0; i < cs->ncells; i++) {
            cell_clear(&cs->cell[i]);
            free(cs->cell[i].recs);
            past_free(&cs->cell[i]);
        }
    }
    free(cs->cell);
    free(cs->count);
    free(cs->touched);
    free(cs->op_start);
    free(cs->ops);
    free(cs->ops_tmp);
    sp_frame_release(cs->frame);
    sp_frame_release(cs->next);
    memset(cs, 0, sizeof *cs);
}

/* Append one op (capacity reserved by the caller). */
static inline void op_add(sp_icells_t *cs, uint64_t id, uint32_t row, uint32_t cell) {
    sp_icells_op_t *o = &cs->ops_tmp[cs->nops++];
    o->id = id;
    o->row = row;
    o->cell = cell;
}

/* find_changes from f's own change list against prev (f was built on prev):
 * O(changes x log gap) instead of O(rows). The ops come out id ascending:
 * the changed rows and the gone ids are each ascending, merged here. */
static void changes_listed(sp_icells_t *cs, const sp_frame_t *prev, const sp_frame_t *f) {
    const sp_snap_grid_t *g = &cs->grid;
    size_t np = prev->count, at = 0; /* cursor in prev */
    uint32_t a = 0, b = 0;
    while (a < f->nchanged || b < f->ngone) {
        uint64_t cid = a < f->nchanged ? f->rows[f->changed_rows[a]].id : UINT64_MAX;
        uint64_t gid = b < f->ngone ? f->gone_ids[b] : UINT64_MAX;
        uint64_t id = cid < gid ? cid : gid;
        at = sp_frame_seek(prev, (uint32_t)at, id);
        const sp_frame_row_t *p = at < np && prev->rows[at].id == id ? &prev->rows[at] : NULL;
        if (gid < cid) { /* gone from the world */
            if (p != NULL) op_add(cs, id, UINT32_MAX, cell_of(g, p->pos));
            b++;
            continue;
        }
        uint32_t j = f->changed_rows[a++];
        const sp_frame_row_t *q = &f->rows[j];
        if (p == NULL) {
            op_add(cs, id, j, cell_of(g, q->pos)); /* new in the world */
        } else if (wire_differs(p, q)) {
            uint32_t cp = cell_of(g, p->pos), cq = cell_of(g, q->pos);
            if (cp != cq) op_add(cs, id, UINT32_MAX, cp);
            op_add(cs, id, j, cq);
        }
    }
}

/* THE place that learns which rows changed since the previous applied frame
 * (one function, the brief's rule). When f was built on prev (an
 * incremental frame: f->has_changes), from f's own change list:
 * O(changes); otherwise one merge walk of both frames by id, O(rows of
 * both). Either way it compares the wire fields of the rows in both. Produces the round's ops in
 * cs->ops_tmp, id ascending: an entity that left a cell (destroyed, or moved
 * out) is a removal there, one that is new in a cell or changed is an upsert
 * of its new row. prev NULL: every row of f is new. */
static int find_changes(sp_icells_t *cs, const sp_frame_t *prev, const sp_frame_t *f) {
    size_t np = prev ? prev->count : 0, nf = f->count;
    size_t need = np + nf; /* an id in both makes at most 2 ops, one in either 1 */
    void *a = cs->ops, *b = cs->ops_tmp;
    size_t cap_a = cs->ops_cap, cap_b = cs->ops_cap;
    int rc = grow(&a, &cap_a, need, sizeof(sp_icells_op_t));
    cs->ops = a;
    if (rc == 0) rc = grow(&b, &cap_b, need, sizeof(sp_icells_op_t));
    cs->ops_tmp = b;
    if (rc) return rc;
    cs->ops_cap = cap_a < cap_b ? cap_a : cap_b;
    cs->nops = 0;
    const sp_snap_grid_t *g = &cs->grid;
    if (prev != NULL && f->has_changes && f->base_tick == prev->tick) {
        changes_listed(cs, prev, f);
        return 0;
    }
    size_t i = 0, j = 0;
    while (i < np || j < nf) {
        const sp_frame_row_t *p = i < np ? &prev->rows[i] : NULL, *q = j < nf ? &f->rows[j] : NULL;
        if (q == NULL || (p != NULL && p->id < q->id)) { /* gone from the world */
            op_add(cs, p->id, UINT32_MAX, cell_of(g, p->pos));
            i++;
        } else if (p == NULL || q->id < p->id) { /* new in the world */
            op_add(cs, q->id, (uint32_t)j, cell_of(g, q->pos));
            j++;
        } else {
            if (wire_differs(p, q)) {
                uint32_t cp = cell_of(g, p->pos), cq = cell_of(g, q->pos);
                if (cp != cq) op_add(cs, p->id, UINT32_MAX, cp);
                op_add(cs, q->id, (uint32_t)j, cq);
            }
            i++;
            j++;
        }
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int sp_icells_begin(sp_icells_t *cs, const sp_frame_t *f) {
    sp_frame_retain(f);
    cs->next = f;
    atomic_store_explicit(&cs->failed, 0, memory_order_relaxed); /* the pool's queues publish it */
    cs->ntouched = 0;
    int rc = find_changes(cs, cs->frame, f);
    if (rc) return rc;
    /* Group the ops by cell, keeping id order inside each (a stable
     * counting sort over the touched cells only). */
    for (size_t k = 0; k < cs->nops; k++) {
        uint32_t c = cs->ops_tmp[k].cell;
        if (cs->count[c]++ == 0) {
            void *t = cs->touched;
            rc = grow(&t, &cs->touched_cap, cs->ntouched + 1, sizeof(uint32_t));
            cs->touched = t;
            if (rc) break;
            cs->touched[cs->ntouched++] = c;
        }
    }
    if (rc == 0) {
        void *os = cs->op_start;
        rc = grow(&os, &cs->op_start_cap, cs->ntouched + 1, sizeof(uint32_t));
        cs->op_start = os;
    }
    if (rc) {
        for (size_t k = 0; k < cs->nops; k++) cs->count[cs->ops_tmp[k].cell] = 0;
        return rc;
    }
    /* (touched is NULL while no round touched a cell: qsort(NULL, 0) is undefined) */
    if (cs->ntouched > 1) qsort(cs->touched, cs->ntouched, sizeof cs->touched[0], cmp_u32);
    uint32_t acc = 0;
    for (size_t k = 0; k < cs->ntouched; k++) {
        uint32_t c = cs->touched[k];
        cs->op_start[k] = acc;
        uint32_t n = cs->count[c];
        cs->count[c] = acc; /* now the cell's write cursor */
        acc += n;
    }
    cs->op_start[cs->ntouched] = acc;
    for (size_t k = 0; k < cs->nops; k++) {
        const sp_icells_op_t *o = &cs->ops_tmp[k];
        cs->ops[cs->count[o->cell]++] = *o;
    }
    for (size_t k = 0; k < cs->ntouched; k++) cs->count[cs->touched[k]] = 0; /* all zero again */
    cs->last_changes = cs->nops;
    cs->last_touched = cs->ntouched;
    return 0;
}

void sp_icells_scratch_init(sp_icells_scratch_t *s) {
    memset(s, 0, sizeof *s);
    msgpack_sbuffer_init(&s->sb);
}

void sp_icells_scratch_destroy(sp_icells_scratch_t *s) {
    free(s->recs);
    free(s->sub);
    msgpack_sbuffer_destroy(&s->sb);
    free(s->bits);
    free(s->dist);
    free(s->list);
    free(s->keys);
    memset(s, 0, sizeof *s);
}

/* New content of touched cell k: its old records merged with its ops (both
 * id ascending), and the delta chunk from the old to the new. */
/* The cell's content changed at `tick`: its chunks of the old one go; its
 * delta is `delta` (NULL: nobody can use one). */
static void cell_changed(sp_cell_t *c, uint64_t tick, sp_rbuf_t *delta) {
    c->changed = tick;
    catchups_release(c);
    sp_rbuf_release(c->delta);
    c->delta = delta;
    /* Relaxed: no reader runs during an update (icells.h phases). */
    sp_rbuf_release(atomic_exchange_explicit(&c->full, NULL, memory_order_relaxed));
}

/* First index in recs[lo, n) whose id is >= id, or n. */
static size_t recs_lower(const sp_snap_rec_t *recs, size_t lo, size_t n, uint64_t id) {
    while (lo < n) {
        size_t m = lo + (n - lo) / 2;
        if (recs[m].id < id) lo = m + 1;
        else n = m;
    }
    return lo;
}

/* A cell nobody saw lately (see `seen`) needs no delta and no past
 * contents: when the round only replaced records of ids it has, they are
 * written over the old ones, O(ops x log(cell)), instead of the cell being
 * rebuilt (in a 1M world most changed cells are asleep asteroids' cells
 * with one NPC moving through). False, with nothing written, when an id
 * comes or goes. */
static bool patch_in_place(const sp_icells_t *cs, sp_cell_t *c, const sp_icells_op_t *op, size_t nop) {
    size_t lo = 0;
    for (size_t q = 0; q < nop; q++) { /* ops are id ascending */
        if (op[q].row == UINT32_MAX) return false;
        lo = recs_lower(c->recs, lo, c->len, op[q].id);
        if (lo >= c->len || c->recs[lo].id != op[q].id) return false;
        lo++;
    }
    lo = 0;
    for (size_t q = 0; q < nop; q++) {
        lo = recs_lower(c->recs, lo, c->len, op[q].id);
        sp_icells_rec_of(&c->recs[lo++], &cs->next->rows[op[q].row]);
    }
    return true;
}

static int update_cell(sp_icells_t *cs, size_t k, sp_icells_scratch_t *s) {
    uint32_t cid = cs->touched[k];
    sp_cell_t *c = &cs->cell[cid];
    const sp_icells_op_t *op = cs->ops + cs->op_start[k];
    size_t nop = cs->op_start[k + 1] - cs->op_start[k];
    /* Past contents and a delta only for a cell some client saw lately
     * (seen: the round + 1, 0 = never): no client can use them otherwise
     * (a client's view of a cell was listed by its last snapshot, which
     * marked it; one further behind than SP_ICELLS_HIST rounds gets the
     * full chunk). Relaxed: the snapshots that wrote it ran before this
     * update phase, and the pool's queues published their writes to this
     * thread. */
    uint64_t seen = atomic_load_explicit(&c->seen, memory_order_relaxed);
    bool keep = seen != 0 && cs->rounds + 1 - seen <= SP_ICELLS_HIST;
    if (!keep && patch_in_place(cs, c, op, nop)) {
        cell_changed(c, cs->next->tick, NULL);
        past_free(c);
        return 0;
    }
    void *p = s->recs;
    int rc = grow(&p, &s->recs_cap, (size_t)c->len + nop, sizeof(sp_snap_rec_t));
    s->recs = p;
    if (rc) return rc;
    p = s->sub;
    rc = grow(&p, &s->sub_cap, 2 * nop, sizeof(sp_snap_rec_t));
    s->sub = p;
    if (rc) return rc;
    sp_snap_rec_t *out = s->recs, *sold = s->sub, *scur = s->sub + nop;
    const sp_frame_row_t *rows = cs->next->rows;
    size_t i = 0, n = 0, nold = 0, ncur = 0;
    for (size_t q = 0; q < nop; q++) {
        /* The records up to the op's id stay as they are. */
        size_t e = i;
        while (e < c->len && c->recs[e].id < op[q].id) e++;
        if (e > i) memcpy(out + n, c->recs + i, (e - i) * sizeof *out); /* (recs may be NULL) */
        n += e - i;
        i = e;
        if (i < c->len && c->recs[i].id == op[q].id) sold[nold++] = c->recs[i++]; /* replaced or removed */
        if (op[q].row != UINT32_MAX) {
            sp_icells_rec_of(&out[n], &rows[op[q].row]);
            scur[ncur++] = out[n++];
        }
        /* A removal of an id the cell lacks cannot happen (the ops come
         * from the frames the contents were built from); skipped. */
    }
    if (c->len > i) memcpy(out + n, c->recs + i, (c->len - i) * sizeof *out);
    n += c->len - i;
    /* The delta from the changed records only: every other id is in both
     * contents with the same record (sp_snap_chunk_delta_sparse). */
    sp_rbuf_t *delta = NULL;
    if (keep) {
        msgpack_sbuffer_clear(&s->sb);
        rc = sp_snap_chunk_delta_sparse(&s->sb, cid, cs->tick, sold, nold, scur, ncur, n, NULL);
        if (rc) return rc;
        delta = sp_rbuf_new(s->sb.data, s->sb.size, (uint32_t)n);
        if (delta == NULL) return SP_ENOMEM;
    }
    /* The new content goes into the buffer of the oldest past content (or
     * a free one), then the two swap: the content it replaces becomes the
     * newest past one, at no extra copy. Not kept: straight into recs. */
    unsigned slot = (c->hhead + 1u) % SP_ICELLS_HIST;
    sp_snap_rec_t **buf = keep ? &c->hist[slot].recs : &c->recs;
    uint32_t *bcap = keep ? &c->hist[slot].cap : &c->cap;
    if (n > *bcap) {
        size_t cap = *bcap;
        p = *buf;
        if ((rc = grow(&p, &cap, n, sizeof(sp_snap_rec_t))) != 0 || cap > UINT32_MAX) {
            sp_rbuf_release(delta);
            return rc ? rc : SP_ENOMEM;
        }
        *buf = p;
        *bcap = (uint32_t)cap;
    }
    if (n) memcpy(*buf, out, n * sizeof *out);
    if (keep) {
        sp_icells_past_t *h = &c->hist[slot];
        sp_snap_rec_t *t = c->recs;
        uint32_t tcap = c->cap;
        c->recs = h->recs;
        c->cap = h->cap;
        h->recs = t;
        h->cap = tcap;
        h->len = c->len;
        h->from = c->changed; /* the old content held since its own change (0: since the epoch began) */
        c->hhead = (uint8_t)slot;
        if (c->hn < SP_ICELLS_HIST) c->hn++;
    } else {
        past_free(c); /* nobody looks: give the memory back (free(NULL) when none) */
    }
    c->len = (uint32_t)n;
    cell_changed(c, cs->next->tick, delta);
    return 0;
}

int sp_icells_update(sp_icells_t *cs, size_t from, size_t to, sp_icells_scratch_t *s) {
    for (size_t k = from; k < to && k < cs->ntouched; k++) {
        int rc = update_cell(cs, k, s);
        if (rc) {
            /* Relaxed: sp_icells_end() reads it after the pool's queues
             * published every update job's writes to its thread. */
            atomic_store_explicit(&cs->failed, 1, memory_order_relaxed);
            return rc;
        }
    }
    return 0;
}

void sp_icells_end(sp_icells_t *cs, bool ok) {
    if (ok && !atomic_load_explicit(&cs->failed, memory_order_relaxed) && cs->next != NULL) {
        cs->rounds++;
        cs->prev_tick = cs->tick;
        cs->has_prev = cs->has_tick;
        cs->tick = cs->next->tick;
        cs->has_tick = true;
        sp_frame_release(cs->frame);
        cs->frame = cs->next;
        cs->next = NULL;
        return;
    }
    /* Some cells may hold the new content and others the old: start over
     * from nothing, in a new epoch (every view gets a full snapshot). */
    for (uint32_t i = 0; i < cs->ncells; i++) cell_clear(&cs->cell[i]);
    sp_frame_release(cs->frame);
    sp_frame_release(cs->next);
    cs->frame = cs->next = NULL;
    cs->has_tick = cs->has_prev = false;
    cs->epoch++;
}

sp_rbuf_t *sp_icells_full(sp_icells_t *cs, uint32_t cell, sp_icells_scratch_t *s) {
    sp_cell_t *c = &cs->cell[cell];
    /* Acquire: pairs with the release of the CAS below on another thread,
     * so the chunk's bytes are visible before we hand them out. */
    sp_rbuf_t *b = atomic_load_explicit(&c->full, memory_order_acquire);
    if (b) return b;
    msgpack_sbuffer_clear(&s->sb);
    if (sp_snap_chunk_full(&s->sb, cell, c->recs, c->len, NULL) != 0) return NULL;
    sp_rbuf_t *nb = sp_rbuf_new(s->sb.data, s->sb.size, c->len);
    if (nb == NULL) return NULL;
    sp_rbuf_t *expected = NULL;
    /* acq_rel: release publishes nb's bytes to the threads that load it
     * (above); on failure, acquire makes the winner's bytes visible to us.
     * Two threads may encode the same chunk at once: the loser frees its copy. */
    if (!atomic_compare_exchange_strong_explicit(&c->full, &expected, nb, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        sp_rbuf_release(nb);
        return expected;
    }
    return nb;
}

/* A client's snapshot has the cell in its view this round. Relaxed, and
 * only when it changes (once a round per cell, not once per client): every
 * writer of a round writes the same value, and the update phase that reads
 * it comes after the pool's queues published the snapshot jobs' writes. */
static void cell_seen(sp_icells_t *cs, uint32_t cell) {
    _Atomic uint64_t *seen = &cs->cell[cell].seen;
    if (atomic_load_explicit(seen, memory_order_relaxed) != cs->rounds + 1)
        atomic_store_explicit(seen, cs->rounds + 1, memory_order_relaxed);
}

/* Which past content of cell c held at tick T (< c->changed), or -1 when
 * it is older than the cell keeps. */
static int past_at(const sp_cell_t *c, uint64_t T) {
    for (int k = 0; k < c->hn; k++)
        if (c->hist[(c->hhead + SP_ICELLS_HIST - k) % SP_ICELLS_HIST].from <= T) return k;
    return -1;
}

/* The catch-up delta of cell `cell` from its past content k (which it held
 * at tick T) to the store's: the cached one when its base is T, else
 * encoded now and cached if the slot is empty, else private. *own: the
 * caller holds a reference to release. NULL on OOM. Between rounds, any
 * thread. */
static sp_rbuf_t *cell_catchup(sp_icells_t *cs, uint32_t cell, int k, uint64_t T, sp_icells_scratch_t *s,
                               bool *own) {
    sp_cell_t *c = &cs->cell[cell];
    const sp_icells_past_t *h = &c->hist[(c->hhead + SP_ICELLS_HIST - k) % SP_ICELLS_HIST];
    _Atomic(sp_rbuf_t *) *slot = &c->catchup[k];
    *own = false;
    /* Acquire: pairs with the CAS's release below (the bytes and the key). */
    sp_rbuf_t *b = atomic_load_explicit(slot, memory_order_acquire);
    if (b && b->key == T) return b;
    msgpack_sbuffer_clear(&s->sb);
    if (sp_snap_chunk_delta(&s->sb, cell, T, h->recs, h->len, c->recs, c->len, NULL) != 0) return NULL;
    sp_rbuf_t *nb = sp_rbuf_new(s->sb.data, s->sb.size, c->len);
    if (nb == NULL) return NULL;
    nb->key = T;
    if (b == NULL) {
        sp_rbuf_t *expected = NULL;
        /* acq_rel as in sp_icells_full(): release publishes nb's bytes and
         * key; on failure, acquire makes the winner's visible. A slot is
         * only ever filled here, and emptied while no reader runs, so a
         * pointer read from it stays valid until the next round. */
        if (atomic_compare_exchange_strong_explicit(slot, &expected, nb, memory_order_acq_rel,
                                                    memory_order_acquire))
            return nb;
        if (expected->key == T) {
            sp_rbuf_release(nb);
            return expected;
        }
    }
    *own = true; /* another base holds the slot: this one is the caller's alone */
    return nb;
}

/* ---------------------------------------------------------------- client views */

void sp_cview_init(sp_cview_t *v) { memset(v, 0, sizeof *v); }

void sp_cview_destroy(sp_cview_t *v) {
    free(v->cells);
    memset(v, 0, sizeof *v);
}

void sp_cview_swap(sp_cview_t *a, sp_cview_t *b) {
    sp_cview_t t = *a;
    *a = *b;
    *b = t;
}

void sp_csnap_init(sp_csnap_t *o) {
    memset(o, 0, sizeof *o);
    msgpack_sbuffer_init(&o->bytes);
    sp_cview_init(&o->next);
}

void sp_csnap_clear(sp_csnap_t *o) {
    for (size_t k = 0; k < o->nchunks; k++) sp_rbuf_release(o->chunks[k]);
    o->nchunks = 0;
    o->ngone = 0;
    o->next.n = 0;
    o->next.valid = false;
    msgpack_sbuffer_clear(&o->bytes);
    o->head = 0;
    o->full = false;
    o->full_entities = o->visible = o->count = o->chunk_bytes = o->catchups = 0;
}

void sp_csnap_destroy(sp_csnap_t *o) {
    sp_csnap_clear(o);
    free(o->chunks);
    free(o->gone);
    msgpack_sbuffer_destroy(&o->bytes);
    sp_cview_destroy(&o->next);
    memset(o, 0, sizeof *o);
}

/* The visible cells (those whose box the spheres reach), ascending, into
 * s->list, and each one's squared box distance to the nearest centre into
 * s->dist[cell]. Returns the count. s->bits is all zero again afterwards. */
static size_t visible_cells(const sp_icells_t *cs, const double (*ctr)[3], int nctr, double radius,
                            sp_icells_scratch_t *s) {
    const sp_snap_grid_t *g = &cs->grid;
    if (!(radius >= 0) || isinf(radius)) return 0;
    double r2 = radius * radius, h = g->half_extent, e = g->edge;
    size_t nvis = 0;
    for (int k = 0; k < nctr; k++) {
        const double *c = ctr[k];
        if (!isfinite(c[0]) || !isfinite(c[1]) || !isfinite(c[2])) continue;
        uint32_t lo[3], hi[3];
        for (int a = 0; a < 3; a++) {
            lo[a] = sp_snap_grid_axis(g, c[a] - radius);
            hi[a] = sp_snap_grid_axis(g, c[a] + radius);
        }
        for (uint32_t iz = lo[2]; iz <= hi[2]; iz++) {
            double bz0 = -h + iz * e, bz1 = bz0 + e;
            double dz = c[2] < bz0 ? bz0 - c[2] : c[2] > bz1 ? c[2] - bz1 : 0;
            for (uint32_t iy = lo[1]; iy <= hi[1]; iy++) {
                double by0 = -h + iy * e, by1 = by0 + e;
                double dy = c[1] < by0 ? by0 - c[1] : c[1] > by1 ? c[1] - by1 : 0;
                double dyz = dy * dy + dz * dz;
                if (dyz > r2) continue;
                for (uint32_t ix = lo[0]; ix <= hi[0]; ix++) {
                    double bx0 = -h + ix * e, bx1 = bx0 + e;
                    double dx = c[0] < bx0 ? bx0 - c[0] : c[0] > bx1 ? c[0] - bx1 : 0;
                    double d2 = dx * dx + dyz;
                    if (d2 > r2) continue;
                    uint32_t id = ix + g->n * (iy + g->n * iz);
                    uint64_t bit = 1ull << (id & 63);
                    if (!(s->bits[id >> 6] & bit)) {
                        s->bits[id >> 6] |= bit;
                        s->dist[id] = (float)d2;
                        nvis++;
                    } else if ((float)d2 < s->dist[id]) {
                        s->dist[id] = (float)d2;
                    }
                }
            }
        }
    }
    size_t words = ((size_t)cs->ncells + 63) / 64, m = 0;
    for (size_t w = 0; w < words && m < nvis; w++) {
        uint64_t x = s->bits[w];
        s->bits[w] = 0;
        for (; x != 0; x &= x - 1) s->list[m++] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(x));
    }
    return m;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Append a chunk reference (retained) to o. */
static int add_chunk(sp_csnap_t *o, sp_rbuf_t *b) {
    if (b == NULL) return SP_ENOMEM;
    void *p = o->chunks;
    if (grow(&p, &o->chunks_cap, o->nchunks + 1, sizeof(sp_rbuf_t *)) != 0) return SP_ENOMEM;
    o->chunks = p;
    sp_rbuf_retain(b);
    o->chunks[o->nchunks++] = b;
    o->chunk_bytes += b->len;
    return 0;
}

int sp_icells_snapshot(sp_icells_t *cs, const sp_cview_t *base, const double (*ctr)[3], int nctr, double radius,
                      size_t budget, sp_icells_scratch_t *s, sp_csnap_t *o) {
    sp_csnap_clear(o);
    if (!cs->has_tick) return SP_EAGAIN;
    /* Per-thread scratch sized for the grid (bits stay all zero between calls). */
    if (s->bits == NULL) {
        size_t words = ((size_t)cs->ncells + 63) / 64;
        s->bits = calloc(words, sizeof s->bits[0]);
        s->dist = malloc((size_t)cs->ncells * sizeof s->dist[0]);
        s->list = malloc((size_t)cs->ncells * sizeof s->list[0]);
        s->keys = malloc((size_t)cs->ncells * sizeof s->keys[0]);
        if (s->bits == NULL || s->dist == NULL || s->list == NULL || s->keys == NULL) {
            free(s->bits);
            free(s->dist);
            free(s->list);
            free(s->keys);
            s->bits = NULL;
            s->dist = NULL;
            s->list = NULL;
            s->keys = NULL;
            return SP_ENOMEM;
        }
    }
    bool full = !(base->valid && base->epoch == cs->epoch && base->tick <= cs->tick);
    const uint32_t *bc = full ? NULL : base->cells;
    size_t nb = full ? 0 : base->n;
    uint64_t T = full ? 0 : base->tick;
    bool deltas = !full && cs->has_prev && T == cs->prev_tick;
    size_t nvis = visible_cells(cs, ctr, nctr, radius, s);

    /* Newly seen cells, nearest first (then by id): the entering budget. */
    size_t nnew = 0, bi = 0;
    for (size_t v = 0; v < nvis; v++) {
        uint32_t c = s->list[v];
        while (bi < nb && bc[bi] < c) bi++;
        if (bi < nb && bc[bi] == c) continue;
        float d = s->dist[c];
        uint32_t bits;
        memcpy(&bits, &d, sizeof bits); /* non-negative floats order like their bits */
        s->keys[nnew++] = (uint64_t)bits << 32 | c;
    }
    if (nnew > 1) qsort(s->keys, nnew, sizeof s->keys[0], cmp_u64);
    size_t entering = 0, taken = 0;
    for (; taken < nnew; taken++) {
        uint32_t c = (uint32_t)s->keys[taken];
        size_t len = cs->cell[c].len;
        if (taken > 0 && entering + len > budget) break;
        entering += len;
        s->bits[c >> 6] |= 1ull << (c & 63); /* taken: cleared below */
    }

    /* Walk the visible cells and the base view together, ascending. */
    int rc = 0;
    void *p = o->next.cells;
    if (grow(&p, &o->next.cap, nb + nvis, sizeof(uint32_t)) != 0) rc = SP_ENOMEM;
    o->next.cells = p;
    p = o->gone;
    if (rc == 0 && grow(&p, &o->gone_cap, nb, sizeof(uint32_t)) != 0) rc = SP_ENOMEM;
    o->gone = p;
    size_t v = 0;
    bi = 0;
    while (rc == 0 && (v < nvis || bi < nb)) {
        uint32_t c;
        if (bi < nb && (v >= nvis || bc[bi] < s->list[v])) { /* no longer seen */
            o->gone[o->ngone++] = bc[bi++];
            continue;
        }
        c = s->list[v++];
        const sp_cell_t *cell = &cs->cell[c];
        int past;
        o->visible += cell->len;
        if (bi < nb && bc[bi] == c) { /* kept */
            bi++;
            cell_seen(cs, c);
            o->next.cells[o->next.n++] = c;
            o->count += cell->len;
            if (cell->changed > T) {
                if (deltas && cell->changed == cs->tick && cell->delta != NULL) {
                    rc = add_chunk(o, cell->delta);
                } else if ((past = past_at(cell, T)) >= 0) {
                    bool own;
                    sp_rbuf_t *b = cell_catchup(cs, c, past, T, s, &own);
                    rc = add_chunk(o, b);
                    if (own) sp_rbuf_release(b);
                    o->catchups++;
                } else {
                    rc = add_chunk(o, sp_icells_full(cs, c, s));
                    o->full_entities += cell->len;
                }
            }
        } else if (s->bits[c >> 6] & (1ull << (c & 63))) { /* entering */
            s->bits[c >> 6] &= ~(1ull << (c & 63));
            cell_seen(cs, c);
            o->next.cells[o->next.n++] = c;
            o->count += cell->len;
            o->full_entities += cell->len;
            rc = add_chunk(o, sp_icells_full(cs, c, s));
        }
    }
    /* Leave the bitmap all zero whatever happened. */
    for (size_t k = 0; k < taken; k++) {
        uint32_t c = (uint32_t)s->keys[k];
        s->bits[c >> 6] &= ~(1ull << (c & 63));
    }
    if (rc == 0) rc = sp_snap_pack_head(&o->bytes, cs->tick, full, T, o->nchunks);
    o->head = o->bytes.size;
    if (rc == 0) rc = sp_snap_pack_tail(&o->bytes, o->gone, o->ngone, o->count);
    if (rc) {
        sp_csnap_clear(o);
        return SP_ENOMEM;
    }
    o->full = full;
    o->next.tick = cs->tick;
    o->next.epoch = cs->epoch;
    o->next.valid = true;
    return 0;
}
