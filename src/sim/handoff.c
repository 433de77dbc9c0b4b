/* handoff.c: world hooks for the cluster layer (see sim/handoff.h). */
#include "sim/handoff.h"

#include "sim/world_int.h"
#include "spacesim/error.h"

int sp_world_foreach_xy(const sp_world_t *w, int (*fn)(void *ctx, sp_entity_id_t id, float x, float y),
                        void *ctx) {
    for (uint32_t i = 0; i < w->nslots; i++) {
        if (w->kind[i] == SP_KIND_NONE) continue;
        int r = fn(ctx, w->id[i], w->px[i], w->py[i]);
        if (r != 0) return r;
    }
    return 0;
}

int sp_world_foreach_departed(const sp_world_t *w, int (*fn)(void *ctx, sp_entity_id_t id, uint64_t epoch),
                              void *ctx) {
    if (w->departed.e == NULL) return 0;
    for (uint64_t k = 0; k <= w->departed.mask; k++) {
        const sp__mapent_t *e = &w->departed.e[k];
        if (e->key == 0) continue;
        int r = fn(ctx, e->key, e->val);
        if (r != 0) return r;
    }
    return 0;
}

int sp_world_set_id_floor(sp_world_t *w, uint64_t counter) {
    if (w == NULL || counter == 0 || counter >> SP_WORLD_ID_COUNTER_BITS) return SP_EINVAL;
    uint64_t id = ((uint64_t)w->def.id_node << SP_WORLD_ID_COUNTER_BITS) | counter;
    if (id > w->next_id) w->next_id = id;
    return 0;
}
