/*
 * test_exports.c — libsonde.so is a guest: it exports sonde_* and the one
 * libc function it interposes (pthread_create), nothing else, so it can
 * never shadow a host symbol by accident; and every function of sonde.h
 * is among them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

static const char *allowed_extra[] = {"pthread_create", "_init", "_fini"};

/* The public API a host links against: each must be exported. */
static const char *required[] = {
    "sonde_start", "sonde_stop", "sonde_write_profile", "sonde_config_init", "sonde_get_stats",
    "sonde_errmsg", "sonde_span_begin", "sonde_span_end", "sonde_span_set_status",
    "sonde_span_set_peer", "sonde_span_trace_id",
};

static void test_only_sonde_symbols_are_exported(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only %s/libsonde.so", SONDE_BUILD_DIR);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512];
    int n = 0, sonde = 0, bad = 0;
    int found[sizeof required / sizeof required[0]] = {0};
    while (fgets(line, sizeof line, p)) {
        char addr[64], type[8], name[400];
        if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3)
            continue;
        char *at = strchr(name, '@');
        if (at)
            *at = 0;
        n++;
        if (strncmp(name, "sonde_", 6) == 0) {
            sonde++;
            for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
                found[i] |= strcmp(name, required[i]) == 0;
            continue;
        }
        int ok = 0;
        for (size_t i = 0; i < sizeof allowed_extra / sizeof allowed_extra[0]; i++)
            ok |= strcmp(name, allowed_extra[i]) == 0;
        /* sanitizer builds may export their interceptors' helpers */
        ok |= strncmp(name, "__asan", 6) == 0 || strncmp(name, "__ubsan", 7) == 0 ||
              strncmp(name, "__tsan", 6) == 0;
        if (!ok) {
            print_error("unexpected export: %s\n", name);
            bad++;
        }
    }
    assert_int_equal(pclose(p), 0);
    assert_true(n > 0);
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!found[i])
            fail_msg("%s is not exported", required[i]);
    assert_true(sonde >= (int)(sizeof required / sizeof required[0]));
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_sonde_symbols_are_exported),
    };
    return cmocka_run_group_tests_name("exports", tests, NULL, NULL);
}
