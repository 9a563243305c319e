/*
 * span_cost.c — what a request pays for being a span: one
 * sonde_span_begin + sonde_span_end pair (sonde.h), called through the
 * real libsonde.so as a host calls it (linked -lsonde, through the PLT),
 * with no agent running — the cost every request pays whether or not
 * anything is being profiled.  Its peer, measured in the same run on the
 * same thread: one clock_gettime(CLOCK_MONOTONIC), the cheapest thing a
 * request handler already does to time itself.
 *
 *   span_cost [PAIRS]      default 10^7 pairs per run, 5 runs
 *
 * Figures, median over the runs of (run time / PAIRS):
 *   - one thread: begin("GET /checkout", NULL) + end — sonde makes the
 *     trace id (32 hex digits);
 *   - one thread, trace id given (a request that arrived with one);
 *   - two threads at once, each on its own span (no shared cache line on
 *     the hot path: the ns per pair of each thread);
 *   - clock_gettime(CLOCK_MONOTONIC), one call, on one thread and on two
 *     at once (what the machine gives two threads, as a reference for the
 *     two-thread span figure on a loaded or small machine).
 * stdout, one line per figure:
 *
 *   span_pair_1thread_ns_median=M min=m
 *   span_pair_1thread_traceid_ns_median=M min=m
 *   span_pair_2threads_ns_median=M min=m
 *   clock_gettime_monotonic_ns_median=M min=m
 *   clock_gettime_monotonic_2threads_ns_median=M min=m
 *
 * Built by the Makefile against $(B)/libsonde.so (bench/flags.mk).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sonde.h"

#define RUNS 5

static long pairs = 10000000;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ns per pair over `pairs` begin+end pairs on the calling thread. */
static double span_loop(const char *trace_id)
{
    double t0 = now_s();
    for (long i = 0; i < pairs; i++) {
        sonde_span_t h = sonde_span_begin("GET /checkout", trace_id);
        if (sonde_span_end(h) != 0) {
            fprintf(stderr, "span_cost: sonde_span_end failed: %s\n", sonde_errmsg());
            exit(1);
        }
    }
    return (now_s() - t0) * 1e9 / (double)pairs;
}

static double clock_loop(void)
{
    struct timespec ts;
    volatile long sink = 0;
    double t0 = now_s();
    for (long i = 0; i < pairs; i++) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        sink += ts.tv_nsec;
    }
    (void)sink;
    return (now_s() - t0) * 1e9 / (double)pairs;
}

struct two {
    pthread_barrier_t *start;
    int clock; /* time clock_gettime instead */
    double ns;
};

static void *two_thread(void *p)
{
    struct two *t = p;
    if (!t->clock)
        span_loop(NULL); /* warm: the record, the caches */
    pthread_barrier_wait(t->start);
    t->ns = t->clock ? clock_loop() : span_loop(NULL);
    return NULL;
}

/* Two threads at once, both timing spans or both clock_gettime: the ns
 * per call of each into out[0..1]. */
static int run_two(int clock, double *out)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    struct two t[2] = {{&start, clock, 0}, {&start, clock, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, two_thread, &t[i]) != 0) {
            fprintf(stderr, "span_cost: pthread_create failed\n");
            return -1;
        }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    out[0] = t[0].ns;
    out[1] = t[1].ns;
    return 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    printf("%s_ns_median=%.1f min=%.1f\n", name, v[n / 2], v[0]);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        pairs = atol(argv[1]);
    if (pairs < 1000)
        pairs = 1000;
    /* A first begin takes the thread's record (getrandom, a pthread key):
     * once per thread, not per request. */
    sonde_span_t h = sonde_span_begin("warm", NULL);
    if (!h) {
        fprintf(stderr, "span_cost: sonde_span_begin returned 0: %s\n", sonde_errmsg());
        return 1;
    }
    sonde_span_end(h);

    double one[RUNS], given[RUNS], clk[RUNS], both[RUNS * 2], clk2[RUNS * 2];
    /* Interleaved, so drift in the machine's speed hits every figure. */
    for (int r = 0; r < RUNS; r++) {
        one[r] = span_loop(NULL);
        given[r] = span_loop("4bf92f3577b34da6a3ce929d0e0e4736");
        clk[r] = clock_loop();
    }
    for (int r = 0; r < RUNS; r++)
        if (run_two(0, &both[2 * r]) != 0 || run_two(1, &clk2[2 * r]) != 0)
            return 1;
    report("span_pair_1thread", one, RUNS);
    report("span_pair_1thread_traceid", given, RUNS);
    report("span_pair_2threads", both, 2 * RUNS);
    report("clock_gettime_monotonic", clk, RUNS);
    report("clock_gettime_monotonic_2threads", clk2, 2 * RUNS);
    return 0;
}
