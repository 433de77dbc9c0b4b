/* check_icells.c: the daemon's cell store (src/daemon/icells.c) fed with
 * incremental frames (issue 9, point 1) against the same store fed with full
 * frames of the same moments. The incremental store learns what changed
 * from the frame's own change list (O(changes)); the other compares the two
 * frames row by row. Every round, every cell must hold the same records,
 * the same change tick and the same delta chunk bytes. */
#include <stdlib.h>
#include <string.h>

#include "daemon/icells.h"
#include "helpers/sp_check.h"
#include "sim/frame.h"
#include "sim/world.h"

#define HALF 300.0

static void stores_equal(const sp_icells_t *a, const sp_icells_t *b, int round) {
    ck_assert_uint_eq(a->ncells, b->ncells);
    ck_assert_uint_eq(a->tick, b->tick);
    for (uint32_t c = 0; c < a->ncells; c++) {
        const sp_cell_t *x = &a->cell[c], *y = &b->cell[c];
        ck_assert_msg(x->len == y->len, "round %d cell %u: %u records vs %u", round, c, x->len, y->len);
        ck_assert_msg(x->len == 0 || memcmp(x->recs, y->recs, x->len * sizeof x->recs[0]) == 0,
                      "round %d cell %u: records differ", round, c);
        ck_assert_msg(x->changed == y->changed, "round %d cell %u: changed at %llu vs %llu", round, c,
                      (unsigned long long)x->changed, (unsigned long long)y->changed);
        if (x->changed == a->tick && a->tick != 0) {
            ck_assert_ptr_nonnull(x->delta);
            ck_assert_ptr_nonnull(y->delta);
            ck_assert_uint_eq(x->delta->len, y->delta->len);
            ck_assert_int_eq(memcmp(x->delta->data, y->delta->data, x->delta->len), 0);
        }
    }
}

static void apply(sp_icells_t *cs, const sp_frame_t *f, sp_icells_scratch_t *s) {
    ck_assert_int_eq(sp_icells_begin(cs, f), 0);
    ck_assert_int_eq(sp_icells_update(cs, 0, cs->ntouched, s), 0);
    sp_icells_end(cs, true);
}

START_TEST(test_issue_9_store_from_change_lists_equals_store_from_full_frames) {
    sp_world_def_t d = sp_world_def_default();
    d.seed = 5;
    d.half_extent = (float)HALF;
    d.sleep_ticks = 5;
    sp_world_t *w;
    ck_assert_int_eq(sp_world_create(&d, &w), 0);
    ck_assert_int_eq(sp_world_populate_demo(w, 3000, 200), 0);
    ck_assert_int_eq(sp_world_set_respawn(w, 200, 3000, 10, 20), 0);
    for (int t = 0; t < 40; t++) ck_assert_int_eq(sp_world_step(w), 0);
    sp_icells_t inc, full;
    double edge;
    ck_assert_int_eq(sp_icells_init(&inc, HALF, 60.0, &edge), 0);
    ck_assert_int_eq(sp_icells_init(&full, HALF, 60.0, &edge), 0);
    sp_icells_scratch_t s;
    sp_icells_scratch_init(&s);
    sp_world_capture_t *cap;
    ck_assert_int_eq(sp_world_capture_create(NULL, &cap), 0);
    sp_frame_t *prev = NULL;
    unsigned seed = 3;
    int listed = 0;
    for (int round = 0; round < 40; round++) {
        /* Churn: destroy a few, wake a few; the world moves by itself. */
        const sp_frame_t *now = sp_world_publish_frame(w);
        for (int k = 0; k < 5 && now->count > 0; k++) {
            sp_entity_id_t id = now->rows[rand_r(&seed) % now->count].id;
            if (k % 2) {
                (void)sp_world_destroy(w, id);
            } else {
                float v[3] = {2.0f, 1.0f, -1.0f};
                (void)sp_world_set_velocity(w, id, v);
            }
        }
        sp_frame_release(now);
        for (int t = 0; t < 3; t++) ck_assert_int_eq(sp_world_step(w), 0);
        ck_assert_int_eq(sp_world_capture_delta(w, cap), 0);
        sp_frame_t *fi = sp_frame_build_delta(prev, cap);
        sp_frame_t *ff = sp_world_publish_frame(w);
        ck_assert_ptr_nonnull(fi);
        ck_assert_ptr_nonnull(ff);
        ck_assert_int_eq(ff->has_changes, 0);
        if (fi->has_changes && inc.frame != NULL && inc.frame->tick == fi->base_tick) listed++;
        /* The store skips a round now and then (as a late daemon round
         * does): the list no longer applies and the store compares. */
        if (round % 9 != 8) {
            apply(&inc, fi, &s);
            apply(&full, ff, &s);
            stores_equal(&inc, &full, round);
        }
        sp_frame_release(ff);
        sp_frame_release(prev);
        prev = fi;
    }
    ck_assert_int_ge(listed, 25); /* the change-list path really ran */
    sp_frame_release(prev);
    sp_world_capture_free(cap);
    sp_icells_scratch_destroy(&s);
    sp_icells_destroy(&inc);
    sp_icells_destroy(&full);
    sp_world_free(w);
}
END_TEST

static Suite *icells_suite(void) {
    Suite *s = suite_create("icells");
    TCase *tc = tcase_create("change_lists");
    tcase_set_timeout(tc, sp_timeout(60));
    tcase_add_test(tc, test_issue_9_store_from_change_lists_equals_store_from_full_frames);
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(icells_suite)
