/* stats.h: the daemon's counters, tick-time statistics and per-second rates.
 *
 * One sp_dstats_t per daemon, written and read on the loop thread only
 * (methods.c's `stats` and metrics.c read it there too), so plain fields.
 * Figures kept by other modules (queue depths, events dropped on workers)
 * stay with their owners and are read through those modules' getters. */
#ifndef SP_DAEMON_STATS_H
#define SP_DAEMON_STATS_H

#include <stdbool.h>
#include <stdint.h>

#define SP_TICK_RING 1024 /* tick durations kept for p50/p99 */
#define SP_HIST_BUCKETS 14

/* Upper bounds (ms) of the tick-time histogram buckets: the budget at 60 Hz
 * is 16.7 ms. The last bucket (index SP_HIST_BUCKETS) is +Inf. */
extern const double sp_tick_hist_le_ms[SP_HIST_BUCKETS];

typedef struct sp_dstats {
    uint64_t ticks;
    uint64_t overruns;          /* ticks that took longer than the tick period */
    uint64_t tick_ns_ring[SP_TICK_RING];
    uint64_t tick_ns_max;
    uint64_t hist[SP_HIST_BUCKETS + 1]; /* per-bucket counts; cumulated when exported */
    double tick_ns_sum;
    uint64_t bytes_out;
    uint64_t bytes_in;
    uint64_t snapshots_sent;
    uint64_t snapshots_skipped; /* client over its soft output limit */
    uint64_t snapshot_bytes;
    uint64_t snapshot_entities;
    uint64_t commands;
    uint64_t kicks;             /* connections closed by the server (SP_CLOSE_KICK) */
    uint64_t rate_kicks;        /* of which held back by their rate for --rate-kick-seconds */
    uint64_t clients_total;
    uint64_t events_sent;
    uint64_t events_dropped;    /* events a skipping client never got (pending bound) */
    uint64_t worker_msgs;       /* SpaceMessages from workers applied to the world */
    uint64_t ai_stalls;         /* AI rounds not done at their application tick (the step waited;
                                 * the loop kept serving I/O) */
    uint64_t ai_stall_ns_sum, ai_stall_ns_max; /* wall time steps waited for their AI round */
    uint64_t ai_stall_ticks;    /* whole tick periods those waits lasted */
    uint64_t checkpoints;
    /* Rates over the last completed second (sp_stats_rates). */
    double cmds_per_sec;
    double bytes_out_per_sec;
    double dilation;            /* game seconds per wall second, 1.0 = real time */
    uint64_t rate_last_ns;
    uint64_t rate_last_cmds;
    uint64_t rate_last_bytes;
    uint64_t rate_last_ticks;
} sp_dstats_t;

/* Zero everything; dilation 1.0; rates measured from now_ns. */
void sp_stats_init(sp_dstats_t *st, uint64_t now_ns);

/* Account one tick of ns nanoseconds (ring, max, sum, histogram). O(1). */
void sp_stats_tick(sp_dstats_t *st, uint64_t ns);

/* p50 and p99 over the last SP_TICK_RING ticks, and the maximum, in ms.
 * Cost: a sort of 1024 values (~30 us); for stats and metrics only. */
void sp_stats_tick_percentiles(const sp_dstats_t *st, double *p50_ms, double *p99_ms, double *max_ms);

/* Recompute the per-second rates and dilation if more than 0.2 s passed
 * since the last time; returns true when it did. tick_hz: the nominal rate. */
bool sp_stats_rates(sp_dstats_t *st, uint64_t now_ns, int tick_hz);

#endif /* SP_DAEMON_STATS_H */
