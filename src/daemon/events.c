/* events.c: event sets of snapshot rounds (see events.h). */
#include "daemon/events.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "snapshot.h"

void sp_evset_retain(sp_evset_t *e) {
    /* Relaxed: the caller already holds a reference (shared_ptr copy). */
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

void sp_evset_release(sp_evset_t *e) {
    if (e == NULL) return;
    /* acq_rel: every holder's reads happen before the last one's free. */
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) free(e);
}

void sp_events_destroy(sp_events_t *es) {
    free(es->ev);
    memset(es, 0, sizeof *es);
}

void sp_events_collect(sp_events_t *es, const sp_world_t *w) {
    size_t n = 0;
    const sp_world_event_t *ev = sp_world_events(w, &n);
    for (size_t i = 0; i < n; i++) {
        const sp_world_event_t *e = &ev[i];
        if (e->type == SP_EV_COLLISION) continue;
        if (e->type == SP_EV_ENTITY_DESTROYED && e->kind != SP_KIND_SHIP) continue;
        sp_events_push(es, e);
    }
}

void sp_events_push(sp_events_t *es, const sp_world_event_t *e) {
    if (es->n == es->cap) {
        size_t cap = es->cap ? es->cap * 2 : 256;
        if (cap > SP_EVENTS_MAX) return;
        sp_world_event_t *ne = realloc(es->ev, cap * sizeof *ne);
        if (ne == NULL) return;
        es->ev = ne;
        es->cap = cap;
    }
    es->ev[es->n++] = *e;
}

sp_evset_t *sp_events_take(sp_events_t *es) {
    if (es->n == 0) return NULL;
    sp_evset_t *set = malloc(sizeof *set + es->n * sizeof set->ev[0]);
    if (set == NULL) {
        SP_LOGW("out of memory: %zu events of this round not delivered", es->n);
    } else {
        atomic_init(&set->refs, 1); /* the caller's; not shared yet */
        set->n = (uint32_t)es->n;
        memcpy(set->ev, es->ev, es->n * sizeof set->ev[0]);
    }
    es->n = 0;
    return set;
}

static const char *cause_name(int cause) {
    return cause == SP_CAUSE_WEAPON ? "weapon" : cause == SP_CAUSE_COLLISION ? "collision" : "other";
}

int sp_event_pack(msgpack_packer *pk, const sp_world_event_t *e) {
    switch (e->type) {
    case SP_EV_WEAPON_FIRED:
        return sp_event_pack_weapon_fired(pk, e->tick, e->subject, e->other, e->hit != 0, e->value);
    case SP_EV_RESOURCE_MINED:
        return sp_event_pack_resource_mined(pk, e->tick, e->subject, e->other, e->resource, e->value);
    default: /* ENTITY_DESTROYED of a ship (sp_events_collect keeps no other) */
        return sp_event_pack_ship_destroyed(pk, e->tick, e->subject, e->owner, e->other, cause_name(e->cause));
    }
}
