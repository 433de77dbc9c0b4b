/* check_save.c: checkpoint round trips, refusal of corrupt input, and the
 * atomic file writer (sp_save_write_file) on its success and failure paths. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers/sp_check.h"
#include "sim/ai.h"
#include "sim/frame.h"
#include "sim/save.h"
#include "sim/world.h"

/* Layout facts from save.h / save.c, used to forge semantically bad buffers. */
#define HDR 32u
#define DEF_BYTES (8u + 29u * 4u + 4u) /* version 4: + id_node */
#define OFF_TICK (HDR + DEF_BYTES)
#define OFF_LAST_REBUILD (OFF_TICK + 8 + 8 + 4 + 4)
#define OFF_RESPAWN (OFF_LAST_REBUILD + 8) /* version 2: 5 x u32 */
#define RESPAWN_BYTES 20u
#define OFF_NEXT_ID (OFF_RESPAWN + RESPAWN_BYTES) /* version 4 */
#define OFF_NSLOTS (OFF_NEXT_ID + 8)
#define OFF_COUNT (OFF_NSLOTS + 4)
#define OFF_NFREE (OFF_COUNT + 4)
#define OFF_FREE_LIST (OFF_NFREE + 4)
#define LIVE_FIELD_BYTES 102u /* SP__WORLD_SLOT_FIELDS of one live slot */

/* The same offsets in a version 3 checkpoint (no id_node, no next_id). */
#define V3_OFF_RESPAWN (HDR + 8u + 29u * 4u + 8 + 8 + 4 + 4 + 8)
#define V3_OFF_COUNT (V3_OFF_RESPAWN + RESPAWN_BYTES + 4)

/* tests/data/world_v3.bin: a version 3 checkpoint written by the code before
 * issue 10 (seed 777, half extent 300, 60 asteroids + 12 NPCs + a player,
 * every 5th asteroid destroyed, respawn 20/70 every 7 ticks by 3, 60 ticks
 * of AI): 93 entities, no free slot, generations 1-3, ids generation << 32
 * | slot up to 0x30000004f, the player 0x100000048. */
static uint8_t *read_v3(size_t *len) {
    FILE *f = fopen(SP_TESTDATA "/world_v3.bin", "rb");
    ck_assert_ptr_nonnull(f);
    uint8_t *b = malloc(1 << 16);
    *len = fread(b, 1, 1 << 16, f);
    fclose(f);
    ck_assert_uint_gt(*len, 1000);
    return b;
}

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}
static void fix_checksum(uint8_t *b, size_t len) {
    uint64_t plen = len - HDR, h = fnv(b + HDR, plen);
    memcpy(b + 16, &plen, 8);
    memcpy(b + 24, &h, 8);
}

/* One tick of a scripted run: AI in place (sorted), a player command, step. */
static void tick(sp_world_t *w, sp_entity_id_t player) {
    sp_frame_t *f = sp_world_publish_frame(w);
    ck_assert_ptr_nonnull(f);
    size_t cap = sp_ai_chunk_max_msgs(f, 0, 1) + 1, n;
    sp_msg_t *m = malloc(cap * sizeof *m);
    ck_assert_int_eq(sp_ai_run_chunk(f, 0, 1, f->tick, m, cap, &n), 0);
    for (size_t k = 0; k < n; k++) sp_world_apply_msg(w, &m[k]);
    free(m);
    sp_frame_release(f);
    uint64_t t = sp_world_tick(w);
    float v[3] = {(float)(t % 40) - 20.0f, 5.0f, -3.0f};
    sp_world_set_desired_velocity(w, player, v, NULL);
    ck_assert_int_eq(sp_world_step(w), 0);
}

/* A world with every kind of state: sleepers, awake asteroids, tracers,
 * cargo, cooldowns, destroyed slots on the free list, reused slots. */
static sp_world_t *busy_world(uint32_t n_ast, uint32_t n_npc, sp_entity_id_t *player) {
    sp_world_def_t d = sp_world_def_default();
    d.seed = 777;
    d.half_extent = 300.0f;
    sp_world_t *w;
    ck_assert_int_eq(sp_world_create(&d, &w), 0);
    ck_assert_int_eq(sp_world_populate_demo(w, n_ast, n_npc), 0);
    float p[3] = {0, 0, 0};
    ck_assert_int_eq(sp_world_spawn_ship(w, 9, 0, p, player), 0);
    for (uint32_t i = 0; i < n_ast; i += 5) sp_world_destroy(w, (sp_entity_id_t)i + 1); /* the i-th spawned */
    for (int t = 0; t < 90; t++) tick(w, *player);
    return w;
}

START_TEST(test_save_round_trip_same_hash_same_bytes_and_same_future) {
    sp_entity_id_t player;
    sp_world_t *a = busy_world(1500, 150, &player);
    ck_assert_uint_gt(sp_world_count_sleeping(a), 0);
    uint8_t *buf, *buf2;
    size_t len, len2;
    ck_assert_int_eq(sp_world_save(a, &buf, &len), 0);
    sp_world_t *b;
    ck_assert_int_eq(sp_world_load(buf, len, NULL, 2, &b), 0);
    ck_assert_uint_eq(sp_world_hash(b), sp_world_hash(a));
    ck_assert_uint_eq(sp_world_count(b), sp_world_count(a));
    ck_assert_uint_eq(sp_world_count_sleeping(b), sp_world_count_sleeping(a));
    ck_assert_uint_eq(sp_world_tick(b), sp_world_tick(a));
    sp_entity_info_t ia, ib;
    ck_assert_int_eq(sp_world_inspect(a, player, &ia), 0);
    ck_assert_int_eq(sp_world_inspect(b, player, &ib), 0);
    ck_assert_int_eq(memcmp(&ia, &ib, sizeof ia), 0);
    ck_assert_int_eq(sp_world_save(b, &buf2, &len2), 0);
    ck_assert_uint_eq(len2, len);
    ck_assert_int_eq(memcmp(buf, buf2, len), 0);
    for (int t = 0; t < 300; t++) {
        tick(a, player);
        tick(b, player);
        if (t % 50 == 49) ck_assert_uint_eq(sp_world_hash(b), sp_world_hash(a));
    }
    ck_assert_uint_eq(sp_world_hash(b), sp_world_hash(a));
    free(buf);
    free(buf2);
    sp_world_free(a);
    sp_world_free(b);
}
END_TEST

START_TEST(test_save_empty_world_round_trip) {
    sp_world_t *a, *b;
    ck_assert_int_eq(sp_world_create(NULL, &a), 0);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(sp_world_save(a, &buf, &len), 0);
    ck_assert_int_eq(sp_world_load(buf, len, NULL, 0, &b), 0);
    ck_assert_uint_eq(sp_world_hash(a), sp_world_hash(b));
    ck_assert_uint_eq(sp_world_count(b), 0);
    ck_assert_int_eq(sp_world_step(b), 0);
    free(buf);
    sp_world_free(a);
    sp_world_free(b);
}
END_TEST

START_TEST(test_save_every_truncation_refused_ecorrupt) {
    sp_entity_id_t player;
    sp_world_t *a = busy_world(60, 12, &player);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(sp_world_save(a, &buf, &len), 0);
    ck_assert_uint_gt(len, 1000);
    sp_world_t *b = (sp_world_t *)0x1;
    for (size_t n = 0; n < len; n++) {
        /* Copy into an exact-size buffer so ASan sees any read past n. */
        uint8_t *c = malloc(n ? n : 1);
        memcpy(c, buf, n);
        ck_assert_int_eq(sp_world_load(c, n, NULL, 1, &b), SP_ECORRUPT);
        /* Same prefix with a consistent header (length and checksum of what
         * is there): the semantic validation must refuse it too. */
        if (n >= HDR) {
            fix_checksum(c, n);
            ck_assert_int_eq(sp_world_load(c, n, NULL, 1, &b), SP_ECORRUPT);
        }
        free(c);
    }
    ck_assert_ptr_eq(b, (sp_world_t *)0x1);
    free(buf);
    sp_world_free(a);
}
END_TEST

START_TEST(test_save_random_byte_flips_refused_ecorrupt) {
    sp_entity_id_t player;
    sp_world_t *a = busy_world(200, 30, &player);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(sp_world_save(a, &buf, &len), 0);
    uint8_t *c = malloc(len);
    srand(12345);
    sp_world_t *b = NULL;
    int refused_semantic = 0, accepted = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(c, buf, len);
        size_t at = (size_t)rand() % len;
        c[at] ^= (uint8_t)(1 + rand() % 255);
        ck_assert_int_eq(sp_world_load(c, len, NULL, 1, &b), SP_ECORRUPT);
        /* With the checksum repaired (payload flips only), the structural
         * checks alone decide: either refused, or a world that is valid
         * (it steps and round-trips). Never a crash or a half-built world. */
        if (at >= HDR) {
            fix_checksum(c, len);
            int rc = sp_world_load(c, len, NULL, 1, &b);
            if (rc == 0) {
                accepted++;
                for (int t = 0; t < 3; t++) ck_assert_int_eq(sp_world_step(b), 0);
                uint8_t *again;
                size_t alen;
                sp_world_t *b2;
                ck_assert_int_eq(sp_world_save(b, &again, &alen), 0);
                ck_assert_int_eq(sp_world_load(again, alen, NULL, 1, &b2), 0);
                ck_assert_uint_eq(sp_world_hash(b2), sp_world_hash(b));
                free(again);
                sp_world_free(b2);
                sp_world_free(b);
            } else {
                ck_assert_int_eq(rc, SP_ECORRUPT);
                refused_semantic++;
            }
        }
    }
    ck_assert_int_gt(refused_semantic, 100);
    ck_assert_int_gt(accepted, 0); /* e.g. a flipped position bit stays valid */
    free(c);
    free(buf);
    sp_world_free(a);
}
END_TEST

static int load_forged(const uint8_t *buf, size_t len, size_t at, const void *val, size_t n) {
    uint8_t *c = malloc(len);
    memcpy(c, buf, len);
    memcpy(c + at, val, n);
    if (at >= HDR) fix_checksum(c, len);
    sp_world_t *w = NULL;
    int rc = sp_world_load(c, len, NULL, 1, &w);
    sp_world_free(w);
    free(c);
    return rc;
}

START_TEST(test_save_forged_fields_refused) {
    sp_entity_id_t player;
    sp_world_t *a = busy_world(100, 10, &player);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(sp_world_save(a, &buf, &len), 0);
    uint32_t nslots, count, nfree, v32;
    memcpy(&nslots, buf + OFF_NSLOTS, 4);
    memcpy(&count, buf + OFF_COUNT, 4);
    memcpy(&nfree, buf + OFF_NFREE, 4);
    ck_assert_uint_eq(nslots, count + nfree);
    ck_assert_uint_eq(count, sp_world_count(a));
    ck_assert_uint_gt(nfree, 1);
    /* Unmodified copy loads (the forging helper itself is sound). */
    ck_assert_int_eq(load_forged(buf, len, OFF_COUNT, &count, 4), 0);
    v32 = count + 1;
    ck_assert_int_eq(load_forged(buf, len, OFF_COUNT, &v32, 4), SP_ECORRUPT);
    v32 = nslots + 1;
    ck_assert_int_eq(load_forged(buf, len, OFF_NSLOTS, &v32, 4), SP_ECORRUPT);
    v32 = 0xFFFFFFFFu;
    ck_assert_int_eq(load_forged(buf, len, OFF_NSLOTS, &v32, 4), SP_ECORRUPT);
    ck_assert_int_eq(load_forged(buf, len, OFF_NFREE, &v32, 4), SP_ECORRUPT);
    uint32_t first;
    memcpy(&first, buf + OFF_FREE_LIST, 4);
    ck_assert_int_eq(load_forged(buf, len, OFF_FREE_LIST + 4, &first, 4), SP_ECORRUPT); /* duplicate */
    v32 = nslots;
    ck_assert_int_eq(load_forged(buf, len, OFF_FREE_LIST, &v32, 4), SP_ECORRUPT); /* out of range */
    uint64_t big = UINT64_MAX;
    ck_assert_int_eq(load_forged(buf, len, OFF_LAST_REBUILD, &big, 8), SP_ECORRUPT); /* > tick */
    float bad = -1.0f;
    ck_assert_int_eq(load_forged(buf, len, HDR + 8, &bad, 4), SP_ECORRUPT); /* half_extent */
    v32 = SP_SAVE_VERSION + 1;
    ck_assert_int_eq(load_forged(buf, len, 8, &v32, 4), SP_ECORRUPT); /* version from the future */
    v32 = 1; /* the annex length (the last 4 bytes: empty annex) past the end */
    ck_assert_int_eq(load_forged(buf, len, len - 4, &v32, 4), SP_ECORRUPT);
    v32 = 0;
    ck_assert_int_eq(load_forged(buf, len, 8, &v32, 4), SP_ECORRUPT);
    v32 = (1u << 20) + 1; /* respawn NPC target above max_entities */
    ck_assert_int_eq(load_forged(buf, len, OFF_RESPAWN, &v32, 4), SP_ECORRUPT);
    ck_assert_int_eq(load_forged(buf, len, OFF_RESPAWN + 4, &v32, 4), SP_ECORRUPT);
    ck_assert_int_eq(load_forged(buf, len, 0, "XPWORLD", 8), SP_ECORRUPT); /* magic */
    /* Slot records: kind, and for a live slot id + epoch + fields. The
     * first one is a free slot here (slot 0 was destroyed). */
    size_t slot0 = OFF_FREE_LIST + 4u * nfree;
    ck_assert_uint_eq(buf[slot0], 0);
    uint8_t kind = 1; /* a free slot claiming to be a ship: free list disagrees */
    ck_assert_int_eq(load_forged(buf, len, slot0, &kind, 1), SP_ECORRUPT);
    size_t live[2], at = slot0;
    for (int found = 0; found < 2;) {
        if (buf[at] != 0) live[found++] = at;
        at += buf[at] != 0 ? 1 + 16 + LIVE_FIELD_BYTES : 1;
    }
    uint64_t id2, next_id, v64 = 0;
    memcpy(&id2, buf + live[1] + 1, 8);
    memcpy(&next_id, buf + OFF_NEXT_ID, 8);
    ck_assert_uint_gt(next_id, id2);
    ck_assert_int_eq(load_forged(buf, len, live[0] + 1, &v64, 8), SP_ECORRUPT); /* id 0 */
    ck_assert_int_eq(load_forged(buf, len, live[0] + 1, &id2, 8), SP_ECORRUPT); /* duplicate id */
    ck_assert_int_eq(load_forged(buf, len, live[0] + 1, &next_id, 8), SP_ECORRUPT); /* not minted yet */
    v64 = 1ull << 60; /* another node's id: fine (it came in a hand-off) */
    ck_assert_int_eq(load_forged(buf, len, live[0] + 1, &v64, 8), 0);
    v64 = 0; /* a counter below the node's first id */
    ck_assert_int_eq(load_forged(buf, len, OFF_NEXT_ID, &v64, 8), SP_ECORRUPT);
    v32 = SP_WORLD_MAX_NODES; /* id_node out of range */
    ck_assert_int_eq(load_forged(buf, len, HDR + DEF_BYTES - 4, &v32, 4), SP_ECORRUPT);
    /* Trailing garbage after a valid payload. */
    uint8_t *c = malloc(len + 1);
    memcpy(c, buf, len);
    c[len] = 0;
    fix_checksum(c, len + 1);
    sp_world_t *w = (sp_world_t *)0x1;
    ck_assert_int_eq(sp_world_load(c, len + 1, NULL, 1, &w), SP_ECORRUPT);
    ck_assert_ptr_eq(w, (sp_world_t *)0x1);
    ck_assert_int_eq(sp_world_load(NULL, len, NULL, 1, &w), SP_EINVAL);
    free(c);
    free(buf);
    sp_world_free(a);
}
END_TEST

/* Respawn state is saved: a loaded world respawns exactly as the original
 * (same hash through several respawn periods); a version-1 buffer (no
 * respawn state) still loads, with respawn off. */
START_TEST(test_save_respawn_state_round_trips_and_version1_still_loads) {
    sp_entity_id_t player;
    sp_world_t *a = busy_world(200, 30, &player);
    ck_assert_int_eq(sp_world_set_respawn(a, 40, 220, 7, 3), 0);
    for (int t = 0; t < 20; t++) tick(a, player);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(sp_world_save(a, &buf, &len), 0);
    uint32_t ver;
    memcpy(&ver, buf + 8, 4);
    ck_assert_uint_eq(ver, SP_SAVE_VERSION);
    uint32_t rs[5];
    memcpy(rs, buf + OFF_RESPAWN, sizeof rs);
    ck_assert_uint_eq(rs[0], 40);
    ck_assert_uint_eq(rs[1], 220);
    ck_assert_uint_eq(rs[2], 7);
    ck_assert_uint_eq(rs[3], 3);
    ck_assert_uint_ge(rs[4], 30); /* roles handed out: 30 at populate + respawned */
    sp_world_t *b;
    ck_assert_int_eq(sp_world_load(buf, len, NULL, 1, &b), 0);
    ck_assert_uint_eq(sp_world_hash(b), sp_world_hash(a));
    ck_assert_uint_eq(sp_world_count_npc(b), sp_world_count_npc(a));
    uint32_t before = sp_world_count_npc(a);
    int killed = 0; /* kill 10 NPCs in both */
    for (sp_entity_id_t id = 1; id < 4000 && killed < 10; id++) {
        sp_entity_info_t e;
        if (sp_world_inspect(a, id, &e) == 0 && (e.flags & SP_ENT_NPC)) {
            ck_assert_int_eq(sp_world_destroy(a, id), 0);
            ck_assert_int_eq(sp_world_destroy(b, id), 0);
            killed++;
        }
    }
    ck_assert_int_eq(killed, 10);
    ck_assert_uint_eq(sp_world_count_npc(a), before - 10);
    for (int t = 0; t < 40; t++) {
        tick(a, player);
        tick(b, player);
    }
    ck_assert_uint_eq(sp_world_hash(b), sp_world_hash(a));
    ck_assert_uint_eq(sp_world_count_npc(a), 40); /* 3 per 7 ticks: back to the target */
    /* Version 1: the stored version 3 checkpoint without the respawn
     * fields (nor the version 3 annex length, the last 4 bytes). */
    size_t len3;
    uint8_t *v3 = read_v3(&len3);
    uint8_t *v1 = malloc(len3);
    size_t n1 = len3 - RESPAWN_BYTES - 4;
    memcpy(v1, v3, V3_OFF_RESPAWN);
    memcpy(v1 + V3_OFF_RESPAWN, v3 + V3_OFF_RESPAWN + RESPAWN_BYTES, len3 - V3_OFF_RESPAWN - RESPAWN_BYTES - 4);
    ver = 1;
    memcpy(v1 + 8, &ver, 4);
    fix_checksum(v1, n1);
    sp_world_t *c;
    ck_assert_int_eq(sp_world_load(v1, n1, NULL, 1, &c), 0);
    uint32_t saved_count;
    memcpy(&saved_count, v3 + V3_OFF_COUNT, 4);
    ck_assert_uint_eq(sp_world_count(c), saved_count);
    uint32_t n_npc = sp_world_count_npc(c);
    for (uint32_t i = 0; i < 10; i++) ck_assert_int_eq(sp_world_step(c), 0);
    ck_assert_uint_le(sp_world_count_npc(c), n_npc); /* never respawns */
    uint8_t *again;
    size_t alen;
    ck_assert_int_eq(sp_world_save(c, &again, &alen), 0);
    memcpy(rs, again + OFF_RESPAWN, sizeof rs);
    ck_assert_uint_eq(rs[2], 0); /* period 0: off */
    free(again);
    free(v1);
    free(v3);
    free(buf);
    sp_world_free(a);
    sp_world_free(b);
    sp_world_free(c);
}
END_TEST

/* Version 3's annex (issue 7: the daemon's sessions ride in the checkpoint):
 * its bytes come back as saved, under the checksum; a version-2 buffer (no
 * annex) still loads, with an empty one; an annex longer than the rest is
 * refused. */
START_TEST(test_save_annex_round_trips_and_version2_still_loads) {
    sp_entity_id_t player;
    sp_world_t *a = busy_world(50, 5, &player);
    static const char annex[] = "sessions of the daemon";
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(sp_world_save_unsealed_annex(a, annex, sizeof annex, &buf, &len), 0);
    sp_world_save_seal(buf, len);
    sp_world_t *b;
    const uint8_t *got = NULL;
    size_t glen = 0;
    ck_assert_int_eq(sp_world_load_annex(buf, len, NULL, 1, &b, &got, &glen), 0);
    ck_assert_uint_eq(glen, sizeof annex);
    ck_assert_mem_eq(got, annex, sizeof annex);
    ck_assert_uint_eq(sp_world_hash(b), sp_world_hash(a));
    sp_world_free(b);
    buf[len - 1] ^= 1; /* inside the annex: the checksum catches it */
    ck_assert_int_eq(sp_world_load_annex(buf, len, NULL, 1, &b, &got, &glen), SP_ECORRUPT);
    free(buf);
    /* Version 2: the stored version 3 checkpoint with its empty annex's 4
     * length bytes removed; it loads as the version 3 one does. */
    sp_world_t *b3;
    buf = read_v3(&len);
    ck_assert_int_eq(sp_world_load(buf, len, NULL, 1, &b3), 0);
    uint32_t ver = 2;
    memcpy(buf + 8, &ver, 4);
    fix_checksum(buf, len - 4);
    ck_assert_int_eq(sp_world_load_annex(buf, len - 4, NULL, 1, &b, &got, &glen), 0);
    ck_assert_ptr_null(got);
    ck_assert_uint_eq(glen, 0);
    ck_assert_uint_eq(sp_world_hash(b), sp_world_hash(b3));
    sp_world_free(b);
    sp_world_free(b3);
    /* Version 2 with the bytes of a version 3 (the annex length) is refused:
     * trailing bytes. */
    fix_checksum(buf, len);
    ck_assert_int_eq(sp_world_load(buf, len, NULL, 1, &b), SP_ECORRUPT);
    free(buf);
    sp_world_free(a);
}
END_TEST

/* Issue 10: a version 3 checkpoint (ids generation << 32 | slot) still
 * loads; its entities keep their old ids, new ids start above them, and
 * written again as version 4 it round-trips with the same hash and future. */
START_TEST(test_save_version3_keeps_old_ids_and_counter_starts_above) {
    size_t len;
    uint8_t *buf = read_v3(&len);
    uint32_t ver;
    memcpy(&ver, buf + 8, 4);
    ck_assert_uint_eq(ver, 3);
    sp_world_t *w;
    ck_assert_int_eq(sp_world_load(buf, len, NULL, 1, &w), 0);
    ck_assert_uint_eq(sp_world_count(w), 93);
    sp_entity_info_t e;
    ck_assert_int_eq(sp_world_inspect(w, 0x100000048ull, &e), 0); /* the player */
    ck_assert_uint_eq(e.owner, 9);
    ck_assert_int_eq(sp_world_inspect(w, 0x30000004full, &e), 0); /* the largest old id */
    ck_assert_int_eq(sp_world_inspect(w, 0x48, &e), SP_ENOENT);
    /* Every id is an old one: generation 1-3, slot below 93. */
    uint32_t n = 0;
    for (uint64_t g = 1; g <= 3; g++)
        for (uint64_t i = 0; i < 93; i++) n += sp_world_inspect(w, g << 32 | i, &e) == 0;
    ck_assert_uint_eq(n, 93);
    sp_world_t *w2;
    uint8_t *b4;
    size_t len4;
    ck_assert_int_eq(sp_world_save(w, &b4, &len4), 0);
    memcpy(&ver, b4 + 8, 4);
    ck_assert_uint_eq(ver, SP_SAVE_VERSION);
    ck_assert_int_eq(sp_world_load(b4, len4, NULL, 1, &w2), 0);
    ck_assert_uint_eq(sp_world_hash(w2), sp_world_hash(w));
    ck_assert_uint_eq(sp_world_hash_canonical(w2), sp_world_hash_canonical(w));
    sp_entity_id_t id, id2;
    ck_assert_int_eq(sp_world_spawn_ship(w, 4, 0, NULL, &id), 0);
    ck_assert_int_eq(sp_world_spawn_ship(w2, 4, 0, NULL, &id2), 0);
    ck_assert_uint_eq(id, 0x300000050ull); /* above the largest old id */
    ck_assert_uint_eq(id2, id);
    for (int t = 0; t < 60; t++) {
        ck_assert_int_eq(sp_world_step(w), 0);
        ck_assert_int_eq(sp_world_step(w2), 0);
    }
    ck_assert_uint_eq(sp_world_hash(w2), sp_world_hash(w));
    free(b4);
    free(buf);
    sp_world_free(w);
    sp_world_free(w2);
}
END_TEST

/* Issue 10: ids, epochs, the counter and the departure memory round-trip:
 * a world that exported, departed and imported entities saves and loads to
 * the same hash, refuses the same stale imports and mints the same ids. */
START_TEST(test_save_ids_epochs_and_departures_round_trip) {
    sp_entity_id_t player;
    sp_world_t *a = busy_world(100, 10, &player);
    sp_entity_state_t st;
    ck_assert_int_eq(sp_world_export(a, player, &st), 0);
    st.epoch = 7;
    ck_assert_int_eq(sp_world_depart(a, player, 7), 0);
    sp_entity_state_t guest = st;
    guest.id = (3ull << SP_WORLD_ID_COUNTER_BITS) | 5; /* as if from node 3 */
    guest.epoch = 2;
    ck_assert_int_eq(sp_world_import(a, &guest), 0);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(sp_world_save(a, &buf, &len), 0);
    sp_world_t *b;
    ck_assert_int_eq(sp_world_load(buf, len, NULL, 1, &b), 0);
    ck_assert_uint_eq(sp_world_hash(b), sp_world_hash(a));
    uint64_t ep = 0;
    ck_assert_int_eq(sp_world_departed_epoch(b, player, &ep), 0);
    ck_assert_uint_eq(ep, 7);
    ck_assert_int_eq(sp_world_import(b, &st), SP_WORLD_IMPORT_STALE);
    ck_assert_int_eq(sp_world_import(b, &guest), SP_WORLD_IMPORT_DUPLICATE);
    sp_entity_state_t got;
    ck_assert_int_eq(sp_world_export(b, guest.id, &got), 0);
    ck_assert(sp_entity_state_equal(&got, &guest));
    sp_entity_id_t ia, ib;
    ck_assert_int_eq(sp_world_spawn_ship(a, 1, 0, NULL, &ia), 0);
    ck_assert_int_eq(sp_world_spawn_ship(b, 1, 0, NULL, &ib), 0);
    ck_assert_uint_eq(ia, ib);
    uint8_t *buf2;
    size_t len2;
    sp_world_free(b);
    ck_assert_int_eq(sp_world_load(buf, len, NULL, 1, &b), 0);
    ck_assert_int_eq(sp_world_save(b, &buf2, &len2), 0);
    ck_assert_uint_eq(len2, len);
    ck_assert_int_eq(memcmp(buf, buf2, len), 0); /* departures written in id order */
    free(buf);
    free(buf2);
    sp_world_free(a);
    sp_world_free(b);
}
END_TEST

/* ------------------------------------------------ sp_save_write_file */

/* A fresh directory per test; the teardown removes it and whatever a test
 * left in it, one level deep. Unchecked fixtures (in the runner, around the
 * fork; one test per tcase, so once per test): a checked teardown would not
 * run after a failed assert, and every failure would leave its directory in
 * /tmp. The child inherits g_dir. */
static char g_dir[PATH_MAX];

static void dir_setup(void) {
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/check_save.XXXXXX", t != NULL && *t != '\0' ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void dir_teardown(void) {
    DIR *dp = opendir(g_dir);
    if (dp == NULL) return;
    struct dirent *e;
    char p[PATH_MAX + 256];
    while ((e = readdir(dp)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    closedir(dp);
    rmdir(g_dir);
}

/* g_dir/name into buf. */
static const char *in_dir(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", g_dir, name);
    return buf;
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The file's bytes must be exactly want[0..len). */
static void assert_content(const char *path, const uint8_t *want, size_t len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    uint8_t *got = malloc(len + 1);
    size_t n = fread(got, 1, len + 1, f);
    fclose(f);
    ck_assert_uint_eq(n, len);
    ck_assert(len == 0 || memcmp(got, want, len) == 0);
    free(got);
}

/* No .tmp entry of any name in g_dir. */
static void assert_no_tmp_left(void) {
    DIR *dp = opendir(g_dir);
    ck_assert_ptr_nonnull(dp);
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        size_t l = strlen(e->d_name);
        ck_assert_msg(l < 4 || strcmp(e->d_name + l - 4, ".tmp") != 0, "%s/%s left behind", g_dir, e->d_name);
    }
    closedir(dp);
}

START_TEST(test_save_write_file_writes_replaces_and_leaves_no_tmp) {
    char path[PATH_MAX + 64], msg[512];
    in_dir(path, sizeof path, "w.ckpt");
    /* A real sealed checkpoint first, loaded back from the file. */
    sp_entity_id_t player;
    sp_world_t *w = busy_world(200, 20, &player);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(sp_world_save(w, &buf, &len), 0);
    strcpy(msg, "stale");
    ck_assert_int_eq(sp_save_write_file(path, buf, len, msg, sizeof msg), 0);
    ck_assert_str_eq(msg, ""); /* no warning: the directory's fsync worked */
    assert_content(path, buf, len);
    assert_no_tmp_left();
    sp_world_t *back;
    FILE *f = fopen(path, "rb");
    uint8_t *rd = malloc(len);
    ck_assert_uint_eq(fread(rd, 1, len, f), len);
    fclose(f);
    ck_assert_int_eq(sp_world_load(rd, len, NULL, 1, &back), 0);
    ck_assert_uint_eq(sp_world_hash(back), sp_world_hash(w));
    sp_world_free(back);
    free(rd);
    /* A shorter file over it: replaced whole (O_TRUNC on the temp file, then
     * the rename), not overwritten in place. */
    const uint8_t small[5] = {1, 2, 3, 4, 5};
    ck_assert_int_eq(sp_save_write_file(path, small, sizeof small, msg, sizeof msg), 0);
    assert_content(path, small, sizeof small);
    /* An empty file, and no message buffer at all. */
    ck_assert_int_eq(sp_save_write_file(path, small, 0, NULL, 0), 0);
    assert_content(path, small, 0);
    assert_no_tmp_left();
    free(buf);
    sp_world_free(w);
}
END_TEST

START_TEST(test_save_write_file_missing_directory_fails_at_create) {
    char path[PATH_MAX + 64], msg[512];
    in_dir(path, sizeof path, "gone/w.ckpt");
    const uint8_t b[3] = {7, 8, 9};
    ck_assert_int_eq(sp_save_write_file(path, b, sizeof b, msg, sizeof msg), SP_EIO);
    ck_assert_msg(strncmp(msg, "cannot create ", 14) == 0 && strstr(msg, "gone/w.ckpt.tmp") != NULL &&
                      strstr(msg, strerror(ENOENT)) != NULL,
                  "message: %s", msg);
    /* A short buffer gets a truncated, terminated message; none is fine. */
    char tiny[8];
    ck_assert_int_eq(sp_save_write_file(path, b, sizeof b, tiny, sizeof tiny), SP_EIO);
    ck_assert_str_eq(tiny, "cannot ");
    ck_assert_int_eq(sp_save_write_file(path, b, sizeof b, NULL, 0), SP_EIO);
    assert_no_tmp_left();
}
END_TEST

START_TEST(test_save_write_file_unwritable_directory_fails_at_create) {
    if (geteuid() == 0) return; /* root writes anyway: nothing to test */
    char path[PATH_MAX + 64], msg[512];
    in_dir(path, sizeof path, "w.ckpt");
    ck_assert_int_eq(chmod(g_dir, 0555), 0);
    const uint8_t b[3] = {7, 8, 9};
    int r = sp_save_write_file(path, b, sizeof b, msg, sizeof msg);
    chmod(g_dir, 0755);
    ck_assert_int_eq(r, SP_EIO);
    ck_assert_msg(strncmp(msg, "cannot create ", 14) == 0 && strstr(msg, strerror(EACCES)) != NULL,
                  "message: %s", msg);
    ck_assert(!exists(path));
    assert_no_tmp_left();
}
END_TEST

/* The temp file exists when the write fails (file size limit: EFBIG): it is
 * removed, and the old file at path is left as it was. */
START_TEST(test_save_write_file_failed_write_removes_tmp_keeps_old) {
    char path[PATH_MAX + 64], msg[512];
    in_dir(path, sizeof path, "w.ckpt");
    const uint8_t old[4] = {'o', 'l', 'd', '\n'};
    ck_assert_int_eq(sp_save_write_file(path, old, sizeof old, msg, sizeof msg), 0);
    size_t len = 64 * 1024;
    uint8_t *big = malloc(len);
    memset(big, 0xab, len);
    /* Without SIG_IGN, SIGXFSZ would kill the (forked) test instead of
     * write() returning EFBIG. The limit is put back before any assert, so
     * Check's own files are never under it. */
    struct rlimit was, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &was), 0);
    lim = was;
    lim.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int r = sp_save_write_file(path, big, len, msg, sizeof msg);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &was), 0);
    ck_assert_int_eq(r, SP_EIO);
    ck_assert_msg(strncmp(msg, "writing ", 8) == 0 && strstr(msg, "w.ckpt.tmp") != NULL &&
                      strstr(msg, strerror(EFBIG)) != NULL,
                  "message: %s", msg);
    assert_content(path, old, sizeof old);
    assert_no_tmp_left();
    free(big);
}
END_TEST

/* The temp file is complete and fsynced when the rename fails (a directory
 * sits at path): it is removed, and the directory is left alone. */
START_TEST(test_save_write_file_failed_rename_removes_tmp) {
    char path[PATH_MAX + 64], msg[512];
    in_dir(path, sizeof path, "w.ckpt");
    ck_assert_int_eq(mkdir(path, 0755), 0);
    const uint8_t b[3] = {7, 8, 9};
    ck_assert_int_eq(sp_save_write_file(path, b, sizeof b, msg, sizeof msg), SP_EIO);
    ck_assert_msg(strncmp(msg, "rename of ", 10) == 0 && strstr(msg, "w.ckpt.tmp") != NULL &&
                      strstr(msg, strerror(EISDIR)) != NULL,
                  "message: %s", msg);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    assert_no_tmp_left();
}
END_TEST

START_TEST(test_save_write_file_path_too_long_refused_creates_nothing) {
    char path[PATH_MAX + 64], msg[PATH_MAX + 256];
    int n = snprintf(path, sizeof path, "%s/", g_dir);
    memset(path + n, 'x', PATH_MAX - 4 - (size_t)n); /* + ".tmp" + NUL: one over */
    path[PATH_MAX - 4] = '\0';
    const uint8_t b[3] = {7, 8, 9};
    ck_assert_int_eq(sp_save_write_file(path, b, sizeof b, msg, sizeof msg), SP_EMSGSIZE);
    ck_assert_msg(strncmp(msg, "path too long", 13) == 0, "message: %s", msg);
    path[PATH_MAX - 5] = '\0'; /* the longest accepted: the name is too long for the file system */
    ck_assert_int_eq(sp_save_write_file(path, b, sizeof b, msg, sizeof msg), SP_EIO);
    ck_assert_msg(strstr(msg, strerror(ENAMETOOLONG)) != NULL, "message: %s", msg);
    assert_no_tmp_left();
}
END_TEST

static Suite *save_suite(void) {
    Suite *s = suite_create("save");
    struct {
        const char *name;
        const TTest *t;
        bool in_dir; /* the writer's cases: each in a directory of its own */
    } cases[] = {
        {"round_trip", test_save_round_trip_same_hash_same_bytes_and_same_future, false},
        {"empty", test_save_empty_world_round_trip, false},
        {"truncation", test_save_every_truncation_refused_ecorrupt, false},
        {"flips", test_save_random_byte_flips_refused_ecorrupt, false},
        {"forged", test_save_forged_fields_refused, false},
        {"respawn", test_save_respawn_state_round_trips_and_version1_still_loads, false},
        {"annex", test_save_annex_round_trips_and_version2_still_loads, false},
        {"version3", test_save_version3_keeps_old_ids_and_counter_starts_above, false},
        {"handoff_state", test_save_ids_epochs_and_departures_round_trip, false},
        {"write_file", test_save_write_file_writes_replaces_and_leaves_no_tmp, true},
        {"write_file_no_dir", test_save_write_file_missing_directory_fails_at_create, true},
        {"write_file_unwritable", test_save_write_file_unwritable_directory_fails_at_create, true},
        {"write_file_failed_write", test_save_write_file_failed_write_removes_tmp_keeps_old, true},
        {"write_file_failed_rename", test_save_write_file_failed_rename_removes_tmp, true},
        {"write_file_long_path", test_save_write_file_path_too_long_refused_creates_nothing, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(60));
        if (cases[i].in_dir) tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(save_suite)
