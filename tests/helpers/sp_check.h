/* sp_check.h: small helpers shared by the Check suites.
 *
 * Fork mode stays on (a crash is a failed test, not a dead runner). For
 * debugging: CK_FORK=no gdb tests/check_vec, CK_RUN_CASE=<tcase>. */
#ifndef SP_CHECK_H
#define SP_CHECK_H

#include <check.h>
#include <stdlib.h>

/* Sanitizer detection, so stress tests can scale their default sizes. */
#if defined(__SANITIZE_THREAD__)
#define SP_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SP_UNDER_TSAN 1
#endif
#endif
#ifndef SP_UNDER_TSAN
#define SP_UNDER_TSAN 0
#endif

/* Integer from the environment, or def when unset/unparsable. Stress tests read
 * SP_STRESS_THREADS and SP_STRESS_ITEMS through this. */
static inline long sp_env_long(const char *name, long def) {
    const char *s = getenv(name);
    if (s == NULL || *s == '\0') return def;
    char *end;
    long v = strtol(s, &end, 10);
    return (*end == '\0' && v > 0) ? v : def;
}

/* A tcase timeout in seconds, scaled by CK_TIMEOUT_MULTIPLIER (sanitizer builds
 * run several times slower; libuv's UV_TEST_TIMEOUT_MULTIPLIER). */
static inline double sp_timeout(double seconds) {
    const char *s = getenv("CK_TIMEOUT_MULTIPLIER");
    double m = s ? strtod(s, NULL) : 1.0;
    if (m < 1.0) m = 1.0;
#if SP_UNDER_TSAN
    if (m < 10.0) m = 10.0;
#endif
    return seconds * m;
}

/* main() for a one-suite test binary: exit status 0 only if every test passed. */
#define SP_CHECK_MAIN(make_suite)                          \
    int main(void) {                                       \
        SRunner *sr = srunner_create(make_suite());        \
        srunner_run_all(sr, CK_NORMAL);                    \
        int failed = srunner_ntests_failed(sr);            \
        srunner_free(sr);                                  \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;  \
    }

#endif /* SP_CHECK_H */
