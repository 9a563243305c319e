/*
 * cmd_loadtest.c — `sonde loadtest URL [-c USERS] [-d DURATION] ...`: runs
 * the load generator (common/loadgen.h) here, in this process, against
 * URL and prints a summary like wrk's (or, with --json, the whole result
 * with its per-second series).  No server involved: sonded runs the same
 * engine for load tests as a resource.
 *
 * Every flag is checked before anything is sent: a bad one is a usage
 * error (exit 2) whose message names the flag and its range.  The test
 * then runs its duration; a target that is down is not a failure (its
 * connects are counted as errors, exit 0).  Exit 1 only when the engine
 * itself cannot run (threads, epoll) or the host does not resolve.
 *
 * Ctrl-C (SIGINT) or SIGTERM stops the test early and the summary of what
 * was measured is printed all the same (exit 0, "cancelled" in it); a
 * second Ctrl-C quits at once.  loadgen_cancel is not async-signal-safe,
 * so there is no signal handler: both signals are blocked in every thread
 * and taken by a thread of ours with sigwait, which calls it.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/command.h"
#include "commands.h"
#include "common/loadgen.h"

#define DEFAULT_USERS 10
#define DEFAULT_DURATION_S 60
#define DEFAULT_TIMEOUT_MS 10000
#define TIMEOUT_MAX_MS 600000

static void loadtest_usage(FILE *f)
{
    fprintf(f,
            "usage: sonde loadtest URL [-c|--users N] [-d|--duration D] [--rate R]\n"
            "                      [-m|--method M] [-H|--header \"Name: value\"]...\n"
            "                      [--body TEXT | --body-file FILE] [--timeout MS]\n"
            "                      [--threads N] [--json]\n"
            "  loads URL (plain http://) with N users, each one keep-alive connection\n"
            "  sending one request after the other, for D; prints latency percentiles,\n"
            "  requests/s, status codes and errors.  Ctrl-C stops early with the summary.\n"
            "  -c, --users N      concurrent users (connections), 1..%d (default %d)\n"
            "  -d, --duration D   how long: 1s..1h as 30s, 2m, 1h or seconds (default %ds)\n"
            "  --rate R           total requests/s, 0.001..%.0f, spread over the users;\n"
            "                     latency counts from each request's scheduled time\n"
            "                     (default: as fast as the users go)\n"
            "  -m, --method M     1..15 letters (default GET, POST with a body)\n"
            "  -H, --header H     a request header \"Name: value\" (repeatable, at most %d;\n"
            "                     not Host, Content-Length, Connection, Transfer-Encoding)\n"
            "  --body TEXT        the request body (at most 1 MiB)\n"
            "  --body-file FILE   the request body from FILE (at most 1 MiB)\n"
            "  --timeout MS       per request, connect included, 1..%d (default %d)\n"
            "  --threads N        worker threads, 1..%d (default: one per CPU, at most N users)\n"
            "  --json             the whole result as JSON, with the per-second series\n"
            "  exit status: 0 the test ran (errors or not), 1 it could not run, 2 usage error\n",
            LOADGEN_USERS_MAX, DEFAULT_USERS, DEFAULT_DURATION_S, LOADGEN_RATE_MAX,
            LOADGEN_HEADERS_MAX, TIMEOUT_MAX_MS, DEFAULT_TIMEOUT_MS, LOADGEN_THREADS_MAX);
}

/* ------------------------------------------------------------------ */
/* Arguments                                                           */

struct loadtest_args {
    struct loadgen_spec spec;
    const char *headers[LOADGEN_HEADERS_MAX];
    char method[16];
    char *body_file_data; /* owned, --body-file's contents */
    int json;
};

/* A flag with a short and a long name: "-c N", "-cN", "--users N",
 * "--users=N".  1 with *val (NULL when missing; *i advanced past a
 * separate value), else 0. */
static int flag_value(const char *shortname, const char *longname, int argc, char **argv, int *i,
                      const char **val)
{
    const char *a = argv[*i];
    if (shortname && !strncmp(a, shortname, 2)) {
        if (a[2]) {
            *val = a + 2;
            return 1;
        }
        *val = *i + 1 < argc ? argv[++*i] : NULL;
        return 1;
    }
    return client_arg_value(longname, argc, argv, i, val);
}

/* Prints "sonde loadtest: " msg (with v quoted, or "nothing" when the
 * flag had no value) and the usage; 2. */
static int bad_flag(const struct command *cmd, const char *msg, const char *v)
{
    char text[LOADGEN_HEADER_MAX + 256];
    if (v)
        snprintf(text, sizeof text, "%s, not '%.200s'%s", msg, v, strlen(v) > 200 ? "..." : "");
    else
        snprintf(text, sizeof text, "%s, not nothing", msg);
    return command_usage_error(cmd, "%s", text);
}

/* RFC 9110 token characters (a header's name). */
static int is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* "Name: value": 0, or -1 with why in msg. */
static int check_header(const char *h, char *msg, size_t len)
{
    static const char *const engine_own[] = {"host", "content-length", "connection",
                                             "transfer-encoding"};
    size_t n = strlen(h), name = 0;
    while (is_tchar(h[name]))
        name++;
    if (name == 0 || h[name] != ':') {
        snprintf(msg, len, "-H/--header must be \"Name: value\" (a name of letters, digits or "
                           "!#$%%&'*+-.^_`|~, then a colon)");
        return -1;
    }
    if (n > LOADGEN_HEADER_MAX) {
        snprintf(msg, len, "-H/--header must be at most %d bytes", LOADGEN_HEADER_MAX);
        return -1;
    }
    for (size_t i = name + 1; i < n; i++)
        if (((unsigned char)h[i] < 0x20 && h[i] != '\t') || h[i] == 0x7f) {
            snprintf(msg, len, "-H/--header's value must have no control characters (no line "
                               "breaks)");
            return -1;
        }
    for (size_t k = 0; k < sizeof engine_own / sizeof engine_own[0]; k++)
        if (strlen(engine_own[k]) == name && !strncasecmp(h, engine_own[k], name)) {
            snprintf(msg, len, "-H/--header may not set Host, Content-Length, Connection or "
                               "Transfer-Encoding: sonde sets them");
            return -1;
        }
    return 0;
}

/* --body-file: the whole file into args (at most LOADGEN_BODY_MAX).  0,
 * or -1 with why in msg. */
static int read_body_file(struct loadtest_args *args, const char *path, char *msg, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = fd >= 0 ? malloc(LOADGEN_BODY_MAX + 1) : NULL;
    size_t got = 0;
    int err = fd < 0 ? errno : buf ? 0 : ENOMEM;
    while (!err && got <= LOADGEN_BODY_MAX) {
        ssize_t r = read(fd, buf + got, LOADGEN_BODY_MAX + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            err = errno;
        else if (r == 0)
            break;
        else
            got += (size_t)r;
    }
    if (fd >= 0)
        close(fd);
    if (!err && got > LOADGEN_BODY_MAX) {
        snprintf(msg, len, "--body-file: %s is over 1 MiB (%zu bytes at most)", path,
                 LOADGEN_BODY_MAX);
        free(buf);
        return -1;
    }
    if (err) {
        snprintf(msg, len, "--body-file: cannot read %s: %s", path, strerror(err));
        free(buf);
        return -1;
    }
    free(args->body_file_data);
    args->body_file_data = buf;
    args->spec.body = buf;
    args->spec.body_len = got;
    return 0;
}

/* What parse_args returns when the test is to run. */
#define ARGS_RUN (-1)

/* Walks argv into args: ARGS_RUN, or the exit status to return at once
 * (help: 0; usage error: 2, said). */
static int parse_args(struct command *cmd, struct loadtest_args *args, int argc, char **argv)
{
    struct loadgen_spec *s = &args->spec;
    const char *url = NULL, *body = NULL, *body_file = NULL, *v;
    char msg[512];
    long long n;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            loadtest_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            args->json = 1;
        } else if (flag_value("-c", "--users", argc, argv, &i, &v)) {
            if (parse_int(v, 1, LOADGEN_USERS_MAX, &n) != 0) {
                snprintf(msg, sizeof msg, "-c/--users must be 1..%d concurrent users",
                         LOADGEN_USERS_MAX);
                return bad_flag(cmd, msg, v);
            }
            s->users = (int)n;
        } else if (flag_value("-d", "--duration", argc, argv, &i, &v)) {
            if (parse_seconds(v, 1, LOADGEN_DURATION_MAX_MS / 1000, &n) != 0)
                return bad_flag(cmd, "-d/--duration must be 1s..1h (30s, 2m, 1h or seconds)",
                                v);
            s->duration_ms = n * 1000;
        } else if (flag_value(NULL, "--rate", argc, argv, &i, &v)) {
            char *end = NULL;
            errno = 0;
            double r = v && *v ? strtod(v, &end) : NAN;
            if (errno || !end || *end || !isfinite(r) || r < 0.001 || r > LOADGEN_RATE_MAX) {
                snprintf(msg, sizeof msg, "--rate must be 0.001..%.0f requests/s in all",
                         LOADGEN_RATE_MAX);
                return bad_flag(cmd, msg, v);
            }
            s->rate = r;
        } else if (flag_value("-m", "--method", argc, argv, &i, &v)) {
            size_t len = v ? strlen(v) : 0, k = 0;
            while (k < len && ((v[k] >= 'A' && v[k] <= 'Z') || (v[k] >= 'a' && v[k] <= 'z')))
                k++;
            if (len == 0 || len > 15 || k != len)
                return bad_flag(cmd, "-m/--method must be 1..15 letters (GET, POST, ...)", v);
            for (k = 0; k <= len; k++) /* upper case, as HTTP methods are */
                args->method[k] = v[k] >= 'a' && v[k] <= 'z' ? (char)(v[k] - 'a' + 'A') : v[k];
            s->method = args->method;
        } else if (flag_value("-H", "--header", argc, argv, &i, &v)) {
            if (!v || check_header(v, msg, sizeof msg) != 0)
                return bad_flag(cmd, v ? msg : "-H/--header needs \"Name: value\"", v);
            if (s->n_headers == LOADGEN_HEADERS_MAX) {
                snprintf(msg, sizeof msg, "-H/--header: at most %d headers",
                         LOADGEN_HEADERS_MAX);
                return command_usage_error(cmd, "%s", msg);
            }
            args->headers[s->n_headers++] = v;
        } else if (flag_value(NULL, "--body", argc, argv, &i, &v)) {
            if (!v)
                return bad_flag(cmd, "--body needs the request body's text", v);
            if (strlen(v) > LOADGEN_BODY_MAX) {
                snprintf(msg, sizeof msg, "--body must be at most 1 MiB (%zu bytes)",
                         LOADGEN_BODY_MAX);
                return command_usage_error(cmd, "%s", msg);
            }
            body = v;
        } else if (flag_value(NULL, "--body-file", argc, argv, &i, &v)) {
            if (!v || !*v)
                return bad_flag(cmd, "--body-file needs a file name", v);
            body_file = v;
        } else if (flag_value(NULL, "--timeout", argc, argv, &i, &v)) {
            if (parse_int(v, 1, TIMEOUT_MAX_MS, &n) != 0) {
                snprintf(msg, sizeof msg, "--timeout must be 1..%d ms", TIMEOUT_MAX_MS);
                return bad_flag(cmd, msg, v);
            }
            s->timeout_ms = (int)n;
        } else if (flag_value(NULL, "--threads", argc, argv, &i, &v)) {
            if (parse_int(v, 1, LOADGEN_THREADS_MAX, &n) != 0) {
                snprintf(msg, sizeof msg, "--threads must be 1..%d", LOADGEN_THREADS_MAX);
                return bad_flag(cmd, msg, v);
            }
            s->threads = (int)n;
        } else if (a[0] == '-' && a[1]) {
            return command_usage_error(cmd, "unknown option '%s'", a);
        } else if (url) {
            snprintf(msg, sizeof msg, "one URL only ('%.200s' and '%.200s')", url, a);
            return command_usage_error(cmd, "%s", msg);
        } else {
            url = a;
        }
    }
    if (!url)
        return command_usage_error(cmd, "no URL given: sonde loadtest http://HOST[:PORT]/PATH%s",
                                   NULL);
    if (!strncasecmp(url, "https://", 8))
        return command_usage_error(cmd, "https is not supported, plain http:// only: '%s'", url);
    if (strncasecmp(url, "http://", 7) != 0 || !url[7] || url[7] == '/') {
        snprintf(msg, sizeof msg, "the URL must be http://HOST[:PORT][/PATH], not '%.300s'", url);
        return command_usage_error(cmd, "%s", msg);
    }
    if (strlen(url) > LOADGEN_URL_MAX) {
        snprintf(msg, sizeof msg, "the URL must be at most %d bytes", LOADGEN_URL_MAX);
        return command_usage_error(cmd, "%s", msg);
    }
    if (body && body_file)
        return command_usage_error(cmd, "--body and --body-file: one or the other%s", NULL);
    if (body) {
        s->body = body;
        s->body_len = strlen(body);
    } else if (body_file && read_body_file(args, body_file, msg, sizeof msg) != 0) {
        return command_usage_error(cmd, "%s", msg);
    }
    if (!s->method)
        s->method = body || body_file ? "POST" : "GET";
    s->url = url;
    s->headers = args->headers;
    return ARGS_RUN;
}

/* ------------------------------------------------------------------ */
/* Ctrl-C                                                              */

/* A thread that waits for SIGINT and SIGTERM (blocked everywhere else)
 * and cancels the test. */
struct interrupt {
    struct loadgen *lg;
    sigset_t set;
    pthread_t thread;
    atomic_int done; /* the test is over: the next signal ends the thread */
    atomic_int signo; /* the signal that cancelled, 0 if none */
};

/* The thread's body: the first signal cancels (the run returns within
 * ~100 ms and the summary is printed), a second one exits at once; after
 * the test, run_interruptible sends one to end the thread. */
static void *wait_signals(void *arg)
{
    struct interrupt *in = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&in->set, &sig) != 0)
            continue;
        if (atomic_load(&in->done))
            return NULL;
        if (atomic_load(&in->signo)) /* a second Ctrl-C: quit at once */
            _exit(128 + sig);
        atomic_store(&in->signo, sig);
        fprintf(stderr, "sonde loadtest: stopping (%s again quits at once)\n",
                sig == SIGINT ? "Ctrl-C" : "the signal");
        loadgen_cancel(in->lg);
    }
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

/* "850.00us", "1.23ms", "2.50s": wrk's way. */
static void fmt_latency(uint64_t ns, char *buf, size_t len)
{
    if (ns < 1000000)
        snprintf(buf, len, "%.2fus", (double)ns / 1e3);
    else if (ns < 1000000000)
        snprintf(buf, len, "%.2fms", (double)ns / 1e6);
    else
        snprintf(buf, len, "%.2fs", (double)ns / 1e9);
}

static void fmt_bytes(uint64_t b, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (b < 1024) {
        snprintf(buf, len, "%lluB", (unsigned long long)b);
        return;
    }
    double v = (double)b / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%.2f%s", v, units[u]);
}

/* The worker threads the engine uses when --threads is not given (as
 * loadgen.h says: min(users, CPUs)). */
static int threads_of(const struct loadgen_spec *s)
{
    if (s->threads > 0)
        return s->threads;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int t = cpus > 0 ? (int)(cpus < LOADGEN_THREADS_MAX ? cpus : LOADGEN_THREADS_MAX) : 1;
    return t < s->users ? t : s->users;
}

/* The status codes in ascending order (code 0, "other codes", last). */
static void sorted_status(const struct loadgen_result *r, size_t *order)
{
    for (size_t i = 0; i < r->n_status; i++)
        order[i] = i;
    for (size_t i = 1; i < r->n_status; i++)
        for (size_t j = i; j > 0; j--) {
            int a = r->status[order[j - 1]].code, b = r->status[order[j]].code;
            if (!(a == 0 || (b != 0 && a > b)))
                break;
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
}

/* The first lines, printed before the run. */
static void print_header(const struct loadgen_spec *s, const char *address)
{
    char dur[32];
    fmt_seconds(s->duration_ms / 1000, dur, sizeof dur);
    printf("Load test of %s (%s)\n", s->url, address);
    printf("  %d user%s, %d thread%s, %s, %s", s->users, s->users == 1 ? "" : "s",
           threads_of(s), threads_of(s) == 1 ? "" : "s", dur, s->method);
    if (s->body_len)
        printf(" with a %zu-byte body", s->body_len);
    if (s->rate > 0)
        printf(", %g requests/s in all\n", s->rate);
    else
        printf(", as fast as the users go\n");
    fflush(stdout);
}

static void print_summary(const struct loadgen_result *r, int cancelled)
{
    char a[32], b[32], c[32], d[32], e[32];
    if (cancelled)
        printf("  Cancelled after %.2fs\n", r->elapsed_s);
    if (r->latency.count) {
        fmt_latency((uint64_t)histogram_mean(&r->latency), a, sizeof a);
        fmt_latency(histogram_quantile(&r->latency, 0.50), b, sizeof b);
        fmt_latency(histogram_quantile(&r->latency, 0.90), c, sizeof c);
        fmt_latency(histogram_quantile(&r->latency, 0.99), d, sizeof d);
        fmt_latency(r->latency.max, e, sizeof e);
        printf("  Latency   mean %s  p50 %s  p90 %s  p99 %s  max %s\n", a, b, c, d, e);
    } else {
        printf("  Latency   no responses\n");
    }
    double rps = r->elapsed_s > 0 ? (double)r->requests / r->elapsed_s : 0;
    printf("  Requests  %llu in %.2fs, %.2f/s\n", (unsigned long long)r->requests, r->elapsed_s,
           rps);
    fmt_bytes(r->bytes_read, a, sizeof a);
    printf("  Read      %s (%llu bytes)\n", a, (unsigned long long)r->bytes_read);
    printf("  Status   ");
    size_t order[LOADGEN_STATUS_MAX];
    sorted_status(r, order);
    for (size_t i = 0; i < r->n_status; i++) {
        const typeof(r->status[0]) *st = &r->status[order[i]];
        if (st->code)
            printf(" %d: %llu", st->code, (unsigned long long)st->count);
        else
            printf(" other: %llu", (unsigned long long)st->count);
    }
    printf("%s\n", r->n_status ? "" : " none");
    printf("  Errors    %llu", (unsigned long long)r->errors);
    if (r->errors)
        printf(": connect %llu, timeout %llu, reset %llu, other %llu",
               (unsigned long long)r->err_connect, (unsigned long long)r->err_timeout,
               (unsigned long long)r->err_reset, (unsigned long long)r->err_other);
    printf("\n");
}

/* ns as ms with µs precision. */
static json_t *json_ms(double ns)
{
    return json_real(round(ns / 1e3) / 1e3);
}

/* The whole result as JSON; NULL when out of memory. */
static json_t *result_json(const struct loadgen_spec *s, const char *address,
                           const struct loadgen_result *r, int cancelled)
{
    json_t *o = json_object(), *lat = json_object(), *status = json_object(),
           *errors = json_object(), *seconds = json_array();
    if (!o || !lat || !status || !errors || !seconds) {
        json_decref(o);
        json_decref(lat);
        json_decref(status);
        json_decref(errors);
        json_decref(seconds);
        return NULL;
    }
    int bad = 0;
    bad |= json_object_set_new(o, "url", json_string(s->url));
    bad |= json_object_set_new(o, "address", json_string(address));
    bad |= json_object_set_new(o, "method", json_string(s->method));
    bad |= json_object_set_new(o, "users", json_integer(s->users));
    bad |= json_object_set_new(o, "threads", json_integer(threads_of(s)));
    bad |= json_object_set_new(o, "duration_s", json_integer(s->duration_ms / 1000));
    bad |= json_object_set_new(o, "rate", s->rate > 0 ? json_real(s->rate) : json_null());
    bad |= json_object_set_new(o, "timeout_ms", json_integer(s->timeout_ms));
    bad |= json_object_set_new(o, "body_bytes", json_integer((json_int_t)s->body_len));
    bad |= json_object_set_new(o, "cancelled", json_boolean(cancelled));
    bad |= json_object_set_new(o, "elapsed_s", json_real(round(r->elapsed_s * 1e3) / 1e3));
    bad |= json_object_set_new(o, "requests", json_integer((json_int_t)r->requests));
    bad |= json_object_set_new(
        o, "requests_per_s",
        json_real(r->elapsed_s > 0 ? round((double)r->requests / r->elapsed_s * 100) / 100 : 0));
    bad |= json_object_set_new(o, "bytes_read", json_integer((json_int_t)r->bytes_read));
    bad |= json_object_set_new(o, "bytes_written", json_integer((json_int_t)r->bytes_written));

    const struct histogram *h = &r->latency;
    if (h->count) {
        bad |= json_object_set_new(lat, "min", json_ms((double)h->min));
        bad |= json_object_set_new(lat, "mean", json_ms(histogram_mean(h)));
        bad |= json_object_set_new(lat, "p50", json_ms((double)histogram_quantile(h, 0.50)));
        bad |= json_object_set_new(lat, "p90", json_ms((double)histogram_quantile(h, 0.90)));
        bad |= json_object_set_new(lat, "p99", json_ms((double)histogram_quantile(h, 0.99)));
        bad |= json_object_set_new(lat, "max", json_ms((double)h->max));
    }
    if (!h->count) {
        json_decref(lat);
        lat = json_null(); /* no responses: no latencies */
    }
    bad |= json_object_set_new(o, "latency_ms", lat);

    size_t order[LOADGEN_STATUS_MAX];
    sorted_status(r, order);
    for (size_t i = 0; i < r->n_status; i++) {
        char code[16];
        snprintf(code, sizeof code, "%d", r->status[order[i]].code);
        bad |= json_object_set_new(status, r->status[order[i]].code ? code : "other",
                                   json_integer((json_int_t)r->status[order[i]].count));
    }
    bad |= json_object_set_new(o, "status", status);

    bad |= json_object_set_new(errors, "total", json_integer((json_int_t)r->errors));
    bad |= json_object_set_new(errors, "connect", json_integer((json_int_t)r->err_connect));
    bad |= json_object_set_new(errors, "timeout", json_integer((json_int_t)r->err_timeout));
    bad |= json_object_set_new(errors, "reset", json_integer((json_int_t)r->err_reset));
    bad |= json_object_set_new(errors, "other", json_integer((json_int_t)r->err_other));
    bad |= json_object_set_new(o, "errors", errors);

    for (size_t i = 0; i < r->n_seconds && i < LOADGEN_SECONDS_MAX; i++) {
        const struct loadgen_second *sec = &r->seconds[i];
        json_t *x = json_object();
        bad |= !x || json_array_append_new(seconds, x);
        if (!x)
            break;
        bad |= json_object_set_new(x, "requests", json_integer(sec->requests));
        bad |= json_object_set_new(x, "errors", json_integer(sec->errors));
        bad |= json_object_set_new(
            x, "latency_mean_ms",
            sec->requests ? json_ms((double)sec->latency_sum_ns / sec->requests) : json_null());
        bad |= json_object_set_new(x, "latency_max_ms", sec->requests
                                                            ? json_ms((double)sec->latency_max_ns)
                                                            : json_null());
    }
    bad |= json_object_set_new(o, "seconds", seconds);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ------------------------------------------------------------------ */

/* Runs the test with SIGINT and SIGTERM taken by a thread of ours: 0, or
 * -errno (message in err). */
static int run_interruptible(struct loadgen *lg, struct loadgen_result *res, char *err,
                             size_t errlen)
{
    struct interrupt in = {.lg = lg};
    sigemptyset(&in.set);
    sigaddset(&in.set, SIGINT);
    sigaddset(&in.set, SIGTERM);
    sigset_t old;
    /* Blocked before any thread starts: the engine's workers inherit it. */
    int rc = pthread_sigmask(SIG_BLOCK, &in.set, &old);
    if (rc == 0)
        rc = pthread_create(&in.thread, NULL, wait_signals, &in);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the signal thread: %s", strerror(rc));
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return -rc;
    }
    rc = loadgen_run(lg, res, err, errlen);
    atomic_store(&in.done, 1);
    pthread_kill(in.thread, SIGINT); /* blocked, so sigwait takes it: not the process */
    pthread_join(in.thread, NULL);
    return rc;
}

int cmd_loadtest(int argc, char **argv)
{
    struct command cmd;
    command_init(&cmd, "loadtest", loadtest_usage, 0);
    struct loadtest_args args = {.spec = {.users = DEFAULT_USERS,
                                          .duration_ms = DEFAULT_DURATION_S * 1000LL,
                                          .timeout_ms = DEFAULT_TIMEOUT_MS}};
    int rc = parse_args(&cmd, &args, argc, argv);
    if (rc != ARGS_RUN) {
        free(args.body_file_data);
        return rc;
    }
    /* A server that goes away mid-write: an error to count, not our end. */
    signal(SIGPIPE, SIG_IGN);

    char err[512] = "";
    struct loadgen *lg = NULL;
    rc = loadgen_new(&args.spec, &lg, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "sonde loadtest: %s\n", err[0] ? err : strerror(-rc));
        if (rc == -EINVAL || rc == -ENOTSUP)
            loadtest_usage(stderr);
        free(args.body_file_data);
        return rc == -EINVAL || rc == -ENOTSUP ? 2 : 1;
    }
    struct loadgen_result *res = calloc(1, sizeof *res);
    if (!res) {
        fprintf(stderr, "sonde loadtest: out of memory\n");
        loadgen_free(lg);
        free(args.body_file_data);
        return 1;
    }
    if (!args.json)
        print_header(&args.spec, loadgen_address(lg));
    rc = run_interruptible(lg, res, err, sizeof err);
    int status = 0;
    if (rc != 0) {
        fprintf(stderr, "sonde loadtest: %s\n", err[0] ? err : strerror(-rc));
        status = 1;
    } else if (args.json) {
        json_t *j = result_json(&args.spec, loadgen_address(lg), res, loadgen_cancelled(lg));
        if (!j || json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(12)) != 0) {
            fprintf(stderr, "sonde loadtest: out of memory\n");
            status = 1;
        }
        putchar('\n');
        json_decref(j);
    } else {
        print_summary(res, loadgen_cancelled(lg));
    }
    if (status == 0)
        status = command_finish("loadtest");
    free(res);
    loadgen_free(lg);
    free(args.body_file_data);
    return status;
}
