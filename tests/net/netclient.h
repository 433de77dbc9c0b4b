/* netclient.h: a small blocking MessagePack-RPC client and daemon launcher
 * for the network tests.
 *
 * The daemon is started as a real process on 127.0.0.1 with --port 0 and
 * --port-file, its stderr going to a log file in a private temp directory;
 * nc_daemon_start() polls the port file with a deadline (no sleeps as race
 * fixes). Every read here has a deadline too: a hung daemon fails the test
 * instead of hanging it. Single-threaded; everything allocates freely. */
#ifndef SP_TESTS_NETCLIENT_H
#define SP_TESTS_NETCLIENT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct nc_daemon {
    pid_t pid;
    int port;
    char dir[256];     /* private temp dir: log, port file, checkpoints */
    char log[320];     /* the daemon's stderr */
    char portfile[320];
} nc_daemon_t;

/* Make a temp dir for a daemon (d->dir). Returns 0 or -1. */
int nc_daemon_prepare(nc_daemon_t *d);

/* Start spacesimd with --bind 127.0.0.1 --port 0 --port-file ... plus
 * `args` (NULL-terminated, may be NULL); env_token (may be NULL) goes into
 * SPACESIM_ADMIN_TOKEN. Waits up to timeout_s for the port. Returns 0, or -1
 * when the daemon exited first (its status in *exit_status if non-NULL, -1
 * if still running after the timeout, then it is killed). */
int nc_daemon_start(nc_daemon_t *d, const char *const *args, const char *env_token, double timeout_s,
                    int *exit_status);

/* Send sig and wait for exit up to timeout_s (then SIGKILL). Returns the exit
 * status (WEXITSTATUS, or 128+signal), or -1. */
int nc_daemon_stop(nc_daemon_t *d, int sig, double timeout_s);

/* Does the daemon's log contain `needle`? */
bool nc_log_contains(const nc_daemon_t *d, const char *needle);
/* Does the text file at `path` contain `needle` (on one line)? */
bool nc_file_contains(const char *path, const char *needle);
/* Wait until the file at `path` contains `needle`: the daemon writes its
 * log asynchronously to the test, so a test that needs a line waits for it
 * (polling with a deadline, as for the port file). Returns 0, or -1 after
 * timeout_s. */
int nc_wait_file_contains(const char *path, const char *needle, double timeout_s);

/* Remove the temp dir and its files. */
void nc_daemon_cleanup(nc_daemon_t *d);

#define NC_MAX_NOTES 4096

typedef struct nc {
    int fd;
    msgpack_unpacker up;
    uint32_t next_id;
    /* Notifications received while waiting for responses, oldest first. */
    msgpack_unpacked *notes[NC_MAX_NOTES];
    size_t nnotes;
    bool closed; /* EOF or error seen */
    size_t bytes_in;
    /* WebSocket mode (nc_connect_ws): every send is one masked binary
     * frame, every received binary message is checked to hold exactly one
     * MessagePack message (else ws_bad_framing) and fed to the unpacker. */
    bool ws;
    bool ws_bad_framing;
    uint8_t *ws_raw;          /* received bytes not yet a whole frame */
    size_t ws_raw_len, ws_raw_cap;
    uint8_t *ws_msg;          /* the fragments of the message in progress */
    size_t ws_msg_len, ws_msg_cap;
    size_t ws_msgs;           /* binary messages received */
    int ws_close_code;        /* from the server's close frame, 0 before */
    char ws_close_reason[128];
} nc_t;

/* Connect to 127.0.0.1:port. Returns 0 or -1. */
int nc_connect(nc_t *c, int port);
/* The same with SO_RCVBUF set to rcvbuf bytes before connecting (0: the
 * default), for a client whose receive window must be small from the start. */
int nc_connect_rcvbuf(nc_t *c, int port, int rcvbuf);
void nc_close(nc_t *c);
/* Connect to ws://127.0.0.1:port/ws (subprotocol "spacesim", Origin
 * origin if non-NULL) and complete the handshake within 5 s. Returns 0, or
 * -1 (refused: *status, if non-NULL, gets the HTTP status, 0 if none). */
int nc_connect_ws(nc_t *c, int port, const char *origin, int *status);
/* One WebSocket frame (masked, as a client must): opcode 1 text, 2 binary,
 * 0 continuation; fin 0 leaves the message open. Returns 0 or -1. */
int nc_ws_frame(nc_t *c, int opcode, bool fin, const void *p, size_t n);

/* Write raw bytes (all of them, blocking; in WebSocket mode as one binary
 * message). Returns 0 or -1. */
int nc_send_raw(nc_t *c, const void *p, size_t n);

/* Send a request. fmt has one character per param:
 *   u uint64_t, i int64_t (as long long), d double, s const char *, n nil,
 *   v const double * (3 numbers, sent as an array), b int (bool)
 * Returns the msgid. */
uint32_t nc_send_req(nc_t *c, const char *method, const char *fmt, ...);

typedef struct nc_resp {
    msgpack_unpacked msg;
    const msgpack_object *error;  /* NULL on success */
    const msgpack_object *result;
    int64_t code;                 /* error code, 0 on success */
    char message[160];
} nc_resp_t;

/* Wait for the response to msgid (notifications are queued meanwhile).
 * Returns 0 (resp filled; free with nc_resp_free), or -1 on timeout/EOF. */
int nc_wait_resp(nc_t *c, uint32_t msgid, double timeout_s, nc_resp_t *resp);
void nc_resp_free(nc_resp_t *resp);

/* Request + wait. Returns 0 / -1 as nc_wait_resp. */
int nc_call(nc_t *c, double timeout_s, nc_resp_t *resp, const char *method, const char *fmt, ...);

/* Next queued or arriving notification named `method` (NULL = any), removing
 * it and every earlier notification of other names when skip_others. Returns
 * a msgpack_unpacked the caller frees with nc_note_free(), or NULL on timeout
 * or EOF. */
msgpack_unpacked *nc_next_note(nc_t *c, const char *method, double timeout_s);
void nc_note_free(msgpack_unpacked *u);
/* params array of a notification. */
const msgpack_object *nc_note_params(const msgpack_unpacked *u);

/* Wait for an "event" notification whose type is `type` (NULL = any) and
 * that `match` accepts (NULL = any), freeing the events before it (queued
 * ones first, then arriving). Other notifications stay queued. Returns the
 * notification (free with nc_note_free()) or NULL after timeout_s in all. */
msgpack_unpacked *nc_wait_event(nc_t *c, const char *type, bool (*match)(const msgpack_object *ev, const void *ctx),
                                const void *ctx, double timeout_s);

/* Read until EOF (returns 0) or timeout (-1), discarding. */
int nc_wait_closed(nc_t *c, double timeout_s);

/* Map lookup by string key; NULL when absent. */
const msgpack_object *nc_get(const msgpack_object *map, const char *key);
uint64_t nc_get_u64(const msgpack_object *map, const char *key);
double nc_get_num(const msgpack_object *map, const char *key);
bool nc_str_eq(const msgpack_object *o, const char *s);

/* A client-side world view built from snapshot notifications. */
typedef struct nc_ent {
    uint64_t id;
    int kind;
    double pos[3], vel[3], hp;
    uint32_t owner;
} nc_ent_t;

typedef struct nc_view {
    nc_ent_t *e;     /* dequantized copy of the proto view, id ascending */
    size_t n, cap;
    uint64_t tick;
    uint64_t snapshots, fulls;
    void *pv;        /* sp_snap_list_t (proto/snapshot.h) */
} nc_view_t;

/* Apply one snapshot notification's params with proto's sp_snap_v1_apply(). Returns 0, or -1 on a malformed
 * snapshot or a base tick that is not the view's tick. */
int nc_view_apply(nc_view_t *v, const msgpack_object *params);
const nc_ent_t *nc_view_find(const nc_view_t *v, uint64_t id);

/* Wait for a condition over the view, never for "the next snapshot": the
 * snapshots queued or arriving on c are applied to v, oldest first, until
 * pred(v, ctx) holds (checked first on v as it is). A queued snapshot may
 * predate the last request, so a test states what it needs (the ship seen,
 * the tick passed) and waits for that. Returns 0, or -1 after timeout_s in
 * all, on EOF, or on a snapshot v cannot apply. */
int nc_wait_view(nc_t *c, nc_view_t *v, bool (*pred)(const nc_view_t *v, const void *ctx), const void *ctx,
                 double timeout_s);
/* nc_wait_view until v->tick >= tick (the world has passed that tick). */
int nc_wait_view_tick(nc_t *c, nc_view_t *v, uint64_t tick, double timeout_s);
/* nc_wait_view until entity `id` is in v. */
int nc_wait_view_has(nc_t *c, nc_view_t *v, uint64_t id, double timeout_s);
/* The server's current tick (a ping). 0 on failure. */
uint64_t nc_server_tick(nc_t *c, double timeout_s);
void nc_view_free(nc_view_t *v);

double nc_now(void);

#endif
