/* cells_tool.c: spacesim-cells, the operator's tool of a spacesimd cluster
 * (issue 10). It talks to NATS only: the ownership bucket (sp_cells), the
 * hand-off stream's consumers, and the daemons' control subjects
 * sp.ctl.<node>.* (answered by their NATS thread, built on their loop).
 *
 *   spacesim-cells [--nats URL] [--cells NxM] [--timeout SECS] COMMAND ...
 *     list                  every cell: owner node and revision (its epoch)
 *     move CELL NODE        give CELL to NODE: a CAS on the cell's revision;
 *                           the old owner hands off every entity of the cell
 *     status NODE...        each daemon's figures (one line each)
 *     dump NODE             the figures, then "e ID EPOCH" per entity and
 *                           "d ID EPOCH" per departure memory entry
 *     pause NODE... / resume NODE...
 *     consumers NODE...     each node's hand-off consumer: pending, unacked
 *     audit [--expect N] [--died JOURNAL]... [--keep-paused] NODE...
 *         pause the daemons, wait until nothing is in flight (no outbox, no
 *         unacked or pending hand-off in any consumer, figures unchanged
 *         over two rounds), dump them all and check: every id at most once,
 *         none missing from ids 1..N (a ship of node 0's first
 *         incarnation), no departure memory at or above a live epoch
 *         elsewhere. A missing id is "died" (not lost) when a --died
 *         journal (--cluster-journal of a daemon that was killed) shows its
 *         newest record there was held or queued, never confirmed stored.
 *         Then resume (unless --keep-paused). Exit 0 when all holds.
 * Exit status: 0 ok, 1 failure (printed), 2 usage. */
#include <inttypes.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cells.h"

static const char *url = "nats://127.0.0.1:4222";
static uint32_t nx = 2, ny = 2;
static int64_t timeout_ms = 30000;
static natsConnection *nc;
static jsCtx *js;

static void die(const char *what, natsStatus s) {
    fprintf(stderr, "spacesim-cells: %s: %s\n", what, natsStatus_GetText(s));
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static kvStore *cells_kv(void) {
    kvStore *kv = NULL;
    natsStatus s = js_KeyValue(&kv, js, "sp_cells");
    if (s != NATS_OK) die("the sp_cells bucket (has a daemon started?)", s);
    return kv;
}

static int cmd_list(void) {
    kvStore *kv = cells_kv();
    for (uint32_t i = 0; i < nx * ny; i++) {
        char key[32];
        snprintf(key, sizeof key, "c%u", i);
        kvEntry *e = NULL;
        natsStatus s = kvStore_Get(&e, kv, key);
        if (s == NATS_NOT_FOUND) {
            printf("cell %u owner none\n", i);
            continue;
        }
        if (s != NATS_OK) die("reading a cell", s);
        printf("cell %u owner %.*s rev %" PRIu64 "\n", i, kvEntry_ValueLen(e), (const char *)kvEntry_Value(e),
               kvEntry_Revision(e));
        kvEntry_Destroy(e);
    }
    kvStore_Destroy(kv);
    return 0;
}

static int cmd_move(const char *cell, const char *node) {
    kvStore *kv = cells_kv();
    char key[32];
    snprintf(key, sizeof key, "c%s", cell);
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, kv, key);
    uint64_t rev = 0, nrev = 0;
    char old[32] = "none";
    if (s == NATS_OK) {
        rev = kvEntry_Revision(e);
        snprintf(old, sizeof old, "%.*s", kvEntry_ValueLen(e), (const char *)kvEntry_Value(e));
        kvEntry_Destroy(e);
    } else if (s != NATS_NOT_FOUND) {
        die("reading the cell", s);
    }
    /* The CAS: fails if anyone changed the cell since we read it. */
    s = rev ? kvStore_Update(&nrev, kv, key, node, (int)strlen(node), rev)
            : kvStore_Create(&nrev, kv, key, node, (int)strlen(node));
    if (s != NATS_OK) die("moving the cell (changed meanwhile? run list and try again)", s);
    printf("cell %s: owner %s -> %s (revision %" PRIu64 " -> %" PRIu64 ")\n", cell, old, node, rev, nrev);
    kvStore_Destroy(kv);
    return 0;
}

/* A control request to one daemon; the reply's body (malloc'd, NUL-ended),
 * or NULL after `timeout_ms`. Retried: a daemon may be restarting. */
static char *ctl(const char *node, const char *verb, int64_t wait_ms) {
    char subj[64];
    snprintf(subj, sizeof subj, "sp.ctl.%s.%s", node, verb);
    double end = now_s() + (double)wait_ms / 1000.0;
    for (;;) {
        natsMsg *r = NULL;
        natsStatus s = natsConnection_RequestString(&r, nc, subj, "", 5000);
        if (s == NATS_OK && natsMsg_GetDataLength(r) > 0) {
            int n = natsMsg_GetDataLength(r);
            char *b = malloc((size_t)n + 1);
            if (b == NULL) exit(1);
            memcpy(b, natsMsg_GetData(r), (size_t)n);
            b[n] = '\0';
            natsMsg_Destroy(r);
            return b;
        }
        natsMsg_Destroy(r);
        if (now_s() > end) return NULL;
        nap_ms(100);
    }
}

static int cmd_ctl(const char *verb, int n, char **nodes) {
    int rc = 0;
    for (int k = 0; k < n; k++) {
        char *b = ctl(nodes[k], verb, timeout_ms);
        if (b == NULL) {
            fprintf(stderr, "spacesim-cells: node %s did not answer %s\n", nodes[k], verb);
            rc = 1;
            continue;
        }
        if (strcmp(verb, "dump") == 0) fputs(b, stdout);
        else {
            /* The two status lines as one. */
            for (char *p = b; *p; p++)
                if (*p == '\n' && p[1]) *p = ' ';
            fputs(b, stdout);
        }
        free(b);
    }
    return rc;
}

/* The value after `key ` in a status reply, or 0. */
static uint64_t field(const char *b, const char *key) {
    char pat[40];
    snprintf(pat, sizeof pat, " %s ", key);
    const char *p = strstr(b, pat);
    if (p == NULL) return 0;
    return strtoull(p + strlen(pat), NULL, 10);
}

static uint64_t consumer_pending(const char *node) {
    char durable[32];
    snprintf(durable, sizeof durable, "node-%s", node);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, js, "SPHO", durable, NULL, &jerr);
    if (s != NATS_OK) return UINT64_MAX; /* not there yet, or the server is away: not quiet */
    uint64_t p = ci->NumPending + (uint64_t)ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    return p;
}

static int cmd_consumers(int n, char **nodes) {
    int rc = 0;
    for (int k = 0; k < n; k++) {
        char durable[32];
        snprintf(durable, sizeof durable, "node-%s", nodes[k]);
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetConsumerInfo(&ci, js, "SPHO", durable, NULL, &jerr);
        if (s != NATS_OK) {
            fprintf(stderr, "spacesim-cells: consumer %s: %s (%d)\n", durable, natsStatus_GetText(s), (int)jerr);
            rc = 1;
            continue;
        }
        printf("consumer %s pending %" PRIu64 " ack_pending %" PRId64 " redelivered %" PRId64 " waiting %" PRId64 "\n",
               durable, ci->NumPending, ci->NumAckPending, ci->NumRedelivered, ci->NumWaiting);
        jsConsumerInfo_Destroy(ci);
    }
    return rc;
}

/* ---------------------------------------------------------------- audit */

typedef struct rec {
    uint64_t id, epoch;
    int node; /* holder (e) or departer (d) */
} rec_t;

typedef struct jrec {
    uint64_t epoch;
    char what; /* newest record: S I C D P (P wins a tie: the hand-off was stored) */
} jrec_t;

static int cmp_rec(const void *a, const void *b) {
    const rec_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id ? 1 : x->epoch < y->epoch ? -1 : x->epoch > y->epoch;
}

static int cmd_audit(int argc, char **argv) {
    uint64_t expect = 0;
    bool keep = false;
    const char *died[16];
    int ndied = 0, nn = 0;
    char *nodes[64];
    for (int k = 0; k < argc; k++) {
        if (strcmp(argv[k], "--expect") == 0 && k + 1 < argc) expect = strtoull(argv[++k], NULL, 10);
        else if (strcmp(argv[k], "--died") == 0 && k + 1 < argc && ndied < 16) died[ndied++] = argv[++k];
        else if (strcmp(argv[k], "--keep-paused") == 0) keep = true;
        else if (nn < 64) nodes[nn++] = argv[k];
    }
    if (nn == 0) {
        fprintf(stderr, "spacesim-cells: audit needs the nodes\n");
        return 2;
    }
    double t0 = now_s(), end = t0 + (double)timeout_ms / 1000.0;
    for (int k = 0; k < nn; k++) {
        char *b = ctl(nodes[k], "pause", timeout_ms);
        if (b == NULL) {
            fprintf(stderr, "spacesim-cells: audit: node %s did not answer pause\n", nodes[k]);
            return 1;
        }
        free(b);
    }
    /* Quiet: nothing queued or in flight anywhere, twice with the same figures. */
    uint64_t prev = UINT64_MAX;
    int quiet_rounds = 0;
    uint64_t crossings = 0, returned = 0, refused = 0, dup = 0, stale = 0;
    while (quiet_rounds < 2) {
        if (now_s() > end) {
            fprintf(stderr, "spacesim-cells: audit: the cluster did not become quiet within %.0f s\n",
                    (double)timeout_ms / 1000.0);
            return 1;
        }
        bool quiet = true;
        uint64_t sig = 0;
        crossings = returned = refused = dup = stale = 0;
        for (int k = 0; k < nn && quiet; k++) {
            char *b = ctl(nodes[k], "status", 5000);
            if (b == NULL) {
                quiet = false;
                break;
            }
            if (field(b, "outq") || field(b, "inflight") || field(b, "held") || !field(b, "paused") ||
                consumer_pending(nodes[k]) != 0)
                quiet = false;
            crossings += field(b, "crossings");
            returned += field(b, "returned");
            refused += field(b, "refused");
            dup += field(b, "dup");
            stale += field(b, "stale");
            sig += field(b, "published") * 7 + field(b, "crossings") * 3 + field(b, "departs") + field(b, "acked") * 11;
            free(b);
        }
        if (quiet && sig == prev) quiet_rounds++;
        else quiet_rounds = 0;
        prev = quiet ? sig : UINT64_MAX;
        if (quiet_rounds < 2) nap_ms(50);
    }
    /* Dumps. */
    rec_t *held = NULL, *dep = NULL;
    size_t nh = 0, nd = 0, ch = 0, cd = 0;
    for (int k = 0; k < nn; k++) {
        char *b = ctl(nodes[k], "dump", timeout_ms);
        if (b == NULL) {
            fprintf(stderr, "spacesim-cells: audit: node %s did not answer dump\n", nodes[k]);
            return 1;
        }
        int node = atoi(nodes[k]);
        for (char *line = strtok(b, "\n"); line; line = strtok(NULL, "\n")) {
            uint64_t id, ep;
            char t;
            if (sscanf(line, "%c %" SCNu64 " %" SCNu64, &t, &id, &ep) != 3 || (t != 'e' && t != 'd')) continue;
            rec_t **v = t == 'e' ? &held : &dep;
            size_t *n = t == 'e' ? &nh : &nd, *cap = t == 'e' ? &ch : &cd;
            if (*n == *cap) {
                *cap = *cap ? 2 * *cap : 4096;
                *v = realloc(*v, *cap * sizeof **v);
                if (*v == NULL) exit(1);
            }
            (*v)[(*n)++] = (rec_t){id, ep, node};
        }
        free(b);
    }
    qsort(held, nh, sizeof *held, cmp_rec);
    uint64_t duplicated = 0, unexpected = 0, epoch_err = 0, lost = 0, dead = 0, x = 0, want_x = 0;
    for (size_t i = 0; i < nh; i++) {
        if (i > 0 && held[i].id == held[i - 1].id) {
            duplicated++;
            fprintf(stderr, "audit: id %" PRIu64 " held twice (nodes %d and %d)\n", held[i].id, held[i - 1].node,
                    held[i].node);
            continue;
        }
        x ^= held[i].id;
        if (expect && (held[i].id < 1 || held[i].id > expect)) unexpected++;
    }
    /* No daemon remembers sending an id at or past the epoch it lives at now
     * (that hand-off would still be in flight, yet nothing is). */
    for (size_t j = 0; j < nd; j++) {
        rec_t key = {dep[j].id, 0, 0};
        size_t lo = 0, hi = nh;
        while (lo < hi) { /* first held record of the id */
            size_t mid = (lo + hi) / 2;
            if (cmp_rec(&held[mid], &key) < 0) lo = mid + 1;
            else hi = mid;
        }
        if (lo < nh && held[lo].id == dep[j].id &&
            (dep[j].epoch > held[lo].epoch || (dep[j].epoch == held[lo].epoch && dep[j].node == held[lo].node))) {
            epoch_err++;
            fprintf(stderr, "audit: id %" PRIu64 " lives at epoch %" PRIu64 " on node %d but node %d departed it at %" PRIu64 "\n",
                    dep[j].id, held[lo].epoch, held[lo].node, dep[j].node, dep[j].epoch);
        }
    }
    /* The journals of killed daemons: each id's newest record there. */
    jrec_t *jr = expect ? calloc(expect + 1, sizeof *jr) : NULL;
    for (int k = 0; k < ndied && jr; k++) {
        FILE *f = fopen(died[k], "r");
        if (f == NULL) {
            fprintf(stderr, "spacesim-cells: cannot read journal %s\n", died[k]);
            return 1;
        }
        char t;
        uint64_t id, ep;
        while (fscanf(f, " %c %" SCNu64 " %" SCNu64, &t, &id, &ep) == 3) {
            if (id < 1 || id > expect) continue;
            if (ep > jr[id].epoch || jr[id].what == 0 || (ep == jr[id].epoch && t == 'P')) jr[id] = (jrec_t){ep, t};
        }
        fclose(f);
    }
    size_t hp = 0;
    for (uint64_t id = 1; id <= expect; id++) {
        want_x ^= id;
        while (hp < nh && held[hp].id < id) hp++;
        if (hp < nh && held[hp].id == id) continue;
        if (jr && jr[id].what && jr[id].what != 'P') {
            dead++;
        } else {
            lost++;
            if (lost <= 10) fprintf(stderr, "audit: id %" PRIu64 " lost\n", id);
        }
    }
    free(jr);
    size_t distinct = nh - duplicated;
    printf("audit: nodes %d count %zu expected %" PRIu64 " lost %" PRIu64 " died %" PRIu64 " duplicated %" PRIu64
           " epoch_errors %" PRIu64 " unexpected %" PRIu64 " xor_ok %d crossings %" PRIu64 " returned %" PRIu64
           " refused %" PRIu64 " redelivered_dup %" PRIu64 " redelivered_stale %" PRIu64 " quiet_after %.2f s\n",
           nn, distinct, expect, lost, dead, duplicated, epoch_err, unexpected,
           (dead == 0 && lost == 0) ? (x == want_x) : -1, crossings, returned, refused, dup, stale, now_s() - t0);
    free(held);
    free(dep);
    if (!keep)
        for (int k = 0; k < nn; k++) free(ctl(nodes[k], "resume", timeout_ms));
    bool ok = lost == 0 && duplicated == 0 && epoch_err == 0 && unexpected == 0 &&
              (dead != 0 || !expect || x == want_x);
    return ok ? 0 : 1;
}

static _Noreturn void usage(void) {
    fprintf(stderr,
            "usage: spacesim-cells [--nats URL] [--cells NxM] [--timeout SECS] COMMAND ...\n"
            "  list | move CELL NODE | status NODE... | dump NODE | pause NODE... | resume NODE...\n"
            "  consumers NODE...\n"
            "  audit [--expect N] [--died JOURNAL]... [--keep-paused] NODE...\n");
    exit(2);
}

int main(int argc, char **argv) {
    int k = 1;
    for (; k < argc && argv[k][0] == '-'; k++) {
        if (strcmp(argv[k], "--nats") == 0 && k + 1 < argc) url = argv[++k];
        else if (strcmp(argv[k], "--cells") == 0 && k + 1 < argc) {
            if (sp_cells_parse(argv[++k], &nx, &ny) != 0) usage();
        } else if (strcmp(argv[k], "--timeout") == 0 && k + 1 < argc)
            timeout_ms = (int64_t)(atof(argv[++k]) * 1000);
        else if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0)
            usage();
        else
            usage();
    }
    if (k >= argc) usage();
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetURL(o, url);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) die(url, s);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) die("JetStream", s);
    const char *cmd = argv[k++];
    int n = argc - k, rc;
    char **rest = argv + k;
    if (strcmp(cmd, "list") == 0 && n == 0) rc = cmd_list();
    else if (strcmp(cmd, "move") == 0 && n == 2) rc = cmd_move(rest[0], rest[1]);
    else if ((strcmp(cmd, "status") == 0 || strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0) && n >= 1)
        rc = cmd_ctl(cmd, n, rest);
    else if (strcmp(cmd, "dump") == 0 && n == 1) rc = cmd_ctl(cmd, n, rest);
    else if (strcmp(cmd, "consumers") == 0 && n >= 1) rc = cmd_consumers(n, rest);
    else if (strcmp(cmd, "audit") == 0) rc = cmd_audit(n, rest);
    else usage();
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
