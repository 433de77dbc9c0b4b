/* metrics.h: the Prometheus text exposition (metrics.c), served at /metrics
 * on --http-port by http.c.
 *
 * Threads: loop thread (the counters are the loop's). */
#ifndef SP_DAEMON_METRICS_H
#define SP_DAEMON_METRICS_H

#include "daemon/daemon.h"

/* The exposition text (format 0.0.4) of the daemon's metrics and the
 * process_* metrics, without any HTTP. Returns 0 with *text a malloc'd
 * buffer of *len bytes (not NUL-terminated; the caller frees it), or
 * SP_ENOMEM (nothing to free). Cost: ~4 KiB of formatting, reads
 * /proc/self/stat, /proc/stat and lists /proc/self/fd. */
int sp_metrics_render(sp_daemon_t *d, char **text, size_t *len);

#endif /* SP_DAEMON_METRICS_H */
