/* round.h: one snapshot round: the frame of tick T and what shares it.
 *
 * Every snap_every ticks the loop captures the world (frames.c); a worker
 * builds the immutable frame from the capture, and the round's jobs read it:
 * the NPC AI chunks (airound.c) and one snapshot per client (snapshots.c),
 * together with the events of the ticks since the previous round.
 *
 * Lifetime: reference counted. The loop holds one while it sets the round
 * up, the AI round one until it is applied, each job one until its done.
 * `frame` is written once, by the build job, before it submits the round's
 * other jobs (the pool's queue push publishes it); NULL if the build failed.
 * `snap` is the loop's list of prepared snapshot jobs, handed to the pool
 * by the build job (and emptied then).
 *
 * Threads: retain/release from any thread. */
#ifndef SP_DAEMON_ROUND_H
#define SP_DAEMON_ROUND_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/events.h"
#include "daemon/pool.h"
#include "sim/frame.h"
#include "sim/world.h"

typedef struct sp_round {
    _Atomic uint32_t refs;
    uint64_t tick;            /* world tick of the capture */
    sp_world_capture_t *cap;  /* filled by the loop; the build gives it back */
    const sp_frame_t *frame;  /* see above */
    const sp_frame_t *ghosts; /* cluster: the neighbours' ships near the border at the round's
                               * start (one reference; NULL: none), for the fighters' AI */
    sp_evset_t *events;       /* the round's events (one reference); NULL when none */
    sp_pool_job_t **snap;     /* prepared snapshot jobs (see above) */
    size_t nsnap;
    /* The round's cell-store update (snapshots.c): its jobs (an array made
     * by prepare, NULL for a round without snapshots; freed with the round),
     * how many have not finished their work (workers: the last one ends the
     * store's round and submits the snapshot jobs), how many submitted
     * client jobs have not finished theirs (the last one hands the store to
     * the next round), and whether the update started and the store's begin
     * failed. */
    void *cells_jobs;
    _Atomic uint32_t cells_left;
    _Atomic uint32_t readers_left;
    bool cells_dispatched, cells_failed;
    bool cells_built;         /* its frame is ready (d->snap_mu: snapshots.c) */
} sp_round_t;

/* A new round of tick with one reference (the caller's); NULL on OOM. */
sp_round_t *sp_round_new(uint64_t tick);
void sp_round_retain(sp_round_t *r);
/* The last release frees the frame, the capture (if never built), the
 * events and the snap list (which must be empty by then). */
void sp_round_release(sp_round_t *r);

#endif /* SP_DAEMON_ROUND_H */
