/* sim/save.h: whole-world checkpoints as a byte buffer.
 *
 * Format (little-endian, version 4):
 *   header  "SPWORLD\0" magic (8) | version u32 | header size u32 |
 *           payload length u64 | FNV-1a-64 of the payload u64
 *   payload the world definition (version 4: + id_node u32), tick, rng
 *           state, static-grid counters, respawn settings and role counter
 *           (version 2), the id counter next_id u64 (version 4), slot count,
 *           live count, free list, then every slot: version 4: kind u8, and
 *           for a live one id u64 | epoch u64 | the SP__WORLD_SLOT_FIELDS;
 *           versions 1-3: generation u32 | kind u8 | fields (the id was
 *           generation << 32 | slot). Version 4 then has the departure
 *           memory (sp_world_depart): count u32 | (id u64 | epoch u64) in
 *           ascending id order. Then (version 3) the annex: length u32 |
 *           bytes. The annex is the
 *           world's owner's own state (spacesimd: its sessions), opaque here
 *           but under the same checksum and in the same file, so world and
 *           owner state are written and renamed together, never apart.
 * sp_world_load() validates everything (magic, version, lengths, checksum,
 * every count against the lengths, every number's range, kinds, flags,
 * ids (non-zero, unique, this node's below the counter), free list
 * consistency) BEFORE it builds the new world, so a
 * corrupt or truncated buffer is refused with SP_ECORRUPT and nothing is
 * half-loaded. A loaded world steps exactly like the saved one (same
 * sp_world_hash() now and after any number of identical steps).
 *
 * Threads: the world's owner thread; the buffer belongs to the caller.
 * sp_save_write_file() puts the sealed bytes on disk atomically; spacesimd
 * and spacesim-ckpt both write their files with it. */
#ifndef SP_SIM_SAVE_H
#define SP_SIM_SAVE_H

#include <stddef.h>
#include <stdint.h>

#include "sim/world.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Written version. Versions 1 (no respawn state: loads with respawn off),
 * 2 (no annex: loads with an empty one) and 3 (ids generation << 32 | slot)
 * are still read. A version < 4 world loads as node 0; its entities keep
 * their old ids, epoch 0, and the counter starts above the largest of them
 * that lies in node 0's space (below 2^43: any id of a slot reused fewer
 * than 2048 times). Old ids at or above 2^43 are kept too but look like
 * other nodes' ids: such a world must not join a cluster as is. */
#define SP_SAVE_VERSION 4u

/* Serialize w. On success returns 0 and *out_buf / *out_len: a buffer from
 * malloc() that the caller frees with free(). SP_ENOMEM / SP_EOVERFLOW on
 * failure (nothing returned). Cost: O(slots), ~140 bytes per entity. */
SP_API int sp_world_save(const sp_world_t *w, uint8_t **out_buf, size_t *out_len);

/* sp_world_save() in two halves, so an owner thread can hand the O(bytes)
 * checksum (and the I/O) to another thread:
 *  - sp_world_save_unsealed(): the serialization (owner thread; one exact-size
 *    malloc, then plain copies: a few ms at 100k entities); the header is
 *    left zeroed. Returns as sp_world_save().
 *  - sp_world_save_seal(): fills the header (magic, version, length,
 *    FNV-1a-64 checksum of the payload; ~1 ns per byte). Any thread; buf/len
 *    exactly as returned by sp_world_save_unsealed().
 * Sealed, the bytes equal sp_world_save()'s. */
SP_API int sp_world_save_unsealed(const sp_world_t *w, uint8_t **out_buf, size_t *out_len);
SP_API void sp_world_save_seal(uint8_t *buf, size_t len);

/* sp_world_save_unsealed() with an annex: annex_len (<= UINT32_MAX, else
 * SP_EOVERFLOW) bytes copied from annex (NULL when annex_len is 0) after the
 * world. The others save an empty annex. */
SP_API int sp_world_save_unsealed_annex(const sp_world_t *w, const void *annex, size_t annex_len,
                                        uint8_t **out_buf, size_t *out_len);

/* Build a new world from a buffer made by sp_world_save(). alloc: allocator of
 * the new world (NULL = libc); grid_threads: broadphase threads (not part of
 * the saved state: results do not depend on it; 0 = 1). Returns 0 and *out,
 * SP_ECORRUPT (any validation failure, truncation, trailing bytes), SP_EINVAL
 * (NULL), SP_ENOMEM. *out untouched on failure. */
SP_API int sp_world_load(const uint8_t *buf, size_t len, const sp_allocator_t *alloc,
                         int grid_threads, sp_world_t **out);

/* sp_world_load() that also returns the annex: *annex points into buf (valid
 * while buf is; NULL with *annex_len 0 when empty or version < 3). Set only
 * on success. */
SP_API int sp_world_load_annex(const uint8_t *buf, size_t len, const sp_allocator_t *alloc, int grid_threads,
                               sp_world_t **out, const uint8_t **annex, size_t *annex_len);

/* Write len bytes of buf to path atomically, so that a crash at any point
 * leaves at path either its old content (or nothing) or all of the new one,
 * never a mixture: path.tmp in the same directory (created or truncated,
 * mode 0644), every byte written (EINTR retried), fsync, close, rename over
 * path, then fsync of the directory so the rename itself survives a crash.
 * The bytes are written as they are: a checkpoint is sealed first
 * (sp_world_save_seal()).
 *
 * Returns 0, or on failure SP_EIO (SP_EMSGSIZE: path + ".tmp" longer than
 * PATH_MAX, nothing created) with path untouched, path.tmp removed and msg saying which step
 * failed and why, e.g. "cannot create /x/w.ckpt.tmp: No such file or
 * directory" (steps: cannot create, writing, fsync of, closing, rename of).
 * A failed fsync (or open) of the directory after the rename is not a
 * failure, since the new file is in place and only the rename's durability
 * over a crash is in doubt: it returns 0 with a warning in msg ("fsync of its
 * directory /x failed: ..."); msg is "" after a clean success. msg is
 * always NUL-terminated when msgsz > 0 (truncated to msgsz); NULL with 0.
 *
 * Threads: any thread; no state of its own. Two writers of the same path at
 * once share path.tmp and garble it: the caller keeps them apart (spacesimd:
 * its lock file and one checkpoint in flight). Blocks on the disk (two
 * fsyncs: milliseconds on an SSD, up to seconds on a busy disk); never
 * allocates. Ownership: buf and msg stay the caller's. */
SP_API int sp_save_write_file(const char *path, const uint8_t *buf, size_t len, char *msg, size_t msgsz);

#ifdef __cplusplus
}
#endif
#endif /* SP_SIM_SAVE_H */
