/* sim/frame.h: immutable, reference-counted snapshots of the world.
 *
 * After a tick the loop may publish a frame: every live entity as a quantized
 * 64-byte row, rows sorted by id ascending, plus a coarse spatial index for
 * interest queries. A frame never changes after sp_world_publish_frame()
 * returns, so any number of threads may read it at once (per-client snapshot
 * encoding, NPC AI) while the owner keeps stepping the world. Its lifetime is
 * an atomic reference count: the publisher holds one reference; each thread
 * that keeps the frame takes its own with sp_frame_retain() before the
 * publisher could drop it, and drops it with sp_frame_release().
 *
 * Quantization (proto/PROTOCOL.md repeats it; decoders divide back):
 *   pos    int32, units of 1/SP_FRAME_POS_SCALE  (1/16 world unit), rounded to nearest
 *   vel    int32, units of 1/SP_FRAME_VEL_SCALE  (1/64 unit/s)
 *   hp     uint32, units of 1/SP_FRAME_HP_SCALE  (1/16 hp), same for max_hp
 *   amount uint32, 1/16 resource unit (asteroids' remaining amount)
 *   radius uint16, 1/16 world unit (saturates at 4095.9 units)
 * Rounding is round-half-away-from-zero of value*scale (lroundf), saturated to
 * the type's range. */
#ifndef SP_SIM_FRAME_H
#define SP_SIM_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "sim/world.h"
#include "spacesim/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_FRAME_POS_SCALE 16
#define SP_FRAME_VEL_SCALE 64
#define SP_FRAME_HP_SCALE 16
#define SP_FRAME_AMOUNT_SCALE 16
#define SP_FRAME_RADIUS_SCALE 16

/* One entity, quantized. 64 bytes, 64-byte aligned: one cache line. */
typedef struct sp_frame_row {
    sp_entity_id_t id;
    int32_t pos[3];   /* 1/16 units */
    int32_t vel[3];   /* 1/64 units/s */
    uint32_t hp;      /* 1/16 hp */
    uint32_t max_hp;  /* 1/16 hp */
    uint32_t owner;   /* session id; 0 = server */
    uint32_t amount;  /* asteroid remaining, 1/16 units; 0 for others */
    uint16_t radius;  /* 1/16 units */
    uint8_t kind;     /* sp_entity_kind_t */
    uint8_t flags;    /* SP_ENT_* (incl. WEAPON_READY / MINE_READY for ships) */
    int8_t resource;  /* asteroid resource 0..3; -1 otherwise */
    uint8_t reserved[11]; /* zero */
} sp_frame_row_t;

_Static_assert(sizeof(sp_frame_row_t) == 64, "sp_frame_row_t is one cache line");

/* One entry of the spatial index: a row's quantized position (a copy of
 * rows[row].pos, so queries filter by distance without touching the rows)
 * and its row index. 16 bytes. */
typedef struct sp_frame_cell_ent {
    int32_t pos[3];
    uint32_t row;
} sp_frame_cell_ent_t;

/* The frame. Fields are read-only for everyone; the struct and its arrays are
 * one allocation owned by the reference count. */
typedef struct sp_frame {
    uint64_t tick;          /* world tick the frame was taken at */
    uint32_t count;         /* rows */
    uint32_t npc_count;     /* entries in npc_rows */
    float half_extent;      /* world half extent, units */
    float dt;               /* world step, seconds */
    /* Copies of the world rules the AI needs (sp_world_def_t fields). */
    float ship_max_speed, weapon_range, weapon_damage, mining_range, mining_amount;
    const sp_frame_row_t *rows;   /* count rows, id ascending */
    const uint32_t *npc_rows;     /* rows of NPC ships, ascending (the AI's work list) */
    /* Spatial index (dense grid over the world cube, ~1 row per cell, cell
     * edge chosen from the entity density, see sp_frame_build): cell c holds
     * cell_ents[cell_start[c] .. cell_start[c+1]), ascending row order; cells
     * are numbered x fastest, so one (y, z) line of cells is one contiguous
     * run. Entities outside the cube are clamped into the border cells. */
    uint32_t cells_per_axis;
    float cell_size;              /* units */
    const uint32_t *cell_start;   /* cells_per_axis^3 + 1 */
    const struct sp_frame_cell_ent *cell_ents; /* count */
    /* The ships alone (kind SHIP rows, NPC or not), indexed the same way at
     * their own density (~1 per cell, at most 64 cells per axis): the index
     * sp_frame_visit_sphere_ships() scans, for the queries that want ships
     * among many more asteroids (the fighters' AI). ship_ents NULL: not
     * built (out of memory); those queries then scan the main index. */
    uint32_t ship_cells_per_axis, nships;
    float ship_cell_size;
    const uint32_t *ship_start;   /* ship_cells_per_axis^3 + 1 */
    const struct sp_frame_cell_ent *ship_ents; /* nships */
    /* What changed since the frame of base_tick (an incremental build,
     * sp_frame_build_delta; has_changes 0 for a full build): every row that
     * may differ from that frame's row of the same id, or is new (row
     * indices, ascending), and the ids of that frame that are gone
     * (ascending). A superset: a listed row may be unchanged. */
    int has_changes;
    uint64_t base_tick;
    const uint32_t *changed_rows;
    uint32_t nchanged;
    const uint64_t *gone_ids;
    uint32_t ngone;
    /* private */
    const struct sp_frame_cell_ent *rent_; /* count, row order: pos and cell | NPC bit (frame.c) */
    const uint8_t *tag_;          /* count: sp_frame_row_tag() */
    _Atomic uint32_t refs_;
    size_t bytes_;
    const sp_allocator_t *alloc_;
    void *ship_mem_;              /* ship_start and ship_ents: their own block */
    size_t ship_bytes_;
} sp_frame_t;

/* A row's kind with SP_FRAME_TAG_FIGHTER for a fighter ship, from a byte
 * array of its own (1 byte a row): a query's visitor can reject a row by
 * kind without reading the 64-byte row (the NPC AI: fighters look for
 * ships among mostly asteroids). Pure. */
#define SP_FRAME_TAG_FIGHTER 0x80u
static inline uint8_t sp_frame_row_tag(const sp_frame_t *f, uint32_t row) { return f->tag_[row]; }

/* Take an immutable snapshot of w (owner thread). Returns the frame with one
 * reference held by the caller, or NULL on allocation failure (w unchanged).
 * Cost: O(entities): one pass over the slots, a radix sort by id (none
 * when the ids already ascend in slot order; 2 passes of 11-bit digits for
 * one node's ids below 2^22) and a counting sort into cells; allocates one block
 * of ~84 bytes per entity plus 4 bytes per grid cell (~1 cell per entity,
 * at most 64^3). */
SP_API sp_frame_t *sp_world_publish_frame(sp_world_t *w);

/* A frame of rows made elsewhere (a gateway's merge of several daemons'
 * snapshots): `count` rows, ids strictly ascending (else NULL), copied; its
 * tick `tick`, its rules and world cube those of w (w is not read further:
 * any thread may call this while nobody writes w's definition, which never
 * changes). The spatial indexes are built as for a world's frame. One
 * reference held by the caller; NULL on OOM or bad input. Cost: O(count). */
SP_API sp_frame_t *sp_frame_from_rows(const sp_world_t *w, uint64_t tick, const sp_frame_row_t *rows, uint32_t count);

/* ---------------------------------------------------------------- captures
 * Publishing in two halves, so the owner thread does only the cheap one:
 *   sp_world_capture()  owner thread: memcpy of the per-slot arrays a frame
 *                       needs (~64 bytes per slot) into a reusable buffer;
 *   sp_frame_build()    any thread: the O(entities) part (id sort,
 *                       quantization, spatial index) from the capture.
 * sp_frame_build(capture of w) gives a frame identical to
 * sp_world_publish_frame(w) at the same moment. */
typedef struct sp_world_capture sp_world_capture_t;

/* An empty capture buffer (alloc NULL = libc; must be thread-safe if the
 * capture is built or freed on another thread). Returns 0 and *out,
 * SP_EINVAL or SP_ENOMEM. Any thread. */
SP_API int sp_world_capture_create(const sp_allocator_t *alloc, sp_world_capture_t **out);
/* Free it (NULL is a no-op). Any thread; not while sp_frame_build() runs on it. */
SP_API void sp_world_capture_free(sp_world_capture_t *c);

/* Copy w's frame-relevant state into c, replacing what c held. Owner thread
 * of w; c must not be in use by another thread. Returns 0, SP_EINVAL or
 * SP_ENOMEM (c then unchanged). Cost: O(slots) memcpy, ~64 bytes per slot
 * (the buffer also holds 32 bytes of sort scratch per slot); allocates only when the world has more slots than c holds (c then grows
 * to the world's slot capacity). */
SP_API int sp_world_capture(const sp_world_t *w, sp_world_capture_t *c);

/* World tick the capture was taken at. */
SP_API uint64_t sp_world_capture_tick(const sp_world_capture_t *c);

/* Build a frame from c (one reference held by the caller), or NULL on
 * allocation failure or an empty capture. Any thread, one at a time per
 * capture (it uses c's scratch); c stays valid and may be built again or
 * reused for the next capture. Cost: as sp_world_publish_frame(). */
SP_API sp_frame_t *sp_frame_build(sp_world_capture_t *c);

/* ---------------------------------------------------------------- incremental captures
 * Sleeping things cost nothing (issue 9, point 1). After the first call,
 * which is a full capture, w keeps a journal of what may have changed
 * (world_int.h), and each call copies only the rows of the awake set and
 * the journaled slots (quantized, ~64 bytes each) and the ids that died:
 * O(awake + changed), not O(slots). sp_frame_build_delta() then makes the
 * next frame from the previous one: runs of its rows copied with memcpy,
 * the changed rows in their place, the dead left out, the spatial index
 * redone (O(rows) of memory traffic, no per-entity quantization or sort).
 * The result is byte-identical to sp_frame_build() of a full capture at the
 * same moment (tests/check_frame holds this).
 *
 * The chain: capture k is against capture k - 1, so build_delta(capture k)
 * needs the frame of capture k - 1 (prev->tick == that capture's tick). If
 * that frame is missing (its build failed, it was skipped), call
 * sp_world_capture_reset(): the next capture is full again.
 *
 * sp_world_capture_delta: owner thread of w; like sp_world_capture otherwise
 *   (0, SP_EINVAL, SP_ENOMEM; c unchanged on failure, the journal kept).
 * sp_frame_build_delta: any thread, one at a time per capture. A full
 *   capture is built as sp_frame_build(); a delta needs prev as above.
 *   NULL on OOM, a prev of the wrong tick, or a journal that does not add
 *   up to the capture's count (a bug: then reset).
 * sp_world_capture_reset: owner thread. */
SP_API int sp_world_capture_delta(sp_world_t *w, sp_world_capture_t *c);
SP_API sp_frame_t *sp_frame_build_delta(const sp_frame_t *prev, sp_world_capture_t *c);
SP_API void sp_world_capture_reset(sp_world_t *w);
/* 1 if c holds an incremental capture (0: full, or NULL). */
SP_API int sp_world_capture_is_delta(const sp_world_capture_t *c);
/* Rows c carries: every live entity for a full capture, the changed ones
 * for a delta. */
SP_API uint32_t sp_world_capture_rows(const sp_world_capture_t *c);

/* Add a reference. The caller must already hold one (so the frame cannot be
 * freed concurrently). Any thread; lock-free; never allocates. */
SP_API void sp_frame_retain(const sp_frame_t *f);

/* Drop a reference; the last one frees the frame (with the world's
 * allocator, which must therefore be thread-safe). NULL is a no-op. Any
 * thread; lock-free. */
SP_API void sp_frame_release(const sp_frame_t *f);

/* Current reference count (racy by nature: for tests and metrics). */
SP_API uint32_t sp_frame_refs(const sp_frame_t *f);

/* Row index of entity id, or -1 when the frame has no such id (binary search,
 * O(log count)). Any thread. */
SP_API long sp_frame_find(const sp_frame_t *f, sp_entity_id_t id);

/* The first row at or after row `from` whose id is >= id (f->count if
 * none), found by galloping from `from`: O(log distance), reading rows near
 * `from` first. For walks over ascending ids (incremental builds, the cell
 * store's change lists). Any thread. */
SP_API uint32_t sp_frame_seek(const sp_frame_t *f, uint32_t from, sp_entity_id_t id);

/* Rows whose quantized centre lies within distance r (units) of (cx, cy, cz),
 * i.e. |pos/16 - c| <= r (computed in double), in ascending row (= id)
 * order. Writes the smallest min(cap, total) matching row indices to out and
 * returns the total number of matching rows, which may be larger than cap
 * (then call again with a larger buffer). r < 0 or NaN, a non-finite centre,
 * an empty frame give 0. Any thread at once; never allocates (uses ~10 KiB of
 * stack).
 * Cost: the (y, z) lines of cells the sphere touches, each cut to the
 * sphere's chord, are scanned over the 16-byte index entries (cells wholly
 * inside skip the distance test); matches are then sorted (insertion sort up
 * to 24, in-place MSD radix above): O(lines + candidates + k log k). A query
 * whose box covers over half the grid scans all rows linearly (O(count),
 * already in order). */
SP_API size_t sp_frame_query_sphere(const sp_frame_t *f, float cx, float cy, float cz, float r,
                                    uint32_t *out, size_t cap);

/* Call fn(ctx, row) for every row sp_frame_query_sphere() would return, in
 * an unspecified order that depends only on the frame and the arguments
 * (the same on every thread and run). For callers that reduce the matches
 * (nearest, count) and need no sorting or buffer. Any thread; never
 * allocates. Cost: as sp_frame_query_sphere() without the sort. */
SP_API void sp_frame_visit_sphere(const sp_frame_t *f, float cx, float cy, float cz, float r,
                                  void (*fn)(void *ctx, uint32_t row), void *ctx);

/* The same for the ship rows only (kind SHIP): fn(ctx, row) for every ship
 * row sp_frame_query_sphere() would return, from the ships' own index, in
 * an unspecified order that depends only on the frame and the arguments.
 * Cost: as sp_frame_visit_sphere() over the ships alone (in the demo worlds
 * 1 row in 20). Without a ships' index (ship_ents NULL) it visits the main
 * index and passes only ship rows on. */
SP_API void sp_frame_visit_sphere_ships(const sp_frame_t *f, float cx, float cy, float cz, float r,
                                        void (*fn)(void *ctx, uint32_t row), void *ctx);

/* Dequantize helpers. */
SP_INLINE float sp_frame_pos(int32_t q) { return (float)q / (float)SP_FRAME_POS_SCALE; }
SP_INLINE float sp_frame_vel(int32_t q) { return (float)q / (float)SP_FRAME_VEL_SCALE; }
SP_INLINE float sp_frame_hp(uint32_t q) { return (float)q / (float)SP_FRAME_HP_SCALE; }

#ifdef __cplusplus
}
#endif
#endif /* SP_SIM_FRAME_H */
