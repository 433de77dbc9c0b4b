/* clients/opts.c: see opts.h. */
#include "opts.h"

#include <ctype.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#define WRAP 79          /* --help fits an 80-column terminal */
#define OPT_COL 26       /* column where option help starts */
#define MAX_OPTS 64      /* per group, plus the built-ins */

static const spc_opt_t builtins[] = {
    {SPC_OPT_HELP, 0, "help", NULL, "print this help and exit"},
    {SPC_OPT_VERSION, 0, "version", NULL, "print the version and exit"},
};
/* Hidden: the build runs `PROG --man` to write the page. */
static const spc_opt_t man_builtin = {SPC_OPT_MAN, 0, "man", NULL, NULL};

int spc_opts_bad(const spc_prog_t *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", p->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s --help'.\n", p->name);
    va_end(ap);
    return 2;
}

static const spc_opt_t *find_id(const spc_optgroup_t *g, int id) {
    for (size_t i = 0; i < g->n; i++)
        if (g->opts[i].id == id) return &g->opts[i];
    return NULL;
}

int spc_opts_parse(const spc_prog_t *p, size_t group, int argc, char **argv, int *ind, int in_order, spc_opt_cb cb,
                   void *ctx) {
    const spc_optgroup_t *g = &p->groups[group];
    struct option lo[MAX_OPTS + 4];
    char so[3 * MAX_OPTS + 4];
    size_t nl = 0, ns = 0;
    so[ns++] = in_order ? '+' : '-'; /* '-': operands come back as id 1, so we can refuse them */
    so[ns++] = ':';                  /* a missing argument returns ':' (our message, not getopt's) */
    if (g->n > MAX_OPTS) return spc_opts_bad(p, "internal error: too many options");
    for (size_t i = 0; i < g->n; i++) {
        const spc_opt_t *o = &g->opts[i];
        if (o->lng) lo[nl++] = (struct option){o->lng, o->arg ? required_argument : no_argument, NULL, o->id};
        if (o->shrt) {
            so[ns++] = (char)o->shrt;
            if (o->arg) so[ns++] = ':';
        }
    }
    if (g->builtins) {
        for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
            lo[nl++] = (struct option){builtins[i].lng, no_argument, NULL, builtins[i].id};
        lo[nl++] = (struct option){man_builtin.lng, no_argument, NULL, man_builtin.id};
    }
    lo[nl] = (struct option){NULL, 0, NULL, 0};
    so[ns] = '\0';

    opterr = 0;
    optind = 0; /* glibc: 0 re-initialises getopt, so a second parse starts afresh at argv[1] */
    for (;;) {
        int li = -1;
        int c = getopt_long(argc, argv, so, lo, &li);
        if (c == -1) break;
        const char *given = argv[optind - 1];
        if (c == 1) return spc_opts_bad(p, "unexpected argument '%s'", optarg);
        if (c == '?') {
            if (optopt && optopt < 0x100) return spc_opts_bad(p, "unknown option '-%c'", optopt);
            return spc_opts_bad(p, "unknown option '%s'", given);
        }
        if (c == ':') {
            const spc_opt_t *o = optopt ? find_id(g, optopt) : NULL;
            return spc_opts_bad(p, "option '%s' needs %s", given, o && o->arg ? o->arg : "an argument");
        }
        if (c == SPC_OPT_HELP) {
            spc_opts_help(p, stdout);
            return 0;
        }
        if (c == SPC_OPT_VERSION) {
            printf("%s %s%s%s\n", p->name, p->version, p->version_extra ? " " : "",
                   p->version_extra ? p->version_extra : "");
            return 0;
        }
        if (c == SPC_OPT_MAN) {
            spc_opts_man(p, stdout);
            return 0;
        }
        int st = cb(c, optarg, ctx);
        if (st) return st;
    }
    *ind = optind;
    return -1;
}

/* ---------------------------------------------------------------- --help */

/* Print s wrapped at WRAP columns; continuation lines start at column
 * `indent`; the first line continues from column `col`. */
static void wrap(FILE *f, const char *s, int col, int indent) {
    while (*s) {
        while (*s == ' ' || *s == '\n') s++;
        size_t w = strcspn(s, " \n");
        if (!w) break;
        if (col > indent && col + 1 + (int)w > WRAP) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(s, 1, w, f);
        col += (int)w;
        s += w;
    }
    fputc('\n', f);
}

static bool literal(const char *para, size_t len) {
    for (size_t i = 0; i < len;) {
        if (len - i < 2 || para[i] != ' ' || para[i + 1] != ' ') return false;
        const char *nl = memchr(para + i, '\n', len - i);
        i = nl ? (size_t)(nl - para) + 1 : len;
    }
    return len > 0;
}

/* Call fn for each paragraph of text (separated by "\n\n"). */
typedef void (*para_fn)(FILE *f, const char *para, size_t len, bool lit);
static void paragraphs(FILE *f, const char *text, para_fn fn) {
    const char *s = text;
    while (s && *s) {
        const char *e = strstr(s, "\n\n");
        size_t len = e ? (size_t)(e - s) : strlen(s);
        while (len && s[len - 1] == '\n') len--;
        if (len) fn(f, s, len, literal(s, len));
        s = e ? e + 2 : NULL;
    }
}

static bool g_first_para;
static void help_para(FILE *f, const char *para, size_t len, bool lit) {
    if (!g_first_para) fputc('\n', f);
    g_first_para = false;
    if (lit) {
        fwrite(para, 1, len, f);
        fputc('\n', f);
        return;
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%.*s", (int)len, para);
    wrap(f, buf, 0, 0);
}

static void help_opt(FILE *f, const spc_opt_t *o) {
    char head[128];
    int n;
    if (o->shrt && o->lng) n = snprintf(head, sizeof head, "  -%c, --%s", o->shrt, o->lng);
    else if (o->shrt) n = snprintf(head, sizeof head, "  -%c", o->shrt);
    else n = snprintf(head, sizeof head, "      --%s", o->lng);
    if (o->arg) snprintf(head + n, sizeof head - (size_t)n, " %s", o->arg);
    fputs(head, f);
    int col = (int)strlen(head);
    if (col + 2 > OPT_COL) {
        fprintf(f, "\n%*s", OPT_COL, "");
    } else {
        fprintf(f, "%*s", OPT_COL - col, "");
    }
    /* wrap() adds a space before a word when col > indent: start at indent. */
    wrap(f, o->help, OPT_COL, OPT_COL);
}

void spc_opts_help(const spc_prog_t *p, FILE *f) {
    for (size_t i = 0; p->synopsis[i]; i++)
        fprintf(f, "%s %s %s\n", i ? "      " : "Usage:", p->name, p->synopsis[i]);
    g_first_para = false;
    paragraphs(f, p->description, help_para);
    for (size_t gi = 0; gi < p->ngroups; gi++) {
        const spc_optgroup_t *g = &p->groups[gi];
        fprintf(f, "\n%s:\n", g->title);
        if (g->intro) {
            g_first_para = true;
            paragraphs(f, g->intro, help_para);
        }
        for (size_t i = 0; i < g->n; i++) help_opt(f, &g->opts[i]);
        if (g->builtins)
            for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) help_opt(f, &builtins[i]);
    }
    for (size_t si = 0; si < p->nsections; si++) {
        fprintf(f, "\n%s:\n", p->sections[si].title);
        g_first_para = true;
        paragraphs(f, p->sections[si].text, help_para);
    }
}

/* ---------------------------------------------------------------- --man */

/* Roff-escape one line: backslash and minus get escapes, and a line may not
 * start with '.' or '\'' (a request) — \& in front makes it text. */
static void roff_text(FILE *f, const char *s, size_t len) {
    if (len && (s[0] == '.' || s[0] == '\'')) fputs("\\&", f);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '\\') fputs("\\e", f);
        else if (c == '-') fputs("\\-", f);
        else if (c == '/' && i > 0) fputs("/\\:", f); /* a path may break after a slash: a long
                                                       * install prefix never makes a line unadjustable */
        else fputc(c, f);
    }
}

static void roff_lines(FILE *f, const char *s, size_t len, size_t strip) {
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - s) : len;
        size_t b = i + (e - i >= strip ? strip : e - i);
        /* An empty line in roff is a blank line in no-fill mode and a
         * paragraph break in fill mode; a trimmed prose line never is one. */
        while (strip == 0 && b < e && s[b] == ' ') b++;
        if (e > b) {
            roff_text(f, s + b, e - b);
            fputc('\n', f);
        }
        i = e + 1;
    }
}

static void man_para(FILE *f, const char *para, size_t len, bool lit) {
    if (lit) {
        /* Literal lines keep their spacing; the two-space marker becomes an indent. */
        fputs(".PP\n.RS 4\n.nf\n", f);
        roff_lines(f, para, len, 2);
        fputs(".fi\n.RE\n", f);
    } else {
        fputs(".PP\n", f);
        roff_lines(f, para, len, 0);
    }
}

static void man_opt(FILE *f, const spc_opt_t *o) {
    fputs(".TP\n", f);
    if (o->shrt) fprintf(f, "\\fB\\-%c\\fR", o->shrt);
    if (o->shrt && o->lng) fputs(", ", f);
    if (o->lng) {
        fputs("\\fB\\-\\-", f);
        roff_text(f, o->lng, strlen(o->lng));
        fputs("\\fR", f);
    }
    if (o->arg) {
        fputs(" \\fI", f);
        roff_text(f, o->arg, strlen(o->arg));
        fputs("\\fR", f);
    }
    fputc('\n', f);
    roff_lines(f, o->help, strlen(o->help), 0);
}

static void man_title(FILE *f, const char *t) {
    fputs(".SH \"", f);
    for (const char *s = t; *s; s++) fputc(toupper((unsigned char)*s), f);
    fputs("\"\n", f);
}

void spc_opts_man(const spc_prog_t *p, FILE *f) {
    fprintf(f, ".\\\" %s.1: generated by `%s --man` from the option table in its source; do not edit.\n", p->name,
            p->name);
    fputs(".TH \"", f);
    for (const char *s = p->name; *s; s++) {
        if (*s == '-') fputs("\\-", f);
        else fputc(toupper((unsigned char)*s), f);
    }
    fprintf(f, "\" 1 \"\" \"spacesim %s\" \"User Commands\"\n", p->version);
    /* Left-adjusted, as many man pages are: a long unbreakable word (an
     * install path) then never leaves a line troff cannot justify. */
    fputs(".ad l\n", f);
    fputs(".SH NAME\n", f);
    roff_text(f, p->name, strlen(p->name));
    fputs(" \\- ", f);
    roff_text(f, p->summary, strlen(p->summary));
    fputs("\n.SH SYNOPSIS\n", f);
    for (size_t i = 0; p->synopsis[i]; i++) {
        if (i) fputs(".br\n", f);
        fputs("\\fB", f);
        roff_text(f, p->name, strlen(p->name));
        fputs("\\fR ", f);
        roff_text(f, p->synopsis[i], strlen(p->synopsis[i]));
        fputc('\n', f);
    }
    fputs(".SH DESCRIPTION\n", f);
    paragraphs(f, p->description, man_para);
    for (size_t gi = 0; gi < p->ngroups; gi++) {
        const spc_optgroup_t *g = &p->groups[gi];
        man_title(f, g->title);
        if (g->intro) paragraphs(f, g->intro, man_para);
        for (size_t i = 0; i < g->n; i++) man_opt(f, &g->opts[i]);
        if (g->builtins)
            for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) man_opt(f, &builtins[i]);
    }
    for (size_t si = 0; si < p->nsections; si++) {
        man_title(f, p->sections[si].title);
        paragraphs(f, p->sections[si].text, man_para);
    }
    if (p->see_also) {
        fputs(".SH \"SEE ALSO\"\n", f);
        roff_lines(f, p->see_also, strlen(p->see_also), 0);
    }
}
