/* metrics.c: the Prometheus text exposition (served at /metrics by http.c).
 *
 * Only the text is built here; http.c's libwebsockets server serves it on
 * --http-port, with the web view, on the same loop. Names follow Prometheus's
 * conventions: base units in the name (_seconds, _bytes), counters end in
 * _total and are never replaced by precomputed per-second gauges, the
 * process_* metrics of the client libraries, spacesim_build_info.
 *
 * Same loop as everything else (no thread): a scrape reads counters the loop
 * owns. */
#include "daemon/metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "daemon/methods.h"
#include "daemon/snapshots.h"
#include "rpc.h"
#include "spacesim/error.h"

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom; /* a growth failed: the text is incomplete */
} strbuf_t;

static void sb_printf(strbuf_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf_t *s, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (s->p && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = s->cap ? s->cap * 2 : 8192;
        while (cap < s->len + (size_t)n + 1) cap *= 2;
        char *np = realloc(s->p, cap);
        if (np == NULL) {
            s->oom = true;
            return;
        }
        s->p = np;
        s->cap = cap;
    }
}

/* ---------------------------------------------------------------- process_* */

/* The process metrics every Prometheus client library exports, from
 * /proc/self (Linux; on a read failure the metric is left out rather than
 * reported as 0). Field numbers: proc(5), /proc/[pid]/stat. */
static void render_process(strbuf_t *s) {
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and ')': fields 3.. start
     * after the last ')'. */
    char *p = strrchr(buf, ')');
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    if (p && tck > 0 &&
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
               &utime, &stime, &start, &vsize, &rss) == 5) {
        sb_printf(s, "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
                     "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n",
                  (double)(utime + stime) / (double)tck);
        sb_printf(s, "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                     "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n", vsize);
        sb_printf(s, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                     "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n",
                  rss * (long long)page);
        /* Start time: boot time (btime of /proc/stat) + start ticks after boot. */
        FILE *ps = fopen("/proc/stat", "r");
        unsigned long long btime = 0;
        char line[256];
        while (ps && fgets(line, sizeof line, ps))
            if (sscanf(line, "btime %llu", &btime) == 1) break;
        if (ps) fclose(ps);
        if (btime)
            sb_printf(s, "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
                         "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
                      (double)btime + (double)start / (double)tck);
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        long entries = 0;
        while (readdir(dir))
            entries++;
        closedir(dir);
        long fds = entries - 3; /* not ".", ".." nor the descriptor opendir held */
        sb_printf(s, "# HELP process_open_fds Number of open file descriptors.\n"
                     "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n", fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        sb_printf(s, "# HELP process_max_fds Maximum number of open file descriptors.\n"
                     "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
}

/* ---------------------------------------------------------------- spacesim_* */

int sp_metrics_render(sp_daemon_t *d, char **text, size_t *len) {
    sp_dstats_t *st = &d->st;
    strbuf_t s = {0};
    sb_printf(&s, "# HELP spacesim_build_info Version of spacesimd and of its wire protocol.\n"
                  "# TYPE spacesim_build_info gauge\nspacesim_build_info{version=\"%s\",protocol=\"%d\"} 1\n",
              SPACESIMD_VERSION, SP_PROTO_VERSION);
    sb_printf(&s, "# HELP spacesim_tick_seconds Duration of simulation ticks.\n# TYPE spacesim_tick_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < SP_HIST_BUCKETS; i++) {
        cum += st->hist[i];
        sb_printf(&s, "spacesim_tick_seconds_bucket{le=\"%g\"} %llu\n", sp_tick_hist_le_ms[i] / 1000.0,
                  (unsigned long long)cum);
    }
    cum += st->hist[SP_HIST_BUCKETS];
    sb_printf(&s, "spacesim_tick_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    sb_printf(&s, "spacesim_tick_seconds_sum %.9f\nspacesim_tick_seconds_count %llu\n", st->tick_ns_sum / 1e9,
              (unsigned long long)st->ticks);
#define COUNTER(name, help, v)                                                                               \
    sb_printf(&s, "# HELP spacesim_" name " " help "\n# TYPE spacesim_" name " counter\nspacesim_" name " %llu\n", \
              (unsigned long long)(v))
#define COUNTER_F(name, help, v)                                                                           \
    sb_printf(&s, "# HELP spacesim_" name " " help "\n# TYPE spacesim_" name " counter\nspacesim_" name " %.9g\n", \
              (double)(v))
#define GAUGE(name, help, v) \
    sb_printf(&s, "# HELP spacesim_" name " " help "\n# TYPE spacesim_" name " gauge\nspacesim_" name " %.9g\n", (double)(v))
    /* Rates are the scraper's job (rate() over counters), never gauges
     * precomputed over a window the scraper does not know. Time dilation
     * is rate(spacesim_game_seconds_total) (game seconds per wall second). */
    COUNTER("ticks_total", "Simulation ticks run.", st->ticks);
    COUNTER("tick_overruns_total", "Ticks longer than the tick period.", st->overruns);
    COUNTER_F("game_seconds_total", "Game time simulated, in seconds (its rate is the time dilation).",
              (double)st->ticks * (double)d->wdef.dt);
    GAUGE("tick_period_seconds", "Nominal tick period (the budget of one tick).", 1.0 / d->conf.tick_hz);
    GAUGE("clients", "Connected clients.", d->net.nconns);
    COUNTER("clients_accepted_total", "Connections accepted.", st->clients_total);
    COUNTER("kicks_total", "Clients disconnected by the server (limits, bad input).", st->kicks);
    COUNTER("rate_kicks_total", "Clients kicked for staying over their command rate.", st->rate_kicks);
    COUNTER("sent_bytes_total", "Bytes queued to client sockets.", st->bytes_out);
    COUNTER("received_bytes_total", "Request bytes received from clients.", st->bytes_in);
    COUNTER("commands_total", "Client requests handled.", st->commands);
    COUNTER("snapshots_sent_total", "Snapshots handed to client sockets.", st->snapshots_sent);
    COUNTER("snapshot_sent_bytes_total", "Bytes of the snapshots handed to client sockets.", st->snapshot_bytes);
    COUNTER("snapshots_skipped_total", "Snapshots skipped because a client was over its output limit.",
            st->snapshots_skipped);
    COUNTER("snapshot_rounds_late_total", "Snapshot rounds nobody got: two earlier rounds were still being encoded.",
            d->snap_rounds_late);
    COUNTER("events_sent_total", "Events delivered to clients.", st->events_sent);
    COUNTER("events_dropped_total", "Events never delivered to a client that kept skipping snapshots.",
            sp_snapshots_events_dropped(d));
    GAUGE("entities", "Live entities in the world.", sp_world_count(d->world));
    GAUGE("worker_job_queue_depth", "Jobs waiting for a worker.", sp_pool_queued(d->pool));
    GAUGE("worker_result_queue_depth", "Worker results waiting for the loop.", sp_methods_result_depth(d));
    COUNTER("worker_messages_total", "SpaceMessages from workers applied to the world.", st->worker_msgs);
    COUNTER("checkpoints_total", "Checkpoints written.", st->checkpoints);
    COUNTER("ai_stalls_total", "NPC AI rounds not done at their application tick (that step waited; the loop kept serving).",
            st->ai_stalls);
    COUNTER_F("ai_stall_seconds_total", "Wall time steps waited for their NPC AI round, in seconds.",
              (double)st->ai_stall_ns_sum / 1e9);
    if (d->cluster) {
        uint64_t cw, cw_ns, cw_max;
        sp_cluster_frontier_stats(d->cluster, &cw, &cw_ns, &cw_max);
        COUNTER("cluster_frontier_waits_total", "Steps that waited for the cluster's tick frontier (a peer behind, or its hand-offs not in).", cw);
        COUNTER_F("cluster_frontier_wait_seconds_total", "Wall time those steps waited, in seconds.", (double)cw_ns / 1e9);
        GAUGE("cluster_frontier_wait_max_seconds", "The longest single wait for the frontier, in seconds.", (double)cw_max / 1e9);
    }
    GAUGE("ai_stall_max_seconds", "Longest wait for an NPC AI round since start, in seconds.",
          (double)st->ai_stall_ns_max / 1e9);
#undef COUNTER
#undef COUNTER_F
#undef GAUGE
    render_process(&s);
    if (s.p == NULL || s.oom) {
        free(s.p);
        return SP_ENOMEM;
    }
    *text = s.p;
    *len = s.len;
    return 0;
}
