/* msg.c: SpaceMessage constructors, validation, names and ordering.
 *
 * Everything here is pure and allocation-free. Constructors build the new
 * message in a local and copy it out only on success, so *m is untouched on
 * failure. */
#include <math.h>
#include <string.h>

#include "spacesim/msg.h"

_Static_assert(sizeof(sp_msg_t) == 128, "sp_msg_t layout changed: update the protocol notes");
_Static_assert(offsetof(sp_msg_t, u) == 24, "payload must start 8-aligned after the header");
_Static_assert(sizeof(sp_msg_system_alert_t) <= 104, "alert must fit the union");
_Static_assert(sizeof(sp_msg_resource_mined_t) <= 104, "resource must fit the union");
_Static_assert(SP_MSG_KIND_COUNT == 4, "the seed has four message kinds");

const char *sp_msg_kind_name(int kind) {
    switch (kind) {
#define SP__MSG_KIND_NAME(suffix, value, name) \
    case (value): return #name;
        SP_MSG_KIND_MAP(SP__MSG_KIND_NAME)
#undef SP__MSG_KIND_NAME
    default: return NULL;
    }
}

int sp_msg_kind_parse(const char *name, size_t len, sp_msg_kind_t *out) {
    if (name == NULL || out == NULL) return SP_EINVAL;
#define SP__MSG_KIND_PARSE(suffix, value, kname)                                 \
    if (len == sizeof(#kname) - 1 && memcmp(name, #kname, sizeof(#kname) - 1) == 0) { \
        *out = SP_MSG_##suffix;                                                    \
        return 0;                                                                  \
    }
    SP_MSG_KIND_MAP(SP__MSG_KIND_PARSE)
#undef SP__MSG_KIND_PARSE
    return SP_ENOENT;
}

/* A fresh message of `kind`: all bytes zero (padding included, so messages
 * hash and memcmp deterministically) and the header "not stamped yet". */
static void msg_blank(sp_msg_t *m, sp_msg_kind_t kind) {
    memset(m, 0, sizeof *m);
    m->hdr.origin = SP_MSG_ORIGIN_NONE;
    m->kind = (uint8_t)kind;
}

/* Checks `len` bytes of text for the limit and embedded NULs. */
static int text_check(const char *text, size_t len, size_t max) {
    if (text == NULL) return SP_EINVAL;
    if (len > max) return SP_EMSGSIZE;
    if (len > 0 && memchr(text, '\0', len) != NULL) return SP_EINVAL;
    return 0;
}

/* Length of a NUL-terminated text, reading at most max+1 bytes: returns max+1
 * when the text is longer than max (it is then refused without reading the
 * rest, which may not even be terminated). */
static size_t text_len_bounded(const char *text, size_t max) {
    return strnlen(text, max + 1); /* POSIX; stops at the NUL, never reads past it */
}

static int floats_finite(const float *f, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(f[i])) return 0;
    return 1;
}

int sp_msg_ship_movement(sp_msg_t *m, sp_entity_id_t ship_id, const float position[3],
                         const float velocity[3]) {
    if (m == NULL || position == NULL || ship_id == 0) return SP_EINVAL;
    if (!floats_finite(position, 3)) return SP_EINVAL;
    if (velocity != NULL && !floats_finite(velocity, 3)) return SP_EINVAL;
    sp_msg_t t;
    msg_blank(&t, SP_MSG_SHIP_MOVEMENT);
    t.u.ship_movement.ship_id = ship_id;
    memcpy(t.u.ship_movement.position, position, sizeof t.u.ship_movement.position);
    if (velocity != NULL)
        memcpy(t.u.ship_movement.velocity, velocity, sizeof t.u.ship_movement.velocity);
    *m = t;
    return 0;
}

int sp_msg_weapon_fired(sp_msg_t *m, sp_entity_id_t ship_id, sp_entity_id_t target_id,
                        float damage) {
    if (m == NULL || ship_id == 0 || !isfinite(damage)) return SP_EINVAL;
    sp_msg_t t;
    msg_blank(&t, SP_MSG_WEAPON_FIRED);
    t.u.weapon_fired.ship_id = ship_id;
    t.u.weapon_fired.target_id = target_id;
    t.u.weapon_fired.damage = damage;
    *m = t;
    return 0;
}

int sp_msg_resource_mined_n(sp_msg_t *m, sp_entity_id_t ship_id, const char *resource_type,
                            size_t len, float amount) {
    if (m == NULL || ship_id == 0 || !isfinite(amount)) return SP_EINVAL;
    int rc = text_check(resource_type, len, SP_MSG_RESOURCE_TYPE_MAX);
    if (rc != 0) return rc;
    sp_msg_t t;
    msg_blank(&t, SP_MSG_RESOURCE_MINED);
    t.u.resource_mined.ship_id = ship_id;
    t.u.resource_mined.amount = amount;
    t.u.resource_mined.type_len = (uint8_t)len;
    if (len > 0) memcpy(t.u.resource_mined.resource_type, resource_type, len);
    /* resource_type[len] is already NUL from msg_blank. */
    *m = t;
    return 0;
}

int sp_msg_resource_mined(sp_msg_t *m, sp_entity_id_t ship_id, const char *resource_type,
                          float amount) {
    if (resource_type == NULL) return SP_EINVAL;
    size_t len = text_len_bounded(resource_type, SP_MSG_RESOURCE_TYPE_MAX);
    return sp_msg_resource_mined_n(m, ship_id, resource_type, len, amount);
}

int sp_msg_system_alert_n(sp_msg_t *m, const char *text, size_t len, uint8_t priority) {
    if (m == NULL) return SP_EINVAL;
    int rc = text_check(text, len, SP_MSG_ALERT_MAX);
    if (rc != 0) return rc;
    sp_msg_t t;
    msg_blank(&t, SP_MSG_SYSTEM_ALERT);
    t.u.system_alert.priority = priority;
    t.u.system_alert.text_len = (uint8_t)len;
    if (len > 0) memcpy(t.u.system_alert.text, text, len);
    *m = t;
    return 0;
}

int sp_msg_system_alert(sp_msg_t *m, const char *text, uint8_t priority) {
    if (text == NULL) return SP_EINVAL;
    size_t len = text_len_bounded(text, SP_MSG_ALERT_MAX);
    return sp_msg_system_alert_n(m, text, len, priority);
}

/* Inline text as stored in a message: length in range, NUL at [len], none
 * before. `cap` is the array size (limit + 1). */
static int stored_text_ok(const char *text, size_t len, size_t cap) {
    if (len >= cap) return SP_EMSGSIZE;
    if (text[len] != '\0') return SP_EINVAL;
    if (len > 0 && memchr(text, '\0', len) != NULL) return SP_EINVAL;
    return 0;
}

int sp_msg_validate(const sp_msg_t *m) {
    if (m == NULL) return SP_EINVAL;
    switch (m->kind) {
    case SP_MSG_SHIP_MOVEMENT: {
        const sp_msg_ship_movement_t *p = &m->u.ship_movement;
        if (p->ship_id == 0) return SP_EINVAL;
        if (!floats_finite(p->position, 3) || !floats_finite(p->velocity, 3)) return SP_EINVAL;
        return 0;
    }
    case SP_MSG_WEAPON_FIRED: {
        const sp_msg_weapon_fired_t *p = &m->u.weapon_fired;
        if (p->ship_id == 0 || !isfinite(p->damage)) return SP_EINVAL;
        return 0;
    }
    case SP_MSG_RESOURCE_MINED: {
        const sp_msg_resource_mined_t *p = &m->u.resource_mined;
        if (p->ship_id == 0 || !isfinite(p->amount)) return SP_EINVAL;
        return stored_text_ok(p->resource_type, p->type_len, sizeof p->resource_type);
    }
    case SP_MSG_SYSTEM_ALERT: {
        const sp_msg_system_alert_t *p = &m->u.system_alert;
        return stored_text_ok(p->text, p->text_len, sizeof p->text);
    }
    default: return SP_ETYPE;
    }
}

int sp_msg_order_cmp(const sp_msg_t *a, const sp_msg_t *b) {
    if (a->hdr.tick != b->hdr.tick) return a->hdr.tick < b->hdr.tick ? -1 : 1;
    if (a->hdr.origin != b->hdr.origin) return a->hdr.origin < b->hdr.origin ? -1 : 1;
    if (a->hdr.seq != b->hdr.seq) return a->hdr.seq < b->hdr.seq ? -1 : 1;
    return 0;
}

int sp_msg_order_cmp_qsort(const void *a, const void *b) {
    return sp_msg_order_cmp((const sp_msg_t *)a, (const sp_msg_t *)b);
}
