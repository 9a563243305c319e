#define _GNU_SOURCE
/*
 * sigprof_host.c — a host with its own SIGPROF profiler (the way gperftools
 * or an in-house sampler works), for test_host_sigprof_handler_kept.  A
 * guest agent must not take SIGPROF or ITIMER_PROF away from it.
 *
 *   sigprof_host SECONDS
 *
 * Installs a SIGPROF handler and setitimer(ITIMER_PROF, 10 ms), then burns
 * SECONDS of process CPU time in host_busy_loop(), checking every 10 ms of
 * CPU that the handler and the timer are still ours.  stdout:
 *   "ticks=N expected~=M handler=kept timer=kept"
 * Exit 1 if the handler was replaced, the timer disarmed, or fewer than a
 * quarter of the expected ticks arrived.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t ticks;

static void host_sigprof_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    ticks++;
}

static double process_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int handler_is_ours(void)
{
    struct sigaction cur;
    if (sigaction(SIGPROF, NULL, &cur) != 0)
        return 0;
    return (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == host_sigprof_handler;
}

static int timer_is_armed(void)
{
    struct itimerval it;
    if (getitimer(ITIMER_PROF, &it) != 0)
        return 0;
    return it.it_interval.tv_sec == 0 && it.it_interval.tv_usec == 10000;
}

__attribute__((noinline)) uint64_t host_busy_loop(double seconds, int *handler_ok, int *timer_ok)
{
    uint64_t x = 7;
    double start = process_cpu_seconds(), next_check = 0;
    for (;;) {
        for (int i = 0; i < 50000; i++)
            x = x * 2862933555777941757ULL + 3037000493ULL;
        double used = process_cpu_seconds() - start;
        if (used >= next_check) {
            *handler_ok &= handler_is_ours();
            *timer_ok &= timer_is_armed();
            next_check = used + 0.01;
        }
        if (used >= seconds)
            return x;
    }
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(seconds > 0)) {
        fprintf(stderr, "usage: sigprof_host SECONDS\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = host_sigprof_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    struct itimerval it = {{0, 10000}, {0, 10000}};
    if (setitimer(ITIMER_PROF, &it, NULL) != 0) {
        perror("setitimer");
        return 1;
    }
    int handler_ok = 1, timer_ok = 1;
    uint64_t x = host_busy_loop(seconds, &handler_ok, &timer_ok);
    handler_ok &= handler_is_ours();
    timer_ok &= timer_is_armed();
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
    int expected = (int)(seconds * 100);
    int got = ticks;
    printf("ticks=%d expected~=%d handler=%s timer=%s\n", got, expected,
           handler_ok ? "kept" : "REPLACED", timer_ok ? "kept" : "CHANGED");
    if (x == 1)
        printf("unlikely\n");
    return handler_ok && timer_ok && got * 4 >= expected ? 0 : 1;
}
