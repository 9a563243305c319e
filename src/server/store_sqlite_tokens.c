/*
 * store_sqlite_tokens.c — the SQLite store's access tokens (store.h):
 * created, found by the hash of their secret on every authenticated
 * request, listed, revoked and touched.  The machinery it runs on is
 * store_sqlite.c's, the SQL store_sqlite_sql.c's.
 *
 * Touching is the one write on the path of every request, so it is
 * coalesced in memory (sqlite_store.touched[], see sq_token_touch).
 */
#include <errno.h>

#include "server/store_sqlite_internal.h"

#define TOKENS_MAX 100000
#define TOKEN_TOUCH_EVERY_MS 60000

/* The columns of TOKEN_COLS (store_sqlite_sql.c). */
#define COL(type, member) SQ_COL(struct store_token, type, member)
static const struct sq_col token_cols[] = {
    COL(I64, id),         COL(TXT, name),         COL(TXT, role),       COL(TXT, hash),
    COL(I64, created_ms), COL(I64, last_used_ms), COL(I64, revoked_ms),
};
#undef COL

static int row_token(struct conn *c, sqlite3_stmt *q, void *out)
{
    return sq_row_read(c, q, token_cols, SQ_COUNT(token_cols), sizeof(struct store_token), out);
}

int sq_token_create(struct store *st, struct store_token *t)
{
    if (!t)
        return store_set_error(-EINVAL, "no token");
    int rc = sq_text_ok(t->name, sizeof t->name, "token name");
    if (!rc)
        rc = sq_text_ok(t->role, sizeof t->role, "role");
    if (!rc)
        rc = sq_text_ok(t->hash, sizeof t->hash, "token hash");
    if (!rc && !t->hash[0])
        rc = store_set_error(-EINVAL, "empty token hash");
    if (rc)
        return rc;
    rc = sq_write(sq_impl(st), S_TOKEN_INSERT,
                  SQ_ARGS(A_TXT(t->name), A_TXT(t->role), A_TXT(t->hash), A_I64(t->created_ms),
                          A_I64(t->last_used_ms), A_I64(t->revoked_ms)),
                  "creating a token", &t->id);
    if (rc == -EEXIST) /* the hash is UNIQUE */
        rc = store_set_error(-EEXIST, "a token with this hash already exists");
    return rc;
}

int sq_token_find(struct store *st, const char *hash, struct store_token *out)
{
    if (!out || !hash)
        return store_set_error(-EINVAL, "no token hash");
    int rc = sq_text_ok(hash, STORE_HASH_MAX, "token hash");
    if (rc)
        return rc;
    rc = sq_read_row(sq_impl(st), S_TOKEN_FIND, SQ_ARGS(A_TXT(hash)), "finding a token",
                     row_token, out);
    return rc == 1 ? store_set_error(-ENOENT, "no active token with this hash") : rc;
}

int sq_token_get(struct store *st, int64_t id, struct store_token *out)
{
    return sq_get_by_id(sq_impl(st), S_TOKEN_GET, id, "token", row_token, out);
}

int sq_token_list(struct store *st, struct store_token **out, size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for the token list");
    *out = NULL;
    *n = 0;
    void *rows = NULL;
    int rc = sq_read_rows(sq_impl(st), S_TOKEN_LIST, SQ_ARGS(A_I64(TOKENS_MAX)),
                          "listing tokens", row_token, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

int sq_token_revoke(struct store *st, int64_t id, int64_t now_ms)
{
    return sq_write_one(sq_impl(st), S_TOKEN_REVOKE, SQ_ARGS(A_I64(id), A_I64(now_ms)),
                        "active token", "revoking a token");
}

/* Every authenticated request touches its token: at most one write per
 * token per TOKEN_TOUCH_EVERY_MS, decided first from memory (no lock on
 * the database at all) and then by the UPDATE's own condition (another
 * process sharing the file, or a slot taken by another id meanwhile).
 * An unknown id is not an error: there is nothing to record. */
int sq_token_touch(struct store *st, int64_t id, int64_t now_ms)
{
    struct sqlite_store *s = sq_impl(st);
    size_t slot = (size_t)((uint64_t)id % TOUCH_SLOTS);
    pthread_mutex_lock(&s->touch_lock);
    int fresh = s->touched[slot].id == id && now_ms >= s->touched[slot].written_ms &&
                now_ms - s->touched[slot].written_ms < TOKEN_TOUCH_EVERY_MS;
    pthread_mutex_unlock(&s->touch_lock);
    if (fresh)
        return 0;
    int rc = sq_write(s, S_TOKEN_TOUCH,
                      SQ_ARGS(A_I64(id), A_I64(now_ms), A_I64(now_ms - TOKEN_TOUCH_EVERY_MS + 1)),
                      "recording a token's use", NULL);
    if (rc == 0) {
        pthread_mutex_lock(&s->touch_lock);
        s->touched[slot].id = id;
        s->touched[slot].written_ms = now_ms;
        pthread_mutex_unlock(&s->touch_lock);
    }
    return rc;
}

int sq_token_count(struct store *st, const char *role, int64_t *n)
{
    int rc = sq_text_ok(role, STORE_KIND_MAX, "role");
    if (rc)
        return rc;
    if (!role)
        return sq_read_int(sq_impl(st), S_TOKEN_COUNT_ALL, NULL, 0, n, "counting tokens");
    return sq_read_int(sq_impl(st), S_TOKEN_COUNT_ROLE, SQ_ARGS(A_TXT(role)), n,
                       "counting tokens");
}
