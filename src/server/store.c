/*
 * store.c — the storage interface's dispatch (store.h): store_open()
 * picks an implementation from the URL, every public store_* function
 * calls through st->ops, and errors carry a per-thread human message.
 *
 * Like SQLite's VFS the interface is a table of function pointers, so the
 * HTTP layer never knows which database it talks to.  This file holds no
 * state of its own but the calling thread's last error message: the
 * store is shared by the whole server thread pool, so a message kept in
 * the store object would be overwritten by another thread's call before
 * the caller could read it.  Each public call clears the message first,
 * so store_errmsg() always describes the calling thread's latest call.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server/store.h"

/* Long enough for an SQLite message plus our context (path, id). */
#define STORE_ERRMSG_MAX 512

static __thread char errmsg_buf[STORE_ERRMSG_MAX];

int store_set_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg_buf, sizeof errmsg_buf, fmt, ap);
    va_end(ap);
    return code;
}

const char *store_errmsg(struct store *st)
{
    (void)st; /* the message is per thread, whatever the store */
    return errmsg_buf;
}

static void clear_error(void)
{
    errmsg_buf[0] = '\0';
}

static void copy_err(char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", errmsg_buf);
}

/* "scheme://" at the start of url → strlen(scheme), else 0. */
static size_t scheme_len(const char *url)
{
    size_t i = 0;
    while ((url[i] >= 'a' && url[i] <= 'z') || (url[i] >= 'A' && url[i] <= 'Z') ||
           (url[i] >= '0' && url[i] <= '9') || url[i] == '+' || url[i] == '-' || url[i] == '.')
        i++;
    return (i > 0 && strncmp(url + i, "://", 3) == 0) ? i : 0;
}

int store_open(const char *url, struct store **out, char *err, size_t errlen)
{
    int rc;
    clear_error();
    if (out)
        *out = NULL;
    if (!url || !*url || !out) {
        rc = store_set_error(-EINVAL, "store URL is empty");
        copy_err(err, errlen);
        return rc;
    }
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        rc = store_set_error(-ENOTSUP, "PostgreSQL store is not implemented yet; use "
                                       "sqlite:PATH or a plain file path");
        copy_err(err, errlen);
        return rc;
    }
    const char *path = url;
    if (strncmp(url, "sqlite:", 7) == 0) {
        path = url + 7;
        /* sqlite:///abs/path and sqlite://rel/path, for those who write
         * URLs with an authority part. */
        if (strncmp(path, "//", 2) == 0)
            path += 2;
    } else if (scheme_len(url)) {
        rc = store_set_error(-EINVAL, "unknown store URL scheme in '%.*s' (sqlite:PATH, a plain "
                                      "path, or postgres://…)",
                             (int)scheme_len(url) + 3, url);
        copy_err(err, errlen);
        return rc;
    }
    if (!*path) {
        rc = store_set_error(-EINVAL, "store URL '%s' names no file", url);
        copy_err(err, errlen);
        return rc;
    }
    return store_sqlite_open(path, out, err, errlen);
}

void store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

/* Every dispatcher: refuse a NULL store, clear the message, call. */
#define DISPATCH(member, ...)                                                                      \
    do {                                                                                           \
        clear_error();                                                                             \
        if (!st)                                                                                   \
            return store_set_error(-EINVAL, "no store");                                           \
        return st->ops->member(st, __VA_ARGS__);                                                   \
    } while (0)

int store_check(struct store *st, char **report)
{
    DISPATCH(check, report);
}

int store_agent_register(struct store *st, struct store_agent *a)
{
    DISPATCH(agent_register, a);
}

int store_agent_heartbeat(struct store *st, int64_t id, int64_t now_ms, double cpu_pct,
                          double mem_pct, int64_t dropped_uploads)
{
    DISPATCH(agent_heartbeat, id, now_ms, cpu_pct, mem_pct, dropped_uploads);
}

int store_agent_stop(struct store *st, int64_t id, int64_t now_ms)
{
    DISPATCH(agent_stop, id, now_ms);
}

int store_agent_get(struct store *st, int64_t id, struct store_agent *out)
{
    DISPATCH(agent_get, id, out);
}

int store_agent_list(struct store *st, const struct store_agent_filter *f,
                     struct store_agent **out, size_t *n)
{
    DISPATCH(agent_list, f, out, n);
}

int store_session_create(struct store *st, struct store_session *s)
{
    DISPATCH(session_create, s);
}

int store_session_update(struct store *st, const struct store_session *s)
{
    DISPATCH(session_update, s);
}

int store_session_get(struct store *st, int64_t id, struct store_session *out)
{
    DISPATCH(session_get, id, out);
}

int store_session_list(struct store *st, const struct store_session_filter *f,
                       struct store_session **out, size_t *n, int64_t *total)
{
    DISPATCH(session_list, f, out, n, total);
}

int store_profile_put(struct store *st, const struct store_profile *p)
{
    DISPATCH(profile_put, p);
}

int store_profile_get(struct store *st, int64_t session_id, void **buf, size_t *len)
{
    DISPATCH(profile_get, session_id, buf, len);
}

int store_tree_get(struct store *st, int64_t session_id, void **buf, size_t *len)
{
    DISPATCH(tree_get, session_id, buf, len);
}

int store_tree_foreach(struct store *st, const struct store_session_filter *f, store_tree_fn fn,
                       void *ctx)
{
    DISPATCH(tree_foreach, f, fn, ctx);
}

int store_pprof_foreach(struct store *st, const struct store_session_filter *f, store_tree_fn fn,
                        void *ctx)
{
    DISPATCH(pprof_foreach, f, fn, ctx);
}

int store_retention_purge(struct store *st, int64_t before_ms, int64_t *deleted)
{
    DISPATCH(retention_purge, before_ms, deleted);
}

int store_profile_now_create(struct store *st, struct store_profile_now *r)
{
    DISPATCH(profile_now_create, r);
}

int store_profile_now_since(struct store *st, int64_t after_id, const char *app, int64_t now_ms,
                            struct store_profile_now **out, size_t *n)
{
    DISPATCH(profile_now_since, after_id, app, now_ms, out, n);
}

int store_profile_now_recent(struct store *st, size_t limit, struct store_profile_now **out,
                             size_t *n)
{
    DISPATCH(profile_now_recent, limit, out, n);
}

int store_profile_now_last_id(struct store *st, int64_t *id)
{
    DISPATCH(profile_now_last_id, id);
}

int store_profile_now_get(struct store *st, int64_t id, struct store_profile_now *out)
{
    DISPATCH(profile_now_get, id, out);
}

int store_setting_get(struct store *st, const char *key, const char *app, char **json)
{
    DISPATCH(setting_get, key, app, json);
}

int store_setting_put(struct store *st, const char *key, const char *app, const char *json)
{
    DISPATCH(setting_put, key, app, json);
}

int store_setting_apps(struct store *st, const char *key, char (**apps)[STORE_APP_MAX],
                       size_t *n)
{
    DISPATCH(setting_apps, key, apps, n);
}

int store_settings_version(struct store *st, int64_t *version)
{
    DISPATCH(settings_version, version);
}

int store_token_create(struct store *st, struct store_token *t)
{
    DISPATCH(token_create, t);
}

int store_token_find(struct store *st, const char *hash, struct store_token *out)
{
    DISPATCH(token_find, hash, out);
}

int store_token_get(struct store *st, int64_t id, struct store_token *out)
{
    DISPATCH(token_get, id, out);
}

int store_token_list(struct store *st, struct store_token **out, size_t *n)
{
    DISPATCH(token_list, out, n);
}

int store_token_revoke(struct store *st, int64_t id, int64_t now_ms)
{
    DISPATCH(token_revoke, id, now_ms);
}

int store_token_touch(struct store *st, int64_t id, int64_t now_ms)
{
    DISPATCH(token_touch, id, now_ms);
}

int store_token_count(struct store *st, const char *role, int64_t *n)
{
    DISPATCH(token_count, role, n);
}

int store_task_create(struct store *st, struct store_task *t)
{
    DISPATCH(task_create, t);
}

int store_task_get(struct store *st, int64_t id, struct store_task *out)
{
    DISPATCH(task_get, id, out);
}

int store_task_list(struct store *st, const struct store_task_filter *f, struct store_task **out,
                    size_t *n)
{
    DISPATCH(task_list, f, out, n);
}

int store_task_active(struct store *st, const char *app, int64_t now_ms, struct store_task **out,
                      size_t *n)
{
    DISPATCH(task_active, app, now_ms, out, n);
}

int store_task_cancel(struct store *st, int64_t id, int64_t now_ms, const char *who)
{
    DISPATCH(task_cancel, id, now_ms, who);
}

int store_task_expire(struct store *st, int64_t now_ms, int64_t *n)
{
    DISPATCH(task_expire, now_ms, n);
}

int store_task_version(struct store *st, int64_t *version)
{
    DISPATCH(task_version, version);
}

int store_task_deliver(struct store *st, int64_t task_id, int64_t agent_id, int64_t now_ms)
{
    DISPATCH(task_deliver, task_id, agent_id, now_ms);
}

int store_task_agent_event(struct store *st, int64_t task_id, int64_t agent_id, const char *event,
                           const char *message, int64_t now_ms)
{
    DISPATCH(task_agent_event, task_id, agent_id, event, message, now_ms);
}

int store_task_agents(struct store *st, int64_t task_id, struct store_task_agent **out,
                      size_t *n)
{
    DISPATCH(task_agents, task_id, out, n);
}

int store_task_log_add(struct store *st, int64_t task_id, int64_t agent_id, const char *event,
                       const char *message, int64_t ts_ms)
{
    DISPATCH(task_log_add, task_id, agent_id, event, message, ts_ms);
}

int store_task_logs(struct store *st, int64_t task_id, struct store_task_log **out, size_t *n)
{
    DISPATCH(task_logs, task_id, out, n);
}

int store_capture_claim(struct store *st, struct store_capture *c, int64_t now_ms,
                        char *task_state)
{
    DISPATCH(capture_claim, c, now_ms, task_state);
}

int store_capture_profile_put(struct store *st, int64_t id, const void *pprof, size_t pprof_len,
                              const void *tree, size_t tree_len, int64_t snapshots,
                              int64_t now_ms)
{
    DISPATCH(capture_profile_put, id, pprof, pprof_len, tree, tree_len, snapshots, now_ms);
}

int store_capture_get(struct store *st, int64_t id, struct store_capture *out)
{
    DISPATCH(capture_get, id, out);
}

int store_capture_list(struct store *st, int64_t task_id, struct store_capture **out, size_t *n)
{
    DISPATCH(capture_list, task_id, out, n);
}

int store_capture_profile_get(struct store *st, int64_t id, void **buf, size_t *len)
{
    DISPATCH(capture_profile_get, id, buf, len);
}

int store_capture_tree_get(struct store *st, int64_t id, void **buf, size_t *len)
{
    DISPATCH(capture_tree_get, id, buf, len);
}

int store_capture_by_trace(struct store *st, const char *trace_id, struct store_capture **out,
                           size_t *n)
{
    DISPATCH(capture_by_trace, trace_id, out, n);
}

int store_trace_sessions(struct store *st, const char *trace_id, struct store_trace_span **out,
                         size_t *n)
{
    DISPATCH(trace_sessions, trace_id, out, n);
}

int store_loadtest_create(struct store *st, struct store_loadtest *t, const char *headers_json,
                          const void *body, size_t body_len, int64_t max_queued)
{
    DISPATCH(loadtest_create, t, headers_json, body, body_len, max_queued);
}

int store_loadtest_get(struct store *st, int64_t id, struct store_loadtest *out)
{
    DISPATCH(loadtest_get, id, out);
}

int store_loadtest_list(struct store *st, const struct store_loadtest_filter *f,
                        struct store_loadtest **out, size_t *n, int64_t *total)
{
    DISPATCH(loadtest_list, f, out, n, total);
}

int store_loadtest_request(struct store *st, int64_t id, char **headers_json, void **body,
                           size_t *body_len)
{
    DISPATCH(loadtest_request, id, headers_json, body, body_len);
}

int store_loadtest_result(struct store *st, int64_t id, char **result_json)
{
    DISPATCH(loadtest_result, id, result_json);
}

int store_loadtest_claim(struct store *st, int64_t now_ms, struct store_loadtest *out)
{
    DISPATCH(loadtest_claim, now_ms, out);
}

int store_loadtest_progress(struct store *st, int64_t id, int64_t requests, int64_t errors,
                            const char *result_json, int *cancel_requested)
{
    DISPATCH(loadtest_progress, id, requests, errors, result_json, cancel_requested);
}

int store_loadtest_finish(struct store *st, int64_t id, const char *state, const char *error,
                          int64_t requests, int64_t errors, const char *result_json,
                          int64_t now_ms)
{
    DISPATCH(loadtest_finish, id, state, error, requests, errors, result_json, now_ms);
}

int store_loadtest_cancel(struct store *st, int64_t id, int64_t now_ms,
                          struct store_loadtest *out)
{
    DISPATCH(loadtest_cancel, id, now_ms, out);
}

int store_loadtest_abandon(struct store *st, int64_t started_before_ms, const char *error,
                           int64_t now_ms, int64_t *n)
{
    DISPATCH(loadtest_abandon, started_before_ms, error, now_ms, n);
}
