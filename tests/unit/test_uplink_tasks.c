/*
 * test_uplink_tasks.c — active profiling in the agent's server link
 * (uplink.h, docs/agent-protocol.md §7) against a real sonded
 * (uplink_fixture.h): tasks created through the people's API reaching
 * uplink_take_work, leaving it when cancelled or refused; captures
 * claimed and uploaded; the limit held by the server's claims; task
 * events in the task's log in order; the task outbox waiting out a
 * server that is down, and its bounds.  A scripted fake server feeds the
 * link task lists a real one never sends, to show every field is checked.
 */
#include "uplink_fixture.h"

#define TASK_IFACE "GET /slow"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

/* Creates a task on port (admin token: a writer) → its object. */
static json_t *create_task(int port, const char *app, const char *iface, int threshold,
                           int frequency, int max)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"app\": \"%s\", \"interface\": \"%s\", \"duration_min\": 5, "
             "\"threshold_ms\": %d, \"frequency_ms\": %d, \"max_samples\": %d}",
             app, iface, threshold, frequency, max);
    long st;
    json_t *t = api(port, "POST", "/api/v1/tasks", ADMIN_TOKEN, body, &st);
    if (st != 201)
        fail_msg("POST /api/v1/tasks: %ld", st);
    return t;
}

/* Creates a task of app watching iface (threshold 200 ms, every 100 ms,
 * max captures) → its id. */
static int64_t task_new(int port, const char *app, const char *iface, int max)
{
    json_t *t = create_task(port, app, iface, 200, 100, max);
    int64_t id = int_of(t, "id");
    json_decref(t);
    return id;
}

static void cancel_task(int port, int64_t id)
{
    char path[64];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/cancel", (long long)id);
    long st;
    json_decref(api(port, "POST", path, ADMIN_TOKEN, NULL, &st));
    assert_int_equal(st, 200);
}

static json_t *task_get(int port, int64_t id)
{
    char path[64];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld", (long long)id);
    return admin_get(port, path);
}

/* The task's log entries (a new reference). */
static json_t *task_logs(int port, int64_t id)
{
    char path[64];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/logs", (long long)id);
    return admin_get_list(port, path, "logs");
}

/* The task's captures (a new reference). */
static json_t *task_captures(int port, int64_t id)
{
    char path[64];
    snprintf(path, sizeof path, "/api/v1/tasks/%lld/captures", (long long)id);
    return admin_get_list(port, path, "captures");
}

struct captures_query {
    int port;
    int64_t task_id;
    size_t n; /* wanted, every one complete */
};

static int captures_complete(void *arg)
{
    struct captures_query *q = arg;
    json_t *list = task_captures(q->port, q->task_id);
    int ok = json_array_size(list) == q->n;
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) ok = ok && strcmp(str_of(c, "state"), "complete") == 0;
    json_decref(list);
    return ok;
}

/* The agent's entries in a task's log: their events, in order. */
struct log_query {
    int port;
    int64_t task_id;
    int64_t agent_id;
    const char *event; /* count only these; NULL = started/stopped/error */
    size_t n;          /* wanted count */
};

static json_t *agent_events(const struct log_query *q)
{
    json_t *logs = task_logs(q->port, q->task_id), *out = json_array();
    size_t i;
    json_t *l;
    json_array_foreach(logs, i, l) {
        const char *e = str_of(l, "event");
        int mine = int_of(l, "agent_id") == q->agent_id;
        int wanted = q->event ? strcmp(e, q->event) == 0
                              : strcmp(e, "started") == 0 || strcmp(e, "stopped") == 0 ||
                                    strcmp(e, "error") == 0;
        if (mine && wanted)
            json_array_append(out, l);
    }
    json_decref(logs);
    return out;
}

static int log_has(void *arg)
{
    struct log_query *q = arg;
    json_t *ev = agent_events(q);
    int ok = json_array_size(ev) == q->n;
    json_decref(ev);
    return ok;
}

/* What the agent thread would have been handed: the last task list and
 * every task named as ended, over calls of uplink_take_work. */
struct task_watch {
    int changes;                 /* lists handed over */
    int n;                       /* the last one */
    struct task_spec tasks[UPLINK_MAX_TASKS];
    int n_ended;
    int64_t ended[64];
    int want;                    /* condition: a list of want tasks */
    int64_t want_ended;          /* and, when > 0, this task named as ended */
};

static void watch_take(struct task_watch *tw)
{
    struct uplink_work w;
    while (uplink_take_work(&w)) {
        for (int i = 0; i < w.n_ended && tw->n_ended < 64; i++)
            tw->ended[tw->n_ended++] = w.ended[i];
        if (w.tasks_changed) {
            tw->changes++;
            tw->n = w.n_tasks;
            memcpy(tw->tasks, w.tasks, sizeof w.tasks);
        }
    }
}

static int was_ended(const struct task_watch *tw, int64_t id)
{
    for (int i = 0; i < tw->n_ended; i++)
        if (tw->ended[i] == id)
            return 1;
    return 0;
}

static int list_is(void *arg)
{
    struct task_watch *tw = arg;
    watch_take(tw);
    return tw->changes > 0 && tw->n == tw->want &&
           (tw->want_ended <= 0 || was_ended(tw, tw->want_ended));
}

/* Queues a capture of task_id with a small valid profile. */
static void put_capture(int64_t task_id, const char *trace, const char *iface, int64_t total_ms)
{
    struct uplink_capture c;
    memset(&c, 0, sizeof c);
    c.task_id = task_id;
    snprintf(c.trace_id, sizeof c.trace_id, "%s", trace);
    snprintf(c.interface, sizeof c.interface, "%s", iface);
    snprintf(c.peer, sizeof c.peer, "10.1.2.3:4567");
    c.start_ms = wall_ms() - total_ms - 100;
    c.response_code = 503;
    c.total_ms = total_ms;
    c.snapshots = 1;
    size_t len;
    void *gz = profile_gz(&len);
    uplink_capture_put(&c, gz, len);
}

/* Starts the link for app on s and waits until it is registered. */
static void link_up(const char *app, const struct server *s)
{
    link_start(app, s, 2000);
    assert_true(wait_for(registered, NULL, 5000));
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_tasks_reach_take_work_within_2s_and_leave_when_cancelled(void **state)
{
    (void)state;
    link_up("tk-app", &main_srv);
    struct task_watch tw = {.want = 1};
    int64_t t0 = now_ms();
    json_t *t = create_task(main_srv.port, "tk-app", TASK_IFACE, 200, 50, 3);
    assert_true(wait_for(list_is, &tw, 2000));
    assert_true(now_ms() - t0 < 2000);
    const struct task_spec *s = &tw.tasks[0];
    assert_int_equal(s->id, int_of(t, "id"));
    assert_string_equal(s->interface, TASK_IFACE);
    assert_int_equal(s->threshold_ms, 200);
    assert_int_equal(s->frequency_ms, 50);
    assert_int_equal(s->max_samples, 3);
    assert_int_equal(s->captures, 0);
    assert_int_equal(s->ends_ms, int_of(t, "ends_ms"));
    int64_t id = s->id;
    json_decref(t);

    /* The server recorded the delivery to this agent. */
    struct log_query delivered = {main_srv.port, id, stats().agent_id, "delivered", 1};
    assert_true(wait_for(log_has, &delivered, 2000));

    /* Another app's task changes nothing here; cancelling ours empties
     * the list. */
    json_decref(create_task(main_srv.port, "tk-other", "GET /x", 200, 100, 1));
    cancel_task(main_srv.port, id);
    tw.want = 0;
    assert_true(wait_for(list_is, &tw, 2000));
    assert_int_equal(tw.changes, 2);
    assert_int_equal(tw.n_ended, 0);
    uplink_stop();
}

static void test_capture_is_claimed_and_uploaded(void **state)
{
    (void)state;
    link_up("cap-app", &main_srv);
    struct task_watch tw = {.want = 1};
    int64_t id = task_new(main_srv.port, "cap-app", TASK_IFACE, 3);
    assert_true(wait_for(list_is, &tw, 2000));

    put_capture(id, "trace-cap-1", TASK_IFACE, 1500);
    struct captures_query q = {main_srv.port, id, 1};
    assert_true(wait_for(captures_complete, &q, 5000));
    json_t *list = task_captures(main_srv.port, id);
    json_t *c = json_array_get(list, 0);
    assert_string_equal(str_of(c, "trace_id"), "trace-cap-1");
    assert_string_equal(str_of(c, "interface"), TASK_IFACE);
    assert_string_equal(str_of(c, "peer"), "10.1.2.3:4567");
    assert_int_equal(int_of(c, "response_code"), 503);
    assert_int_equal(int_of(c, "total_ms"), 1500);
    assert_int_equal(int_of(c, "snapshots"), 1); /* the profile's samples */
    assert_int_equal(int_of(c, "agent_id"), stats().agent_id);
    assert_int_equal(int_of(c, "pid"), getpid());
    assert_true(int_of(c, "profile_bytes") > 0);
    json_decref(list);
    struct uplink_stats st = stats();
    assert_int_equal(st.captures_sent, 1);
    assert_int_equal(st.captures_refused, 0);
    assert_int_equal(st.captures_dropped, 0);
    json_t *t = task_get(main_srv.port, id);
    assert_int_equal(int_of(t, "captures"), 1);
    assert_string_equal(str_of(t, "state"), "running");
    json_decref(t);
    uplink_stop();
}

static int one_sent_one_refused(void *arg)
{
    (void)arg;
    struct uplink_stats st = stats();
    return st.captures_sent == 1 && st.captures_refused == 1;
}

static void test_limit_one_grants_one_claim_refuses_the_next_and_ends_the_task(void **state)
{
    (void)state;
    link_up("lim-app", &main_srv);
    struct task_watch tw = {.want = 1};
    int64_t id = task_new(main_srv.port, "lim-app", TASK_IFACE, 1);
    assert_true(wait_for(list_is, &tw, 2000));

    put_capture(id, "trace-lim-1", TASK_IFACE, 900);
    put_capture(id, "trace-lim-2", TASK_IFACE, 800);
    assert_true(wait_for(one_sent_one_refused, NULL, 5000));
    /* The task left the agent thread's list and is named as ended (so it
     * calls task_end), without waiting for a poll. */
    tw.want = 0;
    tw.want_ended = id;
    assert_true(wait_for(list_is, &tw, 2000));
    assert_int_equal(stats().captures_dropped, 0);

    struct captures_query q = {main_srv.port, id, 1};
    assert_true(wait_for(captures_complete, &q, 5000));
    json_t *list = task_captures(main_srv.port, id);
    assert_string_equal(str_of(json_array_get(list, 0), "trace_id"), "trace-lim-1");
    json_decref(list);
    json_t *t = task_get(main_srv.port, id);
    assert_string_equal(str_of(t, "state"), "limit-reached");
    assert_int_equal(int_of(t, "captures"), 1);
    json_decref(t);
    struct log_query refused = {main_srv.port, id, stats().agent_id, "refused", 1};
    assert_true(wait_for(log_has, &refused, 2000));
    uplink_stop();
}

static int refused_is(void *arg)
{
    return stats().captures_refused == *(uint64_t *)arg;
}

static int dropped_is(void *arg)
{
    return stats().captures_dropped == *(uint64_t *)arg;
}

static void test_claims_of_ended_unknown_or_mismatched_tasks(void **state)
{
    (void)state;
    link_up("bad-app", &main_srv);
    struct task_watch tw = {.want = 2};
    int64_t gone = task_new(main_srv.port, "bad-app", TASK_IFACE, 5);
    int64_t live = task_new(main_srv.port, "bad-app", "GET /other", 5);
    assert_true(wait_for(list_is, &tw, 2000));

    /* A cancelled task: 409, refused, and the task is ended here. */
    cancel_task(main_srv.port, gone);
    put_capture(gone, "trace-gone", TASK_IFACE, 700);
    uint64_t want = 1;
    assert_true(wait_for(refused_is, &want, 5000));
    tw.want = 1;
    tw.want_ended = gone;
    assert_true(wait_for(list_is, &tw, 2000));
    assert_int_equal(tw.tasks[0].id, live);

    /* A task the server does not know (404) and a capture of another
     * interface than the task's (400): dropped, counted; the live task
     * stays watched. */
    put_capture(987654321, "trace-unknown", TASK_IFACE, 700);
    put_capture(live, "trace-mismatch", TASK_IFACE, 700);
    want = 2;
    assert_true(wait_for(dropped_is, &want, 5000));
    /* No profile at all: dropped at once. */
    struct uplink_capture c = {.task_id = live, .trace_id = "t", .interface = "GET /other"};
    uplink_capture_put(&c, NULL, 0);
    assert_int_equal(stats().captures_dropped, 3);
    uplink_capture_put(NULL, NULL, 0); /* nothing at all: ignored */
    assert_int_equal(stats().captures_dropped, 3);
    assert_int_equal(stats().captures_sent, 0);
    assert_int_equal(stats().captures_refused, 1);
    assert_false(was_ended(&tw, live));
    json_t *list = task_captures(main_srv.port, live);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    uplink_stop();
}

static void test_task_events_reach_the_log_in_order_and_bad_ones_are_not_sent(void **state)
{
    (void)state;
    link_up("ev-app", &main_srv);
    struct task_watch tw = {.want = 1};
    int64_t id = task_new(main_srv.port, "ev-app", TASK_IFACE, 5);
    assert_true(wait_for(list_is, &tw, 2000));

    uplink_task_event(id, "bogus", "not an event of the protocol");
    uplink_task_event(0, "started", NULL);
    uplink_task_event(id, NULL, NULL);
    uplink_task_event(id, "started", NULL);
    char long_msg[2000];
    memset(long_msg, 'x', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = '\0';
    memcpy(long_msg, "boom: ", 6);
    long_msg[510] = (char)0xc3; /* a sequence cut at 511 bytes: made valid */
    uplink_task_event(id, "error", long_msg);
    uplink_task_event(id, "stopped", "");
    struct log_query q = {main_srv.port, id, stats().agent_id, NULL, 3};
    assert_true(wait_for(log_has, &q, 5000));
    json_t *ev = agent_events(&q);
    assert_string_equal(str_of(json_array_get(ev, 0), "event"), "started");
    assert_string_equal(str_of(json_array_get(ev, 1), "event"), "error");
    assert_string_equal(str_of(json_array_get(ev, 2), "event"), "stopped");
    const char *m = str_of(json_array_get(ev, 1), "message");
    assert_non_null(strstr(m, "boom: xxx"));
    json_decref(ev);
    uplink_stop();
}

static int failed_more(void *arg)
{
    return stats().requests_failed > *(uint64_t *)arg;
}

static void test_task_items_wait_for_a_server_that_is_down_and_go_after_restart(void **state)
{
    (void)state;
    struct server r;
    server_init(&r, "tasks-restart");
    assert_int_equal(server_start(&r), 0);
    assert_int_equal(server_agent_token(&r), 0);
    link_up("tr-app", &r);
    int64_t agent = stats().agent_id;
    struct task_watch tw = {.want = 1};
    int64_t id = task_new(r.port, "tr-app", TASK_IFACE, 5);
    assert_true(wait_for(list_is, &tw, 2000));

    server_signal(&r, SIGKILL);
    uint64_t failed = stats().requests_failed;
    uplink_task_event(id, "started", NULL);
    put_capture(id, "trace-late", TASK_IFACE, 1200);
    assert_true(wait_for(failed_more, &failed, 5000));
    assert_int_equal(stats().captures_sent, 0);

    assert_int_equal(server_start(&r), 0); /* same port, same data */
    struct captures_query q = {r.port, id, 1};
    assert_true(wait_for(captures_complete, &q, 40000));
    struct log_query started = {r.port, id, agent, "started", 1};
    assert_true(wait_for(log_has, &started, 5000));
    assert_int_equal(stats().captures_sent, 1);
    assert_int_equal(stats().agent_id, agent);
    /* The task list was kept through the outage. */
    watch_take(&tw);
    assert_int_equal(tw.n, 1);
    uplink_stop();
    server_signal(&r, SIGKILL);
}

static void test_task_outbox_bounds(void **state)
{
    (void)state;
    /* A task made while the server was up; the link starts while it is
     * down, so everything waits in the outbox. */
    struct server r;
    server_init(&r, "tasks-bounds");
    assert_int_equal(server_start(&r), 0);
    assert_int_equal(server_agent_token(&r), 0);
    int64_t id = task_new(r.port, "ob-app", TASK_IFACE, 100);
    server_signal(&r, SIGTERM);
    link_start("ob-app", &r, 2000);

    char trace[32];
    for (int i = 0; i < UPLINK_MAX_CAPTURES + 2; i++) {
        snprintf(trace, sizeof trace, "trace-ob-%d", i);
        put_capture(id, trace, TASK_IFACE, 300);
    }
    assert_int_equal(stats().captures_dropped, 2); /* the newest ones */
    struct uplink_capture big = {.task_id = id, .trace_id = "big", .interface = TASK_IFACE};
    void *gz = calloc(1, UPLINK_MAX_OUTBOX_BYTES + 1);
    assert_non_null(gz);
    uplink_capture_put(&big, gz, UPLINK_MAX_OUTBOX_BYTES + 1);
    assert_int_equal(stats().captures_dropped, 3);
    char msg[32];
    for (int i = 0; i < 64 + 6; i++) {
        snprintf(msg, sizeof msg, "e%d", i);
        uplink_task_event(id, "error", msg);
    }
    assert_false(stats().registered);

    assert_int_equal(server_start(&r), 0);
    struct captures_query q = {r.port, id, UPLINK_MAX_CAPTURES};
    assert_true(wait_for(captures_complete, &q, 60000));
    json_t *list = task_captures(r.port, id); /* in claim order: oldest first */
    assert_string_equal(str_of(json_array_get(list, 0), "trace_id"), "trace-ob-0");
    snprintf(trace, sizeof trace, "trace-ob-%d", UPLINK_MAX_CAPTURES - 1);
    assert_string_equal(str_of(json_array_get(list, UPLINK_MAX_CAPTURES - 1), "trace_id"),
                        trace);
    json_decref(list);
    /* The 64 newest events, in order. */
    struct log_query lq = {r.port, id, stats().agent_id, "error", 64};
    assert_true(wait_for(log_has, &lq, 10000));
    json_t *ev = agent_events(&lq);
    /* The server names the agent before the message: "…: e6". */
    const char *first = str_of(json_array_get(ev, 0), "message");
    const char *last = str_of(json_array_get(ev, 63), "message");
    assert_string_equal(first + (strlen(first) > 4 ? strlen(first) - 4 : 0), ": e6");
    assert_string_equal(last + (strlen(last) > 5 ? strlen(last) - 5 : 0), ": e69");
    json_decref(ev);
    assert_int_equal(stats().captures_sent, UPLINK_MAX_CAPTURES);
    uplink_stop();
    server_signal(&r, SIGKILL);
}

static void test_new_registration_starts_the_task_list_afresh(void **state)
{
    (void)state;
    /* Store b is a copy of store a made before any task: when b replaces
     * a, the link registers again and b's answer (no task ever) empties
     * the list a had sent. */
    struct server a, b;
    server_prepare_copy(&a, "fresh-a", &b, "fresh-b");
    assert_int_equal(server_start(&a), 0);
    link_up("fresh-app", &a);
    struct task_watch tw = {.want = 1};
    task_new(a.port, "fresh-app", TASK_IFACE, 5);
    assert_true(wait_for(list_is, &tw, 2000));

    server_signal(&a, SIGKILL);
    assert_int_equal(server_start(&b), 0);
    tw.want = 0;
    assert_true(wait_for(list_is, &tw, 40000));
    assert_true(stats().registered);
    uplink_stop();
    server_signal(&b, SIGKILL);
}

/* ------------------------------------------------------------------ */
/* A scripted server: task lists a real sonded never sends             */

struct fake {
    int fd, port;
    pthread_t th;
    atomic_int stop;
    atomic_int polls;                /* polls answered */
    atomic_int claims;               /* capture claims answered */
    atomic_int release;              /* poll i > 0 is answered once release >= i */
    int64_t polled_version[8];       /* tasks_version of each poll */
};

/* The poll answers, in turn; the last one repeats. */
static const char *const fake_polls[] = {
    /* Two good tasks among entries that each break one rule. */
    "{\"cursor\":0,\"settings_version\":1,\"profile_now\":[],\"settings\":null,"
    "\"tasks_version\":5,\"tasks\":["
    "{\"id\":1,\"interface\":\"GET /a\",\"threshold_ms\":50,\"frequency_ms\":5,"
    "\"max_samples\":1,\"captures\":0,\"ends_ms\":1}," /* good: every low bound */
    "{\"id\":0,\"interface\":\"GET /a\",\"threshold_ms\":200,\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":9}," /* id */
    "{\"id\":3,\"interface\":\"GET /a\",\"threshold_ms\":49,\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":9}," /* threshold low */
    "{\"id\":4,\"interface\":\"GET /a\",\"threshold_ms\":30001,\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":9}," /* threshold high */
    "{\"id\":5,\"interface\":\"GET /a\",\"threshold_ms\":200,\"frequency_ms\":4,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":9}," /* frequency low */
    "{\"id\":6,\"interface\":\"GET /a\",\"threshold_ms\":200,\"frequency_ms\":1001,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":9}," /* frequency high */
    "{\"id\":7,\"interface\":\"GET /a\",\"threshold_ms\":200,\"frequency_ms\":100,"
    "\"max_samples\":0,\"captures\":0,\"ends_ms\":9}," /* max low */
    "{\"id\":8,\"interface\":\"GET /a\",\"threshold_ms\":200,\"frequency_ms\":100,"
    "\"max_samples\":101,\"captures\":0,\"ends_ms\":9}," /* max high */
    "{\"id\":9,\"interface\":\"GET /a\",\"threshold_ms\":200,\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":4,\"ends_ms\":9}," /* captures > max */
    "{\"id\":10,\"interface\":\"GET /a\",\"threshold_ms\":200,\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":-1,\"ends_ms\":9}," /* captures < 0 */
    "{\"id\":11,\"interface\":\"GET /a\",\"threshold_ms\":200,\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":-1}," /* ends_ms */
    "{\"id\":12,\"interface\":\"\",\"threshold_ms\":200,\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":9}," /* interface empty */
    "{\"id\":13,\"interface\":\"" /* interface of 96 bytes */
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "\",\"threshold_ms\":200,\"frequency_ms\":100,\"max_samples\":3,\"captures\":0,"
    "\"ends_ms\":9},"
    "{\"id\":14,\"interface\":7,\"threshold_ms\":200,\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":9}," /* interface not a string */
    "{\"id\":\"16\",\"interface\":\"GET /a\",\"threshold_ms\":200,\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":9}," /* id a string */
    "{\"id\":17,\"interface\":\"GET /a\",\"frequency_ms\":100,"
    "\"max_samples\":3,\"captures\":0,\"ends_ms\":9}," /* threshold missing */
    "42,"                                              /* not an object */
    "{\"id\":2,\"interface\":\"" /* good: every high bound */
    "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
    "\",\"threshold_ms\":30000,\"frequency_ms\":1000,\"max_samples\":100,\"captures\":100,"
    "\"ends_ms\":9223372036854775807}]}",
    NULL, /* 20 good tasks: built at run time */
    /* tasks neither null nor a list: ignored */
    "{\"cursor\":0,\"settings_version\":1,\"profile_now\":[],\"settings\":null,"
    "\"tasks_version\":7,\"tasks\":\"all of them\"}",
    "{\"cursor\":0,\"settings_version\":1,\"profile_now\":[],\"settings\":null,"
    "\"tasks_version\":7,\"tasks\":null}",
};
#define FAKE_POLLS (int)(sizeof fake_polls / sizeof fake_polls[0])

static char *twenty_tasks(void)
{
    json_t *list = json_array();
    for (int i = 1; i <= 20; i++)
        json_array_append_new(list, json_pack("{s:i,s:s,s:i,s:i,s:i,s:i,s:I}", "id", 100 + i,
                                              "interface", "GET /b", "threshold_ms", 100,
                                              "frequency_ms", 10, "max_samples", 10,
                                              "captures", i % 10, "ends_ms",
                                              (json_int_t)wall_ms() + 60000));
    json_t *o = json_pack("{s:i,s:i,s:[],s:n,s:i,s:o}", "cursor", 0, "settings_version", 1,
                          "profile_now", "settings", "tasks_version", 6, "tasks", list);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Reads one request (headers and Content-Length body) from c into buf. */
static void fake_read(int c, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    while (n < cap - 1) {
        ssize_t r = read(c, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        const char *cl = strcasestr(buf, "Content-Length:");
        size_t body = cl ? strtoul(cl + 15, NULL, 10) : 0;
        if (n >= (size_t)(end + 4 - buf) + body)
            break;
    }
}

static void fake_reply(int c, int status, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu"
                     "\r\nConnection: close\r\n\r\n",
                     status, strlen(body));
    if (write(c, head, (size_t)n) < 0 || write(c, body, strlen(body)) < 0)
        return;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    char *twenty = twenty_tasks();
    static char buf[1 << 16];
    while (!atomic_load(&f->stop)) {
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            continue;
        fake_read(c, buf, sizeof buf);
        if (strncmp(buf, "POST /api/v1/agent/register", 27) == 0) {
            fake_reply(c, 201, "{\"agent_id\":7,\"heartbeat_s\":60,\"poll_timeout_s\":1,"
                               "\"cursor\":0,\"settings_version\":1,\"settings\":null}");
        } else if (strncmp(buf, "GET /api/v1/agent/poll", 22) == 0) {
            int i = atomic_load(&f->polls);
            /* The test looks at each list before the next one comes
             * (uplink_take_work hands over only the latest). */
            while (i > 0 && atomic_load(&f->release) < i && !atomic_load(&f->stop)) {
                struct timespec ts = {0, 5000000};
                nanosleep(&ts, NULL);
            }
            const char *v = strstr(buf, "tasks_version=");
            if (i < 8)
                f->polled_version[i] = v ? strtoll(v + 14, NULL, 10) : -1;
            const char *body = fake_polls[i < FAKE_POLLS ? i : FAKE_POLLS - 1];
            fake_reply(c, 200, body ? body : twenty);
            atomic_fetch_add(&f->polls, 1);
        } else if (strncmp(buf, "POST /api/v1/agent/tasks/", 25) == 0 &&
                   strstr(buf, "/captures ")) {
            fake_reply(c, 201, "{\"slot\":1}"); /* no capture_id */
            atomic_fetch_add(&f->claims, 1);
        } else {
            fake_reply(c, 200, "{}");
        }
        close(c);
    }
    free(twenty);
    return NULL;
}

static int fake_polled(void *arg)
{
    struct fake *f = arg;
    return atomic_load(&f->polls) >= FAKE_POLLS + 1;
}

static void test_task_lists_are_checked_field_by_field(void **state)
{
    (void)state;
    int port;
    struct fake f = {.fd = listen_loopback(&port)};
    assert_int_equal(pthread_create(&f.th, NULL, fake_main, &f), 0);

    struct server fs;
    server_init(&fs, "fake");
    fs.port = port;
    link_up("fake-app", &fs);
    /* First list: only the two good entries. */
    struct task_watch tw = {.want = 2};
    assert_true(wait_for(list_is, &tw, 5000));
    assert_int_equal(tw.tasks[0].id, 1);
    assert_string_equal(tw.tasks[0].interface, "GET /a");
    assert_int_equal(tw.tasks[0].threshold_ms, 50);
    assert_int_equal(tw.tasks[0].frequency_ms, 5);
    assert_int_equal(tw.tasks[0].max_samples, 1);
    assert_int_equal(tw.tasks[0].ends_ms, 1);
    assert_int_equal(tw.tasks[1].id, 2);
    assert_int_equal(strlen(tw.tasks[1].interface), SONDE_SPAN_INTERFACE_MAX - 1);
    assert_int_equal(tw.tasks[1].threshold_ms, 30000);
    assert_int_equal(tw.tasks[1].frequency_ms, 1000);
    assert_int_equal(tw.tasks[1].max_samples, 100);
    assert_int_equal(tw.tasks[1].captures, 100);
    assert_int_equal(tw.tasks[1].ends_ms, INT64_MAX);
    /* Then 20 tasks: the first 16 are kept. */
    atomic_store(&f.release, 1);
    tw.want = UPLINK_MAX_TASKS;
    assert_true(wait_for(list_is, &tw, 5000));
    assert_int_equal(tw.tasks[0].id, 101);
    assert_int_equal(tw.tasks[UPLINK_MAX_TASKS - 1].id, 100 + UPLINK_MAX_TASKS);
    assert_int_equal(tw.tasks[3].captures, 4);
    /* A list that is not one changes nothing; the versions went back. */
    atomic_store(&f.release, 1000);
    assert_true(wait_for(fake_polled, &f, 10000));
    watch_take(&tw);
    assert_int_equal(tw.n, UPLINK_MAX_TASKS);
    assert_int_equal(tw.changes, 2);
    assert_int_equal(f.polled_version[0], 0);
    assert_int_equal(f.polled_version[1], 5);
    assert_int_equal(f.polled_version[2], 6);
    assert_int_equal(f.polled_version[3], 7);

    /* A claim answered 201 without a capture id is dropped, never claimed
     * again (that could take a second slot). */
    put_capture(101, "trace-fake", "GET /b", 300);
    uint64_t want = 1;
    assert_true(wait_for(dropped_is, &want, 5000));
    assert_int_equal(atomic_load(&f.claims), 1);
    assert_int_equal(stats().captures_sent, 0);

    uplink_stop();
    atomic_store(&f.stop, 1);
    pthread_join(f.th, NULL);
    close(f.fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_tasks_reach_take_work_within_2s_and_leave_when_cancelled),
        T(test_capture_is_claimed_and_uploaded),
        T(test_limit_one_grants_one_claim_refuses_the_next_and_ends_the_task),
        T(test_claims_of_ended_unknown_or_mismatched_tasks),
        T(test_task_events_reach_the_log_in_order_and_bad_ones_are_not_sent),
        T(test_task_items_wait_for_a_server_that_is_down_and_go_after_restart),
        T(test_task_outbox_bounds),
        T(test_new_registration_starts_the_task_list_afresh),
        T(test_task_lists_are_checked_field_by_field),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
