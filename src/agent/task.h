/*
 * task.h — active profiling in the agent (SPEC B2): the server's tasks,
 * each watching one span interface for calls slower than a threshold, and
 * the captures they take — snapshots of the thread that handles a slow
 * call, every frequency ms from the threshold until the call ends.
 *
 * Where it sits: the uplink delivers the app's running tasks (poll answer,
 * docs/agent-protocol.md §7) as uplink_work; the agent thread hands them to
 * task_set().  One watcher thread ("sonde-task", an agent thread, every
 * signal blocked, created at the first task and idle on a condition
 * variable while there is none) does the watching:
 *   - it scans the open span records (span.h: span_rec_scan) at least every
 *     threshold/2 (bounded to [5, 100] ms) for spans of a watched interface,
 *     and schedules each one's first snapshot at exactly start + threshold
 *     (absolute CLOCK_REALTIME sleeps — span starts are CLOCK_REALTIME —
 *     as a timed wait on a condition variable, so task_set and task_stop
 *     wake it);
 *   - a span still open at its due time becomes a capture; its snapshots
 *     fall at start + threshold + k * frequency (a late wake-up skips the
 *     missed instants rather than bunching them);
 *   - one snapshot = the state of the span's thread (/proc) and its stack:
 *     a running thread (state R) through a directed signal whose handler
 *     unwinds into the snapshot box (sigsafe/sampler.h); a blocked one
 *     from its saved registers and a copy of its stack (wall.c's
 *     wall_blocked_stack), never interrupting its system call;
 *   - the watcher marks the record of a span it captures, so that
 *     sonde_span_end stores the end time and status for it (spans nobody
 *     captures pay nothing);
 *   - when the span ends (its key changes), the capture is finished and
 *     queued; the agent thread (task_drain) turns it into a gzipped pprof
 *     (export_capture_pprof_gz) and hands it to the uplink
 *     (uplink_capture_put), off the watcher so snapshots stay on time.
 * Events (started / stopped / error) go to the uplink as they happen.
 *
 * Limits: at most TASK_MAX tasks, TASK_MAX_CAPTURES captures in flight in
 * all, for each task at most max_samples - captures (the server's count
 * as last delivered, minus what this agent has finished since) at once;
 * at most TASK_MAX_SNAPSHOTS snapshots per capture (later ones are
 * counted, not kept: the capture still measures the call's total time);
 * TASK_MAX_FRAMES frames per snapshot; TASK_MEMORY_MAX bytes of snapshot
 * stacks over all captures (beyond: snapshots dropped, counted).  The
 * server's claim decides which captures count (task.c cannot know what
 * other agents took): see docs/agent-protocol.md §7.
 *
 * Code: task.c (tasks, limits, the queue, events, task_drain) and
 * task_watch.c (the watcher thread), sharing task_internal.h.
 *
 * Thread-safety: task_set, task_end, task_drain, task_stop, task_stats,
 * task_set_sink and task_set_notify may be called from any thread (one mutex, never held across a snapshot's
 * signal wait or an export); task_atfork_child in a forked child only.
 * Never from a signal handler.
 */
#ifndef SONDE_TASK_H
#define SONDE_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "sonde.h"

#define TASK_MAX 16
#define TASK_MAX_CAPTURES 32
#define TASK_MAX_SNAPSHOTS 4096
#define TASK_MAX_FRAMES 64
#define TASK_MEMORY_MAX (8u << 20)

/* One task as the server sent it (agent-protocol §7). */
struct task_spec {
    int64_t id;
    char interface[SONDE_SPAN_INTERFACE_MAX];
    int threshold_ms;   /* 50..30000 */
    int frequency_ms;   /* 5..1000 */
    int max_samples;    /* 1..100 */
    int captures;       /* claimed over all agents when the list was made */
    int64_t ends_ms;    /* CLOCK_REALTIME ms; the watcher stops by itself then */
};

/* Replaces the set of tasks to watch with specs[0..n) (the server's whole
 * list; n <= TASK_MAX, more are ignored and logged).  A new task starts at
 * once (event "started", or "error" naming why it cannot: e.g. the
 * watcher thread could not be created); a task no longer in the list stops
 * (event "stopped"), its unfinished captures are discarded.  Starts the
 * watcher thread on first use.  0 or -errno. */
int task_set(const struct task_spec *specs, size_t n);

/* The server refused a capture of task id (limit reached or task ended):
 * stop watching it now (as if it had left the list) and drop its
 * captures not yet handed over.  Unknown id: no-op. */
void task_end(int64_t id);

/* Agent thread, every loop: exports each finished capture (symbolizes,
 * builds the pprof) and hands it to the uplink; at most max captures per
 * call (0 = all).  Cheap when none is waiting.  Returns how many it
 * handed over. */
int task_drain(size_t max);

/* The next CLOCK_MONOTONIC ns at which task_drain has something to do, or
 * INT64_MAX: the agent thread sleeps no longer than that. */
int64_t task_next_due(int64_t now_ns);

/* Stops the watcher thread (joins it), drops every task and capture.  At
 * agent stop, before the uplink stops.  Safe when never started. */
void task_stop(void);

/* In a forked child (single-threaded): forgets the parent's tasks,
 * captures and watcher (which does not exist there). */
void task_atfork_child(void);

/* Where finished captures and task events go: the uplink
 * (uplink_capture_put, uplink_task_event) unless a test sets its own.
 * NULL restores the uplink.  Call before task_set. */
struct uplink_capture;
struct task_sink {
    void (*capture)(const struct uplink_capture *c, void *gz, size_t len);
    void (*event)(int64_t task_id, const char *event, const char *message);
};
void task_set_sink(const struct task_sink *sink);

/* A function the watcher calls (from its thread, no task lock held) when
 * task_drain has something new to do: a finished capture or an event —
 * the agent thread's wake-up.  NULL (the default): the agent thread sees
 * it at its next loop. */
void task_set_notify(void (*fn)(void));

struct task_stats {
    uint64_t tasks_started;      /* tasks this agent began watching */
    uint64_t captures;           /* captures finished and handed over */
    uint64_t captures_discarded; /* finished or abandoned locally: task ended,
                                    limit, export failure */
    uint64_t snapshots;          /* snapshots taken */
    uint64_t snapshots_dropped;  /* missed: thread gone, signal not answered
                                    within 5 ms, copy torn, over a limit */
};
void task_stats(struct task_stats *out);

#endif
