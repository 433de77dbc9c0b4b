/* bench_world.c: sp_world_step on a 100,000-entity world at 60 Hz.
 *
 * Scene: sp_world_populate_demo(95,000 asteroids, 5,000 NPC ships) in a cube
 * of half extent 4000 units (asteroid spacing ~170 units), dt 1/60 s. Every
 * tick the NPC AI runs in place (untimed: in the daemon it runs on worker
 * threads), its messages are sorted and applied, then the world steps. The
 * timed part is what the daemon's loop thread pays: apply + step.
 *
 * Rows (lower is better, ms per tick, p99 over the run's ticks):
 *   sleeping: asteroids at rest sleep in the static grid (the default)
 *   all awake: the same world with sleeping disabled (every asteroid in the
 *              broadphase every tick), the baseline the sleeping design beats
 * Each run also prints p50 / p99 / max of its ticks, plus the AI cost and the
 * two halves of frame publishing as the daemon splits them: capture (a memcpy
 * on the loop thread, sp_world_capture) and build (on a worker,
 * sp_frame_build; timed here on the same thread). Target: sleeping p99 <= 8 ms.
 * A third comparison times sp_frame_build alone (issue 10: rows sorted by
 * id, ids no longer follow slots): the demo world with 1 in 7 entities
 * destroyed and respawned, so reused slots hold newer ids and the frame
 * must radix-sort them, against the same world freshly populated, whose ids
 * ascend in slot order (no sort). Mean ms of 20 builds per run.
 * Self-check: every step returns 0, the entity count stays within bounds,
 * positions are finite and within the world, the sleeping run keeps >= 90%
 * of asteroids asleep and the all-awake run keeps none asleep. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "sim/ai.h"
#include "sim/frame.h"
#include "sim/world.h"

#define N_AST 95000u
#define N_NPC 5000u

typedef struct scene {
    sp_world_t *w;
    int sleeping;
    int ticks;
    sp_msg_t *msgs;
    size_t cap;
    double *ms;
    sp_world_capture_t *capture;
    double ai_ms, cap_ms, build_ms; /* last run: mean per tick */
} scene_t;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static int cmp_msg(const void *a, const void *b) { return sp_msg_order_cmp_qsort(a, b); }

static void scene_init(scene_t *s, int sleeping, int ticks) {
    memset(s, 0, sizeof *s);
    sp_world_def_t d = sp_world_def_default();
    d.seed = 2024;
    d.half_extent = 4000.0f;
    if (sp_world_create(&d, &s->w) != 0) sp_bench_fail("sp_world_create");
    if (!sleeping) sp_world_set_sleep_enabled(s->w, 0);
    if (sp_world_populate_demo(s->w, N_AST, N_NPC) != 0) sp_bench_fail("populate");
    if (sp_world_capture_create(NULL, &s->capture) != 0) sp_bench_fail("capture");
    s->sleeping = sleeping;
    s->ticks = ticks;
    s->cap = 2 * N_NPC + 16;
    s->msgs = malloc(s->cap * sizeof *s->msgs);
    s->ms = malloc((size_t)ticks * sizeof *s->ms);
    if (!s->msgs || !s->ms) sp_bench_fail("out of memory");
}

static int check_world(const scene_t *s) {
    uint32_t n = sp_world_count(s->w);
    if (n < 90000 || n > N_AST + N_NPC + 10000) return -1;
    uint32_t ast = sp_world_count_kind(s->w, SP_KIND_ASTEROID), sl = sp_world_count_sleeping(s->w);
    if (s->sleeping ? sl * 10 < ast * 9 : sl != 0) return -1;
    sp_frame_t *f = sp_world_publish_frame(s->w);
    if (f == NULL) return -1;
    int bad = 0;
    int32_t lim = (int32_t)((4000.0f + 64.0f) * SP_FRAME_POS_SCALE);
    for (uint32_t r = 0; r < f->count; r += 101)
        for (int k = 0; k < 3; k++)
            if (f->rows[r].pos[k] > lim || f->rows[r].pos[k] < -lim) bad = 1;
    sp_frame_release(f);
    return bad ? -1 : 0;
}

/* One run: `ticks` ticks; returns the p99 in ms (or -1 on a failed check). */
static double run(void *arg) {
    scene_t *s = arg;
    double ai = 0, cap = 0, build = 0;
    for (int t = 0; t < s->ticks; t++) {
        uint64_t t0 = sp_bench_now_ns();
        if (sp_world_capture(s->w, s->capture) != 0) return -1;
        uint64_t tc = sp_bench_now_ns();
        sp_frame_t *f = sp_frame_build(s->capture);
        if (f == NULL) return -1;
        uint64_t t1 = sp_bench_now_ns();
        size_t n = 0;
        if (sp_ai_run_chunk(f, 0, 1, f->tick, s->msgs, s->cap, &n) != 0) return -1;
        qsort(s->msgs, n, sizeof *s->msgs, cmp_msg);
        sp_frame_release(f);
        uint64_t t2 = sp_bench_now_ns();
        for (size_t k = 0; k < n; k++) (void)sp_world_apply_msg(s->w, &s->msgs[k]);
        if (sp_world_step(s->w) != 0) return -1;
        uint64_t t3 = sp_bench_now_ns();
        s->ms[t] = (double)(t3 - t2) / 1e6;
        cap += (double)(tc - t0) / 1e6;
        build += (double)(t1 - tc) / 1e6;
        ai += (double)(t2 - t1) / 1e6;
    }
    if (check_world(s) != 0) return -1;
    s->ai_ms = ai / s->ticks;
    s->cap_ms = cap / s->ticks;
    s->build_ms = build / s->ticks;
    qsort(s->ms, (size_t)s->ticks, sizeof *s->ms, cmp_d);
    double p50 = s->ms[s->ticks / 2], p99 = s->ms[(size_t)((s->ticks - 1) * 0.99)],
           mx = s->ms[s->ticks - 1];
    printf("    %-9s ticks %d: apply+step p50 %.2f  p99 %.2f  max %.2f ms | AI %.2f ms, capture %.2f ms"
           " + build %.2f ms | %u awake of %u\n",
           s->sleeping ? "sleeping" : "all-awake", s->ticks, p50, p99, mx, s->ai_ms, s->cap_ms, s->build_ms,
           sp_world_count(s->w) - sp_world_count_sleeping(s->w), sp_world_count(s->w));
    fflush(stdout);
    return p99;
}

/* ------------------------------------------------ sphere queries vs the old heap merge
 * The reference is the former sp_frame_query_sphere: a coarse grid of ~8 rows
 * per cell (cell_rows only) and a k-way min-heap merge of the touched cells'
 * runs, kept here verbatim over its own index built from the frame's rows.
 * Workload: every NPC at the AI's radius 300 (cap 256, as the AI used it),
 * then 1,000 rows spread over the frame at the interest radius 500. */
typedef struct oldgrid {
    uint32_t n;
    float cs;
    uint32_t *start, *rows;
} oldgrid_t;

static uint32_t old_cell_coord(int32_t q, float half, float inv_cell, uint32_t n) {
    float x = ((float)q / (float)SP_FRAME_POS_SCALE + half) * inv_cell;
    if (!(x > 0.0f)) return 0;
    uint32_t c = (uint32_t)x;
    return c >= n ? n - 1 : c;
}

static void oldgrid_build(oldgrid_t *g, const sp_frame_t *f) {
    uint32_t cpa = (uint32_t)cbrt((double)f->count / 8.0);
    if (cpa < 1) cpa = 1;
    if (cpa > 64) cpa = 64;
    uint32_t nc = cpa * cpa * cpa;
    g->n = cpa;
    g->cs = 2.0f * f->half_extent / (float)cpa;
    g->start = calloc((size_t)nc + 1, sizeof *g->start);
    g->rows = malloc((size_t)f->count * sizeof *g->rows);
    uint32_t *cell = malloc((size_t)f->count * sizeof *cell);
    if (!g->start || !g->rows || !cell) sp_bench_fail("out of memory");
    float inv = 1.0f / g->cs, half = f->half_extent;
    for (uint32_t r = 0; r < f->count; r++) {
        const int32_t *p = f->rows[r].pos;
        cell[r] = (old_cell_coord(p[2], half, inv, cpa) * cpa + old_cell_coord(p[1], half, inv, cpa)) * cpa +
                  old_cell_coord(p[0], half, inv, cpa);
        g->start[cell[r] + 1]++;
    }
    for (uint32_t c = 0; c < nc; c++) g->start[c + 1] += g->start[c];
    for (uint32_t r = 0; r < f->count; r++) g->rows[g->start[cell[r]]++] = r;
    for (uint32_t c = nc; c > 0; c--) g->start[c] = g->start[c - 1];
    g->start[0] = 0;
    free(cell);
}

static int old_row_in(const sp_frame_row_t *row, double cx, double cy, double cz, double r2) {
    double dx = (double)row->pos[0] / SP_FRAME_POS_SCALE - cx;
    double dy = (double)row->pos[1] / SP_FRAME_POS_SCALE - cy;
    double dz = (double)row->pos[2] / SP_FRAME_POS_SCALE - cz;
    return dx * dx + dy * dy + dz * dz <= r2;
}

typedef struct old_run {
    uint32_t key, pos, end, inside;
} old_run_t;

static void old_sift_down(old_run_t *h, uint32_t n, uint32_t k) {
    old_run_t v = h[k];
    for (;;) {
        uint32_t l = 2 * k + 1;
        if (l >= n) break;
        if (l + 1 < n && h[l + 1].key < h[l].key) l++;
        if (h[l].key >= v.key) break;
        h[k] = h[l];
        k = l;
    }
    h[k] = v;
}

static int32_t old_axis_cell(double v, double half, double inv, uint32_t n) {
    double x = (v + half) * inv;
    if (x < 0) return -1;
    if (x >= (double)n) return (int32_t)n;
    return (int32_t)x;
}

static int old_settle(const sp_frame_t *f, const oldgrid_t *g, const double *c, double r2, old_run_t *r) {
    if (r->inside) {
        if (r->pos >= r->end) return 0;
        r->key = g->rows[r->pos];
        return 1;
    }
    while (r->pos < r->end) {
        uint32_t row = g->rows[r->pos];
        if (old_row_in(&f->rows[row], c[0], c[1], c[2], r2)) {
            r->key = row;
            return 1;
        }
        r->pos++;
    }
    return 0;
}

static size_t old_query(const sp_frame_t *f, const oldgrid_t *g, float cx, float cy, float cz, float r,
                        uint32_t *out, size_t cap) {
    double r2 = (double)r * r, half = f->half_extent, inv = 1.0 / g->cs;
    uint32_t n = g->n;
    int32_t lo[3], hi[3];
    double c[3] = {cx, cy, cz};
    for (int k = 0; k < 3; k++) {
        lo[k] = old_axis_cell(c[k] - r, half, inv, n);
        hi[k] = old_axis_cell(c[k] + r, half, inv, n);
        if (lo[k] < 0) lo[k] = 0;
        if (hi[k] > (int32_t)n - 1) hi[k] = (int32_t)n - 1;
        if (lo[k] > hi[k]) return 0;
    }
    uint64_t ncells = (uint64_t)(hi[0] - lo[0] + 1) * (uint64_t)(hi[1] - lo[1] + 1) *
                      (uint64_t)(hi[2] - lo[2] + 1);
    size_t found = 0;
    if (ncells > 1024) {
        for (uint32_t i = 0; i < f->count; i++) {
            if (!old_row_in(&f->rows[i], cx, cy, cz, r2)) continue;
            if (found < cap) out[found] = i;
            found++;
        }
        return found;
    }
    old_run_t heap[1024];
    uint32_t hn = 0;
    double cs = g->cs, margin = cs * 1e-3 + 1.0 / SP_FRAME_POS_SCALE;
    for (int32_t z = lo[2]; z <= hi[2]; z++)
        for (int32_t y = lo[1]; y <= hi[1]; y++)
            for (int32_t x = lo[0]; x <= hi[0]; x++) {
                uint32_t cell = ((uint32_t)z * n + (uint32_t)y) * n + (uint32_t)x;
                uint32_t s = g->start[cell], e = g->start[cell + 1];
                if (s == e) continue;
                int32_t idx[3] = {x, y, z};
                double dmin2 = 0.0, dmax2 = 0.0;
                int border = 0;
                for (int k = 0; k < 3; k++) {
                    double b0 = idx[k] * cs - half - margin, b1 = (idx[k] + 1) * cs - half + margin;
                    if (idx[k] == 0) b0 = -INFINITY, border = 1;
                    if (idx[k] == (int32_t)n - 1) b1 = INFINITY, border = 1;
                    double dlo = c[k] - b0, dhi = b1 - c[k];
                    if (c[k] < b0) dmin2 += (b0 - c[k]) * (b0 - c[k]);
                    else if (c[k] > b1) dmin2 += (c[k] - b1) * (c[k] - b1);
                    double far = dlo > dhi ? dlo : dhi;
                    dmax2 += far * far;
                }
                if (dmin2 > r2) continue;
                old_run_t rn = {0, s, e, !border && dmax2 <= r2};
                if (old_settle(f, g, c, r2, &rn)) heap[hn++] = rn;
            }
    for (uint32_t k = hn / 2; k-- > 0;) old_sift_down(heap, hn, k);
    while (hn > 0) {
        if (found < cap) out[found] = heap[0].key;
        found++;
        heap[0].pos++;
        if (!old_settle(f, g, c, r2, &heap[0])) heap[0] = heap[--hn];
        if (hn > 0) old_sift_down(heap, hn, 0);
    }
    return found;
}

typedef struct qscene {
    sp_frame_t *f;
    oldgrid_t g;
    int use_old;
    uint32_t *buf;
    uint64_t want; /* checksum both must reach (0 until the first run) */
} qscene_t;

#define Q_BUF 4096u

static double run_queries(void *arg) {
    qscene_t *q = arg;
    const sp_frame_t *f = q->f;
    uint64_t sum = 0, nq = 0, t0 = sp_bench_now_ns();
    for (int rep = 0; rep < 4; rep++) {
        for (uint32_t k = 0; k < f->npc_count + 1000; k++) {
            const sp_frame_row_t *row = k < f->npc_count ? &f->rows[f->npc_rows[k]]
                                                         : &f->rows[(uint64_t)(k - f->npc_count) * f->count / 1000];
            float r = k < f->npc_count ? 300.0f : 500.0f;
            size_t cap = k < f->npc_count ? 256 : Q_BUF;
            float c[3] = {sp_frame_pos(row->pos[0]), sp_frame_pos(row->pos[1]), sp_frame_pos(row->pos[2])};
            size_t n = q->use_old ? old_query(f, &q->g, c[0], c[1], c[2], r, q->buf, cap)
                                  : sp_frame_query_sphere(f, c[0], c[1], c[2], r, q->buf, cap);
            size_t m = n < cap ? n : cap;
            sum = sum * 31 + n;
            for (size_t j = 0; j < m; j++) sum = sum * 1000003 + q->buf[j];
            nq++;
        }
    }
    uint64_t t1 = sp_bench_now_ns();
    if (q->want == 0) q->want = sum;
    if (sum != q->want) return -1;
    return (double)(t1 - t0) / (double)nq;
}

/* Frame building alone, on a capture taken once. */
typedef struct fscene {
    sp_world_t *w;
    sp_world_capture_t *cap;
} fscene_t;

typedef struct idcollect {
    sp_entity_id_t *v;
    uint32_t n;
} idcollect_t;
static int collect_id(void *ctx, sp_entity_id_t id) {
    idcollect_t *c = ctx;
    c->v[c->n++] = id;
    return 0;
}

static void fscene_init(fscene_t *s, int churn) {
    sp_world_def_t d = sp_world_def_default();
    d.seed = 2024;
    d.half_extent = 4000.0f;
    if (sp_world_create(&d, &s->w) != 0) sp_bench_fail("sp_world_create");
    if (sp_world_populate_demo(s->w, N_AST, N_NPC) != 0) sp_bench_fail("populate");
    if (churn) {
        idcollect_t c = {malloc((N_AST + N_NPC) * sizeof(sp_entity_id_t)), 0};
        if (c.v == NULL) sp_bench_fail("out of memory");
        sp_world_foreach(s->w, collect_id, &c);
        uint32_t k = 0;
        for (uint32_t i = 0; i < c.n; i += 7, k++) sp_world_destroy(s->w, c.v[i]);
        for (uint32_t i = 0; i < k; i++) {
            sp_entity_id_t id;
            if (sp_world_spawn_asteroid(s->w, NULL, 0.0f, 0.0f, -1, &id) != 0) sp_bench_fail("spawn");
        }
        free(c.v);
    }
    if (sp_world_capture_create(NULL, &s->cap) != 0 || sp_world_capture(s->w, s->cap) != 0) sp_bench_fail("capture");
}

static double run_build(void *arg) {
    fscene_t *s = arg;
    uint64_t t0 = sp_bench_now_ns();
    for (int k = 0; k < 20; k++) {
        sp_frame_t *f = sp_frame_build(s->cap);
        if (f == NULL || f->count != sp_world_count(s->w)) return -1;
        for (uint32_t r = 1; r < f->count; r++)
            if (f->rows[r - 1].id >= f->rows[r].id) return -1;
        sp_frame_release(f);
    }
    return (double)(sp_bench_now_ns() - t0) / 20e6;
}

int main(int argc, char **argv) {
    sp_bench_init(argc, argv, "world");
    int ticks = sp_bench_quick() ? 120 : 300;
    scene_t sl, aw;
    scene_init(&sl, 1, ticks);
    scene_init(&aw, 0, ticks);
    /* Warm up both worlds past the first static rebuilds and AI transients. */
    sl.ticks = aw.ticks = 30;
    if (run(&sl) < 0 || run(&aw) < 0) sp_bench_fail("warm-up self-check failed");
    sl.ticks = aw.ticks = ticks;
    /* Queries on a settled frame of the sleeping world. */
    qscene_t qn = {0}, qo = {0};
    qn.f = sp_world_publish_frame(sl.w);
    if (qn.f == NULL) sp_bench_fail("publish");
    qo.f = qn.f;
    qo.use_old = 1;
    oldgrid_build(&qo.g, qo.f);
    qn.buf = malloc(Q_BUF * sizeof *qn.buf);
    qo.buf = malloc(Q_BUF * sizeof *qo.buf);
    if (!qn.buf || !qo.buf) sp_bench_fail("out of memory");
    if (run_queries(&qo) < 0 || (qn.want = qo.want, run_queries(&qn)) < 0)
        sp_bench_fail("sp_frame_query_sphere differs from the heap-merge reference");
    sp_bench_row_t qrows[] = {
        {.name = "sp_frame_query_sphere (line scan + sort), 5k r300 + 1k r500", .unit = "ns/query",
         .fn = run_queries, .arg = &qn},
        {.name = "old heap merge (8 rows/cell)", .unit = "ns/query", .fn = run_queries, .arg = &qo},
    };
    sp_bench_run(qrows, 2);
    sp_bench_report(&qrows[0], &qrows[1]);
    sp_frame_release(qn.f);
    free(qo.g.start);
    free(qo.g.rows);
    free(qn.buf);
    free(qo.buf);
    fscene_t fchurn, ffresh;
    fscene_init(&fchurn, 1);
    fscene_init(&ffresh, 0);
    sp_bench_row_t frows[] = {
        {.name = "sp_frame_build, 100k, 1/7 slots reused (ids radix-sorted)", .unit = "ms", .fn = run_build,
         .arg = &fchurn},
        {.name = "sp_frame_build, 100k, ids ascending in slot order (no sort)", .unit = "ms", .fn = run_build,
         .arg = &ffresh},
    };
    sp_bench_run(frows, 2);
    sp_bench_report(&frows[0], &frows[1]);
    sp_world_capture_free(fchurn.cap);
    sp_world_capture_free(ffresh.cap);
    sp_world_free(fchurn.w);
    sp_world_free(ffresh.w);
    sp_bench_row_t rows[] = {
        {.name = "world step p99, 100k entities, sleeping asteroids", .unit = "ms", .fn = run, .arg = &sl},
        {.name = "world step p99, 100k entities, all awake", .unit = "ms", .fn = run, .arg = &aw},
    };
    sp_bench_run(rows, 2);
    sp_bench_report(&rows[0], &rows[1]);
    double med = sp_bench_median(&rows[0]);
    printf("target: sleeping p99 <= 8 ms: %s (%.2f ms)\n", med <= 8.0 ? "met" : "NOT met", med);
    sp_world_free(sl.w);
    sp_world_free(aw.w);
    sp_world_capture_free(sl.capture);
    sp_world_capture_free(aw.capture);
    free(sl.msgs);
    free(sl.ms);
    free(aw.msgs);
    free(aw.ms);
    return sp_bench_finish();
}
