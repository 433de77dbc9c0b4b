/* ai.c: NPC decisions, pure functions of an immutable frame (see ai.h).
 *
 * Everything here reads only the frame and the arguments and writes only the
 * caller's output buffer, so the result for a chunk is the same on any thread
 * and at any time. Floats are computed in a fixed order from quantized inputs;
 * no libm function other than sqrt (correctly rounded) is used. */
#include <math.h>
#include <string.h>

#include "sim/ai.h"

/* Nearest target of one NPC, reduced over sp_frame_visit_sphere(): every
 * row within the sense radius is examined (no truncation), in the visit's
 * order, and the minimum is taken over (distance, row) so the result does
 * not depend on that order: ties go to the lower row (= lower id). */
typedef struct near {
    const sp_frame_t *f;
    const sp_frame_row_t *me;
    float p[3];
    int want;
    uint32_t best; /* row, UINT32_MAX = none */
    float bestd;
} near_t;

static void near_visit(void *ctx, uint32_t row) {
    near_t *n = ctx;
    /* The kind (and fighter bit) from the frame's tag bytes first: most
     * rows in range are not of the wanted kind, and the 64-byte row is not
     * read for them. Fighters leave other fighters alone (they hunt miners,
     * patrols and players). */
    uint8_t tag = sp_frame_row_tag(n->f, row);
    if ((int)(tag & ~SP_FRAME_TAG_FIGHTER) != n->want) return;
    if (n->want == SP_KIND_SHIP && (tag & SP_FRAME_TAG_FIGHTER)) return;
    const sp_frame_row_t *o = &n->f->rows[row];
    if (o->id == n->me->id) return; /* (by id: a ghost frame may hold a copy of it for a step) */
    float dx = sp_frame_pos(o->pos[0]) - n->p[0], dy = sp_frame_pos(o->pos[1]) - n->p[1],
          dz = sp_frame_pos(o->pos[2]) - n->p[2];
    float d = sqrtf(dx * dx + dy * dy + dz * dz);
    if (n->want == SP_KIND_ASTEROID) d -= (float)o->radius / SP_FRAME_RADIUS_SCALE; /* gap */
    if (n->best == UINT32_MAX || d < n->bestd || (d == n->bestd && row < n->best)) {
        n->best = row;
        n->bestd = d;
    }
}

void sp_ai_chunk_range(const sp_frame_t *f, uint32_t chunk, uint32_t nchunks, uint32_t *first,
                       uint32_t *end) {
    if (nchunks == 0) nchunks = 1;
    uint64_t n = f->npc_count;
    if (chunk >= nchunks) {
        *first = *end = (uint32_t)n;
        return;
    }
    *first = (uint32_t)(n * chunk / nchunks);
    *end = (uint32_t)(n * (chunk + 1) / nchunks);
}

size_t sp_ai_chunk_max_msgs(const sp_frame_t *f, uint32_t chunk, uint32_t nchunks) {
    uint32_t a, b;
    sp_ai_chunk_range(f, chunk, nchunks, &a, &b);
    return (size_t)(b - a) * SP_AI_MAX_MSGS_PER_NPC;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct ctx {
    sp_msg_t *out;
    size_t n;
    uint32_t origin;
    uint64_t tick;
} ctx_t;

static void emit_move(ctx_t *c, const sp_frame_row_t *me, const float pos[3], float vx, float vy,
                      float vz) {
    float v[3] = {vx, vy, vz};
    sp_msg_t *m = &c->out[c->n];
    if (sp_msg_ship_movement(m, me->id, pos, v) != 0) return;
    sp_msg_stamp(m, c->tick, c->origin, (uint32_t)c->n);
    c->n++;
}

/* Desired velocity toward (tx, ty, tz), slowing down within `slow` units of
 * the goal distance `stop` (arrive behaviour); negative gaps back off. */
static void steer(ctx_t *c, const sp_frame_t *f, const sp_frame_row_t *me, const float p[3],
                  float tx, float ty, float tz, float stop) {
    float dx = tx - p[0], dy = ty - p[1], dz = tz - p[2];
    float d = sqrtf(dx * dx + dy * dy + dz * dz);
    if (!(d > 1e-3f)) {
        emit_move(c, me, p, 0.0f, 0.0f, 0.0f);
        return;
    }
    float gap = d - stop, vmax = f->ship_max_speed;
    float s = gap * 0.8f; /* reach the goal in ~1.25 s at most speed */
    if (s > vmax) s = vmax;
    if (s < -vmax) s = -vmax;
    emit_move(c, me, p, dx / d * s, dy / d * s, dz / d * s);
}

int sp_ai_run_chunk(const sp_frame_t *f, uint32_t chunk, uint32_t nchunks, uint64_t tick,
                    sp_msg_t *out, size_t cap, size_t *n_out) {
    return sp_ai_run_chunk_ghosts(f, NULL, chunk, nchunks, tick, out, cap, n_out);
}

int sp_ai_run_chunk_ghosts(const sp_frame_t *f, const sp_frame_t *ghosts, uint32_t chunk, uint32_t nchunks,
                           uint64_t tick, sp_msg_t *out, size_t cap, size_t *n_out) {
    if (f == NULL || n_out == NULL || nchunks == 0 || chunk >= nchunks) return SP_EINVAL;
    uint32_t first, end;
    sp_ai_chunk_range(f, chunk, nchunks, &first, &end);
    if (cap < (size_t)(end - first) * SP_AI_MAX_MSGS_PER_NPC) return SP_EMSGSIZE;
    if (out == NULL && end > first) return SP_EINVAL;
    ctx_t c = {out, 0, chunk, tick};
    float h = f->half_extent;
    for (uint32_t k = first; k < end; k++) {
        const sp_frame_row_t *me = &f->rows[f->npc_rows[k]];
        float p[3] = {sp_frame_pos(me->pos[0]), sp_frame_pos(me->pos[1]), sp_frame_pos(me->pos[2])};
        float myr = (float)me->radius / SP_FRAME_RADIUS_SCALE;
        int acted = 0;
        if (me->flags & (SP_ENT_MINER | SP_ENT_FIGHTER)) {
            int want = (me->flags & SP_ENT_MINER) ? SP_KIND_ASTEROID : SP_KIND_SHIP;
            near_t nr = {f, me, {p[0], p[1], p[2]}, want, UINT32_MAX, 0.0f};
            /* Fighters look among the ships alone (their own index: 1 row
             * in 20 in the demo worlds); the reduction is order-free, so
             * the choice is the one a scan of every row would make. */
            if (want == SP_KIND_SHIP) sp_frame_visit_sphere_ships(f, p[0], p[1], p[2], SP_AI_SENSE_RADIUS, near_visit, &nr);
            else sp_frame_visit_sphere(f, p[0], p[1], p[2], SP_AI_SENSE_RADIUS, near_visit, &nr);
            const sp_frame_row_t *best = nr.best == UINT32_MAX ? NULL : &f->rows[nr.best];
            float bestd = nr.bestd;
            if (ghosts != NULL) {
                /* NPCs see across the border: the ghosts' ships (fighters)
                 * and asteroids (miners) too; the nearer one wins (a tie:
                 * the one of this world). */
                near_t ng = {ghosts, me, {p[0], p[1], p[2]}, want, UINT32_MAX, 0.0f};
                if (want == SP_KIND_SHIP)
                    sp_frame_visit_sphere_ships(ghosts, p[0], p[1], p[2], SP_AI_SENSE_RADIUS, near_visit, &ng);
                else sp_frame_visit_sphere(ghosts, p[0], p[1], p[2], SP_AI_SENSE_RADIUS, near_visit, &ng);
                if (ng.best != UINT32_MAX && (best == NULL || ng.bestd < bestd)) {
                    best = &ghosts->rows[ng.best];
                    bestd = ng.bestd;
                }
            }
            if (best != NULL) {
                float tx = sp_frame_pos(best->pos[0]), ty = sp_frame_pos(best->pos[1]),
                      tz = sp_frame_pos(best->pos[2]);
                if (want == SP_KIND_ASTEROID) {
                    float orad = (float)best->radius / SP_FRAME_RADIUS_SCALE;
                    float gap = bestd - myr;
                    /* Park half the mining range off the surface. */
                    steer(&c, f, me, p, tx, ty, tz, orad + myr + 0.5f * f->mining_range);
                    if (gap <= f->mining_range * 0.9f && (me->flags & SP_ENT_MINE_READY) &&
                        best->resource >= 0) {
                        sp_msg_t *m = &c.out[c.n];
                        if (sp_msg_resource_mined(m, me->id, sp_resource_name(best->resource),
                                                  f->mining_amount) == 0) {
                            sp_msg_stamp(m, c.tick, c.origin, (uint32_t)c.n);
                            c.n++;
                        }
                    }
                } else {
                    steer(&c, f, me, p, tx, ty, tz, 0.6f * f->weapon_range);
                    if (bestd <= f->weapon_range * 0.95f && (me->flags & SP_ENT_WEAPON_READY)) {
                        sp_msg_t *m = &c.out[c.n];
                        if (sp_msg_weapon_fired(m, me->id, best->id, f->weapon_damage) == 0) {
                            sp_msg_stamp(m, c.tick, c.origin, (uint32_t)c.n);
                            c.n++;
                        }
                    }
                }
                acted = 1;
            }
        }
        if (!acted) {
            /* Patrol: a waypoint from (id, tick / period), staggered per ship. */
            uint64_t epoch = (tick + (mix64(me->id) % SP_AI_PATROL_PERIOD)) / SP_AI_PATROL_PERIOD;
            uint64_t r = mix64(me->id * 0x9e3779b97f4a7c15ULL ^ epoch);
            float lim = 0.8f * h, w[3];
            for (int a = 0; a < 3; a++) {
                w[a] = -lim + 2.0f * lim * (float)((r >> (a * 21)) & 0x1fffff) * (1.0f / 2097152.0f);
            }
            steer(&c, f, me, p, w[0], w[1], w[2], 0.0f);
        }
    }
    *n_out = c.n;
    return 0;
}
