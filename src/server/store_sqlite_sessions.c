/*
 * store_sqlite_sessions.c — the SQLite store's agents, sessions and
 * profiles with their trace spans (store.h): what agents report, the
 * lists people filter, the flame-tree walks that views merge, and
 * retention.  The machinery it
 * runs on (connections, transactions, binding) is store_sqlite.c's, the
 * SQL store_sqlite_sql.c's.
 *
 * A profile upload is one transaction of two statements: the session's
 * row first (an unknown session is -ENOENT before any blob is copied),
 * then the profile, whose primary key refuses a second.
 *
 * Retention deletes in batches of PURGE_BATCH sessions, one transaction
 * each, releasing the write lock in between so that uploads go on during
 * a large purge: a purge that fails part-way leaves a consistent store
 * with the oldest sessions gone (re-running it finishes the job).  The
 * sessions' trace spans go with them (ON DELETE CASCADE); then the ended
 * tasks, likewise in batches (store_sqlite_tasks.c's sq_purge_tasks), and
 * the ended load tests (store_sqlite_loadtests.c's sq_purge_loadtests).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "server/store_sqlite_internal.h"

#define SESSION_LIMIT_DEFAULT 50
#define SESSION_LIMIT_MAX 10000
#define AGENT_LIMIT_MAX 10000
#define FOREACH_LIMIT_MAX 100000
#define SAMPLE_TYPES_MAX 4096 /* "samples/count,cpu/nanoseconds" */
#define PURGE_BATCH 500
#define PURGE_TASK_BATCH 20
#define PURGE_LOADTEST_BATCH 20
#define TRACE_SESSIONS_MAX 10000

/* ------------------------------------------------------------------ */
/* Agents                                                              */

/* The columns of AGENT_COLS (store_sqlite_sql.c). */
#define COL(type, member) SQ_COL(struct store_agent, type, member)
static const struct sq_col agent_cols[] = {
    COL(I64, id),           COL(TXT, app),        COL(TXT, instance),   COL(I64, pid),
    COL(TXT, agent_version), COL(TXT, cmdline),   COL(I64, started_ms), COL(I64, registered_ms),
    COL(I64, last_seen_ms), COL(I64, stopped_ms), COL(DBL, cpu_pct),    COL(DBL, mem_pct),
    COL(I64, dropped_uploads),
};
#undef COL

static int row_agent(struct conn *c, sqlite3_stmt *q, void *out)
{
    return sq_row_read(c, q, agent_cols, SQ_COUNT(agent_cols), sizeof(struct store_agent), out);
}

int sq_agent_register(struct store *st, struct store_agent *a)
{
    int rc = sq_fields_ok(agent_cols, SQ_COUNT(agent_cols), a, "agent");
    if (rc)
        return rc;
    return sq_write(sq_impl(st), S_AGENT_INSERT,
                    SQ_ARGS(A_TXT(a->app), A_TXT(a->instance), A_I64(a->pid),
                            A_TXT(a->agent_version), A_TXT(a->cmdline), A_I64(a->started_ms),
                            A_I64(a->registered_ms), A_I64(a->last_seen_ms),
                            A_I64(a->stopped_ms), A_DBL(a->cpu_pct), A_DBL(a->mem_pct),
                            A_I64(a->dropped_uploads)),
                    "registering an agent", &a->id);
}

int sq_agent_heartbeat(struct store *st, int64_t id, int64_t now_ms, double cpu_pct,
                       double mem_pct, int64_t dropped_uploads)
{
    int rc = sq_num_ok(cpu_pct, "cpu_pct");
    if (!rc)
        rc = sq_num_ok(mem_pct, "mem_pct");
    if (rc)
        return rc;
    return sq_write_one(sq_impl(st), S_AGENT_HEARTBEAT,
                        SQ_ARGS(A_I64(id), A_I64(now_ms), A_DBL(cpu_pct), A_DBL(mem_pct),
                                A_I64(dropped_uploads)),
                        "agent", "recording a heartbeat");
}

int sq_agent_stop(struct store *st, int64_t id, int64_t now_ms)
{
    return sq_write_one(sq_impl(st), S_AGENT_STOP, SQ_ARGS(A_I64(id), A_I64(now_ms)), "agent",
                        "stopping an agent");
}

int sq_agent_get(struct store *st, int64_t id, struct store_agent *out)
{
    return sq_get_by_id(sq_impl(st), S_AGENT_GET, id, "agent", row_agent, out);
}

int sq_agent_list(struct store *st, const struct store_agent_filter *f, struct store_agent **out,
                  size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the agent list");
    *out = NULL;
    *n = 0;
    unsigned mask = 0;
    size_t limit = AGENT_LIMIT_MAX;
    int rc = 0;
    if (f) {
        if (sq_is_set(f->app)) {
            mask |= FM_APP;
            rc = sq_text_ok(f->app, STORE_APP_MAX, "filter app");
        }
        if (!rc && sq_is_set(f->instance)) {
            mask |= FM_INSTANCE;
            rc = sq_text_ok(f->instance, STORE_INSTANCE_MAX, "filter instance");
        }
        if (f->seen_after_ms)
            mask |= FM_FROM;
        if (f->limit > AGENT_LIMIT_MAX)
            rc = rc ? rc
                    : store_set_error(-EINVAL, "agent list limit %zu is over %d", f->limit,
                                      AGENT_LIMIT_MAX);
        if (f->limit)
            limit = f->limit;
    }
    if (rc)
        return rc;
    void *rows = NULL;
    rc = sq_read_filtered_rows(sq_impl(st), F_AGENT_LIST, mask,
                               SQ_ARGS((mask & FM_APP) ? A_TXT(f->app) : A_NONE,
                                       (mask & FM_INSTANCE) ? A_TXT(f->instance) : A_NONE, A_NONE,
                                       (mask & FM_FROM) ? A_I64(f->seen_after_ms) : A_NONE,
                                       A_NONE, A_I64((int64_t)limit)),
                               "listing agents", row_agent, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */

/* The columns of SESSION_COLS (store_sqlite_sql.c). */
#define COL(type, member) SQ_COL(struct store_session, type, member)
static const struct sq_col session_cols[] = {
    COL(I64, id),          COL(I64, agent_id),      COL(TXT, triggered_by), COL(I64, request_id),
    COL(TXT, app),         COL(TXT, instance),      COL(I64, pid),          COL(I64, start_ms),
    COL(I64, duration_ms), COL(TXT, profile_types), COL(I64, samples),      COL(I64, traces),
    COL(DBL, cpu_pct),     COL(DBL, mem_pct),       COL(TXT, state),        COL(I64, profile_bytes),
    COL(I64, created_ms),  COL(I64, updated_ms),
};
#undef COL

static int row_session(struct conn *c, sqlite3_stmt *q, void *out)
{
    return sq_row_read(c, q, session_cols, SQ_COUNT(session_cols), sizeof(struct store_session),
                       out);
}

/* Checks f's strings and returns its FM_* mask in *mask. */
static int session_filter_mask(const struct store_session_filter *f, unsigned *mask)
{
    unsigned m = 0;
    int rc = 0;
    if (!f) {
        *mask = 0;
        return 0;
    }
    if (sq_is_set(f->app)) {
        m |= FM_APP;
        rc = rc ? rc : sq_text_ok(f->app, STORE_APP_MAX, "filter app");
    }
    if (sq_is_set(f->instance)) {
        m |= FM_INSTANCE;
        rc = rc ? rc : sq_text_ok(f->instance, STORE_INSTANCE_MAX, "filter instance");
    }
    if (sq_is_set(f->triggered_by)) {
        m |= FM_TRIGGERED;
        rc = rc ? rc : sq_text_ok(f->triggered_by, STORE_KIND_MAX, "filter triggered_by");
    }
    if (f->from_ms)
        m |= FM_FROM;
    if (f->to_ms)
        m |= FM_TO;
    if (f->with_profile)
        m |= FM_WITH_PROFILE;
    if (f->request_id)
        m |= FM_REQUEST;
    *mask = m;
    return rc;
}

/* ?1..?8 of a filtered session query: the values present in mask, the
 * others unbound (a placeholder number absent from the SQL may be out of
 * range); ?6 (limit) and ?7 (offset) unbound too, for the caller to set
 * where its query has them. */
static void session_filter_args(const struct store_session_filter *f, unsigned mask,
                                struct sq_arg a[8])
{
    a[0] = (mask & FM_APP) ? A_TXT(f->app) : A_NONE;
    a[1] = (mask & FM_INSTANCE) ? A_TXT(f->instance) : A_NONE;
    a[2] = (mask & FM_TRIGGERED) ? A_TXT(f->triggered_by) : A_NONE;
    a[3] = (mask & FM_FROM) ? A_I64(f->from_ms) : A_NONE;
    a[4] = (mask & FM_TO) ? A_I64(f->to_ms) : A_NONE;
    a[5] = A_NONE;
    a[6] = A_NONE;
    a[7] = (mask & FM_REQUEST) ? A_I64(f->request_id) : A_NONE;
}

int sq_session_create(struct store *st, struct store_session *x)
{
    int rc = sq_fields_ok(session_cols, SQ_COUNT(session_cols), x, "session");
    if (rc)
        return rc;
    rc = sq_write(sq_impl(st), S_SESSION_INSERT,
                  SQ_ARGS(A_I64(x->agent_id), A_TXT(x->triggered_by), A_I64(x->request_id),
                          A_TXT(x->app), A_TXT(x->instance), A_I64(x->pid), A_I64(x->start_ms),
                          A_I64(x->duration_ms), A_TXT(x->profile_types), A_I64(x->samples),
                          A_I64(x->traces), A_DBL(x->cpu_pct), A_DBL(x->mem_pct),
                          A_TXT(x->state), A_I64(x->created_ms)),
                  "creating a session", &x->id);
    if (rc == 0) {
        /* What is stored: no profile yet, updated = created. */
        x->profile_bytes = 0;
        x->updated_ms = x->created_ms;
    }
    return rc;
}

int sq_session_update(struct store *st, const struct store_session *x)
{
    int rc = sq_fields_ok(session_cols, SQ_COUNT(session_cols), x, "session");
    if (rc)
        return rc;
    return sq_write_one(sq_impl(st), S_SESSION_UPDATE,
                        SQ_ARGS(A_I64(x->id), A_I64(x->duration_ms), A_TXT(x->profile_types),
                                A_I64(x->samples), A_I64(x->traces), A_DBL(x->cpu_pct),
                                A_DBL(x->mem_pct), A_TXT(x->state), A_I64(x->updated_ms)),
                        "session", "updating a session");
}

int sq_session_get(struct store *st, int64_t id, struct store_session *out)
{
    return sq_get_by_id(sq_impl(st), S_SESSION_GET, id, "session", row_session, out);
}

int sq_session_list(struct store *st, const struct store_session_filter *f,
                    struct store_session **out, size_t *n, int64_t *total)
{
    struct sqlite_store *s = sq_impl(st);
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the session list");
    *out = NULL;
    *n = 0;
    if (total)
        *total = 0;
    unsigned mask;
    int rc = session_filter_mask(f, &mask);
    if (rc)
        return rc;
    size_t limit = (f && f->limit) ? f->limit : SESSION_LIMIT_DEFAULT;
    size_t offset = f ? f->offset : 0;
    if (limit > SESSION_LIMIT_MAX)
        return store_set_error(-EINVAL, "session list limit %zu is over %d", limit,
                               SESSION_LIMIT_MAX);
    if (offset > INT64_MAX)
        return store_set_error(-EINVAL, "session list offset %zu is too large", offset);

    struct sq_arg a[8];
    session_filter_args(f, mask, a); /* the count's: no limit, no offset */
    void *rows = NULL;
    rc = sq_read_page(s, F_SESSION_COUNT, F_SESSION_LIST, mask, a, 8, 5, (int64_t)limit,
                      (int64_t)offset, "sessions", row_session, sizeof **out, &rows, n, total);
    if (rc < 0) {
        *n = 0;
        return rc;
    }
    *out = rows;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Trace spans: the traces of a profile, stored with it                */

/* The columns of S_TRACE_SESSIONS (store_sqlite_sql.c). */
#define COL(type, member) SQ_COL(struct store_trace_span, type, member)
static const struct sq_col trace_span_cols[] = {
    COL(I64, session_id),
    COL(TXT, trace_id),
    COL(TXT, interface),
    COL(I64, samples),
};
#undef COL

static int row_trace_span(struct conn *c, sqlite3_stmt *q, void *out)
{
    return sq_row_read(c, q, trace_span_cols, SQ_COUNT(trace_span_cols),
                       sizeof(struct store_trace_span), out);
}

static int trace_spans_ok(const struct store_profile *p)
{
    if (p->ntraces && !p->traces)
        return store_set_error(-EINVAL, "no trace spans");
    for (size_t i = 0; i < p->ntraces; i++) {
        const struct store_trace_span *x = &p->traces[i];
        int rc = sq_text_ok(x->trace_id, sizeof x->trace_id, "trace span trace_id");
        if (!rc)
            rc = sq_text_ok(x->interface, sizeof x->interface, "trace span interface");
        if (rc)
            return rc;
        if (!x->trace_id[0])
            return store_set_error(-EINVAL, "trace span %zu has no trace_id", i);
        if (x->samples < 0)
            return store_set_error(-EINVAL, "trace span %zu has a negative sample count", i);
    }
    return 0;
}

static int trace_spans_put(struct conn *c, const struct store_profile *p)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->ntraces; i++)
        rc = sq_run(c, S_TRACE_SPAN_UPSERT,
                    SQ_ARGS(A_I64(p->session_id), A_TXT(p->traces[i].trace_id),
                            A_TXT(p->traces[i].interface), A_I64(p->traces[i].samples)),
                    "storing a trace span", NULL);
    return rc;
}

int sq_trace_sessions(struct store *st, const char *trace_id, struct store_trace_span **out,
                      size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the trace's sessions");
    void *rows = NULL;
    int rc = sq_trace_rows(sq_impl(st), S_TRACE_SESSIONS, trace_id, TRACE_SESSIONS_MAX,
                           "finding a trace's sessions", row_trace_span, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Profiles                                                            */

int sq_profile_put(struct store *st, const struct store_profile *p)
{
    struct sqlite_store *s = sq_impl(st);
    if (!p || !p->pprof || p->pprof_len == 0)
        return store_set_error(-EINVAL, "no profile bytes");
    if (!p->tree && p->tree_len)
        return store_set_error(-EINVAL, "no flame tree bytes");
    if (p->pprof_len > INT64_MAX || p->tree_len > INT64_MAX)
        return store_set_error(-EINVAL, "profile too large");
    const char *types = p->sample_types ? p->sample_types : "";
    if (strnlen(types, SAMPLE_TYPES_MAX) >= SAMPLE_TYPES_MAX)
        return store_set_error(-EINVAL, "sample types longer than %d bytes", SAMPLE_TYPES_MAX - 1);
    int rc = trace_spans_ok(p);
    if (rc)
        return rc;
    rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    /* The session first, then the profile: see the top of the file. */
    rc = sq_run_one(s->writer, S_PROFILE_MARK,
                    SQ_ARGS(A_I64(p->session_id), A_I64((int64_t)p->pprof_len),
                            A_I64(p->samples), A_I64(p->now_ms)),
                    "session", "storing a profile");
    if (rc == 0) {
        rc = sq_run(s->writer, S_PROFILE_INSERT,
                    SQ_ARGS(A_I64(p->session_id), A_I64(p->samples),
                            A_I64((int64_t)p->pprof_len), A_TXT(types), A_I64(p->now_ms),
                            A_BLOB(p->tree, p->tree_len), A_BLOB(p->pprof, p->pprof_len)),
                    "storing a profile", NULL);
        if (rc == -EEXIST) /* the primary key */
            rc = store_set_error(-EEXIST, "session %" PRId64 " already has a profile",
                                 p->session_id);
    }
    if (rc == 0) /* its traces, for store_trace_sessions */
        rc = trace_spans_put(s->writer, p);
    return sq_write_end(s, rc);
}

static const struct sq_blob_names profile_names = {
    "profile", "reading a profile", "session", "reading a session", "has no profile",
};

int sq_profile_get(struct store *st, int64_t session_id, void **buf, size_t *len)
{
    return sq_read_blob(sq_impl(st), S_PROFILE_GET, S_SESSION_EXISTS, session_id, &profile_names,
                        buf, len);
}

int sq_tree_get(struct store *st, int64_t session_id, void **buf, size_t *len)
{
    return sq_read_blob(sq_impl(st), S_TREE_GET, S_SESSION_EXISTS, session_id, &profile_names, buf,
                        len);
}

static int blob_foreach(struct sqlite_store *s, enum filtered_kind kind,
                        const struct store_session_filter *f, store_tree_fn fn, void *ctx)
{
    if (!fn)
        return store_set_error(-EINVAL, "no callback");
    unsigned mask;
    int rc = session_filter_mask(f, &mask);
    if (rc)
        return rc;
    mask &= ~(unsigned)FM_WITH_PROFILE; /* the join implies it */
    size_t limit = (f && f->limit) ? f->limit : FOREACH_LIMIT_MAX;
    if (limit > FOREACH_LIMIT_MAX)
        return store_set_error(-EINVAL, "limit %zu is over %d", limit, FOREACH_LIMIT_MAX);
    struct sq_arg a[8];
    session_filter_args(f, mask, a);
    a[5] = A_I64((int64_t)limit);
    struct conn *c;
    if ((rc = sq_reader_get(s, &c)) < 0)
        return rc;
    /* One statement = one read snapshot for the whole walk; WAL lets
     * writers go on meanwhile. */
    sqlite3_stmt *q = sq_filtered_stmt(c, kind, mask);
    rc = sq_bind(c, q, a, 8, "reading profiles");
    if (rc == 0) {
        int r = SQLITE_DONE;
        while ((r = sqlite3_step(q)) == SQLITE_ROW) {
            const void *b = sqlite3_column_blob(q, 1);
            int len = sqlite3_column_bytes(q, 1);
            if (!b && len == 0 && sqlite3_errcode(c->db) == SQLITE_NOMEM) {
                r = SQLITE_NOMEM;
                break;
            }
            rc = fn(ctx, sqlite3_column_int64(q, 0), b ? b : "", len > 0 ? (size_t)len : 0);
            if (rc)
                break;
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = sq_db_error(c, r, "reading profiles");
    }
    sq_done(q);
    sq_reader_put(s, c);
    return rc;
}

int sq_tree_foreach(struct store *st, const struct store_session_filter *f, store_tree_fn fn,
                    void *ctx)
{
    return blob_foreach(sq_impl(st), F_TREE, f, fn, ctx);
}

int sq_pprof_foreach(struct store *st, const struct store_session_filter *f, store_tree_fn fn,
                     void *ctx)
{
    return blob_foreach(sq_impl(st), F_PPROF, f, fn, ctx);
}

/* ------------------------------------------------------------------ */
/* Retention                                                           */

int sq_retention_purge(struct store *st, int64_t before_ms, int64_t *deleted)
{
    struct sqlite_store *s = sq_impl(st);
    int64_t total = 0;
    int rc = 0;
    if (deleted)
        *deleted = 0;
    /* Batches: see the top of the file. */
    for (;;) {
        if ((rc = sq_write_begin(s)) < 0)
            break;
        struct conn *c = s->writer;
        int64_t n = 0;
        rc = sq_run(c, S_PURGE_SESSIONS, SQ_ARGS(A_I64(before_ms), A_I64(PURGE_BATCH)),
                    "purging sessions", NULL);
        if (rc == 0)
            n = sqlite3_changes(c->db);
        if (rc == 0 && n < PURGE_BATCH) /* the last batch also takes the agents */
            rc = sq_run(c, S_PURGE_AGENTS, SQ_ARGS(A_I64(before_ms)), "purging agents", NULL);
        rc = sq_write_end(s, rc);
        if (rc < 0)
            break;
        total += n;
        if (n < PURGE_BATCH)
            break;
    }
    /* Then the tasks that ended before, in smaller batches: each takes
     * its log and up to max_samples captures with their snapshots. */
    while (rc == 0) {
        int64_t n = 0;
        if ((rc = sq_write_begin(s)) < 0)
            break;
        rc = sq_write_end(s, sq_purge_tasks(s->writer, before_ms, PURGE_TASK_BATCH, &n));
        if (n < PURGE_TASK_BATCH)
            break;
    }
    /* Then the load tests that ended before (queued and running ones
     * stay, however old), likewise: each may hold a large results
     * document and request body. */
    while (rc == 0) {
        int64_t n = 0;
        if ((rc = sq_write_begin(s)) < 0)
            break;
        rc = sq_write_end(s, sq_purge_loadtests(s->writer, before_ms, PURGE_LOADTEST_BATCH, &n));
        if (n < PURGE_LOADTEST_BATCH)
            break;
    }
    if (deleted)
        *deleted = total;
    return rc;
}
