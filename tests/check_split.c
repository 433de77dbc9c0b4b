/* check_split.c: issue 10 point 7: a one-process world cut into a cluster's
 * parts by cells and merged back (sim/split.h; the file tool spacesim-ckpt is
 * tests/cluster/ckpt.sh's). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/sp_check.h"
#include "sim/handoff.h"
#include "sim/save.h"
#include "sim/split.h"
#include "sim/world.h"

/* The map of the tests: 2x2 columns over x/y, cell = cy * 2 + cx; node 1
 * owns two cells, so shares are uneven. */
static const uint32_t owners4[4] = {0, 1, 1, 2};

static uint32_t owner4(void *ctx, float x, float y) {
    (void)ctx;
    uint32_t cx = x < 0.0f ? 0 : 1, cy = y < 0.0f ? 0 : 1;
    return owners4[cy * 2 + cx];
}

static sp_world_t *demo_world(void) {
    sp_world_def_t d = sp_world_def_default();
    d.seed = 7;
    d.half_extent = 500.0f;

    sp_world_t *w;
    ck_assert_int_eq(sp_world_create(&d, &w), 0);
    ck_assert_int_eq(sp_world_populate_demo(w, 3000, 300), 0);
    ck_assert_int_eq(sp_world_set_respawn(w, 301, 3001, 60, 5), 0);
    for (int t = 0; t < 40; t++) ck_assert_int_eq(sp_world_step(w), 0);
    return w;
}

/* The three parts of owners4 (nodes 0, 1, 2), shares by cells. */
static void cut(const sp_world_t *src, sp_world_t *part[3]) {
    ck_assert_int_eq(sp_world_part(src, 0, owner4, NULL, 0, 1, 4, 1, &part[0]), 0);
    ck_assert_int_eq(sp_world_part(src, 1, owner4, NULL, 1, 3, 4, 1, &part[1]), 0);
    ck_assert_int_eq(sp_world_part(src, 2, owner4, NULL, 3, 4, 4, 1, &part[2]), 0);
}

typedef struct where {
    uint32_t node, wrong;
    sp_entity_id_t max_id;
} where_t;
static int check_where(void *ctx, sp_entity_id_t id, float x, float y) {
    where_t *c = ctx;
    if (owner4(NULL, x, y) != c->node) c->wrong++;
    if (id > c->max_id) c->max_id = id;
    return 0;
}

START_TEST(test_split_parts_add_up_to_the_source) {
    sp_world_t *src = demo_world();
    sp_world_t *part[3];
    cut(src, part);
    uint64_t sum = 0;
    uint32_t count = 0, sleeping = 0;
    where_t all = {0, 0, 0};
    sp_world_foreach_xy(src, check_where, &all);
    for (uint32_t k = 0; k < 3; k++) {
        ck_assert_uint_eq(sp_world_def(part[k])->id_node, k);
        ck_assert_uint_eq(sp_world_tick(part[k]), sp_world_tick(src));
        ck_assert_uint_gt(sp_world_count(part[k]), 0);
        where_t c = {k, 0, 0};
        sp_world_foreach_xy(part[k], check_where, &c);
        ck_assert_uint_eq(c.wrong, 0); /* every entity in one of its node's cells */
        sum += sp_world_hash_canonical(part[k]);
        count += sp_world_count(part[k]);
        sleeping += sp_world_count_sleeping(part[k]);
    }
    ck_assert_uint_eq(count, sp_world_count(src));
    ck_assert_uint_eq(sleeping, sp_world_count_sleeping(src));
    ck_assert_uint_eq(sum, sp_world_hash_canonical(src));
    /* Node 0 continues the source's id counter; the others mint in their
     * own space, so no id minted after the split can collide. */
    float p[3] = {-100.0f, -100.0f, 0.0f};
    sp_entity_id_t id0, id1, ids;
    ck_assert_int_eq(sp_world_spawn_ship(part[0], 1, 0, p, &id0), 0);
    ck_assert_int_eq(sp_world_spawn_ship(src, 1, 0, p, &ids), 0);
    ck_assert_uint_eq(id0, ids);
    ck_assert_uint_gt(id0, all.max_id);
    ck_assert_int_eq(sp_world_spawn_ship(part[1], 1, 0, p, &id1), 0);
    ck_assert_uint_eq(id1 >> SP_WORLD_ID_COUNTER_BITS, 1);
    for (int k = 0; k < 3; k++) sp_world_free(part[k]);
    sp_world_free(src);
}
END_TEST

START_TEST(test_split_then_merge_gives_the_source_back_through_checkpoints) {
    sp_world_t *src = demo_world();
    sp_world_t *part[3], *loaded[3];
    cut(src, part);
    /* Through the checkpoint format, as the tool does. */
    for (int k = 0; k < 3; k++) {
        uint8_t *buf;
        size_t len;
        ck_assert_int_eq(sp_world_save(part[k], &buf, &len), 0);
        ck_assert_int_eq(sp_world_load(buf, len, NULL, 1, &loaded[k]), 0);
        ck_assert_uint_eq(sp_world_hash(loaded[k]), sp_world_hash(part[k]));
        free(buf);
    }
    sp_world_t *m;
    ck_assert_int_eq(sp_world_merge((const sp_world_t *const *)loaded, 3, 0, 1, &m), 0);
    ck_assert_uint_eq(sp_world_count(m), sp_world_count(src));
    ck_assert_uint_eq(sp_world_count_sleeping(m), sp_world_count_sleeping(src));
    ck_assert_uint_eq(sp_world_hash_canonical(m), sp_world_hash_canonical(src));
    ck_assert_uint_eq(sp_world_tick(m), sp_world_tick(src));
    /* Every entity bit-exact, one by one. */
    where_t all = {0, 0, 0};
    sp_world_foreach_xy(src, check_where, &all);
    sp_entity_id_t *ids = malloc(sizeof *ids * sp_world_count(src));
    uint32_t n = 0;
    for (sp_entity_id_t id = 1; id <= all.max_id; id++) {
        sp_entity_state_t a, b;
        if (sp_world_export(src, id, &a) != 0) continue;
        ck_assert_int_eq(sp_world_export(m, id, &b), 0);
        ck_assert(sp_entity_state_equal(&a, &b));
        ids[n++] = id;
    }
    ck_assert_uint_eq(n, sp_world_count(src));
    free(ids);
    /* The merged world's counter is past every id it holds. */
    float p[3] = {0.0f, 0.0f, 0.0f};
    sp_entity_id_t id;
    ck_assert_int_eq(sp_world_spawn_ship(m, 1, 0, p, &id), 0);
    ck_assert_uint_gt(id, all.max_id);
    for (int k = 0; k < 3; k++) {
        sp_world_free(part[k]);
        sp_world_free(loaded[k]);
    }
    sp_world_free(m);
    sp_world_free(src);
}
END_TEST

/* A world whose evolution does not depend on the split (ballistic ships on
 * separate lanes, no contacts, no AI, no respawn): the parts stepped apart
 * sum to the whole one's canonical hash after the same ticks, entities
 * crossing cells and all, and merge back to it. */
START_TEST(test_split_ballistic_world_steps_to_the_same_canonical_hash) {
    sp_world_def_t d = sp_world_def_default();
    d.seed = 3;
    d.half_extent = 100.0f;
    d.ship_max_speed = 800.0f;
    d.ship_max_accel = 0.0f;

    sp_world_t *src;
    ck_assert_int_eq(sp_world_create(&d, &src), 0);
    for (uint32_t k = 0; k < 900; k++) {
        float p[3] = {-90.0f + (float)(k * 37 % 180), -80.0f + 5.0f * (float)(k % 30),
                      -80.0f + 5.0f * (float)(k / 30)};
        sp_entity_id_t id;
        ck_assert_int_eq(sp_world_spawn_ship(src, 1 + k % 5, 0, p, &id), 0);
        float v[3] = {(float)(200 + k % 300) * (k % 2 ? 1.0f : -1.0f), 0.0f, 0.0f};
        ck_assert_int_eq(sp_world_set_velocity(src, id, v), 0);
    }
    sp_world_t *part[3];
    cut(src, part);
    for (int t = 0; t < 300; t++) {
        ck_assert_int_eq(sp_world_step(src), 0);
        for (int k = 0; k < 3; k++) ck_assert_int_eq(sp_world_step(part[k]), 0);
    }
    uint64_t sum = 0;
    for (int k = 0; k < 3; k++) sum += sp_world_hash_canonical(part[k]);
    ck_assert_uint_eq(sum, sp_world_hash_canonical(src));
    /* Ships crossed cells (each part now holds some outside its own). */
    where_t c = {1, 0, 0};
    sp_world_foreach_xy(part[1], check_where, &c);
    ck_assert_uint_gt(c.wrong, 0);
    sp_world_t *m;
    ck_assert_int_eq(sp_world_merge((const sp_world_t *const *)part, 3, 0, 1, &m), 0);
    ck_assert_uint_eq(sp_world_hash_canonical(m), sp_world_hash_canonical(src));
    sp_world_free(m);
    for (int k = 0; k < 3; k++) sp_world_free(part[k]);
    sp_world_free(src);
}
END_TEST

START_TEST(test_split_merge_refuses_what_does_not_fit_together) {
    sp_world_t *src = demo_world();
    sp_world_t *part[3], *m = NULL;
    cut(src, part);
    /* The same part twice: its ids would be in two parts. */
    const sp_world_t *twice[2] = {part[1], part[1]};
    ck_assert_int_eq(sp_world_merge(twice, 2, 0, 1, &m), SP_EINVAL);
    ck_assert_ptr_null(m);
    /* Parts at different ticks. */
    ck_assert_int_eq(sp_world_step(part[2]), 0);
    ck_assert_int_eq(sp_world_merge((const sp_world_t *const *)part, 3, 0, 1, &m), SP_EINVAL);
    ck_assert_ptr_null(m);
    /* A different definition. */
    sp_world_def_t d = *sp_world_def(part[0]);
    d.id_node = 5;
    d.weapon_damage += 1.0f;
    sp_world_t *other;
    ck_assert_int_eq(sp_world_create(&d, &other), 0);
    const sp_world_t *mixed[2] = {part[0], other};
    ck_assert_int_eq(sp_world_merge(mixed, 2, 0, 1, &m), SP_EINVAL);
    ck_assert_ptr_null(m);
    /* Bad arguments. */
    ck_assert_int_eq(sp_world_merge(NULL, 1, 0, 1, &m), SP_EINVAL);
    ck_assert_int_eq(sp_world_merge((const sp_world_t *const *)part, 0, 0, 1, &m), SP_EINVAL);
    ck_assert_int_eq(sp_world_part(src, 0, owner4, NULL, 2, 1, 4, 1, &m), SP_EINVAL);
    ck_assert_int_eq(sp_world_part(src, 0, owner4, NULL, 0, 1, 0, 1, &m), SP_EINVAL);
    ck_assert_int_eq(sp_world_part(src, SP_WORLD_MAX_NODES, owner4, NULL, 0, 1, 4, 1, &m), SP_EINVAL);
    ck_assert_ptr_null(m);
    sp_world_free(other);
    for (int k = 0; k < 3; k++) sp_world_free(part[k]);
    sp_world_free(src);
}
END_TEST

static Suite *split_suite(void) {
    Suite *s = suite_create("split");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"parts_add_up", test_split_parts_add_up_to_the_source},
        {"merge_round_trip", test_split_then_merge_gives_the_source_back_through_checkpoints},
        {"ballistic_same_hash", test_split_ballistic_world_steps_to_the_same_canonical_hash},
        {"merge_refuses", test_split_merge_refuses_what_does_not_fit_together},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(120));
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(split_suite)
