/*
 * api_agent_task.c — active profiling, the agents' side
 * (docs/agent-protocol.md, "7. Active profiling"; role agent): task
 * events, capture claims and snapshot uploads.  Tasks reach agents in
 * their poll (api_agent.c); people create and read them in api_task.c.
 *
 * The limit design (SPEC B2): the server is the arbiter of a task's
 * max_samples.  An agent takes a capture locally (no network on its
 * watcher thread); when the call has ended its uplink *claims a slot*
 * with the capture's metadata, and the store grants slots in one
 * transaction (task running, not past its end, captures < max_samples),
 * so however many agents claim at once, no more than max_samples are
 * granted.  Only a granted capture sends its snapshots.  The claim that
 * takes the last slot turns the task "limit-reached": polls are woken
 * (server_notify) and every agent of the app gets its new task list at
 * once and stops watching.  A refused claim is 409 with the task's state,
 * logged as "refused", and makes that agent stop watching the task at
 * once too.
 *
 * Snapshot uploads go through ingest.c like a session's profile: same
 * limits, same validation, same flame tree.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"
#include "server/http.h"
#include "server/store.h"

/* obj[field]: a string of 0..maxlen-1 bytes of printable UTF-8 (absent:
 * ""), copied into out (maxlen bytes). */
static int text_or_empty(struct response *res, json_t *obj, const char *field, size_t maxlen,
                         char *out)
{
    json_t *v = json_object_get(obj, field);
    out[0] = '\0';
    if (!v)
        return 0;
    size_t len = json_string_length(v);
    if (!json_is_string(v) || len >= maxlen) {
        http_error(res, 400, "field '%s' must be a string of 0..%zu bytes", field, maxlen - 1);
        return -EINVAL;
    }
    if (!jv_printable(json_string_value(v), len)) {
        http_error(res, 400, "field '%s' must be printable text (no control characters)", field);
        return -EINVAL;
    }
    memcpy(out, json_string_value(v), len + 1);
    return 0;
}

/* Task req->id and agent agent_id, both known; -1 with 404/500 on res. */
static int load_task_agent(struct request *req, struct response *res, int64_t agent_id,
                           struct store_task *t, struct store_agent *a)
{
    struct store *st = req->srv->store;
    int rc = store_task_get(st, req->id, t);
    if (rc < 0) {
        http_id_error(req, res, rc, "task", "not found");
        return -1;
    }
    rc = store_agent_get(st, agent_id, a);
    if (rc == -ENOENT) {
        http_error(res, 404, "agent %lld not found (register again)", (long long)agent_id);
        return -1;
    }
    if (rc < 0) {
        http_store_error(res, st, rc, NULL);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Events                                                              */

static enum http_result task_event(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"agent_id", "event", "message", NULL};
    static const char *const events[] = {"started", "stopped", "error", NULL};
    struct store *st = req->srv->store;
    struct store_task t;
    struct store_agent a;
    char message[STORE_MESSAGE_MAX];
    int64_t agent_id;
    const char *event = NULL;

    json_t *body = http_body_only(req, res, allowed);
    if (!body)
        return HTTP_DONE;
    int rc = jv_int(res, body, "agent_id", 1, INT64_MAX, 1, 0, &agent_id);
    if (rc == 0)
        rc = jv_string(res, body, "event", STORE_KIND_MAX, 1, NULL, &event);
    if (rc == 0) {
        size_t i = 0;
        while (events[i] && strcmp(events[i], event) != 0)
            i++;
        if (!events[i]) {
            http_error(res, 400, "field 'event' must be one of started, stopped, error");
            rc = -EINVAL;
        }
        event = events[i];
    }
    if (rc == 0)
        rc = text_or_empty(res, body, "message", STORE_MESSAGE_MAX, message);
    json_decref(body);
    if (rc != 0)
        return HTTP_DONE;

    api_task_expire(req->srv, req->now_ms);
    if (load_task_agent(req, res, agent_id, &t, &a) < 0)
        return HTTP_DONE;
    /* Logged whatever the task's state: a late "stopped" tells the end
     * of the story. */
    rc = store_task_agent_event(st, req->id, agent_id, event, message, req->now_ms);
    if (rc == 0)
        rc = store_task_get(st, req->id, &t);
    if (rc < 0) {
        http_store_error(res, st, rc, NULL);
        return HTTP_DONE;
    }
    http_json(res, 200, json_pack("{s:I,s:s}", "task_id", (json_int_t)t.id, "state", t.state));
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Claims                                                              */

/* 409 {"error", "task_state"} for a refused claim, logged "refused". */
static void claim_refused(struct request *req, struct response *res, const struct store_task *t,
                          const struct store_capture *c, const char *state)
{
    char msg[256], line[STORE_MESSAGE_MAX];
    if (strcmp(state, "limit-reached") == 0)
        snprintf(msg, sizeof msg, "task %lld reached its limit of %lld captures",
                 (long long)t->id, (long long)t->max_samples);
    else
        snprintf(msg, sizeof msg, "task %lld has ended (%s)", (long long)t->id, state);
    snprintf(line, sizeof line, "capture of trace %s (%lld ms) refused: %s", c->trace_id,
             (long long)c->total_ms, msg);
    /* The refusal stands even if the log line cannot be written. */
    if (store_task_log_add(req->srv->store, t->id, c->agent_id, "refused", line, req->now_ms) < 0)
        fprintf(stderr, "sonded: task %lld log: %s\n", (long long)t->id,
                store_errmsg(req->srv->store));
    json_t *o = json_pack("{s:s,s:s}", "error", msg, "task_state", state);
    if (o)
        http_json(res, 409, o);
    else
        http_error(res, 409, "%s", msg);
}

static enum http_result capture_claim(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"agent_id",      "trace_id", "interface",
                                          "start_ms",      "response_code", "peer",
                                          "total_ms",      "snapshots", NULL};
    struct server *srv = req->srv;
    struct store_capture c = {.task_id = req->id};
    struct store_task t;
    struct store_agent a;
    const char *trace = NULL, *iface = NULL;

    json_t *body = http_body_only(req, res, allowed);
    if (!body)
        return HTTP_DONE;
    int rc = jv_int(res, body, "agent_id", 1, INT64_MAX, 1, 0, &c.agent_id);
    if (rc == 0)
        rc = jv_string(res, body, "trace_id", STORE_TRACE_MAX, 1, NULL, &trace);
    if (rc == 0)
        rc = jv_string(res, body, "interface", STORE_INTERFACE_MAX, 1, NULL, &iface);
    if (rc == 0)
        rc = jv_int(res, body, "start_ms", 0, INT64_MAX, 1, 0, &c.start_ms);
    if (rc == 0)
        rc = jv_int(res, body, "response_code", 0, 999, 0, 0, &c.response_code);
    if (rc == 0)
        rc = text_or_empty(res, body, "peer", STORE_PEER_MAX, c.peer);
    if (rc == 0)
        rc = jv_int(res, body, "total_ms", 0, 86400000, 1, 0, &c.total_ms);
    if (rc == 0)
        rc = jv_int(res, body, "snapshots", 0, 1000000, 0, 0, &c.snapshots);
    if (rc == 0) {
        snprintf(c.trace_id, sizeof c.trace_id, "%s", trace);
        snprintf(c.interface, sizeof c.interface, "%s", iface);
    }
    json_decref(body);
    if (rc != 0)
        return HTTP_DONE;

    /* Expired at this very now_ms, so the claim below (which refuses a
     * task past its end at the same now_ms) and the state it reports
     * agree. */
    api_task_expire(req->srv, req->now_ms);
    if (load_task_agent(req, res, c.agent_id, &t, &a) < 0)
        return HTTP_DONE;
    if (strcmp(c.interface, t.interface) != 0) {
        http_error(res, 400, "field 'interface' must be the task's interface '%s'", t.interface);
        return HTTP_DONE;
    }
    if (strcmp(a.app, t.app) != 0) {
        http_error(res, 400, "agent %lld is of app '%s', not of the task's app '%s'",
                   (long long)a.id, a.app, t.app);
        return HTTP_DONE;
    }

    char state[STORE_KIND_MAX] = "";
    rc = store_capture_claim(srv->store, &c, req->now_ms, state);
    if (rc == -EEXIST) {
        claim_refused(req, res, &t, &c, state[0] ? state : t.state);
        return HTTP_DONE;
    }
    if (rc == -ENOENT) {
        http_error(res, 404, "task %lld or agent %lld not found", (long long)req->id,
                   (long long)c.agent_id);
        return HTTP_DONE;
    }
    if (rc < 0) {
        http_store_error(res, srv->store, rc, NULL);
        return HTTP_DONE;
    }
    /* The last slot: every agent of the app must stop watching now. */
    if (strcmp(state, "running") != 0)
        server_notify(srv);
    http_json(res, 201,
              json_pack("{s:I,s:I,s:s}", "capture_id", (json_int_t)c.id, "slot",
                        (json_int_t)c.slot, "task_state", state));
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Snapshots                                                           */

static enum http_result snapshots_upload(struct request *req, struct response *res)
{
    struct server *srv = req->srv;
    struct store_capture c;
    struct ingest in;

    /* Cheap refusals first: nothing is inflated for a capture that cannot
     * take snapshots.  The store checks again in its transaction. */
    int rc = store_capture_get(srv->store, req->id, &c);
    if (rc < 0)
        return http_id_error(req, res, rc, "capture", "not found");
    if (c.profile_bytes > 0) {
        http_error(res, 409, "capture %lld already has its snapshots", (long long)req->id);
        return HTTP_DONE;
    }
    if (ingest_upload(srv, req, &in, res) < 0)
        return HTTP_DONE;
    /* One sample per snapshot. */
    int64_t snapshots = (int64_t)in.profile->pb->n_sample;
    rc = store_capture_profile_put(srv->store, req->id, in.pprof, in.pprof_len, in.tree,
                                   in.tree_len, snapshots, req->now_ms);
    if (rc == -EEXIST)
        http_error(res, 409, "capture %lld already has its snapshots", (long long)req->id);
    else if (rc < 0)
        http_id_error(req, res, rc, "capture", "not found");
    else
        http_json(res, 201,
                  json_pack("{s:I,s:I,s:I}", "capture_id", (json_int_t)req->id, "snapshots",
                            (json_int_t)snapshots, "bytes", (json_int_t)in.pprof_len));
    ingest_free(&in);
    return HTTP_DONE;
}

const struct route api_agent_task_routes[] = {
    {"POST", "/api/v1/agent/tasks/{id}/events", ROLES_AGENT, 0, task_event},
    {"POST", "/api/v1/agent/tasks/{id}/captures", ROLES_AGENT, 0, capture_claim},
    {"PUT", "/api/v1/agent/captures/{id}/snapshots", ROLES_AGENT, HTTP_BODY_UPLOAD,
     snapshots_upload},
    {NULL, NULL, 0, 0, NULL},
};
