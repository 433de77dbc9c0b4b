/* interest.c: areas of interest (see interest.h). */
#include "daemon/interest.h"

#include <string.h>

int sp_interest_centres(const sp_interest_t *in, sp_interest_pos_fn pos, const void *src,
                        double out[SP_INTEREST_MAX_CENTRES][3]) {
    int n = 0;
    for (int i = 0; i < in->nships; i++)
        if (pos(src, in->ships[i], out[n])) n++;
    if (n == 0) {
        memcpy(out[0], in->centre, sizeof out[0]);
        n = 1;
    }
    return n;
}

bool sp_interest_sees_event(const sp_interest_t *in, const sp_world_event_t *e, const double ctr[][3], int nctr) {
    if (e->owner == in->session || e->other_owner == in->session) return true;
    double r2 = in->radius * in->radius;
    for (int i = 0; i < nctr; i++) {
        double dx = e->pos[0] - ctr[i][0], dy = e->pos[1] - ctr[i][1], dz = e->pos[2] - ctr[i][2];
        if (dx * dx + dy * dy + dz * dz <= r2) return true;
    }
    return false;
}
