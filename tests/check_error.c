/* check_error.c: error strings and checked size arithmetic. */
#include <limits.h>
#include <string.h>

#include "helpers/sp_check.h"
#include "spacesim/common.h"

START_TEST(test_error_every_code_has_distinct_name_and_message) {
    int codes[] = {
#define X(name, value, msg) SP_##name,
        SP_ERRNO_MAP(X)
#undef X
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_lt(codes[i], 0);
        ck_assert_str_ne(sp_strerror(codes[i]), "unknown error");
        ck_assert_str_ne(sp_err_name(codes[i]), "SP_UNKNOWN");
        for (size_t j = i + 1; j < n; j++) {
            ck_assert_int_ne(codes[i], codes[j]);
            ck_assert_str_ne(sp_err_name(codes[i]), sp_err_name(codes[j]));
        }
    }
    ck_assert_str_eq(sp_err_name(SP_ENOMEM), "SP_ENOMEM");
    ck_assert_str_eq(sp_strerror(SP_ENOMEM), "out of memory");
    ck_assert_str_eq(sp_strerror(0), "success");
    ck_assert_str_eq(sp_strerror(-9999), "unknown error");
}
END_TEST

START_TEST(test_size_arithmetic_reports_overflow_and_keeps_output) {
    size_t out = 42;
    ck_assert_int_eq(sp_size_mul(SIZE_MAX / 2 + 1, 2, &out), SP_EOVERFLOW);
    ck_assert_uint_eq(out, 42);
    ck_assert_int_eq(sp_size_add(SIZE_MAX, 1, &out), SP_EOVERFLOW);
    ck_assert_uint_eq(out, 42);
    ck_assert_int_eq(sp_size_mul(1u << 20, 1u << 10, &out), 0);
    ck_assert_uint_eq(out, (size_t)1 << 30);
    ck_assert_int_eq(sp_size_add(7, 8, &out), 0);
    ck_assert_uint_eq(out, 15);
    ck_assert_uint_eq(sp_align_up(65, 64), 128);
    ck_assert_uint_eq(sp_align_up(64, 64), 64);
}
END_TEST

START_TEST(test_default_allocator_honours_alignment) {
    const sp_allocator_t *a = sp_allocator_default();
    for (size_t align = 8; align <= 4096; align *= 2) {
        void *p = a->alloc(a->ctx, 100, align);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % align, 0);
        memset(p, 0xab, 100);
        a->free(a->ctx, p, 100, align);
    }
    ck_assert_ptr_null(a->alloc(a->ctx, SIZE_MAX - 8, 64));
}
END_TEST

static Suite *error_suite(void) {
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("error");
    tcase_add_test(tc, test_error_every_code_has_distinct_name_and_message);
    tcase_add_test(tc, test_size_arithmetic_reports_overflow_and_keeps_output);
    tcase_add_test(tc, test_default_allocator_honours_alignment);
    suite_add_tcase(s, tc);
    return s;
}

SP_CHECK_MAIN(error_suite)
