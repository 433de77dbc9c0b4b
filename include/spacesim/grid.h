/* spacesim/grid.h: uniform-grid broadphase for spheres.
 *
 * Given N spheres as SoA arrays (x, y, z, r), sp_grid_find_pairs() returns
 * every overlapping pair exactly once, with its distance and unit normal.
 *
 * How (and what the seed got wrong): the seed allocated a grid, never filled
 * it, and tested all N^2/2 pairs; each of its cells was a heap vector. Here
 * the spheres are bucketed by a counting sort into two flat arrays (cell start
 * offsets + sphere order), copied into cell order, and each sphere is tested
 * only against the half-shell of its neighbourhood (its own cell after it, and
 * the 13 neighbour cells with a larger cell index), so each pair is met once
 * and never needs de-duplication. In a dense grid the 13+1 cells are 5
 * contiguous runs of the sorted array (3 cells along x are adjacent).
 *
 * Overlap, exactly: spheres a < b overlap when, in float arithmetic, with
 *     dx = x[b] - x[a], dy = y[b] - y[a], dz = z[b] - z[a],
 *     d2 = dx*dx + dy*dy + dz*dz,  s = r[a] + r[b],
 * d2 < s*s. (A brute-force loop written that way gives the same pair set.)
 * Radius 0 is allowed: a point overlaps a sphere it is strictly inside; two
 * points never overlap. Squares above ~3e38 overflow to +inf (radii or
 * separations above ~1e19 world units); they follow the same float rule.
 *
 * Cells: edge h = max(cell_size, 2 * rmax * (1 + 2^-10)) where rmax is the
 * largest radius of the call (the small margin covers float rounding in the
 * overlap test). Cell coordinates are computed in double. When the data's
 * bounding box holds few enough cells (see sp_grid_def_t.max_dense_cells) a
 * dense grid clamped to that box is used; otherwise (far-apart or very
 * large coordinates) cells are hashed into a table of ~2N buckets and each
 * candidate's exact cell is compared, so hash collisions cost time, never
 * correctness or duplicates. Hashed cell coordinates are clamped to +-2^62
 * cells (coordinates beyond that only cost candidate tests).
 *
 * Threads: one sp_grid_t is used by one thread at a time (the caller's);
 * internally it may run the work on a small pool of its own threads (see
 * nthreads), which the call waits for. Different sp_grid_t objects are
 * independent. */
#ifndef SPACESIM_GRID_H
#define SPACESIM_GRID_H

#include <stdint.h>

#include "spacesim/arena.h"
#include "spacesim/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest nthreads accepted by sp_grid_create(). */
#define SP_GRID_MAX_THREADS 16

/* One overlapping pair: sphere indices a < b (positions in the input
 * arrays), centre distance dist (world units, >= 0, <= r[a] + r[b]) and the
 * unit normal (nx, ny, nz) pointing from a's centre to b's centre. When the
 * centres coincide in float (d2 == 0, including separations below ~1e-19
 * whose squares underflow) dist is 0 and the normal is +x: (1, 0, 0). */
typedef struct sp_pair {
    uint32_t a, b;
    float dist;
    float nx, ny, nz;
} sp_pair_t;

/* Order of the returned pairs. Both are deterministic functions of the input
 * alone: they never depend on the thread count or on timing. */
typedef enum sp_grid_order {
    /* Sorted by (a, b) ascending. Costs one counting sort of the pairs
     * (O(N + pairs), ~10% of a call). The default. */
    SP_GRID_ORDER_AB = 0,
    /* The order of the serial cell sweep: by the cell of the pair's first
     * sphere in cell order, then by sphere within the cell, then by the
     * half-shell run. Depends on the cell size and bounding box (hence on the
     * input), not on threads. Cheaper; for callers that only sum or apply
     * pairs in a commutative way. */
    SP_GRID_ORDER_CELL = 1,
} sp_grid_order_t;

/* How cells are addressed. */
typedef enum sp_grid_mode {
    SP_GRID_MODE_AUTO = 0, /* dense when the box holds few enough cells, else hashed */
    SP_GRID_MODE_HASH = 1, /* always hashed (tests, or worlds known to be very sparse) */
} sp_grid_mode_t;

/* Configuration; get one from sp_grid_def_default() and change fields. */
typedef struct sp_grid_def {
    /* Minimum cell edge in world units; 0 (default) = automatic, 2 * rmax.
     * Larger values mean fewer, fuller cells. Values below 2 * rmax are
     * raised to it (correctness needs it). Must be finite and >= 0. */
    float cell_size;
    /* Threads used by a call, the caller's included: 1 (default) .. 
     * SP_GRID_MAX_THREADS. nthreads - 1 threads are started by
     * sp_grid_create() and sleep on a condition variable between calls. */
    int nthreads;
    /* A call uses min(nthreads, N / parallel_min) threads (at least 1): below
     * that many spheres per thread, waking the pool costs more than it saves.
     * Default 16384; 1 forces every thread to take part (tests). */
    size_t parallel_min;
    sp_grid_order_t order; /* default SP_GRID_ORDER_AB */
    sp_grid_mode_t mode;   /* default SP_GRID_MODE_AUTO */
    /* AUTO mode: the dense grid is used when its padded box has at most
     * max(max_dense_cells, 4096) cells (and < 2^31). 0 (default) = 32 * N:
     * an empty dense cell costs ~1 ns (clear + prefix sum), a hashed lookup
     * of 14 buckets per sphere far more. */
    size_t max_dense_cells;
    /* 1 = always use the portable scalar pair kernel; 0 (default) = use the
     * AVX-512 kernel where the CPU has it (dense layout only). Both accept
     * exactly the same pairs in the same order (same IEEE operations). */
    int no_simd;
    /* Allocator of the object, its threads' pair buffers and its result
     * buffer; NULL = sp_allocator_default(). Must outlive the object. With
     * nthreads > 1 it is called from the pool threads concurrently (pair
     * buffers grow where they are filled), so it must be thread-safe. */
    const sp_allocator_t *allocator;
} sp_grid_def_t;

/* Opaque broadphase object: owns the thread pool, the result buffer and
 * per-thread pair buffers, which grow to the largest call's need and are
 * reused (no allocation in steady state). */
typedef struct sp_grid sp_grid_t;

/* What the last successful call did (for tests, metrics and tuning). */
typedef struct sp_grid_stats {
    size_t spheres;        /* N of the call */
    size_t pairs;          /* pairs returned */
    size_t candidates;     /* pair distance tests performed */
    size_t cells;          /* cells (dense, padding included) or hash buckets */
    double cell_size;      /* cell edge used, world units (0 when no cell was needed) */
    int hashed;            /* 1 when the hashed layout was used */
    int threads_used;      /* threads that took part in the call */
    int simd;              /* 1 when the AVX-512 pair kernel ran */
    size_t scratch_bytes;  /* arena bytes the call used (released on return) */
    /* sp_grid_find_pairs_coherent() only (0 after sp_grid_find_pairs()): */
    int coherent;          /* 1 when the Verlet list was reused (no rebuild) */
    size_t resorted;       /* spheres whose list entries were rebuilt: n or 0 */
    unsigned long list_age; /* calls the current list has served, this one included */
    size_t list_candidates; /* candidate pairs in the list (= candidates) */
    size_t list_patched;   /* spheres re-anchored by a patch this call (list kept) */
} sp_grid_stats_t;

/* Defaults: cell_size 0 (auto), nthreads 1, parallel_min 16384,
 * order SP_GRID_ORDER_AB, mode SP_GRID_MODE_AUTO, max_dense_cells 0 (32N),
 * allocator NULL (libc). Pure; any thread. */
SP_API sp_grid_def_t sp_grid_def_default(void);

/* Create a broadphase object. def NULL = sp_grid_def_default().
 * Returns 0 and stores the object in *out, or SP_EINVAL (bad field: nthreads
 * out of 1..SP_GRID_MAX_THREADS, negative or non-finite cell_size, unknown
 * order/mode, out NULL), SP_ENOMEM, or SP_EAGAIN when a thread could not be
 * started; *out is untouched on failure. Allocates the object and starts
 * nthreads - 1 threads. Any thread. */
SP_API int sp_grid_create(const sp_grid_def_t *def, sp_grid_t **out);

/* Stop the object's threads (joins them) and free everything it owns;
 * pointers returned by sp_grid_find_pairs() die. NULL is a no-op. Call from
 * the thread that uses the object, not during a call. */
SP_API void sp_grid_free(sp_grid_t *g);

/* Find every overlapping pair of the n spheres (x[i], y[i], z[i]) radius r[i].
 *
 * Returns 0 and stores in *pairs / *npairs the array of pairs, ordered as
 * def.order says (default: sorted by (a, b)). *pairs is NULL when *npairs is
 * 0. The array belongs to g and stays valid until the next
 * sp_grid_find_pairs() on g starts (whatever its outcome) or sp_grid_free();
 * do not keep it, copy what you need.
 *
 * Errors (then *pairs = NULL, *npairs = 0, inputs untouched):
 *   SP_EINVAL     g/pairs/npairs NULL; n > 0 with a NULL array; a coordinate
 *                 or radius that is NaN or infinite; a negative radius.
 *   SP_EOVERFLOW  n >= 2^32 - 1 (indices are 32-bit), or a size computation
 *                 overflows.
 *   SP_ENOMEM     the scratch arena or g's allocator failed.
 * Empty input (n == 0), n == 1 and all radii 0 return 0 with no pairs.
 *
 * Scratch: temporary arrays (32 bytes per sphere, 4 bytes per cell per
 * thread, +24 bytes per sphere when hashed; ~4.3 MiB at 100k spheres) are
 * taken from `scratch` and released (rewound to a mark taken on entry)
 * before returning, on success and failure alike.
 * scratch NULL = an arena owned by g. `scratch` must not be used by other
 * threads during the call.
 *
 * Threads: the caller's thread, one call at a time per g; the call may run
 * parts of the work on g's pool and blocks until they finish. x, y, z, r must
 * not change during the call.
 * Cost: O(N + cells + candidates + pairs), candidates ~ 14 cells' worth of
 * spheres per sphere at the automatic cell size. Allocates only when the
 * result or a per-thread buffer must grow past its previous high-water mark
 * (and in the arena, which is reused). */
SP_API int sp_grid_find_pairs(sp_grid_t *g, sp_arena_t *scratch, const float *x, const float *y,
                              const float *z, const float *r, size_t n, const sp_pair_t **pairs,
                              size_t *npairs);

/* Largest id + 1 that sp_grid_find_pairs_coherent() honours (see ids). */
#define SP_GRID_MAX_IDS (UINT32_C(1) << 31)

/* The same pairs as sp_grid_find_pairs() in SP_GRID_ORDER_AB order, bit for
 * bit (whatever def.order says), computed faster when the spheres moved
 * little since the previous call on g (temporal coherence).
 *
 * How: a Verlet list. g keeps a list of candidate pairs, (a, b)-sorted: the
 * pairs that overlap when every radius r_i is inflated by a skin s_i, found
 * by a grid pass (the "build"), with each sphere's build position and radius.
 * A call first checks the list against its inputs; while it is valid, the
 * call only tests the candidates with the exact float rule above (so the
 * pair set is exactly the full pass's; records are computed as the full pass
 * computes them) and writes the hits in candidate order, which is (a, b)
 * order. Otherwise the call patches the list when few spheres broke it
 * (below), or rebuilds it, and then tests it.
 *
 * The list is valid for a call when all of these hold (otherwise rebuilt):
 *   - n equals the build's n;
 *   - every radius r[i] <= index i's radius at the build (shrinking is fine);
 *   - every sphere is within lim_i of its build position (Euclidean, in
 *     double), lim_i = s_i (1 - 2^-16) - 2^-16 r_i - 2^-60: a little under
 *     the skin, covering every rounding of the float tests (the proof is in
 *     grid.c). Pairs (a, b) then satisfy d_a + d_b < s_a + s_b, so a pair
 *     that overlaps now was a candidate.
 * Patches: when at most n/256 + 16 spheres break the rules above (and the
 * spheres re-anchored since the last rebuild stay within n/32 + 64), each
 * of them is re-anchored (this call's position and radius become its build
 * state, with a new skin), its old candidates are dropped and its new ones
 * found against the others' build positions, and the list is merged back in
 * (a, b) order: O(broken x (27 cells + re-anchored) + candidates), serial,
 * instead of a rebuild. A patch needs n unchanged, the broken spheres inside
 * the last rebuild's box and radii that fit its cells; else it rebuilds.
 * The list holds indices, so which entity sits at an index does not matter
 * to it: a set change that keeps n and moves no index farther than its lim
 * keeps the list (the test is on this call's values); one that changes n
 * rebuilds it, and one that puts another entity at an index usually fails
 * that index's motion bound and rebuilds it. ids (optional, NULL = none)
 * only carry each entity's motion history to the next rebuild's skins when
 * indices shift (see below); they never decide the output. The kept state is
 * only a cost: the output is a function of this call's inputs alone, never
 * of earlier calls, and never of the thread count.
 *
 * Skins (world units) come from the motion, so that a list serves about 8
 * calls: at a rebuild, v_i = sphere i's displacement since the previous build
 * / calls served, s_i = gain * 8 * (1.25 v_i + 0.25 mean v), at least 3/4 of
 * its previous skin (turns and bounces), clamped to [2^-8 r_i + 2^-40,
 * rmax / 2]. With ids, an entity's previous index is found through its id
 * (ids must then be below 16 n + 2^20, else no history is used; a duplicate
 * id maps to its last index at the build); without, index i is taken to be
 * the entity at index i of the previous build. Spheres without history
 * (first call, new ids, indices past the previous n) take 1.5 x 8 x mean v. gain (1/64 .. 1) halves when a list served only its
 * own call (spheres jump: skins only cost) and doubles when one served >= 3;
 * at 1/64, every 16th rebuild tries 1 again. A sphere at rest has the
 * minimum skin, so sleeping things cost only their share of the check.
 *
 * Cost model: a reuse costs one pass over the spheres (read x, y, z, r and
 * the build state, ~36 bytes each; write a 16-byte interleaved copy) plus
 * one test per candidate (two 16-byte gathers, branch-free) plus one sqrt
 * and divide per pair: ~1.5 ms at 100k spheres with ~2.9 candidates per
 * pair. A rebuild costs a grid pass on the inflated radii (the kept-order
 * pass, whose cells fit the larger radii: ~1.5-2x a full pass) plus the
 * reuse cost. With lists serving k calls, a call costs reuse + rebuild / k
 * (patches of stragglers raise k).
 * When the inflated radii reach 2^60 (radii or skins that large) the call
 * runs the full pass and keeps no list.
 *
 * Returns, errors and pointer lifetime: as sp_grid_find_pairs() (the array is
 * valid until the next call of either function on g). A call rejected with
 * SP_EINVAL (NaN, infinity, negative radius) leaves the list as it was; after
 * SP_ENOMEM the list is dropped (the next call rebuilds it).
 * Scratch: at a rebuild, 12 bytes per sphere plus the kept-order pass's
 * (4 bytes per sphere plus 8 per re-sorted sphere), released on return; a
 * reuse takes none. g also keeps, from its allocator, 44 bytes per sphere
 * (build state and the interleaved copy) plus 1 (patch marks), 16 bytes per
 * candidate (the list and the patch merge's second copy, once a patch ran), the
 * kept-order pass's ~64 bytes per sphere and 4 bytes per cell, 4 bytes per
 * id value, and per-thread pair buffers sized to their share of the
 * candidates (24 bytes each); all grow to the largest call and are reused.
 * Threads: as sp_grid_find_pairs(). The two functions may be mixed on one g.
 * Stats: coherent = 1 when the list was reused (possibly patched),
 * resorted = n when it was rebuilt (else 0), list_patched counts the
 * spheres a patch re-anchored, list_age and list_candidates describe the
 * list. */
SP_API int sp_grid_find_pairs_coherent(sp_grid_t *g, sp_arena_t *scratch, const float *x, const float *y,
                                       const float *z, const float *r, const uint32_t *ids, size_t n,
                                       const sp_pair_t **pairs, size_t *npairs);

/* Copy the statistics of the last successful sp_grid_find_pairs() into *out
 * (all zero before the first). O(1); the thread that uses g. */
SP_API void sp_grid_stats(const sp_grid_t *g, sp_grid_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_GRID_H */
