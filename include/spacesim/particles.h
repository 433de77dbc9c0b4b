/* spacesim/particles.h: a capped particle system in structure-of-arrays form.
 *
 * Layout: eight float arrays x, y, z, vx, vy, vz, life, mass, each 64-byte
 * aligned (SP_SIMD_ALIGN) and padded to a multiple of 16 floats, plus a
 * death mask of one bit per slot, all carved from one allocation made at
 * creation. The seed's array of structs interleaved
 * the fields and defeated SIMD; here sp_particles_update() runs the SIMD
 * kernel sp_f32_integrate3() straight over the position/velocity arrays.
 *
 * Ownership of the count: only the container's own functions change the
 * particle count (the seed wrote its vector's `len` from outside). Readers get
 * a sp_particles_view_t, a copy holding const pointers and the count.
 *
 * Order: removal of dead particles swaps the last particle into the hole, so
 * the order of particles is NOT preserved across sp_particles_update(), and a
 * particle's index is not a stable id. Particles are anonymous by design
 * (sparks, debris); entities that need ids live in the world, not here.
 *
 * Threads: one sp_particles_t is not thread-safe: one thread mutates it at a
 * time (emit, update, clear, free). Several threads may read a view at once
 * while nobody mutates. */
#ifndef SPACESIM_PARTICLES_H
#define SPACESIM_PARTICLES_H

#include "spacesim/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sp_particles sp_particles_t;

/* One particle to emit. Units: metres, metres per second, seconds of life
 * left (must be > 0), kilograms. */
typedef struct sp_particle_def {
    float x, y, z;
    float vx, vy, vz;
    float life;
    float mass;
} sp_particle_def_t;

/* Read-only view: particle i has position (x[i], y[i], z[i]) etc. for
 * i < count. Valid until the next mutating call (emit, update, clear, free);
 * do not keep it. Changing the view's fields changes nothing in the system. */
typedef struct sp_particles_view {
    const float *x, *y, *z;
    const float *vx, *vy, *vz;
    const float *life;
    const float *mass;
    size_t count;
} sp_particles_view_t;

/* Create an empty system holding at most `cap` particles (cap >= 1; e.g.
 * 65536). All storage (8 arrays of cap rounded up to 16 floats) is allocated
 * now from `alloc` (NULL = sp_allocator_default()); nothing allocates later.
 * Returns 0 and stores the system in *out, SP_EINVAL (cap 0 or out NULL),
 * SP_EOVERFLOW or SP_ENOMEM (*out untouched). */
SP_API int sp_particles_create(size_t cap, const sp_allocator_t *alloc, sp_particles_t **out);

/* Free the system and its arrays. NULL is a no-op. */
SP_API void sp_particles_free(sp_particles_t *ps);

/* Append one particle. Returns 0; SP_ELIMIT when the system already holds
 * `cap` particles; SP_EINVAL when life is not > 0 (or is NaN) or a field is
 * not finite. On failure nothing changes. O(1), never allocates. */
SP_API int sp_particles_emit(sp_particles_t *ps, const sp_particle_def_t *def);

/* Advance every particle by dt seconds (dt >= 0 and finite, e.g. 1/30):
 * position += velocity * dt (SIMD kernel, bit-identical at every level),
 * life -= dt, then remove the particles whose life is <= 0 in place by moving
 * the last live particle into each hole (order not preserved). Stores the
 * number removed in *removed when removed is not NULL. Returns 0 or SP_EINVAL
 * (bad dt: nothing changes). Cost: two SIMD passes (sp_f32_integrate3 over
 * positions/velocities; sp_f32_age over life, which also builds a one-bit-
 * per-particle death mask), then count/64 mask-word reads and at most one
 * 8-float particle move per removed particle; never allocates. */
SP_API int sp_particles_update(sp_particles_t *ps, float dt, size_t *removed);

/* Remove every particle (count becomes 0); keeps the storage. */
SP_API void sp_particles_clear(sp_particles_t *ps);

/* Number of live particles, and the fixed capacity. O(1). */
SP_API size_t sp_particles_count(const sp_particles_t *ps);
SP_API size_t sp_particles_capacity(const sp_particles_t *ps);

/* A read-only view of the current particles (see sp_particles_view_t for its
 * lifetime). O(1). */
SP_API sp_particles_view_t sp_particles_view(const sp_particles_t *ps);

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_PARTICLES_H */
