/* spacesim/msg.h: SpaceMessage, the fixed-size message that travels on the bus.
 *
 * A message is a small header (kind plus the ordering fields tick/origin/seq)
 * and a tagged union of the four kinds of the seed tutorial. It is trivially
 * copyable (memcpy/assignment), has no pointers and never allocates: the two
 * text fields (ResourceMined.resource_type, SystemAlert.text) are stored
 * inline with an explicit length and a terminating NUL. The seed's String
 * payloads allocated once per message; here sizeof(sp_msg_t) == 128 bytes,
 * two cache lines, checked by a static assertion.
 *
 * Constructors zero the whole message first, so padding bytes are always
 * zero: a message can be hashed or compared with memcmp after construction.
 *
 * Threads: every function here is pure (works only on its arguments); safe
 * from any thread. Nothing here allocates or blocks. */
#ifndef SPACESIM_MSG_H
#define SPACESIM_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "spacesim/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The one list of message kinds: X(ENUM_SUFFIX, wire value, Name).
 * It produces the enum below, SP_MSG_KIND_COUNT, sp_msg_kind_name() and
 * sp_msg_kind_parse(), so names and numbers never disagree. Adding a kind is
 * a row here, its payload struct and constructor, its case in
 * sp_msg_validate(), and whatever consumes it (the world applies intents).
 * Wire values are stable: never renumber, only append. */
#define SP_MSG_KIND_MAP(X)                  \
    X(SHIP_MOVEMENT, 1, ShipMovement)       \
    X(WEAPON_FIRED, 2, WeaponFired)         \
    X(RESOURCE_MINED, 3, ResourceMined)     \
    X(SYSTEM_ALERT, 4, SystemAlert)

typedef enum sp_msg_kind {
    SP_MSG_NONE = 0, /* a zeroed message; never valid */
#define SP__MSG_KIND_ENUM(suffix, value, name) SP_MSG_##suffix = (value),
    SP_MSG_KIND_MAP(SP__MSG_KIND_ENUM)
#undef SP__MSG_KIND_ENUM
} sp_msg_kind_t;

/* Number of valid kinds (4). Kinds are numbered 1..SP_MSG_KIND_COUNT. */
#define SP__MSG_KIND_ONE(suffix, value, name) +1
#define SP_MSG_KIND_COUNT (0 SP_MSG_KIND_MAP(SP__MSG_KIND_ONE))

/* Inline text limits, in bytes, not counting the terminating NUL. */
#define SP_MSG_RESOURCE_TYPE_MAX 23 /* "helium-3", "iron-ore": short identifiers */
#define SP_MSG_ALERT_MAX 95         /* one line of operator-facing text */

/* Origin of a message, for ordering. Worker threads use their worker index
 * (0..workers-1). The main loop stamps everything it injects (its own
 * messages and those decoded from client requests) with SP_MSG_ORIGIN_LOOP,
 * so at equal tick the loop's messages sort after every worker's.
 * SP_MSG_ORIGIN_NONE is what the constructors leave: "not stamped yet". */
#define SP_MSG_ORIGIN_LOOP UINT32_C(0xFFFFFFFE)
#define SP_MSG_ORIGIN_NONE UINT32_C(0xFFFFFFFF)

/* Entity ids: opaque, unique, never reused, below 2^53; 0 is null (sim/world.h). */
typedef uint64_t sp_entity_id_t;

/* Header of every message (16 bytes). */
typedef struct sp_msg_hdr {
    uint64_t tick;   /* simulation tick the message belongs to */
    uint32_t origin; /* worker index, SP_MSG_ORIGIN_LOOP or SP_MSG_ORIGIN_NONE */
    uint32_t seq;    /* per-origin sequence number, assigned by the origin */
} sp_msg_hdr_t;

typedef struct sp_msg_ship_movement {
    sp_entity_id_t ship_id; /* non-zero */
    float position[3];      /* world units (metres); finite */
    float velocity[3];      /* desired velocity, m/s, used by the NPC autopilot; finite */
} sp_msg_ship_movement_t;

typedef struct sp_msg_weapon_fired {
    sp_entity_id_t ship_id;   /* shooter, non-zero */
    sp_entity_id_t target_id; /* target; 0 = fired at nothing */
    float damage;             /* hit points; finite */
} sp_msg_weapon_fired_t;

typedef struct sp_msg_resource_mined {
    sp_entity_id_t ship_id;                           /* non-zero */
    float amount;                                     /* units mined; finite */
    uint8_t type_len;                                 /* strlen(resource_type), <= 23 */
    char resource_type[SP_MSG_RESOURCE_TYPE_MAX + 1]; /* NUL at [type_len] */
} sp_msg_resource_mined_t;

typedef struct sp_msg_system_alert {
    uint8_t priority;                 /* 0 = lowest .. 255 = highest */
    uint8_t text_len;                 /* strlen(text), <= 95 */
    char text[SP_MSG_ALERT_MAX + 1];  /* NUL at [text_len] */
} sp_msg_system_alert_t;

/* The message. Trivially copyable: plain assignment copies it completely.
 * Read the union member named by `kind` only. */
typedef struct sp_msg {
    sp_msg_hdr_t hdr;
    uint8_t kind;        /* sp_msg_kind_t */
    uint8_t reserved[7]; /* zero; keeps the union 8-aligned at offset 24 */
    union {
        sp_msg_ship_movement_t ship_movement;
        sp_msg_weapon_fired_t weapon_fired;
        sp_msg_resource_mined_t resource_mined;
        sp_msg_system_alert_t system_alert;
        uint8_t bytes[104]; /* fixes the size: the union may grow to 104 bytes */
    } u;
} sp_msg_t;

_Static_assert(sizeof(sp_msg_t) <= 128, "sp_msg_t must stay within two cache lines");
_Static_assert(sizeof(sp_msg_t) % 8 == 0, "sp_msg_t must keep 8-byte granularity");

/* ---------------------------------------------------------------- kinds */

/* Name of a kind as used on the wire: "ShipMovement", "WeaponFired",
 * "ResourceMined", "SystemAlert". Returns NULL for SP_MSG_NONE and unknown
 * values (so a caller cannot encode garbage). Static storage. */
SP_API const char *sp_msg_kind_name(int kind);

/* Parse a kind from its exact, case-sensitive name of `len` bytes (no NUL
 * needed: msgpack strings are not terminated). Returns 0 and stores the kind
 * in *out, or SP_ENOENT for an unknown name, SP_EINVAL for NULL pointers
 * (*out untouched on failure). Cost: at most SP_MSG_KIND_COUNT memcmp. */
SP_API int sp_msg_kind_parse(const char *name, size_t len, sp_msg_kind_t *out);

/* ---------------------------------------------------------------- constructors
 * Each constructor fills *m completely (zeroing it first, so padding is zero),
 * sets hdr to {tick 0, origin SP_MSG_ORIGIN_NONE, seq 0}; stamp it with
 * sp_msg_stamp(). Returns 0, or an error and leaves *m untouched:
 * SP_EINVAL for a NULL pointer, a zero ship id, a non-finite float or a text
 * with an embedded NUL; SP_EMSGSIZE for a text over the limit. */

/* ShipMovement. position is required; velocity may be NULL (zero velocity). */
SP_API int sp_msg_ship_movement(sp_msg_t *m, sp_entity_id_t ship_id, const float position[3],
                                const float velocity[3]);

/* WeaponFired. target_id may be 0 (no target). */
SP_API int sp_msg_weapon_fired(sp_msg_t *m, sp_entity_id_t ship_id, sp_entity_id_t target_id,
                               float damage);

/* ResourceMined from a NUL-terminated resource type of at most
 * SP_MSG_RESOURCE_TYPE_MAX bytes (the string is read up to 24 bytes, never
 * further, so an unterminated over-long buffer is refused safely). */
SP_API int sp_msg_resource_mined(sp_msg_t *m, sp_entity_id_t ship_id, const char *resource_type,
                                 float amount);
/* Same from `len` bytes that need no NUL (protocol decoders); an embedded NUL
 * gives SP_EINVAL. An empty type (len 0) is allowed. */
SP_API int sp_msg_resource_mined_n(sp_msg_t *m, sp_entity_id_t ship_id, const char *resource_type,
                                   size_t len, float amount);

/* SystemAlert from a NUL-terminated text of at most SP_MSG_ALERT_MAX bytes
 * (read up to 96 bytes, never further). */
SP_API int sp_msg_system_alert(sp_msg_t *m, const char *text, uint8_t priority);
/* Same from `len` bytes that need no NUL; an embedded NUL gives SP_EINVAL. */
SP_API int sp_msg_system_alert_n(sp_msg_t *m, const char *text, size_t len, uint8_t priority);

/* Set the ordering fields. Never fails. */
SP_INLINE void sp_msg_stamp(sp_msg_t *m, uint64_t tick, uint32_t origin, uint32_t seq) {
    m->hdr.tick = tick;
    m->hdr.origin = origin;
    m->hdr.seq = seq;
}

/* ---------------------------------------------------------------- checks */

/* Check a message received from an untrusted or unknown source. Returns 0
 * when it is well formed: known kind; text length within the limit, NUL at
 * [len] and no NUL before it; floats finite; ship ids non-zero (ShipMovement,
 * WeaponFired's shooter, ResourceMined). Otherwise SP_EINVAL (NULL, bad
 * field), SP_ETYPE (unknown kind) or SP_EMSGSIZE (length over the limit).
 * Header fields are not checked: any tick/origin/seq is valid. Cost: O(len). */
SP_API int sp_msg_validate(const sp_msg_t *m);

/* Deterministic total order used by the daemon to apply the messages of a
 * tick in the same order whatever the thread timing: by hdr.tick, then
 * hdr.origin, then hdr.seq, each compared as plain unsigned integers (a true
 * total order, as qsort requires). Returns <0, 0 or >0. Two messages compare
 * equal only if all three fields are equal; origins must therefore never reuse
 * a seq within a tick (a 32-bit seq counter reset each tick, or one that does
 * not wrap within a tick, is enough). */
SP_API int sp_msg_order_cmp(const sp_msg_t *a, const sp_msg_t *b);

/* sp_msg_order_cmp() with the signature qsort()/bsearch() want. */
SP_API int sp_msg_order_cmp_qsort(const void *a, const void *b);

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_MSG_H */
