/* log.h: the daemon's logger: one line per event, with a level, to stderr
 * or to the file of --log-file.
 *
 * Format: "2024-05-01T12:00:00.123Z spacesimd[pid] LEVEL message\n", written
 * with a single write(2) so lines from different threads never interleave
 * (no stdio buffer: each line is on its way when sp_log returns, which is
 * what line-buffered means for a log that must survive a crash).
 * Threads: sp_log may be called from any thread (workers log rarely); the
 * level and the file are set once at start-up before any thread exists;
 * sp_log_reopen (SIGHUP) may run while other threads log. Never allocates
 * (the line is formatted into a stack buffer of 1 KiB; longer text is cut). */
#ifndef SP_DAEMON_LOG_H
#define SP_DAEMON_LOG_H

#include <stdint.h>

typedef enum sp_log_level {
    SP_LOG_ERROR = 0,
    SP_LOG_WARN = 1,
    SP_LOG_INFO = 2,
    SP_LOG_DEBUG = 3,
} sp_log_level_t;

/* Parse "error", "warn", "info", "debug". Returns 0 and sets *out, or -1. */
int sp_log_level_parse(const char *s, sp_log_level_t *out);

/* Set the threshold (default info). Call before threads start. */
void sp_log_set_level(sp_log_level_t level);
sp_log_level_t sp_log_get_level(void);

/* Send the log to `path` from now on instead of stderr: opened with
 * O_APPEND (several writers, logrotate's copy, never a torn line) and
 * O_CREAT (0644). Call once, before any thread starts. Returns 0, or
 * SP_EIO with errno set (nothing changed: the log still goes to stderr).
 * Ownership: `path` is copied (at most 1023 bytes, else SP_EINVAL). */
int sp_log_open(const char *path);

/* Reopen the file given to sp_log_open at the same path (after logrotate
 * renamed it, or removed it: a new file is created). The descriptor
 * number does not change (dup2 replaces the open file behind it in one
 * step), so a line written meanwhile by another thread lands in the old
 * file or the new one, never in a closed or reused descriptor.
 * Returns 0; SP_ENOENT when no log file is in use (stderr: nothing to
 * reopen); SP_EIO with errno set when the path cannot be opened (the old
 * file stays in use). Any thread; the daemon calls it on the loop. */
int sp_log_reopen(void);

/* The path given to sp_log_open, or NULL when logging to stderr. */
const char *sp_log_path(void);

/* Log one line at `level` when the threshold lets it through. */
void sp_log(sp_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rate limiter for repeated warnings (tick overruns, skipped snapshots):
 * at most one line per `interval_ms`; the lines suppressed in between are
 * counted and reported with the next line that passes. Loop thread only. */
typedef struct sp_log_ratelimit {
    uint64_t interval_ms;
    uint64_t last_ms;    /* time of the last line that passed; 0 = never */
    uint64_t suppressed; /* lines dropped since then */
} sp_log_ratelimit_t;

/* Returns the number of suppressed lines + 1 (>= 1) when a line may be
 * written now (the caller should mention the suppressed count), else 0. */
uint64_t sp_log_ratelimit_ok(sp_log_ratelimit_t *rl, uint64_t now_ms);

#define SP_LOGE(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)
#define SP_LOGW(...) sp_log(SP_LOG_WARN, __VA_ARGS__)
#define SP_LOGI(...) sp_log(SP_LOG_INFO, __VA_ARGS__)
#define SP_LOGD(...)                                                       \
    do {                                                                   \
        if (sp_log_get_level() >= SP_LOG_DEBUG) sp_log(SP_LOG_DEBUG, __VA_ARGS__); \
    } while (0)

#endif /* SP_DAEMON_LOG_H */
