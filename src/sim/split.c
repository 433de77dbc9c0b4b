/* split.c: a world cut into a cluster's parts and merged back (sim/split.h).
 *
 * Both directions are the hand-off primitives (sp_world_export/import) plus
 * the few world-level fields a part must continue: the clock, the rng, the
 * respawn settings and role counter, the id counter. Nothing here reaches
 * into the slot arrays beyond reading positions to ask the owner function. */
#include "sim/split.h"

#include <string.h>

#include "sim/world_int.h"
#include "spacesim/error.h"

/* splitmix64's finaliser: a node's rng state must differ from the source's
 * (else two parts draw the same "random" numbers) and be a pure function of
 * (source state, node) so that splitting twice gives the same parts. */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* floor(t * k / den) without overflow (t, k, den < 2^32). */
static uint32_t scale(uint32_t t, uint32_t k, uint32_t den) { return (uint32_t)((uint64_t)t * k / den); }

static uint32_t share(uint32_t t, uint32_t lo, uint32_t hi, uint32_t den) {
    return scale(t, hi, den) - scale(t, lo, den);
}

/* A new empty world with `from`'s definition as node `node`, at its tick. */
static int empty_like(const sp_world_t *from, uint32_t node, int grid_threads, sp_world_t **out) {
    if (node >= SP_WORLD_MAX_NODES) return SP_EINVAL;
    sp_world_def_t d = from->def;
    d.id_node = node;
    d.grid_threads = grid_threads > 0 ? grid_threads : 1;
    if (sp__world_def_check(&d) != 0) return SP_EINVAL;
    sp_world_t *w;
    int rc = sp__world_alloc(&d, d.allocator, d.grid_threads, &w);
    if (rc != 0) return rc;
    w->tick = from->tick;
    w->sleep_enabled = from->sleep_enabled;
    w->rs_period = from->rs_period;
    w->rs_per_period = from->rs_per_period;
    w->rs_role = from->rs_role;
    *out = w;
    return 0;
}

int sp_world_part(const sp_world_t *src, uint32_t node, sp_split_owner_fn owner, void *ctx, uint32_t share_lo,
                  uint32_t share_hi, uint32_t share_den, int grid_threads, sp_world_t **out) {
    if (src == NULL || owner == NULL || out == NULL || share_den == 0 || share_lo > share_hi ||
        share_hi > share_den)
        return SP_EINVAL;
    sp_world_t *w;
    int rc = empty_like(src, node, grid_threads, &w);
    if (rc != 0) return rc;
    w->rng = node == src->def.id_node ? src->rng : mix64(src->rng ^ mix64(node));
    w->rs_npc_target = share(src->rs_npc_target, share_lo, share_hi, share_den);
    w->rs_ast_target = share(src->rs_ast_target, share_lo, share_hi, share_den);
    for (uint32_t i = 0; i < src->nslots && rc == 0; i++) {
        if (src->kind[i] == SP_KIND_NONE || owner(ctx, src->px[i], src->py[i]) != node) continue;
        sp_entity_state_t st;
        rc = sp_world_export(src, src->id[i], &st);
        if (rc == 0) rc = sp_world_import(w, &st); /* ids are unique in src: never DUPLICATE/STALE */
        SP_ASSERT(rc <= 0);
    }
    if (rc != 0) {
        sp_world_free(w);
        return rc;
    }
    /* The source's node keeps its counter: ids it minted before the split
     * must never be minted again by the part that continues it. */
    if (node == src->def.id_node && src->next_id > w->next_id) w->next_id = src->next_id;
    /* Imports of sleepers stamp the static grid's rebuild tick; the part
     * continues the source's schedule of promotions instead. */
    w->last_rebuild = src->last_rebuild;
    *out = w;
    return 0;
}

/* Definitions equal but for id_node (and allocator / grid_threads, which are
 * not state): the fields a checkpoint carries. */
static int same_def(const sp_world_def_t *a, const sp_world_def_t *b) {
#define SP__DEF_EQ(t, f) if (memcmp(&a->f, &b->f, sizeof a->f) != 0) return 0;
    SP__DEF_FIELDS(SP__DEF_EQ)
#undef SP__DEF_EQ
    return 1;
}

static uint32_t sat_add(uint32_t a, uint32_t b, uint32_t max) { return (uint64_t)a + b > max ? max : a + b; }

int sp_world_merge(const sp_world_t *const *parts, size_t n, uint32_t node, int grid_threads, sp_world_t **out) {
    if (parts == NULL || n == 0 || out == NULL) return SP_EINVAL;
    const sp_world_t *m = NULL;
    uint64_t total = 0;
    for (size_t k = 0; k < n; k++) {
        if (parts[k] == NULL || parts[k]->tick != parts[0]->tick || !same_def(&parts[k]->def, &parts[0]->def) ||
            parts[k]->sleep_enabled != parts[0]->sleep_enabled)
            return SP_EINVAL;
        if (m == NULL && parts[k]->def.id_node == node) m = parts[k];
        total += parts[k]->count;
    }
    if (m == NULL) m = parts[0];
    if (total > m->def.max_entities) return SP_ELIMIT;
    sp_world_t *w;
    int rc = empty_like(m, node, grid_threads, &w);
    if (rc != 0) return rc;
    w->rng = m->rng;
    for (size_t k = 0; k < n; k++) {
        w->rs_npc_target = sat_add(w->rs_npc_target, parts[k]->rs_npc_target, w->def.max_entities);
        w->rs_ast_target = sat_add(w->rs_ast_target, parts[k]->rs_ast_target, w->def.max_entities);
    }
    rc = sp__world_reserve(w, (uint32_t)total);
    for (size_t k = 0; k < n && rc == 0; k++) {
        const sp_world_t *p = parts[k];
        for (uint32_t i = 0; i < p->nslots && rc == 0; i++) {
            if (p->kind[i] == SP_KIND_NONE) continue;
            sp_entity_state_t st;
            rc = sp_world_export(p, p->id[i], &st);
            if (rc == 0) rc = sp_world_import(w, &st);
            if (rc > 0) rc = SP_EINVAL; /* the id is in two parts: which one is right is unknowable */
        }
    }
    if (rc != 0) {
        sp_world_free(w);
        return rc;
    }
    if (m->def.id_node == node && m->next_id > w->next_id) w->next_id = m->next_id;
    w->last_rebuild = m->last_rebuild;
    *out = w;
    return 0;
}
