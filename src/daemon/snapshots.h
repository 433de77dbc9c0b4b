/* snapshots.h: per-client snapshots and events, as pool jobs.
 *
 * At a round's start (loop) sp_snapshots_prepare() decides per READY client:
 * a client whose previous snapshot is still being encoded, or that is over
 * its soft output limit, skips the round (counted; the next delta is taken
 * against what it really received) and keeps the round's events for later
 * (snapstate.h: pend); every other client gets a job holding a copy of its
 * interest, its baseline view and its events. Once the frame is built,
 * sp_snapshots_dispatch() (the build job, any thread) submits the jobs (LOW
 * priority). A job (worker) finds the client's interest centres in the
 * frame, queries the frame's spatial index, packs the visible events and
 * encodes the full or delta snapshot against the baseline; its done (loop)
 * hands the bytes to the socket and only then makes the new view the
 * client's baseline. So per-client O(N) work never runs on the loop thread.
 * At most SP_SNAP_MAX_EVENTS events ride with one snapshot (the newest; the
 * rest are counted as dropped).
 *
 * Fair share (issue 7): snapshot work runs on workers shared by everyone, so
 * a client's cost is bounded by conf.snap_budget (B, entities per round):
 *   rate     a job costs V, the entities in the client's area of interest;
 *            every round pays back B of what the client owes, and it gets no
 *            job while it owes something (deficit round robin): a view of V
 *            entities gets a snapshot every ceil(V / B) rounds, a view of at
 *            most B entities every round, whatever the others ask for;
 *   entering at most B entities enter the view per snapshot, the nearest to
 *            a centre first; the rest enter in later snapshots (the view then
 *            holds a subset, and the baseline is exactly what was sent);
 *   order    a round's jobs are dispatched cheapest first (by last cost), so
 *            small views are not queued behind big ones;
 *   resync   a full snapshot asked by `resync` goes out at most once per
 *            conf.resync_secs of game time per client; resyncs meanwhile
 *            coalesce into it (deltas continue until then).
 * The budget is per client and in entities, so an encoder that shares
 * per-cell encodings (issue 9) can honour it the same way: cells nearest
 * first up to B entering entities, and the cost of the cells a client sees.
 * Events of deferred rounds wait like those of skipped ones (snapstate.h).
 *
 * Threads: prepare/cancel on the loop; dispatch on any thread. */
#ifndef SP_DAEMON_SNAPSHOTS_H
#define SP_DAEMON_SNAPSHOTS_H

#include "daemon/daemon.h"
#include "daemon/round.h"

#define SP_SNAP_MAX_EVENTS 4096

/* Make the round's snapshot jobs (into r->snap) and the skips. Loop. */
void sp_snapshots_prepare(sp_daemon_t *d, sp_round_t *r);
/* Submit r's prepared jobs (r->frame set, or NULL when the build failed:
 * the jobs then fail and give their events back). Any thread. */
void sp_snapshots_dispatch(sp_daemon_t *d, sp_round_t *r);
/* The round will never be built (shutdown): dispose of its prepared jobs. Loop. */
void sp_snapshots_cancel(sp_daemon_t *d, sp_round_t *r);
/* Events never delivered to clients (pending bound + per-snapshot cap). Loop. */
uint64_t sp_snapshots_events_dropped(const sp_daemon_t *d);

#endif /* SP_DAEMON_SNAPSHOTS_H */
