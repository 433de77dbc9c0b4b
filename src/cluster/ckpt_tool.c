/* ckpt_tool.c: spacesim-ckpt, checkpoints between one process and a
 * cluster (issue 10, point 7). Files only: no NATS, no daemon.
 *
 *   spacesim-ckpt split IN --cells NxM (--owners A,B,... | --nodes N) --out DIR
 *       cut the one-process checkpoint IN by the cluster's cell map
 *       (cluster/cells.h: columns over x/y; cell = cy * nx + cx) into
 *       DIR/node-K.ckpt for every node K that owns a cell. --owners gives the
 *       node of every cell in cell order; --nodes N deals them round robin
 *       (cell c to node c % N). Each node's respawn targets are its share of
 *       cells. The sessions (the checkpoint's annex) go to DIR/sessions.bin,
 *       not into any part: a cluster keeps its sessions in front of the
 *       daemons. Prints, per part, its entities and canonical hash, and the
 *       `spacesim-cells move` commands that give the KV bucket the same map.
 *   spacesim-ckpt merge --out OUT [--node K] [--sessions FILE] PART...
 *       one checkpoint of node K (default 0) holding every entity of the
 *       parts (all at one tick, one definition); FILE's bytes become its
 *       sessions (default none).
 *   spacesim-ckpt info FILE...
 *       per file: node, tick, entities, canonical hash; with several files
 *       the cluster's totals (the canonical hash of a cluster is the sum).
 *
 * Output files are written with the daemon's own writer,
 * sp_save_write_file() (sim/save.h): a temporary file, fsync, rename, fsync
 * of the directory; a failed write leaves no temporary file. Exit status:
 * 0 ok, 1 failure (printed), 2 usage. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cluster/cells.h"
#include "sim/save.h"
#include "sim/split.h"
#include "sim/world.h"
#include "spacesim/error.h"

static void usage(void) {
    fprintf(stderr, "usage: spacesim-ckpt split IN --cells NxM (--owners A,B,... | --nodes N) --out DIR\n"
                    "       spacesim-ckpt merge --out OUT [--node K] [--sessions FILE] PART...\n"
                    "       spacesim-ckpt info FILE...\n");
    exit(2);
}

/* "spacesim-ckpt: WHO: WHAT[: the error]" and exit 1. */
static _Noreturn void fail(const char *who, const char *what, int rc) {
    fprintf(stderr, "spacesim-ckpt: %s: %s", who, what);
    if (rc != 0) fprintf(stderr, ": %s", sp_strerror(rc));
    fputc('\n', stderr);
    exit(1);
}

/* The whole file, or exit. A checkpoint is ~140 B per entity: 1M entities
 * are ~140 MB, read at once (as the daemon does). */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) fail(path, "cannot open", 0);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) fail(path, "not a regular file", 0);
    uint8_t *buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (buf == NULL) fail(path, "out of memory", 0);
    if (st.st_size > 0 && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) fail(path, "read", 0);
    fclose(f);
    *len = (size_t)st.st_size;
    return buf;
}

static sp_world_t *load(const char *path, uint8_t **annex, size_t *annex_len) {
    size_t len;
    uint8_t *buf = slurp(path, &len);
    sp_world_t *w;
    const uint8_t *a;
    size_t alen;
    int rc = sp_world_load_annex(buf, len, NULL, 1, &w, &a, &alen);
    if (rc != 0) fail(path, "not a world checkpoint", rc);
    if (annex != NULL) {
        *annex_len = alen;
        *annex = malloc(alen > 0 ? alen : 1);
        if (*annex == NULL) fail(path, "out of memory", 0);
        if (alen > 0) memcpy(*annex, a, alen);
    }
    free(buf);
    return w;
}

/* Write len bytes to path atomically (sp_save_write_file()), or exit. */
static void put_file(const char *path, const uint8_t *data, size_t len) {
    char msg[4096 + 256]; /* a path (at most PATH_MAX) and an error */
    if (sp_save_write_file(path, data, len, msg, sizeof msg) != 0) fail(path, msg, 0);
    if (msg[0] != '\0') fprintf(stderr, "spacesim-ckpt: %s: warning: %s\n", path, msg);
}

static void save(const char *path, const sp_world_t *w, const void *annex, size_t annex_len) {
    uint8_t *buf;
    size_t len;
    int rc = sp_world_save_unsealed_annex(w, annex, annex_len, &buf, &len);
    if (rc != 0) fail(path, "cannot serialize", rc);
    sp_world_save_seal(buf, len);
    put_file(path, buf, len);
    free(buf);
}

static void info_line(const char *name, const sp_world_t *w) {
    printf("%s: node %u tick %" PRIu64 " entities %u canonical %016" PRIx64 "\n", name, sp_world_def(w)->id_node,
           sp_world_tick(w), sp_world_count(w), sp_world_hash_canonical(w));
}

typedef struct owners {
    sp_cells_t g;
    uint32_t *node; /* per cell */
} owners_t;

static uint32_t owner_of(void *ctx, float x, float y) {
    const owners_t *o = ctx;
    return o->node[sp_cells_of(&o->g, x, y)];
}

static uint32_t parse_node(const char *s) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v >= SP_WORLD_MAX_NODES) fail(s, "not a node number (0..1023)", 0);
    return (uint32_t)v;
}

static int cmd_split(int argc, char **argv) {
    const char *in = NULL, *cells = NULL, *owners = NULL, *nodes = NULL, *dir = NULL;
    for (int k = 0; k < argc; k++) {
        if (strcmp(argv[k], "--cells") == 0 && k + 1 < argc) cells = argv[++k];
        else if (strcmp(argv[k], "--owners") == 0 && k + 1 < argc) owners = argv[++k];
        else if (strcmp(argv[k], "--nodes") == 0 && k + 1 < argc) nodes = argv[++k];
        else if (strcmp(argv[k], "--out") == 0 && k + 1 < argc) dir = argv[++k];
        else if (argv[k][0] != '-' && in == NULL) in = argv[k];
        else usage();
    }
    if (in == NULL || cells == NULL || dir == NULL || (owners == NULL) == (nodes == NULL)) usage();
    owners_t o;
    if (sp_cells_parse(cells, &o.g.nx, &o.g.ny) != 0) fail(cells, "bad --cells (NxM, 1..64 each)", 0);
    uint32_t nc = sp_cells_count(&o.g);
    o.node = calloc(nc, sizeof *o.node);
    if (o.node == NULL) fail("memory", "out of memory", 0);
    if (nodes != NULL) {
        uint32_t n = parse_node(nodes);
        if (n == 0) fail(nodes, "--nodes: at least 1", 0);
        for (uint32_t c = 0; c < nc; c++) o.node[c] = c % n;
    } else {
        char *list = strdup(owners), *save_ptr = NULL;
        uint32_t c = 0;
        for (char *t = strtok_r(list, ",", &save_ptr); t != NULL; t = strtok_r(NULL, ",", &save_ptr)) {
            if (c == nc) fail(owners, "--owners: more nodes than cells", 0);
            o.node[c++] = parse_node(t);
        }
        if (c != nc) fail(owners, "--owners: one node per cell, in cell order", 0);
        free(list);
    }
    uint8_t *annex;
    size_t annex_len;
    sp_world_t *src = load(in, &annex, &annex_len);
    /* A cluster daemon's checkpoint starts its annex with the cluster's part
     * ("SPCLUS", cluster.c "checkpoints"): it is a part already. */
    if (annex_len >= 8 && memcmp(annex, "SPCLUS\0\0", 8) == 0)
        fail(in, "a cluster daemon's checkpoint (a part already): merge it with the others instead", 0);
    o.g.half = sp_world_def(src)->half_extent;
    info_line(in, src);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) fail(dir, "cannot create the folder", 0);
    /* Nodes in ascending order; each one's share of the respawn targets is
     * the range of cells before it and its own (they telescope to the
     * source's targets exactly). */
    uint32_t lo = 0;
    uint64_t sum = 0;
    uint32_t count = 0;
    for (uint32_t node = 0; node < SP_WORLD_MAX_NODES; node++) {
        uint32_t mine = 0;
        for (uint32_t c = 0; c < nc; c++) mine += o.node[c] == node;
        if (mine == 0) continue;
        sp_world_t *part;
        int rc = sp_world_part(src, node, owner_of, &o, lo, lo + mine, nc, 1, &part);
        if (rc != 0) fail(in, "cannot cut the part", rc);
        lo += mine;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/node-%u.ckpt", dir, node) >= (int)sizeof path)
            fail(dir, "path too long", 0);
        save(path, part, NULL, 0);
        info_line(path, part);
        sum += sp_world_hash_canonical(part);
        count += sp_world_count(part);
        sp_world_free(part);
    }
    if (annex_len > 0) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/sessions.bin", dir) >= (int)sizeof path) fail(dir, "path too long", 0);
        put_file(path, annex, annex_len);
        printf("%s: %zu bytes of sessions\n", path, annex_len);
    }
    /* The invariant the parts must keep; a failure here is a bug, said so. */
    if (count != sp_world_count(src) || sum != sp_world_hash_canonical(src))
        fail(in, "the parts do not add up to the source (a bug)", 0);
    printf("parts: entities %u canonical %016" PRIx64 " (equal to the source)\n", count, sum);
    printf("ownership for the KV bucket (spacesim-cells --cells %s):\n", cells);
    for (uint32_t c = 0; c < nc; c++) printf("  spacesim-cells --cells %s move %u %u\n", cells, c, o.node[c]);
    sp_world_free(src);
    free(annex);
    free(o.node);
    return 0;
}

static int cmd_merge(int argc, char **argv) {
    const char *out = NULL, *sessions = NULL;
    uint32_t node = 0;
    const char **in = calloc((size_t)argc + 1, sizeof *in);
    size_t n = 0;
    if (in == NULL) fail("memory", "out of memory", 0);
    for (int k = 0; k < argc; k++) {
        if (strcmp(argv[k], "--out") == 0 && k + 1 < argc) out = argv[++k];
        else if (strcmp(argv[k], "--node") == 0 && k + 1 < argc) node = parse_node(argv[++k]);
        else if (strcmp(argv[k], "--sessions") == 0 && k + 1 < argc) sessions = argv[++k];
        else if (argv[k][0] != '-') in[n++] = argv[k];
        else usage();
    }
    if (out == NULL || n == 0) usage();
    sp_world_t **parts = calloc(n, sizeof *parts);
    if (parts == NULL) fail("memory", "out of memory", 0);
    uint64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        parts[k] = load(in[k], NULL, NULL);
        info_line(in[k], parts[k]);
        sum += sp_world_hash_canonical(parts[k]);
    }
    sp_world_t *w;
    int rc = sp_world_merge((const sp_world_t *const *)parts, n, node, 1, &w);
    if (rc == SP_EINVAL)
        fail(out, "the parts do not merge (different ticks or definitions, or an id in two parts)", rc);
    if (rc != 0) fail(out, "cannot merge", rc);
    size_t alen = 0;
    uint8_t *annex = NULL;
    if (sessions != NULL) annex = slurp(sessions, &alen);
    save(out, w, annex, alen);
    info_line(out, w);
    if (sp_world_hash_canonical(w) != sum) fail(out, "the merge does not add up to the parts (a bug)", 0);
    for (size_t k = 0; k < n; k++) sp_world_free(parts[k]);
    sp_world_free(w);
    free(parts);
    free(in);
    free(annex);
    return 0;
}

static int cmd_info(int argc, char **argv) {
    if (argc == 0) usage();
    uint64_t sum = 0, count = 0;
    for (int k = 0; k < argc; k++) {
        sp_world_t *w = load(argv[k], NULL, NULL);
        info_line(argv[k], w);
        sum += sp_world_hash_canonical(w);
        count += sp_world_count(w);
        sp_world_free(w);
    }
    if (argc > 1) printf("total: entities %" PRIu64 " canonical %016" PRIx64 "\n", count, sum);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (strcmp(argv[1], "split") == 0) return cmd_split(argc - 2, argv + 2);
    if (strcmp(argv[1], "merge") == 0) return cmd_merge(argc - 2, argv + 2);
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 2, argv + 2);
    usage();
}
