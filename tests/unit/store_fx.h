/*
 * store_fx.h — what the store's unit tests (test_store.c,
 * test_store_tasks.c) share: a fresh SQLite store in a temporary
 * directory per test (setup/teardown/reopen), a data-version watcher,
 * and builders of agents, sessions and profiles.  Included by one test
 * file each; not every file uses every helper.
 */
#ifndef SONDE_TEST_STORE_FX_H
#define SONDE_TEST_STORE_FX_H

#pragma GCC diagnostic ignored "-Wunused-function"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "server/store.h"

#define T0 1795000000000LL /* a fixed "now", ms */

struct fx {
    char dir[64];
    char path[96];
    struct store *st;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sonde-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/sonde.db", f->dir);
    char err[256] = "";
    assert_int_equal(store_open(f->path, &f->st, err, sizeof err), 0);
    assert_non_null(f->st);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->st);
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    assert_int_equal(rmdir(f->dir), 0);
    free(f);
    return 0;
}

static void reopen(struct fx *f)
{
    store_close(f->st);
    f->st = NULL;
    char err[256] = "";
    assert_int_equal(store_open(f->path, &f->st, err, sizeof err), 0);
}

/* PRAGMA data_version seen from an outside connection: changes when any
 * other connection commits, so an unchanged value means no write. */
struct watcher {
    sqlite3 *db;
};

static void watch(struct fx *f, struct watcher *w)
{
    assert_int_equal(sqlite3_open_v2(f->path, &w->db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
}

static int64_t sql_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static int64_t data_version(struct watcher *w)
{
    return sql_int(w->db, "PRAGMA data_version");
}

static void unwatch(struct watcher *w)
{
    sqlite3_close(w->db);
}

static struct store_agent agent_of(const char *app, const char *instance, int64_t t)
{
    struct store_agent a = {0};
    snprintf(a.app, sizeof a.app, "%s", app);
    snprintf(a.instance, sizeof a.instance, "%s", instance);
    snprintf(a.agent_version, sizeof a.agent_version, "0.4.0");
    snprintf(a.cmdline, sizeof a.cmdline, "./%s --port 8080", app);
    a.pid = 4242;
    a.started_ms = t - 100;
    a.registered_ms = t;
    a.last_seen_ms = t;
    a.cpu_pct = -1;
    a.mem_pct = -1;
    return a;
}

static struct store_session session_of(const char *app, const char *instance, const char *trig,
                                       int64_t start)
{
    struct store_session s = {0};
    s.agent_id = 1;
    snprintf(s.triggered_by, sizeof s.triggered_by, "%s", trig);
    snprintf(s.app, sizeof s.app, "%s", app);
    snprintf(s.instance, sizeof s.instance, "%s", instance);
    snprintf(s.profile_types, sizeof s.profile_types, "cpu");
    snprintf(s.state, sizeof s.state, "running");
    s.pid = 4242;
    s.start_ms = start;
    s.duration_ms = 120000;
    s.cpu_pct = -1;
    s.mem_pct = -1;
    s.created_ms = start;
    return s;
}

static int64_t new_session(struct store *st, const char *app, const char *instance,
                           const char *trig, int64_t start)
{
    struct store_session s = session_of(app, instance, trig, start);
    assert_int_equal(store_session_create(st, &s), 0);
    assert_true(s.id > 0);
    return s.id;
}

static void put_profile(struct store *st, int64_t sid, const char *pprof, const char *tree,
                        int64_t samples)
{
    struct store_profile p = {.session_id = sid,
                              .pprof = pprof,
                              .pprof_len = strlen(pprof),
                              .tree = tree,
                              .tree_len = strlen(tree),
                              .samples = samples,
                              .sample_types = "samples/count,cpu/nanoseconds",
                              .now_ms = T0 + 500};
    assert_int_equal(store_profile_put(st, &p), 0);
}

/* ------------------------------------------------------------------ */

#endif
