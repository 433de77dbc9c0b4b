/* check_ws.c: the WebSocket transport (/ws on --http-port, issue 11) is a
 * client like a TCP one: the same RPC, snapshots and events, and the same
 * treatment of bad input (garbage frames, huge frames, floods, a reader that
 * never reads, too many clients), with a TCP bystander served all along.
 *
 * A real spacesimd on 127.0.0.1; its HTTP port is a free port found by
 * binding port 0 (retried when another process takes it first). The client
 * is netclient.c's in WebSocket mode: masked frames, and a check that every
 * binary message from the server holds exactly one MessagePack message. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../helpers/sp_check.h"
#include "netclient.h"
#include "rpc.h"

#define T sp_timeout(5.0)

static nc_daemon_t D;
static int HTTP; /* the daemon's --http-port */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void start(const char *const *extra) {
    for (int attempt = 0; attempt < 5; attempt++) {
        char hp[16];
        HTTP = free_port();
        snprintf(hp, sizeof hp, "%d", HTTP);
        const char *args[40] = {"--demo-asteroids", "50", "--demo-npcs", "5", "--world-size", "1000",
                                "--http-port", hp};
        int n = 8;
        for (int i = 0; extra && extra[i]; i++) args[n++] = extra[i];
        args[n] = NULL;
        ck_assert_int_eq(nc_daemon_prepare(&D), 0);
        int st = 0;
        if (nc_daemon_start(&D, args, NULL, 10, &st) == 0) return;
        ck_assert_msg(st == 4, "daemon did not start (%d)", st); /* 4: the port was taken meanwhile */
        nc_daemon_cleanup(&D);
    }
    ck_abort_msg("no free HTTP port after 5 attempts");
}

/* Stop, and the loop closed with nothing left open (lws's handles too). */
static void stop(void) {
    ck_assert_int_eq(nc_daemon_stop(&D, SIGTERM, 10 * sp_timeout(1)), 0);
    ck_assert_msg(!nc_log_contains(&D, "still has open handles"), "uv_loop_close failed at exit");
}

static void teardown(void) { nc_daemon_cleanup(&D); }

static void ws(nc_t *c) {
    int status = 0;
    ck_assert_msg(nc_connect_ws(c, HTTP, NULL, &status) == 0, "WebSocket handshake failed (HTTP %d)", status);
    /* A blocked send must not hang a test: the daemon stops reading a held
     * client, and a kicked one's sends fail. */
    struct timeval tv = {2, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void assert_alive(nc_t *good) {
    nc_resp_t r;
    double t0 = nc_now();
    ck_assert_int_eq(nc_call(good, T, &r, "ping", ""), 0);
    ck_assert_ptr_null(r.error);
    nc_resp_free(&r);
    ck_assert(nc_now() - t0 < 1.0 * sp_timeout(1));
}

static void assert_error_then_closed(nc_t *c, int code) {
    msgpack_unpacked *u = nc_next_note(c, "error", T);
    ck_assert_msg(u != NULL, "no error notification");
    const msgpack_object *e = &nc_note_params(u)->via.array.ptr[0];
    ck_assert_uint_eq(nc_get_u64(e, "code"), (uint64_t)code);
    nc_note_free(u);
    ck_assert_int_eq(nc_wait_closed(c, T), 0);
}


START_TEST(test_ws_carries_the_same_rpc_snapshots_and_events_as_tcp) {
    start(NULL);
    nc_t w, t;
    ws(&w);
    ck_assert_int_eq(nc_connect(&t, D.port), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&w, T, &r, "hello", "s", "web"), 0);
    ck_assert_ptr_null(r.error);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&t, T, &r, "hello", "s", "tcp"), 0);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&w, T, &r, "spawn", ""), 0);
    ck_assert_ptr_null(r.error);
    uint64_t ship = nc_get_u64(r.result, "ship_id");
    nc_resp_free(&r);
    ck_assert_uint_ne(ship, 0);
    /* Both transports' views get the ship from their snapshots. */
    nc_view_t vw = {0}, vt = {0};
    ck_assert_int_eq(nc_wait_view_has(&w, &vw, ship, T), 0);
    ck_assert_int_eq(nc_wait_view_has(&t, &vt, ship, T), 0);
    ck_assert_uint_ge(vw.fulls, 1);
    ck_assert_uint_ge(vw.snapshots, 1);
    /* Every server message came in a WebSocket message of its own. */
    ck_assert_msg(!w.ws_bad_framing, "a WebSocket message held more or less than one MessagePack message");
    ck_assert_uint_gt(w.ws_msgs, 2);
    nc_view_free(&vw);
    nc_view_free(&vt);
    /* An unknown method is answered, the connection stays open (as TCP). */
    ck_assert_int_eq(nc_call(&w, T, &r, "no_such_method", ""), 0);
    ck_assert_int_eq(r.code, SP_RPCERR_METHOD_NOT_FOUND);
    nc_resp_free(&r);
    ck_assert(!w.closed);
    /* Shut down with both connected: a going-away close, a clean loop. */
    stop();
    ck_assert_int_eq(nc_wait_closed(&w, T), 0);
    nc_close(&w);
    nc_close(&t);
}
END_TEST

START_TEST(test_ws_garbage_frames_kick_only_that_client) {
    start(NULL);
    nc_t good;
    ck_assert_int_eq(nc_connect(&good, D.port), 0);
    nc_t c;
    /* A text frame. */
    ws(&c);
    ck_assert_int_eq(nc_ws_frame(&c, 1, true, "[0,1,\"ping\",[]]", 15), 0);
    assert_error_then_closed(&c, SP_RPCERR_PARSE_ERROR);
    nc_close(&c);
    assert_alive(&good);
    /* 0xc1, a byte that starts no MessagePack type. */
    ws(&c);
    const unsigned char c1[] = {0x94, 0x00, 0x01, 0xc1, 0x90};
    ck_assert_int_eq(nc_ws_frame(&c, 2, true, c1, sizeof c1), 0);
    assert_error_then_closed(&c, SP_RPCERR_PARSE_ERROR);
    nc_close(&c);
    /* Two messages in one WebSocket message. */
    ws(&c);
    const unsigned char two[] = {0x94, 0x00, 0x01, 0xa4, 'p', 'i', 'n', 'g', 0x90,
                                 0x94, 0x00, 0x02, 0xa4, 'p', 'i', 'n', 'g', 0x90};
    ck_assert_int_eq(nc_ws_frame(&c, 2, true, two, sizeof two), 0);
    assert_error_then_closed(&c, SP_RPCERR_PARSE_ERROR);
    nc_close(&c);
    /* A WebSocket message ending inside a MessagePack message. */
    ws(&c);
    ck_assert_int_eq(nc_ws_frame(&c, 2, true, two, 5), 0);
    assert_error_then_closed(&c, SP_RPCERR_PARSE_ERROR);
    nc_close(&c);
    /* But one message in fragments is fine. */
    ws(&c);
    ck_assert_int_eq(nc_ws_frame(&c, 2, false, two, 4), 0);
    ck_assert_int_eq(nc_ws_frame(&c, 0, true, two + 4, 5), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_wait_resp(&c, 1, T, &r), 0);
    ck_assert_int_eq(r.code, 0);
    nc_resp_free(&r);
    nc_close(&c);
    /* Random bytes. */
    ws(&c);
    unsigned char junk[512];
    srand(11);
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(0xc1 ^ (rand() & 0x0f));
    ck_assert_int_eq(nc_ws_frame(&c, 2, true, junk, sizeof junk), 0);
    ck_assert_int_eq(nc_wait_closed(&c, T), 0);
    nc_close(&c);
    assert_alive(&good);
    nc_close(&good);
    stop();
    ck_assert(nc_log_contains(&D, "kicked: WebSocket text message"));
    ck_assert(nc_log_contains(&D, "kicked: several messages in one WebSocket message"));
    ck_assert(nc_log_contains(&D, "kicked: truncated MessagePack message"));
}
END_TEST

START_TEST(test_ws_huge_frames_refused_like_tcp) {
    start(NULL);
    nc_t good, c;
    ck_assert_int_eq(nc_connect(&good, D.port), 0);
    /* A str32 declaring 1 GiB: refused on its header. */
    ws(&c);
    const unsigned char big[] = {0x94, 0x00, 0x01, 0xdb, 0x40, 0x00, 0x00, 0x00, 'x'};
    ck_assert_int_eq(nc_ws_frame(&c, 2, true, big, sizeof big), 0);
    assert_error_then_closed(&c, SP_RPCERR_TOO_LARGE);
    nc_close(&c);
    /* A 1 MiB frame of a real bin payload (over the 64 KiB limit): refused
     * after at most the limit, the rest is never buffered. */
    ws(&c);
    size_t n = 1 << 20;
    unsigned char *p = calloc(1, n);
    p[0] = 0x94, p[1] = 0x00, p[2] = 0x01, p[3] = 0xc6; /* bin32 of n - 8 bytes */
    uint32_t bl = (uint32_t)(n - 8);
    p[4] = (unsigned char)(bl >> 24), p[5] = (unsigned char)(bl >> 16), p[6] = (unsigned char)(bl >> 8),
    p[7] = (unsigned char)bl;
    nc_ws_frame(&c, 2, true, p, n); /* may fail half-way: the server closed */
    free(p);
    assert_error_then_closed(&c, SP_RPCERR_TOO_LARGE);
    nc_close(&c);
    assert_alive(&good);
    nc_close(&good);
    stop();
    ck_assert(nc_log_contains(&D, "kicked: message over 65536 bytes"));
}
END_TEST

START_TEST(test_ws_flood_held_by_the_rate_then_kicked) {
    static const char *const extra[] = {"--rate", "50", "--rate-kick-seconds", "1", NULL};
    start(extra);
    nc_t good, f;
    ck_assert_int_eq(nc_connect(&good, D.port), 0);
    ws(&f);
    const unsigned char ping[] = {0x94, 0x00, 0x07, 0xa4, 'p', 'i', 'n', 'g', 0x90};
    double deadline = nc_now() + 10 * sp_timeout(1), next_check = nc_now() + 0.2;
    int sent = 0;
    while (nc_now() < deadline) {
        if (nc_ws_frame(&f, 2, true, ping, sizeof ping) != 0) break; /* cut off (or send timed out) */
        sent++;
        if (nc_now() >= next_check) {
            assert_alive(&good);
            next_check = nc_now() + 0.2;
        }
        if (sent % 256 == 0 && nc_log_contains(&D, "kicked: rate")) break;
    }
    ck_assert_int_eq(nc_wait_file_contains(D.log, "kicked: rate", 10 * sp_timeout(1)), 0);
    ck_assert_int_eq(nc_wait_closed(&f, T), 0);
    nc_close(&f);
    assert_alive(&good);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&good, T, &r, "hello", "s", "good"), 0);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&good, T, &r, "stats", ""), 0);
    ck_assert_uint_eq(nc_get_u64(r.result, "rate_kicks"), 1);
    nc_resp_free(&r);
    nc_close(&good);
    stop();
}
END_TEST

START_TEST(test_ws_reader_that_never_reads_cut_off_at_output_cap) {
    static const char *const extra[] = {"--rate", "1000000", "--obuf-soft", "65536", "--obuf-hard", "262144", NULL};
    start(extra);
    nc_t good, f;
    ck_assert_int_eq(nc_connect(&good, D.port), 0);
    ws(&f);
    int small = 4096;
    setsockopt(f.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    /* Pipelined pings, each its own (masked, zero-key) WebSocket message,
     * 64 KiB of them per send, never reading: the answers pile up in net's
     * queue for this client until the hard limit kicks it (as over TCP). */
    static unsigned char batch[65536];
    const unsigned char frame[] = {0x82, 0x80 | 9, 0, 0, 0, 0, 0x94, 0x00, 0x01, 0xa4, 'p', 'i', 'n', 'g', 0x90};
    size_t n = 0;
    while (n + sizeof frame <= sizeof batch) {
        memcpy(batch + n, frame, sizeof frame);
        n += sizeof frame;
    }
    double deadline = nc_now() + 20 * sp_timeout(1);
    int rounds = 0;
    while (nc_now() < deadline) {
        if (send(f.fd, batch, n, MSG_NOSIGNAL) < 0) break; /* cut off (or blocked 2 s) */
        if (++rounds % 16 == 0) assert_alive(&good);
        if (nc_log_contains(&D, "kicked: output buffer over hard limit")) break;
    }
    ck_assert_int_eq(nc_wait_file_contains(D.log, "kicked: output buffer over hard limit", 10 * sp_timeout(1)), 0);
    assert_alive(&good);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&good, T, &r, "hello", "s", "good"), 0);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&good, T, &r, "stats", ""), 0);
    ck_assert_uint_le(nc_get_u64(r.result, "out_queue_max_bytes"), 262144);
    ck_assert_uint_ge(nc_get_u64(r.result, "kicks"), 1);
    nc_resp_free(&r);
    nc_close(&f);
    nc_close(&good);
    stop();
}
END_TEST

START_TEST(test_ws_other_origin_refused_and_max_clients_shared_with_tcp) {
    static const char *const extra[] = {"--max-clients", "1", NULL};
    start(extra);
    nc_t c;
    int status = 0;
    /* Another web site's page may not open the game's WebSocket. */
    ck_assert_int_ne(nc_connect_ws(&c, HTTP, "http://evil.example", &status), 0);
    ck_assert_int_ne(status, 101);
    nc_close(&c);
    char origin[64];
    snprintf(origin, sizeof origin, "http://127.0.0.1:%d", HTTP);
    ck_assert_int_eq(nc_connect_ws(&c, HTTP, origin, &status), 0);
    /* The one client slot is taken (by the WebSocket): a TCP client is refused... */
    nc_t t;
    ck_assert_int_eq(nc_connect(&t, D.port), 0);
    assert_error_then_closed(&t, SP_RPCERR_LIMIT);
    nc_close(&t);
    nc_close(&c);
    /* ...and, with a TCP client in it, a WebSocket one. */
    ck_assert_int_eq(nc_wait_file_contains(D.log, "disconnected: closed", T), 0);
    ck_assert_int_eq(nc_connect(&t, D.port), 0);
    assert_alive(&t);
    ws(&c);
    assert_error_then_closed(&c, SP_RPCERR_LIMIT);
    nc_close(&c);
    nc_close(&t);
    stop();
}
END_TEST

/* A plain HTTP/1.1 GET on the HTTP port; the response (headers and body,
 * up to cap - 1 bytes, NUL-terminated) in buf. Returns its length, -1. */
static int http_get(const char *path, char *buf, size_t cap) {
    nc_t c;
    if (nc_connect(&c, HTTP) != 0) return -1;
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, HTTP);
    size_t got = 0;
    if (nc_send_raw(&c, req, (size_t)n) == 0) {
        struct timeval tv = {5, 0};
        setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t r;
        while (got + 1 < cap && (r = recv(c.fd, buf + got, cap - 1 - got, 0)) > 0) got += (size_t)r;
    }
    buf[got] = '\0';
    nc_close(&c);
    return (int)got;
}

START_TEST(test_ws_http_routes_and_slow_clients_do_not_block_metrics) {
    static char web[1024];
    snprintf(web, sizeof web, "%s/web", SPACESIM_SRCDIR_WEB);
    const char *const extra[] = {"--web-root", web, NULL};
    start(extra);
    static char buf[1 << 16];
    ck_assert_int_gt(http_get("/metrics", buf, sizeof buf), 0);
    ck_assert_msg(strstr(buf, "HTTP/1.1 200") == buf, "/metrics: %.80s", buf);
    ck_assert(strstr(buf, "text/plain; version=0.0.4") != NULL);
    ck_assert(strstr(buf, "spacesim_build_info") != NULL);
    ck_assert_int_gt(http_get("/", buf, sizeof buf), 0);
    ck_assert_msg(strstr(buf, "HTTP/1.1 200") == buf, "/: %.80s", buf);
    ck_assert(strstr(buf, "<canvas") != NULL);
    /* The page's scripts are files: the policy forbids inline ones. */
    ck_assert(strstr(buf, "content-security-policy: default-src 'none'") != NULL);
    ck_assert(strstr(buf, "script-src 'self'") != NULL);
    ck_assert_int_gt(http_get("/app.js", buf, sizeof buf), 0);
    ck_assert(strstr(buf, "HTTP/1.1 200") == buf && strstr(buf, "javascript") != NULL);
    ck_assert_int_gt(http_get("/nothing-here", buf, sizeof buf), 0);
    ck_assert_msg(strstr(buf, "HTTP/1.1 404") == buf, "unknown path: %.80s", buf);
    ck_assert_int_gt(http_get("/../../etc/passwd", buf, sizeof buf), 0);
    ck_assert(strstr(buf, "root:") == NULL);
    /* 40 connections sending half a request and then nothing: a scrape
     * and a WebSocket client are still served at once. */
    nc_t slow[40];
    for (int i = 0; i < 40; i++) {
        ck_assert_int_eq(nc_connect(&slow[i], HTTP), 0);
        ck_assert_int_eq(nc_send_raw(&slow[i], "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ", 40), 0);
    }
    double t0 = nc_now();
    ck_assert_int_gt(http_get("/metrics", buf, sizeof buf), 0);
    ck_assert(strstr(buf, "HTTP/1.1 200") == buf);
    nc_t w;
    ws(&w);
    assert_alive(&w);
    ck_assert(nc_now() - t0 < 2.0 * sp_timeout(1));
    /* A 256 KiB header line is refused, not buffered. */
    nc_t big;
    ck_assert_int_eq(nc_connect(&big, HTTP), 0);
    static char junk[256 * 1024];
    memset(junk, 'a', sizeof junk);
    nc_send_raw(&big, "GET / HTTP/1.1\r\nX-Big: ", 23);
    nc_send_raw(&big, junk, sizeof junk); /* may fail half-way: closed */
    ck_assert_int_eq(nc_wait_closed(&big, T), 0);
    nc_close(&big);
    for (int i = 0; i < 40; i++) nc_close(&slow[i]);
    assert_alive(&w);
    nc_close(&w);
    stop();
}
END_TEST

static Suite *ws_suite(void) {
    Suite *s = suite_create("ws");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"same_rpc", test_ws_carries_the_same_rpc_snapshots_and_events_as_tcp},
        {"garbage", test_ws_garbage_frames_kick_only_that_client},
        {"huge", test_ws_huge_frames_refused_like_tcp},
        {"flood", test_ws_flood_held_by_the_rate_then_kicked},
        {"no_read", test_ws_reader_that_never_reads_cut_off_at_output_cap},
        {"origin_limits", test_ws_other_origin_refused_and_max_clients_shared_with_tcp},
        {"http", test_ws_http_routes_and_slow_clients_do_not_block_metrics},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(40));
        tcase_add_checked_fixture(tc, NULL, teardown);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(ws_suite)
