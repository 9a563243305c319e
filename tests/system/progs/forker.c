#define _GNU_SOURCE
/*
 * forker.c — a forking host, for test_forking_host_does_not_deadlock and
 * test_follow_fork_writes_child_profile.
 *
 *   forker SECONDS
 *
 * Like a prefork server with background snapshots (nginx, redis):
 *   - forks 2 workers that compute in worker_compute() for SECONDS of their
 *     own CPU time and then exit(0) (normal exit: atexit handlers run);
 *   - meanwhile the master computes in master_compute() and, every ~20 ms of
 *     its CPU, forks a snapshot child that _exit(0)s at once — a fork taken
 *     while the master is being sampled, so a child can inherit a lock held
 *     by the agent at that instant;
 *   - then fork + exec /bin/true once;
 *   - waits for everyone and checks every exit status.
 * The test runs it under a timeout: a deadlocked child never exits.
 * stdout: "worker_pid=P" twice, then
 *   "workers=2 snapshots=N exec=ok"
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double process_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Burns `seconds` of this process's CPU time. */
__attribute__((noinline)) uint64_t worker_compute(double seconds)
{
    uint64_t x = (uint64_t)getpid();
    double start = process_cpu_seconds();
    do {
        for (int i = 0; i < 50000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    } while (process_cpu_seconds() - start < seconds);
    return x;
}

__attribute__((noinline)) uint64_t master_compute(double seconds)
{
    uint64_t x = 3;
    double start = process_cpu_seconds();
    do {
        for (int i = 0; i < 50000; i++)
            x = (x ^ (x >> 31)) * 0x9E3779B97F4A7C15ULL;
    } while (process_cpu_seconds() - start < seconds);
    return x;
}

static int wait_ok(pid_t pid, const char *what)
{
    int st;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r != pid) {
        fprintf(stderr, "forker: waitpid %s %d: %s\n", what, (int)pid, "failed");
        return 0;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "forker: %s %d ended with status 0x%x\n", what, (int)pid, st);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(seconds > 0)) {
        fprintf(stderr, "usage: forker SECONDS\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t workers[2];
    for (int i = 0; i < 2; i++) {
        fflush(stdout);
        workers[i] = fork();
        if (workers[i] < 0) {
            perror("fork");
            return 1;
        }
        if (workers[i] == 0) {
            uint64_t x = worker_compute(seconds);
            exit(x == 1 ? 3 : 0);
        }
        printf("worker_pid=%d\n", (int)workers[i]);
    }

    int snapshots = 0, ok = 1;
    double start = process_cpu_seconds();
    uint64_t x = 0;
    while (process_cpu_seconds() - start < seconds) {
        x ^= master_compute(0.02);
        fflush(stdout);
        pid_t child = fork();
        if (child < 0) {
            perror("fork");
            return 1;
        }
        if (child == 0)
            _exit(0);
        ok &= wait_ok(child, "snapshot child");
        snapshots++;
    }

    fflush(stdout);
    pid_t ex = fork();
    if (ex == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int exec_ok = ex > 0 && wait_ok(ex, "exec child");

    for (int i = 0; i < 2; i++)
        ok &= wait_ok(workers[i], "worker");
    printf("workers=2 snapshots=%d exec=%s%s\n", snapshots, exec_ok ? "ok" : "FAILED",
           x == 1 ? " unlikely" : "");
    return ok && exec_ok ? 0 : 1;
}
