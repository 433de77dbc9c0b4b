/* clients/opts.h: one option table per program drives getopt_long, the
 * --help text and the manual page (issue 12).
 *
 * A program describes itself once, in a static spc_prog_t: its synopsis,
 * description, option groups (each option: short and long name, argument
 * name, one help sentence) and extra sections (commands, examples, exit
 * status, environment). From that one description:
 *
 *   spc_opts_parse()  runs getopt_long over argv (short and long forms, both
 *                     "--opt VALUE" and "--opt=VALUE"), handles --help,
 *                     --version and the hidden --man itself, and hands every
 *                     other option to the program's callback;
 *   spc_opts_help()   prints the --help text, wrapped to 80 columns;
 *   spc_opts_man()    writes the roff page (man(7) macros) that the build
 *                     installs as PROG.1: `PROG --man > PROG.1`.
 *
 * So the page and --help cannot drift: both are printed from the same table
 * by the same binary. Nothing here depends on the clients' protocol code:
 * spacesimd can link opts.c and describe itself the same way.
 *
 * Text conventions (for both outputs): a section or description is a list of
 * paragraphs separated by an empty line ("\n\n"). A paragraph whose every
 * line starts with two spaces is literal (examples, tables): printed as is
 * by --help, set in no-fill mode in the page. Any other paragraph is prose:
 * --help wraps it at 80 columns, the page lets roff fill it. Use ASCII only.
 *
 * Threads: single-threaded (getopt_long keeps global state). No allocation
 * beyond the getopt table built on the stack of spc_opts_parse(). */
#ifndef SP_CLIENTS_OPTS_H
#define SP_CLIENTS_OPTS_H

#include <stddef.h>
#include <stdio.h>

/* Ids spc_opts_parse() reserves for its built-in options. Programs give
 * their long-only options ids from SPC_OPT_FIRST up. */
enum {
    SPC_OPT_HELP = 0x1000,
    SPC_OPT_VERSION,
    SPC_OPT_MAN,
    SPC_OPT_FIRST = 0x1100
};

typedef struct spc_opt {
    int id;            /* what the callback receives: the short letter, or an id >= SPC_OPT_FIRST */
    int shrt;          /* short form ('p' for -p), 0 for long-only */
    const char *lng;   /* long form without the dashes ("port"), NULL for short-only */
    const char *arg;   /* argument name shown in help ("PORT"); NULL: the option takes none */
    const char *help;  /* one or more sentences, not wrapped (say the default and the range) */
} spc_opt_t;

typedef struct spc_optgroup {
    const char *title;         /* "Options", "Options of watch and map" */
    const char *intro;         /* a paragraph before the list, or NULL */
    const spc_opt_t *opts;
    size_t n;
    int builtins;              /* 1: --help and --version are listed (and parsed) in this group */
} spc_optgroup_t;

typedef struct spc_section {
    const char *title;         /* "Examples"; the page prints it in capitals */
    const char *text;          /* paragraphs, see the conventions above */
} spc_section_t;

typedef struct spc_prog {
    const char *name;          /* "spacesim-cli" */
    const char *version;       /* "0.1.0" */
    const char *version_extra; /* appended to the --version line, e.g. "(protocol 1)", or NULL */
    const char *summary;       /* NAME line: "a command-line client for spacesimd" */
    const char *const *synopsis; /* NULL-terminated lines after the program name */
    const char *description;   /* paragraphs */
    const spc_optgroup_t *groups;
    size_t ngroups;
    const spc_section_t *sections;
    size_t nsections;
    const char *see_also;      /* "spacesimd(1), spacesim-load(1)", or NULL */
} spc_prog_t;

/* Called once per option in argv order. arg is the option's argument (NULL
 * for a flag). Returns 0 to go on, or an exit status (after printing a
 * message, e.g. with spc_opts_bad()) to stop parsing. */
typedef int (*spc_opt_cb)(int id, const char *arg, void *ctx);

/* Parse argv[1..] against p->groups[group] with getopt_long, calling cb
 * for each option. in_order != 0 stops at the first operand (the method of
 * spacesim-cli: what follows it is its arguments, never options); otherwise
 * operands are not allowed at all.
 * Returns -1 when every option was consumed (*ind is then the index of the
 * first operand, argc if none), or an exit status the caller returns from
 * main: 0 after --help/--version/--man (printed on stdout), 2 after an
 * unknown option or a missing argument (message on stderr), or the
 * callback's status. */
int spc_opts_parse(const spc_prog_t *p, size_t group, int argc, char **argv, int *ind, int in_order, spc_opt_cb cb,
                   void *ctx);

/* Print "PROG: <message>\nTry 'PROG --help'." on stderr; returns 2. */
int spc_opts_bad(const spc_prog_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The --help text, and the roff page, on f. */
void spc_opts_help(const spc_prog_t *p, FILE *f);
void spc_opts_man(const spc_prog_t *p, FILE *f);

#endif /* SP_CLIENTS_OPTS_H */
