/*
 * uplink_poll.c — the link thread's long-poll (docs/agent-protocol.md §2,
 * §7) and what it brings for the agent thread: settings, Profile Now
 * requests and the app's running tasks, checked here and queued as
 * uplink_work (uplink.h) under U.lock.
 *
 * The poll carries cursor, settings_version and tasks_version; the server
 * answers at once when any of them is behind, else holds the request up
 * to timeout_s.  "tasks" is null while the agent's tasks_version is the
 * server's, else the app's whole list of running tasks: every field is
 * checked against the protocol's range and an entry that fails is skipped
 * with a log line naming the field (the others still apply); at most
 * UPLINK_MAX_TASKS are kept.  After each registration the version starts
 * again at 0 and the first answer is the whole truth: a null there means
 * no task at all (a list from before, say from another store, is
 * replaced by nothing).
 *
 * Link thread only (uplink_internal.h).
 */
#include "uplink_curl.h"
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "uplink_internal.h"

#define POLL_SLACK_MS 5000 /* beyond the poll's own timeout_s */

int uplink_int_in(json_t *v, int lo, int hi, int def)
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
    t->threshold = uplink_int_in(json_object_get(o, "threshold"), 1, 100, t->threshold);
    t->duration_s = uplink_int_in(json_object_get(o, "duration_s"), 1, 86400, t->duration_s);
    t->cooldown_s = uplink_int_in(json_object_get(o, "cooldown_s"), 0, 86400, t->cooldown_s);
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
    s->sampling_window_s =
        uplink_int_in(json_object_get(ds, "window_s"), 1, 86400, s->sampling_window_s);
    s->sampling_period_s =
        uplink_int_in(json_object_get(ds, "period_s"), 1, 86400, s->sampling_period_s);
}

void uplink_deliver(json_t *settings, json_t *requests)
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
            uplink_int_in(json_object_get(r, "duration_s"), 1, 3600, 120);
        U.work.n_profile_now++;
    }
    if (U.work.settings_changed || U.work.n_profile_now)
        atomic_store_explicit(&U.work_flag, 1, memory_order_release);
    pthread_mutex_unlock(&U.lock);
    if (dropped)
        agent_log("uplink: %d Profile Now request(s) dropped: %d already waiting", dropped,
                  UPLINK_MAX_PROFILE_NOW);
}

/* ------------------------------------------------------------------ */
/* Tasks                                                               */

/* t's integer field name in [lo, hi] into *out, else why says so. */
static int task_field(json_t *t, const char *name, int64_t lo, int64_t hi, int64_t *out,
                      char *why, size_t cap)
{
    json_t *v = json_object_get(t, name);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(why, cap, "%s must be an integer from %" PRId64 " to %" PRId64, name, lo, hi);
        return -EINVAL;
    }
    *out = json_integer_value(v);
    return 0;
}

/* One entry of the poll's "tasks" into s.  0, or -EINVAL with why. */
static int parse_task(json_t *t, struct task_spec *s, char *why, size_t cap)
{
    memset(s, 0, sizeof *s);
    if (!json_is_object(t)) {
        snprintf(why, cap, "not an object");
        return -EINVAL;
    }
    int64_t id, threshold, frequency, max, captures, ends;
    if (task_field(t, "id", 1, INT64_MAX, &id, why, cap) ||
        task_field(t, "threshold_ms", 50, 30000, &threshold, why, cap) ||
        task_field(t, "frequency_ms", 5, 1000, &frequency, why, cap) ||
        task_field(t, "max_samples", 1, 100, &max, why, cap) ||
        task_field(t, "captures", 0, max, &captures, why, cap) ||
        task_field(t, "ends_ms", 0, INT64_MAX, &ends, why, cap))
        return -EINVAL;
    json_t *in = json_object_get(t, "interface");
    const char *iface = json_string_value(in);
    size_t len = iface ? json_string_length(in) : 0;
    if (!iface || len < 1 || len >= sizeof s->interface || strlen(iface) != len) {
        snprintf(why, cap, "interface must be a string of 1 to %zu bytes",
                 sizeof s->interface - 1);
        return -EINVAL;
    }
    s->id = id;
    memcpy(s->interface, iface, len + 1);
    s->threshold_ms = (int)threshold;
    s->frequency_ms = (int)frequency;
    s->max_samples = (int)max;
    s->captures = (int)captures;
    s->ends_ms = ends;
    return 0;
}

/* The answer's tasks_version and tasks.  Returns 1 when it held a list. */
static int take_tasks(struct link *L, json_t *o)
{
    json_t *tv = json_object_get(o, "tasks_version");
    if (!json_is_integer(tv) || json_integer_value(tv) < 0)
        return 0; /* a server that knows no tasks */
    json_t *list = json_object_get(o, "tasks");
    int fresh = L->tasks_fresh;
    L->tasks_version = json_integer_value(tv);
    L->tasks_fresh = 0;
    if (!json_is_array(list)) {
        if (list && !json_is_null(list))
            agent_log("uplink: poll answered tasks that are neither null nor a list: ignored");
        else if (fresh)
            uplink_tasks_replace(L, NULL, 0); /* nothing runs for this registration */
        return 0;
    }
    struct task_spec specs[UPLINK_MAX_TASKS];
    int n = 0;
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) {
        char why[128];
        if (n == UPLINK_MAX_TASKS) {
            agent_log("uplink: poll listed %zu tasks: only the first %d are watched",
                      json_array_size(list), UPLINK_MAX_TASKS);
            break;
        }
        if (parse_task(t, &specs[n], why, sizeof why) == 0) {
            n++;
            continue;
        }
        json_t *id = json_object_get(t, "id");
        agent_log("uplink: task %" PRId64 " of the poll skipped: %s",
                  json_is_integer(id) ? (int64_t)json_integer_value(id) : (int64_t)0, why);
    }
    uplink_tasks_replace(L, specs, n);
    return 1;
}

/* ------------------------------------------------------------------ */
/* The poll                                                            */

int uplink_start_poll(struct link *L)
{
    char path[320];
    snprintf(path, sizeof path,
             "/api/v1/agent/poll?agent_id=%" PRId64 "&cursor=%" PRId64
             "&settings_version=%" PRId64 "&tasks_version=%" PRId64 "&timeout_s=%d",
             L->agent_id, L->cursor, L->settings_version, L->tasks_version, L->poll_timeout_s);
    L->poll = uplink_xfer_start(L, X_POLL, "GET", path, NULL, NULL, 0,
                                (int64_t)L->poll_timeout_s * 1000 + POLL_SLACK_MS);
    return L->poll ? 0 : -ENOMEM;
}

void uplink_on_poll(struct link *L, struct xfer *x, enum verdict v, long status, int64_t now)
{
    if (v == V_OK && x->gen == L->gen && L->registered) {
        json_t *o = uplink_answer_json(x);
        if (!json_is_object(o)) {
            json_decref(o);
            agent_log("uplink: the poll's answer is not a JSON object: retrying with backoff");
            L->next_poll_ms = now + uplink_backoff(L, &L->poll_backoff_ms);
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
        uplink_deliver(settings, reqs);
        news |= take_tasks(L, o);
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
        uplink_lost_agent(L, x, status);
        L->next_poll_ms = now;
    } else {
        if (v == V_AUTH) {
            uplink_log_auth(L, x, status);
            L->poll_backoff_ms = UPLINK_BACKOFF_MAX_MS;
        } else if (v == V_REFUSED) {
            char msg[256];
            agent_log("uplink: poll refused with %ld (%s)", status,
                      uplink_server_message(x, msg, sizeof msg));
            L->poll_backoff_ms = UPLINK_BACKOFF_MAX_MS;
        }
        L->next_poll_ms = now + uplink_backoff(L, &L->poll_backoff_ms);
    }
}
