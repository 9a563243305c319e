/*
 * settings.c — the effective trigger and default-sampling settings of an
 * app, as the people's API shows them and the agents receive them.
 *
 * Settings are JSON documents in the store under the keys "triggers" and
 * "default_sampling", one workspace-wide (app "") and one override per
 * app.  api_setting.c stores complete, validated documents; here the
 * effective document is built in layers — the defaults, then the
 * workspace document, then the app's override — each layer replacing the
 * fields it holds.  For complete documents that is exactly "the override,
 * else the workspace, else the defaults"; layering only matters for a
 * document that lacks a field or holds a bad one (written by another
 * version, or by hand), which then falls back to the layer below instead
 * of reaching agents.  So a stored document is not trusted: a field is
 * taken only with its type and range: the rules below (api.h), which
 * api_setting.c enforces on writes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"

const struct settings_rule settings_trigger_rules[] = {
    {"enabled", 1, 0, 1},
    {"threshold", 0, 1, 100},
    {"duration_s", 0, 10, 3600},
    {"cooldown_s", 0, 0, 86400},
    {NULL, 0, 0, 0},
};

const struct settings_rule settings_sampling_rules[] = {
    {"enabled", 1, 0, 1},
    {"window_s", 0, 10, 3600},
    {"period_s", 0, 60, 86400},
    {NULL, 0, 0, 0},
};

int settings_value_ok(const struct settings_rule *r, json_t *v)
{
    if (r->is_bool)
        return json_is_boolean(v);
    return json_is_integer(v) && json_integer_value(v) >= r->min &&
           json_integer_value(v) <= r->max;
}

static json_t *trigger_defaults(void)
{
    return json_pack("{s:b,s:i,s:i,s:i}", "enabled", 1, "threshold", 80, "duration_s", 120,
                     "cooldown_s", 600);
}

/* Copies into dst every field of src that obeys rules; others are left
 * as they are in dst.  0 or -ENOMEM. */
static int overlay(json_t *dst, json_t *src, const struct settings_rule *rules)
{
    if (!json_is_object(src))
        return 0;
    for (const struct settings_rule *r = rules; r->name; r++) {
        json_t *v = json_object_get(src, r->name);
        if (v && settings_value_ok(r, v) && json_object_set(dst, r->name, v) != 0)
            return -ENOMEM;
    }
    return 0;
}

/* Lays the stored document of key for app over doc with apply().  A
 * missing document changes nothing; an unparsable one is skipped (see
 * the top comment).  0, or -1 with res set. */
static int layer(struct server *srv, const char *key, const char *app, json_t *doc,
                 int (*apply)(json_t *doc, json_t *stored), struct response *res)
{
    char *text = NULL;
    int rc = store_setting_get(srv->store, key, app, &text);
    if (rc == -ENOENT)
        return 0;
    if (rc != 0) {
        http_store_error(res, srv->store, rc, NULL);
        return -1;
    }
    json_t *stored = json_loads(text, 0, NULL);
    free(text);
    rc = stored ? apply(doc, stored) : 0;
    json_decref(stored);
    if (rc != 0) {
        http_error(res, 500, "out of memory reading the %s settings", key);
        return -1;
    }
    return 0;
}

static int apply_triggers(json_t *doc, json_t *stored)
{
    if (overlay(json_object_get(doc, "cpu"), json_object_get(stored, "cpu"),
                settings_trigger_rules) != 0)
        return -ENOMEM;
    return overlay(json_object_get(doc, "memory"), json_object_get(stored, "memory"),
                   settings_trigger_rules);
}

static int apply_sampling(json_t *doc, json_t *stored)
{
    /* window_s <= period_s must hold of the whole, so a stored document
     * that breaks it is refused as a whole. */
    json_t *trial = json_deep_copy(doc);
    if (!trial)
        return -ENOMEM;
    if (overlay(trial, stored, settings_sampling_rules) != 0) {
        json_decref(trial);
        return -ENOMEM;
    }
    if (json_integer_value(json_object_get(trial, "window_s")) <=
        json_integer_value(json_object_get(trial, "period_s")))
        json_object_update(doc, trial);
    json_decref(trial);
    return 0;
}

/* defaults, then the workspace document, then app's override. */
static json_t *effective(struct server *srv, const char *key, const char *app, json_t *doc,
                         int (*apply)(json_t *, json_t *), struct response *res)
{
    if (!doc) {
        http_error(res, 500, "out of memory building the %s settings", key);
        return NULL;
    }
    if (layer(srv, key, "", doc, apply, res) != 0 ||
        (app && app[0] && layer(srv, key, app, doc, apply, res) != 0)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

json_t *settings_triggers(struct server *srv, const char *app, struct response *res)
{
    json_t *doc = json_pack("{s:o,s:o}", "cpu", trigger_defaults(), "memory", trigger_defaults());
    return effective(srv, "triggers", app, doc, apply_triggers, res);
}

json_t *settings_default_sampling(struct server *srv, const char *app, struct response *res)
{
    json_t *doc =
        json_pack("{s:b,s:i,s:i}", "enabled", 1, "window_s", 120, "period_s", 3600);
    return effective(srv, "default_sampling", app, doc, apply_sampling, res);
}
