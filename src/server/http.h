/*
 * http.h — sonded's HTTP layer: the server object, requests, responses,
 * routing, authentication and long-poll, on libmicrohttpd.
 *
 * http.c owns libmicrohttpd (thread pool, epoll, suspend/resume).  For
 * each request it: reads the body up to the route's limit (413 past it,
 * decided from Content-Length before reading when there is one), checks
 * the bearer token and the route's role (401/403), parses {id} and {key} path
 * parts, then calls the route's handler with a struct request and a
 * struct response to fill.  One log line per request goes to stderr:
 *   2026-11-23T10:00:00.123Z 127.0.0.1 GET /api/v1/sessions 200 512B 1.2ms token=3
 *
 * Handlers (api_*.c) never touch libmicrohttpd.  They run on a pool
 * thread, may block on the store, and must not keep pointers into req or
 * res after returning.
 *
 * Long-poll: a handler that has nothing to answer yet returns HTTP_WAIT
 * after setting req->wait_until_ms.  http.c suspends the connection (no
 * pool thread is held) and calls the handler again — same req, with
 * req->calls incremented and req->state preserved — when server_notify()
 * is called, when wait_until_ms passes (req->timed_out = 1), or at the
 * latest every HTTP_REPOLL_MS (so writes made by another server sharing
 * the store are seen within that time).  On SIGTERM suspended requests
 * are called once more with timed_out = 1 and answered before exit.
 */
#ifndef SONDE_HTTP_H
#define SONDE_HTTP_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "server/store.h"

#define HTTP_REPOLL_MS 1000
/* route.max_body for profile uploads: the runtime --max-upload-mb. */
#define HTTP_BODY_UPLOAD ((size_t)-1)

/* Roles, as bits so that a route names every role it admits. */
enum {
    ROLE_READER = 1,
    ROLE_WRITER = 2,
    ROLE_ADMIN = 4,
    ROLE_AGENT = 8,
};
#define ROLES_READ (ROLE_READER | ROLE_WRITER | ROLE_ADMIN)
#define ROLES_WRITE (ROLE_WRITER | ROLE_ADMIN)
#define ROLES_ADMIN ROLE_ADMIN
#define ROLES_AGENT ROLE_AGENT
#define ROLES_NONE 0 /* no token needed (health) */

/* "reader" → ROLE_READER …; 0 for an unknown name. */
int role_from_name(const char *name);
const char *role_name(int role);

/* Server settings (main.c fills them from the command line). */
struct server_config {
    char listen_host[64];     /* 127.0.0.1 */
    int listen_port;          /* 7070; 0 = pick a free port */
    char data_dir[512];       /* ./sonde-data */
    char db_url[600];         /* "" = sqlite:DATA/sonde.db */
    int threads;              /* pool size, default 4 */
    int retention_days;       /* default 14 */
    int heartbeat_s;          /* agents' heartbeat interval, default 10 */
    size_t max_json_body;     /* default 1 MiB */
    size_t max_upload;        /* compressed profile upload, default 32 MiB */
    size_t max_profile;       /* decompressed profile, default 64 MiB */
    int task_minute_ms;       /* a task minute: 60000; shorter for tests only
                                 (--task-minute-ms, 100..60000) */
    char loadtest_allow[1024]; /* --loadtest-allow (loadtest.h); default
                                  LOADTEST_ALLOW_DEFAULT */
    int loadtest_parallel;    /* runner threads, 1..16, default 1 */
    int loadtest_queue;       /* queued tests at most, 1..10000, default 100 */
    char web_dir[512];        /* the console's files (--web); default
                                 SONDE_WEB_DIR, the source tree's web/ */
};

struct server {
    struct server_config cfg;
    struct store *store;
    struct loadtest_allow *loadtest_allow;   /* parsed cfg.loadtest_allow */
    struct loadtest_runner *loadtest_runner; /* NULL until started */
    int port; /* the port really listened on */
    struct http_impl *impl; /* http.c's state */
};

enum http_result { HTTP_DONE = 0, HTTP_WAIT = 1 };

struct request {
    struct server *srv;
    const char *method;   /* "GET", … */
    const char *path;     /* without the query */
    const uint8_t *body;  /* the whole body (not NUL-terminated) */
    size_t body_len;
    const char *content_type;     /* NULL if absent */
    const char *content_encoding; /* NULL if absent */
    struct store_token token;     /* the caller's token (id 0 for ROLES_NONE) */
    int role;                     /* its ROLE_* bit */
    int64_t id;                   /* the {id} of the path, if the route has one */
    const char *key;              /* the {key} of the path, if the route has one:
                                     key_len bytes (1..255, no '/'), not
                                     NUL-terminated, unchecked otherwise */
    size_t key_len;
    int64_t now_ms;               /* when this call started */
    /* long-poll */
    int64_t wait_until_ms; /* set by the handler before returning HTTP_WAIT */
    int calls;             /* 1 on the first call */
    int timed_out;         /* set when called back after wait_until_ms */
    void *state;           /* handler's own; freed with free() at the end */
    struct http_conn *conn; /* http.c's */
};

struct response {
    int status;
    const char *content_type; /* static string; default application/json */
    char *body;               /* malloc'ed, owned by the response */
    size_t body_len;
    char header_name[64], header_value[256]; /* one extra header, or "" */
};

typedef enum http_result (*http_handler)(struct request *req, struct response *res);

struct route {
    const char *method;
    const char *pattern; /* "/api/v1/sessions/{id}/profile"; {id} = integer >= 1,
                            {key} = any segment of 1..255 bytes (the
                            handler validates it: 400, not 404), {rest}
                            (last) = the rest of the path, 1..255 bytes,
                            into key */
    int roles;           /* ROLE_* bits admitted; ROLES_NONE = open */
    size_t max_body;     /* 0 = cfg.max_json_body; HTTP_BODY_UPLOAD = cfg.max_upload */
    http_handler fn;
};

/* Each api_*.c exports its table, terminated by a {NULL} entry. */
extern const struct route api_agent_routes[];    /* /api/v1/agent/…  */
extern const struct route api_session_routes[];  /* /api/v1/sessions… */
extern const struct route api_view_routes[];     /* /api/v1/views/…  */
extern const struct route api_setting_routes[];  /* triggers, default-sampling, profile-now */
extern const struct route api_token_routes[];    /* /api/v1/tokens…, health */
extern const struct route api_task_routes[];     /* /api/v1/tasks… */
extern const struct route api_capture_routes[];  /* /api/v1/captures…, /api/v1/traces/… */
extern const struct route api_agent_task_routes[]; /* /api/v1/agent/tasks…, …/captures… */
extern const struct route api_loadtest_routes[]; /* /api/v1/loadtests… */
extern const struct route api_web_routes[];      /* the console: /, /ui/…, /vendor/… */

/* Query parameter (decoded) or NULL. */
const char *http_query(const struct request *req, const char *name);
/* Every value of a repeated parameter (label=a&label=b): up to max into
 * out; returns how many.  Pointers valid during the call. */
size_t http_query_all(const struct request *req, const char *name, const char **out,
                      size_t max);
/* A request header or NULL. */
const char *http_header(const struct request *req, const char *name);

/* Response helpers.  Each replaces what was in res. */
/* JSON body; steals the reference. */
void http_json(struct response *res, int status, json_t *body);
/* {"error": "…"} with status. */
void http_error(struct response *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A store error code to its status (ENOENT 404, EEXIST 409, EINVAL 400,
 * ENOTSUP 501, EBUSY 429, else 500) with store_errmsg() or what (when non-NULL,
 * e.g. "session 12 not found") as the message. */
void http_store_error(struct response *res, struct store *st, int rc, const char *what);
/* http_store_error about the object of the request's {id}: for -ENOENT
 * 404 "<kind> <id> <problem>" ("task 9 not found", "capture 4 has no
 * snapshots yet"), else the store's message.  Returns HTTP_DONE, for a
 * handler to return. */
enum http_result http_id_error(const struct request *req, struct response *res, int rc,
                               const char *kind, const char *problem);
/* Raw bytes (copied). */
void http_bytes(struct response *res, int status, const char *content_type, const void *buf,
                size_t len);
/* Takes ownership of buf (malloc'ed). */
void http_bytes_take(struct response *res, int status, const char *content_type, char *buf,
                     size_t len);

/* Wakes every suspended long-poll request (they re-check and answer or
 * suspend again).  Thread-safe; cheap when nobody waits. */
void server_notify(struct server *srv);

/* Starts listening (cfg.listen_port 0 picks a free port; srv->port says
 * which).  0, or -errno with a message in err. */
int http_start(struct server *srv, char *err, size_t errlen);
/* Stops accepting, answers suspended requests, waits for in-flight ones. */
void http_stop(struct server *srv);

/* ------------------------------------------------------------------ */
/* Validation helpers (validate.c): every failure sets a 400 on res whose
 * message names the field and its valid range, and returns -EINVAL.    */

/* The body as a JSON object; 400 "body: …" if it is not one.  New
 * reference. */
json_t *http_body_object(const struct request *req, struct response *res);
/* http_body_object holding no field outside allowed (NULL-terminated;
 * jv_only's 400 otherwise).  New reference, or NULL with res set. */
json_t *http_body_only(const struct request *req, struct response *res,
                       const char *const *allowed);

/* obj[field] must be an integer in [min, max].  Absent: *out = def when
 * !required, else 400.  0 or -EINVAL. */
int jv_int(struct response *res, json_t *obj, const char *field, int64_t min, int64_t max,
           int required, int64_t def, int64_t *out);
/* A number (integer or real) in [min, max]. */
int jv_number(struct response *res, json_t *obj, const char *field, double min, double max,
              int required, double def, double *out);
int jv_bool(struct response *res, json_t *obj, const char *field, int required, int def,
            int *out);
/* A string of 1..maxlen-1 bytes of printable UTF-8 (no control chars);
 * absent → def (may be NULL) when !required.  *out borrowed from obj. */
int jv_string(struct response *res, json_t *obj, const char *field, size_t maxlen, int required,
              const char *def, const char **out);
/* 1 if s[0..len) is valid UTF-8 without control characters (what
 * jv_string and qp_string accept), else 0. */
int jv_printable(const char *s, size_t len);
/* 1 if s[0..len) is a trace id the API can look up: 1..STORE_TRACE_MAX-1
 * bytes of [A-Za-z0-9._:-], else 0. */
int jv_trace_id_ok(const char *s, size_t len);
/* Fails with 400 "unknown field 'x'" if obj has a key not in allowed
 * (NULL-terminated). */
int jv_only(struct response *res, json_t *obj, const char *const *allowed);

/* Query parameter as integer in [min, max]; absent → def. */
int qp_int(const struct request *req, struct response *res, const char *name, int64_t min,
           int64_t max, int64_t def, int64_t *out);
/* Query parameter string, at most maxlen-1 bytes, absent → NULL. */
int qp_string(const struct request *req, struct response *res, const char *name, size_t maxlen,
              const char **out);

#endif
