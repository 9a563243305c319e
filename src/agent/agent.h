/*
 * agent.h — the agent's internal lifecycle: one process-wide agent, started
 * by sonde_start() or by the library constructor when SONDE_OUTPUT is set
 * (agent.c); its log and error messages (agent_log.c).
 */
#ifndef SONDE_AGENT_H
#define SONDE_AGENT_H

#include <stdarg.h>

#include "sonde.h"

/* Sets the calling thread's sonde_errmsg() and returns code (negative). */
int agent_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same without a log line: for expected, frequent refusals (a span
 * ended twice) that must stay cheap. */
int agent_error_quiet(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a line to the agent log (SONDE_LOG), if one is open.  Never from
 * a signal handler. */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Opens the agent log at path (appending; NULL or "": none).  Once, from
 * the library constructor. */
void agent_log_open(const char *path);

/* Resident memory of the process in KiB (for the log), 0 if unknown. */
long agent_rss_kib(void);

/* Sampling runs while someone needs it: local recording to a file holds
 * one reference for the agent's life, each running session one.  The
 * first acquire arms every thread's timer, the last release disarms them.
 * Agent thread (sessions) or under the lifecycle lock. */
int agent_sampling_acquire(void);
void agent_sampling_release(void);

struct stack_table;
struct sample_slot;
/* Adds one drained sample to tab, tagged with span (a span_map index, 0 =
 * none), once for each of the types (SONDE_PROFILE_* bits) it counts
 * for.  Returns how many the full table refused. */
int agent_add_sample(struct stack_table *tab, const struct sample_slot *s, uint32_t span, int types);

/* Drains the sample ring into the local table and every running session.
 * Agent thread only. */
void agent_drain(void);

/* Wakes the agent thread now rather than at its next due time: a finished
 * capture waits for task_drain (task.h).  Any thread, not from a signal
 * handler; a wakeup while the thread is busy makes its next sleep return
 * at once. */
void agent_wake(void);

/* Parses a signal spec: a number, "SIGRTMIN+N", or a name like "SIGPROF".
 * Returns the number or -EINVAL. */
int config_parse_signal(const char *s);

/* One wall-clock sampling pass over every blocked thread (wall.c).  Runs
 * on the agent thread.  now_ns: CLOCK_MONOTONIC. */
void wall_pass(int64_t now_ns);

#endif
