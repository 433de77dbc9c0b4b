/* metrics.c: Prometheus text exposition on a tiny HTTP/1.0 listener.
 *
 * Same loop as everything else (no thread): a scrape reads counters the loop
 * owns. Each connection reads one request (at most 4 KiB, else closed),
 * answers GET /metrics (anything else: 404) with Connection: close and closes.
 * At most 16 scrape connections at once, so a metrics client cannot eat
 * memory. Off unless --metrics-port is given. */
#include "daemon/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/methods.h"
#include "spacesim/error.h"
#include "daemon/snapshots.h"

typedef struct mconn {
    uv_tcp_t tcp;
    sp_daemon_t *d;
    char req[4096];
    size_t len;
    bool answered;
} mconn_t;

static void m_close_cb(uv_handle_t *h) {
    mconn_t *m = h->data;
    m->d->metrics_conns--;
    free(m);
}

static void m_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
    (void)sz;
    mconn_t *m = h->data;
    *b = uv_buf_init(m->req + m->len, (unsigned)(sizeof m->req - m->len));
}

typedef struct mwrite {
    uv_write_t req;
    char *body;
} mwrite_t;

static void m_written(uv_write_t *w, int status) {
    (void)status;
    mwrite_t *mw = (mwrite_t *)w;
    free(mw->body);
    uv_close((uv_handle_t *)w->handle, m_close_cb);
    free(mw);
}

typedef struct strbuf {
    char *p;
    size_t len, cap;
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
        if (np == NULL) return;
        s->p = np;
        s->cap = cap;
    }
}

static char *render(sp_daemon_t *d, size_t *len_out) {
    sp_dstats_t *st = &d->st;
    strbuf_t s = {0};
    sb_printf(&s, "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nConnection: close\r\n\r\n");
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
#define COUNTER(name, help, v)                                                                      \
    sb_printf(&s, "# HELP spacesim_" name " " help "\n# TYPE spacesim_" name " counter\nspacesim_" name " %llu\n", \
              (unsigned long long)(v))
#define GAUGE(name, help, v) \
    sb_printf(&s, "# HELP spacesim_" name " " help "\n# TYPE spacesim_" name " gauge\nspacesim_" name " %g\n", (double)(v))
    COUNTER("tick_overruns_total", "Ticks longer than the tick period.", st->overruns);
    COUNTER("ticks_total", "Simulation ticks run.", st->ticks);
    GAUGE("clients", "Connected clients.", d->net.nconns);
    COUNTER("clients_accepted_total", "Connections accepted.", st->clients_total);
    COUNTER("bytes_out_total", "Bytes queued to clients.", st->bytes_out);
    COUNTER("bytes_in_total", "Request bytes received.", st->bytes_in);
    GAUGE("bytes_out_per_second", "Bytes sent per second over the last second.", st->bytes_out_per_sec);
    COUNTER("snapshots_sent_total", "Snapshots handed to client sockets.", st->snapshots_sent);
    COUNTER("snapshots_skipped_total", "Snapshots skipped because a client was over its output limit.",
            st->snapshots_skipped);
    COUNTER("kicks_total", "Clients disconnected by the server.", st->kicks);
    COUNTER("rate_kicks_total", "Clients kicked for staying over their command rate.", st->rate_kicks);
    COUNTER("commands_total", "Client requests handled.", st->commands);
    GAUGE("commands_per_second", "Requests per second over the last second.", st->cmds_per_sec);
    GAUGE("time_dilation", "Game seconds per wall second (1 = real time).", st->dilation);
    GAUGE("entities", "Live entities in the world.", sp_world_count(d->world));
    GAUGE("worker_job_queue_depth", "Jobs waiting for a worker.", sp_pool_queued(d->pool));
    GAUGE("worker_result_queue_depth", "Worker results waiting for the loop.", sp_methods_result_depth(d));
    COUNTER("worker_messages_total", "SpaceMessages from workers applied to the world.", st->worker_msgs);
    COUNTER("checkpoints_total", "Checkpoints written.", st->checkpoints);
    COUNTER("events_dropped_total", "Events never delivered to a client that kept skipping snapshots.",
            sp_snapshots_events_dropped(d));
    COUNTER("ai_stalls_total", "NPC AI rounds not done at their application tick (that step waited; the loop kept serving).",
            st->ai_stalls);
    GAUGE("ai_stall_seconds_max", "Longest wait for an NPC AI round.", (double)st->ai_stall_ns_max / 1e9);
#undef COUNTER
#undef GAUGE
    *len_out = s.len;
    return s.p;
}

static void m_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    (void)b;
    mconn_t *m = st->data;
    if (m->answered) return;
    if (n < 0) {
        uv_close((uv_handle_t *)st, m_close_cb);
        return;
    }
    m->len += (size_t)n;
    if (m->len >= sizeof m->req) {
        uv_close((uv_handle_t *)st, m_close_cb);
        return;
    }
    m->req[m->len] = '\0';
    if (strstr(m->req, "\r\n\r\n") == NULL && strstr(m->req, "\n\n") == NULL) return;
    m->answered = true;
    uv_read_stop(st);
    size_t len = 0;
    char *body;
    if (strncmp(m->req, "GET /metrics ", 13) == 0 || strncmp(m->req, "GET / ", 6) == 0) {
        body = render(m->d, &len);
    } else {
        const char *nf = "HTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\nonly /metrics here\n";
        len = strlen(nf);
        body = strdup(nf);
    }
    mwrite_t *mw = malloc(sizeof *mw);
    if (body == NULL || mw == NULL) {
        free(body);
        free(mw);
        uv_close((uv_handle_t *)st, m_close_cb);
        return;
    }
    mw->body = body;
    uv_buf_t wb = uv_buf_init(body, (unsigned)len);
    if (uv_write(&mw->req, st, &wb, 1, m_written) != 0) {
        free(body);
        free(mw);
        uv_close((uv_handle_t *)st, m_close_cb);
    }
}

static void m_conn(uv_stream_t *server, int status) {
    sp_daemon_t *d = server->data;
    if (status < 0) return;
    mconn_t *m = calloc(1, sizeof *m);
    if (m == NULL) return;
    uv_tcp_init(d->loop, &m->tcp);
    m->tcp.data = m;
    m->d = d;
    d->metrics_conns++;
    if (uv_accept(server, (uv_stream_t *)&m->tcp) != 0 || d->metrics_conns > 16) {
        uv_close((uv_handle_t *)&m->tcp, m_close_cb);
        return;
    }
    uv_read_start((uv_stream_t *)&m->tcp, m_alloc, m_read);
}

int sp_metrics_listen(sp_daemon_t *d) {
    int r = sp_listen_tcp(d->loop, &d->metrics, d->conf.bind, d->conf.metrics_port, 16, m_conn);
    if (r < 0) {
        SP_LOGE("cannot listen for metrics on %s:%d: %s", d->conf.bind, d->conf.metrics_port, uv_strerror(r));
        return SP_EIO;
    }
    d->metrics.data = d;
    d->metrics_on = true;
    SP_LOGI("metrics on http://%s:%d/metrics", d->conf.bind, d->conf.metrics_port);
    return 0;
}

void sp_metrics_close(sp_daemon_t *d) {
    if (!d->metrics_on) return;
    d->metrics_on = false;
    uv_close((uv_handle_t *)&d->metrics, NULL);
}
