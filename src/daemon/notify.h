/* notify.h: tell the service manager where start-up and shutdown stand
 * (sd_notify(3), for the Type=notify unit contrib/spacesimd.service).
 *
 * Only when $NOTIFY_SOCKET is set (systemd sets it for Type=notify
 * services); otherwise, and in a build configured --without-systemd, these
 * do nothing. Best effort: a failed send is logged (warn), never fatal, as
 * the daemon itself works without a manager.
 * Threads: loop thread. Cost: one datagram on a Unix socket. */
#ifndef SP_DAEMON_NOTIFY_H
#define SP_DAEMON_NOTIFY_H

/* READY=1 with a STATUS line naming the port: call once the client socket
 * (and the metrics socket, if any) listen, so units ordered After= this one
 * can connect at once. */
void sp_notify_ready(int port);

/* STOPPING=1 with a STATUS line saying why: call when shutdown begins
 * (before the checkpoint and the flush, which can take seconds). */
void sp_notify_stopping(const char *why);

#endif /* SP_DAEMON_NOTIFY_H */
