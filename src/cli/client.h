/*
 * client.h — the sonde CLI's HTTP client for sonded (docs/api.md): the
 * options every server command shares (--server, --token, --json), one
 * request at a time over libcurl, JSON answers parsed with jansson.
 *
 * Everything read from the network is bounded (CLIENT_MAX_JSON for JSON
 * answers, CLIENT_MAX_PROFILE for profile downloads) before it is kept.
 * Errors come back as 0 / negative errno codes with a message for people
 * in client_errmsg(), already in the form the CLI prints:
 *   "cannot reach sonded at URL: <curl's reason>"
 *   "<server's error text> (HTTP 401)"
 *
 * Not thread-safe: a client is used by one command on one thread.
 */
#ifndef SONDE_CLI_CLIENT_H
#define SONDE_CLI_CLIENT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#define CLIENT_DEFAULT_SERVER "http://127.0.0.1:7070"
/* Largest JSON answer kept (a top of 10,000 functions is ~1 MiB). */
#define CLIENT_MAX_JSON ((size_t)16 << 20)
/* Largest profile downloaded (the server stores at most 32 MiB gzipped). */
#define CLIENT_MAX_PROFILE ((size_t)256 << 20)
/* Longest request path with its query string. */
#define CLIENT_MAX_PATH 4096

/* The options common to every server command. */
struct client_options {
    const char *server; /* base URL, e.g. http://127.0.0.1:7070 (borrowed) */
    const char *token;  /* bearer token or NULL (borrowed) */
    int json;           /* --json: print the server's JSON as is */
};

/* Defaults: server from $SONDE_SERVER else CLIENT_DEFAULT_SERVER, token
 * from $SONDE_TOKEN.  The pointers borrow the environment. */
void client_options_init(struct client_options *o);

/* If argv[*i] is one of the common options (--server URL, --server=URL,
 * --token T, --token=T, --json), takes it (and its value, advancing *i)
 * and returns 1; returns 0 when it is not one of them, and -1 after
 * printing "sonde CMD: ..." on stderr when its value is missing or bad. */
int client_option(struct client_options *o, const char *cmd, int argc, char **argv, int *i);

/* A command's own "--name VALUE" / "--name=VALUE" flag: returns 1 when
 * argv[*i] is that flag, with *val its value (NULL when missing; *i is
 * advanced past a separate value), else 0. */
int client_arg_value(const char *name, int argc, char **argv, int *i, const char **val);

/* The usage lines of the common options, for a command's usage text;
 * with_json: include --json (not for commands whose output is not JSON). */
void client_options_usage(FILE *f, int with_json);

struct client;

/* A client for o (copied).  NULL on ENOMEM or when libcurl cannot start,
 * after printing "sonde CMD: ..." on stderr.  Free with client_free. */
struct client *client_new(const struct client_options *o, const char *cmd);
void client_free(struct client *c);

/* The message of the last failed call; "" after a success.  Valid until
 * the next call on c. */
const char *client_errmsg(const struct client *c);

/* The body of the last answer (error answers included), NUL-terminated,
 * and its length.  Owned by c, valid until the next request. */
const char *client_body(const struct client *c, size_t *len);

/* The HTTP status of the last answer, 0 when there was none. */
long client_status(const struct client *c);

/* Sends METHOD base-URL + path (path starts with "/api/v1/", query
 * included) with body (JSON text, len bytes; NULL for none) and keeps an
 * answer of at most max bytes.  Returns 0 on a 2xx answer; -ECONNREFUSED
 * (or another network errno) when sonded cannot be reached; -EPROTO on a
 * non-2xx answer (errmsg: the server's "error" text and the status);
 * -EFBIG when the answer is larger than max. */
int client_request(struct client *c, const char *method, const char *path, const char *body,
                   size_t len, size_t max);

/* client_request with a JSON body (borrowed, may be NULL) whose 2xx
 * answer is parsed into *out (a new reference the caller decrefs).
 * -EBADMSG when a 2xx answer is not a JSON object. */
int client_call_json(struct client *c, const char *method, const char *path, json_t *body,
                     json_t **out);

/* Appends "?key=value" or "&key=value" to the path in buf (of size len),
 * percent-encoding value.  0, or -ENAMETOOLONG when it does not fit (buf
 * is left as it was). */
int client_path_param(char *buf, size_t len, const char *key, const char *value);

#endif
