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
 * Uploads are the one place where large untrusted input arrives: the body
 * is bounded by --max-upload-mb, inflated (pprof_gunzip) into a buffer
 * bounded by --max-profile-mb (a gzip bomb is 413 after at most that much
 * work), and decoded and validated by pprof_decode before anything is
 * stored; the flame tree (views.h) is computed at ingest so that merged
 * views never re-parse an upload.  Profile and tree go to the store in one
 * transaction with the session's completion.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/pprof.h"
#include "server/api.h"
#include "server/views.h"

/* Profiles with more sample types than this, or longer type or unit
 * names, are refused: real ones have 1-4 short ones, and the list is
 * echoed in the answer and kept with the session. */
#define UPLOAD_MAX_SAMPLE_TYPES 64
#define UPLOAD_MAX_TYPE_NAME 127


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

/* The request's JSON object, holding no field outside allowed; NULL with
 * res set (400). */
static json_t *body_with(const struct request *req, struct response *res,
                         const char *const *allowed)
{
    json_t *body = http_body_object(req, res);
    if (body && jv_only(res, body, allowed) != 0) {
        json_decref(body);
        return NULL;
    }
    return body;
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
    json_t *body = body_with(req, res, allowed);
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
    json_t *body = body_with(req, res, allowed);
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
    json_t *body = body_with(req, res, allowed);
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
    int64_t id, cursor, version, timeout;
    if (qp_int(req, res, "agent_id", 0, INT64_MAX, 0, &id) != 0 ||
        qp_int(req, res, "cursor", 0, INT64_MAX, 0, &cursor) != 0 ||
        qp_int(req, res, "settings_version", 0, INT64_MAX, 0, &version) != 0 ||
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
    ps->deadline_ms = req->now_ms + timeout * 1000;
    ps->seen_ms = req->now_ms;
    snprintf(ps->app, sizeof ps->app, "%s", a.app);
    return ps;
}

static enum http_result poll_answer(struct server *srv, const struct poll_state *ps,
                                    const struct store_profile_now *rs, size_t n,
                                    int64_t version, struct response *res)
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
    json_t *out = json_pack("{s:I,s:I,s:o,s:o}", "cursor", (json_int_t)cursor,
                            "settings_version", (json_int_t)version, "profile_now", list,
                            "settings", settings);
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

    /* The version is read before the requests: a change that lands
     * between the two reads is then seen at the next poll, not lost. */
    int64_t version = 0;
    struct store_profile_now *rs = NULL;
    size_t n = 0;
    int rc = store_settings_version(srv->store, &version);
    if (rc == 0)
        rc = store_profile_now_since(srv->store, ps->cursor, ps->app, req->now_ms, &rs, &n);
    if (rc != 0)
        return store_failed(srv, res, rc);
    if (n > 0 || version != ps->settings_version || req->timed_out ||
        req->now_ms >= ps->deadline_ms) {
        enum http_result r = poll_answer(srv, ps, rs, n, version, res);
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
    json_t *body = body_with(req, res, allowed);
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
    json_t *body = body_with(req, res, allowed);
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

/* Gzips a raw upload so that what is stored (and downloaded) is always
 * gzipped pprof.  0 or -ENOMEM. */
static int gzip_bytes(const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    size_t cap = deflateBound(&zs, len) + 32;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return -ENOMEM;
    }
    /* len is at most cfg.max_upload, far below 4 GiB in practice; feed in
     * uInt-sized chunks anyway. */
    size_t consumed = 0;
    int zr;
    zs.next_out = buf;
    zs.avail_out = cap > UINT_MAX ? UINT_MAX : (uInt)cap;
    do {
        size_t chunk = len - consumed < (1u << 30) ? len - consumed : (1u << 30);
        zs.next_in = (Bytef *)(in + consumed);
        zs.avail_in = (uInt)chunk;
        consumed += chunk;
        zr = deflate(&zs, consumed == len ? Z_FINISH : Z_NO_FLUSH);
    } while (zr == Z_OK && consumed < len);
    while (zr == Z_OK)
        zr = deflate(&zs, Z_FINISH);
    *outlen = zs.total_out;
    deflateEnd(&zs);
    if (zr != Z_STREAM_END) {
        free(buf);
        return -ENOMEM;
    }
    *out = buf;
    return 0;
}

/* What an accepted upload tells: sample count and "type/unit" list. */
struct upload_summary {
    int64_t samples;
    json_t *types;  /* ["samples/count", …] */
    char *joined;   /* "samples/count,cpu/nanoseconds" */
};

/* The sample count is the sum of the first "count" sample type (pprof's
 * convention for the number of events a sample stands for), else the
 * number of samples.  0, -EINVAL (400 on res) or -ENOMEM. */
static int summarize(const struct pprof_profile *p, struct upload_summary *sum,
                     struct response *res)
{
    const Perftools__Profiles__Profile *pb = p->pb;
    if (pb->n_sample_type > UPLOAD_MAX_SAMPLE_TYPES) {
        http_error(res, 400, "corrupt profile: %zu sample types (at most %d)",
                   pb->n_sample_type, UPLOAD_MAX_SAMPLE_TYPES);
        return -EINVAL;
    }
    size_t joined_cap = pb->n_sample_type * (2 * UPLOAD_MAX_TYPE_NAME + 2) + 1;
    sum->joined = malloc(joined_cap);
    sum->types = json_array();
    if (!sum->joined || !sum->types)
        return -ENOMEM;
    sum->joined[0] = '\0';
    size_t jlen = 0;
    int count_index = -1;
    for (size_t i = 0; i < pb->n_sample_type; i++) {
        const char *type = pprof_string(p, pb->sample_type[i]->type);
        const char *unit = pprof_string(p, pb->sample_type[i]->unit);
        if (strlen(type) > UPLOAD_MAX_TYPE_NAME || strlen(unit) > UPLOAD_MAX_TYPE_NAME) {
            http_error(res, 400, "corrupt profile: sample type %zu has a name over %d bytes",
                       i, UPLOAD_MAX_TYPE_NAME);
            return -EINVAL;
        }
        char one[2 * UPLOAD_MAX_TYPE_NAME + 2];
        snprintf(one, sizeof one, "%s/%s", type, unit);
        if (json_array_append_new(sum->types, json_string(one)) != 0)
            return -ENOMEM;
        jlen += (size_t)snprintf(sum->joined + jlen, joined_cap - jlen, "%s%s", i ? "," : "",
                                 one);
        if (count_index < 0 && strcmp(unit, "count") == 0)
            count_index = (int)i;
    }
    if (count_index < 0) {
        sum->samples = pb->n_sample > INT64_MAX ? INT64_MAX : (int64_t)pb->n_sample;
        return 0;
    }
    /* Saturating: values come from outside. */
    int64_t total = 0;
    for (size_t i = 0; i < pb->n_sample; i++) {
        int64_t v = pb->sample[i]->value[count_index];
        if (v > 0)
            total = v > INT64_MAX - total ? INT64_MAX : total + v;
    }
    sum->samples = total;
    return 0;
}

static enum http_result profile_upload(struct request *req, struct response *res)
{
    struct server *srv = req->srv;
    size_t max_profile_mb = srv->cfg.max_profile >> 20;
    /* The body is at most cfg.max_upload: the route says HTTP_BODY_UPLOAD
     * and http.c answered 413 past it. */
    if (req->body_len == 0) {
        http_error(res, 400, "empty body: expected a gzipped pprof profile");
        return HTTP_DONE;
    }
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

    char err[256] = "";
    uint8_t *raw = NULL, *gz = NULL, *blob = NULL;
    size_t raw_len = 0, gz_len = 0, blob_len = 0;
    struct pprof_profile *p = NULL;
    struct upload_summary sum = {0};
    int gzipped = req->body_len >= 2 && req->body[0] == 0x1f && req->body[1] == 0x8b;

    if (gzipped) {
        rc = pprof_gunzip(req->body, req->body_len, srv->cfg.max_profile, &raw, &raw_len, err,
                          sizeof err);
        if (rc == -EFBIG)
            http_error(res, 413, "profile decompresses past %zu MiB", max_profile_mb);
        else if (rc == -EINVAL)
            http_error(res, 400, "corrupt profile upload: %s", err);
        else if (rc != 0)
            http_error(res, 500, "out of memory decompressing the profile");
        if (rc != 0)
            goto out;
    } else if (req->body_len > srv->cfg.max_profile) {
        http_error(res, 413, "profile decompresses past %zu MiB", max_profile_mb);
        goto out;
    }

    rc = pprof_decode(gzipped ? raw : req->body, gzipped ? raw_len : req->body_len, &p, err,
                      sizeof err);
    if (rc != 0) {
        if (rc == -ENOMEM)
            http_error(res, 500, "out of memory decoding the profile");
        else
            http_error(res, 400, "corrupt profile: %s", err);
        goto out;
    }
    rc = summarize(p, &sum, res);
    if (rc == -ENOMEM)
        http_error(res, 500, "out of memory");
    if (rc != 0)
        goto out;
    rc = flame_tree_build(p, &blob, &blob_len, err, sizeof err);
    if (rc != 0) {
        if (rc == -E2BIG)
            http_error(res, 413, "profile too large to index: %s", err);
        else if (rc == -ENOMEM)
            http_error(res, 500, "out of memory indexing the profile");
        else
            http_error(res, 400, "corrupt profile: %s", err);
        goto out;
    }
    if (!gzipped && (rc = gzip_bytes(req->body, req->body_len, &gz, &gz_len)) != 0) {
        http_error(res, 500, "out of memory compressing the profile");
        goto out;
    }

    struct store_profile sp = {
        .session_id = req->id,
        .pprof = gzipped ? (const void *)req->body : gz,
        .pprof_len = gzipped ? req->body_len : gz_len,
        .tree = blob,
        .tree_len = blob_len,
        .samples = sum.samples,
        .sample_types = sum.joined,
        .now_ms = req->now_ms,
    };
    rc = store_profile_put(srv->store, &sp);
    if (rc == -EEXIST) {
        http_error(res, 409, "session %lld already has a profile", (long long)req->id);
    } else if (rc != 0) {
        session_failed(srv, res, req->id, rc);
    } else {
        json_t *o = json_pack("{s:I,s:I,s:I,s:O}", "session_id", (json_int_t)req->id, "bytes",
                              (json_int_t)sp.pprof_len, "samples", (json_int_t)sum.samples,
                              "sample_types", sum.types);
        if (o)
            http_json(res, 201, o);
        else
            http_error(res, 500, "out of memory (the profile is stored)");
    }

out:
    pprof_profile_free(p);
    free(raw);
    free(gz);
    free(blob);
    free(sum.joined);
    json_decref(sum.types);
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
