/* checkpoint.c: atomic world checkpoints and strict resume.
 *
 * Write: serialize into memory, seal, then sp_save_write_file() (sim/save.h,
 * shared with spacesim-ckpt): PATH.tmp (O_TRUNC), write all, fsync, close,
 * rename over PATH, fsync the directory (so the rename itself survives a
 * crash); a failed step removes PATH.tmp. A crash at any point leaves either
 * the old checkpoint or the new one, never a mixture.
 *
 * Periodic checkpoints (sp_checkpoint_start) keep the loop's part small: the
 * loop only serializes (sp_world_save_unsealed: one exact-size buffer and
 * plain copies, ~2 ms at 100k entities, between two ticks so the world is
 * consistent); the checksum (~12 ms for 10 MB), the write, the fsyncs and the
 * rename run on a libuv threadpool thread (uv_queue_work), and the loop logs
 * the result when it comes back. At most one is in flight (a periodic one due
 * meanwhile is skipped). The final checkpoint at shutdown is synchronous
 * (sp_checkpoint_write) and first waits for an in-flight one, so the last
 * rename is always the newest state.
 *
 * Load: the whole file is read and handed to sp_world_load(), which validates
 * everything (magic, version, checksum, every count and range) before it
 * builds a world, so a corrupt or truncated checkpoint is refused with a
 * clear message and never half-loaded. A missing file means "new world".
 *
 * Start-up checks (sp_checkpoint_lock, before the load): the directory
 * must exist and be writable (else the first save, maybe an hour later,
 * would fail and stop the daemon with exit 6), PATH must be a regular
 * file or absent (a FIFO would block open() forever), and no other
 * spacesimd may use PATH (two daemons renaming over one file lose one
 * world without a word). The lock is flock(2), not fcntl(2): an flock
 * belongs to the open file description, so it lasts exactly as long as
 * g_lock_fd, whatever else the process opens and closes (a POSIX record
 * lock is dropped when ANY descriptor of the file is closed by the
 * process); and it needs no byte range. Both are released by the kernel
 * when the process dies. The pid is written into the file for the
 * message of the daemon refused (flock, unlike F_GETLK, names no owner). */
#include "daemon/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "daemon/clients.h"
#include "daemon/clock.h"
#include "sim/save.h"
#include "spacesim/error.h"

/* The world and, in its annex, the sessions (clients.h), unsealed; on the
 * loop thread, between two ticks. Returns as sp_world_save_unsealed(). */
static int save_world_and_sessions(const sp_daemon_t *d, uint8_t **buf, size_t *len) {
    uint8_t *annex = NULL;
    size_t alen = 0;
    int r = sp_clients_save_sessions(d, &annex, &alen);
    if (r == 0 && d->cluster) {
        /* A cluster daemon's annex starts with the cluster's part (cluster.h). */
        uint8_t *cl = NULL, *both;
        size_t clen = 0;
        r = sp_cluster_checkpoint_annex(d->cluster, &cl, &clen);
        if (r == 0 && (both = malloc(clen + alen)) == NULL) r = SP_ENOMEM;
        if (r == 0) {
            memcpy(both, cl, clen);
            if (alen) memcpy(both + clen, annex, alen);
            explicit_bzero(annex, alen);
            free(annex);
            annex = both;
            alen += clen;
        }
        free(cl);
    }
    if (r == 0) r = sp_world_save_unsealed_annex(d->world, annex, alen, buf, len);
    if (annex) explicit_bzero(annex, alen); /* token hashes: no copies left about */
    free(annex);
    return r;
}

/* Seal buf and write it to path atomically (sp_save_write_file(): temp
 * file, fsync, rename, fsync of the directory). Any thread. Returns 0 or
 * SP_EIO / SP_EMSGSIZE with the reason in msg; on success msg is "" or a
 * warning that the caller logs (the directory's fsync failed). */
static int seal_and_write(const char *path, uint8_t *buf, size_t len, char *msg, size_t msgsz) {
    sp_world_save_seal(buf, len);
    return sp_save_write_file(path, buf, len, msg, msgsz);
}

/* One checkpoint in flight on the threadpool at most. g_busy is set by the
 * loop before queueing and cleared by the pool thread when the file is
 * renamed (or failed), under g_mu, so a final checkpoint can wait for it. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static bool g_busy;

typedef struct ckjob {
    uv_work_t req;
    sp_daemon_t *d;
    uint8_t *buf;
    size_t len;
    int rc;
    char msg[1400];
    uint64_t t0, tick;
    uint32_t entities;
    size_t departures; /* cluster: departures in flight, kept in the checkpoint */
    double loop_ms;
} ckjob_t;

static void ck_work(uv_work_t *req) {
    ckjob_t *j = req->data;
    j->rc = seal_and_write(j->d->conf.checkpoint, j->buf, j->len, j->msg, sizeof j->msg);
    free(j->buf);
    j->buf = NULL;
    pthread_mutex_lock(&g_mu);
    g_busy = false;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void ck_after(uv_work_t *req, int status) {
    ckjob_t *j = req->data;
    sp_daemon_t *d = j->d;
    if (status != 0) { /* cancelled before it ran (never: we do not cancel) */
        free(j->buf);
        pthread_mutex_lock(&g_mu);
        g_busy = false;
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
        SP_LOGE("checkpoint %s not written: %s", d->conf.checkpoint, uv_strerror(status));
    } else if (j->rc != 0) {
        SP_LOGE("checkpoint %s failed: %s", d->conf.checkpoint, j->msg);
    } else {
        if (j->msg[0] != '\0') SP_LOGW("checkpoint %s: %s", d->conf.checkpoint, j->msg);
        d->st.checkpoints++;
        SP_LOGI("checkpoint written: %s (%zu bytes, %u entities, %zu departures in flight, tick %llu, %.1f ms; "
                "%.2f ms on the loop)",
                d->conf.checkpoint, j->len, j->entities, j->departures, (unsigned long long)j->tick,
                (double)(sp_now_ns() - j->t0) / 1e6, j->loop_ms);
    }
    free(j);
}

int sp_checkpoint_start(sp_daemon_t *d) {
    pthread_mutex_lock(&g_mu);
    bool busy = g_busy;
    pthread_mutex_unlock(&g_mu);
    if (busy) {
        SP_LOGW("checkpoint %s: the previous one is still being written; skipping this one", d->conf.checkpoint);
        return 0;
    }
    ckjob_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        SP_LOGE("checkpoint %s failed: out of memory", d->conf.checkpoint);
        return SP_ENOMEM;
    }
    j->d = d;
    j->t0 = sp_now_ns();
    j->tick = sp_world_tick(d->world);
    j->entities = sp_world_count(d->world);
    j->departures = d->cluster ? sp_cluster_outbox_len(d->cluster) : 0;
    int r = save_world_and_sessions(d, &j->buf, &j->len);
    if (r < 0) {
        SP_LOGE("checkpoint %s failed: cannot serialize the world: %s", d->conf.checkpoint, sp_strerror(r));
        free(j);
        return r;
    }
    j->loop_ms = (double)(sp_now_ns() - j->t0) / 1e6;
    j->req.data = j;
    pthread_mutex_lock(&g_mu);
    g_busy = true;
    pthread_mutex_unlock(&g_mu);
    if ((r = uv_queue_work(d->loop, &j->req, ck_work, ck_after)) != 0) {
        pthread_mutex_lock(&g_mu);
        g_busy = false;
        pthread_mutex_unlock(&g_mu);
        SP_LOGE("checkpoint %s failed: %s", d->conf.checkpoint, uv_strerror(r));
        free(j->buf);
        free(j);
        return SP_EIO;
    }
    return 0;
}

int sp_checkpoint_write(sp_daemon_t *d) {
    const char *path = d->conf.checkpoint;
    /* An in-flight periodic checkpoint renames its file when done: let it
     * finish first, so ours (newer) is the one left at PATH. */
    pthread_mutex_lock(&g_mu);
    while (g_busy) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    uint64_t t0 = sp_now_ns();
    uint8_t *buf = NULL;
    size_t len = 0;
    int r = save_world_and_sessions(d, &buf, &len);
    if (r < 0) {
        SP_LOGE("checkpoint %s failed: cannot serialize the world: %s", path, sp_strerror(r));
        return r;
    }
    char msg[1400];
    r = seal_and_write(path, buf, len, msg, sizeof msg);
    free(buf);
    if (r != 0) {
        SP_LOGE("checkpoint %s failed: %s", path, msg);
        return SP_EIO;
    }
    if (msg[0] != '\0') SP_LOGW("checkpoint %s: %s", path, msg);
    d->st.checkpoints++;
    SP_LOGI("checkpoint written: %s (%zu bytes, %u entities, tick %llu, %.1f ms)", path, len,
            sp_world_count(d->world), (unsigned long long)sp_world_tick(d->world),
            (double)(sp_now_ns() - t0) / 1e6);
    return 0;
}

/* PATH.lock, held (LOCK_EX) from sp_checkpoint_lock until exit. */
static int g_lock_fd = -1;

/* The pid recorded in an already-open lock file, or 0 if none is readable
 * (the holder may not have written it yet). */
static long lock_owner_pid(int fd) {
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = '\0';
    long pid = strtol(buf, NULL, 10);
    return pid > 0 ? pid : 0;
}

/* The directory part of path, for messages. */
static const char *dir_of(const char *path, char *buf, size_t n) {
    snprintf(buf, n, "%s", path);
    return dirname(buf);
}

int sp_checkpoint_lock(sp_daemon_t *d) {
    const char *path = d->conf.checkpoint;
    char lock[1100], dirbuf[1100];
    snprintf(lock, sizeof lock, "%s.lock", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
    if (fd < 0) {
        int e = errno;
        const char *dir = dir_of(path, dirbuf, sizeof dirbuf);
        struct stat ds;
        if (e == ENOENT && stat(dir, &ds) == 0 && S_ISDIR(ds.st_mode)) /* /proc, a dangling symlink */
            SP_LOGE("--checkpoint %s: cannot create files in directory %s; not starting", path, dir);
        else if (e == ENOENT)
            SP_LOGE("--checkpoint %s: directory %s does not exist; not starting (create it first)", path, dir);
        else if (e == ENOTDIR)
            SP_LOGE("--checkpoint %s: %s is not a directory; not starting", path, dir);
        else if (e == EACCES || e == EPERM || e == EROFS)
            SP_LOGE("--checkpoint %s: directory %s is not writable (%s); not starting", path, dir, strerror(e));
        else
            SP_LOGE("--checkpoint %s: cannot create the lock file %s: %s; not starting", path, lock, strerror(e));
        return SP_EIO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        SP_LOGE("--checkpoint %s: the lock file %s is not a regular file; not starting", path, lock);
        close(fd);
        return SP_EIO;
    }
    int r;
    do r = flock(fd, LOCK_EX | LOCK_NB);
    while (r != 0 && errno == EINTR);
    if (r != 0) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? lock_owner_pid(fd) : 0;
        close(fd);
        if (e != EWOULDBLOCK) {
            SP_LOGE("--checkpoint %s: cannot lock %s: %s; not starting", path, lock, strerror(e));
            return SP_EIO;
        }
        if (pid)
            SP_LOGE("--checkpoint %s is in use by another spacesimd (pid %ld holds %s); not starting", path, pid,
                    lock);
        else
            SP_LOGE("--checkpoint %s is in use by another spacesimd (it holds %s); not starting", path, lock);
        return SP_EBUSY;
    }
    /* Ours: record the pid for the message of a daemon refused later. */
    char pidbuf[32];
    int n = snprintf(pidbuf, sizeof pidbuf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pidbuf, (size_t)n, 0) != n)
        SP_LOGW("--checkpoint %s: cannot write the pid into %s: %s", path, lock, strerror(errno));
    /* What every save does first: create PATH.tmp. A leftover one (a crash
     * mid-save) is garbage: PATH is the last complete checkpoint. */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int tfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW, 0644);
    if (tfd < 0) {
        SP_LOGE("--checkpoint %s: cannot create %s: %s; not starting", path, tmp, strerror(errno));
        close(fd);
        return SP_EIO;
    }
    close(tfd);
    unlink(tmp);
    g_lock_fd = fd;
    return 0;
}

int sp_checkpoint_load(sp_daemon_t *d) {
    const char *path = d->conf.checkpoint;
    /* O_NONBLOCK: a FIFO at PATH would block open() (no writer) before the
     * daemon listens; this way it opens and fstat refuses it below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT) {
            SP_LOGI("checkpoint %s does not exist yet: starting a new world", path);
            return SP_ENOENT;
        }
        SP_LOGE("cannot open checkpoint %s: %s", path, strerror(errno));
        return SP_EIO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        SP_LOGE("checkpoint %s is not a regular file%s; not starting", path,
                S_ISFIFO(sb.st_mode) ? " (a FIFO)" : S_ISDIR(sb.st_mode) ? " (a directory)" : "");
        close(fd);
        return SP_EINVAL;
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        SP_LOGE("checkpoint %s: out of memory reading %zu bytes", path, len);
        close(fd);
        return SP_ENOMEM;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (got != len) {
        SP_LOGE("checkpoint %s: short read (%zu of %zu bytes)", path, got, len);
        free(buf);
        return SP_EIO;
    }
    sp_world_t *w = NULL;
    const uint8_t *annex = NULL;
    size_t alen = 0;
    int r = sp_world_load_annex(buf, len, &d->blocks.a, 1, &w, &annex, &alen);
    if (r < 0) {
        free(buf);
        SP_LOGE("checkpoint %s refused: %s%s; not starting (move it away to start a new world)", path,
                sp_strerror(r), r == SP_ECORRUPT ? " (corrupt, truncated or wrong version)" : "");
        return r == SP_ENOENT ? SP_ECORRUPT : r;
    }
    d->world = w;
    /* A cluster daemon's checkpoint: the cluster's part first (cluster.h). */
    size_t clen = 0;
    uint32_t node = 0;
    r = sp_cluster_annex_split(annex, alen, &clen, &node);
    if (r == 1 && d->cluster == NULL) {
        SP_LOGE("checkpoint %s is cluster node %u's: start it with --nats and --node %u, or move it away", path,
                node, node);
        r = SP_EINVAL;
    } else if (r == 1) {
        r = sp_cluster_restore(d->cluster, w, annex, clen);
        if (r < 0) SP_LOGE("checkpoint %s: the cluster's resume failed: %s", path, sp_strerror(r));
    } else if (r == 0 && d->cluster) {
        SP_LOGI("checkpoint %s is a one-process world: this cluster daemon keeps the entities of its cells "
                "(the first scan hands off the others)", path);
    } else if (r < 0) {
        SP_LOGE("checkpoint %s: its cluster part is corrupt", path);
    }
    if (r < 0) {
        explicit_bzero(buf, len);
        free(buf);
        sp_world_free(w);
        d->world = NULL;
        return r == SP_ENOENT ? SP_ECORRUPT : r;
    }
    annex += clen;
    alen -= clen;
    /* The sessions (annex): detached again, each with a full grace. */
    r = sp_clients_restore_sessions(d, annex, alen);
    explicit_bzero(buf, len);
    free(buf);
    if (r < 0) {
        SP_LOGE("checkpoint %s refused: its sessions are %s; not starting (move it away to start a new world)", path,
                r == SP_ECORRUPT ? "corrupt" : sp_strerror(r));
        sp_world_free(w);
        d->world = NULL;
        return r == SP_ENOENT ? SP_ECORRUPT : r;
    }
    SP_LOGI("resumed from checkpoint %s: tick %llu, %u entities", path, (unsigned long long)sp_world_tick(w),
            sp_world_count(w));
    return 0;
}
