/* particles.c: capped SoA particle system (see spacesim/particles.h).
 *
 * Storage: one allocation of 8 * stride floats, 64-byte aligned, where stride
 * is cap rounded up to 16 floats (one AVX-512 register, 64 bytes), so every
 * field array starts on a 64-byte boundary; then the death mask, one bit per
 * slot ((cap + 63) / 64 words), scratch for sp_particles_update(). Invariant
 * between calls: the first `count` slots of every array hold the live
 * particles, and each of them has life > 0 (emit refuses life <= 0 and
 * update removes every particle it ages to <= 0). */
#include "spacesim/particles.h"

#include "spacesim/simd.h"

enum { F_X, F_Y, F_Z, F_VX, F_VY, F_VZ, F_LIFE, F_MASS, F_COUNT };

struct sp_particles {
    float *f[F_COUNT]; /* field arrays, each `stride` floats, inside `block` */
    uint64_t *dead;    /* death mask after the arrays, inside `block` */
    float *block;
    size_t block_bytes;
    size_t count; /* live particles; written only by this file */
    size_t cap;
    sp_allocator_t alloc;
};

static int finite_f(float v) { return v - v == 0.0f; }

int sp_particles_create(size_t cap, const sp_allocator_t *alloc, sp_particles_t **out) {
    if (cap == 0 || out == NULL) return SP_EINVAL;
    if (alloc == NULL) alloc = sp_allocator_default();
    size_t stride, bytes, mask_bytes;
    int rc;
    if ((rc = sp_size_add(cap, 15, &stride)) != 0) return rc;
    stride &= ~(size_t)15;
    mask_bytes = (stride + 63) / 64 * sizeof(uint64_t); /* stride <= SIZE_MAX: no overflow */
    if ((rc = sp_size_mul(stride, (size_t)F_COUNT * sizeof(float), &bytes)) != 0) return rc;
    if ((rc = sp_size_add(bytes, mask_bytes, &bytes)) != 0) return rc;

    sp_particles_t *ps = alloc->alloc(alloc->ctx, sizeof *ps, _Alignof(sp_particles_t));
    if (ps == NULL) return SP_ENOMEM;
    float *block = alloc->alloc(alloc->ctx, bytes, SP_SIMD_ALIGN);
    if (block == NULL) {
        alloc->free(alloc->ctx, ps, sizeof *ps, _Alignof(sp_particles_t));
        return SP_ENOMEM;
    }
    for (int k = 0; k < F_COUNT; k++) ps->f[k] = block + (size_t)k * stride;
    /* 8 * stride floats is a multiple of 512 bytes: the mask is aligned. */
    ps->dead = (uint64_t *)(void *)(block + (size_t)F_COUNT * stride);
    ps->block = block;
    ps->block_bytes = bytes;
    ps->count = 0;
    ps->cap = cap;
    ps->alloc = *alloc;
    *out = ps;
    return 0;
}

void sp_particles_free(sp_particles_t *ps) {
    if (ps == NULL) return;
    sp_allocator_t a = ps->alloc;
    a.free(a.ctx, ps->block, ps->block_bytes, SP_SIMD_ALIGN);
    a.free(a.ctx, ps, sizeof *ps, _Alignof(sp_particles_t));
}

int sp_particles_emit(sp_particles_t *ps, const sp_particle_def_t *def) {
    SP_ASSERT(ps != NULL && def != NULL);
    if (ps == NULL || def == NULL) return SP_EINVAL;
    if (!(def->life > 0.0f) || !finite_f(def->life) || !finite_f(def->x) || !finite_f(def->y) ||
        !finite_f(def->z) || !finite_f(def->vx) || !finite_f(def->vy) || !finite_f(def->vz) ||
        !finite_f(def->mass))
        return SP_EINVAL;
    if (ps->count >= ps->cap) return SP_ELIMIT;
    size_t i = ps->count;
    ps->f[F_X][i] = def->x;
    ps->f[F_Y][i] = def->y;
    ps->f[F_Z][i] = def->z;
    ps->f[F_VX][i] = def->vx;
    ps->f[F_VY][i] = def->vy;
    ps->f[F_VZ][i] = def->vz;
    ps->f[F_LIFE][i] = def->life;
    ps->f[F_MASS][i] = def->mass;
    ps->count = i + 1;
    return 0;
}

static int bit(const uint64_t *mask, size_t i) { return (int)((mask[i / 64] >> (i % 64)) & 1u); }

int sp_particles_update(sp_particles_t *ps, float dt, size_t *removed) {
    SP_ASSERT(ps != NULL);
    if (ps == NULL || !(dt >= 0.0f) || !finite_f(dt)) return SP_EINVAL;
    const size_t count = ps->count;
    float **f = ps->f;
    const uint64_t *dead = ps->dead;
    sp_f32_integrate3(f[F_X], f[F_Y], f[F_Z], f[F_VX], f[F_VY], f[F_VZ], dt, count);
    /* One SIMD pass: life -= dt and a bit per particle that died. */
    const size_t ndead = sp_f32_age(f[F_LIFE], dt, count, ps->dead);

    /* Swap-with-last compaction driven by the mask. Dead slots are visited in
     * ascending order; each hole at i is filled with the last particle after
     * dropping dead ones from the end (their bits are read from the mask, not
     * from life). A slot >= n has been dropped already, so the walk stops when
     * it reaches n. Moves: at most one per dead particle; mask reads: at most
     * count / 64 words. Moved particles are live, and a filled hole is never
     * revisited, so stale bits left in the mask do no harm. */
    size_t n = count;
    for (size_t w = 0; ndead > 0 && w * 64 < n; w++) {
        uint64_t bits = dead[w];
        while (bits != 0) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (i >= n) break;
            while (n - 1 > i && bit(dead, n - 1)) n--;
            if (n - 1 != i)
                for (int k = 0; k < F_COUNT; k++) f[k][i] = f[k][n - 1];
            n--;
        }
    }
    SP_ASSERT(count - n == ndead);
    ps->count = n;
    if (removed != NULL) *removed = ndead;
    return 0;
}

void sp_particles_clear(sp_particles_t *ps) {
    SP_ASSERT(ps != NULL);
    if (ps != NULL) ps->count = 0;
}

size_t sp_particles_count(const sp_particles_t *ps) { return ps ? ps->count : 0; }

size_t sp_particles_capacity(const sp_particles_t *ps) { return ps ? ps->cap : 0; }

sp_particles_view_t sp_particles_view(const sp_particles_t *ps) {
    sp_particles_view_t v = {0};
    SP_ASSERT(ps != NULL);
    if (ps == NULL) return v;
    v.x = ps->f[F_X];
    v.y = ps->f[F_Y];
    v.z = ps->f[F_Z];
    v.vx = ps->f[F_VX];
    v.vy = ps->f[F_VY];
    v.vz = ps->f[F_VZ];
    v.life = ps->f[F_LIFE];
    v.mass = ps->f[F_MASS];
    v.count = ps->count;
    return v;
}
