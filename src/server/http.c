/*
 * http.c — sonded's HTTP layer on libmicrohttpd (see http.h for the
 * contract handlers rely on).
 *
 * libmicrohttpd runs a pool of cfg.threads threads, each with its own
 * epoll set; every callback below runs on one of them.  A request goes
 * through on_request() several times:
 *
 *   1. headers in: route it (404/405), check the bearer token and role
 *      (401/403), check Content-Length against the route's body limit
 *      (413).  Nothing of the body is buffered for a refused request.
 *      The refusal is sent at once when no body follows or the client
 *      waits for "100 Continue" (curl does for large bodies); a client
 *      that sends its body regardless would see a connection reset
 *      instead of the answer, so that body is read and thrown away (up to
 *      DISCARD_MAX, else the connection is dropped) and the answer sent
 *      after it;
 *   2. body pieces: appended to a buffer bounded by the limit.  A chunked
 *      body (no Content-Length) that grows past it is no longer buffered
 *      and is answered 413 once it ends — libmicrohttpd cannot queue a
 *      response in the middle of a body — or dropped past DISCARD_MAX;
 *   3. body complete: the handler runs and its response is queued.
 *
 * Long-poll (step 3 when the handler answers HTTP_WAIT: suspending the
 * connection and resuming it) is in longpoll.c, routing (the route
 * tables and path patterns of step 1) in route.c; what the files share
 * is in http_internal.h.
 *
 * Shutdown (http_stop): stop accepting, wake every waiter with timed_out
 * set, answer new requests on kept-alive connections with 503, wait (up
 * to STOP_GRACE_MS) for requests in flight to be answered, then stop the
 * daemon.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/auth.h"
#include "server/http_internal.h"

#define CONNECTION_LIMIT 1000
/* Idle seconds before a connection is closed.  Suspended long-polls do
 * not count as idle. */
#define CONNECTION_TIMEOUT_S 60
/* How long http_stop waits for requests in flight. */
#define STOP_GRACE_MS 10000
/* Bytes of an over-limit body read and thrown away so that a client
 * that sends it anyway can read the 413 (see on_headers). */
#define DISCARD_MAX ((size_t)256 << 20)

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static void cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

/* ------------------------------------------------------------------ */
/* Responses                                                           */

static void response_clear(struct response *res)
{
    free(res->body);
    res->body = NULL;
    res->body_len = 0;
    res->content_type = NULL;
    res->header_name[0] = res->header_value[0] = '\0';
}

void http_bytes_take(struct response *res, int status, const char *content_type, char *buf,
                     size_t len)
{
    response_clear(res);
    res->status = status;
    res->content_type = content_type;
    res->body = buf;
    res->body_len = buf ? len : 0;
}

void http_bytes(struct response *res, int status, const char *content_type, const void *buf,
                size_t len)
{
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        http_error(res, 500, "out of memory");
        return;
    }
    if (len)
        memcpy(copy, buf, len);
    http_bytes_take(res, status, content_type, copy, len);
}

void http_json(struct response *res, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        /* Either the handler could not build its document (NULL: out of
         * memory) or jansson could not print it. */
        http_error(res, 500, "out of memory building the response");
        return;
    }
    http_bytes_take(res, status, "application/json", text, strlen(text));
}

void http_error(struct response *res, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    response_clear(res);
    res->status = status;
    res->content_type = "application/json";
    json_t *o = json_pack("{s:s}", "error", msg);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) {
        /* jansson refuses invalid UTF-8 in msg; keep a valid document. */
        static const char fallback[] = "{\"error\":\"internal error\"}";
        text = strdup(fallback);
    }
    res->body = text;
    res->body_len = text ? strlen(text) : 0;
}

void http_store_error(struct response *res, struct store *st, int rc, const char *what)
{
    int status;
    switch (rc) {
    case -ENOENT:
        status = 404;
        break;
    case -EEXIST:
        status = 409;
        break;
    case -EINVAL:
        status = 400;
        break;
    case -ENOTSUP:
        status = 501;
        break;
    case -EBUSY:
        status = 429;
        break;
    default:
        status = 500;
        break;
    }
    const char *msg = what ? what : store_errmsg(st);
    if (!msg || !*msg)
        msg = "store error";
    http_error(res, status, "%s", msg);
}

enum http_result http_id_error(const struct request *req, struct response *res, int rc,
                               const char *kind, const char *problem)
{
    char what[128];
    snprintf(what, sizeof what, "%s %lld %s", kind, (long long)req->id, problem);
    http_store_error(res, req->srv->store, rc, rc == -ENOENT ? what : NULL);
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Request accessors                                                   */

const char *http_query(const struct request *req, const char *name)
{
    const struct http_conn *c = req->conn;
    if (c && !c->mhd) {
        for (size_t i = 0; i < c->test_nargs; i++)
            if (strcmp(c->test_key[i], name) == 0)
                return c->test_val[i];
        return NULL;
    }
    if (!c)
        return NULL;
    return MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, name);
}

struct query_all {
    const char *name;
    const char **out;
    size_t max, n;
};

static enum MHD_Result query_all_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct query_all *q = cls;
    (void)kind;
    if (key && value && strcmp(key, q->name) == 0 && q->n < q->max)
        q->out[q->n++] = value;
    return MHD_YES;
}

size_t http_query_all(const struct request *req, const char *name, const char **out, size_t max)
{
    const struct http_conn *c = req->conn;
    if (c && !c->mhd) {
        size_t n = 0;
        for (size_t i = 0; i < c->test_nargs && n < max; i++)
            if (strcmp(c->test_key[i], name) == 0)
                out[n++] = c->test_val[i];
        return n;
    }
    if (!req->conn)
        return 0;
    struct query_all q = {name, out, max, 0};
    MHD_get_connection_values(req->conn->mhd, MHD_GET_ARGUMENT_KIND, query_all_one, &q);
    return q.n;
}

const char *http_header(const struct request *req, const char *name)
{
    if (!req->conn || !req->conn->mhd)
        return NULL;
    return MHD_lookup_connection_value(req->conn->mhd, MHD_HEADER_KIND, name);
}

/* Decodes %XX and '+' in place (as libmicrohttpd does for queries). */
static void url_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        int hi, lo;
        if (*r == '+') {
            *w++ = ' ';
        } else if (*r == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* For unit tests of handlers and validators (not declared in http.h):
 * a request with no connection whose query parameters come from query
 * ("limit=5&label=a%3Ab"; at most 32).  http_test_request_free() frees
 * it.  NULL when out of memory. */
struct request *http_test_request_new(const char *query);
void http_test_request_free(struct request *req);

struct request *http_test_request_new(const char *query)
{
    struct http_conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->test_query = strdup(query ? query : ""))) {
        free(c);
        return NULL;
    }
    char *save = NULL;
    for (char *kv = strtok_r(c->test_query, "&", &save); kv && c->test_nargs < 32;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq = '\0';
        url_decode(kv);
        c->test_key[c->test_nargs] = kv;
        c->test_val[c->test_nargs] = eq ? eq + 1 : "";
        if (eq)
            url_decode(eq + 1);
        c->test_nargs++;
    }
    c->req.conn = c;
    c->req.method = "GET";
    c->req.path = "/";
    c->req.body = (const uint8_t *)"";
    c->req.calls = 1;
    return &c->req;
}

void http_test_request_free(struct request *req)
{
    if (!req)
        return;
    struct http_conn *c = req->conn;
    free(c->req.state);
    free(c->res.body);
    free(c->test_query);
    free(c);
}

/* ------------------------------------------------------------------ */
/* Authentication                                                      */

/* Checks the bearer token against the route's roles; fills c->req.token
 * and role, or answers 401/403/500 on c->res and returns -1. */
static int authenticate(struct http_conn *c)
{
    struct server *srv = c->impl->srv;
    const char *h = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Authorization");
    if (!h) {
        http_error(&c->res, 401, "missing Authorization: Bearer token");
        return -1;
    }
    /* The scheme name is case-insensitive (RFC 7235); then one or more
     * spaces, then the token. */
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        http_error(&c->res, 401, "malformed Authorization header: expected 'Bearer TOKEN'");
        return -1;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    char tokbuf[AUTH_TOKEN_LEN + 1];
    size_t tlen = strcspn(tok, " \t");
    if (tlen != AUTH_TOKEN_LEN || tok[tlen + strspn(tok + tlen, " \t")] != '\0') {
        http_error(&c->res, 401, "malformed token: expected sonde_ followed by 64 hex digits");
        return -1;
    }
    memcpy(tokbuf, tok, tlen);
    tokbuf[tlen] = '\0';
    if (!auth_token_well_formed(tokbuf)) {
        http_error(&c->res, 401, "malformed token: expected sonde_ followed by 64 hex digits");
        return -1;
    }
    char hash[STORE_HASH_MAX];
    auth_token_hash(tokbuf, hash);
    explicit_bzero(tokbuf, sizeof(tokbuf));
    int rc = store_token_find(srv->store, hash, &c->req.token);
    if (rc == -ENOENT) {
        http_error(&c->res, 401, "unknown or revoked token");
        return -1;
    }
    if (rc < 0) {
        http_error(&c->res, 500, "token lookup failed: %s", store_errmsg(srv->store));
        return -1;
    }
    c->req.role = role_from_name(c->req.token.role);
    if (!(c->req.role & c->route->roles)) {
        char need[64];
        http_roles_text(c->route->roles, need, sizeof(need));
        http_error(&c->res, 403, "role '%s' may not %s %s; needs %s", c->req.token.role,
                   c->req.method, c->route->pattern, need);
        return -1;
    }
    /* Best effort: a failed touch must not fail the request. */
    store_token_touch(srv->store, c->req.token.id, wall_ms());
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sending and logging                                                 */

static void log_request(struct http_conn *c, int status, size_t bytes)
{
    char addr[INET6_ADDRSTRLEN] = "-";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr,
                      sizeof(addr));
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    double ms = (double)(mono_ns() - c->start_ns) / 1e6;
    /* The path is client text: bound it, and never let it break the line. */
    char path[256];
    size_t i = 0;
    for (const char *p = c->req.path; p && *p && i + 1 < sizeof(path); p++)
        path[i++] = (*p < 0x20 || *p == 0x7f) ? '?' : *p;
    path[i] = '\0';
    /* One fprintf: stdio locks the stream, so lines of concurrent
     * requests do not interleave. */
    fprintf(stderr, "%s.%03ldZ %s %s %s %d %zuB %.1fms token=%" PRId64 "\n", when,
            ts.tv_nsec / 1000000, addr, c->req.method, path, status, bytes, ms, c->req.token.id);
}

/* Queues c->res (or a 500 if the handler left none) and logs. */
enum MHD_Result http_send_response(struct http_conn *c)
{
    struct response *res = &c->res;
    if (res->status < 100 || res->status > 599)
        http_error(res, 500, "the handler produced no response");
    struct MHD_Response *r;
    if (res->body) {
        r = MHD_create_response_from_buffer(res->body_len, res->body, MHD_RESPMEM_MUST_FREE);
        if (r)
            res->body = NULL; /* libmicrohttpd frees it */
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            res->content_type ? res->content_type : "application/json");
    if (res->header_name[0])
        MHD_add_response_header(r, res->header_name, res->header_value);
    if (c->impl->stopping)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    log_request(c, res->status, res->body_len);
    enum MHD_Result ok = MHD_queue_response(c->mhd, (unsigned)res->status, r);
    MHD_destroy_response(r);
    c->answered = 1;
    return ok;
}

/* ------------------------------------------------------------------ */
/* libmicrohttpd callbacks                                             */

/* Appends a piece of the body; past the limit only counts it. */
static int body_append(struct http_conn *c, const char *data, size_t len)
{
    c->body_seen += len;
    if (c->body_over || c->body_len + len > c->body_limit) {
        c->body_over = 1;
        free(c->body);
        c->body = NULL;
        c->body_len = c->body_cap = 0;
        return 0;
    }
    if (c->body_len + len > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + len)
            cap *= 2;
        if (cap > c->body_limit)
            cap = c->body_limit;
        uint8_t *nb = realloc(c->body, cap);
        if (!nb)
            return -ENOMEM;
        c->body = nb;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, len);
    c->body_len += len;
    return 0;
}

/* 1 if a refused request's body is on its way and small enough to be
 * read and discarded: it has one (Content-Length > 0 or chunked), the
 * client does not wait for "100 Continue" (then our answer replaces the
 * body), and it is at most DISCARD_MAX. */
static int body_coming(struct http_conn *c)
{
    const char *expect = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_EXPECT);
    if (expect && strcasecmp(expect, "100-continue") == 0)
        return 0;
    const char *cl = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        unsigned long long n = strtoull(cl, NULL, 10);
        return n > 0 && n <= DISCARD_MAX;
    }
    return MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND,
                                       MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/* Step 1: route, authenticate, check the announced size.  0 to go on
 * reading the body, -1 when c->res holds the answer. */
static int on_headers(struct http_conn *c, const char *url, const char *method)
{
    struct server *srv = c->impl->srv;
    char allow[128];
    int status;

    if (c->impl->stopping) {
        http_error(&c->res, 503, "server shutting down");
        return -1;
    }
    struct path_parts parts = {0};
    c->route = http_route_find(method, url, &parts, &status, allow, sizeof(allow));
    c->req.id = parts.id;
    c->req.key = parts.key;
    c->req.key_len = parts.key_len;
    if (!c->route) {
        if (status == 405) {
            http_error(&c->res, 405, "method %s not allowed on %s (allowed: %s)", method, url,
                       allow);
            snprintf(c->res.header_name, sizeof(c->res.header_name), "Allow");
            snprintf(c->res.header_value, sizeof(c->res.header_value), "%s", allow);
        } else {
            http_error(&c->res, 404, "no such route: %s %s", method, url);
        }
        return -1;
    }
    if (c->route->roles != ROLES_NONE && authenticate(c) < 0)
        return -1;

    c->body_limit = c->route->max_body == HTTP_BODY_UPLOAD ? srv->cfg.max_upload
                    : c->route->max_body                 ? c->route->max_body
                                                         : srv->cfg.max_json_body;
    const char *cl = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        /* libmicrohttpd already refused a malformed Content-Length;
         * strtoull saturates on overflow, which is "too large" too. */
        unsigned long long n = strtoull(cl, NULL, 10);
        if (n > c->body_limit) {
            http_error(&c->res, 413, "body of %llu bytes is over this route's limit of %zu bytes",
                       n, c->body_limit);
            return -1;
        }
        /* Sized for the announced body, but only up to 1 MiB ahead of
         * the bytes really arriving: many connections that announce
         * large bodies and send nothing must not reserve memory. */
        size_t first = n < (1u << 20) ? (size_t)n : (1u << 20);
        if (first > 0) {
            c->body = malloc(first);
            if (!c->body) {
                http_error(&c->res, 500, "out of memory for a body of %llu bytes", n);
                return -1;
            }
            c->body_cap = first;
        }
    }
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mhd, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct http_impl *impl = cls;
    struct http_conn *c = *con_cls;
    (void)version;

    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return MHD_NO;
        *con_cls = c;
        c->impl = impl;
        c->mhd = mhd;
        c->start_ns = mono_ns();
        c->req.srv = impl->srv;
        c->req.method = method;
        c->req.path = url;
        c->req.conn = c;
        c->req.body = (const uint8_t *)"";
        pthread_mutex_lock(&impl->lock);
        impl->inflight++;
        c->counted = 1;
        pthread_mutex_unlock(&impl->lock);
        if (on_headers(c, url, method) < 0) {
            if (!body_coming(c))
                return http_send_response(c);
            /* Refused, but the client is sending a body regardless:
             * answering now would close the socket under it, and it
             * would see a reset instead of our answer.  So its body is
             * read and thrown away, and the answer sent after it. */
            c->deferred = 1;
        }
        return MHD_YES;
    }
    if (c->answered) {
        /* Answered early; libmicrohttpd discards what still comes. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (c->deferred) {
        if (*upload_data_size) {
            /* Past DISCARD_MAX (a chunked body that never ends) the
             * connection is dropped instead. */
            c->body_seen += *upload_data_size;
            *upload_data_size = 0;
            return c->body_seen > DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        return http_send_response(c);
    }
    if (*upload_data_size) {
        int rc = body_append(c, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (rc < 0)
            return MHD_NO;
        /* A body that never ends would be read forever just to be
         * refused: past DISCARD_MAX, drop the connection. */
        if (c->body_over && c->body_seen - c->body_len > DISCARD_MAX)
            return MHD_NO;
        return MHD_YES;
    }

    /* The body is complete, or a suspended request was resumed. */
    if (c->suspended) {
        c->suspended = 0;
    } else {
        if (c->body_over) {
            http_error(&c->res, 413, "body of %zu bytes is over this route's limit of %zu bytes",
                       c->body_seen, c->body_limit);
            return http_send_response(c);
        }
        c->req.body = c->body ? c->body : (const uint8_t *)"";
        c->req.body_len = c->body_len;
        c->req.content_type =
            MHD_lookup_connection_value(mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        c->req.content_encoding =
            MHD_lookup_connection_value(mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING);
    }
    return http_run_handler(c);
}

static void on_completed(void *cls, struct MHD_Connection *mhd, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_impl *impl = cls;
    struct http_conn *c = *con_cls;
    (void)mhd;
    (void)toe;
    if (!c)
        return;
    *con_cls = NULL;
    pthread_mutex_lock(&impl->lock);
    if (c->on_list)
        http_waiter_remove(impl, c);
    if (c->counted && --impl->inflight == 0)
        pthread_cond_broadcast(&impl->idle);
    pthread_mutex_unlock(&impl->lock);
    free(c->req.state);
    free(c->res.body);
    free(c->body);
    free(c);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    fprintf(stderr, "sonded: http: %s\n", msg);
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */

int http_start(struct server *srv, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char port[16];
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", srv->cfg.listen_port);
    int grc = getaddrinfo(srv->cfg.listen_host[0] ? srv->cfg.listen_host : NULL, port, &hints,
                          &ai);
    if (grc != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", srv->cfg.listen_host,
                 gai_strerror(grc));
        return -EINVAL;
    }

    struct http_impl *impl = calloc(1, sizeof(*impl));
    if (!impl) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    impl->srv = srv;
    impl->listen_fd = MHD_INVALID_SOCKET;
    pthread_mutex_init(&impl->lock, NULL);
    cond_init_monotonic(&impl->wake);
    cond_init_monotonic(&impl->idle);
    srv->impl = impl;

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    unsigned threads = srv->cfg.threads > 0 ? (unsigned)srv->cfg.threads : 1;
    impl->daemon = MHD_start_daemon(
        /* The logger first, so that it sees the messages of the options. */
        flags, 0, NULL, NULL, on_request, impl, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, on_completed, impl,
        MHD_OPTION_END);
    int saved = errno;
    freeaddrinfo(ai);
    if (!impl->daemon) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", srv->cfg.listen_host,
                 srv->cfg.listen_port, saved ? strerror(saved) : "libmicrohttpd failed to start");
        http_stop(srv);
        return saved ? -saved : -EIO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(impl->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di && di->port ? di->port : srv->cfg.listen_port;

    int rc = http_longpoll_start(impl);
    if (rc < 0) {
        snprintf(err, errlen, "cannot start the long-poll thread: %s", strerror(-rc));
        http_stop(srv);
        return rc;
    }
    return 0;
}

void http_stop(struct server *srv)
{
    struct http_impl *impl = srv ? srv->impl : NULL;
    if (!impl)
        return;
    if (impl->daemon)
        impl->listen_fd = MHD_quiesce_daemon(impl->daemon);

    pthread_mutex_lock(&impl->lock);
    impl->stopping = 1;
    pthread_cond_signal(&impl->wake); /* resume every waiter, timed out */
    int64_t deadline = mono_ns() / 1000000 + STOP_GRACE_MS;
    while (impl->inflight > 0) {
        int64_t left = deadline - mono_ns() / 1000000;
        if (left <= 0) {
            fprintf(stderr, "sonded: %d request(s) still in flight at shutdown; closing them\n",
                    impl->inflight);
            break;
        }
        cond_wait_ms(&impl->idle, &impl->lock, left);
    }
    pthread_mutex_unlock(&impl->lock);
    http_longpoll_stop(impl);

    if (impl->daemon)
        MHD_stop_daemon(impl->daemon);
    if (impl->listen_fd != MHD_INVALID_SOCKET)
        close(impl->listen_fd);
    pthread_cond_destroy(&impl->wake);
    pthread_cond_destroy(&impl->idle);
    pthread_mutex_destroy(&impl->lock);
    free(impl);
    srv->impl = NULL;
}
