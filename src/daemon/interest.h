/* interest.h: what a client can see: its area of interest.
 *
 * A client sees every entity within `radius` of any of its ships, or of its
 * subscribe centre while it owns none (PROTOCOL.md, `subscribe`), and every
 * event within that area or that involves its session. The centres come
 * from wherever the positions are: a frame (workers, for snapshots) or the
 * live world (the loop, for pending events); sp_interest_centres() is the
 * one loop over the ships for both.
 *
 * Threads: plain data and pure functions; any thread. */
#ifndef SP_DAEMON_INTEREST_H
#define SP_DAEMON_INTEREST_H

#include <stdbool.h>
#include <stdint.h>

#include "rpc.h"
#include "sim/world.h"

/* The most centres an area of interest has: one per ship, or the centre. */
#define SP_INTEREST_MAX_CENTRES (SP_LIMIT_MAX_SHIPS + 1)

/* A copy of a client's interest, taken by the loop when a round starts. */
typedef struct sp_interest {
    uint32_t session;
    double radius;
    double centre[3];                    /* subscribe centre (used with no ship) */
    uint64_t ships[SP_LIMIT_MAX_SHIPS];  /* the session's ships */
    int nships;
} sp_interest_t;

/* Position of entity id into out[3]; false when it is not there. */
typedef bool (*sp_interest_pos_fn)(const void *src, uint64_t id, double out[3]);

/* The centres of interest: the positions (by pos) of the ships that exist,
 * or the subscribe centre when none does. Returns their count (>= 1). */
int sp_interest_centres(const sp_interest_t *in, sp_interest_pos_fn pos, const void *src,
                        double out[SP_INTEREST_MAX_CENTRES][3]);

/* Can the client see event e (its session is involved, or e happened
 * within radius of one of the nctr centres)? */
bool sp_interest_sees_event(const sp_interest_t *in, const sp_world_event_t *e,
                            const double ctr[][3], int nctr);

#endif /* SP_DAEMON_INTEREST_H */
