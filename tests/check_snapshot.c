/* check_snapshot.c: snapshot encode/decode round trips, byte cost, desync and
 * malformed-input handling, the frame adapter, and event packers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "helpers/sp_check.h"
#include "rpc.h"
#include "snapshot.h"

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static double rndf(double lo, double hi) { return lo + (hi - lo) * (double)(rnd() >> 11) / 9007199254740992.0; }
static uint32_t rndu(uint32_t n) { return (uint32_t)(rnd() % n); }

/* Unpack one notification and return its params (owned by u). */
static const msgpack_object *unpack_params(msgpack_unpacked *u, const char *data, size_t n) {
    size_t off = 0;
    ck_assert_int_eq(msgpack_unpack_next(u, data, n, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, n);
    sp_rpc_msg_t m;
    ck_assert_int_eq(sp_rpc_classify(&u->data, &m), 0);
    ck_assert_int_eq(m.type, SP_RPC_NOTIFY);
    ck_assert(m.method_len == 8 && memcmp(m.method, "snapshot", 8) == 0);
    return m.params;
}

/* Apply encoded bytes to a client view. */
static int deliver(sp_snap_list_t *client, const msgpack_sbuffer *sb, sp_snap_stats_t *st) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *p = unpack_params(&u, sb->data, sb->size);
    int rc = sp_snap_v1_apply(client, p, st);
    msgpack_unpacked_destroy(&u);
    return rc;
}

static sp_snap_rec_t mkrec(uint64_t id, uint8_t kind) {
    sp_snap_rec_t r;
    memset(&r, 0, sizeof r);
    r.id = id;
    r.kind = kind;
    r.hp = 100 * 16;
    r.radius = 16;
    return r;
}

/* *v += d, saturating to int32 (the test world must not overflow itself). */
static void bump(int32_t *v, int64_t d) {
    int64_t x = (int64_t)*v + d;
    *v = x > INT32_MAX ? INT32_MAX : x < INT32_MIN ? INT32_MIN : (int32_t)x;
}

static int cmp_rec(const void *a, const void *b) {
    uint64_t x = ((const sp_snap_rec_t *)a)->id, y = ((const sp_snap_rec_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------- round trips */

START_TEST(test_snap_full_snapshot_reproduces_view) {
    sp_snap_rec_t recs[3] = {mkrec(1ull << 32 | 1, 1), mkrec(1ull << 32 | 9, 2), mkrec(3ull << 32 | 2, 3)};
    recs[0].pos[0] = -123456;
    recs[0].vel[2] = 77;
    recs[1].owner = 5;
    recs[2].hp = 0;
    recs[2].pos[1] = INT32_MAX;
    recs[2].pos[2] = INT32_MIN;
    sp_snap_list_t next, client;
    sp_snap_list_init(&next);
    sp_snap_list_init(&client);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sp_snap_stats_t st, cst;
    ck_assert_int_eq(sp_snap_v1_encode_recs(42, recs, 3, NULL, &next, &sb, &st), 0);
    ck_assert(st.full);
    ck_assert_uint_eq(st.entered, 3);
    ck_assert_uint_eq(st.bytes, sb.size);
    ck_assert_int_eq(deliver(&client, &sb, &cst), 0);
    ck_assert(cst.full);
    ck_assert_uint_eq(cst.entered, 3);
    ck_assert_uint_eq(cst.count, 3);
    ck_assert(sp_snap_list_equal(&client, &next));
    ck_assert_uint_eq(client.tick, 42);
    ck_assert_int_eq(sp_snap_list_find(&client, 1ull << 32 | 9)->owner, 5);
    ck_assert_ptr_null(sp_snap_list_find(&client, 7));
    /* A second full snapshot replaces the view completely. */
    msgpack_sbuffer_clear(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(43, &recs[1], 1, NULL, &next, &sb, NULL), 0);
    ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
    ck_assert_uint_eq(client.len, 1);
    ck_assert(sp_snap_list_equal(&client, &next));
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&next);
    sp_snap_list_destroy(&client);
}
END_TEST

START_TEST(test_snap_small_move_costs_two_bytes_in_changed_list) {
    sp_snap_rec_t a = mkrec(5, 2), b2;
    sp_snap_list_t base, next, client;
    sp_snap_list_init(&base);
    sp_snap_list_init(&next);
    sp_snap_list_init(&client);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(1, &a, 1, NULL, &base, &sb, NULL), 0);
    ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
    /* Static: a delta with nothing in it. */
    msgpack_sbuffer_clear(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(2, &a, 1, &base, &next, &sb, NULL), 0);
    size_t empty = sb.size;
    ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
    sp_snap_list_swap(&base, &next);
    /* Move by (1, -2, 0): [iddelta 5, op 77]: exactly 2 more bytes. */
    b2 = a;
    b2.pos[0] += 1;
    b2.pos[1] -= 2;
    msgpack_sbuffer_clear(&sb);
    sp_snap_stats_t st;
    ck_assert_int_eq(sp_snap_v1_encode_recs(3, &b2, 1, &base, &next, &sb, &st), 0);
    ck_assert_uint_eq(st.changed, 1);
    ck_assert_uint_eq(sb.size, empty + 2);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *p = unpack_params(&u, sb.data, sb.size);
    const msgpack_object *ch = &p->via.array.ptr[3];
    ck_assert_int_eq(ch->via.array.size, 2);
    ck_assert_uint_eq(ch->via.array.ptr[0].via.u64, 5);
    ck_assert_uint_eq(ch->via.array.ptr[1].via.u64, (1 + 2) * 25 + (-2 + 2) * 5 + (0 + 2));
    ck_assert_int_eq(sp_snap_v1_apply(&client, p, NULL), 0);
    msgpack_unpacked_destroy(&u);
    ck_assert(sp_snap_list_equal(&client, &next));
    ck_assert_int_eq(client.recs[0].pos[1], -2);
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&base);
    sp_snap_list_destroy(&next);
    sp_snap_list_destroy(&client);
}
END_TEST

/* A random world: entities enter, move (small and large), change velocity,
 * hp, owner and radius, and leave; some snapshots are skipped (encoded but
 * never delivered, as when a client's queue is full). After every delivered
 * snapshot the client's view equals the encoder's next view exactly. */
START_TEST(test_snap_random_delta_chain_reproduces_encoder_view) {
    rng_state = 0x9e3779b97f4a7c15ull;
    enum { MAXN = 600, ROUNDS = 400 };
    sp_snap_rec_t *world = calloc(MAXN, sizeof *world);
    size_t n = 0;
    uint32_t next_index = 1;
    sp_snap_list_t base, next, client;
    sp_snap_list_init(&base);
    sp_snap_list_init(&next);
    sp_snap_list_init(&client);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint64_t entered = 0, left = 0, changed = 0, skipped = 0;
    for (int round = 0; round < ROUNDS; round++) {
        /* leave */
        for (size_t i = 0; i < n;) {
            if (rndu(100) < 3) world[i] = world[--n];
            else i++;
        }
        /* enter */
        int k = (int)rndu(20);
        for (int j = 0; j < k && n < MAXN; j++) {
            uint64_t gen = 1 + rndu(3);
            sp_snap_rec_t r = mkrec(gen << 32 | next_index++, (uint8_t)(1 + rndu(3)));
            for (int a = 0; a < 3; a++) {
                r.pos[a] = (int32_t)rndu(1u << 31) - (1 << 30);
                r.vel[a] = (int32_t)rndu(2000) - 1000;
            }
            r.owner = rndu(4);
            r.radius = rndu(200);
            r.hp = rndu(3) == 0 ? UINT32_MAX : rndu(10000);
            world[n++] = r;
        }
        /* change */
        for (size_t i = 0; i < n; i++) {
            sp_snap_rec_t *r = &world[i];
            uint32_t what = rndu(100);
            if (what < 40) for (int a = 0; a < 3; a++) bump(&r->pos[a], (int64_t)rndu(5) - 2);
            else if (what < 55) for (int a = 0; a < 3; a++) bump(&r->pos[a], (int64_t)rndu(4001) - 2000);
            else if (what < 57) r->pos[rndu(3)] = rndu(2) ? INT32_MAX : INT32_MIN; /* teleport to the edge */
            if (rndu(100) < 10) r->vel[rndu(3)] = (int32_t)rndu(1u << 20) - (1 << 19);
            if (rndu(100) < 5) r->hp = r->hp > 100 ? r->hp - 100 : rndu(3) == 0 ? UINT32_MAX : 0;
            if (rndu(100) < 2) r->owner = rndu(1000);
            if (rndu(100) < 2) r->radius = rndu(5000);
        }
        /* the visible subset, sorted by id */
        sp_snap_rec_t vis[MAXN];
        size_t nv = 0;
        for (size_t i = 0; i < n; i++)
            if (rndu(100) < 90) vis[nv++] = world[i];
        qsort(vis, nv, sizeof vis[0], cmp_rec);
        msgpack_sbuffer_clear(&sb);
        sp_snap_stats_t st;
        const sp_snap_list_t *b = round == 0 ? NULL : &base;
        ck_assert_int_eq(sp_snap_v1_encode_recs((uint64_t)round * 3, vis, nv, b, &next, &sb, &st), 0);
        if (round > 0 && rndu(100) < 10) { /* skipped: keep base, drop next */
            skipped++;
            continue;
        }
        sp_snap_stats_t cst;
        ck_assert_int_eq(deliver(&client, &sb, &cst), 0);
        ck_assert_msg(sp_snap_list_equal(&client, &next), "round %d: client view differs", round);
        ck_assert_uint_eq(cst.entered, st.entered);
        ck_assert_uint_eq(cst.changed, st.changed);
        ck_assert_uint_eq(cst.left, st.left);
        entered += st.entered;
        left += st.left;
        changed += st.changed;
        sp_snap_list_swap(&base, &next);
    }
    /* The chain really exercised every section. */
    ck_assert_uint_gt(entered, 1000);
    ck_assert_uint_gt(left, 1000);
    ck_assert_uint_gt(changed, 10000);
    ck_assert_uint_gt(skipped, 10);
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&base);
    sp_snap_list_destroy(&next);
    sp_snap_list_destroy(&client);
    free(world);
}
END_TEST

/* ---------------------------------------------------------------- byte cost */

typedef struct {
    double full_per_entity, delta_per_entity;
} cost_t;

/* Simulate n entities for `snaps` snapshots at 20 Hz (60 Hz ticks). Each
 * entity moves with a constant velocity drawn per axis from [-vmax, vmax]
 * (units/s) with probability moving_pct, else it is static. Every delivered
 * snapshot is checked for exact reproduction. */
static cost_t measure(size_t n, int snaps, double vmax, unsigned moving_pct) {
    double (*p)[3] = calloc(n, sizeof *p), (*v)[3] = calloc(n, sizeof *v);
    sp_snap_rec_t *recs = calloc(n, sizeof *recs);
    for (size_t i = 0; i < n; i++) {
        bool moving = rndu(100) < moving_pct;
        for (int a = 0; a < 3; a++) {
            p[i][a] = rndf(-2000, 2000);
            v[i][a] = moving ? rndf(-vmax, vmax) : 0.0;
        }
        recs[i] = mkrec(1ull << 32 | (i * 3 + 1), moving ? 1 : 2);
    }
    sp_snap_list_t base, next, client;
    sp_snap_list_init(&base);
    sp_snap_list_init(&next);
    sp_snap_list_init(&client);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    cost_t c = {0, 0};
    size_t delta_bytes = 0;
    const double dt = 1.0 / 60.0;
    for (int s = 0; s < snaps; s++) {
        for (int t = 0; t < 3; t++) /* three 60 Hz ticks per 20 Hz snapshot */
            for (size_t i = 0; i < n; i++)
                for (int a = 0; a < 3; a++) p[i][a] += v[i][a] * dt;
        for (size_t i = 0; i < n; i++)
            for (int a = 0; a < 3; a++) {
                recs[i].pos[a] = sp_snap_quant_pos(p[i][a]);
                recs[i].vel[a] = sp_snap_quant_vel(v[i][a]);
            }
        msgpack_sbuffer_clear(&sb);
        ck_assert_int_eq(sp_snap_v1_encode_recs((uint64_t)s * 3, recs, n, s == 0 ? NULL : &base, &next, &sb, NULL), 0);
        if (s == 0) c.full_per_entity = (double)sb.size / (double)n;
        else delta_bytes += sb.size;
        ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
        ck_assert(sp_snap_list_equal(&client, &next));
        sp_snap_list_swap(&base, &next);
    }
    c.delta_per_entity = (double)delta_bytes / (double)(snaps - 1) / (double)n;
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&base);
    sp_snap_list_destroy(&next);
    sp_snap_list_destroy(&client);
    free(p);
    free(v);
    free(recs);
    return c;
}

START_TEST(test_snap_slowly_moving_scene_costs_at_most_4_bytes_per_entity) {
    rng_state = 12345;
    /* Every entity drifting at up to 1.5 units/s per axis (<= 1.2 position
     * steps per snapshot): the target scene of the issue. */
    cost_t slow = measure(2000, 100, 1.5, 100);
    printf("snapshot bytes/entity: all drifting <=1.5 u/s: full %.2f, delta %.3f\n", slow.full_per_entity,
           slow.delta_per_entity);
    ck_assert_msg(slow.delta_per_entity <= 4.0, "delta %.3f bytes/entity > 4", slow.delta_per_entity);
    /* The demo mix: 90% static asteroids, 10% ships at up to 20 units/s. */
    cost_t mix = measure(2000, 100, 20.0, 10);
    printf("snapshot bytes/entity: 90%% static + 10%% at <=20 u/s: full %.2f, delta %.3f\n", mix.full_per_entity,
           mix.delta_per_entity);
    ck_assert_msg(mix.delta_per_entity <= 4.0, "delta %.3f bytes/entity > 4", mix.delta_per_entity);
    /* Static entities cost 0 bytes: a static delta is the header alone, the
     * same for 10 and 1000 entities except the count field (1 vs 3 bytes). */
    cost_t s10 = measure(10, 5, 0.0, 0), s1000 = measure(1000, 5, 0.0, 0);
    double b10 = s10.delta_per_entity * 10, b1000 = s1000.delta_per_entity * 1000;
    printf("static delta snapshot: %.1f bytes for 10 entities, %.1f for 1000\n", b10, b1000);
    ck_assert(fabs(b1000 - b10 - 2.0) < 1e-9);
    ck_assert(b1000 <= 24.0);
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_snap_base_tick_mismatch_is_detected_and_view_kept) {
    sp_snap_rec_t r[2] = {mkrec(1, 1), mkrec(2, 2)};
    sp_snap_list_t base, next, client, fresh, copy;
    sp_snap_list_init(&base);
    sp_snap_list_init(&next);
    sp_snap_list_init(&client);
    sp_snap_list_init(&fresh);
    sp_snap_list_init(&copy);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(10, r, 2, NULL, &base, &sb, NULL), 0);
    ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
    /* Delta 10 -> 13, then a delta 13 -> 16 the client applies twice: the
     * second time the client is at 16 and the base (13) does not match. */
    r[0].pos[0] = 100;
    msgpack_sbuffer_clear(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(13, r, 2, &base, &next, &sb, NULL), 0);
    ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
    sp_snap_list_swap(&base, &next);
    r[1].hp = 3;
    msgpack_sbuffer_clear(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(16, r, 2, &base, &next, &sb, NULL), 0);
    ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
    ck_assert_int_eq(sp_snap_list_set(&copy, client.tick, client.recs, client.len), 0);
    ck_assert_int_eq(deliver(&client, &sb, NULL), SP_EPROTO);
    ck_assert(sp_snap_list_equal(&client, &copy));
    ck_assert_uint_eq(client.tick, 16);
    /* A delta to a client that has no baseline at all. */
    ck_assert_int_eq(deliver(&fresh, &sb, NULL), SP_EPROTO);
    ck_assert(!fresh.valid);
    ck_assert_uint_eq(fresh.len, 0);
    /* After a reset the encoder sends a full snapshot, which always applies. */
    sp_snap_list_reset(&base);
    msgpack_sbuffer_clear(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(19, r, 2, &base, &next, &sb, NULL), 0);
    ck_assert_int_eq(deliver(&fresh, &sb, NULL), 0);
    ck_assert(sp_snap_list_equal(&fresh, &next));
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&base);
    sp_snap_list_destroy(&next);
    sp_snap_list_destroy(&client);
    sp_snap_list_destroy(&fresh);
    sp_snap_list_destroy(&copy);
}
END_TEST

/* Build params [tick, base, entered, changed, left, count] from int lists. */
static void pack_params(msgpack_sbuffer *sb, int64_t tick, int64_t base, const int64_t *e, size_t ne,
                        const int64_t *c, size_t nc, const int64_t *l, size_t nl, int64_t count) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_sbuffer_clear(sb);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_int64(&pk, tick);
    if (base < 0) msgpack_pack_nil(&pk);
    else msgpack_pack_int64(&pk, base);
    msgpack_pack_array(&pk, ne);
    for (size_t i = 0; i < ne; i++) msgpack_pack_int64(&pk, e[i]);
    msgpack_pack_array(&pk, nc);
    for (size_t i = 0; i < nc; i++) msgpack_pack_int64(&pk, c[i]);
    msgpack_pack_array(&pk, nl);
    for (size_t i = 0; i < nl; i++) msgpack_pack_int64(&pk, l[i]);
    msgpack_pack_int64(&pk, count);
}

static int apply_raw(sp_snap_list_t *v, const msgpack_sbuffer *sb) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, sb->data, sb->size, NULL), MSGPACK_UNPACK_SUCCESS);
    int rc = sp_snap_v1_apply(v, &u.data, NULL);
    msgpack_unpacked_destroy(&u);
    return rc;
}

START_TEST(test_snap_malformed_params_are_refused_and_view_kept) {
    /* Client view at tick 5: ids 10 and 20. */
    sp_snap_list_t v, copy;
    sp_snap_list_init(&v);
    sp_snap_list_init(&copy);
    sp_snap_rec_t r[2] = {mkrec(10, 1), mkrec(20, 2)};
    r[0].pos[0] = INT32_MAX - 1;
    ck_assert_int_eq(sp_snap_list_set(&v, 5, r, 2), 0);
    ck_assert_int_eq(sp_snap_list_set(&copy, 5, r, 2), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    const int64_t rec30[11] = {30, 1, 0, 0, 0, 0, 0, 0, 16, 0, 16};
    struct {
        const char *what;
        int64_t base;
        int64_t e[22];
        size_t ne;
        int64_t c[12];
        size_t nc;
        int64_t l[4];
        size_t nl;
        int64_t count;
    } cases[] = {
        {"entered not a multiple of 11", 5, {30, 1, 0}, 3, {0}, 0, {0}, 0, 3},
        {"entered id already present", 5, {10, 1, 0, 0, 0, 0, 0, 0, 16, 0, 16}, 11, {0}, 0, {0}, 0, 3},
        {"entered kind 0", 5, {30, 0, 0, 0, 0, 0, 0, 0, 16, 0, 16}, 11, {0}, 0, {0}, 0, 3},
        {"entered pos beyond int32", 5, {30, 1, 1ll << 31, 0, 0, 0, 0, 0, 16, 0, 16}, 11, {0}, 0, {0}, 0, 3},
        {"entered hp negative", 5, {30, 1, 0, 0, 0, 0, 0, 0, -1, 0, 16}, 11, {0}, 0, {0}, 0, 3},
        {"entered ids not ascending", 5, {30, 1, 0, 0, 0, 0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 0, 0, 0, 16, 0, 16},
         22, {0}, 0, {0}, 0, 4},
        {"changed unknown id", 5, {0}, 0, {15, 62}, 2, {0}, 0, 2},
        {"changed op 125", 5, {0}, 0, {10, 125}, 2, {0}, 0, 2},
        {"changed op -32", 5, {0}, 0, {10, -32}, 2, {0}, 0, 2},
        {"changed values missing", 5, {0}, 0, {10, -1, 1, 2}, 4, {0}, 0, 2},
        {"changed pos overflows int32", 5, {0}, 0, {10, -1, 5, 0, 0}, 5, {0}, 0, 2},
        {"changed hp below zero", 5, {0}, 0, {20, -4, -100000}, 3, {0}, 0, 2},
        {"changed owner negative", 5, {0}, 0, {20, -8, -1}, 3, {0}, 0, 2},
        {"changed op missing", 5, {0}, 0, {10}, 1, {0}, 0, 2},
        {"changed and left same id", 5, {0}, 0, {10, 62}, 2, {10}, 1, 1},
        {"left unknown id", 5, {0}, 0, {0}, 0, {11}, 1, 1},
        {"left iddelta 0", 5, {0}, 0, {0}, 0, {10, 0}, 2, 0},
        {"count mismatch", 5, {0}, 0, {0}, 0, {10}, 1, 2},
        {"count negative", 5, {0}, 0, {0}, 0, {0}, 0, -1},
        {"full with a left list", -1, {0}, 0, {0}, 0, {10}, 1, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        pack_params(&sb, 8, cases[k].base, cases[k].e, cases[k].ne, cases[k].c, cases[k].nc, cases[k].l, cases[k].nl,
                    cases[k].count);
        ck_assert_msg(apply_raw(&v, &sb) == SP_ECORRUPT, "%s: accepted", cases[k].what);
        ck_assert_msg(sp_snap_list_equal(&v, &copy), "%s: view changed", cases[k].what);
    }
    /* Shapes: not an array, too short, tick as str, base as str, entered as map. */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int k = 0; k < 5; k++) {
        msgpack_sbuffer_clear(&sb);
        if (k == 0) { msgpack_pack_map(&pk, 0); }
        else if (k == 1) { msgpack_pack_array(&pk, 5); for (int j = 0; j < 5; j++) msgpack_pack_int(&pk, 0); }
        else {
            msgpack_pack_array(&pk, 6);
            if (k == 2) sp_rpc_pack_cstr(&pk, "8"); else msgpack_pack_int(&pk, 8);
            if (k == 3) sp_rpc_pack_cstr(&pk, "5"); else msgpack_pack_int(&pk, 5);
            if (k == 4) msgpack_pack_map(&pk, 0); else msgpack_pack_array(&pk, 0);
            msgpack_pack_array(&pk, 0);
            msgpack_pack_array(&pk, 0);
            msgpack_pack_int(&pk, 2);
        }
        ck_assert_int_eq(apply_raw(&v, &sb), SP_ECORRUPT);
        ck_assert(sp_snap_list_equal(&v, &copy));
    }
    /* And the well-formed neighbours of those cases do apply. */
    pack_params(&sb, 8, 5, rec30, 11, (const int64_t[]){10, -1, -5, 0, 0}, 5, (const int64_t[]){20}, 1, 2);
    ck_assert_int_eq(apply_raw(&v, &sb), 0);
    ck_assert_uint_eq(v.len, 2);
    ck_assert_uint_eq(v.recs[0].id, 10);
    ck_assert_int_eq(v.recs[0].pos[0], INT32_MAX - 6);
    ck_assert_uint_eq(v.recs[1].id, 30);
    ck_assert_uint_eq(v.tick, 8);
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&v);
    sp_snap_list_destroy(&copy);
}
END_TEST

/* Random corruption of real snapshots: every outcome is 0 or an error, never
 * a crash (ASan/UBSan builds check memory), and a failed apply leaves the view
 * as it was; a successful one leaves ids strictly ascending. */
START_TEST(test_snap_fuzzed_snapshots_never_crash) {
    rng_state = 777;
    sp_snap_rec_t recs[64];
    for (int i = 0; i < 64; i++) {
        recs[i] = mkrec((uint64_t)(i * 2 + 1), (uint8_t)(1 + i % 3));
        recs[i].pos[0] = i * 100;
    }
    sp_snap_list_t base, next, client, copy;
    sp_snap_list_init(&base);
    sp_snap_list_init(&next);
    sp_snap_list_init(&client);
    sp_snap_list_init(&copy);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(1, recs, 48, NULL, &base, &sb, NULL), 0);
    ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
    for (int i = 0; i < 64; i++) recs[i].pos[1] += i % 5 == 0 ? 1000 : 1;
    msgpack_sbuffer_clear(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(4, recs + 8, 56, &base, &next, &sb, NULL), 0);
    char *orig = malloc(sb.size);
    memcpy(orig, sb.data, sb.size);
    size_t n = sb.size;
    char *buf = malloc(n);
    int applied = 0, refused = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, orig, n);
        size_t len = n;
        int muts = 1 + (int)rndu(3);
        for (int m = 0; m < muts; m++) {
            switch (rndu(4)) {
            case 0: buf[rndu((uint32_t)len)] = (char)rnd(); break;
            case 1: buf[rndu((uint32_t)len)] ^= (char)(1u << rndu(8)); break;
            case 2: len = 1 + rndu((uint32_t)len); break;
            default: buf[rndu((uint32_t)len)] = (char)(rndu(2) ? 0x00 : 0x7f); break;
            }
        }
        /* Through the bounded RPC decoder, as a client does: raw msgpack-c
         * would try to allocate for a corrupted array32 header. */
        sp_rpc_decoder_t d;
        sp_rpc_decoder_init(&d, 1u << 20);
        sp_rpc_msg_t m;
        if (sp_rpc_decoder_feed(&d, buf, len) == 0 && sp_rpc_decoder_next(&d, &m) == 1) {
            /* Also feed non-notifications (whole objects) as params. */
            const msgpack_object *params = m.type == SP_RPC_NOTIFY ? m.params : m.root;
            ck_assert_int_eq(sp_snap_list_set(&copy, client.tick, client.recs, client.len), 0);
            int rc = sp_snap_v1_apply(&client, params, NULL);
            if (rc == 0) {
                applied++;
                for (size_t k = 1; k < client.len; k++) ck_assert_uint_lt(client.recs[k - 1].id, client.recs[k].id);
                /* Back to the baseline for the next iteration. */
                ck_assert_int_eq(sp_snap_list_set(&client, copy.tick, copy.recs, copy.len), 0);
            } else {
                refused++;
                ck_assert(rc == SP_ECORRUPT || rc == SP_EPROTO);
                ck_assert(sp_snap_list_equal(&client, &copy));
            }
        }
        sp_rpc_decoder_destroy(&d);
    }
    ck_assert_int_gt(refused, 1000);
    ck_assert_int_gt(applied, 10); /* e.g. a flipped value that stays in range */
    free(buf);
    free(orig);
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&base);
    sp_snap_list_destroy(&next);
    sp_snap_list_destroy(&client);
    sp_snap_list_destroy(&copy);
}
END_TEST

/* ---------------------------------------------------------------- in-place apply */

/* Changes-only deltas (no entered, no left) patch the view's rows in place:
 * the records array stays the same, and once the scratch buffers have grown
 * nothing is allocated per snapshot; a delta with entered/left rows merges
 * into scratch and swaps, so recs and scratch trade the same two buffers.
 * Every round must reproduce the encoder's view exactly. */
START_TEST(test_snap_changes_only_deltas_patch_in_place_without_allocating) {
    rng_state = 4242;
    enum { N = 500, ROUNDS = 120 };
    static sp_snap_rec_t world[N + ROUNDS];
    size_t n = N;
    for (size_t i = 0; i < n; i++) {
        world[i] = mkrec((1ull << 32) | (3 * i + 1), (uint8_t)(1 + i % 3));
        world[i].pos[0] = (int32_t)(i * 40);
    }
    sp_snap_list_t base, next, client;
    sp_snap_list_init(&base);
    sp_snap_list_init(&next);
    sp_snap_list_init(&client);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(1, world, n, NULL, &base, &sb, NULL), 0);
    ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
    const sp_snap_rec_t *bufs[2] = {NULL, NULL};
    const uint32_t *rows = NULL;
    uint64_t in_place = 0, merged = 0, changed = 0;
    for (int round = 1; round <= ROUNDS; round++) {
        bool mixed = round % 10 == 0; /* every 10th: one leaves, one enters */
        if (mixed) {
            size_t j = rndu((uint32_t)n);
            memmove(&world[j], &world[j + 1], (n - j - 1) * sizeof world[0]);
            world[n - 1] = mkrec((2ull << 32) | (uint64_t)round, 2);
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t what = rndu(100);
            if (what < 20) world[i].pos[rndu(3)] += (int32_t)rndu(5) - 2;
            else if (what < 25) world[i].pos[rndu(3)] += (int32_t)rndu(100000) - 50000;
            else if (what < 27) world[i].vel[rndu(3)] = (int32_t)rndu(2000) - 1000;
            else if (what < 28) world[i].hp = rndu(1600);
            else if (what < 29) world[i].owner = rndu(8);
            else if (what < 30) world[i].radius = rndu(64);
        }
        msgpack_sbuffer_clear(&sb);
        sp_snap_stats_t st, cst;
        ck_assert_int_eq(sp_snap_v1_encode_recs((uint64_t)round * 3 + 1, world, n, &base, &next, &sb, &st), 0);
        ck_assert_int_eq(st.entered + st.left, mixed ? 2u : 0u);
        const sp_snap_rec_t *recs_before = client.recs;
        ck_assert_int_eq(deliver(&client, &sb, &cst), 0);
        ck_assert_msg(sp_snap_list_equal(&client, &next), "round %d: client view differs", round);
        ck_assert_uint_eq(cst.changed, st.changed);
        ck_assert_uint_eq(cst.count, n);
        changed += cst.changed;
        if (mixed) {
            merged++;
            ck_assert_ptr_ne(client.recs, recs_before); /* swapped with scratch */
        } else {
            in_place++;
            ck_assert_ptr_eq(client.recs, recs_before); /* patched in place */
        }
        if (round == 20) { /* warmed up: both buffers and rows exist */
            bufs[0] = client.recs;
            bufs[1] = client.scratch;
            rows = client.rows;
            ck_assert_ptr_nonnull(rows);
        } else if (round > 20) {
            ck_assert(client.recs == bufs[0] || client.recs == bufs[1]);
            ck_assert(client.scratch == bufs[0] || client.scratch == bufs[1]);
            ck_assert_ptr_eq(client.rows, rows);
        }
        sp_snap_list_swap(&base, &next);
    }
    ck_assert_uint_gt(in_place, 100);
    ck_assert_uint_gt(merged, 10);
    ck_assert_uint_gt(changed, 10000);
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&base);
    sp_snap_list_destroy(&next);
    sp_snap_list_destroy(&client);
}
END_TEST

/* A changes-only delta whose LAST entry is malformed must leave no earlier
 * entry applied (the in-place path validates everything before it writes). */
START_TEST(test_snap_changes_only_delta_malformed_last_entry_leaves_no_partial_update) {
    /* View at tick 5: ids 10, 20, ..., 100, hp 1600. */
    sp_snap_list_t v, copy;
    sp_snap_list_init(&v);
    sp_snap_list_init(&copy);
    sp_snap_rec_t r[10];
    for (int i = 0; i < 10; i++) r[i] = mkrec((uint64_t)(i + 1) * 10, 1);
    r[9].pos[2] = INT32_MAX;
    ck_assert_int_eq(sp_snap_list_set(&v, 5, r, 10), 0);
    ck_assert_int_eq(sp_snap_list_set(&copy, 5, r, 10), 0);
    /* Nine good entries: ids 10..90 each move by (+1, 0, 0) (op 87) or get a
     * velocity (mask 2) or an hp delta (mask 4), then one bad entry for id 100. */
    int64_t good[40];
    size_t ng = 0;
    for (int i = 0; i < 9; i++) {
        good[ng++] = 10; /* iddelta */
        if (i % 3 == 0) good[ng++] = 87;
        else if (i % 3 == 1) { good[ng++] = -2; good[ng++] = 7; good[ng++] = -7; good[ng++] = 0; }
        else { good[ng++] = -4; good[ng++] = -100; }
    }
    struct {
        const char *what;
        int64_t tail[5];
        size_t nt;
        int64_t count;
    } bad[] = {
        {"pos overflows int32", {10, -1, 0, 0, 1}, 5, 10},
        {"small move overflows int32", {10, 62 + 1}, 2, 10},
        {"op out of range", {10, 125}, 2, 10},
        {"values missing", {10, -1, 1, 2}, 4, 10},
        {"op missing", {10}, 1, 10},
        {"hp below zero", {10, -4, -2000}, 3, 10},
        {"owner negative", {10, -8, -1}, 3, 10},
        {"radius negative", {10, -16, INT64_MIN}, 3, 10},
        {"id not in the view", {5, 62}, 2, 10},
        {"iddelta 0", {0, 62}, 2, 10},
        {"count mismatch", {10, 62}, 2, 11},
    };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int64_t c[48];
        memcpy(c, good, ng * sizeof c[0]);
        memcpy(c + ng, bad[k].tail, bad[k].nt * sizeof c[0]);
        pack_params(&sb, 8, 5, NULL, 0, c, ng + bad[k].nt, NULL, 0, bad[k].count);
        ck_assert_msg(apply_raw(&v, &sb) == SP_ECORRUPT, "%s: accepted", bad[k].what);
        ck_assert_msg(sp_snap_list_equal(&v, &copy), "%s: view changed", bad[k].what);
    }
    /* Control: the good entries alone apply, and do change the rows. */
    pack_params(&sb, 8, 5, NULL, 0, good, ng, NULL, 0, 10);
    ck_assert_int_eq(apply_raw(&v, &sb), 0);
    ck_assert_uint_eq(v.tick, 8);
    ck_assert_int_eq(v.recs[0].pos[0], 1);
    ck_assert_int_eq(v.recs[1].vel[0], 7);
    ck_assert_int_eq(v.recs[1].vel[1], -7);
    ck_assert_uint_eq(v.recs[2].hp, 1500);
    ck_assert_int_eq(v.recs[8].pos[0], 0);
    ck_assert_uint_eq(v.recs[8].hp, 1500);
    ck_assert_int_eq(v.recs[9].pos[2], INT32_MAX);
    /* Fuzz the good delta (plus an entry for id 100) byte by byte: every
     * refusal leaves the view as it was. */
    rng_state = 99;
    int64_t c[48];
    memcpy(c, good, ng * sizeof c[0]);
    c[ng] = 10;
    c[ng + 1] = 62;
    pack_params(&sb, 11, 8, NULL, 0, c, ng + 2, NULL, 0, 10);
    ck_assert_int_eq(sp_snap_list_set(&copy, v.tick, v.recs, v.len), 0);
    char orig[512], buf[512];
    ck_assert_uint_le(sb.size, sizeof orig);
    memcpy(orig, sb.data, sb.size);
    int refused = 0, applied = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, orig, sb.size);
        for (int m = 1 + (int)rndu(2); m > 0; m--) buf[rndu((uint32_t)sb.size)] = (char)rnd();
        /* Through the bounded decoder: raw msgpack-c would try to allocate
         * for a corrupted array32 header. The params array is the root. */
        sp_rpc_decoder_t d;
        sp_rpc_decoder_init(&d, 1u << 20);
        sp_rpc_msg_t m;
        if (sp_rpc_decoder_feed(&d, buf, sb.size) == 0 && sp_rpc_decoder_next(&d, &m) == 1) {
            int rc = sp_snap_v1_apply(&v, m.root, NULL);
            if (rc == 0) {
                applied++;
                ck_assert_int_eq(sp_snap_list_set(&v, copy.tick, copy.recs, copy.len), 0);
            } else {
                refused++;
                ck_assert(rc == SP_ECORRUPT || rc == SP_EPROTO);
                ck_assert(sp_snap_list_equal(&v, &copy));
            }
        }
        sp_rpc_decoder_destroy(&d);
    }
    ck_assert_int_gt(refused, 1000);
    ck_assert_int_gt(applied, 10);
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&v);
    sp_snap_list_destroy(&copy);
}
END_TEST

START_TEST(test_snap_encoder_rejects_bad_input) {
    sp_snap_rec_t r[2] = {mkrec(5, 1), mkrec(5, 1)};
    sp_snap_list_t base, next;
    sp_snap_list_init(&base);
    sp_snap_list_init(&next);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(sp_snap_v1_encode_recs(1, r, 2, NULL, &next, &sb, NULL), SP_EINVAL); /* duplicate id */
    r[1].id = 4;
    ck_assert_int_eq(sp_snap_v1_encode_recs(1, r, 2, NULL, &next, &sb, NULL), SP_EINVAL); /* descending */
    r[1].id = 0;
    ck_assert_int_eq(sp_snap_v1_encode_recs(1, &r[1], 1, NULL, &next, &sb, NULL), SP_EINVAL); /* null id */
    ck_assert_uint_eq(sb.size, 0);
    ck_assert(!next.valid);
    ck_assert_int_eq(sp_snap_v1_encode(NULL, &next, &sb, NULL), SP_EINVAL); /* next invalid */
    /* An id that changes kind cannot be expressed: refused, nothing written. */
    ck_assert_int_eq(sp_snap_v1_encode_recs(1, r, 1, NULL, &base, &sb, NULL), 0);
    size_t size = sb.size;
    r[0].kind = 2;
    ck_assert_int_eq(sp_snap_v1_encode_recs(2, r, 1, &base, &next, &sb, NULL), SP_EINVAL);
    ck_assert_uint_eq(sb.size, size);
    ck_assert_int_eq(sp_snap_v1_encode_recs(2, r, 1, &base, &base, &sb, NULL), SP_EINVAL); /* aliasing */
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&base);
    sp_snap_list_destroy(&next);
}
END_TEST

/* ---------------------------------------------------------------- in-place fill */

/* The daemon fills its views in place from frame rows (src/daemon/snapshots.c):
 * reserve, write the records, set len/tick/valid, then encode. */
START_TEST(test_snap_view_reserve_fill_in_place_then_encode) {
    sp_snap_list_t next, client;
    sp_snap_list_init(&next);
    sp_snap_list_init(&client);
    sp_snap_rec_t *r = sp_snap_list_reserve(&next, 3);
    ck_assert_ptr_nonnull(r);
    memset(r, 0, 3 * sizeof *r);
    for (int i = 0; i < 3; i++) {
        r[i].id = (1ull << 32) | (uint64_t)(2 * i + 1);
        r[i].kind = (uint8_t)(1 + i % 3);
        r[i].pos[0] = i * 16;
        r[i].vel[1] = -i;
        r[i].hp = 1600;
        r[i].owner = (uint32_t)i;
        r[i].radius = 24;
    }
    next.len = 3;
    next.tick = 77;
    next.valid = true;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    ck_assert_int_eq(sp_snap_v1_encode(NULL, &next, &sb, NULL), 0);
    ck_assert_int_eq(deliver(&client, &sb, NULL), 0);
    ck_assert(sp_snap_list_equal(&client, &next));
    ck_assert_uint_eq(client.tick, 77);
    ck_assert_int_eq(client.recs[2].vel[1], -2);
    /* A smaller reserve keeps the array (no allocation per snapshot). */
    const sp_snap_rec_t *before = next.recs;
    ck_assert_ptr_eq(sp_snap_list_reserve(&next, 2), before);
    /* Encoder-side views hold a single array (memory per client). */
    ck_assert_uint_eq(next.scratch_cap, 0);
    ck_assert_uint_eq(sp_snap_list_bytes(&next), next.cap * sizeof(sp_snap_rec_t));
    ck_assert_ptr_null(sp_snap_list_reserve(NULL, 1));
    msgpack_sbuffer_destroy(&sb);
    sp_snap_list_destroy(&next);
    sp_snap_list_destroy(&client);
}
END_TEST

/* ---------------------------------------------------------------- events */

START_TEST(test_snap_event_packers_produce_documented_maps) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ck_assert_int_eq(sp_event_pack_weapon_fired(&pk, 10, 1ull << 32 | 1, 1ull << 32 | 2, true, 12.5), 0);
    ck_assert_int_eq(sp_event_pack_resource_mined(&pk, 11, 3, 4, 3, 2.0), 0);
    ck_assert_int_eq(sp_event_pack_system_alert(&pk, 12, "solar storm!", 5, 2, 7), 0);
    ck_assert_int_eq(sp_event_pack_ship_destroyed(&pk, 13, 9, 0, 1ull << 32 | 1, "weapon"), 0);
    ck_assert_int_eq(sp_event_pack_begin(&pk, SP_EVENT__COUNT, 1, 0), SP_EINVAL);
    size_t off = 0;
    const char *types[4] = {"WeaponFired", "ResourceMined", "SystemAlert", "ShipDestroyed"};
    for (int k = 0; k < 4; k++) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        ck_assert_int_eq(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
        sp_rpc_msg_t m;
        ck_assert_int_eq(sp_rpc_classify(&u.data, &m), 0);
        ck_assert_int_eq(m.type, SP_RPC_NOTIFY);
        ck_assert(m.method_len == 5 && memcmp(m.method, "event", 5) == 0);
        ck_assert_int_eq(m.params->via.array.size, 1);
        const msgpack_object *ev = &m.params->via.array.ptr[0];
        const msgpack_object *t = sp_rpc_map_get(ev, "type");
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(sp_event_lookup(t->via.str.ptr, t->via.str.size), k);
        ck_assert(t->via.str.size == strlen(types[k]) && memcmp(t->via.str.ptr, types[k], t->via.str.size) == 0);
        ck_assert_uint_eq(sp_rpc_map_get(ev, "tick")->via.u64, 10 + (uint64_t)k);
        /* Exactly type, tick and the .def's fields for this event, with their types. */
        uint32_t nf = 0;
#define X(evid, key, ty)                                                                             \
    if (SP_EVENT_##evid == k) {                                                                      \
        const msgpack_object *f = sp_rpc_map_get(ev, key);                                           \
        ck_assert_msg(f != NULL, "%s lacks %s", types[k], key);                                      \
        if (strcmp(ty, "uint") == 0) ck_assert_int_eq(f->type, MSGPACK_OBJECT_POSITIVE_INTEGER);   \
        else if (strcmp(ty, "float") == 0) ck_assert_int_eq(f->type, MSGPACK_OBJECT_FLOAT64);      \
        else if (strcmp(ty, "str") == 0) ck_assert_int_eq(f->type, MSGPACK_OBJECT_STR);            \
        else if (strcmp(ty, "bool") == 0) ck_assert_int_eq(f->type, MSGPACK_OBJECT_BOOLEAN);       \
        nf++;                                                                                        \
    }
        SP_PROTO_EVENT_FIELD_MAP(X)
#undef X
        ck_assert_uint_eq(ev->via.map.size, 2 + nf);
        if (k == 0) {
            ck_assert_uint_eq(sp_rpc_map_get(ev, "ship_id")->via.u64, 1ull << 32 | 1);
            ck_assert_uint_eq(sp_rpc_map_get(ev, "target_id")->via.u64, 1ull << 32 | 2);
            ck_assert(sp_rpc_map_get(ev, "hit")->via.boolean);
            ck_assert(sp_rpc_map_get(ev, "damage")->via.f64 == 12.5);
        } else if (k == 1) {
            const msgpack_object *rt = sp_rpc_map_get(ev, "resource_type");
            ck_assert(rt->via.str.size == 8 && memcmp(rt->via.str.ptr, "platinum", 8) == 0);
            ck_assert(sp_rpc_map_get(ev, "amount")->via.f64 == 2.0);
            ck_assert_uint_eq(sp_rpc_map_get(ev, "asteroid_id")->via.u64, 4);
        } else if (k == 2) {
            const msgpack_object *msg = sp_rpc_map_get(ev, "message");
            ck_assert(msg->via.str.size == 5 && memcmp(msg->via.str.ptr, "solar", 5) == 0);
            ck_assert_int_eq(sp_rpc_map_get(ev, "priority")->via.u64, 2);
            ck_assert_uint_eq(sp_rpc_map_get(ev, "from")->via.u64, 7);
        } else {
            ck_assert_uint_eq(sp_rpc_map_get(ev, "owner")->via.u64, 0);
            ck_assert_uint_eq(sp_rpc_map_get(ev, "by")->via.u64, 1ull << 32 | 1);
            ck_assert_uint_eq(sp_rpc_map_get(ev, "ship_id")->via.u64, 9);
            const msgpack_object *cause = sp_rpc_map_get(ev, "cause");
            ck_assert(cause->via.str.size == 6 && memcmp(cause->via.str.ptr, "weapon", 6) == 0);
        }
        msgpack_unpacked_destroy(&u);
    }
    ck_assert_uint_eq(off, sb.size);
    ck_assert_str_eq(sp_event_name(SP_EVENT_SYSTEM_ALERT), "SystemAlert");
    ck_assert_ptr_null(sp_event_name(-1));
    ck_assert_int_eq(sp_event_lookup("Nope", 4), -1);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

START_TEST(test_snap_quantization_rounds_and_saturates) {
    ck_assert_int_eq(sp_snap_quant_pos(1.0), 16);
    ck_assert_int_eq(sp_snap_quant_pos(-0.03125), -1); /* -0.5 step: away from zero */
    ck_assert_int_eq(sp_snap_quant_pos(1e12), INT32_MAX);
    ck_assert_int_eq(sp_snap_quant_pos(-1e12), INT32_MIN);
    ck_assert_int_eq(sp_snap_quant_pos(NAN), 0);
    ck_assert_int_eq(sp_snap_quant_vel(1.0), 64);
    ck_assert_uint_eq(sp_snap_quant_hp(-5), 0);
    ck_assert_uint_eq(sp_snap_quant_hp(100), 1600);
    ck_assert(sp_snap_pos(sp_snap_quant_pos(12.3)) == 197.0 / 16.0);
}
END_TEST

/* ================================================================ protocol 2 */

/* ---------------------------------------------------------------- helpers */

/* A tiny literal notation for hand-written messages: ints, nil, "str",
 * [a, b, ...] and {} (an empty map), packed as msgpack. */
static const char *lit_pack(msgpack_packer *pk, const char *s) {
    while (*s == ' ') s++;
    if (*s == '[') {
        /* count the elements at this depth first */
        size_t n = 0;
        int depth = 0;
        bool any = false;
        for (const char *t = s + 1; *t && !(depth == 0 && *t == ']'); t++) {
            if (*t == '[' || *t == '{') depth++;
            else if (*t == ']' || *t == '}') depth--;
            else if (*t == ',' && depth == 0) n++;
            if (*t != ' ') any = true;
        }
        msgpack_pack_array(pk, any ? n + 1 : 0);
        s++;
        while (*s == ' ') s++;
        if (*s == ']') return s + 1;
        for (;;) {
            s = lit_pack(pk, s);
            while (*s == ' ') s++;
            if (*s == ',') s++;
            else {
                ck_assert_int_eq(*s, ']');
                return s + 1;
            }
        }
    }
    if (*s == '{') {
        ck_assert_int_eq(s[1], '}');
        msgpack_pack_map(pk, 0);
        return s + 2;
    }
    if (*s == '"') {
        const char *e = strchr(s + 1, '"');
        msgpack_pack_str(pk, (size_t)(e - s - 1));
        msgpack_pack_str_body(pk, s + 1, (size_t)(e - s - 1));
        return e + 1;
    }
    if (strncmp(s, "nil", 3) == 0) {
        msgpack_pack_nil(pk);
        return s + 3;
    }
    char *end;
    long long v = strtoll(s, &end, 10);
    ck_assert_ptr_ne(end, s);
    msgpack_pack_int64(pk, v);
    return end;
}

static void view_copy(sp_snap_view_t *dst, const sp_snap_view_t *src);

/* Both decoders on the same snapshot: sp_snap_apply_bytes() on a copy of v
 * must do exactly what sp_snap_apply() does on v (result, view, stats).
 * Returns sp_snap_apply()'s result; *st is set on success. */
static int apply_twins(sp_snap_view_t *v, const msgpack_object *params, const void *bytes, size_t len,
                       sp_snap_stats_t *st) {
    sp_snap_view_t t;
    sp_snap_view_init(&t);
    view_copy(&t, v);
    sp_snap_stats_t so, sb;
    memset(&so, 0, sizeof so);
    memset(&sb, 0, sizeof sb);
    int rb = sp_snap_apply_bytes(&t, bytes, len, &sb);
    int ro = sp_snap_apply(v, params, &so);
    ck_assert_int_eq(rb, ro);
    ck_assert(sp_snap_view_equal(v, &t));
    if (ro == 0) {
        ck_assert_mem_eq(&so, &sb, sizeof so);
        if (st) *st = so;
    }
    sp_snap_view_destroy(&t);
    return ro;
}

/* The params of one whole notification through the lazy RPC decoder (d
 * initialised and fed here; destroy it after using the bytes). */
static const unsigned char *lazy_params(sp_rpc_decoder_t *d, const char *data, size_t n, size_t *len) {
    ck_assert_int_eq(sp_rpc_decoder_init(d, 64u << 20), 0);
    ck_assert_int_eq(sp_rpc_decoder_feed(d, data, n), 0);
    sp_rpc_msg_t m;
    ck_assert_int_eq(sp_rpc_decoder_next_lazy(d, &m), 1);
    ck_assert(m.lazy);
    ck_assert_ptr_null(m.params);
    ck_assert(m.method_len == 8 && memcmp(m.method, "snapshot", 8) == 0);
    ck_assert_uint_eq(m.wire_size, n);
    *len = m.params_len;
    return m.params_bytes;
}

/* Apply the params written in the literal notation to v. */
static int apply_lit(sp_snap_view_t *v, const char *params, sp_snap_stats_t *st) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    lit_pack(&pk, params);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL), MSGPACK_UNPACK_SUCCESS);
    int rc = apply_twins(v, &u.data, sb.data, sb.size, st);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Apply a whole encoded notification to v. */
static int deliver2(sp_snap_view_t *v, const msgpack_sbuffer *sb, sp_snap_stats_t *st) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *p = unpack_params(&u, sb->data, sb->size);
    sp_rpc_decoder_t d;
    size_t len;
    const unsigned char *bytes = lazy_params(&d, sb->data, sb->size, &len);
    int rc = apply_twins(v, p, bytes, len, st);
    sp_rpc_decoder_destroy(&d);
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* The view's invariants: cells strictly ascending, records strictly
 * ascending within each, count the sum. */
static void check_view_sane(const sp_snap_view_t *v) {
    size_t total = 0;
    for (size_t i = 0; i < v->ncells; i++) {
        const sp_snap_cell_t *c = &v->cells[i];
        if (i > 0) ck_assert_uint_gt(c->cell, v->cells[i - 1].cell);
        ck_assert_uint_le(c->len, c->cap);
        for (uint32_t k = 1; k < c->len; k++) ck_assert_uint_gt(c->recs[k].id, c->recs[k - 1].id);
        /* the id index finds every entity (in this cell, or in another one
         * that holds the same id after a malformed-but-accepted snapshot) */
        for (uint32_t k = 0; k < c->len; k++) {
            const sp_snap_rec_t *f = sp_snap_view_find(v, c->recs[k].id);
            ck_assert_ptr_nonnull(f);
            ck_assert_uint_eq(f->id, c->recs[k].id);
        }
        total += c->len;
    }
    ck_assert_uint_eq(total, v->count);
}

/* A server-correct view (every id in one cell): find returns each record
 * itself, the index holds exactly the view's entities, and absent ids
 * (between and around the present ones) are not found. */
static void check_view_index(const sp_snap_view_t *v) {
    ck_assert_uint_eq(v->idx_len, v->count);
    for (size_t i = 0; i < v->ncells; i++) {
        const sp_snap_cell_t *c = &v->cells[i];
        for (uint32_t k = 0; k < c->len; k++) {
            ck_assert_ptr_eq(sp_snap_view_find(v, c->recs[k].id), &c->recs[k]);
            uint64_t next = c->recs[k].id + 1;
            const sp_snap_rec_t *f = sp_snap_view_find(v, next);
            if (f) ck_assert_uint_eq(f->id, next);
        }
    }
    ck_assert_ptr_null(sp_snap_view_find(v, 0));
}

/* A deep copy of a view (through put_cell). */
static void view_copy(sp_snap_view_t *dst, const sp_snap_view_t *src) {
    sp_snap_view_reset(dst);
    for (size_t i = 0; i < src->ncells; i++)
        ck_assert_int_eq(
            sp_snap_view_put_cell(dst, src->tick, src->cells[i].cell, src->cells[i].recs, src->cells[i].len), 0);
    dst->tick = src->tick;
    dst->valid = src->valid;
}

/* The base view of the hand-written cases: tick 5; cell 3 holds ids 10 and
 * 20, cell 7 id 40, cell 9 nothing. */
static void base_view(sp_snap_view_t *v) {
    sp_snap_rec_t r[3] = {mkrec(10, 1), mkrec(20, 2), mkrec(40, 2)};
    r[0].pos[0] = INT32_MAX - 1;
    sp_snap_view_reset(v);
    ck_assert_int_eq(sp_snap_view_put_cell(v, 5, 3, r, 2), 0);
    ck_assert_int_eq(sp_snap_view_put_cell(v, 5, 7, &r[2], 1), 0);
    ck_assert_int_eq(sp_snap_view_put_cell(v, 5, 9, NULL, 0), 0);
}

/* ---------------------------------------------------------------- tests */

START_TEST(test_snap2_grid_cells_follow_wire2) {
    sp_snap_grid_t g;
    ck_assert_int_eq(sp_snap_grid_init(&g, 2000, 1000), 0);
    ck_assert_uint_eq(g.n, 4);
    ck_assert_int_eq(sp_snap_grid_init(&g, 2000, 3000), 0);
    ck_assert_uint_eq(g.n, 2); /* ceil(4000 / 3000) */
    ck_assert_int_eq(sp_snap_grid_init(&g, 2000, 1000), 0);
    ck_assert_uint_eq(sp_snap_grid_axis(&g, -2000), 0);
    ck_assert_uint_eq(sp_snap_grid_axis(&g, -1000.5), 0);
    ck_assert_uint_eq(sp_snap_grid_axis(&g, -1000), 1);
    ck_assert_uint_eq(sp_snap_grid_axis(&g, 1999.9), 3);
    ck_assert_uint_eq(sp_snap_grid_axis(&g, 2000), 3);  /* clamped */
    ck_assert_uint_eq(sp_snap_grid_axis(&g, 1e9), 3);   /* clamped */
    ck_assert_uint_eq(sp_snap_grid_axis(&g, -1e9), 0);
    ck_assert_uint_eq(sp_snap_grid_axis(&g, NAN), 0);
    ck_assert_uint_eq(sp_snap_grid_cell(&g, -1500, 0, 1500), 0 + 4 * (2 + 4 * 3));
    ck_assert_int_eq(sp_snap_grid_init(&g, 2000, 0), SP_EINVAL);
    ck_assert_int_eq(sp_snap_grid_init(&g, 2000, NAN), SP_EINVAL);
    ck_assert_int_eq(sp_snap_grid_init(&g, -1, 10), SP_EINVAL);
    ck_assert_int_eq(sp_snap_grid_init(&g, 1e6, 1), SP_EINVAL); /* 2e6 cells per axis */
    ck_assert_int_eq(sp_snap_grid_init(&g, 512, 1), 0);
    ck_assert_uint_eq(g.n, SP_SNAP_MAX_CELLS_PER_AXIS);
}
END_TEST

START_TEST(test_snap2_assembled_full_snapshot_reproduces_cells) {
    sp_snap_rec_t a[2] = {mkrec(1ull << 32 | 1, 1), mkrec(1ull << 32 | 9, 2)};
    sp_snap_rec_t b[1] = {mkrec(3ull << 32 | 2, 3)};
    a[0].pos[0] = -123456;
    a[0].vel[2] = 77;
    a[1].owner = 5;
    b[0].pos[1] = INT32_MAX;
    b[0].pos[2] = INT32_MIN;
    b[0].hp = UINT32_MAX;
    msgpack_sbuffer c1, c2, c3, sb, parts;
    msgpack_sbuffer_init(&c1);
    msgpack_sbuffer_init(&c2);
    msgpack_sbuffer_init(&c3);
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&parts);
    sp_snap_stats_t st;
    ck_assert_int_eq(sp_snap_chunk_full(&c1, 4, a, 2, &st), 0);
    ck_assert_uint_eq(st.entered, 2);
    ck_assert_uint_eq(st.bytes, c1.size);
    ck_assert_int_eq(sp_snap_chunk_full(&c2, 70000, b, 1, NULL), 0);
    ck_assert_int_eq(sp_snap_chunk_full(&c3, 4294967295u, NULL, 0, NULL), 0); /* an empty cell */
    sp_snap_piece_t pc[3] = {{c1.data, c1.size}, {c2.data, c2.size}, {c3.data, c3.size}};
    ck_assert_int_eq(sp_snap_assemble(&sb, 42, true, 0, pc, 3, NULL, 0, 3), 0);
    /* Byte for byte: head + chunks + tail, as a server writes them with writev. */
    ck_assert_int_eq(sp_snap_pack_head(&parts, 42, true, 0, 3), 0);
    size_t head = parts.size;
    for (int k = 0; k < 3; k++) msgpack_sbuffer_write(&parts, pc[k].data, pc[k].len);
    ck_assert_int_eq(sp_snap_pack_tail(&parts, NULL, 0, 3), 0);
    ck_assert_uint_eq(parts.size, sb.size);
    ck_assert_int_eq(memcmp(parts.data, sb.data, sb.size), 0);
    ck_assert_uint_le(head + (parts.size - head - c1.size - c2.size - c3.size), 32);

    sp_snap_view_t v, want;
    sp_snap_view_init(&v);
    sp_snap_view_init(&want);
    sp_snap_stats_t cst;
    ck_assert_int_eq(deliver2(&v, &sb, &cst), 0);
    ck_assert(cst.full);
    ck_assert_uint_eq(cst.chunks, 3);
    ck_assert_uint_eq(cst.full_cells, 3);
    ck_assert_uint_eq(cst.entered, 3);
    ck_assert_uint_eq(cst.count, 3);
    ck_assert_int_eq(sp_snap_view_put_cell(&want, 42, 4, a, 2), 0);
    ck_assert_int_eq(sp_snap_view_put_cell(&want, 42, 70000, b, 1), 0);
    ck_assert_int_eq(sp_snap_view_put_cell(&want, 42, 4294967295u, NULL, 0), 0);
    ck_assert(sp_snap_view_equal(&v, &want));
    check_view_sane(&v);
    ck_assert_uint_eq(v.ncells, 3);
    ck_assert_uint_eq(v.count, 3);
    ck_assert_int_eq(sp_snap_view_find(&v, 1ull << 32 | 9)->owner, 5);
    ck_assert_uint_eq(sp_snap_view_find(&v, 3ull << 32 | 2)->hp, UINT32_MAX);
    ck_assert_ptr_null(sp_snap_view_find(&v, 7));
    ck_assert_uint_eq(sp_snap_view_cell(&v, 70000)->len, 1);
    ck_assert_ptr_null(sp_snap_view_cell(&v, 5));
    /* A second full snapshot replaces everything: one cell left. */
    msgpack_sbuffer_clear(&sb);
    sp_snap_piece_t one = {c2.data, c2.size};
    ck_assert_int_eq(sp_snap_assemble(&sb, 50, true, 0, &one, 1, NULL, 0, 1), 0);
    ck_assert_int_eq(deliver2(&v, &sb, NULL), 0);
    sp_snap_view_reset(&want);
    ck_assert_int_eq(sp_snap_view_put_cell(&want, 50, 70000, b, 1), 0);
    ck_assert(sp_snap_view_equal(&v, &want));
    check_view_sane(&v);
    /* Encoders refuse bad records. */
    sp_snap_rec_t bad[2] = {mkrec(9, 1), mkrec(9, 1)};
    size_t before = c1.size;
    ck_assert_int_eq(sp_snap_chunk_full(&c1, 1, bad, 2, NULL), SP_EINVAL);
    ck_assert_int_eq(sp_snap_chunk_delta(&c1, 1, 3, a, 2, bad, 2, NULL), SP_EINVAL);
    bad[1] = mkrec(1ull << 32 | 9, 3); /* kind changes */
    ck_assert_int_eq(sp_snap_chunk_delta(&c1, 1, 3, a, 2, bad + 1, 1, NULL), SP_EINVAL);
    bad[0].kind = 0;
    ck_assert_int_eq(sp_snap_chunk_full(&c1, 1, bad, 1, NULL), SP_EINVAL);
    ck_assert_uint_eq(c1.size, before);
    msgpack_sbuffer_destroy(&c1);
    msgpack_sbuffer_destroy(&c2);
    msgpack_sbuffer_destroy(&c3);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&parts);
    sp_snap_view_destroy(&v);
    sp_snap_view_destroy(&want);
}
END_TEST

START_TEST(test_snap2_small_move_costs_two_bytes_in_a_delta_chunk) {
    sp_snap_rec_t a = mkrec(5, 2), b = a, c = a;
    b.pos[0] += 1;
    b.pos[1] -= 2;
    msgpack_sbuffer empty, moved;
    msgpack_sbuffer_init(&empty);
    msgpack_sbuffer_init(&moved);
    sp_snap_stats_t st;
    ck_assert_int_eq(sp_snap_chunk_delta(&empty, 3, 100, &a, 1, &c, 1, &st), 0);
    ck_assert_uint_eq(st.entered + st.changed + st.left, 0); /* unchanged: callers skip it */
    ck_assert_int_eq(sp_snap_chunk_delta(&moved, 3, 100, &a, 1, &b, 1, &st), 0);
    ck_assert_uint_eq(st.changed, 1);
    ck_assert_uint_eq(moved.size, empty.size + 2); /* [iddelta 5, op 77] */
    ck_assert_uint_eq(st.bytes, moved.size);
    /* Applied to a view holding the cell at tick 100. */
    sp_snap_view_t v;
    sp_snap_view_init(&v);
    ck_assert_int_eq(sp_snap_view_put_cell(&v, 100, 3, &a, 1), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sp_snap_piece_t pc = {moved.data, moved.size};
    ck_assert_int_eq(sp_snap_assemble(&sb, 103, false, 100, &pc, 1, NULL, 0, 1), 0);
    ck_assert_int_eq(deliver2(&v, &sb, &st), 0);
    ck_assert_uint_eq(st.changed, 1);
    ck_assert_uint_eq(v.tick, 103);
    ck_assert_int_eq(v.cells[0].recs[0].pos[0], 1);
    ck_assert_int_eq(v.cells[0].recs[0].pos[1], -2);
    msgpack_sbuffer_destroy(&empty);
    msgpack_sbuffer_destroy(&moved);
    msgpack_sbuffer_destroy(&sb);
    sp_snap_view_destroy(&v);
}
END_TEST

START_TEST(test_snap2_malformed_snapshots_are_refused_and_view_kept) {
    sp_snap_view_t v, copy;
    sp_snap_view_init(&v);
    sp_snap_view_init(&copy);
    base_view(&v);
    view_copy(&copy, &v);
#define E30 "[30, 1, 0, 0, 0, 0, 0, 0, 16, 0, 16]"
    static const struct {
        const char *what, *params;
    } cases[] = {
        {"not an array", "{}"},
        {"too short", "[8, 5, [], []]"},
        {"tick a str", "[\"8\", 5, [], [], 3]"},
        {"tick negative", "[-8, 5, [], [], 3]"},
        {"base a str", "[8, \"5\", [], [], 3]"},
        {"chunks a map", "[8, 5, {}, [], 3]"},
        {"gone a map", "[8, 5, [], {}, 3]"},
        {"count negative", "[8, 5, [], [], -1]"},
        {"count a str", "[8, 5, [], [], \"3\"]"},
        {"count mismatch", "[8, 5, [], [], 4]"},
        {"count mismatch after gone", "[8, 5, [], [7], 3]"},
        {"gone descending", "[8, 5, [], [7, 3], 0]"},
        {"gone twice", "[8, 5, [], [3, 3], 1]"},
        {"gone beyond uint32", "[8, 5, [], [4294967296], 3]"},
        {"gone a str", "[8, 5, [], [\"3\"], 1]"},
        {"chunk not an array", "[8, 5, [5], [], 3]"},
        {"chunk too short", "[8, 5, [[3, 5, [], [], []]], [], 3]"},
        {"chunk cell a str", "[8, 5, [[\"3\", 5, [], [], [], 2]], [], 3]"},
        {"chunk cell beyond uint32", "[8, 5, [[4294967296, nil, [], [], [], 0]], [], 3]"},
        {"chunks descending", "[8, 5, [[7, 5, [], [], [], 1], [3, 5, [], [], [], 2]], [], 3]"},
        {"chunk twice", "[8, 5, [[3, 5, [], [], [], 2], [3, 5, [], [], [], 2]], [], 3]"},
        {"cbase not base_tick", "[8, 5, [[3, 4, [], [], [], 2]], [], 3]"},
        {"cbase a str", "[8, 5, [[3, \"5\", [], [], [], 2]], [], 3]"},
        {"delta chunk in a full snapshot", "[8, nil, [[3, 5, [], [], [], 0]], [], 0]"},
        {"full chunk with changed", "[8, 5, [[3, nil, [], [10, 62], [], 0]], [], 1]"},
        {"full chunk with left", "[8, 5, [[3, nil, [], [], [10], 0]], [], 1]"},
        {"entered a map", "[8, 5, [[3, 5, {}, [], [], 2]], [], 3]"},
        {"entered not a multiple of 11", "[8, 5, [[3, 5, [30, 1, 0], [], [], 3]], [], 4]"},
        {"n mismatch, changes only", "[8, 5, [[3, 5, [], [], [], 3]], [], 4]"},
        {"n mismatch, with left", "[8, 5, [[3, 5, [], [], [10], 2]], [], 3]"},
        {"n mismatch, full cell", "[8, 5, [[9, nil, " E30 ", [], [], 2]], [], 5]"},
        {"n negative", "[8, 5, [[3, 5, [], [], [], -1]], [], 3]"},
        {"entered id already in the cell", "[8, 5, [[3, 5, [10, 1, 0, 0, 0, 0, 0, 0, 16, 0, 16], [], [], 3]], [], 4]"},
        {"entered kind 0", "[8, 5, [[3, 5, [30, 0, 0, 0, 0, 0, 0, 0, 16, 0, 16], [], [], 3]], [], 4]"},
        {"entered pos beyond int32", "[8, 5, [[3, 5, [30, 1, 2147483648, 0, 0, 0, 0, 0, 16, 0, 16], [], [], 3]], [], 4]"},
        {"entered ids not ascending",
         "[8, 5, [[9, 5, [30, 1, 0, 0, 0, 0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 0, 0, 0, 16, 0, 16], [], [], 2]], [], 5]"},
        {"changed id absent", "[8, 5, [[3, 5, [], [15, 62], [], 2]], [], 3]"},
        {"changed id of another cell", "[8, 5, [[3, 5, [], [40, 62], [], 2]], [], 3]"},
        {"changed op 125", "[8, 5, [[3, 5, [], [10, 125], [], 2]], [], 3]"},
        {"changed op -32", "[8, 5, [[3, 5, [], [10, -32], [], 2]], [], 3]"},
        {"changed values missing", "[8, 5, [[3, 5, [], [10, -1, 1, 2], [], 2]], [], 3]"},
        {"changed pos overflows int32", "[8, 5, [[3, 5, [], [10, -1, 5, 0, 0], [], 2]], [], 3]"},
        {"changed op missing", "[8, 5, [[3, 5, [], [10], [], 2]], [], 3]"},
        {"changed and left same id", "[8, 5, [[3, 5, [], [10, 62], [10], 1]], [], 2]"},
        {"left id absent", "[8, 5, [[3, 5, [], [], [11], 1]], [], 2]"},
        {"left iddelta 0", "[8, 5, [[3, 5, [], [], [10, 0], 0]], [], 1]"},
        {"changes in a cell just gone", "[8, 5, [[3, 5, [], [10, 62], [], 2]], [3], 3]"},
        {"last chunk bad, first good", "[8, 5, [[3, 5, [], [10, 62], [], 2], [7, 5, [], [41, 62], [], 1]], [], 3]"},
        {"last chunk bad after new cells and gone",
         "[8, 5, [[1, nil, " E30 ", [], [], 1], [3, 5, [], [], [20], 1], [7, 5, [], [40, -1], [], 1]], [9], 3]"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int rc = apply_lit(&v, cases[k].params, NULL);
        ck_assert_msg(rc == SP_ECORRUPT, "%s: returned %d", cases[k].what, rc);
        ck_assert_msg(sp_snap_view_equal(&v, &copy), "%s: view changed", cases[k].what);
        check_view_sane(&v);
    }
    /* Desync: not the view's tick, or no view yet. */
    ck_assert_int_eq(apply_lit(&v, "[8, 4, [], [], 3]", NULL), SP_EPROTO);
    ck_assert(sp_snap_view_equal(&v, &copy));
    sp_snap_view_t fresh;
    sp_snap_view_init(&fresh);
    ck_assert_int_eq(apply_lit(&fresh, "[8, 5, [], [], 0]", NULL), SP_EPROTO);
    ck_assert(!fresh.valid);

    /* The well-formed neighbours do apply. */
    sp_snap_stats_t st;
    ck_assert_int_eq(apply_lit(&v, "[8, 5, [[3, 5, [], [10, 62], [], 2]], [], 3]", &st), 0);
    ck_assert_uint_eq(v.tick, 8);
    ck_assert_int_eq(sp_snap_view_find(&v, 10)->pos[0], INT32_MAX - 1); /* op 62: (0, 0, 0) */
    ck_assert_uint_eq(st.changed, 1);
    base_view(&v);
    ck_assert_int_eq(apply_lit(&v, "[8, 5, [[3, 5, [], [10, -1, -5, 0, 0], [], 2]], [], 3]", NULL), 0);
    ck_assert_int_eq(sp_snap_view_find(&v, 10)->pos[0], INT32_MAX - 6);
    /* New cell 1, cell 3 loses id 10, cells 7 and 9 gone (and one never seen). */
    base_view(&v);
    ck_assert_int_eq(apply_lit(&v, "[8, 5, [[1, nil, " E30 ", [], [], 1], [3, 5, [], [], [10], 1]], [2, 7, 9], 2]", &st),
                     0);
    check_view_sane(&v);
    ck_assert_uint_eq(v.ncells, 2);
    ck_assert_uint_eq(v.cells[0].cell, 1);
    ck_assert_uint_eq(v.cells[1].cell, 3);
    ck_assert_uint_eq(v.cells[1].recs[0].id, 20);
    ck_assert_uint_eq(st.entered, 1);
    ck_assert_uint_eq(st.left, 1);
    ck_assert_uint_eq(st.gone, 3);
    /* A delta chunk of a cell not in the view applies to an empty cell (the reference decoder). */
    base_view(&v);
    ck_assert_int_eq(apply_lit(&v, "[8, 5, [[12, 5, " E30 ", [], [], 1]], [], 4]", NULL), 0);
    ck_assert_uint_eq(sp_snap_view_cell(&v, 12)->len, 1);
    /* A gone cell sent again in full in the same snapshot. */
    base_view(&v);
    ck_assert_int_eq(apply_lit(&v, "[8, 5, [[3, nil, " E30 ", [], [], 1]], [3], 2]", NULL), 0);
    ck_assert_uint_eq(sp_snap_view_cell(&v, 3)->len, 1);
    ck_assert_uint_eq(sp_snap_view_cell(&v, 3)->recs[0].id, 30);
    ck_assert_uint_eq(v.count, 2);
    /* A full cell in a delta snapshot replaces the cell's content. */
    base_view(&v);
    ck_assert_int_eq(apply_lit(&v, "[8, 5, [[3, nil, " E30 ", [], [], 1]], [], 2]", NULL), 0);
    ck_assert_uint_eq(sp_snap_view_cell(&v, 3)->recs[0].id, 30);
    ck_assert_ptr_null(sp_snap_view_find(&v, 10));
    /* Later versions' extra elements (params, chunk) are ignored. */
    base_view(&v);
    ck_assert_int_eq(apply_lit(&v, "[8, 5, [[3, 5, [], [], [10], 1, \"x\", 7]], [], 2, [1, 2], \"more\"]", NULL), 0);
    ck_assert_uint_eq(v.count, 2);
    /* A full snapshot with nothing in it: an empty valid view. */
    ck_assert_int_eq(apply_lit(&v, "[9, nil, [], [], 0]", NULL), 0);
    ck_assert(v.valid);
    ck_assert_uint_eq(v.ncells, 0);
    ck_assert_uint_eq(v.tick, 9);
#undef E30
    sp_snap_view_destroy(&v);
    sp_snap_view_destroy(&copy);
    sp_snap_view_destroy(&fresh);
}
END_TEST

/* Applying touches only what the chunks name: the other cells keep their
 * arrays (no copy of the view), and a snapshot that adds or removes no cell
 * keeps the cell list itself. */
START_TEST(test_snap2_apply_touches_only_the_chunks_cells) {
    enum { NC = 200, PER = 50 };
    sp_snap_view_t v;
    sp_snap_view_init(&v);
    sp_snap_rec_t recs[PER];
    for (uint32_t c = 0; c < NC; c++) {
        for (uint32_t k = 0; k < PER; k++) recs[k] = mkrec((uint64_t)c * 1000 + k + 1, 1);
        ck_assert_int_eq(sp_snap_view_put_cell(&v, 10, c * 2, recs, PER), 0);
    }
    const sp_snap_rec_t *arr[NC];
    for (uint32_t c = 0; c < NC; c++) arr[c] = v.cells[c].recs;
    const sp_snap_cell_t *list = v.cells;
    /* One small move in cell 20 (entity 10001). */
    ck_assert_int_eq(apply_lit(&v, "[11, 10, [[20, 10, [], [10001, 63], [], 50]], [], 10000]", NULL), 0);
    ck_assert_ptr_eq(v.cells, list);
    for (uint32_t c = 0; c < NC; c++) ck_assert_ptr_eq(v.cells[c].recs, arr[c]);
    ck_assert_int_eq(v.cells[10].recs[0].pos[2], 1);
    /* Entered and left in cell 40: that cell's array is reused in place. */
    ck_assert_int_eq(apply_lit(&v, "[12, 11, [[40, 11, [20051, 1, 0, 0, 0, 0, 0, 0, 16, 0, 16], [], [20001], 50]], [], 10000]",
                               NULL),
                     0);
    ck_assert_ptr_eq(v.cells, list);
    for (uint32_t c = 0; c < NC; c++) ck_assert_ptr_eq(v.cells[c].recs, arr[c]);
    ck_assert_uint_eq(v.cells[20].recs[49].id, 20051);
    /* A new cell and a gone one: a new list, the arrays move along unchanged. */
    ck_assert_int_eq(apply_lit(&v, "[13, 12, [[1, nil, [], [], [], 0]], [398], 9950]", NULL), 0);
    check_view_sane(&v);
    ck_assert_uint_eq(v.ncells, NC);
    ck_assert_uint_eq(v.cells[1].cell, 1);
    ck_assert_ptr_eq(v.cells[0].recs, arr[0]);
    for (uint32_t c = 1; c < NC - 1; c++) ck_assert_ptr_eq(v.cells[c + 1].recs, arr[c]);
    sp_snap_view_destroy(&v);
}
END_TEST

/* ---------------------------------------------------------------- random chain */

/* A small world on an 8^3 grid, each round's state kept for a while (the
 * server's cell contents at older ticks), and one client whose visible
 * cells follow a wandering sphere, with at most `cap` new cells per
 * snapshot (the entering budget, in whole cells), skipped rounds (its view
 * stays at an older tick: full chunks of the cells that changed since, or
 * deltas against that tick), resyncs (full snapshots) and gone cells. The
 * server side is the rule of wire2 written out plainly; after every
 * delivered snapshot the client's view equals the server's cells exactly. */
enum { W_MAX = 500, W_HIST = 16, W_N = 8 };
typedef struct wstate {
    sp_snap_rec_t recs[W_MAX]; /* id ascending */
    uint32_t cell[W_MAX];
    size_t n;
} wstate_t;

static int cmp_rec_id(const void *a, const void *b) {
    uint64_t x = ((const sp_snap_rec_t *)a)->id, y = ((const sp_snap_rec_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* The records of cell c in w, id ascending, into out; returns the count. */
static size_t cell_content(const wstate_t *w, uint32_t c, sp_snap_rec_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++)
        if (w->cell[i] == c) out[k++] = w->recs[i];
    return k;
}

static bool same_content(const sp_snap_rec_t *a, size_t na, const sp_snap_rec_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* sp_snap_chunk_delta_sparse over the ids that differ between a and b (and
 * a few equal ones, as a caller's superset would hold) gives the bytes of
 * the delta over the whole contents, `want`. */
static void sparse_equals_whole(const msgpack_sbuffer *want, uint32_t cell, uint64_t tick, const sp_snap_rec_t *a,
                                size_t na, const sp_snap_rec_t *b, size_t nb) {
    sp_snap_rec_t *sa = malloc((na + 1) * sizeof *sa), *sb = malloc((nb + 1) * sizeof *sb);
    ck_assert(sa != NULL && sb != NULL);
    size_t i = 0, j = 0, ka = 0, kb = 0, k = 0;
    while (i < na || j < nb) {
        if (j >= nb || (i < na && a[i].id < b[j].id)) {
            sa[ka++] = a[i++];
        } else if (i >= na || b[j].id < a[i].id) {
            sb[kb++] = b[j++];
        } else {
            if (memcmp(&a[i], &b[j], sizeof a[i]) != 0 || k++ % 3 == 0) { /* changed, or a superset's extra */
                sa[ka++] = a[i];
                sb[kb++] = b[j];
            }
            i++;
            j++;
        }
    }
    msgpack_sbuffer got;
    msgpack_sbuffer_init(&got);
    ck_assert_int_eq(sp_snap_chunk_delta_sparse(&got, cell, tick, sa, ka, sb, kb, nb, NULL), 0);
    ck_assert_uint_eq(got.size, want->size);
    ck_assert_int_eq(memcmp(got.data, want->data, got.size), 0);
    ck_assert_int_eq(sp_snap_chunk_delta_sparse(&got, cell, tick, sa, ka, sb, kb, kb ? kb - 1 : 0, NULL) == 0 && kb > 0,
                     0); /* a count below the records given is refused */
    msgpack_sbuffer_destroy(&got);
    free(sa);
    free(sb);
}

START_TEST(test_snap2_random_chain_reproduces_server_cells) {
    rng_state = 0x5eed2ull;
    const double H = 1000;
    sp_snap_grid_t g;
    ck_assert_int_eq(sp_snap_grid_init(&g, H, 250), 0);
    ck_assert_uint_eq(g.n, W_N);
    wstate_t *hist = calloc(W_HIST, sizeof *hist); /* round t at hist[t % W_HIST] */
    double (*pos)[3] = calloc(W_MAX, sizeof *pos), (*vel)[3] = calloc(W_MAX, sizeof *vel);
    sp_snap_rec_t *live = calloc(W_MAX, sizeof *live);
    size_t nlive = 0;
    uint32_t next_index = 1;
    enum { NCELLS = W_N * W_N * W_N };
    bool *have = calloc(NCELLS, sizeof *have), *vis = calloc(NCELLS, sizeof *vis);
    sp_snap_rec_t *a = calloc(W_MAX, sizeof *a), *b = calloc(W_MAX, sizeof *b);
    msgpack_sbuffer *chunk = calloc(NCELLS, sizeof *chunk);
    sp_snap_piece_t *pc = calloc(NCELLS, sizeof *pc);
    uint32_t *gone = calloc(NCELLS, sizeof *gone);
    for (int c = 0; c < NCELLS; c++) msgpack_sbuffer_init(&chunk[c]);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    sp_snap_view_t v, want;
    sp_snap_view_init(&v);
    sp_snap_view_init(&want);
    bool have_view = false;
    uint64_t view_tick = 0;
    double ctr[3] = {0, 0, 0}, cv[3] = {40, -25, 15};
    uint64_t n_delta = 0, n_full = 0, n_gone = 0, n_skip = 0, n_older = 0, n_capped = 0, entered = 0, left = 0;
    for (uint64_t t = 0; t < 600; t++) {
        /* the world moves */
        for (size_t i = 0; i < nlive;) {
            if (rndu(100) < 2) {
                live[i] = live[--nlive];
                memcpy(pos[i], pos[nlive], sizeof pos[i]);
                memcpy(vel[i], vel[nlive], sizeof vel[i]);
            } else {
                i++;
            }
        }
        for (int k = (int)rndu(12); k > 0 && nlive < W_MAX; k--) {
            live[nlive] = mkrec((1 + rndu(3)) << 20 | next_index++, (uint8_t)(1 + rndu(3)));
            bool fast = rndu(4) == 0;
            for (int x = 0; x < 3; x++) {
                pos[nlive][x] = rndf(-H, H);
                vel[nlive][x] = rndu(3) ? 0 : rndf(fast ? -300 : -2, fast ? 300 : 2);
            }
            nlive++;
        }
        for (size_t i = 0; i < nlive; i++) {
            for (int x = 0; x < 3; x++) {
                pos[i][x] += vel[i][x] * 0.05;
                if (pos[i][x] > H || pos[i][x] < -H) vel[i][x] = -vel[i][x];
                live[i].pos[x] = sp_snap_quant_pos(pos[i][x]);
                live[i].vel[x] = sp_snap_quant_vel(vel[i][x]);
            }
            if (rndu(100) < 3) live[i].hp = rndu(5000);
            if (rndu(200) == 0) live[i].owner = rndu(9);
        }
        wstate_t *w = &hist[t % W_HIST];
        memcpy(w->recs, live, nlive * sizeof *live);
        w->n = nlive;
        qsort(w->recs, w->n, sizeof w->recs[0], cmp_rec_id);
        for (size_t i = 0; i < w->n; i++)
            w->cell[i] = sp_snap_grid_cell(&g, sp_snap_pos(w->recs[i].pos[0]), sp_snap_pos(w->recs[i].pos[1]),
                                           sp_snap_pos(w->recs[i].pos[2]));
        /* the client's sphere wanders; the cells it intersects are visible */
        for (int x = 0; x < 3; x++) {
            ctr[x] += cv[x];
            if (ctr[x] > H || ctr[x] < -H) cv[x] = -cv[x];
        }
        double r = 300 + 200 * sin((double)t / 40);
        for (uint32_t c = 0; c < NCELLS; c++) {
            uint32_t ix = c % W_N, iy = c / W_N % W_N, iz = c / (W_N * W_N);
            double d2 = 0;
            uint32_t ii[3] = {ix, iy, iz};
            for (int x = 0; x < 3; x++) {
                double lo = -H + ii[x] * 250.0, hi = lo + 250, q = ctr[x] < lo ? lo : ctr[x] > hi ? hi : ctr[x];
                d2 += (q - ctr[x]) * (q - ctr[x]);
            }
            vis[c] = d2 <= r * r;
        }
        /* skip (the view stays at its tick) or resync */
        if (have_view && rndu(100) < 12 && t - view_tick < W_HIST - 1) {
            n_skip++;
            continue;
        }
        bool full = !have_view || rndu(100) < 3;
        bool older = have_view && view_tick != t - 1;
        bool deltas_from_older = rndu(2) == 0; /* either is valid wire2 */
        const wstate_t *ow = have_view ? &hist[view_tick % W_HIST] : NULL;
        size_t nch = 0, ngone = 0, cap = 1 + rndu(6), newcells = 0;
        uint64_t count = 0;
        for (uint32_t c = 0; c < NCELLS; c++) {
            bool held = have_view && !full && have[c];
            if (held && !vis[c]) {
                gone[ngone++] = c;
                have[c] = false;
                continue;
            }
            if (!vis[c]) {
                if (full) have[c] = false;
                continue;
            }
            size_t nb = cell_content(w, c, b);
            msgpack_sbuffer_clear(&chunk[c]);
            if (held) {
                size_t na = cell_content(ow, c, a);
                if (!same_content(a, na, b, nb)) {
                    if (!older || deltas_from_older) {
                        sp_snap_stats_t cs;
                        ck_assert_int_eq(sp_snap_chunk_delta(&chunk[c], c, view_tick, a, na, b, nb, &cs), 0);
                        sparse_equals_whole(&chunk[c], c, view_tick, a, na, b, nb);
                        entered += cs.entered;
                        left += cs.left;
                        n_delta++;
                        n_older += older;
                    } else {
                        ck_assert_int_eq(sp_snap_chunk_full(&chunk[c], c, b, nb, NULL), 0);
                        n_full++;
                    }
                    pc[nch++] = (sp_snap_piece_t){chunk[c].data, chunk[c].size};
                }
                count += nb;
                continue;
            }
            /* newly seen: a full cell, within the cap (nearest first would be
             * the server's order; id order is as good for the wire) */
            if (newcells >= cap) {
                have[c] = false;
                n_capped++;
                continue;
            }
            newcells++;
            ck_assert_int_eq(sp_snap_chunk_full(&chunk[c], c, b, nb, NULL), 0);
            pc[nch++] = (sp_snap_piece_t){chunk[c].data, chunk[c].size};
            n_full++;
            have[c] = true;
            count += nb;
        }
        n_gone += ngone;
        msgpack_sbuffer_clear(&sb);
        ck_assert_int_eq(sp_snap_assemble(&sb, t, full, view_tick, pc, nch, gone, ngone, count), 0);
        sp_snap_stats_t st;
        ck_assert_msg(deliver2(&v, &sb, &st) == 0, "round %llu: refused", (unsigned long long)t);
        have_view = true;
        view_tick = t;
        /* the server's cells at t, as the client should have them */
        sp_snap_view_reset(&want);
        for (uint32_t c = 0; c < NCELLS; c++)
            if (have[c]) {
                size_t nb = cell_content(w, c, b);
                ck_assert_int_eq(sp_snap_view_put_cell(&want, t, c, b, nb), 0);
            }
        want.tick = t;
        want.valid = true;
        ck_assert_msg(sp_snap_view_equal(&v, &want), "round %llu: view differs", (unsigned long long)t);
        check_view_sane(&v);
        check_view_index(&v);
        check_view_index(&want);
        ck_assert_uint_eq(st.count, count);
    }
    /* The chain exercised every path. */
    ck_assert_uint_gt(n_delta, 500);
    ck_assert_uint_gt(n_full, 500);
    ck_assert_uint_gt(n_gone, 100);
    ck_assert_uint_gt(n_skip, 30);
    ck_assert_uint_gt(n_older, 30);
    ck_assert_uint_gt(n_capped, 50);
    ck_assert_uint_gt(entered, 50); /* entities crossing between held cells */
    ck_assert_uint_gt(left, 50);
    for (int c = 0; c < NCELLS; c++) msgpack_sbuffer_destroy(&chunk[c]);
    msgpack_sbuffer_destroy(&sb);
    sp_snap_view_destroy(&v);
    sp_snap_view_destroy(&want);
    free(hist);
    free(pos);
    free(vel);
    free(live);
    free(have);
    free(vis);
    free(a);
    free(b);
    free(chunk);
    free(pc);
    free(gone);
}
END_TEST

/* Random corruption of real protocol-2 snapshots: 0 or an error, never a
 * crash (ASan/UBSan builds check memory); a failed apply leaves the view as
 * it was, a successful one leaves it sane. */
START_TEST(test_snap2_fuzzed_snapshots_never_crash) {
    rng_state = 777;
    sp_snap_rec_t r[40];
    for (int k = 0; k < 40; k++) {
        r[k] = mkrec((uint64_t)k * 7 + 3, (uint8_t)(1 + k % 3));
        r[k].pos[0] = (int32_t)(k * 100);
    }
    sp_snap_view_t v, copy;
    sp_snap_view_init(&v);
    sp_snap_view_init(&copy);
    msgpack_sbuffer c[4], sb, mut;
    for (int k = 0; k < 4; k++) msgpack_sbuffer_init(&c[k]);
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&mut);
    int ok = 0, refused = 0, lazy_seen = 0;
    for (int iter = 0; iter < 4000; iter++) {
        /* a view of cells 1, 2, 3 at tick 10 */
        sp_snap_view_reset(&v);
        ck_assert_int_eq(sp_snap_view_put_cell(&v, 10, 1, r, 10), 0);
        ck_assert_int_eq(sp_snap_view_put_cell(&v, 10, 2, r + 10, 10), 0);
        ck_assert_int_eq(sp_snap_view_put_cell(&v, 10, 3, r + 20, 10), 0);
        view_copy(&copy, &v);
        sp_snap_rec_t moved[12];
        memcpy(moved, r + 1, 9 * sizeof *moved);
        moved[0].pos[1] += 1;
        moved[3].hp += 9;
        moved[9] = r[35];
        for (int k = 0; k < 4; k++) msgpack_sbuffer_clear(&c[k]);
        ck_assert_int_eq(sp_snap_chunk_delta(&c[0], 1, 10, r, 10, moved, 10, NULL), 0);
        ck_assert_int_eq(sp_snap_chunk_full(&c[1], 3, r + 22, 5, NULL), 0);
        ck_assert_int_eq(sp_snap_chunk_full(&c[2], 5, r + 30, 5, NULL), 0);
        sp_snap_piece_t pc[3] = {{c[0].data, c[0].size}, {c[1].data, c[1].size}, {c[2].data, c[2].size}};
        const uint32_t gone[1] = {2};
        msgpack_sbuffer_clear(&sb);
        ck_assert_int_eq(sp_snap_assemble(&sb, 11, false, 10, pc, 3, gone, 1, 20), 0);
        if (iter == 0) {
            ck_assert_int_eq(deliver2(&v, &sb, NULL), 0);
            check_view_sane(&v);
            ck_assert_uint_eq(v.count, 20);
            continue;
        }
        msgpack_sbuffer_clear(&mut);
        msgpack_sbuffer_write(&mut, sb.data, sb.size);
        int flips = 1 + (int)rndu(4);
        for (int f = 0; f < flips; f++) mut.data[rndu((uint32_t)mut.size)] = (char)rnd();
        if (rndu(4) == 0) mut.size = 1 + rndu((uint32_t)mut.size); /* truncated */
        /* Through the bounded RPC decoder, as a client does: raw msgpack-c
         * would try to allocate for a corrupted array32 header. */
        sp_rpc_decoder_t d;
        sp_rpc_decoder_init(&d, 1u << 20);
        sp_rpc_msg_t m;
        if (sp_rpc_decoder_feed(&d, mut.data, mut.size) == 0 && sp_rpc_decoder_next(&d, &m) == 1) {
            const msgpack_object *params = m.type == SP_RPC_NOTIFY ? m.params : m.root;
            /* The same bytes through the lazy decoder: a notification in the
             * usual form comes as bytes, which must decode the same. */
            sp_rpc_decoder_t d2;
            sp_rpc_decoder_init(&d2, 1u << 20);
            sp_rpc_msg_t m2;
            ck_assert_int_eq(sp_rpc_decoder_feed(&d2, mut.data, mut.size), 0);
            ck_assert_int_eq(sp_rpc_decoder_next_lazy(&d2, &m2), 1);
            ck_assert_uint_eq(m2.wire_size, m.wire_size);
            int rc;
            if (m2.lazy) {
                ck_assert_int_eq(m.type, SP_RPC_NOTIFY);
                lazy_seen++;
                rc = apply_twins(&v, params, m2.params_bytes, m2.params_len, NULL);
            } else {
                rc = sp_snap_apply(&v, params, NULL);
            }
            sp_rpc_decoder_destroy(&d2);
            if (rc == 0) {
                ok++;
                check_view_sane(&v);
            } else {
                refused++;
                ck_assert(rc == SP_ECORRUPT || rc == SP_EPROTO);
                ck_assert(sp_snap_view_equal(&v, &copy));
            }
        }
        sp_rpc_decoder_destroy(&d);
    }
    ck_assert_int_gt(refused, 100);
    ck_assert_int_gt(ok, 10); /* e.g. a flipped value that stays in range */
    ck_assert_int_gt(lazy_seen, 100); /* the byte decoder met most of the corruptions too */
    for (int k = 0; k < 4; k++) msgpack_sbuffer_destroy(&c[k]);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&mut);
    sp_snap_view_destroy(&v);
    sp_snap_view_destroy(&copy);
}
END_TEST

static Suite *snapshot_suite(void) {
    Suite *s = suite_create("snapshot");
    struct { const char *name; const TTest *t; } cases[] = {
        {"full", test_snap_full_snapshot_reproduces_view},
        {"small_move", test_snap_small_move_costs_two_bytes_in_changed_list},
        {"random_chain", test_snap_random_delta_chain_reproduces_encoder_view},
        {"byte_cost", test_snap_slowly_moving_scene_costs_at_most_4_bytes_per_entity},
        {"base_mismatch", test_snap_base_tick_mismatch_is_detected_and_view_kept},
        {"malformed", test_snap_malformed_params_are_refused_and_view_kept},
        {"fuzz", test_snap_fuzzed_snapshots_never_crash},
        {"in_place", test_snap_changes_only_deltas_patch_in_place_without_allocating},
        {"in_place_all_or_nothing", test_snap_changes_only_delta_malformed_last_entry_leaves_no_partial_update},
        {"encoder_input", test_snap_encoder_rejects_bad_input},
        {"reserve", test_snap_view_reserve_fill_in_place_then_encode},
        {"events", test_snap_event_packers_produce_documented_maps},
        {"quant", test_snap_quantization_rounds_and_saturates},
        {"v2_grid", test_snap2_grid_cells_follow_wire2},
        {"v2_full", test_snap2_assembled_full_snapshot_reproduces_cells},
        {"v2_small_move", test_snap2_small_move_costs_two_bytes_in_a_delta_chunk},
        {"v2_malformed", test_snap2_malformed_snapshots_are_refused_and_view_kept},
        {"v2_touch", test_snap2_apply_touches_only_the_chunks_cells},
        {"v2_random_chain", test_snap2_random_chain_reproduces_server_cells},
        {"v2_fuzz", test_snap2_fuzzed_snapshots_never_crash},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, sp_timeout(60));
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

SP_CHECK_MAIN(snapshot_suite)
