/* check_wire.c: the hand-off message of a cluster (src/cluster/wire.h):
 * every state field survives encode + decode bit for bit, the tick and the
 * header travel, version 1 messages (no tick) are still read, and anything
 * of another size or version is refused. */
#include <string.h>

#include "cluster/wire.h"
#include "helpers/sp_check.h"
#include "sim/world.h"

/* A ship with every field moved off its default, exported. */
static sp_entity_state_t some_state(void) {
    sp_world_def_t d = sp_world_def_default();
    d.id_node = 3;
    sp_world_t *w;
    ck_assert_int_eq(sp_world_create(&d, &w), 0);
    sp_entity_id_t id;
    float p[3] = {1.25f, -7.5f, 3.0f}, v[3] = {-0.0f, 1e-3f, 9.0f};
    ck_assert_int_eq(sp_world_spawn_ship(w, 5, 0, p, &id), 0);
    ck_assert_int_eq(sp_world_set_velocity(w, id, v), 0);
    for (int t = 0; t < 3; t++) ck_assert_int_eq(sp_world_step(w), 0);
    sp_entity_state_t st;
    ck_assert_int_eq(sp_world_export(w, id, &st), 0);
    st.epoch = 7;
    sp_world_free(w);
    return st;
}

START_TEST(test_wire_round_trip_is_bit_exact) {
    sp_wire_handoff_t h = {.flags = SP_WIRE_RETURN, .origin = 3, .cell = 11, .cell_rev = 42, .tick = 123456789012ull,
                           .st = some_state()},
                      back;
    uint8_t buf[SP_WIRE_MAX];
    size_t n = sp_wire_encode(&h, buf);
    ck_assert_uint_eq(n, sp_wire_size());
    ck_assert_uint_eq(buf[0], SP_WIRE_VERSION);
    ck_assert_int_eq(sp_wire_decode(buf, n, &back), 0);
    ck_assert(sp_entity_state_equal(&back.st, &h.st));
    ck_assert_uint_eq(back.flags, h.flags);
    ck_assert_uint_eq(back.origin, 3);
    ck_assert_uint_eq(back.cell, 11);
    ck_assert_uint_eq(back.cell_rev, 42);
    ck_assert_uint_eq(back.tick, 123456789012ull);
    /* Any other size, or another version, is refused. */
    ck_assert_int_eq(sp_wire_decode(buf, n - 1, &back), SP_EPROTO);
    ck_assert_int_eq(sp_wire_decode(buf, n + 1, &back), SP_EPROTO);
    buf[0] = SP_WIRE_VERSION + 1;
    ck_assert_int_eq(sp_wire_decode(buf, n, &back), SP_EPROTO);
    buf[0] = 1; /* version 1 at version 2's size */
    ck_assert_int_eq(sp_wire_decode(buf, n, &back), SP_EPROTO);
}
END_TEST

/* A version 1 message is version 2's without the tick (bytes 18..25). */
START_TEST(test_wire_version_1_is_read_with_tick_0) {
    sp_wire_handoff_t h = {.origin = 2, .cell = 1, .cell_rev = 9, .tick = 55, .st = some_state()}, back;
    uint8_t v2[SP_WIRE_MAX], v1[SP_WIRE_MAX];
    size_t n = sp_wire_encode(&h, v2);
    size_t head = 1 + 1 + 2 + 4 + 8; /* version, flags, origin, cell, cell_rev */
    memcpy(v1, v2, head);
    memcpy(v1 + head, v2 + head + 8, n - head - 8);
    v1[0] = 1;
    ck_assert_int_eq(sp_wire_decode(v1, n - 8, &back), 0);
    ck_assert(sp_entity_state_equal(&back.st, &h.st));
    ck_assert_uint_eq(back.tick, 0);
    ck_assert_uint_eq(back.origin, 2);
    ck_assert_uint_eq(back.cell_rev, 9);
    v1[0] = 2; /* version 2 at version 1's size */
    ck_assert_int_eq(sp_wire_decode(v1, n - 8, &back), SP_EPROTO);
}
END_TEST

static Suite *wire_suite(void) {
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("wire");
    tcase_add_test(tc, test_wire_round_trip_is_bit_exact);
    tcase_add_test(tc, test_wire_version_1_is_read_with_tick_0);
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(wire_suite)
