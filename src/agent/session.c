/*
 * session.c — the agent's profiling sessions when it is connected to a
 * server.  Contract in session.h.
 *
 * A session is one period during which this process is profiled for the
 * server: it owns a stack table and a span map, so sessions that overlap
 * (a Profile Now during a CPU-trigger session) each get every sample of
 * their own period, and a session's profile holds only its own samples.
 * The sampler runs while at least one session does (agent.c counts).
 *
 * What starts one, evaluated on the agent thread:
 *  - Profile Now: each request the uplink delivered, for its duration.
 *  - Triggers (SPEC A2): once a second the monitor (monitor.h) gives CPU %
 *    and memory % of the capacity the process really has.  A trigger that
 *    is on fires when its reading is at or above its threshold, unless its
 *    own session still runs or it is cooling down: after the session it
 *    started ends, it does not look again for cooldown_s.  (Cooldown runs
 *    from the end, not the start, so a cooldown shorter than the duration
 *    still leaves a quiet gap between two triggered sessions.)
 *  - Default sampling (SPEC A3): time is cut into periods of period_s from
 *    the moment the settings arrived; in each, one window of window_s
 *    starts at a uniformly random offset in [0, period_s - window_s].
 *    New sampling settings start a new period at once.
 * At most SESSION_MAX_RUNNING run at once; a start beyond that is
 * refused and logged (a Profile Now then shows no session from this
 * agent, which the agent log explains).
 *
 * Active profiling rides on the same work: the tasks the uplink delivers
 * go to task.c (task_set; task_end for those the server refused), which
 * watches and captures on its own thread.
 *
 * Ending: the ring is drained, the session's table is exported to a
 * gzipped pprof (export.h, symbolization included — this runs on the
 * agent thread, which is why the ring is drained right before and after),
 * and the bytes go to the uplink with the metadata: actual duration,
 * samples, traces (spans with samples) and the average CPU % and memory %
 * of the one-second readings taken while it ran.
 */
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "export.h"
#include "monitor.h"
#include "span.h"
#include "stacktab.h"
#include "task.h"
#include "threads.h"
#include "uplink.h"

#define NS 1000000000LL
#define METRICS_NS NS              /* readings and trigger checks: 1 s */
#define SESSION_MAX_SPANS 16384    /* spans with samples kept per session */

enum kind { KIND_NOW, KIND_CPU, KIND_MEMORY, KIND_SAMPLING };
static const char *const kind_name[] = {"profile-now", "cpu-trigger", "memory-trigger",
                                        "default-sampling"};

struct session {
    int used;
    enum kind kind;
    uint64_t handle;               /* the uplink's */
    struct uplink_session meta;
    int64_t start_ns, end_ns;      /* CLOCK_MONOTONIC; end = planned end */
    int64_t start_realtime_ns;
    struct stack_table *tab;
    struct span_map *spans;
    uint64_t samples;
    double cpu_sum, mem_sum;
    int readings;
};

/* One trigger's state.  quiet_until: no check before (monotonic ns). */
struct trigger_state {
    int running;
    int64_t quiet_until_ns;
};

static struct {
    int ready;
    sonde_config_t cfg;
    struct session run[SESSION_MAX_RUNNING];
    struct agent_settings settings;
    struct monitor *mon;
    struct monitor_reading reading;
    int have_reading;
    int64_t next_metrics_ns;
    struct trigger_state trig[2];  /* [0] cpu, [1] memory */
    int64_t period_start_ns;       /* default sampling: current period */
    int64_t window_at_ns;          /* its window's start, INT64_MAX = none */
    uint64_t rng;
    _Atomic uint64_t started;
} S;

static int64_t clock_of(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static uint64_t next_random(void)
{
    /* xorshift64*: schedule jitter, not security. */
    uint64_t x = S.rng ? S.rng : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    S.rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void seed_random(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)clock_of(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32);
    S.rng = seed | 1;
}

/* Plans the default-sampling window of the period starting at start. */
static void plan_window(int64_t start)
{
    const struct agent_settings *st = &S.settings;
    if (!st->sampling_enabled || st->sampling_period_s <= 0 || st->sampling_window_s <= 0) {
        S.window_at_ns = INT64_MAX;
        return;
    }
    int64_t slack = (int64_t)(st->sampling_period_s - st->sampling_window_s) * NS;
    if (slack < 0)
        slack = 0;
    S.period_start_ns = start;
    S.window_at_ns = start + (slack ? (int64_t)(next_random() % (uint64_t)(slack + 1)) : 0);
}

int session_init(const sonde_config_t *cfg)
{
    if (S.ready)
        return 0;
    S.cfg = *cfg;
    seed_random();
    uplink_default_settings(&S.settings);
    S.mon = monitor_new("/");
    if (!S.mon)
        agent_log("warning: no CPU/memory monitor (out of memory): triggers cannot fire");
    int64_t now = clock_of(CLOCK_MONOTONIC);
    S.next_metrics_ns = now;
    plan_window(now);
    S.ready = 1;
    return 0;
}

uint64_t session_count_started(void)
{
    return atomic_load(&S.started);
}

static struct session *start(enum kind kind, int64_t request_id, int duration_s, int64_t now)
{
    struct session *s = NULL;
    for (int i = 0; i < SESSION_MAX_RUNNING; i++)
        if (!S.run[i].used) {
            s = &S.run[i];
            break;
        }
    if (!s) {
        agent_log("session %s refused: %d sessions already running", kind_name[kind], SESSION_MAX_RUNNING);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->tab = stacktab_new(S.cfg.max_stacks, S.cfg.max_frames);
    s->spans = span_map_new(SESSION_MAX_SPANS);
    if (!s->tab || !s->spans) {
        agent_log("session %s refused: out of memory for its stack table", kind_name[kind]);
        goto fail;
    }
    s->kind = kind;
    s->start_ns = now;
    s->end_ns = now + (int64_t)duration_s * NS;
    s->start_realtime_ns = clock_of(CLOCK_REALTIME);
    snprintf(s->meta.triggered_by, sizeof s->meta.triggered_by, "%s", kind_name[kind]);
    s->meta.request_id = request_id;
    s->meta.types = S.cfg.types;
    s->meta.start_ms = s->start_realtime_ns / 1000000;
    s->meta.duration_s = duration_s;
    s->meta.cpu_pct = -1;
    s->meta.mem_pct = -1;
    s->handle = uplink_session_begin(&s->meta);
    if (!s->handle) {
        agent_log("session %s refused: the upload queue is full", kind_name[kind]);
        goto fail;
    }
    if (agent_sampling_acquire() != 0) {
        agent_log("session %s: sampling could not start: %s", kind_name[kind], sonde_errmsg());
        struct uplink_session m = s->meta;
        m.duration_s = 1;
        uplink_session_end(s->handle, &m, NULL, 0);
        goto fail;
    }
    s->used = 1;
    atomic_fetch_add(&S.started, 1);
    agent_log("session %s started: %d s%s", kind_name[kind], duration_s,
              request_id ? " (Profile Now request)" : "");
    return s;
fail:
    stacktab_free(s->tab);
    span_map_free(s->spans);
    memset(s, 0, sizeof *s);
    return NULL;
}

static const char *thread_name(uint32_t tid, void *arg)
{
    (void)arg;
    return threads_name(tid);
}

/* Ends s at now.  The caller drained the ring. */
static void end(struct session *s, int64_t now)
{
    int64_t dur = now - s->start_ns;
    s->meta.duration_s = (int)((dur + NS / 2) / NS);
    if (s->meta.duration_s < 1)
        s->meta.duration_s = 1;
    s->meta.samples = s->samples;
    s->meta.traces = span_map_count(s->spans);
    if (s->readings) {
        s->meta.cpu_pct = s->cpu_sum / s->readings;
        s->meta.mem_pct = s->mem_sum / s->readings;
    } else if (S.have_reading) {
        s->meta.cpu_pct = S.reading.cpu_pct;
        s->meta.mem_pct = S.reading.mem_pct;
    }
    threads_refresh_names();
    struct export_request req = {
        .tab = s->tab,
        .types = S.cfg.types,
        .period_ns = sampler.interval_ns,
        .time_nanos = s->start_realtime_ns,
        .duration_nanos = dur,
        .thread_name = thread_name,
        .arg = NULL,
        .spans = s->spans,
    };
    void *gz = NULL;
    size_t len = 0;
    char msg[256] = "";
    int rc = export_pprof_gz(&req, &gz, &len, msg, sizeof msg);
    if (rc != 0) {
        agent_log("session %s: cannot build its profile: %s", kind_name[s->kind], msg[0] ? msg : strerror(-rc));
        gz = NULL;
        len = 0;
    }
    if (stacktab_dropped(s->tab) || span_map_dropped(s->spans))
        agent_log("session %s: %llu samples found the stack table full, %llu spans the span map full",
                  kind_name[s->kind], (unsigned long long)stacktab_dropped(s->tab),
                  (unsigned long long)span_map_dropped(s->spans));
    agent_log("session %s ended: %d s, %llu samples, %llu traces, %zu bytes", kind_name[s->kind],
              s->meta.duration_s, (unsigned long long)s->meta.samples, (unsigned long long)s->meta.traces,
              len);
    uplink_session_end(s->handle, &s->meta, gz, len);
    if (s->kind == KIND_CPU || s->kind == KIND_MEMORY) {
        struct trigger_state *t = &S.trig[s->kind == KIND_CPU ? 0 : 1];
        const struct trigger_setting *ts = s->kind == KIND_CPU ? &S.settings.cpu : &S.settings.memory;
        t->running = 0;
        t->quiet_until_ns = now + (int64_t)ts->cooldown_s * NS;
    }
    stacktab_free(s->tab);
    span_map_free(s->spans);
    memset(s, 0, sizeof *s);
    agent_sampling_release();
}

void session_add_sample(const struct sample_slot *slot)
{
    for (int i = 0; i < SESSION_MAX_RUNNING; i++) {
        struct session *s = &S.run[i];
        if (!s->used)
            continue;
        uint32_t span = slot->span_key ? span_map_add(s->spans, slot->span_key, slot->interface, slot->trace_id)
                                       : 0;
        agent_add_sample(s->tab, slot, span, S.cfg.types); /* refusals: stacktab_dropped() */
        s->samples++;
    }
}

void session_end_all(void)
{
    int64_t now = clock_of(CLOCK_MONOTONIC);
    for (int i = 0; i < SESSION_MAX_RUNNING; i++)
        if (S.run[i].used)
            end(&S.run[i], now);
}

static int running_kind(enum kind k)
{
    for (int i = 0; i < SESSION_MAX_RUNNING; i++)
        if (S.run[i].used && S.run[i].kind == k)
            return 1;
    return 0;
}

static void apply_settings(const struct agent_settings *n, int64_t now)
{
    int replan = n->sampling_enabled != S.settings.sampling_enabled ||
                 n->sampling_window_s != S.settings.sampling_window_s ||
                 n->sampling_period_s != S.settings.sampling_period_s;
    S.settings = *n;
    agent_log("settings: cpu trigger %s %d%% %ds cooldown %ds; memory trigger %s %d%% %ds cooldown %ds; "
              "default sampling %s %ds per %ds",
              n->cpu.enabled ? "on" : "off", n->cpu.threshold, n->cpu.duration_s, n->cpu.cooldown_s,
              n->memory.enabled ? "on" : "off", n->memory.threshold, n->memory.duration_s, n->memory.cooldown_s,
              n->sampling_enabled ? "on" : "off", n->sampling_window_s, n->sampling_period_s);
    if (replan)
        plan_window(now);
}

static void check_trigger(enum kind k, const struct trigger_setting *ts, double value, int64_t now)
{
    struct trigger_state *t = &S.trig[k == KIND_CPU ? 0 : 1];
    if (!ts->enabled || t->running || now < t->quiet_until_ns || value < ts->threshold)
        return;
    agent_log("%s fired: %.1f%% >= %d%%", kind_name[k], value, ts->threshold);
    if (start(k, 0, ts->duration_s, now))
        t->running = 1;
    else
        t->quiet_until_ns = now + (int64_t)ts->cooldown_s * NS; /* refused: do not retry every second */
}

static void take_reading(int64_t now)
{
    struct monitor_reading r;
    if (!S.mon || monitor_sample(S.mon, now, clock_of(CLOCK_PROCESS_CPUTIME_ID), &r) != 0)
        return;
    int first = !S.have_reading;
    S.reading = r;
    S.have_reading = 1;
    uplink_set_metrics(r.cpu_pct, r.mem_pct);
    for (int i = 0; i < SESSION_MAX_RUNNING; i++) {
        struct session *s = &S.run[i];
        if (!s->used || first)
            continue;
        s->cpu_sum += r.cpu_pct;
        s->mem_sum += r.mem_pct;
        s->readings++;
    }
    if (first)
        return; /* the first CPU reading has no interval behind it */
    check_trigger(KIND_CPU, &S.settings.cpu, r.cpu_pct, now);
    check_trigger(KIND_MEMORY, &S.settings.memory, r.mem_pct, now);
}

void session_tick(int64_t now)
{
    if (!S.ready)
        return;
    struct uplink_work w;
    if (uplink_take_work(&w)) {
        if (w.settings_changed)
            apply_settings(&w.settings, now);
        /* Active profiling: tasks the server refused stop first (their
         * captures not yet handed over are dropped), then the app's
         * list replaces the watched set. */
        for (int i = 0; i < w.n_ended; i++)
            task_end(w.ended[i]);
        if (w.tasks_changed) {
            int rc = task_set(w.tasks, (size_t)w.n_tasks);
            if (rc != 0)
                agent_log("tasks: cannot watch the %d task(s) the server sent: %s", w.n_tasks,
                          strerror(-rc));
        }
        for (int i = 0; i < w.n_profile_now; i++)
            start(KIND_NOW, w.profile_now[i].id, w.profile_now[i].duration_s, now);
    }
    int due = 0;
    for (int i = 0; i < SESSION_MAX_RUNNING; i++)
        if (S.run[i].used && now >= S.run[i].end_ns)
            due = 1;
    if (due) {
        agent_drain();
        for (int i = 0; i < SESSION_MAX_RUNNING; i++)
            if (S.run[i].used && now >= S.run[i].end_ns)
                end(&S.run[i], now);
        agent_drain(); /* what came in while exporting, for the others */
    }
    if (now >= S.next_metrics_ns) {
        take_reading(now);
        S.next_metrics_ns = now + METRICS_NS;
    }
    if (now >= S.window_at_ns) {
        int64_t period = (int64_t)S.settings.sampling_period_s * NS;
        if (!running_kind(KIND_SAMPLING))
            start(KIND_SAMPLING, 0, S.settings.sampling_window_s, now);
        plan_window(S.period_start_ns + period > now ? S.period_start_ns + period : now);
    }
}

int64_t session_next_due(int64_t now)
{
    int64_t next = S.next_metrics_ns;
    for (int i = 0; i < SESSION_MAX_RUNNING; i++)
        if (S.run[i].used && S.run[i].end_ns < next)
            next = S.run[i].end_ns;
    if (S.window_at_ns < next)
        next = S.window_at_ns;
    return next < now ? now : next;
}

void session_atfork_child(void)
{
    for (int i = 0; i < SESSION_MAX_RUNNING; i++) {
        struct session *s = &S.run[i];
        if (!s->used)
            continue;
        stacktab_free(s->tab);
        span_map_free(s->spans);
        memset(s, 0, sizeof *s);
    }
    memset(S.trig, 0, sizeof S.trig);
    seed_random();
    int64_t now = clock_of(CLOCK_MONOTONIC);
    S.next_metrics_ns = now;
    S.have_reading = 0;
    plan_window(now);
}
