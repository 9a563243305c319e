/*
 * api_agent.c — the agents' side of sonded (docs/agent-protocol.md):
 * register, heartbeat, long-poll for work, stop, sessions and profile
 * uploads, all under /api/v1/agent/ for tokens of role agent.
 *
 * Learning of work is a long-poll.  A poll answers at once when there is
 * a Profile Now request the agent has not seen (id above its cursor, for
 * its app or for every app, not expired) or when its settings version is
 * behind the store's; else it returns HTTP_WAIT and http.c parks the
 * connection without holding a thread.  http.c calls the handler again
 * when server_notify() is called (a new request or a settings change on
 * this server), every HTTP_REPOLL_MS (a write by another server sharing
 * the store) and at the poll's deadline; each call re-checks the store.
 * So a Profile Now reaches a polling agent within milliseconds here and
 * within HTTP_REPOLL_MS from another server.  The agent's app is read
 * once and kept in req->state between calls.
 *
 * Active profiling tasks ride on the same poll: the agent passes the
 * tasks_version it has, and a poll answers at once, with the app's
 * running tasks, when the store's task version differs (a task created,
 * cancelled, expired or full).  Every call of a poll first lets the store
 * expire tasks whose end passed — a suspended poll is called again at
 * least every HTTP_REPOLL_MS — so an expiry reaches agents within a
 * second even without the server's tick.  Each task sent to an agent is
 * recorded as delivered to it (the task log's "delivered" line), once.
 *
 * Uploads go through ingest.c (bounded inflate, validation, flame tree),
 * shared with capture snapshots; a session profile's trace ids are
 * indexed in the same transaction as the profile (store_profile.traces),
 * for GET /api/v1/traces/{trace_id}.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"

/* Tasks listed in one poll answer (the agent's TASK_MAX). */
#define POLL_MAX_TASKS 16


static const char *const triggered_by_kinds[] = {
    "profile-now", "cpu-trigger", "memory-trigger", "default-sampling", "load-test", NULL,
};

static const char *const profile_type_names[] = {"cpu", "wall", NULL};

static const char *const session_states[] = {"running", "completed", "failed", NULL};

static int one_of(const char *s, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(s, *names) == 0)
            return 1;
    return 0;
}

/* Replies with store error rc; what a handler then returns. */
static enum http_result store_failed(struct server *srv, struct response *res, int rc)
{
    http_store_error(res, srv->store, rc, NULL);
    return HTTP_DONE;
}

/* Replies with session id's store error rc (404 for -ENOENT). */
static enum http_result session_failed(struct server *srv, struct response *res, int64_t id,
                                       int rc)
{
    if (rc != -ENOENT)
        return store_failed(srv, res, rc);
    http_error(res, 404, "session %lld not found", (long long)id);
    return HTTP_DONE;
}

/* Replies out (NULL: building it ran out of memory, a 500). */
static enum http_result reply(struct response *res, int status, json_t *out)
{
    if (!out)
        http_error(res, 500, "out of memory");
    else
        http_json(res, status, out);
    return HTTP_DONE;
}

/* The optional cpu_pct and mem_pct fields (-1 when absent). */
static int jv_load(struct response *res, json_t *body, double *cpu, double *mem)
{
    int rc = jv_number(res, body, "cpu_pct", 0, 100000, 0, -1, cpu);
    return rc == 0 ? jv_number(res, body, "mem_pct", 0, 100, 0, -1, mem) : rc;
}

/* The poll timeout an agent is told: polls count as heartbeats, so a
 * poll must end within one heartbeat interval to keep its agent running. */
static int poll_timeout_s(const struct server *srv)
{
    int t = srv->cfg.heartbeat_s;
    return t < 1 ? 1 : t > 60 ? 60 : t;
}

/* The agent named by the body's or the query's agent_id, which must be
 * known (404) and not stopped (409 unless allow_stopped).  0 or -1 with
 * res set. */
static int load_agent(struct server *srv, int64_t id, int allow_stopped, struct store_agent *a,
                      struct response *res)
{
    int rc = store_agent_get(srv->store, id, a);
    if (rc == -ENOENT) {
        http_error(res, 404, "agent %lld not found (register again)", (long long)id);
        return -1;
    }
    if (rc != 0) {
        store_failed(srv, res, rc);
        return -1;
    }
    if (a->stopped_ms && !allow_stopped) {
        http_error(res, 409, "agent %lld has stopped (register again)", (long long)id);
        return -1;
    }
    return 0;
}

/* {"triggers": {…}, "default_sampling": {…}} in effect for app; NULL
 * with res set. */
static json_t *effective_settings(struct server *srv, const char *app, struct response *res)
{
    json_t *trig = settings_triggers(srv, app, res);
    if (!trig)
        return NULL;
    json_t *samp = settings_default_sampling(srv, app, res);
    if (!samp) {
        json_decref(trig);
        return NULL;
    }
    json_t *doc = json_pack("{s:o,s:o}", "triggers", trig, "default_sampling", samp);
    if (!doc)
        http_error(res, 500, "out of memory");
    return doc;
}

/* ------------------------------------------------------------------ */
/* Register, heartbeat, stop                                           */

static enum http_result agent_register(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"app",     "instance", "pid", "agent_version",
                                          "cmdline", "started_ms", NULL};
    struct server *srv = req->srv;
    json_t *body = http_body_only(req, res, allowed);
    if (!body)
        return HTTP_DONE;

    struct store_agent a = {
        .registered_ms = req->now_ms,
        .last_seen_ms = req->now_ms,
        .cpu_pct = -1,
        .mem_pct = -1,
    };
    const char *app, *instance, *version, *cmdline = "";
    json_t *cmd = json_object_get(body, "cmdline");
    int rc = jv_string(res, body, "app", STORE_APP_MAX, 1, NULL, &app);
    if (rc == 0)
        rc = jv_string(res, body, "instance", STORE_INSTANCE_MAX, 1, NULL, &instance);
    if (rc == 0)
        rc = jv_int(res, body, "pid", 1, 4194304, 1, 0, &a.pid);
    if (rc == 0)
        rc = jv_string(res, body, "agent_version", STORE_VERSION_MAX, 1, NULL, &version);
    /* An empty command line is allowed (0..1023 bytes), which jv_string
     * (1..) is not. */
    if (rc == 0 && !(json_is_string(cmd) && json_string_length(cmd) == 0))
        rc = jv_string(res, body, "cmdline", STORE_CMDLINE_MAX, 0, "", &cmdline);
    if (rc == 0)
        rc = jv_int(res, body, "started_ms", 0, INT64_MAX, 0, req->now_ms, &a.started_ms);
    if (rc != 0) {
        json_decref(body);
        return HTTP_DONE;
    }
    snprintf(a.app, sizeof a.app, "%s", app);
    snprintf(a.instance, sizeof a.instance, "%s", instance);
    snprintf(a.agent_version, sizeof a.agent_version, "%s", version);
    snprintf(a.cmdline, sizeof a.cmdline, "%s", cmdline ? cmdline : "");
    json_decref(body);

    /* The cursor is read before the agent exists: a request made between
     * the two is then delivered (once) rather than missed. */
    int64_t cursor = 0, version_now = 0;
    rc = store_profile_now_last_id(srv->store, &cursor);
    if (rc == 0)
        rc = store_settings_version(srv->store, &version_now);
    if (rc == 0)
        rc = store_agent_register(srv->store, &a);
    if (rc != 0)
        return store_failed(srv, res, rc);
    json_t *settings = effective_settings(srv, a.app, res);
    if (!settings)
        return HTTP_DONE;
    json_t *out = json_pack("{s:I,s:i,s:i,s:I,s:I,s:o}", "agent_id", (json_int_t)a.id,
                            "heartbeat_s", srv->cfg.heartbeat_s, "poll_timeout_s",
                            poll_timeout_s(srv), "cursor", (json_int_t)cursor,
                            "settings_version", (json_int_t)version_now, "settings", settings);
    return reply(res, 201, out);
}

static enum http_result agent_heartbeat(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"agent_id", "cpu_pct", "mem_pct", "dropped_uploads",
                                          NULL};
    struct server *srv = req->srv;
    json_t *body = http_body_only(req, res, allowed);
    if (!body)
        return HTTP_DONE;
    int64_t id, dropped;
    double cpu, mem;
    int rc = jv_int(res, body, "agent_id", 1, INT64_MAX, 1, 0, &id);
    if (rc == 0)
        rc = jv_load(res, body, &cpu, &mem);
    /* The agent's running total of dropped profiles; absent: unchanged. */
    if (rc == 0)
        rc = jv_int(res, body, "dropped_uploads", 0, INT64_MAX, 0, -1, &dropped);
    json_decref(body);
    if (rc != 0)
        return HTTP_DONE;

    struct store_agent a;
    if (load_agent(srv, id, 0, &a, res) != 0)
        return HTTP_DONE;
    int64_t version = 0;
    rc = store_agent_heartbeat(srv->store, id, req->now_ms, cpu, mem, dropped);
    if (rc == 0)
        rc = store_settings_version(srv->store, &version);
    if (rc != 0)
        return store_failed(srv, res, rc);
    a.last_seen_ms = req->now_ms;
    json_t *out = json_pack("{s:s,s:I}", "status",
                            agent_status(&a, req->now_ms, srv->cfg.heartbeat_s),
                            "settings_version", (json_int_t)version);
    return reply(res, 200, out);
}

static enum http_result agent_stop(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"agent_id", NULL};
    struct server *srv = req->srv;
    json_t *body = http_body_only(req, res, allowed);
    if (!body)
        return HTTP_DONE;
    int64_t id;
    int rc = jv_int(res, body, "agent_id", 1, INT64_MAX, 1, 0, &id);
    json_decref(body);
    if (rc != 0)
        return HTTP_DONE;

    struct store_agent a;
    if (load_agent(srv, id, 1, &a, res) != 0)
        return HTTP_DONE;
    /* A repeated stop (a retry after a lost answer) keeps the first time. */
    if (!a.stopped_ms && (rc = store_agent_stop(srv->store, id, req->now_ms)) != 0)
        return store_failed(srv, res, rc);
    http_json(res, 200, json_pack("{s:s}", "status", "stopped"));
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Poll                                                                */

/* Kept between the calls of one long-poll (freed by http.c). */
struct poll_state {
    int64_t agent_id;
    int64_t cursor;           /* the agent's: requests above it are new */
    int64_t settings_version; /* the agent's */
    int64_t tasks_version;    /* the agent's */
    int64_t deadline_ms;      /* answer empty at this time */
    int64_t seen_ms;          /* last heartbeat written for this poll */
    char app[STORE_APP_MAX];
};

/* A waiting poll keeps its agent "running": it is written as seen again
 * after half a heartbeat interval, not at every wake-up. */
static void poll_keepalive(struct server *srv, struct poll_state *ps, int64_t now_ms)
{
    int64_t every = (int64_t)srv->cfg.heartbeat_s * 500;
    if (now_ms - ps->seen_ms < (every < 500 ? 500 : every))
        return;
    if (store_agent_heartbeat(srv->store, ps->agent_id, now_ms, -1, -1, -1) == 0)
        ps->seen_ms = now_ms;
}

/* First call of a poll: parameters, agent, heartbeat.  The state, or
 * NULL with res set. */
static struct poll_state *poll_begin(struct request *req, struct response *res)
{
    struct server *srv = req->srv;
    int64_t id, cursor, version, tasks_version, timeout;
    if (qp_int(req, res, "agent_id", 0, INT64_MAX, 0, &id) != 0 ||
        qp_int(req, res, "cursor", 0, INT64_MAX, 0, &cursor) != 0 ||
        qp_int(req, res, "settings_version", 0, INT64_MAX, 0, &version) != 0 ||
        qp_int(req, res, "tasks_version", 0, INT64_MAX, 0, &tasks_version) != 0 ||
        qp_int(req, res, "timeout_s", 1, 60, poll_timeout_s(srv), &timeout) != 0)
        return NULL;
    if (id < 1) {
        http_error(res, 400, "query parameter 'agent_id' is required (an integer >= 1)");
        return NULL;
    }
    struct store_agent a;
    if (load_agent(srv, id, 0, &a, res) != 0)
        return NULL;
    int rc = store_agent_heartbeat(srv->store, id, req->now_ms, -1, -1, -1);
    if (rc != 0) {
        store_failed(srv, res, rc);
        return NULL;
    }
    struct poll_state *ps = calloc(1, sizeof *ps);
    if (!ps) {
        http_error(res, 500, "out of memory");
        return NULL;
    }
    ps->agent_id = id;
    ps->cursor = cursor;
    ps->settings_version = version;
    ps->tasks_version = tasks_version;
    ps->deadline_ms = req->now_ms + timeout * 1000;
    ps->seen_ms = req->now_ms;
    snprintf(ps->app, sizeof ps->app, "%s", a.app);
    return ps;
}

/* The app's running tasks as an agent gets them (oldest first, at most
 * POLL_MAX_TASKS), each recorded as delivered to the agent the first
 * time.  NULL with res set. */
static json_t *poll_tasks(struct server *srv, const struct poll_state *ps, int64_t now_ms,
                          struct response *res)
{
    struct store_task *ts = NULL;
    size_t n = 0;
    int rc = store_task_active(srv->store, ps->app, now_ms, &ts, &n);
    if (rc != 0) {
        store_failed(srv, res, rc);
        return NULL;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < n && i < POLL_MAX_TASKS; i++) {
        const struct store_task *t = &ts[i];
        rc = store_task_deliver(srv->store, t->id, ps->agent_id, now_ms);
        /* -EEXIST: delivered before.  -ENOENT: the task was purged
         * meanwhile; the agent learns it at the next version.  Anything
         * else is only logged: the agent must still get its list. */
        if (rc < 0 && rc != -EEXIST && rc != -ENOENT)
            fprintf(stderr, "sonded: task %lld delivery to agent %lld: %s\n", (long long)t->id,
                    (long long)ps->agent_id, store_errmsg(srv->store));
        json_t *o = json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:I}", "id", (json_int_t)t->id,
                              "interface", t->interface, "threshold_ms",
                              (json_int_t)t->threshold_ms, "frequency_ms",
                              (json_int_t)t->frequency_ms, "max_samples",
                              (json_int_t)t->max_samples, "captures", (json_int_t)t->captures,
                              "ends_ms", (json_int_t)t->ends_ms);
        if (json_array_append_new(list, o) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    free(ts);
    if (!list)
        http_error(res, 500, "out of memory");
    return list;
}

static enum http_result poll_answer(struct server *srv, const struct poll_state *ps,
                                    const struct store_profile_now *rs, size_t n,
                                    int64_t version, int64_t tasks_version, int64_t now_ms,
                                    struct response *res)
{
    int64_t cursor = ps->cursor;
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        if (rs[i].id > cursor)
            cursor = rs[i].id;
        if (json_array_append_new(list, api_profile_now_json(&rs[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    if (!list) {
        http_error(res, 500, "out of memory");
        return HTTP_DONE;
    }
    json_t *settings = json_null();
    if (version != ps->settings_version &&
        !(settings = effective_settings(srv, ps->app, res))) {
        json_decref(list);
        return HTTP_DONE;
    }
    json_t *tasks = json_null();
    if (tasks_version != ps->tasks_version && !(tasks = poll_tasks(srv, ps, now_ms, res))) {
        json_decref(list);
        json_decref(settings);
        return HTTP_DONE;
    }
    json_t *out = json_pack("{s:I,s:I,s:o,s:o,s:I,s:o}", "cursor", (json_int_t)cursor,
                            "settings_version", (json_int_t)version, "profile_now", list,
                            "settings", settings, "tasks_version", (json_int_t)tasks_version,
                            "tasks", tasks);
    return reply(res, 200, out);
}

static enum http_result agent_poll(struct request *req, struct response *res)
{
    struct server *srv = req->srv;
    struct poll_state *ps = req->state;
    if (!ps) {
        if (!(ps = poll_begin(req, res)))
            return HTTP_DONE;
        req->state = ps;
    } else {
        poll_keepalive(srv, ps, req->now_ms);
    }

    /* Tasks whose end passed expire now, so that this answer (and every
     * other poll, woken when one did) has them gone.  A failure is only
     * logged: the tick and the next call retry. */
    api_task_expire(srv, req->now_ms);

    /* The versions are read before the requests and tasks: a change that
     * lands between the reads is then seen at the next poll, not lost. */
    int64_t version = 0, tasks_version = 0;
    struct store_profile_now *rs = NULL;
    size_t n = 0;
    int rc = store_settings_version(srv->store, &version);
    if (rc == 0)
        rc = store_task_version(srv->store, &tasks_version);
    if (rc == 0)
        rc = store_profile_now_since(srv->store, ps->cursor, ps->app, req->now_ms, &rs, &n);
    if (rc != 0)
        return store_failed(srv, res, rc);
    if (n > 0 || version != ps->settings_version || tasks_version != ps->tasks_version ||
        req->timed_out || req->now_ms >= ps->deadline_ms) {
        enum http_result r =
            poll_answer(srv, ps, rs, n, version, tasks_version, req->now_ms, res);
        free(rs);
        return r;
    }
    free(rs);
    req->wait_until_ms = ps->deadline_ms;
    return HTTP_WAIT;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */

/* profile_types: 1..4 distinct names of profile_type_names, joined with
 * ',' into out.  0 or -EINVAL with a 400. */
static int parse_profile_types(json_t *body, char *out, size_t outlen, struct response *res)
{
    json_t *arr = json_object_get(body, "profile_types");
    size_t n = json_array_size(arr);
    int ok = json_is_array(arr) && n >= 1 && n <= 4;
    out[0] = '\0';
    for (size_t i = 0; ok && i < n; i++) {
        json_t *v = json_array_get(arr, i);
        const char *name = json_string_value(v);
        ok = name && one_of(name, profile_type_names);
        for (size_t j = 0; ok && j < i; j++)
            ok = strcmp(name, json_string_value(json_array_get(arr, j))) != 0;
        if (ok)
            snprintf(out + strlen(out), outlen - strlen(out), "%s%s", i ? "," : "", name);
    }
    if (!ok) {
        http_error(res, 400,
                   "field 'profile_types' must be an array of 1..4 distinct names among: cpu, "
                   "wall");
        return -EINVAL;
    }
    return 0;
}

static enum http_result session_create(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"agent_id", "triggered_by", "request_id",
                                          "profile_types", "start_ms", "duration_s", NULL};
    struct server *srv = req->srv;
    json_t *body = http_body_only(req, res, allowed);
    if (!body)
        return HTTP_DONE;

    struct store_session s = {
        .cpu_pct = -1,
        .mem_pct = -1,
        .created_ms = req->now_ms,
        .updated_ms = req->now_ms,
    };
    int64_t duration_s = 0;
    const char *kind = NULL;
    int rc = jv_int(res, body, "agent_id", 1, INT64_MAX, 1, 0, &s.agent_id);
    if (rc == 0)
        rc = jv_string(res, body, "triggered_by", STORE_KIND_MAX, 1, NULL, &kind);
    if (rc == 0 && !one_of(kind, triggered_by_kinds)) {
        http_error(res, 400,
                   "field 'triggered_by' must be one of profile-now, cpu-trigger, "
                   "memory-trigger, default-sampling, load-test");
        rc = -EINVAL;
    }
    if (rc == 0)
        rc = jv_int(res, body, "request_id", 1, INT64_MAX, 0, 0, &s.request_id);
    if (rc == 0)
        rc = parse_profile_types(body, s.profile_types, sizeof s.profile_types, res);
    if (rc == 0)
        rc = jv_int(res, body, "start_ms", 0, INT64_MAX, 0, req->now_ms, &s.start_ms);
    if (rc == 0)
        rc = jv_int(res, body, "duration_s", 1, 86400, 1, 0, &duration_s);
    if (rc == 0)
        snprintf(s.triggered_by, sizeof s.triggered_by, "%s", kind);
    json_decref(body);
    if (rc != 0)
        return HTTP_DONE;

    struct store_agent a;
    if (load_agent(srv, s.agent_id, 0, &a, res) != 0)
        return HTTP_DONE;
    snprintf(s.app, sizeof s.app, "%s", a.app);
    snprintf(s.instance, sizeof s.instance, "%s", a.instance);
    snprintf(s.state, sizeof s.state, "running");
    s.pid = a.pid;
    s.duration_ms = duration_s * 1000;
    /* A Profile Now request made by a load test (profile during test):
     * its sessions are the test's, whatever the agent calls them. */
    struct store_profile_now pn;
    if (s.request_id > 0 && store_profile_now_get(srv->store, s.request_id, &pn) == 0 &&
        pn.triggered_by[0])
        snprintf(s.triggered_by, sizeof s.triggered_by, "%s", pn.triggered_by);
    rc = store_session_create(srv->store, &s);
    if (rc != 0)
        return store_failed(srv, res, rc);
    http_json(res, 201, api_session_json(&s));
    return HTTP_DONE;
}

static enum http_result session_patch(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"state",   "duration_s", "samples", "traces",
                                          "cpu_pct", "mem_pct",    NULL};
    struct server *srv = req->srv;
    json_t *body = http_body_only(req, res, allowed);
    if (!body)
        return HTTP_DONE;

    struct store_session s;
    int64_t duration_s = 0;
    const char *state = NULL;
    int rc = jv_string(res, body, "state", STORE_KIND_MAX, 0, NULL, &state);
    if (rc == 0 && state && !one_of(state, session_states)) {
        http_error(res, 400, "field 'state' must be one of running, completed, failed");
        rc = -EINVAL;
    }
    if (rc == 0)
        rc = jv_int(res, body, "duration_s", 1, 86400, 0, 0, &duration_s);
    /* Validate the whole body before reading the session: a 400 must not
     * depend on what is stored. */
    int64_t samples, traces;
    double cpu, mem;
    if (rc == 0)
        rc = jv_int(res, body, "samples", 0, INT64_MAX, 0, -1, &samples);
    if (rc == 0)
        rc = jv_int(res, body, "traces", 0, INT64_MAX, 0, -1, &traces);
    if (rc == 0)
        rc = jv_load(res, body, &cpu, &mem);
    if (rc == 0 && (rc = store_session_get(srv->store, req->id, &s)) != 0)
        session_failed(srv, res, req->id, rc);
    if (rc != 0) {
        json_decref(body);
        return HTTP_DONE;
    }
    if (state)
        snprintf(s.state, sizeof s.state, "%s", state);
    json_decref(body); /* state was borrowed from it */
    if (duration_s > 0)
        s.duration_ms = duration_s * 1000;
    if (samples >= 0)
        s.samples = samples;
    if (traces >= 0)
        s.traces = traces;
    if (cpu >= 0)
        s.cpu_pct = cpu;
    if (mem >= 0)
        s.mem_pct = mem;
    s.updated_ms = req->now_ms;
    rc = store_session_update(srv->store, &s);
    if (rc != 0)
        return session_failed(srv, res, req->id, rc);
    http_json(res, 200, api_session_json(&s));
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Upload                                                              */

static enum http_result profile_upload(struct request *req, struct response *res)
{
    struct server *srv = req->srv;
    struct ingest in;
    struct store_trace_span *traces = NULL;
    size_t ntraces = 0;

    /* Cheap refusals first: no inflating for a session that cannot take
     * the profile.  The store checks again in its transaction. */
    struct store_session s;
    int rc = store_session_get(srv->store, req->id, &s);
    if (rc != 0)
        return session_failed(srv, res, req->id, rc);
    if (s.profile_bytes > 0) {
        http_error(res, 409, "session %lld already has a profile", (long long)req->id);
        return HTTP_DONE;
    }
    if (ingest_upload(srv, req, &in, res) < 0)
        return HTTP_DONE;
    if (ingest_traces(in.profile, &traces, &ntraces) < 0) {
        http_error(res, 500, "out of memory indexing the profile's traces");
        ingest_free(&in);
        return HTTP_DONE;
    }

    struct store_profile sp = {
        .session_id = req->id,
        .pprof = in.pprof,
        .pprof_len = in.pprof_len,
        .tree = in.tree,
        .tree_len = in.tree_len,
        .samples = in.samples,
        .sample_types = in.sample_types,
        .now_ms = req->now_ms,
        .traces = traces,
        .ntraces = ntraces,
    };
    rc = store_profile_put(srv->store, &sp);
    if (rc == -EEXIST) {
        http_error(res, 409, "session %lld already has a profile", (long long)req->id);
    } else if (rc != 0) {
        session_failed(srv, res, req->id, rc);
    } else {
        json_t *o = json_pack("{s:I,s:I,s:I,s:O}", "session_id", (json_int_t)req->id, "bytes",
                              (json_int_t)sp.pprof_len, "samples", (json_int_t)in.samples,
                              "sample_types", in.types);
        if (o)
            http_json(res, 201, o);
        else
            http_error(res, 500, "out of memory (the profile is stored)");
    }
    free(traces);
    ingest_free(&in);
    return HTTP_DONE;
}

const struct route api_agent_routes[] = {
    {"POST", "/api/v1/agent/register", ROLES_AGENT, 0, agent_register},
    {"POST", "/api/v1/agent/heartbeat", ROLES_AGENT, 0, agent_heartbeat},
    {"GET", "/api/v1/agent/poll", ROLES_AGENT, 0, agent_poll},
    {"POST", "/api/v1/agent/stop", ROLES_AGENT, 0, agent_stop},
    {"POST", "/api/v1/agent/sessions", ROLES_AGENT, 0, session_create},
    {"PATCH", "/api/v1/agent/sessions/{id}", ROLES_AGENT, 0, session_patch},
    {"PUT", "/api/v1/agent/sessions/{id}/profile", ROLES_AGENT, HTTP_BODY_UPLOAD,
     profile_upload},
    {NULL, NULL, 0, 0, NULL},
};
