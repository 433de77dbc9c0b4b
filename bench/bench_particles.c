/* bench_particles.c: sp_particles_update (SoA arrays, SIMD integrate3,
 * swap-with-last removal) vs the seed's layout: an array of 32-byte structs
 * {position[3], velocity[3], life, mass}, updated particle by particle, then
 * a stable retain pass that copies every survivor after the first hole.
 *
 * 1M particles (256k with --quick), lifetimes uniform in [0.05, 20] s, 10 ticks
 * of dt = 1/30 s per run, so ~1.4% of the particles die during a run. Each run
 * starts from the same initial state (reset untimed). Figure: ns per tick.
 * Self-check: the live set after the run (count, and an order-independent
 * hash of every particle's id and field bits) must equal the one computed
 * once up front; both sides round the same way (mul then add), so the match
 * is exact. Single thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "spacesim/particles.h"

#define TICKS 10
static const float DT = 1.0f / 30.0f;

/* The seed's Particle. */
typedef struct {
    float position[3];
    float velocity[3];
    float life;
    float mass;
} aos_particle_t;

typedef struct {
    aos_particle_t *p;
    size_t len;
} aos_system_t;

/* Seed-style update: per-particle integrate and age, then retain. */
__attribute__((noinline)) static void aos_update(aos_system_t *s, float dt) {
    for (size_t i = 0; i < s->len; i++) {
        aos_particle_t *q = &s->p[i];
        for (int k = 0; k < 3; k++) {
            float t = q->velocity[k] * dt;
            q->position[k] += t;
        }
        q->life -= dt;
    }
    size_t w = 0;
    for (size_t r = 0; r < s->len; r++) {
        if (s->p[r].life > 0.0f) {
            if (w != r) s->p[w] = s->p[r];
            w++;
        }
    }
    s->len = w;
}

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
static uint32_t fb(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
/* Order-independent: a sum of per-particle hashes. */
static uint64_t particle_hash(float id, float x, float y, float z, float life) {
    uint64_t h = mix(((uint64_t)fb(id) << 32) | fb(x));
    h = mix(h ^ (((uint64_t)fb(y) << 32) | fb(z)));
    return mix(h ^ fb(life));
}

typedef struct {
    size_t n;
    aos_particle_t *init; /* initial state, shared by both rows */
    size_t want_count;
    uint64_t want_hash;
    aos_system_t aos;
    sp_particles_t *soa;
} ctx_t;

static uint64_t aos_hash(const aos_system_t *s) {
    uint64_t h = 0;
    for (size_t i = 0; i < s->len; i++) {
        const aos_particle_t *q = &s->p[i];
        h += particle_hash(q->mass, q->position[0], q->position[1], q->position[2], q->life);
    }
    return h;
}

static double run_aos(void *arg) {
    ctx_t *c = arg;
    memcpy(c->aos.p, c->init, c->n * sizeof *c->init);
    c->aos.len = c->n;
    uint64_t t0 = sp_bench_now_ns();
    for (int t = 0; t < TICKS; t++) aos_update(&c->aos, DT);
    uint64_t t1 = sp_bench_now_ns();
    if (c->aos.len != c->want_count || aos_hash(&c->aos) != c->want_hash) return -1.0;
    return (double)(t1 - t0) / TICKS;
}

static double run_soa(void *arg) {
    ctx_t *c = arg;
    sp_particles_clear(c->soa);
    for (size_t i = 0; i < c->n; i++) {
        const aos_particle_t *q = &c->init[i];
        sp_particle_def_t d = {q->position[0], q->position[1], q->position[2], q->velocity[0], q->velocity[1],
                               q->velocity[2], q->life, q->mass};
        if (sp_particles_emit(c->soa, &d) != 0) return -1.0;
    }
    size_t removed_total = 0, removed;
    uint64_t t0 = sp_bench_now_ns();
    for (int t = 0; t < TICKS; t++) {
        if (sp_particles_update(c->soa, DT, &removed) != 0) return -1.0;
        removed_total += removed;
    }
    uint64_t t1 = sp_bench_now_ns();
    sp_particles_view_t v = sp_particles_view(c->soa);
    if (v.count != c->want_count || removed_total != c->n - c->want_count) return -1.0;
    uint64_t h = 0;
    for (size_t i = 0; i < v.count; i++) h += particle_hash(v.mass[i], v.x[i], v.y[i], v.z[i], v.life[i]);
    if (h != c->want_hash) return -1.0;
    return (double)(t1 - t0) / TICKS;
}

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "particles");
    ctx_t c = {.n = sp_bench_quick() ? 256u * 1024u : 1024u * 1024u};
    c.init = aligned_alloc(64, c.n * sizeof *c.init);
    c.aos.p = aligned_alloc(64, c.n * sizeof *c.aos.p);
    if (c.init == NULL || c.aos.p == NULL || sp_particles_create(c.n, NULL, &c.soa) != 0)
        sp_bench_fail("out of memory");
    uint32_t r = 2024;
    for (size_t i = 0; i < c.n; i++) {
        float u[7];
        for (int k = 0; k < 7; k++) {
            r = r * 1664525u + 1013904223u;
            u[k] = (float)(r >> 8) / 16777216.0f;
        }
        c.init[i] = (aos_particle_t){{u[0] * 1000.0f, u[1] * 1000.0f, u[2] * 1000.0f},
                                     {u[3] * 20.0f - 10.0f, u[4] * 20.0f - 10.0f, u[5] * 20.0f - 10.0f},
                                     0.05f + u[6] * 19.95f,
                                     (float)i};
    }
    /* The expected result, once, with the baseline code. */
    memcpy(c.aos.p, c.init, c.n * sizeof *c.init);
    c.aos.len = c.n;
    for (int t = 0; t < TICKS; t++) aos_update(&c.aos, DT);
    c.want_count = c.aos.len;
    c.want_hash = aos_hash(&c.aos);
    printf("# particles: %zu particles, %d ticks of %.4f s per run, %zu die per run\n", c.n, TICKS, (double)DT,
           c.n - c.want_count);

    sp_bench_row_t rows[2] = {
        {.name = "sp_particles_update SoA", .unit = "ns/tick", .fn = run_soa, .arg = &c},
        {.name = "seed-style AoS update + retain", .unit = "ns/tick", .fn = run_aos, .arg = &c},
    };
    sp_bench_run(rows, 2);
    sp_bench_report(&rows[0], &rows[1]);

    sp_particles_free(c.soa);
    free(c.aos.p);
    free(c.init);
    return sp_bench_finish();
}
