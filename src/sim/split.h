/* sim/split.h: a one-process world cut into the worlds of a cluster, and a
 * cluster's worlds merged back into one (issue 10, point 7: "a tool splits a
 * one-process checkpoint into a cluster's and merges it back"; the tool is
 * src/cluster/ckpt_tool.c, `spacesim-ckpt`).
 *
 * What a part is: an empty world that continues the source's clock (same
 * definition but id_node, same tick, respawn settings scaled to its share,
 * role counter), then every entity the caller's owner function gives to its
 * node, imported with its id, epoch and full state bit for bit
 * (sp_world_export/import). So:
 *  - the sum of the parts' sp_world_hash_canonical() equals the source's,
 *    and their counts add up to its count (each entity in exactly one part);
 *  - a part of node k mints ids in k's space only (the source's node keeps
 *    its counter, so nothing minted later collides with an old id);
 *  - the rng: the source's node keeps the source's state; any other node
 *    gets the source's state mixed with its node number (splitmix64), so the
 *    parts do not draw the same numbers. Worlds whose evolution does not
 *    depend on the split (sp_world_hash_canonical's conditions) step to the
 *    same canonical hash split or whole.
 * What a part is not: the source's departure memory is not copied (a
 * one-process world has none that matters: nobody will hand those ids back
 * to a part), and the owner's annex (sessions) is the caller's business.
 *
 * Merging takes worlds at one tick with one definition (id_node aside) and
 * makes one world of node `node` holding every entity of every part (an id
 * in two parts is refused: SP_EINVAL, the merged world is not made), its
 * clock and rng from the part of that node (else the first), respawn
 * targets summed, and its id counter past every id of its node in any part.
 * Departure memories are dropped: merge the parts of a cluster whose
 * hand-offs are quiet (no message in flight: `spacesim-cells audit` quiet),
 * else an entity in flight is in no part and is lost.
 *
 * Threads: the owner thread of every world involved. Cost: O(entities of the
 * source) per part; O(entities) for a merge. */
#ifndef SP_SIM_SPLIT_H
#define SP_SIM_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "sim/world.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which node owns the point (x, y) (world units): the cluster's cell map. */
typedef uint32_t (*sp_split_owner_fn)(void *ctx, float x, float y);

/* The part of node `node` (< SP_WORLD_MAX_NODES) of src: see above.
 * share_lo / share_hi / share_den (lo <= hi <= den, den > 0): this part's
 * share of the respawn targets, as the range [lo, hi) of den units; a
 * target t becomes floor(t * hi / den) - floor(t * lo / den), so parts
 * given consecutive ranges covering [0, den) sum to t exactly (the tool
 * gives each node its number of cells). Returns 0 and *out (the caller
 * frees it), SP_EINVAL (NULL, bad node or share), SP_ENOMEM, SP_ELIMIT;
 * *out untouched on failure. grid_threads as sp_world_load(). */
SP_API int sp_world_part(const sp_world_t *src, uint32_t node, sp_split_owner_fn owner, void *ctx,
                         uint32_t share_lo, uint32_t share_hi, uint32_t share_den, int grid_threads,
                         sp_world_t **out);

/* Merge parts[0..n) (n >= 1) into one world of node `node`: see above.
 * Returns 0 and *out (the caller frees it), SP_EINVAL (NULL, n 0, ticks or
 * definitions differ, an id in two parts, bad node), SP_ENOMEM, SP_ELIMIT
 * (more entities than max_entities); *out untouched on failure. */
SP_API int sp_world_merge(const sp_world_t *const *parts, size_t n, uint32_t node, int grid_threads,
                          sp_world_t **out);

#ifdef __cplusplus
}
#endif
#endif /* SP_SIM_SPLIT_H */
