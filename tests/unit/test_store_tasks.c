/*
 * test_store_tasks.c — the store's active profiling on real SQLite files
 * (fixtures in store_fx.h): tasks, their agents, log and expiry, captures
 * and their limit (exact under 8 claiming threads), snapshots, traces,
 * and their retention.
 */
#include "store_fx.h"
/* Active profiling: tasks, their agents and log, captures, traces     */

#define MINUTE 60000LL

static struct store_task task_of(const char *app, const char *iface, int64_t created,
                                 int64_t duration_min, int64_t max)
{
    struct store_task t = {0};
    snprintf(t.app, sizeof t.app, "%s", app);
    snprintf(t.interface, sizeof t.interface, "%s", iface);
    snprintf(t.creator, sizeof t.creator, "ops-token");
    t.token_id = 7;
    t.duration_min = duration_min;
    t.threshold_ms = 200;
    t.frequency_ms = 100;
    t.max_samples = max;
    t.created_ms = created;
    t.ends_ms = created + duration_min * MINUTE;
    return t;
}

static int64_t new_task(struct store *st, const char *app, const char *iface, int64_t created,
                        int64_t duration_min, int64_t max)
{
    struct store_task t = task_of(app, iface, created, duration_min, max);
    assert_int_equal(store_task_create(st, &t), 0);
    assert_true(t.id > 0);
    return t.id;
}

static int64_t new_agent(struct store *st, const char *app, const char *instance, int64_t pid)
{
    struct store_agent a = agent_of(app, instance, T0);
    a.pid = pid;
    assert_int_equal(store_agent_register(st, &a), 0);
    return a.id;
}

static struct store_capture capture_of(int64_t task_id, int64_t agent_id, const char *trace)
{
    struct store_capture c = {.task_id = task_id, .agent_id = agent_id};
    snprintf(c.trace_id, sizeof c.trace_id, "%s", trace);
    snprintf(c.interface, sizeof c.interface, "GET /slow");
    snprintf(c.peer, sizeof c.peer, "10.0.0.7:51234");
    c.start_ms = T0 + 10;
    c.response_code = 200;
    c.total_ms = 1502;
    c.snapshots = 13;
    return c;
}

static int64_t task_version(struct store *st)
{
    int64_t v = -1;
    assert_int_equal(store_task_version(st, &v), 0);
    return v;
}

static void test_task_create_get_log_and_version(void **state)
{
    struct fx *f = *state;
    assert_int_equal(task_version(f->st), 0);
    struct store_task t = task_of("checkout", "GET /slow", T0, 5, 10);
    snprintf(t.state, sizeof t.state, "garbage"); /* the store sets it */
    t.captures = 99;
    assert_int_equal(store_task_create(f->st, &t), 0);
    assert_string_equal(t.state, "running");
    assert_int_equal(t.captures, 0);
    assert_int_equal(task_version(f->st), 1);

    struct store_task g;
    assert_int_equal(store_task_get(f->st, t.id, &g), 0);
    assert_int_equal(g.id, t.id);
    assert_string_equal(g.app, "checkout");
    assert_string_equal(g.interface, "GET /slow");
    assert_int_equal(g.duration_min, 5);
    assert_int_equal(g.threshold_ms, 200);
    assert_int_equal(g.frequency_ms, 100);
    assert_int_equal(g.max_samples, 10);
    assert_string_equal(g.state, "running");
    assert_int_equal(g.token_id, 7);
    assert_string_equal(g.creator, "ops-token");
    assert_int_equal(g.created_ms, T0);
    assert_int_equal(g.started_ms, 0);
    assert_int_equal(g.ends_ms, T0 + 5 * MINUTE);
    assert_int_equal(g.ended_ms, 0);
    assert_int_equal(g.captures, 0);

    struct store_task_log *l;
    size_t n;
    assert_int_equal(store_task_logs(f->st, t.id, &l, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].event, "created");
    assert_int_equal(l[0].ts_ms, T0);
    assert_int_equal(l[0].agent_id, 0);
    assert_int_equal(l[0].task_id, t.id);
    assert_string_equal(l[0].message, "created by ops-token: app 'checkout', interface "
                                      "'GET /slow', 5 min, threshold 200 ms, every 100 ms, "
                                      "max 10 captures");
    free(l);

    assert_int_equal(store_task_get(f->st, t.id + 1, &g), -ENOENT);
    char want[64];
    snprintf(want, sizeof want, "task %" PRId64 " not found", t.id + 1);
    assert_string_equal(store_errmsg(f->st), want);

    /* Refusals write nothing and bump nothing. */
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    struct store_task bad = task_of("", "GET /slow", T0, 5, 10);
    assert_int_equal(store_task_create(f->st, &bad), -EINVAL);
    bad = task_of("checkout", "GET /slow", T0, 5, 0);
    assert_int_equal(store_task_create(f->st, &bad), -EINVAL);
    bad = task_of("checkout", "GET /slow", T0, 5, 3);
    bad.ends_ms = T0;
    assert_int_equal(store_task_create(f->st, &bad), -EINVAL);
    bad = task_of("checkout", "GET /slow", T0, 5, 3);
    memset(bad.interface, 'i', sizeof bad.interface); /* no NUL within */
    assert_int_equal(store_task_create(f->st, &bad), -EINVAL);
    assert_non_null(strstr(store_errmsg(f->st), "interface"));
    assert_int_equal(store_task_create(f->st, NULL), -EINVAL);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    assert_int_equal(task_version(f->st), 1);
}

static void test_task_list_filters_by_overlap_app_state(void **state)
{
    struct fx *f = *state;
    int64_t a = new_task(f->st, "a", "GET /slow", T0, 5, 3);          /* ends T0+300000 */
    int64_t b = new_task(f->st, "a", "GET /slow", T0 + 1000, 5, 3);   /* cancelled T0+2000 */
    int64_t c = new_task(f->st, "b", "GET /slow", T0 + 400000, 5, 3); /* ends T0+700000 */
    assert_int_equal(store_task_cancel(f->st, b, T0 + 2000, "alice"), 0);

    struct store_task *v;
    size_t n;
    assert_int_equal(store_task_list(f->st, NULL, &v, &n), 0);
    assert_int_equal(n, 3); /* newest first */
    assert_int_equal(v[0].id, c);
    assert_int_equal(v[1].id, b);
    assert_int_equal(v[2].id, a);
    free(v);

    /* From: still running (or planned to) at or after it. */
    struct store_task_filter fl = {.from_ms = T0 + 100000};
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, c);
    assert_int_equal(v[1].id, a);
    free(v);
    /* To: created before it. */
    fl = (struct store_task_filter){.to_ms = T0 + 1000};
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, a);
    free(v);
    /* [from, to): an end equal to from overlaps, a creation equal to to
     * does not. */
    fl = (struct store_task_filter){.from_ms = T0 + 2000, .to_ms = T0 + 400000};
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, b);
    assert_int_equal(v[1].id, a);
    free(v);
    fl = (struct store_task_filter){.from_ms = T0 + 2001, .to_ms = T0 + 400001};
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, c);
    assert_int_equal(v[1].id, a);
    free(v);

    fl = (struct store_task_filter){.app = "a"};
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, b);
    free(v);
    fl = (struct store_task_filter){.app = "a", .state = "cancelled"};
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, b);
    assert_string_equal(v[0].state, "cancelled");
    assert_int_equal(v[0].ended_ms, T0 + 2000);
    free(v);
    fl = (struct store_task_filter){.state = "expired"};
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);

    /* Limits: 0 = 100, at most 10000. */
    for (int i = 0; i < 102; i++)
        new_task(f->st, "many", "GET /x", T0 + i, 5, 1);
    fl = (struct store_task_filter){.app = "many"};
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 100);
    assert_int_equal(v[0].created_ms, T0 + 101);
    free(v);
    fl.limit = 7;
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), 0);
    assert_int_equal(n, 7);
    free(v);
    fl.limit = 10001;
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), -EINVAL);
    char longapp[STORE_APP_MAX + 1];
    memset(longapp, 'z', STORE_APP_MAX);
    longapp[STORE_APP_MAX] = '\0';
    fl = (struct store_task_filter){.app = longapp};
    assert_int_equal(store_task_list(f->st, &fl, &v, &n), -EINVAL);
    assert_int_equal(store_task_list(f->st, NULL, NULL, &n), -EINVAL);
}

static void test_task_active_lists_running_unexpired_oldest_first(void **state)
{
    struct fx *f = *state;
    int64_t x = new_task(f->st, "a", "GET /slow", T0, 5, 3);
    int64_t y = new_task(f->st, "a", "GET /other", T0 + 10, 10, 3);
    int64_t z = new_task(f->st, "a", "GET /slow", T0 + 20, 5, 3);
    new_task(f->st, "ab", "GET /slow", T0 + 30, 5, 3); /* exact app match only */
    assert_int_equal(store_task_cancel(f->st, z, T0 + 40, "alice"), 0);

    struct store_task *v;
    size_t n;
    assert_int_equal(store_task_active(f->st, "a", T0 + 100, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, x);
    assert_int_equal(v[1].id, y);
    assert_int_equal(v[1].threshold_ms, 200);
    free(v);
    /* At x's end it is no longer active, even before it is marked. */
    assert_int_equal(store_task_active(f->st, "a", T0 + 5 * MINUTE, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, y);
    free(v);
    assert_int_equal(store_task_active(f->st, "nobody", T0, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_task_active(f->st, "a", T0, NULL, &n), -EINVAL);
}

static void test_task_cancel_once_then_eexist(void **state)
{
    struct fx *f = *state;
    int64_t id = new_task(f->st, "checkout", "GET /slow", T0, 5, 10);
    assert_int_equal(task_version(f->st), 1);
    assert_int_equal(store_task_cancel(f->st, id, T0 + 5000, "alice"), 0);
    assert_int_equal(task_version(f->st), 2);
    struct store_task g;
    assert_int_equal(store_task_get(f->st, id, &g), 0);
    assert_string_equal(g.state, "cancelled");
    assert_int_equal(g.ended_ms, T0 + 5000);
    struct store_task_log *l;
    size_t n;
    assert_int_equal(store_task_logs(f->st, id, &l, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(l[1].event, "cancelled");
    assert_int_equal(l[1].ts_ms, T0 + 5000);
    assert_string_equal(l[1].message, "cancelled by alice after 0 of 10 captures");
    free(l);

    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    assert_int_equal(store_task_cancel(f->st, id, T0 + 6000, "bob"), -EEXIST);
    char want[96];
    snprintf(want, sizeof want, "task %" PRId64 " has already ended (cancelled)", id);
    assert_string_equal(store_errmsg(f->st), want);
    assert_int_equal(store_task_cancel(f->st, id + 1, T0 + 6000, "bob"), -ENOENT);
    /* Past its end a running task is expired, whether marked or not. */
    int64_t late = new_task(f->st, "checkout", "GET /slow", T0, 5, 10);
    v0 = data_version(&w);
    assert_int_equal(store_task_cancel(f->st, late, T0 + 5 * MINUTE, "bob"), -EEXIST);
    assert_non_null(strstr(store_errmsg(f->st), "(expired)"));
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    assert_int_equal(store_task_get(f->st, id, &g), 0);
    assert_int_equal(g.ended_ms, T0 + 5000);
    assert_int_equal(store_task_get(f->st, late, &g), 0);
    assert_string_equal(g.state, "running");
    assert_int_equal(task_version(f->st), 3);
}

static void test_task_expire_marks_due_tasks_at_their_end(void **state)
{
    struct fx *f = *state;
    int64_t a = new_task(f->st, "checkout", "GET /slow", T0, 5, 10);
    int64_t b = new_task(f->st, "checkout", "GET /slow", T0, 10, 10);
    int64_t v = task_version(f->st);
    int64_t n = -1;
    assert_int_equal(store_task_expire(f->st, T0 + 5 * MINUTE - 1, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(task_version(f->st), v);

    /* Called late: ended_ms is still the planned end. */
    assert_int_equal(store_task_expire(f->st, T0 + 7 * MINUTE, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(task_version(f->st), v + 1);
    struct store_task g;
    assert_int_equal(store_task_get(f->st, a, &g), 0);
    assert_string_equal(g.state, "expired");
    assert_int_equal(g.ended_ms, T0 + 5 * MINUTE);
    assert_int_equal(store_task_get(f->st, b, &g), 0);
    assert_string_equal(g.state, "running");
    struct store_task_log *l;
    size_t nl;
    assert_int_equal(store_task_logs(f->st, a, &l, &nl), 0);
    assert_int_equal(nl, 2);
    assert_string_equal(l[1].event, "expired");
    assert_int_equal(l[1].ts_ms, T0 + 5 * MINUTE);
    assert_string_equal(l[1].message, "expired after 5 min with 0 of 10 captures");
    free(l);

    /* Nothing due: no write at all, no bump. */
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    assert_int_equal(store_task_expire(f->st, T0 + 7 * MINUTE, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_task_expire(f->st, T0 + 8 * MINUTE, NULL), 0);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    assert_int_equal(task_version(f->st), v + 1);
    /* An ended task never expires again; a cancelled one never expires. */
    assert_int_equal(store_task_cancel(f->st, b, T0 + 8 * MINUTE, "alice"), 0);
    assert_int_equal(store_task_expire(f->st, T0 + 60 * MINUTE, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_task_get(f->st, b, &g), 0);
    assert_string_equal(g.state, "cancelled");
}

static void test_task_deliver_events_and_agents(void **state)
{
    struct fx *f = *state;
    int64_t t = new_task(f->st, "checkout", "GET /slow", T0, 5, 10);
    int64_t a1 = new_agent(f->st, "checkout", "web-1", 4242);
    int64_t a2 = new_agent(f->st, "checkout", "web-2", 4343);

    assert_int_equal(store_task_deliver(f->st, t, a1, T0 + 100), 0);
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    assert_int_equal(store_task_deliver(f->st, t, a1, T0 + 200), -EEXIST);
    assert_non_null(strstr(store_errmsg(f->st), "already delivered"));
    assert_int_equal(store_task_deliver(f->st, t + 1, a1, T0 + 200), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "task"));
    assert_int_equal(store_task_deliver(f->st, t, a2 + 1, T0 + 200), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "agent"));
    assert_int_equal(store_task_agent_event(f->st, t, a1, "paused", NULL, T0), -EINVAL);
    assert_int_equal(store_task_agent_event(f->st, t, a1, NULL, NULL, T0), -EINVAL);
    assert_int_equal(store_task_agent_event(f->st, t + 1, a1, "started", NULL, T0), -ENOENT);
    assert_int_equal(store_task_agent_event(f->st, t, a2 + 1, "started", NULL, T0), -ENOENT);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);

    assert_int_equal(store_task_agent_event(f->st, t, a1, "started", "", T0 + 150), 0);
    /* An agent's event before its delivery makes its row. */
    assert_int_equal(store_task_agent_event(f->st, t, a2, "started", NULL, T0 + 300), 0);
    assert_int_equal(store_task_agent_event(f->st, t, a2, "error", "snapshot failed: EPERM",
                                            T0 + 400),
                     0);
    assert_int_equal(store_task_agent_event(f->st, t, a1, "stopped", "task cancelled",
                                            T0 + 500),
                     0);
    struct store_task g;
    assert_int_equal(store_task_get(f->st, t, &g), 0);
    assert_int_equal(g.started_ms, T0 + 150); /* the first agent's start */

    struct store_task_agent *v;
    size_t n;
    assert_int_equal(store_task_agents(f->st, t, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].task_id, t);
    assert_int_equal(v[0].agent_id, a1);
    assert_string_equal(v[0].instance, "web-1");
    assert_int_equal(v[0].pid, 4242);
    assert_int_equal(v[0].delivered_ms, T0 + 100);
    assert_int_equal(v[0].started_ms, T0 + 150);
    assert_int_equal(v[0].stopped_ms, T0 + 500);
    assert_int_equal(v[0].captures, 0);
    assert_int_equal(v[1].agent_id, a2);
    assert_string_equal(v[1].instance, "web-2");
    assert_int_equal(v[1].pid, 4343);
    assert_int_equal(v[1].delivered_ms, T0 + 300);
    assert_int_equal(v[1].started_ms, T0 + 300);
    assert_int_equal(v[1].stopped_ms, 0);
    free(v);
    /* The second delivery of a2 is refused: its row exists. */
    assert_int_equal(store_task_deliver(f->st, t, a2, T0 + 600), -EEXIST);

    struct store_task_log *l;
    assert_int_equal(store_task_logs(f->st, t, &l, &n), 0);
    assert_int_equal(n, 6);
    const char *events[] = {"created", "delivered", "started", "started", "error", "stopped"};
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l[i].event, events[i]);
    char want[128];
    snprintf(want, sizeof want, "delivered to agent %" PRId64 " (web-1, pid 4242)", a1);
    assert_string_equal(l[1].message, want);
    assert_int_equal(l[1].agent_id, a1);
    snprintf(want, sizeof want, "error on agent %" PRId64 " (web-2, pid 4343): snapshot failed: "
             "EPERM", a2);
    assert_string_equal(l[4].message, want);
    snprintf(want, sizeof want, "stopped on agent %" PRId64 " (web-1, pid 4242): task cancelled",
             a1);
    assert_string_equal(l[5].message, want);
    free(l);

    /* Events to an ended task are still logged (a late "stopped"). */
    assert_int_equal(store_task_cancel(f->st, t, T0 + 700, "alice"), 0);
    assert_int_equal(store_task_agent_event(f->st, t, a2, "stopped", NULL, T0 + 800), 0);
    assert_int_equal(store_task_logs(f->st, t, &l, &n), 0);
    assert_string_equal(l[n - 1].event, "stopped");
    free(l);

    assert_int_equal(store_task_agents(f->st, t + 1, &v, &n), -ENOENT);
    assert_null(v);
}

static void test_task_log_add_orders_and_cuts_prose(void **state)
{
    struct fx *f = *state;
    int64_t t = new_task(f->st, "checkout", "GET /slow", T0, 5, 10);
    assert_int_equal(store_task_log_add(f->st, t, 3, "refused", "second", T0 + 10), 0);
    assert_int_equal(store_task_log_add(f->st, t, 3, "refused", "third", T0 + 10), 0);
    assert_int_equal(store_task_log_add(f->st, t, 0, "error", "first", T0 + 5), 0);
    assert_int_equal(store_task_log_add(f->st, t, 0, "error", NULL, T0 + 20), 0);
    /* A long message is cut to fit, never inside a character. */
    char big[1200];
    size_t k = 0;
    big[k++] = 'x';
    while (k + 2 < sizeof big) {
        memcpy(big + k, "\xc3\xa9", 2); /* é */
        k += 2;
    }
    big[k] = '\0';
    assert_int_equal(store_task_log_add(f->st, t, 0, "error", big, T0 + 30), 0);

    struct store_task_log *l;
    size_t n;
    assert_int_equal(store_task_logs(f->st, t, &l, &n), 0);
    assert_int_equal(n, 6);
    assert_string_equal(l[0].event, "created");
    /* Written after "third" with an earlier time: stamped at the latest
     * line's time, so the log keeps the order of writing. */
    assert_string_equal(l[1].message, "second");
    assert_int_equal(l[1].agent_id, 3);
    assert_string_equal(l[2].message, "third");
    assert_true(l[2].id > l[1].id);
    assert_string_equal(l[3].message, "first");
    assert_int_equal(l[3].ts_ms, T0 + 10);
    assert_string_equal(l[4].message, "");
    size_t len = strlen(l[5].message);
    assert_true(len <= STORE_MESSAGE_MAX - 1 && len >= STORE_MESSAGE_MAX - 3);
    assert_int_equal(len % 2, 1); /* "x" + whole é's */
    assert_memory_equal(l[5].message, big, len);
    free(l);

    assert_int_equal(store_task_log_add(f->st, t, 0, "whatever", "m", T0), -EINVAL);
    assert_int_equal(store_task_log_add(f->st, t, 0, NULL, "m", T0), -EINVAL);
    assert_int_equal(store_task_log_add(f->st, t + 1, 0, "error", "m", T0), -ENOENT);
    assert_int_equal(store_task_logs(f->st, t + 1, &l, &n), -ENOENT);
    assert_null(l);
    assert_int_equal(n, 0);
}

static void test_capture_claim_grants_slots_up_to_the_limit(void **state)
{
    struct fx *f = *state;
    int64_t t = new_task(f->st, "checkout", "GET /slow", T0, 5, 2);
    int64_t a1 = new_agent(f->st, "checkout", "web-1", 4242);
    int64_t a2 = new_agent(f->st, "checkout", "web-2", 4343);
    assert_int_equal(store_task_deliver(f->st, t, a1, T0 + 1), 0);
    int64_t v = task_version(f->st);

    char ts[STORE_KIND_MAX];
    struct store_capture c = capture_of(t, a1, "abc123");
    assert_int_equal(store_capture_claim(f->st, &c, T0 + 2000, ts), 0);
    assert_true(c.id > 0);
    assert_int_equal(c.slot, 1);
    assert_string_equal(c.app, "checkout");
    assert_string_equal(c.instance, "web-1");
    assert_int_equal(c.pid, 4242);
    assert_string_equal(c.state, "uploading");
    assert_int_equal(c.created_ms, T0 + 2000);
    assert_string_equal(ts, "running");
    assert_int_equal(task_version(f->st), v);

    struct store_capture g;
    assert_int_equal(store_capture_get(f->st, c.id, &g), 0);
    assert_int_equal(g.task_id, t);
    assert_int_equal(g.agent_id, a1);
    assert_int_equal(g.slot, 1);
    assert_string_equal(g.app, "checkout");
    assert_string_equal(g.instance, "web-1");
    assert_int_equal(g.pid, 4242);
    assert_string_equal(g.trace_id, "abc123");
    assert_string_equal(g.interface, "GET /slow");
    assert_int_equal(g.start_ms, T0 + 10);
    assert_int_equal(g.response_code, 200);
    assert_string_equal(g.peer, "10.0.0.7:51234");
    assert_int_equal(g.total_ms, 1502);
    assert_int_equal(g.snapshots, 13);
    assert_string_equal(g.state, "uploading");
    assert_int_equal(g.profile_bytes, 0);
    assert_int_equal(g.created_ms, T0 + 2000);

    /* The last slot ends the task, by an agent it was not delivered to. */
    struct store_capture c2 = capture_of(t, a2, "def456");
    c2.response_code = 0;
    c2.peer[0] = '\0';
    assert_int_equal(store_capture_claim(f->st, &c2, T0 + 3000, NULL), 0);
    assert_int_equal(c2.slot, 2);
    assert_int_equal(task_version(f->st), v + 1);
    struct store_task k;
    assert_int_equal(store_task_get(f->st, t, &k), 0);
    assert_string_equal(k.state, "limit-reached");
    assert_int_equal(k.ended_ms, T0 + 3000);
    assert_int_equal(k.captures, 2);

    /* Full: refused, nothing written. */
    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    struct store_capture c3 = capture_of(t, a1, "ghi789");
    assert_int_equal(store_capture_claim(f->st, &c3, T0 + 3500, ts), -EEXIST);
    assert_string_equal(ts, "limit-reached");
    char want[160];
    snprintf(want, sizeof want, "task %" PRId64 " has ended (limit-reached)", t);
    assert_string_equal(store_errmsg(f->st), want);
    assert_int_equal(c3.id, 0);
    assert_int_equal(c3.slot, 0);
    /* Unknown task or agent, wrong interface, bad values. */
    assert_int_equal(store_capture_claim(f->st, &(struct store_capture){0}, T0, ts), -EINVAL);
    c3 = capture_of(t + 1, a1, "x");
    assert_int_equal(store_capture_claim(f->st, &c3, T0 + 3500, ts), -ENOENT);
    assert_string_equal(ts, "");
    c3 = capture_of(t, a2 + 1, "x");
    assert_int_equal(store_capture_claim(f->st, &c3, T0 + 3500, ts), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "agent"));
    c3 = capture_of(t, a1, "x");
    snprintf(c3.interface, sizeof c3.interface, "GET /fast");
    assert_int_equal(store_capture_claim(f->st, &c3, T0 + 3500, ts), -EINVAL);
    c3 = capture_of(t, a1, "x");
    c3.total_ms = -1;
    assert_int_equal(store_capture_claim(f->st, &c3, T0 + 3500, ts), -EINVAL);
    c3 = capture_of(t, a1, "x");
    memset(c3.peer, 'p', sizeof c3.peer);
    assert_int_equal(store_capture_claim(f->st, &c3, T0 + 3500, ts), -EINVAL);
    assert_int_equal(store_capture_claim(f->st, NULL, T0 + 3500, ts), -EINVAL);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);

    /* The agents' rows count their captures. */
    struct store_task_agent *ag;
    size_t n;
    assert_int_equal(store_task_agents(f->st, t, &ag, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ag[0].agent_id, a1);
    assert_int_equal(ag[0].captures, 1);
    assert_int_equal(ag[1].agent_id, a2);
    assert_int_equal(ag[1].captures, 1);
    assert_int_equal(ag[1].delivered_ms, T0 + 3000);
    free(ag);

    struct store_task_log *l;
    assert_int_equal(store_task_logs(f->st, t, &l, &n), 0);
    assert_int_equal(n, 5);
    const char *events[] = {"created", "delivered", "capture", "capture", "limit-reached"};
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l[i].event, events[i]);
    snprintf(want, sizeof want,
             "capture 1/2 by agent %" PRId64 " (web-1, pid 4242): trace abc123, 1502 ms, "
             "response 200, peer 10.0.0.7:51234, 13 snapshots",
             a1);
    assert_string_equal(l[2].message, want);
    assert_int_equal(l[2].agent_id, a1);
    snprintf(want, sizeof want,
             "capture 2/2 by agent %" PRId64 " (web-2, pid 4343): trace def456, 1502 ms, "
             "13 snapshots",
             a2);
    assert_string_equal(l[3].message, want);
    assert_string_equal(l[4].message, "limit of 2 captures reached");
    free(l);

    struct store_capture *cv;
    assert_int_equal(store_capture_list(f->st, t, &cv, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(cv[0].slot, 1);
    assert_int_equal(cv[1].slot, 2);
    assert_string_equal(cv[1].trace_id, "def456");
    free(cv);
    assert_int_equal(store_capture_list(f->st, t + 1, &cv, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_capture_get(f->st, c2.id + 1, &g), -ENOENT);
}

static void test_capture_claim_refused_on_ended_tasks(void **state)
{
    struct fx *f = *state;
    int64_t a = new_agent(f->st, "checkout", "web-1", 4242);
    int64_t cancelled = new_task(f->st, "checkout", "GET /slow", T0, 5, 3);
    int64_t due = new_task(f->st, "checkout", "GET /slow", T0, 5, 3);
    assert_int_equal(store_task_cancel(f->st, cancelled, T0 + 10, "alice"), 0);
    char ts[STORE_KIND_MAX];
    struct store_capture c = capture_of(cancelled, a, "t1");
    assert_int_equal(store_capture_claim(f->st, &c, T0 + 20, ts), -EEXIST);
    assert_string_equal(ts, "cancelled");
    assert_non_null(strstr(store_errmsg(f->st), "has ended (cancelled)"));
    /* Past its end, before store_task_expire marks it. */
    c = capture_of(due, a, "t1");
    assert_int_equal(store_capture_claim(f->st, &c, T0 + 5 * MINUTE, ts), -EEXIST);
    assert_string_equal(ts, "expired");
    assert_int_equal(store_capture_claim(f->st, &c, T0 + 5 * MINUTE - 1, ts), 0);
    assert_int_equal(c.slot, 1);
    assert_int_equal(store_task_expire(f->st, T0 + 5 * MINUTE, NULL), 0);
    c = capture_of(due, a, "t2");
    assert_int_equal(store_capture_claim(f->st, &c, T0 + 5 * MINUTE + 1, ts), -EEXIST);
    assert_string_equal(ts, "expired");
    struct store_task_log *l;
    size_t n;
    assert_int_equal(store_task_logs(f->st, due, &l, &n), 0);
    assert_string_equal(l[n - 1].message, "expired after 5 min with 1 of 3 captures");
    free(l);
}

static void test_capture_snapshots_round_trip_once(void **state)
{
    struct fx *f = *state;
    int64_t t = new_task(f->st, "checkout", "GET /slow", T0, 5, 3);
    int64_t a = new_agent(f->st, "checkout", "web-1", 4242);
    struct store_capture c = capture_of(t, a, "abc");
    assert_int_equal(store_capture_claim(f->st, &c, T0 + 100, NULL), 0);

    void *buf = (void *)1;
    size_t len = 1;
    assert_int_equal(store_capture_profile_get(f->st, c.id, &buf, &len), -ENOENT);
    assert_null(buf);
    char want[96];
    snprintf(want, sizeof want, "capture %" PRId64 " has no snapshots yet", c.id);
    assert_string_equal(store_errmsg(f->st), want);
    assert_int_equal(store_capture_tree_get(f->st, c.id + 1, &buf, &len), -ENOENT);
    assert_non_null(strstr(store_errmsg(f->st), "not found"));

    unsigned char pprof[3000], tree[500];
    for (size_t i = 0; i < sizeof pprof; i++)
        pprof[i] = (unsigned char)(i * 31);
    for (size_t i = 0; i < sizeof tree; i++)
        tree[i] = (unsigned char)(i * 7 + 1);
    assert_int_equal(store_capture_profile_put(f->st, c.id, pprof, sizeof pprof, tree,
                                               sizeof tree, 15, T0 + 2000),
                     0);
    struct store_capture g;
    assert_int_equal(store_capture_get(f->st, c.id, &g), 0);
    assert_string_equal(g.state, "complete");
    assert_int_equal(g.snapshots, 15);
    assert_int_equal(g.profile_bytes, (int64_t)sizeof pprof);
    assert_int_equal(store_capture_profile_get(f->st, c.id, &buf, &len), 0);
    assert_int_equal(len, sizeof pprof);
    assert_memory_equal(buf, pprof, len);
    free(buf);
    assert_int_equal(store_capture_tree_get(f->st, c.id, &buf, &len), 0);
    assert_int_equal(len, sizeof tree);
    assert_memory_equal(buf, tree, len);
    free(buf);

    struct watcher w;
    watch(f, &w);
    int64_t v0 = data_version(&w);
    assert_int_equal(store_capture_profile_put(f->st, c.id, "other", 5, "t", 1, 1, T0 + 3000),
                     -EEXIST);
    snprintf(want, sizeof want, "capture %" PRId64 " already has its snapshots", c.id);
    assert_string_equal(store_errmsg(f->st), want);
    assert_int_equal(store_capture_profile_put(f->st, c.id + 1, "p", 1, "t", 1, 1, T0),
                     -ENOENT);
    assert_int_equal(store_capture_profile_put(f->st, c.id, "", 0, "t", 1, 1, T0), -EINVAL);
    assert_int_equal(store_capture_profile_put(f->st, c.id, "p", 1, NULL, 3, 1, T0), -EINVAL);
    assert_int_equal(store_capture_profile_put(f->st, c.id, "p", 1, "t", 1, -1, T0), -EINVAL);
    assert_int_equal(data_version(&w), v0);
    unwatch(&w);
    assert_int_equal(store_capture_get(f->st, c.id, &g), 0);
    assert_int_equal(g.snapshots, 15);
    assert_int_equal(g.profile_bytes, (int64_t)sizeof pprof);
}

static void put_profile_traces(struct store *st, int64_t sid, const struct store_trace_span *tr,
                               size_t ntr, int expect)
{
    struct store_profile p = {.session_id = sid,
                              .pprof = "pprof",
                              .pprof_len = 5,
                              .tree = "tree",
                              .tree_len = 4,
                              .samples = 10,
                              .now_ms = T0,
                              .traces = tr,
                              .ntraces = ntr};
    assert_int_equal(store_profile_put(st, &p), expect);
}

static void test_traces_find_captures_and_session_spans(void **state)
{
    struct fx *f = *state;
    int64_t t1 = new_task(f->st, "checkout", "GET /slow", T0, 5, 3);
    int64_t t2 = new_task(f->st, "checkout", "GET /slow", T0, 5, 3);
    int64_t a = new_agent(f->st, "checkout", "web-1", 4242);
    struct store_capture c1 = capture_of(t2, a, "tr-1");
    struct store_capture c2 = capture_of(t1, a, "tr-1");
    struct store_capture c3 = capture_of(t1, a, "tr-2");
    assert_int_equal(store_capture_claim(f->st, &c1, T0 + 100, NULL), 0);
    assert_int_equal(store_capture_claim(f->st, &c2, T0 + 200, NULL), 0);
    assert_int_equal(store_capture_claim(f->st, &c3, T0 + 300, NULL), 0);
    struct store_capture *cv;
    size_t n;
    assert_int_equal(store_capture_by_trace(f->st, "tr-1", &cv, &n), 0);
    assert_int_equal(n, 2); /* oldest first */
    assert_int_equal(cv[0].id, c1.id);
    assert_int_equal(cv[1].id, c2.id);
    free(cv);
    assert_int_equal(store_capture_by_trace(f->st, "tr-9", &cv, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_capture_by_trace(f->st, "", &cv, &n), -EINVAL);
    assert_int_equal(store_capture_by_trace(f->st, NULL, &cv, &n), -EINVAL);

    /* Session spans, stored with the profile; a pair named twice adds up. */
    int64_t s1 = new_session(f->st, "checkout", "web-1", "profile-now", T0);
    int64_t s2 = new_session(f->st, "checkout", "web-1", "profile-now", T0 - 1000);
    struct store_trace_span tr1[] = {
        {.session_id = 999, .trace_id = "tr-1", .interface = "GET /slow", .samples = 5},
        {.trace_id = "tr-3", .interface = "GET /fast", .samples = 1},
    };
    struct store_trace_span tr2[] = {
        {.trace_id = "tr-1", .interface = "GET /slow", .samples = 2},
        {.trace_id = "tr-1", .interface = "GET /slow", .samples = 1},
        {.trace_id = "tr-1", .interface = "", .samples = 4},
    };
    put_profile_traces(f->st, s1, tr1, 2, 0);
    put_profile_traces(f->st, s2, tr2, 3, 0);
    struct store_trace_span *sv;
    assert_int_equal(store_trace_sessions(f->st, "tr-1", &sv, &n), 0);
    assert_int_equal(n, 3); /* oldest session first */
    assert_int_equal(sv[0].session_id, s2);
    assert_string_equal(sv[0].interface, "");
    assert_int_equal(sv[0].samples, 4);
    assert_int_equal(sv[1].session_id, s2);
    assert_string_equal(sv[1].interface, "GET /slow");
    assert_int_equal(sv[1].samples, 3);
    assert_int_equal(sv[2].session_id, s1);
    assert_string_equal(sv[2].trace_id, "tr-1");
    assert_int_equal(sv[2].samples, 5);
    free(sv);
    assert_int_equal(store_trace_sessions(f->st, "tr-2", &sv, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_trace_sessions(f->st, "", &sv, &n), -EINVAL);

    /* A second profile is refused with its traces; bad spans refuse the
     * whole upload. */
    struct store_trace_span again[] = {{.trace_id = "tr-1", .interface = "x", .samples = 9}};
    put_profile_traces(f->st, s1, again, 1, -EEXIST);
    int64_t s3 = new_session(f->st, "checkout", "web-1", "profile-now", T0 + 5);
    struct store_trace_span bad[] = {{.trace_id = "tr-1", .samples = 1}, {.samples = 1}};
    put_profile_traces(f->st, s3, bad, 2, -EINVAL);
    bad[1] = (struct store_trace_span){.trace_id = "tr-1", .samples = -1};
    put_profile_traces(f->st, s3, bad, 2, -EINVAL);
    memset(bad[1].trace_id, 'q', sizeof bad[1].trace_id);
    bad[1].samples = 1;
    put_profile_traces(f->st, s3, bad, 2, -EINVAL);
    put_profile_traces(f->st, s3, NULL, 1, -EINVAL);
    struct store_session g;
    assert_int_equal(store_session_get(f->st, s3, &g), 0);
    assert_int_equal(g.profile_bytes, 0);
    assert_int_equal(store_trace_sessions(f->st, "tr-1", &sv, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(sv[2].samples, 5);
    free(sv);
    put_profile_traces(f->st, s3, NULL, 0, 0); /* none: fine */
}

static int64_t count_rows(struct fx *f, const char *table)
{
    sqlite3 *db;
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int64_t n = sql_int(db, sql);
    sqlite3_close(db);
    return n;
}

static void test_retention_purges_ended_tasks_with_everything(void **state)
{
    struct fx *f = *state;
    int64_t before = T0 + 60 * MINUTE;
    int64_t a = new_agent(f->st, "checkout", "web-1", 4242);
    /* Ended before `before` (limit reached), with captures, snapshots,
     * agents and log; 30 more so that batches are exercised. */
    int64_t old = new_task(f->st, "checkout", "GET /slow", T0, 5, 2);
    assert_int_equal(store_task_deliver(f->st, old, a, T0 + 1), 0);
    for (int i = 0; i < 2; i++) {
        struct store_capture c = capture_of(old, a, "tr-old");
        assert_int_equal(store_capture_claim(f->st, &c, T0 + 10 + i, NULL), 0);
        assert_int_equal(store_capture_profile_put(f->st, c.id, "pp", 2, "tt", 2, 1, T0 + 20),
                         0);
    }
    for (int i = 0; i < 30; i++)
        assert_int_equal(store_task_cancel(f->st, new_task(f->st, "checkout", "GET /x", T0 + i,
                                                           5, 3),
                                           T0 + 100 + i, "alice"),
                         0);
    /* Never marked, but its planned end is before: gone too. */
    int64_t unmarked = new_task(f->st, "checkout", "GET /slow", T0, 5, 3);
    /* Ended after `before`, or still running: kept. */
    int64_t late = new_task(f->st, "checkout", "GET /slow", before - 2 * MINUTE, 5, 3);
    struct store_capture c = capture_of(late, a, "tr-late");
    assert_int_equal(store_capture_claim(f->st, &c, before - MINUTE, NULL), 0);
    assert_int_equal(store_capture_profile_put(f->st, c.id, "pp", 2, "tt", 2, 1, before), 0);
    int64_t running = new_task(f->st, "checkout", "GET /slow", before, 15, 3);
    /* An old session's trace spans go with it. */
    int64_t sid = new_session(f->st, "checkout", "web-1", "profile-now", T0);
    struct store_trace_span tr[] = {{.trace_id = "tr-s", .interface = "GET /slow", .samples = 1}};
    put_profile_traces(f->st, sid, tr, 1, 0);

    int64_t deleted = -1;
    assert_int_equal(store_retention_purge(f->st, before, &deleted), 0);
    assert_int_equal(deleted, 1);
    struct store_task g;
    assert_int_equal(store_task_get(f->st, old, &g), -ENOENT);
    assert_int_equal(store_task_get(f->st, unmarked, &g), -ENOENT);
    assert_int_equal(store_task_get(f->st, late, &g), 0);
    assert_int_equal(store_task_get(f->st, running, &g), 0);
    assert_int_equal(count_rows(f, "tasks"), 2);
    assert_int_equal(count_rows(f, "task_agents"), 1);
    assert_int_equal(count_rows(f, "captures"), 1);
    assert_int_equal(count_rows(f, "capture_profiles"), 1);
    assert_int_equal(count_rows(f, "trace_spans"), 0);
    struct store_task_log *l;
    size_t n;
    assert_int_equal(store_task_logs(f->st, old, &l, &n), -ENOENT);
    assert_int_equal(count_rows(f, "task_logs"), 3); /* late: created, capture; running */
    struct store_capture *cv;
    assert_int_equal(store_capture_by_trace(f->st, "tr-old", &cv, &n), 0);
    assert_int_equal(n, 0);
    char *report;
    assert_int_equal(store_check(f->st, &report), 0);
    assert_string_equal(report, "ok");
    free(report);
    /* New ids never reuse purged ones. */
    assert_true(new_task(f->st, "checkout", "GET /slow", before, 5, 3) > running);
}

static void test_tasks_survive_reopen_and_migrate_an_older_file(void **state)
{
    struct fx *f = *state;
    int64_t t = new_task(f->st, "checkout", "GET /slow", T0, 5, 3);
    reopen(f);
    struct store_task g;
    assert_int_equal(store_task_get(f->st, t, &g), 0);
    assert_int_equal(task_version(f->st), 1);
    /* A file of schema version 2 (issue 4's) gains the tables at open. */
    store_close(f->st);
    f->st = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA foreign_keys = OFF; DROP TABLE capture_profiles; "
                                  "DROP TABLE captures; DROP TABLE task_logs; "
                                  "DROP TABLE task_agents; DROP TABLE task_version; "
                                  "DROP TABLE trace_spans; DROP TABLE tasks; "
                                  /* and migration 4's */
                                  "DROP TABLE loadtests; DROP INDEX sessions_request_start; "
                                  "ALTER TABLE profile_now DROP COLUMN triggered_by; "
                                  "ALTER TABLE profile_now DROP COLUMN loadtest_id; "
                                  "DELETE FROM schema_version WHERE version >= 3",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char err[256] = "";
    assert_int_equal(store_open(f->path, &f->st, err, sizeof err), 0);
    assert_int_equal(task_version(f->st), 0);
    new_task(f->st, "checkout", "GET /slow", T0, 5, 3);
    assert_int_equal(count_rows(f, "schema_version"), 4);
}

/* Claims of one task from many threads at once: exactly max granted. */
#define CLAIMERS 8
#define CLAIMS_EACH 20
#define CLAIM_MAX 3

struct claimer {
    struct store *st;
    int64_t task_id, agent_id;
    int granted, refused, other;
    int64_t slots[CLAIMS_EACH];
};

static void *claimer_main(void *arg)
{
    struct claimer *k = arg;
    for (int i = 0; i < CLAIMS_EACH; i++) {
        char trace[32], ts[STORE_KIND_MAX];
        snprintf(trace, sizeof trace, "a%" PRId64 "-%d", k->agent_id, i);
        struct store_capture c = capture_of(k->task_id, k->agent_id, trace);
        int rc = store_capture_claim(k->st, &c, T0 + 1000, ts);
        if (rc == 0)
            k->slots[k->granted++] = c.slot;
        else if (rc == -EEXIST && strcmp(ts, "limit-reached") == 0)
            k->refused++;
        else
            k->other++;
    }
    return NULL;
}

static void test_concurrent_claims_never_exceed_the_limit(void **state)
{
    struct fx *f = *state;
    int64_t t = new_task(f->st, "checkout", "GET /slow", T0, 5, CLAIM_MAX);
    struct claimer k[CLAIMERS];
    pthread_t th[CLAIMERS];
    for (int i = 0; i < CLAIMERS; i++) {
        char inst[32];
        snprintf(inst, sizeof inst, "web-%d", i);
        k[i] = (struct claimer){.st = f->st, .task_id = t,
                                .agent_id = new_agent(f->st, "checkout", inst, 1000 + i)};
    }
    for (int i = 0; i < CLAIMERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, claimer_main, &k[i]), 0);
    int granted = 0, seen[CLAIM_MAX + 1] = {0};
    for (int i = 0; i < CLAIMERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(k[i].other, 0);
        assert_int_equal(k[i].granted + k[i].refused, CLAIMS_EACH);
        for (int j = 0; j < k[i].granted; j++) {
            assert_true(k[i].slots[j] >= 1 && k[i].slots[j] <= CLAIM_MAX);
            seen[k[i].slots[j]]++;
        }
        granted += k[i].granted;
    }
    assert_int_equal(granted, CLAIM_MAX);
    for (int s = 1; s <= CLAIM_MAX; s++)
        assert_int_equal(seen[s], 1);

    struct store_task g;
    assert_int_equal(store_task_get(f->st, t, &g), 0);
    assert_string_equal(g.state, "limit-reached");
    assert_int_equal(g.captures, CLAIM_MAX);
    assert_int_equal(task_version(f->st), 2); /* created, limit reached */
    struct store_capture *cv;
    size_t n;
    assert_int_equal(store_capture_list(f->st, t, &cv, &n), 0);
    assert_int_equal(n, CLAIM_MAX);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cv[i].slot, (int64_t)i + 1);
    free(cv);
    struct store_task_log *l;
    assert_int_equal(store_task_logs(f->st, t, &l, &n), 0);
    assert_int_equal(n, 2 + CLAIM_MAX);
    assert_string_equal(l[0].event, "created");
    for (int i = 1; i <= CLAIM_MAX; i++) {
        char head[32];
        snprintf(head, sizeof head, "capture %d/%d by ", i, CLAIM_MAX);
        assert_string_equal(l[i].event, "capture");
        assert_memory_equal(l[i].message, head, strlen(head));
    }
    assert_string_equal(l[n - 1].event, "limit-reached");
    free(l);
    struct store_task_agent *ag;
    assert_int_equal(store_task_agents(f->st, t, &ag, &n), 0);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ag[i].captures;
    free(ag);
    assert_int_equal(sum, CLAIM_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_task_create_get_log_and_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_list_filters_by_overlap_app_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_task_active_lists_running_unexpired_oldest_first,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_cancel_once_then_eexist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_expire_marks_due_tasks_at_their_end, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_task_deliver_events_and_agents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_log_add_orders_and_cuts_prose, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture_claim_grants_slots_up_to_the_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_capture_claim_refused_on_ended_tasks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture_snapshots_round_trip_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traces_find_captures_and_session_spans, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retention_purges_ended_tasks_with_everything, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tasks_survive_reopen_and_migrate_an_older_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_claims_never_exceed_the_limit, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
