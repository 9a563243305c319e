/*
 * uplink_http.c — the server link's transfers: each request of
 * docs/agent-protocol.md is one libcurl easy handle on the link thread's
 * multi handle, set up here with the guest's rules, and each answer is
 * judged here the same way for every kind of request.
 *
 * Every transfer has CURLOPT_NOSIGNAL, a 3 s connect timeout and an
 * overall timeout (the caller's, capped by the exit deadline once the
 * link is stopping), and CURLOPT_QUICK_EXIT so that abandoning one never
 * waits for a resolver thread: no server behaviour can wedge the thread.
 * Its sockets are close-on-exec and tracked in U.sockets, so a forked
 * child can close its copies.  Answers are read up to ANSWER_MAX bytes.
 *
 * Verdicts: 2xx ok; a network error, a timeout, 5xx, 408 or 429 retried
 * after a backoff (1 s doubling to 30 s, ±20 % jitter); 401/403 the
 * token (logged once per outage, retried every 30 s); 404/409 "gone"
 * (each caller says what that means for its request); any other 4xx
 * refused for good.  The log says when the server stops answering and
 * when it is back, once each.
 *
 * Link thread only (uplink_internal.h); U.lock is taken briefly, never
 * across a libcurl call.
 */
#include "uplink_curl.h"
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "sonde.h"
#include "uplink_internal.h"

#define ANSWER_MAX (1u << 20) /* largest answer body we read */

const char *const uplink_xfer_name[] = {
    [X_REGISTER] = "register",     [X_HEARTBEAT] = "heartbeat",   [X_POLL] = "poll",
    [X_CREATE] = "session create", [X_PATCH] = "session update",  [X_UPLOAD] = "upload",
    [X_STOP] = "stop",             [X_EVENT] = "task event",      [X_CLAIM] = "capture claim",
    [X_SNAPSHOTS] = "snapshots upload",
};

static size_t on_answer(char *data, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;
    if (len > ANSWER_MAX - x->answer_len)
        return 0; /* too large: the transfer fails */
    if (x->answer_len + len + 1 > x->answer_cap) {
        size_t cap = x->answer_cap ? x->answer_cap : 1024;
        while (cap < x->answer_len + len + 1)
            cap *= 2;
        char *a = realloc(x->answer, cap);
        if (!a)
            return 0;
        x->answer = a;
        x->answer_cap = cap;
    }
    memcpy(x->answer + x->answer_len, data, len);
    x->answer_len += len;
    x->answer[x->answer_len] = '\0';
    return len;
}

/* Our sockets: close-on-exec (a host that forks and execs does not hand
 * them on) and tracked, so a forked child can close its copies. */
static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)arg;
    (void)purpose;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    pthread_mutex_lock(&U.lock);
    for (int i = 0; i < UPLINK_SOCKETS_MAX; i++)
        if (U.sockets[i] < 0) {
            U.sockets[i] = fd;
            break;
        }
    pthread_mutex_unlock(&U.lock);
    return fd;
}

static int close_socket(void *arg, curl_socket_t fd)
{
    (void)arg;
    pthread_mutex_lock(&U.lock);
    for (int i = 0; i < UPLINK_SOCKETS_MAX; i++)
        if (U.sockets[i] == fd)
            U.sockets[i] = -1;
    pthread_mutex_unlock(&U.lock);
    return close(fd);
}

void uplink_xfer_free(struct link *L, struct xfer *x)
{
    if (!x)
        return;
    if (x->h) {
        curl_multi_remove_handle(L->multi, x->h);
        curl_easy_cleanup(x->h);
    }
    curl_slist_free_all(x->hdrs);
    free(x->body);
    free(x->answer);
    free(x);
}

static int add_header(struct xfer *x, const char *h)
{
    struct curl_slist *t = curl_slist_append(x->hdrs, h);
    if (!t)
        return -ENOMEM;
    x->hdrs = t;
    return 0;
}

struct xfer *uplink_xfer_start(struct link *L, enum xfer_kind kind, const char *method,
                               const char *path, char *json, const void *raw, size_t raw_len,
                               int64_t timeout_ms)
{
    struct xfer *x = calloc(1, sizeof *x);
    if (!x) {
        free(json);
        return NULL;
    }
    x->kind = kind;
    x->body = json;
    x->gen = L->gen;
    x->started_ms = uplink_mono_ms();
    if (L->stopping) {
        pthread_mutex_lock(&U.lock);
        int64_t left = U.stop_deadline_ms - x->started_ms;
        pthread_mutex_unlock(&U.lock);
        if (left < timeout_ms)
            timeout_ms = left < 1 ? 1 : left;
    }
    char url[sizeof U.cfg.server + 256];
    snprintf(url, sizeof url, "%s%s", U.cfg.server, path);
    char auth[sizeof U.cfg.token + 32];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", U.cfg.token);
    int rc = !(x->h = curl_easy_init()) ? -ENOMEM : 0;
    if (rc == 0 && U.cfg.token[0])
        rc = add_header(x, auth);
    if (rc == 0)
        rc = add_header(x, raw ? "Content-Type: application/octet-stream"
                               : "Content-Type: application/json");
    if (rc == 0) /* no 100-continue round trip before an upload */
        rc = add_header(x, "Expect:");
    if (rc != 0) {
        uplink_xfer_free(L, x);
        return NULL;
    }
    CURL *h = x->h;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
    curl_easy_setopt(h, CURLOPT_QUICK_EXIT, 1L);
#endif
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)UPLINK_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->err);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "sonde-agent/" SONDE_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    if (json || raw) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json ? (const void *)json : raw);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(json ? strlen(json) : raw_len));
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    if (curl_multi_add_handle(L->multi, h) != CURLM_OK) {
        curl_easy_cleanup(h);
        x->h = NULL;
        uplink_xfer_free(L, x);
        return NULL;
    }
    return x;
}

char *uplink_dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

json_t *uplink_answer_json(const struct xfer *x)
{
    return x->answer ? json_loadb(x->answer, x->answer_len, 0, NULL) : NULL;
}

const char *uplink_server_message(const struct xfer *x, char *buf, size_t cap)
{
    snprintf(buf, cap, "(no message)");
    json_t *o = uplink_answer_json(x);
    const char *e = json_string_value(json_object_get(o, "error"));
    if (e)
        snprintf(buf, cap, "%s", e);
    json_decref(o);
    return buf;
}

/* A jittered delay: ms ±20 %. */
static int64_t jitter(struct link *L, int ms)
{
    double f = 0.8 + 0.4 * ((double)rand_r(&L->seed) / RAND_MAX);
    return (int64_t)(ms * f);
}

int64_t uplink_backoff(struct link *L, int *b)
{
    *b = *b ? (*b * 2 > UPLINK_BACKOFF_MAX_MS ? UPLINK_BACKOFF_MAX_MS : *b * 2)
            : UPLINK_BACKOFF_MIN_MS;
    return jitter(L, *b);
}

int uplink_outbox_next(struct link *L, const struct xfer *x, enum verdict v, long status,
                       int64_t now, int *backoff_ms, int64_t *next_ms)
{
    if (v != V_RETRY && v != V_AUTH) {
        *backoff_ms = 0;
        *next_ms = now;
        return 0;
    }
    if (v == V_AUTH) {
        uplink_log_auth(L, x, status);
        *backoff_ms = UPLINK_BACKOFF_MAX_MS;
    }
    *next_ms = now + uplink_backoff(L, backoff_ms);
    if (L->stopping)
        L->gave_up = 1;
    return 1;
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */

enum verdict uplink_judge(CURLcode cc, long status)
{
    if (cc != CURLE_OK || status >= 500 || status == 429 || status == 408 || status < 200)
        return V_RETRY;
    if (status < 300)
        return V_OK;
    if (status == 401 || status == 403)
        return V_AUTH;
    if (status == 404 || status == 409)
        return V_GONE;
    return V_REFUSED;
}

void uplink_note_reachable(struct link *L, const struct xfer *x, CURLcode cc, long status)
{
    enum verdict v = uplink_judge(cc, status);
    if (v == V_RETRY) {
        pthread_mutex_lock(&U.lock);
        U.stats.requests_failed++;
        size_t sessions = U.n_records, items = uplink_task_items_locked();
        pthread_mutex_unlock(&U.lock);
        if (!L->server_down) {
            L->server_down = 1;
            char why[CURL_ERROR_SIZE + 32];
            if (cc != CURLE_OK)
                snprintf(why, sizeof why, "%s", x->err[0] ? x->err : curl_easy_strerror(cc));
            else
                snprintf(why, sizeof why, "HTTP %ld", status);
            agent_log("uplink: %s %s failed (%s): retrying with backoff, %zu session(s) and "
                      "%zu task event(s) or capture(s) waiting",
                      U.cfg.server, uplink_xfer_name[x->kind], why, sessions, items);
        }
    } else if (L->server_down) {
        /* Back: whatever waits out a backoff goes now, not up to 30 s
         * later. */
        L->server_down = 0;
        int64_t now = uplink_mono_ms();
        L->out_backoff_ms = L->poll_backoff_ms = L->task_backoff_ms = 0;
        if (L->next_register_ms > now && L->next_register_ms != INT64_MAX)
            L->next_register_ms = now;
        if (L->next_outbox_ms > now)
            L->next_outbox_ms = now;
        if (L->next_poll_ms > now)
            L->next_poll_ms = now;
        if (L->next_task_ms > now)
            L->next_task_ms = now;
        agent_log("uplink: %s answers again", U.cfg.server);
    }
    if (v != V_AUTH)
        L->auth_logged = 0;
}

void uplink_lost_agent(struct link *L, const struct xfer *x, long status)
{
    if (!L->registered || x->gen != L->gen)
        return;
    char msg[256];
    agent_log("uplink: %s answered %ld (%s): registering again", uplink_xfer_name[x->kind], status,
              uplink_server_message(x, msg, sizeof msg));
    L->registered = 0;
    L->next_register_ms = uplink_mono_ms();
    L->out_backoff_ms = 0;
    pthread_mutex_lock(&U.lock);
    U.stats.registered = 0;
    pthread_mutex_unlock(&U.lock);
}

void uplink_log_auth(struct link *L, const struct xfer *x, long status)
{
    if (L->auth_logged)
        return;
    L->auth_logged = 1;
    char msg[256];
    agent_log("uplink: %s refused with %ld (%s): check SONDE_TOKEN (an agent token); retrying "
              "every %d s",
              uplink_xfer_name[x->kind], status, uplink_server_message(x, msg, sizeof msg),
              UPLINK_BACKOFF_MAX_MS / 1000);
}

