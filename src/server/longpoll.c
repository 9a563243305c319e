/*
 * longpoll.c — sonded's long-poll: calling a route's handler and, when it
 * has nothing to answer yet, holding the request without holding a
 * thread (see http.h for the contract, http_internal.h for the state).
 *
 * A handler answering HTTP_WAIT has its connection suspended
 * (MHD_suspend_connection: no pool thread is held) and put on the waiter
 * list.  One "long-poll" thread resumes waiters when server_notify() is
 * called, when their wait_until_ms passes, and at the latest
 * HTTP_REPOLL_MS after they were suspended; a resumed connection comes
 * back through http.c's on_request and the handler is called again.  Lost
 * wake-ups are prevented by a notify generation: a handler that returns
 * HTTP_WAIT after a notify that happened during its call is called again
 * at once instead of being suspended.
 *
 * Shutdown: once http_stop sets impl->stopping, the long-poll thread
 * resumes every waiter and its handler is called again with timed_out
 * set (a handler still waiting is answered 503 after STOP_MAX_CALLS);
 * http_longpoll_stop resumes whatever is left after the grace period.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "server/http_internal.h"

/* The longest a long-poll is held, whatever the handler asks. */
#define WAIT_MAX_MS (120 * 1000)
/* A handler that keeps answering HTTP_WAIT while the server stops is
 * given up on after this many extra calls. */
#define STOP_MAX_CALLS 3

/* ------------------------------------------------------------------ */
/* The waiter list                                                     */

static void waiter_add(struct http_impl *impl, struct http_conn *c)
{
    c->prev_waiter = NULL;
    c->next_waiter = impl->waiters;
    if (impl->waiters)
        impl->waiters->prev_waiter = c;
    impl->waiters = c;
    c->on_list = 1;
    impl->nwaiters++;
    atomic_store(&impl->have_waiters, 1);
}

void http_waiter_remove(struct http_impl *impl, struct http_conn *c)
{
    if (c->prev_waiter)
        c->prev_waiter->next_waiter = c->next_waiter;
    else
        impl->waiters = c->next_waiter;
    if (c->next_waiter)
        c->next_waiter->prev_waiter = c->prev_waiter;
    c->next_waiter = c->prev_waiter = NULL;
    c->on_list = 0;
    impl->nwaiters--;
    if (impl->nwaiters == 0)
        atomic_store(&impl->have_waiters, 0);
}

void server_notify(struct server *srv)
{
    struct http_impl *impl = srv ? srv->impl : NULL;
    if (!impl)
        return;
    atomic_fetch_add(&impl->notify_gen, 1);
    if (!atomic_load(&impl->have_waiters))
        return;
    pthread_mutex_lock(&impl->lock);
    pthread_cond_signal(&impl->wake);
    pthread_mutex_unlock(&impl->lock);
}

/* The long-poll thread: resumes waiters that were notified, whose
 * deadline or re-poll time came, or all of them when stopping. */
static void *long_poll_main(void *arg)
{
    struct http_impl *impl = arg;
    pthread_mutex_lock(&impl->lock);
    while (!impl->quit) {
        unsigned gen = atomic_load(&impl->notify_gen);
        int64_t now = wall_ms();
        int64_t next = INT64_MAX;
        struct http_conn *c = impl->waiters;
        while (c) {
            struct http_conn *nx = c->next_waiter;
            if (impl->stopping || c->notify_gen != gen || now >= c->wake_ms) {
                /* Resumed under impl->lock: http_run_handler suspends under the
                 * same lock, so a connection is never resumed before it
                 * was suspended. */
                http_waiter_remove(impl, c);
                MHD_resume_connection(c->mhd);
            } else if (c->wake_ms < next) {
                next = c->wake_ms;
            }
            c = nx;
        }
        if (next == INT64_MAX)
            cond_wait_ms(&impl->wake, &impl->lock, 60000);
        else
            cond_wait_ms(&impl->wake, &impl->lock, next - now);
    }
    pthread_mutex_unlock(&impl->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Calling the handler                                                 */

enum MHD_Result http_run_handler(struct http_conn *c)
{
    struct http_impl *impl = c->impl;
    for (;;) {
        c->req.calls++;
        c->req.now_ms = wall_ms();
        c->req.timed_out = c->req.wait_until_ms > 0 && c->req.now_ms >= c->req.wait_until_ms;
        if (impl->stopping && c->req.calls > 1)
            c->req.timed_out = 1;
        c->notify_gen = atomic_load(&impl->notify_gen);
        enum http_result r = c->route->fn(&c->req, &c->res);
        if (r != HTTP_WAIT)
            return http_send_response(c);

        if (impl->stopping) {
            if (c->req.calls > STOP_MAX_CALLS) {
                http_error(&c->res, 503, "server shutting down");
                return http_send_response(c);
            }
            continue; /* called again at once with timed_out = 1 */
        }
        if (c->req.timed_out) {
            /* A handler must answer once its deadline passed; waiting
             * again would hold the client forever. */
            http_error(&c->res, 500, "the handler did not answer after its deadline");
            return http_send_response(c);
        }
        if (c->req.wait_until_ms <= 0 || c->req.wait_until_ms > c->req.now_ms + WAIT_MAX_MS)
            c->req.wait_until_ms = c->req.now_ms + WAIT_MAX_MS; /* a bounded hold */
        pthread_mutex_lock(&impl->lock);
        if (atomic_load(&impl->notify_gen) != c->notify_gen || impl->stopping) {
            /* Notified while the handler ran: look again now. */
            pthread_mutex_unlock(&impl->lock);
            continue;
        }
        int64_t repoll = c->req.now_ms + HTTP_REPOLL_MS;
        c->wake_ms = c->req.wait_until_ms > 0 && c->req.wait_until_ms < repoll
                         ? c->req.wait_until_ms
                         : repoll;
        MHD_suspend_connection(c->mhd);
        c->suspended = 1;
        waiter_add(impl, c);
        pthread_cond_signal(&impl->wake);
        pthread_mutex_unlock(&impl->lock);
        return MHD_YES;
    }
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */

int http_longpoll_start(struct http_impl *impl)
{
    int rc = pthread_create(&impl->poll_thread, NULL, long_poll_main, impl);
    if (rc != 0)
        return -rc;
    impl->poll_thread_started = 1;
    return 0;
}

void http_longpoll_stop(struct http_impl *impl)
{
    pthread_mutex_lock(&impl->lock);
    impl->quit = 1;
    pthread_cond_signal(&impl->wake);
    pthread_mutex_unlock(&impl->lock);
    if (impl->poll_thread_started)
        pthread_join(impl->poll_thread, NULL);

    /* Waiters left after the grace period must be resumed before the
     * daemon stops: libmicrohttpd cannot close a suspended connection. */
    pthread_mutex_lock(&impl->lock);
    while (impl->waiters) {
        struct http_conn *c = impl->waiters;
        http_waiter_remove(impl, c);
        MHD_resume_connection(c->mhd);
    }
    pthread_mutex_unlock(&impl->lock);
}
