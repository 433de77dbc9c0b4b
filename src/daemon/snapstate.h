/* snapstate.h: one client's snapshot state: its area of interest, the view
 * it really received, and the events it still has to get.
 *
 * Owned by snapshots.c, which alone writes it (the `subscribe` and `resync`
 * methods go through sp_snapstate_subscribe/resync); clients.c creates and
 * destroys it with the client.
 *
 *   view       the baseline: exactly what was handed to the socket in the
 *              last snapshot (NULL: the next one is full)
 *   pending    a snapshot job for this client is in flight (at most one)
 *   debt       fair share (snapshots.h): entities this client's snapshots
 *              cost beyond its budget, paid back by snap_budget per round;
 *              it gets no snapshot job while debt remains
 *   cost       entities in its area of interest at its last snapshot (the
 *              job's cost; jobs of a round are dispatched cheapest first)
 *   full_tick  tick of the last full snapshot it received (resync limit)
 *   pend       events of rounds the client skipped (over its output limit,
 *              or its previous snapshot still being encoded), oldest first:
 *              shared event sets, delivered (filtered by interest) with the
 *              next snapshot it really gets. At most SP_PEND_ROUNDS; past
 *              that the oldest is dropped and its visible events counted.
 *
 * Threads: loop thread; a snapshot job reads a copy of the interest and the
 * view (read-only while the job runs: pending == true). */
#ifndef SP_DAEMON_SNAPSTATE_H
#define SP_DAEMON_SNAPSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/events.h"
#include "snapshot.h"

#define SP_PEND_ROUNDS 64

typedef struct sp_snapstate {
    double radius;              /* interest radius (subscribe; DEFAULT_RADIUS before) */
    double centre[3];           /* subscribe centre, used while the session owns no ship */
    sp_snap_list_t *view;       /* see above */
    bool pending;
    bool need_full;             /* resync asked: a full snapshot once the resync interval allows */
    bool had_full;              /* full_tick is set */
    uint64_t full_tick;
    uint64_t debt;              /* entities (see above) */
    uint64_t cost;              /* entities (see above) */
    uint64_t sent;              /* snapshots handed to the socket */
    uint64_t skipped;           /* snapshots skipped: over the soft output limit */
    sp_evset_t *pend[SP_PEND_ROUNDS];
    int npend;
} sp_snapstate_t;

void sp_snapstate_init(sp_snapstate_t *s, double radius);
/* Release the view and the pending event sets. */
void sp_snapstate_destroy(sp_snapstate_t *s);
/* subscribe: a new area of interest (radius already checked). */
void sp_snapstate_subscribe(sp_snapstate_t *s, double radius, const double centre[3]);
/* resync: a full snapshot, the next one at least --resync-interval after
 * the previous full one (resyncs meanwhile coalesce into it). */
void sp_snapstate_resync(sp_snapstate_t *s);

#endif /* SP_DAEMON_SNAPSTATE_H */
