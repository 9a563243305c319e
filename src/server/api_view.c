/*
 * api_view.c — flame graphs, top functions and collapsed stacks computed
 * from stored profiles: of one session (/api/v1/sessions/{id}/…), merged
 * over a selection of sessions (/api/v1/views/…), and the difference of
 * two selections (/api/v1/views/diff).  docs/api.md, role reader.
 *
 * Everything goes through one function, merge_selection(): a selection
 * (one session, or an app's sessions in a time range narrowed by instance
 * and trigger, or the snapshots of one capture of an active profiling
 * task) plus a sample type and label filters → one flame_merge (views.h).
 * One session is simply a selection of one, so its views and the merged
 * views cannot disagree; a capture is one more kind of single profile
 * (api_view_capture, routed from api_capture.c).
 *
 * Two ways to feed the merge:
 *   - no label filter (the common, fast path): the flame tree blobs that
 *     ingest computed, walked with store_tree_foreach (store_tree_get for
 *     one session) — no pprof is decoded;
 *   - label filters: the blobs do not keep per-sample labels, so the
 *     original pprofs are decoded (store_pprof_foreach) and only samples
 *     carrying every label are added.
 *
 * Errors a user can fix are 4xx: an empty selection is 404 ("no profiles
 * match …"), a sample type that none of the selected profiles has is 400
 * naming the types they do have, a diff of two different types is 400.
 * A stored profile that fails to load is 500: the upload was checked, so
 * that is the server's fault.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pprof.h"
#include "server/api.h"
#include "server/http.h"
#include "server/store.h"
#include "server/views.h"

/* Same bound as the session list's filters (api_session.c). */
#define TIME_MS_MAX INT64_C(253402300799999)
#define DAY_MS INT64_C(86400000)
/* Most sessions one merge reads (docs/api.md; the store's own bound). */
#define SELECTION_MAX_SESSIONS 100000
#define TOP_LIMIT_MAX 10000
#define TOP_LIMIT_DEFAULT 50
/* label=KEY:VALUE parameters per request: enough for any real filter
 * (thread, endpoint, …), few enough that matching stays cheap per sample. */
#define LABELS_MAX 16
#define LABEL_MAX 512  /* bytes of one KEY:VALUE, NUL included */
#define TYPE_MAX 64    /* bytes of a sample type name, NUL included */

static const char *const triggered_by_values[] = {
    "profile-now", "cpu-trigger", "memory-trigger", "default-sampling", "load-test", NULL,
};

/* What to merge: one session (session_id > 0), one capture's snapshots
 * (capture_id > 0), else the sessions that match filter.  `what`
 * describes it for messages ("session 17", "app 'checkout' from … to …").
 * default_type: the sample type when the query names none (NULL: each
 * profile's default). */
struct selection {
    int64_t session_id;
    int64_t capture_id;
    const char *default_type;
    struct store_session_filter filter;
    char what[STORE_APP_MAX + STORE_INSTANCE_MAX + 128];
};

/* How to merge: the sample type (NULL = each profile's default, pprof's
 * rule) and the label filters.  Strings point into the request. */
struct view_query {
    const char *type;
    struct flame_label labels[LABELS_MAX];
    char label_buf[LABELS_MAX][LABEL_MAX];
    size_t nlabels;
};

/* ------------------------------------------------------------------ */
/* Parameters                                                          */

/* "PREFIXname" into buf (prefix "", "base." or "cmp."). */
static const char *param(char *buf, size_t len, const char *prefix, const char *name)
{
    snprintf(buf, len, "%s%s", prefix, name);
    return buf;
}

/* The selection named by the PREFIX* parameters of the query. */
static int parse_selection(const struct request *req, struct response *res, const char *prefix,
                           struct selection *sel)
{
    char p[32];
    const char *app, *instance, *trig;
    int64_t session, from, to;

    memset(sel, 0, sizeof *sel);
    if (qp_int(req, res, param(p, sizeof p, prefix, "session"), 1, INT64_MAX, 0, &session) < 0)
        return -EINVAL;
    if (session > 0) {
        /* One session is exactly one profile: a filter beside it would
         * either be redundant or silently ignored, so it is refused. */
        static const char *const others[] = {"app", "from", "to", "instance", "triggered_by"};
        for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
            if (http_query(req, param(p, sizeof p, prefix, others[i]))) {
                http_error(res, 400, "query parameter '%s%s' cannot be combined with '%ssession'",
                           prefix, others[i], prefix);
                return -EINVAL;
            }
        }
        sel->session_id = session;
        snprintf(sel->what, sizeof sel->what, "session %lld", (long long)session);
        return 0;
    }

    if (qp_string(req, res, param(p, sizeof p, prefix, "app"), STORE_APP_MAX, &app) < 0 ||
        qp_string(req, res, param(p, sizeof p, prefix, "instance"), STORE_INSTANCE_MAX,
                  &instance) < 0 ||
        qp_string(req, res, param(p, sizeof p, prefix, "triggered_by"), STORE_KIND_MAX, &trig) <
            0 ||
        qp_int(req, res, param(p, sizeof p, prefix, "to"), 1, TIME_MS_MAX, req->now_ms + 1,
               &to) < 0)
        return -EINVAL;
    /* Default range: the 24 h before `to` (before now when `to` is absent). */
    if (qp_int(req, res, param(p, sizeof p, prefix, "from"), 0, TIME_MS_MAX,
               to > DAY_MS ? to - DAY_MS : 0, &from) < 0)
        return -EINVAL;
    if (!app || !*app) {
        http_error(res, 400, "query parameter '%sapp' is required without '%ssession'",
                   prefix, prefix);
        return -EINVAL;
    }
    if (from >= to) {
        http_error(res, 400, "query parameter '%sto' must be greater than '%sfrom' (%lld)",
                   prefix, prefix, (long long)from);
        return -EINVAL;
    }
    if (trig && *trig) {
        size_t i = 0;
        while (triggered_by_values[i] && strcmp(trig, triggered_by_values[i]) != 0)
            i++;
        if (!triggered_by_values[i]) {
            http_error(res, 400,
                       "query parameter '%striggered_by' must be one of profile-now, cpu-trigger, "
                       "memory-trigger, default-sampling, load-test",
                       prefix);
            return -EINVAL;
        }
    }

    sel->filter.app = app;
    sel->filter.instance = instance && *instance ? instance : NULL;
    sel->filter.triggered_by = trig && *trig ? trig : NULL;
    sel->filter.from_ms = from;
    sel->filter.to_ms = to;
    sel->filter.with_profile = 1;
    sel->filter.limit = SELECTION_MAX_SESSIONS;
    int k = snprintf(sel->what, sizeof sel->what, "app '%s' from %lld to %lld", app,
                     (long long)from, (long long)to);
    if (sel->filter.instance && k > 0 && (size_t)k < sizeof sel->what)
        k += snprintf(sel->what + k, sizeof sel->what - (size_t)k, " instance '%s'", instance);
    if (sel->filter.triggered_by && k > 0 && (size_t)k < sizeof sel->what)
        snprintf(sel->what + k, sizeof sel->what - (size_t)k, " triggered_by '%s'", trig);
    return 0;
}

/* type= and every label=KEY:VALUE (split at the first ':', so a value may
 * hold colons: label=endpoint:/a:b). */
static int parse_view_query(const struct request *req, struct response *res,
                            struct view_query *q)
{
    const char *raw[LABELS_MAX + 1];

    q->nlabels = 0;
    if (qp_string(req, res, "type", TYPE_MAX, &q->type) < 0)
        return -EINVAL;
    if (q->type && !*q->type)
        q->type = NULL;

    size_t n = http_query_all(req, "label", raw, LABELS_MAX + 1);
    if (n > LABELS_MAX) {
        http_error(res, 400, "query parameter 'label' may be given at most %d times", LABELS_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *colon = strchr(raw[i], ':');
        size_t len = strlen(raw[i]);
        if (!colon || colon == raw[i] || !colon[1] || len >= LABEL_MAX) {
            http_error(res, 400,
                       "query parameter 'label' must be KEY:VALUE with a non-empty key and value "
                       "(at most %d bytes), e.g. label=thread:worker-1",
                       LABEL_MAX - 1);
            return -EINVAL;
        }
        char *b = q->label_buf[i];
        memcpy(b, raw[i], len + 1);
        b[colon - raw[i]] = '\0';
        q->labels[i].key = b;
        q->labels[i].value = b + (colon - raw[i]) + 1;
    }
    q->nlabels = n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Selection → flame_merge                                             */

struct merge_walk {
    struct flame_merge *m;
    const struct view_query *q;
    int64_t session_id; /* the one being added when a failure happened */
    int failed;         /* the failure came from the merge, not the store */
    char err[256];
};

static int add_tree(void *ctx, int64_t session_id, const void *tree, size_t len)
{
    struct merge_walk *w = ctx;
    int rc = flame_merge_add_blob(w->m, tree, len, w->err, sizeof w->err);

    if (rc < 0) {
        w->session_id = session_id;
        w->failed = 1;
    }
    return rc;
}

static int add_pprof(void *ctx, int64_t session_id, const void *buf, size_t len)
{
    struct merge_walk *w = ctx;
    struct pprof_profile *p = NULL;
    int rc = pprof_decode(buf, len, &p, w->err, sizeof w->err);

    if (rc == 0) {
        rc = flame_merge_add_pprof(w->m, p, w->q->labels, w->q->nlabels, w->err, sizeof w->err);
        pprof_profile_free(p);
    }
    if (rc < 0) {
        w->session_id = session_id;
        w->failed = 1;
    }
    return rc;
}

/* Collects the sample type names of the first profile it is given. */
struct type_walk {
    char names[256];
};

static int collect_types(void *ctx, int64_t session_id, const void *buf, size_t len)
{
    struct type_walk *t = ctx;
    struct pprof_profile *p = NULL;
    char err[128];

    (void)session_id;
    if (pprof_decode(buf, len, &p, err, sizeof err) < 0)
        return 1;
    size_t k = 0;
    for (size_t i = 0; i < p->pb->n_sample_type && k < sizeof t->names; i++) {
        int w = snprintf(t->names + k, sizeof t->names - k, "%s%s", i ? ", " : "",
                         pprof_string(p, p->pb->sample_type[i]->type));
        if (w < 0)
            break;
        k += (size_t)w;
    }
    pprof_profile_free(p);
    return 1; /* one profile is enough: none of them has the asked type */
}

/* The 400 for a type that no selected profile has, naming the types of
 * one of them (read from its pprof: the blob format is views.c's). */
static void type_missing(struct request *req, struct response *res, const struct selection *sel,
                         const char *type)
{
    struct type_walk t = {{0}};
    struct store *st = req->srv->store;

    if (sel->session_id > 0 || sel->capture_id > 0) {
        void *buf = NULL;
        size_t len = 0;
        if ((sel->session_id > 0 ? store_profile_get(st, sel->session_id, &buf, &len)
                                 : store_capture_profile_get(st, sel->capture_id, &buf, &len)) ==
            0)
            collect_types(&t, sel->session_id, buf, len);
        free(buf);
    } else {
        struct store_session_filter f = sel->filter;
        f.limit = 1;
        store_pprof_foreach(st, &f, collect_types, &t);
    }
    http_error(res, 400,
               "query parameter 'type': no profile of %s has sample type '%s' (types: %s)",
               sel->what, type, t.names[0] ? t.names : "unknown");
}

/* Merges the profiles of sel under q.  Returns the merge (caller frees)
 * or NULL with res set (404 empty selection, 400 type, 500 store/load). */
static struct flame_merge *merge_selection(struct request *req, struct response *res,
                                           const struct selection *sel,
                                           const struct view_query *q)
{
    struct store *st = req->srv->store;
    struct merge_walk w = {.q = q};
    struct flame_merge_stats stats;
    int rc;

    w.m = flame_merge_new(q->type ? q->type : sel->default_type);
    if (!w.m) {
        http_error(res, 500, "out of memory starting a merge");
        return NULL;
    }

    if (sel->session_id > 0) {
        struct store_session s;
        void *buf = NULL;
        size_t len = 0;

        rc = store_session_get(st, sel->session_id, &s);
        if (rc == -ENOENT) {
            http_error(res, 404, "session %lld not found", (long long)sel->session_id);
            goto fail;
        }
        if (rc == 0)
            rc = q->nlabels ? store_profile_get(st, sel->session_id, &buf, &len)
                            : store_tree_get(st, sel->session_id, &buf, &len);
        if (rc == -ENOENT) {
            http_error(res, 404, "session %lld has no profile", (long long)sel->session_id);
            goto fail;
        }
        if (rc == 0)
            rc = q->nlabels ? add_pprof(&w, sel->session_id, buf, len)
                            : add_tree(&w, sel->session_id, buf, len);
        free(buf);
    } else if (sel->capture_id > 0) {
        struct store_capture c;
        void *buf = NULL;
        size_t len = 0;

        rc = store_capture_get(st, sel->capture_id, &c);
        if (rc == -ENOENT) {
            http_error(res, 404, "capture %lld not found", (long long)sel->capture_id);
            goto fail;
        }
        if (rc == 0)
            rc = q->nlabels ? store_capture_profile_get(st, sel->capture_id, &buf, &len)
                            : store_capture_tree_get(st, sel->capture_id, &buf, &len);
        if (rc == -ENOENT) {
            http_error(res, 404, "capture %lld has no snapshots yet", (long long)sel->capture_id);
            goto fail;
        }
        if (rc == 0)
            rc = q->nlabels ? add_pprof(&w, 0, buf, len) : add_tree(&w, 0, buf, len);
        free(buf);
    } else {
        rc = q->nlabels ? store_pprof_foreach(st, &sel->filter, add_pprof, &w)
                        : store_tree_foreach(st, &sel->filter, add_tree, &w);
    }

    if (rc < 0 && !w.failed) {
        http_store_error(res, st, rc, NULL);
        goto fail;
    }
    if (rc == -E2BIG) {
        http_error(res, 400, "%s holds more than %zu distinct stacks: narrow the selection",
                   sel->what, FLAME_MERGE_MAX_NODES);
        goto fail;
    }
    if (rc == -ENOMEM) {
        http_error(res, 500, "out of memory merging %s", sel->what);
        goto fail;
    }
    if (rc < 0) {
        if (sel->capture_id > 0)
            http_error(res, 500, "stored snapshots of %s cannot be read: %s", sel->what, w.err);
        else
            http_error(res, 500, "stored profile of session %lld cannot be read: %s",
                       (long long)w.session_id, w.err);
        goto fail;
    }

    flame_merge_stats(w.m, &stats);
    if (stats.profiles == 0 && stats.skipped == 0) {
        http_error(res, 404, "no profiles match %s", sel->what);
        goto fail;
    }
    if (stats.profiles == 0) {
        type_missing(req, res, sel, q->type ? q->type : "(default)");
        goto fail;
    }
    return w.m;

fail:
    flame_merge_free(w.m);
    return NULL;
}

/* {"type","unit","total","sessions"} of a merge: what every view starts
 * with. */
static json_t *merge_header(const struct flame_merge *m)
{
    struct flame_merge_stats s;

    flame_merge_stats(m, &s);
    return json_pack("{s:s,s:s,s:I,s:I}", "type", s.type ? s.type : "", "unit",
                     s.unit ? s.unit : "", "total", (json_int_t)s.total, "sessions",
                     (json_int_t)s.profiles);
}

/* ------------------------------------------------------------------ */
/* The three views of one selection                                    */

enum view_kind { VIEW_FLAMEGRAPH, VIEW_TOP, VIEW_COLLAPSED };

static enum http_result answer_view(struct request *req, struct response *res,
                                    const struct selection *sel, enum view_kind kind)
{
    struct view_query q;
    int64_t limit = 0;

    if (parse_view_query(req, res, &q) < 0)
        return HTTP_DONE;
    if (kind == VIEW_TOP &&
        qp_int(req, res, "limit", 1, TOP_LIMIT_MAX, TOP_LIMIT_DEFAULT, &limit) < 0)
        return HTTP_DONE;

    struct flame_merge *m = merge_selection(req, res, sel, &q);
    if (!m)
        return HTTP_DONE;

    if (kind == VIEW_COLLAPSED) {
        char *text = NULL;
        size_t len = 0;
        if (flame_merge_collapsed(m, &text, &len) < 0)
            http_error(res, 500, "out of memory writing collapsed stacks");
        else
            http_bytes_take(res, 200, "text/plain; charset=utf-8", text, len);
        flame_merge_free(m);
        return HTTP_DONE;
    }

    json_t *body = merge_header(m);
    json_t *part = kind == VIEW_TOP ? flame_merge_top_json(m, (size_t)limit)
                                    : flame_merge_tree_json(m);
    flame_merge_free(m);
    if (!body || !part || json_object_set_new(body, kind == VIEW_TOP ? "functions" : "tree",
                                              part) < 0) {
        if (!body)
            json_decref(part);
        json_decref(body);
        http_error(res, 500, "out of memory rendering the view");
        return HTTP_DONE;
    }
    http_json(res, 200, body);
    return HTTP_DONE;
}

/* The view a route names: its path's last segment. */
static enum view_kind view_of(const struct request *req)
{
    const char *last = strrchr(req->path, '/');
    return strcmp(last, "/top") == 0         ? VIEW_TOP
           : strcmp(last, "/collapsed") == 0 ? VIEW_COLLAPSED
                                             : VIEW_FLAMEGRAPH; /* /flamegraph, /flame */
}

/* /api/v1/sessions/{id}/<view>: a selection of one session. */
static enum http_result session_view(struct request *req, struct response *res)
{
    struct selection sel = {.session_id = req->id};

    snprintf(sel.what, sizeof sel.what, "session %lld", (long long)req->id);
    return answer_view(req, res, &sel, view_of(req));
}

/* /api/v1/captures/{id}/<view>: a capture's snapshots (api.h). */
enum http_result api_view_capture(struct request *req, struct response *res)
{
    struct selection sel = {.capture_id = req->id, .default_type = "samples"};

    snprintf(sel.what, sizeof sel.what, "capture %lld", (long long)req->id);
    return answer_view(req, res, &sel, view_of(req));
}

/* /api/v1/views/<view>: the selection of the query. */
static enum http_result merged_view(struct request *req, struct response *res)
{
    struct selection sel;

    if (parse_selection(req, res, "", &sel) < 0)
        return HTTP_DONE;
    return answer_view(req, res, &sel, view_of(req));
}

/* ------------------------------------------------------------------ */
/* Diff                                                                */

static enum http_result views_diff(struct request *req, struct response *res)
{
    struct selection base, cmp;
    struct view_query q;
    struct flame_merge_stats bs, cs;
    int64_t limit;

    if (parse_selection(req, res, "base.", &base) < 0 ||
        parse_selection(req, res, "cmp.", &cmp) < 0 || parse_view_query(req, res, &q) < 0 ||
        qp_int(req, res, "limit", 1, TOP_LIMIT_MAX, TOP_LIMIT_DEFAULT, &limit) < 0)
        return HTTP_DONE;

    struct flame_merge *mb = merge_selection(req, res, &base, &q);
    if (!mb)
        return HTTP_DONE;
    struct flame_merge *mc = merge_selection(req, res, &cmp, &q);
    if (!mc) {
        flame_merge_free(mb);
        return HTTP_DONE;
    }

    flame_merge_stats(mb, &bs);
    flame_merge_stats(mc, &cs);
    if (strcmp(bs.type, cs.type) != 0) {
        /* Only possible without type=: each side took its default. */
        http_error(res, 400,
                   "base (%s) has sample type '%s' but comparison (%s) has '%s': pass type=",
                   base.what, bs.type, cmp.what, cs.type);
        goto out;
    }

    json_t *tree = flame_diff_tree_json(mb, mc);
    json_t *functions = flame_diff_top_json(mb, mc, (size_t)limit);
    json_t *body = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "type", bs.type, "unit", bs.unit,
                             "base_total", (json_int_t)bs.total, "comparison_total",
                             (json_int_t)cs.total, "base_sessions", (json_int_t)bs.profiles,
                             "comparison_sessions", (json_int_t)cs.profiles);
    if (!tree || !functions || !body) {
        json_decref(tree);
        json_decref(functions);
        json_decref(body);
        http_error(res, 500, "out of memory rendering the diff");
        goto out;
    }
    json_object_set_new(body, "tree", tree);
    json_object_set_new(body, "functions", functions);
    http_json(res, 200, body);

out:
    flame_merge_free(mb);
    flame_merge_free(mc);
    return HTTP_DONE;
}

/* The views of one session live here, beside the merged ones, so that
 * both run merge_selection(); their paths are under /sessions/. */
const struct route api_view_routes[] = {
    {"GET", "/api/v1/sessions/{id}/flamegraph", ROLES_READ, 0, session_view},
    {"GET", "/api/v1/sessions/{id}/top", ROLES_READ, 0, session_view},
    {"GET", "/api/v1/sessions/{id}/collapsed", ROLES_READ, 0, session_view},
    {"GET", "/api/v1/views/flamegraph", ROLES_READ, 0, merged_view},
    {"GET", "/api/v1/views/top", ROLES_READ, 0, merged_view},
    {"GET", "/api/v1/views/collapsed", ROLES_READ, 0, merged_view},
    {"GET", "/api/v1/views/diff", ROLES_READ, 0, views_diff},
    {NULL, NULL, 0, 0, NULL},
};
