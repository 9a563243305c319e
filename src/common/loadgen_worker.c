/*
 * loadgen_worker.c — one worker thread of the load generator (loadgen.h):
 * its users, each with at most one keep-alive connection, driven by one
 * epoll set.
 *
 * A user's request goes IDLE → (CONNECTING →) SENDING → RECEIVING → IDLE.
 * The request's bytes were built once (lg->request); a send normally
 * writes them whole, and EPOLLOUT is only asked for when it does not.
 * Connections stay in the epoll set level-triggered for EPOLLIN from
 * connect to close, so a keep-alive request costs one send, one recv
 * (usually) and a share of one epoll_wait — no epoll_ctl, no allocation.
 * Responses are read into the worker's one buffer and fed to http-parser
 * as they come; bodies (Content-Length, chunked, or up to EOF) are
 * skipped by the parser and never stored.
 *
 * Time: a request's deadline is its start + timeout, and starts come in
 * time order, so the requests in flight form a FIFO sorted by deadline
 * (tmo_head is the next to expire).  Users waiting for a moment — the
 * next scheduled request in the open model, or a back-off after an error
 * — sit in a binary min-heap by wake time.  epoll_wait sleeps until the
 * earlier of the two, or the test's end.
 *
 * Open model (rate > 0): user g (over all workers) sends its k-th request
 * at start + (g + k·users)/rate s, i.e. the whole test sends at exact
 * intervals of 1/rate spread round-robin over the users; a user still
 * busy sends as soon as it is free, and latency counts from the
 * scheduled time (coordinated omission corrected, as wrk2).
 *
 * Errors: each failed request is counted by kind and its user backs off
 * 1, 2, 4 … 100 ms before the next one, so a dead target costs little CPU
 * while the test runs its time.  A reused keep-alive connection that the
 * server closed while idle (EOF or reset before any byte of the answer)
 * is reopened and the request sent again once, silently, as browsers do.
 *
 * The worker holds its lock while it handles a batch of events and
 * releases it around epoll_wait, so loadgen_progress reads consistent
 * counts without a lock per request.
 */
#include "common/loadgen_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

enum { U_IDLE, U_CONNECTING, U_SENDING, U_RECEIVING };
enum { K_OK, K_CONNECT, K_TIMEOUT, K_RESET, K_OTHER };

#define BACKOFF_MIN_NS 1000000LL   /* 1 ms */
#define BACKOFF_MAX_NS 100000000LL /* 100 ms */
#define EVENTS_MAX 256

struct loadgen_user {
    struct loadgen_worker *w;
    int fd;                  /* -1: no connection */
    uint8_t state;
    uint8_t complete;        /* the parser saw the whole response */
    uint8_t extra;           /* bytes after it: the connection is not reusable */
    uint8_t want_out;        /* EPOLLOUT is in the fd's event mask */
    uint8_t in_tmo;
    uint8_t retried;         /* the silent resend was used for this request */
    uint32_t served;         /* responses on this connection */
    uint32_t fails;          /* consecutive failed requests */
    size_t heap_idx;
    size_t sent, got;        /* request bytes written, response bytes read */
    int64_t origin_ns;       /* latency counts from here */
    int64_t deadline_ns;
    int64_t wake_ns;         /* in the heap: when to start the next request */
    int64_t backoff_until_ns;
    uint64_t slot;           /* open model: requests started so far */
    int global;              /* index over all users */
    struct loadgen_user *tprev, *tnext;
    http_parser parser;
};

struct loadgen_user *loadgen_users_new(int n)
{
    return calloc((size_t)n, sizeof(struct loadgen_user));
}

/* ---- the wait heap ---- */

static void heap_set(struct loadgen_worker *w, size_t i, struct loadgen_user *u)
{
    w->heap[i] = u;
    u->heap_idx = i;
}

static void heap_push(struct loadgen_worker *w, struct loadgen_user *u)
{
    size_t i = w->heap_len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p]->wake_ns <= u->wake_ns)
            break;
        heap_set(w, i, w->heap[p]);
        i = p;
    }
    heap_set(w, i, u);
}

static struct loadgen_user *heap_pop(struct loadgen_worker *w)
{
    struct loadgen_user *top = w->heap[0];
    struct loadgen_user *last = w->heap[--w->heap_len];
    size_t i = 0, n = w->heap_len;
    if (n == 0)
        return top;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && w->heap[c + 1]->wake_ns < w->heap[c]->wake_ns)
            c++;
        if (last->wake_ns <= w->heap[c]->wake_ns)
            break;
        heap_set(w, i, w->heap[c]);
        i = c;
    }
    heap_set(w, i, last);
    return top;
}

/* ---- the deadline FIFO ---- */

static void tmo_append(struct loadgen_worker *w, struct loadgen_user *u)
{
    u->tnext = NULL;
    u->tprev = w->tmo_tail;
    if (w->tmo_tail)
        w->tmo_tail->tnext = u;
    else
        w->tmo_head = u;
    w->tmo_tail = u;
    u->in_tmo = 1;
}

static void tmo_remove(struct loadgen_worker *w, struct loadgen_user *u)
{
    if (!u->in_tmo)
        return;
    if (u->tprev)
        u->tprev->tnext = u->tnext;
    else
        w->tmo_head = u->tnext;
    if (u->tnext)
        u->tnext->tprev = u->tprev;
    else
        w->tmo_tail = u->tprev;
    u->in_tmo = 0;
}

/* ---- counting (under w->lock) ---- */

static void count(struct loadgen_worker *w, int kind, int status, int64_t latency_ns, int64_t now)
{
    struct loadgen_result *r = &w->res;
    if (now >= w->end_ns) /* after the end: abandoned, like those still in flight */
        return;
    int64_t since = now - w->start_ns;
    size_t sec = since > 0 ? (size_t)(since / 1000000000) : 0;
    if (sec >= LOADGEN_SECONDS_MAX)
        sec = LOADGEN_SECONDS_MAX - 1;
    if (sec + 1 > r->n_seconds)
        r->n_seconds = sec + 1;
    struct loadgen_second *s = &r->seconds[sec];
    if (kind == K_OK) {
        uint64_t lat = latency_ns > 0 ? (uint64_t)latency_ns : 0;
        r->requests++;
        s->requests++;
        s->latency_sum_ns += lat;
        if (lat > s->latency_max_ns)
            s->latency_max_ns = lat;
        histogram_add(&r->latency, lat, 1);
        size_t i = w->last_status;
        if (i < r->n_status && r->status[i].code == status) {
            r->status[i].count++;
        } else {
            loadgen_status_count(r, status);
            for (i = 0; i < r->n_status; i++)
                if (r->status[i].code == status)
                    w->last_status = i;
        }
        return;
    }
    r->errors++;
    s->errors++;
    switch (kind) {
    case K_CONNECT: r->err_connect++; break;
    case K_TIMEOUT: r->err_timeout++; break;
    case K_RESET: r->err_reset++; break;
    default: r->err_other++; break;
    }
}

/* ---- http-parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
    struct loadgen_user *u = p->data;
    if (u->complete) /* a second response we never asked for */
        u->extra = 1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct loadgen_user *u = p->data;
    return u->w->lg->head; /* 1: no body follows (HEAD) */
}

static int on_message_complete(http_parser *p)
{
    struct loadgen_user *u = p->data;
    u->complete = 1;
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

/* ---- connections ---- */

static void conn_close(struct loadgen_user *u)
{
    if (u->fd >= 0)
        close(u->fd); /* also leaves the epoll set: the fd is never dup'ed */
    u->fd = -1;
    u->served = 0;
    u->want_out = 0;
}

static void set_events(struct loadgen_user *u, int want_out)
{
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = u};
    if (epoll_ctl(u->w->ep, EPOLL_CTL_MOD, u->fd, &ev) == 0)
        u->want_out = (uint8_t)want_out;
}

/* 0: connecting (or connected); else the error kind, connection closed. */
static int conn_open(struct loadgen_user *u)
{
    struct loadgen *lg = u->w->lg;
    u->fd = socket(lg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u->fd < 0)
        return K_OTHER; /* EMFILE, ENOBUFS … */
    int one = 1;
    setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(u->fd, (struct sockaddr *)&lg->addr, lg->addrlen) != 0 && errno != EINPROGRESS) {
        int kind = errno == EMFILE || errno == ENOBUFS || errno == ENOMEM ? K_OTHER : K_CONNECT;
        conn_close(u);
        return kind;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = u};
    if (epoll_ctl(u->w->ep, EPOLL_CTL_ADD, u->fd, &ev) != 0) {
        conn_close(u);
        return K_OTHER;
    }
    u->want_out = 1;
    u->state = U_CONNECTING;
    return 0;
}

/* ---- requests ---- */

static void request_begin(struct loadgen_user *u, int64_t now);
static void request_send(struct loadgen_user *u);

static int64_t scheduled(const struct loadgen_user *u, uint64_t k)
{
    const struct loadgen *lg = u->w->lg;
    double at = ((double)u->global + (double)k * lg->users) * (1e9 / lg->rate);
    return u->w->start_ns + (int64_t)at;
}

/* The user is free: start its next request now, or wait in the heap. */
static void user_next(struct loadgen_user *u, int64_t now)
{
    struct loadgen_worker *w = u->w;
    if (now >= w->end_ns || atomic_load_explicit(&w->lg->stop, memory_order_relaxed))
        return;
    int64_t wake = now;
    if (u->fails && u->backoff_until_ns > wake)
        wake = u->backoff_until_ns;
    if (w->lg->rate > 0) {
        int64_t s = scheduled(u, u->slot);
        if (s > wake)
            wake = s;
    }
    if (wake > now) {
        u->wake_ns = wake;
        heap_push(w, u);
        return;
    }
    request_begin(u, now);
}

/* The request is over: count it, then the user goes on. */
static void request_end(struct loadgen_user *u, int kind, int64_t now)
{
    struct loadgen_worker *w = u->w;
    tmo_remove(w, u);
    u->state = U_IDLE;
    if (kind == K_OK) {
        count(w, K_OK, u->parser.status_code, now - u->origin_ns, now);
        u->fails = 0;
    } else {
        conn_close(u);
        count(w, kind, 0, 0, now);
        int64_t b = BACKOFF_MIN_NS << (u->fails < 7 ? u->fails : 7);
        u->backoff_until_ns = now + (b < BACKOFF_MAX_NS ? b : BACKOFF_MAX_NS);
        if (u->fails < UINT32_MAX)
            u->fails++;
    }
    user_next(u, now);
}

static void request_begin(struct loadgen_user *u, int64_t now)
{
    struct loadgen_worker *w = u->w;
    u->origin_ns = w->lg->rate > 0 ? scheduled(u, u->slot++) : now;
    u->deadline_ns = now + (int64_t)w->lg->timeout_ms * 1000000;
    tmo_append(w, u);
    u->sent = u->got = 0;
    u->complete = u->extra = u->retried = 0;
    http_parser_init(&u->parser, HTTP_RESPONSE);
    u->parser.data = u;
    if (u->fd < 0) {
        int kind = conn_open(u);
        if (kind)
            request_end(u, kind, now);
        return; /* sends once connected */
    }
    u->state = U_SENDING;
    request_send(u);
}

/* The connection failed before the answer (EOF, reset).  A keep-alive
 * connection the server dropped while it was idle gets one silent resend
 * on a new one; otherwise it is a reset. */
static void request_broken(struct loadgen_user *u, int64_t now)
{
    if (u->served > 0 && u->got == 0 && !u->retried) {
        conn_close(u);
        u->retried = 1;
        u->sent = 0;
        int kind = conn_open(u);
        if (kind)
            request_end(u, kind, now);
        return;
    }
    request_end(u, K_RESET, now);
}

static void request_send(struct loadgen_user *u)
{
    struct loadgen_worker *w = u->w;
    const struct loadgen *lg = w->lg;
    while (u->sent < lg->request_len) {
        ssize_t n = send(u->fd, lg->request + u->sent, lg->request_len - u->sent, MSG_NOSIGNAL);
        if (n > 0) {
            u->sent += (size_t)n;
            w->res.bytes_written += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!u->want_out)
                set_events(u, 1);
            return;
        }
        request_broken(u, loadgen_now_ns());
        return;
    }
    u->state = U_RECEIVING;
    if (u->want_out)
        set_events(u, 0);
}

static void response_done(struct loadgen_user *u, int64_t now)
{
    int keep = !u->extra && u->state == U_RECEIVING && http_should_keep_alive(&u->parser);
    if (!keep)
        conn_close(u);
    else
        u->served++;
    request_end(u, K_OK, now);
}

static void request_receive(struct loadgen_user *u)
{
    struct loadgen_worker *w = u->w;
    ssize_t n;
    do
        n = recv(u->fd, w->buf, sizeof w->buf, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        w->res.bytes_read += (uint64_t)n;
        u->got += (size_t)n;
        size_t used = http_parser_execute(&u->parser, &parser_settings, w->buf, (size_t)n);
        if (u->complete) {
            if (used != (size_t)n)
                u->extra = 1;
            response_done(u, loadgen_now_ns());
        } else if (HTTP_PARSER_ERRNO(&u->parser) != HPE_OK) {
            request_end(u, K_OTHER, loadgen_now_ns());
        }
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    int64_t now = loadgen_now_ns();
    if (n == 0 && u->got > 0) { /* EOF: the end of a body that runs to it? */
        http_parser_execute(&u->parser, &parser_settings, NULL, 0);
        if (u->complete) {
            u->extra = 1; /* not reusable */
            response_done(u, now);
            return;
        }
    }
    if (n < 0 && errno != ECONNRESET && errno != EPIPE && errno != ECONNABORTED) {
        request_end(u, K_OTHER, now);
        return;
    }
    request_broken(u, now);
}

static void on_event(struct loadgen_user *u, uint32_t ev)
{
    switch (u->state) {
    case U_CONNECTING: {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
            soerr = errno;
        if (soerr || (ev & (EPOLLERR | EPOLLHUP))) {
            request_end(u, K_CONNECT, loadgen_now_ns());
            return;
        }
        if (!(ev & EPOLLOUT))
            return;
        u->state = U_SENDING;
        request_send(u);
        return;
    }
    case U_SENDING:
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            request_send(u);
        if (u->state == U_SENDING && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            request_receive(u); /* an early answer, or the end */
        return;
    case U_RECEIVING:
        request_receive(u);
        return;
    default: /* idle keep-alive connection: the server closed it, or talks out of turn */
        conn_close(u);
        return;
    }
}

/* ---- the thread ---- */

/* Sleeps in epoll until an event or `until` (ns, monotonic). */
static int wait_events(struct loadgen_worker *w, struct epoll_event *evs, int64_t until)
{
    static atomic_int no_pwait2;
    int64_t d = until - loadgen_now_ns();
    if (d < 0)
        d = 0;
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = {.tv_sec = d / 1000000000, .tv_nsec = d % 1000000000};
        int n = epoll_pwait2(w->ep, evs, EVENTS_MAX, &ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        atomic_store(&no_pwait2, 1);
    }
    int64_t ms = (d + 999999) / 1000000;
    return epoll_wait(w->ep, evs, EVENTS_MAX, ms > 1000 ? 1000 : (int)ms);
}

void *loadgen_worker_main(void *arg)
{
    struct loadgen_worker *w = arg;
    struct loadgen *lg = w->lg;
    struct epoll_event evs[EVENTS_MAX];

    pthread_mutex_lock(&w->lock);
    int64_t now = loadgen_now_ns();
    for (int i = 0; i < w->n_users; i++) {
        struct loadgen_user *u = &w->users[i];
        u->w = w;
        u->fd = -1;
        u->global = w->first_user + i;
        user_next(u, now);
    }
    for (;;) {
        now = loadgen_now_ns();
        if (now >= w->end_ns || atomic_load_explicit(&lg->stop, memory_order_relaxed))
            break;
        while (w->tmo_head && w->tmo_head->deadline_ns <= now) {
            struct loadgen_user *u = w->tmo_head;
            request_end(u, u->state == U_CONNECTING ? K_CONNECT : K_TIMEOUT, now);
        }
        while (w->heap_len && w->heap[0]->wake_ns <= now)
            request_begin(heap_pop(w), now);
        int64_t until = w->end_ns;
        if (w->heap_len && w->heap[0]->wake_ns < until)
            until = w->heap[0]->wake_ns;
        if (w->tmo_head && w->tmo_head->deadline_ns < until)
            until = w->tmo_head->deadline_ns;
        pthread_mutex_unlock(&w->lock);
        int n = wait_events(w, evs, until);
        pthread_mutex_lock(&w->lock);
        for (int i = 0; i < n; i++)
            if (evs[i].data.ptr) /* NULL: the cancel eventfd */
                on_event(evs[i].data.ptr, evs[i].events);
    }
    for (int i = 0; i < w->n_users; i++)
        conn_close(&w->users[i]); /* requests in flight are abandoned, not counted */
    pthread_mutex_unlock(&w->lock);
    return NULL;
}
