/* snapshim.c: the daemon's seam to proto/snapshot.h (see snapshim.h).
 * The wire format is proto's (proto/PROTOCOL.md): full on join, then deltas
 * against the view the client really received. */
#include "daemon/snapshim.h"

#include <stdlib.h>

#include "snapshot.h"

struct sp_d_view {
    sp_snap_view_t v;
};

sp_d_view_t *sp_d_view_new(void) {
    sp_d_view_t *v = malloc(sizeof *v);
    if (v) sp_snap_view_init(&v->v);
    return v;
}

void sp_d_view_free(sp_d_view_t *v) {
    if (v == NULL) return;
    sp_snap_view_destroy(&v->v);
    free(v);
}

int sp_d_snap_encode(const sp_frame_t *f, const uint32_t *rows, size_t n, const sp_d_view_t *base,
                     sp_d_view_t *next, msgpack_sbuffer *out) {
    return sp_snap_encode(f, rows, n, base ? &base->v : NULL, &next->v, out, NULL);
}
