/* clients.c: clients, their creation, end and release; detached sessions
 * (see clients.h). */
#include "daemon/clients.h"
#include "gw/gateway.h"

#include <stdlib.h>
#include <string.h>

#include "daemon/clock.h"
#include "spacesim/error.h"

_Static_assert(offsetof(sp_client_t, conn) == 0, "sp_client_of() casts a connection to its client");

/* The next session id, or 0 once SP_SESSION_ID_MAX was handed out (the
 * counter stays past it: never wraps, never reuses). */
uint32_t sp_clients_next_id(sp_daemon_t *d) {
    static bool warned;
    uint64_t id = d->next_session;
    if (id < (uint64_t)d->conf.first_session_id) id = (uint64_t)d->conf.first_session_id;
    /* A gateway's range ends where the next gateway's may begin. */
    uint64_t last = d->gw ? d->conf.session_base + SP_GW_SESSION_SPAN - 1 : SP_SESSION_ID_MAX;
    if (last > SP_SESSION_ID_MAX) last = SP_SESSION_ID_MAX;
    if (id > last) {
        d->next_session = id;
        if (!warned) SP_LOGW("session ids exhausted (%u handed out): new sessions are refused, resumes still work",
                             SP_SESSION_ID_MAX);
        warned = true;
        return 0;
    }
    d->next_session = id + 1;
    return (uint32_t)id;
}

sp_conn_t *sp_clients_alloc(void *ctx) {
    sp_daemon_t *d = ctx;
    sp_client_t *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->d = d;
    /* A gateway hands out its ids at hello (sp_gw_session_id): after its
     * first merge, past every owner of its range in the world. */
    sp_session_init(&c->session, d->gw ? 0 : sp_clients_next_id(d), d->conf.rate_burst, sp_now_ns());
    sp_snapstate_init(&c->snap, d->conf.default_radius);
    c->conn.log_id = c->session.id;
    return &c->conn;
}

/* A session (or a detached one's record) is over: its ships leave the world
 * (a gateway's: their daemons remove them). */
static void end_session(sp_daemon_t *d, sp_session_t *s) {
    if (d->gw) {
        sp_gw_end_ships(d->gw, s->ships, s->nships);
        s->nships = 0;
        return;
    }
    sp_session_end(s, d->world);
}

static void end_rec(sp_daemon_t *d, sp_session_rec_t *r) {
    if (d->gw) {
        sp_gw_end_ships(d->gw, r->ships, r->nships);
        r->nships = 0;
        return;
    }
    sp_session_rec_end(r, d->world);
}

static void prune(sp_daemon_t *d, sp_session_t *s) {
    if (d->gw) sp_gw_prune_ships(d->gw, s);
    else sp_session_prune_ships(s, d->world);
}

/* Keep a session that said hello for --reconnect-grace seconds. False when
 * it cannot be kept (no grace, out of memory): the caller ends it. */
static bool detach(sp_daemon_t *d, sp_session_t *s) {
    if (d->conf.reconnect_grace_secs <= 0) return false;
    prune(d, s);
    /* The bound: the oldest detached session makes room (its ships go now). */
    long old = (size_t)d->conf.max_clients <= d->detached.n ? sp_sessions_soonest(&d->detached) : -1;
    if (old >= 0) {
        sp_session_rec_t r;
        sp_sessions_remove(&d->detached, (size_t)old, &r);
        SP_LOGI("session %u ended early (%zu detached sessions at most): %d ship(s) removed", r.id,
                (size_t)d->conf.max_clients, r.nships);
        end_rec(d, &r);
    }
    sp_session_rec_t r;
    sp_session_detach(s, sp_now_ns() + (uint64_t)(d->conf.reconnect_grace_secs * 1e9), &r);
    if (sp_sessions_add(&d->detached, &r) != 0) return false;
    SP_LOGI("session %u detached: %d ship(s) kept %.0f s for a resume", s->id, s->nships, d->conf.reconnect_grace_secs);
    s->nships = 0; /* they belong to the record now */
    s->state = SP_SESSION_NEW;
    return true;
}

void sp_clients_closing(void *ctx, sp_conn_t *conn, sp_close_kind_t kind) {
    sp_daemon_t *d = ctx;
    (void)kind;
    /* At shutdown the sessions stay as they are: the checkpoint has them. */
    if (d->world == NULL || d->shutting_down) return;
    sp_session_t *s = &sp_client_of(conn)->session;
    if (s->state == SP_SESSION_READY && detach(d, s)) return;
    end_session(d, s);
}

void sp_clients_free(void *ctx, sp_conn_t *conn) {
    (void)ctx;
    sp_client_t *c = sp_client_of(conn);
    sp_snapstate_destroy(&c->snap);
    explicit_bzero(c->session.token_hash, sizeof c->session.token_hash);
    free(c);
}

void sp_clients_housekeeping(sp_daemon_t *d, uint64_t now) {
    for (size_t i = 0; i < d->detached.n;) {
        if (d->detached.v[i].expires_ns > now) {
            i++;
            continue;
        }
        sp_session_rec_t r;
        sp_sessions_remove(&d->detached, i, &r); /* the last one moved to i: look at i again */
        SP_LOGI("session %u expired (not resumed within %.0f s): %d ship(s) removed", r.id,
                d->conf.reconnect_grace_secs, r.nships);
        end_rec(d, &r);
    }
}

int sp_clients_take_session(sp_daemon_t *d, const sp_client_t *self, const uint8_t hash[SP_SHA256_BYTES],
                            sp_session_rec_t *out) {
    long i = sp_sessions_find(&d->detached, hash);
    if (i >= 0) {
        sp_sessions_remove(&d->detached, (size_t)i, out);
        return 0;
    }
    sp_client_t *found = NULL;
    for (sp_conn_t *k = d->net.conns; k; k = k->next) {
        sp_client_t *c = sp_client_of(k);
        bool match = c != self && c->session.state == SP_SESSION_READY &&
                     sp_ct_equal(c->session.token_hash, hash, SP_SHA256_BYTES);
        if (match) found = c; /* no early exit, as sp_sessions_find */
    }
    if (found == NULL) return SP_ENOENT;
    sp_session_detach(&found->session, 0, out);
    found->session.nships = 0; /* its close must end nothing: the session moved */
    found->session.state = SP_SESSION_NEW;
    sp_conn_close(&found->conn, SP_CLOSE_PEER, "session resumed on another connection");
    return 0;
}

/* ---------------------------------------------------------------- checkpoint */

static const char ANNEX_MAGIC[8] = {'S', 'P', 'S', 'E', 'S', 'S', '\0', '\0'};
enum { ANNEX_VERSION = 1, ANNEX_HDR = 8 + 4 + 8 + 4 };

int sp_clients_save_sessions(const sp_daemon_t *d, uint8_t **out, size_t *len) {
    /* The live sessions as records (their deadline is set again at restart). */
    size_t n = d->detached.n, cap = n + (size_t)d->net.nconns;
    sp_session_rec_t *all = malloc((cap ? cap : 1) * sizeof *all);
    if (all == NULL) return SP_ENOMEM;
    if (n) memcpy(all, d->detached.v, n * sizeof *all);
    for (const sp_conn_t *k = d->net.conns; k && n < cap; k = k->next) {
        const sp_client_t *c = sp_client_of((sp_conn_t *)(uintptr_t)k);
        if (c->session.state == SP_SESSION_READY) sp_session_detach(&c->session, 0, &all[n++]);
    }
    size_t total = ANNEX_HDR;
    for (size_t i = 0; i < n; i++) total += sp_session_rec_size(&all[i]);
    uint8_t *buf = malloc(total);
    if (buf == NULL) {
        free(all);
        return SP_ENOMEM;
    }
    uint32_t ver = ANNEX_VERSION, cnt = (uint32_t)n;
    uint64_t next = d->next_session;
    memcpy(buf, ANNEX_MAGIC, 8);
    memcpy(buf + 8, &ver, 4);
    memcpy(buf + 12, &next, 8);
    memcpy(buf + 20, &cnt, 4);
    uint8_t *p = buf + ANNEX_HDR;
    for (size_t i = 0; i < n; i++) p = sp_session_rec_put(p, &all[i]);
    explicit_bzero(all, cap * sizeof *all);
    free(all);
    *out = buf;
    *len = total;
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* What the orphan sweep needs: the saved ids (sorted), the player ships
 * without one, the largest owner seen. */
typedef struct sweep {
    const sp_world_t *w;
    const uint32_t *ids;
    size_t nids;
    uint64_t *orphans;
    size_t norphans, cap;
    uint32_t max_owner;
    int err;
} sweep_t;

static int sweep_fn(void *ctx, sp_entity_id_t id) {
    sweep_t *s = ctx;
    sp_entity_info_t e;
    if (sp_world_inspect(s->w, id, &e) != 0) return 0;
    bool orphan = e.kind == SP_KIND_SHIP && e.owner != 0 &&
                  bsearch(&e.owner, s->ids, s->nids, sizeof *s->ids, cmp_u32) == NULL;
    if (!orphan) {
        if (e.owner > s->max_owner) s->max_owner = e.owner; /* a removed orphan's owner burns no ids */
        return 0;
    }
    if (s->norphans == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint64_t *v = realloc(s->orphans, cap * sizeof *v);
        if (v == NULL) {
            s->err = SP_ENOMEM;
            return 1;
        }
        s->orphans = v;
        s->cap = cap;
    }
    s->orphans[s->norphans++] = id;
    return 0;
}

/* Parse the annex into t (records validated, ids unique) and *next. */
static int parse_annex(const uint8_t *a, size_t len, sp_session_table_t *t, uint64_t *next) {
    *next = 1;
    if (len == 0) return 0;
    uint32_t ver, cnt;
    if (len < ANNEX_HDR || memcmp(a, ANNEX_MAGIC, 8) != 0) return SP_ECORRUPT;
    memcpy(&ver, a + 8, 4);
    memcpy(next, a + 12, 8);
    memcpy(&cnt, a + 20, 4);
    if (ver != ANNEX_VERSION || *next == 0 || *next > (uint64_t)SP_SESSION_ID_MAX + 1) return SP_ECORRUPT;
    if (cnt > (len - ANNEX_HDR) / 39) return SP_ECORRUPT; /* a record is >= 39 bytes: no huge count */
    const uint8_t *p = a + ANNEX_HDR, *end = a + len;
    for (uint32_t i = 0; i < cnt; i++) {
        sp_session_rec_t r;
        if (sp_session_rec_get(&p, end, &r) != 0 || r.id >= *next) return SP_ECORRUPT;
        if (sp_sessions_add(t, &r) != 0) return SP_ENOMEM;
    }
    return p == end ? 0 : SP_ECORRUPT;
}

int sp_clients_restore_sessions(sp_daemon_t *d, const uint8_t *annex, size_t len) {
    sp_session_table_t t = {0};
    uint64_t next;
    int r = parse_annex(annex, len, &t, &next);
    uint32_t *ids = r == 0 ? malloc((t.n ? t.n : 1) * sizeof *ids) : NULL;
    if (r == 0 && ids == NULL) r = SP_ENOMEM;
    for (size_t i = 0; r == 0 && i < t.n; i++) ids[i] = t.v[i].id;
    if (r == 0) qsort(ids, t.n, sizeof *ids, cmp_u32);
    for (size_t i = 1; r == 0 && i < t.n; i++)
        if (ids[i] == ids[i - 1]) r = SP_ECORRUPT;
    sweep_t sw = {.w = d->world, .ids = ids, .nids = t.n};
    if (r == 0) {
        sp_world_foreach(d->world, sweep_fn, &sw);
        r = sw.err;
    }
    if (r != 0) {
        free(sw.orphans);
        free(ids);
        sp_sessions_destroy(&t);
        return r;
    }
    /* Past here nothing fails: the world is changed only once all is read.
     * A cluster daemon keeps them: ships travel between daemons, so an
     * owner this daemon never saw may be another daemon's session. */
    if (d->cluster) sw.norphans = 0;
    for (size_t i = 0; i < sw.norphans; i++) sp_world_destroy(d->world, sw.orphans[i]);
    if (sw.norphans)
        SP_LOGI("checkpoint: %zu player ship(s) of no saved session removed (nobody could command them)",
                sw.norphans);
    uint64_t deadline = sp_now_ns() + (uint64_t)(d->conf.reconnect_grace_secs * 1e9);
    size_t ships = 0;
    for (size_t i = 0; i < t.n; i++) {
        sp_session_rec_t *rec = &t.v[i];
        /* Only ships that exist and are this session's stay on its list. */
        for (int k = 0; k < rec->nships;) {
            sp_entity_info_t e;
            bool ok = sp_world_inspect(d->world, rec->ships[k], &e) == 0 && e.kind == SP_KIND_SHIP &&
                      e.owner == rec->id;
            if (ok) k++;
            else rec->ships[k] = rec->ships[--rec->nships];
        }
        rec->expires_ns = deadline;
        ships += (size_t)rec->nships;
        if (d->conf.reconnect_grace_secs <= 0) sp_session_rec_end(rec, d->world);
    }
    uint64_t after = (uint64_t)sw.max_owner + 1;
    if (ids && t.n && (uint64_t)ids[t.n - 1] + 1 > after) after = (uint64_t)ids[t.n - 1] + 1;
    d->next_session = next > after ? next : after;
    free(sw.orphans);
    free(ids);
    if (d->conf.reconnect_grace_secs <= 0) {
        if (t.n) SP_LOGI("checkpoint: %zu session(s) ended (--reconnect-grace 0): their ships removed", t.n);
        sp_sessions_destroy(&t);
    } else {
        sp_sessions_destroy(&d->detached);
        d->detached = t;
        if (t.n)
            SP_LOGI("checkpoint: %zu session(s) with %zu ship(s) wait %.0f s for a resume", t.n, ships,
                    d->conf.reconnect_grace_secs);
    }
    if (d->next_session > SP_SESSION_ID_MAX) SP_LOGW("checkpoint: session ids exhausted: only resumes will work");
    return 0;
}

size_t sp_clients_broadcast(sp_daemon_t *d, const void *data, size_t len) {
    size_t n = 0;
    sp_conn_t *c = d->net.conns;
    while (c) {
        sp_conn_t *next = c->next; /* a send may close (and unlink) c */
        sp_conn_send(c, data, len);
        n++;
        c = next;
    }
    return n;
}
