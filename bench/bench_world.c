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
