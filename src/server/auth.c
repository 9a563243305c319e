/*
 * auth.c — access tokens and roles (SPEC A7): random 256-bit secrets,
 * shown once, stored as SHA-256 hex; the role names; the admin token of a
 * first start.  See auth.h.  The per-request check lives in http.c.
 */
#include <errno.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/auth.h"
#include "server/http.h"

static const struct {
    const char *name;
    int role;
} roles[] = {
    {"reader", ROLE_READER},
    {"writer", ROLE_WRITER},
    {"admin", ROLE_ADMIN},
    {"agent", ROLE_AGENT},
};

int role_from_name(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (strcmp(name, roles[i].name) == 0)
            return roles[i].role;
    return 0;
}

const char *role_name(int role)
{
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (role == roles[i].role)
            return roles[i].name;
    return "none";
}

static const char hexdigits[] = "0123456789abcdef";

int auth_token_well_formed(const char *s)
{
    size_t plen = strlen(AUTH_TOKEN_PREFIX);
    if (!s || strncmp(s, AUTH_TOKEN_PREFIX, plen) != 0)
        return 0;
    s += plen;
    for (size_t i = 0; i < 64; i++)
        if (!s[i] || !strchr(hexdigits, s[i]))
            return 0;
    return s[64] == '\0';
}

int auth_token_new(char out[AUTH_TOKEN_LEN + 1])
{
    uint8_t rnd[32];
    size_t got = 0;
    while (got < sizeof(rnd)) {
        /* Blocks only until the pool is initialised at boot; 32 bytes
         * never come back short otherwise, but loop to be sure. */
        ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    char *p = out;
    memcpy(p, AUTH_TOKEN_PREFIX, strlen(AUTH_TOKEN_PREFIX));
    p += strlen(AUTH_TOKEN_PREFIX);
    for (size_t i = 0; i < sizeof(rnd); i++) {
        *p++ = hexdigits[rnd[i] >> 4];
        *p++ = hexdigits[rnd[i] & 15];
    }
    *p = '\0';
    return 0;
}

void auth_token_hash(const char *token, char hex[STORE_HASH_MAX])
{
    struct sha256_ctx ctx;
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_init(&ctx);
    sha256_update(&ctx, strlen(token), (const uint8_t *)token);
    sha256_digest(&ctx, sizeof(digest), digest);
    for (size_t i = 0; i < sizeof(digest); i++) {
        hex[2 * i] = hexdigits[digest[i] >> 4];
        hex[2 * i + 1] = hexdigits[digest[i] & 15];
    }
    hex[2 * SHA256_DIGEST_SIZE] = '\0';
}

int auth_bootstrap(struct store *st, int64_t now_ms, char *err, size_t errlen)
{
    int64_t n = 0;
    int rc = store_token_count(st, NULL, &n);
    if (rc < 0) {
        snprintf(err, errlen, "counting tokens: %s", store_errmsg(st));
        return rc;
    }
    if (n > 0)
        return 0;

    char secret[AUTH_TOKEN_LEN + 1];
    const char *env = getenv("SONDE_ADMIN_TOKEN");
    int from_env = env && *env;
    if (from_env) {
        if (!auth_token_well_formed(env)) {
            snprintf(err, errlen,
                     "SONDE_ADMIN_TOKEN is malformed: expected 'sonde_' followed by 64 "
                     "lowercase hex digits");
            return -EINVAL;
        }
        memcpy(secret, env, sizeof(secret));
    } else if ((rc = auth_token_new(secret)) < 0) {
        snprintf(err, errlen, "getrandom: %s", strerror(-rc));
        return rc;
    }

    struct store_token t = {0};
    snprintf(t.name, sizeof(t.name), "admin");
    snprintf(t.role, sizeof(t.role), "admin");
    auth_token_hash(secret, t.hash);
    t.created_ms = now_ms;
    rc = store_token_create(st, &t);
    if (rc < 0) {
        snprintf(err, errlen, "creating the admin token: %s", store_errmsg(st));
        return rc;
    }
    /* Printed once: the store keeps only the hash.  Flushed now because
     * whoever started us (a test, a supervisor) reads it from a pipe. */
    if (!from_env) {
        printf("admin token: %s\n", secret);
        fflush(stdout);
    }
    explicit_bzero(secret, sizeof(secret));
    return 0;
}
