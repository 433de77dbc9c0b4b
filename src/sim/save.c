/* save.c: world checkpoints (see save.h for the format and contract).
 *
 * Writing is a straight serialization. Loading is two passes over the same
 * bytes: pass 1 (validate) reads and checks everything without allocating a
 * world; pass 2 (build) reads again into a freshly allocated world. Pass 2
 * cannot meet anything pass 1 did not accept, so the only failure after
 * allocation starts is SP_ENOMEM, which frees the partial world.
 *
 * sp_save_write_file() (at the end) is the one writer of checkpoint files,
 * for spacesimd and spacesim-ckpt alike: plain POSIX I/O, no logging; the
 * caller reports the message it returns. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/save.h"
#include "sim/world_int.h"

#define HDR_SIZE 32u
static const char MAGIC[8] = {'S', 'P', 'W', 'O', 'R', 'L', 'D', '\0'};

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---------------------------------------------------------------- writer */

/* The definition fields: SP__DEF_FIELDS / SP__DEF_FIELDS_V4 in world_int.h. */


/* Bytes of the definition fields, of the scalar state (the world_int.h lists;
 * version 2 added the respawn state after last_rebuild) and of one live slot
 * after its kind, id and epoch (versions 1-3: after gen + kind). */
#define SP__SIZE_u8 1
#define SP__SIZE_i8 1
#define SP__SIZE_u64 8
#define SP__SIZE_u32 4
#define SP__SIZE_i32 4
#define SP__SIZE_f 4
#define SP__DEF_SIZE(t, f) +SP__SIZE_##t
#define SP__SCALAR_SIZE(t, f, since) +SP__SIZE_##t
#define SP__SLOTS_SIZE(t, f, n) +SP__SIZE_##t * (n)
enum { DEF_BYTES = 0 SP__DEF_FIELDS(SP__DEF_SIZE) SP__DEF_FIELDS_V4(SP__DEF_SIZE) };
enum { SCALAR_BYTES = 0 SP__WORLD_CLOCK_FIELDS(SP__SCALAR_SIZE) SP__WORLD_SCALAR_FIELDS(SP__SCALAR_SIZE) };
enum { LIVE_SLOT_BYTES = 0 SP__WORLD_SLOT_FIELDS(SP__DEF_SIZE, SP__SLOTS_SIZE) };

static int cmp_ent(const void *a, const void *b) {
    uint64_t x = ((const sp__mapent_t *)a)->key, y = ((const sp__mapent_t *)b)->key;
    return x < y ? -1 : x > y;
}
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Direct writer into a buffer of exactly the right size. */
typedef struct wcur {
    uint8_t *p;
} wcur_t;
static void w_put(wcur_t *c, const void *src, size_t n) {
    if (n == 0) return; /* src may be NULL then (an empty world's free list) */
    memcpy(c->p, src, n); /* little-endian host (x86-64), as the format */
    c->p += n;
}
static void w_u8(wcur_t *c, uint8_t v) { *c->p++ = v; }
static void w_i8(wcur_t *c, int8_t v) { w_u8(c, (uint8_t)v); }
static void w_u32(wcur_t *c, uint32_t v) { w_put(c, &v, 4); }
static void w_i32(wcur_t *c, int32_t v) { w_put(c, &v, 4); }
static void w_u64(wcur_t *c, uint64_t v) { w_put(c, &v, 8); }
static void w_f(wcur_t *c, float v) { w_put(c, &v, 4); }

int sp_world_save_unsealed(const sp_world_t *w, uint8_t **out_buf, size_t *out_len) {
    return sp_world_save_unsealed_annex(w, NULL, 0, out_buf, out_len);
}

int sp_world_save_unsealed_annex(const sp_world_t *w, const void *annex, size_t annex_len, uint8_t **out_buf,
                                 size_t *out_len) {
    if (w == NULL || out_buf == NULL || out_len == NULL || (annex == NULL && annex_len != 0)) return SP_EINVAL;
    if (annex_len > UINT32_MAX) return SP_EOVERFLOW;
    /* Exact size first: one allocation, no copying as the buffer grows. */
    uint32_t ndep = w->departed.n;
    uint64_t len = (uint64_t)HDR_SIZE + DEF_BYTES + SCALAR_BYTES + 4 + 4 + 4 + 4ull * w->nfree +
                   1ull * w->nslots + (16ull + LIVE_SLOT_BYTES) * w->count + 4 + 16ull * ndep + 4 + annex_len;
    if (len > SIZE_MAX) return SP_EOVERFLOW;
    /* The departure memory in id order, so that the bytes do not depend on
     * the map's layout (a loaded world's map may be laid out differently). */
    sp__mapent_t *dep = NULL;
    if (ndep > 0) {
        dep = malloc((size_t)ndep * sizeof *dep);
        if (dep == NULL) return SP_ENOMEM;
        uint32_t k = 0;
        for (uint32_t j = 0; j <= w->departed.mask; j++)
            if (w->departed.e[j].key != 0) dep[k++] = w->departed.e[j];
        SP_ASSERT(k == ndep);
        qsort(dep, ndep, sizeof *dep, cmp_ent);
    }
    uint8_t *buf = malloc((size_t)len);
    if (buf == NULL) {
        free(dep);
        return SP_ENOMEM;
    }
    memset(buf, 0, HDR_SIZE); /* filled by sp_world_save_seal() */
    wcur_t c = {buf + HDR_SIZE};
    const sp_world_def_t *d = &w->def;
#define SP__PUT_DEF(t, f) w_##t(&c, d->f);
    SP__DEF_FIELDS(SP__PUT_DEF)
    SP__DEF_FIELDS_V4(SP__PUT_DEF)
#undef SP__PUT_DEF
#define SP__PUT_SCALAR(t, fld, since) w_##t(&c, w->fld);
    SP__WORLD_CLOCK_FIELDS(SP__PUT_SCALAR)
    SP__WORLD_SCALAR_FIELDS(SP__PUT_SCALAR)
#undef SP__PUT_SCALAR
    w_u32(&c, w->nslots);
    w_u32(&c, w->count);
    w_u32(&c, w->nfree);
    w_put(&c, w->free_list, 4ull * w->nfree);
    for (uint32_t i = 0; i < w->nslots; i++) {
        w_u8(&c, w->kind[i]);
        if (w->kind[i] == SP_KIND_NONE) continue;
        w_u64(&c, w->id[i]);
        w_u64(&c, w->epoch[i]);
#define SP__PUT_SLOT(t, fld) w_##t(&c, w->fld[i]);
#define SP__PUT_SLOTS(t, fld, n) w_put(&c, &w->fld[(size_t)i * (n)], (n) * sizeof w->fld[0]);
        SP__WORLD_SLOT_FIELDS(SP__PUT_SLOT, SP__PUT_SLOTS)
#undef SP__PUT_SLOT
#undef SP__PUT_SLOTS
    }
    w_u32(&c, ndep);
    for (uint32_t k = 0; k < ndep; k++) {
        w_u64(&c, dep[k].key);
        w_u64(&c, dep[k].val);
    }
    free(dep);
    w_u32(&c, (uint32_t)annex_len);
    w_put(&c, annex, annex_len);
    SP_ASSERT((uint64_t)(c.p - buf) == len);
    *out_buf = buf;
    *out_len = (size_t)len;
    return 0;
}

void sp_world_save_seal(uint8_t *buf, size_t len) {
    uint64_t plen = len - HDR_SIZE, sum = fnv1a64(buf + HDR_SIZE, plen);
    uint32_t ver = SP_SAVE_VERSION, hs = HDR_SIZE;
    memcpy(buf, MAGIC, 8);
    memcpy(buf + 8, &ver, 4);
    memcpy(buf + 12, &hs, 4);
    memcpy(buf + 16, &plen, 8);
    memcpy(buf + 24, &sum, 8);
}

int sp_world_save(const sp_world_t *w, uint8_t **out_buf, size_t *out_len) {
    int rc = sp_world_save_unsealed(w, out_buf, out_len);
    if (rc == 0) sp_world_save_seal(*out_buf, *out_len);
    return rc;
}

/* ---------------------------------------------------------------- reader */

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
    int bad;
} rbuf_t;

static void get(rbuf_t *b, void *dst, size_t n) {
    if (b->bad || b->n - b->off < n) {
        b->bad = 1;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, b->p + b->off, n);
    b->off += n;
}
static uint8_t get_u8(rbuf_t *b) {
    uint8_t v;
    get(b, &v, 1);
    return v;
}
static int8_t get_i8(rbuf_t *b) { return (int8_t)get_u8(b); }
static uint32_t get_u32(rbuf_t *b) {
    uint32_t v;
    get(b, &v, 4);
    return v;
}
static int32_t get_i32(rbuf_t *b) {
    int32_t v;
    get(b, &v, 4);
    return v;
}
static uint64_t get_u64(rbuf_t *b) {
    uint64_t v;
    get(b, &v, 8);
    return v;
}
static float get_f(rbuf_t *b) {
    float v;
    get(b, &v, 4);
    return v;
}

/* One slot as read. Version 4: kind, and for a live slot id, epoch and the
 * slot fields. Versions 1-3: gen, kind, fields; the id is gen << 32 | slot. */
typedef struct slot_rec {
    uint32_t gen; /* versions 1-3 only */
    sp_entity_state_t s;
} slot_rec_t;

static void get_slot(rbuf_t *b, uint32_t ver, uint32_t slot, slot_rec_t *r) {
    memset(r, 0, sizeof *r);
    sp_entity_state_t *s = &r->s;
    if (ver < 4) r->gen = get_u32(b);
    s->kind = get_u8(b);
    s->resource = -1;
    if (s->kind == SP_KIND_NONE) return;
    if (ver >= 4) {
        s->id = get_u64(b);
        s->epoch = get_u64(b);
    } else {
        s->id = ((uint64_t)r->gen << 32) | slot;
    }
#define SP__GET_SLOT(t, fld) s->fld = get_##t(b);
#define SP__GET_SLOTS(t, fld, n) \
    for (size_t k = 0; k < (n); k++) s->fld[k] = get_##t(b);
    SP__WORLD_SLOT_FIELDS(SP__GET_SLOT, SP__GET_SLOTS)
#undef SP__GET_SLOT
#undef SP__GET_SLOTS
}

/* isfinite() for the float fields, nothing for the integers. */
#define SP__FINITE_u8(x) 1
#define SP__FINITE_i8(x) 1
#define SP__FINITE_u32(x) 1
#define SP__FINITE_u64(x) 1
#define SP__FINITE_f(x) isfinite(x)

/* Every invariant the world relies on, for one live entity (ids are the
 * caller's business: checkpoints check them as a set). */
int sp__state_ok(const sp_world_def_t *d, const sp_entity_state_t *s) {
    if (!sp_kind_valid(s->kind)) return 0;
#define SP__SLOT_FINITE(t, fld) \
    if (!SP__FINITE_##t(s->fld)) return 0;
#define SP__SLOTS_FINITE(t, fld, n) /* cargo: checked below */
    SP__WORLD_SLOT_FIELDS(SP__SLOT_FINITE, SP__SLOTS_FINITE)
#undef SP__SLOT_FINITE
#undef SP__SLOTS_FINITE
    for (int r = 0; r < SP_RESOURCE_COUNT; r++)
        if (!(s->cargo[r] >= 0.0f) || !isfinite(s->cargo[r])) return 0;
    /* Positions: walls reflect awake bodies to within h - r, and a contact's
     * positional correction moves a body by less than the sum of two radii;
     * anything beyond this bound was not made by the world (and would make
     * static-grid cell coordinates overflow). */
    float rmax = d->asteroid_radius_max > d->ship_radius ? d->asteroid_radius_max : d->ship_radius;
    float lim = 2.0f * d->half_extent + 4.0f * rmax + 16.0f;
    if (fabsf(s->px) > lim || fabsf(s->py) > lim || fabsf(s->pz) > lim) return 0;
    /* Velocities: commands cap them (SP_WORLD_MAX_VELOCITY) and contacts do
     * not add energy; this wide bound keeps every later sum finite. */
    if (fabsf(s->vx) > 1e12f || fabsf(s->vy) > 1e12f || fabsf(s->vz) > 1e12f) return 0;
    if (!(s->radius > 0.0f) || !(s->inv_mass >= 0.0f) || !(s->hp > 0.0f) ||
        !(s->max_hp > 0.0f) || !(s->amount >= 0.0f) || s->hp > s->max_hp)
        return 0;
    /* Derived quantities must be exactly what spawning computed. */
    float rad = s->radius;
    const uint8_t known = SP_ENT_NPC | SP_ENT_SLEEPING | SP_ENT_MINER | SP_ENT_FIGHTER;
    if (s->flags & ~known) return 0;
    uint8_t role = s->flags & (SP_ENT_MINER | SP_ENT_FIGHTER);
    if (role == (SP_ENT_MINER | SP_ENT_FIGHTER)) return 0;
    switch (s->kind) {
    case SP_KIND_SHIP: {
        int npc = (s->flags & SP_ENT_NPC) != 0;
        if (npc != (s->owner == 0) || (role && !npc) || (s->flags & SP_ENT_SLEEPING)) return 0;
        if (s->resource != -1 || s->amount != 0.0f) return 0;
        if (rad != d->ship_radius || s->inv_mass != 1.0f / d->ship_mass || s->max_hp != d->ship_hp) return 0;
        if (s->wcd > d->weapon_cooldown_ticks || s->mcd > d->mining_cooldown_ticks) return 0;
        if (s->ttl != 0 || s->rest != 0 || s->source != 0) return 0;
        double l2 = (double)s->dvx * s->dvx + (double)s->dvy * s->dvy +
                    (double)s->dvz * s->dvz;
        if (sqrt(l2) > (double)d->ship_max_speed * 1.0001 + 1e-6) return 0;
        return 1;
    }
    case SP_KIND_ASTEROID:
        if (s->flags & ~SP_ENT_SLEEPING) return 0;
        if (s->resource < 0 || s->resource >= SP_RESOURCE_COUNT) return 0;
        if (!(s->amount > 0.0f) || rad > d->asteroid_radius_max) return 0;
        if (s->inv_mass != 1.0f / (d->asteroid_density * rad * rad * rad) ||
            s->max_hp != d->asteroid_hp_per_radius * rad)
            return 0;
        if (s->rest > d->sleep_ticks || s->wcd || s->mcd || s->ttl || s->source) return 0;
        if ((s->flags & SP_ENT_SLEEPING) &&
            (s->vx != 0.0f || s->vy != 0.0f || s->vz != 0.0f))
            return 0;
        for (int r = 0; r < SP_RESOURCE_COUNT; r++)
            if (s->cargo[r] != 0.0f) return 0;
        return s->dvx == 0.0f && s->dvy == 0.0f && s->dvz == 0.0f;
    case SP_KIND_PROJECTILE:
        if (s->flags != 0 || s->resource != -1 || s->amount != 0.0f || s->inv_mass != 0.0f) return 0;
        if (rad != 0.5f || s->max_hp != 1.0f || s->owner == UINT32_MAX) return 0;
        if (s->dvx != 0.0f || s->dvy != 0.0f || s->dvz != 0.0f) return 0;
        if (s->ttl == 0 || s->ttl > d->projectile_ttl_ticks || s->wcd || s->mcd || s->rest) return 0;
        for (int r = 0; r < SP_RESOURCE_COUNT; r++)
            if (s->cargo[r] != 0.0f) return 0;
        return 1;
    default:
        return 0;
    }
}

#define SP__HEAD_SCALAR(t, fld, since) SP__CTYPE_##t fld;
typedef struct head {
    sp_world_def_t def;
    SP__WORLD_CLOCK_FIELDS(SP__HEAD_SCALAR)
    SP__WORLD_SCALAR_FIELDS(SP__HEAD_SCALAR)
    uint32_t nslots, count, nfree;
    uint32_t ver;
} head_t;
#undef SP__HEAD_SCALAR

static void get_head(rbuf_t *b, uint32_t ver, head_t *h) {
    memset(h, 0, sizeof *h);
    h->def = sp_world_def_default();
#define SP__GET_DEF(t, f) h->def.f = get_##t(b);
    SP__DEF_FIELDS(SP__GET_DEF)
    if (ver >= 4) {
        SP__DEF_FIELDS_V4(SP__GET_DEF)
    }
#undef SP__GET_DEF
    h->def.allocator = NULL;
    h->def.grid_threads = 1;
#define SP__GET_SCALAR(t, fld, since) \
    if (ver >= (since)) h->fld = get_##t(b);
    SP__WORLD_CLOCK_FIELDS(SP__GET_SCALAR)
    SP__WORLD_SCALAR_FIELDS(SP__GET_SCALAR)
#undef SP__GET_SCALAR
    h->nslots = get_u32(b);
    h->count = get_u32(b);
    h->nfree = get_u32(b);
    h->ver = ver;
}

/* The first id this world may mint after a version < 4 load: above every
 * old id that lies in node 0's space. */
static uint64_t legacy_next_id(uint64_t max_low) { return max_low + 1; }

/* Pass 1: everything checked, nothing allocated except a bitmap of the free
 * list (to prove it lists each free slot exactly once) and, for version 4,
 * a sorted array of the ids (to prove them unique). */
static int validate(const uint8_t *buf, size_t len, size_t *annex_off, size_t *annex_len) {
    if (len < HDR_SIZE || memcmp(buf, MAGIC, 8) != 0) return SP_ECORRUPT;
    uint32_t ver, hs;
    uint64_t plen, sum;
    memcpy(&ver, buf + 8, 4);
    memcpy(&hs, buf + 12, 4);
    memcpy(&plen, buf + 16, 8);
    memcpy(&sum, buf + 24, 8);
    if (ver < 1 || ver > SP_SAVE_VERSION || hs != HDR_SIZE || plen != len - HDR_SIZE) return SP_ECORRUPT;
    if (fnv1a64(buf + HDR_SIZE, plen) != sum) return SP_ECORRUPT;
    rbuf_t b = {buf + HDR_SIZE, plen, 0, 0};
    head_t h;
    get_head(&b, ver, &h);
    if (b.bad || sp__world_def_check(&h.def) != 0) return SP_ECORRUPT;
    if (h.rs_npc_target > h.def.max_entities || h.rs_ast_target > h.def.max_entities) return SP_ECORRUPT;
    if (h.sleep_enabled > 1 || h.last_rebuild > h.tick) return SP_ECORRUPT;
    if (h.nslots > h.def.max_entities || h.nfree > h.nslots || h.count != h.nslots - h.nfree)
        return SP_ECORRUPT;
    uint64_t id_lo = ((uint64_t)h.def.id_node << SP_WORLD_ID_COUNTER_BITS) | 1,
             id_end = (uint64_t)(h.def.id_node + 1) << SP_WORLD_ID_COUNTER_BITS;
    if (ver >= 4 && (h.next_id < id_lo || h.next_id > id_end)) return SP_ECORRUPT;
    /* Cheap length bound before any allocation: a free slot takes >= 5 bytes
     * (list entry + kind), a live one more. */
    if ((uint64_t)h.nslots + (uint64_t)h.nfree * 4 > plen - b.off) return SP_ECORRUPT;
    uint8_t *seen = calloc((size_t)h.nslots / 8 + 1, 1);
    if (seen == NULL) return SP_ENOMEM;
    uint64_t *ids = NULL;
    int rc = 0;
    for (uint32_t k = 0; k < h.nfree && rc == 0; k++) {
        uint32_t i = get_u32(&b);
        if (b.bad || i >= h.nslots || (seen[i / 8] & (1u << (i % 8)))) rc = SP_ECORRUPT;
        else seen[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    if (rc == 0 && ver >= 4 && h.count > 0 && (ids = malloc((size_t)h.count * sizeof *ids)) == NULL) rc = SP_ENOMEM;
    uint32_t live = 0, sleeping = 0;
    slot_rec_t r;
    for (uint32_t i = 0; i < h.nslots && rc == 0; i++) {
        get_slot(&b, ver, i, &r);
        const sp_entity_state_t *s = &r.s;
        int is_free = (seen[i / 8] >> (i % 8)) & 1;
        if (b.bad || is_free != (s->kind == SP_KIND_NONE) || (ver < 4 && r.gen == 0)) rc = SP_ECORRUPT;
        if (rc != 0 || s->kind == SP_KIND_NONE) continue;
        if (!sp__state_ok(&h.def, s)) rc = SP_ECORRUPT;
        /* An id this node minted is below its counter. */
        if (ver >= 4 && (s->id == 0 || (s->id >= id_lo && s->id < id_end && s->id >= h.next_id))) rc = SP_ECORRUPT;
        if (ids != NULL && live < h.count) ids[live] = s->id;
        live++;
        if (s->flags & SP_ENT_SLEEPING) sleeping++;
    }
    free(seen);
    if (rc == 0 && ver >= 4) {
        uint32_t ndep = get_u32(&b);
        if (b.bad || (uint64_t)ndep * 16 > b.n - b.off || live != h.count) rc = SP_ECORRUPT;
        if (rc == 0 && ndep > 0) {
            uint64_t *all = realloc(ids, ((size_t)h.count + ndep) * sizeof *all);
            if (all == NULL) rc = SP_ENOMEM;
            else ids = all;
        }
        uint64_t prev = 0;
        for (uint32_t k = 0; k < ndep && rc == 0; k++) {
            uint64_t id = get_u64(&b), ep = get_u64(&b);
            /* Ascending, non-zero; an epoch is >= 1 (it exceeded the entity's). */
            if (b.bad || id <= prev || ep == 0) rc = SP_ECORRUPT;
            prev = id;
            ids[h.count + k] = id;
        }
        /* Ids unique, and none both live and departed. */
        if (rc == 0 && (uint64_t)h.count + ndep > 1) {
            size_t n = (size_t)h.count + ndep;
            qsort(ids, n, sizeof *ids, cmp_u64);
            for (size_t k = 1; k < n; k++)
                if (ids[k] == ids[k - 1]) rc = SP_ECORRUPT;
        }
    }
    free(ids);
    if (rc != 0) return rc;
    *annex_off = *annex_len = 0;
    if (ver >= 3) { /* the annex: exactly the rest of the payload */
        uint32_t alen = get_u32(&b);
        if (b.bad || alen != b.n - b.off) return SP_ECORRUPT;
        *annex_off = HDR_SIZE + b.off;
        *annex_len = alen;
        b.off += alen;
    }
    if (live != h.count || b.off != b.n) return SP_ECORRUPT; /* trailing bytes too */
    if (!h.sleep_enabled && sleeping != 0) return SP_ECORRUPT;
    return 0;
}

int sp_world_load(const uint8_t *buf, size_t len, const sp_allocator_t *alloc, int grid_threads,
                  sp_world_t **out) {
    return sp_world_load_annex(buf, len, alloc, grid_threads, out, NULL, NULL);
}

int sp_world_load_annex(const uint8_t *buf, size_t len, const sp_allocator_t *alloc, int grid_threads,
                        sp_world_t **out, const uint8_t **annex, size_t *annex_len) {
    if (buf == NULL || out == NULL) return SP_EINVAL;
    if (grid_threads == 0) grid_threads = 1;
    if (grid_threads < 1 || grid_threads > SP_GRID_MAX_THREADS) return SP_EINVAL;
    size_t aoff, alen;
    int rc = validate(buf, len, &aoff, &alen);
    if (rc != 0) return rc;
    /* Pass 2: build. */
    rbuf_t b = {buf + HDR_SIZE, len - HDR_SIZE, 0, 0};
    uint32_t ver;
    memcpy(&ver, buf + 8, 4);
    head_t h;
    get_head(&b, ver, &h);
    h.def.allocator = alloc;
    h.def.grid_threads = grid_threads;
    sp_world_t *w;
    rc = sp__world_alloc(&h.def, alloc, grid_threads, &w);
    if (rc != 0) return rc;
    if (h.nslots > 0 && (rc = sp__world_reserve(w, h.nslots)) != 0) {
        sp_world_free(w);
        return rc;
    }
    if ((rc = sp__map_reserve(w->alloc, &w->ids, h.count)) != 0) {
        sp_world_free(w);
        return rc;
    }
    w->nslots = h.nslots;
    w->nfree = h.nfree;
    for (uint32_t k = 0; k < h.nfree; k++) w->free_list[k] = get_u32(&b);
    slot_rec_t r;
    uint64_t max_low = 0; /* versions < 4: largest old id in node 0's space */
    for (uint32_t i = 0; i < h.nslots; i++) {
        get_slot(&b, ver, i, &r);
        const sp_entity_state_t *s = &r.s;
        w->kind[i] = s->kind;
        w->resource[i] = -1;
        if (s->kind == SP_KIND_NONE) continue;
        w->id[i] = s->id;
        w->epoch[i] = s->epoch;
        sp__map_insert(&w->ids, s->id, i);
        if (s->id < (1ull << SP_WORLD_ID_COUNTER_BITS) && s->id > max_low) max_low = s->id;
#define SP__SET_SLOT(t, fld) w->fld[i] = s->fld;
#define SP__SET_SLOTS(t, fld, n) \
    for (size_t k = 0; k < (n); k++) w->fld[(size_t)i * (n) + k] = s->fld[k];
        SP__WORLD_SLOT_FIELDS(SP__SET_SLOT, SP__SET_SLOTS)
#undef SP__SET_SLOT
#undef SP__SET_SLOTS
        w->count++;
        w->count_kind[s->kind]++;
        if (s->kind == SP_KIND_SHIP && (s->flags & SP_ENT_NPC)) w->count_npc++;
        if (s->flags & SP_ENT_SLEEPING) w->nsleeping++;
    }
    if (ver >= 4) {
        uint32_t ndep = get_u32(&b);
        if ((rc = sp__map_reserve(w->alloc, &w->departed, ndep)) != 0) {
            sp_world_free(w);
            return rc;
        }
        for (uint32_t k = 0; k < ndep; k++) {
            uint64_t id = get_u64(&b), ep = get_u64(&b);
            sp__map_insert(&w->departed, id, ep);
        }
    } else {
        h.next_id = legacy_next_id(max_low);
    }
    w->awake_dirty = 1;
    /* The static grid and the awake set are derived state: build them from
     * the SLEEPING flags (no promotion), then restore the scalar state, the rebuild-rule
     * counters included, so future rebuilds happen at the same ticks as in
     * the saved world (of that state the rebuild reads only tick, to reset
     * last_rebuild, which is restored here). */
    if ((rc = sp__world_rebuild_static(w, 0)) != 0) {
        sp_world_free(w);
        return rc;
    }
#define SP__SET_SCALAR(t, fld, since) w->fld = h.fld;
    SP__WORLD_CLOCK_FIELDS(SP__SET_SCALAR)
    SP__WORLD_SCALAR_FIELDS(SP__SET_SCALAR)
#undef SP__SET_SCALAR
    *out = w;
    if (annex) *annex = alen ? buf + aoff : NULL;
    if (annex_len) *annex_len = alen;
    return 0;
}

/* ----------------------------------------------------------- file writer */

/* The caller's message, if it gave room for one. */
__attribute__((format(printf, 3, 4))) static void say(char *msg, size_t msgsz, const char *fmt, ...) {
    if (msgsz == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msgsz, fmt, ap);
    va_end(ap);
}

/* write(2) until all n bytes are out. 0, or -1 with errno set. */
static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        if (w == 0) { /* not for a regular file with n > 0, but never spin on it */
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int sp_save_write_file(const char *path, const uint8_t *buf, size_t len, char *msg, size_t msgsz) {
    /* PATH_MAX (4 KiB) twice on the stack: callers run on the loop thread or
     * a libuv pool thread (8 MiB stacks), and nothing is allocated. */
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (msgsz > 0) msg[0] = '\0';
    size_t plen = strlen(path);
    if (plen + sizeof ".tmp" > sizeof tmp) {
        say(msg, msgsz, "path too long (%zu bytes, at most %zu)", plen, sizeof tmp - sizeof ".tmp");
        return SP_EMSGSIZE;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", sizeof ".tmp");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        say(msg, msgsz, "cannot create %s: %s", tmp, strerror(errno));
        return SP_EIO;
    }
    /* From here every failure removes tmp: a half-written one is garbage
     * (path still holds the last complete file) and would only be left for
     * someone to mistake for a checkpoint. errno is kept before close() and
     * unlink(), which may change it. */
    const char *step = NULL;
    if (write_all(fd, buf, len) != 0) step = "writing";
    else if (fsync(fd) != 0) step = "fsync of";
    if (step != NULL) {
        int e = errno;
        close(fd);
        unlink(tmp);
        say(msg, msgsz, "%s %s: %s", step, tmp, strerror(e));
        return SP_EIO;
    }
    if (close(fd) != 0) { /* after a good fsync, NFS may still report here */
        int e = errno;
        unlink(tmp);
        say(msg, msgsz, "closing %s: %s", tmp, strerror(e));
        return SP_EIO;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        say(msg, msgsz, "rename of %s: %s", tmp, strerror(e));
        return SP_EIO;
    }
    /* The rename is an update of the directory, durable only once the
     * directory is fsynced; without it a crash soon after could bring back
     * the old file (or none). The new file is in place either way, so a
     * failure here is a warning, not an error (see save.h). */
    memcpy(dir, path, plen + 1);
    const char *d = dirname(dir);
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        say(msg, msgsz, "cannot open its directory %s to fsync it: %s", d, strerror(errno));
        return 0;
    }
    if (fsync(dfd) != 0) say(msg, msgsz, "fsync of its directory %s failed: %s", d, strerror(errno));
    close(dfd);
    return 0;
}
