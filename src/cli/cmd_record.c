/*
 * cmd_record.c — `sonde record`: runs a program with libsonde.so preloaded
 * and the SONDE_* settings in its environment, waits for it, and reports.
 *
 * The profile is written by the agent inside the program when it exits
 * (exit() or return from main; a program killed by a signal writes
 * nothing, and we say so).  Only the program we exec is profiled
 * (SONDE_ONLY_PID) unless --follow-exec.  Agent warnings go to a private
 * log that we print on stderr afterwards: the agent itself never prints.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"

static void record_usage(FILE *f)
{
    fprintf(f, "usage: sonde record [-F HZ] [--cpu|--wall] [-o FILE] [--format pprof|collapsed]\n"
               "                    [--follow-fork] [--follow-exec] -- PROGRAM [ARGS...]\n"
               "  -F HZ           samples per second per thread, 1..10000 (default 100)\n"
               "  --cpu           on-CPU profile (default)\n"
               "  --wall          wall-clock profile: every thread, running or blocked\n"
               "  -o FILE         output file (default sonde.pb.gz)\n"
               "  --format F      pprof (default) or collapsed\n"
               "  --follow-fork   forked children that keep running write FILE.<pid>\n"
               "  --follow-exec   programs PROGRAM execs are profiled too, into FILE.<pid>\n");
}

/* libsonde.so beside the executable, or in ../lib, or $SONDE_LIB
 * (commands.h; `sonde run` finds it the same way). */
int record_find_agent(char *out, size_t len)
{
    const char *env = getenv("SONDE_LIB");
    if (env && *env) {
        if (access(env, R_OK) != 0)
            return -1;
        snprintf(out, len, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = 0;
    const char *cands[] = {"%s/libsonde.so", "%s/../lib/libsonde.so"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, cands[i], exe);
        if (access(p, R_OK) == 0) {
            if (!realpath(p, out))
                snprintf(out, len, "%.4000s", p);
            return 0;
        }
    }
    return -1;
}

/* The output must be creatable before we spend the program's run on it. */
static int check_output(const char *path)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.sonde-check.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    close(fd);
    unlink(tmp);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return -EISDIR;
    return 0;
}

static void print_agent_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1100];
    while (fgets(line, sizeof line, f))
        if (strstr(line, "error") || strstr(line, "warning") || strstr(line, "not started"))
            fprintf(stderr, "sonde record: agent: %s", line);
    fclose(f);
}

int cmd_record(int argc, char **argv)
{
    int hz = 100, wall = 0, cpu = 0, follow_fork = 0, follow_exec = 0;
    const char *out = "sonde.pb.gz", *format = "pprof";
    static const struct option opts[] = {
        {"cpu", no_argument, NULL, 'c'},         {"wall", no_argument, NULL, 'w'},
        {"output", required_argument, NULL, 'o'}, {"format", required_argument, NULL, 'f'},
        {"frequency", required_argument, NULL, 'F'},
        {"follow-fork", no_argument, NULL, 'k'}, {"follow-exec", no_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+F:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'F': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > 10000) {
                fprintf(stderr, "sonde record: -F %s: expected samples per second from 1 to 10000\n",
                        optarg);
                return 2;
            }
            hz = (int)v;
            break;
        }
        case 'c': cpu = 1; break;
        case 'w': wall = 1; break;
        case 'o': out = optarg; break;
        case 'f':
            if (strcmp(optarg, "pprof") != 0 && strcmp(optarg, "collapsed") != 0) {
                fprintf(stderr, "sonde record: --format %s: expected pprof or collapsed\n", optarg);
                return 2;
            }
            format = optarg;
            break;
        case 'k': follow_fork = 1; break;
        case 'x': follow_exec = 1; break;
        case 'h': record_usage(stdout); return 0;
        default:
            if (optopt)
                fprintf(stderr, "sonde record: option -%c needs a value or is unknown\n", optopt);
            else
                fprintf(stderr, "sonde record: unknown option '%s'\n", argv[optind - 1]);
            record_usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "sonde record: no program given\n");
        record_usage(stderr);
        return 2;
    }
    if (cpu && wall) {
        fprintf(stderr, "sonde record: --cpu and --wall: choose one\n");
        return 2;
    }
    char **prog = argv + optind;

    char agent[PATH_MAX];
    if (record_find_agent(agent, sizeof agent) != 0) {
        fprintf(stderr, "sonde record: cannot find libsonde.so beside the sonde executable or in "
                        "../lib; set SONDE_LIB to its path\n");
        return 1;
    }
    int rc = check_output(out);
    if (rc != 0) {
        fprintf(stderr, "sonde record: cannot write the profile to %s: %s\n", out, strerror(-rc));
        return 1;
    }
    char outabs[PATH_MAX];
    if (out[0] != '/' && getcwd(outabs, sizeof outabs - strlen(out) - 2)) {
        strcat(outabs, "/");
        strcat(outabs, out);
    } else {
        snprintf(outabs, sizeof outabs, "%s", out);
    }

    char logpath[] = "/tmp/sonde-record-XXXXXX";
    int logfd = mkstemp(logpath);
    if (logfd >= 0)
        close(logfd);

    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "sonde record: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        const char *old = getenv("LD_PRELOAD");
        char *pre = malloc(strlen(agent) + (old ? strlen(old) : 0) + 2);
        if (!pre)
            _exit(127);
        if (old && *old)
            sprintf(pre, "%s:%s", old, agent);
        else
            strcpy(pre, agent);
        char buf[32];
        setenv("LD_PRELOAD", pre, 1);
        setenv("SONDE_OUTPUT", outabs, 1);
        snprintf(buf, sizeof buf, "%d", hz);
        setenv("SONDE_FREQUENCY", buf, 1);
        setenv("SONDE_TYPES", wall ? "wall" : "cpu", 1);
        setenv("SONDE_FORMAT", format, 1);
        setenv("SONDE_FOLLOW_FORK", follow_fork ? "1" : "0", 1);
        setenv("SONDE_FOLLOW_EXEC", follow_exec ? "1" : "0", 1);
        snprintf(buf, sizeof buf, "%d", (int)getpid());
        setenv("SONDE_ONLY_PID", buf, 1);
        if (logfd >= 0 && !getenv("SONDE_LOG"))
            setenv("SONDE_LOG", logpath, 1);
        execvp(prog[0], prog);
        fprintf(stderr, "sonde record: cannot run %s: %s\n", prog[0], strerror(errno));
        _exit(127);
    }
    /* The program gets the terminal's signals; we only wait for it. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "sonde record: waitpid: %s\n", strerror(errno));
            return 1;
        }
    }
    if (logfd >= 0) {
        print_agent_log(logpath);
        unlink(logpath);
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "sonde record: %s was killed by signal %d; no profile was written\n", prog[0],
                WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    int code = WEXITSTATUS(status);
    if (access(outabs, F_OK) != 0) {
        /* A program that ends with _exit() (or execs, or was started
         * without our library) runs no destructor, so nothing is written;
         * its status is still what we return. */
        if (code != 127)
            fprintf(stderr, "sonde record: %s exited with status %d without writing a profile (it "
                            "may have ended with _exit() or exec)\n",
                    prog[0], code);
        return code;
    }
    fprintf(stderr, "sonde record: wrote %s\n", out);
    return code;
}
