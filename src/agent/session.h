/*
 * session.h — the agent's profiling sessions when it is connected to a
 * server: when they start (Profile Now, the CPU and memory triggers,
 * default sampling), what each records (a stack table and a span map of
 * its own), and handing each finished profile to the uplink.
 *
 * Where it sits: the agent thread (agent.c) drains the sample ring into
 * every running session (session_add_sample) and calls session_tick()
 * every loop; the uplink (uplink.h) delivers the server's requests and
 * settings and carries finished profiles away.  Sampling itself is
 * switched on while at least one session runs (agent_sampling_acquire /
 * _release in agent.h), so an idle connected agent samples nothing.
 *
 * Thread-safety: agent thread only, except session_stats (any thread,
 * atomics).  Never from a signal handler.
 */
#ifndef SONDE_SESSION_H
#define SONDE_SESSION_H

#include <stdint.h>

#include "sigsafe/ring.h"
#include "sonde.h"

#define SESSION_MAX_RUNNING 4

/* Sets up the session machinery for cfg (copied: types, max_stacks,
 * max_frames).  0 or -ENOMEM. */
int session_init(const sonde_config_t *cfg);

/* Work of the agent thread, called every loop (cheap when nothing is
 * due): takes the uplink's work (Profile Now, settings, and active
 * profiling's tasks, handed to task.h's task_end/task_set), once a second
 * samples CPU % and memory % (monitor.h) and evaluates the triggers and
 * default sampling, and ends sessions whose time is up.  now_ns:
 * CLOCK_MONOTONIC. */
void session_tick(int64_t now_ns);

/* Adds one drained sample to every running session. */
void session_add_sample(const struct sample_slot *s);

/* Ends every running session now (their profile goes to the uplink):
 * at stop.  The caller has drained the ring. */
void session_end_all(void);

/* The next moment session_tick has something to do (ms resolution). */
int64_t session_next_due(int64_t now_ns);

/* In a forked child: forgets the parent's sessions (their memory is
 * freed) and trigger state.  Single-threaded context. */
void session_atfork_child(void);

/* Sessions started since the agent started (sonde_get_stats). */
uint64_t session_count_started(void);

#endif
