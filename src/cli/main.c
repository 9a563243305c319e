/*
 * main.c — the sonde command-line tool: dispatches to one command group
 * per file (commands.h).  Local recording needs no server; `sonde run`
 * starts a program whose agent reports to sonded (cmd_run.c); the server
 * commands talk to sonded (cmd_server.c, cmd_settings.c, cmd_token.c,
 * cmd_task.c, cmd_capture.c, over command.c and client.c); `sonde
 * loadtest` runs the load generator here (cmd_loadtest.c).
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "sonde.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sonde COMMAND [ARGS]\n"
            "\n"
            "local commands (no server):\n"
            "  record [-F HZ] [--cpu|--wall] [-o FILE] [--format pprof|collapsed]\n"
            "         [--follow-fork] [--follow-exec] -- PROGRAM [ARGS...]\n"
            "                 run PROGRAM with the agent and write its profile when it exits\n"
            "  top [-n N] [--sample-index NAME] FILE\n"
            "                 print the top functions of a pprof file (self and total)\n"
            "  collapse [--sample-index NAME] FILE\n"
            "                 print a pprof file as collapsed stacks (flamegraph.pl input)\n"
            "  loadtest URL [-c USERS] [-d DURATION] [--rate R] [-m METHOD]\n"
            "           [-H \"Name: value\"]... [--body TEXT|--body-file F] [--timeout MS]\n"
            "           [--threads N] [--json]\n"
            "                 load http:// URL with USERS keep-alive connections (default 10)\n"
            "                 for DURATION (default 60s); print latency percentiles,\n"
            "                 requests/s, status codes and errors, like wrk\n"
            "  version        print the version\n"
            "  help           this text\n"
            "\n"
            "a program connected to sonded:\n"
            "  run [--server URL] [--app A] [--instance H] [--token T] [--frequency HZ]\n"
            "      [--types cpu|wall|cpu,wall] [--log FILE] -- PROGRAM [ARGS...]\n"
            "                 run PROGRAM with the agent registered with sonded: it profiles\n"
            "                 when asked (profile-now, triggers, default sampling)\n"
            "\n"
            "server commands (sonded; each takes --server URL, --token T, --json):\n"
            "  agents [--app A] [--instance H] [--status running|stale|stopped]\n"
            "                 the agents and their status\n"
            "  sessions [--app A] [--instance H] [--triggered-by T] [--since 1h] [--limit N]\n"
            "                 recent profiling sessions, newest first\n"
            "  get SESSION [-o FILE]\n"
            "                 download a session's pprof\n"
            "  top [-n N] [--type T] SESSION\n"
            "                 the top functions of a stored session\n"
            "  profile-now [--app A] [--duration S]\n"
            "                 profile the running agents (of app A) now\n"
            "  triggers [show|set|reset] [--app A] [--cpu on|off] [--cpu-threshold PCT] ...\n"
            "                 CPU and memory triggers, workspace-wide or per app\n"
            "  sampling [show|set|reset] [--app A] [--enabled on|off] [--window S] [--period S]\n"
            "                 default sampling, workspace-wide or per app\n"
            "  token create --role R [--name N] | token list | token revoke ID\n"
            "                 access tokens (admin)\n"
            "  task create --app A --interface I --duration 5m|10m|15m --threshold MS\n"
            "              [--frequency MS] [--max N]\n"
            "                 active profiling: snapshot the calls of I slower than MS\n"
            "  task list [--from T] [--to T] [--app A] [--state S]\n"
            "  task show|log|cancel ID | task captures ID [--sort FIELD] [--desc]\n"
            "                 tasks, their log, the slow calls they caught; stop one\n"
            "  capture show ID\n"
            "                 one caught call: its snapshots' offsets, states, top frames\n"
            "\n"
            "  server: --server or $SONDE_SERVER (default http://127.0.0.1:7070);\n"
            "  token: --token or $SONDE_TOKEN.  `sonde COMMAND --help` for a command's flags.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("sonde %s\n", SONDE_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "record"))
        return cmd_record(argc - 1, argv + 1);
    if (!strcmp(cmd, "top"))
        return cmd_top(argc - 1, argv + 1);
    if (!strcmp(cmd, "collapse"))
        return cmd_collapse(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "loadtest"))
        return cmd_loadtest(argc - 1, argv + 1);
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } server_cmds[] = {
        {"agents", cmd_agents},     {"sessions", cmd_sessions}, {"get", cmd_get},
        {"profile-now", cmd_profile_now}, {"triggers", cmd_triggers},
        {"sampling", cmd_sampling}, {"token", cmd_token},   {"task", cmd_task},
        {"capture", cmd_capture},
    };
    for (size_t i = 0; i < sizeof server_cmds / sizeof server_cmds[0]; i++)
        if (!strcmp(cmd, server_cmds[i].name))
            return server_cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sonde: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
