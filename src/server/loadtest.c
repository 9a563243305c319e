/*
 * loadtest.c — the load-test runner of sonded (loadtest.h, "Runner"):
 * takes queued tests from the store, runs each with the load generator
 * (common/loadgen.h) and keeps the store told of its progress and end.
 *
 * Threads.  --loadtest-parallel N runner threads share one mutex and one
 * condition variable (struct loadtest_runner).  A runner claims a test
 * (store_loadtest_claim: one transaction, so two runners — or two servers
 * sharing the store — never claim the same test) and then runs it with
 * two threads:
 *
 *   - an engine thread, started per test, that only calls loadgen_run and
 *     marks the test's slot done when it returns: the engine blocks for
 *     the whole duration, and no lock is held meanwhile;
 *   - the runner thread itself, which every second (and whenever it is
 *     woken: loadtest_runner_wake after a cancel) takes loadgen_progress,
 *     stores it (store_loadtest_progress: the counts and the results
 *     document without the per-second series) and reads back the test's
 *     cancel_requested flag — set by POST …/cancel on this server or on
 *     another one sharing the store — and then loadgen_cancel()s.
 *
 * Keeping the store on the runner thread means the engine thread never
 * waits on SQLite, and a slow store only delays the progress figures,
 * never the requests being sent.
 *
 * Waking.  `wakes` counts loadtest_runner_wake calls; a thread remembers
 * the count it last saw, so a wake between two waits is never lost.  An
 * idle runner also looks for queued tests every second (tests queued by
 * another server sharing the store).
 *
 * The end.  The final results document (with the per-second series) and
 * the state go to the store in one store_loadtest_finish, then
 * server_notify() wakes the long-polls (a POST …/cancel waiting for the
 * end).  The state is decided in this order: the engine could not run →
 * "failed" with its message; a cancel from a person → "cancelled"; the
 * server stopping → "failed" with "server stopped during the test";
 * else "completed".  (A test the store no longer has in progress —
 * failed meanwhile as abandoned — is stopped and left as it is.)  Before the engine: the stored request is rebuilt
 * into a loadgen_spec and resolved again, and its target checked against
 * the allow list again (a name may resolve elsewhere now) — a refusal or
 * a request that no longer builds fails the test with the message.
 *
 * Stopping.  loadtest_runner_stop sets quit, cancels every engine of
 * this server (loadgen_cancel is safe from any thread, even before
 * loadgen_run), wakes the threads and joins them; each running test ends
 * "failed" as above with its results so far, queued tests stay queued.
 * The runners stop while the HTTP layer still runs (their ends notify
 * it), so a request handler may call loadtest_runner_wake with a pointer
 * it read just before the stop: the live runners are kept in a list
 * under a global mutex, a wake touches only a runner in it, and stop
 * takes the runner out of it before freeing it.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/loadgen.h"
#include "common/loadgen_json.h"
#include "server/clock.h"
#include "server/http.h"
#include "server/loadtest.h"
#include "server/store.h"

#define PROGRESS_MS 1000   /* progress stored this often */
#define IDLE_POLL_MS 1000  /* an idle runner looks for queued tests this often */
#define STOPPED_MSG "server stopped during the test"

/* One runner thread and the test it runs (lg NULL when idle). */
struct slot {
    struct loadtest_runner *r;
    pthread_t thread;
    int started;
    /* under r->lock: */
    struct loadgen *lg;
    int engine_done;
    int stop_cancelled; /* loadgen_cancel called because the server stops */
};

struct loadtest_runner {
    struct loadtest_runner *next; /* in live_runners */
    struct server *srv;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    uint64_t wakes;      /* loadtest_runner_wake calls */
    int quit;
    int n;
    struct slot slots[LOADTEST_PARALLEL_MAX];
};

/* The runners started and not yet stopped (see the top). */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct loadtest_runner *live_runners;

/* Waits on r->cond until the monotonic time deadline_ms (or a signal). */
static void wait_until(struct loadtest_runner *r, int64_t deadline_ms)
{
    cond_wait_ms(&r->cond, &r->lock, deadline_ms - mono_ms());
}

/* ------------------------------------------------------------------ */
/* One test                                                            */

/* The stored request as a loadgen spec. */
struct built {
    struct loadgen_spec spec;
    char *lines[LOADGEN_HEADERS_MAX];
    size_t n_lines;
    char *headers_json;
    void *body;
};

static void built_free(struct built *b)
{
    for (size_t i = 0; i < b->n_lines; i++)
        free(b->lines[i]);
    free(b->headers_json);
    free(b->body);
}

/* 0, or -1 with a message in err. */
static int build_spec(struct store *st, const struct store_loadtest *t, struct built *b,
                      char *err, size_t errlen)
{
    size_t body_len = 0;
    memset(b, 0, sizeof *b);
    int rc = store_loadtest_request(st, t->id, &b->headers_json, &b->body, &body_len);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read the test's request: %s", store_errmsg(st));
        return -1;
    }
    json_t *h = json_loads(b->headers_json, 0, NULL);
    char why[400];
    rc = h ? loadtest_header_lines(h, b->lines, &b->n_lines, why, sizeof why) : -EINVAL;
    json_decref(h);
    if (rc < 0) {
        snprintf(err, errlen, "the stored request's headers: %s",
                 h ? why : "not JSON");
        return -1;
    }
    b->spec = (struct loadgen_spec){
        .url = t->url,
        .method = t->method,
        .headers = (const char *const *)b->lines,
        .n_headers = b->n_lines,
        .body = b->body,
        .body_len = body_len,
        .users = (int)t->users,
        .duration_ms = t->duration_s * 1000,
        .rate = t->rate,
        .timeout_ms = (int)t->timeout_ms,
    };
    return 0;
}

/* A header name for a message: itself when short printable text. */
static const char *shown(const char *name)
{
    size_t n = strlen(name);
    return n <= 64 && jv_printable(name, n) ? name : "(unprintable)";
}

int loadtest_header_lines(json_t *h, char **lines, size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (!h)
        return 0;
    if (!json_is_object(h)) {
        snprintf(err, errlen, "field 'headers' must be an object of header names to string "
                              "values ({\"Accept\": \"text/html\"})");
        return -EINVAL;
    }
    if (json_object_size(h) > LOADGEN_HEADERS_MAX) {
        snprintf(err, errlen, "field 'headers' must have at most %d headers",
                 LOADGEN_HEADERS_MAX);
        return -EINVAL;
    }
    const char *name;
    json_t *v;
    json_object_foreach(h, name, v) {
        size_t nl = strlen(name);
        const char *owned = loadgen_header_owned(name, nl);
        if (nl == 0 || loadgen_header_name_len(name) != nl) {
            snprintf(err, errlen,
                     "field 'headers': '%s' is not a header name (letters, digits and "
                     "!#$%%&'*+-.^_`|~)",
                     shown(name));
            return -EINVAL;
        }
        if (owned) {
            snprintf(err, errlen, "field 'headers': %s is set by the load generator", owned);
            return -EINVAL;
        }
        if (!json_is_string(v)) {
            snprintf(err, errlen, "field 'headers': the value of '%s' must be a string",
                     shown(name));
            return -EINVAL;
        }
        size_t vl = json_string_length(v);
        if (!jv_printable(json_string_value(v), vl)) {
            snprintf(err, errlen,
                     "field 'headers': the value of '%s' must be printable text (no control "
                     "characters)",
                     shown(name));
            return -EINVAL;
        }
        if (nl + 2 + vl > LOADGEN_HEADER_MAX) {
            snprintf(err, errlen, "field 'headers': '%s: …' is longer than %d bytes",
                     shown(name), LOADGEN_HEADER_MAX);
            return -EINVAL;
        }
        if (asprintf(&lines[*n], "%s: %s", name, json_string_value(v)) < 0) {
            lines[*n] = NULL;
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        (*n)++;
    }
    return 0;
}

struct engine {
    struct slot *slot;
    struct loadgen *lg;
    struct loadgen_result *result;
    int rc;
    char err[256];
};

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    e->rc = loadgen_run(e->lg, e->result, e->err, sizeof e->err);
    struct loadtest_runner *r = e->slot->r;
    pthread_mutex_lock(&r->lock);
    e->slot->engine_done = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* The results document of res, compact; NULL when out of memory. */
static char *result_text(const struct loadgen_result *res, int with_seconds)
{
    json_t *doc = loadgen_result_json(res, with_seconds);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return s;
}

static void finish(struct loadtest_runner *r, int64_t id, const char *state, const char *error,
                   const struct loadgen_result *res)
{
    struct store *st = r->srv->store;
    char *doc = res ? result_text(res, 1) : NULL;
    int rc = store_loadtest_finish(st, id, state, error, res ? (int64_t)res->requests : 0,
                                   res ? (int64_t)res->errors : 0, doc, wall_ms());
    if (rc < 0)
        fprintf(stderr, "sonded: load test %" PRId64 ": cannot store its end (%s): %s\n", id,
                state, store_errmsg(st));
    free(doc);
    server_notify(r->srv);
}

/* Profile during test: a Profile Now request for the test's app and
 * duration, linked to it; polling agents of the app get it at once.  A
 * failure is logged and the test runs without it. */
static void profile_during(struct loadtest_runner *r, const struct store_loadtest *t)
{
    struct store *st = r->srv->store;
    struct store_profile_now pn = {
        .duration_s = t->duration_s,
        .created_ms = wall_ms(),
        .token_id = t->token_id,
        .loadtest_id = t->id,
    };
    snprintf(pn.app, sizeof pn.app, "%s", t->profile_app);
    snprintf(pn.triggered_by, sizeof pn.triggered_by, "load-test");
    if (store_profile_now_create(st, &pn) < 0) {
        fprintf(stderr, "sonded: load test %" PRId64 ": cannot start profiling app %s: %s\n",
                t->id, t->profile_app, store_errmsg(st));
        return;
    }
    server_notify(r->srv);
}

enum progress_verdict {
    GO_ON,
    CANCEL, /* a cancel was requested */
    GONE,   /* the store has it no longer in progress: failed meanwhile by
               a server that thought this one dead — stop, store nothing */
};

/* Stores the progress of the running test and says what to do next. */
static enum progress_verdict progress(struct loadtest_runner *r, int64_t id,
                                      struct loadgen *lg, struct loadgen_result *res)
{
    struct store *st = r->srv->store;
    loadgen_progress(lg, res);
    char *doc = result_text(res, 0);
    int cancel = 0;
    int rc = store_loadtest_progress(st, id, (int64_t)res->requests, (int64_t)res->errors, doc,
                                     &cancel);
    free(doc);
    if (rc == -ENOENT || rc == -EEXIST) {
        fprintf(stderr, "sonded: load test %" PRId64 " is no longer in progress in the store "
                        "(%s); stopping it\n", id, store_errmsg(st));
        return GONE;
    }
    if (rc < 0)
        fprintf(stderr, "sonded: load test %" PRId64 ": cannot store its progress: %s\n", id,
                store_errmsg(st));
    return rc == 0 && cancel ? CANCEL : GO_ON;
}

static void run_test(struct slot *slot, const struct store_loadtest *t)
{
    struct loadtest_runner *r = slot->r;
    struct server *srv = r->srv;
    char err[512];
    struct built b;
    struct loadgen *lg = NULL;

    if (build_spec(srv->store, t, &b, err, sizeof err) < 0) {
        built_free(&b);
        finish(r, t->id, "failed", err, NULL);
        return;
    }
    int rc = loadgen_new(&b.spec, &lg, err, sizeof err);
    built_free(&b);
    if (rc < 0) {
        finish(r, t->id, "failed", err, NULL);
        return;
    }
    if (loadtest_target_check(srv->loadtest_allow, lg, err, sizeof err) < 0) {
        loadgen_free(lg);
        finish(r, t->id, "failed", err, NULL);
        return;
    }

    struct engine e = {.slot = slot, .lg = lg};
    struct loadgen_result *now = malloc(sizeof *now);
    e.result = malloc(sizeof *e.result);
    if (!now || !e.result) {
        free(now);
        free(e.result);
        loadgen_free(lg);
        finish(r, t->id, "failed", "out of memory", NULL);
        return;
    }
    memset(e.result, 0, sizeof *e.result);

    pthread_mutex_lock(&r->lock);
    slot->lg = lg;
    slot->engine_done = 0;
    int stopping = slot->stop_cancelled = r->quit;
    if (stopping)
        loadgen_cancel(lg); /* loadgen_run then returns at once */
    uint64_t seen = r->wakes;
    pthread_mutex_unlock(&r->lock);

    if (t->profile_app[0] && !stopping)
        profile_during(r, t);

    pthread_t engine;
    rc = pthread_create(&engine, NULL, engine_main, &e);
    if (rc != 0) {
        pthread_mutex_lock(&r->lock);
        slot->lg = NULL;
        pthread_mutex_unlock(&r->lock);
        snprintf(err, sizeof err, "cannot start the load generator's thread: %s", strerror(rc));
        loadgen_free(lg);
        free(now);
        free(e.result);
        finish(r, t->id, "failed", err, NULL);
        return;
    }

    /* Progress every PROGRESS_MS, and at once on a wake (a cancel may
     * have been requested), until the engine returns.  After a cancel
     * the engine stops within ~100 ms: nothing more to store till then. */
    int user_cancelled = 0, gone = 0;
    int64_t next = mono_ms() + PROGRESS_MS;
    pthread_mutex_lock(&r->lock);
    while (!slot->engine_done) {
        int64_t now_mono = mono_ms();
        if (r->wakes == seen && now_mono < next) {
            wait_until(r, next);
            continue;
        }
        if (now_mono >= next)
            next = now_mono + PROGRESS_MS;
        seen = r->wakes;
        pthread_mutex_unlock(&r->lock);
        if (!user_cancelled && !gone) {
            enum progress_verdict v = progress(r, t->id, lg, now);
            user_cancelled = v == CANCEL;
            gone = v == GONE;
            if (v != GO_ON)
                loadgen_cancel(lg);
        }
        pthread_mutex_lock(&r->lock);
    }
    int stopped = slot->stop_cancelled;
    slot->lg = NULL;
    pthread_mutex_unlock(&r->lock);
    pthread_join(engine, NULL);

    /* What the engine counted: loadgen_run's result, or, when it failed,
     * whatever it counted before. */
    if (e.rc < 0)
        loadgen_progress(lg, e.result);
    if (gone)
        server_notify(srv); /* its end is stored already */
    else if (e.rc < 0)
        finish(r, t->id, "failed", e.err[0] ? e.err : "the load generator failed", e.result);
    else if (user_cancelled)
        finish(r, t->id, "cancelled", NULL, e.result);
    else if (stopped)
        finish(r, t->id, "failed", STOPPED_MSG, e.result);
    else
        finish(r, t->id, "completed", NULL, e.result);
    loadgen_free(lg);
    free(now);
    free(e.result);
}

/* ------------------------------------------------------------------ */
/* Runner threads                                                      */

static void *runner_main(void *arg)
{
    struct slot *slot = arg;
    struct loadtest_runner *r = slot->r;
    struct store *st = r->srv->store;

    pthread_mutex_lock(&r->lock);
    while (!r->quit) {
        uint64_t seen = r->wakes;
        pthread_mutex_unlock(&r->lock);

        struct store_loadtest t;
        int rc = store_loadtest_claim(st, wall_ms(), &t);
        if (rc == 0) {
            run_test(slot, &t);
            pthread_mutex_lock(&r->lock);
            continue; /* another one may be queued */
        }
        if (rc != -ENOENT)
            fprintf(stderr, "sonded: load tests: cannot claim a queued test: %s\n",
                    store_errmsg(st));

        pthread_mutex_lock(&r->lock);
        int64_t deadline = mono_ms() + IDLE_POLL_MS;
        while (!r->quit && r->wakes == seen && mono_ms() < deadline)
            wait_until(r, deadline);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

int loadtest_runner_start(struct server *srv, int n, struct loadtest_runner **out, char *err,
                          size_t errlen)
{
    *out = NULL;
    if (n < 1 || n > LOADTEST_PARALLEL_MAX) {
        snprintf(err, errlen, "load-test runners: %d not in 1..%d", n, LOADTEST_PARALLEL_MAX);
        return -EINVAL;
    }
    struct loadtest_runner *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->srv = srv;
    r->n = n;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < n; i++) {
        struct slot *s = &r->slots[i];
        s->r = r;
        int rc = pthread_create(&s->thread, NULL, runner_main, s);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start a load-test runner thread: %s", strerror(rc));
            loadtest_runner_stop(r);
            return -rc;
        }
        s->started = 1;
    }
    pthread_mutex_lock(&live_lock);
    r->next = live_runners;
    live_runners = r;
    pthread_mutex_unlock(&live_lock);
    *out = r;
    return 0;
}

void loadtest_runner_wake(struct loadtest_runner *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&live_lock);
    struct loadtest_runner *x = live_runners;
    while (x && x != r)
        x = x->next;
    if (x) {
        pthread_mutex_lock(&r->lock);
        r->wakes++;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_unlock(&live_lock);
}

void loadtest_runner_stop(struct loadtest_runner *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&live_lock);
    for (struct loadtest_runner **p = &live_runners; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&live_lock);
    pthread_mutex_lock(&r->lock);
    r->quit = 1;
    for (int i = 0; i < r->n; i++) {
        struct slot *s = &r->slots[i];
        if (s->lg && !s->engine_done) {
            s->stop_cancelled = 1;
            loadgen_cancel(s->lg);
        }
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < r->n; i++)
        if (r->slots[i].started)
            pthread_join(r->slots[i].thread, NULL);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
