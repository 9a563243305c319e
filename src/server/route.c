/*
 * route.c — sonded's routing: every api_*.c route table, and matching a
 * request's method and path against their patterns (http_internal.h).
 *
 * A pattern is literal text with variable parts, each one whole path
 * segment: {id}, a positive decimal integer (1..18 digits: it cannot
 * overflow), and {key}, any segment of 1..KEY_MAX bytes, which the
 * handler validates itself so that a malformed value is a 400 naming
 * what it must be rather than a 404, and {rest}, the whole rest of the
 * path (1..KEY_MAX bytes, slashes included: the console's static files),
 * handed over as the key, which the handler validates.  Tables are tried in order and the
 * first route whose pattern and method match wins; a path that matches
 * only with other methods is a 405 naming them.
 */
#include <stdio.h>
#include <string.h>

#include "server/http_internal.h"

static const struct route *const route_tables[] = {
    api_token_routes,   api_agent_routes,   api_agent_task_routes, api_session_routes,
    api_view_routes,    api_setting_routes, api_task_routes,       api_capture_routes,
    api_loadtest_routes, api_web_routes,
};

/* Longest {key} path part: longer paths match no route (404). */
#define KEY_MAX 255

/* {id}: 1..18 decimal digits, value >= 1 (18 digits cannot overflow). */
static int parse_id(const char *s, size_t len, int64_t *id)
{
    if (len == 0 || len > 18)
        return 0;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1)
        return 0;
    *id = v;
    return 1;
}

/* 1 if path matches pattern, with its {id} and {key} parts (if any) in
 * *parts. */
static int path_match(const char *pattern, const char *path, struct path_parts *parts)
{
    static const char idpart[] = "{id}", keypart[] = "{key}", restpart[] = "{rest}";
    while (*pattern) {
        if (strncmp(pattern, idpart, sizeof(idpart) - 1) == 0) {
            size_t n = strcspn(path, "/");
            if (!parse_id(path, n, &parts->id))
                return 0;
            pattern += sizeof(idpart) - 1;
            path += n;
            continue;
        }
        if (strcmp(pattern, restpart) == 0) {
            size_t n = strlen(path);
            if (n == 0 || n > KEY_MAX)
                return 0;
            parts->key = path;
            parts->key_len = n;
            return 1;
        }
        if (strncmp(pattern, keypart, sizeof(keypart) - 1) == 0) {
            size_t n = strcspn(path, "/");
            if (n == 0 || n > KEY_MAX)
                return 0;
            parts->key = path;
            parts->key_len = n;
            pattern += sizeof(keypart) - 1;
            path += n;
            continue;
        }
        if (*pattern != *path)
            return 0;
        pattern++;
        path++;
    }
    return *path == '\0';
}

const struct route *http_route_find(const char *method, const char *path,
                                    struct path_parts *parts, int *status, char *allow,
                                    size_t allowlen)
{
    /* HEAD is GET without the body (libmicrohttpd drops it). */
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    size_t alen = 0;
    allow[0] = '\0';
    *status = 404;
    for (size_t t = 0; t < sizeof(route_tables) / sizeof(route_tables[0]); t++) {
        for (const struct route *r = route_tables[t]; r->method; r++) {
            struct path_parts rp = {0};
            if (!path_match(r->pattern, path, &rp))
                continue;
            if (strcmp(r->method, m) == 0) {
                *parts = rp;
                return r;
            }
            *status = 405;
            if (!strstr(allow, r->method)) {
                int n = snprintf(allow + alen, allowlen - alen, "%s%s", alen ? ", " : "",
                                 r->method);
                if (n > 0 && (size_t)n < allowlen - alen)
                    alen += (size_t)n;
            }
        }
    }
    return NULL;
}

void http_roles_text(int roles, char *buf, size_t len)
{
    static const int order[] = {ROLE_READER, ROLE_WRITER, ROLE_ADMIN, ROLE_AGENT};
    const char *names[4];
    size_t n = 0;
    for (size_t i = 0; i < 4; i++)
        if (roles & order[i])
            names[n++] = role_name(order[i]);
    buf[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        int w = snprintf(buf + used, len - used, "%s%s", sep, names[i]);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
}
