/*
 * test_config.c — SONDE_* environment parsing: defaults, good values, and
 * every kind of bad value refused with a message naming the variable.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent.h"
#include "sonde.h"

static const char *vars[] = {"SONDE_FREQUENCY", "SONDE_TYPES",     "SONDE_SIGNAL",
                             "SONDE_FORMAT",    "SONDE_OUTPUT",    "SONDE_RING_SLOTS",
                             "SONDE_MAX_STACKS", "SONDE_MAX_FRAMES", "SONDE_FOLLOW_FORK"};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    sonde_config_t c;
    assert_int_equal(sonde_config_init(&c), 0);
    assert_int_equal(c.frequency_hz, 100);
    assert_int_equal(c.types, SONDE_PROFILE_CPU);
    assert_int_equal(c.signal, SIGRTMIN + 3);
    assert_int_equal(c.format, SONDE_FORMAT_PPROF);
    assert_string_equal(c.output, "");
    assert_int_equal(c.max_frames, 128);
}

static void test_good_values_are_taken(void **state)
{
    (void)state;
    setenv("SONDE_FREQUENCY", "997", 1);
    setenv("SONDE_TYPES", "cpu,wall", 1);
    setenv("SONDE_SIGNAL", "SIGRTMIN+5", 1);
    setenv("SONDE_FORMAT", "collapsed", 1);
    setenv("SONDE_OUTPUT", "/tmp/x.pb.gz", 1);
    setenv("SONDE_FOLLOW_FORK", "1", 1);
    sonde_config_t c;
    assert_int_equal(sonde_config_init(&c), 0);
    assert_int_equal(c.frequency_hz, 997);
    assert_int_equal(c.types, SONDE_PROFILE_CPU | SONDE_PROFILE_WALL);
    assert_int_equal(c.signal, SIGRTMIN + 5);
    assert_int_equal(c.format, SONDE_FORMAT_COLLAPSED);
    assert_string_equal(c.output, "/tmp/x.pb.gz");
    assert_int_equal(c.follow_fork, 1);
}

static void expect_refused(const char *var, const char *value)
{
    clear_env(NULL);
    setenv(var, value, 1);
    sonde_config_t c;
    assert_int_equal(sonde_config_init(&c), -EINVAL);
    if (!strstr(sonde_errmsg(), var))
        fail_msg("message for %s=%s does not name the variable: %s", var, value, sonde_errmsg());
    /* the field keeps its default */
    assert_int_equal(c.frequency_hz, strcmp(var, "SONDE_FREQUENCY") ? c.frequency_hz : 100);
}

static void test_bad_values_are_refused_with_the_variable_named(void **state)
{
    (void)state;
    expect_refused("SONDE_FREQUENCY", "0");
    expect_refused("SONDE_FREQUENCY", "10001");
    expect_refused("SONDE_FREQUENCY", "abc");
    expect_refused("SONDE_FREQUENCY", "100x");
    expect_refused("SONDE_FREQUENCY", "99999999999999999999");
    expect_refused("SONDE_TYPES", "heap");
    expect_refused("SONDE_TYPES", ",");
    expect_refused("SONDE_SIGNAL", "SIGKILL");
    expect_refused("SONDE_SIGNAL", "9");
    expect_refused("SONDE_SIGNAL", "SIGRTMIN+999");
    expect_refused("SONDE_SIGNAL", "banana");
    expect_refused("SONDE_FORMAT", "xml");
    expect_refused("SONDE_RING_SLOTS", "1");
    expect_refused("SONDE_MAX_STACKS", "-5");
    expect_refused("SONDE_MAX_FRAMES", "129");
    expect_refused("SONDE_FOLLOW_FORK", "yes");
}

static void test_signal_names(void **state)
{
    (void)state;
    assert_int_equal(config_parse_signal("SIGPROF"), SIGPROF);
    assert_int_equal(config_parse_signal("prof"), SIGPROF);
    assert_int_equal(config_parse_signal("SIGRTMIN"), SIGRTMIN);
    assert_int_equal(config_parse_signal("RTMIN+2"), SIGRTMIN + 2);
    assert_int_equal(config_parse_signal("40"), 40);
    assert_int_equal(config_parse_signal(""), -EINVAL);
    assert_int_equal(config_parse_signal("SIGSEGV"), -EINVAL);
}

static void test_start_refuses_bad_config(void **state)
{
    (void)state;
    sonde_config_t c;
    sonde_config_init(&c);
    c.frequency_hz = 0;
    assert_int_equal(sonde_start(&c), -EINVAL);
    assert_non_null(strstr(sonde_errmsg(), "frequency_hz"));
    sonde_config_init(&c);
    c.types = 8;
    assert_int_equal(sonde_start(&c), -EINVAL);
    sonde_config_init(&c);
    c.max_frames = 0;
    assert_int_equal(sonde_start(&c), -EINVAL);
    assert_int_equal(sonde_stop(), 0); /* not running: fine */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_good_values_are_taken, clear_env),
        cmocka_unit_test_setup(test_bad_values_are_refused_with_the_variable_named, clear_env),
        cmocka_unit_test_setup(test_signal_names, clear_env),
        cmocka_unit_test_setup(test_start_refuses_bad_config, clear_env),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
