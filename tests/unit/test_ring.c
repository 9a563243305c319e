/*
 * test_ring.c — the sample ring: order, no loss while there is room,
 * counted drops when full, many producers at once.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "sigsafe/ring.h"

static void test_fifo_order_single_producer(void **state)
{
    (void)state;
    struct sample_ring r;
    assert_int_equal(ring_init(&r, 64), 0);
    for (uint32_t i = 0; i < 1000; i++) {
        uint64_t pos;
        struct sample_slot *s = ring_claim(&r, &pos);
        assert_non_null(s);
        s->tid = i;
        ring_publish(&r, s, pos);
        struct sample_slot *c = ring_peek(&r);
        assert_non_null(c);
        assert_int_equal(c->tid, i);
        ring_release(&r, c);
    }
    assert_null(ring_peek(&r));
    ring_destroy(&r);
}

static void test_full_ring_drops_and_counts(void **state)
{
    (void)state;
    struct sample_ring r;
    assert_int_equal(ring_init(&r, 16), 0);
    int ok = 0;
    for (int i = 0; i < 40; i++) {
        uint64_t pos;
        struct sample_slot *s = ring_claim(&r, &pos);
        if (s) {
            ring_publish(&r, s, pos);
            ok++;
        }
    }
    assert_int_equal(ok, 16);
    assert_int_equal(atomic_load(&r.dropped), 24);
    int n = 0;
    struct sample_slot *c;
    while ((c = ring_peek(&r))) {
        ring_release(&r, c);
        n++;
    }
    assert_int_equal(n, 16);
    ring_destroy(&r);
}

static void test_unpublished_slot_blocks_consumer_until_published(void **state)
{
    (void)state;
    struct sample_ring r;
    assert_int_equal(ring_init(&r, 16), 0);
    uint64_t p1, p2;
    struct sample_slot *a = ring_claim(&r, &p1);
    struct sample_slot *b = ring_claim(&r, &p2);
    ring_publish(&r, b, p2);
    assert_null(ring_peek(&r)); /* a not yet published: order is kept */
    ring_publish(&r, a, p1);
    assert_ptr_equal(ring_peek(&r), a);
    ring_release(&r, a);
    assert_ptr_equal(ring_peek(&r), b);
    ring_release(&r, b);
    ring_destroy(&r);
}

#define PRODUCERS 4
#define PER_PRODUCER 200000

static struct sample_ring shared;
static _Atomic int done_producers;

static void *producer(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        uint64_t pos;
        struct sample_slot *s = ring_claim(&shared, &pos);
        if (!s)
            continue;
        s->tid = id;
        s->weight_ns = i;
        ring_publish(&shared, s, pos);
    }
    atomic_fetch_add(&done_producers, 1);
    return NULL;
}

static void test_many_producers_nothing_lost_or_torn(void **state)
{
    (void)state;
    assert_int_equal(ring_init(&shared, 1024), 0);
    pthread_t th[PRODUCERS];
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&th[i], NULL, producer, (void *)i);
    uint64_t got = 0;
    int64_t last[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        last[i] = -1;
    for (;;) {
        struct sample_slot *c = ring_peek(&shared);
        if (!c) {
            if (atomic_load(&done_producers) == PRODUCERS && !ring_peek(&shared))
                break;
            continue;
        }
        assert_true(c->tid < PRODUCERS);
        /* each producer's samples arrive in its own order */
        assert_true(c->weight_ns > last[c->tid]);
        last[c->tid] = c->weight_ns;
        ring_release(&shared, c);
        got++;
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(got + atomic_load(&shared.dropped), (uint64_t)PRODUCERS * PER_PRODUCER);
    ring_destroy(&shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_order_single_producer),
        cmocka_unit_test(test_full_ring_drops_and_counts),
        cmocka_unit_test(test_unpublished_slot_blocks_consumer_until_published),
        cmocka_unit_test(test_many_producers_nothing_lost_or_torn),
    };
    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
