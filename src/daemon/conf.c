/* conf.c: the defaults of spacesimd's configuration (see conf.h). */
#include "daemon/conf.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rpc.h"

void sp_dconf_default(sp_dconf_t *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->bind, sizeof c->bind, "127.0.0.1");
    c->port = 7777;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = n > 0 ? (int)n : 1;
    c->tick_hz = 60;
    c->snapshot_hz = 20;
    c->world_size = 4000.0;
    c->demo_asteroids = 5000;
    c->demo_npcs = 200;
    c->max_clients = 2000;
    c->checkpoint_every = 60.0;
    c->seed = 42;
    c->max_msg = SP_LIMIT_MAX_MESSAGE_BYTES;
    c->obuf_soft = 256 * 1024;
    c->obuf_soft_secs = 10;
    c->obuf_hard = 4 * 1024 * 1024;
    c->idle_ping_secs = SP_LIMIT_IDLE_PING_SEC;
    c->idle_timeout_secs = SP_LIMIT_IDLE_TIMEOUT_SEC;
    c->rate_per_sec = SP_LIMIT_RATE_PER_SEC;
    c->rate_burst = SP_LIMIT_RATE_BURST;
    c->rate_kick_secs = 10;
    c->request_timeout_secs = 5;
    c->max_per_address = 64;
    c->default_radius = SP_LIMIT_DEFAULT_RADIUS;
    c->max_radius = SP_LIMIT_MAX_RADIUS;
    c->reconnect_grace_secs = 30.0;
    c->first_session_id = 1;
    c->snap_budget = 8192;
    c->interest_cell = 1000.0;
    c->resync_secs = 1.0;
    snprintf(c->cells, sizeof c->cells, "2x2");
    c->cluster_ttl = 5.0;
    c->ghost_band = -1.0;
    c->cluster_test_ships = -1;
}
