/*
 * test_store.c — the store (src/server/store.c, store_sqlite.c) on real
 * SQLite files in a fresh temporary directory per test: every object
 * round-trips, lists filter and page, errors carry their codes and
 * change nothing, data survives a reopen without re-running migrations,
 * retention purges, and 8 writers with 2 readers at once lose nothing
 * (run under ThreadSanitizer too).  Active profiling is in
 * test_store_tasks.c.
 */
#include "store_fx.h"

static void test_open_refuses_postgres_and_unknown_schemes(void **state)
{
    (void)state;
    struct store *st = (struct store *)1;
    char err[256] = "";
    assert_int_equal(store_open("postgres://db.example/sonde", &st, err, sizeof err), -ENOTSUP);
    assert_null(st);
    assert_non_null(strstr(err, "PostgreSQL"));
    assert_non_null(strstr(store_errmsg(NULL), "PostgreSQL"));
    assert_int_equal(store_open("postgresql://x", &st, err, sizeof err), -ENOTSUP);
    assert_int_equal(store_open("mysql://x", &st, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "scheme"));
    assert_int_equal(store_open("", &st, err, sizeof err), -EINVAL);
    assert_int_equal(store_open("/nonexistent-dir/x/y.db", &st, err, sizeof err), -EIO);
    assert_non_null(strstr(err, "/nonexistent-dir/x/y.db"));
}

static void test_open_accepts_sqlite_url(void **state)
{
    struct fx *f = *state;
    char url[128], err[256];
    snprintf(url, sizeof url, "sqlite:%s", f->path);
    struct store *st2;
    assert_int_equal(store_open(url, &st2, err, sizeof err), 0);
    /* Same file: what one writes, the other reads. */
    int64_t id = new_session(f->st, "checkout", "web-1", "profile-now", T0);
    struct store_session s;
    assert_int_equal(store_session_get(st2, id, &s), 0);
    assert_string_equal(s.app, "checkout");
    store_close(st2);
    store_close(NULL);
}

static void test_agent_round_trip_heartbeat_stop(void **state)
{
    struct fx *f = *state;
    struct store_agent a = agent_of("checkout", "web-1", T0);
    assert_int_equal(store_agent_register(f->st, &a), 0);
    assert_true(a.id > 0);

    struct store_agent g;
    assert_int_equal(store_agent_get(f->st, a.id, &g), 0);
    assert_int_equal(g.id, a.id);
    assert_string_equal(g.app, "checkout");
    assert_string_equal(g.instance, "web-1");
    assert_string_equal(g.agent_version, "0.4.0");
    assert_string_equal(g.cmdline, "./checkout --port 8080");
    assert_int_equal(g.pid, 4242);
    assert_int_equal(g.started_ms, T0 - 100);
    assert_int_equal(g.registered_ms, T0);
    assert_int_equal(g.last_seen_ms, T0);
    assert_int_equal(g.stopped_ms, 0);
    assert_true(g.cpu_pct < 0);
    assert_int_equal(g.dropped_uploads, 0);

    assert_int_equal(store_agent_heartbeat(f->st, a.id, T0 + 10000, 12.5, 3.25, 7), 0);
    assert_int_equal(store_agent_get(f->st, a.id, &g), 0);
    assert_int_equal(g.last_seen_ms, T0 + 10000);
    assert_true(g.cpu_pct == 12.5 && g.mem_pct == 3.25);
    assert_int_equal(g.dropped_uploads, 7);
    /* < 0: not reported this time, the last values stay. */
    assert_int_equal(store_agent_heartbeat(f->st, a.id, T0 + 20000, -1, -1, -1), 0);
    assert_int_equal(store_agent_get(f->st, a.id, &g), 0);
    assert_int_equal(g.last_seen_ms, T0 + 20000);
    assert_true(g.cpu_pct == 12.5 && g.mem_pct == 3.25);
    assert_int_equal(g.dropped_uploads, 7);

    assert_int_equal(store_agent_stop(f->st, a.id, T0 + 30000), 0);
    assert_int_equal(store_agent_get(f->st, a.id, &g), 0);
    assert_int_equal(g.stopped_ms, T0 + 30000);

    assert_int_equal(store_agent_get(f->st, a.id + 100, &g), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "not found"));
    assert_int_equal(store_agent_heartbeat(f->st, a.id + 100, T0, 1, 1, -1), -ENOENT);
    assert_int_equal(store_agent_stop(f->st, a.id + 100, T0), -ENOENT);
}

static void test_agent_list_filters_newest_first(void **state)
{
    struct fx *f = *state;
    const char *apps[] = {"checkout", "search", "checkout", "checkout"};
    const char *hosts[] = {"web-1", "web-1", "web-2", "web-1"};
    int64_t ids[4];
    for (int i = 0; i < 4; i++) {
        struct store_agent a = agent_of(apps[i], hosts[i], T0 + i * 1000);
        assert_int_equal(store_agent_register(f->st, &a), 0);
        ids[i] = a.id;
    }
    struct store_agent *v;
    size_t n;
    assert_int_equal(store_agent_list(f->st, NULL, &v, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(v[0].id, ids[3]);
    assert_int_equal(v[3].id, ids[0]);
    free(v);

    struct store_agent_filter fl = {.app = "checkout"};
    assert_int_equal(store_agent_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 3);
    free(v);
    fl.instance = "web-1";
    assert_int_equal(store_agent_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, ids[3]);
    assert_int_equal(v[1].id, ids[0]);
    free(v);
    fl = (struct store_agent_filter){.seen_after_ms = T0 + 2000};
    assert_int_equal(store_agent_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 2);
    free(v);
    fl = (struct store_agent_filter){.limit = 1};
    assert_int_equal(store_agent_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, ids[3]);
    free(v);
    fl = (struct store_agent_filter){.app = "nobody"};
    assert_int_equal(store_agent_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 0);
    free(v);
}

static void test_session_round_trip_and_update(void **state)
{
    struct fx *f = *state;
    struct store_session s = session_of("checkout", "web-1", "cpu-trigger", T0);
    s.request_id = 5;
    s.cpu_pct = 63.5;
    s.mem_pct = 3.5;
    assert_int_equal(store_session_create(f->st, &s), 0);
    struct store_session g;
    assert_int_equal(store_session_get(f->st, s.id, &g), 0);
    assert_int_equal(g.id, s.id);
    assert_int_equal(g.agent_id, 1);
    assert_string_equal(g.triggered_by, "cpu-trigger");
    assert_int_equal(g.request_id, 5);
    assert_string_equal(g.app, "checkout");
    assert_string_equal(g.instance, "web-1");
    assert_int_equal(g.pid, 4242);
    assert_int_equal(g.start_ms, T0);
    assert_int_equal(g.duration_ms, 120000);
    assert_string_equal(g.profile_types, "cpu");
    assert_true(g.cpu_pct == 63.5 && g.mem_pct == 3.5);
    assert_string_equal(g.state, "running");
    assert_int_equal(g.profile_bytes, 0);
    assert_int_equal(g.created_ms, T0);
    assert_int_equal(g.updated_ms, T0);

    g.duration_ms = 90000;
    snprintf(g.profile_types, sizeof g.profile_types, "cpu,wall");
    g.samples = 900;
    g.traces = 7;
    g.cpu_pct = 50;
    g.mem_pct = 4;
    snprintf(g.state, sizeof g.state, "failed");
    g.updated_ms = T0 + 90000;
    assert_int_equal(store_session_update(f->st, &g), 0);
    struct store_session h;
    assert_int_equal(store_session_get(f->st, s.id, &h), 0);
    assert_int_equal(h.duration_ms, 90000);
    assert_string_equal(h.profile_types, "cpu,wall");
    assert_int_equal(h.samples, 900);
    assert_int_equal(h.traces, 7);
    assert_true(h.cpu_pct == 50 && h.mem_pct == 4);
    assert_string_equal(h.state, "failed");
    assert_int_equal(h.updated_ms, T0 + 90000);
    assert_int_equal(h.created_ms, T0);

    g.id = s.id + 1000;
    assert_int_equal(store_session_update(f->st, &g), -ENOENT);
    assert_int_equal(store_session_get(f->st, s.id + 1000, &h), -ENOENT);
}

static void test_session_list_filters_pages_and_totals(void **state)
{
    struct fx *f = *state;
    /* 30 sessions, one a second: app alternates, instance every third,
     * trigger every fifth. */
    int64_t ids[30];
    for (int i = 0; i < 30; i++)
        ids[i] = new_session(f->st, i % 2 ? "search" : "checkout", i % 3 ? "web-1" : "web-2",
                             i % 5 ? "cpu-trigger" : "profile-now", T0 + i * 1000);
    put_profile(f->st, ids[4], "pprof", "tree", 1);
    put_profile(f->st, ids[10], "pprof", "tree", 1);

    struct store_session *v;
    size_t n;
    int64_t total;
    assert_int_equal(store_session_list(f->st, NULL, &v, &n, &total), 0);
    assert_int_equal(total, 30);
    assert_int_equal(n, 30);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(v[i].id, ids[29 - i]); /* newest start first */
    free(v);

    struct store_session_filter fl = {.app = "checkout", .limit = 4};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(total, 15);
    assert_int_equal(n, 4);
    assert_int_equal(v[0].id, ids[28]);
    assert_int_equal(v[3].id, ids[22]);
    free(v);
    fl.offset = 12; /* the last page is short */
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(total, 15);
    assert_int_equal(n, 3);
    assert_int_equal(v[2].id, ids[0]);
    free(v);
    fl.offset = 15;
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(total, 15);
    assert_int_equal(n, 0);
    free(v);

    fl = (struct store_session_filter){.instance = "web-2", .triggered_by = "profile-now"};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(total, 2); /* i = 0, 15 */
    assert_int_equal(v[0].id, ids[15]);
    assert_int_equal(v[1].id, ids[0]);
    free(v);

    /* from ≤ start < to */
    fl = (struct store_session_filter){.from_ms = T0 + 10000, .to_ms = T0 + 20000};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(total, 10);
    assert_int_equal(v[0].id, ids[19]);
    assert_int_equal(v[9].id, ids[10]);
    free(v);

    fl = (struct store_session_filter){.with_profile = 1};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
    assert_int_equal(total, 2);
    assert_int_equal(v[0].id, ids[10]);
    assert_int_equal(v[1].id, ids[4]);
    free(v);

    /* Default page of 50; total without asking for it. */
    fl = (struct store_session_filter){0};
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, NULL), 0);
    assert_int_equal(n, 30);
    free(v);
    fl.limit = 10001;
    assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), -EINVAL);
}

static void test_profile_round_trip_completes_session(void **state)
{
    struct fx *f = *state;
    int64_t sid = new_session(f->st, "checkout", "web-1", "profile-now", T0);
    /* Binary, with NULs and 50 KB: stored byte for byte. */
    size_t len = 50 * 1024;
    unsigned char *pprof = malloc(len), *tree = malloc(len / 5);
    for (size_t i = 0; i < len; i++)
        pprof[i] = (unsigned char)(i * 131 + (i >> 8));
    for (size_t i = 0; i < len / 5; i++)
        tree[i] = (unsigned char)(i * 7);
    struct store_profile p = {.session_id = sid,
                              .pprof = pprof,
                              .pprof_len = len,
                              .tree = tree,
                              .tree_len = len / 5,
                              .samples = 1234,
                              .sample_types = "samples/count,cpu/nanoseconds",
                              .now_ms = T0 + 121000};
    assert_int_equal(store_profile_put(f->st, &p), 0);

    void *buf;
    size_t n;
    assert_int_equal(store_profile_get(f->st, sid, &buf, &n), 0);
    assert_int_equal(n, len);
    assert_memory_equal(buf, pprof, len);
    free(buf);
    assert_int_equal(store_tree_get(f->st, sid, &buf, &n), 0);
    assert_int_equal(n, len / 5);
    assert_memory_equal(buf, tree, len / 5);
    free(buf);

    struct store_session s;
    assert_int_equal(store_session_get(f->st, sid, &s), 0);
    assert_int_equal(s.profile_bytes, (int64_t)len);
    assert_int_equal(s.samples, 1234);
    assert_string_equal(s.state, "completed");
    assert_int_equal(s.updated_ms, T0 + 121000);

    /* A session that knows its samples and ended otherwise keeps both. */
    struct store_session s2 = session_of("checkout", "web-1", "cpu-trigger", T0 + 1);
    s2.samples = 77;
    snprintf(s2.state, sizeof s2.state, "failed");
    assert_int_equal(store_session_create(f->st, &s2), 0);
    p.session_id = s2.id;
    assert_int_equal(store_profile_put(f->st, &p), 0);
    assert_int_equal(store_session_get(f->st, s2.id, &s), 0);
    assert_int_equal(s.samples, 77);
    assert_string_equal(s.state, "failed");
    assert_int_equal(s.profile_bytes, (int64_t)len);
    free(pprof);
    free(tree);
}

static void test_profile_put_twice_is_eexist_and_first_stays(void **state)
{
    struct fx *f = *state;
    int64_t sid = new_session(f->st, "checkout", "web-1", "profile-now", T0);
    put_profile(f->st, sid, "first pprof", "first tree", 10);
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    struct store_profile p = {.session_id = sid,
                              .pprof = "second, longer pprof",
                              .pprof_len = 20,
                              .tree = "t2",
                              .tree_len = 2,
                              .samples = 99,
                              .now_ms = T0 + 9999};
    assert_int_equal(store_profile_put(f->st, &p), -EEXIST);
    assert_non_null(strstr(store_errmsg(f->st), "already has a profile"));
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);

    void *buf;
    size_t n;
    assert_int_equal(store_profile_get(f->st, sid, &buf, &n), 0);
    assert_int_equal(n, 11);
    assert_memory_equal(buf, "first pprof", 11);
    free(buf);
    struct store_session s;
    assert_int_equal(store_session_get(f->st, sid, &s), 0);
    assert_int_equal(s.profile_bytes, 11);
    assert_int_equal(s.samples, 10);
    assert_int_equal(s.updated_ms, T0 + 500);
}

static void test_failed_writes_change_nothing(void **state)
{
    struct fx *f = *state;
    int64_t sid = new_session(f->st, "checkout", "web-1", "profile-now", T0);
    struct store_token t = {.role = "admin", .name = "a", .hash = "abc", .created_ms = T0};
    assert_int_equal(store_token_create(f->st, &t), 0);
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);

    /* Profile of an unknown session. */
    struct store_profile p = {.session_id = sid + 1, .pprof = "x", .pprof_len = 1, .now_ms = T0};
    assert_int_equal(store_profile_put(f->st, &p), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "not found"));
    /* Unknown ids, duplicate hash, deleting an absent setting. */
    struct store_session s = session_of("a", "b", "c", T0);
    s.id = sid + 1;
    assert_int_equal(store_session_update(f->st, &s), -ENOENT);
    struct store_token t2 = {.role = "reader", .name = "b", .hash = "abc", .created_ms = T0};
    assert_int_equal(store_token_create(f->st, &t2), -EEXIST);
    assert_int_equal(store_token_revoke(f->st, t.id + 1, T0), -ENOENT);
    assert_int_equal(store_setting_put(f->st, "triggers", "nobody", NULL), -ENOENT);
    /* Strings that do not fit: refused, never cut. */
    struct store_session big = session_of("checkout", "web-1", "profile-now", T0);
    memset(big.app, 'a', sizeof big.app); /* no NUL within the array */
    assert_int_equal(store_session_create(f->st, &big), -EINVAL);
    assert_non_null(strstr(store_errmsg(f->st), "app"));
    struct store_agent a = agent_of("x", "y", T0);
    memset(a.cmdline, 'c', sizeof a.cmdline);
    assert_int_equal(store_agent_register(f->st, &a), -EINVAL);
    char longapp[STORE_APP_MAX + 1];
    memset(longapp, 'z', STORE_APP_MAX);
    longapp[STORE_APP_MAX] = '\0';
    assert_int_equal(store_setting_put(f->st, "triggers", longapp, "{}"), -EINVAL);
    struct store_profile_now r = {.duration_s = 1};
    memset(r.app, 'q', sizeof r.app);
    assert_int_equal(store_profile_now_create(f->st, &r), -EINVAL);
    /* Empty profile. */
    p = (struct store_profile){.session_id = sid, .pprof = "", .pprof_len = 0};
    assert_int_equal(store_profile_put(f->st, &p), -EINVAL);

    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    struct store_session g;
    assert_int_equal(store_session_get(f->st, sid, &g), 0);
    assert_string_equal(g.state, "running");
    assert_int_equal(g.profile_bytes, 0);
}

static void test_profile_get_unknown_or_missing_is_enoent(void **state)
{
    struct fx *f = *state;
    int64_t sid = new_session(f->st, "checkout", "web-1", "profile-now", T0);
    void *buf = (void *)1;
    size_t n = 1;
    assert_int_equal(store_profile_get(f->st, sid, &buf, &n), -ENOENT);
    assert_null(buf);
    assert_non_null(strstr(store_errmsg(f->st), "has no profile"));
    assert_int_equal(store_tree_get(f->st, sid + 5, &buf, &n), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "not found"));
}

struct walk {
    int64_t ids[64];
    size_t n;
    size_t stop_after; /* 0 = never */
    size_t bytes;
};

static int walk_fn(void *ctx, int64_t session_id, const void *blob, size_t len)
{
    struct walk *w = ctx;
    (void)blob;
    if (w->n < 64)
        w->ids[w->n] = session_id;
    w->n++;
    w->bytes += len;
    return (w->stop_after && w->n == w->stop_after) ? 42 : 0;
}

static void test_tree_foreach_streams_newest_first_with_filters(void **state)
{
    struct fx *f = *state;
    int64_t ids[10];
    for (int i = 0; i < 10; i++) {
        ids[i] = new_session(f->st, i % 2 ? "search" : "checkout", "web-1", "profile-now",
                             T0 + i * 1000);
        if (i != 6) /* one session without a profile */
            put_profile(f->st, ids[i], "pprof-bytes", i % 2 ? "tree-s" : "tree-c", 1);
    }
    struct walk w = {0};
    assert_int_equal(store_tree_foreach(f->st, NULL, walk_fn, &w), 0);
    assert_int_equal(w.n, 9);
    assert_int_equal(w.ids[0], ids[9]);
    assert_int_equal(w.ids[1], ids[8]);
    assert_int_equal(w.ids[2], ids[7]); /* 6 has no profile */
    assert_int_equal(w.ids[8], ids[0]);

    struct store_session_filter fl = {.app = "checkout", .from_ms = T0 + 2000};
    w = (struct walk){0};
    assert_int_equal(store_tree_foreach(f->st, &fl, walk_fn, &w), 0);
    assert_int_equal(w.n, 3); /* 8, 4, 2 */
    assert_int_equal(w.ids[0], ids[8]);
    assert_int_equal(w.ids[2], ids[2]);
    assert_int_equal(w.bytes, 3 * strlen("tree-c"));

    fl = (struct store_session_filter){.limit = 2};
    w = (struct walk){0};
    assert_int_equal(store_tree_foreach(f->st, &fl, walk_fn, &w), 0);
    assert_int_equal(w.n, 2);

    w = (struct walk){.stop_after = 3};
    assert_int_equal(store_tree_foreach(f->st, NULL, walk_fn, &w), 42);
    assert_int_equal(w.n, 3);

    fl = (struct store_session_filter){.app = "search"};
    w = (struct walk){0};
    assert_int_equal(store_pprof_foreach(f->st, &fl, walk_fn, &w), 0);
    assert_int_equal(w.n, 5);
    assert_int_equal(w.bytes, 5 * strlen("pprof-bytes"));
}

/* A walk holds a read snapshot, never the write lock: the callback can
 * write (and read on another connection), and the walk does not see
 * what was written after it started. */
struct write_during {
    struct store *st;
    size_t seen;
    int64_t written;
    int rc;
};

static int write_during_fn(void *ctx, int64_t session_id, const void *blob, size_t len)
{
    struct write_during *w = ctx;
    (void)blob;
    (void)len;
    w->seen++;
    if (w->written == 0) {
        w->written = -1;
        struct store_session s = session_of("checkout", "web-9", "profile-now", T0 + 99000);
        w->rc = store_session_create(w->st, &s);
        if (w->rc == 0) {
            w->written = s.id;
            struct store_profile p = {.session_id = s.id, .pprof = "p", .pprof_len = 1,
                                      .tree = "t", .tree_len = 1, .now_ms = T0};
            w->rc = store_profile_put(w->st, &p);
        }
        struct store_session g;
        if (w->rc == 0)
            w->rc = store_session_get(w->st, session_id, &g);
    }
    return 0;
}

static void test_writes_proceed_during_tree_foreach(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 3; i++)
        put_profile(f->st, new_session(f->st, "checkout", "web-1", "profile-now", T0 + i),
                    "pprof", "tree", 1);
    struct write_during w = {.st = f->st};
    assert_int_equal(store_tree_foreach(f->st, NULL, write_during_fn, &w), 0);
    assert_int_equal(w.rc, 0);
    assert_true(w.written > 0);
    assert_int_equal(w.seen, 3); /* the walk's snapshot */
    struct walk after = {0};
    assert_int_equal(store_tree_foreach(f->st, NULL, walk_fn, &after), 0);
    assert_int_equal(after.n, 4);
    assert_int_equal(after.ids[0], w.written);
}

static void test_data_survives_reopen_without_rerunning_migrations(void **state)
{
    struct fx *f = *state;
    int64_t sid = new_session(f->st, "checkout", "web-1", "profile-now", T0);
    put_profile(f->st, sid, "the pprof", "the tree", 5);
    assert_int_equal(store_setting_put(f->st, "triggers", "", "{\"cpu\":{}}"), 0);

    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int64_t nver = sql_int(db, "SELECT COUNT(*) FROM schema_version");
    int64_t applied = sql_int(db, "SELECT MAX(applied_ms) FROM schema_version");
    sqlite3_close(db);
    assert_true(nver >= 1);

    reopen(f);
    reopen(f);
    void *buf;
    size_t n;
    assert_int_equal(store_profile_get(f->st, sid, &buf, &n), 0);
    assert_int_equal(n, 9);
    assert_memory_equal(buf, "the pprof", 9);
    free(buf);
    char *json;
    assert_int_equal(store_setting_get(f->st, "triggers", "", &json), 0);
    assert_string_equal(json, "{\"cpu\":{}}");
    free(json);
    int64_t v;
    assert_int_equal(store_settings_version(f->st, &v), 0);
    assert_int_equal(v, 1);
    /* New ids continue after the old ones. */
    assert_true(new_session(f->st, "checkout", "web-1", "profile-now", T0) > sid);

    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sql_int(db, "SELECT COUNT(*) FROM schema_version"), nver);
    assert_int_equal(sql_int(db, "SELECT MAX(applied_ms) FROM schema_version"), applied);
    char *mode = NULL;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    mode = strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(db);
    assert_string_equal(mode, "wal");
    free(mode);
}

static void test_settings_round_trip_and_version_increments(void **state)
{
    struct fx *f = *state;
    int64_t v;
    assert_int_equal(store_settings_version(f->st, &v), 0);
    assert_int_equal(v, 0);
    char *json = (char *)1;
    assert_int_equal(store_setting_get(f->st, "triggers", "", &json), -ENOENT);
    assert_null(json);

    assert_int_equal(store_setting_put(f->st, "triggers", "", "{\"a\":1}"), 0);
    assert_int_equal(store_setting_put(f->st, "triggers", "checkout", "{\"a\":2}"), 0);
    assert_int_equal(store_setting_put(f->st, "triggers", "search", "{\"a\":3}"), 0);
    assert_int_equal(store_setting_put(f->st, "default_sampling", "billing", "{}"), 0);
    assert_int_equal(store_setting_put(f->st, "triggers", "", "{\"a\":4}"), 0); /* overwrite */
    assert_int_equal(store_settings_version(f->st, &v), 0);
    assert_int_equal(v, 5);

    assert_int_equal(store_setting_get(f->st, "triggers", "", &json), 0);
    assert_string_equal(json, "{\"a\":4}");
    free(json);
    assert_int_equal(store_setting_get(f->st, "triggers", "checkout", &json), 0);
    assert_string_equal(json, "{\"a\":2}");
    free(json);
    assert_int_equal(store_setting_get(f->st, "triggers", NULL, &json), 0); /* NULL = "" */
    assert_string_equal(json, "{\"a\":4}");
    free(json);

    char(*apps)[STORE_APP_MAX];
    size_t n;
    assert_int_equal(store_setting_apps(f->st, "triggers", &apps, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(apps[0], "checkout");
    assert_string_equal(apps[1], "search");
    free(apps);

    assert_int_equal(store_setting_put(f->st, "triggers", "checkout", NULL), 0); /* delete */
    assert_int_equal(store_setting_get(f->st, "triggers", "checkout", &json), -ENOENT);
    assert_int_equal(store_settings_version(f->st, &v), 0);
    assert_int_equal(v, 6);
    assert_int_equal(store_setting_put(f->st, "triggers", "checkout", NULL), -ENOENT);
    assert_int_equal(store_settings_version(f->st, &v), 0);
    assert_int_equal(v, 6);
}

static void test_profile_now_since_filters_by_id_app_expiry(void **state)
{
    struct fx *f = *state;
    int64_t last;
    assert_int_equal(store_profile_now_last_id(f->st, &last), 0);
    assert_int_equal(last, 0);
    struct store_profile_now r[4] = {
        {.app = "", .duration_s = 120, .created_ms = T0},           /* every app */
        {.app = "checkout", .duration_s = 120, .created_ms = T0},   /* ours */
        {.app = "search", .duration_s = 120, .created_ms = T0},     /* not ours */
        {.app = "checkout", .duration_s = 10, .created_ms = T0, .token_id = 3}, /* short */
    };
    for (int i = 0; i < 4; i++) {
        assert_int_equal(store_profile_now_create(f->st, &r[i]), 0);
        if (i)
            assert_true(r[i].id > r[i - 1].id);
    }
    assert_int_equal(store_profile_now_last_id(f->st, &last), 0);
    assert_int_equal(last, r[3].id);

    struct store_profile_now *v;
    size_t n;
    assert_int_equal(store_profile_now_since(f->st, 0, "checkout", T0 + 5000, &v, &n), 0);
    assert_int_equal(n, 3); /* oldest first */
    assert_int_equal(v[0].id, r[0].id);
    assert_int_equal(v[1].id, r[1].id);
    assert_int_equal(v[2].id, r[3].id);
    assert_int_equal(v[2].token_id, 3);
    assert_string_equal(v[2].app, "checkout");
    assert_int_equal(v[2].duration_s, 10);
    free(v);
    /* After id r[1]; the 10 s one has expired by T0 + 10 s. */
    assert_int_equal(store_profile_now_since(f->st, r[1].id, "checkout", T0 + 5000, &v, &n), 0);
    assert_int_equal(n, 1);
    free(v);
    assert_int_equal(store_profile_now_since(f->st, r[1].id, "checkout", T0 + 10000, &v, &n), 0);
    assert_int_equal(n, 0);
    free(v);
    assert_int_equal(store_profile_now_since(f->st, 0, "search", T0 + 119999, &v, &n), 0);
    assert_int_equal(n, 2);
    free(v);
    assert_int_equal(store_profile_now_since(f->st, 0, "search", T0 + 120000, &v, &n), 0);
    assert_int_equal(n, 0);
    free(v);

    assert_int_equal(store_profile_now_recent(f->st, 2, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, r[3].id);
    assert_int_equal(v[1].id, r[2].id);
    free(v);
}

static void test_tokens_find_ignores_revoked_and_touch_coalesces(void **state)
{
    struct fx *f = *state;
    struct store_token a = {.name = "admin", .role = "admin", .created_ms = T0};
    struct store_token b = {.name = "ci", .role = "reader", .created_ms = T0 + 1};
    memset(a.hash, 'a', 64);
    memset(b.hash, 'b', 64);
    assert_int_equal(store_token_create(f->st, &a), 0);
    assert_int_equal(store_token_create(f->st, &b), 0);
    assert_true(b.id > a.id);

    struct store_token g;
    assert_int_equal(store_token_find(f->st, b.hash, &g), 0);
    assert_int_equal(g.id, b.id);
    assert_string_equal(g.name, "ci");
    assert_string_equal(g.role, "reader");
    assert_string_equal(g.hash, b.hash);
    assert_int_equal(g.created_ms, T0 + 1);
    assert_int_equal(g.last_used_ms, 0);
    assert_int_equal(g.revoked_ms, 0);

    int64_t n;
    assert_int_equal(store_token_count(f->st, "reader", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_token_count(f->st, NULL, &n), 0);
    assert_int_equal(n, 2);

    assert_int_equal(store_token_revoke(f->st, b.id, T0 + 100), 0);
    assert_int_equal(store_token_find(f->st, b.hash, &g), -ENOENT);
    assert_int_equal(store_token_revoke(f->st, b.id, T0 + 200), -ENOENT);
    assert_int_equal(store_token_get(f->st, b.id, &g), 0);
    assert_int_equal(g.revoked_ms, T0 + 100);
    assert_int_equal(store_token_count(f->st, "reader", &n), 0);
    assert_int_equal(n, 0);

    struct store_token *v;
    size_t k;
    assert_int_equal(store_token_list(f->st, &v, &k), 0);
    assert_int_equal(k, 2); /* revoked ones included, by id */
    assert_int_equal(v[0].id, a.id);
    assert_int_equal(v[1].revoked_ms, T0 + 100);
    free(v);

    /* One write a minute at most. */
    assert_int_equal(store_token_touch(f->st, a.id, T0 + 1000), 0);
    assert_int_equal(store_token_get(f->st, a.id, &g), 0);
    assert_int_equal(g.last_used_ms, T0 + 1000);
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    assert_int_equal(store_token_touch(f->st, a.id, T0 + 30000), 0);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    assert_int_equal(store_token_get(f->st, a.id, &g), 0);
    assert_int_equal(g.last_used_ms, T0 + 1000);
    assert_int_equal(store_token_touch(f->st, a.id, T0 + 61000), 0);
    assert_int_equal(store_token_get(f->st, a.id, &g), 0);
    assert_int_equal(g.last_used_ms, T0 + 61000);
}

static void test_retention_purge_deletes_old_sessions_with_profiles(void **state)
{
    struct fx *f = *state;
    /* More than one purge batch of old sessions, a few new ones. */
    const int old = 1100;
    for (int i = 0; i < old; i++) {
        int64_t id = new_session(f->st, "checkout", "web-1", "default-sampling", T0 + i);
        if (i % 100 == 0)
            put_profile(f->st, id, "old pprof", "old tree", 1);
    }
    int64_t keep = new_session(f->st, "checkout", "web-1", "profile-now", T0 + 100000);
    put_profile(f->st, keep, "new pprof", "new tree", 1);
    struct store_agent gone = agent_of("checkout", "web-1", T0);
    struct store_agent stopped = agent_of("checkout", "web-2", T0 + 100000);
    struct store_agent alive = agent_of("checkout", "web-3", T0 + 100000);
    assert_int_equal(store_agent_register(f->st, &gone), 0);
    assert_int_equal(store_agent_register(f->st, &stopped), 0);
    assert_int_equal(store_agent_register(f->st, &alive), 0);
    assert_int_equal(store_agent_stop(f->st, stopped.id, T0 + 5), 0);

    int64_t deleted;
    assert_int_equal(store_retention_purge(f->st, T0 + 50000, &deleted), 0);
    assert_int_equal(deleted, old);

    struct store_session *v;
    size_t n;
    int64_t total;
    assert_int_equal(store_session_list(f->st, NULL, &v, &n, &total), 0);
    assert_int_equal(total, 1);
    assert_int_equal(v[0].id, keep);
    free(v);
    struct walk w = {0};
    assert_int_equal(store_pprof_foreach(f->st, NULL, walk_fn, &w), 0);
    assert_int_equal(w.n, 1);
    struct store_agent a;
    assert_int_equal(store_agent_get(f->st, gone.id, &a), -ENOENT);
    assert_int_equal(store_agent_get(f->st, stopped.id, &a), -ENOENT);
    assert_int_equal(store_agent_get(f->st, alive.id, &a), 0);

    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sql_int(db, "SELECT COUNT(*) FROM profiles"), 1);
    sqlite3_close(db);
    char *report;
    assert_int_equal(store_check(f->st, &report), 0);
    assert_string_equal(report, "ok");
    free(report);
}

/* ------------------------------------------------------------------ */
/* Concurrency                                                         */

#define WRITERS 8
#define PER_WRITER 60
#define BLOB_LEN 2048

struct race {
    struct store *st;
    int index;
    int failures;
    int done_writers; /* under lock */
    pthread_mutex_t *lock;
    int *stop;
    size_t reads;
};

static void *writer_main(void *arg)
{
    struct race *r = arg;
    char app[32];
    snprintf(app, sizeof app, "app-%d", r->index);
    unsigned char blob[BLOB_LEN];
    for (int i = 0; i < PER_WRITER; i++) {
        struct store_session s = session_of(app, "web-1", "load-test", T0 + i);
        if (store_session_create(r->st, &s) != 0) {
            r->failures++;
            continue;
        }
        memset(blob, (int)(s.id & 0xff), sizeof blob);
        struct store_profile p = {.session_id = s.id,
                                  .pprof = blob,
                                  .pprof_len = sizeof blob,
                                  .tree = blob,
                                  .tree_len = 100,
                                  .samples = s.id,
                                  .now_ms = T0 + i};
        if (store_profile_put(r->st, &p) != 0)
            r->failures++;
        if (store_token_touch(r->st, 1 + r->index, T0 + i * 1000) != 0)
            r->failures++;
    }
    return NULL;
}

struct check_blob {
    size_t n;
    int bad;
};

static int check_blob_fn(void *ctx, int64_t session_id, const void *blob, size_t len)
{
    struct check_blob *c = ctx;
    const unsigned char *b = blob;
    c->n++;
    for (size_t i = 0; i < len; i++)
        if (b[i] != (unsigned char)(session_id & 0xff))
            c->bad++;
    return 0;
}

static void *reader_main(void *arg)
{
    struct race *r = arg;
    for (;;) {
        pthread_mutex_lock(r->lock);
        int stop = *r->stop;
        pthread_mutex_unlock(r->lock);
        if (stop)
            break;
        struct store_session *v;
        size_t n;
        int64_t total;
        struct store_session_filter fl = {.limit = 100, .with_profile = r->index % 2};
        if (store_session_list(r->st, &fl, &v, &n, &total) != 0 || (int64_t)n > total)
            r->failures++;
        else
            free(v);
        struct check_blob c = {0};
        if (store_tree_foreach(r->st, NULL, check_blob_fn, &c) != 0 || c.bad)
            r->failures++;
        r->reads++;
    }
    return NULL;
}

static void test_eight_writers_two_readers_lose_nothing(void **state)
{
    struct fx *f = *state;
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    int stop = 0;
    struct race w[WRITERS], rd[2];
    pthread_t wt[WRITERS], rt[2];
    for (int i = 0; i < WRITERS; i++) {
        struct store_token t = {.role = "agent", .created_ms = T0};
        snprintf(t.hash, sizeof t.hash, "hash-%d", i);
        assert_int_equal(store_token_create(f->st, &t), 0);
    }
    for (int i = 0; i < 2; i++) {
        rd[i] = (struct race){.st = f->st, .index = i, .lock = &lock, .stop = &stop};
        assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &rd[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct race){.st = f->st, .index = i};
        assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(wt[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    pthread_mutex_lock(&lock);
    stop = 1;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < 2; i++) {
        pthread_join(rt[i], NULL);
        assert_int_equal(rd[i].failures, 0);
        assert_true(rd[i].reads > 0);
    }

    struct store_session *v;
    size_t n;
    int64_t total;
    for (int i = 0; i < WRITERS; i++) {
        char app[32];
        snprintf(app, sizeof app, "app-%d", i);
        struct store_session_filter fl = {.app = app, .with_profile = 1, .limit = 1000};
        assert_int_equal(store_session_list(f->st, &fl, &v, &n, &total), 0);
        assert_int_equal(total, PER_WRITER);
        for (size_t k = 0; k < n; k++) {
            assert_string_equal(v[k].state, "completed");
            assert_int_equal(v[k].samples, v[k].id);
        }
        free(v);
    }
    struct check_blob c = {0};
    assert_int_equal(store_pprof_foreach(f->st, NULL, check_blob_fn, &c), 0);
    assert_int_equal(c.n, WRITERS * PER_WRITER);
    assert_int_equal(c.bad, 0);
    char *report;
    assert_int_equal(store_check(f->st, &report), 0);
    assert_string_equal(report, "ok");
    free(report);
    reopen(f);
    assert_int_equal(store_check(f->st, &report), 0);
    assert_string_equal(report, "ok");
    free(report);
}

/* The message belongs to the thread that failed. */
static void *fail_once(void *arg)
{
    struct store *st = arg;
    struct store_session s;
    store_session_get(st, 999999, &s);
    return NULL;
}

static void test_errmsg_is_per_thread(void **state)
{
    struct fx *f = *state;
    struct store_agent a;
    assert_int_equal(store_agent_get(f->st, 7, &a), -ENOENT);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fail_once, f->st), 0);
    pthread_join(t, NULL);
    assert_string_equal(store_errmsg(f->st), "agent 7 not found");
    int64_t v;
    assert_int_equal(store_settings_version(f->st, &v), 0);
    assert_string_equal(store_errmsg(f->st), "");
}

/* ------------------------------------------------------------------ */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_refuses_postgres_and_unknown_schemes),
        cmocka_unit_test_setup_teardown(test_open_accepts_sqlite_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_round_trip_heartbeat_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_list_filters_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_round_trip_and_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_list_filters_pages_and_totals, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_profile_round_trip_completes_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_profile_put_twice_is_eexist_and_first_stays, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_writes_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile_get_unknown_or_missing_is_enoent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tree_foreach_streams_newest_first_with_filters,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_writes_proceed_during_tree_foreach, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_data_survives_reopen_without_rerunning_migrations,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_round_trip_and_version_increments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_profile_now_since_filters_by_id_app_expiry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tokens_find_ignores_revoked_and_touch_coalesces,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_purge_deletes_old_sessions_with_profiles,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_eight_writers_two_readers_lose_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_errmsg_is_per_thread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
