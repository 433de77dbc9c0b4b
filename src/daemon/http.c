/* http.c: HTTP + WebSocket on --http-port with libwebsockets, on the
 * daemon's own libuv loop.
 *
 * lws gets the daemon's loop as a foreign loop (LWS_SERVER_OPTION_LIBUV +
 * foreign_loops): its sockets and timers are handles of that loop, its
 * callbacks run on the loop thread between ticks like every other callback,
 * and there is no second loop and no thread per client. Debian ships lws's
 * libuv glue as a plugin (libwebsockets-evlib-uv) loaded by
 * lws_create_context(); configure checks that it loads.
 *
 * What is served (one vhost):
 *   /ws       WebSocket, subprotocol "spacesim": the MessagePack-RPC of the
 *             TCP port, one MessagePack message per binary message. Each
 *             connection is a net.c connection (sp_net_ws_*), so sessions,
 *             dispatch, snapshots and every limit are the TCP ones. A
 *             browser's Origin must name this server's Host (another web
 *             page may not drive a player's browser into the game).
 *   /metrics  the Prometheus text (metrics.c), rendered per request.
 *   /         files of --web-root (default PKGDATADIR/web), index.html by
 *             default, with lws's security headers (a Content-Security-
 *             Policy that forbids inline script and style: the page's
 *             JavaScript and CSS are files).
 * Anything else is lws's 404.
 *
 * Ownership: d->http (the context) is created by sp_http_start and destroyed
 * by sp_http_stop. A /metrics response body is owned by its connection's
 * per-session data until written or the connection closes. lws owns every
 * connection; a WebSocket's sp_conn_t follows net.h's reference rule.
 *
 * Errors: start-up failures are logged and return SP_EIO; a failing request
 * costs only its connection. */
#include "daemon/http.h"

#include <libwebsockets.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/net.h"
#include "spacesim/error.h"

#ifndef SP_WEBDIR
#define SP_WEBDIR "/usr/local/share/spacesim/web"
#endif

/* Per connection (lws allocates and frees it): a WebSocket's connection, or
 * an HTTP response body still to write. */
typedef struct pss {
    sp_conn_t *c;
    unsigned char *body; /* LWS_PRE + len bytes */
    size_t len;
} pss_t;

static sp_daemon_t *daemon_of(struct lws *wsi) { return lws_context_user(lws_get_context(wsi)); }

/* lws's own warnings and errors go to the daemon's log. */
static void lws_emit(int level, const char *line) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", line);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
    if (level & LLL_ERR) SP_LOGW("http: %s", buf);
    else SP_LOGI("http: %s", buf);
}

/* The host part of an Origin ("http://host:port") equals the Host header. */
static bool origin_ok(struct lws *wsi) {
    char origin[256], host[256];
    if (lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0) return true; /* not a browser */
    if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0) return false;
    const char *o = strstr(origin, "://");
    return o != NULL && strcmp(o + 3, host) == 0;
}

static int serve_metrics(struct lws *wsi, pss_t *p) {
    char *text;
    size_t len;
    if (sp_metrics_render(daemon_of(wsi), &text, &len) != 0)
        return lws_return_http_status(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR, NULL) ? -1 : 0;
    p->body = malloc(LWS_PRE + len);
    if (p->body == NULL) {
        free(text);
        return -1;
    }
    memcpy(p->body + LWS_PRE, text, len);
    p->len = len;
    free(text);
    unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *q = start, *end = hdr + sizeof hdr - 1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4", p->len, &q, end) ||
        lws_finalize_write_http_header(wsi, start, &q, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int on_lws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    pss_t *p = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64];
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/ws") != 0) return -1;
        return origin_ok(wsi) ? 0 : -1;
    }
    case LWS_CALLBACK_ESTABLISHED:
        p->c = sp_net_ws_open(&daemon_of(wsi)->net, wsi, (int)lws_get_socket_fd(wsi));
        return p->c ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        if (p->c == NULL) return -1;
        sp_net_ws_rx(p->c, in, len, lws_frame_is_binary(wsi) != 0, lws_is_first_fragment(wsi) != 0,
                     lws_is_final_fragment(wsi) != 0);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p->c ? sp_net_ws_writable(p->c) : -1;
    case LWS_CALLBACK_CLOSED:
        if (p->c) sp_net_ws_closed(p->c);
        p->c = NULL;
        return 0;
    case LWS_CALLBACK_HTTP: { /* /metrics, or a URL no mount took */
        char uri[64];
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) > 0 && strcmp(uri, "/metrics") == 0)
            return serve_metrics(wsi, p);
        return lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL) || lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (p == NULL || p->body == NULL) break;
        int r = lws_write(wsi, p->body + LWS_PRE, p->len, LWS_WRITE_HTTP_FINAL);
        free(p->body);
        p->body = NULL;
        if (r < (int)p->len) return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (p) {
            free(p->body);
            p->body = NULL;
        }
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* The mounts must outlive the context (lws keeps pointers): one context per
 * process, so static. Written by sp_http_start only. */
static struct lws_http_mount g_mounts[2];

static const struct lws_protocols protocols[] = {
    /* rx_buffer_size: the largest fragment handed to one RECEIVE; a longer
     * message arrives in pieces, framed across them by net.c. */
    {"http", on_lws, sizeof(pss_t), 0, 0, NULL, 0},
    {"spacesim", on_lws, sizeof(pss_t), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int sp_http_start(sp_daemon_t *d) {
    if (d->conf.http_port == 0) return 0;
    const char *bind = d->conf.http_bind[0] ? d->conf.http_bind : d->conf.bind;
    const char *root = d->conf.web_root[0] ? d->conf.web_root : SP_WEBDIR;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_emit);
    memset(g_mounts, 0, sizeof g_mounts);
    struct lws_http_mount *files = &g_mounts[0], *metrics = &g_mounts[1];
    metrics->mountpoint = "/metrics";
    metrics->mountpoint_len = (unsigned char)strlen(metrics->mountpoint);
    metrics->origin = "http";
    metrics->protocol = "http";
    metrics->origin_protocol = LWSMPRO_CALLBACK;
    metrics->mount_next = files;
    files->mountpoint = "/";
    files->mountpoint_len = 1;
    files->origin = root;
    files->def = "index.html";
    files->origin_protocol = LWSMPRO_FILE;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[1] = {d->loop};
    info.foreign_loops = loops;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE;
    if (strchr(bind, ':') == NULL) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = d->conf.http_port;
    info.iface = bind;
    info.protocols = protocols;
    info.mounts = metrics;
    info.user = d;
    info.timeout_secs = 10; /* an HTTP request (headers, body) must go this fast */
    /* lws sizes its fd tables by this (16 bytes a descriptor): by default
     * the process's whole RLIMIT_NOFILE, 16 MiB where that is 2^20. Every
     * client, TCP or WebSocket, is one descriptor and --max-clients bounds
     * them; the rest leaves room for HTTP requests and the daemon's own. */
    struct rlimit rl;
    rlim_t fds = (rlim_t)d->conf.max_clients + 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < fds) fds = rl.rlim_cur;
    info.fd_limit_per_thread = (unsigned int)fds;
    info.keepalive_timeout = 5;
    d->http = lws_create_context(&info);
    if (d->http == NULL) {
        SP_LOGE("cannot serve HTTP on %s:%d (port in use, bad --http-bind, or the libuv plugin of libwebsockets "
                "missing: apt-get install libwebsockets-evlib-uv)",
                bind, d->conf.http_port);
        return SP_EIO;
    }
    SP_LOGI("web view on http://%s:%d/ (files from %s), /metrics, WebSocket /ws", bind, d->conf.http_port, root);
    return 0;
}

void sp_http_stop(sp_daemon_t *d) {
    if (d->http == NULL) return;
    lws_context_destroy(d->http);
    d->http = NULL;
}
