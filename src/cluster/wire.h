/* cluster/wire.h: the hand-off message on the wire (JetStream payload).
 *
 * Little-endian, fixed layout, independent of the compiler's struct
 * padding, so daemons on different machines agree:
 *   u8  version (SP_WIRE_VERSION)
 *   u8  flags   (SP_WIRE_RETURN: a compensation, imported by the origin
 *                whatever cell it lies in; SP_WIRE_BOUNCED with it: the
 *                receiver could not take it, so the origin waits)
 *   u16 origin  the sending node (where a refused hand-off returns)
 *   u32 cell    the target cell, as the sender computed it
 *   u64 cell_rev the revision (epoch) of the cell's ownership key the
 *               sender acted on
 *   u64 tick    the sender's world tick when it exported the entity (the
 *               state is that of the end of the step to `tick`): the
 *               receiver imports it when its own world is at that tick, so
 *               the entity's next step is the step from `tick` (version 2)
 *   u64 id, u64 epoch, u8 kind, then every field of SP__WORLD_SLOT_FIELDS
 *   in list order (u8/i8: 1 byte, u32/f: 4 bytes, floats by bit pattern,
 *   u64: 8 bytes).
 * Pure functions; any thread; no allocation. */
#ifndef SP_CLUSTER_WIRE_H
#define SP_CLUSTER_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "sim/world.h"

#define SP_WIRE_VERSION 2
#define SP_WIRE_RETURN 0x01
/* With SP_WIRE_RETURN: the receiver could not take it (full, invalid
 * there), so its origin waits a while before sending it on again. */
#define SP_WIRE_BOUNCED 0x02
/* Upper bound of an encoded message, bytes (the exact size is
 * sp_wire_size()). */
#define SP_WIRE_MAX 256

typedef struct sp_wire_handoff {
    uint8_t flags;
    uint16_t origin;
    uint32_t cell;
    uint64_t cell_rev;
    uint64_t tick;
    sp_entity_state_t st;
} sp_wire_handoff_t;

/* Bytes sp_wire_encode writes. Constant. */
size_t sp_wire_size(void);

/* Encode *h into buf (at least sp_wire_size() bytes). Returns the size. */
size_t sp_wire_encode(const sp_wire_handoff_t *h, uint8_t *buf);

/* Decode len bytes: version 2, or version 1 (no tick field, 8 bytes
 * shorter; decoded with tick 0). Returns 0, or SP_EPROTO (wrong size or
 * version); the state itself is checked by sp_world_import. */
int sp_wire_decode(const uint8_t *buf, size_t len, sp_wire_handoff_t *out);

#endif /* SP_CLUSTER_WIRE_H */
