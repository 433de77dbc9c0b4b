/* sim/handoff.h: the few world hooks the cluster layer (src/cluster) needs
 * beyond world.h's hand-off API: a cheap scan of positions to find the
 * entities that left this process's cells, the departure memory for the
 * audit, and the id floor of a restarted process.
 *
 * Same rules as world.h: owner thread only, no allocation, no I/O. Kept
 * apart from world.c (whose step other work changes) on purpose: these read
 * the slot arrays of world_int.h and change nothing but next_id. */
#ifndef SP_SIM_HANDOFF_H
#define SP_SIM_HANDOFF_H

#include <stdint.h>

#include "sim/world.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Visit every live entity in slot order with its id and its x/y position
 * (world units, as sp_world_inspect would give them). Stops early when fn
 * returns non-zero (that value is returned). fn must not modify the world:
 * collect the ids and act after the scan. Cost: O(slots), two float loads
 * per entity, no id-map probe (what sp_world_foreach + inspect would cost). */
SP_API int sp_world_foreach_xy(const sp_world_t *w, int (*fn)(void *ctx, sp_entity_id_t id, float x, float y),
                               void *ctx);

/* Visit the departure memory (id, epoch of the hand-off out), in no
 * particular order. fn must not modify the world. Returns as above. O(memory). */
SP_API int sp_world_foreach_departed(const sp_world_t *w, int (*fn)(void *ctx, sp_entity_id_t id, uint64_t epoch),
                                     void *ctx);

/* Move the id counter of this world's node to at least `counter` (1 ..
 * 2^43 - 1), so that ids minted from now on are >= (node << 43) | counter.
 * For a process restarted without a checkpoint: its new incarnation starts
 * past every id an earlier one could have minted (see src/cluster). Never
 * moves the counter back. Returns 0 or SP_EINVAL (counter out of range). */
SP_API int sp_world_set_id_floor(sp_world_t *w, uint64_t counter);

/* ---------------------------------------------------------------- across a border
 * A ship here acting on an entity another world holds (a ghost: the copy the
 * other process sends of its entities near the border). The action's half
 * that concerns the ship runs here, with the same rules and roll as the
 * in-world action; its effect on the target is the caller's to carry to the
 * target's world, which applies it with sp_world_damage / sp_world_deplete.
 * Owner thread, like the rest of world.h. */

/* What the ghost says of the target. */
typedef struct sp_remote_target {
    sp_entity_id_t id;
    uint8_t kind;       /* SP_KIND_SHIP or SP_KIND_ASTEROID */
    int8_t resource;    /* asteroids: 0..3 */
    uint32_t owner;
    float pos[3];
    float radius;
    float amount;       /* asteroids: what is left */
} sp_remote_target_t;

/* sp_world_fire() at a target this world does not hold: the shooter's checks
 * (a ship; cooldown; range to t->pos), its cooldown, the same hit chance and
 * roll, a WeaponFired event. No tracer, no damage here: deliver out->damage
 * to the target's world (sp_world_damage). out->destroyed is 0 (only that
 * world knows). Returns as sp_world_fire. */
SP_API int sp_world_fire_remote(sp_world_t *w, sp_entity_id_t shooter, const sp_remote_target_t *t,
                                sp_fire_result_t *out);
/* Damage dealt by another world's shooter `by`: hp -= dmg; at 0 or below the
 * entity is destroyed (cause weapon, by; its ENTITY_DESTROYED event).
 * *destroyed (may be NULL) says so. Returns 0, SP_ENOENT (gone meanwhile),
 * SP_EINVAL (not a ship or asteroid, dmg negative or not finite), SP_ENOMEM. */
SP_API int sp_world_damage(sp_world_t *w, sp_entity_id_t id, float dmg, sp_entity_id_t by, int *destroyed);
/* sp_world_mine() at an asteroid another world holds: the ship's checks
 * (range to the ghost's surface, cooldown), min(mining_amount, t->amount)
 * into its cargo, a ResourceMined event. Take out->amount off the asteroid
 * in its world (sp_world_deplete). Two ships mining one asteroid across a
 * border in the same tick may together take more than it had (each saw the
 * same ghost). Returns as sp_world_mine. */
SP_API int sp_world_mine_remote(sp_world_t *w, sp_entity_id_t ship, const sp_remote_target_t *t,
                                sp_mine_result_t *out);
/* Take `amount` off asteroid id (mined by another world's ship `by`): at most
 * what it has (*taken, may be NULL); empty, it is destroyed (cause
 * depleted). Returns 0, SP_ENOENT, SP_EINVAL, SP_ENOMEM. */
SP_API int sp_world_deplete(sp_world_t *w, sp_entity_id_t id, float amount, sp_entity_id_t by, float *taken);

/* A body another world holds near this world's border (a ghost), for
 * collisions across the border. */
typedef struct sp_remote_body {
    sp_entity_id_t id;
    uint8_t kind;       /* SP_KIND_SHIP or SP_KIND_ASTEROID */
    uint32_t owner;
    float pos[3], vel[3];
    float radius;
} sp_remote_body_t;

/* Collide this world's ships and asteroids with bodies another world holds,
 * after a step: for each overlapping pair, this side's share of what the
 * step's contact resolution does (impulse by both masses, collision damage
 * to a ship, positional correction by inverse mass), a COLLISION event, and
 * a ship at 0 hp destroyed (cause collision, by the body). The other world
 * does the same for its side, with this world's entities as its ghosts, so
 * each keeps its own entity's state (the pair's states are a step apart, so
 * momentum is kept only as well as the ghosts are fresh). Returns the
 * contacts (>= 0), SP_EINVAL, SP_ENOMEM. Cost: O(slots) with a hash grid of
 * the n bodies (8 cells a slot); its 2 arrays (~3 x 4 bytes a body) come
 * from the world's allocator and go back before it returns. */
SP_API int sp_world_collide_remote(sp_world_t *w, const sp_remote_body_t *b, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* SP_SIM_HANDOFF_H */
