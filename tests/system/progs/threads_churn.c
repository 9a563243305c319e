#define _GNU_SOURCE
/*
 * threads_churn.c — many short-lived threads created and joined while a
 * profiler samples (test_thread_churn).  A per-thread CPU-time sampler
 * creates a POSIX timer for each thread and must delete it when the thread
 * exits; leaked timers pile up in /proc/self/timers (and, targeting dead
 * threads, can crash or misdirect signals).
 *
 *   threads_churn TOTAL CONCURRENT [WORK_US]
 *
 * Starts TOTAL threads, at most CONCURRENT alive at a time; each burns
 * WORK_US (default 1000) microseconds of its own CPU time in churn_work()
 * and exits.  At the end, with only the main thread left, it counts the
 * process's POSIX timers (/proc/self/timers) and threads (/proc/self/task).
 * stdout: "threads=TOTAL checksum=C" then "posix_timers_at_end=N
 * tasks_at_end=M"; exit 1 if a thread could not be created.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long work_ns;

__attribute__((noinline)) uint64_t churn_work(uint64_t x)
{
    int64_t end = thread_cpu_ns() + work_ns;
    do {
        for (int i = 0; i < 5000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    } while (thread_cpu_ns() < end);
    return x;
}

static void *churn_thread(void *arg)
{
    uint64_t *slot = arg;
    *slot = churn_work(*slot);
    return NULL;
}

/* Lines "ID: n" in /proc/self/timers, one per POSIX timer; -1 if absent. */
static int count_posix_timers(void)
{
    FILE *f = fopen("/proc/self/timers", "r");
    if (!f)
        return -1;
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strncmp(line, "ID:", 3) == 0;
    fclose(f);
    return n;
}

static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: threads_churn TOTAL CONCURRENT [WORK_US]\n");
        return 2;
    }
    int total = atoi(argv[1]), concurrent = atoi(argv[2]);
    work_ns = (argc > 3 ? atol(argv[3]) : 1000) * 1000;
    if (total < 1 || concurrent < 1 || concurrent > 1024 || work_ns < 0) {
        fprintf(stderr, "usage: threads_churn TOTAL CONCURRENT [WORK_US]\n");
        return 2;
    }
    pthread_t *tids = calloc((size_t)concurrent, sizeof *tids);
    uint64_t *slots = calloc((size_t)concurrent, sizeof *slots);
    uint64_t sum = 0;
    int started = 0;
    while (started < total) {
        int batch = total - started < concurrent ? total - started : concurrent;
        for (int i = 0; i < batch; i++) {
            slots[i] = (uint64_t)(started + i);
            int rc = pthread_create(&tids[i], NULL, churn_thread, &slots[i]);
            if (rc != 0) {
                fprintf(stderr, "threads_churn: pthread_create #%d: %s\n", started + i,
                        strerror(rc));
                return 1;
            }
        }
        for (int i = 0; i < batch; i++) {
            pthread_join(tids[i], NULL);
            sum += slots[i];
        }
        started += batch;
    }
    printf("threads=%d checksum=%llu\n", started, (unsigned long long)(sum & 0xffff));
    printf("posix_timers_at_end=%d tasks_at_end=%d\n", count_posix_timers(), count_tasks());
    free(tids);
    free(slots);
    return 0;
}
