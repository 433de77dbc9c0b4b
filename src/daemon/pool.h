/* pool.h: a thread pool that knows nothing of the game (libuv's uv__work).
 *
 * A job is {work, done}, embedded in the caller's own struct (container_of
 * style: put sp_pool_job_t first and cast back). `work` runs on a worker
 * thread (or, when the loop helps, on the loop thread); `done` always runs on
 * the loop thread afterwards, from the pool's uv_async handle or from
 * sp_pool_drain(). Everything `work` wrote is visible to `done` (the done
 * queue's push/pop publish it). A job is owned by the pool from submit until
 * its `done` is called; `done` disposes of it.
 *
 * Two priorities: workers always take a queued HIGH job before a LOW one
 * (the daemon's AI round before per-client snapshots: a step may wait for
 * the round, nobody waits for a snapshot).
 *
 * Scratch: every thread that runs jobs (each worker, and the loop) has
 * SP_POOL_SCRATCH slots of private memory, NULL at first, that `work` may
 * grow and keep across jobs (e.g. a query buffer); scratch_free is called on
 * each non-NULL slot when the pool is freed. Slot numbers are the caller's.
 *
 * Threads: sp_pool_create/free/drain/help run on the loop thread;
 * sp_pool_submit and sp_pool_wake on any thread (workers submit follow-up
 * jobs). Never blocks the loop: the queues are lock-free; sleeping workers
 * are woken through a mutex/condvar taken only when one sleeps. */
#ifndef SP_DAEMON_POOL_H
#define SP_DAEMON_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define SP_POOL_SCRATCH 4

typedef struct sp_pool sp_pool_t;
typedef struct sp_pool_job sp_pool_job_t;

struct sp_pool_job {
    void (*work)(sp_pool_job_t *job, void **scratch); /* scratch: SP_POOL_SCRATCH slots */
    void (*done)(sp_pool_job_t *job);                 /* loop thread; frees the job */
    unsigned char ran_;                               /* pool-private: see sp_pool_job_ran() */
};

typedef enum sp_pool_prio { SP_POOL_HIGH = 0, SP_POOL_LOW = 1 } sp_pool_prio_t;

typedef struct sp_pool_def {
    unsigned threads;        /* workers, >= 1 */
    size_t max_jobs;         /* jobs that may be queued or running at once (queue
                              * sizes; a submit beyond returns SP_EAGAIN) */
    bool batch_sched;        /* run workers as SCHED_BATCH (throughput threads that
                              * do not preempt the loop when woken); best effort */
    /* Called on a worker each time it wakes or finished a job, before it
     * looks for the next (e.g. to read a per-worker mailbox). May be NULL. */
    void (*on_worker_turn)(void *ctx, unsigned worker);
    void *ctx;
    void (*scratch_free)(unsigned slot, void *p); /* may be NULL: free() */
} sp_pool_def_t;

/* Start the workers. Returns 0, SP_ENOMEM or SP_EAGAIN (thread creation);
 * on failure nothing is left running. Loop thread. */
int sp_pool_create(uv_loop_t *loop, const sp_pool_def_t *def, sp_pool_t **out);

/* Stop the workers: each finishes the job it is running and takes no other;
 * jobs still queued are not run: their `done` is called with the job never
 * worked (sp_pool_job_ran() false). Then done of every finished job, and the
 * async handle is closed; the pool's memory goes in its close callback (run
 * the loop once more). Loop thread; blocks until the workers exited. */
void sp_pool_free(sp_pool_t *p);

/* Queue a job. defer_wake: do not wake a worker now (the caller will call
 * sp_pool_wake() at a better moment, e.g. after the loop's tick). Returns 0,
 * or SP_EAGAIN when the queue is full (nothing queued: run it some other
 * way, e.g. sp_pool_run_here). Any thread; lock-free. */
int sp_pool_submit(sp_pool_t *p, sp_pool_job_t *job, sp_pool_prio_t prio, bool defer_wake);

/* Wake up to n sleeping workers. Any thread. */
void sp_pool_wake(sp_pool_t *p, unsigned n);

/* Run job's work on the calling thread now (a pool thread or the loop),
 * with that thread's scratch, and deliver its done as usual. */
void sp_pool_run_here(sp_pool_t *p, sp_pool_job_t *job);

/* Loop thread: run at most one queued job of priority prio here. Returns
 * true if it ran one. Costs one job. */
bool sp_pool_help(sp_pool_t *p, sp_pool_prio_t prio);

/* Loop thread: call `done` of every finished job now (the async handle does
 * the same when it fires). */
void sp_pool_drain(sp_pool_t *p);

/* Jobs queued, not yet taken by a thread (approximate; any thread). */
size_t sp_pool_queued(const sp_pool_t *p);
/* Finished jobs whose `done` has not run yet (approximate; any thread). */
size_t sp_pool_finished(const sp_pool_t *p);

/* In `done`: false when the pool was freed before the job ran (shutdown). */
bool sp_pool_job_ran(const sp_pool_job_t *job);

/* True once sp_pool_free() started: a long `work` may stop early. Any thread. */
bool sp_pool_stopping(const sp_pool_t *p);

#endif /* SP_DAEMON_POOL_H */
