/*
 * cmd_top.c — `sonde top [-n N] [--sample-index NAME] FILE`: the functions
 * of a pprof file by self time, as a table shaped like `go tool pprof
 * -top`: flat, flat%, sum%, cum, cum%, name.  flat is what the function
 * spent itself (it is the leaf frame), cum what it spent with its callees
 * (counted once per sample, however deep the recursion).
 *
 * Reads any pprof file (sonde's, Go's, gperftools' converted ...) through
 * the validating decoder in src/common/pprof_read.c.
 *
 * `sonde top SESSION` prints the same table for a session stored in
 * sonded, from its /api/v1/sessions/{id}/top view (client.h): an argument
 * that is an existing file is read locally, else a positive integer is a
 * session id.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/client.h"
#include "commands.h"
#include "common/pprof.h"

#define DEFAULT_ROWS 20
/* Functions asked of the server: its maximum, so that "out of M" is
 * known; the rows are cut to -n here. */
#define SERVER_TOP_LIMIT "10000"

static void top_usage(FILE *f)
{
    fprintf(f, "usage: sonde top [-n N] [--sample-index NAME] FILE\n"
               "       sonde top [-n N] [--type NAME] SESSION [--server URL] [--token T] [--json]\n"
               "  -n N                  rows to print (default %d, 0 = all)\n"
               "  --sample-index NAME, --type NAME\n"
               "                        sample type to rank by, by name (cpu, wall,\n"
               "                        samples) or index (default: the profile's default)\n"
               "  FILE                  a pprof file\n"
               "  SESSION               the id of a session stored in sonded\n",
               DEFAULT_ROWS);
    client_options_usage(f, 1);
}

/* go tool pprof's percentage(): "  100%", "75.00%", " 0.05%". */
static void percent(int64_t v, int64_t total, char *buf, size_t len)
{
    double r = total ? (double)v / (double)total * 100.0 : 0.0;
    if (r < 0)
        r = -r;
    if (r >= 99.95 && r <= 100.05)
        snprintf(buf, len, "  100%%");
    else if (r >= 1.0)
        snprintf(buf, len, "%5.2f%%", r);
    else
        snprintf(buf, len, "%5.2g%%", r);
}

/* Lists the sample types of p into buf ("samples, cpu"). */
static void list_types(const struct pprof_profile *p, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < p->pb->n_sample_type && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? ", " : "",
                              pprof_string(p, p->pb->sample_type[i]->type));
}

/* The table itself, from "Showing nodes ..." on: the first `rows` rows of
 * t (0 = all), whether t comes from a file or from the server. */
static void print_rows(const struct pprof_top *t, long rows)
{
    size_t shown = rows == 0 || (size_t)rows > t->n ? t->n : (size_t)rows;
    int64_t shown_flat = 0;
    for (size_t i = 0; i < shown; i++)
        if (__builtin_add_overflow(shown_flat, t->rows[i].flat, &shown_flat))
            shown_flat = INT64_MAX;
    char a[64], b[64], c[64], d[64], e[64];
    pprof_format_scaled(shown_flat, t->unit, t->min_value, a, sizeof a);
    percent(shown_flat, t->total, b, sizeof b);
    pprof_format_scaled(t->total, t->unit, t->min_value, c, sizeof c);
    /* percent() pads to 6 columns; the header line reads better trimmed. */
    const char *bt = b;
    while (*bt == ' ')
        bt++;
    printf("Showing nodes accounting for %s, %s of %s total\n", a, bt, c);
    if (shown < t->n)
        printf("Showing top %zu nodes out of %zu\n", shown, t->n);
    printf("%10s %6s %6s %10s %6s\n", "flat", "flat%", "sum%", "cum", "cum%");
    int64_t sum = 0;
    for (size_t i = 0; i < shown; i++) {
        const struct pprof_top_row *r = &t->rows[i];
        if (__builtin_add_overflow(sum, r->flat, &sum))
            sum = INT64_MAX;
        pprof_format_scaled(r->flat, t->unit, t->min_value, a, sizeof a);
        percent(r->flat, t->total, b, sizeof b);
        percent(sum, t->total, c, sizeof c);
        pprof_format_scaled(r->cum, t->unit, t->min_value, d, sizeof d);
        percent(r->cum, t->total, e, sizeof e);
        printf("%10s %6s %6s %10s %6s  %s\n", a, b, c, d, e, r->name);
    }
}

/* go tool pprof's -unit=minimum picks units by the smallest sample; the
 * server's view has no samples, so the smallest nonzero function value
 * stands in for it. */
static int64_t smallest_value(const struct pprof_top *t)
{
    int64_t m = 0;
    for (size_t i = 0; i < t->n; i++) {
        int64_t v = t->rows[i].flat ? t->rows[i].flat : t->rows[i].cum;
        v = v < 0 ? -v : v;
        if (v && (!m || v < m))
            m = v;
    }
    return m;
}

/* `sonde top SESSION`: the session's header, then the server's top view
 * in the local table's shape. */
static int top_session(const struct client_options *o, long long id, const char *type, long rows)
{
    char path[CLIENT_MAX_PATH];
    json_t *session = NULL, *ans = NULL;
    struct pprof_top t = {0};
    int rc = 1;
    struct client *c = client_new(o, "top");
    if (!c)
        return 1;
    snprintf(path, sizeof path, "/api/v1/sessions/%lld", id);
    if (client_call_json(c, "GET", path, NULL, &session) != 0)
        goto fail;
    snprintf(path, sizeof path, "/api/v1/sessions/%lld/top?limit=" SERVER_TOP_LIMIT, id);
    if (type && client_path_param(path, sizeof path, "type", type) != 0) {
        fprintf(stderr, "sonde top: --type is too long\n");
        goto out;
    }
    if (client_call_json(c, "GET", path, NULL, &ans) != 0)
        goto fail;
    if (o->json) {
        size_t n;
        const char *body = client_body(c, &n);
        fwrite(body, 1, n, stdout);
        if (n == 0 || body[n - 1] != '\n')
            putchar('\n');
        rc = 0;
        goto out;
    }
    json_t *fns = json_object_get(ans, "functions"), *f;
    const char *ttype = json_string_value(json_object_get(ans, "type"));
    const char *unit = json_string_value(json_object_get(ans, "unit"));
    if (!json_is_array(fns) || !ttype || !unit) {
        fprintf(stderr, "sonde top: sonded's top view lacks functions, type or unit\n");
        goto out;
    }
    t.rows = calloc(json_array_size(fns) + 1, sizeof *t.rows);
    if (!t.rows) {
        fprintf(stderr, "sonde top: out of memory\n");
        goto out;
    }
    size_t i;
    json_array_foreach(fns, i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        t.rows[t.n].name = name ? name : "?"; /* borrowed from ans */
        t.rows[t.n].flat = json_integer_value(json_object_get(f, "self"));
        t.rows[t.n].cum = json_integer_value(json_object_get(f, "total"));
        t.n++;
    }
    t.total = json_integer_value(json_object_get(ans, "total"));
    t.type = ttype;
    t.unit = unit;
    t.min_value = smallest_value(&t);

    /* The header: which session, then what the local top prints. */
    const char *app = json_string_value(json_object_get(session, "app"));
    const char *inst = json_string_value(json_object_get(session, "instance"));
    const char *by = json_string_value(json_object_get(session, "triggered_by"));
    printf("Session: %lld (app %s, instance %s, %s)\n", id, app ? app : "?", inst ? inst : "?",
           by ? by : "?");
    printf("Type: %s\n", t.type);
    json_t *start = json_object_get(session, "start_ms");
    if (json_is_integer(start)) {
        time_t secs = (time_t)(json_integer_value(start) / 1000);
        struct tm tm;
        char when[64];
        if (localtime_r(&secs, &tm) && strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", &tm))
            printf("Time: %s\n", when);
    }
    json_int_t dur = json_integer_value(json_object_get(session, "duration_s"));
    if (dur > 0 && dur <= INT64_MAX / 1000000000) {
        char a[64], b[64];
        int64_t ns = (int64_t)dur * 1000000000;
        pprof_format_value(ns, "nanoseconds", a, sizeof a);
        if (!strcmp(t.unit, "nanoseconds")) {
            pprof_format_scaled(t.total, t.unit, t.min_value, b, sizeof b);
            printf("Duration: %s, Total samples = %s (%.2f%%)\n", a, b,
                   (double)t.total / (double)ns * 100.0);
        } else {
            printf("Duration: %s\n", a);
        }
    }
    print_rows(&t, rows);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "sonde top: %s\n", client_errmsg(c));
out:
    free(t.rows);
    json_decref(ans);
    json_decref(session);
    client_free(c);
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "sonde top: cannot write the output: %s\n", strerror(errno));
        rc = 1;
    }
    return rc;
}

/* A session id: a positive decimal integer (and not a file, checked by
 * the caller). */
static int session_id(const char *s, long long *id)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v <= 0 || *s == '+')
        return -1;
    *id = v;
    return 0;
}

int cmd_top(int argc, char **argv)
{
    long rows = DEFAULT_ROWS;
    const char *index_name = NULL, *file = NULL;
    struct client_options server;
    client_options_init(&server);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = client_option(&server, "top", argc, argv, &i);
        if (k < 0) {
            top_usage(stderr);
            return 2;
        } else if (k > 0) {
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            top_usage(stdout);
            return 0;
        } else if (!strncmp(a, "-n", 2)) { /* -n N or -nN */
            const char *v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            char *end;
            errno = 0;
            rows = v ? strtol(v, &end, 10) : -1;
            if (!v || errno || *end || end == v || rows < 0 || rows > INT_MAX) {
                fprintf(stderr, "sonde top: -n needs a count >= 0%s%s\n", v ? ", not " : "",
                        v ? v : "");
                top_usage(stderr);
                return 2;
            }
        } else if (client_arg_value("--sample-index", argc, argv, &i, &index_name) ||
                   client_arg_value("--type", argc, argv, &i, &index_name)) {
            if (!index_name || !*index_name) {
                fprintf(stderr, "sonde top: %s needs a sample type name\n", a);
                top_usage(stderr);
                return 2;
            }
        } else if (!strcmp(a, "--") && i + 1 < argc && !file) {
            file = argv[++i];
            if (i + 1 < argc) {
                fprintf(stderr, "sonde top: one file only\n");
                top_usage(stderr);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "sonde top: unknown option '%s'\n", a);
            top_usage(stderr);
            return 2;
        } else if (file) {
            fprintf(stderr, "sonde top: one file only ('%s' and '%s')\n", file, a);
            top_usage(stderr);
            return 2;
        } else {
            file = a;
        }
    }
    if (!file) {
        fprintf(stderr, "sonde top: no profile file or session given\n");
        top_usage(stderr);
        return 2;
    }
    struct stat st;
    long long id;
    if (stat(file, &st) != 0 && session_id(file, &id) == 0)
        return top_session(&server, id, index_name, rows);
    if (server.json) {
        fprintf(stderr, "sonde top: --json is for a session in sonded; %s is a file\n", file);
        top_usage(stderr);
        return 2;
    }

    char err[512];
    struct pprof_profile *p;
    if (pprof_load_file(file, &p, err, sizeof err) != 0) {
        fprintf(stderr, "sonde top: %s\n", err);
        return 1;
    }
    int si = pprof_sample_index(p, index_name);
    if (si < 0) {
        char types[256];
        list_types(p, types, sizeof types);
        int usage_error = index_name != NULL;
        if (usage_error)
            fprintf(stderr, "sonde top: %s has no sample type '%s' (it has: %s)\n", file,
                    index_name, types[0] ? types : "none");
        else
            fprintf(stderr, "sonde top: %s has no sample types\n", file);
        pprof_profile_free(p);
        return usage_error ? 2 : 1;
    }
    struct pprof_top *t;
    if (pprof_top_compute(p, si, &t) != 0) {
        fprintf(stderr, "sonde top: out of memory\n");
        pprof_profile_free(p);
        return 1;
    }

    char a[64], c[64];
    /* The header go tool pprof prints: main binary, build id, comments. */
    if (p->pb->n_mapping > 0) {
        const char *main_file = pprof_string(p, p->pb->mapping[0]->filename);
        const char *slash = strrchr(main_file, '/');
        if (*main_file)
            printf("File: %s\n", slash ? slash + 1 : main_file);
        if (*pprof_string(p, p->pb->mapping[0]->build_id))
            printf("Build ID: %s\n", pprof_string(p, p->pb->mapping[0]->build_id));
    }
    for (size_t i = 0; i < p->pb->n_comment; i++)
        printf("%s\n", pprof_string(p, p->pb->comment[i]));
    printf("Type: %s\n", t->type);
    if (p->pb->time_nanos > 0) {
        time_t secs = (time_t)(p->pb->time_nanos / 1000000000);
        struct tm tm;
        char when[64];
        if (localtime_r(&secs, &tm) && strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", &tm))
            printf("Time: %s\n", when);
    }
    if (p->pb->duration_nanos > 0) {
        pprof_format_value(p->pb->duration_nanos, "nanoseconds", a, sizeof a);
        if (!strcmp(t->unit, "nanoseconds")) { /* share of the wall time, as go pprof */
            pprof_format_scaled(t->total, t->unit, t->min_value, c, sizeof c);
            printf("Duration: %s, Total samples = %s (%.2f%%)\n", a, c,
                   (double)t->total / (double)p->pb->duration_nanos * 100.0);
        } else {
            printf("Duration: %s\n", a);
        }
    }
    print_rows(t, rows);
    pprof_top_free(t);
    pprof_profile_free(p);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "sonde top: cannot write the output: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
