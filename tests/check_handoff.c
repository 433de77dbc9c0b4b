/* check_handoff.c: issue 10, first step: ids that travel, export/import,
 * the canonical hash, and an in-process two-world hand-off without NATS.
 *
 * The two-world tests split space at the plane x = 0: world A (node 0) owns
 * x < 0, world B (node 1) owns x >= 0. Ships fly ballistic (no steering: the
 * acceleration limit is 0) along x on lanes 5 units apart (radius 2: no
 * contact ever), reflecting off the walls, so they cross the border again
 * and again. After each step every ship on the wrong side is exported,
 * given epoch + 1, departed, and its state sent through an in-memory
 * "network" that delays, reorders and redelivers messages. Each tick an
 * audit checks, over A, B and the messages in flight, that every ship has
 * exactly one owner and that it holds the ship's highest epoch, with the
 * count and the XOR of the ids unchanged. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/sp_alloc.h"
#include "helpers/sp_check.h"
#include "sim/frame.h"
#include "sim/world.h"

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static sp_world_def_t split_def(uint32_t node) {
    sp_world_def_t d = sp_world_def_default();
    d.seed = 99;
    d.half_extent = 100.0f;
    d.ship_max_speed = 800.0f;
    d.ship_max_accel = 0.0f; /* ballistic: velocities change only at walls */
    d.id_node = node;
    return d;
}

static sp_world_t *mkworld(uint32_t node) {
    sp_world_def_t d = split_def(node);
    sp_world_t *w;
    ck_assert_int_eq(sp_world_create(&d, &w), 0);
    return w;
}

/* Spawn n ships in w on distinct lanes (y, z on a 5-unit lattice) with
 * speeds along x of 300-600 units/s, either sign. Ids 1..n in node 0. */
static void spawn_lanes(sp_world_t *w, uint32_t n, uint64_t seed) {
    rng_state = seed;
    uint32_t side = (uint32_t)ceil(sqrt((double)n));
    for (uint32_t k = 0; k < n; k++) {
        float p[3] = {(float)rnd(190) - 95.0f, -80.0f + 5.0f * (float)(k % side), -80.0f + 5.0f * (float)(k / side)};
        sp_entity_id_t id;
        ck_assert_int_eq(sp_world_spawn_ship(w, 1 + k % 7, 0, p, &id), 0);
        ck_assert_uint_eq(id, (sp_entity_id_t)k + 1);
        float v[3] = {(300.0f + (float)rnd(300)) * (rnd(2) ? 1.0f : -1.0f), 0.0f, 0.0f};
        ck_assert_int_eq(sp_world_set_velocity(w, id, v), 0);
    }
}

typedef struct idlist {
    sp_entity_id_t *v;
    uint32_t n;
} idlist_t;
static int collect(void *ctx, sp_entity_id_t id) {
    idlist_t *l = ctx;
    l->v[l->n++] = id;
    return 0;
}

/* ---------------------------------------------------------------- network */

typedef struct hmsg {
    sp_entity_state_t st;
    int to;           /* 0 = A, 1 = B */
    uint64_t due;     /* tick of delivery */
} hmsg_t;

typedef struct net {
    hmsg_t *q;
    size_t n, cap;
    /* Knobs: max extra delay (ticks) of a first delivery; probability (1/n,
     * 0 = never) that a message is sent again, and the max delay of the copy. */
    uint32_t delay, dup_one_in, dup_delay;
} net_t;

static void net_send(net_t *nt, const sp_entity_state_t *st, int to, uint64_t now) {
    int copies = 1 + (nt->dup_one_in && rnd(nt->dup_one_in) == 0) + (nt->dup_one_in && rnd(4 * nt->dup_one_in) == 0);
    for (int c = 0; c < copies; c++) {
        if (nt->n == nt->cap) {
            nt->cap = nt->cap ? 2 * nt->cap : 1024;
            nt->q = realloc(nt->q, nt->cap * sizeof *nt->q);
            ck_assert_ptr_nonnull(nt->q);
        }
        uint32_t d = c == 0 ? (nt->delay ? rnd(nt->delay + 1) : 0) : rnd(nt->dup_delay + 1);
        nt->q[nt->n++] = (hmsg_t){*st, to, now + d};
    }
}

typedef struct split {
    sp_world_t *w[2];
    net_t net;
    uint32_t n;             /* ships */
    uint64_t *epoch;        /* [id]: the highest epoch given to the ship */
    uint8_t *inflight;      /* [id]: that epoch's message not applied yet */
    uint64_t crossings, duplicates, stale;
    idlist_t ids;
} split_t;

static void split_init(split_t *s, uint32_t n) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->w[0] = mkworld(0);
    s->w[1] = mkworld(1);
    s->epoch = calloc(n + 1, sizeof *s->epoch);
    s->inflight = calloc(n + 1, 1);
    s->ids.v = malloc((n + 1) * sizeof *s->ids.v);
    ck_assert(s->epoch && s->inflight && s->ids.v);
}

static void split_free(split_t *s) {
    sp_world_free(s->w[0]);
    sp_world_free(s->w[1]);
    free(s->net.q);
    free(s->epoch);
    free(s->inflight);
    free(s->ids.v);
}

/* Hand every ship on the wrong side of x = 0 to the other world. */
static void split_handoff(split_t *s, uint64_t now) {
    for (int k = 0; k < 2; k++) {
        s->ids.n = 0;
        sp_world_foreach(s->w[k], collect, &s->ids);
        for (uint32_t j = 0; j < s->ids.n; j++) {
            sp_entity_state_t st;
            ck_assert_int_eq(sp_world_export(s->w[k], s->ids.v[j], &st), 0);
            if ((st.px >= 0.0f) == (k == 1)) continue; /* on its own side */
            st.epoch++;
            ck_assert_int_eq(sp_world_depart(s->w[k], st.id, st.epoch), 0);
            ck_assert_uint_eq(st.epoch, s->epoch[st.id] + 1);
            s->epoch[st.id] = st.epoch;
            s->inflight[st.id] = 1;
            net_send(&s->net, &st, 1 - k, now);
        }
    }
}

/* Deliver the messages due by `now`, in a shuffled order. */
static void split_deliver(split_t *s, uint64_t now) {
    net_t *nt = &s->net;
    for (size_t i = nt->n; i > 1; i--) { /* Fisher-Yates: out of order */
        size_t j = rnd((uint32_t)i);
        hmsg_t t = nt->q[i - 1];
        nt->q[i - 1] = nt->q[j];
        nt->q[j] = t;
    }
    size_t keep = 0;
    for (size_t i = 0; i < nt->n; i++) {
        hmsg_t *m = &nt->q[i];
        if (m->due > now) {
            nt->q[keep++] = *m;
            continue;
        }
        int rc = sp_world_import(s->w[m->to], &m->st);
        if (rc == 0) {
            /* Only the ship's newest hand-off may ever apply. */
            ck_assert_uint_eq(m->st.epoch, s->epoch[m->st.id]);
            ck_assert(s->inflight[m->st.id]);
            s->inflight[m->st.id] = 0;
            s->crossings++;
        } else if (rc == SP_WORLD_IMPORT_DUPLICATE) {
            s->duplicates++;
        } else {
            ck_assert_int_eq(rc, SP_WORLD_IMPORT_STALE);
            s->stale++;
        }
    }
    nt->n = keep;
}

/* The audit: one owner per ship at its highest epoch, count and XOR kept. */
static void split_audit(split_t *s) {
    uint8_t *seen = calloc(s->n + 1, 1);
    uint64_t x = 0, want_x = 0;
    uint32_t count = 0;
    for (int k = 0; k < 2; k++) {
        s->ids.n = 0;
        sp_world_foreach(s->w[k], collect, &s->ids);
        for (uint32_t j = 0; j < s->ids.n; j++) {
            sp_entity_id_t id = s->ids.v[j];
            ck_assert(id >= 1 && id <= s->n);
            ck_assert_msg(!seen[id], "ship %llu owned twice", (unsigned long long)id);
            ck_assert_msg(!s->inflight[id], "ship %llu live while its hand-off is in flight", (unsigned long long)id);
            seen[id] = 1;
            sp_entity_state_t st;
            ck_assert_int_eq(sp_world_export(s->w[k], id, &st), 0);
            ck_assert_uint_eq(st.epoch, s->epoch[id]);
            x ^= id;
            count++;
        }
    }
    for (uint32_t id = 1; id <= s->n; id++) {
        want_x ^= id;
        if (s->inflight[id]) {
            ck_assert(!seen[id]);
            x ^= id;
            count++;
            seen[id] = 1;
        }
        ck_assert_msg(seen[id], "ship %u lost", id);
    }
    ck_assert_uint_eq(count, s->n);
    ck_assert_uint_eq(x, want_x);
    free(seen);
}

/* ---------------------------------------------------------------- ids */

START_TEST(test_handoff_ids_carry_the_node_stay_below_2_53_and_are_never_reused) {
    sp_world_def_t d = split_def(SP_WORLD_MAX_NODES);
    sp_world_t *w = (sp_world_t *)0x1;
    ck_assert_int_eq(sp_world_create(&d, &w), SP_EINVAL);
    ck_assert_ptr_eq(w, (sp_world_t *)0x1);
    d.id_node = SP_WORLD_MAX_NODES - 1;
    ck_assert_int_eq(sp_world_create(&d, &w), 0);
    sp_entity_id_t prev = 0, id;
    for (int k = 0; k < 200; k++) {
        ck_assert_int_eq(sp_world_spawn_ship(w, 1, 0, NULL, &id), 0);
        ck_assert_uint_gt(id, prev);
        ck_assert_uint_lt(id, SP_WORLD_ID_LIMIT);
        ck_assert_uint_eq(id >> SP_WORLD_ID_COUNTER_BITS, SP_WORLD_MAX_NODES - 1);
        if (k % 3 == 0) ck_assert_int_eq(sp_world_destroy(w, id), 0); /* slots reused, ids not */
        prev = id;
    }
    ck_assert_uint_eq(prev, ((uint64_t)(SP_WORLD_MAX_NODES - 1) << SP_WORLD_ID_COUNTER_BITS) | 200);
    /* The frame's rows ascend by id although slots were reused. */
    sp_frame_t *f = sp_world_publish_frame(w);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->count, sp_world_count(w));
    for (uint32_t r = 1; r < f->count; r++) ck_assert_uint_lt(f->rows[r - 1].id, f->rows[r].id);
    sp_frame_release(f);
    sp_world_free(w);
}
END_TEST

/* Frames stay sorted by id with ids from several nodes mixed in any slot
 * order (the radix sort's digits then span the node bits too). */
START_TEST(test_handoff_frame_rows_sorted_with_ids_of_many_nodes) {
    sp_world_t *w = mkworld(2);
    rng_state = 7;
    for (uint32_t k = 0; k < 5000; k++) {
        sp_entity_id_t id;
        ck_assert_int_eq(sp_world_spawn_ship(w, 1, 0, NULL, &id), 0);
        if (rnd(3) == 0) { /* move it into another node's id space */
            sp_entity_state_t st;
            ck_assert_int_eq(sp_world_export(w, id, &st), 0);
            ck_assert_int_eq(sp_world_depart(w, id, 1), 0);
            st.id = ((uint64_t)rnd(SP_WORLD_MAX_NODES) << SP_WORLD_ID_COUNTER_BITS) | (1 + rnd(1u << 30));
            int rc = sp_world_import(w, &st);
            ck_assert(rc == 0 || rc == SP_WORLD_IMPORT_DUPLICATE); /* a rare equal draw */
        }
        if (rnd(5) == 0) (void)sp_world_destroy(w, id); /* frees a slot (ENOENT if it moved) */
    }
    sp_world_capture_t *cap;
    ck_assert_int_eq(sp_world_capture_create(NULL, &cap), 0);
    ck_assert_int_eq(sp_world_capture(w, cap), 0);
    sp_frame_t *f = sp_frame_build(cap), *g = sp_world_publish_frame(w);
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(f->count, sp_world_count(w));
    for (uint32_t r = 1; r < f->count; r++) ck_assert_uint_lt(f->rows[r - 1].id, f->rows[r].id);
    ck_assert_int_eq(memcmp(f->rows, g->rows, f->count * sizeof f->rows[0]), 0);
    for (uint32_t r = 0; r < f->count; r += 97) ck_assert_int_eq(sp_frame_find(f, f->rows[r].id), (long)r);
    sp_frame_release(f);
    sp_frame_release(g);
    sp_world_capture_free(cap);
    sp_world_free(w);
}
END_TEST

/* ---------------------------------------------------------------- export/import */

START_TEST(test_handoff_export_import_is_bit_exact_and_judged_by_epoch) {
    sp_world_t *a = mkworld(0), *b = mkworld(1);
    ck_assert_int_eq(sp_world_populate_demo(a, 50, 10), 0);
    sp_entity_id_t s;
    float p[3] = {1.5f, -2.25f, 3.0f};
    ck_assert_int_eq(sp_world_spawn_ship(a, 42, 0, p, &s), 0);
    float v[3] = {-0.0f, 1e-3f, 7.0f};
    ck_assert_int_eq(sp_world_set_velocity(a, s, v), 0);
    for (int t = 0; t < 5; t++) ck_assert_int_eq(sp_world_step(a), 0);
    sp_entity_state_t st, back;
    ck_assert_int_eq(sp_world_export(a, s, &st), 0);
    ck_assert_uint_eq(st.id, s);
    ck_assert_uint_eq(st.epoch, 0);
    ck_assert_uint_eq(st.kind, SP_KIND_SHIP);
    ck_assert_uint_eq(st.owner, 42);
    ck_assert_int_eq(sp_world_export(a, 0, &st), SP_ENOENT);
    ck_assert_int_eq(sp_world_export(a, s, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_world_export(a, s, &st), 0);
    sp_entity_info_t ia, ib;
    ck_assert_int_eq(sp_world_inspect(a, s, &ia), 0);
    /* Depart needs a higher epoch; then the id is stale here. */
    ck_assert_int_eq(sp_world_depart(a, s, 0), SP_EINVAL);
    st.epoch = 1;
    ck_assert_int_eq(sp_world_depart(a, s, 1), 0);
    ck_assert_int_eq(sp_world_inspect(a, s, &ib), SP_ENOENT);
    ck_assert_int_eq(sp_world_depart(a, s, 2), SP_ENOENT);
    uint64_t ep;
    ck_assert_int_eq(sp_world_departed_epoch(a, s, &ep), 0);
    ck_assert_uint_eq(ep, 1);
    /* Into b: the same record, bit for bit, under the same id. */
    uint32_t nb = sp_world_count(b);
    ck_assert_int_eq(sp_world_import(b, &st), 0);
    ck_assert_uint_eq(sp_world_count(b), nb + 1);
    ck_assert_int_eq(sp_world_export(b, s, &back), 0);
    ck_assert(sp_entity_state_equal(&back, &st));
    ck_assert_uint_eq(sp_entity_state_hash(&back), sp_entity_state_hash(&st));
    ck_assert_int_eq(sp_world_inspect(b, s, &ib), 0);
    ck_assert_int_eq(memcmp(&ia, &ib, sizeof ia), 0);
    /* Redelivered: a no-op with its own answer. */
    uint64_t hb = sp_world_hash(b);
    ck_assert_int_eq(sp_world_import(b, &st), SP_WORLD_IMPORT_DUPLICATE);
    ck_assert_uint_eq(sp_world_hash(b), hb);
    /* Older: refused. */
    sp_entity_state_t old = st;
    old.epoch = 0;
    ck_assert_int_eq(sp_world_import(b, &old), SP_WORLD_IMPORT_STALE);
    ck_assert_uint_eq(sp_world_hash(b), hb);
    /* Back to a at epoch 2 (a remembers it left at 1: epoch 1 is stale there). */
    ck_assert_int_eq(sp_world_import(a, &st), SP_WORLD_IMPORT_STALE);
    ck_assert_int_eq(sp_world_export(b, s, &st), 0);
    st.epoch = 2;
    ck_assert_int_eq(sp_world_depart(b, s, 2), 0);
    ck_assert_int_eq(sp_world_import(a, &st), 0);
    ck_assert_int_eq(sp_world_departed_epoch(a, s, &ep), SP_ENOENT); /* forgotten: it is back */
    ck_assert_int_eq(sp_world_import(b, &old), SP_WORLD_IMPORT_STALE); /* b remembers 2 */
    /* Forgetting b's memory of s: the old message would then apply again
     * (so the hand-off layer forgets only once none can arrive). */
    ck_assert_int_eq(sp_world_forget_departed(b, s), 0);
    ck_assert_int_eq(sp_world_forget_departed(b, s), SP_ENOENT);
    ck_assert_int_eq(sp_world_departed_epoch(b, s, &ep), SP_ENOENT);
    /* A newer epoch replaces a present copy (newest wins), count unchanged. */
    uint32_t na = sp_world_count(a);
    sp_entity_state_t newer = st;
    newer.epoch = 5;
    newer.hp = 50.0f;
    ck_assert_int_eq(sp_world_import(a, &newer), 0);
    ck_assert_uint_eq(sp_world_count(a), na);
    ck_assert_int_eq(sp_world_export(a, s, &back), 0);
    ck_assert(sp_entity_state_equal(&back, &newer));
    sp_world_free(a);
    sp_world_free(b);
}
END_TEST

/* A hand-off a world could not take goes back at epoch + 1; the refusing
 * world notes the id departed at that epoch, so a late copy of the
 * original finds it stale there instead of giving it a second life. */
START_TEST(test_handoff_note_departed_makes_a_late_copy_stale) {
    sp_world_t *a = mkworld(0), *b = mkworld(1);
    sp_entity_id_t s;
    float p[3] = {4.0f, 5.0f, 6.0f};
    ck_assert_int_eq(sp_world_spawn_ship(a, 7, 0, p, &s), 0);
    sp_entity_state_t st;
    ck_assert_int_eq(sp_world_export(a, s, &st), 0);
    st.epoch = 1;
    ck_assert_int_eq(sp_world_depart(a, s, 1), 0);
    /* b refused st (epoch 1) and sends it back at 2: */
    ck_assert_int_eq(sp_world_note_departed(b, s, 2), 0);
    uint64_t ep;
    ck_assert_int_eq(sp_world_departed_epoch(b, s, &ep), 0);
    ck_assert_uint_eq(ep, 2);
    ck_assert_int_eq(sp_world_note_departed(b, s, 1), 0); /* never lowered */
    ck_assert_int_eq(sp_world_departed_epoch(b, s, &ep), 0);
    ck_assert_uint_eq(ep, 2);
    uint32_t nb = sp_world_count(b);
    ck_assert_int_eq(sp_world_import(b, &st), SP_WORLD_IMPORT_STALE); /* the late copy */
    ck_assert_uint_eq(sp_world_count(b), nb);
    st.epoch = 2;
    ck_assert_int_eq(sp_world_import(a, &st), 0); /* the return, at its origin */
    ck_assert_int_eq(sp_world_note_departed(a, s, 9), SP_EINVAL); /* live here */
    ck_assert_int_eq(sp_world_note_departed(a, 0, 9), SP_EINVAL);
    /* Handed again later at a higher epoch: b takes it, the memory goes. */
    st.epoch = 3;
    ck_assert_int_eq(sp_world_depart(a, s, 3), 0);
    ck_assert_int_eq(sp_world_import(b, &st), 0);
    ck_assert_int_eq(sp_world_departed_epoch(b, s, &ep), SP_ENOENT);
    sp_world_free(a);
    sp_world_free(b);
}
END_TEST

/* A region (a cluster daemon's cells): x < 0 for one world, x >= 0 for the other. */
static int west(void *ctx, float x, float y) {
    (void)ctx;
    (void)y;
    return x < 0.0f;
}
static int east(void *ctx, float x, float y) {
    (void)ctx;
    (void)y;
    return x >= 0.0f;
}

/* Two worlds from one seed, each holding one half of space, hold one demo
 * world between them: the same entities under the same ids (the same draws),
 * so their canonical hashes sum to the whole world's. Respawn with a region
 * spawns inside it only, toward the target. */
START_TEST(test_handoff_region_worlds_populate_one_world_between_them) {
    sp_world_t *all = mkworld(0), *w = mkworld(0), *e = mkworld(0);
    sp_world_set_region(w, west, NULL);
    sp_world_set_region(e, east, NULL);
    for (int k = 0; k < 3; k++) ck_assert_int_eq(sp_world_populate_demo(k == 0 ? all : k == 1 ? w : e, 300, 60), 0);
    ck_assert_uint_eq(sp_world_count(all), 360);
    ck_assert_uint_gt(sp_world_count(w), 100);
    ck_assert_uint_gt(sp_world_count(e), 100);
    ck_assert_uint_eq(sp_world_count(w) + sp_world_count(e), sp_world_count(all));
    ck_assert_uint_eq(sp_world_count_npc(w) + sp_world_count_npc(e), sp_world_count_npc(all));
    ck_assert_uint_eq(sp_world_hash_canonical(w) + sp_world_hash_canonical(e), sp_world_hash_canonical(all));
    /* Respawn in the west half only: top up to 40 NPCs there, 5 per period. */
    uint32_t before = sp_world_count_npc(w);
    ck_assert_int_eq(sp_world_set_respawn(w, before + 20, 0, 1, 5), 0);
    for (int t = 0; t < 8; t++) ck_assert_int_eq(sp_world_step(w), 0);
    ck_assert_uint_ge(sp_world_count_npc(w), before + 15); /* 4 draws per kept spawn cover a half */
    ck_assert_uint_le(sp_world_count_npc(w), before + 20);
    sp_entity_info_t in;
    uint32_t n = 0;
    for (sp_entity_id_t id = 1; id < ((sp_entity_id_t)1 << 20) && n < sp_world_count(w); id++) {
        if (sp_world_inspect(w, id, &in) != 0) continue;
        n++;
        if (in.kind == SP_KIND_SHIP) ck_assert_msg(in.pos[0] < 0.0f, "ship %llu at x %.1f, outside the west (no acceleration here)",
                                                     (unsigned long long)id, (double)in.pos[0]);
    }
    ck_assert_uint_eq(n, sp_world_count(w));
    sp_world_free(all);
    sp_world_free(w);
    sp_world_free(e);
}
END_TEST

START_TEST(test_handoff_import_refuses_invalid_state_and_oom_leaves_world_unchanged) {
    sp_test_alloc_t ta;
    sp_test_alloc_init(&ta, -1, 0);
    sp_allocator_t al = sp_test_allocator(&ta);
    sp_world_def_t d = split_def(0);
    d.allocator = &al;
    sp_world_t *w, *src = mkworld(3);
    ck_assert_int_eq(sp_world_create(&d, &w), 0);
    sp_entity_id_t s;
    ck_assert_int_eq(sp_world_spawn_ship(src, 8, 0, NULL, &s), 0);
    sp_entity_state_t st, bad;
    ck_assert_int_eq(sp_world_export(src, s, &st), 0);
    uint64_t h = sp_world_hash(w);
    bad = st;
    bad.id = 0;
    ck_assert_int_eq(sp_world_import(w, &bad), SP_EINVAL);
    bad = st;
    bad.kind = 77;
    ck_assert_int_eq(sp_world_import(w, &bad), SP_EINVAL);
    bad = st;
    bad.px = NAN;
    ck_assert_int_eq(sp_world_import(w, &bad), SP_EINVAL);
    bad = st;
    bad.inv_mass *= 2.0f; /* not what this world's definition spawns */
    ck_assert_int_eq(sp_world_import(w, &bad), SP_EINVAL);
    bad = st;
    bad.owner = 0; /* a player ship without the NPC flag cannot be server-owned */
    ck_assert_int_eq(sp_world_import(w, &bad), SP_EINVAL);
    ck_assert_int_eq(sp_world_import(w, NULL), SP_EINVAL);
    ck_assert_uint_eq(sp_world_hash(w), h);
    /* Every allocation failing: SP_ENOMEM and nothing changed, then it works. */
    atomic_store_explicit(&ta.fail_after, 0, memory_order_relaxed);
    ck_assert_int_eq(sp_world_import(w, &st), SP_ENOMEM);
    ck_assert_uint_eq(sp_world_hash(w), h);
    ck_assert_uint_eq(sp_world_count(w), 0);
    ck_assert_int_eq(sp_world_inspect(w, s, &(sp_entity_info_t){0}), SP_ENOENT);
    atomic_store_explicit(&ta.fail_after, -1, memory_order_relaxed);
    ck_assert_int_eq(sp_world_import(w, &st), 0);
    ck_assert_uint_eq(sp_world_count(w), 1);
    /* Depart under OOM: the departure memory cannot grow, nothing changes. */
    h = sp_world_hash(w);
    atomic_store_explicit(&ta.fail_after, 0, memory_order_relaxed);
    ck_assert_int_eq(sp_world_depart(w, s, 1), SP_ENOMEM);
    ck_assert_uint_eq(sp_world_hash(w), h);
    atomic_store_explicit(&ta.fail_after, -1, memory_order_relaxed);
    /* An id of this world's own node above its counter moves the counter. */
    st.id = 1000;
    ck_assert_int_eq(sp_world_import(w, &st), 0);
    sp_entity_id_t fresh;
    ck_assert_int_eq(sp_world_spawn_ship(w, 1, 0, NULL, &fresh), 0);
    ck_assert_uint_eq(fresh, 1001);
    sp_world_free(w);
    sp_world_free(src);
    ck_assert_int_eq(atomic_load_explicit(&ta.live_bytes, memory_order_relaxed), 0);
}
END_TEST

/* A sleeping asteroid arrives asleep and in the static grid: a ship that
 * flies into it collides and wakes it. */
START_TEST(test_handoff_sleeping_asteroid_imports_into_the_static_grid) {
    sp_world_t *a = mkworld(0), *b = mkworld(1);
    sp_entity_id_t r;
    float p[3] = {50, 0, 0};
    ck_assert_int_eq(sp_world_spawn_asteroid(a, p, 5.0f, 100.0f, 2, &r), 0);
    for (int t = 0; t < 200 && sp_world_count_sleeping(a) == 0; t++) ck_assert_int_eq(sp_world_step(a), 0);
    ck_assert_uint_eq(sp_world_count_sleeping(a), 1);
    sp_entity_state_t st;
    ck_assert_int_eq(sp_world_export(a, r, &st), 0);
    ck_assert(st.flags & SP_ENT_SLEEPING);
    st.epoch = 1;
    ck_assert_int_eq(sp_world_depart(a, r, 1), 0);
    ck_assert_uint_eq(sp_world_count_sleeping(a), 0);
    ck_assert_int_eq(sp_world_import(b, &st), 0);
    ck_assert_uint_eq(sp_world_count_sleeping(b), 1);
    sp_entity_id_t s;
    float q[3] = {40, 0, 0}, v[3] = {100, 0, 0};
    ck_assert_int_eq(sp_world_spawn_ship(b, 3, 0, q, &s), 0);
    ck_assert_int_eq(sp_world_set_velocity(b, s, v), 0);
    int hit = 0;
    for (int t = 0; t < 30 && !hit; t++) {
        ck_assert_int_eq(sp_world_step(b), 0);
        size_t n;
        const sp_world_event_t *ev = sp_world_events(b, &n);
        for (size_t k = 0; k < n; k++) hit |= ev[k].type == SP_EV_COLLISION && ev[k].other == r;
        sp_entity_info_t e;
        ck_assert_int_eq(sp_world_inspect(b, r, &e), 0);
        hit |= !(e.flags & SP_ENT_SLEEPING);
    }
    ck_assert(hit);
    sp_world_free(a);
    sp_world_free(b);
}
END_TEST

/* ---------------------------------------------------------------- canonical hash */

START_TEST(test_handoff_canonical_hash_ignores_slots_and_sums_over_worlds) {
    sp_world_t *a = mkworld(0), *b = mkworld(0), *c = mkworld(1), *d = mkworld(2);
    spawn_lanes(a, 300, 5);
    /* b: the same entities imported in reverse order (other slots). */
    sp_entity_state_t st;
    for (sp_entity_id_t id = 300; id >= 1; id--) {
        ck_assert_int_eq(sp_world_export(a, id, &st), 0);
        ck_assert_int_eq(sp_world_import(b, &st), 0);
    }
    ck_assert_uint_eq(sp_world_hash_canonical(a), sp_world_hash_canonical(b));
    ck_assert_uint_ne(sp_world_hash(a), sp_world_hash(b));
    /* c + d: the same entities split in two (odd ids, even ids). */
    for (sp_entity_id_t id = 1; id <= 300; id++) {
        ck_assert_int_eq(sp_world_export(a, id, &st), 0);
        ck_assert_int_eq(sp_world_import(id % 2 ? c : d, &st), 0);
    }
    ck_assert_uint_eq(sp_world_hash_canonical(c) + sp_world_hash_canonical(d), sp_world_hash_canonical(a));
    /* A duplicate or a lost entity changes the sum; so does any field. */
    ck_assert_int_eq(sp_world_export(a, 7, &st), 0);
    ck_assert_int_eq(sp_world_import(c, &st), SP_WORLD_IMPORT_DUPLICATE); /* 7 is odd: in c */
    ck_assert_int_eq(sp_world_import(d, &st), 0);                          /* now in both */
    ck_assert_uint_ne(sp_world_hash_canonical(c) + sp_world_hash_canonical(d), sp_world_hash_canonical(a));
    ck_assert_int_eq(sp_world_destroy(d, 7), 0);
    ck_assert_uint_eq(sp_world_hash_canonical(c) + sp_world_hash_canonical(d), sp_world_hash_canonical(a));
    ck_assert_int_eq(sp_world_destroy(d, 8), 0);
    ck_assert_uint_ne(sp_world_hash_canonical(c) + sp_world_hash_canonical(d), sp_world_hash_canonical(a));
    uint64_t h = sp_world_hash_canonical(b);
    float v[3] = {1, 2, 3};
    ck_assert_int_eq(sp_world_set_velocity(b, 9, v), 0);
    ck_assert_uint_ne(sp_world_hash_canonical(b), h);
    /* The epoch is not part of it. */
    ck_assert_int_eq(sp_world_export(a, 10, &st), 0);
    h = sp_world_hash_canonical(a);
    st.epoch = 3;
    ck_assert_int_eq(sp_world_import(a, &st), 0);
    ck_assert_uint_eq(sp_world_hash_canonical(a), h);
    sp_world_free(a);
    sp_world_free(b);
    sp_world_free(c);
    sp_world_free(d);
}
END_TEST

/* ---------------------------------------------------------------- two worlds */

/* The same ballistic, collision-free world stepped whole (R) and split at
 * x = 0 over A and B, hand-offs delivered at once but also redelivered
 * (duplicates now and old copies later): after every tick A + B has R's
 * canonical hash, and every border crossing is accounted for. */
START_TEST(test_handoff_split_world_matches_one_world_canonical_hash) {
    const uint32_t n = 600;
    sp_world_t *r = mkworld(0);
    spawn_lanes(r, n, 11);
    split_t s;
    split_init(&s, n);
    spawn_lanes(s.w[0], n, 11);
    ck_assert_uint_eq(sp_world_hash_canonical(s.w[0]), sp_world_hash_canonical(r));
    s.net.delay = 0;
    s.net.dup_one_in = 3;
    s.net.dup_delay = 0; /* copies delivered in the same tick; old ones below */
    rng_state = 12345;
    split_handoff(&s, 0);
    split_deliver(&s, 0);
    hmsg_t *old = malloc(64 * sizeof *old);
    uint32_t nold = 0;
    for (uint64_t t = 1; t <= 400; t++) {
        ck_assert_int_eq(sp_world_step(r), 0);
        ck_assert_int_eq(sp_world_step(s.w[0]), 0);
        ck_assert_int_eq(sp_world_step(s.w[1]), 0);
        size_t before = s.net.n;
        split_handoff(&s, t);
        /* Keep a few sent messages to redeliver much later. */
        for (size_t k = before; k < s.net.n && nold < 64; k += 7) old[nold++] = s.net.q[k];
        if (t % 25 == 0 && nold > 0) { /* an old message comes back */
            for (uint32_t k = 0; k < nold; k++) {
                int rc = sp_world_import(s.w[old[k].to], &old[k].st);
                ck_assert(rc == SP_WORLD_IMPORT_STALE || rc == SP_WORLD_IMPORT_DUPLICATE);
            }
            nold = 0;
        }
        split_deliver(&s, t);
        ck_assert_uint_eq(s.net.n, 0);
        split_audit(&s);
        ck_assert_uint_eq(sp_world_hash_canonical(s.w[0]) + sp_world_hash_canonical(s.w[1]),
                          sp_world_hash_canonical(r));
    }
    ck_assert_uint_eq(sp_world_count(s.w[0]) + sp_world_count(s.w[1]), n);
    ck_assert_uint_gt(sp_world_count(s.w[0]), n / 4);
    ck_assert_uint_gt(sp_world_count(s.w[1]), n / 4);
    printf("handoff: split world = one world (canonical hash) over 400 ticks, %llu crossings, %llu duplicates\n",
           (unsigned long long)s.crossings, (unsigned long long)s.duplicates);
    ck_assert_uint_gt(s.crossings, 5000);
    ck_assert_uint_gt(s.duplicates, 500);
    free(old);
    split_free(&s);
    sp_world_free(r);
}
END_TEST

/* At least 10^4 border crossings through a network that delays (0-3 ticks),
 * reorders and redelivers (a copy 1 in 4, sometimes two, up to 8 ticks
 * late): audited every tick, 0 lost and 0 duplicated. */
START_TEST(test_handoff_10k_crossings_audited_none_lost_none_duplicated) {
    const uint32_t n = 1000;
    split_t s;
    split_init(&s, n);
    spawn_lanes(s.w[0], n, 21);
    s.net.delay = 3;
    s.net.dup_one_in = 4;
    s.net.dup_delay = 8;
    rng_state = 777;
    uint64_t t;
    for (t = 0; t <= 2000 && s.crossings < 12000; t++) {
        if (t > 0) {
            ck_assert_int_eq(sp_world_step(s.w[0]), 0);
            ck_assert_int_eq(sp_world_step(s.w[1]), 0);
        }
        split_handoff(&s, t);
        split_deliver(&s, t);
        split_audit(&s);
    }
    /* Drain the network: everything in flight lands, copies are no-ops. */
    for (uint64_t u = t; s.net.n > 0; u++) {
        split_deliver(&s, u);
        split_audit(&s);
    }
    ck_assert_uint_eq(sp_world_count(s.w[0]) + sp_world_count(s.w[1]), n);
    for (uint32_t id = 1; id <= n; id++) ck_assert(!s.inflight[id]);
    printf("handoff: %llu crossings in %llu ticks, %llu duplicate and %llu stale deliveries, 0 lost, 0 duplicated\n",
           (unsigned long long)s.crossings, (unsigned long long)t, (unsigned long long)s.duplicates,
           (unsigned long long)s.stale);
    ck_assert_uint_ge(s.crossings, 10000);
    ck_assert_uint_gt(s.duplicates + s.stale, 2000);
    ck_assert_uint_gt(s.stale, 0); /* copies that arrived after the ship moved on */
    split_free(&s);
}
END_TEST

static Suite *handoff_suite(void) {
    Suite *s = suite_create("handoff");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"ids", test_handoff_ids_carry_the_node_stay_below_2_53_and_are_never_reused},
        {"frame_many_nodes", test_handoff_frame_rows_sorted_with_ids_of_many_nodes},
        {"export_import", test_handoff_export_import_is_bit_exact_and_judged_by_epoch},
        {"note_departed", test_handoff_note_departed_makes_a_late_copy_stale},
        {"region_worlds", test_handoff_region_worlds_populate_one_world_between_them},
        {"import_invalid_oom", test_handoff_import_refuses_invalid_state_and_oom_leaves_world_unchanged},
        {"import_sleeping", test_handoff_sleeping_asteroid_imports_into_the_static_grid},
        {"canonical_hash", test_handoff_canonical_hash_ignores_slots_and_sums_over_worlds},
        {"split_same_hash", test_handoff_split_world_matches_one_world_canonical_hash},
        {"crossings_10k", test_handoff_10k_crossings_audited_none_lost_none_duplicated},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(120));
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(handoff_suite)
