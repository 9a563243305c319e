/*
 * store.h — sonded's storage interface: agents, sessions and their
 * profiles, Profile Now requests, settings, access tokens, active
 * profiling tasks with their captures, and load tests.
 *
 * One interface, several implementations, like SQLite's VFS: a struct
 * store carries a table of function pointers (struct store_ops) and the
 * public store_* functions below dispatch through it.  store_open() picks
 * the implementation from the URL:
 *
 *   sqlite:PATH  or a plain PATH      embedded SQLite file (store_sqlite.c)
 *   postgres://… / postgresql://…     PostgreSQL (next implementation; until
 *                                     it lands store_open answers -ENOTSUP
 *                                     with a message saying so)
 *
 * The SQL is kept portable (no SQLite-only syntax in queries that the
 * PostgreSQL implementation would have to rewrite beyond placeholders).
 * Schema changes are versioned migrations applied in order at open.
 *
 * Promises of every implementation:
 *   - thread-safe: any function may be called from any thread at any time,
 *     concurrently (the HTTP server calls from its whole thread pool);
 *   - every write is one transaction: after a call returns 0, its effect
 *     survives a kill -9 of the process at any later moment;
 *   - a call that fails changes nothing;
 *   - errors are 0 or a negative errno code:
 *       -ENOENT  unknown id            -EEXIST  conflict (already there)
 *       -EINVAL  bad argument          -ENOMEM  out of memory
 *       -EIO     database error        -ENOTSUP not implemented here
 *       -EBUSY   a bound is reached (e.g. the load-test queue is full)
 *     and store_errmsg() gives the calling thread's last human message.
 *
 * Times are int64 milliseconds since the Unix epoch (UTC) everywhere.
 * Strings in the structs are NUL-terminated fixed arrays: callers validate
 * lengths before storing (the API refuses longer values with 400), and an
 * implementation truncates nothing silently — it answers -EINVAL.
 * Arrays returned through `**out` are malloc'ed; the caller free()s them.
 */
#ifndef SONDE_STORE_H
#define SONDE_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_APP_MAX 128      /* app name, incl. NUL */
#define STORE_INSTANCE_MAX 256 /* host name, incl. NUL */
#define STORE_VERSION_MAX 64   /* agent version */
#define STORE_CMDLINE_MAX 1024 /* command line, space-joined */
#define STORE_NAME_MAX 128     /* token name */
#define STORE_KIND_MAX 32      /* triggered_by, state, role */
#define STORE_TYPES_MAX 128    /* profile types, comma-separated */
#define STORE_HASH_MAX 65      /* sha256 hex */

struct store;
struct store_trace_span;

/* ------------------------------------------------------------------ */
/* Agents                                                              */

struct store_agent {
    int64_t id;
    char app[STORE_APP_MAX];
    char instance[STORE_INSTANCE_MAX];
    int64_t pid;
    char agent_version[STORE_VERSION_MAX];
    char cmdline[STORE_CMDLINE_MAX];
    int64_t started_ms;    /* process start, as the agent reported it */
    int64_t registered_ms; /* when it registered */
    int64_t last_seen_ms;  /* last register, heartbeat or poll */
    int64_t stopped_ms;    /* 0 while not stopped cleanly */
    double cpu_pct;        /* last reported; < 0 = never reported */
    double mem_pct;
    int64_t dropped_uploads; /* the agent's running total of profiles it
                                dropped (last reported; 0 = none) */
};

/* Filter for lists; NULL/"" and 0 mean "any". */
struct store_agent_filter {
    const char *app;
    const char *instance;
    int64_t seen_after_ms; /* only agents with last_seen_ms >= this */
    size_t limit;          /* 0 = implementation maximum (10000) */
};

/* Stores a new agent (a->id is set; other fields as given). */
int store_agent_register(struct store *st, struct store_agent *a);
/* Updates last_seen_ms = now_ms and, each when >= 0, cpu/mem percent and
 * dropped_uploads.  -ENOENT unknown id. */
int store_agent_heartbeat(struct store *st, int64_t id, int64_t now_ms, double cpu_pct,
                          double mem_pct, int64_t dropped_uploads);
/* Marks the agent stopped at now_ms.  -ENOENT unknown id. */
int store_agent_stop(struct store *st, int64_t id, int64_t now_ms);
int store_agent_get(struct store *st, int64_t id, struct store_agent *out);
/* Agents matching f, newest registration first. */
int store_agent_list(struct store *st, const struct store_agent_filter *f,
                     struct store_agent **out, size_t *n);

/* ------------------------------------------------------------------ */
/* Sessions and profiles                                               */

struct store_session {
    int64_t id;
    int64_t agent_id;
    char triggered_by[STORE_KIND_MAX]; /* profile-now, cpu-trigger, … */
    int64_t request_id;                /* Profile Now request, 0 = none */
    char app[STORE_APP_MAX];
    char instance[STORE_INSTANCE_MAX];
    int64_t pid;
    int64_t start_ms;
    int64_t duration_ms; /* planned, then actual once completed */
    char profile_types[STORE_TYPES_MAX]; /* "cpu,wall" */
    int64_t samples;
    int64_t traces;
    double cpu_pct; /* average during the session; < 0 = unknown */
    double mem_pct;
    char state[STORE_KIND_MAX]; /* running, completed, failed */
    int64_t profile_bytes;      /* size of the stored pprof; 0 = none */
    int64_t created_ms;
    int64_t updated_ms;
};

struct store_session_filter {
    const char *app;          /* NULL/"" = any */
    const char *instance;
    const char *triggered_by;
    int64_t request_id;       /* sessions of this Profile Now request; 0 = any */
    int64_t from_ms, to_ms;   /* start_ms in [from, to); 0 = open end */
    int with_profile;         /* 1: only sessions with a stored profile */
    size_t limit;             /* 0 = 50; at most 10000 */
    size_t offset;
};

/* Stores a new session (s->id set; created/updated = s->created_ms). */
int store_session_create(struct store *st, struct store_session *s);
/* Overwrites the mutable fields (duration_ms, profile_types, samples,
 * traces, cpu_pct, mem_pct, state, updated_ms) of session s->id.
 * -ENOENT unknown id. */
int store_session_update(struct store *st, const struct store_session *s);
int store_session_get(struct store *st, int64_t id, struct store_session *out);
/* Sessions matching f, newest start first, paged; *total counts all the
 * matches (ignoring limit/offset). */
int store_session_list(struct store *st, const struct store_session_filter *f,
                       struct store_session **out, size_t *n, int64_t *total);

/* A session's profile as stored: the original gzipped pprof as uploaded
 * and the server's compact flame tree (views.h) computed from it. */
struct store_profile {
    int64_t session_id;
    const void *pprof;  /* original upload bytes (gzip) */
    size_t pprof_len;
    const void *tree;   /* flame_tree blob */
    size_t tree_len;
    int64_t samples;    /* sample count of the profile */
    const char *sample_types; /* "samples/count,cpu/nanoseconds" */
    int64_t now_ms;
    /* The profile's distinct traces (trace_id label; session_id of each
     * entry ignored), stored in the same transaction for
     * store_trace_sessions.  May be NULL/0. */
    const struct store_trace_span *traces;
    size_t ntraces;
};

/* Stores the profile of session p->session_id and, in the same
 * transaction, sets the session's profile_bytes, samples (when the
 * session's is 0), state "completed" (when it was "running") and
 * updated_ms.  -ENOENT unknown session, -EEXIST it already has one. */
int store_profile_put(struct store *st, const struct store_profile *p);
/* The original pprof bytes (*buf malloc'ed).  -ENOENT: no such session
 * or no profile. */
int store_profile_get(struct store *st, int64_t session_id, void **buf, size_t *len);
/* The flame tree blob (*buf malloc'ed).  -ENOENT as above. */
int store_tree_get(struct store *st, int64_t session_id, void **buf, size_t *len);

/* Calls fn for the flame tree of every session with a profile that
 * matches f (with_profile implied; limit 0 = 100000; offset ignored),
 * newest first.  tree is valid during the call only.  fn returning
 * nonzero stops the walk and store_tree_foreach returns that value.
 * Reads run without blocking writers. */
typedef int (*store_tree_fn)(void *ctx, int64_t session_id, const void *tree, size_t len);
int store_tree_foreach(struct store *st, const struct store_session_filter *f, store_tree_fn fn,
                       void *ctx);

/* The same for the original pprof bytes (slow path: label filters). */
int store_pprof_foreach(struct store *st, const struct store_session_filter *f, store_tree_fn fn,
                        void *ctx);

/* Deletes sessions (and their profiles and trace spans) with start_ms <
 * before_ms, tasks that ended before it (with their agents, log and
 * captures), load tests that ended before it, and agents stopped or last
 * seen before it.  *deleted =
 * sessions deleted. */
int store_retention_purge(struct store *st, int64_t before_ms, int64_t *deleted);

/* ------------------------------------------------------------------ */
/* Profile Now requests                                                */

struct store_profile_now {
    int64_t id; /* increasing: a later request has a larger id */
    char app[STORE_APP_MAX]; /* "" = every app */
    int64_t duration_s;
    int64_t created_ms;
    int64_t token_id; /* who asked; 0 = unknown */
    char triggered_by[STORE_KIND_MAX]; /* "profile-now" ("" stored as it),
                                          or "load-test" */
    int64_t loadtest_id; /* the load test that asked; 0 = none */
};

/* Stores a request (r->id set; an empty triggered_by becomes
 * "profile-now").  When r->loadtest_id != 0 the same transaction sets that
 * load test's profile_now_id to r->id (-ENOENT unknown load test). */
int store_profile_now_create(struct store *st, struct store_profile_now *r);
/* One request by id.  -ENOENT unknown. */
int store_profile_now_get(struct store *st, int64_t id, struct store_profile_now *out);
/* Requests with id > after_id that target app (app "" or equal) and have
 * not expired (created_ms + duration_s*1000 > now_ms), oldest first. */
int store_profile_now_since(struct store *st, int64_t after_id, const char *app, int64_t now_ms,
                            struct store_profile_now **out, size_t *n);
/* The newest `limit` requests, newest first. */
int store_profile_now_recent(struct store *st, size_t limit, struct store_profile_now **out,
                             size_t *n);
/* Largest request id so far (0 when none). */
int store_profile_now_last_id(struct store *st, int64_t *id);

/* ------------------------------------------------------------------ */
/* Settings: JSON documents by (key, app)                              */

/* Keys used: "triggers", "default_sampling".  app "" = workspace-wide,
 * else a per-app override.  The store does not interpret the JSON. */

/* *json malloc'ed; -ENOENT when not set. */
int store_setting_get(struct store *st, const char *key, const char *app, char **json);
/* Sets (json != NULL) or deletes (json == NULL) a document and bumps the
 * settings version, in one transaction. */
int store_setting_put(struct store *st, const char *key, const char *app, const char *json);
/* Apps with an override of key (*apps: malloc'ed array of n
 * STORE_APP_MAX strings). */
int store_setting_apps(struct store *st, const char *key, char (**apps)[STORE_APP_MAX],
                       size_t *n);
/* Monotonic counter bumped by every store_setting_put (agents compare it
 * to learn that settings changed). */
int store_settings_version(struct store *st, int64_t *version);

/* ------------------------------------------------------------------ */
/* Access tokens                                                       */

struct store_token {
    int64_t id;
    char name[STORE_NAME_MAX];
    char role[STORE_KIND_MAX]; /* reader, writer, admin, agent */
    char hash[STORE_HASH_MAX]; /* sha256 of the secret, hex */
    int64_t created_ms;
    int64_t last_used_ms; /* 0 = never */
    int64_t revoked_ms;   /* 0 = active */
};

/* Stores a token (t->id set).  -EEXIST when the hash is already there. */
int store_token_create(struct store *st, struct store_token *t);
/* The active (not revoked) token with this hash.  -ENOENT otherwise. */
int store_token_find(struct store *st, const char *hash, struct store_token *out);
int store_token_get(struct store *st, int64_t id, struct store_token *out);
/* Every token, revoked ones included, by id. */
int store_token_list(struct store *st, struct store_token **out, size_t *n);
/* Revokes at now_ms.  -ENOENT unknown or already revoked id. */
int store_token_revoke(struct store *st, int64_t id, int64_t now_ms);
/* Records a use (cheap; may be coalesced by the implementation). */
int store_token_touch(struct store *st, int64_t id, int64_t now_ms);
/* Number of active tokens with this role (NULL = any role). */
int store_token_count(struct store *st, const char *role, int64_t *n);

/* ------------------------------------------------------------------ */
/* Active profiling: tasks, their agents and log, captures              */

#define STORE_INTERFACE_MAX 96 /* = SONDE_SPAN_INTERFACE_MAX, incl. NUL */
#define STORE_TRACE_MAX 64     /* = SONDE_SPAN_TRACE_MAX */
#define STORE_PEER_MAX 64      /* = SONDE_SPAN_PEER_MAX */
#define STORE_MESSAGE_MAX 512  /* a task log line */

/* A task watches one interface of one app for calls slower than
 * threshold_ms (SPEC B1).  state: "running" from creation until
 * "limit-reached" (captures == max_samples), "expired" (ends_ms passed)
 * or "cancelled"; an ended task never runs again. */
struct store_task {
    int64_t id;
    char app[STORE_APP_MAX];
    char interface[STORE_INTERFACE_MAX];
    int64_t duration_min;  /* 5, 10 or 15 */
    int64_t threshold_ms;  /* 50..30000 */
    int64_t frequency_ms;  /* 5..1000 */
    int64_t max_samples;   /* 1..100 */
    char state[STORE_KIND_MAX];
    int64_t token_id;             /* creator's token, 0 = unknown */
    char creator[STORE_NAME_MAX]; /* its name at creation */
    int64_t created_ms;
    int64_t started_ms; /* first agent's "started" event; 0 = none yet */
    int64_t ends_ms;    /* planned end: created + duration (the server's
                           task minute, see --task-minute-ms) */
    int64_t ended_ms;   /* 0 while running */
    int64_t captures;   /* claimed so far (store_capture_claim) */
};

struct store_task_filter {
    const char *app;   /* NULL/"" = any */
    const char *state; /* NULL/"" = any */
    int64_t from_ms, to_ms; /* tasks overlapping [from, to): created_ms < to
                               and (ended_ms ? ended_ms : ends_ms) >= from;
                               0 = open end */
    size_t limit;      /* 0 = 100; at most 10000 */
};

/* Stores a new task (t->id set; state "running", captures 0, started/ended
 * 0; the caller fills everything else), logs "created" (agent 0, message
 * naming creator and parameters) and bumps the task version, in one
 * transaction. */
int store_task_create(struct store *st, struct store_task *t);
int store_task_get(struct store *st, int64_t id, struct store_task *out);
/* Tasks matching f, newest created first. */
int store_task_list(struct store *st, const struct store_task_filter *f, struct store_task **out,
                    size_t *n);
/* The running tasks of app (exact match) with ends_ms > now_ms, oldest
 * first: what an agent of app must watch. */
int store_task_active(struct store *st, const char *app, int64_t now_ms, struct store_task **out,
                      size_t *n);
/* Cancels a running task: state "cancelled", ended_ms = now_ms, log
 * "cancelled" (message names who), version bumped.  -ENOENT unknown id;
 * -EEXIST it has ended already (message says in which state). */
int store_task_cancel(struct store *st, int64_t id, int64_t now_ms, const char *who);
/* Every running task with ends_ms <= now_ms becomes "expired" with
 * ended_ms = ends_ms and a log line "expired" at ends_ms; bumps the
 * version if any did.  *n (may be NULL) = how many. */
int store_task_expire(struct store *st, int64_t now_ms, int64_t *n);
/* Monotonic counter bumped by every create, cancel, expiry and
 * limit-reached: agents compare it to learn that their task list changed. */
int store_task_version(struct store *st, int64_t *version);

/* One agent's part in one task. */
struct store_task_agent {
    int64_t task_id;
    int64_t agent_id;
    char instance[STORE_INSTANCE_MAX]; /* of the agent, joined on read */
    int64_t pid;
    int64_t delivered_ms; /* the server first sent the task to it */
    int64_t started_ms;   /* its "started" event; 0 = none */
    int64_t stopped_ms;   /* its "stopped" event; 0 = none */
    int64_t captures;     /* captures it claimed */
};

/* Records that task_id was sent to agent_id (row + log "delivered" with the
 * agent's instance and pid) the first time; -EEXIST (nothing written) when
 * it had been already.  -ENOENT unknown task or agent. */
int store_task_deliver(struct store *st, int64_t task_id, int64_t agent_id, int64_t now_ms);
/* An event an agent reports: "started" (sets the row's started_ms, and the
 * task's when 0), "stopped" (the row's stopped_ms), "error"; logs it with
 * message (may be NULL/"").  Creates the agent's row if the task had not
 * been delivered to it.  -ENOENT unknown task or agent, -EINVAL unknown
 * event. */
int store_task_agent_event(struct store *st, int64_t task_id, int64_t agent_id, const char *event,
                           const char *message, int64_t now_ms);
/* The task's agents, by delivery time. */
int store_task_agents(struct store *st, int64_t task_id, struct store_task_agent **out,
                      size_t *n);

/* One line of a task's log.  event: created, delivered, started, capture,
 * refused, limit-reached, expired, cancelled, stopped, error. */
struct store_task_log {
    int64_t id; /* increasing: orders lines with equal ts_ms */
    int64_t task_id;
    int64_t ts_ms;
    char event[STORE_KIND_MAX];
    int64_t agent_id; /* 0 = the server */
    char message[STORE_MESSAGE_MAX];
};
/* Appends a line (message truncated to fit is fine here: it is prose).
 * Every writer of log lines (this and the task/capture calls above) stamps
 * a line with at least the time of the task's latest line, so that
 * (ts_ms, id) order is the order of writing even when a request that
 * started earlier commits later; "expired" alone keeps its ends_ms. */
int store_task_log_add(struct store *st, int64_t task_id, int64_t agent_id, const char *event,
                       const char *message, int64_t ts_ms);
/* The whole log in order (ts_ms, id).  -ENOENT unknown task. */
int store_task_logs(struct store *st, int64_t task_id, struct store_task_log **out, size_t *n);

/* One slow call a task caught (SPEC B2).  Claimed first (metadata), then
 * its snapshots arrive as a gzipped pprof: state "uploading" → "complete". */
struct store_capture {
    int64_t id;
    int64_t task_id;
    int64_t agent_id;
    int64_t slot; /* 1..max_samples: its place in the task's limit */
    char app[STORE_APP_MAX];           /* of the agent, set by the store */
    char instance[STORE_INSTANCE_MAX];
    int64_t pid;
    char trace_id[STORE_TRACE_MAX];
    char interface[STORE_INTERFACE_MAX];
    int64_t start_ms;      /* the call's start */
    int64_t response_code; /* 0 = not set */
    char peer[STORE_PEER_MAX];
    int64_t total_ms;      /* the call's duration */
    int64_t snapshots;     /* from the claim, then the stored profile's */
    char state[STORE_KIND_MAX]; /* uploading, complete */
    int64_t profile_bytes; /* 0 = none yet */
    int64_t created_ms;
};

/* Claims the next slot of task c->task_id for agent c->agent_id, in one
 * transaction: the task must be "running" with ends_ms > now_ms and
 * captures < max_samples.  Then: c->id, c->slot (= captures + 1), app,
 * instance, pid, state "uploading", created_ms = now_ms are set and the
 * capture stored; the task's and the agent row's captures go up by one;
 * log "capture" (slot, trace id, total ms, agent); and when slot ==
 * max_samples the task becomes "limit-reached" (ended_ms = now_ms, log
 * "limit-reached", version bumped).  task_state (STORE_KIND_MAX bytes, may
 * be NULL) receives the task's state after the call.
 * -ENOENT unknown task or agent; -EEXIST the task is not running or is
 * full (nothing written; task_state says which). */
int store_capture_claim(struct store *st, struct store_capture *c, int64_t now_ms,
                        char *task_state);
/* Stores the snapshots of capture id (gzipped pprof as uploaded + its
 * flame tree blob, views.h) and sets snapshots, profile_bytes and state
 * "complete".  -ENOENT unknown capture, -EEXIST it has them already. */
int store_capture_profile_put(struct store *st, int64_t id, const void *pprof, size_t pprof_len,
                              const void *tree, size_t tree_len, int64_t snapshots,
                              int64_t now_ms);
int store_capture_get(struct store *st, int64_t id, struct store_capture *out);
/* A task's captures by slot.  (The task itself is not checked: an unknown
 * task has none.) */
int store_capture_list(struct store *st, int64_t task_id, struct store_capture **out, size_t *n);
/* The pprof / flame tree of a capture (*buf malloc'ed); -ENOENT no such
 * capture or none stored yet. */
int store_capture_profile_get(struct store *st, int64_t id, void **buf, size_t *len);
int store_capture_tree_get(struct store *st, int64_t id, void **buf, size_t *len);
/* Captures whose trace_id equals trace_id, oldest first. */
int store_capture_by_trace(struct store *st, const char *trace_id, struct store_capture **out,
                           size_t *n);

/* A span of a session: a trace that has samples in the session's profile
 * (pprof label trace_id), indexed at upload (store_profile.traces). */
struct store_trace_span {
    int64_t session_id;
    char trace_id[STORE_TRACE_MAX];
    char interface[STORE_INTERFACE_MAX];
    int64_t samples;
};
/* The session spans of trace_id, oldest session first. */
int store_trace_sessions(struct store *st, const char *trace_id, struct store_trace_span **out,
                         size_t *n);

/* ------------------------------------------------------------------ */
/* Load tests (SPEC A6)                                                */

#define STORE_URL_MAX 2049    /* = LOADGEN_URL_MAX + NUL */
#define STORE_METHOD_MAX 16
#define STORE_ERROR_MAX 512   /* why a load test failed */

/* One load test: a request spec run by a server's load generator.
 * state: "queued" (created) → "in progress" (a runner claimed it) →
 * "completed" (ran its duration), "failed" (could not run, or the
 * server stopped meanwhile; error says why) or "cancelled" (cancelled
 * while queued, or stopped early by a cancel: results so far are kept).
 * The request's headers and body and the results document are kept
 * beside the row (store_loadtest_request, store_loadtest_result): the
 * row itself stays small enough to list. */
struct store_loadtest {
    int64_t id;
    char url[STORE_URL_MAX];
    char method[STORE_METHOD_MAX];
    int64_t users;        /* 1..10000 */
    int64_t duration_s;   /* 1..3600 */
    double rate;          /* requests/s; 0 = as fast as the users go */
    int64_t timeout_ms;   /* per request */
    int64_t n_headers;    /* in the headers document */
    int64_t body_bytes;
    char profile_app[STORE_APP_MAX]; /* profile during test: "" = no */
    int64_t profile_now_id; /* its Profile Now request; 0 = none (yet) */
    char state[STORE_KIND_MAX];
    int cancel_requested;   /* a cancel arrived while in progress */
    char error[STORE_ERROR_MAX]; /* "" unless failed */
    int64_t token_id;             /* creator's token, 0 = unknown */
    char creator[STORE_NAME_MAX]; /* its name at creation */
    int64_t created_ms;
    int64_t started_ms;   /* 0 while queued */
    int64_t ended_ms;     /* 0 until completed/failed/cancelled */
    int64_t requests;     /* responses so far (progress) or in all */
    int64_t errors;
};

struct store_loadtest_filter {
    const char *state; /* NULL/"" = any */
    size_t limit;      /* 0 = 50; at most 1000 */
    size_t offset;
};

/* Stores a new load test: t->id set, state "queued", started/ended 0,
 * requests/errors 0, cancel_requested 0, profile_now_id 0, error "";
 * headers_json is the request's headers as the API took them (a JSON
 * document the store does not interpret, NUL-terminated, not NULL), body
 * body_len bytes (may be NULL/0).  -EBUSY (nothing written; the message
 * says so) when max_queued tests are queued already. */
int store_loadtest_create(struct store *st, struct store_loadtest *t, const char *headers_json,
                          const void *body, size_t body_len, int64_t max_queued);
int store_loadtest_get(struct store *st, int64_t id, struct store_loadtest *out);
/* Load tests matching f, newest created first, paged; *total counts all
 * matches. */
int store_loadtest_list(struct store *st, const struct store_loadtest_filter *f,
                        struct store_loadtest **out, size_t *n, int64_t *total);
/* The request's headers document (*headers_json malloc'ed, NUL-terminated)
 * and body (*body malloc'ed, NULL when body_len is 0; body and body_len
 * both NULL: the headers only, the body is not read).  -ENOENT unknown. */
int store_loadtest_request(struct store *st, int64_t id, char **headers_json, void **body,
                           size_t *body_len);
/* The results document as last stored (*result_json malloc'ed).  -ENOENT
 * unknown test or none stored yet. */
int store_loadtest_result(struct store *st, int64_t id, char **result_json);
/* Claims the oldest queued test for a runner, in one transaction: state
 * "in progress", started_ms = now_ms; *out = the row after the claim.
 * -ENOENT when nothing is queued. */
int store_loadtest_claim(struct store *st, int64_t now_ms, struct store_loadtest *out);
/* Stores the progress of an in-progress test: requests, errors and the
 * results document so far (result_json may be NULL: keep the last one);
 * *cancel_requested (may be NULL) = the row's flag.  -ENOENT unknown,
 * -EEXIST not in progress (nothing written). */
int store_loadtest_progress(struct store *st, int64_t id, int64_t requests, int64_t errors,
                            const char *result_json, int *cancel_requested);
/* Ends an in-progress test: state "completed", "failed" or "cancelled",
 * ended_ms = now_ms, error (NULL/"" unless failed), requests, errors and
 * the final results document (may be NULL: keep the last one).
 * -ENOENT unknown, -EEXIST not in progress, -EINVAL other state. */
int store_loadtest_finish(struct store *st, int64_t id, const char *state, const char *error,
                          int64_t requests, int64_t errors, const char *result_json,
                          int64_t now_ms);
/* Cancels: a queued test becomes "cancelled" (ended_ms = now_ms) at once;
 * an in-progress one gets cancel_requested = 1 (its runner ends it).
 * *out = the row after the call.  -ENOENT unknown; -EEXIST it has ended
 * already (nothing written; *out still filled). */
int store_loadtest_cancel(struct store *st, int64_t id, int64_t now_ms,
                          struct store_loadtest *out);
/* Every in-progress test with started_ms < started_before_ms becomes
 * "failed" with error message and ended_ms = now_ms (a runner that died
 * with its server never ends its test).  *n (may be NULL) = how many. */
int store_loadtest_abandon(struct store *st, int64_t started_before_ms, const char *error,
                           int64_t now_ms, int64_t *n);

/* ------------------------------------------------------------------ */
/* Opening, closing, errors                                            */

/* Opens the store named by url (see top), creating and migrating it as
 * needed.  data_dir is where relative SQLite paths live.  0 and *out, or
 * a negative code with the message in err. */
int store_open(const char *url, struct store **out, char *err, size_t errlen);
/* Closes: waits for nothing (callers stop using it first), checkpoints
 * and releases everything.  NULL is a no-op. */
void store_close(struct store *st);
/* The calling thread's last error message from this store ("" if none). */
const char *store_errmsg(struct store *st);
/* Runs the implementation's consistency check ("ok" on success, else a
 * description); *report malloc'ed. */
int store_check(struct store *st, char **report);

/* ------------------------------------------------------------------ */
/* Implementations                                                     */

/* The table every implementation fills; store.c dispatches through it.
 * Each member has the contract of the public function of the same name. */
struct store_ops {
    const char *name; /* "sqlite" */
    void (*close)(struct store *st);
    int (*check)(struct store *st, char **report);
    int (*agent_register)(struct store *, struct store_agent *);
    int (*agent_heartbeat)(struct store *, int64_t, int64_t, double, double, int64_t);
    int (*agent_stop)(struct store *, int64_t, int64_t);
    int (*agent_get)(struct store *, int64_t, struct store_agent *);
    int (*agent_list)(struct store *, const struct store_agent_filter *, struct store_agent **,
                      size_t *);
    int (*session_create)(struct store *, struct store_session *);
    int (*session_update)(struct store *, const struct store_session *);
    int (*session_get)(struct store *, int64_t, struct store_session *);
    int (*session_list)(struct store *, const struct store_session_filter *,
                        struct store_session **, size_t *, int64_t *);
    int (*profile_put)(struct store *, const struct store_profile *);
    int (*profile_get)(struct store *, int64_t, void **, size_t *);
    int (*tree_get)(struct store *, int64_t, void **, size_t *);
    int (*tree_foreach)(struct store *, const struct store_session_filter *, store_tree_fn,
                        void *);
    int (*pprof_foreach)(struct store *, const struct store_session_filter *, store_tree_fn,
                         void *);
    int (*retention_purge)(struct store *, int64_t, int64_t *);
    int (*profile_now_create)(struct store *, struct store_profile_now *);
    int (*profile_now_since)(struct store *, int64_t, const char *, int64_t,
                             struct store_profile_now **, size_t *);
    int (*profile_now_recent)(struct store *, size_t, struct store_profile_now **, size_t *);
    int (*profile_now_last_id)(struct store *, int64_t *);
    int (*profile_now_get)(struct store *, int64_t, struct store_profile_now *);
    int (*setting_get)(struct store *, const char *, const char *, char **);
    int (*setting_put)(struct store *, const char *, const char *, const char *);
    int (*setting_apps)(struct store *, const char *, char (**)[STORE_APP_MAX], size_t *);
    int (*settings_version)(struct store *, int64_t *);
    int (*token_create)(struct store *, struct store_token *);
    int (*token_find)(struct store *, const char *, struct store_token *);
    int (*token_get)(struct store *, int64_t, struct store_token *);
    int (*token_list)(struct store *, struct store_token **, size_t *);
    int (*token_revoke)(struct store *, int64_t, int64_t);
    int (*token_touch)(struct store *, int64_t, int64_t);
    int (*token_count)(struct store *, const char *, int64_t *);
    int (*task_create)(struct store *, struct store_task *);
    int (*task_get)(struct store *, int64_t, struct store_task *);
    int (*task_list)(struct store *, const struct store_task_filter *, struct store_task **,
                     size_t *);
    int (*task_active)(struct store *, const char *, int64_t, struct store_task **, size_t *);
    int (*task_cancel)(struct store *, int64_t, int64_t, const char *);
    int (*task_expire)(struct store *, int64_t, int64_t *);
    int (*task_version)(struct store *, int64_t *);
    int (*task_deliver)(struct store *, int64_t, int64_t, int64_t);
    int (*task_agent_event)(struct store *, int64_t, int64_t, const char *, const char *,
                            int64_t);
    int (*task_agents)(struct store *, int64_t, struct store_task_agent **, size_t *);
    int (*task_log_add)(struct store *, int64_t, int64_t, const char *, const char *, int64_t);
    int (*task_logs)(struct store *, int64_t, struct store_task_log **, size_t *);
    int (*capture_claim)(struct store *, struct store_capture *, int64_t, char *);
    int (*capture_profile_put)(struct store *, int64_t, const void *, size_t, const void *,
                               size_t, int64_t, int64_t);
    int (*capture_get)(struct store *, int64_t, struct store_capture *);
    int (*capture_list)(struct store *, int64_t, struct store_capture **, size_t *);
    int (*capture_profile_get)(struct store *, int64_t, void **, size_t *);
    int (*capture_tree_get)(struct store *, int64_t, void **, size_t *);
    int (*capture_by_trace)(struct store *, const char *, struct store_capture **, size_t *);
    int (*trace_sessions)(struct store *, const char *, struct store_trace_span **, size_t *);
    int (*loadtest_create)(struct store *, struct store_loadtest *, const char *, const void *,
                           size_t, int64_t);
    int (*loadtest_get)(struct store *, int64_t, struct store_loadtest *);
    int (*loadtest_list)(struct store *, const struct store_loadtest_filter *,
                         struct store_loadtest **, size_t *, int64_t *);
    int (*loadtest_request)(struct store *, int64_t, char **, void **, size_t *);
    int (*loadtest_result)(struct store *, int64_t, char **);
    int (*loadtest_claim)(struct store *, int64_t, struct store_loadtest *);
    int (*loadtest_progress)(struct store *, int64_t, int64_t, int64_t, const char *, int *);
    int (*loadtest_finish)(struct store *, int64_t, const char *, const char *, int64_t, int64_t,
                           const char *, int64_t);
    int (*loadtest_cancel)(struct store *, int64_t, int64_t, struct store_loadtest *);
    int (*loadtest_abandon)(struct store *, int64_t, const char *, int64_t, int64_t *);
};

/* The base every implementation's struct starts with. */
struct store {
    const struct store_ops *ops;
};

/* Sets the calling thread's error message (printf-style) and returns code;
 * for implementations. */
int store_set_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* SQLite implementation: path of the database file. */
int store_sqlite_open(const char *path, struct store **out, char *err, size_t errlen);

#endif
