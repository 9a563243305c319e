/*
 * loadgen_json.c — a load test's results as the JSON document of
 * loadgen_json.h, built with jansson.  One shape for the CLI, sonded's
 * stored results and the console, so that none of them re-derives a
 * percentile or names an error kind differently.
 */
#include <math.h>
#include <stdio.h>

#include "common/loadgen_json.h"

/* ns as ms with µs precision. */
static json_t *json_ms(double ns)
{
    return json_real(round(ns / 1e3) / 1e3);
}

/* The indexes of r->status in ascending code order, code 0 ("other
 * codes") last. */
static void sorted_status(const struct loadgen_result *r, size_t *order)
{
    for (size_t i = 0; i < r->n_status; i++)
        order[i] = i;
    for (size_t i = 1; i < r->n_status; i++)
        for (size_t j = i; j > 0; j--) {
            int a = r->status[order[j - 1]].code, b = r->status[order[j]].code;
            if (!(a == 0 || (b != 0 && a > b)))
                break;
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
}

static json_t *latency_json(const struct histogram *h)
{
    if (!h->count)
        return json_null(); /* no responses: no latencies */
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "min", json_ms((double)h->min), "mean",
                     json_ms(histogram_mean(h)), "p50",
                     json_ms((double)histogram_quantile(h, 0.50)), "p90",
                     json_ms((double)histogram_quantile(h, 0.90)), "p99",
                     json_ms((double)histogram_quantile(h, 0.99)), "max",
                     json_ms((double)h->max));
}

static json_t *status_json(const struct loadgen_result *r)
{
    json_t *status = json_object();
    size_t order[LOADGEN_STATUS_MAX];
    size_t n = r->n_status < LOADGEN_STATUS_MAX ? r->n_status : LOADGEN_STATUS_MAX;
    struct loadgen_result view = {.n_status = n};

    for (size_t i = 0; i < n; i++)
        view.status[i] = r->status[i];
    sorted_status(&view, order);
    for (size_t i = 0; status && i < n; i++) {
        char code[16];
        snprintf(code, sizeof code, "%d", view.status[order[i]].code);
        if (json_object_set_new(status, view.status[order[i]].code ? code : "other",
                                json_integer((json_int_t)view.status[order[i]].count)) != 0) {
            json_decref(status);
            status = NULL;
        }
    }
    return status;
}

static json_t *seconds_json(const struct loadgen_result *r)
{
    json_t *seconds = json_array();
    for (size_t i = 0; seconds && i < r->n_seconds && i < LOADGEN_SECONDS_MAX; i++) {
        const struct loadgen_second *s = &r->seconds[i];
        json_t *x = json_pack(
            "{s:I,s:I,s:o,s:o}", "requests", (json_int_t)s->requests, "errors",
            (json_int_t)s->errors, "latency_mean_ms",
            s->requests ? json_ms((double)s->latency_sum_ns / s->requests) : json_null(),
            "latency_max_ms", s->requests ? json_ms((double)s->latency_max_ns) : json_null());
        if (json_array_append_new(seconds, x) != 0) {
            json_decref(seconds);
            seconds = NULL;
        }
    }
    return seconds;
}

json_t *loadgen_result_json(const struct loadgen_result *r, int with_seconds)
{
    double rps = r->elapsed_s > 0 ? round((double)r->requests / r->elapsed_s * 100) / 100 : 0;
    /* json_pack's "o" steals even on failure, and a NULL "o" fails the
     * whole pack: out of memory anywhere gives NULL without a leak. */
    json_t *o = json_pack(
        "{s:f,s:I,s:f,s:I,s:I,s:o,s:o,s:{s:I,s:I,s:I,s:I,s:I}}", "elapsed_s",
        round(r->elapsed_s * 1e3) / 1e3, "requests", (json_int_t)r->requests, "requests_per_s",
        rps, "bytes_read", (json_int_t)r->bytes_read, "bytes_written",
        (json_int_t)r->bytes_written, "latency_ms", latency_json(&r->latency), "status",
        status_json(r), "errors", "total", (json_int_t)r->errors, "connect",
        (json_int_t)r->err_connect, "timeout", (json_int_t)r->err_timeout, "reset",
        (json_int_t)r->err_reset, "other", (json_int_t)r->err_other);
    if (o && with_seconds && json_object_set_new(o, "seconds", seconds_json(r)) != 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}
