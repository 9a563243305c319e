/*
 * api_task.c — active profiling tasks, the people's side (docs/api.md,
 * "Active profiling"): create (writer), list by time range, one task with
 * its agents, cancel (writer), the task's log and its captures (reader).
 *
 * A task watches one interface of one app for duration_min task minutes
 * (server_config.task_minute_ms each, 60000 unless --task-minute-ms
 * shortens it for tests); agents learn of it through their poll
 * (api_agent.c) and report through api_agent_task.c.  Whatever changes
 * the task list agents must watch (create, cancel) wakes the polls
 * (server_notify), so a task reaches polling agents in milliseconds.
 *
 * Expiry is lazy as well as periodic: every read here first lets the
 * store expire the tasks whose end has passed (api_task_expire, which the
 * agents' side and the background tick of main.c call too), so a reader
 * never sees "running" for a task that is over, whatever the tick has
 * done yet.
 *
 * Refusals name the field and its range in the words of the design
 * ("threshold_ms must be an integer from 50 to 30000"), and a body is
 * validated completely before anything is stored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"
#include "server/http.h"
#include "server/store.h"

/* Largest time accepted in a filter (9999-12-31T23:59:59.999Z, in ms),
 * as for sessions. */
#define TIME_MS_MAX INT64_C(253402300799999)
#define TASKS_LIMIT_MAX 1000
#define TASKS_LIMIT_DEFAULT 100

static const char *const task_states[] = {"running", "limit-reached", "expired", "cancelled",
                                          NULL};

/* ------------------------------------------------------------------ */
/* Shared                                                              */

void api_task_expire(struct server *srv, int64_t now_ms)
{
    int64_t n = 0;
    if (store_task_expire(srv->store, now_ms, &n) < 0)
        fprintf(stderr, "sonded: task expiry: %s\n", store_errmsg(srv->store));
    else if (n > 0)
        server_notify(srv);
}

/* The task of the request's {id} into *t; -1 with 404/500 on res. */
static int load_task(struct request *req, struct response *res, struct store_task *t)
{
    int rc = store_task_get(req->srv->store, req->id, t);
    if (rc < 0) {
        http_id_error(req, res, rc, "task", "not found");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Create                                                              */

/* obj[field]: an integer in [min, max]; absent → def unless required. */
static int task_int(struct response *res, json_t *obj, const char *field, int64_t min,
                    int64_t max, int required, int64_t def, int64_t *out)
{
    json_t *v = json_object_get(obj, field);
    if (!v && !required) {
        *out = def;
        return 0;
    }
    if (!v) {
        http_error(res, 400, "%s is required: an integer from %lld to %lld", field,
                   (long long)min, (long long)max);
        return -EINVAL;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        http_error(res, 400, "%s must be an integer from %lld to %lld", field, (long long)min,
                   (long long)max);
        return -EINVAL;
    }
    *out = json_integer_value(v);
    return 0;
}

/* obj[field]: a required string of 1..maxlen-1 bytes of printable
 * UTF-8, copied into out (maxlen bytes). */
static int task_text(struct response *res, json_t *obj, const char *field, size_t maxlen,
                     char *out)
{
    json_t *v = json_object_get(obj, field);
    size_t len = json_string_length(v);
    if (!v) {
        http_error(res, 400, "%s is required: a string of 1 to %zu bytes", field, maxlen - 1);
        return -EINVAL;
    }
    if (!json_is_string(v) || len == 0 || len >= maxlen) {
        http_error(res, 400, "%s must be a string of 1 to %zu bytes", field, maxlen - 1);
        return -EINVAL;
    }
    if (!jv_printable(json_string_value(v), len)) {
        http_error(res, 400, "%s must be printable text (UTF-8, no control characters)", field);
        return -EINVAL;
    }
    memcpy(out, json_string_value(v), len + 1);
    return 0;
}

static enum http_result task_create(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"app",          "interface",    "duration_min",
                                          "threshold_ms", "frequency_ms", "max_samples",
                                          NULL};
    struct server *srv = req->srv;
    struct store_task t = {.token_id = req->token.id, .created_ms = req->now_ms};
    json_t *body = http_body_only(req, res, allowed);
    if (!body)
        return HTTP_DONE;

    int rc = task_text(res, body, "app", STORE_APP_MAX, t.app);
    if (rc == 0)
        rc = task_text(res, body, "interface", STORE_INTERFACE_MAX, t.interface);
    if (rc == 0) {
        json_t *d = json_object_get(body, "duration_min");
        json_int_t v = json_is_integer(d) ? json_integer_value(d) : 0;
        if (!d) {
            http_error(res, 400, "duration_min is required: 5, 10 or 15");
            rc = -EINVAL;
        } else if (v != 5 && v != 10 && v != 15) {
            http_error(res, 400, "duration_min must be 5, 10 or 15");
            rc = -EINVAL;
        }
        t.duration_min = v;
    }
    if (rc == 0)
        rc = task_int(res, body, "threshold_ms", 50, 30000, 1, 0, &t.threshold_ms);
    if (rc == 0)
        rc = task_int(res, body, "frequency_ms", 5, 1000, 0, 100, &t.frequency_ms);
    if (rc == 0)
        rc = task_int(res, body, "max_samples", 1, 100, 0, 10, &t.max_samples);
    json_decref(body);
    if (rc != 0)
        return HTTP_DONE;

    snprintf(t.creator, sizeof t.creator, "%s", req->token.name);
    t.ends_ms = t.created_ms + t.duration_min * (int64_t)srv->cfg.task_minute_ms;
    rc = store_task_create(srv->store, &t);
    if (rc < 0) {
        http_store_error(res, srv->store, rc, NULL);
        return HTTP_DONE;
    }
    /* The agents of the app are waiting in their polls: tell them now. */
    server_notify(srv);
    http_json(res, 201, api_task_json(&t));
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* List, one task                                                      */

static enum http_result tasks_list(struct request *req, struct response *res)
{
    struct store_task_filter f = {0};
    int64_t from, to, limit;
    const char *state = NULL;

    if (qp_string(req, res, "app", STORE_APP_MAX, &f.app) < 0 ||
        qp_string(req, res, "state", STORE_KIND_MAX, &state) < 0 ||
        qp_int(req, res, "from", 0, TIME_MS_MAX, 0, &from) < 0 ||
        qp_int(req, res, "to", 0, TIME_MS_MAX, 0, &to) < 0 ||
        qp_int(req, res, "limit", 1, TASKS_LIMIT_MAX, TASKS_LIMIT_DEFAULT, &limit) < 0)
        return HTTP_DONE;
    if (state && *state) {
        size_t i = 0;
        while (task_states[i] && strcmp(task_states[i], state) != 0)
            i++;
        if (!task_states[i]) {
            http_error(res, 400,
                       "query parameter 'state' must be one of running, limit-reached, "
                       "expired, cancelled");
            return HTTP_DONE;
        }
        f.state = task_states[i];
    }
    /* 0 is the store's "open end": an explicit to=0 is refused rather
     * than read as "no bound". */
    if (http_query(req, "to") && (to == 0 || (http_query(req, "from") && from >= to))) {
        http_error(res, 400, "query parameter 'to' must be greater than 'from' (%lld)",
                   (long long)from);
        return HTTP_DONE;
    }
    f.from_ms = from;
    f.to_ms = to;
    f.limit = (size_t)limit;

    api_task_expire(req->srv, req->now_ms);
    struct store_task *tasks = NULL;
    size_t n = 0;
    int rc = store_task_list(req->srv->store, &f, &tasks, &n);
    if (rc < 0) {
        http_store_error(res, req->srv->store, rc, NULL);
        return HTTP_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, api_task_json(&tasks[i])) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(tasks);
    http_json(res, 200, arr ? json_pack("{s:o}", "tasks", arr) : NULL);
    return HTTP_DONE;
}

static enum http_result task_get(struct request *req, struct response *res)
{
    struct store_task t;
    struct store_task_agent *agents = NULL;
    size_t n = 0;

    api_task_expire(req->srv, req->now_ms);
    if (load_task(req, res, &t) < 0)
        return HTTP_DONE;
    int rc = store_task_agents(req->srv->store, req->id, &agents, &n);
    if (rc < 0) {
        http_store_error(res, req->srv->store, rc, NULL);
        return HTTP_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, api_task_agent_json(&agents[i])) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(agents);
    http_json(res, 200, api_json_with(api_task_json(&t), "agents", arr));
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Cancel                                                              */

static enum http_result task_cancel(struct request *req, struct response *res)
{
    static const char *const allowed[] = {NULL};
    struct server *srv = req->srv;
    struct store_task t;

    /* No body, or an empty object. */
    if (req->body_len > 0) {
        json_t *body = http_body_only(req, res, allowed);
        if (!body)
            return HTTP_DONE;
        json_decref(body);
    }
    /* A task whose time is up has expired, whether or not the tick has
     * said so yet: it is not cancelled then. */
    api_task_expire(req->srv, req->now_ms);
    char who[STORE_NAME_MAX + 32];
    snprintf(who, sizeof who, "%s (token %lld)", req->token.name, (long long)req->token.id);
    int rc = store_task_cancel(srv->store, req->id, req->now_ms, who);
    if (rc == -EEXIST) {
        if (load_task(req, res, &t) == 0)
            http_error(res, 409, "task %lld has already ended (%s)", (long long)req->id,
                       t.state);
        return HTTP_DONE;
    }
    if (rc < 0)
        return http_id_error(req, res, rc, "task", "not found");
    server_notify(srv);
    if (load_task(req, res, &t) < 0)
        return HTTP_DONE;
    http_json(res, 200, api_task_json(&t));
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Log                                                                 */

/* Who an agent id of the log is: from the task's agents, else the agent
 * itself (a refused claim of an agent the task never reached), else
 * unknown (purged).  *found 0 when unknown. */
struct who {
    int64_t agent_id;
    int found;
    char instance[STORE_INSTANCE_MAX];
    int64_t pid;
};

static void who_is(struct request *req, const struct store_task_agent *agents, size_t n,
                   int64_t agent_id, struct who *w)
{
    if (w->agent_id == agent_id)
        return; /* the line before was the same agent's */
    w->agent_id = agent_id;
    w->found = 0;
    for (size_t i = 0; i < n; i++) {
        if (agents[i].agent_id == agent_id) {
            snprintf(w->instance, sizeof w->instance, "%s", agents[i].instance);
            w->pid = agents[i].pid;
            w->found = 1;
            return;
        }
    }
    struct store_agent a;
    if (store_agent_get(req->srv->store, agent_id, &a) == 0) {
        snprintf(w->instance, sizeof w->instance, "%s", a.instance);
        w->pid = a.pid;
        w->found = 1;
    }
}

static json_t *log_json(const struct store_task_log *l, const struct who *w)
{
    int known = l->agent_id > 0 && w->found;
    return json_pack("{s:I,s:I,s:s,s:o,s:o,s:o,s:s}", "id", (json_int_t)l->id, "ts_ms",
                     (json_int_t)l->ts_ms, "event", l->event, "agent_id",
                     l->agent_id > 0 ? json_integer(l->agent_id) : json_null(), "instance",
                     known ? json_string(w->instance) : json_null(), "pid",
                     known ? json_integer(w->pid) : json_null(), "message", l->message);
}

static enum http_result task_logs(struct request *req, struct response *res)
{
    struct store *st = req->srv->store;
    struct store_task_log *logs = NULL;
    struct store_task_agent *agents = NULL;
    size_t n = 0, nagents = 0;

    api_task_expire(req->srv, req->now_ms);
    int rc = store_task_logs(st, req->id, &logs, &n);
    if (rc == 0)
        rc = store_task_agents(st, req->id, &agents, &nagents);
    if (rc < 0) {
        free(logs);
        return http_id_error(req, res, rc, "task", "not found");
    }
    struct who w = {.agent_id = 0};
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (logs[i].agent_id > 0)
            who_is(req, agents, nagents, logs[i].agent_id, &w);
        if (json_array_append_new(arr, log_json(&logs[i], &w)) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(logs);
    free(agents);
    http_json(res, 200,
              arr ? json_pack("{s:I,s:o}", "task_id", (json_int_t)req->id, "logs", arr) : NULL);
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Captures                                                            */

/* The sort keys of the captures table; compare() orders by one, then by
 * slot so that equal keys keep a stable order. */
enum capture_key { BY_SLOT, BY_START, BY_TOTAL, BY_CODE, BY_TRACE, BY_PEER, BY_INTERFACE };

static const char *const capture_keys[] = {"slot",    "start_ms", "total_ms",  "response_code",
                                           "trace_id", "peer",    "interface", NULL};

struct capture_order {
    enum capture_key key;
    int desc;
};

static int cmp_i64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

static int compare_captures(const void *pa, const void *pb, void *ctx)
{
    const struct capture_order *o = ctx;
    const struct store_capture *a = pa, *b = pb;
    int c = 0;
    switch (o->key) {
    case BY_SLOT:
        break;
    case BY_START:
        c = cmp_i64(a->start_ms, b->start_ms);
        break;
    case BY_TOTAL:
        c = cmp_i64(a->total_ms, b->total_ms);
        break;
    case BY_CODE:
        c = cmp_i64(a->response_code, b->response_code);
        break;
    case BY_TRACE:
        c = strcmp(a->trace_id, b->trace_id);
        break;
    case BY_PEER:
        c = strcmp(a->peer, b->peer);
        break;
    case BY_INTERFACE:
        c = strcmp(a->interface, b->interface);
        break;
    }
    if (c == 0)
        c = cmp_i64(a->slot, b->slot);
    return o->desc ? -c : c;
}

static enum http_result task_captures(struct request *req, struct response *res)
{
    struct capture_order o = {BY_SLOT, 0};
    const char *sort = NULL, *order = NULL;
    struct store_task t;

    if (qp_string(req, res, "sort", 32, &sort) < 0 || qp_string(req, res, "order", 8, &order) < 0)
        return HTTP_DONE;
    if (sort) {
        size_t i = 0;
        while (capture_keys[i] && strcmp(capture_keys[i], sort) != 0)
            i++;
        if (!capture_keys[i]) {
            http_error(res, 400,
                       "query parameter 'sort' must be one of slot, start_ms, total_ms, "
                       "response_code, trace_id, peer, interface");
            return HTTP_DONE;
        }
        o.key = (enum capture_key)i;
    }
    if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        http_error(res, 400, "query parameter 'order' must be asc or desc");
        return HTTP_DONE;
    }
    o.desc = order && strcmp(order, "desc") == 0;

    api_task_expire(req->srv, req->now_ms);
    if (load_task(req, res, &t) < 0)
        return HTTP_DONE;
    struct store_capture *caps = NULL;
    size_t n = 0;
    int rc = store_capture_list(req->srv->store, req->id, &caps, &n);
    if (rc < 0) {
        http_store_error(res, req->srv->store, rc, NULL);
        return HTTP_DONE;
    }
    if (n > 1)
        qsort_r(caps, n, sizeof *caps, compare_captures, &o);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, api_capture_json(&caps[i])) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(caps);
    http_json(res, 200,
              arr ? json_pack("{s:I,s:o}", "task_id", (json_int_t)req->id, "captures", arr)
                  : NULL);
    return HTTP_DONE;
}

const struct route api_task_routes[] = {
    {"POST", "/api/v1/tasks", ROLES_WRITE, 0, task_create},
    {"GET", "/api/v1/tasks", ROLES_READ, 0, tasks_list},
    {"GET", "/api/v1/tasks/{id}", ROLES_READ, 0, task_get},
    {"POST", "/api/v1/tasks/{id}/cancel", ROLES_WRITE, 0, task_cancel},
    {"GET", "/api/v1/tasks/{id}/logs", ROLES_READ, 0, task_logs},
    {"GET", "/api/v1/tasks/{id}/captures", ROLES_READ, 0, task_captures},
    {NULL, NULL, 0, 0, NULL},
};
