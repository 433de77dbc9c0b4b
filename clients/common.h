/* clients/common.h: helpers shared by spacesim-cli and spacesim-load.
 *
 * - Argument parsing: a command-line word becomes a msgpack value (numbers,
 *   nil/null, true/false, JSON arrays and objects, anything else a string).
 * - JSON output of any msgpack object (maps and arrays as JSON).
 * - Address resolution and a blocking connection with deadlines (the CLI):
 *   framing goes through proto/rpc.h's bounded decoder, snapshots through
 *   proto/snapshot.h, so both clients decode exactly like the spec.
 *
 * - A snapshot view for the protocol the daemon speaks (spc_view_t).
 *
 * None of this is part of libspacesim: no SP_API, plain process-local code.
 * Errors are returned as -1 with a human sentence in a caller buffer (the
 * clients print it), since these are user-facing tools. Single-threaded,
 * but for spc_view_*: one thread at a time per view, any number of views. */
#ifndef SP_CLIENTS_COMMON_H
#define SP_CLIENTS_COMMON_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "rpc.h"
#include "snapshot.h"

#define SPC_DEFAULT_HOST "127.0.0.1"
#define SPC_DEFAULT_PORT 7777
/* Server-to-client messages can be large (a full snapshot of a wide area of
 * interest): the clients accept up to the protocol's MAX_SERVER_MESSAGE_BYTES
 * per message (spacesim_proto.def), the bound the server keeps to. */
#define SPC_MAX_INBOUND SP_RPC_CLIENT_MAX_MESSAGE

/* SPC_STR(X): the expansion of macro X as a string literal. */
#define SPC_XSTR(x) #x
#define SPC_STR(x) SPC_XSTR(x)

/* Monotonic clock in nanoseconds / seconds. */
uint64_t spc_now_ns(void);
double spc_now(void);

/* ---------------------------------------------------------------- values */

/* Pack one command-line word as a msgpack value:
 *   123, -4, 1.5e3, 0x1f      numbers (integers stay integers; uint64 ids fit)
 *   nil, null                 nil
 *   true, false               booleans
 *   [1, 2, [3]], {"a": 1}     JSON arrays / objects (strings inside in "quotes")
 *   "quoted"                  a string without the quotes (JSON escapes)
 *   anything else             the word itself as a string
 * Returns 0, or -1 with a sentence in err (a word that starts like JSON
 * but is malformed, e.g. "[1, 2"). */
int spc_pack_word(msgpack_packer *pk, const char *word, char *err, size_t errlen);

/* Print o as JSON. indent < 0: one line; otherwise pretty, starting at that
 * indentation. Floats print in their shortest round-trip form, non-finite
 * floats as null, bin as a "0x..." string, map keys that are not strings
 * are converted to their JSON text in quotes. */
void spc_print_json(FILE *f, const msgpack_object *o, int indent);

/* Same into a growing buffer (NUL-terminated). Returns 0 or -1 (OOM). */
typedef struct spc_buf {
    char *p;
    size_t len, cap;
} spc_buf_t;
int spc_buf_printf(spc_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void spc_buf_free(spc_buf_t *b);
int spc_json_append(spc_buf_t *b, const msgpack_object *o, int indent);

/* Map lookups (string keys). NULL when absent or o is not a map. */
const msgpack_object *spc_get(const msgpack_object *o, const char *key);
/* A number (int or float) as double; false when o is NULL or not a number. */
bool spc_num(const msgpack_object *o, double *out);
/* An unsigned integer; false otherwise. */
bool spc_u64(const msgpack_object *o, uint64_t *out);

/* Name of an RPC error code ("METHOD_NOT_FOUND"), or "ERROR_<n>". Static. */
const char *spc_error_name(int64_t code);

/* ---------------------------------------------------------------- network */

/* Resolve host:port (numeric or a name; IPv4 or IPv6). Returns 0 or -1 with
 * a sentence in err. */
int spc_resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len, char *err,
                size_t errlen);

/* A blocking client connection: one socket, one bounded decoder. */
typedef struct spc_conn {
    int fd;
    sp_rpc_decoder_t dec;
    uint32_t next_id;
    uint64_t bytes_in, bytes_out;
    bool eof;
    char where[300];   /* "host:port" for messages */
} spc_conn_t;

/* Connect with a deadline. TCP_NODELAY is set. Returns 0, or -1 with a
 * sentence in err that says what to do ("connection refused: is spacesimd
 * running on 127.0.0.1:7777?", "timed out after 5.0 s"). */
int spc_connect(spc_conn_t *c, const char *host, int port, double timeout_s, char *err, size_t errlen);
void spc_close(spc_conn_t *c);

/* Send raw bytes, all of them, before the deadline. Returns 0 or -1 (err). */
int spc_send(spc_conn_t *c, const void *p, size_t n, double deadline, char *err, size_t errlen);

/* Read the next complete message, waiting at most until `deadline`
 * (spc_now() seconds; <= 0 means wait forever). Returns
 *   1   *m holds it (valid until the next read on c)
 *   0   deadline passed
 *  -1   connection closed, or a stream/protocol error: sentence in err
 *  -2   interrupted by a signal (EINTR): the caller checks its flag */
int spc_read(spc_conn_t *c, double deadline, sp_rpc_msg_t *m, char *err, size_t errlen);

/* Pack [0, msgid, method, params] with params the packed words. Returns 0
 * or -1 (err). *msgid gets the id used. */
int spc_send_words(spc_conn_t *c, const char *method, char *const *words, int nwords, uint32_t *msgid,
                   double deadline, char *err, size_t errlen);

/* ---------------------------------------------------------------- views */

/* A client's snapshot view in the format of the daemon's protocol (hello's
 * "protocol"): 2, per-cell chunks (sp_snap_view_t, sp_snap_apply(): applying
 * costs what the snapshot carries), or 1, one flat list (sp_snap_list_t,
 * sp_snap_v1_apply(), for older daemons). Only the protocol's own view holds
 * records; the other stays empty and allocates nothing. */
typedef struct spc_view {
    int proto;                /* 1 or 2 (default SP_PROTO_VERSION) */
    sp_snap_view_t cells;     /* protocol 2 */
    sp_snap_list_t list;      /* protocol 1 */
} spc_view_t;

/* Empty view for SP_PROTO_VERSION; allocates nothing. */
void spc_view_init(spc_view_t *v);
void spc_view_destroy(spc_view_t *v);
/* The daemon speaks protocol `proto` (hello's result; >= 2: protocol 2,
 * whose later versions only append elements): the view is reset. */
void spc_view_set_protocol(spc_view_t *v, int64_t proto);
/* Apply a snapshot's params: as sp_snap_apply() / sp_snap_v1_apply()
 * (0, SP_EPROTO desync, SP_ECORRUPT malformed, SP_ENOMEM; the view is
 * unchanged on any error). stats may be NULL. */
int spc_view_apply(spc_view_t *v, const msgpack_object *params, sp_snap_stats_t *stats);
/* Forget the content until the next full snapshot (after a desync). */
void spc_view_reset(spc_view_t *v);
/* Entities in the view. O(1). */
size_t spc_view_count(const spc_view_t *v);
/* The record with this id or NULL: O(log n) (protocol 1), O(cells * log
 * cell) (protocol 2). Valid until the next apply or reset. */
const sp_snap_rec_t *spc_view_find(const spc_view_t *v, uint64_t id);

/* Every record of the view, in no promised order (by cell, then id):
 *   spc_view_iter_t it = {0}; for (r = spc_view_next(v, &it); r; r = spc_view_next(v, &it)) ...
 * Do not apply or reset while iterating. */
typedef struct spc_view_iter {
    size_t cell, i;
} spc_view_iter_t;
const sp_snap_rec_t *spc_view_next(const spc_view_t *v, spc_view_iter_t *it);

#endif /* SP_CLIENTS_COMMON_H */
