/*
 * ingest.c — how many profile uploads per second sonded takes (SPEC's
 * ingest goal, ≥ 500 profiles/s), measured the way agents load it: many
 * clients, each with one keep-alive connection, each PUTting a real
 * gzipped pprof to a session of its own.  Run by bench/server_bench.py.
 *
 *   ingest URL TOKEN AGENT_ID COUNT THREADS PROFILE...
 *
 * URL is sonded's base (http://127.0.0.1:PORT), TOKEN an agent-role token,
 * AGENT_ID a registered agent.  Phase 1 (not timed) creates COUNT sessions
 * for that agent (POST /api/v1/agent/sessions); phase 2 (timed, from a
 * barrier that all THREADS pass together to the last answer) uploads
 * PROFILE number i % n to session i (PUT …/sessions/{id}/profile).  Session
 * creation is timed too and printed beside, as a second figure.
 *
 * stdout, one line: "sessions=N create_s=X uploads=N upload_s=Y
 * profiles_per_s=R failed=F bytes=B" (failed: answers other than 201, or
 * transport errors; the first failure's detail goes to stderr).  Exit
 * status 0 when nothing failed.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_COUNT 10000000L
#define MAX_THREADS 256
#define MAX_PROFILES 1024
#define MAX_PROFILE_BYTES (64L << 20)
#define MAX_ANSWER (1 << 20) /* a session object is ~500 bytes */

struct profile {
    char *data;
    size_t len;
};

struct answer {
    char buf[4096];
    size_t len;
};

static const char *base_url;
static char auth_header[512];
static long agent_id;
static long count;
static int nthreads;
static struct profile profiles[MAX_PROFILES];
static int nprofiles;
static int64_t *session_ids; /* count of them, filled by phase 1 */

static atomic_long next_index;
static atomic_long failed;
static atomic_int reported; /* the first failure is described, once */
static pthread_barrier_t barrier;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int read_file(const char *path, struct profile *p)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    int rc = 0;
    if (fseek(f, 0, SEEK_END) != 0) {
        rc = -errno;
        goto out;
    }
    long len = ftell(f);
    if (len <= 0 || len > MAX_PROFILE_BYTES) {
        rc = -EFBIG;
        goto out;
    }
    rewind(f);
    p->data = malloc((size_t)len);
    if (!p->data) {
        rc = -ENOMEM;
        goto out;
    }
    if (fread(p->data, 1, (size_t)len, f) != (size_t)len) {
        rc = -EIO;
        goto out;
    }
    p->len = (size_t)len;
out:
    fclose(f);
    return rc;
}

/* Keeps the first bytes of an answer (enough for a session object or an
 * error message); the rest is read and dropped so the connection stays
 * usable. */
static size_t on_answer(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct answer *a = userdata;
    size_t n = size * nmemb;
    size_t room = sizeof(a->buf) - 1 - a->len;
    size_t take = n < room ? n : room;
    memcpy(a->buf + a->len, ptr, take);
    a->len += take;
    a->buf[a->len] = '\0';
    return n;
}

static void fail(const char *what, long index, long status, const char *detail)
{
    atomic_fetch_add(&failed, 1);
    if (atomic_exchange(&reported, 1) == 0)
        fprintf(stderr, "ingest: %s %ld failed: status %ld: %.300s\n", what, index, status,
                detail);
}

/* One request on the thread's connection; returns the HTTP status, or -1
 * (detail in a->buf) on a transport error. */
static long perform(CURL *c, struct curl_slist *headers, const char *method, const char *url,
                    const char *body, size_t body_len, struct answer *a)
{
    a->len = 0;
    a->buf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(a->buf, sizeof(a->buf), "%s", curl_easy_strerror(rc));
        return -1;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static CURL *new_handle(void)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    return c;
}

/* "Expect:" off: curl would otherwise wait for a 100 Continue before
 * every body over 1 KiB, a round trip that agents do not pay either. */
static struct curl_slist *headers_for(const char *content_type)
{
    struct curl_slist *h = NULL;
    char ct[128];
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
    h = curl_slist_append(h, auth_header);
    h = curl_slist_append(h, ct);
    h = curl_slist_append(h, "Expect:");
    return h;
}

static void create_sessions(CURL *c)
{
    struct curl_slist *h = headers_for("application/json");
    char url[1024], body[256];
    struct answer a;
    snprintf(url, sizeof(url), "%s/api/v1/agent/sessions", base_url);
    snprintf(body, sizeof(body),
             "{\"agent_id\": %ld, \"triggered_by\": \"load-test\", "
             "\"profile_types\": [\"cpu\"], \"duration_s\": 10}",
             agent_id);
    for (;;) {
        long i = atomic_fetch_add(&next_index, 1);
        if (i >= count)
            break;
        long st = perform(c, h, "POST", url, body, strlen(body), &a);
        json_t *j = st == 201 ? json_loads(a.buf, 0, NULL) : NULL;
        json_t *id = j ? json_object_get(j, "id") : NULL;
        if (!json_is_integer(id)) {
            fail("session", i, st, a.buf);
            session_ids[i] = 0;
        } else {
            session_ids[i] = json_integer_value(id);
        }
        json_decref(j);
    }
    curl_slist_free_all(h);
}

static void upload_profiles(CURL *c)
{
    struct curl_slist *h = headers_for("application/octet-stream");
    char url[1024];
    struct answer a;
    for (;;) {
        long i = atomic_fetch_add(&next_index, 1);
        if (i >= count)
            break;
        if (session_ids[i] == 0)
            continue; /* its creation failed, already counted */
        const struct profile *p = &profiles[i % nprofiles];
        snprintf(url, sizeof(url), "%s/api/v1/agent/sessions/%" PRId64 "/profile", base_url,
                 session_ids[i]);
        long st = perform(c, h, "PUT", url, p->data, p->len, &a);
        if (st != 201)
            fail("upload", i, st, a.buf);
    }
    curl_slist_free_all(h);
}

static double phase_start[2], phase_end[2];

/* Each thread keeps one handle, so one keep-alive connection, through
 * both phases.  Thread 0 takes the times: every thread passes the barrier
 * before the clock starts and after its last answer. */
static void *worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    CURL *c = new_handle();
    if (!c)
        fail("curl_easy_init", me, -1, "out of memory");
    for (int phase = 0; phase < 2; phase++) {
        pthread_barrier_wait(&barrier);
        if (me == 0) {
            atomic_store(&next_index, 0);
            phase_start[phase] = now_s();
        }
        pthread_barrier_wait(&barrier);
        if (c) {
            if (phase == 0)
                create_sessions(c);
            else
                upload_profiles(c);
        }
        pthread_barrier_wait(&barrier);
        if (me == 0)
            phase_end[phase] = now_s();
    }
    if (c)
        curl_easy_cleanup(c);
    return NULL;
}

static long parse_long(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "ingest: %s must be an integer in %ld..%ld\n", what, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: ingest URL TOKEN AGENT_ID COUNT THREADS PROFILE...\n");
        return 2;
    }
    base_url = argv[1];
    if (strlen(base_url) > 512 || strlen(argv[2]) > 400) {
        fprintf(stderr, "ingest: URL or TOKEN too long\n");
        return 2;
    }
    snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s", argv[2]);
    agent_id = parse_long(argv[3], 1, LONG_MAX, "AGENT_ID");
    count = parse_long(argv[4], 1, MAX_COUNT, "COUNT");
    nthreads = (int)parse_long(argv[5], 1, MAX_THREADS, "THREADS");
    nprofiles = argc - 6;
    if (nprofiles > MAX_PROFILES) {
        fprintf(stderr, "ingest: at most %d profiles\n", MAX_PROFILES);
        return 2;
    }
    size_t total_bytes = 0;
    for (int i = 0; i < nprofiles; i++) {
        int rc = read_file(argv[6 + i], &profiles[i]);
        if (rc < 0) {
            fprintf(stderr, "ingest: %s: %s\n", argv[6 + i], strerror(-rc));
            return 1;
        }
    }
    for (long i = 0; i < count; i++)
        total_bytes += profiles[i % nprofiles].len;
    session_ids = calloc((size_t)count, sizeof(*session_ids));
    if (!session_ids || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "ingest: out of memory\n");
        return 1;
    }
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    pthread_t tids[MAX_THREADS];
    for (int t = 0; t < nthreads; t++)
        if (pthread_create(&tids[t], NULL, worker, (void *)(intptr_t)t) != 0) {
            fprintf(stderr, "ingest: cannot start thread %d\n", t);
            return 1;
        }
    for (int t = 0; t < nthreads; t++)
        pthread_join(tids[t], NULL);
    pthread_barrier_destroy(&barrier);

    double create_s = phase_end[0] - phase_start[0];
    double upload_s = phase_end[1] - phase_start[1];
    long nfailed = atomic_load(&failed);
    printf("sessions=%ld create_s=%.4f uploads=%ld upload_s=%.4f profiles_per_s=%.1f "
           "failed=%ld bytes=%zu\n",
           count, create_s, count, upload_s, upload_s > 0 ? (double)count / upload_s : 0.0,
           nfailed, total_bytes);
    for (int i = 0; i < nprofiles; i++)
        free(profiles[i].data);
    free(session_ids);
    curl_global_cleanup();
    return nfailed ? 1 : 0;
}
