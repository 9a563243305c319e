/*
 * uplink_internal.h — what the two halves of the server link share:
 * uplink.c (the process's side: the outbox, work for the agent thread,
 * start, stop, fork) and uplink_thread.c (the "sonde-uplink" thread that
 * speaks docs/agent-protocol.md).  All of it lives in one struct under
 * one mutex, U.lock; nothing outside these two files includes this.
 */
#ifndef SONDE_UPLINK_INTERNAL_H
#define SONDE_UPLINK_INTERNAL_H

#include "uplink_curl.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "uplink.h"

#define UPLINK_SOCKETS_MAX 8 /* open sockets tracked for fork */

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

    struct uplink_record *head, *tail; /* the outbox, oldest first */
    size_t n_records;
    size_t bytes;              /* sum of len over records holding a gz */
    uint64_t next_handle;
    uint64_t gens;             /* registrations by every thread so far */

    atomic_int work_flag;      /* work holds something */
    struct uplink_work work;

    double cpu_pct, mem_pct;   /* latest, for heartbeats; < 0 = none */
    struct uplink_stats stats;

    int sockets[UPLINK_SOCKETS_MAX]; /* open by our transfers; -1 = free */
};

extern struct uplink_state uplink_state;
/* Its short name in uplink.c and uplink_thread.c. */
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

/* The outbox, U.lock held (uplink.c). */
struct uplink_record *uplink_record_find_locked(uint64_t handle);
/* Unlinks and frees r; counts it in uploads_dropped when count. */
void uplink_record_drop_locked(struct uplink_record *r, int count);
/* Whether some record has ended (has something to send at exit). */
int uplink_outbox_has_ended_locked(void);

/* The thread's body (uplink_thread.c), started by uplink.c with every
 * signal blocked; it returns once U.abandon is set or, after U.stopping,
 * when the flush is done or U.stop_deadline_ms has passed. */
void *uplink_thread_main(void *arg);

#endif
