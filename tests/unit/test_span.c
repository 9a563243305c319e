/*
 * test_span.c — the span API (sonde_span_* in sonde.h, src/agent/span.c):
 * handles, trace ids, ending from any thread, stale handles, running out
 * of records and getting them back when threads exit; the per-session
 * span map; and samples tagged with their thread's span — by the real
 * signal handler on a real CPU-time timer, and by the wall sampler for a
 * blocked thread — read straight from the sample ring.
 */
#include <errno.h>
#include <inttypes.h>
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
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent.h"
#include "common/pprof.h"
#include "modules.h"
#include "sigsafe/sampler.h"
#include "sigsafe/span_rec.h"
#include "sonde.h"
#include "span.h"
#include "threads.h"

/* Set to 1 once agent.c's drain tags stack entries with their span
 * (span_map_add per drained sample, the map passed to export): then
 * test_agent_profile_labels_samples_with_their_span checks the whole
 * path, sonde_start to the pprof file. */
#ifndef SPAN_AGENT_DRAIN_TAGS
#define SPAN_AGENT_DRAIN_TAGS 1
#endif

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int is_hex32(const char *s)
{
    if (strlen(s) != 32)
        return 0;
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* ---- handles ---------------------------------------------------------- */

static void test_begin_end_and_setters_follow_the_handle(void **state)
{
    (void)state;
    uint64_t begun = span_count_begun();
    sonde_span_t h = sonde_span_begin("GET /checkout", "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_int_not_equal(h, 0);
    assert_int_equal(span_count_begun(), begun + 1);
    char id[64];
    assert_int_equal(sonde_span_trace_id(h, id, sizeof id), 0);
    assert_string_equal(id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_int_equal(sonde_span_set_status(h, 503), 0);
    assert_int_equal(sonde_span_set_peer(h, "10.0.0.7:51234"), 0);
    /* what the record holds for the span (status and peer are not in
     * samples; the record is this thread's) */
    struct span_rec *r = span_tls_rec;
    assert_non_null(r);
    assert_int_equal(atomic_load(&r->key), h);
    assert_string_equal(r->interface, "GET /checkout");
    assert_int_equal(atomic_load(&r->status), 503);
    assert_string_equal(r->peer, "10.0.0.7:51234");
    assert_true(r->start_ns > 1600000000000000000LL); /* realtime ns since the epoch */

    assert_int_equal(sonde_span_end(h), 0);
    assert_int_equal(sonde_span_end(h), -ESRCH);
    assert_non_null(strstr(sonde_errmsg(), "sonde_span_end"));
    assert_int_equal(sonde_span_set_status(h, 200), -ESRCH);
    assert_int_equal(sonde_span_set_peer(h, "x"), -ESRCH);
    assert_int_equal(sonde_span_trace_id(h, id, sizeof id), -ESRCH);
    assert_string_equal(id, "");
    assert_int_equal(atomic_load(&r->key), 0);

    /* 0 and made-up handles (an index past the records) are refused */
    assert_int_equal(sonde_span_end(0), -ESRCH);
    assert_int_equal(sonde_span_end(((uint64_t)1 << 40) | 0xffff), -ESRCH);
    assert_int_equal(sonde_span_set_status(UINT64_MAX, 1), -ESRCH);
    assert_int_equal(sonde_span_trace_id(h, NULL, 8), -EINVAL);
    assert_int_equal(sonde_span_trace_id(h, id, 0), -EINVAL);
}

static void test_generated_trace_ids_are_32_hex_and_differ(void **state)
{
    (void)state;
    enum { N = 2000 };
    static char ids[N][33];
    for (int i = 0; i < N; i++) {
        sonde_span_t h = sonde_span_begin(NULL, i & 1 ? NULL : "");
        assert_int_not_equal(h, 0);
        assert_string_equal(span_tls_rec->interface, "unknown");
        assert_int_equal(sonde_span_trace_id(h, ids[i], sizeof ids[i]), 0);
        if (!is_hex32(ids[i]))
            fail_msg("trace id %d is not 32 hex digits: \"%s\"", i, ids[i]);
        assert_int_equal(sonde_span_end(h), 0);
    }
    qsort(ids, N, sizeof ids[0], (int (*)(const void *, const void *))strcmp);
    for (int i = 1; i < N; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("trace id %s made twice", ids[i]);
}

static void test_long_strings_are_cut_to_their_limits(void **state)
{
    (void)state;
    char iface[300], trace[300];
    memset(iface, 'i', sizeof iface - 1);
    iface[sizeof iface - 1] = '\0';
    memset(trace, 't', sizeof trace - 1);
    trace[sizeof trace - 1] = '\0';
    sonde_span_t h = sonde_span_begin(iface, trace);
    assert_int_not_equal(h, 0);
    assert_int_equal(strlen(span_tls_rec->interface), SONDE_SPAN_INTERFACE_MAX - 1);
    char id[128];
    assert_int_equal(sonde_span_trace_id(h, id, sizeof id), 0);
    assert_int_equal(strlen(id), SONDE_SPAN_TRACE_MAX - 1);
    char small[5];
    assert_int_equal(sonde_span_trace_id(h, small, sizeof small), 0);
    assert_string_equal(small, "tttt");
    assert_int_equal(sonde_span_set_peer(h, iface), 0);
    assert_int_equal(strlen(span_tls_rec->peer), SONDE_SPAN_PEER_MAX - 1);
    assert_int_equal(sonde_span_set_peer(h, NULL), 0);
    assert_string_equal(span_tls_rec->peer, "");
    assert_int_equal(sonde_span_end(h), 0);
}

static void test_begin_ends_the_open_span_and_stale_handles_are_refused(void **state)
{
    (void)state;
    sonde_span_t a = sonde_span_begin("GET /a", "trace-a");
    sonde_span_t b = sonde_span_begin("GET /b", "trace-b");
    assert_int_not_equal(a, 0);
    assert_int_not_equal(b, 0);
    assert_int_not_equal(a, b);
    /* same record, later generation: a is gone for good */
    assert_int_equal(a & ((1u << SPAN_INDEX_BITS) - 1), b & ((1u << SPAN_INDEX_BITS) - 1));
    assert_int_equal(sonde_span_end(a), -ESRCH);
    assert_int_equal(sonde_span_set_status(a, 200), -ESRCH);
    char id[64];
    assert_int_equal(sonde_span_trace_id(a, id, sizeof id), -ESRCH);
    assert_int_equal(sonde_span_trace_id(b, id, sizeof id), 0);
    assert_string_equal(id, "trace-b");
    assert_int_equal(sonde_span_end(b), 0);
    /* a new span after the end does not revive b */
    sonde_span_t c = sonde_span_begin("GET /c", NULL);
    assert_int_equal(sonde_span_end(b), -ESRCH);
    assert_int_equal(sonde_span_end(c), 0);
}

struct ender {
    sonde_span_t h;
    atomic_int *go;
    int rc;
};

static void *end_span(void *p)
{
    struct ender *e = p;
    while (e->go && !atomic_load(e->go))
        ;
    e->rc = sonde_span_end(e->h);
    return NULL;
}

static void test_span_is_ended_from_another_thread_once(void **state)
{
    (void)state;
    sonde_span_t h = sonde_span_begin("POST /async", NULL);
    assert_int_equal(sonde_span_set_status(h, 201), 0);
    struct ender e = {h, NULL, 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, end_span, &e), 0);
    pthread_join(th, NULL);
    assert_int_equal(e.rc, 0);
    assert_int_equal(sonde_span_end(h), -ESRCH);

    /* Many threads race to end one span: exactly one wins. */
    for (int round = 0; round < 20; round++) {
        enum { T = 4 };
        atomic_int go = 0;
        struct ender es[T];
        pthread_t ths[T];
        h = sonde_span_begin("POST /race", NULL);
        for (int i = 0; i < T; i++) {
            es[i] = (struct ender){h, &go, 1};
            assert_int_equal(pthread_create(&ths[i], NULL, end_span, &es[i]), 0);
        }
        atomic_store(&go, 1);
        int won = 0;
        for (int i = 0; i < T; i++) {
            pthread_join(ths[i], NULL);
            if (es[i].rc == 0)
                won++;
            else
                assert_int_equal(es[i].rc, -ESRCH);
        }
        assert_int_equal(won, 1);
    }
}

/* ---- running out of records ------------------------------------------ */

struct holder_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ready, got, refused, release;
};

static void *hold_a_span(void *p)
{
    struct holder_pool *pool = p;
    sonde_span_t h = sonde_span_begin("GET /hold", NULL);
    pthread_mutex_lock(&pool->lock);
    pool->ready++;
    if (h)
        pool->got++;
    else
        pool->refused++;
    pthread_cond_broadcast(&pool->cond);
    while (!pool->release)
        pthread_cond_wait(&pool->cond, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    /* exits with its span open: the destructor ends it and gives the
     * record back */
    return NULL;
}

static void *begin_once(void *p)
{
    sonde_span_t h = sonde_span_begin("GET /after", NULL);
    *(int *)p = h != 0 && sonde_span_end(h) == 0;
    return NULL;
}

/* Rounds of threads that each begin one span and exit: from the second
 * round on, every record comes off the free list. */
static void threads_begin_once(int rounds)
{
    for (int round = 0; round < rounds; round++) {
        pthread_t th[16];
        int ok[16];
        for (int i = 0; i < 16; i++)
            assert_int_equal(pthread_create(&th[i], NULL, begin_once, &ok[i]), 0);
        for (int i = 0; i < 16; i++) {
            pthread_join(th[i], NULL);
            assert_true(ok[i]);
        }
    }
}

static void test_records_run_out_then_come_back_when_threads_exit(void **state)
{
    (void)state;
    threads_begin_once(3);
#if defined(__SANITIZE_THREAD__)
    /* Thousands of threads take minutes under TSan; the records' free
     * list was raced above already. */
    skip();
#endif
    /* Every record taken at once: SPAN_SLOTS + 8 threads, each holding a
     * span, while this thread holds its own record too. */
    sonde_span_t mine = sonde_span_begin("GET /main", NULL);
    assert_int_not_equal(mine, 0);
    enum { EXTRA = 8, N = SPAN_SLOTS + EXTRA };
    pthread_t *th = calloc(N, sizeof *th);
    assert_non_null(th);
    struct holder_pool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    uint64_t refused0 = span_count_no_slot();
    int created = 0;
    for (; created < N; created++)
        if (pthread_create(&th[created], &attr, hold_a_span, &pool) != 0)
            break;
    pthread_attr_destroy(&attr);
    if (created < N) {
        /* Release what we made before failing: the machine's limits. */
        pthread_mutex_lock(&pool.lock);
        pool.release = 1;
        pthread_cond_broadcast(&pool.cond);
        pthread_mutex_unlock(&pool.lock);
        for (int i = 0; i < created; i++)
            pthread_join(th[i], NULL);
        free(th);
        fail_msg("could create only %d threads of %d", created, N);
    }
    pthread_mutex_lock(&pool.lock);
    while (pool.ready < N)
        pthread_cond_wait(&pool.cond, &pool.lock);
    int got = pool.got, refused = pool.refused;
    pool.release = 1;
    pthread_cond_broadcast(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    free(th);
    /* this thread's record + got = every record; the rest were refused */
    assert_int_equal(got, SPAN_SLOTS - 1);
    assert_int_equal(refused, EXTRA + 1);
    assert_int_equal(span_count_no_slot() - refused0, (uint64_t)refused);
    /* the main thread's span lived through it all */
    assert_int_equal(sonde_span_end(mine), 0);

    /* The exited threads gave their records back. */
    threads_begin_once(2);
}

/* After fork the child's thread keeps its record, under its own tid, and
 * makes trace ids of its own (not the parent's next ones). */
static void test_forked_child_makes_its_own_trace_ids(void **state)
{
    (void)state;
    sonde_span_t h = sonde_span_begin("GET /fork", NULL);
    assert_int_not_equal(h, 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[64] = "";
        int ok = sonde_span_end(h) == 0; /* the span went along */
        sonde_span_t c = sonde_span_begin("GET /child", NULL);
        ok &= c != 0 && sonde_span_trace_id(c, id, sizeof id) == 0;
        ok &= atomic_load(&span_tls_rec->owner) == gettid();
        if (!ok)
            strcpy(id, "child failed");
        ssize_t n = write(fds[1], id, sizeof id);
        _exit(n == (ssize_t)sizeof id ? 0 : 1);
    }
    char child_id[64];
    assert_int_equal(read(fds[0], child_id, sizeof child_id), (ssize_t)sizeof child_id);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fds[0]);
    close(fds[1]);
    assert_true(is_hex32(child_id));
    assert_int_equal(sonde_span_end(h), 0);
    char id[64];
    sonde_span_t p = sonde_span_begin("GET /parent", NULL);
    assert_int_equal(sonde_span_trace_id(p, id, sizeof id), 0);
    assert_string_not_equal(id, child_id);
    assert_int_equal(sonde_span_end(p), 0);
}

/* ---- the span map ------------------------------------------------------ */

static void test_span_map_adds_gets_counts_and_drops_when_full(void **state)
{
    (void)state;
    struct span_map *m = span_map_new(3);
    assert_non_null(m);
    assert_int_equal(span_map_count(m), 0);
    assert_int_equal(span_map_add(m, 0, "GET /x", "t0"), 0); /* no span */
    uint32_t a = span_map_add(m, 0x10001, "GET /x", "trace-1");
    uint32_t b = span_map_add(m, 0x20001, "GET /x", "trace-2");
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);
    assert_int_equal(span_map_add(m, 0x10001, "ignored", "ignored"), a); /* the same span */
    /* slot strings need not be terminated: at most MAX - 1 bytes read */
    char iface[SONDE_SPAN_INTERFACE_MAX], trace[SONDE_SPAN_TRACE_MAX];
    memset(iface, 'i', sizeof iface);
    memset(trace, 't', sizeof trace);
    uint32_t c = span_map_add(m, 0x30002, iface, trace);
    assert_int_equal(c, 3);
    assert_int_equal(span_map_count(m), 3);
    assert_int_equal(span_map_dropped(m), 0);
    /* full: new spans are dropped and counted, known ones still found */
    assert_int_equal(span_map_add(m, 0x40001, "GET /y", "trace-4"), 0);
    assert_int_equal(span_map_add(m, 0x50001, "GET /y", "trace-5"), 0);
    assert_int_equal(span_map_dropped(m), 2);
    assert_int_equal(span_map_add(m, 0x20001, "GET /x", "trace-2"), b);

    const char *i1, *t1;
    assert_int_equal(span_map_get(m, a, &i1, &t1), 0);
    assert_string_equal(i1, "GET /x");
    assert_string_equal(t1, "trace-1");
    const char *i2, *t2;
    assert_int_equal(span_map_get(m, b, &i2, &t2), 0);
    assert_ptr_equal(i1, i2); /* interfaces are stored once */
    assert_string_equal(t2, "trace-2");
    const char *i3, *t3;
    assert_int_equal(span_map_get(m, c, &i3, &t3), 0);
    assert_int_equal(strlen(i3), SONDE_SPAN_INTERFACE_MAX - 1);
    assert_int_equal(strlen(t3), SONDE_SPAN_TRACE_MAX - 1);
    assert_int_equal(span_map_get(m, 0, &i3, &t3), -ENOENT);
    assert_int_equal(span_map_get(m, 4, &i3, &t3), -ENOENT);
    span_map_free(m);
    span_map_free(NULL);

    /* Many spans: strings stay put as the map grows. */
    m = span_map_new(100000);
    assert_non_null(m);
    const char *first;
    for (uint64_t k = 1; k <= 100000; k++) {
        char t[40];
        snprintf(t, sizeof t, "%032" PRIx64, k);
        uint32_t idx = span_map_add(m, k << SPAN_INDEX_BITS, k % 3 ? "GET /a" : "GET /b", t);
        assert_int_equal(idx, k);
        if (k == 1)
            assert_int_equal(span_map_get(m, 1, NULL, &first), 0);
    }
    assert_string_equal(first, "00000000000000000000000000000001");
    const char *ix, *tx;
    assert_int_equal(span_map_get(m, 99999, &ix, &tx), 0);
    assert_string_equal(ix, "GET /b");
    assert_string_equal(tx, "0000000000000000000000000001869f");
    assert_int_equal(span_map_count(m), 100000);
    span_map_free(m);
}

/* ---- samples tagged with their span ------------------------------------ */

static volatile uint64_t sink;

__attribute__((noinline)) static void burn_us(int us)
{
    int64_t end = now_ns() + us * 1000LL;
    while (now_ns() < end)
        for (int i = 0; i < 1000; i++)
            sink += (uint64_t)i * 2654435761u;
}

/* The sampler set up by hand (what sonde_start does), its ring read by
 * this test instead of the agent thread. */
static void sampler_setup(int types)
{
    assert_int_equal(threads_init(256), 0);
    if (!sampler.ring.slots)
        assert_int_equal(ring_init(&sampler.ring, 4096), 0);
    while (ring_peek(&sampler.ring))
        ring_release(&sampler.ring, ring_peek(&sampler.ring));
    sampler.signo = SIGRTMIN + 4;
    sampler.types = types;
    sampler.max_frames = 32;
    sampler.interval_ns = 1000000; /* 1 ms */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sampler_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(sampler.signo, &sa, NULL), 0);
    assert_non_null(threads_register_self(0));
}

/* Takes every sample in the ring of thread tid: how many, how many
 * carried key (and its strings), how many carried no span, how many some
 * other span. */
struct tally {
    int n, tagged, untagged, other;
    char interface[SONDE_SPAN_INTERFACE_MAX], trace_id[SONDE_SPAN_TRACE_MAX];
};

static void drain(uint32_t tid, uint64_t key, struct tally *t)
{
    struct sample_slot *s;
    while ((s = ring_peek(&sampler.ring))) {
        if (s->tid == tid) {
            t->n++;
            if (s->span_key == 0) {
                t->untagged++;
            } else if (s->span_key == key) {
                t->tagged++;
                memcpy(t->interface, s->interface, sizeof t->interface);
                memcpy(t->trace_id, s->trace_id, sizeof t->trace_id);
            } else {
                t->other++;
            }
        }
        ring_release(&sampler.ring, s);
    }
}

static void test_handler_tags_cpu_samples_with_the_threads_span(void **state)
{
    (void)state;
    sampler_setup(SONDE_PROFILE_CPU);
    uint32_t tid = (uint32_t)gettid();

    /* Inside a span: every sample taken carries it (the timer starts
     * after the begin, so no sample of this thread predates the span). */
    sonde_span_t h = sonde_span_begin("GET /ring", "ring-trace-1");
    assert_int_not_equal(h, 0);
    uint64_t sampled0 = span_count_sampled();
    atomic_store(&sampler.running, 1);
    assert_int_equal(threads_start_all(), 0);
    struct tally in = {0};
    int64_t deadline = now_ns() + 20 * 1000000000LL;
    while (in.n < 20 && now_ns() < deadline) {
        burn_us(2000);
        drain(tid, h, &in);
    }
    uint64_t counted = atomic_load(&span_tls_rec->samples);
    assert_int_equal(sonde_span_end(h), 0);
    if (in.n < 20)
        fail_msg("only %d samples in 20 s of CPU", in.n);
    assert_int_equal(in.tagged, in.n);
    assert_string_equal(in.interface, "GET /ring");
    assert_string_equal(in.trace_id, "ring-trace-1");
    assert_true(counted >= (uint64_t)in.tagged);
    assert_int_equal(span_count_sampled(), sampled0 + 1);

    /* After the end: none does. */
    struct tally left = {0}, out = {0};
    drain(tid, h, &left); /* taken before or after the end */
    deadline = now_ns() + 20 * 1000000000LL;
    while (out.n < 10 && now_ns() < deadline) {
        burn_us(2000);
        drain(tid, h, &out);
    }
    atomic_store(&sampler.running, 0);
    threads_stop_all();
    assert_true(out.n >= 10);
    assert_int_equal(out.untagged, out.n);
    assert_int_equal(left.other + out.other, 0);
}

struct blocked {
    atomic_int ready;
    int tid;
    sonde_span_t h;
    int fds[2];
};

static void *block_in_span(void *p)
{
    struct blocked *b = p;
    b->tid = gettid();
    b->h = sonde_span_begin("GET /slow-db", "wall-trace-7");
    atomic_store(&b->ready, 1);
    char c;
    ssize_t n = read(b->fds[0], &c, 1); /* blocked: the wall sampler's case */
    (void)n;
    return NULL;
}

static void test_wall_sampler_tags_blocked_threads_with_their_span(void **state)
{
    (void)state;
    sampler_setup(SONDE_PROFILE_WALL);
    struct blocked b = {0};
    assert_int_equal(pipe(b.fds), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, block_in_span, &b), 0);
    while (!atomic_load(&b.ready))
        sched_yield();
    assert_int_not_equal(b.h, 0);

    struct tally in = {0};
    int64_t deadline = now_ns() + 10 * 1000000000LL;
    while (in.n < 3 && now_ns() < deadline) {
        wall_pass(now_ns());
        drain((uint32_t)b.tid, b.h, &in);
    }
    if (in.n < 3)
        fail_msg("the blocked thread got %d wall samples in 10 s", in.n);
    assert_int_equal(in.tagged, in.n);
    assert_string_equal(in.interface, "GET /slow-db");
    assert_string_equal(in.trace_id, "wall-trace-7");

    /* Ended from here while the thread still blocks: untagged. */
    assert_int_equal(sonde_span_end(b.h), 0);
    struct tally out = {0};
    deadline = now_ns() + 10 * 1000000000LL;
    while (out.n < 3 && now_ns() < deadline) {
        wall_pass(now_ns());
        drain((uint32_t)b.tid, b.h, &out);
    }
    assert_true(out.n >= 3);
    assert_int_equal(out.untagged, out.n);

    assert_int_equal(write(b.fds[1], "x", 1), 1);
    pthread_join(th, NULL);
    close(b.fds[0]);
    close(b.fds[1]);
    threads_free_wall_stacks();
}

/* The whole path: the agent started as a host would, a thread in a span,
 * the profile read back.  Needs agent.c's drain to carry spans. */
static void test_agent_profile_labels_samples_with_their_span(void **state)
{
    (void)state;
    if (!SPAN_AGENT_DRAIN_TAGS)
        skip();
    char path[] = "/tmp/test_span_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sonde_config_t cfg;
    sonde_config_init(&cfg);
    cfg.frequency_hz = 997;
    cfg.output[0] = '\0';
    assert_int_equal(sonde_start(&cfg), 0);
    sonde_span_t h = sonde_span_begin("GET /e2e", NULL);
    char trace[64];
    assert_int_equal(sonde_span_trace_id(h, trace, sizeof trace), 0);
    burn_us(300000);
    assert_int_equal(sonde_span_end(h), 0);
    assert_int_equal(sonde_write_profile(path, SONDE_FORMAT_PPROF), 0);
    assert_int_equal(sonde_stop(), 0);

    struct pprof_profile *p;
    char err[256];
    if (pprof_load_file(path, &p, err, sizeof err) != 0)
        fail_msg("%s", err);
    unlink(path);
    int64_t labelled = 0;
    for (size_t i = 0; i < p->pb->n_sample; i++) {
        const Perftools__Profiles__Sample *s = p->pb->sample[i];
        const char *iface = NULL, *tid = NULL;
        for (size_t j = 0; j < s->n_label; j++) {
            const char *k = pprof_string(p, s->label[j]->key);
            if (!strcmp(k, "interface"))
                iface = pprof_string(p, s->label[j]->str);
            if (!strcmp(k, "trace_id"))
                tid = pprof_string(p, s->label[j]->str);
        }
        if (iface && !strcmp(iface, "GET /e2e")) {
            assert_non_null(tid);
            assert_string_equal(tid, trace);
            labelled += s->value[0];
        }
    }
    pprof_profile_free(p);
    if (labelled < 10)
        fail_msg("%ld samples labelled GET /e2e after 300 ms of CPU at 997 Hz", (long)labelled);
    sonde_stats_t st;
    assert_int_equal(sonde_get_stats(&st), 0);
    assert_true(st.spans >= 1);
    assert_true(st.spans_sampled >= 1);
}

static int group_setup(void **state)
{
    (void)state;
    return modules_init();
}

static int group_teardown(void **state)
{
    (void)state;
    modules_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_profile_labels_samples_with_their_span),
        cmocka_unit_test(test_begin_end_and_setters_follow_the_handle),
        cmocka_unit_test(test_generated_trace_ids_are_32_hex_and_differ),
        cmocka_unit_test(test_long_strings_are_cut_to_their_limits),
        cmocka_unit_test(test_begin_ends_the_open_span_and_stale_handles_are_refused),
        cmocka_unit_test(test_span_is_ended_from_another_thread_once),
        cmocka_unit_test(test_records_run_out_then_come_back_when_threads_exit),
        cmocka_unit_test(test_forked_child_makes_its_own_trace_ids),
        cmocka_unit_test(test_span_map_adds_gets_counts_and_drops_when_full),
        cmocka_unit_test(test_handler_tags_cpu_samples_with_the_threads_span),
        cmocka_unit_test(test_wall_sampler_tags_blocked_threads_with_their_span),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
