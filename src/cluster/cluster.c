/* cluster.c: the NATS side of a spacesimd cluster (see cluster/cluster.h and
 * docs/ARCHITECTURE.md, "Cluster").
 *
 * NATS layout (all created on demand by the first daemon that needs them):
 *   stream SPHO, subjects sp.ho.<node>, file storage, 2 min de-duplication:
 *     the hand-offs to <node>; consumer "node-<node>" (durable, pull,
 *     explicit ack, filter sp.ho.<node>) is how that node receives them.
 *   KV sp_cells:   key c<index> = owner node (decimal); revision = the cell's epoch
 *   KV sp_members: key n<node> = "inc <k> pid <p>", bucket TTL = --cluster-ttl
 *   KV sp_nodes:   key n<node> = incarnation count (CAS-incremented at start)
 *   core subjects sp.ctl.<node>.{status,dump,pause,resume}: spacesim-cells
 *   core subject sp.tick.<node>: the node's tick announcements (the clock;
 *     ARCHITECTURE.md "One clock")
 *
 * The NATS thread (net_main) loops: heartbeat + fencing, ownership poll,
 * control requests, stored departures' numbers to the loop, the clock
 * (repeat our announcement, read the peers', list the members, tell the
 * loop the frontier), the loop's items (strictly in order: an ack, then a
 * publish queued after it, never the other way round; a tick's
 * announcement after that step's hand-offs), then one fetch of hand-offs
 * in. Every call it makes may block (timeouts of 1-2 s while the
 * server is away); none of that reaches the loop.
 *
 * Exactly once. A hand-off (id, epoch e) is departed by the loop before it
 * is queued, published with Msg-Id n<node>.<incarnation>.<id>.<e>
 * (re-published with the same Msg-Id while the answer is ambiguous, so the
 * stream stores it once), imported by the owner (idempotent by epoch) and
 * acked only after the import. Acks go out in runs with one flush, ahead
 * of anything queued after them on the same connection, so the server gets
 * the ack of the message that brought an entity before any later hand-off
 * of it; a flush that fails is only logged (nats.c resends on reconnection),
 * so the ack is not confirmed: ARCHITECTURE.md "What survives" has the
 * two-failure case this leaves (a lost ack, then a restart before the
 * redelivery, could resurrect an entity that moved on). Only a
 * definite failure (no stream answered, a JetStream error) is compensated
 * (the entity re-imported at e + 1), because only then is nothing stored. */
#include "cluster/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/wire.h"
#include "daemon/clock.h"
#include "daemon/log.h"
#include "sim/handoff.h"
#include "spacesim/error.h"
#include "spacesim/spsc.h"

#define STREAM "SPHO"
#define B_CELLS "sp_cells"
#define B_MEMBERS "sp_members"
#define B_NODES "sp_nodes"
#define RING 16384            /* items per ring: bounds what is in transit between the threads */
#define FETCH_BATCH 256       /* hand-offs pulled per request */
#define FETCH_IDLE_MAX_MS 8   /* the longest nap of an idle NATS thread between fetches, ms */
#define POLL_NS 5000000000ull /* ownership re-read in full every 5 s (a watcher brings changes at once) */
#define RETRY_NS 100000000ull /* a transient failure is retried after 100 ms */
#define ACK_WAIT_NS 10000000000ll /* redelivery of an unacked hand-off after 10 s */
#define PUB_BATCH 512         /* hand-offs published at once before waiting for their answers */
#define ANN_NS 100000000ull   /* the last tick announcement is repeated every 100 ms */
/* Longest announcement: "INC TICK" and " D=SEQ" for every node (at most
 * 1 + 4 + 1 + 20 bytes each), so none is ever cut short. */
#define ANN_MAX (48 + SP_WORLD_MAX_NODES * 26)
#define MEMBERS_NS 250000000ull /* the membership bucket is listed every 250 ms */
#define RETRY_IMPORT_MS 1000   /* a hand-off nak'd for a passing failure comes back after 1 s */
#define BACKOFF_TICKS 60        /* a bounced entity stays at its origin this long before it goes again */
#define HOP_BUCKETS 10          /* the hand-off latency histogram, in ticks (see loopstat_t.hop) */
#define JOIN_NS 500000000ull  /* at start, the longest wait to hear every live peer's tick (5 repeats) */

/* ---------------------------------------------------------------- items */

enum {
    /* NATS thread -> loop */
    IT_IMPORT = 1, /* a hand-off in: h, msg */
    IT_OWNER,      /* cell's owner changed: cell, owner (-1 none), rev */
    IT_FENCE,      /* flag: 1 fenced, 0 re-registered */
    IT_CTL,        /* verb, msg (the request; answered by an IT_REPLY) */
    IT_PUBFAIL,    /* a publish failed for sure: compensate h */
    IT_SEEN,       /* a malformed hand-off (acked away) had stream sequence seq */
    IT_FRONTIER,   /* the peers' frontier changed: flag (1 = every live peer announced), rev (their
                    * lowest announced tick), seq (the highest hand-off sequence they announced
                    * for this node), owner (live peers) */
    /* loop -> NATS thread */
    IT_PUBLISH,    /* h to node `to` */
    IT_ACK,        /* msg processed (result in `flag`) */
    IT_REPLY,      /* text to msg's reply subject */
    IT_ANNOUNCE,   /* this node stepped to tick `rev` and queued that step's hand-offs before this */
    /* ghosts (both ways: text/len is the message, `to` its node) */
    IT_GHOSTS,     /* loop -> NATS: a batch of this step's border entities for node `to` */
    IT_GHOSTS_IN,  /* NATS -> loop: a batch from a neighbour */
    IT_HIT,        /* loop -> NATS: a shot's damage or a mine's amount for node `to`'s entity */
    IT_HIT_IN,     /* NATS -> loop: one for an entity here */
};
enum { CTL_STATUS = 1, CTL_DUMP, CTL_PAUSE, CTL_RESUME };

typedef struct item {
    int type;
    int flag;
    int verb;
    uint32_t to;
    uint32_t cell;
    int32_t owner;
    uint64_t rev;
    uint64_t seq; /* IT_IMPORT: the message's stream sequence; IT_FRONTIER: see above */
    uint64_t dep; /* IT_PUBLISH / IT_PUBFAIL: its outbox number (the loop's departure count) */
    natsMsg *msg; /* touched by the NATS thread only: the loop just carries it back */
    char *text;   /* IT_REPLY: malloc'd body */
    size_t len;
    sp_wire_handoff_t h;
    struct item *next; /* the NATS thread's FIFO of pending operations */
} item_t;

/* ---------------------------------------------------------------- state */

typedef struct loopstat {
    uint64_t crossings;   /* hand-offs in applied (the entity arrived) */
    uint64_t dup, stale;  /* hand-offs in answered DUPLICATE / STALE (redeliveries) */
    uint64_t invalid;     /* refused by import (EINVAL ...): acked, logged */
    uint64_t departs;     /* hand-offs out queued */
    uint64_t refused;     /* hand-offs in for a cell not ours: sent back to their origin */
    uint64_t returned;    /* compensations applied here (returns and failed publishes) */
    uint64_t bounced;     /* hand-offs in this world could not take (full, invalid here): sent back */
    uint64_t backoffs;    /* bounced entities that came back here and wait BACKOFF_TICKS */
    uint64_t ghosts_in, ghosts_out; /* ghost records received, sent */
    uint64_t hits_in, hits_out, hits_lost; /* actions across a border applied here, sent, for an entity gone */
    uint64_t ghost_contacts; /* collisions of entities here with ghosts (this side's share applied) */
    uint64_t resumed_in, resumed_out; /* the resume's replay: imported, departed again */
    uint64_t hop[HOP_BUCKETS]; /* crossings by how many ticks after its sender's step they were imported:
                                * 0, 1, ..., HOP_BUCKETS - 2, and more (the last) */
    uint64_t retried;     /* hand-offs in that failed for a passing cause (memory) or could not be
                           * sent back: nak'd, redelivered by the server after RETRY_IMPORT_MS */
    uint64_t homeless;    /* last scan: entities in cells with no owner (kept) */
    uint64_t late;        /* hand-offs in stamped with a tick this world had passed (imported at once:
                           * only after a restart, a cell move or a paused audit; see the header) */
    uint64_t fwaits;      /* steps that waited for the frontier */
    uint64_t fwait_ns, fwait_max_ns; /* wall time those waits lasted (sum, longest) */
} loopstat_t;

/* A departure not yet known to be stored by the stream: what a checkpoint
 * must keep (the entity is in no world, and maybe in no message). */
typedef struct outent {
    uint64_t dep;         /* its number: every departure gets the next one, in order */
    uint64_t floor;       /* the loop's recv_seq when it departed: any stream sequence this
                           * hand-off gets is higher (it is published after the loop saw that one) */
    bool done;            /* stored (confirms ring) or compensated (IT_PUBFAIL) */
    sp_wire_handoff_t h;
} outent_t;

/* One peer's newest announcement, as the NATS thread keeps it. */
typedef struct peer {
    uint64_t inc;  /* 0 = never heard */
    uint64_t tick; /* the tick it announced it stepped to */
    uint64_t seq;  /* the last stream sequence of a hand-off it published to this node */
    bool live;     /* a key in the membership bucket at the last poll */
} peer_t;

struct sp_cluster {
    sp_cluster_conf_t conf;
    char url[512];
    uint64_t inc;
    uint32_t ncells;

    /* NATS handles: the NATS thread's once it runs (main thread before). */
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv_cells, *kv_members;
    kvWatcher *cells_w; /* every change of sp_cells, pushed by the server (net_watch_cells) */
    natsSubscription *pull, *ctl;
    int32_t *net_owner; /* the NATS thread's view of the ownership */
    uint64_t *net_rev;

    /* Rings: to_loop (producer NATS thread, consumer loop), to_net
     * (producer loop, consumer NATS thread). */
    sp_spsc_t to_loop, to_net;
    uv_async_t wake;
    bool wake_open;
    pthread_t thread;
    bool thread_started;
    /* Set by the loop at shutdown, read by the NATS thread at each turn.
     * Relaxed is enough: it carries no data, and pthread_join orders the
     * rest. */
    _Atomic int stop;

    /* Loop side. */
    sp_world_t *world;
    /* Ghosts (see "ghosts" below): per neighbour node, its latest batch,
     * records sorted by id. */
    struct gmap *ghosts[SP_WORLD_MAX_NODES]; /* received, per neighbour: id -> its newest record */
    struct gmap *gsent[SP_WORLD_MAX_NODES];  /* sent, per neighbour: what it believes (dead reckoning) */
    uint32_t gmark;                          /* the scan's number (gent_t.mark) */
    sp_remote_body_t *gbody;                 /* ghosts_collide's scratch */
    size_t gbody_cap;
    float band;                 /* border band width, world units (0: no ghosts) */
    char *gbuf[SP_WORLD_MAX_NODES]; /* batches being built this step, per node (malloc'd) */
    size_t glen[SP_WORLD_MAX_NODES], gcap[SP_WORLD_MAX_NODES];
    int32_t *owner; /* the loop's view: changed only by IT_OWNER items, in order */
    uint64_t *rev;
    bool fenced, paused;
    item_t **held; /* imports that arrived while fenced: applied after */
    size_t nheld, capheld;
    sp_entity_id_t *leavers;
    size_t nleavers, capleavers;
    loopstat_t ls;
    /* The frontier (IT_FRONTIER, in ring order with the imports). */
    bool fr_all;        /* every live peer has announced */
    uint64_t fr_tick;   /* the lowest tick they announced (UINT64_MAX: no live peer) */
    uint64_t fr_seq;    /* what recv_seq must reach before stepping */
    uint32_t fr_peers;  /* live peers */
    uint64_t recv_seq;  /* highest stream sequence of a hand-off popped here (applied or early) */
    item_t **early;     /* hand-offs stamped with a tick the world has not reached: imported then */
    size_t nearly, capearly;
    uint64_t wait_since; /* sp_now_ns() when the step began to wait for the frontier, 0 = not waiting */
    uint64_t pause_at;  /* conf.pause_at */
    uint64_t join_tick; /* the tick to start from (join_tick), set by sp_cluster_open */
    uint64_t refuse_left; /* conf.test_refuse, counted down */
    uint32_t *tally[2];   /* the demo's draws per cell: asteroids, NPCs (sp_cluster_tally) */
    /* Bounced entities back here, not handed off again before `until`
     * (a tick): without it one whose target stays full would cross back
     * and forth every tick or two, storing a message each time. */
    struct backoff {
        sp_entity_id_t id;
        uint64_t until;
    } *bo;
    size_t nbo, capbo;
    int tally_on;         /* which one sp_cluster_region counts into, -1 none */
    /* The outbox (loop): departures in number order, from ob[ob_head]; the
     * confirms ring (NATS thread -> loop) carries the numbers of the stored
     * ones. See sp_cluster_checkpoint_annex. */
    outent_t *ob;
    size_t ob_head, ob_n, ob_cap;
    uint64_t next_dep;
    sp_spsc_t confirms;
    bool confirms_open;
    sp_log_ratelimit_t refuse_rl; /* the warning of a refused hand-off in: once a second */
    bool ann_owed;      /* the last step's announcement found no room in to_net: sent next */
    bool scan_owed;     /* the last step's leavers did not all go: sp_cluster_apply tries again */
    void (*ready_cb)(void *ctx);
    void *ready_ctx;

    /* NATS-thread side. */
    item_t *stash;            /* popped from the network, not yet pushed into to_loop */
    item_t *oq_head, *oq_tail; /* pending operations, in the loop's order */
    size_t oq_n;
    uint64_t inflight;        /* hand-offs fetched and not acked yet */
    uint64_t published, pubdup, pubretry, pubfail, acked, bad;
    bool net_fenced;
    uint64_t hb_ok_ns;        /* send time of the last heartbeat the server confirmed */
    uint64_t next_hb_ns, next_poll_ns, retry_at_ns;
    uint64_t warn_ns;
    unsigned idle_ms;         /* the next idle nap, 1..FETCH_IDLE_MAX_MS */
    /* The batch of asynchronous publishes in flight (net_publish_batch):
     * its generation and one answer per slot, written by nats.c's thread. */
    _Atomic uint64_t pub_gen;
    _Atomic int pub_res[PUB_BATCH];

    /* The clock, NATS-thread side. last_to[d]: stream sequence of the last
     * hand-off this incarnation published to node d (from the publish
     * answers). peers[n]: node n's newest announcement. */
    natsSubscription *tick_sub;
    natsSubscription *gh_sub, *hit_sub; /* sp.gh.<node>, sp.hit.<node>: ghosts and hits in (core NATS) */
    uint64_t *last_to;
    uint64_t *ann_to;        /* last_to when ann_tick was announced (what its repeats carry) */
    peer_t *peers;
    uint64_t ann_tick;       /* the tick this node last announced */
    bool ann_any;            /* announced at least once */
    uint64_t next_ann_ns, next_members_ns;
    bool fr_sent, fr_sent_all;
    uint64_t fr_sent_tick, fr_sent_seq;
    uint32_t fr_sent_peers;
    _Atomic uint64_t pub_seq[PUB_BATCH]; /* the stream sequence of each answered publish */
    uint64_t *conf_pend;      /* stored departures' numbers the confirms ring had no room for */
    /* Tests (--cluster-test-hold-at): set by the loop, read here. Relaxed
     * both ways: a lone flag that only stops publishing; nothing is handed
     * over through it, and a late look costs one more batch at most. */
    _Atomic int hold_pub;
    size_t nconf_pend, capconf_pend;

    int journal_fd; /* -1 = none; O_APPEND: lines from both threads stay whole */
};

/* ---------------------------------------------------------------- small helpers */

static void journal(sp_cluster_t *c, char what, sp_entity_id_t id, uint64_t epoch) {
    if (c->journal_fd < 0) return;
    char line[64];
    int n = snprintf(line, sizeof line, "%c %" PRIu64 " %" PRIu64 "\n", what, id, epoch);
    /* One write(2) per line, O_APPEND: atomic against the other thread's
     * lines, and in the page cache (so in the file) before the ack or the
     * publish that follows it, even if the process is then killed. */
    if (write(c->journal_fd, line, (size_t)n) != n) SP_LOGW("cluster: journal write failed: %s", strerror(errno));
}

static item_t *item_new(int type) {
    item_t *it = calloc(1, sizeof *it);
    if (it) it->type = type;
    return it;
}

static const char *st_text(natsStatus s) { return natsStatus_GetText(s); }

/* A status that says the server may have done it, or may do it: retry. */
static bool transient(natsStatus s) {
    return s == NATS_TIMEOUT || s == NATS_CONNECTION_DISCONNECTED || s == NATS_NO_SERVER || s == NATS_IO_ERROR ||
           s == NATS_CONNECTION_CLOSED || s == NATS_STALE_CONNECTION || s == NATS_SLOW_CONSUMER;
}

static void net_warn(sp_cluster_t *c, const char *what, natsStatus s, int jerr) {
    uint64_t now = sp_now_ns();
    if (now - c->warn_ns < 2000000000ull) return; /* at most one line per 2 s: an outage is one story */
    c->warn_ns = now;
    SP_LOGW("cluster: %s: %s (JetStream error %d)", what, st_text(s), jerr);
}

/* ---------------------------------------------------------------- start-up */

static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);

static natsStatus bucket(jsCtx *js, const char *name, int64_t ttl_ns, kvStore **out) {
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = name;
    kc.History = 1;
    kc.TTL = ttl_ns;
    kc.StorageType = js_FileStorage;
    natsStatus s = js_CreateKeyValue(out, js, &kc);
    /* Made by another daemon (perhaps with another TTL): bind to it. */
    if (s != NATS_OK) s = js_KeyValue(out, js, name);
    return s;
}

static natsStatus setup_stream(sp_cluster_t *c) {
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {"sp.ho.*"};
    sc.Name = STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = 120ll * 1000000000ll; /* the de-duplication window: 2 min, as the default */
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(NULL, c->js, &sc, NULL, &jerr);
    if (s != NATS_OK) { /* already there (maybe another config): use it */
        jsStreamInfo *si = NULL;
        s = js_GetStreamInfo(&si, c->js, STREAM, NULL, &jerr);
        jsStreamInfo_Destroy(si);
    }
    if (s != NATS_OK) return s;
    char durable[32], filter[32];
    snprintf(durable, sizeof durable, "node-%u", c->conf.node);
    snprintf(filter, sizeof filter, "sp.ho.%u", c->conf.node);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.FilterSubject = filter;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = ACK_WAIT_NS;
    cc.MaxAckPending = RING;
    cc.MaxDeliver = -1;
    s = js_AddConsumer(NULL, c->js, STREAM, &cc, NULL, &jerr);
    if (s != NATS_OK) {
        jsConsumerInfo *ci = NULL;
        s = js_GetConsumerInfo(&ci, c->js, STREAM, durable, NULL, &jerr);
        jsConsumerInfo_Destroy(ci);
    }
    if (s != NATS_OK) return s;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM;
    so.Consumer = durable;
    return js_PullSubscribe(&c->pull, c->js, filter, durable, NULL, &so, &jerr);
}

/* The next incarnation of this node: CAS-increment sp_nodes/n<node>. */
static void net_heard(sp_cluster_t *c, natsMsg *m);

/* The tick this process starts from (sp_cluster_join_tick): the highest
 * one a live peer announces. Peers repeat their announcement every ANN_NS,
 * paused or not, so waiting up to JOIN_NS hears each; one not heard by then
 * (a member whose key has not lapsed yet after a kill) is left out. Without
 * this a daemon that joins or restarts would start from tick 0 and hold its
 * peers back for as many ticks as the cluster is old (the frontier waits
 * for the lowest tick). Main thread, before the NATS thread exists. */
/* Which peers are members now: peers[n].live for every key n<node> of the
 * membership bucket but this node's own. On a failure the last list
 * stays. One request (main thread at start, then the NATS thread). */
static natsStatus list_members(sp_cluster_t *c) {
    kvKeysList kl = {0};
    natsStatus s = kvStore_Keys(&kl, c->kv_members, NULL);
    if (s == NATS_NOT_FOUND) s = NATS_OK; /* no key at all: nobody */
    if (s == NATS_OK) {
        for (uint32_t n = 0; n < SP_WORLD_MAX_NODES; n++) c->peers[n].live = false;
        for (int k = 0; k < kl.Count; k++) {
            const char *key = kl.Keys[k];
            char *end;
            unsigned long n = key[0] == 'n' ? strtoul(key + 1, &end, 10) : SP_WORLD_MAX_NODES;
            if (n < SP_WORLD_MAX_NODES && *end == '\0' && n != c->conf.node) c->peers[n].live = true;
        }
    }
    kvKeysList_Destroy(&kl);
    return s;
}

static natsStatus join_tick(sp_cluster_t *c) {
    natsStatus s = list_members(c);
    if (s != NATS_OK) return s;
    uint64_t end_ns = sp_now_ns() + JOIN_NS;
    for (;;) {
        bool all = true;
        for (uint32_t n = 0; n < SP_WORLD_MAX_NODES; n++)
            if (c->peers[n].live && c->peers[n].inc == 0) all = false;
        uint64_t now = sp_now_ns();
        if (all || now >= end_ns) break;
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, c->tick_sub, (int64_t)((end_ns - now) / 1000000u) + 1) == NATS_OK) {
            net_heard(c, m);
            natsMsg_Destroy(m);
        }
    }
    for (uint32_t n = 0; n < SP_WORLD_MAX_NODES; n++)
        if (c->peers[n].live && c->peers[n].inc != 0 && c->peers[n].tick > c->join_tick) c->join_tick = c->peers[n].tick;
    return NATS_OK;
}

static natsStatus take_incarnation(sp_cluster_t *c, kvStore *kv) {
    char key[32];
    snprintf(key, sizeof key, "n%u", c->conf.node);
    for (int attempt = 0; attempt < 100; attempt++) {
        kvEntry *e = NULL;
        natsStatus s = kvStore_Get(&e, kv, key);
        uint64_t count = 0, rev = 0;
        if (s == NATS_OK) {
            char buf[32] = {0};
            int n = kvEntry_ValueLen(e);
            memcpy(buf, kvEntry_Value(e), n < 31 ? (size_t)n : 31);
            count = strtoull(buf, NULL, 10);
            rev = kvEntry_Revision(e);
            kvEntry_Destroy(e);
        } else if (s != NATS_NOT_FOUND) {
            return s;
        }
        char val[32];
        int vl = snprintf(val, sizeof val, "%" PRIu64, count + 1);
        uint64_t nrev;
        s = rev ? kvStore_Update(&nrev, kv, key, val, vl, rev) : kvStore_Create(&nrev, kv, key, val, vl);
        if (s == NATS_OK) {
            c->inc = count + 1;
            return NATS_OK;
        }
        /* Another process of this node raced us: read again. */
    }
    return NATS_ERR;
}

static natsStatus heartbeat(sp_cluster_t *c) {
    char key[32], val[64];
    snprintf(key, sizeof key, "n%u", c->conf.node);
    int vl = snprintf(val, sizeof val, "inc %" PRIu64 " pid %ld", c->inc, (long)getpid());
    uint64_t rev;
    return kvStore_Put(&rev, c->kv_members, key, val, vl);
}

/* The owner node an ownership entry names, or -1 (not a node number). */
static int32_t entry_owner(kvEntry *e) {
    char buf[32] = {0}, *end;
    int n = kvEntry_ValueLen(e);
    memcpy(buf, kvEntry_Value(e), n < 31 ? (size_t)n : 31);
    long v = strtol(buf, &end, 10);
    return (end != buf && v >= 0 && v < (long)SP_WORLD_MAX_NODES) ? (int32_t)v : -1;
}

/* Read cell i's owner from the bucket into (*owner, *rev). */
static natsStatus read_cell(sp_cluster_t *c, uint32_t i, int32_t *owner, uint64_t *rev) {
    char key[32];
    snprintf(key, sizeof key, "c%u", i);
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, c->kv_cells, key);
    if (s == NATS_NOT_FOUND) {
        *owner = -1;
        *rev = 0;
        return NATS_OK;
    }
    if (s != NATS_OK) return s;
    *owner = entry_owner(e);
    *rev = kvEntry_Revision(e);
    kvEntry_Destroy(e);
    return NATS_OK;
}

int sp_cluster_open(const sp_cluster_conf_t *conf, sp_cluster_t **out) {
    sp_cluster_t *c = calloc(1, sizeof *c);
    if (c == NULL) return SP_ENOMEM;
    c->conf = *conf;
    snprintf(c->url, sizeof c->url, "%s", conf->url);
    c->conf.url = c->url;
    c->journal_fd = -1;
    c->ncells = sp_cells_count(&conf->cells);
    c->net_owner = malloc(c->ncells * sizeof *c->net_owner);
    c->net_rev = calloc(c->ncells, sizeof *c->net_rev);
    c->owner = malloc(c->ncells * sizeof *c->owner);
    c->rev = calloc(c->ncells, sizeof *c->rev);
    c->last_to = calloc(SP_WORLD_MAX_NODES, sizeof *c->last_to);
    c->ann_to = calloc(SP_WORLD_MAX_NODES, sizeof *c->ann_to);
    c->peers = calloc(SP_WORLD_MAX_NODES, sizeof *c->peers);
    c->pause_at = conf->pause_at;
    c->refuse_left = conf->test_refuse;
    c->tally_on = -1;
    c->refuse_rl.interval_ms = 1000;
    c->paused = conf->start_paused != 0;
    c->fr_tick = UINT64_MAX; /* no peer known yet: the first membership read says */
    c->fr_all = false; /* closed until the NATS thread's first frontier (it lists the members first) */
    c->next_dep = 1; /* 0 is not an item of the confirms ring (its items are non-NULL pointers) */
    if (!c->net_owner || !c->net_rev || !c->owner || !c->rev || !c->last_to || !c->ann_to || !c->peers || sp_spsc_init(&c->to_loop, RING, NULL) != 0 ||
        sp_spsc_init(&c->to_net, RING, NULL) != 0 || sp_spsc_init(&c->confirms, 2 * RING, NULL) != 0) {
        sp_cluster_free(c);
        return SP_ENOMEM;
    }
    if (conf->journal) {
        c->journal_fd = open(conf->journal, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (c->journal_fd < 0) {
            SP_LOGE("cluster: cannot open the journal %s: %s", conf->journal, strerror(errno));
            sp_cluster_free(c);
            return SP_EIO;
        }
    }
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    char name[64];
    snprintf(name, sizeof name, "spacesimd-node-%u", conf->node);
    if (s == NATS_OK) s = natsOptions_SetURL(o, c->url);
    if (s == NATS_OK) s = natsOptions_SetName(o, name);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1); /* forever: a server restart is routine */
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 200);
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(o, 8 * 1024 * 1024);
    if (s == NATS_OK) s = natsConnection_Connect(&c->nc, o);
    natsOptions_Destroy(o);
    const char *step = "connect";
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000; /* ms: JetStream API calls and publishes */
    jo.PublishAsync.MaxPending = PUB_BATCH;
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = c;
    if (s == NATS_OK && (step = "JetStream", s = natsConnection_JetStream(&c->js, c->nc, &jo)) == NATS_OK &&
        (step = "the hand-off stream", s = setup_stream(c)) == NATS_OK) {
        kvStore *kv_nodes = NULL;
        step = "the KV buckets";
        s = bucket(c->js, B_CELLS, 0, &c->kv_cells);
        if (s == NATS_OK) s = bucket(c->js, B_MEMBERS, (int64_t)(conf->ttl_secs * 1e9), &c->kv_members);
        if (s == NATS_OK) s = bucket(c->js, B_NODES, 0, &kv_nodes);
        if (s == NATS_OK && (step = "the incarnation", s = take_incarnation(c, kv_nodes)) == NATS_OK) {
            step = "membership";
            uint64_t t = sp_now_ns();
            s = heartbeat(c);
            c->hb_ok_ns = t;
        }
        kvStore_Destroy(kv_nodes);
    }
    if (s == NATS_OK) {
        step = "cell ownership";
        uint32_t claimed = 0;
        for (uint32_t i = 0; i < c->ncells && s == NATS_OK; i++) {
            char key[32], val[16];
            snprintf(key, sizeof key, "c%u", i);
            int vl = snprintf(val, sizeof val, "%u", conf->node);
            uint64_t rev;
            /* Create fails if the key exists: the CAS that gives a cell to
             * exactly one of the daemons starting at once. */
            if (kvStore_Create(&rev, c->kv_cells, key, val, vl) == NATS_OK) claimed++;
            s = read_cell(c, i, &c->net_owner[i], &c->net_rev[i]);
        }
        memcpy(c->owner, c->net_owner, c->ncells * sizeof *c->owner);
        memcpy(c->rev, c->net_rev, c->ncells * sizeof *c->rev);
        uint32_t mine = 0;
        for (uint32_t i = 0; i < c->ncells; i++) mine += c->owner[i] == (int32_t)conf->node;
        if (s == NATS_OK)
            SP_LOGI("cluster: node %u incarnation %" PRIu64 " on %s: %ux%u cells, %u ours (%u claimed now), "
                    "membership TTL %.1f s",
                    conf->node, c->inc, c->url, conf->cells.nx, conf->cells.ny, mine, claimed, conf->ttl_secs);
    }
    if (s == NATS_OK) {
        char subj[64];
        snprintf(subj, sizeof subj, "sp.ctl.%u.*", conf->node);
        step = "the control subject";
        s = natsConnection_SubscribeSync(&c->ctl, c->nc, subj);
        if (s == NATS_OK) {
            step = "the tick subject";
            s = natsConnection_SubscribeSync(&c->tick_sub, c->nc, "sp.tick.*");
        }
        if (s == NATS_OK) {
            step = "the ghost subjects";
            snprintf(subj, sizeof subj, "sp.gh.%u", conf->node);
            s = natsConnection_SubscribeSync(&c->gh_sub, c->nc, subj);
            if (s == NATS_OK) {
                snprintf(subj, sizeof subj, "sp.hit.%u", conf->node);
                s = natsConnection_SubscribeSync(&c->hit_sub, c->nc, subj);
            }
            /* Ghost batches are many and big: no limit on their backlog (a slow
             * loop drops the old ones, judged by tick). */
            if (s == NATS_OK) natsSubscription_SetPendingLimits(c->gh_sub, -1, -1);
        }
        if (s == NATS_OK) {
            step = "the ownership watcher";
            s = kvStore_WatchAll(&c->cells_w, c->kv_cells, NULL);
        }
    }
    if (s == NATS_OK) {
        /* Hand-offs to this node that an earlier incarnation acked count as
         * received: a peer's announcement may cover them, and they will
         * never be delivered again. */
        char durable[32];
        snprintf(durable, sizeof durable, "node-%u", conf->node);
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        step = "the hand-off consumer's position";
        s = js_GetConsumerInfo(&ci, c->js, STREAM, durable, NULL, &jerr);
        /* Delivered, not the ack floor: an earlier incarnation may have
         * acked messages above the floor (they never come again), and
         * everything up to Delivered that it did not ack is delivered
         * again (imported late). From the floor, a peer's announced
         * sequence could stay out of reach forever. */
        if (s == NATS_OK) c->recv_seq = ci->Delivered.Stream;
        jsConsumerInfo_Destroy(ci);
    }
    if (s == NATS_OK) {
        step = "the cluster's tick";
        s = join_tick(c);
    }
    if (s != NATS_OK) {
        SP_LOGE("cluster: %s at %s failed: %s", step, c->url, st_text(s));
        sp_cluster_free(c);
        return SP_EIO;
    }
    c->next_hb_ns = sp_now_ns();
    c->idle_ms = 1;
    *out = c;
    return 0;
}

uint64_t sp_cluster_incarnation(const sp_cluster_t *c) { return c->inc; }

uint64_t sp_cluster_join_tick(const sp_cluster_t *c) { return c->join_tick; }

int sp_cluster_region(void *ctx, float x, float y) {
    sp_cluster_t *c = ctx;
    uint32_t cell = sp_cells_of(&c->conf.cells, x, y);
    if (c->tally_on >= 0 && c->tally[c->tally_on] != NULL) c->tally[c->tally_on][cell]++;
    return c->owner[cell] == (int32_t)c->conf.node;
}

void sp_cluster_tally(sp_cluster_t *c, int what) {
    c->tally_on = what == 0 || what == 1 ? what : -1;
    if (c->tally_on >= 0 && c->tally[what] == NULL) c->tally[what] = calloc(c->ncells, sizeof *c->tally[what]);
}

int sp_cluster_demo_share(const sp_cluster_t *c, uint64_t *asteroids, uint64_t *npcs) {
    if (c->tally[0] == NULL || c->tally[1] == NULL) return SP_ENOENT;
    *asteroids = *npcs = 0;
    for (uint32_t i = 0; i < c->ncells; i++)
        if (c->owner[i] == (int32_t)c->conf.node) {
            *asteroids += c->tally[0][i];
            *npcs += c->tally[1][i];
        }
    return 0;
}

uint32_t sp_cluster_cells_owned(const sp_cluster_t *c, uint32_t *ncells) {
    uint32_t mine = 0;
    for (uint32_t i = 0; i < c->ncells; i++) mine += c->owner[i] == (int32_t)c->conf.node;
    *ncells = c->ncells;
    return mine;
}

int sp_cluster_spawn_test_ships(sp_cluster_t *c, sp_world_t *w, uint32_t n, uint64_t seed) {
    const sp_world_def_t *d = sp_world_def(w);
    float h = d->half_extent;
    uint32_t per_axis = (uint32_t)floorf((2.0f * h - 10.0f) / 5.0f) + 1; /* lanes 5 apart, 5 from the walls */
    uint32_t layers = (uint32_t)floorf((h - 5.0f) / 5.0f);               /* z layers per direction */
    uint64_t r = seed ? seed : 1;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t j = k / 2, dir = k % 2; /* even k fly along x, odd along y, on disjoint z layers */
        if (j / per_axis >= layers) {
            SP_LOGE("cluster: %u test ships do not fit on the lanes of a world of half extent %.0f", n, (double)h);
            return SP_ELIMIT;
        }
        float lane = -h + 5.0f + 5.0f * (float)(j % per_axis);
        float z = (dir == 0 ? -1.0f : 1.0f) * (5.0f + 5.0f * (float)(j / per_axis));
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        float along = -h + 5.0f + (float)(r % (uint64_t)(2.0f * h - 10.0f));
        float speed = (100.0f + (float)((r >> 20) % 100)) * (((r >> 40) & 1) ? 1.0f : -1.0f);
        float p[3] = {dir == 0 ? along : lane, dir == 0 ? lane : along, z};
        float v[3] = {dir == 0 ? speed : 0.0f, dir == 0 ? 0.0f : speed, 0.0f};
        sp_entity_id_t id;
        int rc = sp_world_spawn_ship(w, 1 + k % 7, 0, p, &id);
        if (rc == 0) rc = sp_world_set_velocity(w, id, v);
        if (rc != 0) return rc;
        journal(c, 'S', id, 0);
    }
    return 0;
}

/* ---------------------------------------------------------------- the NATS thread */

static void oq_push(sp_cluster_t *c, item_t *it) {
    it->next = NULL;
    if (c->oq_tail) c->oq_tail->next = it;
    else c->oq_head = it;
    c->oq_tail = it;
    c->oq_n++;
}

/* Unlink the head, whose `next` the caller read before the item was
 * freed or handed on. */
static void oq_unlink(sp_cluster_t *c, item_t *next) {
    c->oq_head = next;
    if (next == NULL) c->oq_tail = NULL;
    c->oq_n--;
}

/* Hand an item to the loop. false when the ring is full (the caller keeps it). */
static bool to_loop(sp_cluster_t *c, item_t *it) {
    if (sp_spsc_try_push(&c->to_loop, it) != 0) return false;
    uv_async_send(&c->wake);
    return true;
}

/* Push the stash (an item the ring had no room for). true when empty. */
static bool flush_stash(sp_cluster_t *c) {
    if (c->stash && to_loop(c, c->stash)) c->stash = NULL;
    return c->stash == NULL;
}

static void push_or_stash(sp_cluster_t *c, item_t *it) {
    /* Only one item can wait: callers check flush_stash() first. */
    if (!to_loop(c, it)) c->stash = it;
}

static void net_heartbeat(sp_cluster_t *c, uint64_t now) {
    if (now >= c->next_hb_ns) {
        uint64_t t = sp_now_ns();
        natsStatus s = heartbeat(c);
        c->next_hb_ns = t + (uint64_t)(c->conf.ttl_secs * 1e9 / 5);
        if (s == NATS_OK) {
            c->hb_ok_ns = t; /* the send time: the server's expiry is later than t + ttl */
            if (c->net_fenced && flush_stash(c)) {
                /* Re-registered: re-read every cell first (the operator may
                 * have moved some meanwhile), then unfence, in that order
                 * in the ring. */
                c->next_poll_ns = 0;
                return;
            }
        } else {
            net_warn(c, "membership heartbeat", s, 0);
        }
    }
    uint64_t lapse = (uint64_t)(c->conf.ttl_secs * 0.8 * 1e9);
    now = sp_now_ns(); /* after the heartbeat's own wait */
    if (!c->net_fenced && now > c->hb_ok_ns + lapse && flush_stash(c)) {
        item_t *it = item_new(IT_FENCE);
        if (it == NULL) return;
        it->flag = 1;
        push_or_stash(c, it);
        c->net_fenced = true;
        SP_LOGW("cluster: membership not refreshed for %.1f s (TTL %.1f s): fenced, this daemon stops writing "
                "(no hand-off, no step) until it re-registers",
                (double)(now - c->hb_ok_ns) / 1e9, c->conf.ttl_secs);
    }
}

/* Cell i's ownership changed to (o, r): tell the loop (IT_OWNER) and keep
 * it as the NATS thread's view. false when there was no item to send
 * (memory): the view stays, so the next poll tries again. After
 * flush_stash() said there is room. */
static bool net_tell_owner(sp_cluster_t *c, uint32_t i, int32_t o, uint64_t r) {
    item_t *it = item_new(IT_OWNER);
    if (it == NULL) return false;
    it->cell = i;
    it->owner = o;
    it->rev = r;
    push_or_stash(c, it);
    SP_LOGI("cluster: cell %u owner %d -> %d (revision %" PRIu64 ")", i, (int)c->net_owner[i], (int)o, r);
    c->net_owner[i] = o;
    c->net_rev[i] = r;
    return true;
}

static void net_poll_cells(sp_cluster_t *c, uint64_t now) {
    if (now < c->next_poll_ns) return;
    c->next_poll_ns = now + POLL_NS;
    for (uint32_t i = 0; i < c->ncells; i++) {
        int32_t o;
        uint64_t r;
        natsStatus s = read_cell(c, i, &o, &r);
        if (s != NATS_OK) {
            net_warn(c, "reading cell ownership", s, 0);
            return; /* try again at the next poll; fencing unchanged */
        }
        if (o == c->net_owner[i] && r == c->net_rev[i]) continue;
        if (!flush_stash(c) || !net_tell_owner(c, i, o, r)) return;
    }
    if (c->net_fenced && sp_now_ns() < c->hb_ok_ns + (uint64_t)(c->conf.ttl_secs * 0.8 * 1e9) && flush_stash(c)) {
        item_t *it = item_new(IT_FENCE);
        if (it == NULL) return;
        it->flag = 0;
        push_or_stash(c, it);
        c->net_fenced = false;
        SP_LOGI("cluster: membership refreshed and ownership re-read: unfenced");
    }
}

/* Cell ownership as it changes: the watcher's entries, without a request
 * per cell (the full poll above, one KV get per cell, now runs every 5 s as
 * a safety net and before an unfence). An entry older than what is known
 * (the poll may have read it first) changes nothing. Never waits more than
 * 1 ms (nats.c refuses a timeout of 0). */
static void net_watch_cells(sp_cluster_t *c) {
    if (c->cells_w == NULL) return;
    for (int k = 0; k < 64 && flush_stash(c); k++) {
        kvEntry *e = NULL;
        if (kvWatcher_Next(&e, c->cells_w, 1) != NATS_OK) return; /* a timeout: nothing new */
        if (e == NULL) continue; /* the initial values are all in */
        const char *key = kvEntry_Key(e);
        char *end;
        unsigned long i = key[0] == 'c' ? strtoul(key + 1, &end, 10) : c->ncells;
        if (i < c->ncells && *end == '\0' && kvEntry_Revision(e) > c->net_rev[i])
            net_tell_owner(c, (uint32_t)i, kvEntry_Operation(e) == kvOp_Put ? entry_owner(e) : -1,
                           kvEntry_Revision(e));
        kvEntry_Destroy(e);
    }
}

static void net_control(sp_cluster_t *c) {
    for (int k = 0; k < 16 && flush_stash(c); k++) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, c->ctl, 0) != NATS_OK) return;
        const char *subj = natsMsg_GetSubject(m);
        const char *verb = strrchr(subj, '.');
        verb = verb ? verb + 1 : "";
        int v = strcmp(verb, "status") == 0   ? CTL_STATUS
                : strcmp(verb, "dump") == 0   ? CTL_DUMP
                : strcmp(verb, "pause") == 0  ? CTL_PAUSE
                : strcmp(verb, "resume") == 0 ? CTL_RESUME
                                              : 0;
        item_t *it = v && natsMsg_GetReply(m) ? item_new(IT_CTL) : NULL;
        if (it == NULL) {
            natsMsg_Destroy(m);
            continue;
        }
        it->verb = v;
        it->msg = m;
        push_or_stash(c, it);
    }
}

/* Announce (core NATS, sp.tick.<node>): "INC TICK" then " D=SEQ" for
 * every node D this incarnation handed something to, SEQ the stream
 * sequence of the last of them. Sent when the loop's IT_ANNOUNCE is
 * reached (so after every hand-off of that step was stored) and again
 * every ANN_NS: a lost, late or duplicate announcement is harmless, since
 * receivers keep the newest per (node, incarnation). */
static void net_announce(sp_cluster_t *c) {
    if (!c->ann_any) return;
    char buf[ANN_MAX];
    size_t n = (size_t)snprintf(buf, sizeof buf, "%" PRIu64 " %" PRIu64, c->inc, c->ann_tick);
    for (uint32_t d = 0; d < SP_WORLD_MAX_NODES; d++)
        if (c->ann_to[d]) n += (size_t)snprintf(buf + n, sizeof buf - n, " %u=%" PRIu64, d, c->ann_to[d]);
    char subj[32];
    snprintf(subj, sizeof subj, "sp.tick.%u", c->conf.node);
    natsStatus s = natsConnection_Publish(c->nc, subj, buf, (int)n);
    if (s != NATS_OK) net_warn(c, "tick announcement (sent again shortly)", s, 0);
    c->next_ann_ns = sp_now_ns() + ANN_NS;
}

/* A control reply (IT_REPLY) or an announcement: send it and free the item. */
static void net_do(sp_cluster_t *c, item_t *it) {
    if (it->type == IT_ANNOUNCE) {
        c->ann_tick = it->rev;
        c->ann_any = true;
        /* What this tick's announcement covers, repeated as it is: the live
         * last_to grows with the next step's hand-offs, which a receiver
         * still at this tick must not wait for (they wait in its `early`,
         * unacked, against the consumer's limit). */
        memcpy(c->ann_to, c->last_to, SP_WORLD_MAX_NODES * sizeof *c->ann_to);
        free(it);
        net_announce(c);
        return;
    }
    if (it->type == IT_REPLY) {
        /* Queued after everything the loop did before answering, so the
         * figures in a status reply count every earlier publish and ack as
         * done (what an audit needs to know the system is quiet). */
        char head[256];
        int hl = snprintf(head, sizeof head,
                          "net inc %" PRIu64 " outq %zu inflight %" PRIu64 " published %" PRIu64 " pubdup %" PRIu64
                          " pubretry %" PRIu64 " pubfail %" PRIu64 " acked %" PRIu64 " bad %" PRIu64 "\n",
                          c->inc, c->oq_n - 1, c->inflight, c->published, c->pubdup, c->pubretry, c->pubfail,
                          c->acked, c->bad);
        size_t n = (size_t)hl + it->len;
        char *body = malloc(n);
        if (body) {
            memcpy(body, head, (size_t)hl);
            memcpy(body + hl, it->text, it->len);
            natsStatus s = natsConnection_Publish(c->nc, natsMsg_GetReply(it->msg), body, (int)n);
            if (s != NATS_OK) net_warn(c, "control reply", s, 0);
        }
        free(body);
        free(it->text);
        natsMsg_Destroy(it->msg);
        free(it);
    }
}

/* Result of one asynchronous publish, written by nats.c's thread in
 * on_pub_ack, read by the NATS thread after js_PublishAsyncComplete. */
enum { PR_NONE = 0, PR_OK, PR_DUP, PR_FAIL, PR_RETRY };

/* nats.c's thread: the answer to one publish of the current batch. The
 * "Sp-Slot" header says which (gen.k): answers to an older batch (given up
 * by js_PublishAsyncGetPendingList) are ignored. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
    (void)js;
    sp_cluster_t *c = closure;
    const char *slot = NULL;
    if (natsMsgHeader_Get(msg, "Sp-Slot", &slot) == NATS_OK && slot) {
        char *dot;
        unsigned long gen = strtoul(slot, &dot, 10);
        unsigned long k = *dot == '.' ? strtoul(dot + 1, NULL, 10) : PUB_BATCH;
        /* Acquire: pairs with the release store of pub_gen before the batch
         * was published; the gen read here is that batch's or a later one. */
        if (k < PUB_BATCH && gen == atomic_load_explicit(&c->pub_gen, memory_order_acquire)) {
            /* Relaxed: published by the release store of pub_res[k] below. */
            atomic_store_explicit(&c->pub_seq[k], pa ? pa->Sequence : 0, memory_order_relaxed);
            int r = pa ? (pa->Duplicate ? PR_DUP : PR_OK)
                    : (pae && pae->ErrCode == 0 && transient(pae->Err)) ? PR_RETRY
                                                                         : PR_FAIL;
            /* Release: the NATS thread that acquires the result sees it
             * whole (only the int itself: nothing else is published). */
            atomic_store_explicit(&c->pub_res[k], r, memory_order_release);
        }
    }
    natsMsg_Destroy(msg);
}

/* Publish up to PUB_BATCH hand-offs from the head of the queue at once,
 * wait for their answers (at most 2 s), and take the answered ones off the
 * queue. Those in doubt stay first in the queue, to be published again
 * under the same Msg-Id. Returns false when some are in doubt (retry later). */
/* Tell the loop that departure `dep` is stored (its outbox entry may go).
 * What the ring has no room for waits in conf_pend, flushed first. */
static void net_confirm_flush(sp_cluster_t *c) {
    size_t k = 0;
    while (k < c->nconf_pend && sp_spsc_try_push(&c->confirms, (void *)(uintptr_t)c->conf_pend[k]) == 0) k++;
    memmove(c->conf_pend, c->conf_pend + k, (c->nconf_pend - k) * sizeof *c->conf_pend);
    c->nconf_pend -= k;
}

static void net_confirm(sp_cluster_t *c, uint64_t dep) {
    if (dep == 0) return; /* not a departure of the outbox (none today; kept for safety) */
    if (c->nconf_pend == 0 && sp_spsc_try_push(&c->confirms, (void *)(uintptr_t)dep) == 0) return;
    if (c->nconf_pend == c->capconf_pend) {
        size_t nc = c->capconf_pend ? 2 * c->capconf_pend : 1024;
        uint64_t *v = realloc(c->conf_pend, nc * sizeof *v);
        /* Cannot keep it: the outbox entry stays, so a checkpoint keeps the
         * entity and the replay of the stream removes it again. Safe. */
        if (v == NULL) return;
        c->conf_pend = v;
        c->capconf_pend = nc;
    }
    c->conf_pend[c->nconf_pend++] = dep;
}

static bool net_publish_batch(sp_cluster_t *c) {
    item_t *b[PUB_BATCH];
    size_t n = 0;
    for (item_t *it = c->oq_head; it && it->type == IT_PUBLISH && n < PUB_BATCH; it = it->next) b[n++] = it;
    uint64_t gen = atomic_load_explicit(&c->pub_gen, memory_order_relaxed) + 1; /* only this thread writes it */
    for (size_t k = 0; k < n; k++) atomic_store_explicit(&c->pub_res[k], PR_NONE, memory_order_relaxed);
    /* Release: the cleared results above are ordered before any answer of
     * this batch (on_pub_ack acquires pub_gen before writing one). */
    atomic_store_explicit(&c->pub_gen, gen, memory_order_release);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 2000;
    for (size_t k = 0; k < n; k++) {
        item_t *it = b[k];
        uint8_t buf[SP_WIRE_MAX];
        size_t len = sp_wire_encode(&it->h, buf);
        char subj[32], msgid[96], slot[48];
        snprintf(subj, sizeof subj, "sp.ho.%u", it->to);
        /* The Msg-Id names this incarnation: a restarted process mints other
         * ids, and must not have its hand-offs dropped as duplicates of the
         * previous one's inside the de-duplication window. The same
         * hand-off sent again (an answer in doubt) keeps its Msg-Id, so the
         * stream stores it once. */
        snprintf(msgid, sizeof msgid, "n%u.%" PRIu64 ".%" PRIu64 ".%" PRIu64, c->conf.node, c->inc, it->h.st.id,
                 it->h.st.epoch);
        snprintf(slot, sizeof slot, "%" PRIu64 ".%zu", gen, k);
        natsMsg *m = NULL;
        natsStatus s = natsMsg_Create(&m, subj, NULL, (const char *)buf, (int)len);
        if (s == NATS_OK) s = natsMsgHeader_Set(m, "Nats-Msg-Id", msgid);
        if (s == NATS_OK) s = natsMsgHeader_Set(m, "Sp-Slot", slot);
        if (s == NATS_OK) s = js_PublishMsgAsync(c->js, &m, &po);
        natsMsg_Destroy(m); /* NULL when nats.c took it */
        if (s != NATS_OK) atomic_store_explicit(&c->pub_res[k], PR_RETRY, memory_order_relaxed); /* own slot */
    }
    natsStatus s = js_PublishAsyncComplete(c->js, &po);
    if (s != NATS_OK) {
        /* Answers missing: take the messages back (late answers are then
         * dropped by nats.c); they stay PR_NONE, so in doubt. */
        natsMsgList pend = {0};
        if (js_PublishAsyncGetPendingList(&pend, c->js) == NATS_OK) natsMsgList_Destroy(&pend);
    }
    /* Bump the generation: an answer still on its way is for no one now. */
    atomic_store_explicit(&c->pub_gen, gen + 1, memory_order_release);
    item_t *rest = n ? b[n - 1]->next : c->oq_head;
    item_t *keep_head = NULL, *keep_tail = NULL;
    size_t kept = 0;
    for (size_t k = 0; k < n; k++) {
        item_t *it = b[k];
        /* Acquire: pairs with on_pub_ack's release store. */
        int r = atomic_load_explicit(&c->pub_res[k], memory_order_acquire);
        if (r == PR_OK || r == PR_DUP) {
            /* Relaxed: ordered after the acquire load of pub_res[k] above.
             * A duplicate's answer carries the stored original's sequence. */
            uint64_t seq = atomic_load_explicit(&c->pub_seq[k], memory_order_relaxed);
            if (it->to < SP_WORLD_MAX_NODES && seq > c->last_to[it->to]) c->last_to[it->to] = seq;
            c->published++;
            if (r == PR_DUP) c->pubdup++; /* an earlier attempt was stored: this one was not */
            journal(c, 'P', it->h.st.id, it->h.st.epoch);
            net_confirm(c, it->dep);
            free(it);
            c->oq_n--;
            continue;
        }
        if (r == PR_FAIL && (c->stash == NULL)) {
            /* No stream answered or JetStream refused it: nothing was
             * stored, so the entity goes back to the loop, which re-imports
             * it (compensation). */
            c->pubfail++;
            it->type = IT_PUBFAIL;
            push_or_stash(c, it);
            c->oq_n--;
            continue;
        }
        c->pubretry++; /* in doubt: again later, same Msg-Id */
        it->next = NULL;
        if (keep_tail) keep_tail->next = it;
        else keep_head = it;
        keep_tail = it;
        kept++;
    }
    if (keep_tail) {
        keep_tail->next = rest;
        c->oq_head = keep_head;
    } else {
        c->oq_head = rest;
    }
    if (c->oq_head == NULL) c->oq_tail = NULL;
    else if (rest == NULL) c->oq_tail = keep_tail;
    if (kept) net_warn(c, "publishing hand-offs (answers in doubt: again with the same Msg-Id)", s, 0);
    return kept == 0;
}

/* Ack a run of processed hand-offs at once, then flush: the server has
 * read the acks (and handed them to the consumer, in the connection's
 * order) before anything published after this returns. */
static void net_ack_batch(sp_cluster_t *c) {
    size_t n = 0;
    while (c->oq_head && c->oq_head->type == IT_ACK && n < 4096) {
        item_t *it = c->oq_head;
        oq_unlink(c, it->next);
        /* verb 1: not applied, for a passing cause: the server sends it
         * again after a delay, so the entity is late, never dropped. */
        natsStatus s = it->verb == 1 ? natsMsg_NakWithDelay(it->msg, RETRY_IMPORT_MS, NULL) : natsMsg_Ack(it->msg, NULL);
        if (s != NATS_OK)
            net_warn(c, it->verb == 1 ? "nak of a hand-off (redelivered after the ack wait)" : "ack of a hand-off (a redelivery is judged by epoch)", s, 0);
        natsMsg_Destroy(it->msg);
        c->inflight--;
        c->acked++;
        free(it);
        n++;
    }
    natsStatus s = natsConnection_FlushTimeout(c->nc, 2000);
    if (s != NATS_OK) net_warn(c, "flushing acks (sent on reconnection; a redelivery is judged by epoch)", s, 0);
}

static void net_ops(sp_cluster_t *c, uint64_t now) {
    void *p;
    while (sp_spsc_try_pop(&c->to_net, &p) == 0) {
        item_t *it = p;
        if (it->type == IT_GHOSTS || it->type == IT_HIT) { /* core NATS, now: not behind the stream's publishes */
            char subj[32];
            snprintf(subj, sizeof subj, it->type == IT_GHOSTS ? "sp.gh.%u" : "sp.hit.%u", it->to);
            natsStatus s = c->net_fenced ? NATS_OK : natsConnection_Publish(c->nc, subj, it->text, (int)it->len);
            if (s != NATS_OK) net_warn(c, it->type == IT_GHOSTS ? "ghosts" : "a hit across a border", s, 0);
            free(it->text);
            free(it);
            continue;
        }
        if (it->type == IT_PUBLISH) journal(c, 'D', it->h.st.id, it->h.st.epoch);
        oq_push(c, it);
    }
    if (now < c->retry_at_ns) return;
    while (c->oq_head && flush_stash(c)) {
        item_t *it = c->oq_head, *next = it->next;
        if (it->type == IT_ACK) {
            net_ack_batch(c);
            continue;
        }
        if (it->type == IT_PUBLISH) {
            if (atomic_load_explicit(&c->hold_pub, memory_order_relaxed)) return; /* tests: see hold_pub */
            /* Fenced: hold them (a lapsed member must not hand off). */
            if (c->net_fenced || !net_publish_batch(c)) {
                c->retry_at_ns = sp_now_ns() + RETRY_NS;
                return;
            }
            continue;
        }
        net_do(c, it); /* IT_REPLY, IT_ANNOUNCE: frees it */
        oq_unlink(c, next);
    }
}

/* The stream sequence of a fetched hand-off, 0 if unknown. */
static uint64_t msg_seq(natsMsg *m) {
    jsMsgMetaData *md = NULL;
    uint64_t seq = 0;
    if (natsMsg_GetMetaData(&md, m) == NATS_OK) seq = md->Sequence.Stream;
    jsMsgMetaData_Destroy(md);
    return seq;
}

/* One announcement from a peer: keep the newest of its newest incarnation. */
static void net_heard(sp_cluster_t *c, natsMsg *m) {
    const char *subj = natsMsg_GetSubject(m), *dot = strrchr(subj, '.');
    char *end;
    unsigned long node = dot ? strtoul(dot + 1, &end, 10) : SP_WORLD_MAX_NODES;
    if (node >= SP_WORLD_MAX_NODES || node == c->conf.node) return;
    char buf[ANN_MAX];
    int len = natsMsg_GetDataLength(m);
    if (len <= 0 || len >= (int)sizeof buf) return;
    memcpy(buf, natsMsg_GetData(m), (size_t)len);
    buf[len] = '\0';
    char *p = buf;
    uint64_t inc = strtoull(p, &p, 10), tick = strtoull(p, &p, 10), seq = 0;
    while (*p == ' ') {
        unsigned long d = strtoul(p + 1, &end, 10);
        if (*end != '=') break;
        uint64_t v = strtoull(end + 1, &p, 10);
        if (d == c->conf.node) seq = v;
    }
    peer_t *pe = &c->peers[node];
    if (inc == 0 || inc < pe->inc) return; /* an older incarnation's, late */
    if (inc > pe->inc) *pe = (peer_t){.inc = inc, .tick = tick, .seq = seq, .live = pe->live};
    if (tick > pe->tick) pe->tick = tick;
    if (seq > pe->seq) pe->seq = seq;
}

/* The clock: repeat our announcement, read the peers', list the members,
 * and tell the loop when the frontier changed. */
static void net_clock(sp_cluster_t *c, uint64_t now) {
    if (c->ann_any && now >= c->next_ann_ns) net_announce(c);
    for (int k = 0; k < 1024; k++) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, c->tick_sub, 0) != NATS_OK) break;
        net_heard(c, m);
        natsMsg_Destroy(m);
    }
    if (now >= c->next_members_ns) {
        c->next_members_ns = now + MEMBERS_NS;
        natsStatus s = list_members(c);
        if (s != NATS_OK) net_warn(c, "listing the members (the frontier keeps the last list)", s, 0);
    }
    bool all = true;
    uint64_t tick = UINT64_MAX, seq = 0;
    uint32_t npeers = 0;
    for (uint32_t n = 0; n < SP_WORLD_MAX_NODES; n++) {
        const peer_t *pe = &c->peers[n];
        if (!pe->live || n == c->conf.node) continue;
        npeers++;
        if (pe->inc == 0) {
            all = false;
            continue;
        }
        if (pe->tick < tick) tick = pe->tick;
        if (pe->seq > seq) seq = pe->seq;
    }
    if (c->fr_sent && all == c->fr_sent_all && tick == c->fr_sent_tick && seq == c->fr_sent_seq &&
        npeers == c->fr_sent_peers)
        return;
    if (!flush_stash(c)) return;
    item_t *it = item_new(IT_FRONTIER);
    if (it == NULL) return;
    it->flag = all;
    it->rev = tick;
    it->seq = seq;
    it->owner = (int32_t)npeers;
    push_or_stash(c, it);
    c->fr_sent = true;
    c->fr_sent_all = all;
    c->fr_sent_tick = tick;
    c->fr_sent_seq = seq;
    c->fr_sent_peers = npeers;
}

static void net_fetch(sp_cluster_t *c) {
    size_t room = RING - sp_spsc_size_approx(&c->to_loop);
    if (c->net_fenced || !flush_stash(c) || room < FETCH_BATCH + 64) {
        struct timespec ts = {0, FETCH_IDLE_MAX_MS * 1000000L};
        nanosleep(&ts, NULL);
        return;
    }
    natsMsgList list = {0};
    /* NoWait: the server answers at once with what it has (or "none"), so
     * no pull request of ours outlives its Fetch. With waiting requests
     * (expires = the fetch timeout) the server sometimes handed a message
     * to a request nats.c had already given up on, and it came back only
     * after the ack wait (10 s), again and again. */
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = FETCH_BATCH;
    req.NoWait = true;
    req.Expires = 0; /* with NoWait, an expiry made nats-server 2.9 wait for the batch to fill */
    natsStatus s = natsSubscription_FetchRequest(&list, c->pull, &req);
    if (s != NATS_OK || list.Count == 0) {
        if (s != NATS_OK && s != NATS_TIMEOUT && s != NATS_NOT_FOUND) net_warn(c, "fetching hand-offs", s, 0);
        natsMsgList_Destroy(&list);
        /* Nothing there (or disconnected): back off from 1 to 8 ms, so an
         * idle daemon asks the server ~125 times a second, a busy one at
         * once again. The loop's items wait at most that long too. */
        struct timespec ts = {0, (long)c->idle_ms * 1000000L};
        nanosleep(&ts, NULL);
        if (c->idle_ms < FETCH_IDLE_MAX_MS) c->idle_ms *= 2;
        return;
    }
    c->idle_ms = 1;
    for (int i = 0; i < list.Count; i++) {
        natsMsg *m = list.Msgs[i];
        list.Msgs[i] = NULL; /* ours now */
        item_t *it = item_new(IT_IMPORT);
        if (it == NULL || sp_wire_decode((const uint8_t *)natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
                                         &it->h) != 0) {
            /* Not a hand-off of this version: ack it away (a poison message
             * would come back forever) and say so. */
            c->bad++;
            SP_LOGW("cluster: dropped a malformed hand-off message (%d bytes)", natsMsg_GetDataLength(m));
            natsMsg_Ack(m, NULL);
            uint64_t seq = msg_seq(m);
            natsMsg_Destroy(m);
            if (it) { /* still received: a peer's announcement may cover it */
                it->type = IT_SEEN;
                it->seq = seq;
                if (!to_loop(c, it) && c->stash == NULL) c->stash = it;
            }
            continue;
        }
        it->seq = msg_seq(m);
        it->msg = m;
        c->inflight++;
        /* Room was checked above and only this thread pushes, so this
         * cannot fail; if it did, the stash keeps it (and stops fetching). */
        if (!to_loop(c, it) && c->stash == NULL) c->stash = it;
    }
    natsMsgList_Destroy(&list);
}

/* Ghost batches and hits in: to the loop. A ghost batch the ring has no
 * room for is dropped (the next step sends a newer one); a hit waits in the
 * subscription until there is room (it must not be lost here). */
static void free_item(item_t *it);

/* An item of `type` carrying a copy of m's body (text/len), or NULL (an
 * empty body, or out of memory). m stays the caller's. */
static item_t *item_of_msg(int type, natsMsg *m) {
    int n = natsMsg_GetDataLength(m);
    item_t *it = n > 0 ? item_new(type) : NULL;
    if (it == NULL || (it->text = malloc((size_t)n)) == NULL) {
        free(it);
        return NULL;
    }
    memcpy(it->text, natsMsg_GetData(m), (size_t)n);
    it->len = (size_t)n;
    return it;
}

static void net_ghosts(sp_cluster_t *c) {
    for (int k = 0; k < 64 && c->gh_sub; k++) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, c->gh_sub, 0) != NATS_OK) break;
        item_t *it = item_of_msg(IT_GHOSTS_IN, m);
        if (it && !to_loop(c, it)) free_item(it);
        natsMsg_Destroy(m);
    }
    for (int k = 0; k < 256 && c->hit_sub && flush_stash(c); k++) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, c->hit_sub, 0) != NATS_OK) break;
        item_t *it = item_of_msg(IT_HIT_IN, m);
        if (it) push_or_stash(c, it);
        natsMsg_Destroy(m);
    }
}

static void *net_main(void *arg) {
    sp_cluster_t *c = arg;
    /* Relaxed: see `stop`. */
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        uint64_t now = sp_now_ns();
        net_heartbeat(c, now);
        if (!c->net_fenced || c->next_poll_ns == 0) net_poll_cells(c, now);
        if (!c->net_fenced) net_watch_cells(c);
        net_control(c);
        if (c->nconf_pend) net_confirm_flush(c);
        net_clock(c, now);
        net_ghosts(c);
        net_ops(c, now);
        net_fetch(c);
    }
    return NULL;
}

/* ---------------------------------------------------------------- the loop side */

static void on_wake(uv_async_t *a) { sp_cluster_apply((sp_cluster_t *)a->data); }

static void to_net(sp_cluster_t *c, item_t *it);

int sp_cluster_start(sp_cluster_t *c, uv_loop_t *loop, sp_world_t *w) {
    c->world = w;
    /* The border band: a weapon's reach (which covers mining's) and a bit. */
    c->band = c->conf.ghost_band >= 0 ? c->conf.ghost_band : sp_world_def(w)->weapon_range + 10.0f;
    if (uv_async_init(loop, &c->wake, on_wake) != 0) return SP_EIO;
    c->wake.data = c;
    c->wake_open = true;
    /* The first announcement: the tick this process starts from. Pushed
     * before the thread exists (pthread_create orders it). */
    item_t *ann = item_new(IT_ANNOUNCE);
    if (ann == NULL) return SP_ENOMEM;
    ann->rev = sp_world_tick(w);
    to_net(c, ann);
    if (pthread_create(&c->thread, NULL, net_main, c) != 0) return SP_EAGAIN;
    c->thread_started = true;
    return 0;
}

/* A paused daemon still steps while it holds a hand-off stamped with a
 * later tick: a peer was one tick ahead when the pause (or, at start, the
 * resume) reached them at different moments, and that entity must not be
 * stepped from a tick it has already passed. So a paused cluster comes to
 * rest with nothing held early; O(early imports). */
static bool catching_up(const sp_cluster_t *c) {
    uint64_t t = sp_world_tick(c->world);
    for (size_t k = 0; k < c->nearly; k++)
        if (c->early[k]->h.tick > t) return true;
    return false;
}

int sp_cluster_frozen(const sp_cluster_t *c) { return c->fenced || (c->paused && !catching_up(c)); }

void sp_cluster_on_ready(sp_cluster_t *c, void (*fn)(void *ctx), void *ctx) {
    c->ready_cb = fn;
    c->ready_ctx = ctx;
}

/* The frontier lets the world step from its tick t: every live peer has
 * announced a tick >= t, every hand-off their announcements cover has been
 * received, and none stamped <= t waits in `early`. */
static bool frontier_open(const sp_cluster_t *c) {
    uint64_t t = sp_world_tick(c->world);
    if (c->scan_owed || !c->fr_all || c->fr_tick < t || c->recv_seq < c->fr_seq) return false;
    for (size_t k = 0; k < c->nearly; k++)
        if (c->early[k]->h.tick <= t) return false; /* not yet applied (no room toward NATS) */
    return true;
}

int sp_cluster_waits(sp_cluster_t *c) {
    /* Frozen (paused, fenced) time is not a wait for the frontier. */
    bool open = sp_cluster_frozen(c) || frontier_open(c);
    uint64_t now = sp_now_ns();
    if (!open && c->wait_since == 0) {
        c->wait_since = now;
        c->ls.fwaits++;
    } else if (open && c->wait_since) {
        uint64_t ns = now - c->wait_since;
        c->ls.fwait_ns += ns;
        if (ns > c->ls.fwait_max_ns) c->ls.fwait_max_ns = ns;
        c->wait_since = 0;
    }
    return !open;
}

void sp_cluster_frontier_stats(const sp_cluster_t *c, uint64_t *waits, uint64_t *wait_ns, uint64_t *wait_max_ns) {
    *waits = c->ls.fwaits;
    *wait_ns = c->ls.fwait_ns;
    *wait_max_ns = c->ls.fwait_max_ns;
}

static bool room_to_net(const sp_cluster_t *c, size_t n) {
    /* size_approx over-counts while the consumer pops (it frees a slot
     * before moving its index), never under-counts: room it reports is there. */
    return sp_spsc_size_approx(&c->to_net) + n <= RING;
}

static void to_net(sp_cluster_t *c, item_t *it) {
    int r = sp_spsc_try_push(&c->to_net, it);
    SP_ASSERT(r == 0); /* room checked by the caller */
    (void)r;
}

/* Compensation: the entity comes back here at a higher epoch, whatever cell
 * it is in (the next scan sends it on if the cell is another's). */
/* Hold a bounced entity here for BACKOFF_TICKS. false without memory (it
 * then goes on at the next scan, as before). */
static bool backoff_add(sp_cluster_t *c, sp_entity_id_t id) {
    if (c->nbo == c->capbo) {
        size_t nc = c->capbo ? 2 * c->capbo : 64;
        struct backoff *v = realloc(c->bo, nc * sizeof *v);
        if (v == NULL) return false;
        c->bo = v;
        c->capbo = nc;
    }
    c->bo[c->nbo++] = (struct backoff){id, sp_world_tick(c->world) + BACKOFF_TICKS};
    return true;
}

static void compensate(sp_cluster_t *c, sp_entity_state_t *st) {
    st->epoch++;
    int rc = sp_world_import(c->world, st);
    if (rc == 0) {
        c->ls.returned++;
        journal(c, 'C', st->id, st->epoch);
    } else if (rc < 0) {
        SP_LOGE("cluster: compensation of entity %" PRIu64 " at epoch %" PRIu64 " failed: %s", st->id, st->epoch,
                sp_strerror(rc));
    }
}

/* The outbox (loop thread): room for one more entry, or false (then the
 * caller does not depart: the entity stays and the next scan tries again). */
static bool outbox_reserve(sp_cluster_t *c) {
    if (c->ob_head > 0 && c->ob_head + c->ob_n == c->ob_cap) { /* slide the live part down */
        memmove(c->ob, c->ob + c->ob_head, c->ob_n * sizeof *c->ob);
        c->ob_head = 0;
    }
    if (c->ob_n < c->ob_cap) return true;
    size_t nc = c->ob_cap ? 2 * c->ob_cap : 256;
    outent_t *v = realloc(c->ob, nc * sizeof *v);
    if (v == NULL) return false;
    c->ob = v;
    c->ob_cap = nc;
    return true;
}

/* Number the departure in `it` and keep its hand-off until it is stored.
 * After outbox_reserve returned true. */
static void outbox_push(sp_cluster_t *c, item_t *it) {
    it->dep = c->next_dep++;
    outent_t *e = &c->ob[c->ob_head + c->ob_n++];
    e->dep = it->dep;
    e->floor = c->recv_seq;
    e->done = false;
    e->h = it->h;
}

/* Departure `dep` is stored or compensated: its entry goes (with every done
 * one before the first that is not). Numbers are contiguous from the head. */
static void outbox_done(sp_cluster_t *c, uint64_t dep) {
    if (c->ob_n == 0 || dep < c->ob[c->ob_head].dep) return;
    uint64_t k = dep - c->ob[c->ob_head].dep;
    if (k >= c->ob_n) return;
    c->ob[c->ob_head + k].done = true;
    while (c->ob_n > 0 && c->ob[c->ob_head].done) {
        c->ob_head++;
        c->ob_n--;
    }
    if (c->ob_n == 0) c->ob_head = 0;
}

/* Depart entity `st` (already exported, epoch raised) toward node `to`.
 * false when it could not (memory): it stays here. */
static bool send_off(sp_cluster_t *c, const sp_entity_state_t *st, uint32_t to, uint32_t cell, uint8_t flags) {
    item_t *it = item_new(IT_PUBLISH);
    if (it == NULL) return false; /* stays here; the next scan tries again */
    it->h.st = *st;
    it->h.flags = flags;
    it->h.origin = (uint16_t)c->conf.node;
    it->h.cell = cell;
    it->h.cell_rev = cell < c->ncells ? c->rev[cell] : 0;
    it->h.tick = sp_world_tick(c->world); /* the state is that of the end of the step to this tick */
    it->to = to;
    if (!outbox_reserve(c)) {
        free(it);
        return false;
    }
    int rc = sp_world_depart(c->world, st->id, st->epoch);
    if (rc != 0) {
        free(it);
        return false;
    }
    outbox_push(c, it);
    c->ls.departs++;
    to_net(c, it);
    return true;
}

static void apply_import(sp_cluster_t *c, item_t *it) {
    sp_wire_handoff_t *h = &it->h;
    sp_world_t *w = c->world;
    uint32_t cell = sp_cells_of(&c->conf.cells, h->st.px, h->st.py);
    int ours = c->owner[cell] == (int32_t)c->conf.node;
    int rc;
    if (c->refuse_left > 0 && !(h->flags & SP_WIRE_RETURN)) /* tests: --cluster-test-refuse */
        rc = c->refuse_left-- % 2 ? SP_ELIMIT : SP_ENOMEM;
    else
        rc = sp_world_import(w, &h->st);
    it->flag = rc;
    it->verb = 0;
    item_t *back = NULL;
    if (rc == 0) {
        journal(c, h->flags & SP_WIRE_RETURN ? 'C' : 'I', h->st.id, h->st.epoch);
        if (h->flags & SP_WIRE_RETURN) c->ls.returned++;
        if ((h->flags & SP_WIRE_BOUNCED) && backoff_add(c, h->st.id)) c->ls.backoffs++;
        else {
            c->ls.crossings++;
            /* Ticks between the sender's step and this import: 0 when the
             * frontier did its job (the receiver waited instead). */
            uint64_t now_t = sp_world_tick(w), lag = now_t > h->tick ? now_t - h->tick : 0;
            c->ls.hop[lag < HOP_BUCKETS - 1 ? lag : HOP_BUCKETS - 1]++;
        }
    } else if (rc == SP_WORLD_IMPORT_DUPLICATE) {
        c->ls.dup++;
    } else if (rc == SP_WORLD_IMPORT_STALE) {
        c->ls.stale++;
    } else {
        /* This world cannot take it. A forward hand-off that failed for good
         * here (full, or invalid under this world's definition) goes back to
         * its origin, which just had it: the compensation of issue 10 point
         * 3. Out of memory passes, and a return has nowhere else to go: nak,
         * so the server brings it again. Never acked away. */
        bool for_good = rc == SP_ELIMIT || rc == SP_EINVAL;
        if (for_good && !(h->flags & SP_WIRE_RETURN) && h->origin != c->conf.node) {
            back = outbox_reserve(c) ? item_new(IT_PUBLISH) : NULL;
            /* A late copy of this hand-off (an ambiguous ack redelivered)
             * must find it departed here, at the epoch it goes back with. */
            if (back != NULL && sp_world_note_departed(w, h->st.id, h->st.epoch + 1) != 0) {
                free(back);
                back = NULL;
            }
        }
        if (back == NULL) {
            it->verb = 1;
            c->ls.retried++;
        } else {
            c->ls.bounced++;
        }
        c->ls.invalid++;
        uint64_t n = sp_log_ratelimit_ok(&c->refuse_rl, sp_now_ns() / 1000000u);
        if (n)
            SP_LOGW("cluster: hand-off of entity %" PRIu64 " epoch %" PRIu64 " from node %u refused: %s; %s (%" PRIu64
                    " like it)", h->st.id, h->st.epoch, h->origin, sp_strerror(rc),
                    back ? "sent back to its origin" : "the server delivers it again", n);
    }
    /* Ack first: the ack is in the ring before any publish of this entity. */
    sp_wire_handoff_t copy = *h;
    it->type = IT_ACK;
    to_net(c, it);
    if (back != NULL) {
        /* Never here, so nothing to depart: the state as it came, at the
         * next epoch, stamped with its own tick (the origin is past it and
         * imports it at once, counted late). */
        back->h = copy;
        back->h.st.epoch++;
        back->h.flags = SP_WIRE_RETURN | SP_WIRE_BOUNCED;
        back->h.origin = (uint16_t)c->conf.node;
        back->h.cell = cell;
        back->h.cell_rev = cell < c->ncells ? c->rev[cell] : 0;
        back->to = copy.origin;
        outbox_push(c, back); /* a checkpoint keeps it until it is stored */
        to_net(c, back);
        return;
    }
    if (rc == 0 && !ours && !(copy.flags & SP_WIRE_RETURN) && copy.origin != c->conf.node) {
        /* Not our cell (it moved away, or the sender's view is newer or
         * older than ours): the hand-off failed; back to its origin at a
         * new epoch. Imported and departed rather than just refused, so the
         * departure memory answers any redelivery of this message STALE. */
        sp_entity_state_t st;
        if (sp_world_export(w, copy.st.id, &st) == 0) {
            st.epoch++;
            c->ls.refused++;
            send_off(c, &st, copy.origin, cell, SP_WIRE_RETURN);
        }
    }
}

/* A growable text buffer for control replies. */
typedef struct tbuf {
    char *b;
    size_t n, cap;
    bool oom;
} tbuf_t;

static void tb_printf(tbuf_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(tbuf_t *t, const char *fmt, ...) {
    for (;;) {
        if (t->oom) return;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->b ? t->b + t->n : NULL, t->b ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (t->b && t->n + (size_t)k < t->cap) {
            t->n += (size_t)k;
            return;
        }
        size_t nc = t->cap ? 2 * t->cap : 4096;
        while (nc < t->n + (size_t)k + 1) nc *= 2;
        char *v = realloc(t->b, nc);
        if (v == NULL) {
            t->oom = true;
            return;
        }
        t->b = v;
        t->cap = nc;
    }
}

typedef struct dumpctx {
    sp_cluster_t *c;
    tbuf_t *t;
} dumpctx_t;

static int dump_ent(void *ctx, sp_entity_id_t id) {
    dumpctx_t *d = ctx;
    sp_entity_state_t st;
    if (sp_world_export(d->c->world, id, &st) == 0) tb_printf(d->t, "e %" PRIu64 " %" PRIu64 "\n", id, st.epoch);
    return 0;
}

static int dump_dep(void *ctx, sp_entity_id_t id, uint64_t epoch) {
    dumpctx_t *d = ctx;
    tb_printf(d->t, "d %" PRIu64 " %" PRIu64 "\n", id, epoch);
    return 0;
}

/* Control requests (spacesim-cells): the reply is built here, on the loop
 * (the world is read between steps), and sent by the NATS thread.
 *   status: one line of figures; dump: the line, then "e ID EPOCH" per
 *   entity and "d ID EPOCH" per departure memory entry;
 *   pause / resume: stop / restart stepping and handing off (hand-offs in
 *   are still applied; a daemon holding one for a later tick steps up to it
 *   first, see catching_up), then the status line. */
static void apply_ctl(sp_cluster_t *c, item_t *it) {
    sp_world_t *w = c->world;
    if ((it->verb == CTL_PAUSE && !c->paused) || (it->verb == CTL_RESUME && c->paused)) {
        c->paused = it->verb == CTL_PAUSE;
        SP_LOGI("cluster: %s by an operator (tick %" PRIu64 ")", c->paused ? "paused" : "resumed", sp_world_tick(w));
    }
    uint32_t ncells, mine = sp_cluster_cells_owned(c, &ncells); /* as this loop believes */
    char fr[32];
    if (!c->fr_all) snprintf(fr, sizeof fr, "unknown");
    else if (c->fr_tick == UINT64_MAX) snprintf(fr, sizeof fr, "none");
    else snprintf(fr, sizeof fr, "%" PRIu64, c->fr_tick);
    /* The hand-off latency, ticks: the histogram and its 99th percentile. */
    char hops[HOP_BUCKETS * 22];
    size_t hn = 0;
    uint64_t htot = 0, hacc = 0;
    int hp99 = 0;
    for (int k = 0; k < HOP_BUCKETS; k++) {
        htot += c->ls.hop[k];
        hn += (size_t)snprintf(hops + hn, sizeof hops - hn, "%s%" PRIu64, k ? "," : "", c->ls.hop[k]);
    }
    for (int k = 0; k < HOP_BUCKETS && htot; k++) {
        hacc += c->ls.hop[k];
        if (hacc * 100 >= htot * 99) {
            hp99 = k;
            break;
        }
    }
    tbuf_t t = {0};
    tb_printf(&t,
              "node %u tick %" PRIu64 " count %u hash %" PRIu64 " paused %d fenced %d crossings %" PRIu64
              " dup %" PRIu64 " stale %" PRIu64 " invalid %" PRIu64 " departs %" PRIu64 " refused %" PRIu64
              " returned %" PRIu64 " homeless %" PRIu64 " held %zu late %" PRIu64 " early %zu peers %u frontier %s"
              " recv_seq %" PRIu64 " need_seq %" PRIu64 " fwaits %" PRIu64 " fwait_ms %.1f fwait_max_ms %.1f"
              " cells %u bounced %" PRIu64 " retried %" PRIu64 " backoffs %" PRIu64 " hop_p99 %d hops %s"
              " ghosts_in %" PRIu64 " ghosts_out %" PRIu64 " hits_in %" PRIu64 " hits_out %" PRIu64
              " hits_lost %" PRIu64 " ghost_contacts %" PRIu64 "\n",
              c->conf.node, sp_world_tick(w), sp_world_count(w), sp_world_hash_canonical(w), c->paused, c->fenced,
              c->ls.crossings, c->ls.dup, c->ls.stale, c->ls.invalid, c->ls.departs, c->ls.refused, c->ls.returned,
              c->ls.homeless, c->nheld, c->ls.late, c->nearly, c->fr_peers, fr, c->recv_seq, c->fr_seq, c->ls.fwaits,
              (double)c->ls.fwait_ns / 1e6, (double)c->ls.fwait_max_ns / 1e6, mine, c->ls.bounced, c->ls.retried, c->ls.backoffs, hp99, hops,
              c->ls.ghosts_in, c->ls.ghosts_out, c->ls.hits_in, c->ls.hits_out, c->ls.hits_lost,
              c->ls.ghost_contacts);
    if (it->verb == CTL_DUMP) {
        dumpctx_t d = {c, &t};
        sp_world_foreach(w, dump_ent, &d);
        sp_world_foreach_departed(w, dump_dep, &d);
    }
    if (t.oom) t.n = 0; /* an empty reply: the tool reports it and asks again */
    it->type = IT_REPLY;
    it->text = t.b;
    it->len = t.n;
    to_net(c, it);
}

/* Keep `it` at the end of the array *v (n items, room for *cap): the
 * imports held early or while fenced. Nothing may be dropped, so running
 * out of memory here aborts. */
static void items_keep(item_t ***v, size_t *n, size_t *cap, item_t *it) {
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 256;
        item_t **nv = realloc(*v, nc * sizeof *nv);
        if (nv == NULL) abort(); /* cannot keep it and must not drop it */
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = it;
}

/* An import the world is ready for now, or one to keep in `early` until
 * the world reaches its tick (paused too: sp_cluster_frozen lets the world
 * step up to it, see catching_up). */
static void route_import(sp_cluster_t *c, item_t *it) {
    uint64_t t = sp_world_tick(c->world);
    if (it->h.tick > t) {
        items_keep(&c->early, &c->nearly, &c->capearly, it);
        return;
    }
    if (it->h.tick < t) c->ls.late++;
    apply_import(c, it);
}

/* Apply the early imports the world has reached, in arrival order. */
static void release_early(sp_cluster_t *c) {
    uint64_t t = sp_world_tick(c->world);
    size_t kept = 0;
    for (size_t k = 0; k < c->nearly; k++) {
        item_t *it = c->early[k];
        if (it->h.tick <= t && room_to_net(c, 3)) apply_import(c, it);
        else c->early[kept++] = it;
    }
    c->nearly = kept;
}

static void hand_off_leavers(sp_cluster_t *c);

/* ---------------------------------------------------------------- ghosts
 *
 * Every step, each daemon sends each neighbour (a node owning a cell within
 * `band` of one of its entities, in x or y) one batch of those entities
 * (ships and asteroids; core NATS sp.gh.<node>, in chunks of GH_CHUNK). The
 * receiver keeps the newest batch per node: its ghosts, read-only copies a
 * tick old. A ship here that fires at or mines a ghost does its half here
 * (sim/handoff.h: sp_world_fire_remote, sp_world_mine_remote) and sends the
 * effect to the ghost's node (sp.hit.<node>), which applies it to the
 * entity (sp_world_damage, sp_world_deplete). Ghosts and hits are core NATS:
 * at most once. A lost batch is replaced by the next; a lost hit is a shot's
 * damage or a mine's amount lost (the shooter's side, cooldown and cargo,
 * happened), which the log does not see: the accepted cost of an action
 * across a border, against a JetStream round trip per shot.
 *
 * Batch: "SPG1" | u32 from node | u64 tick | u32 count | count x 52-byte
 * records (u64 id, u32 owner, u8 kind, i8 resource, u16 0, f32 pos[3],
 * f32 vel[3], f32 radius, f32 hp, f32 amount), little-endian hosts. Hit:
 * "SPH1" | u8 what (1 damage, 2 deplete) | 3 x 0 | u64 target | u64 by |
 * f32 value. */

#define GH_REC 52u
#define GH_HEAD 20u
#define GH_CHUNK 8192u      /* records per message (430 KB, under NATS's 1 MB default) */
#define GH_REFRESH 60u      /* ticks: a ghost is sent again at least this often while in the band */
#define GH_MAX_AGE (2u * GH_REFRESH) /* ticks a ghost not refreshed is believed */
#define GH_EPS 0.25f        /* units (and units/s): a drift from the prediction that is sent */

/* One ghost, as sent (sender's memory per neighbour) or as received. */
typedef struct gent {
    sp_remote_target_t t;   /* t.id is the key */
    float vel[3], hp;
    uint64_t tick;          /* of the record */
    uint32_t mark;          /* sender: the scan that last saw it in the band */
} gent_t;

/* id -> gent: a dense array and an open-addressing index (linear probing,
 * backward-shift deletion; slots hold array index + 1, 0 = empty). */
struct gmap {
    gent_t *v;
    size_t n, cap;
    uint32_t *idx;
    size_t imask;           /* index size - 1 (a power of two, at least 2 x cap) */
};

static size_t gslot(uint64_t id, size_t mask) { return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 20) & mask; }

static gent_t *gmap_get(struct gmap *m, uint64_t id) {
    if (m == NULL || m->idx == NULL) return NULL;
    for (size_t i = gslot(id, m->imask);; i = (i + 1) & m->imask) {
        uint32_t k = m->idx[i];
        if (k == 0) return NULL;
        if (m->v[k - 1].t.id == id) return &m->v[k - 1];
    }
}

static int gmap_rehash(struct gmap *m, size_t cap) {
    size_t isz = 16;
    while (isz < 2 * cap) isz *= 2;
    uint32_t *idx = calloc(isz, sizeof *idx);
    gent_t *v = realloc(m->v, cap * sizeof *v);
    if (idx == NULL || v == NULL) {
        free(idx);
        if (v) m->v = v;
        return SP_ENOMEM;
    }
    m->v = v;
    m->cap = cap;
    free(m->idx);
    m->idx = idx;
    m->imask = isz - 1;
    for (size_t k = 0; k < m->n; k++) {
        size_t i = gslot(v[k].t.id, m->imask);
        while (idx[i]) i = (i + 1) & m->imask;
        idx[i] = (uint32_t)(k + 1);
    }
    return 0;
}

/* The entry of id, inserted (zeroed, id set) when absent; NULL on OOM. */
static gent_t *gmap_put(struct gmap *m, uint64_t id, bool *fresh) {
    gent_t *e = gmap_get(m, id);
    *fresh = e == NULL;
    if (e) return e;
    if (m->n == m->cap && gmap_rehash(m, m->cap ? 2 * m->cap : 256) != 0) return NULL;
    size_t i = gslot(id, m->imask);
    while (m->idx[i]) i = (i + 1) & m->imask;
    e = &m->v[m->n];
    memset(e, 0, sizeof *e);
    e->t.id = id;
    m->idx[i] = (uint32_t)(++m->n);
    return e;
}

static void gmap_del(struct gmap *m, uint64_t id) {
    if (m == NULL || m->idx == NULL) return;
    size_t i = gslot(id, m->imask);
    while (m->idx[i] && m->v[m->idx[i] - 1].t.id != id) i = (i + 1) & m->imask;
    if (m->idx[i] == 0) return;
    size_t k = m->idx[i] - 1;
    /* Backward shift: close the hole so every probe chain stays unbroken. */
    for (size_t j = (i + 1) & m->imask; m->idx[j]; j = (j + 1) & m->imask) {
        size_t h = gslot(m->v[m->idx[j] - 1].t.id, m->imask);
        if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
            m->idx[i] = m->idx[j];
            i = j;
        }
    }
    m->idx[i] = 0;
    /* The last entry takes the freed place in the array. */
    size_t last = --m->n;
    if (k != last) {
        m->v[k] = m->v[last];
        size_t q = gslot(m->v[k].t.id, m->imask);
        while (m->idx[q] != last + 1) q = (q + 1) & m->imask;
        m->idx[q] = (uint32_t)(k + 1);
    }
}

static void gmap_free(struct gmap *m) {
    if (m == NULL) return;
    free(m->v);
    free(m->idx);
    free(m);
}

/* A batch (chunk) from a neighbour: each record an upsert (kind 0: the
 * entity left the band or the world: dropped). */
static void ghosts_take(sp_cluster_t *c, const char *p, size_t len) {
    if (len < GH_HEAD || memcmp(p, "SPG1", 4) != 0) return;
    uint32_t from, n;
    uint64_t tick;
    memcpy(&from, p + 4, 4);
    memcpy(&tick, p + 8, 8);
    memcpy(&n, p + 16, 4);
    if (from >= SP_WORLD_MAX_NODES || from == c->conf.node || (size_t)n * GH_REC != len - GH_HEAD) return;
    struct gmap *m = c->ghosts[from];
    if (m == NULL && (m = c->ghosts[from] = calloc(1, sizeof *m)) == NULL) return;
    const char *r = p + GH_HEAD;
    for (uint32_t k = 0; k < n; k++, r += GH_REC) {
        uint64_t id;
        memcpy(&id, r, 8);
        uint8_t kind = (uint8_t)r[12];
        if (id == 0) continue;
        if (kind != SP_KIND_SHIP && kind != SP_KIND_ASTEROID) {
            gmap_del(m, id);
            continue;
        }
        bool fresh;
        gent_t *g = gmap_put(m, id, &fresh);
        if (g == NULL) return;
        if (!fresh && g->tick > tick) continue; /* (never: one publisher, in order) */
        g->tick = tick;
        memcpy(&g->t.owner, r + 8, 4);
        g->t.kind = kind;
        g->t.resource = (int8_t)r[13];
        memcpy(g->t.pos, r + 16, 12);
        memcpy(g->vel, r + 28, 12);
        memcpy(&g->t.radius, r + 40, 4);
        memcpy(&g->hp, r + 44, 4);
        memcpy(&g->t.amount, r + 48, 4);
    }
    c->ls.ghosts_in += n;
}

int sp_cluster_ghost(const sp_cluster_t *c, uint64_t id, sp_remote_target_t *out, uint32_t *node) {
    uint64_t now = sp_world_tick(c->world);
    float dt = sp_world_def(c->world)->dt;
    for (uint32_t n = 0; n < SP_WORLD_MAX_NODES; n++) {
        gent_t *g = gmap_get(c->ghosts[n], id);
        if (g == NULL || g->tick + GH_MAX_AGE < now) continue;
        *out = g->t;
        /* Where it is now, as the sender predicts it (dead reckoning): it
         * sends again when the entity leaves that line by GH_EPS. */
        float ahead = now > g->tick ? (float)(now - g->tick) * dt : 0.0f;
        for (int k = 0; k < 3; k++) out->pos[k] = g->t.pos[k] + g->vel[k] * ahead;
        *node = n;
        return 0;
    }
    return SP_ENOENT;
}

int sp_cluster_send_hit(sp_cluster_t *c, uint32_t node, int what, uint64_t target, uint64_t by, float value) {
    if (node >= SP_WORLD_MAX_NODES || c->fenced || !room_to_net(c, 1)) return SP_EAGAIN;
    item_t *it = item_new(IT_HIT);
    char *b = malloc(28);
    if (it == NULL || b == NULL) {
        free(it);
        free(b);
        return SP_ENOMEM;
    }
    memcpy(b, "SPH1", 4);
    b[4] = (char)what;
    b[5] = b[6] = b[7] = 0;
    memcpy(b + 8, &target, 8);
    memcpy(b + 16, &by, 8);
    memcpy(b + 24, &value, 4);
    it->to = node;
    it->text = b;
    it->len = 28;
    to_net(c, it);
    c->ls.hits_out++;
    return 0;
}

int sp_cluster_fire_at_ghost(sp_cluster_t *c, uint64_t shooter, uint64_t target, sp_fire_result_t *out) {
    sp_remote_target_t t;
    uint32_t node;
    if (sp_cluster_ghost(c, target, &t, &node) != 0) return SP_ENOENT;
    int r = sp_world_fire_remote(c->world, shooter, &t, out);
    if (r == 0 && out->hit && sp_cluster_send_hit(c, node, SP_CLUSTER_HIT_DAMAGE, target, shooter, out->damage) != 0)
        SP_LOGW("cluster: a hit across the border on %" PRIu64 " not sent (NATS behind)", target);
    return r;
}

int sp_cluster_mine_ghost(sp_cluster_t *c, uint64_t ship, uint64_t asteroid, sp_mine_result_t *out) {
    sp_remote_target_t t;
    uint32_t node;
    if (sp_cluster_ghost(c, asteroid, &t, &node) != 0) return SP_ENOENT;
    int r = sp_world_mine_remote(c->world, ship, &t, out);
    if (r == 0 && sp_cluster_send_hit(c, node, SP_CLUSTER_HIT_DEPLETE, asteroid, ship, out->amount) != 0)
        SP_LOGW("cluster: mining across the border of %" PRIu64 " not sent (NATS behind)", asteroid);
    return r;
}

/* Collisions across the border: this world's entities against the ghosts
 * (positions extrapolated to this tick), this side's share of each contact
 * (sp_world_collide_remote); the neighbour does its side against its ghosts
 * of ours. A ghost's record may be older than a step: by dead reckoning its
 * sender sends it again as soon as it leaves the predicted line by GH_EPS,
 * so the extrapolated position is good to that. */
static void ghosts_collide(sp_cluster_t *c) {
    if (c->band <= 0.0f) return;
    uint64_t now = sp_world_tick(c->world);
    float dt = sp_world_def(c->world)->dt;
    size_t n = 0;
    for (uint32_t k = 0; k < SP_WORLD_MAX_NODES; k++)
        if (c->ghosts[k]) n += c->ghosts[k]->n;
    if (n == 0) return;
    if (n > c->gbody_cap) {
        sp_remote_body_t *v = realloc(c->gbody, n * sizeof *v);
        if (v == NULL) return;
        c->gbody = v;
        c->gbody_cap = n;
    }
    size_t m = 0;
    sp_entity_info_t here;
    for (uint32_t k = 0; k < SP_WORLD_MAX_NODES; k++) {
        const struct gmap *g = c->ghosts[k];
        for (size_t i = 0; g && i < g->n; i++) {
            const gent_t *e = &g->v[i];
            if (e->tick + GH_MAX_AGE < now || sp_world_inspect(c->world, e->t.id, &here) == 0) continue;
            sp_remote_body_t *b = &c->gbody[m++];
            b->id = e->t.id;
            b->kind = e->t.kind;
            b->owner = e->t.owner;
            float ahead = now > e->tick ? (float)(now - e->tick) * dt : 0.0f;
            for (int a = 0; a < 3; a++) {
                b->pos[a] = e->t.pos[a] + e->vel[a] * ahead;
                b->vel[a] = e->vel[a];
            }
            b->radius = e->t.radius;
        }
    }
    int r = sp_world_collide_remote(c->world, c->gbody, m);
    if (r > 0) c->ls.ghost_contacts += (uint64_t)r;
}

static int row_id_cmp(const void *a, const void *b) {
    uint64_t x = ((const sp_frame_row_t *)a)->id, y = ((const sp_frame_row_t *)b)->id;
    return x < y ? -1 : x > y;
}

int sp_cluster_mine_nearest_ghost(sp_cluster_t *c, uint64_t ship, int resource) {
    sp_entity_info_t s;
    if (sp_world_inspect(c->world, ship, &s) != 0) return SP_ENOENT;
    const sp_world_def_t *d = sp_world_def(c->world);
    uint64_t now = sp_world_tick(c->world), best = 0;
    float bestgap = 0.0f;
    for (uint32_t k = 0; k < SP_WORLD_MAX_NODES; k++) {
        const struct gmap *g = c->ghosts[k];
        for (size_t i = 0; g && i < g->n; i++) {
            const gent_t *e = &g->v[i];
            if (e->t.kind != SP_KIND_ASTEROID || e->t.resource != resource || e->tick + GH_MAX_AGE < now) continue;
            float ahead = now > e->tick ? (float)(now - e->tick) * d->dt : 0.0f, d2 = 0.0f;
            for (int a = 0; a < 3; a++) {
                float q = e->t.pos[a] + e->vel[a] * ahead - s.pos[a];
                d2 += q * q;
            }
            float gap = sqrtf(d2) - s.radius - e->t.radius;
            if (gap > d->mining_range) continue;
            if (best == 0 || gap < bestgap || (gap == bestgap && e->t.id < best)) {
                best = e->t.id;
                bestgap = gap;
            }
        }
    }
    if (best == 0) return SP_ERANGE;
    sp_mine_result_t mr;
    return sp_cluster_mine_ghost(c, ship, best, &mr);
}

sp_frame_t *sp_cluster_ghost_frame(sp_cluster_t *c) {
    uint64_t now = sp_world_tick(c->world);
    float dt = sp_world_def(c->world)->dt;
    size_t n = 0;
    for (uint32_t k = 0; k < SP_WORLD_MAX_NODES; k++)
        if (c->ghosts[k]) n += c->ghosts[k]->n;
    if (n == 0) return NULL;
    sp_frame_row_t *rows = malloc(n * sizeof *rows);
    if (rows == NULL) return NULL;
    size_t m = 0;
    sp_entity_info_t here;
    for (uint32_t k = 0; k < SP_WORLD_MAX_NODES; k++) {
        const struct gmap *g = c->ghosts[k];
        for (size_t i = 0; g && i < g->n; i++) {
            const gent_t *e = &g->v[i];
            /* (not one this world holds now: it came over since its ghost was sent) */
            if (e->tick + GH_MAX_AGE < now || sp_world_inspect(c->world, e->t.id, &here) == 0) continue;
            sp_frame_row_t *r = &rows[m++];
            memset(r, 0, sizeof *r);
            r->id = e->t.id;
            float ahead = now > e->tick ? (float)(now - e->tick) * dt : 0.0f;
            for (int a = 0; a < 3; a++) {
                r->pos[a] = (int32_t)lroundf((e->t.pos[a] + e->vel[a] * ahead) * SP_FRAME_POS_SCALE);
                r->vel[a] = (int32_t)lroundf(e->vel[a] * SP_FRAME_VEL_SCALE);
            }
            r->hp = r->max_hp = (uint32_t)lroundf(e->hp > 0 ? e->hp * SP_FRAME_HP_SCALE : 0);
            r->owner = e->t.owner;
            r->radius = (uint16_t)lroundf(e->t.radius * SP_FRAME_RADIUS_SCALE);
            r->kind = e->t.kind;
            r->resource = e->t.kind == SP_KIND_ASTEROID ? e->t.resource : -1;
            r->amount = e->t.kind == SP_KIND_ASTEROID ? (uint32_t)lroundf(e->t.amount * SP_FRAME_AMOUNT_SCALE) : 0;
        }
    }
    qsort(rows, m, sizeof *rows, row_id_cmp);
    /* (an id twice: two neighbours each sent it across one hand-off; keep one) */
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || rows[u - 1].id != rows[i].id) rows[u++] = rows[i];
    sp_frame_t *f = u ? sp_frame_from_rows(c->world, now, rows, (uint32_t)u) : NULL;
    free(rows);
    return f;
}

/* A hit from a neighbour's ship on an entity here. */
static void hit_apply(sp_cluster_t *c, const char *p, size_t len) {
    if (len != 28 || memcmp(p, "SPH1", 4) != 0) return;
    uint64_t target, by;
    float v;
    memcpy(&target, p + 8, 8);
    memcpy(&by, p + 16, 8);
    memcpy(&v, p + 24, 4);
    int r = p[4] == 1 ? sp_world_damage(c->world, target, v, by, NULL)
            : p[4] == 2 ? sp_world_deplete(c->world, target, v, by, NULL)
                        : SP_EINVAL;
    if (r == 0) c->ls.hits_in++;
    else c->ls.hits_lost++; /* gone meanwhile (destroyed, or handed on) */
}

/* The band's neighbours of (x, y): the owners, not this node, of the cells
 * within band in x, y or both. Up to 8 nodes in out; returns how many. */
static int band_nodes(const sp_cluster_t *c, float x, float y, uint32_t out[8]) {
    const float b = c->band;
    const float dx[8] = {-b, b, 0, 0, -b, -b, b, b}, dy[8] = {0, 0, -b, b, -b, b, -b, b};
    int n = 0;
    for (int k = 0; k < 8; k++) {
        int32_t o = c->owner[sp_cells_of(&c->conf.cells, x + dx[k], y + dy[k])];
        if (o < 0 || o == (int32_t)c->conf.node) continue;
        bool seen = false;
        for (int j = 0; j < n; j++) seen |= out[j] == (uint32_t)o;
        if (!seen) out[n++] = (uint32_t)o;
    }
    return n;
}

static void gh_flush(sp_cluster_t *c, uint32_t node) {
    size_t len = c->glen[node];
    if (len <= GH_HEAD) return;
    uint32_t n = (uint32_t)((len - GH_HEAD) / GH_REC);
    memcpy(c->gbuf[node] + 16, &n, 4);
    if (room_to_net(c, 4)) { /* (hand-offs first: a full ring drops ghosts, never a hand-off) */
        item_t *it = item_new(IT_GHOSTS);
        if (it) {
            it->to = node;
            it->text = c->gbuf[node];
            it->len = len;
            c->gbuf[node] = NULL;
            c->gcap[node] = 0;
            to_net(c, it);
            c->ls.ghosts_out += n;
        }
    } else {
        /* Not sent: what the neighbour believes is unknown, so send all
         * again next time (a dropped batch must not leave it stale). */
        gmap_free(c->gsent[node]);
        c->gsent[node] = NULL;
    }
    c->glen[node] = 0;
}

/* Append one record for node d (kind 0: gone). */
static void gh_add(sp_cluster_t *c, uint32_t d, const gent_t *e, uint8_t kind, uint64_t tick) {
    if (c->glen[d] == 0) {
        if (c->gcap[d] < GH_HEAD + GH_REC * 64) {
            char *b = realloc(c->gbuf[d], GH_HEAD + GH_REC * 64);
            if (b == NULL) return;
            c->gbuf[d] = b;
            c->gcap[d] = GH_HEAD + GH_REC * 64;
        }
        memcpy(c->gbuf[d], "SPG1", 4);
        memcpy(c->gbuf[d] + 4, &c->conf.node, 4);
        memcpy(c->gbuf[d] + 8, &tick, 8);
        c->glen[d] = GH_HEAD;
    }
    if (c->glen[d] + GH_REC > c->gcap[d]) {
        size_t cap = c->gcap[d] * 2;
        char *b = realloc(c->gbuf[d], cap);
        if (b == NULL) return;
        c->gbuf[d] = b;
        c->gcap[d] = cap;
    }
    char *r = c->gbuf[d] + c->glen[d];
    memset(r, 0, GH_REC);
    memcpy(r, &e->t.id, 8);
    memcpy(r + 8, &e->t.owner, 4);
    r[12] = (char)kind;
    r[13] = (char)e->t.resource;
    memcpy(r + 16, e->t.pos, 12);
    memcpy(r + 28, e->vel, 12);
    memcpy(r + 40, &e->t.radius, 4);
    memcpy(r + 44, &e->hp, 4);
    memcpy(r + 48, &e->t.amount, 4);
    c->glen[d] += GH_REC;
    if ((c->glen[d] - GH_HEAD) / GH_REC >= GH_CHUNK) gh_flush(c, d);
}

static bool drifted(const gent_t *s, const sp_entity_info_t *e, uint64_t tick, float dt) {
    if (tick >= s->tick + GH_REFRESH) return true; /* a refresh: keeps the neighbour's copy alive */
    if (e->hp != s->hp || e->owner != s->t.owner || e->amount != s->t.amount || e->radius != s->t.radius) return true;
    float ahead = (float)(tick - s->tick) * dt;
    for (int k = 0; k < 3; k++) {
        if (fabsf(e->vel[k] - s->vel[k]) > GH_EPS) return true;
        if (fabsf(s->t.pos[k] + s->vel[k] * ahead - e->pos[k]) > GH_EPS) return true;
    }
    return false;
}

static int ghost_scan(void *ctx, sp_entity_id_t id, float x, float y) {
    sp_cluster_t *c = ctx;
    uint32_t nodes[8];
    int nn = band_nodes(c, x, y, nodes);
    if (nn == 0) return 0;
    sp_entity_info_t e;
    if (sp_world_inspect(c->world, id, &e) != 0) return 0;
    if (e.kind != SP_KIND_SHIP && e.kind != SP_KIND_ASTEROID) return 0;
    uint64_t tick = sp_world_tick(c->world);
    float dt = sp_world_def(c->world)->dt;
    for (int k = 0; k < nn; k++) {
        uint32_t d = nodes[k];
        struct gmap *m = c->gsent[d];
        if (m == NULL && (m = c->gsent[d] = calloc(1, sizeof *m)) == NULL) continue;
        bool fresh;
        gent_t *s = gmap_put(m, id, &fresh);
        if (s == NULL) continue;
        s->mark = c->gmark;
        /* Dead reckoning: the neighbour extrapolates pos + vel * time, so
         * an entity on a straight line is sent only every GH_REFRESH ticks. */
        if (!fresh && !drifted(s, &e, tick, dt)) continue;
        s->t.kind = e.kind;
        s->t.resource = e.resource;
        s->t.owner = e.owner;
        memcpy(s->t.pos, e.pos, sizeof s->t.pos);
        memcpy(s->vel, e.vel, sizeof s->vel);
        s->t.radius = e.radius;
        s->hp = e.hp;
        s->t.amount = e.amount;
        s->tick = tick;
        gh_add(c, d, s, e.kind, tick);
    }
    return 0;
}

/* After the step's hand-offs: this step's ghosts to each neighbour: what
 * entered the band or left the line it was predicted on, and "gone" for
 * what left the band (or the world). */
static void ghosts_publish(sp_cluster_t *c) {
    if (c->band <= 0.0f) return;
    c->gmark++;
    sp_world_foreach_xy(c->world, ghost_scan, c);
    uint64_t tick = sp_world_tick(c->world);
    for (uint32_t n = 0; n < SP_WORLD_MAX_NODES; n++) {
        struct gmap *m = c->gsent[n];
        for (size_t k = 0; m && k < m->n;) {
            if (m->v[k].mark == c->gmark) {
                k++;
                continue;
            }
            uint64_t id = m->v[k].t.id;
            gh_add(c, n, &m->v[k], 0, tick);
            if (c->gsent[n] != m) break; /* a batch was dropped with the table: all goes again next time */
            gmap_del(m, id);             /* the last entry moved to k: look at k again */
        }
        if (c->glen[n]) gh_flush(c, n);
    }
}

void sp_cluster_apply(sp_cluster_t *c) {
    void *p;
    if (c->scan_owed && !c->fenced) hand_off_leavers(c); /* the last step's, again */
    if (c->ann_owed && room_to_net(c, 1)) {
        item_t *ann = item_new(IT_ANNOUNCE);
        if (ann) {
            ann->rev = sp_world_tick(c->world);
            to_net(c, ann);
            c->ann_owed = false;
        }
    }
    if (!c->fenced) release_early(c);
    /* Departures the stream stored: their outbox entries go. */
    void *q;
    while (sp_spsc_try_pop(&c->confirms, &q) == 0) outbox_done(c, (uint64_t)(uintptr_t)q);
    /* Room for what an item can produce: an ack, a return publish, a reply. */
    while (room_to_net(c, 3 + 2 * c->nheld) && sp_spsc_try_pop(&c->to_loop, &p) == 0) {
        item_t *it = p;
        switch (it->type) {
        case IT_IMPORT:
            if (it->seq > c->recv_seq) c->recv_seq = it->seq;
            if (c->fenced) { /* a lapsed member creates no entity: keep it for later */
                items_keep(&c->held, &c->nheld, &c->capheld, it);
            } else {
                route_import(c, it);
            }
            break;
        case IT_SEEN:
            if (it->seq > c->recv_seq) c->recv_seq = it->seq;
            free(it);
            break;
        case IT_FRONTIER:
            c->fr_all = it->flag != 0;
            c->fr_tick = it->rev;
            c->fr_seq = it->seq;
            c->fr_peers = (uint32_t)it->owner;
            free(it);
            break;
        case IT_OWNER:
            c->owner[it->cell] = it->owner;
            c->rev[it->cell] = it->rev;
            free(it);
            break;
        case IT_FENCE:
            c->fenced = it->flag != 0;
            free(it);
            if (!c->fenced) {
                for (size_t k = 0; k < c->nheld; k++) route_import(c, c->held[k]);
                c->nheld = 0;
            }
            break;
        case IT_CTL:
            apply_ctl(c, it);
            break;
        case IT_PUBFAIL:
            compensate(c, &it->h.st);
            outbox_done(c, it->dep);
            free(it);
            break;
        case IT_GHOSTS_IN:
            ghosts_take(c, it->text, it->len);
            free(it->text);
            free(it);
            break;
        case IT_HIT_IN:
            if (!c->fenced) hit_apply(c, it->text, it->len); /* (a lapsed member changes nothing) */
            free(it->text);
            free(it);
            break;
        default:
            free(it);
            break;
        }
    }
    /* A step waits for the frontier and it just opened: run it now rather
     * than at the next tick period. */
    if (c->wait_since && c->ready_cb && !sp_cluster_frozen(c) && frontier_open(c)) c->ready_cb(c->ready_ctx);
}

static int scan_fn(void *ctx, sp_entity_id_t id, float x, float y) {
    sp_cluster_t *c = ctx;
    uint32_t cell = sp_cells_of(&c->conf.cells, x, y);
    int32_t o = c->owner[cell];
    if (o == (int32_t)c->conf.node) return 0;
    if (o < 0) {
        c->ls.homeless++;
        return 0;
    }
    for (size_t k = 0; k < c->nbo; k++) /* O(bounced waiting): none, almost always */
        if (c->bo[k].id == id) return 0;
    if (c->nleavers == c->capleavers) {
        size_t nc = c->capleavers ? 2 * c->capleavers : 1024;
        sp_entity_id_t *v = realloc(c->leavers, nc * sizeof *v);
        if (v == NULL) return 1; /* the rest waits for the next tick */
        c->leavers = v;
        c->capleavers = nc;
    }
    c->leavers[c->nleavers++] = id;
    return 0;
}

/* The step's leavers (every entity in a cell another daemon owns) handed
 * off, then the step's announcement after them in the same ring (the NATS
 * thread sends it once they are all stored; see the header). When some
 * could not go (the ring toward NATS full, memory), neither does the
 * announcement: scan_owed keeps the frontier closed and sp_cluster_apply
 * tries again, so no entity of another daemon's cell is stepped here and
 * no peer steps before it has them. */
static void hand_off_leavers(sp_cluster_t *c) {
    uint64_t now_t = sp_world_tick(c->world);
    size_t kept = 0;
    for (size_t k = 0; k < c->nbo; k++) /* the waits that are over */
        if (c->bo[k].until > now_t) c->bo[kept++] = c->bo[k];
    c->nbo = kept;
    c->nleavers = 0;
    c->ls.homeless = 0;
    sp_world_foreach_xy(c->world, scan_fn, c);
    bool all = true;
    for (size_t k = 0; k < c->nleavers; k++) {
        if (!room_to_net(c, 4)) { /* the NATS thread is behind */
            all = false;
            break;
        }
        sp_entity_state_t st;
        if (sp_world_export(c->world, c->leavers[k], &st) != 0) continue;
        uint32_t cell = sp_cells_of(&c->conf.cells, st.px, st.py);
        st.epoch++;
        if (!send_off(c, &st, (uint32_t)c->owner[cell], cell, 0)) all = false;
    }
    c->scan_owed = !all;
    if (!all) return;
    item_t *ann = room_to_net(c, 1) ? item_new(IT_ANNOUNCE) : NULL;
    if (ann) {
        ann->rev = sp_world_tick(c->world);
        to_net(c, ann);
    } else {
        c->ann_owed = true; /* sent by the next sp_cluster_apply */
    }
}

void sp_cluster_after_step(sp_cluster_t *c) {
    /* The step ran, so the cluster was not frozen before it; only the fence
     * is re-read (it changes in sp_cluster_apply alone, so it cannot have).
     * Not sp_cluster_frozen: a paused daemon that just caught up is frozen
     * now, and its step's hand-offs and announcement must still go. */
    if (c->fenced) return;
    release_early(c); /* hand-offs stamped with the tick just reached: before the scan */
    ghosts_collide(c); /* this step's contacts across the border, before anything leaves or is sent */
    hand_off_leavers(c);
    ghosts_publish(c);
    uint64_t t = sp_world_tick(c->world);
    if (c->conf.test_hold_at && t >= c->conf.test_hold_at &&
        !atomic_load_explicit(&c->hold_pub, memory_order_relaxed)) { /* relaxed: see hold_pub */
        atomic_store_explicit(&c->hold_pub, 1, memory_order_relaxed);
        SP_LOGI("cluster: tests: no hand-off published from tick %" PRIu64 " on (--cluster-test-hold-at)", t);
    }
    if (c->pause_at && t >= c->pause_at && !c->paused) {
        c->paused = true;
        c->pause_at = 0; /* once: an operator's resume lets it run on */
        SP_LOGI("cluster: paused at tick %" PRIu64 " (--cluster-pause-at)", t);
    }
}

/* ---------------------------------------------------------------- checkpoints
 *
 * A cluster daemon's checkpoint (issue 10 point 7) is its world plus this
 * annex, ahead of the sessions' annex (checkpoint.c):
 *   "SPCLUS\0\0", u32 total length, u32 version 1, u32 node, u64 incarnation,
 *   u64 replay_from, u64 tick, u32 ncells, ncells x (i32 owner, u64 rev),
 *   u32 nout, nout x one hand-off (wire.h, sp_wire_size() bytes each)
 * all little-endian. On restart (sp_cluster_restore) the outbox entries are
 * put back as they were before they departed, then every stream message
 * after replay_from is applied in stream order: one to this node is imported
 * (judged by epoch, so one already in the world changes nothing), one this
 * node sent elsewhere departs the entity it carried if the world still has
 * it at a lower epoch (it lives at the receiver now). replay_from is low
 * enough that no message the saved world does not reflect lies at or below
 * it: recv_seq (the imports popped), lowered below any import popped but
 * not applied (early, held) and to the floor of any departure not known to
 * be stored (its message, if any, comes after that floor). Too low only
 * costs replay time: every step is idempotent. */
#define ANNEX_MAGIC "SPCLUS\0\0"
#define ANNEX_HEAD (8 + 4 + 4 + 4 + 8 + 8 + 8 + 4)

static uint8_t *le_put(uint8_t *p, uint64_t v, int n) {
    for (int k = 0; k < n; k++) p[k] = (uint8_t)(v >> (8 * k));
    return p + n;
}
static uint64_t le_get(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; k++) v |= (uint64_t)p[k] << (8 * k);
    return v;
}

int sp_cluster_annex_split(const uint8_t *a, size_t len, size_t *cl_len, uint32_t *node) {
    *cl_len = 0;
    if (len < 8 || memcmp(a, ANNEX_MAGIC, 8) != 0) return 0;
    if (len < ANNEX_HEAD) return SP_ECORRUPT;
    uint64_t n = le_get(a + 8, 4);
    if (n < ANNEX_HEAD || n > len || le_get(a + 12, 4) != 1) return SP_ECORRUPT;
    *cl_len = (size_t)n;
    *node = (uint32_t)le_get(a + 16, 4);
    return 1;
}

int sp_cluster_checkpoint_annex(const sp_cluster_t *c, uint8_t **out, size_t *len) {
    uint64_t from = c->recv_seq;
    for (size_t k = 0; k < c->nearly; k++)
        if (c->early[k]->seq && c->early[k]->seq - 1 < from) from = c->early[k]->seq - 1;
    for (size_t k = 0; k < c->nheld; k++)
        if (c->held[k]->seq && c->held[k]->seq - 1 < from) from = c->held[k]->seq - 1;
    size_t nout = 0;
    for (size_t k = 0; k < c->ob_n; k++) {
        const outent_t *e = &c->ob[c->ob_head + k];
        if (e->done) continue;
        nout++;
        if (e->floor < from) from = e->floor;
    }
    size_t ws = sp_wire_size();
    size_t n = ANNEX_HEAD + (size_t)c->ncells * 12 + 4 + nout * ws;
    if (n > UINT32_MAX) return SP_EOVERFLOW;
    uint8_t *b = malloc(n), *p = b;
    if (b == NULL) return SP_ENOMEM;
    memcpy(p, ANNEX_MAGIC, 8);
    p += 8;
    p = le_put(p, n, 4);
    p = le_put(p, 1, 4);
    p = le_put(p, c->conf.node, 4);
    p = le_put(p, c->inc, 8);
    p = le_put(p, from, 8);
    p = le_put(p, sp_world_tick(c->world), 8);
    p = le_put(p, c->ncells, 4);
    for (uint32_t i = 0; i < c->ncells; i++) {
        p = le_put(p, (uint32_t)c->owner[i], 4);
        p = le_put(p, c->rev[i], 8);
    }
    p = le_put(p, nout, 4);
    for (size_t k = 0; k < c->ob_n; k++) {
        const outent_t *e = &c->ob[c->ob_head + k];
        if (!e->done) p += sp_wire_encode(&e->h, p);
    }
    SP_ASSERT((size_t)(p - b) == n);
    *out = b;
    *len = n;
    return 0;
}

/* Apply every message of the stream after `from` (see above). Main thread,
 * before the NATS thread exists. */
static int replay(sp_cluster_t *c, sp_world_t *w, uint64_t from, uint64_t *n_in, uint64_t *n_out, uint64_t *n_msgs) {
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, c->js, STREAM, NULL, &jerr);
    if (s != NATS_OK) {
        SP_LOGE("cluster: resume: the stream's state: %s", st_text(s));
        return SP_EIO;
    }
    uint64_t last = si->State.LastSeq, first = si->State.FirstSeq;
    jsStreamInfo_Destroy(si);
    if (last <= from) return 0;
    if (first > from + 1) {
        /* The stream never loses messages here (no limits), so this is
         * another NATS store than the one the checkpoint was made with. */
        SP_LOGE("cluster: resume: the stream starts at %" PRIu64 " but the checkpoint needs it from %" PRIu64
                " (another NATS store?)", first, from + 1);
        return SP_EINVAL;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from + 1;
    natsSubscription *sub = NULL;
    s = js_SubscribeSync(&sub, c->js, "sp.ho.>", NULL, &so, &jerr);
    if (s != NATS_OK) {
        SP_LOGE("cluster: resume: reading the stream from %" PRIu64 ": %s", from + 1, st_text(s));
        return SP_EIO;
    }
    char mine[32];
    snprintf(mine, sizeof mine, "sp.ho.%u", c->conf.node);
    int rc = 0;
    for (;;) {
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, 10000);
        if (s != NATS_OK) {
            SP_LOGE("cluster: resume: the stream stopped before %" PRIu64 ": %s", last, st_text(s));
            rc = SP_EIO;
            break;
        }
        uint64_t seq = msg_seq(m);
        sp_wire_handoff_t h;
        if (sp_wire_decode((const uint8_t *)natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &h) == 0) {
            (*n_msgs)++;
            if (strcmp(natsMsg_GetSubject(m), mine) == 0) {
                if (sp_world_import(w, &h.st) == 0) (*n_in)++;
            } else if (h.origin == c->conf.node) {
                sp_entity_state_t cur;
                if (sp_world_export(w, h.st.id, &cur) == 0 && cur.epoch < h.st.epoch &&
                    sp_world_depart(w, h.st.id, h.st.epoch) == 0)
                    (*n_out)++;
            }
        }
        natsMsg_Destroy(m);
        if (seq >= last) break;
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return rc;
}

size_t sp_cluster_outbox_len(const sp_cluster_t *c) {
    size_t n = 0;
    for (size_t k = 0; k < c->ob_n; k++) n += !c->ob[c->ob_head + k].done;
    return n;
}

int sp_cluster_restore(sp_cluster_t *c, sp_world_t *w, const uint8_t *a, size_t len) {
    size_t n;
    uint32_t node;
    if (sp_cluster_annex_split(a, len, &n, &node) != 1 || n != len) return SP_ECORRUPT;
    if (node != c->conf.node) {
        SP_LOGE("cluster: the checkpoint is node %u's, this daemon is node %u", node, c->conf.node);
        return SP_EINVAL;
    }
    const uint8_t *p = a + 8 + 4 + 4 + 4;
    uint64_t inc = le_get(p, 8), from = le_get(p + 8, 8), tick = le_get(p + 16, 8);
    uint32_t ncells = (uint32_t)le_get(p + 24, 4);
    p += 28;
    size_t ws = sp_wire_size();
    if (ncells != c->ncells) {
        SP_LOGE("cluster: the checkpoint has %u cells, --cells gives %u", ncells, c->ncells);
        return SP_EINVAL;
    }
    if ((size_t)(a + len - p) < (size_t)ncells * 12 + 4) return SP_ECORRUPT;
    p += (size_t)ncells * 12; /* the epochs then: the bucket's are the truth now */
    uint64_t nout = le_get(p, 4);
    p += 4;
    if ((size_t)(a + len - p) != nout * ws) return SP_ECORRUPT;
    uint64_t back = 0;
    for (uint64_t k = 0; k < nout; k++, p += ws) {
        sp_wire_handoff_t h;
        if (sp_wire_decode(p, ws, &h) != 0 || h.st.epoch == 0) return SP_ECORRUPT;
        /* As it was before it departed: the epoch below the message's, and
         * no memory of the departure (the replay departs it again if the
         * message was stored). */
        sp_world_forget_departed(w, h.st.id);
        h.st.epoch--;
        int r = sp_world_import(w, &h.st);
        if (r == 0) back++;
        else if (r < 0) SP_LOGW("cluster: resume: a departure in the checkpoint (entity %" PRIu64 ") could not be put back: %s",
                                h.st.id, sp_strerror(r));
    }
    uint64_t in = 0, out = 0, msgs = 0;
    int rc = replay(c, w, from, &in, &out, &msgs);
    if (rc != 0) return rc;
    c->ls.resumed_in = in;
    c->ls.resumed_out = out;
    SP_LOGI("cluster: resumed node %u's checkpoint of incarnation %" PRIu64 " (tick %" PRIu64 "): %" PRIu64
            " departures put back; stream from %" PRIu64 ": %" PRIu64 " messages, %" PRIu64 " imported, %" PRIu64
            " handed off since",
            node, inc, tick, back, from + 1, msgs, in, out);
    return 0;
}

void sp_cluster_stop(sp_cluster_t *c) {
    if (c == NULL) return;
    /* Relaxed: see `stop`; the join below is the synchronisation. */
    atomic_store_explicit(&c->stop, 1, memory_order_relaxed);
    bool was_running = c->thread_started;
    if (c->thread_started) pthread_join(c->thread, NULL);
    c->thread_started = false;
    /* Leave the membership (the NATS thread is gone: this thread may call
     * nats.c now), so peers stop waiting for this node's ticks at once
     * instead of after the TTL; hand-offs to its cells wait in the stream
     * for its next start. Only our own key: a newer incarnation of this node
     * may have written it since. */
    if (was_running && c->kv_members != NULL) {
        char key[32], mine[64];
        snprintf(key, sizeof key, "n%u", c->conf.node);
        int ml = snprintf(mine, sizeof mine, "inc %" PRIu64 " ", c->inc);
        kvEntry *e = NULL;
        if (kvStore_Get(&e, c->kv_members, key) == NATS_OK && kvEntry_ValueLen(e) >= ml &&
            memcmp(kvEntry_Value(e), mine, (size_t)ml) == 0 && kvStore_Delete(c->kv_members, key) == NATS_OK)
            SP_LOGI("cluster: node %u left the membership", c->conf.node);
        kvEntry_Destroy(e);
    }
    if (c->wake_open) uv_close((uv_handle_t *)&c->wake, NULL);
    c->wake_open = false;
}

static void free_item(item_t *it) {
    if (it == NULL) return;
    if (it->msg) natsMsg_Destroy(it->msg);
    free(it->text);
    free(it);
}

void sp_cluster_free(sp_cluster_t *c) {
    if (c == NULL) return;
    void *p;
    while (sp_spsc_try_pop(&c->to_loop, &p) == 0) free_item(p);
    while (sp_spsc_try_pop(&c->to_net, &p) == 0) free_item(p);
    while (c->oq_head) {
        item_t *it = c->oq_head;
        oq_unlink(c, it->next);
        free_item(it);
    }
    free_item(c->stash);
    for (size_t k = 0; k < c->nheld; k++) free_item(c->held[k]);
    free(c->held);
    free(c->leavers);
    natsSubscription_Destroy(c->pull);
    natsSubscription_Destroy(c->ctl);
    natsSubscription_Destroy(c->tick_sub);
    natsSubscription_Destroy(c->gh_sub);
    natsSubscription_Destroy(c->hit_sub);
    kvWatcher_Destroy(c->cells_w);
    for (uint32_t n = 0; n < SP_WORLD_MAX_NODES; n++) {
        gmap_free(c->ghosts[n]);
        gmap_free(c->gsent[n]);
        if (n == 0) free(c->gbody);
        free(c->gbuf[n]);
    }
    for (size_t k = 0; k < c->nearly; k++) free_item(c->early[k]);
    free(c->early);
    free(c->last_to);
    free(c->ann_to);
    free(c->bo);
    free(c->tally[0]);
    free(c->tally[1]);
    free(c->peers);
    kvStore_Destroy(c->kv_cells);
    kvStore_Destroy(c->kv_members);
    jsCtx_Destroy(c->js);
    if (c->nc) {
        natsConnection_Close(c->nc);
        natsConnection_Destroy(c->nc);
    }
    sp_spsc_destroy(&c->to_loop);
    sp_spsc_destroy(&c->to_net);
    sp_spsc_destroy(&c->confirms);
    free(c->ob);
    free(c->conf_pend);
    free(c->net_owner);
    free(c->net_rev);
    free(c->owner);
    free(c->rev);
    if (c->journal_fd >= 0) close(c->journal_fd);
    free(c);
}
