/* sim/kinds.h: the world's vocabulary as lists: entity kinds and resources.
 *
 * Lists and enums only, no declarations of code: proto/spacesim_proto.def
 * includes this header so that the wire protocol and its clients share the
 * world's names and values without depending on the world itself.
 * Wire values are stable: never renumber, only append. */
#ifndef SP_SIM_KINDS_H
#define SP_SIM_KINDS_H

/* ---------------------------------------------------------------- lists
 * The one list of entity kinds: X(ENUM_SUFFIX, wire value, "name").
 * Values are 1..SP_KIND_COUNT, in order (a static assertion checks it), so
 * per-kind arrays and range checks follow the list: adding a kind is a row
 * here plus the code that gives it meaning (spawning it, its step, its
 * checkpoint invariants in sim/save.c), never a count to update elsewhere.
 * proto/spacesim_proto.def includes it through this header. */
#define SP_ENTITY_KIND_MAP(X)       \
    X(SHIP, 1, "ship")              \
    X(ASTEROID, 2, "asteroid")      \
    X(PROJECTILE, 3, "projectile")

typedef enum sp_entity_kind {
    SP_KIND_NONE = 0, /* a free slot; never on the wire */
#define SP__KIND_ENUM(suffix, value, name) SP_KIND_##suffix = (value),
    SP_ENTITY_KIND_MAP(SP__KIND_ENUM)
#undef SP__KIND_ENUM
} sp_entity_kind_t;

/* Number of kinds; valid kinds are 1..SP_KIND_COUNT. */
#define SP__KIND_ONE(suffix, value, name) +1
enum { SP__KIND_COUNT = 0 SP_ENTITY_KIND_MAP(SP__KIND_ONE) };
#define SP_KIND_COUNT ((int)SP__KIND_COUNT)
#define SP__KIND_IN_ORDER(suffix, value, name) \
    _Static_assert((value) >= 1 && (value) <= SP__KIND_COUNT, "kind " #suffix ": values are 1..SP_KIND_COUNT");
SP_ENTITY_KIND_MAP(SP__KIND_IN_ORDER)
#undef SP__KIND_IN_ORDER

/* Is k a kind of the list (not SP_KIND_NONE)? */
static inline int sp_kind_valid(int k) { return k >= 1 && k <= SP_KIND_COUNT; }

/* The one list of resource types: X(ENUM_SUFFIX, index, "name"), indices 0..3.
 * Asteroids hold one type; ships carry cargo[SP_RESOURCE_COUNT]. */
#define SP_RESOURCE_MAP(X)          \
    X(IRON, 0, "iron")              \
    X(NICKEL, 1, "nickel")          \
    X(ICE, 2, "ice")                \
    X(PLATINUM, 3, "platinum")

typedef enum sp_resource {
#define SP__RES_ENUM(suffix, value, name) SP_RES_##suffix = (value),
    SP_RESOURCE_MAP(SP__RES_ENUM)
#undef SP__RES_ENUM
} sp_resource_t;

#define SP__RES_ONE(suffix, value, name) +1
#define SP_RESOURCE_COUNT (0 SP_RESOURCE_MAP(SP__RES_ONE))

#endif /* SP_SIM_KINDS_H */
