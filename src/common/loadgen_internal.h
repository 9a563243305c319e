/*
 * loadgen_internal.h — what loadgen.c (spec, URL, request bytes, threads,
 * results) and loadgen_worker.c (one worker thread: its epoll set, its
 * users' connections, their state machine) share.  Not a contract for
 * anyone else; see loadgen.h.
 */
#ifndef SONDE_LOADGEN_INTERNAL_H
#define SONDE_LOADGEN_INTERNAL_H

#include <http_parser.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "common/loadgen.h"

#define LOADGEN_READ_BUF 65536 /* per worker: responses are parsed as they come, then dropped */

struct loadgen {
    /* target, resolved once by loadgen_new */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char address[80];   /* "ADDRESS:PORT", IPv6 in brackets */
    char host[256];     /* the URL's host, without IPv6 brackets */
    char *request;      /* the whole request, built once */
    size_t request_len;
    int head;           /* method HEAD: responses have no body */
    int users, threads, timeout_ms;
    int64_t duration_ms;
    double rate;

    atomic_int cancelled;
    atomic_int stop;    /* cancelled, or the run could not start all its workers */
    int cancel_fd;      /* eventfd in every worker's epoll set: readable once cancelled */

    /* A run: workers exists while it runs; final holds the merged counts
     * after.  lock guards workers, n_workers, final, start_ns, end_ns;
     * taken before any worker's lock. */
    pthread_mutex_t lock;
    struct loadgen_worker *workers;
    int n_workers;
    int ran;
    int64_t start_ns, end_ns; /* CLOCK_MONOTONIC; end_ns 0 while running */
    struct loadgen_result *final;
};

struct loadgen_user;

/* One worker thread and its share of the users. */
struct loadgen_worker {
    struct loadgen *lg;
    pthread_t thread;
    int started;
    int ep;                        /* epoll set */
    int first_user, n_users;       /* global indices first_user .. +n_users */
    struct loadgen_user *users;
    int64_t start_ns, end_ns;      /* the test's window */
    int err;                       /* -errno if the worker could not run */
    char errmsg[128];

    /* users waiting for a time (next scheduled request, back-off) */
    struct loadgen_user **heap;
    size_t heap_len;
    /* requests in flight, oldest deadline first (all deadlines are
     * "start + timeout", starts come in time order: a FIFO is sorted) */
    struct loadgen_user *tmo_head, *tmo_tail;

    /* counts; other threads read them under lock (loadgen_progress) */
    pthread_mutex_t lock;
    struct loadgen_result res;
    size_t last_status;            /* index of the last status counted */

    char buf[LOADGEN_READ_BUF];
};

int64_t loadgen_now_ns(void);
/* n zeroed users for a worker (free() them), NULL when out of memory. */
struct loadgen_user *loadgen_users_new(int n);
/* The worker thread's body (pthread start routine). */
void *loadgen_worker_main(void *arg);
/* Counts one response of status code in r. */
void loadgen_status_count(struct loadgen_result *r, int code);
/* Adds src's counts into dst (not elapsed_s). */
void loadgen_result_merge(struct loadgen_result *dst, const struct loadgen_result *src);

#endif
