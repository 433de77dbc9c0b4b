/* snapshots.h: shared snapshot rounds (issue 9) and events, as pool jobs.
 *
 * Snapshots are encoded per interest cell, once per round, whoever sees the
 * cell (icells.h, wire2.md); a client's snapshot is a few bytes of its own
 * around references to the shared chunks, written with writev (net.h's
 * sp_conn_sendv), never re-encoded per client. A round's *phase*:
 *   prepare   (loop, at the round's start) per READY client: a client whose
 *             previous snapshot is still in flight, that owes cost (fair
 *             share, below) or that is over its soft output limit skips the
 *             round (the over-limit ones counted; the next snapshot is taken
 *             against what it really received) and keeps the round's events
 *             for later (snapstate.h: pend); every other one gets a job with a
 *             copy of its interest, its view and its events. The round is
 *             queued for the store: at most two rounds are in flight (one
 *             holding the store, one waiting), a third has no snapshots at all
 *             (d->snap_rounds_late, stats' snapshot_rounds_late). A round
 *             built while the previous one's client jobs still read the store
 *             waits for them instead of being dropped, so one slow view delays
 *             the others' next snapshot by at most its own job, never a round.
 *   dispatch  (the build job, a worker, or the thread whose client job was
 *             the last to leave the store) sp_icells_begin(): what changed since
 *             the previous round, per cell; then up to UPDATE_MAX_JOBS update
 *             jobs (HIGH) re-encode the touched cells' contents and delta
 *             chunks, in parallel; the last one to finish ends the store's
 *             round and submits the client jobs (LOW), cheapest first.
 *   client    (a worker) the client's centres in the frame, its visible
 *             events packed, sp_icells_snapshot(): its chunks by reference;
 *             its done (loop) hands the bytes to the socket and only then
 *             makes the new view the client's baseline.
 * The loop only decides and delivers; every per-cell and per-client pass
 * runs on the workers. At most SP_SNAP_MAX_EVENTS events ride with one
 * snapshot (the newest; the rest are counted as dropped).
 *
 * Fair share (issue 7), in cost units: a snapshot costs the entities of the
 * full cells it carries (newly seen cells, or cells re-sent after a skip or
 * resync) plus one per cell of the view (its bookkeeping); the shared delta
 * chunks it references cost it nothing more. Every round pays back
 * conf.snap_budget (B) of what a client owes, and it gets no job while it
 * owes (deficit round robin). So:
 *   rate      a view in steady state (cells << B) gets every round, however
 *             many entities it holds; one that is filling up gets a snapshot
 *             every ceil(cost / B) rounds; nobody's cost delays the others'
 *   entering  at most B entities enter a view per snapshot, in whole cells,
 *             nearest cells first (always at least one cell); the rest enter
 *             in later snapshots (the view then holds a subset of cells, and
 *             the baseline is exactly what was sent)
 *   order     a round's jobs are dispatched cheapest first (by last cost)
 *   resync    a full snapshot asked by `resync` goes out at most once per
 *             conf.resync_secs of game time per client; resyncs meanwhile
 *             coalesce into it (deltas continue until then).
 * tests/net/check_fairness holds these promises.
 *
 * Threads: prepare/cancel/init/destroy on the loop; dispatch on any thread. */
#ifndef SP_DAEMON_SNAPSHOTS_H
#define SP_DAEMON_SNAPSHOTS_H

#include "daemon/daemon.h"
#include "daemon/round.h"

#define SP_SNAP_MAX_EVENTS 4096

/* The pool scratch slot of the cell scratch (icells.h; airound.c uses 1). */
#define SP_SNAP_SCRATCH_SLOT 0

/* The cell store of d's world (conf.interest_cell): before the workers
 * start. Returns 0, SP_EINVAL or SP_ENOMEM. Loop. */
int sp_snapshots_init(sp_daemon_t *d);
/* After the pool is freed. Loop. */
void sp_snapshots_destroy(sp_daemon_t *d);
/* After the pool is freed: dispose of the rounds still waiting for the
 * store (their jobs' dones run: the connections they held are released).
 * Loop. */
void sp_snapshots_stop(sp_daemon_t *d);
/* The pool's scratch_free (frees the cell scratch of its slot). */
void sp_snapshots_scratch_free(unsigned slot, void *p);

/* Make the round's snapshot jobs (into r->snap) and the skips. Loop. */
void sp_snapshots_prepare(sp_daemon_t *d, sp_round_t *r);
/* r is built (r->frame set, or NULL when the build failed: its jobs then
 * fail and give their events back): its store update and then its jobs run
 * as soon as the store is free (at once, or when the previous round's
 * client jobs are done with it). Any thread. */
void sp_snapshots_dispatch(sp_daemon_t *d, sp_round_t *r);
/* The round will never be built (shutdown): dispose of its prepared jobs. Loop. */
void sp_snapshots_cancel(sp_daemon_t *d, sp_round_t *r);
/* Events never delivered to clients (pending bound + per-snapshot cap). Loop. */
uint64_t sp_snapshots_events_dropped(const sp_daemon_t *d);

#endif /* SP_DAEMON_SNAPSHOTS_H */
