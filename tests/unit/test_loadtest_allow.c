/*
 * test_loadtest_allow.c — sonded's --loadtest-allow list (loadtest.h,
 * "Allow list"): the default lets only loopback through, CIDR blocks and
 * host names allow exactly what they cover, IPv4-mapped IPv6 addresses
 * count as the IPv4 address they carry, and every malformed entry is
 * refused with a message naming it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/loadtest.h"

/* A target: the URL's host and the address it resolved to (a literal
 * IPv4 or IPv6 address text). */
static int allowed(const struct loadtest_allow *a, const char *host, const char *address)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(80);
        len = sizeof *v4;
    } else {
        assert_int_equal(inet_pton(AF_INET6, address, &v6->sin6_addr), 1);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(80);
        len = sizeof *v6;
    }
    return loadtest_allow_check(a, host, (struct sockaddr *)&ss, len);
}

static struct loadtest_allow *parse_ok(const char *list)
{
    struct loadtest_allow *a = NULL;
    char err[256] = "";
    int rc = loadtest_allow_parse(list, &a, err, sizeof err);
    if (rc != 0)
        fail_msg("'%s' refused: %s", list, err);
    assert_non_null(a);
    return a;
}

/* list is refused with -EINVAL and a message containing want. */
static void parse_refused(const char *list, const char *want)
{
    struct loadtest_allow *a = (struct loadtest_allow *)1;
    char err[256] = "";
    int rc = loadtest_allow_parse(list, &a, err, sizeof err);
    if (rc != -EINVAL)
        fail_msg("'%s' accepted (rc %d)", list, rc);
    assert_null(a);
    if (!strstr(err, want))
        fail_msg("'%s': message '%s' lacks '%s'", list, err, want);
    if (strncmp(err, "--loadtest-allow: ", 18) != 0)
        fail_msg("'%s': message '%s' does not name the option", list, err);
}

/* ------------------------------------------------------------------ */

static void test_default_allows_only_loopback(void **state)
{
    (void)state;
    struct loadtest_allow *a = parse_ok(LOADTEST_ALLOW_DEFAULT);
    assert_string_equal(loadtest_allow_text(a), "127.0.0.0/8,::1");
    assert_true(allowed(a, "127.0.0.1", "127.0.0.1"));
    assert_true(allowed(a, "localhost", "127.0.0.1"));
    assert_true(allowed(a, "127.255.255.254", "127.255.255.254"));
    assert_true(allowed(a, "::1", "::1"));
    assert_true(allowed(a, "::ffff:127.0.0.1", "::ffff:127.0.0.1"));
    assert_false(allowed(a, "10.255.255.1", "10.255.255.1"));
    assert_false(allowed(a, "128.0.0.1", "128.0.0.1"));
    assert_false(allowed(a, "126.255.255.255", "126.255.255.255"));
    assert_false(allowed(a, "::2", "::2"));
    assert_false(allowed(a, "::ffff:10.0.0.1", "::ffff:10.0.0.1"));
    /* 0.0.0.0 and :: reach the local host, but the list does not name them. */
    assert_false(allowed(a, "0.0.0.0", "0.0.0.0"));
    assert_false(allowed(a, "::", "::"));
    /* A name that resolves outside the list is refused by its address. */
    assert_false(allowed(a, "example.com", "93.184.216.34"));
    loadtest_allow_free(a);
}

static void test_cidr_blocks_cover_exactly_their_range(void **state)
{
    (void)state;
    struct loadtest_allow *a = parse_ok("10.0.0.0/8, 192.168.1.128/25 ,fd00::/8,2001:db8::7");
    assert_true(allowed(a, "h", "10.0.0.0"));
    assert_true(allowed(a, "h", "10.255.255.255"));
    assert_false(allowed(a, "h", "11.0.0.0"));
    assert_false(allowed(a, "h", "9.255.255.255"));
    assert_true(allowed(a, "h", "192.168.1.128"));
    assert_true(allowed(a, "h", "192.168.1.255"));
    assert_false(allowed(a, "h", "192.168.1.127"));
    assert_true(allowed(a, "h", "fd12:3456::1"));
    assert_true(allowed(a, "h", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(allowed(a, "h", "fe00::1"));
    assert_false(allowed(a, "h", "fc00::1"));
    assert_true(allowed(a, "h", "2001:db8::7"));
    assert_false(allowed(a, "h", "2001:db8::8"));
    /* IPv4-mapped addresses are their IPv4 address. */
    assert_true(allowed(a, "h", "::ffff:10.1.2.3"));
    assert_false(allowed(a, "h", "::ffff:11.1.2.3"));
    /* Loopback is not in this list. */
    assert_false(allowed(a, "127.0.0.1", "127.0.0.1"));
    loadtest_allow_free(a);
}

static void test_zero_prefix_allows_a_whole_family(void **state)
{
    (void)state;
    struct loadtest_allow *a = parse_ok("0.0.0.0/0");
    assert_true(allowed(a, "h", "1.2.3.4"));
    assert_true(allowed(a, "h", "255.255.255.255"));
    assert_true(allowed(a, "h", "::ffff:1.2.3.4"));
    assert_false(allowed(a, "h", "2001:db8::1"));
    loadtest_allow_free(a);
    a = parse_ok("::/0");
    assert_true(allowed(a, "h", "2001:db8::1"));
    assert_false(allowed(a, "h", "1.2.3.4"));
    loadtest_allow_free(a);
}

static void test_mapped_entry_is_an_ipv4_block(void **state)
{
    (void)state;
    struct loadtest_allow *a = parse_ok("::ffff:10.0.0.0/104,::ffff:192.0.2.1");
    assert_true(allowed(a, "h", "10.9.8.7"));
    assert_true(allowed(a, "h", "::ffff:10.9.8.7"));
    assert_false(allowed(a, "h", "11.0.0.1"));
    assert_true(allowed(a, "h", "192.0.2.1"));
    assert_false(allowed(a, "h", "192.0.2.2"));
    loadtest_allow_free(a);
}

static void test_host_names_match_as_written(void **state)
{
    (void)state;
    struct loadtest_allow *a = parse_ok("staging.example.com,*.test.internal");
    /* By name, whatever the address (the list trusts that name). */
    assert_true(allowed(a, "staging.example.com", "203.0.113.9"));
    assert_true(allowed(a, "STAGING.Example.COM", "203.0.113.9"));
    assert_false(allowed(a, "prod.example.com", "203.0.113.9"));
    assert_false(allowed(a, "example.com", "203.0.113.9"));
    assert_false(allowed(a, "xstaging.example.com", "203.0.113.9"));
    /* A wildcard covers names strictly under its domain. */
    assert_true(allowed(a, "api.test.internal", "10.0.0.1"));
    assert_true(allowed(a, "a.b.test.internal", "10.0.0.1"));
    assert_true(allowed(a, "API.Test.Internal", "10.0.0.1"));
    assert_false(allowed(a, "test.internal", "10.0.0.1"));
    assert_false(allowed(a, "xtest.internal", "10.0.0.1"));
    assert_false(allowed(a, "api.test.internal.evil.com", "10.0.0.1"));
    /* An address written in the URL is not a name. */
    assert_false(allowed(a, "10.0.0.1", "10.0.0.1"));
    loadtest_allow_free(a);
}

static void test_name_and_address_entries_mix(void **state)
{
    (void)state;
    struct loadtest_allow *a = parse_ok("localhost,10.0.0.0/8");
    assert_true(allowed(a, "localhost", "127.0.0.1"));
    assert_false(allowed(a, "127.0.0.1", "127.0.0.1"));
    assert_true(allowed(a, "anything", "10.1.1.1"));
    loadtest_allow_free(a);
}

static void test_empty_list_allows_nothing(void **state)
{
    (void)state;
    struct loadtest_allow *a = parse_ok("");
    assert_string_equal(loadtest_allow_text(a), "");
    assert_false(allowed(a, "127.0.0.1", "127.0.0.1"));
    assert_false(allowed(a, "localhost", "::1"));
    loadtest_allow_free(a);
    a = parse_ok("  ");
    assert_false(allowed(a, "127.0.0.1", "127.0.0.1"));
    loadtest_allow_free(a);
    /* No address and no list: refused, not a crash. */
    assert_false(loadtest_allow_check(NULL, "h", NULL, 0));
}

static void test_no_address_checks_names_only(void **state)
{
    (void)state;
    struct loadtest_allow *a = parse_ok("0.0.0.0/0,good.example");
    assert_false(loadtest_allow_check(a, "x", NULL, 0));
    assert_true(loadtest_allow_check(a, "good.example", NULL, 0));
    loadtest_allow_free(a);
}

static void test_text_is_the_list_as_given(void **state)
{
    (void)state;
    struct loadtest_allow *a = parse_ok("10.0.0.0/8, ::1");
    assert_string_equal(loadtest_allow_text(a), "10.0.0.0/8, ::1");
    loadtest_allow_free(a);
    loadtest_allow_free(NULL);
}

static void test_bad_entries_are_refused_by_name(void **state)
{
    (void)state;
    parse_refused("10.0.0.0/33", "entry 1 '10.0.0.0/33': prefix length must be 0..32");
    parse_refused("127.0.0.0/8,fd00::/129", "entry 2 'fd00::/129': prefix length must be 0..128");
    parse_refused("10.0.0.0/", "prefix length");
    parse_refused("10.0.0.0/08", "prefix length");
    parse_refused("10.0.0.0/-1", "prefix length");
    parse_refused("10.0.0.0/8x", "prefix length");
    parse_refused("10.1.0.0/8", "entry 1 '10.1.0.0/8': address has bits set past the /8 prefix");
    parse_refused("fd00::1/8", "bits set past the /8 prefix");
    parse_refused("/8", "before '/' is not an IPv4 or IPv6 address");
    parse_refused("example.com/8", "'example.com' before '/'");
    parse_refused("10.0.0.256", "entry 1 '10.0.0.256': not an IPv4/IPv6 address");
    parse_refused("*", "entry 1 '*'");
    parse_refused("*.", "entry 1");
    parse_refused("a.*.com", "entry 1");
    parse_refused("bad_name", "entry 1 'bad_name'");
    parse_refused("a..b", "entry 1");
    parse_refused("-a.com", "entry 1");
    parse_refused("a-.com", "entry 1");
    parse_refused("example.com.", "entry 1");
    parse_refused("127.0.0.1,,::1", "entry 2 is empty");
    parse_refused("127.0.0.1,", "entry 2 is empty");
    parse_refused(",127.0.0.1", "entry 1 is empty");
    parse_refused("127.0.0.1 ::1", "entry 1");
    char label[80];
    memset(label, 'a', 64);
    label[64] = '\0';
    parse_refused(label, "entry 1");

    /* LOADTEST_ALLOW_MAX entries at most. */
    char list[LOADTEST_ALLOW_MAX * 16 + 32] = "";
    size_t n = 0;
    for (int i = 0; i < LOADTEST_ALLOW_MAX; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s10.0.%d.1", i ? "," : "", i);
    struct loadtest_allow *a = parse_ok(list);
    assert_true(allowed(a, "h", "10.0.63.1"));
    loadtest_allow_free(a);
    snprintf(list + n, sizeof list - n, ",10.1.0.1");
    parse_refused(list, "more than 64 entries");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_allows_only_loopback),
        cmocka_unit_test(test_cidr_blocks_cover_exactly_their_range),
        cmocka_unit_test(test_zero_prefix_allows_a_whole_family),
        cmocka_unit_test(test_mapped_entry_is_an_ipv4_block),
        cmocka_unit_test(test_host_names_match_as_written),
        cmocka_unit_test(test_name_and_address_entries_mix),
        cmocka_unit_test(test_empty_list_allows_nothing),
        cmocka_unit_test(test_no_address_checks_names_only),
        cmocka_unit_test(test_text_is_the_list_as_given),
        cmocka_unit_test(test_bad_entries_are_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
