/* loop.h: the daemon's life: start-up, the fixed-rate tick, time dilation,
 * housekeeping, signals and shutdown (loop.c has the whole story).
 *
 * Threads: loop thread (the one that calls sp_daemon_run). */
#ifndef SP_DAEMON_LOOP_H
#define SP_DAEMON_LOOP_H

#include "daemon/daemon.h"

/* After the configuration is filled: the loop, the tick period, stats, the
 * RPC server's callbacks; SIGHUP and SIGUSR1 ignored until sp_daemon_run
 * handles them (a long checkpoint load is not killed by a logrotate).
 * Allocates nothing that can fail. */
void sp_daemon_init(sp_daemon_t *d);
/* With d->world set: handle the signals (SIGTERM/SIGINT shut down, SIGHUP
 * reopens --log-file, SIGUSR1 checkpoints; before the port file is
 * written), start the workers, listen, tick until shut down.
 * Returns the process exit code (SP_EXIT_*). */
int sp_daemon_run(sp_daemon_t *d);
/* Stop accepting and reading, write the final checkpoint, flush the clients
 * (at most 2 s), then stop. A second call exits at once. */
void sp_daemon_shutdown(sp_daemon_t *d, const char *why);
/* The demo world's respawn (--demo-npcs, --demo-asteroids): once a second
 * up to 2% of the NPCs (at least 2) and as many asteroids, toward those
 * numbers. A cluster daemon tops up only its share, the numbers times the
 * fraction of the cells it owns (rounded up), and its world's region keeps
 * the spawns in its cells; called again when that fraction changed.
 * Returns the per-second count of each kind. */
uint32_t sp_daemon_set_respawn(sp_daemon_t *d);
/* Free what sp_daemon_init set up (after sp_daemon_run returned). */
void sp_daemon_destroy(sp_daemon_t *d);

#endif /* SP_DAEMON_LOOP_H */
