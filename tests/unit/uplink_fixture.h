/*
 * uplink_fixture.h — what the server link's tests share (test_uplink.c,
 * test_uplink_tasks.c): a real sonded started from the build dir on a
 * free port with its data in a temp dir, the test's own HTTP client to
 * it, the link's configuration, and waiting for a condition with a
 * deadline.  Every sonded is killed by pid at the end.  Include once, in
 * the test's one source file; each test uses some of these.
 */
#ifndef SONDE_TEST_UPLINK_FIXTURE_H
#define SONDE_TEST_UPLINK_FIXTURE_H

#pragma GCC diagnostic ignored "-Wunused-function"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "common/pprof.h"
#include "sonde.h"
#include "threads.h"
#include "uplink.h"

extern char **environ;

#define ADMIN_TOKEN "sonde_" "5e11de7a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbc"
#define MAX_SERVERS 16

static char base_dir[256];
static char sonded_path[PATH_MAX];
static pid_t spawned[MAX_SERVERS];
static int n_spawned;

struct server {
    pid_t pid;
    int port;
    char data[PATH_MAX];
    char agent_token[128];
};
static struct server main_srv;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Polls cond(arg) every 20 ms until it holds or ms pass. */
static int wait_for(int (*cond)(void *), void *arg, int ms)
{
    int64_t deadline = now_ms() + ms;
    for (;;) {
        if (cond(arg))
            return 1;
        if (now_ms() >= deadline)
            return 0;
        pause_ms(20);
    }
}

/* ------------------------------------------------------------------ */
/* HTTP to the server (the test's own client)                          */

struct answer {
    char *data;
    size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    char *d = realloc(a->data, a->len + size * n + 1);
    if (!d)
        return 0;
    memcpy(d + a->len, p, size * n);
    a->len += size * n;
    d[a->len] = '\0';
    a->data = d;
    return size * n;
}

/* method path on port with token and JSON body (may be NULL) → the
 * answer parsed (NULL if not JSON); *status the HTTP status (0: none). */
static json_t *api(int port, const char *method, const char *path, const char *token,
                   const char *body, long *status)
{
    CURL *h = curl_easy_init();
    struct answer a = {0};
    char url[512], auth[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
    struct curl_slist *hdrs = curl_slist_append(NULL, auth);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    long st = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (status)
        *status = st;
    json_t *o = a.data ? json_loadb(a.data, a.len, 0, NULL) : NULL;
    free(a.data);
    return o;
}

static json_t *admin_get(int port, const char *path)
{
    long st;
    json_t *o = api(port, "GET", path, ADMIN_TOKEN, NULL, &st);
    if (st != 200) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ------------------------------------------------------------------ */
/* sonded                                                              */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int healthy(void *arg)
{
    struct server *s = arg;
    long st = 0;
    json_decref(api(s->port, "GET", "/api/v1/health", NULL, NULL, &st));
    return st == 200;
}

/* Starts sonded for s (s->data and s->port set; port 0 = a free one) and
 * waits for /health.  0 or -1. */
static int server_start(struct server *s)
{
    if (!s->port)
        s->port = free_port();
    char listen[64], log_path[PATH_MAX + 16];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(log_path, sizeof log_path, "%s.log", s->data);
    char *argv[] = {sonded_path, "--listen", listen, "--data", s->data, "--heartbeat-s", "1",
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&s->pid, sonded_path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    if (n_spawned < MAX_SERVERS)
        spawned[n_spawned++] = s->pid;
    return wait_for(healthy, s, 15000) ? 0 : -1;
}

static void server_signal(struct server *s, int sig)
{
    if (s->pid > 0) {
        kill(s->pid, sig);
        if (sig == SIGKILL || sig == SIGTERM) {
            waitpid(s->pid, NULL, 0);
            for (int i = 0; i < n_spawned; i++)
                if (spawned[i] == s->pid)
                    spawned[i] = 0;
            s->pid = 0;
        }
    }
}

/* A fresh data dir under the test's temp dir. */
static void server_init(struct server *s, const char *name)
{
    memset(s, 0, sizeof *s);
    snprintf(s->data, sizeof s->data, "%s/%s", base_dir, name);
}

/* Creates an agent token on the running server s. */
static int server_agent_token(struct server *s)
{
    long st;
    json_t *o = api(s->port, "POST", "/api/v1/tokens", ADMIN_TOKEN,
                    "{\"role\": \"agent\", \"name\": \"uplink-test\"}", &st);
    const char *t = json_string_value(json_object_get(o, "token"));
    if (st == 201 && t)
        snprintf(s->agent_token, sizeof s->agent_token, "%s", t);
    json_decref(o);
    return s->agent_token[0] ? 0 : -1;
}

/* A server started, given an agent token, then stopped: the uplink can be
 * started against its port before it comes back with server_start(). */
static void server_prepare_down(struct server *s, const char *name)
{
    server_init(s, name);
    assert_int_equal(server_start(s), 0);
    assert_int_equal(server_agent_token(s), 0);
    server_signal(s, SIGTERM);
}

/* Two stores that know the same agent token: a is prepared and down
 * (server_prepare_down); b, not started, is on a's port with a copy of
 * a's data as it is now.  When b replaces a, the link finds a server
 * that does not know what a learned since. */
static void server_prepare_copy(struct server *a, const char *name_a, struct server *b,
                                const char *name_b)
{
    server_prepare_down(a, name_a);
    server_init(b, name_b);
    b->port = a->port;
    snprintf(b->agent_token, sizeof b->agent_token, "%s", a->agent_token);
    char cmd[3 * PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s'/sonde.db* '%s'/", b->data, a->data,
             b->data);
    assert_int_equal(system(cmd), 0);
}

/* A listening TCP socket on a free loopback port (*port) for a scripted
 * server thread; its accept wakes every 100 ms so the thread can see
 * that it should stop. */
static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    struct timeval tv = {0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    *port = ntohs(a.sin_port);
    return fd;
}

static void kill_all_servers(void)
{
    for (int i = 0; i < n_spawned; i++)
        if (spawned[i] > 0) {
            kill(spawned[i], SIGCONT);
            kill(spawned[i], SIGKILL);
            waitpid(spawned[i], NULL, 0);
            spawned[i] = 0;
        }
}

/* ------------------------------------------------------------------ */
/* The link                                                            */

static void link_config(struct uplink_config *c, const char *app, const struct server *s,
                        int port, int exit_flush_ms)
{
    memset(c, 0, sizeof *c);
    snprintf(c->server, sizeof c->server, "http://127.0.0.1:%d/", port);
    snprintf(c->app, sizeof c->app, "%s", app);
    snprintf(c->instance, sizeof c->instance, "unit-host");
    snprintf(c->token, sizeof c->token, "%s", s->agent_token);
    snprintf(c->cmdline, sizeof c->cmdline, "test_uplink --x");
    c->register_delay_ms = 0;
    c->exit_flush_ms = exit_flush_ms;
}

static void link_start(const char *app, const struct server *s, int exit_flush_ms)
{
    struct uplink_config c;
    link_config(&c, app, s, s->port, exit_flush_ms);
    assert_int_equal(uplink_start(&c), 0);
}

static int registered(void *arg)
{
    (void)arg;
    struct uplink_stats st;
    uplink_get_stats(&st);
    return st.registered;
}

static struct uplink_stats stats(void)
{
    struct uplink_stats st;
    uplink_get_stats(&st);
    return st;
}

/* The settings the registration delivered (first uplink_take_work). */
static int first_settings(void *arg)
{
    struct uplink_work *w = arg;
    return uplink_take_work(w) && w->settings_changed;
}

/* A small valid gzipped pprof (malloc'ed). */
static void *profile_gz(size_t *len)
{
    struct pprof_builder *b = pprof_builder_new();
    assert_non_null(b);
    pprof_builder_sample_type(b, "samples", "count");
    pprof_builder_sample_type(b, "cpu", "nanoseconds");
    uint64_t fn = pprof_builder_function(b, "uplink_test_leaf", NULL, "test_uplink.c", 1);
    struct pprof_line line = {fn, 42};
    uint64_t loc = pprof_builder_location(b, 0, 0x1000, &line, 1);
    int64_t v[2] = {5, 50000000};
    pprof_builder_sample(b, &loc, 1, v, NULL, 0);
    uint8_t *gz = NULL;
    assert_int_equal(pprof_builder_encode(b, &gz, len), 0);
    pprof_builder_free(b);
    return gz;
}

static struct uplink_session session_meta(const char *kind)
{
    struct uplink_session m = {0};
    snprintf(m.triggered_by, sizeof m.triggered_by, "%s", kind);
    m.types = SONDE_PROFILE_CPU;
    m.start_ms = wall_ms() - 3000;
    m.duration_s = 120;
    m.cpu_pct = -1;
    m.mem_pct = -1;
    return m;
}

/* Ends handle h with a profile and the metadata the tests check. */
static void end_with_profile(uint64_t h, struct uplink_session m)
{
    size_t len;
    void *gz = profile_gz(&len);
    m.duration_s = 3;
    m.samples = 123;
    m.traces = 7;
    m.cpu_pct = 42.5;
    m.mem_pct = 3.5;
    uplink_session_end(h, &m, gz, len);
}

/* Sessions of app on port s, in a condition's terms. */
struct sessions_query {
    int port;
    const char *app;
    const char *state; /* wanted state of every one */
    size_t n;          /* wanted count */
};

static int sessions_are(void *arg)
{
    struct sessions_query *q = arg;
    char path[256];
    snprintf(path, sizeof path, "/api/v1/sessions?app=%s&limit=100", q->app);
    json_t *o = admin_get(q->port, path);
    json_t *list = json_object_get(o, "sessions");
    int ok = json_array_size(list) == q->n;
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s) {
        ok = ok && strcmp(json_string_value(json_object_get(s, "state")), q->state) == 0;
        if (strcmp(q->state, "completed") == 0)
            ok = ok && json_is_true(json_object_get(s, "has_profile"));
    }
    json_decref(o);
    return ok;
}

/* GET path on port (admin token) → the array under key (a new
 * reference; NULL if there is none). */
static json_t *admin_get_list(int port, const char *path, const char *key)
{
    json_t *o = admin_get(port, path);
    json_t *list = json_incref(json_object_get(o, key));
    json_decref(o);
    return list;
}

static json_t *only_session(int port, const char *app)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/sessions?app=%s", app);
    json_t *list = admin_get_list(port, path, "sessions");
    assert_int_equal(json_array_size(list), 1);
    json_t *s = json_incref(json_array_get(list, 0));
    json_decref(list);
    return s;
}

static json_t *agents_of(int port, const char *app)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/agents?app=%s", app);
    return admin_get_list(port, path, "agents");
}

static json_int_t int_of(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static const char *str_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}


/* ------------------------------------------------------------------ */
/* Group setup                                                         */

static int have_sonded;

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    snprintf(sonded_path, sizeof sonded_path, "%s/sonded", SONDE_BUILD_DIR);
    if (access(sonded_path, X_OK) != 0)
        snprintf(sonded_path, sizeof sonded_path, "build/sonded");
    have_sonded = access(sonded_path, X_OK) == 0;
    if (!have_sonded) {
        fprintf(stderr, "%s: no sonded in %s or build/: skipped\n", program_invocation_short_name,
                SONDE_BUILD_DIR);
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(base_dir, sizeof base_dir, "%s/sonde-uplink-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base_dir))
        return -1;
    setenv("SONDE_ADMIN_TOKEN", ADMIN_TOKEN, 1);
    atexit(kill_all_servers);
    server_init(&main_srv, "main");
    if (server_start(&main_srv) != 0 || server_agent_token(&main_srv) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kill_all_servers();
    if (base_dir[0]) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "%s: could not remove %s\n", program_invocation_short_name, base_dir);
    }
    return 0;
}

static int need_sonded(void **state)
{
    (void)state;
    if (!have_sonded)
        skip();
    return 0;
}

static int after_each(void **state)
{
    (void)state;
    uplink_stop(); /* a failed test must not leave the link to the next */
    return 0;
}

#define T(f) cmocka_unit_test_setup_teardown(f, need_sonded, after_each)

#endif
