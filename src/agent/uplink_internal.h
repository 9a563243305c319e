/*
 * uplink_internal.h — what the parts of the server link share:
 *   uplink.c         the process's side: the session outbox, work for the
 *                    agent thread, start, stop, fork;
 *   uplink_tasks.c   active profiling: the task outbox (events and
 *                    captures, both sides) and the app's task list;
 *   uplink_thread.c  the "sonde-uplink" thread: its loop, register,
 *                    heartbeat, sessions, stop;
 *   uplink_poll.c    the long-poll and what it brings (settings, Profile
 *                    Now, tasks);
 *   uplink_http.c    transfers over libcurl's multi interface and how
 *                    their answers are judged.
 * What the process shares lives in one struct (U) under one mutex,
 * U.lock; what the thread alone knows in struct link.  Nothing outside
 * these files includes this.
 */
#ifndef SONDE_UPLINK_INTERNAL_H
#define SONDE_UPLINK_INTERNAL_H

#include "uplink_curl.h"
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "uplink.h"

#define UPLINK_SOCKETS_MAX 8  /* open sockets tracked for fork */
#define UPLINK_MAX_EVENTS 64  /* task events waiting (uplink.h) */
#define UPLINK_ENDED_MAX 32   /* tasks remembered as refused, per registration */

#define UPLINK_CONNECT_TIMEOUT_MS 3000
#define UPLINK_CONTROL_TIMEOUT_MS 10000 /* register, heartbeat, create, PATCH, stop,
                                           task events and claims */
#define UPLINK_UPLOAD_TIMEOUT_MS 30000  /* profiles and snapshots */
#define UPLINK_BACKOFF_MIN_MS 1000
#define UPLINK_BACKOFF_MAX_MS 30000

/* One session in the outbox, from uplink_session_begin until the server
 * has all of it (or it is dropped).  Its steps: created on the server
 * (server_id, under registration gen) → ended (meta final, gz attached)
 * → PATCHed → profile uploaded → freed. */
struct uplink_record {
    struct uplink_record *next;
    uint64_t handle;           /* ours, > 0 */
    struct uplink_session meta;
    int64_t server_id;         /* 0 until created under registration gen */
    uint64_t gen;              /* U.gens at that registration */
    int ended;                 /* uplink_session_end seen */
    int patched;
    int busy;                  /* an upload reads gz: never freed under it */
    int recreated;             /* 404s on PATCH/upload so far */
    void *gz;                  /* gzipped pprof (ours), NULL = failed */
    size_t len;
};

/* One entry of the task outbox, sent strictly in order: an event for a
 * task's log, or a capture — claimed (POST tasks/{id}/captures), then,
 * when granted, its snapshots uploaded (PUT captures/{id}/snapshots). */
struct uplink_task_item {
    struct uplink_task_item *next;
    uint64_t handle;           /* ours, > 0 */
    int64_t task_id;
    int is_capture;
    char event[8];             /* "started", "stopped", "error" */
    char message[512];         /* "" = none */
    struct uplink_capture cap;
    int64_t capture_id;        /* the server's, once claimed; 0 before */
    int busy;                  /* the upload reads gz: never freed under it */
    void *gz;                  /* gzipped pprof (ours) */
    size_t len;
};

struct uplink_state {
    pthread_mutex_t lock;
    /* Held by the thread around every libcurl call but curl_multi_poll
     * (which only waits), and taken before lock by uplink_atfork_prepare:
     * fork() then never copies libcurl in the middle of a call.  A child
     * copied while the thread was, say, inside curl_global_init would
     * find libcurl's global spinlock held forever.  Order: curl_lock,
     * then lock. */
    pthread_mutex_t curl_lock;
    int curl_unsafe;           /* this process was forked without curl_lock:
                                  libcurl may be mid-call, no link here */
    int configured;            /* cfg holds the last uplink_start's */
    struct uplink_config cfg;  /* read by the thread without the lock:
                                  written only while no thread runs */
    int started;               /* a thread was started and not yet joined */
    pthread_t thread;
    atomic_int thread_alive;   /* the thread has not returned yet */
    CURLM *multi;              /* the thread's, for wakeups; NULL if none */
    int stopping;              /* uplink_stop: flush, then stop */
    int64_t stop_deadline_ms;  /* monotonic */
    atomic_int abandon;        /* quit now */
    int64_t start_mono_ms;     /* when this thread was asked for */
    int64_t start_real_ms;

    struct uplink_record *head, *tail; /* the session outbox, oldest first */
    size_t n_records;
    size_t bytes;              /* sum of len over records and task items
                                  holding a gz */
    uint64_t next_handle;
    uint64_t gens;             /* registrations by every thread so far */

    struct uplink_task_item *task_head, *task_tail; /* the task outbox */
    size_t n_events, n_captures;
    /* The app's running tasks as last known: the last poll's list minus
     * the tasks the server has refused since (what work.tasks holds when
     * tasks_changed). */
    int n_tasks;
    struct task_spec tasks[UPLINK_MAX_TASKS];

    atomic_int work_flag;      /* work holds something */
    struct uplink_work work;

    double cpu_pct, mem_pct;   /* latest, for heartbeats; < 0 = none */
    struct uplink_stats stats;

    int sockets[UPLINK_SOCKETS_MAX]; /* open by our transfers; -1 = free */
};

extern struct uplink_state uplink_state;
/* Its short name in the uplink's files. */
#define U uplink_state

static inline int64_t uplink_clock_ms(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t uplink_mono_ms(void)
{
    return uplink_clock_ms(CLOCK_MONOTONIC);
}

/* ---- the process's side (uplink.c, uplink_tasks.c), U.lock held ---- */

/* Replaces every byte of s that does not start a valid UTF-8 sequence
 * with '?' (jansson refuses invalid strings).  Lengths do not change. */
void uplink_utf8_clean(char *s);
/* Wakes the thread out of curl_multi_poll. */
void uplink_wake_locked(void);
struct uplink_record *uplink_record_find_locked(uint64_t handle);
/* Unlinks and frees r; counts it in uploads_dropped when count. */
void uplink_record_drop_locked(struct uplink_record *r, int count);
/* Whether some record has ended (has something to send at exit). */
int uplink_outbox_has_ended_locked(void);
/* Frees every task item and forgets the task list (stop, fork, start). */
void uplink_task_items_free_locked(void);
/* Task items waiting (events and captures). */
size_t uplink_task_items_locked(void);

/* ---- the thread's side ---------------------------------------------- */

enum xfer_kind {
    X_REGISTER, X_HEARTBEAT, X_POLL, X_CREATE, X_PATCH, X_UPLOAD, X_STOP,
    X_EVENT, X_CLAIM, X_SNAPSHOTS,
};
extern const char *const uplink_xfer_name[];

/* One HTTP transfer (uplink_http.c). */
struct xfer {
    enum xfer_kind kind;
    CURL *h;
    struct curl_slist *hdrs;
    char *body;                /* JSON sent (ours) */
    char *answer;              /* body received, NUL-terminated */
    size_t answer_len, answer_cap;
    uint64_t handle;           /* the record or task item it serves */
    int64_t session_id;        /* the server's, for PATCH/upload */
    uint64_t gen;              /* registration it was made under */
    int64_t started_ms;
    char err[CURL_ERROR_SIZE];
};

/* What the thread alone knows. */
struct link {
    CURLM *multi;
    struct xfer *poll, *out;   /* in flight: the long-poll; register,
                                  heartbeat, a session step or stop */
    struct xfer *task;         /* in flight: the task outbox's next step */
    uint64_t gen;              /* the current registration's (U.gens) */
    int registered;
    int64_t agent_id, cursor, settings_version;
    int64_t tasks_version;     /* the poll's; 0 after each registration */
    int tasks_fresh;           /* no poll answer yet since registering */
    int64_t ended[UPLINK_ENDED_MAX]; /* tasks the server refused (a ring):
                                        left out of later lists */
    int n_ended;
    int heartbeat_s, poll_timeout_s;
    int64_t started_ms;        /* process start, for register */
    int64_t register_at_ms;    /* monotonic: register_delay_ms passed */
    int64_t next_register_ms, next_heartbeat_ms, next_poll_ms, next_outbox_ms;
    int64_t next_task_ms;
    int out_backoff_ms, poll_backoff_ms, task_backoff_ms; /* 0 = not failing */
    int server_down;           /* logged as unreachable, not yet back */
    int auth_logged;           /* 401/403 logged for this outage */
    int old_server;            /* refuses dropped_uploads in heartbeats */
    int stopping;
    int gave_up;               /* stopping: a failure ended the flush */
    int stop_done;
    unsigned seed;
};

/* How an answer is handled, by its status. */
enum verdict {
    V_OK,      /* 2xx */
    V_RETRY,   /* network error, timeout, 5xx, 429, 408: try again later */
    V_AUTH,    /* 401/403: the token; retry slowly, drop nothing */
    V_GONE,    /* 404/409 */
    V_REFUSED, /* any other 4xx: never going to be taken */
};

/* uplink_http.c.  Starts a transfer: method on path (below the server
 * URL), with json (taken over) or raw bytes (borrowed: they must outlive
 * the transfer), within timeout_ms (capped by the exit deadline).  NULL
 * if it could not be set up (out of memory): the caller retries later. */
struct xfer *uplink_xfer_start(struct link *L, enum xfer_kind kind, const char *method,
                               const char *path, char *json, const void *raw, size_t raw_len,
                               int64_t timeout_ms);
void uplink_xfer_free(struct link *L, struct xfer *x);
/* JSON text of o (consumed), or NULL. */
char *uplink_dump(json_t *o);
/* The answer parsed as JSON (a new reference), or NULL. */
json_t *uplink_answer_json(const struct xfer *x);
/* The server's {"error": "..."} message, or a stand-in, in buf. */
const char *uplink_server_message(const struct xfer *x, char *buf, size_t cap);
enum verdict uplink_judge(CURLcode cc, long status);
/* The next backoff delay of *b (1 s doubling to 30 s), ±20 % jitter. */
int64_t uplink_backoff(struct link *L, int *b);
/* Logs when the server stops or starts answering; counts failures. */
void uplink_note_reachable(struct link *L, const struct xfer *x, CURLcode cc, long status);
/* The server no longer knows this agent: register again. */
void uplink_lost_agent(struct link *L, const struct xfer *x, long status);
/* A 401/403, logged once per outage. */
void uplink_log_auth(struct link *L, const struct xfer *x, long status);
/* After a step of an outbox (sessions: out_backoff_ms/next_outbox_ms;
 * tasks: task_backoff_ms/next_task_ms) ended with verdict v: on V_RETRY
 * or V_AUTH (logged; longest backoff) its next step waits *backoff_ms
 * more (and a stopping link gives up): 1.  Else the backoff is reset and
 * the next step may go at once: 0. */
int uplink_outbox_next(struct link *L, const struct xfer *x, enum verdict v, long status,
                       int64_t now, int *backoff_ms, int64_t *next_ms);

/* uplink_poll.c.  v's integer value clamped to [lo, hi], or def when v is
 * not an integer. */
int uplink_int_in(json_t *v, int lo, int hi, int def);
/* Queues settings and Profile Now requests for uplink_take_work. */
void uplink_deliver(json_t *settings, json_t *requests);
int uplink_start_poll(struct link *L);
void uplink_on_poll(struct link *L, struct xfer *x, enum verdict v, long status, int64_t now);

/* uplink_tasks.c, the thread's side.  The poll's new list of tasks
 * (specs[0..n), validated): those the server refused this registration
 * are left out; when it differs from the last, it goes to the agent
 * thread (work.tasks_changed). */
void uplink_tasks_replace(struct link *L, const struct task_spec *specs, int n);
/* Starts the task outbox's next step (the oldest item's) on L->task.
 * 1 if a transfer started, 0 if nothing waits, -ENOMEM. */
int uplink_task_step(struct link *L);
void uplink_on_task(struct link *L, struct xfer *x, enum verdict v, long status, int64_t now);

/* The thread's body (uplink_thread.c), started by uplink.c with every
 * signal blocked; it returns once U.abandon is set or, after U.stopping,
 * when the flush is done or U.stop_deadline_ms has passed. */
void *uplink_thread_main(void *arg);

#endif
