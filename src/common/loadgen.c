/*
 * loadgen.c — the load generator of loadgen.h, its outer half: checking
 * the spec, parsing the URL (http_parser_parse_url) and resolving its
 * host once, building the request's bytes once, starting the worker
 * threads and merging their counts.  The connections themselves live in
 * loadgen_worker.c, one epoll set per worker thread.
 *
 * Counting: each worker owns a struct loadgen_result and updates it under
 * its own mutex, taken once per batch of epoll events (not per request);
 * loadgen_progress takes the loadgen's lock, then each worker's, and adds
 * them up.  After a run the merged counts stay in lg->final.
 *
 * Used by sonded and the CLI; not part of libsonde.so.
 */
#include "common/loadgen_internal.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

int64_t loadgen_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* ---- the spec ---- */

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

size_t loadgen_header_name_len(const char *s)
{
    size_t n = 0;
    while (s && is_tchar((unsigned char)s[n]))
        n++;
    return n;
}

/* Headers whose framing or routing the engine owns. */
static const char *const owned_headers[] = {"Host", "Content-Length", "Connection", "Transfer-Encoding"};

const char *loadgen_header_owned(const char *name, size_t len)
{
    for (size_t k = 0; k < sizeof owned_headers / sizeof owned_headers[0]; k++)
        if (strlen(owned_headers[k]) == len && strncasecmp(name, owned_headers[k], len) == 0)
            return owned_headers[k];
    return NULL;
}

static int check_header(const char *h, size_t i, char *err, size_t errlen)
{
    if (!h)
        return fail(err, errlen, -EINVAL, "headers[%zu]: NULL", i);
    size_t len = strnlen(h, LOADGEN_HEADER_MAX + 1);
    if (len > LOADGEN_HEADER_MAX)
        return fail(err, errlen, -EINVAL, "headers[%zu]: longer than %d bytes", i, LOADGEN_HEADER_MAX);
    size_t n = loadgen_header_name_len(h);
    if (n == 0 || h[n] != ':')
        return fail(err, errlen, -EINVAL, "headers[%zu]: not \"Name: value\" (name must be a token)", i);
    for (const char *p = h + n + 1; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(err, errlen, -EINVAL, "headers[%zu]: control character in the value", i);
    }
    const char *owned = loadgen_header_owned(h, n);
    if (owned)
        return fail(err, errlen, -EINVAL, "headers[%zu]: %s is set by the load generator", i,
                    owned);
    return 0;
}

static int check_spec(const struct loadgen_spec *s, char *err, size_t errlen)
{
    if (!s)
        return fail(err, errlen, -EINVAL, "spec: NULL");
    if (!s->url || !*s->url)
        return fail(err, errlen, -EINVAL, "url: missing");
    if (s->method) {
        size_t n = strlen(s->method);
        if (n < 1 || n > 15)
            return fail(err, errlen, -EINVAL, "method: 1 to 15 uppercase letters");
        for (size_t i = 0; i < n; i++)
            if (s->method[i] < 'A' || s->method[i] > 'Z')
                return fail(err, errlen, -EINVAL, "method: 1 to 15 uppercase letters");
    }
    if (s->n_headers > LOADGEN_HEADERS_MAX)
        return fail(err, errlen, -EINVAL, "headers: more than %d", LOADGEN_HEADERS_MAX);
    if (s->n_headers && !s->headers)
        return fail(err, errlen, -EINVAL, "headers: NULL with n_headers %zu", s->n_headers);
    for (size_t i = 0; i < s->n_headers; i++) {
        int rc = check_header(s->headers[i], i, err, errlen);
        if (rc)
            return rc;
    }
    if (s->body_len > LOADGEN_BODY_MAX)
        return fail(err, errlen, -EINVAL, "body: longer than %zu bytes", LOADGEN_BODY_MAX);
    if (s->body_len && !s->body)
        return fail(err, errlen, -EINVAL, "body: NULL with body_len %zu", s->body_len);
    if (s->users < 1 || s->users > LOADGEN_USERS_MAX)
        return fail(err, errlen, -EINVAL, "users: %d not in 1..%d", s->users, LOADGEN_USERS_MAX);
    if (s->duration_ms < 1 || s->duration_ms > LOADGEN_DURATION_MAX_MS)
        return fail(err, errlen, -EINVAL, "duration_ms: %lld not in 1..%lld", (long long)s->duration_ms,
                    (long long)LOADGEN_DURATION_MAX_MS);
    if (!isfinite(s->rate) || s->rate < 0 || s->rate > LOADGEN_RATE_MAX)
        return fail(err, errlen, -EINVAL, "rate: %g not 0 or in (0, %g] requests/s", s->rate,
                    LOADGEN_RATE_MAX);
    if (s->timeout_ms < 0 || s->timeout_ms > 600000)
        return fail(err, errlen, -EINVAL, "timeout_ms: %d not 0 or in 1..600000", s->timeout_ms);
    if (s->threads < 0 || s->threads > LOADGEN_THREADS_MAX)
        return fail(err, errlen, -EINVAL, "threads: %d not 0 or in 1..%d", s->threads, LOADGEN_THREADS_MAX);
    return 0;
}

/* ---- the URL and the request ---- */

struct target {
    char host[256];   /* as in the URL, without IPv6 brackets */
    char port[8];
    int ipv6_literal;
    int default_port;
    const char *path; /* into the URL: path[?query], not NUL-terminated */
    size_t path_len;
};

static int parse_url(const char *url, struct target *t, char *err, size_t errlen)
{
    size_t len = strnlen(url, LOADGEN_URL_MAX + 1);
    if (len > LOADGEN_URL_MAX)
        return fail(err, errlen, -EINVAL, "url: longer than %d bytes", LOADGEN_URL_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] == 0x7f)
            return fail(err, errlen, -EINVAL, "url: space or control character at %zu", i);
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, len, 0, &u) != 0)
        return fail(err, errlen, -EINVAL, "url: cannot parse '%s'", url);
    if (!(u.field_set & (1 << UF_SCHEMA)))
        return fail(err, errlen, -EINVAL, "url: no scheme (want http://host[:port]/path)");
    const char *scheme = url + u.field_data[UF_SCHEMA].off;
    size_t scheme_len = u.field_data[UF_SCHEMA].len;
    if (scheme_len == 5 && strncasecmp(scheme, "https", 5) == 0)
        return fail(err, errlen, -ENOTSUP, "url: https is not supported (plain http:// only)");
    if (scheme_len != 4 || strncasecmp(scheme, "http", 4) != 0)
        return fail(err, errlen, -EINVAL, "url: scheme '%.*s' is not http", (int)scheme_len, scheme);
    if (u.field_set & (1 << UF_USERINFO))
        return fail(err, errlen, -EINVAL, "url: user:password@ is not supported (use an Authorization header)");
    if (!(u.field_set & (1 << UF_HOST)) || u.field_data[UF_HOST].len == 0)
        return fail(err, errlen, -EINVAL, "url: no host");
    size_t hl = u.field_data[UF_HOST].len;
    if (hl >= sizeof t->host)
        return fail(err, errlen, -EINVAL, "url: host longer than %zu bytes", sizeof t->host - 1);
    memcpy(t->host, url + u.field_data[UF_HOST].off, hl);
    t->host[hl] = 0;
    size_t hoff = u.field_data[UF_HOST].off;
    t->ipv6_literal = hoff > 0 && url[hoff - 1] == '[';
    unsigned port = 80;
    t->default_port = 1;
    if (u.field_set & (1 << UF_PORT)) {
        port = u.port;
        t->default_port = port == 80;
        if (port == 0)
            return fail(err, errlen, -EINVAL, "url: port 0");
    }
    snprintf(t->port, sizeof t->port, "%u", port);
    if (u.field_set & (1 << UF_PATH)) {
        t->path = url + u.field_data[UF_PATH].off;
        t->path_len = u.field_data[UF_PATH].len;
        if (u.field_set & (1 << UF_QUERY))
            t->path_len = u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len - u.field_data[UF_PATH].off;
    } else if (u.field_set & (1 << UF_QUERY)) {
        t->path = url + u.field_data[UF_QUERY].off - 1; /* "?query" */
        t->path_len = u.field_data[UF_QUERY].len + 1;
    } else {
        t->path = "/";
        t->path_len = 1;
    }
    return 0;
}

static int build_request(struct loadgen *lg, const struct loadgen_spec *s, const struct target *t)
{
    const char *method = s->method ? s->method : "GET";
    int has_body = s->body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                   strcmp(method, "PATCH") == 0;
    size_t cap = strlen(method) + t->path_len + sizeof t->host + 128 + s->body_len;
    for (size_t i = 0; i < s->n_headers; i++)
        cap += strlen(s->headers[i]) + 2;
    char *r = malloc(cap);
    if (!r)
        return -ENOMEM;
    size_t n = (size_t)snprintf(r, cap, "%s %.*s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n", method, (int)t->path_len,
                                t->path, t->ipv6_literal ? "[" : "", t->host, t->ipv6_literal ? "]" : "",
                                t->default_port ? "" : ":", t->default_port ? "" : t->port);
    for (size_t i = 0; i < s->n_headers; i++)
        n += (size_t)snprintf(r + n, cap - n, "%s\r\n", s->headers[i]);
    if (has_body)
        n += (size_t)snprintf(r + n, cap - n, "Content-Length: %zu\r\n", s->body_len);
    n += (size_t)snprintf(r + n, cap - n, "\r\n");
    if (s->body_len) {
        memcpy(r + n, s->body, s->body_len);
        n += s->body_len;
    }
    lg->request = r;
    lg->request_len = n;
    lg->head = strcmp(method, "HEAD") == 0;
    return 0;
}

static int resolve(struct loadgen *lg, const struct target *t, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(t->host, t->port, &hints, &ai);
    if (rc != 0 || !ai)
        return fail(err, errlen, -EHOSTUNREACH, "url: cannot resolve host '%s': %s", t->host,
                    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    memcpy(&lg->addr, ai->ai_addr, ai->ai_addrlen);
    lg->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    char a[INET6_ADDRSTRLEN] = "?";
    if (lg->addr.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&lg->addr)->sin6_addr, a, sizeof a);
        snprintf(lg->address, sizeof lg->address, "[%s]:%s", a, t->port);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&lg->addr)->sin_addr, a, sizeof a);
        snprintf(lg->address, sizeof lg->address, "%s:%s", a, t->port);
    }
    return 0;
}

int loadgen_new(const struct loadgen_spec *spec, struct loadgen **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = check_spec(spec, err, errlen);
    if (rc)
        return rc;
    struct target t;
    memset(&t, 0, sizeof t);
    rc = parse_url(spec->url, &t, err, errlen);
    if (rc)
        return rc;
    struct loadgen *lg = calloc(1, sizeof *lg);
    if (!lg)
        return fail(err, errlen, -ENOMEM, "out of memory");
    lg->cancel_fd = -1;
    pthread_mutex_init(&lg->lock, NULL);
    snprintf(lg->host, sizeof lg->host, "%s", t.host);
    rc = resolve(lg, &t, err, errlen);
    if (rc) {
        loadgen_free(lg);
        return rc;
    }
    if (build_request(lg, spec, &t) != 0) {
        loadgen_free(lg);
        return fail(err, errlen, -ENOMEM, "out of memory");
    }
    lg->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (lg->cancel_fd < 0) {
        rc = -errno;
        loadgen_free(lg);
        return fail(err, errlen, rc, "eventfd: %s", strerror(-rc));
    }
    lg->users = spec->users;
    lg->duration_ms = spec->duration_ms;
    lg->rate = spec->rate;
    lg->timeout_ms = spec->timeout_ms ? spec->timeout_ms : 10000;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = spec->threads ? spec->threads : (int)(cpus > 0 ? cpus : 1);
    if (threads > LOADGEN_THREADS_MAX)
        threads = LOADGEN_THREADS_MAX;
    if (threads > lg->users)
        threads = lg->users;
    lg->threads = threads;
    *out = lg;
    return 0;
}

void loadgen_free(struct loadgen *lg)
{
    if (!lg)
        return;
    if (lg->cancel_fd >= 0)
        close(lg->cancel_fd);
    pthread_mutex_destroy(&lg->lock);
    free(lg->request);
    free(lg->final);
    free(lg);
}

const char *loadgen_address(const struct loadgen *lg)
{
    return lg->address;
}

const char *loadgen_host(const struct loadgen *lg)
{
    return lg->host;
}

const struct sockaddr *loadgen_sockaddr(const struct loadgen *lg, socklen_t *len)
{
    if (len)
        *len = lg->addrlen;
    return (const struct sockaddr *)&lg->addr;
}

/* Every worker sees stop at its next turn; the eventfd, never read, keeps
 * their epoll_wait from sleeping. */
static void wake_workers(struct loadgen *lg)
{
    atomic_store(&lg->stop, 1);
    uint64_t one = 1;
    ssize_t n = write(lg->cancel_fd, &one, sizeof one);
    (void)n;
}

void loadgen_cancel(struct loadgen *lg)
{
    atomic_store(&lg->cancelled, 1);
    wake_workers(lg);
}

int loadgen_cancelled(const struct loadgen *lg)
{
    return atomic_load(&((struct loadgen *)lg)->cancelled);
}

/* ---- counts ---- */

static void status_add(struct loadgen_result *r, int code, uint64_t count)
{
    for (size_t i = 0; i < r->n_status; i++)
        if (r->status[i].code == code) {
            r->status[i].count += count;
            return;
        }
    size_t i = r->n_status;
    if (i >= LOADGEN_STATUS_MAX - 1) { /* the last entry gathers the rest, as code 0 */
        i = LOADGEN_STATUS_MAX - 1;
        code = 0;
        if (r->n_status < LOADGEN_STATUS_MAX) {
            r->status[i].code = 0;
            r->status[i].count = 0;
            r->n_status = LOADGEN_STATUS_MAX;
        }
    } else {
        r->status[i].code = code;
        r->status[i].count = 0;
        r->n_status++;
    }
    r->status[i].count += count;
}

void loadgen_status_count(struct loadgen_result *r, int code)
{
    status_add(r, code, 1);
}

void loadgen_result_merge(struct loadgen_result *dst, const struct loadgen_result *src)
{
    dst->requests += src->requests;
    dst->errors += src->errors;
    dst->err_connect += src->err_connect;
    dst->err_timeout += src->err_timeout;
    dst->err_reset += src->err_reset;
    dst->err_other += src->err_other;
    dst->bytes_read += src->bytes_read;
    dst->bytes_written += src->bytes_written;
    for (size_t i = 0; i < src->n_status; i++)
        status_add(dst, src->status[i].code, src->status[i].count);
    histogram_merge(&dst->latency, &src->latency);
    for (size_t i = 0; i < src->n_seconds; i++) {
        struct loadgen_second *d = &dst->seconds[i];
        const struct loadgen_second *s = &src->seconds[i];
        d->requests += s->requests;
        d->errors += s->errors;
        d->latency_sum_ns += s->latency_sum_ns;
        if (s->latency_max_ns > d->latency_max_ns)
            d->latency_max_ns = s->latency_max_ns;
    }
    if (src->n_seconds > dst->n_seconds)
        dst->n_seconds = src->n_seconds;
}

static void result_empty(struct loadgen_result *r)
{
    memset(r, 0, sizeof *r);
    histogram_reset(&r->latency);
}

static int by_code(const void *a, const void *b)
{
    int x = ((const int *)a)[0], y = ((const int *)b)[0];
    if (x == 0 || y == 0) /* the "others" entry last */
        return (x == 0) - (y == 0);
    return (x > y) - (x < y);
}

/* Sets elapsed_s and n_seconds (the series covers the elapsed time), and
 * sorts the status codes. */
static void result_finish(struct loadgen_result *r, int64_t elapsed_ns)
{
    r->elapsed_s = (double)elapsed_ns / 1e9;
    size_t secs = (size_t)(elapsed_ns / 1000000000);
    if (secs > LOADGEN_SECONDS_MAX)
        secs = LOADGEN_SECONDS_MAX;
    if (secs > r->n_seconds) /* the seconds in between were zeroed */
        r->n_seconds = secs;
    qsort(r->status, r->n_status, sizeof r->status[0], by_code);
}

void loadgen_progress(struct loadgen *lg, struct loadgen_result *out)
{
    result_empty(out);
    pthread_mutex_lock(&lg->lock);
    if (lg->workers) {
        for (int i = 0; i < lg->n_workers; i++) {
            struct loadgen_worker *w = &lg->workers[i];
            pthread_mutex_lock(&w->lock);
            loadgen_result_merge(out, &w->res);
            pthread_mutex_unlock(&w->lock);
        }
        result_finish(out, loadgen_now_ns() - lg->start_ns);
    } else if (lg->final) {
        memcpy(out, lg->final, sizeof *out);
    }
    pthread_mutex_unlock(&lg->lock);
}

/* ---- a run ---- */

/* Enough descriptors for every user: raise the soft limit toward the
 * hard one if needed (a process-wide setting, but sonded and the CLI are
 * ours; EMFILE is counted as an error otherwise). */
static void raise_fd_limit(int users)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)users + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void free_workers(struct loadgen_worker *ws, int n)
{
    if (!ws)
        return;
    for (int i = 0; i < n; i++) {
        if (ws[i].ep >= 0)
            close(ws[i].ep);
        free(ws[i].users);
        free(ws[i].heap);
        pthread_mutex_destroy(&ws[i].lock);
    }
    free(ws);
}

static int setup_workers(struct loadgen *lg, struct loadgen_worker *ws, int n, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        struct loadgen_worker *w = &ws[i];
        w->lg = lg;
        w->ep = -1;
        pthread_mutex_init(&w->lock, NULL);
        result_empty(&w->res);
        w->first_user = (int)((int64_t)lg->users * i / n);
        w->n_users = (int)((int64_t)lg->users * (i + 1) / n) - w->first_user;
        w->users = loadgen_users_new(w->n_users);
        w->heap = calloc((size_t)w->n_users, sizeof *w->heap);
        if (!w->users || !w->heap)
            return fail(err, errlen, -ENOMEM, "out of memory");
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        if (w->ep < 0)
            return fail(err, errlen, -errno, "epoll_create1: %s", strerror(errno));
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, lg->cancel_fd, &ev) != 0)
            return fail(err, errlen, -errno, "epoll_ctl: %s", strerror(errno));
    }
    return 0;
}

int loadgen_run(struct loadgen *lg, struct loadgen_result *out, char *err, size_t errlen)
{
    pthread_mutex_lock(&lg->lock);
    if (lg->ran) {
        pthread_mutex_unlock(&lg->lock);
        return fail(err, errlen, -EALREADY, "loadgen_run: this test has already run");
    }
    lg->ran = 1;
    lg->final = malloc(sizeof *lg->final);
    if (!lg->final) {
        pthread_mutex_unlock(&lg->lock);
        return fail(err, errlen, -ENOMEM, "out of memory");
    }
    result_empty(lg->final);
    pthread_mutex_unlock(&lg->lock);
    if (atomic_load(&lg->cancelled)) {
        if (out)
            loadgen_progress(lg, out);
        return 0;
    }

    raise_fd_limit(lg->users);
    int n = lg->threads;
    struct loadgen_worker *ws = calloc((size_t)n, sizeof *ws);
    if (!ws)
        return fail(err, errlen, -ENOMEM, "out of memory");
    int rc = setup_workers(lg, ws, n, err, errlen);
    if (rc) {
        free_workers(ws, n);
        return rc;
    }
    int64_t start = loadgen_now_ns();
    for (int i = 0; i < n; i++) {
        ws[i].start_ns = start;
        ws[i].end_ns = start + lg->duration_ms * 1000000;
    }
    pthread_mutex_lock(&lg->lock);
    lg->workers = ws;
    lg->n_workers = n;
    lg->start_ns = start;
    pthread_mutex_unlock(&lg->lock);

    for (int i = 0; i < n; i++) {
        rc = -pthread_create(&ws[i].thread, NULL, loadgen_worker_main, &ws[i]);
        if (rc) {
            fail(err, errlen, rc, "pthread_create: %s", strerror(-rc));
            break;
        }
        ws[i].started = 1;
    }
    if (rc) /* stop the started ones */
        wake_workers(lg);
    for (int i = 0; i < n; i++)
        if (ws[i].started)
            pthread_join(ws[i].thread, NULL);

    pthread_mutex_lock(&lg->lock);
    int64_t end = loadgen_now_ns();
    for (int i = 0; i < n; i++)
        loadgen_result_merge(lg->final, &ws[i].res);
    lg->end_ns = end;
    result_finish(lg->final, end - start);
    lg->workers = NULL;
    lg->n_workers = 0;
    pthread_mutex_unlock(&lg->lock);
    free_workers(ws, n);
    if (out)
        loadgen_progress(lg, out);
    return rc;
}
