/*
 * test_stacktab.c — the stack table: counting, distinct keys, bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sonde.h"
#include "stacktab.h"

struct sum {
    uint64_t count;
    int64_t ns;
    size_t n;
};

static int add_up(const struct stack_entry *e, void *arg)
{
    struct sum *s = arg;
    s->count += e->count;
    s->ns += e->value_ns;
    s->n++;
    return 0;
}

static void test_same_stack_accumulates(void **state)
{
    (void)state;
    struct stack_table *t = stacktab_new(64, 16);
    assert_non_null(t);
    uintptr_t f[3] = {0x1000, 0x2000, 0x3000};
    for (int i = 0; i < 10; i++)
        assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 7, 0, f, 3, 1, 100), 0);
    assert_int_equal(stacktab_count(t), 1);
    struct sum s = {0, 0, 0};
    stacktab_foreach(t, add_up, &s);
    assert_int_equal(s.count, 10);
    assert_int_equal(s.ns, 1000);
    stacktab_free(t);
}

static void test_type_state_and_thread_are_part_of_the_key(void **state)
{
    (void)state;
    struct stack_table *t = stacktab_new(64, 16);
    uintptr_t f[2] = {0x1000, 0x2000};
    stacktab_add(t, SONDE_PROFILE_CPU, 0, 1, 0, f, 2, 1, 1);
    stacktab_add(t, SONDE_PROFILE_WALL, 'S', 1, 0, f, 2, 1, 1);
    stacktab_add(t, SONDE_PROFILE_WALL, 'R', 1, 0, f, 2, 1, 1);
    stacktab_add(t, SONDE_PROFILE_CPU, 0, 2, 0, f, 2, 1, 1);
    stacktab_add(t, SONDE_PROFILE_CPU, 0, 2, 0, f, 1, 1, 1);
    assert_int_equal(stacktab_count(t), 5);
    stacktab_free(t);
}

static void test_full_table_drops_new_stacks_and_counts_them(void **state)
{
    (void)state;
    struct stack_table *t = stacktab_new(16, 8);
    uintptr_t f[1];
    int refused = 0;
    for (int i = 0; i < 100; i++) {
        f[0] = 0x1000 + (uintptr_t)i;
        if (stacktab_add(t, SONDE_PROFILE_CPU, 0, 1, 0, f, 1, 2, 1) != 0)
            refused++;
    }
    assert_int_equal(stacktab_count(t), 16);
    assert_int_equal(refused, 84);
    assert_int_equal(stacktab_dropped(t), 168);
    /* existing stacks still count */
    f[0] = 0x1000;
    assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 1, 0, f, 1, 1, 1), 0);
    stacktab_clear(t);
    assert_int_equal(stacktab_count(t), 0);
    stacktab_free(t);
}

static void test_deep_stacks_are_cut_at_max_frames(void **state)
{
    (void)state;
    struct stack_table *t = stacktab_new(16, 4);
    uintptr_t f[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    stacktab_add(t, SONDE_PROFILE_CPU, 0, 1, 0, f, 10, 1, 1);
    struct sum s = {0, 0, 0};
    stacktab_foreach(t, add_up, &s);
    assert_int_equal(s.n, 1);
    stacktab_free(t);
}

static void test_bad_sizes_are_refused(void **state)
{
    (void)state;
    assert_null(stacktab_new(0, 16));
    assert_null(stacktab_new(16, 0));
    assert_null(stacktab_new(16, 100000));
    stacktab_free(NULL);
}

static void test_many_stacks_survive_hash_collisions(void **state)
{
    (void)state;
    struct stack_table *t = stacktab_new(10000, 32);
    uintptr_t f[8];
    for (int i = 0; i < 10000; i++) {
        for (int j = 0; j < 8; j++)
            f[j] = (uintptr_t)(i * 31 + j);
        assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 1, 0, f, 8, 1, 5), 0);
    }
    for (int i = 0; i < 10000; i++) {
        for (int j = 0; j < 8; j++)
            f[j] = (uintptr_t)(i * 31 + j);
        assert_int_equal(stacktab_add(t, SONDE_PROFILE_CPU, 0, 1, 0, f, 8, 1, 5), 0);
    }
    assert_int_equal(stacktab_count(t), 10000);
    struct sum s = {0, 0, 0};
    stacktab_foreach(t, add_up, &s);
    assert_int_equal(s.count, 20000);
    stacktab_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_stack_accumulates),
        cmocka_unit_test(test_type_state_and_thread_are_part_of_the_key),
        cmocka_unit_test(test_full_table_drops_new_stacks_and_counts_them),
        cmocka_unit_test(test_deep_stacks_are_cut_at_max_frames),
        cmocka_unit_test(test_bad_sizes_are_refused),
        cmocka_unit_test(test_many_stacks_survive_hash_collisions),
    };
    return cmocka_run_group_tests_name("stacktab", tests, NULL, NULL);
}
