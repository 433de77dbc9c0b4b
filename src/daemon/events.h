/* events.h: the world's events, gathered per snapshot round and shared.
 *
 * After each step the loop copies the step's client-visible events
 * (weapons fired, resources mined, ships destroyed; not collisions or the
 * destruction of rocks) into the round's list; at the round start they
 * become one immutable, reference-counted event set, shared by every
 * snapshot job of the round and by the pending lists of clients that skip
 * it (snapshots.c). The world records the subject's position and the other
 * party's owner, so workers can filter events by interest (interest.h).
 *
 * Threads: sp_events_t is the loop's. An sp_evset_t is immutable once taken;
 * retain/release from any thread. */
#ifndef SP_DAEMON_EVENTS_H
#define SP_DAEMON_EVENTS_H

#include <msgpack.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sim/world.h"

typedef struct sp_evset {
    _Atomic uint32_t refs;
    uint32_t n;
    sp_world_event_t ev[];
} sp_evset_t;

/* Take one more reference: the caller already holds one. Any thread. */
void sp_evset_retain(sp_evset_t *e);
/* Drop a reference (NULL is a no-op); the last one frees. Any thread. */
void sp_evset_release(sp_evset_t *e);

/* The events gathered since the last round (loop thread). At most
 * SP_EVENTS_MAX per round: beyond, events are dropped (a round of 3 ticks
 * never comes near it). */
#define SP_EVENTS_MAX (1u << 20)
typedef struct sp_events {
    sp_world_event_t *ev;
    size_t n, cap;
} sp_events_t;

void sp_events_destroy(sp_events_t *es);
/* Append the client-visible events of the step just run. Loop thread,
 * right after sp_world_step(); O(events). */
void sp_events_collect(sp_events_t *es, const sp_world_t *w);
/* Append one event (a gateway's, read from a daemon). Dropped beyond
 * SP_EVENTS_MAX or on OOM. Loop thread. */
void sp_events_push(sp_events_t *es, const sp_world_event_t *e);
/* The gathered events as a new set (one reference, the caller's), and the
 * list emptied; NULL when there were none (or out of memory: then they are
 * lost, and the log says so). Loop thread. */
sp_evset_t *sp_events_take(sp_events_t *es);

/* Append e's `event` notification (proto's packers). Returns 0 or SP_ENOMEM. */
int sp_event_pack(msgpack_packer *pk, const sp_world_event_t *e);

#endif /* SP_DAEMON_EVENTS_H */
