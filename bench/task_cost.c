/*
 * task_cost.c — active profiling's two figures (issue 6, SPEC B2),
 * measured on the agent's own code (libsonde_internal.a: task.h, the
 * real watcher thread, the real signal handler and blocked-thread read),
 * with the sampler set up as sonde_start sets it and sampling off:
 *
 *  (a) how exactly snapshots keep their interval at the smallest
 *      frequency, 5 ms: a task with threshold 50 ms watches one call of
 *      RUN_MS that burns CPU (snapshots through the signal) and one that
 *      blocks in poll() (snapshots read from outside); from each
 *      capture's pprof (offset labels), |interval - 5 ms| over every
 *      consecutive pair: median and p90 (goal: median <= 1 ms); the
 *      peer is what the OS itself does: a bare loop of
 *      clock_nanosleep(TIMER_ABSTIME) at 5 ms steps on an idle thread,
 *      the same error measured on its wake-up times;
 *  (b) what a watched but fast call pays: sonde_span_begin +
 *      sonde_span_end of the watched interface (no duration) with the
 *      task running (threshold 200 ms, so no call is ever captured),
 *      against the same pairs with no task — the peer, measured in the
 *      same run on the same thread, interleaved; ns per pair, median of
 *      RUNS runs (goal: <= 200 ns added).  Calls are direct (static
 *      link), not through the PLT as a host's are: the same for both.
 *
 *   task_cost [PAIRS]      default 2*10^6 pairs per run
 *
 * stdout:
 *   task_interval_running_error_ns_median=M p90=P n=N
 *   task_interval_blocked_error_ns_median=M p90=P n=N
 *   task_interval_sleep_peer_error_ns_median=M p90=P n=N
 *   task_watched_span_pair_ns_median=M min=m
 *   task_unwatched_span_pair_ns_median=M min=m
 *   task_added_per_call_ns_median=D
 * Built by the Makefile (bench/flags.mk), run by bench/bench.py.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pprof.h"
#include "modules.h"
#include "sigsafe/sampler.h"
#include "sonde.h"
#include "task.h"
#include "threads.h"
#include "uplink.h"

#define RUNS 7
#define RUN_MS 1400
#define FREQ_NS 5000000LL

static long pairs = 2000000;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- (a) interval error ------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t offsets[2][8192];
static int noffsets[2] = {-1, -1};

static void on_capture(const struct uplink_capture *c, void *gz, size_t len)
{
    int which = c->task_id == 1 ? 0 : 1;
    struct pprof_profile *p;
    char err[256];
    if (pprof_decode(gz, len, &p, err, sizeof err) != 0) {
        fprintf(stderr, "task_cost: capture does not decode: %s\n", err);
        exit(1);
    }
    pthread_mutex_lock(&lock);
    int n = 0;
    for (size_t i = 0; i < p->pb->n_sample && n < 8192; i++)
        for (size_t j = 0; j < p->pb->sample[i]->n_label; j++)
            if (!strcmp(pprof_string(p, p->pb->sample[i]->label[j]->key), "offset"))
                offsets[which][n++] = p->pb->sample[i]->label[j]->num;
    noffsets[which] = n;
    pthread_mutex_unlock(&lock);
    pprof_profile_free(p);
    free(gz);
}

static void on_event(int64_t id, const char *event, const char *message)
{
    if (!strcmp(event, "error"))
        fprintf(stderr, "task_cost: task %lld: error: %s\n", (long long)id, message ? message : "");
}

static volatile uint64_t sink;

__attribute__((noinline)) static void burn_until(int64_t end)
{
    while (mono_ns() < end)
        for (int i = 0; i < 2000; i++)
            sink += (uint64_t)i * 2654435761u;
}

static void *running_call(void *arg)
{
    (void)arg;
    sonde_span_t h = sonde_span_begin("GET /burn", NULL);
    burn_until(mono_ns() + RUN_MS * 1000000LL);
    sonde_span_end(h);
    return NULL;
}

static void *blocked_call(void *arg)
{
    (void)arg;
    sonde_span_t h = sonde_span_begin("GET /wait", NULL);
    poll(NULL, 0, RUN_MS);
    sonde_span_end(h);
    return NULL;
}

static void interval_error(int which, const char *name)
{
    pthread_mutex_lock(&lock);
    int n = noffsets[which];
    static int64_t err[8192];
    int m = 0;
    for (int i = 1; i < n; i++) {
        int64_t d = offsets[which][i] - offsets[which][i - 1] - FREQ_NS;
        err[m++] = d < 0 ? -d : d;
    }
    pthread_mutex_unlock(&lock);
    if (m < 1) {
        printf("task_interval_%s_error_ns_median=nan p90=nan n=0\n", name);
        return;
    }
    qsort(err, (size_t)m, sizeof err[0], cmp_i64);
    printf("task_interval_%s_error_ns_median=%lld p90=%lld n=%d\n", name, (long long)err[m / 2],
           (long long)err[m * 9 / 10], m);
}

/* The peer of (a): absolute 5 ms sleeps, no agent involved. */
static void sleep_peer(void)
{
    enum { N = 270 };
    static int64_t err[N];
    struct timespec next;
    clock_gettime(CLOCK_REALTIME, &next);
    int64_t prev = 0;
    int m = 0;
    for (int i = 0; i <= N; i++) {
        next.tv_nsec += FREQ_NS;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &next, NULL) == EINTR)
            ;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t t = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        if (i > 0) {
            int64_t d = t - prev - FREQ_NS;
            err[m++] = d < 0 ? -d : d;
        }
        prev = t;
    }
    qsort(err, (size_t)m, sizeof err[0], cmp_i64);
    printf("task_interval_sleep_peer_error_ns_median=%lld p90=%lld n=%d\n", (long long)err[m / 2],
           (long long)err[m * 9 / 10], m);
}

static struct task_spec spec(int64_t id, const char *iface, int threshold, int frequency)
{
    struct task_spec s;
    memset(&s, 0, sizeof s);
    s.id = id;
    snprintf(s.interface, sizeof s.interface, "%s", iface);
    s.threshold_ms = threshold;
    s.frequency_ms = frequency;
    s.max_samples = 100;
    return s;
}

static int measure_intervals(void)
{
    struct task_spec s[2] = {spec(1, "GET /burn", 50, 5), spec(2, "GET /wait", 50, 5)};
    if (task_set(s, 2) != 0) {
        fprintf(stderr, "task_cost: task_set: %s\n", sonde_errmsg());
        return -1;
    }
    pthread_t a, b;
    /* One after the other: the busy thread would otherwise share the
     * machine's two CPUs with the watcher and the blocked one's reader. */
    pthread_create(&a, NULL, running_call, NULL);
    pthread_join(a, NULL);
    pthread_create(&b, NULL, blocked_call, NULL);
    pthread_join(b, NULL);
    int64_t deadline = mono_ns() + 10000000000LL;
    for (;;) {
        task_drain(0);
        pthread_mutex_lock(&lock);
        int done = noffsets[0] >= 0 && noffsets[1] >= 0;
        pthread_mutex_unlock(&lock);
        if (done)
            break;
        if (mono_ns() > deadline) {
            fprintf(stderr, "task_cost: no capture after 10 s\n");
            return -1;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    interval_error(0, "running");
    interval_error(1, "blocked");
    return task_set(NULL, 0);
}

/* ---- (b) cost of a watched, fast call ------------------------------------ */

static double pair_loop(void)
{
    int64_t t0 = mono_ns();
    for (long i = 0; i < pairs; i++) {
        sonde_span_t h = sonde_span_begin("GET /watched", NULL);
        if (sonde_span_end(h) != 0) {
            fprintf(stderr, "task_cost: sonde_span_end: %s\n", sonde_errmsg());
            exit(1);
        }
    }
    return (double)(mono_ns() - t0) / (double)pairs;
}

static int measure_cost(void)
{
    struct task_spec s = spec(3, "GET /watched", 200, 100);
    double with[RUNS], without[RUNS], added[RUNS];
    pair_loop(); /* warm: the thread's record, the caches */
    for (int r = 0; r < RUNS; r++) {
        if (task_set(&s, 1) != 0)
            return -1;
        with[r] = pair_loop();
        if (task_set(NULL, 0) != 0)
            return -1;
        without[r] = pair_loop();
        added[r] = with[r] - without[r];
    }
    qsort(with, RUNS, sizeof with[0], cmp_d);
    qsort(without, RUNS, sizeof without[0], cmp_d);
    qsort(added, RUNS, sizeof added[0], cmp_d);
    printf("task_watched_span_pair_ns_median=%.1f min=%.1f\n", with[RUNS / 2], with[0]);
    printf("task_unwatched_span_pair_ns_median=%.1f min=%.1f\n", without[RUNS / 2], without[0]);
    printf("task_added_per_call_ns_median=%.1f\n", added[RUNS / 2]);
    struct task_stats st;
    task_stats(&st);
    if (st.captures != 2)
        fprintf(stderr, "task_cost: %llu captures (expected the 2 of part a)\n",
                (unsigned long long)st.captures);
    return 0;
}

/* What sonde_start does for the handler, sampling left off. */
static int setup(void)
{
    if (modules_init() != 0 || threads_init(256) != 0)
        return -1;
    sampler.signo = SIGRTMIN + 4;
    sampler.max_frames = 64;
    sampler.interval_ns = 10000000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sampler_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sampler.signo, &sa, NULL) != 0)
        return -1;
    threads_register_self(0);
    threads_refresh_stack_maps();
    struct task_sink sk = {on_capture, on_event};
    task_set_sink(&sk);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        pairs = atol(argv[1]);
    if (pairs < 1000)
        pairs = 1000;
    if (setup() != 0) {
        fprintf(stderr, "task_cost: setup failed\n");
        return 1;
    }
    int rc = measure_intervals() == 0 && measure_cost() == 0 ? 0 : 1;
    sleep_peer();
    task_stop();
    modules_shutdown();
    return rc;
}
