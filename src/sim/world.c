/* world.c: entities, commands and the fixed step. See world.h for contracts.
 *
 * Layout: structure-of-arrays indexed by slot; a LIFO free list of slots;
 * ids are minted from a counter (never reused) and found through an id ->
 * slot hash map, so a stale id finds nothing.
 *
 * Step (all allocation happens before the first write, so SP_ENOMEM leaves the
 * world as it was):
 *   gather   awake entities (ships, awake asteroids, then projectiles) into
 *            scratch SoA arrays in slot order, with their steered/damped
 *            velocities, from the kept awake set (never a pass over all
 *            slots);
 *   predict  sp_f32_integrate3 over the gathered arrays; reflect at walls;
 *   pairs    sp_grid over the gathered collidables (awake-vs-awake, ordered by
 *            (a, b)), then each collidable against the static grid of sleeping
 *            asteroids (awake-vs-sleeping, sorted by sleeper slot per body),
 *            through each body's cache of the sleepers near it (sg_near).
 *            Sleeping-vs-sleeping pairs are never tested: ~95% of a demo world
 *            sleeps, so the per-tick cost is O(awake), not O(all);
 *   commit   write back, cooldowns, tracer expiry, contacts in list order
 *            (wake sleepers, impulse, positional correction, collision damage),
 *            destruction, rest counters; maybe put a batch of resting
 *            asteroids to sleep (inserted one by one into the kept grid).
 * Every loop runs in a fixed order that depends only on the state, so the
 * world is deterministic whatever the grid's thread count. */
#include <math.h>
#include <string.h>

#include "sim/handoff.h"
#include "sim/world_int.h"
#include "spacesim/simd.h"

/* ---------------------------------------------------------------- names */

const char *sp_entity_kind_name(int kind) {
    switch (kind) {
#define SP__KIND_NAME(suffix, value, name) \
    case value:                            \
        return name;
        SP_ENTITY_KIND_MAP(SP__KIND_NAME)
#undef SP__KIND_NAME
    default:
        return NULL;
    }
}

const char *sp_resource_name(int resource) {
    switch (resource) {
#define SP__RES_NAME(suffix, value, name) \
    case value:                           \
        return name;
        SP_RESOURCE_MAP(SP__RES_NAME)
#undef SP__RES_NAME
    default:
        return NULL;
    }
}

int sp_resource_parse(const char *name, size_t len) {
    if (name == NULL) return SP_EINVAL;
#define SP__RES_PARSE(suffix, value, str) \
    if (len == sizeof(str) - 1 && memcmp(name, str, len) == 0) return value;
    SP_RESOURCE_MAP(SP__RES_PARSE)
#undef SP__RES_PARSE
    return SP_ENOENT;
}

const char *sp_world_event_name(int type) {
    switch (type) {
#define SP__EV_NAME(suffix, value, name) \
    case value:                          \
        return name;
        SP_WORLD_EVENT_MAP(SP__EV_NAME)
#undef SP__EV_NAME
    default:
        return NULL;
    }
}

/* ---------------------------------------------------------------- def */

sp_world_def_t sp_world_def_default(void) {
    sp_world_def_t d;
    memset(&d, 0, sizeof d);
    d.seed = 0x5eed5eedULL;
    d.half_extent = 2000.0f;
    d.dt = 1.0f / 60.0f;
    d.max_entities = 1u << 20;
    d.ship_radius = 2.0f;
    d.ship_mass = 10.0f;
    d.ship_hp = 100.0f;
    d.ship_max_speed = 60.0f;
    d.ship_max_accel = 40.0f;
    d.weapon_range = 150.0f;
    d.weapon_damage = 10.0f;
    d.weapon_cooldown_ticks = 30;
    d.mining_range = 20.0f;
    d.mining_amount = 5.0f;
    d.mining_cooldown_ticks = 15;
    d.asteroid_radius_min = 3.0f;
    d.asteroid_radius_max = 12.0f;
    d.asteroid_amount_min = 50.0f;
    d.asteroid_amount_max = 400.0f;
    d.asteroid_density = 1.0f;
    d.asteroid_hp_per_radius = 20.0f;
    d.asteroid_damping = 0.5f;
    d.sleep_speed = 0.05f;
    d.sleep_ticks = 30;
    d.restitution = 0.4f;
    d.collision_damage = 0.5f;
    d.collision_damage_threshold = 10.0f;
    d.projectile_speed = 400.0f;
    d.projectile_ttl_ticks = 20;
    d.spawn_projectiles = 1;
    d.id_node = 0;
    d.grid_threads = 1;
    d.allocator = NULL;
    return d;
}

static int fpos(float x) { return isfinite(x) && x > 0.0f; }
static int fnonneg(float x) { return isfinite(x) && x >= 0.0f; }

int sp__world_def_check(const sp_world_def_t *d) {
    if (!fpos(d->half_extent) || d->half_extent > 1e7f) return SP_EINVAL;
    if (!fpos(d->dt) || d->dt > 1.0f) return SP_EINVAL;
    if (d->max_entities == 0 || d->max_entities > (1u << 31)) return SP_EINVAL;
    if (!fpos(d->ship_radius) || !fpos(d->ship_mass) || !fpos(d->ship_hp)) return SP_EINVAL;
    if (!fnonneg(d->ship_max_speed) || !fnonneg(d->ship_max_accel)) return SP_EINVAL;
    if (!fnonneg(d->weapon_range) || !fnonneg(d->weapon_damage)) return SP_EINVAL;
    if (!fnonneg(d->mining_range) || !fnonneg(d->mining_amount)) return SP_EINVAL;
    if (!fpos(d->asteroid_radius_min) || !fpos(d->asteroid_radius_max) ||
        d->asteroid_radius_min > d->asteroid_radius_max || d->asteroid_radius_max > 4000.0f)
        return SP_EINVAL;
    if (!fpos(d->asteroid_amount_min) || !fpos(d->asteroid_amount_max) ||
        d->asteroid_amount_min > d->asteroid_amount_max)
        return SP_EINVAL;
    if (!fpos(d->asteroid_density) || !fpos(d->asteroid_hp_per_radius)) return SP_EINVAL;
    if (!fnonneg(d->asteroid_damping) || !fnonneg(d->sleep_speed)) return SP_EINVAL;
    if (!fnonneg(d->restitution) || d->restitution > 1.0f) return SP_EINVAL;
    if (!fnonneg(d->collision_damage) || !fnonneg(d->collision_damage_threshold)) return SP_EINVAL;
    if (!fnonneg(d->projectile_speed)) return SP_EINVAL;
    if (d->grid_threads < 1 || d->grid_threads > SP_GRID_MAX_THREADS) return SP_EINVAL;
    if (d->id_node >= SP_WORLD_MAX_NODES) return SP_EINVAL;
    if (d->spawn_projectiles != 0 && d->spawn_projectiles != 1) return SP_EINVAL;
    return 0;
}

/* ---------------------------------------------------------------- memory */

static void *xalloc(const sp_allocator_t *a, size_t n) { return a->alloc(a->ctx, n ? n : 1, 64); }
static void xfree(const sp_allocator_t *a, void *p, size_t n) {
    if (p != NULL) a->free(a->ctx, p, n ? n : 1, 64);
}

/* Every per-slot array: X(field, element type, elements per slot). */
#define SP__SLOT_FIELDS(X)                                                                 \
    X(id, uint64_t, 1) X(epoch, uint64_t, 1) X(owner, uint32_t, 1) X(free_list, uint32_t, 1) X(kind, uint8_t, 1) \
    X(flags, uint8_t, 1) X(resource, int8_t, 1) X(px, float, 1) X(py, float, 1)            \
    X(pz, float, 1) X(vx, float, 1) X(vy, float, 1) X(vz, float, 1) X(dvx, float, 1)       \
    X(dvy, float, 1) X(dvz, float, 1) X(radius, float, 1) X(inv_mass, float, 1)            \
    X(hp, float, 1) X(max_hp, float, 1) X(amount, float, 1) X(cargo, float, SP_RESOURCE_COUNT) \
    X(wcd, uint32_t, 1) X(mcd, uint32_t, 1) X(ttl, uint32_t, 1) X(rest, uint32_t, 1)       \
    X(source, uint64_t, 1) X(awake_ast, uint32_t, 1) X(gidx, uint32_t, 1) X(tmp_a, uint32_t, 1) X(tmp_b, uint32_t, 1) \
    X(tmp_k, uint64_t, 2) X(aw, uint32_t, 1) X(aw2, uint32_t, 1) X(awp, uint32_t, 1) X(sgcell, uint32_t, 1) \
    X(inaw, uint8_t, 1) X(sqx, float, 1) X(sqy, float, 1) X(sqz, float, 1) X(sqe, uint32_t, 1) \
    X(sqc, uint32_t, SP__SQ_MAX) X(sqn, uint8_t, 1)                                          \
    X(gx, float, 1) X(gy, float, 1) X(gz, float, 1) X(gvx, float, 1) X(gvy, float, 1)      \
    X(gvz, float, 1) X(gr, float, 1)

#define SP__COUNT_FIELD(f, t, k) +1
enum { NFIELDS = 0 SP__SLOT_FIELDS(SP__COUNT_FIELD) };

static void field_table(sp_world_t *w, void ***ptrs, size_t *sizes) {
    int i = 0;
#define SP__FIELD_ENTRY(f, t, k) \
    ptrs[i] = (void **)&w->f;    \
    sizes[i] = sizeof(t) * (k);  \
    i++;
    SP__SLOT_FIELDS(SP__FIELD_ENTRY)
#undef SP__FIELD_ENTRY
}

/* Grow the slot arrays to hold at least `slots` (<= max_entities). All new
 * arrays are allocated before any old one is released: on SP_ENOMEM the world
 * is unchanged. */
int sp__world_reserve(sp_world_t *w, uint32_t slots) {
    if (slots <= w->cap) return 0;
    if (slots > w->def.max_entities) return SP_ELIMIT;
    uint64_t nc = (uint64_t)w->cap * 2;
    if (nc < 1024) nc = 1024;
    if (nc < slots) nc = slots;
    if (nc > w->def.max_entities) nc = w->def.max_entities;
    void **ptrs[NFIELDS];
    size_t sizes[NFIELDS];
    void *fresh[NFIELDS];
    field_table(w, ptrs, sizes);
    for (int i = 0; i < NFIELDS; i++) {
        size_t bytes;
        if (sp_size_mul(sizes[i], (size_t)nc, &bytes) != 0) bytes = SIZE_MAX;
        fresh[i] = bytes == SIZE_MAX ? NULL : xalloc(w->alloc, bytes);
        if (fresh[i] == NULL) {
            for (int j = 0; j < i; j++) xfree(w->alloc, fresh[j], sizes[j] * (size_t)nc);
            return SP_ENOMEM;
        }
        memset(fresh[i], 0, bytes);
    }
    for (int i = 0; i < NFIELDS; i++) {
        if (*ptrs[i] != NULL) {
            memcpy(fresh[i], *ptrs[i], sizes[i] * w->cap);
            xfree(w->alloc, *ptrs[i], sizes[i] * w->cap);
        }
        *ptrs[i] = fresh[i];
    }
    w->cap = (uint32_t)nc;
    return 0;
}

static int vec_grow(const sp_allocator_t *a, void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem) return SP_EOVERFLOW;
        nc *= 2;
    }
    void *q = xalloc(a, nc * elem);
    if (q == NULL) return SP_ENOMEM;
    if (*p != NULL) {
        memcpy(q, *p, *cap * elem);
        xfree(a, *p, *cap * elem);
    }
    *p = q;
    *cap = nc;
    return 0;
}

static int ev_reserve(sp_world_t *w, sp__evbuf_t *b, size_t extra) {
    size_t need;
    if (sp_size_add(b->n, extra, &need) != 0) return SP_EOVERFLOW;
    return vec_grow(w->alloc, (void **)&b->v, &b->cap, need, sizeof(sp_world_event_t));
}

/* Caller reserved room. The subject is the live entity in slot i. */
static sp_world_event_t *ev_push(sp_world_t *w, sp__evbuf_t *b, int type, uint32_t i,
                                 sp_entity_id_t other) {
    sp_world_event_t *e = &b->v[b->n++];
    memset(e, 0, sizeof *e);
    e->tick = w->tick;
    e->type = (uint8_t)type;
    e->subject = w->id[i];
    e->other = other;
    e->resource = -1;
    e->kind = w->kind[i];
    e->owner = w->owner[i];
    e->pos[0] = w->px[i], e->pos[1] = w->py[i], e->pos[2] = w->pz[i];
    uint32_t o;
    if (sp__slot_of(w, other, &o)) e->other_owner = w->owner[o];
    return e;
}

int sp__world_alloc(const sp_world_def_t *def, const sp_allocator_t *alloc, int grid_threads,
                    sp_world_t **out) {
    const sp_allocator_t *user_alloc = alloc;
    if (alloc == NULL) alloc = sp_allocator_default();
    sp_world_t *w = alloc->alloc(alloc->ctx, sizeof *w, 64);
    if (w == NULL) return SP_ENOMEM;
    memset(w, 0, sizeof *w);
    w->def = *def;
    w->def.allocator = user_alloc;
    w->def.grid_threads = grid_threads;
    w->alloc = alloc;
    w->rng = def->seed;
    w->sleep_enabled = 1;
    w->next_id = ((uint64_t)def->id_node << SP_WORLD_ID_COUNTER_BITS) | 1;
    w->id_end = (uint64_t)(def->id_node + 1) << SP_WORLD_ID_COUNTER_BITS;
    sp_grid_def_t gd = sp_grid_def_default();
    gd.nthreads = grid_threads;
    gd.allocator = alloc;
    int rc = sp_grid_create(&gd, &w->grid);
    if (rc != 0) {
        alloc->free(alloc->ctx, w, sizeof *w, 64);
        return rc;
    }
    sp_arena_init(&w->scratch, 0, alloc);
    *out = w;
    return 0;
}

int sp_world_create(const sp_world_def_t *def, sp_world_t **out) {
    sp_world_def_t d = def ? *def : sp_world_def_default();
    if (out == NULL || sp__world_def_check(&d) != 0) return SP_EINVAL;
    return sp__world_alloc(&d, d.allocator, d.grid_threads, out);
}

void sp_world_free(sp_world_t *w) {
    if (w == NULL) return;
    const sp_allocator_t *a = w->alloc;
    void **ptrs[NFIELDS];
    size_t sizes[NFIELDS];
    field_table(w, ptrs, sizes);
    for (int i = 0; i < NFIELDS; i++) xfree(a, *ptrs[i], sizes[i] * w->cap);
    xfree(a, w->contacts, w->contacts_cap * 2 * sizeof(uint32_t));
    xfree(a, w->ev_pending.v, w->ev_pending.cap * sizeof(sp_world_event_t));
    xfree(a, w->ev_out.v, w->ev_out.cap * sizeof(sp_world_event_t));
    xfree(a, w->sg.head, w->sg.head_cap * sizeof(uint32_t));
    xfree(a, w->sg.ch, (size_t)w->sg.ch_cap * sizeof(sp__schunk_t));
    xfree(a, w->sg.coarse, (size_t)SP__SG_COARSE * SP__SG_COARSE * SP__SG_COARSE * sizeof(uint32_t));
    xfree(a, w->jn, (size_t)w->jcap * sizeof(uint32_t));
    xfree(a, w->injn, w->jcap);
    xfree(a, w->jdead, (size_t)w->jdead_cap * sizeof(uint64_t));
    sp__map_destroy(a, &w->ids);
    sp__map_destroy(a, &w->departed);
    sp_grid_free(w->grid);
    sp_arena_destroy(&w->scratch);
    a->free(a->ctx, w, sizeof *w, 64);
}

const sp_world_def_t *sp_world_def(const sp_world_t *w) { return &w->def; }
uint64_t sp_world_tick(const sp_world_t *w) { return w->tick; }
void sp_world_set_tick(sp_world_t *w, uint64_t tick) { w->tick = tick; }
uint32_t sp_world_count(const sp_world_t *w) { return w->count; }
uint32_t sp_world_count_kind(const sp_world_t *w, int kind) {
    return sp_kind_valid(kind) ? w->count_kind[kind] : 0;
}
uint32_t sp_world_count_sleeping(const sp_world_t *w) { return w->nsleeping; }
uint32_t sp_world_count_npc(const sp_world_t *w) { return w->count_npc; }

/* ---------------------------------------------------------------- rng */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t rng_next(sp_world_t *w) {
    w->rng += 0x9e3779b97f4a7c15ULL;
    return mix64(w->rng);
}
/* Uniform in [0, 1) with 24 random bits: exact in float. */
static float rng_f01(sp_world_t *w) { return (float)(rng_next(w) >> 40) * (1.0f / 16777216.0f); }
static float rng_range(sp_world_t *w, float lo, float hi) { return lo + (hi - lo) * rng_f01(w); }

/* ---------------------------------------------------------------- slots */

static sp_entity_id_t id_of(const sp_world_t *w, uint32_t i) { return w->id[i]; }

/* ---------------------------------------------------------------- id map */

static uint64_t mix64(uint64_t z);

/* The entry a key's probe starts at (linear probing from there). */
static uint32_t map_home(uint64_t key, uint32_t mask) { return (uint32_t)mix64(key) & mask; }

sp__mapent_t *sp__map_find(const sp__map_t *m, uint64_t key) {
    if (m->e == NULL || key == 0) return NULL;
    for (uint32_t h = map_home(key, m->mask);; h = (h + 1) & m->mask) {
        sp__mapent_t *e = &m->e[h];
        if (e->key == key) return e;
        if (e->key == 0) return NULL; /* at most half full: an empty entry exists */
    }
}

static void map_put(sp__mapent_t *e, uint32_t mask, uint64_t key, uint64_t val) {
    uint32_t h = map_home(key, mask);
    while (e[h].key != 0) h = (h + 1) & mask;
    e[h].key = key;
    e[h].val = val;
}

int sp__map_reserve(const sp_allocator_t *a, sp__map_t *m, uint32_t extra) {
    uint64_t need = (uint64_t)m->n + extra, cap = m->e ? (uint64_t)m->mask + 1 : 0;
    if (need * 2 <= cap) return 0;
    uint64_t nc = cap ? cap : 64;
    while (nc < need * 2) nc *= 2;
    if (nc > (1ull << 32) || nc > SIZE_MAX / sizeof(sp__mapent_t)) return SP_EOVERFLOW;
    sp__mapent_t *e = xalloc(a, (size_t)nc * sizeof *e);
    if (e == NULL) return SP_ENOMEM;
    memset(e, 0, (size_t)nc * sizeof *e);
    /* Re-insert in old layout order: a function of the old layout, so of
     * the history, like everything else in the map. */
    for (uint64_t k = 0; k < cap; k++)
        if (m->e[k].key != 0) map_put(e, (uint32_t)(nc - 1), m->e[k].key, m->e[k].val);
    xfree(a, m->e, (size_t)cap * sizeof *e);
    m->e = e;
    m->mask = (uint32_t)(nc - 1);
    return 0;
}

void sp__map_insert(sp__map_t *m, uint64_t key, uint64_t val) {
    SP_ASSERT(key != 0 && m->e != NULL && ((uint64_t)m->n + 1) * 2 <= (uint64_t)m->mask + 1);
    SP_ASSERT(sp__map_find(m, key) == NULL);
    map_put(m->e, m->mask, key, val);
    m->n++;
}

/* Backward-shift deletion (Knuth 6.4 algorithm R): entries after the hole
 * that may move into it do, so no probe sequence is ever broken. */
void sp__map_erase(sp__map_t *m, uint64_t key) {
    sp__mapent_t *e = sp__map_find(m, key);
    if (e == NULL) return;
    uint32_t hole = (uint32_t)(e - m->e), j = hole;
    for (;;) {
        j = (j + 1) & m->mask;
        if (m->e[j].key == 0) break;
        uint32_t home = map_home(m->e[j].key, m->mask);
        /* Movable unless home lies cyclically in (hole, j]. */
        if (((j - home) & m->mask) >= ((j - hole) & m->mask)) {
            m->e[hole] = m->e[j];
            hole = j;
        }
    }
    m->e[hole].key = 0;
    m->e[hole].val = 0;
    m->n--;
}

void sp__map_destroy(const sp_allocator_t *a, sp__map_t *m) {
    if (m->e != NULL) xfree(a, m->e, ((size_t)m->mask + 1) * sizeof(sp__mapent_t));
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- slots */

/* Take a free slot (LIFO) or a fresh one; all its fields zeroed. The id map
 * has room for one more id afterwards. mint: a fresh id will be needed
 * (SP_ELIMIT when the node's id space is used up). */
static int slot_alloc_for(sp_world_t *w, int mint, uint32_t *out) {
    uint32_t i;
    if (mint && w->next_id >= w->id_end) return SP_ELIMIT;
    if (w->nfree == 0 && w->nslots >= w->def.max_entities) return SP_ELIMIT;
    int rc = sp__map_reserve(w->alloc, &w->ids, 1);
    if (rc != 0) return rc;
    if (w->nfree > 0) {
        i = w->free_list[--w->nfree];
    } else {
        rc = sp__world_reserve(w, w->nslots + 1);
        if (rc != 0) return rc;
        i = w->nslots++;
    }
    w->id[i] = 0;
    w->epoch[i] = 0;
    w->owner[i] = 0;
    w->kind[i] = SP_KIND_NONE;
    w->flags[i] = 0;
    w->resource[i] = -1;
    w->px[i] = w->py[i] = w->pz[i] = 0.0f;
    w->vx[i] = w->vy[i] = w->vz[i] = 0.0f;
    w->dvx[i] = w->dvy[i] = w->dvz[i] = 0.0f;
    w->radius[i] = w->inv_mass[i] = w->hp[i] = w->max_hp[i] = w->amount[i] = 0.0f;
    for (int r = 0; r < SP_RESOURCE_COUNT; r++) w->cargo[(size_t)i * SP_RESOURCE_COUNT + r] = 0.0f;
    w->wcd[i] = w->mcd[i] = w->ttl[i] = w->rest[i] = 0;
    w->source[i] = 0;
    w->sqe[i] = 0; /* a new body: no sleeper cache */
    *out = i;
    return 0;
}

static int slot_alloc(sp_world_t *w, uint32_t *out) { return slot_alloc_for(w, 1, out); }

/* Make slot i live as entity `id` (0: mint a fresh one). */
static void slot_commit_id(sp_world_t *w, uint32_t i, int kind, sp_entity_id_t id) {
    if (id == 0) id = w->next_id++;
    w->id[i] = id;
    sp__map_insert(&w->ids, id, i);
    w->kind[i] = (uint8_t)kind;
    if (kind == SP_KIND_SHIP && (w->flags[i] & SP_ENT_NPC)) w->count_npc++;
    if (kind == SP_KIND_ASTEROID) w->awake_dirty = 1;
    if (!(w->flags[i] & SP_ENT_SLEEPING)) sp__world_awake_add(w, i);
    else sp__world_jmark(w, i); /* born asleep (an import): not in the awake set */
    w->count++;
    w->count_kind[kind]++;
}

static void slot_commit(sp_world_t *w, uint32_t i, int kind) { slot_commit_id(w, i, kind, 0); }

static void sg_remove(sp_world_t *w, uint32_t i);

/* The journal (world_int.h): id died. */
static void jdead_push(sp_world_t *w, uint64_t id) {
    if (!w->jon || !w->jvalid) return;
    if (w->njdead == w->jdead_cap) {
        w->jvalid = 0; /* more deaths than the journal holds: the next capture is full */
        return;
    }
    w->jdead[w->njdead++] = id;
}

static void slot_free(sp_world_t *w, uint32_t i) {
    jdead_push(w, w->id[i]);
    if (w->flags[i] & SP_ENT_SLEEPING) {
        sg_remove(w, i);
        w->nsleeping--;
        w->stale++;
    }
    if (w->kind[i] == SP_KIND_ASTEROID) w->awake_dirty = 1;
    if (w->kind[i] == SP_KIND_SHIP && (w->flags[i] & SP_ENT_NPC)) w->count_npc--;
    w->count--;
    w->count_kind[w->kind[i]]--;
    w->kind[i] = SP_KIND_NONE;
    w->flags[i] = 0;
    w->vx[i] = w->vy[i] = w->vz[i] = 0.0f;
    sp__map_erase(&w->ids, w->id[i]);
    w->id[i] = 0;
    w->epoch[i] = 0;
    w->free_list[w->nfree++] = i;
}

static float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

static void place(sp_world_t *w, uint32_t i, const float *pos, float r) {
    float h = w->def.half_extent, lim = h > r ? h - r : 0.0f;
    if (pos != NULL) {
        w->px[i] = clampf(pos[0], -lim, lim);
        w->py[i] = clampf(pos[1], -lim, lim);
        w->pz[i] = clampf(pos[2], -lim, lim);
    } else {
        w->px[i] = rng_range(w, -lim, lim);
        w->py[i] = rng_range(w, -lim, lim);
        w->pz[i] = rng_range(w, -lim, lim);
    }
}

static int vec3_ok(const float *v) {
    return v != NULL && isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]);
}

int sp_world_spawn_ship(sp_world_t *w, uint32_t owner, uint8_t role, const float *pos,
                        sp_entity_id_t *out_id) {
    if (w == NULL || out_id == NULL || (pos != NULL && !vec3_ok(pos))) return SP_EINVAL;
    if (role != 0 && role != SP_ENT_MINER && role != SP_ENT_FIGHTER) return SP_EINVAL;
    uint32_t i;
    int rc = slot_alloc(w, &i);
    if (rc != 0) return rc;
    const sp_world_def_t *d = &w->def;
    w->owner[i] = owner;
    w->flags[i] = owner == 0 ? (uint8_t)(SP_ENT_NPC | role) : 0;
    w->radius[i] = d->ship_radius;
    w->inv_mass[i] = 1.0f / d->ship_mass;
    w->hp[i] = w->max_hp[i] = d->ship_hp;
    place(w, i, pos, d->ship_radius);
    slot_commit(w, i, SP_KIND_SHIP);
    *out_id = id_of(w, i);
    return 0;
}

int sp_world_spawn_asteroid(sp_world_t *w, const float *pos, float r, float amount, int resource,
                            sp_entity_id_t *out_id) {
    if (w == NULL || out_id == NULL || (pos != NULL && !vec3_ok(pos))) return SP_EINVAL;
    if (!isfinite(r) || !isfinite(amount) || resource < -1 || resource >= SP_RESOURCE_COUNT)
        return SP_EINVAL;
    const sp_world_def_t *d = &w->def;
    if (r > d->asteroid_radius_max) return SP_EINVAL; /* keeps the static grid's rmax bounded */
    uint32_t i;
    int rc = slot_alloc(w, &i);
    if (rc != 0) return rc;
    /* Random draws in a fixed order (radius, amount, resource, position). */
    if (r <= 0.0f) r = rng_range(w, d->asteroid_radius_min, d->asteroid_radius_max);
    if (amount <= 0.0f) amount = rng_range(w, d->asteroid_amount_min, d->asteroid_amount_max);
    if (resource < 0) resource = (int)(rng_next(w) % SP_RESOURCE_COUNT);
    w->radius[i] = r;
    w->inv_mass[i] = 1.0f / (d->asteroid_density * r * r * r);
    w->hp[i] = w->max_hp[i] = d->asteroid_hp_per_radius * r;
    w->amount[i] = amount;
    w->resource[i] = (int8_t)resource;
    place(w, i, pos, r);
    slot_commit(w, i, SP_KIND_ASTEROID);
    *out_id = id_of(w, i);
    return 0;
}

int sp_world_set_desired_velocity(sp_world_t *w, sp_entity_id_t ship, const float v[3],
                                  float clamped_out[3]) {
    if (w == NULL || !vec3_ok(v)) return SP_EINVAL;
    uint32_t i;
    if (!sp__slot_of(w, ship, &i)) return SP_ENOENT;
    if (w->kind[i] != SP_KIND_SHIP) return SP_EINVAL;
    float x = v[0], y = v[1], z = v[2];
    /* In double: the squared length of finite floats cannot overflow. */
    double l2 = (double)x * x + (double)y * y + (double)z * z;
    double m = w->def.ship_max_speed;
    if (l2 > m * m) {
        double s = m / sqrt(l2);
        x = (float)(x * s);
        y = (float)(y * s);
        z = (float)(z * s);
    }
    w->dvx[i] = x;
    w->dvy[i] = y;
    w->dvz[i] = z;
    if (clamped_out != NULL) {
        clamped_out[0] = x;
        clamped_out[1] = y;
        clamped_out[2] = z;
    }
    return 0;
}

static void wake(sp_world_t *w, uint32_t i);

int sp_world_set_velocity(sp_world_t *w, sp_entity_id_t id, const float v[3]) {
    if (w == NULL || !vec3_ok(v)) return SP_EINVAL;
    for (int k = 0; k < 3; k++)
        if (fabsf(v[k]) > SP_WORLD_MAX_VELOCITY) return SP_EINVAL;
    uint32_t i;
    if (!sp__slot_of(w, id, &i)) return SP_ENOENT;
    if (w->kind[i] == SP_KIND_ASTEROID) wake(w, i);
    w->vx[i] = v[0];
    w->vy[i] = v[1];
    w->vz[i] = v[2];
    return 0;
}

static void destroy_now(sp_world_t *w, uint32_t i, int cause, sp_entity_id_t by, sp__evbuf_t *ev) {
    sp_world_event_t *e = ev_push(w, ev, SP_EV_ENTITY_DESTROYED, i, by);
    e->cause = (uint8_t)cause;
    slot_free(w, i);
}

/* Deterministic hit roll: independent of the order of commands in a tick. */
static float hit_roll(const sp_world_t *w, sp_entity_id_t a, sp_entity_id_t b) {
    uint64_t h = mix64(w->def.seed ^ mix64(w->tick + 0x1234567ULL) ^ mix64(a * 0x9e3779b97f4a7c15ULL) ^
                       (b * 0xc2b2ae3d27d4eb4fULL));
    return (float)(h >> 40) * (1.0f / 16777216.0f);
}

int sp_world_fire(sp_world_t *w, sp_entity_id_t shooter, sp_entity_id_t target,
                  sp_fire_result_t *out) {
    if (w == NULL || out == NULL) return SP_EINVAL;
    uint32_t s, t;
    if (!sp__slot_of(w, shooter, &s)) return SP_ENOENT;
    if (w->kind[s] != SP_KIND_SHIP) return SP_EINVAL;
    if (!sp__slot_of(w, target, &t)) return SP_ENOENT;
    if (t == s || (w->kind[t] != SP_KIND_SHIP && w->kind[t] != SP_KIND_ASTEROID)) return SP_EINVAL;
    if (w->wcd[s] > 0) return SP_EBUSY;
    double dx = (double)w->px[t] - w->px[s], dy = (double)w->py[t] - w->py[s],
           dz = (double)w->pz[t] - w->pz[s];
    double dist = sqrt(dx * dx + dy * dy + dz * dz);
    const sp_world_def_t *d = &w->def;
    if (dist > d->weapon_range) return SP_ERANGE;
    int rc = ev_reserve(w, &w->ev_pending, 2);
    if (rc != 0) return rc;
    /* Committed from here on: nothing below fails (the tracer is optional). */
    w->wcd[s] = d->weapon_cooldown_ticks;
    float p = d->weapon_range > 0 ? 1.0f - 0.5f * (float)(dist / d->weapon_range) : 1.0f;
    int hit = hit_roll(w, shooter, target) < p;
    float dmg = hit ? d->weapon_damage : 0.0f;
    sp_world_event_t *e = ev_push(w, &w->ev_pending, SP_EV_WEAPON_FIRED, s, target);
    e->value = dmg;
    e->hit = (uint8_t)hit;
    if (d->spawn_projectiles && dist > 0) {
        uint32_t k;
        if (slot_alloc(w, &k) == 0) {
            float ux = (float)(dx / dist), uy = (float)(dy / dist), uz = (float)(dz / dist);
            float off = w->radius[s] + 0.5f;
            w->px[k] = w->px[s] + ux * off;
            w->py[k] = w->py[s] + uy * off;
            w->pz[k] = w->pz[s] + uz * off;
            w->vx[k] = ux * d->projectile_speed;
            w->vy[k] = uy * d->projectile_speed;
            w->vz[k] = uz * d->projectile_speed;
            w->radius[k] = 0.5f;
            w->hp[k] = w->max_hp[k] = 1.0f;
            w->owner[k] = w->owner[s];
            w->source[k] = shooter;
            double steps = d->projectile_speed > 0 ? dist / (d->projectile_speed * d->dt) : 1.0;
            uint32_t ttl = d->projectile_ttl_ticks;
            if (steps < ttl) ttl = (uint32_t)steps + 1;
            w->ttl[k] = ttl ? ttl : 1;
            slot_commit(w, k, SP_KIND_PROJECTILE);
        }
    }
    int destroyed = 0;
    if (hit) {
        sp__world_jmark(w, t); /* the target may be a sleeping asteroid */
        w->hp[t] -= dmg;
        if (w->hp[t] <= 0.0f) {
            destroy_now(w, t, SP_CAUSE_WEAPON, shooter, &w->ev_pending);
            destroyed = 1;
        }
    }
    out->hit = hit;
    out->damage = dmg;
    out->destroyed = destroyed;
    return 0;
}

static int mine_checked(sp_world_t *w, uint32_t s, uint32_t a, sp_mine_result_t *out) {
    const sp_world_def_t *d = &w->def;
    if (w->mcd[s] > 0) return SP_EBUSY;
    double dx = (double)w->px[a] - w->px[s], dy = (double)w->py[a] - w->py[s],
           dz = (double)w->pz[a] - w->pz[s];
    double gap = sqrt(dx * dx + dy * dy + dz * dz) - w->radius[s] - w->radius[a];
    if (gap > d->mining_range) return SP_ERANGE;
    int rc = ev_reserve(w, &w->ev_pending, 2);
    if (rc != 0) return rc;
    float amt = d->mining_amount < w->amount[a] ? d->mining_amount : w->amount[a];
    int res = w->resource[a];
    sp__world_jmark(w, a); /* the asteroid may be asleep */
    w->amount[a] -= amt;
    w->cargo[(size_t)s * SP_RESOURCE_COUNT + (size_t)res] += amt;
    w->mcd[s] = d->mining_cooldown_ticks;
    sp_world_event_t *e = ev_push(w, &w->ev_pending, SP_EV_RESOURCE_MINED, s, id_of(w, a));
    e->value = amt;
    e->resource = (int8_t)res;
    int depleted = 0;
    if (w->amount[a] <= 0.0f) {
        destroy_now(w, a, SP_CAUSE_DEPLETED, id_of(w, s), &w->ev_pending);
        depleted = 1;
    }
    out->resource_type = res;
    out->amount = amt;
    out->depleted = depleted;
    return 0;
}

int sp_world_mine(sp_world_t *w, sp_entity_id_t ship, sp_entity_id_t asteroid,
                  sp_mine_result_t *out) {
    if (w == NULL || out == NULL) return SP_EINVAL;
    uint32_t s;
    if (!sp__slot_of(w, ship, &s)) return SP_ENOENT;
    if (w->kind[s] != SP_KIND_SHIP) return SP_EINVAL;
    uint32_t a;
    if (!sp__slot_of(w, asteroid, &a)) return SP_ENOENT;
    if (w->kind[a] != SP_KIND_ASTEROID) return SP_EINVAL;
    return mine_checked(w, s, a, out);
}

/* ---------------------------------------------------------------- across a border
 * (sim/handoff.h): the shooter's or miner's half here, the target's half in
 * the world that holds it. */

int sp_world_fire_remote(sp_world_t *w, sp_entity_id_t shooter, const sp_remote_target_t *t, sp_fire_result_t *out) {
    if (w == NULL || t == NULL || out == NULL) return SP_EINVAL;
    uint32_t s;
    if (!sp__slot_of(w, shooter, &s)) return SP_ENOENT;
    if (w->kind[s] != SP_KIND_SHIP) return SP_EINVAL;
    if (t->id == shooter || (t->kind != SP_KIND_SHIP && t->kind != SP_KIND_ASTEROID)) return SP_EINVAL;
    if (!isfinite(t->pos[0]) || !isfinite(t->pos[1]) || !isfinite(t->pos[2])) return SP_EINVAL;
    if (w->wcd[s] > 0) return SP_EBUSY;
    double dx = (double)t->pos[0] - w->px[s], dy = (double)t->pos[1] - w->py[s], dz = (double)t->pos[2] - w->pz[s];
    double dist = sqrt(dx * dx + dy * dy + dz * dz);
    const sp_world_def_t *d = &w->def;
    if (dist > d->weapon_range) return SP_ERANGE;
    int rc = ev_reserve(w, &w->ev_pending, 1);
    if (rc != 0) return rc;
    w->wcd[s] = d->weapon_cooldown_ticks;
    /* The same chance and roll as sp_world_fire (a function of the seed,
     * the tick and the two ids), so a shot across a border is the shot the
     * one-process world would fire. */
    float p = d->weapon_range > 0 ? 1.0f - 0.5f * (float)(dist / d->weapon_range) : 1.0f;
    int hit = hit_roll(w, shooter, t->id) < p;
    float dmg = hit ? d->weapon_damage : 0.0f;
    sp_world_event_t *e = ev_push(w, &w->ev_pending, SP_EV_WEAPON_FIRED, s, t->id);
    e->value = dmg;
    e->hit = (uint8_t)hit;
    e->other_owner = t->owner;
    out->hit = hit;
    out->damage = dmg;
    out->destroyed = 0; /* the target's world decides (sp_world_damage) */
    return 0;
}

int sp_world_damage(sp_world_t *w, sp_entity_id_t id, float dmg, sp_entity_id_t by, int *destroyed) {
    if (w == NULL || !(dmg >= 0.0f) || !isfinite(dmg)) return SP_EINVAL;
    if (destroyed) *destroyed = 0;
    uint32_t t;
    if (!sp__slot_of(w, id, &t)) return SP_ENOENT;
    if (w->kind[t] != SP_KIND_SHIP && w->kind[t] != SP_KIND_ASTEROID) return SP_EINVAL;
    int rc = ev_reserve(w, &w->ev_pending, 1);
    if (rc != 0) return rc;
    sp__world_jmark(w, t); /* the target may be a sleeping asteroid */
    w->hp[t] -= dmg;
    if (w->hp[t] <= 0.0f) {
        destroy_now(w, t, SP_CAUSE_WEAPON, by, &w->ev_pending);
        if (destroyed) *destroyed = 1;
    }
    return 0;
}

int sp_world_mine_remote(sp_world_t *w, sp_entity_id_t ship, const sp_remote_target_t *t, sp_mine_result_t *out) {
    if (w == NULL || t == NULL || out == NULL) return SP_EINVAL;
    uint32_t s;
    if (!sp__slot_of(w, ship, &s)) return SP_ENOENT;
    if (w->kind[s] != SP_KIND_SHIP) return SP_EINVAL;
    if (t->kind != SP_KIND_ASTEROID || t->resource < 0 || t->resource >= SP_RESOURCE_COUNT) return SP_EINVAL;
    if (!isfinite(t->pos[0]) || !isfinite(t->pos[1]) || !isfinite(t->pos[2]) || !(t->radius >= 0.0f) ||
        !(t->amount >= 0.0f))
        return SP_EINVAL;
    const sp_world_def_t *d = &w->def;
    if (w->mcd[s] > 0) return SP_EBUSY;
    double dx = (double)t->pos[0] - w->px[s], dy = (double)t->pos[1] - w->py[s], dz = (double)t->pos[2] - w->pz[s];
    double gap = sqrt(dx * dx + dy * dy + dz * dz) - w->radius[s] - t->radius;
    if (gap > d->mining_range) return SP_ERANGE;
    int rc = ev_reserve(w, &w->ev_pending, 1);
    if (rc != 0) return rc;
    float amt = d->mining_amount < t->amount ? d->mining_amount : t->amount;
    w->cargo[(size_t)s * SP_RESOURCE_COUNT + (size_t)t->resource] += amt;
    w->mcd[s] = d->mining_cooldown_ticks;
    sp_world_event_t *e = ev_push(w, &w->ev_pending, SP_EV_RESOURCE_MINED, s, t->id);
    e->value = amt;
    e->resource = t->resource;
    out->resource_type = t->resource;
    out->amount = amt;
    out->depleted = amt >= t->amount; /* as the ghost says; the asteroid's world removes it */
    return 0;
}

int sp_world_deplete(sp_world_t *w, sp_entity_id_t id, float amount, sp_entity_id_t by, float *taken) {
    if (w == NULL || !(amount >= 0.0f) || !isfinite(amount)) return SP_EINVAL;
    if (taken) *taken = 0.0f;
    uint32_t a;
    if (!sp__slot_of(w, id, &a)) return SP_ENOENT;
    if (w->kind[a] != SP_KIND_ASTEROID) return SP_EINVAL;
    int rc = ev_reserve(w, &w->ev_pending, 1);
    if (rc != 0) return rc;
    float amt = amount < w->amount[a] ? amount : w->amount[a];
    sp__world_jmark(w, a); /* the asteroid may be asleep */
    w->amount[a] -= amt;
    if (taken) *taken = amt;
    if (w->amount[a] <= 0.0f) destroy_now(w, a, SP_CAUSE_DEPLETED, by, &w->ev_pending);
    return 0;
}

/* A hash grid over the remote bodies, for sp_world_collide_remote: cell c
 * holds bodies head[c], next[...], ... (indices + 1, 0 ends a chain). */
static uint32_t rb_cell(float x, float y, float z, float inv, uint32_t mask) {
    int32_t ix = (int32_t)floorf(x * inv), iy = (int32_t)floorf(y * inv), iz = (int32_t)floorf(z * inv);
    uint64_t h = ((uint64_t)(uint32_t)ix * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)(uint32_t)iy * 0xc2b2ae3d27d4eb4full) ^
                 ((uint64_t)(uint32_t)iz * 0x165667b19e3779f9ull);
    return (uint32_t)(h >> 32) & mask;
}

int sp_world_collide_remote(sp_world_t *w, const sp_remote_body_t *b, size_t n) {
    if (w == NULL || (b == NULL && n > 0)) return SP_EINVAL;
    if (n == 0) return 0;
    const sp_world_def_t *d = &w->def;
    float rmax = 0.0f;
    for (size_t k = 0; k < n; k++)
        if (b[k].radius > rmax) rmax = b[k].radius;
    float lmax = 0.0f;
    for (uint32_t i = 0; i < w->nslots; i++)
        if ((w->kind[i] == SP_KIND_SHIP || w->kind[i] == SP_KIND_ASTEROID) && w->radius[i] > lmax) lmax = w->radius[i];
    /* Cells twice as wide as the widest contact reach: the sphere of that
     * reach around an entity then touches at most the 2 x 2 x 2 cells from
     * the one holding its low corner. */
    float reach = rmax + lmax, cell = 2.0f * reach;
    if (!(cell > 0.0f)) return 0;
    float inv = 1.0f / cell;
    uint32_t size = 16;
    while (size < 2 * n) size *= 2;
    size_t hb = (size_t)size * sizeof(uint32_t), nb = n * sizeof(uint32_t);
    uint32_t *head = w->alloc->alloc(w->alloc->ctx, hb, 64), *next = w->alloc->alloc(w->alloc->ctx, nb, 64);
    if (head == NULL || next == NULL) {
        if (head) w->alloc->free(w->alloc->ctx, head, hb, 64);
        if (next) w->alloc->free(w->alloc->ctx, next, nb, 64);
        return SP_ENOMEM;
    }
    memset(head, 0, hb);
    for (size_t k = 0; k < n; k++) {
        uint32_t c = rb_cell(b[k].pos[0], b[k].pos[1], b[k].pos[2], inv, size - 1);
        next[k] = head[c];
        head[c] = (uint32_t)k + 1;
    }
    int contacts = 0;
    for (uint32_t i = 0; i < w->nslots; i++) {
        uint8_t kind = w->kind[i];
        if (kind != SP_KIND_SHIP && kind != SP_KIND_ASTEROID) continue;
        float px = w->px[i] - reach, py = w->py[i] - reach, pz = w->pz[i] - reach;
        uint32_t seen[8];
        int nseen = 0;
        for (int dz = 0; dz <= 1; dz++)
            for (int dy = 0; dy <= 1; dy++)
                for (int dx = 0; dx <= 1; dx++) {
                    uint32_t c = rb_cell(px + (float)dx * cell, py + (float)dy * cell, pz + (float)dz * cell, inv, size - 1);
                    /* Two of the 8 cells may hash to one bucket: walk each bucket once. */
                    int dup = 0;
                    for (int k = 0; k < nseen; k++) dup |= seen[k] == c;
                    if (dup) continue;
                    seen[nseen++] = c;
                    for (uint32_t e = head[c]; e; e = next[e - 1]) {
                        const sp_remote_body_t *o = &b[e - 1];
                        if (o->id == id_of(w, i) || w->kind[i] == SP_KIND_NONE) continue;
                        float ox = o->pos[0] - w->px[i], oy = o->pos[1] - w->py[i], oz = o->pos[2] - w->pz[i];
                        float d2 = ox * ox + oy * oy + oz * oz, rs = w->radius[i] + o->radius;
                        if (!(d2 < rs * rs)) continue;
                        /* (a hashed cell shared by far cells: the distance decides) */
                        float ia = w->inv_mass[i];
                        float ib = o->kind == SP_KIND_SHIP ? 1.0f / d->ship_mass
                                   : o->radius > 0 ? 1.0f / (d->asteroid_density * o->radius * o->radius * o->radius)
                                                   : 0.0f;
                        float sum = ia + ib;
                        if (!(sum > 0.0f) || !(ia > 0.0f)) continue;
                        if (ev_reserve(w, &w->ev_pending, 2) != 0) goto out;
                        if (kind == SP_KIND_ASTEROID) wake(w, i);
                        sp__world_jmark(w, i);
                        float dist = sqrtf(d2), nx = 1.0f, ny = 0.0f, nz = 0.0f;
                        if (dist > 0.0f) nx = ox / dist, ny = oy / dist, nz = oz / dist;
                        /* resolve_contact's impulse and correction, this side's share only (the
                         * other world applies its own with this entity as its ghost) */
                        float rvn = (o->vel[0] - w->vx[i]) * nx + (o->vel[1] - w->vy[i]) * ny + (o->vel[2] - w->vz[i]) * nz;
                        if (rvn < 0.0f) {
                            float j = -(1.0f + d->restitution) * rvn / sum;
                            w->vx[i] -= j * ia * nx, w->vy[i] -= j * ia * ny, w->vz[i] -= j * ia * nz;
                            float closing = -rvn;
                            if (closing > d->collision_damage_threshold &&
                                (kind == SP_KIND_SHIP || o->kind == SP_KIND_SHIP)) {
                                float dmg = d->collision_damage * (closing - d->collision_damage_threshold);
                                if (kind == SP_KIND_SHIP) w->hp[i] -= dmg;
                                sp_world_event_t *ev = ev_push(w, &w->ev_pending, SP_EV_COLLISION, i, o->id);
                                ev->value = closing;
                                ev->damage = dmg;
                                ev->other_owner = o->owner;
                            }
                        }
                        float pen = rs - dist - 0.01f;
                        if (pen > 0.0f) {
                            float cc = pen * 0.8f / sum;
                            w->px[i] -= cc * ia * nx, w->py[i] -= cc * ia * ny, w->pz[i] -= cc * ia * nz;
                        }
                        contacts++;
                        if (kind == SP_KIND_SHIP && w->hp[i] <= 0.0f) {
                            destroy_now(w, i, SP_CAUSE_COLLISION, o->id, &w->ev_pending);
                            goto next_slot;
                        }
                    }
                }
    next_slot:;
    }
out:
    w->alloc->free(w->alloc->ctx, head, hb, 64);
    w->alloc->free(w->alloc->ctx, next, nb, 64);
    return contacts;
}

int sp_world_inspect(const sp_world_t *w, sp_entity_id_t id, sp_entity_info_t *out) {
    if (w == NULL || out == NULL) return SP_EINVAL;
    uint32_t i;
    if (!sp__slot_of(w, id, &i)) return SP_ENOENT;
    memset(out, 0, sizeof *out);
    out->id = id;
    out->kind = w->kind[i];
    out->flags = w->flags[i];
    if (w->kind[i] == SP_KIND_SHIP) {
        if (w->wcd[i] == 0) out->flags |= SP_ENT_WEAPON_READY;
        if (w->mcd[i] == 0) out->flags |= SP_ENT_MINE_READY;
    }
    out->resource = w->resource[i];
    out->owner = w->owner[i];
    out->pos[0] = w->px[i], out->pos[1] = w->py[i], out->pos[2] = w->pz[i];
    out->vel[0] = w->vx[i], out->vel[1] = w->vy[i], out->vel[2] = w->vz[i];
    out->desired_vel[0] = w->dvx[i], out->desired_vel[1] = w->dvy[i], out->desired_vel[2] = w->dvz[i];
    out->radius = w->radius[i];
    out->mass = w->inv_mass[i] > 0 ? 1.0f / w->inv_mass[i] : 0.0f;
    out->hp = w->hp[i];
    out->max_hp = w->max_hp[i];
    out->amount = w->amount[i];
    for (int r = 0; r < SP_RESOURCE_COUNT; r++) out->cargo[r] = w->cargo[(size_t)i * SP_RESOURCE_COUNT + r];
    out->weapon_cooldown = w->wcd[i];
    out->mine_cooldown = w->mcd[i];
    out->ttl = w->ttl[i];
    out->source = w->source[i];
    return 0;
}

int sp_world_destroy(sp_world_t *w, sp_entity_id_t id) {
    if (w == NULL) return SP_EINVAL;
    uint32_t i;
    if (!sp__slot_of(w, id, &i)) return SP_ENOENT;
    int rc = ev_reserve(w, &w->ev_pending, 1);
    if (rc != 0) return rc;
    destroy_now(w, i, SP_CAUSE_COMMAND, 0, &w->ev_pending);
    return 0;
}

/* ---------------------------------------------------------------- awake set */

void sp__world_awake_add(sp_world_t *w, uint32_t i) {
    if (w->inaw[i]) return;
    w->inaw[i] = 1;
    w->awp[w->nawp++] = i; /* inaw bounds awp by the slot count */
}

static void isort_u32(uint32_t *a, uint32_t n) {
    for (uint32_t k = 1; k < n; k++) {
        uint32_t v = a[k], j = k;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

/* Sort a[0, n) ascending with tmp (n elements) as scratch: LSD radix on
 * 11-bit digits up to the highest set bit of the largest value. */
static void radix_u32(uint32_t *a, uint32_t *tmp, uint32_t n) {
    if (n <= 64) {
        isort_u32(a, n);
        return;
    }
    uint32_t mx = 0;
    for (uint32_t k = 0; k < n; k++) mx |= a[k];
    uint32_t *src = a, *dst = tmp;
    for (int sh = 0; sh < 32 && (mx >> sh) != 0; sh += 11) {
        uint32_t cnt[2048];
        memset(cnt, 0, sizeof cnt);
        for (uint32_t k = 0; k < n; k++) cnt[(src[k] >> sh) & 2047]++;
        uint32_t sum = 0;
        for (int d = 0; d < 2048; d++) {
            uint32_t c = cnt[d];
            cnt[d] = sum;
            sum += c;
        }
        for (uint32_t k = 0; k < n; k++) dst[cnt[(src[k] >> sh) & 2047]++] = src[k];
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
}

static int awake_pred(const sp_world_t *w, uint32_t i) {
    return w->kind[i] != SP_KIND_NONE && !(w->flags[i] & SP_ENT_SLEEPING);
}

/* Merge the new awake slots into aw (slot order) and drop the slots that are
 * no longer awake. O(naw + nawp log nawp); uses tmp_a as sort scratch. */
static void aw_refresh(sp_world_t *w) {
    radix_u32(w->awp, w->tmp_a, w->nawp);
    uint32_t a = 0, b = 0, n = 0, *out = w->aw2;
    while (a < w->naw || b < w->nawp) {
        uint32_t i;
        if (b == w->nawp || (a < w->naw && w->aw[a] < w->awp[b])) i = w->aw[a++];
        else i = w->awp[b++];
        if (awake_pred(w, i)) {
            out[n++] = i;
        } else {
            w->inaw[i] = 0;
            /* Fell asleep (or died: jdead has it) since it was captured
             * awake: the next capture must still take its last state. */
            if (w->kind[i] != SP_KIND_NONE) sp__world_jmark(w, i);
        }
    }
    w->aw2 = w->aw;
    w->aw = out;
    w->naw = n;
    w->nawp = 0;
}

/* The awake set from scratch (O(slots)): after a load or a full rebuild. */
static void aw_reset(sp_world_t *w) {
    w->jvalid = 0; /* slots left the awake set unjournaled: the next capture is full */
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->nslots; i++) {
        w->inaw[i] = (uint8_t)awake_pred(w, i);
        if (w->inaw[i]) w->aw[n++] = i;
    }
    w->naw = n;
    w->nawp = 0;
}

/* ---------------------------------------------------------------- static grid */

static int is_candidate(const sp_world_t *w, uint32_t i) {
    return w->kind[i] == SP_KIND_ASTEROID && !(w->flags[i] & SP_ENT_SLEEPING) &&
           w->rest[i] >= w->def.sleep_ticks && w->vx[i] == 0.0f && w->vy[i] == 0.0f &&
           w->vz[i] == 0.0f;
}

#define SG_NONE UINT32_MAX

/* Cell coordinate of v on one axis: monotonic in v (float add and multiply by
 * a positive constant are), clamped to the grid, so a query box [v - e, v +
 * e] covers the cell of every point within it. */
static uint32_t sg_axis(const sp__sgrid_t *g, float v) {
    float u = (v + g->half) * g->inv_cell;
    if (!(u > 0.0f)) return 0;
    uint32_t c = (uint32_t)u;
    return c >= g->dim ? g->dim - 1 : c;
}

static uint32_t sg_cell(const sp__sgrid_t *g, float x, float y, float z) {
    return (sg_axis(g, z) * g->dim + sg_axis(g, y)) * g->dim + sg_axis(g, x);
}

/* The layout for n sleepers: ~2 cells per sleeper (at least 4096, at most
 * 2^24 cells: 64 MiB of heads), edge >= 4 * rmax (a query box of a ship or
 * asteroid, <= 2 * (rmax + reach), then spans 1-2 cells per axis). */
static void sg_dims(const sp_world_t *w, uint32_t n, uint32_t *dim, float *cell) {
    float h = w->def.half_extent, rmax = w->def.asteroid_radius_max;
    double target = 2.0 * (double)n;
    if (target < 4096.0) target = 4096.0;
    if (target > (double)(1u << 24)) target = (double)(1u << 24);
    double d = floor(cbrt(target));
    if (d < 1.0) d = 1.0;
    double cs = 2.0 * (double)h / d, cmin = 4.0 * (double)rmax > 1.0 ? 4.0 * (double)rmax : 1.0;
    if (cs < cmin) cs = cmin;
    double nd = ceil(2.0 * (double)h / cs);
    if (nd < 1.0) nd = 1.0;
    if (nd > d) nd = d;
    *dim = (uint32_t)nd;
    *cell = (float)cs;
}

static uint32_t sg_chunk_take(sp__sgrid_t *g) {
    uint32_t c;
    if (g->ch_free != 0) {
        c = g->ch_free - 1;
        g->ch_free = g->ch[c].next;
        g->nfree_ch--;
    } else {
        SP_ASSERT(g->nch < g->ch_cap);
        c = g->nch++;
    }
    sp__schunk_t *k = &g->ch[c];
    for (int e = 0; e < SP__SG_CHUNK; e++) k->e[e].idx = SG_NONE;
    k->next = 0;
    return c;
}

static void sg_chunk_give(sp__sgrid_t *g, uint32_t c) {
    g->ch[c].next = g->ch_free;
    g->ch_free = c + 1;
    g->nfree_ch++;
}

/* Room for k more entries (at most k new chunks). Never fails when k chunks
 * are free already. */
static int sg_reserve_chunks(sp_world_t *w, uint32_t k) {
    sp__sgrid_t *g = &w->sg;
    uint64_t avail = (uint64_t)g->nfree_ch + (g->ch_cap - g->nch);
    if (avail >= k) return 0;
    uint64_t need = (uint64_t)g->nch + k, nc = g->ch_cap ? g->ch_cap : 256;
    while (nc < need) nc *= 2;
    if (nc > UINT32_MAX / 2) return SP_EOVERFLOW;
    sp__schunk_t *c = xalloc(w->alloc, (size_t)nc * sizeof *c);
    if (c == NULL) return SP_ENOMEM;
    if (g->ch != NULL) {
        memcpy(c, g->ch, (size_t)g->nch * sizeof *c);
        xfree(w->alloc, g->ch, (size_t)g->ch_cap * sizeof *c);
    }
    g->ch = c;
    g->ch_cap = (uint32_t)nc;
    return 0;
}

static uint32_t sg_coarse_axis(const sp__sgrid_t *g, float v) {
    float u = (v + g->half) * g->inv_coarse;
    if (!(u > 0.0f)) return 0;
    uint32_t c = (uint32_t)u;
    return c >= SP__SG_COARSE ? SP__SG_COARSE - 1 : c;
}

static uint32_t sg_coarse_cell(const sp__sgrid_t *g, float x, float y, float z) {
    return (sg_coarse_axis(g, z) * SP__SG_COARSE + sg_coarse_axis(g, y)) * SP__SG_COARSE + sg_coarse_axis(g, x);
}

/* A new insertion epoch, before a batch of sg_insert() calls: caches made
 * before it see the coarse cells the batch stamps as changed. */
static void sg_epoch_next(sp__sgrid_t *g) {
    if (++g->epoch == 0) { /* wrapped (after 2^32 batches): drop every cache */
        memset(g->coarse, 0, (size_t)SP__SG_COARSE * SP__SG_COARSE * SP__SG_COARSE * sizeof *g->coarse);
        g->epoch = 2;
        g->min_valid = 2;
    }
}

/* Insert sleeping slot i (room reserved; sg_epoch_next() called for the batch). */
static void sg_insert(sp_world_t *w, uint32_t i) {
    sp__sgrid_t *g = &w->sg;
    uint32_t cell = sg_cell(g, w->px[i], w->py[i], w->pz[i]);
    w->sgcell[i] = cell;
    uint32_t h = g->head[cell];
    sp__schunk_t *k = h ? &g->ch[h - 1] : NULL;
    int pos = 0;
    if (k != NULL)
        while (pos < SP__SG_CHUNK && k->e[pos].idx != SG_NONE) pos++;
    if (k == NULL || pos == SP__SG_CHUNK) {
        uint32_t c = sg_chunk_take(g);
        k = &g->ch[c];
        k->next = h;
        g->head[cell] = c + 1;
        pos = 0;
    }
    sp__sent_t *e = &k->e[pos];
    e->x = w->px[i], e->y = w->py[i], e->z = w->pz[i], e->r = w->radius[i];
    e->idx = i;
    g->n++;
    g->coarse[sg_coarse_cell(g, e->x, e->y, e->z)] = g->epoch;
}

/* Remove slot i's entry (it is in the grid). Never allocates. */
static void sg_remove(sp_world_t *w, uint32_t i) {
    sp__sgrid_t *g = &w->sg;
    uint32_t cell = w->sgcell[i], h = g->head[cell];
    SP_ASSERT(h != 0);
    if (h == 0) return;
    sp__schunk_t *first = &g->ch[h - 1];
    int last = SP__SG_CHUNK - 1;
    while (last > 0 && first->e[last].idx == SG_NONE) last--;
    sp__sent_t *hole = NULL;
    for (uint32_t c = h; c != 0 && hole == NULL; c = g->ch[c - 1].next)
        for (int e = 0; e < SP__SG_CHUNK; e++)
            if (g->ch[c - 1].e[e].idx == i) {
                hole = &g->ch[c - 1].e[e];
                break;
            }
    SP_ASSERT(hole != NULL);
    if (hole == NULL) return;
    *hole = first->e[last]; /* the first chunk's last entry fills the hole */
    first->e[last].idx = SG_NONE;
    if (last == 0) {
        g->head[cell] = first->next;
        sg_chunk_give(g, h - 1);
    }
    g->n--;
}

/* Lay the grid out anew for `n` sleepers and insert every sleeping slot
 * (the flag is the truth), first promoting (promote != 0) every awake
 * asteroid that rested sleep_ticks. All memory is obtained before anything
 * changes: on SP_ENOMEM the world is unchanged. O(slots + cells): for
 * populate, load and growth past the layout, never per tick. */
static int sg_build(sp_world_t *w, int promote, uint32_t n) {
    sp__sgrid_t *g = &w->sg;
    uint32_t dim;
    float cell;
    sg_dims(w, n, &dim, &cell);
    size_t cells = (size_t)dim * dim * dim;
    if (g->coarse == NULL) {
        g->coarse = xalloc(w->alloc, (size_t)SP__SG_COARSE * SP__SG_COARSE * SP__SG_COARSE * sizeof *g->coarse);
        if (g->coarse == NULL) return SP_ENOMEM;
        memset(g->coarse, 0, (size_t)SP__SG_COARSE * SP__SG_COARSE * SP__SG_COARSE * sizeof *g->coarse);
        g->epoch = g->min_valid = 1;
    }
    uint32_t *head = g->head;
    size_t head_cap = g->head_cap;
    if (cells > head_cap) {
        head = xalloc(w->alloc, cells * sizeof *head);
        if (head == NULL) return SP_ENOMEM;
        head_cap = cells;
    }
    /* Chunks: one per sleeper at worst; start from an empty pool. */
    uint32_t keep_free = g->nfree_ch, keep_nch = g->nch, keep_ff = g->ch_free;
    g->nfree_ch = 0, g->nch = 0, g->ch_free = 0;
    int rc = sg_reserve_chunks(w, n);
    if (rc != 0) {
        g->nfree_ch = keep_free, g->nch = keep_nch, g->ch_free = keep_ff;
        if (head != g->head) xfree(w->alloc, head, head_cap * sizeof *head);
        return rc;
    }
    if (head != g->head) {
        xfree(w->alloc, g->head, g->head_cap * sizeof *head);
        g->head = head;
        g->head_cap = head_cap;
    }
    memset(g->head, 0, cells * sizeof *g->head);
    g->dim = dim;
    g->cell = cell;
    g->inv_cell = 1.0f / cell;
    g->half = w->def.half_extent;
    g->rmax = w->def.asteroid_radius_max;
    g->n = 0;
    g->n_layout = n;
    g->inv_coarse = (float)SP__SG_COARSE / (2.0f * g->half);
    sg_epoch_next(g);
    g->min_valid = g->epoch; /* every cache predates this layout */
    for (uint32_t i = 0; i < w->nslots; i++) {
        if (promote && is_candidate(w, i)) {
            w->flags[i] |= SP_ENT_SLEEPING;
            w->nsleeping++;
        }
        if (w->flags[i] & SP_ENT_SLEEPING) sg_insert(w, i);
    }
    SP_ASSERT(g->n <= n);
    return 0;
}

/* Room for k more sleepers: the chunks, and a new layout (sg_build, O(slots))
 * when the grid would hold more than 4x the sleepers it was laid out for. */
static int sg_reserve(sp_world_t *w, uint32_t k) {
    sp__sgrid_t *g = &w->sg;
    uint64_t after = (uint64_t)g->n + k;
    if (g->dim == 0 || after > 4 * (uint64_t)g->n_layout + 1024) {
        uint64_t n = after > w->count_kind[SP_KIND_ASTEROID] ? after : w->count_kind[SP_KIND_ASTEROID];
        int rc = sg_build(w, 0, (uint32_t)n);
        if (rc != 0) return rc;
    }
    return sg_reserve_chunks(w, k);
}

/* The full rebuild (populate, load): the static grid from the SLEEPING flags,
 * first promoting (promote != 0) the asteroids at rest, and the awake set.
 * On SP_ENOMEM the world is unchanged. O(slots). */
int sp__world_rebuild_static(sp_world_t *w, int promote) {
    int rc = sg_build(w, promote, w->count_kind[SP_KIND_ASTEROID]);
    if (rc != 0) return rc;
    aw_reset(w);
    w->stale = 0;
    w->last_rebuild = w->tick;
    w->awake_dirty = 1;
    return 0;
}

/* Put every awake asteroid that rested sleep_ticks to sleep: O(awake), the
 * kept grid takes them one by one. What the old wholesale rebuild did at the
 * same ticks (the rule in sp_world_step reads only world state), minus the
 * rebuild. On SP_ENOMEM nothing changes (retried next tick). */
static int sg_promote(sp_world_t *w) {
    aw_refresh(w);
    uint32_t k = 0;
    for (uint32_t a = 0; a < w->naw; a++) k += (uint32_t)is_candidate(w, w->aw[a]);
    int rc = sg_reserve(w, k);
    if (rc != 0) return rc;
    sg_epoch_next(&w->sg);
    for (uint32_t a = 0; a < w->naw; a++) {
        uint32_t i = w->aw[a];
        if (!is_candidate(w, i)) continue;
        w->flags[i] |= SP_ENT_SLEEPING;
        w->nsleeping++;
        sg_insert(w, i);
    }
    w->stale = 0;
    w->last_rebuild = w->tick;
    w->awake_dirty = 1;
    return 0;
}

/* Visit every still-sleeping entry whose cell may hold a sphere within
 * `reach` of (x, y, z) (reach excludes the entry's own radius). The caller
 * does the exact test. Order: cells z-y-x ascending, entries in bucket order;
 * callers that care about order sort their results. */
typedef struct sg_hits {
    uint32_t *idx;
    uint32_t n, cap;
} sg_hits_t;

/* Keep the cap smallest slots, sorted (insertion: usually 0-3 hits), so the
 * result depends neither on the grid's layout nor on the visit order, even
 * when more than cap bodies match. n counts all matches. */
static void hits_insert(sg_hits_t *h, uint32_t v) {
    uint32_t m = h->n < h->cap ? h->n : h->cap;
    h->n++;
    if (m == h->cap) {
        if (v > h->idx[m - 1]) return;
        m--; /* drop the largest */
    }
    uint32_t j = m;
    while (j > 0 && h->idx[j - 1] > v) {
        h->idx[j] = h->idx[j - 1];
        j--;
    }
    h->idx[j] = v;
}

/* Every sleeper whose sphere is within `reach` of (x, y, z): d2 < (reach +
 * r)^2 (strict) or <= (not strict), into hits (sorted, see hits_insert). The
 * box of cells reaches reach + rmax around the point, so it holds every such
 * sleeper (sg_axis is monotonic). Cost: the 1-8 cells of the box, one cache
 * line per 3 entries. */
/* Call visit(ctx, s) for every entry s in the cells of the box that reaches
 * ext around (x, y, z) per axis, cells in (z, y, x) order, each cell's
 * chunks in list order: the one walk of the static grid, so every query
 * sees the same entries in the same order. Static inline with the visitor
 * known at each call, so the compiler inlines the visitor too. */
static inline void sg_visit_box(const sp__sgrid_t *g, float x, float y, float z, float ext,
                                void (*visit)(void *ctx, const sp__sent_t *s), void *ctx) {
    uint32_t x0 = sg_axis(g, x - ext), x1 = sg_axis(g, x + ext);
    uint32_t y0 = sg_axis(g, y - ext), y1 = sg_axis(g, y + ext);
    uint32_t z0 = sg_axis(g, z - ext), z1 = sg_axis(g, z + ext);
    for (uint32_t cz = z0; cz <= z1; cz++)
        for (uint32_t cy = y0; cy <= y1; cy++) {
            const uint32_t *row = g->head + ((size_t)cz * g->dim + cy) * g->dim;
            for (uint32_t cx = x0; cx <= x1; cx++)
                for (uint32_t c = row[cx]; c != 0;) {
                    const sp__schunk_t *k = &g->ch[c - 1];
                    for (int e = 0; e < SP__SG_CHUNK; e++) {
                        if (k->e[e].idx == SG_NONE) break; /* only a first chunk has holes, at its end */
                        visit(ctx, &k->e[e]);
                    }
                    c = k->next;
                }
        }
}

typedef struct sg_exact {
    float x, y, z, reach;
    int strict;
    sg_hits_t *hits;
} sg_exact_t;

static void sg_exact_visit(void *ctx, const sp__sent_t *s) {
    sg_exact_t *q = ctx;
    float dx = s->x - q->x, dy = s->y - q->y, dz = s->z - q->z;
    float d2 = dx * dx + dy * dy + dz * dz, r = q->reach + s->r;
    if (q->strict ? !(d2 < r * r) : !(d2 <= r * r)) return;
    hits_insert(q->hits, s->idx);
}

static void sg_query(const sp_world_t *w, float x, float y, float z, float reach, int strict,
                     sg_hits_t *hits) {
    const sp__sgrid_t *g = &w->sg;
    hits->n = 0;
    if (g->n == 0) return;
    sg_exact_t q = {x, y, z, reach, strict, hits};
    sg_visit_box(g, x, y, z, reach + g->rmax, sg_exact_visit, &q);
}

/* The cache refill's visitor: every entry within the fat reach per axis is
 * a candidate (kept while they fit), and the exact strict test of
 * sg_exact_visit() gives the hits. */
typedef struct sg_refill {
    sg_exact_t exact;
    float fat;
    uint32_t n;
    uint32_t *buf; /* SP__SQ_MAX + 1 */
} sg_refill_t;

static void sg_refill_visit(void *ctx, const sp__sent_t *s) {
    sg_refill_t *f = ctx;
    double lim = (double)f->fat + s->r;
    if (fabs((double)s->x - f->exact.x) > lim || fabs((double)s->y - f->exact.y) > lim ||
        fabs((double)s->z - f->exact.z) > lim)
        return;
    if (f->n <= SP__SQ_MAX) f->buf[f->n] = s->idx;
    f->n++;
    sg_exact_visit(&f->exact, s);
}

/* How far (per axis, world units) a body may move from where its sleeper
 * cache was made before it queries the grid again: ~8 ticks of a ship at
 * full speed; awake asteroids drift slower. */
#define SP__SQ_MARGIN 8.0f

/* The sleepers touching awake body i at (x, y, z) radius reach (the step's
 * strict test), into hits: exactly sg_query(x, y, z, reach, 1), read from
 * the body's cache when it is valid (no grid access: most bodies have no
 * sleeper near them, so that is an empty list), else from a query with the
 * fat reach that refills the cache. Why the cache holds every hit: a cached
 * body is within SP__SQ_MARGIN of the centre c per axis (tested in double,
 * exact for floats), and a hit s has |s - p| < reach + r_s per axis, so
 * |s - c| < reach + r_s + margin; the cache kept every sleeper within that
 * plus a slack for float rounding, present when it was made, and a sleeper
 * inserted since stamps its coarse cell, which invalidates the cache. A
 * candidate that woke or died is dropped by the SLEEPING flag, and every
 * candidate gets the same exact float test as sg_query() on the same
 * values (a sleeper's slot position is its entry's copy), so the hits are
 * identical. Writes only the derived cache. */
static void sg_near(sp_world_t *w, uint32_t i, float x, float y, float z, float reach, sg_hits_t *hits) {
    sp__sgrid_t *g = &w->sg;
    float m = SP__SQ_MARGIN;
    /* The slack covers the rounding of the float tests (a few ulps of the
     * world's coordinates) with room to spare. */
    float fat = reach + m + (float)(1e-2 + (double)g->half * 0x1p-18);
    uint32_t e = w->sqe[i];
    if (e != 0 && e >= g->min_valid && fabs((double)x - w->sqx[i]) <= m && fabs((double)y - w->sqy[i]) <= m &&
        fabs((double)z - w->sqz[i]) <= m) {
        /* Valid unless a coarse cell of the fat box got a sleeper since. */
        float ext = fat + g->rmax;
        uint32_t x0 = sg_coarse_axis(g, w->sqx[i] - ext), x1 = sg_coarse_axis(g, w->sqx[i] + ext);
        uint32_t y0 = sg_coarse_axis(g, w->sqy[i] - ext), y1 = sg_coarse_axis(g, w->sqy[i] + ext);
        uint32_t z0 = sg_coarse_axis(g, w->sqz[i] - ext), z1 = sg_coarse_axis(g, w->sqz[i] + ext);
        int ok = 1;
        for (uint32_t cz = z0; cz <= z1 && ok; cz++)
            for (uint32_t cy = y0; cy <= y1 && ok; cy++)
                for (uint32_t cx = x0; cx <= x1; cx++)
                    if (g->coarse[(cz * SP__SG_COARSE + cy) * SP__SG_COARSE + cx] > e) {
                        ok = 0;
                        break;
                    }
        if (ok) {
            hits->n = 0;
            const uint32_t *c = w->sqc + (size_t)i * SP__SQ_MAX;
            for (uint32_t k = 0; k < w->sqn[i]; k++) {
                uint32_t s = c[k];
                if (!(w->flags[s] & SP_ENT_SLEEPING)) continue;
                float dx = w->px[s] - x, dy = w->py[s] - y, dz = w->pz[s] - z;
                float d2 = dx * dx + dy * dy + dz * dz, r = reach + w->radius[s];
                if (d2 < r * r) hits_insert(hits, s);
            }
            return;
        }
    }
    /* Refill: every sleeper within the fat reach of (x, y, z) per axis. */
    uint32_t buf[SP__SQ_MAX + 1];
    hits->n = 0;
    sg_refill_t f = {{x, y, z, reach, 1, hits}, fat, 0, buf};
    sg_visit_box(g, x, y, z, fat + g->rmax, sg_refill_visit, &f);
    uint32_t n = f.n;
    if (n <= SP__SQ_MAX) {
        w->sqx[i] = x, w->sqy[i] = y, w->sqz[i] = z;
        w->sqe[i] = g->epoch;
        w->sqn[i] = (uint8_t)n;
        memcpy(w->sqc + (size_t)i * SP__SQ_MAX, buf, (size_t)n * sizeof *buf);
    } else {
        w->sqe[i] = 0; /* crowded: query every tick */
    }
}

/* ---------------------------------------------------------------- messages */

/* The awake asteroids in slot order, from the awake set: O(awake). */
static void awake_list(sp_world_t *w) {
    if (!w->awake_dirty) return;
    aw_refresh(w);
    uint32_t n = 0;
    for (uint32_t a = 0; a < w->naw; a++)
        if (w->kind[w->aw[a]] == SP_KIND_ASTEROID) w->awake_ast[n++] = w->aw[a];
    w->nawake_ast = n;
    w->awake_dirty = 0;
}

static int nearest_asteroid(sp_world_t *w, uint32_t s, int res, uint32_t *out) {
    float reach = w->radius[s] + w->def.mining_range;
    uint32_t buf[64];
    sg_hits_t hits = {buf, 0, 64};
    sg_query(w, w->px[s], w->py[s], w->pz[s], reach, 0, &hits);
    uint32_t best = UINT32_MAX;
    double bestd = 0;
    uint32_t m = hits.n < hits.cap ? hits.n : hits.cap;
    /* Candidates: sleepers near the ship, then every awake asteroid (few:
     * most asteroids sleep); the best is the smallest gap, ties to the lower
     * id. Both sets are functions of the current state only. */
    awake_list(w);
    for (uint32_t pass = 0; pass < 2; pass++) {
        uint32_t cnt = pass == 0 ? m : w->nawake_ast;
        for (uint32_t k = 0; k < cnt; k++) {
            uint32_t a = pass == 0 ? hits.idx[k] : w->awake_ast[k];
            if (w->kind[a] != SP_KIND_ASTEROID || w->resource[a] != res) continue;
            double dx = (double)w->px[a] - w->px[s], dy = (double)w->py[a] - w->py[s],
                   dz = (double)w->pz[a] - w->pz[s];
            double gap = sqrt(dx * dx + dy * dy + dz * dz) - w->radius[s] - w->radius[a];
            if (gap > w->def.mining_range) continue;
            if (best == UINT32_MAX || gap < bestd ||
                (gap == bestd && id_of(w, a) < id_of(w, best))) {
                best = a;
                bestd = gap;
            }
        }
    }
    if (best == UINT32_MAX) return SP_ERANGE;
    *out = best;
    return 0;
}

int sp_world_apply_msg(sp_world_t *w, const sp_msg_t *m) {
    if (w == NULL || m == NULL) return SP_EINVAL;
    int rc = sp_msg_validate(m);
    if (rc != 0) return rc;
    switch (m->kind) {
    case SP_MSG_SHIP_MOVEMENT: {
        const sp_msg_ship_movement_t *u = &m->u.ship_movement;
        uint32_t s;
        if (!sp__slot_of(w, u->ship_id, &s)) return SP_ENOENT;
        if (!(w->flags[s] & SP_ENT_NPC)) return SP_EPERM;
        return sp_world_set_desired_velocity(w, u->ship_id, u->velocity, NULL);
    }
    case SP_MSG_WEAPON_FIRED: {
        const sp_msg_weapon_fired_t *u = &m->u.weapon_fired;
        uint32_t s;
        if (!sp__slot_of(w, u->ship_id, &s)) return SP_ENOENT;
        if (!(w->flags[s] & SP_ENT_NPC)) return SP_EPERM;
        sp_fire_result_t r;
        return sp_world_fire(w, u->ship_id, u->target_id, &r);
    }
    case SP_MSG_RESOURCE_MINED: {
        const sp_msg_resource_mined_t *u = &m->u.resource_mined;
        uint32_t s;
        if (!sp__slot_of(w, u->ship_id, &s)) return SP_ENOENT;
        if (w->kind[s] != SP_KIND_SHIP) return SP_EINVAL;
        if (!(w->flags[s] & SP_ENT_NPC)) return SP_EPERM;
        int res = sp_resource_parse(u->resource_type, u->type_len);
        if (res < 0) return SP_EINVAL;
        if (w->mcd[s] > 0) return SP_EBUSY;
        uint32_t a;
        rc = nearest_asteroid(w, s, res, &a);
        if (rc != 0) return rc;
        sp_mine_result_t r;
        return mine_checked(w, s, a, &r);
    }
    case SP_MSG_SYSTEM_ALERT:
        return 0;
    default:
        return SP_ETYPE;
    }
}

/* ---------------------------------------------------------------- step */

/* The ids a message names (sp_world_apply_msg looks them up). */
static int msg_ids(const sp_msg_t *m, uint64_t ids[2]) {
    switch (m->kind) {
    case SP_MSG_SHIP_MOVEMENT: ids[0] = m->u.ship_movement.ship_id; return 1;
    case SP_MSG_WEAPON_FIRED:
        ids[0] = m->u.weapon_fired.ship_id;
        ids[1] = m->u.weapon_fired.target_id;
        return 2;
    case SP_MSG_RESOURCE_MINED: ids[0] = m->u.resource_mined.ship_id; return 1;
    default: return 0;
    }
}

void sp_world_prefetch_msg(const sp_world_t *w, const sp_msg_t *m, int stage) {
    uint64_t ids[2];
    int n = msg_ids(m, ids);
    if (w->ids.e == NULL) return;
    for (int k = 0; k < n; k++) {
        if (ids[k] == 0) continue;
        if (stage == 0) {
            __builtin_prefetch(&w->ids.e[map_home(ids[k], w->ids.mask)]);
            continue;
        }
        uint32_t i;
        if (!sp__slot_of(w, ids[k], &i)) continue; /* its bucket is in cache by now */
        __builtin_prefetch(&w->flags[i]);
        __builtin_prefetch(&w->kind[i]);
        __builtin_prefetch(&w->px[i]);
        __builtin_prefetch(&w->py[i]);
        __builtin_prefetch(&w->pz[i]);
        __builtin_prefetch(&w->dvx[i], 1);
    }
}

static int contacts_push(sp_world_t *w, uint32_t a, uint32_t b) {
    if (w->ncontacts == w->contacts_cap) {
        int rc = vec_grow(w->alloc, (void **)&w->contacts, &w->contacts_cap, w->ncontacts + 1,
                          2 * sizeof(uint32_t));
        if (rc != 0) return rc;
    }
    w->contacts[2 * w->ncontacts] = a;
    w->contacts[2 * w->ncontacts + 1] = b;
    w->ncontacts++;
    return 0;
}

static void wake(sp_world_t *w, uint32_t i) {
    if (w->flags[i] & SP_ENT_SLEEPING) {
        sg_remove(w, i);
        sp__world_awake_add(w, i);
        w->flags[i] &= (uint8_t)~SP_ENT_SLEEPING;
        w->nsleeping--;
        w->stale++;
        w->awake_dirty = 1;
    }
    w->rest[i] = 0;
}

static void reflect(float *p, float *v, float lo, float hi) {
    if (*p < lo) {
        *p = lo + (lo - *p);
        if (*p > hi) *p = hi;
        *v = fabsf(*v);
    } else if (*p > hi) {
        *p = hi - (*p - hi);
        if (*p < lo) *p = lo;
        *v = -fabsf(*v);
    }
}

/* Gather the awake set with its new velocities (no world writes other than
 * the awake set's own refresh). O(awake), in slot order as before. */
static void gather(sp_world_t *w) {
    const sp_world_def_t *d = &w->def;
    float amax = d->ship_max_accel * d->dt;
    float damp = 1.0f - d->asteroid_damping * d->dt;
    if (damp < 0.0f) damp = 0.0f;
    uint32_t g = 0, np = 0;
    aw_refresh(w);
    for (uint32_t a = 0; a < w->naw; a++) {
        uint32_t i = w->aw[a];
        uint8_t k = w->kind[i];
        if (k == SP_KIND_PROJECTILE) {
            w->tmp_b[np++] = i;
            continue;
        }
        float vx = w->vx[i], vy = w->vy[i], vz = w->vz[i];
        if (k == SP_KIND_SHIP) {
            float ex = w->dvx[i] - vx, ey = w->dvy[i] - vy, ez = w->dvz[i] - vz;
            float l2 = ex * ex + ey * ey + ez * ez;
            if (l2 > amax * amax) {
                float s = amax / sqrtf(l2);
                ex *= s, ey *= s, ez *= s;
            }
            vx += ex, vy += ey, vz += ez;
        } else if (w->rest[i] >= d->sleep_ticks) {
            vx = vy = vz = 0.0f; /* at rest, waiting for the next static rebuild */
        } else {
            vx *= damp, vy *= damp, vz *= damp;
        }
        w->gidx[g] = i;
        w->gx[g] = w->px[i], w->gy[g] = w->py[i], w->gz[g] = w->pz[i];
        w->gvx[g] = vx, w->gvy[g] = vy, w->gvz[g] = vz;
        w->gr[g] = w->radius[i];
        g++;
    }
    w->ncollide = g;
    for (uint32_t k = 0; k < np; k++, g++) {
        uint32_t i = w->tmp_b[k];
        w->gidx[g] = i;
        w->gx[g] = w->px[i], w->gy[g] = w->py[i], w->gz[g] = w->pz[i];
        w->gvx[g] = w->vx[i], w->gvy[g] = w->vy[i], w->gvz[g] = w->vz[i];
        w->gr[g] = w->radius[i];
    }
    w->ngather = g;
}

static void resolve_contact(sp_world_t *w, uint32_t a, uint32_t b) {
    const sp_world_def_t *d = &w->def;
    float ia = w->inv_mass[a], ib = w->inv_mass[b], sum = ia + ib;
    if (!(sum > 0.0f)) return;
    float dx = w->px[b] - w->px[a], dy = w->py[b] - w->py[a], dz = w->pz[b] - w->pz[a];
    float d2 = dx * dx + dy * dy + dz * dz, rs = w->radius[a] + w->radius[b];
    if (!(d2 < rs * rs)) return; /* separated by an earlier contact's correction */
    wake(w, a);
    wake(w, b);
    float dist = sqrtf(d2), nx = 1.0f, ny = 0.0f, nz = 0.0f;
    if (dist > 0.0f) nx = dx / dist, ny = dy / dist, nz = dz / dist;
    float rvn = (w->vx[b] - w->vx[a]) * nx + (w->vy[b] - w->vy[a]) * ny + (w->vz[b] - w->vz[a]) * nz;
    if (rvn < 0.0f) {
        float j = -(1.0f + d->restitution) * rvn / sum;
        w->vx[a] -= j * ia * nx, w->vy[a] -= j * ia * ny, w->vz[a] -= j * ia * nz;
        w->vx[b] += j * ib * nx, w->vy[b] += j * ib * ny, w->vz[b] += j * ib * nz;
        float closing = -rvn;
        if (closing > d->collision_damage_threshold &&
            (w->kind[a] == SP_KIND_SHIP || w->kind[b] == SP_KIND_SHIP)) {
            float dmg = d->collision_damage * (closing - d->collision_damage_threshold);
            if (w->kind[a] == SP_KIND_SHIP) w->hp[a] -= dmg;
            if (w->kind[b] == SP_KIND_SHIP) w->hp[b] -= dmg;
            sp_world_event_t *e = ev_push(w, &w->ev_out, SP_EV_COLLISION, a, id_of(w, b));
            e->value = closing;
            e->damage = dmg;
        }
    }
    /* Positional correction (Baumgarte-style, 80% of the overlap beyond a
     * small slop), split by inverse mass: momentum is untouched. */
    float pen = rs - dist - 0.01f;
    if (pen > 0.0f) {
        float c = pen * 0.8f / sum;
        w->px[a] -= c * ia * nx, w->py[a] -= c * ia * ny, w->pz[a] -= c * ia * nz;
        w->px[b] += c * ib * nx, w->py[b] += c * ib * ny, w->pz[b] += c * ib * nz;
    }
}

static const uint8_t demo_roles[3] = {SP_ENT_MINER, SP_ENT_FIGHTER, 0};

/* A demo NPC: role cycling miner, fighter, patrol (counted in rs_role), a
 * random point and cruise velocity from the rng. */
static int spawn_demo_npc(sp_world_t *w, sp_entity_id_t *out) {
    sp_entity_id_t id;
    int rc = sp_world_spawn_ship(w, 0, demo_roles[w->rs_role % 3], NULL, &id);
    if (rc != 0) return rc;
    *out = id;
    w->rs_role++;
    float s = 0.5f * w->def.ship_max_speed;
    float v[3] = {rng_range(w, -s, s), rng_range(w, -s, s), rng_range(w, -s, s)};
    sp_world_set_desired_velocity(w, id, v, NULL);
    return 0;
}

/* A demo asteroid, born at rest (it sleeps at the next static rebuild). */
static int spawn_demo_asteroid(sp_world_t *w, sp_entity_id_t *out) {
    sp_entity_id_t id;
    int rc = sp_world_spawn_asteroid(w, NULL, 0.0f, 0.0f, -1, &id);
    uint32_t i;
    if (rc == 0 && sp__slot_of(w, id, &i)) w->rest[i] = w->def.sleep_ticks;
    if (rc == 0) *out = id;
    return rc;
}

void sp_world_set_region(sp_world_t *w, int (*keep)(void *ctx, float x, float y), void *ctx) {
    w->region = keep;
    w->region_ctx = ctx;
}

/* 1 if slot i lies in the region (or there is none). */
static int in_region(const sp_world_t *w, uint32_t i) {
    return w->region == NULL || w->region(w->region_ctx, w->px[i], w->py[i]);
}

/* Keep a fresh spawn only inside the region: 1 kept, 0 removed. */
static int keep_spawn(sp_world_t *w, sp_entity_id_t id) {
    uint32_t i;
    if (!sp__slot_of(w, id, &i) || in_region(w, i)) return 1;
    slot_free(w, i);
    return 0;
}



/* Top the NPC ships and asteroids up toward their targets, at most
 * rs_per_period of each. Deterministic: the state and the rng only. A failed
 * spawn (limit, memory) stops this round; the next period tries again. */
static void respawn(sp_world_t *w) {
    sp_entity_id_t id;
    uint32_t draws = 4 * w->rs_per_period; /* with a region, draws outside it are tried again */
    for (uint32_t k = 0, n = 0; k < w->rs_per_period && n < draws && w->count_npc < w->rs_npc_target; n++) {
        if (spawn_demo_npc(w, &id) != 0) break;
        k += (uint32_t)keep_spawn(w, id);
    }
    for (uint32_t k = 0, n = 0; k < w->rs_per_period && n < draws && w->count_kind[SP_KIND_ASTEROID] < w->rs_ast_target;
         n++) {
        if (spawn_demo_asteroid(w, &id) != 0) break;
        k += (uint32_t)keep_spawn(w, id);
    }
}

int sp_world_set_respawn(sp_world_t *w, uint32_t npc_target, uint32_t ast_target, uint32_t period_ticks,
                         uint32_t per_period) {
    if (w == NULL || npc_target > w->def.max_entities || ast_target > w->def.max_entities) return SP_EINVAL;
    w->rs_npc_target = npc_target;
    w->rs_ast_target = ast_target;
    w->rs_period = period_ticks;
    w->rs_per_period = per_period;
    return 0;
}

int sp_world_step(sp_world_t *w) {
    if (w == NULL) return SP_EINVAL;
    const sp_world_def_t *d = &w->def;

    /* Phase 1 (no world writes; may fail): gather, predict, pairs. */
    gather(w);
    sp_f32_integrate3(w->gx, w->gy, w->gz, w->gvx, w->gvy, w->gvz, d->dt, w->ngather);
    float h = d->half_extent;
    for (uint32_t g = 0; g < w->ngather; g++) {
        float r = w->gr[g], lo = r < h ? -h + r : 0.0f, hi = r < h ? h - r : 0.0f;
        reflect(&w->gx[g], &w->gvx[g], lo, hi);
        reflect(&w->gy[g], &w->gvy[g], lo, hi);
        reflect(&w->gz[g], &w->gvz[g], lo, hi);
    }
    const sp_pair_t *pairs = NULL;
    size_t npairs = 0;
    int rc = sp_grid_find_pairs(w->grid, &w->scratch, w->gx, w->gy, w->gz, w->gr, w->ncollide,
                                &pairs, &npairs);
    if (rc != 0) return rc;
    w->ncontacts = 0;
    for (size_t p = 0; p < npairs; p++) {
        rc = contacts_push(w, w->gidx[pairs[p].a], w->gidx[pairs[p].b]);
        if (rc != 0) return rc;
    }
    if (w->sleep_enabled && w->nsleeping > 0) {
        uint32_t buf[64];
        sg_hits_t hits = {buf, 0, 64};
        for (uint32_t g = 0; g < w->ncollide; g++) {
            sg_near(w, w->gidx[g], w->gx[g], w->gy[g], w->gz[g], w->gr[g], &hits);
            uint32_t m = hits.n < hits.cap ? hits.n : hits.cap;
            for (uint32_t k = 0; k < m; k++) {
                rc = contacts_push(w, w->gidx[g], hits.idx[k]);
                if (rc != 0) return rc;
            }
        }
    }
    /* Events: the commands' ones plus at most 3 per contact (collision and
     * two destructions). Reserved in the pending buffer, which becomes ev_out. */
    size_t extra;
    if (sp_size_mul(w->ncontacts, 3, &extra) != 0) return SP_EOVERFLOW;
    rc = ev_reserve(w, &w->ev_pending, extra);
    if (rc != 0) return rc;

    /* Phase 2: commit. Nothing below fails. */
    sp__evbuf_t t = w->ev_out;
    w->ev_out = w->ev_pending;
    w->ev_pending = t;
    w->ev_pending.n = 0;
    w->tick++;
    for (uint32_t g = 0; g < w->ngather; g++) {
        uint32_t i = w->gidx[g];
        w->px[i] = w->gx[g], w->py[i] = w->gy[g], w->pz[i] = w->gz[g];
        w->vx[i] = w->gvx[g], w->vy[i] = w->gvy[g], w->vz[i] = w->gvz[g];
        if (w->kind[i] == SP_KIND_SHIP) {
            if (w->wcd[i] > 0) w->wcd[i]--;
            if (w->mcd[i] > 0) w->mcd[i]--;
        }
    }
    for (uint32_t g = w->ncollide; g < w->ngather; g++) {
        uint32_t i = w->gidx[g];
        if (--w->ttl[i] == 0) slot_free(w, i); /* tracers vanish silently */
    }
    for (size_t c = 0; c < w->ncontacts; c++) resolve_contact(w, w->contacts[2 * c], w->contacts[2 * c + 1]);
    for (size_t c = 0; c < w->ncontacts; c++) {
        for (int s = 0; s < 2; s++) {
            uint32_t i = w->contacts[2 * c + s], o = w->contacts[2 * c + 1 - s];
            if (w->kind[i] == SP_KIND_SHIP && w->hp[i] <= 0.0f) {
                sp_entity_id_t by = w->kind[o] != SP_KIND_NONE ? id_of(w, o) : 0;
                destroy_now(w, i, SP_CAUSE_COLLISION, by, &w->ev_out);
            }
        }
    }
    /* Rest counters of the awake asteroids; count those ready to sleep. */
    uint32_t ready = 0;
    float s2 = d->sleep_speed * d->sleep_speed;
    for (uint32_t g = 0; g < w->ncollide; g++) {
        uint32_t i = w->gidx[g];
        if (w->kind[i] != SP_KIND_ASTEROID || (w->flags[i] & SP_ENT_SLEEPING)) continue;
        float v2 = w->vx[i] * w->vx[i] + w->vy[i] * w->vy[i] + w->vz[i] * w->vz[i];
        if (v2 < s2) {
            if (w->rest[i] < d->sleep_ticks) w->rest[i]++;
        } else {
            w->rest[i] = 0;
        }
        if (w->rest[i] >= d->sleep_ticks) {
            w->vx[i] = w->vy[i] = w->vz[i] = 0.0f;
            ready++;
        }
    }
    /* Rebuild the static grid when enough bodies wait to sleep or enough
     * entries went stale, or now and then when any does. The rule reads only
     * world state, so rebuilds (which change which pairs are tested) happen
     * at the same ticks in every run. A failed rebuild (SP_ENOMEM) changes
     * nothing and is retried next tick. */
    if (w->sleep_enabled) {
        uint32_t ns = w->nsleeping;
        uint64_t age = w->tick - w->last_rebuild;
        if (ready >= 32 + ns / 64 || w->stale >= 64 + ns / 16 || (ready > 0 && age >= 120) ||
            (w->stale > 0 && age >= 600))
            (void)sg_promote(w);
    }
    if (w->rs_period != 0 && w->tick % w->rs_period == 0) respawn(w);
    return 0;
}

const sp_world_event_t *sp_world_events(const sp_world_t *w, size_t *n) {
    if (n != NULL) *n = w->ev_out.n;
    return w->ev_out.v;
}

void sp_world_set_sleep_enabled(sp_world_t *w, int on) {
    if (on) {
        w->sleep_enabled = 1;
        return;
    }
    w->sleep_enabled = 0;
    for (uint32_t i = 0; i < w->nslots; i++) {
        w->flags[i] &= (uint8_t)~SP_ENT_SLEEPING;
        if (w->kind[i] == SP_KIND_ASTEROID) w->rest[i] = 0;
    }
    w->nsleeping = 0;
    w->stale = 0;
    /* Empty the kept grid (its layout stays) and make every entity awake. */
    sp__sgrid_t *g = &w->sg;
    if (g->dim != 0) {
        memset(g->head, 0, (size_t)g->dim * g->dim * g->dim * sizeof *g->head);
        sg_epoch_next(g);
        g->min_valid = g->epoch;
    }
    g->n = 0, g->nch = 0, g->ch_free = 0, g->nfree_ch = 0;
    aw_reset(w);
    w->awake_dirty = 1;
}

/* ---------------------------------------------------------------- whole world */

typedef struct fnv {
    uint64_t h;
} fnv_t;
static void fnv_bytes(fnv_t *f, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        f->h ^= b[i];
        f->h *= 0x100000001b3ULL;
    }
}
static void fnv_u8(fnv_t *f, uint8_t v) { fnv_bytes(f, &v, 1); }
static void fnv_i8(fnv_t *f, int8_t v) { fnv_u8(f, (uint8_t)v); }
static void fnv_u64(fnv_t *f, uint64_t v) { fnv_bytes(f, &v, 8); }
static void fnv_u32(fnv_t *f, uint32_t v) { fnv_bytes(f, &v, 4); }
static void fnv_f(fnv_t *f, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    fnv_u32(f, u);
}

/* The fields come from the lists in world_int.h (shared with save.c). */
uint64_t sp_world_hash(const sp_world_t *w) {
    fnv_t h = {0xcbf29ce484222325ULL};
#define SP__HASH_SCALAR(t, fld, since) fnv_##t(&h, w->fld);
    SP__WORLD_CLOCK_FIELDS(SP__HASH_SCALAR)
    fnv_u32(&h, w->nslots);
    fnv_u32(&h, w->count);
    fnv_u32(&h, w->nsleeping);
    SP__WORLD_SCALAR_FIELDS(SP__HASH_SCALAR)
#undef SP__HASH_SCALAR
    fnv_u32(&h, w->nfree);
    for (uint32_t k = 0; k < w->nfree; k++) fnv_u32(&h, w->free_list[k]);
    for (uint32_t i = 0; i < w->nslots; i++) {
        fnv_u8(&h, w->kind[i]);
        if (w->kind[i] == SP_KIND_NONE) continue;
        fnv_u64(&h, w->id[i]);
        fnv_u64(&h, w->epoch[i]);
#define SP__HASH_SLOT(t, fld) fnv_##t(&h, w->fld[i]);
#define SP__HASH_SLOTS(t, fld, n) \
    for (size_t k = 0; k < (n); k++) fnv_##t(&h, w->fld[(size_t)i * (n) + k]);
        SP__WORLD_SLOT_FIELDS(SP__HASH_SLOT, SP__HASH_SLOTS)
#undef SP__HASH_SLOT
#undef SP__HASH_SLOTS
    }
    /* The departure memory: a sum of mixed (id, epoch) pairs, independent of
     * the map's layout. */
    uint64_t dep = 0;
    if (w->departed.e != NULL)
        for (uint32_t k = 0; k <= w->departed.mask; k++)
            if (w->departed.e[k].key != 0)
                dep += mix64(w->departed.e[k].key ^ mix64(w->departed.e[k].val + 0x9e3779b97f4a7c15ULL));
    fnv_u32(&h, w->departed.n);
    fnv_u64(&h, dep);
    return h.h;
}

/* ---------------------------------------------------------------- hand-off */

int sp_entity_state_equal(const sp_entity_state_t *a, const sp_entity_state_t *b) {
    if (a->id != b->id || a->epoch != b->epoch || a->kind != b->kind) return 0;
    /* By bytes per field: floats compare by bit pattern. */
#define SP__EQ_SLOT(t, fld) \
    if (memcmp(&a->fld, &b->fld, sizeof a->fld) != 0) return 0;
#define SP__EQ_SLOTS(t, fld, n) SP__EQ_SLOT(t, fld)
    SP__WORLD_SLOT_FIELDS(SP__EQ_SLOT, SP__EQ_SLOTS)
#undef SP__EQ_SLOT
#undef SP__EQ_SLOTS
    return 1;
}

uint64_t sp_entity_state_hash(const sp_entity_state_t *s) {
    fnv_t h = {0xcbf29ce484222325ULL};
    fnv_u64(&h, s->id);
    fnv_u8(&h, s->kind);
#define SP__CH_SLOT(t, fld) fnv_##t(&h, s->fld);
#define SP__CH_SLOTS(t, fld, n) \
    for (size_t k = 0; k < (n); k++) fnv_##t(&h, s->fld[k]);
    SP__WORLD_SLOT_FIELDS(SP__CH_SLOT, SP__CH_SLOTS)
#undef SP__CH_SLOT
#undef SP__CH_SLOTS
    /* FNV's low bits mix poorly into a sum: finalise. */
    return mix64(h.h);
}

/* Slot i -> state (i live). */
static void state_of(const sp_world_t *w, uint32_t i, sp_entity_state_t *out) {
    memset(out, 0, sizeof *out);
    out->id = w->id[i];
    out->epoch = w->epoch[i];
    out->kind = w->kind[i];
#define SP__EX_SLOT(t, fld) out->fld = w->fld[i];
#define SP__EX_SLOTS(t, fld, n) \
    for (size_t k = 0; k < (n); k++) out->fld[k] = w->fld[(size_t)i * (n) + k];
    SP__WORLD_SLOT_FIELDS(SP__EX_SLOT, SP__EX_SLOTS)
#undef SP__EX_SLOT
#undef SP__EX_SLOTS
}

uint64_t sp_world_hash_canonical(const sp_world_t *w) {
    uint64_t sum = 0;
    sp_entity_state_t st;
    for (uint32_t i = 0; i < w->nslots; i++) {
        if (w->kind[i] == SP_KIND_NONE) continue;
        state_of(w, i, &st);
        sum += sp_entity_state_hash(&st);
    }
    return sum;
}

int sp_world_export(const sp_world_t *w, sp_entity_id_t id, sp_entity_state_t *out) {
    if (w == NULL || out == NULL) return SP_EINVAL;
    uint32_t i;
    if (!sp__slot_of(w, id, &i)) return SP_ENOENT;
    state_of(w, i, out);
    return 0;
}

int sp_world_departed_epoch(const sp_world_t *w, sp_entity_id_t id, uint64_t *epoch) {
    if (w == NULL || epoch == NULL) return SP_EINVAL;
    const sp__mapent_t *e = sp__map_find(&w->departed, id);
    if (e == NULL) return SP_ENOENT;
    *epoch = e->val;
    return 0;
}

int sp_world_forget_departed(sp_world_t *w, sp_entity_id_t id) {
    if (w == NULL) return SP_EINVAL;
    if (sp__map_find(&w->departed, id) == NULL) return SP_ENOENT;
    sp__map_erase(&w->departed, id);
    return 0;
}

int sp_world_note_departed(sp_world_t *w, sp_entity_id_t id, uint64_t epoch) {
    uint32_t i;
    if (w == NULL || id == 0 || sp__slot_of(w, id, &i)) return SP_EINVAL;
    sp__mapent_t *e = sp__map_find(&w->departed, id);
    if (e != NULL) {
        if (epoch > e->val) e->val = epoch;
        return 0;
    }
    int rc = sp__map_reserve(w->alloc, &w->departed, 1);
    if (rc != 0) return rc;
    sp__map_insert(&w->departed, id, epoch);
    return 0;
}

int sp_world_depart(sp_world_t *w, sp_entity_id_t id, uint64_t epoch) {
    if (w == NULL) return SP_EINVAL;
    uint32_t i;
    if (!sp__slot_of(w, id, &i)) return SP_ENOENT;
    if (epoch <= w->epoch[i]) return SP_EINVAL;
    /* An id is never both live and remembered as departed (import erases
     * the memory), so this is a fresh key; checked anyway. */
    sp__mapent_t *e = sp__map_find(&w->departed, id);
    SP_ASSERT(e == NULL);
    if (e != NULL) {
        e->val = epoch;
    } else {
        int rc = sp__map_reserve(w->alloc, &w->departed, 1);
        if (rc != 0) return rc;
        sp__map_insert(&w->departed, id, epoch);
    }
    slot_free(w, i);
    return 0;
}

/* Write state *in into the fresh slot i (from slot_alloc_for) and make it
 * live under its own id. */
static void slot_fill(sp_world_t *w, uint32_t i, const sp_entity_state_t *in) {
#define SP__IM_SLOT(t, fld) w->fld[i] = in->fld;
#define SP__IM_SLOTS(t, fld, n) \
    for (size_t k = 0; k < (n); k++) w->fld[(size_t)i * (n) + k] = in->fld[k];
    SP__WORLD_SLOT_FIELDS(SP__IM_SLOT, SP__IM_SLOTS)
#undef SP__IM_SLOT
#undef SP__IM_SLOTS
    w->epoch[i] = in->epoch;
    if (in->flags & SP_ENT_SLEEPING) w->nsleeping++;
    slot_commit_id(w, i, in->kind, in->id);
}

int sp_world_import(sp_world_t *w, const sp_entity_state_t *in) {
    if (w == NULL || in == NULL || in->id == 0) return SP_EINVAL;
    if (!sp__state_ok(&w->def, in)) return SP_EINVAL;
    if ((in->flags & SP_ENT_SLEEPING) && !w->sleep_enabled) return SP_EINVAL;
    uint32_t old;
    int present = sp__slot_of(w, in->id, &old);
    if (present) {
        if (w->epoch[old] == in->epoch) return SP_WORLD_IMPORT_DUPLICATE;
        if (w->epoch[old] > in->epoch) return SP_WORLD_IMPORT_STALE;
    } else {
        const sp__mapent_t *d = sp__map_find(&w->departed, in->id);
        if (d != NULL && d->val >= in->epoch) return SP_WORLD_IMPORT_STALE;
    }
    /* Room first (slot, id map, static grid), so nothing below fails. A
     * replaced entity frees its slot, which the LIFO free list hands back. */
    int sleeping = (in->flags & SP_ENT_SLEEPING) != 0;
    if (sleeping) {
        int rc = sg_reserve(w, 1);
        if (rc != 0) return rc;
    }
    /* A replaced entity frees its slot first; the LIFO free list hands it
     * straight back and the id map has the room it left, so the allocation
     * cannot fail then. */
    if (present) slot_free(w, old);
    uint32_t i;
    int rc = slot_alloc_for(w, 0, &i);
    SP_ASSERT(rc == 0 || !present);
    if (rc != 0) return rc;
    sp__map_erase(&w->departed, in->id);
    slot_fill(w, i, in);
    uint64_t node = in->id >> SP_WORLD_ID_COUNTER_BITS;
    if (node == w->def.id_node && in->id >= w->next_id && in->id < w->id_end) w->next_id = in->id + 1;
    if (sleeping) {
        /* Into the kept grid (room reserved above). The counters are what
         * the full rebuild that used to run here left, so the hashed
         * state (and the ticks of later promotions) stay as they were. */
        sg_epoch_next(&w->sg);
        sg_insert(w, i);
        w->stale = 0;
        w->last_rebuild = w->tick;
        w->awake_dirty = 1;
    }
    return 0;
}

int sp_world_populate_demo(sp_world_t *w, uint32_t n_asteroids, uint32_t n_npcs) {
    if (w == NULL) return SP_EINVAL;
    int rc = 0;
    sp_entity_id_t id;
    /* With a region, every entity is still drawn (the same draws as for all
     * of space) and those outside are dropped: daemons that populate from
     * one seed hold one world between them. */
    for (uint32_t k = 0; k < n_asteroids; k++) {
        rc = spawn_demo_asteroid(w, &id);
        if (rc != 0) return rc;
        keep_spawn(w, id);
    }
    for (uint32_t k = 0; k < n_npcs; k++) {
        rc = spawn_demo_npc(w, &id);
        if (rc != 0) return rc;
        keep_spawn(w, id);
    }
    if (w->sleep_enabled) rc = sp__world_rebuild_static(w, 1);
    return rc;
}

int sp_world_foreach(const sp_world_t *w, int (*fn)(void *ctx, sp_entity_id_t id), void *ctx) {
    for (uint32_t i = 0; i < w->nslots; i++) {
        if (w->kind[i] == SP_KIND_NONE) continue;
        int r = fn(ctx, id_of(w, i));
        if (r != 0) return r;
    }
    return 0;
}
