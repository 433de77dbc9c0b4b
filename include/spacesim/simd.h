/* spacesim/simd.h: f32 kernels on structure-of-arrays data with runtime CPU
 * dispatch (AVX-512F / AVX2+FMA / SSE2 / scalar).
 *
 * Dispatch: the best level the CPU *and the OS* support (cpuid feature bits
 * plus XGETBV for the saved register state) is chosen exactly once, at
 * library start-up (a constructor, with pthread_once as a fallback when a
 * kernel runs before constructors). There is no cpuid per call: each
 * sp_f32_* call is one load of the chosen table and one indirect call.
 * The environment variable SP_SIMD=scalar|sse2|avx2|avx512 lowers the level;
 * a request above what the machine supports is clamped to the best supported
 * level, and an unknown value is ignored.
 *
 * Numerics (the same at every level unless stated):
 *  - add, scale, integrate, integrate3, age round each operation separately (no
 *    fused multiply-add), so every level gives bit-identical results. The
 *    world's integration is therefore deterministic whatever level a machine
 *    (or SP_SIMD) picks.
 *  - axpy is fused (one rounding, fmaf) at levels whose ops->fused is 1
 *    (AVX2, AVX-512) and mul-then-add at the others (scalar, SSE2).
 *  - dot sums in a level-dependent order (several accumulators, FMA where
 *    available): results agree within float rounding, not bit for bit.
 *  - normalize is built from the level's dot and scale.
 *
 * Pointers: any alignment is accepted (unaligned loads, masked or scalar
 * tails); 64-byte alignment (SP_SIMD_ALIGN) is fastest. n == 0 is valid and
 * touches nothing; pointers may then be NULL. An output may be *identical* to
 * an input (in-place, e.g. dst == a) but must not partially overlap one.
 *
 * Threads: every function may be called from any thread at once; kernels
 * touch only the caller's arrays. None allocates, blocks or fails. */
#ifndef SPACESIM_SIMD_H
#define SPACESIM_SIMD_H

#include "spacesim/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Instruction-set levels, ordered: a higher level implies the lower ones. */
typedef enum sp_simd_level {
    SP_SIMD_SCALAR = 0, /* portable C (the compiler may still use baseline SSE2) */
    SP_SIMD_SSE2 = 1,   /* 4 lanes, no FMA */
    SP_SIMD_AVX2 = 2,   /* 8 lanes, AVX2 + FMA3 */
    SP_SIMD_AVX512 = 3, /* 16 lanes, AVX-512F, masked tails */
    SP_SIMD_LEVEL_COUNT = 4
} sp_simd_level_t;

/* One level's kernels. The table is static and immutable. The sp_f32_*
 * functions below call the chosen level's table; tests and benchmarks call a
 * given level through sp_simd_ops_for(). Contracts are those of sp_f32_*. */
typedef struct sp_simd_ops {
    sp_simd_level_t level;
    const char *name; /* "scalar", "sse2", "avx2", "avx512" */
    int fused;        /* 1: axpy uses fused multiply-add (one rounding) */
    void (*add)(float *dst, const float *a, const float *b, size_t n);
    void (*scale)(float *dst, const float *a, float s, size_t n);
    void (*axpy)(float *y, float a, const float *x, size_t n);
    float (*dot)(const float *a, const float *b, size_t n);
    void (*normalize)(float *v, size_t n);
    void (*integrate)(float *pos, const float *vel, float dt, size_t n);
    void (*integrate3)(float *x, float *y, float *z, const float *vx, const float *vy,
                       const float *vz, float dt, size_t n);
    size_t (*age)(float *life, float dt, size_t n, uint64_t *dead);
} sp_simd_ops_t;

/* dst[i] = a[i] + b[i] for i < n. */
SP_API void sp_f32_add(float *dst, const float *a, const float *b, size_t n);

/* dst[i] = a[i] * s for i < n. */
SP_API void sp_f32_scale(float *dst, const float *a, float s, size_t n);

/* y[i] += a * x[i] for i < n; fused (one rounding) where the level has FMA. */
SP_API void sp_f32_axpy(float *y, float a, const float *x, size_t n);

/* Returns sum of a[i]*b[i] for i < n (0 for n == 0); summation order is
 * level-dependent (see Numerics). */
SP_API float sp_f32_dot(const float *a, const float *b, size_t n);

/* Scale v in place to unit L2 length. A zero vector stays zero. Vectors whose
 * squared length overflows or underflows float are first scaled by their
 * largest magnitude, so huge and tiny vectors normalise too. NaN or infinite
 * elements give NaN results. Cost: two passes (three for extreme ranges). */
SP_API void sp_f32_normalize(float *v, size_t n);

/* The structure-of-arrays integrate step: pos[i] += vel[i] * dt for i < n
 * (mul then add, bit-identical at every level). dt in seconds, typically
 * 1/30. The world calls this on its entity arrays every tick. */
SP_API void sp_f32_integrate(float *pos, const float *vel, float dt, size_t n);

/* x += vx*dt, y += vy*dt, z += vz*dt over n elements in one call (one pass,
 * six streams); bit-identical to three sp_f32_integrate calls. */
SP_API void sp_f32_integrate3(float *x, float *y, float *z, const float *vx, const float *vy,
                              const float *vz, float dt, size_t n);

/* Ageing with a death mask: life[i] -= dt for i < n (bit-identical at every
 * level), and bit i of the mask (dead[i / 64] >> (i % 64) & 1) is set iff the
 * new life[i] <= 0. Writes the (n + 63) / 64 words covering n in full (bits
 * at i >= n are 0) and nothing beyond; dead may be NULL (count only).
 * Returns the number of set bits. One pass over life; the mask is 1/32 of
 * its size, so finding the dead costs O(n / 64) word reads afterwards. */
SP_API size_t sp_f32_age(float *life, float dt, size_t n, uint64_t *dead);

/* The level chosen at start-up (after SP_SIMD), and its name. Never fails. */
SP_API sp_simd_level_t sp_simd_level(void);
SP_API const char *sp_simd_level_name(void);

/* The best level this CPU and OS support, ignoring SP_SIMD. */
SP_API sp_simd_level_t sp_simd_cpu_level(void);

/* The kernel table of `level`, or NULL when the CPU/OS cannot run it (or
 * level is out of range). The pointer is static; never free it. */
SP_API const sp_simd_ops_t *sp_simd_ops_for(sp_simd_level_t level);

/* The table used by the sp_f32_* functions (never NULL). */
SP_API const sp_simd_ops_t *sp_simd_ops(void);

/* Name of a level ("avx2"); "unknown" when out of range. */
SP_API const char *sp_simd_name(sp_simd_level_t level);

/* Parse a level name as SP_SIMD accepts it ("scalar", "sse2", "avx2",
 * "avx512"; case-insensitive). Returns the level (>= 0) or SP_EINVAL. */
SP_API int sp_simd_parse_level(const char *name);

/* The selection rule applied at start-up, exposed for tests: the level
 * chosen for an SP_SIMD value `request` (NULL = unset) on a machine whose
 * best level is `cpu_max`. Unknown or empty requests give cpu_max; valid
 * ones give min(request, cpu_max). Pure; no side effects. */
SP_API sp_simd_level_t sp_simd_choose(const char *request, sp_simd_level_t cpu_max);

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_SIMD_H */
