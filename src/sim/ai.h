/* sim/ai.h: NPC decisions as pure functions of an immutable frame.
 *
 * The daemon's worker threads call sp_ai_run_chunk() on a published frame;
 * the NPC ships (frame->npc_rows) are split into nchunks contiguous chunks and
 * each call decides for one chunk. Output is a list of SpaceMessages (NPC
 * intents) that the loop later applies with sp_world_apply_msg() after sorting
 * by sp_msg_order_cmp(): messages are stamped {tick, origin = chunk, seq =
 * 0, 1, 2, ...}, so the result is the same whichever thread ran which chunk.
 *
 * Behaviours (by role flag):
 *  - miner (SP_ENT_MINER): nearest asteroid within the sense radius; if within
 *    mining range and MINE_READY: ResourceMined intent (type of that asteroid,
 *    amount = frame->mining_amount) and a stop; else approach it (arrive).
 *  - fighter (SP_ENT_FIGHTER): nearest other ship within the sense radius; if
 *    within weapon range and WEAPON_READY: WeaponFired intent; keep a standoff
 *    distance (approach / back off).
 *  - patrol (neither): fly toward a waypoint that changes every ~10 s, derived
 *    from a hash of (id, tick / period): no state outside the frame.
 * Every NPC in the chunk gets one ShipMovement (desired velocity) per call.
 *
 * Threads: pure; any thread; any number of calls at once on the same frame
 * (the caller holds a frame reference). Never allocates; uses only out. */
#ifndef SP_SIM_AI_H
#define SP_SIM_AI_H

#include <stddef.h>
#include <stdint.h>

#include "sim/frame.h"
#include "spacesim/msg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sensing radius of NPCs, world units. */
#define SP_AI_SENSE_RADIUS 300.0f
/* Ticks between patrol waypoint changes. */
#define SP_AI_PATROL_PERIOD 600u
/* Upper bound of messages per NPC per call (movement + one action). */
#define SP_AI_MAX_MSGS_PER_NPC 2u

/* Rows [*first, *end) of f->npc_rows handled by chunk `chunk` of `nchunks`
 * (balanced contiguous split). nchunks 0 is treated as 1. Pure. */
SP_API void sp_ai_chunk_range(const sp_frame_t *f, uint32_t chunk, uint32_t nchunks,
                              uint32_t *first, uint32_t *end);

/* Output capacity that always suffices for that chunk:
 * SP_AI_MAX_MSGS_PER_NPC * NPCs in the chunk. Pure. */
SP_API size_t sp_ai_chunk_max_msgs(const sp_frame_t *f, uint32_t chunk, uint32_t nchunks);

/* Decide for chunk `chunk` of `nchunks` of the frame's NPCs. Messages are
 * stamped (tick, origin = chunk, seq = 0..n-1) and written to out[0..n).
 * tick: the tick stamped on the messages, normally f->tick (the daemon applies
 * them at a later tick in sp_msg_order_cmp order); also the patrol clock.
 * Returns 0 and *n_out, SP_EINVAL (NULL, chunk >= nchunks) or SP_EMSGSIZE
 * when cap < sp_ai_chunk_max_msgs() (nothing meaningful written).
 * Cost: one sp_frame_visit_sphere() per miner/fighter (O(entities near it),
 * every one within SP_AI_SENSE_RADIUS examined), O(1) per patrol. */
SP_API int sp_ai_run_chunk(const sp_frame_t *f, uint32_t chunk, uint32_t nchunks, uint64_t tick,
                           sp_msg_t *out, size_t cap, size_t *n_out);

/* sp_ai_run_chunk() with the ships and asteroids another process holds near
 * this world's border (ghosts, a frame of their rows; NULL: none) in the
 * NPCs' view: a fighter's nearest ship, a miner's nearest asteroid may be a
 * ghost. A WeaponFired intent then names an id this world does not hold, a
 * ResourceMined intent finds no asteroid here: the caller acts on the
 * ghost (cluster.h). Same rules otherwise; pure. */
SP_API int sp_ai_run_chunk_ghosts(const sp_frame_t *f, const sp_frame_t *ghosts, uint32_t chunk, uint32_t nchunks,
                                  uint64_t tick, sp_msg_t *out, size_t cap, size_t *n_out);

#ifdef __cplusplus
}
#endif
#endif /* SP_SIM_AI_H */
