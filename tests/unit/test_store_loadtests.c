/*
 * test_store_loadtests.c — the store's load tests on real SQLite files
 * (fixtures in store_fx.h): the bounded queue, claims (oldest first, never
 * the same test twice under 6 claiming threads), progress, finish, cancel
 * and abandon with the states they require, results and requests, lists,
 * the Profile Now link both ways, sessions by request, retention, input
 * checks (nothing cut, nothing written), and the migration of a file made
 * by migrations 1–3.
 */
#include <math.h>

#include "store_fx.h"

/* For the older file: the migrations as shipped, applied by hand. */
#include "server/store_sqlite_internal.h"

#define HEADERS "[[\"Accept\",\"application/json\"],[\"X-Run\",\"1\"]]"

static struct store_loadtest loadtest_of(const char *url, int64_t created)
{
    struct store_loadtest t = {0};
    snprintf(t.url, sizeof t.url, "%s", url);
    snprintf(t.method, sizeof t.method, "POST");
    snprintf(t.profile_app, sizeof t.profile_app, "checkout");
    snprintf(t.creator, sizeof t.creator, "ops-token");
    t.token_id = 7;
    t.users = 20;
    t.duration_s = 60;
    t.rate = 250.5;
    t.timeout_ms = 5000;
    t.n_headers = 2;
    t.created_ms = created;
    return t;
}

static int64_t new_loadtest(struct store *st, int64_t created)
{
    struct store_loadtest t = loadtest_of("http://127.0.0.1:8080/checkout", created);
    assert_int_equal(store_loadtest_create(st, &t, HEADERS, "{\"n\":1}", 7, 100), 0);
    assert_true(t.id > 0);
    return t.id;
}

static struct store_loadtest get_loadtest(struct store *st, int64_t id)
{
    struct store_loadtest g;
    assert_int_equal(store_loadtest_get(st, id, &g), 0);
    return g;
}

static int64_t claim(struct store *st, int64_t now_ms)
{
    struct store_loadtest t;
    assert_int_equal(store_loadtest_claim(st, now_ms, &t), 0);
    assert_string_equal(t.state, "in progress");
    assert_int_equal(t.started_ms, now_ms);
    return t.id;
}

static int64_t count_rows(const char *path, const char *table)
{
    sqlite3 *db;
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int64_t n = sql_int(db, sql);
    sqlite3_close(db);
    return n;
}

/* ------------------------------------------------------------------ */
/* Creating, reading                                                   */

static void test_loadtest_create_stores_request_and_sets_the_rest(void **state)
{
    struct fx *f = *state;
    struct store_loadtest t = loadtest_of("http://127.0.0.1:8080/checkout?x=1", T0);
    /* The store sets these, whatever the caller says. */
    snprintf(t.state, sizeof t.state, "completed");
    snprintf(t.error, sizeof t.error, "nope");
    t.requests = t.errors = 9;
    t.started_ms = t.ended_ms = T0 + 1;
    t.profile_now_id = 5;
    t.cancel_requested = 1;
    t.body_bytes = 1234;
    const char body[] = {'a', '\0', 'b', '\xff'}; /* binary, with a NUL */
    assert_int_equal(store_loadtest_create(f->st, &t, HEADERS, body, sizeof body, 10), 0);
    assert_true(t.id > 0);
    assert_string_equal(t.state, "queued");
    assert_string_equal(t.error, "");
    assert_int_equal(t.body_bytes, 4);
    assert_int_equal(t.requests + t.errors + t.started_ms + t.ended_ms + t.profile_now_id, 0);
    assert_int_equal(t.cancel_requested, 0);

    struct store_loadtest g = get_loadtest(f->st, t.id);
    assert_int_equal(g.id, t.id);
    assert_string_equal(g.state, "queued");
    assert_string_equal(g.error, "");
    assert_string_equal(g.profile_app, "checkout");
    assert_int_equal(g.token_id, 7);
    assert_int_equal(g.body_bytes, 4);
    assert_int_equal(g.requests + g.errors + g.started_ms + g.ended_ms + g.profile_now_id, 0);
    assert_int_equal(g.cancel_requested, 0);
    assert_string_equal(g.url, "http://127.0.0.1:8080/checkout?x=1");
    assert_string_equal(g.method, "POST");
    assert_string_equal(g.creator, "ops-token");
    assert_true(g.rate == 250.5);
    assert_int_equal(g.users, 20);
    assert_int_equal(g.duration_s, 60);
    assert_int_equal(g.timeout_ms, 5000);
    assert_int_equal(g.n_headers, 2);
    assert_int_equal(g.created_ms, T0);

    char *headers;
    void *b;
    size_t blen;
    assert_int_equal(store_loadtest_request(f->st, t.id, &headers, &b, &blen), 0);
    assert_string_equal(headers, HEADERS);
    assert_int_equal(blen, 4);
    assert_memory_equal(b, body, 4);
    free(headers);
    free(b);
    /* The headers alone (a list shows them): the body is not read. */
    assert_int_equal(store_loadtest_request(f->st, t.id, &headers, NULL, NULL), 0);
    assert_string_equal(headers, HEADERS);
    free(headers);
    assert_int_equal(store_loadtest_request(f->st, t.id, &headers, &b, NULL), -EINVAL);
    /* No body: NULL, 0. */
    struct store_loadtest e = loadtest_of("http://127.0.0.1:8080/", T0);
    assert_int_equal(store_loadtest_create(f->st, &e, "[]", NULL, 0, 10), 0);
    assert_int_equal(e.body_bytes, 0);
    assert_int_equal(store_loadtest_request(f->st, e.id, &headers, &b, &blen), 0);
    assert_string_equal(headers, "[]");
    assert_null(b);
    assert_int_equal(blen, 0);
    free(headers);

    /* No results yet; unknown ids. */
    char *result = (char *)"x";
    assert_int_equal(store_loadtest_result(f->st, t.id, &result), -ENOENT);
    assert_null(result);
    assert_non_null(strstr(store_errmsg(f->st), "no results yet"));
    assert_int_equal(store_loadtest_result(f->st, e.id + 1, &result), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "not found"));
    assert_int_equal(store_loadtest_get(f->st, e.id + 1, &g), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "not found"));
    assert_int_equal(store_loadtest_request(f->st, e.id + 1, &headers, &b, &blen), -ENOENT);
    assert_null(headers);
}

static void test_loadtest_create_refuses_a_full_queue_writing_nothing(void **state)
{
    struct fx *f = *state;
    struct store_loadtest t = loadtest_of("http://127.0.0.1:8080/", T0);
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 2), 0);
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 2), 0);
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    int64_t id = t.id;
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 2), -EBUSY);
    assert_non_null(strstr(store_errmsg(f->st), "queue is full"));
    assert_int_equal(t.id, id); /* untouched */
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 0), -EBUSY);
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, -1), -EINVAL);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    assert_int_equal(count_rows(f->path, "loadtests"), 2);
    /* A larger bound, or a claimed test, makes room; ended tests never
     * count. */
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 3), 0);
    claim(f->st, T0 + 10);
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 3), 0);
    struct store_loadtest c;
    assert_int_equal(store_loadtest_cancel(f->st, t.id, T0 + 20, &c), 0);
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 3), 0);
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 3), -EBUSY);
}

static void test_loadtest_create_checks_every_input_writing_nothing(void **state)
{
    struct fx *f = *state;
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    struct store_loadtest t;
#define REFUSED(setup, word)                                                                       \
    do {                                                                                           \
        t = loadtest_of("http://127.0.0.1:8080/", T0);                                             \
        setup;                                                                                     \
        assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 100), -EINVAL);           \
        assert_non_null(strstr(store_errmsg(f->st), word));                                        \
    } while (0)
    REFUSED(t.users = 0, "users");
    REFUSED(t.users = 10001, "users");
    REFUSED(t.duration_s = 0, "duration_s");
    REFUSED(t.duration_s = 3601, "duration_s");
    REFUSED(t.rate = -0.5, "rate");
    REFUSED(t.rate = 1e6 + 1, "rate");
    REFUSED(t.rate = NAN, "rate");
    REFUSED(t.timeout_ms = -1, "timeout_ms");
    REFUSED(t.n_headers = -1, "n_headers");
    REFUSED(t.url[0] = '\0', "url");
    REFUSED(t.method[0] = '\0', "method");
    /* Strings that do not fit their arrays: refused, never cut. */
    REFUSED(memset(t.url, 'u', sizeof t.url), "url");
    REFUSED(memset(t.method, 'M', sizeof t.method), "method");
    REFUSED(memset(t.profile_app, 'p', sizeof t.profile_app), "profile_app");
    REFUSED(memset(t.creator, 'c', sizeof t.creator), "creator");
#undef REFUSED
    t = loadtest_of("http://127.0.0.1:8080/", T0);
    assert_int_equal(store_loadtest_create(f->st, &t, NULL, NULL, 0, 100), -EINVAL);
    assert_non_null(strstr(store_errmsg(f->st), "headers"));
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 3, 100), -EINVAL);
    assert_non_null(strstr(store_errmsg(f->st), "body"));
    assert_int_equal(store_loadtest_create(NULL, &t, "[]", NULL, 0, 100), -EINVAL);
    assert_int_equal(store_loadtest_create(f->st, NULL, "[]", NULL, 0, 100), -EINVAL);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    assert_int_equal(count_rows(f->path, "loadtests"), 0);

    /* The bounds themselves are fine; a URL of exactly its room too. */
    t = loadtest_of("http://127.0.0.1:8080/", T0);
    t.users = 1, t.duration_s = 1, t.rate = 0;
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 100), 0);
    t.users = 10000, t.duration_s = 3600, t.rate = 1e6;
    memset(t.url, 'u', sizeof t.url - 1);
    t.url[sizeof t.url - 1] = '\0';
    assert_int_equal(store_loadtest_create(f->st, &t, "[]", NULL, 0, 100), 0);
    struct store_loadtest g = get_loadtest(f->st, t.id);
    assert_int_equal(strlen(g.url), STORE_URL_MAX - 1);
    assert_int_equal(g.users, 10000);
    assert_true(g.rate == 1e6);
}

/* ------------------------------------------------------------------ */
/* Runners: claim, progress, finish, cancel, abandon                   */

static void test_loadtest_claim_takes_the_oldest_queued(void **state)
{
    struct fx *f = *state;
    struct store_loadtest t;
    assert_int_equal(store_loadtest_claim(f->st, T0, &t), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "no load test is queued"));
    int64_t a = new_loadtest(f->st, T0);
    int64_t b = new_loadtest(f->st, T0 + 1);
    int64_t c = new_loadtest(f->st, T0 + 2);
    assert_int_equal(claim(f->st, T0 + 100), a);
    struct store_loadtest g = get_loadtest(f->st, a);
    assert_string_equal(g.state, "in progress");
    assert_int_equal(g.started_ms, T0 + 100);
    assert_int_equal(g.ended_ms, 0);
    struct store_loadtest x;
    assert_int_equal(store_loadtest_cancel(f->st, b, T0 + 150, &x), 0); /* b leaves the queue */
    assert_int_equal(claim(f->st, T0 + 200), c);
    assert_int_equal(store_loadtest_claim(f->st, T0 + 300, &t), -ENOENT);
    /* Later tests are claimed after, even with an earlier clock. */
    int64_t d = new_loadtest(f->st, T0 - 5000);
    int64_t e = new_loadtest(f->st, T0 - 9000);
    assert_int_equal(claim(f->st, T0 + 400), d);
    assert_int_equal(claim(f->st, T0 + 500), e);
}

static void test_loadtest_progress_and_finish_only_while_in_progress(void **state)
{
    struct fx *f = *state;
    int64_t id = new_loadtest(f->st, T0);
    int cancel = -1;
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    assert_int_equal(store_loadtest_progress(f->st, id, 5, 1, "{}", &cancel), -EEXIST);
    assert_non_null(strstr(store_errmsg(f->st), "not in progress (queued)"));
    assert_int_equal(cancel, -1);
    assert_int_equal(store_loadtest_finish(f->st, id, "completed", NULL, 5, 1, "{}", T0), -EEXIST);
    assert_int_equal(store_loadtest_progress(f->st, id + 1, 5, 1, "{}", &cancel), -ENOENT);
    assert_int_equal(store_loadtest_finish(f->st, id + 1, "failed", "x", 0, 0, NULL, T0), -ENOENT);
    assert_int_equal(data_version(&w), v0);

    assert_int_equal(claim(f->st, T0 + 10), id);
    v0 = data_version(&w);
    /* Bad values: refused before anything is written. */
    assert_int_equal(store_loadtest_progress(f->st, id, -1, 0, NULL, NULL), -EINVAL);
    assert_int_equal(store_loadtest_finish(f->st, id, "in progress", NULL, 1, 0, NULL, T0),
                     -EINVAL);
    assert_int_equal(store_loadtest_finish(f->st, id, "queued", NULL, 1, 0, NULL, T0), -EINVAL);
    assert_int_equal(store_loadtest_finish(f->st, id, "done", NULL, 1, 0, NULL, T0), -EINVAL);
    assert_non_null(strstr(store_errmsg(f->st), "completed, failed or cancelled"));
    assert_int_equal(store_loadtest_finish(f->st, id, NULL, NULL, 1, 0, NULL, T0), -EINVAL);
    assert_int_equal(store_loadtest_finish(f->st, id, "completed", "oops", 1, 0, NULL, T0),
                     -EINVAL);
    char longerr[STORE_ERROR_MAX + 1];
    memset(longerr, 'e', STORE_ERROR_MAX);
    longerr[STORE_ERROR_MAX] = '\0';
    assert_int_equal(store_loadtest_finish(f->st, id, "failed", longerr, 1, 0, NULL, T0), -EINVAL);
    assert_non_null(strstr(store_errmsg(f->st), "error"));
    assert_int_equal(data_version(&w), v0);

    /* Progress: counts and the document; NULL keeps the last. */
    assert_int_equal(store_loadtest_progress(f->st, id, 100, 3, "{\"p\":1}", &cancel), 0);
    assert_int_equal(cancel, 0);
    char *result;
    assert_int_equal(store_loadtest_result(f->st, id, &result), 0);
    assert_string_equal(result, "{\"p\":1}");
    free(result);
    assert_int_equal(store_loadtest_progress(f->st, id, 200, 4, NULL, NULL), 0);
    struct store_loadtest g = get_loadtest(f->st, id);
    assert_int_equal(g.requests, 200);
    assert_int_equal(g.errors, 4);
    assert_string_equal(g.state, "in progress");
    assert_int_equal(store_loadtest_result(f->st, id, &result), 0);
    assert_string_equal(result, "{\"p\":1}");
    free(result);

    /* Finish: with NULL results the last stay. */
    assert_int_equal(store_loadtest_finish(f->st, id, "completed", "", 300, 5, NULL, T0 + 60000),
                     0);
    g = get_loadtest(f->st, id);
    assert_string_equal(g.state, "completed");
    assert_int_equal(g.ended_ms, T0 + 60000);
    assert_int_equal(g.requests, 300);
    assert_int_equal(g.errors, 5);
    assert_string_equal(g.error, "");
    assert_int_equal(store_loadtest_result(f->st, id, &result), 0);
    assert_string_equal(result, "{\"p\":1}");
    free(result);

    /* Ended: a late runner changes nothing. */
    v0 = data_version(&w);
    assert_int_equal(store_loadtest_progress(f->st, id, 999, 9, "{\"late\":1}", &cancel),
                     -EEXIST);
    assert_non_null(strstr(store_errmsg(f->st), "not in progress (completed)"));
    assert_int_equal(store_loadtest_finish(f->st, id, "failed", "x", 1, 1, "{}", T0), -EEXIST);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    struct store_loadtest g2 = get_loadtest(f->st, id);
    assert_memory_equal(&g2, &g, sizeof g);

    /* A failed test keeps its error and its final document. */
    int64_t id2 = new_loadtest(f->st, T0);
    assert_int_equal(claim(f->st, T0 + 10), id2);
    char fits[STORE_ERROR_MAX];
    memset(fits, 'e', sizeof fits - 1);
    fits[sizeof fits - 1] = '\0';
    assert_int_equal(store_loadtest_finish(f->st, id2, "failed", fits, 0, 0, "{\"final\":1}", T0),
                     0);
    g = get_loadtest(f->st, id2);
    assert_string_equal(g.state, "failed");
    assert_string_equal(g.error, fits);
    assert_int_equal(store_loadtest_result(f->st, id2, &result), 0);
    assert_string_equal(result, "{\"final\":1}");
    free(result);
}

static void test_loadtest_cancel_queued_running_and_ended(void **state)
{
    struct fx *f = *state;
    int64_t q = new_loadtest(f->st, T0);
    int64_t r = new_loadtest(f->st, T0 + 1);
    struct store_loadtest out;
    /* Queued: cancelled at once (and never claimed). */
    assert_int_equal(store_loadtest_cancel(f->st, q, T0 + 50, &out), 0);
    assert_int_equal(out.id, q);
    assert_string_equal(out.state, "cancelled");
    assert_int_equal(out.ended_ms, T0 + 50);
    assert_int_equal(out.started_ms, 0);
    assert_int_equal(claim(f->st, T0 + 60), r);

    /* In progress: the flag, state unchanged; the runner learns it. */
    assert_int_equal(store_loadtest_cancel(f->st, r, T0 + 70, &out), 0);
    assert_string_equal(out.state, "in progress");
    assert_int_equal(out.cancel_requested, 1);
    assert_int_equal(out.ended_ms, 0);
    assert_int_equal(store_loadtest_cancel(f->st, r, T0 + 75, &out), 0); /* twice: same */
    assert_int_equal(out.cancel_requested, 1);
    int cancel = 0;
    assert_int_equal(store_loadtest_progress(f->st, r, 10, 0, "{}", &cancel), 0);
    assert_int_equal(cancel, 1);
    assert_int_equal(store_loadtest_finish(f->st, r, "cancelled", NULL, 12, 0, "{}", T0 + 80), 0);

    /* Ended: -EEXIST, nothing written, the row still returned. */
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    memset(&out, 0, sizeof out);
    assert_int_equal(store_loadtest_cancel(f->st, r, T0 + 90, &out), -EEXIST);
    assert_non_null(strstr(store_errmsg(f->st), "already ended (cancelled)"));
    assert_int_equal(out.id, r);
    assert_string_equal(out.state, "cancelled");
    assert_int_equal(out.ended_ms, T0 + 80);
    assert_int_equal(out.requests, 12);
    assert_int_equal(store_loadtest_cancel(f->st, q, T0 + 90, &out), -EEXIST);
    assert_int_equal(out.ended_ms, T0 + 50);
    assert_int_equal(store_loadtest_cancel(f->st, r + 1, T0 + 90, &out), -ENOENT);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
}

static void test_loadtest_abandon_fails_only_old_in_progress_tests(void **state)
{
    struct fx *f = *state;
    int64_t old = new_loadtest(f->st, T0);
    int64_t young = new_loadtest(f->st, T0);
    int64_t done = new_loadtest(f->st, T0);
    int64_t queued = new_loadtest(f->st, T0 - 100000); /* queued long ago: stays */
    assert_int_equal(claim(f->st, T0), old);
    assert_int_equal(claim(f->st, T0 + 5000), young);
    assert_int_equal(claim(f->st, T0), done);
    assert_int_equal(store_loadtest_finish(f->st, done, "completed", NULL, 1, 0, NULL, T0 + 10),
                     0);

    int64_t n = -1;
    assert_int_equal(store_loadtest_abandon(f->st, T0 + 1000, "", T0 + 9000, &n), -EINVAL);
    char longerr[STORE_ERROR_MAX + 1];
    memset(longerr, 'e', STORE_ERROR_MAX);
    longerr[STORE_ERROR_MAX] = '\0';
    assert_int_equal(store_loadtest_abandon(f->st, T0 + 1000, longerr, T0 + 9000, &n), -EINVAL);
    assert_int_equal(n, 0);
    assert_string_equal(get_loadtest(f->st, old).state, "in progress");

    assert_int_equal(store_loadtest_abandon(f->st, T0 + 1000, "server stopped during the test",
                                            T0 + 9000, &n),
                     0);
    assert_int_equal(n, 1);
    struct store_loadtest g = get_loadtest(f->st, old);
    assert_string_equal(g.state, "failed");
    assert_string_equal(g.error, "server stopped during the test");
    assert_int_equal(g.ended_ms, T0 + 9000);
    assert_string_equal(get_loadtest(f->st, young).state, "in progress");
    g = get_loadtest(f->st, done);
    assert_string_equal(g.state, "completed");
    assert_int_equal(g.ended_ms, T0 + 10);
    assert_string_equal(get_loadtest(f->st, queued).state, "queued");
    /* Again: nothing left to abandon; NULL n is fine. */
    assert_int_equal(store_loadtest_abandon(f->st, T0 + 1000, "x", T0 + 9500, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_loadtest_abandon(f->st, T0 + 6000, "x", T0 + 9500, NULL), 0);
    assert_string_equal(get_loadtest(f->st, young).state, "failed");
    /* A late runner of an abandoned test changes nothing. */
    assert_int_equal(store_loadtest_finish(f->st, old, "completed", NULL, 5, 0, "{}", T0 + 9900),
                     -EEXIST);
}

/* ------------------------------------------------------------------ */
/* Lists                                                               */

static void test_loadtest_list_filters_pages_newest_first(void **state)
{
    struct fx *f = *state;
    int64_t id[5];
    for (int i = 0; i < 5; i++)
        id[i] = new_loadtest(f->st, T0 + i * 1000);
    assert_int_equal(claim(f->st, T0 + 9000), id[0]);
    assert_int_equal(claim(f->st, T0 + 9000), id[1]);
    assert_int_equal(store_loadtest_finish(f->st, id[1], "failed", "refused", 0, 0, NULL, T0), 0);

    struct store_loadtest *v;
    size_t n;
    int64_t total;
    assert_int_equal(store_loadtest_list(f->st, NULL, &v, &n, &total), 0);
    assert_int_equal(n, 5);
    assert_int_equal(total, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(v[i].id, id[4 - i]);
    assert_int_equal(v[3].id, id[1]);
    assert_string_equal(v[3].error, "refused");
    free(v);

    struct store_loadtest_filter fl = {.limit = 2, .offset = 1};
    assert_int_equal(store_loadtest_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(n, 2);
    assert_int_equal(total, 5);
    assert_int_equal(v[0].id, id[3]);
    assert_int_equal(v[1].id, id[2]);
    free(v);
    fl = (struct store_loadtest_filter){.state = "queued"};
    assert_int_equal(store_loadtest_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(n, 3);
    assert_int_equal(total, 3);
    assert_int_equal(v[0].id, id[4]);
    free(v);
    fl = (struct store_loadtest_filter){.state = "in progress", .limit = 1};
    assert_int_equal(store_loadtest_list(f->st, &fl, &v, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, id[0]);
    free(v);
    fl = (struct store_loadtest_filter){.state = "cancelled"};
    assert_int_equal(store_loadtest_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(n, 0);
    assert_int_equal(total, 0);
    free(v);
    fl = (struct store_loadtest_filter){.state = "queued", .offset = 10};
    assert_int_equal(store_loadtest_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(n, 0);
    assert_int_equal(total, 3);
    free(v);

    fl = (struct store_loadtest_filter){.state = "running"};
    assert_int_equal(store_loadtest_list(f->st, &fl, &v, &n, &total), -EINVAL);
    assert_non_null(strstr(store_errmsg(f->st), "unknown load test state"));
    fl = (struct store_loadtest_filter){.limit = 1001};
    assert_int_equal(store_loadtest_list(f->st, &fl, &v, &n, &total), -EINVAL);
    assert_int_equal(store_loadtest_list(f->st, NULL, NULL, &n, &total), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* Profile Now and sessions                                            */

static void test_profile_now_links_a_load_test_both_ways(void **state)
{
    struct fx *f = *state;
    int64_t lt = new_loadtest(f->st, T0);
    /* A person's request: triggered_by "" becomes "profile-now". */
    struct store_profile_now p = {.app = "checkout", .duration_s = 60, .created_ms = T0};
    assert_int_equal(store_profile_now_create(f->st, &p), 0);
    assert_string_equal(p.triggered_by, "profile-now");
    assert_int_equal(p.loadtest_id, 0);

    struct store_profile_now r = {.app = "checkout", .duration_s = 60, .created_ms = T0 + 1,
                                  .token_id = 7, .triggered_by = "load-test",
                                  .loadtest_id = lt};
    assert_int_equal(store_profile_now_create(f->st, &r), 0);
    assert_true(r.id > p.id);
    assert_int_equal(get_loadtest(f->st, lt).profile_now_id, r.id);
    struct store_profile_now g;
    assert_int_equal(store_profile_now_get(f->st, r.id, &g), 0);
    assert_memory_equal(&g, &r, sizeof g);
    assert_int_equal(store_profile_now_get(f->st, p.id, &g), 0);
    assert_string_equal(g.triggered_by, "profile-now");
    assert_int_equal(store_profile_now_get(f->st, r.id + 1, &g), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "not found"));

    /* Agents get both alike. */
    struct store_profile_now *v;
    size_t n;
    assert_int_equal(store_profile_now_since(f->st, 0, "checkout", T0 + 1000, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].triggered_by, "profile-now");
    assert_string_equal(v[1].triggered_by, "load-test");
    assert_int_equal(v[1].loadtest_id, lt);
    free(v);
    assert_int_equal(store_profile_now_recent(f->st, 1, &v, &n), 0);
    assert_int_equal(v[0].loadtest_id, lt);
    free(v);

    /* Refusals write nothing: an unknown test, an unknown kind, a
     * too-long kind. */
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w), last0, last;
    assert_int_equal(store_profile_now_last_id(f->st, &last0), 0);
    struct store_profile_now bad = {.app = "checkout", .duration_s = 60, .created_ms = T0,
                                    .triggered_by = "load-test", .loadtest_id = lt + 1};
    assert_int_equal(store_profile_now_create(f->st, &bad), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "load test"));
    assert_int_equal(bad.id, 0);
    bad = (struct store_profile_now){.duration_s = 60, .triggered_by = "cpu-trigger"};
    assert_int_equal(store_profile_now_create(f->st, &bad), -EINVAL);
    memset(bad.triggered_by, 'k', sizeof bad.triggered_by);
    assert_int_equal(store_profile_now_create(f->st, &bad), -EINVAL);
    bad = (struct store_profile_now){.duration_s = 60, .loadtest_id = -2};
    assert_int_equal(store_profile_now_create(f->st, &bad), -EINVAL);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    assert_int_equal(store_profile_now_last_id(f->st, &last), 0);
    assert_int_equal(last, last0);
    assert_int_equal(get_loadtest(f->st, lt).profile_now_id, r.id);
}

static int count_tree(void *ctx, int64_t session_id, const void *tree, size_t len)
{
    (void)session_id, (void)tree, (void)len;
    (*(int *)ctx)++;
    return 0;
}

static void test_session_list_filters_by_request_id(void **state)
{
    struct fx *f = *state;
    int64_t ids[6];
    for (int i = 0; i < 6; i++) {
        struct store_session s = session_of(i % 2 ? "search" : "checkout", "web-1",
                                            "profile-now", T0 + i * 1000);
        s.request_id = i < 3 ? 41 : i < 5 ? 42 : 0;
        assert_int_equal(store_session_create(f->st, &s), 0);
        ids[i] = s.id;
    }
    put_profile(f->st, ids[0], "pprof-0", "tree-0", 3);
    put_profile(f->st, ids[2], "pprof-2", "tree-2", 3);
    put_profile(f->st, ids[3], "pprof-3", "tree-3", 3);

    struct store_session *v;
    size_t n;
    int64_t total;
    struct store_session_filter fl = {.request_id = 41};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(n, 3);
    assert_int_equal(total, 3);
    assert_int_equal(v[0].id, ids[2]); /* newest first */
    assert_int_equal(v[2].id, ids[0]);
    free(v);
    fl = (struct store_session_filter){.request_id = 41, .app = "checkout", .limit = 1};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(n, 1);
    assert_int_equal(total, 2);
    assert_int_equal(v[0].id, ids[2]);
    free(v);
    fl = (struct store_session_filter){.request_id = 42, .with_profile = 1};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, ids[3]);
    free(v);
    fl = (struct store_session_filter){.request_id = 99};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(total, 0);
    free(v);
    fl = (struct store_session_filter){0};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(total, 6);
    free(v);
    /* The flame-tree walks take the filter too. */
    int trees = 0;
    fl = (struct store_session_filter){.request_id = 41};
    assert_int_equal(store_tree_foreach(f->st, &fl, count_tree, &trees), 0);
    assert_int_equal(trees, 2);
    trees = 0;
    fl = (struct store_session_filter){.request_id = 42, .from_ms = T0 + 3500};
    assert_int_equal(store_pprof_foreach(f->st, &fl, count_tree, &trees), 0);
    assert_int_equal(trees, 0);
}

/* ------------------------------------------------------------------ */
/* Retention                                                           */

static void test_retention_purges_only_load_tests_that_ended_before(void **state)
{
    struct fx *f = *state;
    int64_t before = T0 + 100000;
    /* Ended before the cutoff in each final state: 45, over two batches. */
    int64_t gone[45];
    for (int i = 0; i < 45; i++) {
        gone[i] = new_loadtest(f->st, T0);
        if (i % 3 == 0) {
            struct store_loadtest x;
            assert_int_equal(store_loadtest_cancel(f->st, gone[i], T0 + 10, &x), 0);
        } else {
            assert_int_equal(claim(f->st, T0), gone[i]);
            const char *end = i % 3 == 1 ? "completed" : "failed";
            assert_int_equal(store_loadtest_finish(f->st, gone[i], end, NULL, 1, 0, "{\"r\":1}",
                                                   before - 1),
                             0);
        }
    }
    /* Kept: ended at the cutoff, queued long ago, running since long ago. */
    int64_t at = new_loadtest(f->st, T0);
    assert_int_equal(claim(f->st, T0), at);
    assert_int_equal(store_loadtest_finish(f->st, at, "completed", NULL, 1, 0, NULL, before), 0);
    int64_t running = new_loadtest(f->st, T0 - 500000);
    assert_int_equal(claim(f->st, T0 - 400000), running);
    int64_t queued = new_loadtest(f->st, T0 - 500000);
    /* Linked Profile Now request and a session of it: not load tests. */
    struct store_profile_now r = {.app = "checkout", .duration_s = 60, .created_ms = T0,
                                  .triggered_by = "load-test", .loadtest_id = gone[1]};
    assert_int_equal(store_profile_now_create(f->st, &r), 0);
    int64_t sid = new_session(f->st, "checkout", "web-1", "profile-now", before + 1);

    int64_t deleted = -1;
    assert_int_equal(store_retention_purge(f->st, before, &deleted), 0);
    assert_int_equal(deleted, 0); /* sessions deleted */
    struct store_loadtest g;
    for (int i = 0; i < 45; i++)
        assert_int_equal(store_loadtest_get(f->st, gone[i], &g), -ENOENT);
    char *result;
    assert_int_equal(store_loadtest_result(f->st, gone[1], &result), -ENOENT);
    assert_int_equal(store_loadtest_get(f->st, at, &g), 0);
    assert_string_equal(get_loadtest(f->st, running).state, "in progress");
    assert_string_equal(get_loadtest(f->st, queued).state, "queued");
    assert_int_equal(count_rows(f->path, "loadtests"), 3);
    struct store_profile_now pg;
    assert_int_equal(store_profile_now_get(f->st, r.id, &pg), 0);
    struct store_session sg;
    assert_int_equal(store_session_get(f->st, sid, &sg), 0);
    /* New ids never reuse purged ones. */
    assert_true(new_loadtest(f->st, T0) > queued);
}

/* ------------------------------------------------------------------ */
/* Claims from many threads                                            */

#define CLAIMERS 6
#define QUEUED 60

struct claimer {
    struct store *st;
    int64_t got[QUEUED];
    int n, other;
};

static void *claimer_main(void *arg)
{
    struct claimer *k = arg;
    for (;;) {
        struct store_loadtest t;
        int rc = store_loadtest_claim(k->st, T0 + 1000, &t);
        if (rc == -ENOENT)
            break;
        if (rc != 0 || k->n == QUEUED || strcmp(t.state, "in progress") != 0) {
            k->other++;
            break;
        }
        k->got[k->n++] = t.id;
    }
    return NULL;
}

static void test_concurrent_claims_never_share_a_test(void **state)
{
    struct fx *f = *state;
    int64_t first = 0;
    for (int i = 0; i < QUEUED; i++) {
        int64_t id = new_loadtest(f->st, T0 + i);
        if (i == 0)
            first = id;
    }
    struct claimer k[CLAIMERS];
    pthread_t th[CLAIMERS];
    for (int i = 0; i < CLAIMERS; i++) {
        k[i] = (struct claimer){.st = f->st};
        assert_int_equal(pthread_create(&th[i], NULL, claimer_main, &k[i]), 0);
    }
    int seen[QUEUED] = {0}, total = 0;
    for (int i = 0; i < CLAIMERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(k[i].other, 0);
        for (int j = 0; j < k[i].n; j++) {
            int64_t x = k[i].got[j] - first;
            assert_true(x >= 0 && x < QUEUED);
            seen[x]++;
            /* Each thread's claims come oldest first. */
            if (j)
                assert_true(k[i].got[j] > k[i].got[j - 1]);
        }
        total += k[i].n;
    }
    assert_int_equal(total, QUEUED);
    for (int i = 0; i < QUEUED; i++)
        assert_int_equal(seen[i], 1);
    struct store_loadtest_filter fl = {.state = "queued"};
    struct store_loadtest *v;
    size_t n;
    int64_t left;
    assert_int_equal(store_loadtest_list(f->st, &fl, &v, &n, &left), 0);
    free(v);
    assert_int_equal(left, 0);
}

/* ------------------------------------------------------------------ */
/* Migration of an older file                                          */

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : "?");
}

static void test_a_version_3_file_migrates_and_keeps_its_data(void **state)
{
    struct fx *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/v3.db", f->dir);
    /* The file as sonded of issue 6 left it: migrations 1–3, with a
     * Profile Now request and a session of it. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode = WAL; CREATE TABLE schema_version ("
                "version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)");
    for (int i = 0; i < 3; i++) {
        char sql[96];
        exec_ok(db, sq_migrations[i]);
        snprintf(sql, sizeof sql, "INSERT INTO schema_version VALUES (%d, 1)", i + 1);
        exec_ok(db, sql);
    }
    exec_ok(db, "INSERT INTO profile_now (app, duration_s, created_ms, token_id) "
                "VALUES ('checkout', 60, 1795000000000, 3)");
    exec_ok(db, "INSERT INTO sessions (agent_id, triggered_by, request_id, app, instance, pid, "
                "start_ms, duration_ms, profile_types, samples, traces, cpu_pct, mem_pct, state, "
                "created_ms, updated_ms) VALUES (1, 'profile-now', 1, 'checkout', 'web-1', 42, "
                "1795000000000, 60000, 'cpu', 0, 0, -1, -1, 'running', 1795000000000, "
                "1795000000000)");
    sqlite3_close(db);

    struct store *st = NULL;
    char err[256] = "";
    assert_int_equal(store_open(path, &st, err, sizeof err), 0);
    assert_int_equal(count_rows(path, "schema_version"), (int64_t)sq_migrations_n);
    struct store_profile_now g;
    assert_int_equal(store_profile_now_get(st, 1, &g), 0);
    assert_string_equal(g.app, "checkout");
    assert_int_equal(g.token_id, 3);
    assert_string_equal(g.triggered_by, "profile-now");
    assert_int_equal(g.loadtest_id, 0);
    struct store_session_filter fl = {.request_id = 1};
    struct store_session *v;
    size_t n;
    int64_t total;
    assert_int_equal(store_session_list(st, &fl, &v, &n, &total), 0);
    assert_int_equal(total, 1);
    free(v);
    int64_t lt = new_loadtest(st, T0);
    struct store_profile_now r = {.app = "checkout", .duration_s = 60, .created_ms = T0,
                                  .triggered_by = "load-test", .loadtest_id = lt};
    assert_int_equal(store_profile_now_create(st, &r), 0);
    assert_int_equal(r.id, 2);
    store_close(st);
    /* Reopening applies nothing. */
    assert_int_equal(store_open(path, &st, err, sizeof err), 0);
    assert_int_equal(count_rows(path, "schema_version"), (int64_t)sq_migrations_n);
    assert_int_equal(get_loadtest(st, lt).profile_now_id, 2);
    char *report;
    assert_int_equal(store_check(st, &report), 0);
    assert_string_equal(report, "ok");
    free(report);
    store_close(st);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

static void test_load_tests_survive_reopen(void **state)
{
    struct fx *f = *state;
    int64_t a = new_loadtest(f->st, T0);
    int64_t b = new_loadtest(f->st, T0 + 1);
    assert_int_equal(claim(f->st, T0 + 5), a);
    assert_int_equal(store_loadtest_progress(f->st, a, 7, 1, "{\"p\":7}", NULL), 0);
    reopen(f);
    struct store_loadtest g = get_loadtest(f->st, a);
    assert_string_equal(g.state, "in progress");
    assert_int_equal(g.requests, 7);
    char *result;
    assert_int_equal(store_loadtest_result(f->st, a, &result), 0);
    assert_string_equal(result, "{\"p\":7}");
    free(result);
    assert_int_equal(claim(f->st, T0 + 10), b);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_loadtest_create_stores_request_and_sets_the_rest),
        T(test_loadtest_create_refuses_a_full_queue_writing_nothing),
        T(test_loadtest_create_checks_every_input_writing_nothing),
        T(test_loadtest_claim_takes_the_oldest_queued),
        T(test_loadtest_progress_and_finish_only_while_in_progress),
        T(test_loadtest_cancel_queued_running_and_ended),
        T(test_loadtest_abandon_fails_only_old_in_progress_tests),
        T(test_loadtest_list_filters_pages_newest_first),
        T(test_profile_now_links_a_load_test_both_ways),
        T(test_session_list_filters_by_request_id),
        T(test_retention_purges_only_load_tests_that_ended_before),
        T(test_concurrent_claims_never_share_a_test),
        T(test_a_version_3_file_migrates_and_keeps_its_data),
        T(test_load_tests_survive_reopen),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
