/*
 * uplink.h — the agent's connection to sonded, on its own thread
 * ("sonde-uplink"), by the protocol of docs/agent-protocol.md: register,
 * long-poll for Profile Now requests and settings, heartbeat with CPU %,
 * memory % and drop counters, create sessions, upload their profiles,
 * PATCH their metadata, stop at exit.
 *
 * Where it sits: the agent thread (agent.c, session.c) decides when
 * sessions start and end and hands each finished profile to the link;
 * the link never touches the sampler.  Every network call is made on the
 * link's thread (uplink_thread.c), with libcurl's multi interface so the
 * long-poll and the uploads run side by side; no host thread and not the
 * agent thread ever waits on the network.  uplink.c is the process's side
 * (outbox, work, start, stop, fork); uplink_internal.h what they share.
 *
 * Fail-open: a server that is unreachable, slow (every transfer has a
 * timeout), answering 5xx, or restarted (404 on poll → register again,
 * sessions not yet completed are created again under the new agent id)
 * is retried with exponential backoff (1 s doubling to 30 s, with
 * jitter).  Finished sessions wait in a bounded outbox (UPLINK_MAX_OUTBOX
 * entries, UPLINK_MAX_OUTBOX_BYTES of profiles); what does not fit is
 * dropped — the oldest finished session first — and counted, reported as
 * dropped_uploads in the next heartbeat and in sonde_get_stats().  A 4xx
 * other than 401/403/404/409 means the server will never take it:
 * dropped and counted.  A wrong token (401/403) is logged and retried
 * every 30 s.
 *
 * Thread-safety: every function may be called from any thread (they take
 * the link's mutex briefly and never block on the network; uplink_stop
 * waits for the link's thread, within its bound), except uplink_atfork_*
 * which follow pthread_atfork's rules.  None is signal-safe.
 */
#ifndef SONDE_UPLINK_H
#define SONDE_UPLINK_H

#include <stddef.h>
#include <stdint.h>

#include "task.h"

#define UPLINK_MAX_OUTBOX 16
#define UPLINK_MAX_OUTBOX_BYTES (16u << 20)
#define UPLINK_MAX_PROFILE_NOW 8 /* requests handed over per uplink_take_work */

struct uplink_config {
    char server[512];       /* base URL, "http://host:port" (trailing / ignored) */
    char app[128];
    char instance[256];
    char token[256];        /* "" = no Authorization header */
    char cmdline[1024];
    int register_delay_ms;  /* register only this long after uplink_start /
                               uplink_restart_child (SONDE_REGISTER_DELAY_MS,
                               default 500): a short-lived child never talks
                               to the server */
    int exit_flush_ms;      /* uplink_stop's bound (SONDE_EXIT_FLUSH_MS, default 2000) */
};

/* Effective settings for this agent's app (agent-protocol §1, §2). */
struct trigger_setting {
    int enabled;
    int threshold;          /* percent 1..100 */
    int duration_s;
    int cooldown_s;
};
struct agent_settings {
    struct trigger_setting cpu, memory;
    int sampling_enabled;
    int sampling_window_s;
    int sampling_period_s;
};

/* Fills s with the server's defaults (on, 80 %, 120 s, 600 s; sampling
 * on, 120 s per 3600 s): what the agent uses until it has registered. */
void uplink_default_settings(struct agent_settings *s);

/* Starts the link thread (all signals blocked, an agent thread: never
 * sampled); it registers once register_delay_ms have passed.  cfg is
 * copied (an empty app becomes the program's name, an empty instance the
 * host name; strings are made valid UTF-8).  Never blocks on the
 * network.  0, -EINVAL (no server), -EALREADY (running), -EBUSY (the
 * thread of an abandoned stop has not ended yet) or -errno. */
int uplink_start(const struct uplink_config *cfg);

/* Sends what it can within cfg.exit_flush_ms — finished sessions in the
 * outbox, then stop (the agent shows "stopped") — and joins the thread.
 * Returns at once when the link never registered and has nothing to
 * send, and never later than exit_flush_ms + 0.2 s (the thread keeps to
 * the bound itself; one still busy past it is detached and ends alone).  Sessions not sent are freed.
 * Safe when not started; call it from one thread at a time. */
void uplink_stop(void);

/* fork: prepare/parent lock and unlock the link's mutexes around fork();
 * prepare also waits (at most 250 ms; in practice microseconds) until the
 * link's thread is not inside libcurl, whose global locks the child would
 * otherwise inherit held.  Call uplink_atfork_prepare before
 * threads_atfork_prepare (and uplink_atfork_parent/child after
 * threads_atfork_parent/child): libcurl makes its resolver threads through
 * the pthread_create interposer, which needs the thread registry.
 * The child forgets the parent's connection, outbox, counters and thread
 * (the parent's curl handles are leaked, never touched; the child closes
 * its copies of their sockets, which leaves the parent's open), and is
 * not started.  uplink_restart_child() then starts a new link thread that
 * registers as a new agent (same app and instance, its own pid) after
 * register_delay_ms — so a child that execs or exits soon costs a thread
 * creation and nothing on the network.  It may be called from the
 * child's atfork handler; it never blocks.  0, -EINVAL (never started),
 * -EALREADY (running), -EAGAIN (the fork could not wait for libcurl: no
 * link in this process, logged) or -errno. */
void uplink_atfork_prepare(void);
void uplink_atfork_parent(void);
void uplink_atfork_child(void);
int uplink_restart_child(void);

#define UPLINK_MAX_TASKS 16 /* = TASK_MAX */

/* What the server asked for since the last call, for the agent thread. */
struct uplink_work {
    int settings_changed;              /* settings holds the new ones */
    struct agent_settings settings;
    /* Active profiling: the app's running tasks as last known (the poll's
     * "tasks" list, minus tasks whose capture claim the server refused
     * since).  When tasks_changed, the agent thread calls
     * task_set(tasks, n_tasks) (task.h). */
    int tasks_changed;
    int n_tasks;
    struct task_spec tasks[UPLINK_MAX_TASKS];
    /* Tasks whose capture claim the server refused (409) or whose claim
     * ended them (limit reached) since the last call: the agent thread
     * calls task_end(id) for each, before task_set.  At most
     * UPLINK_MAX_TASKS (more are logged; the list above leaves them out
     * anyway). */
    int n_ended;
    int64_t ended[UPLINK_MAX_TASKS];
    int n_profile_now;
    struct {
        int64_t id;
        int duration_s;
    } profile_now[UPLINK_MAX_PROFILE_NOW];
};
/* Moves pending work into out (zeroed first).  Returns 1 if there was
 * any, else 0.  Cheap (an atomic flag) when there is none.  Settings
 * come at every registration and whenever they change; Profile Now
 * requests beyond UPLINK_MAX_PROFILE_NOW waiting are dropped (logged). */
int uplink_take_work(struct uplink_work *out);

/* A session, as the agent thread describes it. */
struct uplink_session {
    char triggered_by[24];  /* profile-now, cpu-trigger, memory-trigger, default-sampling */
    int64_t request_id;     /* Profile Now request id, 0 = none */
    int types;              /* SONDE_PROFILE_* bits */
    int64_t start_ms;       /* ms since the epoch */
    int duration_s;         /* planned at start; actual at end (>= 1) */
    uint64_t samples, traces;
    double cpu_pct, mem_pct; /* averages over the session; < 0 = unknown */
};

/* A session started: the link creates it on the server (POST sessions,
 * state running) as soon as it is registered.  Returns a local handle
 * (> 0) for uplink_session_end, or 0 if the outbox is full of sessions
 * that have not ended (counted in uploads_dropped), out of memory, or
 * uplink_start was never called.  A full outbox otherwise makes room by
 * dropping its oldest ended session (counted). */
uint64_t uplink_session_begin(const struct uplink_session *s);

/* A session ended: s has the final metadata; gz (malloc'ed, gzipped
 * pprof, len bytes) is taken over by the link, which frees it — also
 * when handle is unknown (0, dropped already, or from before a fork).
 * gz NULL: the session failed (PATCHed state failed, nothing uploaded).
 * The link creates the session if it had not yet (start_ms kept), PATCHes
 * the metadata, uploads the profile, retrying until acknowledged or
 * dropped.  A profile that does not fit in the outbox even after dropping
 * older ones is dropped (counted; the session is closed as failed). */
void uplink_session_end(uint64_t handle, const struct uplink_session *s, void *gz, size_t len);

/* ---- active profiling (docs/agent-protocol.md §7) ------------------- */

/* A finished capture, as task.c describes it. */
struct uplink_capture {
    int64_t task_id;
    char trace_id[SONDE_SPAN_TRACE_MAX];
    char interface[SONDE_SPAN_INTERFACE_MAX];
    char peer[SONDE_SPAN_PEER_MAX]; /* "" = unknown */
    int64_t start_ms;      /* the call's start, ms since the epoch */
    int response_code;     /* 0 = not set */
    int64_t total_ms;      /* the call's duration */
    uint64_t snapshots;
};

/* Queues a capture: the link claims a slot (POST tasks/{id}/captures) once
 * registered and, when granted, uploads gz (gzipped pprof, len bytes,
 * malloc'ed: taken over and freed by the link in every case).  A refused
 * claim (409) drops it (counted in uplink_stats.captures_refused) and
 * removes the task from the tasks handed to the agent thread (work
 * tasks_changed), so the watcher stops.  Captures share the outbox's byte
 * bound with sessions and have their own count bound
 * (UPLINK_MAX_CAPTURES; beyond it the new one is dropped and counted in
 * captures_dropped). */
#define UPLINK_MAX_CAPTURES 32
void uplink_capture_put(const struct uplink_capture *c, void *gz, size_t len);

/* Queues a task event for the server's task log: event "started",
 * "stopped" or "error"; message may be NULL (copied, at most 511 bytes).
 * Sent in order, once registered; at most 64 waiting (older dropped). */
void uplink_task_event(int64_t task_id, const char *event, const char *message);

/* Latest CPU % and memory % (monitor.h), sent with each heartbeat. */
void uplink_set_metrics(double cpu_pct, double mem_pct);

/* Counters since uplink_start (a forked child starts from zero). */
struct uplink_stats {
    int registered;          /* 1 while the server knows this agent */
    int64_t agent_id;        /* the last registration's; 0 = never */
    uint64_t uploads;        /* profiles acknowledged (2xx, or 409: stored before) */
    uint64_t uploads_dropped; /* sessions dropped, as sent in heartbeats */
    uint64_t requests_failed; /* transfers that failed, timed out, or got 5xx/429 */
    uint64_t captures_sent;     /* captures claimed and their snapshots stored */
    uint64_t captures_refused;  /* claims the server refused (limit, ended) */
    uint64_t captures_dropped;  /* outbox full, or the server refused the upload */
};
void uplink_get_stats(struct uplink_stats *out);

#endif
