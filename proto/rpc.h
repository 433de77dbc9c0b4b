/* proto/rpc.h: MessagePack-RPC framing, classification, typed params, packers.
 *
 * Wire (see proto/PROTOCOL.md, spec: msgpack-rpc spec.md): a TCP stream of
 * msgpack objects, each one of
 *   request       [0, msgid:uint32, method:str, params:array]
 *   response      [1, msgid:uint32, error:nil|{"code":int,"message":str}, result:any]
 *   notification  [2, method:str, params:array]
 *
 * The framer (sp_rpc_scan(), used by the decoder below and by the daemon's
 * connections) frames the stream before msgpack-c sees a byte. A small
 * state machine walks every header as it arrives, counts the bytes of the
 * current message and the minimum bytes still owed by declared lengths (a str
 * of N bytes owes N, an array of N elements owes N, a map 2N), and rejects the
 * message as soon as that sum exceeds the limit. So a str32 declaring 4 GB or
 * an array32 of 2^31 elements is refused on its 5-byte header, before anything
 * is buffered or allocated; msgpack-c's own parser (which allocates
 * n * sizeof(msgpack_object) on an array header) only ever runs on a complete,
 * size-checked message. Peak memory of a decoder: the bytes of one feed() call
 * plus one incomplete message (<= the limit) plus msgpack-c's zone for one
 * message (about 24 * its byte size on 64-bit: one 24-byte msgpack_object per
 * one-byte element), whose first chunk, sized from the previous message
 * (2 KiB to 1 MiB), is kept between messages; an idle decoder holds no buffer
 * at all. Nesting deeper
 * than SP_RPC_MAX_DEPTH is refused by the framer too, so code walking a
 * decoded message recursively is bounded by it.
 *
 * Threads: a decoder belongs to one thread at a time (the daemon's loop thread
 * for a connection); no function here touches global state, so distinct
 * decoders, packers and accessors run on any threads concurrently. */
#ifndef SP_PROTO_RPC_H
#define SP_PROTO_RPC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spacesim/common.h"
#include "spacesim_proto.def"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- names */

/* Method ids, in SP_PROTO_METHOD_MAP order: SP_METHOD_PING ... SP_METHOD__COUNT. */
typedef enum sp_method {
#define SP__METHOD_ENUM(id, lc, name, mn, mx, hello, admin, sig) SP_METHOD_##id,
    SP_PROTO_METHOD_MAP(SP__METHOD_ENUM)
#undef SP__METHOD_ENUM
    SP_METHOD__COUNT
} sp_method_t;

/* The protocol's limits as constants, one name each: SP_LIMIT_MAX_MESSAGE_BYTES,
 * SP_LIMIT_MAX_DEPTH, SP_LIMIT_MAX_SHIPS ... (SP_PROTO_LIMIT_MAP). */
enum {
#define SP__LIMIT_ENUM(id, value, what) SP_LIMIT_##id = (value),
    SP_PROTO_LIMIT_MAP(SP__LIMIT_ENUM)
#undef SP__LIMIT_ENUM
};

/* RPC error codes, the integers in {"code": int} (not SP_E* library codes). */
typedef enum sp_rpc_code {
#define SP__RPCERR_ENUM(id, code, msg) SP_RPCERR_##id = (code),
    SP_PROTO_ERROR_MAP(SP__RPCERR_ENUM)
#undef SP__RPCERR_ENUM
} sp_rpc_code_t;

/* One method's row of SP_PROTO_METHOD_MAP. */
typedef struct sp_method_info {
    const char *name;
    uint8_t min_params, max_params;
    bool needs_hello, admin_only;
    const char *signature; /* see spacesim_proto.def */
} sp_method_info_t;

/* Row of a method id, or NULL when id is out of range. Static storage. */
SP_API const sp_method_info_t *sp_method_info(int id);

/* Method id of a name (exact, case-sensitive bytes), or -1 when unknown.
 * Cost: a handful of memcmp. Any thread. */
SP_API int sp_method_lookup(const char *name, size_t len);

/* Default message of an RPC error code ("method not found"); "unknown error"
 * for codes outside SP_PROTO_ERROR_MAP. Static storage. */
SP_API const char *sp_rpc_code_message(int code);

/* ---------------------------------------------------------------- decoder */

/* The limit every decoder defaults to: SP_PROTO_LIMIT MAX_MESSAGE_BYTES (64 KiB). */
#define SP_RPC_DEFAULT_MAX_MESSAGE 65536u
/* What clients should pass to sp_rpc_decoder_init() for the server's side of
 * the stream: snapshots grow with the view (about 20 bytes per entity in a
 * full one), so they may exceed the 64 KiB client limit. MAX_SERVER_MESSAGE_BYTES. */
#define SP_RPC_CLIENT_MAX_MESSAGE ((size_t)SP_LIMIT_MAX_SERVER_MESSAGE_BYTES)
/* Containers nested deeper than this are refused (msgpack-c's parser stack is 32). */
#define SP_RPC_MAX_DEPTH ((unsigned)SP_LIMIT_MAX_DEPTH)

/* ---------------------------------------------------------------- framer */

/* Why a scan failed (sp_rpc_scan_t.fail). */
typedef enum sp_rpc_scan_fail {
    SP_RPC_SCAN_OK = 0,
    SP_RPC_SCAN_BAD_BYTE,  /* 0xc1, a byte that starts no msgpack type: SP_EPROTO */
    SP_RPC_SCAN_TOO_DEEP,  /* arrays/maps (empty ones too) nested deeper than
                            * SP_RPC_MAX_DEPTH, the message counting as 1: SP_EPROTO */
    SP_RPC_SCAN_TOO_LARGE  /* the message is, or declares it would be, over the limit: SP_EMSGSIZE */
} sp_rpc_scan_fail_t;

/* Resumable framing state of one message in progress: the one framer of the
 * project (sp_rpc_decoder_t and the daemon's connections both use it). It
 * walks msgpack headers only, never copies or allocates, and keeps no pointer
 * into the bytes, so a caller may scan bytes in place and copy only the
 * incomplete tail of a message somewhere else together with this struct.
 * Zero-initialised (or sp_rpc_scan_init()) means "between messages". */
typedef struct sp_rpc_scan {
    uint64_t msg_bytes;            /* bytes of the current message seen so far */
    uint64_t owed;                 /* elements still owed by open containers */
    uint64_t skip;                 /* payload bytes of the current str/bin/ext/number left */
    uint32_t depth;                /* open non-empty containers */
    uint32_t remaining[SP_RPC_MAX_DEPTH]; /* elements left per open container */
    unsigned char hdr[9];          /* partial header bytes */
    uint8_t hdr_len, hdr_need;
    uint8_t fail;                  /* sp_rpc_scan_fail_t; sticky once set */
} sp_rpc_scan_t;

/* Reset *s to "between messages" (clears a failure too). Never fails. */
SP_API void sp_rpc_scan_init(sp_rpc_scan_t *s);

/* Frame data[0, len), continuing the message in progress in *s, with a
 * per-message limit of max_message bytes (a larger one than UINT32_MAX is
 * clamped to it). Returns
 *   1  a message ended: it is the bytes scanned before this call (since the
 *      last 1) followed by data[0, *used); *s is reset for the next message
 *      and data[*used, len) is not looked at (call again for it)
 *   0  every byte was taken (*used = len) and the message is still open
 *      (or nothing started: len == 0, or between messages)
 *   SP_EMSGSIZE / SP_EPROTO  the message is refused: s->fail says why
 *      (TOO_LARGE / BAD_BYTE or TOO_DEEP); *used is the offset of the byte
 *      that decided it. Sticky: later calls return the same until init.
 * Limits are checked as each header arrives (a str32 declaring 1 GiB, an
 * array32 of 2^31 elements, an ext32 whose type byte has not arrived yet are
 * refused on their length bytes): the finished message can be no smaller than
 * bytes seen + declared payload + one byte per element still owed.
 * Any thread; touches only *s. Cost: O(headers) branches, payload skipped in
 * one step. */
SP_API int sp_rpc_scan(sp_rpc_scan_t *s, const void *data, size_t len, size_t max_message, size_t *used);

/* True when *s is between messages (no byte of a message has been seen). */
SP_API bool sp_rpc_scan_idle(const sp_rpc_scan_t *s);

typedef enum sp_rpc_type {
    SP_RPC_INVALID = -1, /* a complete msgpack object that is not an RPC message */
    SP_RPC_REQUEST = 0,
    SP_RPC_RESPONSE = 1,
    SP_RPC_NOTIFY = 2
} sp_rpc_type_t;

/* One decoded message. Pointers point into the decoder (or, for
 * sp_rpc_classify(), into the object given): valid until the next
 * sp_rpc_decoder_feed()/next()/destroy() on that decoder. Do not keep them. */
typedef struct sp_rpc_msg {
    sp_rpc_type_t type;
    bool has_msgid;                /* requests, responses, and INVALID when readable */
    uint32_t msgid;
    const char *method;            /* requests and notifications; NOT NUL-terminated */
    size_t method_len;
    int method_id;                 /* sp_method_t, or -1 when the name is unknown */
    const msgpack_object *params;  /* requests and notifications: an ARRAY */
    const msgpack_object *error;   /* responses: NIL or the error object */
    const msgpack_object *result;  /* responses */
    const msgpack_object *root;    /* the whole message */
    size_t wire_size;              /* bytes of this message on the wire (decoder only) */
    const char *wire;              /* those bytes (decoder only) */
    /* sp_rpc_decoder_next_lazy() only: a notification whose objects were not
     * built (params == NULL): its params array's msgpack bytes. */
    bool lazy;
    const unsigned char *params_bytes;
    size_t params_len;
    /* When type == SP_RPC_INVALID: an RPC error code (INVALID_REQUEST) and a
     * static reason ("msgid must be an unsigned 32-bit integer"). */
    int rpc_code;
    const char *reason;
} sp_rpc_msg_t;

typedef struct sp_rpc_decoder {
    /* Bytes received and not yet returned: [start, len) of buf. Messages in
     * [start, ready) are complete and size-checked; [ready, len) is the
     * current incomplete message, owned by the scanner below. */
    char *buf;
    size_t cap, len, start, ready;
    size_t max_message;            /* bytes; default SP_RPC_DEFAULT_MAX_MESSAGE */
    int err;                       /* sticky stream error (0 while healthy) */
    sp_rpc_scan_t scan;            /* framing state of the incomplete message */
    msgpack_zone *zone;            /* msgpack-c objects of the message last returned */
    msgpack_object obj;
    size_t last_size;              /* wire bytes of the message last returned */
    size_t zone_chunk;             /* the chunk size zone was made with */
    uint64_t messages;             /* complete messages framed so far (statistics) */
    uint32_t *sizes;               /* FIFO: byte size of each complete message in [start, ready) */
    size_t sizes_cap, sizes_head, sizes_n;
} sp_rpc_decoder_t;

/* Initialize a decoder with the given per-message byte limit (0 means
 * SP_RPC_DEFAULT_MAX_MESSAGE; servers use the default, clients reading the
 * server use SP_RPC_CLIENT_MAX_MESSAGE). Allocates nothing. Returns 0, or
 * SP_EINVAL for a NULL decoder or a limit above UINT32_MAX. Pair with
 * sp_rpc_decoder_destroy(). */
SP_API int sp_rpc_decoder_init(sp_rpc_decoder_t *d, size_t max_message);

/* Free everything the decoder holds. Safe on a zeroed or destroyed decoder. */
SP_API void sp_rpc_decoder_destroy(sp_rpc_decoder_t *d);

/* Append bytes as they arrive (from a libuv read callback). The bytes are
 * framed at once: returns 0, or the sticky stream error
 *   SP_EMSGSIZE  a message is, or declares it would be, larger than the limit
 *   SP_EPROTO    a byte that starts no msgpack type (0xc1), or nesting deeper
 *                than SP_RPC_MAX_DEPTH
 *   SP_ENOMEM    buffer growth failed (the stream cannot continue)
 * After an error the rest of the stream is ignored (every later feed returns
 * the error), but messages completed before the bad one can still be taken
 * with sp_rpc_decoder_next(), so a daemon can answer them before it closes.
 * Ownership: data is copied; the caller keeps it. Invalidates the pointers of
 * the message last returned by next(). Allocates: grows its buffer to hold
 * the unconsumed bytes (bounded by len + the limit). Cost O(len) plus
 * O(headers) branches. */
SP_API int sp_rpc_decoder_feed(sp_rpc_decoder_t *d, const void *data, size_t len);

/* Take the next complete message. Returns
 *   1  *out holds it; out->type is REQUEST, RESPONSE, NOTIFY, or INVALID
 *      (a well-framed msgpack object with the wrong RPC shape: reply with an
 *      error response when out->has_msgid, otherwise an error notification;
 *      the stream itself stays usable)
 *   0  no complete message buffered: feed more bytes
 *   <0 the sticky stream error of feed(), once every earlier message was taken
 *      (close the connection; answer with an "error" notification first:
 *      SP_EMSGSIZE -> SP_RPCERR_TOO_LARGE, SP_EPROTO -> SP_RPCERR_PARSE_ERROR),
 *      or SP_ENOMEM (msgpack zone; retrying is allowed)
 * The message stays valid until the next feed()/next()/destroy(). Allocates:
 * one msgpack zone, reused for every message (cleared, not freed). */
SP_API int sp_rpc_decoder_next(sp_rpc_decoder_t *d, sp_rpc_msg_t *out);

/* Bytes of the one msgpack object that starts data[0, len), or 0 when no
 * whole, well-formed object starts there (truncated, a byte that starts no
 * type, nesting past SP_RPC_MAX_DEPTH counting the object as 1). Reads
 * only; recursion depth <= SP_RPC_MAX_DEPTH; O(its bytes). */
SP_API size_t sp_rpc_object_size(const void *data, size_t len);

/* sp_rpc_decoder_next() for a client that reads some notifications from
 * their bytes (sp_snap_apply_bytes() for "snapshot"): a notification
 * [2, method, params] is returned with type NOTIFY, method, method_id,
 * wire/wire_size and params_bytes/params_len set, lazy true and no objects
 * (params and root NULL), which saves building msgpack-c objects for it
 * (about a third of applying a snapshot). Every other message, and a
 * notification not written in the usual form (fixarray, fixint 2, fixstr or
 * str8 method, array params), is returned as next() returns it (lazy
 * false). Same return values and lifetime as next(). O(1) for a lazy
 * one: the framer recorded where each message ends. */
SP_API int sp_rpc_decoder_next_lazy(sp_rpc_decoder_t *d, sp_rpc_msg_t *out);

/* Build the objects of m, the message last returned by next_lazy(), when
 * the caller wants them after all (m becomes what next() would have
 * returned). A no-op for a message that is not lazy. Returns 0, or
 * SP_ENOMEM (m unchanged; retrying is allowed). */
SP_API int sp_rpc_decoder_unpack(sp_rpc_decoder_t *d, sp_rpc_msg_t *m);

/* Bytes buffered and not yet returned (for metrics / memory accounting). */
SP_API size_t sp_rpc_decoder_buffered(const sp_rpc_decoder_t *d);

/* Classify one msgpack object as an RPC message (what next() does after
 * framing). Returns 0 with out->type set, or SP_EPROTO with out->type =
 * SP_RPC_INVALID, out->rpc_code/reason set and out->has_msgid/msgid when the
 * msgid could be read. Pointers in *out point into *o. Never allocates. */
SP_API int sp_rpc_classify(const msgpack_object *o, sp_rpc_msg_t *out);

/* ---------------------------------------------------------------- params */

/* A ready-to-send error: {"code": code, "message": message}. */
typedef struct sp_rpc_error {
    int code;
    char message[160];
} sp_rpc_error_t;

/* Fill *err (code + printf-formatted message, truncated to fit; err may be
 * NULL). Always returns SP_EINVAL, so a handler can write
 * `return sp_rpc_error_set(err, SP_RPCERR_NOT_FOUND, "no ship %llu", id);`. */
SP_API int sp_rpc_error_set(sp_rpc_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Check a request's params against its method's row: arity and every
 * parameter's type per the signature. Returns 0, or SP_EINVAL with *err set:
 * METHOD_NOT_FOUND for an unknown method, INVALID_PARAMS naming the index
 * and the expected type ("param 1: expected vec3 [x, y, z] of numbers, got
 * str"). After 0 the typed getters below cannot fail for indexes inside the
 * signature (except range checks the getter documents). */
SP_API int sp_rpc_check_params(const sp_rpc_msg_t *m, sp_rpc_error_t *err);

/* Typed param getters. `params` is the params ARRAY of a message; i is the
 * 0-based index. Each returns 0 and stores the value, or SP_EINVAL with *err
 * = INVALID_PARAMS "param <i>: expected <type>, got <type>" (err may be NULL).
 * *out is untouched on failure. None allocates; any thread. */
SP_API int sp_rpc_param_int(const msgpack_object *params, uint32_t i, int64_t *out, sp_rpc_error_t *err);
SP_API int sp_rpc_param_uint(const msgpack_object *params, uint32_t i, uint64_t *out, sp_rpc_error_t *err);
/* Floats accept integers (many msgpack encoders pack 3.0 as 3) and reject NaN/inf. */
SP_API int sp_rpc_param_float(const msgpack_object *params, uint32_t i, double *out, sp_rpc_error_t *err);
SP_API int sp_rpc_param_bool(const msgpack_object *params, uint32_t i, bool *out, sp_rpc_error_t *err);
/* String bytes in place (not NUL-terminated), valid as long as the message. */
SP_API int sp_rpc_param_str(const msgpack_object *params, uint32_t i, const char **ptr, size_t *len,
                            sp_rpc_error_t *err);
/* vec3: an array of exactly three numbers (ints accepted), finite. */
SP_API int sp_rpc_param_vec3(const msgpack_object *params, uint32_t i, double out[3], sp_rpc_error_t *err);
/* True when param i is absent (past the end) or nil: use for "X or nil" and
 * optional params, then call the typed getter when it returns false. */
SP_API bool sp_rpc_param_is_nil(const msgpack_object *params, uint32_t i);
/* Number of params (0 when params is not an array). */
SP_API uint32_t sp_rpc_param_count(const msgpack_object *params);

/* Short name of an object's type for messages: "int", "float", "str", ... */
SP_API const char *sp_rpc_type_name(const msgpack_object *o);

/* ---------------------------------------------------------------- packers */
/* All packers append to pk and return 0, or SP_ENOMEM when pk's writer
 * failed (for an sbuffer: realloc). On failure the buffer holds a partial
 * message: the caller must roll it back (for an sbuffer, restore ->size). */

/* [0, msgid, method, <array header of nparams>]: the caller then packs exactly
 * nparams objects. */
SP_API int sp_rpc_pack_request_begin(msgpack_packer *pk, uint32_t msgid, const char *method, uint32_t nparams);

/* [1, msgid, nil, ...: the caller then packs exactly one result object. */
SP_API int sp_rpc_pack_response_ok_begin(msgpack_packer *pk, uint32_t msgid);

/* [1, msgid, {"code": code, "message": message}, nil]. message may be NULL
 * (the code's default message). */
SP_API int sp_rpc_pack_response_error(msgpack_packer *pk, uint32_t msgid, int code, const char *message);

/* [2, method, <array header of nparams>]: the caller then packs nparams objects. */
SP_API int sp_rpc_pack_notify_begin(msgpack_packer *pk, const char *method, uint32_t nparams);

/* {"code": code, "message": message} alone (message NULL: the default). */
SP_API int sp_rpc_pack_error_map(msgpack_packer *pk, int code, const char *message);

/* Pack a NUL-terminated C string as a msgpack str. */
SP_API int sp_rpc_pack_cstr(msgpack_packer *pk, const char *s);

/* ---------------------------------------------------------------- results
 * One struct and one packer per method, generated from the method's
 * SP_PROTO_RESULT_<ID> list in spacesim_proto.def (types and members: see
 * there), so a result's keys, order, and types have one source. Every
 * struct starts with `none_` (C has no empty structs; never packed). */

/* Keys of the `stats` result: SP_STAT_TICK ... SP_STAT__COUNT. */
typedef enum sp_stat {
#define SP__STAT_ENUM(id, key, type, what) SP_STAT_##id,
    SP_PROTO_STATS_MAP(SP__STAT_ENUM)
#undef SP__STAT_ENUM
    SP_STAT__COUNT
} sp_stat_t;

/* A stats value: u for "uint" keys, f for "float" keys (the .def says which). */
typedef union sp_stat_value {
    uint64_t u;
    double f;
} sp_stat_value_t;
/* The SP_STAT__COUNT key/value pairs of a stats map, without the map
 * header (a server that adds keys of its own packs the header itself: the
 * gateway). Returns 0, or non-zero when the packer failed. */
SP_API int sp_rpc_pack_stat_entries(msgpack_packer *pk, const sp_stat_value_t v[SP_STAT__COUNT]);

#define SP__RES_CT_UINT(f) uint64_t f;
#define SP__RES_CT_INT(f) int64_t f;
#define SP__RES_CT_FLOAT(f) double f;
#define SP__RES_CT_BOOL(f) bool f;
#define SP__RES_CT_STR(f) const char *f;
#define SP__RES_CT_VEC3(f) double f[3];
#define SP__RES_CT_UINT_OR_NIL(f) uint64_t f;
#define SP__RES_CT_CARGO(f) double f[SP_RESOURCE_COUNT];
#define SP__RES_CT_OPT_STR(f) const char *f; bool has_##f;
#define SP__RES_CT_OPT_FLOAT(f) double f; bool has_##f;
#define SP__RES_CT_STATS(f) sp_stat_value_t f[SP_STAT__COUNT];
#define SP__RES_MEMBER(f, key, type) SP__RES_CT_##type(f)
/* One client of the `clients` result (SP_PROTO_CLIENT_INFO_MAP); strings
 * are borrowed (valid while packing). */
typedef struct sp_client_info {
    SP_PROTO_CLIENT_INFO_MAP(SP__RES_MEMBER)
} sp_client_info_t;
typedef struct sp_client_list {
    const sp_client_info_t *v;
    size_t n;
} sp_client_list_t;
#define SP__RES_CT_CLIENTS(f) sp_client_list_t f;
#define SP__RES_STRUCT(id, lc, name, mn, mx, hello, admin, sig) \
    typedef struct sp_result_##lc {                          \
        char none_;                                          \
        SP_PROTO_RESULT_##id(SP__RES_MEMBER)                 \
    } sp_result_##lc##_t;
SP_PROTO_METHOD_MAP(SP__RES_STRUCT)
#undef SP__RES_STRUCT

/* sp_rpc_pack_result_<lc>(pk, msgid, r): the whole response
 * [1, msgid, nil, result], result packed from *r as the .def says (`true`
 * for methods without result fields; r may then be NULL). Strings are
 * copied. Returns 0 or SP_ENOMEM (see "packers" below). Any thread. */
#define SP__RES_DECL(id, lc, name, mn, mx, hello, admin, sig) \
    SP_API int sp_rpc_pack_result_##lc(msgpack_packer *pk, uint32_t msgid, const sp_result_##lc##_t *r);
SP_PROTO_METHOD_MAP(SP__RES_DECL)
#undef SP__RES_DECL

/* Wire name of a resource index: its SP_RESOURCE_MAP name, or "unknown" for
 * any other value (the one spelling of an unknown resource on the wire).
 * Static storage. */
SP_API const char *sp_proto_resource_name(int resource);

/* Wire name of an entity kind value ("unknown" outside SP_ENTITY_KIND_MAP). */
SP_API const char *sp_proto_kind_name(int kind);

/* [2, "error", [{"code": code, "message": message}]]: a problem not tied to
 * a request (see PROTOCOL.md); message NULL: the code's default. */
SP_API int sp_rpc_pack_error_notify(msgpack_packer *pk, int code, const char *message);

/* [2, "ping", []]: the server's keepalive reminder to a silent client. */
SP_API int sp_rpc_pack_ping_notify(msgpack_packer *pk);

/* Read an error object of a response: a map with an int "code" and a str
 * "message" (other keys ignored). Returns 0, or SP_EPROTO when the shape is
 * wrong. *msg points into the object. */
SP_API int sp_rpc_parse_error(const msgpack_object *o, int64_t *code, const char **msg, size_t *msg_len);

/* Find a key (exact str) in a msgpack map; NULL when absent or o is no map. */
SP_API const msgpack_object *sp_rpc_map_get(const msgpack_object *o, const char *key);

#ifdef __cplusplus
}
#endif
#endif /* SP_PROTO_RPC_H */
