/* metrics.h: Prometheus text exposition on --metrics-port (metrics.c).
 *
 * Threads: loop thread. Returns 0 or SP_EIO (cannot listen; logged). */
#ifndef SP_DAEMON_METRICS_H
#define SP_DAEMON_METRICS_H

#include "daemon/daemon.h"

int sp_metrics_listen(sp_daemon_t *d);
void sp_metrics_close(sp_daemon_t *d);

#endif /* SP_DAEMON_METRICS_H */
