/*
 * agent.c — the agent's lifecycle: sonde_start / sonde_stop /
 * sonde_write_profile, the library constructor and destructor, fork
 * handling, and the agent thread that drains the sample ring.
 *
 * Where it sits: the signal handler (sigsafe/handler.c) fills the ring;
 * the agent thread (agent_main) drains it every 10-100 ms (drain_period) into the stack
 * table, runs the wall sampler (wall.c), and every second looks for new
 * threads and modules.  Export (export.c) symbolizes and writes files.
 *
 * Two modes, possibly together: local recording (SONDE_OUTPUT or
 * sonde_start with an output: sampling from start to stop into A.tab) and
 * connected (SONDE_SERVER: sampling only while a session runs, each
 * session with its own table, session.c; active profiling's tasks watched
 * on their own thread, task.h, their finished captures exported here
 * (task_drain); the network on the uplink's own thread, uplink.h).
 * Sampling is reference-counted between the two
 * (agent_sampling_acquire/release).
 *
 * Guest rules: nothing here exits or aborts; every failure is returned,
 * logged to SONDE_LOG if set, and leaves the host running.  The only
 * signal disposition we set is our own sampling signal's, and only when
 * the host has none; it is never uninstalled (a late signal must not meet
 * SIG_DFL, which would kill the process), the handler just ignores it.
 */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "export.h"
#include "modules.h"
#include "session.h"
#include "span.h"
#include "stacktab.h"
#include "task.h"
#include "threads.h"
#include "uplink.h"

#define SONDE_EXPORT __attribute__((visibility("default")))
#define DRAIN_MIN_NS 10000000LL  /* 10 ms */
#define DRAIN_MAX_NS 100000000LL /* 100 ms */
#define DISCOVER_NS 1000000000LL /* 1 s */
/* Connected but idle (no session, nothing sampled): the loop only looks
 * for the uplink's work and the once-a-second readings. */
#define IDLE_NS 250000000LL      /* 250 ms */

static struct {
    pthread_mutex_t lock;      /* lifecycle: start/stop/write */
    pthread_mutex_t tab_lock;  /* the stack table */
    sonde_config_t cfg;
    char base_output[4096];    /* output before fork suffixes */
    int started;
    _Atomic int stop_req;
    pthread_t thread;
    int thread_running;
    struct stack_table *tab;
    struct span_map *spans;    /* the spans tab's stacks point into */
    int64_t start_realtime_ns, start_mono_ns, stop_mono_ns;
    uint64_t dropped_table;
    int atfork_registered;
    int server;                /* connected to a server: sessions + uplink */
    _Atomic int sampling_refs; /* local recording (1) + running sessions */
    struct uplink_config link;
} A = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .tab_lock = PTHREAD_MUTEX_INITIALIZER,
};

static int64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the agent thread ---------------------------------------------- */

/* Moves every published sample into the stack table.  Caller holds tab_lock. */
int agent_add_sample(struct stack_table *tab, const struct sample_slot *s, uint32_t span, int types)
{
    int refused = 0;
    for (int type = SONDE_PROFILE_CPU; type <= SONDE_PROFILE_WALL; type <<= 1) {
        if (!(s->types & type) || !(types & type))
            continue;
        if (stacktab_add(tab, (uint8_t)type, type == SONDE_PROFILE_WALL ? s->state : 0, s->tid, span, s->pcs,
                         s->nframes, 1, s->weight_ns) != 0)
            refused++;
    }
    return refused;
}

/* Moves every published sample into the local stack table (when
 * recording to a file) and into every running session.  Caller holds
 * tab_lock.  Sessions are the agent thread's: only it drains them. */
static void drain_locked(int sessions)
{
    struct sample_slot *s;
    while ((s = ring_peek(&sampler.ring))) {
        if (A.tab) {
            uint32_t span = s->span_key ? span_map_add(A.spans, s->span_key, s->interface, s->trace_id) : 0;
            A.dropped_table += (uint64_t)agent_add_sample(A.tab, s, span, SONDE_PROFILE_CPU | SONDE_PROFILE_WALL);
        }
        if (sessions)
            session_add_sample(s);
        ring_release(&sampler.ring, s);
    }
}

static void drain(void)
{
    pthread_mutex_lock(&A.tab_lock);
    drain_locked(0);
    pthread_mutex_unlock(&A.tab_lock);
}

/* The agent thread's drain: sessions too. */
void agent_drain(void)
{
    pthread_mutex_lock(&A.tab_lock);
    drain_locked(A.server);
    pthread_mutex_unlock(&A.tab_lock);
}

int agent_sampling_acquire(void)
{
    if (atomic_fetch_add(&A.sampling_refs, 1) > 0)
        return 0;
    atomic_store_explicit(&sampler.running, 1, memory_order_release);
    int failed = threads_start_all();
    if (failed)
        agent_log("warning: %d threads got no CPU timer", failed);
    return 0;
}

void agent_sampling_release(void)
{
    if (atomic_fetch_sub(&A.sampling_refs, 1) != 1)
        return;
    atomic_store_explicit(&sampler.running, 0, memory_order_release);
    threads_stop_all();
}

/* How long the ring may fill before it is drained: a quarter of its slots
 * at the expected sample rate (frequency x live threads), within
 * [10, 100] ms.  A busy host on few cores should not be woken 100 times a
 * second for 200 samples. */
static int64_t drain_period(void)
{
    uint64_t rate = (uint64_t)A.cfg.frequency_hz * (threads_live() ? threads_live() : 1);
    uint64_t slots = sampler.ring.mask + 1;
    int64_t p = (int64_t)(slots * 1000000000ull / 4 / rate);
    return p < DRAIN_MIN_NS ? DRAIN_MIN_NS : p > DRAIN_MAX_NS ? DRAIN_MAX_NS : p;
}

/* The agent thread sleeps on a condition variable (CLOCK_MONOTONIC) so
 * that sonde_stop() wakes it at once instead of waiting out a drain
 * period of up to 100 ms at the host's exit, and agent_wake() (a capture
 * finished) without waiting out the idle period. */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond;
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;
static int wake_req; /* under wake_lock */

static void wake_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&wake_cond, &a);
    pthread_condattr_destroy(&a);
}

static void sleep_until(int64_t mono_ns)
{
    struct timespec ts = {mono_ns / 1000000000, mono_ns % 1000000000};
    pthread_mutex_lock(&wake_lock);
    while (!atomic_load(&A.stop_req) && !wake_req &&
           pthread_cond_timedwait(&wake_cond, &wake_lock, &ts) == 0)
        ;
    wake_req = 0;
    pthread_mutex_unlock(&wake_lock);
}

void agent_wake(void)
{
    pthread_once(&wake_once, wake_init);
    pthread_mutex_lock(&wake_lock);
    wake_req = 1;
    pthread_cond_broadcast(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

static void wake_agent_thread(void)
{
    pthread_mutex_lock(&wake_lock);
    atomic_store(&A.stop_req, 1);
    pthread_cond_broadcast(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

static void *agent_main(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sampler.signo);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    prctl(PR_SET_NAME, "sonde-agent", 0, 0, 0);
    threads_register_self(SLOT_AGENT);

    int64_t now = clock_ns(CLOCK_MONOTONIC);
    int64_t next_drain = now + DRAIN_MIN_NS;
    int64_t next_discover = now + DISCOVER_NS;
    int64_t next_wall = now + sampler.interval_ns;
    int wall_type = (A.cfg.types & SONDE_PROFILE_WALL) != 0;
    while (!atomic_load(&A.stop_req)) {
        now = clock_ns(CLOCK_MONOTONIC);
        int sampling = atomic_load(&sampler.running);
        int wall = wall_type && sampling;
        if (wall && now >= next_wall) {
            wall_pass(now);
            next_wall += sampler.interval_ns;
            if (next_wall < now)
                next_wall = now + sampler.interval_ns;
        }
        if (now >= next_drain) {
            /* New or closed modules (dlopen/dlclose): cheap when nothing
             * changed.  We do not interpose dlopen: glibc picks $ORIGIN,
             * RUNPATH and namespace from its caller's address. */
            modules_refresh();
            agent_drain();
            next_drain = now + (sampling ? drain_period() : IDLE_NS);
        }
        if (A.server) {
            session_tick(now);
            if (atomic_load(&sampler.running) != sampling) /* a session began or ended */
                next_drain = now + DRAIN_MIN_NS;
            task_drain(0); /* finished captures: exported, to the uplink */
        }
        if (now >= next_discover) {
            threads_discover();
            threads_refresh_stack_maps();
            next_discover = now + DISCOVER_NS;
        }
        int64_t next = next_drain;
        if (wall && next_wall < next)
            next = next_wall;
        if (next_discover < next)
            next = next_discover;
        if (A.server) {
            int64_t due = session_next_due(now);
            if (due < next)
                next = due;
            due = task_next_due(now);
            if (due < next)
                next = due;
        }
        sleep_until(next);
    }
    if (A.server) {
        /* Stopping: running sessions end now and, with the captures that
         * finished, go to the uplink, which sonde_stop then flushes
         * within its bound. */
        agent_drain();
        session_end_all();
        task_drain(0);
    }
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------- */

static void calibrate_tsc(void)
{
    int64_t n0 = clock_ns(CLOCK_MONOTONIC);
    uint64_t t0 = __rdtsc();
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    int64_t n1 = clock_ns(CLOCK_MONOTONIC);
    uint64_t t1 = __rdtsc();
    if (t1 > t0)
        sampler.tsc_mult = (uint64_t)(((unsigned __int128)(n1 - n0) << 32) / (t1 - t0));
}

static int install_handler(int signo)
{
    struct sigaction old;
    if (sigaction(signo, NULL, &old) != 0)
        return agent_error(-errno, "cannot query signal %d: %s", signo, strerror(errno));
    if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == sampler_handler)
        return 0;
    if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)
        goto busy;
    if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction)
        goto busy;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = sampler_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, NULL) != 0)
        return agent_error(-errno, "cannot install the handler for signal %d: %s", signo, strerror(errno));
    return 0;
busy:
    return agent_error(-EBUSY,
                       "signal %d already has a handler in this process; choose a free one with "
                       "SONDE_SIGNAL (e.g. SIGRTMIN+5)",
                       signo);
}

static void atfork_prepare(void);
static void atfork_parent(void);
static void atfork_child(void);

static int env_ms(const char *name, int def, int max)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > max) {
        agent_log("%s=%s: expected 0 to %d ms; using %d", name, v, max, def);
        return def;
    }
    return (int)x;
}

/* The uplink's configuration: the server fields of cfg, the command
 * line, and two timing knobs only tests and unusual hosts change. */
static void link_config_fill(const sonde_config_t *cfg)
{
    struct uplink_config *l = &A.link;
    memset(l, 0, sizeof *l);
    snprintf(l->server, sizeof l->server, "%s", cfg->server);
    size_t n = strlen(l->server);
    while (n > 0 && l->server[n - 1] == '/')
        l->server[--n] = 0;
    snprintf(l->app, sizeof l->app, "%s", cfg->app);
    snprintf(l->instance, sizeof l->instance, "%s", cfg->instance);
    snprintf(l->token, sizeof l->token, "%s", cfg->token);
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, l->cmdline, sizeof l->cmdline - 1);
        close(fd);
        for (ssize_t i = 0; i < r - 1; i++)
            if (!l->cmdline[i])
                l->cmdline[i] = ' ';
    }
    l->register_delay_ms = env_ms("SONDE_REGISTER_DELAY_MS", 500, 3600000);
    l->exit_flush_ms = env_ms("SONDE_EXIT_FLUSH_MS", 2000, 60000);
}

static int start_locked(const sonde_config_t *cfg)
{
    if (A.started)
        return agent_error(-EALREADY, "sonde is already running in this process");
    if (cfg->frequency_hz < 1 || cfg->frequency_hz > 10000)
        return agent_error(-EINVAL, "frequency_hz=%d: expected 1 to 10000", cfg->frequency_hz);
    if (!(cfg->types & (SONDE_PROFILE_CPU | SONDE_PROFILE_WALL)) ||
        (cfg->types & ~(SONDE_PROFILE_CPU | SONDE_PROFILE_WALL)))
        return agent_error(-EINVAL, "types=%d: expected SONDE_PROFILE_CPU and/or SONDE_PROFILE_WALL",
                           cfg->types);
    if (cfg->max_frames < 1 || cfg->max_frames > UNWIND_MAX_FRAMES)
        return agent_error(-EINVAL, "max_frames=%d: expected 1 to %d", cfg->max_frames, UNWIND_MAX_FRAMES);
    if (cfg->ring_slots < 16 || cfg->ring_slots > (1u << 20))
        return agent_error(-EINVAL, "ring_slots=%zu: expected 16 to 1048576", cfg->ring_slots);
    if (cfg->max_stacks < 16 || cfg->max_stacks > (1u << 22))
        return agent_error(-EINVAL, "max_stacks=%zu: expected 16 to 4194304", cfg->max_stacks);
    if (cfg->format != SONDE_FORMAT_PPROF && cfg->format != SONDE_FORMAT_COLLAPSED)
        return agent_error(-EINVAL, "format=%d: expected SONDE_FORMAT_PPROF or SONDE_FORMAT_COLLAPSED",
                           (int)cfg->format);
    int signo = cfg->signal ? cfg->signal : SIGRTMIN + 3;
    char sigbuf[16];
    snprintf(sigbuf, sizeof sigbuf, "%d", signo);
    if (config_parse_signal(sigbuf) != signo)
        return agent_error(-EINVAL, "signal=%d is not usable for sampling", signo);

    int rc = threads_init(0);
    if (rc)
        return agent_error(rc, "out of memory for the thread table");
    if (!A.atfork_registered) {
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        A.atfork_registered = 1;
    }
    A.cfg = *cfg;
    A.cfg.signal = signo;
    snprintf(A.base_output, sizeof A.base_output, "%s", cfg->output);

    if (!sampler.ring.slots) {
        if (ring_init(&sampler.ring, cfg->ring_slots) != 0)
            return agent_error(-ENOMEM, "out of memory for %zu sample slots", cfg->ring_slots);
    } else {
        ring_reset(&sampler.ring);
    }
    if (cfg->server[0] && strncmp(cfg->server, "http://", 7) != 0 && strncmp(cfg->server, "https://", 8) != 0)
        return agent_error(-EINVAL, "server=%s: expected a URL like http://host:7070", cfg->server);
    A.server = cfg->server[0] != 0;
    /* A local stack table unless only a server gets the samples. */
    int local = !A.server || cfg->output[0];
    pthread_mutex_lock(&A.tab_lock);
    stacktab_free(A.tab);
    span_map_free(A.spans);
    A.tab = local ? stacktab_new(cfg->max_stacks, cfg->max_frames) : NULL;
    A.spans = local ? span_map_new(cfg->max_stacks) : NULL;
    if (!A.spans) {
        stacktab_free(A.tab);
        A.tab = NULL;
    }
    A.dropped_table = 0;
    pthread_mutex_unlock(&A.tab_lock);
    if (local && !A.tab)
        return agent_error(-ENOMEM, "out of memory for a stack table of %zu stacks", cfg->max_stacks);
    if (A.server && (rc = session_init(cfg)) != 0)
        return agent_error(rc, "out of memory for sessions");
    if (A.server)
        task_set_notify(agent_wake); /* a finished capture is exported at once */

    if ((rc = modules_init()) != 0)
        return agent_error(rc, "cannot read the loaded modules: %s", strerror(-rc));
    threads_refresh_stack_maps();
    if (!sampler.tsc_mult)
        calibrate_tsc();

    sampler.signo = signo;
    sampler.types = cfg->types;
    sampler.max_frames = cfg->max_frames;
    sampler.interval_ns = 1000000000LL / cfg->frequency_hz;
    const char *st = getenv("SONDE_SELFTIME");
    sampler.selftime = st && *st == '1';
    atomic_store(&sampler.samples, 0);
    atomic_store(&sampler.truncated, 0);
    atomic_store(&sampler.no_slot, 0);
    atomic_store(&sampler.selftime_n, 0);
    for (int i = 0; i < SELFTIME_BUCKETS; i++)
        atomic_store(&sampler.selftime_hist[i], 0);

    if ((rc = install_handler(signo)) != 0)
        return rc;

    threads_register_self(0);
    threads_discover();
    A.start_realtime_ns = clock_ns(CLOCK_REALTIME);
    A.start_mono_ns = clock_ns(CLOCK_MONOTONIC);
    A.stop_mono_ns = 0;
    atomic_store(&A.stop_req, 0);
    atomic_store(&A.sampling_refs, 0);
    if (local)
        agent_sampling_acquire(); /* recording to a file: sample from now on */

    pthread_once(&wake_once, wake_init);
    rc = threads_create_agent_thread(&A.thread, agent_main, NULL);
    if (rc != 0) {
        atomic_store(&A.sampling_refs, 0);
        atomic_store(&sampler.running, 0);
        threads_stop_all();
        return agent_error(-rc, "cannot start the agent thread: %s", strerror(rc));
    }
    A.thread_running = 1;
    A.started = 1;
    if (A.server) {
        link_config_fill(cfg);
        if ((rc = uplink_start(&A.link)) != 0)
            agent_log("cannot start the server link: %s", strerror(-rc));
    }
    agent_log("started: rss %ld KiB, %d Hz, types %s%s, signal %d, output %s, server %s%s%s", agent_rss_kib(),
              cfg->frequency_hz, cfg->types & SONDE_PROFILE_CPU ? "cpu" : "",
              cfg->types & SONDE_PROFILE_WALL ? (cfg->types & SONDE_PROFILE_CPU ? ",wall" : "wall") : "",
              signo, cfg->output[0] ? cfg->output : "(none)", A.server ? cfg->server : "(none)",
              A.server ? ", app " : "", A.server ? cfg->app : "");
    return 0;
}

SONDE_EXPORT int sonde_start(const sonde_config_t *cfg)
{
    sonde_config_t def;
    if (!cfg) {
        sonde_config_init(&def);
        cfg = &def;
    }
    pthread_mutex_lock(&A.lock);
    int rc = start_locked(cfg);
    pthread_mutex_unlock(&A.lock);
    return rc;
}

static const char *name_cb(uint32_t tid, void *arg)
{
    (void)arg;
    return threads_name(tid);
}

static void log_selftime(void)
{
    uint64_t n = atomic_load(&sampler.selftime_n);
    if (!sampler.selftime || n == 0)
        return;
    uint64_t acc = 0, p50 = 0, p99 = 0;
    int have50 = 0;
    for (int i = 0; i < SELFTIME_BUCKETS; i++) {
        acc += atomic_load(&sampler.selftime_hist[i]);
        if (!have50 && acc * 2 >= n) {
            p50 = (uint64_t)i * SELFTIME_NS_PER_BUCKET + SELFTIME_NS_PER_BUCKET / 2;
            have50 = 1;
        }
        if (acc * 100 >= n * 99) {
            p99 = (uint64_t)i * SELFTIME_NS_PER_BUCKET + SELFTIME_NS_PER_BUCKET / 2;
            break;
        }
    }
    agent_log("selftime: tsc_mult=%llu samples=%llu handler_ns_p50=%llu handler_ns_p99=%llu",
              (unsigned long long)sampler.tsc_mult,
              (unsigned long long)n, (unsigned long long)p50, (unsigned long long)p99);
}

static int write_locked(const char *path, sonde_format_t format)
{
    char msg[512] = "";
    threads_refresh_names();
    pthread_mutex_lock(&A.tab_lock);
    /* With a server, the ring also feeds sessions, which only the agent
     * thread may touch: leave it to that thread while it runs. */
    if (!A.server || !A.thread_running)
        drain_locked(0);
    int64_t end = A.stop_mono_ns ? A.stop_mono_ns : clock_ns(CLOCK_MONOTONIC);
    struct export_request req = {
        .tab = A.tab,
        .types = A.cfg.types,
        .period_ns = sampler.interval_ns,
        .time_nanos = A.start_realtime_ns,
        .duration_nanos = end - A.start_mono_ns,
        .thread_name = name_cb,
        .arg = NULL,
        .spans = A.spans,
    };
    int rc = export_write(&req, (int)format, path, msg, sizeof msg);
    pthread_mutex_unlock(&A.tab_lock);
    if (rc != 0)
        return agent_error(rc, "cannot write %s: %s", path, msg[0] ? msg : strerror(-rc));
    agent_log("wrote %s (rss %ld KiB)", path, agent_rss_kib());
    return 0;
}

SONDE_EXPORT int sonde_write_profile(const char *path, sonde_format_t format)
{
    pthread_mutex_lock(&A.lock);
    int rc;
    if (!A.tab)
        rc = agent_error(-EINVAL, "nothing recorded: sonde was never started");
    else if (!path && !A.cfg.output[0])
        rc = agent_error(-EINVAL, "no path given and no output configured");
    else
        rc = write_locked(path ? path : A.cfg.output, format);
    pthread_mutex_unlock(&A.lock);
    return rc;
}

static int stop_locked(void)
{
    if (!A.started)
        return 0;
    /* Local recording stops now; sessions end on the agent thread as it
     * leaves, their profiles go to the uplink, which gets a bounded time
     * to send them. */
    if (!A.server) {
        atomic_store_explicit(&sampler.running, 0, memory_order_release);
        threads_stop_all();
    }
    A.stop_mono_ns = clock_ns(CLOCK_MONOTONIC);
    if (A.thread_running) {
        wake_agent_thread();
        pthread_join(A.thread, NULL);
        A.thread_running = 0;
    }
    if (A.server) {
        /* Captures finished since the agent thread's last drain go to the
         * uplink; the watcher stops (its "stopped" events are queued)
         * before the uplink's last flush. */
        task_drain(0);
        task_stop();
        uplink_stop();
    }
    atomic_store(&A.sampling_refs, 0);
    atomic_store_explicit(&sampler.running, 0, memory_order_release);
    threads_stop_all();
    threads_free_wall_stacks();
    threads_wait_quiescent();
    drain();
    A.started = 0;
    A.server = 0;
    log_selftime();
    agent_log("stopped: rss %ld KiB, samples=%llu dropped_ring=%llu dropped_table=%llu truncated=%llu",
              agent_rss_kib(),
              (unsigned long long)atomic_load(&sampler.samples),
              (unsigned long long)atomic_load(&sampler.ring.dropped),
              (unsigned long long)A.dropped_table, (unsigned long long)atomic_load(&sampler.truncated));
    if (A.cfg.output[0])
        return write_locked(A.cfg.output, A.cfg.format);
    return 0;
}

SONDE_EXPORT int sonde_stop(void)
{
    pthread_mutex_lock(&A.lock);
    int rc = stop_locked();
    pthread_mutex_unlock(&A.lock);
    return rc;
}

SONDE_EXPORT int sonde_get_stats(sonde_stats_t *out)
{
    if (!out)
        return agent_error(-EINVAL, "sonde_get_stats: out is NULL");
    memset(out, 0, sizeof *out);
    out->samples = atomic_load(&sampler.samples);
    out->dropped_ring = atomic_load(&sampler.ring.dropped);
    pthread_mutex_lock(&A.tab_lock);
    out->dropped_table = A.dropped_table;
    pthread_mutex_unlock(&A.tab_lock);
    out->truncated = atomic_load(&sampler.truncated);
    out->threads = threads_seen();
    out->sessions = session_count_started();
    struct uplink_stats ls;
    uplink_get_stats(&ls);
    out->uploads = ls.uploads;
    out->uploads_dropped = ls.uploads_dropped;
    out->spans = span_count_begun();
    out->spans_sampled = span_count_sampled();
    struct task_stats ts;
    task_stats(&ts);
    out->tasks = ts.tasks_started;
    out->captures = ls.captures_sent;
    out->captures_refused = ls.captures_refused;
    out->snapshots = ts.snapshots;
    return 0;
}

/* ---- fork ---------------------------------------------------------- */

/* The uplink's lock first: while libcurl starts a resolver thread it
 * holds the uplink's curl lock and needs the registry (pthread_create
 * interposer), so taking the registry first could stall the fork. */
static void atfork_prepare(void)
{
    uplink_atfork_prepare();
    threads_atfork_prepare();
}

static void atfork_parent(void)
{
    threads_atfork_parent();
    uplink_atfork_parent();
}

/* In the child only the forking thread exists, no timer survived, and any
 * lock another thread held is held forever: reset every lock and all
 * shared state.  Without follow_fork the child is simply not profiled and
 * costs nothing; with it, the child starts its own agent thread and
 * records into OUTPUT.<pid>. */
static void atfork_child(void)
{
    pthread_mutex_init(&A.lock, NULL);
    pthread_mutex_init(&A.tab_lock, NULL);
    pthread_mutex_init(&wake_lock, NULL);
    if (A.started)
        wake_init(); /* a waiter in the parent may have left the cond busy */
    threads_atfork_child();
    uplink_atfork_child();
    task_atfork_child();
    modules_atfork_child();
    A.thread_running = 0;
    if (!A.started)
        return;
    atomic_store(&sampler.running, 0);
    atomic_store(&A.sampling_refs, 0);
    ring_reset(&sampler.ring);
    if (A.tab) {
        stacktab_clear(A.tab);
        span_map_free(A.spans);
        A.spans = span_map_new(A.cfg.max_stacks);
        if (!A.spans) {
            stacktab_free(A.tab);
            A.tab = NULL;
        }
    }
    A.dropped_table = 0;
    if (A.server) {
        /* A prefork worker becomes an agent of its own: same app and
         * instance, its own pid, its own agent thread and link.  The link
         * registers only once the child has lived register_delay_ms, so a
         * child that execs or exits soon costs two thread creations and
         * never touches the network.  Local recording follows the child
         * only with follow_fork, as without a server. */
        session_atfork_child();
        atomic_store(&A.stop_req, 0);
        if (A.tab && A.cfg.follow_fork && A.base_output[0]) {
            snprintf(A.cfg.output, sizeof A.cfg.output, "%.4080s.%d", A.base_output, (int)getpid());
            agent_sampling_acquire();
        } else if (A.tab) {
            stacktab_free(A.tab);
            span_map_free(A.spans);
            A.tab = NULL;
            A.spans = NULL;
            A.cfg.output[0] = 0;
        }
        A.start_realtime_ns = clock_ns(CLOCK_REALTIME);
        A.start_mono_ns = clock_ns(CLOCK_MONOTONIC);
        A.stop_mono_ns = 0;
        if (threads_create_agent_thread(&A.thread, agent_main, NULL) == 0)
            A.thread_running = 1;
        uplink_restart_child();
        return;
    }
    if (!A.cfg.follow_fork || !A.base_output[0]) {
        A.started = 0;
        A.cfg.output[0] = 0;
        return;
    }
    snprintf(A.cfg.output, sizeof A.cfg.output, "%.4080s.%d", A.base_output, (int)getpid());
    A.start_realtime_ns = clock_ns(CLOCK_REALTIME);
    A.start_mono_ns = clock_ns(CLOCK_MONOTONIC);
    A.stop_mono_ns = 0;
    atomic_store(&A.stop_req, 0);
    atomic_store(&sampler.samples, 0);
    agent_sampling_acquire();
    if (threads_create_agent_thread(&A.thread, agent_main, NULL) == 0)
        A.thread_running = 1;
}

/* ---- constructor / destructor -------------------------------------- */

__attribute__((constructor)) static void sonde_ctor(void)
{
    agent_log_open(getenv("SONDE_LOG"));
    threads_init(0);
    const char *out = getenv("SONDE_OUTPUT");
    const char *server = getenv("SONDE_SERVER");
    if (server && *server && (!out || !*out)) {
        /* Connected: every process that loads the agent is an agent of
         * its own (a short-lived one never registers: see uplink.h). */
        sonde_config_t cfg;
        if (sonde_config_init(&cfg) != 0) {
            agent_log("not started: %s", sonde_errmsg());
            return;
        }
        if (sonde_start(&cfg) != 0)
            agent_log("not started: %s", sonde_errmsg());
        return;
    }
    if (!out || !*out)
        return;
    /* `sonde record` names the one process it means (the program it
     * execs); other programs that inherit the environment stay quiet
     * unless SONDE_FOLLOW_EXEC=1, and then write OUTPUT.<pid>. */
    const char *only = getenv("SONDE_ONLY_PID");
    const char *fe = getenv("SONDE_FOLLOW_EXEC");
    int other = only && *only && atoi(only) != (int)getpid();
    if (other && !(fe && *fe == '1'))
        return;
    sonde_config_t cfg;
    if (sonde_config_init(&cfg) != 0) {
        agent_log("not started: %s", sonde_errmsg());
        return;
    }
    if (other)
        snprintf(cfg.output, sizeof cfg.output, "%.4080s.%d", out, (int)getpid());
    if (sonde_start(&cfg) != 0)
        agent_log("not started: %s", sonde_errmsg());
}

__attribute__((destructor)) static void sonde_dtor(void)
{
    if (sonde_stop() != 0)
        agent_log("at exit: %s", sonde_errmsg());
}
