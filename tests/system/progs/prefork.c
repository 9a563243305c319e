#define _GNU_SOURCE
/*
 * prefork.c — a prefork server's process tree, for
 * test_prefork_workers_are_agents.
 *
 *   prefork [LATE_MS [EARLY]]
 *
 * The master
 *   - forks worker 1 at once (before its own agent has registered), and
 *     EARLY more (default 0, at most 16) 3 ms apart: forks that land in
 *     whatever the agent's threads are doing as they start;
 *   - forks a short-lived child that _exit(0)s at once, and a child that
 *     execs /bin/true, and reaps both;
 *   - forks worker 2 once it is LATE_MS old (default 1000: after its agent
 *     has registered and holds a connection to the server);
 *   - then, like the workers, works lightly (~20 % of a core in
 *     light_work(), the rest asleep) until SIGTERM/SIGINT, passes SIGTERM
 *     on to the workers, reaps them and exits 0 if they did.
 * Workers end their loop on SIGTERM and exit(0) (atexit handlers run).
 * stdout: "master_pid=P", "worker_pid=P" (2 + EARLY times), "child_pid=P",
 * "exec_pid=P", then "ready" once every fork is done.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Computes for about `seconds` of wall time. */
__attribute__((noinline)) uint64_t light_work(double seconds)
{
    uint64_t x = (uint64_t)getpid();
    double end = now_s() + seconds;
    while (now_s() < end)
        for (int i = 0; i < 20000; i++)
            x = (x ^ (x >> 31)) * 0x9E3779B97F4A7C15ULL;
    return x;
}

/* One round: 10 ms of work, 40 ms of sleep. */
static uint64_t work_round(void)
{
    uint64_t x = light_work(0.010);
    struct timespec ts = {0, 40 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return x;
}

static pid_t fork_worker(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t x = 0;
        while (!stop)
            x ^= work_round();
        exit(x == 1 ? 3 : 0);
    }
    if (pid > 0)
        printf("worker_pid=%d\n", (int)pid);
    return pid;
}

static int reap(pid_t pid)
{
    int st;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    return r == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int main(int argc, char **argv)
{
    double late = (argc > 1 ? atof(argv[1]) : 1000.0) / 1000.0;
    int early = argc > 2 ? atoi(argv[2]) : 0;
    if (early < 0 || early > 16) {
        fprintf(stderr, "usage: prefork [LATE_MS [EARLY 0..16]]\n");
        return 2;
    }
    double t0 = now_s();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("master_pid=%d\n", (int)getpid());

    pid_t workers[2 + 16];
    int n = 0;
    workers[n++] = fork_worker();
    for (int i = 0; i < early; i++) {
        struct timespec gap = {0, 3 * 1000 * 1000};
        nanosleep(&gap, NULL);
        workers[n++] = fork_worker();
    }

    fflush(stdout);
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    printf("child_pid=%d\n", (int)child);
    fflush(stdout);
    pid_t ex = fork();
    if (ex == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    printf("exec_pid=%d\n", (int)ex);
    int ok = child > 0 && reap(child) && ex > 0 && reap(ex);

    uint64_t x = 0;
    while (!stop && now_s() - t0 < late)
        x ^= work_round();
    workers[n++] = fork_worker();
    printf("ready%s\n", ok ? "" : " children-failed");

    while (!stop)
        x ^= work_round();
    for (int i = 0; i < n; i++)
        if (workers[i] > 0)
            kill(workers[i], SIGTERM);
    for (int i = 0; i < n; i++)
        ok &= workers[i] > 0 && reap(workers[i]);
    return ok && x != 1 ? 0 : 1;
}
