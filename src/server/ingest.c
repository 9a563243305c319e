/*
 * ingest.c — turning an uploaded profile into what sonded stores (api.h,
 * "ingest.c"): the one path shared by a session's profile upload
 * (api_agent.c) and a capture's snapshots upload (api_agent_task.c), so
 * that both have the same limits and the same validation.
 *
 * Uploads are the one place where large untrusted input arrives: the body
 * is bounded by --max-upload-mb (http.c answered 413 past it), inflated
 * (pprof_gunzip) into a buffer bounded by --max-profile-mb (a gzip bomb is
 * 413 after at most that much work), and decoded and validated by
 * pprof_decode before anything is stored; the flame tree (views.h) is
 * computed here so that views never re-parse an upload.  A raw (not
 * gzipped) profile.proto is accepted and gzipped, so what is stored and
 * downloaded is always gzip.
 *
 * The trace index of a session profile (ingest_traces) is built here too:
 * the distinct values of the "trace_id" label that the agent puts on the
 * samples taken inside a span (with the span's "interface" label), so that
 * GET /api/v1/traces/{trace_id} finds the sessions of a trace without
 * decoding any profile.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "server/api.h"
#include "server/views.h"

/* Profiles with more sample types than this, or longer type or unit
 * names, are refused: real ones have 1-4 short ones, and the list is
 * echoed in the answer and kept with the session. */
#define UPLOAD_MAX_SAMPLE_TYPES 64
#define UPLOAD_MAX_TYPE_NAME 127

/* Gzips a raw upload.  0 or -ENOMEM. */
static int gzip_bytes(const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    size_t cap = deflateBound(&zs, len) + 32;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return -ENOMEM;
    }
    /* len is at most cfg.max_upload, far below 4 GiB in practice; feed in
     * uInt-sized chunks anyway. */
    size_t consumed = 0;
    int zr;
    zs.next_out = buf;
    zs.avail_out = cap > UINT_MAX ? UINT_MAX : (uInt)cap;
    do {
        size_t chunk = len - consumed < (1u << 30) ? len - consumed : (1u << 30);
        zs.next_in = (Bytef *)(in + consumed);
        zs.avail_in = (uInt)chunk;
        consumed += chunk;
        zr = deflate(&zs, consumed == len ? Z_FINISH : Z_NO_FLUSH);
    } while (zr == Z_OK && consumed < len);
    while (zr == Z_OK)
        zr = deflate(&zs, Z_FINISH);
    *outlen = zs.total_out;
    deflateEnd(&zs);
    if (zr != Z_STREAM_END) {
        free(buf);
        return -ENOMEM;
    }
    *out = buf;
    return 0;
}

/* The index of the first sample type whose unit is "count", or -1. */
static int count_index(const struct pprof_profile *p)
{
    for (size_t i = 0; i < p->pb->n_sample_type; i++)
        if (strcmp(pprof_string(p, p->pb->sample_type[i]->unit), "count") == 0)
            return (int)i;
    return -1;
}

/* The events sample i stands for: its value of the count type ci, else 1
 * (pprof's convention).  Never negative. */
static int64_t sample_weight(const struct pprof_profile *p, size_t i, int ci)
{
    if (ci < 0)
        return 1;
    int64_t v = p->pb->sample[i]->value[ci];
    return v > 0 ? v : 0;
}

/* Sample count (sum of the first "count" type, else the number of
 * samples) and the "type/unit" list.  0, -EINVAL (400 on res) or
 * -ENOMEM. */
static int summarize(const struct pprof_profile *p, struct ingest *in, struct response *res)
{
    const Perftools__Profiles__Profile *pb = p->pb;
    if (pb->n_sample_type > UPLOAD_MAX_SAMPLE_TYPES) {
        http_error(res, 400, "corrupt profile: %zu sample types (at most %d)",
                   pb->n_sample_type, UPLOAD_MAX_SAMPLE_TYPES);
        return -EINVAL;
    }
    size_t joined_cap = pb->n_sample_type * (2 * UPLOAD_MAX_TYPE_NAME + 2) + 1;
    in->sample_types = malloc(joined_cap);
    in->types = json_array();
    if (!in->sample_types || !in->types)
        return -ENOMEM;
    in->sample_types[0] = '\0';
    size_t jlen = 0;
    for (size_t i = 0; i < pb->n_sample_type; i++) {
        const char *type = pprof_string(p, pb->sample_type[i]->type);
        const char *unit = pprof_string(p, pb->sample_type[i]->unit);
        if (strlen(type) > UPLOAD_MAX_TYPE_NAME || strlen(unit) > UPLOAD_MAX_TYPE_NAME) {
            http_error(res, 400, "corrupt profile: sample type %zu has a name over %d bytes",
                       i, UPLOAD_MAX_TYPE_NAME);
            return -EINVAL;
        }
        char one[2 * UPLOAD_MAX_TYPE_NAME + 2];
        snprintf(one, sizeof one, "%s/%s", type, unit);
        if (json_array_append_new(in->types, json_string(one)) != 0)
            return -ENOMEM;
        jlen += (size_t)snprintf(in->sample_types + jlen, joined_cap - jlen, "%s%s",
                                 i ? "," : "", one);
    }
    /* Saturating: values come from outside. */
    int ci = count_index(p);
    int64_t total = 0;
    for (size_t i = 0; i < pb->n_sample; i++) {
        int64_t v = sample_weight(p, i, ci);
        total = v > INT64_MAX - total ? INT64_MAX : total + v;
    }
    in->samples = total;
    return 0;
}

int ingest_upload(struct server *srv, const struct request *req, struct ingest *in,
                  struct response *res)
{
    size_t max_profile_mb = srv->cfg.max_profile >> 20;
    char err[256] = "";
    int rc;

    memset(in, 0, sizeof *in);
    if (req->body_len == 0) {
        http_error(res, 400, "empty body: expected a gzipped pprof profile");
        return -1;
    }
    int gzipped = req->body_len >= 2 && req->body[0] == 0x1f && req->body[1] == 0x8b;
    if (gzipped) {
        rc = pprof_gunzip(req->body, req->body_len, srv->cfg.max_profile, &in->raw,
                          &in->raw_len, err, sizeof err);
        if (rc == -EFBIG)
            http_error(res, 413, "profile decompresses past %zu MiB", max_profile_mb);
        else if (rc == -EINVAL)
            http_error(res, 400, "corrupt profile upload: %s", err);
        else if (rc != 0)
            http_error(res, 500, "out of memory decompressing the profile");
        if (rc != 0)
            goto fail;
    } else if (req->body_len > srv->cfg.max_profile) {
        http_error(res, 413, "profile decompresses past %zu MiB", max_profile_mb);
        goto fail;
    }

    rc = pprof_decode(gzipped ? in->raw : req->body, gzipped ? in->raw_len : req->body_len,
                      &in->profile, err, sizeof err);
    if (rc != 0) {
        if (rc == -ENOMEM)
            http_error(res, 500, "out of memory decoding the profile");
        else
            http_error(res, 400, "corrupt profile: %s", err);
        goto fail;
    }
    rc = summarize(in->profile, in, res);
    if (rc == -ENOMEM)
        http_error(res, 500, "out of memory");
    if (rc != 0)
        goto fail;
    rc = flame_tree_build(in->profile, &in->tree, &in->tree_len, err, sizeof err);
    if (rc != 0) {
        if (rc == -E2BIG)
            http_error(res, 413, "profile too large to index: %s", err);
        else if (rc == -ENOMEM)
            http_error(res, 500, "out of memory indexing the profile");
        else
            http_error(res, 400, "corrupt profile: %s", err);
        goto fail;
    }
    if (gzipped) {
        in->pprof = req->body;
        in->pprof_len = req->body_len;
    } else {
        if (gzip_bytes(req->body, req->body_len, &in->gz, &in->pprof_len) != 0) {
            http_error(res, 500, "out of memory compressing the profile");
            goto fail;
        }
        in->pprof = in->gz;
    }
    return 0;

fail:
    ingest_free(in);
    return -1;
}

void ingest_free(struct ingest *in)
{
    if (!in)
        return;
    pprof_profile_free(in->profile);
    free(in->raw);
    free(in->gz);
    free(in->tree);
    free(in->sample_types);
    json_decref(in->types);
    memset(in, 0, sizeof *in);
}

/* ------------------------------------------------------------------ */
/* Trace index                                                         */

/* A trace seen in the profile: string table indexes of its id and of
 * the first interface seen with it. */
struct trace_seen {
    int64_t id_str;
    int64_t iface_str;
    int64_t samples;
};

static int by_trace_id(const void *a, const void *b, void *ctx)
{
    const struct pprof_profile *p = ctx;
    const struct trace_seen *x = a, *y = b;
    int c = strcmp(pprof_string(p, x->id_str), pprof_string(p, y->id_str));
    return c ? c : (x->id_str > y->id_str) - (x->id_str < y->id_str);
}

/* An open-addressing map of string indexes → place in the seen array;
 * it holds at most INGEST_MAX_TRACES keys and at most one per sample, and
 * is sized for twice that, so a probe always ends at an empty bucket. */
struct trace_set {
    int64_t *keys; /* string index + 1; 0 = empty */
    size_t *slots;
    size_t cap;    /* power of two */
};

/* The bucket of key: holding it, or the empty one where it would go. */
static size_t trace_set_bucket(const struct trace_set *s, int64_t key)
{
    size_t h = (size_t)((uint64_t)key * 0x9E3779B97F4A7C15ull) & (s->cap - 1);
    while (s->keys[h] && s->keys[h] != key + 1)
        h = (h + 1) & (s->cap - 1);
    return h;
}

int ingest_traces(const struct pprof_profile *p, struct store_trace_span **out, size_t *n)
{
    const Perftools__Profiles__Profile *pb = p->pb;
    int64_t k_trace = -1, k_iface = -1;
    *out = NULL;
    *n = 0;
    /* The label keys' string indexes (a profile may repeat a string; the
     * agent's never does, and a repeat only costs a missed label). */
    for (size_t i = 0; i < pb->n_string_table; i++) {
        if (k_trace < 0 && strcmp(pb->string_table[i], "trace_id") == 0)
            k_trace = (int64_t)i;
        else if (k_iface < 0 && strcmp(pb->string_table[i], "interface") == 0)
            k_iface = (int64_t)i;
    }
    if (k_trace < 0)
        return 0;

    struct trace_set set = {0};
    struct trace_seen *seen = NULL;
    size_t nseen = 0;
    int ci = count_index(p);
    int rc = -ENOMEM;
    set.cap = 64;
    while (set.cap < 2 * INGEST_MAX_TRACES && set.cap < 2 * pb->n_sample)
        set.cap *= 2;
    set.keys = calloc(set.cap, sizeof *set.keys);
    set.slots = calloc(set.cap, sizeof *set.slots);
    /* At most one trace per sample. */
    size_t seen_cap = pb->n_sample < INGEST_MAX_TRACES ? pb->n_sample : INGEST_MAX_TRACES;
    seen = calloc(seen_cap ? seen_cap : 1, sizeof *seen);
    if (!set.keys || !set.slots || !seen)
        goto out;

    for (size_t i = 0; i < pb->n_sample; i++) {
        const Perftools__Profiles__Sample *s = pb->sample[i];
        int64_t id_str = -1, iface_str = -1;
        for (size_t j = 0; j < s->n_label; j++) {
            const Perftools__Profiles__Label *l = s->label[j];
            if (l->key == k_trace && l->str > 0)
                id_str = l->str;
            else if (l->key == k_iface && l->str > 0)
                iface_str = l->str;
        }
        if (id_str < 0)
            continue;
        size_t b = trace_set_bucket(&set, id_str);
        if (!set.keys[b]) {
            const char *id = pprof_string(p, id_str);
            /* Only ids the API can look up; beyond the bound, the rest of
             * the profile's traces are not indexed. */
            if (!jv_trace_id_ok(id, strnlen(id, STORE_TRACE_MAX)) ||
                nseen == seen_cap)
                continue;
            set.keys[b] = id_str + 1;
            set.slots[b] = nseen;
            seen[nseen++] = (struct trace_seen){id_str, -1, 0};
        }
        struct trace_seen *t = &seen[set.slots[b]];
        if (t->iface_str < 0 && iface_str >= 0)
            t->iface_str = iface_str;
        int64_t w = sample_weight(p, i, ci);
        t->samples = w > INT64_MAX - t->samples ? INT64_MAX : t->samples + w;
    }
    if (nseen == 0) {
        rc = 0;
        goto out;
    }

    /* The same id under two string indexes is one trace. */
    qsort_r(seen, nseen, sizeof *seen, by_trace_id, (void *)p);
    struct store_trace_span *spans = calloc(nseen, sizeof *spans);
    if (!spans)
        goto out;
    size_t m = 0;
    for (size_t i = 0; i < nseen; i++) {
        const char *id = pprof_string(p, seen[i].id_str);
        const char *iface = seen[i].iface_str >= 0 ? pprof_string(p, seen[i].iface_str) : "";
        if (m > 0 && strcmp(spans[m - 1].trace_id, id) == 0) {
            struct store_trace_span *t = &spans[m - 1];
            t->samples = seen[i].samples > INT64_MAX - t->samples ? INT64_MAX
                                                                   : t->samples + seen[i].samples;
            if (!t->interface[0] && strlen(iface) < STORE_INTERFACE_MAX &&
                jv_printable(iface, strlen(iface)))
                snprintf(t->interface, sizeof t->interface, "%s", iface);
            continue;
        }
        struct store_trace_span *t = &spans[m++];
        snprintf(t->trace_id, sizeof t->trace_id, "%s", id);
        /* An interface the API would refuse is indexed as "" rather than
         * cut: the store never truncates. */
        if (strlen(iface) < STORE_INTERFACE_MAX && jv_printable(iface, strlen(iface)))
            snprintf(t->interface, sizeof t->interface, "%s", iface);
        t->samples = seen[i].samples;
    }
    *out = spans;
    *n = m;
    rc = 0;

out:
    free(set.keys);
    free(set.slots);
    free(seen);
    return rc;
}
