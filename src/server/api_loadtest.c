/*
 * api_loadtest.c — load tests as a resource (docs/api.md, "Load tests";
 * SPEC A6, issue 7): create (writer), list and view (reader), cancel
 * (writer).  The runner that runs them is loadtest.c; the store keeps
 * the queue, the request and the results.
 *
 * Creating is where the safety of the feature lives: a server that sends
 * requests where it is told is a weapon.  So the whole body is checked
 * first (every field, with a message naming it), then the request is
 * built exactly as the runner will build it (loadgen_new: it parses the
 * URL and resolves the host), and the resolved target is checked against
 * sonded --loadtest-allow — 403 naming the host, its address and the
 * list — before anything is stored.  The runner checks again before the
 * test runs (a name may resolve elsewhere by then).
 *
 * Cancelling a running test is a request to its runner (which may be on
 * another server sharing the store): the handler marks it, wakes the
 * runners and long-polls (HTTP_WAIT) up to CANCEL_WAIT_MS for the end,
 * so that the answer is normally the ended test with its results; 202
 * when the end did not come in time.
 *
 * A test's JSON is rendered here, in one function for every answer;
 * the list shows each test with its results summary (the document
 * without its per-second series), one test shows the whole document and
 * the sessions profiled during it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/loadgen.h"
#include "server/api.h"
#include "server/http.h"
#include "server/loadtest.h"
#include "server/store.h"

#define LOADTESTS_LIMIT_DEFAULT 50
#define LOADTESTS_LIMIT_MAX 1000
#define CANCEL_WAIT_MS 5000
/* The create request's body: a request body field of up to
 * LOADGEN_BODY_MAX bytes, escaped in JSON, and its headers. */
#define LOADTEST_POST_MAX ((size_t)8 << 20)
#define SESSIONS_MAX 1000 /* sessions shown with one test */
#define ABANDONED_MSG "server stopped during the test"

static const char *const loadtest_states[] = {"queued", "in progress", "completed", "failed",
                                              "cancelled", NULL};

/* Wakes this server's runners (a test was queued, or a cancel came).
 * main.c sets srv->loadtest_runner after the HTTP layer starts and
 * clears it before stopping the runners: read atomically; a pointer read
 * just before the stop is harmless (loadtest.c). */
static void wake_runners(struct server *srv)
{
    loadtest_runner_wake(__atomic_load_n(&srv->loadtest_runner, __ATOMIC_ACQUIRE));
}

/* ------------------------------------------------------------------ */
/* Rendering                                                           */

static json_t *opt_int(int64_t v)
{
    return v ? json_integer(v) : json_null();
}

/* The test's object; steals headers and result (either may be NULL:
 * {} and null). */
static json_t *loadtest_json(const struct store_loadtest *t, json_t *headers, json_t *result)
{
    json_t *creator = json_pack("{s:o,s:s}", "token_id", opt_int(t->token_id), "name",
                                t->creator);
    return json_pack(
        "{s:I,s:s,s:s,s:o,s:I,s:I,s:I,s:o,s:I,s:o,s:o,s:s,s:b,s:o,s:o,s:I,s:o,s:o,s:I,s:I,s:o}",
        "id", (json_int_t)t->id, "url", t->url, "method", t->method, "headers",
        headers ? headers : json_object(), "body_bytes", (json_int_t)t->body_bytes, "users",
        (json_int_t)t->users, "duration_s", (json_int_t)t->duration_s, "rate",
        t->rate > 0 ? json_real(t->rate) : json_null(), "timeout_ms", (json_int_t)t->timeout_ms,
        "profile_app", t->profile_app[0] ? json_string(t->profile_app) : json_null(),
        "profile_now_id", opt_int(t->profile_now_id), "state", t->state, "cancel_requested",
        t->cancel_requested, "error", t->error[0] ? json_string(t->error) : json_null(),
        "creator", creator, "created_ms", (json_int_t)t->created_ms, "started_ms",
        opt_int(t->started_ms), "ended_ms", opt_int(t->ended_ms), "requests",
        (json_int_t)t->requests, "errors", (json_int_t)t->errors, "result",
        result ? result : json_null());
}

/* The stored headers document of t, parsed ({} when unreadable as an
 * object: it was checked when stored).  NULL with res set on a store
 * error. */
static json_t *stored_headers(struct server *srv, const struct store_loadtest *t,
                              struct response *res)
{
    char *doc = NULL;
    int rc = store_loadtest_request(srv->store, t->id, &doc, NULL, NULL);
    if (rc < 0) {
        http_store_error(res, srv->store, rc, NULL);
        return NULL;
    }
    json_t *h = json_loads(doc, 0, NULL);
    free(doc);
    if (!json_is_object(h)) {
        json_decref(h);
        h = json_object();
    }
    return h;
}

/* The stored results document (without "seconds" unless with_seconds),
 * json_null() when none yet.  NULL with res set on a store error. */
static json_t *stored_result(struct server *srv, const struct store_loadtest *t,
                             int with_seconds, struct response *res)
{
    char *doc = NULL;
    int rc = store_loadtest_result(srv->store, t->id, &doc);
    if (rc == -ENOENT)
        return json_null();
    if (rc < 0) {
        http_store_error(res, srv->store, rc, NULL);
        return NULL;
    }
    json_t *r = json_loads(doc, 0, NULL);
    free(doc);
    if (!r)
        return json_null();
    if (!with_seconds)
        json_object_del(r, "seconds");
    return r;
}

/* The sessions of the test's Profile Now request, [] when none. */
static json_t *test_sessions(struct server *srv, const struct store_loadtest *t,
                             struct response *res)
{
    json_t *arr = json_array();
    if (!arr || t->profile_now_id == 0)
        return arr;
    struct store_session_filter f = {.request_id = t->profile_now_id, .limit = SESSIONS_MAX};
    struct store_session *ss = NULL;
    size_t n = 0;
    int64_t total = 0;
    int rc = store_session_list(srv->store, &f, &ss, &n, &total);
    if (rc < 0) {
        json_decref(arr);
        http_store_error(res, srv->store, rc, NULL);
        return NULL;
    }
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, api_session_json(&ss[i])) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(ss);
    return arr;
}

/* t as the API shows it: detail 1 with the whole results document and
 * the sessions, 0 with the summary (list items).  NULL with res set. */
static json_t *render(struct server *srv, const struct store_loadtest *t, int detail,
                      struct response *res)
{
    json_t *headers = stored_headers(srv, t, res);
    if (!headers)
        return NULL;
    json_t *result = stored_result(srv, t, detail, res);
    if (!result) {
        json_decref(headers);
        return NULL;
    }
    json_t *out = loadtest_json(t, headers, result);
    if (out && detail) {
        json_t *sessions = test_sessions(srv, t, res);
        if (!sessions) {
            json_decref(out);
            return NULL;
        }
        out = api_json_with(out, "sessions", sessions);
    }
    if (!out)
        http_error(res, 500, "out of memory");
    return out;
}

/* Answers status with t rendered in detail. */
static enum http_result answer(struct request *req, struct response *res, int status,
                               const struct store_loadtest *t)
{
    json_t *out = render(req->srv, t, 1, res);
    if (out)
        http_json(res, status, out);
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Create                                                              */

/* method: 1..15 uppercase letters. */
static int method_ok(const char *m)
{
    size_t n = strlen(m);
    if (n < 1 || n > 15)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (m[i] < 'A' || m[i] > 'Z')
            return 0;
    return 1;
}

static enum http_result loadtest_create(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"url",  "method",     "headers",    "body",
                                          "users", "duration_s", "rate",       "timeout_ms",
                                          "profile_app", NULL};
    struct server *srv = req->srv;
    struct store_loadtest t = {.token_id = req->token.id, .created_ms = req->now_ms};
    char *lines[LOADGEN_HEADERS_MAX] = {NULL};
    size_t n_lines = 0;
    char *headers_doc = NULL;
    struct loadgen *lg = NULL;
    const char *url = NULL, *method = NULL, *profile_app = NULL;
    const char *payload = NULL;
    size_t payload_len = 0;
    json_t *body = http_body_only(req, res, allowed);
    if (!body)
        return HTTP_DONE;

    int rc = jv_string(res, body, "url", LOADGEN_URL_MAX + 1, 1, NULL, &url);
    if (rc == 0)
        rc = jv_string(res, body, "method", STORE_METHOD_MAX, 0, "GET", &method);
    if (rc == 0 && !method_ok(method)) {
        http_error(res, 400, "field 'method' must be 1..15 uppercase letters (GET, POST, …)");
        rc = -EINVAL;
    }
    char err[512];
    if (rc == 0) {
        rc = loadtest_header_lines(json_object_get(body, "headers"), lines, &n_lines, err,
                                   sizeof err);
        if (rc < 0)
            http_error(res, rc == -ENOMEM ? 500 : 400, "%s", err);
    }
    if (rc == 0) {
        json_t *b = json_object_get(body, "body");
        if (b && !json_is_string(b)) {
            http_error(res, 400, "field 'body' must be a string (the request body, UTF-8)");
            rc = -EINVAL;
        } else if (b && json_string_length(b) > LOADGEN_BODY_MAX) {
            http_error(res, 400, "field 'body' must be at most %zu bytes", LOADGEN_BODY_MAX);
            rc = -EINVAL;
        } else if (b) {
            payload = json_string_value(b);
            payload_len = json_string_length(b);
        }
    }
    if (rc == 0)
        rc = jv_int(res, body, "users", 1, LOADGEN_USERS_MAX, 0, 10, &t.users);
    if (rc == 0)
        rc = jv_int(res, body, "duration_s", 1, LOADGEN_DURATION_MAX_MS / 1000, 0, 60,
                    &t.duration_s);
    if (rc == 0) {
        json_t *r = json_object_get(body, "rate");
        double v = json_is_number(r) ? json_number_value(r) : -1;
        if (r && !(v >= 0 && v <= LOADGEN_RATE_MAX)) {
            http_error(res, 400,
                       "field 'rate' must be a number of requests/s in 0..%.0f (0: as fast "
                       "as the users go)",
                       LOADGEN_RATE_MAX);
            rc = -EINVAL;
        }
        t.rate = r ? v : 0;
    }
    if (rc == 0)
        rc = jv_int(res, body, "timeout_ms", 1, 600000, 0, 10000, &t.timeout_ms);
    if (rc == 0)
        rc = jv_string(res, body, "profile_app", STORE_APP_MAX, 0, NULL, &profile_app);
    if (rc != 0)
        goto done;

    /* Built as the runner will build it: the URL parsed, the host
     * resolved, every bound checked again. */
    struct loadgen_spec spec = {
        .url = url,
        .method = method,
        .headers = (const char *const *)lines,
        .n_headers = n_lines,
        .body = payload,
        .body_len = payload_len,
        .users = (int)t.users,
        .duration_ms = t.duration_s * 1000,
        .rate = t.rate,
        .timeout_ms = (int)t.timeout_ms,
    };
    rc = loadgen_new(&spec, &lg, err, sizeof err);
    if (rc == -EINVAL || rc == -ENOTSUP || rc == -EHOSTUNREACH) {
        http_error(res, 400, "%s", err);
        goto done;
    }
    if (rc < 0) {
        http_error(res, 500, "%s", err);
        goto done;
    }
    rc = loadtest_target_check(srv->loadtest_allow, lg, err, sizeof err);
    if (rc < 0) {
        http_error(res, 403, "%s", err);
        goto done;
    }

    snprintf(t.url, sizeof t.url, "%s", url);
    snprintf(t.method, sizeof t.method, "%s", method);
    snprintf(t.profile_app, sizeof t.profile_app, "%s", profile_app ? profile_app : "");
    snprintf(t.creator, sizeof t.creator, "%s", req->token.name);
    t.n_headers = (int64_t)n_lines;
    json_t *h = json_object_get(body, "headers");
    headers_doc = h ? json_dumps(h, JSON_COMPACT) : strdup("{}");
    if (!headers_doc) {
        http_error(res, 500, "out of memory");
        goto done;
    }
    rc = store_loadtest_create(srv->store, &t, headers_doc, payload, payload_len,
                               srv->cfg.loadtest_queue);
    if (rc < 0) {
        http_store_error(res, srv->store, rc, NULL);
        goto done;
    }
    wake_runners(srv);
    json_t *out = loadtest_json(&t, h ? json_deep_copy(h) : json_object(), NULL);
    http_json(res, 201, api_json_with(out, "sessions", json_array()));

done:
    loadgen_free(lg);
    free(headers_doc);
    for (size_t i = 0; i < n_lines; i++)
        free(lines[i]);
    json_decref(body);
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* List, one test                                                      */

static enum http_result loadtests_list(struct request *req, struct response *res)
{
    struct server *srv = req->srv;
    struct store_loadtest_filter f = {0};
    const char *state = NULL;
    int64_t limit, offset;
    if (qp_string(req, res, "state", STORE_KIND_MAX, &state) < 0 ||
        qp_int(req, res, "limit", 1, LOADTESTS_LIMIT_MAX, LOADTESTS_LIMIT_DEFAULT, &limit) < 0 ||
        qp_int(req, res, "offset", 0, INT32_MAX, 0, &offset) < 0)
        return HTTP_DONE;
    if (state && *state) {
        size_t i = 0;
        while (loadtest_states[i] && strcmp(loadtest_states[i], state) != 0)
            i++;
        if (!loadtest_states[i]) {
            http_error(res, 400,
                       "query parameter 'state' must be one of queued, in progress, completed, "
                       "failed, cancelled");
            return HTTP_DONE;
        }
        f.state = loadtest_states[i];
    }
    f.limit = (size_t)limit;
    f.offset = (size_t)offset;

    struct store_loadtest *ts = NULL;
    size_t n = 0;
    int64_t total = 0;
    int rc = store_loadtest_list(srv->store, &f, &ts, &n, &total);
    if (rc < 0) {
        http_store_error(res, srv->store, rc, NULL);
        return HTTP_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *o = render(srv, &ts[i], 0, res);
        if (!o || json_array_append_new(arr, o) < 0) {
            free(ts);
            json_decref(arr);
            if (o)
                http_error(res, 500, "out of memory");
            return HTTP_DONE;
        }
    }
    free(ts);
    http_json(res, 200,
              arr ? json_pack("{s:o,s:I,s:I,s:I}", "loadtests", arr, "total", (json_int_t)total,
                              "limit", (json_int_t)limit, "offset", (json_int_t)offset)
                  : NULL);
    return HTTP_DONE;
}

static enum http_result loadtest_get(struct request *req, struct response *res)
{
    struct store_loadtest t;
    int rc = store_loadtest_get(req->srv->store, req->id, &t);
    if (rc < 0)
        return http_id_error(req, res, rc, "load test", "not found");
    return answer(req, res, 200, &t);
}

/* ------------------------------------------------------------------ */
/* Cancel                                                              */

static int ended(const struct store_loadtest *t)
{
    return strcmp(t->state, "queued") != 0 && strcmp(t->state, "in progress") != 0;
}

static enum http_result loadtest_cancel(struct request *req, struct response *res)
{
    static const char *const allowed[] = {NULL};
    struct server *srv = req->srv;
    struct store_loadtest t;

    if (req->calls > 1) {
        /* Called back: by server_notify (a test ended), a repoll, or the
         * deadline. */
        int rc = store_loadtest_get(srv->store, req->id, &t);
        if (rc < 0)
            return http_id_error(req, res, rc, "load test", "not found");
        if (ended(&t))
            return answer(req, res, 200, &t);
        if (req->timed_out)
            return answer(req, res, 202, &t);
        return HTTP_WAIT;
    }

    /* No body, or an empty object. */
    if (req->body_len > 0) {
        json_t *body = http_body_only(req, res, allowed);
        if (!body)
            return HTTP_DONE;
        json_decref(body);
    }
    int rc = store_loadtest_cancel(srv->store, req->id, req->now_ms, &t);
    if (rc == -EEXIST) {
        http_error(res, 409, "load test %" PRId64 " has already ended (%s)", req->id, t.state);
        return HTTP_DONE;
    }
    if (rc < 0)
        return http_id_error(req, res, rc, "load test", "not found");
    if (ended(&t)) /* it was queued: cancelled at once */
        return answer(req, res, 200, &t);
    /* In progress: its runner ends it within about a second (its next
     * progress call, or at once when it runs here and is woken). */
    wake_runners(srv);
    req->wait_until_ms = req->now_ms + CANCEL_WAIT_MS;
    return HTTP_WAIT;
}

/* ------------------------------------------------------------------ */
/* Abandoned tests                                                     */

void api_loadtest_abandon(struct server *srv, int64_t now_ms)
{
    /* The store fails every in-progress test started before a cutoff;
     * a test is overdue when it started more than its duration + grace
     * ago.  The cutoff is the latest overdue start + 1, but never past
     * the earliest start of a test that is not overdue: every test
     * before the cutoff is then overdue, and an overdue test behind a
     * live one waits for that one to end (or become overdue). */
    struct store *st = srv->store;
    struct store_loadtest_filter f = {.state = "in progress", .limit = LOADTESTS_LIMIT_MAX};
    int64_t latest_overdue = 0, earliest_live = INT64_MAX, total = 0;
    do {
        struct store_loadtest *ts = NULL;
        size_t n = 0;
        if (store_loadtest_list(st, &f, &ts, &n, &total) < 0) {
            fprintf(stderr, "sonded: load tests: cannot list those in progress: %s\n",
                    store_errmsg(st));
            return;
        }
        for (size_t i = 0; i < n; i++) {
            int64_t end = ts[i].started_ms + ts[i].duration_s * 1000 + LOADTEST_GRACE_MS;
            if (end < now_ms) {
                if (ts[i].started_ms > latest_overdue)
                    latest_overdue = ts[i].started_ms;
            } else if (ts[i].started_ms < earliest_live) {
                earliest_live = ts[i].started_ms;
            }
        }
        free(ts);
        f.offset += n;
        if (n == 0)
            break;
    } while ((int64_t)f.offset < total);
    if (latest_overdue == 0)
        return;
    int64_t cutoff = latest_overdue + 1 < earliest_live ? latest_overdue + 1 : earliest_live;
    int64_t n = 0;
    if (store_loadtest_abandon(st, cutoff, ABANDONED_MSG, now_ms, &n) < 0)
        fprintf(stderr, "sonded: load tests: cannot fail the abandoned ones: %s\n",
                store_errmsg(st));
    else if (n > 0) {
        fprintf(stderr, "sonded: load tests: %" PRId64 " left in progress by a stopped server "
                        "marked failed\n", n);
        server_notify(srv);
    }
}

const struct route api_loadtest_routes[] = {
    {"POST", "/api/v1/loadtests", ROLES_WRITE, LOADTEST_POST_MAX, loadtest_create},
    {"GET", "/api/v1/loadtests", ROLES_READ, 0, loadtests_list},
    {"GET", "/api/v1/loadtests/{id}", ROLES_READ, 0, loadtest_get},
    {"POST", "/api/v1/loadtests/{id}/cancel", ROLES_WRITE, 0, loadtest_cancel},
    {NULL, NULL, 0, 0, NULL},
};
