/*
 * cmd_loadtest.c — `sonde loadtest URL [-c USERS] [-d DURATION] ...`: runs
 * the load generator (common/loadgen.h) here, in this process, against
 * URL and prints a summary like wrk's (or, with --json, the whole result
 * with its per-second series).
 *
 * With --server URL the test is sonded's instead (cmd_loadtest_server.c):
 * created there, queued, run by its engine, and this waits for its end.
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
#include "cli/loadtest.h"
#include "common/loadgen.h"
#include "common/loadgen_json.h"

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
            "                      [--server URL [--token T] [--profile-app APP]]\n"
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
            "  --server URL       sonded runs the test (queued behind others, then run;\n"
            "                     its --loadtest-allow decides where it may send) and this\n"
            "                     waits for the end; Ctrl-C cancels it there\n"
            "  --token T          the token for --server (writer; default $SONDE_TOKEN)\n"
            "  --profile-app APP  with --server: profile APP's agents during the test\n"
            "                     (Profile Now sessions triggered by load-test)\n"
            "  exit status: 0 the test ran (errors or not), 1 it could not run, 2 usage error\n",
            LOADGEN_USERS_MAX, DEFAULT_USERS, DEFAULT_DURATION_S, LOADGEN_RATE_MAX,
            LOADGEN_HEADERS_MAX, TIMEOUT_MAX_MS, DEFAULT_TIMEOUT_MS, LOADGEN_THREADS_MAX);
}

/* ------------------------------------------------------------------ */
/* Arguments                                                           */

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

/* "Name: value": 0, or -1 with why in msg. */
static int check_header(const char *h, char *msg, size_t len)
{
    size_t n = strlen(h), name = loadgen_header_name_len(h);
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
    if (loadgen_header_owned(h, name)) {
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
        } else if (!strncmp(a, "--server", 8) || !strncmp(a, "--token", 7)) {
            if (!strncmp(a, "--server", 8) && (a[8] == '\0' || a[8] == '='))
                args->remote = 1;
            int took = client_option(&args->opt, "loadtest", argc, argv, &i);
            if (took < 0)
                return 2;
            if (took == 0)
                return command_usage_error(cmd, "unknown option '%s'", a);
        } else if (flag_value(NULL, "--profile-app", argc, argv, &i, &v)) {
            if (!v || !*v || strlen(v) >= 128)
                return bad_flag(cmd, "--profile-app needs an app name (1..127 bytes)", v);
            args->profile_app = v;
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
    if (args->profile_app && !args->remote)
        return command_usage_error(cmd, "--profile-app needs --server: the agents of the app are "
                                        "profiled by sonded during its test%s", NULL);
    if (args->remote && s->threads)
        return command_usage_error(cmd, "--threads is for a local run: sonded picks its own%s",
                                   NULL);
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
static void fmt_latency(double ms, char *buf, size_t len)
{
    if (ms < 1)
        snprintf(buf, len, "%.2fus", ms * 1e3);
    else if (ms < 1000)
        snprintf(buf, len, "%.2fms", ms);
    else
        snprintf(buf, len, "%.2fs", ms / 1e3);
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

void loadtest_print_header(const struct loadgen_spec *s, const char *where, int threads)
{
    char dur[32];
    fmt_seconds(s->duration_ms / 1000, dur, sizeof dur);
    printf("Load test of %s (%s)\n", s->url, where);
    printf("  %d user%s", s->users, s->users == 1 ? "" : "s");
    if (threads > 0)
        printf(", %d thread%s", threads, threads == 1 ? "" : "s");
    printf(", %s, %s", dur, s->method);
    if (s->body_len)
        printf(" with a %zu-byte body", s->body_len);
    if (s->rate > 0)
        printf(", %g requests/s in all\n", s->rate);
    else
        printf(", as fast as the users go\n");
    fflush(stdout);
}

/* Member key of obj as a number (integer or real), 0 when absent. */
static double num(json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

void loadtest_print_summary(json_t *r, int cancelled)
{
    char a[32], b[32], c[32], d[32], e[32];
    double elapsed = num(r, "elapsed_s");
    if (cancelled)
        printf("  Cancelled after %.2fs\n", elapsed);
    json_t *lat = json_object_get(r, "latency_ms");
    if (json_is_object(lat)) {
        fmt_latency(num(lat, "mean"), a, sizeof a);
        fmt_latency(num(lat, "p50"), b, sizeof b);
        fmt_latency(num(lat, "p90"), c, sizeof c);
        fmt_latency(num(lat, "p99"), d, sizeof d);
        fmt_latency(num(lat, "max"), e, sizeof e);
        printf("  Latency   mean %s  p50 %s  p90 %s  p99 %s  max %s\n", a, b, c, d, e);
    } else {
        printf("  Latency   no responses\n");
    }
    printf("  Requests  %.0f in %.2fs, %.2f/s\n", num(r, "requests"), elapsed,
           num(r, "requests_per_s"));
    double bytes = num(r, "bytes_read");
    fmt_bytes((uint64_t)bytes, a, sizeof a);
    printf("  Read      %s (%.0f bytes)\n", a, bytes);
    printf("  Status   ");
    json_t *status = json_object_get(r, "status"), *v;
    const char *code;
    json_object_foreach(status, code, v)
        printf(" %s: %.0f", code, json_number_value(v));
    printf("%s\n", json_object_size(status) ? "" : " none");
    json_t *errors = json_object_get(r, "errors");
    printf("  Errors    %.0f", num(errors, "total"));
    if (num(errors, "total") > 0)
        printf(": connect %.0f, timeout %.0f, reset %.0f, other %.0f", num(errors, "connect"),
               num(errors, "timeout"), num(errors, "reset"), num(errors, "other"));
    printf("\n");
}

/* The whole local result as JSON: the spec, then loadgen_json.h's
 * document; NULL when out of memory. */
static json_t *result_json(const struct loadgen_spec *s, const char *address,
                           const struct loadgen_result *r, int cancelled)
{
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:i,s:i,s:I,s:o,s:i,s:I,s:b}", "url", s->url, "address", address,
        "method", s->method, "users", s->users, "threads", threads_of(s), "duration_s",
        (json_int_t)(s->duration_ms / 1000), "rate", s->rate > 0 ? json_real(s->rate) : json_null(),
        "timeout_ms", s->timeout_ms, "body_bytes", (json_int_t)s->body_len, "cancelled",
        cancelled);
    json_t *res = loadgen_result_json(r, 1);
    if (!o || !res || json_object_update(o, res) != 0) {
        json_decref(o);
        o = NULL;
    }
    json_decref(res);
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
    client_options_init(&args.opt);
    int rc = parse_args(&cmd, &args, argc, argv);
    if (rc == ARGS_RUN && args.remote)
        rc = loadtest_remote(&args);
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
        loadtest_print_header(&args.spec, loadgen_address(lg), threads_of(&args.spec));
    rc = run_interruptible(lg, res, err, sizeof err);
    int status = 0;
    if (rc != 0) {
        fprintf(stderr, "sonde loadtest: %s\n", err[0] ? err : strerror(-rc));
        status = 1;
    } else {
        json_t *j = result_json(&args.spec, loadgen_address(lg), res, loadgen_cancelled(lg));
        if (!j) {
            fprintf(stderr, "sonde loadtest: out of memory\n");
            status = 1;
        } else if (args.json) {
            json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
            putchar('\n');
        } else {
            loadtest_print_summary(j, loadgen_cancelled(lg));
        }
        json_decref(j);
    }
    if (status == 0)
        status = command_finish("loadtest");
    free(res);
    loadgen_free(lg);
    free(args.body_file_data);
    return status;
}
