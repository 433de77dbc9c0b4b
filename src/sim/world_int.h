/* sim/world_int.h: the world's private layout, shared by world.c, frame.c and
 * save.c. Not for the daemon: use world.h. */
#ifndef SP_SIM_WORLD_INT_H
#define SP_SIM_WORLD_INT_H

#include "sim/world.h"
#include "spacesim/arena.h"
#include "spacesim/grid.h"

/* One sleeping asteroid in the static grid. Its position and radius are copied
 * in: a sleeping body does not move, so the copy stays exact until the body
 * wakes, and then the entry is skipped (the SLEEPING flag is the truth). */
typedef struct sp__sentry {
    float x, y, z, r;
    uint32_t idx;
    int32_t cx, cy, cz;
} sp__sentry_t;

/* Static grid of sleeping asteroids: a hash of cells -> buckets, entries
 * counting-sorted by bucket (ascending slot order within a bucket). */
typedef struct sp__sgrid {
    uint32_t n;      /* entries */
    uint32_t mask;   /* buckets - 1 (power of two) */
    float cell, inv_cell, rmax;
    uint32_t *bstart; /* mask + 2 offsets */
    sp__sentry_t *e;  /* n entries */
    size_t bstart_cap, e_cap;
} sp__sgrid_t;

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
    /* Respawn (sp_world_set_respawn; saved and hashed). period 0 = off. */
    uint32_t rs_npc_target, rs_ast_target, rs_period, rs_per_period;
    uint32_t rs_role;        /* roles given so far (the next role cycles from it) */

    /* Slot arrays (cap elements; cargo 4*cap). */
    uint32_t *gen, *owner, *free_list;
    uint8_t *kind, *flags;
    int8_t *resource;
    float *px, *py, *pz, *vx, *vy, *vz, *dvx, *dvy, *dvz;
    float *radius, *inv_mass, *hp, *max_hp, *amount, *cargo;
    uint32_t *wcd, *mcd, *ttl, *rest;
    uint64_t *source;

    /* Step scratch (cap elements): the gathered awake set, and two u32
     * arrays for frame sorting. */
    uint32_t *gidx, *tmp_a, *tmp_b;
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
};

/* The saved and hashed state, field by field, so that sp_world_hash()
 * (world.c), sp_world_save() and sp_world_load() (save.c) cannot disagree: a
 * field listed here is hashed, written, read back, sized and restored by all
 * three. Only the slot bookkeeping stays explicit in each (nslots, count,
 * nfree, the free list, each slot's gen and kind; nsleeping, derived, is
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
    X(u32, rs_ast_target, 2) X(u32, rs_period, 2) X(u32, rs_per_period, 2) X(u32, rs_role, 2)

/* Per live slot, after gen and kind (every slot has those; kind NONE ends a
 * free slot): X(type, array) for one element per slot, XA(type, array, n) for
 * n per slot. A field added here changes the checkpoint format (bump
 * SP_SAVE_VERSION and keep reading the old one). */
#define SP__WORLD_SLOT_FIELDS(X, XA)                                                               \
    X(u8, flags) X(i8, resource) X(u32, owner) X(f, px) X(f, py) X(f, pz) X(f, vx) X(f, vy) X(f, vz) \
    X(f, dvx) X(f, dvy) X(f, dvz) X(f, radius) X(f, inv_mass) X(f, hp) X(f, max_hp) X(f, amount)    \
    XA(f, cargo, SP_RESOURCE_COUNT) X(u32, wcd) X(u32, mcd) X(u32, ttl) X(u32, rest) X(u64, source)

#define SP__CTYPE_u8 uint8_t
#define SP__CTYPE_i8 int8_t
#define SP__CTYPE_u32 uint32_t
#define SP__CTYPE_i32 int32_t
#define SP__CTYPE_u64 uint64_t
#define SP__CTYPE_f float

/* Internal helpers shared with save.c. */
int sp__world_alloc(const sp_world_def_t *def, const sp_allocator_t *alloc, int grid_threads,
                    sp_world_t **out);
int sp__world_reserve(sp_world_t *w, uint32_t slots);
int sp__world_rebuild_static(sp_world_t *w, int promote);
int sp__world_def_check(const sp_world_def_t *d);

SP_INLINE int sp__alive(const sp_world_t *w, sp_entity_id_t id) {
    uint32_t i = sp_id_index(id);
    return id != 0 && i < w->nslots && w->kind[i] != SP_KIND_NONE && w->gen[i] == sp_id_generation(id);
}

#endif /* SP_SIM_WORLD_INT_H */
