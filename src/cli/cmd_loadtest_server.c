/*
 * cmd_loadtest_server.c — `sonde loadtest URL --server S [...]`: the same
 * test as a local run, but run by sonded (docs/api.md, "Load tests"):
 * POST /api/v1/loadtests, then GET it every POLL_MS until it has ended,
 * printing the state as it changes and, at the end, the summary a local
 * run prints (from the same results document), the error of a failed
 * test, and the profiling sessions of --profile-app.
 *
 * Ctrl-C (SIGINT) or SIGTERM asks sonded to cancel the test (POST
 * …/cancel) and goes on waiting for its end, so the summary of what was
 * measured is still printed; a second one quits at once (the test goes
 * on being cancelled there).  The handler only sets a flag: the waiting
 * loop sleeps with nanosleep, which the signal interrupts.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/command.h"
#include "cli/loadtest.h"
#include "commands.h"

#define POLL_MS 250

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    if (interrupted)
        _exit(128 + sig);
    interrupted = sig;
}

/* The test's request document; NULL after printing why (*status set). */
static json_t *request_json(const struct loadtest_args *args, int *status)
{
    const struct loadgen_spec *s = &args->spec;
    json_t *headers = json_object();
    json_t *o = json_pack("{s:s,s:s,s:i,s:I,s:i}", "url", s->url, "method", s->method, "users",
                          s->users, "duration_s", (json_int_t)(s->duration_ms / 1000),
                          "timeout_ms", s->timeout_ms);
    *status = 1;
    if (!o || !headers)
        goto oom;
    for (size_t i = 0; i < s->n_headers; i++) {
        const char *h = s->headers[i], *colon = strchr(h, ':');
        char name[256];
        size_t n = (size_t)(colon - h);
        if (n >= sizeof name) {
            fprintf(stderr, "sonde loadtest: -H/--header: a name of at most %zu bytes for "
                            "--server\n", sizeof name - 1);
            *status = 2;
            goto fail;
        }
        memcpy(name, h, n);
        name[n] = '\0';
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        const char *seen;
        json_t *unused;
        int twice = 0;
        json_object_foreach(headers, seen, unused)
            twice |= !strcasecmp(seen, name);
        if (twice) {
            fprintf(stderr, "sonde loadtest: -H/--header: %s twice; sonded takes one value per "
                            "header\n", name);
            *status = 2;
            goto fail;
        }
        json_t *jv = json_string(v);
        if (!jv) {
            fprintf(stderr, "sonde loadtest: -H/--header %s: its value must be UTF-8 text for "
                            "--server\n", name);
            *status = 2;
            goto fail;
        }
        if (json_object_set_new(headers, name, jv) != 0)
            goto oom;
    }
    if (s->n_headers && json_object_set(o, "headers", headers) != 0)
        goto oom;
    if (s->body_len) {
        json_t *b = json_stringn((const char *)s->body, s->body_len);
        if (!b) {
            fprintf(stderr, "sonde loadtest: the body must be UTF-8 text without NUL bytes for "
                            "--server\n");
            *status = 2;
            goto fail;
        }
        if (json_object_set_new(o, "body", b) != 0)
            goto oom;
    }
    if ((s->rate > 0 && json_object_set_new(o, "rate", json_real(s->rate)) != 0) ||
        (args->profile_app &&
         json_object_set_new(o, "profile_app", json_string(args->profile_app)) != 0))
        goto oom;
    json_decref(headers);
    return o;
oom:
    fprintf(stderr, "sonde loadtest: out of memory\n");
fail:
    json_decref(headers);
    json_decref(o);
    return NULL;
}

static int ended(const char *state)
{
    return !strcmp(state, "completed") || !strcmp(state, "failed") ||
           !strcmp(state, "cancelled");
}

/* Sleeps ms unless a signal comes first. */
static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void print_sessions(json_t *sessions)
{
    size_t n = json_array_size(sessions);
    if (!n) {
        printf("  Profiling no session yet (agents of the app running? see sonde sessions "
               "--triggered-by load-test)\n");
        return;
    }
    printf("  Profiling %zu session%s (load-test):", n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(sessions, i);
        printf(" %lld %s/%s %s", (long long)json_integer_value(json_object_get(x, "id")),
               fmt_text(x, "app"), fmt_text(x, "instance"), fmt_text(x, "state"));
        printf("%s", i + 1 < n ? "," : "\n");
    }
}

/* Waits for test id to end; 0 with *out (the ended test), or 1 (said). */
static int wait_end(struct client *c, long long id, int quiet, json_t **out)
{
    char path[64];
    snprintf(path, sizeof path, "/api/v1/loadtests/%lld", id);
    char last[32] = "queued";
    int cancel_sent = 0;
    for (;;) {
        if (interrupted && !cancel_sent) {
            char cpath[80];
            snprintf(cpath, sizeof cpath, "%s/cancel", path);
            fprintf(stderr, "sonde loadtest: cancelling test %lld on sonded (%s again quits "
                            "at once)\n", id, interrupted == SIGINT ? "Ctrl-C" : "the signal");
            json_t *ans = NULL;
            /* 409: it ended meanwhile, which the next GET shows. */
            if (client_call_json(c, "POST", cpath, NULL, &ans) != 0 && client_status(c) != 409)
                fprintf(stderr, "sonde loadtest: %s\n", client_errmsg(c));
            json_decref(ans);
            cancel_sent = 1;
        }
        json_t *t = NULL;
        if (client_call_json(c, "GET", path, NULL, &t) != 0) {
            fprintf(stderr, "sonde loadtest: %s\n", client_errmsg(c));
            return 1;
        }
        const char *state = fmt_string(t, "state");
        if (strcmp(state, last) != 0) {
            if (!quiet && !ended(state))
                printf("  %s\n", state);
            fflush(stdout);
            snprintf(last, sizeof last, "%s", state);
        }
        if (ended(state)) {
            *out = t;
            return 0;
        }
        json_decref(t);
        pause_ms(POLL_MS);
    }
}

int loadtest_remote(struct loadtest_args *args)
{
    int status;
    json_t *req = request_json(args, &status);
    if (!req)
        return status;
    struct client *c = client_new(&args->opt, "loadtest");
    if (!c) {
        json_decref(req);
        return 1;
    }
    json_t *t = NULL;
    int rc = client_call_json(c, "POST", "/api/v1/loadtests", req, &t);
    json_decref(req);
    if (rc != 0) {
        fprintf(stderr, "sonde loadtest: %s\n", client_errmsg(c));
        status = client_status(c) == 400 ? 2 : 1;
        client_free(c);
        return status;
    }
    long long id = (long long)json_integer_value(json_object_get(t, "id"));
    json_decref(t);
    t = NULL;

    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (!args->json) {
        char where[600];
        snprintf(where, sizeof where, "by sonded at %s, test %lld", args->opt.server, id);
        loadtest_print_header(&args->spec, where, 0);
        printf("  queued\n");
        fflush(stdout);
    }
    status = wait_end(c, id, args->json, &t);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (status == 0) {
        const char *state = fmt_string(t, "state");
        if (args->json) {
            json_dumpf(t, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
            putchar('\n');
        } else {
            json_t *result = json_object_get(t, "result");
            if (json_is_object(result))
                loadtest_print_summary(result, !strcmp(state, "cancelled"));
            else if (!strcmp(state, "cancelled"))
                printf("  Cancelled before it started\n");
            if (!strcmp(state, "failed"))
                printf("  Failed: %s\n", fmt_string(t, "error"));
            if (args->profile_app)
                print_sessions(json_object_get(t, "sessions"));
        }
        if (!strcmp(state, "failed"))
            status = 1;
        json_decref(t);
    }
    client_free(c);
    if (status == 0)
        status = command_finish("loadtest");
    return status;
}
