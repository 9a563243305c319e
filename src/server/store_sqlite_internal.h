/*
 * store_sqlite_internal.h — what the SQLite store's files share beyond
 * store.h; included only by src/server/store_sqlite*.c.
 *
 * The SQLite implementation of store.h is seven files:
 *   store_sqlite.c           connections, the reader pool, transactions,
 *                            binding and running statements, check,
 *                            open/close and the ops table (the design is
 *                            described at its top)
 *   store_sqlite_sql.c       every SQL text: migrations, the fixed
 *                            statements, the filtered queries
 *   store_sqlite_sessions.c  agents, sessions, profiles and their trace
 *                            spans, retention
 *   store_sqlite_settings.c  Profile Now requests and settings
 *   store_sqlite_tokens.c    access tokens
 *   store_sqlite_tasks.c     active profiling: tasks, their agents and
 *                            log, captures
 *   store_sqlite_loadtests.c load tests: the queue, claims by runners,
 *                            progress, results
 *
 * An operation is a few lines over the helpers below: check the caller's
 * values, then one sq_write*() (one statement, one transaction), or
 * sq_write_begin … sq_run*() … sq_write_end for several statements, or one
 * sq_read_*() on a pooled reader.  Statements take their values as an
 * array of struct sq_arg bound to ?1, ?2, … in order (SQ_ARGS); a row
 * comes back into a store.h struct through a table naming the member of
 * each column (struct sq_col), which also checks the struct's strings
 * and numbers before they are stored.
 *
 * Errors are store.h's: 0 or a negative errno code with the message set
 * by store_set_error; the helpers that run a query may also answer 1, "no
 * row", which each caller turns into its own -ENOENT message.
 */
#ifndef SONDE_STORE_SQLITE_INTERNAL_H
#define SONDE_STORE_SQLITE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "server/store.h"

#define READERS_MAX 16
#define TOUCH_SLOTS 64 /* token_touch's memory, see store_sqlite_tokens.c */

/* ------------------------------------------------------------------ */
/* SQL (store_sqlite_sql.c)                                            */

/* The fixed statements, prepared once per connection (sq_stmt). */
enum stmt_id {
    S_BEGIN_WRITE,
    S_BEGIN_READ,
    S_COMMIT,
    S_ROLLBACK,
    S_AGENT_INSERT,
    S_AGENT_HEARTBEAT,
    S_AGENT_STOP,
    S_AGENT_GET,
    S_SESSION_INSERT,
    S_SESSION_UPDATE,
    S_SESSION_GET,
    S_SESSION_EXISTS,
    S_PROFILE_MARK,
    S_PROFILE_INSERT,
    S_PROFILE_GET,
    S_TREE_GET,
    S_PURGE_SESSIONS,
    S_PURGE_AGENTS,
    S_PN_INSERT,
    S_PN_SINCE,
    S_PN_RECENT,
    S_PN_LAST,
    S_PN_GET,
    S_SETTING_GET,
    S_SETTING_UPSERT,
    S_SETTING_DELETE,
    S_SETTING_APPS,
    S_SETTINGS_BUMP,
    S_SETTINGS_VERSION,
    S_TOKEN_INSERT,
    S_TOKEN_FIND,
    S_TOKEN_GET,
    S_TOKEN_LIST,
    S_TOKEN_REVOKE,
    S_TOKEN_TOUCH,
    S_TOKEN_COUNT_ROLE,
    S_TOKEN_COUNT_ALL,
    S_TASK_INSERT,
    S_TASK_GET,
    S_TASK_ACTIVE,
    S_TASK_CANCEL,
    S_TASK_DUE,
    S_TASK_DUE_LIST,
    S_TASK_EXPIRE,
    S_TASK_START,
    S_TASK_TAKE_SLOT,
    S_TASK_VERSION_BUMP,
    S_TASK_VERSION,
    S_TASK_EXISTS,
    S_TASK_AGENT_WHO,
    S_TASK_AGENT_INSERT,
    S_TASK_AGENT_ENSURE,
    S_TASK_AGENT_START,
    S_TASK_AGENT_STOP,
    S_TASK_AGENT_CAPTURE,
    S_TASK_AGENTS,
    S_TASK_LOG_INSERT,
    S_TASK_LOGS,
    S_CAPTURE_INSERT,
    S_CAPTURE_MARK,
    S_CAPTURE_PROFILE_INSERT,
    S_CAPTURE_GET,
    S_CAPTURE_EXISTS,
    S_CAPTURE_LIST,
    S_CAPTURE_PROFILE_GET,
    S_CAPTURE_TREE_GET,
    S_CAPTURE_BY_TRACE,
    S_TRACE_SPAN_UPSERT,
    S_TRACE_SESSIONS,
    S_PURGE_TASKS,
    S_LT_INSERT,
    S_LT_GET,
    S_LT_EXISTS,
    S_LT_COUNT_QUEUED,
    S_LT_CLAIM,
    S_LT_PROGRESS,
    S_LT_FINISH,
    S_LT_CANCEL_QUEUED,
    S_LT_CANCEL_REQUEST,
    S_LT_ABANDON,
    S_LT_REQUEST,
    S_LT_HEADERS,
    S_LT_RESULT,
    S_LT_LINK_PROFILE_NOW,
    S_PURGE_LOADTESTS,
    S_COUNT
};

/* Filtered queries: the SQL depends on which filter fields are set. */
enum filtered_kind {
    F_SESSION_LIST,
    F_SESSION_COUNT,
    F_TREE,
    F_PPROF,
    F_AGENT_LIST,
    F_TASK_LIST,
    F_LOADTEST_LIST,
    F_LOADTEST_COUNT,
    F_COUNT
};

/* Filter fields present, and the placeholder each one binds. */
enum {
    FM_APP = 1,          /* ?1 */
    FM_INSTANCE = 2,     /* ?2 */
    FM_TRIGGERED = 4,    /* ?3 */
    FM_STATE = 4,        /* ?3, tasks' and load tests' (no triggered_by) */
    FM_FROM = 8,         /* ?4 (agents: last_seen_ms >= ?4; tasks: end >= ?4) */
    FM_TO = 16,          /* ?5 (tasks: created_ms < ?5) */
    FM_WITH_PROFILE = 32,
    FM_REQUEST = 64,     /* ?8, sessions' request_id */
    FM_COMBOS = 128
};
/* ?6 = limit, ?7 = offset.  (request_id came later than both, hence ?8.) */

/* The schema's migrations, applied in order, each once. */
extern const char *const sq_migrations[];
extern const size_t sq_migrations_n;
/* The SQL of each enum stmt_id. */
extern const char *const sq_stmt_sql[S_COUNT];
/* The SQL of kind with the filter fields of mask (FM_* bits) into buf. */
void sq_filtered_sql(enum filtered_kind kind, unsigned mask, char *buf, size_t cap);

/* ------------------------------------------------------------------ */
/* Connections and the store (store_sqlite.c)                          */

struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT];
    sqlite3_stmt *filtered[F_COUNT][FM_COMBOS];
    struct conn *next_free;
};

struct sqlite_store {
    struct store base;
    char *path;

    pthread_mutex_t write_lock; /* owns writer */
    struct conn *writer;

    pthread_mutex_t pool_lock; /* owns free_readers, readers[], nreaders */
    pthread_cond_t pool_cond;  /* a reader was given back */
    struct conn *free_readers;
    struct conn *readers[READERS_MAX];
    size_t nreaders;

    /* token_touch: when each recently touched token was last written
     * (direct-mapped by id), so that a token used for every request
     * costs one write a minute, not one per request. */
    pthread_mutex_t touch_lock;
    struct {
        int64_t id, written_ms;
    } touched[TOUCH_SLOTS];
};

static inline struct sqlite_store *sq_impl(struct store *st)
{
    return (struct sqlite_store *)st;
}

/* An SQLite failure rc as our code, with c's message (SQLite's text of
 * rc when c is NULL) after "what: ". */
int sq_db_error(struct conn *c, int rc, const char *what);
/* The cached statement id of c, prepared on first use.  NULL with the
 * error set on failure. */
sqlite3_stmt *sq_stmt(struct conn *c, enum stmt_id id);
/* The cached filtered query of kind for the fields of mask, likewise. */
sqlite3_stmt *sq_filtered_stmt(struct conn *c, enum filtered_kind kind, unsigned mask);
/* Back to a reusable state, bindings cleared so that no pointer to a
 * caller's buffer outlives the call.  NULL is a no-op. */
void sq_done(sqlite3_stmt *q);
/* Steps a statement without values or rows (BEGIN, COMMIT, …). */
int sq_step_simple(struct conn *c, enum stmt_id id, const char *what);

/* A reader for one call (waits while all READERS_MAX are busy); every
 * successful sq_reader_get is ended by sq_reader_put. */
int sq_reader_get(struct sqlite_store *s, struct conn **out);
void sq_reader_put(struct sqlite_store *s, struct conn *c);
/* Takes the write lock and opens the write transaction on s->writer; on
 * success the caller must end with sq_write_end, which commits when rc
 * is 0, else rolls back, releases the lock and returns rc or the
 * commit's error. */
int sq_write_begin(struct sqlite_store *s);
int sq_write_end(struct sqlite_store *s, int rc);

/* ------------------------------------------------------------------ */
/* Values in and out (store_sqlite.c)                                  */

/* A value bound to one placeholder.  Text is NUL-terminated and
 * length-checked by the caller (sq_text_ok), NULL binds ""; a blob is
 * never bound as NULL (the columns are NOT NULL).  SQ_ARG_NONE leaves its
 * placeholder unbound: one a filtered query's SQL may not have. */
struct sq_arg {
    enum { SQ_ARG_NONE, SQ_ARG_I64, SQ_ARG_DBL, SQ_ARG_TXT, SQ_ARG_BLOB } type;
    union {
        int64_t i;
        double d;
        const void *p;
    };
    size_t len; /* blob bytes */
};
#define A_I64(v) ((struct sq_arg){.type = SQ_ARG_I64, .i = (v)})
#define A_DBL(v) ((struct sq_arg){.type = SQ_ARG_DBL, .d = (v)})
#define A_TXT(v) ((struct sq_arg){.type = SQ_ARG_TXT, .p = (v)})
#define A_BLOB(v, n) ((struct sq_arg){.type = SQ_ARG_BLOB, .p = (v), .len = (n)})
#define A_NONE ((struct sq_arg){.type = SQ_ARG_NONE})
/* An array of values and its length, as the helpers below take them:
 * SQ_ARGS(A_I64(id), A_TXT(name)). */
#define SQ_ARGS(...)                                                                               \
    (const struct sq_arg[]){__VA_ARGS__},                                                          \
        sizeof((const struct sq_arg[]){__VA_ARGS__}) / sizeof(struct sq_arg)

/* Binds a[0..n) to ?1..?n of q.  -EIO when q is NULL (sq_stmt failed and
 * said why), the bind's error after "what: ", else 0. */
int sq_bind(struct conn *c, sqlite3_stmt *q, const struct sq_arg *a, size_t n, const char *what);

/* A string field: NUL-terminated within cap bytes, else -EINVAL naming
 * what. */
int sq_text_ok(const char *v, size_t cap, const char *what);
/* A finite number, else -EINVAL naming what. */
int sq_num_ok(double v, const char *what);
static inline int sq_is_set(const char *v)
{
    return v && *v;
}

/* Reads the current row of q into out; 0 or an error. */
typedef int (*sq_row_fn)(struct conn *c, sqlite3_stmt *q, void *out);
/* Copies a text column into dst[cap]; a stored value that does not fit
 * is an error, never cut. */
int sq_col_txt(struct conn *c, sqlite3_stmt *q, int col, char *dst, size_t cap);

/* A struct's mapping to a row: one entry per column of the SELECT, in
 * its order, naming the member the column goes to.  Text members are
 * char arrays, integers int64_t, reals double. */
struct sq_col {
    enum { SQ_COL_I64, SQ_COL_DBL, SQ_COL_TXT } type;
    size_t offset, size;
    const char *name; /* the member's, for messages */
};
#define SQ_COL(T, type, member)                                                                    \
    {SQ_COL_##type, offsetof(T, member), sizeof(((T *)0)->member), #member}
#define SQ_COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* Reads the current row of q into the size-byte struct out (zeroed
 * first) by cols[0..n); a stored text that does not fit is an error. */
int sq_row_read(struct conn *c, sqlite3_stmt *q, const struct sq_col *cols, size_t n, size_t size,
                void *out);
/* Checks the struct in (a kind, "agent") before it is stored: there is
 * one, the text members cols name are NUL-terminated within their
 * arrays, then the reals are finite.  -EINVAL naming the first problem. */
int sq_fields_ok(const struct sq_col *cols, size_t n, const void *in, const char *kind);
/* Row readers: column 0 as an int64_t (out: int64_t *); column 0 as a
 * malloc'ed copy of a blob (out: struct sq_blob *, p never NULL). */
int sq_row_int(struct conn *c, sqlite3_stmt *q, void *out);
struct sq_blob {
    void *p;
    size_t len;
};
int sq_row_blob(struct conn *c, sqlite3_stmt *q, void *out);

/* ------------------------------------------------------------------ */
/* Running statements (store_sqlite.c)                                 */

/* On c (inside a write transaction): binds a to statement id and steps
 * it to the end.  When id_out is non-NULL the statement has a RETURNING
 * row whose first column goes there.  sqlite3_changes(c->db) tells the
 * rows changed afterwards.  0 or an error after "what: ". */
int sq_run(struct conn *c, enum stmt_id id, const struct sq_arg *a, size_t n, const char *what,
           int64_t *id_out);
/* sq_run of an UPDATE … WHERE id = ?1 (a[0]): -ENOENT "<kind> <id> not
 * found" when it changed no row. */
int sq_run_one(struct conn *c, enum stmt_id id, const struct sq_arg *a, size_t n,
               const char *kind, const char *what);
/* sq_run, and sq_run_one, as one write transaction of their own. */
int sq_write(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
             const char *what, int64_t *id_out);
int sq_write_one(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
                 const char *kind, const char *what);

/* On c: binds a to q (sq_stmt or sq_filtered_stmt of c), steps once and
 * reads the row with row(c, q, out) (row NULL: only whether there is
 * one).  0, 1 when there is no row, or an error.  q is reset. */
int sq_query_row(struct conn *c, sqlite3_stmt *q, const struct sq_arg *a, size_t n,
                 const char *what, sq_row_fn row, void *out);
/* On c: binds a to q and reads every row with row() into a malloc'ed
 * array of size-byte items: *items (NULL when empty) and *count.  The
 * statement's LIMIT bounds it.  0 or an error (nothing returned).  q is
 * reset. */
int sq_query_rows(struct conn *c, sqlite3_stmt *q, const struct sq_arg *a, size_t n,
                  const char *what, sq_row_fn row, size_t size, void **items, size_t *count);
/* sq_query_row and sq_query_rows of statement id on a pooled reader. */
int sq_read_row(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
                const char *what, sq_row_fn row, void *out);
int sq_read_rows(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
                 const char *what, sq_row_fn row, size_t size, void **items, size_t *count);
/* sq_query_rows of the filtered query kind for the fields of mask, on a
 * pooled reader. */
int sq_read_filtered_rows(struct sqlite_store *s, enum filtered_kind kind, unsigned mask,
                          const struct sq_arg *a, size_t n, const char *what, sq_row_fn row,
                          size_t size, void **items, size_t *count);
/* One page of a filtered list and, when total is not NULL, the count of
 * all its matches, read from one snapshot on a pooled reader: the
 * count_kind query with a (n args, its LIMIT/OFFSET places unbound),
 * then list_kind with a[limit_at] = limit and a[limit_at + 1] = offset.
 * what names the rows in messages ("sessions").  0 with the page in
 * items and count, or an error (nothing returned). */
int sq_read_page(struct sqlite_store *s, enum filtered_kind count_kind,
                 enum filtered_kind list_kind, unsigned mask, struct sq_arg *a, size_t n,
                 size_t limit_at, int64_t limit, int64_t offset, const char *what, sq_row_fn row,
                 size_t size, void **items, size_t *count, int64_t *total);
/* What sq_read_blob says of a blob and of the row that owns it. */
struct sq_blob_names {
    const char *blob;          /* "profile": "no output for the profile" */
    const char *reading;       /* "reading a profile": the blob query's errors */
    const char *owner;         /* "session" */
    const char *reading_owner; /* "reading a session": the existence query's */
    const char *missing;       /* "has no profile": "session 3 has no profile" */
};
/* The blob of statement sid (?1 = id; column 0 of its one row) on a
 * reader: *buf a malloc'ed copy the caller frees (never NULL on success),
 * *len its bytes.  No row: -ENOENT "<owner> <id> <missing>" when
 * exists_sid (?1 = id) finds the owner, else "<owner> <id> not found". */
int sq_read_blob(struct sqlite_store *s, enum stmt_id sid, enum stmt_id exists_sid, int64_t id,
                 const struct sq_blob_names *names, void **buf, size_t *len);
/* The row of a get-by-id statement (?1 = id) on a reader, read with
 * row(); -ENOENT "<kind> <id> not found" when there is none. */
int sq_get_by_id(struct sqlite_store *s, enum stmt_id sid, int64_t id, const char *kind,
                 sq_row_fn row, void *out);
/* A one-row, one-integer query on a reader (a row is required: none is
 * an error). */
int sq_read_int(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
                int64_t *v, const char *what);

/* ------------------------------------------------------------------ */
/* The operations (store.h's struct store_ops), by area                */

/* Each is declared with the type of the public function of the same name
 * (store_agent_register for sq_agent_register), whose contract its
 * store_ops member has. */

/* store_sqlite_sessions.c */
__typeof__(store_agent_register) sq_agent_register;
__typeof__(store_agent_heartbeat) sq_agent_heartbeat;
__typeof__(store_agent_stop) sq_agent_stop;
__typeof__(store_agent_get) sq_agent_get;
__typeof__(store_agent_list) sq_agent_list;
__typeof__(store_session_create) sq_session_create;
__typeof__(store_session_update) sq_session_update;
__typeof__(store_session_get) sq_session_get;
__typeof__(store_session_list) sq_session_list;
__typeof__(store_profile_put) sq_profile_put;
__typeof__(store_profile_get) sq_profile_get;
__typeof__(store_tree_get) sq_tree_get;
__typeof__(store_tree_foreach) sq_tree_foreach;
__typeof__(store_pprof_foreach) sq_pprof_foreach;
__typeof__(store_retention_purge) sq_retention_purge;
__typeof__(store_trace_sessions) sq_trace_sessions;

/* store_sqlite_settings.c */
__typeof__(store_profile_now_create) sq_profile_now_create;
__typeof__(store_profile_now_since) sq_profile_now_since;
__typeof__(store_profile_now_recent) sq_profile_now_recent;
__typeof__(store_profile_now_last_id) sq_profile_now_last_id;
__typeof__(store_profile_now_get) sq_profile_now_get;
__typeof__(store_setting_get) sq_setting_get;
__typeof__(store_setting_put) sq_setting_put;
__typeof__(store_setting_apps) sq_setting_apps;
__typeof__(store_settings_version) sq_settings_version;

/* store_sqlite_tokens.c */
__typeof__(store_token_create) sq_token_create;
__typeof__(store_token_find) sq_token_find;
__typeof__(store_token_get) sq_token_get;
__typeof__(store_token_list) sq_token_list;
__typeof__(store_token_revoke) sq_token_revoke;
__typeof__(store_token_touch) sq_token_touch;
__typeof__(store_token_count) sq_token_count;

/* store_sqlite_tasks.c */
__typeof__(store_task_create) sq_task_create;
__typeof__(store_task_get) sq_task_get;
__typeof__(store_task_list) sq_task_list;
__typeof__(store_task_active) sq_task_active;
__typeof__(store_task_cancel) sq_task_cancel;
__typeof__(store_task_expire) sq_task_expire;
__typeof__(store_task_version) sq_task_version;
__typeof__(store_task_deliver) sq_task_deliver;
__typeof__(store_task_agent_event) sq_task_agent_event;
__typeof__(store_task_agents) sq_task_agents;
__typeof__(store_task_log_add) sq_task_log_add;
__typeof__(store_task_logs) sq_task_logs;
__typeof__(store_capture_claim) sq_capture_claim;
__typeof__(store_capture_profile_put) sq_capture_profile_put;
__typeof__(store_capture_get) sq_capture_get;
__typeof__(store_capture_list) sq_capture_list;
__typeof__(store_capture_profile_get) sq_capture_profile_get;
__typeof__(store_capture_tree_get) sq_capture_tree_get;
__typeof__(store_capture_by_trace) sq_capture_by_trace;
/* The rows of statement sid for one trace (?1 = trace_id, ?2 = limit)
 * into a malloc'ed array *out of size-byte items (NULL when none) and *n,
 * as sq_read_rows.  trace_id must be 1..STORE_TRACE_MAX-1 bytes, else
 * -EINVAL.  out and n must not be NULL. */
int sq_trace_rows(struct sqlite_store *s, enum stmt_id sid, const char *trace_id, int64_t limit,
                  const char *what, sq_row_fn row, size_t size, void **out, size_t *n);
/* One batch of retention's task purge on c (inside a write
 * transaction): *n = tasks deleted. */
int sq_purge_tasks(struct conn *c, int64_t before_ms, int64_t batch, int64_t *n);

/* store_sqlite_loadtests.c */
__typeof__(store_loadtest_create) sq_loadtest_create;
__typeof__(store_loadtest_get) sq_loadtest_get;
__typeof__(store_loadtest_list) sq_loadtest_list;
__typeof__(store_loadtest_request) sq_loadtest_request;
__typeof__(store_loadtest_result) sq_loadtest_result;
__typeof__(store_loadtest_claim) sq_loadtest_claim;
__typeof__(store_loadtest_progress) sq_loadtest_progress;
__typeof__(store_loadtest_finish) sq_loadtest_finish;
__typeof__(store_loadtest_cancel) sq_loadtest_cancel;
__typeof__(store_loadtest_abandon) sq_loadtest_abandon;
/* One batch of retention's load-test purge on c (inside a write
 * transaction): the tests that ended before before_ms; *n = deleted. */
int sq_purge_loadtests(struct conn *c, int64_t before_ms, int64_t batch, int64_t *n);

#endif
