/*
 * api.h — what the api_*.c files share: JSON renderings of stored
 * objects and the settings logic (effective triggers and default
 * sampling of an app), so that the agent protocol and the people's API
 * show the same things the same way.
 */
#ifndef SONDE_API_H
#define SONDE_API_H

#include <jansson.h>

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
/* {"id","app"|null,"duration_s","created_ms"}. */
json_t *api_profile_now_json(const struct store_profile_now *r);
/* {"id","name","role","created_ms","last_used_ms"|null,"revoked_ms"|null}. */
json_t *api_token_json(const struct store_token *t);

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

#endif
