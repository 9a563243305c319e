/*
 * store_sqlite_sql.c — every SQL text of the SQLite store (see
 * store_sqlite_internal.h for its other files): the schema's migrations,
 * the fixed statements by enum stmt_id, and the filtered queries built
 * from the filter fields present.
 *
 * Building a filtered query's WHERE clause from the fields present
 * (rather than "(? = '' OR app = ?)") keeps every filter on an index; the
 * 128 combinations per kind are cheap to cache, and store_sqlite.c
 * prepares each once per connection.
 *
 * In a profiles row the flame tree comes before the pprof: SQLite stores
 * a row's payload as one chain of overflow pages and reads it front to
 * back, so a merge that wants only the tree stops before the (larger)
 * pprof.
 *
 * Portability (PostgreSQL is the next implementation).  Queries use
 * standard SQL that PostgreSQL accepts unchanged but for mechanical
 * rewrites: placeholders ?N → $N; BEGIN IMMEDIATE → BEGIN (PostgreSQL
 * takes row locks on write); INSERT … RETURNING id and INSERT … ON
 * CONFLICT … DO UPDATE are the same in both.  Types are INTEGER/BIGINT,
 * DOUBLE PRECISION, TEXT and BLOB (bytea in PostgreSQL); the DDL's
 * "INTEGER PRIMARY KEY AUTOINCREMENT" (a rowid alias, never reusing an id
 * — a session id in a URL never comes to mean another session after a
 * purge) becomes "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY".
 * PRAGMAs are SQLite's alone and stay in store_sqlite.c.
 */
#include <stdio.h>
#include <string.h>

#include "server/store_sqlite_internal.h"

/* ------------------------------------------------------------------ */
/* Schema                                                              */

/* Applied in order, each once, each in one transaction.  Never edit an
 * entry that has shipped: append a new one. */
const char *const sq_migrations[] = {
    /* 1: everything of issue 4. */
    "CREATE TABLE agents ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  app TEXT NOT NULL,"
    "  instance TEXT NOT NULL,"
    "  pid BIGINT NOT NULL,"
    "  agent_version TEXT NOT NULL,"
    "  cmdline TEXT NOT NULL,"
    "  started_ms BIGINT NOT NULL,"
    "  registered_ms BIGINT NOT NULL,"
    "  last_seen_ms BIGINT NOT NULL,"
    "  stopped_ms BIGINT NOT NULL DEFAULT 0,"
    "  cpu_pct DOUBLE PRECISION NOT NULL DEFAULT -1,"
    "  mem_pct DOUBLE PRECISION NOT NULL DEFAULT -1);"
    "CREATE INDEX agents_app ON agents (app, registered_ms);"
    "CREATE INDEX agents_last_seen ON agents (last_seen_ms);"
    /* agent_id is not a foreign key: retention drops an agent's row when
     * it has not been seen for the retention period, while sessions are
     * kept by their own start time; load tests store sessions with no
     * agent at all (agent_id 0). */
    "CREATE TABLE sessions ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  agent_id BIGINT NOT NULL,"
    "  triggered_by TEXT NOT NULL,"
    "  request_id BIGINT NOT NULL DEFAULT 0,"
    "  app TEXT NOT NULL,"
    "  instance TEXT NOT NULL,"
    "  pid BIGINT NOT NULL,"
    "  start_ms BIGINT NOT NULL,"
    "  duration_ms BIGINT NOT NULL,"
    "  profile_types TEXT NOT NULL,"
    "  samples BIGINT NOT NULL,"
    "  traces BIGINT NOT NULL,"
    "  cpu_pct DOUBLE PRECISION NOT NULL,"
    "  mem_pct DOUBLE PRECISION NOT NULL,"
    "  state TEXT NOT NULL,"
    "  profile_bytes BIGINT NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL,"
    "  updated_ms BIGINT NOT NULL);"
    "CREATE INDEX sessions_app_start ON sessions (app, start_ms);"
    "CREATE INDEX sessions_start ON sessions (start_ms);"
    "CREATE INDEX sessions_triggered_start ON sessions (triggered_by, start_ms);"
    /* session_id is the rowid (no second index); tree before pprof, see
     * the top of the file. */
    "CREATE TABLE profiles ("
    "  session_id INTEGER PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,"
    "  samples BIGINT NOT NULL,"
    "  bytes BIGINT NOT NULL,"
    "  sample_types TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  tree BLOB NOT NULL,"
    "  pprof BLOB NOT NULL);"
    "CREATE TABLE profile_now ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  app TEXT NOT NULL,"
    "  duration_s BIGINT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  token_id BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE settings ("
    "  key TEXT NOT NULL,"
    "  app TEXT NOT NULL,"
    "  json TEXT NOT NULL,"
    "  PRIMARY KEY (key, app));"
    "CREATE TABLE settings_version (version BIGINT NOT NULL);"
    "INSERT INTO settings_version (version) VALUES (0);"
    "CREATE TABLE tokens ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  hash TEXT NOT NULL UNIQUE,"
    "  created_ms BIGINT NOT NULL,"
    "  last_used_ms BIGINT NOT NULL DEFAULT 0,"
    "  revoked_ms BIGINT NOT NULL DEFAULT 0);",
    /* 2: the agents' count of profiles they dropped (heartbeat). */
    "ALTER TABLE agents ADD COLUMN dropped_uploads BIGINT NOT NULL DEFAULT 0;",
    /* 3: active profiling (issue 6): tasks, each agent's part in them,
     * their log, the captures with their snapshots, and the trace spans
     * of session profiles.  agent_id is no foreign key (retention drops
     * agents on their own clock); the agent's instance and pid are
     * copied into task_agents and captures when the row is made, so they
     * outlive the agent's row (an agent never changes them). */
    "CREATE TABLE tasks ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  app TEXT NOT NULL,"
    "  interface TEXT NOT NULL,"
    "  duration_min BIGINT NOT NULL,"
    "  threshold_ms BIGINT NOT NULL,"
    "  frequency_ms BIGINT NOT NULL,"
    "  max_samples BIGINT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  token_id BIGINT NOT NULL DEFAULT 0,"
    "  creator TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  started_ms BIGINT NOT NULL DEFAULT 0,"
    "  ends_ms BIGINT NOT NULL,"
    "  ended_ms BIGINT NOT NULL DEFAULT 0,"
    "  captures BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX tasks_created ON tasks (created_ms);"
    "CREATE INDEX tasks_app_state ON tasks (app, state, created_ms);"
    "CREATE INDEX tasks_state_ends ON tasks (state, ends_ms);"
    "CREATE TABLE task_version (version BIGINT NOT NULL);"
    "INSERT INTO task_version (version) VALUES (0);"
    "CREATE TABLE task_agents ("
    "  task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,"
    "  agent_id BIGINT NOT NULL,"
    "  instance TEXT NOT NULL,"
    "  pid BIGINT NOT NULL,"
    "  delivered_ms BIGINT NOT NULL,"
    "  started_ms BIGINT NOT NULL DEFAULT 0,"
    "  stopped_ms BIGINT NOT NULL DEFAULT 0,"
    "  captures BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (task_id, agent_id));"
    "CREATE TABLE task_logs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,"
    "  ts_ms BIGINT NOT NULL,"
    "  event TEXT NOT NULL,"
    "  agent_id BIGINT NOT NULL,"
    "  message TEXT NOT NULL);"
    "CREATE INDEX task_logs_task ON task_logs (task_id, ts_ms, id);"
    /* UNIQUE (task_id, slot): the limit is also the schema's. */
    "CREATE TABLE captures ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,"
    "  agent_id BIGINT NOT NULL,"
    "  slot BIGINT NOT NULL,"
    "  app TEXT NOT NULL,"
    "  instance TEXT NOT NULL,"
    "  pid BIGINT NOT NULL,"
    "  trace_id TEXT NOT NULL,"
    "  interface TEXT NOT NULL,"
    "  start_ms BIGINT NOT NULL,"
    "  response_code BIGINT NOT NULL,"
    "  peer TEXT NOT NULL,"
    "  total_ms BIGINT NOT NULL,"
    "  snapshots BIGINT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  profile_bytes BIGINT NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL,"
    "  UNIQUE (task_id, slot));"
    "CREATE INDEX captures_trace ON captures (trace_id, created_ms);"
    /* As profiles: tree before pprof. */
    "CREATE TABLE capture_profiles ("
    "  capture_id INTEGER PRIMARY KEY REFERENCES captures (id) ON DELETE CASCADE,"
    "  bytes BIGINT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  tree BLOB NOT NULL,"
    "  pprof BLOB NOT NULL);"
    "CREATE TABLE trace_spans ("
    "  session_id BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,"
    "  trace_id TEXT NOT NULL,"
    "  interface TEXT NOT NULL,"
    "  samples BIGINT NOT NULL,"
    "  PRIMARY KEY (session_id, trace_id, interface));"
    "CREATE INDEX trace_spans_trace ON trace_spans (trace_id);",
    /* 4: load tests (issue 7).  The request's headers and body and the
     * results document sit at the end of the row: a list reads the
     * columns before them and never their overflow pages.  result is
     * NULL until a runner stores one.  profile_now_id is no foreign key
     * (a link both ways, set by store_profile_now_create).  The claim
     * takes the lowest queued id: (state, id).  Profile Now requests
     * learn who asked (a person or a load test), and sessions become
     * listable by the request that started them. */
    "CREATE TABLE loadtests ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  url TEXT NOT NULL,"
    "  method TEXT NOT NULL,"
    "  users BIGINT NOT NULL,"
    "  duration_s BIGINT NOT NULL,"
    "  rate DOUBLE PRECISION NOT NULL,"
    "  timeout_ms BIGINT NOT NULL,"
    "  n_headers BIGINT NOT NULL,"
    "  body_bytes BIGINT NOT NULL,"
    "  profile_app TEXT NOT NULL,"
    "  profile_now_id BIGINT NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL,"
    "  cancel_requested BIGINT NOT NULL DEFAULT 0,"
    "  error TEXT NOT NULL DEFAULT '',"
    "  token_id BIGINT NOT NULL DEFAULT 0,"
    "  creator TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  started_ms BIGINT NOT NULL DEFAULT 0,"
    "  ended_ms BIGINT NOT NULL DEFAULT 0,"
    "  requests BIGINT NOT NULL DEFAULT 0,"
    "  errors BIGINT NOT NULL DEFAULT 0,"
    "  headers TEXT NOT NULL,"
    "  body BLOB NOT NULL,"
    "  result TEXT);"
    "CREATE INDEX loadtests_state_id ON loadtests (state, id);"
    "CREATE INDEX loadtests_created ON loadtests (created_ms);"
    "ALTER TABLE profile_now ADD COLUMN triggered_by TEXT NOT NULL DEFAULT 'profile-now';"
    "ALTER TABLE profile_now ADD COLUMN loadtest_id BIGINT NOT NULL DEFAULT 0;"
    "CREATE INDEX sessions_request_start ON sessions (request_id, start_ms);",
};
const size_t sq_migrations_n = sizeof sq_migrations / sizeof sq_migrations[0];

/* ------------------------------------------------------------------ */
/* Statements                                                          */

#define AGENT_COLS                                                                                 \
    "a.id, a.app, a.instance, a.pid, a.agent_version, a.cmdline, a.started_ms, "                   \
    "a.registered_ms, a.last_seen_ms, a.stopped_ms, a.cpu_pct, a.mem_pct, a.dropped_uploads"
#define SESSION_COLS                                                                               \
    "s.id, s.agent_id, s.triggered_by, s.request_id, s.app, s.instance, s.pid, s.start_ms, "       \
    "s.duration_ms, s.profile_types, s.samples, s.traces, s.cpu_pct, s.mem_pct, s.state, "         \
    "s.profile_bytes, s.created_ms, s.updated_ms"
#define TOKEN_COLS "t.id, t.name, t.role, t.hash, t.created_ms, t.last_used_ms, t.revoked_ms"
#define PN_COLS                                                                                    \
    "r.id, r.app, r.duration_s, r.created_ms, r.token_id, r.triggered_by, r.loadtest_id"
#define TASK_COLS                                                                                  \
    "k.id, k.app, k.interface, k.duration_min, k.threshold_ms, k.frequency_ms, k.max_samples, "    \
    "k.state, k.token_id, k.creator, k.created_ms, k.started_ms, k.ends_ms, k.ended_ms, "          \
    "k.captures"
#define TASK_AGENT_COLS                                                                            \
    "g.task_id, g.agent_id, g.instance, g.pid, g.delivered_ms, g.started_ms, g.stopped_ms, "       \
    "g.captures"
#define TASK_LOG_COLS "l.id, l.task_id, l.ts_ms, l.event, l.agent_id, l.message"
#define CAPTURE_COLS                                                                               \
    "c.id, c.task_id, c.agent_id, c.slot, c.app, c.instance, c.pid, c.trace_id, c.interface, "     \
    "c.start_ms, c.response_code, c.peer, c.total_ms, c.snapshots, c.state, c.profile_bytes, "     \
    "c.created_ms"
/* cancel_requested last: it is an int, read apart from the table of
 * int64_t columns (store_sqlite_loadtests.c). */
#define LOADTEST_COLS                                                                              \
    "lt.id, lt.url, lt.method, lt.users, lt.duration_s, lt.rate, lt.timeout_ms, lt.n_headers, "    \
    "lt.body_bytes, lt.profile_app, lt.profile_now_id, lt.state, lt.error, lt.token_id, "          \
    "lt.creator, lt.created_ms, lt.started_ms, lt.ended_ms, lt.requests, lt.errors, "              \
    "lt.cancel_requested"
/* A task's end for retention and the list's overlap: when it ended, or
 * while running when it is planned to. */
#define TASK_END "(CASE WHEN k.ended_ms <> 0 THEN k.ended_ms ELSE k.ends_ms END)"

const char *const sq_stmt_sql[S_COUNT] = {
    [S_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [S_BEGIN_READ] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_AGENT_INSERT] = "INSERT INTO agents (app, instance, pid, agent_version, cmdline, "
                       "started_ms, registered_ms, last_seen_ms, stopped_ms, cpu_pct, mem_pct, "
                       "dropped_uploads) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
    [S_AGENT_HEARTBEAT] = "UPDATE agents SET last_seen_ms = ?2, "
                          "cpu_pct = CASE WHEN ?3 >= 0 THEN ?3 ELSE cpu_pct END, "
                          "mem_pct = CASE WHEN ?4 >= 0 THEN ?4 ELSE mem_pct END, "
                          "dropped_uploads = CASE WHEN ?5 >= 0 THEN ?5 ELSE dropped_uploads END "
                          "WHERE id = ?1",
    [S_AGENT_STOP] = "UPDATE agents SET stopped_ms = ?2 WHERE id = ?1",
    [S_AGENT_GET] = "SELECT " AGENT_COLS " FROM agents a WHERE a.id = ?1",
    [S_SESSION_INSERT] = "INSERT INTO sessions (agent_id, triggered_by, request_id, app, "
                         "instance, pid, start_ms, duration_ms, profile_types, samples, traces, "
                         "cpu_pct, mem_pct, state, profile_bytes, created_ms, updated_ms) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                         "0, ?15, ?15) RETURNING id",
    [S_SESSION_UPDATE] = "UPDATE sessions SET duration_ms = ?2, profile_types = ?3, "
                         "samples = ?4, traces = ?5, cpu_pct = ?6, mem_pct = ?7, state = ?8, "
                         "updated_ms = ?9 WHERE id = ?1",
    [S_SESSION_GET] = "SELECT " SESSION_COLS " FROM sessions s WHERE s.id = ?1",
    [S_SESSION_EXISTS] = "SELECT 1 FROM sessions WHERE id = ?1",
    /* The session half of a profile upload; a session that already has
     * a profile is caught by the profiles primary key right after. */
    [S_PROFILE_MARK] = "UPDATE sessions SET profile_bytes = ?2, "
                       "samples = CASE WHEN samples = 0 THEN ?3 ELSE samples END, "
                       "state = CASE WHEN state = 'running' THEN 'completed' ELSE state END, "
                       "updated_ms = ?4 WHERE id = ?1",
    [S_PROFILE_INSERT] = "INSERT INTO profiles (session_id, samples, bytes, sample_types, "
                         "created_ms, tree, pprof) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_PROFILE_GET] = "SELECT pprof FROM profiles WHERE session_id = ?1",
    [S_TREE_GET] = "SELECT tree FROM profiles WHERE session_id = ?1",
    [S_PURGE_SESSIONS] = "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions "
                         "WHERE start_ms < ?1 ORDER BY start_ms LIMIT ?2)",
    [S_PURGE_AGENTS] = "DELETE FROM agents WHERE last_seen_ms < ?1 "
                       "OR (stopped_ms <> 0 AND stopped_ms < ?1)",
    [S_PN_INSERT] = "INSERT INTO profile_now (app, duration_s, created_ms, token_id, "
                    "triggered_by, loadtest_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
    [S_PN_SINCE] = "SELECT " PN_COLS " FROM profile_now r WHERE r.id > ?1 "
                   "AND (r.app = '' OR r.app = ?2) AND r.created_ms + r.duration_s * 1000 > ?3 "
                   "ORDER BY r.id LIMIT ?4",
    [S_PN_RECENT] = "SELECT " PN_COLS " FROM profile_now r ORDER BY r.id DESC LIMIT ?1",
    [S_PN_LAST] = "SELECT COALESCE(MAX(id), 0) FROM profile_now",
    [S_PN_GET] = "SELECT " PN_COLS " FROM profile_now r WHERE r.id = ?1",
    [S_SETTING_GET] = "SELECT json FROM settings WHERE key = ?1 AND app = ?2",
    [S_SETTING_UPSERT] = "INSERT INTO settings (key, app, json) VALUES (?1, ?2, ?3) "
                         "ON CONFLICT (key, app) DO UPDATE SET json = excluded.json",
    [S_SETTING_DELETE] = "DELETE FROM settings WHERE key = ?1 AND app = ?2",
    [S_SETTING_APPS] = "SELECT app FROM settings WHERE key = ?1 AND app <> '' ORDER BY app "
                       "LIMIT ?2",
    [S_SETTINGS_BUMP] = "UPDATE settings_version SET version = version + 1",
    [S_SETTINGS_VERSION] = "SELECT version FROM settings_version",
    [S_TOKEN_INSERT] = "INSERT INTO tokens (name, role, hash, created_ms, last_used_ms, "
                       "revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
    [S_TOKEN_FIND] = "SELECT " TOKEN_COLS " FROM tokens t WHERE t.hash = ?1 AND t.revoked_ms = 0",
    [S_TOKEN_GET] = "SELECT " TOKEN_COLS " FROM tokens t WHERE t.id = ?1",
    [S_TOKEN_LIST] = "SELECT " TOKEN_COLS " FROM tokens t ORDER BY t.id LIMIT ?1",
    [S_TOKEN_REVOKE] = "UPDATE tokens SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms = 0",
    [S_TOKEN_TOUCH] = "UPDATE tokens SET last_used_ms = ?2 WHERE id = ?1 AND last_used_ms < ?3",
    [S_TOKEN_COUNT_ROLE] = "SELECT COUNT(*) FROM tokens WHERE revoked_ms = 0 AND role = ?1",
    [S_TOKEN_COUNT_ALL] = "SELECT COUNT(*) FROM tokens WHERE revoked_ms = 0",
    [S_TASK_INSERT] = "INSERT INTO tasks (app, interface, duration_min, threshold_ms, "
                      "frequency_ms, max_samples, state, token_id, creator, created_ms, "
                      "started_ms, ends_ms, ended_ms, captures) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?9, 0, ?10, 0, 0) "
                      "RETURNING id",
    [S_TASK_GET] = "SELECT " TASK_COLS " FROM tasks k WHERE k.id = ?1",
    [S_TASK_ACTIVE] = "SELECT " TASK_COLS " FROM tasks k WHERE k.app = ?1 "
                      "AND k.state = 'running' AND k.ends_ms > ?2 "
                      "ORDER BY k.created_ms, k.id LIMIT ?3",
    [S_TASK_CANCEL] = "UPDATE tasks SET state = 'cancelled', ended_ms = ?2 "
                      "WHERE id = ?1 AND state = 'running'",
    /* Expiry: whether any is due (on a reader, so that the frequent
     * calls that find none never take the write lock), which, and each
     * one's change. */
    [S_TASK_DUE] = "SELECT 1 FROM tasks WHERE state = 'running' AND ends_ms <= ?1 LIMIT 1",
    [S_TASK_DUE_LIST] = "SELECT " TASK_COLS " FROM tasks k WHERE k.state = 'running' "
                        "AND k.ends_ms <= ?1 ORDER BY k.ends_ms, k.id LIMIT ?2",
    [S_TASK_EXPIRE] = "UPDATE tasks SET state = 'expired', ended_ms = ends_ms "
                      "WHERE id = ?1 AND state = 'running'",
    [S_TASK_START] = "UPDATE tasks SET started_ms = ?2 WHERE id = ?1 AND started_ms = 0",
    [S_TASK_TAKE_SLOT] = "UPDATE tasks SET captures = captures + 1, "
                         "state = CASE WHEN captures + 1 >= max_samples "
                         "THEN 'limit-reached' ELSE state END, "
                         "ended_ms = CASE WHEN captures + 1 >= max_samples "
                         "THEN ?2 ELSE ended_ms END "
                         "WHERE id = ?1 AND state = 'running' AND captures < max_samples",
    [S_TASK_VERSION_BUMP] = "UPDATE task_version SET version = version + 1",
    [S_TASK_VERSION] = "SELECT version FROM task_version",
    [S_TASK_EXISTS] = "SELECT 1 FROM tasks WHERE id = ?1",
    /* What a task's log and captures say of an agent. */
    [S_TASK_AGENT_WHO] = "SELECT instance, pid, app FROM agents WHERE id = ?1",
    [S_TASK_AGENT_INSERT] = "INSERT INTO task_agents (task_id, agent_id, instance, pid, "
                            "delivered_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_TASK_AGENT_ENSURE] = "INSERT INTO task_agents (task_id, agent_id, instance, pid, "
                            "delivered_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
                            "ON CONFLICT (task_id, agent_id) DO NOTHING",
    [S_TASK_AGENT_START] = "UPDATE task_agents SET started_ms = ?3 "
                           "WHERE task_id = ?1 AND agent_id = ?2 AND started_ms = 0",
    [S_TASK_AGENT_STOP] = "UPDATE task_agents SET stopped_ms = ?3 "
                          "WHERE task_id = ?1 AND agent_id = ?2",
    [S_TASK_AGENT_CAPTURE] = "UPDATE task_agents SET captures = captures + 1 "
                             "WHERE task_id = ?1 AND agent_id = ?2",
    [S_TASK_AGENTS] = "SELECT " TASK_AGENT_COLS " FROM task_agents g WHERE g.task_id = ?1 "
                      "ORDER BY g.delivered_ms, g.agent_id LIMIT ?2",
    /* A line's time never goes back within its task's log (requests that
     * started earlier may commit later: the log tells the story in the
     * order it was written), except "expired", stamped at the task's end. */
    [S_TASK_LOG_INSERT] = "INSERT INTO task_logs (task_id, ts_ms, event, agent_id, message) "
                          "VALUES (?1, CASE WHEN ?3 <> 'expired' AND (SELECT MAX(ts_ms) FROM "
                          "task_logs WHERE task_id = ?1) > ?2 THEN (SELECT MAX(ts_ms) FROM "
                          "task_logs WHERE task_id = ?1) ELSE ?2 END, ?3, ?4, ?5)",
    [S_TASK_LOGS] = "SELECT " TASK_LOG_COLS " FROM task_logs l WHERE l.task_id = ?1 "
                    "ORDER BY l.ts_ms, l.id LIMIT ?2",
    [S_CAPTURE_INSERT] = "INSERT INTO captures (task_id, agent_id, slot, app, instance, pid, "
                         "trace_id, interface, start_ms, response_code, peer, total_ms, "
                         "snapshots, state, profile_bytes, created_ms) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                         "'uploading', 0, ?14) RETURNING id",
    /* The capture half of a snapshots upload; a second is caught by
     * capture_profiles' primary key right after. */
    [S_CAPTURE_MARK] = "UPDATE captures SET snapshots = ?2, profile_bytes = ?3, "
                       "state = 'complete' WHERE id = ?1",
    [S_CAPTURE_PROFILE_INSERT] = "INSERT INTO capture_profiles (capture_id, bytes, created_ms, "
                                 "tree, pprof) VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_CAPTURE_GET] = "SELECT " CAPTURE_COLS " FROM captures c WHERE c.id = ?1",
    [S_CAPTURE_EXISTS] = "SELECT 1 FROM captures WHERE id = ?1",
    [S_CAPTURE_LIST] = "SELECT " CAPTURE_COLS " FROM captures c WHERE c.task_id = ?1 "
                       "ORDER BY c.slot LIMIT ?2",
    [S_CAPTURE_PROFILE_GET] = "SELECT pprof FROM capture_profiles WHERE capture_id = ?1",
    [S_CAPTURE_TREE_GET] = "SELECT tree FROM capture_profiles WHERE capture_id = ?1",
    [S_CAPTURE_BY_TRACE] = "SELECT " CAPTURE_COLS " FROM captures c WHERE c.trace_id = ?1 "
                           "ORDER BY c.created_ms, c.id LIMIT ?2",
    /* A profile's traces: a pair named twice in one upload adds up. */
    [S_TRACE_SPAN_UPSERT] = "INSERT INTO trace_spans (session_id, trace_id, interface, samples) "
                            "VALUES (?1, ?2, ?3, ?4) "
                            "ON CONFLICT (session_id, trace_id, interface) "
                            "DO UPDATE SET samples = trace_spans.samples + excluded.samples",
    [S_TRACE_SESSIONS] = "SELECT x.session_id, x.trace_id, x.interface, x.samples "
                         "FROM trace_spans x JOIN sessions s ON s.id = x.session_id "
                         "WHERE x.trace_id = ?1 ORDER BY s.start_ms, s.id, x.interface "
                         "LIMIT ?2",
    /* Tasks in batches, as sessions; their agents, log, captures and the
     * captures' profiles go by cascade. */
    [S_PURGE_TASKS] = "DELETE FROM tasks WHERE id IN (SELECT k.id FROM tasks k "
                      "WHERE " TASK_END " < ?1 ORDER BY k.id LIMIT ?2)",
    [S_LT_INSERT] = "INSERT INTO loadtests (url, method, users, duration_s, rate, timeout_ms, "
                    "n_headers, body_bytes, profile_app, profile_now_id, state, "
                    "cancel_requested, error, token_id, creator, created_ms, started_ms, "
                    "ended_ms, requests, errors, headers, body, result) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 'queued', 0, '', ?10, ?11, "
                    "?12, 0, 0, 0, 0, ?13, ?14, NULL) RETURNING id",
    [S_LT_GET] = "SELECT " LOADTEST_COLS " FROM loadtests lt WHERE lt.id = ?1",
    [S_LT_EXISTS] = "SELECT 1 FROM loadtests WHERE id = ?1",
    [S_LT_COUNT_QUEUED] = "SELECT COUNT(*) FROM loadtests WHERE state = 'queued'",
    /* The oldest queued test (lowest id: the order of creation, whatever
     * the clocks said), taken in the one statement. */
    [S_LT_CLAIM] = "UPDATE loadtests SET state = 'in progress', started_ms = ?1 "
                   "WHERE id = (SELECT id FROM loadtests WHERE state = 'queued' "
                   "ORDER BY id LIMIT 1) AND state = 'queued' RETURNING id",
    /* ?5: whether ?4 is a results document to store (0: keep the last). */
    [S_LT_PROGRESS] = "UPDATE loadtests SET requests = ?2, errors = ?3, "
                      "result = CASE WHEN ?5 <> 0 THEN ?4 ELSE result END "
                      "WHERE id = ?1 AND state = 'in progress'",
    [S_LT_FINISH] = "UPDATE loadtests SET state = ?2, error = ?3, requests = ?4, errors = ?5, "
                    "result = CASE WHEN ?7 <> 0 THEN ?6 ELSE result END, ended_ms = ?8 "
                    "WHERE id = ?1 AND state = 'in progress'",
    [S_LT_CANCEL_QUEUED] = "UPDATE loadtests SET state = 'cancelled', ended_ms = ?2 "
                           "WHERE id = ?1 AND state = 'queued'",
    [S_LT_CANCEL_REQUEST] = "UPDATE loadtests SET cancel_requested = 1 "
                            "WHERE id = ?1 AND state = 'in progress'",
    [S_LT_ABANDON] = "UPDATE loadtests SET state = 'failed', error = ?2, ended_ms = ?3 "
                     "WHERE state = 'in progress' AND started_ms < ?1",
    [S_LT_REQUEST] = "SELECT headers, body FROM loadtests WHERE id = ?1",
    [S_LT_HEADERS] = "SELECT headers, NULL FROM loadtests WHERE id = ?1",
    [S_LT_RESULT] = "SELECT result FROM loadtests WHERE id = ?1 AND result IS NOT NULL",
    [S_LT_LINK_PROFILE_NOW] = "UPDATE loadtests SET profile_now_id = ?2 WHERE id = ?1",
    /* Ended tests only (ended_ms 0 = queued or running, kept), in
     * batches as tasks: each row may carry a large results document. */
    [S_PURGE_LOADTESTS] = "DELETE FROM loadtests WHERE id IN (SELECT id FROM loadtests "
                          "WHERE ended_ms <> 0 AND ended_ms < ?1 ORDER BY id LIMIT ?2)",
};

/* ------------------------------------------------------------------ */
/* Filtered queries                                                    */

static void sql_add(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n < cap) {
        memcpy(buf + *len, s, n + 1);
        *len += n;
    }
}

/* The fixed parts of each kind: the SELECT (with the join's own
 * condition, if any) and what follows the filter terms. */
static const struct {
    const char *select, *order;
} filtered_parts[F_COUNT] = {
    [F_SESSION_LIST] = {"SELECT " SESSION_COLS " FROM sessions s",
                        " ORDER BY s.start_ms DESC, s.id DESC LIMIT ?6 OFFSET ?7"},
    [F_SESSION_COUNT] = {"SELECT COUNT(*) FROM sessions s", ""},
    /* CROSS JOIN (standard SQL) makes SQLite walk sessions in index
     * order and look profiles up by key, so rows come out newest first
     * without a sort that would copy every blob. */
    [F_TREE] = {"SELECT p.session_id, p.tree FROM sessions s CROSS JOIN profiles p"
                " WHERE p.session_id = s.id",
                " ORDER BY s.start_ms DESC, s.id DESC LIMIT ?6"},
    [F_PPROF] = {"SELECT p.session_id, p.pprof FROM sessions s CROSS JOIN profiles p"
                 " WHERE p.session_id = s.id",
                 " ORDER BY s.start_ms DESC, s.id DESC LIMIT ?6"},
    [F_AGENT_LIST] = {"SELECT " AGENT_COLS " FROM agents a",
                      " ORDER BY a.registered_ms DESC, a.id DESC LIMIT ?6"},
    [F_TASK_LIST] = {"SELECT " TASK_COLS " FROM tasks k",
                     " ORDER BY k.created_ms DESC, k.id DESC LIMIT ?6"},
    [F_LOADTEST_LIST] = {"SELECT " LOADTEST_COLS " FROM loadtests lt",
                         " ORDER BY lt.created_ms DESC, lt.id DESC LIMIT ?6 OFFSET ?7"},
    [F_LOADTEST_COUNT] = {"SELECT COUNT(*) FROM loadtests lt", ""},
};

/* Each field binds a fixed placeholder number (FM_*), so binding does not
 * depend on which others are present. */
void sq_filtered_sql(enum filtered_kind kind, unsigned mask, char *buf, size_t cap)
{
    size_t len = 0;
    int agent = kind == F_AGENT_LIST, task = kind == F_TASK_LIST;
    int loadtest = kind == F_LOADTEST_LIST || kind == F_LOADTEST_COUNT;
    const char *p = agent ? "a." : task ? "k." : loadtest ? "lt." : "s.";
    buf[0] = '\0';
    sql_add(buf, cap, &len, filtered_parts[kind].select);
    const char *glue = strstr(filtered_parts[kind].select, " WHERE ") ? " AND " : " WHERE ";
    char term[96];
#define TERM(bit, fmt)                                                                             \
    if (mask & (bit)) {                                                                            \
        snprintf(term, sizeof term, "%s" fmt, glue, p);                                            \
        sql_add(buf, cap, &len, term);                                                             \
        glue = " AND ";                                                                            \
    }
    TERM(FM_APP, "%sapp = ?1")
    TERM(FM_INSTANCE, "%sinstance = ?2")
    if (agent) {
        TERM(FM_FROM, "%slast_seen_ms >= ?4")
    } else if (task) {
        /* Tasks overlapping [from, to): ended (or planned to end) at or
         * after from, created before to. */
        TERM(FM_STATE, "%sstate = ?3")
        if (mask & FM_FROM) {
            sql_add(buf, cap, &len, glue);
            sql_add(buf, cap, &len, TASK_END " >= ?4");
            glue = " AND ";
        }
        TERM(FM_TO, "%screated_ms < ?5")
    } else if (loadtest) {
        TERM(FM_STATE, "%sstate = ?3")
    } else {
        TERM(FM_TRIGGERED, "%striggered_by = ?3")
        TERM(FM_FROM, "%sstart_ms >= ?4")
        TERM(FM_TO, "%sstart_ms < ?5")
        TERM(FM_WITH_PROFILE, "%sprofile_bytes > 0")
        TERM(FM_REQUEST, "%srequest_id = ?8")
    }
#undef TERM
    sql_add(buf, cap, &len, filtered_parts[kind].order);
}
