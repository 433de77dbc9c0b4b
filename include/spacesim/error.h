/* spacesim/error.h: error codes of libspacesim.
 *
 * Every fallible function returns int: 0 on success, a negative SP_E* code on
 * failure (libuv's convention). No errno, no printing: callers decide what to
 * log. One X-macro list produces the enum, sp_strerror() and sp_err_name(), so
 * the three can never disagree. */
#ifndef SPACESIM_ERROR_H
#define SPACESIM_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Public symbols are exported; everything else is hidden (-fvisibility=hidden).
 * Defined here because every public header includes error.h first. */
#ifndef SP_API
#if defined(__GNUC__)
#define SP_API __attribute__((visibility("default")))
#else
#define SP_API
#endif
#endif

/* X(name, value, message) */
#define SP_ERRNO_MAP(X)                                                     \
    X(EINVAL, -1, "invalid argument")                                       \
    X(ENOMEM, -2, "out of memory")                                          \
    X(EOVERFLOW, -3, "size arithmetic overflow")                            \
    X(EAGAIN, -4, "resource temporarily unavailable (queue full or empty)") \
    X(ERANGE, -5, "index out of range")                                     \
    X(ENOENT, -6, "no such entry")                                          \
    X(EMSGSIZE, -7, "message or string too long")                           \
    X(EPROTO, -8, "protocol error")                                         \
    X(EPERM, -9, "operation not permitted")                                 \
    X(EEXIST, -10, "already exists")                                        \
    X(EIO, -11, "input/output error")                                       \
    X(ECORRUPT, -12, "data is corrupt or truncated")                        \
    X(EBUSY, -13, "resource busy")                                          \
    X(ELIMIT, -14, "limit reached")                                         \
    X(ETYPE, -15, "wrong type")

typedef enum sp_errno {
    SP_OK = 0,
#define SP__ERR_ENUM(name, value, msg) SP_##name = (value),
    SP_ERRNO_MAP(SP__ERR_ENUM)
#undef SP__ERR_ENUM
} sp_errno_t;

/* Human-readable message for an error code ("out of memory"). Never NULL;
 * unknown codes give "unknown error". Static storage; thread-safe. */
SP_API const char *sp_strerror(int err);

/* Symbolic name of an error code ("SP_ENOMEM"). Never NULL; thread-safe. */
SP_API const char *sp_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* SPACESIM_ERROR_H */
