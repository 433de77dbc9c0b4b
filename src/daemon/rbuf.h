/* rbuf.h: immutable, reference-counted byte buffers.
 *
 * The unit of shared output: a cell chunk of a snapshot round (icells.h) is
 * encoded once into an rbuf, and every client that sees the cell writes the
 * same bytes (net.h's sp_conn_sendv() keeps a reference until the socket
 * took them). An rbuf knows nothing of connections or rounds, so the same
 * bytes can later be published to other processes as they are.
 *
 * Lifetime: the creator holds one reference; every holder (a cell's cache,
 * a queued write, a snapshot job) takes its own with sp_rbuf_retain() while
 * it holds one already, and drops it with sp_rbuf_release(); the last
 * release frees it. The bytes never change after sp_rbuf_new() returns.
 *
 * Threads: any; retain/release are lock-free (atomic count). */
#ifndef SP_DAEMON_RBUF_H
#define SP_DAEMON_RBUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sp_rbuf {
    _Atomic uint32_t refs;
    uint32_t tag;             /* the creator's (icells.c: entities in a chunk) */
    uint64_t key;             /* the creator's, 0 from sp_rbuf_new (icells.c: a catch-up
                               * chunk's base tick); set before the buffer is shared */
    size_t len;
    unsigned char data[];
} sp_rbuf_t;

/* A new buffer holding a copy of len bytes, one reference (the caller's);
 * NULL on OOM. */
sp_rbuf_t *sp_rbuf_new(const void *data, size_t len, uint32_t tag);
/* Add a reference (the caller holds one). NULL is a no-op. */
void sp_rbuf_retain(sp_rbuf_t *b);
/* Drop one; the last frees the buffer. NULL is a no-op. */
void sp_rbuf_release(sp_rbuf_t *b);

#endif /* SP_DAEMON_RBUF_H */
