/*
 * agent.h — the agent's internal lifecycle: one process-wide agent, started
 * by sonde_start() or by the library constructor when SONDE_OUTPUT is set.
 */
#ifndef SONDE_AGENT_H
#define SONDE_AGENT_H

#include <stdarg.h>

#include "sonde.h"

/* Sets the calling thread's sonde_errmsg() and returns code (negative). */
int agent_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a line to the agent log (SONDE_LOG), if one is open.  Never from
 * a signal handler. */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a signal spec: a number, "SIGRTMIN+N", or a name like "SIGPROF".
 * Returns the number or -EINVAL. */
int config_parse_signal(const char *s);

/* One wall-clock sampling pass over every blocked thread (wall.c).  Runs
 * on the agent thread.  now_ns: CLOCK_MONOTONIC. */
void wall_pass(int64_t now_ns);

#endif
