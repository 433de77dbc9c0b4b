/* check_msg.c: SpaceMessage constructors, validation, names and ordering. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/sp_check.h"
#include "spacesim/msg.h"

START_TEST(test_msg_size_is_at_most_128_and_copy_is_plain) {
    ck_assert_uint_le(sizeof(sp_msg_t), 128);
    ck_assert_uint_eq(sizeof(sp_msg_t) % 8, 0);
    ck_assert_uint_eq(offsetof(sp_msg_t, u) % 8, 0);
}
END_TEST

/* Seed defect: String payloads allocated per message. Here text is inline, so
 * a plain struct copy carries it, and it survives the original being wiped. */
START_TEST(test_msg_resource_mined_text_survives_copy_and_original_wipe) {
    sp_msg_t m, copy;
    ck_assert_int_eq(sp_msg_resource_mined(&m, 42, "helium-3", 12.5f), 0);
    sp_msg_stamp(&m, 7, 1, 99);
    copy = m; /* trivially copyable */
    memset(&m, 0xA5, sizeof m);
    ck_assert_int_eq(copy.kind, SP_MSG_RESOURCE_MINED);
    ck_assert_str_eq(copy.u.resource_mined.resource_type, "helium-3");
    ck_assert_uint_eq(copy.u.resource_mined.type_len, 8);
    ck_assert_uint_eq(copy.u.resource_mined.ship_id, 42);
    ck_assert_float_eq(copy.u.resource_mined.amount, 12.5f);
    ck_assert_uint_eq(copy.hdr.tick, 7);
    ck_assert_uint_eq(copy.hdr.origin, 1);
    ck_assert_uint_eq(copy.hdr.seq, 99);
    ck_assert_int_eq(sp_msg_validate(&copy), 0);
}
END_TEST

START_TEST(test_msg_alert_text_survives_memcpy_round_trip) {
    char text[SP_MSG_ALERT_MAX + 1];
    memset(text, 'x', SP_MSG_ALERT_MAX);
    text[SP_MSG_ALERT_MAX] = '\0';
    text[0] = '!';
    sp_msg_t m, copy;
    ck_assert_int_eq(sp_msg_system_alert(&m, text, 200), 0);
    unsigned char raw[sizeof m];
    memcpy(raw, &m, sizeof m);
    memcpy(&copy, raw, sizeof copy);
    ck_assert_int_eq(memcmp(&m, &copy, sizeof m), 0);
    ck_assert_uint_eq(copy.u.system_alert.text_len, SP_MSG_ALERT_MAX);
    ck_assert_str_eq(copy.u.system_alert.text, text);
    ck_assert_uint_eq(copy.u.system_alert.priority, 200);
    ck_assert_int_eq(sp_msg_validate(&copy), 0);
}
END_TEST

START_TEST(test_msg_overlong_text_refused_and_message_untouched) {
    sp_msg_t m, before;
    ck_assert_int_eq(sp_msg_weapon_fired(&m, 1, 2, 3.0f), 0);
    before = m;
    char long_type[SP_MSG_RESOURCE_TYPE_MAX + 2];
    memset(long_type, 'r', sizeof long_type - 1);
    long_type[sizeof long_type - 1] = '\0'; /* 24 bytes: one too many */
    ck_assert_int_eq(sp_msg_resource_mined(&m, 5, long_type, 1.0f), SP_EMSGSIZE);
    ck_assert_int_eq(memcmp(&m, &before, sizeof m), 0);
    long_type[SP_MSG_RESOURCE_TYPE_MAX] = '\0'; /* exactly 23 bytes: accepted */
    ck_assert_int_eq(sp_msg_resource_mined(&m, 5, long_type, 1.0f), 0);
    ck_assert_uint_eq(m.u.resource_mined.type_len, SP_MSG_RESOURCE_TYPE_MAX);
    ck_assert_int_eq(m.u.resource_mined.resource_type[SP_MSG_RESOURCE_TYPE_MAX], '\0');

    char long_alert[SP_MSG_ALERT_MAX + 2];
    memset(long_alert, 'a', sizeof long_alert - 1);
    long_alert[sizeof long_alert - 1] = '\0'; /* 96 bytes */
    before = m;
    ck_assert_int_eq(sp_msg_system_alert(&m, long_alert, 1), SP_EMSGSIZE);
    ck_assert_int_eq(sp_msg_system_alert_n(&m, long_alert, SP_MSG_ALERT_MAX + 1, 1), SP_EMSGSIZE);
    ck_assert_int_eq(memcmp(&m, &before, sizeof m), 0);
}
END_TEST

/* The NUL-terminated constructors read at most limit+1 bytes, so an
 * unterminated buffer of exactly limit+1 bytes is refused, not overrun
 * (ASan would flag an over-read of the heap block). */
START_TEST(test_msg_unterminated_buffer_refused_without_overread) {
    char *buf = malloc(SP_MSG_ALERT_MAX + 1);
    ck_assert_ptr_nonnull(buf);
    memset(buf, 'z', SP_MSG_ALERT_MAX + 1);
    sp_msg_t m;
    ck_assert_int_eq(sp_msg_system_alert(&m, buf, 3), SP_EMSGSIZE);
    free(buf);
}
END_TEST

START_TEST(test_msg_embedded_nul_and_null_pointers_refused) {
    sp_msg_t m;
    ck_assert_int_eq(sp_msg_resource_mined_n(&m, 1, "ir\0on", 5, 1.0f), SP_EINVAL);
    ck_assert_int_eq(sp_msg_system_alert_n(&m, "a\0b", 3, 1), SP_EINVAL);
    ck_assert_int_eq(sp_msg_system_alert(&m, NULL, 1), SP_EINVAL);
    ck_assert_int_eq(sp_msg_system_alert(NULL, "x", 1), SP_EINVAL);
    ck_assert_int_eq(sp_msg_resource_mined(&m, 1, NULL, 1.0f), SP_EINVAL);
    ck_assert_int_eq(sp_msg_ship_movement(&m, 1, NULL, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_msg_weapon_fired(NULL, 1, 2, 1.0f), SP_EINVAL);
    /* Not terminated but length-delimited: fine (msgpack strings). */
    ck_assert_int_eq(sp_msg_system_alert_n(&m, "abcdef", 3, 9), 0);
    ck_assert_str_eq(m.u.system_alert.text, "abc");
    ck_assert_int_eq(sp_msg_system_alert_n(&m, "", 0, 9), 0);
    ck_assert_uint_eq(m.u.system_alert.text_len, 0);
    ck_assert_int_eq(sp_msg_validate(&m), 0);
}
END_TEST

START_TEST(test_msg_null_ship_and_nonfinite_floats_refused) {
    float pos[3] = {1, 2, 3}, bad[3] = {1, NAN, 3}, inf[3] = {INFINITY, 0, 0};
    sp_msg_t m;
    ck_assert_int_eq(sp_msg_ship_movement(&m, 0, pos, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_msg_ship_movement(&m, 1, bad, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_msg_ship_movement(&m, 1, pos, inf), SP_EINVAL);
    ck_assert_int_eq(sp_msg_weapon_fired(&m, 1, 2, NAN), SP_EINVAL);
    ck_assert_int_eq(sp_msg_weapon_fired(&m, 0, 2, 1.0f), SP_EINVAL);
    ck_assert_int_eq(sp_msg_resource_mined(&m, 1, "ice", INFINITY), SP_EINVAL);
    ck_assert_int_eq(sp_msg_weapon_fired(&m, 9, 0, 1.0f), 0); /* no target is fine */
}
END_TEST

START_TEST(test_msg_ship_movement_fields_and_zero_padding) {
    float pos[3] = {1.5f, -2.0f, 3.25f}, vel[3] = {0.5f, 0.0f, -9.0f};
    sp_msg_t a, b;
    memset(&a, 0xEE, sizeof a);
    memset(&b, 0x11, sizeof b);
    ck_assert_int_eq(sp_msg_ship_movement(&a, 0x0000000100000007ull, pos, vel), 0);
    ck_assert_int_eq(sp_msg_ship_movement(&b, 0x0000000100000007ull, pos, vel), 0);
    /* Constructors zero padding: equal messages are memcmp-equal. */
    ck_assert_int_eq(memcmp(&a, &b, sizeof a), 0);
    ck_assert_int_eq(a.kind, SP_MSG_SHIP_MOVEMENT);
    ck_assert_uint_eq(a.hdr.origin, SP_MSG_ORIGIN_NONE);
    ck_assert_uint_eq(a.hdr.tick, 0);
    ck_assert_float_eq(a.u.ship_movement.position[2], 3.25f);
    ck_assert_float_eq(a.u.ship_movement.velocity[2], -9.0f);
    ck_assert_int_eq(sp_msg_ship_movement(&a, 3, pos, NULL), 0);
    ck_assert_float_eq(a.u.ship_movement.velocity[0], 0.0f);
    ck_assert_int_eq(sp_msg_validate(&a), 0);
}
END_TEST

START_TEST(test_msg_kind_names_and_parse_round_trip) {
    static const char *names[] = {"ShipMovement", "WeaponFired", "ResourceMined", "SystemAlert"};
    for (int k = 1; k <= SP_MSG_KIND_COUNT; k++) {
        const char *n = sp_msg_kind_name(k);
        ck_assert_ptr_nonnull(n);
        ck_assert_str_eq(n, names[k - 1]);
        sp_msg_kind_t parsed = SP_MSG_NONE;
        ck_assert_int_eq(sp_msg_kind_parse(n, strlen(n), &parsed), 0);
        ck_assert_int_eq(parsed, k);
    }
    ck_assert_ptr_null(sp_msg_kind_name(SP_MSG_NONE));
    ck_assert_ptr_null(sp_msg_kind_name(5));
    ck_assert_ptr_null(sp_msg_kind_name(-1));
    sp_msg_kind_t k = SP_MSG_SYSTEM_ALERT;
    ck_assert_int_eq(sp_msg_kind_parse("shipmovement", 12, &k), SP_ENOENT);
    ck_assert_int_eq(sp_msg_kind_parse("ShipMovementX", 13, &k), SP_ENOENT);
    ck_assert_int_eq(sp_msg_kind_parse("ShipMovementX", 12, &k), 0); /* length-delimited */
    ck_assert_int_eq(k, SP_MSG_SHIP_MOVEMENT);
    ck_assert_int_eq(sp_msg_kind_parse("Ship", 4, &k), SP_ENOENT);
    ck_assert_int_eq(sp_msg_kind_parse(NULL, 0, &k), SP_EINVAL);
}
END_TEST

START_TEST(test_msg_validate_rejects_corrupt_messages) {
    sp_msg_t m;
    ck_assert_int_eq(sp_msg_validate(NULL), SP_EINVAL);
    memset(&m, 0, sizeof m);
    ck_assert_int_eq(sp_msg_validate(&m), SP_ETYPE); /* kind NONE */
    m.kind = 77;
    ck_assert_int_eq(sp_msg_validate(&m), SP_ETYPE);

    ck_assert_int_eq(sp_msg_resource_mined(&m, 4, "ice", 2.0f), 0);
    m.u.resource_mined.type_len = 24; /* over the limit */
    ck_assert_int_eq(sp_msg_validate(&m), SP_EMSGSIZE);
    m.u.resource_mined.type_len = 2; /* NUL not at [len] */
    ck_assert_int_eq(sp_msg_validate(&m), SP_EINVAL);
    m.u.resource_mined.type_len = 3;
    ck_assert_int_eq(sp_msg_validate(&m), 0);
    m.u.resource_mined.resource_type[1] = '\0'; /* embedded NUL */
    ck_assert_int_eq(sp_msg_validate(&m), SP_EINVAL);

    ck_assert_int_eq(sp_msg_system_alert(&m, "reactor", 9), 0);
    m.u.system_alert.text_len = 200;
    ck_assert_int_eq(sp_msg_validate(&m), SP_EMSGSIZE);
    m.u.system_alert.text_len = 7;
    m.u.system_alert.text[7] = 'X';
    ck_assert_int_eq(sp_msg_validate(&m), SP_EINVAL);

    float pos[3] = {0, 0, 0};
    ck_assert_int_eq(sp_msg_ship_movement(&m, 8, pos, NULL), 0);
    m.u.ship_movement.velocity[1] = NAN;
    ck_assert_int_eq(sp_msg_validate(&m), SP_EINVAL);
    m.u.ship_movement.velocity[1] = 0;
    m.u.ship_movement.ship_id = 0;
    ck_assert_int_eq(sp_msg_validate(&m), SP_EINVAL);

    ck_assert_int_eq(sp_msg_weapon_fired(&m, 1, 2, 5.0f), 0);
    m.u.weapon_fired.damage = -INFINITY;
    ck_assert_int_eq(sp_msg_validate(&m), SP_EINVAL);
}
END_TEST

static sp_msg_t mk(uint64_t tick, uint32_t origin, uint32_t seq) {
    sp_msg_t m;
    sp_msg_weapon_fired(&m, 1, 2, 1.0f);
    sp_msg_stamp(&m, tick, origin, seq);
    return m;
}

START_TEST(test_msg_order_cmp_sorts_by_tick_origin_seq) {
    sp_msg_t a = mk(1, 0, 5), b = mk(1, 0, 6), c = mk(1, 1, 0), d = mk(2, 0, 0),
             e = mk(1, SP_MSG_ORIGIN_LOOP, 0);
    ck_assert_int_lt(sp_msg_order_cmp(&a, &b), 0);
    ck_assert_int_gt(sp_msg_order_cmp(&b, &a), 0);
    ck_assert_int_lt(sp_msg_order_cmp(&b, &c), 0); /* origin beats seq */
    ck_assert_int_lt(sp_msg_order_cmp(&c, &d), 0); /* tick beats origin */
    ck_assert_int_lt(sp_msg_order_cmp(&c, &e), 0); /* loop after workers */
    ck_assert_int_lt(sp_msg_order_cmp(&e, &d), 0);
    ck_assert_int_eq(sp_msg_order_cmp(&a, &a), 0);
    sp_msg_t big = mk(1, 0, UINT32_MAX);
    ck_assert_int_lt(sp_msg_order_cmp(&a, &big), 0); /* plain unsigned, no wrap games */
}
END_TEST

/* The daemon's use: the same set in two different arrival orders sorts to the
 * same sequence. */
START_TEST(test_msg_order_cmp_makes_arrival_order_irrelevant) {
    enum { N = 200 };
    sp_msg_t x[N], y[N];
    unsigned s = 12345;
    for (int i = 0; i < N; i++) x[i] = mk((uint64_t)(i % 3), (uint32_t)(i % 4), (uint32_t)i);
    for (int i = 0; i < N; i++) y[i] = x[i];
    for (int i = N - 1; i > 0; i--) { /* shuffle y */
        s = s * 1103515245u + 12345u;
        int j = (int)((s >> 8) % (unsigned)(i + 1));
        sp_msg_t t = y[i];
        y[i] = y[j];
        y[j] = t;
    }
    qsort(x, N, sizeof x[0], sp_msg_order_cmp_qsort);
    qsort(y, N, sizeof y[0], sp_msg_order_cmp_qsort);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0);
    for (int i = 1; i < N; i++) ck_assert_int_lt(sp_msg_order_cmp(&x[i - 1], &x[i]), 0);
}
END_TEST

static Suite *msg_suite(void) {
    Suite *s = suite_create("msg");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"layout", test_msg_size_is_at_most_128_and_copy_is_plain},
        {"copy_resource", test_msg_resource_mined_text_survives_copy_and_original_wipe},
        {"copy_alert", test_msg_alert_text_survives_memcpy_round_trip},
        {"overlong", test_msg_overlong_text_refused_and_message_untouched},
        {"unterminated", test_msg_unterminated_buffer_refused_without_overread},
        {"nul_null", test_msg_embedded_nul_and_null_pointers_refused},
        {"finite", test_msg_null_ship_and_nonfinite_floats_refused},
        {"movement", test_msg_ship_movement_fields_and_zero_padding},
        {"kind_names", test_msg_kind_names_and_parse_round_trip},
        {"validate", test_msg_validate_rejects_corrupt_messages},
        {"order", test_msg_order_cmp_sorts_by_tick_origin_seq},
        {"order_sort", test_msg_order_cmp_makes_arrival_order_irrelevant},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(msg_suite)
