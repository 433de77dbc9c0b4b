/* simd.c: f32 kernels at four instruction-set levels and their dispatch.
 *
 * Each level is a static table of function pointers (sp_simd_ops_t). The
 * x86 kernels use function-level target attributes with intrinsics, so one
 * file builds every level with no per-file -m flags under gcc and clang; only
 * a level the CPU and OS support is ever called.
 *
 * Exactness: add/scale/integrate/integrate3/age must give the same bits at every
 * level (the world's determinism relies on it), so no level may fuse their
 * multiply and add. gcc does not contract under -std=c11 (-ffp-contract=off
 * in ISO mode); clang contracts within one expression by default, which the
 * pragma below turns off. Scalar tails are also written as two statements.
 * tests/check_simd.c compares every level with scalar bit for bit. */
#include "spacesim/simd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

#if defined(__x86_64__)
#define SP_SIMD_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define SP_SIMD_X86 0
#endif

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* ------------------------------------------------------------------ helpers */

/* sqrt without libm: the library is linked without -lm, and a plain sqrt()
 * call keeps an errno path that references libm. ss is never negative here. */
static double sqrt_d(double x) {
#if SP_SIMD_X86
    __m128d v = _mm_set_sd(x);
    return _mm_cvtsd_f64(_mm_sqrt_sd(v, v));
#else
    return __builtin_sqrt(x);
#endif
}

static int is_finite_f(float x) { return x - x == 0.0f; }

/* Shared normalize: ||v|| from the level's dot, then the level's scale. When
 * the sum of squares overflows or falls below FLT_MIN (where squares lose
 * precision or flush to zero), first divide by the largest magnitude (in
 * double, a rare path), which brings the largest element to exactly 1. */
static void normalize_with(float *v, size_t n, float (*dot)(const float *, const float *, size_t),
                           void (*scale)(float *, const float *, float, size_t)) {
    if (n == 0) return;
    float ss = dot(v, v, n);
    if (!(ss >= 1.17549435e-38f) || !is_finite_f(ss)) {
        float m = 0.0f;
        int finite = 1;
        for (size_t i = 0; i < n; i++) {
            float a = v[i] < 0.0f ? -v[i] : v[i];
            finite &= is_finite_f(a);
            if (a > m) m = a;
        }
        if (!finite) { /* an inf or NaN element: every result becomes NaN */
            scale(v, v, __builtin_nanf(""), n);
            return;
        }
        if (m == 0.0f) return; /* the zero vector stays zero */
        for (size_t i = 0; i < n; i++) v[i] = (float)((double)v[i] / (double)m);
        ss = dot(v, v, n);
    }
    scale(v, v, (float)(1.0 / sqrt_d((double)ss)), n);
}

/* ------------------------------------------------------------------ scalar */

static void add_scalar(float *dst, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = a[i] + b[i];
}

static void scale_scalar(float *dst, const float *a, float s, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = a[i] * s;
}

/* Not fused: scalar and SSE2 have no FMA (ops->fused == 0). */
static void axpy_scalar(float *y, float a, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float t = a * x[i];
        y[i] = y[i] + t;
    }
}

static float dot_scalar(const float *a, const float *b, size_t n) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void normalize_scalar(float *v, size_t n) { normalize_with(v, n, dot_scalar, scale_scalar); }

static void integrate_scalar(float *pos, const float *vel, float dt, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float t = vel[i] * dt;
        pos[i] = pos[i] + t;
    }
}

static void integrate3_scalar(float *x, float *y, float *z, const float *vx, const float *vy,
                              const float *vz, float dt, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float tx = vx[i] * dt, ty = vy[i] * dt, tz = vz[i] * dt;
        x[i] = x[i] + tx;
        y[i] = y[i] + ty;
        z[i] = z[i] + tz;
    }
}

/* Bits for [lo, hi) of one mask word, scalar; used for tails too. */
static uint64_t age_bits_scalar(float *life, float dt, size_t lo, size_t hi, size_t base) {
    uint64_t bits = 0;
    for (size_t i = lo; i < hi; i++) {
        float l = life[i] - dt;
        life[i] = l;
        bits |= (uint64_t)(l <= 0.0f) << (i - base);
    }
    return bits;
}

static size_t age_scalar(float *life, float dt, size_t n, uint64_t *dead) {
    size_t total = 0;
    for (size_t lo = 0; lo < n; lo += 64) {
        size_t hi = n - lo > 64 ? lo + 64 : n;
        uint64_t bits = age_bits_scalar(life, dt, lo, hi, lo);
        if (dead) dead[lo / 64] = bits;
        total += (size_t)__builtin_popcountll(bits);
    }
    return total;
}

static const sp_simd_ops_t ops_scalar = {
    .level = SP_SIMD_SCALAR,
    .name = "scalar",
    .fused = 0,
    .add = add_scalar,
    .scale = scale_scalar,
    .axpy = axpy_scalar,
    .dot = dot_scalar,
    .normalize = normalize_scalar,
    .integrate = integrate_scalar,
    .integrate3 = integrate3_scalar,
    .age = age_scalar,
};

#if SP_SIMD_X86
/* ------------------------------------------------------------------ SSE2 */
#define SP_T_SSE2 __attribute__((target("sse2")))
#define SP_T_AVX2 __attribute__((target("avx2,fma")))
#define SP_T_AVX512 __attribute__((target("avx512f")))

SP_T_SSE2 static void add_sse2(float *dst, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128 r0 = _mm_add_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i));
        __m128 r1 = _mm_add_ps(_mm_loadu_ps(a + i + 4), _mm_loadu_ps(b + i + 4));
        _mm_storeu_ps(dst + i, r0);
        _mm_storeu_ps(dst + i + 4, r1);
    }
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(dst + i, _mm_add_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
    for (; i < n; i++) dst[i] = a[i] + b[i];
}

SP_T_SSE2 static void scale_sse2(float *dst, const float *a, float s, size_t n) {
    const __m128 vs = _mm_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128 r0 = _mm_mul_ps(_mm_loadu_ps(a + i), vs);
        __m128 r1 = _mm_mul_ps(_mm_loadu_ps(a + i + 4), vs);
        _mm_storeu_ps(dst + i, r0);
        _mm_storeu_ps(dst + i + 4, r1);
    }
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(dst + i, _mm_mul_ps(_mm_loadu_ps(a + i), vs));
    for (; i < n; i++) dst[i] = a[i] * s;
}

SP_T_SSE2 static void axpy_sse2(float *y, float a, const float *x, size_t n) {
    const __m128 va = _mm_set1_ps(a);
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(y + i, _mm_add_ps(_mm_loadu_ps(y + i), _mm_mul_ps(va, _mm_loadu_ps(x + i))));
    for (; i < n; i++) {
        float t = a * x[i];
        y[i] = y[i] + t;
    }
}

SP_T_SSE2 static float dot_sse2(const float *a, const float *b, size_t n) {
    __m128 s0 = _mm_setzero_ps(), s1 = _mm_setzero_ps(), s2 = _mm_setzero_ps(), s3 = _mm_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
        s1 = _mm_add_ps(s1, _mm_mul_ps(_mm_loadu_ps(a + i + 4), _mm_loadu_ps(b + i + 4)));
        s2 = _mm_add_ps(s2, _mm_mul_ps(_mm_loadu_ps(a + i + 8), _mm_loadu_ps(b + i + 8)));
        s3 = _mm_add_ps(s3, _mm_mul_ps(_mm_loadu_ps(a + i + 12), _mm_loadu_ps(b + i + 12)));
    }
    for (; i + 4 <= n; i += 4) s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
    __m128 s = _mm_add_ps(_mm_add_ps(s0, s1), _mm_add_ps(s2, s3));
    /* Horizontal sum: (s0+s2) + (s1+s3). */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    float r = _mm_cvtss_f32(s);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

SP_T_SSE2 static void normalize_sse2(float *v, size_t n) { normalize_with(v, n, dot_sse2, scale_sse2); }

SP_T_SSE2 static void integrate_sse2(float *pos, const float *vel, float dt, size_t n) {
    const __m128 vdt = _mm_set1_ps(dt);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128 p0 = _mm_add_ps(_mm_loadu_ps(pos + i), _mm_mul_ps(_mm_loadu_ps(vel + i), vdt));
        __m128 p1 = _mm_add_ps(_mm_loadu_ps(pos + i + 4), _mm_mul_ps(_mm_loadu_ps(vel + i + 4), vdt));
        _mm_storeu_ps(pos + i, p0);
        _mm_storeu_ps(pos + i + 4, p1);
    }
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(pos + i, _mm_add_ps(_mm_loadu_ps(pos + i), _mm_mul_ps(_mm_loadu_ps(vel + i), vdt)));
    for (; i < n; i++) {
        float t = vel[i] * dt;
        pos[i] = pos[i] + t;
    }
}

SP_T_SSE2 static void integrate3_sse2(float *x, float *y, float *z, const float *vx, const float *vy,
                                      const float *vz, float dt, size_t n) {
    const __m128 vdt = _mm_set1_ps(dt);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        _mm_storeu_ps(x + i, _mm_add_ps(_mm_loadu_ps(x + i), _mm_mul_ps(_mm_loadu_ps(vx + i), vdt)));
        _mm_storeu_ps(y + i, _mm_add_ps(_mm_loadu_ps(y + i), _mm_mul_ps(_mm_loadu_ps(vy + i), vdt)));
        _mm_storeu_ps(z + i, _mm_add_ps(_mm_loadu_ps(z + i), _mm_mul_ps(_mm_loadu_ps(vz + i), vdt)));
    }
    if (i < n) integrate3_scalar(x + i, y + i, z + i, vx + i, vy + i, vz + i, dt, n - i);
}

SP_T_SSE2 static size_t age_sse2(float *life, float dt, size_t n, uint64_t *dead) {
    const __m128 vdt = _mm_set1_ps(dt), zero = _mm_setzero_ps();
    size_t total = 0;
    for (size_t lo = 0; lo < n; lo += 64) {
        size_t hi = n - lo > 64 ? lo + 64 : n, i = lo;
        uint64_t bits = 0;
        for (; i + 4 <= hi; i += 4) {
            __m128 l = _mm_sub_ps(_mm_loadu_ps(life + i), vdt);
            _mm_storeu_ps(life + i, l);
            bits |= (uint64_t)(unsigned)_mm_movemask_ps(_mm_cmple_ps(l, zero)) << (i - lo);
        }
        bits |= age_bits_scalar(life, dt, i, hi, lo);
        if (dead) dead[lo / 64] = bits;
        total += (size_t)__builtin_popcountll(bits);
    }
    return total;
}

static const sp_simd_ops_t ops_sse2 = {
    .level = SP_SIMD_SSE2,
    .name = "sse2",
    .fused = 0,
    .add = add_sse2,
    .scale = scale_sse2,
    .axpy = axpy_sse2,
    .dot = dot_sse2,
    .normalize = normalize_sse2,
    .integrate = integrate_sse2,
    .integrate3 = integrate3_sse2,
    .age = age_sse2,
};

/* ------------------------------------------------------------------ AVX2 + FMA */
/* Tails are scalar (vmaskmovps stores are slow on AMD); axpy's tail uses the
 * scalar FMA instruction so the whole array is fused. */

SP_T_AVX2 static void add_avx2(float *dst, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 r0 = _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 r1 = _mm256_add_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 r2 = _mm256_add_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 r3 = _mm256_add_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        _mm256_storeu_ps(dst + i, r0);
        _mm256_storeu_ps(dst + i + 8, r1);
        _mm256_storeu_ps(dst + i + 16, r2);
        _mm256_storeu_ps(dst + i + 24, r3);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++) dst[i] = a[i] + b[i];
}

SP_T_AVX2 static void scale_avx2(float *dst, const float *a, float s, size_t n) {
    const __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 r0 = _mm256_mul_ps(_mm256_loadu_ps(a + i), vs);
        __m256 r1 = _mm256_mul_ps(_mm256_loadu_ps(a + i + 8), vs);
        __m256 r2 = _mm256_mul_ps(_mm256_loadu_ps(a + i + 16), vs);
        __m256 r3 = _mm256_mul_ps(_mm256_loadu_ps(a + i + 24), vs);
        _mm256_storeu_ps(dst + i, r0);
        _mm256_storeu_ps(dst + i + 8, r1);
        _mm256_storeu_ps(dst + i + 16, r2);
        _mm256_storeu_ps(dst + i + 24, r3);
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), vs));
    for (; i < n; i++) dst[i] = a[i] * s;
}

SP_T_AVX2 static void axpy_avx2(float *y, float a, const float *x, size_t n) {
    const __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 r0 = _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 r1 = _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        _mm256_storeu_ps(y + i, r0);
        _mm256_storeu_ps(y + i + 8, r1);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    const __m128 sa = _mm_set_ss(a);
    for (; i < n; i++) y[i] = _mm_cvtss_f32(_mm_fmadd_ss(sa, _mm_set_ss(x[i]), _mm_set_ss(y[i])));
}

SP_T_AVX2 static float dot_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    for (; i < n; i++) h = _mm_fmadd_ss(_mm_set_ss(a[i]), _mm_set_ss(b[i]), h);
    return _mm_cvtss_f32(h);
}

SP_T_AVX2 static void normalize_avx2(float *v, size_t n) { normalize_with(v, n, dot_avx2, scale_avx2); }

SP_T_AVX2 static void integrate_avx2(float *pos, const float *vel, float dt, size_t n) {
    const __m256 vdt = _mm256_set1_ps(dt);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 p0 = _mm256_add_ps(_mm256_loadu_ps(pos + i), _mm256_mul_ps(_mm256_loadu_ps(vel + i), vdt));
        __m256 p1 = _mm256_add_ps(_mm256_loadu_ps(pos + i + 8), _mm256_mul_ps(_mm256_loadu_ps(vel + i + 8), vdt));
        __m256 p2 = _mm256_add_ps(_mm256_loadu_ps(pos + i + 16), _mm256_mul_ps(_mm256_loadu_ps(vel + i + 16), vdt));
        __m256 p3 = _mm256_add_ps(_mm256_loadu_ps(pos + i + 24), _mm256_mul_ps(_mm256_loadu_ps(vel + i + 24), vdt));
        _mm256_storeu_ps(pos + i, p0);
        _mm256_storeu_ps(pos + i + 8, p1);
        _mm256_storeu_ps(pos + i + 16, p2);
        _mm256_storeu_ps(pos + i + 24, p3);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(pos + i, _mm256_add_ps(_mm256_loadu_ps(pos + i), _mm256_mul_ps(_mm256_loadu_ps(vel + i), vdt)));
    for (; i < n; i++) {
        float t = vel[i] * dt;
        pos[i] = pos[i] + t;
    }
}

SP_T_AVX2 static void integrate3_avx2(float *x, float *y, float *z, const float *vx, const float *vy,
                                      const float *vz, float dt, size_t n) {
    const __m256 vdt = _mm256_set1_ps(dt);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 px = _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_mul_ps(_mm256_loadu_ps(vx + i), vdt));
        __m256 py = _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(_mm256_loadu_ps(vy + i), vdt));
        __m256 pz = _mm256_add_ps(_mm256_loadu_ps(z + i), _mm256_mul_ps(_mm256_loadu_ps(vz + i), vdt));
        _mm256_storeu_ps(x + i, px);
        _mm256_storeu_ps(y + i, py);
        _mm256_storeu_ps(z + i, pz);
    }
    for (; i < n; i++) {
        float tx = vx[i] * dt, ty = vy[i] * dt, tz = vz[i] * dt;
        x[i] = x[i] + tx;
        y[i] = y[i] + ty;
        z[i] = z[i] + tz;
    }
}

SP_T_AVX2 static size_t age_avx2(float *life, float dt, size_t n, uint64_t *dead) {
    const __m256 vdt = _mm256_set1_ps(dt), zero = _mm256_setzero_ps();
    size_t total = 0;
    for (size_t lo = 0; lo < n; lo += 64) {
        size_t hi = n - lo > 64 ? lo + 64 : n, i = lo;
        uint64_t bits = 0;
        for (; i + 8 <= hi; i += 8) {
            __m256 l = _mm256_sub_ps(_mm256_loadu_ps(life + i), vdt);
            _mm256_storeu_ps(life + i, l);
            bits |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(l, zero, _CMP_LE_OQ)) << (i - lo);
        }
        bits |= age_bits_scalar(life, dt, i, hi, lo);
        if (dead) dead[lo / 64] = bits;
        total += (size_t)__builtin_popcountll(bits);
    }
    return total;
}

static const sp_simd_ops_t ops_avx2 = {
    .level = SP_SIMD_AVX2,
    .name = "avx2",
    .fused = 1,
    .add = add_avx2,
    .scale = scale_avx2,
    .axpy = axpy_avx2,
    .dot = dot_avx2,
    .normalize = normalize_avx2,
    .integrate = integrate_avx2,
    .integrate3 = integrate3_avx2,
    .age = age_avx2,
};

/* ------------------------------------------------------------------ AVX-512F */
/* Tails use masked loads/stores: masked-off lanes are neither read (no fault
 * past the end of the array) nor written. Zen 4 executes 512-bit ops as two
 * 256-bit halves, so the win over AVX2 is fewer instructions and the tail. */

static inline __mmask16 tail_mask(size_t left) { return (__mmask16)((1u << left) - 1u); }

SP_T_AVX512 static void add_avx512(float *dst, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 r0 = _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 r1 = _mm512_add_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        __m512 r2 = _mm512_add_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
        __m512 r3 = _mm512_add_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));
        _mm512_storeu_ps(dst + i, r0);
        _mm512_storeu_ps(dst + i + 16, r1);
        _mm512_storeu_ps(dst + i + 32, r2);
        _mm512_storeu_ps(dst + i + 48, r3);
    }
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
    }
}

SP_T_AVX512 static void scale_avx512(float *dst, const float *a, float s, size_t n) {
    const __m512 vs = _mm512_set1_ps(s);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 r0 = _mm512_mul_ps(_mm512_loadu_ps(a + i), vs);
        __m512 r1 = _mm512_mul_ps(_mm512_loadu_ps(a + i + 16), vs);
        __m512 r2 = _mm512_mul_ps(_mm512_loadu_ps(a + i + 32), vs);
        __m512 r3 = _mm512_mul_ps(_mm512_loadu_ps(a + i + 48), vs);
        _mm512_storeu_ps(dst + i, r0);
        _mm512_storeu_ps(dst + i + 16, r1);
        _mm512_storeu_ps(dst + i + 32, r2);
        _mm512_storeu_ps(dst + i + 48, r3);
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), vs));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), vs));
    }
}

SP_T_AVX512 static void axpy_avx512(float *y, float a, const float *x, size_t n) {
    const __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 r0 = _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
        __m512 r1 = _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16));
        _mm512_storeu_ps(y + i, r0);
        _mm512_storeu_ps(y + i + 16, r1);
    }
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

SP_T_AVX512 static float dot_avx512(const float *a, const float *b, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

SP_T_AVX512 static void normalize_avx512(float *v, size_t n) { normalize_with(v, n, dot_avx512, scale_avx512); }

SP_T_AVX512 static void integrate_avx512(float *pos, const float *vel, float dt, size_t n) {
    const __m512 vdt = _mm512_set1_ps(dt);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 p0 = _mm512_add_ps(_mm512_loadu_ps(pos + i), _mm512_mul_ps(_mm512_loadu_ps(vel + i), vdt));
        __m512 p1 = _mm512_add_ps(_mm512_loadu_ps(pos + i + 16), _mm512_mul_ps(_mm512_loadu_ps(vel + i + 16), vdt));
        __m512 p2 = _mm512_add_ps(_mm512_loadu_ps(pos + i + 32), _mm512_mul_ps(_mm512_loadu_ps(vel + i + 32), vdt));
        __m512 p3 = _mm512_add_ps(_mm512_loadu_ps(pos + i + 48), _mm512_mul_ps(_mm512_loadu_ps(vel + i + 48), vdt));
        _mm512_storeu_ps(pos + i, p0);
        _mm512_storeu_ps(pos + i + 16, p1);
        _mm512_storeu_ps(pos + i + 32, p2);
        _mm512_storeu_ps(pos + i + 48, p3);
    }
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(pos + i, _mm512_add_ps(_mm512_loadu_ps(pos + i), _mm512_mul_ps(_mm512_loadu_ps(vel + i), vdt)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 p = _mm512_add_ps(_mm512_maskz_loadu_ps(m, pos + i), _mm512_mul_ps(_mm512_maskz_loadu_ps(m, vel + i), vdt));
        _mm512_mask_storeu_ps(pos + i, m, p);
    }
}

SP_T_AVX512 static void integrate3_avx512(float *x, float *y, float *z, const float *vx, const float *vy,
                                          const float *vz, float dt, size_t n) {
    const __m512 vdt = _mm512_set1_ps(dt);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 px0 = _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_mul_ps(_mm512_loadu_ps(vx + i), vdt));
        __m512 py0 = _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(_mm512_loadu_ps(vy + i), vdt));
        __m512 pz0 = _mm512_add_ps(_mm512_loadu_ps(z + i), _mm512_mul_ps(_mm512_loadu_ps(vz + i), vdt));
        __m512 px1 = _mm512_add_ps(_mm512_loadu_ps(x + i + 16), _mm512_mul_ps(_mm512_loadu_ps(vx + i + 16), vdt));
        __m512 py1 = _mm512_add_ps(_mm512_loadu_ps(y + i + 16), _mm512_mul_ps(_mm512_loadu_ps(vy + i + 16), vdt));
        __m512 pz1 = _mm512_add_ps(_mm512_loadu_ps(z + i + 16), _mm512_mul_ps(_mm512_loadu_ps(vz + i + 16), vdt));
        _mm512_storeu_ps(x + i, px0);
        _mm512_storeu_ps(y + i, py0);
        _mm512_storeu_ps(z + i, pz0);
        _mm512_storeu_ps(x + i + 16, px1);
        _mm512_storeu_ps(y + i + 16, py1);
        _mm512_storeu_ps(z + i + 16, pz1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask(n - i);
        __m512 px = _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_mul_ps(_mm512_maskz_loadu_ps(m, vx + i), vdt));
        __m512 py = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_mul_ps(_mm512_maskz_loadu_ps(m, vy + i), vdt));
        __m512 pz = _mm512_add_ps(_mm512_maskz_loadu_ps(m, z + i), _mm512_mul_ps(_mm512_maskz_loadu_ps(m, vz + i), vdt));
        _mm512_mask_storeu_ps(x + i, m, px);
        _mm512_mask_storeu_ps(y + i, m, py);
        _mm512_mask_storeu_ps(z + i, m, pz);
    }
}

SP_T_AVX512 static size_t age_avx512(float *life, float dt, size_t n, uint64_t *dead) {
    const __m512 vdt = _mm512_set1_ps(dt), zero = _mm512_setzero_ps();
    size_t total = 0;
    for (size_t lo = 0; lo < n; lo += 64) {
        size_t hi = n - lo > 64 ? lo + 64 : n;
        uint64_t bits = 0;
        for (size_t i = lo; i < hi; i += 16) {
            __mmask16 m = hi - i >= 16 ? (__mmask16)0xffff : tail_mask(hi - i);
            __m512 l = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, life + i), vdt);
            _mm512_mask_storeu_ps(life + i, m, l);
            bits |= (uint64_t)_mm512_mask_cmp_ps_mask(m, l, zero, _CMP_LE_OQ) << (i - lo);
        }
        if (dead) dead[lo / 64] = bits;
        total += (size_t)__builtin_popcountll(bits);
    }
    return total;
}

static const sp_simd_ops_t ops_avx512 = {
    .level = SP_SIMD_AVX512,
    .name = "avx512",
    .fused = 1,
    .add = add_avx512,
    .scale = scale_avx512,
    .axpy = axpy_avx512,
    .dot = dot_avx512,
    .normalize = normalize_avx512,
    .integrate = integrate_avx512,
    .integrate3 = integrate3_avx512,
    .age = age_avx512,
};
#endif /* SP_SIMD_X86 */

static const sp_simd_ops_t *const level_table[SP_SIMD_LEVEL_COUNT] = {
    &ops_scalar,
#if SP_SIMD_X86
    &ops_sse2,
    &ops_avx2,
    &ops_avx512,
#else
    NULL,
    NULL,
    NULL,
#endif
};

static const char *const level_names[SP_SIMD_LEVEL_COUNT] = {"scalar", "sse2", "avx2", "avx512"};

/* ------------------------------------------------------------------ detection */

#if SP_SIMD_X86
/* XCR0: which register state the OS saves on context switch. Only valid to
 * execute when CPUID.1:ECX.OSXSAVE is set. */
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

/* The best level the CPU implements AND the OS enables: AVX needs XMM+YMM
 * state in XCR0 (bits 1,2); AVX-512 also opmask, ZMM_Hi256, Hi16_ZMM (5,6,7).
 * A CPU with AVX-512 under an OS (or hypervisor) that does not save ZMM state
 * would otherwise corrupt registers across context switches. */
static sp_simd_level_t detect_cpu_level(void) {
#if SP_SIMD_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return SP_SIMD_SCALAR;
    if (!(d & (1u << 26))) return SP_SIMD_SCALAR; /* SSE2 */
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx || !fma) return SP_SIMD_SSE2;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return SP_SIMD_SSE2;
    if (__get_cpuid_max(0, NULL) < 7) return SP_SIMD_SSE2;
    __cpuid_count(7, 0, a, b, c, d);
    if (!(b & (1u << 5))) return SP_SIMD_SSE2; /* AVX2 */
    if (!(b & (1u << 16)) || (xcr0 & 0xe6) != 0xe6) return SP_SIMD_AVX2; /* AVX-512F */
    return SP_SIMD_AVX512;
#else
    return SP_SIMD_SCALAR;
#endif
}

const char *sp_simd_name(sp_simd_level_t level) {
    if ((unsigned)level >= SP_SIMD_LEVEL_COUNT) return "unknown";
    return level_names[level];
}

int sp_simd_parse_level(const char *name) {
    if (name == NULL) return SP_EINVAL;
    for (int l = 0; l < SP_SIMD_LEVEL_COUNT; l++)
        if (strcasecmp(name, level_names[l]) == 0) return l;
    return SP_EINVAL;
}

sp_simd_level_t sp_simd_choose(const char *request, sp_simd_level_t cpu_max) {
    int want = sp_simd_parse_level(request);
    if (want < 0) return cpu_max; /* unset, empty or unknown: ignored */
    return (sp_simd_level_t)want < cpu_max ? (sp_simd_level_t)want : cpu_max;
}

/* ------------------------------------------------------------------ dispatch */

/* Written once inside choose_once(), before the release store of g_ops. */
static sp_simd_level_t g_cpu_level;
static _Atomic(const sp_simd_ops_t *) g_ops;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose_once(void) {
    sp_simd_level_t cpu = detect_cpu_level();
    g_cpu_level = cpu;
    const sp_simd_ops_t *ops = level_table[sp_simd_choose(getenv("SP_SIMD"), cpu)];
    /* Publish the choice: g_cpu_level (a plain variable) written above must be
     * visible to any thread that sees g_ops non-NULL. Pairs with the acquire
     * load in get_ops(); with relaxed, a thread taking the fast path could read
     * g_cpu_level as 0 (the tables themselves are constant data). */
    atomic_store_explicit(&g_ops, ops, memory_order_release);
}

/* Runs at library load, so the choice is made once, before main(). */
__attribute__((constructor)) static void simd_init(void) { pthread_once(&g_once, choose_once); }

static inline const sp_simd_ops_t *get_ops(void) {
    /* Acquire: pairs with the release store in choose_once(); makes
     * g_cpu_level visible. A plain mov on x86. */
    const sp_simd_ops_t *ops = atomic_load_explicit(&g_ops, memory_order_acquire);
    if (SP_UNLIKELY(ops == NULL)) {
        /* Only before our constructor ran (another constructor calling in):
         * pthread_once runs choose_once exactly once and synchronises. */
        pthread_once(&g_once, choose_once);
        ops = atomic_load_explicit(&g_ops, memory_order_acquire); /* same pairing as above */
    }
    return ops;
}

const sp_simd_ops_t *sp_simd_ops(void) { return get_ops(); }

sp_simd_level_t sp_simd_level(void) { return get_ops()->level; }

const char *sp_simd_level_name(void) { return get_ops()->name; }

sp_simd_level_t sp_simd_cpu_level(void) {
    (void)get_ops();
    return g_cpu_level;
}

const sp_simd_ops_t *sp_simd_ops_for(sp_simd_level_t level) {
    if ((unsigned)level >= SP_SIMD_LEVEL_COUNT || level > sp_simd_cpu_level()) return NULL;
    return level_table[level];
}

/* ------------------------------------------------------------------ public kernels */

void sp_f32_add(float *dst, const float *a, const float *b, size_t n) { get_ops()->add(dst, a, b, n); }

void sp_f32_scale(float *dst, const float *a, float s, size_t n) { get_ops()->scale(dst, a, s, n); }

void sp_f32_axpy(float *y, float a, const float *x, size_t n) { get_ops()->axpy(y, a, x, n); }

float sp_f32_dot(const float *a, const float *b, size_t n) { return get_ops()->dot(a, b, n); }

void sp_f32_normalize(float *v, size_t n) { get_ops()->normalize(v, n); }

void sp_f32_integrate(float *pos, const float *vel, float dt, size_t n) { get_ops()->integrate(pos, vel, dt, n); }

void sp_f32_integrate3(float *x, float *y, float *z, const float *vx, const float *vy, const float *vz, float dt,
                       size_t n) {
    get_ops()->integrate3(x, y, z, vx, vy, vz, dt, n);
}

size_t sp_f32_age(float *life, float dt, size_t n, uint64_t *dead) { return get_ops()->age(life, dt, n, dead); }
