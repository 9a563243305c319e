/*
 * render.c — stored objects as the API shows them (api.h, "render.c"):
 * agents, sessions, Profile Now requests, tokens, tasks and captures.
 * One rendering per object, shared by the people's API and the agent
 * protocol, so both show the same thing the same way.
 *
 * Store conventions become JSON conventions here: "unknown" numbers
 * (pct < 0) and absent times or ids (0) are null; durations kept in ms
 * are shown in whole seconds (fields ending _s); comma lists are arrays.
 */
#include <string.h>

#include "server/api.h"

/* A percentage, or null when never reported (< 0). */
static json_t *pct_json(double pct)
{
    return pct < 0 ? json_null() : json_real(pct);
}

/* A time or id, or null when 0 (never / none). */
static json_t *opt_int(int64_t v)
{
    return v ? json_integer(v) : json_null();
}

const char *agent_status(const struct store_agent *a, int64_t now_ms, int heartbeat_s)
{
    if (a->stopped_ms > 0)
        return "stopped";
    /* Two missed heartbeats make an agent stale. */
    int64_t window = 2 * (int64_t)heartbeat_s * 1000;
    return now_ms - a->last_seen_ms <= window ? "running" : "stale";
}

json_t *api_agent_json(const struct store_agent *a, int64_t now_ms, int heartbeat_s)
{
    return json_pack("{s:I,s:s,s:s,s:I,s:s,s:s,s:I,s:I,s:I,s:o,s:s,s:o,s:o,s:I}", "id",
                     (json_int_t)a->id, "app", a->app, "instance", a->instance, "pid",
                     (json_int_t)a->pid, "agent_version", a->agent_version, "cmdline",
                     a->cmdline, "started_ms", (json_int_t)a->started_ms, "registered_ms",
                     (json_int_t)a->registered_ms, "last_seen_ms", (json_int_t)a->last_seen_ms,
                     "stopped_ms", opt_int(a->stopped_ms), "status",
                     agent_status(a, now_ms, heartbeat_s), "cpu_pct", pct_json(a->cpu_pct),
                     "mem_pct", pct_json(a->mem_pct), "dropped_uploads",
                     (json_int_t)a->dropped_uploads);
}

/* "cpu,wall" → ["cpu","wall"]; empty items are skipped. */
static json_t *types_json(const char *list)
{
    json_t *arr = json_array();
    const char *p = list;
    while (arr && p && *p) {
        size_t n = strcspn(p, ",");
        if (n > 0 && json_array_append_new(arr, json_stringn(p, n)) < 0) {
            json_decref(arr);
            return NULL;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return arr;
}

json_t *api_session_json(const struct store_session *s)
{
    /* Planned or actual duration, in whole seconds, rounded to nearest. */
    int64_t duration_s = s->duration_ms > 0 ? (s->duration_ms + 500) / 1000 : 0;
    return json_pack("{s:I,s:I,s:s,s:o,s:s,s:s,s:I,s:I,s:I,s:o,s:I,s:I,s:o,s:o,s:s,s:b,s:I,"
                     "s:I,s:I}",
                     "id", (json_int_t)s->id, "agent_id", (json_int_t)s->agent_id,
                     "triggered_by", s->triggered_by, "request_id", opt_int(s->request_id),
                     "app", s->app, "instance", s->instance, "pid", (json_int_t)s->pid,
                     "start_ms", (json_int_t)s->start_ms, "duration_s", (json_int_t)duration_s,
                     "profile_types", types_json(s->profile_types), "samples",
                     (json_int_t)s->samples, "traces", (json_int_t)s->traces, "cpu_pct",
                     pct_json(s->cpu_pct), "mem_pct", pct_json(s->mem_pct), "state", s->state,
                     "has_profile", s->profile_bytes > 0, "profile_bytes",
                     (json_int_t)s->profile_bytes, "created_ms", (json_int_t)s->created_ms,
                     "updated_ms", (json_int_t)s->updated_ms);
}

json_t *api_profile_now_json(const struct store_profile_now *r)
{
    return json_pack("{s:I,s:o,s:I,s:I,s:s,s:o}", "id", (json_int_t)r->id, "app",
                     r->app[0] ? json_string(r->app) : json_null(), "duration_s",
                     (json_int_t)r->duration_s, "created_ms", (json_int_t)r->created_ms,
                     "triggered_by", r->triggered_by[0] ? r->triggered_by : "profile-now",
                     "loadtest_id", opt_int(r->loadtest_id));
}

json_t *api_token_json(const struct store_token *t)
{
    return json_pack("{s:I,s:s,s:s,s:I,s:o,s:o}", "id", (json_int_t)t->id, "name", t->name,
                     "role", t->role, "created_ms", (json_int_t)t->created_ms, "last_used_ms",
                     opt_int(t->last_used_ms), "revoked_ms", opt_int(t->revoked_ms));
}

json_t *api_json_with(json_t *obj, const char *key, json_t *v)
{
    if (!obj || !v) {
        json_decref(obj);
        json_decref(v);
        return NULL;
    }
    if (json_object_set_new(obj, key, v) < 0) { /* releases v */
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *api_task_json(const struct store_task *t)
{
    json_t *creator = json_pack("{s:o,s:s}", "token_id", opt_int(t->token_id), "name",
                                t->creator);
    return json_pack("{s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:o,s:I,s:o,s:I,s:o,s:I}", "id",
                     (json_int_t)t->id, "app", t->app, "interface", t->interface,
                     "duration_min", (json_int_t)t->duration_min, "threshold_ms",
                     (json_int_t)t->threshold_ms, "frequency_ms", (json_int_t)t->frequency_ms,
                     "max_samples", (json_int_t)t->max_samples, "state", t->state, "creator",
                     creator, "created_ms", (json_int_t)t->created_ms, "started_ms",
                     opt_int(t->started_ms), "ends_ms", (json_int_t)t->ends_ms, "ended_ms",
                     opt_int(t->ended_ms), "captures", (json_int_t)t->captures);
}

json_t *api_task_agent_json(const struct store_task_agent *a)
{
    return json_pack("{s:I,s:s,s:I,s:o,s:o,s:o,s:I}", "agent_id", (json_int_t)a->agent_id,
                     "instance", a->instance, "pid", (json_int_t)a->pid, "delivered_ms",
                     opt_int(a->delivered_ms), "started_ms", opt_int(a->started_ms),
                     "stopped_ms", opt_int(a->stopped_ms), "captures", (json_int_t)a->captures);
}

json_t *api_capture_json(const struct store_capture *c)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:s,s:s,s:I,s:s,s:s,s:I,s:o,s:o,s:I,s:I,s:s,s:I,s:I}",
                     "id", (json_int_t)c->id, "task_id", (json_int_t)c->task_id, "agent_id",
                     (json_int_t)c->agent_id, "slot", (json_int_t)c->slot, "app", c->app,
                     "instance", c->instance, "pid", (json_int_t)c->pid, "trace_id",
                     c->trace_id, "interface", c->interface, "start_ms",
                     (json_int_t)c->start_ms, "response_code", opt_int(c->response_code),
                     "peer", c->peer[0] ? json_string(c->peer) : json_null(), "total_ms",
                     (json_int_t)c->total_ms, "snapshots", (json_int_t)c->snapshots, "state",
                     c->state, "profile_bytes", (json_int_t)c->profile_bytes, "created_ms",
                     (json_int_t)c->created_ms);
}
