/*
 * client.c — the CLI's HTTP client for sonded (see client.h): libcurl for
 * the transport, jansson for the bodies.
 *
 * One curl handle per client, reused across requests so that a command
 * making two calls (sonde top SESSION) keeps its connection.  Answers go
 * into one growing buffer owned by the client that refuses to grow past
 * the caller's limit: a misbehaving or hostile server cannot make the CLI
 * allocate more than that, whatever Content-Length it announces.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/client.h"
#include "sonde.h"

/* A server that sends nothing for this long is given up on. */
#define STALL_SECONDS 60L
#define CONNECT_SECONDS 10L
#define MAX_TOKEN 1024

struct answer {
    char *p;
    size_t len, cap;
    size_t max;   /* bytes the caller accepts */
    int too_big;  /* the server sent more than max */
};

struct client {
    CURL *curl;
    char *server; /* without trailing '/' */
    char *token;  /* NULL: no Authorization header */
    char errbuf[CURL_ERROR_SIZE];
    char errmsg[1024];
    long status;
    struct answer ans;
};

void client_options_init(struct client_options *o)
{
    const char *s = getenv("SONDE_SERVER");
    const char *t = getenv("SONDE_TOKEN");
    o->server = s && *s ? s : CLIENT_DEFAULT_SERVER;
    o->token = t && *t ? t : NULL;
    o->json = 0;
}

void client_options_usage(FILE *f, int with_json)
{
    fprintf(f, "  --server URL    sonded's address (default $SONDE_SERVER, else %s)\n"
               "  --token T       access token (default $SONDE_TOKEN)\n",
            CLIENT_DEFAULT_SERVER);
    if (with_json)
        fprintf(f, "  --json          print the server's JSON answer as is\n");
}

int client_arg_value(const char *name, int argc, char **argv, int *i, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    *val = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

static int valid_server(const char *s)
{
    const char *rest = !strncmp(s, "http://", 7) ? s + 7 : !strncmp(s, "https://", 8) ? s + 8 : NULL;
    if (!rest || !*rest || *rest == '/')
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    return strlen(s) < 1024;
}

/* A token goes into a header line: printable ASCII only, no spaces. */
static int valid_token(const char *t)
{
    size_t n = 0;
    for (; t[n]; n++)
        if ((unsigned char)t[n] <= ' ' || (unsigned char)t[n] >= 0x7f)
            return 0;
    return n > 0 && n <= MAX_TOKEN;
}

int client_option(struct client_options *o, const char *cmd, int argc, char **argv, int *i)
{
    const char *v;
    if (!strcmp(argv[*i], "--json")) {
        o->json = 1;
        return 1;
    }
    if (client_arg_value("--server", argc, argv, i, &v)) {
        if (!v || !valid_server(v)) {
            fprintf(stderr, "sonde %s: --server needs a URL like http://HOST:PORT%s%s\n", cmd,
                    v ? ", not " : "", v ? v : "");
            return -1;
        }
        o->server = v;
        return 1;
    }
    if (client_arg_value("--token", argc, argv, i, &v)) {
        if (!v || !valid_token(v)) {
            fprintf(stderr, "sonde %s: --token needs a token (printable, no spaces, at most %d "
                            "bytes)\n", cmd, MAX_TOKEN);
            return -1;
        }
        o->token = v;
        return 1;
    }
    return 0;
}

struct client *client_new(const struct client_options *o, const char *cmd)
{
    /* The environment's values are checked here, flags in client_option. */
    if (!valid_server(o->server)) {
        fprintf(stderr, "sonde %s: SONDE_SERVER must be a URL like http://HOST:PORT, not %s\n",
                cmd, o->server);
        return NULL;
    }
    if (o->token && !valid_token(o->token)) {
        fprintf(stderr, "sonde %s: SONDE_TOKEN is not a token (printable, no spaces)\n", cmd);
        return NULL;
    }
    static int curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            fprintf(stderr, "sonde %s: cannot start libcurl\n", cmd);
            return NULL;
        }
        curl_ready = 1;
    }
    struct client *c = calloc(1, sizeof *c);
    if (!c)
        goto nomem;
    c->server = strdup(o->server);
    c->token = o->token ? strdup(o->token) : NULL;
    c->curl = curl_easy_init();
    if (!c->server || (o->token && !c->token) || !c->curl)
        goto nomem;
    size_t n = strlen(c->server);
    while (n > 0 && c->server[n - 1] == '/')
        c->server[--n] = '\0';
    return c;
nomem:
    fprintf(stderr, "sonde %s: out of memory\n", cmd);
    client_free(c);
    return NULL;
}

void client_free(struct client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->server);
    free(c->token);
    free(c->ans.p);
    free(c);
}

const char *client_errmsg(const struct client *c)
{
    return c->errmsg;
}

const char *client_body(const struct client *c, size_t *len)
{
    if (len)
        *len = c->ans.len;
    return c->ans.p ? c->ans.p : "";
}

long client_status(const struct client *c)
{
    return c->status;
}

/* curl's write callback: append, but never past a->max (+1 for a NUL). */
static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    struct answer *a = arg;
    size_t n = size * nmemb; /* curl promises size == 1 */
    if (n > a->max - a->len) {
        a->too_big = 1;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 16384;
        while (cap < a->len + n + 1)
            cap = cap > a->max / 2 ? a->max + 1 : cap * 2;
        char *p = realloc(a->p, cap);
        if (!p)
            return 0;
        a->p = p;
        a->cap = cap;
    }
    memcpy(a->p + a->len, data, n);
    a->len += n;
    a->p[a->len] = '\0';
    return n;
}

/* The server's {"error": "..."} text, else a printable start of the body. */
static void describe_error(struct client *c)
{
    char text[512] = "";
    json_t *j = c->ans.len ? json_loadb(c->ans.p, c->ans.len, 0, NULL) : NULL;
    const char *e = json_string_value(json_object_get(j, "error"));
    if (e) {
        snprintf(text, sizeof text, "%s", e);
        for (char *p = text; *p; p++) /* it goes to a terminal */
            if ((unsigned char)*p < ' ' || *p == 0x7f)
                *p = '?';
    } else if (c->ans.len) {
        size_t k = 0;
        for (size_t i = 0; i < c->ans.len && k + 1 < sizeof text && k < 200; i++) {
            unsigned char ch = (unsigned char)c->ans.p[i];
            text[k++] = ch >= ' ' && ch < 0x7f ? (char)ch : ' ';
        }
        text[k] = '\0';
    }
    json_decref(j);
    snprintf(c->errmsg, sizeof c->errmsg, "%s (HTTP %ld)%s", *text ? text : "sonded refused the request",
             c->status,
             c->status == 401 && !c->token ? "; give a token with --token or $SONDE_TOKEN" : "");
}

static int network_error(struct client *c, CURLcode rc)
{
    const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        snprintf(c->errmsg, sizeof c->errmsg, "cannot reach sonded at %s: %s", c->server, why);
        return rc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED
               : rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT
                                                : -EHOSTUNREACH;
    default:
        snprintf(c->errmsg, sizeof c->errmsg, "request to sonded at %s failed: %s", c->server,
                 why);
        return rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
    }
}

int client_request(struct client *c, const char *method, const char *path, const char *body,
                   size_t len, size_t max)
{
    char url[1100 + CLIENT_MAX_PATH];
    c->errmsg[0] = '\0';
    c->errbuf[0] = '\0';
    c->status = 0;
    c->ans.len = 0;
    c->ans.too_big = 0;
    c->ans.max = max;
    if (c->ans.p)
        c->ans.p[0] = '\0';
    if (strlen(path) >= CLIENT_MAX_PATH) {
        snprintf(c->errmsg, sizeof c->errmsg, "request path too long");
        return -ENAMETOOLONG;
    }
    snprintf(url, sizeof url, "%s%s", c->server, path);

    char auth[MAX_TOKEN + 32];
    struct curl_slist *h = NULL, *t;
    /* "Expect:" drops curl's 100-continue round trip on larger bodies. */
    const char *fixed[] = {"Accept: application/json", "Expect:",
                           body ? "Content-Type: application/json" : NULL};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (!fixed[i])
            continue;
        if (!(t = curl_slist_append(h, fixed[i])))
            goto nomem;
        h = t;
    }
    if (c->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        if (!(t = curl_slist_append(h, auth)))
            goto nomem;
        h = t;
    }

    CURL *e = c->curl;
    curl_easy_reset(e); /* keeps the connection cache */
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "sonde/" SONDE_VERSION);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, CONNECT_SECONDS);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, STALL_SECONDS);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &c->ans);
    if (body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (strcmp(method, "GET") != 0 && !(body && !strcmp(method, "POST")))
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);

    if (c->ans.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(c->errmsg, sizeof c->errmsg, "sonded's answer is larger than %zu MiB",
                 max >> 20);
        return -EFBIG;
    }
    if (rc != CURLE_OK)
        return network_error(c, rc);
    if (c->status < 200 || c->status > 299) {
        describe_error(c);
        return -EPROTO;
    }
    return 0;
nomem:
    curl_slist_free_all(h);
    snprintf(c->errmsg, sizeof c->errmsg, "out of memory");
    return -ENOMEM;
}

int client_call_json(struct client *c, const char *method, const char *path, json_t *body,
                     json_t **out)
{
    *out = NULL;
    char *text = NULL;
    if (body && !(text = json_dumps(body, JSON_COMPACT))) {
        snprintf(c->errmsg, sizeof c->errmsg, "out of memory");
        return -ENOMEM;
    }
    int r = client_request(c, method, path, text, text ? strlen(text) : 0, CLIENT_MAX_JSON);
    free(text);
    if (r != 0)
        return r;
    json_error_t err;
    json_t *j = json_loadb(c->ans.p ? c->ans.p : "", c->ans.len, 0, &err);
    if (!json_is_object(j)) {
        snprintf(c->errmsg, sizeof c->errmsg, "sonded's answer (HTTP %ld) is not a JSON object%s%s",
                 c->status, j ? "" : ": ", j ? "" : err.text);
        json_decref(j);
        return -EBADMSG;
    }
    *out = j;
    return 0;
}

int client_path_param(char *buf, size_t len, const char *key, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(buf), start = n;
    const char *sep = strchr(buf, '?') ? "&" : "?";
    int w = snprintf(buf + n, len - n, "%s%s=", sep, key);
    if (w < 0 || (size_t)w >= len - n)
        goto too_long;
    n += (size_t)w;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p);
        if (n + (plain ? 1 : 3) >= len)
            goto too_long;
        if (plain) {
            buf[n++] = (char)*p;
        } else {
            buf[n++] = '%';
            buf[n++] = hex[*p >> 4];
            buf[n++] = hex[*p & 15];
        }
    }
    buf[n] = '\0';
    return 0;
too_long:
    buf[start] = '\0';
    return -ENAMETOOLONG;
}
