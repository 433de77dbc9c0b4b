/* log.c: see log.h. */
#include "daemon/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "spacesim/error.h"

static sp_log_level_t g_level = SP_LOG_INFO;

/* Where lines go. Set once by sp_log_open before any thread exists and
 * never assigned again: sp_log_reopen swaps the file behind this number
 * with dup2, so readers need no synchronisation (plain int). */
static int g_fd = STDERR_FILENO;
static char g_path[1024]; /* "" = stderr */

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

int sp_log_level_parse(const char *s, sp_log_level_t *out) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (sp_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = SP_LOG_WARN;
        return 0;
    }
    return -1;
}

void sp_log_set_level(sp_log_level_t level) { g_level = level; }
sp_log_level_t sp_log_get_level(void) { return g_level; }

void sp_log(sp_log_level_t level, const char *fmt, ...) {
    if (level > g_level) return;
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ spacesimd[%ld] %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L, (long)getpid(), level_names[level]);
    if (n < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    /* One write per line: atomic for pipes up to PIPE_BUF, so concurrent
     * loggers never interleave within a line. Errors are ignored: there is
     * nowhere else to report them. */
    ssize_t w = write(g_fd, line, len);
    (void)w;
}

static int open_log(const char *path) {
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
}

int sp_log_open(const char *path) {
    if (strlen(path) >= sizeof g_path) {
        errno = ENAMETOOLONG;
        return SP_EINVAL;
    }
    int fd = open_log(path);
    if (fd < 0) return SP_EIO;
    g_fd = fd;
    snprintf(g_path, sizeof g_path, "%s", path);
    return 0;
}

int sp_log_reopen(void) {
    if (g_path[0] == '\0') return SP_ENOENT;
    int fd = open_log(g_path);
    if (fd < 0) return SP_EIO;
    /* dup2 closes the old file and puts the new one at g_fd atomically: a
     * concurrent write(g_fd) goes to one or the other, and the number is
     * never free for a socket to take (close + reassign could send a
     * worker's log line to a client). */
    int r;
    do r = dup2(fd, g_fd);
    while (r < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (r < 0) {
        errno = saved;
        return SP_EIO;
    }
    return 0;
}

const char *sp_log_path(void) { return g_path[0] ? g_path : NULL; }

uint64_t sp_log_ratelimit_ok(sp_log_ratelimit_t *rl, uint64_t now_ms) {
    if (rl->last_ms != 0 && now_ms - rl->last_ms < rl->interval_ms) {
        rl->suppressed++;
        return 0;
    }
    uint64_t n = rl->suppressed + 1;
    rl->suppressed = 0;
    rl->last_ms = now_ms ? now_ms : 1;
    return n;
}
