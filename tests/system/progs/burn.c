#define _GNU_SOURCE
/*
 * burn.c — one thread at 100 % of one core until told to stop, for the
 * agent-online tests (a CPU trigger to cross, a second app to profile).
 *
 *   burn [SECONDS]        SECONDS 0 or absent: until SIGTERM/SIGINT
 *
 * The main thread computes in burn_work() (a noinline function, so it is
 * a frame of its own in every profile) and checks the clock and the stop
 * flag between rounds of ~1 ms.  SIGTERM ends the loop and main() returns
 * 0, so atexit handlers (the agent's flush) run as in a clean shutdown.
 * stdout: "burn_pid=P" at start, "checksum=N" at the end.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* About a millisecond of pure computation. */
__attribute__((noinline)) uint64_t burn_work(uint64_t x)
{
    for (int i = 0; i < 200000; i++)
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("burn_pid=%d\n", (int)getpid());

    double end = seconds > 0 ? now_s() + seconds : 0;
    uint64_t x = (uint64_t)getpid();
    while (!stop && (end == 0 || now_s() < end))
        x = burn_work(x);
    printf("checksum=%llu\n", (unsigned long long)x);
    return 0;
}
