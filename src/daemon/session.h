/* session.h: a player's session: who it is, what it may do, what it owns.
 *
 * One per connection (the connection is net's, the session this module's,
 * the view snapshots.c's: clients.c ties the three together). A session
 * starts NEW at connect (only ping and hello allowed) and becomes READY with
 * a successful hello. Its ships are in the world with owner == id; the
 * session keeps their ids to find them and to bound them (MAX_SHIPS).
 *
 * Ids: 1..SP_SESSION_ID_MAX, handed out in order and never reused, also
 * across restarts (the counter is checkpointed); they do not wrap: past the
 * last one a connection gets id 0 and a fresh hello answers LIMIT (a resume
 * still works: it takes its old id back).
 *
 * Surviving a dropped connection (issue 7). hello hands the client a resume
 * token (SP_RESUME_TOKEN_CHARS hex characters of getrandom() bytes); the
 * session keeps only its SHA-256 (digest.h), never the token. When the
 * connection ends, clients.c detaches the session: its part that outlives
 * the connection (sp_session_rec_t: id, name, ships, token hash) goes into a
 * table of detached sessions with a deadline, the ships stay in the world,
 * owned and unsteerable; a later hello with the token takes the record back
 * (sp_session_resume); past the deadline sp_session_rec_end() removes the
 * ships. The ending is always decided by the session's owner at that moment,
 * never a side effect of memory being freed. (At shutdown sessions are not
 * ended: they are checkpointed, detached or not, and detached again at the
 * next start.)
 *
 * Threads: loop thread only (the world's writer). */
#ifndef SP_DAEMON_SESSION_H
#define SP_DAEMON_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/digest.h"
#include "rpc.h"
#include "sim/world.h"

typedef enum sp_session_state {
    SP_SESSION_NEW = 0, /* connected; only ping and hello allowed */
    SP_SESSION_READY,   /* hello done: a session, gets snapshots */
} sp_session_state_t;

/* Session ids: 1..this. UINT32_MAX is never one (the world's checkpoints
 * refuse it as a projectile's owner), so a uint32 counter never wraps. */
#define SP_SESSION_ID_MAX (UINT32_MAX - 1u)
/* A resume token on the wire: hex of 32 random bytes. */
#define SP_RESUME_TOKEN_CHARS 64

typedef struct sp_session {
    uint32_t id;        /* 1..SP_SESSION_ID_MAX, never reused; 0 = ids exhausted */
    uint8_t state;      /* sp_session_state_t */
    bool admin;         /* hello gave the admin token */
    char name[SP_LIMIT_MAX_NAME_BYTES + 1]; /* control bytes replaced by '?' */
    uint64_t ships[SP_LIMIT_MAX_SHIPS];
    int nships;
    uint64_t gw_added_tick;     /* gateway: the merged tick when a ship was last added (a ship
                                 * not merged yet is not pruned: gateway.c) */
    uint8_t token_hash[SP_SHA256_BYTES]; /* SHA-256 of the resume token (READY) */
    /* Rate limit: a token bucket, one token per message (net asks for it
     * before it frames a message: see dispatch.h, check 0). */
    double tokens;
    uint64_t tokens_ns;
} sp_session_t;

/* A NEW session with a full bucket of `burst` tokens at now_ns. */
void sp_session_init(sp_session_t *s, uint32_t id, double burst, uint64_t now_ns);

/* Take one token from the bucket (refilled at rate per second, rate > 0, up
 * to burst). Returns 0 when one was taken, else the nanoseconds until one is
 * due (>= 1; nothing taken): the message must wait that long. O(1). */
uint64_t sp_session_take_token(sp_session_t *s, uint64_t now_ns, double rate, double burst);

/* Is name[0..len) valid UTF-8 (RFC 3629: shortest forms, no surrogates, at
 * most U+10FFFF)? hello refuses other names: they would reach log lines and
 * other clients' views as raw bytes. O(len). */
bool sp_session_name_ok(const char *name, size_t len);

/* hello: record the name (len <= MAX_NAME_BYTES bytes of valid UTF-8; C0 and
 * C1 control characters become '?', so log lines stay one line), the admin
 * flag and the hash of the session's new resume token; READY. */
void sp_session_hello(sp_session_t *s, const char *name, size_t len, bool admin,
                      const uint8_t token_hash[SP_SHA256_BYTES]);

/* A new resume token: SP_RESUME_TOKEN_CHARS lowercase hex characters and a
 * NUL in tok (from getrandom(): 256 bits), its SHA-256 in hash. Returns 0, or
 * SP_EIO when the kernel gives no randomness (no token then). The caller
 * sends tok once and wipes it; only hash is kept. */
int sp_session_new_token(char tok[SP_RESUME_TOKEN_CHARS + 1], uint8_t hash[SP_SHA256_BYTES]);

/* The hash a presented token is looked up by. */
void sp_session_token_hash(const char *tok, size_t len, uint8_t hash[SP_SHA256_BYTES]);

/* Forget ships that no longer exist (destroyed in combat). O(ships). */
void sp_session_prune_ships(sp_session_t *s, const sp_world_t *w);

/* Record a new ship. Returns 0, or SP_ELIMIT at MAX_SHIPS. */
int sp_session_add_ship(sp_session_t *s, uint64_t ship);

/* The session is over: its ships leave the world. */
void sp_session_end(sp_session_t *s, sp_world_t *w);

/* ---------------------------------------------------------------- detached */

/* The part of a session that outlives its connection: kept while detached
 * and in checkpoints. Never the token, only its hash; never admin (a
 * resumed session is admin only if its new hello gives the admin token). */
typedef struct sp_session_rec {
    uint32_t id;
    char name[SP_LIMIT_MAX_NAME_BYTES + 1];
    uint8_t token_hash[SP_SHA256_BYTES];
    uint64_t ships[SP_LIMIT_MAX_SHIPS];
    int nships;
    uint64_t expires_ns;    /* detached: its ships are removed at this time */
} sp_session_rec_t;

/* Copy what outlives the connection out of a READY session into *r, with
 * the deadline expires_ns. s is left as it was. */
void sp_session_detach(const sp_session_t *s, uint64_t expires_ns, sp_session_rec_t *r);
/* Take a detached session's identity back: id, name, ships, token hash
 * (the caller then gives it a new token with sp_session_hello). The rate
 * limit stays this connection's. */
void sp_session_resume(sp_session_t *s, const sp_session_rec_t *r);
/* A detached session that will not come back: its ships leave the world. */
void sp_session_rec_end(sp_session_rec_t *r, sp_world_t *w);

/* The checkpoint form of a record (little-endian): id u32 | name length u8
 * | name | token hash (32) | ship count u8 | ship ids u64 each. */
size_t sp_session_rec_size(const sp_session_rec_t *r);
/* Write r at p (sp_session_rec_size(r) bytes); returns p past it. */
uint8_t *sp_session_rec_put(uint8_t *p, const sp_session_rec_t *r);
/* Read one record from [*p, end) into *r (expires_ns 0) and advance *p.
 * Returns 0, or SP_ECORRUPT (truncated, id 0 or over SP_SESSION_ID_MAX,
 * name empty, too long or not UTF-8, too many ships). */
int sp_session_rec_get(const uint8_t **p, const uint8_t *end, sp_session_rec_t *r);

/* Detached sessions: an unordered array (a few hundred bytes each; at most
 * --max-clients of them after a run, plus those of a checkpoint). */
typedef struct sp_session_table {
    sp_session_rec_t *v;
    size_t n, cap;
} sp_session_table_t;

void sp_sessions_destroy(sp_session_table_t *t);
/* Append a copy of *r. Returns 0 or SP_ENOMEM (table unchanged). */
int sp_sessions_add(sp_session_table_t *t, const sp_session_rec_t *r);
/* The index of the record whose token hash is hash, or -1. Compares every
 * record in constant time (the time depends on n only). O(n). */
long sp_sessions_find(const sp_session_table_t *t, const uint8_t hash[SP_SHA256_BYTES]);
/* Remove record i (the last one takes its place), copying it to *out
 * (out may be NULL). */
void sp_sessions_remove(sp_session_table_t *t, size_t i, sp_session_rec_t *out);
/* The index of the record with the earliest deadline; -1 when empty. */
long sp_sessions_soonest(const sp_session_table_t *t);

#endif /* SP_DAEMON_SESSION_H */
