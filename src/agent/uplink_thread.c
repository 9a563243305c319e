/*
 * uplink_thread.c — the "sonde-uplink" thread: the one place the agent
 * talks to sonded (docs/agent-protocol.md).  It registers, long-polls for
 * Profile Now requests, settings and tasks (uplink_poll.c), heartbeats,
 * creates, completes and uploads the outbox's sessions (uplink.c), and
 * sends the task outbox's events and captures (uplink_tasks.c);
 * everything it shares with the rest of the process is in
 * uplink_internal.h under U.lock, which it never holds across a call
 * into libcurl.
 *
 * libcurl's multi interface (transfers: uplink_http.c), with at most
 * three transfers in flight: the long-poll; one "outbox" transfer
 * (register, heartbeat, session create, PATCH, upload, stop — heartbeat
 * first when due, then the oldest session's next step); and one task
 * transfer (the task outbox's oldest item's next step).  So a slow upload
 * delays a heartbeat but never the poll nor a capture's claim: a Profile
 * Now or a task still arrives within milliseconds.  The thread sleeps in
 * curl_multi_poll() until a socket is ready, the next timed event
 * (heartbeat, a retry, the exit deadline) or curl_multi_wakeup() from a
 * thread that queued work.  Timeouts: connect 3 s; poll its timeout_s +
 * 5 s; profile and snapshot uploads 30 s; others 10 s.
 *
 * Failures.  5xx, 429, 408, a network error or a timeout is retried after
 * a backoff (1 s doubling to 30 s, ±20 % jitter; the poll, the outbox and
 * the task outbox each keep their own).  401/403 means the token is
 * wrong: logged with the server's message and retried every 30 s, nothing
 * dropped.  404 or 409 on poll, heartbeat or session create means the
 * server no longer knows this agent (restarted on another store, or
 * replaced): register again; each registration has a generation number
 * (U.gens), and a session whose server id belongs to an older one is
 * created again (same start_ms) before it is completed.  404 on PATCH or
 * upload (the session itself is gone) creates it again, at most
 * RECREATE_MAX times.  Any other 4xx means the server will never take the
 * request: the session is dropped, counted, and the server's message
 * logged.  (Task items: uplink_tasks.c.)
 *
 * Exit.  Once U.stopping is set the poll is abandoned and no heartbeat
 * sent; ended sessions and task items are sent with no backoff (the first
 * failure ends the flush: a server that is down will not come back within
 * the bound; an unregistered link tries to register once), then stop is
 * POSTed once both outboxes are empty.  Each transfer's timeout is capped
 * by U.stop_deadline_ms, and the loop leaves at that deadline whatever is
 * in flight.
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
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "sonde.h"
#include "threads.h"
#include "uplink_internal.h"

#define IDLE_WAKE_MS 5000        /* longest sleep without a reason */
#define RECREATE_MAX 3           /* 404s on a session before it is dropped */
#define HEARTBEAT_S_DEFAULT 10
#define POLL_TIMEOUT_S_DEFAULT 10


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
    char *body = uplink_dump(o);
    if (!body)
        return -ENOMEM;
    L->out = uplink_xfer_start(L, X_REGISTER, "POST", "/api/v1/agent/register", body, NULL, 0,
                               UPLINK_CONTROL_TIMEOUT_MS);
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
    char *body = uplink_dump(o);
    if (!body)
        return -ENOMEM;
    L->out = uplink_xfer_start(L, X_HEARTBEAT, "POST", "/api/v1/agent/heartbeat", body, NULL,
                               0, UPLINK_CONTROL_TIMEOUT_MS);
    return L->out ? 0 : -ENOMEM;
}

static int start_stop(struct link *L)
{
    char *body = uplink_dump(json_pack("{s:I}", "agent_id", (json_int_t)L->agent_id));
    if (!body)
        return -ENOMEM;
    L->out = uplink_xfer_start(L, X_STOP, "POST", "/api/v1/agent/stop", body, NULL, 0,
                               UPLINK_CONTROL_TIMEOUT_MS);
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
        body = uplink_dump(create_body_locked(L, r));
    } else if (kind == X_PATCH) {
        snprintf(path, sizeof path, "/api/v1/agent/sessions/%" PRId64, r->server_id);
        body = uplink_dump(patch_body_locked(r));
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
    L->out = uplink_xfer_start(L, kind, method[kind], path, body, raw, raw_len,
                               kind == X_UPLOAD ? UPLINK_UPLOAD_TIMEOUT_MS
                                                : UPLINK_CONTROL_TIMEOUT_MS);
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

static void on_register(struct link *L, struct xfer *x, enum verdict v, long status, int64_t now)
{
    char msg[256];
    json_t *o = v == V_OK ? uplink_answer_json(x) : NULL;
    json_t *id = json_object_get(o, "agent_id");
    if (v == V_OK && !(json_is_integer(id) && json_integer_value(id) > 0)) {
        agent_log("uplink: register answered without an agent id: retrying");
        v = V_RETRY;
    }
    if (v != V_OK) {
        json_decref(o);
        if (v == V_AUTH)
            uplink_log_auth(L, x, status);
        else if (v != V_RETRY)
            agent_log("uplink: register refused with %ld (%s): retrying every %d s", status,
                      uplink_server_message(x, msg, sizeof msg), UPLINK_BACKOFF_MAX_MS / 1000);
        if (v != V_RETRY)
            L->out_backoff_ms = UPLINK_BACKOFF_MAX_MS;
        L->next_register_ms = now + uplink_backoff(L, &L->out_backoff_ms);
        if (L->stopping)
            L->gave_up = 1;
        return;
    }
    int64_t was = L->agent_id;
    L->registered = 1;
    L->agent_id = json_integer_value(id);
    L->heartbeat_s =
        uplink_int_in(json_object_get(o, "heartbeat_s"), 1, 3600, HEARTBEAT_S_DEFAULT);
    L->poll_timeout_s =
        uplink_int_in(json_object_get(o, "poll_timeout_s"), 1, 60, POLL_TIMEOUT_S_DEFAULT);
    json_t *c = json_object_get(o, "cursor"), *sv = json_object_get(o, "settings_version");
    L->cursor = json_is_integer(c) ? json_integer_value(c) : 0;
    L->settings_version = json_is_integer(sv) ? json_integer_value(sv) : 0;
    /* Tasks start again from version 0: the first poll brings the
     * whole list, and tasks refused under the old registration may be
     * other tasks with the same ids now (another store). */
    L->tasks_version = 0;
    L->tasks_fresh = 1;
    L->n_ended = 0;
    L->out_backoff_ms = L->poll_backoff_ms = L->task_backoff_ms = 0;
    L->next_heartbeat_ms = now + (int64_t)L->heartbeat_s * 1000;
    L->next_poll_ms = now;
    L->next_outbox_ms = now;
    L->next_task_ms = now;
    uplink_deliver(json_object_get(o, "settings"), NULL);
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
        uplink_xfer_free(L, L->poll);
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
        json_t *o = uplink_answer_json(x);
        json_t *id = json_object_get(o, "id");
        if (json_is_integer(id) && json_integer_value(id) > 0)
            sid = json_integer_value(id);
        else
            v = V_RETRY;
        json_decref(o);
    }
    if (v == V_GONE && x->kind == X_CREATE) {
        uplink_lost_agent(L, x, status); /* the agent is unknown or stopped */
        return;
    }
    if (v == V_REFUSED || v == V_GONE)
        uplink_server_message(x, msg, sizeof msg);

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

    if (uplink_outbox_next(L, x, v, status, now, &L->out_backoff_ms, &L->next_outbox_ms))
        return;
    if (outcome == DONE && x->kind == X_UPLOAD)
        agent_log("uplink: session %" PRId64 " uploaded (%zu bytes%s; %" PRIu64 " so far)",
                  server_id, bytes, status == 409 ? ", already stored" : "", total);
    else if (outcome == DROPPED)
        agent_log("uplink: %s refused with %ld (%s): session dropped", uplink_xfer_name[x->kind],
                  status, msg);
}

/* A transfer ended: its outcome applied, the transfer freed. */
static void finish(struct link *L, struct xfer *x, CURLcode cc)
{
    long status = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    int64_t now = uplink_mono_ms();
    enum verdict v = uplink_judge(cc, status);
    uplink_note_reachable(L, x, cc, status);
    if (x == L->poll)
        L->poll = NULL;
    if (x == L->out)
        L->out = NULL;
    if (x == L->task)
        L->task = NULL;
    switch (x->kind) {
    case X_REGISTER:
        on_register(L, x, v, status, now);
        break;
    case X_POLL:
        uplink_on_poll(L, x, v, status, now);
        break;
    case X_HEARTBEAT:
        if (v == V_GONE)
            uplink_lost_agent(L, x, status);
        else if (v == V_AUTH)
            uplink_log_auth(L, x, status);
        else if (v == V_REFUSED && !L->old_server) {
            /* A server older than dropped_uploads refuses the field: keep
             * the heartbeats (and their metrics) without it. */
            char msg[256];
            if (strstr(uplink_server_message(x, msg, sizeof msg), "dropped_uploads")) {
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
    case X_EVENT:
    case X_CLAIM:
    case X_SNAPSHOTS:
        uplink_on_task(L, x, v, status, now);
        break;
    }
    uplink_xfer_free(L, x);
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
        int ended = stopping && (uplink_outbox_has_ended_locked() || uplink_task_items_locked());
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
            /* One attempt, so ended sessions and task items get their
             * chance. */
            pthread_mutex_lock(&U.lock);
            int want = uplink_outbox_has_ended_locked() || uplink_task_items_locked();
            pthread_mutex_unlock(&U.lock);
            if (!want || L->next_register_ms == INT64_MAX)
                return 1;
            L->next_register_ms = INT64_MAX;
            return start_register(L) == 0 ? 0 : 1;
        }
        int rc = start_record_step(L);
        if (rc != 0)
            return rc < 0;
        pthread_mutex_lock(&U.lock);
        size_t items = uplink_task_items_locked();
        pthread_mutex_unlock(&U.lock);
        if (L->task || items)
            return 0; /* stop goes last: the task outbox is still sending */
        return start_stop(L) == 0 ? 0 : 1;
    }
    if (!L->registered) {
        if (now >= L->next_register_ms && now >= L->register_at_ms && start_register(L) != 0)
            L->next_register_ms = now + uplink_backoff(L, &L->out_backoff_ms);
        return 0;
    }
    if (now >= L->next_heartbeat_ms) {
        L->next_heartbeat_ms = now + (int64_t)L->heartbeat_s * 1000;
        if (start_heartbeat(L) == 0)
            return 0;
    }
    if (now >= L->next_outbox_ms && start_record_step(L) < 0)
        L->next_outbox_ms = now + uplink_backoff(L, &L->out_backoff_ms);
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
    if (!L->stopping && L->registered && !L->task)
        SOONER(L->next_task_ms);
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
            uplink_xfer_free(&L, L.poll); /* no news is wanted any more */
            L.poll = NULL;
        }
        if (!L.out && next_outbox(&L, now))
            break;
        if (!L.stopping && L.registered && !L.poll && now >= L.next_poll_ms &&
            uplink_start_poll(&L) != 0)
            L.next_poll_ms = now + uplink_backoff(&L, &L.poll_backoff_ms);
        /* At exit the task outbox is flushed without backoff, as the
         * sessions are; the first failure ends the flush. */
        if (L.registered && !L.task && !L.gave_up && (L.stopping || now >= L.next_task_ms) &&
            uplink_task_step(&L) < 0) {
            L.next_task_ms = now + uplink_backoff(&L, &L.task_backoff_ms);
            if (L.stopping)
                L.gave_up = 1;
        }

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
    uplink_xfer_free(&L, L.poll);
    uplink_xfer_free(&L, L.out);
    uplink_xfer_free(&L, L.task);
    pthread_mutex_lock(&U.lock);
    U.multi = NULL;
    U.stats.registered = 0;
    /* What an abandoned upload was reading is free to go now. */
    for (struct uplink_record *r = U.head; r; r = r->next)
        r->busy = 0;
    for (struct uplink_task_item *it = U.task_head; it; it = it->next)
        it->busy = 0;
    pthread_mutex_unlock(&U.lock);
    if (L.multi)
        curl_multi_cleanup(L.multi);
    pthread_mutex_unlock(&U.curl_lock);
out_nocurl:
    atomic_store(&U.thread_alive, 0);
    return NULL;
}

