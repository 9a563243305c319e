/*
 * cmd_server.c — the sonde commands that talk to sonded (docs/api.md):
 * agents, sessions, get, profile-now, triggers, sampling, token.  (`sonde
 * top SESSION` lives with local top in cmd_top.c.)
 *
 * Every command takes the common options of client.h (--server, --token,
 * --json).  People get tables; --json prints the server's answer as is,
 * for scripts.  Flag values are checked here against the ranges of
 * docs/api.md so that a typo is a usage error (exit 2) before anything is
 * sent; the server checks again and its refusal is printed with its
 * status (exit 1), as is a server that cannot be reached.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/client.h"
#include "commands.h"

/* ------------------------------------------------------------------ */
/* Flag values                                                         */

/* A decimal integer in [min, max]. */
static int parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Seconds from "90", "90s", "2m", "1h30m", "2d", within [min, max]. */
static int parse_seconds(const char *s, long long min, long long max, long long *out)
{
    long long total = 0;
    if (!s || !*s)
        return -1;
    while (*s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || v < 0 || *s == '-' || *s == '+')
            return -1;
        long long unit = 1;
        switch (*end) {
        case 's': unit = 1; end++; break;
        case 'm': unit = 60; end++; break;
        case 'h': unit = 3600; end++; break;
        case 'd': unit = 86400; end++; break;
        case '\0': break;
        default: return -1;
        }
        if (v > LLONG_MAX / unit || total > LLONG_MAX - v * unit)
            return -1;
        total += v * unit;
        s = end;
    }
    if (total < min || total > max)
        return -1;
    *out = total;
    return 0;
}

static int parse_onoff(const char *s, int *out)
{
    static const char *on[] = {"on", "true", "yes", "1"}, *off[] = {"off", "false", "no", "0"};
    for (size_t i = 0; s && i < 4; i++) {
        if (!strcmp(s, on[i]) || !strcmp(s, off[i])) {
            *out = !strcmp(s, on[i]);
            return 0;
        }
    }
    return -1;
}

static int one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (s && !strcmp(s, *words))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

/* A table printed with columns as wide as their widest cell.  Cells are
 * copied with control characters replaced: names come from the server
 * and must not drive the terminal.  Allocation failure is sticky. */
struct table {
    size_t cols;
    char **cells; /* row-major */
    size_t n, cap;
    int failed;
};

static void table_row(struct table *t, const char *const *cells)
{
    if (t->failed)
        return;
    if (t->n + t->cols > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : t->cols * 16;
        char **p = realloc(t->cells, cap * sizeof *p);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->cells = p;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->cols; i++) {
        char *s = strdup(cells[i] ? cells[i] : "-");
        if (!s) {
            t->failed = 1;
            for (size_t k = 0; k < i; k++)
                free(t->cells[t->n + k]);
            return;
        }
        for (char *p = s; *p; p++)
            if ((unsigned char)*p < ' ' || *p == 0x7f)
                *p = '?';
        t->cells[t->n + i] = s;
    }
    t->n += t->cols;
}

/* Prints and frees the table; 0, or -ENOMEM if a row was lost. */
static int table_print(struct table *t)
{
    size_t width[16] = {0};
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->cells[i]) > width[i % t->cols])
            width[i % t->cols] = strlen(t->cells[i]);
    for (size_t i = 0; i < t->n; i++) {
        size_t c = i % t->cols;
        if (c + 1 < t->cols)
            printf("%-*s  ", (int)width[c], t->cells[i]);
        else
            printf("%s\n", t->cells[i]);
        free(t->cells[i]);
    }
    free(t->cells);
    return t->failed ? -ENOMEM : 0;
}

static void fmt_time(json_t *ms, char *buf, size_t len)
{
    struct tm tm;
    time_t secs = (time_t)(json_integer_value(ms) / 1000);
    if (!json_is_integer(ms) || !localtime_r(&secs, &tm) ||
        !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, len, "-");
}

/* "45s", "2m", "2m30s", "1h5m", "3d2h": two units at most. */
static void fmt_seconds(long long s, char *buf, size_t len)
{
    static const struct { long long secs; char unit; } units[] = {
        {86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    if (s <= 0) {
        snprintf(buf, len, "0s");
        return;
    }
    for (size_t i = 0; i < 4; i++) {
        if (s < units[i].secs)
            continue;
        long long big = s / units[i].secs, rest = s % units[i].secs;
        if (i < 3 && rest / units[i + 1].secs > 0)
            snprintf(buf, len, "%lld%c%lld%c", big, units[i].unit, rest / units[i + 1].secs,
                     units[i + 1].unit);
        else
            snprintf(buf, len, "%lld%c", big, units[i].unit);
        return;
    }
}

static void fmt_ago(json_t *ms, char *buf, size_t len)
{
    if (!json_is_integer(ms)) {
        snprintf(buf, len, "-");
        return;
    }
    long long ago = ((long long)time(NULL) * 1000 - (long long)json_integer_value(ms)) / 1000;
    if (ago <= 0) {
        snprintf(buf, len, "just now");
        return;
    }
    char d[32];
    fmt_seconds(ago, d, sizeof d);
    snprintf(buf, len, "%s ago", d);
}

static void fmt_pct(json_t *v, char *buf, size_t len)
{
    if (json_is_number(v))
        snprintf(buf, len, "%.1f", json_number_value(v));
    else
        snprintf(buf, len, "-");
}

static void fmt_int(json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(buf, len, "-");
}

static const char *str_of(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "-";
}

/* The server's answer as it came, for --json. */
static void print_raw(struct client *c)
{
    size_t n;
    const char *body = client_body(c, &n);
    fwrite(body, 1, n, stdout);
    if (n == 0 || body[n - 1] != '\n')
        putchar('\n');
}

/* The exit status once output is done: 1 if stdout could not be written. */
static int finish(const char *cmd)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "sonde %s: cannot write the output: %s\n", cmd, strerror(errno));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Running a command                                                   */

/* What every command's argument loop shares. */
struct command {
    const char *name;           /* "agents", "triggers set" */
    void (*usage)(FILE *f);
    struct client_options opt;
};

/* Prints "sonde CMD: msg" and the usage; the exit status of a usage error. */
static int usage_error(const struct command *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "sonde %s: ", cmd->name);
    fprintf(stderr, fmt, arg ? arg : "");
    fputc('\n', stderr);
    cmd->usage(stderr);
    return 2;
}

/* The common part of an argument: 1 taken (*rc unchanged), 0 not an
 * option (a positional argument), -1 the command must return *rc (help
 * printed, an unknown option, or a usage error). */
static int common_arg(struct command *cmd, int argc, char **argv, int *i, int *rc)
{
    if (!strcmp(argv[*i], "-h") || !strcmp(argv[*i], "--help")) {
        cmd->usage(stdout);
        *rc = 0;
        return -1;
    }
    int k = client_option(&cmd->opt, cmd->name, argc, argv, i);
    if (k < 0) {
        cmd->usage(stderr);
        *rc = 2;
        return -1;
    }
    if (k == 0 && argv[*i][0] == '-' && argv[*i][1]) {
        *rc = usage_error(cmd, "unknown option '%s'", argv[*i]);
        return -1;
    }
    return k;
}

/* One JSON request; 0, or 1 after printing the failure. */
static int call(struct client *c, const struct command *cmd, const char *method,
                const char *path, json_t *body, json_t **out)
{
    if (client_call_json(c, method, path, body, out) != 0) {
        fprintf(stderr, "sonde %s: %s\n", cmd->name, client_errmsg(c));
        return 1;
    }
    return 0;
}

/* Adds ?key=value to path unless value is NULL; 0 or a usage error. */
static int param(const struct command *cmd, char *path, const char *key, const char *value)
{
    if (value && client_path_param(path, CLIENT_MAX_PATH, key, value) != 0)
        return usage_error(cmd, "the value of %s is too long", key);
    return 0;
}

/* ------------------------------------------------------------------ */
/* sonde agents                                                        */

static void agents_usage(FILE *f)
{
    fprintf(f, "usage: sonde agents [--app A] [--instance H] [--status running|stale|stopped]\n");
    client_options_usage(f, 1);
}

int cmd_agents(int argc, char **argv)
{
    static const char *const statuses[] = {"running", "stale", "stopped", NULL};
    struct command cmd = {"agents", agents_usage, {0}};
    client_options_init(&cmd.opt);
    const char *app = NULL, *instance = NULL, *status = NULL;
    int rc, k;
    for (int i = 1; i < argc; i++) {
        if (client_arg_value("--app", argc, argv, &i, &app)) {
            if (!app || !*app)
                return usage_error(&cmd, "--app needs an app name%s", NULL);
        } else if (client_arg_value("--instance", argc, argv, &i, &instance)) {
            if (!instance || !*instance)
                return usage_error(&cmd, "--instance needs an instance name%s", NULL);
        } else if (client_arg_value("--status", argc, argv, &i, &status)) {
            if (!one_of(status, statuses))
                return usage_error(&cmd, "--status must be running, stale or stopped%s", NULL);
        } else if ((k = common_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 0) {
            return usage_error(&cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    char path[CLIENT_MAX_PATH] = "/api/v1/agents";
    if ((rc = param(&cmd, path, "app", app)) || (rc = param(&cmd, path, "instance", instance)) ||
        (rc = param(&cmd, path, "status", status)))
        return rc;
    struct client *c = client_new(&cmd.opt, cmd.name);
    json_t *ans = NULL;
    if (!c || call(c, &cmd, "GET", path, NULL, &ans)) {
        client_free(c);
        return 1;
    }
    rc = 0;
    if (cmd.opt.json) {
        print_raw(c);
    } else {
        struct table t = {.cols = 8};
        table_row(&t, (const char *[]){"ID", "APP", "INSTANCE", "PID", "STATUS", "LAST-SEEN",
                                        "CPU%", "MEM%"});
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(ans, "agents"), i, a) {
            char id[32], pid[32], seen[48], cpu[32], mem[32];
            fmt_int(json_object_get(a, "id"), id, sizeof id);
            fmt_int(json_object_get(a, "pid"), pid, sizeof pid);
            fmt_ago(json_object_get(a, "last_seen_ms"), seen, sizeof seen);
            fmt_pct(json_object_get(a, "cpu_pct"), cpu, sizeof cpu);
            fmt_pct(json_object_get(a, "mem_pct"), mem, sizeof mem);
            table_row(&t, (const char *[]){id, str_of(a, "app"), str_of(a, "instance"), pid,
                                            str_of(a, "status"), seen, cpu, mem});
        }
        if (table_print(&t) != 0) {
            fprintf(stderr, "sonde agents: out of memory\n");
            rc = 1;
        }
    }
    json_decref(ans);
    client_free(c);
    return rc ? rc : finish(cmd.name);
}

/* ------------------------------------------------------------------ */
/* sonde sessions                                                      */

static const char *const triggers_by[] = {"profile-now", "cpu-trigger", "memory-trigger",
                                          "default-sampling", "load-test", NULL};

static void sessions_usage(FILE *f)
{
    fprintf(f, "usage: sonde sessions [--app A] [--instance H] [--triggered-by T]\n"
               "                      [--since DURATION] [--limit N] [--offset N]\n"
               "  --triggered-by T  profile-now, cpu-trigger, memory-trigger,\n"
               "                    default-sampling or load-test\n"
               "  --since DURATION  sessions started in the last 30m, 1h, 2d, ...\n"
               "  --limit N         at most N sessions, newest first, 1..1000 (default 50)\n"
               "  --offset N        skip the N newest\n");
    client_options_usage(f, 1);
}

int cmd_sessions(int argc, char **argv)
{
    struct command cmd = {"sessions", sessions_usage, {0}};
    client_options_init(&cmd.opt);
    const char *app = NULL, *instance = NULL, *by = NULL, *v;
    const char *limit = NULL, *offset = NULL;
    char from[32] = "";
    long long n;
    int rc, k;
    for (int i = 1; i < argc; i++) {
        if (client_arg_value("--app", argc, argv, &i, &app)) {
            if (!app || !*app)
                return usage_error(&cmd, "--app needs an app name%s", NULL);
        } else if (client_arg_value("--instance", argc, argv, &i, &instance)) {
            if (!instance || !*instance)
                return usage_error(&cmd, "--instance needs an instance name%s", NULL);
        } else if (client_arg_value("--triggered-by", argc, argv, &i, &by)) {
            if (!one_of(by, triggers_by))
                return usage_error(&cmd, "--triggered-by must be profile-now, cpu-trigger, "
                                         "memory-trigger, default-sampling or load-test%s", NULL);
        } else if (client_arg_value("--since", argc, argv, &i, &v)) {
            /* Ten years back at most: older is before any session. */
            if (parse_seconds(v, 1, 3650LL * 86400, &n) != 0)
                return usage_error(&cmd, "--since needs a duration like 30m, 1h or 2d, not '%s'",
                                   v);
            snprintf(from, sizeof from, "%lld", (long long)time(NULL) * 1000 - n * 1000);
        } else if (client_arg_value("--limit", argc, argv, &i, &limit)) {
            if (parse_int(limit, 1, 1000, &n) != 0)
                return usage_error(&cmd, "--limit must be a count in 1..1000, not '%s'", limit);
        } else if (client_arg_value("--offset", argc, argv, &i, &offset)) {
            if (parse_int(offset, 0, INT_MAX, &n) != 0)
                return usage_error(&cmd, "--offset must be a count >= 0, not '%s'", offset);
        } else if ((k = common_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 0) {
            return usage_error(&cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    char path[CLIENT_MAX_PATH] = "/api/v1/sessions";
    if ((rc = param(&cmd, path, "app", app)) || (rc = param(&cmd, path, "instance", instance)) ||
        (rc = param(&cmd, path, "triggered_by", by)) ||
        (rc = param(&cmd, path, "from", *from ? from : NULL)) ||
        (rc = param(&cmd, path, "limit", limit)) || (rc = param(&cmd, path, "offset", offset)))
        return rc;
    struct client *c = client_new(&cmd.opt, cmd.name);
    json_t *ans = NULL;
    if (!c || call(c, &cmd, "GET", path, NULL, &ans)) {
        client_free(c);
        return 1;
    }
    rc = 0;
    if (cmd.opt.json) {
        print_raw(c);
    } else {
        struct table t = {.cols = 10};
        table_row(&t, (const char *[]){"ID", "TRIGGERED-BY", "APP", "INSTANCE", "STARTED",
                                        "DURATION", "TRACES", "CPU%", "MEM%", "STATE"});
        json_t *list = json_object_get(ans, "sessions"), *s;
        size_t i;
        json_array_foreach(list, i, s) {
            char id[32], started[48], dur[32], traces[32], cpu[32], mem[32];
            fmt_int(json_object_get(s, "id"), id, sizeof id);
            fmt_time(json_object_get(s, "start_ms"), started, sizeof started);
            fmt_seconds(json_integer_value(json_object_get(s, "duration_s")), dur, sizeof dur);
            fmt_int(json_object_get(s, "traces"), traces, sizeof traces);
            fmt_pct(json_object_get(s, "cpu_pct"), cpu, sizeof cpu);
            fmt_pct(json_object_get(s, "mem_pct"), mem, sizeof mem);
            table_row(&t, (const char *[]){id, str_of(s, "triggered_by"), str_of(s, "app"),
                                            str_of(s, "instance"), started, dur, traces, cpu, mem,
                                            str_of(s, "state")});
        }
        if (table_print(&t) != 0) {
            fprintf(stderr, "sonde sessions: out of memory\n");
            rc = 1;
        }
        json_int_t total = json_integer_value(json_object_get(ans, "total"));
        json_int_t off = json_integer_value(json_object_get(ans, "offset"));
        if (!rc && total > off + (json_int_t)json_array_size(list))
            printf("(%zu of %" JSON_INTEGER_FORMAT " sessions from offset %" JSON_INTEGER_FORMAT
                   "; see --limit and --offset)\n",
                   json_array_size(list), total, off);
    }
    json_decref(ans);
    client_free(c);
    return rc ? rc : finish(cmd.name);
}

/* ------------------------------------------------------------------ */
/* sonde get                                                           */

static void get_usage(FILE *f)
{
    fprintf(f, "usage: sonde get SESSION [-o FILE]\n"
               "  -o FILE   where to write the session's pprof (default session-ID.pb.gz;\n"
               "            - for stdout)\n");
    client_options_usage(f, 0);
}

int cmd_get(int argc, char **argv)
{
    struct command cmd = {"get", get_usage, {0}};
    client_options_init(&cmd.opt);
    const char *session = NULL, *out = NULL;
    long long id;
    int rc, k;
    for (int i = 1; i < argc; i++) {
        if (client_arg_value("-o", argc, argv, &i, &out) ||
            client_arg_value("--output", argc, argv, &i, &out)) {
            if (!out || !*out)
                return usage_error(&cmd, "-o needs a file name%s", NULL);
        } else if ((k = common_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 1) {
            continue;
        } else if (session) {
            return usage_error(&cmd, "one session only, not also '%s'", argv[i]);
        } else {
            session = argv[i];
        }
    }
    if (!session)
        return usage_error(&cmd, "no session id given%s", NULL);
    if (parse_int(session, 1, INT64_MAX, &id) != 0)
        return usage_error(&cmd, "a session id is a positive integer, not '%s'", session);
    if (cmd.opt.json)
        return usage_error(&cmd, "--json does not apply: the profile is pprof%s", NULL);
    char path[CLIENT_MAX_PATH], name[64];
    snprintf(path, sizeof path, "/api/v1/sessions/%lld/profile", id);
    snprintf(name, sizeof name, "session-%lld.pb.gz", id);
    if (!out)
        out = name;

    struct client *c = client_new(&cmd.opt, cmd.name);
    if (!c)
        return 1;
    if (client_request(c, "GET", path, NULL, 0, CLIENT_MAX_PROFILE) != 0) {
        fprintf(stderr, "sonde get: %s\n", client_errmsg(c));
        client_free(c);
        return 1;
    }
    size_t n;
    const char *body = client_body(c, &n);
    /* Only now, with the whole profile in hand, is the file touched: a
     * failed download leaves no half file behind. */
    int to_stdout = !strcmp(out, "-");
    FILE *f = to_stdout ? stdout : fopen(out, "wb");
    rc = 0;
    if (f) {
        int bad = fwrite(body, 1, n, f) != n;
        bad |= to_stdout ? fflush(f) != 0 : fclose(f) != 0;
        if (bad && !to_stdout)
            remove(out);
        rc = bad;
    }
    if (!f || rc) {
        fprintf(stderr, "sonde get: cannot write %s: %s\n", out, strerror(errno));
        rc = 1;
    } else if (!to_stdout) {
        fprintf(stderr, "wrote %s (%zu bytes)\n", out, n);
    }
    client_free(c);
    return rc;
}

/* ------------------------------------------------------------------ */
/* sonde profile-now                                                   */

static void profile_now_usage(FILE *f)
{
    fprintf(f, "usage: sonde profile-now [--app A] [--duration S]\n"
               "  --app A        profile the running agents of app A (default: every app)\n"
               "  --duration S   how long: 1s..1h as 90, 90s, 2m (default 120s)\n");
    client_options_usage(f, 1);
}

int cmd_profile_now(int argc, char **argv)
{
    struct command cmd = {"profile-now", profile_now_usage, {0}};
    client_options_init(&cmd.opt);
    const char *app = NULL, *v;
    long long duration = -1;
    int rc, k;
    for (int i = 1; i < argc; i++) {
        if (client_arg_value("--app", argc, argv, &i, &app)) {
            if (!app || !*app)
                return usage_error(&cmd, "--app needs an app name%s", NULL);
        } else if (client_arg_value("--duration", argc, argv, &i, &v)) {
            if (parse_seconds(v, 1, 3600, &duration) != 0)
                return usage_error(&cmd, "--duration must be 1..3600 seconds (90, 2m, 1h), not "
                                         "'%s'", v);
        } else if ((k = common_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 0) {
            return usage_error(&cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    json_t *body = json_object();
    if (!body || (app && json_object_set_new(body, "app", json_string(app))) ||
        (duration > 0 && json_object_set_new(body, "duration_s", json_integer(duration)))) {
        json_decref(body);
        fprintf(stderr, "sonde profile-now: out of memory or --app is not UTF-8\n");
        return 1;
    }
    struct client *c = client_new(&cmd.opt, cmd.name);
    json_t *ans = NULL;
    rc = !c || call(c, &cmd, "POST", "/api/v1/profile-now", body, &ans);
    json_decref(body);
    if (!rc && cmd.opt.json) {
        print_raw(c);
    } else if (!rc) {
        char id[32], dur[32];
        fmt_int(json_object_get(ans, "id"), id, sizeof id);
        fmt_seconds(json_integer_value(json_object_get(ans, "duration_s")), dur, sizeof dur);
        json_int_t agents = json_integer_value(json_object_get(ans, "agents"));
        const char *a = json_string_value(json_object_get(ans, "app"));
        printf("profile-now request %s: %s%s, %s; %" JSON_INTEGER_FORMAT
               " running agent%s matched\n",
               id, a ? "app " : "every app", a ? a : "", dur, agents, agents == 1 ? "" : "s");
    }
    json_decref(ans);
    client_free(c);
    return rc ? 1 : finish(cmd.name);
}

/* ------------------------------------------------------------------ */
/* sonde triggers, sonde sampling: settings documents                  */

enum field_kind { FIELD_BOOL, FIELD_INT, FIELD_SECONDS };

/* One flag of `set` and where it goes in the PUT document. */
struct setting_field {
    const char *flag;  /* "--cpu-threshold" */
    const char *group; /* "cpu", NULL: top level */
    const char *key;   /* "threshold" */
    enum field_kind kind;
    long long min, max;
    const char *range; /* for messages */
};

struct setting_doc {
    const char *name;  /* "triggers" */
    const char *title; /* "triggers", "default sampling" */
    const char *route; /* "/api/v1/triggers" */
    const struct setting_field *fields;
    size_t nfields;
    void (*usage)(FILE *f);
    void (*table)(struct table *t, json_t *doc); /* fills the table */
    size_t cols;
};

static const struct setting_field trigger_fields[] = {
    {"--cpu", "cpu", "enabled", FIELD_BOOL, 0, 1, "on or off"},
    {"--cpu-threshold", "cpu", "threshold", FIELD_INT, 1, 100, "a percent in 1..100"},
    {"--cpu-duration", "cpu", "duration_s", FIELD_SECONDS, 10, 3600, "10s..1h"},
    {"--cpu-cooldown", "cpu", "cooldown_s", FIELD_SECONDS, 0, 86400, "0s..1d"},
    {"--memory", "memory", "enabled", FIELD_BOOL, 0, 1, "on or off"},
    {"--memory-threshold", "memory", "threshold", FIELD_INT, 1, 100, "a percent in 1..100"},
    {"--memory-duration", "memory", "duration_s", FIELD_SECONDS, 10, 3600, "10s..1h"},
    {"--memory-cooldown", "memory", "cooldown_s", FIELD_SECONDS, 0, 86400, "0s..1d"},
};

static const struct setting_field sampling_fields[] = {
    {"--enabled", NULL, "enabled", FIELD_BOOL, 0, 1, "on or off"},
    {"--window", NULL, "window_s", FIELD_SECONDS, 10, 3600, "10s..1h"},
    {"--period", NULL, "period_s", FIELD_SECONDS, 60, 86400, "1m..1d"},
};

static void triggers_usage(FILE *f)
{
    fprintf(f, "usage: sonde triggers [show] [--app A]\n"
               "       sonde triggers set [--app A] [--cpu on|off] [--cpu-threshold PCT]\n"
               "                          [--cpu-duration S] [--cpu-cooldown S]\n"
               "                          [--memory on|off] [--memory-threshold PCT]\n"
               "                          [--memory-duration S] [--memory-cooldown S]\n"
               "       sonde triggers reset --app A\n"
               "  show    the effective CPU and memory triggers (of app A, or the workspace's)\n"
               "  set     change the given fields; with --app they become A's own override\n"
               "  reset   drop A's override: it follows the workspace again\n"
               "  PCT 1..100 (of the CPU quota / memory limit); duration 10s..1h; cooldown 0s..1d\n");
    client_options_usage(f, 1);
}

static void sampling_usage(FILE *f)
{
    fprintf(f, "usage: sonde sampling [show] [--app A]\n"
               "       sonde sampling set [--app A] [--enabled on|off] [--window S] [--period S]\n"
               "       sonde sampling reset --app A\n"
               "  default sampling profiles a random window of S (10s..1h) once every period\n"
               "  (1m..1d, not shorter than the window); set/reset as for sonde triggers\n");
    client_options_usage(f, 1);
}

static void onoff(json_t *v, char *buf, size_t len)
{
    snprintf(buf, len, "%s", json_is_boolean(v) ? (json_is_true(v) ? "on" : "off") : "-");
}

static void secs(json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v))
        fmt_seconds(json_integer_value(v), buf, len);
    else
        snprintf(buf, len, "-");
}

static void triggers_table(struct table *t, json_t *doc)
{
    table_row(t, (const char *[]){"TRIGGER", "ENABLED", "THRESHOLD", "DURATION", "COOLDOWN"});
    static const char *const kinds[] = {"cpu", "memory"};
    for (size_t i = 0; i < 2; i++) {
        json_t *g = json_object_get(doc, kinds[i]);
        char en[8], th[32], du[32], co[32];
        onoff(json_object_get(g, "enabled"), en, sizeof en);
        fmt_int(json_object_get(g, "threshold"), th, sizeof th);
        if (strcmp(th, "-") != 0)
            strcat(th, "%");
        secs(json_object_get(g, "duration_s"), du, sizeof du);
        secs(json_object_get(g, "cooldown_s"), co, sizeof co);
        table_row(t, (const char *[]){kinds[i], en, th, du, co});
    }
}

static void sampling_table(struct table *t, json_t *doc)
{
    char en[8], wi[32], pe[32];
    onoff(json_object_get(doc, "enabled"), en, sizeof en);
    secs(json_object_get(doc, "window_s"), wi, sizeof wi);
    secs(json_object_get(doc, "period_s"), pe, sizeof pe);
    table_row(t, (const char *[]){"ENABLED", "WINDOW", "PERIOD"});
    table_row(t, (const char *[]){en, wi, pe});
}

static const struct setting_doc triggers_doc = {
    "triggers", "triggers", "/api/v1/triggers", trigger_fields,
    sizeof trigger_fields / sizeof trigger_fields[0], triggers_usage, triggers_table, 5};
static const struct setting_doc sampling_doc = {
    "sampling", "default sampling", "/api/v1/default-sampling", sampling_fields,
    sizeof sampling_fields / sizeof sampling_fields[0], sampling_usage, sampling_table, 3};

/* A settings document for people: whose it is, then its table. */
static int show_settings(const struct setting_doc *d, json_t *doc, const char *app)
{
    json_t *o = json_object_get(doc, "overridden");
    if (app)
        printf("%s of app %s: %s\n", d->title, app,
               json_is_true(o)    ? "its own override"
               : json_is_false(o) ? "the workspace's (no override)"
                                  : "effective settings");
    else
        printf("%s of the workspace\n", d->title);
    struct table t = {.cols = d->cols};
    d->table(&t, doc);
    return table_print(&t);
}

/* Puts the value of flag f into the PUT document body. */
static int set_field(json_t *body, const struct setting_field *f, long long v)
{
    json_t *target = body;
    if (f->group) {
        target = json_object_get(body, f->group);
        if (!target) {
            target = json_object();
            if (!target || json_object_set_new(body, f->group, target) != 0)
                return -ENOMEM;
        }
    }
    json_t *j = f->kind == FIELD_BOOL ? json_boolean(v) : json_integer(v);
    return j && json_object_set_new(target, f->key, j) == 0 ? 0 : -ENOMEM;
}

static int cmd_settings(const struct setting_doc *d, int argc, char **argv)
{
    enum { SHOW, SET, RESET } what = SHOW;
    char name[64];
    int first = 1;
    if (argc > 1 && argv[1][0] != '-') {
        if (!strcmp(argv[1], "set"))
            what = SET;
        else if (!strcmp(argv[1], "reset"))
            what = RESET;
        else if (strcmp(argv[1], "show") != 0) {
            fprintf(stderr, "sonde %s: unknown subcommand '%s' (show, set or reset)\n", d->name,
                    argv[1]);
            d->usage(stderr);
            return 2;
        }
        first = 2;
    }
    snprintf(name, sizeof name, "%s%s%s", d->name, first == 2 ? " " : "",
             first == 2 ? argv[1] : "");
    struct command cmd = {name, d->usage, {0}};
    client_options_init(&cmd.opt);
    const char *app = NULL, *v;
    json_t *body = json_object();
    int rc = 0, k;
    if (!body) {
        fprintf(stderr, "sonde %s: out of memory\n", name);
        return 1;
    }
    for (int i = first; i < argc && !rc; i++) {
        size_t f = 0;
        for (; what == SET && f < d->nfields; f++)
            if (client_arg_value(d->fields[f].flag, argc, argv, &i, &v))
                break;
        if (what == SET && f < d->nfields) {
            const struct setting_field *fd = &d->fields[f];
            int on = 0;
            long long n = 0;
            int bad = fd->kind == FIELD_BOOL      ? parse_onoff(v, &on)
                      : fd->kind == FIELD_INT     ? parse_int(v, fd->min, fd->max, &n)
                                                  : parse_seconds(v, fd->min, fd->max, &n);
            if (bad) {
                fprintf(stderr, "sonde %s: %s must be %s, not '%s'\n", name, fd->flag, fd->range,
                        v ? v : "");
                d->usage(stderr);
                rc = 2;
            } else if (set_field(body, fd, fd->kind == FIELD_BOOL ? on : n) != 0) {
                fprintf(stderr, "sonde %s: out of memory\n", name);
                rc = 1;
            }
        } else if (client_arg_value("--app", argc, argv, &i, &app)) {
            if (!app || !*app)
                rc = usage_error(&cmd, "--app needs an app name%s", NULL);
        } else if ((k = common_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            json_decref(body);
            return rc;
        } else if (k == 0) {
            rc = usage_error(&cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!rc && what == SET && json_object_size(body) == 0)
        rc = usage_error(&cmd, "nothing to set: give at least one setting%s", NULL);
    if (!rc && what == RESET && !app)
        rc = usage_error(&cmd, "reset needs --app: the workspace settings have no default to "
                               "return to; set them instead%s", NULL);
    char path[CLIENT_MAX_PATH];
    snprintf(path, sizeof path, "%s", d->route);
    if (!rc)
        rc = param(&cmd, path, "app", app);
    struct client *c = rc ? NULL : client_new(&cmd.opt, name);
    json_t *ans = NULL;
    if (!rc && !c)
        rc = 1;
    if (!rc && what == RESET) {
        if (client_request(c, "DELETE", path, NULL, 0, CLIENT_MAX_JSON) != 0) {
            fprintf(stderr, "sonde %s: %s\n", name, client_errmsg(c));
            rc = 1;
        } else if (cmd.opt.json) {
            print_raw(c);
        } else {
            printf("removed the %s override of app %s: it follows the workspace's again\n",
                   d->title, app);
        }
    } else if (!rc) {
        rc = call(c, &cmd, what == SET ? "PUT" : "GET", path, what == SET ? body : NULL, &ans);
        if (!rc && cmd.opt.json)
            print_raw(c);
        else if (!rc && show_settings(d, ans, app) != 0) {
            fprintf(stderr, "sonde %s: out of memory\n", name);
            rc = 1;
        }
    }
    json_decref(ans);
    json_decref(body);
    client_free(c);
    return rc ? rc : finish(name);
}

int cmd_triggers(int argc, char **argv)
{
    return cmd_settings(&triggers_doc, argc, argv);
}

int cmd_sampling(int argc, char **argv)
{
    return cmd_settings(&sampling_doc, argc, argv);
}

/* ------------------------------------------------------------------ */
/* sonde token                                                         */

static void token_usage(FILE *f)
{
    fprintf(f, "usage: sonde token create --role reader|writer|admin|agent [--name NAME]\n"
               "       sonde token list\n"
               "       sonde token revoke ID\n"
               "  create   prints the new token's secret on stdout: it is shown only once\n"
               "  revoke   the token stops working at once\n"
               "  (admin tokens only)\n");
    client_options_usage(f, 1);
}

static int token_create(struct command *cmd, struct client *c, const char *role,
                        const char *tname)
{
    json_t *body = json_pack("{ss}", "role", role), *ans = NULL;
    if (!body || (tname && json_object_set_new(body, "name", json_string(tname)) != 0)) {
        json_decref(body);
        fprintf(stderr, "sonde %s: out of memory or --name is not UTF-8\n", cmd->name);
        return 1;
    }
    int rc = call(c, cmd, "POST", "/api/v1/tokens", body, &ans);
    json_decref(body);
    if (!rc && cmd->opt.json) {
        print_raw(c);
    } else if (!rc) {
        const char *secret = json_string_value(json_object_get(ans, "token"));
        char id[32];
        fmt_int(json_object_get(ans, "id"), id, sizeof id);
        /* The secret alone on stdout, so that TOKEN=$(sonde token create ...) works. */
        fprintf(stderr, "created token %s (role %s%s%s); its secret is shown only this once:\n",
                id, str_of(ans, "role"), tname ? ", name " : "", tname ? tname : "");
        printf("%s\n", secret ? secret : "-");
        if (!secret) {
            fprintf(stderr, "sonde %s: sonded's answer has no token\n", cmd->name);
            rc = 1;
        }
    }
    json_decref(ans);
    return rc;
}

static int token_list(struct command *cmd, struct client *c)
{
    json_t *ans = NULL;
    if (call(c, cmd, "GET", "/api/v1/tokens", NULL, &ans))
        return 1;
    int rc = 0;
    if (cmd->opt.json) {
        print_raw(c);
    } else {
        struct table t = {.cols = 6};
        table_row(&t, (const char *[]){"ID", "NAME", "ROLE", "CREATED", "LAST-USED", "REVOKED"});
        size_t i;
        json_t *tok;
        json_array_foreach(json_object_get(ans, "tokens"), i, tok) {
            char id[32], created[48], used[48], revoked[48];
            fmt_int(json_object_get(tok, "id"), id, sizeof id);
            fmt_time(json_object_get(tok, "created_ms"), created, sizeof created);
            fmt_ago(json_object_get(tok, "last_used_ms"), used, sizeof used);
            fmt_time(json_object_get(tok, "revoked_ms"), revoked, sizeof revoked);
            table_row(&t, (const char *[]){id, str_of(tok, "name"), str_of(tok, "role"), created,
                                            used, revoked});
        }
        if (table_print(&t) != 0) {
            fprintf(stderr, "sonde %s: out of memory\n", cmd->name);
            rc = 1;
        }
    }
    json_decref(ans);
    return rc;
}

static int token_revoke(struct command *cmd, struct client *c, long long id)
{
    char path[64];
    json_t *ans = NULL;
    snprintf(path, sizeof path, "/api/v1/tokens/%lld", id);
    if (call(c, cmd, "DELETE", path, NULL, &ans))
        return 1;
    if (cmd->opt.json)
        print_raw(c);
    else
        printf("revoked token %lld\n", id);
    json_decref(ans);
    return 0;
}

int cmd_token(int argc, char **argv)
{
    static const char *const roles[] = {"reader", "writer", "admin", "agent", NULL};
    static const char *const subs[] = {"create", "list", "revoke", NULL};
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        token_usage(stdout);
        return 0;
    }
    if (argc < 2 || !one_of(argv[1], subs)) {
        fprintf(stderr, "sonde token: %s%s%s\n", argc < 2 ? "which one: create, list or revoke?"
                                                        : "unknown subcommand '",
                argc < 2 ? "" : argv[1], argc < 2 ? "" : "' (create, list or revoke)");
        token_usage(stderr);
        return 2;
    }
    char name[32];
    snprintf(name, sizeof name, "token %s", argv[1]);
    struct command cmd = {name, token_usage, {0}};
    client_options_init(&cmd.opt);
    const char *role = NULL, *tname = NULL, *idarg = NULL;
    long long id = 0;
    int rc, k;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[1], "create") && client_arg_value("--role", argc, argv, &i, &role)) {
            if (!one_of(role, roles))
                return usage_error(&cmd, "--role must be reader, writer, admin or agent%s", NULL);
        } else if (!strcmp(argv[1], "create") &&
                   client_arg_value("--name", argc, argv, &i, &tname)) {
            if (!tname || !*tname || strlen(tname) > 127)
                return usage_error(&cmd, "--name needs a name of 1..127 bytes%s", NULL);
        } else if ((k = common_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 0 && !strcmp(argv[1], "revoke") && !idarg) {
            idarg = argv[i];
        } else if (k == 0) {
            return usage_error(&cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!strcmp(argv[1], "create") && !role)
        return usage_error(&cmd, "--role is required (reader, writer, admin or agent)%s", NULL);
    if (!strcmp(argv[1], "revoke") && !idarg)
        return usage_error(&cmd, "revoke needs a token id%s", NULL);
    if (!strcmp(argv[1], "revoke") && parse_int(idarg, 1, INT64_MAX, &id) != 0)
        return usage_error(&cmd, "a token id is a positive integer, not '%s'", idarg);
    struct client *c = client_new(&cmd.opt, name);
    if (!c)
        return 1;
    if (!strcmp(argv[1], "create"))
        rc = token_create(&cmd, c, role, tname);
    else if (!strcmp(argv[1], "list"))
        rc = token_list(&cmd, c);
    else
        rc = token_revoke(&cmd, c, id);
    client_free(c);
    return rc ? rc : finish(name);
}
