/* config.h: spacesimd's flags as one table, read from argv and from a
 * configuration file, printed back as a configuration file (issue 12).
 *
 * The table (main.c's `flags`) is the one source: each row is a long option
 * (--name VALUE) and, under the same name, a key of the file (name = VALUE),
 * with one value type and range, so a new row is settable in both places and
 * shown by --print-config, --help and the manual page without more code.
 *
 * The file format is INI, read by libinih (Debian: libinih-dev):
 *     # a comment line (or ; a comment line)
 *     key = value        ; an inline comment needs a space before the ';'
 * Keys are the long options without "--". No sections; each key at most
 * once; no continuation lines; lines up to 4 KiB. Relative paths are
 * relative to the daemon's working directory.
 *
 * Errors are written into a caller's buffer (err, errlen) without the
 * "spacesimd: " prefix, so the caller can put FILE:LINE in front.
 * Threads: start-up only (main thread, before any other exists). */
#ifndef SP_DAEMON_CONFIG_H
#define SP_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "daemon/conf.h"

/* How a flag's value is read. */
typedef enum {
    F_INT,     /* int in [lo, hi] */
    F_LONG,    /* long in [lo, hi] */
    F_SIZE,    /* size_t in [lo, hi] */
    F_DOUBLE,  /* double in [lo, hi] */
    F_U64,     /* unsigned 64-bit */
    F_STR,     /* copied into a char[size] field: non-empty, shorter than size */
    F_PATH,    /* a const char * field; the string must outlive the process's use of it */
    F_SPECIAL, /* handled by name by the table's owner (sp_flagset_t.special/show) */
} ftype_t;

typedef struct flag {
    const char *name, *arg; /* --name ARG, and the file's key `name` */
    ftype_t type;
    double lo, hi;
    size_t off, size;       /* field of sp_dconf_t (F_STR: its size) */
    const char *help;       /* printed as it is; \n + indent for a second line */
    bool hidden;            /* tests only: not in --help, the page or --print-config */
} flag_t;

/* Where a value comes from: the command line ("--port") or a file ("port"),
 * which is how error messages name the flag. */
typedef enum { SP_SRC_ARGV, SP_SRC_FILE } sp_src_t;

typedef struct sp_flagset {
    const flag_t *flags;
    size_t n;
    /* F_SPECIAL rows: apply v to *c (and to ctx). 0, or -1 with err filled. */
    int (*special)(const flag_t *fl, const char *v, sp_src_t src, sp_dconf_t *c, void *ctx, char *err,
                   size_t errlen);
    /* F_SPECIAL rows: the effective value as the file would say it, into
     * buf; false when the flag is unset (printed commented out). */
    bool (*show)(const flag_t *fl, const sp_dconf_t *c, const void *ctx, char *buf, size_t len);
    void *ctx;
} sp_flagset_t;

/* The row named `name`, or NULL. */
const flag_t *sp_config_find(const sp_flagset_t *fs, const char *name);

/* Parse v by fl's type and range into its field of *c. F_PATH stores v
 * itself: the caller keeps it alive. 0, or -1 with err filled, e.g.
 * "invalid value 'fast' for --tick-hz: expected an integer in [1, 1000]". */
int sp_config_apply(const sp_flagset_t *fs, const flag_t *fl, const char *v, sp_src_t src, sp_dconf_t *c,
                    char *err, size_t errlen);

/* Read the configuration file at path into *c (values over what *c holds).
 * Unknown keys, sections, a key given twice, lines without '=', values out
 * of range: the first of them fails the read. Values of F_PATH and special
 * rows are copied to the heap and kept for the process's life.
 * Returns 0, or after printing one line on stderr: SP_EINVAL for what the
 * file says ("spacesimd: PATH:LINE: unknown key 'prot'"), SP_EIO when it
 * cannot be read ("spacesimd: cannot read --config PATH: ..."), SP_ENOMEM. */
int sp_config_read(const sp_flagset_t *fs, const char *path, sp_dconf_t *c);

/* Write every non-hidden row's effective value as a configuration file that
 * sp_config_read() accepts and that gives the same configuration: its help
 * as a comment, then `name = value`; an unset row as `#name = ARG`. */
void sp_config_print(const sp_flagset_t *fs, const sp_dconf_t *c, FILE *f);

/* The shortest "%g" form of v that reads back (strtod) as v itself. */
void sp_config_fmt_double(char *buf, size_t len, double v);

#endif /* SP_DAEMON_CONFIG_H */
