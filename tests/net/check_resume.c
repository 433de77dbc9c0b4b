/* check_resume.c: sessions that survive a dropped connection, hello names
 * and session ids (issue 7, points 6 and 7), over real TCP.
 *
 * Each test starts the real daemon on 127.0.0.1 at an ephemeral port. Every
 * wait is for a condition (a reply, the ship gone from inspect, a log line)
 * with a deadline scaled by CK_TIMEOUT_MULTIPLIER, never a fixed sleep. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../helpers/sp_check.h"
#include "netclient.h"
#include "sim/save.h"
#include "sim/world.h"

#define T sp_timeout(5.0) /* seconds any single reply may take */
#define TOK_LEN 64

static nc_daemon_t D;

static void start(const char *const *args) {
    if (D.dir[0] == '\0') ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    int st = 0;
    ck_assert_msg(nc_daemon_start(&D, args, NULL, 10 * sp_timeout(1), &st) == 0, "daemon did not start (exit %d)",
                  st);
}

static void stop(void) {
    if (D.pid > 0) ck_assert_int_eq(nc_daemon_stop(&D, SIGTERM, 10 * sp_timeout(1)), 0);
    D.pid = 0;
}

static void teardown(void) {
    nc_daemon_cleanup(&D);
    memset(&D, 0, sizeof D);
}

/* A session: its id and its latest resume token. */
typedef struct sess {
    uint32_t id;
    char tok[TOK_LEN + 1];
} sess_t;

static void take_token(const nc_resp_t *r, sess_t *s) {
    const msgpack_object *t = nc_get(r->result, "resume_token");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->type, MSGPACK_OBJECT_STR);
    ck_assert_uint_eq(t->via.str.size, TOK_LEN);
    memcpy(s->tok, t->via.str.ptr, TOK_LEN);
    s->tok[TOK_LEN] = '\0';
    s->id = (uint32_t)nc_get_u64(r->result, "session");
}

/* Connect and hello [name, nil] (fresh session). */
static void hello_fresh(nc_t *c, const char *name, sess_t *s) {
    ck_assert_int_eq(nc_connect(c, D.port), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(c, T, &r, "hello", "sn", name), 0);
    ck_assert_msg(r.error == NULL, "hello failed: %s", r.message);
    take_token(&r, s);
    nc_resp_free(&r);
}

/* Connect and hello [name, nil, token]; the error code (0 = resumed, *s
 * updated with the new token). */
static int64_t hello_resume(nc_t *c, const char *name, sess_t *s) {
    ck_assert_int_eq(nc_connect(c, D.port), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(c, T, &r, "hello", "sns", name, s->tok), 0);
    int64_t code = r.code;
    if (code == 0) take_token(&r, s);
    nc_resp_free(&r);
    return code;
}

static uint64_t spawn_at(nc_t *c, double x, double y, double z) {
    double p[3] = {x, y, z};
    nc_resp_t r;
    ck_assert_int_eq(nc_call(c, T, &r, "spawn", "v", p), 0);
    ck_assert_msg(r.error == NULL, "spawn failed: %s", r.message);
    uint64_t id = nc_get_u64(r.result, "ship_id");
    nc_resp_free(&r);
    return id;
}

static int64_t move_code(nc_t *c, uint64_t ship) {
    double v[3] = {5, 0, 0};
    nc_resp_t r;
    ck_assert_int_eq(nc_call(c, T, &r, "move", "uv", ship, v), 0);
    int64_t code = r.code;
    nc_resp_free(&r);
    return code;
}

/* inspect's error code (0: exists) and the owner when it exists. */
static int64_t inspect_owner(nc_t *c, uint64_t id, uint64_t *owner) {
    nc_resp_t r;
    ck_assert_int_eq(nc_call(c, T, &r, "inspect", "u", id), 0);
    int64_t code = r.code;
    if (code == 0 && owner) *owner = nc_get_u64(r.result, "owner");
    nc_resp_free(&r);
    return code;
}

/* Wait for a log line, paced by the snapshots a hello'd client receives
 * (20 a second): the daemon logs as it goes, nothing is slept. */
static bool wait_log(nc_t *pacer, const char *needle, double secs) {
    double end = nc_now() + secs;
    while (!nc_log_contains(&D, needle)) {
        if (nc_now() > end) return false;
        msgpack_unpacked *u = nc_next_note(pacer, "snapshot", 1.0);
        if (u) nc_note_free(u);
    }
    return true;
}

/* Wait until a snapshot of `c`, subscribed around `at`, no longer shows
 * `ship` (after first showing it). */
static bool wait_gone_from_snapshots(nc_t *c, uint64_t ship, const double at[3], double secs) {
    nc_resp_t r;
    ck_assert_int_eq(nc_call(c, T, &r, "subscribe", "dv", 100.0, at), 0);
    ck_assert_msg(r.error == NULL, "%s", r.message);
    nc_resp_free(&r);
    nc_view_t v = {0};
    bool seen = false, gone = false;
    double end = nc_now() + secs;
    while (!gone && nc_now() < end) {
        msgpack_unpacked *u = nc_next_note(c, "snapshot", 1.0);
        if (u == NULL) continue;
        ck_assert_int_eq(nc_view_apply(&v, nc_note_params(u)), 0);
        nc_note_free(u);
        bool in = nc_view_find(&v, ship) != NULL;
        if (in) seen = true;
        else if (seen) gone = true;
    }
    nc_view_free(&v);
    return gone;
}

/* ---------------------------------------------------------------- reconnect */

START_TEST(test_issue_7_reconnect_within_grace_gets_session_and_ships_back) {
    static const char *const args[] = {"--demo-asteroids", "20", "--demo-npcs", "0", "--world-size", "1000", NULL};
    start(args);
    nc_t a, b, c;
    sess_t s;
    hello_fresh(&a, "alice", &s);
    char first[TOK_LEN + 1];
    memcpy(first, s.tok, sizeof first);
    uint64_t ship = spawn_at(&a, 10, 0, 0);
    uint32_t id = s.id;
    hello_fresh(&c, "watcher", &(sess_t){0});
    nc_close(&a);
    char line[64];
    snprintf(line, sizeof line, "session %u detached: 1 ship(s) kept", id);
    ck_assert_msg(wait_log(&c, line, T), "no detach logged");
    /* The ship stays, owned, while nobody holds the session. */
    uint64_t owner = 0;
    ck_assert_int_eq(inspect_owner(&c, ship, &owner), 0);
    ck_assert_uint_eq(owner, id);
    ck_assert_int_eq(move_code(&c, ship), 6); /* not the watcher's */
    /* Reconnect with the token: same session, the ship is ours again. */
    ck_assert_int_eq(hello_resume(&b, "alice", &s), 0);
    ck_assert_uint_eq(s.id, id);
    ck_assert_str_ne(s.tok, first); /* a new token each hello */
    ck_assert_int_eq(move_code(&b, ship), 0);
    ck_assert_int_eq(inspect_owner(&b, ship, &owner), 0);
    ck_assert_uint_eq(owner, id);
    /* Snapshots of the resumed session show its ship. */
    nc_view_t v = {0};
    double end = nc_now() + T;
    while (nc_view_find(&v, ship) == NULL) {
        ck_assert_msg(nc_now() < end, "resumed ship never in a snapshot");
        msgpack_unpacked *u = nc_next_note(&b, "snapshot", T);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(nc_view_apply(&v, nc_note_params(u)), 0);
        nc_note_free(u);
    }
    nc_view_free(&v);
    /* The spent token resumes nothing (and leaves the holder alone). */
    nc_t e;
    sess_t old = s;
    memcpy(old.tok, first, sizeof first);
    ck_assert_int_eq(hello_resume(&e, "mallory", &old), 6);
    nc_close(&e);
    ck_assert_int_eq(move_code(&b, ship), 0);
    nc_close(&b);
    nc_close(&c);
    stop();
    ck_assert(!nc_log_contains(&D, first)); /* tokens are never logged */
    ck_assert(!nc_log_contains(&D, s.tok));
}
END_TEST

/* A client that reconnects before the server noticed its old connection
 * drop takes the session over; the old connection is closed. */
START_TEST(test_issue_7_resume_takes_over_a_still_open_connection) {
    static const char *const args[] = {"--demo-asteroids", "20", "--demo-npcs", "0", "--world-size", "1000", NULL};
    start(args);
    nc_t a, b;
    sess_t s;
    hello_fresh(&a, "alice", &s);
    uint64_t ship = spawn_at(&a, 0, 10, 0);
    uint32_t id = s.id;
    ck_assert_int_eq(hello_resume(&b, "alice", &s), 0);
    ck_assert_uint_eq(s.id, id);
    ck_assert_int_eq(nc_wait_closed(&a, T), 0);
    ck_assert_int_eq(move_code(&b, ship), 0);
    nc_close(&a);
    nc_close(&b);
    stop();
    ck_assert(nc_log_contains(&D, "session resumed on another connection"));
}
END_TEST

START_TEST(test_issue_7_wrong_resume_token_refused_connection_stays_usable) {
    static const char *const args[] = {"--demo-asteroids", "20", "--demo-npcs", "0", NULL};
    start(args);
    nc_t a;
    sess_t s;
    memset(s.tok, 'a', TOK_LEN);
    s.tok[TOK_LEN] = '\0';
    ck_assert_int_eq(hello_resume(&a, "eve", &s), 6); /* FORBIDDEN */
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&a, T, &r, "spawn", ""), 0);
    ck_assert_int_eq(r.code, 5); /* still no session */
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&a, T, &r, "hello", "sns", "eve", "short"), 0);
    ck_assert_int_eq(r.code, 4);
    ck_assert_msg(strstr(r.message, "param 2") != NULL, "%s", r.message);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&a, T, &r, "hello", "snn", "eve"), 0); /* nil token: a fresh session */
    ck_assert_msg(r.error == NULL, "%s", r.message);
    nc_resp_free(&r);
    nc_close(&a);
    stop();
}
END_TEST

START_TEST(test_issue_7_ships_of_a_session_not_resumed_removed_at_grace_end) {
    static const char *const args[] = {"--demo-asteroids", "20", "--demo-npcs", "0", "--reconnect-grace", "1", NULL};
    start(args);
    nc_t a, w;
    sess_t s;
    hello_fresh(&a, "leaver", &s);
    uint64_t ship = spawn_at(&a, 0, 0, 10);
    hello_fresh(&w, "watcher", &(sess_t){0});
    nc_close(&a);
    static const double at[3] = {0, 0, 10};
    ck_assert_msg(wait_gone_from_snapshots(&w, ship, at, sp_timeout(10)), "ship never removed");
    ck_assert_int_eq(inspect_owner(&w, ship, NULL), 7);
    nc_t b;
    ck_assert_int_eq(hello_resume(&b, "leaver", &s), 6); /* expired */
    nc_close(&b);
    nc_close(&w);
    stop();
    char line[64];
    snprintf(line, sizeof line, "session %u expired", s.id);
    ck_assert(nc_log_contains(&D, line));
}
END_TEST

/* ---------------------------------------------------------------- restart */

START_TEST(test_issue_7_sigterm_restart_resume_within_new_grace) {
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    char ck[400];
    snprintf(ck, sizeof ck, "%s/world.ckpt", D.dir);
    const char *args[] = {"--demo-asteroids", "20", "--demo-npcs", "0", "--world-size", "1000",
                          "--checkpoint", ck, "--checkpoint-every", "0", NULL};
    start(args);
    nc_t a, b;
    sess_t sa, sb;
    hello_fresh(&a, "gone", &sa);  /* detached before the shutdown */
    uint64_t ship_a = spawn_at(&a, 5, 5, 5);
    hello_fresh(&b, "open", &sb); /* still connected at the shutdown */
    uint64_t ship_b = spawn_at(&b, -5, -5, -5);
    nc_close(&a);
    char line[64];
    snprintf(line, sizeof line, "session %u detached", sa.id);
    ck_assert(wait_log(&b, line, T));
    stop();
    nc_close(&b);
    start(args);
    ck_assert(nc_log_contains(&D, "checkpoint: 2 session(s) with 2 ship(s) wait 30 s for a resume"));
    nc_t a2, b2, f;
    uint32_t ida = sa.id, idb = sb.id;
    ck_assert_int_eq(hello_resume(&b2, "open", &sb), 0);
    ck_assert_uint_eq(sb.id, idb);
    ck_assert_int_eq(move_code(&b2, ship_b), 0);
    ck_assert_int_eq(hello_resume(&a2, "gone", &sa), 0);
    ck_assert_uint_eq(sa.id, ida);
    ck_assert_int_eq(move_code(&a2, ship_a), 0);
    ck_assert_int_eq(move_code(&a2, ship_b), 6); /* each its own */
    /* Ids are never reused across the restart. */
    sess_t sf;
    hello_fresh(&f, "new", &sf);
    ck_assert_uint_gt(sf.id, idb);
    ck_assert_uint_gt(sf.id, ida);
    nc_close(&a2);
    nc_close(&b2);
    nc_close(&f);
    stop();
    /* The checkpoint keeps hashes, never the tokens themselves. */
    FILE *fp = fopen(ck, "rb");
    ck_assert_ptr_nonnull(fp);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    ck_assert(memmem(buf, n, sa.tok, TOK_LEN) == NULL);
    ck_assert(memmem(buf, n, sb.tok, TOK_LEN) == NULL);
}
END_TEST

/* A checkpoint with no sessions (version 2 or crafted) whose player ship is
 * owned by UINT32_MAX: the ship is removed (nobody could command it) and the
 * session counter does not wrap to 0 (it did: max owner + 1). */
START_TEST(test_issue_7_crafted_checkpoint_orphan_ship_removed_ids_do_not_wrap) {
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    char ck[400];
    snprintf(ck, sizeof ck, "%s/crafted.ckpt", D.dir);
    sp_world_def_t def = sp_world_def_default();
    def.dt = 1.0f / 60.0f;
    sp_world_t *w;
    ck_assert_int_eq(sp_world_create(&def, &w), 0);
    float p[3] = {1, 2, 3};
    sp_entity_id_t orphan;
    ck_assert_int_eq(sp_world_spawn_ship(w, UINT32_MAX, 0, p, &orphan), 0);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(sp_world_save(w, &buf, &len), 0);
    sp_world_free(w);
    FILE *fp = fopen(ck, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(buf, 1, len, fp), len);
    fclose(fp);
    free(buf);
    const char *args[] = {"--checkpoint", ck, "--checkpoint-every", "0", NULL};
    start(args);
    ck_assert(nc_log_contains(&D, "1 player ship(s) of no saved session removed"));
    nc_t a;
    sess_t s;
    hello_fresh(&a, "first", &s);
    ck_assert_uint_ge(s.id, 1);
    ck_assert_int_eq(inspect_owner(&a, orphan, NULL), 7);
    nc_close(&a);
    stop();
}
END_TEST

/* ---------------------------------------------------------------- names, ids */

START_TEST(test_issue_7_hello_name_must_be_utf8) {
    static const char *const args[] = {"--demo-asteroids", "0", "--demo-npcs", "0", NULL};
    start(args);
    static const char *const bad[] = {"a\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe2\x82", "\x80"};
    nc_t c;
    ck_assert_int_eq(nc_connect(&c, D.port), 0);
    nc_resp_t r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(nc_call(&c, T, &r, "hello", "sn", bad[i]), 0);
        ck_assert_int_eq(r.code, 4);
        ck_assert_msg(strstr(r.message, "param 0") && strstr(r.message, "UTF-8"), "%s", r.message);
        nc_resp_free(&r);
    }
    ck_assert_int_eq(nc_call(&c, T, &r, "hello", "sn", "\xc5\xbc\xc3\xb3\xc5\x82w \xf0\x9f\x9a\x80"), 0);
    ck_assert_msg(r.error == NULL, "%s", r.message);
    nc_resp_free(&r);
    nc_close(&c);
    stop();
    ck_assert(!nc_log_contains(&D, "a\xff"));
}
END_TEST

START_TEST(test_issue_7_session_ids_stop_at_the_limit_never_wrap) {
    static const char *const args[] = {"--demo-asteroids", "0", "--demo-npcs", "0", "--first-session-id",
                                       "4294967294", NULL};
    start(args);
    nc_t a, b, c;
    sess_t s;
    hello_fresh(&a, "last", &s);
    ck_assert_uint_eq(s.id, 4294967294u);
    ck_assert_int_eq(nc_connect(&b, D.port), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&b, T, &r, "hello", "sn", "one-too-many"), 0);
    ck_assert_int_eq(r.code, 11); /* LIMIT */
    nc_resp_free(&r);
    nc_close(&b);
    /* A resume needs no new id. */
    nc_close(&a);
    ck_assert_int_eq(hello_resume(&c, "last", &s), 0);
    ck_assert_uint_eq(s.id, 4294967294u);
    nc_close(&c);
    stop();
    ck_assert(nc_log_contains(&D, "session ids exhausted"));
}
END_TEST

static Suite *resume_suite(void) {
    Suite *s = suite_create("resume");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {
        {"reconnect", test_issue_7_reconnect_within_grace_gets_session_and_ships_back},
        {"takeover", test_issue_7_resume_takes_over_a_still_open_connection},
        {"wrong_token", test_issue_7_wrong_resume_token_refused_connection_stays_usable},
        {"expiry", test_issue_7_ships_of_a_session_not_resumed_removed_at_grace_end},
        {"restart", test_issue_7_sigterm_restart_resume_within_new_grace},
        {"crafted_checkpoint", test_issue_7_crafted_checkpoint_orphan_ship_removed_ids_do_not_wrap},
        {"utf8_name", test_issue_7_hello_name_must_be_utf8},
        {"id_limit", test_issue_7_session_ids_stop_at_the_limit_never_wrap},
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

SP_CHECK_MAIN(resume_suite)
