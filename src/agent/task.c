/*
 * task.c — active profiling's tasks and finished captures (task.h): the
 * list of tasks the server sent, the limits on captures, the queue of
 * finished captures that the agent thread exports and hands over, and
 * the task events (started / stopped / error).  The watcher thread that
 * takes the captures is task_watch.c; what the two share is
 * task_internal.h.
 *
 * Limits.  A capture holds an in-flight slot from the moment the watcher
 * takes it until task_drain hands it over or it is discarded: at most
 * TASK_MAX_CAPTURES in all, and for a task at most max_samples -
 * captures - handed (handed = what this agent handed over since the
 * server's count last changed: its count will include those).  The
 * server's claim is the real arbiter (docs/agent-protocol.md §7); this
 * only keeps an agent from taking what could never be granted.
 *
 * Events are queued under the lock and sent in order by whoever calls
 * task_set / task_end / task_drain / task_stop (the agent thread), under
 * a second mutex that only orders the sends: the sink is called with no
 * task lock held, so it may take its own locks freely (but must not call
 * back into task_*).
 */
#include "task_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "export.h"
#include "threads.h"
#include "uplink.h"

struct task_state tq = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done_tail = &tq.done,
};

static pthread_mutex_t emit_lock = PTHREAD_MUTEX_INITIALIZER;
static struct task_sink sink = {uplink_capture_put, uplink_task_event};

/* ---- helpers under tq.lock ------------------------------------------- */

struct task_entry *task_find_gen(uint64_t gen)
{
    for (size_t i = 0; i < tq.ntasks; i++)
        if (tq.tasks[i].gen == gen)
            return &tq.tasks[i];
    return NULL;
}

static struct task_entry *find_id(int64_t id)
{
    for (size_t i = 0; i < tq.ntasks; i++)
        if (tq.tasks[i].spec.id == id)
            return &tq.tasks[i];
    return NULL;
}

static void event_v(int64_t id, const char *event, const char *fmt, va_list ap)
{
    if (tq.ev_count == TASK_EVENTS_MAX) {
        agent_log("task %lld: event %s dropped: %d events wait already", (long long)id, event,
                  TASK_EVENTS_MAX);
        return;
    }
    struct task_event *e = &tq.events[(tq.ev_head + tq.ev_count++) % TASK_EVENTS_MAX];
    e->task_id = id;
    snprintf(e->event, sizeof e->event, "%s", event);
    e->message[0] = '\0';
    if (fmt)
        vsnprintf(e->message, sizeof e->message, fmt, ap);
}

void task_event_locked(int64_t id, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    event_v(id, event, fmt, ap);
    va_end(ap);
}

void task_error_locked(struct task_entry *t, unsigned kind, const char *fmt, ...)
{
    if (!t || (t->errors & kind))
        return;
    t->errors |= kind;
    va_list ap;
    va_start(ap, fmt);
    event_v(t->spec.id, "error", fmt, ap);
    va_end(ap);
    va_start(ap, fmt);
    char msg[TASK_MESSAGE_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    agent_log("task %lld: %s", (long long)t->spec.id, msg);
}

void task_capture_free(struct task_capture *c)
{
    if (!c)
        return;
    free(c->snaps);
    free(c->frames);
    free(c);
}

void task_capture_discard_locked(struct task_capture *c)
{
    struct task_entry *t = task_find_gen(c->task_gen);
    if (t && t->in_flight > 0)
        t->in_flight--;
    if (tq.captures > 0)
        tq.captures--;
    tq.memory -= c->bytes < tq.memory ? c->bytes : tq.memory;
    tq.stats.captures_discarded++;
    task_capture_free(c);
}

/* Drops the finished captures of task gen that wait in the queue. */
static void drop_done_locked(uint64_t gen)
{
    struct task_capture **pp = &tq.done;
    while (*pp) {
        struct task_capture *c = *pp;
        if (c->task_gen == gen) {
            *pp = c->next;
            tq.ndone--;
            task_capture_discard_locked(c);
        } else {
            pp = &c->next;
        }
    }
    tq.done_tail = &tq.done;
    while (*tq.done_tail)
        tq.done_tail = &(*tq.done_tail)->next;
}

/* Stops task t: "stopped" (if it had started and not stopped by itself),
 * its queued captures dropped, the entry removed.  The watcher drops its
 * unfinished captures when it sees the new version. */
static void remove_locked(struct task_entry *t, const char *why)
{
    if (t->started && !t->expired)
        task_event_locked(t->spec.id, "stopped", "%s", why);
    drop_done_locked(t->gen);
    size_t i = (size_t)(t - tq.tasks);
    memmove(&tq.tasks[i], &tq.tasks[i + 1], (tq.ntasks - i - 1) * sizeof tq.tasks[0]);
    tq.ntasks--;
    tq.version++;
}

static int ended_id(int64_t id)
{
    size_t n = tq.nended < TASK_ENDED_MAX ? tq.nended : TASK_ENDED_MAX;
    for (size_t i = 0; i < n; i++)
        if (tq.ended[i] == id)
            return 1;
    return 0;
}

/* Why spec cannot be watched ("" if it can). */
static const char *spec_problem(const struct task_spec *s, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!s->interface[0] || !memchr(s->interface, '\0', sizeof s->interface))
        snprintf(buf, len, "the interface is empty or longer than %d bytes",
                 SONDE_SPAN_INTERFACE_MAX - 1);
    else if (s->threshold_ms < 50 || s->threshold_ms > 30000)
        snprintf(buf, len, "threshold_ms %d is not from 50 to 30000", s->threshold_ms);
    else if (s->frequency_ms < 5 || s->frequency_ms > 1000)
        snprintf(buf, len, "frequency_ms %d is not from 5 to 1000", s->frequency_ms);
    else if (s->max_samples < 1 || s->max_samples > 100)
        snprintf(buf, len, "max_samples %d is not from 1 to 100", s->max_samples);
    return buf;
}

/* ---- sending ----------------------------------------------------------- */

/* Sends the queued events in order, with no task lock held. */
static void flush_events(void)
{
    pthread_mutex_lock(&emit_lock);
    for (;;) {
        pthread_mutex_lock(&tq.lock);
        if (tq.ev_count == 0) {
            pthread_mutex_unlock(&tq.lock);
            break;
        }
        struct task_event e = tq.events[tq.ev_head];
        tq.ev_head = (tq.ev_head + 1) % TASK_EVENTS_MAX;
        tq.ev_count--;
        void (*fn)(int64_t, const char *, const char *) = sink.event;
        pthread_mutex_unlock(&tq.lock);
        if (fn)
            fn(e.task_id, e.event, e.message[0] ? e.message : NULL);
    }
    pthread_mutex_unlock(&emit_lock);
}

static void wake_watcher(void)
{
    pthread_cond_broadcast(&tq.wake);
}

/* Starts the watcher with every signal blocked (it inherits the mask, so
 * no signal can land on it before it runs).  tq.lock held.  0 or an
 * errno. */
static int start_watcher_locked(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    tq.stop = 0;
    int rc = threads_create_agent_thread(&tq.thread, task_watch_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        tq.running = 1;
    return rc;
}

/* ---- the API ------------------------------------------------------------ */

int task_set(const struct task_spec *specs, size_t n)
{
    if (n && !specs)
        return agent_error(-EINVAL, "task_set: specs is NULL");
    if (n > TASK_MAX) {
        agent_log("tasks: %zu sent, only the first %d are watched", n, TASK_MAX);
        n = TASK_MAX;
    }
    pthread_mutex_lock(&tq.lock);
    /* Tasks no longer listed stop. */
    for (size_t i = tq.ntasks; i-- > 0;) {
        int listed = 0;
        for (size_t j = 0; j < n && !listed; j++)
            listed = specs[j].id == tq.tasks[i].spec.id;
        if (!listed)
            remove_locked(&tq.tasks[i], "no longer in the server's task list");
    }
    for (size_t j = 0; j < n; j++) {
        const struct task_spec *s = &specs[j];
        if (ended_id(s->id))
            continue;
        struct task_entry *t = find_id(s->id);
        if (t) {
            if (s->captures != t->spec.captures)
                t->handed = 0; /* the server's count now holds what we handed */
            t->spec.captures = s->captures;
            t->spec.max_samples = s->max_samples;
            t->spec.ends_ms = s->ends_ms;
            continue;
        }
        char why[160];
        if (spec_problem(s, why, sizeof why)[0]) {
            /* Not watched; reported once: its id is remembered as ended. */
            task_event_locked(s->id, "error", "task not watched: %s", why);
            tq.ended[tq.nended++ % TASK_ENDED_MAX] = s->id;
            continue;
        }
        t = &tq.tasks[tq.ntasks++];
        memset(t, 0, sizeof *t);
        t->spec = *s;
        t->spec.interface[sizeof t->spec.interface - 1] = '\0';
        t->gen = ++tq.next_gen;
    }
    tq.version++;
    int rc = 0;
    if (tq.ntasks && !tq.running) {
        rc = start_watcher_locked();
        if (rc != 0)
            for (size_t i = 0; i < tq.ntasks; i++)
                task_error_locked(&tq.tasks[i], TASK_ERR_THREAD,
                                  "cannot start the watcher thread: %s", strerror(rc));
    }
    if (tq.running)
        for (size_t i = 0; i < tq.ntasks; i++)
            if (!tq.tasks[i].started) {
                tq.tasks[i].started = 1;
                tq.stats.tasks_started++;
                task_event_locked(tq.tasks[i].spec.id, "started", NULL);
            }
    wake_watcher();
    pthread_mutex_unlock(&tq.lock);
    flush_events();
    return rc ? agent_error(-rc, "cannot start the task watcher thread: %s", strerror(rc)) : 0;
}

void task_end(int64_t id)
{
    pthread_mutex_lock(&tq.lock);
    struct task_entry *t = find_id(id);
    if (t) {
        tq.ended[tq.nended++ % TASK_ENDED_MAX] = id;
        remove_locked(t, "the server refused a capture: limit reached or task ended");
        wake_watcher();
    }
    pthread_mutex_unlock(&tq.lock);
    flush_events();
}

static void snaps_for_export(const struct task_capture *c, struct export_snapshot *out)
{
    for (uint32_t i = 0; i < c->nsnaps; i++) {
        const struct task_snap *s = &c->snaps[i];
        out[i] = (struct export_snapshot){
            .offset_ns = s->offset_ns,
            .pcs = c->frames + s->frames,
            .nframes = s->nframes,
            .state = s->state,
            .syscall = s->syscall,
        };
    }
}

/* Exports c and hands it over (or discards it if its task went away
 * meanwhile).  Returns 1 if handed over. */
static int hand_over(struct task_capture *c)
{
    void *gz = NULL;
    size_t len = 0;
    char err[256];
    struct export_snapshot *snaps = calloc(c->nsnaps ? c->nsnaps : 1, sizeof *snaps);
    int rc = -ENOMEM;
    snprintf(err, sizeof err, "out of memory");
    if (snaps) {
        snaps_for_export(c, snaps);
        struct export_capture ec = {
            .snaps = snaps,
            .n = c->nsnaps,
            .interval_ns = c->interval_ns,
            .time_nanos = c->start_ns,
            .duration_nanos = c->end_ns - c->start_ns,
            .thread = c->thread,
            .tid = (uint32_t)c->tid,
        };
        rc = export_capture_pprof_gz(&ec, &gz, &len, err, sizeof err);
        free(snaps);
    }
    struct uplink_capture uc;
    memset(&uc, 0, sizeof uc);
    pthread_mutex_lock(&tq.lock);
    struct task_entry *t = task_find_gen(c->task_gen);
    if (!t || rc != 0) {
        if (t)
            task_error_locked(t, TASK_ERR_EXPORT, "a capture could not be exported: %s", err);
        task_capture_discard_locked(c);
        pthread_mutex_unlock(&tq.lock);
        free(gz);
        return 0;
    }
    t->in_flight--;
    t->handed++;
    tq.captures--;
    tq.memory -= c->bytes < tq.memory ? c->bytes : tq.memory;
    tq.stats.captures++;
    void (*fn)(const struct uplink_capture *, void *, size_t) = sink.capture;
    pthread_mutex_unlock(&tq.lock);

    uc.task_id = c->task_id;
    snprintf(uc.trace_id, sizeof uc.trace_id, "%s", c->trace_id);
    snprintf(uc.interface, sizeof uc.interface, "%s", c->interface);
    snprintf(uc.peer, sizeof uc.peer, "%s", c->peer);
    uc.start_ms = c->start_ns / 1000000;
    uc.response_code = c->status;
    uc.total_ms = (c->end_ns - c->start_ns) / 1000000;
    if (uc.total_ms < 0)
        uc.total_ms = 0;
    uc.snapshots = c->nsnaps;
    task_capture_free(c);
    /* Events queued before (its task's "started", say) go first. */
    flush_events();
    pthread_mutex_lock(&emit_lock);
    if (fn)
        fn(&uc, gz, len);
    else
        free(gz);
    pthread_mutex_unlock(&emit_lock);
    return 1;
}

int task_drain(size_t max)
{
    flush_events();
    int handed = 0;
    while (!max || (size_t)handed < max) {
        pthread_mutex_lock(&tq.lock);
        struct task_capture *c = tq.done;
        if (c) {
            tq.done = c->next;
            if (!tq.done)
                tq.done_tail = &tq.done;
            tq.ndone--;
            c->next = NULL;
        }
        pthread_mutex_unlock(&tq.lock);
        if (!c)
            break;
        handed += hand_over(c);
    }
    flush_events();
    return handed;
}

int64_t task_next_due(int64_t now_ns)
{
    pthread_mutex_lock(&tq.lock);
    int busy = tq.ndone > 0 || tq.ev_count > 0;
    pthread_mutex_unlock(&tq.lock);
    return busy ? now_ns : INT64_MAX;
}

void task_stop(void)
{
    pthread_mutex_lock(&tq.lock);
    int running = tq.running;
    tq.stop = 1;
    wake_watcher();
    pthread_mutex_unlock(&tq.lock);
    if (running)
        pthread_join(tq.thread, NULL);
    pthread_mutex_lock(&tq.lock);
    tq.running = 0;
    tq.stop = 0;
    while (tq.ntasks)
        remove_locked(&tq.tasks[tq.ntasks - 1], "the agent stops");
    while (tq.done) {
        struct task_capture *c = tq.done;
        tq.done = c->next;
        task_capture_discard_locked(c);
    }
    tq.done_tail = &tq.done;
    tq.ndone = 0;
    pthread_mutex_unlock(&tq.lock);
    flush_events();
}

void task_atfork_child(void)
{
    /* One thread here: no watcher, and the locks may have been held by
     * threads that do not exist — so may the lists have been mid-change:
     * the parent's captures are left unfreed (bounded, and never touched
     * here, so they cost the child no memory of its own). */
    pthread_mutex_init(&tq.lock, NULL);
    pthread_mutex_init(&emit_lock, NULL);
    pthread_cond_init(&tq.wake, NULL);
    tq.watching = NULL;
    tq.done = NULL;
    tq.done_tail = &tq.done;
    tq.ndone = 0;
    tq.ntasks = 0;
    tq.version++;
    tq.captures = 0;
    tq.memory = 0;
    tq.ev_head = tq.ev_count = 0;
    tq.nended = 0;
    tq.running = 0;
    tq.stop = 0;
    memset(&tq.stats, 0, sizeof tq.stats);
    /* A request the parent's watcher had open is nobody's now. */
    uint64_t st = atomic_load(&sampler.snapshot.state);
    atomic_store(&sampler.snapshot.state, st & ~(uint64_t)3);
}

void task_set_sink(const struct task_sink *s)
{
    pthread_mutex_lock(&emit_lock);
    pthread_mutex_lock(&tq.lock);
    if (s)
        sink = *s;
    else
        sink = (struct task_sink){uplink_capture_put, uplink_task_event};
    pthread_mutex_unlock(&tq.lock);
    pthread_mutex_unlock(&emit_lock);
}

void task_set_notify(void (*fn)(void))
{
    pthread_mutex_lock(&tq.lock);
    tq.notify = fn;
    pthread_mutex_unlock(&tq.lock);
}

void task_stats(struct task_stats *out)
{
    if (!out)
        return;
    pthread_mutex_lock(&tq.lock);
    *out = tq.stats;
    pthread_mutex_unlock(&tq.lock);
}
