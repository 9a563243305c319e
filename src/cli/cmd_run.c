/*
 * cmd_run.c — `sonde run`: runs a program as a connected agent.  Puts the
 * server settings into the environment (SONDE_SERVER, SONDE_APP,
 * SONDE_INSTANCE, SONDE_TOKEN, and the sampling settings asked for),
 * puts libsonde.so first in LD_PRELOAD, and execs the program in place:
 * the program keeps sonde's pid, terminal and signals, and its exit
 * status is the command's.
 *
 * Nothing is recorded locally.  The agent registers with sonded, waits
 * for work (Profile Now, triggers, default sampling) and profiles only
 * during sessions (docs/agent-protocol.md).  Every argument is checked
 * before the exec, so a typo is a usage error (exit 2) and never a
 * program that runs without its agent; the agent's own later complaints
 * (sonded unreachable, token refused) go to its log, --log FILE.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/command.h"
#include "commands.h"
#include "sonde.h"

static void run_usage(FILE *f)
{
    fprintf(f, "usage: sonde run [--server URL] [--app NAME] [--instance NAME] [--token TOKEN]\n"
               "                 [--frequency HZ] [--types cpu|wall|cpu,wall] [--log FILE]\n"
               "                 -- PROGRAM [ARGS...]\n"
               "  runs PROGRAM with the agent connected to sonded: it registers, and profiles\n"
               "  when asked (sonde profile-now, triggers, default sampling)\n"
               "  --server URL     sonded's address (default $SONDE_SERVER; one is required)\n"
               "  --app NAME       the app the agent reports as (default $SONDE_APP, else\n"
               "                   PROGRAM's file name)\n"
               "  --instance NAME  this instance (default $SONDE_INSTANCE, else the host name)\n"
               "  --token TOKEN    a token of role agent (default $SONDE_AGENT_TOKEN, else\n"
               "                   $SONDE_TOKEN)\n"
               "  --frequency HZ   samples per second per thread in sessions, 1..10000\n"
               "                   (default 100; -F HZ is the same)\n"
               "  --types T        cpu, wall or cpu,wall (default cpu)\n"
               "  --log FILE       the agent's log (default $SONDE_LOG, else none)\n"
               "  exit status: PROGRAM's; 2 usage error; 126/127 PROGRAM cannot be run\n");
}

/* The limits of the agent's settings: the sizes of sonde_config_t's
 * fields, less the NUL. */
#define FIELD_MAX(f) (sizeof(((sonde_config_t *)0)->f) - 1)

/* A value for the agent: 1..max bytes, no control characters.  0, or the
 * usage error (2) naming what (a flag or a variable). */
static int check_name(const struct command *cmd, const char *what, const char *v, size_t max)
{
    size_t n = strlen(v);
    char msg[160];
    if (n == 0 || n > max) {
        snprintf(msg, sizeof msg, "%s must be 1..%zu bytes", what, max);
        return command_usage_error(cmd, "%s", msg);
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            snprintf(msg, sizeof msg, "%s has control characters", what);
            return command_usage_error(cmd, "%s", msg);
        }
    return 0;
}

/* SONDE_SERVER from the environment: --server's values were checked by
 * client_option already; this one gets the same basic test. */
static int check_server(const struct command *cmd, const char *url)
{
    const char *host = !strncmp(url, "http://", 7)    ? url + 7
                       : !strncmp(url, "https://", 8) ? url + 8
                                                      : NULL;
    if (!host || !*host || *host == '/')
        return command_usage_error(cmd, "SONDE_SERVER must be a URL like http://HOST:PORT, not %s",
                                   url);
    return check_name(cmd, "the server URL", url, FIELD_MAX(server));
}

/* "cpu", "wall", "cpu,wall" or "wall,cpu". */
static int valid_types(const char *t)
{
    static const char *const ok[] = {"cpu", "wall", "cpu,wall", "wall,cpu", NULL};
    return t && parse_one_of(t, ok);
}

/* A sanitizer runtime must stay first in LD_PRELOAD (ASan refuses to
 * start otherwise); everything else comes after the agent. */
static int is_sanitizer_runtime(const char *entry, size_t n)
{
    const char *base = entry;
    for (size_t i = 0; i < n; i++)
        if (entry[i] == '/')
            base = entry + i + 1;
    return !strncmp(base, "libasan.", 8) || !strncmp(base, "libtsan.", 8) ||
           !strncmp(base, "libubsan.", 9) || !strncmp(base, "libclang_rt.", 12);
}

/* old LD_PRELOAD (NULL: none) with agent put first, after any sanitizer
 * runtime, and any other mention of agent dropped.  A new string, or NULL
 * when out of memory. */
static char *preload_with(const char *agent, const char *old)
{
    size_t cap = strlen(agent) + (old ? strlen(old) : 0) + 2;
    char *out = malloc(cap), *rest = malloc(cap);
    if (!out || !rest) {
        free(out);
        free(rest);
        return NULL;
    }
    size_t o = 0, r = 0, alen = strlen(agent);
    /* LD_PRELOAD separates with ':' or spaces. */
    for (const char *p = old ? old : ""; *p;) {
        size_t n = strcspn(p, ": \t");
        if (n > 0 && !(n == alen && !strncmp(p, agent, n))) {
            int front = is_sanitizer_runtime(p, n);
            char *dst = front ? out : rest;
            size_t *len = front ? &o : &r;
            if (*len)
                dst[(*len)++] = ':';
            memcpy(dst + *len, p, n);
            *len += n;
        }
        p += n;
        p += strspn(p, ": \t");
    }
    if (o)
        out[o++] = ':';
    memcpy(out + o, agent, alen);
    o += alen;
    if (r) {
        out[o++] = ':';
        memcpy(out + o, rest, r);
        o += r;
    }
    out[o] = '\0';
    free(rest);
    return out;
}

int cmd_run(int argc, char **argv)
{
    struct command cmd;
    command_init(&cmd, "run", run_usage, COMMAND_APP | COMMAND_INSTANCE | COMMAND_POSITIONAL);
    /* Unlike the other server commands, no default server: an agent
     * pointed at a guess would only fill its log with failures. */
    const char *env_server = getenv("SONDE_SERVER");
    const char *env_token = getenv("SONDE_AGENT_TOKEN");
    if (!env_token || !*env_token)
        env_token = getenv("SONDE_TOKEN");
    cmd.opt.server = env_server && *env_server ? env_server : NULL;
    cmd.opt.token = env_token && *env_token ? env_token : NULL;

    const char *freq = NULL, *types = NULL, *log = NULL;
    int first = argc, rc, k;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            first = i + 1;
            break;
        }
        if (client_arg_value("--frequency", argc, argv, &i, &freq) ||
            client_arg_value("-F", argc, argv, &i, &freq)) {
            long long hz;
            if (parse_int(freq, 1, 10000, &hz) != 0)
                return command_usage_error(&cmd, "--frequency needs samples per second, 1..10000%s",
                                           NULL);
        } else if (client_arg_value("--types", argc, argv, &i, &types)) {
            if (!valid_types(types))
                return command_usage_error(&cmd, "--types must be cpu, wall or cpu,wall%s", NULL);
        } else if (client_arg_value("--log", argc, argv, &i, &log)) {
            if (!log || !*log)
                return command_usage_error(&cmd, "--log needs a file name%s", NULL);
        } else if ((k = command_arg(&cmd, argc, argv, &i, &rc)) < 0) {
            return rc;
        } else if (k == 0) {
            first = i; /* PROGRAM: everything from here on is its own */
            break;
        }
    }
    if (cmd.opt.json)
        return command_usage_error(&cmd, "--json: sonde run prints nothing to format%s", NULL);
    if (first >= argc)
        return command_usage_error(&cmd, "no program given: sonde run [OPTIONS] -- PROGRAM "
                                         "[ARGS...]%s", NULL);
    char **prog = argv + first;
    if (!cmd.opt.server)
        return command_usage_error(&cmd, "no server: give --server URL or set SONDE_SERVER%s",
                                   NULL);
    if (check_server(&cmd, cmd.opt.server) != 0)
        return 2;

    /* The app: --app, $SONDE_APP, else the program's file name. */
    const char *app = cmd.app;
    if (!app) {
        const char *e = getenv("SONDE_APP");
        const char *slash = strrchr(prog[0], '/');
        app = e && *e ? e : slash ? slash + 1 : prog[0];
    }
    if (check_name(&cmd, cmd.app ? "--app" : "the app name", app, FIELD_MAX(app)) != 0)
        return 2;
    if (cmd.instance && check_name(&cmd, "--instance", cmd.instance, FIELD_MAX(instance)) != 0)
        return 2;
    if (cmd.opt.token && check_name(&cmd, "the token", cmd.opt.token, FIELD_MAX(token)) != 0)
        return 2;
    if (!cmd.opt.token)
        fprintf(stderr, "sonde run: warning: no agent token (--token, SONDE_AGENT_TOKEN or "
                        "SONDE_TOKEN): sonded will refuse the agent\n");

    char agent[PATH_MAX];
    if (record_find_agent(agent, sizeof agent) != 0) {
        fprintf(stderr, "sonde run: cannot find libsonde.so beside the sonde executable or in "
                        "../lib; set SONDE_LIB to its path\n");
        return 1;
    }
    /* The log must be writable now: the agent could not say so later. */
    char logabs[PATH_MAX];
    if (log) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "sonde run: cannot write the agent log %s: %s\n", log,
                    strerror(errno));
            return 1;
        }
        close(fd);
        if (!realpath(log, logabs)) /* absolute: PROGRAM may change directory */
            snprintf(logabs, sizeof logabs, "%s", log);
    }

    char *preload = preload_with(agent, getenv("LD_PRELOAD"));
    if (!preload) {
        fprintf(stderr, "sonde run: out of memory\n");
        return 1;
    }
    /* Connected mode: no local output, and no pid filter left over from
     * an enclosing `sonde record`. */
    int bad = setenv("LD_PRELOAD", preload, 1) | setenv("SONDE_SERVER", cmd.opt.server, 1) |
              setenv("SONDE_APP", app, 1) | unsetenv("SONDE_OUTPUT") |
              unsetenv("SONDE_ONLY_PID");
    free(preload);
    if (cmd.instance)
        bad |= setenv("SONDE_INSTANCE", cmd.instance, 1);
    if (cmd.opt.token)
        bad |= setenv("SONDE_TOKEN", cmd.opt.token, 1);
    if (freq)
        bad |= setenv("SONDE_FREQUENCY", freq, 1);
    if (types)
        bad |= setenv("SONDE_TYPES", types, 1);
    if (log)
        bad |= setenv("SONDE_LOG", logabs, 1);
    if (bad) {
        fprintf(stderr, "sonde run: cannot set the environment: %s\n", strerror(errno));
        return 1;
    }
    fflush(stdout);
    execvp(prog[0], prog);
    int err = errno;
    fprintf(stderr, "sonde run: cannot run %s: %s\n", prog[0], strerror(err));
    /* The shell's statuses: 127 not found, 126 found but not runnable. */
    return err == ENOENT || err == ENOTDIR ? 127 : 126;
}
