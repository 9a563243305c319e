/*
 * threads.h — the registry of this process's threads: who they are, where
 * their stacks are, their CPU-time timers, and their names.
 *
 * Threads created after libsonde.so is loaded register themselves through
 * the pthread_create interposer (exact stack bounds from
 * pthread_getattr_np, exit seen by a pthread key destructor).  Threads
 * that existed before, or were made without pthread_create, are found by
 * scanning /proc/self/task (threads_discover), with their stack bounds
 * taken from the mapping that holds their stack.
 *
 * Thread-safety: every function may be called from any thread but not
 * from a signal handler; they serialize on the registry mutex.  The
 * handler reads the table lock-free (sigsafe/sampler.h).
 */
#ifndef SONDE_THREADS_H
#define SONDE_THREADS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "sigsafe/sampler.h"

/* Allocates the table once (idempotent).  0 or -ENOMEM. */
int threads_init(size_t max_threads);

/* Registers the calling thread (exact stack bounds) with flags; returns its
 * slot or NULL when the table is full.  Idempotent per thread. */
struct thread_slot *threads_register_self(uint32_t flags);

/* Creates and arms CPU-time timers (signal sampler.signo, interval
 * sampler.interval_ns) for every registered non-agent thread that has none.
 * Returns the number of threads that could not get one. */
int threads_start_all(void);
/* Deletes every timer. */
void threads_stop_all(void);

/* Scans /proc/self/task: registers threads not yet known (arming timers if
 * sampling runs), forgets ones that are gone, refreshes names.  0 or -errno. */
int threads_discover(void);

/* Re-reads /proc/self/maps into sampler.stack_maps (fallback bounds), if
 * a thread without exact stack bounds was registered since the last read. */
int threads_refresh_stack_maps(void);

/* Calls fn on every live, non-agent slot, under the registry mutex (fn must
 * not call back into threads_*). */
typedef void (*threads_visit_fn)(struct thread_slot *t, void *arg);
void threads_foreach(threads_visit_fn fn, void *arg);

/* Name of tid as last seen ("" if never seen); valid until the next call
 * from the same thread. */
const char *threads_name(uint32_t tid);
/* Reads thread tid's name (/proc/self/task/TID/comm, at most 15 bytes)
 * into out, NUL-terminated; out is left as it was if tid is gone.  Takes
 * no lock. */
void threads_read_name(int tid, char out[16]);
/* Re-reads every live thread's name from /proc. */
void threads_refresh_names(void);

/* Frees the wall sampler's per-thread stacks (when it no longer runs). */
void threads_free_wall_stacks(void);

/* Number of threads registered now (including the agent's). */
uint32_t threads_live(void);

/* Number of distinct threads seen. */
uint64_t threads_seen(void);

/* Waits until no handler is running (sigsafe_active == 0), up to about a
 * second.  0, or -ETIMEDOUT. */
int threads_wait_quiescent(void);

/* fork(): prepare/parent lock and unlock the registry; child resets it to
 * the one thread that exists there. */
void threads_atfork_prepare(void);
void threads_atfork_parent(void);
void threads_atfork_child(void);

/* The real pthread_create, for the agent's own threads. */
int threads_create_agent_thread(pthread_t *th, void *(*fn)(void *), void *arg);

#endif
