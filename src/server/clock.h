/*
 * clock.h — the server's clocks: wall time in ms for what is stored and
 * shown, monotonic time for durations and deadlines, and a wait on a
 * CLOCK_MONOTONIC condition variable for at most some ms.  Shared by
 * the HTTP layer, the background tick (main.c) and the load-test runner.
 */
#ifndef SONDE_SERVER_CLOCK_H
#define SONDE_SERVER_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static inline int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits on cond (a CLOCK_MONOTONIC condition) for at most ms. */
static inline void cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *m, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ms < 0)
        ms = 0;
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(cond, m, &ts);
}

static inline int64_t mono_ms(void)
{
    return mono_ns() / 1000000;
}

#endif
