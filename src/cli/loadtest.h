/*
 * loadtest.h — what the two halves of `sonde loadtest` share:
 * cmd_loadtest.c (arguments, the local run, the wrk-like summary) and
 * cmd_loadtest_server.c (the same test run by sonded: --server).
 *
 * Both print from the one results document of common/loadgen_json.h, so
 * a local run and a server's run read the same.
 */
#ifndef SONDE_CLI_LOADTEST_H
#define SONDE_CLI_LOADTEST_H

#include <jansson.h>

#include "cli/client.h"
#include "common/loadgen.h"

struct loadtest_args {
    struct loadgen_spec spec;
    const char *headers[LOADGEN_HEADERS_MAX];
    char method[16];
    char *body_file_data; /* owned, --body-file's contents */
    int json;
    /* --server: sonded runs the test */
    int remote;                 /* --server was given */
    struct client_options opt;  /* --server, --token */
    const char *profile_app;    /* --profile-app (remote only) */
};

/* "Load test of URL (where)" and the line of users, threads (when > 0),
 * duration, method, body and rate. */
void loadtest_print_header(const struct loadgen_spec *s, const char *where, int threads);
/* The summary lines (latency, requests, read, status, errors) of a
 * results document; "Cancelled after" first when cancelled. */
void loadtest_print_summary(json_t *result, int cancelled);

/* Runs args' test on sonded (args->opt) and waits for its end, printing
 * as the local run does (or, with --json, the test's JSON as sonded
 * gives it).  The exit status: 0 completed or cancelled, 1 failed or
 * could not be created (said), 2 a request sonded cannot take (said). */
int loadtest_remote(struct loadtest_args *args);

#endif
