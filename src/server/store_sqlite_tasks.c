/*
 * store_sqlite_tasks.c — the SQLite store's active profiling (store.h,
 * SPEC B1–B4): tasks, each agent's part in them, their log, and the
 * captures they took with their snapshots.  (The trace spans of session
 * profiles are stored with the profile, store_sqlite_sessions.c.)  The
 * machinery it runs on (connections, transactions, binding) is
 * store_sqlite.c's, the SQL store_sqlite_sql.c's.
 *
 * The limit of a task is kept here.  Agents capture slow calls on their
 * own and then claim a slot (store_capture_claim); every claim is one
 * write transaction (the writer's mutex, then BEGIN IMMEDIATE against
 * other processes), which reads the task, refuses when it is not running
 * or full, and else takes slot captures + 1 with an UPDATE that repeats
 * the test (state running, captures < max_samples) — so concurrent claims
 * are granted one after another and never more than max_samples in all;
 * captures' UNIQUE (task_id, slot) would refuse a second slot N anyway.
 * The claim that takes the last slot ends the task ("limit-reached") and
 * bumps the task version in the same transaction, so the agents' next
 * poll sees the change.
 *
 * Every change of state writes its log line in the same transaction: the
 * log is the task's story, and never tells of something that was rolled
 * back.  Log lines are prose for people (who, what, the numbers), cut at
 * a character boundary to fit STORE_MESSAGE_MAX.
 *
 * Expiry runs often (every poll, every task read, a 1 s tick): a reader
 * first asks whether any running task is due, so that the calls that find
 * none never take the write lock.
 *
 * An agent's instance and pid are copied into task_agents and captures
 * when the row is made (an agent never changes them): they stay when
 * retention drops the agent's row.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/store_sqlite_internal.h"

#define TASK_LIMIT_DEFAULT 100
#define TASK_LIMIT_MAX 10000
#define TASK_ACTIVE_MAX 10000
#define EXPIRE_BATCH 1000     /* the rest on the next call */
#define TASK_AGENTS_MAX 10000
#define TASK_LOGS_MAX 100000
#define CAPTURES_MAX 10000
#define TRACE_CAPTURES_MAX 10000

/* ------------------------------------------------------------------ */
/* Rows                                                                */

/* The columns of TASK_COLS, TASK_AGENT_COLS, TASK_LOG_COLS and
 * CAPTURE_COLS (store_sqlite_sql.c). */
#define COL(type, member) SQ_COL(struct store_task, type, member)
static const struct sq_col task_cols[] = {
    COL(I64, id),           COL(TXT, app),          COL(TXT, interface),  COL(I64, duration_min),
    COL(I64, threshold_ms), COL(I64, frequency_ms), COL(I64, max_samples), COL(TXT, state),
    COL(I64, token_id),     COL(TXT, creator),      COL(I64, created_ms), COL(I64, started_ms),
    COL(I64, ends_ms),      COL(I64, ended_ms),     COL(I64, captures),
};
#undef COL
#define COL(type, member) SQ_COL(struct store_task_agent, type, member)
static const struct sq_col task_agent_cols[] = {
    COL(I64, task_id),      COL(I64, agent_id),   COL(TXT, instance),   COL(I64, pid),
    COL(I64, delivered_ms), COL(I64, started_ms), COL(I64, stopped_ms), COL(I64, captures),
};
#undef COL
#define COL(type, member) SQ_COL(struct store_task_log, type, member)
static const struct sq_col task_log_cols[] = {
    COL(I64, id),    COL(I64, task_id),  COL(I64, ts_ms),
    COL(TXT, event), COL(I64, agent_id), COL(TXT, message),
};
#undef COL
#define COL(type, member) SQ_COL(struct store_capture, type, member)
static const struct sq_col capture_cols[] = {
    COL(I64, id),          COL(I64, task_id),       COL(I64, agent_id),  COL(I64, slot),
    COL(TXT, app),         COL(TXT, instance),      COL(I64, pid),       COL(TXT, trace_id),
    COL(TXT, interface),   COL(I64, start_ms),      COL(I64, response_code), COL(TXT, peer),
    COL(I64, total_ms),    COL(I64, snapshots),     COL(TXT, state),     COL(I64, profile_bytes),
    COL(I64, created_ms),
};
#undef COL

/* What the log and the captures say of an agent (S_TASK_AGENT_WHO). */
struct who {
    int64_t id;
    char instance[STORE_INSTANCE_MAX];
    int64_t pid;
    char app[STORE_APP_MAX];
};
#define COL(type, member) SQ_COL(struct who, type, member)
static const struct sq_col who_cols[] = {COL(TXT, instance), COL(I64, pid), COL(TXT, app)};
#undef COL

#define ROW_FN(name, T, cols)                                                                      \
    static int name(struct conn *c, sqlite3_stmt *q, void *out)                                   \
    {                                                                                              \
        return sq_row_read(c, q, cols, SQ_COUNT(cols), sizeof(T), out);                            \
    }
ROW_FN(row_task, struct store_task, task_cols)
ROW_FN(row_task_agent, struct store_task_agent, task_agent_cols)
ROW_FN(row_task_log, struct store_task_log, task_log_cols)
ROW_FN(row_capture, struct store_capture, capture_cols)
ROW_FN(row_who, struct who, who_cols)
#undef ROW_FN

static const char *plural(int64_t n)
{
    return n == 1 ? "" : "s";
}

/* src into dst[cap], cut before the character that would not fit. */
static void text_fit(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80) /* inside a character */
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* Steps inside a write transaction (on the writer c)                  */

/* Task id into *t; -ENOENT "task N not found". */
static int task_read(struct conn *c, int64_t id, struct store_task *t)
{
    int rc = sq_query_row(c, sq_stmt(c, S_TASK_GET), SQ_ARGS(A_I64(id)), "reading a task",
                          row_task, t);
    return rc == 1 ? store_set_error(-ENOENT, "task %" PRId64 " not found", id) : rc;
}

static int task_exists(struct conn *c, int64_t id)
{
    int rc = sq_query_row(c, sq_stmt(c, S_TASK_EXISTS), SQ_ARGS(A_I64(id)), "reading a task",
                          NULL, NULL);
    return rc == 1 ? store_set_error(-ENOENT, "task %" PRId64 " not found", id) : rc;
}

/* Agent id's instance, pid and app; -ENOENT "agent N not found". */
static int who_read(struct conn *c, int64_t id, struct who *w)
{
    int rc = sq_query_row(c, sq_stmt(c, S_TASK_AGENT_WHO), SQ_ARGS(A_I64(id)),
                          "reading an agent", row_who, w);
    if (rc == 1)
        return store_set_error(-ENOENT, "agent %" PRId64 " not found", id);
    w->id = id;
    return rc;
}

/* "agent 3 (web-1, pid 4242)" */
static void who_name(const struct who *w, char *buf, size_t cap)
{
    snprintf(buf, cap, "agent %" PRId64 " (%s, pid %" PRId64 ")", w->id, w->instance, w->pid);
}

/* Appends a log line (printf-style message, cut to fit). */
__attribute__((format(printf, 6, 7))) static int log_put(struct conn *c, int64_t task_id,
                                                         int64_t ts_ms, const char *event,
                                                         int64_t agent_id, const char *fmt, ...)
{
    char text[2048], message[STORE_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    text_fit(message, sizeof message, text);
    return sq_run(c, S_TASK_LOG_INSERT,
                  SQ_ARGS(A_I64(task_id), A_I64(ts_ms), A_TXT(event), A_I64(agent_id),
                          A_TXT(message)),
                  "writing a task log line", NULL);
}

static int version_bump(struct conn *c)
{
    return sq_step_simple(c, S_TASK_VERSION_BUMP, "bumping the task version");
}

/* The agent's row in the task, made on first contact. */
static int task_agent_ensure(struct conn *c, int64_t task_id, const struct who *w, int64_t now_ms)
{
    return sq_run(c, S_TASK_AGENT_ENSURE,
                  SQ_ARGS(A_I64(task_id), A_I64(w->id), A_TXT(w->instance), A_I64(w->pid),
                          A_I64(now_ms)),
                  "recording a task's agent", NULL);
}

/* ------------------------------------------------------------------ */
/* Tasks                                                               */

int sq_task_create(struct store *st, struct store_task *t)
{
    struct sqlite_store *s = sq_impl(st);
    if (!t)
        return store_set_error(-EINVAL, "no task");
    int rc = sq_text_ok(t->app, sizeof t->app, "app");
    if (!rc)
        rc = sq_text_ok(t->interface, sizeof t->interface, "interface");
    if (!rc)
        rc = sq_text_ok(t->creator, sizeof t->creator, "creator");
    if (rc)
        return rc;
    if (!t->app[0] || !t->interface[0])
        return store_set_error(-EINVAL, "a task needs an app and an interface");
    if (t->duration_min <= 0 || t->threshold_ms <= 0 || t->frequency_ms <= 0 ||
        t->max_samples <= 0)
        return store_set_error(-EINVAL, "a task's duration, threshold, frequency and maximum "
                                        "samples must be positive");
    if (t->ends_ms <= t->created_ms)
        return store_set_error(-EINVAL, "a task must end after it is created");
    char creator[STORE_NAME_MAX + 32];
    if (t->creator[0])
        snprintf(creator, sizeof creator, "%s", t->creator);
    else if (t->token_id)
        snprintf(creator, sizeof creator, "token %" PRId64, t->token_id);
    else
        snprintf(creator, sizeof creator, "an unknown token");

    if ((rc = sq_write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    int64_t id = 0;
    rc = sq_run(c, S_TASK_INSERT,
                SQ_ARGS(A_TXT(t->app), A_TXT(t->interface), A_I64(t->duration_min),
                        A_I64(t->threshold_ms), A_I64(t->frequency_ms), A_I64(t->max_samples),
                        A_I64(t->token_id), A_TXT(t->creator), A_I64(t->created_ms),
                        A_I64(t->ends_ms)),
                "creating a task", &id);
    if (rc == 0)
        rc = log_put(c, id, t->created_ms, "created", 0,
                     "created by %s: app '%s', interface '%s', %" PRId64 " min, threshold %" PRId64
                     " ms, every %" PRId64 " ms, max %" PRId64 " capture%s",
                     creator, t->app, t->interface, t->duration_min, t->threshold_ms,
                     t->frequency_ms, t->max_samples, plural(t->max_samples));
    if (rc == 0)
        rc = version_bump(c);
    rc = sq_write_end(s, rc);
    if (rc == 0) {
        /* What is stored. */
        t->id = id;
        snprintf(t->state, sizeof t->state, "running");
        t->started_ms = t->ended_ms = t->captures = 0;
    }
    return rc;
}

int sq_task_get(struct store *st, int64_t id, struct store_task *out)
{
    return sq_get_by_id(sq_impl(st), S_TASK_GET, id, "task", row_task, out);
}

int sq_task_list(struct store *st, const struct store_task_filter *f, struct store_task **out,
                 size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the task list");
    *out = NULL;
    *n = 0;
    unsigned mask = 0;
    size_t limit = TASK_LIMIT_DEFAULT;
    int rc = 0;
    if (f) {
        if (sq_is_set(f->app)) {
            mask |= FM_APP;
            rc = sq_text_ok(f->app, STORE_APP_MAX, "filter app");
        }
        if (!rc && sq_is_set(f->state)) {
            mask |= FM_STATE;
            rc = sq_text_ok(f->state, STORE_KIND_MAX, "filter state");
        }
        if (f->from_ms)
            mask |= FM_FROM;
        if (f->to_ms)
            mask |= FM_TO;
        if (!rc && f->limit > TASK_LIMIT_MAX)
            rc = store_set_error(-EINVAL, "task list limit %zu is over %d", f->limit,
                                 TASK_LIMIT_MAX);
        if (f->limit)
            limit = f->limit;
    }
    if (rc)
        return rc;
    void *rows = NULL;
    rc = sq_read_filtered_rows(sq_impl(st), F_TASK_LIST, mask,
                               SQ_ARGS((mask & FM_APP) ? A_TXT(f->app) : A_NONE, A_NONE,
                                       (mask & FM_STATE) ? A_TXT(f->state) : A_NONE,
                                       (mask & FM_FROM) ? A_I64(f->from_ms) : A_NONE,
                                       (mask & FM_TO) ? A_I64(f->to_ms) : A_NONE,
                                       A_I64((int64_t)limit)),
                               "listing tasks", row_task, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

int sq_task_active(struct store *st, const char *app, int64_t now_ms, struct store_task **out,
                   size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the active tasks");
    *out = NULL;
    *n = 0;
    int rc = sq_text_ok(app, STORE_APP_MAX, "app");
    if (rc)
        return rc;
    void *rows = NULL;
    rc = sq_read_rows(sq_impl(st), S_TASK_ACTIVE,
                      SQ_ARGS(A_TXT(app), A_I64(now_ms), A_I64(TASK_ACTIVE_MAX)),
                      "listing active tasks", row_task, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

int sq_task_cancel(struct store *st, int64_t id, int64_t now_ms, const char *who)
{
    struct sqlite_store *s = sq_impl(st);
    int rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    struct store_task t;
    rc = task_read(c, id, &t);
    if (rc == 0 && strcmp(t.state, "running") != 0)
        rc = store_set_error(-EEXIST, "task %" PRId64 " has already ended (%s)", id, t.state);
    else if (rc == 0 && t.ends_ms <= now_ms) /* due, not yet marked: store_task_expire's */
        rc = store_set_error(-EEXIST, "task %" PRId64 " has already ended (expired)", id);
    if (rc == 0)
        rc = sq_run_one(c, S_TASK_CANCEL, SQ_ARGS(A_I64(id), A_I64(now_ms)), "task",
                        "cancelling a task");
    if (rc == 0)
        rc = log_put(c, id, now_ms, "cancelled", 0,
                     "cancelled by %s after %" PRId64 " of %" PRId64 " capture%s",
                     sq_is_set(who) ? who : "an unknown token", t.captures, t.max_samples,
                     plural(t.max_samples));
    if (rc == 0)
        rc = version_bump(c);
    return sq_write_end(s, rc);
}

int sq_task_expire(struct store *st, int64_t now_ms, int64_t *n)
{
    struct sqlite_store *s = sq_impl(st);
    if (n)
        *n = 0;
    /* A reader first: see the top of the file. */
    int rc = sq_read_row(s, S_TASK_DUE, SQ_ARGS(A_I64(now_ms)), "looking for expired tasks",
                         NULL, NULL);
    if (rc)
        return rc == 1 ? 0 : rc;
    if ((rc = sq_write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    void *rows = NULL;
    size_t due = 0;
    int64_t count = 0;
    rc = sq_query_rows(c, sq_stmt(c, S_TASK_DUE_LIST),
                       SQ_ARGS(A_I64(now_ms), A_I64(EXPIRE_BATCH)), "listing expired tasks",
                       row_task, sizeof(struct store_task), &rows, &due);
    const struct store_task *t = rows;
    for (size_t i = 0; rc == 0 && i < due; i++) {
        rc = sq_run(c, S_TASK_EXPIRE, SQ_ARGS(A_I64(t[i].id)), "expiring a task", NULL);
        if (rc == 0 && sqlite3_changes(c->db) == 1) {
            count++;
            rc = log_put(c, t[i].id, t[i].ends_ms, "expired", 0,
                         "expired after %" PRId64 " min with %" PRId64 " of %" PRId64
                         " capture%s",
                         t[i].duration_min, t[i].captures, t[i].max_samples,
                         plural(t[i].max_samples));
        }
    }
    free(rows);
    if (rc == 0 && count)
        rc = version_bump(c);
    rc = sq_write_end(s, rc);
    if (rc == 0 && n)
        *n = count;
    return rc;
}

int sq_task_version(struct store *st, int64_t *version)
{
    return sq_read_int(sq_impl(st), S_TASK_VERSION, NULL, 0, version,
                       "reading the task version");
}

/* ------------------------------------------------------------------ */
/* A task's agents and log                                             */

int sq_task_deliver(struct store *st, int64_t task_id, int64_t agent_id, int64_t now_ms)
{
    struct sqlite_store *s = sq_impl(st);
    int rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    struct who w;
    char name[STORE_INSTANCE_MAX + 64];
    rc = task_exists(c, task_id);
    if (rc == 0)
        rc = who_read(c, agent_id, &w);
    if (rc == 0) {
        rc = sq_run(c, S_TASK_AGENT_INSERT,
                    SQ_ARGS(A_I64(task_id), A_I64(agent_id), A_TXT(w.instance), A_I64(w.pid),
                            A_I64(now_ms)),
                    "recording a delivery", NULL);
        if (rc == -EEXIST) /* the primary key */
            rc = store_set_error(-EEXIST,
                                 "task %" PRId64 " was already delivered to agent %" PRId64,
                                 task_id, agent_id);
    }
    if (rc == 0) {
        who_name(&w, name, sizeof name);
        rc = log_put(c, task_id, now_ms, "delivered", agent_id, "delivered to %s", name);
    }
    return sq_write_end(s, rc);
}

int sq_task_agent_event(struct store *st, int64_t task_id, int64_t agent_id, const char *event,
                        const char *message, int64_t now_ms)
{
    struct sqlite_store *s = sq_impl(st);
    static const char *const events[] = {"started", "stopped", "error"};
    static const char *const verbs[] = {"started on", "stopped on", "error on"};
    size_t e = 0;
    while (e < SQ_COUNT(events) && !(event && strcmp(event, events[e]) == 0))
        e++;
    if (e == SQ_COUNT(events))
        return store_set_error(-EINVAL, "unknown task event '%.32s' (started, stopped or error)",
                               event ? event : "");
    int rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    struct who w;
    char name[STORE_INSTANCE_MAX + 64];
    rc = task_exists(c, task_id);
    if (rc == 0)
        rc = who_read(c, agent_id, &w);
    if (rc == 0)
        rc = task_agent_ensure(c, task_id, &w, now_ms);
    if (rc == 0 && e == 0) {
        rc = sq_run(c, S_TASK_AGENT_START, SQ_ARGS(A_I64(task_id), A_I64(agent_id), A_I64(now_ms)),
                    "recording a start", NULL);
        if (rc == 0)
            rc = sq_run(c, S_TASK_START, SQ_ARGS(A_I64(task_id), A_I64(now_ms)),
                        "recording a start", NULL);
    } else if (rc == 0 && e == 1) {
        rc = sq_run(c, S_TASK_AGENT_STOP, SQ_ARGS(A_I64(task_id), A_I64(agent_id), A_I64(now_ms)),
                    "recording a stop", NULL);
    }
    if (rc == 0) {
        who_name(&w, name, sizeof name);
        rc = log_put(c, task_id, now_ms, events[e], agent_id, "%s %s%s%s", verbs[e], name,
                     sq_is_set(message) ? ": " : "", sq_is_set(message) ? message : "");
    }
    return sq_write_end(s, rc);
}

/* Rows of statement sid for one task (?1 = task_id, ?2 = limit) after
 * checking, in the same read, that the task exists: a malloc'ed array
 * *out (NULL when none) and *n, nothing on failure. */
static int task_rows(struct sqlite_store *s, enum stmt_id sid, int64_t task_id, int64_t limit,
                     const char *what, sq_row_fn row, size_t size, void **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    struct conn *c;
    int rc = sq_reader_get(s, &c);
    if (rc < 0)
        return rc;
    void *rows = NULL;
    rc = sq_step_simple(c, S_BEGIN_READ, "starting a read");
    if (rc == 0)
        rc = task_exists(c, task_id);
    if (rc == 0)
        rc = sq_query_rows(c, sq_stmt(c, sid), SQ_ARGS(A_I64(task_id), A_I64(limit)), what, row,
                           size, &rows, n);
    if (rc == 0)
        rc = sq_step_simple(c, S_COMMIT, "ending a read");
    sq_reader_put(s, c);
    if (rc < 0) {
        free(rows);
        *n = 0;
        return rc;
    }
    *out = rows;
    return 0;
}

int sq_task_agents(struct store *st, int64_t task_id, struct store_task_agent **out, size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the task's agents");
    void *rows = NULL;
    int rc = task_rows(sq_impl(st), S_TASK_AGENTS, task_id, TASK_AGENTS_MAX,
                       "listing task agents", row_task_agent, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

int sq_task_log_add(struct store *st, int64_t task_id, int64_t agent_id, const char *event,
                    const char *message, int64_t ts_ms)
{
    struct sqlite_store *s = sq_impl(st);
    static const char *const events[] = {
        "created", "delivered", "started", "capture", "refused",
        "limit-reached", "expired", "cancelled", "stopped", "error",
    };
    size_t e = 0;
    while (e < SQ_COUNT(events) && !(event && strcmp(event, events[e]) == 0))
        e++;
    if (e == SQ_COUNT(events))
        return store_set_error(-EINVAL, "unknown task log event '%.32s'", event ? event : "");
    int rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    rc = task_exists(c, task_id);
    if (rc == 0) /* prose: cut to fit, see store.h */
        rc = log_put(c, task_id, ts_ms, events[e], agent_id, "%s", message ? message : "");
    return sq_write_end(s, rc);
}

int sq_task_logs(struct store *st, int64_t task_id, struct store_task_log **out, size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the task log");
    void *rows = NULL;
    int rc = task_rows(sq_impl(st), S_TASK_LOGS, task_id, TASK_LOGS_MAX, "reading a task log",
                       row_task_log, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Captures                                                            */

static int capture_claim_ok(const struct store_capture *x)
{
    if (!x)
        return store_set_error(-EINVAL, "no capture");
    int rc = sq_text_ok(x->trace_id, sizeof x->trace_id, "trace_id");
    if (!rc)
        rc = sq_text_ok(x->interface, sizeof x->interface, "interface");
    if (!rc)
        rc = sq_text_ok(x->peer, sizeof x->peer, "peer");
    if (rc)
        return rc;
    if (!x->trace_id[0])
        return store_set_error(-EINVAL, "a capture needs a trace_id");
    if (x->start_ms < 0 || x->response_code < 0 || x->total_ms < 0 || x->snapshots < 0)
        return store_set_error(-EINVAL, "a capture's start_ms, response_code, total_ms and "
                                        "snapshots must not be negative");
    return 0;
}

int sq_capture_claim(struct store *st, struct store_capture *x, int64_t now_ms, char *task_state)
{
    struct sqlite_store *s = sq_impl(st);
    if (task_state)
        task_state[0] = '\0';
    int rc = capture_claim_ok(x);
    if (rc)
        return rc;
    if ((rc = sq_write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    struct store_task t;
    struct who w;
    const char *state = NULL; /* the task's after the call, for task_state */
    int64_t id = 0, slot = 0;
    rc = task_read(c, x->task_id, &t);
    if (rc == 0)
        rc = who_read(c, x->agent_id, &w);
    if (rc == 0 && strcmp(x->interface, t.interface) != 0)
        rc = store_set_error(-EINVAL, "interface '%s' is not task %" PRId64 "'s ('%s')",
                             x->interface, t.id, t.interface);
    if (rc == 0) {
        state = t.state;
        /* The refusals: see the top of the file.  A running task past its
         * end is expired in all but the mark store_task_expire will set. */
        if (strcmp(t.state, "running") != 0)
            rc = store_set_error(-EEXIST, "task %" PRId64 " has ended (%s)", t.id, t.state);
        else if (t.ends_ms <= now_ms) {
            state = "expired";
            rc = store_set_error(-EEXIST, "task %" PRId64 " has ended (expired)", t.id);
        } else if (t.captures >= t.max_samples) {
            state = "limit-reached";
            rc = store_set_error(-EEXIST, "task %" PRId64 " reached its limit of %" PRId64
                                          " capture%s",
                                 t.id, t.max_samples, plural(t.max_samples));
        }
    }
    if (rc == 0) {
        slot = t.captures + 1;
        rc = sq_run(c, S_TASK_TAKE_SLOT, SQ_ARGS(A_I64(t.id), A_I64(now_ms)), "claiming a slot",
                    NULL);
        if (rc == 0 && sqlite3_changes(c->db) != 1) /* cannot be: read under the same lock */
            rc = store_set_error(-EIO, "task %" PRId64 " changed while claiming a slot", t.id);
    }
    if (rc == 0)
        rc = task_agent_ensure(c, t.id, &w, now_ms);
    if (rc == 0)
        rc = sq_run(c, S_TASK_AGENT_CAPTURE, SQ_ARGS(A_I64(t.id), A_I64(w.id)),
                    "counting an agent's capture", NULL);
    if (rc == 0)
        rc = sq_run(c, S_CAPTURE_INSERT,
                    SQ_ARGS(A_I64(t.id), A_I64(w.id), A_I64(slot), A_TXT(w.app),
                            A_TXT(w.instance), A_I64(w.pid), A_TXT(x->trace_id),
                            A_TXT(x->interface), A_I64(x->start_ms), A_I64(x->response_code),
                            A_TXT(x->peer), A_I64(x->total_ms), A_I64(x->snapshots),
                            A_I64(now_ms)),
                    "storing a capture", &id);
    if (rc == 0) {
        char name[STORE_INSTANCE_MAX + 64], code[32] = "";
        who_name(&w, name, sizeof name);
        if (x->response_code)
            snprintf(code, sizeof code, ", response %" PRId64, x->response_code);
        rc = log_put(c, t.id, now_ms, "capture", w.id,
                     "capture %" PRId64 "/%" PRId64 " by %s: trace %s, %" PRId64 " ms%s%s%s, "
                     "%" PRId64 " snapshot%s",
                     slot, t.max_samples, name, x->trace_id, x->total_ms, code,
                     x->peer[0] ? ", peer " : "", x->peer, x->snapshots, plural(x->snapshots));
    }
    if (rc == 0 && slot == t.max_samples) {
        state = "limit-reached";
        rc = log_put(c, t.id, now_ms, "limit-reached", 0, "limit of %" PRId64 " capture%s reached",
                     t.max_samples, plural(t.max_samples));
        if (rc == 0)
            rc = version_bump(c);
    }
    rc = sq_write_end(s, rc);
    if (rc == 0) {
        x->id = id;
        x->slot = slot;
        snprintf(x->app, sizeof x->app, "%s", w.app);
        snprintf(x->instance, sizeof x->instance, "%s", w.instance);
        x->pid = w.pid;
        snprintf(x->state, sizeof x->state, "uploading");
        x->profile_bytes = 0;
        x->created_ms = now_ms;
    }
    /* After a failed commit nothing changed: the state read stands. */
    if (task_state && state && (rc == 0 || rc == -EEXIST))
        snprintf(task_state, STORE_KIND_MAX, "%s", state);
    return rc;
}

int sq_capture_profile_put(struct store *st, int64_t id, const void *pprof, size_t pprof_len,
                           const void *tree, size_t tree_len, int64_t snapshots, int64_t now_ms)
{
    struct sqlite_store *s = sq_impl(st);
    if (!pprof || pprof_len == 0)
        return store_set_error(-EINVAL, "no snapshot bytes");
    if (!tree && tree_len)
        return store_set_error(-EINVAL, "no flame tree bytes");
    if (pprof_len > INT64_MAX || tree_len > INT64_MAX)
        return store_set_error(-EINVAL, "snapshots too large");
    if (snapshots < 0)
        return store_set_error(-EINVAL, "negative snapshot count");
    int rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    /* The capture first, then its profile: as store_profile_put. */
    rc = sq_run_one(s->writer, S_CAPTURE_MARK,
                    SQ_ARGS(A_I64(id), A_I64(snapshots), A_I64((int64_t)pprof_len)), "capture",
                    "storing snapshots");
    if (rc == 0) {
        rc = sq_run(s->writer, S_CAPTURE_PROFILE_INSERT,
                    SQ_ARGS(A_I64(id), A_I64((int64_t)pprof_len), A_I64(now_ms),
                            A_BLOB(tree, tree_len), A_BLOB(pprof, pprof_len)),
                    "storing snapshots", NULL);
        if (rc == -EEXIST) /* the primary key */
            rc = store_set_error(-EEXIST, "capture %" PRId64 " already has its snapshots", id);
    }
    return sq_write_end(s, rc);
}

int sq_capture_get(struct store *st, int64_t id, struct store_capture *out)
{
    return sq_get_by_id(sq_impl(st), S_CAPTURE_GET, id, "capture", row_capture, out);
}

int sq_capture_list(struct store *st, int64_t task_id, struct store_capture **out, size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the captures");
    *out = NULL;
    *n = 0;
    void *rows = NULL;
    int rc = sq_read_rows(sq_impl(st), S_CAPTURE_LIST, SQ_ARGS(A_I64(task_id), A_I64(CAPTURES_MAX)),
                          "listing captures", row_capture, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

static const struct sq_blob_names snapshot_names = {
    "snapshots", "reading snapshots", "capture", "reading a capture", "has no snapshots yet",
};

int sq_capture_profile_get(struct store *st, int64_t id, void **buf, size_t *len)
{
    return sq_read_blob(sq_impl(st), S_CAPTURE_PROFILE_GET, S_CAPTURE_EXISTS, id, &snapshot_names,
                        buf, len);
}

int sq_capture_tree_get(struct store *st, int64_t id, void **buf, size_t *len)
{
    return sq_read_blob(sq_impl(st), S_CAPTURE_TREE_GET, S_CAPTURE_EXISTS, id, &snapshot_names,
                        buf, len);
}

int sq_trace_rows(struct sqlite_store *s, enum stmt_id sid, const char *trace_id, int64_t limit,
                  const char *what, sq_row_fn row, size_t size, void **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!sq_is_set(trace_id))
        return store_set_error(-EINVAL, "no trace_id");
    int rc = sq_text_ok(trace_id, STORE_TRACE_MAX, "trace_id");
    if (rc)
        return rc;
    void *rows = NULL;
    rc = sq_read_rows(s, sid, SQ_ARGS(A_TXT(trace_id), A_I64(limit)), what, row, size, &rows, n);
    *out = rows;
    return rc;
}

int sq_capture_by_trace(struct store *st, const char *trace_id, struct store_capture **out,
                        size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the trace's captures");
    void *rows = NULL;
    int rc = sq_trace_rows(sq_impl(st), S_CAPTURE_BY_TRACE, trace_id, TRACE_CAPTURES_MAX,
                           "finding a trace's captures", row_capture, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Retention                                                           */

int sq_purge_tasks(struct conn *c, int64_t before_ms, int64_t batch, int64_t *n)
{
    *n = 0;
    int rc = sq_run(c, S_PURGE_TASKS, SQ_ARGS(A_I64(before_ms), A_I64(batch)), "purging tasks",
                    NULL);
    if (rc == 0) /* the parent rows only: cascaded deletes are not counted */
        *n = sqlite3_changes(c->db);
    return rc;
}
