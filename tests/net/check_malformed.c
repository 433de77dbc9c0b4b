/* check_malformed.c: hostile input costs only the client that sends it.
 *
 * Malformed MessagePack, oversize declared lengths, a message that grows past
 * the limit, bad RPC shapes, wrong param types, floods (rate limit), too many
 * connections and silent clients: each is answered or cut off, with the
 * daemon still serving a well-behaved client at the same time
 * (memcached malicious-commands.t, Redis obuf-limits.tcl). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../helpers/sp_check.h"
#include "netclient.h"

#define T sp_timeout(5.0)

static nc_daemon_t D;

static void start(const char *const *extra) {
    const char *args[32] = {"--demo-asteroids", "50", "--demo-npcs", "5", "--world-size", "1000"};
    int n = 6;
    for (int i = 0; extra && extra[i]; i++) args[n++] = extra[i];
    args[n] = NULL;
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    int st = 0;
    ck_assert_msg(nc_daemon_start(&D, args, NULL, 10, &st) == 0, "daemon did not start (%d)", st);
}

static void stop(void) { ck_assert_int_eq(nc_daemon_stop(&D, SIGTERM, 10 * sp_timeout(1)), 0); }

static void teardown(void) { nc_daemon_cleanup(&D); }

/* The bystander is still served promptly. */
static void assert_alive(nc_t *good) {
    nc_resp_t r;
    double t0 = nc_now();
    ck_assert_int_eq(nc_call(good, T, &r, "ping", ""), 0);
    ck_assert_ptr_null(r.error);
    nc_resp_free(&r);
    ck_assert(nc_now() - t0 < 1.0 * sp_timeout(1));
}

/* Expect an error notification with `code`, then the connection closed. */
static void assert_error_then_closed(nc_t *c, int code) {
    msgpack_unpacked *u = nc_next_note(c, "error", T);
    ck_assert_msg(u != NULL, "no error notification");
    const msgpack_object *e = &nc_note_params(u)->via.array.ptr[0];
    ck_assert_uint_eq(nc_get_u64(e, "code"), (uint64_t)code);
    nc_note_free(u);
    ck_assert_int_eq(nc_wait_closed(c, T), 0);
}

START_TEST(test_malformed_type_byte_c1_closes_only_that_client) {
    start(NULL);
    nc_t good, bad;
    ck_assert_int_eq(nc_connect(&good, D.port), 0);
    ck_assert_int_eq(nc_connect(&bad, D.port), 0);
    unsigned char junk[] = {0x94, 0x00, 0x01, 0xc1, 0x90};
    ck_assert_int_eq(nc_send_raw(&bad, junk, sizeof junk), 0);
    assert_error_then_closed(&bad, 1);
    assert_alive(&good);
    nc_close(&bad);
    nc_close(&good);
    stop();
    ck_assert(nc_log_contains(&D, "kicked: malformed MessagePack"));
}
END_TEST

START_TEST(test_malformed_declared_str32_over_limit_refused_before_payload) {
    start(NULL);
    nc_t good, bad;
    ck_assert_int_eq(nc_connect(&good, D.port), 0);
    ck_assert_int_eq(nc_connect(&bad, D.port), 0);
    /* [0, 1, "ping", [<str32 of 1 GiB>]]: only the 5-byte header is sent. */
    unsigned char hdr[] = {0x94, 0x00, 0x01, 0xa4, 'p', 'i', 'n', 'g', 0x91, 0xdb, 0x40, 0x00, 0x00, 0x00};
    ck_assert_int_eq(nc_send_raw(&bad, hdr, sizeof hdr), 0);
    assert_error_then_closed(&bad, 13);
    assert_alive(&good);
    /* An array32 declaring 2^31 elements. */
    nc_t bad2;
    ck_assert_int_eq(nc_connect(&bad2, D.port), 0);
    unsigned char arr[] = {0xdd, 0x80, 0x00, 0x00, 0x00};
    ck_assert_int_eq(nc_send_raw(&bad2, arr, sizeof arr), 0);
    assert_error_then_closed(&bad2, 13);
    assert_alive(&good);
    nc_close(&bad);
    nc_close(&bad2);
    nc_close(&good);
    stop();
}
END_TEST

START_TEST(test_malformed_message_growing_past_64k_closed) {
    start(NULL);
    nc_t good, bad;
    ck_assert_int_eq(nc_connect(&good, D.port), 0);
    ck_assert_int_eq(nc_connect(&bad, D.port), 0);
    /* [0, 1, "ping", [str16 60000, str16 60000]]: each item legal, the sum not. */
    static unsigned char buf[130000];
    size_t n = 0;
    unsigned char h[] = {0x94, 0x00, 0x01, 0xa4, 'p', 'i', 'n', 'g', 0x92};
    memcpy(buf, h, sizeof h);
    n = sizeof h;
    for (int k = 0; k < 2; k++) {
        buf[n++] = 0xda;
        buf[n++] = 60000 >> 8;
        buf[n++] = 60000 & 0xff;
        memset(buf + n, 'x', 60000);
        n += 60000;
    }
    nc_send_raw(&bad, buf, n); /* may fail with EPIPE once closed: fine */
    assert_error_then_closed(&bad, 13);
    assert_alive(&good);
    nc_close(&bad);
    nc_close(&good);
    stop();
    ck_assert(nc_log_contains(&D, "kicked: message over 65536 bytes"));
}
END_TEST

START_TEST(test_malformed_rpc_shapes_get_error_replies) {
    start(NULL);
    nc_t c;
    ck_assert_int_eq(nc_connect(&c, D.port), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* method is an int: INVALID_REQUEST reply with msgid 7 */
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 7);
    msgpack_pack_int(&pk, 42);
    msgpack_pack_array(&pk, 0);
    nc_send_raw(&c, sb.data, sb.size);
    nc_resp_t r;
    ck_assert_int_eq(nc_wait_resp(&c, 7, T, &r), 0);
    ck_assert_int_eq(r.code, 2);
    nc_resp_free(&r);
    /* wrong param types */
    ck_assert_int_eq(nc_call(&c, T, &r, "hello", "s", "x"), 0);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&c, T, &r, "inspect", "s", "one"), 0);
    ck_assert_int_eq(r.code, 4);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&c, T, &r, "move", "u", 1ull), 0);
    ck_assert_int_eq(r.code, 4);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&c, T, &r, "subscribe", "d", -5.0), 0);
    ck_assert_int_eq(r.code, 4);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&c, T, &r, "inspect", "u", 12345678ull), 0);
    ck_assert_int_eq(r.code, 7);
    nc_resp_free(&r);
    /* A bare integer is not an RPC message: error notification and close. */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_int(&pk, 5);
    nc_send_raw(&c, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    assert_error_then_closed(&c, 2);
    nc_close(&c);
    stop();
}
END_TEST

START_TEST(test_malformed_flood_is_rate_limited) {
    static const char *const extra[] = {"--rate", "50", NULL};
    start(extra);
    nc_t c;
    ck_assert_int_eq(nc_connect(&c, D.port), 0);
    /* 300 pings at once: the bucket holds 100. */
    uint32_t first = 0, last = 0;
    for (int i = 0; i < 300; i++) {
        last = nc_send_req(&c, "ping", "");
        if (i == 0) first = last;
    }
    int limited = 0, ok = 0;
    for (uint32_t id = first; id <= last; id++) {
        nc_resp_t r;
        ck_assert_int_eq(nc_wait_resp(&c, id, T, &r), 0);
        if (r.code == 10) limited++;
        else if (r.code == 0) ok++;
        nc_resp_free(&r);
    }
    ck_assert_int_eq(ok + limited, 300);
    ck_assert_int_ge(limited, 150);
    ck_assert_int_ge(ok, 100);
    nc_close(&c);
    stop();
}
END_TEST

START_TEST(test_malformed_max_clients_and_idle_timeout) {
    static const char *const extra[] = {"--max-clients", "2", "--idle-timeout", "0.5", NULL};
    start(extra);
    nc_t a, b, c;
    ck_assert_int_eq(nc_connect(&a, D.port), 0);
    ck_assert_int_eq(nc_connect(&b, D.port), 0);
    assert_alive(&a);
    ck_assert_int_eq(nc_connect(&c, D.port), 0);
    assert_error_then_closed(&c, 11);
    /* b stays silent: timed out within a few housekeeping rounds. */
    ck_assert_int_eq(nc_wait_closed(&b, 5 * sp_timeout(1)), 0);
    nc_close(&a);
    nc_close(&b);
    nc_close(&c);
    stop();
    ck_assert(nc_log_contains(&D, "disconnected: timed out"));
    ck_assert(nc_log_contains(&D, "kicked: max clients (2) reached"));
}
END_TEST

static Suite *malformed_suite(void) {
    Suite *s = suite_create("malformed");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"type_c1", test_malformed_type_byte_c1_closes_only_that_client},
        {"declared_too_large", test_malformed_declared_str32_over_limit_refused_before_payload},
        {"grows_too_large", test_malformed_message_growing_past_64k_closed},
        {"rpc_shapes", test_malformed_rpc_shapes_get_error_replies},
        {"rate_limit", test_malformed_flood_is_rate_limited},
        {"limits", test_malformed_max_clients_and_idle_timeout},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(30));
        tcase_add_checked_fixture(tc, NULL, teardown);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(malformed_suite)
