/*
 * task_internal.h — what task.c (the tasks, the queue of finished
 * captures, events, task_drain) and task_watch.c (the watcher thread:
 * scanning spans, taking snapshots) share.  Not for anything else.
 *
 * Ownership.  A capture belongs to the watcher thread while it is taken
 * (its list tq.watching, touched by no one else but a forked child); it
 * moves to the done queue under tq.lock when its call ended, and from
 * there to task_drain, which exports it and hands it to the sink.
 * Everything in tq but `watching` is guarded by tq.lock.
 */
#ifndef SONDE_TASK_INTERNAL_H
#define SONDE_TASK_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "task.h"

/* Kinds of "error" events, each reported at most once per task. */
#define TASK_ERR_THREAD 1u  /* the watcher thread could not be created */
#define TASK_ERR_MEMORY 2u  /* TASK_MEMORY_MAX reached: snapshots dropped */
#define TASK_ERR_EXPORT 4u  /* a capture could not be exported */
#define TASK_ERR_SIGNAL 8u  /* running threads cannot be signalled */
#define TASK_ERR_SPEC 16u   /* the task's parameters are out of range */

#define TASK_EVENTS_MAX 64        /* events waiting for task_drain */
#define TASK_MESSAGE_MAX 512      /* bytes of an event's message, NUL included */
#define TASK_ENDED_MAX 64         /* ids task_end stopped: never restarted */

/* One snapshot of a capture.  Frames live in the capture's pool; two
 * consecutive snapshots with the same stack share them. */
struct task_snap {
    int64_t offset_ns;   /* since the call's start */
    uint32_t frames;     /* index of its first frame in capture.frames */
    uint16_t nframes;
    char state;          /* /proc state letter */
    int32_t syscall;     /* blocked in this system call; -1 none */
};

struct task_capture {
    struct task_capture *next;   /* tq.watching, then the done queue */
    int64_t task_id;
    uint64_t task_gen;           /* the task's incarnation (task_entry.gen) */
    uint64_t key;                /* the span */
    int tid;                     /* its thread */
    int64_t start_ns;            /* CLOCK_REALTIME at the span's begin */
    int64_t interval_ns;         /* the task's frequency */
    int64_t next_ns;             /* the next snapshot instant, CLOCK_REALTIME */
    char interface[SONDE_SPAN_INTERFACE_MAX];
    char trace_id[SONDE_SPAN_TRACE_MAX];
    char thread[16];
    struct task_snap *snaps;
    uint32_t nsnaps, capsnaps;
    uintptr_t *frames;
    uint32_t nframes, capframes;
    uint64_t taken;              /* snapshots taken or missed, kept or not */
    size_t bytes;                /* memory counted in tq.memory */
    int no_signal;               /* never signal its thread (it blocks our
                                    signal, or stopped answering) */
    int timeouts;                /* signals unanswered in a row */
    int64_t end_ns;              /* CLOCK_REALTIME at the call's end */
    int status;
    char peer[SONDE_SPAN_PEER_MAX];
};

struct task_entry {
    struct task_spec spec;
    uint64_t gen;        /* unique per task_set addition */
    int started;         /* "started" sent */
    int expired;         /* its ends_ms passed: stopped by the watcher */
    int in_flight;       /* captures taken, queued or being exported */
    int handed;          /* handed over since spec.captures last changed */
    unsigned errors;     /* TASK_ERR_* reported */
};

struct task_event {
    int64_t task_id;
    char event[8];
    char message[TASK_MESSAGE_MAX];
};

struct task_state {
    pthread_mutex_t lock;
    pthread_cond_t wake;            /* the watcher's sleep (CLOCK_REALTIME) */
    struct task_entry tasks[TASK_MAX];
    size_t ntasks;
    uint64_t version;               /* bumped by every change of tasks[] */
    uint64_t next_gen;
    struct task_capture *done;      /* finished, oldest first */
    struct task_capture **done_tail;
    size_t ndone;
    int captures;                   /* in flight, all tasks */
    size_t memory;                  /* bytes of snapshots held */
    struct task_event events[TASK_EVENTS_MAX];
    size_t ev_head, ev_count;
    int64_t ended[TASK_ENDED_MAX];  /* ring of ids task_end stopped */
    size_t nended;
    struct task_stats stats;
    int running;                    /* the watcher thread exists */
    int stop;                       /* asks it to exit */
    pthread_t thread;
    struct task_capture *watching;  /* the watcher's own list */
    void (*notify)(void);
};

extern struct task_state tq;

/* The task of incarnation gen, or NULL (removed).  tq.lock held. */
struct task_entry *task_find_gen(uint64_t gen);

/* Queues an event (tq.lock held); the agent thread sends it at its next
 * task_drain. */
void task_event_locked(int64_t id, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An "error" event of kind (TASK_ERR_*) for task t, once.  tq.lock held. */
void task_error_locked(struct task_entry *t, unsigned kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Frees a capture that will not be handed over: counted as discarded,
 * its memory and in-flight slot given back.  tq.lock held. */
void task_capture_discard_locked(struct task_capture *c);

/* Frees a capture's memory (no accounting). */
void task_capture_free(struct task_capture *c);

/* The watcher thread (task_watch.c), started by task_set with every
 * signal blocked. */
void *task_watch_main(void *arg);

#endif
