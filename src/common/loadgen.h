/*
 * loadgen.h — sonde's HTTP load generator (SPEC A6, issue 7): N users,
 * each one keep-alive HTTP/1.1 connection sending one request after the
 * other (closed model), or a fixed total request rate spread over them
 * (open model: requests are scheduled, and a request's latency counts
 * from its scheduled time, so a stalled server cannot hide its queue —
 * "coordinated omission" corrected, as wrk2 does).
 *
 * Engine: LOADGEN_THREADS_MAX worker threads at most (default: one per
 * CPU, never more than users), each with its own epoll set and its share
 * of the connections; non-blocking sockets; responses parsed with
 * Debian's http-parser (nodejs' http_parser); Content-Length and chunked
 * bodies are read and discarded.  A connection that fails or is closed
 * by the server is reopened for the next request.  Latencies go into a
 * log-linear histogram (histogram.h, exact to 1 %); status codes, error
 * kinds and a per-second series are counted.
 *
 * Used by sonded (load tests as a resource, run on a thread of its own)
 * and by the CLI (`sonde loadtest URL`, run locally).  Plain http://
 * only; https is refused with a message.  The caller decides what may be
 * targeted (sonded's --loadtest-allow): the engine sends where it is told.
 *
 * Thread-safety: loadgen_run blocks the calling thread until the test
 * ends; loadgen_cancel and loadgen_progress may be called from any other
 * thread meanwhile.  Errors: 0 or -errno with a message in err.
 */
#ifndef SONDE_LOADGEN_H
#define SONDE_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/histogram.h"

#define LOADGEN_URL_MAX 2048
#define LOADGEN_HEADERS_MAX 64
#define LOADGEN_HEADER_MAX 8192           /* one "Name: value" line */
#define LOADGEN_BODY_MAX ((size_t)1 << 20) /* request body */
#define LOADGEN_USERS_MAX 10000
#define LOADGEN_DURATION_MAX_MS 3600000LL /* 1 h */
#define LOADGEN_RATE_MAX 1000000.0        /* requests/s */
#define LOADGEN_THREADS_MAX 64
#define LOADGEN_STATUS_MAX 32             /* distinct status codes kept */
#define LOADGEN_SECONDS_MAX 3600          /* per-second series entries */

struct loadgen_spec {
    const char *url;        /* http://host[:port][/path][?query] */
    const char *method;     /* NULL = "GET"; 1..15 uppercase letters */
    const char *const *headers; /* n_headers "Name: value" lines; Host,
                                   Content-Length, Connection and
                                   Transfer-Encoding are the engine's
                                   (refused here) */
    size_t n_headers;
    const void *body;       /* may be NULL */
    size_t body_len;
    int users;              /* 1..LOADGEN_USERS_MAX concurrent connections */
    int64_t duration_ms;    /* 1..LOADGEN_DURATION_MAX_MS */
    double rate;            /* total requests/s; 0 = as fast as the users go */
    int timeout_ms;         /* per request incl. connect; 0 = 10000; 1..600000 */
    int threads;            /* 0 = min(users, CPUs); 1..LOADGEN_THREADS_MAX */
};

/* One second of the test (second 0 = the first). */
struct loadgen_second {
    uint32_t requests;      /* responses received in that second */
    uint32_t errors;
    uint64_t latency_sum_ns; /* of those responses (mean = sum / requests) */
    uint64_t latency_max_ns;
};

/* About 150 KB: allocate it rather than putting it on a small stack. */
struct loadgen_result {
    uint64_t requests;      /* responses received (any status) */
    uint64_t errors;        /* = the four kinds below */
    uint64_t err_connect;   /* refused, unreachable, connect timeout */
    uint64_t err_timeout;   /* no whole response within timeout_ms */
    uint64_t err_reset;     /* reset or closed before the whole response */
    uint64_t err_other;     /* unparsable response, out of memory, … */
    uint64_t bytes_read;
    uint64_t bytes_written;
    double elapsed_s;       /* from start to the end (or now, in progress) */
    size_t n_status;
    struct { int code; uint64_t count; } status[LOADGEN_STATUS_MAX]; /* by code;
                               codes beyond LOADGEN_STATUS_MAX distinct
                               ones count in the last entry, code 0 */
    struct histogram latency; /* ns, of responses */
    size_t n_seconds;
    struct loadgen_second seconds[LOADGEN_SECONDS_MAX];
};

struct loadgen;

/* The rules loadgen_new applies to headers, for callers that check a
 * person's input first with their own messages (the CLI's -H, sonded's
 * "headers"): */
/* How many bytes at the start of s are a header name's (RFC 9110 token
 * characters); 0 when s does not start with one.  s may be NULL. */
size_t loadgen_header_name_len(const char *s);
/* The header of the engine's own (Host, Content-Length, Connection,
 * Transfer-Encoding, in that spelling) that name (len bytes) is, case
 * aside; NULL when it is none of them. */
const char *loadgen_header_owned(const char *name, size_t len);

/* Checks spec (every field's range; the message names the field),
 * parses the URL and resolves its host (getaddrinfo, once).  Copies what
 * it needs: spec may go away.  0, -EINVAL (bad spec), -ENOTSUP (https),
 * -EHOSTUNREACH (cannot resolve), -ENOMEM. */
int loadgen_new(const struct loadgen_spec *spec, struct loadgen **out, char *err, size_t errlen);
/* Frees; NULL is a no-op.  Not while loadgen_run runs. */
void loadgen_free(struct loadgen *lg);

/* The resolved target "ADDRESS:PORT" (e.g. for an allow-list check
 * before running; IPv6 as "[::1]:80"), valid until loadgen_free. */
const char *loadgen_address(const struct loadgen *lg);
/* The URL's host as written (a name or an address; IPv6 without its
 * brackets), valid until loadgen_free: with loadgen_sockaddr, what an
 * allow list of host names and CIDRs is checked against. */
const char *loadgen_host(const struct loadgen *lg);
/* The same as a socket address (for a CIDR check), *len set; valid until
 * loadgen_free. */
const struct sockaddr *loadgen_sockaddr(const struct loadgen *lg, socklen_t *len);

/* Runs the test: returns after duration_ms (requests in flight at the
 * end are abandoned, not counted as errors) or soon after
 * loadgen_cancel.  Fills *out (may be NULL; read it later with
 * loadgen_progress).  A target that is down is not a failure: its
 * connects are counted as errors and the test runs its time (a user
 * backs off 1 ms doubling to 100 ms after consecutive errors).  Once per
 * loadgen: a second call gives -EALREADY.  Raises the process's soft
 * RLIMIT_NOFILE toward the hard limit when users need more descriptors.
 * 0, or -errno when the engine itself could not run (threads, epoll),
 * with a message in err. */
int loadgen_run(struct loadgen *lg, struct loadgen_result *out, char *err, size_t errlen);

/* Asks a running test to stop (returns at once; loadgen_run returns
 * within ~100 ms).  Any thread, also before run (then run returns at once
 * with nothing done). */
void loadgen_cancel(struct loadgen *lg);
/* 1 if loadgen_cancel was called. */
int loadgen_cancelled(const struct loadgen *lg);

/* A copy of the counts so far (during or after a run), merged over the
 * worker threads.  Any thread. */
void loadgen_progress(struct loadgen *lg, struct loadgen_result *out);

#endif
