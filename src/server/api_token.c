/*
 * api_token.c — the token routes of the people's API (docs/api.md,
 * "Tokens", admin only) and the open health check.
 *
 * The secret of a new token is in the POST answer and nowhere else: the
 * store keeps its SHA-256 (auth.h).  Revoking refuses to take away the
 * last active admin token, since nobody could make tokens after that.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "server/api.h"
#include "server/auth.h"

/* Serialises "count the admins, then revoke" so that two concurrent
 * revocations of the last two admin tokens cannot both succeed.  (Only
 * within one server; servers sharing a store would need the store to do
 * the check in its transaction.) */
static pthread_mutex_t revoke_lock = PTHREAD_MUTEX_INITIALIZER;

static enum http_result health(struct request *req, struct response *res)
{
    const char *store = req->srv->store && req->srv->store->ops ? req->srv->store->ops->name
                                                                : "none";
    http_json(res, 200,
              json_pack("{s:s,s:s,s:s}", "status", "ok", "version", SONDED_VERSION, "store",
                        store));
    return HTTP_DONE;
}

/* Who the caller is: what the console shows and which actions it offers. */
static enum http_result whoami(struct request *req, struct response *res)
{
    http_json(res, 200,
              json_pack("{s:I,s:s,s:s}", "token_id", (json_int_t)req->token.id, "name",
                        req->token.name, "role", role_name(req->role)));
    return HTTP_DONE;
}

static enum http_result token_create(struct request *req, struct response *res)
{
    static const char *const fields[] = {"role", "name", NULL};
    struct store *st = req->srv->store;
    const char *role, *name;
    json_t *body = http_body_object(req, res);
    if (!body)
        return HTTP_DONE;
    if (jv_only(res, body, fields) < 0 ||
        jv_string(res, body, "role", STORE_KIND_MAX, 1, NULL, &role) < 0 ||
        jv_string(res, body, "name", STORE_NAME_MAX, 0, "", &name) < 0)
        goto out;
    if (!role_from_name(role)) {
        http_error(res, 400, "field 'role' must be one of reader, writer, admin, agent");
        goto out;
    }

    struct store_token t = {0};
    char secret[AUTH_TOKEN_LEN + 1];
    int rc = auth_token_new(secret);
    if (rc < 0) {
        http_error(res, 500, "cannot make a random token: %s", strerror(-rc));
        goto out;
    }
    /* Both fit: validated against the same bounds above. */
    memcpy(t.name, name, strlen(name) + 1);
    memcpy(t.role, role, strlen(role) + 1);
    auth_token_hash(secret, t.hash);
    t.created_ms = req->now_ms;
    rc = store_token_create(st, &t);
    if (rc < 0) {
        http_store_error(res, st, rc == -EEXIST ? -EIO : rc, NULL);
        goto out;
    }
    http_json(res, 201,
              json_pack("{s:I,s:s,s:s,s:s,s:I}", "id", (json_int_t)t.id, "name", t.name, "role",
                        t.role, "token", secret, "created_ms", (json_int_t)t.created_ms));
    explicit_bzero(secret, sizeof(secret));
out:
    json_decref(body);
    return HTTP_DONE;
}

static enum http_result token_list(struct request *req, struct response *res)
{
    struct store *st = req->srv->store;
    struct store_token *list = NULL;
    size_t n = 0;
    int rc = store_token_list(st, &list, &n);
    if (rc < 0) {
        http_store_error(res, st, rc, NULL);
        return HTTP_DONE;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, api_token_json(&list[i])) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(list);
    http_json(res, 200, arr ? json_pack("{s:o}", "tokens", arr) : NULL);
    return HTTP_DONE;
}

static enum http_result token_revoke(struct request *req, struct response *res)
{
    struct store *st = req->srv->store;
    struct store_token t;
    int rc = store_token_get(st, req->id, &t);
    if (rc == -ENOENT || (rc == 0 && t.revoked_ms)) {
        http_error(res, 404, "token %" PRId64 " not found%s", req->id,
                   rc == 0 ? " (already revoked)" : "");
        return HTTP_DONE;
    }
    if (rc < 0) {
        http_store_error(res, st, rc, NULL);
        return HTTP_DONE;
    }

    pthread_mutex_lock(&revoke_lock);
    if (role_from_name(t.role) == ROLE_ADMIN) {
        int64_t admins = 0;
        rc = store_token_count(st, "admin", &admins);
        if (rc < 0) {
            http_store_error(res, st, rc, NULL);
            goto out;
        }
        if (admins <= 1) {
            http_error(res, 409,
                       "token %" PRId64 " is the last active admin token; create another "
                       "admin token first",
                       req->id);
            goto out;
        }
    }
    rc = store_token_revoke(st, req->id, req->now_ms);
    if (rc == -ENOENT)
        http_error(res, 404, "token %" PRId64 " not found (already revoked)", req->id);
    else if (rc < 0)
        http_store_error(res, st, rc, NULL);
    else
        http_json(res, 200, json_pack("{s:I,s:b}", "id", (json_int_t)req->id, "revoked", 1));
out:
    pthread_mutex_unlock(&revoke_lock);
    return HTTP_DONE;
}

const struct route api_token_routes[] = {
    {"GET", "/api/v1/health", ROLES_NONE, 0, health},
    {"GET", "/api/v1/whoami", ROLES_READ, 0, whoami},
    {"POST", "/api/v1/tokens", ROLES_ADMIN, 0, token_create},
    {"GET", "/api/v1/tokens", ROLES_ADMIN, 0, token_list},
    {"DELETE", "/api/v1/tokens/{id}", ROLES_ADMIN, 0, token_revoke},
    {0},
};
