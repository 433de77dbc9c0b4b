/* check_icells.c: the daemon's cell store (src/daemon/icells.c) fed with
 * incremental frames (issue 9, point 1) against the same store fed with full
 * frames of the same moments. The incremental store learns what changed
 * from the frame's own change list (O(changes)); the other compares the two
 * frames row by row. Every round, every cell must hold the same records,
 * the same change tick and the same delta chunk bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/icells.h"
#include "rpc.h"
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

/* As if clients saw every cell in the last round (so every change keeps
 * its delta and past contents). */
static void see_all(sp_icells_t *cs) {
    for (uint32_t c = 0; c < cs->ncells; c++) atomic_store_explicit(&cs->cell[c].seen, cs->rounds + 1, memory_order_relaxed);
}

/* Records and change ticks only (a store nobody looks at keeps no deltas). */
static void contents_equal(const sp_icells_t *a, const sp_icells_t *b, int round) {
    for (uint32_t c = 0; c < a->ncells; c++) {
        const sp_cell_t *x = &a->cell[c], *y = &b->cell[c];
        ck_assert_msg(x->len == y->len && x->changed == y->changed, "round %d cell %u differs", round, c);
        ck_assert(x->len == 0 || memcmp(x->recs, y->recs, x->len * sizeof x->recs[0]) == 0);
        ck_assert_ptr_null(x->delta);
        ck_assert_uint_eq(x->hn, 0);
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
    /* unseen: a third store fed the full frames that no client ever looks
     * at: it patches records in place where it can and keeps no deltas,
     * and must hold the same contents. */
    sp_icells_t inc, full, unseen;
    double edge;
    ck_assert_int_eq(sp_icells_init(&inc, HALF, 60.0, &edge), 0);
    ck_assert_int_eq(sp_icells_init(&full, HALF, 60.0, &edge), 0);
    ck_assert_int_eq(sp_icells_init(&unseen, HALF, 60.0, &edge), 0);
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
            see_all(&inc);
            see_all(&full);
            apply(&inc, fi, &s);
            apply(&full, ff, &s);
            apply(&unseen, ff, &s);
            stores_equal(&inc, &full, round);
            contents_equal(&unseen, &full, round);
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
    sp_icells_destroy(&unseen);
    sp_world_free(w);
}
END_TEST

static bool *g_ever; /* cells some client's view ever had */

/* One client of the store: the server's record of its view, and its own
 * decoded view (sp_snap_apply of the bytes a daemon would write). */
typedef struct client {
    sp_cview_t base;
    sp_snap_view_t view, twin; /* twin: the same snapshots through sp_snap_apply_bytes */
    double ctr[3];
} client_t;

/* Client c's snapshot of the store's round: assembled, decoded by both
 * decoders, and its view compared with the store cell by cell. Returns the
 * catch-up chunks it carried; *kept_full: entities of full chunks of cells
 * the client already had. */
static size_t deliver(sp_icells_t *cs, client_t *c, sp_icells_scratch_t *s, sp_csnap_t *o, int round,
                      size_t *kept_full) {
    ck_assert_int_eq(sp_icells_snapshot(cs, &c->base, &c->ctr, 1, 120.0, 1u << 20, s, o), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, o->bytes.data, o->head);
    for (size_t k = 0; k < o->nchunks; k++) msgpack_sbuffer_write(&sb, (const char *)o->chunks[k]->data, o->chunks[k]->len);
    msgpack_sbuffer_write(&sb, o->bytes.data + o->head, o->bytes.size - o->head);
    sp_rpc_decoder_t d;
    ck_assert_int_eq(sp_rpc_decoder_init(&d, 64u << 20), 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, sb.data, sb.size), 0);
    sp_rpc_msg_t m;
    ck_assert_int_eq(sp_rpc_decoder_next_lazy(&d, &m), 1);
    ck_assert(m.lazy);
    int rb = sp_snap_apply_bytes(&c->twin, m.params_bytes, m.params_len, NULL);
    ck_assert_int_eq(sp_rpc_decoder_unpack(&d, &m), 0);
    int ro = sp_snap_apply(&c->view, m.params, NULL);
    ck_assert_msg(ro == 0, "round %d: the client could not apply its snapshot (%d)", round, ro);
    ck_assert_int_eq(rb, 0);
    sp_rpc_decoder_destroy(&d);
    msgpack_sbuffer_destroy(&sb);
    ck_assert(sp_snap_view_equal(&c->view, &c->twin));
    /* The client's view is the store's content of the view's cells. */
    ck_assert_uint_eq(c->view.ncells, o->next.n);
    for (size_t k = 0; k < o->next.n; k++) {
        const sp_cell_t *sc = &cs->cell[o->next.cells[k]];
        const sp_snap_cell_t *vc = sp_snap_view_cell(&c->view, o->next.cells[k]);
        ck_assert_ptr_nonnull(vc);
        ck_assert_msg(vc->len == sc->len, "round %d cell %u: %u vs %u entities", round, o->next.cells[k], vc->len,
                      sc->len);
        ck_assert(sc->len == 0 || memcmp(vc->recs, sc->recs, sc->len * sizeof sc->recs[0]) == 0);
    }
    /* Entering cells come whole; a kept cell comes whole only when it
     * changed more often since the client's view than the store remembers. */
    size_t entering = 0, bi = 0;
    for (size_t k = 0; k < o->next.n; k++) {
        uint32_t cell = o->next.cells[k];
        while (bi < c->base.n && c->base.cells[bi] < cell) bi++;
        if (!c->base.valid || bi >= c->base.n || c->base.cells[bi] != cell) entering += cs->cell[cell].len;
    }
    *kept_full = o->full_entities - entering;
    for (size_t k = 0; k < o->next.n; k++) g_ever[o->next.cells[k]] = true;
    sp_cview_swap(&c->base, &o->next); /* handed to the socket: the new baseline */
    return o->catchups;
}

START_TEST(test_issue_9_clients_that_skip_rounds_get_catchup_deltas_that_apply) {
    sp_world_def_t d = sp_world_def_default();
    d.seed = 9;
    d.half_extent = (float)HALF;
    d.sleep_ticks = 5;
    sp_world_t *w;
    ck_assert_int_eq(sp_world_create(&d, &w), 0);
    ck_assert_int_eq(sp_world_populate_demo(w, 3000, 300), 0);
    for (int t = 0; t < 30; t++) ck_assert_int_eq(sp_world_step(w), 0);
    sp_icells_t cs;
    double edge;
    ck_assert_int_eq(sp_icells_init(&cs, HALF, 60.0, &edge), 0);
    sp_icells_scratch_t s;
    sp_icells_scratch_init(&s);
    sp_csnap_t o;
    sp_csnap_init(&o);
    g_ever = calloc(cs.ncells, sizeof *g_ever);
    ck_assert_ptr_nonnull(g_ever);
    /* Client 0 gets every round; the others skip rounds as a late or
     * backed-up client does: one at a time, two in a row, or often. */
    enum { NC = 5 };
    client_t cl[NC];
    for (int k = 0; k < NC; k++) {
        sp_cview_init(&cl[k].base);
        sp_snap_view_init(&cl[k].view);
        sp_snap_view_init(&cl[k].twin);
        cl[k].ctr[0] = -150.0 + 100.0 * k;
        cl[k].ctr[1] = 40.0 * k - 60.0;
        cl[k].ctr[2] = 0.0;
    }
    size_t catchups = 0, deep_full = 0, delivered = 0;
    int lag[NC] = {0};
    unsigned seed = 17;
    for (int round = 0; round < 60; round++) {
        const sp_frame_t *now = sp_world_publish_frame(w);
        for (int k = 0; k < 4 && now->count > 0; k++) { /* churn: some die, some wake */
            sp_entity_id_t id = now->rows[rand_r(&seed) % now->count].id;
            if (k == 3) {
                (void)sp_world_destroy(w, id);
            } else {
                float v[3] = {3.0f, -2.0f, 1.0f};
                (void)sp_world_set_velocity(w, id, v);
            }
        }
        sp_frame_release(now);
        for (int t = 0; t < 3; t++) ck_assert_int_eq(sp_world_step(w), 0);
        sp_frame_t *f = sp_world_publish_frame(w);
        apply(&cs, f, &s);
        sp_frame_release(f);
        for (int k = 0; k < NC; k++) {
            /* client 4 falls behind by up to 7 rounds: past what a cell keeps */
            bool skip = (k == 1 && round % 3 == 1) || (k == 2 && round % 5 >= 3) || (k == 3 && round % 2 == 1) ||
                        (k == 4 && round % 11 >= 3 && round % 11 <= 9);
            if (round == 0) skip = false;
            if (skip) {
                lag[k]++;
                continue;
            }
            size_t kept_full;
            size_t c = deliver(&cs, &cl[k], &s, &o, round, &kept_full);
            delivered++;
            if (lag[k] == 0) {
                ck_assert_uint_eq(c, 0); /* on time: the shared deltas */
                ck_assert_uint_eq(kept_full, 0);
            } else if (lag[k] < SP_ICELLS_HIST) {
                /* a cell changes at most once a round: every kept one is a delta */
                ck_assert_msg(kept_full == 0, "round %d client %d, %d rounds behind: %zu entities sent whole",
                              round, k, lag[k], kept_full);
            } else {
                deep_full += kept_full;
            }
            catchups += c;
            lag[k] = 0;
        }
    }
    /* Catch-ups really ran (cells that changed once since the client's
     * view); cells that changed more often than that went full, correctly. */
    ck_assert_uint_gt(catchups, 50);
    ck_assert_uint_gt(delivered, 150);
    ck_assert_uint_gt(deep_full, 0); /* too far behind: whole cells, and they applied */
    /* Past contents only where clients look: none for a cell no view ever
     * had (most of the world here), some for the ones they had. */
    size_t unseen = 0, kept = 0;
    for (uint32_t c = 0; c < cs.ncells; c++) {
        const sp_cell_t *sc = &cs.cell[c];
        if (!g_ever[c]) {
            unseen += sc->changed > 0;
            ck_assert_msg(sc->hn == 0, "cell %u: no client saw it, %u past contents kept", c, sc->hn);
            for (int k = 0; k < SP_ICELLS_HIST; k++) ck_assert_ptr_null(sc->hist[k].recs);
        } else {
            kept += sc->hn > 0;
        }
    }
    ck_assert_uint_gt(unseen, 10);
    ck_assert_uint_gt(kept, 10);
    free(g_ever);
    for (int k = 0; k < NC; k++) {
        sp_cview_destroy(&cl[k].base);
        sp_snap_view_destroy(&cl[k].view);
        sp_snap_view_destroy(&cl[k].twin);
    }
    sp_csnap_destroy(&o);
    sp_icells_scratch_destroy(&s);
    sp_icells_destroy(&cs);
    sp_world_free(w);
}
END_TEST

static Suite *icells_suite(void) {
    Suite *s = suite_create("icells");
    TCase *tc = tcase_create("change_lists");
    tcase_set_timeout(tc, sp_timeout(60));
    tcase_add_test(tc, test_issue_9_store_from_change_lists_equals_store_from_full_frames);
    tcase_add_test(tc, test_issue_9_clients_that_skip_rounds_get_catchup_deltas_that_apply);
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(icells_suite)
