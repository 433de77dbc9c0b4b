/* checkpoint.h: atomic world checkpoints and strict resume (checkpoint.c).
 *
 * Threads: loop thread (the periodic write's file work runs on libuv's
 * threadpool). Returns: 0 or a negative SP_E* code, the reason logged. */
#ifndef SP_DAEMON_CHECKPOINT_H
#define SP_DAEMON_CHECKPOINT_H

#include "daemon/daemon.h"

/* Synchronous checkpoint (shutdown): waits for an in-flight periodic one. */
int sp_checkpoint_write(sp_daemon_t *d);
/* Periodic checkpoint: serialize on the loop, checksum + write + fsync +
 * rename on the libuv threadpool; skipped (0) while the previous one is busy. */
int sp_checkpoint_start(sp_daemon_t *d);
/* Load conf.checkpoint into d->world and its sessions into d->detached
 * (sp_clients_restore_sessions: next_session past every id in it). 0 =
 * loaded, SP_ENOENT = no file (start a new world), other < 0 = refuse to
 * start (unreadable, not a regular file, corrupt world or sessions). Every
 * checkpoint written carries the sessions and the id counter. */
int sp_checkpoint_load(sp_daemon_t *d);

#endif /* SP_DAEMON_CHECKPOINT_H */
