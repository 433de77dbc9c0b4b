/* blocks.h: an allocator that keeps big freed blocks for reuse (issue 9).
 *
 * A frame of a 1M-entity world is one ~90 MB block, allocated every round
 * and freed a round or two later. glibc serves blocks that big with mmap and
 * returns them with munmap, so every round paid ~22k page faults and the
 * kernel zeroing 90 MB on a worker (perf at 1M: page faults and clear_page
 * were ~5-8% of the workers' time, and the spatial index, which writes the
 * fresh pages first, looked slower than it is). This allocator keeps up to
 * SP_BLOCKS_KEEP freed blocks of at least SP_BLOCKS_MIN bytes and hands one
 * back for a request it fits (the request, up to a quarter more): its pages
 * stay mapped. Smaller requests go straight to the libc allocator. The price:
 * up to SP_BLOCKS_KEEP big blocks stay resident while unused.
 *
 * The daemon gives it to its world (sp_world_def_t.allocator, and the
 * checkpoint load): the world's arrays and every frame come from it.
 *
 * Threads: any (frames are freed by whichever thread drops the last
 * reference); one mutex, taken for big blocks only (a few times per round).
 * Ownership: the cache owns the blocks it keeps; sp_blocks_destroy frees
 * them. It must outlive everything allocated through it. */
#ifndef SP_DAEMON_BLOCKS_H
#define SP_DAEMON_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "spacesim/common.h"

#define SP_BLOCKS_KEEP 3
#define SP_BLOCKS_MIN ((size_t)1 << 20)

typedef struct sp_blocks {
    sp_allocator_t a; /* the allocator: pass &b->a */
    uv_mutex_t mu;
    struct {
        void *p;
        size_t size, align;
    } keep[SP_BLOCKS_KEEP];
    unsigned n;
    uint64_t reused, fresh; /* big requests served from the cache / from libc (under mu) */
} sp_blocks_t;

/* 0, or SP_ENOMEM (the mutex). */
int sp_blocks_init(sp_blocks_t *b);
/* Frees the kept blocks. Nothing allocated through b may be in use. */
void sp_blocks_destroy(sp_blocks_t *b);

#endif /* SP_DAEMON_BLOCKS_H */
