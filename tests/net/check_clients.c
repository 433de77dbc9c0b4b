/* tests/net/check_clients.c: spacesim-cli and spacesim-load as real
 * subprocesses against a real spacesimd (issue 4), plus unit tests of the
 * log-linear histogram spacesim-load reports from; issue 12: the interactive
 * mode, sleep/wait-ticks, the watch rate, the map legend, getopt_long and the
 * man pages, the chart and --hdr outputs, and Lua scenarios.
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

/* A daemon that disconnects a client silent for 2 s (its ping reminder
 * comes after 0.5 s of silence). */
static void daemon_up_idle(void) {
    static const char *const args[] = {"--demo-asteroids", "50", "--demo-npcs", "2", "--world-size", "1000",
                                       "--checkpoint-every", "0", "--idle-timeout", "2", NULL};
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

/* Run argv (NULL-terminated) with a deadline; capture its output. stdin is
 * the file `in` (NULL: /dev/null, so no test ever reads the terminal). */
static void run_in(run_t *r, double timeout_s, const char *const *argv, const char *in);
static void run(run_t *r, double timeout_s, const char *const *argv) { run_in(r, timeout_s, argv, NULL); }

static void run_in(run_t *r, double timeout_s, const char *const *argv, const char *in) {
    char outp[400], errp[400];
    snprintf(outp, sizeof outp, "%s/out.txt", g_d.dir);
    snprintf(errp, sizeof errp, "%s/err.txt", g_d.dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int i = open(in ? in : "/dev/null", O_RDONLY);
        dup2(i, 0);
        dup2(o, 1);
        dup2(e, 2);
        close(i);
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

/* Write text to DIR/name; returns the path (static buffer per call site use). */
static void write_text(char *path, size_t n, const char *name, const char *text) {
    snprintf(path, n, "%s/%s", g_d.dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
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
    /* Several frames: the first snapshots read after the spawn's answer can
     * predate the ship (issue 7, point 10), so the test looks at the first
     * frame that counts it, not at the first frame. */
    run(r, 15, CLI("map", "--frames", "6", "--spawn", "--radius", "200"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    ck_assert_msg(strstr(r->out, " tick "), "status line missing: %.300s", r->out);
    const char *you = strstr(r->out, "  you 1  ");
    ck_assert_msg(you != NULL, "own ship not counted: %.300s", r->out);
    /* The own ship is drawn at the centre: '@' in that frame's grid (the
     * status line comes first, the legend last). */
    const char *legend = strstr(you, " @ you  A NPC");
    ck_assert_ptr_nonnull(legend);
    ck_assert_msg(memchr(you, '@', (size_t)(legend - you)) != NULL, "no '@' in the frame");
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
    ck_assert_msg(p50 > 0 && p50 <= p99 && p99 <= mx, "p50 %g p99 %g max %g", p50, p99, mx);
    /* Rates are checked for sense, not speed (a starved machine delivers
     * fewer): every client got snapshots, none more than the server's 20/s
     * (plus the window's rounding), and the minimum is not above the median. */
    double rate = json_num(j, "snap_rate_min"), median = json_num(j, "snap_rate_median");
    ck_assert_msg(rate > 0 && rate <= median && median <= 25, "snap_rate_min %g median %g (server sends 20/s)", rate,
                  median);
    ck_assert_double_eq(json_num(j, "errors"), 0);
    ck_assert_msg(json_num(j, "bytes_in") > 1000, "bytes_in");
    ck_assert_msg(json_num(j, "move_count") >= 40, "move_count %g", json_num(j, "move_count"));
    ck_assert_msg(strstr(j, "\"server_stats\": {\"tick\": "), "server stats missing");
    ck_assert_msg(strstr(r->out, "p99.9") && strstr(r->out, "\n  move "), "report table: %s", r->out);
    /* issue 9 point 4: two loop threads by default, and the generator's own
     * CPU beside its figures (per thread; their sum is the total). */
    ck_assert_double_eq(json_num(j, "load_threads"), 2);
    double c0 = json_num(j, "load_cpu_pct_thread0"), c1 = json_num(j, "load_cpu_pct_thread1");
    double cpu = json_num(j, "load_cpu_pct");
    ck_assert_msg(c0 > 0 && c1 > 0 && fabs(cpu - (c0 + c1)) < 0.01 * cpu + 1e-3, "load cpu %g = %g + %g", cpu, c0, c1);
    ck_assert_msg(json_num(j, "load_cpu_pct_thread_max") == (c0 > c1 ? c0 : c1), "thread max");
    ck_assert_msg(strstr(r->out, "load generator cpu: ") && strstr(r->out, "thread 1 "), "cpu line: %s", r->out);
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

/* ---------------------------------------------------------------- issue 12: cli */

/* Position x of the first "pos": [x, ...] at or after p; NAN if none. */
static double pos_x(const char *p) {
    const char *q = p ? strstr(p, "\"pos\": [") : NULL;
    return q ? strtod(q + 8, NULL) : NAN;
}

START_TEST(test_issue_12_cli_wait_ticks_shows_the_ship_moving) {
    run_t *r = malloc(sizeof *r);
    /* The README example: after wait-ticks the server has stepped the ship. */
    run(r, 20, CLI("-e", "spawn; move $ship_id [10,0,0]; inspect $ship_id; wait-ticks 30; inspect $ship_id"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    const char *first = strstr(r->out, "\"kind\": \"ship\"");
    ck_assert_ptr_nonnull(first);
    const char *second = strstr(first + 1, "\"kind\": \"ship\"");
    ck_assert_msg(second != NULL, "second inspect missing: %s", r->out);
    double x0 = pos_x(first), x1 = pos_x(second);
    ck_assert_msg(isfinite(x0) && isfinite(x1) && x1 > x0 + 1, "x %g then %g: %s", x0, x1, r->out);
    /* sleep is a step too; bad arguments are refused with a usage line. */
    run(r, 20, CLI("-e", "sleep 0.05; ping"));
    ck_assert_msg(r->status == 0 && strstr(r->out, "{\"tick\": "), "status %d: %s %s", r->status, r->out, r->err);
    run(r, 20, CLI("-e", "wait-ticks many"));
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, "usage: wait-ticks N"), "stderr: %s", r->err);
    free(r);
}
END_TEST

START_TEST(test_issue_12_cli_interactive_keeps_one_session_across_lines) {
    run_t *r = malloc(sizeof *r);
    char in[400];
    /* Piped stdin: no prompt, one line at a time. The ship spawned by line 1
     * is moved by line 3: the same connection, the same session. An error
     * reply (line 2) prints and the session goes on, as in redis-cli. */
    write_text(in, sizeof in, "lines.txt",
               "spawn\nwarp_drive 9\nmove $ship_id [0,5,0]; inspect $ship_id\nhelp\nquit\nping\n");
    run_in(r, 20, CLI("-n", "tester"), in);
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    ck_assert_msg(strstr(r->out, "{\"ship_id\": "), "stdout: %s", r->out);
    ck_assert_msg(strstr(r->err, "(error) METHOD_NOT_FOUND"), "stderr: %s", r->err);
    ck_assert_msg(strstr(r->out, "\ntrue\n"), "move after the error failed: %s / %s", r->out, r->err);
    /* move answered true: only the owner's session may move a ship (FORBIDDEN otherwise) */
    const char *sid = strstr(r->out, "{\"ship_id\": ");
    char want[64];
    snprintf(want, sizeof want, "{\"id\": %llu, \"kind\": \"ship\"", strtoull(sid + 12, NULL, 10));
    ck_assert_msg(strstr(r->out, want), "inspect of the spawned ship (%s): %s", want, r->out);
    ck_assert_msg(strstr(r->out, "wait-ticks N"), "help: %s", r->out);
    ck_assert_msg(strstr(r->out, "{\"tick\": ") == NULL, "a command after quit ran: %s", r->out);
    /* End of input ends the session cleanly too. */
    write_text(in, sizeof in, "eof.txt", "ping");
    run_in(r, 20, CLI("--no-hello"), in);
    ck_assert_msg(r->status == 0 && strstr(r->out, "{\"tick\": "), "status %d: %s %s", r->status, r->out, r->err);
    free(r);
}
END_TEST

START_TEST(test_issue_12_cli_watch_rate_counts_the_real_window) {
    run_t *r = malloc(sizeof *r);
    run(r, 20, CLI("watch", "--count", "6"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    const char *p = strstr(r->out, "6 snapshots, ");
    ck_assert_ptr_nonnull(p);
    const char *q = strstr(p, " s (");
    ck_assert_ptr_nonnull(q);
    double rate = strtod(q + 4, NULL);
    /* The server sends 20 snapshots/s: 5 intervals over the span from the
     * first to the last (counting from before the first gave 30+). */
    ck_assert_msg(rate >= 12 && rate <= 28, "rate %g: %s", rate, p);
    ck_assert_msg(strstr(p, "snapshots/s over "), "%s", p);
    free(r);
}
END_TEST

START_TEST(test_issue_12_map_legend_names_every_key_within_80_columns) {
    run_t *r = malloc(sizeof *r);
    run(r, 15, CLI("map", "--frames", "1", "--radius", "300"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    const char *l1 = strstr(r->out, " @ you");
    ck_assert_msg(l1 != NULL, "legend missing: %.300s", r->out);
    const char *e1 = strstr(l1, "\r\n");
    ck_assert_ptr_nonnull(e1);
    const char *l2 = e1 + 2, *e2 = l2 + strcspn(l2, "\r\n");
    ck_assert_msg(e1 - l1 <= 80 && e2 - l2 <= 80, "legend lines %td and %td columns", e1 - l1, e2 - l2);
    static const char *const names[] = {"@ you", "A NPC", "P other player", "* projectile", ". small",
                                        "o large asteroid", NULL};
    static const char *const keys[] = {"+ - zoom", "arrows or h j k l pan", "c recentre", "q quit", NULL};
    for (int i = 0; names[i]; i++)
        ck_assert_msg(memmem(l1, (size_t)(e1 - l1), names[i], strlen(names[i])), "glyph '%s' unnamed", names[i]);
    for (int i = 0; keys[i]; i++)
        ck_assert_msg(memmem(l2, (size_t)(e2 - l2), keys[i], strlen(keys[i])), "key '%s' unnamed", keys[i]);
    free(r);
}
END_TEST

START_TEST(test_issue_12_cli_getopt_long_forms_and_help) {
    run_t *r = malloc(sizeof *r);
    run(r, 10, ((const char *const[]){SPACESIM_CLI_PATH, "--help", NULL}));
    ck_assert_int_eq(r->status, 0);
    ck_assert_msg(strstr(r->out, "-h, --host HOST") && strstr(r->out, "Interactive mode:"), "%s", r->out);
    run(r, 10, ((const char *const[]){SPACESIM_CLI_PATH, "--port=99999", "ping", NULL}));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "-p needs a port 1..65535, got '99999'"), "%s", r->err);
    run(r, 10, ((const char *const[]){SPACESIM_CLI_PATH, "--frobnicate", NULL}));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "unknown option '--frobnicate'") && strstr(r->err, "--help"), "%s", r->err);
    run(r, 10, ((const char *const[]){SPACESIM_CLI_PATH, "watch", "--count", NULL}));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "needs N"), "%s", r->err);
    run(r, 10, ((const char *const[]){SPACESIM_LOAD_PATH, "--version", NULL}));
    ck_assert_msg(r->status == 0 && strncmp(r->out, "spacesim-load ", 14) == 0, "%s", r->out);
    run(r, 10, ((const char *const[]){SPACESIM_LOAD_PATH, "--clients=0", NULL}));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "-c 0 is out of range"), "%s", r->err);
    free(r);
}
END_TEST

START_TEST(test_issue_12_cli_sleep_and_prompt_outlive_the_idle_timeout) {
    run_t *r = malloc(sizeof *r);
    char in[400];
    /* 3 s of silence from the user against a 2 s idle timeout: the CLI
     * answers the server's ping reminder, so the ship is still ours. */
    run(r, 30, CLI("-e", "spawn; sleep 3; inspect $ship_id"));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    ck_assert_msg(strstr(r->out, "\"kind\": \"ship\""), "stdout: %s", r->out);
    /* The interactive mode waits for the next line the same way; a pipe
     * that only ends after 3 s stands in for a user who thinks. */
    write_text(in, sizeof in, "slow.sh", "printf 'spawn\\n'; sleep 3; printf 'inspect $ship_id\\n'");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "/bin/sh '%s' | '%s' -p %s", in, SPACESIM_CLI_PATH, g_port);
    run(r, 30, ((const char *const[]){"/bin/sh", "-c", cmd, NULL}));
    ck_assert_msg(r->status == 0, "status %d, stderr: %s", r->status, r->err);
    ck_assert_msg(strstr(r->out, "\"kind\": \"ship\""), "stdout: %s", r->out);
    free(r);
}
END_TEST

/* ---------------------------------------------------------------- issue 12: man pages */

/* Each installed page renders with no warning from man/groff, and every
 * long option --help lists is in the page (both come from one table; this
 * proves the build wrote the page from the binary it tests). */
static void check_page(const char *prog, const char *page) {
    run_t *r = malloc(sizeof *r);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l '%s' >/dev/null", page);
    run(r, 30, ((const char *const[]){"/bin/sh", "-c", cmd, NULL}));
    ck_assert_msg(r->status == 0, "man exit %d for %s: %s", r->status, page, r->err);
    ck_assert_msg(r->err[0] == '\0', "man warnings for %s:\n%s", page, r->err);
    char *text = read_file(page);
    ck_assert_ptr_nonnull(text);
    run(r, 10, ((const char *const[]){prog, "--help", NULL}));
    ck_assert_int_eq(r->status, 0);
    int n = 0;
    /* Option lines: "  -h, --host HOST ..." or "      --raw ...". */
    for (const char *line = r->out; *line; line += strcspn(line, "\n") + (line[strcspn(line, "\n")] != 0)) {
        if (strncmp(line, "  -", 3) != 0 && strncmp(line, "      --", 8) != 0) continue;
        const char *p = strstr(line, "--");
        if (!p || p - line > 10) continue;
        p += 2;
        char opt[64], roff[160];
        size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz-");
        if (len == 0 || len >= sizeof opt) continue;
        memcpy(opt, p, len);
        opt[len] = '\0';
        /* In roff every '-' is written \- */
        size_t k = (size_t)snprintf(roff, sizeof roff, "\\fB\\-\\-");
        for (size_t i = 0; i < len && k + 3 < sizeof roff; i++) {
            if (opt[i] == '-') roff[k++] = '\\';
            roff[k++] = opt[i];
        }
        roff[k] = '\0';
        ck_assert_msg(strstr(text, roff), "--%s is in %s --help but not in %s", opt, prog, page);
        n++;
    }
    ck_assert_msg(n >= 8, "only %d long options found in --help", n);
    free(text);
    free(r);
}

START_TEST(test_issue_12_man_pages_render_without_warnings_and_match_help) {
    check_page(SPACESIM_CLI_PATH, SPACESIM_BUILDDIR "/clients/spacesim-cli.1");
    check_page(SPACESIM_LOAD_PATH, SPACESIM_BUILDDIR "/clients/spacesim-load.1");
}
END_TEST

/* ---------------------------------------------------------------- issue 12: load */

START_TEST(test_issue_12_load_hdr_and_chart_outputs) {
    run_t *r = malloc(sizeof *r);
    char hdr[400], svg[400], svg2[400], json[400];
    snprintf(hdr, sizeof hdr, "%s/run.hgrm", g_d.dir);
    snprintf(svg, sizeof svg, "%s/run.svg", g_d.dir);
    snprintf(svg2, sizeof svg2, "%s/log.svg", g_d.dir);
    snprintf(json, sizeof json, "%s/run.json", g_d.dir);
    run(r, 30, LOAD("-c", "3", "-d", "2", "-q", "--hdr", hdr, "--svg", svg, "--json", json, "--assert",
                    "p99_ms<100000,snap_rate_min>=1"));
    ck_assert_msg(r->status == 0, "status %d: %s %s", r->status, r->out, r->err);
    char *h = read_file(hdr), *j = read_file(json);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_nonnull(j);
    /* HdrHistogram's percentile distribution text: header, rows, footer. */
    ck_assert_msg(strncmp(h, "       Value     Percentile TotalCount 1/(1-Percentile)\n\n", 57) == 0, "%.200s", h);
    ck_assert_msg(strstr(h, " 1.000000000000 "), "no 100%% row: %s", h);
    const char *foot = strstr(h, "#[Max     = ");
    ck_assert_msg(foot && strstr(h, "#[Mean    = ") && strstr(h, "#[Buckets = "), "%s", h);
    const char *tc = strstr(foot, "Total count    = ");
    ck_assert_ptr_nonnull(tc);
    ck_assert_double_eq(strtod(tc + 17, NULL), json_num(j, "responses"));
    /* Rows: values and counts never decrease. */
    double lastv = -1, lastc = -1;
    int rows = 0;
    for (const char *p = strchr(h, '\n') + 2; *p && *p != '#'; p = strchr(p, '\n') + 1) {
        char *e;
        double v = strtod(p, &e), pc = strtod(e, &e), c = strtod(e, &e);
        ck_assert_msg(v >= lastv && c >= lastc && pc >= 0 && pc <= 1, "row %d: %.60s", rows, p);
        lastv = v;
        lastc = c;
        rows++;
    }
    ck_assert_int_ge(rows, 3);
    char *s = read_file(svg);
    ck_assert_ptr_nonnull(s);
    ck_assert_msg(strstr(s, "class=\"assert\"") && strstr(s, "assert p99_ms<100000") &&
                      strstr(s, "assert snap_rate_min>=1"), "threshold lines missing");
    /* Round ticks: the top panel's axis labels are 1/2/5 multiples ("20000"). */
    ck_assert_msg(strstr(s, ">20000</text>") || strstr(s, ">100000</text>"), "ticks: %.2000s", s);
    free(s);
    run(r, 30, LOAD("-c", "2", "-d", "1", "-q", "--svg", svg2, "--log-latency"));
    ck_assert_msg(r->status == 0, "status %d: %s", r->status, r->err);
    s = read_file(svg2);
    ck_assert_msg(s && strstr(s, "(log scale)"), "no log scale caption");
    free(s);
    free(h);
    free(j);
    free(r);
}
END_TEST

static void run_scenario(const char *name, const char *check_metric) {
    run_t *r = malloc(sizeof *r);
    char path[600], json[400];
    snprintf(path, sizeof path, "%s/clients/scenarios/%s", SPACESIM_SRCDIR, name);
    snprintf(json, sizeof json, "%s/%s.json", g_d.dir, name);
    run(r, 40, LOAD("-c", "4", "-d", "3", "-q", "-s", path, "--json", json, "--assert", "errors==0"));
    ck_assert_msg(r->status == 0, "%s: status %d\n%s\n%s", name, r->status, r->out, r->err);
    char *j = read_file(json);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(json_num(j, "clients_connected") == 4, "%s", j);
    ck_assert_msg(json_num(j, "scenario_hooks") > 10, "hooks %g", json_num(j, "scenario_hooks"));
    ck_assert_msg(json_num(j, "commands_sent") > 0 && json_num(j, "responses") == json_num(j, "commands_sent"),
                  "sent %g answered %g", json_num(j, "commands_sent"), json_num(j, "responses"));
    ck_assert_msg(json_num(j, check_metric) > 0, "%s: %s = %g", name, check_metric, json_num(j, check_metric));
    ck_assert_msg(strstr(j, "\"scenario\": \""), "scenario not named in the JSON");
    free(j);
    free(r);
}

START_TEST(test_issue_12_load_example_scenarios_run_clean) {
    run_scenario("patrol.lua", "move_count");
    run_scenario("miner.lua", "move_count");
}
END_TEST

START_TEST(test_issue_12_load_script_error_names_file_line_and_exits_2) {
    run_t *r = malloc(sizeof *r);
    char bad[400], syn[400];
    write_text(bad, sizeof bad, "bad.lua",
               "timer = 0.1\n"
               "function on_timer(client)\n"
               "  client:move(1, 0, 0)\n"
               "  client:move('fast', 0, 0)\n"
               "end\n");
    run(r, 30, LOAD("-c", "2", "-d", "5", "-q", "-s", bad));
    ck_assert_msg(r->status == 2, "status %d: %s", r->status, r->err);
    ck_assert_msg(strstr(r->err, "bad.lua:4: bad argument #1 to 'move'"), "stderr: %s", r->err);
    ck_assert_msg(strstr(r->err, "stopping the run"), "stderr: %s", r->err);
    /* stopped cleanly: the report is printed, and it counts the script error */
    ck_assert_msg(strstr(r->out, "script_error=1"), "stdout: %s", r->out);
    write_text(syn, sizeof syn, "syntax.lua", "function setup(c)\n  x = = 1\nend\n");
    run(r, 10, LOAD("-c", "1", "-d", "1", "-q", "-s", syn));
    ck_assert_int_eq(r->status, 2);
    ck_assert_msg(strstr(r->err, "syntax.lua:2:"), "stderr: %s", r->err);
    ck_assert_str_eq(r->out, "");
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
    tcase_add_test(tc, test_issue_12_cli_wait_ticks_shows_the_ship_moving);
    tcase_add_test(tc, test_issue_12_cli_interactive_keeps_one_session_across_lines);
    tcase_add_test(tc, test_issue_12_cli_watch_rate_counts_the_real_window);
    tcase_add_test(tc, test_issue_12_map_legend_names_every_key_within_80_columns);
    suite_add_tcase(s, tc);

    tc = tcase_create("cli_idle");
    tcase_add_checked_fixture(tc, daemon_up_idle, daemon_down);
    tcase_set_timeout(tc, sp_timeout(60));
    tcase_add_test(tc, test_issue_12_cli_sleep_and_prompt_outlive_the_idle_timeout);
    suite_add_tcase(s, tc);

    tc = tcase_create("cli_offline");
    tcase_add_checked_fixture(tc, offline_up, offline_down);
    tcase_set_timeout(tc, sp_timeout(30));
    tcase_add_test(tc, test_cli_refused_connection_says_so_and_exits_1);
    tcase_add_test(tc, test_cli_bad_usage_exits_2);
    tcase_add_test(tc, test_issue_12_cli_getopt_long_forms_and_help);
    tcase_add_test(tc, test_issue_12_man_pages_render_without_warnings_and_match_help);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_add_checked_fixture(tc, daemon_up, daemon_down);
    tcase_set_timeout(tc, sp_timeout(90));
    tcase_add_test(tc, test_load_3s_writes_a_sane_json_report);
    tcase_add_test(tc, test_load_assert_sets_the_exit_status);
    tcase_add_test(tc, test_issue_12_load_hdr_and_chart_outputs);
    tcase_add_test(tc, test_issue_12_load_example_scenarios_run_clean);
    tcase_add_test(tc, test_issue_12_load_script_error_names_file_line_and_exits_2);
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
