/*
 * commands.h — the sonde CLI's command groups, one file each
 * (cmd_record.c, cmd_top.c, ...), dispatched by main.c.
 *
 * Each takes the arguments after the command name (argv[0] is the command
 * name) and returns the process exit status: 0 success, 1 runtime failure,
 * 2 usage error.  Errors are printed to stderr as "sonde CMD: message".
 */
#ifndef SONDE_CLI_COMMANDS_H
#define SONDE_CLI_COMMANDS_H

int cmd_record(int argc, char **argv);   /* sonde record [-F HZ] [--cpu|--wall] [-o FILE] [--format F] -- PROG ARGS */
int cmd_top(int argc, char **argv);      /* sonde top [-n N] [--sample-index NAME] FILE */
int cmd_collapse(int argc, char **argv); /* sonde collapse [--sample-index NAME] FILE */

#endif
