/*
 * store_sqlite.c — the SQLite implementation of store.h: one database
 * file holding agents, sessions, their profiles, Profile Now requests,
 * settings, access tokens, active profiling's tasks and captures, and
 * load tests.  This file holds the machinery: the connections, the reader
 * pool, transactions, binding values and running statements, the
 * consistency check, migrations at open, and the table of operations,
 * which live by area in store_sqlite_sessions.c, store_sqlite_settings.c,
 * store_sqlite_tokens.c, store_sqlite_tasks.c and
 * store_sqlite_loadtests.c; the SQL is in store_sqlite_sql.c
 * (store_sqlite_internal.h lists them).
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
 * by query kind and by the set of filter fields present (128 combinations
 * per kind, each prepared once per connection).
 *
 * Profiles live in their own table, separate from sessions, so listing
 * sessions never reads a blob page.  store_tree_foreach streams one row
 * at a time from a statement and hands the callback SQLite's own buffer:
 * nothing is loaded in bulk.
 *
 * Schema.  Versioned migrations (store_sqlite_sql.c): the database's
 * schema_version table records each migration applied; at open each one
 * not yet applied runs in its own transaction, which re-reads the version
 * under the write lock so two processes opening the same new file apply
 * it once.  Reopening applies nothing.  A database newer than this code
 * is refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/store_sqlite_internal.h"

#define BUSY_TIMEOUT_MS 5000
/* synchronous=NORMAL in WAL mode: durable against a process kill, not
 * against power loss (FULL would be: one fsync per commit). */
#define SYNC_MODE "NORMAL"
/* For new files; see conn_open. */
#define DB_PAGE_SIZE "8192"
/* After a checkpoint the WAL is truncated back to this size. */
#define WAL_SIZE_LIMIT (64 << 20)

static const struct store_ops sqlite_ops;

/* ------------------------------------------------------------------ */
/* Connections and transactions                                        */

int sq_db_error(struct conn *c, int rc, const char *what)
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

sqlite3_stmt *sq_stmt(struct conn *c, enum stmt_id id)
{
    if (!c->stmt[id]) {
        int rc = sqlite3_prepare_v3(c->db, sq_stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            sq_db_error(c, rc, "preparing a statement");
            c->stmt[id] = NULL;
        }
    }
    return c->stmt[id];
}

sqlite3_stmt *sq_filtered_stmt(struct conn *c, enum filtered_kind kind, unsigned mask)
{
    if (!c->filtered[kind][mask]) {
        char sql[1024];
        sq_filtered_sql(kind, mask, sql, sizeof sql);
        int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->filtered[kind][mask], NULL);
        if (rc != SQLITE_OK) {
            sq_db_error(c, rc, "preparing a filtered query");
            c->filtered[kind][mask] = NULL;
        }
    }
    return c->filtered[kind][mask];
}

void sq_done(sqlite3_stmt *q)
{
    if (q) {
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
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
    return rc == SQLITE_OK ? 0 : sq_db_error(c, rc, what);
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
            err = sq_db_error(c, rc, "setting WAL mode");
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
int sq_reader_get(struct sqlite_store *s, struct conn **out)
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

void sq_reader_put(struct sqlite_store *s, struct conn *c)
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

int sq_step_simple(struct conn *c, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = sq_stmt(c, id);
    if (!st)
        return -EIO;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sq_db_error(c, rc, what);
}

int sq_write_begin(struct sqlite_store *s)
{
    pthread_mutex_lock(&s->write_lock);
    int rc = sq_step_simple(s->writer, S_BEGIN_WRITE, "starting a write transaction");
    if (rc < 0)
        pthread_mutex_unlock(&s->write_lock);
    return rc;
}

int sq_write_end(struct sqlite_store *s, int rc)
{
    struct conn *c = s->writer;
    if (rc == 0)
        rc = sq_step_simple(c, S_COMMIT, "committing");
    if (rc < 0 && !sqlite3_get_autocommit(c->db)) {
        /* The message of the failure stays; a failed rollback leaves
         * SQLite to roll back on the next statement. */
        sqlite3_stmt *st = sq_stmt(c, S_ROLLBACK);
        if (st) {
            sqlite3_step(st);
            sqlite3_reset(st);
        }
    }
    pthread_mutex_unlock(&s->write_lock);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Values in and out                                                   */

int sq_bind(struct conn *c, sqlite3_stmt *q, const struct sq_arg *a, size_t n, const char *what)
{
    if (!q)
        return -EIO;
    for (size_t i = 0; i < n; i++) {
        int col = (int)i + 1, rc = SQLITE_OK;
        switch (a[i].type) {
        case SQ_ARG_NONE:
            break;
        case SQ_ARG_I64:
            rc = sqlite3_bind_int64(q, col, a[i].i);
            break;
        case SQ_ARG_DBL:
            rc = sqlite3_bind_double(q, col, a[i].d);
            break;
        case SQ_ARG_TXT:
            rc = sqlite3_bind_text(q, col, a[i].p ? a[i].p : "", -1, SQLITE_STATIC);
            break;
        case SQ_ARG_BLOB:
            /* An empty blob, not NULL: the columns are NOT NULL. */
            rc = sqlite3_bind_blob64(q, col, a[i].len ? a[i].p : "", a[i].len, SQLITE_STATIC);
            break;
        }
        if (rc != SQLITE_OK)
            return sq_db_error(c, sqlite3_errcode(c->db), what);
    }
    return 0;
}

int sq_text_ok(const char *v, size_t cap, const char *what)
{
    if (v && strnlen(v, cap) >= cap)
        return store_set_error(-EINVAL, "%s is longer than %zu bytes", what, cap - 1);
    return 0;
}

int sq_num_ok(double v, const char *what)
{
    if (!isfinite(v))
        return store_set_error(-EINVAL, "%s is not a finite number", what);
    return 0;
}

int sq_col_txt(struct conn *c, sqlite3_stmt *q, int col, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(q, col);
    int n = sqlite3_column_bytes(q, col);
    if (!t) {
        dst[0] = '\0';
        if (sqlite3_errcode(c->db) == SQLITE_NOMEM)
            return store_set_error(-ENOMEM, "out of memory reading %s",
                                   sqlite3_column_name(q, col));
        return 0;
    }
    if (n < 0 || (size_t)n >= cap)
        return store_set_error(-EIO, "stored %s is %d bytes, more than %zu",
                               sqlite3_column_name(q, col), n, cap - 1);
    memcpy(dst, t, (size_t)n);
    dst[n] = '\0';
    return 0;
}

int sq_row_read(struct conn *c, sqlite3_stmt *q, const struct sq_col *cols, size_t n, size_t size,
                void *out)
{
    memset(out, 0, size);
    for (size_t i = 0; i < n; i++) {
        void *m = (char *)out + cols[i].offset;
        int rc = 0;
        switch (cols[i].type) {
        case SQ_COL_I64:
            *(int64_t *)m = sqlite3_column_int64(q, (int)i);
            break;
        case SQ_COL_DBL:
            *(double *)m = sqlite3_column_double(q, (int)i);
            break;
        case SQ_COL_TXT:
            rc = sq_col_txt(c, q, (int)i, m, cols[i].size);
            break;
        }
        if (rc)
            return rc;
    }
    return 0;
}

int sq_fields_ok(const struct sq_col *cols, size_t n, const void *in, const char *kind)
{
    if (!in)
        return store_set_error(-EINVAL, "no %s", kind);
    /* Texts first, then reals: which problem is reported does not depend
     * on where a member's column sits in the SELECT. */
    for (size_t i = 0; i < n; i++) {
        const char *m = (const char *)in + cols[i].offset;
        int rc = cols[i].type == SQ_COL_TXT ? sq_text_ok(m, cols[i].size, cols[i].name) : 0;
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const char *m = (const char *)in + cols[i].offset;
        int rc = cols[i].type == SQ_COL_DBL ? sq_num_ok(*(const double *)m, cols[i].name) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

int sq_row_int(struct conn *c, sqlite3_stmt *q, void *out)
{
    (void)c;
    *(int64_t *)out = sqlite3_column_int64(q, 0);
    return 0;
}

int sq_row_blob(struct conn *c, sqlite3_stmt *q, void *out)
{
    struct sq_blob *blob = out;
    const void *b = sqlite3_column_blob(q, 0);
    int n = sqlite3_column_bytes(q, 0);
    if (!b && n == 0 && sqlite3_errcode(c->db) == SQLITE_NOMEM)
        return store_set_error(-ENOMEM, "out of memory reading a blob");
    if (n < 0)
        return store_set_error(-EIO, "blob of negative size");
    void *p = malloc(n ? (size_t)n : 1);
    if (!p)
        return store_set_error(-ENOMEM, "out of memory copying a %d-byte blob", n);
    if (n)
        memcpy(p, b, (size_t)n);
    blob->p = p;
    blob->len = (size_t)n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Running statements                                                  */

int sq_run(struct conn *c, enum stmt_id id, const struct sq_arg *a, size_t n, const char *what,
           int64_t *id_out)
{
    sqlite3_stmt *q = sq_stmt(c, id);
    int rc = sq_bind(c, q, a, n, what);
    if (rc == 0) {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW) {
            if (id_out)
                *id_out = sqlite3_column_int64(q, 0);
            r = sqlite3_step(q);
        }
        if (r != SQLITE_DONE)
            rc = sq_db_error(c, r, what);
    }
    sq_done(q);
    return rc;
}

int sq_run_one(struct conn *c, enum stmt_id id, const struct sq_arg *a, size_t n,
               const char *kind, const char *what)
{
    int rc = sq_run(c, id, a, n, what, NULL);
    if (rc == 0 && sqlite3_changes(c->db) == 0)
        rc = store_set_error(-ENOENT, "%s %" PRId64 " not found", kind, a[0].i);
    return rc;
}

int sq_write(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
             const char *what, int64_t *id_out)
{
    int64_t row_id = 0;
    int rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    rc = sq_write_end(s, sq_run(s->writer, id, a, n, what, id_out ? &row_id : NULL));
    if (rc == 0 && id_out)
        *id_out = row_id;
    return rc;
}

int sq_write_one(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
                 const char *kind, const char *what)
{
    int rc = sq_write_begin(s);
    if (rc < 0)
        return rc;
    return sq_write_end(s, sq_run_one(s->writer, id, a, n, kind, what));
}

int sq_query_row(struct conn *c, sqlite3_stmt *q, const struct sq_arg *a, size_t n,
                 const char *what, sq_row_fn row, void *out)
{
    int rc = sq_bind(c, q, a, n, what);
    if (rc == 0) {
        int r = sqlite3_step(q);
        if (r == SQLITE_ROW)
            rc = row ? row(c, q, out) : 0;
        else if (r == SQLITE_DONE)
            rc = 1;
        else
            rc = sq_db_error(c, r, what);
    }
    sq_done(q);
    return rc;
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

int sq_query_rows(struct conn *c, sqlite3_stmt *q, const struct sq_arg *a, size_t n,
                  const char *what, sq_row_fn row, size_t size, void **items, size_t *count)
{
    struct rows rows = {.size = size};
    int rc = sq_bind(c, q, a, n, what);
    if (rc == 0) {
        int r = SQLITE_DONE;
        while (rc == 0 && (r = sqlite3_step(q)) == SQLITE_ROW) {
            void *x = rows_add(&rows);
            rc = x ? row(c, q, x) : -ENOMEM;
        }
        if (rc == 0 && r != SQLITE_DONE)
            rc = sq_db_error(c, r, what);
    }
    sq_done(q);
    if (rc < 0) {
        free(rows.v);
        return rc;
    }
    *items = rows.v;
    *count = rows.n;
    return 0;
}

int sq_read_page(struct sqlite_store *s, enum filtered_kind count_kind,
                 enum filtered_kind list_kind, unsigned mask, struct sq_arg *a, size_t n,
                 size_t limit_at, int64_t limit, int64_t offset, const char *what, sq_row_fn row,
                 size_t size, void **items, size_t *count, int64_t *total)
{
    char counting[64], listing[64];
    snprintf(counting, sizeof counting, "counting %s", what);
    snprintf(listing, sizeof listing, "listing %s", what);
    struct conn *c;
    int rc = sq_reader_get(s, &c);
    if (rc < 0)
        return rc;
    int64_t all = 0;
    void *rows = NULL;
    size_t got = 0;
    rc = sq_step_simple(c, S_BEGIN_READ, "starting a read");
    if (rc == 0 && total) {
        rc = sq_query_row(c, sq_filtered_stmt(c, count_kind, mask), a, n, counting, sq_row_int,
                          &all);
        if (rc == 1) /* COUNT always has a row */
            rc = sq_db_error(c, SQLITE_CORRUPT, counting);
    }
    a[limit_at] = A_I64(limit);
    a[limit_at + 1] = A_I64(offset);
    if (rc == 0)
        rc = sq_query_rows(c, sq_filtered_stmt(c, list_kind, mask), a, n, listing, row, size,
                           &rows, &got);
    if (rc == 0)
        rc = sq_step_simple(c, S_COMMIT, "ending a read");
    sq_reader_put(s, c);
    if (rc < 0) {
        free(rows);
        return rc;
    }
    *items = rows;
    *count = got;
    if (total)
        *total = all;
    return 0;
}

int sq_read_row(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
                const char *what, sq_row_fn row, void *out)
{
    struct conn *c;
    int rc = sq_reader_get(s, &c);
    if (rc < 0)
        return rc;
    rc = sq_query_row(c, sq_stmt(c, id), a, n, what, row, out);
    sq_reader_put(s, c);
    return rc;
}

int sq_read_rows(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
                 const char *what, sq_row_fn row, size_t size, void **items, size_t *count)
{
    struct conn *c;
    int rc = sq_reader_get(s, &c);
    if (rc < 0)
        return rc;
    rc = sq_query_rows(c, sq_stmt(c, id), a, n, what, row, size, items, count);
    sq_reader_put(s, c);
    return rc;
}

int sq_read_filtered_rows(struct sqlite_store *s, enum filtered_kind kind, unsigned mask,
                          const struct sq_arg *a, size_t n, const char *what, sq_row_fn row,
                          size_t size, void **items, size_t *count)
{
    struct conn *c;
    int rc = sq_reader_get(s, &c);
    if (rc < 0)
        return rc;
    rc = sq_query_rows(c, sq_filtered_stmt(c, kind, mask), a, n, what, row, size, items, count);
    sq_reader_put(s, c);
    return rc;
}

int sq_read_blob(struct sqlite_store *s, enum stmt_id sid, enum stmt_id exists_sid, int64_t id,
                 const struct sq_blob_names *names, void **buf, size_t *len)
{
    if (!buf || !len)
        return store_set_error(-EINVAL, "no output for the %s", names->blob);
    *buf = NULL;
    *len = 0;
    struct conn *c;
    int rc = sq_reader_get(s, &c);
    if (rc < 0)
        return rc;
    struct sq_blob b;
    rc = sq_query_row(c, sq_stmt(c, sid), SQ_ARGS(A_I64(id)), names->reading, sq_row_blob, &b);
    if (rc == 0) {
        *buf = b.p;
        *len = b.len;
    } else if (rc == 1) {
        /* Say which: the API answers 404 either way, people read the
         * message. */
        int exists = sq_query_row(c, sq_stmt(c, exists_sid), SQ_ARGS(A_I64(id)),
                                  names->reading_owner, NULL, NULL) == 0;
        rc = exists ? store_set_error(-ENOENT, "%s %" PRId64 " %s", names->owner, id,
                                      names->missing)
                    : store_set_error(-ENOENT, "%s %" PRId64 " not found", names->owner, id);
    }
    sq_reader_put(s, c);
    return rc;
}

int sq_get_by_id(struct sqlite_store *s, enum stmt_id sid, int64_t id, const char *kind,
                 sq_row_fn row, void *out)
{
    if (!out)
        return store_set_error(-EINVAL, "no output for %s", kind);
    int rc = sq_read_row(s, sid, SQ_ARGS(A_I64(id)), kind, row, out);
    if (rc == 1)
        rc = store_set_error(-ENOENT, "%s %" PRId64 " not found", kind, id);
    return rc;
}

int sq_read_int(struct sqlite_store *s, enum stmt_id id, const struct sq_arg *a, size_t n,
                int64_t *v, const char *what)
{
    if (!v)
        return store_set_error(-EINVAL, "no output for %s", what);
    int rc = sq_read_row(s, id, a, n, what, sq_row_int, v);
    /* COUNT, MAX and the one-row settings_version always have a row. */
    if (rc == 1)
        rc = sq_db_error(NULL, SQLITE_CORRUPT, what);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Check, open, close                                                  */

/* Appends every row's first column to a malloc'ed report, one per line. */
static int collect_rows(struct conn *c, const char *sql, char **text, size_t *len)
{
    sqlite3_stmt *q;
    int r = sqlite3_prepare_v2(c->db, sql, -1, &q, NULL);
    if (r != SQLITE_OK)
        return sq_db_error(c, r, "checking the database");
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
        rc = sq_db_error(c, r, "checking the database");
    sqlite3_finalize(q);
    return rc;
}

/* PRAGMA integrity_check ("ok" or up to 100 problems), then, when that
 * is ok, PRAGMA foreign_key_check (a profile without its session would
 * be listed by table name).  0 whether or not problems were found: the
 * report says which. */
static int sq_check(struct store *st, char **report)
{
    struct sqlite_store *s = sq_impl(st);
    if (!report)
        return store_set_error(-EINVAL, "no output for the report");
    *report = NULL;
    struct conn *c;
    int rc = sq_reader_get(s, &c);
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
    sq_reader_put(s, c);
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
    for (size_t i = 0; i < sq_migrations_n; i++) {
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
                rc = sq_db_error(c, r, "reading the schema version");
            sqlite3_finalize(q);
        }
        if (rc == 0 && have > (int64_t)sq_migrations_n)
            rc = store_set_error(-ENOTSUP,
                                 "database '%s' has schema version %" PRId64
                                 ", newer than this sonded knows (%zu)",
                                 path, have, sq_migrations_n);
        if (rc == 0 && have < want) {
            char what[64];
            snprintf(what, sizeof what, "applying migration %" PRId64, want);
            rc = exec(c, sq_migrations[i], what);
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
    struct sqlite_store *s = sq_impl(st);
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
    .profile_now_get = sq_profile_now_get,
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
    .task_create = sq_task_create,
    .task_get = sq_task_get,
    .task_list = sq_task_list,
    .task_active = sq_task_active,
    .task_cancel = sq_task_cancel,
    .task_expire = sq_task_expire,
    .task_version = sq_task_version,
    .task_deliver = sq_task_deliver,
    .task_agent_event = sq_task_agent_event,
    .task_agents = sq_task_agents,
    .task_log_add = sq_task_log_add,
    .task_logs = sq_task_logs,
    .capture_claim = sq_capture_claim,
    .capture_profile_put = sq_capture_profile_put,
    .capture_get = sq_capture_get,
    .capture_list = sq_capture_list,
    .capture_profile_get = sq_capture_profile_get,
    .capture_tree_get = sq_capture_tree_get,
    .capture_by_trace = sq_capture_by_trace,
    .trace_sessions = sq_trace_sessions,
    .loadtest_create = sq_loadtest_create,
    .loadtest_get = sq_loadtest_get,
    .loadtest_list = sq_loadtest_list,
    .loadtest_request = sq_loadtest_request,
    .loadtest_result = sq_loadtest_result,
    .loadtest_claim = sq_loadtest_claim,
    .loadtest_progress = sq_loadtest_progress,
    .loadtest_finish = sq_loadtest_finish,
    .loadtest_cancel = sq_loadtest_cancel,
    .loadtest_abandon = sq_loadtest_abandon,
};
