/* session.h: a player's session: who it is, what it may do, what it owns.
 *
 * One per connection (the connection is net's, the session this module's,
 * the view snapshots.c's: clients.c ties the three together). A session
 * starts NEW at connect (only ping and hello allowed) and becomes READY with
 * a successful hello. Its ships are in the world with owner == id; the
 * session keeps their ids to find them and to bound them (MAX_SHIPS).
 *
 * Ending: when its connection ends, sp_session_end() removes its ships from
 * the world: the session decides, at that moment, never as a side effect of
 * memory being freed. (At shutdown sessions are not ended: their ships are
 * checkpointed as they are.)
 *
 * Threads: loop thread only (the world's writer). */
#ifndef SP_DAEMON_SESSION_H
#define SP_DAEMON_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"
#include "sim/world.h"

typedef enum sp_session_state {
    SP_SESSION_NEW = 0, /* connected; only ping and hello allowed */
    SP_SESSION_READY,   /* hello done: a session, gets snapshots */
} sp_session_state_t;

typedef struct sp_session {
    uint32_t id;        /* >= 1, never reused in a run (entity owner field) */
    uint8_t state;      /* sp_session_state_t */
    bool admin;         /* hello gave the admin token */
    char name[SP_LIMIT_MAX_NAME_BYTES + 1]; /* control bytes replaced by '?' */
    uint64_t ships[SP_LIMIT_MAX_SHIPS];
    int nships;
    /* Rate limit: a token bucket, one token per message. */
    double tokens;
    uint64_t tokens_ns;
} sp_session_t;

/* A NEW session with a full bucket of `burst` tokens at now_ns. */
void sp_session_init(sp_session_t *s, uint32_t id, double burst, uint64_t now_ns);

/* Take one token (refilled at rate per second up to burst); false when the
 * bucket is empty (the message must not run). O(1). */
bool sp_session_take_token(sp_session_t *s, uint64_t now_ns, double rate, double burst);

/* hello: record the name (len <= MAX_NAME_BYTES bytes; control bytes become
 * '?', so log lines stay one line) and the admin flag; READY. */
void sp_session_hello(sp_session_t *s, const char *name, size_t len, bool admin);

/* Forget ships that no longer exist (destroyed in combat). O(ships). */
void sp_session_prune_ships(sp_session_t *s, const sp_world_t *w);

/* Record a new ship. Returns 0, or SP_ELIMIT at MAX_SHIPS. */
int sp_session_add_ship(sp_session_t *s, uint64_t ship);

/* The session is over: its ships leave the world. */
void sp_session_end(sp_session_t *s, sp_world_t *w);

#endif /* SP_DAEMON_SESSION_H */
