/* particles.c: capped SoA particle system (see spacesim/particles.h).
 *
 * Storage: one allocation of 8 * stride floats, 64-byte aligned, where stride
 * is cap rounded up to 16 floats (one AVX-512 register, 64 bytes), so every
 * field array starts on a 64-byte boundary. Invariant between calls: the
 * first `count` slots of every array hold the live particles, and each of
 * them has life > 0 after an update (emit refuses life <= 0). */
#include "spacesim/particles.h"

#include "spacesim/simd.h"

enum { F_X, F_Y, F_Z, F_VX, F_VY, F_VZ, F_LIFE, F_MASS, F_COUNT };

struct sp_particles {
    float *f[F_COUNT]; /* field arrays, each `stride` floats, inside `block` */
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
    size_t stride, bytes;
    int rc;
    if ((rc = sp_size_add(cap, 15, &stride)) != 0) return rc;
    stride &= ~(size_t)15;
    if ((rc = sp_size_mul(stride, (size_t)F_COUNT * sizeof(float), &bytes)) != 0) return rc;

    sp_particles_t *ps = alloc->alloc(alloc->ctx, sizeof *ps, _Alignof(sp_particles_t));
    if (ps == NULL) return SP_ENOMEM;
    float *block = alloc->alloc(alloc->ctx, bytes, SP_SIMD_ALIGN);
    if (block == NULL) {
        alloc->free(alloc->ctx, ps, sizeof *ps, _Alignof(sp_particles_t));
        return SP_ENOMEM;
    }
    for (int k = 0; k < F_COUNT; k++) ps->f[k] = block + (size_t)k * stride;
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

/* life -= dt over n particles; returns how many are now dead (life <= 0).
 * A branch-free count the compiler vectorises; the compaction below runs
 * only when something died. */
static size_t age(float *restrict life, float dt, size_t n) {
    size_t dead = 0;
    for (size_t i = 0; i < n; i++) {
        float l = life[i] - dt;
        life[i] = l;
        dead += (l <= 0.0f);
    }
    return dead;
}

int sp_particles_update(sp_particles_t *ps, float dt, size_t *removed) {
    SP_ASSERT(ps != NULL);
    if (ps == NULL || !(dt >= 0.0f) || !finite_f(dt)) return SP_EINVAL;
    size_t n = ps->count;
    float **f = ps->f;
    sp_f32_integrate3(f[F_X], f[F_Y], f[F_Z], f[F_VX], f[F_VY], f[F_VZ], dt, n);
    size_t dead = age(f[F_LIFE], dt, n);

    /* Swap-with-last compaction, walking down from the end: every slot above
     * i has already been checked and is live, so the particle moved into a
     * hole at i never needs re-checking. Moves: at most one per dead particle. */
    const float *life = f[F_LIFE];
    size_t left = dead;
    for (size_t i = n; left > 0 && i-- > 0;) {
        if (life[i] > 0.0f) continue;
        size_t last = n - 1;
        if (i != last)
            for (int k = 0; k < F_COUNT; k++) f[k][i] = f[k][last];
        n = last;
        left--;
    }
    ps->count = n;
    if (removed != NULL) *removed = dead;
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
