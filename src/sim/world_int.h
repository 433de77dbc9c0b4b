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
    uint32_t count_kind[4];
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
