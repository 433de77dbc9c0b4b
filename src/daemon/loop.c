/* loop.c: the fixed-rate tick, time dilation, signals, housekeeping, shutdown.
 *
 * Tick clock. A fixed step of tick_ns = 1e9 / tick_hz game nanoseconds. A
 * one-shot uv_timer is armed for the instant the accumulator will hold one
 * step (rounded up to libuv's millisecond resolution); the callback adds the
 * elapsed wall time to the accumulator and runs at most ONE step. Deadlines
 * derive from the accumulator, not from "now + period", so rounding and
 * callback latency never add up to drift.
 *
 * Overload. A step longer than tick_ns is an overrun (counted; a warning
 * at most every 5 s). If the accumulator still holds more than one step after
 * a step, the excess is discarded: game time runs slower than wall time (time
 * dilation, as in EVE Online) instead of bursting catch-up steps that would
 * make the next ones late too (the spiral of death). The dilation factor,
 * game seconds per wall second over the last second, is in stats/metrics.
 * The loop keeps serving sockets between steps even when it runs them back
 * to back: a step that is due at once is run from a uv_idle handle (one step
 * per loop iteration, and the poll phase between two of them), never from a
 * 0 ms timer re-armed inside its own callback, which libuv 1.44 runs again in
 * the same timer phase without polling I/O (sockets starved while behind).
 *
 * Each step: hand finished snapshots to sockets, apply the AI round whose
 * application tick this is (workers.c: frame tick T is applied before the
 * step to T + snap_every, in sp_msg_order_cmp order), sp_world_step(),
 * collect the step's events, and every snap_every steps publish a frame for
 * snapshots and the next AI round.
 *
 * A step whose AI round is late is not run yet, and the loop never blocks
 * for it: the step stays pending (d->ai_wait_since) and the callback
 * returns to libuv, so requests, writes, accepts and timers keep being
 * served. While queued jobs of the round remain, the tick idle handle runs
 * ONE of them per loop iteration on this thread (sp_workers_help; I/O is
 * polled between two), then it stops; the round's last job wakes the loop
 * (uv_async_send) and on_async restarts the idle handle, which runs the
 * step. The wait is time dilation, as an overrun is (a wait is a step that
 * took longer): while it waits the accumulator holds at most the pending
 * step plus one, so at most one step follows at once, never a backlog of
 * catch-up steps. Counted apart from the step's own time (tick_ms,
 * overruns, which no longer include the wait): ai_stalls (rounds late),
 * ai_stall_ns (wall time waited), ai_stall_ticks (whole tick periods
 * waited); a warning at most every 5 s. Results are those of a blocking wait: the
 * round is applied at the same tick, in the same order.
 *
 * Ordering of client commands. Commands (session.c) run when their bytes
 * are read, between two steps, in arrival order, directly on the world.
 * One that arrives while a step waits for its AI round runs before that
 * step, so before that round's intents, which are applied at the start of
 * the step; the step, when it runs, sees every command read before it.
 * (Client commands are thus not part of the determinism guarantee, which
 * is for the world without clients; AI rounds are, whatever the timing.)
 *
 * --stop-after-ticks N (hidden, for tests): after the step that reaches world
 * tick N, log "stop-after-ticks: tick N world_hash H" (H = sp_world_hash in
 * decimal) and shut down as on SIGTERM. No clients => the hash is a pure
 * function of the seed, the flags and N: identical for any --workers. */
#include "daemon/daemon.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t sp_now_ns(void) { return uv_hrtime(); }

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void sp_tick_percentiles(const sp_daemon_t *d, double *p50, double *p99, double *mx) {
    size_t n = d->st.ticks < SP_TICK_RING ? (size_t)d->st.ticks : SP_TICK_RING;
    *p50 = *p99 = 0;
    *mx = (double)d->st.tick_ns_max / 1e6;
    if (n == 0) return;
    uint64_t tmp[SP_TICK_RING];
    memcpy(tmp, d->st.tick_ns_ring, n * sizeof tmp[0]);
    qsort(tmp, n, sizeof tmp[0], cmp);
    *p50 = (double)tmp[(n - 1) / 2] / 1e6;
    *p99 = (double)tmp[(size_t)ceil(0.99 * (double)n) - 1] / 1e6;
}


static void run_tick(sp_daemon_t *d) {
    uint64_t t0 = sp_now_ns();
    sp_workers_drain(d);
    sp_workers_apply_due(d);
    int r = sp_world_step(d->world);
    if (r < 0) SP_LOGE("world step failed: %s (tick skipped)", sp_strerror(r));
    sp_workers_collect_events(d);
    uint64_t tick = sp_world_tick(d->world);
    if (d->conf.stop_after_ticks && tick >= d->conf.stop_after_ticks) {
        SP_LOGI("stop-after-ticks: tick %llu world_hash %llu npc_intents %llu ai_stalls %llu",
                (unsigned long long)tick, (unsigned long long)sp_world_hash(d->world),
                (unsigned long long)d->st.worker_msgs, (unsigned long long)d->st.ai_stalls);
        sp_daemon_shutdown(d, "--stop-after-ticks reached");
        return;
    }
    if (tick % d->snap_every == 0) {
        sp_workers_snapshot_round(d);
    }
    uint64_t ns = sp_now_ns() - t0;
    sp_dstats_t *st = &d->st;
    st->tick_ns_ring[st->ticks % SP_TICK_RING] = ns;
    st->ticks++;
    if (ns > st->tick_ns_max) st->tick_ns_max = ns;
    st->tick_ns_sum += (double)ns;
    sp_tick_hist_add(st, ns);
    if (ns > d->tick_ns) {
        st->overruns++;
        uint64_t n = sp_log_ratelimit_ok(&d->overrun_rl, ns / 1000000u + t0 / 1000000u);
        if (n) SP_LOGW("tick %llu took %.2f ms (budget %.2f ms); %llu overrun(s) since the last warning",
                       (unsigned long long)tick, (double)ns / 1e6, (double)d->tick_ns / 1e6,
                       (unsigned long long)n);
    }
    sp_workers_kick(d);
}

static void on_tick(uv_timer_t *t);
static void on_tick_idle(uv_idle_t *h);

static void schedule_tick(sp_daemon_t *d) {
    uint64_t now = sp_now_ns();
    uint64_t due = d->last_ns + (d->acc_ns >= d->tick_ns ? 0 : d->tick_ns - d->acc_ns);
    uint64_t ms = due > now ? (due - now + 999999u) / 1000000u : 0;
    if (ms == 0) uv_idle_start(&d->tick_idle, on_tick_idle); /* next iteration, after polling I/O */
    else uv_timer_start(&d->tick_timer, on_tick, ms, 0);
}

static void tick_cb(sp_daemon_t *d);

static void on_tick(uv_timer_t *t) { tick_cb((sp_daemon_t *)t->data); }

static void on_tick_idle(uv_idle_t *h) {
    uv_idle_stop(h);
    tick_cb((sp_daemon_t *)h->data);
}

/* The pending step waited for its AI round since d->ai_wait_since: account
 * for the wait (stats, rate-limited warning) and end it. */
static void end_ai_wait(sp_daemon_t *d, uint64_t now) {
    uint64_t ns = now - d->ai_wait_since;
    d->ai_wait_since = 0;
    sp_dstats_t *st = &d->st;
    uint64_t lost = ns / d->tick_ns; /* whole tick periods waited */
    st->ai_stall_ns_sum += ns;
    if (ns > st->ai_stall_ns_max) st->ai_stall_ns_max = ns;
    st->ai_stall_ticks += lost;
    uint64_t n = sp_log_ratelimit_ok(&d->stall_rl, now / 1000000u);
    if (n)
        SP_LOGW("step to tick %llu waited %.2f ms (%llu tick period(s)) for its NPC AI round; "
                "%llu stall(s) since the last warning",
                (unsigned long long)sp_world_tick(d->world) + 1, (double)ns / 1e6, (unsigned long long)lost,
                (unsigned long long)n);
}

static void tick_cb(sp_daemon_t *d) {
    if (d->shutting_down) return;
    uint64_t now = sp_now_ns();
    d->acc_ns += now - d->last_ns;
    d->last_ns = now;
    if (d->acc_ns >= d->tick_ns) {
        if (!sp_workers_step_ready(d)) {
            if (!d->ai_wait_since) {
                d->ai_wait_since = now;
                d->st.ai_stalls++;
            }
            /* As after an overrun: the pending step plus at most one more
             * owed; the rest of the wait is not owed (dilation, no backlog
             * of catch-up steps). */
            if (d->acc_ns > 2 * d->tick_ns) d->acc_ns = 2 * d->tick_ns;
            /* Help with one queued job of the round, then come back on the
             * next loop iteration (after polling I/O). With none queued,
             * nothing is armed: the round's last job wakes on_async. */
            if (sp_workers_help(d)) uv_idle_start(&d->tick_idle, on_tick_idle);
            return;
        }
        if (d->ai_wait_since) end_ai_wait(d, now);
        run_tick(d);
        if (d->shutting_down) return; /* --stop-after-ticks */
        d->acc_ns -= d->tick_ns;
        /* More than one step behind: drop the excess (dilation). */
        if (d->acc_ns > d->tick_ns) d->acc_ns = d->tick_ns;
    }
    /* The step took time: account for it before computing the next deadline. */
    now = sp_now_ns();
    d->acc_ns += now - d->last_ns;
    d->last_ns = now;
    if (d->acc_ns > 2 * d->tick_ns) d->acc_ns = 2 * d->tick_ns;
    schedule_tick(d);
}

/* 1 Hz: rates, dilation, idle clients, periodic checkpoints. */
static void on_house(uv_timer_t *t) {
    sp_daemon_t *d = (sp_daemon_t *)t->data;
    uint64_t now = sp_now_ns();
    sp_dstats_t *st = &d->st;
    double secs = (double)(now - st->rate_last_ns) / 1e9;
    if (secs > 0.2) {
        st->cmds_per_sec = (double)(st->commands - st->rate_last_cmds) / secs;
        st->bytes_out_per_sec = (double)(st->bytes_out - st->rate_last_bytes) / secs;
        st->dilation = (double)(st->ticks - st->rate_last_ticks) / (secs * d->conf.tick_hz);
        if (st->dilation > 1.0 && st->dilation < 1.05) st->dilation = 1.0;
        st->rate_last_ns = now;
        st->rate_last_cmds = st->commands;
        st->rate_last_bytes = st->bytes_out;
        st->rate_last_ticks = st->ticks;
        if (st->dilation < 0.9) {
            uint64_t n = sp_log_ratelimit_ok(&d->skip_rl, now / 1000000u);
            if (n) SP_LOGW("time dilation %.2f: the world runs slower than real time", st->dilation);
        }
    }
    sp_net_housekeeping(d, now);
    if (d->conf.checkpoint[0] && d->conf.checkpoint_every > 0 &&
        (double)(now - d->last_checkpoint_ns) / 1e9 >= d->conf.checkpoint_every) {
        d->last_checkpoint_ns = now;
        sp_checkpoint_start(d);
    }
}

/* Workers -> loop: snapshot results, AI messages, and the end of an AI round
 * (ai_chunk_done), which a pending step may be waiting for: restart it (on
 * the next iteration, from the idle handle; a no-op if already started). */
static void on_async(uv_async_t *a) {
    sp_daemon_t *d = (sp_daemon_t *)a->data;
    sp_workers_drain(d);
    if (d->ai_wait_since && !d->shutting_down && sp_workers_step_ready(d))
        uv_idle_start(&d->tick_idle, on_tick_idle);
}

/* ---------------------------------------------------------------- shutdown */

static uv_timer_t g_flush_timer;

static void close_loop_handles(sp_daemon_t *d) {
    sp_net_close_all(d, "server shutting down");
    sp_workers_stop(d);
    uv_close((uv_handle_t *)&d->wake, NULL);
    uv_close((uv_handle_t *)&d->house_timer, NULL);
    uv_close((uv_handle_t *)&d->tick_timer, NULL);
    uv_close((uv_handle_t *)&d->tick_idle, NULL);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&g_flush_timer, NULL);
    sp_metrics_close(d);
}

/* Flush: wait until every client's output queue drained, at most 2 s. */
static void on_flush(uv_timer_t *t) {
    sp_daemon_t *d = (sp_daemon_t *)t->data;
    static int rounds;
    bool pending = false;
    for (sp_client_t *c = d->clients; c; c = c->next)
        if (c->obuf_bytes > 0) pending = true;
    if (pending && ++rounds < 200) return;
    uv_timer_stop(t);
    close_loop_handles(d);
}

void sp_daemon_shutdown(sp_daemon_t *d, const char *why) {
    if (d->shutting_down) {
        SP_LOGW("%s again: exiting now", why);
        exit(d->exit_code ? d->exit_code : SP_EXIT_OK);
    }
    d->shutting_down = true;
    SP_LOGI("%s: shutting down (tick %llu)", why, (unsigned long long)sp_world_tick(d->world));
    sp_net_stop_accepting(d);
    uv_timer_stop(&d->tick_timer);
    uv_idle_stop(&d->tick_idle);
    uv_timer_stop(&d->house_timer);
    for (sp_client_t *c = d->clients; c; c = c->next) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_stopped = true;
    }
    if (d->conf.checkpoint[0]) {
        if (sp_checkpoint_write(d) < 0) d->exit_code = SP_EXIT_RUNTIME;
    }
    uv_timer_init(d->loop, &g_flush_timer);
    g_flush_timer.data = d;
    uv_timer_start(&g_flush_timer, on_flush, 0, 10);
}

static void on_signal(uv_signal_t *s, int signum) {
    sp_daemon_shutdown((sp_daemon_t *)s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---------------------------------------------------------------- start */

int sp_daemon_init(sp_daemon_t *d) {
    d->loop = uv_default_loop();
    d->next_session = 1;
    d->tick_ns = 1000000000ull / (uint64_t)d->conf.tick_hz;
    d->snap_every = (uint64_t)(d->conf.tick_hz / d->conf.snapshot_hz);
    if (d->snap_every == 0) d->snap_every = 1;
    d->overrun_rl.interval_ms = 5000;
    d->skip_rl.interval_ms = 5000;
    d->stall_rl.interval_ms = 5000;
    d->st.dilation = 1.0;
    msgpack_sbuffer_init(&d->sbuf);
    msgpack_packer_init(&d->pk, &d->sbuf, msgpack_sbuffer_write);
    return 0;
}

int sp_daemon_run(sp_daemon_t *d) {
    int r;
    uv_async_init(d->loop, &d->wake, on_async);
    d->wake.data = d;
    if ((r = sp_workers_start(d, d->conf.workers)) != 0) {
        SP_LOGE("cannot start %d worker threads: %s", d->conf.workers, sp_strerror(r));
        return SP_EXIT_RUNTIME;
    }
    if ((r = sp_net_listen(d)) != 0) {
        sp_workers_stop(d);
        return r;
    }
    if (d->conf.metrics_port > 0 && (r = sp_metrics_listen(d)) != 0) {
        sp_net_stop_accepting(d);
        sp_workers_stop(d);
        return r;
    }
    uv_timer_init(d->loop, &d->tick_timer);
    d->tick_timer.data = d;
    uv_idle_init(d->loop, &d->tick_idle);
    d->tick_idle.data = d;
    uv_timer_init(d->loop, &d->house_timer);
    d->house_timer.data = d;
    uv_signal_init(d->loop, &d->sig_term);
    d->sig_term.data = d;
    uv_signal_init(d->loop, &d->sig_int);
    d->sig_int.data = d;
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    uint64_t now = sp_now_ns();
    d->start_ns = d->last_ns = d->last_checkpoint_ns = now;
    d->st.rate_last_ns = now;
    d->acc_ns = 0;
    schedule_tick(d);
    uv_timer_start(&d->house_timer, on_house, 1000, 1000);
    SP_LOGI("running: %u entities, %d Hz ticks, %d Hz snapshots, %d workers", sp_world_count(d->world),
            d->conf.tick_hz, d->conf.snapshot_hz, d->conf.workers);
    uv_run(d->loop, UV_RUN_DEFAULT);
    SP_LOGI("stopped after %llu ticks; exit %d", (unsigned long long)d->st.ticks, d->exit_code);
    return d->exit_code;
}
