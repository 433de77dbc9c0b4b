/* check_rpc.c: MessagePack-RPC framing, classification, params, packers,
 * and the spec-drift check of proto/PROTOCOL.md against spacesim_proto.def. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "helpers/sp_check.h"
#include "rpc.h"

#ifndef SP_PROTOCOL_MD
#define SP_PROTOCOL_MD "proto/PROTOCOL.md"
#endif

/* ---------------------------------------------------------------- helpers */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} pbuf_t;

static void pb_init(pbuf_t *b) {
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}
static void pb_free(pbuf_t *b) { msgpack_sbuffer_destroy(&b->sb); }

/* A request [0, msgid, "move", [7, [1, -2.5, 3]]]. */
static void pack_move(pbuf_t *b, uint32_t msgid) {
    ck_assert_int_eq(sp_rpc_pack_request_begin(&b->pk, msgid, "move", 2), 0);
    msgpack_pack_uint64(&b->pk, 7);
    msgpack_pack_array(&b->pk, 3);
    msgpack_pack_int(&b->pk, 1);
    msgpack_pack_double(&b->pk, -2.5);
    msgpack_pack_int(&b->pk, 3);
}

/* Feed raw bytes into a fresh decoder; return the first next() result. */
static int decode_one(const void *data, size_t n, sp_rpc_decoder_t *d, sp_rpc_msg_t *m) {
    sp_rpc_decoder_init(d, 0);
    int rc = sp_rpc_decoder_feed(d, data, n);
    if (rc != 0) return rc;
    return sp_rpc_decoder_next(d, m);
}

/* ---------------------------------------------------------------- valid shapes */

START_TEST(test_rpc_request_decodes_msgid_method_and_params) {
    pbuf_t b;
    pb_init(&b);
    pack_move(&b, 4000000000u);
    sp_rpc_decoder_t d;
    sp_rpc_msg_t m;
    ck_assert_int_eq(decode_one(b.sb.data, b.sb.size, &d, &m), 1);
    ck_assert_int_eq(m.type, SP_RPC_REQUEST);
    ck_assert(m.has_msgid);
    ck_assert_uint_eq(m.msgid, 4000000000u);
    ck_assert_int_eq((int)m.method_len, 4);
    ck_assert(memcmp(m.method, "move", 4) == 0);
    ck_assert_int_eq(m.method_id, SP_METHOD_MOVE);
    ck_assert_uint_eq(m.wire_size, b.sb.size);
    sp_rpc_error_t err;
    ck_assert_int_eq(sp_rpc_check_params(&m, &err), 0);
    uint64_t ship;
    double v[3];
    ck_assert_int_eq(sp_rpc_param_uint(m.params, 0, &ship, &err), 0);
    ck_assert_uint_eq(ship, 7);
    ck_assert_int_eq(sp_rpc_param_vec3(m.params, 1, v, &err), 0);
    ck_assert(v[0] == 1.0 && v[1] == -2.5 && v[2] == 3.0);
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 0);
    sp_rpc_decoder_destroy(&d);
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_response_ok_and_error_and_notification_decode) {
    pbuf_t b;
    pb_init(&b);
    ck_assert_int_eq(sp_rpc_pack_response_ok_begin(&b.pk, 9), 0);
    msgpack_pack_true(&b.pk);
    ck_assert_int_eq(sp_rpc_pack_response_error(&b.pk, 10, SP_RPCERR_NOT_FOUND, "no ship 5"), 0);
    ck_assert_int_eq(sp_rpc_pack_notify_begin(&b.pk, "event", 1), 0);
    msgpack_pack_map(&b.pk, 0);
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, b.sb.data, b.sb.size), 0);
    sp_rpc_msg_t m;
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
    ck_assert_int_eq(m.type, SP_RPC_RESPONSE);
    ck_assert_uint_eq(m.msgid, 9);
    ck_assert_int_eq(m.error->type, MSGPACK_OBJECT_NIL);
    ck_assert_int_eq(m.result->type, MSGPACK_OBJECT_BOOLEAN);
    ck_assert(m.result->via.boolean);

    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
    ck_assert_int_eq(m.type, SP_RPC_RESPONSE);
    ck_assert_uint_eq(m.msgid, 10);
    ck_assert_int_eq(m.result->type, MSGPACK_OBJECT_NIL);
    int64_t code;
    const char *msg;
    size_t ml;
    ck_assert_int_eq(sp_rpc_parse_error(m.error, &code, &msg, &ml), 0);
    ck_assert_int_eq(code, 7);
    ck_assert_int_eq((int)ml, 9);
    ck_assert(memcmp(msg, "no ship 5", 9) == 0);
    ck_assert_int_eq(m.error->via.map.size, 2); /* exactly {"code", "message"} */

    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
    ck_assert_int_eq(m.type, SP_RPC_NOTIFY);
    ck_assert(!m.has_msgid);
    ck_assert(memcmp(m.method, "event", 5) == 0);
    ck_assert_int_eq(m.params->via.array.size, 1);
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 0);
    sp_rpc_decoder_destroy(&d);
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_every_method_valid_params_pass_check) {
    /* One valid call per method, built from its signature. */
    for (int id = 0; id < SP_METHOD__COUNT; id++) {
        const sp_method_info_t *mi = sp_method_info(id);
        pbuf_t b;
        pb_init(&b);
        sp_rpc_pack_request_begin(&b.pk, (uint32_t)id, mi->name, mi->max_params);
        for (const char *s = mi->signature; *s; s++) {
            switch (*s) {
            case '?': continue;
            case 'n': msgpack_pack_int(&b.pk, 5); break; /* an int where a float is expected */
            case 'i': msgpack_pack_int(&b.pk, -3); break;
            case 'u': msgpack_pack_uint64(&b.pk, (1ull << 32) | 4); break;
            case 's': sp_rpc_pack_cstr(&b.pk, "x"); break;
            case 'b': msgpack_pack_false(&b.pk); break;
            case 'v': msgpack_pack_array(&b.pk, 3); msgpack_pack_int(&b.pk, 0); msgpack_pack_float(&b.pk, 1.5f);
                msgpack_pack_int(&b.pk, -1); break;
            default: ck_abort_msg("bad signature char");
            }
        }
        sp_rpc_decoder_t d;
        sp_rpc_msg_t m;
        ck_assert_int_eq(decode_one(b.sb.data, b.sb.size, &d, &m), 1);
        ck_assert_int_eq(m.type, SP_RPC_REQUEST);
        ck_assert_int_eq(m.method_id, id);
        sp_rpc_error_t err = {0, ""};
        ck_assert_msg(sp_rpc_check_params(&m, &err) == 0, "%s: %s", mi->name, err.message);
        sp_rpc_decoder_destroy(&d);
        pb_free(&b);
    }
}
END_TEST

START_TEST(test_rpc_def_rows_are_consistent) {
    for (int id = 0; id < SP_METHOD__COUNT; id++) {
        const sp_method_info_t *mi = sp_method_info(id);
        unsigned n = 0;
        for (const char *s = mi->signature; *s; s++)
            if (*s != '?') n++;
        ck_assert_msg(n == mi->max_params, "%s: signature has %u params, max %u", mi->name, n, mi->max_params);
        ck_assert_uint_le(mi->min_params, mi->max_params);
        ck_assert_int_eq(sp_method_lookup(mi->name, strlen(mi->name)), id);
    }
    ck_assert_ptr_null(sp_method_info(SP_METHOD__COUNT));
    ck_assert_ptr_null(sp_method_info(-1));
    ck_assert_int_eq(sp_method_lookup("pin", 3), -1);
    ck_assert_int_eq(sp_method_lookup("pingx", 5), -1);
    /* ping is the only method allowed before hello; alert is admin-only. */
    ck_assert(!sp_method_info(SP_METHOD_PING)->needs_hello);
    ck_assert(sp_method_info(SP_METHOD_SPAWN)->needs_hello);
    ck_assert(sp_method_info(SP_METHOD_ALERT)->admin_only);
    ck_assert(!sp_method_info(SP_METHOD_MOVE)->admin_only);
    ck_assert_str_eq(sp_rpc_code_message(SP_RPCERR_METHOD_NOT_FOUND), "method not found");
    ck_assert_str_eq(sp_rpc_code_message(999), "unknown error");
}
END_TEST

/* ---------------------------------------------------------------- invalid shapes */

static void expect_invalid(const pbuf_t *b, bool has_msgid, uint32_t msgid, const char *reason_part) {
    sp_rpc_decoder_t d;
    sp_rpc_msg_t m;
    ck_assert_int_eq(decode_one(b->sb.data, b->sb.size, &d, &m), 1);
    ck_assert_int_eq(m.type, SP_RPC_INVALID);
    ck_assert_int_eq(m.rpc_code, SP_RPCERR_INVALID_REQUEST);
    ck_assert_int_eq(m.has_msgid, has_msgid);
    if (has_msgid) ck_assert_uint_eq(m.msgid, msgid);
    ck_assert_ptr_nonnull(strstr(m.reason, reason_part));
    /* The stream stays usable after an INVALID message. */
    pbuf_t ok;
    pb_init(&ok);
    pack_move(&ok, 1);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, ok.sb.data, ok.sb.size), 0);
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
    ck_assert_int_eq(m.type, SP_RPC_REQUEST);
    pb_free(&ok);
    sp_rpc_decoder_destroy(&d);
}

START_TEST(test_rpc_not_an_array_is_invalid_without_msgid) {
    pbuf_t b;
    pb_init(&b);
    msgpack_pack_map(&b.pk, 1);
    sp_rpc_pack_cstr(&b.pk, "method");
    sp_rpc_pack_cstr(&b.pk, "ping");
    expect_invalid(&b, false, 0, "array");
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_int(&b.pk, 42);
    expect_invalid(&b, false, 0, "array");
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_array(&b.pk, 0);
    expect_invalid(&b, false, 0, "empty");
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_wrong_arity_keeps_msgid_when_readable) {
    pbuf_t b;
    pb_init(&b);
    msgpack_pack_array(&b.pk, 3); /* request without params */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_int(&b.pk, 77);
    sp_rpc_pack_cstr(&b.pk, "ping");
    expect_invalid(&b, true, 77, "[0, msgid, method, params]");
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_array(&b.pk, 5); /* one element too many */
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_int(&b.pk, 78);
    sp_rpc_pack_cstr(&b.pk, "ping");
    msgpack_pack_array(&b.pk, 0);
    msgpack_pack_nil(&b.pk);
    expect_invalid(&b, true, 78, "request");
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_array(&b.pk, 4); /* notification with 4 elements */
    msgpack_pack_int(&b.pk, 2);
    sp_rpc_pack_cstr(&b.pk, "x");
    msgpack_pack_array(&b.pk, 0);
    msgpack_pack_nil(&b.pk);
    expect_invalid(&b, false, 0, "notification");
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_wrong_types_are_invalid) {
    pbuf_t b;
    pb_init(&b);
    /* msgid as a string */
    msgpack_pack_array(&b.pk, 4);
    msgpack_pack_int(&b.pk, 0);
    sp_rpc_pack_cstr(&b.pk, "12");
    sp_rpc_pack_cstr(&b.pk, "ping");
    msgpack_pack_array(&b.pk, 0);
    expect_invalid(&b, false, 0, "msgid");
    /* msgid negative / beyond uint32 */
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_array(&b.pk, 4);
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_uint64(&b.pk, 1ull << 32);
    sp_rpc_pack_cstr(&b.pk, "ping");
    msgpack_pack_array(&b.pk, 0);
    expect_invalid(&b, false, 0, "msgid");
    /* method as an int: the msgid is still recovered */
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_array(&b.pk, 4);
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_int(&b.pk, 5);
    msgpack_pack_int(&b.pk, 1);
    msgpack_pack_array(&b.pk, 0);
    expect_invalid(&b, true, 5, "method");
    /* params as a map */
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_array(&b.pk, 4);
    msgpack_pack_int(&b.pk, 0);
    msgpack_pack_int(&b.pk, 6);
    sp_rpc_pack_cstr(&b.pk, "ping");
    msgpack_pack_map(&b.pk, 0);
    expect_invalid(&b, true, 6, "params");
    /* message type 3, and type as a string */
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_array(&b.pk, 4);
    msgpack_pack_int(&b.pk, 3);
    msgpack_pack_int(&b.pk, 6);
    sp_rpc_pack_cstr(&b.pk, "ping");
    msgpack_pack_array(&b.pk, 0);
    expect_invalid(&b, false, 0, "type");
    msgpack_sbuffer_clear(&b.sb);
    msgpack_pack_array(&b.pk, 4);
    sp_rpc_pack_cstr(&b.pk, "0");
    msgpack_pack_int(&b.pk, 6);
    sp_rpc_pack_cstr(&b.pk, "ping");
    msgpack_pack_array(&b.pk, 0);
    expect_invalid(&b, false, 0, "type");
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_unknown_type_byte_c1_is_fatal_proto_error) {
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 0);
    const unsigned char bad[] = {0x94, 0x00, 0x01, 0xc1};
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, bad, sizeof bad), SP_EPROTO);
    sp_rpc_msg_t m;
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), SP_EPROTO);
    /* Sticky: later bytes are ignored. */
    const unsigned char ok[] = {0xc0};
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, ok, 1), SP_EPROTO);
    ck_assert_uint_eq(sp_rpc_decoder_buffered(&d), 0);
    sp_rpc_decoder_destroy(&d);
}
END_TEST

START_TEST(test_rpc_messages_before_a_bad_byte_are_still_delivered) {
    pbuf_t b;
    pb_init(&b);
    pack_move(&b, 1);
    pack_move(&b, 2);
    const char bad = (char)0xc1;
    msgpack_sbuffer_write(&b.sb, &bad, 1);
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, b.sb.data, b.sb.size), SP_EPROTO);
    sp_rpc_msg_t m;
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
    ck_assert_uint_eq(m.msgid, 1);
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
    ck_assert_uint_eq(m.msgid, 2);
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), SP_EPROTO);
    sp_rpc_decoder_destroy(&d);
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_nesting_deeper_than_limit_is_refused) {
    unsigned char buf[64];
    size_t n = 0;
    for (unsigned i = 0; i < SP_RPC_MAX_DEPTH; i++) buf[n++] = 0x91; /* [[[[...]]]] */
    buf[n++] = 0xc0;
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, buf, n), 0); /* exactly the limit: fine */
    sp_rpc_msg_t m;
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
    ck_assert_int_eq(m.type, SP_RPC_INVALID);
    n = 0;
    for (unsigned i = 0; i < SP_RPC_MAX_DEPTH + 1; i++) buf[n++] = 0x91;
    buf[n++] = 0xc0;
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, buf, n), SP_EPROTO);
    sp_rpc_decoder_destroy(&d);
}
END_TEST

/* ---------------------------------------------------------------- framer */

START_TEST(test_rpc_scan_empty_container_at_depth_17_refused_16_passes) {
    /* [[[...[]...]]]: the innermost EMPTY array is at level `depth`. Empty
     * containers count (the daemon's MAX_DEPTH rule, PROTOCOL.md). */
    unsigned char buf[32];
    for (unsigned depth = SP_RPC_MAX_DEPTH; depth <= SP_RPC_MAX_DEPTH + 1; depth++) {
        size_t n = 0;
        for (unsigned i = 1; i < depth; i++) buf[n++] = 0x91;
        buf[n++] = 0x90;
        sp_rpc_scan_t s;
        sp_rpc_scan_init(&s);
        size_t used = 99;
        int rc = sp_rpc_scan(&s, buf, n, 65536, &used);
        if (depth == SP_RPC_MAX_DEPTH) {
            ck_assert_int_eq(rc, 1);
            ck_assert_uint_eq(used, n);
            ck_assert(sp_rpc_scan_idle(&s));
        } else {
            ck_assert_int_eq(rc, SP_EPROTO);
            ck_assert_int_eq(s.fail, SP_RPC_SCAN_TOO_DEEP);
            ck_assert_uint_eq(used, n); /* decided on the innermost header */
            /* Sticky until init. */
            ck_assert_int_eq(sp_rpc_scan(&s, "\xc0", 1, 65536, &used), SP_EPROTO);
            sp_rpc_scan_init(&s);
            ck_assert_int_eq(sp_rpc_scan(&s, "\xc0", 1, 65536, &used), 1);
        }
    }
    /* A nested map key counts like an array: {{{...}: nil}: nil} 17 deep. */
    size_t n = 0;
    for (unsigned i = 0; i < SP_RPC_MAX_DEPTH + 1; i++) buf[n++] = 0x81;
    sp_rpc_scan_t s;
    sp_rpc_scan_init(&s);
    size_t used;
    ck_assert_int_eq(sp_rpc_scan(&s, buf, n, 65536, &used), SP_EPROTO);
    ck_assert_int_eq(s.fail, SP_RPC_SCAN_TOO_DEEP);
}
END_TEST

START_TEST(test_rpc_scan_reports_each_message_end_and_resumes_across_chunks) {
    pbuf_t b;
    pb_init(&b);
    pack_move(&b, 1);
    size_t one = b.sb.size;
    pack_move(&b, 2);
    ck_assert_uint_eq(b.sb.size, 2 * one);
    sp_rpc_scan_t s;
    sp_rpc_scan_init(&s);
    size_t used;
    /* Whole buffer: stops at the first end, leaves the rest unlooked-at. */
    ck_assert_int_eq(sp_rpc_scan(&s, b.sb.data, b.sb.size, 65536, &used), 1);
    ck_assert_uint_eq(used, one);
    ck_assert_int_eq(sp_rpc_scan(&s, b.sb.data + one, b.sb.size - one, 65536, &used), 1);
    ck_assert_uint_eq(used, one);
    /* Split at every byte inside the first message: 0 then 1 at the end. */
    for (size_t k = 1; k < one; k++) {
        sp_rpc_scan_init(&s);
        ck_assert_int_eq(sp_rpc_scan(&s, b.sb.data, k, 65536, &used), 0);
        ck_assert_uint_eq(used, k);
        ck_assert(!sp_rpc_scan_idle(&s));
        ck_assert_int_eq(sp_rpc_scan(&s, b.sb.data + k, b.sb.size - k, 65536, &used), 1);
        ck_assert_uint_eq(used, one - k);
    }
    /* Nothing fed: 0, idle. */
    sp_rpc_scan_init(&s);
    ck_assert_int_eq(sp_rpc_scan(&s, b.sb.data, 0, 65536, &used), 0);
    ck_assert(sp_rpc_scan_idle(&s));
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_scan_ext32_length_refused_before_its_type_byte) {
    /* [0, 1, "ping", [ext32 of 1 MiB + 1 ...: the type byte never comes. */
    const unsigned char h[] = {0x94, 0x00, 0x01, 0xa4, 'p', 'i', 'n', 'g', 0x91, 0xc9, 0x00, 0x10, 0x00, 0x01};
    sp_rpc_scan_t s;
    sp_rpc_scan_init(&s);
    size_t used;
    ck_assert_int_eq(sp_rpc_scan(&s, h, sizeof h, 65536, &used), SP_EMSGSIZE);
    ck_assert_int_eq(s.fail, SP_RPC_SCAN_TOO_LARGE);
    ck_assert_uint_eq(used, sizeof h);
    /* ext8 of 200 bytes under a limit of 100: refused on its length byte. */
    const unsigned char e8[] = {0xc7, 200};
    sp_rpc_scan_init(&s);
    ck_assert_int_eq(sp_rpc_scan(&s, e8, sizeof e8, 100, &used), SP_EMSGSIZE);
    /* ...and a small ext8 waits for its type byte. */
    const unsigned char e8ok[] = {0xc7, 3, 0x05, 'a', 'b', 'c'};
    sp_rpc_scan_init(&s);
    ck_assert_int_eq(sp_rpc_scan(&s, e8ok, 2, 100, &used), 0);
    ck_assert_int_eq(sp_rpc_scan(&s, e8ok + 2, sizeof e8ok - 2, 100, &used), 1);
    ck_assert_uint_eq(used, sizeof e8ok - 2);
    /* The decoder refuses it too. */
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, h, sizeof h), SP_EMSGSIZE);
    ck_assert_int_eq(d.scan.fail, SP_RPC_SCAN_TOO_LARGE);
    sp_rpc_decoder_destroy(&d);
}
END_TEST

START_TEST(test_rpc_scan_bad_byte_reason_and_offset) {
    const unsigned char junk[] = {0x94, 0x00, 0x01, 0xc1, 0x90};
    sp_rpc_scan_t s;
    sp_rpc_scan_init(&s);
    size_t used;
    ck_assert_int_eq(sp_rpc_scan(&s, junk, sizeof junk, 65536, &used), SP_EPROTO);
    ck_assert_int_eq(s.fail, SP_RPC_SCAN_BAD_BYTE);
    ck_assert_uint_eq(used, 3);
}
END_TEST

/* ---------------------------------------------------------------- limits */

/* Feed a header declaring a huge length: refused at once, nothing buffered,
 * no buffer allocated. */
static void expect_refused_header(const unsigned char *h, size_t n) {
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, h, n), SP_EMSGSIZE);
    ck_assert_uint_eq(sp_rpc_decoder_buffered(&d), 0);
    ck_assert_ptr_null(d.buf);
    ck_assert_uint_eq(d.cap, 0);
    sp_rpc_msg_t m;
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), SP_EMSGSIZE);
    sp_rpc_decoder_destroy(&d);
}

START_TEST(test_rpc_huge_declared_lengths_rejected_without_allocating) {
    const unsigned char str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff};
    const unsigned char bin32[] = {0xc6, 0xff, 0xff, 0xff, 0xff};
    const unsigned char ext32[] = {0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01};
    const unsigned char arr32[] = {0xdd, 0x80, 0x00, 0x00, 0x00}; /* 2^31 elements */
    const unsigned char map32[] = {0xdf, 0x40, 0x00, 0x00, 0x00}; /* 2^30 pairs */
    const unsigned char map16[] = {0xde, 0x80, 0x01};              /* 32769 pairs = 65538 elements */
    /* Nested: [0, 1, "m", str16 of 65535] inside the request shape. */
    const unsigned char nested[] = {0x94, 0x00, 0x01, 0xa1, 'm', 0xda, 0xff, 0xff};
    expect_refused_header(str32, sizeof str32);
    expect_refused_header(bin32, sizeof bin32);
    expect_refused_header(ext32, sizeof ext32);
    expect_refused_header(arr32, sizeof arr32);
    expect_refused_header(map32, sizeof map32);
    expect_refused_header(map16, sizeof map16);
    expect_refused_header(nested, sizeof nested);
}
END_TEST

START_TEST(test_rpc_huge_length_refused_when_header_arrives_byte_by_byte) {
    const unsigned char str32[] = {0x92, 0x01, 0xdb, 0x00, 0x01, 0x00, 0x00}; /* str of 65536 */
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 0);
    for (size_t i = 0; i + 1 < sizeof str32; i++) ck_assert_int_eq(sp_rpc_decoder_feed(&d, &str32[i], 1), 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, &str32[sizeof str32 - 1], 1), SP_EMSGSIZE);
    ck_assert_uint_eq(sp_rpc_decoder_buffered(&d), 0);
    sp_rpc_decoder_destroy(&d);
}
END_TEST

/* A message of exactly `size` bytes: [0, 1, "ping", [str of k]] padded. */
static void pack_sized(pbuf_t *b, size_t size) {
    /* header: 0x94 0x00 0x01 0xa4 "ping" 0x91 = 9 bytes; str16/str32 header */
    size_t hdr = 9;
    size_t body = size - hdr;
    size_t sh = body - 3 <= 0xffff ? 3 : 5;
    sp_rpc_pack_request_begin(&b->pk, 1, "ping", 1);
    ck_assert_uint_eq(b->sb.size, hdr);
    msgpack_pack_str(&b->pk, body - sh);
    char *z = calloc(1, body);
    msgpack_pack_str_body(&b->pk, z, body - sh);
    free(z);
    ck_assert_uint_eq(b->sb.size, size);
}

START_TEST(test_rpc_message_of_exactly_the_limit_passes_one_more_byte_fails) {
    pbuf_t b;
    pb_init(&b);
    pack_sized(&b, SP_RPC_DEFAULT_MAX_MESSAGE);
    sp_rpc_decoder_t d;
    sp_rpc_msg_t m;
    ck_assert_int_eq(decode_one(b.sb.data, b.sb.size, &d, &m), 1);
    ck_assert_int_eq(m.type, SP_RPC_REQUEST);
    ck_assert_uint_eq(m.wire_size, SP_RPC_DEFAULT_MAX_MESSAGE);
    sp_rpc_decoder_destroy(&d);
    msgpack_sbuffer_clear(&b.sb);
    pack_sized(&b, SP_RPC_DEFAULT_MAX_MESSAGE + 1);
    ck_assert_int_eq(decode_one(b.sb.data, b.sb.size, &d, &m), SP_EMSGSIZE);
    sp_rpc_decoder_destroy(&d);
    /* A client-side decoder takes it; absurd limits are refused. */
    ck_assert_int_eq(sp_rpc_decoder_init(&d, SP_RPC_CLIENT_MAX_MESSAGE), 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, b.sb.data, b.sb.size), 0);
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
    ck_assert_uint_eq(m.wire_size, SP_RPC_DEFAULT_MAX_MESSAGE + 1);
    sp_rpc_decoder_destroy(&d);
    ck_assert_int_eq(sp_rpc_decoder_init(&d, (size_t)UINT32_MAX + 1), SP_EINVAL);
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_running_size_refused_before_buffering_past_limit) {
    /* An array16 of 65535 nils is 65538 bytes: the header alone cannot say
     * (each element might be 1 byte, 65538 > 65536 is refused at once), so
     * use a custom small limit where the running count decides: array of 100
     * nested fixarrays of 1 nil with a limit of 150 bytes. */
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 150);
    const unsigned char h[] = {0xdc, 0x00, 100}; /* array16 of 100: owes >= 100 bytes */
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, h, sizeof h), 0);
    const unsigned char el[] = {0x91, 0xc0};
    size_t fed = 3;
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        rc = sp_rpc_decoder_feed(&d, el, sizeof el);
        if (rc == 0) fed += 2;
        ck_assert_uint_le(sp_rpc_decoder_buffered(&d), 150);
    }
    ck_assert_int_eq(rc, SP_EMSGSIZE);
    /* 3 + 2k elements bytes + (100 - k - 1) owed > 150 first at k = 48. */
    ck_assert_uint_le(fed, 150);
    ck_assert_uint_eq(sp_rpc_decoder_buffered(&d), 0);
    sp_rpc_decoder_destroy(&d);
}
END_TEST

/* ---------------------------------------------------------------- streaming */

/* A stream of varied messages; returns the count. */
static int build_stream(pbuf_t *b) {
    int n = 0;
    for (uint32_t i = 0; i < 12; i++) {
        switch (i % 4) {
        case 0: pack_move(b, i); break;
        case 1:
            sp_rpc_pack_response_ok_begin(&b->pk, i);
            msgpack_pack_map(&b->pk, 2);
            sp_rpc_pack_cstr(&b->pk, "tick");
            msgpack_pack_uint64(&b->pk, 1ull << 40);
            sp_rpc_pack_cstr(&b->pk, "server_time_ns");
            msgpack_pack_int64(&b->pk, -5);
            break;
        case 2:
            sp_rpc_pack_notify_begin(&b->pk, "snapshot", 2);
            msgpack_pack_bin(&b->pk, 300);
            {
                char z[300];
                memset(z, (int)i, sizeof z);
                msgpack_pack_bin_body(&b->pk, z, sizeof z);
            }
            msgpack_pack_ext(&b->pk, 20, 5);
            msgpack_pack_ext_body(&b->pk, "01234567890123456789", 20);
            break;
        default:
            sp_rpc_pack_response_error(&b->pk, i, SP_RPCERR_COOLDOWN, NULL);
            break;
        }
        n++;
    }
    return n;
}

/* Take every message, checking msgids and types; returns how many. */
static int drain(sp_rpc_decoder_t *d, uint32_t *next_id) {
    sp_rpc_msg_t m;
    int got = 0, rc;
    while ((rc = sp_rpc_decoder_next(d, &m)) == 1) {
        uint32_t i = *next_id;
        static const sp_rpc_type_t types[4] = {SP_RPC_REQUEST, SP_RPC_RESPONSE, SP_RPC_NOTIFY, SP_RPC_RESPONSE};
        ck_assert_int_eq(m.type, types[i % 4]);
        if (m.type != SP_RPC_NOTIFY) ck_assert_uint_eq(m.msgid, i);
        if (i % 4 == 2) {
            ck_assert_int_eq(m.params->via.array.ptr[0].type, MSGPACK_OBJECT_BIN);
            ck_assert_int_eq(m.params->via.array.ptr[0].via.bin.ptr[299], (char)i);
            ck_assert_int_eq(m.params->via.array.ptr[1].type, MSGPACK_OBJECT_EXT);
        }
        (*next_id)++;
        got++;
    }
    ck_assert_int_eq(rc, 0);
    return got;
}

START_TEST(test_rpc_stream_split_at_every_byte_boundary) {
    pbuf_t b;
    pb_init(&b);
    int n = build_stream(&b);
    for (size_t k = 0; k <= b.sb.size; k++) {
        sp_rpc_decoder_t d;
        sp_rpc_decoder_init(&d, 0);
        uint32_t id = 0;
        int got = 0;
        ck_assert_int_eq(sp_rpc_decoder_feed(&d, b.sb.data, k), 0);
        got += drain(&d, &id);
        ck_assert_int_eq(sp_rpc_decoder_feed(&d, b.sb.data + k, b.sb.size - k), 0);
        got += drain(&d, &id);
        ck_assert_int_eq(got, n);
        ck_assert_uint_eq(sp_rpc_decoder_buffered(&d), 0);
        sp_rpc_decoder_destroy(&d);
    }
    pb_free(&b);
}
END_TEST

/* One message of each stream, as next() and next_lazy() return it. */
static void expect_same(sp_rpc_decoder_t *dl, const sp_rpc_msg_t *a, sp_rpc_msg_t *b) {
    ck_assert_int_eq(b->type, a->type);
    ck_assert_uint_eq(b->wire_size, a->wire_size);
    ck_assert_mem_eq(b->wire, a->wire, a->wire_size);
    ck_assert_uint_eq(b->has_msgid, a->has_msgid);
    if (a->has_msgid) ck_assert_uint_eq(b->msgid, a->msgid);
    if (a->method) {
        ck_assert_uint_eq(b->method_len, a->method_len);
        ck_assert_mem_eq(b->method, a->method, a->method_len);
        ck_assert_int_eq(b->method_id, a->method_id);
    }
    if (!b->lazy) {
        ck_assert(msgpack_object_equal(*b->root, *a->root));
        return;
    }
    /* lazy: the params bytes are exactly the params object, and unpack()
     * turns the message into what next() returned */
    ck_assert_int_eq(a->type, SP_RPC_NOTIFY);
    ck_assert_ptr_null(b->params);
    ck_assert_uint_eq(sp_rpc_object_size(b->params_bytes, b->params_len), b->params_len);
    ck_assert_ptr_eq(b->params_bytes + b->params_len, (const unsigned char *)b->wire + b->wire_size);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, (const char *)b->params_bytes, b->params_len, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    ck_assert(msgpack_object_equal(u.data, *a->params));
    msgpack_unpacked_destroy(&u);
    ck_assert_int_eq(sp_rpc_decoder_unpack(dl, b), 0);
    ck_assert(!b->lazy);
    ck_assert(msgpack_object_equal(*b->params, *a->params));
    ck_assert(msgpack_object_equal(*b->root, *a->root));
    ck_assert_uint_eq(b->wire_size, a->wire_size);
}

START_TEST(test_rpc_lazy_decoder_matches_next_at_every_split) {
    pbuf_t b;
    pb_init(&b);
    int n = build_stream(&b);
    /* notifications in unusual forms (array16 envelope, str16 method) come
     * unpacked; an empty-params one and a str8 method come lazily */
    static const unsigned char odd[] = {0xdc, 0x00, 0x03, 0x02, 0xa1, 'x', 0x90,
                                        0x93, 0x02, 0xda, 0x00, 0x01, 'y', 0x91, 0x07,
                                        0x93, 0x02, 0xa4, 'p', 'i', 'n', 'g', 0x90,
                                        0x93, 0x02, 0xd9, 0x01, 'z', 0xdc, 0x00, 0x01, 0xc0};
    msgpack_sbuffer_write(&b.sb, (const char *)odd, sizeof odd);
    n += 4;
    int lazies = 0;
    for (size_t k = 0; k <= b.sb.size; k++) {
        sp_rpc_decoder_t da, dl;
        sp_rpc_decoder_init(&da, 0);
        sp_rpc_decoder_init(&dl, 0);
        int got = 0;
        for (int part = 0; part < 2; part++) {
            const char *p = part ? b.sb.data + k : b.sb.data;
            size_t len = part ? b.sb.size - k : k;
            ck_assert_int_eq(sp_rpc_decoder_feed(&da, p, len), 0);
            ck_assert_int_eq(sp_rpc_decoder_feed(&dl, p, len), 0);
            sp_rpc_msg_t ma, ml;
            int ra;
            while ((ra = sp_rpc_decoder_next(&da, &ma)) == 1) {
                ck_assert_int_eq(sp_rpc_decoder_next_lazy(&dl, &ml), 1);
                lazies += ml.lazy;
                expect_same(&dl, &ma, &ml);
                got++;
            }
            ck_assert_int_eq(ra, 0);
            ck_assert_int_eq(sp_rpc_decoder_next_lazy(&dl, &ml), 0);
        }
        ck_assert_int_eq(got, n);
        sp_rpc_decoder_destroy(&da);
        sp_rpc_decoder_destroy(&dl);
    }
    /* build_stream's 3 snapshot notifications and 2 of the odd ones, per split */
    ck_assert_int_eq(lazies, 5 * (int)(b.sb.size + 1));
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_object_size_is_the_packed_size_and_refuses_bad_bytes) {
    pbuf_t b;
    pb_init(&b);
    int n = build_stream(&b);
    size_t off = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (int i = 0; i < n; i++) {
        size_t start = off;
        ck_assert_int_eq(msgpack_unpack_next(&u, b.sb.data, b.sb.size, &off), MSGPACK_UNPACK_SUCCESS);
        size_t sz = off - start;
        ck_assert_uint_eq(sp_rpc_object_size(b.sb.data + start, b.sb.size - start), sz);
        for (size_t cut = 0; cut < sz; cut++) /* every truncation */
            ck_assert_uint_eq(sp_rpc_object_size(b.sb.data + start, cut), 0);
    }
    msgpack_unpacked_destroy(&u);
    pb_free(&b);
    static const unsigned char c1[] = {0x92, 0x01, 0xc1};
    ck_assert_uint_eq(sp_rpc_object_size(c1, sizeof c1), 0);
    /* containers nested SP_RPC_MAX_DEPTH deep pass, one more is refused;
     * scalars inside the deepest one do not count */
    unsigned char deep[SP_RPC_MAX_DEPTH + 2];
    for (unsigned d = 0; d < SP_RPC_MAX_DEPTH; d++) deep[d] = 0x91;
    deep[SP_RPC_MAX_DEPTH] = 0x05;
    ck_assert_uint_eq(sp_rpc_object_size(deep, SP_RPC_MAX_DEPTH + 1), SP_RPC_MAX_DEPTH + 1);
    deep[SP_RPC_MAX_DEPTH] = 0x91;
    deep[SP_RPC_MAX_DEPTH + 1] = 0x05;
    ck_assert_uint_eq(sp_rpc_object_size(deep, SP_RPC_MAX_DEPTH + 2), 0);
    /* an array32 declaring more elements than there are bytes */
    static const unsigned char big[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    ck_assert_uint_eq(sp_rpc_object_size(big, sizeof big), 0);
}
END_TEST

START_TEST(test_rpc_stream_fed_byte_by_byte_yields_each_message_on_its_last_byte) {
    pbuf_t b;
    pb_init(&b);
    int n = build_stream(&b);
    /* Expected ends: decode the stream whole with msgpack to find boundaries. */
    size_t ends[64], ne = 0, off = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    while (msgpack_unpack_next(&u, b.sb.data, b.sb.size, &off) == MSGPACK_UNPACK_SUCCESS) ends[ne++] = off;
    msgpack_unpacked_destroy(&u);
    ck_assert_int_eq((int)ne, n);
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 0);
    uint32_t id = 0;
    size_t e = 0;
    for (size_t i = 0; i < b.sb.size; i++) {
        ck_assert_int_eq(sp_rpc_decoder_feed(&d, b.sb.data + i, 1), 0);
        int got = drain(&d, &id);
        if (e < ne && i + 1 == ends[e]) {
            ck_assert_int_eq(got, 1);
            e++;
        } else {
            ck_assert_int_eq(got, 0);
        }
    }
    ck_assert_uint_eq(e, ne);
    sp_rpc_decoder_destroy(&d);
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_truncated_message_never_yields) {
    pbuf_t b;
    pb_init(&b);
    pack_move(&b, 3);
    for (size_t k = 0; k < b.sb.size; k++) {
        sp_rpc_decoder_t d;
        sp_rpc_msg_t m;
        sp_rpc_decoder_init(&d, 0);
        for (size_t i = 0; i < k; i++) ck_assert_int_eq(sp_rpc_decoder_feed(&d, b.sb.data + i, 1), 0);
        ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 0);
        ck_assert_uint_eq(sp_rpc_decoder_buffered(&d), k);
        sp_rpc_decoder_destroy(&d);
    }
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_idle_decoder_gives_big_buffer_back) {
    pbuf_t b;
    pb_init(&b);
    pack_sized(&b, 60000);
    sp_rpc_decoder_t d;
    sp_rpc_msg_t m;
    ck_assert_int_eq(decode_one(b.sb.data, b.sb.size, &d, &m), 1);
    ck_assert_uint_ge(d.cap, 60000);
    const unsigned char ping[] = {0x94, 0x00, 0x02, 0xa4, 'p', 'i', 'n', 'g', 0x90};
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, ping, sizeof ping), 0);
    ck_assert_uint_le(d.cap, 4096);
    ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
    ck_assert_uint_eq(m.msgid, 2);
    sp_rpc_decoder_destroy(&d);
    pb_free(&b);
}
END_TEST

/* ---------------------------------------------------------------- params */

START_TEST(test_rpc_float_params_accept_ints_and_reject_others) {
    pbuf_t b;
    pb_init(&b);
    msgpack_pack_array(&b.pk, 7);
    msgpack_pack_int(&b.pk, 3);
    msgpack_pack_int(&b.pk, -4);
    msgpack_pack_float(&b.pk, 0.5f);
    msgpack_pack_double(&b.pk, -1.25);
    sp_rpc_pack_cstr(&b.pk, "1.0");
    msgpack_pack_double(&b.pk, NAN);
    msgpack_pack_nil(&b.pk);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, b.sb.data, b.sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *p = &u.data;
    double v = 99;
    sp_rpc_error_t err;
    ck_assert_int_eq(sp_rpc_param_float(p, 0, &v, &err), 0);
    ck_assert(v == 3.0);
    ck_assert_int_eq(sp_rpc_param_float(p, 1, &v, &err), 0);
    ck_assert(v == -4.0);
    ck_assert_int_eq(sp_rpc_param_float(p, 2, &v, &err), 0);
    ck_assert(v == 0.5);
    ck_assert_int_eq(sp_rpc_param_float(p, 3, &v, &err), 0);
    ck_assert(v == -1.25);
    ck_assert_int_eq(sp_rpc_param_float(p, 4, &v, &err), SP_EINVAL);
    ck_assert(v == -1.25); /* untouched on failure */
    ck_assert_int_eq(err.code, SP_RPCERR_INVALID_PARAMS);
    ck_assert_str_eq(err.message, "param 4: expected number, got str");
    ck_assert_int_eq(sp_rpc_param_float(p, 5, &v, &err), SP_EINVAL);
    ck_assert_str_eq(err.message, "param 5: number must be finite");
    ck_assert_int_eq(sp_rpc_param_float(p, 9, &v, &err), SP_EINVAL);
    ck_assert_str_eq(err.message, "param 9: missing (expected number)");
    ck_assert(sp_rpc_param_is_nil(p, 6));
    ck_assert(sp_rpc_param_is_nil(p, 7));
    ck_assert(!sp_rpc_param_is_nil(p, 0));
    /* ints: floats are not ints */
    int64_t i64 = 0;
    ck_assert_int_eq(sp_rpc_param_int(p, 1, &i64, &err), 0);
    ck_assert_int_eq(i64, -4);
    ck_assert_int_eq(sp_rpc_param_int(p, 2, &i64, &err), SP_EINVAL);
    ck_assert_str_eq(err.message, "param 2: expected int, got float");
    uint64_t u64 = 0;
    ck_assert_int_eq(sp_rpc_param_uint(p, 1, &u64, &err), SP_EINVAL);
    ck_assert_str_eq(err.message, "param 1: expected unsigned int, got int");
    bool bo;
    ck_assert_int_eq(sp_rpc_param_bool(p, 6, &bo, NULL), SP_EINVAL); /* err may be NULL */
    msgpack_unpacked_destroy(&u);
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_check_params_names_index_and_expected_type) {
    struct { const char *method; int nparams; int code; const char *msg; } cases[] = {
        {"move", 1, SP_RPCERR_INVALID_PARAMS, "move: expected 2 params, got 1"},
        {"hello", 4, SP_RPCERR_INVALID_PARAMS, "hello: expected 1 to 3 params, got 4"},
        {"warp\n\xff", 0, SP_RPCERR_METHOD_NOT_FOUND, "method not found: warp??"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pbuf_t b;
        pb_init(&b);
        sp_rpc_pack_request_begin(&b.pk, 1, cases[c].method, (uint32_t)cases[c].nparams);
        for (int i = 0; i < cases[c].nparams; i++) sp_rpc_pack_cstr(&b.pk, "a");
        sp_rpc_decoder_t d;
        sp_rpc_msg_t m;
        ck_assert_int_eq(decode_one(b.sb.data, b.sb.size, &d, &m), 1);
        sp_rpc_error_t err;
        ck_assert_int_eq(sp_rpc_check_params(&m, &err), SP_EINVAL);
        ck_assert_int_eq(err.code, cases[c].code);
        ck_assert_str_eq(err.message, cases[c].msg);
        sp_rpc_decoder_destroy(&d);
        pb_free(&b);
    }
    /* Types: move [ "7", [1, 2] ] then move [7, [1, "x", 3]] then hello [1] then hello ["n", 5]. */
    pbuf_t b;
    pb_init(&b);
    sp_rpc_pack_request_begin(&b.pk, 1, "move", 2);
    sp_rpc_pack_cstr(&b.pk, "7");
    msgpack_pack_array(&b.pk, 2);
    msgpack_pack_int(&b.pk, 1);
    msgpack_pack_int(&b.pk, 2);
    sp_rpc_pack_request_begin(&b.pk, 2, "move", 2);
    msgpack_pack_int(&b.pk, 7);
    msgpack_pack_array(&b.pk, 2);
    msgpack_pack_int(&b.pk, 1);
    msgpack_pack_int(&b.pk, 2);
    sp_rpc_pack_request_begin(&b.pk, 3, "move", 2);
    msgpack_pack_int(&b.pk, 7);
    msgpack_pack_array(&b.pk, 3);
    msgpack_pack_int(&b.pk, 1);
    sp_rpc_pack_cstr(&b.pk, "x");
    msgpack_pack_int(&b.pk, 3);
    sp_rpc_pack_request_begin(&b.pk, 4, "hello", 1);
    msgpack_pack_int(&b.pk, 1);
    sp_rpc_pack_request_begin(&b.pk, 5, "hello", 2);
    sp_rpc_pack_cstr(&b.pk, "n");
    msgpack_pack_int(&b.pk, 5);
    sp_rpc_pack_request_begin(&b.pk, 6, "hello", 2);
    sp_rpc_pack_cstr(&b.pk, "n");
    msgpack_pack_nil(&b.pk);
    const char *want[] = {
        "param 0: expected unsigned int, got str",
        "param 1: expected vec3 [x, y, z] of numbers, got array of 2",
        "param 1: expected vec3 [x, y, z] of numbers, element 1 is str",
        "param 0: expected str, got int",
        "param 1: expected str or nil, got int",
        NULL, /* token nil: fine */
    };
    sp_rpc_decoder_t d;
    sp_rpc_decoder_init(&d, 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(&d, b.sb.data, b.sb.size), 0);
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        sp_rpc_msg_t m;
        ck_assert_int_eq(sp_rpc_decoder_next(&d, &m), 1);
        ck_assert_uint_eq(m.msgid, k + 1);
        sp_rpc_error_t err = {0, ""};
        if (want[k] == NULL) {
            ck_assert_int_eq(sp_rpc_check_params(&m, &err), 0);
            continue;
        }
        ck_assert_int_eq(sp_rpc_check_params(&m, &err), SP_EINVAL);
        ck_assert_int_eq(err.code, SP_RPCERR_INVALID_PARAMS);
        ck_assert_str_eq(err.message, want[k]);
    }
    sp_rpc_decoder_destroy(&d);
    pb_free(&b);
}
END_TEST

START_TEST(test_rpc_error_map_is_well_formed_msgpack) {
    pbuf_t b;
    pb_init(&b);
    ck_assert_int_eq(sp_rpc_pack_response_error(&b.pk, 123, SP_RPCERR_RATE_LIMITED, NULL), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    ck_assert_int_eq(msgpack_unpack_next(&u, b.sb.data, b.sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, b.sb.size);
    const msgpack_object *a = u.data.via.array.ptr;
    ck_assert_int_eq(u.data.via.array.size, 4);
    ck_assert_uint_eq(a[0].via.u64, 1);
    ck_assert_uint_eq(a[1].via.u64, 123);
    ck_assert_int_eq(a[3].type, MSGPACK_OBJECT_NIL);
    ck_assert_int_eq(a[2].type, MSGPACK_OBJECT_MAP);
    ck_assert_int_eq(a[2].via.map.size, 2);
    const msgpack_object *c = sp_rpc_map_get(&a[2], "code");
    const msgpack_object *msg = sp_rpc_map_get(&a[2], "message");
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(msg);
    ck_assert_int_eq(c->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    ck_assert_uint_eq(c->via.u64, 10);
    ck_assert_int_eq(msg->type, MSGPACK_OBJECT_STR);
    ck_assert_int_eq((int)msg->via.str.size, (int)strlen("rate limited"));
    ck_assert(memcmp(msg->via.str.ptr, "rate limited", msg->via.str.size) == 0);
    ck_assert_ptr_null(sp_rpc_map_get(&a[2], "codex"));
    int64_t code;
    const char *s;
    size_t sl;
    ck_assert_int_eq(sp_rpc_parse_error(&a[3], &code, &s, &sl), SP_EPROTO); /* nil is no error map */
    msgpack_unpacked_destroy(&u);
    pb_free(&b);
}
END_TEST

/* ---------------------------------------------------------------- spec drift */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

static void expect_in_doc(const char *doc, const char *what) {
    ck_assert_msg(strstr(doc, what) != NULL, "proto/PROTOCOL.md does not mention %s", what);
}

START_TEST(test_rpc_protocol_md_documents_every_def_entry) {
    char *doc = slurp(SP_PROTOCOL_MD);
    ck_assert_msg(doc != NULL, "cannot read %s", SP_PROTOCOL_MD);
    char buf[256];
    /* Each method has its own section "### `name`" and its signature line. */
#define X(id, lc, name, mn, mx, hello, admin, sig) \
    snprintf(buf, sizeof buf, "### `%s`", name); \
    expect_in_doc(doc, buf);
    SP_PROTO_METHOD_MAP(X)
#undef X
    /* Each error code appears as a table row "| code | `NAME` |". */
#define X(id, code, msg) \
    snprintf(buf, sizeof buf, "| %d | `%s` |", code, #id); \
    expect_in_doc(doc, buf);
    SP_PROTO_ERROR_MAP(X)
#undef X
#define X(id, name) \
    snprintf(buf, sizeof buf, "`%s`", name); \
    expect_in_doc(doc, buf);
    SP_PROTO_NOTIFY_MAP(X)
    SP_PROTO_EVENT_MAP(X)
#undef X
#define X(id, value, name) \
    snprintf(buf, sizeof buf, "| %d | `%s` |", value, name); \
    expect_in_doc(doc, buf);
    SP_ENTITY_KIND_MAP(X)
    SP_RESOURCE_MAP(X)
#undef X
#define X(id, bit, nv, coding, name) \
    snprintf(buf, sizeof buf, "| %d | `%s` | %d | %s |", bit, name, nv, #coding); \
    expect_in_doc(doc, buf);
    SP_SNAP_FIELD_MAP(X)
#undef X
#define X(id, steps, meaning) \
    snprintf(buf, sizeof buf, "| `%s` | %d |", #id, steps); \
    expect_in_doc(doc, buf);
    SP_PROTO_QUANT_MAP(X)
#undef X
#define X(id, value, what) \
    snprintf(buf, sizeof buf, "| `%s` | %d |", #id, value); \
    expect_in_doc(doc, buf);
    SP_PROTO_LIMIT_MAP(X)
#undef X
    snprintf(buf, sizeof buf, "protocol version %d", SP_PROTO_VERSION);
    expect_in_doc(doc, buf);
    free(doc);
}
END_TEST

/* The text of a section: from `heading` (at a line start) up to the next
 * heading of the same or a higher level. Malloc'd; NULL when absent. */
static char *doc_section(const char *doc, const char *heading) {
    size_t hl = strlen(heading);
    const char *p = doc;
    while ((p = strstr(p, heading)) != NULL && !((p == doc || p[-1] == '\n') && (p[hl] == '\n')))
        p += hl;
    if (p == NULL) return NULL;
    size_t level = strspn(heading, "#");
    const char *end = p + hl;
    while ((end = strchr(end, '\n')) != NULL) {
        end++;
        size_t l = strspn(end, "#");
        if (l > 0 && l <= level && end[l] == ' ') break;
    }
    size_t n = end ? (size_t)(end - p) : strlen(p);
    char *out = malloc(n + 1);
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

/* The table row of `sec` that starts with `prefix` (malloc'd line), or NULL. */
static char *doc_row(const char *sec, const char *prefix) {
    size_t pl = strlen(prefix);
    for (const char *l = sec; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, prefix, pl) == 0) {
            const char *e = strchr(l, '\n');
            size_t n = e ? (size_t)(e - l) : strlen(l);
            char *out = malloc(n + 1);
            memcpy(out, l, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}

/* Every table row "| `name` |" (or "| n | `NAME` |" when numbered) of a
 * section must name an entry of `known` (NULL-terminated): the doc does not
 * describe things the .def lacks. */
static void expect_rows_known(const char *sec, const char *what, bool numbered, const char *const *known) {
    for (const char *l = sec; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *q = l;
        if (strncmp(q, "| ", 2) != 0) continue;
        q += 2;
        if (numbered) {
            if (*q < '0' || *q > '9') continue;
            q += strspn(q, "0123456789");
            if (strncmp(q, " | ", 3) != 0) continue;
            q += 3;
        }
        if (*q != '`') continue;
        q++;
        size_t n = strcspn(q, "`");
        bool found = false;
        for (const char *const *k = known; *k && !found; k++) found = strlen(*k) == n && memcmp(*k, q, n) == 0;
        ck_assert_msg(found, "proto/PROTOCOL.md documents %s `%.*s`, which spacesim_proto.def does not list", what,
                      (int)n, q);
    }
}

START_TEST(test_rpc_protocol_md_tables_match_def_both_ways) {
    char *doc = slurp(SP_PROTOCOL_MD);
    ck_assert_msg(doc != NULL, "cannot read %s", SP_PROTOCOL_MD);
    char buf[256];

    /* Error codes: a row "| code | `NAME` | meaning |" in ## Errors, and no other rows. */
    char *sec = doc_section(doc, "## Errors");
    ck_assert_msg(sec != NULL, "no ## Errors section");
    static const char *const err_names[] = {
#define X(id, code, msg) #id,
        SP_PROTO_ERROR_MAP(X)
#undef X
        NULL};
#define X(id, code, msg)                                                                     \
    snprintf(buf, sizeof buf, "| %d | `%s` | ", code, #id);                                  \
    ck_assert_msg(strstr(sec, buf) != NULL, "## Errors has no row for %d %s", code, #id);
    SP_PROTO_ERROR_MAP(X)
#undef X
    expect_rows_known(sec, "error code", true, err_names);
    free(sec);

    /* Notifications: a row "| `name` | params | when |" in ## Server notifications. */
    sec = doc_section(doc, "## Server notifications");
    ck_assert_msg(sec != NULL, "no ## Server notifications section");
    static const char *const notes[] = {
#define X(id, name) name,
        SP_PROTO_NOTIFY_MAP(X)
#undef X
        NULL};
#define X(id, name)                                                                               \
    snprintf(buf, sizeof buf, "| `%s` | `[", name);                                               \
    ck_assert_msg(strstr(sec, buf) != NULL, "## Server notifications has no row for `%s`", name);
    SP_PROTO_NOTIFY_MAP(X)
#undef X
    expect_rows_known(sec, "notification", false, notes);
    free(sec);

    /* Events: a row per type in ## Events, naming each of its .def fields as
     * `"key": type`, and the causes of ShipDestroyed. */
    sec = doc_section(doc, "## Events");
    ck_assert_msg(sec != NULL, "no ## Events section");
    static const char *const events[] = {
#define X(id, name) name,
        SP_PROTO_EVENT_MAP(X)
#undef X
        NULL};
    enum {
#define X(id, name) SP_EVENT_##id,
        SP_PROTO_EVENT_MAP(X)
#undef X
    };
    static const char *const ev_name_of[] = {
#define X(id, name) [SP_EVENT_##id] = name,
        SP_PROTO_EVENT_MAP(X)
#undef X
    };
#define X(ev, key, type)                                                                               \
    {                                                                                                  \
        snprintf(buf, sizeof buf, "| `%s` |", ev_name_of[SP_EVENT_##ev]);                              \
        char *row = doc_row(sec, buf);                                                                 \
        ck_assert_msg(row != NULL, "## Events has no row for %s", ev_name_of[SP_EVENT_##ev]);          \
        snprintf(buf, sizeof buf, "`\"%s\": %s", key, type);                                           \
        ck_assert_msg(strstr(row, buf) != NULL, "## Events: the %s row lacks %s", ev_name_of[SP_EVENT_##ev], buf); \
        free(row);                                                                                     \
    }
    SP_PROTO_EVENT_FIELD_MAP(X)
#undef X
#define X(id, name)                                                                   \
    snprintf(buf, sizeof buf, "| `%s` |", name);                                      \
    ck_assert_msg(strstr(sec, buf) != NULL, "## Events has no row for %s", name);
    SP_PROTO_EVENT_MAP(X)
#undef X
#define X(id, name)                                                                    \
    snprintf(buf, sizeof buf, "`\"%s\"`", name);                                       \
    ck_assert_msg(strstr(sec, buf) != NULL, "## Events does not list the cause %s", buf);
    SP_PROTO_DESTROY_CAUSE_MAP(X)
#undef X
    ck_assert_msg(strstr(sec, "`\"type\": str`") != NULL && strstr(sec, "`\"tick\": uint`") != NULL,
                  "## Events does not describe the common keys type and tick");
    expect_rows_known(sec, "event type", false, events);
    free(sec);

    /* stats: a row "| `key` | type |" per .def key in the stats section. */
    sec = doc_section(doc, "### `stats`");
    ck_assert_msg(sec != NULL, "no ### `stats` section");
    static const char *const stats[] = {
#define X(id, key, type, what) key,
        SP_PROTO_STATS_MAP(X)
#undef X
        NULL};
#define X(id, key, type, what)                                                                   \
    snprintf(buf, sizeof buf, "| `%s` | %s |", key, type);                                       \
    ck_assert_msg(strstr(sec, buf) != NULL, "### `stats` has no row \"%s\"", buf);
    SP_PROTO_STATS_MAP(X)
#undef X
    expect_rows_known(sec, "stats key", false, stats);
    free(sec);
    free(doc);
}
END_TEST

/* ---------------------------------------------------------------- results */

/* The documented type of a result field type of the .def. */
#define DOC_T_UINT "uint"
#define DOC_T_INT "int"
#define DOC_T_FLOAT "float"
#define DOC_T_BOOL "bool"
#define DOC_T_STR "str"
#define DOC_T_VEC3 "vec3"
#define DOC_T_UINT_OR_NIL "uint or nil"
#define DOC_T_CARGO "map"
#define DOC_T_OPT_STR "str, optional"
#define DOC_T_OPT_FLOAT "float, optional"
#define DOC_T_STATS "stats"
#define DOC_T_CLIENTS "array of clients"

/* Each method's section documents its result: `true`, or one table row
 * "| `key` | type |" per .def field (types included), and no row for a key
 * the .def lacks (stats keys: their own table, checked above). */
START_TEST(test_rpc_protocol_md_documents_every_result_field_and_type) {
    char *doc = slurp(SP_PROTOCOL_MD);
    ck_assert_msg(doc != NULL, "cannot read %s", SP_PROTOCOL_MD);
    char buf[256];
#define FIELD_ROW(f, key, type)                                                                           \
    if (strcmp(DOC_T_##type, "stats") != 0) {                                                             \
        snprintf(buf, sizeof buf, "| `%s` | %s |", key, DOC_T_##type);                                    \
        ck_assert_msg(strstr(sec, buf) != NULL, "%s documents no result row \"%s\"", head, buf);          \
        nrows++;                                                                                          \
    }
#define FIELD_KEY(f, key, type) key,
#define X(id, lc, name, mn, mx, hello, admin, sig)                                                        \
    {                                                                                                     \
        char head[64];                                                                                    \
        snprintf(head, sizeof head, "### `%s`", name);                                                    \
        char *sec = doc_section(doc, head);                                                               \
        ck_assert_msg(sec != NULL, "no %s section", head);                                                \
        int nrows = 0, nfields = 0 SP_PROTO_RESULT_##id(RES_ONE);                                         \
        SP_PROTO_RESULT_##id(FIELD_ROW) if (nfields == 0) ck_assert_msg(strstr(sec, "- result: `true`") != NULL, \
                                                                        "%s: result `true` not documented", head); \
        static const char *const keys_##lc[] = {SP_PROTO_RESULT_##id(FIELD_KEY) NULL};                    \
        if (nrows > 0) expect_rows_known(sec, "result key of " name, false, keys_##lc);                   \
        free(sec);                                                                                        \
    }
#define RES_ONE(f, key, type) +1
    SP_PROTO_METHOD_MAP(X)
#undef X
#undef FIELD_ROW
#undef FIELD_KEY
    /* The client map of `clients`: a row per SP_PROTO_CLIENT_INFO_MAP key. */
    {
        char *sec = doc_section(doc, "### The client map");
        ck_assert_msg(sec != NULL, "no ### The client map section");
        static const char *const ckeys[] = {
#define CK(f, key, type) key,
            SP_PROTO_CLIENT_INFO_MAP(CK)
#undef CK
            NULL};
#define CR(f, key, type)                                                                              \
    snprintf(buf, sizeof buf, "| `%s` | %s |", key, DOC_T_##type);                                    \
    ck_assert_msg(strstr(sec, buf) != NULL, "### The client map has no row \"%s\"", buf);
        SP_PROTO_CLIENT_INFO_MAP(CR)
#undef CR
        expect_rows_known(sec, "client key", false, ckeys);
        free(sec);
    }
    free(doc);
}
END_TEST

/* The generated packers: [1, msgid, nil, result] with the .def's keys, in
 * its order, each value of its declared msgpack type. */
static bool type_ok(const char *t, const msgpack_object *v, bool nil_ok) {
    if (strcmp(t, "uint") == 0) return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (strcmp(t, "int") == 0) return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER || v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
    if (strcmp(t, "float") == 0 || strcmp(t, "float, optional") == 0) return v->type == MSGPACK_OBJECT_FLOAT64;
    if (strcmp(t, "bool") == 0) return v->type == MSGPACK_OBJECT_BOOLEAN;
    if (strcmp(t, "str") == 0 || strcmp(t, "str, optional") == 0) return v->type == MSGPACK_OBJECT_STR;
    if (strcmp(t, "vec3") == 0) return v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 3;
    if (strcmp(t, "uint or nil") == 0)
        return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER || (nil_ok && v->type == MSGPACK_OBJECT_NIL);
    if (strcmp(t, "map") == 0) return v->type == MSGPACK_OBJECT_MAP && v->via.map.size == SP_RESOURCE_COUNT;
    if (strcmp(t, "array of clients") == 0) return v->type == MSGPACK_OBJECT_ARRAY;
    return false;
}

/* [1, 77, nil, result]: `true` when keys is empty, else a map with exactly
 * keys (in order; the STATS field stands for every stats key), each value
 * of its type. */
static void check_result(const pbuf_t *b, const char *method, const char *const *keys, const char *const *types) {
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    ck_assert_int_eq(msgpack_unpack_next(&up, b->sb.data, b->sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, b->sb.size);
    const msgpack_object *o = &up.data;
    ck_assert_int_eq(o->type, MSGPACK_OBJECT_ARRAY);
    ck_assert_uint_eq(o->via.array.size, 4);
    ck_assert_uint_eq(o->via.array.ptr[0].via.u64, 1);
    ck_assert_uint_eq(o->via.array.ptr[1].via.u64, 77);
    ck_assert_int_eq(o->via.array.ptr[2].type, MSGPACK_OBJECT_NIL);
    const msgpack_object *r = &o->via.array.ptr[3];
    if (keys[0] == NULL) {
        ck_assert_msg(r->type == MSGPACK_OBJECT_BOOLEAN && r->via.boolean, "%s: result is not true", method);
    } else if (strcmp(types[0], "stats") == 0) {
        ck_assert_int_eq(r->type, MSGPACK_OBJECT_MAP);
        ck_assert_uint_eq(r->via.map.size, SP_STAT__COUNT);
        static const char *const sk[] = {
#define X(id, key, type, what) key,
            SP_PROTO_STATS_MAP(X)
#undef X
        };
        static const char *const st[] = {
#define X(id, key, type, what) type,
            SP_PROTO_STATS_MAP(X)
#undef X
        };
        for (uint32_t i = 0; i < r->via.map.size; i++) {
            const msgpack_object_kv *kv = &r->via.map.ptr[i];
            ck_assert_msg(kv->key.via.str.size == strlen(sk[i]) && memcmp(kv->key.via.str.ptr, sk[i], strlen(sk[i])) == 0,
                          "stats key %u is not %s", i, sk[i]);
            ck_assert_msg(type_ok(st[i], &kv->val, false), "stats %s is not a %s", sk[i], st[i]);
        }
    } else {
        ck_assert_int_eq(r->type, MSGPACK_OBJECT_MAP);
        uint32_t n = 0;
        while (keys[n]) n++;
        ck_assert_msg(r->via.map.size == n, "%s: %u keys, the .def lists %u", method, r->via.map.size, n);
        for (uint32_t i = 0; i < n; i++) {
            const msgpack_object_kv *kv = &r->via.map.ptr[i];
            ck_assert_int_eq(kv->key.type, MSGPACK_OBJECT_STR);
            ck_assert_msg(kv->key.via.str.size == strlen(keys[i]) && memcmp(kv->key.via.str.ptr, keys[i], strlen(keys[i])) == 0,
                          "%s: key %u is not %s", method, i, keys[i]);
            ck_assert_msg(type_ok(types[i], &kv->val, true), "%s: %s is not a %s", method, keys[i], types[i]);
        }
    }
    msgpack_unpacked_destroy(&up);
}

START_TEST(test_rpc_result_packers_follow_the_def) {
#define KEY(f, key, type) key,
#define TYPE(f, key, type) DOC_T_##type,
#define SET_OPT(f, key, type) SET_OPT_##type(f)
#define SET_OPT_UINT(f)
#define SET_OPT_INT(f)
#define SET_OPT_FLOAT(f)
#define SET_OPT_BOOL(f)
#define SET_OPT_STR(f) res.f = "x";
#define SET_OPT_VEC3(f)
#define SET_OPT_UINT_OR_NIL(f)
#define SET_OPT_CARGO(f)
#define SET_OPT_OPT_STR(f) res.f = "y", res.has_##f = true;
#define SET_OPT_OPT_FLOAT(f) res.has_##f = true;
#define SET_OPT_STATS(f)
#define SET_OPT_CLIENTS(f)
#define X(id, lc, name, mn, mx, hello, admin, sig)                                                        \
    {                                                                                                     \
        static const char *const keys[] = {SP_PROTO_RESULT_##id(KEY) NULL};                               \
        static const char *const types[] = {SP_PROTO_RESULT_##id(TYPE) NULL};                             \
        sp_result_##lc##_t res;                                                                           \
        memset(&res, 0, sizeof res);                                                                      \
        SP_PROTO_RESULT_##id(SET_OPT) pbuf_t b;                                                           \
        pb_init(&b);                                                                                      \
        ck_assert_int_eq(sp_rpc_pack_result_##lc(&b.pk, 77, &res), 0);                                    \
        check_result(&b, name, keys, types);                                                              \
        pb_free(&b);                                                                                      \
    }
    SP_PROTO_METHOD_MAP(X)
#undef X
}
END_TEST

static Suite *rpc_suite(void) {
    Suite *s = suite_create("rpc");
    struct { const char *name; const TTest *t; } cases[] = {
        {"request", test_rpc_request_decodes_msgid_method_and_params},
        {"response_notify", test_rpc_response_ok_and_error_and_notification_decode},
        {"every_method", test_rpc_every_method_valid_params_pass_check},
        {"def_rows", test_rpc_def_rows_are_consistent},
        {"not_array", test_rpc_not_an_array_is_invalid_without_msgid},
        {"arity", test_rpc_wrong_arity_keeps_msgid_when_readable},
        {"wrong_types", test_rpc_wrong_types_are_invalid},
        {"c1", test_rpc_unknown_type_byte_c1_is_fatal_proto_error},
        {"before_bad", test_rpc_messages_before_a_bad_byte_are_still_delivered},
        {"depth", test_rpc_nesting_deeper_than_limit_is_refused},
        {"scan_depth_empty", test_rpc_scan_empty_container_at_depth_17_refused_16_passes},
        {"scan_resume", test_rpc_scan_reports_each_message_end_and_resumes_across_chunks},
        {"scan_ext_early", test_rpc_scan_ext32_length_refused_before_its_type_byte},
        {"scan_bad_byte", test_rpc_scan_bad_byte_reason_and_offset},
        {"huge_lengths", test_rpc_huge_declared_lengths_rejected_without_allocating},
        {"huge_bytewise", test_rpc_huge_length_refused_when_header_arrives_byte_by_byte},
        {"exact_limit", test_rpc_message_of_exactly_the_limit_passes_one_more_byte_fails},
        {"running_size", test_rpc_running_size_refused_before_buffering_past_limit},
        {"split_every_byte", test_rpc_stream_split_at_every_byte_boundary},
        {"byte_by_byte", test_rpc_stream_fed_byte_by_byte_yields_each_message_on_its_last_byte},
        {"lazy_split", test_rpc_lazy_decoder_matches_next_at_every_split},
        {"object_size", test_rpc_object_size_is_the_packed_size_and_refuses_bad_bytes},
        {"truncated", test_rpc_truncated_message_never_yields},
        {"idle_memory", test_rpc_idle_decoder_gives_big_buffer_back},
        {"float_params", test_rpc_float_params_accept_ints_and_reject_others},
        {"check_params", test_rpc_check_params_names_index_and_expected_type},
        {"error_map", test_rpc_error_map_is_well_formed_msgpack},
        {"protocol_md", test_rpc_protocol_md_documents_every_def_entry},
        {"protocol_md_tables", test_rpc_protocol_md_tables_match_def_both_ways},
        {"protocol_md_results", test_rpc_protocol_md_documents_every_result_field_and_type},
        {"result_packers", test_rpc_result_packers_follow_the_def},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(30));
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(rpc_suite)
