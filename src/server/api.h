/*
 * api.h — what the api_*.c files share: JSON renderings of stored
 * objects, the settings logic (effective triggers and default sampling of
 * an app), the ingest of uploaded profiles, and the views of one stored
 * flame tree — so that the agent protocol and the people's API show the
 * same things the same way and every upload is checked the same way.
 *
 * Everything here runs on the HTTP pool threads; nothing keeps state
 * between calls (thread-safe as the store is).
 */
#ifndef SONDE_API_H
#define SONDE_API_H

#include <jansson.h>

#include "common/pprof.h"
#include "server/http.h"
#include "server/store.h"

/* --- render.c ------------------------------------------------------ */

/* "running" (seen within 2 heartbeat intervals), "stale", "stopped". */
const char *agent_status(const struct store_agent *a, int64_t now_ms, int heartbeat_s);
/* {"id","app","instance","pid","agent_version","cmdline","started_ms",
 *  "registered_ms","last_seen_ms","stopped_ms"|null,"status","cpu_pct"|null,
 *  "mem_pct"|null}.  New reference. */
json_t *api_agent_json(const struct store_agent *a, int64_t now_ms, int heartbeat_s);
/* {"id","agent_id","triggered_by","request_id"|null,"app","instance","pid",
 *  "start_ms","duration_s","profile_types":[…],"samples","traces",
 *  "cpu_pct"|null,"mem_pct"|null,"state","has_profile","profile_bytes",
 *  "created_ms","updated_ms"}. */
json_t *api_session_json(const struct store_session *s);
/* {"id","app"|null,"duration_s","created_ms","triggered_by" (profile-now
 * or load-test),"loadtest_id"|null}. */
json_t *api_profile_now_json(const struct store_profile_now *r);
/* {"id","name","role","created_ms","last_used_ms"|null,"revoked_ms"|null}. */
json_t *api_token_json(const struct store_token *t);
/* {"id","app","interface","duration_min","threshold_ms","frequency_ms",
 *  "max_samples","state","creator":{"token_id"|null,"name"},"created_ms",
 *  "started_ms"|null,"ends_ms","ended_ms"|null,"captures"}. */
json_t *api_task_json(const struct store_task *t);
/* {"agent_id","instance","pid","delivered_ms"|null,"started_ms"|null,
 *  "stopped_ms"|null,"captures"}. */
json_t *api_task_agent_json(const struct store_task_agent *a);
/* {"id","task_id","agent_id","slot","app","instance","pid","trace_id",
 *  "interface","start_ms","response_code"|null,"peer"|null,"total_ms",
 *  "snapshots","state","profile_bytes","created_ms"}. */
json_t *api_capture_json(const struct store_capture *c);
/* obj with member key set to v, taking both references: obj, or NULL
 * (both released) when either is NULL or setting runs out of memory —
 * for http_json, which answers NULL with a 500. */
json_t *api_json_with(json_t *obj, const char *key, json_t *v);

/* --- settings.c ---------------------------------------------------- */

/* One field of a settings document: an integer in [min, max], or a
 * boolean (is_bool).  The ranges are those of docs/api.md: api_setting.c
 * refuses a write outside them, settings.c skips a stored field outside
 * them.  Each table ends with a {NULL} entry. */
struct settings_rule {
    const char *name;
    int is_bool;
    int64_t min, max;
};
extern const struct settings_rule settings_trigger_rules[];  /* of "cpu" and of "memory" */
extern const struct settings_rule settings_sampling_rules[]; /* of default sampling */
/* 1 when v is a value r allows, else 0. */
int settings_value_ok(const struct settings_rule *r, json_t *v);

/* Effective trigger settings of app ("" or NULL = workspace):
 *   {"cpu":{"enabled","threshold","duration_s","cooldown_s"},"memory":{…}}
 * the app's override where one is stored, else the workspace document,
 * else the defaults (on, 80, 120, 600).  NULL with 500 set on res on a
 * store error.  New reference. */
json_t *settings_triggers(struct server *srv, const char *app, struct response *res);
/* {"enabled","window_s","period_s"}; defaults on, 120, 3600. */
json_t *settings_default_sampling(struct server *srv, const char *app, struct response *res);

/* --- ingest.c ------------------------------------------------------ */

/* An upload accepted by ingest_upload: what to store.  Free with
 * ingest_free. */
struct ingest {
    const uint8_t *pprof; /* gzipped bytes to store: the body, or gz */
    size_t pprof_len;
    uint8_t *tree;        /* flame tree blob (views.h) */
    size_t tree_len;
    int64_t samples;      /* sum of the first "count" sample type, else the
                             number of samples */
    char *sample_types;   /* "samples/count,cpu/nanoseconds" */
    json_t *types;        /* ["samples/count", …] */
    struct pprof_profile *profile; /* decoded and validated */
    uint8_t *raw, *gz;    /* owned buffers */
    size_t raw_len;
};

/* Checks the request's body as a profile upload: gzipped (or raw)
 * pprof, inflated within cfg.max_profile, decoded and validated, its
 * sample types summarized and its flame tree built.  0 with *in filled,
 * or -1 with res set (400 corrupt/empty, 413 too large, 500 out of
 * memory) and nothing to free. */
int ingest_upload(struct server *srv, const struct request *req, struct ingest *in,
                  struct response *res);
void ingest_free(struct ingest *in);

/* Most traces of one profile indexed (the rest are not findable by
 * GET /api/v1/traces/…). */
#define INGEST_MAX_TRACES 10000
/* The distinct "trace_id" string labels of p that are valid trace ids
 * (jv_trace_id_ok), each with the first "interface" label seen with it
 * ("" when none or unstorable) and its samples (as ingest counts them),
 * sorted by trace id; at most INGEST_MAX_TRACES.  *out malloc'ed (NULL
 * when none).  0 or -ENOMEM. */
int ingest_traces(const struct pprof_profile *p, struct store_trace_span **out, size_t *n);

/* --- api_task.c ---------------------------------------------------- */

/* Lets the store end the tasks whose time is up (store_task_expire) and
 * wakes the polls when one did: their agents must stop watching.  Called
 * before any answer about a task's state and by the server's tick.  A
 * failure is only logged (the caller goes on; the next call retries). */
void api_task_expire(struct server *srv, int64_t now_ms);

/* --- api_loadtest.c ------------------------------------------------ */

/* Fails the load tests left "in progress" by a server that died (kill
 * -9): each one whose start is older than its duration +
 * LOADTEST_GRACE_MS, through store_loadtest_abandon ("server stopped
 * during the test"), and wakes the polls when one was.  Called by the
 * server's tick; a failure is only logged. */
void api_loadtest_abandon(struct server *srv, int64_t now_ms);

/* --- api_view.c ---------------------------------------------------- */

/* Answers GET /api/v1/captures/{id}/flamegraph|flame|top|collapsed (by
 * the path's last segment): the view of capture req->id's snapshots,
 * computed exactly as a session's (same JSON, "sessions": 1), sample type
 * "samples" unless type= says otherwise.  404 for an unknown capture or
 * one without snapshots yet. */
enum http_result api_view_capture(struct request *req, struct response *res);

#endif
