/* proto/snapshot.h: snapshot wire encode/decode, per-client views, events.
 *
 * A client's *view* is what it has been sent so far: the quantized records of
 * the entities in its area of interest, sorted by id, plus the tick they are
 * from. The daemon keeps one view per client (the baseline) and encodes each
 * new snapshot as a delta against it; a client applies the snapshot to its own
 * view and ends up with exactly the encoder's next view.
 *
 * Wire format (proto/PROTOCOL.md, "Snapshots", is the normative text):
 *   [2, "snapshot", [tick, base_tick|nil, entered, changed, left, count]]
 *   tick       uint: world tick of this snapshot
 *   base_tick  nil for a full snapshot (replace the view), else the tick of
 *              the view this delta applies to (a mismatch is a desync)
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
 *   count      uint: entities in the view after applying (integrity check)
 * Ids are ascending within each list and delta-coded: the first iddelta is
 * the id itself, each next one the difference to the previous id of the same
 * list (>= 1). msgpack packs every integer in its smallest form, so a slowly
 * moving entity costs 2 bytes (iddelta + op) and a static one 0 bytes.
 *
 * Threads: no globals. Encoding is a pure function of (base view, next view)
 * into a caller-owned buffer, so per-client encoding runs on worker threads
 * while the loop ticks, provided each view and buffer is used by one thread
 * at a time. */
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

/* A view: records sorted by id ascending (unique), and their tick. */
typedef struct sp_snap_view {
    sp_snap_rec_t *recs;
    size_t len, cap;
    uint64_t tick;
    bool valid;               /* false: no baseline yet (encode full / expect full) */
    /* sp_snap_apply() only (client side; the daemon's views leave them
     * NULL): a delta with entered/left rows is merged into scratch, then
     * swapped with recs; a changes-only delta is validated into scratch
     * (patched copies of the changed rows) and rows (their indexes), then
     * copied over recs in place. Kept for reuse: no allocation per snapshot
     * once they have grown to the view's size. */
    sp_snap_rec_t *scratch;
    size_t scratch_cap;
    uint32_t *rows;
    size_t rows_cap;
} sp_snap_view_t;

/* What a snapshot contained (for watch output and statistics). */
typedef struct sp_snap_stats {
    uint64_t tick, base_tick;
    bool full;
    uint32_t entered, changed, left;
    uint32_t count;           /* entities in the view afterwards */
    size_t bytes;             /* encoder: bytes appended (whole notification) */
} sp_snap_stats_t;

/* ---------------------------------------------------------------- views */

/* Empty, invalid view; allocates nothing. */
SP_API void sp_snap_view_init(sp_snap_view_t *v);
/* Free the records; the view is left empty and invalid (re-usable). */
SP_API void sp_snap_view_destroy(sp_snap_view_t *v);
/* Forget the content (len 0, invalid) but keep the memory: the next encode
 * against it is a full snapshot (use after a desync / on resync). */
SP_API void sp_snap_view_reset(sp_snap_view_t *v);
/* Exchange two views (O(1), no copy of the records). */
SP_API void sp_snap_view_swap(sp_snap_view_t *a, sp_snap_view_t *b);
/* Replace v's content by n records (copied; must be id-ascending, unique,
 * non-zero ids and kinds; must not point into v itself) at `tick`, and mark
 * it valid. Returns 0, SP_EINVAL (bad input; v unchanged) or SP_ENOMEM (v
 * unchanged). Validates first, then overwrites in place: the view holds one
 * array of cap records (no second buffer on the encoder side). */
SP_API int sp_snap_view_set(sp_snap_view_t *v, uint64_t tick, const sp_snap_rec_t *recs, size_t n);
/* Room for n records in v, for a caller that fills a view in place (the
 * daemon, from a frame): returns v->recs with capacity >= n (old contents
 * not kept),
 * or NULL on OOM (v unchanged). The caller then writes the records (id-
 * ascending, unique, non-zero ids and kinds, padding zeroed: the invariants
 * of sp_snap_view_set()) and sets len, tick and valid. */
SP_API sp_snap_rec_t *sp_snap_view_reserve(sp_snap_view_t *v, size_t n);
/* Record with this id, or NULL. O(log n). */
SP_API const sp_snap_rec_t *sp_snap_view_find(const sp_snap_view_t *v, uint64_t id);
/* True when both views hold the same tick, validity and records (field by field). */
SP_API bool sp_snap_view_equal(const sp_snap_view_t *a, const sp_snap_view_t *b);
/* Bytes of heap the view holds (memory accounting per client). */
SP_API size_t sp_snap_view_bytes(const sp_snap_view_t *v);

/* ---------------------------------------------------------------- encode */

/* Append the notification [2, "snapshot", [...]] that takes a client from
 * `base` to `next` to out. base NULL or !base->valid: a full snapshot.
 * next must be valid. Returns 0, or SP_EINVAL (next invalid) / SP_ENOMEM
 * (out is then restored to its previous size). stats may be NULL.
 * Pure: reads base and next, writes only out and stats. Cost O(|base| +
 * |next|), no allocation besides out's growth. Any thread. */
SP_API int sp_snap_encode_views(const sp_snap_view_t *base, const sp_snap_view_t *next, msgpack_sbuffer *out,
                                sp_snap_stats_t *stats);

/* next_out <- recs (sp_snap_view_set), then sp_snap_encode_views(base,
 * next_out, out). The caller swaps base <-> next_out only when the bytes
 * reached the socket; if the client skips this snapshot, keep base and
 * discard next_out. Returns as the two calls; on failure out is restored.
 * (The daemon fills its views from frames itself: src/daemon/snapshots.c.) */
SP_API int sp_snap_encode_recs(uint64_t tick, const sp_snap_rec_t *recs, size_t n, const sp_snap_view_t *base,
                               sp_snap_view_t *next_out, msgpack_sbuffer *out, sp_snap_stats_t *stats);

/* ---------------------------------------------------------------- decode */

/* Apply the params array of a "snapshot" notification to view. Returns 0
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
SP_API int sp_snap_apply(sp_snap_view_t *view, const msgpack_object *params, sp_snap_stats_t *stats);

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
