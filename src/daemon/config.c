/* config.c: flag values from argv or an INI file, and --print-config (see config.h). */
#include "daemon/config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spacesim/error.h"

const flag_t *sp_config_find(const sp_flagset_t *fs, const char *name) {
    for (size_t i = 0; i < fs->n; i++)
        if (strcmp(fs->flags[i].name, name) == 0) return &fs->flags[i];
    return NULL;
}

static const char *dash(sp_src_t src) { return src == SP_SRC_ARGV ? "--" : ""; }

static int parse_long(const flag_t *fl, const char *s, sp_src_t src, long lo, long hi, long *out, char *err,
                      size_t errlen) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || v < lo || v > hi) {
        snprintf(err, errlen, "invalid value '%s' for %s%s: expected an integer in [%ld, %ld]", s, dash(src),
                 fl->name, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const flag_t *fl, const char *s, sp_src_t src, double *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *s == '\0' || *end != '\0' || !(v >= fl->lo && v <= fl->hi)) {
        snprintf(err, errlen, "invalid value '%s' for %s%s: expected a number in [%g, %g]", s, dash(src), fl->name,
                 fl->lo, fl->hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const flag_t *fl, const char *s, sp_src_t src, uint64_t *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '\0' || s[0] == '-') {
        snprintf(err, errlen, "invalid value '%s' for %s%s: expected an unsigned integer", s, dash(src), fl->name);
        return -1;
    }
    *out = v;
    return 0;
}

int sp_config_apply(const sp_flagset_t *fs, const flag_t *fl, const char *v, sp_src_t src, sp_dconf_t *c,
                    char *err, size_t errlen) {
    char *field = (char *)c + fl->off;
    long lv;
    switch (fl->type) {
    case F_INT:
        if (parse_long(fl, v, src, (long)fl->lo, (long)fl->hi, &lv, err, errlen) != 0) return -1;
        *(int *)(void *)field = (int)lv;
        return 0;
    case F_LONG: return parse_long(fl, v, src, (long)fl->lo, (long)fl->hi, (long *)(void *)field, err, errlen);
    case F_SIZE:
        if (parse_long(fl, v, src, (long)fl->lo, (long)fl->hi, &lv, err, errlen) != 0) return -1;
        *(size_t *)(void *)field = (size_t)lv;
        return 0;
    case F_DOUBLE: return parse_double(fl, v, src, (double *)(void *)field, err, errlen);
    case F_U64: return parse_u64(fl, v, src, (uint64_t *)(void *)field, err, errlen);
    case F_STR:
        if (v[0] == '\0' || strlen(v) >= fl->size) {
            snprintf(err, errlen, "%s%s value empty or too long (at most %zu bytes)", dash(src), fl->name,
                     fl->size - 1);
            return -1;
        }
        snprintf(field, fl->size, "%s", v);
        return 0;
    case F_PATH:
        if (v[0] == '\0') {
            snprintf(err, errlen, "%s%s needs a path", dash(src), fl->name);
            return -1;
        }
        *(const char **)(void *)field = v;
        return 0;
    case F_SPECIAL: return fs->special(fl, v, src, c, fs->ctx, err, errlen);
    }
    snprintf(err, errlen, "internal error: flag %s has no type", fl->name);
    return -1;
}

/* ---------------------------------------------------------------- the file */

/* Copies of the file's values that rows may point to (F_PATH, specials such
 * as admin-token-file): kept, reachable from here, for the process's life. */
static char **kept;
static size_t nkept;

static const char *keep(const char *value) {
    char **k = realloc(kept, (nkept + 1) * sizeof *kept);
    if (k == NULL) return NULL;
    kept = k;
    char *copy = strdup(value);
    if (copy != NULL) kept[nkept++] = copy;
    return copy;
}

typedef struct reader {
    const sp_flagset_t *fs;
    sp_dconf_t *c;
    bool *seen;    /* per row: set once already */
    char err[512]; /* the first error, without its FILE:LINE */
} reader_t;

/* inih calls this once per `key = value` line; returning 0 stops the parse
 * (ini_stop_on_first_error) and ini_parse() returns that line's number. */
static int on_key(void *user, const char *section, const char *name, const char *value) {
    reader_t *r = user;
    if (section[0] != '\0') {
        snprintf(r->err, sizeof r->err, "sections are not used ([%s]): put every key at the top level", section);
        return 0;
    }
    const flag_t *fl = sp_config_find(r->fs, name);
    if (fl == NULL) {
        snprintf(r->err, sizeof r->err, "unknown key '%s' (the keys are the long options of spacesimd --help)",
                 name);
        return 0;
    }
    size_t i = (size_t)(fl - r->fs->flags);
    if (r->seen[i]) {
        snprintf(r->err, sizeof r->err, "key '%s' set twice", name);
        return 0;
    }
    r->seen[i] = true;
    /* inih's value lives in its line buffer: rows that keep a pointer get a
     * copy that lives as long as the process (reachable from *c or ctx). */
    const char *v = value;
    if (fl->type == F_PATH || fl->type == F_SPECIAL) {
        if ((v = keep(value)) == NULL) {
            snprintf(r->err, sizeof r->err, "out of memory");
            return 0;
        }
    }
    return sp_config_apply(r->fs, fl, v, SP_SRC_FILE, r->c, r->err, sizeof r->err) == 0;
}

int sp_config_read(const sp_flagset_t *fs, const char *path, sp_dconf_t *c) {
    reader_t r = {.fs = fs, .c = c};
    r.seen = calloc(fs->n ? fs->n : 1, sizeof *r.seen);
    if (r.seen == NULL) {
        fprintf(stderr, "spacesimd: out of memory reading %s\n", path);
        return SP_ENOMEM;
    }
    /* Debian's libinih makes its build options run-time variables. A line
     * may hold a long checkpoint path (heap buffer, 4 KiB); an indented line
     * is a line of its own, not a continuation of the value above; the first
     * error stops the parse so its line is the one reported. */
    ini_stop_on_first_error = true;
    ini_allow_multiline = false;
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = 4096;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "spacesimd: cannot read --config %s: %s\n", path, strerror(errno));
        free(r.seen);
        return SP_EIO;
    }
    int line = ini_parse_file(f, on_key, &r);
    fclose(f);
    free(r.seen);
    if (line == 0) return 0;
    if (line < 0) {
        fprintf(stderr, "spacesimd: cannot read --config %s: %s\n", path, line == -2 ? "out of memory" : "error");
        return line == -2 ? SP_ENOMEM : SP_EIO;
    }
    if (r.err[0] == '\0') snprintf(r.err, sizeof r.err, "syntax error: expected 'key = value' or a comment");
    fprintf(stderr, "spacesimd: %s:%d: %s\n", path, line, r.err);
    return SP_EINVAL;
}

/* ---------------------------------------------------------------- --print-config */

void sp_config_fmt_double(char *buf, size_t len, double v) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* The row's value as the file says it; false when unset. */
static bool show(const sp_flagset_t *fs, const flag_t *fl, const sp_dconf_t *c, char *buf, size_t len) {
    const char *field = (const char *)c + fl->off;
    switch (fl->type) {
    case F_INT: snprintf(buf, len, "%d", *(const int *)(const void *)field); return true;
    case F_LONG: snprintf(buf, len, "%ld", *(const long *)(const void *)field); return true;
    case F_SIZE: snprintf(buf, len, "%zu", *(const size_t *)(const void *)field); return true;
    case F_DOUBLE: sp_config_fmt_double(buf, len, *(const double *)(const void *)field); return true;
    case F_U64: snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)(const void *)field); return true;
    case F_STR:
        snprintf(buf, len, "%s", field);
        return field[0] != '\0';
    case F_PATH: {
        const char *p = *(const char *const *)(const void *)field;
        snprintf(buf, len, "%s", p ? p : "");
        return p != NULL;
    }
    case F_SPECIAL: return fs->show(fl, c, fs->ctx, buf, len);
    }
    return false;
}

/* The help text as comment lines (its continuation indent dropped). */
static void print_help_comment(const char *help, FILE *f) {
    const char *s = help;
    while (*s) {
        while (*s == ' ') s++;
        size_t n = strcspn(s, "\n");
        fprintf(f, "# %.*s\n", (int)n, s);
        s += n;
        if (*s == '\n') s++;
    }
}

void sp_config_print(const sp_flagset_t *fs, const sp_dconf_t *c, FILE *f) {
    fprintf(f, "# spacesimd configuration: the effective values (spacesimd --print-config).\n"
               "# Read with spacesimd --config FILE; a command-line flag overrides its key.\n"
               "# Format: 'key = value' lines, keys are the long options without '--',\n"
               "# '#' or ';' starts a comment line; no sections, each key at most once.\n");
    char buf[2048];
    for (size_t i = 0; i < fs->n; i++) {
        const flag_t *fl = &fs->flags[i];
        if (fl->hidden) continue;
        fputc('\n', f);
        print_help_comment(fl->help, f);
        if (show(fs, fl, c, buf, sizeof buf)) fprintf(f, "%s = %s\n", fl->name, buf);
        else fprintf(f, "#%s = %s\n", fl->name, fl->arg);
    }
}
