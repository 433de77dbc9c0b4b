/* wire.c: the hand-off message encoder/decoder (layout in cluster/wire.h). */
#include "cluster/wire.h"

#include <string.h>

#include "spacesim/error.h"

static uint8_t *put_u8(uint8_t *p, uint8_t v) {
    *p = v;
    return p + 1;
}
static uint8_t *put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}
static uint8_t *put_u32(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
    return p + 4;
}
static uint8_t *put_u64(uint8_t *p, uint64_t v) {
    for (int k = 0; k < 8; k++) p[k] = (uint8_t)(v >> (8 * k));
    return p + 8;
}
static const uint8_t *get_u16(const uint8_t *p, uint16_t *v) {
    *v = (uint16_t)(p[0] | (p[1] << 8));
    return p + 2;
}
static const uint8_t *get_u32(const uint8_t *p, uint32_t *v) {
    uint32_t x = 0;
    for (int k = 0; k < 4; k++) x |= (uint32_t)p[k] << (8 * k);
    *v = x;
    return p + 4;
}
static const uint8_t *get_u64(const uint8_t *p, uint64_t *v) {
    uint64_t x = 0;
    for (int k = 0; k < 8; k++) x |= (uint64_t)p[k] << (8 * k);
    *v = x;
    return p + 8;
}

/* One field of the slot list: width-tagged writers and readers. Floats go
 * by bit pattern (memcpy), so -0, NaN payloads and denormals travel. */
#define W_u8(p, v) put_u8(p, (uint8_t)(v))
#define W_i8(p, v) put_u8(p, (uint8_t)(v))
#define W_u32(p, v) put_u32(p, v)
#define W_u64(p, v) put_u64(p, v)
static uint8_t *W_f(uint8_t *p, float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    return put_u32(p, b);
}
static const uint8_t *R_u8(const uint8_t *p, uint8_t *v) {
    *v = p[0];
    return p + 1;
}
static const uint8_t *R_i8(const uint8_t *p, int8_t *v) {
    *v = (int8_t)p[0];
    return p + 1;
}
#define R_u32(p, v) get_u32(p, v)
#define R_u64(p, v) get_u64(p, v)
static const uint8_t *R_f(const uint8_t *p, float *v) {
    uint32_t b;
    p = get_u32(p, &b);
    memcpy(v, &b, 4);
    return p;
}

#define SZ_u8 1
#define SZ_i8 1
#define SZ_u32 4
#define SZ_u64 8
#define SZ_f 4
#define SIZE_ONE(t, fld) +SZ_##t
#define SIZE_N(t, fld, n) +(SZ_##t * (n))
enum { HEADER = 1 + 1 + 2 + 4 + 8 + 8, STATE = 8 + 8 + 1 SP__WORLD_SLOT_FIELDS(SIZE_ONE, SIZE_N) };
_Static_assert(HEADER + STATE <= SP_WIRE_MAX, "SP_WIRE_MAX too small for the slot fields");

size_t sp_wire_size(void) { return HEADER + STATE; }

size_t sp_wire_encode(const sp_wire_handoff_t *h, uint8_t *buf) {
    uint8_t *p = buf;
    const sp_entity_state_t *s = &h->st;
    p = put_u8(p, SP_WIRE_VERSION);
    p = put_u8(p, h->flags);
    p = put_u16(p, h->origin);
    p = put_u32(p, h->cell);
    p = put_u64(p, h->cell_rev);
    p = put_u64(p, h->tick);
    p = put_u64(p, s->id);
    p = put_u64(p, s->epoch);
    p = put_u8(p, s->kind);
#define ENC_ONE(t, fld) p = W_##t(p, s->fld);
#define ENC_N(t, fld, n) \
    for (size_t k = 0; k < (n); k++) p = W_##t(p, s->fld[k]);
    SP__WORLD_SLOT_FIELDS(ENC_ONE, ENC_N)
#undef ENC_ONE
#undef ENC_N
    return (size_t)(p - buf);
}

int sp_wire_decode(const uint8_t *buf, size_t len, sp_wire_handoff_t *out) {
    /* Version 1 (no tick; 8 bytes shorter) is still read, so hand-offs a
     * kept store holds from before an upgrade are not lost: tick 0, which
     * the receiver imports at once (counted late). */
    int v1 = len == sp_wire_size() - 8 && len > 0 && buf[0] == 1;
    if (!v1 && (len != sp_wire_size() || buf[0] != SP_WIRE_VERSION)) return SP_EPROTO;
    memset(out, 0, sizeof *out); /* padding too: states compare field by field anyway */
    const uint8_t *p = buf + 1;
    sp_entity_state_t *s = &out->st;
    out->flags = *p++;
    p = get_u16(p, &out->origin);
    p = get_u32(p, &out->cell);
    p = get_u64(p, &out->cell_rev);
    if (!v1) p = get_u64(p, &out->tick);
    p = get_u64(p, &s->id);
    p = get_u64(p, &s->epoch);
    s->kind = *p++;
#define DEC_ONE(t, fld) p = R_##t(p, &s->fld);
#define DEC_N(t, fld, n) \
    for (size_t k = 0; k < (n); k++) p = R_##t(p, &s->fld[k]);
    SP__WORLD_SLOT_FIELDS(DEC_ONE, DEC_N)
#undef DEC_ONE
#undef DEC_N
    return (size_t)(p - buf) == len ? 0 : SP_EPROTO;
}
