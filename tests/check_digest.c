/* check_digest.c: the daemon's SHA-256 against FIPS 180-4 / NIST vectors
 * (issue 7: resume tokens are kept hashed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/digest.h"
#include "helpers/sp_check.h"

static void hex(const uint8_t *d, char *out) {
    for (int i = 0; i < SP_SHA256_BYTES; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void check_vec(const void *p, size_t n, const char *want) {
    uint8_t d[SP_SHA256_BYTES];
    char got[2 * SP_SHA256_BYTES + 1];
    sp_sha256(p, n, d);
    hex(d, got);
    ck_assert_str_eq(got, want);
}

START_TEST(test_sha256_fips_vectors) {
    check_vec(NULL, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_vec("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* 56 bytes: the padding needs a second block. */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_vec(m, strlen(m), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m2 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_vec(m2, strlen(m2), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* A million 'a': many full blocks. */
    char *a = malloc(1000000);
    ck_assert_ptr_nonnull(a);
    memset(a, 'a', 1000000);
    check_vec(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}
END_TEST

/* Every length around the block and padding boundaries hashes without
 * touching memory past the input (ASan) and differently from its neighbours. */
START_TEST(test_sha256_lengths_around_block_boundaries) {
    uint8_t buf[200], prev[SP_SHA256_BYTES] = {0}, d[SP_SHA256_BYTES];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)i;
    for (size_t n = 0; n <= 130; n++) {
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, buf, n);
        sp_sha256(p, n, d);
        free(p);
        ck_assert(!sp_ct_equal(d, prev, sizeof d));
        memcpy(prev, d, sizeof d);
    }
}
END_TEST

START_TEST(test_ct_equal) {
    uint8_t a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 4};
    ck_assert(sp_ct_equal(a, b, 4));
    b[3] = 5;
    ck_assert(!sp_ct_equal(a, b, 4));
    b[3] = 4;
    b[0] = 0;
    ck_assert(!sp_ct_equal(a, b, 4));
    ck_assert(sp_ct_equal(a, b, 0));
}
END_TEST

static Suite *sha256_suite(void) {
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("sha256");
    tcase_add_test(tc, test_sha256_fips_vectors);
    tcase_add_test(tc, test_sha256_lengths_around_block_boundaries);
    tcase_add_test(tc, test_ct_equal);
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(sha256_suite)
