/*
 * validate.c — checks on what clients send: the JSON body of a request,
 * its fields and its query parameters (http.h, "Validation helpers").
 *
 * Every failure answers 400 on the response with a message that names
 * the field and what it must be ("field 'duration_s' must be an integer
 * in 1..3600"), so that a handler validates each input in one line and
 * returns.  Types are strict: an integer field refuses 1.0, "1" and true;
 * null is a wrong type, not "absent".  Strings must be printable UTF-8
 * (no C0/C1 control characters, no DEL) within their byte bound, because
 * they end up in fixed store arrays, log lines and other people's
 * terminals.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "server/http.h"

/* Deeper JSON than this is refused before jansson sees it: no body of
 * the API nests more than a few levels, and jansson's own bound (2048)
 * is far above what a request should be allowed to cost. */
#define BODY_MAX_DEPTH 32

/* The deepest nesting of arrays/objects in buf, ignoring brackets inside
 * strings; stops counting at limit + 1. */
static int json_depth(const uint8_t *buf, size_t len, int limit)
{
    int depth = 0, max = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = buf[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max && (max = depth) > limit)
                return max;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
    }
    return max;
}

json_t *http_body_object(const struct request *req, struct response *res)
{
    if (req->body_len == 0) {
        http_error(res, 400, "body: empty; expected a JSON object");
        return NULL;
    }
    if (json_depth(req->body, req->body_len, BODY_MAX_DEPTH) > BODY_MAX_DEPTH) {
        http_error(res, 400, "body: JSON nested deeper than %d levels", BODY_MAX_DEPTH);
        return NULL;
    }
    json_error_t e;
    json_t *v = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &e);
    if (!v) {
        http_error(res, 400, "body: malformed JSON at line %d column %d: %s", e.line, e.column,
                   e.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        http_error(res, 400, "body: expected a JSON object");
        return NULL;
    }
    return v;
}

json_t *http_body_only(const struct request *req, struct response *res,
                       const char *const *allowed)
{
    json_t *body = http_body_object(req, res);
    if (body && jv_only(res, body, allowed) != 0) {
        json_decref(body);
        return NULL;
    }
    return body;
}

/* "an integer in 1..3600", "an integer >= 0", "an integer" into buf. */
static const char *int_range(char *buf, size_t len, int64_t min, int64_t max)
{
    if (min == INT64_MIN && max == INT64_MAX)
        snprintf(buf, len, "an integer");
    else if (max == INT64_MAX)
        snprintf(buf, len, "an integer >= %" PRId64, min);
    else if (min == INT64_MIN)
        snprintf(buf, len, "an integer <= %" PRId64, max);
    else
        snprintf(buf, len, "an integer in %" PRId64 "..%" PRId64, min, max);
    return buf;
}

/* The field's value, or NULL when absent; an absent required field has
 * answered 400 (*rc = -EINVAL), else *rc = 0. */
static json_t *field_get(struct response *res, json_t *obj, const char *field, int required,
                         const char *what, int *rc)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, field) : NULL;
    *rc = 0;
    if (!v && required) {
        http_error(res, 400, "field '%s' is required: %s", field, what);
        *rc = -EINVAL;
    }
    return v;
}

int jv_int(struct response *res, json_t *obj, const char *field, int64_t min, int64_t max,
           int required, int64_t def, int64_t *out)
{
    char what[96];
    int rc;
    int_range(what, sizeof(what), min, max);
    json_t *v = field_get(res, obj, field, required, what, &rc);
    if (!v) {
        if (rc == 0)
            *out = def;
        return rc;
    }
    /* json_int_t is long long: the comparison cannot overflow, and
     * integers past its range were already refused by the parser. */
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        http_error(res, 400, "field '%s' must be %s", field, what);
        return -EINVAL;
    }
    *out = json_integer_value(v);
    return 0;
}

int jv_number(struct response *res, json_t *obj, const char *field, double min, double max,
              int required, double def, double *out)
{
    char what[96];
    int rc;
    snprintf(what, sizeof(what), "a number in %g..%g", min, max);
    json_t *v = field_get(res, obj, field, required, what, &rc);
    if (!v) {
        if (rc == 0)
            *out = def;
        return rc;
    }
    /* jansson never produces NaN or infinities from JSON text, so the
     * range test below is a complete check. */
    double d = json_is_number(v) ? json_number_value(v) : 0;
    if (!json_is_number(v) || !(d >= min && d <= max)) {
        http_error(res, 400, "field '%s' must be %s", field, what);
        return -EINVAL;
    }
    *out = d;
    return 0;
}

int jv_bool(struct response *res, json_t *obj, const char *field, int required, int def,
            int *out)
{
    int rc;
    json_t *v = field_get(res, obj, field, required, "a boolean", &rc);
    if (!v) {
        if (rc == 0)
            *out = def;
        return rc;
    }
    if (!json_is_boolean(v)) {
        http_error(res, 400, "field '%s' must be a boolean", field);
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

/* 1 if s[0..len) is valid UTF-8 (shortest forms, no surrogates, at most
 * U+10FFFF) without control characters (C0, DEL, C1). */
static int printable_utf8(const char *str, size_t len)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return 0;
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
            return 0;
        i += n + 1;
    }
    return 1;
}

int jv_string(struct response *res, json_t *obj, const char *field, size_t maxlen, int required,
              const char *def, const char **out)
{
    char what[96];
    int rc;
    snprintf(what, sizeof(what), "a string of 1..%zu bytes", maxlen > 0 ? maxlen - 1 : 0);
    json_t *v = field_get(res, obj, field, required, what, &rc);
    if (!v) {
        if (rc == 0)
            *out = def;
        return rc;
    }
    size_t len = json_is_string(v) ? json_string_length(v) : 0;
    if (!json_is_string(v) || len == 0 || len >= maxlen) {
        http_error(res, 400, "field '%s' must be %s", field, what);
        return -EINVAL;
    }
    if (!printable_utf8(json_string_value(v), len)) {
        http_error(res, 400, "field '%s' must be printable text (no control characters)", field);
        return -EINVAL;
    }
    *out = json_string_value(v);
    return 0;
}

int jv_printable(const char *s, size_t len)
{
    return printable_utf8(s, len);
}

int jv_trace_id_ok(const char *s, size_t len)
{
    if (len == 0 || len >= STORE_TRACE_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

int jv_only(struct response *res, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (!allowed[i]) {
            /* The key is client text: print it only when it is short,
             * printable text, so the message stays a message. */
            if (strlen(key) <= 64 && printable_utf8(key, strlen(key)))
                http_error(res, 400, "unknown field '%s'", key);
            else
                http_error(res, 400, "unknown field");
            return -EINVAL;
        }
    }
    return 0;
}

int qp_int(const struct request *req, struct response *res, const char *name, int64_t min,
           int64_t max, int64_t def, int64_t *out)
{
    const char *s = http_query(req, name);
    if (!s) {
        *out = def;
        return 0;
    }
    /* Strict decimal: optional '-', 1..19 digits, nothing else; the
     * accumulation checks for overflow before each step. */
    const char *p = s;
    int neg = *p == '-';
    p += neg;
    uint64_t mag = 0;
    int ok = *p != '\0';
    for (; ok && *p; p++) {
        if (*p < '0' || *p > '9' || mag > (UINT64_MAX - 9) / 10)
            ok = 0;
        else
            mag = mag * 10 + (uint64_t)(*p - '0');
    }
    int64_t v = 0;
    if (ok && !neg && mag <= (uint64_t)INT64_MAX)
        v = (int64_t)mag;
    else if (ok && neg && mag <= (uint64_t)INT64_MAX + 1)
        v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    else
        ok = 0;
    if (!ok || v < min || v > max) {
        char what[96];
        http_error(res, 400, "query parameter '%s' must be %s", name,
                   int_range(what, sizeof(what), min, max));
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int qp_string(const struct request *req, struct response *res, const char *name, size_t maxlen,
              const char **out)
{
    const char *s = http_query(req, name);
    *out = NULL;
    if (!s)
        return 0;
    size_t len = strlen(s);
    if (len >= maxlen) {
        http_error(res, 400, "query parameter '%s' must be at most %zu bytes", name,
                   maxlen > 0 ? maxlen - 1 : 0);
        return -EINVAL;
    }
    if (!printable_utf8(s, len)) {
        http_error(res, 400, "query parameter '%s' must be printable text (no control characters)",
                   name);
        return -EINVAL;
    }
    *out = s;
    return 0;
}
