/* check_vec.c: tests of the growable vector (spacesim/vec.h), including the
 * seed's defects: reserve(required - capacity) under-reserved (len 3, cap 4,
 * extend by 30 wrote past the end), unchecked size arithmetic, iteration that
 * moved values out, panic on OOM. */
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "helpers/sp_alloc.h"
#include "helpers/sp_check.h"
#include "spacesim/vec.h"

/* A 16-byte element, so 64-byte blocks give capacities of exactly 4. */
typedef struct {
    uint32_t id;
    float x, y, z;
} rec16_t;
SP_VEC_DEFINE(rec16_vec, rec16_t);

/* A 24-byte element: does not divide 64. */
typedef struct {
    uint64_t a, b, c;
} rec24_t;
SP_VEC_DEFINE(rec24_vec, rec24_t);

/* ------------------------------------------------------------ test allocator */

/* The shared counting/failing allocator (tests/helpers/sp_alloc.h). */
static sp_test_alloc_t cnt;
static sp_allocator_t counting;

static void reset_counting(void) {
    sp_test_alloc_init(&cnt, -1, 0);
    counting = sp_test_allocator(&cnt);
}

/* ------------------------------------------------------------ tests */

START_TEST(test_vec_push_get_pop_roundtrip) {
    sp_vec_u32_t v;
    ck_assert_int_eq(sp_vec_u32_init(&v, NULL), 0);
    for (uint32_t i = 0; i < 10000; i++) ck_assert_int_eq(sp_vec_u32_push(&v, i * 3u), 0);
    ck_assert_uint_eq(sp_vec_u32_len(&v), 10000);
    uint32_t x = 0;
    ck_assert_int_eq(sp_vec_u32_get(&v, 1234, &x), 0);
    ck_assert_uint_eq(x, 1234 * 3u);
    ck_assert_uint_eq(sp_vec_u32_get_unchecked(&v, 9999), 9999 * 3u);
    ck_assert_uint_eq(*sp_vec_u32_at(&v, 7), 21);
    for (uint32_t i = 10000; i-- > 0;) {
        ck_assert_int_eq(sp_vec_u32_pop(&v, &x), 0);
        ck_assert_uint_eq(x, i * 3u);
    }
    ck_assert_int_eq(sp_vec_u32_pop(&v, &x), SP_ERANGE);
    ck_assert_uint_eq(sp_vec_u32_len(&v), 0);
    sp_vec_u32_destroy(&v);
}
END_TEST

START_TEST(test_vec_get_out_of_range_returns_erange) {
    sp_vec_f32_t v;
    sp_vec_f32_init(&v, NULL);
    float f = 42.0f;
    ck_assert_int_eq(sp_vec_f32_get(&v, 0, &f), SP_ERANGE);
    ck_assert_ptr_null(sp_vec_f32_at(&v, 0));
    sp_vec_f32_push(&v, 1.5f);
    ck_assert_int_eq(sp_vec_f32_get(&v, 1, &f), SP_ERANGE);
    ck_assert_int_eq(sp_vec_f32_get(&v, SIZE_MAX, &f), SP_ERANGE);
    ck_assert(f == 42.0f); /* out untouched on error */
    ck_assert_int_eq(sp_vec_f32_get(&v, 0, &f), 0);
    ck_assert(f == 1.5f);
    /* Generic twins. */
    ck_assert_int_eq(sp_vec_get(&v.base, 1, &f), SP_ERANGE);
    ck_assert_ptr_null(sp_vec_at(&v.base, 1));
    ck_assert_int_eq(sp_vec_remove_swap(&v.base, 1, NULL), SP_ERANGE);
    ck_assert_uint_eq(sp_vec_f32_len(&v), 1);
    sp_vec_f32_destroy(&v);
}
END_TEST

START_TEST(test_vec_extend_after_reserve_len3_cap4_by30) {
    rec16_vec_t v;
    rec16_vec_init(&v, NULL);
    ck_assert_int_eq(rec16_vec_reserve_exact(&v, 4), 0);
    ck_assert_uint_eq(rec16_vec_capacity(&v), 4);
    for (uint32_t i = 0; i < 3; i++) rec16_vec_push(&v, (rec16_t){i, (float)i, 0, 0});
    ck_assert_uint_eq(rec16_vec_len(&v), 3);
    ck_assert_uint_eq(rec16_vec_capacity(&v), 4);
    rec16_t more[30];
    for (uint32_t i = 0; i < 30; i++) more[i] = (rec16_t){100 + i, (float)i * 2, 1, 2};
    ck_assert_int_eq(rec16_vec_extend(&v, more, 30), 0);
    ck_assert_uint_eq(rec16_vec_len(&v), 33);
    ck_assert_uint_ge(rec16_vec_capacity(&v), 33);
    for (uint32_t i = 0; i < 3; i++) ck_assert_uint_eq(rec16_vec_at(&v, i)->id, i);
    for (uint32_t i = 0; i < 30; i++) {
        rec16_t r = rec16_vec_get_unchecked(&v, 3 + i);
        ck_assert_uint_eq(r.id, 100 + i);
        ck_assert(r.x == (float)i * 2 && r.z == 2.0f);
    }
    /* reserve(n) means room for len + n, not n in total. */
    ck_assert_int_eq(rec16_vec_reserve(&v, 10), 0);
    ck_assert_uint_ge(rec16_vec_capacity(&v), 43);
    rec16_vec_destroy(&v);
}
END_TEST

START_TEST(test_vec_reserve_size_overflow_returns_eoverflow_unchanged) {
    reset_counting();
    sp_vec_u64_t v;
    sp_vec_u64_init(&v, &counting);
    for (uint64_t i = 0; i < 5; i++) sp_vec_u64_push(&v, i);
    void *data = sp_vec_u64_data(&v);
    size_t cap = sp_vec_u64_capacity(&v);
    int allocs = sp_test_alloc_get(&cnt.allocs);
    ck_assert_int_eq(sp_vec_u64_reserve(&v, SIZE_MAX / 2), SP_EOVERFLOW);       /* count * 8 */
    ck_assert_int_eq(sp_vec_u64_reserve(&v, SIZE_MAX - 2), SP_EOVERFLOW);       /* len + n */
    ck_assert_int_eq(sp_vec_u64_reserve_exact(&v, SIZE_MAX / 16), SP_EOVERFLOW); /* > PTRDIFF_MAX */
    ck_assert_int_eq(sp_vec_u64_resize(&v, SIZE_MAX / 4), SP_EOVERFLOW);
    uint64_t one = 1;
    ck_assert_int_eq(sp_vec_u64_extend(&v, &one, SIZE_MAX / 4), SP_EOVERFLOW);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.allocs), allocs); /* no allocation attempted */
    ck_assert_ptr_eq(sp_vec_u64_data(&v), data);
    ck_assert_uint_eq(sp_vec_u64_capacity(&v), cap);
    ck_assert_uint_eq(sp_vec_u64_len(&v), 5);
    for (uint64_t i = 0; i < 5; i++) ck_assert_uint_eq(sp_vec_u64_get_unchecked(&v, i), i);
    /* Huge elements: count * size overflows at a small count. */
    sp_vec_t g;
    ck_assert_int_eq(sp_vec_init(&g, SIZE_MAX / 4, NULL), 0);
    ck_assert_int_eq(sp_vec_reserve(&g, 8), SP_EOVERFLOW);
    ck_assert_uint_eq(sp_vec_capacity(&g), 0);
    sp_vec_destroy(&g);
    sp_vec_u64_destroy(&v);
}
END_TEST

START_TEST(test_vec_oom_returns_enomem_contents_intact) {
    reset_counting();
    sp_vec_u32_t v;
    sp_vec_u32_init(&v, &counting);
    for (uint32_t i = 0; i < 16; i++) sp_vec_u32_push(&v, i + 7);
    ck_assert_uint_eq(sp_vec_u32_capacity(&v), 16); /* exactly one 64-byte block */
    sp_test_alloc_set(&cnt.fail_after, sp_test_alloc_get(&cnt.allocs)); /* every further allocation fails */
    uint32_t *data = sp_vec_u32_data(&v);
    ck_assert_int_eq(sp_vec_u32_push(&v, 99), SP_ENOMEM);
    uint32_t src[40] = {0};
    ck_assert_int_eq(sp_vec_u32_extend(&v, src, 40), SP_ENOMEM);
    ck_assert_int_eq(sp_vec_u32_reserve(&v, 1), SP_ENOMEM);
    ck_assert_int_eq(sp_vec_u32_resize(&v, 1000), SP_ENOMEM);
    ck_assert_int_eq(sp_vec_push(&v.base, &src[0]), SP_ENOMEM);
    ck_assert_ptr_eq(sp_vec_u32_data(&v), data);
    ck_assert_uint_eq(sp_vec_u32_len(&v), 16);
    ck_assert_uint_eq(sp_vec_u32_capacity(&v), 16);
    for (uint32_t i = 0; i < 16; i++) ck_assert_uint_eq(sp_vec_u32_get_unchecked(&v, i), i + 7);
    /* Memory is back: the same calls now work. */
    sp_test_alloc_set(&cnt.fail_after, -1);
    ck_assert_int_eq(sp_vec_u32_push(&v, 99), 0);
    ck_assert_uint_eq(sp_vec_u32_get_unchecked(&v, 16), 99);
    ck_assert_uint_eq(sp_vec_u32_get_unchecked(&v, 0), 7);
    sp_vec_u32_destroy(&v);
    ck_assert_uint_eq(sp_test_alloc_get(&cnt.live_bytes), 0);
    ck_assert_int_eq(sp_test_alloc_get(&cnt.frees), sp_test_alloc_get(&cnt.allocs));
}
END_TEST

START_TEST(test_vec_storage_is_64_byte_aligned_whole_blocks) {
    static const size_t sizes[] = {1, 3, 8, 12, 24, 64, 100, 200};
    reset_counting();
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        sp_vec_t v;
        ck_assert_int_eq(sp_vec_init(&v, sizes[s], &counting), 0);
        ck_assert_uint_eq((uintptr_t)sp_vec_data(&v) % SP_SIMD_ALIGN, 0); /* sentinel too */
        ck_assert_ptr_nonnull(sp_vec_begin(&v));
        ck_assert_ptr_eq(sp_vec_begin(&v), sp_vec_end(&v));
        unsigned char elem[200];
        for (int i = 0; i < 300; i++) {
            memset(elem, i, sizes[s]);
            ck_assert_int_eq(sp_vec_push(&v, elem), 0);
            ck_assert_uint_eq((uintptr_t)sp_vec_data(&v) % SP_SIMD_ALIGN, 0);
            ck_assert_uint_eq(sp_test_alloc_get(&cnt.last_size) % SP_SIMD_ALIGN, 0);
            ck_assert_uint_le(sp_vec_capacity(&v) * sizes[s], sp_test_alloc_get(&cnt.last_size));
            ck_assert_uint_gt((sp_vec_capacity(&v) + 1) * sizes[s], sp_test_alloc_get(&cnt.last_size));
        }
        for (int i = 0; i < 300; i++)
            ck_assert_uint_eq(((unsigned char *)sp_vec_get_unchecked(&v, (size_t)i))[sizes[s] - 1],
                              (unsigned)(i & 0xff));
        sp_vec_destroy(&v);
    }
    ck_assert_uint_eq(sp_test_alloc_get(&cnt.live_bytes), 0); /* free got the size alloc got */
}
END_TEST

START_TEST(test_vec_growth_is_amortised) {
    reset_counting();
    sp_vec_f32_t v;
    sp_vec_f32_init(&v, &counting);
    for (int i = 0; i < 1000000; i++) sp_vec_f32_push(&v, (float)i);
    ck_assert_int_le(sp_test_alloc_get(&cnt.allocs), 20); /* doubling from 16 to 1M: 17 */
    ck_assert(sp_vec_f32_get_unchecked(&v, 999999) == 999999.0f);
    sp_vec_f32_destroy(&v);
}
END_TEST

START_TEST(test_vec_remove_swap_moves_last_into_hole) {
    rec24_vec_t v;
    rec24_vec_init(&v, NULL);
    for (uint64_t i = 0; i < 5; i++) rec24_vec_push(&v, (rec24_t){i, i * 10, i * 100});
    rec24_t out;
    ck_assert_int_eq(rec24_vec_remove_swap(&v, 1, &out), 0);
    ck_assert_uint_eq(out.b, 10);
    ck_assert_uint_eq(rec24_vec_len(&v), 4);
    ck_assert_uint_eq(rec24_vec_at(&v, 1)->a, 4);
    ck_assert_int_eq(rec24_vec_remove_swap(&v, 3, NULL), 0); /* last one */
    ck_assert_uint_eq(rec24_vec_len(&v), 3);
    ck_assert_uint_eq(rec24_vec_at(&v, 0)->a, 0);
    ck_assert_uint_eq(rec24_vec_at(&v, 1)->a, 4);
    ck_assert_uint_eq(rec24_vec_at(&v, 2)->a, 2);
    ck_assert_int_eq(rec24_vec_remove_swap(&v, 3, &out), SP_ERANGE);
    /* Generic version. */
    ck_assert_int_eq(sp_vec_remove_swap(&v.base, 0, &out), 0);
    ck_assert_uint_eq(out.c, 0);
    ck_assert_uint_eq(rec24_vec_at(&v, 0)->a, 2);
    ck_assert_uint_eq(rec24_vec_len(&v), 2);
    rec24_vec_destroy(&v);
}
END_TEST

START_TEST(test_vec_clear_and_truncate_keep_capacity) {
    sp_vec_i32_t v;
    sp_vec_i32_init(&v, NULL);
    for (int32_t i = 0; i < 100; i++) sp_vec_i32_push(&v, -i);
    size_t cap = sp_vec_i32_capacity(&v);
    int32_t *data = sp_vec_i32_data(&v);
    sp_vec_i32_truncate(&v, 40);
    ck_assert_uint_eq(sp_vec_i32_len(&v), 40);
    sp_vec_i32_truncate(&v, 80); /* no-op */
    ck_assert_uint_eq(sp_vec_i32_len(&v), 40);
    ck_assert_int_eq(sp_vec_i32_get_unchecked(&v, 39), -39);
    sp_vec_i32_clear(&v);
    ck_assert_uint_eq(sp_vec_i32_len(&v), 0);
    ck_assert_uint_eq(sp_vec_i32_capacity(&v), cap);
    ck_assert_ptr_eq(sp_vec_i32_begin(&v), sp_vec_i32_end(&v));
    for (int32_t i = 0; i < 100; i++) sp_vec_i32_push(&v, i);
    ck_assert_ptr_eq(sp_vec_i32_data(&v), data); /* no reallocation */
    sp_vec_i32_destroy(&v);
    ck_assert_uint_eq(sp_vec_i32_capacity(&v), 0);
    sp_vec_i32_destroy(&v); /* twice is harmless */
}
END_TEST

START_TEST(test_vec_iteration_by_pointer_keeps_values_in_place) {
    sp_vec_f64_t v;
    sp_vec_f64_init(&v, NULL);
    for (int i = 1; i <= 100; i++) sp_vec_f64_push(&v, (double)i);
    double sum = 0;
    for (const double *p = sp_vec_f64_begin(&v); p != sp_vec_f64_end(&v); ++p) sum += *p;
    ck_assert(sum == 5050.0);
    for (double *p = sp_vec_f64_begin(&v); p != sp_vec_f64_end(&v); ++p) *p *= 2; /* in place */
    /* Iterating again sees the same elements, still owned by the vector. */
    ck_assert_uint_eq(sp_vec_f64_len(&v), 100);
    sum = 0;
    for (const double *p = sp_vec_f64_begin(&v); p != sp_vec_f64_end(&v); ++p) sum += *p;
    ck_assert(sum == 10100.0);
    ck_assert_uint_eq((size_t)(sp_vec_f64_end(&v) - sp_vec_f64_begin(&v)), 100);
    /* Generic range covers len * elem_size bytes. */
    ck_assert_uint_eq((size_t)((char *)sp_vec_end(&v.base) - (char *)sp_vec_begin(&v.base)), 800);
    sp_vec_f64_destroy(&v);
}
END_TEST

START_TEST(test_vec_push_and_extend_from_own_storage) {
    sp_vec_t v;
    sp_vec_init(&v, sizeof(uint64_t), NULL);
    for (uint64_t i = 0; i < 8; i++) sp_vec_push(&v, &i); /* cap 8: full */
    ck_assert_uint_eq(sp_vec_capacity(&v), 8);
    /* Push an element of the vector itself while it must reallocate. */
    ck_assert_int_eq(sp_vec_push(&v, sp_vec_at(&v, 3)), 0);
    uint64_t x;
    sp_vec_get(&v, 8, &x);
    ck_assert_uint_eq(x, 3);
    /* Extend with its own whole contents, forcing a reallocation. */
    ck_assert_int_eq(sp_vec_extend(&v, sp_vec_data(&v), 9), 0);
    ck_assert_uint_eq(sp_vec_len(&v), 18);
    for (size_t i = 0; i < 9; i++)
        ck_assert_uint_eq(*(uint64_t *)sp_vec_at(&v, i + 9), *(uint64_t *)sp_vec_at(&v, i));
    ck_assert_int_eq(sp_vec_extend(&v, NULL, 0), 0);
    ck_assert_uint_eq(sp_vec_len(&v), 18);
    sp_vec_destroy(&v);
}
END_TEST

START_TEST(test_vec_resize_zero_fills_new_elements) {
    sp_vec_f32_t v;
    sp_vec_f32_init(&v, NULL);
    sp_vec_f32_push(&v, 3.0f);
    ck_assert_int_eq(sp_vec_f32_resize(&v, 1000), 0);
    ck_assert_uint_eq(sp_vec_f32_len(&v), 1000);
    ck_assert(sp_vec_f32_get_unchecked(&v, 0) == 3.0f);
    for (size_t i = 1; i < 1000; i++) ck_assert(sp_vec_f32_get_unchecked(&v, i) == 0.0f);
    for (float *p = sp_vec_f32_begin(&v); p != sp_vec_f32_end(&v); ++p) *p = 5.0f;
    ck_assert_int_eq(sp_vec_f32_resize(&v, 10), 0);
    ck_assert_int_eq(sp_vec_f32_resize(&v, 20), 0); /* regrown part is zeroed again */
    ck_assert(sp_vec_f32_get_unchecked(&v, 9) == 5.0f);
    ck_assert(sp_vec_f32_get_unchecked(&v, 10) == 0.0f);
    sp_vec_f32_destroy(&v);
}
END_TEST

START_TEST(test_vec_init_rejects_zero_elem_size) {
    sp_vec_t v;
    memset(&v, 0x5a, sizeof v);
    ck_assert_int_eq(sp_vec_init(&v, 0, NULL), SP_EINVAL);
    ck_assert_uint_eq(v.len, 0x5a5a5a5a5a5a5a5aull); /* untouched */
}
END_TEST

#ifdef SP_DEBUG
START_TEST(test_vec_get_unchecked_out_of_range_asserts_in_debug) {
    sp_vec_u32_t v;
    sp_vec_u32_init(&v, NULL);
    sp_vec_u32_push(&v, 1);
    (void)sp_vec_u32_get_unchecked(&v, 1); /* aborts */
}
END_TEST
#endif

static Suite *vec_suite(void) {
    Suite *s = suite_create("vec");
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {
        {"roundtrip", test_vec_push_get_pop_roundtrip},
        {"get_range", test_vec_get_out_of_range_returns_erange},
        {"seed_extend", test_vec_extend_after_reserve_len3_cap4_by30},
        {"overflow", test_vec_reserve_size_overflow_returns_eoverflow_unchanged},
        {"oom", test_vec_oom_returns_enomem_contents_intact},
        {"aligned", test_vec_storage_is_64_byte_aligned_whole_blocks},
        {"amortised", test_vec_growth_is_amortised},
        {"remove_swap", test_vec_remove_swap_moves_last_into_hole},
        {"clear", test_vec_clear_and_truncate_keep_capacity},
        {"iterate", test_vec_iteration_by_pointer_keeps_values_in_place},
        {"aliasing", test_vec_push_and_extend_from_own_storage},
        {"resize", test_vec_resize_zero_fills_new_elements},
        {"init", test_vec_init_rejects_zero_elem_size},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(20));
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
#ifdef SP_DEBUG
    TCase *tc = tcase_create("unchecked_debug");
    tcase_add_test_raise_signal(tc, test_vec_get_unchecked_out_of_range_asserts_in_debug, SIGABRT);
    suite_add_tcase(s, tc);
#endif
    return s;
}

SP_CHECK_MAIN(vec_suite)
