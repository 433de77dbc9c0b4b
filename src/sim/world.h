/* sim/world.h: the authoritative space world (ships, asteroids, projectiles).
 *
 * Plain C11 on libspacesim: no libuv, no msgpack, no I/O. The daemon's loop
 * thread owns one sp_world_t and is its only writer; tests and benchmarks step
 * it directly. Box2D-style API: a definition struct filled by
 * sp_world_def_default(), opaque world, entity ids passed by value, transient
 * events valid until the next step.
 *
 * Entities live in structure-of-arrays storage indexed by a slot index, but
 * an id does not encode its slot: ids are opaque integers, unique over a
 * cluster of worlds and never reused (see "Entity ids" below), found through
 * an id -> slot hash map. 0 is the null id; a stale id (its entity is gone,
 * or it was handed to another world) is reported as SP_ENOENT and never
 * reaches another entity.
 *
 * Units: world units (think metres), seconds, hit points. The world is the
 * cube [-half_extent, +half_extent]^3; entities reflect off its walls.
 *
 * Determinism: the world is a pure function of (def, the sequence of calls).
 * No thread timing, clock or address enters the state; sp_world_hash()
 * digests everything that influences the future (entity state, ids, slot
 * layout, free list, rng, tick, id counter). sp_world_hash_canonical() is
 * the slot-independent digest that a world split over several processes can
 * match. The broadphase may use threads (def.grid_threads) but
 * its pair order is a function of the input alone.
 *
 * Threads: one thread at a time per world (the owner). Frames published with
 * sp_world_publish_frame() (sim/frame.h) are immutable and may be read by any
 * thread while the owner keeps stepping. */
#ifndef SP_SIM_WORLD_H
#define SP_SIM_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "spacesim/common.h"
#include "spacesim/msg.h"
#include "sim/kinds.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The entity-kind and resource lists (SP_ENTITY_KIND_MAP, SP_RESOURCE_MAP)
 * live in sim/kinds.h, which proto includes without the world. */

/* Entity flags (uint8). The frame copies them; the AI reads them. */
#define SP_ENT_NPC 0x01          /* server-owned ship (owner 0) driven by the AI */
#define SP_ENT_SLEEPING 0x02     /* asteroid at rest, in the static grid, not integrated */
#define SP_ENT_MINER 0x04        /* NPC role: mining drone */
#define SP_ENT_FIGHTER 0x08      /* NPC role: attacks nearby ships */
#define SP_ENT_WEAPON_READY 0x10 /* ship: weapon cooldown is 0 (derived each step/command) */
#define SP_ENT_MINE_READY 0x20   /* ship: mining cooldown is 0 (derived) */
/* An NPC with neither MINER nor FIGHTER patrols. */

/* Entity ids (sp_entity_id_t is uint64_t, from spacesim/msg.h).
 *
 * An id is minted as (node << SP_WORLD_ID_COUNTER_BITS) | counter, where node
 * is the world's def.id_node (0..SP_WORLD_MAX_NODES-1: one per process of a
 * cluster) and counter counts from 1 and only goes up (it is world state:
 * saved in checkpoints, hashed). So ids of different nodes never collide, an
 * id is never reused, 0 is never valid, and every minted id is below 2^53
 * (SP_WORLD_ID_LIMIT), which JavaScript's doubles represent exactly. Outside
 * the world an id is opaque: clients must not derive anything from its bits.
 * An entity keeps its id when it moves to another world (sp_world_import).
 * Checkpoints of save version < 4 kept their old (generation << 32 | index)
 * ids; those stay as they were (see sim/save.h). */
#define SP_WORLD_ID_COUNTER_BITS 43
#define SP_WORLD_MAX_NODES 1024u
#define SP_WORLD_ID_LIMIT (1ull << 53)

/* "ship", "asteroid", "projectile"; NULL for other values. Static storage. */
SP_API const char *sp_entity_kind_name(int kind);
/* "iron", "nickel", "ice", "platinum"; NULL for other values. */
SP_API const char *sp_resource_name(int resource);
/* Parse a resource name of len bytes (no NUL needed). Returns the index
 * (0..3) or SP_ENOENT. */
SP_API int sp_resource_parse(const char *name, size_t len);

/* ---------------------------------------------------------------- definition */
typedef struct sp_world_def {
    uint64_t seed;           /* rng seed: demo population, spawn points, hit rolls */
    float half_extent;       /* world is [-h, h]^3, world units; default 2000 */
    float dt;                /* fixed step, seconds; default 1/60 */
    uint32_t max_entities;   /* slot limit; spawns past it give SP_ELIMIT; default 1<<20 */

    float ship_radius;       /* default 2 */
    float ship_mass;         /* default 10 */
    float ship_hp;           /* default 100 */
    float ship_max_speed;    /* |desired velocity| is clamped to this; default 60 units/s */
    float ship_max_accel;    /* steering limit, units/s^2; default 40 */

    float weapon_range;      /* centre-to-centre, units; default 150 */
    float weapon_damage;     /* hp per hit; default 10 */
    uint32_t weapon_cooldown_ticks; /* ticks between shots; default 30 */

    float mining_range;      /* surface-to-surface gap allowed, units; default 20 */
    float mining_amount;     /* units per successful mine; default 5 */
    uint32_t mining_cooldown_ticks; /* default 15 */

    float asteroid_radius_min, asteroid_radius_max; /* default 3, 12 */
    float asteroid_amount_min, asteroid_amount_max; /* resource units; default 50, 400 */
    float asteroid_density;  /* mass = density * r^3; default 1 */
    float asteroid_hp_per_radius; /* hp = this * r; default 20 */
    float asteroid_damping;  /* linear damping of awake asteroids, 1/s; default 0.5 */
    float sleep_speed;       /* below this speed (units/s) ... default 0.05 */
    uint32_t sleep_ticks;    /* ... for this many ticks, an asteroid may sleep; default 30 */

    float restitution;       /* contact restitution 0..1; default 0.4 */
    float collision_damage;  /* hp per unit/s of closing speed above the threshold; default 0.5 */
    float collision_damage_threshold; /* units/s; default 10 */

    float projectile_speed;  /* tracer speed, units/s; default 400 */
    uint32_t projectile_ttl_ticks; /* tracer lifetime; default 20 */
    int spawn_projectiles;   /* 1 (default): fire spawns a visual tracer entity */

    uint32_t id_node;        /* id space of this world, 0..SP_WORLD_MAX_NODES-1: each world
                              * of a cluster gets its own, so their ids never
                              * collide; default 0 (a single process) */
    int grid_threads;        /* broadphase threads incl. the caller, 1..16; default 1 */
    const sp_allocator_t *allocator; /* NULL = libc; must be thread-safe if frames
                                      * are released on other threads */
} sp_world_def_t;

/* The defaults listed above. Pure; any thread. */
SP_API sp_world_def_t sp_world_def_default(void);

typedef struct sp_world sp_world_t;

/* Create an empty world at tick 0. def NULL = defaults. Returns 0 and *out,
 * or SP_EINVAL (non-finite/negative field, dt <= 0, half_extent <= 0,
 * max_entities 0 or > 2^31, id_node >= SP_WORLD_MAX_NODES, grid_threads
 * out of range), SP_ENOMEM or
 * SP_EAGAIN (grid thread). Allocates; starts grid_threads - 1 threads. */
SP_API int sp_world_create(const sp_world_def_t *def, sp_world_t **out);

/* Free the world and everything it owns (published frames stay valid: they
 * own their memory). NULL is a no-op. Owner thread. */
SP_API void sp_world_free(sp_world_t *w);

/* The definition the world was created with (copied). */
SP_API const sp_world_def_t *sp_world_def(const sp_world_t *w);

/* Current tick (number of completed steps) and live entity count. O(1). */
SP_API uint64_t sp_world_tick(const sp_world_t *w);
/* Set the tick the world steps from (a cluster daemon joining a running
 * cluster takes its tick; cluster.h). For a world that has not stepped in
 * this process yet: nothing already made from the world (frames, AI
 * rounds) is rebased. O(1). */
SP_API void sp_world_set_tick(sp_world_t *w, uint64_t tick);
SP_API uint32_t sp_world_count(const sp_world_t *w);
/* Live entities of one kind; sleeping asteroids. O(1). */
SP_API uint32_t sp_world_count_kind(const sp_world_t *w, int kind);
SP_API uint32_t sp_world_count_sleeping(const sp_world_t *w);

/* ---------------------------------------------------------------- commands
 * Applied by the owner thread between steps. None checks ownership: the
 * daemon compares sp_world_inspect().owner with the session. Every command
 * leaves the world unchanged on failure. Errors common to all:
 *   SP_EINVAL  NULL pointer, non-finite number, wrong kind of entity
 *   SP_ENOENT  no such entity (null, stale or out-of-range id) */

/* Spawn a ship for `owner` (session id; 0 = NPC, which also sets SP_ENT_NPC).
 * role: 0, SP_ENT_MINER or SP_ENT_FIGHTER (NPC roles; ignored for players).
 * pos NULL = a deterministic random point from the world rng. Position is
 * clamped into the world. Full hp, zero velocity, weapon ready.
 * Returns 0 and *out_id (a fresh id, see "Entity ids"), SP_ELIMIT
 * (max_entities, or the node's 2^43 ids used up), SP_ENOMEM. Amortised O(1). */
SP_API int sp_world_spawn_ship(sp_world_t *w, uint32_t owner, uint8_t role, const float *pos,
                               sp_entity_id_t *out_id);

/* Spawn an asteroid at pos (NULL = random) of radius r (<= 0 = random in the
 * def range), holding `amount` (<= 0 = random) units of `resource` (0..3;
 * -1 = random). It starts awake at rest and falls asleep within
 * def.sleep_ticks + a rebuild. Returns as sp_world_spawn_ship(). */
SP_API int sp_world_spawn_asteroid(sp_world_t *w, const float *pos, float r, float amount,
                                   int resource, sp_entity_id_t *out_id);

/* Set the desired velocity of a ship (units/s). The vector is clamped to
 * ship_max_speed (direction kept); the step steers toward it with acceleration
 * at most ship_max_accel. If clamped_out is non-NULL it receives the stored
 * vector. Returns 0, SP_ENOENT, SP_EINVAL (not a ship, non-finite). O(1). */
SP_API int sp_world_set_desired_velocity(sp_world_t *w, sp_entity_id_t ship, const float v[3],
                                         float clamped_out[3]);

/* Largest velocity component sp_world_set_velocity() accepts, units/s. */
#define SP_WORLD_MAX_VELOCITY 1e6f

/* Set an entity's current velocity directly (tests, admin tools, scripted
 * scenarios); wakes a sleeping asteroid. Not clamped to the ship limit.
 * Returns 0, SP_ENOENT, SP_EINVAL (non-finite or a component beyond
 * +-SP_WORLD_MAX_VELOCITY). O(1). */
SP_API int sp_world_set_velocity(sp_world_t *w, sp_entity_id_t id, const float v[3]);

typedef struct sp_fire_result {
    int hit;      /* 1 when the shot hit */
    float damage; /* hp removed from the target (0 on a miss) */
    int destroyed; /* 1 when the target was destroyed by this shot */
} sp_fire_result_t;

/* Hitscan shot from ship `shooter` at entity `target` (ship or asteroid).
 * Checks, in order: shooter is a live ship (SP_ENOENT / SP_EINVAL), target is
 * a live ship or asteroid other than the shooter (SP_ENOENT / SP_EINVAL),
 * weapon cooldown is 0 (SP_EBUSY), centre distance <= weapon_range
 * (SP_ERANGE). Then the cooldown restarts and a deterministic roll (a hash of
 * seed, tick, shooter and target: independent of call order) decides the hit,
 * probability 1 - 0.5 * dist / range. A hit removes weapon_damage hp; at
 * hp <= 0 the target is destroyed at once (its id goes stale). Records a
 * WEAPON_FIRED event (and ENTITY_DESTROYED) and, if enabled, spawns a tracer
 * projectile (no extra damage). Returns 0 and *out, or an error (no change). */
SP_API int sp_world_fire(sp_world_t *w, sp_entity_id_t shooter, sp_entity_id_t target,
                         sp_fire_result_t *out);

typedef struct sp_mine_result {
    int resource_type; /* 0..3, see SP_RESOURCE_MAP */
    float amount;      /* units moved into the ship's cargo */
    int depleted;      /* 1 when the asteroid became empty and was removed */
} sp_mine_result_t;

/* Mine asteroid `asteroid` with ship `ship`: checks both live and of the
 * right kind (SP_ENOENT / SP_EINVAL), mining cooldown 0 (SP_EBUSY), surface
 * gap <= mining_range (SP_ERANGE). Moves min(mining_amount, remaining) into
 * the ship's cargo; an empty asteroid is removed (ENTITY_DESTROYED event).
 * Records RESOURCE_MINED. Returns 0 and *out, or an error (no change). */
SP_API int sp_world_mine(sp_world_t *w, sp_entity_id_t ship, sp_entity_id_t asteroid,
                         sp_mine_result_t *out);

/* Full record of one entity (what inspect, checkpoints and tests need). */
typedef struct sp_entity_info {
    sp_entity_id_t id;
    uint8_t kind;      /* sp_entity_kind_t */
    uint8_t flags;     /* SP_ENT_* */
    int8_t resource;   /* asteroid: 0..3; others -1 */
    uint32_t owner;    /* session id; 0 = server (NPCs, asteroids, tracers) */
    float pos[3], vel[3], desired_vel[3];
    float radius, mass, hp, max_hp;
    float amount;      /* asteroid: remaining units; others 0 */
    float cargo[SP_RESOURCE_COUNT]; /* ship cargo; zeros for others */
    uint32_t weapon_cooldown, mine_cooldown; /* ticks left */
    uint32_t ttl;      /* projectile: ticks left; others 0 */
    sp_entity_id_t source; /* projectile: the shooter; others 0 */
} sp_entity_info_t;

/* Copy entity `id` into *out. Returns 0, SP_ENOENT, SP_EINVAL. O(1)
 * expected (one id map probe). */
SP_API int sp_world_inspect(const sp_world_t *w, sp_entity_id_t id, sp_entity_info_t *out);

/* Destroy entity `id` now (its id goes stale; an ENTITY_DESTROYED event with
 * cause COMMAND is recorded). Returns 0 or SP_ENOENT. O(1). */
SP_API int sp_world_destroy(sp_world_t *w, sp_entity_id_t id);

/* Apply one SpaceMessage as an NPC intent (messages from the AI workers):
 *  - ShipMovement: set the desired velocity of the NPC ship u.ship_id to
 *    u.velocity (position is informational). SP_EPERM if the ship is not an NPC.
 *  - WeaponFired: sp_world_fire(ship_id, target_id); u.damage is ignored (the
 *    world's weapon decides). SP_EPERM if the shooter is not an NPC.
 *  - ResourceMined: mine, with ship u.ship_id, the nearest asteroid (ties: lower
 *    id) of type u.resource_type within mining range. SP_ERANGE if none.
 *    SP_EPERM if the ship is not an NPC.
 *  - SystemAlert: nothing to do in the world; returns 0.
 * Returns 0 or the error of the underlying command (the daemon counts them;
 * a rejected intent is normal: the world moved on since the frame). */
SP_API int sp_world_apply_msg(sp_world_t *w, const sp_msg_t *m);

/* A cache hint for applying m soon with sp_world_apply_msg: stage 0 brings
 * in the id map entries of the ids m names, stage 1 (a few messages later,
 * when those entries are in cache) the named entities' slot data. No effect
 * on the world or its determinism. Owner thread (it reads the world). A
 * loop over a round's messages runs stage 0 some 8 messages ahead and stage
 * 1 some 4 ahead: the id lookups (random in a map of 16 bytes per entity)
 * were ~12% of the loop's time at 100k entities. */
SP_API void sp_world_prefetch_msg(const sp_world_t *w, const sp_msg_t *m, int stage);

/* ---------------------------------------------------------------- step */

/* Advance one fixed step of def.dt:
 *  1. tick cooldowns; steer ships toward their desired velocity (|dv| <=
 *     max_accel * dt); damp awake asteroids; expire projectiles;
 *  2. integrate positions (sp_f32_integrate3 over the SoA arrays);
 *  3. reflect off the world walls;
 *  4. broadphase: sp_grid over awake collidable bodies (ships, awake
 *     asteroids) + queries of each awake body against the static grid of
 *     sleeping asteroids (static-vs-static pairs are never tested);
 *  5. narrowphase in a fixed order: sphere contacts, impulse with
 *     restitution, mass weighted, positional correction; a sleeping body that
 *     is touched wakes up; collision damage on ships; hp <= 0 destroys;
 *  6. sleep bookkeeping: asteroids at rest long enough are put to sleep in
 *     batches (when enough of them wait, or now and then: the rule reads
 *     only world state), each inserted into the kept static grid.
 * Events of the step (and of the commands since the previous step) are
 * available from sp_world_events() until the next step.
 * Returns 0, or SP_ENOMEM (the step is then not applied: state unchanged).
 * Cost: O(awake + pairs): the awake set is kept as a list (no pass over all
 * slots), the static grid is updated locally (sleep, wake, destroy touch one
 * cell), and each awake body keeps a cache of the sleepers near it, so a
 * body that moved less than a few units queries nothing. An O(slots) layout
 * of the static grid happens only when the sleepers outgrow 4x the count
 * it was laid out for. */
SP_API int sp_world_step(sp_world_t *w);

/* ---------------------------------------------------------------- events */
#define SP_WORLD_EVENT_MAP(X)                                                   \
    X(WEAPON_FIRED, 1, "WeaponFired")       /* subject shooter, other target, value damage, hit */ \
    X(RESOURCE_MINED, 2, "ResourceMined")   /* subject ship, other asteroid, value amount, resource */ \
    X(ENTITY_DESTROYED, 3, "EntityDestroyed") /* subject the destroyed id, other the cause's id, cause */ \
    X(COLLISION, 4, "Collision")            /* subject, other, value closing speed; damage in damage */

typedef enum sp_world_event_type {
#define SP__EV_ENUM(suffix, value, name) SP_EV_##suffix = (value),
    SP_WORLD_EVENT_MAP(SP__EV_ENUM)
#undef SP__EV_ENUM
} sp_world_event_type_t;

/* Why an entity was destroyed (ENTITY_DESTROYED.cause). */
enum { SP_CAUSE_WEAPON = 1, SP_CAUSE_COLLISION = 2, SP_CAUSE_DEPLETED = 3, SP_CAUSE_COMMAND = 4 };

typedef struct sp_world_event {
    uint64_t tick;          /* tick at which it happened (commands: the current tick) */
    sp_entity_id_t subject; /* shooter / miner / destroyed entity / first body */
    sp_entity_id_t other;   /* target / asteroid / cause (0 if none) / second body */
    float value;            /* damage, amount or closing speed */
    float damage;           /* COLLISION: hp taken by each ship involved */
    float pos[3];           /* subject's position when it happened (destroyed: its last one) */
    uint32_t owner;         /* owner of subject (destroyed ships: their owner) */
    uint32_t other_owner;   /* owner of `other` when it happened (0: none or server) */
    uint8_t type;           /* sp_world_event_type_t */
    uint8_t kind;           /* kind of subject */
    uint8_t hit;            /* WEAPON_FIRED: 1 hit, 0 miss */
    int8_t resource;        /* RESOURCE_MINED: 0..3; else -1 */
    uint8_t cause;          /* ENTITY_DESTROYED: SP_CAUSE_* */
} sp_world_event_t;

/* Events recorded by commands since the previous sp_world_step() and by the
 * last step, in the order they happened. The array belongs to the world and
 * is valid until the next sp_world_step() or sp_world_free(); do not keep it.
 * Commands applied after the last step append to the NEXT step's list (they are
 * not visible here until that step). *n receives the count. O(1). */
SP_API const sp_world_event_t *sp_world_events(const sp_world_t *w, size_t *n);

/* "WeaponFired", ...; NULL for unknown. */
SP_API const char *sp_world_event_name(int type);

/* ---------------------------------------------------------------- hand-off
 * Moving an entity between worlds (the processes of a cluster each own one),
 * bit-exact and exactly once. The sender copies the entity with
 * sp_world_export(), gives the copy the hand-off's epoch (larger than the
 * entity's current one; a cell's ownership revision or simply epoch + 1),
 * removes it with sp_world_depart() at that epoch and sends the copy; the
 * receiver applies it with sp_world_import(). Delivery may repeat and
 * reorder: import judges by epoch, never by "first time seen", so applying
 * a message twice, or an old one late, changes nothing. A failed hand-off is
 * compensated by importing the copy back into the sender at a higher epoch
 * than the one it departed at. */

/* The per-slot state, field by field: X(type, field) for one value per
 * entity, XA(type, field, n) for n values (type is a width tag u8 i8 u32 u64
 * f; SP__CTYPE_<tag> is its C type). sp_entity_state_t, sp_world_hash(),
 * sp_world_hash_canonical(), checkpoints and export/import are all generated
 * from this one list, so a field added here travels, hashes and saves
 * everywhere (and changes the checkpoint format: bump SP_SAVE_VERSION and
 * keep reading the old one). The names are the world's internal arrays
 * (p* position, v* velocity, dv* desired velocity, wcd/mcd weapon/mining
 * cooldown ticks, rest ticks at rest, source a tracer's shooter id). */
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

/* One entity's full state: what travels in a hand-off. Plain data, copied by
 * value; compare with sp_entity_state_equal() (padding bytes are not state). */
#define SP__STATE_FIELD(t, fld) SP__CTYPE_##t fld;
#define SP__STATE_FIELDS(t, fld, n) SP__CTYPE_##t fld[n];
typedef struct sp_entity_state {
    sp_entity_id_t id; /* never 0 */
    uint64_t epoch;    /* hand-off epoch: 0 for an entity that never moved */
    uint8_t kind;      /* sp_entity_kind_t */
    SP__WORLD_SLOT_FIELDS(SP__STATE_FIELD, SP__STATE_FIELDS)
} sp_entity_state_t;
#undef SP__STATE_FIELD
#undef SP__STATE_FIELDS

/* Import results that are not errors: the message changed nothing and may
 * be acknowledged. DUPLICATE: the entity is here at that very epoch (a
 * redelivery). STALE: the world has seen a newer epoch of this id (the
 * entity is here at a higher epoch, or departed at an epoch >= the
 * message's): an old message arriving late. */
#define SP_WORLD_IMPORT_DUPLICATE 1
#define SP_WORLD_IMPORT_STALE 2

/* Copy entity `id`'s full state into *out (id, epoch, kind, every field of
 * SP__WORLD_SLOT_FIELDS bit for bit; padding zeroed). Changes nothing.
 * Returns 0, SP_ENOENT, SP_EINVAL (NULL). O(1) expected. Owner thread. */
SP_API int sp_world_export(const sp_world_t *w, sp_entity_id_t id, sp_entity_state_t *out);

/* Remove entity `id` because it was handed to another world at `epoch`
 * (which must exceed the entity's current epoch, else SP_EINVAL). Unlike
 * sp_world_destroy() no event is recorded (the entity lives on elsewhere).
 * The world remembers (id, epoch) so that a late or repeated import of that
 * id at an epoch <= `epoch` is answered SP_WORLD_IMPORT_STALE; an import at
 * a higher epoch (the entity coming back) forgets it again. So this memory
 * holds one 16-byte entry per entity that left and has not come back; it is
 * saved in checkpoints. Returns 0, SP_ENOENT, SP_EINVAL, SP_ENOMEM (world
 * unchanged). O(1) expected. */
SP_API int sp_world_depart(sp_world_t *w, sp_entity_id_t id, uint64_t epoch);

/* Apply a hand-off: insert the entity described by *in, keeping its id,
 * epoch and every field bit for bit, into a free slot. Judged by epoch:
 *  - id here at in->epoch: SP_WORLD_IMPORT_DUPLICATE (no change);
 *  - id here at a higher epoch, or departed at an epoch >= in->epoch:
 *    SP_WORLD_IMPORT_STALE (no change);
 *  - id here at a lower epoch: the entity's state is replaced by *in
 *    (newest epoch wins; it may move to another slot), returns 0;
 *  - otherwise inserted (any departure memory of the id is dropped), 0.
 * The state is checked like a checkpoint's slot (kind, finite and bounded
 * values, mass/hp/radius derived exactly as this world's definition spawns
 * them): SP_EINVAL if it fails, if id is 0, or for a sleeping asteroid
 * while sleeping is disabled here. Also SP_ELIMIT (max_entities),
 * SP_ENOMEM; the world is unchanged on every error. An id of this world's own
 * node at or above its counter moves the counter past it. A sleeping
 * asteroid goes into the kept static grid (no rebuild). No event is recorded.
 * O(1) expected otherwise. Owner thread. */
SP_API int sp_world_import(sp_world_t *w, const sp_entity_state_t *in);

/* The epoch at which `id` departed from this world: 0 and *epoch, or
 * SP_ENOENT when it has no departure memory here. O(1) expected. */
SP_API int sp_world_departed_epoch(const sp_world_t *w, sp_entity_id_t id, uint64_t *epoch);

/* Remember `id` as departed at `epoch` although it never lived here: the
 * hand-off layer sends back a hand-off this world could not take (full) at
 * epoch + 1, and a late copy of the original must then be answered
 * SP_WORLD_IMPORT_STALE, not imported (a second life). Keeps the higher of
 * an existing memory and `epoch`. Returns 0, SP_EINVAL (id live here, or
 * 0), SP_ENOMEM (world unchanged). O(1) expected. */
SP_API int sp_world_note_departed(sp_world_t *w, sp_entity_id_t id, uint64_t epoch);

/* Drop the departure memory of `id` (after it, a late import of an old
 * epoch of id is applied again): for the hand-off layer once no message of
 * that id older than its current owner's epoch can arrive any more (acked
 * and past the broker's redelivery and de-duplication windows), or once the
 * entity is known destroyed elsewhere; without it the memory holds one
 * entry per entity that left and never came back. Returns 0 or SP_ENOENT.
 * Never allocates; O(1) expected. */
SP_API int sp_world_forget_departed(sp_world_t *w, sp_entity_id_t id);

/* Field-by-field equality of two states (bit patterns for floats, so -0 and
 * NaN payloads count; padding ignored). Pure. */
SP_API int sp_entity_state_equal(const sp_entity_state_t *a, const sp_entity_state_t *b);

/* 64-bit hash of one entity for the canonical world hash: FNV-1a over id,
 * kind and every SP__WORLD_SLOT_FIELDS field (floats by bit pattern), then
 * a 64-bit finaliser. The epoch is not included (it says how the entity got
 * here, not what it is). Pure. */
SP_API uint64_t sp_entity_state_hash(const sp_entity_state_t *s);

/* Canonical world hash: the sum modulo 2^64 of sp_entity_state_hash() over
 * the live entities. It does not depend on slots, the free list, the rng or
 * how entities were handed around, only on the set of (id, state) pairs, so:
 *  - a cluster's hash is the sum of its worlds' hashes (no gathering or
 *    sorting of ids across processes; each daemon reports one number);
 *  - a world split over processes matches the same world in one process
 *    exactly when every entity has the same state, which holds for worlds
 *    whose evolution does not depend on the split (no contacts across
 *    borders, no respawn, no NPC AI).
 * A sum rather than XOR: an entity present twice adds its hash twice instead
 * of cancelling out, so a duplicate (like a loss) changes the value. An
 * id-ordered digest would need every id in one place. The tick is not part of
 * it: compare hashes taken at the same tick. O(entities). */
SP_API uint64_t sp_world_hash_canonical(const sp_world_t *w);

/* ---------------------------------------------------------------- whole world */

/* 64-bit FNV-1a digest of every state that influences the future: tick, rng,
 * id counter, slot count, the free list in order, every live entity's id,
 * epoch and full state in slot order (floats by bit pattern), and the
 * departure memory (order-independent). Two worlds with equal hashes step
 * identically (modulo hash collisions). It depends on the slot layout, so a
 * split world cannot match it: see sp_world_hash_canonical(). O(slots). */
SP_API uint64_t sp_world_hash(const sp_world_t *w);

/* Populate a demo world deterministically from the seed: n_asteroids
 * asteroids (random radius, resource, amount) asleep, and n_npcs NPC ships
 * (roles cycling miner, fighter, patrol) with random desired velocities.
 * (Respawn is separate: sp_world_set_respawn.)
 * Returns 0, SP_ELIMIT or SP_ENOMEM (entities spawned so far remain). */
SP_API int sp_world_populate_demo(sp_world_t *w, uint32_t n_asteroids, uint32_t n_npcs);

/* Keep a demo world lively: every period_ticks ticks (at the end of each
 * step that reaches a multiple of it), spawn up to per_period NPC ships while
 * fewer than npc_target live (roles cycling miner, fighter, patrol; a random
 * point and cruise velocity) and up to per_period asteroids while fewer than
 * ast_target live (random, born at rest: they sleep at the next static
 * rebuild). All from the world rng, so deterministic. period_ticks 0 = off
 * (the default). The settings and the role counter are world state: hashed
 * and saved. Returns 0 or SP_EINVAL (NULL, a target above max_entities). */
SP_API int sp_world_set_respawn(sp_world_t *w, uint32_t npc_target, uint32_t ast_target, uint32_t period_ticks,
                                uint32_t per_period);

/* The part of space this world holds, for a cluster daemon that owns only
 * some cells: keep(ctx, x, y) is 1 for a point inside. With a region,
 * respawn keeps only what it spawns inside: an entity drawn outside is
 * removed at once (no event; its id is not reused) and respawn draws again,
 * at most 4 * per_period draws of each kind per period, so each daemon tops
 * up its own part; sp_world_populate_demo makes the same draws as for all
 * of space and keeps those inside, so daemons that populate from one seed
 * hold one world between them. Set it before populating. NULL (the default) is all of space. Daemon settings, not
 * world state: not hashed, not saved. keep must be cheap and must not
 * touch the world (the cluster's counts the draws it is asked about). */
SP_API void sp_world_set_region(sp_world_t *w, int (*keep)(void *ctx, float x, float y), void *ctx);

/* Live NPC ships (owner 0). O(1). */
SP_API uint32_t sp_world_count_npc(const sp_world_t *w);

/* Visit live entity ids in slot order; stops early when fn returns non-zero
 * (that value is returned). fn must not modify the world. */
SP_API int sp_world_foreach(const sp_world_t *w, int (*fn)(void *ctx, sp_entity_id_t id),
                            void *ctx);

/* Testing/bench knob: keep every asteroid awake (no sleeping, no static grid)
 * when on != 0; wakes all sleepers now. Changes behaviour only in which pairs
 * are tested (static-vs-static pairs then are), so the hash may differ. */
SP_API void sp_world_set_sleep_enabled(sp_world_t *w, int on);

#ifdef __cplusplus
}
#endif
#endif /* SP_SIM_WORLD_H */
