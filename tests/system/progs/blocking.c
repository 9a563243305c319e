#define _GNU_SOURCE
/*
 * blocking.c — threads that block in the kernel, for wall-clock profiling
 * tests (test_wall_blocking_calls_not_interrupted).
 *
 *   blocking MODE SECONDS     MODE: sleep | poll | epoll | select | all
 *
 * One thread per mode (all: one of each, at the same time), named
 * "blk-MODE", makes SECONDS calls that each should block for exactly 1 s:
 *   block_in_sleep    sleep(1)
 *   block_in_poll     poll() on a pipe nobody writes, timeout 1000 ms
 *   block_in_epoll    epoll_wait() on that pipe, timeout 1000 ms
 *   block_in_select   select() on that pipe with a 1 s timeval
 * Each call's wall duration is measured with CLOCK_MONOTONIC and printed:
 *   "block_in_poll call=1 rc=0 elapsed=1.000213"
 * A call that returns early, with an error (EINTR: a profiler's signal
 * interrupted it) or with a ready descriptor is a failure: the program
 * then prints "FAIL ..." and exits 1.  Meanwhile a thread "busy-main" burns
 * a little CPU in busy_main() so wall profiles also have a running thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

static int pipe_fds[2];
static int calls_per_thread;
static volatile int failures;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Each returns what the call returned, errno in *err. */
__attribute__((noinline)) int block_in_sleep(int *err)
{
    errno = 0;
    int rc = (int)sleep(1); /* unslept seconds: non-zero if interrupted */
    *err = errno;
    return rc;
}

__attribute__((noinline)) int block_in_poll(int *err)
{
    struct pollfd p = {.fd = pipe_fds[0], .events = POLLIN};
    int rc = poll(&p, 1, 1000);
    *err = rc < 0 ? errno : 0;
    return rc;
}

__attribute__((noinline)) int block_in_epoll(int *err)
{
    static __thread int ep = -1;
    if (ep < 0) {
        ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN};
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pipe_fds[0], &ev) < 0) {
            *err = errno;
            return -1;
        }
    }
    struct epoll_event out;
    int rc = epoll_wait(ep, &out, 1, 1000);
    *err = rc < 0 ? errno : 0;
    return rc;
}

__attribute__((noinline)) int block_in_select(int *err)
{
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(pipe_fds[0], &rd);
    struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
    int rc = select(pipe_fds[0] + 1, &rd, NULL, NULL, &tv);
    *err = rc < 0 ? errno : 0;
    return rc;
}

struct mode {
    const char *name;
    const char *func;
    int (*call)(int *err);
};

static const struct mode modes[] = {
    {"sleep", "block_in_sleep", block_in_sleep},
    {"poll", "block_in_poll", block_in_poll},
    {"epoll", "block_in_epoll", block_in_epoll},
    {"select", "block_in_select", block_in_select},
};
#define NMODES (int)(sizeof modes / sizeof modes[0])

static void *blocking_thread(void *arg)
{
    const struct mode *m = arg;
    char name[16];
    snprintf(name, sizeof name, "blk-%s", m->name);
    pthread_setname_np(pthread_self(), name);
    for (int i = 1; i <= calls_per_thread; i++) {
        int err = 0;
        double t0 = now_s();
        int rc = m->call(&err);
        double dt = now_s() - t0;
        /* 1 ms of slack for timer rounding; the kernel never returns a
         * timeout early, so anything shorter was an interruption. */
        int bad = rc != 0 || err != 0 || dt < 0.999;
        pthread_mutex_lock(&out_lock);
        printf("%s call=%d rc=%d elapsed=%.6f%s%s\n", m->func, i, rc, dt, err ? " errno=" : "",
               err ? strerror(err) : "");
        if (bad) {
            printf("FAIL %s call=%d returned early or with an error\n", m->func, i);
            failures++;
        }
        fflush(stdout);
        pthread_mutex_unlock(&out_lock);
    }
    return NULL;
}

static volatile int done;

__attribute__((noinline)) uint64_t busy_main(void)
{
    uint64_t x = 1;
    while (!done) {
        for (int i = 0; i < 100000; i++)
            x = x * 2862933555777941757ULL + 3037000493ULL;
        usleep(20000); /* mostly idle: ~1/3 of a core at most */
    }
    return x;
}

static void *busy_thread(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)busy_main();
}

int main(int argc, char **argv)
{
    if (argc != 3 || atoi(argv[2]) < 1) {
        fprintf(stderr, "usage: blocking sleep|poll|epoll|select|all CALLS_OF_1S\n");
        return 2;
    }
    calls_per_thread = atoi(argv[2]);
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
        perror("pipe");
        return 1;
    }
    pthread_t tids[NMODES];
    int n = 0;
    for (int i = 0; i < NMODES; i++) {
        if (strcmp(argv[1], "all") != 0 && strcmp(argv[1], modes[i].name) != 0)
            continue;
        if (pthread_create(&tids[n], NULL, blocking_thread, (void *)&modes[i]) != 0) {
            perror("pthread_create");
            return 1;
        }
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "blocking: unknown mode '%s'\n", argv[1]);
        return 2;
    }
    pthread_t busy;
    pthread_create(&busy, NULL, busy_thread, NULL);
    pthread_setname_np(busy, "busy-main");
    for (int i = 0; i < n; i++)
        pthread_join(tids[i], NULL);
    done = 1;
    pthread_join(busy, NULL);
    printf("threads=%d calls=%d failures=%d\n", n, n * calls_per_thread, failures);
    return failures ? 1 : 0;
}
