/*
 * loadtest.h — load tests as a server resource (SPEC A6, issue 7): the
 * runner that takes queued tests from the store and runs them with the
 * load generator (common/loadgen.h), and the allow list that decides
 * where this server may send requests at all.
 *
 * Runner (loadtest.c).  `--loadtest-parallel N` runner threads (default
 * 1: one test at a time per server, the rest stay queued).  A runner
 * sleeps until woken (loadtest_runner_wake: a test was queued or a cancel
 * arrived) or for at most one second, then claims the oldest queued test
 * (store_loadtest_claim), rebuilds its loadgen_spec from the stored
 * request, resolves and checks the target against the allow list again
 * (a name may resolve elsewhere now: refused → "failed" with the
 * message), creates the Profile Now request of *profile during test*
 * (triggered_by "load-test", app = profile_app, duration = the test's,
 * linked to the test) and runs loadgen_run on its own thread.  Every
 * second meanwhile it stores the progress (requests, errors, the results
 * document without the per-second series) and learns whether a cancel
 * was requested (possibly through another server sharing the store);
 * a cancel calls loadgen_cancel.  At the end it stores the final results
 * document (loadgen_json.h, with the per-second series) and the state:
 * "completed", "cancelled" (results so far kept) or "failed" (the engine
 * could not run; error says why), and calls server_notify so waiting
 * requests see it.  A target that is down is not a failure: the test
 * completes with its connect errors counted.
 *
 * Stopping (SIGTERM): loadtest_runner_stop cancels running tests, which
 * end "failed" with "server stopped during the test" and their results so
 * far; queued tests stay queued for the next start.  A test left "in
 * progress" by a server that died (kill -9) is failed by the background
 * tick once its start is older than its duration + LOADTEST_GRACE_MS
 * (store_loadtest_abandon).
 *
 * Allow list (loadtest_allow.c).  `--loadtest-allow LIST`: comma-separated
 * entries, each an IPv4/IPv6 address, a CIDR block (10.0.0.0/8,
 * fd00::/8) or a host name (matched case-insensitively against the URL's
 * host as written; "*.example.com" matches any name under example.com).
 * Default "127.0.0.0/8,::1" (loopback only).  A target is allowed when
 * its URL host name matches a name entry or its resolved address lies in
 * an address/CIDR entry (IPv4-mapped IPv6 addresses are checked as IPv4).
 *
 * Thread-safety: runner functions from any thread; the allow list is
 * immutable after parsing (any thread may check).
 */
#ifndef SONDE_LOADTEST_H
#define SONDE_LOADTEST_H

#include <jansson.h>
#include <stddef.h>
#include <sys/socket.h>

struct loadgen;
struct server;

#define LOADTEST_GRACE_MS 60000
#define LOADTEST_ALLOW_DEFAULT "127.0.0.0/8,::1"
#define LOADTEST_ALLOW_MAX 64 /* entries */
#define LOADTEST_PARALLEL_MAX 16
#define LOADTEST_QUEUE_DEFAULT 100 /* queued tests at most (--loadtest-queue) */

/* ---- allow list ---------------------------------------------------- */

struct loadtest_allow;

/* Parses list (see top).  0 and *out, or -EINVAL with a message naming
 * the bad entry in err (or -ENOMEM).  An empty list allows nothing. */
int loadtest_allow_parse(const char *list, struct loadtest_allow **out, char *err, size_t errlen);
void loadtest_allow_free(struct loadtest_allow *a);
/* 1 when a target whose URL host is host and which resolved to sa is
 * allowed, else 0. */
int loadtest_allow_check(const struct loadtest_allow *a, const char *host,
                         const struct sockaddr *sa, socklen_t salen);
/* The list as given (for messages: "allowed: 127.0.0.0/8, ::1"). */
const char *loadtest_allow_text(const struct loadtest_allow *a);
/* 0 when the target of lg (its URL host, the address it resolved to) is
 * allowed by a, else -EPERM with "target HOST (ADDRESS:PORT) is not
 * allowed: sonded --loadtest-allow permits LIST" in err — the API's 403
 * at creation and the runner's "failed" at start say the same. */
int loadtest_target_check(const struct loadtest_allow *a, const struct loadgen *lg, char *err,
                          size_t errlen);

/* ---- the request ----------------------------------------------------- */

/* A load test's "headers" — a JSON object of header names to string
 * values, as the API takes it and the store keeps it (NULL: none) — as
 * "Name: value" lines for a loadgen_spec, checked by the engine's rules
 * (loadgen.h) with messages for people: at most LOADGEN_HEADERS_MAX into
 * lines, each malloc'ed (the caller frees lines[0..*n), after an error
 * too).  0, -EINVAL with "field 'headers'…" in err, or -ENOMEM. */
int loadtest_header_lines(json_t *headers, char **lines, size_t *n, char *err, size_t errlen);

/* ---- runner -------------------------------------------------------- */

struct loadtest_runner;

/* Starts n runner threads (1..LOADTEST_PARALLEL_MAX) for srv (srv->store,
 * srv->loadtest_allow must stay valid until loadtest_runner_stop).
 * 0 and *out, or -errno with a message in err. */
int loadtest_runner_start(struct server *srv, int n, struct loadtest_runner **out, char *err,
                          size_t errlen);
/* Wakes the runners now (a test was queued or a cancel requested).
 * Cheap; NULL is a no-op. */
void loadtest_runner_wake(struct loadtest_runner *r);
/* Cancels the tests running here (they end "failed", see top), joins the
 * threads and frees.  NULL is a no-op. */
void loadtest_runner_stop(struct loadtest_runner *r);

#endif
