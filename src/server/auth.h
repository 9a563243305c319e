/*
 * auth.h — access tokens: making them, hashing them, and the admin token
 * of a first start.
 *
 * A token is "sonde_" followed by 64 lowercase hex digits (256 random
 * bits from getrandom()).  The secret is shown once, when it is made; the
 * store keeps only its SHA-256 in hex, so a leaked database does not leak
 * usable tokens.  http.c hashes the bearer token of each request and
 * looks the hash up (store_token_find).
 */
#ifndef SONDE_AUTH_H
#define SONDE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "server/store.h"

/* The server's version, as /api/v1/health and --version report it. */
#define SONDED_VERSION "0.4.0"

#define AUTH_TOKEN_PREFIX "sonde_"
#define AUTH_TOKEN_LEN 70 /* "sonde_" + 64 hex, without the NUL */

/* 1 if s has the token form sonde_[0-9a-f]{64}, else 0. */
int auth_token_well_formed(const char *s);

/* A new random token into out (NUL-terminated).  0, or -errno when the
 * kernel's random source fails (never a weak token).  Thread-safe. */
int auth_token_new(char out[AUTH_TOKEN_LEN + 1]);

/* SHA-256 of token (its bytes, without NUL) as 64 lowercase hex digits
 * and a NUL.  Thread-safe. */
void auth_token_hash(const char *token, char hex[STORE_HASH_MAX]);

/* First start: when the store holds no active token, creates an admin
 * token named "admin" — from SONDE_ADMIN_TOKEN when that is set (it must
 * be well formed), else a new random one printed once on stdout as
 * "admin token: sonde_…".  0, or a negative code with a message in err
 * (malformed SONDE_ADMIN_TOKEN: -EINVAL; store failure). */
int auth_bootstrap(struct store *st, int64_t now_ms, char *err, size_t errlen);

#endif
