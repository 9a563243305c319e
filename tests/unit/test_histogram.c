/*
 * test_histogram.c — the load generator's latency histogram
 * (src/common/histogram.c): quantiles within 1 % of the exact ones over
 * uniform, skewed and heavy-tailed values up to hours in ns; min, max
 * and mean exact; merging; empty; huge values.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/histogram.h"

#define HOUR_NS 3600000000000ULL
#define N 200000

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double next_unit(void) /* [0, 1) */
{
    return (double)(next_u64() >> 11) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static const double qs[] = {0.0001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999};

/* Records vals, then checks every quantile against the sorted values,
 * and min / max / mean. */
static void check_against_exact(uint64_t *vals, size_t n)
{
    struct histogram *h = malloc(sizeof *h);
    assert_non_null(h);
    histogram_reset(h);
    long double sum = 0;
    for (size_t i = 0; i < n; i++) {
        histogram_add(h, vals[i], 1);
        sum += vals[i];
    }
    qsort(vals, n, sizeof vals[0], cmp_u64);
    assert_int_equal(h->count, n);
    assert_int_equal(h->min, vals[0]);
    assert_int_equal(h->max, vals[n - 1]);
    assert_int_equal(histogram_quantile(h, 0), vals[0]);
    assert_int_equal(histogram_quantile(h, 1), vals[n - 1]);
    double mean = (double)(sum / n);
    assert_true(fabs(histogram_mean(h) - mean) <= mean * 1e-12);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        size_t rank = (size_t)ceil(qs[i] * (double)n);
        uint64_t exact = vals[rank - 1];
        uint64_t got = histogram_quantile(h, qs[i]);
        double diff = fabs((double)got - (double)exact);
        if (diff > (double)exact * 0.01)
            fail_msg("q %g: got %llu, exact %llu", qs[i], (unsigned long long)got, (unsigned long long)exact);
    }
    free(h);
}

static void test_quantiles_within_1pct_uniform_up_to_an_hour(void **state)
{
    (void)state;
    uint64_t *v = malloc(N * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < N; i++)
        v[i] = next_u64() % HOUR_NS;
    check_against_exact(v, N);
    free(v);
}

static void test_quantiles_within_1pct_log_uniform_1ns_to_an_hour(void **state)
{
    (void)state;
    uint64_t *v = malloc(N * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < N; i++)
        v[i] = (uint64_t)exp(next_unit() * log((double)HOUR_NS));
    check_against_exact(v, N);
    free(v);
}

/* Latencies as a server gives them: most near 100 µs, a long tail. */
static void test_quantiles_within_1pct_heavy_tail(void **state)
{
    (void)state;
    uint64_t *v = malloc(N * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < N; i++) {
        double u = next_unit();
        double x = 100000.0 / pow(1.0 - u, 1.5); /* Pareto, 100 µs up */
        v[i] = x > (double)HOUR_NS ? HOUR_NS : (uint64_t)x;
    }
    check_against_exact(v, N);
    free(v);
}

static void test_small_values_are_exact(void **state)
{
    (void)state;
    struct histogram h;
    histogram_reset(&h);
    for (uint64_t v = 0; v < 256; v++)
        histogram_add(&h, v, 1);
    for (uint64_t v = 1; v <= 256; v++)
        assert_int_equal(histogram_quantile(&h, (double)v / 256.0), v - 1);
    assert_true(fabs(histogram_mean(&h) - 127.5) < 1e-9);
}

static void test_merge_equals_recording_into_one(void **state)
{
    (void)state;
    struct histogram *a = malloc(sizeof *a), *b = malloc(sizeof *b), *all = malloc(sizeof *all);
    assert_true(a && b && all);
    histogram_reset(a);
    histogram_reset(b);
    histogram_reset(all);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = next_u64() % (1000000ULL << (i % 20));
        histogram_add(i % 3 ? a : b, v, 1);
        histogram_add(all, v, 1);
    }
    histogram_add(b, 7, 0); /* n = 0 records nothing */
    struct histogram *empty = malloc(sizeof *empty);
    assert_non_null(empty);
    histogram_reset(empty);
    histogram_merge(a, empty);
    histogram_merge(a, b);
    assert_int_equal(a->count, all->count);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_memory_equal(a->buckets, all->buckets, sizeof a->buckets);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        assert_int_equal(histogram_quantile(a, qs[i]), histogram_quantile(all, qs[i]));
    assert_true(fabs(histogram_mean(a) - histogram_mean(all)) <= histogram_mean(all) * 1e-12);
    /* merging into an empty one copies */
    histogram_merge(empty, all);
    assert_int_equal(empty->min, all->min);
    assert_int_equal(histogram_quantile(empty, 0.99), histogram_quantile(all, 0.99));
    free(a);
    free(b);
    free(all);
    free(empty);
}

static void test_empty_histogram(void **state)
{
    (void)state;
    struct histogram h;
    histogram_reset(&h);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.min, UINT64_MAX);
    assert_int_equal(h.max, 0);
    assert_int_equal(histogram_quantile(&h, 0.5), 0);
    assert_int_equal(histogram_quantile(&h, 1), 0);
    assert_int_equal(histogram_quantile(&h, 0), 0);
    assert_true(histogram_mean(&h) == 0);
}

static void test_huge_values_and_counts(void **state)
{
    (void)state;
    struct histogram h;
    histogram_reset(&h);
    histogram_add(&h, UINT64_MAX, 3);
    histogram_add(&h, (uint64_t)1 << 63, 1);
    histogram_add(&h, 0, 1000000);
    assert_int_equal(h.count, 1000004);
    assert_int_equal(h.min, 0);
    assert_int_equal(h.max, UINT64_MAX);
    assert_int_equal(histogram_quantile(&h, 1), UINT64_MAX);
    assert_int_equal(histogram_quantile(&h, 0.5), 0);
    /* the 1000001st value is 2^63: its bucket's bound is within 1 % */
    uint64_t q = histogram_quantile(&h, 1000000.5 / 1000004.0);
    assert_true(q >= (uint64_t)1 << 63);
    assert_true((double)(q - ((uint64_t)1 << 63)) <= 0.01 * 9.223372036854775808e18);
    double mean = (3.0 * 18446744073709551615.0 + 9.223372036854775808e18) / 1000004.0;
    assert_true(fabs(histogram_mean(&h) - mean) <= mean * 1e-12);
    /* out-of-range quantiles clamp */
    assert_int_equal(histogram_quantile(&h, 2), UINT64_MAX);
    assert_int_equal(histogram_quantile(&h, -1), 0);
    assert_int_equal(histogram_quantile(&h, NAN), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantiles_within_1pct_uniform_up_to_an_hour),
        cmocka_unit_test(test_quantiles_within_1pct_log_uniform_1ns_to_an_hour),
        cmocka_unit_test(test_quantiles_within_1pct_heavy_tail),
        cmocka_unit_test(test_small_values_are_exact),
        cmocka_unit_test(test_merge_equals_recording_into_one),
        cmocka_unit_test(test_empty_histogram),
        cmocka_unit_test(test_huge_values_and_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
