/*
 * main.c — sonded, the server: command line, store, first-start admin
 * token, HTTP server, load-test runners (loadtest.h), background thread
 * (retention purges, task expiry, abandoned load tests), and a clean stop
 * on SIGTERM or SIGINT.
 *
 * Signals are blocked in every thread (they inherit the mask from here)
 * and taken synchronously by the main thread with sigwait(), so the stop
 * sequence runs as ordinary code: the load-test runners first (their
 * running tests end "failed", stored and notified through the HTTP layer
 * and the store, which must still exist), then the background thread
 * (it wakes long-polls through the HTTP layer too), then HTTP (stop
 * accepting, answer long-polls, let requests in flight finish), then the
 * store — nobody uses the store when it closes.
 *
 * stdout carries exactly what a supervisor or a test reads: the admin
 * token of a first start and "sonded listening on http://HOST:PORT".
 * Everything else (request log, errors) goes to stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "server/api.h"
#include "server/auth.h"
#include "server/clock.h"
#include "server/http.h"
#include "server/loadtest.h"

#ifndef SONDE_WEB_DIR
#define SONDE_WEB_DIR "web"
#endif

#define RETENTION_PERIOD_MS (3600 * 1000)
/* The background thread's tick: how late a task may expire at worst
 * when no request looks at it. */
#define TICK_MS 1000

static const char usage[] =
    "usage: sonded [options]\n"
    "  --listen HOST:PORT      address to listen on (default 127.0.0.1:7070; port 0 = any)\n"
    "  --data DIR              data directory, created 0700 (default ./sonde-data)\n"
    "  --db URL                store: sqlite:PATH (default sqlite:DIR/sonde.db)\n"
    "  --threads N             HTTP worker threads, 1..256 (default 4)\n"
    "  --retention-days N      delete sessions older than N days, 1..36500 (default 14)\n"
    "  --heartbeat-s N         agents' heartbeat interval, 1..3600 s (default 10)\n"
    "  --max-upload-mb N       largest compressed profile upload, 1..1024 MiB (default 32)\n"
    "  --max-profile-mb N      largest decompressed profile, 1..4096 MiB (default 64)\n"
    "  --task-minute-ms N      length of a task minute, 100..60000 ms (default 60000);\n"
    "                          for tests only: shortens active profiling tasks\n"
    "  --loadtest-allow LIST   where load tests may send requests: comma-separated\n"
    "                          addresses, CIDR blocks and host names (*.example.com);\n"
    "                          default 127.0.0.0/8,::1 (loopback only); \"\" = nowhere\n"
    "  --loadtest-parallel N   load tests run at the same time, 1..16 (default 1)\n"
    "  --loadtest-queue N      load tests waiting at most, 1..10000 (default 100)\n"
    "  --web DIR               the console's files (default: this build's web/)\n"
    "  --help                  this text\n"
    "  --version               print the version\n"
    "environment: SONDE_ADMIN_TOKEN  the admin token to create on first start\n";

/* ------------------------------------------------------------------ */
/* Command line                                                        */

static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sonded: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(sonded --help lists the options)\n");
    va_end(ap);
    return 2;
}

/* Strict decimal integer in [min, max]. */
static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max || *s == ' ' || *s == '+')
        return -1;
    *out = v;
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT" into cfg. */
static int parse_listen(const char *s, struct server_config *cfg)
{
    const char *colon;
    const char *host = s;
    size_t hlen;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - s);
    }
    long port;
    if (hlen == 0 || hlen >= sizeof(cfg->listen_host) || parse_int(colon + 1, 0, 65535, &port))
        return -1;
    memcpy(cfg->listen_host, host, hlen);
    cfg->listen_host[hlen] = '\0';
    cfg->listen_port = (int)port;
    return 0;
}

/* The integer options: a decimal in [min, max] into the int member at
 * offset of struct server_config, or, for mib, MiB into the size_t
 * member in bytes. */
static const struct int_option {
    const char *name;
    long min, max;
    size_t offset;
    int mib;
} int_options[] = {
    {"--threads", 1, 256, offsetof(struct server_config, threads), 0},
    {"--retention-days", 1, 36500, offsetof(struct server_config, retention_days), 0},
    {"--heartbeat-s", 1, 3600, offsetof(struct server_config, heartbeat_s), 0},
    {"--max-upload-mb", 1, 1024, offsetof(struct server_config, max_upload), 1},
    {"--max-profile-mb", 1, 4096, offsetof(struct server_config, max_profile), 1},
    {"--task-minute-ms", 100, 60000, offsetof(struct server_config, task_minute_ms), 0},
    {"--loadtest-parallel", 1, LOADTEST_PARALLEL_MAX,
     offsetof(struct server_config, loadtest_parallel), 0},
    {"--loadtest-queue", 1, 10000, offsetof(struct server_config, loadtest_queue), 0},
};

static const struct int_option *int_option(const char *name)
{
    for (size_t k = 0; k < sizeof int_options / sizeof int_options[0]; k++)
        if (strcmp(name, int_options[k].name) == 0)
            return &int_options[k];
    return NULL;
}

static void set_int_option(struct server_config *cfg, const struct int_option *o, long v)
{
    void *member = (char *)cfg + o->offset;
    if (o->mib)
        *(size_t *)member = (size_t)v << 20;
    else
        *(int *)member = (int)v;
}

static int option_known(const char *name)
{
    static const char *const names[] = {"--listen", "--data", "--db", "--loadtest-allow", "--web",
                                        NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return 1;
    return int_option(name) != NULL;
}

/* Fills cfg from argv.  0 to run, 1 when done (help/version printed),
 * else an exit status. */
static int parse_args(int argc, char **argv, struct server_config *cfg)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("sonded %s\n", SONDED_VERSION);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0)
            return bad_usage("unexpected argument '%s'", arg);

        /* --flag VALUE or --flag=VALUE */
        char name[32];
        const char *val;
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nlen >= sizeof(name))
            return bad_usage("unknown option '%s'", arg);
        memcpy(name, arg, nlen);
        name[nlen] = '\0';
        if (!option_known(name))
            return bad_usage("unknown option '%s'", name);
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                return bad_usage("option '%s' needs a value", arg);
            val = argv[++i];
        }

        const struct int_option *io = int_option(name);
        if (io) {
            long v;
            if (parse_int(val, io->min, io->max, &v))
                return bad_usage("%s: an integer in %ld..%ld, not '%s'", io->name, io->min,
                                 io->max, val);
            set_int_option(cfg, io, v);
        } else if (strcmp(name, "--listen") == 0) {
            if (parse_listen(val, cfg) < 0)
                return bad_usage("--listen: expected HOST:PORT with PORT 0..65535, not '%s'",
                                 val);
        } else if (strcmp(name, "--data") == 0) {
            if (!*val || strlen(val) >= sizeof(cfg->data_dir) - 16)
                return bad_usage("--data: a directory path of 1..495 bytes, not '%s'", val);
            snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s", val);
        } else if (strcmp(name, "--db") == 0) {
            if (!*val || strlen(val) >= sizeof(cfg->db_url))
                return bad_usage("--db: a URL of 1..599 bytes, not '%s'", val);
            snprintf(cfg->db_url, sizeof(cfg->db_url), "%s", val);
        } else if (strcmp(name, "--web") == 0) {
            if (!*val || strlen(val) >= sizeof(cfg->web_dir))
                return bad_usage("--web: a directory path of 1..%zu bytes, not '%s'",
                                 sizeof(cfg->web_dir) - 1, val);
            snprintf(cfg->web_dir, sizeof(cfg->web_dir), "%s", val);
        } else if (strcmp(name, "--loadtest-allow") == 0) {
            if (strlen(val) >= sizeof(cfg->loadtest_allow))
                return bad_usage("--loadtest-allow: a list of at most %zu bytes",
                                 sizeof(cfg->loadtest_allow) - 1);
            snprintf(cfg->loadtest_allow, sizeof(cfg->loadtest_allow), "%s", val);
        } else {
            return bad_usage("unknown option '%s'", name);
        }
    }
    return 0;
}

/* mkdir -p, the last directory with mode 0700 (it holds the database and
 * so every token hash). */
static int make_data_dir(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    struct stat sb;
    if (stat(path, &sb) < 0)
        return -errno;
    return S_ISDIR(sb.st_mode) ? 0 : -ENOTDIR;
}

/* ------------------------------------------------------------------ */
/* Background: retention and task expiry                               */

struct background {
    struct server *srv;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int quit;
};

static void purge(struct server *srv)
{
    int64_t before = wall_ms() - (int64_t)srv->cfg.retention_days * 86400 * 1000;
    int64_t deleted = 0;
    int rc = store_retention_purge(srv->store, before, &deleted);
    if (rc < 0)
        fprintf(stderr, "sonded: retention: %s\n", store_errmsg(srv->store));
    else if (deleted > 0)
        fprintf(stderr, "sonded: retention: deleted %" PRId64 " session(s) older than %d days\n",
                deleted, srv->cfg.retention_days);
}

/* Purges at start and every hour, expires tasks and fails abandoned load
 * tests every TICK_MS, until told to quit. */
static void *background_main(void *arg)
{
    struct background *b = arg;
    int purged = 0;
    int64_t last_purge = 0;
    pthread_mutex_lock(&b->lock);
    while (!b->quit) {
        pthread_mutex_unlock(&b->lock);
        int64_t now = wall_ms();
        /* A clock stepped back counts as time for a purge, too. */
        if (!purged || now - last_purge >= RETENTION_PERIOD_MS || now < last_purge) {
            purge(b->srv);
            purged = 1;
            last_purge = now;
        }
        /* Tasks whose end passed expire (requests expire them too,
         * lazily) and their agents' polls are woken. */
        api_task_expire(b->srv, wall_ms());
        /* Load tests left "in progress" by a server that died (each one
         * once its start is older than its duration + LOADTEST_GRACE_MS). */
        api_loadtest_abandon(b->srv, wall_ms());
        pthread_mutex_lock(&b->lock);
        /* CLOCK_REALTIME is fine here: a tick give or take a clock step
         * does not matter (requests expire tasks on their own too). */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += TICK_MS / 1000;
        while (!b->quit && pthread_cond_timedwait(&b->wake, &b->lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    static struct server srv;
    struct server_config *cfg = &srv.cfg;
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 7070;
    snprintf(cfg->data_dir, sizeof(cfg->data_dir), "./sonde-data");
    cfg->threads = 4;
    cfg->retention_days = 14;
    cfg->heartbeat_s = 10;
    cfg->max_json_body = 1u << 20;
    cfg->max_upload = 32u << 20;
    cfg->max_profile = 64u << 20;
    cfg->task_minute_ms = 60000;
    snprintf(cfg->loadtest_allow, sizeof(cfg->loadtest_allow), "%s", LOADTEST_ALLOW_DEFAULT);
    cfg->loadtest_parallel = 1;
    cfg->loadtest_queue = LOADTEST_QUEUE_DEFAULT;
    snprintf(cfg->web_dir, sizeof(cfg->web_dir), "%s", SONDE_WEB_DIR);

    int rc = parse_args(argc, argv, cfg);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    char err[512] = "";
    if (loadtest_allow_parse(cfg->loadtest_allow, &srv.loadtest_allow, err, sizeof(err)) < 0)
        return bad_usage("%s", err);
    if (!cfg->db_url[0])
        snprintf(cfg->db_url, sizeof(cfg->db_url), "sqlite:%s/sonde.db", cfg->data_dir);

    /* Before any thread exists, so that every thread inherits the mask
     * and the signals reach only sigwait() below. */
    sigset_t stopset;
    sigemptyset(&stopset);
    sigaddset(&stopset, SIGTERM);
    sigaddset(&stopset, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stopset, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Each connection is a descriptor: allow as many as the hard limit
     * lets us, up to what the HTTP layer ever keeps open. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if ((rc = make_data_dir(cfg->data_dir)) < 0) {
        fprintf(stderr, "sonded: cannot create data directory %s: %s\n", cfg->data_dir,
                strerror(-rc));
        loadtest_allow_free(srv.loadtest_allow);
        return 1;
    }
    if ((rc = store_open(cfg->db_url, &srv.store, err, sizeof(err))) < 0) {
        fprintf(stderr, "sonded: cannot open store %s: %s\n", cfg->db_url, err);
        loadtest_allow_free(srv.loadtest_allow);
        return 1;
    }
    if ((rc = auth_bootstrap(srv.store, wall_ms(), err, sizeof(err))) < 0) {
        fprintf(stderr, "sonded: %s\n", err);
        store_close(srv.store);
        loadtest_allow_free(srv.loadtest_allow);
        return 1;
    }
    if ((rc = http_start(&srv, err, sizeof(err))) < 0) {
        fprintf(stderr, "sonded: %s\n", err);
        store_close(srv.store);
        loadtest_allow_free(srv.loadtest_allow);
        return 1;
    }
    /* Requests may run already: they read srv.loadtest_runner
     * atomically (NULL until here: a test queued meanwhile is claimed by
     * the runners' first look). */
    struct loadtest_runner *runner = NULL;
    if ((rc = loadtest_runner_start(&srv, cfg->loadtest_parallel, &runner, err,
                                    sizeof(err))) < 0) {
        fprintf(stderr, "sonded: %s\n", err);
        http_stop(&srv);
        store_close(srv.store);
        loadtest_allow_free(srv.loadtest_allow);
        return 1;
    }
    __atomic_store_n(&srv.loadtest_runner, runner, __ATOMIC_RELEASE);
    int v6 = strchr(cfg->listen_host, ':') != NULL;
    printf("sonded listening on http://%s%s%s:%d\n", v6 ? "[" : "", cfg->listen_host,
           v6 ? "]" : "", srv.port);
    fflush(stdout);

    struct background bg = {.srv = &srv};
    pthread_mutex_init(&bg.lock, NULL);
    pthread_cond_init(&bg.wake, NULL);
    pthread_t bg_thread;
    int bg_started = pthread_create(&bg_thread, NULL, background_main, &bg) == 0;
    if (!bg_started)
        fprintf(stderr, "sonded: cannot start the background thread; no purges this run, "
                        "tasks expire only when requests look at them\n");

    int sig = 0;
    while (sigwait(&stopset, &sig) != 0)
        ;
    fprintf(stderr, "sonded: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");

    /* The runners end their tests (stored, then server_notify), and the
     * background thread calls server_notify() too: they stop before the
     * HTTP layer. */
    __atomic_store_n(&srv.loadtest_runner, NULL, __ATOMIC_RELEASE);
    loadtest_runner_stop(runner);
    if (bg_started) {
        pthread_mutex_lock(&bg.lock);
        bg.quit = 1;
        pthread_cond_signal(&bg.wake);
        pthread_mutex_unlock(&bg.lock);
        pthread_join(bg_thread, NULL);
    }
    pthread_cond_destroy(&bg.wake);
    pthread_mutex_destroy(&bg.lock);
    http_stop(&srv);
    store_close(srv.store);
    loadtest_allow_free(srv.loadtest_allow);
    fprintf(stderr, "sonded: stopped\n");
    return 0;
}
