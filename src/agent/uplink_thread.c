/*
 * uplink_thread.c — the "sonde-uplink" thread: the one place the agent
 * talks to sonded (docs/agent-protocol.md).  It registers, long-polls for
 * Profile Now requests and settings, heartbeats, and creates, completes
 * and uploads the outbox's sessions (uplink.c); everything it shares with
 * the rest of the process is in uplink_internal.h under U.lock, which it
 * never holds across a call into libcurl.
 *
 * libcurl's multi interface, with at most two transfers in flight: the
 * long-poll, and one "outbox" transfer (register, heartbeat, session
 * create, PATCH, upload, stop — heartbeat first when due, then the oldest
 * session's next step), so a slow upload delays a heartbeat but never the
 * poll: a Profile Now still arrives within milliseconds.  The thread
 * sleeps in curl_multi_poll() until a socket is ready, the next timed
 * event (heartbeat, a retry, the exit deadline) or curl_multi_wakeup()
 * from a thread that queued work.  Every transfer has CURLOPT_NOSIGNAL, a
 * 3 s connect timeout and an overall timeout (poll: its timeout_s + 5 s;
 * upload 30 s; others 10 s), and CURLOPT_QUICK_EXIT so that abandoning one
 * never waits for a resolver thread: no server behaviour can wedge it.
 * Its sockets are close-on-exec and tracked in U.sockets (for fork).
 *
 * Failures.  5xx, 429, 408, a network error or a timeout is retried after
 * a backoff (1 s doubling to 30 s, ±20 % jitter; the poll and the outbox
 * each keep their own).  401/403 means the token is wrong: logged with the
 * server's message and retried every 30 s, nothing dropped.  404 or 409 on
 * poll, heartbeat or session create means the server no longer knows this
 * agent (restarted on another store, or replaced): register again; each
 * registration has a generation number (U.gens), and a session whose
 * server id belongs to an older one is created again (same start_ms)
 * before it is completed.  404 on PATCH or upload (the session itself is
 * gone) creates it again, at most RECREATE_MAX times.  Any other 4xx means
 * the server will never take the request: the session is dropped,
 * counted, and the server's message logged.  The log says when the server
 * stops answering and when it is back, once each.
 *
 * Exit.  Once U.stopping is set the poll is abandoned and no heartbeat
 * sent; ended sessions are sent with no backoff (the first failure ends
 * the flush: a server that is down will not come back within the bound;
 * an unregistered link tries to register once), then stop is POSTed.
 * Each transfer's timeout is capped by U.stop_deadline_ms, and the loop
 * leaves at that deadline whatever is in flight.
 */
#include "uplink_curl.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "sonde.h"
#include "threads.h"
#include "uplink_internal.h"

#define CONNECT_TIMEOUT_MS 3000
#define CONTROL_TIMEOUT_MS 10000 /* register, heartbeat, create, PATCH, stop */
#define UPLOAD_TIMEOUT_MS 30000
#define POLL_SLACK_MS 5000       /* beyond the poll's own timeout_s */
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define IDLE_WAKE_MS 5000        /* longest sleep without a reason */
#define ANSWER_MAX (1u << 20)    /* largest answer body we read */
#define RECREATE_MAX 3           /* 404s on a session before it is dropped */
#define HEARTBEAT_S_DEFAULT 10
#define POLL_TIMEOUT_S_DEFAULT 10

/* ------------------------------------------------------------------ */
/* Settings and the process's start                                    */

/* v's integer value clamped to [lo, hi], or def when v is not an integer. */
static int int_in(json_t *v, int lo, int hi, int def)
{
    if (!json_is_integer(v))
        return def;
    json_int_t x = json_integer_value(v);
    return x < lo ? lo : x > hi ? hi : (int)x;
}

static int bool_or(json_t *v, int def)
{
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static void parse_trigger(json_t *o, struct trigger_setting *t)
{
    t->enabled = bool_or(json_object_get(o, "enabled"), t->enabled);
    t->threshold = int_in(json_object_get(o, "threshold"), 1, 100, t->threshold);
    t->duration_s = int_in(json_object_get(o, "duration_s"), 1, 86400, t->duration_s);
    t->cooldown_s = int_in(json_object_get(o, "cooldown_s"), 0, 86400, t->cooldown_s);
}

/* The protocol's settings object (agent-protocol §1) over the defaults:
 * a field missing or of the wrong type keeps its default. */
static void parse_settings(json_t *o, struct agent_settings *s)
{
    uplink_default_settings(s);
    json_t *trig = json_object_get(o, "triggers");
    parse_trigger(json_object_get(trig, "cpu"), &s->cpu);
    parse_trigger(json_object_get(trig, "memory"), &s->memory);
    json_t *ds = json_object_get(o, "default_sampling");
    s->sampling_enabled = bool_or(json_object_get(ds, "enabled"), s->sampling_enabled);
    s->sampling_window_s = int_in(json_object_get(ds, "window_s"), 1, 86400, s->sampling_window_s);
    s->sampling_period_s = int_in(json_object_get(ds, "period_s"), 1, 86400, s->sampling_period_s);
}

/* Reads a small /proc file into buf (NUL-terminated).  Bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* When this process started (ms since the epoch): /proc/self/stat's
 * starttime (clock ticks after boot) placed on the wall clock through
 * CLOCK_BOOTTIME; fallback if that cannot be read. */
static int64_t process_started_ms(int64_t fallback)
{
    char buf[1024];
    if (read_small("/proc/self/stat", buf, sizeof buf) < 0)
        return fallback;
    /* Field 22; field 2, the command, may hold spaces and parentheses, so
     * count from the last ')'. */
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    long hz = sysconf(_SC_CLK_TCK);
    if (!p || hz <= 0)
        return fallback;
    unsigned long long ticks = strtoull(p + 1, NULL, 10);
    int64_t boot_ms = uplink_clock_ms(CLOCK_REALTIME) - uplink_clock_ms(CLOCK_BOOTTIME);
    int64_t ms = boot_ms + (int64_t)(ticks * 1000 / (unsigned long long)hz);
    return ms > 0 && ms <= uplink_clock_ms(CLOCK_REALTIME) ? ms : fallback;
}

/* ------------------------------------------------------------------ */
/* Transfers                                                           */

enum xfer_kind { X_REGISTER, X_HEARTBEAT, X_POLL, X_CREATE, X_PATCH, X_UPLOAD, X_STOP };
static const char *const xfer_name[] = {"register", "heartbeat", "poll", "session create",
                                        "session update", "upload", "stop"};

struct xfer {
    enum xfer_kind kind;
    CURL *h;
    struct curl_slist *hdrs;
    char *body;                /* JSON sent (ours) */
    char *answer;              /* body received, NUL-terminated */
    size_t answer_len, answer_cap;
    uint64_t handle;           /* the record, for create/PATCH/upload */
    int64_t session_id;        /* the server's, for PATCH/upload */
    uint64_t gen;              /* registration it was made under */
    int64_t started_ms;
    char err[CURL_ERROR_SIZE];
};

/* What the thread alone knows. */
struct link {
    CURLM *multi;
    struct xfer *poll, *out;   /* in flight */
    uint64_t gen;              /* the current registration's (U.gens) */
    int registered;
    int64_t agent_id, cursor, settings_version;
    int heartbeat_s, poll_timeout_s;
    int64_t started_ms;        /* process start, for register */
    int64_t register_at_ms;    /* monotonic: register_delay_ms passed */
    int64_t next_register_ms, next_heartbeat_ms, next_poll_ms, next_outbox_ms;
    int out_backoff_ms, poll_backoff_ms; /* 0 = not failing */
    int server_down;           /* logged as unreachable, not yet back */
    int auth_logged;           /* 401/403 logged for this outage */
    int old_server;            /* refuses dropped_uploads in heartbeats */
    int stopping;
    int gave_up;               /* stopping: a failure ended the flush */
    int stop_done;
    unsigned seed;
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

static void xfer_free(struct link *L, struct xfer *x)
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

/* Starts a transfer: method on path (below the server URL), with body
 * (JSON, taken over) or raw bytes (borrowed: they must outlive the
 * transfer), within timeout_ms (capped by the exit deadline).  NULL if it
 * could not be set up (out of memory): the caller retries later. */
static struct xfer *xfer_start(struct link *L, enum xfer_kind kind, const char *method,
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
        xfer_free(L, x);
        return NULL;
    }
    CURL *h = x->h;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
    curl_easy_setopt(h, CURLOPT_QUICK_EXIT, 1L);
#endif
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
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
        xfer_free(L, x);
        return NULL;
    }
    return x;
}

/* JSON text of o (consumed), or NULL. */
static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* The server's {"error": "..."} message, or a stand-in. */
static const char *server_message(const struct xfer *x, char *buf, size_t cap)
{
    snprintf(buf, cap, "(no message)");
    json_t *o = x->answer ? json_loadb(x->answer, x->answer_len, 0, NULL) : NULL;
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

/* The next backoff delay of *b (1 s doubling to 30 s), jittered. */
static int64_t backoff(struct link *L, int *b)
{
    *b = *b ? (*b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *b * 2) : BACKOFF_MIN_MS;
    return jitter(L, *b);
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */

static int start_register(struct link *L)
{
    if (!L->started_ms) {
        pthread_mutex_lock(&U.lock);
        int64_t fallback = U.start_real_ms;
        pthread_mutex_unlock(&U.lock);
        L->started_ms = process_started_ms(fallback);
    }
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:I}", "app", U.cfg.app, "instance",
                          U.cfg.instance, "pid", (json_int_t)getpid(), "agent_version",
                          SONDE_VERSION, "cmdline", U.cfg.cmdline, "started_ms",
                          (json_int_t)L->started_ms);
    char *body = dump(o);
    if (!body)
        return -ENOMEM;
    L->out = xfer_start(L, X_REGISTER, "POST", "/api/v1/agent/register", body, NULL, 0,
                        CONTROL_TIMEOUT_MS);
    return L->out ? 0 : -ENOMEM;
}

static int start_heartbeat(struct link *L)
{
    pthread_mutex_lock(&U.lock);
    double cpu = U.cpu_pct, mem = U.mem_pct;
    json_int_t dropped = (json_int_t)U.stats.uploads_dropped;
    pthread_mutex_unlock(&U.lock);
    json_t *o = json_pack("{s:I}", "agent_id", (json_int_t)L->agent_id);
    if (o && !L->old_server)
        json_object_set_new(o, "dropped_uploads", json_integer(dropped));
    /* Ranges of the protocol: a reading past them is clamped, not refused. */
    if (o && cpu >= 0)
        json_object_set_new(o, "cpu_pct", json_real(cpu > 100000 ? 100000 : cpu));
    if (o && mem >= 0)
        json_object_set_new(o, "mem_pct", json_real(mem > 100 ? 100 : mem));
    char *body = dump(o);
    if (!body)
        return -ENOMEM;
    L->out = xfer_start(L, X_HEARTBEAT, "POST", "/api/v1/agent/heartbeat", body, NULL, 0,
                        CONTROL_TIMEOUT_MS);
    return L->out ? 0 : -ENOMEM;
}

static int start_poll(struct link *L)
{
    char path[256];
    snprintf(path, sizeof path,
             "/api/v1/agent/poll?agent_id=%" PRId64 "&cursor=%" PRId64
             "&settings_version=%" PRId64 "&timeout_s=%d",
             L->agent_id, L->cursor, L->settings_version, L->poll_timeout_s);
    L->poll = xfer_start(L, X_POLL, "GET", path, NULL, NULL, 0,
                         (int64_t)L->poll_timeout_s * 1000 + POLL_SLACK_MS);
    return L->poll ? 0 : -ENOMEM;
}

static int start_stop(struct link *L)
{
    char *body = dump(json_pack("{s:I}", "agent_id", (json_int_t)L->agent_id));
    if (!body)
        return -ENOMEM;
    L->out = xfer_start(L, X_STOP, "POST", "/api/v1/agent/stop", body, NULL, 0,
                        CONTROL_TIMEOUT_MS);
    return L->out ? 0 : -ENOMEM;
}

static int64_t clamp_i64(uint64_t v)
{
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

static int clamp_duration(int d)
{
    return d < 1 ? 1 : d > 86400 ? 86400 : d;
}

/* POST sessions body for r.  U.lock held. */
static json_t *create_body_locked(const struct link *L, const struct uplink_record *r)
{
    const struct uplink_session *m = &r->meta;
    json_t *types = json_array();
    if (types && (m->types & SONDE_PROFILE_CPU || !(m->types & SONDE_PROFILE_WALL)))
        json_array_append_new(types, json_string("cpu"));
    if (types && (m->types & SONDE_PROFILE_WALL))
        json_array_append_new(types, json_string("wall"));
    json_t *o = json_pack("{s:I,s:s,s:o,s:I,s:i}", "agent_id", (json_int_t)L->agent_id,
                          "triggered_by", m->triggered_by, "profile_types", types, "start_ms",
                          (json_int_t)(m->start_ms > 0 ? m->start_ms : 0), "duration_s",
                          clamp_duration(m->duration_s));
    if (o && m->request_id > 0)
        json_object_set_new(o, "request_id", json_integer(m->request_id));
    return o;
}

/* PATCH body: the final metadata; state failed when there is no profile. */
static json_t *patch_body_locked(const struct uplink_record *r)
{
    const struct uplink_session *m = &r->meta;
    json_t *o = json_pack("{s:i,s:I,s:I}", "duration_s", clamp_duration(m->duration_s),
                          "samples", (json_int_t)clamp_i64(m->samples), "traces",
                          (json_int_t)clamp_i64(m->traces));
    if (o && m->cpu_pct >= 0)
        json_object_set_new(o, "cpu_pct", json_real(m->cpu_pct > 100000 ? 100000 : m->cpu_pct));
    if (o && m->mem_pct >= 0)
        json_object_set_new(o, "mem_pct", json_real(m->mem_pct > 100 ? 100 : m->mem_pct));
    if (o && !r->gz)
        json_object_set_new(o, "state", json_string("failed"));
    return o;
}

/* Starts the next step of the oldest record that has one.  1 if a
 * transfer started, 0 if no record has a step to take, -ENOMEM. */
static int start_record_step(struct link *L)
{
    pthread_mutex_lock(&U.lock);
    struct uplink_record *r;
    enum xfer_kind kind = X_CREATE;
    for (r = U.head; r; r = r->next) {
        if (r->server_id == 0 || r->gen != L->gen) {
            /* At exit only sessions that ended are worth creating. */
            if (!L->stopping || r->ended) {
                kind = X_CREATE;
                break;
            }
        } else if (r->ended && (!r->patched || r->gz)) {
            kind = r->patched ? X_UPLOAD : X_PATCH;
            break;
        }
    }
    if (!r) {
        pthread_mutex_unlock(&U.lock);
        return 0;
    }
    char path[128];
    char *body = NULL;
    const void *raw = NULL;
    size_t raw_len = 0;
    if (kind == X_CREATE) {
        snprintf(path, sizeof path, "/api/v1/agent/sessions");
        body = dump(create_body_locked(L, r));
    } else if (kind == X_PATCH) {
        snprintf(path, sizeof path, "/api/v1/agent/sessions/%" PRId64, r->server_id);
        body = dump(patch_body_locked(r));
    } else {
        snprintf(path, sizeof path, "/api/v1/agent/sessions/%" PRId64 "/profile", r->server_id);
        raw = r->gz;
        raw_len = r->len;
        r->busy = 1; /* gz is read by curl until the transfer ends */
    }
    uint64_t handle = r->handle;
    int64_t session_id = r->server_id;
    pthread_mutex_unlock(&U.lock);

    if (kind != X_UPLOAD && !body)
        return -ENOMEM;
    static const char *const method[] = {[X_CREATE] = "POST", [X_PATCH] = "PATCH",
                                         [X_UPLOAD] = "PUT"};
    L->out = xfer_start(L, kind, method[kind], path, body, raw, raw_len,
                        kind == X_UPLOAD ? UPLOAD_TIMEOUT_MS : CONTROL_TIMEOUT_MS);
    if (L->out) {
        L->out->handle = handle;
        L->out->session_id = session_id;
        return 1;
    }
    if (kind == X_UPLOAD) {
        pthread_mutex_lock(&U.lock);
        if ((r = uplink_record_find_locked(handle)))
            r->busy = 0;
        pthread_mutex_unlock(&U.lock);
    }
    return -ENOMEM;
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */

/* How an answer is handled, by its status. */
enum verdict {
    V_OK,      /* 2xx */
    V_RETRY,   /* network error, timeout, 5xx, 429, 408: try again later */
    V_AUTH,    /* 401/403: the token; retry slowly, drop nothing */
    V_GONE,    /* 404/409 */
    V_REFUSED, /* any other 4xx: never going to be taken */
};

static enum verdict judge(CURLcode cc, long status)
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

static size_t records_waiting(void)
{
    pthread_mutex_lock(&U.lock);
    size_t n = U.n_records;
    pthread_mutex_unlock(&U.lock);
    return n;
}

/* Logs when the server stops or starts answering. */
static void note_reachable(struct link *L, const struct xfer *x, CURLcode cc, long status)
{
    enum verdict v = judge(cc, status);
    if (v == V_RETRY) {
        pthread_mutex_lock(&U.lock);
        U.stats.requests_failed++;
        pthread_mutex_unlock(&U.lock);
        if (!L->server_down) {
            L->server_down = 1;
            char why[CURL_ERROR_SIZE + 32];
            if (cc != CURLE_OK)
                snprintf(why, sizeof why, "%s", x->err[0] ? x->err : curl_easy_strerror(cc));
            else
                snprintf(why, sizeof why, "HTTP %ld", status);
            agent_log("uplink: %s %s failed (%s): retrying with backoff, %zu session(s) waiting",
                      U.cfg.server, xfer_name[x->kind], why, records_waiting());
        }
    } else if (L->server_down) {
        L->server_down = 0;
        agent_log("uplink: %s answers again", U.cfg.server);
    }
    if (v != V_AUTH)
        L->auth_logged = 0;
}

/* The server no longer knows this agent: register again. */
static void lost_agent(struct link *L, const struct xfer *x, long status)
{
    if (!L->registered || x->gen != L->gen)
        return;
    char msg[256];
    agent_log("uplink: %s answered %ld (%s): registering again", xfer_name[x->kind], status,
              server_message(x, msg, sizeof msg));
    L->registered = 0;
    L->next_register_ms = uplink_mono_ms();
    L->out_backoff_ms = 0;
    pthread_mutex_lock(&U.lock);
    U.stats.registered = 0;
    pthread_mutex_unlock(&U.lock);
}

static void log_auth(struct link *L, const struct xfer *x, long status)
{
    if (L->auth_logged)
        return;
    L->auth_logged = 1;
    char msg[256];
    agent_log("uplink: %s refused with %ld (%s): check SONDE_TOKEN (an agent token); retrying "
              "every %d s",
              xfer_name[x->kind], status, server_message(x, msg, sizeof msg),
              BACKOFF_MAX_MS / 1000);
}

/* Queues settings and Profile Now requests for uplink_take_work. */
static void deliver(json_t *settings, json_t *requests)
{
    struct agent_settings s;
    if (json_is_object(settings))
        parse_settings(settings, &s);
    int dropped = 0;
    pthread_mutex_lock(&U.lock);
    if (json_is_object(settings)) {
        U.work.settings = s;
        U.work.settings_changed = 1;
    }
    size_t i;
    json_t *r;
    json_array_foreach(requests, i, r) {
        json_t *id = json_object_get(r, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 1)
            continue;
        if (U.work.n_profile_now >= UPLINK_MAX_PROFILE_NOW) {
            dropped++;
            continue;
        }
        U.work.profile_now[U.work.n_profile_now].id = json_integer_value(id);
        U.work.profile_now[U.work.n_profile_now].duration_s =
            int_in(json_object_get(r, "duration_s"), 1, 3600, 120);
        U.work.n_profile_now++;
    }
    if (U.work.settings_changed || U.work.n_profile_now)
        atomic_store_explicit(&U.work_flag, 1, memory_order_release);
    pthread_mutex_unlock(&U.lock);
    if (dropped)
        agent_log("uplink: %d Profile Now request(s) dropped: %d already waiting", dropped,
                  UPLINK_MAX_PROFILE_NOW);
}

static void on_register(struct link *L, struct xfer *x, enum verdict v, long status, int64_t now)
{
    char msg[256];
    json_t *o = v == V_OK ? json_loadb(x->answer ? x->answer : "", x->answer_len, 0, NULL) : NULL;
    json_t *id = json_object_get(o, "agent_id");
    if (v == V_OK && !(json_is_integer(id) && json_integer_value(id) > 0)) {
        agent_log("uplink: register answered without an agent id: retrying");
        v = V_RETRY;
    }
    if (v != V_OK) {
        json_decref(o);
        if (v == V_AUTH)
            log_auth(L, x, status);
        else if (v != V_RETRY)
            agent_log("uplink: register refused with %ld (%s): retrying every %d s", status,
                      server_message(x, msg, sizeof msg), BACKOFF_MAX_MS / 1000);
        if (v != V_RETRY)
            L->out_backoff_ms = BACKOFF_MAX_MS;
        L->next_register_ms = now + backoff(L, &L->out_backoff_ms);
        if (L->stopping)
            L->gave_up = 1;
        return;
    }
    int64_t was = L->agent_id;
    L->registered = 1;
    L->agent_id = json_integer_value(id);
    L->heartbeat_s = int_in(json_object_get(o, "heartbeat_s"), 1, 3600, HEARTBEAT_S_DEFAULT);
    L->poll_timeout_s = int_in(json_object_get(o, "poll_timeout_s"), 1, 60,
                               POLL_TIMEOUT_S_DEFAULT);
    json_t *c = json_object_get(o, "cursor"), *sv = json_object_get(o, "settings_version");
    L->cursor = json_is_integer(c) ? json_integer_value(c) : 0;
    L->settings_version = json_is_integer(sv) ? json_integer_value(sv) : 0;
    L->out_backoff_ms = L->poll_backoff_ms = 0;
    L->next_heartbeat_ms = now + (int64_t)L->heartbeat_s * 1000;
    L->next_poll_ms = now;
    L->next_outbox_ms = now;
    deliver(json_object_get(o, "settings"), NULL);
    json_decref(o);

    pthread_mutex_lock(&U.lock);
    L->gen = ++U.gens;
    U.stats.registered = 1;
    U.stats.agent_id = L->agent_id;
    size_t again = 0;
    for (struct uplink_record *r = U.head; r; r = r->next)
        if (r->server_id) {
            again++;
            r->server_id = 0; /* created under the old id: create it anew */
            r->patched = 0;
        }
    pthread_mutex_unlock(&U.lock);
    /* A poll of the old registration would only answer 404. */
    if (L->poll) {
        xfer_free(L, L->poll);
        L->poll = NULL;
    }
    if (was)
        agent_log("uplink: registered again with %s as agent %" PRId64 " (was %" PRId64
                  "); %zu session(s) to create again",
                  U.cfg.server, L->agent_id, was, again);
    else
        agent_log("uplink: registered with %s as agent %" PRId64 " (app %s, instance %s)",
                  U.cfg.server, L->agent_id, U.cfg.app, U.cfg.instance);
}

static void on_poll(struct link *L, struct xfer *x, enum verdict v, long status, int64_t now)
{
    if (v == V_OK && x->gen == L->gen && L->registered) {
        json_t *o = json_loadb(x->answer ? x->answer : "", x->answer_len, 0, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            L->next_poll_ms = now + backoff(L, &L->poll_backoff_ms);
            return;
        }
        json_t *c = json_object_get(o, "cursor"), *sv = json_object_get(o, "settings_version");
        json_t *settings = json_object_get(o, "settings");
        json_t *reqs = json_object_get(o, "profile_now");
        if (json_is_integer(c) && json_integer_value(c) > L->cursor)
            L->cursor = json_integer_value(c);
        if (json_is_integer(sv))
            L->settings_version = json_integer_value(sv);
        int news = json_is_object(settings) || json_array_size(reqs) > 0;
        deliver(settings, reqs);
        json_decref(o);
        L->poll_backoff_ms = 0;
        /* The server answers early only with news; an early empty answer
         * (a proxy?) must not turn the poll into a busy loop. */
        L->next_poll_ms = news || now - x->started_ms >= 500 ? now : now + 1000;
        return;
    }
    if (v == V_OK) {
        L->next_poll_ms = now; /* an answer for an older registration */
    } else if (v == V_GONE) {
        lost_agent(L, x, status);
        L->next_poll_ms = now;
    } else {
        if (v == V_AUTH) {
            log_auth(L, x, status);
            L->poll_backoff_ms = BACKOFF_MAX_MS;
        } else if (v == V_REFUSED) {
            char msg[256];
            agent_log("uplink: poll refused with %ld (%s)", status,
                      server_message(x, msg, sizeof msg));
            L->poll_backoff_ms = BACKOFF_MAX_MS;
        }
        L->next_poll_ms = now + backoff(L, &L->poll_backoff_ms);
    }
}

/* A 404 on a session's PATCH or upload: the server lost it. */
static void session_gone_locked(struct uplink_record *r, int *dropped)
{
    if (++r->recreated > RECREATE_MAX) {
        uplink_record_drop_locked(r, 1);
        *dropped = 1;
        return;
    }
    r->server_id = 0;
    r->patched = 0;
}

static void on_record(struct link *L, struct xfer *x, enum verdict v, long status, int64_t now)
{
    char msg[256] = "";
    int64_t sid = 0;
    if (v == V_OK && x->kind == X_CREATE) {
        json_t *o = json_loadb(x->answer ? x->answer : "", x->answer_len, 0, NULL);
        json_t *id = json_object_get(o, "id");
        if (json_is_integer(id) && json_integer_value(id) > 0)
            sid = json_integer_value(id);
        else
            v = V_RETRY;
        json_decref(o);
    }
    if (v == V_GONE && x->kind == X_CREATE) {
        lost_agent(L, x, status); /* the agent is unknown or stopped */
        return;
    }
    if (v == V_REFUSED || v == V_GONE)
        server_message(x, msg, sizeof msg);

    enum { NOTHING, DONE, DROPPED } outcome = NOTHING;
    size_t bytes = 0;
    int64_t server_id = 0;
    pthread_mutex_lock(&U.lock);
    struct uplink_record *r = uplink_record_find_locked(x->handle);
    if (r) {
        r->busy = 0;
        server_id = r->server_id;
        bytes = r->len;
        /* A PATCH of a session that was created anew meanwhile (another
         * registration) no longer says anything about the record. */
        if (x->kind == X_PATCH && x->session_id != r->server_id)
            r = NULL;
    }
    if (r && v == V_OK) {
        if (x->kind == X_CREATE) {
            r->server_id = sid;
            r->gen = x->gen;
        } else if (x->kind == X_PATCH) {
            r->patched = 1;
            if (!r->gz) {
                uplink_record_drop_locked(r, 0); /* told "failed": nothing more to send */
                outcome = DONE;
            }
        } else {
            uplink_record_drop_locked(r, 0);
            U.stats.uploads++;
            outcome = DONE;
        }
    } else if (r && v == V_GONE) {
        if (x->kind == X_UPLOAD && status == 409) { /* already stored */
            uplink_record_drop_locked(r, 0);
            U.stats.uploads++;
            outcome = DONE;
        } else if (status == 404 && x->session_id == r->server_id) {
            int dropped = 0;
            session_gone_locked(r, &dropped);
            outcome = dropped ? DROPPED : NOTHING;
        } else if (status != 404) {
            uplink_record_drop_locked(r, 1);
            outcome = DROPPED;
        }
    } else if (r && v == V_REFUSED) {
        uplink_record_drop_locked(r, 1);
        outcome = DROPPED;
    }
    uint64_t total = U.stats.uploads;
    pthread_mutex_unlock(&U.lock);

    if (v == V_RETRY || v == V_AUTH) {
        if (v == V_AUTH) {
            log_auth(L, x, status);
            L->out_backoff_ms = BACKOFF_MAX_MS;
        }
        L->next_outbox_ms = now + backoff(L, &L->out_backoff_ms);
        if (L->stopping)
            L->gave_up = 1;
        return;
    }
    L->out_backoff_ms = 0;
    L->next_outbox_ms = now;
    if (outcome == DONE && x->kind == X_UPLOAD)
        agent_log("uplink: session %" PRId64 " uploaded (%zu bytes%s; %" PRIu64 " so far)",
                  server_id, bytes, status == 409 ? ", already stored" : "", total);
    else if (outcome == DROPPED)
        agent_log("uplink: %s refused with %ld (%s): session dropped", xfer_name[x->kind],
                  status, msg);
}

/* A transfer ended: its outcome applied, the transfer freed. */
static void finish(struct link *L, struct xfer *x, CURLcode cc)
{
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    int64_t now = uplink_mono_ms();
    enum verdict v = judge(cc, status);
    note_reachable(L, x, cc, status);
    if (x == L->poll)
        L->poll = NULL;
    if (x == L->out)
        L->out = NULL;
    switch (x->kind) {
    case X_REGISTER:
        on_register(L, x, v, status, now);
        break;
    case X_POLL:
        on_poll(L, x, v, status, now);
        break;
    case X_HEARTBEAT:
        if (v == V_GONE)
            lost_agent(L, x, status);
        else if (v == V_AUTH)
            log_auth(L, x, status);
        else if (v == V_REFUSED && !L->old_server) {
            /* A server older than dropped_uploads refuses the field: keep
             * the heartbeats (and their metrics) without it. */
            char msg[256];
            if (strstr(server_message(x, msg, sizeof msg), "dropped_uploads")) {
                L->old_server = 1;
                L->next_heartbeat_ms = now;
                agent_log("uplink: the server does not take dropped_uploads (%s): heartbeats "
                          "go without it",
                          msg);
            }
        }
        break;
    case X_CREATE:
    case X_PATCH:
    case X_UPLOAD:
        on_record(L, x, v, status, now);
        break;
    case X_STOP:
        L->stop_done = 1;
        if (v == V_OK)
            agent_log("uplink: agent %" PRId64 " stopped", L->agent_id);
        break;
    }
    xfer_free(L, x);
}

/* ------------------------------------------------------------------ */
/* The thread                                                          */

static int curl_ok;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    char msg[256];
    curl_ok = uplink_curl_load(msg, sizeof msg) == 0;
    if (!curl_ok)
        agent_log("uplink: %s", msg);
}

/* Sleeps until the register delay has passed or the link is asked to
 * stop, before libcurl is touched at all: a process that execs or exits
 * within the delay never initializes libcurl or OpenSSL.  Returns 1 when
 * stopping with nothing to send. */
static int wait_register_delay(const struct link *L)
{
    for (;;) {
        pthread_mutex_lock(&U.lock);
        int stopping = U.stopping || atomic_load(&U.abandon);
        int ended = stopping && uplink_outbox_has_ended_locked();
        pthread_mutex_unlock(&U.lock);
        if (stopping)
            return !ended;
        int64_t left = L->register_at_ms - uplink_mono_ms();
        if (left <= 0)
            return 0;
        struct timespec ts = {0, (left > 20 ? 20 : left) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Starts the next outbox transfer, if any is due.  Returns 1 when, at
 * exit, nothing is left to do. */
static int next_outbox(struct link *L, int64_t now)
{
    if (L->stopping) {
        if (L->gave_up || L->stop_done)
            return 1;
        if (!L->registered) {
            /* One attempt, so ended sessions get their chance. */
            pthread_mutex_lock(&U.lock);
            int want = uplink_outbox_has_ended_locked();
            pthread_mutex_unlock(&U.lock);
            if (!want || L->next_register_ms == INT64_MAX)
                return 1;
            L->next_register_ms = INT64_MAX;
            return start_register(L) == 0 ? 0 : 1;
        }
        int rc = start_record_step(L);
        if (rc != 0)
            return rc < 0;
        return start_stop(L) == 0 ? 0 : 1;
    }
    if (!L->registered) {
        if (now >= L->next_register_ms && now >= L->register_at_ms && start_register(L) != 0)
            L->next_register_ms = now + backoff(L, &L->out_backoff_ms);
        return 0;
    }
    if (now >= L->next_heartbeat_ms) {
        L->next_heartbeat_ms = now + (int64_t)L->heartbeat_s * 1000;
        if (start_heartbeat(L) == 0)
            return 0;
    }
    if (now >= L->next_outbox_ms && start_record_step(L) < 0)
        L->next_outbox_ms = now + backoff(L, &L->out_backoff_ms);
    return 0;
}

/* How long curl_multi_poll may sleep: until the next timed event.  Called
 * right after next_outbox() and the poll's start, so a time already past
 * means that its work was started or that there was none (an outbox with
 * nothing to send): only future times count, else an idle link would spin.
 * New work from other threads comes with a wakeup. */
static int sleep_ms(const struct link *L, int64_t now, int64_t deadline)
{
    int64_t next = now + IDLE_WAKE_MS;
#define SOONER(t) if ((t) > now && (t) < next) next = (t)
    if (L->stopping) {
        SOONER(deadline);
    } else if (!L->out) {
        if (!L->registered) {
            SOONER(L->next_register_ms > L->register_at_ms ? L->next_register_ms
                                                           : L->register_at_ms);
        } else {
            SOONER(L->next_heartbeat_ms);
            SOONER(L->next_outbox_ms);
        }
    }
    if (!L->stopping && L->registered && !L->poll)
        SOONER(L->next_poll_ms);
#undef SOONER
    return (int)(next - now);
}

void *uplink_thread_main(void *arg)
{
    (void)arg;
    prctl(PR_SET_NAME, "sonde-uplink", 0, 0, 0);
    threads_register_self(SLOT_AGENT);

    struct link L;
    memset(&L, 0, sizeof L);
    pthread_mutex_lock(&U.lock);
    int delay = U.cfg.register_delay_ms > 0 ? U.cfg.register_delay_ms : 0;
    L.register_at_ms = U.start_mono_ms + delay;
    int64_t start_real = U.start_real_ms;
    pthread_mutex_unlock(&U.lock);
    L.seed = (unsigned)getpid() ^ (unsigned)start_real ^ (unsigned)(uintptr_t)&L;
    L.heartbeat_s = HEARTBEAT_S_DEFAULT;
    L.poll_timeout_s = POLL_TIMEOUT_S_DEFAULT;

    if (wait_register_delay(&L))
        goto out_nocurl;
    pthread_mutex_lock(&U.curl_lock); /* released only around curl_multi_poll */
    pthread_once(&curl_once, curl_init_once);
    if (curl_ok)
        L.multi = curl_multi_init();
    if (!L.multi) {
        agent_log("uplink: cannot initialize libcurl: no server link");
        goto out;
    }
    pthread_mutex_lock(&U.lock);
    U.multi = L.multi;
    pthread_mutex_unlock(&U.lock);

    for (;;) {
        int64_t now = uplink_mono_ms();
        pthread_mutex_lock(&U.lock);
        int stopping = U.stopping;
        int64_t deadline = U.stop_deadline_ms;
        pthread_mutex_unlock(&U.lock);
        if (atomic_load(&U.abandon) || (stopping && now >= deadline))
            break;
        if (stopping && !L.stopping) {
            L.stopping = 1;
            xfer_free(&L, L.poll); /* no news is wanted any more */
            L.poll = NULL;
        }
        if (!L.out && next_outbox(&L, now))
            break;
        if (!L.stopping && L.registered && !L.poll && now >= L.next_poll_ms &&
            start_poll(&L) != 0)
            L.next_poll_ms = now + backoff(&L, &L.poll_backoff_ms);

        int running = 0, done = 0;
        curl_multi_perform(L.multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(L.multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            char *priv = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
            struct xfer *x = (struct xfer *)priv;
            CURLcode cc = m->data.result;
            if (x) {
                finish(&L, x, cc);
                done = 1;
            }
        }
        if (done)
            continue; /* start what the answers made due */
        int wait_ms = sleep_ms(&L, uplink_mono_ms(), deadline);
        pthread_mutex_unlock(&U.curl_lock);
        curl_multi_poll(L.multi, NULL, 0, wait_ms, NULL);
        pthread_mutex_lock(&U.curl_lock);
    }

out:
    xfer_free(&L, L.poll);
    xfer_free(&L, L.out);
    pthread_mutex_lock(&U.lock);
    U.multi = NULL;
    U.stats.registered = 0;
    /* Records an abandoned upload was reading are free to go now. */
    for (struct uplink_record *r = U.head; r; r = r->next)
        r->busy = 0;
    pthread_mutex_unlock(&U.lock);
    if (L.multi)
        curl_multi_cleanup(L.multi);
    pthread_mutex_unlock(&U.curl_lock);
out_nocurl:
    atomic_store(&U.thread_alive, 0);
    return NULL;
}

