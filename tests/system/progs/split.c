#define _GNU_SOURCE
/*
 * split.c — a CPU-bound program with a known split of CPU time, used by the
 * attribution and CPU-total system tests and by bench/.
 *
 *   split THREADS SECONDS          each thread burns SECONDS of its own CPU
 *                                  time, 70 % in work_seventy() and 30 % in
 *                                  work_thirty(), interleaved in slices of
 *                                  0.5-1.5 ms so any sampler sees both
 *   split --equal 2 SECONDS        two threads, thread_a_work() and
 *                                  thread_b_work(), each 100 % busy for
 *                                  SECONDS of CPU time
 *
 * The split is measured with CLOCK_THREAD_CPUTIME_ID, so preemption and a
 * profiler's overhead do not move it.  Slice lengths are drawn from a
 * per-thread LCG so that slices never line up with the kernel tick (a fixed
 * 1 ms slice and a 4 ms tick would alias and show 100/0).
 *
 * stdout: "checksum=N" (so the work is not optimised away),
 * "cpu_seconds=X" (getrusage(RUSAGE_SELF) user+system: every thread, a
 * profiler's own included), "threads_cpu_seconds=X" (the sum of each worker
 * thread's getrusage(RUSAGE_THREAD) at its end: the CPU a profile of this
 * program should hold) and "maxrss_kb=N".
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static volatile uint64_t sink;
static uint64_t chunk_iters = 20000; /* calibrated to ~40 us in main() */

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One unit of pure arithmetic.  A macro, not an inline function: a
 * profiler that reports inlined frames would otherwise put every sample's
 * flat time in mix() instead of the function under test. */
#define MIX(x, i)                                                                                  \
    do {                                                                                           \
        (x) += (i);                                                                                \
        (x) ^= (x) >> 12;                                                                          \
        (x) ^= (x) << 25;                                                                          \
        (x) ^= (x) >> 27;                                                                          \
        (x) *= 0x2545F4914F6CDD1DULL;                                                              \
    } while (0)

/* Burns until the thread's CPU clock reaches deadline_ns.  The clock is read
 * only every chunk_iters iterations (~40 us) so the clock_gettime syscall
 * (~1.3 us in a VM) is a few % of the time, the same share in both. */
__attribute__((noinline)) uint64_t work_seventy(uint64_t x, int64_t deadline_ns)
{
    do {
        for (uint64_t i = 0; i < chunk_iters; i++)
            MIX(x, i);
        __asm__ volatile("" : "+r"(x));
    } while (thread_cpu_ns() < deadline_ns);
    return x;
}

__attribute__((noinline)) uint64_t work_thirty(uint64_t x, int64_t deadline_ns)
{
    do {
        for (uint64_t i = 0; i < chunk_iters; i++)
            MIX(x, i);
        __asm__ volatile("" : "+r"(x));
    } while (thread_cpu_ns() < deadline_ns);
    return x;
}

__attribute__((noinline)) uint64_t thread_a_work(uint64_t x, int64_t deadline_ns)
{
    do {
        for (uint64_t i = 0; i < chunk_iters; i++)
            MIX(x, i);
        __asm__ volatile("" : "+r"(x));
    } while (thread_cpu_ns() < deadline_ns);
    return x;
}

__attribute__((noinline)) uint64_t thread_b_work(uint64_t x, int64_t deadline_ns)
{
    do {
        for (uint64_t i = 0; i < chunk_iters; i++)
            MIX(x, i);
        __asm__ volatile("" : "+r"(x));
    } while (thread_cpu_ns() < deadline_ns);
    return x;
}

struct job {
    int index;
    int64_t budget_ns; /* thread CPU time to burn */
    uint64_t result;
    double cpu_s;      /* getrusage(RUSAGE_THREAD) user+system at the end */
};

static double thread_rusage_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void *split_thread(void *arg)
{
    struct job *job = arg;
    uint64_t x = 0x9E3779B97F4A7C15ULL + (uint64_t)job->index;
    uint32_t lcg = 12345u + 7919u * (uint32_t)job->index;
    int64_t start = thread_cpu_ns();
    int64_t end = start + job->budget_ns;
    int64_t now = start;
    /* Keep the 70/30 ratio exact over the whole run: each slice tops up
     * whichever function is behind its share of the time used so far. */
    int64_t seventy = 0, thirty = 0;
    while (now < end) {
        lcg = lcg * 1664525u + 1013904223u;
        int64_t slice = 500000 + (int64_t)((lcg >> 8) % 1000000); /* 0.5-1.5 ms */
        int64_t t0 = thread_cpu_ns();
        int64_t want70 = (seventy + thirty + slice) * 7 / 10 - seventy;
        if (want70 < 0)
            want70 = 0;
        x = work_seventy(x, t0 + want70);
        int64_t t1 = thread_cpu_ns();
        seventy += t1 - t0;
        int64_t want30 = seventy * 3 / 7 - thirty;
        if (want30 < 0)
            want30 = 0;
        x = work_thirty(x, t1 + want30);
        now = thread_cpu_ns();
        thirty += now - t1;
    }
    job->result = x;
    job->cpu_s = thread_rusage_seconds();
    if (getenv("SPLIT_DEBUG"))
        fprintf(stderr, "thread %d: seventy=%.3f thirty=%.3f total=%.3f chunk=%llu\n", job->index,
                seventy / 1e9, thirty / 1e9, (thread_cpu_ns() - start) / 1e9,
                (unsigned long long)chunk_iters);
    return NULL;
}

static void *equal_thread(void *arg)
{
    struct job *job = arg;
    int64_t end = thread_cpu_ns() + job->budget_ns;
    uint64_t x = 0x51ED2701ULL + (uint64_t)job->index;
    job->result = job->index == 0 ? thread_a_work(x, end) : thread_b_work(x, end);
    job->cpu_s = thread_rusage_seconds();
    return NULL;
}

static void calibrate(void)
{
    uint64_t x = 1, n = 200000;
    int64_t t0 = thread_cpu_ns();
    for (uint64_t i = 0; i < n; i++)
        MIX(x, i);
    __asm__ volatile("" : "+r"(x));
    int64_t dt = thread_cpu_ns() - t0;
    if (dt > 0)
        chunk_iters = n * 40000 / (uint64_t)dt;
    if (chunk_iters < 1000)
        chunk_iters = 1000;
    sink = x;
}

static void usage(void)
{
    fprintf(stderr, "usage: split THREADS SECONDS | split --equal 2 SECONDS\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int equal = 0;
    if (argc > 1 && strcmp(argv[1], "--equal") == 0) {
        equal = 1;
        argv++;
        argc--;
    }
    if (argc != 3)
        usage();
    int nthreads = atoi(argv[1]);
    double seconds = atof(argv[2]);
    if (nthreads < 1 || nthreads > 256 || !(seconds > 0) || (equal && nthreads != 2))
        usage();

    calibrate();
    pthread_t tids[256];
    struct job jobs[256];
    for (int i = 0; i < nthreads; i++) {
        jobs[i].index = i;
        jobs[i].budget_ns = (int64_t)(seconds * 1e9);
        jobs[i].result = 0;
        if (pthread_create(&tids[i], NULL, equal ? equal_thread : split_thread, &jobs[i]) != 0) {
            perror("pthread_create");
            return 1;
        }
        char name[16];
        snprintf(name, sizeof name, equal ? "equal-%d" : "split-%d", i);
        pthread_setname_np(tids[i], name);
    }
    uint64_t sum = 0;
    double threads_cpu = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(tids[i], NULL);
        sum ^= jobs[i].result;
        threads_cpu += jobs[i].cpu_s;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("checksum=%llu\n", (unsigned long long)(sum & 0xffff));
    printf("cpu_seconds=%.6f\n", cpu);
    printf("threads_cpu_seconds=%.6f\n", threads_cpu);
    printf("maxrss_kb=%ld\n", ru.ru_maxrss);
    return 0;
}
