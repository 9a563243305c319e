/*
 * test_task.c — active profiling in the agent (src/agent/task.h): real
 * threads in real spans, the real watcher thread, snapshots through the
 * real signal handler (running threads) and the blocked-thread stack
 * read (wall.h), captures exported to gzipped pprof and read back with
 * the pprof reader — through a test sink (task_set_sink) in place of the
 * uplink.  The sampler is set up by hand as sonde_start would, with
 * sampling off: snapshots need no session.
 *
 * Also: the capture export alone (export_capture_pprof_gz), and the
 * snapshot box ignoring signals that are not its request.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/pprof.h"
#include "export.h"
#include "modules.h"
#include "sigsafe/sampler.h"
#include "sonde.h"
#include "span.h"
#include "task.h"
#include "threads.h"
#include "uplink.h"

#define MS 1000000LL

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/* ---- the sink: captures decoded, events recorded ------------------------ */

#define MAX_GOT 48
#define MAX_SNAPS 64
#define MAX_EVENTS 128

struct got_snap {
    int64_t number, offset_ns, tid, wall;
    char state[16], syscall[32], thread[16];
    char frames[1536]; /* names leaf first, ';'-joined */
};

struct got_capture {
    struct uplink_capture c;
    int nsamples;
    struct got_snap s[MAX_SNAPS];
    char sample_types[64];
};

struct got_event {
    int64_t id;
    char event[16], message[512];
};

static pthread_mutex_t got_lock = PTHREAD_MUTEX_INITIALIZER;
static struct got_capture got[MAX_GOT];
static int ngot;
static struct got_event events[MAX_EVENTS];
static int nevents;

static void decode_into(struct got_capture *g, const void *gz, size_t len)
{
    struct pprof_profile *p;
    char err[256];
    if (pprof_decode(gz, len, &p, err, sizeof err) != 0)
        fail_msg("capture profile does not decode: %s", err);
    const Perftools__Profiles__Profile *pb = p->pb;
    g->sample_types[0] = '\0';
    for (size_t i = 0; i < pb->n_sample_type; i++) {
        size_t used = strlen(g->sample_types);
        snprintf(g->sample_types + used, sizeof g->sample_types - used, "%s%s/%s", i ? "," : "",
                 pprof_string(p, pb->sample_type[i]->type), pprof_string(p, pb->sample_type[i]->unit));
    }
    g->nsamples = (int)pb->n_sample;
    for (size_t i = 0; i < pb->n_sample && i < MAX_SNAPS; i++) {
        const Perftools__Profiles__Sample *s = pb->sample[i];
        struct got_snap *o = &g->s[i];
        memset(o, 0, sizeof *o);
        o->number = o->offset_ns = o->tid = -1;
        o->wall = s->n_value > 1 ? s->value[1] : -1;
        for (size_t j = 0; j < s->n_label; j++) {
            const char *k = pprof_string(p, s->label[j]->key);
            const char *v = s->label[j]->str ? pprof_string(p, s->label[j]->str) : "";
            if (!strcmp(k, "snapshot"))
                o->number = s->label[j]->num;
            else if (!strcmp(k, "offset")) {
                o->offset_ns = s->label[j]->num;
                assert_string_equal(pprof_string(p, s->label[j]->num_unit), "nanoseconds");
            } else if (!strcmp(k, "thread_id"))
                o->tid = s->label[j]->num;
            else if (!strcmp(k, "state"))
                snprintf(o->state, sizeof o->state, "%s", v);
            else if (!strcmp(k, "syscall"))
                snprintf(o->syscall, sizeof o->syscall, "%s", v);
            else if (!strcmp(k, "thread"))
                snprintf(o->thread, sizeof o->thread, "%s", v);
        }
        for (size_t j = 0; j < s->n_location_id; j++) {
            const Perftools__Profiles__Location *l = pprof_location(p, s->location_id[j]);
            for (size_t q = 0; l && q < (l->n_line ? l->n_line : 1); q++) {
                char buf[512];
                const char *name = pprof_frame_name(p, l, q, buf, sizeof buf);
                size_t used = strlen(o->frames);
                snprintf(o->frames + used, sizeof o->frames - used, "%s;", name);
            }
        }
    }
    pprof_profile_free(p);
}

static void sink_capture(const struct uplink_capture *c, void *gz, size_t len)
{
    pthread_mutex_lock(&got_lock);
    if (ngot < MAX_GOT) {
        struct got_capture *g = &got[ngot];
        memset(g, 0, sizeof *g);
        g->c = *c;
        decode_into(g, gz, len);
        ngot++;
    }
    pthread_mutex_unlock(&got_lock);
    free(gz);
}

static void sink_event(int64_t id, const char *event, const char *message)
{
    pthread_mutex_lock(&got_lock);
    if (nevents < MAX_EVENTS) {
        events[nevents].id = id;
        snprintf(events[nevents].event, sizeof events[nevents].event, "%s", event);
        snprintf(events[nevents].message, sizeof events[nevents].message, "%s", message ? message : "");
        nevents++;
    }
    pthread_mutex_unlock(&got_lock);
}

static int captures_of(int64_t task_id)
{
    int n = 0;
    pthread_mutex_lock(&got_lock);
    for (int i = 0; i < ngot; i++)
        n += got[i].c.task_id == task_id;
    pthread_mutex_unlock(&got_lock);
    return n;
}

static struct got_capture *capture_n(int64_t task_id, int k)
{
    for (int i = 0; i < ngot; i++)
        if (got[i].c.task_id == task_id && k-- == 0)
            return &got[i];
    return NULL;
}

static int events_of(int64_t task_id, const char *event)
{
    int n = 0;
    pthread_mutex_lock(&got_lock);
    for (int i = 0; i < nevents; i++)
        n += events[i].id == task_id && !strcmp(events[i].event, event);
    pthread_mutex_unlock(&got_lock);
    return n;
}

static const char *event_message(int64_t task_id, const char *event)
{
    for (int i = 0; i < nevents; i++)
        if (events[i].id == task_id && !strcmp(events[i].event, event))
            return events[i].message;
    return NULL;
}

/* Drains (as the agent thread would) until task_id has n captures, up to
 * timeout_ms; returns how many it has. */
static int wait_captures(int64_t task_id, int n, int timeout_ms)
{
    int64_t deadline = mono_ns() + timeout_ms * MS;
    for (;;) {
        task_drain(0);
        int have = captures_of(task_id);
        if (have >= n || mono_ns() > deadline)
            return have;
        struct timespec ts = {0, 5 * MS};
        nanosleep(&ts, NULL);
    }
}

static struct task_stats stats_now(void)
{
    struct task_stats s;
    task_stats(&s);
    return s;
}

static struct task_spec spec(int64_t id, const char *iface, int threshold, int frequency, int max)
{
    struct task_spec s;
    memset(&s, 0, sizeof s);
    s.id = id;
    snprintf(s.interface, sizeof s.interface, "%s", iface);
    s.threshold_ms = threshold;
    s.frequency_ms = frequency;
    s.max_samples = max;
    s.captures = 0;
    s.ends_ms = clock_ns(CLOCK_REALTIME) / MS + 600000;
    return s;
}

/* ---- workloads ------------------------------------------------------------- */

static volatile uint64_t sink_value;

__attribute__((noinline)) void task_test_busy_work(int64_t until_ns)
{
    while (mono_ns() < until_ns)
        for (int i = 0; i < 20000; i++)
            sink_value += (uint64_t)i * 2654435761u;
}

struct worker {
    const char *iface;
    const char *name;
    int busy_ms;        /* burn CPU this long in the span */
    int poll_ms;        /* or block in poll() this long */
    int sleep_ms;       /* or nanosleep */
    int tid;
    sonde_span_t h;
    int64_t begin_rt;   /* CLOCK_REALTIME at begin */
    int64_t elapsed_ns; /* of the wait inside the span */
    int rc, err;
    char trace[64];
    atomic_int ready;
};

static void *worker_main(void *p)
{
    struct worker *w = p;
    if (w->name)
        pthread_setname_np(pthread_self(), w->name);
    w->tid = (int)syscall(SYS_gettid);
    w->begin_rt = clock_ns(CLOCK_REALTIME);
    w->h = sonde_span_begin(w->iface, NULL);
    sonde_span_trace_id(w->h, w->trace, sizeof w->trace);
    sonde_span_set_status(w->h, 200);
    sonde_span_set_peer(w->h, "10.0.0.9:4242");
    atomic_store(&w->ready, 1);
    int64_t t0 = mono_ns();
    if (w->busy_ms) {
        task_test_busy_work(t0 + w->busy_ms * MS);
    } else if (w->poll_ms) {
        errno = 0;
        w->rc = poll(NULL, 0, w->poll_ms);
        w->err = errno;
    } else if (w->sleep_ms) {
        struct timespec ts = {w->sleep_ms / 1000, (w->sleep_ms % 1000) * MS};
        w->rc = nanosleep(&ts, NULL);
        w->err = errno;
    }
    w->elapsed_ns = mono_ns() - t0;
    sonde_span_end(w->h);
    return NULL;
}

static void run_workers(struct worker *w, int n)
{
    pthread_t th[32];
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

static void start_worker(struct worker *w, pthread_t *th)
{
    assert_int_equal(pthread_create(th, NULL, worker_main, w), 0);
    while (!atomic_load(&w->ready))
        sched_yield();
}

static int all_frames_contain(const struct got_capture *g, const char *name)
{
    for (int i = 0; i < g->nsamples && i < MAX_SNAPS; i++)
        if (!strstr(g->s[i].frames, name))
            return 0;
    return 1;
}

/* ---- captures ----------------------------------------------------------- */

/* The acceptance case: a 1.5 s call, threshold 200, frequency 100. */
static void test_busy_call_is_snapshotted_every_frequency_from_the_threshold(void **state)
{
    (void)state;
    struct task_spec s = spec(101, "GET /slow", 200, 100, 10);
    assert_int_equal(task_set(&s, 1), 0);
    assert_int_equal(events_of(101, "started"), 1);
    uint64_t dropped0 = stats_now().snapshots_dropped;
    struct worker w = {.iface = "GET /slow", .name = "slow-worker", .busy_ms = 1500};
    run_workers(&w, 1);
    assert_int_equal(wait_captures(101, 1, 5000), 1);
    struct got_capture *g = capture_n(101, 0);
    assert_string_equal(g->sample_types, "samples/count,wall/nanoseconds");
    assert_string_equal(g->c.interface, "GET /slow");
    assert_string_equal(g->c.trace_id, w.trace);
    assert_string_equal(g->c.peer, "10.0.0.9:4242");
    assert_int_equal(g->c.response_code, 200);
    assert_true(g->c.start_ms >= w.begin_rt / MS && g->c.start_ms <= w.begin_rt / MS + 1);
    assert_true(g->c.total_ms >= 1500 && g->c.total_ms < 1700);
    assert_int_equal(g->c.snapshots, (uint64_t)g->nsamples);
    print_message("busy call: %d snapshots, first at %.1f ms\n", g->nsamples, g->s[0].offset_ns / 1e6);
#ifdef __SANITIZE_THREAD__
    /* TSan delivers a signal to a thread only when it next enters an
     * intercepted call: a busy loop answers late or never.  The capture
     * itself is checked above. */
    skip();
#endif
    /* A running thread that gets no CPU for 5 ms (a loaded machine)
     * misses its snapshot, counted as dropped: the instants still hold. */
    int dropped = (int)(stats_now().snapshots_dropped - dropped0), gaps = 0;
    if (dropped)
        print_message("%d snapshots dropped (machine busy?)\n", dropped);
    assert_true(dropped <= 2);
    assert_true(g->nsamples + dropped >= 12 && g->nsamples + dropped <= 14);
    assert_true(llabs(g->s[0].offset_ns - 200 * MS) <= 10 * MS || dropped);
    for (int i = 0; i < g->nsamples; i++) {
        assert_int_equal(g->s[i].number, i + 1);
        assert_string_equal(g->s[i].state, "running");
        assert_string_equal(g->s[i].syscall, "");
        assert_int_equal(g->s[i].tid, w.tid);
        assert_string_equal(g->s[i].thread, "slow-worker");
        assert_int_equal(g->s[i].wall, 100 * MS);
        if (i > 0) {
            int64_t d = g->s[i].offset_ns - g->s[i - 1].offset_ns;
            int64_t k = (d + 50 * MS) / (100 * MS); /* instants apart */
            gaps += k > 1 ? (int)(k - 1) : 0;
            if (k < 1 || llabs(d - k * 100 * MS) > 10 * MS)
                fail_msg("snapshots %d and %d are %.1f ms apart", i, i + 1, d / 1e6);
        }
    }
    assert_true(gaps <= dropped);
    assert_true(all_frames_contain(g, "task_test_busy_work"));
    assert_int_equal(task_set(NULL, 0), 0);
    assert_int_equal(events_of(101, "stopped"), 1);
}

/* A call blocked in poll() is read from outside: its poll is not cut. */
static void test_call_blocked_in_poll_is_captured_without_interrupting_it(void **state)
{
    (void)state;
    struct task_spec s = spec(102, "GET /poll", 200, 100, 10);
    assert_int_equal(task_set(&s, 1), 0);
    struct worker w = {.iface = "GET /poll", .name = "poll-worker", .poll_ms = 2000};
    run_workers(&w, 1);
    if (w.rc != 0)
        fail_msg("poll returned %d (%s) after %.1f ms", w.rc, strerror(w.err), w.elapsed_ns / 1e6);
    assert_true(w.elapsed_ns >= 2000 * MS);
    assert_int_equal(wait_captures(102, 1, 5000), 1);
    struct got_capture *g = capture_n(102, 0);
    print_message("blocked call: %d snapshots, leaf stack %.80s\n", g->nsamples, g->s[0].frames);
    assert_true(g->nsamples >= 17 && g->nsamples <= 19);
    assert_true(g->c.total_ms >= 2000 && g->c.total_ms < 2200);
    for (int i = 0; i < g->nsamples; i++) {
        assert_string_equal(g->s[i].state, "sleeping");
        assert_string_equal(g->s[i].syscall, "poll");
        assert_int_equal(g->s[i].tid, w.tid);
    }
    assert_true(all_frames_contain(g, "poll"));
    assert_true(all_frames_contain(g, "worker_main"));
    assert_int_equal(task_set(NULL, 0), 0);
}

/* Fast calls of the interface and slow calls of another one are never
 * captured; a slow call after them is (and is the only capture). */
static void test_fast_calls_and_other_interfaces_are_not_captured(void **state)
{
    (void)state;
    struct task_spec s = spec(103, "GET /watched", 200, 100, 10);
    assert_int_equal(task_set(&s, 1), 0);
    struct worker fast[4], other = {.iface = "GET /other", .sleep_ms = 600};
    for (int i = 0; i < 4; i++)
        fast[i] = (struct worker){.iface = "GET /watched", .sleep_ms = 50};
    for (int i = 0; i < 4; i++)
        run_workers(&fast[i], 1);
    run_workers(&other, 1);
    struct worker slow = {.iface = "GET /watched", .sleep_ms = 400};
    run_workers(&slow, 1);
    assert_int_equal(wait_captures(103, 1, 5000), 1);
    struct got_capture *g = capture_n(103, 0);
    assert_string_equal(g->c.trace_id, slow.trace);
    assert_true(g->nsamples >= 2 && g->nsamples <= 3);
    assert_string_equal(g->s[0].syscall, "clock_nanosleep");
    assert_int_equal(captures_of(103), 1);
    assert_int_equal(task_set(NULL, 0), 0);
}

/* max_samples - captures calls at most, while the server's count stands. */
static void test_max_samples_bounds_the_captures_taken(void **state)
{
    (void)state;
    struct task_spec s[2] = {spec(104, "GET /limit", 100, 50, 3), spec(105, "GET /control", 100, 50, 10)};
    s[0].captures = 1; /* another agent took one: two are left */
    assert_int_equal(task_set(s, 2), 0);
    struct worker w[4];
    for (int i = 0; i < 4; i++)
        w[i] = (struct worker){.iface = "GET /limit", .poll_ms = 400};
    run_workers(w, 4);
    /* A control call after them: once it is in, so is anything before. */
    struct worker control = {.iface = "GET /control", .poll_ms = 300};
    run_workers(&control, 1);
    assert_int_equal(wait_captures(105, 1, 5000), 1);
    assert_int_equal(captures_of(104), 2);
    /* Both handed over: none left until the server's count moves. */
    struct worker late = {.iface = "GET /limit", .poll_ms = 300};
    run_workers(&late, 1);
    run_workers(&control, 1);
    assert_int_equal(wait_captures(105, 2, 5000), 2);
    assert_int_equal(captures_of(104), 2);
    /* The server's new count (3 of 3): still none. */
    s[0].captures = 3;
    assert_int_equal(task_set(s, 2), 0);
    run_workers(&late, 1);
    run_workers(&control, 1);
    assert_int_equal(wait_captures(105, 3, 5000), 3);
    assert_int_equal(captures_of(104), 2);
    assert_int_equal(task_set(NULL, 0), 0);
}

/* A task that leaves the list mid-capture: "stopped" at once, the
 * capture discarded, nothing handed over. */
static void test_task_removed_mid_capture_is_discarded(void **state)
{
    (void)state;
    struct task_spec s = spec(106, "GET /removed", 100, 20, 10);
    assert_int_equal(task_set(&s, 1), 0);
    struct task_stats st0 = stats_now();
    struct worker w = {.iface = "GET /removed", .poll_ms = 800};
    pthread_t th;
    start_worker(&w, &th);
    int64_t deadline = mono_ns() + 5000 * MS;
    while (stats_now().snapshots < st0.snapshots + 3 && mono_ns() < deadline)
        task_drain(0);
    assert_true(stats_now().snapshots >= st0.snapshots + 3);
    assert_int_equal(task_set(NULL, 0), 0);
    assert_int_equal(events_of(106, "stopped"), 1);
    deadline = mono_ns() + 5000 * MS;
    while (stats_now().captures_discarded == st0.captures_discarded && mono_ns() < deadline)
        task_drain(0);
    assert_int_equal(stats_now().captures_discarded, st0.captures_discarded + 1);
    pthread_join(th, NULL);
    task_drain(0);
    assert_int_equal(captures_of(106), 0);
}

struct blocked_span {
    sonde_span_t h;
    int tid;
    int64_t begin_rt;
    int fds[2];
    atomic_int ready;
};

static void *block_on_pipe(void *p)
{
    struct blocked_span *b = p;
    pthread_setname_np(pthread_self(), "pipe-worker");
    b->tid = (int)syscall(SYS_gettid);
    b->begin_rt = clock_ns(CLOCK_REALTIME);
    b->h = sonde_span_begin("POST /handoff", "trace-handoff-1");
    atomic_store(&b->ready, 1);
    char c;
    ssize_t n = read(b->fds[0], &c, 1);
    (void)n;
    return NULL;
}

/* The span is ended by another thread (a request handed over): the
 * capture ends there, with the status and peer set from outside. */
static void test_span_ended_from_another_thread(void **state)
{
    (void)state;
    struct task_spec s = spec(107, "POST /handoff", 100, 50, 10);
    assert_int_equal(task_set(&s, 1), 0);
    struct task_stats st0 = stats_now();
    struct blocked_span b = {0};
    assert_int_equal(pipe(b.fds), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, block_on_pipe, &b), 0);
    while (!atomic_load(&b.ready))
        sched_yield();
    int64_t deadline = mono_ns() + 5000 * MS;
    while (stats_now().snapshots < st0.snapshots + 4 && mono_ns() < deadline)
        task_drain(0);
    assert_int_equal(sonde_span_set_status(b.h, 504), 0);
    assert_int_equal(sonde_span_set_peer(b.h, "192.168.7.7:9000"), 0);
    int64_t end_rt = clock_ns(CLOCK_REALTIME);
    assert_int_equal(sonde_span_end(b.h), 0);
    assert_int_equal(wait_captures(107, 1, 5000), 1);
    struct got_capture *g = capture_n(107, 0);
    assert_string_equal(g->c.trace_id, "trace-handoff-1");
    assert_int_equal(g->c.response_code, 504);
    assert_string_equal(g->c.peer, "192.168.7.7:9000");
    int64_t want = (end_rt - b.begin_rt) / MS;
    assert_true(g->c.total_ms >= want - 1 && g->c.total_ms <= want + 2);
    assert_true(g->nsamples >= 4);
    assert_string_equal(g->s[0].state, "sleeping");
    assert_string_equal(g->s[0].syscall, "read");
    assert_string_equal(g->s[0].thread, "pipe-worker");
    /* the thread still blocks in its read, outside any span */
    assert_int_equal(write(b.fds[1], "x", 1), 1);
    pthread_join(th, NULL);
    close(b.fds[0]);
    close(b.fds[1]);
    assert_int_equal(task_set(NULL, 0), 0);
}

/* Many slow calls at once, each its own capture of its own thread. */
static void test_many_threads_each_get_their_capture(void **state)
{
    (void)state;
    enum { N = 8 };
    struct task_spec s = spec(108, "GET /many", 100, 50, 20);
    assert_int_equal(task_set(&s, 1), 0);
    struct worker w[N];
    for (int i = 0; i < N; i++)
        w[i] = (struct worker){.iface = "GET /many", .poll_ms = 400 + 20 * i};
    run_workers(w, N);
    assert_int_equal(wait_captures(108, N, 5000), N);
    for (int i = 0; i < N; i++) {
        struct got_capture *g = NULL;
        for (int k = 0; k < N && !g; k++) {
            struct got_capture *c = capture_n(108, k);
            if (!strcmp(c->c.trace_id, w[i].trace))
                g = c;
        }
        if (!g)
            fail_msg("no capture of worker %d", i);
        assert_true(g->nsamples >= 5);
        for (int k = 0; k < g->nsamples; k++)
            assert_int_equal(g->s[k].tid, w[i].tid);
        assert_int_equal(w[i].rc, 0);
    }
    struct task_stats st = stats_now();
    print_message("stats: %" PRIu64 " captures, %" PRIu64 " snapshots, %" PRIu64 " dropped\n",
                  st.captures, st.snapshots, st.snapshots_dropped);
    assert_int_equal(task_set(NULL, 0), 0);
}

/* Events: started / stopped, an invalid task refused once, task_end
 * stops a task for good. */
static void test_events_invalid_tasks_and_task_end(void **state)
{
    (void)state;
    struct task_spec s[3] = {spec(110, "GET /a", 200, 100, 5), spec(111, "GET /b", 10, 100, 5),
                             spec(112, "GET /c", 200, 2000, 5)};
    assert_int_equal(task_set(s, 3), 0);
    assert_int_equal(events_of(110, "started"), 1);
    assert_int_equal(events_of(111, "started"), 0);
    assert_int_equal(events_of(111, "error"), 1);
    assert_non_null(strstr(event_message(111, "error"), "threshold_ms 10"));
    assert_int_equal(events_of(112, "error"), 1);
    assert_non_null(strstr(event_message(112, "error"), "frequency_ms 2000"));
    /* the same list again: nothing new */
    assert_int_equal(task_set(s, 3), 0);
    assert_int_equal(events_of(110, "started"), 1);
    assert_int_equal(events_of(111, "error"), 1);
    /* the server refused a claim: stopped now, never restarted */
    task_end(110);
    assert_int_equal(events_of(110, "stopped"), 1);
    assert_int_equal(task_set(s, 3), 0);
    assert_int_equal(events_of(110, "started"), 1);
    task_end(999); /* unknown: no-op */
    assert_int_equal(task_set(NULL, 0), 0);
    assert_int_equal(events_of(110, "stopped"), 1);
    assert_int_equal(task_set(NULL, 1), -EINVAL);
}

/* A task stops by itself at ends_ms, its unfinished capture dropped. */
static void test_task_stops_at_its_end(void **state)
{
    (void)state;
    struct task_spec s = spec(113, "GET /ends", 100, 50, 10);
    s.ends_ms = clock_ns(CLOCK_REALTIME) / MS + 400;
    assert_int_equal(task_set(&s, 1), 0);
    struct worker w = {.iface = "GET /ends", .poll_ms = 900};
    pthread_t th;
    start_worker(&w, &th);
    int64_t deadline = mono_ns() + 5000 * MS;
    while (events_of(113, "stopped") == 0 && mono_ns() < deadline)
        task_drain(0);
    assert_int_equal(events_of(113, "stopped"), 1);
    assert_true(clock_ns(CLOCK_REALTIME) / MS >= s.ends_ms);
    pthread_join(th, NULL);
    task_drain(0);
    assert_int_equal(captures_of(113), 0);
    assert_int_equal(task_set(NULL, 0), 0);
    assert_int_equal(events_of(113, "stopped"), 1);
}

/* The snapshot box answers its request only: a SNAPSHOT_TAG signal with
 * no request, or a request for another thread, changes nothing. */
static void test_snapshot_box_ignores_signals_not_its_request(void **state)
{
    (void)state;
    struct snapshot_box *b = &sampler.snapshot;
    uint64_t st = atomic_load(&b->state);
    assert_int_equal(SNAPSHOT_PHASE(st), SNAPSHOT_IDLE);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sampler.signo;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = SNAPSHOT_TAG;
    assert_int_equal(syscall(SYS_rt_tgsigqueueinfo, getpid(), (int)syscall(SYS_gettid), sampler.signo, &si), 0);
    assert_int_equal(atomic_load(&b->state), st);
    /* a request for another thread */
    atomic_store(&b->tid, 1);
    atomic_store(&b->state, (st & ~3ull) | SNAPSHOT_REQUESTED);
    assert_int_equal(syscall(SYS_rt_tgsigqueueinfo, getpid(), (int)syscall(SYS_gettid), sampler.signo, &si), 0);
    assert_int_equal(SNAPSHOT_PHASE(atomic_load(&b->state)), SNAPSHOT_REQUESTED);
    /* and one for this thread: answered, with this function's caller on it */
    atomic_store(&b->tid, (int)syscall(SYS_gettid));
    assert_int_equal(syscall(SYS_rt_tgsigqueueinfo, getpid(), (int)syscall(SYS_gettid), sampler.signo, &si), 0);
    assert_int_equal(SNAPSHOT_PHASE(atomic_load(&b->state)), SNAPSHOT_WRITTEN);
    assert_true(b->nframes >= 2);
    atomic_store(&b->state, st & ~3ull);
}

/* ---- export alone --------------------------------------------------------- */

static void test_capture_export_labels_each_snapshot(void **state)
{
    (void)state;
    uintptr_t pcs[2] = {(uintptr_t)task_test_busy_work + 4,
                        (uintptr_t)test_capture_export_labels_each_snapshot + 8};
    struct export_snapshot snaps[3] = {
        {.offset_ns = 200 * MS, .pcs = pcs, .nframes = 2, .state = 'R', .syscall = -1},
        {.offset_ns = 300 * MS, .pcs = pcs, .nframes = 2, .state = 'S', .syscall = SYS_epoll_wait},
        {.offset_ns = 400 * MS, .pcs = pcs, .nframes = 2, .state = 'D', .syscall = 999},
    };
    struct export_capture c = {.snaps = snaps, .n = 3, .interval_ns = 100 * MS,
                               .time_nanos = 1700000000000000000LL, .duration_nanos = 450 * MS,
                               .thread = "exp-thread", .tid = 4321};
    void *gz;
    size_t len;
    char err[256];
    assert_int_equal(export_capture_pprof_gz(&c, &gz, &len, err, sizeof err), 0);
    struct got_capture *g = calloc(1, sizeof *g);
    assert_non_null(g);
    decode_into(g, gz, len);
    free(gz);
    assert_int_equal(g->nsamples, 3);
    assert_string_equal(g->sample_types, "samples/count,wall/nanoseconds");
    const char *states[3] = {"running", "sleeping", "disk"}, *calls[3] = {"", "epoll_wait", "nr 999"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g->s[i].number, i + 1);
        assert_int_equal(g->s[i].offset_ns, (200 + 100 * i) * MS);
        assert_string_equal(g->s[i].state, states[i]);
        assert_string_equal(g->s[i].syscall, calls[i]);
        assert_string_equal(g->s[i].thread, "exp-thread");
        assert_int_equal(g->s[i].tid, 4321);
        assert_int_equal(g->s[i].wall, 100 * MS);
        assert_non_null(strstr(g->s[i].frames, "task_test_busy_work"));
    }
    free(g);
    /* bad input */
    assert_int_equal(export_capture_pprof_gz(NULL, &gz, &len, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "no capture"));
    c.interval_ns = 0;
    assert_int_equal(export_capture_pprof_gz(&c, &gz, &len, err, sizeof err), -EINVAL);
    assert_null(gz);
    c.interval_ns = 1;
    assert_int_equal(export_capture_pprof_gz(&c, NULL, &len, err, sizeof err), -EINVAL);
    char nrbuf[32];
    assert_string_equal(export_syscall_name(SYS_futex, nrbuf, sizeof nrbuf), "futex");
    assert_string_equal(export_syscall_name(4000, nrbuf, sizeof nrbuf), "nr 4000");
}

/* ---- fork -------------------------------------------------------------- */

/* A forked child starts with no task, no capture and no watcher. */
static void test_forked_child_forgets_tasks(void **state)
{
    (void)state;
    struct task_spec s = spec(114, "GET /fork", 200, 100, 10);
    assert_int_equal(task_set(&s, 1), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        task_atfork_child();
        struct task_stats st;
        task_stats(&st);
        int ok = st.tasks_started == 0 && task_drain(0) == 0 &&
                 task_next_due(0) == INT64_MAX;
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(task_set(NULL, 0), 0);
}

/* ---- setup ---------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (modules_init() != 0 || threads_init(256) != 0)
        return -1;
    /* What sonde_start does for the handler, sampling left off. */
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
    struct task_sink sink = {sink_capture, sink_event};
    task_set_sink(&sink);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    task_stop();
    task_set_sink(NULL);
    modules_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capture_export_labels_each_snapshot),
        cmocka_unit_test(test_snapshot_box_ignores_signals_not_its_request),
        cmocka_unit_test(test_busy_call_is_snapshotted_every_frequency_from_the_threshold),
        cmocka_unit_test(test_call_blocked_in_poll_is_captured_without_interrupting_it),
        cmocka_unit_test(test_fast_calls_and_other_interfaces_are_not_captured),
        cmocka_unit_test(test_max_samples_bounds_the_captures_taken),
        cmocka_unit_test(test_task_removed_mid_capture_is_discarded),
        cmocka_unit_test(test_span_ended_from_another_thread),
        cmocka_unit_test(test_many_threads_each_get_their_capture),
        cmocka_unit_test(test_events_invalid_tasks_and_task_end),
        cmocka_unit_test(test_task_stops_at_its_end),
        cmocka_unit_test(test_forked_child_forgets_tasks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
