/*
 * cmd_token.c — `sonde token create|list|revoke`: the access tokens of
 * sonded (docs/api.md, "Tokens"; admin tokens only).  A new token's
 * secret is printed once, alone on stdout, so that
 * TOKEN=$(sonde token create ...) works; sonded keeps only its hash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli/command.h"
#include "commands.h"

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

/* ctx: the --name given, or NULL. */
static int print_created(const struct command *cmd, json_t *ans, const void *ctx)
{
    const char *tname = ctx;
    const char *secret = json_string_value(json_object_get(ans, "token"));
    char id[32];
    fmt_int(json_object_get(ans, "id"), id, sizeof id);
    /* The secret alone on stdout, so that TOKEN=$(sonde token create ...) works. */
    fprintf(stderr, "created token %s (role %s%s%s); its secret is shown only this once:\n", id,
            fmt_string(ans, "role"), tname ? ", name " : "", tname ? tname : "");
    printf("%s\n", secret ? secret : "-");
    if (!secret) {
        fprintf(stderr, "sonde %s: sonded's answer has no token\n", cmd->name);
        return -EBADMSG;
    }
    return 0;
}

static int token_create(const struct command *cmd, const char *role, const char *tname)
{
    json_t *body = json_pack("{ss}", "role", role);
    if (!body || (tname && json_object_set_new(body, "name", json_string(tname)) != 0)) {
        json_decref(body);
        fprintf(stderr, "sonde %s: out of memory or --name is not UTF-8\n", cmd->name);
        return 1;
    }
    int rc = command_run(cmd, "POST", "/api/v1/tokens", body, print_created, tname);
    json_decref(body);
    return rc;
}

static const struct table_column token_columns[] = {
    {"ID", "id", fmt_int},
    {"NAME", "name", NULL},
    {"ROLE", "role", NULL},
    {"CREATED", "created_ms", fmt_time},
    {"LAST-USED", "last_used_ms", fmt_ago},
    {"REVOKED", "revoked_ms", fmt_time},
};

static const struct table_of tokens_table = TABLE_OF("tokens", token_columns);

/* ctx: the id (long long *). */
static int print_revoked(const struct command *cmd, json_t *ans, const void *ctx)
{
    (void)cmd;
    (void)ans;
    printf("revoked token %lld\n", *(const long long *)ctx);
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
    if (argc < 2 || !parse_one_of(argv[1], subs)) {
        fprintf(stderr, "sonde token: %s%s%s\n", argc < 2 ? "which one: create, list or revoke?"
                                                        : "unknown subcommand '",
                argc < 2 ? "" : argv[1], argc < 2 ? "" : "' (create, list or revoke)");
        token_usage(stderr);
        return 2;
    }
    int create = !strcmp(argv[1], "create"), revoke = !strcmp(argv[1], "revoke");
    char name[32];
    snprintf(name, sizeof name, "token %s", argv[1]);
    struct command cmd;
    command_init(&cmd, name, token_usage, revoke ? COMMAND_POSITIONAL : 0);
    const char *role = NULL, *tname = NULL, *idarg = NULL;
    long long id = 0;
    int rc, k;
    for (int i = 2; i < argc; i++) {
        if (create && client_arg_value("--role", argc, argv, &i, &role)) {
            if (!parse_one_of(role, roles))
                return command_usage_error(&cmd, "--role must be reader, writer, admin or "
                                                 "agent%s", NULL);
        } else if (create && client_arg_value("--name", argc, argv, &i, &tname)) {
            if (!tname || !*tname || strlen(tname) > 127)
                return command_usage_error(&cmd, "--name needs a name of 1..127 bytes%s", NULL);
        } else if ((k = command_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 0 && !idarg) {
            idarg = argv[i];
        } else if (k == 0) {
            return command_usage_error(&cmd, "unexpected argument '%s'", argv[i]);
        }
    }
    if (create && !role)
        return command_usage_error(&cmd, "--role is required (reader, writer, admin or "
                                         "agent)%s", NULL);
    if (revoke && !idarg)
        return command_usage_error(&cmd, "revoke needs a token id%s", NULL);
    if (revoke && parse_int(idarg, 1, INT64_MAX, &id) != 0)
        return command_usage_error(&cmd, "a token id is a positive integer, not '%s'", idarg);
    if (create)
        return token_create(&cmd, role, tname);
    if (revoke) {
        char path[64];
        snprintf(path, sizeof path, "/api/v1/tokens/%lld", id);
        return command_run(&cmd, "DELETE", path, NULL, print_revoked, &id);
    }
    return command_run(&cmd, "GET", "/api/v1/tokens", NULL, table_print_answer, &tokens_table);
}
