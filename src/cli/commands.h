/*
 * commands.h — the sonde CLI's command groups, one file each
 * (cmd_record.c, cmd_top.c, ...), dispatched by main.c.
 *
 * Each takes the arguments after the command name (argv[0] is the command
 * name) and returns the process exit status: 0 success, 1 runtime failure
 * (for the server commands: sonded unreachable or refusing), 2 usage
 * error.  Errors are printed to stderr as "sonde CMD: message".
 *
 * The server commands (cmd_server.c, cmd_settings.c, cmd_token.c,
 * cmd_task.c, cmd_capture.c, and `top SESSION`) talk to sonded through client.h and share its options:
 * --server, --token, --json; all but top run on command.h.
 */
#ifndef SONDE_CLI_COMMANDS_H
#define SONDE_CLI_COMMANDS_H

#include <stddef.h>

int cmd_record(int argc, char **argv);   /* sonde record [-F HZ] [--cpu|--wall] [-o FILE] [--format F] -- PROG ARGS */
int cmd_top(int argc, char **argv);      /* sonde top [-n N] [--sample-index NAME] FILE|SESSION */
int cmd_collapse(int argc, char **argv); /* sonde collapse [--sample-index NAME] FILE */
int cmd_run(int argc, char **argv);      /* sonde run [--server URL] [--app A] ... -- PROG ARGS */
int cmd_loadtest(int argc, char **argv); /* sonde loadtest URL [-c USERS] [-d DURATION] ... (local) */

/* The agent library for a program to preload (cmd_record.c, shared with
 * cmd_run.c): $SONDE_LIB if set, else libsonde.so beside the sonde
 * executable or in ../lib.  0 with its path in out (len bytes, PATH_MAX
 * is enough), -1 when there is none. */
int record_find_agent(char *out, size_t len);

/* Against sonded: cmd_server.c */
int cmd_agents(int argc, char **argv);      /* sonde agents [--app A] [--status S] */
int cmd_sessions(int argc, char **argv);    /* sonde sessions [--app A] [--since D] ... */
int cmd_get(int argc, char **argv);         /* sonde get SESSION [-o FILE] */
int cmd_profile_now(int argc, char **argv); /* sonde profile-now [--app A] [--duration S] */
/* cmd_settings.c */
int cmd_triggers(int argc, char **argv);    /* sonde triggers [show|set|reset] ... */
int cmd_sampling(int argc, char **argv);    /* sonde sampling [show|set|reset] ... */
/* cmd_token.c */
int cmd_token(int argc, char **argv);       /* sonde token create|list|revoke ... */
/* cmd_task.c, cmd_capture.c: active profiling */
int cmd_task(int argc, char **argv);        /* sonde task create|list|show|log|captures|cancel */
int cmd_capture(int argc, char **argv);     /* sonde capture show ID */

#endif
