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

#ifdef __cplusplus
}
#endif
#endif /* SP_SIM_HANDOFF_H */
