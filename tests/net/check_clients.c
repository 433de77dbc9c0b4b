/* tests/net/check_clients.c: spacesim-cli and spacesim-load as real
 * subprocesses against a real spacesimd (issue 4), plus unit tests of the
 * log-linear histogram spacesim-load reports from.
 *
 * Each daemon test case starts its own spacesimd on 127.0.0.1 at an
 * ephemeral port (small world: the subject is the clients). Subprocesses run
 * with a deadline: a hung client fails the test instead of hanging it. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "netclient.h"
#include "../helpers/sp_check.h"

/* The histogram is internal to spacesim-load: compile it in directly. */
#include "../../clients/hdr.c"

#ifndef SPACESIM_CLI_PATH
#define SPACESIM_CLI_PATH "clients/spacesim-cli"
#endif
#ifndef SPACESIM_LOAD_PATH
#define SPACESIM_LOAD_PATH "clients/spacesim-load"
#endif

static nc_daemon_t g_d;
static char g_port[16];

static void daemon_up(void) {
    static const char *const args[] = {"--demo-asteroids", "300", "--demo-npcs", "10", "--world-size", "1500",
                                       "--checkpoint-every", "0", NULL};
    ck_assert_int_eq(nc_daemon_prepare(&g_d), 0);
    ck_assert_msg(nc_daemon_start(&g_d, args, NULL, sp_timeout(10), NULL) == 0, "spacesimd did not start");
    snprintf(g_port, sizeof g_port, "%d", g_d.port);
}

/* Offline cases: a private temp dir for outputs and a port nobody listens on. */
static int closed_port(void);
static void offline_up(void) {
    ck_assert_int_eq(nc_daemon_prepare(&g_d), 0);
    snprintf(g_port, sizeof g_port, "%d", closed_port());
}

static void offline_down(void) { nc_daemon_cleanup(&g_d); }

static void daemon_down(void) {
    nc_daemon_stop(&g_d, SIGTERM, 5);
    nc_daemon_cleanup(&g_d);
}

/* Output of a subprocess: stdout and stderr, NUL-terminated. */
typedef struct run {
    int status;       /* exit status, 128+signal, or -1 on timeout */
    char out[65536];
    char err[16384];
} run_t;

static void slurp(const char *path, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Run argv (NULL-terminated) with a deadline; capture its output. */
static void run(run_t *r, double timeout_s, const char *const *argv) {
    char outp[400], errp[400];
    snprintf(outp, sizeof outp, "%s/out.txt", g_d.dir);
    snprintf(errp, sizeof errp, "%s/err.txt", g_d.dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1);
        dup2(e, 2);
        close(o);
        close(e);
        unsetenv("SPACESIM_ADMIN_TOKEN");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    double deadline = nc_now() + sp_timeout(timeout_s);
    int st = 0;
    r->status = -1;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (nc_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000}; /* polling a child's exit, not a race fix */
        nanosleep(&ts, NULL);
    }
    slurp(outp, r->out, sizeof r->out);
    slurp(errp, r->err, sizeof r->err);
}

#define CLI(...) ((const char *const[]){SPACESIM_CLI_PATH, "-p", g_port, __VA_ARGS__, NULL})
#define LOAD(...) ((const char *const[]){SPACESIM_LOAD_PATH, "-p", g_port, __VA_ARGS__, NULL})

/* A number after "key": in a JSON text, NAN when absent. */
static double json_num(const char *json, const char *key) {
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(json, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* ---------------------------------------------------------------- cli */

START_TEST(test_cli_ping_prints_tick_as_json_and_exits_0) {
    run_t *r = malloc(sizeof *r);
    run(r, 10, CLI("ping"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    ck_assert_msg(strstr(r->out, "{\"tick\": ") == r->out, "stdout: %s", r->out);
    ck_assert_ptr_nonnull(strstr(r->out, "\"server_time_ns\": "));
    free(r);
}
END_TEST

START_TEST(test_cli_unknown_method_exits_1_with_the_servers_message) {
    run_t *r = malloc(sizeof *r);
    run(r, 10, CLI("warp_drive", "9"));
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, "METHOD_NOT_FOUND") && strstr(r->err, "warp_drive"), "stderr: %s", r->err);
    ck_assert_str_eq(r->out, "");
    free(r);
}
END_TEST

START_TEST(test_cli_script_spawns_moves_and_inspects_on_one_connection) {
    run_t *r = malloc(sizeof *r);
    run(r, 10, CLI("-e", "spawn; move $ship_id [10, 0, 0]; inspect $ship_id"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    ck_assert_msg(strstr(r->out, "{\"ship_id\": "), "stdout: %s", r->out);
    ck_assert_msg(strstr(r->out, "\ntrue\n"), "move result missing: %s", r->out);
    ck_assert_msg(strstr(r->out, "\"kind\": \"ship\""), "inspect result missing: %s", r->out);
    /* the same with ';' words on the command line */
    run(r, 10, CLI("spawn", ";", "move", "$ship_id", "[1,2,3]"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    ck_assert_msg(strstr(r->out, "\ntrue\n"), "stdout: %s", r->out);
    free(r);
}
END_TEST

START_TEST(test_cli_error_reply_in_a_script_stops_it_with_exit_1) {
    run_t *r = malloc(sizeof *r);
    run(r, 10, CLI("-e", "inspect 12345; ping"));
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, "NOT_FOUND"), "stderr: %s", r->err);
    ck_assert_msg(strstr(r->out, "tick") == NULL, "ping ran after the error: %s", r->out);
    free(r);
}
END_TEST

START_TEST(test_cli_malformed_json_argument_is_refused_before_sending) {
    run_t *r = malloc(sizeof *r);
    run(r, 10, CLI("move", "1", "[1, 2"));
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, "cannot parse argument '[1, 2'"), "stderr: %s", r->err);
    free(r);
}
END_TEST

START_TEST(test_cli_watch_prints_a_full_then_delta_lines) {
    run_t *r = malloc(sizeof *r);
    run(r, 15, CLI("watch", "--count", "4"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    const char *full = strstr(r->out, " full ");
    ck_assert_msg(full != NULL, "no full snapshot line: %s", r->out);
    ck_assert_msg(strstr(full, " delta base "), "no delta line after the full one: %s", r->out);
    ck_assert_msg(strstr(r->out, "4 snapshots"), "summary missing: %s", r->out);
    ck_assert_msg(strstr(r->out, " 0 desyncs"), "desyncs: %s", r->out);
    free(r);
}
END_TEST

START_TEST(test_cli_map_draws_a_frame_with_the_own_ship) {
    run_t *r = malloc(sizeof *r);
    run(r, 15, CLI("map", "--frames", "2", "--spawn", "--radius", "200"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    ck_assert_msg(strstr(r->out, " tick "), "status line missing: %.300s", r->out);
    ck_assert_msg(strstr(r->out, "  you 1  "), "own ship not counted: %.300s", r->out);
    /* The own ship is drawn at the centre: '@' in the grid (not only in the legend). */
    const char *legend = strstr(r->out, " @ you  A NPC");
    ck_assert_ptr_nonnull(legend);
    ck_assert_msg(memchr(r->out, '@', (size_t)(legend - r->out)) != NULL, "no '@' in the frame");
    free(r);
}
END_TEST

/* A port where nobody listens: bind one, note it, close it. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

START_TEST(test_cli_refused_connection_says_so_and_exits_1) {
    run_t *r = malloc(sizeof *r);
    run(r, 10, CLI("ping"));
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, "connection refused") && strstr(r->err, "is spacesimd running"), "stderr: %s",
                  r->err);
    free(r);
}
END_TEST

START_TEST(test_cli_bad_usage_exits_2) {
    run_t *r = malloc(sizeof *r);
    run(r, 10, ((const char *const[]){SPACESIM_CLI_PATH, "-p", "99999", "ping", NULL}));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "port"), "stderr: %s", r->err);
    free(r);
}
END_TEST

/* ---------------------------------------------------------------- load */

static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *b = calloc(1, 1 << 20);
    size_t n = fread(b, 1, (1 << 20) - 1, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

START_TEST(test_load_3s_writes_a_sane_json_report) {
    run_t *r = malloc(sizeof *r);
    char json[400], svg[400];
    snprintf(json, sizeof json, "%s/report.json", g_d.dir);
    snprintf(svg, sizeof svg, "%s/report.svg", g_d.dir);
    run(r, 30, LOAD("-c", "4", "-d", "3", "--json", json, "--svg", svg, "--mix", "move=5,fire=1,mine=1,ping=2"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s\nstdout: %s", r->status, r->err, r->out);
    /* a progress line per second */
    ck_assert_msg(strstr(r->err, "[  1.0s] clients") || strstr(r->err, "s] clients 4/4"), "progress: %s", r->err);
    char *j = read_file(json);
    ck_assert_ptr_nonnull(j);
    ck_assert_double_eq(json_num(j, "clients"), 4);
    ck_assert_double_eq(json_num(j, "clients_connected"), 4);
    double sent = json_num(j, "commands_sent");
    /* 4 clients * 9 commands/s * ~3 s, minus the connection set-up */
    ck_assert_msg(sent >= 60 && sent <= 120, "commands_sent %g", sent);
    ck_assert_double_eq(json_num(j, "responses"), sent);
    double p50 = json_num(j, "p50_ms"), p99 = json_num(j, "p99_ms"), mx = json_num(j, "max_ms");
    ck_assert_msg(p50 > 0 && p50 <= p99 && p99 <= mx && mx < 2000, "p50 %g p99 %g max %g", p50, p99, mx);
    double rate = json_num(j, "snap_rate_min");
    ck_assert_msg(rate >= 10 && rate <= 25, "snap_rate_min %g (server sends 20/s)", rate);
    ck_assert_double_eq(json_num(j, "errors"), 0);
    ck_assert_msg(json_num(j, "bytes_in") > 1000, "bytes_in");
    ck_assert_msg(json_num(j, "move_count") >= 40, "move_count %g", json_num(j, "move_count"));
    ck_assert_msg(strstr(j, "\"server_stats\": {\"tick\": "), "server stats missing");
    ck_assert_msg(strstr(r->out, "p99.9") && strstr(r->out, "\n  move "), "report table: %s", r->out);
    free(j);
    char *s = read_file(svg);
    ck_assert_ptr_nonnull(s);
    ck_assert_msg(strncmp(s, "<svg", 4) == 0 && strstr(s, "<polyline") && strstr(s, "</svg>"), "svg");
    free(s);
    free(r);
}
END_TEST

START_TEST(test_load_assert_sets_the_exit_status) {
    run_t *r = malloc(sizeof *r);
    run(r, 30, LOAD("-c", "2", "-d", "1", "-q", "--assert", "p99_ms<100000,snap_rate_min>=0,errors==0"));
    ck_assert_msg(r->status == 0, "status %d: %s %s", r->status, r->out, r->err);
    ck_assert_msg(strstr(r->out, "assert p99_ms<100000") && strstr(r->out, "PASS"), "%s", r->out);
    run(r, 30, LOAD("-c", "2", "-d", "1", "-q", "--assert", "p99_ms<100000,commands_sent<1"));
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->out, "FAIL (commands_sent = "), "%s", r->out);
    run(r, 30, LOAD("-c", "1", "-d", "1", "-q", "--assert", "no_such_metric<1"));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "no metric named 'no_such_metric'"), "%s", r->err);
    run(r, 10, LOAD("-c", "1", "-d", "1", "--assert", "p99_ms~5"));
    ck_assert_int_eq(r->status, 2);
    free(r);
}
END_TEST

START_TEST(test_load_refuses_absurd_values_with_a_message) {
    run_t *r = malloc(sizeof *r);
    run(r, 10, LOAD("-c", "200000"));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "-c 200000 is out of range"), "%s", r->err);
    run(r, 10, LOAD("-d", "4000"));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "-d 4000 is out of range"), "%s", r->err);
    run(r, 10, LOAD("--mix", "move=5000"));
    ck_assert_int_eq(r->status, 2);
    run(r, 10, LOAD("--mix", "teleport=1"));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "unknown command 'teleport'"), "%s", r->err);
    free(r);
}
END_TEST

START_TEST(test_load_without_a_server_exits_2_and_says_why) {
    run_t *r = malloc(sizeof *r);
    run(r, 20, LOAD("-c", "2", "-d", "1", "-q"));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "no client got a session"), "%s", r->err);
    ck_assert_msg(strstr(r->out, "connect:ECONNREFUSED=2"), "%s", r->out);
    free(r);
}
END_TEST

/* ---------------------------------------------------------------- histogram */

START_TEST(test_hdr_buckets_are_contiguous_and_hold_their_values) {
    /* Every bucket starts right after the previous one ends, from 0 to
     * UINT64_MAX, and a value maps into the bucket whose range holds it. */
    ck_assert_uint_eq(hdr_bucket_lo(0), 0);
    for (size_t i = 1; i < HDR_BUCKETS; i++) ck_assert_uint_eq(hdr_bucket_lo(i), hdr_bucket_hi(i - 1) + 1);
    ck_assert_uint_eq(hdr_bucket_hi(HDR_BUCKETS - 1), UINT64_MAX);
    uint64_t x = 12345;
    for (int k = 0; k < 100000; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t v = x >> (x % 64);
        size_t i = hdr_index(v);
        ck_assert_uint_lt(i, HDR_BUCKETS);
        ck_assert_uint_le(hdr_bucket_lo(i), v);
        ck_assert_uint_ge(hdr_bucket_hi(i), v);
        /* relative width below 1/128 above the linear range */
        if (v >= HDR_LINEAR) ck_assert_uint_le((hdr_bucket_hi(i) - hdr_bucket_lo(i)) * 128, hdr_bucket_lo(i));
    }
}
END_TEST

START_TEST(test_hdr_percentiles_of_1_to_1e6_within_0_8_percent) {
    hdr_t *h = malloc(sizeof *h);
    hdr_init(h);
    for (uint64_t v = 1; v <= 1000000; v++) hdr_record(h, v);
    ck_assert_uint_eq(h->total, 1000000);
    const double ps[] = {50, 90, 99, 99.9};
    for (int i = 0; i < 4; i++) {
        double want = ps[i] / 100 * 1e6, got = (double)hdr_percentile(h, ps[i]);
        ck_assert_msg(got >= want && got <= want * 1.008, "p%g: %g vs %g", ps[i], got, want);
    }
    ck_assert_uint_eq(hdr_percentile(h, 100), 1000000);
    ck_assert_uint_eq(h->min, 1);
    ck_assert_uint_eq(h->max, 1000000);
    ck_assert_double_eq_tol(hdr_mean(h), 500000.5, 1e-6);
    free(h);
}
END_TEST

START_TEST(test_hdr_add_merges_counts_min_max) {
    hdr_t *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    hdr_init(a);
    hdr_init(b);
    for (int i = 0; i < 99; i++) hdr_record(a, 1000);
    hdr_record(b, 5000000);
    hdr_add(a, b);
    ck_assert_uint_eq(a->total, 100);
    /* 1000 lies in bucket [1000, 1003]: the highest equivalent value is reported */
    ck_assert_uint_eq(hdr_percentile(a, 99), 1003);
    ck_assert_uint_eq(hdr_percentile(a, 99.5), 5000000);
    ck_assert_uint_eq(a->max, 5000000);
    ck_assert_uint_eq(a->min, 1000);
    hdr_reset(a);
    ck_assert_uint_eq(a->total, 0);
    ck_assert_uint_eq(hdr_percentile(a, 50), 0);
    free(a);
    free(b);
}
END_TEST

static Suite *clients_suite(void) {
    Suite *s = suite_create("clients");
    TCase *tc;

    tc = tcase_create("cli");
    tcase_add_checked_fixture(tc, daemon_up, daemon_down);
    tcase_set_timeout(tc, sp_timeout(60));
    tcase_add_test(tc, test_cli_ping_prints_tick_as_json_and_exits_0);
    tcase_add_test(tc, test_cli_unknown_method_exits_1_with_the_servers_message);
    tcase_add_test(tc, test_cli_script_spawns_moves_and_inspects_on_one_connection);
    tcase_add_test(tc, test_cli_error_reply_in_a_script_stops_it_with_exit_1);
    tcase_add_test(tc, test_cli_malformed_json_argument_is_refused_before_sending);
    tcase_add_test(tc, test_cli_watch_prints_a_full_then_delta_lines);
    tcase_add_test(tc, test_cli_map_draws_a_frame_with_the_own_ship);
    suite_add_tcase(s, tc);

    tc = tcase_create("cli_offline");
    tcase_add_checked_fixture(tc, offline_up, offline_down);
    tcase_set_timeout(tc, sp_timeout(30));
    tcase_add_test(tc, test_cli_refused_connection_says_so_and_exits_1);
    tcase_add_test(tc, test_cli_bad_usage_exits_2);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_add_checked_fixture(tc, daemon_up, daemon_down);
    tcase_set_timeout(tc, sp_timeout(90));
    tcase_add_test(tc, test_load_3s_writes_a_sane_json_report);
    tcase_add_test(tc, test_load_assert_sets_the_exit_status);
    suite_add_tcase(s, tc);

    tc = tcase_create("load_offline");
    tcase_add_checked_fixture(tc, offline_up, offline_down);
    tcase_set_timeout(tc, sp_timeout(30));
    tcase_add_test(tc, test_load_refuses_absurd_values_with_a_message);
    tcase_add_test(tc, test_load_without_a_server_exits_2_and_says_why);
    suite_add_tcase(s, tc);

    tc = tcase_create("hdr");
    tcase_add_test(tc, test_hdr_buckets_are_contiguous_and_hold_their_values);
    tcase_add_test(tc, test_hdr_percentiles_of_1_to_1e6_within_0_8_percent);
    tcase_add_test(tc, test_hdr_add_merges_counts_min_max);
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(clients_suite)
