/*
 * store_sqlite_loadtests.c — the SQLite store's load tests (store.h,
 * SPEC A6): the queue that the API fills and the servers' runners drain,
 * each test's progress while it runs, and its results.  The machinery it
 * runs on (connections, transactions, binding) is store_sqlite.c's, the
 * SQL store_sqlite_sql.c's.
 *
 * The queue is the table itself: a test is "queued" until a runner
 * claims it.  The bound on the queue (max_queued) is checked inside the
 * creating transaction — the writer's mutex, then BEGIN IMMEDIATE against
 * other processes — so concurrent creates never overshoot it.  A claim is
 * one UPDATE that takes the lowest queued id (the order of creation) and
 * repeats the state test in its WHERE: two runners, in this process or
 * in another server on the same file, never get the same test.
 *
 * Life of a test:
 *   queued --claim--> in progress --finish--> completed | failed | cancelled
 *   queued --cancel--> cancelled             (at once, ended_ms = now)
 *   in progress --cancel--> cancel_requested = 1, state unchanged; the
 *                           runner learns it from its next progress call
 *                           and finishes the test itself
 *   in progress --abandon--> failed          (a runner that died with its
 *                                             server never finishes)
 * Progress and finish write only while the test is "in progress": a late
 * call from a runner whose test was abandoned meanwhile changes nothing
 * (-EEXIST).  Each of these reads the row and writes it in one write
 * transaction, so the state it tests is the state it changes.
 *
 * The request's headers document and body, and the results document,
 * are columns at the end of the row (store_sqlite_sql.c, migration 4):
 * get and list read the columns before them only.  result is NULL until
 * a runner stores one; progress and finish with result_json NULL keep
 * the last.  body_bytes is the length of the body as stored.
 *
 * Nothing is cut to fit: a string longer than its struct array, or than
 * the bounds below, is -EINVAL before any write.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/store_sqlite_internal.h"

#define LOADTEST_LIMIT_DEFAULT 50
#define LOADTEST_LIMIT_MAX 1000
#define LOADTEST_USERS_MAX 10000
#define LOADTEST_DURATION_MAX_S 3600
#define LOADTEST_RATE_MAX 1e6
/* Documents the store keeps but does not read: bounded all the same
 * (the API caps request bodies at 1 MiB; a results document with its
 * per-second series of an hour's test stays well under this). */
#define LOADTEST_HEADERS_JSON_MAX (4 << 20)
#define LOADTEST_BODY_MAX (16 << 20)
#define LOADTEST_RESULT_JSON_MAX (16 << 20)

/* ------------------------------------------------------------------ */
/* Rows                                                                */

/* The columns of LOADTEST_COLS (store_sqlite_sql.c) but the last,
 * cancel_requested, an int member read by row_loadtest itself. */
#define COL(type, member) SQ_COL(struct store_loadtest, type, member)
static const struct sq_col loadtest_cols[] = {
    COL(I64, id),          COL(TXT, url),         COL(TXT, method),         COL(I64, users),
    COL(I64, duration_s),  COL(DBL, rate),        COL(I64, timeout_ms),     COL(I64, n_headers),
    COL(I64, body_bytes),  COL(TXT, profile_app), COL(I64, profile_now_id), COL(TXT, state),
    COL(TXT, error),       COL(I64, token_id),    COL(TXT, creator),        COL(I64, created_ms),
    COL(I64, started_ms),  COL(I64, ended_ms),    COL(I64, requests),       COL(I64, errors),
};
#undef COL

static int row_loadtest(struct conn *c, sqlite3_stmt *q, void *out)
{
    int rc = sq_row_read(c, q, loadtest_cols, SQ_COUNT(loadtest_cols),
                         sizeof(struct store_loadtest), out);
    if (rc == 0)
        ((struct store_loadtest *)out)->cancel_requested =
            sqlite3_column_int64(q, (int)SQ_COUNT(loadtest_cols)) != 0;
    return rc;
}

/* The request of S_LT_REQUEST: headers (column 0) as a malloc'ed string,
 * body (column 1) as a malloc'ed copy, NULL when empty. */
struct request_row {
    char *headers;
    void *body;
    size_t body_len;
};

/* Column col as a malloc'ed NUL-terminated copy into *dst. */
static int col_text_dup(struct conn *c, sqlite3_stmt *q, int col, const char *what, char **dst)
{
    const unsigned char *t = sqlite3_column_text(q, col);
    int n = sqlite3_column_bytes(q, col);
    if (!t && sqlite3_errcode(c->db) == SQLITE_NOMEM)
        return store_set_error(-ENOMEM, "out of memory reading %s", what);
    if (n < 0)
        return store_set_error(-EIO, "%s of negative size", what);
    char *p = malloc((size_t)n + 1);
    if (!p)
        return store_set_error(-ENOMEM, "out of memory copying %d bytes of %s", n, what);
    if (n)
        memcpy(p, t, (size_t)n);
    p[n] = '\0';
    *dst = p;
    return 0;
}

static int row_request(struct conn *c, sqlite3_stmt *q, void *out)
{
    struct request_row *r = out;
    int rc = col_text_dup(c, q, 0, "a load test's headers", &r->headers);
    if (rc)
        return rc;
    const void *b = sqlite3_column_blob(q, 1);
    int n = sqlite3_column_bytes(q, 1);
    if (!b && n == 0 && sqlite3_errcode(c->db) == SQLITE_NOMEM)
        rc = store_set_error(-ENOMEM, "out of memory reading a load test's body");
    else if (n < 0)
        rc = store_set_error(-EIO, "load test body of negative size");
    else if (n > 0 && !(r->body = malloc((size_t)n)))
        rc = store_set_error(-ENOMEM, "out of memory copying a %d-byte body", n);
    if (rc) {
        free(r->headers);
        r->headers = NULL;
        return rc;
    }
    if (n > 0)
        memcpy(r->body, b, (size_t)n);
    r->body_len = (size_t)n;
    return 0;
}

static int row_result(struct conn *c, sqlite3_stmt *q, void *out)
{
    return col_text_dup(c, q, 0, "a load test's results", out);
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */

static const char *const states[] = {"queued", "in progress", "completed", "failed",
                                     "cancelled"};

static int state_known(const char *state)
{
    for (size_t i = 0; i < SQ_COUNT(states); i++)
        if (strcmp(state, states[i]) == 0)
            return 1;
    return 0;
}

/* A document of at most max - 1 bytes (NULL is fine: "none"). */
static int document_ok(const char *json, size_t max, const char *what)
{
    if (json && strnlen(json, max) >= max)
        return store_set_error(-EINVAL, "%s longer than %zu bytes", what, max - 1);
    return 0;
}

static int loadtest_new_ok(const struct store_loadtest *t, const char *headers_json,
                           const void *body, size_t body_len, int64_t max_queued)
{
    if (!t)
        return store_set_error(-EINVAL, "no load test");
    int rc = sq_text_ok(t->url, sizeof t->url, "url");
    if (!rc)
        rc = sq_text_ok(t->method, sizeof t->method, "method");
    if (!rc)
        rc = sq_text_ok(t->profile_app, sizeof t->profile_app, "profile_app");
    if (!rc)
        rc = sq_text_ok(t->creator, sizeof t->creator, "creator");
    if (!rc)
        rc = sq_num_ok(t->rate, "rate");
    if (rc)
        return rc;
    if (!t->url[0] || !t->method[0])
        return store_set_error(-EINVAL, "a load test needs a url and a method");
    if (t->users < 1 || t->users > LOADTEST_USERS_MAX)
        return store_set_error(-EINVAL, "users %" PRId64 " is not in 1..%d", t->users,
                               LOADTEST_USERS_MAX);
    if (t->duration_s < 1 || t->duration_s > LOADTEST_DURATION_MAX_S)
        return store_set_error(-EINVAL, "duration_s %" PRId64 " is not in 1..%d", t->duration_s,
                               LOADTEST_DURATION_MAX_S);
    if (t->rate < 0 || t->rate > LOADTEST_RATE_MAX)
        return store_set_error(-EINVAL, "rate %g is not in 0..%g", t->rate, LOADTEST_RATE_MAX);
    if (t->timeout_ms < 0 || t->n_headers < 0)
        return store_set_error(-EINVAL, "a load test's timeout_ms and n_headers must not be "
                                        "negative");
    if (!headers_json)
        return store_set_error(-EINVAL, "no headers document (\"[]\" for none)");
    rc = document_ok(headers_json, LOADTEST_HEADERS_JSON_MAX, "headers document");
    if (rc)
        return rc;
    if (!body && body_len)
        return store_set_error(-EINVAL, "no body bytes");
    if (body_len > LOADTEST_BODY_MAX)
        return store_set_error(-EINVAL, "body of %zu bytes is over %d", body_len,
                               LOADTEST_BODY_MAX);
    if (max_queued < 0)
        return store_set_error(-EINVAL, "negative queue bound %" PRId64, max_queued);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Steps inside a write transaction (on the writer c)                  */

/* Load test id into *t; -ENOENT "load test N not found". */
static int loadtest_read(struct conn *c, int64_t id, struct store_loadtest *t)
{
    int rc = sq_query_row(c, sq_stmt(c, S_LT_GET), SQ_ARGS(A_I64(id)), "reading a load test",
                          row_loadtest, t);
    return rc == 1 ? store_set_error(-ENOENT, "load test %" PRId64 " not found", id) : rc;
}

/* Load test id into *t when it is in progress; -ENOENT, or -EEXIST
 * naming its state. */
static int loadtest_read_running(struct conn *c, int64_t id, struct store_loadtest *t)
{
    int rc = loadtest_read(c, id, t);
    if (rc == 0 && strcmp(t->state, "in progress") != 0)
        rc = store_set_error(-EEXIST, "load test %" PRId64 " is not in progress (%s)", id,
                             t->state);
    return rc;
}

/* An UPDATE that must change the one row read under the same lock. */
static int changed_one(struct conn *c, int rc, int64_t id, const char *what)
{
    if (rc == 0 && sqlite3_changes(c->db) != 1) /* cannot be: see the top of the file */
        rc = store_set_error(-EIO, "load test %" PRId64 " changed while %s", id, what);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The queue                                                           */

int sq_loadtest_create(struct store *st, struct store_loadtest *t, const char *headers_json,
                       const void *body, size_t body_len, int64_t max_queued)
{
    struct sqlite_store *s = sq_impl(st);
    int rc = loadtest_new_ok(t, headers_json, body, body_len, max_queued);
    if (rc)
        return rc;
    if ((rc = sq_write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    int64_t queued = 0, id = 0;
    rc = sq_query_row(c, sq_stmt(c, S_LT_COUNT_QUEUED), NULL, 0, "counting queued load tests",
                      sq_row_int, &queued);
    if (rc == 1) /* COUNT always has a row */
        rc = sq_db_error(c, SQLITE_CORRUPT, "counting queued load tests");
    if (rc == 0 && queued >= max_queued)
        rc = store_set_error(-EBUSY,
                             "the load-test queue is full: %" PRId64 " test%s queued (at most "
                             "%" PRId64 "); try again when one has started",
                             queued, queued == 1 ? "" : "s", max_queued);
    if (rc == 0)
        rc = sq_run(c, S_LT_INSERT,
                    SQ_ARGS(A_TXT(t->url), A_TXT(t->method), A_I64(t->users),
                            A_I64(t->duration_s), A_DBL(t->rate), A_I64(t->timeout_ms),
                            A_I64(t->n_headers), A_I64((int64_t)body_len), A_TXT(t->profile_app),
                            A_I64(t->token_id), A_TXT(t->creator), A_I64(t->created_ms),
                            A_TXT(headers_json), A_BLOB(body, body_len)),
                    "creating a load test", &id);
    rc = sq_write_end(s, rc);
    if (rc == 0) {
        /* What is stored. */
        t->id = id;
        t->body_bytes = (int64_t)body_len;
        t->profile_now_id = 0;
        snprintf(t->state, sizeof t->state, "queued");
        t->cancel_requested = 0;
        t->error[0] = '\0';
        t->started_ms = t->ended_ms = t->requests = t->errors = 0;
    }
    return rc;
}

int sq_loadtest_get(struct store *st, int64_t id, struct store_loadtest *out)
{
    return sq_get_by_id(sq_impl(st), S_LT_GET, id, "load test", row_loadtest, out);
}

int sq_loadtest_list(struct store *st, const struct store_loadtest_filter *f,
                     struct store_loadtest **out, size_t *n, int64_t *total)
{
    struct sqlite_store *s = sq_impl(st);
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the load test list");
    *out = NULL;
    *n = 0;
    if (total)
        *total = 0;
    unsigned mask = 0;
    size_t limit = (f && f->limit) ? f->limit : LOADTEST_LIMIT_DEFAULT;
    size_t offset = f ? f->offset : 0;
    if (f && sq_is_set(f->state)) {
        if (!state_known(f->state))
            return store_set_error(-EINVAL,
                                   "unknown load test state '%.32s' (queued, in progress, "
                                   "completed, failed or cancelled)",
                                   f->state);
        mask |= FM_STATE;
    }
    if (limit > LOADTEST_LIMIT_MAX)
        return store_set_error(-EINVAL, "load test list limit %zu is over %d", limit,
                               LOADTEST_LIMIT_MAX);
    if (offset > INT64_MAX)
        return store_set_error(-EINVAL, "load test list offset %zu is too large", offset);
    struct sq_arg a[7] = {A_NONE, A_NONE, (mask & FM_STATE) ? A_TXT(f->state) : A_NONE,
                          A_NONE, A_NONE, A_NONE, A_NONE};
    void *rows = NULL;
    int rc = sq_read_page(s, F_LOADTEST_COUNT, F_LOADTEST_LIST, mask, a, 7, 5, (int64_t)limit,
                          (int64_t)offset, "load tests", row_loadtest, sizeof **out, &rows, n,
                          total);
    if (rc < 0) {
        *n = 0;
        return rc;
    }
    *out = rows;
    return 0;
}

int sq_loadtest_request(struct store *st, int64_t id, char **headers_json, void **body,
                        size_t *body_len)
{
    if (!headers_json || !body != !body_len)
        return store_set_error(-EINVAL, "no output for the load test's request");
    *headers_json = NULL;
    if (body) {
        *body = NULL;
        *body_len = 0;
    }
    struct request_row r = {0};
    int rc = sq_read_row(sq_impl(st), body ? S_LT_REQUEST : S_LT_HEADERS, SQ_ARGS(A_I64(id)),
                         "reading a load test's request", row_request, &r);
    if (rc == 1)
        return store_set_error(-ENOENT, "load test %" PRId64 " not found", id);
    if (rc)
        return rc;
    *headers_json = r.headers;
    if (body) {
        *body = r.body;
        *body_len = r.body_len;
    }
    return 0;
}

int sq_loadtest_result(struct store *st, int64_t id, char **result_json)
{
    struct sqlite_store *s = sq_impl(st);
    if (!result_json)
        return store_set_error(-EINVAL, "no output for the load test's results");
    *result_json = NULL;
    struct conn *c;
    int rc = sq_reader_get(s, &c);
    if (rc < 0)
        return rc;
    /* The results and, when there are none, whether the test exists, in
     * one snapshot: the message says which. */
    rc = sq_step_simple(c, S_BEGIN_READ, "starting a read");
    if (rc == 0)
        rc = sq_query_row(c, sq_stmt(c, S_LT_RESULT), SQ_ARGS(A_I64(id)),
                          "reading a load test's results", row_result, result_json);
    if (rc == 1) {
        int exists = sq_query_row(c, sq_stmt(c, S_LT_EXISTS), SQ_ARGS(A_I64(id)),
                                  "reading a load test", NULL, NULL);
        rc = exists == 0   ? store_set_error(-ENOENT, "load test %" PRId64 " has no results yet",
                                             id)
             : exists == 1 ? store_set_error(-ENOENT, "load test %" PRId64 " not found", id)
                           : exists;
    }
    if (rc == 0)
        rc = sq_step_simple(c, S_COMMIT, "ending a read");
    sq_reader_put(s, c);
    if (rc < 0) {
        free(*result_json);
        *result_json = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* Runners                                                             */

int sq_loadtest_claim(struct store *st, int64_t now_ms, struct store_loadtest *out)
{
    struct sqlite_store *s = sq_impl(st);
    if (!out)
        return store_set_error(-EINVAL, "no output for the claimed load test");
    struct store_loadtest t;
    int rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    int64_t id = 0;
    rc = sq_run(c, S_LT_CLAIM, SQ_ARGS(A_I64(now_ms)), "claiming a load test", &id);
    if (rc == 0 && id == 0)
        rc = store_set_error(-ENOENT, "no load test is queued");
    if (rc == 0)
        rc = loadtest_read(c, id, &t);
    rc = sq_write_end(s, rc);
    if (rc == 0)
        *out = t;
    return rc;
}

int sq_loadtest_progress(struct store *st, int64_t id, int64_t requests, int64_t errors,
                         const char *result_json, int *cancel_requested)
{
    struct sqlite_store *s = sq_impl(st);
    if (requests < 0 || errors < 0)
        return store_set_error(-EINVAL, "negative request or error count");
    int rc = document_ok(result_json, LOADTEST_RESULT_JSON_MAX, "results document");
    if (rc)
        return rc;
    if ((rc = sq_write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    struct store_loadtest t;
    rc = loadtest_read_running(c, id, &t);
    if (rc == 0)
        rc = changed_one(c,
                         sq_run(c, S_LT_PROGRESS,
                                SQ_ARGS(A_I64(id), A_I64(requests), A_I64(errors),
                                        result_json ? A_TXT(result_json) : A_NONE,
                                        A_I64(result_json != NULL)),
                                "storing a load test's progress", NULL),
                         id, "storing its progress");
    rc = sq_write_end(s, rc);
    if (rc == 0 && cancel_requested)
        *cancel_requested = t.cancel_requested;
    return rc;
}

int sq_loadtest_finish(struct store *st, int64_t id, const char *state, const char *error,
                       int64_t requests, int64_t errors, const char *result_json, int64_t now_ms)
{
    struct sqlite_store *s = sq_impl(st);
    if (!state || (strcmp(state, "completed") != 0 && strcmp(state, "failed") != 0 &&
                   strcmp(state, "cancelled") != 0))
        return store_set_error(-EINVAL,
                               "a load test cannot end as '%.32s' (completed, failed or "
                               "cancelled)",
                               state ? state : "");
    int rc = sq_text_ok(error, STORE_ERROR_MAX, "error");
    if (rc)
        return rc;
    if (sq_is_set(error) && strcmp(state, "failed") != 0)
        return store_set_error(-EINVAL, "only a failed load test has an error (this one is %s)",
                               state);
    if (requests < 0 || errors < 0)
        return store_set_error(-EINVAL, "negative request or error count");
    if ((rc = document_ok(result_json, LOADTEST_RESULT_JSON_MAX, "results document")))
        return rc;
    if ((rc = sq_write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    struct store_loadtest t;
    rc = loadtest_read_running(c, id, &t);
    if (rc == 0)
        rc = changed_one(c,
                         sq_run(c, S_LT_FINISH,
                                SQ_ARGS(A_I64(id), A_TXT(state), A_TXT(error), A_I64(requests),
                                        A_I64(errors), result_json ? A_TXT(result_json) : A_NONE,
                                        A_I64(result_json != NULL), A_I64(now_ms)),
                                "ending a load test", NULL),
                         id, "ending it");
    return sq_write_end(s, rc);
}

int sq_loadtest_cancel(struct store *st, int64_t id, int64_t now_ms, struct store_loadtest *out)
{
    struct sqlite_store *s = sq_impl(st);
    if (!out)
        return store_set_error(-EINVAL, "no output for the cancelled load test");
    int rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    struct store_loadtest t;
    int ended = 0;
    rc = loadtest_read(c, id, &t);
    if (rc == 0 && strcmp(t.state, "queued") == 0)
        rc = changed_one(c,
                         sq_run(c, S_LT_CANCEL_QUEUED, SQ_ARGS(A_I64(id), A_I64(now_ms)),
                                "cancelling a load test", NULL),
                         id, "cancelling it");
    else if (rc == 0 && strcmp(t.state, "in progress") == 0)
        rc = changed_one(c,
                         sq_run(c, S_LT_CANCEL_REQUEST, SQ_ARGS(A_I64(id)),
                                "requesting a load test's cancel", NULL),
                         id, "requesting its cancel");
    else if (rc == 0) {
        ended = 1; /* *out is the row as read: nothing changes */
        rc = store_set_error(-EEXIST, "load test %" PRId64 " has already ended (%s)", id,
                             t.state);
    }
    if (rc == 0)
        rc = loadtest_read(c, id, &t);
    rc = sq_write_end(s, rc);
    if (rc == 0 || (rc == -EEXIST && ended))
        *out = t;
    return rc;
}

int sq_loadtest_abandon(struct store *st, int64_t started_before_ms, const char *error,
                        int64_t now_ms, int64_t *n)
{
    struct sqlite_store *s = sq_impl(st);
    if (n)
        *n = 0;
    if (!sq_is_set(error))
        return store_set_error(-EINVAL, "an abandoned load test needs an error message");
    int rc = sq_text_ok(error, STORE_ERROR_MAX, "error");
    if (rc)
        return rc;
    if ((rc = sq_write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    int64_t count = 0;
    rc = sq_run(c, S_LT_ABANDON, SQ_ARGS(A_I64(started_before_ms), A_TXT(error), A_I64(now_ms)),
                "failing abandoned load tests", NULL);
    if (rc == 0)
        count = sqlite3_changes(c->db);
    rc = sq_write_end(s, rc);
    if (rc == 0 && n)
        *n = count;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Retention                                                           */

int sq_purge_loadtests(struct conn *c, int64_t before_ms, int64_t batch, int64_t *n)
{
    *n = 0;
    int rc = sq_run(c, S_PURGE_LOADTESTS, SQ_ARGS(A_I64(before_ms), A_I64(batch)),
                    "purging load tests", NULL);
    if (rc == 0)
        *n = sqlite3_changes(c->db);
    return rc;
}
