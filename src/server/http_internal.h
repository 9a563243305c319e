/*
 * http_internal.h — what sonded's HTTP layer shares between its three
 * files beyond http.h; included only by src/server/http.c,
 * src/server/longpoll.c and src/server/route.c.
 *
 *   http.c      libmicrohttpd: requests through routing, authentication
 *               and body limits to the handler, responses, logging,
 *               start and stop (the request's life is described there)
 *   longpoll.c  calling the handler and, when it answers HTTP_WAIT,
 *               suspending the connection until server_notify(), its
 *               deadline or HTTP_REPOLL_MS, and the long-poll thread that
 *               resumes it (described there)
 *   route.c     the route tables and matching a path against them
 *
 * Every field of struct http_impl below its lock is guarded by it.
 */
#ifndef SONDE_HTTP_INTERNAL_H
#define SONDE_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "server/clock.h"
#include "server/http.h"

/* One request on a connection (libmicrohttpd's *con_cls). */
struct http_conn {
    struct http_impl *impl;
    struct MHD_Connection *mhd;
    const struct route *route;
    struct request req;
    struct response res;
    int64_t start_ns;    /* monotonic, for the log line */
    int answered;        /* a response was queued */
    int deferred;        /* c->res is the answer, sent once the body is read */
    int counted;         /* counted in impl->inflight */
    /* body */
    uint8_t *body;
    size_t body_len, body_cap, body_limit;
    size_t body_seen; /* bytes received, buffered or not */
    int body_over;    /* the body went past body_limit */
    /* long-poll */
    int suspended;
    int on_list;          /* on impl->waiters */
    unsigned notify_gen;  /* impl->notify_gen when the handler was called */
    int64_t wake_ms;      /* resume at the latest then (wall clock) */
    struct http_conn *next_waiter, *prev_waiter;
    /* unit tests only (http_test_request_new): decoded query, no mhd */
    char *test_query;
    size_t test_nargs;
    const char *test_key[32], *test_val[32];
};

struct http_impl {
    struct server *srv;
    struct MHD_Daemon *daemon;
    MHD_socket listen_fd; /* after MHD_quiesce_daemon: ours to close */

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;  /* long-poll thread: a waiter, notify or stop */
    pthread_cond_t idle;  /* http_stop: inflight dropped */
    struct http_conn *waiters;
    size_t nwaiters;
    int inflight;   /* requests between headers and completion */
    atomic_int stopping; /* read without the lock by pool threads */
    int quit;       /* long-poll thread exits */
    pthread_t poll_thread;
    int poll_thread_started;

    atomic_uint notify_gen;
    atomic_int have_waiters; /* so server_notify is cheap with none */
};


/* ------------------------------------------------------------------ */
/* http.c                                                              */

/* Queues c->res (or a 500 if the handler left none) and logs. */
enum MHD_Result http_send_response(struct http_conn *c);

/* ------------------------------------------------------------------ */
/* route.c (pure functions: thread-safe)                               */

/* The variable parts of a matched path. */
struct path_parts {
    int64_t id;      /* {id} */
    const char *key; /* {key}: key_len bytes into the path (not NUL-ended) */
    size_t key_len;
};

/* The route for method + path, with the path's parts in *parts; NULL
 * with *status 404 or 405 (and the allowed methods, comma-separated, in
 * allow) when there is none.  HEAD is routed as GET. */
const struct route *http_route_find(const char *method, const char *path,
                                    struct path_parts *parts, int *status, char *allow,
                                    size_t allowlen);
/* "writer or admin" for a route's role bits, into buf. */
void http_roles_text(int roles, char *buf, size_t len);

/* ------------------------------------------------------------------ */
/* longpoll.c                                                          */

/* Calls the handler (again) and queues its answer, or suspends the
 * connection when it waits (HTTP_WAIT). */
enum MHD_Result http_run_handler(struct http_conn *c);

/* Takes c off the waiter list; impl->lock held. */
void http_waiter_remove(struct http_impl *impl, struct http_conn *c);

/* Starts the long-poll thread: 0 or a negative errno code. */
int http_longpoll_start(struct http_impl *impl);

/* Stops the long-poll thread (once the requests in flight were given
 * their grace period) and resumes the waiters still suspended, which
 * libmicrohttpd must see before its daemon stops.  Safe when
 * http_longpoll_start() failed or was not called. */
void http_longpoll_stop(struct http_impl *impl);

#endif
