/* gateway.h: spacesimd as the cluster's gateway (spacesim-gw, issue 10
 * point 6): what clients connect to, with the unchanged PROTOCOL.md.
 *
 * A gateway is a daemon whose world is a mirror. Its clients, sessions,
 * rate limits, output caps, kicks, snapshots (the same cell store and
 * encoder, icells.h), events, `clients`, `kick`, `limits`, WebSocket and web
 * page are the daemon's own code, unchanged; what differs is where the world
 * comes from and where commands go:
 *
 *   upstreams  one TCP connection per daemon (--upstream HOST:PORT,...),
 *              an admin session on each (hello with the admin token the
 *              cluster shares), subscribed to the whole world with no ship:
 *              each daemon's snapshots (protocol 2, full then deltas) and
 *              events of the entities it holds. Reconnects with a back-off;
 *              a daemon that is down holds nothing in the merged view.
 *   merge      each daemon's snapshot notification is kept (its bytes) in a
 *              queue per upstream; the merged tick T is the oldest tick every
 *              live upstream has reached, and each upstream's queue is
 *              applied up to T (sp_snap_apply_bytes into its own view).
 *              Daemons run in step (the cluster's one clock) and publish
 *              rounds at the same ticks, so normally every view is at T and
 *              their union holds each entity exactly once: a hand-off leaves
 *              one daemon and enters the other at the same tick. The union,
 *              sorted by id, is a frame (sp_frame_from_rows) published as the
 *              gateway's round of tick T: its cell store and every client's
 *              snapshot come from it. Guards, counted in stats: an id in two
 *              views (dup_ids) keeps the record of the view at the newer
 *              tick; a view behind T (it skipped a round) keeps the entities
 *              that left the other views since (carried), for at most 3
 *              rounds, so a hand-off into it shows no gap; an upstream whose
 *              newest snapshot is 10 rounds older than the others' (a stopped
 *              daemon) is not waited for (its view stays behind); one ahead
 *              by more than SP_GW_MAX_QUEUE snapshots forces the merge on.
 *   commands   checked here as the daemon checks them (hello, admin,
 *              params, ownership against the merged frame: a ship's owner
 *              is the gateway session's id), then forwarded to the daemon
 *              whose view holds the entity (spawn: to the daemon holding the
 *              most entities near the position, with the owner param; the
 *              cluster hands it to the cell's owner at once if it is not
 *              that daemon), and the daemon's answer relayed with the
 *              client's msgid. While a client's request is at a daemon the
 *              client is parked (net.h: SP_NET_ADMIT_PARK), so its responses
 *              keep request order. A NOT_FOUND for an entity that moved
 *              meanwhile (a hand-off between the check and the command) is
 *              retried at its new daemon after the next merged round, up to
 *              SP_GW_RETRIES times (fire and mine: once, if the ship did not
 *              change daemon; a target another daemon holds is refused at
 *              once). A daemon that leaves a request unanswered 10 s is
 *              treated as down. `stats` asks every daemon (waiting 2 s at
 *              most: one that has not answered is nil) and answers
 *              the gateway's figures plus "daemons" (each one's map) and
 *              "cluster" (sums and extremes). `alert` is broadcast here and
 *              sent to one daemon, which reaches every other gateway.
 *   sessions   session ids come from the gateway's range (--session-base,
 *              default 2^31: above any daemon's own counter), so ships of
 *              gateway sessions never share an owner id with a daemon's
 *              direct clients. Several gateways: give each its own
 *              --session-base (e.g. 2^31 + k * 2^24). A session that ends
 *              (no grace, or its grace over) has its ships removed on their
 *              daemons (the admin method `remove`).
 *
 * Threads: loop thread only (the upstream sockets are on the daemon's loop;
 * the merge runs there, the frame's snapshots on the workers as usual). */
#ifndef SP_GW_GATEWAY_H
#define SP_GW_GATEWAY_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/daemon.h"
#include "daemon/request.h"

/* Snapshots one upstream may be ahead of the slowest before the merge is
 * forced forward (1.5 s at 20 Hz). */
#define SP_GW_MAX_QUEUE 30
/* Retries of a command answered NOT_FOUND for an entity that changed daemon. */
#define SP_GW_RETRIES 3
/* Most upstream daemons. */
#define SP_GW_MAX_UPSTREAMS 64
/* Session ids of one gateway: [--session-base, + this). */
#define SP_GW_SESSION_SPAN (1ull << 24)

typedef struct sp_gw sp_gw_t;

/* Parse --upstream ("host:port,host:port,...") and make the gateway (no
 * socket yet). Returns 0, SP_EINVAL (bad list; a message on stderr) or
 * SP_ENOMEM. Before the loop runs. */
int sp_gw_open(sp_daemon_t *d, const char *upstreams, sp_gw_t **out);
/* Connect to every upstream (and keep reconnecting). Loop. */
int sp_gw_start(sp_gw_t *g);
/* Close every upstream and fail what waits on them. Loop (shutdown). */
void sp_gw_stop(sp_gw_t *g);
/* After the loop ended. */
void sp_gw_free(sp_gw_t *g);

/* May a new session begin? Once every daemon's world has been merged (or,
 * with one still down, 10 s after the first merge): a gateway's session ids
 * must pass the owners already in the world first. Loop. */
bool sp_gw_ready(sp_gw_t *g);

/* The forwarded methods (methods.c calls these for spawn, move, fire, mine,
 * inspect, stats and alert when d->gw is set). They answer q, now or when
 * the daemon's answer comes. */
void sp_gw_spawn(sp_gw_t *g, const sp_request_t *q);
void sp_gw_command(sp_gw_t *g, const sp_request_t *q, int method_id); /* move, fire, mine, inspect */
void sp_gw_stats(sp_gw_t *g, const sp_request_t *q);
void sp_gw_alert(sp_gw_t *g, const char *text, size_t len, int prio);

/* Sessions (clients.c): forget ships no longer in the merged world; remove
 * ships of a session that ended from their daemons. */
void sp_gw_prune_ships(sp_gw_t *g, sp_session_t *s);
void sp_gw_end_ships(sp_gw_t *g, const uint64_t *ships, int n);

/* Shutdown: a gateway's sessions (connected or detached) do not outlive it
 * (it keeps no checkpoint, so nobody could resume them): their ships are
 * removed on their daemons now. Loop. */
void sp_gw_end_sessions(sp_gw_t *g);

/* The gateway's figures (its stats' "gateway" map). */
typedef struct sp_gw_stats {
    uint32_t upstreams, live;     /* configured, connected with a view */
    uint64_t merges, dup_ids, carried, forced, resyncs, retried, forwarded, failed;
    uint32_t entities;            /* in the last merged frame */
} sp_gw_stats_t;


/* Game seconds per wall second of the merged world since the last call
 * (the daemons' dilation as clients of this gateway see it). Loop, 1 Hz. */
double sp_gw_dilation(sp_gw_t *g, uint64_t now_ns);

#endif /* SP_GW_GATEWAY_H */
