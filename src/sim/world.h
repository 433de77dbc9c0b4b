/* sim/world.h: the authoritative space world (ships, asteroids, projectiles).
 *
 * Plain C11 on libspacesim: no libuv, no msgpack, no I/O. The daemon's loop
 * thread owns one sp_world_t and is its only writer; tests and benchmarks step
 * it directly. Box2D-style API: a definition struct filled by
 * sp_world_def_default(), opaque world, entity ids passed by value, transient
 * events valid until the next step.
 *
 * Entities live in structure-of-arrays storage indexed by a slot index. An id
 * is ((uint64)generation << 32) | index with generation >= 1, so 0 is the null
 * id. Freeing a slot bumps its generation, so a stale id (generation mismatch)
 * is reported as SP_ENOENT and never reaches another entity.
 *
 * Units: world units (think metres), seconds, hit points. The world is the
 * cube [-half_extent, +half_extent]^3; entities reflect off its walls.
 *
 * Determinism: the world is a pure function of (def, the sequence of calls).
 * No thread timing, clock or address enters the state; sp_world_hash()
 * digests everything that influences the future (entity state, generations,
 * free list, rng, tick). The broadphase may use threads (def.grid_threads) but
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

/* Entity ids (sp_entity_id_t is uint64_t, from spacesim/msg.h). */
SP_INLINE sp_entity_id_t sp_id_make(uint32_t index, uint32_t generation) {
    return ((uint64_t)generation << 32) | index;
}
SP_INLINE uint32_t sp_id_index(sp_entity_id_t id) { return (uint32_t)id; }
SP_INLINE uint32_t sp_id_generation(sp_entity_id_t id) { return (uint32_t)(id >> 32); }

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

    int grid_threads;        /* broadphase threads incl. the caller, 1..16; default 1 */
    const sp_allocator_t *allocator; /* NULL = libc; must be thread-safe if frames
                                      * are released on other threads */
} sp_world_def_t;

/* The defaults listed above. Pure; any thread. */
SP_API sp_world_def_t sp_world_def_default(void);

typedef struct sp_world sp_world_t;

/* Create an empty world at tick 0. def NULL = defaults. Returns 0 and *out,
 * or SP_EINVAL (non-finite/negative field, dt <= 0, half_extent <= 0,
 * max_entities 0 or > 2^31, grid_threads out of range), SP_ENOMEM or
 * SP_EAGAIN (grid thread). Allocates; starts grid_threads - 1 threads. */
SP_API int sp_world_create(const sp_world_def_t *def, sp_world_t **out);

/* Free the world and everything it owns (published frames stay valid: they
 * own their memory). NULL is a no-op. Owner thread. */
SP_API void sp_world_free(sp_world_t *w);

/* The definition the world was created with (copied). */
SP_API const sp_world_def_t *sp_world_def(const sp_world_t *w);

/* Current tick (number of completed steps) and live entity count. O(1). */
SP_API uint64_t sp_world_tick(const sp_world_t *w);
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
 * Returns 0 and *out_id, SP_ELIMIT (max_entities), SP_ENOMEM. Amortised O(1). */
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

/* Copy entity `id` into *out. Returns 0, SP_ENOENT, SP_EINVAL. O(1). */
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
 *  6. sleep bookkeeping: asteroids at rest long enough join the static grid
 *     when it is next rebuilt (rebuilt only when enough bodies woke or wait).
 * Events of the step (and of the commands since the previous step) are
 * available from sp_world_events() until the next step.
 * Returns 0, or SP_ENOMEM (the step is then not applied: state unchanged).
 * Cost: O(awake + pairs) plus an O(sleeping) rebuild now and then. */
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

/* ---------------------------------------------------------------- whole world */

/* 64-bit FNV-1a digest of every state that influences the future: tick, rng,
 * slot count, generations and the free list in order, and every live entity's
 * full state in slot order (floats by bit pattern). Two worlds with equal
 * hashes step identically (modulo hash collisions). O(slots). */
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
