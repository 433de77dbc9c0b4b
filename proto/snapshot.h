/* proto/snapshot.h: snapshot wire encode/decode, client views, events.
 *
 * Protocol 2 (proto/PROTOCOL.md, "Snapshots", is the normative text). The
 * world cube is cut into a static grid of *interest cells* (edge E, n cells
 * per axis, both in `hello`'s result). A client's *view* is a set of whole
 * cells, each exactly the server's content of that cell at the view's tick.
 *
 *   [2, "snapshot", [tick, base_tick|nil, chunks, gone, count]]
 *   tick       uint: world tick of this snapshot
 *   base_tick  nil: a full snapshot (clear the view first); else the tick of
 *              the view this applies to (a mismatch is a desync)
 *   chunks     array of cell chunks, cell id strictly ascending, each
 *              [cell, cbase|nil, entered, changed, left, n]:
 *                cbase nil: a full cell: replace the cell's entities by
 *                  `entered` (`changed` and `left` empty)
 *                cbase uint: a delta against the cell at base_tick (always
 *                  equal to base_tick)
 *                entered/changed/left: protocol 1's three lists, scoped to
 *                  the cell (below)
 *                n: entities in the cell after applying
 *   gone       array of uint, strictly ascending: cells the client no
 *              longer sees (forget them); applied before the chunks
 *   count      uint: entities in the whole view after applying
 * Later versions may append elements to the params or to a chunk: ignored.
 *
 * The three lists (protocol 1's, per cell):
 *   entered    flat array, 11 ints per entity:
 *              iddelta, kind, px, py, pz, vx, vy, vz, hp, owner, radius
 *   changed    flat array of entries: iddelta, op, values...
 *              op 0..124: only pos changed, by dx,dy,dz in [-2, 2]:
 *                         op = (dx+2)*25 + (dy+2)*5 + (dz+2); no values follow
 *              op -1..-31: mask = -op (bits of SP_SNAP_FIELD_MAP: 1 pos,
 *                         2 vel, 4 hp, 8 owner, 16 radius); the fields whose
 *                         bit is set follow in that order: pos/vel/hp as
 *                         signed deltas, owner/radius as absolute values
 *   left       flat array of iddeltas
 * Ids are ascending within each list and delta-coded: the first iddelta is
 * the id itself, each next one the difference to the previous id of the same
 * list (>= 1). msgpack packs every integer in its smallest form, so a slowly
 * moving entity costs 2 bytes (iddelta + op) and a static one 0 bytes.
 *
 * Sharing (why the format is cut this way): a chunk depends only on the
 * cell's content at two ticks, never on the client, so the server encodes
 * each changed cell once per round (sp_snap_chunk_delta) and each cell's
 * full chunk once until it changes (sp_snap_chunk_full), and a client's
 * snapshot is sp_snap_pack_head() + the chunks' bytes as they are +
 * sp_snap_pack_tail(): the chunk bytes are written (writev) by reference.
 *
 * Protocol 1 (a flat per-client view, [tick, base, entered, changed, left,
 * count]) is kept as sp_snap_list_t / sp_snap_v1_encode() / sp_snap_v1_apply():
 * the per-client encoder that bench/bench_fanout measures the shared one
 * against. No daemon speaks it once it speaks protocol 2.
 *
 * Threads: no globals. Encoders are pure functions of their inputs into a
 * caller-owned buffer (any thread); a view is used by one thread at a time. */
#ifndef SP_PROTO_SNAPSHOT_H
#define SP_PROTO_SNAPSHOT_H

#include <math.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spacesim/common.h"
#include "spacesim_proto.def"

#ifdef __cplusplus
extern "C" {
#endif

/* One quantized entity as the wire carries it (see SP_PROTO_QUANT_MAP). */
typedef struct sp_snap_rec {
    uint64_t id;      /* opaque entity id (sim/world.h), < 2^53; never 0 */
    int32_t pos[3];   /* 1/16 world units */
    int32_t vel[3];   /* 1/64 world units per second */
    uint32_t hp;      /* 1/16 hp */
    uint32_t owner;   /* session id; 0 = server-owned (NPCs, asteroids) */
    uint32_t radius;  /* 1/16 world units */
    uint8_t kind;     /* SP_ENTITY_KIND_MAP value, 1..255 */
} sp_snap_rec_t;

/* Entries per entered record on the wire (iddelta + kind + fields). */
#define SP_SNAP_ENTERED_INTS 11u

/* Mask bits of "changed" entries, from SP_SNAP_FIELD_MAP: SP_SNAP_F_POS ... */
enum {
#define SP__SNAP_BIT(id, bit, nv, coding, name) SP_SNAP_F_##id = 1u << (bit),
    SP_SNAP_FIELD_MAP(SP__SNAP_BIT)
#undef SP__SNAP_BIT
};

/* Protocol 1: a flat view, records sorted by id ascending (unique), and
 * their tick (the daemon's per-client baseline before protocol 2; kept for
 * sp_snap_v1_encode()). */
typedef struct sp_snap_list {
    sp_snap_rec_t *recs;
    size_t len, cap;
    uint64_t tick;
    bool valid;               /* false: no baseline yet (encode full / expect full) */
    /* sp_snap_v1_apply() only (client side; the daemon's views leave them
     * NULL): a delta with entered/left rows is merged into scratch, then
     * swapped with recs; a changes-only delta is validated into scratch
     * (patched copies of the changed rows) and rows (their indexes), then
     * copied over recs in place. Kept for reuse: no allocation per snapshot
     * once they have grown to the view's size. */
    sp_snap_rec_t *scratch;
    size_t scratch_cap;
    uint32_t *rows;
    size_t rows_cap;
} sp_snap_list_t;

/* What a snapshot (or one chunk) contained (watch output, statistics). */
typedef struct sp_snap_stats {
    uint64_t tick, base_tick;
    bool full;
    uint32_t entered, changed, left; /* entities, over all chunks */
    uint32_t count;           /* entities in the view afterwards (a chunk: in the cell) */
    uint32_t chunks;          /* protocol 2: chunks in the snapshot */
    uint32_t full_cells;      /* protocol 2: of which full cells */
    uint32_t gone;            /* protocol 2: cells in `gone` */
    size_t bytes;             /* encoder: bytes appended (whole notification or chunk) */
} sp_snap_stats_t;

/* ================================================================ protocol 2 */

/* ---------------------------------------------------------------- cells */

/* The most cells per axis a server announces (so a cell id, < n^3, fits
 * 32 bits with room: 1024^3 = 2^30). */
#define SP_SNAP_MAX_CELLS_PER_AXIS 1024u

/* The interest-cell grid: edge (world units, e.g. 1000), n cells per axis
 * over the cube [-half_extent, half_extent]^3. */
typedef struct sp_snap_grid {
    double half_extent;       /* world units */
    double edge;              /* world units, > 0 */
    uint32_t n;               /* cells per axis, 1..SP_SNAP_MAX_CELLS_PER_AXIS */
} sp_snap_grid_t;

/* g <- the grid of edge E over [-h, h]^3: n = ceil(2h / E), at least 1.
 * Returns 0, or SP_EINVAL (h or E not finite and > 0, or n above
 * SP_SNAP_MAX_CELLS_PER_AXIS: choose a bigger edge). */
SP_API int sp_snap_grid_init(sp_snap_grid_t *g, double half_extent, double edge);

/* Cell index along one axis of a position (world units): floor((p + h) / E)
 * clamped to [0, n-1] (NaN: 0). */
SP_INLINE uint32_t sp_snap_grid_axis(const sp_snap_grid_t *g, double p) {
    double x = floor((p + g->half_extent) / g->edge);
    if (!(x > 0)) return 0;
    if (x >= (double)(g->n - 1)) return g->n - 1;
    return (uint32_t)x;
}

/* Cell id of a position: ix + n * (iy + n * iz). */
SP_INLINE uint32_t sp_snap_grid_cell(const sp_snap_grid_t *g, double x, double y, double z) {
    return sp_snap_grid_axis(g, x) + g->n * (sp_snap_grid_axis(g, y) + g->n * sp_snap_grid_axis(g, z));
}

/* ---------------------------------------------------------------- views */

/* One cell of a view: its entities, id ascending (unique). */
typedef struct sp_snap_cell {
    uint32_t cell;            /* cell id */
    uint32_t len, cap;        /* records, capacity */
    sp_snap_rec_t *recs;      /* owned by the view */
} sp_snap_cell_t;

/* A client's view: the cells it has been sent (an empty cell is still a
 * cell of the view), cell id ascending, and their tick. Read cells[0,
 * ncells) and their records directly (read-only); change it only with
 * sp_snap_apply() / sp_snap_view_put_cell() / sp_snap_view_reset(). */
typedef struct sp_snap_view {
    uint64_t tick;
    bool valid;               /* false: no snapshot applied yet (expect a full one) */
    size_t count;             /* entities over all cells */
    sp_snap_cell_t *cells;
    size_t ncells, cells_cap;
    /* private: sp_snap_apply()'s staging, kept for reuse (no allocation per
     * snapshot once grown to the biggest snapshot's size) */
    sp_snap_cell_t *spare;    /* the next cell list, built then swapped in */
    size_t spare_cap;
    sp_snap_rec_t *scratch;   /* merged cell contents and patched rows */
    size_t scratch_cap;
    uint32_t *rows;           /* rows the patched records go to */
    size_t rows_cap;
    void *plan;               /* one entry per chunk (snapshot.c) */
    size_t plan_cap;
    uint32_t *gone;           /* the snapshot's gone cells */
    size_t gone_cap;
    /* private: entity id -> cell id (open addressing, linear probing, at
     * most half full; id 0 marks a free slot), kept by apply / put_cell in
     * O(the records of the cells they rebuild), so find is O(1 + log) */
    uint64_t *idx_ids;
    uint32_t *idx_cells;
    size_t idx_cap, idx_len;
} sp_snap_view_t;

/* Empty, invalid view; allocates nothing. */
SP_API void sp_snap_view_init(sp_snap_view_t *v);
/* Free everything; the view is left empty and invalid (re-usable). */
SP_API void sp_snap_view_destroy(sp_snap_view_t *v);
/* Forget the content (no cells, invalid) but keep the staging memory: the
 * next snapshot must be full (use after a desync / on resync). */
SP_API void sp_snap_view_reset(sp_snap_view_t *v);
/* The cell with this id, or NULL. O(log cells). */
SP_API const sp_snap_cell_t *sp_snap_view_cell(const sp_snap_view_t *v, uint32_t cell);
/* The record with this id, or NULL. O(1) expected to find its cell (the
 * view's id index) + O(log cells + log cell size) in it: no scan of the
 * cells. */
SP_API const sp_snap_rec_t *sp_snap_view_find(const sp_snap_view_t *v, uint64_t id);
/* Set cell `cell` of v to n records (copied; id-ascending, unique, non-zero
 * ids and kinds), inserting the cell if v lacks it, and v's tick to tick
 * (v becomes valid). For tests and tools that build an expected view.
 * Returns 0, SP_EINVAL (bad input) or SP_ENOMEM (v unchanged on both). */
SP_API int sp_snap_view_put_cell(sp_snap_view_t *v, uint64_t tick, uint32_t cell, const sp_snap_rec_t *recs,
                                 size_t n);
/* True when both views hold the same tick, validity, cells and records. */
SP_API bool sp_snap_view_equal(const sp_snap_view_t *a, const sp_snap_view_t *b);
/* Bytes of heap the view holds. */
SP_API size_t sp_snap_view_bytes(const sp_snap_view_t *v);

/* ---------------------------------------------------------------- decode */

/* Apply the params array of a protocol-2 "snapshot" notification to view
 * (the reference decoder of PROTOCOL.md, same semantics). Returns 0 (view
 * now equals the server's view of this client, tick updated), or
 *   SP_EPROTO    base_tick is not nil and not view->tick (or view has no
 *                snapshot yet): a desync; call `resync` and wait for a full one
 *   SP_ECORRUPT  malformed: wrong shape or types, chunk cells or gone not
 *                strictly ascending, a delta chunk's cbase not base_tick (or
 *                a delta chunk in a full snapshot), a full chunk with
 *                changed/left entries, ids not ascending in a list, an
 *                entered id already in its cell, a changed/left id absent
 *                from it, values out of range, a chunk's n or count wrong
 *   SP_ENOMEM
 * On any error the view is unchanged: every chunk is validated and staged
 * before the view is written. stats may be NULL.
 * Cost: O(what the chunks carry), not O(view): a delta chunk with only a
 * "changed" list patches its rows in place (O(changed * log(cell))); any
 * other chunk rebuilds its cell (O(cell + chunk)); the cell list (24 bytes
 * per cell) is rebuilt only when cells come or go, O(cells). Allocates only
 * when the staging buffers or a cell's array must grow (none per snapshot in
 * a steady state). One thread at a time per view.
 * Not checked (a correct server never sends it, and the view stays safe
 * when a malformed one does): an id present in two cells at once. */
SP_API int sp_snap_apply(sp_snap_view_t *view, const msgpack_object *params, sp_snap_stats_t *stats);

/* sp_snap_apply() from the params array's msgpack bytes, params[0, len),
 * read in place: no msgpack-c objects are built (a third or more of a
 * client's decoding time; see sp_rpc_decoder_next_lazy() for getting the
 * bytes of a notification). Same results and errors as sp_snap_apply() on
 * the object msgpack-c would make of those bytes, and SP_ECORRUPT for bytes
 * that are not one well-formed msgpack array (truncated, a byte that starts
 * no type, nesting past 64 levels). Bytes after the array are not read.
 * Cost: the same O(what the chunks carry), one extra pass over the lists'
 * bytes (to find where each chunk ends). Reads params only during the call. */
SP_API int sp_snap_apply_bytes(sp_snap_view_t *view, const void *params, size_t len, sp_snap_stats_t *stats);

/* ---------------------------------------------------------------- encode */

/* Append one full-cell chunk [cell, nil, entered, [], [], n] to out: the n
 * records (id-ascending, unique, non-zero ids and kinds) are the cell's
 * whole content. stats (may be NULL) gets entered = count = n and bytes.
 * Returns 0, SP_EINVAL (bad records) or SP_ENOMEM (out restored to its
 * previous size). Pure: any thread; O(n); no allocation but out's growth. */
SP_API int sp_snap_chunk_full(msgpack_sbuffer *out, uint32_t cell, const sp_snap_rec_t *recs, size_t n,
                              sp_snap_stats_t *stats);

/* Append one delta chunk [cell, base_tick, entered, changed, left, ncur]
 * that takes the cell from old (its content at base_tick) to cur (both
 * id-ascending, unique, non-zero ids and kinds; an id keeps its kind). An
 * unchanged cell gives a valid chunk of empty lists (callers skip unchanged
 * cells: stats->entered + changed + left == 0 tells). stats may be NULL.
 * Returns 0, SP_EINVAL or SP_ENOMEM (out restored). Pure: any thread;
 * O(nold + ncur); no allocation but out's growth. */
SP_API int sp_snap_chunk_delta(msgpack_sbuffer *out, uint32_t cell, uint64_t base_tick, const sp_snap_rec_t *old,
                               size_t nold, const sp_snap_rec_t *cur, size_t ncur, sp_snap_stats_t *stats);

/* The same chunk from the records of the ids that may have changed only:
 * old and cur hold, id ascending, the old and the new records of those ids
 * (an id in one list only entered or left), every other id of the cell is
 * in both contents with an equal record, and count is the cell's new
 * entity count. The bytes equal sp_snap_chunk_delta over the whole
 * contents (tests/check_snapshot). O(nold + ncur): what changed, not what
 * the cell holds. */
SP_API int sp_snap_chunk_delta_sparse(msgpack_sbuffer *out, uint32_t cell, uint64_t base_tick,
                                      const sp_snap_rec_t *old, size_t nold, const sp_snap_rec_t *cur, size_t ncur,
                                      uint64_t count, sp_snap_stats_t *stats);

/* A client snapshot is, byte for byte:
 *   sp_snap_pack_head(tick, base, nchunks) + nchunks chunks' bytes (cell
 *   ascending) + sp_snap_pack_tail(gone, count)
 * so a server writes the per-client head and tail (a few dozen bytes) and
 * the shared chunk buffers by reference (writev), never re-encoding them.
 * full: base_tick is nil (and every chunk must be a full cell). Each
 * appends to out and returns 0 or SP_ENOMEM (out restored); head + tail are
 * at most 32 + 5 * ngone bytes. Any thread. */
SP_API int sp_snap_pack_head(msgpack_sbuffer *out, uint64_t tick, bool full, uint64_t base_tick, size_t nchunks);
SP_API int sp_snap_pack_tail(msgpack_sbuffer *out, const uint32_t *gone, size_t ngone, uint64_t count);

/* One chunk by reference (e.g. a shared buffer's bytes). */
typedef struct sp_snap_piece {
    const void *data;
    size_t len;
} sp_snap_piece_t;

/* head + the pieces' bytes copied + tail into out: the whole notification
 * in one buffer (tests, benches, and transports that cannot gather).
 * Returns 0 or SP_ENOMEM (out restored). Any thread; O(bytes). */
SP_API int sp_snap_assemble(msgpack_sbuffer *out, uint64_t tick, bool full, uint64_t base_tick,
                            const sp_snap_piece_t *chunks, size_t nchunks, const uint32_t *gone, size_t ngone,
                            uint64_t count);

/* ================================================================ protocol 1 */

/* ---------------------------------------------------------------- lists */

/* Empty, invalid view; allocates nothing. */
SP_API void sp_snap_list_init(sp_snap_list_t *v);
/* Free the records; the view is left empty and invalid (re-usable). */
SP_API void sp_snap_list_destroy(sp_snap_list_t *v);
/* Forget the content (len 0, invalid) but keep the memory: the next encode
 * against it is a full snapshot (use after a desync / on resync). */
SP_API void sp_snap_list_reset(sp_snap_list_t *v);
/* Exchange two views (O(1), no copy of the records). */
SP_API void sp_snap_list_swap(sp_snap_list_t *a, sp_snap_list_t *b);
/* Replace v's content by n records (copied; must be id-ascending, unique,
 * non-zero ids and kinds; must not point into v itself) at `tick`, and mark
 * it valid. Returns 0, SP_EINVAL (bad input; v unchanged) or SP_ENOMEM (v
 * unchanged). Validates first, then overwrites in place: the view holds one
 * array of cap records (no second buffer on the encoder side). */
SP_API int sp_snap_list_set(sp_snap_list_t *v, uint64_t tick, const sp_snap_rec_t *recs, size_t n);
/* Room for n records in v, for a caller that fills a view in place (the
 * daemon, from a frame): returns v->recs with capacity >= n (old contents
 * not kept),
 * or NULL on OOM (v unchanged). The caller then writes the records (id-
 * ascending, unique, non-zero ids and kinds, padding zeroed: the invariants
 * of sp_snap_list_set()) and sets len, tick and valid. */
SP_API sp_snap_rec_t *sp_snap_list_reserve(sp_snap_list_t *v, size_t n);
/* Record with this id, or NULL. O(log n). */
SP_API const sp_snap_rec_t *sp_snap_list_find(const sp_snap_list_t *v, uint64_t id);
/* True when both views hold the same tick, validity and records (field by field). */
SP_API bool sp_snap_list_equal(const sp_snap_list_t *a, const sp_snap_list_t *b);
/* Bytes of heap the view holds (memory accounting per client). */
SP_API size_t sp_snap_list_bytes(const sp_snap_list_t *v);

/* ---------------------------------------------------------------- v1 encode */

/* Protocol 1: append the notification [2, "snapshot", [...]] that takes a client from
 * `base` to `next` to out. base NULL or !base->valid: a full snapshot.
 * next must be valid. Returns 0, or SP_EINVAL (next invalid) / SP_ENOMEM
 * (out is then restored to its previous size). stats may be NULL.
 * Pure: reads base and next, writes only out and stats. Cost O(|base| +
 * |next|), no allocation besides out's growth. Any thread. */
SP_API int sp_snap_v1_encode(const sp_snap_list_t *base, const sp_snap_list_t *next, msgpack_sbuffer *out,
                                sp_snap_stats_t *stats);

/* next_out <- recs (sp_snap_list_set), then sp_snap_v1_encode(base,
 * next_out, out). The caller swaps base <-> next_out only when the bytes
 * reached the socket; if the client skips this snapshot, keep base and
 * discard next_out. Returns as the two calls; on failure out is restored.
 * (The daemon fills its views from frames itself: src/daemon/snapshots.c.) */
SP_API int sp_snap_v1_encode_recs(uint64_t tick, const sp_snap_rec_t *recs, size_t n, const sp_snap_list_t *base,
                               sp_snap_list_t *next_out, msgpack_sbuffer *out, sp_snap_stats_t *stats);

/* ---------------------------------------------------------------- v1 decode */

/* Protocol 1: apply the params array of a "snapshot" notification to view. Returns 0
 * (view now equals the encoder's next view, tick updated), or
 *   SP_EPROTO    base_tick does not match view->tick (or view has no
 *                baseline yet): a desync; call `resync` and wait for a full one
 *   SP_ECORRUPT  malformed: wrong shape or types, ids not ascending, an entered
 *                id already present, a changed/left id absent, values out of
 *                range, count mismatch
 *   SP_ENOMEM
 * On any error the view is unchanged: everything is validated before the
 * view is written. stats may be NULL.
 * Cost: a delta with only a "changed" list (the steady state) patches the
 * changed rows in place, O(changed * log(|view| / changed)) plus the message;
 * a full snapshot or a delta with entered/left rows is one merge pass into
 * the view's scratch buffer, then swapped with recs: O(|view| + message),
 * rows no list names being copied as memcpy runs. Allocates only when the
 * view's scratch/rows buffers must grow (kept for reuse; none per snapshot
 * in steady state). One thread at a time per view. */
SP_API int sp_snap_v1_apply(sp_snap_list_t *view, const msgpack_object *params, sp_snap_stats_t *stats);

/* ---------------------------------------------------------------- quantization */

/* Steps per unit of each quantized field (SP_PROTO_QUANT_MAP):
 * SP_SNAP_SCALE_POS, SP_SNAP_SCALE_VEL, SP_SNAP_SCALE_HP, SP_SNAP_SCALE_RADIUS. */
enum {
#define SP__QUANT_ENUM(id, steps, meaning) SP_SNAP_SCALE_##id = (steps),
    SP_PROTO_QUANT_MAP(SP__QUANT_ENUM)
#undef SP__QUANT_ENUM
};

SP_INLINE int32_t sp_snap_q32(double v, double scale) {
    double q = round(v * scale);
    if (!(q == q)) return 0; /* NaN */
    if (q >= 2147483647.0) return INT32_MAX;
    if (q <= -2147483648.0) return INT32_MIN;
    return (int32_t)q;
}
SP_INLINE uint32_t sp_snap_qu32(double v, double scale) {
    double q = round(v * scale);
    if (!(q > 0)) return 0; /* also NaN */
    if (q >= 4294967295.0) return UINT32_MAX;
    return (uint32_t)q;
}
SP_INLINE int32_t sp_snap_quant_pos(double units) { return sp_snap_q32(units, SP_SNAP_SCALE_POS); }
SP_INLINE int32_t sp_snap_quant_vel(double ups) { return sp_snap_q32(ups, SP_SNAP_SCALE_VEL); }
SP_INLINE uint32_t sp_snap_quant_hp(double hp) { return sp_snap_qu32(hp, SP_SNAP_SCALE_HP); }
SP_INLINE double sp_snap_pos(int32_t q) { return (double)q / SP_SNAP_SCALE_POS; }
SP_INLINE double sp_snap_vel(int32_t q) { return (double)q / SP_SNAP_SCALE_VEL; }
SP_INLINE double sp_snap_hp(uint32_t q) { return (double)q / SP_SNAP_SCALE_HP; }
SP_INLINE double sp_snap_radius(uint32_t q) { return (double)q / SP_SNAP_SCALE_RADIUS; }

/* ---------------------------------------------------------------- events */
/* Event notifications: [2, "event", [{"type": str, "tick": int, ...}]].
 * Each packer appends one whole notification to pk and returns 0 or
 * SP_ENOMEM (partial bytes then; roll the buffer back). Any thread. */

typedef enum sp_event_type {
#define SP__EVENT_ENUM(id, name) SP_EVENT_##id,
    SP_PROTO_EVENT_MAP(SP__EVENT_ENUM)
#undef SP__EVENT_ENUM
    SP_EVENT__COUNT
} sp_event_type_t;

/* "WeaponFired", ...; NULL when out of range. */
SP_API const char *sp_event_name(int type);
/* Event type of a name, or -1. */
SP_API int sp_event_lookup(const char *name, size_t len);

/* Generic: packs [2, "event", [{"type": name, "tick": tick, then the caller
 * packs exactly nfields more key/value pairs}]]. */
SP_API int sp_event_pack_begin(msgpack_packer *pk, int type, uint64_t tick, uint32_t nfields);

/* The four packers below take their keys, key order and field count from
 * SP_PROTO_EVENT_FIELD_MAP in spacesim_proto.def (the daemon's own event
 * maps use the same keys; tests/net/check_daemon checks that). Ids and
 * session ids are uint, 0 = none / the server. */

/* {"type":"WeaponFired","tick","ship_id":id,"target_id":id,"hit":bool,"damage":float} */
SP_API int sp_event_pack_weapon_fired(msgpack_packer *pk, uint64_t tick, uint64_t ship_id, uint64_t target_id,
                                      bool hit, double damage);
/* {"type":"ResourceMined","tick","ship_id":id,"asteroid_id":id,"resource_type":str,
 *  "amount":float}; resource is a SP_RESOURCE_MAP index ("unknown" outside it). */
SP_API int sp_event_pack_resource_mined(msgpack_packer *pk, uint64_t tick, uint64_t ship_id, uint64_t asteroid_id,
                                        int resource, double amount);
/* {"type":"SystemAlert","tick","message":str,"priority":int,"from":uint}
 * message is len bytes (need not be NUL-terminated); from is the session id of
 * the admin who sent it, 0 for the server itself. */
SP_API int sp_event_pack_system_alert(msgpack_packer *pk, uint64_t tick, const char *message, size_t len,
                                      int64_t priority, uint32_t from);
/* {"type":"ShipDestroyed","tick","ship_id":id,"owner":uint,"by":id,"cause":str}
 * owner 0 = server-owned (NPC); by 0 = no known culprit; cause a name of
 * SP_PROTO_DESTROY_CAUSE_MAP (NULL: "other"). */
SP_API int sp_event_pack_ship_destroyed(msgpack_packer *pk, uint64_t tick, uint64_t ship_id, uint32_t owner,
                                        uint64_t by, const char *cause);

#ifdef __cplusplus
}
#endif
#endif /* SP_PROTO_SNAPSHOT_H */
