/*
 * command.h — what the sonde commands that talk to sonded share
 * (cmd_server.c, cmd_settings.c, cmd_token.c, cmd_task.c,
 * cmd_capture.c): the argument loop, one
 * call to sonded and its answer printed for people or as JSON, flag value
 * parsing, and tables.
 *
 * A command fills a struct command, walks its arguments taking its own
 * flags and handing the rest to command_arg (help, --server, --token,
 * --json, and --app / --instance when it takes them), checks flag values
 * with the parse_* functions so that a typo is a usage error (exit 2)
 * before anything is sent, and ends with command_run: the request, then
 * --json's raw answer or the command's own printing (usually a table, the
 * table_* and fmt_* functions), then the exit status.
 *
 * Messages go to stderr as "sonde CMD: message"; exit statuses are those
 * of commands.h.
 */
#ifndef SONDE_CLI_COMMAND_H
#define SONDE_CLI_COMMAND_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/client.h"

/* ------------------------------------------------------------------ */
/* Running a command                                                   */

/* What command_arg takes besides the common options. */
enum {
    COMMAND_APP = 1,        /* --app A (not empty) into app */
    COMMAND_INSTANCE = 2,   /* --instance H (not empty) into instance */
    COMMAND_POSITIONAL = 4, /* arguments that are not options */
};

struct command {
    const char *name;     /* "agents", "triggers set" */
    void (*usage)(FILE *f);
    unsigned takes;       /* COMMAND_* */
    struct client_options opt;
    const char *app;      /* --app, NULL when not given (borrows argv) */
    const char *instance; /* --instance, likewise */
};

/* Sets up cmd (common options from the environment, no flags yet). */
void command_init(struct command *cmd, const char *name, void (*usage)(FILE *f),
                  unsigned takes);

/* Prints "sonde CMD: " fmt (with arg, "" when NULL for its one %s) and
 * the usage on stderr; returns 2, the exit status of a usage error. */
int command_usage_error(const struct command *cmd, const char *fmt, const char *arg);

/* Takes argv[*i] when it is a common option or one cmd->takes (and its
 * value, advancing *i): 1.  0: a positional argument, which the caller
 * takes (only when cmd takes COMMAND_POSITIONAL).  -1: the command must
 * return *rc — help was printed (0), or an unknown option, a bad value
 * or an unexpected argument was (2). */
int command_arg(struct command *cmd, int argc, char **argv, int *i, int *rc);

/* Adds ?key=value to path (of CLIENT_MAX_PATH bytes) unless value is
 * NULL; 0, or the usage error of a value too long. */
int command_param(const struct command *cmd, char *path, const char *key, const char *value);

/* One JSON request; 0 with *out (a new reference), or 1 after printing
 * the failure. */
int command_call(struct client *c, const struct command *cmd, const char *method,
                 const char *path, json_t *body, json_t **out);

/* Prints sonded's answer for people: 0, -ENOMEM (command_run says "out
 * of memory"), or another negative code after printing why. */
typedef int (*command_print_fn)(const struct command *cmd, json_t *ans, const void *ctx);

/* The whole of a command once its arguments are checked: a client, one
 * request (body borrowed, may be NULL), the answer as it came with
 * --json, else print(cmd, ans, ctx); the exit status (0, or 1 after
 * printing why). */
int command_run(const struct command *cmd, const char *method, const char *path, json_t *body,
                command_print_fn print, const void *ctx);

/* The server's last answer as it came, for --json. */
void command_print_raw(struct client *c);

/* The exit status once output is done: 0, or 1 (said) if stdout could
 * not be written. */
int command_finish(const char *name);

/* ------------------------------------------------------------------ */
/* Flag values                                                         */

/* parse_int, parse_seconds and parse_onoff: 0 with *out, or -1 when s
 * is not one (s NULL: the flag had no value). */

/* A decimal integer in [min, max]. */
int parse_int(const char *s, long long min, long long max, long long *out);
/* Seconds from "90", "90s", "2m", "1h30m", "2d", within [min, max]. */
int parse_seconds(const char *s, long long min, long long max, long long *out);
/* A point in time as ms since the epoch, within 0..9999-12-31:
 *   now
 *   a duration ago, as for --since: 30m, 1h, -2d, -1h30m
 *   a date: 2024-05-01 (local midnight), 2024-05-01 12:00[:SS[.fff]]
 *     (local time; a 'T' may stand for the space), or RFC 3339 with its
 *     zone: 2024-05-01T12:00:00Z, 2024-05-01T12:00:00.5+02:00
 * 0 with *out_ms, or -1 when s is none of these. */
int parse_time(const char *s, long long *out_ms);
/* on/true/yes/1 → 1, off/false/no/0 → 0. */
int parse_onoff(const char *s, int *out);
/* 1 when s is one of words (NULL-terminated), else 0. */
int parse_one_of(const char *s, const char *const *words);

/* ------------------------------------------------------------------ */
/* Output for people                                                   */

/* A table printed with columns as wide as their widest cell (at most 16
 * columns).  Cells are copied with control characters replaced: names
 * come from the server and must not drive the terminal.  Allocation
 * failure is sticky. */
struct table {
    size_t cols;
    char **cells; /* row-major */
    size_t n, cap;
    int failed;
};

/* Adds a row of t->cols cells (NULL prints as "-"). */
void table_row(struct table *t, const char *const *cells);
/* Prints and frees the table; 0, or -ENOMEM if a row was lost. */
int table_print(struct table *t);

/* One column of a table of JSON objects: its heading, the member shown,
 * and how (fmt NULL: the member's string, "-" when it is none). */
struct table_column {
    const char *heading;
    const char *key;
    void (*fmt)(json_t *v, char *buf, size_t len);
};

/* Prints the objects of the array list (NULL: none) as a table of cols;
 * 0 or -ENOMEM. */
int table_list(json_t *list, const struct table_column *cols, size_t ncols);

/* An answer that is a list of objects under one member, as a table. */
struct table_of {
    const char *member; /* "agents" */
    const struct table_column *cols;
    size_t ncols;
};
#define TABLE_OF(member, cols) {(member), (cols), sizeof(cols) / sizeof((cols)[0])}
/* A command_print_fn for command_run with ctx a const struct table_of *. */
int table_print_answer(const struct command *cmd, json_t *ans, const void *ctx);

/* Cell formatters: "-" for a value that is not there or not of the kind
 * said, unless told otherwise. */
void fmt_time(json_t *ms, char *buf, size_t len);  /* local "2024-05-01 12:00:00" */
void fmt_ago(json_t *ms, char *buf, size_t len);   /* "just now", "2m30s ago" */
void fmt_pct(json_t *v, char *buf, size_t len);    /* "12.5" */
void fmt_int(json_t *v, char *buf, size_t len);
void fmt_time_ms(json_t *ms, char *buf, size_t len); /* fmt_time + ".123" */
void fmt_ms(json_t *v, char *buf, size_t len);       /* "200ms", "200.4ms" */
void fmt_duration(json_t *s, char *buf, size_t len); /* seconds as below; 0s when none */
/* "45s", "2m", "2m30s", "1h5m", "3d2h": two units at most. */
void fmt_seconds(long long s, char *buf, size_t len);
/* The string member key of obj, or "-". */
const char *fmt_string(json_t *obj, const char *key);
/* The same, "-" also for an empty string (a cell that must not vanish
 * from a table's columns). */
const char *fmt_text(json_t *obj, const char *key);

#endif
