/*
 * main.c — the sonde command-line tool: dispatches to one command group
 * per file (commands.h).  Local recording needs no server.
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
            "commands:\n"
            "  record [-F HZ] [--cpu|--wall] [-o FILE] [--format pprof|collapsed]\n"
            "         [--follow-fork] [--follow-exec] -- PROGRAM [ARGS...]\n"
            "                 run PROGRAM with the agent and write its profile when it exits\n"
            "  top [-n N] [--sample-index NAME] FILE\n"
            "                 print the top functions of a pprof file (self and total)\n"
            "  collapse [--sample-index NAME] FILE\n"
            "                 print a pprof file as collapsed stacks (flamegraph.pl input)\n"
            "  version        print the version\n"
            "  help           this text\n");
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
    fprintf(stderr, "sonde: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
