/* digest.h: SHA-256 (FIPS 180-4), for hashing session resume tokens.
 *
 * The daemon keeps only SHA-256(token) of a resume token, in memory and in
 * checkpoints: a leaked checkpoint or core dump does not give the tokens
 * away (a token is 256 random bits, so an unsalted hash cannot be reversed
 * by guessing). Written here because no library the daemon already links
 * (libuv, msgpack-c) has one; checked against the FIPS 180-4 test vectors
 * in tests/check_digest.
 *
 * Threads: any; no shared state. Never allocates. Cost: ~10 ns per byte. */
#ifndef SP_DAEMON_DIGEST_H
#define SP_DAEMON_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define SP_SHA256_BYTES 32

/* out = SHA-256 of the len bytes at p (p may be NULL when len is 0). */
void sp_sha256(const void *p, size_t len, uint8_t out[SP_SHA256_BYTES]);

/* Equal in time that depends only on len, not on where a and b differ (a
 * token check must not tell a guesser how many leading bytes it got right). */
int sp_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);

#endif /* SP_DAEMON_DIGEST_H */
