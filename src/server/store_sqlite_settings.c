/*
 * store_sqlite_settings.c — the SQLite store's Profile Now requests and
 * settings (store.h): what people ask of and set for the agents, read by
 * the agents' polls.  The machinery it runs on is store_sqlite.c's, the
 * SQL store_sqlite_sql.c's.
 *
 * A Profile Now request says who asked: a person ("profile-now") or a
 * load test ("load-test", with its id).  A load test's request is linked
 * both ways in one transaction — the request names the test, the test's
 * row gets the request's id — so neither side ever points at something
 * that was rolled back.  Agents see both kinds alike.
 *
 * Every settings write bumps settings_version in the same transaction,
 * so an agent that compares versions cannot miss a change; deleting a
 * document that is not there changes nothing and bumps nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/store_sqlite_internal.h"

#define PROFILE_NOW_ROWS_MAX 1000
#define PROFILE_NOW_RECENT_DEFAULT 20
#define SETTING_APPS_MAX 100000
#define SETTING_KEY_MAX 64         /* bytes, NUL excluded */
#define SETTING_JSON_MAX (4 << 20) /* the API caps bodies at 1 MiB */

/* ------------------------------------------------------------------ */
/* Profile Now                                                         */

/* The columns of PN_COLS (store_sqlite_sql.c). */
#define COL(type, member) SQ_COL(struct store_profile_now, type, member)
static const struct sq_col profile_now_cols[] = {
    COL(I64, id),       COL(TXT, app),          COL(I64, duration_s),  COL(I64, created_ms),
    COL(I64, token_id), COL(TXT, triggered_by), COL(I64, loadtest_id),
};
#undef COL

static int row_profile_now(struct conn *c, sqlite3_stmt *q, void *out)
{
    return sq_row_read(c, q, profile_now_cols, SQ_COUNT(profile_now_cols),
                       sizeof(struct store_profile_now), out);
}

int sq_profile_now_create(struct store *st, struct store_profile_now *r)
{
    struct sqlite_store *s = sq_impl(st);
    int rc = sq_fields_ok(profile_now_cols, SQ_COUNT(profile_now_cols), r, "request");
    if (rc)
        return rc;
    const char *by = r->triggered_by[0] ? r->triggered_by : "profile-now";
    if (strcmp(by, "profile-now") != 0 && strcmp(by, "load-test") != 0)
        return store_set_error(-EINVAL,
                               "unknown Profile Now triggered_by '%s' (profile-now or load-test)",
                               by);
    if (r->loadtest_id < 0)
        return store_set_error(-EINVAL, "negative load test id %" PRId64, r->loadtest_id);
    if ((rc = sq_write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    int64_t id = 0;
    rc = sq_run(c, S_PN_INSERT,
                SQ_ARGS(A_TXT(r->app), A_I64(r->duration_s), A_I64(r->created_ms),
                        A_I64(r->token_id), A_TXT(by), A_I64(r->loadtest_id)),
                "storing a Profile Now request", &id);
    if (rc == 0 && r->loadtest_id) /* the other way: see the top of the file */
        rc = sq_run_one(c, S_LT_LINK_PROFILE_NOW, SQ_ARGS(A_I64(r->loadtest_id), A_I64(id)),
                        "load test", "linking a load test to its Profile Now request");
    rc = sq_write_end(s, rc);
    if (rc == 0) {
        /* What is stored. */
        r->id = id;
        if (!r->triggered_by[0])
            snprintf(r->triggered_by, sizeof r->triggered_by, "profile-now");
    }
    return rc;
}

int sq_profile_now_get(struct store *st, int64_t id, struct store_profile_now *out)
{
    return sq_get_by_id(sq_impl(st), S_PN_GET, id, "Profile Now request", row_profile_now, out);
}

/* The requests of statement sid with a bound, into *out and *n. */
static int profile_now_rows(struct store *st, enum stmt_id sid, const struct sq_arg *a,
                            size_t na, struct store_profile_now **out, size_t *n)
{
    void *rows = NULL;
    int rc = sq_read_rows(sq_impl(st), sid, a, na, "reading Profile Now requests",
                          row_profile_now, sizeof **out, &rows, n);
    *out = rows;
    return rc;
}

int sq_profile_now_since(struct store *st, int64_t after_id, const char *app, int64_t now_ms,
                         struct store_profile_now **out, size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for Profile Now requests");
    *out = NULL;
    *n = 0;
    int rc = sq_text_ok(app, STORE_APP_MAX, "app");
    if (rc)
        return rc;
    return profile_now_rows(st, S_PN_SINCE,
                            SQ_ARGS(A_I64(after_id), A_TXT(app), A_I64(now_ms),
                                    A_I64(PROFILE_NOW_ROWS_MAX)),
                            out, n);
}

int sq_profile_now_recent(struct store *st, size_t limit, struct store_profile_now **out,
                          size_t *n)
{
    if (!out || !n)
        return store_set_error(-EINVAL, "no output for Profile Now requests");
    *out = NULL;
    *n = 0;
    if (limit == 0)
        limit = PROFILE_NOW_RECENT_DEFAULT;
    if (limit > PROFILE_NOW_ROWS_MAX)
        return store_set_error(-EINVAL, "limit %zu is over %d", limit, PROFILE_NOW_ROWS_MAX);
    return profile_now_rows(st, S_PN_RECENT, SQ_ARGS(A_I64((int64_t)limit)), out, n);
}

int sq_profile_now_last_id(struct store *st, int64_t *id)
{
    return sq_read_int(sq_impl(st), S_PN_LAST, NULL, 0, id, "reading the last Profile Now id");
}

/* ------------------------------------------------------------------ */
/* Settings                                                            */

static int setting_key_ok(const char *key, const char *app)
{
    if (!key || !*key)
        return store_set_error(-EINVAL, "no setting key");
    int rc = sq_text_ok(key, SETTING_KEY_MAX + 1, "setting key");
    return rc ? rc : sq_text_ok(app, STORE_APP_MAX, "app");
}

static int setting_not_set(const char *key, const char *app)
{
    return store_set_error(-ENOENT, "setting '%s'%s%s not set", key, sq_is_set(app) ? " of " : "",
                           sq_is_set(app) ? app : "");
}

/* Column 0 as a malloc'ed string (out: char **). */
static int row_text(struct conn *c, sqlite3_stmt *q, void *out)
{
    (void)c;
    const char *t = (const char *)sqlite3_column_text(q, 0);
    int len = sqlite3_column_bytes(q, 0);
    char *str = (t && len >= 0) ? malloc((size_t)len + 1) : NULL;
    if (!str)
        return store_set_error(-ENOMEM, "out of memory reading a setting");
    memcpy(str, t, (size_t)len);
    str[len] = '\0';
    *(char **)out = str;
    return 0;
}

int sq_setting_get(struct store *st, const char *key, const char *app, char **json)
{
    if (!json)
        return store_set_error(-EINVAL, "no output for the setting");
    *json = NULL;
    int rc = setting_key_ok(key, app);
    if (rc)
        return rc;
    rc = sq_read_row(sq_impl(st), S_SETTING_GET, SQ_ARGS(A_TXT(key), A_TXT(app)),
                     "reading a setting", row_text, json);
    return rc == 1 ? setting_not_set(key, app) : rc;
}

int sq_setting_put(struct store *st, const char *key, const char *app, const char *json)
{
    struct sqlite_store *s = sq_impl(st);
    int rc = setting_key_ok(key, app);
    if (rc)
        return rc;
    if (json && strnlen(json, SETTING_JSON_MAX) >= SETTING_JSON_MAX)
        return store_set_error(-EINVAL, "setting document longer than %d bytes",
                               SETTING_JSON_MAX - 1);
    if ((rc = sq_write_begin(s)) < 0)
        return rc;
    struct conn *c = s->writer;
    rc = sq_run(c, json ? S_SETTING_UPSERT : S_SETTING_DELETE,
                SQ_ARGS(A_TXT(key), A_TXT(app), json ? A_TXT(json) : A_NONE),
                "storing a setting", NULL);
    if (rc == 0 && !json && sqlite3_changes(c->db) == 0)
        rc = setting_not_set(key, app); /* see the top of the file */
    if (rc == 0)
        rc = sq_step_simple(c, S_SETTINGS_BUMP, "bumping the settings version");
    return sq_write_end(s, rc);
}

static int row_app(struct conn *c, sqlite3_stmt *q, void *out)
{
    return sq_col_txt(c, q, 0, out, STORE_APP_MAX);
}

int sq_setting_apps(struct store *st, const char *key, char (**apps)[STORE_APP_MAX], size_t *n)
{
    if (!apps || !n)
        return store_set_error(-EINVAL, "no output for the setting's apps");
    *apps = NULL;
    *n = 0;
    int rc = setting_key_ok(key, NULL);
    if (rc)
        return rc;
    void *rows = NULL;
    rc = sq_read_rows(sq_impl(st), S_SETTING_APPS, SQ_ARGS(A_TXT(key), A_I64(SETTING_APPS_MAX)),
                      "listing a setting's apps", row_app, STORE_APP_MAX, &rows, n);
    *apps = rows;
    return rc;
}

int sq_settings_version(struct store *st, int64_t *version)
{
    return sq_read_int(sq_impl(st), S_SETTINGS_VERSION, NULL, 0, version,
                       "reading the settings version");
}
