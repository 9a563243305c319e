/*
 * uplink_tasks.c — active profiling in the server link
 * (docs/agent-protocol.md §7): the task outbox — task events and
 * captures, queued by task.c from any thread and sent by the link thread
 * — and the app's list of running tasks handed to the agent thread.
 *
 * The task outbox is one list, sent strictly in order (a task's "started"
 * before its captures, its captures before its "stopped"), one transfer
 * at a time on a slot of its own (L->task), beside the poll and the
 * session outbox's transfer: a long profile upload never delays a claim.
 *   event   → POST /api/v1/agent/tasks/{id}/events; at most
 *             UPLINK_MAX_EVENTS waiting (a new one drops the oldest).
 *   capture → POST /api/v1/agent/tasks/{id}/captures claims a slot; on
 *             201 the item keeps the capture id and its snapshots go next
 *             (PUT /api/v1/agent/captures/{id}/snapshots, the gzipped
 *             pprof); at most UPLINK_MAX_CAPTURES waiting, and their
 *             bytes count against UPLINK_MAX_OUTBOX_BYTES with the
 *             sessions' profiles (a capture that does not fit is dropped,
 *             counted in captures_dropped).
 * Answers: 409 on a claim — the task reached its limit or ended — drops
 * the capture (captures_refused) and ends the task here: it leaves the
 * list handed to the agent thread (work.tasks_changed) and is named in
 * work.ended, so the agent thread calls task_end() and the watcher stops
 * at once, without waiting for the next poll.  A granted claim whose
 * task_state is no longer "running" (this claim took the last slot) does
 * the same.  404 on a claim or an upload (the task or capture is unknown:
 * a server restarted onto another store) drops it (captures_dropped);
 * 409 on an upload means stored already (sent).  Any other 4xx drops the
 * item (logged; a capture counted in captures_dropped).  A network
 * error, timeout or 5xx is retried with the link's backoff (1 s doubling
 * to 30 s), 401/403 every 30 s, nothing dropped.  Tasks ended this way
 * are remembered until the next registration and left out of later poll
 * lists (an answer already in flight may still name them).
 *
 * The link thread never calls into task.c: the agent thread takes what
 * is here through uplink_take_work (uplink.h) and calls task.c itself.
 */
#include "uplink_curl.h"
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "uplink_internal.h"

/* ------------------------------------------------------------------ */
/* The outbox (any thread, U.lock)                                     */

static void item_append_locked(struct uplink_task_item *it)
{
    it->handle = ++U.next_handle;
    if (U.task_tail)
        U.task_tail->next = it;
    else
        U.task_head = it;
    U.task_tail = it;
    if (it->is_capture) {
        U.n_captures++;
        U.bytes += it->len;
    } else {
        U.n_events++;
    }
}

/* Unlinks and frees it. */
static void item_drop_locked(struct uplink_task_item *it)
{
    struct uplink_task_item **pp = &U.task_head, *prev = NULL;
    while (*pp && *pp != it) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = it->next;
    if (U.task_tail == it)
        U.task_tail = prev;
    if (it->is_capture) {
        U.n_captures--;
        U.bytes -= it->len;
    } else {
        U.n_events--;
    }
    free(it->gz);
    free(it);
}

static struct uplink_task_item *item_find_locked(uint64_t handle)
{
    for (struct uplink_task_item *it = U.task_head; it; it = it->next)
        if (it->handle == handle)
            return it;
    return NULL;
}

void uplink_task_items_free_locked(void)
{
    while (U.task_head)
        item_drop_locked(U.task_head);
    U.n_tasks = 0;
}

size_t uplink_task_items_locked(void)
{
    return U.n_events + U.n_captures;
}

void uplink_capture_put(const struct uplink_capture *c, void *gz, size_t len)
{
    if (!c) {
        free(gz);
        return;
    }
    const char *why = NULL;
    pthread_mutex_lock(&U.lock);
    if (!U.configured) {
        pthread_mutex_unlock(&U.lock);
        free(gz);
        return;
    }
    struct uplink_task_item *it = NULL;
    if (!gz || !len)
        why = "it has no snapshots";
    else if (U.n_captures >= UPLINK_MAX_CAPTURES)
        why = "the outbox already holds its most captures";
    else if (len > UPLINK_MAX_OUTBOX_BYTES || U.bytes + len > UPLINK_MAX_OUTBOX_BYTES)
        why = "the outbox is full";
    else if (!(it = calloc(1, sizeof *it)))
        why = "out of memory";
    if (why) {
        U.stats.captures_dropped++;
        pthread_mutex_unlock(&U.lock);
        free(gz);
        agent_log("uplink: capture of task %" PRId64 " (%zu bytes) dropped: %s", c->task_id,
                  len, why);
        return;
    }
    it->is_capture = 1;
    it->task_id = c->task_id;
    it->cap = *c;
    it->cap.trace_id[sizeof it->cap.trace_id - 1] = '\0';
    it->cap.interface[sizeof it->cap.interface - 1] = '\0';
    it->cap.peer[sizeof it->cap.peer - 1] = '\0';
    uplink_utf8_clean(it->cap.trace_id);
    uplink_utf8_clean(it->cap.interface);
    uplink_utf8_clean(it->cap.peer);
    it->gz = gz;
    it->len = len;
    item_append_locked(it);
    uplink_wake_locked();
    pthread_mutex_unlock(&U.lock);
}

void uplink_task_event(int64_t task_id, const char *event, const char *message)
{
    if (task_id < 1 || !event ||
        (strcmp(event, "started") != 0 && strcmp(event, "stopped") != 0 &&
         strcmp(event, "error") != 0)) {
        agent_log("uplink: task event %s for task %" PRId64 " is not one the protocol has: "
                  "ignored",
                  event ? event : "(null)", task_id);
        return;
    }
    struct uplink_task_item *it = calloc(1, sizeof *it);
    if (!it) {
        agent_log("uplink: out of memory: event %s of task %" PRId64 " dropped", event, task_id);
        return;
    }
    it->task_id = task_id;
    snprintf(it->event, sizeof it->event, "%s", event);
    snprintf(it->message, sizeof it->message, "%s", message ? message : "");
    uplink_utf8_clean(it->message);
    int dropped = 0;
    pthread_mutex_lock(&U.lock);
    if (!U.configured) {
        pthread_mutex_unlock(&U.lock);
        free(it);
        return;
    }
    if (U.n_events >= UPLINK_MAX_EVENTS)
        for (struct uplink_task_item *x = U.task_head; x; x = x->next)
            if (!x->is_capture) {
                item_drop_locked(x); /* one in flight is answered to no one */
                dropped = 1;
                break;
            }
    item_append_locked(it);
    uplink_wake_locked();
    pthread_mutex_unlock(&U.lock);
    if (dropped)
        agent_log("uplink: %d task events waiting: the oldest was dropped", UPLINK_MAX_EVENTS);
}

/* ------------------------------------------------------------------ */
/* The task list (link thread)                                         */

static int is_ended(const struct link *L, int64_t id)
{
    int n = L->n_ended < UPLINK_ENDED_MAX ? L->n_ended : UPLINK_ENDED_MAX;
    for (int i = 0; i < n; i++)
        if (L->ended[i] == id)
            return 1;
    return 0;
}

static int spec_equal(const struct task_spec *a, const struct task_spec *b)
{
    return a->id == b->id && strcmp(a->interface, b->interface) == 0 &&
           a->threshold_ms == b->threshold_ms && a->frequency_ms == b->frequency_ms &&
           a->max_samples == b->max_samples && a->captures == b->captures &&
           a->ends_ms == b->ends_ms;
}

/* U.tasks becomes the agent thread's next work.tasks.  U.lock held. */
static void hand_over_locked(void)
{
    memcpy(U.work.tasks, U.tasks, sizeof U.tasks);
    U.work.n_tasks = U.n_tasks;
    U.work.tasks_changed = 1;
    atomic_store_explicit(&U.work_flag, 1, memory_order_release);
}

void uplink_tasks_replace(struct link *L, const struct task_spec *specs, int n)
{
    struct task_spec keep[UPLINK_MAX_TASKS];
    int k = 0;
    for (int i = 0; i < n && k < UPLINK_MAX_TASKS; i++)
        if (!is_ended(L, specs[i].id))
            keep[k++] = specs[i];
    pthread_mutex_lock(&U.lock);
    int same = k == U.n_tasks;
    for (int i = 0; same && i < k; i++)
        same = spec_equal(&keep[i], &U.tasks[i]);
    if (!same) {
        memset(U.tasks, 0, sizeof U.tasks);
        memcpy(U.tasks, keep, (size_t)k * sizeof keep[0]);
        U.n_tasks = k;
        hand_over_locked();
    }
    pthread_mutex_unlock(&U.lock);
    if (same)
        return;
    char ids[UPLINK_MAX_TASKS * 21 + 1] = "";
    size_t at = 0;
    for (int i = 0; i < k && at < sizeof ids; i++)
        at += (size_t)snprintf(ids + at, sizeof ids - at, " %" PRId64, keep[i].id);
    agent_log("uplink: %d task(s) to watch%s%s", k, k ? ":" : "", ids);
}

/* The server will take no more captures of task id: the watcher stops. */
static void end_task(struct link *L, int64_t id, const char *why)
{
    if (is_ended(L, id))
        return;
    L->ended[L->n_ended++ % UPLINK_ENDED_MAX] = id;
    int full = 0;
    pthread_mutex_lock(&U.lock);
    int k = 0;
    for (int i = 0; i < U.n_tasks; i++)
        if (U.tasks[i].id != id)
            U.tasks[k++] = U.tasks[i];
    if (k < U.n_tasks)
        memset(&U.tasks[k], 0, sizeof U.tasks[k]);
    U.n_tasks = k;
    if (U.work.n_ended < UPLINK_MAX_TASKS)
        U.work.ended[U.work.n_ended++] = id;
    else
        full = 1;
    hand_over_locked();
    pthread_mutex_unlock(&U.lock);
    agent_log("uplink: task %" PRId64 " %s: no longer watched%s", id, why,
              full ? " (left out of the list; too many ended at once to name it)" : "");
}

/* ------------------------------------------------------------------ */
/* Steps and answers (link thread)                                     */

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The claim's body (agent-protocol §7; out-of-range values clamped,
 * a response code outside 0..999 sent as 0, none). */
static json_t *claim_body(const struct link *L, const struct uplink_capture *c)
{
    int code = c->response_code >= 0 && c->response_code <= 999 ? c->response_code : 0;
    return json_pack("{s:I,s:s,s:s,s:I,s:i,s:s,s:I,s:I}", "agent_id", (json_int_t)L->agent_id,
                     "trace_id", c->trace_id, "interface", c->interface, "start_ms",
                     (json_int_t)clamp(c->start_ms, 0, INT64_MAX), "response_code", code, "peer",
                     c->peer, "total_ms", (json_int_t)clamp(c->total_ms, 0, 86400000),
                     "snapshots",
                     (json_int_t)(c->snapshots > 1000000 ? 1000000 : c->snapshots));
}

int uplink_task_step(struct link *L)
{
    pthread_mutex_lock(&U.lock);
    struct uplink_task_item *it = U.task_head;
    if (!it) {
        pthread_mutex_unlock(&U.lock);
        return 0;
    }
    enum xfer_kind kind = !it->is_capture ? X_EVENT : it->capture_id ? X_SNAPSHOTS : X_CLAIM;
    char path[128];
    char *body = NULL;
    const void *raw = NULL;
    size_t raw_len = 0;
    if (kind == X_EVENT) {
        snprintf(path, sizeof path, "/api/v1/agent/tasks/%" PRId64 "/events", it->task_id);
        json_t *o = json_pack("{s:I,s:s}", "agent_id", (json_int_t)L->agent_id, "event",
                              it->event);
        if (o && it->message[0])
            json_object_set_new(o, "message", json_string(it->message));
        body = uplink_dump(o);
    } else if (kind == X_CLAIM) {
        snprintf(path, sizeof path, "/api/v1/agent/tasks/%" PRId64 "/captures", it->task_id);
        body = uplink_dump(claim_body(L, &it->cap));
    } else {
        snprintf(path, sizeof path, "/api/v1/agent/captures/%" PRId64 "/snapshots",
                 it->capture_id);
        raw = it->gz;
        raw_len = it->len;
        it->busy = 1; /* gz is read by curl until the transfer ends */
    }
    uint64_t handle = it->handle;
    pthread_mutex_unlock(&U.lock);

    if (kind != X_SNAPSHOTS && !body)
        return -ENOMEM;
    L->task = uplink_xfer_start(L, kind, kind == X_SNAPSHOTS ? "PUT" : "POST", path, body, raw,
                                raw_len,
                                kind == X_SNAPSHOTS ? UPLINK_UPLOAD_TIMEOUT_MS
                                                    : UPLINK_CONTROL_TIMEOUT_MS);
    if (L->task) {
        L->task->handle = handle;
        return 1;
    }
    if (kind == X_SNAPSHOTS) {
        pthread_mutex_lock(&U.lock);
        if ((it = item_find_locked(handle)))
            it->busy = 0;
        pthread_mutex_unlock(&U.lock);
    }
    return -ENOMEM;
}

void uplink_on_task(struct link *L, struct xfer *x, enum verdict v, long status, int64_t now)
{
    char msg[256] = "", state[32] = "";
    int64_t capture_id = 0, slot = 0;
    if (v == V_OK && x->kind == X_CLAIM) {
        json_t *o = uplink_answer_json(x);
        json_t *id = json_object_get(o, "capture_id");
        if (json_is_integer(id) && json_integer_value(id) > 0) {
            capture_id = json_integer_value(id);
            slot = json_integer_value(json_object_get(o, "slot"));
            snprintf(state, sizeof state, "%s",
                     json_string_value(json_object_get(o, "task_state"))
                         ? json_string_value(json_object_get(o, "task_state"))
                         : "running");
        } else {
            /* Claiming again could take a second slot: never. */
            v = V_REFUSED;
            snprintf(msg, sizeof msg, "the answer has no capture_id");
        }
        json_decref(o);
    } else if (v == V_GONE || v == V_REFUSED) {
        uplink_server_message(x, msg, sizeof msg);
    }

    enum { KEPT, SENT, DONE, DROPPED, REFUSED } outcome = KEPT;
    struct uplink_task_item copy = {0};
    pthread_mutex_lock(&U.lock);
    struct uplink_task_item *it = item_find_locked(x->handle);
    int found = it != NULL;
    if (it) {
        it->busy = 0;
        copy = *it;
        copy.next = NULL;
        copy.gz = NULL;
    }
    if (it && v == V_OK) {
        if (x->kind == X_CLAIM) {
            it->capture_id = capture_id;
        } else {
            outcome = x->kind == X_SNAPSHOTS ? SENT : DONE;
            item_drop_locked(it);
        }
    } else if (it && (v == V_GONE || v == V_REFUSED)) {
        if (x->kind == X_SNAPSHOTS && status == 409) /* stored before */
            outcome = SENT;
        else if (x->kind == X_CLAIM && status == 409)
            outcome = REFUSED;
        else
            outcome = DROPPED;
        item_drop_locked(it);
    }
    if (outcome == SENT)
        U.stats.captures_sent++;
    else if (outcome == REFUSED)
        U.stats.captures_refused++;
    else if (outcome == DROPPED && copy.is_capture)
        U.stats.captures_dropped++;
    pthread_mutex_unlock(&U.lock);

    if (uplink_outbox_next(L, x, v, status, now, &L->task_backoff_ms, &L->next_task_ms))
        return;
    if (!found)
        return; /* dropped meanwhile (an old event, at overflow) */
    if (x->kind == X_CLAIM && v == V_OK) {
        agent_log("uplink: capture of task %" PRId64 " (trace %s, %" PRId64
                  " ms) claimed: capture %" PRId64 ", slot %" PRId64 ", task %s",
                  copy.task_id, copy.cap.trace_id, copy.cap.total_ms, capture_id, slot, state);
        if (strcmp(state, "running") != 0)
            end_task(L, copy.task_id, state);
    } else if (outcome == SENT) {
        agent_log("uplink: capture %" PRId64 " of task %" PRId64 " uploaded (%zu bytes, %" PRIu64
                  " snapshots%s)",
                  copy.capture_id, copy.task_id, copy.len, copy.cap.snapshots,
                  status == 409 ? ", stored before" : "");
    } else if (outcome == REFUSED) {
        agent_log("uplink: capture of task %" PRId64 " (trace %s) refused: %s", copy.task_id,
                  copy.cap.trace_id, msg);
        end_task(L, copy.task_id, "refused a capture");
    } else if (outcome == DROPPED) {
        agent_log("uplink: %s of task %" PRId64 " refused with %ld (%s): dropped",
                  uplink_xfer_name[x->kind], copy.task_id, status, msg);
    }
}
