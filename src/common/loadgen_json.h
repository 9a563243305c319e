/*
 * loadgen_json.h — a load test's results as JSON: the one shape the
 * CLI's `sonde loadtest --json`, sonded's stored results
 * (GET /api/v1/loadtests/{id} "result") and the console read.
 *
 *   {"elapsed_s", "requests", "requests_per_s", "bytes_read",
 *    "bytes_written",
 *    "latency_ms": {"min","mean","p50","p90","p99","max"} | null (no
 *                  responses),
 *    "status": {"200": N, …, "other": N},     (by code, ascending)
 *    "errors": {"total","connect","timeout","reset","other"},
 *    "seconds": [{"requests","errors","latency_mean_ms"|null,
 *                 "latency_max_ms"|null}, …]} (only with with_seconds)
 *
 * Milliseconds are rounded to the microsecond, rates to 1/100.
 */
#ifndef SONDE_LOADGEN_JSON_H
#define SONDE_LOADGEN_JSON_H

#include <jansson.h>

#include "common/loadgen.h"

/* r as above.  New reference, or NULL when out of memory.  Thread-safe. */
json_t *loadgen_result_json(const struct loadgen_result *r, int with_seconds);

#endif
