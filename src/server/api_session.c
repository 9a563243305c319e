/*
 * api_session.c — the people's read side of what agents reported: the
 * agents with their computed status, the list of sessions (filters and
 * paging), one session, and the download of a session's profile exactly
 * as it was uploaded (docs/api.md, "Agents" and "Sessions"; role reader).
 *
 * The views of one session (flame graph, top, collapsed) are routed from
 * api_view.c, which owns the one path "selection → merged flame tree" so
 * that one session and a merge of many are computed by the same code.
 *
 * Every query parameter is checked before the store is asked: a bad one is
 * 400 naming the parameter and its valid range, and nothing is read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"
#include "server/http.h"
#include "server/store.h"

/* Largest time accepted in a filter (9999-12-31T23:59:59.999Z, in ms):
 * any real timestamp fits, and arithmetic on it cannot overflow. */
#define TIME_MS_MAX INT64_C(253402300799999)
#define SESSIONS_LIMIT_MAX 1000
#define SESSIONS_LIMIT_DEFAULT 50
/* Offsets past the store's own list bound are pointless; this keeps the
 * number small enough for every store implementation's OFFSET. */
#define SESSIONS_OFFSET_MAX INT64_C(2147483647)

static const char *const triggered_by_values[] = {
    "profile-now", "cpu-trigger", "memory-trigger", "default-sampling", "load-test", NULL,
};

static const char *const agent_status_values[] = {"running", "stale", "stopped", NULL};

/* Optional query parameter that must be one of values (NULL-terminated);
 * *out NULL when absent or empty. */
static int query_enum(const struct request *req, struct response *res, const char *name,
                      const char *const *values, const char *list, const char **out)
{
    const char *v = NULL;
    int rc = qp_string(req, res, name, STORE_KIND_MAX, &v);

    *out = NULL;
    if (rc < 0)
        return rc;
    if (!v || !*v)
        return 0;
    for (size_t i = 0; values[i]; i++) {
        if (strcmp(v, values[i]) == 0) {
            *out = values[i];
            return 0;
        }
    }
    http_error(res, 400, "query parameter '%s' must be one of %s", name, list);
    return -EINVAL;
}

/* The JSON array of render(item, req) for the n items of size bytes at
 * items, which it frees.  NULL after a 500 "out of memory listing
 * <what>" on res. */
static json_t *list_json(const void *items, size_t n, size_t size,
                         json_t *(*render)(const void *item, const struct request *req),
                         const struct request *req, const char *what, struct response *res)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, render((const char *)items + i * size, req)) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free((void *)items);
    if (!arr)
        http_error(res, 500, "out of memory listing %s", what);
    return arr;
}

/* ------------------------------------------------------------------ */
/* Agents                                                              */

static json_t *render_agent(const void *a, const struct request *req)
{
    return api_agent_json(a, req->now_ms, req->srv->cfg.heartbeat_s);
}

static enum http_result agents_list(struct request *req, struct response *res)
{
    struct store_agent_filter f = {0};
    const char *status;
    struct store_agent *agents = NULL;
    size_t n = 0;
    int heartbeat_s = req->srv->cfg.heartbeat_s;

    if (qp_string(req, res, "app", STORE_APP_MAX, &f.app) < 0 ||
        qp_string(req, res, "instance", STORE_INSTANCE_MAX, &f.instance) < 0 ||
        query_enum(req, res, "status", agent_status_values, "running, stale, stopped",
                   &status) < 0)
        return HTTP_DONE;

    int rc = store_agent_list(req->srv->store, &f, &agents, &n);
    if (rc < 0) {
        http_store_error(res, req->srv->store, rc, NULL);
        return HTTP_DONE;
    }
    /* Status is computed from last_seen_ms at this moment, not stored, so
     * the filter runs here rather than in the store. */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (!status || strcmp(agent_status(&agents[i], req->now_ms, heartbeat_s), status) == 0)
            agents[kept++] = agents[i];
    json_t *arr = list_json(agents, kept, sizeof *agents, render_agent, req, "agents", res);
    if (!arr)
        return HTTP_DONE;
    http_json(res, 200, json_pack("{s:o}", "agents", arr));
    return HTTP_DONE;
}

static enum http_result agent_get(struct request *req, struct response *res)
{
    struct store_agent a;
    int rc = store_agent_get(req->srv->store, req->id, &a);

    if (rc < 0)
        return http_id_error(req, res, rc, "agent", "not found");
    http_json(res, 200, api_agent_json(&a, req->now_ms, req->srv->cfg.heartbeat_s));
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */

static json_t *render_session(const void *s, const struct request *req)
{
    (void)req;
    return api_session_json(s);
}

static enum http_result sessions_list(struct request *req, struct response *res)
{
    struct store_session_filter f = {0};
    int64_t limit, offset, from, to, total = 0;
    struct store_session *sessions = NULL;
    size_t n = 0;

    if (qp_string(req, res, "app", STORE_APP_MAX, &f.app) < 0 ||
        qp_string(req, res, "instance", STORE_INSTANCE_MAX, &f.instance) < 0 ||
        query_enum(req, res, "triggered_by", triggered_by_values,
                   "profile-now, cpu-trigger, memory-trigger, default-sampling, load-test",
                   &f.triggered_by) < 0 ||
        qp_int(req, res, "from", 0, TIME_MS_MAX, 0, &from) < 0 ||
        qp_int(req, res, "to", 0, TIME_MS_MAX, 0, &to) < 0 ||
        qp_int(req, res, "limit", 1, SESSIONS_LIMIT_MAX, SESSIONS_LIMIT_DEFAULT, &limit) < 0 ||
        qp_int(req, res, "offset", 0, SESSIONS_OFFSET_MAX, 0, &offset) < 0)
        return HTTP_DONE;
    /* 0 is the store's "open end"; an explicit to=0 would select nothing
     * anyway, so it is refused with the range below rather than reversed. */
    if (http_query(req, "to") && (to == 0 || (from && from >= to))) {
        http_error(res, 400, "query parameter 'to' must be greater than 'from' (%lld)",
                   (long long)from);
        return HTTP_DONE;
    }
    f.from_ms = from;
    f.to_ms = to;
    f.limit = (size_t)limit;
    f.offset = (size_t)offset;

    int rc = store_session_list(req->srv->store, &f, &sessions, &n, &total);
    if (rc < 0) {
        http_store_error(res, req->srv->store, rc, NULL);
        return HTTP_DONE;
    }
    json_t *arr = list_json(sessions, n, sizeof *sessions, render_session, req, "sessions", res);
    if (!arr)
        return HTTP_DONE;
    http_json(res, 200,
              json_pack("{s:o,s:I,s:I,s:I}", "sessions", arr, "total", (json_int_t)total,
                        "limit", (json_int_t)limit, "offset", (json_int_t)offset));
    return HTTP_DONE;
}

static enum http_result session_get(struct request *req, struct response *res)
{
    struct store_session s;
    int rc = store_session_get(req->srv->store, req->id, &s);

    if (rc < 0)
        return http_id_error(req, res, rc, "session", "not found");
    http_json(res, 200, api_session_json(&s));
    return HTTP_DONE;
}

static enum http_result session_profile(struct request *req, struct response *res)
{
    struct store_session s;
    void *buf = NULL;
    size_t len = 0;

    /* The session first: "unknown session" and "no profile yet" are both
     * 404 but say different things to whoever is waiting for an upload. */
    int rc = store_session_get(req->srv->store, req->id, &s);
    if (rc < 0)
        return http_id_error(req, res, rc, "session", "not found");
    rc = store_profile_get(req->srv->store, req->id, &buf, &len);
    if (rc < 0)
        return http_id_error(req, res, rc, "session", "has no profile");
    http_bytes_take(res, 200, "application/octet-stream", buf, len);
    snprintf(res->header_name, sizeof res->header_name, "Content-Disposition");
    snprintf(res->header_value, sizeof res->header_value,
             "attachment; filename=\"session-%lld.pb.gz\"", (long long)req->id);
    return HTTP_DONE;
}

const struct route api_session_routes[] = {
    {"GET", "/api/v1/agents", ROLES_READ, 0, agents_list},
    {"GET", "/api/v1/agents/{id}", ROLES_READ, 0, agent_get},
    {"GET", "/api/v1/sessions", ROLES_READ, 0, sessions_list},
    {"GET", "/api/v1/sessions/{id}", ROLES_READ, 0, session_get},
    {"GET", "/api/v1/sessions/{id}/profile", ROLES_READ, 0, session_profile},
    /* /api/v1/sessions/{id}/flamegraph|top|collapsed: api_view.c */
    {NULL, NULL, 0, 0, NULL},
};
