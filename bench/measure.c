#define _GNU_SOURCE
/*
 * measure.c — runs one command and reports what it cost, for bench.py.
 *
 *   measure OUTFILE PROGRAM ARGS...
 *
 * fork + exec PROGRAM, wait4() for it, and write one line to OUTFILE:
 *   "status=S wall_s=W cpu_s=C maxrss_kb=R"
 * cpu_s is user+system of PROGRAM and every child it reaped (perf record's
 * own work included); maxrss_kb is the peak RSS of PROGRAM (or of its
 * largest reaped child), through its exit — so an in-process profiler's
 * work at exit (symbolizing, writing) counts.  This launcher is static and
 * tiny on purpose: the kernel carries the pre-exec image's high-water mark
 * into the child's maxrss, and a Python or perf parent would swamp the
 * figure.  Exits with PROGRAM's status (128+signal if killed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: measure OUTFILE PROGRAM ARGS...\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("measure: fork");
        return 1;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror("measure: exec");
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid) {
        perror("measure: wait4");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fprintf(f, "status=%d wall_s=%.6f cpu_s=%.6f maxrss_kb=%ld\n", status,
            (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
            ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                ru.ru_stime.tv_usec / 1e6,
            ru.ru_maxrss);
    fclose(f);
    return status;
}
