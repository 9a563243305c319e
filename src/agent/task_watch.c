/*
 * task_watch.c — the task watcher thread ("sonde-task", task.h): finds
 * slow calls of the watched interfaces among the open spans and takes
 * their snapshots on time.
 *
 * One pass (step) every time the watcher wakes:
 *   1. tasks whose ends_ms passed stop ("stopped"); captures whose task
 *      went away are discarded;
 *   2. captures whose span ended are finished: end time, status and peer
 *      from the record's capture mark (span.h, span_rec_ended), queued
 *      for task_drain;
 *   3. the span records are scanned.  A per-record memo (struct seen)
 *      keeps the verdict on the record's current key, so a span's
 *      interface is read and compared once, not at every pass: NONE (not
 *      watched), PENDING (watched: due at start + threshold; marked with
 *      span_rec_watch at first sight, long before it is due, so its end
 *      is stored for us), CAPTURED, or SKIPPED (due, but no capture slot
 *      was free: never taken later);
 *   4. each capture whose instant came gets its snapshot.
 * Then it sleeps until the earliest of: the next scan (threshold / 2,
 * within [5, 100] ms, for the most demanding task), a pending span's due
 * time, a capture's next instant, a task's end — on a condition variable
 * over CLOCK_REALTIME (span starts are CLOCK_REALTIME; futex timeouts are
 * as exact as clock_nanosleep's, and task_set / task_stop can wake it).
 * Its timer slack is 1 ns, so instants are not rounded up by 50 us.
 *
 * Snapshot instants are start + threshold + k * frequency.  A late pass
 * takes the latest instant that has passed and schedules the one after
 * it: missed instants are skipped, never bunched.  A snapshot records
 * its actual time (offset from the span's start), the thread's state
 * from /proc, and its stack:
 *   - blocked (any state but R): wall.h's read of the saved registers
 *     and a copy of its stack — the thread is never interrupted, so its
 *     system call runs undisturbed (if it wakes meanwhile, the snapshot
 *     is dropped, never retried with a signal);
 *   - running (R) and it has run since we first looked (its thread CPU
 *     clock moved): our sampling signal queued to that thread alone
 *     (rt_tgsigqueueinfo, si_code SI_QUEUE, SNAPSHOT_TAG); its handler
 *     unwinds into the snapshot box (sigsafe/sampler.h).  R without
 *     having run may be a thread woken inside poll that has not returned
 *     yet: a signal then would make poll fail with EINTR, so we let it
 *     run (100 us sleeps: it may share our CPU, within the 5 ms) and
 *     look again.  We wait for
 *     the answer up to 5 ms (spinning briefly, then 50 us sleeps), never
 *     holding tq.lock, else withdraw the request and count the snapshot
 *     dropped.  A thread that blocks our signal is never signalled, and
 *     one that left three requests in a row unanswered is not signalled
 *     again (queued signals would pile up).  Between seeing it run
 *     and the signal arriving the thread may have entered a system call:
 *     the window is a few microseconds, and SA_RESTART restarts what can
 *     be restarted.
 * A span that ended meanwhile keeps no snapshot taken after it changed.
 */
#include "task_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "span.h"
#include "threads.h"
#include "wall.h"

_Static_assert(TASK_MAX_FRAMES <= SNAPSHOT_MAX_FRAMES, "the snapshot box holds a whole snapshot");

#define SCAN_MIN_NS 5000000LL         /* scans at least every threshold / 2, */
#define SCAN_MAX_NS 100000000LL       /* bounded to [5, 100] ms */
#define ANSWER_NS 5000000LL           /* a running thread answers within 5 ms */
#define ANSWER_SPIN_NS 20000LL        /* spinning first, then: */
#define ANSWER_STEP_NS 50000L         /* 50 us sleeps */
#define WRITING_MAX_NS 100000000LL    /* a handler mid-write is waited for this long */
#define OFFCPU_STEP_NS 100000L        /* a runnable thread off CPU is looked at again */
#define TIMEOUTS_MAX 3                /* unanswered requests before giving up a thread */
#define INDEX_MASK ((1u << SPAN_INDEX_BITS) - 1)

enum verdict { NONE, PENDING, CAPTURED, SKIPPED };

/* What the watcher knows of one span record's current key. */
struct seen {
    uint64_t key;
    uint64_t version;           /* tq.version the verdict was made under */
    uint64_t task_gen;          /* the task watching it (PENDING..SKIPPED) */
    int64_t due;                /* PENDING: start + threshold, CLOCK_REALTIME */
    struct task_capture *cap;   /* CAPTURED and not finished yet */
    int verdict;
};

struct wtask {
    struct task_spec spec;
    uint64_t gen;
    int expired;
};

struct watcher {
    int pid;
    uint64_t version;
    struct wtask tasks[TASK_MAX];
    size_t ntasks;
    struct seen *seen;
    uint32_t nseen;
    uint8_t *copybuf;           /* WALL_COPY_MAX: blocked threads' stacks */
    uintptr_t pcs[TASK_MAX_FRAMES];
    uint64_t snapshots, dropped; /* since the last fold into tq.stats */
    int notify;                 /* task_drain has something new */
};

static int64_t clock_now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU time thread tid has used (its thread CPU clock, exact to now even
 * while it runs), -1 if it is gone. */
static int64_t thread_cpu_ns(int tid)
{
    /* MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) */
    clockid_t id = (clockid_t)(((unsigned)~tid << 3) | 6u);
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 1 if thread tid blocks signo (its SigBlk mask), or cannot be read. */
static int blocks_signal(int tid, int signo)
{
    char buf[2048];
    if (wall_read_task_file(tid, "status", buf, sizeof buf) < 0)
        return 1;
    const char *p = strstr(buf, "\nSigBlk:");
    if (!p)
        return 1;
    unsigned long long mask = strtoull(p + 8, NULL, 16);
    return signo >= 1 && signo <= 64 && ((mask >> (signo - 1)) & 1);
}

/* 1 if sampler.signo is ours: running threads may be snapshotted. */
static int handler_installed(void)
{
    struct sigaction sa;
    return sampler.signo > 0 && sigaction(sampler.signo, NULL, &sa) == 0 &&
           (sa.sa_flags & SA_SIGINFO) && sa.sa_sigaction == sampler_handler;
}

static struct wtask *wtask_of(struct watcher *w, uint64_t gen)
{
    for (size_t i = 0; i < w->ntasks; i++)
        if (w->tasks[i].gen == gen)
            return &w->tasks[i];
    return NULL;
}

/* ---- the tasks, the captures ----------------------------------------- */

/* Folds the watcher's counters into tq.stats.  tq.lock held. */
static void fold_locked(struct watcher *w)
{
    tq.stats.snapshots += w->snapshots;
    tq.stats.snapshots_dropped += w->dropped;
    w->snapshots = w->dropped = 0;
}

/* Copies the task list if it changed.  tq.lock held. */
static void sync_locked(struct watcher *w)
{
    if (w->version == tq.version)
        return;
    w->version = tq.version;
    w->ntasks = tq.ntasks;
    for (size_t i = 0; i < tq.ntasks; i++)
        w->tasks[i] = (struct wtask){tq.tasks[i].spec, tq.tasks[i].gen, tq.tasks[i].expired};
}

static void unlink_capture(struct watcher *w, struct task_capture *c)
{
    for (struct task_capture **pp = &tq.watching; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    c->next = NULL;
    uint32_t i = (uint32_t)(c->key & INDEX_MASK);
    if (i < w->nseen && w->seen[i].cap == c)
        w->seen[i].cap = NULL;
}

static void discard(struct watcher *w, struct task_capture *c)
{
    unlink_capture(w, c);
    pthread_mutex_lock(&tq.lock);
    task_capture_discard_locked(c);
    pthread_mutex_unlock(&tq.lock);
}

/* Captures whose task was removed or expired are dropped unfinished. */
static void drop_orphans(struct watcher *w)
{
    for (struct task_capture *c = tq.watching, *next; c; c = next) {
        next = c->next;
        struct wtask *t = wtask_of(w, c->task_gen);
        if (!t || t->expired)
            discard(w, c);
    }
}

/* Tasks whose duration is over stop by themselves. */
static void expire(struct watcher *w, int64_t now)
{
    for (size_t i = 0; i < w->ntasks; i++) {
        struct wtask *t = &w->tasks[i];
        if (t->expired || t->spec.ends_ms <= 0 || t->spec.ends_ms * 1000000 > now)
            continue;
        t->expired = 1;
        pthread_mutex_lock(&tq.lock);
        struct task_entry *e = task_find_gen(t->gen);
        if (e && !e->expired) {
            e->expired = 1;
            if (e->started)
                task_event_locked(e->spec.id, "stopped", "the task's duration is over");
            w->notify = 1;
        }
        pthread_mutex_unlock(&tq.lock);
    }
}

/* c's span ended: its end from the record's mark (else: about now, no
 * status), then queued for task_drain — or discarded without snapshot. */
static void finish(struct watcher *w, struct task_capture *c)
{
    struct span_end end;
    int r = span_rec_ended(c->key, &end);
    if (r == 1)
        return;
    if (r == 0) {
        c->end_ns = end.end_ns;
        c->status = end.status;
        snprintf(c->peer, sizeof c->peer, "%s", end.peer);
    } else {
        c->end_ns = clock_now(CLOCK_REALTIME);
        c->status = 0;
        c->peer[0] = '\0';
    }
    unlink_capture(w, c);
    pthread_mutex_lock(&tq.lock);
    if (c->nsnaps == 0 || !task_find_gen(c->task_gen)) {
        task_capture_discard_locked(c);
    } else {
        *tq.done_tail = c;
        tq.done_tail = &c->next;
        tq.ndone++;
        w->notify = 1;
    }
    pthread_mutex_unlock(&tq.lock);
}

static void check_ends(struct watcher *w)
{
    for (struct task_capture *c = tq.watching, *next; c; c = next) {
        next = c->next;
        if (span_rec_key((uint32_t)(c->key & INDEX_MASK)) != c->key)
            finish(w, c);
    }
}

/* Takes the due span of e as a capture if a slot is free. */
static void take(struct watcher *w, struct seen *e)
{
    struct wtask *t = wtask_of(w, e->task_gen);
    struct span_open o;
    if (!t || t->expired || span_rec_read(e->key, &o) != 0) {
        e->verdict = NONE;
        return;
    }
    pthread_mutex_lock(&tq.lock);
    struct task_entry *te = task_find_gen(e->task_gen);
    int ok = te && !te->expired && tq.captures < TASK_MAX_CAPTURES &&
             te->in_flight + te->handed < te->spec.max_samples - te->spec.captures;
    if (ok) {
        te->in_flight++;
        tq.captures++;
    }
    pthread_mutex_unlock(&tq.lock);
    struct task_capture *c = ok ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        if (ok) {
            pthread_mutex_lock(&tq.lock);
            te = task_find_gen(e->task_gen);
            if (te)
                te->in_flight--;
            tq.captures--;
            pthread_mutex_unlock(&tq.lock);
        }
        e->verdict = SKIPPED;
        return;
    }
    c->task_id = t->spec.id;
    c->task_gen = t->gen;
    c->key = e->key;
    c->tid = o.owner;
    c->start_ns = o.start_ns;
    c->interval_ns = (int64_t)t->spec.frequency_ms * 1000000;
    c->next_ns = e->due;
    memcpy(c->interface, o.interface, sizeof c->interface);
    memcpy(c->trace_id, o.trace_id, sizeof c->trace_id);
    c->thread[0] = '\0';
    threads_read_name(c->tid, c->thread);
    int handler = handler_installed();
    c->no_signal = !handler || blocks_signal(c->tid, sampler.signo);
    if (!handler) {
        pthread_mutex_lock(&tq.lock);
        task_error_locked(task_find_gen(c->task_gen), TASK_ERR_SIGNAL,
                          "signal %d has no sonde handler: running threads are not snapshotted",
                          sampler.signo);
        pthread_mutex_unlock(&tq.lock);
        w->notify = 1;
    }
    /* A thread the table does not know (made before the agent, or without
     * pthread_create): have it registered and its stack's mapping read,
     * so both kinds of snapshot know where its stack ends. */
    if (sampler.threads.slots && !sampler_find_thread(c->tid)) {
        threads_discover();
        threads_refresh_stack_maps();
    }
    c->next = tq.watching;
    tq.watching = c;
    e->cap = c;
    e->verdict = CAPTURED;
}

/* The verdict on record e's new key. */
static void evaluate(struct watcher *w, struct seen *e, uint64_t key)
{
    e->key = key;
    e->version = w->version;
    e->verdict = NONE;
    e->cap = NULL;
    struct span_open o;
    if (span_rec_read(key, &o) != 0)
        return; /* ended meanwhile */
    for (size_t i = 0; i < w->ntasks; i++) {
        const struct wtask *t = &w->tasks[i];
        if (t->expired || strcmp(t->spec.interface, o.interface) != 0)
            continue;
        e->task_gen = t->gen;
        e->due = o.start_ns + (int64_t)t->spec.threshold_ms * 1000000;
        e->verdict = PENDING;
        span_rec_watch(key);
        return;
    }
}

/* Whether e's verdict must be made again (the tasks changed). */
static int stale(struct watcher *w, const struct seen *e)
{
    if (e->verdict == NONE)
        return e->version != w->version;
    if (e->verdict == CAPTURED && e->cap)
        return 0;
    const struct wtask *t = wtask_of(w, e->task_gen);
    return !t || t->expired;
}

/* Scans the records: new spans judged, due ones taken.  Returns the
 * earliest due time of a pending span. */
static int64_t scan(struct watcher *w, int64_t now)
{
    uint32_t n = span_rec_count();
    if (n > w->nseen) {
        struct seen *s = realloc(w->seen, n * sizeof *s);
        if (s) {
            memset(s + w->nseen, 0, (n - w->nseen) * sizeof *s);
            w->seen = s;
            w->nseen = n;
        }
    }
    if (n > w->nseen)
        n = w->nseen;
    int64_t next = INT64_MAX;
    for (uint32_t i = 0; i < n; i++) {
        struct seen *e = &w->seen[i];
        uint64_t key = span_rec_key(i);
        /* A capture on this record whose span ended is finished first:
         * the record's end fields belong to it until a later watched
         * span ends there. */
        if (e->cap && e->cap->key != key)
            finish(w, e->cap);
        if (!key)
            continue;
        if (e->key != key || stale(w, e))
            evaluate(w, e, key);
        if (e->verdict != PENDING)
            continue;
        if (e->due <= now)
            take(w, e);
        else if (e->due < next)
            next = e->due;
    }
    return next;
}

/* ---- snapshots ---------------------------------------------------------- */

/* Puts the snapshot box back to idle after a request we gave up: waits
 * for a handler caught mid-write.  0, or -EBUSY if it is still writing. */
static int box_reset(struct snapshot_box *b)
{
    int64_t t0 = clock_now(CLOCK_MONOTONIC);
    for (;;) {
        uint64_t st = atomic_load_explicit(&b->state, memory_order_acquire);
        unsigned ph = SNAPSHOT_PHASE(st);
        uint64_t idle = st & ~(uint64_t)3;
        if (ph == SNAPSHOT_IDLE)
            return 0;
        if (ph != SNAPSHOT_WRITING &&
            atomic_compare_exchange_strong_explicit(&b->state, &st, idle, memory_order_acq_rel,
                                                    memory_order_relaxed))
            return 0;
        if (ph == SNAPSHOT_WRITING && clock_now(CLOCK_MONOTONIC) - t0 > WRITING_MAX_NS)
            return -EBUSY;
        struct timespec ts = {0, ANSWER_STEP_NS};
        nanosleep(&ts, NULL);
    }
}

/* The stack of running thread c->tid through our signal.  Frames into
 * w->pcs; their number, or -errno. */
static int signal_snapshot(struct watcher *w, struct task_capture *c)
{
    if (c->no_signal)
        return -EPERM;
    struct snapshot_box *b = &sampler.snapshot;
    if (box_reset(b) != 0)
        return -EBUSY;
    uint64_t seq = SNAPSHOT_SEQ(atomic_load_explicit(&b->state, memory_order_relaxed)) + 1;
    uint64_t requested = (seq << 2) | SNAPSHOT_REQUESTED, written = (seq << 2) | SNAPSHOT_WRITTEN;
    atomic_store_explicit(&b->tid, c->tid, memory_order_relaxed);
    atomic_store_explicit(&b->state, requested, memory_order_release);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sampler.signo;
    si.si_code = SI_QUEUE;
    si.si_pid = w->pid;
    si.si_uid = getuid();
    si.si_value.sival_int = SNAPSHOT_TAG;
    if (syscall(SYS_rt_tgsigqueueinfo, w->pid, c->tid, sampler.signo, &si) != 0) {
        int e = errno;
        box_reset(b);
        return -e;
    }
    int64_t t0 = clock_now(CLOCK_MONOTONIC);
    for (;;) {
        if (atomic_load_explicit(&b->state, memory_order_acquire) == written) {
            int n = b->nframes < TASK_MAX_FRAMES ? b->nframes : TASK_MAX_FRAMES;
            memcpy(w->pcs, b->pcs, (size_t)n * sizeof w->pcs[0]);
            atomic_store_explicit(&b->state, seq << 2, memory_order_release);
            c->timeouts = 0;
            return n > 0 ? n : -ENOENT;
        }
        int64_t waited = clock_now(CLOCK_MONOTONIC) - t0;
        if (waited >= ANSWER_NS)
            break;
        if (waited < ANSWER_SPIN_NS) {
            __builtin_ia32_pause();
        } else {
            struct timespec ts = {0, ANSWER_STEP_NS};
            nanosleep(&ts, NULL);
        }
    }
    /* No answer in time: withdraw (or wait out a handler caught writing;
     * its late stack is not kept either). */
    box_reset(b);
    if (++c->timeouts >= TIMEOUTS_MAX)
        c->no_signal = 1;
    return -ETIMEDOUT;
}

/* Reserves bytes of snapshot memory for c.  0, or -ENOMEM (over
 * TASK_MEMORY_MAX: reported once for its task). */
static int reserve(struct task_capture *c, size_t bytes)
{
    pthread_mutex_lock(&tq.lock);
    int ok = tq.memory + bytes <= TASK_MEMORY_MAX;
    if (ok) {
        tq.memory += bytes;
        c->bytes += bytes;
    } else {
        task_error_locked(task_find_gen(c->task_gen), TASK_ERR_MEMORY,
                          "snapshot memory limit of %u bytes reached: snapshots dropped",
                          TASK_MEMORY_MAX);
    }
    pthread_mutex_unlock(&tq.lock);
    return ok ? 0 : -ENOMEM;
}

/* Stores one snapshot in c; a stack equal to the previous one shares its
 * frames.  0 or -ENOMEM (over a limit: dropped). */
static int keep(struct task_capture *c, int64_t offset, char state, long nr, const uintptr_t *pcs,
                int n)
{
    if (c->nsnaps >= TASK_MAX_SNAPSHOTS)
        return -ENOMEM;
    const struct task_snap *last = c->nsnaps ? &c->snaps[c->nsnaps - 1] : NULL;
    int same = last && last->nframes == n &&
               memcmp(c->frames + last->frames, pcs, (size_t)n * sizeof *pcs) == 0;
    uint32_t at = same ? last->frames : c->nframes; /* last moves if snaps grows */
    if (c->nsnaps == c->capsnaps) {
        uint32_t cap = c->capsnaps ? c->capsnaps * 2 : 16;
        if (cap > TASK_MAX_SNAPSHOTS)
            cap = TASK_MAX_SNAPSHOTS;
        if (reserve(c, (cap - c->capsnaps) * sizeof *c->snaps) != 0)
            return -ENOMEM;
        struct task_snap *s = realloc(c->snaps, cap * sizeof *s);
        if (!s)
            return -ENOMEM; /* reserved bytes stay counted until the capture goes */
        c->snaps = s;
        c->capsnaps = cap;
    }
    if (!same && c->nframes + (uint32_t)n > c->capframes) {
        uint32_t cap = c->capframes ? c->capframes * 2 : 256;
        while (cap < c->nframes + (uint32_t)n)
            cap *= 2;
        if (reserve(c, (cap - c->capframes) * sizeof *c->frames) != 0)
            return -ENOMEM;
        uintptr_t *f = realloc(c->frames, cap * sizeof *f);
        if (!f)
            return -ENOMEM;
        c->frames = f;
        c->capframes = cap;
    }
    if (!same) {
        memcpy(c->frames + c->nframes, pcs, (size_t)n * sizeof *pcs);
        c->nframes += (uint32_t)n;
    }
    c->snaps[c->nsnaps++] = (struct task_snap){
        .offset_ns = offset,
        .frames = at,
        .nframes = (uint16_t)n,
        .state = state,
        .syscall = (int32_t)nr,
    };
    return 0;
}

/* c's instant came: one snapshot of its thread. */
static void snapshot(struct watcher *w, struct task_capture *c)
{
    int64_t now = clock_now(CLOCK_REALTIME);
    int64_t late = now - c->next_ns;
    c->next_ns += (late / c->interval_ns + 1) * c->interval_ns;
    uint32_t rec = (uint32_t)(c->key & INDEX_MASK);
    if (span_rec_key(rec) != c->key)
        return; /* ended: check_ends finishes it */
    c->taken++;
    int64_t give_up = clock_now(CLOCK_MONOTONIC) + ANSWER_NS;
    int64_t at;
    char state;
    long nr = -1;
    int n = -ESRCH;
    int64_t cpu0 = thread_cpu_ns(c->tid);
    for (;;) {
        state = wall_thread_state(c->tid);
        int64_t cpu = thread_cpu_ns(c->tid);
        at = clock_now(CLOCK_REALTIME);
        if (!state || state == 'Z' || state == 'X' || cpu < 0)
            break; /* gone */
        if (state != 'R') {
            /* Blocked: read from outside.  If it runs meanwhile (or moves
             * while we copy), the snapshot is dropped: a thread /proc saw
             * blocked is never signalled. */
            struct wall_regs regs;
            if (w->copybuf && wall_blocked_regs(c->tid, &regs) == 0) {
                n = wall_blocked_stack(c->tid, sampler_find_thread(c->tid), &regs, w->copybuf,
                                       WALL_COPY_MAX, w->pcs, TASK_MAX_FRAMES, NULL);
                nr = regs.nr;
            }
            break;
        }
        /* R, and it has run since we first looked (its CPU clock moved):
         * it is in user code (or, like under a CPU-time timer's signal,
         * busy in a system call), not stuck at the exit of one. */
        if (cpu > cpu0) {
            n = signal_snapshot(w, c);
            break;
        }
        /* Runnable but it has not run: preempted in user code, or woken
         * inside a system call it has not returned from yet — poll would
         * return EINTR for a signal now.  Let it run (it may share our
         * CPU), then look again. */
        if (clock_now(CLOCK_MONOTONIC) >= give_up) {
            n = -ETIMEDOUT;
            break;
        }
        struct timespec ts = {0, OFFCPU_STEP_NS};
        nanosleep(&ts, NULL);
    }
    /* Still the same span?  If not, the stack may be of what followed. */
    if (span_rec_key(rec) != c->key) {
        c->taken--;
        return;
    }
    if (n <= 0 || keep(c, at - c->start_ns, state, nr, w->pcs, n) != 0) {
        w->dropped++;
        return;
    }
    w->snapshots++;
}

/* Every capture whose instant came; returns the earliest next instant. */
static int64_t snapshots(struct watcher *w)
{
    int64_t next = INT64_MAX;
    for (struct task_capture *c = tq.watching; c; c = c->next) {
        if (c->next_ns <= clock_now(CLOCK_REALTIME))
            snapshot(w, c);
        if (c->next_ns < next)
            next = c->next_ns;
    }
    return next;
}

/* One pass; returns when to wake next (CLOCK_REALTIME ns, INT64_MAX =
 * when something changes). */
static int64_t step(struct watcher *w)
{
    int64_t now = clock_now(CLOCK_REALTIME);
    expire(w, now);
    drop_orphans(w);
    check_ends(w);
    int64_t next = scan(w, now);
    int64_t s = snapshots(w);
    if (s < next)
        next = s;
    int64_t period = INT64_MAX;
    for (size_t i = 0; i < w->ntasks; i++) {
        const struct wtask *t = &w->tasks[i];
        if (t->expired)
            continue;
        int64_t p = (int64_t)t->spec.threshold_ms * 1000000 / 2;
        p = p < SCAN_MIN_NS ? SCAN_MIN_NS : p > SCAN_MAX_NS ? SCAN_MAX_NS : p;
        if (p < period)
            period = p;
        if (t->spec.ends_ms > 0 && t->spec.ends_ms * 1000000 < next)
            next = t->spec.ends_ms * 1000000;
    }
    if (period == INT64_MAX && tq.watching)
        period = SCAN_MAX_NS; /* captures left to finish */
    if (period != INT64_MAX && now + period < next)
        next = now + period;
    return next;
}

void *task_watch_main(void *arg)
{
    (void)arg;
    prctl(PR_SET_NAME, "sonde-task", 0, 0, 0);
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    threads_register_self(SLOT_AGENT);
    struct watcher w;
    memset(&w, 0, sizeof w);
    w.pid = getpid();
    w.version = UINT64_MAX;
    w.copybuf = malloc(WALL_COPY_MAX); /* NULL: blocked threads' snapshots are dropped */

    pthread_mutex_lock(&tq.lock);
    while (!tq.stop) {
        sync_locked(&w);
        pthread_mutex_unlock(&tq.lock);
        int64_t next = step(&w);
        pthread_mutex_lock(&tq.lock);
        fold_locked(&w);
        if (w.notify && tq.notify) {
            void (*fn)(void) = tq.notify;
            pthread_mutex_unlock(&tq.lock);
            fn();
            pthread_mutex_lock(&tq.lock);
        }
        w.notify = 0;
        if (tq.stop || tq.version != w.version)
            continue;
        if (next == INT64_MAX) {
            pthread_cond_wait(&tq.wake, &tq.lock);
        } else {
            struct timespec ts = {(time_t)(next / 1000000000), (long)(next % 1000000000)};
            pthread_cond_timedwait(&tq.wake, &tq.lock, &ts);
        }
    }
    fold_locked(&w);
    pthread_mutex_unlock(&tq.lock);
    while (tq.watching)
        discard(&w, tq.watching);
    free(w.seen);
    free(w.copybuf);
    return NULL;
}
