/* snapstate.c: a client's snapshot state (see snapstate.h). */
#include "daemon/snapstate.h"

#include <stdlib.h>
#include <string.h>

void sp_snapstate_init(sp_snapstate_t *s, double radius) {
    memset(s, 0, sizeof *s);
    s->radius = radius;
}

void sp_snapstate_destroy(sp_snapstate_t *s) {
    for (int k = 0; k < s->npend; k++) sp_evset_release(s->pend[k]);
    s->npend = 0;
    if (s->view) {
        sp_snap_list_destroy(s->view);
        free(s->view);
        s->view = NULL;
    }
}

void sp_snapstate_subscribe(sp_snapstate_t *s, double radius, const double centre[3]) {
    s->radius = radius;
    memcpy(s->centre, centre, sizeof s->centre);
}

void sp_snapstate_resync(sp_snapstate_t *s) { s->need_full = true; }
