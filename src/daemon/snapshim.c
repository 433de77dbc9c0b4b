/* snapshim.c: stand-in snapshot encoder (see snapshim.h).
 *
 * Wire: [2, "snapshot", [tick, base_tick_or_nil, entered, changed, left]]
 *   entered: array of [id, kind, px, py, pz, vx, vy, vz, hp, owner, radius]
 *   changed: array of [id, px, py, pz, vx, vy, vz, hp] (absolute quantized)
 *   left:    array of ids
 * Quantization as in sim/frame.h. A view is the id-sorted list of rows sent. */
#include "daemon/snapshim.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "spacesim/error.h"

typedef struct vrow {
    uint64_t id;
    int32_t pos[3], vel[3];
    uint32_t hp;
} vrow_t;

struct sp_d_view {
    uint64_t tick;
    size_t n, cap;
    vrow_t *rows;
};

sp_d_view_t *sp_d_view_new(void) { return calloc(1, sizeof(sp_d_view_t)); }

void sp_d_view_free(sp_d_view_t *v) {
    if (v == NULL) return;
    free(v->rows);
    free(v);
}

static void pack_entered(msgpack_packer *pk, const sp_frame_row_t *r) {
    msgpack_pack_array(pk, 11);
    msgpack_pack_uint64(pk, r->id);
    msgpack_pack_uint8(pk, r->kind);
    for (int k = 0; k < 3; k++) msgpack_pack_int32(pk, r->pos[k]);
    for (int k = 0; k < 3; k++) msgpack_pack_int32(pk, r->vel[k]);
    msgpack_pack_uint32(pk, r->hp);
    msgpack_pack_uint32(pk, r->owner);
    msgpack_pack_uint16(pk, r->radius);
}

int sp_d_snap_encode(const sp_frame_t *f, const uint32_t *rows, size_t n, const sp_d_view_t *base,
                     sp_d_view_t *next, msgpack_sbuffer *out) {
    next->n = 0;
    if (n > next->cap) {
        vrow_t *nr = realloc(next->rows, n * sizeof *nr);
        if (nr == NULL) return SP_ENOMEM;
        next->rows = nr;
        next->cap = n;
    }
    next->tick = f->tick;
    for (size_t i = 0; i < n; i++) {
        const sp_frame_row_t *r = &f->rows[rows[i]];
        vrow_t *v = &next->rows[next->n++];
        v->id = r->id;
        memcpy(v->pos, r->pos, sizeof v->pos);
        memcpy(v->vel, r->vel, sizeof v->vel);
        v->hp = r->hp;
    }
    /* Merge base and next (both id-sorted): left = only in base, entered =
     * only in next, changed = in both with a different record. Pass 0
     * counts (msgpack needs array lengths first), pass 1 writes. */
    size_t cnt[3] = {0, 0, 0};
    size_t bn = base ? base->n : 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            msgpack_pack_array(&pk, 3);
            msgpack_pack_int(&pk, 2);
            msgpack_pack_str_with_body(&pk, "snapshot", 8);
            msgpack_pack_array(&pk, 5);
            msgpack_pack_uint64(&pk, f->tick);
            if (base) msgpack_pack_uint64(&pk, base->tick);
            else msgpack_pack_nil(&pk);
        }
        for (int list = 0; list < 3; list++) {
            if (pass == 1) msgpack_pack_array(&pk, cnt[list]);
            size_t i = 0, j = 0;
            while (i < bn || j < n) {
                const vrow_t *b = i < bn ? &base->rows[i] : NULL;
                const vrow_t *x = j < n ? &next->rows[j] : NULL;
                if (b && (!x || b->id < x->id)) {
                    if (list == 2) {
                        if (pass == 0) cnt[2]++;
                        else msgpack_pack_uint64(&pk, b->id);
                    }
                    i++;
                } else if (x && (!b || x->id < b->id)) {
                    if (list == 0) {
                        if (pass == 0) cnt[0]++;
                        else pack_entered(&pk, &f->rows[rows[j]]);
                    }
                    j++;
                } else {
                    if (list == 1 && (memcmp(b->pos, x->pos, sizeof b->pos) || memcmp(b->vel, x->vel, sizeof b->vel) ||
                                      b->hp != x->hp)) {
                        if (pass == 0) cnt[1]++;
                        else {
                            msgpack_pack_array(&pk, 8);
                            msgpack_pack_uint64(&pk, x->id);
                            for (int k = 0; k < 3; k++) msgpack_pack_int32(&pk, x->pos[k]);
                            for (int k = 0; k < 3; k++) msgpack_pack_int32(&pk, x->vel[k]);
                            msgpack_pack_uint32(&pk, x->hp);
                        }
                    }
                    i++;
                    j++;
                }
            }
        }
    }
    return 0;
}
