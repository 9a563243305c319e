/*
 * store_sqlite.c — the SQLite implementation of store.h: one database
 * file holding agents, sessions, their profiles, Profile Now requests,
 * settings and access tokens.
 *
 * Durability.  The file runs in WAL mode with synchronous=NORMAL: a
 * commit appends to the write-ahead log without an fsync, and the log is
 * synced only when it is checkpointed into the database.  A committed
 * transaction is in the operating system's page cache when the call
 * returns, so it survives a kill -9 of the process at any moment — the
 * promise store.h makes.  A power loss or kernel crash may lose the last
 * transactions (never corrupt the file); closing that too would need
 * synchronous=FULL, an fsync per commit (SYNC_MODE below).
 *
 * Concurrency.  SQLite allows one writer and many readers per file; WAL
 * lets readers see the last committed state without waiting for the
 * writer and without blocking it.  So:
 *   - one writer connection behind write_lock.  Every write is one
 *     transaction, BEGIN IMMEDIATE … COMMIT, and any error rolls it back,
 *     so a failed call changes nothing.  Writes are short (the largest is
 *     a profile upload: two statements), so serialising them costs less
 *     than the lock retries that several writer connections would cause.
 *   - a pool of reader connections (at most READERS_MAX, opened on first
 *     need).  A reader is taken from the free list for one call (or one
 *     walk of store_tree_foreach) and given back; a thread finding none
 *     free waits for one.  Reads never wait for writes.
 * Every connection is opened SQLITE_OPEN_NOMUTEX (SQLite's multi-thread
 * mode): our locks already guarantee one thread per connection at a time,
 * so SQLite's own per-connection mutex would be paid for nothing.
 *
 * Prepared statements are cached per connection: the fixed ones in
 * conn.stmt[] (by enum stmt_id), the filtered lists in conn.filtered[][]
 * by query kind and by the set of filter fields present.  Building the
 * WHERE clause from the fields present (rather than "(? = '' OR app = ?)")
 * keeps every filter on an index; 64 combinations per kind are cheap to
 * cache and each is prepared once per connection.
 *
 * Profiles live in their own table, separate from sessions, so listing
 * sessions never reads a blob page.  In a profiles row the flame tree
 * comes before the pprof: SQLite stores a row's payload as one chain of
 * overflow pages and reads it front to back, so a merge that wants only
 * the tree stops before the (larger) pprof.  store_tree_foreach streams
 * one row at a time from a statement and hands the callback SQLite's own
 * buffer: nothing is loaded in bulk.
 *
 * Schema.  Versioned migrations (migrations[] below): the database's
 * schema_version table records each migration applied; at open each one
 * not yet applied runs in its own transaction, which re-reads the version
 * under the write lock so two processes opening the same new file apply
 * it once.  Reopening applies nothing.  A database newer than this code
 * is refused.
 *
 * Portability (PostgreSQL is the next implementation).  Queries use
 * standard SQL that PostgreSQL accepts unchanged but for mechanical
 * rewrites: placeholders ?N → $N; BEGIN IMMEDIATE → BEGIN (PostgreSQL
 * takes row locks on write); INSERT … RETURNING id and INSERT … ON
 * CONFLICT … DO UPDATE are the same in both.  Types are INTEGER/BIGINT,
 * DOUBLE PRECISION, TEXT and BLOB (bytea in PostgreSQL); the DDL's
 * "INTEGER PRIMARY KEY AUTOINCREMENT" (a rowid alias, never reusing an id
 * — a session id in a URL never comes to mean another session after a
 * purge) becomes "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY".
 * PRAGMAs are SQLite's alone and stay in this file.
 *
 * Retention deletes in batches of PURGE_BATCH sessions, one transaction
 * each, releasing the write lock in between so that uploads go on during
 * a large purge: a purge that fails part-way leaves a consistent store
 * with the oldest sessions gone (re-running it finishes the job).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/store.h"

#define READERS_MAX 16
#define BUSY_TIMEOUT_MS 5000
/* synchronous=NORMAL in WAL mode: durable against a process kill, not
 * against power loss (FULL would be: one fsync per commit). */
#define SYNC_MODE "NORMAL"
/* For new files; see conn_open. */
#define DB_PAGE_SIZE "8192"
/* After a checkpoint the WAL is truncated back to this size. */
#define WAL_SIZE_LIMIT (64 << 20)

#define SESSION_LIMIT_DEFAULT 50
#define SESSION_LIMIT_MAX 10000
#define AGENT_LIMIT_MAX 10000
#define FOREACH_LIMIT_MAX 100000
#define PROFILE_NOW_ROWS_MAX 1000
#define PROFILE_NOW_RECENT_DEFAULT 20
#define TOKENS_MAX 100000
#define SETTING_APPS_MAX 100000
#define SETTING_KEY_MAX 64            /* bytes, NUL excluded */
#define SETTING_JSON_MAX (4 << 20)    /* the API caps bodies at 1 MiB */
#define SAMPLE_TYPES_MAX 4096         /* "samples/count,cpu/nanoseconds" */
#define PURGE_BATCH 500
#define TOKEN_TOUCH_EVERY_MS 60000
#define TOUCH_SLOTS 64

/* ------------------------------------------------------------------ */
/* Schema                                                              */

/* Applied in order, each once, each in one transaction.  Never edit an
 * entry that has shipped: append a new one. */
static const char *const migrations[] = {
    /* 1: everything of issue 4. */
    "CREATE TABLE agents ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  app TEXT NOT NULL,"
    "  instance TEXT NOT NULL,"
    "  pid BIGINT NOT NULL,"
    "  agent_version TEXT NOT NULL,"
    "  cmdline TEXT NOT NULL,"
    "  started_ms BIGINT NOT NULL,"
    "  registered_ms BIGINT NOT NULL,"
    "  last_seen_ms BIGINT NOT NULL,"
    "  stopped_ms BIGINT NOT NULL DEFAULT 0,"
    "  cpu_pct DOUBLE PRECISION NOT NULL DEFAULT -1,"
    "  mem_pct DOUBLE PRECISION NOT NULL DEFAULT -1);"
    "CREATE INDEX agents_app ON agents (app, registered_ms);"
    "CREATE INDEX agents_last_seen ON agents (last_seen_ms);"
    /* agent_id is not a foreign key: retention drops an agent's row when
     * it has not been seen for the retention period, while sessions are
     * kept by their own start time; load tests store sessions with no
     * agent at all (agent_id 0). */
    "CREATE TABLE sessions ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  agent_id BIGINT NOT NULL,"
    "  triggered_by TEXT NOT NULL,"
    "  request_id BIGINT NOT NULL DEFAULT 0,"
    "  app TEXT NOT NULL,"
    "  instance TEXT NOT NULL,"
    "  pid BIGINT NOT NULL,"
    "  start_ms BIGINT NOT NULL,"
    "  duration_ms BIGINT NOT NULL,"
    "  profile_types TEXT NOT NULL,"
    "  samples BIGINT NOT NULL,"
    "  traces BIGINT NOT NULL,"
    "  cpu_pct DOUBLE PRECISION NOT NULL,"
    "  mem_pct DOUBLE PRECISION NOT NULL,"
    "  state TEXT NOT NULL,"
    "  profile_bytes BIGINT NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL,"
    "  updated_ms BIGINT NOT NULL);"
    "CREATE INDEX sessions_app_start ON sessions (app, start_ms);"
    "CREATE INDEX sessions_start ON sessions (start_ms);"
    "CREATE INDEX sessions_triggered_start ON sessions (triggered_by, start_ms);"
    /* session_id is the rowid (no second index); tree before pprof, see
     * the top of the file. */
    "CREATE TABLE profiles ("
    "  session_id INTEGER PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,"
    "  samples BIGINT NOT NULL,"
    "  bytes BIGINT NOT NULL,"
    "  sample_types TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  tree BLOB NOT NULL,"
    "  pprof BLOB NOT NULL);"
    "CREATE TABLE profile_now ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  app TEXT NOT NULL,"
    "  duration_s BIGINT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  token_id BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE settings ("
    "  key TEXT NOT NULL,"
    "  app TEXT NOT NULL,"
    "  json TEXT NOT NULL,"
    "  PRIMARY KEY (key, app));"
    "CREATE TABLE settings_version (version BIGINT NOT NULL);"
    "INSERT INTO settings_version (version) VALUES (0);"
    "CREATE TABLE tokens ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  hash TEXT NOT NULL UNIQUE,"
    "  created_ms BIGINT NOT NULL,"
    "  last_used_ms BIGINT NOT NULL DEFAULT 0,"
    "  revoked_ms BIGINT NOT NULL DEFAULT 0);",
};
#define MIGRATIONS_N (sizeof migrations / sizeof migrations[0])

/* ------------------------------------------------------------------ */
/* Statements                                                          */

#define AGENT_COLS                                                                                 \
    "a.id, a.app, a.instance, a.pid, a.agent_version, a.cmdline, a.started_ms, "                   \
    "a.registered_ms, a.last_seen_ms, a.stopped_ms, a.cpu_pct, a.mem_pct"
#define SESSION_COLS                                                                               \
    "s.id, s.agent_id, s.triggered_by, s.request_id, s.app, s.instance, s.pid, s.start_ms, "       \
    "s.duration_ms, s.profile_types, s.samples, s.traces, s.cpu_pct, s.mem_pct, s.state, "         \
    "s.profile_bytes, s.created_ms, s.updated_ms"
#define TOKEN_COLS "t.id, t.name, t.role, t.hash, t.created_ms, t.last_used_ms, t.revoked_ms"
#define PN_COLS "r.id, r.app, r.duration_s, r.created_ms, r.token_id"

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
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [S_BEGIN_READ] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_AGENT_INSERT] = "INSERT INTO agents (app, instance, pid, agent_version, cmdline, "
                       "started_ms, registered_ms, last_seen_ms, stopped_ms, cpu_pct, mem_pct) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
    [S_AGENT_HEARTBEAT] = "UPDATE agents SET last_seen_ms = ?2, "
                          "cpu_pct = CASE WHEN ?3 >= 0 THEN ?3 ELSE cpu_pct END, "
                          "mem_pct = CASE WHEN ?4 >= 0 THEN ?4 ELSE mem_pct END WHERE id = ?1",
    [S_AGENT_STOP] = "UPDATE agents SET stopped_ms = ?2 WHERE id = ?1",
    [S_AGENT_GET] = "SELECT " AGENT_COLS " FROM agents a WHERE a.id = ?1",
    [S_SESSION_INSERT] = "INSERT INTO sessions (agent_id, triggered_by, request_id, app, "
                         "instance, pid, start_ms, duration_ms, profile_types, samples, traces, "
                         "cpu_pct, mem_pct, state, profile_bytes, created_ms, updated_ms) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                         "0, ?15, ?15) RETURNING id",
    [S_SESSION_UPDATE] = "UPDATE sessions SET duration_ms = ?2, profile_types = ?3, "
                         "samples = ?4, traces = ?5, cpu_pct = ?6, mem_pct = ?7, state = ?8, "
                         "updated_ms = ?9 WHERE id = ?1",
    [S_SESSION_GET] = "SELECT " SESSION_COLS " FROM sessions s WHERE s.id = ?1",
    [S_SESSION_EXISTS] = "SELECT 1 FROM sessions WHERE id = ?1",
    /* The session half of a profile upload; a session that already has
     * a profile is caught by the profiles primary key right after. */
    [S_PROFILE_MARK] = "UPDATE sessions SET profile_bytes = ?2, "
                       "samples = CASE WHEN samples = 0 THEN ?3 ELSE samples END, "
                       "state = CASE WHEN state = 'running' THEN 'completed' ELSE state END, "
                       "updated_ms = ?4 WHERE id = ?1",
    [S_PROFILE_INSERT] = "INSERT INTO profiles (session_id, samples, bytes, sample_types, "
                         "created_ms, tree, pprof) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_PROFILE_GET] = "SELECT pprof FROM profiles WHERE session_id = ?1",
    [S_TREE_GET] = "SELECT tree FROM profiles WHERE session_id = ?1",
    [S_PURGE_SESSIONS] = "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions "
                         "WHERE start_ms < ?1 ORDER BY start_ms LIMIT ?2)",
    [S_PURGE_AGENTS] = "DELETE FROM agents WHERE last_seen_ms < ?1 "
                       "OR (stopped_ms <> 0 AND stopped_ms < ?1)",
    [S_PN_INSERT] = "INSERT INTO profile_now (app, duration_s, created_ms, token_id) "
                    "VALUES (?1, ?2, ?3, ?4) RETURNING id",
    [S_PN_SINCE] = "SELECT " PN_COLS " FROM profile_now r WHERE r.id > ?1 "
                   "AND (r.app = '' OR r.app = ?2) AND r.created_ms + r.duration_s * 1000 > ?3 "
                   "ORDER BY r.id LIMIT ?4",
    [S_PN_RECENT] = "SELECT " PN_COLS " FROM profile_now r ORDER BY r.id DESC LIMIT ?1",
    [S_PN_LAST] = "SELECT COALESCE(MAX(id), 0) FROM profile_now",
    [S_SETTING_GET] = "SELECT json FROM settings WHERE key = ?1 AND app = ?2",
    [S_SETTING_UPSERT] = "INSERT INTO settings (key, app, json) VALUES (?1, ?2, ?3) "
                         "ON CONFLICT (key, app) DO UPDATE SET json = excluded.json",
    [S_SETTING_DELETE] = "DELETE FROM settings WHERE key = ?1 AND app = ?2",
    [S_SETTING_APPS] = "SELECT app FROM settings WHERE key = ?1 AND app <> '' ORDER BY app "
                       "LIMIT ?2",
    [S_SETTINGS_BUMP] = "UPDATE settings_version SET version = version + 1",
    [S_SETTINGS_VERSION] = "SELECT version FROM settings_version",
    [S_TOKEN_INSERT] = "INSERT INTO tokens (name, role, hash, created_ms, last_used_ms, "
                       "revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
    [S_TOKEN_FIND] = "SELECT " TOKEN_COLS " FROM tokens t WHERE t.hash = ?1 AND t.revoked_ms = 0",
    [S_TOKEN_GET] = "SELECT " TOKEN_COLS " FROM tokens t WHERE t.id = ?1",
    [S_TOKEN_LIST] = "SELECT " TOKEN_COLS " FROM tokens t ORDER BY t.id LIMIT ?1",
    [S_TOKEN_REVOKE] = "UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms = 0",
    [S_TOKEN_TOUCH] = "UPDATE tokens SET last_used_ms = ?2 WHERE id = ?1 AND last_used_ms < ?3",
    [S_TOKEN_COUNT_ROLE] = "SELECT COUNT(*) FROM tokens WHERE revoked_ms = 0 AND role = ?1",
    [S_TOKEN_COUNT_ALL] = "SELECT COUNT(*) FROM tokens WHERE revoked_ms = 0",
};

/* Filtered queries: the SQL depends on which filter fields are set. */
enum filtered_kind { F_SESSION_LIST, F_SESSION_COUNT, F_TREE, F_PPROF, F_AGENT_LIST, F_COUNT };

/* Filter fields present, and the placeholder each one binds. */
enum {
    FM_APP = 1,          /* ?1 */
    FM_INSTANCE = 2,     /* ?2 */
    FM_TRIGGERED = 4,    /* ?3 */
    FM_FROM = 8,         /* ?4 (agents: last_seen_ms >= ?4) */
    FM_TO = 16,          /* ?5 */
    FM_WITH_PROFILE = 32,
    FM_COMBOS = 64
};
/* ?6 = limit, ?7 = offset. */

/* ------------------------------------------------------------------ */
/* Connections                                                         */

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

static const struct store_ops sqlite_ops;

static struct sqlite_store *impl(struct store *st)
{
    return (struct sqlite_store *)st;
}

/* An SQLite failure as our code with the calling thread's message. */
static int db_error(struct conn *c, int rc, const char *what)
{
    int code;
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        code = (rc == SQLITE_CONSTRAINT_FOREIGNKEY) ? -ENOENT
               : (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) ? -EEXIST
                                                                                        : -EINVAL;
        break;
    case SQLITE_NOMEM:
        code = -ENOMEM;
        break;
    case SQLITE_TOOBIG:
        code = -EINVAL;
        break;
    default:
        code = -EIO;
    }
    return store_set_error(code, "%s: %s", what, c ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
}

/* The cached statement id of c, prepared on first use.  NULL with the
 * error set on failure. */
static sqlite3_stmt *stmt(struct conn *c, enum stmt_id id)
{
    if (!c->stmt[id]) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            db_error(c, rc, "preparing a statement");
            c->stmt[id] = NULL;
        }
    }
    return c->stmt[id];
}

/* Back to a reusable state; bindings cleared so no pointer to a caller's
 * buffer outlives the call. */
static void done(sqlite3_stmt *s)
{
    if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

static void conn_close(struct conn *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < S_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    for (size_t k = 0; k < F_COUNT; k++)
        for (size_t m = 0; m < FM_COMBOS; m++)
            sqlite3_finalize(c->filtered[k][m]);
    sqlite3_close(c->db);
    free(c);
}

/* Runs one pragma (or other statement without rows worth reading). */
static int exec(struct conn *c, const char *sql, const char *what)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_error(c, rc, what);
}

static int conn_open(const char *path, int writer, struct conn **out)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return store_set_error(-ENOMEM, "out of memory opening '%s'", path);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = store_set_error(rc == SQLITE_NOMEM ? -ENOMEM : -EIO, "cannot open database '%s': %s",
                             path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        conn_close(c);
        return rc;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    int err = exec(c, "PRAGMA foreign_keys = ON", "enabling foreign keys");
    if (!err && writer) {
        /* Page size counts only when the file is new (before the first
         * table).  The cost of an upload is dominated by write syscalls,
         * two per WAL frame: 8 KiB pages halve the frames of a 50 KB
         * profile (measured ~25% faster ingest than 4 KiB), while small
         * writes grow by a few KiB each. */
        err = exec(c, "PRAGMA page_size = " DB_PAGE_SIZE, "setting the page size");
    }
    if (!err && writer) {
        /* Journal mode is a property of the file: set once by the writer
         * (readers then find the file in WAL mode). */
        sqlite3_stmt *s = NULL;
        rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(s);
        if (rc != SQLITE_ROW)
            err = db_error(c, rc, "setting WAL mode");
        else if (sqlite3_stricmp((const char *)sqlite3_column_text(s, 0), "wal") != 0)
            err = store_set_error(-EIO, "database '%s' cannot use WAL mode (journal mode %s)",
                                  path, (const char *)sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        if (!err)
            err = exec(c, "PRAGMA synchronous = " SYNC_MODE, "setting synchronous");
        if (!err) {
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA journal_size_limit = %d", WAL_SIZE_LIMIT);
            err = exec(c, sql, "setting the WAL size limit");
        }
    } else if (!err) {
        /* A reader that tried to write would be a bug here; let SQLite
         * catch it. */
        err = exec(c, "PRAGMA query_only = ON", "making a reader read-only");
    }
    if (err) {
        conn_close(c);
        return err;
    }
    *out = c;
    return 0;
}

/* A reader for this call: a free one, a new one while fewer than
 * READERS_MAX are open, else the first one given back. */
static int reader_get(struct sqlite_store *s, struct conn **out)
{
    int rc = 0;
    pthread_mutex_lock(&s->pool_lock);
    for (;;) {
        if (s->free_readers) {
            *out = s->free_readers;
            s->free_readers = (*out)->next_free;
            break;
        }
        if (s->nreaders < READERS_MAX) {
            /* Opened under the lock: at most READERS_MAX times in the
             * store's life, and it keeps the array simple. */
            rc = conn_open(s->path, 0, out);
            if (rc == 0)
                s->readers[s->nreaders++] = *out;
            break;
        }
        pthread_cond_wait(&s->pool_cond, &s->pool_lock);
    }
    pthread_mutex_unlock(&s->pool_lock);
    return rc;
}

static void reader_put(struct sqlite_store *s, struct conn *c)
{
    /* A call that failed inside BEGIN … COMMIT must not hand on an open
     * read transaction (it would pin an old snapshot). */
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&s->pool_lock);
    c->next_free = s->free_readers;
    s->free_readers = c;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
}

static int step_simple(struct conn *c, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = stmt(c, id);
    if (!st)
        return -EIO;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_error(c, rc, what);
}

/* Takes the write lock and opens the write transaction.  On success the
 * caller must end with write_end(). */
static int write_begin(struct sqlite_store *s)
{
    pthread_mutex_lock(&s->write_lock);
    int rc = step_simple(s->writer, S_BEGIN_WRITE, "starting a write transaction");
    if (rc < 0)
        pthread_mutex_unlock(&s->write_lock);
    return rc;
}

/* Commits when rc == 0, else rolls back; releases the write lock.
 * Returns rc, or the commit's error. */
static int write_end(struct sqlite_store *s, int rc)
{
    struct conn *c = s->writer;
    if (rc == 0)
        rc = step_simple(c, S_COMMIT, "committing");
    if (rc < 0 && !sqlite3_get_autocommit(c->db)) {
        /* The message of the failure stays; a failed rollback leaves
         * SQLite to roll back on the next statement. */
        sqlite3_stmt *st = stmt(c, S_ROLLBACK);
        if (st) {
            sqlite3_step(st);
            sqlite3_reset(st);
        }
    }
    pthread_mutex_unlock(&s->write_lock);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Binding and reading values                                          */

/* Binders return SQLite codes so that a chain of them can be joined with
 * || and stop at the first failure. */
static int b_i64(sqlite3_stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(st, i, v);
}

static int b_dbl(sqlite3_stmt *st, int i, double v)
{
    return sqlite3_bind_double(st, i, v);
}

/* v has been length-checked (text_ok) by the caller. */
static int b_txt(sqlite3_stmt *st, int i, const char *v)
{
    return sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_STATIC);
}

static int b_blob(sqlite3_stmt *st, int i, const void *v, size_t n)
{
    /* An empty blob, not NULL: the columns are NOT NULL. */
    return sqlite3_bind_blob64(st, i, n ? v : "", n, SQLITE_STATIC);
}

/* A string field of a struct: NUL-terminated within cap bytes. */
static int text_ok(const char *v, size_t cap, const char *what)
{
    if (v && strnlen(v, cap) >= cap)
        return store_set_error(-EINVAL, "%s is longer than %zu bytes", what, cap - 1);
    return 0;
}

static int num_ok(double v, const char *what)
{
    if (!isfinite(v))
        return store_set_error(-EINVAL, "%s is not a finite number", what);
    return 0;
}

/* Copies a text column into dst[cap]; a stored value that does not fit
 * is reported, never cut. */
static int col_txt(struct conn *c, sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (!t) {
        dst[0] = '\0';
        if (sqlite3_errcode(c->db) == SQLITE_NOMEM)
            return store_set_error(-ENOMEM, "out of memory reading %s",
                                   sqlite3_column_name(st, col));
        return 0;
    }
    if (n < 0 || (size_t)n >= cap)
        return store_set_error(-EIO, "stored %s is %d bytes, more than %zu",
                               sqlite3_column_name(st, col), n, cap - 1);
    memcpy(dst, t, (size_t)n);
    dst[n] = '\0';
    return 0;
}

/* A malloc'ed copy of a blob column (never NULL on success, even for an
 * empty blob). */
static int col_blob_copy(struct conn *c, sqlite3_stmt *st, int col, void **buf, size_t *len)
{
    const void *b = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    if (!b && n == 0 && sqlite3_errcode(c->db) == SQLITE_NOMEM)
        return store_set_error(-ENOMEM, "out of memory reading a blob");
    if (n < 0)
        return store_set_error(-EIO, "blob of negative size");
    void *p = malloc(n ? (size_t)n : 1);
    if (!p)
        return store_set_error(-ENOMEM, "out of memory copying a %d-byte blob", n);
    if (n)
        memcpy(p, b, (size_t)n);
    *buf = p;
    *len = (size_t)n;
    return 0;
}

static int row_agent(struct conn *c, sqlite3_stmt *st, void *out)
{
    struct store_agent *a = out;
    memset(a, 0, sizeof *a);
    a->id = sqlite3_column_int64(st, 0);
    a->pid = sqlite3_column_int64(st, 3);
    a->started_ms = sqlite3_column_int64(st, 6);
    a->registered_ms = sqlite3_column_int64(st, 7);
    a->last_seen_ms = sqlite3_column_int64(st, 8);
    a->stopped_ms = sqlite3_column_int64(st, 9);
    a->cpu_pct = sqlite3_column_double(st, 10);
    a->mem_pct = sqlite3_column_double(st, 11);
    int rc = col_txt(c, st, 1, a->app, sizeof a->app);
    if (!rc)
        rc = col_txt(c, st, 2, a->instance, sizeof a->instance);
    if (!rc)
        rc = col_txt(c, st, 4, a->agent_version, sizeof a->agent_version);
    if (!rc)
        rc = col_txt(c, st, 5, a->cmdline, sizeof a->cmdline);
    return rc;
}

static int row_session(struct conn *c, sqlite3_stmt *st, void *out)
{
    struct store_session *s = out;
    memset(s, 0, sizeof *s);
    s->id = sqlite3_column_int64(st, 0);
    s->agent_id = sqlite3_column_int64(st, 1);
    s->request_id = sqlite3_column_int64(st, 3);
    s->pid = sqlite3_column_int64(st, 6);
    s->start_ms = sqlite3_column_int64(st, 7);
    s->duration_ms = sqlite3_column_int64(st, 8);
    s->samples = sqlite3_column_int64(st, 10);
    s->traces = sqlite3_column_int64(st, 11);
    s->cpu_pct = sqlite3_column_double(st, 12);
    s->mem_pct = sqlite3_column_double(st, 13);
    s->profile_bytes = sqlite3_column_int64(st, 15);
    s->created_ms = sqlite3_column_int64(st, 16);
    s->updated_ms = sqlite3_column_int64(st, 17);
    int rc = col_txt(c, st, 2, s->triggered_by, sizeof s->triggered_by);
    if (!rc)
        rc = col_txt(c, st, 4, s->app, sizeof s->app);
    if (!rc)
        rc = col_txt(c, st, 5, s->instance, sizeof s->instance);
    if (!rc)
        rc = col_txt(c, st, 9, s->profile_types, sizeof s->profile_types);
    if (!rc)
        rc = col_txt(c, st, 14, s->state, sizeof s->state);
    return rc;
}

static int row_token(struct conn *c, sqlite3_stmt *st, void *out)
{
    struct store_token *t = out;
    memset(t, 0, sizeof *t);
    t->id = sqlite3_column_int64(st, 0);
    t->created_ms = sqlite3_column_int64(st, 4);
    t->last_used_ms = sqlite3_column_int64(st, 5);
    t->revoked_ms = sqlite3_column_int64(st, 6);
    int rc = col_txt(c, st, 1, t->name, sizeof t->name);
    if (!rc)
        rc = col_txt(c, st, 2, t->role, sizeof t->role);
    if (!rc)
        rc = col_txt(c, st, 3, t->hash, sizeof t->hash);
    return rc;
}

static int row_profile_now(struct conn *c, sqlite3_stmt *st, struct store_profile_now *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->duration_s = sqlite3_column_int64(st, 2);
    r->created_ms = sqlite3_column_int64(st, 3);
    r->token_id = sqlite3_column_int64(st, 4);
    return col_txt(c, st, 1, r->app, sizeof r->app);
}

/* A growing malloc'ed array of fixed-size rows, for lists whose length
 * is bounded by a LIMIT but not known in advance. */
struct rows {
    void *v;
    size_t n, cap, size;
};

static void *rows_add(struct rows *r)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        void *v = realloc(r->v, cap * r->size);
        if (!v) {
            store_set_error(-ENOMEM, "out of memory listing %zu rows", r->n);
            return NULL;
        }
        r->v = v;
        r->cap = cap;
    }
    return (char *)r->v + r->n++ * r->size;
}

/* ------------------------------------------------------------------ */
/* Filtered queries                                                    */

static void sql_add(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n < cap) {
        memcpy(buf + *len, s, n + 1);
        *len += n;
    }
}

/* The SQL of kind with the filter fields of mask.  Each field binds a
 * fixed placeholder number (FM_*), so binding does not depend on which
 * others are present. */
static void filtered_sql(enum filtered_kind kind, unsigned mask, char *buf, size_t cap)
{
    size_t len = 0;
    int agent = kind == F_AGENT_LIST;
    const char *p = agent ? "a." : "s.";
    buf[0] = '\0';
    switch (kind) {
    case F_SESSION_LIST:
        sql_add(buf, cap, &len, "SELECT " SESSION_COLS " FROM sessions s");
        break;
    case F_SESSION_COUNT:
        sql_add(buf, cap, &len, "SELECT COUNT(*) FROM sessions s");
        break;
    case F_TREE:
    case F_PPROF:
        /* CROSS JOIN (standard SQL) makes SQLite walk sessions in index
         * order and look profiles up by key, so rows come out newest
         * first without a sort that would copy every blob. */
        sql_add(buf, cap, &len,
                kind == F_TREE ? "SELECT p.session_id, p.tree FROM sessions s CROSS JOIN "
                                 "profiles p"
                               : "SELECT p.session_id, p.pprof FROM sessions s CROSS JOIN "
                                 "profiles p");
        break;
    case F_AGENT_LIST:
        sql_add(buf, cap, &len, "SELECT " AGENT_COLS " FROM agents a");
        break;
    default:
        break;
    }
    const char *glue = " WHERE ";
    char term[96];
#define TERM(bit, fmt)                                                                             \
    if (mask & (bit)) {                                                                            \
        snprintf(term, sizeof term, "%s" fmt, glue, p);                                            \
        sql_add(buf, cap, &len, term);                                                             \
        glue = " AND ";                                                                            \
    }
    if (kind == F_TREE || kind == F_PPROF) {
        sql_add(buf, cap, &len, " WHERE p.session_id = s.id");
        glue = " AND ";
    }
    TERM(FM_APP, "%sapp = ?1")
    TERM(FM_INSTANCE, "%sinstance = ?2")
    if (agent) {
        TERM(FM_FROM, "%slast_seen_ms >= ?4")
    } else {
        TERM(FM_TRIGGERED, "%striggered_by = ?3")
        TERM(FM_FROM, "%sstart_ms >= ?4")
        TERM(FM_TO, "%sstart_ms < ?5")
        TERM(FM_WITH_PROFILE, "%sprofile_bytes > 0")
    }
#undef TERM
    switch (kind) {
    case F_SESSION_LIST:
        sql_add(buf, cap, &len, " ORDER BY s.start_ms DESC, s.id DESC LIMIT ?6 OFFSET ?7");
        break;
    case F_TREE:
    case F_PPROF:
        sql_add(buf, cap, &len, " ORDER BY s.start_ms DESC, s.id DESC LIMIT ?6");
        break;
    case F_AGENT_LIST:
        sql_add(buf, cap, &len, " ORDER BY a.registered_ms DESC, a.id DESC LIMIT ?6");
        break;
    default:
        break;
    }
}

static sqlite3_stmt *filtered_stmt(struct conn *c, enum filtered_kind kind, unsigned mask)
{
    if (!c->filtered[kind][mask]) {
        char sql[1024];
        filtered_sql(kind, mask, sql, sizeof sql);
        int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->filtered[kind][mask], NULL);
        if (rc != SQLITE_OK) {
            db_error(c, rc, "preparing a filtered query");
            c->filtered[kind][mask] = NULL;
        }
    }
    return c->filtered[kind][mask];
}

static int is_set(const char *v)
{
    return v && *v;
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
    if (is_set(f->app)) {
        m |= FM_APP;
        rc = rc ? rc : text_ok(f->app, STORE_APP_MAX, "filter app");
    }
    if (is_set(f->instance)) {
        m |= FM_INSTANCE;
        rc = rc ? rc : text_ok(f->instance, STORE_INSTANCE_MAX, "filter instance");
    }
    if (is_set(f->triggered_by)) {
        m |= FM_TRIGGERED;
        rc = rc ? rc : text_ok(f->triggered_by, STORE_KIND_MAX, "filter triggered_by");
    }
    if (f->from_ms)
        m |= FM_FROM;
    if (f->to_ms)
        m |= FM_TO;
    if (f->with_profile)
        m |= FM_WITH_PROFILE;
    *mask = m;
    return rc;
}

/* Binds the filter values present in mask (only those: a placeholder
 * number absent from the SQL may be out of range). */
static int bind_session_filter(sqlite3_stmt *st, const struct store_session_filter *f,
                               unsigned mask)
{
    int rc = SQLITE_OK;
    if (mask & FM_APP)
        rc = rc ? rc : b_txt(st, 1, f->app);
    if (mask & FM_INSTANCE)
        rc = rc ? rc : b_txt(st, 2, f->instance);
    if (mask & FM_TRIGGERED)
        rc = rc ? rc : b_txt(st, 3, f->triggered_by);
    if (mask & FM_FROM)
        rc = rc ? rc : b_i64(st, 4, f->from_ms);
    if (mask & FM_TO)
        rc = rc ? rc : b_i64(st, 5, f->to_ms);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Agents                                                              */

static int agent_fields_ok(const struct store_agent *a)
{
    int rc = text_ok(a->app, sizeof a->app, "app");
    if (!rc)
        rc = text_ok(a->instance, sizeof a->instance, "instance");
    if (!rc)
        rc = text_ok(a->agent_version, sizeof a->agent_version, "agent_version");
    if (!rc)
        rc = text_ok(a->cmdline, sizeof a->cmdline, "cmdline");
    if (!rc)
        rc = num_ok(a->cpu_pct, "cpu_pct");
    if (!rc)
        rc = num_ok(a->mem_pct, "mem_pct");
    return rc;
}

static int sq_agent_register(struct store *st, struct store_agent *a)
{
    struct sqlite_store *s = impl(st);
    if (!a)
        return store_set_error(-EINVAL, "no agent");
    int rc = agent_fields_ok(a);
    if (rc)
        return rc;
    if ((rc = write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, S_AGENT_INSERT);
    int64_t id = 0;
    if (!q) {
        rc = -EIO;
    } else if (b_txt(q, 1, a->app) || b_txt(q, 2, a->instance) || b_i64(q, 3, a->pid) ||
               b_txt(q, 4, a->agent_version) || b_txt(q, 5, a->cmdline) ||
               b_i64(q, 6, a->started_ms) || b_i64(q, 7, a->registered_ms) ||
               b_i64(q, 8, a->last_seen_ms) || b_i64(q, 9, a->stopped_ms) ||
               b_dbl(q, 10, a->cpu_pct) || b_dbl(q, 11, a->mem_pct)) {
        rc = db_error(c, sqlite3_errcode(c->db), "registering an agent");
    } else {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW) {
            id = sqlite3_column_int64(q, 0);
            r = sqlite3_step(q);
        }
        if (r != SQLITE_DONE)
            rc = db_error(c, r, "registering an agent");
    }
    done(q);
    rc = write_end(s, rc);
    if (rc == 0)
        a->id = id;
    return rc;
}

/* One UPDATE … WHERE id = ?1 in its own transaction; -ENOENT (with
 * message "<what> <id> not found") when it changed no row. */
static int update_one(struct sqlite_store *s, sqlite3_stmt *q, const char *kind, int64_t id,
                      const char *what)
{
    struct conn *c = s->writer;
    int r = sqlite3_step(q);
    if (r != SQLITE_DONE)
        return db_error(c, r, what);
    if (sqlite3_changes(c->db) == 0)
        return store_set_error(-ENOENT, "%s %" PRId64 " not found", kind, id);
    return 0;
}

static int sq_agent_heartbeat(struct store *st, int64_t id, int64_t now_ms, double cpu_pct,
                              double mem_pct)
{
    struct sqlite_store *s = impl(st);
    int rc = num_ok(cpu_pct, "cpu_pct");
    if (!rc)
        rc = num_ok(mem_pct, "mem_pct");
    if (rc)
        return rc;
    if ((rc = write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, S_AGENT_HEARTBEAT);
    if (!q)
        rc = -EIO;
    else if (b_i64(q, 1, id) || b_i64(q, 2, now_ms) || b_dbl(q, 3, cpu_pct) ||
             b_dbl(q, 4, mem_pct))
        rc = db_error(c, sqlite3_errcode(c->db), "recording a heartbeat");
    else
        rc = update_one(s, q, "agent", id, "recording a heartbeat");
    done(q);
    return write_end(s, rc);
}

static int sq_agent_stop(struct store *st, int64_t id, int64_t now_ms)
{
    struct sqlite_store *s = impl(st);
    int rc = write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, S_AGENT_STOP);
    if (!q)
        rc = -EIO;
    else if (b_i64(q, 1, id) || b_i64(q, 2, now_ms))
        rc = db_error(c, sqlite3_errcode(c->db), "stopping an agent");
    else
        rc = update_one(s, q, "agent", id, "stopping an agent");
    done(q);
    return write_end(s, rc);
}

/* Reads the one row of a get-by-id statement with row(); -ENOENT with
 * "<kind> <id> not found" when there is none. */
typedef int (*row_fn)(struct conn *, sqlite3_stmt *, void *);

static int get_by_id(struct sqlite_store *s, enum stmt_id sid, int64_t id, const char *kind,
                     row_fn row, void *out)
{
    if (!out)
        return store_set_error(-EINVAL, "no output for %s", kind);
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc < 0)
        return rc;
    sqlite3_stmt *q = stmt(c, sid);
    if (!q) {
        rc = -EIO;
    } else if (b_i64(q, 1, id)) {
        rc = db_error(c, sqlite3_errcode(c->db), kind);
    } else {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW)
            rc = row(c, q, out);
        else if (r == SQLITE_DONE)
            rc = store_set_error(-ENOENT, "%s %" PRId64 " not found", kind, id);
        else
            rc = db_error(c, r, kind);
    }
    done(q);
    reader_put(s, c);
    return rc;
}

static int sq_agent_get(struct store *st, int64_t id, struct store_agent *out)
{
    return get_by_id(impl(st), S_AGENT_GET, id, "agent", row_agent, out);
}

static int sq_agent_list(struct store *st, const struct store_agent_filter *f,
                         struct store_agent **out, size_t *n)
{
    struct sqlite_store *s = impl(st);
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the agent list");
    *out = NULL;
    *n = 0;
    unsigned mask = 0;
    size_t limit = AGENT_LIMIT_MAX;
    int rc = 0;
    if (f) {
        if (is_set(f->app)) {
            mask |= FM_APP;
            rc = text_ok(f->app, STORE_APP_MAX, "filter app");
        }
        if (!rc && is_set(f->instance)) {
            mask |= FM_INSTANCE;
            rc = text_ok(f->instance, STORE_INSTANCE_MAX, "filter instance");
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
    struct conn *c;
    if ((rc = reader_get(s, &c)) < 0)
        return rc;
    struct rows rows = {.size = sizeof(struct store_agent)};
    sqlite3_stmt *q = filtered_stmt(c, F_AGENT_LIST, mask);
    if (!q) {
        rc = -EIO;
    } else if (((mask & FM_APP) && b_txt(q, 1, f->app)) ||
               ((mask & FM_INSTANCE) && b_txt(q, 2, f->instance)) ||
               ((mask & FM_FROM) && b_i64(q, 4, f->seen_after_ms)) ||
               b_i64(q, 6, (int64_t)limit)) {
        rc = db_error(c, sqlite3_errcode(c->db), "listing agents");
    } else {
        int r = SQLITE_DONE;
        while (rc == 0 && (r = sqlite3_step(q)) == SQLITE_ROW) {
            struct store_agent *a = rows_add(&rows);
            rc = a ? row_agent(c, q, a) : -ENOMEM;
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = db_error(c, r, "listing agents");
    }
    done(q);
    reader_put(s, c);
    if (rc < 0) {
        free(rows.v);
        return rc;
    }
    *out = rows.v;
    *n = rows.n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */

static int session_fields_ok(const struct store_session *x)
{
    int rc = text_ok(x->triggered_by, sizeof x->triggered_by, "triggered_by");
    if (!rc)
        rc = text_ok(x->app, sizeof x->app, "app");
    if (!rc)
        rc = text_ok(x->instance, sizeof x->instance, "instance");
    if (!rc)
        rc = text_ok(x->profile_types, sizeof x->profile_types, "profile_types");
    if (!rc)
        rc = text_ok(x->state, sizeof x->state, "state");
    if (!rc)
        rc = num_ok(x->cpu_pct, "cpu_pct");
    if (!rc)
        rc = num_ok(x->mem_pct, "mem_pct");
    return rc;
}

static int sq_session_create(struct store *st, struct store_session *x)
{
    struct sqlite_store *s = impl(st);
    if (!x)
        return store_set_error(-EINVAL, "no session");
    int rc = session_fields_ok(x);
    if (rc)
        return rc;
    if ((rc = write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, S_SESSION_INSERT);
    int64_t id = 0;
    if (!q) {
        rc = -EIO;
    } else if (b_i64(q, 1, x->agent_id) || b_txt(q, 2, x->triggered_by) ||
               b_i64(q, 3, x->request_id) || b_txt(q, 4, x->app) || b_txt(q, 5, x->instance) ||
               b_i64(q, 6, x->pid) || b_i64(q, 7, x->start_ms) || b_i64(q, 8, x->duration_ms) ||
               b_txt(q, 9, x->profile_types) || b_i64(q, 10, x->samples) ||
               b_i64(q, 11, x->traces) || b_dbl(q, 12, x->cpu_pct) || b_dbl(q, 13, x->mem_pct) ||
               b_txt(q, 14, x->state) || b_i64(q, 15, x->created_ms)) {
        rc = db_error(c, sqlite3_errcode(c->db), "creating a session");
    } else {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW) {
            id = sqlite3_column_int64(q, 0);
            r = sqlite3_step(q);
        }
        if (r != SQLITE_DONE)
            rc = db_error(c, r, "creating a session");
    }
    done(q);
    rc = write_end(s, rc);
    if (rc == 0) {
        /* What is stored: no profile yet, updated = created. */
        x->id = id;
        x->profile_bytes = 0;
        x->updated_ms = x->created_ms;
    }
    return rc;
}

static int sq_session_update(struct store *st, const struct store_session *x)
{
    struct sqlite_store *s = impl(st);
    if (!x)
        return store_set_error(-EINVAL, "no session");
    int rc = session_fields_ok(x);
    if (rc)
        return rc;
    if ((rc = write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, S_SESSION_UPDATE);
    if (!q)
        rc = -EIO;
    else if (b_i64(q, 1, x->id) || b_i64(q, 2, x->duration_ms) || b_txt(q, 3, x->profile_types) ||
             b_i64(q, 4, x->samples) || b_i64(q, 5, x->traces) || b_dbl(q, 6, x->cpu_pct) ||
             b_dbl(q, 7, x->mem_pct) || b_txt(q, 8, x->state) || b_i64(q, 9, x->updated_ms))
        rc = db_error(c, sqlite3_errcode(c->db), "updating a session");
    else
        rc = update_one(s, q, "session", x->id, "updating a session");
    done(q);
    return write_end(s, rc);
}

static int sq_session_get(struct store *st, int64_t id, struct store_session *out)
{
    return get_by_id(impl(st), S_SESSION_GET, id, "session", row_session, out);
}

static int sq_session_list(struct store *st, const struct store_session_filter *f,
                           struct store_session **out, size_t *n, int64_t *total)
{
    struct sqlite_store *s = impl(st);
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

    struct conn *c;
    if ((rc = reader_get(s, &c)) < 0)
        return rc;
    struct rows rows = {.size = sizeof(struct store_session)};
    int64_t count = 0;
    sqlite3_stmt *cq = NULL, *q = NULL;
    /* The count and the page from one snapshot. */
    rc = step_simple(c, S_BEGIN_READ, "starting a read");
    if (rc == 0 && total) {
        cq = filtered_stmt(c, F_SESSION_COUNT, mask);
        if (!cq) {
            rc = -EIO;
        } else if (bind_session_filter(cq, f, mask)) {
            rc = db_error(c, sqlite3_errcode(c->db), "counting sessions");
        } else {
            int r = sqlite3_step(cq);
            if (r == SQLITE_ROW)
                count = sqlite3_column_int64(cq, 0);
            else
                rc = db_error(c, r, "counting sessions");
        }
        done(cq);
    }
    if (rc == 0) {
        q = filtered_stmt(c, F_SESSION_LIST, mask);
        if (!q) {
            rc = -EIO;
        } else if (bind_session_filter(q, f, mask) || b_i64(q, 6, (int64_t)limit) ||
                   b_i64(q, 7, (int64_t)offset)) {
            rc = db_error(c, sqlite3_errcode(c->db), "listing sessions");
        } else {
            int r;
            while (rc == 0 && (r = sqlite3_step(q)) == SQLITE_ROW) {
                struct store_session *x = rows_add(&rows);
                rc = x ? row_session(c, q, x) : -ENOMEM;
            }
            if (rc == 0 && r != SQLITE_DONE)
                rc = db_error(c, r, "listing sessions");
        }
        done(q);
    }
    if (rc == 0)
        rc = step_simple(c, S_COMMIT, "ending a read");
    reader_put(s, c);
    if (rc < 0) {
        free(rows.v);
        return rc;
    }
    *out = rows.v;
    *n = rows.n;
    if (total)
        *total = count;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Profiles                                                            */

static int sq_profile_put(struct store *st, const struct store_profile *p)
{
    struct sqlite_store *s = impl(st);
    if (!p || !p->pprof || p->pprof_len == 0)
        return store_set_error(-EINVAL, "no profile bytes");
    if (!p->tree && p->tree_len)
        return store_set_error(-EINVAL, "no flame tree bytes");
    if (p->pprof_len > INT64_MAX || p->tree_len > INT64_MAX)
        return store_set_error(-EINVAL, "profile too large");
    const char *types = p->sample_types ? p->sample_types : "";
    if (strnlen(types, SAMPLE_TYPES_MAX) >= SAMPLE_TYPES_MAX)
        return store_set_error(-EINVAL, "sample types longer than %d bytes", SAMPLE_TYPES_MAX - 1);
    int rc = write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    /* The session first: an unknown one is -ENOENT before any blob is
     * copied; then the profile, whose primary key refuses a second. */
    sqlite3_stmt *q = stmt(c, S_PROFILE_MARK);
    if (!q)
        rc = -EIO;
    else if (b_i64(q, 1, p->session_id) || b_i64(q, 2, (int64_t)p->pprof_len) ||
             b_i64(q, 3, p->samples) || b_i64(q, 4, p->now_ms))
        rc = db_error(c, sqlite3_errcode(c->db), "storing a profile");
    else
        rc = update_one(s, q, "session", p->session_id, "storing a profile");
    done(q);
    if (rc == 0) {
        q = stmt(c, S_PROFILE_INSERT);
        if (!q) {
            rc = -EIO;
        } else if (b_i64(q, 1, p->session_id) || b_i64(q, 2, p->samples) ||
                   b_i64(q, 3, (int64_t)p->pprof_len) || b_txt(q, 4, types) ||
                   b_i64(q, 5, p->now_ms) || b_blob(q, 6, p->tree, p->tree_len) ||
                   b_blob(q, 7, p->pprof, p->pprof_len)) {
            rc = db_error(c, sqlite3_errcode(c->db), "storing a profile");
        } else {
            int r = sqlite3_step(q);
            if (r == SQLITE_CONSTRAINT_PRIMARYKEY || r == SQLITE_CONSTRAINT_UNIQUE)
                rc = store_set_error(-EEXIST, "session %" PRId64 " already has a profile",
                                     p->session_id);
            else if (r != SQLITE_DONE)
                rc = db_error(c, r, "storing a profile");
        }
        done(q);
    }
    return write_end(s, rc);
}

/* A blob of one session's profile row (stmt sid), copied. */
static int blob_get(struct sqlite_store *s, enum stmt_id sid, int64_t session_id, void **buf,
                    size_t *len)
{
    if (!buf || !len)
        return store_set_error(-EINVAL, "no output for the profile");
    *buf = NULL;
    *len = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc < 0)
        return rc;
    sqlite3_stmt *q = stmt(c, sid);
    int missing = 0;
    if (!q) {
        rc = -EIO;
    } else if (b_i64(q, 1, session_id)) {
        rc = db_error(c, sqlite3_errcode(c->db), "reading a profile");
    } else {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW)
            rc = col_blob_copy(c, q, 0, buf, len);
        else if (r == SQLITE_DONE)
            missing = 1;
        else
            rc = db_error(c, r, "reading a profile");
    }
    done(q);
    if (missing) {
        /* Say which: the API answers 404 either way, people read the
         * message. */
        int exists = 0;
        q = stmt(c, S_SESSION_EXISTS);
        if (q && b_i64(q, 1, session_id) == SQLITE_OK)
            exists = sqlite3_step(q) == SQLITE_ROW;
        done(q);
        rc = exists ? store_set_error(-ENOENT, "session %" PRId64 " has no profile", session_id)
                    : store_set_error(-ENOENT, "session %" PRId64 " not found", session_id);
    }
    reader_put(s, c);
    return rc;
}

static int sq_profile_get(struct store *st, int64_t session_id, void **buf, size_t *len)
{
    return blob_get(impl(st), S_PROFILE_GET, session_id, buf, len);
}

static int sq_tree_get(struct store *st, int64_t session_id, void **buf, size_t *len)
{
    return blob_get(impl(st), S_TREE_GET, session_id, buf, len);
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
    struct conn *c;
    if ((rc = reader_get(s, &c)) < 0)
        return rc;
    /* One statement = one read snapshot for the whole walk; WAL lets
     * writers go on meanwhile. */
    sqlite3_stmt *q = filtered_stmt(c, kind, mask);
    if (!q) {
        rc = -EIO;
    } else if (bind_session_filter(q, f, mask) || b_i64(q, 6, (int64_t)limit)) {
        rc = db_error(c, sqlite3_errcode(c->db), "reading profiles");
    } else {
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
            rc = db_error(c, r, "reading profiles");
    }
    done(q);
    reader_put(s, c);
    return rc;
}

static int sq_tree_foreach(struct store *st, const struct store_session_filter *f,
                           store_tree_fn fn, void *ctx)
{
    return blob_foreach(impl(st), F_TREE, f, fn, ctx);
}

static int sq_pprof_foreach(struct store *st, const struct store_session_filter *f,
                            store_tree_fn fn, void *ctx)
{
    return blob_foreach(impl(st), F_PPROF, f, fn, ctx);
}

static int sq_retention_purge(struct store *st, int64_t before_ms, int64_t *deleted)
{
    struct sqlite_store *s = impl(st);
    int64_t total = 0;
    int rc = 0;
    if (deleted)
        *deleted = 0;
    /* Batches: see the top of the file. */
    for (;;) {
        if ((rc = write_begin(s)) < 0)
            break;
        struct conn *c = s->writer;
        sqlite3_stmt *q = stmt(c, S_PURGE_SESSIONS);
        int64_t n = 0;
        if (!q) {
            rc = -EIO;
        } else if (b_i64(q, 1, before_ms) || b_i64(q, 2, PURGE_BATCH)) {
            rc = db_error(c, sqlite3_errcode(c->db), "purging sessions");
        } else {
            int r = sqlite3_step(q);
            if (r == SQLITE_DONE)
                n = sqlite3_changes(c->db);
            else
                rc = db_error(c, r, "purging sessions");
        }
        done(q);
        if (rc == 0 && n < PURGE_BATCH) {
            /* The last batch also takes the agents. */
            q = stmt(c, S_PURGE_AGENTS);
            if (!q)
                rc = -EIO;
            else if (b_i64(q, 1, before_ms))
                rc = db_error(c, sqlite3_errcode(c->db), "purging agents");
            else if ((rc = sqlite3_step(q)) == SQLITE_DONE)
                rc = 0;
            else
                rc = db_error(c, rc, "purging agents");
            done(q);
        }
        rc = write_end(s, rc);
        if (rc < 0)
            break;
        total += n;
        if (n < PURGE_BATCH)
            break;
    }
    if (deleted)
        *deleted = total;
    return rc;
}

/* ------------------------------------------------------------------ */
/* Profile Now                                                         */

static int sq_profile_now_create(struct store *st, struct store_profile_now *r)
{
    struct sqlite_store *s = impl(st);
    if (!r)
        return store_set_error(-EINVAL, "no request");
    int rc = text_ok(r->app, sizeof r->app, "app");
    if (rc)
        return rc;
    if ((rc = write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, S_PN_INSERT);
    int64_t id = 0;
    if (!q) {
        rc = -EIO;
    } else if (b_txt(q, 1, r->app) || b_i64(q, 2, r->duration_s) || b_i64(q, 3, r->created_ms) ||
               b_i64(q, 4, r->token_id)) {
        rc = db_error(c, sqlite3_errcode(c->db), "storing a Profile Now request");
    } else {
        int x = sqlite3_step(q);
        if (x == SQLITE_ROW) {
            id = sqlite3_column_int64(q, 0);
            x = sqlite3_step(q);
        }
        if (x != SQLITE_DONE)
            rc = db_error(c, x, "storing a Profile Now request");
    }
    done(q);
    rc = write_end(s, rc);
    if (rc == 0)
        r->id = id;
    return rc;
}

/* Rows of a Profile Now query already bound. */
static int profile_now_rows(struct conn *c, sqlite3_stmt *q, struct store_profile_now **out,
                            size_t *n)
{
    struct rows rows = {.size = sizeof(struct store_profile_now)};
    int rc = 0, r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(q)) == SQLITE_ROW) {
        struct store_profile_now *x = rows_add(&rows);
        rc = x ? row_profile_now(c, q, x) : -ENOMEM;
    }
    if (rc == 0 && r != SQLITE_DONE)
        rc = db_error(c, r, "reading Profile Now requests");
    if (rc < 0) {
        free(rows.v);
        return rc;
    }
    *out = rows.v;
    *n = rows.n;
    return 0;
}

static int sq_profile_now_since(struct store *st, int64_t after_id, const char *app,
                                int64_t now_ms, struct store_profile_now **out, size_t *n)
{
    struct sqlite_store *s = impl(st);
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for Profile Now requests");
    *out = NULL;
    *n = 0;
    int rc = text_ok(app, STORE_APP_MAX, "app");
    if (rc)
        return rc;
    struct conn *c;
    if ((rc = reader_get(s, &c)) < 0)
        return rc;
    sqlite3_stmt *q = stmt(c, S_PN_SINCE);
    if (!q)
        rc = -EIO;
    else if (b_i64(q, 1, after_id) || b_txt(q, 2, app) || b_i64(q, 3, now_ms) ||
             b_i64(q, 4, PROFILE_NOW_ROWS_MAX))
        rc = db_error(c, sqlite3_errcode(c->db), "reading Profile Now requests");
    else
        rc = profile_now_rows(c, q, out, n);
    done(q);
    reader_put(s, c);
    return rc;
}

static int sq_profile_now_recent(struct store *st, size_t limit, struct store_profile_now **out,
                                 size_t *n)
{
    struct sqlite_store *s = impl(st);
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for Profile Now requests");
    *out = NULL;
    *n = 0;
    if (limit == 0)
        limit = PROFILE_NOW_RECENT_DEFAULT;
    if (limit > PROFILE_NOW_ROWS_MAX)
        return store_set_error(-EINVAL, "limit %zu is over %d", limit, PROFILE_NOW_ROWS_MAX);
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc < 0)
        return rc;
    sqlite3_stmt *q = stmt(c, S_PN_RECENT);
    if (!q)
        rc = -EIO;
    else if (b_i64(q, 1, (int64_t)limit))
        rc = db_error(c, sqlite3_errcode(c->db), "reading Profile Now requests");
    else
        rc = profile_now_rows(c, q, out, n);
    done(q);
    reader_put(s, c);
    return rc;
}

/* A one-row, one-integer query on a reader. */
static int read_int(struct sqlite_store *s, enum stmt_id sid, const char *txt, int64_t *v,
                    const char *what)
{
    if (!v)
        return store_set_error(-EINVAL, "no output for %s", what);
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc < 0)
        return rc;
    sqlite3_stmt *q = stmt(c, sid);
    if (!q) {
        rc = -EIO;
    } else if (txt && b_txt(q, 1, txt)) {
        rc = db_error(c, sqlite3_errcode(c->db), what);
    } else {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW)
            *v = sqlite3_column_int64(q, 0);
        else
            rc = db_error(c, r == SQLITE_DONE ? SQLITE_CORRUPT : r, what);
    }
    done(q);
    reader_put(s, c);
    return rc;
}

static int sq_profile_now_last_id(struct store *st, int64_t *id)
{
    return read_int(impl(st), S_PN_LAST, NULL, id, "reading the last Profile Now id");
}

/* ------------------------------------------------------------------ */
/* Settings                                                            */

static int setting_key_ok(const char *key, const char *app)
{
    if (!key || !*key)
        return store_set_error(-EINVAL, "no setting key");
    int rc = text_ok(key, SETTING_KEY_MAX + 1, "setting key");
    return rc ? rc : text_ok(app, STORE_APP_MAX, "app");
}

static int sq_setting_get(struct store *st, const char *key, const char *app, char **json)
{
    struct sqlite_store *s = impl(st);
    if (!json)
        return store_set_error(-EINVAL, "no output for the setting");
    *json = NULL;
    int rc = setting_key_ok(key, app);
    if (rc)
        return rc;
    struct conn *c;
    if ((rc = reader_get(s, &c)) < 0)
        return rc;
    sqlite3_stmt *q = stmt(c, S_SETTING_GET);
    if (!q) {
        rc = -EIO;
    } else if (b_txt(q, 1, key) || b_txt(q, 2, app)) {
        rc = db_error(c, sqlite3_errcode(c->db), "reading a setting");
    } else {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(q, 0);
            int len = sqlite3_column_bytes(q, 0);
            char *str = (t && len >= 0) ? malloc((size_t)len + 1) : NULL;
            if (!str) {
                rc = store_set_error(-ENOMEM, "out of memory reading a setting");
            } else {
                memcpy(str, t, (size_t)len);
                str[len] = '\0';
                *json = str;
            }
        } else if (r == SQLITE_DONE) {
            rc = store_set_error(-ENOENT, "setting '%s'%s%s not set", key, is_set(app) ? " of " : "",
                                 is_set(app) ? app : "");
        } else {
            rc = db_error(c, r, "reading a setting");
        }
    }
    done(q);
    reader_put(s, c);
    return rc;
}

static int sq_setting_put(struct store *st, const char *key, const char *app, const char *json)
{
    struct sqlite_store *s = impl(st);
    int rc = setting_key_ok(key, app);
    if (rc)
        return rc;
    if (json && strnlen(json, SETTING_JSON_MAX) >= SETTING_JSON_MAX)
        return store_set_error(-EINVAL, "setting document longer than %d bytes",
                               SETTING_JSON_MAX - 1);
    if ((rc = write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, json ? S_SETTING_UPSERT : S_SETTING_DELETE);
    if (!q) {
        rc = -EIO;
    } else if (b_txt(q, 1, key) || b_txt(q, 2, app) || (json && b_txt(q, 3, json))) {
        rc = db_error(c, sqlite3_errcode(c->db), "storing a setting");
    } else {
        int r = sqlite3_step(q);
        if (r != SQLITE_DONE)
            rc = db_error(c, r, "storing a setting");
        else if (!json && sqlite3_changes(c->db) == 0)
            /* Nothing to delete: nothing changed, no version bump. */
            rc = store_set_error(-ENOENT, "setting '%s'%s%s not set", key,
                                 is_set(app) ? " of " : "", is_set(app) ? app : "");
    }
    done(q);
    if (rc == 0)
        rc = step_simple(c, S_SETTINGS_BUMP, "bumping the settings version");
    return write_end(s, rc);
}

static int sq_setting_apps(struct store *st, const char *key, char (**apps)[STORE_APP_MAX],
                           size_t *n)
{
    struct sqlite_store *s = impl(st);
    if (!apps || !n)
        return store_set_error(-EINVAL, "no output for the setting's apps");
    *apps = NULL;
    *n = 0;
    int rc = setting_key_ok(key, NULL);
    if (rc)
        return rc;
    struct conn *c;
    if ((rc = reader_get(s, &c)) < 0)
        return rc;
    struct rows rows = {.size = STORE_APP_MAX};
    sqlite3_stmt *q = stmt(c, S_SETTING_APPS);
    if (!q) {
        rc = -EIO;
    } else if (b_txt(q, 1, key) || b_i64(q, 2, SETTING_APPS_MAX)) {
        rc = db_error(c, sqlite3_errcode(c->db), "listing a setting's apps");
    } else {
        int r = SQLITE_DONE;
        while (rc == 0 && (r = sqlite3_step(q)) == SQLITE_ROW) {
            char *a = rows_add(&rows);
            rc = a ? col_txt(c, q, 0, a, STORE_APP_MAX) : -ENOMEM;
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = db_error(c, r, "listing a setting's apps");
    }
    done(q);
    reader_put(s, c);
    if (rc < 0) {
        free(rows.v);
        return rc;
    }
    *apps = rows.v;
    *n = rows.n;
    return 0;
}

static int sq_settings_version(struct store *st, int64_t *version)
{
    return read_int(impl(st), S_SETTINGS_VERSION, NULL, version, "reading the settings version");
}

/* ------------------------------------------------------------------ */
/* Tokens                                                              */

static int sq_token_create(struct store *st, struct store_token *t)
{
    struct sqlite_store *s = impl(st);
    if (!t)
        return store_set_error(-EINVAL, "no token");
    int rc = text_ok(t->name, sizeof t->name, "token name");
    if (!rc)
        rc = text_ok(t->role, sizeof t->role, "role");
    if (!rc)
        rc = text_ok(t->hash, sizeof t->hash, "token hash");
    if (!rc && !t->hash[0])
        rc = store_set_error(-EINVAL, "empty token hash");
    if (rc)
        return rc;
    if ((rc = write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, S_TOKEN_INSERT);
    int64_t id = 0;
    if (!q) {
        rc = -EIO;
    } else if (b_txt(q, 1, t->name) || b_txt(q, 2, t->role) || b_txt(q, 3, t->hash) ||
               b_i64(q, 4, t->created_ms) || b_i64(q, 5, t->last_used_ms) ||
               b_i64(q, 6, t->revoked_ms)) {
        rc = db_error(c, sqlite3_errcode(c->db), "creating a token");
    } else {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW) {
            id = sqlite3_column_int64(q, 0);
            r = sqlite3_step(q);
        }
        if (r == SQLITE_CONSTRAINT_UNIQUE)
            rc = store_set_error(-EEXIST, "a token with this hash already exists");
        else if (r != SQLITE_DONE)
            rc = db_error(c, r, "creating a token");
    }
    done(q);
    rc = write_end(s, rc);
    if (rc == 0)
        t->id = id;
    return rc;
}

static int sq_token_find(struct store *st, const char *hash, struct store_token *out)
{
    struct sqlite_store *s = impl(st);
    if (!out || !hash)
        return store_set_error(-EINVAL, "no token hash");
    int rc = text_ok(hash, STORE_HASH_MAX, "token hash");
    if (rc)
        return rc;
    struct conn *c;
    if ((rc = reader_get(s, &c)) < 0)
        return rc;
    sqlite3_stmt *q = stmt(c, S_TOKEN_FIND);
    if (!q) {
        rc = -EIO;
    } else if (b_txt(q, 1, hash)) {
        rc = db_error(c, sqlite3_errcode(c->db), "finding a token");
    } else {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW)
            rc = row_token(c, q, out);
        else if (r == SQLITE_DONE)
            rc = store_set_error(-ENOENT, "no active token with this hash");
        else
            rc = db_error(c, r, "finding a token");
    }
    done(q);
    reader_put(s, c);
    return rc;
}

static int sq_token_get(struct store *st, int64_t id, struct store_token *out)
{
    return get_by_id(impl(st), S_TOKEN_GET, id, "token", row_token, out);
}

static int sq_token_list(struct store *st, struct store_token **out, size_t *n)
{
    struct sqlite_store *s = impl(st);
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the token list");
    *out = NULL;
    *n = 0;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc < 0)
        return rc;
    struct rows rows = {.size = sizeof(struct store_token)};
    sqlite3_stmt *q = stmt(c, S_TOKEN_LIST);
    if (!q) {
        rc = -EIO;
    } else if (b_i64(q, 1, TOKENS_MAX)) {
        rc = db_error(c, sqlite3_errcode(c->db), "listing tokens");
    } else {
        int r = SQLITE_DONE;
        while (rc == 0 && (r = sqlite3_step(q)) == SQLITE_ROW) {
            struct store_token *t = rows_add(&rows);
            rc = t ? row_token(c, q, t) : -ENOMEM;
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = db_error(c, r, "listing tokens");
    }
    done(q);
    reader_put(s, c);
    if (rc < 0) {
        free(rows.v);
        return rc;
    }
    *out = rows.v;
    *n = rows.n;
    return 0;
}

static int sq_token_revoke(struct store *st, int64_t id, int64_t now_ms)
{
    struct sqlite_store *s = impl(st);
    int rc = write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, S_TOKEN_REVOKE);
    if (!q)
        rc = -EIO;
    else if (b_i64(q, 1, id) || b_i64(q, 2, now_ms))
        rc = db_error(c, sqlite3_errcode(c->db), "revoking a token");
    else
        rc = update_one(s, q, "active token", id, "revoking a token");
    done(q);
    return write_end(s, rc);
}

/* Every authenticated request touches its token: at most one write per
 * token per TOKEN_TOUCH_EVERY_MS, decided first from memory (no lock on
 * the database at all) and then by the UPDATE's own condition (another
 * process sharing the file, or a slot taken by another id meanwhile).
 * An unknown id is not an error: there is nothing to record. */
static int sq_token_touch(struct store *st, int64_t id, int64_t now_ms)
{
    struct sqlite_store *s = impl(st);
    size_t slot = (size_t)((uint64_t)id % TOUCH_SLOTS);
    pthread_mutex_lock(&s->touch_lock);
    int fresh = s->touched[slot].id == id && now_ms >= s->touched[slot].written_ms &&
                now_ms - s->touched[slot].written_ms < TOKEN_TOUCH_EVERY_MS;
    pthread_mutex_unlock(&s->touch_lock);
    if (fresh)
        return 0;
    int rc = write_begin(s);
    if (rc < 0)
        return rc;
    struct conn *c = s->writer;
    sqlite3_stmt *q = stmt(c, S_TOKEN_TOUCH);
    if (!q)
        rc = -EIO;
    else if (b_i64(q, 1, id) || b_i64(q, 2, now_ms) ||
             b_i64(q, 3, now_ms - TOKEN_TOUCH_EVERY_MS + 1))
        rc = db_error(c, sqlite3_errcode(c->db), "recording a token's use");
    else if ((rc = sqlite3_step(q)) == SQLITE_DONE)
        rc = 0;
    else
        rc = db_error(c, rc, "recording a token's use");
    done(q);
    rc = write_end(s, rc);
    if (rc == 0) {
        pthread_mutex_lock(&s->touch_lock);
        s->touched[slot].id = id;
        s->touched[slot].written_ms = now_ms;
        pthread_mutex_unlock(&s->touch_lock);
    }
    return rc;
}

static int sq_token_count(struct store *st, const char *role, int64_t *n)
{
    int rc = text_ok(role, STORE_KIND_MAX, "role");
    if (rc)
        return rc;
    return read_int(impl(st), role ? S_TOKEN_COUNT_ROLE : S_TOKEN_COUNT_ALL, role, n,
                    "counting tokens");
}

/* ------------------------------------------------------------------ */
/* Check, open, close                                                  */

/* Appends every row's first column to a malloc'ed report, one per line. */
static int collect_rows(struct conn *c, const char *sql, char **text, size_t *len)
{
    sqlite3_stmt *q;
    int r = sqlite3_prepare_v2(c->db, sql, -1, &q, NULL);
    if (r != SQLITE_OK)
        return db_error(c, r, "checking the database");
    int rc = 0;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(q, 0);
        size_t n = t ? strlen(t) : 0;
        /* integrity_check stops at 100 errors; bound the report anyway. */
        if (*len + n + 2 > (1 << 20))
            break;
        char *x = realloc(*text, *len + n + 2);
        if (!x) {
            rc = store_set_error(-ENOMEM, "out of memory checking the database");
            break;
        }
        *text = x;
        if (*len)
            x[(*len)++] = '\n';
        memcpy(x + *len, t ? t : "", n);
        *len += n;
        x[*len] = '\0';
    }
    if (rc == 0 && r != SQLITE_ROW && r != SQLITE_DONE)
        rc = db_error(c, r, "checking the database");
    sqlite3_finalize(q);
    return rc;
}

/* PRAGMA integrity_check ("ok" or up to 100 problems), then, when that
 * is ok, PRAGMA foreign_key_check (a profile without its session would
 * be listed by table name).  0 whether or not problems were found: the
 * report says which. */
static int sq_check(struct store *st, char **report)
{
    struct sqlite_store *s = impl(st);
    if (!report)
        return store_set_error(-EINVAL, "no output for the report");
    *report = NULL;
    struct conn *c;
    int rc = reader_get(s, &c);
    if (rc < 0)
        return rc;
    char *text = NULL;
    size_t len = 0;
    rc = collect_rows(c, "PRAGMA integrity_check", &text, &len);
    if (rc == 0 && text && strcmp(text, "ok") == 0) {
        char *fk = NULL;
        size_t fklen = 0;
        rc = collect_rows(c, "PRAGMA foreign_key_check", &fk, &fklen);
        if (rc == 0 && fk) {
            free(text);
            text = NULL;
            len = 0;
            char head[] = "foreign key violations in tables:";
            text = malloc(sizeof head + 1 + fklen);
            if (!text)
                rc = store_set_error(-ENOMEM, "out of memory checking the database");
            else
                snprintf(text, sizeof head + 1 + fklen, "%s\n%s", head, fk);
        }
        free(fk);
    }
    reader_put(s, c);
    if (rc == 0 && !text)
        rc = store_set_error(-EIO, "integrity_check returned nothing");
    if (rc < 0) {
        free(text);
        return rc;
    }
    *report = text;
    return 0;
}

/* Applies the migrations the file has not seen, each in one transaction
 * that re-reads the version under the write lock. */
static int migrate(struct conn *c, const char *path)
{
    for (size_t i = 0; i < MIGRATIONS_N; i++) {
        int64_t want = (int64_t)i + 1, have = 0;
        int rc = exec(c, "BEGIN IMMEDIATE", "starting a migration");
        if (rc)
            return rc;
        rc = exec(c,
                  "CREATE TABLE IF NOT EXISTS schema_version ("
                  "  version BIGINT PRIMARY KEY,"
                  "  applied_ms BIGINT NOT NULL)",
                  "creating schema_version");
        sqlite3_stmt *q = NULL;
        if (rc == 0) {
            int r = sqlite3_prepare_v2(c->db, "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                                       -1, &q, NULL);
            if (r == SQLITE_OK)
                r = sqlite3_step(q);
            if (r == SQLITE_ROW)
                have = sqlite3_column_int64(q, 0);
            else
                rc = db_error(c, r, "reading the schema version");
            sqlite3_finalize(q);
        }
        if (rc == 0 && have > (int64_t)MIGRATIONS_N)
            rc = store_set_error(-ENOTSUP,
                                 "database '%s' has schema version %" PRId64
                                 ", newer than this sonded knows (%zu)",
                                 path, have, MIGRATIONS_N);
        if (rc == 0 && have < want) {
            char what[64];
            snprintf(what, sizeof what, "applying migration %" PRId64, want);
            rc = exec(c, migrations[i], what);
            if (rc == 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                char sql[128];
                snprintf(sql, sizeof sql,
                         "INSERT INTO schema_version (version, applied_ms) VALUES (%" PRId64
                         ", %" PRId64 ")",
                         want, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
                rc = exec(c, sql, what);
            }
        }
        if (rc == 0)
            rc = exec(c, "COMMIT", "committing a migration");
        if (rc) {
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    return 0;
}

static void sq_close(struct store *st)
{
    struct sqlite_store *s = impl(st);
    /* Readers first: the last connection to close checkpoints the WAL
     * into the database and removes it. */
    for (size_t i = 0; i < s->nreaders; i++)
        conn_close(s->readers[i]);
    conn_close(s->writer);
    pthread_mutex_destroy(&s->write_lock);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_cond_destroy(&s->pool_cond);
    pthread_mutex_destroy(&s->touch_lock);
    free(s->path);
    free(s);
}

int store_sqlite_open(const char *path, struct store **out, char *err, size_t errlen)
{
    int rc = 0;
    struct sqlite_store *s = NULL;
    if (!out || !path || !*path) {
        rc = store_set_error(-EINVAL, "no database path");
        goto fail;
    }
    *out = NULL;
    if (!sqlite3_threadsafe()) {
        rc = store_set_error(-ENOTSUP, "this SQLite library is built without thread support");
        goto fail;
    }
    s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        s = NULL;
        rc = store_set_error(-ENOMEM, "out of memory opening '%s'", path);
        goto fail;
    }
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->write_lock, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->pool_cond, NULL);
    pthread_mutex_init(&s->touch_lock, NULL);
    if ((rc = conn_open(path, 1, &s->writer)) < 0)
        goto fail;
    if ((rc = migrate(s->writer, path)) < 0)
        goto fail;
    *out = &s->base;
    return 0;
fail:
    if (s)
        sq_close(&s->base);
    if (err && errlen)
        snprintf(err, errlen, "%s", store_errmsg(NULL));
    return rc;
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .check = sq_check,
    .agent_register = sq_agent_register,
    .agent_heartbeat = sq_agent_heartbeat,
    .agent_stop = sq_agent_stop,
    .agent_get = sq_agent_get,
    .agent_list = sq_agent_list,
    .session_create = sq_session_create,
    .session_update = sq_session_update,
    .session_get = sq_session_get,
    .session_list = sq_session_list,
    .profile_put = sq_profile_put,
    .profile_get = sq_profile_get,
    .tree_get = sq_tree_get,
    .tree_foreach = sq_tree_foreach,
    .pprof_foreach = sq_pprof_foreach,
    .retention_purge = sq_retention_purge,
    .profile_now_create = sq_profile_now_create,
    .profile_now_since = sq_profile_now_since,
    .profile_now_recent = sq_profile_now_recent,
    .profile_now_last_id = sq_profile_now_last_id,
    .setting_get = sq_setting_get,
    .setting_put = sq_setting_put,
    .setting_apps = sq_setting_apps,
    .settings_version = sq_settings_version,
    .token_create = sq_token_create,
    .token_find = sq_token_find,
    .token_get = sq_token_get,
    .token_list = sq_token_list,
    .token_revoke = sq_token_revoke,
    .token_touch = sq_token_touch,
    .token_count = sq_token_count,
};
