/*
 * api_setting.c — what people set for the agents: trigger settings,
 * default sampling (workspace-wide, with per-app overrides) and Profile
 * Now requests (docs/api.md, "Profile Now", "Triggers", "Default
 * sampling").
 *
 * A PUT is partial: the fields it gives are validated one by one and laid
 * over the current *effective* settings of the target (settings.c), and
 * the complete result is stored — so an app override, once written, no
 * longer follows later workspace changes of the fields it did not name.
 * That is what a person sees in the console (the whole effective
 * document) and what makes "the override, else the workspace" a simple
 * rule.  Every change bumps the store's settings version and wakes the
 * agents' long-polls (server_notify), which is how settings reach agents
 * within one heartbeat interval without a restart.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"

#define TRIGGERS_ROUTE "/api/v1/triggers"
#define SAMPLING_ROUTE "/api/v1/default-sampling"

/* One settings resource: its route, its store key, its document's parts
 * (the triggers have "cpu" and "memory" objects; default sampling is
 * flat) and how to compute its effective value. */
struct setting_kind {
    const char *route;
    const char *key;                   /* store key */
    const char *const *parts;          /* sub-objects, NULL = flat document */
    const struct settings_rule *rules; /* api.h, the ranges of docs/api.md */
    json_t *(*effective)(struct server *srv, const char *app, struct response *res);
};

static const char *const trigger_parts[] = {"cpu", "memory", NULL};

static const struct setting_kind triggers_kind = {TRIGGERS_ROUTE, "triggers", trigger_parts,
                                                  settings_trigger_rules, settings_triggers};
static const struct setting_kind sampling_kind = {SAMPLING_ROUTE, "default_sampling", NULL,
                                                  settings_sampling_rules,
                                                  settings_default_sampling};

/* The resource of a settings route: its path is one of the two. */
static const struct setting_kind *kind_of(const struct request *req)
{
    return strcmp(req->path, SAMPLING_ROUTE) == 0 ? &sampling_kind : &triggers_kind;
}

/* "cpu.threshold" or "window_s", for messages. */
static void field_path(char *buf, size_t len, const char *part, const char *name)
{
    if (part)
        snprintf(buf, len, "%s.%s", part, name);
    else
        snprintf(buf, len, "%s", name);
}

/* Lays the fields of patch over dst, each checked against rules; refuses
 * unknown fields.  part names the sub-object in messages (NULL = top).
 * 0, or -EINVAL with a 400 on res. */
static int merge_fields(json_t *dst, json_t *patch, const char *part,
                        const struct settings_rule *rules, struct response *res)
{
    char path[64];
    const char *key;
    json_t *v;

    json_object_foreach(patch, key, v) {
        const struct settings_rule *r = rules;
        while (r->name && strcmp(r->name, key) != 0)
            r++;
        if (!r->name) {
            char known[128] = "";
            for (const struct settings_rule *k = rules; k->name; k++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         k == rules ? "" : ", ", k->name);
            http_error(res, 400, "unknown field '%s%s%.64s' (known: %s)", part ? part : "",
                       part ? "." : "", key, known);
            return -EINVAL;
        }
        if (!settings_value_ok(r, v)) {
            field_path(path, sizeof path, part, r->name);
            if (r->is_bool)
                http_error(res, 400, "field '%s' must be a boolean", path);
            else
                http_error(res, 400, "field '%s' must be an integer in %lld..%lld", path,
                           (long long)r->min, (long long)r->max);
            return -EINVAL;
        }
        if (json_object_set(dst, r->name, v) != 0) {
            http_error(res, 500, "out of memory");
            return -ENOMEM;
        }
    }
    return 0;
}

/* Lays a PUT body over the effective document doc.  0 or -EINVAL (400). */
static int merge_body(const struct setting_kind *kind, json_t *doc, json_t *body,
                      struct response *res)
{
    if (!kind->parts)
        return merge_fields(doc, body, NULL, kind->rules, res);

    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        const char *const *p = kind->parts;
        while (*p && strcmp(*p, key) != 0)
            p++;
        if (!*p) {
            http_error(res, 400, "unknown field '%.64s' (known: cpu, memory)", key);
            return -EINVAL;
        }
        if (!json_is_object(v)) {
            http_error(res, 400, "field '%s' must be an object", *p);
            return -EINVAL;
        }
        int rc = merge_fields(json_object_get(doc, *p), v, *p, kind->rules, res);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The optional ?app= of a settings route: NULL for the workspace ("" is
 * the workspace too).  0 or -EINVAL with res set. */
static int app_param(const struct request *req, struct response *res, const char **app)
{
    if (qp_string(req, res, "app", STORE_APP_MAX, app) != 0)
        return -EINVAL;
    if (*app && !(*app)[0])
        *app = NULL;
    return 0;
}

/* Whether app has an override of kind.  1, 0, or -1 with res set. */
static int has_override(struct server *srv, const struct setting_kind *kind, const char *app,
                        struct response *res)
{
    char *text = NULL;
    int rc = store_setting_get(srv->store, kind->key, app, &text);
    free(text);
    if (rc == 0)
        return 1;
    if (rc == -ENOENT)
        return 0;
    http_store_error(res, srv->store, rc, NULL);
    return -1;
}

/* {"app", "overridden", …effective document…} into res. */
static enum http_result answer_document(struct server *srv, const struct setting_kind *kind,
                                        const char *app, struct response *res)
{
    int overridden = 0;
    if (app && (overridden = has_override(srv, kind, app, res)) < 0)
        return HTTP_DONE;
    json_t *doc = kind->effective(srv, app, res);
    if (!doc)
        return HTTP_DONE;
    json_t *out = json_pack("{s:o,s:b}", "app", app ? json_string(app) : json_null(),
                            "overridden", overridden);
    if (!out || json_object_update(out, doc) != 0) {
        json_decref(out);
        json_decref(doc);
        http_error(res, 500, "out of memory");
        return HTTP_DONE;
    }
    json_decref(doc);
    http_json(res, 200, out);
    return HTTP_DONE;
}

static enum http_result get_setting(struct request *req, struct response *res)
{
    const struct setting_kind *kind = kind_of(req);
    const char *app;
    if (app_param(req, res, &app) != 0)
        return HTTP_DONE;
    return answer_document(req->srv, kind, app, res);
}

static enum http_result put_setting(struct request *req, struct response *res)
{
    const struct setting_kind *kind = kind_of(req);
    struct server *srv = req->srv;
    const char *app;
    if (app_param(req, res, &app) != 0)
        return HTTP_DONE;
    json_t *body = http_body_object(req, res);
    if (!body)
        return HTTP_DONE;
    json_t *doc = kind->effective(srv, app, res);
    if (!doc) {
        json_decref(body);
        return HTTP_DONE;
    }
    int rc = merge_body(kind, doc, body, res);
    json_decref(body);
    if (rc == 0 && kind == &sampling_kind) {
        json_int_t window = json_integer_value(json_object_get(doc, "window_s"));
        json_int_t period = json_integer_value(json_object_get(doc, "period_s"));
        if (window > period) {
            http_error(res, 400,
                       "field 'window_s' must be at most period_s (window_s %lld > period_s "
                       "%lld)",
                       (long long)window, (long long)period);
            rc = -EINVAL;
        }
    }
    if (rc != 0) {
        json_decref(doc);
        return HTTP_DONE;
    }
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    if (!text) {
        http_error(res, 500, "out of memory");
        return HTTP_DONE;
    }
    rc = store_setting_put(srv->store, kind->key, app ? app : "", text);
    free(text);
    if (rc != 0) {
        http_store_error(res, srv->store, rc, NULL);
        return HTTP_DONE;
    }
    server_notify(srv);
    return answer_document(srv, kind, app, res);
}

/* Removes the app's override (or, without app, the workspace document:
 * back to the defaults); answers the settings now in effect. */
static enum http_result delete_setting(struct request *req, struct response *res)
{
    const struct setting_kind *kind = kind_of(req);
    struct server *srv = req->srv;
    const char *app;
    if (app_param(req, res, &app) != 0)
        return HTTP_DONE;
    int there = has_override(srv, kind, app ? app : "", res);
    if (there < 0)
        return HTTP_DONE;
    if (!there) {
        if (app)
            http_error(res, 404, "app '%s' has no %s override", app, kind->key);
        else
            http_error(res, 404, "no workspace %s settings are stored (defaults apply)",
                       kind->key);
        return HTTP_DONE;
    }
    int rc = store_setting_put(srv->store, kind->key, app ? app : "", NULL);
    if (rc != 0) {
        http_store_error(res, srv->store, rc, NULL);
        return HTTP_DONE;
    }
    server_notify(srv);
    return answer_document(srv, kind, app, res);
}

/* ------------------------------------------------------------------ */
/* Profile Now                                                         */

/* How many agents of app (NULL = any) are running now. */
static int count_running(struct server *srv, const char *app, int64_t now_ms, int64_t *count)
{
    /* Only agents seen within two heartbeat intervals can be running: let
     * the store skip the others. */
    struct store_agent_filter f = {
        .app = app,
        .seen_after_ms = now_ms - 2 * (int64_t)srv->cfg.heartbeat_s * 1000,
    };
    struct store_agent *agents = NULL;
    size_t n = 0;
    int rc = store_agent_list(srv->store, &f, &agents, &n);
    if (rc != 0)
        return rc;
    *count = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(agent_status(&agents[i], now_ms, srv->cfg.heartbeat_s), "running") == 0)
            (*count)++;
    free(agents);
    return 0;
}

static enum http_result post_profile_now(struct request *req, struct response *res)
{
    static const char *const allowed[] = {"app", "duration_s", NULL};
    struct server *srv = req->srv;
    json_t *body = http_body_object(req, res);
    if (!body)
        return HTTP_DONE;

    struct store_profile_now r = {.created_ms = req->now_ms, .token_id = req->token.id};
    const char *app = NULL;
    if (jv_only(res, body, allowed) != 0 ||
        jv_string(res, body, "app", STORE_APP_MAX, 0, NULL, &app) != 0 ||
        jv_int(res, body, "duration_s", 1, 3600, 0, 120, &r.duration_s) != 0) {
        json_decref(body);
        return HTTP_DONE;
    }
    if (app)
        snprintf(r.app, sizeof r.app, "%s", app);
    json_decref(body);

    int rc = store_profile_now_create(srv->store, &r);
    if (rc != 0) {
        http_store_error(res, srv->store, rc, NULL);
        return HTTP_DONE;
    }
    /* Wake the polls first: the count below is for the person, the
     * agents should not wait for it. */
    server_notify(srv);

    int64_t agents = 0;
    rc = count_running(srv, r.app[0] ? r.app : NULL, req->now_ms, &agents);
    if (rc != 0) {
        /* The request is stored and delivered: a failed count must not
         * make the caller think it was not (and retry, asking twice). */
        agents = -1;
    }
    json_t *out = api_profile_now_json(&r);
    if (!out || json_object_set_new(out, "agents", agents >= 0 ? json_integer(agents)
                                                               : json_null()) != 0) {
        json_decref(out);
        http_error(res, 500, "out of memory");
        return HTTP_DONE;
    }
    http_json(res, 201, out);
    return HTTP_DONE;
}

static enum http_result get_profile_now(struct request *req, struct response *res)
{
    int64_t limit;
    if (qp_int(req, res, "limit", 1, 1000, 20, &limit) != 0)
        return HTTP_DONE;
    struct store_profile_now *rs = NULL;
    size_t n = 0;
    int rc = store_profile_now_recent(req->srv->store, (size_t)limit, &rs, &n);
    if (rc != 0) {
        http_store_error(res, req->srv->store, rc, NULL);
        return HTTP_DONE;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        if (json_array_append_new(list, api_profile_now_json(&rs[i])) != 0) {
            json_decref(list);
            list = NULL;
        }
    free(rs);
    json_t *out = list ? json_pack("{s:o}", "requests", list) : NULL;
    if (!out) {
        http_error(res, 500, "out of memory");
        return HTTP_DONE;
    }
    http_json(res, 200, out);
    return HTTP_DONE;
}

const struct route api_setting_routes[] = {
    {"GET", TRIGGERS_ROUTE, ROLES_READ, 0, get_setting},
    {"PUT", TRIGGERS_ROUTE, ROLES_WRITE, 0, put_setting},
    {"DELETE", TRIGGERS_ROUTE, ROLES_WRITE, 0, delete_setting},
    {"GET", SAMPLING_ROUTE, ROLES_READ, 0, get_setting},
    {"PUT", SAMPLING_ROUTE, ROLES_WRITE, 0, put_setting},
    {"DELETE", SAMPLING_ROUTE, ROLES_WRITE, 0, delete_setting},
    {"POST", "/api/v1/profile-now", ROLES_WRITE, 0, post_profile_now},
    {"GET", "/api/v1/profile-now", ROLES_READ, 0, get_profile_now},
    {NULL, NULL, 0, 0, NULL},
};
