/*
 * test_validate.c — the request validators of validate.c (http.h,
 * "Validation helpers"): every type and range error answers 400 with the
 * message a client sees, and valid input passes through unchanged.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/http.h"

/* Test hooks of http.c (not in http.h): a request without a connection
 * whose query parameters come from a query string. */
struct request *http_test_request_new(const char *query);
void http_test_request_free(struct request *req);

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

static void response_free(struct response *res)
{
    free(res->body);
    memset(res, 0, sizeof(*res));
}

/* res holds status 400 and exactly {"error": msg}. */
static void assert_400(struct response *res, const char *msg)
{
    assert_int_equal(res->status, 400);
    assert_non_null(res->body);
    json_error_t e;
    json_t *o = json_loadb(res->body, res->body_len, 0, &e);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 1);
    const char *got = json_string_value(json_object_get(o, "error"));
    assert_non_null(got);
    assert_string_equal(got, msg);
    json_decref(o);
    response_free(res);
}

/* The first error message of a JSON body on a request, or the parsed
 * object when the body is valid (then *res is untouched). */
static json_t *body_of(const char *text, struct response *res)
{
    struct request req = {0};
    req.body = (const uint8_t *)text;
    req.body_len = strlen(text);
    return http_body_object(&req, res);
}

static json_t *obj(const char *text)
{
    json_t *o = json_loads(text, 0, NULL);
    assert_non_null(o);
    return o;
}

/* ------------------------------------------------------------------ */
/* Body                                                                */

static void test_body_object_accepts_an_object(void **state)
{
    (void)state;
    struct response res = {0};
    json_t *o = body_of("{\"app\": \"checkout\", \"duration_s\": 120}", &res);
    assert_non_null(o);
    assert_int_equal(res.status, 0);
    assert_string_equal(json_string_value(json_object_get(o, "app")), "checkout");
    json_decref(o);
}

static void test_body_malformed_json_names_line_and_column(void **state)
{
    (void)state;
    struct response res = {0};
    assert_null(body_of("{\"a\" 1}", &res));
    assert_400(&res, "body: malformed JSON at line 1 column 6: ':' expected near '1'");
    assert_null(body_of("{\"a\": 1,\n \"b\": }", &res));
    assert_400(&res, "body: malformed JSON at line 2 column 7: unexpected token near '}'");
}

static void test_body_empty_and_non_object_are_refused(void **state)
{
    (void)state;
    struct response res = {0};
    assert_null(body_of("", &res));
    assert_400(&res, "body: empty; expected a JSON object");
    assert_null(body_of("[1, 2]", &res));
    assert_400(&res, "body: expected a JSON object");
    assert_null(body_of("42", &res));
    assert_400(&res, "body: malformed JSON at line 1 column 2: '[' or '{' expected near '42'");
}

static void test_body_duplicate_keys_are_refused(void **state)
{
    (void)state;
    struct response res = {0};
    assert_null(body_of("{\"duration_s\": 1, \"duration_s\": 3600}", &res));
    assert_400(&res, "body: malformed JSON at line 1 column 30: duplicate object key near "
                     "'\"duration_s\"'");
}

static void test_body_deep_nesting_is_refused(void **state)
{
    (void)state;
    struct response res = {0};
    char deep[200] = "";
    for (int i = 0; i < 33; i++)
        strcat(deep, "[");
    for (int i = 0; i < 33; i++)
        strcat(deep, "]");
    char text[256];
    snprintf(text, sizeof(text), "{\"a\": %s}", deep); /* 34 levels */
    assert_null(body_of(text, &res));
    assert_400(&res, "body: JSON nested deeper than 32 levels");

    /* Brackets inside strings are not nesting. */
    json_t *o = body_of("{\"a\": \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[\"}", &res);
    assert_non_null(o);
    json_decref(o);
}

static void test_body_invalid_utf8_is_refused(void **state)
{
    (void)state;
    struct response res = {0};
    assert_null(body_of("{\"app\": \"\xff\"}", &res));
    assert_int_equal(res.status, 400);
    assert_non_null(strstr(res.body, "body: malformed JSON"));
    response_free(&res);
}

/* ------------------------------------------------------------------ */
/* Integers                                                            */

static void test_int_in_range_is_taken(void **state)
{
    (void)state;
    struct response res = {0};
    json_t *o = obj("{\"duration_s\": 3600, \"low\": 1}");
    int64_t v = 0;
    assert_int_equal(jv_int(&res, o, "duration_s", 1, 3600, 1, 120, &v), 0);
    assert_int_equal(v, 3600);
    assert_int_equal(jv_int(&res, o, "low", 1, 3600, 1, 120, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(res.status, 0);
    json_decref(o);
}

static void test_int_absent_takes_default_or_is_required(void **state)
{
    (void)state;
    struct response res = {0};
    json_t *o = obj("{}");
    int64_t v = 0;
    assert_int_equal(jv_int(&res, o, "duration_s", 1, 3600, 0, 120, &v), 0);
    assert_int_equal(v, 120);
    assert_int_equal(jv_int(&res, o, "pid", 1, 4194304, 1, 0, &v), -EINVAL);
    assert_400(&res, "field 'pid' is required: an integer in 1..4194304");
    json_decref(o);
}

static void test_int_wrong_types_are_refused(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"duration_s\": \"120\"}", "{\"duration_s\": 120.0}", "{\"duration_s\": 1.5}",
        "{\"duration_s\": true}",    "{\"duration_s\": null}",  "{\"duration_s\": [120]}",
        "{\"duration_s\": {}}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct response res = {0};
        json_t *o = obj(bodies[i]);
        int64_t v = 7;
        assert_int_equal(jv_int(&res, o, "duration_s", 1, 3600, 0, 120, &v), -EINVAL);
        assert_400(&res, "field 'duration_s' must be an integer in 1..3600");
        assert_int_equal(v, 7); /* untouched on failure */
        json_decref(o);
    }
}

static void test_int_out_of_range_is_refused(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"duration_s\": 0}",
        "{\"duration_s\": 3601}",
        "{\"duration_s\": -1}",
        "{\"duration_s\": 9223372036854775807}",
        "{\"duration_s\": -9223372036854775808}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct response res = {0};
        json_t *o = obj(bodies[i]);
        int64_t v;
        assert_int_equal(jv_int(&res, o, "duration_s", 1, 3600, 0, 120, &v), -EINVAL);
        assert_400(&res, "field 'duration_s' must be an integer in 1..3600");
        json_decref(o);
    }
}

static void test_int_open_ranges_say_so(void **state)
{
    (void)state;
    struct response res = {0};
    json_t *o = obj("{\"samples\": -1}");
    int64_t v;
    assert_int_equal(jv_int(&res, o, "samples", 0, INT64_MAX, 0, 0, &v), -EINVAL);
    assert_400(&res, "field 'samples' must be an integer >= 0");
    assert_int_equal(jv_int(&res, o, "samples", INT64_MIN, INT64_MAX, 0, 0, &v), 0);
    assert_int_equal(v, -1);
    json_decref(o);
}

static void test_int_past_int64_is_refused_by_the_parser(void **state)
{
    (void)state;
    struct response res = {0};
    assert_null(body_of("{\"started_ms\": 99999999999999999999}", &res));
    assert_int_equal(res.status, 400);
    assert_non_null(strstr(res.body, "too big integer"));
    response_free(&res);
}

/* ------------------------------------------------------------------ */
/* Numbers and booleans                                                */

static void test_number_takes_integers_and_reals_in_range(void **state)
{
    (void)state;
    struct response res = {0};
    json_t *o = obj("{\"a\": 12, \"b\": 12.5, \"c\": 100.5, \"d\": \"1\", \"e\": false}");
    double d = 0;
    assert_int_equal(jv_number(&res, o, "a", 0, 100, 1, 0, &d), 0);
    assert_true(d == 12.0);
    assert_int_equal(jv_number(&res, o, "b", 0, 100, 1, 0, &d), 0);
    assert_true(d == 12.5);
    assert_int_equal(jv_number(&res, o, "absent", 0, 100, 0, -1, &d), 0);
    assert_true(d == -1);
    assert_int_equal(jv_number(&res, o, "c", 0, 100, 1, 0, &d), -EINVAL);
    assert_400(&res, "field 'c' must be a number in 0..100");
    assert_int_equal(jv_number(&res, o, "d", 0, 100, 1, 0, &d), -EINVAL);
    assert_400(&res, "field 'd' must be a number in 0..100");
    assert_int_equal(jv_number(&res, o, "e", 0, 100000, 1, 0, &d), -EINVAL);
    assert_400(&res, "field 'e' must be a number in 0..100000");
    assert_int_equal(jv_number(&res, o, "absent", 0, 100, 1, 0, &d), -EINVAL);
    assert_400(&res, "field 'absent' is required: a number in 0..100");
    json_decref(o);
}

static void test_bool_takes_only_booleans(void **state)
{
    (void)state;
    struct response res = {0};
    json_t *o = obj("{\"t\": true, \"f\": false, \"one\": 1, \"s\": \"true\", \"n\": null}");
    int b = -1;
    assert_int_equal(jv_bool(&res, o, "t", 1, 0, &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(jv_bool(&res, o, "f", 1, 1, &b), 0);
    assert_int_equal(b, 0);
    assert_int_equal(jv_bool(&res, o, "absent", 0, 1, &b), 0);
    assert_int_equal(b, 1);
    const char *bad[] = {"one", "s", "n"};
    for (size_t i = 0; i < 3; i++) {
        char msg[64];
        assert_int_equal(jv_bool(&res, o, bad[i], 0, 1, &b), -EINVAL);
        snprintf(msg, sizeof(msg), "field '%s' must be a boolean", bad[i]);
        assert_400(&res, msg);
    }
    assert_int_equal(jv_bool(&res, o, "enabled", 1, 1, &b), -EINVAL);
    assert_400(&res, "field 'enabled' is required: a boolean");
    json_decref(o);
}

/* ------------------------------------------------------------------ */
/* Strings                                                             */

static void test_string_within_bounds_is_borrowed(void **state)
{
    (void)state;
    struct response res = {0};
    json_t *o = obj("{\"app\": \"checkout\", \"host\": \"h\\u00e9\\u65e5\\ud83d\\ude00\"}");
    const char *s = NULL;
    assert_int_equal(jv_string(&res, o, "app", 128, 1, NULL, &s), 0);
    assert_string_equal(s, "checkout");
    assert_ptr_equal(s, json_string_value(json_object_get(o, "app")));
    assert_int_equal(jv_string(&res, o, "host", 128, 1, NULL, &s), 0);
    assert_string_equal(s, "h\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80");
    assert_int_equal(jv_string(&res, o, "absent", 128, 0, "dflt", &s), 0);
    assert_string_equal(s, "dflt");
    assert_int_equal(jv_string(&res, o, "absent", 128, 0, NULL, &s), 0);
    assert_null(s);
    assert_int_equal(res.status, 0);
    json_decref(o);
}

static void test_string_length_bound_is_exact(void **state)
{
    (void)state;
    struct response res = {0};
    char text[400];
    char name[200];
    const char *s;
    memset(name, 'n', 127);
    name[127] = '\0';
    snprintf(text, sizeof(text), "{\"name\": \"%s\"}", name);
    json_t *o = obj(text);
    assert_int_equal(jv_string(&res, o, "name", 128, 1, NULL, &s), 0);
    assert_int_equal(strlen(s), 127);
    json_decref(o);

    name[127] = 'n';
    name[128] = '\0';
    snprintf(text, sizeof(text), "{\"name\": \"%s\"}", name);
    o = obj(text);
    assert_int_equal(jv_string(&res, o, "name", 128, 1, NULL, &s), -EINVAL);
    assert_400(&res, "field 'name' must be a string of 1..127 bytes");
    json_decref(o);

    /* The bound is in bytes: 64 two-byte characters are 128 bytes. */
    text[0] = '\0';
    strcat(text, "{\"name\": \"");
    for (int i = 0; i < 64; i++)
        strcat(text, "\xc3\xa9");
    strcat(text, "\"}");
    o = obj(text);
    assert_int_equal(jv_string(&res, o, "name", 128, 1, NULL, &s), -EINVAL);
    assert_400(&res, "field 'name' must be a string of 1..127 bytes");
    json_decref(o);
}

static void test_string_wrong_type_empty_or_missing_is_refused(void **state)
{
    (void)state;
    struct response res = {0};
    json_t *o = obj("{\"a\": \"\", \"b\": 5, \"c\": null, \"d\": [\"x\"]}");
    const char *s;
    const char *bad[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < 4; i++) {
        char msg[64];
        assert_int_equal(jv_string(&res, o, bad[i], 128, 0, NULL, &s), -EINVAL);
        snprintf(msg, sizeof(msg), "field '%s' must be a string of 1..127 bytes", bad[i]);
        assert_400(&res, msg);
    }
    assert_int_equal(jv_string(&res, o, "app", 128, 1, NULL, &s), -EINVAL);
    assert_400(&res, "field 'app' is required: a string of 1..127 bytes");
    json_decref(o);
}

static void test_string_control_characters_are_refused(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"app\": \"a\\nb\"}",     "{\"app\": \"a\\tb\"}",     "{\"app\": \"\\u001b[31m\"}",
        "{\"app\": \"a\\u007fb\"}", "{\"app\": \"a\\u0085b\"}", "{\"app\": \"\\u009b\"}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct response res = {0};
        json_t *o = obj(bodies[i]);
        const char *s;
        assert_int_equal(jv_string(&res, o, "app", 128, 1, NULL, &s), -EINVAL);
        assert_400(&res, "field 'app' must be printable text (no control characters)");
        json_decref(o);
    }
}

/* ------------------------------------------------------------------ */
/* Unknown fields                                                      */

static void test_only_refuses_unknown_fields(void **state)
{
    (void)state;
    static const char *const allowed[] = {"app", "duration_s", NULL};
    struct response res = {0};
    json_t *o = obj("{\"app\": \"a\", \"duration_s\": 5}");
    assert_int_equal(jv_only(&res, o, allowed), 0);
    json_decref(o);
    o = obj("{\"app\": \"a\", \"x\": 1}");
    assert_int_equal(jv_only(&res, o, allowed), -EINVAL);
    assert_400(&res, "unknown field 'x'");
    json_decref(o);
    /* A key that is no fit text is not echoed. */
    o = obj("{\"a\\nb\": 1}");
    assert_int_equal(jv_only(&res, o, allowed), -EINVAL);
    assert_400(&res, "unknown field");
    json_decref(o);
}

/* ------------------------------------------------------------------ */
/* Query parameters                                                    */

static void test_qp_int_parses_strict_decimal(void **state)
{
    (void)state;
    struct request *req = http_test_request_new("limit=1000&offset=0&from=-5&to=1795000000000");
    assert_non_null(req);
    struct response res = {0};
    int64_t v;
    assert_int_equal(qp_int(req, &res, "limit", 1, 1000, 50, &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(qp_int(req, &res, "offset", 0, INT64_MAX, 7, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(qp_int(req, &res, "from", INT64_MIN, INT64_MAX, 0, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(qp_int(req, &res, "to", 0, INT64_MAX, 0, &v), 0);
    assert_int_equal(v, 1795000000000LL);
    assert_int_equal(qp_int(req, &res, "absent", 1, 1000, 50, &v), 0);
    assert_int_equal(v, 50);
    assert_int_equal(res.status, 0);
    http_test_request_free(req);
}

static void test_qp_int_refuses_everything_else(void **state)
{
    (void)state;
    static const char *const values[] = {
        "0",   "1001", "-1",  "",   "abc", "5x",  "%205", "+5",  "5%20", "1.5",
        "1e3", "0x10", "--1", "99999999999999999999", "-9223372036854775809",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char q[64];
        snprintf(q, sizeof(q), "limit=%s", values[i]);
        struct request *req = http_test_request_new(q);
        assert_non_null(req);
        struct response res = {0};
        int64_t v = 3;
        assert_int_equal(qp_int(req, &res, "limit", 1, 1000, 50, &v), -EINVAL);
        assert_400(&res, "query parameter 'limit' must be an integer in 1..1000");
        assert_int_equal(v, 3);
        http_test_request_free(req);
    }
    struct request *req = http_test_request_new("offset=-1");
    struct response res = {0};
    int64_t v;
    assert_int_equal(qp_int(req, &res, "offset", 0, INT64_MAX, 0, &v), -EINVAL);
    assert_400(&res, "query parameter 'offset' must be an integer >= 0");
    http_test_request_free(req);
}

static void test_qp_int_takes_int64_extremes(void **state)
{
    (void)state;
    struct request *req =
        http_test_request_new("a=9223372036854775807&b=-9223372036854775808&c=9223372036854775808");
    struct response res = {0};
    int64_t v;
    assert_int_equal(qp_int(req, &res, "a", INT64_MIN, INT64_MAX, 0, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(qp_int(req, &res, "b", INT64_MIN, INT64_MAX, 0, &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(qp_int(req, &res, "c", INT64_MIN, INT64_MAX, 0, &v), -EINVAL);
    assert_400(&res, "query parameter 'c' must be an integer");
    http_test_request_free(req);
}

static void test_qp_string_bounds_and_text(void **state)
{
    (void)state;
    char q[400] = "app=checkout&inst=h%C3%A9&nl=a%0Ab&bad=%FF&empty=&long=";
    for (int i = 0; i < 128; i++)
        strcat(q, "x");
    struct request *req = http_test_request_new(q);
    struct response res = {0};
    const char *s;
    assert_int_equal(qp_string(req, &res, "app", 128, &s), 0);
    assert_string_equal(s, "checkout");
    assert_int_equal(qp_string(req, &res, "inst", 128, &s), 0);
    assert_string_equal(s, "h\xc3\xa9");
    assert_int_equal(qp_string(req, &res, "empty", 128, &s), 0);
    assert_string_equal(s, "");
    assert_int_equal(qp_string(req, &res, "absent", 128, &s), 0);
    assert_null(s);
    assert_int_equal(qp_string(req, &res, "long", 129, &s), 0);
    assert_int_equal(qp_string(req, &res, "long", 128, &s), -EINVAL);
    assert_400(&res, "query parameter 'long' must be at most 127 bytes");
    assert_int_equal(qp_string(req, &res, "nl", 128, &s), -EINVAL);
    assert_400(&res, "query parameter 'nl' must be printable text (no control characters)");
    assert_int_equal(qp_string(req, &res, "bad", 128, &s), -EINVAL);
    assert_400(&res, "query parameter 'bad' must be printable text (no control characters)");
    http_test_request_free(req);
}

static void test_qp_string_refuses_malformed_utf8(void **state)
{
    (void)state;
    /* overlong '/', a surrogate, past U+10FFFF, a lone continuation
     * byte, a truncated sequence */
    static const char *const values[] = {"%C0%AF", "%ED%A0%80", "%F4%90%80%80", "%80", "%E6%97"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char q[64];
        snprintf(q, sizeof(q), "app=%s", values[i]);
        struct request *req = http_test_request_new(q);
        struct response res = {0};
        const char *s;
        assert_int_equal(qp_string(req, &res, "app", 128, &s), -EINVAL);
        assert_400(&res, "query parameter 'app' must be printable text (no control characters)");
        http_test_request_free(req);
    }
}

static void test_query_all_returns_every_value(void **state)
{
    (void)state;
    struct request *req = http_test_request_new("label=thread%3Aw1&x=1&label=endpoint%3A%2Fpay");
    const char *vals[4];
    assert_int_equal(http_query_all(req, "label", vals, 4), 2);
    assert_string_equal(vals[0], "thread:w1");
    assert_string_equal(vals[1], "endpoint:/pay");
    assert_int_equal(http_query_all(req, "label", vals, 1), 1);
    assert_int_equal(http_query_all(req, "none", vals, 4), 0);
    http_test_request_free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_object_accepts_an_object),
        cmocka_unit_test(test_body_malformed_json_names_line_and_column),
        cmocka_unit_test(test_body_empty_and_non_object_are_refused),
        cmocka_unit_test(test_body_duplicate_keys_are_refused),
        cmocka_unit_test(test_body_deep_nesting_is_refused),
        cmocka_unit_test(test_body_invalid_utf8_is_refused),
        cmocka_unit_test(test_int_in_range_is_taken),
        cmocka_unit_test(test_int_absent_takes_default_or_is_required),
        cmocka_unit_test(test_int_wrong_types_are_refused),
        cmocka_unit_test(test_int_out_of_range_is_refused),
        cmocka_unit_test(test_int_open_ranges_say_so),
        cmocka_unit_test(test_int_past_int64_is_refused_by_the_parser),
        cmocka_unit_test(test_number_takes_integers_and_reals_in_range),
        cmocka_unit_test(test_bool_takes_only_booleans),
        cmocka_unit_test(test_string_within_bounds_is_borrowed),
        cmocka_unit_test(test_string_length_bound_is_exact),
        cmocka_unit_test(test_string_wrong_type_empty_or_missing_is_refused),
        cmocka_unit_test(test_string_control_characters_are_refused),
        cmocka_unit_test(test_only_refuses_unknown_fields),
        cmocka_unit_test(test_qp_int_parses_strict_decimal),
        cmocka_unit_test(test_qp_int_refuses_everything_else),
        cmocka_unit_test(test_qp_int_takes_int64_extremes),
        cmocka_unit_test(test_qp_string_bounds_and_text),
        cmocka_unit_test(test_qp_string_refuses_malformed_utf8),
        cmocka_unit_test(test_query_all_returns_every_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
