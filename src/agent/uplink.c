/*
 * uplink.c — the agent's link to sonded, the process's side of it
 * (contract in uplink.h, protocol in docs/agent-protocol.md): the outbox
 * of sessions, the work waiting for the agent thread, and the link
 * thread's start, stop and fork.  The thread itself, which alone touches
 * the network, is uplink_thread.c (with uplink_poll.c and uplink_http.c);
 * active profiling's outbox of task events and captures is
 * uplink_tasks.c.  What they share is uplink_internal.h, all under one
 * mutex (U.lock) that every function here holds only for a moment: no
 * caller ever waits on the network.
 *
 * The outbox.  Sessions live in a list, oldest first, from
 * uplink_session_begin to the answer that completes them: created on the
 * server (POST sessions, once registered) → ended by the agent thread
 * (metadata final, profile attached) → PATCHed (state failed when there
 * is no profile) → profile uploaded → freed.  At most UPLINK_MAX_OUTBOX
 * records and UPLINK_MAX_OUTBOX_BYTES of profiles: beyond either, the
 * oldest ended record is dropped (counted in uploads_dropped, reported as
 * dropped_uploads in heartbeats).  The record an upload is reading from
 * is marked busy and never dropped under it.  New work wakes the thread
 * (curl_multi_wakeup).
 *
 * Start.  The thread is created with every signal blocked from its first
 * instruction (the mask is set around pthread_create: a SIGPIPE or a
 * host's signal can never run on it) through threads_create_agent_thread,
 * so it is never sampled.  It registers only once register_delay_ms has
 * passed since the start.
 *
 * Exit (uplink_stop).  With nothing to send and no registration the
 * thread is told to quit at once: a short-lived process pays one thread
 * join.  Otherwise it gets exit_flush_ms to send what ended and POST stop
 * (uplink_thread.c keeps to the deadline itself); uplink_stop waits at
 * most STOP_GRACE_MS past it, twice, then detaches the thread, which
 * ends on its own (the library is never unloaded: -z nodelete).
 *
 * fork.  The child inherits U as it was under U.lock, with libcurl between
 * two calls (U.curl_lock: uplink_atfork_*), but no thread: it frees the
 * outboxes (the parent sends those), closes its copies of the sockets
 * the parent's transfers had open (tracked in U.sockets; curl's handles
 * themselves are never touched, only forgotten), and is not started.  uplink_restart_child() starts a fresh
 * thread with the same configuration, which registers a new agent after
 * register_delay_ms: a child that execs or exits before then never talks
 * to the server and costs a thread creation and join.
 */
#include "uplink.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "threads.h"
#include "uplink_internal.h"

#define STOP_GRACE_MS 100 /* uplink_stop waits this past the bound */
#define FORK_WAIT_MS 250  /* uplink_atfork_prepare's longest wait */

/* Whether this thread's fork holds U.curl_lock (prepare → parent/child). */
static __thread int fork_has_curl_lock;

struct uplink_state uplink_state = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .curl_lock = PTHREAD_MUTEX_INITIALIZER,
    .cpu_pct = -1,
    .mem_pct = -1,
    .sockets = {-1, -1, -1, -1, -1, -1, -1, -1},
};

void uplink_wake_locked(void)
{
    if (U.multi)
        curl_multi_wakeup(U.multi);
}

/* ------------------------------------------------------------------ */
/* Settings and names                                                  */

void uplink_default_settings(struct agent_settings *s)
{
    memset(s, 0, sizeof *s);
    s->cpu = (struct trigger_setting){.enabled = 1, .threshold = 80, .duration_s = 120,
                                      .cooldown_s = 600};
    s->memory = s->cpu;
    s->sampling_enabled = 1;
    s->sampling_window_s = 120;
    s->sampling_period_s = 3600;
}

/* A command line or host name may hold anything; jansson refuses
 * invalid UTF-8. */
void uplink_utf8_clean(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
        int ok = n > 0;
        for (int i = 1; ok && i < n; i++) {
            ok = (p[i] & 0xc0) == 0x80;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if (ok)
            ok = n == 1 || (n == 2 && cp >= 0x80) ||
                 (n == 3 && cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff)) ||
                 (n == 4 && cp >= 0x10000 && cp <= 0x10ffff);
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

/* ------------------------------------------------------------------ */
/* The outbox (U.lock held)                                            */

struct uplink_record *uplink_record_find_locked(uint64_t handle)
{
    for (struct uplink_record *r = U.head; r; r = r->next)
        if (r->handle == handle)
            return r;
    return NULL;
}

static void unlink_locked(struct uplink_record *r)
{
    struct uplink_record **pp = &U.head, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = r->next;
    if (U.tail == r)
        U.tail = prev;
    U.n_records--;
    if (r->gz)
        U.bytes -= r->len;
}

void uplink_record_drop_locked(struct uplink_record *r, int count)
{
    unlink_locked(r);
    if (count)
        U.stats.uploads_dropped++;
    free(r->gz);
    free(r);
}

/* The oldest ended record that is not r and not being sent (one with a
 * profile when need_gz), or NULL. */
static struct uplink_record *evictable_locked(const struct uplink_record *r, int need_gz)
{
    for (struct uplink_record *x = U.head; x; x = x->next)
        if (x != r && x->ended && !x->busy && (!need_gz || x->gz))
            return x;
    return NULL;
}

/* Frees the session outbox and the task outbox. */
static void free_outbox_locked(void)
{
    struct uplink_record *r = U.head;
    while (r) {
        struct uplink_record *next = r->next;
        free(r->gz);
        free(r);
        r = next;
    }
    U.head = U.tail = NULL;
    U.n_records = 0;
    uplink_task_items_free_locked();
    U.bytes = 0;
}

int uplink_outbox_has_ended_locked(void)
{
    for (struct uplink_record *r = U.head; r; r = r->next)
        if (r->ended)
            return 1;
    return 0;
}

uint64_t uplink_session_begin(const struct uplink_session *s)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&U.lock);
    if (!U.configured) {
        pthread_mutex_unlock(&U.lock);
        return 0;
    }
    int evicted = 0;
    if (U.n_records >= UPLINK_MAX_OUTBOX) {
        struct uplink_record *old = evictable_locked(NULL, 0);
        if (!old) {
            U.stats.uploads_dropped++;
            pthread_mutex_unlock(&U.lock);
            agent_log("uplink: outbox full (%d sessions not yet sent): session %s dropped",
                      UPLINK_MAX_OUTBOX, s->triggered_by);
            return 0;
        }
        uplink_record_drop_locked(old, old->gz != NULL);
        evicted = 1;
    }
    struct uplink_record *r = calloc(1, sizeof *r);
    if (!r) {
        U.stats.uploads_dropped++;
        pthread_mutex_unlock(&U.lock);
        agent_log("uplink: out of memory: session %s dropped", s->triggered_by);
        return 0;
    }
    r->handle = ++U.next_handle;
    r->meta = *s;
    r->meta.triggered_by[sizeof r->meta.triggered_by - 1] = '\0';
    if (U.tail)
        U.tail->next = r;
    else
        U.head = r;
    U.tail = r;
    U.n_records++;
    uint64_t handle = r->handle;
    uplink_wake_locked();
    pthread_mutex_unlock(&U.lock);
    if (evicted)
        agent_log("uplink: outbox full: the oldest finished session was dropped");
    return handle;
}

void uplink_session_end(uint64_t handle, const struct uplink_session *s, void *gz, size_t len)
{
    if (!gz || !len) {
        free(gz);
        gz = NULL;
        len = 0;
    }
    pthread_mutex_lock(&U.lock);
    struct uplink_record *r = handle ? uplink_record_find_locked(handle) : NULL;
    if (!r || r->ended) {
        /* Dropped already (and counted then), ended twice, or a handle
         * from before a fork (the parent's to send). */
        pthread_mutex_unlock(&U.lock);
        free(gz);
        return;
    }
    if (s) {
        r->meta = *s;
        r->meta.triggered_by[sizeof r->meta.triggered_by - 1] = '\0';
    }
    int evicted = 0, too_big = 0;
    size_t size = len;
    if (gz && len > UPLINK_MAX_OUTBOX_BYTES)
        too_big = 1;
    while (gz && !too_big && U.bytes + len > UPLINK_MAX_OUTBOX_BYTES) {
        struct uplink_record *old = evictable_locked(r, 1);
        if (!old) {
            too_big = 1;
            break;
        }
        uplink_record_drop_locked(old, 1);
        evicted++;
    }
    if (too_big) {
        /* The session is still closed on the server: state failed. */
        U.stats.uploads_dropped++;
        free(gz);
        gz = NULL;
        len = 0;
    }
    r->gz = gz;
    r->len = len;
    U.bytes += len;
    r->ended = 1;
    uplink_wake_locked();
    pthread_mutex_unlock(&U.lock);
    if (evicted)
        agent_log("uplink: outbox over %u bytes: %d older profile(s) dropped",
                  UPLINK_MAX_OUTBOX_BYTES, evicted);
    if (too_big)
        agent_log("uplink: profile of %zu bytes does not fit in the outbox: dropped", size);
}

void uplink_set_metrics(double cpu_pct, double mem_pct)
{
    pthread_mutex_lock(&U.lock);
    U.cpu_pct = cpu_pct;
    U.mem_pct = mem_pct;
    pthread_mutex_unlock(&U.lock);
}

void uplink_get_stats(struct uplink_stats *out)
{
    pthread_mutex_lock(&U.lock);
    *out = U.stats;
    pthread_mutex_unlock(&U.lock);
}

int uplink_take_work(struct uplink_work *out)
{
    memset(out, 0, sizeof *out);
    if (!atomic_load_explicit(&U.work_flag, memory_order_acquire))
        return 0;
    pthread_mutex_lock(&U.lock);
    *out = U.work;
    memset(&U.work, 0, sizeof U.work);
    atomic_store(&U.work_flag, 0);
    pthread_mutex_unlock(&U.lock);
    return out->settings_changed || out->n_profile_now > 0 || out->tasks_changed ||
           out->n_ended > 0;
}

/* ------------------------------------------------------------------ */
/* Start, stop, fork                                                   */

/* Starts the thread with every signal blocked from its first instruction.
 * U.lock held. */
static int spawn_locked(void)
{
    U.stopping = 0;
    U.stop_deadline_ms = 0;
    atomic_store(&U.abandon, 0);
    U.start_mono_ms = uplink_mono_ms();
    U.start_real_ms = uplink_clock_ms(CLOCK_REALTIME);
    sigset_t all, old;
    sigfillset(&all);
    atomic_store(&U.thread_alive, 1);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = threads_create_agent_thread(&U.thread, uplink_thread_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        atomic_store(&U.thread_alive, 0);
        return -rc;
    }
    U.started = 1;
    return 0;
}

/* Copies s (an array of cap bytes) into d (NUL-terminated, valid UTF-8),
 * or def when s is empty. */
static void copy_field(char *d, size_t cap, const char *s, const char *def)
{
    snprintf(d, cap, "%.*s", (int)cap - 1, s[0] ? s : def);
    uplink_utf8_clean(d);
}

int uplink_start(const struct uplink_config *cfg)
{
    if (!cfg || !cfg->server[0])
        return agent_error(-EINVAL, "uplink: no server URL");
    pthread_mutex_lock(&U.lock);
    if (U.started) {
        pthread_mutex_unlock(&U.lock);
        return -EALREADY;
    }
    if (atomic_load(&U.thread_alive)) {
        pthread_mutex_unlock(&U.lock);
        return agent_error(-EBUSY, "uplink: the previous link thread has not ended yet");
    }
    struct uplink_config *c = &U.cfg;
    *c = *cfg;
    snprintf(c->server, sizeof c->server, "%.*s", (int)sizeof c->server - 1, cfg->server);
    size_t n = strlen(c->server);
    while (n > 0 && c->server[n - 1] == '/')
        c->server[--n] = '\0';
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    copy_field(c->app, sizeof c->app, cfg->app, program_invocation_short_name);
    copy_field(c->instance, sizeof c->instance, cfg->instance, host[0] ? host : "unknown");
    copy_field(c->cmdline, sizeof c->cmdline, cfg->cmdline, "");
    snprintf(c->token, sizeof c->token, "%.*s", (int)sizeof c->token - 1, cfg->token);
    for (char *t = c->token; *t; t++)
        if (*t < 0x21 || *t > 0x7e) { /* no header injection, no stray newline */
            *t = '\0';
            break;
        }
    if (!c->app[0])
        snprintf(c->app, sizeof c->app, "unknown");
    U.configured = 1;
    free_outbox_locked(); /* a previous run's, if its thread outlived its stop */
    memset(&U.stats, 0, sizeof U.stats);
    memset(&U.work, 0, sizeof U.work);
    atomic_store(&U.work_flag, 0);
    U.cpu_pct = U.mem_pct = -1;
    int rc = spawn_locked();
    pthread_mutex_unlock(&U.lock);
    if (rc != 0)
        return agent_error(rc, "uplink: cannot start its thread: %s", strerror(-rc));
    return 0;
}

/* pthread_timedjoin_np until the monotonic time until_ms.  0 or ETIMEDOUT. */
static int join_until(pthread_t th, int64_t until_ms)
{
    int64_t left = until_ms - uplink_mono_ms();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (left > 0 ? left : 0) * 1000000;
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    return pthread_timedjoin_np(th, NULL, &ts);
}

void uplink_stop(void)
{
    pthread_mutex_lock(&U.lock);
    if (!U.started) {
        pthread_mutex_unlock(&U.lock);
        return;
    }
    int64_t now = uplink_mono_ms();
    int flush = U.cfg.exit_flush_ms > 0 &&
                (U.stats.registered || uplink_outbox_has_ended_locked() ||
                 uplink_task_items_locked() > 0);
    U.stopping = 1;
    U.stop_deadline_ms = now + (flush ? U.cfg.exit_flush_ms : 0);
    if (!flush)
        atomic_store(&U.abandon, 1);
    int64_t deadline = U.stop_deadline_ms;
    pthread_t th = U.thread;
    uplink_wake_locked();
    pthread_mutex_unlock(&U.lock);

    int rc = join_until(th, deadline + STOP_GRACE_MS);
    if (rc == ETIMEDOUT) {
        pthread_mutex_lock(&U.lock);
        atomic_store(&U.abandon, 1);
        uplink_wake_locked();
        pthread_mutex_unlock(&U.lock);
        rc = join_until(th, uplink_mono_ms() + STOP_GRACE_MS);
    }
    if (rc != 0) {
        /* It will see abandon and end on its own; the library is never
         * unloaded, so its code stays. */
        pthread_detach(th);
        agent_log("uplink: link thread still busy %d ms past the exit bound: left to end alone",
                  2 * STOP_GRACE_MS);
    }
    pthread_mutex_lock(&U.lock);
    U.started = 0;
    size_t unsent = U.n_records, items = uplink_task_items_locked();
    if (!atomic_load(&U.thread_alive))
        free_outbox_locked();
    pthread_mutex_unlock(&U.lock);
    if (unsent || items)
        agent_log("uplink: stopped with %zu session(s) and %zu task event(s) or capture(s) not "
                  "sent",
                  unsent, items);
}

/* ------------------------------------------------------------------ */
/* fork                                                                */

void uplink_atfork_prepare(void)
{
    /* Waits until no libcurl call is under way: one pass of the thread's
     * loop at most, which never waits on the network (every call it makes
     * into libcurl is non-blocking).  Bounded all the same: if a lock
     * this fork's caller holds kept the thread from finishing its pass
     * (libcurl's resolver threads are made through the pthread_create
     * interposer), the fork goes on after FORK_WAIT_MS and the child gets
     * no link. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += FORK_WAIT_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    fork_has_curl_lock = pthread_mutex_timedlock(&U.curl_lock, &until) == 0;
    pthread_mutex_lock(&U.lock);
}

void uplink_atfork_parent(void)
{
    pthread_mutex_unlock(&U.lock);
    if (fork_has_curl_lock)
        pthread_mutex_unlock(&U.curl_lock);
}

void uplink_atfork_child(void)
{
    /* Only this thread exists here, and U was consistent at fork (the
     * lock was held).  The parent's curl handles are forgotten, never
     * touched; the sockets they had open are closed (the parent's stay
     * open: this closes the child's references only). */
    pthread_mutex_init(&U.lock, NULL);
    pthread_mutex_init(&U.curl_lock, NULL);
    if (!fork_has_curl_lock && atomic_load(&U.thread_alive))
        U.curl_unsafe = 1;
    for (int i = 0; i < UPLINK_SOCKETS_MAX; i++)
        if (U.sockets[i] >= 0) {
            close(U.sockets[i]);
            U.sockets[i] = -1;
        }
    U.multi = NULL;
    U.started = 0;
    U.stopping = 0;
    atomic_store(&U.thread_alive, 0);
    atomic_store(&U.abandon, 0);
    free_outbox_locked();
    memset(&U.stats, 0, sizeof U.stats);
    memset(&U.work, 0, sizeof U.work);
    atomic_store(&U.work_flag, 0);
    U.cpu_pct = U.mem_pct = -1;
}

int uplink_restart_child(void)
{
    pthread_mutex_lock(&U.lock);
    int rc = !U.configured ? -EINVAL
             : U.started   ? -EALREADY
             : U.curl_unsafe ? -EAGAIN
                             : spawn_locked();
    pthread_mutex_unlock(&U.lock);
    if (rc == -EAGAIN)
        agent_log("uplink: forked while the link was busy in libcurl: no server link in this "
                  "process");
    return rc;
}

