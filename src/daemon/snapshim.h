/* snapshim.h: the daemon's seam to the snapshot encoder.
 *
 * The daemon needs: a per-client view (the baseline the client really has),
 * and an encoder that writes one `snapshot` notification for the visible rows
 * of a frame, full (base NULL) or as a delta against base, filling *next with
 * the new baseline. proto/snapshot.h owns the wire format; until its encoder
 * is available this file's implementation (snapshim.c) provides a compatible
 * stand-in. Threads: encode runs on workers; base is read-only meanwhile;
 * next belongs to the job until the loop installs it. */
#ifndef SP_DAEMON_SNAPSHIM_H
#define SP_DAEMON_SNAPSHIM_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "sim/frame.h"

typedef struct sp_d_view sp_d_view_t;

/* A new empty view, or NULL on OOM. */
sp_d_view_t *sp_d_view_new(void);
void sp_d_view_free(sp_d_view_t *v);

/* Append [2, "snapshot", [...]] to out. rows: n ascending frame row indices.
 * Returns 0 or a negative SP_E* code (out may then hold a partial message). */
int sp_d_snap_encode(const sp_frame_t *f, const uint32_t *rows, size_t n, const sp_d_view_t *base,
                     sp_d_view_t *next, msgpack_sbuffer *out);

#endif
