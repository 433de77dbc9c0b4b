/* icells.h: the per-cell chunk cache of snapshot rounds, and one client's
 * snapshot assembled from it by reference (issue 9, point 2; wire2.md).
 *
 * The world cube is cut into a static grid of interest cells (proto's
 * sp_snap_grid_t, announced by `hello`). The store keeps, per cell, its
 * content as the wire carries it (quantized records, id ascending) at the
 * tick of the last applied round, the tick it last changed, the delta chunk
 * of its last change (msgpack bytes against the previous applied round) and
 * its full chunk (encoded the first time a client needs it, kept until the
 * cell changes). Chunks are rbufs (rbuf.h): immutable, refcounted, owned by
 * no connection, so every client that sees a cell writes the same bytes, and
 * the same chunk could be published to another process as it is. A cell
 * nobody moves in costs nothing per round.
 *
 * A round is applied in three steps:
 *   sp_icells_begin(f)        serial, one thread: which rows changed since the
 *                            previous applied frame (find_changes(), the ONE
 *                            place that learns it; O(rows) by comparing the
 *                            two frames today), grouped by cell: the touched
 *                            cells, ascending
 *   sp_icells_update(a, b)    touched cells [a, b): new content and its delta
 *                            chunk; disjoint ranges run on different threads
 *                            at once (pool jobs); the delta is encoded from
 *                            the changed records only (O(changes)), the
 *                            content merged with memcpy-like copies
 *   sp_icells_end(ok)         serial: the store is now at f->tick (or, after
 *                            a failure in any step, emptied: a new epoch)
 * Between rounds (after end, before the next begin) any number of threads
 * may read the store and call sp_icells_full() and sp_icells_snapshot() at
 * once; nothing may read it during begin..end. The caller (snapshots.c)
 * orders these phases; the pool's queues publish each phase's writes to the
 * next one.
 *
 * A client's view, as the server keeps it (sp_cview_t): the cells it has
 * been sent, each exactly the store's content at the view's tick. Its next
 * snapshot (sp_icells_snapshot, wire2.md's rules):
 *   view at the previous applied round   delta chunks of its changed cells
 *   view at an older tick T (skipped)    for each cell changed since T: a
 *                                        catch-up delta from the cell's content
 *                                        at T when it changed at most
 *                                        SP_ICELLS_HIST times since, else its
 *                                        full chunk
 *   no view (hello, resync, new epoch)   base nil, full chunks of all its cells
 * plus full chunks of newly seen cells and `gone` for the cells it no longer
 * sees. Newly seen cells enter nearest first (box distance to the nearest
 * centre, then cell id), whole cells, at most `budget` entities per snapshot
 * but always at least one cell; the others are simply not in the view yet.
 *
 * Threads: as above. No libuv: bench/bench_fanout drives it directly. */
#ifndef SP_DAEMON_ICELLS_H
#define SP_DAEMON_ICELLS_H

#include <msgpack.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "daemon/rbuf.h"
#include "sim/frame.h"
#include "snapshot.h"

/* The wire record of a frame row: one definition for the cell store and for
 * bench_fanout's protocol-1 baseline, so both carry the same records (the
 * quantization is the same: snapshots.c asserts it at compile time).
 * Padding zeroed: records compare as bytes. Pure. */
static inline void sp_icells_rec_of(sp_snap_rec_t *o, const sp_frame_row_t *r) {
    memset(o, 0, sizeof *o);
    o->id = r->id;
    memcpy(o->pos, r->pos, sizeof o->pos);
    memcpy(o->vel, r->vel, sizeof o->vel);
    o->hp = r->hp;
    o->owner = r->owner;
    o->radius = r->radius;
    o->kind = r->kind;
}

/* The most cells per axis the daemon uses (64^3 = 262,144 cells, ~20 MB of
 * cell state and per-worker scratch): a smaller --interest-cell is raised to
 * fit (sp_icells_init). */
#define SP_ICELLS_MAX_PER_AXIS 64u

/* How many past contents a cell keeps for catch-up deltas: a client whose
 * view lags by up to this many changes of a cell (e.g. rounds it skipped
 * while the daemon or its socket was behind) still gets a delta. Memory: up
 * to this many extra copies of the records of the cells that change and that
 * some client saw in the last this-many rounds. */
#define SP_ICELLS_HIST 4

typedef struct sp_icells_past {
    sp_snap_rec_t *recs;
    uint32_t len, cap;
    uint64_t from;              /* tick since which the cell held it (0: since the epoch began) */
} sp_icells_past_t;

typedef struct sp_cell {
    sp_snap_rec_t *recs;        /* content at the store's tick, id ascending */
    uint32_t len, cap;
    uint64_t changed;           /* tick of the applied round that last changed it; 0: never */
    sp_rbuf_t *delta;           /* delta chunk of that change (against the round before it);
                                 * meaningful only while changed == the store's tick; NULL
                                 * for a cell no client saw lately (`seen`: none can use it) */
    /* The full chunk of recs, NULL until a client needs it: the first
     * sp_icells_full() encodes it and publishes it with a CAS; the next
     * change releases it. */
    _Atomic(sp_rbuf_t *) full;
    /* The contents before the last SP_ICELLS_HIST changes, most recent
     * first (hist[(hhead - k) mod HIST] for k < hn), each with the tick it
     * began to hold (`from`; it held until the next one's, the newest until
     * `changed`), so a client whose view of the cell is from any of those
     * ticks, e.g. one that skipped rounds, gets a catch-up delta instead of
     * the full cell. Kept by swapping buffers, never copied. */
    sp_icells_past_t hist[SP_ICELLS_HIST];
    uint8_t hhead, hn;
    /* Per past content k: the catch-up delta hist[k] -> recs for one base
     * tick (its rbuf's key), encoded on first use and published like
     * `full`; released by the next change. Other bases get private ones. */
    _Atomic(sp_rbuf_t *) catchup[SP_ICELLS_HIST];
    /* The store's round + 1 (sp_icells_t.rounds; 0: never) of the last snapshot that had
     * the cell in its view: past contents are kept only for cells seen in
     * the last SP_ICELLS_HIST rounds, so memory follows what clients see
     * (a 1M world with no clients keeps none). */
    _Atomic uint64_t seen;
} sp_cell_t;

/* One change of a round, in a cell: the entity leaves the cell (row ==
 * UINT32_MAX) or takes the record of frame row `row` there. */
typedef struct sp_icells_op {
    uint64_t id;
    uint32_t row;
    uint32_t cell;
} sp_icells_op_t;

typedef struct sp_icells {
    sp_snap_grid_t grid;
    uint32_t ncells;            /* grid.n^3 */
    sp_cell_t *cell;
    uint64_t epoch;             /* bumped when the store is emptied (failure): views of an older
                                 * epoch get a full snapshot */
    uint64_t tick, prev_tick;   /* applied rounds: the contents' tick, the one before */
    bool has_tick, has_prev;
    const sp_frame_t *frame;    /* the frame of `tick` (a reference): the next round's diff base */
    /* The round being applied (begin..end): */
    const sp_frame_t *next;     /* its frame (a reference) */
    uint32_t *touched;          /* touched cells, ascending */
    size_t ntouched, touched_cap;
    uint32_t *op_start;         /* ops of touched[k]: ops[op_start[k], op_start[k + 1]) */
    size_t op_start_cap;
    sp_icells_op_t *ops, *ops_tmp;
    size_t nops, ops_cap;
    uint32_t *count;            /* ncells counters (grouping); all zero between rounds */
    _Atomic int failed;         /* an update ran out of memory: end empties the store */
    /* Statistics of the last applied round (loop reads them after end). */
    size_t last_changes, last_touched;
    uint64_t rounds;            /* rounds applied (a clock for sp_cell_t.seen) */
} sp_icells_t;

/* The grid of edge `edge` over [-half_extent, half_extent]^3 (the edge is
 * raised to keep at most SP_ICELLS_MAX_PER_AXIS cells per axis; *edge_out
 * gets the one used). Returns 0, SP_EINVAL or SP_ENOMEM. */
int sp_icells_init(sp_icells_t *cs, double half_extent, double edge, double *edge_out);
void sp_icells_destroy(sp_icells_t *cs);

/* Step 1 of applying frame f (tick > the store's). Returns 0 (cs->ntouched
 * cells to update), or SP_ENOMEM (then call sp_icells_end(cs, false)). */
int sp_icells_begin(sp_icells_t *cs, const sp_frame_t *f);

/* Per-thread scratch of updates and snapshots (grown on demand, kept). */
typedef struct sp_icells_scratch {
    sp_snap_rec_t *recs;
    size_t recs_cap;
    sp_snap_rec_t *sub;         /* an update's changed records: old ones, then new ones */
    size_t sub_cap;
    msgpack_sbuffer sb;
    uint64_t *bits;             /* ncells bits, all zero between calls */
    float *dist;                /* per visible cell: squared box distance to the nearest centre */
    uint32_t *list;             /* visible cells, ascending */
    uint64_t *keys;             /* newly seen cells: distance bits << 32 | cell */
    size_t list_cap;
} sp_icells_scratch_t;

void sp_icells_scratch_init(sp_icells_scratch_t *s);
void sp_icells_scratch_destroy(sp_icells_scratch_t *s);

/* Step 2: update touched cells [from, to) (indices into cs->touched).
 * Returns 0 or SP_ENOMEM (the round fails: sp_icells_end(cs, false)). */
int sp_icells_update(sp_icells_t *cs, size_t from, size_t to, sp_icells_scratch_t *s);

/* Step 3: ok (every step returned 0): the store is at the new frame's tick.
 * !ok: the store is emptied (new epoch; the next round starts from nothing
 * and every client gets a full snapshot). */
void sp_icells_end(sp_icells_t *cs, bool ok);

/* The full chunk of cell `cell` (the store's content), encoded on first use;
 * a borrowed reference, valid until the next sp_icells_begin() (retain it to
 * keep it longer). NULL on OOM. Between rounds, any thread. */
sp_rbuf_t *sp_icells_full(sp_icells_t *cs, uint32_t cell, sp_icells_scratch_t *s);

/* A client's view as the server keeps it (see above). */
typedef struct sp_cview {
    uint32_t *cells;            /* ascending */
    size_t n, cap;
    uint64_t tick, epoch;
    bool valid;                 /* false: the next snapshot is full */
} sp_cview_t;

void sp_cview_init(sp_cview_t *v);
void sp_cview_destroy(sp_cview_t *v);
void sp_cview_swap(sp_cview_t *a, sp_cview_t *b);

/* One client's snapshot of the store's round, by reference. */
typedef struct sp_csnap {
    msgpack_sbuffer bytes;      /* [0, head) the head, [head, size) the tail */
    size_t head;
    sp_rbuf_t **chunks;         /* retained, cell ascending */
    size_t nchunks, chunks_cap;
    uint32_t *gone;
    size_t ngone, gone_cap;
    sp_cview_t next;            /* the view once this snapshot reached the socket */
    bool full;                  /* base nil */
    size_t full_entities;       /* entities in the full cells sent */
    size_t catchups;            /* catch-up deltas among the chunks */
    size_t visible;             /* entities in the visible cells (sent or not) */
    size_t count;               /* entities in the view after it */
    size_t chunk_bytes;         /* bytes of the chunks */
} sp_csnap_t;

void sp_csnap_init(sp_csnap_t *o);
/* Release the chunk references, keep the memory. */
void sp_csnap_clear(sp_csnap_t *o);
void sp_csnap_destroy(sp_csnap_t *o);

/* Assemble o from the store for a client whose view is base and whose area
 * of interest is the spheres (ctr[k], radius), at most `budget` entering
 * entities (whole cells, nearest first, at least one cell). o is cleared
 * first. Returns 0, SP_EAGAIN (no round applied yet: no snapshot) or
 * SP_ENOMEM. Reads base and the store only; between rounds, any thread.
 * Cost: O(cells in the spheres' boxes + view cells + chunks), plus the first
 * encoding of full chunks nobody needed before; no per-entity work. */
int sp_icells_snapshot(sp_icells_t *cs, const sp_cview_t *base, const double (*ctr)[3], int nctr, double radius,
                      size_t budget, sp_icells_scratch_t *s, sp_csnap_t *o);

#endif /* SP_DAEMON_ICELLS_H */
