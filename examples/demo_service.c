/*
 * demo_service.c — a small HTTP service to profile with sonde: what
 * `make run` starts under `sonde run`, and what bench/demo_bench.py loads
 * with wrk, and what the load generator's tests (`sonde loadtest`) aim at.
 * libmicrohttpd, an internal pool of worker threads (each one serving its
 * keep-alive connections), four endpoints whose costs differ in kind, so
 * that each shows in a profile as itself:
 *
 *   GET /fast     a few bytes, nothing else
 *   GET /cpu      a few ms of arithmetic in demo_checksum_work()
 *   GET /cpu?ms=N N ms (1..60000) of wall time busy in demo_checksum_work()
 *   GET /slow     ~50 ms blocked in demo_slow_io() (a wall profile sees it,
 *                 a CPU profile does not)
 *   GET /slow?ms=N  N ms (1..60000) blocked in ONE poll() call on a pipe
 *                 nobody writes (demo_slow_io() -> demo_slow_poll());
 *                 answers JSON, the measured time and whether the poll
 *                 was cut short: {"slept_ms": 2000.1, "interrupted": false}
 *   GET /health   "ok"
 *
 * and two that let a load test check itself against the service:
 *
 *   ANY /echo     reads the request body (any size, any method) and
 *                 answers {"method": "POST", "body_bytes": 5, "tag": "t1"},
 *                 tag being the X-Demo-Tag header (1..63 of [A-Za-z0-9._-],
 *                 else "")
 *   GET /stats    {"served": N, "echo": {"requests": E, "body_bytes": B,
 *                 "method": M, "tag": T}}: N requests answered since the
 *                 start, every endpoint and every status counted (404s,
 *                 405s, 400s) but /stats itself; E of them /echo, B the
 *                 body bytes /echo read, M and T those of the last /echo
 *                 (both "" before the first).  N counts a request before
 *                 its answer is queued, so a client that has read N
 *                 answers sees served >= N.
 *
 * A bad ms (not an integer in 1..60000) is answered 400.  The ms forms
 * are for active profiling (slow-call tasks): a call of a known length,
 * and a blocking call whose every interruption by a profiler would show
 * in its answer (a poll() interrupted by a signal is not restarted here).
 *
 * Every request is a span of the agent's span API (include/sonde.h):
 * begun with its endpoint and the caller's trace id, given the peer
 * address and the response code, ended — so that samples taken while a
 * request runs carry its endpoint and trace id as labels.
 *
 *   demo_service [--port N] [--threads N]
 *     --port N      port on 127.0.0.1; 0 (default) picks a free one
 *     --threads N   worker threads, 1..64 (default 4)
 *
 * Prints "demo listening on http://127.0.0.1:PORT" once it accepts
 * connections, runs until SIGTERM or SIGINT, then stops the server and
 * returns from main (exit status 0): a clean exit, so the agent's
 * destructor runs and it can finish its work with the server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include <sonde.h>

/*
 * The span API through weak references: the pattern to copy.
 *
 * A weak reference to a function that no linked library defines is not an
 * error: the linker leaves it undefined and the program sees its address
 * as NULL.  So this program is linked WITHOUT -lsonde and runs as it is;
 * started with LD_PRELOAD=libsonde.so (which `sonde run` does), the dynamic
 * loader binds these names to the agent's functions and every request
 * becomes a span.  Nothing to configure, and no cost but a test of a
 * function pointer when the agent is absent.
 *
 * Rules that make it work: declare the functions with sonde.h as usual,
 * mark each one you call weak, and test each one before calling it (an
 * older libsonde.so may lack one).  The executable must be position
 * independent (the default on Debian and most distributions: gcc -pie) so
 * that the reference stays in its dynamic symbol table for the loader to
 * bind.  A program that always runs with the agent can link -lsonde
 * instead and call the functions directly.
 */
#pragma weak sonde_span_begin
#pragma weak sonde_span_set_peer
#pragma weak sonde_span_set_status
#pragma weak sonde_span_end

static sonde_span_t span_begin(const char *interface, const char *trace_id)
{
    return sonde_span_begin ? sonde_span_begin(interface, trace_id) : 0;
}

static void span_set_peer(sonde_span_t span, const char *addr)
{
    if (span && sonde_span_set_peer)
        sonde_span_set_peer(span, addr);
}

static void span_set_status(sonde_span_t span, int code)
{
    if (span && sonde_span_set_status)
        sonde_span_set_status(span, code);
}

static void span_end(sonde_span_t span)
{
    if (span && sonde_span_end)
        sonde_span_end(span);
}

/* ------------------------------------------------------------------ */
/* The work behind the endpoints.  Named, not inlined, not cloned: these
 * names are what a flame graph of the demo shows.                      */

/* Blocks of demo_checksum_work per /cpu request: ~2-3 ms of one core here. */
#define CHECKSUM_ROUNDS 128
#define CHECKSUM_BLOCK 4096
/* How long /slow blocks, in ns. */
#define SLOW_IO_NS (50 * 1000 * 1000L)
/* The range of ?ms=N. */
#define MS_ARG_MAX 60000

/* The read end of a pipe whose write end is kept open and never written:
 * what /slow?ms=N polls.  Set once by main before the server starts. */
static int idle_fd = -1;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Fills buf with pseudo-random bytes from seed (an LCG); returns the next
 * seed. */
__attribute__((noinline, noclone)) uint64_t demo_fill_block(uint8_t *buf, size_t n,
                                                            uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)(seed >> 56);
    }
    return seed;
}

/* The CPU-heavy part of /cpu: Adler-32 and a multiplicative hash over
 * rounds blocks of generated data.  The result is returned to the client,
 * so none of it can be optimised away. */
__attribute__((noinline, noclone)) uint64_t demo_checksum_work(uint64_t seed, int rounds)
{
    uint8_t buf[CHECKSUM_BLOCK];
    uint64_t h = 0;
    for (int r = 0; r < rounds; r++) {
        seed = demo_fill_block(buf, sizeof buf, seed);
        uint32_t a = 1, b = 0;
        for (size_t i = 0; i < sizeof buf; i++) {
            a = (a + buf[i]) % 65521;
            b = (b + a) % 65521;
            h = (h << 7 | h >> 57) ^ (uint64_t)buf[i] * 0x9e3779b97f4a7c15ull;
        }
        h ^= (uint64_t)b << 16 | a;
    }
    return h;
}

/* /cpu?ms=N: demo_checksum_work, a block at a time, until ms of wall
 * time have passed (a thread that is preempted still counts them). */
__attribute__((noinline, noclone)) uint64_t demo_checksum_for(uint64_t seed, long ms)
{
    double end = now_ms() + (double)ms;
    uint64_t h = 0;
    do
        h ^= demo_checksum_work(seed++, 1);
    while (now_ms() < end);
    return h;
}

/* /slow?ms=N: ONE poll() of idle_fd (never readable) for ms.  Not
 * retried on EINTR, on purpose: a profiler that interrupts the call shows
 * as *interrupted = 1 ("interrupted": true in the answer).  Returns the measured ms. */
__attribute__((noinline, noclone)) double demo_slow_poll(long ms, int *interrupted)
{
    struct pollfd p = {.fd = idle_fd, .events = POLLIN};
    double t0 = now_ms();
    int r = poll(&p, 1, (int)ms);
    double took = now_ms() - t0;
    *interrupted = r != 0 || took < (double)ms;
    return took;
}

/* The blocking part of /slow: a wait, as for a slow disk or a slow
 * backend.  ms = 0: 50 ms, slept out whole even when a signal (a sampling
 * signal, say) interrupts it.  ms > 0: demo_slow_poll (its measured ms
 * into *took, whether it was cut short into *interrupted).  Either way
 * this is the demo's slow function in a stack. */
__attribute__((noinline, noclone)) int demo_slow_io(long ms, double *took, int *interrupted)
{
    if (ms > 0) {
        *took = demo_slow_poll(ms, interrupted);
        return 0;
    }
    struct timespec left = {SLOW_IO_NS / 1000000000L, SLOW_IO_NS % 1000000000L};
    while (nanosleep(&left, &left) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */

/* The caller's trace id: the trace-id field of a W3C "traceparent"
 * header (00-<32 hex>-<16 hex>-<2 hex>), else an "X-Trace-Id" header of
 * 1..63 printable characters, else NULL (the agent makes one). */
static const char *trace_id_of(struct MHD_Connection *conn, char *buf, size_t len)
{
    const char *tp = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "traceparent");
    if (tp && strlen(tp) >= 55 && tp[2] == '-' && tp[35] == '-' && len > 32) {
        size_t i = 0;
        for (; i < 32; i++) {
            char c = tp[3 + i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                break;
            buf[i] = c;
        }
        if (i == 32) {
            buf[32] = '\0';
            return buf;
        }
    }
    const char *x = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Trace-Id");
    if (!x)
        return NULL;
    size_t n = strlen(x);
    if (n == 0 || n >= SONDE_SPAN_TRACE_MAX || n >= len)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)x[i] <= ' ' || (unsigned char)x[i] >= 0x7f)
            return NULL;
    memcpy(buf, x, n + 1);
    return buf;
}

/* "127.0.0.1:51234" or "[::1]:51234" into buf; "" when unknown. */
static void peer_of(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char host[INET6_ADDRSTRLEN] = "";
    buf[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host))
            snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host))
            snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    }
}

/* Answers text: plain text, or JSON when it starts with '{'. */
static int reply(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            text[0] == '{' ? "application/json" : "text/plain");
    int ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* A decimal integer in [min, max]: 0 with *out, else -1. */
static int int_arg(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

enum endpoint { EP_FAST, EP_CPU, EP_SLOW, EP_HEALTH, EP_ECHO, EP_STATS, EP_NONE };

static const struct {
    const char *path;
    const char *interface; /* the span's name for it */
} endpoints[] = {
    [EP_FAST] = {"/fast", "GET /fast"},
    [EP_CPU] = {"/cpu", "GET /cpu"},
    [EP_SLOW] = {"/slow", "GET /slow"},
    [EP_HEALTH] = {"/health", "GET /health"},
    [EP_ECHO] = {"/echo", NULL},   /* "<METHOD> /echo": any method */
    [EP_STATS] = {"/stats", "GET /stats"},
};

/* What /stats reports.  served and the /echo counts are atomics; the last
 * /echo's method and tag go together under echo_lock. */
static _Atomic uint64_t served;
static _Atomic uint64_t echo_requests, echo_body_bytes;
static pthread_mutex_t echo_lock = PTHREAD_MUTEX_INITIALIZER;
static char echo_method[17], echo_tag[64];

/* /stats' answer into body. */
static void stats_of(char *body, size_t len)
{
    pthread_mutex_lock(&echo_lock);
    snprintf(body, len,
             "{\"served\": %llu, \"echo\": {\"requests\": %llu, \"body_bytes\": %llu, "
             "\"method\": \"%s\", \"tag\": \"%s\"}}\n",
             (unsigned long long)served, (unsigned long long)echo_requests,
             (unsigned long long)echo_body_bytes, echo_method, echo_tag);
    pthread_mutex_unlock(&echo_lock);
}

/* Runs an endpoint's work; the response body into body.  ms: the
 * request's ?ms=N, 0 when not given. */
static unsigned serve(enum endpoint ep, long ms, char *body, size_t len)
{
    static _Atomic uint64_t requests;
    switch (ep) {
    case EP_FAST:
        snprintf(body, len, "fast\n");
        return MHD_HTTP_OK;
    case EP_CPU: {
        uint64_t seed = ++requests;
        uint64_t h = ms ? demo_checksum_for(seed, ms) : demo_checksum_work(seed, CHECKSUM_ROUNDS);
        snprintf(body, len, "checksum %016llx\n", (unsigned long long)h);
        return MHD_HTTP_OK;
    }
    case EP_SLOW: {
        double took = 0;
        int interrupted = 0;
        if (demo_slow_io(ms, &took, &interrupted) != 0) {
            snprintf(body, len, "slow: sleep failed\n");
            return MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
        if (ms)
            snprintf(body, len, "{\"slept_ms\": %.1f, \"interrupted\": %s}\n", took,
                     interrupted ? "true" : "false");
        else
            snprintf(body, len, "slow\n");
        return MHD_HTTP_OK;
    }
    case EP_HEALTH:
        snprintf(body, len, "ok\n");
        return MHD_HTTP_OK;
    case EP_STATS:
        stats_of(body, len);
        return MHD_HTTP_OK;
    case EP_ECHO: /* answered by echo_request */
    case EP_NONE:
        break;
    }
    snprintf(body, len, "not found: try /fast, /cpu, /slow, /health, /echo or /stats\n");
    return MHD_HTTP_NOT_FOUND;
}

/* An /echo request between libmicrohttpd's calls (its *req_cls): the
 * body is read piece by piece, the answer queued once it is all in. */
struct echo {
    sonde_span_t span;   /* 0 once ended */
    uint64_t body_bytes; /* read so far */
    int answered;
    char method[sizeof echo_method];
    char tag[sizeof echo_tag];
};

/* *req_cls of a request answered in the first call (all but /echo). */
static char answered_marker;

/* The X-Demo-Tag header into buf when it is 1..len-1 of [A-Za-z0-9._-]
 * (safe to put in JSON as it is), else "". */
static void tag_of(struct MHD_Connection *conn, char *buf, size_t len)
{
    const char *t = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Demo-Tag");
    size_t n = t ? strlen(t) : 0;
    buf[0] = '\0';
    if (n == 0 || n >= len)
        return;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '.' || t[i] == '_' || t[i] == '-'))
            return;
    memcpy(buf, t, n + 1);
}

/* A later call for /echo: counts a piece of the body, or answers once the
 * body is all in (a call with no data). */
static enum MHD_Result echo_request(struct MHD_Connection *conn, struct echo *e,
                                    size_t *upload_data_size)
{
    if (*upload_data_size) {
        e->body_bytes += *upload_data_size;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (e->answered)
        return MHD_YES;
    e->answered = 1;
    pthread_mutex_lock(&echo_lock);
    echo_requests++;
    echo_body_bytes += e->body_bytes;
    memcpy(echo_method, e->method, sizeof echo_method);
    memcpy(echo_tag, e->tag, sizeof echo_tag);
    pthread_mutex_unlock(&echo_lock);
    served++;
    char body[192];
    snprintf(body, sizeof body, "{\"method\": \"%s\", \"body_bytes\": %llu, \"tag\": \"%s\"}\n",
             e->method, (unsigned long long)e->body_bytes, e->tag);
    enum MHD_Result ok = reply(conn, MHD_HTTP_OK, body);
    span_set_status(e->span, ok == MHD_YES ? MHD_HTTP_OK : 500);
    span_end(e->span);
    e->span = 0;
    return ok;
}

/* The first call for /echo: its state and span; the body comes next. */
static enum MHD_Result echo_begin(struct MHD_Connection *conn, const char *method,
                                  void **req_cls)
{
    struct echo *e = calloc(1, sizeof *e);
    if (!e)
        return MHD_NO;
    /* The method is the client's: only letters go into the answer's JSON
     * and the span's name. */
    size_t n = 0;
    for (; method[n] && n + 1 < sizeof e->method; n++) {
        char c = method[n];
        e->method[n] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ? c : '?';
    }
    tag_of(conn, e->tag, sizeof e->tag);
    char interface[SONDE_SPAN_INTERFACE_MAX], trace[SONDE_SPAN_TRACE_MAX],
        peer[SONDE_SPAN_PEER_MAX];
    snprintf(interface, sizeof interface, "%s /echo", e->method);
    e->span = span_begin(interface, trace_id_of(conn, trace, sizeof trace));
    peer_of(conn, peer, sizeof peer);
    if (peer[0])
        span_set_peer(e->span, peer);
    *req_cls = e;
    return MHD_YES;
}

/* libmicrohttpd's end of every request, answered or not: frees an /echo's
 * state (ending its span if the client went away before the answer). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    if (*req_cls && *req_cls != &answered_marker) {
        struct echo *e = *req_cls;
        span_end(e->span);
        free(e);
    }
    *req_cls = NULL;
}

/*
 * libmicrohttpd calls this once a request's headers are in (and again for
 * each piece of a body, which our GET endpoints neither expect nor read).
 * The whole request is handled in that first call, on the worker thread
 * that owns the connection, so the span opens and closes around exactly
 * the work of this request.  A server that finishes a request elsewhere
 * (another thread, a later callback) ends the span there with its handle,
 * as /echo does (echo_request, on_completed).
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)cls, (void)version, (void)upload_data;
    if (*req_cls == &answered_marker) {
        /* A body after the response was queued: read and dropped. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*req_cls)
        return echo_request(conn, *req_cls, upload_data_size);

    enum endpoint ep = EP_NONE;
    for (int i = 0; i < EP_NONE; i++)
        if (!strcmp(url, endpoints[i].path))
            ep = (enum endpoint)i;
    if (ep == EP_ECHO)
        return echo_begin(conn, method, req_cls);
    *req_cls = &answered_marker; /* the first call is done */
    int get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);

    /* Interfaces are a small fixed set: the endpoint as named, never the
     * raw URL (a label per distinct URL would fill the agent's tables). */
    char interface[SONDE_SPAN_INTERFACE_MAX];
    if (ep != EP_NONE && get)
        snprintf(interface, sizeof interface, "%s", endpoints[ep].interface);
    else
        snprintf(interface, sizeof interface, "%.16s (other)", method);
    char trace[SONDE_SPAN_TRACE_MAX], peer[SONDE_SPAN_PEER_MAX];
    sonde_span_t span = span_begin(interface, trace_id_of(conn, trace, sizeof trace));
    peer_of(conn, peer, sizeof peer);
    if (peer[0])
        span_set_peer(span, peer);

    char body[256];
    unsigned status;
    const char *ms_arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ms");
    long ms = 0;
    if (ep != EP_NONE && !get) {
        snprintf(body, sizeof body, "method not allowed: GET only\n");
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if ((ep == EP_CPU || ep == EP_SLOW) && ms_arg &&
               int_arg(ms_arg, 1, MS_ARG_MAX, &ms) != 0) {
        snprintf(body, sizeof body, "bad ms: an integer from 1 to %d\n", MS_ARG_MAX);
        status = MHD_HTTP_BAD_REQUEST;
    } else {
        status = serve(ep, ms, body, sizeof body);
    }
    /* Counted before the answer is queued: a client that has it sees it
     * in /stats. */
    if (ep != EP_STATS)
        served++;
    enum MHD_Result ok = reply(conn, status, body);
    span_set_status(span, ok == MHD_YES ? (int)status : 500);
    span_end(span);
    return ok;
}

/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: demo_service [--port N] [--threads N]\n"
               "  --port N      port on 127.0.0.1, 0..65535; 0 (default) picks a free one\n"
               "  --threads N   worker threads, 1..64 (default 4)\n"
               "endpoints: GET /fast, /cpu, /slow, /health, /stats, ANY /echo; /cpu?ms=N busy\n"
               "and /slow?ms=N blocked in poll() for N ms (1..60000); stops on SIGTERM or\n"
               "SIGINT\n");
}

int main(int argc, char **argv)
{
    long port = 0, threads = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--port") && int_arg(v, 0, 65535, &port) == 0) {
            i++;
        } else if (!strcmp(a, "--threads") && int_arg(v, 1, 64, &threads) == 0) {
            i++;
        } else {
            fprintf(stderr, "demo_service: bad argument '%s'%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
    }

    /* SIGTERM and SIGINT are blocked in every thread (the workers inherit
     * this mask) and taken by main with sigwait: no handler, no flag. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that goes away mid-answer */
    int idle[2];
    if (pipe(idle) != 0) {
        fprintf(stderr, "demo_service: cannot make a pipe: %s\n", strerror(errno));
        return 1;
    }
    idle_fd = idle[0]; /* idle[1] stays open, unwritten, until exit */

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "demo_service: cannot listen on 127.0.0.1:%ld: %s\n", port,
                errno ? strerror(errno) : "libmicrohttpd failed to start");
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("demo listening on http://127.0.0.1:%u\n", di && di->port ? di->port : (unsigned)port);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    MHD_stop_daemon(d);
    fprintf(stderr, "demo_service: stopped by signal %d\n", sig);
    return 0;
}
