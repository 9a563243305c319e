/*
 * cmd_server.c — the sonde commands that read what agents reported and
 * ask for profiles (docs/api.md): agents, sessions, get, profile-now.
 * Their siblings: cmd_settings.c (triggers, sampling) and cmd_token.c
 * (token), all on command.h; `sonde top SESSION` lives with local top in
 * cmd_top.c.
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

#include "cli/command.h"
#include "commands.h"

/* ------------------------------------------------------------------ */
/* sonde agents                                                        */

static void agents_usage(FILE *f)
{
    fprintf(f, "usage: sonde agents [--app A] [--instance H] [--status running|stale|stopped]\n");
    client_options_usage(f, 1);
}

static const struct table_column agent_columns[] = {
    {"ID", "id", fmt_int},
    {"APP", "app", NULL},
    {"INSTANCE", "instance", NULL},
    {"PID", "pid", fmt_int},
    {"STATUS", "status", NULL},
    {"LAST-SEEN", "last_seen_ms", fmt_ago},
    {"CPU%", "cpu_pct", fmt_pct},
    {"MEM%", "mem_pct", fmt_pct},
};

static const struct table_of agents_table = TABLE_OF("agents", agent_columns);

int cmd_agents(int argc, char **argv)
{
    static const char *const statuses[] = {"running", "stale", "stopped", NULL};
    struct command cmd;
    command_init(&cmd, "agents", agents_usage, COMMAND_APP | COMMAND_INSTANCE);
    const char *status = NULL;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (client_arg_value("--status", argc, argv, &i, &status)) {
            if (!parse_one_of(status, statuses))
                return command_usage_error(&cmd, "--status must be running, stale or stopped%s",
                                           NULL);
        } else if (command_arg(&cmd, argc, argv, &i, &rc) < 0) {
            return rc;
        }
    }
    char path[CLIENT_MAX_PATH] = "/api/v1/agents";
    if ((rc = command_param(&cmd, path, "app", cmd.app)) ||
        (rc = command_param(&cmd, path, "instance", cmd.instance)) ||
        (rc = command_param(&cmd, path, "status", status)))
        return rc;
    return command_run(&cmd, "GET", path, NULL, table_print_answer, &agents_table);
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

static const struct table_column session_columns[] = {
    {"ID", "id", fmt_int},
    {"TRIGGERED-BY", "triggered_by", NULL},
    {"APP", "app", NULL},
    {"INSTANCE", "instance", NULL},
    {"STARTED", "start_ms", fmt_time},
    {"DURATION", "duration_s", fmt_duration},
    {"TRACES", "traces", fmt_int},
    {"CPU%", "cpu_pct", fmt_pct},
    {"MEM%", "mem_pct", fmt_pct},
    {"STATE", "state", NULL},
};

static const struct table_of sessions_table = TABLE_OF("sessions", session_columns);

/* The table, then where the page sits when there are more. */
static int print_sessions(const struct command *cmd, json_t *ans, const void *ctx)
{
    json_t *list = json_object_get(ans, "sessions");
    int rc = table_print_answer(cmd, ans, ctx);
    json_int_t total = json_integer_value(json_object_get(ans, "total"));
    json_int_t off = json_integer_value(json_object_get(ans, "offset"));
    if (!rc && total > off + (json_int_t)json_array_size(list))
        printf("(%zu of %" JSON_INTEGER_FORMAT " sessions from offset %" JSON_INTEGER_FORMAT
               "; see --limit and --offset)\n",
               json_array_size(list), total, off);
    return rc;
}

int cmd_sessions(int argc, char **argv)
{
    struct command cmd;
    command_init(&cmd, "sessions", sessions_usage, COMMAND_APP | COMMAND_INSTANCE);
    const char *by = NULL, *v;
    const char *limit = NULL, *offset = NULL;
    char from[32] = "";
    long long n;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (client_arg_value("--triggered-by", argc, argv, &i, &by)) {
            if (!parse_one_of(by, triggers_by))
                return command_usage_error(&cmd, "--triggered-by must be profile-now, "
                                                 "cpu-trigger, memory-trigger, default-sampling "
                                                 "or load-test%s", NULL);
        } else if (client_arg_value("--since", argc, argv, &i, &v)) {
            /* Ten years back at most: older is before any session. */
            if (parse_seconds(v, 1, 3650LL * 86400, &n) != 0)
                return command_usage_error(
                    &cmd, "--since needs a duration like 30m, 1h or 2d, not '%s'", v);
            snprintf(from, sizeof from, "%lld", (long long)time(NULL) * 1000 - n * 1000);
        } else if (client_arg_value("--limit", argc, argv, &i, &limit)) {
            if (parse_int(limit, 1, 1000, &n) != 0)
                return command_usage_error(&cmd, "--limit must be a count in 1..1000, not '%s'",
                                           limit);
        } else if (client_arg_value("--offset", argc, argv, &i, &offset)) {
            if (parse_int(offset, 0, INT_MAX, &n) != 0)
                return command_usage_error(&cmd, "--offset must be a count >= 0, not '%s'",
                                           offset);
        } else if (command_arg(&cmd, argc, argv, &i, &rc) < 0) {
            return rc;
        }
    }
    char path[CLIENT_MAX_PATH] = "/api/v1/sessions";
    if ((rc = command_param(&cmd, path, "app", cmd.app)) ||
        (rc = command_param(&cmd, path, "instance", cmd.instance)) ||
        (rc = command_param(&cmd, path, "triggered_by", by)) ||
        (rc = command_param(&cmd, path, "from", *from ? from : NULL)) ||
        (rc = command_param(&cmd, path, "limit", limit)) ||
        (rc = command_param(&cmd, path, "offset", offset)))
        return rc;
    return command_run(&cmd, "GET", path, NULL, print_sessions, &sessions_table);
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
    struct command cmd;
    command_init(&cmd, "get", get_usage, COMMAND_POSITIONAL);
    const char *session = NULL, *out = NULL;
    long long id;
    int rc, k;
    for (int i = 1; i < argc; i++) {
        if (client_arg_value("-o", argc, argv, &i, &out) ||
            client_arg_value("--output", argc, argv, &i, &out)) {
            if (!out || !*out)
                return command_usage_error(&cmd, "-o needs a file name%s", NULL);
        } else if ((k = command_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 1) {
            continue;
        } else if (session) {
            return command_usage_error(&cmd, "one session only, not also '%s'", argv[i]);
        } else {
            session = argv[i];
        }
    }
    if (!session)
        return command_usage_error(&cmd, "no session id given%s", NULL);
    if (parse_int(session, 1, INT64_MAX, &id) != 0)
        return command_usage_error(&cmd, "a session id is a positive integer, not '%s'", session);
    if (cmd.opt.json)
        return command_usage_error(&cmd, "--json does not apply: the profile is pprof%s", NULL);
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

static int print_profile_now(const struct command *cmd, json_t *ans, const void *ctx)
{
    (void)cmd;
    (void)ctx;
    char id[32], dur[32];
    fmt_int(json_object_get(ans, "id"), id, sizeof id);
    fmt_duration(json_object_get(ans, "duration_s"), dur, sizeof dur);
    json_int_t agents = json_integer_value(json_object_get(ans, "agents"));
    const char *a = json_string_value(json_object_get(ans, "app"));
    printf("profile-now request %s: %s%s, %s; %" JSON_INTEGER_FORMAT " running agent%s matched\n",
           id, a ? "app " : "every app", a ? a : "", dur, agents, agents == 1 ? "" : "s");
    return 0;
}

int cmd_profile_now(int argc, char **argv)
{
    struct command cmd;
    command_init(&cmd, "profile-now", profile_now_usage, COMMAND_APP);
    const char *v;
    long long duration = -1;
    int rc;
    for (int i = 1; i < argc; i++) {
        if (client_arg_value("--duration", argc, argv, &i, &v)) {
            if (parse_seconds(v, 1, 3600, &duration) != 0)
                return command_usage_error(&cmd, "--duration must be 1..3600 seconds (90, 2m, "
                                                 "1h), not '%s'", v);
        } else if (command_arg(&cmd, argc, argv, &i, &rc) < 0) {
            return rc;
        }
    }
    json_t *body = json_object();
    if (!body || (cmd.app && json_object_set_new(body, "app", json_string(cmd.app))) ||
        (duration > 0 && json_object_set_new(body, "duration_s", json_integer(duration)))) {
        json_decref(body);
        fprintf(stderr, "sonde profile-now: out of memory or --app is not UTF-8\n");
        return 1;
    }
    rc = command_run(&cmd, "POST", "/api/v1/profile-now", body, print_profile_now, NULL);
    json_decref(body);
    return rc;
}
