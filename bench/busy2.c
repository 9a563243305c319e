#define _GNU_SOURCE
/*
 * busy2.c — the benchmark's CPU-bound 2-thread program: a fixed amount of
 * work (not a fixed time), so a profiler's overhead shows as longer wall
 * and CPU time.
 *
 *   busy2 [MEGA_ITERATIONS_PER_THREAD]      default 900
 *
 * Each thread runs busy_leaf() under a few frames of its own (busy_outer
 * -> busy_middle -> busy_inner -> busy_leaf), called in short bursts so
 * that the stacks a sampler walks are ordinary, not one flat loop.
 * stdout: "checksum=C cpu_seconds=X vmhwm_kb=N wall_seconds=W" at the end of
 * main: CPU from getrusage, VmHWM from /proc/self/status — the peak RSS of
 * this image while it ran (not getrusage's maxrss, which carries the pre-exec
 * image of whoever forked us), before exit handlers such as a profiler's
 * final write run; W = CLOCK_MONOTONIC from entering main to the threads
 * joined, so a profiler's start (constructors, perf's set-up) and exit work
 * are outside it.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static long mega;

static long vmhwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

__attribute__((noinline)) uint64_t busy_leaf(uint64_t x, int n)
{
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

__attribute__((noinline)) uint64_t busy_inner(uint64_t x)
{
    x = busy_leaf(x, 60000);
    __asm__ volatile("" : "+r"(x));
    return x + 1;
}

__attribute__((noinline)) uint64_t busy_middle(uint64_t x)
{
    for (int i = 0; i < 10; i++)
        x = busy_inner(x);
    __asm__ volatile("" : "+r"(x));
    return x;
}

__attribute__((noinline)) uint64_t busy_outer(uint64_t x, long rounds)
{
    for (long r = 0; r < rounds; r++)
        x = busy_middle(x);
    __asm__ volatile("" : "+r"(x));
    return x;
}

static void *worker(void *arg)
{
    uint64_t *x = arg;
    /* busy_middle does 600k iterations of busy_leaf. */
    *x = busy_outer(*x, mega * 1000000 / 600000);
    return NULL;
}

int main(int argc, char **argv)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mega = argc > 1 ? atol(argv[1]) : 900;
    if (mega < 1) {
        fprintf(stderr, "usage: busy2 [MEGA_ITERATIONS_PER_THREAD]\n");
        return 2;
    }
    pthread_t t[2];
    uint64_t x[2] = {0x1234567, 0x7654321};
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, worker, &x[i]) != 0) {
            perror("pthread_create");
            return 1;
        }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("checksum=%llu cpu_seconds=%.6f vmhwm_kb=%ld wall_seconds=%.6f\n",
           (unsigned long long)((x[0] ^ x[1]) & 0xffff),
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
           vmhwm_kb(), (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
