/* round.c: snapshot rounds (see round.h). */
#include "daemon/round.h"

#include <stdlib.h>

sp_round_t *sp_round_new(uint64_t tick) {
    sp_round_t *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->tick = tick;
    /* Relaxed: the round is not shared yet; the pool's pushes publish it. */
    atomic_store_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void sp_round_retain(sp_round_t *r) {
    /* Relaxed: the caller holds a reference, so the round cannot go away. */
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void sp_round_release(sp_round_t *r) {
    /* acq_rel: the last releaser must see every other holder's reads of the
     * round completed before it frees it (acquire), and our own reads must
     * happen before another thread's free (release). */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1) return;
    sp_frame_release(r->frame);
    sp_frame_release(r->ghosts);
    sp_world_capture_free(r->cap);
    sp_evset_release(r->events);
    free(r->snap);
    free(r->cells_jobs);
    free(r);
}
