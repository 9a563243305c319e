/*
 * command.c — what the sonde commands that talk to sonded share
 * (command.h): the argument loop, one call and its answer, flag values,
 * tables and cell formatting.
 */
#include "cli/command.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* Running a command                                                   */

void command_init(struct command *cmd, const char *name, void (*usage)(FILE *f),
                  unsigned takes)
{
    *cmd = (struct command){.name = name, .usage = usage, .takes = takes};
    client_options_init(&cmd->opt);
}

int command_usage_error(const struct command *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "sonde %s: ", cmd->name);
    fprintf(stderr, fmt, arg ? arg : "");
    fputc('\n', stderr);
    cmd->usage(stderr);
    return 2;
}

/* --app / --instance: a name that is not empty.  1 taken, -1 a usage
 * error in *rc. */
static int name_value(const struct command *cmd, const char *value, const char *flag,
                      int *rc)
{
    if (value && *value)
        return 1;
    /* "--app needs an app name" */
    char msg[64];
    snprintf(msg, sizeof msg, "%s needs an %s name", flag, flag + 2);
    *rc = command_usage_error(cmd, "%s", msg);
    return -1;
}

int command_arg(struct command *cmd, int argc, char **argv, int *i, int *rc)
{
    const char *arg = argv[*i];
    if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
        cmd->usage(stdout);
        *rc = 0;
        return -1;
    }
    if ((cmd->takes & COMMAND_APP) && client_arg_value("--app", argc, argv, i, &cmd->app))
        return name_value(cmd, cmd->app, "--app", rc);
    if ((cmd->takes & COMMAND_INSTANCE) &&
        client_arg_value("--instance", argc, argv, i, &cmd->instance))
        return name_value(cmd, cmd->instance, "--instance", rc);
    int k = client_option(&cmd->opt, cmd->name, argc, argv, i);
    if (k < 0) {
        cmd->usage(stderr);
        *rc = 2;
        return -1;
    }
    if (k == 1)
        return 1;
    if (arg[0] == '-' && arg[1]) {
        *rc = command_usage_error(cmd, "unknown option '%s'", arg);
        return -1;
    }
    if (!(cmd->takes & COMMAND_POSITIONAL)) {
        *rc = command_usage_error(cmd, "unexpected argument '%s'", arg);
        return -1;
    }
    return 0;
}

int command_param(const struct command *cmd, char *path, const char *key, const char *value)
{
    if (value && client_path_param(path, CLIENT_MAX_PATH, key, value) != 0)
        return command_usage_error(cmd, "the value of %s is too long", key);
    return 0;
}

int command_call(struct client *c, const struct command *cmd, const char *method,
                 const char *path, json_t *body, json_t **out)
{
    if (client_call_json(c, method, path, body, out) != 0) {
        fprintf(stderr, "sonde %s: %s\n", cmd->name, client_errmsg(c));
        return 1;
    }
    return 0;
}

int command_run(const struct command *cmd, const char *method, const char *path, json_t *body,
                command_print_fn print, const void *ctx)
{
    struct client *c = client_new(&cmd->opt, cmd->name);
    json_t *ans = NULL;
    if (!c || command_call(c, cmd, method, path, body, &ans)) {
        client_free(c);
        return 1;
    }
    int rc = 0;
    if (cmd->opt.json) {
        command_print_raw(c);
    } else {
        rc = print(cmd, ans, ctx);
        if (rc == -ENOMEM)
            fprintf(stderr, "sonde %s: out of memory\n", cmd->name);
    }
    json_decref(ans);
    client_free(c);
    return rc ? 1 : command_finish(cmd->name);
}

void command_print_raw(struct client *c)
{
    size_t n;
    const char *body = client_body(c, &n);
    fwrite(body, 1, n, stdout);
    if (n == 0 || body[n - 1] != '\n')
        putchar('\n');
}

int command_finish(const char *name)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "sonde %s: cannot write the output: %s\n", name, strerror(errno));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Flag values                                                         */

int parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int parse_seconds(const char *s, long long min, long long max, long long *out)
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

/* Latest time parse_time gives: 9999-12-31 23:59:59.999 UTC, the
 * server's limit. */
#define TIME_MS_MAX 253402300799999LL

/* n decimal digits at *p into *v, advancing *p: 0, or -1. */
static int take_digits(const char **p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        x = x * 10 + (c - '0');
    }
    *p += n;
    *v = x;
    return 0;
}

/* "YYYY-MM-DD[( |T)HH:MM[:SS[.fff]]][Z|±HH:MM|±HHMM]" → ms; -1 if not. */
static int parse_date(const char *s, long long *out)
{
    struct tm tm = {0};
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    const char *p = s;
    if (take_digits(&p, 4, &y) || *p++ != '-' || take_digits(&p, 2, &mo) || *p++ != '-' ||
        take_digits(&p, 2, &d))
        return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (take_digits(&p, 2, &h) || *p++ != ':' || take_digits(&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (take_digits(&p, 2, &sec))
                return -1;
            if (*p == '.') { /* a fraction: its first three digits count */
                int k = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, k++)
                    if (k < 3)
                        ms = ms * 10 + (*p - '0');
                if (k == 0)
                    return -1;
                for (; k < 3; k++)
                    ms *= 10;
            }
        }
    }
    int zoned = 0, off = 0; /* off: the zone's minutes east of UTC */
    if (*p == 'Z' || *p == 'z') {
        zoned = 1;
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (take_digits(&p, 2, &oh))
            return -1;
        if (*p == ':')
            p++;
        if (take_digits(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
        zoned = 1;
        off = sign * (oh * 60 + om);
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    tm.tm_isdst = -1;
    time_t t = zoned ? timegm(&tm) : mktime(&tm);
    /* mktime and timegm carry an impossible day into the next month: a
     * date that moved was not a date (2024-02-30).  (time_t)-1 is an
     * error, or a second before 1970, which is refused below anyway. */
    if (t == (time_t)-1 || tm.tm_mday != d || tm.tm_mon != mo - 1)
        return -1;
    long long v = (long long)t * 1000 + ms - (long long)off * 60000;
    if (v < 0 || v > TIME_MS_MAX)
        return -1;
    *out = v;
    return 0;
}

int parse_time(const char *s, long long *out_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, ago;
    if (!s || !*s)
        return -1;
    if (!strcmp(s, "now")) {
        *out_ms = now;
        return 0;
    }
    if (parse_date(s, out_ms) == 0)
        return 0;
    /* A duration ago, the sign optional ("1h" as for --since). */
    if (parse_seconds(*s == '-' ? s + 1 : s, 0, now / 1000, &ago) != 0)
        return -1;
    *out_ms = now - ago * 1000;
    return 0;
}

int parse_onoff(const char *s, int *out)
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

int parse_one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (s && !strcmp(s, *words))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Output for people                                                   */

void table_row(struct table *t, const char *const *cells)
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

int table_print(struct table *t)
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

int table_list(json_t *list, const struct table_column *cols, size_t ncols)
{
    struct table t = {.cols = ncols};
    const char *cells[16];
    char bufs[16][48];
    for (size_t c = 0; c < ncols; c++)
        cells[c] = cols[c].heading;
    table_row(&t, cells);
    size_t i;
    json_t *obj;
    json_array_foreach(list, i, obj) {
        for (size_t c = 0; c < ncols; c++) {
            if (cols[c].fmt) {
                cols[c].fmt(json_object_get(obj, cols[c].key), bufs[c], sizeof bufs[c]);
                cells[c] = bufs[c];
            } else {
                cells[c] = fmt_string(obj, cols[c].key);
            }
        }
        table_row(&t, cells);
    }
    return table_print(&t);
}

int table_print_answer(const struct command *cmd, json_t *ans, const void *ctx)
{
    const struct table_of *t = ctx;
    (void)cmd;
    return table_list(json_object_get(ans, t->member), t->cols, t->ncols);
}

void fmt_time(json_t *ms, char *buf, size_t len)
{
    struct tm tm;
    time_t secs = (time_t)(json_integer_value(ms) / 1000);
    if (!json_is_integer(ms) || !localtime_r(&secs, &tm) ||
        !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, len, "-");
}

void fmt_seconds(long long s, char *buf, size_t len)
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

void fmt_duration(json_t *s, char *buf, size_t len)
{
    fmt_seconds(json_integer_value(s), buf, len);
}

void fmt_ago(json_t *ms, char *buf, size_t len)
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

void fmt_pct(json_t *v, char *buf, size_t len)
{
    if (json_is_number(v))
        snprintf(buf, len, "%.1f", json_number_value(v));
    else
        snprintf(buf, len, "-");
}

void fmt_int(json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(buf, len, "-");
}

void fmt_time_ms(json_t *ms, char *buf, size_t len)
{
    fmt_time(ms, buf, len);
    if (json_is_integer(ms) && strcmp(buf, "-") != 0) {
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, ".%03d", (int)(json_integer_value(ms) % 1000));
    }
}

void fmt_ms(json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT "ms", json_integer_value(v));
    else if (json_is_number(v))
        snprintf(buf, len, "%.1fms", json_number_value(v));
    else
        snprintf(buf, len, "-");
}

const char *fmt_string(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "-";
}

const char *fmt_text(json_t *obj, const char *key)
{
    const char *s = fmt_string(obj, key);
    return *s ? s : "-";
}
