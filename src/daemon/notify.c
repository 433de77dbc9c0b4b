/* notify.c: sd_notify(3) messages (see notify.h). */
#include "daemon/notify.h"

#include "daemon/log.h"

#ifdef HAVE_LIBSYSTEMD
#include <string.h>
#include <systemd/sd-daemon.h>

/* sd_notify returns > 0 when sent, 0 when $NOTIFY_SOCKET is unset. The
 * variable stays set (unset_environment 0): the daemon forks no children
 * that could inherit it by mistake. */
static void report(int r, const char *what) {
    if (r < 0) SP_LOGW("sd_notify(%s) failed: %s", what, strerror(-r));
}

void sp_notify_ready(int port) { report(sd_notifyf(0, "READY=1\nSTATUS=serving on port %d", port), "READY=1"); }

void sp_notify_stopping(const char *why) {
    report(sd_notifyf(0, "STOPPING=1\nSTATUS=shutting down (%s)", why), "STOPPING=1");
}
#else
void sp_notify_ready(int port) { (void)port; }
void sp_notify_stopping(const char *why) { (void)why; }
#endif
