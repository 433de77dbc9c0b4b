/* loop.c: the fixed-rate tick, time dilation, signals, housekeeping, shutdown.
 *
 * Signals (handled before the port is published, see start_signals):
 * SIGTERM/SIGINT shut down (checkpoint, flush, exit 0; a second one exits at
 * once); SIGHUP reopens --log-file (logrotate) or is ignored without it;
 * SIGUSR1 writes a checkpoint now by the periodic path. Each logs a line.
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
 * Each step: run the done callbacks of finished jobs (snapshots to sockets),
 * apply the AI round whose application tick this is (airound.h: frame tick
 * T is applied before the step to T + snap_every, in sp_msg_order_cmp
 * order), sp_world_step(), collect the step's events, and every snap_every
 * steps publish a frame for snapshots and the next AI round (frames.h).
 *
 * A step whose AI round is late is not run yet, and the loop never blocks
 * for it: the step stays pending (d->ai_wait_since) and the callback
 * returns to libuv, so requests, writes, accepts and timers keep being
 * served. While queued jobs of the round remain, the tick idle handle runs
 * ONE of them per loop iteration on this thread (sp_airound_help; I/O is
 * polled between two), then it stops; the round's last job wakes the loop
 * (its done calls on_ai_ready) and the idle handle is restarted, which
 * runs the step. The wait is time dilation, as an overrun is (a wait is a step that
 * took longer): while it waits the accumulator holds at most the pending
 * step plus one, so at most one step follows at once, never a backlog of
 * catch-up steps. Counted apart from the step's own time (tick_ms,
 * overruns, which no longer include the wait): ai_stalls (rounds late),
 * ai_stall_ns (wall time waited), ai_stall_ticks (whole tick periods
 * waited); a warning at most every 5 s. Results are those of a blocking wait: the
 * round is applied at the same tick, in the same order.
 *
 * Ordering of client commands. Commands (methods.c) run when their bytes
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
#include "daemon/loop.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "daemon/checkpoint.h"
#include "daemon/clients.h"
#include "daemon/clock.h"
#include "daemon/dispatch.h"
#include "daemon/frames.h"
#include "gw/gateway.h"
#include "daemon/http.h"
#include "daemon/notify.h"
#include "daemon/snapshots.h"
#include "spacesim/error.h"

static void on_tick(uv_timer_t *t);
static void on_tick_idle(uv_idle_t *h);
static void close_signals(sp_daemon_t *d);
static void ignore_operator_signals(void);

static void run_tick(sp_daemon_t *d) {
    uint64_t t0 = sp_now_ns();
    sp_pool_drain(d->pool);
    if (d->cluster) {
        /* Hand-offs in, ownership, fencing; a fenced or paused daemon's
         * cells are frozen (no step, no hand-off out, no tick). */
        sp_cluster_apply(d->cluster);
        if (sp_cluster_frozen(d->cluster)) return;
    }
    sp_airound_apply_due(&d->ai, d->world);
    int r = sp_world_step(d->world);
    if (r < 0) SP_LOGE("world step failed: %s (tick skipped)", sp_strerror(r));
    sp_events_collect(&d->events, d->world);
    uint64_t tick = sp_world_tick(d->world);
    /* The frame of tick T is the world right after step T, before this
     * tick's hand-offs: an entity leaving now is in this daemon's frame of
     * T and enters the other's at its next one (imports stamped T are
     * applied after that daemon's own frame of T), so the union of the
     * daemons' frames of one tick, which a gateway shows, holds each entity
     * once, with no tick where it is in neither. */
    if (tick % d->snap_every == 0) sp_frames_publish(d);
    if (d->cluster) sp_cluster_after_step(d->cluster); /* entities that left our cells */
    if (d->conf.stop_after_ticks && tick >= d->conf.stop_after_ticks) {
        SP_LOGI("stop-after-ticks: tick %llu world_hash %llu npc_intents %llu ai_stalls %llu",
                (unsigned long long)tick, (unsigned long long)sp_world_hash(d->world),
                (unsigned long long)d->st.worker_msgs, (unsigned long long)d->st.ai_stalls);
        sp_daemon_shutdown(d, "--stop-after-ticks reached");
        return;
    }
    uint64_t ns = sp_now_ns() - t0;
    sp_stats_tick(&d->st, ns);
    if (ns > d->tick_ns) {
        d->st.overruns++;
        uint64_t n = sp_log_ratelimit_ok(&d->overrun_rl, ns / 1000000u + t0 / 1000000u);
        if (n) SP_LOGW("tick %llu took %.2f ms (budget %.2f ms); %llu overrun(s) since the last warning",
                       (unsigned long long)tick, (double)ns / 1e6, (double)d->tick_ns / 1e6,
                       (unsigned long long)n);
    }
    sp_frames_kick(d);
}

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

/* The due step waits for its AI round: help with one queued job of the
 * round, then come back on the next loop iteration (after polling I/O).
 * With none queued, nothing is armed: the round's last done calls
 * on_ai_ready. */
static void wait_for_round(sp_daemon_t *d, uint64_t now) {
    if (!d->ai_wait_since) {
        d->ai_wait_since = now;
        d->st.ai_stalls++;
    }
    /* As after an overrun: the pending step plus at most one more owed;
     * the rest of the wait is not owed (dilation, no backlog of catch-up
     * steps). */
    if (d->acc_ns > 2 * d->tick_ns) d->acc_ns = 2 * d->tick_ns;
    if (sp_airound_help(&d->ai, sp_world_tick(d->world))) uv_idle_start(&d->tick_idle, on_tick_idle);
}

/* Cluster: the due step waits for the tick frontier (peers behind, or
 * their hand-offs not in yet; cluster.h). Like the AI wait it is not
 * dropped: the step stays pending, at most one more owed, and the loop
 * returns to libuv. The cluster calls on_cluster_ready when it opens; a
 * timer one tick period away is the fallback. false when it waits. */
static bool cluster_ready(sp_daemon_t *d) {
    sp_cluster_apply(d->cluster);
    if (!sp_cluster_waits(d->cluster)) return true; /* open, or frozen (run_tick then does nothing) */
    if (d->acc_ns > 2 * d->tick_ns) d->acc_ns = 2 * d->tick_ns;
    uv_timer_start(&d->tick_timer, on_tick, (d->tick_ns + 999999u) / 1000000u, 0);
    return false;
}

static void on_cluster_ready(void *ctx) {
    sp_daemon_t *d = ctx;
    if (!d->shutting_down) uv_idle_start(&d->tick_idle, on_tick_idle);
}

static void tick_cb(sp_daemon_t *d) {
    if (d->shutting_down) return;
    uint64_t now = sp_now_ns();
    d->acc_ns += now - d->last_ns;
    d->last_ns = now;
    if (d->acc_ns >= d->tick_ns) {
        if (!sp_airound_step_ready(&d->ai, sp_world_tick(d->world))) {
            wait_for_round(d, now);
            return;
        }
        if (d->cluster && !cluster_ready(d)) return;
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

/* The AI round a step may wait for is complete (its last done ran): run
 * the step on the next iteration, from the idle handle (a no-op if started). */
static void on_ai_ready(void *ctx) {
    sp_daemon_t *d = ctx;
    if (d->ai_wait_since && !d->shutting_down) uv_idle_start(&d->tick_idle, on_tick_idle);
}

/* The respawn targets of this daemon: the demo's numbers, or for a
 * cluster daemon the draws that fell in the cells it owns (tallied at
 * populate), else (a loaded world) the numbers times its fraction of the
 * cells, rounded down. */
static void respawn_targets(const sp_daemon_t *d, uint64_t *npc, uint64_t *ast) {
    *npc = (uint64_t)d->conf.demo_npcs;
    *ast = (uint64_t)d->conf.demo_asteroids;
    if (d->cluster && sp_cluster_demo_share(d->cluster, ast, npc) != 0) {
        uint32_t n, mine = sp_cluster_cells_owned(d->cluster, &n);
        *npc = *npc * mine / n;
        *ast = *ast * mine / n;
    }
}

uint32_t sp_daemon_set_respawn(sp_daemon_t *d) {
    const sp_dconf_t *c = &d->conf;
    uint64_t npc, ast;
    respawn_targets(d, &npc, &ast);
    d->respawn_npc = npc;
    d->respawn_ast = ast;
    /* Up to 2% of the NPCs a second (at least 2); a cluster daemon its share
     * of that, so the cluster respawns as fast as one process would. */
    uint64_t per = (uint64_t)c->demo_npcs / 50;
    if (per < 2) per = 2;
    if (d->cluster && c->demo_npcs > 0) per = (per * npc + (uint64_t)c->demo_npcs - 1) / (uint64_t)c->demo_npcs;
    if (per < 1) per = 1;
    sp_world_set_respawn(d->world, (uint32_t)npc, (uint32_t)ast, (uint32_t)c->tick_hz, (uint32_t)per);
    return (uint32_t)per;
}

/* 1 Hz: rates, dilation, idle clients, periodic checkpoints, a cluster
 * daemon's respawn share. */
static void on_house(uv_timer_t *t) {
    sp_daemon_t *d = (sp_daemon_t *)t->data;
    uint64_t now = sp_now_ns();
    /* A frozen cluster member (fenced or paused) says so itself. */
    bool frozen = d->cluster && sp_cluster_frozen(d->cluster);
    if (d->cluster) {
        uint64_t npc, ast;
        respawn_targets(d, &npc, &ast);
        if (npc != d->respawn_npc || ast != d->respawn_ast) sp_daemon_set_respawn(d);
    }
    bool rated = sp_stats_rates(&d->st, now, d->conf.tick_hz);
    if (d->gw) d->st.dilation = sp_gw_dilation(d->gw, now); /* the daemons' clock, as merged */
    if (rated && d->st.dilation < 0.9 && !frozen) {
        uint64_t n = sp_log_ratelimit_ok(&d->skip_rl, now / 1000000u);
        if (n) SP_LOGW("time dilation %.2f: the world runs slower than real time", d->st.dilation);
    }
    sp_net_housekeeping(&d->net, now);
    sp_clients_housekeeping(d, now); /* detached sessions past their grace */
    if (d->conf.checkpoint[0] && d->conf.checkpoint_every > 0 &&
        (double)(now - d->last_checkpoint_ns) / 1e9 >= d->conf.checkpoint_every) {
        d->last_checkpoint_ns = now;
        sp_checkpoint_start(d);
    }
}

/* The bus's main inbox got SpaceMessages (the AI chunks'): make room. */
static void on_wake(uv_async_t *a) { sp_airound_collect(&((sp_daemon_t *)a->data)->ai); }

static void notify_main(void *ctx) { uv_async_send((uv_async_t *)ctx); }

/* Each worker, between jobs: read the SystemAlerts broadcast to it. */
static void on_worker_turn(void *ctx, unsigned worker) {
    sp_daemon_t *d = ctx;
    sp_msg_t m;
    while (sp_bus_recv_worker(&d->bus, worker, &m) == 0)
        if (m.kind == SP_MSG_SYSTEM_ALERT)
            atomic_fetch_add_explicit(&d->alerts_seen, 1, memory_order_relaxed); /* statistic */
}

/* ---------------------------------------------------------------- shutdown */

static void close_loop_handles(sp_daemon_t *d) {
    sp_net_close_all(&d->net, "server shutting down");
    sp_pool_free(d->pool); /* jobs not run are disposed of by their done */
    sp_frames_stop(d);     /* builds that waited for the one before them */
    sp_snapshots_stop(d);  /* rounds that waited for the cell store: their jobs' dones */
    d->pool = NULL;
    sp_airound_destroy(&d->ai);
    if (d->cluster) sp_cluster_stop(d->cluster);
    if (d->gw) sp_gw_stop(d->gw);
    uv_close((uv_handle_t *)&d->wake, NULL);
    uv_close((uv_handle_t *)&d->house_timer, NULL);
    uv_close((uv_handle_t *)&d->tick_timer, NULL);
    uv_close((uv_handle_t *)&d->tick_idle, NULL);
    close_signals(d);
    uv_close((uv_handle_t *)&d->flush_timer, NULL);
    sp_http_stop(d); /* after sp_net_close_all: its WebSockets are closing */
}

/* Flush: wait until every client's output queue drained, at most 2 s. */
static void on_flush(uv_timer_t *t) {
    sp_daemon_t *d = (sp_daemon_t *)t->data;
    if (sp_net_output_pending(&d->net) && ++d->flush_rounds < 200) return;
    uv_timer_stop(t);
    close_loop_handles(d);
}

void sp_daemon_shutdown(sp_daemon_t *d, const char *why) {
    if (d->shutting_down) {
        SP_LOGW("%s again: exiting now", why);
        exit(d->exit_code ? d->exit_code : SP_EXIT_OK);
    }
    d->shutting_down = true;
    sp_notify_stopping(why);
    SP_LOGI("%s: shutting down (tick %llu)", why, (unsigned long long)sp_world_tick(d->world));
    sp_net_stop_accepting(&d->net);
    uv_timer_stop(&d->tick_timer);
    uv_idle_stop(&d->tick_idle);
    uv_timer_stop(&d->house_timer);
    sp_net_stop_reading(&d->net);
    if (d->gw) sp_gw_end_sessions(d->gw); /* a gateway keeps no sessions across a restart */
    if (d->conf.checkpoint[0] && sp_checkpoint_write(d) < 0) d->exit_code = SP_EXIT_RUNTIME;
    uv_timer_init(d->loop, &d->flush_timer);
    d->flush_timer.data = d;
    uv_timer_start(&d->flush_timer, on_flush, 0, 10);
}

static void on_signal(uv_signal_t *s, int signum) {
    sp_daemon_shutdown((sp_daemon_t *)s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* SIGHUP: what logrotate (postrotate) and a closed terminal send. Reopen
 * --log-file at its path, so lines go to the new file once the old one was
 * moved away; without --log-file there is nothing to reopen and the signal
 * is ignored (redis and memcached survive it too), with a line saying so. */
static void on_hup(uv_signal_t *s, int signum) {
    (void)s;
    (void)signum;
    const char *path = sp_log_path();
    if (path == NULL) {
        SP_LOGI("SIGHUP: ignored (no --log-file to reopen)");
        return;
    }
    if (sp_log_reopen() != 0) {
        SP_LOGW("SIGHUP: cannot reopen the log file %s: %s; still writing to the old one", path, strerror(errno));
        return;
    }
    SP_LOGI("SIGHUP: log file %s reopened", path);
}

/* SIGUSR1: a checkpoint now, by the periodic path (serialized on the loop
 * between two ticks, written on the threadpool, logged when renamed). The
 * periodic clock restarts from it. Without --checkpoint: a line says so. */
static void on_usr1(uv_signal_t *s, int signum) {
    (void)signum;
    sp_daemon_t *d = (sp_daemon_t *)s->data;
    if (d->shutting_down) {
        SP_LOGI("SIGUSR1: ignored (shutting down: the final checkpoint is written)");
        return;
    }
    if (d->conf.checkpoint[0] == '\0') {
        SP_LOGI("SIGUSR1: no checkpoint written (no --checkpoint given)");
        return;
    }
    SP_LOGI("SIGUSR1: writing a checkpoint to %s", d->conf.checkpoint);
    d->last_checkpoint_ns = sp_now_ns();
    sp_checkpoint_start(d);
}

/* The four signals, before the port is published (sp_net_listen writes
 * the port file): a script that signals the daemon once it listens must
 * never meet the default action (SIGTERM would exit 143 instead of 0,
 * SIGHUP would kill it). libuv only queues a signal here; its callback
 * runs inside uv_run, once everything it touches is set up. */
static int start_signals(sp_daemon_t *d) {
    struct {
        uv_signal_t *h;
        uv_signal_cb cb;
        int signum;
    } sigs[] = {{&d->sig_term, on_signal, SIGTERM},
                {&d->sig_int, on_signal, SIGINT},
                {&d->sig_hup, on_hup, SIGHUP},
                {&d->sig_usr1, on_usr1, SIGUSR1}};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        int r = uv_signal_init(d->loop, sigs[i].h);
        sigs[i].h->data = d;
        if (r == 0) r = uv_signal_start(sigs[i].h, sigs[i].cb, sigs[i].signum);
        if (r != 0) {
            SP_LOGE("cannot handle signal %d: %s", sigs[i].signum, uv_strerror(r));
            return SP_EIO;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* SIGHUP and SIGUSR1 never kill the daemon, also while no handler of ours
 * is installed: during start-up (world creation or checkpoint load) and
 * after close_signals (closing a uv_signal_t restores SIG_DFL). */
static void ignore_operator_signals(void) {
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
}

static void close_signals(sp_daemon_t *d) {
    uv_signal_t *hs[] = {&d->sig_term, &d->sig_int, &d->sig_hup, &d->sig_usr1};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        if (hs[i]->loop != NULL && !uv_is_closing((uv_handle_t *)hs[i])) uv_close((uv_handle_t *)hs[i], NULL);
    ignore_operator_signals();
}

/* ---------------------------------------------------------------- start */

void sp_daemon_init(sp_daemon_t *d) {
    ignore_operator_signals(); /* until start_signals installs the handlers */
    if (sp_blocks_init(&d->blocks) != 0) abort(); /* a mutex at start-up */
    d->loop = uv_default_loop();
    d->next_session = 1;
    d->tick_ns = 1000000000ull / (uint64_t)d->conf.tick_hz;
    d->snap_every = (uint64_t)(d->conf.tick_hz / d->conf.snapshot_hz);
    if (d->snap_every == 0) d->snap_every = 1;
    d->overrun_rl.interval_ms = 5000;
    d->skip_rl.interval_ms = 5000;
    d->stall_rl.interval_ms = 5000;
    sp_stats_init(&d->st, sp_now_ns());
    msgpack_sbuffer_init(&d->reply);
    msgpack_packer_init(&d->reply_pk, &d->reply, msgpack_sbuffer_write);
    static const sp_net_cb_t cb = {sp_clients_alloc, sp_dispatch_admit, sp_dispatch, sp_clients_closing, sp_clients_free};
    sp_net_init(&d->net, d->loop, &d->conf, &d->st, &cb, d);
}

void sp_daemon_destroy(sp_daemon_t *d) {
    sp_net_destroy(&d->net);
    sp_events_destroy(&d->events);
    sp_sessions_destroy(&d->detached);
    msgpack_sbuffer_destroy(&d->reply);
    sp_blocks_destroy(&d->blocks); /* after the world: its arrays and frames came from it */
}

static size_t pow2_at_least(size_t n) {
    size_t p = 2;
    while (p < n) p <<= 1;
    return p;
}

/* An NPC fighter's shot at a ship across the border (airound.h). */
static void fire_ghost(void *ctx, uint64_t shooter, uint64_t target) {
    sp_daemon_t *d = ctx;
    sp_fire_result_t fr;
    (void)sp_cluster_fire_at_ghost(d->cluster, shooter, target, &fr); /* a missing ghost: stale, as any intent */
}

/* An NPC miner's intent with no asteroid in range here (airound.h). */
static void mine_ghost(void *ctx, uint64_t ship, int resource) {
    sp_daemon_t *d = ctx;
    if (resource >= 0) (void)sp_cluster_mine_nearest_ghost(d->cluster, ship, resource);
}

/* The bus (AI intents in, alerts out) and the worker pool. */
static int start_workers(sp_daemon_t *d) {
    size_t npc = d->world ? sp_world_count_kind(d->world, SP_KIND_SHIP) : 0;
    sp_bus_def_t def = sp_bus_def_default((unsigned)d->conf.workers);
    def.main_capacity = pow2_at_least(4 * npc + 4096);
    int r = sp_bus_init_def(&d->bus, &def, NULL);
    if (r < 0) return r;
    sp_bus_set_main_notify(&d->bus, notify_main, &d->wake);
    sp_pool_def_t pd = {
        .threads = (unsigned)d->conf.workers,
        /* One snapshot job per client, the AI chunks and a build per round. */
        .max_jobs = (size_t)d->conf.max_clients + 1024,
        .batch_sched = true,
        .on_worker_turn = on_worker_turn,
        .ctx = d,
        .scratch_free = sp_snapshots_scratch_free,
    };
    if ((r = sp_snapshots_init(d)) < 0) {
        sp_bus_destroy(&d->bus);
        return r;
    }
    if ((r = sp_pool_create(d->loop, &pd, &d->pool)) < 0 || (r = sp_frames_init(d)) < 0) {
        sp_snapshots_destroy(d);
        sp_bus_destroy(&d->bus);
        return r;
    }
    sp_airound_init(&d->ai, d->pool, &d->bus, &d->st, d->snap_every, on_ai_ready, d);
    if (d->cluster) {
        d->ai.fire_ghost = fire_ghost;
        d->ai.mine_ghost = mine_ghost;
        d->ai.fire_ghost_ctx = d;
    }
    return 0;
}

static void start_timers(sp_daemon_t *d) {
    uv_timer_init(d->loop, &d->tick_timer);
    d->tick_timer.data = d;
    uv_idle_init(d->loop, &d->tick_idle);
    d->tick_idle.data = d;
    uv_timer_init(d->loop, &d->house_timer);
    d->house_timer.data = d;
    uint64_t now = sp_now_ns();
    d->start_ns = d->last_ns = d->last_checkpoint_ns = now;
    d->st.rate_last_ns = now;
    d->acc_ns = 0;
    if (d->gw) sp_gw_start(d->gw); /* its rounds come from the daemons' snapshots: no tick of its own */
    else schedule_tick(d);
    uv_timer_start(&d->house_timer, on_house, 1000, 1000);
}

int sp_daemon_run(sp_daemon_t *d) {
    if (start_signals(d) != 0) return SP_EXIT_RUNTIME;
    uv_async_init(d->loop, &d->wake, on_wake);
    d->wake.data = d;
    int r = start_workers(d);
    if (r != 0) {
        SP_LOGE("cannot start %d worker threads: %s", d->conf.workers, sp_strerror(r));
        return SP_EXIT_RUNTIME;
    }
    if (d->cluster) sp_cluster_on_ready(d->cluster, on_cluster_ready, d);
    if (d->cluster && (r = sp_cluster_start(d->cluster, d->loop, d->world)) != 0) {
        SP_LOGE("cannot start the cluster's NATS thread: %s", sp_strerror(r));
        sp_cluster_stop(d->cluster);
        sp_pool_free(d->pool);
        uv_close((uv_handle_t *)&d->wake, NULL);
        close_signals(d);
        uv_run(d->loop, UV_RUN_DEFAULT);
        sp_frames_destroy(d);
        sp_bus_destroy(&d->bus);
        return SP_EXIT_RUNTIME;
    }
    int port = 0;
    /* HTTP first: once the port file names the RPC port, /ws answers too
     * (no connection can arrive before uv_run, so net's table is ready). */
    if ((r = sp_http_start(d)) != 0 || (r = sp_net_listen(&d->net, &port)) != 0) {
        int code = r == SP_EINVAL ? SP_EXIT_USAGE : r == SP_EPERM ? SP_EXIT_CONFIG : SP_EXIT_LISTEN;
        sp_net_stop_accepting(&d->net);
        if (d->cluster) sp_cluster_stop(d->cluster);
        sp_pool_free(d->pool);
        uv_close((uv_handle_t *)&d->wake, NULL);
        close_signals(d); /* a signal queued meanwhile must not run sp_daemon_shutdown now */
        sp_http_stop(d);
        uv_run(d->loop, UV_RUN_DEFAULT); /* the close callbacks free what they own */
        sp_frames_destroy(d);
        sp_snapshots_destroy(d);
        sp_bus_destroy(&d->bus);
        return code;
    }
    d->conf.port = port;
    start_timers(d);
    SP_LOGI("running: %u entities, %d Hz ticks, %d Hz snapshots, %d workers", sp_world_count(d->world),
            d->conf.tick_hz, d->conf.snapshot_hz, d->conf.workers);
    sp_notify_ready(port);
    uv_run(d->loop, UV_RUN_DEFAULT);
    /* Every handle is closed by now, lws's too (sp_http_stop): a handle left
     * open would be a leak, so it is logged (tests look for this line). */
    int lc = uv_loop_close(d->loop);
    if (lc != 0) SP_LOGW("event loop still has open handles at exit: %s", uv_strerror(lc));
    sp_frames_destroy(d);
    sp_snapshots_destroy(d);
    sp_bus_destroy(&d->bus);
    SP_LOGI("stopped after %llu ticks; exit %d", (unsigned long long)d->st.ticks, d->exit_code);
    return d->exit_code;
}
