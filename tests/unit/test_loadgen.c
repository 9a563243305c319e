/*
 * test_loadgen.c — the HTTP load generator (src/common/loadgen*.c)
 * against real servers started inside the test: an in-process
 * libmicrohttpd server that counts what it served (paths answering 200,
 * 404, 500, slowly, chunked, with Connection: close, and one recording
 * what a POST brought), and a raw-socket thread server that resets each
 * connection in the middle of its answer.  Also every bad spec field,
 * https, unresolvable hosts, a target that is down, cancel, progress.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/loadgen.h"
#include "common/loadgen_json.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the libmicrohttpd target ---- */

static struct MHD_Daemon *mhd;
static int mhd_port;
static atomic_long served;      /* responses queued, every path */
static atomic_long served_post; /* POSTs whose body and header arrived whole */
static atomic_long bad_post;

struct upload {
    size_t body;
};

static ssize_t chunk_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    if (pos >= 3 * 4)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = max < 4 ? max : 4; /* three chunks of "abcd" */
    memcpy(buf, "abcd", n);
    return (ssize_t)n;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls)
{
    (void)cls;
    (void)version;
    (void)upload_data;
    struct upload *up = *con_cls;
    if (!up) {
        up = calloc(1, sizeof *up);
        *con_cls = up;
        return MHD_YES;
    }
    if (*upload_data_size) {
        up->body += *upload_data_size;
        *upload_data_size = 0;
        return MHD_YES;
    }
    unsigned code = MHD_HTTP_OK;
    struct MHD_Response *r;
    if (strcmp(url, "/chunked") == 0) {
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64, chunk_reader, NULL, NULL);
    } else {
        if (strcmp(url, "/missing") == 0)
            code = MHD_HTTP_NOT_FOUND;
        else if (strcmp(url, "/error") == 0)
            code = MHD_HTTP_INTERNAL_SERVER_ERROR;
        else if (strcmp(url, "/slow") == 0)
            usleep(300000);
        else if (strcmp(url, "/post") == 0) {
            const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Test");
            const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
            if (strcmp(method, "POST") == 0 && up->body == 10 && h && strcmp(h, "yes") == 0 && q &&
                strcmp(q, "1") == 0)
                atomic_fetch_add(&served_post, 1);
            else
                atomic_fetch_add(&bad_post, 1);
        }
        static const char body[] = "hello from the test server\n";
        r = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
        if (strcmp(url, "/close") == 0)
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    up->body = 0;
    atomic_fetch_add(&served, 1);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    free(*con_cls);
    *con_cls = NULL;
}

static int mhd_start(void **state)
{
    (void)state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                           answer, NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED,
                           request_done, NULL, MHD_OPTION_END);
    if (!mhd)
        return -1;
    mhd_port = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static int mhd_stop(void **state)
{
    (void)state;
    MHD_stop_daemon(mhd);
    return 0;
}

/* ---- running a test ---- */

static char url_buf[256];

static const char *target(const char *path)
{
    snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d%s", mhd_port, path);
    return url_buf;
}

static struct loadgen_result *run(const struct loadgen_spec *spec)
{
    struct loadgen *lg;
    char err[256] = "";
    int rc = loadgen_new(spec, &lg, err, sizeof err);
    if (rc)
        fail_msg("loadgen_new: %d %s", rc, err);
    struct loadgen_result *r = malloc(sizeof *r);
    assert_non_null(r);
    rc = loadgen_run(lg, r, err, sizeof err);
    if (rc)
        fail_msg("loadgen_run: %d %s", rc, err);
    loadgen_free(lg);
    return r;
}

static uint64_t status_count(const struct loadgen_result *r, int code)
{
    for (size_t i = 0; i < r->n_status; i++)
        if (r->status[i].code == code)
            return r->status[i].count;
    return 0;
}

/* The per-second series adds up to the totals; the error kinds to errors. */
static void check_series(const struct loadgen_result *r)
{
    uint64_t req = 0, err = 0, sum = 0, max = 0;
    for (size_t i = 0; i < r->n_seconds; i++) {
        req += r->seconds[i].requests;
        err += r->seconds[i].errors;
        sum += r->seconds[i].latency_sum_ns;
        if (r->seconds[i].latency_max_ns > max)
            max = r->seconds[i].latency_max_ns;
    }
    assert_int_equal(req, r->requests);
    assert_int_equal(err, r->errors);
    assert_int_equal(r->errors, r->err_connect + r->err_timeout + r->err_reset + r->err_other);
    assert_int_equal(r->latency.count, r->requests);
    assert_int_equal(max, r->requests ? r->latency.max : 0);
    assert_true(fabs((double)sum - (double)r->latency.sum) <= 1e-9 * (double)sum + 1);
    uint64_t by_status = 0;
    for (size_t i = 0; i < r->n_status; i++)
        by_status += r->status[i].count;
    assert_int_equal(by_status, r->requests);
    assert_true(r->n_seconds >= (size_t)r->elapsed_s);
    assert_true(r->n_seconds <= (size_t)r->elapsed_s + 1);
}

/* ---- against the libmicrohttpd server ---- */

static void test_requests_counted_match_what_the_server_served(void **state)
{
    (void)state;
    long before = atomic_load(&served);
    struct loadgen_spec s = {.url = target("/ok"), .users = 4, .duration_ms = 1500, .threads = 2};
    struct loadgen_result *r = run(&s);
    long n = atomic_load(&served) - before;
    print_message("served %ld, counted %llu, %.0f/s\n", n, (unsigned long long)r->requests,
                  r->requests / r->elapsed_s);
    assert_true(r->requests > 100);
    assert_int_equal(r->errors, 0);
    /* each counted response was served; at most one per user was served
     * but abandoned in flight at the end */
    assert_true((uint64_t)n >= r->requests && (uint64_t)n <= r->requests + 4);
    assert_int_equal(status_count(r, 200), r->requests);
    assert_int_equal(r->n_status, 1);
    assert_true(r->bytes_read > r->requests * 27);
    assert_true(r->bytes_written >= r->requests * 40);
    assert_true(r->elapsed_s >= 1.5 && r->elapsed_s < 2.5);
    assert_true(r->n_seconds == 1 || r->n_seconds == 2);
    assert_true(histogram_quantile(&r->latency, 0.5) > 0);
    check_series(r);
    free(r);
}

static void test_status_codes_are_counted(void **state)
{
    (void)state;
    static const struct { const char *path; int code; } cases[] = {
        {"/missing", 404}, {"/error", 500}, {"/ok", 200}};
    for (size_t i = 0; i < 3; i++) {
        struct loadgen_spec s = {.url = target(cases[i].path), .users = 2, .duration_ms = 300};
        struct loadgen_result *r = run(&s);
        assert_true(r->requests > 0);
        assert_int_equal(r->errors, 0);
        assert_int_equal(r->n_status, 1);
        assert_int_equal(r->status[0].code, cases[i].code);
        assert_int_equal(r->status[0].count, r->requests);
        check_series(r);
        free(r);
    }
}

static void test_chunked_answers_are_read_whole(void **state)
{
    (void)state;
    long before = atomic_load(&served);
    struct loadgen_spec s = {.url = target("/chunked"), .users = 3, .duration_ms = 500};
    struct loadgen_result *r = run(&s);
    long n = atomic_load(&served) - before;
    assert_true(r->requests > 10);
    assert_int_equal(r->errors, 0);
    assert_true((uint64_t)n >= r->requests && (uint64_t)n <= r->requests + 3);
    assert_int_equal(status_count(r, 200), r->requests);
    check_series(r);
    free(r);
}

static void test_connection_close_is_answered_by_reopening(void **state)
{
    (void)state;
    long before = atomic_load(&served);
    struct loadgen_spec s = {.url = target("/close"), .users = 3, .duration_ms = 500};
    struct loadgen_result *r = run(&s);
    long n = atomic_load(&served) - before;
    assert_true(r->requests > 10);
    assert_int_equal(r->errors, 0);
    assert_true((uint64_t)n >= r->requests && (uint64_t)n <= r->requests + 3);
    check_series(r);
    free(r);
}

static void test_method_headers_body_and_query_reach_the_server(void **state)
{
    (void)state;
    long before = atomic_load(&served_post), bad = atomic_load(&bad_post);
    const char *headers[] = {"X-Test: yes", "Accept: */*"};
    struct loadgen_spec s = {.url = target("/post?q=1"), .method = "POST", .headers = headers,
                             .n_headers = 2, .body = "0123456789", .body_len = 10, .users = 2,
                             .duration_ms = 300};
    struct loadgen_result *r = run(&s);
    long n = atomic_load(&served_post) - before;
    assert_true(r->requests > 0);
    assert_int_equal(r->errors, 0);
    assert_int_equal(atomic_load(&bad_post), bad);
    assert_true((uint64_t)n >= r->requests && (uint64_t)n <= r->requests + 2);
    free(r);
}

/* HEAD answers carry a Content-Length but no body. */
static void test_head_answers_have_no_body(void **state)
{
    (void)state;
    struct loadgen_spec s = {.url = target("/ok"), .method = "HEAD", .users = 2, .duration_ms = 300,
                             .timeout_ms = 200};
    struct loadgen_result *r = run(&s);
    assert_true(r->requests > 10);
    assert_int_equal(r->errors, 0);
    free(r);
}

/* 200/s for 2 s: 400 requests ± 5 %, sent on schedule. */
static void test_rate_mode_sends_the_rate(void **state)
{
    (void)state;
    struct loadgen_spec s = {.url = target("/ok"), .users = 4, .duration_ms = 2000, .rate = 200};
    struct loadgen_result *r = run(&s);
    print_message("rate 200/s for 2 s: %llu requests, per second %u %u\n", (unsigned long long)r->requests,
                  r->seconds[0].requests, r->seconds[1].requests);
    assert_true(r->requests >= 380 && r->requests <= 420);
    assert_int_equal(r->errors, 0);
    assert_int_equal(r->n_seconds, 2);
    assert_true(r->seconds[0].requests >= 190 && r->seconds[0].requests <= 210);
    check_series(r);
    free(r);
}

static void test_slow_answers_count_as_timeouts(void **state)
{
    (void)state;
    struct loadgen_spec s = {.url = target("/slow"), .users = 2, .duration_ms = 700, .timeout_ms = 100};
    struct loadgen_result *r = run(&s);
    assert_int_equal(r->requests, 0);
    assert_true(r->err_timeout >= 2);
    assert_int_equal(r->errors, r->err_timeout);
    check_series(r);
    free(r);
}

/* ---- a server that resets in the middle of its answer ---- */

static int reset_fd = -1;
static atomic_int reset_stop;

static void *reset_server(void *arg)
{
    (void)arg;
    while (!atomic_load(&reset_stop)) {
        struct pollfd p = {.fd = reset_fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int c = accept(reset_fd, NULL, NULL);
        if (c < 0)
            continue;
        char buf[4096];
        size_t got = 0;
        while (got < sizeof buf - 1) { /* the whole request head */
            ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = 0;
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        static const char half[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly the start";
        if (write(c, half, sizeof half - 1) < 0) {
        }
        struct linger l = {.l_onoff = 1, .l_linger = 0}; /* close sends RST */
        setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        close(c);
    }
    return NULL;
}

static int listen_any(int *port, int do_listen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || (do_listen && listen(fd, 64) != 0) ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    *port = ntohs(sa.sin_port);
    return fd;
}

static void test_resets_mid_answer_are_counted(void **state)
{
    (void)state;
    int port;
    reset_fd = listen_any(&port, 1);
    assert_true(reset_fd >= 0);
    atomic_store(&reset_stop, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reset_server, NULL), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    struct loadgen_spec s = {.url = url, .users = 2, .duration_ms = 400};
    struct loadgen_result *r = run(&s);
    atomic_store(&reset_stop, 1);
    pthread_join(t, NULL);
    close(reset_fd);
    assert_int_equal(r->requests, 0);
    assert_true(r->err_reset >= 2);
    assert_int_equal(r->errors, r->err_reset);
    assert_true(r->bytes_read > 0);
    check_series(r);
    free(r);
}

/* A port bound but not listening refuses connections: errors counted,
 * the test runs its time and succeeds. */
static void test_target_down_counts_connect_errors_and_runs_its_time(void **state)
{
    (void)state;
    int port;
    int fd = listen_any(&port, 0);
    assert_true(fd >= 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    struct loadgen_spec s = {.url = url, .users = 3, .duration_ms = 600};
    int64_t t0 = now_ms();
    struct loadgen_result *r = run(&s);
    int64_t took = now_ms() - t0;
    close(fd);
    assert_true(took >= 600 && took < 1500);
    assert_int_equal(r->requests, 0);
    assert_true(r->err_connect >= 3);
    assert_int_equal(r->errors, r->err_connect);
    assert_true(r->elapsed_s >= 0.6);
    check_series(r);
    free(r);
}

/* ---- cancel and progress ---- */

struct runner {
    struct loadgen *lg;
    struct loadgen_result *r;
    int rc;
    atomic_int done;
};

static void *run_thread(void *arg)
{
    struct runner *x = arg;
    char err[256];
    x->rc = loadgen_run(x->lg, x->r, err, sizeof err);
    atomic_store(&x->done, 1);
    return NULL;
}

static void test_progress_during_a_run_and_cancel_within_100ms(void **state)
{
    (void)state;
    struct loadgen_spec s = {.url = target("/ok"), .users = 4, .duration_ms = 60000};
    struct runner x = {.r = malloc(sizeof *x.r)};
    char err[256];
    assert_int_equal(loadgen_new(&s, &x.lg, err, sizeof err), 0);
    struct loadgen_result *p = malloc(sizeof *p);
    assert_true(x.r && p);
    loadgen_progress(x.lg, p); /* before the run: nothing */
    assert_int_equal(p->requests, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_thread, &x), 0);
    uint64_t first = 0;
    int64_t deadline = now_ms() + 10000;
    while (now_ms() < deadline) { /* counts grow while it runs */
        loadgen_progress(x.lg, p);
        if (!first && p->requests > 0)
            first = p->requests;
        else if (first && p->requests > first)
            break;
        usleep(5000);
    }
    assert_true(first > 0 && p->requests > first);
    assert_true(p->elapsed_s > 0 && p->elapsed_s < 60);
    check_series(p);
    assert_false(loadgen_cancelled(x.lg));
    int64_t t0 = now_ms();
    loadgen_cancel(x.lg);
    while (!atomic_load(&x.done) && now_ms() - t0 < 5000)
        usleep(1000);
    int64_t took = now_ms() - t0;
    pthread_join(t, NULL);
    print_message("cancel returned after %lld ms\n", (long long)took);
    assert_true(took <= 100);
    assert_int_equal(x.rc, 0);
    assert_true(loadgen_cancelled(x.lg));
    assert_true(x.r->requests >= p->requests);
    assert_true(x.r->elapsed_s < 30);
    loadgen_progress(x.lg, p); /* after: the final counts */
    assert_int_equal(p->requests, x.r->requests);
    check_series(x.r);
    /* one run per loadgen */
    assert_int_equal(loadgen_run(x.lg, NULL, err, sizeof err), -EALREADY);
    loadgen_free(x.lg);
    free(x.r);
    free(p);
}

static void test_cancel_before_run_returns_at_once(void **state)
{
    (void)state;
    struct loadgen_spec s = {.url = target("/ok"), .users = 1, .duration_ms = 60000};
    struct loadgen *lg;
    char err[256];
    assert_int_equal(loadgen_new(&s, &lg, err, sizeof err), 0);
    loadgen_cancel(lg);
    struct loadgen_result *r = malloc(sizeof *r);
    int64_t t0 = now_ms();
    assert_int_equal(loadgen_run(lg, r, err, sizeof err), 0);
    assert_true(now_ms() - t0 < 100);
    assert_int_equal(r->requests + r->errors, 0);
    assert_true(loadgen_cancelled(lg));
    loadgen_free(lg);
    free(r);
    loadgen_free(NULL);
}

/* ---- refused specs ---- */

static void expect_refused(const struct loadgen_spec *s, int rc, const char *words)
{
    struct loadgen *lg = (struct loadgen *)1;
    char err[256] = "";
    int got = loadgen_new(s, &lg, err, sizeof err);
    if (got != rc || !strstr(err, words))
        fail_msg("url %s: got %d '%s', want %d '%s'", s->url ? s->url : "(null)", got, err, rc, words);
    assert_null(lg);
}

static void test_every_bad_spec_field_is_refused_by_name(void **state)
{
    (void)state;
    const struct loadgen_spec ok = {.url = "http://127.0.0.1:1/", .users = 1, .duration_ms = 1000};
    struct loadgen_spec s;
    char big[LOADGEN_URL_MAX + 64];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    memcpy(big, "http://127.0.0.1/", 17);
    static char long_header[LOADGEN_HEADER_MAX + 16];
    memset(long_header, 'v', sizeof long_header - 1);
    memcpy(long_header, "X-Long: ", 8);
    const char *many[LOADGEN_HEADERS_MAX + 1];
    for (int i = 0; i <= LOADGEN_HEADERS_MAX; i++)
        many[i] = "X-A: b";
#define REFUSE(mutation, words)                                                                                \
    do {                                                                                                       \
        s = ok;                                                                                                \
        mutation;                                                                                              \
        expect_refused(&s, -EINVAL, words);                                                                    \
    } while (0)
    REFUSE(s.url = NULL, "url");
    REFUSE(s.url = "", "url");
    REFUSE(s.url = big, "url");
    REFUSE(s.url = "127.0.0.1:80/", "url");
    REFUSE(s.url = "ftp://127.0.0.1/", "url");
    REFUSE(s.url = "http:///path", "url");
    REFUSE(s.url = "http://127.0.0.1/a b", "url");
    REFUSE(s.url = "http://127.0.0.1/a\r\nX: y", "url");
    REFUSE(s.url = "http://user:pw@127.0.0.1/", "url");
    REFUSE(s.url = "http://127.0.0.1:0/", "url");
    REFUSE(s.url = "http://127.0.0.1:99999/", "url");
    REFUSE(s.method = "get", "method");
    REFUSE(s.method = "", "method");
    REFUSE(s.method = "GET /x HTTP/1.0", "method");
    REFUSE(s.method = "ABCDEFGHIJKLMNOP", "method");
    REFUSE(s.n_headers = 1, "headers");
    REFUSE((s.headers = many, s.n_headers = LOADGEN_HEADERS_MAX + 1), "headers");
    const char *h1[] = {"NoColon"};
    REFUSE((s.headers = h1, s.n_headers = 1), "headers[0]");
    const char *h2[] = {"X-Ok: 1", ": empty name"};
    REFUSE((s.headers = h2, s.n_headers = 2), "headers[1]");
    const char *h3[] = {"X-Bad: a\r\nInjected: b"};
    REFUSE((s.headers = h3, s.n_headers = 1), "headers[0]");
    const char *h4[] = {long_header};
    REFUSE((s.headers = h4, s.n_headers = 1), "headers[0]");
    const char *h5[] = {"Bad Name: x"};
    REFUSE((s.headers = h5, s.n_headers = 1), "headers[0]");
    const char *h6[] = {NULL};
    REFUSE((s.headers = h6, s.n_headers = 1), "headers[0]");
    REFUSE(s.body_len = 5, "body");
    REFUSE((s.body = "x", s.body_len = LOADGEN_BODY_MAX + 1), "body");
    REFUSE(s.users = 0, "users");
    REFUSE(s.users = -1, "users");
    REFUSE(s.users = LOADGEN_USERS_MAX + 1, "users");
    REFUSE(s.duration_ms = 0, "duration_ms");
    REFUSE(s.duration_ms = LOADGEN_DURATION_MAX_MS + 1, "duration_ms");
    REFUSE(s.rate = -1, "rate");
    REFUSE(s.rate = LOADGEN_RATE_MAX * 2, "rate");
    REFUSE(s.rate = NAN, "rate");
    REFUSE(s.rate = INFINITY, "rate");
    REFUSE(s.timeout_ms = -1, "timeout_ms");
    REFUSE(s.timeout_ms = 600001, "timeout_ms");
    REFUSE(s.threads = -1, "threads");
    REFUSE(s.threads = LOADGEN_THREADS_MAX + 1, "threads");
#undef REFUSE
    struct loadgen *lg = (struct loadgen *)1;
    char err[64];
    assert_int_equal(loadgen_new(NULL, &lg, err, sizeof err), -EINVAL);
    assert_null(lg);
    /* the limits themselves are fine */
    s = ok;
    s.users = LOADGEN_USERS_MAX;
    s.duration_ms = LOADGEN_DURATION_MAX_MS;
    s.rate = LOADGEN_RATE_MAX;
    s.timeout_ms = 600000;
    s.threads = LOADGEN_THREADS_MAX;
    s.method = "ABCDEFGHIJKLMNO";
    s.headers = many;
    s.n_headers = LOADGEN_HEADERS_MAX;
    assert_int_equal(loadgen_new(&s, &lg, err, sizeof err), 0);
    loadgen_free(lg);
}

static void test_headers_the_engine_owns_are_refused(void **state)
{
    (void)state;
    static const char *const owned[] = {"Host: elsewhere", "content-length: 5", "Connection: close",
                                        "Transfer-Encoding: chunked"};
    for (size_t i = 0; i < 4; i++) {
        const char *h[] = {"X-Fine: 1", owned[i]};
        struct loadgen_spec s = {.url = "http://127.0.0.1:1/", .headers = h, .n_headers = 2, .users = 1,
                                 .duration_ms = 1000};
        expect_refused(&s, -EINVAL, "headers[1]");
    }
}

static void test_https_is_refused(void **state)
{
    (void)state;
    struct loadgen_spec s = {.url = "https://127.0.0.1/", .users = 1, .duration_ms = 1000};
    expect_refused(&s, -ENOTSUP, "https");
    s.url = "HTTPS://127.0.0.1:8443/x";
    expect_refused(&s, -ENOTSUP, "https");
}

static void test_unresolvable_host_is_refused(void **state)
{
    (void)state;
    struct loadgen_spec s = {.url = "http://sonde-no-such-host.invalid/", .users = 1, .duration_ms = 1000};
    expect_refused(&s, -EHOSTUNREACH, "sonde-no-such-host.invalid");
}

static void test_address_is_the_resolved_target(void **state)
{
    (void)state;
    struct loadgen_spec s = {.url = "http://127.0.0.1:8080/x?y=1", .users = 1, .duration_ms = 1000};
    struct loadgen *lg;
    char err[128];
    assert_int_equal(loadgen_new(&s, &lg, err, sizeof err), 0);
    assert_string_equal(loadgen_address(lg), "127.0.0.1:8080");
    socklen_t len = 0;
    const struct sockaddr *sa = loadgen_sockaddr(lg, &len);
    assert_int_equal(sa->sa_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    loadgen_free(lg);
    s.url = "http://[::1]/";
    assert_int_equal(loadgen_new(&s, &lg, err, sizeof err), 0);
    assert_string_equal(loadgen_address(lg), "[::1]:80");
    assert_string_equal(loadgen_host(lg), "::1");
    loadgen_free(lg);
    s.url = "http://LocalHost:8080/";
    assert_int_equal(loadgen_new(&s, &lg, err, sizeof err), 0);
    assert_string_equal(loadgen_host(lg), "LocalHost");
    loadgen_free(lg);
}

static double jnum(json_t *o, const char *path1, const char *path2)
{
    json_t *v = json_object_get(o, path1);
    if (path2)
        v = json_object_get(v, path2);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

static void test_result_json_has_every_figure(void **state)
{
    (void)state;
    struct loadgen_result *r = calloc(1, sizeof *r);
    assert_non_null(r);
    histogram_reset(&r->latency);
    histogram_add(&r->latency, 1000000, 90);   /* 1 ms */
    histogram_add(&r->latency, 100000000, 10); /* 100 ms */
    r->requests = 100;
    r->errors = 3;
    r->err_connect = 1;
    r->err_timeout = 2;
    r->bytes_read = 12345;
    r->elapsed_s = 2.0;
    r->n_status = 3;
    r->status[0].code = 500;
    r->status[0].count = 10;
    r->status[1].code = 0; /* "other" sorts last */
    r->status[1].count = 1;
    r->status[2].code = 200;
    r->status[2].count = 89;
    r->n_seconds = 2;
    r->seconds[0] = (struct loadgen_second){.requests = 60, .latency_sum_ns = 60000000,
                                            .latency_max_ns = 1000000};
    r->seconds[1] = (struct loadgen_second){.errors = 3};

    json_t *o = loadgen_result_json(r, 1);
    assert_non_null(o);
    assert_true(jnum(o, "requests", NULL) == 100);
    assert_true(jnum(o, "requests_per_s", NULL) == 50);
    assert_true(jnum(o, "errors", "total") == 3 && jnum(o, "errors", "timeout") == 2);
    assert_true(jnum(o, "errors", "connect") == 1 && jnum(o, "errors", "reset") == 0);
    assert_true(fabs(jnum(o, "latency_ms", "p50") - 1) <= 0.01);
    assert_true(fabs(jnum(o, "latency_ms", "p99") - 100) <= 1);
    assert_true(jnum(o, "latency_ms", "max") >= 99 && jnum(o, "latency_ms", "min") <= 1.01);
    const char *want[] = {"200", "500", "other"}, *key;
    json_t *v;
    size_t i = 0;
    json_object_foreach(json_object_get(o, "status"), key, v)
        assert_string_equal(key, want[i++]);
    assert_int_equal(i, 3);
    json_t *secs = json_object_get(o, "seconds");
    assert_int_equal(json_array_size(secs), 2);
    assert_true(jnum(json_array_get(secs, 0), "latency_mean_ms", NULL) == 1);
    assert_true(json_is_null(json_object_get(json_array_get(secs, 1), "latency_mean_ms")));
    json_decref(o);

    /* Without the series; and no responses: latency null. */
    memset(r, 0, sizeof *r);
    histogram_reset(&r->latency);
    o = loadgen_result_json(r, 0);
    assert_non_null(o);
    assert_null(json_object_get(o, "seconds"));
    assert_true(json_is_null(json_object_get(o, "latency_ms")));
    assert_int_equal(json_object_size(json_object_get(o, "status")), 0);
    json_decref(o);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_json_has_every_figure),
        cmocka_unit_test(test_requests_counted_match_what_the_server_served),
        cmocka_unit_test(test_status_codes_are_counted),
        cmocka_unit_test(test_chunked_answers_are_read_whole),
        cmocka_unit_test(test_connection_close_is_answered_by_reopening),
        cmocka_unit_test(test_method_headers_body_and_query_reach_the_server),
        cmocka_unit_test(test_head_answers_have_no_body),
        cmocka_unit_test(test_rate_mode_sends_the_rate),
        cmocka_unit_test(test_slow_answers_count_as_timeouts),
        cmocka_unit_test(test_resets_mid_answer_are_counted),
        cmocka_unit_test(test_target_down_counts_connect_errors_and_runs_its_time),
        cmocka_unit_test(test_progress_during_a_run_and_cancel_within_100ms),
        cmocka_unit_test(test_cancel_before_run_returns_at_once),
        cmocka_unit_test(test_every_bad_spec_field_is_refused_by_name),
        cmocka_unit_test(test_headers_the_engine_owns_are_refused),
        cmocka_unit_test(test_https_is_refused),
        cmocka_unit_test(test_unresolvable_host_is_refused),
        cmocka_unit_test(test_address_is_the_resolved_target),
    };
    return cmocka_run_group_tests(tests, mhd_start, mhd_stop);
}
