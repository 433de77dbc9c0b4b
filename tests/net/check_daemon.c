/* check_daemon.c: spacesimd end to end over real TCP (issue 3).
 *
 * Each test starts the real daemon on 127.0.0.1 at an ephemeral port
 * (--port 0 --port-file), drives it with blocking clients whose every read
 * has a deadline, and stops it. Worlds are small so a test takes about a
 * second. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../helpers/sp_check.h"
#include "netclient.h"
#include "rpc.h"

#define T sp_timeout(5.0) /* seconds any single reply may take */
#define TOKEN "s3cret-admin"

static nc_daemon_t D;

static void start(const char *const *args, const char *token) {
    static const char *const deflt[] = {"--demo-asteroids", "200", "--demo-npcs", "20", "--world-size", "1000", NULL};
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    int st = 0;
    ck_assert_msg(nc_daemon_start(&D, args ? args : deflt, token, 10 * sp_timeout(1), &st) == 0,
                  "daemon did not start (exit %d), log %s", st, D.log);
}

/* Stop with SIGTERM: a graceful exit must be status 0. The temp dir (and
 * the log the test may still check) is removed by the fixture's teardown. */
static void stop(void) {
    if (D.pid > 0) ck_assert_int_eq(nc_daemon_stop(&D, SIGTERM, 10 * sp_timeout(1)), 0);
}

static void teardown(void) { nc_daemon_cleanup(&D); }

static void connect_hello(nc_t *c, const char *name, const char *token, uint32_t *session) {
    ck_assert_int_eq(nc_connect(c, D.port), 0);
    nc_resp_t r;
    if (token) ck_assert_int_eq(nc_call(c, T, &r, "hello", "ss", name, token), 0);
    else ck_assert_int_eq(nc_call(c, T, &r, "hello", "sn", name), 0);
    ck_assert_msg(r.error == NULL, "hello failed: %s", r.message);
    if (session) *session = (uint32_t)nc_get_u64(r.result, "session");
    nc_resp_free(&r);
}

static uint64_t spawn_at(nc_t *c, double x, double y, double z) {
    double p[3] = {x, y, z};
    nc_resp_t r;
    ck_assert_int_eq(nc_call(c, T, &r, "spawn", "v", p), 0);
    ck_assert_msg(r.error == NULL, "spawn failed: %s", r.message);
    uint64_t id = nc_get_u64(r.result, "ship_id");
    ck_assert_uint_ne(id, 0);
    nc_resp_free(&r);
    return id;
}

static int64_t call_code(nc_t *c, const char *method, const char *fmt, uint64_t a, uint64_t b) {
    nc_resp_t r;
    int rc = fmt[0] == '\0' ? nc_call(c, T, &r, method, "") : fmt[1] == '\0' ? nc_call(c, T, &r, method, fmt, a)
                                                                              : nc_call(c, T, &r, method, fmt, a, b);
    ck_assert_int_eq(rc, 0);
    int64_t code = r.code;
    nc_resp_free(&r);
    return code;
}

/* ---------------------------------------------------------------- handshake */

START_TEST(test_daemon_ping_before_hello_ok_other_methods_refused) {
    start(NULL, NULL);
    nc_t c;
    ck_assert_int_eq(nc_connect(&c, D.port), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&c, T, &r, "ping", ""), 0);
    ck_assert_ptr_null(r.error);
    ck_assert_ptr_nonnull(nc_get(r.result, "tick"));
    ck_assert_uint_gt(nc_get_u64(r.result, "server_time_ns"), 1000000000ull);
    nc_resp_free(&r);
    ck_assert_int_eq(call_code(&c, "spawn", "", 0, 0), 5);
    ck_assert_int_eq(call_code(&c, "stats", "", 0, 0), 5);
    ck_assert_int_eq(call_code(&c, "inspect", "u", 1, 0), 5);
    ck_assert_int_eq(call_code(&c, "nosuchmethod", "", 0, 0), 3);
    ck_assert_int_eq(nc_call(&c, T, &r, "hello", "sn", "tester"), 0);
    ck_assert_ptr_null(r.error);
    ck_assert_uint_ge(nc_get_u64(r.result, "session"), 1);
    ck_assert_uint_eq(nc_get_u64(r.result, "protocol"), SP_PROTO_VERSION);
    /* The interest-cell grid (protocol 2): the default 1000-unit edge over
     * the world cube of the daemon's --world-size. */
    ck_assert(nc_get_num(r.result, "interest_cell") == 1000.0);
    ck_assert_uint_ge(nc_get_u64(r.result, "cells_per_axis"), 1);
    ck_assert_uint_eq(nc_get_u64(r.result, "tick_hz"), 60);
    ck_assert_uint_eq(nc_get_u64(r.result, "snapshot_hz"), 20);
    ck_assert(nc_get(r.result, "admin")->type == MSGPACK_OBJECT_BOOLEAN && !nc_get(r.result, "admin")->via.boolean);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&c, T, &r, "stats", ""), 0);
    ck_assert_ptr_null(r.error);
    ck_assert_uint_eq(nc_get_u64(r.result, "clients"), 1);
    /* 200 asteroids + 20 NPCs, plus the tracers of NPC shots if a fighter
     * met a target already (one at most per NPC: a tracer lives 20 ticks,
     * the weapon cools down for 30). */
    ck_assert_uint_ge(nc_get_u64(r.result, "entities"), 220);
    ck_assert_uint_le(nc_get_u64(r.result, "entities"), 240);
    ck_assert_ptr_nonnull(nc_get(r.result, "tick_ms_p99"));
    ck_assert_ptr_nonnull(nc_get(r.result, "dilation"));
    nc_resp_free(&r);
    nc_close(&c);
    nc_daemon_stop(&D, SIGTERM, 10);
    ck_assert(nc_log_contains(&D, "disconnected: closed"));
    nc_daemon_cleanup(&D);
}
END_TEST

/* ---------------------------------------------------------------- movement */

START_TEST(test_daemon_spawn_move_ship_moves_in_snapshots) {
    start(NULL, NULL);
    nc_t c;
    connect_hello(&c, "pilot", NULL, NULL);
    uint64_t ship = spawn_at(&c, 100, 100, 100);
    nc_view_t v = {0};
    /* Wait until the ship is in our view (full snapshot then deltas). */
    double deadline = nc_now() + 5 * sp_timeout(1);
    const nc_ent_t *e = NULL;
    while (nc_now() < deadline && (e = nc_view_find(&v, ship)) == NULL) {
        msgpack_unpacked *u = nc_next_note(&c, "snapshot", T);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(nc_view_apply(&v, nc_note_params(u)), 0);
        nc_note_free(u);
    }
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(v.fulls, 1);
    double x0 = e->pos[0];
    ck_assert_double_eq_tol(x0, 100, 0.1);
    double vel[3] = {40, 0, 0};
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&c, T, &r, "move", "uv", ship, vel), 0);
    ck_assert_msg(r.error == NULL, "move: %s", r.message);
    ck_assert(r.result->type == MSGPACK_OBJECT_BOOLEAN && r.result->via.boolean);
    nc_resp_free(&r);
    double x = x0;
    while (nc_now() < deadline && x < x0 + 10) {
        msgpack_unpacked *u = nc_next_note(&c, "snapshot", T);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(nc_view_apply(&v, nc_note_params(u)), 0);
        nc_note_free(u);
        e = nc_view_find(&v, ship);
        ck_assert_ptr_nonnull(e);
        x = e->pos[0];
    }
    ck_assert_msg(x >= x0 + 10, "ship did not move: x0 %.2f x %.2f", x0, x);
    ck_assert_uint_eq(v.fulls, 1); /* only deltas after the first */
    /* The snapshot agrees with inspect up to quantization and motion. */
    ck_assert_int_eq(nc_call(&c, T, &r, "inspect", "u", ship), 0);
    ck_assert_ptr_null(r.error);
    ck_assert(nc_str_eq(nc_get(r.result, "kind"), "ship"));
    ck_assert_uint_eq(nc_get_u64(r.result, "owner"), nc_view_find(&v, ship)->owner);
    nc_resp_free(&r);
    nc_view_free(&v);
    nc_close(&c);
    stop();
}
END_TEST

/* ---------------------------------------------------------------- combat, mining */

START_TEST(test_daemon_fire_mine_and_ownership) {
    start(NULL, NULL);
    nc_t a, b;
    connect_hello(&a, "alice", NULL, NULL);
    connect_hello(&b, "bob", NULL, NULL);
    uint64_t sa = spawn_at(&a, -300, 0, 0);
    uint64_t sb = spawn_at(&b, -300, 30, 0);
    /* Ownership: bob cannot command alice's ship. */
    double vel[3] = {1, 0, 0};
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&b, T, &r, "move", "uv", sa, vel), 0);
    ck_assert_int_eq(r.code, 6);
    nc_resp_free(&r);
    ck_assert_int_eq(call_code(&b, "fire", "uu", sa, sb), 6);
    ck_assert_int_eq(call_code(&b, "mine", "uu", sa, 1), 6);
    ck_assert_int_eq(call_code(&a, "fire", "uu", sa, 999999999999ull), 7);
    /* Alice fires at bob's ship (30 units away, in range). */
    ck_assert_int_eq(nc_call(&a, T, &r, "fire", "uu", sa, sb), 0);
    ck_assert_msg(r.error == NULL, "fire: %s", r.message);
    const msgpack_object *hit = nc_get(r.result, "hit");
    ck_assert(hit && hit->type == MSGPACK_OBJECT_BOOLEAN);
    double dmg = nc_get_num(r.result, "damage");
    ck_assert(hit->via.boolean ? dmg > 0 : dmg == 0);
    nc_resp_free(&r);
    ck_assert_int_eq(call_code(&a, "fire", "uu", sa, sb), 9); /* cooldown */
    /* Bob sees the WeaponFired event (it involves his ship). */
    msgpack_unpacked *u;
    bool seen = false;
    double deadline = nc_now() + 5 * sp_timeout(1);
    while (!seen && nc_now() < deadline && (u = nc_next_note(&b, "event", T)) != NULL) {
        const msgpack_object *ev = &nc_note_params(u)->via.array.ptr[0];
        if (nc_str_eq(nc_get(ev, "type"), "WeaponFired") && nc_get_u64(ev, "ship_id") == sa &&
            nc_get_u64(ev, "target_id") == sb)
            seen = true;
        nc_note_free(u);
    }
    ck_assert_msg(seen, "no WeaponFired event reached the target's owner");

    /* Mining: find an asteroid in alice's view, park a new ship next to it. */
    nc_view_t v = {0};
    uint64_t ast = 0;
    deadline = nc_now() + 5 * sp_timeout(1);
    while (ast == 0 && nc_now() < deadline) {
        u = nc_next_note(&a, "snapshot", T);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(nc_view_apply(&v, nc_note_params(u)), 0);
        nc_note_free(u);
        for (size_t i = 0; i < v.n && ast == 0; i++)
            if (v.e[i].kind == 2) ast = v.e[i].id;
    }
    ck_assert_uint_ne(ast, 0);
    ck_assert_int_eq(nc_call(&a, T, &r, "inspect", "u", ast), 0);
    ck_assert_ptr_null(r.error);
    ck_assert(nc_str_eq(nc_get(r.result, "kind"), "asteroid"));
    const msgpack_object *pos = nc_get(r.result, "pos");
    double ap[3];
    for (int k = 0; k < 3; k++) ap[k] = pos->via.array.ptr[k].via.f64;
    double rad = nc_get_num(r.result, "radius");
    double before = nc_get_num(r.result, "amount");
    nc_resp_free(&r);
    uint64_t miner = spawn_at(&a, ap[0] + rad + 5, ap[1], ap[2]);
    ck_assert_int_eq(nc_call(&a, T, &r, "mine", "uu", miner, ast), 0);
    ck_assert_msg(r.error == NULL, "mine: %s", r.message);
    const msgpack_object *rt = nc_get(r.result, "resource_type");
    ck_assert(rt && rt->type == MSGPACK_OBJECT_STR && rt->via.str.size > 0);
    double amount = nc_get_num(r.result, "amount");
    ck_assert(amount > 0);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&a, T, &r, "inspect", "u", miner), 0);
    const msgpack_object *cargo = nc_get(r.result, "cargo");
    double total = 0;
    for (uint32_t i = 0; i < cargo->via.map.size; i++) total += cargo->via.map.ptr[i].val.via.f64;
    ck_assert_double_eq_tol(total, amount, 1e-3);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&a, T, &r, "inspect", "u", ast), 0);
    if (r.error == NULL) ck_assert_double_eq_tol(nc_get_num(r.result, "amount"), before - amount, 1e-3);
    nc_resp_free(&r);
    ck_assert_int_eq(call_code(&a, "mine", "uu", sa, ast), 8); /* too far */
    nc_view_free(&v);
    nc_close(&a);
    nc_close(&b);
    stop();
}
END_TEST

/* ---------------------------------------------------------------- admin */

START_TEST(test_daemon_admin_alert_reaches_every_client_non_admin_refused) {
    start(NULL, TOKEN);
    nc_t admin, p1, p2, wrong;
    connect_hello(&admin, "op", TOKEN, NULL);
    connect_hello(&p1, "p1", NULL, NULL);
    ck_assert_int_eq(nc_connect(&p2, D.port), 0); /* no hello: still gets alerts */
    ck_assert_int_eq(nc_connect(&wrong, D.port), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&wrong, T, &r, "hello", "ss", "mallory", "guess"), 0);
    ck_assert_int_eq(r.code, 6);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&p1, T, &r, "alert", "si", "not allowed", 1LL), 0);
    ck_assert_int_eq(r.code, 6);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&admin, T, &r, "alert", "si", "solar storm", 7LL), 0);
    ck_assert_msg(r.error == NULL, "alert: %s", r.message);
    nc_resp_free(&r);
    nc_t *all[] = {&admin, &p1, &p2, &wrong};
    for (int i = 0; i < 4; i++) {
        /* The alert, not "the next event": NPC fights in view come too. */
        msgpack_unpacked *u = nc_wait_event(all[i], "SystemAlert", NULL, NULL, T);
        ck_assert_msg(u != NULL, "client %d got no alert", i);
        const msgpack_object *ev = &nc_note_params(u)->via.array.ptr[0];
        ck_assert(nc_str_eq(nc_get(ev, "type"), "SystemAlert"));
        ck_assert(nc_str_eq(nc_get(ev, "message"), "solar storm"));
        ck_assert_uint_eq(nc_get_u64(ev, "priority"), 7);
        nc_note_free(u);
        nc_close(all[i]);
    }
    stop();
    ck_assert(nc_log_contains(&D, "alert (priority 7): solar storm"));
}
END_TEST

/* ---------------------------------------------------------------- slow reader */

START_TEST(test_daemon_non_reading_client_cut_off_others_unaffected) {
    static const char *const args[] = {"--demo-asteroids", "3000", "--demo-npcs", "1500", "--world-size", "1000",
                                       "--snapshot-hz", "30", "--obuf-soft", "32768", "--obuf-hard", "262144",
                                       "--obuf-soft-seconds", "1", "--idle-timeout", "600", "--sndbuf", "65536",
                                       NULL};
    /* --idle-timeout 600: only the output limit may cut the slow client off
     * (an idle close is not a kick). --sndbuf 65536: what the kernel holds
     * for it is bounded, so the daemon's queue fills after a few snapshots
     * however slowly a starved machine produces them. */
    start(args, NULL);
    nc_t slow, good;
    ck_assert_int_eq(nc_connect_rcvbuf(&slow, D.port, 4096), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&slow, T, &r, "hello", "sn", "sloth"), 0);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&slow, T, &r, "subscribe", "d", 5000.0), 0);
    nc_resp_free(&r);
    connect_hello(&good, "good", NULL, NULL);
    ck_assert_int_eq(nc_call(&good, T, &r, "subscribe", "d", 1.0), 0); /* a light client */
    nc_resp_free(&r);
    /* The slow client now never reads. The good one keeps asking; every
     * request must be answered until the slow one is kicked. The kick
     * needs the kernel's buffers full first (a loopback send buffer holds
     * megabytes), so on a starved machine it takes many snapshot rounds:
     * the deadline is generous, the loop ends as soon as it happens. */
    double deadline = nc_now() + 30 * sp_timeout(1);
    uint64_t kicks = 0;
    while (nc_now() < deadline) {
        ck_assert_int_eq(nc_call(&good, T, &r, "stats", ""), 0);
        ck_assert_msg(r.error == NULL, "stats: %s", r.message);
        kicks = nc_get_u64(r.result, "kicks");
        nc_resp_free(&r);
        if (kicks >= 1) break;
        /* Pace by the server's own snapshots (30 Hz), well under the rate
         * limit; they must keep coming to the good client meanwhile. */
        msgpack_unpacked *u = nc_next_note(&good, "snapshot", T);
        ck_assert_msg(u != NULL, "the good client stopped getting snapshots");
        nc_note_free(u);
        for (size_t i = 0; i < good.nnotes; i++) nc_note_free(good.notes[i]);
        good.nnotes = 0;
    }
    ck_assert_msg(kicks >= 1, "the non-reading client was never cut off");
    /* Every request of the good client was answered meanwhile (nc_call's
     * deadline); its latency under this attack is a figure of
     * bench/abuse.sh, not a timed assertion. */
    /* Server side: the slow client is gone (its socket may still hold bytes
     * in flight: with a 4 KiB receive window on loopback the kernel drains
     * them slowly, so the test checks the daemon's own count). */
    ck_assert_int_eq(nc_call(&good, T, &r, "stats", ""), 0);
    ck_assert_uint_eq(nc_get_u64(r.result, "clients"), 1);
    ck_assert_uint_ge(nc_get_u64(r.result, "snapshots_dropped"), 1);
    nc_resp_free(&r);
    nc_close(&slow);
    nc_close(&good);
    stop();
    ck_assert(nc_log_contains(&D, "kicked: output buffer over"));
}
END_TEST

/* ---------------------------------------------------------------- checkpoints */

START_TEST(test_daemon_sigterm_checkpoint_restart_resumes) {
    char ck[400];
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    snprintf(ck, sizeof ck, "%s/world.ckpt", D.dir);
    const char *args[] = {"--demo-asteroids", "100", "--demo-npcs", "0", "--world-size", "1000", "--checkpoint", ck,
                          "--checkpoint-every", "0", NULL};
    int st = 0;
    ck_assert_int_eq(nc_daemon_start(&D, args, NULL, 10, &st), 0);
    nc_t c;
    connect_hello(&c, "saver", NULL, NULL);
    uint64_t ship = spawn_at(&c, 10, 20, 30);
    nc_view_t v = {0};
    uint64_t ast = 0;
    double deadline = nc_now() + 5 * sp_timeout(1);
    while (ast == 0 && nc_now() < deadline) {
        msgpack_unpacked *u = nc_next_note(&c, "snapshot", T);
        ck_assert_ptr_nonnull(u);
        ck_assert_int_eq(nc_view_apply(&v, nc_note_params(u)), 0);
        nc_note_free(u);
        for (size_t i = 0; i < v.n && ast == 0; i++)
            if (v.e[i].kind == 2) ast = v.e[i].id;
    }
    ck_assert_msg(ast != 0, "no asteroid in view");
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&c, T, &r, "inspect", "u", ast), 0);
    double ap[3];
    for (int k = 0; k < 3; k++) ap[k] = nc_get(r.result, "pos")->via.array.ptr[k].via.f64;
    nc_resp_free(&r);
    nc_view_free(&v);
    ck_assert_int_eq(nc_daemon_stop(&D, SIGTERM, 10 * sp_timeout(1)), 0);
    nc_close(&c);
    ck_assert(nc_log_contains(&D, "checkpoint written"));
    ck_assert_int_eq(access(ck, R_OK), 0);
    /* Restart on the same checkpoint: same ids and positions. */
    ck_assert_int_eq(nc_daemon_start(&D, args, NULL, 10, &st), 0);
    ck_assert(nc_log_contains(&D, "resumed from checkpoint"));
    connect_hello(&c, "reader", NULL, NULL);
    ck_assert_int_eq(nc_call(&c, T, &r, "inspect", "u", ast), 0);
    ck_assert_msg(r.error == NULL, "asteroid lost: %s", r.message);
    for (int k = 0; k < 3; k++)
        ck_assert_double_eq_tol(nc_get(r.result, "pos")->via.array.ptr[k].via.f64, ap[k], 1e-3);
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&c, T, &r, "inspect", "u", ship), 0);
    ck_assert_msg(r.error == NULL, "ship lost: %s", r.message);
    ck_assert(nc_str_eq(nc_get(r.result, "kind"), "ship"));
    ck_assert_double_eq_tol(nc_get(r.result, "pos")->via.array.ptr[0].via.f64, 10, 1e-3);
    nc_resp_free(&r);
    /* The new session id never collides with the resumed ship's owner. */
    uint64_t mine = spawn_at(&c, 0, 0, 0);
    ck_assert_uint_ne(mine, ship);
    nc_close(&c);
    stop();
}
END_TEST

START_TEST(test_daemon_corrupt_or_truncated_checkpoint_refused_nonzero_exit) {
    char ck[400];
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    snprintf(ck, sizeof ck, "%s/bad.ckpt", D.dir);
    FILE *f = fopen(ck, "w");
    ck_assert_ptr_nonnull(f);
    fputs("SPWORLD\0 this is not a world", f);
    fclose(f);
    const char *args[] = {"--checkpoint", ck, NULL};
    int st = 0;
    ck_assert_int_eq(nc_daemon_start(&D, args, NULL, 10, &st), -1);
    ck_assert_int_eq(st, 5);
    ck_assert(nc_log_contains(&D, "refused"));
    /* A real checkpoint cut in half is refused too. */
    char good[400];
    snprintf(good, sizeof good, "%s/good.ckpt", D.dir);
    const char *args2[] = {"--demo-asteroids", "50", "--demo-npcs", "5", "--checkpoint", good, NULL};
    ck_assert_int_eq(nc_daemon_start(&D, args2, NULL, 10, &st), 0);
    ck_assert_int_eq(nc_daemon_stop(&D, SIGTERM, 10), 0);
    FILE *g = fopen(good, "rb");
    ck_assert_ptr_nonnull(g);
    fseek(g, 0, SEEK_END);
    long len = ftell(g);
    fclose(g);
    ck_assert_int_gt(len, 100);
    ck_assert_int_eq(truncate(good, len / 2), 0);
    ck_assert_int_eq(nc_daemon_start(&D, args2, NULL, 10, &st), -1);
    ck_assert_int_eq(st, 5);
    nc_daemon_cleanup(&D);
}
END_TEST

START_TEST(test_daemon_bad_flags_exit_2_with_message) {
    static const char *const args[] = {"--tick-hz", "fast", NULL};
    int st = 0;
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    ck_assert_int_eq(nc_daemon_start(&D, args, NULL, 10, &st), -1);
    ck_assert_int_eq(st, 2);
    ck_assert(nc_log_contains(&D, "invalid value 'fast' for --tick-hz"));
    nc_daemon_cleanup(&D);
}
END_TEST

/* ---------------------------------------------------------------- skipped snapshots */

static void drain_notes(nc_t *c) {
    for (size_t i = 0; i < c->nnotes; i++) nc_note_free(c->notes[i]);
    c->nnotes = 0;
}

static uint64_t stat_u64(nc_t *c, const char *key) {
    nc_resp_t r;
    ck_assert_int_eq(nc_call(c, T, &r, "stats", ""), 0);
    ck_assert_msg(r.error == NULL, "stats: %s", r.message);
    uint64_t v = nc_get_u64(r.result, key);
    nc_resp_free(&r);
    return v;
}

/* A client that does not read gets its snapshots skipped; an event about its
 * own ship produced while it is skipped must still reach it, with the next
 * snapshot it really gets (not be lost with the skipped one). */
START_TEST(test_daemon_events_of_skipped_snapshots_delivered_later) {
    static const char *const args[] = {"--demo-asteroids", "3000", "--demo-npcs", "1500", "--world-size", "1000",
                                       "--snapshot-hz", "30", "--obuf-soft", "32768", "--obuf-hard", "67108864",
                                       "--obuf-soft-seconds", "600", "--sndbuf", "65536", NULL};
    start(args, NULL);
    nc_t slow, good;
    /* A small receive window (but not so small that the connection crawls
     * once the client reads again) so the server's queue fills fast. */
    ck_assert_int_eq(nc_connect_rcvbuf(&slow, D.port, 32768), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&slow, T, &r, "hello", "sn", "sloth"), 0);
    nc_resp_free(&r);
    /* Several candidate victims: NPC fighters roam this crowded world and
     * may destroy some before the shot (which depends on the world's rolls,
     * hence on entity ids); the shot goes at one still alive. */
    uint64_t victims[8];
    for (int k = 0; k < 8; k++) victims[k] = spawn_at(&slow, -300 + 80 * k, 100 - 50 * (k % 3), 100);
    ck_assert_int_eq(nc_call(&slow, T, &r, "subscribe", "d", 5000.0), 0); /* sees everything: big snapshots */
    nc_resp_free(&r);
    /* From here on the slow client does not read. */
    connect_hello(&good, "good", NULL, NULL);
    ck_assert_int_eq(nc_call(&good, T, &r, "subscribe", "d", 1.0), 0);
    nc_resp_free(&r);
    double deadline = nc_now() + 20 * sp_timeout(1);
    uint64_t dropped = 0;
    while ((dropped = stat_u64(&good, "snapshots_dropped")) < 3 && nc_now() < deadline) {
        drain_notes(&good);
        msgpack_unpacked *u = nc_next_note(&good, "snapshot", T); /* paced by the server's snapshots */
        ck_assert_ptr_nonnull(u);
        nc_note_free(u);
    }
    ck_assert_msg(dropped >= 3, "the slow client's snapshots were never skipped");
    /* Fire at the slow client's ship while its snapshots are being skipped. */
    uint64_t victim = 0;
    double vpos[3] = {0, 0, 0};
    for (int k = 0; k < 8 && victim == 0; k++) {
        ck_assert_int_eq(nc_call(&good, T, &r, "inspect", "u", victims[k]), 0);
        if (r.error == NULL) {
            const msgpack_object *pos = nc_get(r.result, "pos");
            ck_assert_ptr_nonnull(pos);
            for (int a = 0; a < 3; a++) vpos[a] = pos->via.array.ptr[a].via.f64;
            victim = victims[k];
        }
        nc_resp_free(&r);
    }
    ck_assert_msg(victim != 0, "every candidate victim was destroyed before the shot");
    uint64_t shooter = spawn_at(&good, vpos[0] + 30, vpos[1], vpos[2]);
    ck_assert_int_eq(call_code(&good, "fire", "uu", shooter, victim), 0);
    /* Two more skipped rounds: the one carrying the event was skipped too. */
    while (stat_u64(&good, "snapshots_dropped") < dropped + 2 && nc_now() < deadline) {
        drain_notes(&good);
        msgpack_unpacked *u = nc_next_note(&good, "snapshot", T);
        ck_assert_ptr_nonnull(u);
        nc_note_free(u);
    }
    ck_assert_uint_ge(stat_u64(&good, "snapshots_dropped"), dropped + 2);
    /* Now the slow client reads: the WeaponFired event at its ship arrives. */
    bool seen = false;
    while (!seen && nc_now() < deadline) {
        msgpack_unpacked *u = nc_next_note(&slow, "event", T);
        ck_assert_msg(u != NULL, "no event reached the slow client");
        const msgpack_object *ev = &nc_note_params(u)->via.array.ptr[0];
        if (nc_str_eq(nc_get(ev, "type"), "WeaponFired") && nc_get_u64(ev, "ship_id") == shooter &&
            nc_get_u64(ev, "target_id") == victim)
            seen = true;
        nc_note_free(u);
        drain_notes(&slow); /* snapshots read meanwhile */
    }
    ck_assert_msg(seen, "the WeaponFired event produced while the client was skipped was lost");
    nc_close(&slow);
    nc_close(&good);
    stop();
}
END_TEST

/* ---------------------------------------------------------------- determinism */

/* Run the daemon (no clients) until --stop-after-ticks, wait for its exit
 * and read the hash and NPC intent count it logged. */
static uint64_t hash_after_ticks(const char *workers, uint64_t *intents) {
    static const char *const base[] = {"--demo-asteroids", "3000", "--demo-npcs", "600", "--world-size", "1200",
                                       "--tick-hz", "300", "--snapshot-hz", "100", "--seed", "7",
                                       "--stop-after-ticks", "600", "--workers"};
    const char *args[sizeof base / sizeof base[0] + 2];
    memcpy(args, base, sizeof base);
    args[sizeof base / sizeof base[0]] = workers;
    args[sizeof base / sizeof base[0] + 1] = NULL;
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    int st = 0;
    ck_assert_msg(nc_daemon_start(&D, args, NULL, 10 * sp_timeout(1), &st) == 0, "daemon did not start (%d)", st);
    /* 600 ticks of 3,600 entities: on a starved machine (the sanitizer build
     * at nice 19) that is minutes, so the wait is long; it ends at the exit. */
    ck_assert_int_eq(nc_daemon_stop(&D, 0 /* no signal: it stops by itself */, 60 * sp_timeout(1)), 0);
    FILE *f = fopen(D.log, "r");
    ck_assert_ptr_nonnull(f);
    char line[2048];
    unsigned long long tick = 0, hash = 0, n = 0, stalls = 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "stop-after-ticks: tick ");
        if (p && sscanf(p, "stop-after-ticks: tick %llu world_hash %llu npc_intents %llu ai_stalls %llu", &tick,
                        &hash, &n, &stalls) == 4)
            found = 1;
    }
    fclose(f);
    nc_daemon_cleanup(&D);
    ck_assert_msg(found, "no world hash line in the log");
    ck_assert_uint_eq(tick, 600);
    *intents = n;
    return hash;
}

START_TEST(test_daemon_world_hash_same_with_1_and_2_workers) {
    uint64_t n1 = 0, n2 = 0;
    uint64_t h1 = hash_after_ticks("1", &n1);
    uint64_t h2 = hash_after_ticks("2", &n2);
    ck_assert_uint_gt(n1, 1000); /* the NPC AI really ran and was applied */
    ck_assert_uint_eq(n1, n2);
    ck_assert_uint_eq(h1, h2);
}
END_TEST

/* ================================================================ issue 7, points 8 and 9
 * Operator habits: SIGHUP (reopen --log-file, else ignored), SIGUSR1 (a
 * checkpoint now), and a --checkpoint that cannot work refused at start-up
 * (missing or unwritable directory, a FIFO, a path another daemon holds).
 * Each fails on the code before the issue: --log-file was unknown, SIGHUP
 * and SIGUSR1 killed the daemon, a bad directory started fine, a FIFO hung
 * start-up in open() and a second daemon shared the path. */

static nc_daemon_t D2; /* a second daemon on the same checkpoint */

static void teardown2(void) {
    nc_daemon_cleanup(&D);
    if (D2.dir[0]) nc_daemon_cleanup(&D2);
}

static void ping_ok(void) {
    nc_t c;
    ck_assert_int_eq(nc_connect(&c, D.port), 0);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&c, T, &r, "ping", ""), 0);
    ck_assert_ptr_null(r.error);
    nc_resp_free(&r);
    nc_close(&c);
}

START_TEST(test_issue_7_sighup_reopens_the_log_file_after_logrotate_moved_it) {
    char logf[400], rotated[420];
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    snprintf(logf, sizeof logf, "%s/spacesimd.log", D.dir);
    snprintf(rotated, sizeof rotated, "%s.1", logf);
    const char *args[] = {"--demo-asteroids", "50", "--demo-npcs", "5", "--log-file", logf, NULL};
    int st = 0;
    ck_assert_msg(nc_daemon_start(&D, args, NULL, 10 * sp_timeout(1), &st) == 0, "daemon did not start (exit %d)", st);
    ck_assert_int_eq(nc_wait_file_contains(logf, "running:", T), 0);
    ck_assert(!nc_log_contains(&D, "running:")); /* stderr has nothing after the file opened */
    ck_assert_int_eq(rename(logf, rotated), 0);   /* logrotate: move, then SIGHUP */
    ck_assert_int_eq(kill(D.pid, SIGHUP), 0);
    ck_assert_msg(nc_wait_file_contains(logf, "SIGHUP: log file", T) == 0, "no new log file after SIGHUP");
    ping_ok();
    ck_assert_int_eq(nc_daemon_stop(&D, SIGTERM, 10 * sp_timeout(1)), 0);
    ck_assert(nc_file_contains(logf, "SIGTERM: shutting down"));
    ck_assert(!nc_file_contains(rotated, "SIGTERM"));
    ck_assert(nc_file_contains(rotated, "running:"));
}
END_TEST

START_TEST(test_issue_7_sighup_and_sigusr1_without_log_file_or_checkpoint_are_logged_not_fatal) {
    start(NULL, NULL);
    ck_assert_int_eq(kill(D.pid, SIGHUP), 0);
    ck_assert_msg(nc_wait_file_contains(D.log, "SIGHUP: ignored", T) == 0, "no SIGHUP line (daemon dead?)");
    ck_assert_int_eq(kill(D.pid, SIGUSR1), 0);
    ck_assert_msg(nc_wait_file_contains(D.log, "SIGUSR1: no checkpoint written", T) == 0, "no SIGUSR1 line");
    ping_ok();
    stop();
}
END_TEST

START_TEST(test_issue_7_sigusr1_writes_a_checkpoint_that_survives_kill_9) {
    char ck[400];
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    snprintf(ck, sizeof ck, "%s/world.ckpt", D.dir);
    const char *args[] = {"--demo-asteroids", "50", "--demo-npcs", "0", "--world-size", "1000", "--checkpoint", ck,
                          "--checkpoint-every", "0", NULL};
    int st = 0;
    ck_assert_int_eq(nc_daemon_start(&D, args, NULL, 10 * sp_timeout(1), &st), 0);
    nc_t c;
    connect_hello(&c, "saver", NULL, NULL);
    uint64_t ship = spawn_at(&c, 11, 22, 33);
    ck_assert_int_eq(access(ck, F_OK), -1); /* no checkpoint before the signal */
    ck_assert_int_eq(kill(D.pid, SIGUSR1), 0);
    ck_assert_msg(nc_wait_file_contains(D.log, "checkpoint written", T) == 0, "SIGUSR1 wrote no checkpoint");
    ck_assert(nc_log_contains(&D, "SIGUSR1: writing a checkpoint"));
    nc_close(&c);
    /* kill -9: no shutdown checkpoint; what survives is SIGUSR1's, and the
     * lock of the dead process does not stop the restart. */
    ck_assert_int_eq(nc_daemon_stop(&D, SIGKILL, 10 * sp_timeout(1)), 128 + SIGKILL);
    ck_assert_int_eq(nc_daemon_start(&D, args, NULL, 10 * sp_timeout(1), &st), 0);
    ck_assert(nc_log_contains(&D, "resumed from checkpoint"));
    connect_hello(&c, "reader", NULL, NULL);
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&c, T, &r, "inspect", "u", ship), 0);
    ck_assert_msg(r.error == NULL, "the ship is not in the SIGUSR1 checkpoint: %s", r.message);
    ck_assert_double_eq_tol(nc_get(r.result, "pos")->via.array.ptr[2].via.f64, 33, 1e-3);
    nc_resp_free(&r);
    nc_close(&c);
    stop();
}
END_TEST

/* Start with --checkpoint path: must exit 5 at once, the log saying `why`. */
static void refused(const char *path, const char *why) {
    const char *args[] = {"--demo-asteroids", "10", "--demo-npcs", "0", "--checkpoint", path, NULL};
    int st = 0;
    ck_assert_msg(nc_daemon_start(&D, args, NULL, 5 * sp_timeout(1), &st) == -1, "started with --checkpoint %s", path);
    ck_assert_msg(st == 5, "--checkpoint %s: exit %d, not 5", path, st);
    ck_assert_msg(nc_log_contains(&D, why), "--checkpoint %s: no \"%s\" in the log", path, why);
}

START_TEST(test_issue_7_checkpoint_in_a_missing_or_unwritable_directory_refused_at_start) {
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    char p[600], file[400];
    snprintf(p, sizeof p, "%s/no/such/dir/world.ckpt", D.dir);
    refused(p, "does not exist");
    snprintf(file, sizeof file, "%s/plain", D.dir);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(p, sizeof p, "%s/world.ckpt", file);
    refused(p, "is not a directory");
    if (geteuid() != 0) { /* root writes into a 0500 directory */
        char ro[420];
        snprintf(ro, sizeof ro, "%s/ro", D.dir);
        ck_assert_int_eq(mkdir(ro, 0500), 0);
        snprintf(p, sizeof p, "%s/world.ckpt", ro);
        refused(p, "is not writable");
        rmdir(ro);
    }
    refused("/proc/spacesim-world.ckpt", "cannot create files in directory /proc"); /* unwritable even for root */
}
END_TEST

START_TEST(test_issue_7_fifo_as_checkpoint_refused_exit_5_not_a_hang) {
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    char p[400];
    snprintf(p, sizeof p, "%s/world.fifo", D.dir);
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    refused(p, "is not a regular file (a FIFO)");
    snprintf(p, sizeof p, "%s/adir", D.dir);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    refused(p, "is not a regular file (a directory)");
    rmdir(p);
}
END_TEST

START_TEST(test_issue_7_second_daemon_on_one_checkpoint_refused_naming_the_first_pid) {
    char ck[400];
    ck_assert_int_eq(nc_daemon_prepare(&D), 0);
    ck_assert_int_eq(nc_daemon_prepare(&D2), 0);
    snprintf(ck, sizeof ck, "%s/world.ckpt", D.dir);
    const char *args[] = {"--demo-asteroids", "10", "--demo-npcs", "0", "--checkpoint", ck, "--checkpoint-every", "0",
                          NULL};
    int st = 0;
    ck_assert_int_eq(nc_daemon_start(&D, args, NULL, 10 * sp_timeout(1), &st), 0);
    ck_assert_int_eq(nc_daemon_start(&D2, args, NULL, 10 * sp_timeout(1), &st), -1);
    ck_assert_int_eq(st, 5);
    char want[64];
    snprintf(want, sizeof want, "in use by another spacesimd (pid %ld", (long)D.pid);
    ck_assert_msg(nc_log_contains(&D2, want), "the refusal does not name pid %ld", (long)D.pid);
    ping_ok(); /* the first one is untouched */
    ck_assert_int_eq(nc_daemon_stop(&D, SIGTERM, 10 * sp_timeout(1)), 0);
    /* Once the first is gone, the path is free. */
    ck_assert_int_eq(nc_daemon_start(&D2, args, NULL, 10 * sp_timeout(1), &st), 0);
    ck_assert(nc_log_contains(&D2, "resumed from checkpoint"));
    ck_assert_int_eq(nc_daemon_stop(&D2, SIGTERM, 10 * sp_timeout(1)), 0);
}
END_TEST

/* ================================================================ end of issue 7, points 8 and 9 */

/* The client map of session `id` in a `clients` result, or NULL. */
static const msgpack_object *client_of(const msgpack_object *result, uint64_t id) {
    const msgpack_object *list = nc_get(result, "clients");
    ck_assert_ptr_nonnull(list);
    ck_assert_int_eq(list->type, MSGPACK_OBJECT_ARRAY);
    for (uint32_t i = 0; i < list->via.array.size; i++)
        if (nc_get_u64(&list->via.array.ptr[i], "session") == id) return &list->via.array.ptr[i];
    return NULL;
}

START_TEST(test_issue_11_admin_clients_kick_and_limits) {
    static const char *const args[] = {"--demo-asteroids", "200", "--demo-npcs", "20", "--world-size", "1000",
                                       "--max-clients", "77", "--reconnect-grace", "0", NULL};
    start(args, TOKEN);
    nc_t admin, player;
    uint32_t sa = 0, sp = 0;
    connect_hello(&admin, "ops", TOKEN, &sa);
    connect_hello(&player, "pilot", NULL, &sp);
    uint64_t ship = spawn_at(&player, 10, 0, 0);
    nc_view_t v = {0};
    ck_assert_int_eq(nc_wait_view_has(&player, &v, ship, T), 0);
    /* Not for players. */
    ck_assert_int_eq(call_code(&player, "clients", "", 0, 0), SP_RPCERR_FORBIDDEN);
    ck_assert_int_eq(call_code(&player, "kick", "u", sa, 0), SP_RPCERR_FORBIDDEN);
    /* The list: both sessions, with what the console shows. */
    nc_resp_t r;
    ck_assert_int_eq(nc_call(&admin, T, &r, "clients", ""), 0);
    ck_assert_msg(r.error == NULL, "clients: %s", r.message);
    const msgpack_object *p = client_of(r.result, sp), *a = client_of(r.result, sa);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(a);
    ck_assert(nc_str_eq(nc_get(p, "name"), "pilot"));
    ck_assert(nc_str_eq(nc_get(p, "transport"), "tcp"));
    ck_assert_uint_eq(nc_get_u64(p, "ships"), 1);
    ck_assert_uint_ge(nc_get_u64(p, "view"), 1);
    ck_assert_uint_gt(nc_get_u64(p, "bytes_out"), 0);
    ck_assert_uint_ge(nc_get_u64(p, "snapshots_sent"), 1);
    ck_assert_uint_eq(nc_get_u64(p, "snapshots_skipped"), 0);
    ck_assert(nc_get(p, "admin")->via.boolean == false);
    ck_assert(nc_get(a, "admin")->via.boolean == true);
    const msgpack_object *addr = nc_get(p, "address");
    ck_assert(addr && addr->type == MSGPACK_OBJECT_STR && addr->via.str.size > 10);
    nc_resp_free(&r);
    /* Limits: the flags. */
    ck_assert_int_eq(nc_call(&player, T, &r, "limits", ""), 0);
    ck_assert_ptr_null(r.error);
    ck_assert_uint_eq(nc_get_u64(r.result, "max_clients"), 77);
    ck_assert_uint_eq(nc_get_u64(r.result, "max_message_bytes"), 65536);
    nc_resp_free(&r);
    /* Kick: an unknown session is NOT_FOUND; the pilot gets the reason, is
     * closed, leaves the list, and (no grace) its ship leaves the world. */
    ck_assert_int_eq(call_code(&admin, "kick", "u", 999999, 0), SP_RPCERR_NOT_FOUND);
    ck_assert_int_eq(nc_call(&admin, T, &r, "kick", "us", (uint64_t)sp, "testing"), 0);
    ck_assert_msg(r.error == NULL, "kick: %s", r.message);
    ck_assert_uint_eq(nc_get_u64(r.result, "session"), sp);
    nc_resp_free(&r);
    msgpack_unpacked *u = nc_next_note(&player, "error", T);
    ck_assert_ptr_nonnull(u);
    const msgpack_object *e = &nc_note_params(u)->via.array.ptr[0];
    ck_assert_uint_eq(nc_get_u64(e, "code"), SP_RPCERR_FORBIDDEN);
    const msgpack_object *m = nc_get(e, "message");
    ck_assert(m && m->via.str.size >= 7 && memmem(m->via.str.ptr, m->via.str.size, "testing", 7) != NULL);
    nc_note_free(u);
    ck_assert_int_eq(nc_wait_closed(&player, T), 0);
    ck_assert_int_eq(nc_call(&admin, T, &r, "clients", ""), 0);
    ck_assert_ptr_null(client_of(r.result, sp));
    ck_assert_ptr_nonnull(client_of(r.result, sa));
    nc_resp_free(&r);
    ck_assert_int_eq(nc_call(&admin, T, &r, "stats", ""), 0);
    ck_assert_uint_ge(nc_get_u64(r.result, "kicks"), 1);
    nc_resp_free(&r);
    ck_assert_int_eq(call_code(&admin, "inspect", "u", ship, 0), SP_RPCERR_NOT_FOUND);
    nc_view_free(&v);
    nc_close(&player);
    nc_close(&admin);
    stop();
    ck_assert(nc_log_contains(&D, "kicked by an operator"));
}
END_TEST

static Suite *daemon_suite(void) {
    Suite *s = suite_create("daemon");
    struct {
        const char *name;
        const TTest *t;
        double timeout; /* seconds before CK_TIMEOUT_MULTIPLIER; 0 = 40 */
    } cases[] = {
        {"handshake", test_daemon_ping_before_hello_ok_other_methods_refused, 0},
        {"admin_console", test_issue_11_admin_clients_kick_and_limits, 0},
        {"movement", test_daemon_spawn_move_ship_moves_in_snapshots, 0},
        {"fire_mine_ownership", test_daemon_fire_mine_and_ownership, 0},
        {"admin_alert", test_daemon_admin_alert_reaches_every_client_non_admin_refused, 0},
        {"slow_reader", test_daemon_non_reading_client_cut_off_others_unaffected, 0},
        {"checkpoint_resume", test_daemon_sigterm_checkpoint_restart_resumes, 0},
        {"checkpoint_corrupt", test_daemon_corrupt_or_truncated_checkpoint_refused_nonzero_exit, 0},
        {"flags", test_daemon_bad_flags_exit_2_with_message, 0},
        {"determinism_workers", test_daemon_world_hash_same_with_1_and_2_workers, 150}, /* two daemon runs */
        {"skipped_events", test_daemon_events_of_skipped_snapshots_delivered_later, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(cases[i].timeout > 0 ? cases[i].timeout : 40));
        tcase_add_checked_fixture(tc, NULL, teardown);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    /* Issue 7, points 8 and 9 (operator signals, checkpoint start-up). */
    struct {
        const char *name;
        const TTest *t;
    } ops[] = {
        {"issue7_sighup_log_file", test_issue_7_sighup_reopens_the_log_file_after_logrotate_moved_it},
        {"issue7_signals_without_files", test_issue_7_sighup_and_sigusr1_without_log_file_or_checkpoint_are_logged_not_fatal},
        {"issue7_sigusr1_checkpoint", test_issue_7_sigusr1_writes_a_checkpoint_that_survives_kill_9},
        {"issue7_checkpoint_dir", test_issue_7_checkpoint_in_a_missing_or_unwritable_directory_refused_at_start},
        {"issue7_checkpoint_fifo", test_issue_7_fifo_as_checkpoint_refused_exit_5_not_a_hang},
        {"issue7_checkpoint_lock", test_issue_7_second_daemon_on_one_checkpoint_refused_naming_the_first_pid},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        TCase *tc = tcase_create(ops[i].name);
        tcase_set_timeout(tc, sp_timeout(40));
        tcase_add_checked_fixture(tc, NULL, teardown2);
        tcase_add_test(tc, ops[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(daemon_suite)
