/* sim/world_int.h: the world's private layout, shared by world.c, frame.c and
 * save.c. Not for the daemon: use world.h. */
#ifndef SP_SIM_WORLD_INT_H
#define SP_SIM_WORLD_INT_H

#include "sim/world.h"
#include "spacesim/arena.h"
#include "spacesim/grid.h"

/* The static grid of sleeping asteroids, kept between ticks and updated
 * locally: a body that falls asleep is inserted, one that wakes or dies is
 * removed, each in O(1) (a few entries of one cell); nothing is rebuilt per
 * tick. Layout: a dense grid of dim^3 cells over the world cube (positions
 * are always inside it), each cell a chain of 64-byte chunks of entries.
 * An entry copies the sleeper's position and radius (a sleeping body does
 * not move; it leaves the grid before anything moves it), so a query reads
 * one cache line per chunk and never the slot arrays. The layout (cell edge,
 * dim) is a function of the sleeper count at the last full layout and of the
 * definition; queries return the same sorted hits for any layout (see
 * hits_insert in world.c), so it is chosen for speed only: ~2 cells per
 * sleeper (most queries then touch 1-2 cells), edge at least 4 *
 * asteroid_radius_max. */
typedef struct sp__sent {
    float x, y, z, r;
    uint32_t idx; /* slot; UINT32_MAX in an unused entry */
} sp__sent_t;

#define SP__SG_CHUNK 3
/* Entries of one cell. The cell's first chunk holds 1..3 entries packed
 * from e[0]; every later chunk of the chain is full (so a removal refills
 * its hole from the first chunk, and an insertion fills the first chunk or
 * pushes a new one in front). */
typedef struct sp__schunk {
    sp__sent_t e[SP__SG_CHUNK];
    uint32_t next; /* 1 + index of the next chunk; 0 = end (also the free list's link) */
} sp__schunk_t;

typedef struct sp__sgrid {
    uint32_t n;          /* entries (= sleepers) */
    uint32_t dim;        /* cells per axis; 0 = no layout yet */
    uint32_t n_layout;   /* sleepers the layout was sized for */
    float cell, inv_cell, rmax, half;
    uint32_t *head;      /* dim^3 cells: 1 + index of the cell's first chunk, 0 = empty */
    size_t head_cap;     /* elements allocated */
    sp__schunk_t *ch;    /* chunk pool */
    uint32_t nch;        /* chunks ever handed out (ch[0, nch)) */
    uint32_t ch_cap;     /* chunks allocated */
    uint32_t ch_free;    /* free list: 1 + index of a free chunk, 0 = none */
    uint32_t nfree_ch;   /* chunks on the free list */
    /* Insertion epochs for the per-body caches (sg_near in world.c): every
     * batch of insertions takes a new epoch and stamps the coarse cells
     * (SP__SG_COARSE^3 over the world cube, 128 KiB: cache-resident) it
     * touched; a cache made at epoch e is valid while its coarse cells are
     * stamped <= e and e >= min_valid (a new layout or a cleared grid sets
     * min_valid past every cache). */
    uint32_t epoch, min_valid;
    float inv_coarse;
    uint32_t *coarse;    /* SP__SG_COARSE^3 stamps, or NULL before the first layout */
} sp__sgrid_t;

#define SP__SG_COARSE 32u
/* Sleeper candidates a body's cache holds; a body with more always queries. */
#define SP__SQ_MAX 4

/* Open-addressing hash map from an id (never 0: 0 marks an empty entry) to a
 * 64-bit value, linear probing, at most half full, deletion by backward
 * shift (no tombstones, so probes stay short however many entities come and
 * go). Used for id -> slot and for the departure memory (id -> epoch). Its
 * layout depends only on the sequence of inserts and erases, and nothing
 * iterates it in layout order where order matters, so it keeps the world
 * deterministic. Grown (sp__map_reserve) before the change that needs the
 * room, so SP_ENOMEM leaves the world unchanged. */
typedef struct sp__mapent {
    uint64_t key, val;
} sp__mapent_t;
typedef struct sp__map {
    sp__mapent_t *e; /* mask + 1 entries, or NULL */
    uint32_t mask;   /* entries - 1 (a power of two) */
    uint32_t n;      /* keys present */
} sp__map_t;

typedef struct sp__evbuf {
    sp_world_event_t *v;
    size_t n, cap;
} sp__evbuf_t;

struct sp_world {
    sp_world_def_t def;
    const sp_allocator_t *alloc;
    uint64_t tick;
    uint64_t rng;            /* splitmix64 state */
    uint32_t cap;            /* allocated slots */
    uint32_t nslots;         /* slots ever used: live + free list */
    uint32_t count;          /* live entities */
    uint32_t count_kind[SP_KIND_COUNT + 1]; /* by kind value; [0] unused */
    uint32_t nsleeping;
    uint32_t nfree;          /* free list length; free_list[nfree-1] is reused next */
    int sleep_enabled;
    uint32_t stale;          /* static grid entries whose body woke or died */
    uint64_t last_rebuild;   /* tick of the last static grid rebuild */
    uint32_t count_npc;      /* live NPC ships (derived; not saved) */
    uint64_t next_id;        /* the next id to mint (node << 43 | counter); saved, hashed */
    uint64_t id_end;         /* first id past this node's space: (node + 1) << 43 */
    sp__map_t ids;           /* id -> slot of every live entity (derived from id[]) */
    sp__map_t departed;      /* id -> epoch of the hand-offs out (sp_world_depart) */
    /* Respawn (sp_world_set_respawn; saved and hashed). period 0 = off. */
    uint32_t rs_npc_target, rs_ast_target, rs_period, rs_per_period;
    uint32_t rs_role;        /* roles given so far (the next role cycles from it) */
    int (*region)(void *ctx, float x, float y); /* sp_world_set_region; NULL = all of space */
    void *region_ctx;

    /* Slot arrays (cap elements; cargo 4*cap). */
    uint64_t *id, *epoch;    /* the entity's id (0 in a free slot) and hand-off epoch */
    uint32_t *owner, *free_list;
    uint8_t *kind, *flags;
    int8_t *resource;
    float *px, *py, *pz, *vx, *vy, *vz, *dvx, *dvy, *dvz;
    float *radius, *inv_mass, *hp, *max_hp, *amount, *cargo;
    uint32_t *wcd, *mcd, *ttl, *rest;
    uint64_t *source;

    /* Step scratch (cap elements): the gathered awake set, and two u32
     * arrays and 2 * cap u64 keys for frame sorting. */
    uint32_t *gidx, *tmp_a, *tmp_b;
    uint64_t *tmp_k;
    /* The awake set (Box2D v3's awake sets, as a list): aw holds, in slot
     * order, every slot that may be awake (a live entity not SLEEPING);
     * awp the slots that became awake since (spawn, wake, import), in any
     * order; inaw[i] = 1 while slot i is in aw or awp (so neither holds a
     * slot twice). aw_refresh() merges awp in and drops the slots that fell
     * asleep or died: O(awake + new log new), so gather never scans all
     * slots. aw2 is the merge's output buffer. sgcell: the static grid cell
     * of sleeping slot i. */
    uint32_t *aw, *aw2, *awp, *sgcell;
    uint8_t *inaw;
    /* Per awake body, its cache of nearby sleepers (a fat proxy, as Box2D's
     * enlarged AABBs): the centre it was made at, its epoch (0 = none), and
     * the slots of every sleeper that could touch the body while it stays
     * within SP__SQ_MARGIN of that centre per axis. Derived, not saved. */
    float *sqx, *sqy, *sqz;
    uint32_t *sqe, *sqc; /* sqc: SP__SQ_MAX per slot */
    uint8_t *sqn;
    uint32_t naw, nawp;
    /* Awake asteroids in slot order, rebuilt lazily from the state (a pure
     * function of it) when dirty: ResourceMined intents search it. */
    uint32_t *awake_ast;
    uint32_t nawake_ast;
    int awake_dirty;
    float *gx, *gy, *gz, *gvx, *gvy, *gvz, *gr;
    uint32_t ngather, ncollide; /* last gather: [0,ncollide) collidable, then projectiles */

    /* Contacts of the current step as slot pairs. */
    uint32_t *contacts;      /* 2 per contact */
    size_t ncontacts, contacts_cap;

    sp__evbuf_t ev_pending;  /* commands since the last step */
    sp__evbuf_t ev_out;      /* what sp_world_events() shows */

    sp_grid_t *grid;
    sp_arena_t scratch;
    sp__sgrid_t sg;

    /* The change journal of incremental captures (frame.c's
     * sp_world_capture_delta; issue 9, point 1): since the last capture,
     * which slots may have changed a captured field without being in the
     * awake set at capture time, and the ids that died. An awake slot is
     * captured anyway (it is in aw or awp), so only these are journaled:
     * a slot leaving the awake set (fell asleep: aw_refresh), a sleeper
     * changed in place (fire's damage, mining), and every slot_free (its
     * id). Off (jon 0) until the first incremental capture; jvalid 0 when
     * the journal cannot say (it overflowed, the awake set was reset, or
     * the daemon asked for a full capture): the next capture is then full.
     * Derived, not saved; a marked slot costs one branch and a store. */
    int jon, jvalid;
    uint64_t jtick;          /* tick of the capture the journal runs from */
    uint32_t *jn;            /* journaled slots, each once (injn) */
    uint8_t *injn;
    uint32_t njn, jcap;      /* jn and injn hold jcap slots */
    uint64_t *jdead;         /* ids freed since, in order */
    uint32_t njdead, jdead_cap;
};

/* The journal (above): slot i may have changed while not awake. */
static inline void sp__world_jmark(sp_world_t *w, uint32_t i) {
    if (!w->jon || w->injn == NULL) return;
    if (i >= w->jcap) {
        w->jvalid = 0; /* grown past the journal: the next capture is full */
        return;
    }
    if (w->injn[i]) return;
    w->injn[i] = 1;
    w->jn[w->njn++] = i;
}

/* The saved and hashed state, field by field, so that sp_world_hash()
 * (world.c), sp_world_save() and sp_world_load() (save.c) cannot disagree: a
 * field listed here is hashed, written, read back, sized and restored by all
 * three. Only the slot bookkeeping stays explicit in each (nslots, count,
 * nfree, the free list, each slot's kind, id and epoch; nsleeping, derived, is
 * hashed but not saved) because its checks are its own.
 *
 * Scalars: X(type, field, since); type is a tag for the width written and
 * hashed (u8 i8 u32 u64 f; SP__CTYPE_<tag> is its C type), since the first
 * save version that has the field (older checkpoints load it as 0). The
 * scalars are two lists only because sp_world_hash() hashes the slot counts
 * between them (kept so that hash values did not change); the checkpoint
 * writes both lists, then the slot counts. */
#define SP__WORLD_CLOCK_FIELDS(X) X(u64, tick, 1) X(u64, rng, 1)
#define SP__WORLD_SCALAR_FIELDS(X)                                                                 \
    X(u32, sleep_enabled, 1) X(u32, stale, 1) X(u64, last_rebuild, 1) X(u32, rs_npc_target, 2)     \
    X(u32, rs_ast_target, 2) X(u32, rs_period, 2) X(u32, rs_per_period, 2) X(u32, rs_role, 2)     \
    X(u64, next_id, 4)

/* The definition, field by field (X(type, field)); allocator and grid_threads
 * are not state. The same list drives the checkpoint's reading and validation (save.c) and
 * the comparison of definitions when worlds are merged (split.c). */
#define SP__DEF_FIELDS(X)                                                                          \
    X(u64, seed) X(f, half_extent) X(f, dt) X(u32, max_entities) X(f, ship_radius) X(f, ship_mass)  \
    X(f, ship_hp) X(f, ship_max_speed) X(f, ship_max_accel) X(f, weapon_range) X(f, weapon_damage)  \
    X(u32, weapon_cooldown_ticks) X(f, mining_range) X(f, mining_amount)                           \
    X(u32, mining_cooldown_ticks) X(f, asteroid_radius_min) X(f, asteroid_radius_max)              \
    X(f, asteroid_amount_min) X(f, asteroid_amount_max) X(f, asteroid_density)                     \
    X(f, asteroid_hp_per_radius) X(f, asteroid_damping) X(f, sleep_speed) X(u32, sleep_ticks)      \
    X(f, restitution) X(f, collision_damage) X(f, collision_damage_threshold)                      \
    X(f, projectile_speed) X(u32, projectile_ttl_ticks) X(i32, spawn_projectiles)
/* Definition fields added in version 4, after the list above. */
#define SP__DEF_FIELDS_V4(X) X(u32, id_node)

/* Per live slot: the list SP__WORLD_SLOT_FIELDS in world.h (public because
 * sp_entity_state_t is generated from it). */

/* Internal helpers shared with save.c. */
int sp__world_alloc(const sp_world_def_t *def, const sp_allocator_t *alloc, int grid_threads,
                    sp_world_t **out);
int sp__world_reserve(sp_world_t *w, uint32_t slots);
int sp__world_rebuild_static(sp_world_t *w, int promote);
/* Slot i (live) may have become awake: put it in the awake set (no-op if it
 * is there; a sleeper put there is dropped at the next refresh). */
void sp__world_awake_add(sp_world_t *w, uint32_t i);
int sp__world_def_check(const sp_world_def_t *d);

/* The id map (world.c). find: the entry of key or NULL. reserve: room for
 * `extra` more keys (SP_ENOMEM/SP_EOVERFLOW, map unchanged). insert: key
 * absent and room reserved. erase: no-op if absent. */
sp__mapent_t *sp__map_find(const sp__map_t *m, uint64_t key);
int sp__map_reserve(const sp_allocator_t *a, sp__map_t *m, uint32_t extra);
void sp__map_insert(sp__map_t *m, uint64_t key, uint64_t val);
void sp__map_erase(sp__map_t *m, uint64_t key);
void sp__map_destroy(const sp_allocator_t *a, sp__map_t *m);

/* Every invariant of one live entity's state under definition d (shared by
 * checkpoint loading and sp_world_import): 1 if it could have been made by
 * a world of that definition. */
int sp__state_ok(const sp_world_def_t *d, const sp_entity_state_t *s);

/* The slot of live entity `id`, or 0 when none (null, stale, departed). */
SP_INLINE int sp__slot_of(const sp_world_t *w, sp_entity_id_t id, uint32_t *slot) {
    if (id == 0) return 0;
    const sp__mapent_t *e = sp__map_find(&w->ids, id);
    if (e == NULL) return 0;
    *slot = (uint32_t)e->val;
    return 1;
}
SP_INLINE int sp__alive(const sp_world_t *w, sp_entity_id_t id) {
    uint32_t i;
    return sp__slot_of(w, id, &i);
}

#endif /* SP_SIM_WORLD_INT_H */
