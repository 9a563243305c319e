/*
 * api_capture.c — the thread analysis of active profiling (docs/api.md,
 * "Active profiling"; role reader): one capture with its snapshot
 * timeline, the flame graph / top / collapsed view of its snapshots, the
 * snapshots' pprof as uploaded, and every capture and session span of one
 * trace id.
 *
 * A capture's snapshots are a pprof with one sample per snapshot, in
 * snapshot order, labelled snapshot / offset / state / syscall / thread /
 * thread_id (docs/agent-protocol.md, "7. Active profiling").  The
 * timeline is read from that pprof (decoded on each request: a capture
 * is small, at most a few thousand snapshots); its views reuse the one
 * path of api_view.c (api_view_capture), so a capture's flame graph is
 * computed exactly as a session's.  Frames are named by pprof_frame_name,
 * the naming rule of every view, leaf first.
 *
 * Trace lookups read two indexes the store keeps: captures by trace id,
 * and the trace ids of session profiles (indexed at upload, ingest.c).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pprof.h"
#include "server/api.h"
#include "server/http.h"
#include "server/store.h"

/* Frames shown per snapshot in the timeline (leaf first); deeper stacks
 * are cut there (the flame graph has them all). */
#define TIMELINE_FRAMES_MAX 64

/* A JSON string of the bytes s (from an uploaded profile: not trusted to
 * be UTF-8; other bytes show as '?', as in views.c).  NULL on ENOMEM. */
static json_t *text_json(const char *s)
{
    size_t len = strlen(s);
    json_t *j = json_stringn(s, len);
    if (j)
        return j;
    char *a = malloc(len + 1);
    if (!a)
        return NULL;
    for (size_t i = 0; i < len; i++)
        a[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    j = json_stringn(a, len);
    free(a);
    return j;
}

/* The capture of the request's {id}; -1 with 404/500 on res. */
static int load_capture(struct request *req, struct response *res, struct store_capture *c)
{
    int rc = store_capture_get(req->srv->store, req->id, c);
    if (rc < 0) {
        http_id_error(req, res, rc, "capture", "not found");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Timeline                                                            */

/* The string label keys the timeline shows, and the numeric ones. */
struct snapshot_labels {
    int64_t snapshot, offset_ns, thread_id;
    int has_snapshot, has_offset, has_thread_id;
    const char *state, *syscall, *thread;
};

static void read_labels(const struct pprof_profile *p, const Perftools__Profiles__Sample *s,
                        struct snapshot_labels *l)
{
    memset(l, 0, sizeof *l);
    for (size_t j = 0; j < s->n_label; j++) {
        const Perftools__Profiles__Label *lb = s->label[j];
        const char *key = pprof_string(p, lb->key);
        if (lb->str > 0) {
            const char *v = pprof_string(p, lb->str);
            if (strcmp(key, "state") == 0)
                l->state = v;
            else if (strcmp(key, "syscall") == 0)
                l->syscall = v;
            else if (strcmp(key, "thread") == 0)
                l->thread = v;
        } else if (strcmp(key, "snapshot") == 0) {
            l->snapshot = lb->num;
            l->has_snapshot = 1;
        } else if (strcmp(key, "offset") == 0) {
            l->offset_ns = lb->num;
            l->has_offset = 1;
        } else if (strcmp(key, "thread_id") == 0) {
            l->thread_id = lb->num;
            l->has_thread_id = 1;
        }
    }
}

/* ["leaf", …, "root"]: at most TIMELINE_FRAMES_MAX names, inline frames
 * expanded (a location's lines are innermost first, i.e. leaf first). */
static json_t *frames_json(const struct pprof_profile *p, const Perftools__Profiles__Sample *s)
{
    json_t *arr = json_array();
    char buf[512];
    for (size_t i = 0; arr && i < s->n_location_id; i++) {
        const Perftools__Profiles__Location *loc = pprof_location(p, s->location_id[i]);
        size_t nl = loc->n_line ? loc->n_line : 1;
        for (size_t j = 0; j < nl; j++) {
            if (json_array_size(arr) >= TIMELINE_FRAMES_MAX)
                return arr;
            if (json_array_append_new(arr, text_json(pprof_frame_name(p, loc, j, buf,
                                                                       sizeof buf))) < 0) {
                json_decref(arr);
                return NULL;
            }
        }
    }
    return arr;
}

static json_t *opt_text(const char *s)
{
    return s && *s ? text_json(s) : json_null();
}

/* One entry per sample, in the pprof's (snapshot) order. */
static json_t *timeline_json(const struct pprof_profile *p)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < p->pb->n_sample; i++) {
        const Perftools__Profiles__Sample *s = p->pb->sample[i];
        struct snapshot_labels l;
        read_labels(p, s, &l);
        /* ns → ms, kept to the microsecond. */
        double offset_ms = round((double)l.offset_ns / 1000.0) / 1000.0;
        json_t *o = json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "snapshot",
                              (json_int_t)(l.has_snapshot ? l.snapshot : (int64_t)i + 1),
                              "offset_ms", l.has_offset ? json_real(offset_ms) : json_null(),
                              "state", opt_text(l.state), "syscall", opt_text(l.syscall),
                              "thread", opt_text(l.thread), "thread_id",
                              l.has_thread_id ? json_integer(l.thread_id) : json_null(),
                              "frames", frames_json(p, s));
        if (json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

static enum http_result capture_get(struct request *req, struct response *res)
{
    struct store_capture c;
    void *buf = NULL;
    size_t len = 0;

    if (load_capture(req, res, &c) < 0)
        return HTTP_DONE;
    json_t *timeline = NULL;
    int rc = store_capture_profile_get(req->srv->store, req->id, &buf, &len);
    if (rc == -ENOENT) {
        timeline = json_array(); /* still uploading */
    } else if (rc < 0) {
        http_store_error(res, req->srv->store, rc, NULL);
        return HTTP_DONE;
    } else {
        struct pprof_profile *p = NULL;
        char err[256];
        rc = pprof_decode(buf, len, &p, err, sizeof err);
        free(buf);
        if (rc < 0) {
            /* It was validated at upload: this is the server's fault. */
            http_error(res, 500, "stored snapshots of capture %lld cannot be read: %s",
                       (long long)req->id, err);
            return HTTP_DONE;
        }
        timeline = timeline_json(p);
        pprof_profile_free(p);
    }
    http_json(res, 200, api_json_with(api_capture_json(&c), "timeline", timeline));
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Views and download                                                  */

static enum http_result capture_view(struct request *req, struct response *res)
{
    return api_view_capture(req, res);
}

static enum http_result capture_profile(struct request *req, struct response *res)
{
    struct store_capture c;
    void *buf = NULL;
    size_t len = 0;

    if (load_capture(req, res, &c) < 0)
        return HTTP_DONE;
    int rc = store_capture_profile_get(req->srv->store, req->id, &buf, &len);
    if (rc < 0)
        return http_id_error(req, res, rc, "capture", "has no snapshots yet");
    http_bytes_take(res, 200, "application/octet-stream", buf, len);
    snprintf(res->header_name, sizeof res->header_name, "Content-Disposition");
    snprintf(res->header_value, sizeof res->header_value,
             "attachment; filename=\"capture-%lld.pb.gz\"", (long long)req->id);
    return HTTP_DONE;
}

/* ------------------------------------------------------------------ */
/* Traces                                                              */

/* {"session_id","interface","samples","session"} of one session span;
 * NULL with *rc set: -ENOENT when the session was purged since the
 * lookup, -ENOMEM, or the store's error. */
static json_t *trace_session_json(struct request *req, const struct store_trace_span *t, int *rc)
{
    struct store_session s;
    *rc = store_session_get(req->srv->store, t->session_id, &s);
    if (*rc < 0)
        return NULL;
    json_t *o = json_pack("{s:I,s:s,s:I,s:o}", "session_id", (json_int_t)t->session_id,
                          "interface", t->interface, "samples", (json_int_t)t->samples,
                          "session", api_session_json(&s));
    if (!o)
        *rc = -ENOMEM;
    return o;
}

static enum http_result trace_get(struct request *req, struct response *res)
{
    struct store *st = req->srv->store;
    char trace[STORE_TRACE_MAX];

    if (!jv_trace_id_ok(req->key, req->key_len)) {
        http_error(res, 400,
                   "trace id must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', ':', '-'",
                   STORE_TRACE_MAX - 1);
        return HTTP_DONE;
    }
    memcpy(trace, req->key, req->key_len);
    trace[req->key_len] = '\0';

    struct store_capture *caps = NULL;
    struct store_trace_span *spans = NULL;
    size_t ncaps = 0, nspans = 0;
    json_t *jc = NULL, *js = NULL;
    int rc = store_capture_by_trace(st, trace, &caps, &ncaps);
    if (rc == 0)
        rc = store_trace_sessions(st, trace, &spans, &nspans);
    if (rc == 0 && (!(jc = json_array()) || !(js = json_array())))
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < ncaps; i++)
        if (json_array_append_new(jc, api_capture_json(&caps[i])) < 0)
            rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < nspans; i++) {
        json_t *o = trace_session_json(req, &spans[i], &rc);
        if (rc == -ENOENT)
            rc = 0; /* purged meanwhile: not a span any more */
        else if (rc == 0 && json_array_append_new(js, o) < 0)
            rc = -ENOMEM;
    }
    free(caps);
    free(spans);
    if (rc < 0) {
        json_decref(jc);
        json_decref(js);
        if (rc == -ENOMEM)
            http_error(res, 500, "out of memory building the response");
        else
            http_store_error(res, st, rc, NULL);
        return HTTP_DONE;
    }
    http_json(res, 200,
              json_pack("{s:s,s:o,s:o}", "trace_id", trace, "captures", jc, "sessions", js));
    return HTTP_DONE;
}

const struct route api_capture_routes[] = {
    {"GET", "/api/v1/captures/{id}", ROLES_READ, 0, capture_get},
    {"GET", "/api/v1/captures/{id}/flame", ROLES_READ, 0, capture_view},
    {"GET", "/api/v1/captures/{id}/flamegraph", ROLES_READ, 0, capture_view},
    {"GET", "/api/v1/captures/{id}/top", ROLES_READ, 0, capture_view},
    {"GET", "/api/v1/captures/{id}/collapsed", ROLES_READ, 0, capture_view},
    {"GET", "/api/v1/captures/{id}/profile", ROLES_READ, 0, capture_profile},
    {"GET", "/api/v1/traces/{key}", ROLES_READ, 0, trace_get},
    {NULL, NULL, 0, 0, NULL},
};
