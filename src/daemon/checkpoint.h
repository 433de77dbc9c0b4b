/* checkpoint.h: atomic world checkpoints and strict resume (checkpoint.c).
 *
 * Threads: loop thread (the periodic write's file work runs on libuv's
 * threadpool). Returns: 0 or a negative SP_E* code, the reason logged. */
#ifndef SP_DAEMON_CHECKPOINT_H
#define SP_DAEMON_CHECKPOINT_H

#include "daemon/daemon.h"

/* Before sp_checkpoint_load: make sure conf.checkpoint can be saved and is
 * this daemon's alone. Takes an exclusive flock(2) on PATH.lock (created in
 * PATH's directory, which proves the directory exists and is writable, and
 * never removed: the kernel drops the lock when the process dies, so a
 * stale file after kill -9 stops nobody) and records this pid in it, then
 * creates and removes PATH.tmp (what every save does first). The lock is
 * held until the process exits. Returns 0; SP_EIO when the directory is
 * missing, not a directory or not writable; SP_EBUSY when another process
 * holds the lock (its pid, read from the file, is in the message). Loop
 * thread, once, at start-up; blocks on the file system only. */
int sp_checkpoint_lock(sp_daemon_t *d);
/* Synchronous checkpoint (shutdown): waits for an in-flight periodic one. */
int sp_checkpoint_write(sp_daemon_t *d);
/* Periodic checkpoint: serialize on the loop, checksum + write + fsync +
 * rename on the libuv threadpool; skipped (0) while the previous one is busy. */
int sp_checkpoint_start(sp_daemon_t *d);
/* Load conf.checkpoint into d->world and its sessions into d->detached
 * (sp_clients_restore_sessions: next_session past every id in it). 0 =
 * loaded, SP_ENOENT = no file (start a new world), other < 0 = refuse to
 * start (unreadable, not a regular file, corrupt world or sessions). Every
 * checkpoint written carries the sessions and the id counter. Opened with
 * O_NONBLOCK, so a FIFO or a device at PATH is refused instead of blocking
 * start-up in open(). */
int sp_checkpoint_load(sp_daemon_t *d);

#endif /* SP_DAEMON_CHECKPOINT_H */
