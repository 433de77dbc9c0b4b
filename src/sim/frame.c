/* frame.c: immutable world snapshots with an atomic reference count and a
 * coarse spatial index. See frame.h for the contracts. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sim/frame.h"
#include "sim/world_int.h"

/* Round half away from zero, saturating. v * scale is exact in double (a
 * float times a power of two), and so is adding 0.5 to it, so this equals
 * lround() without the libm call (which dominated frame publishing). */
static int32_t q32(float v, float scale) {
    double x = (double)v * scale;
    if (!(x == x)) return 0;
    if (x >= 2147483647.0) return INT32_MAX;
    if (x <= -2147483648.0) return INT32_MIN;
    return (int32_t)(x >= 0.0 ? x + 0.5 : x - 0.5);
}
static uint32_t qu32(float v, float scale) {
    double x = (double)v * scale;
    if (!(x > 0.0)) return 0;
    if (x >= 4294967295.0) return UINT32_MAX;
    return (uint32_t)(x + 0.5);
}

static uint32_t cell_coord(int32_t q, float half, float inv_cell, uint32_t n) {
    float x = ((float)q / (float)SP_FRAME_POS_SCALE + half) * inv_cell;
    if (!(x > 0.0f)) return 0;
    uint32_t c = (uint32_t)x;
    return c >= n ? n - 1 : c;
}

/* What a frame is built from: the world's own arrays (publish) or a capture's
 * copies of them (sp_frame_build). tmp_a/tmp_b: count-sized scratch. */
typedef struct fsrc {
    uint32_t nslots, count;
    const uint64_t *id;
    const uint32_t *owner, *wcd, *mcd;
    const uint8_t *kind, *flags;
    const int8_t *resource;
    const float *px, *py, *pz, *vx, *vy, *vz, *hp, *max_hp, *amount, *radius;
    uint32_t *tmp_a, *tmp_b;
    uint64_t *tmp_k; /* 2 * count keys */
    uint64_t tick;
    float half_extent, dt, ship_max_speed, weapon_range, weapon_damage, mining_range, mining_amount;
    const sp_allocator_t *alloc;
} fsrc_t;

/* The per-slot fields a capture copies: X(field, type). */
#define SP__CAP_FIELDS(X)                                                                             \
    X(id, uint64_t) X(owner, uint32_t) X(wcd, uint32_t) X(mcd, uint32_t) X(px, float) X(py, float)    \
    X(pz, float) X(vx, float) X(vy, float) X(vz, float) X(hp, float) X(max_hp, float) X(amount, float) \
    X(radius, float) X(kind, uint8_t) X(flags, uint8_t) X(resource, int8_t)

struct sp_world_capture {
    fsrc_t src;
    uint32_t cap;      /* slots the arrays hold */
    char *block;       /* one allocation: every array, 64-byte aligned each */
    size_t block_bytes;
    const sp_allocator_t *alloc;
    /* An incremental capture (sp_world_capture_delta; delta 1): src holds
     * only the header (tick, count, rules); the changes against the capture
     * of base_tick are the rows of the slots that may have changed (up, in
     * slot-set order, unsorted) and the ids that died (dead). */
    int delta;
    uint64_t base_tick;
    sp_frame_row_t *up;
    uint32_t nup, up_cap;
    uint64_t *dead;
    uint32_t ndead, dead_cap;
    uint64_t *keys;    /* build scratch: (id, index) pairs of up, 2 * up_cap */
};

static void fsrc_def(fsrc_t *s, const sp_world_t *w) {
    const sp_world_def_t *d = &w->def;
    s->nslots = w->nslots;
    s->count = w->count;
    s->tick = w->tick;
    s->half_extent = d->half_extent;
    s->dt = d->dt;
    s->ship_max_speed = d->ship_max_speed;
    s->weapon_range = d->weapon_range;
    s->weapon_damage = d->weapon_damage;
    s->mining_range = d->mining_range;
    s->mining_amount = d->mining_amount;
    s->alloc = w->alloc;
}

/* Row of live slot i of w: the one quantization of frames (full builds and
 * incremental captures both use it, so their rows are equal bytes). */
static void row_fill(sp_frame_row_t *row, const fsrc_t *w, uint32_t i) {
    memset(row, 0, sizeof *row);
    row->id = w->id[i];
    row->pos[0] = q32(w->px[i], SP_FRAME_POS_SCALE);
    row->pos[1] = q32(w->py[i], SP_FRAME_POS_SCALE);
    row->pos[2] = q32(w->pz[i], SP_FRAME_POS_SCALE);
    row->vel[0] = q32(w->vx[i], SP_FRAME_VEL_SCALE);
    row->vel[1] = q32(w->vy[i], SP_FRAME_VEL_SCALE);
    row->vel[2] = q32(w->vz[i], SP_FRAME_VEL_SCALE);
    row->hp = qu32(w->hp[i], SP_FRAME_HP_SCALE);
    row->max_hp = qu32(w->max_hp[i], SP_FRAME_HP_SCALE);
    row->owner = w->owner[i];
    row->amount = w->kind[i] == SP_KIND_ASTEROID ? qu32(w->amount[i], SP_FRAME_AMOUNT_SCALE) : 0;
    uint32_t rq = qu32(w->radius[i], SP_FRAME_RADIUS_SCALE);
    row->radius = (uint16_t)(rq > UINT16_MAX ? UINT16_MAX : rq);
    row->kind = w->kind[i];
    uint8_t fl = w->flags[i];
    if (w->kind[i] == SP_KIND_SHIP) {
        if (w->wcd[i] == 0) fl |= SP_ENT_WEAPON_READY;
        if (w->mcd[i] == 0) fl |= SP_ENT_MINE_READY;
    }
    row->flags = fl;
    row->resource = w->resource[i];
}

static void rent_fill(sp_frame_t *f, uint32_t r);
static void index_rows(sp_frame_t *f);

/* A frame of `count` rows and room for `npc` NPC rows, its header from w
 * (tick and rules) and its grid geometry set, the arrays uninitialised; one
 * reference not yet initialised. NULL on OOM. */
static sp_frame_t *frame_new_x(const fsrc_t *w, uint32_t count, uint32_t npc, uint32_t nchanged, uint32_t ngone);
static sp_frame_t *frame_new(const fsrc_t *w, uint32_t count, uint32_t npc) { return frame_new_x(w, count, npc, 0, 0); }

/* ... plus room for a change list of nchanged rows and ngone ids. */
static sp_frame_t *frame_new_x(const fsrc_t *w, uint32_t count, uint32_t npc, uint32_t nchanged, uint32_t ngone) {
    /* Spatial index: a dense grid of cells_per_axis^3 cells over the world
     * cube, ~1 row per cell (at most 64 per axis). Queries scan (y, z) lines
     * of cells cut to the sphere's chord over 16-byte entries, so a line
     * costs a few ns and a candidate ~1 ns: with ~1 row per cell the typical
     * radii (AI 300, interest 500, at a spacing of ~170-230 units) touch
     * ~10-30 lines and ~1.5-2x as many candidates as matches, where the
     * former 8 rows per cell tested ~5-10x as many. */
    uint32_t cpa = (uint32_t)lround(cbrt((double)count));
    if (cpa < 1) cpa = 1;
    if (cpa > 64) cpa = 64;
    uint32_t ncells = cpa * cpa * cpa;
    size_t off_rows = sp_align_up(sizeof(sp_frame_t), 64);
    size_t off_npc = off_rows + (size_t)count * sizeof(sp_frame_row_t);
    size_t off_cs = off_npc + (size_t)npc * sizeof(uint32_t);
    size_t off_ce = sp_align_up(off_cs + ((size_t)ncells + 1) * sizeof(uint32_t), 64);
    size_t off_rent = sp_align_up(off_ce + (size_t)count * sizeof(sp_frame_cell_ent_t), 64);
    size_t off_tag = sp_align_up(off_rent + (size_t)count * sizeof(sp_frame_cell_ent_t), 64);
    size_t off_gone = sp_align_up(off_tag + (size_t)count, 64);
    size_t off_chg = off_gone + (size_t)ngone * sizeof(uint64_t);
    size_t bytes = off_chg + (size_t)nchanged * sizeof(uint32_t);
    char *mem = w->alloc->alloc(w->alloc->ctx, bytes, 64);
    if (mem == NULL) return NULL;
    sp_frame_t *f = (sp_frame_t *)mem;
    memset(f, 0, sizeof *f);
    f->tick = w->tick;
    f->count = count;
    f->npc_count = npc;
    f->half_extent = w->half_extent;
    f->dt = w->dt;
    f->ship_max_speed = w->ship_max_speed;
    f->weapon_range = w->weapon_range;
    f->weapon_damage = w->weapon_damage;
    f->mining_range = w->mining_range;
    f->mining_amount = w->mining_amount;
    f->rows = (sp_frame_row_t *)(mem + off_rows);
    f->npc_rows = (uint32_t *)(mem + off_npc);
    f->cells_per_axis = cpa;
    f->cell_size = 2.0f * w->half_extent / (float)cpa;
    f->cell_start = (uint32_t *)(mem + off_cs);
    f->cell_ents = (sp_frame_cell_ent_t *)(mem + off_ce);
    f->gone_ids = (uint64_t *)(mem + off_gone);
    f->rent_ = (sp_frame_cell_ent_t *)(mem + off_rent);
    f->tag_ = (uint8_t *)(mem + off_tag);
    f->changed_rows = (uint32_t *)(mem + off_chg);
    f->bytes_ = bytes;
    f->alloc_ = w->alloc;
    /* Plain initialisation: the frame is not shared yet. Whoever hands it
     * to other threads (a queue or bus with release/acquire) publishes it. */
    atomic_init(&f->refs_, 1);
    return f;
}

static sp_frame_t *build(const fsrc_t *w) {
    uint32_t count = w->count;
    /* Live slots in slot order with their ids as keys; then, unless the ids
     * already ascend (a world whose slots were never reused), an LSD radix
     * sort of the (key, slot) pairs on the bits where the ids differ: 11-bit
     * digits placed greedily over the set bits of OR(id ^ first id), so
     * common prefixes (the node, the high counter bits) cost nothing. With
     * one node's ids below 2^22 that is 2 passes; ids of several nodes add
     * one for the node bits. All histograms come from one counting pass.
     * Ids are unique, so the order is total and the sort's stability only
     * serves LSD. O(n) per pass. */
    uint32_t *a = w->tmp_a, *b = w->tmp_b, n = 0, npc = 0;
    uint64_t *ka = w->tmp_k, *kb = count ? w->tmp_k + count : w->tmp_k, first = 0, diff = 0, prev = 0;
    int sorted = 1;
    for (uint32_t i = 0; i < w->nslots; i++) {
        if (w->kind[i] == SP_KIND_NONE) continue;
        uint64_t id = w->id[i];
        if (n == 0) first = id;
        if (id < prev) sorted = 0;
        prev = id;
        diff |= id ^ first;
        ka[n] = id;
        a[n++] = i;
        if (w->kind[i] == SP_KIND_SHIP && (w->flags[i] & SP_ENT_NPC)) npc++;
    }
    SP_ASSERT(n == count);
    if (!sorted) {
        enum { DBITS = 11, DSIZE = 1 << DBITS, MAXD = 6 };
        int shifts[MAXD], nd = 0;
        for (int sh = 0; sh < 64 && nd < MAXD;) {
            if (((diff >> sh) & 1) == 0) {
                sh++;
                continue;
            }
            shifts[nd++] = sh;
            sh += DBITS;
        }
        _Static_assert(MAXD * DBITS >= 64, "digits cover a 64-bit key");
        uint32_t cnt[MAXD][DSIZE];
        memset(cnt, 0, sizeof cnt[0] * (size_t)nd);
        for (uint32_t k = 0; k < n; k++)
            for (int d = 0; d < nd; d++) cnt[d][(ka[k] >> shifts[d]) & (DSIZE - 1)]++;
        for (int d = 0; d < nd; d++) {
            uint32_t sum = 0, *c = cnt[d];
            for (int v = 0; v < DSIZE; v++) {
                uint32_t t = c[v];
                c[v] = sum;
                sum += t;
            }
            int sh = shifts[d];
            for (uint32_t k = 0; k < n; k++) {
                uint32_t pos = c[(ka[k] >> sh) & (DSIZE - 1)]++;
                kb[pos] = ka[k];
                b[pos] = a[k];
            }
            uint64_t *tk = ka;
            ka = kb;
            kb = tk;
            uint32_t *t = a;
            a = b;
            b = t;
        }
    }
    sp_frame_t *f = frame_new(w, count, npc);
    if (f == NULL) return NULL;
    sp_frame_row_t *rows = (sp_frame_row_t *)(uintptr_t)f->rows;
    for (uint32_t r = 0; r < count; r++) { /* (index_rows fills npc_rows) */
        row_fill(&rows[r], w, a[r]);
        rent_fill(f, r);
    }
    index_rows(f);
    return f;
}

#define RENT_NPC 0x80000000u /* in a rent entry's cell: the row is an NPC ship */

/* Row r's entry of rent_, in row order: its position (copied, so the index
 * is built without reading the 64-byte rows again) and its grid cell, with
 * RENT_NPC for an NPC ship. Incremental builds copy the entries of the rows
 * they copy (same grid) and fill only the changed ones. */
static void rent_fill(sp_frame_t *f, uint32_t r) {
    const sp_frame_row_t *row = &f->rows[r];
    sp_frame_cell_ent_t *e = (sp_frame_cell_ent_t *)(uintptr_t)&f->rent_[r];
    uint32_t cpa = f->cells_per_axis;
    float inv_cell = 1.0f / f->cell_size, half = f->half_extent;
    memcpy(e->pos, row->pos, sizeof e->pos);
    e->row = (cell_coord(row->pos[2], half, inv_cell, cpa) * cpa + cell_coord(row->pos[1], half, inv_cell, cpa)) * cpa +
             cell_coord(row->pos[0], half, inv_cell, cpa);
    if (row->kind == SP_KIND_SHIP && (row->flags & SP_ENT_NPC)) e->row |= RENT_NPC;
    uint8_t tag = row->kind;
    if (row->kind == SP_KIND_SHIP && (row->flags & SP_ENT_FIGHTER)) tag |= SP_FRAME_TAG_FIGHTER;
    ((uint8_t *)(uintptr_t)f->tag_)[r] = tag;
}

/* The spatial index and the NPC list of f from rent_ (every entry filled):
 * cell_start, cell_ents (a stable counting sort: rows of a cell stay in
 * ascending row order), npc_rows and npc_count. Reads 16 bytes a row. */
/* Cell of an entry in a grid of cpa cells per axis of edge 1 / inv. */
static uint32_t ent_cell(const sp_frame_cell_ent_t *e, float half, float inv, uint32_t cpa) {
    return (cell_coord(e->pos[2], half, inv, cpa) * cpa + cell_coord(e->pos[1], half, inv, cpa)) * cpa +
           cell_coord(e->pos[0], half, inv, cpa);
}

/* The ships' index of f (see sp_frame_t) from rent_ and the tags: a stable
 * counting sort of the ship rows by their cell in a grid sized for them
 * (cell_coord, as the main index, so queries bound it the same way). In a
 * block of its own from the frame's allocator; on OOM none (ship_ents
 * NULL). Reads a tag byte a row and 16 bytes a ship. */
static void ships_index(sp_frame_t *f) {
    uint32_t count = f->count, ns = 0;
    const uint8_t *tag = f->tag_;
    for (uint32_t r = 0; r < count; r++) ns += (tag[r] & ~SP_FRAME_TAG_FIGHTER) == SP_KIND_SHIP;
    uint32_t cpa = (uint32_t)lround(cbrt((double)ns));
    if (cpa < 1) cpa = 1;
    if (cpa > 64) cpa = 64;
    uint32_t ncells = cpa * cpa * cpa;
    size_t off_e = sp_align_up(((size_t)ncells + 1) * sizeof(uint32_t), 64);
    size_t bytes = off_e + (size_t)ns * sizeof(sp_frame_cell_ent_t);
    char *mem = f->alloc_->alloc(f->alloc_->ctx, bytes, 64);
    f->nships = ns;
    if (mem == NULL) {
        f->ship_ents = NULL;
        f->ship_start = NULL;
        return;
    }
    uint32_t *start = (uint32_t *)mem;
    sp_frame_cell_ent_t *ents = (sp_frame_cell_ent_t *)(mem + off_e);
    float cell = 2.0f * f->half_extent / (float)cpa, inv = 1.0f / cell, half = f->half_extent;
    const sp_frame_cell_ent_t *rent = f->rent_;
    memset(start, 0, ((size_t)ncells + 1) * sizeof(uint32_t));
    for (uint32_t r = 0; r < count; r++)
        if ((tag[r] & ~SP_FRAME_TAG_FIGHTER) == SP_KIND_SHIP) start[ent_cell(&rent[r], half, inv, cpa) + 1]++;
    for (uint32_t c = 0; c < ncells; c++) start[c + 1] += start[c];
    for (uint32_t r = 0; r < count; r++) { /* cursors: start shifted by one, undone below */
        if ((tag[r] & ~SP_FRAME_TAG_FIGHTER) != SP_KIND_SHIP) continue;
        sp_frame_cell_ent_t *e = &ents[start[ent_cell(&rent[r], half, inv, cpa)]++];
        memcpy(e->pos, rent[r].pos, sizeof e->pos);
        e->row = r;
    }
    for (uint32_t c = ncells; c > 0; c--) start[c] = start[c - 1];
    start[0] = 0;
    f->ship_mem_ = mem;
    f->ship_bytes_ = bytes;
    f->ship_cells_per_axis = cpa;
    f->ship_cell_size = cell;
    f->ship_start = start;
    f->ship_ents = ents;
}

static void index_rows(sp_frame_t *f) {
    uint32_t count = f->count, cpa = f->cells_per_axis, ncells = cpa * cpa * cpa;
    const sp_frame_cell_ent_t *rent = f->rent_;
    uint32_t *cell_start = (uint32_t *)(uintptr_t)f->cell_start;
    sp_frame_cell_ent_t *cell_ents = (sp_frame_cell_ent_t *)(uintptr_t)f->cell_ents;
    uint32_t *npc_rows = (uint32_t *)(uintptr_t)f->npc_rows;
    uint32_t np = 0;
    memset(cell_start, 0, ((size_t)ncells + 1) * sizeof(uint32_t));
    for (uint32_t r = 0; r < count; r++) {
        uint32_t c = rent[r].row;
        if (c & RENT_NPC) npc_rows[np++] = r;
        cell_start[(c & ~RENT_NPC) + 1]++;
    }
    f->npc_count = np;
    for (uint32_t c = 0; c < ncells; c++) cell_start[c + 1] += cell_start[c];
    /* The cursor array is cell_start shifted by one; undo the shift after. */
    for (uint32_t r = 0; r < count; r++) {
        sp_frame_cell_ent_t *e = &cell_ents[cell_start[(rent[r].row & ~RENT_NPC)]++];
        memcpy(e->pos, rent[r].pos, sizeof e->pos);
        e->row = r;
    }
    for (uint32_t c = ncells; c > 0; c--) cell_start[c] = cell_start[c - 1];
    cell_start[0] = 0;
    ships_index(f);
}

/* A source that reads w's own slot arrays (publish, incremental captures). */
static void fsrc_of_world(fsrc_t *s, const sp_world_t *w) {
    memset(s, 0, sizeof *s);
    fsrc_def(s, w);
#define SP__SRC_PTR(f, t) s->f = w->f;
    SP__CAP_FIELDS(SP__SRC_PTR)
#undef SP__SRC_PTR
}

sp_frame_t *sp_frame_from_rows(const sp_world_t *w, uint64_t tick, const sp_frame_row_t *rows, uint32_t count) {
    if (w == NULL || (rows == NULL && count > 0)) return NULL;
    for (uint32_t r = 1; r < count; r++)
        if (rows[r].id <= rows[r - 1].id) return NULL; /* the contract: ascending, unique */
    fsrc_t src;
    memset(&src, 0, sizeof src);
    fsrc_def(&src, w);
    src.tick = tick;
    src.count = count;
    sp_frame_t *f = frame_new(&src, count, count); /* NPC room: at most every row */
    if (f == NULL) return NULL;
    if (count) memcpy((void *)(uintptr_t)f->rows, rows, (size_t)count * sizeof *rows);
    for (uint32_t r = 0; r < count; r++) rent_fill(f, r);
    index_rows(f);
    return f;
}

sp_frame_t *sp_world_publish_frame(sp_world_t *w) {
    if (w == NULL) return NULL;
    fsrc_t s;
    fsrc_of_world(&s, w);
    s.tmp_a = w->tmp_a;
    s.tmp_b = w->tmp_b;
    s.tmp_k = w->tmp_k;
    return build(&s);
}

int sp_world_capture_create(const sp_allocator_t *alloc, sp_world_capture_t **out) {
    if (out == NULL) return SP_EINVAL;
    if (alloc == NULL) alloc = sp_allocator_default();
    sp_world_capture_t *c = alloc->alloc(alloc->ctx, sizeof *c, 64);
    if (c == NULL) return SP_ENOMEM;
    memset(c, 0, sizeof *c);
    c->alloc = alloc;
    *out = c;
    return 0;
}

void sp_world_capture_free(sp_world_capture_t *c) {
    if (c == NULL) return;
    if (c->block) c->alloc->free(c->alloc->ctx, c->block, c->block_bytes, 64);
    if (c->up) c->alloc->free(c->alloc->ctx, c->up, (size_t)c->up_cap * sizeof *c->up, 64);
    if (c->keys) c->alloc->free(c->alloc->ctx, c->keys, (size_t)c->up_cap * 2 * sizeof *c->keys, 64);
    if (c->dead) c->alloc->free(c->alloc->ctx, c->dead, (size_t)c->dead_cap * sizeof *c->dead, 64);
    c->alloc->free(c->alloc->ctx, c, sizeof *c, 64);
}

/* Bytes of the arrays for `slots` slots, each array rounded up to 64. */
static size_t cap_bytes(uint32_t slots) {
    size_t n = 0;
#define SP__CAP_SIZE(f, t) n += sp_align_up((size_t)slots * sizeof(t), 64);
    SP__CAP_FIELDS(SP__CAP_SIZE)
#undef SP__CAP_SIZE
    return n + 2 * sp_align_up((size_t)slots * sizeof(uint32_t), 64) /* tmp_a, tmp_b */
           + sp_align_up((size_t)slots * 2 * sizeof(uint64_t), 64);  /* tmp_k */
}

int sp_world_capture(const sp_world_t *w, sp_world_capture_t *c) {
    if (w == NULL || c == NULL) return SP_EINVAL;
    uint32_t need = w->nslots;
    if (need > c->cap || c->block == NULL) {
        /* Grow to the world's slot capacity (it grows by doubling), so
         * captures of a slowly growing world rarely reallocate. */
        uint32_t slots = w->cap > need ? w->cap : need;
        if (slots == 0) slots = 1;
        size_t bytes = cap_bytes(slots);
        char *blk = c->alloc->alloc(c->alloc->ctx, bytes, 64);
        if (blk == NULL) return SP_ENOMEM;
        if (c->block) c->alloc->free(c->alloc->ctx, c->block, c->block_bytes, 64);
        c->block = blk;
        c->block_bytes = bytes;
        c->cap = slots;
        size_t off = 0;
#define SP__CAP_CARVE(f, t)                                          \
    c->src.f = (t *)(blk + off);                                     \
    off += sp_align_up((size_t)slots * sizeof(t), 64);
        SP__CAP_FIELDS(SP__CAP_CARVE)
#undef SP__CAP_CARVE
        c->src.tmp_a = (uint32_t *)(blk + off);
        off += sp_align_up((size_t)slots * sizeof(uint32_t), 64);
        c->src.tmp_b = (uint32_t *)(blk + off);
        off += sp_align_up((size_t)slots * sizeof(uint32_t), 64);
        c->src.tmp_k = (uint64_t *)(blk + off);
    }
    fsrc_def(&c->src, w);
    /* The const pointers of src point into c->block, which c owns. An empty
     * world may have no arrays yet (NULL): memcpy from NULL is undefined even
     * for 0 bytes, so copy nothing then. */
    c->delta = 0;
    if (need == 0) return 0;
#define SP__CAP_COPY(f, t) memcpy((void *)(uintptr_t)c->src.f, w->f, (size_t)need * sizeof(t));
    SP__CAP_FIELDS(SP__CAP_COPY)
#undef SP__CAP_COPY
    return 0;
}

/* ---------------------------------------------------------------- incremental captures */

/* Grow *p (elements of `elem` bytes, *cap of them) to hold need; keeps no
 * contents. 0 or SP_ENOMEM (then unchanged). */
static int cap_grow(const sp_allocator_t *a, void **p, uint32_t *cap, uint32_t need, size_t elem) {
    if (need <= *cap && *p != NULL) return 0;
    uint32_t n = *cap ? *cap : 64;
    while (n < need) n = n > UINT32_MAX / 2 ? need : n * 2;
    void *q = a->alloc(a->ctx, (size_t)n * elem, 64);
    if (q == NULL) return SP_ENOMEM;
    if (*p) a->free(a->ctx, *p, (size_t)*cap * elem, 64);
    *p = q;
    *cap = n;
    return 0;
}

/* Start the journal over from now (world_int.h): jcap covers every slot
 * the world has room for, so marks between captures never overflow unless
 * the world grows. 0 or SP_ENOMEM (the journal is then off). */
static int journal_restart(sp_world_t *w) {
    const sp_allocator_t *a = w->alloc;
    uint32_t need = w->cap ? w->cap : 1;
    if (w->jcap < need || w->jn == NULL) {
        uint32_t *jn = a->alloc(a->ctx, (size_t)need * sizeof *jn, 64);
        uint8_t *injn = a->alloc(a->ctx, need, 64);
        if (jn == NULL || injn == NULL) {
            if (jn) a->free(a->ctx, jn, (size_t)need * sizeof *jn, 64);
            if (injn) a->free(a->ctx, injn, need, 64);
            w->jon = 0;
            return SP_ENOMEM;
        }
        if (w->jn) a->free(a->ctx, w->jn, (size_t)w->jcap * sizeof *w->jn, 64);
        if (w->injn) a->free(a->ctx, w->injn, w->jcap, 64);
        w->jn = jn;
        w->injn = injn;
        w->jcap = need;
        memset(w->injn, 0, need);
        w->njn = 0;
    }
    if (w->jdead == NULL || w->jdead_cap < need) {
        uint64_t *jd = a->alloc(a->ctx, (size_t)need * sizeof *jd, 64);
        if (jd == NULL) {
            w->jon = 0;
            return SP_ENOMEM;
        }
        if (w->jdead) a->free(a->ctx, w->jdead, (size_t)w->jdead_cap * sizeof *w->jdead, 64);
        w->jdead = jd;
        w->jdead_cap = need;
    }
    for (uint32_t k = 0; k < w->njn; k++) w->injn[w->jn[k]] = 0;
    w->njn = 0;
    w->njdead = 0;
    w->jon = 1;
    w->jvalid = 1;
    w->jtick = w->tick;
    return 0;
}

void sp_world_capture_reset(sp_world_t *w) {
    if (w != NULL) w->jvalid = 0;
}

int sp_world_capture_delta(sp_world_t *w, sp_world_capture_t *c) {
    if (w == NULL || c == NULL) return SP_EINVAL;
    if (!w->jon || !w->jvalid) {
        /* No journal to go by: a full capture, and the journal runs from it. */
        int rc = sp_world_capture(w, c);
        if (rc != 0) return rc;
        (void)journal_restart(w); /* off on OOM: the next capture is full again */
        return 0;
    }
    uint32_t most = w->naw + w->nawp + w->njn;
    const sp_allocator_t *a = c->alloc;
    if (most > c->up_cap || c->up == NULL) {
        /* up and keys (2 per row) grow together; nothing changes on OOM. */
        uint32_t n = c->up_cap ? c->up_cap : 64;
        while (n < most) n = n > UINT32_MAX / 2 ? most : n * 2;
        sp_frame_row_t *up = a->alloc(a->ctx, (size_t)n * sizeof *up, 64);
        uint64_t *keys = a->alloc(a->ctx, (size_t)n * 2 * sizeof *keys, 64);
        if (up == NULL || keys == NULL) {
            if (up) a->free(a->ctx, up, (size_t)n * sizeof *up, 64);
            if (keys) a->free(a->ctx, keys, (size_t)n * 2 * sizeof *keys, 64);
            return SP_ENOMEM;
        }
        if (c->up) a->free(a->ctx, c->up, (size_t)c->up_cap * sizeof *c->up, 64);
        if (c->keys) a->free(a->ctx, c->keys, (size_t)c->up_cap * 2 * sizeof *c->keys, 64);
        c->up = up;
        c->keys = keys;
        c->up_cap = n;
    }
    if (cap_grow(a, (void **)&c->dead, &c->dead_cap, w->njdead, sizeof(uint64_t)) != 0) return SP_ENOMEM;
    fsrc_t src;
    fsrc_of_world(&src, w);
    /* The journaled slots first (injn marks them), then the awake set
     * (aw and awp are disjoint: inaw), skipping what the journal had. */
    uint32_t n = 0;
    for (uint32_t k = 0; k < w->njn; k++) {
        uint32_t i = w->jn[k];
        if (w->kind[i] != SP_KIND_NONE) row_fill(&c->up[n++], &src, i);
    }
    const uint32_t *lists[2] = {w->aw, w->awp};
    uint32_t lens[2] = {w->naw, w->nawp};
    for (int l = 0; l < 2; l++)
        for (uint32_t k = 0; k < lens[l]; k++) {
            uint32_t i = lists[l][k];
            if (w->kind[i] == SP_KIND_NONE || (i < w->jcap && w->injn[i])) continue;
            row_fill(&c->up[n++], &src, i);
        }
    c->nup = n;
    if (w->njdead) memcpy(c->dead, w->jdead, (size_t)w->njdead * sizeof *c->dead);
    c->ndead = w->njdead;
    fsrc_def(&c->src, w);
    c->delta = 1;
    c->base_tick = w->jtick;
    if (journal_restart(w) != 0) w->jvalid = 0; /* cannot happen: the arrays exist */
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}


/* First row of rows[lo, hi) whose id is >= id (hi if none): binary search. */
static uint32_t rows_lower(const sp_frame_row_t *rows, uint32_t lo, uint32_t hi, uint64_t id) {
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (rows[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

uint32_t sp_frame_seek(const sp_frame_t *f, uint32_t from, sp_entity_id_t id) {
    /* Gallop: the bracket doubles from `from` until it passes id, then a
     * binary search inside it. */
    uint32_t n = f->count, lo = from, hi = from, step = 1;
    while (hi < n && f->rows[hi].id < id) {
        lo = hi + 1;
        hi = step > n - hi ? n : hi + step;
        step *= 2;
    }
    return rows_lower(f->rows, lo, hi < n ? hi : n, id);
}

sp_frame_t *sp_frame_build_delta(const sp_frame_t *prev, sp_world_capture_t *c) {
    if (c == NULL) return NULL;
    if (!c->delta) return sp_frame_build(c);
    if (prev == NULL || prev->tick != c->base_tick) return NULL;
    /* The changed rows by id: (id, index) pairs sorted. The dead ids sorted. */
    uint64_t *kp = c->keys;
    for (uint32_t k = 0; k < c->nup; k++) {
        kp[2 * k] = c->up[k].id;
        kp[2 * k + 1] = k;
    }
    qsort(kp, c->nup, 2 * sizeof *kp, cmp_u64); /* by id, the pair's first word (ids are unique) */
    qsort(c->dead, c->ndead, sizeof *c->dead, cmp_u64);
    uint32_t count = c->src.count;
    /* NPC room: at most every row; the change list: at most every changed
     * row and dead id. */
    sp_frame_t *f = frame_new_x(&c->src, count, count, c->nup, c->ndead);
    if (f == NULL) return NULL;
    sp_frame_row_t *rows = (sp_frame_row_t *)(uintptr_t)f->rows;
    uint32_t *chg = (uint32_t *)(uintptr_t)f->changed_rows;
    uint64_t *gone = (uint64_t *)(uintptr_t)f->gone_ids;
    uint32_t nchg = 0, ngone = 0;
    /* Merge: runs of prev's rows up to the next changed or dead id copied
     * as they are (memcpy), changed rows in their place, dead ones left
     * out. A dead id that is also changed came back (re-imported): the row
     * wins. O(rows) memcpy + O(changes log rows). */
    uint32_t i = 0, j = 0, d = 0, n = 0, pn = prev->count;
    const sp_frame_row_t *pr = prev->rows;
    int bad = 0;
    /* The same grid: the copied rows keep their cells (rent_ entries). */
    int same_grid = prev->cells_per_axis == f->cells_per_axis && prev->cell_size == f->cell_size &&
                    prev->half_extent == f->half_extent;
    while (i < pn || j < c->nup) {
        uint64_t next = UINT64_MAX;
        if (j < c->nup) next = kp[2 * j];
        while (d < c->ndead && j < c->nup && c->dead[d] == kp[2 * j]) d++; /* the row wins */
        if (d < c->ndead && c->dead[d] < next) next = c->dead[d];
        uint32_t e = next == UINT64_MAX ? pn : sp_frame_seek(prev, i, next);
        if (e > i) {
            if (n + (e - i) > count) {
                bad = 1;
                break;
            }
            memcpy(&rows[n], &pr[i], (size_t)(e - i) * sizeof *rows);
            if (same_grid) {
                memcpy((void *)(uintptr_t)&f->rent_[n], &prev->rent_[i], (size_t)(e - i) * sizeof *f->rent_);
                memcpy((void *)(uintptr_t)&f->tag_[n], &prev->tag_[i], e - i);
            }
            n += e - i;
            i = e;
        }
        if (next == UINT64_MAX) break;
        int in_prev = i < pn && pr[i].id == next;
        if (in_prev) i++; /* replaced or dead: prev's row goes */
        if (j < c->nup && kp[2 * j] == next) {
            if (n == count) {
                bad = 1;
                break;
            }
            chg[nchg++] = n;
            rows[n] = c->up[kp[2 * j + 1]];
            if (same_grid) rent_fill(f, n);
            n++;
            j++;
        } else {
            if (in_prev && (ngone == 0 || gone[ngone - 1] != next)) gone[ngone++] = next;
            d++; /* a dead id (absent from prev when it was born and died since) */
        }
    }
    if (bad || n != count) {
        /* The journal missed something: never hand out a wrong frame. The
         * caller takes a full capture next (sp_world_capture_reset). */
        sp_frame_release(f);
        return NULL;
    }
    if (!same_grid)
        for (uint32_t r = 0; r < count; r++) rent_fill(f, r);
    f->has_changes = 1;
    f->base_tick = prev->tick;
    f->nchanged = nchg;
    f->ngone = ngone;
    index_rows(f);
    return f;
}

int sp_world_capture_is_delta(const sp_world_capture_t *c) { return c != NULL && c->delta; }

uint32_t sp_world_capture_rows(const sp_world_capture_t *c) {
    if (c == NULL) return 0;
    return c->delta ? c->nup : c->src.count;
}

uint64_t sp_world_capture_tick(const sp_world_capture_t *c) { return c->src.tick; }

sp_frame_t *sp_frame_build(sp_world_capture_t *c) {
    if (c == NULL || c->block == NULL || c->delta) return NULL; /* a delta: sp_frame_build_delta */
    return build(&c->src);
}

void sp_frame_retain(const sp_frame_t *cf) {
    sp_frame_t *f = (sp_frame_t *)cf;
    /* Relaxed: the caller already holds a reference, so the frame is alive
     * and no other memory is published by the increment (as with
     * shared_ptr copies). Ordering against the final free is provided by the
     * release/acquire pair in sp_frame_release(). */
    atomic_fetch_add_explicit(&f->refs_, 1, memory_order_relaxed);
}

void sp_frame_release(const sp_frame_t *cf) {
    if (cf == NULL) return;
    sp_frame_t *f = (sp_frame_t *)cf;
    /* acq_rel. Release half: this thread's reads of the frame happen before
     * its decrement, so whoever frees cannot free memory still being read.
     * Acquire half: the decrement that reaches 0 reads the end of the release
     * sequence of every earlier decrement on refs_, so all other threads'
     * reads happen before the free below. With relaxed, a reader's loads
     * could be reordered after the free. (The classic "release, then an
     * acquire fence only on the last one" is equivalent and cheaper on weak
     * CPUs, but ThreadSanitizer does not model standalone fences; on x86 the
     * RMW is a locked instruction either way.) */
    if (atomic_fetch_sub_explicit(&f->refs_, 1, memory_order_acq_rel) == 1) {
        const sp_allocator_t *a = f->alloc_;
        if (f->ship_mem_) a->free(a->ctx, f->ship_mem_, f->ship_bytes_, 64);
        a->free(a->ctx, f, f->bytes_, 64);
    }
}

uint32_t sp_frame_refs(const sp_frame_t *f) {
    /* Relaxed: a statistic; the value may change right after the load. */
    return atomic_load_explicit(&((sp_frame_t *)f)->refs_, memory_order_relaxed);
}

long sp_frame_find(const sp_frame_t *f, sp_entity_id_t id) {
    uint32_t lo = rows_lower(f->rows, 0, f->count, id);
    return (lo < f->count && f->rows[lo].id == id) ? (long)lo : -1;
}

static int32_t axis_cell(double v, double half, double inv, uint32_t n) {
    double x = (v + half) * inv;
    if (!(x >= 0.0)) return 0;
    if (x >= (double)n) return (int32_t)n - 1;
    return (int32_t)x;
}

/* One spatial index of a frame: the main one (every row) or the ships'. */
typedef struct fidx {
    float half, cell;
    uint32_t cpa;
    const uint32_t *start;
    const sp_frame_cell_ent_t *ents;
} fidx_t;

static fidx_t fidx_all(const sp_frame_t *f) {
    return (fidx_t){f->half_extent, f->cell_size, f->cells_per_axis, f->cell_start, f->cell_ents};
}

/* A query's geometry. Border cells also hold rows clamped in from outside
 * the cube, so their outer side is unbounded and they are never "inside".
 * Cell bounds are widened by a margin covering the float rounding of
 * cell_coord(), so a row is never outside the bounds of its cell. */
typedef struct qgeo {
    double c[3], r2, half, cs, inv, margin;
    int32_t lo[3], hi[3];
    uint32_t n;
} qgeo_t;

/* 1: the query box covers over half of the grid (or r is infinite): scan
 * all rows instead. Otherwise fills g. Requires r >= 0, finite centre. */
static int qgeo_init(qgeo_t *g, const fidx_t *x, float cx, float cy, float cz, float r) {
    g->c[0] = cx, g->c[1] = cy, g->c[2] = cz;
    g->r2 = (double)r * r;
    g->half = x->half;
    g->cs = x->cell;
    g->inv = 1.0 / g->cs;
    g->margin = g->cs * 1e-3 + 1.0 / SP_FRAME_POS_SCALE;
    g->n = x->cpa;
    if (isinf(r)) return 1;
    uint64_t box = 1;
    for (int k = 0; k < 3; k++) {
        g->lo[k] = axis_cell(g->c[k] - r - g->margin, g->half, g->inv, g->n);
        g->hi[k] = axis_cell(g->c[k] + r + g->margin, g->half, g->inv, g->n);
        box *= (uint64_t)(g->hi[k] - g->lo[k] + 1);
    }
    return box * 2 > (uint64_t)g->n * g->n * g->n;
}

/* Distance from v to the widened slab of cell i: *dmin2 nearest (0 inside),
 * *dmax2 farthest (infinite for a border cell). */
static void slab(const qgeo_t *g, int k, int32_t i, double *dmin2, double *dmax2) {
    double v = g->c[k];
    double b0 = i * g->cs - g->half - g->margin, b1 = (i + 1) * g->cs - g->half + g->margin;
    int border = 0;
    if (i == 0) b0 = -INFINITY, border = 1;
    if (i == (int32_t)g->n - 1) b1 = INFINITY, border = 1;
    double d = v < b0 ? b0 - v : v > b1 ? v - b1 : 0.0;
    *dmin2 = d * d;
    double far = v - b0 > b1 - v ? v - b0 : b1 - v;
    *dmax2 = border ? INFINITY : far * far;
}

static int ent_in(const sp_frame_cell_ent_t *e, const double c[3], double r2) {
    double dx = (double)e->pos[0] / SP_FRAME_POS_SCALE - c[0];
    double dy = (double)e->pos[1] / SP_FRAME_POS_SCALE - c[1];
    double dz = (double)e->pos[2] / SP_FRAME_POS_SCALE - c[2];
    return dx * dx + dy * dy + dz * dz <= r2;
}

static int row_in(const sp_frame_row_t *row, const double c[3], double r2) {
    double dx = (double)row->pos[0] / SP_FRAME_POS_SCALE - c[0];
    double dy = (double)row->pos[1] / SP_FRAME_POS_SCALE - c[1];
    double dz = (double)row->pos[2] / SP_FRAME_POS_SCALE - c[2];
    return dx * dx + dy * dy + dz * dz <= r2;
}

typedef void (*emit_fn)(void *ctx, uint32_t row);

/* Every matching row, line of cells by line (z, then y): each (y, z) line
 * whose nearest point is within r is cut to the sphere's chord at that
 * point; the cells of the line wholly within the sphere (by the line's
 * farthest y/z distance) are emitted without a distance test. Inlined into
 * each caller so emit is a direct call. */
/* Emit the rows of ents[s, e) within the sphere: a branch-free filter into
 * a small batch, then one emit per match (candidates fail ~half the time, so
 * a branch per candidate would mispredict). */
SP_INLINE void scan_span(const sp_frame_cell_ent_t *ents, uint32_t s, uint32_t e, const double c[3], double r2,
                         emit_fn emit, void *ctx) {
    uint32_t batch[64];
    while (s < e) {
        uint32_t end = e - s > 64 ? s + 64 : e, m = 0;
        for (uint32_t k = s; k < end; k++) {
            batch[m] = ents[k].row;
            m += (uint32_t)ent_in(&ents[k], c, r2);
        }
        for (uint32_t j = 0; j < m; j++) emit(ctx, batch[j]);
        s = end;
    }
}

SP_INLINE void scan_cells(const fidx_t *x, const qgeo_t *g, emit_fn emit, void *ctx) {
    const uint32_t *st = x->start;
    const sp_frame_cell_ent_t *ents = x->ents;
    uint32_t n = g->n;
    double r2 = g->r2, c0 = g->c[0], half = g->half, inv = g->inv, m = g->margin;
    double ymin2[64], ymax2[64]; /* n <= 64 */
    for (int32_t y = g->lo[1]; y <= g->hi[1]; y++) slab(g, 1, y, &ymin2[y - g->lo[1]], &ymax2[y - g->lo[1]]);
    for (int32_t z = g->lo[2]; z <= g->hi[2]; z++) {
        double zmin2, zmax2;
        slab(g, 2, z, &zmin2, &zmax2);
        if (zmin2 > r2) continue;
        for (int32_t y = g->lo[1]; y <= g->hi[1]; y++) {
            double near2 = zmin2 + ymin2[y - g->lo[1]];
            if (near2 > r2) continue;
            double w = sqrt(r2 - near2);
            int32_t xl = axis_cell(c0 - w - m, half, inv, n), xh = axis_cell(c0 + w + m, half, inv, n);
            if (xl < g->lo[0]) xl = g->lo[0];
            if (xh > g->hi[0]) xh = g->hi[0];
            if (xl > xh) continue;
            uint32_t base = ((uint32_t)z * n + (uint32_t)y) * n;
            uint32_t s = st[base + (uint32_t)xl], e = st[base + (uint32_t)xh + 1];
            if (s == e) continue;
            /* Inner cells [a, b]: widened bounds within [c0 - wi, c0 + wi]. */
            double far2 = zmax2 + ymax2[y - g->lo[1]];
            if (far2 < r2) {
                double wi = sqrt(r2 - far2);
                double a = ceil((c0 - wi + half + m) * inv), b = floor((c0 + wi + half - m) * inv) - 1.0;
                if (a < (double)xl) a = xl;
                if (a < 1.0) a = 1.0;
                if (b > (double)xh) b = xh;
                if (b > (double)n - 2.0) b = (double)n - 2.0;
                if (a <= b) {
                    uint32_t is = st[base + (uint32_t)a], ie = st[base + (uint32_t)b + 1];
                    scan_span(ents, s, is, g->c, r2, emit, ctx);
                    for (uint32_t k = is; k < ie; k++) emit(ctx, ents[k].row);
                    s = ie;
                }
            }
            scan_span(ents, s, e, g->c, r2, emit, ctx);
        }
    }
}

/* ------------------------------------------------------------------ sorting */

static void isort_u32(uint32_t *a, size_t n) {
    for (size_t i = 1; i < n; i++) {
        uint32_t v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

#define SORT_SMALL 24

/* In-place MSD radix sort (American flag sort) on the 8 bits at `shift`,
 * then on the next lower 8 bits within each bucket; insertion sort for
 * small buckets. Depth <= 4 (2 KiB of stack each). */
static void msd_u32(uint32_t *a, size_t n, int shift) {
    if (n <= SORT_SMALL) {
        isort_u32(a, n);
        return;
    }
    uint32_t head[256], tail[256];
    memset(head, 0, sizeof head);
    for (size_t i = 0; i < n; i++) head[(a[i] >> shift) & 0xff]++;
    uint32_t sum = 0;
    for (int d = 0; d < 256; d++) {
        uint32_t cnt = head[d];
        head[d] = sum;
        sum += cnt;
        tail[d] = sum;
    }
    for (int d = 0; d < 256; d++) {
        while (head[d] < tail[d]) {
            uint32_t v = a[head[d]];
            uint32_t dv = (v >> shift) & 0xff;
            while (dv != (uint32_t)d) { /* cycle v to its bucket */
                uint32_t t = a[head[dv]];
                a[head[dv]++] = v;
                v = t;
                dv = (v >> shift) & 0xff;
            }
            a[head[d]++] = v;
        }
    }
    if (shift == 0) return;
    int next = shift > 8 ? shift - 8 : 0; /* overlapping bits are equal within a bucket */
    size_t start = 0;
    for (int d = 0; d < 256; d++) {
        size_t end = tail[d];
        if (end - start > 1) msd_u32(a + start, end - start, next);
        start = end;
    }
}

/* Sort n row indices (all < count) ascending. */
static void sort_rows(uint32_t *a, size_t n, uint32_t count) {
    if (n <= SORT_SMALL) {
        isort_u32(a, n);
        return;
    }
    int bits = 0;
    while (bits < 32 && (count - 1) >> bits) bits++;
    msd_u32(a, n, bits > 8 ? bits - 8 : 0);
}

/* ------------------------------------------------------------------ queries */

#define QBUF 256

/* Collector of sp_frame_query_sphere: out takes the first cap matches; once
 * full it is sorted and only matches below its largest (thr) are kept, in
 * buf, merged into out whenever buf fills (out then stays the cap smallest). */
typedef struct qsink {
    uint32_t *out;
    size_t cap, nout, found, nb;
    uint32_t thr, count;
    int full;
    uint32_t buf[QBUF];
} qsink_t;

static void sink_flush(qsink_t *q) {
    if (q->nb == 0) return;
    sort_rows(q->buf, q->nb, q->count);
    /* Merge from the back, dropping the nb largest: out keeps the cap smallest
     * of out + buf (write index k never passes the unread part of out). */
    size_t i = q->cap, j = q->nb, drop = q->nb;
    while (drop > 0) {
        if (j > 0 && (i == 0 || q->buf[j - 1] > q->out[i - 1])) j--;
        else i--;
        drop--;
    }
    for (size_t k = q->cap; k-- > 0;) {
        if (j > 0 && (i == 0 || q->buf[j - 1] > q->out[i - 1])) q->out[k] = q->buf[--j];
        else q->out[k] = q->out[--i];
    }
    q->nb = 0;
    q->thr = q->out[q->cap - 1];
}

static void sink_emit(void *ctx, uint32_t row) {
    qsink_t *q = ctx;
    q->found++;
    if (!q->full) {
        q->out[q->nout++] = row;
        if (q->nout == q->cap) {
            sort_rows(q->out, q->cap, q->count);
            q->full = 1;
            q->thr = q->out[q->cap - 1];
        }
    } else if (row < q->thr) {
        q->buf[q->nb++] = row;
        if (q->nb == QBUF) sink_flush(q);
    }
}

static int query_ok(const sp_frame_t *f, float cx, float cy, float cz, float r) {
    return f != NULL && r >= 0.0f && isfinite(cx) && isfinite(cy) && isfinite(cz) && f->count > 0;
}

size_t sp_frame_query_sphere(const sp_frame_t *f, float cx, float cy, float cz, float r,
                             uint32_t *out, size_t cap) {
    if (!query_ok(f, cx, cy, cz, r)) return 0;
    qgeo_t g;
    fidx_t all = fidx_all(f);
    if (qgeo_init(&g, &all, cx, cy, cz, r)) {
        /* Big query: a linear scan is already in row (= id) order. */
        size_t found = 0;
        for (uint32_t i = 0; i < f->count; i++) {
            if (!row_in(&f->rows[i], g.c, g.r2)) continue;
            if (found < cap) out[found] = i;
            found++;
        }
        return found;
    }
    qsink_t q;
    q.out = out;
    q.cap = cap;
    q.nout = q.found = q.nb = 0;
    q.count = f->count;
    q.full = cap == 0;
    q.thr = 0; /* cap 0: nothing is kept */
    scan_cells(&all, &g, sink_emit, &q);
    if (!q.full) sort_rows(out, q.nout, q.count);
    else if (cap > 0) sink_flush(&q);
    return q.found;
}

/* Without a ships' index: the main one's rows, ships passed on. */
typedef struct ship_filter {
    const sp_frame_t *f;
    void (*fn)(void *ctx, uint32_t row);
    void *ctx;
} ship_filter_t;

static void ship_filter_emit(void *ctx, uint32_t row) {
    ship_filter_t *s = ctx;
    if ((sp_frame_row_tag(s->f, row) & ~SP_FRAME_TAG_FIGHTER) == SP_KIND_SHIP) s->fn(s->ctx, row);
}

void sp_frame_visit_sphere_ships(const sp_frame_t *f, float cx, float cy, float cz, float r,
                                 void (*fn)(void *ctx, uint32_t row), void *ctx) {
    if (fn == NULL || !query_ok(f, cx, cy, cz, r)) return;
    if (f->ship_ents == NULL) {
        ship_filter_t sf = {f, fn, ctx};
        sp_frame_visit_sphere(f, cx, cy, cz, r, ship_filter_emit, &sf);
        return;
    }
    fidx_t ships = {f->half_extent, f->ship_cell_size, f->ship_cells_per_axis, f->ship_start, f->ship_ents};
    qgeo_t g;
    if (qgeo_init(&g, &ships, cx, cy, cz, r)) {
        for (uint32_t i = 0; i < f->nships; i++)
            if (ent_in(&f->ship_ents[i], g.c, g.r2)) fn(ctx, f->ship_ents[i].row);
        return;
    }
    scan_cells(&ships, &g, fn, ctx);
}

void sp_frame_visit_sphere(const sp_frame_t *f, float cx, float cy, float cz, float r,
                           void (*fn)(void *ctx, uint32_t row), void *ctx) {
    if (fn == NULL || !query_ok(f, cx, cy, cz, r)) return;
    qgeo_t g;
    fidx_t all = fidx_all(f);
    if (qgeo_init(&g, &all, cx, cy, cz, r)) {
        for (uint32_t i = 0; i < f->count; i++)
            if (row_in(&f->rows[i], g.c, g.r2)) fn(ctx, i);
        return;
    }
    scan_cells(&all, &g, fn, ctx);
}
