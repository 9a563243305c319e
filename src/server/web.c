/*
 * web.c — the console's files (SPEC: "static web pages served by
 * sonded"): web/index.html at /, our own modules and styles under /ui/,
 * and the few front-end libraries the console uses, from web/node_modules
 * (installed by `make` with `npm ci` from web/package-lock.json), under
 * /vendor/NAME/ and speedscope's whole app under /speedscope/.  Nothing
 * is fetched by the browser from anywhere else.
 *
 * Only files under the mapped directories can be read: a path is 1..255
 * bytes of segments of [A-Za-z0-9._-], none starting with a dot (no
 * "..", no hidden files), and the file must be a regular file of at most
 * WEB_FILE_MAX bytes.  No token is needed (the pages hold no data; every
 * API call they make carries the token the person signed in with).
 * Answers carry Cache-Control: no-cache, so a new build is seen at once
 * (the browser revalidates; files are small and the server is local).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/http.h"

#define WEB_FILE_MAX ((size_t)16 << 20)

/* URL prefix (after /vendor/) → directory under web_dir. */
static const struct vendor {
    const char *name;
    const char *dir;
} vendors[] = {
    {"d3", "node_modules/d3/dist"},
    {"d3-flame-graph", "node_modules/d3-flame-graph/dist"},
    {"uplot", "node_modules/uplot/dist"},
    {NULL, NULL},
};

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".wasm", "application/wasm"},
    {".txt", "text/plain; charset=utf-8"},
    {".map", "application/json"},
    {".md", "text/plain; charset=utf-8"},
};

static const char *type_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* 1 when rel (len bytes) is a path the console may serve (see top). */
static int safe_path(const char *rel, size_t len)
{
    int seg_start = 1;
    if (len == 0 || rel[len - 1] == '/')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = rel[i];
        if (c == '/') {
            if (seg_start)
                return 0; /* empty segment */
            seg_start = 1;
            continue;
        }
        if (seg_start && c == '.')
            return 0;
        seg_start = 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Answers the file web_dir/dir/rel (rel: len bytes, checked here). */
static enum http_result send_file(struct request *req, struct response *res, const char *dir,
                                  const char *rel, size_t len)
{
    const char *root = req->srv->cfg.web_dir;
    char path[1024];
    if (!safe_path(rel, len)) {
        http_error(res, 404, "no such console file");
        return HTTP_DONE;
    }
    int n = snprintf(path, sizeof path, "%s/%s/%.*s", root, dir, (int)len, rel);
    if (n < 0 || (size_t)n >= sizeof path) {
        http_error(res, 404, "no such console file");
        return HTTP_DONE;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int missing = fd < 0 && errno == ENOENT;
        if (fd >= 0)
            close(fd);
        if (missing && strcmp(dir, ".") == 0)
            http_error(res, 404,
                       "the console's files are not in %s (build with make, or start sonded "
                       "with --web DIR)", root);
        else
            http_error(res, 404, "no such console file");
        return HTTP_DONE;
    }
    if ((size_t)st.st_size > WEB_FILE_MAX) {
        close(fd);
        http_error(res, 500, "console file too large");
        return HTTP_DONE;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *buf = malloc(size ? size : 1);
    while (buf && got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf || got != size) {
        free(buf);
        http_error(res, 500, "cannot read console file");
        return HTTP_DONE;
    }
    http_bytes_take(res, 200, type_of(path), buf, size);
    snprintf(res->header_name, sizeof res->header_name, "Cache-Control");
    snprintf(res->header_value, sizeof res->header_value, "no-cache");
    return HTTP_DONE;
}

static enum http_result index_page(struct request *req, struct response *res)
{
    return send_file(req, res, ".", "index.html", strlen("index.html"));
}

static enum http_result ui_file(struct request *req, struct response *res)
{
    return send_file(req, res, "ui", req->key, req->key_len);
}

static enum http_result vendor_file(struct request *req, struct response *res)
{
    const char *slash = memchr(req->key, '/', req->key_len);
    for (size_t i = 0; slash && vendors[i].name; i++) {
        size_t nl = strlen(vendors[i].name);
        if ((size_t)(slash - req->key) == nl && memcmp(req->key, vendors[i].name, nl) == 0)
            return send_file(req, res, vendors[i].dir, slash + 1,
                             req->key_len - nl - 1);
    }
    http_error(res, 404, "no such console file");
    return HTTP_DONE;
}

static enum http_result speedscope_index(struct request *req, struct response *res)
{
    return send_file(req, res, "node_modules/speedscope/dist/release", "index.html",
                     strlen("index.html"));
}

static enum http_result speedscope_file(struct request *req, struct response *res)
{
    return send_file(req, res, "node_modules/speedscope/dist/release", req->key, req->key_len);
}

const struct route api_web_routes[] = {
    {"GET", "/", ROLES_NONE, 0, index_page},
    {"GET", "/index.html", ROLES_NONE, 0, index_page},
    {"GET", "/ui/{rest}", ROLES_NONE, 0, ui_file},
    {"GET", "/vendor/{rest}", ROLES_NONE, 0, vendor_file},
    {"GET", "/speedscope/", ROLES_NONE, 0, speedscope_index},
    {"GET", "/speedscope/{rest}", ROLES_NONE, 0, speedscope_file},
    {NULL, NULL, 0, 0, NULL},
};
