/*
 * cmd_settings.c — `sonde triggers` and `sonde sampling`: show, set and
 * reset the settings documents people write for the agents (docs/api.md,
 * "Triggers", "Default sampling"), the workspace's or one app's override.
 *
 * Both commands are one piece of code over a description of their
 * document (struct setting_doc): its route, its flags (each with the
 * document field it sets and the range docs/api.md gives it) and its
 * table.  `set` sends only the fields given — the server lays them over
 * the settings in effect — and `reset` drops an app's override.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/command.h"
#include "commands.h"

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

/* What print_settings shows. */
struct settings_view {
    const struct setting_doc *doc;
    const char *app;
};

/* A settings document for people: whose it is, then its table. */
static int print_settings(const struct command *cmd, json_t *doc, const void *ctx)
{
    const struct settings_view *view = ctx;
    const struct setting_doc *d = view->doc;
    json_t *o = json_object_get(doc, "overridden");
    (void)cmd;
    if (view->app)
        printf("%s of app %s: %s\n", d->title, view->app,
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

/* Takes argv[*i] when it is one of d's flags, its value into body: 1
 * taken, 0 not one of them, -1 an error with the exit status in *rc. */
static int field_arg(const struct command *cmd, const struct setting_doc *d, json_t *body,
                     int argc, char **argv, int *i, int *rc)
{
    const char *v;
    size_t f = 0;
    while (f < d->nfields && !client_arg_value(d->fields[f].flag, argc, argv, i, &v))
        f++;
    if (f == d->nfields)
        return 0;
    const struct setting_field *fd = &d->fields[f];
    int on = 0;
    long long n = 0;
    int bad = fd->kind == FIELD_BOOL  ? parse_onoff(v, &on)
              : fd->kind == FIELD_INT ? parse_int(v, fd->min, fd->max, &n)
                                      : parse_seconds(v, fd->min, fd->max, &n);
    if (bad) {
        fprintf(stderr, "sonde %s: %s must be %s, not '%s'\n", cmd->name, fd->flag, fd->range,
                v ? v : "");
        d->usage(stderr);
        *rc = 2;
        return -1;
    }
    if (set_field(body, fd, fd->kind == FIELD_BOOL ? on : n) != 0) {
        fprintf(stderr, "sonde %s: out of memory\n", cmd->name);
        *rc = 1;
        return -1;
    }
    return 1;
}

/* DELETE of app's override; the exit status. */
static int reset_override(const struct command *cmd, const struct setting_doc *d,
                          const char *path)
{
    struct client *c = client_new(&cmd->opt, cmd->name);
    if (!c)
        return 1;
    int rc = 0;
    if (client_request(c, "DELETE", path, NULL, 0, CLIENT_MAX_JSON) != 0) {
        fprintf(stderr, "sonde %s: %s\n", cmd->name, client_errmsg(c));
        rc = 1;
    } else if (cmd->opt.json) {
        command_print_raw(c);
    } else {
        printf("removed the %s override of app %s: it follows the workspace's again\n", d->title,
               cmd->app);
    }
    client_free(c);
    return rc ? rc : command_finish(cmd->name);
}

static int settings_command(const struct setting_doc *d, int argc, char **argv)
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
    struct command cmd;
    command_init(&cmd, name, d->usage, COMMAND_APP);
    json_t *body = json_object();
    int rc = 0;
    if (!body) {
        fprintf(stderr, "sonde %s: out of memory\n", name);
        return 1;
    }
    for (int i = first; i < argc && !rc; i++) {
        if (what == SET && field_arg(&cmd, d, body, argc, argv, &i, &rc) != 0)
            continue; /* taken, or rc set */
        if (command_arg(&cmd, argc, argv, &i, &rc) < 0) {
            json_decref(body);
            return rc;
        }
    }
    if (!rc && what == SET && json_object_size(body) == 0)
        rc = command_usage_error(&cmd, "nothing to set: give at least one setting%s", NULL);
    if (!rc && what == RESET && !cmd.app)
        rc = command_usage_error(&cmd, "reset needs --app: the workspace settings have no "
                                       "default to return to; set them instead%s", NULL);
    char path[CLIENT_MAX_PATH];
    snprintf(path, sizeof path, "%s", d->route);
    if (!rc)
        rc = command_param(&cmd, path, "app", cmd.app);
    if (!rc && what == RESET)
        rc = reset_override(&cmd, d, path);
    else if (!rc)
        rc = command_run(&cmd, what == SET ? "PUT" : "GET", path, what == SET ? body : NULL,
                         print_settings, &(struct settings_view){d, cmd.app});
    json_decref(body);
    return rc;
}

int cmd_triggers(int argc, char **argv)
{
    return settings_command(&triggers_doc, argc, argv);
}

int cmd_sampling(int argc, char **argv)
{
    return settings_command(&sampling_doc, argc, argv);
}
