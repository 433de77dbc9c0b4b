/* stats.c: tick-time statistics and per-second rates (see stats.h). */
#include "daemon/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double sp_tick_hist_le_ms[SP_HIST_BUCKETS] = {0.25, 0.5, 1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 33, 50};

void sp_stats_init(sp_dstats_t *st, uint64_t now_ns) {
    memset(st, 0, sizeof *st);
    st->dilation = 1.0;
    st->rate_last_ns = now_ns;
}

void sp_stats_tick(sp_dstats_t *st, uint64_t ns) {
    st->tick_ns_ring[st->ticks % SP_TICK_RING] = ns;
    st->ticks++;
    if (ns > st->tick_ns_max) st->tick_ns_max = ns;
    st->tick_ns_sum += (double)ns;
    double ms = (double)ns / 1e6;
    int i = 0;
    while (i < SP_HIST_BUCKETS && ms > sp_tick_hist_le_ms[i]) i++;
    st->hist[i]++;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void sp_stats_tick_percentiles(const sp_dstats_t *st, double *p50, double *p99, double *mx) {
    size_t n = st->ticks < SP_TICK_RING ? (size_t)st->ticks : SP_TICK_RING;
    *p50 = *p99 = 0;
    *mx = (double)st->tick_ns_max / 1e6;
    if (n == 0) return;
    uint64_t tmp[SP_TICK_RING];
    memcpy(tmp, st->tick_ns_ring, n * sizeof tmp[0]);
    qsort(tmp, n, sizeof tmp[0], cmp_u64);
    *p50 = (double)tmp[(n - 1) / 2] / 1e6;
    *p99 = (double)tmp[(size_t)ceil(0.99 * (double)n) - 1] / 1e6;
}

bool sp_stats_rates(sp_dstats_t *st, uint64_t now, int tick_hz) {
    double secs = (double)(now - st->rate_last_ns) / 1e9;
    if (secs <= 0.2) return false;
    st->cmds_per_sec = (double)(st->commands - st->rate_last_cmds) / secs;
    st->bytes_out_per_sec = (double)(st->bytes_out - st->rate_last_bytes) / secs;
    st->dilation = (double)(st->ticks - st->rate_last_ticks) / (secs * tick_hz);
    /* Timer jitter makes a real-time world look up to a few % fast. */
    if (st->dilation > 1.0 && st->dilation < 1.05) st->dilation = 1.0;
    st->rate_last_ns = now;
    st->rate_last_cmds = st->commands;
    st->rate_last_bytes = st->bytes_out;
    st->rate_last_ticks = st->ticks;
    return true;
}
