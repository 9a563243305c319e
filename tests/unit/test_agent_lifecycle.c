/*
 * test_agent_lifecycle.c — the agent inside a real process (this test):
 * start/stop cycles while threads come and go, profiles written while
 * sampling goes on from several threads at once, counters, and refusals.
 * Built plain, with ASan+UBSan and with TSan, so the agent's own threads
 * (drain, wall sampler) and the handler's shared state are checked.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sonde.h"

static __thread volatile uint64_t sink;

__attribute__((noinline)) static void lifecycle_burn(double ms)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    do {
        for (int i = 0; i < 20000; i++)
            sink += (uint64_t)i * 2654435761u;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    } while ((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6 < ms);
}

static void *short_worker(void *arg)
{
    (void)arg;
    lifecycle_burn(3);
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 30 * 1000000};
    nanosleep(&ts, NULL);
    return NULL;
}

static char path[64];

static void test_start_stop_cycles_with_thread_churn(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        sonde_config_t cfg;
        sonde_config_init(&cfg);
        cfg.frequency_hz = 997;
        cfg.types = (round & 1) ? SONDE_PROFILE_CPU | SONDE_PROFILE_WALL : SONDE_PROFILE_CPU;
        assert_int_equal(sonde_start(&cfg), 0);
        assert_int_equal(sonde_start(&cfg), -EALREADY);
        pthread_t th[6];
        for (int i = 0; i < 6; i++)
            assert_int_equal(pthread_create(&th[i], NULL, i == 5 ? sleeper : short_worker, NULL), 0);
        lifecycle_burn(20);
        for (int i = 0; i < 6; i++)
            pthread_join(th[i], NULL);
        sonde_stats_t st;
        assert_int_equal(sonde_get_stats(&st), 0);
        assert_true(st.threads >= 2);
        assert_int_equal(sonde_stop(), 0);
        assert_int_equal(sonde_stop(), 0);
    }
}

static void *writer(void *arg)
{
    intptr_t id = (intptr_t)arg;
    char p[96];
    snprintf(p, sizeof p, "%s.%ld", path, (long)id);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sonde_write_profile(p, (i & 1) ? SONDE_FORMAT_COLLAPSED : SONDE_FORMAT_PPROF), 0);
    unlink(p);
    return NULL;
}

static void test_profiles_written_while_sampling_from_several_threads(void **state)
{
    (void)state;
    sonde_config_t cfg;
    sonde_config_init(&cfg);
    cfg.frequency_hz = 1000;
    assert_int_equal(sonde_start(&cfg), 0);
    lifecycle_burn(30);
    pthread_t w[3];
    for (intptr_t i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&w[i], NULL, writer, (void *)i), 0);
    lifecycle_burn(30);
    for (int i = 0; i < 3; i++)
        pthread_join(w[i], NULL);
    assert_int_equal(sonde_write_profile(path, SONDE_FORMAT_PPROF), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size > 100);
    sonde_stats_t st;
    sonde_get_stats(&st);
    assert_true(st.samples > 10);
    assert_int_equal(sonde_stop(), 0);
}

static void test_write_errors_are_reported_not_fatal(void **state)
{
    (void)state;
    sonde_config_t cfg;
    sonde_config_init(&cfg);
    assert_int_equal(sonde_start(&cfg), 0);
    int rc = sonde_write_profile("/nonexistent-dir/x.pb.gz", SONDE_FORMAT_PPROF);
    assert_true(rc < 0);
    assert_non_null(strstr(sonde_errmsg(), "/nonexistent-dir/x.pb.gz"));
    assert_int_equal(sonde_write_profile(NULL, SONDE_FORMAT_PPROF), -EINVAL); /* no output configured */
    assert_int_equal(sonde_stop(), 0);
}

static void test_signal_in_use_by_host_is_refused(void **state)
{
    (void)state;
    struct sigaction old;
    int sig = SIGRTMIN + 7;
    struct sigaction host;
    memset(&host, 0, sizeof host);
    host.sa_handler = (void (*)(int))(uintptr_t)lifecycle_burn; /* never delivered */
    assert_int_equal(sigaction(sig, &host, &old), 0);
    sonde_config_t cfg;
    sonde_config_init(&cfg);
    cfg.signal = sig;
    assert_int_equal(sonde_start(&cfg), -EBUSY);
    assert_non_null(strstr(sonde_errmsg(), "SONDE_SIGNAL"));
    struct sigaction now;
    sigaction(sig, NULL, &now);
    assert_ptr_equal(now.sa_handler, host.sa_handler); /* the host's handler is untouched */
    sigaction(sig, &old, NULL);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/sonde-lifecycle-%d.pb.gz", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_stop_cycles_with_thread_churn),
        cmocka_unit_test(test_profiles_written_while_sampling_from_several_threads),
        cmocka_unit_test(test_write_errors_are_reported_not_fatal),
        cmocka_unit_test(test_signal_in_use_by_host_is_refused),
    };
    int rc = cmocka_run_group_tests_name("agent_lifecycle", tests, NULL, NULL);
    unlink(path);
    return rc;
}
