/* frames.h: publishing a snapshot round.
 *
 * Every snap_every ticks (loop.c) sp_frames_publish() starts a round
 * (round.h). On the loop it costs only sp_world_capture(): a memcpy of the
 * per-slot arrays a frame needs into a reusable buffer (~60 bytes per slot;
 * ~0.5 ms at 100k), plus preparing the round's snapshot jobs and its AI
 * round. The rest runs on workers: the build job (HIGH) runs
 * sp_frame_build() from the capture (id sort, quantization, spatial index:
 * ~4 ms at 100k), gives the capture back to a small pool, then submits the
 * round's AI chunks and snapshot jobs and wakes the workers. The loop stays
 * the only writer of the world: workers see only the capture (a copy) and
 * the frame.
 *
 * Threads: loop thread. */
#ifndef SP_DAEMON_FRAMES_H
#define SP_DAEMON_FRAMES_H

#include "daemon/daemon.h"

/* Capture buffers kept for reuse (the build gives them back). */
#define SP_FRAMES_SPARE_CAPTURES 4

int sp_frames_init(sp_daemon_t *d);
void sp_frames_destroy(sp_daemon_t *d);
/* After the pool is freed: dispose of the builds still waiting in the chain
 * (their rounds' jobs are cancelled) and of the last round. Loop. */
void sp_frames_stop(sp_daemon_t *d);
/* Start the round of the current tick. */
void sp_frames_publish(sp_daemon_t *d);
/* A gateway's round: a frame made elsewhere (gateway.c's merge; the
 * reference passes to the round), its snapshots prepared and dispatched at
 * once (no capture, no build, no AI). Loop. */
void sp_frames_publish_frame(sp_daemon_t *d, sp_frame_t *f);
/* Wake the workers for the round just published; the loop calls it after the
 * tick's work and accounting (a woken worker may take the loop's CPU for a
 * while: better after the tick than inside it). */
void sp_frames_kick(sp_daemon_t *d);

#endif /* SP_DAEMON_FRAMES_H */
