/* cluster/cells.h: the static grid of cells over the world's x/y plane.
 *
 * The world cube [-h, h]^3 is cut into nx * ny columns (every z belongs to
 * the column of its x, y): cell index = cy * nx + cx, with
 * cx = floor((x + h) / (2h) * nx) clamped to [0, nx - 1] (so the walls,
 * where entities reflect, belong to the edge cells). Pure; any thread. */
#ifndef SP_CLUSTER_CELLS_H
#define SP_CLUSTER_CELLS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SP_CELLS_MAX_SIDE 64u /* cells per axis: 64 x 64 = 4096 keys at most */

typedef struct sp_cells {
    uint32_t nx, ny;
    float half; /* the world's half extent, world units */
} sp_cells_t;

/* Parse "NxM" (1..SP_CELLS_MAX_SIDE each). Returns 0, or -1. */
static inline int sp_cells_parse(const char *s, uint32_t *nx, uint32_t *ny) {
    char *end;
    unsigned long a = strtoul(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X')) return -1;
    const char *t = end + 1;
    unsigned long b = strtoul(t, &end, 10);
    if (end == t || *end != '\0' || a < 1 || b < 1 || a > SP_CELLS_MAX_SIDE || b > SP_CELLS_MAX_SIDE) return -1;
    *nx = (uint32_t)a;
    *ny = (uint32_t)b;
    return 0;
}

static inline uint32_t sp_cells_axis(float v, float half, uint32_t n) {
    float f = (v + half) / (2.0f * half) * (float)n;
    if (!(f > 0.0f)) return 0; /* also NaN */
    uint32_t c = (uint32_t)f;
    return c >= n ? n - 1 : c;
}

/* The cell of position (x, y). */
static inline uint32_t sp_cells_of(const sp_cells_t *g, float x, float y) {
    return sp_cells_axis(y, g->half, g->ny) * g->nx + sp_cells_axis(x, g->half, g->nx);
}

static inline uint32_t sp_cells_count(const sp_cells_t *g) { return g->nx * g->ny; }

#endif /* SP_CLUSTER_CELLS_H */
