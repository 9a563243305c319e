/*
 * cmd_task.c — `sonde task create|list|show|log|captures|cancel`: active
 * profiling's slow-call tasks in sonded (docs/api.md, "Active
 * profiling").  A task watches one interface of one app for 5, 10 or 15
 * minutes; each call of it still running after the threshold is
 * snapshotted every frequency ms until it ends, for at most max calls.
 * One caught call is a capture, shown by `sonde capture show`
 * (cmd_capture.c).
 *
 * On command.h like its siblings (cmd_server.c, cmd_settings.c,
 * cmd_token.c): the common options (--server, --token, --json), flag
 * values checked against the ranges of docs/api.md before anything is
 * sent (a typo is exit 2), with the words of the server's own refusals;
 * the server checks again, and its refusal is printed with its status
 * (exit 1).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/command.h"
#include "commands.h"

/* The ranges of POST /api/v1/tasks. */
#define APP_MAX 127
#define INTERFACE_MAX 95
#define THRESHOLD_MIN 50
#define THRESHOLD_MAX 30000
#define FREQUENCY_MIN 5
#define FREQUENCY_MAX 1000
#define MAX_SAMPLES_MAX 100

static const char *const task_states[] = {"running", "limit-reached", "expired", "cancelled",
                                          NULL};
static const char *const capture_sorts[] = {"slot",    "start_ms", "total_ms", "response_code",
                                            "trace_id", "peer",    "interface", NULL};

static void task_usage(FILE *f)
{
    fprintf(f,
            "usage: sonde task create --app A --interface I --duration 5m|10m|15m --threshold MS\n"
            "                         [--frequency MS] [--max N]\n"
            "       sonde task list [--from T] [--to T] [--app A] [--state S] [--limit N]\n"
            "       sonde task show ID\n"
            "       sonde task log ID\n"
            "       sonde task captures ID [--sort FIELD] [--desc]\n"
            "       sonde task cancel ID\n"
            "  create    watch the calls of interface I (a span name, e.g. 'GET /slow') of app\n"
            "            A for 5, 10 or 15 minutes: a call still running after --threshold\n"
            "            ms (50..30000) has its thread snapshotted every --frequency ms\n"
            "            (5..1000, default 100) until it ends, for at most --max calls in\n"
            "            all (1..100, default 10)\n"
            "  list      tasks that ran between --from and --to, newest first; T is now,\n"
            "            a time ago (30m, -1h, 2d), a date (2024-05-01, 2024-05-01 12:00,\n"
            "            local) or RFC 3339 (2024-05-01T12:00:00Z);\n"
            "            --state running, limit-reached, expired or cancelled;\n"
            "            --limit 1..1000 (default 100)\n"
            "  show      a task's parameters, state and agents\n"
            "  log       what happened to a task, in order\n"
            "  captures  the calls a task caught; --sort slot (default), start_ms, total_ms,\n"
            "            response_code, trace_id, peer or interface; --desc: reversed\n"
            "  cancel    stop a running task\n"
            "  create and cancel need a writer token.  `sonde capture show ID`: one call's\n"
            "  snapshots.\n");
    client_options_usage(f, 1);
}

/* ------------------------------------------------------------------ */
/* Cells                                                               */

/* "5m" of duration_min. */
static void fmt_minutes(json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT "m", json_integer_value(v));
    else
        snprintf(buf, len, "-");
}

/* "admin (token 1)", "token 1". */
static void fmt_creator(json_t *c, char *buf, size_t len)
{
    const char *name = json_string_value(json_object_get(c, "name"));
    json_t *id = json_object_get(c, "token_id");
    if (!json_is_integer(id))
        snprintf(buf, len, "%s", name ? name : "-");
    else if (name && *name)
        snprintf(buf, len, "%s (token %" JSON_INTEGER_FORMAT ")", name, json_integer_value(id));
    else
        snprintf(buf, len, "token %" JSON_INTEGER_FORMAT, json_integer_value(id));
}

/* The string member key of obj for a line of text: control characters
 * (from the server: they must not drive the terminal) as '?', cut to len. */
static const char *clean(json_t *obj, const char *key, char *buf, size_t len)
{
    snprintf(buf, len, "%s", fmt_text(obj, key));
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            *p = '?';
    return buf;
}

/* ------------------------------------------------------------------ */
/* sonde task create                                                   */

/* --duration: 5, 10 or 15, as 5, 5m or 5min; -1 when not. */
static long long duration_minutes(const char *s)
{
    char num[8];
    size_t n = 0;
    while (s && s[n] >= '0' && s[n] <= '9' && n < sizeof num - 1)
        n++;
    if (!s || n == 0 || n >= sizeof num - 1 ||
        (strcmp(s + n, "") && strcmp(s + n, "m") && strcmp(s + n, "min")))
        return -1;
    memcpy(num, s, n);
    num[n] = '\0';
    long long v;
    if (parse_int(num, 5, 15, &v) != 0 || v % 5 != 0)
        return -1;
    return v;
}

/* --app, --interface: 1..max bytes of text without ASCII control
 * characters (UTF-8 is checked by jansson when the body is built; the
 * server, which also refuses C1 controls, has the last word).  0, or the
 * usage error's exit status after saying which rule s breaks. */
static int name_arg(const struct command *cmd, const char *flag, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be a string of 1 to %zu bytes", flag, max);
        return command_usage_error(cmd, "%s", msg);
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < ' ' || s[i] == 0x7f)
            return command_usage_error(cmd, "%s must be printable text (UTF-8, no control "
                                            "characters)", flag);
    return 0;
}

static int print_created(const struct command *cmd, json_t *t, const void *ctx)
{
    char id[32], ends[48], th[32], fr[32], dur[16], app[APP_MAX + 1], in[INTERFACE_MAX + 1];
    (void)cmd;
    (void)ctx;
    fmt_int(json_object_get(t, "id"), id, sizeof id);
    fmt_time(json_object_get(t, "ends_ms"), ends, sizeof ends);
    fmt_ms(json_object_get(t, "threshold_ms"), th, sizeof th);
    fmt_ms(json_object_get(t, "frequency_ms"), fr, sizeof fr);
    fmt_minutes(json_object_get(t, "duration_min"), dur, sizeof dur);
    json_int_t max = json_integer_value(json_object_get(t, "max_samples"));
    printf("created task %s: %s of app %s\n"
           "  calls slower than %s, snapshots every %s, at most %" JSON_INTEGER_FORMAT
           " call%s, for %s (until %s)\n",
           id, clean(t, "interface", in, sizeof in), clean(t, "app", app, sizeof app), th, fr,
           max, max == 1 ? "" : "s", dur, ends);
    return 0;
}

static int task_create(struct command *cmd, int argc, char **argv)
{
    const char *iface = NULL, *v;
    long long duration = -1, threshold = -1, frequency = -1, max = -1;
    int rc;
    for (int i = 2; i < argc; i++) {
        if (client_arg_value("--interface", argc, argv, &i, &iface)) {
            if ((rc = name_arg(cmd, "--interface", iface, INTERFACE_MAX)))
                return rc;
        } else if (client_arg_value("--duration", argc, argv, &i, &v)) {
            if ((duration = duration_minutes(v)) < 0)
                return command_usage_error(cmd, "--duration must be 5, 10 or 15 (minutes: 5m, "
                                                "10m or 15m), not '%s'", v);
        } else if (client_arg_value("--threshold", argc, argv, &i, &v)) {
            if (parse_int(v, THRESHOLD_MIN, THRESHOLD_MAX, &threshold) != 0)
                return command_usage_error(cmd, "--threshold must be an integer from 50 to "
                                                "30000 (ms), not '%s'", v);
        } else if (client_arg_value("--frequency", argc, argv, &i, &v)) {
            if (parse_int(v, FREQUENCY_MIN, FREQUENCY_MAX, &frequency) != 0)
                return command_usage_error(cmd, "--frequency must be an integer from 5 to 1000 "
                                                "(ms), not '%s'", v);
        } else if (client_arg_value("--max", argc, argv, &i, &v)) {
            if (parse_int(v, 1, MAX_SAMPLES_MAX, &max) != 0)
                return command_usage_error(cmd, "--max must be an integer from 1 to 100, not "
                                                "'%s'", v);
        } else if (command_arg(cmd, argc, argv, &i, &rc) < 0) {
            return rc;
        }
    }
    const char *missing = !cmd->app        ? "--app A"
                          : !iface           ? "--interface I"
                          : duration < 0     ? "--duration 5m|10m|15m"
                          : threshold < 0    ? "--threshold MS"
                                             : NULL;
    if (missing)
        return command_usage_error(cmd, "%s is required", missing);
    if ((rc = name_arg(cmd, "--app", cmd->app, APP_MAX)))
        return rc;
    /* json_pack refuses a string that is not UTF-8. */
    json_t *body = json_pack("{s:s, s:s, s:I, s:I}", "app", cmd->app, "interface", iface,
                             "duration_min", (json_int_t)duration, "threshold_ms",
                             (json_int_t)threshold);
    if (!body ||
        (frequency > 0 && json_object_set_new(body, "frequency_ms", json_integer(frequency))) ||
        (max > 0 && json_object_set_new(body, "max_samples", json_integer(max)))) {
        json_decref(body);
        fprintf(stderr, "sonde %s: out of memory, or --app or --interface is not UTF-8\n",
                cmd->name);
        return 1;
    }
    rc = command_run(cmd, "POST", "/api/v1/tasks", body, print_created, NULL);
    json_decref(body);
    return rc;
}

/* ------------------------------------------------------------------ */
/* sonde task list                                                     */

/* One row of the task table. */
static void task_row(struct table *tab, json_t *t)
{
    char id[32], dur[16], th[32], fr[32], caps[48], created[48], end[48];
    fmt_int(json_object_get(t, "id"), id, sizeof id);
    fmt_minutes(json_object_get(t, "duration_min"), dur, sizeof dur);
    fmt_ms(json_object_get(t, "threshold_ms"), th, sizeof th);
    fmt_ms(json_object_get(t, "frequency_ms"), fr, sizeof fr);
    snprintf(caps, sizeof caps, "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(t, "captures")),
             json_integer_value(json_object_get(t, "max_samples")));
    fmt_time(json_object_get(t, "created_ms"), created, sizeof created);
    json_t *ended = json_object_get(t, "ended_ms");
    fmt_time(json_is_integer(ended) ? ended : json_object_get(t, "ends_ms"), end, sizeof end);
    table_row(tab, (const char *[]){id, fmt_text(t, "app"), fmt_text(t, "interface"),
                                    fmt_text(t, "state"), dur, th, fr, caps, created, end});
}

static int print_tasks(const struct command *cmd, json_t *ans, const void *ctx)
{
    (void)cmd;
    (void)ctx;
    struct table tab = {.cols = 10};
    table_row(&tab, (const char *[]){"ID", "APP", "INTERFACE", "STATE", "DURATION", "THRESHOLD",
                                     "FREQUENCY", "CAPTURES", "CREATED", "END"});
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(ans, "tasks"), i, t)
        task_row(&tab, t);
    return table_print(&tab);
}

/* --from / --to: 0 with *ms, or 1 with the usage error's status in *rc. */
static int time_arg(const struct command *cmd, const char *flag, const char *v, long long *ms,
                    int *rc)
{
    if (parse_time(v, ms) == 0)
        return 0;
    fprintf(stderr, "sonde %s: %s needs a time like now, -1h, 2024-05-01 or "
                    "2024-05-01T12:00:00Z, not '%s'\n", cmd->name, flag, v ? v : "");
    cmd->usage(stderr);
    *rc = 2;
    return 1;
}

static int task_list(struct command *cmd, int argc, char **argv)
{
    const char *state = NULL, *limit = NULL, *v;
    long long from = -1, to = -1, n;
    int rc;
    for (int i = 2; i < argc; i++) {
        if (client_arg_value("--from", argc, argv, &i, &v)) {
            if (time_arg(cmd, "--from", v, &from, &rc))
                return rc;
        } else if (client_arg_value("--to", argc, argv, &i, &v)) {
            if (time_arg(cmd, "--to", v, &to, &rc))
                return rc;
        } else if (client_arg_value("--state", argc, argv, &i, &state)) {
            if (!parse_one_of(state, task_states))
                return command_usage_error(cmd, "--state must be running, limit-reached, "
                                                "expired or cancelled%s", NULL);
        } else if (client_arg_value("--limit", argc, argv, &i, &limit)) {
            if (parse_int(limit, 1, 1000, &n) != 0)
                return command_usage_error(cmd, "--limit must be a count in 1..1000, not '%s'",
                                           limit);
        } else if (command_arg(cmd, argc, argv, &i, &rc) < 0) {
            return rc;
        }
    }
    if (from >= 0 && to >= 0 && from >= to)
        return command_usage_error(cmd, "--from must be earlier than --to%s", NULL);
    char path[CLIENT_MAX_PATH] = "/api/v1/tasks", fs[32], ts[32];
    snprintf(fs, sizeof fs, "%lld", from);
    snprintf(ts, sizeof ts, "%lld", to);
    if ((rc = command_param(cmd, path, "from", from >= 0 ? fs : NULL)) ||
        (rc = command_param(cmd, path, "to", to >= 0 ? ts : NULL)) ||
        (rc = command_param(cmd, path, "app", cmd->app)) ||
        (rc = command_param(cmd, path, "state", state)) ||
        (rc = command_param(cmd, path, "limit", limit)))
        return rc;
    return command_run(cmd, "GET", path, NULL, print_tasks, NULL);
}

/* ------------------------------------------------------------------ */
/* sonde task show, log, captures, cancel                              */

static int print_task(const struct command *cmd, json_t *t, const void *ctx)
{
    char v[16][64];
    (void)cmd;
    (void)ctx;
    fmt_int(json_object_get(t, "id"), v[0], sizeof v[0]);
    fmt_minutes(json_object_get(t, "duration_min"), v[1], sizeof v[1]);
    fmt_ms(json_object_get(t, "threshold_ms"), v[2], sizeof v[2]);
    fmt_ms(json_object_get(t, "frequency_ms"), v[3], sizeof v[3]);
    fmt_int(json_object_get(t, "max_samples"), v[4], sizeof v[4]);
    fmt_int(json_object_get(t, "captures"), v[5], sizeof v[5]);
    fmt_creator(json_object_get(t, "creator"), v[6], sizeof v[6]);
    fmt_time(json_object_get(t, "created_ms"), v[7], sizeof v[7]);
    fmt_time(json_object_get(t, "started_ms"), v[8], sizeof v[8]);
    fmt_time(json_object_get(t, "ends_ms"), v[9], sizeof v[9]);
    fmt_time(json_object_get(t, "ended_ms"), v[10], sizeof v[10]);
    struct table kv = {.cols = 2};
    table_row(&kv, (const char *[]){"task", v[0]});
    table_row(&kv, (const char *[]){"app", fmt_text(t, "app")});
    table_row(&kv, (const char *[]){"interface", fmt_text(t, "interface")});
    table_row(&kv, (const char *[]){"state", fmt_text(t, "state")});
    table_row(&kv, (const char *[]){"duration", v[1]});
    table_row(&kv, (const char *[]){"threshold", v[2]});
    table_row(&kv, (const char *[]){"frequency", v[3]});
    table_row(&kv, (const char *[]){"max calls", v[4]});
    table_row(&kv, (const char *[]){"captures", v[5]});
    table_row(&kv, (const char *[]){"creator", v[6]});
    table_row(&kv, (const char *[]){"created", v[7]});
    table_row(&kv, (const char *[]){"started", v[8]});
    table_row(&kv, (const char *[]){"ends", v[9]});
    table_row(&kv, (const char *[]){"ended", v[10]});
    int rc = table_print(&kv);

    json_t *agents = json_object_get(t, "agents");
    printf("\n");
    if (json_array_size(agents) == 0) {
        printf("no agent has received the task yet\n");
        return rc;
    }
    struct table tab = {.cols = 7};
    table_row(&tab, (const char *[]){"AGENT", "INSTANCE", "PID", "DELIVERED", "STARTED",
                                     "STOPPED", "CAPTURES"});
    size_t i;
    json_t *a;
    json_array_foreach(agents, i, a) {
        fmt_int(json_object_get(a, "agent_id"), v[0], sizeof v[0]);
        fmt_int(json_object_get(a, "pid"), v[1], sizeof v[1]);
        fmt_time(json_object_get(a, "delivered_ms"), v[2], sizeof v[2]);
        fmt_time(json_object_get(a, "started_ms"), v[3], sizeof v[3]);
        fmt_time(json_object_get(a, "stopped_ms"), v[4], sizeof v[4]);
        fmt_int(json_object_get(a, "captures"), v[5], sizeof v[5]);
        table_row(&tab, (const char *[]){v[0], fmt_text(a, "instance"), v[1], v[2], v[3], v[4],
                                         v[5]});
    }
    int rc2 = table_print(&tab);
    return rc ? rc : rc2;
}

static int print_log(const struct command *cmd, json_t *ans, const void *ctx)
{
    (void)cmd;
    (void)ctx;
    struct table tab = {.cols = 6};
    table_row(&tab, (const char *[]){"TIME", "EVENT", "AGENT", "INSTANCE", "PID", "MESSAGE"});
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ans, "logs"), i, e) {
        char ts[64], agent[32], pid[32];
        fmt_time_ms(json_object_get(e, "ts_ms"), ts, sizeof ts);
        fmt_int(json_object_get(e, "agent_id"), agent, sizeof agent);
        fmt_int(json_object_get(e, "pid"), pid, sizeof pid);
        table_row(&tab, (const char *[]){ts, fmt_text(e, "event"), agent,
                                         fmt_text(e, "instance"), pid,
                                         fmt_text(e, "message")});
    }
    return table_print(&tab);
}

static int print_captures(const struct command *cmd, json_t *ans, const void *ctx)
{
    (void)cmd;
    (void)ctx;
    struct table tab = {.cols = 11};
    table_row(&tab, (const char *[]){"ID", "SLOT", "TRACE-ID", "STARTED", "INTERFACE", "CODE",
                                     "PEER", "TIME", "SNAPSHOTS", "INSTANCE", "STATE"});
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(ans, "captures"), i, c) {
        char id[32], slot[32], start[64], code[32], total[32], snaps[32];
        fmt_int(json_object_get(c, "id"), id, sizeof id);
        fmt_int(json_object_get(c, "slot"), slot, sizeof slot);
        fmt_time_ms(json_object_get(c, "start_ms"), start, sizeof start);
        fmt_int(json_object_get(c, "response_code"), code, sizeof code);
        fmt_ms(json_object_get(c, "total_ms"), total, sizeof total);
        fmt_int(json_object_get(c, "snapshots"), snaps, sizeof snaps);
        table_row(&tab, (const char *[]){id, slot, fmt_text(c, "trace_id"), start,
                                         fmt_text(c, "interface"), code, fmt_text(c, "peer"),
                                         total, snaps, fmt_text(c, "instance"),
                                         fmt_text(c, "state")});
    }
    int rc = table_print(&tab);
    if (!rc && json_array_size(json_object_get(ans, "captures")) > 0)
        printf("(`sonde capture show ID` for a capture's snapshots)\n");
    return rc;
}

static int print_cancelled(const struct command *cmd, json_t *t, const void *ctx)
{
    char id[32], caps[32], app[APP_MAX + 1], in[INTERFACE_MAX + 1];
    (void)cmd;
    (void)ctx;
    fmt_int(json_object_get(t, "id"), id, sizeof id);
    fmt_int(json_object_get(t, "captures"), caps, sizeof caps);
    printf("cancelled task %s (%s of app %s): %s capture%s\n", id,
           clean(t, "interface", in, sizeof in), clean(t, "app", app, sizeof app), caps,
           strcmp(caps, "1") ? "s" : "");
    return 0;
}

enum task_sub { SUB_SHOW, SUB_LOG, SUB_CAPTURES, SUB_CANCEL };

/* show, log, captures and cancel: one task id, and for captures --sort
 * and --desc. */
static int task_by_id(struct command *cmd, enum task_sub sub, int argc, char **argv)
{
    const char *idarg = NULL, *sort = NULL;
    int desc = 0, rc, k;
    long long id;
    for (int i = 2; i < argc; i++) {
        if (sub == SUB_CAPTURES && client_arg_value("--sort", argc, argv, &i, &sort)) {
            if (!parse_one_of(sort, capture_sorts))
                return command_usage_error(cmd, "--sort must be slot, start_ms, total_ms, "
                                                "response_code, trace_id, peer or interface%s",
                                           NULL);
        } else if (sub == SUB_CAPTURES && !strcmp(argv[i], "--desc")) {
            desc = 1;
        } else if ((k = command_arg(cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 0 && !idarg) {
            idarg = argv[i];
        } else if (k == 0) {
            return command_usage_error(cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!idarg)
        return command_usage_error(cmd, "no task id given%s", NULL);
    if (parse_int(idarg, 1, INT64_MAX, &id) != 0)
        return command_usage_error(cmd, "a task id is a positive integer, not '%s'", idarg);
    char path[CLIENT_MAX_PATH];
    static const char *const suffix[] = {"", "/logs", "/captures", "/cancel"};
    snprintf(path, sizeof path, "/api/v1/tasks/%lld%s", id, suffix[sub]);
    if ((rc = command_param(cmd, path, "sort", sort)) ||
        (rc = command_param(cmd, path, "order", desc ? "desc" : NULL)))
        return rc;
    switch (sub) {
    case SUB_SHOW:
        return command_run(cmd, "GET", path, NULL, print_task, NULL);
    case SUB_LOG:
        return command_run(cmd, "GET", path, NULL, print_log, NULL);
    case SUB_CAPTURES:
        return command_run(cmd, "GET", path, NULL, print_captures, NULL);
    case SUB_CANCEL:
        break;
    }
    /* An empty object: the route takes no body or {}. */
    json_t *body = json_object();
    if (!body) {
        fprintf(stderr, "sonde %s: out of memory\n", cmd->name);
        return 1;
    }
    rc = command_run(cmd, "POST", path, body, print_cancelled, NULL);
    json_decref(body);
    return rc;
}

int cmd_task(int argc, char **argv)
{
    static const char *const subs[] = {"create", "list", "show", "log", "captures", "cancel",
                                       NULL};
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        task_usage(stdout);
        return 0;
    }
    if (argc < 2 || !parse_one_of(argv[1], subs)) {
        if (argc < 2)
            fprintf(stderr, "sonde task: which one: create, list, show, log, captures or "
                            "cancel?\n");
        else
            fprintf(stderr, "sonde task: unknown subcommand '%s' (create, list, show, log, "
                            "captures or cancel)\n", argv[1]);
        task_usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    char name[32];
    snprintf(name, sizeof name, "task %s", sub);
    struct command cmd;
    if (!strcmp(sub, "create")) {
        command_init(&cmd, name, task_usage, COMMAND_APP);
        return task_create(&cmd, argc, argv);
    }
    if (!strcmp(sub, "list")) {
        command_init(&cmd, name, task_usage, COMMAND_APP);
        return task_list(&cmd, argc, argv);
    }
    command_init(&cmd, name, task_usage, COMMAND_POSITIONAL);
    enum task_sub s = !strcmp(sub, "show")       ? SUB_SHOW
                      : !strcmp(sub, "log")      ? SUB_LOG
                      : !strcmp(sub, "captures") ? SUB_CAPTURES
                                                 : SUB_CANCEL;
    return task_by_id(&cmd, s, argc, argv);
}
