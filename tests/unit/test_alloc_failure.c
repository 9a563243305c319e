/*
 * test_alloc_failure.c — a guest never aborts: fail the Nth allocation, for
 * N = 1, 2, …, through agent start, sampling, export and stop, and the
 * host must survive each one (every call returns 0 or a negative errno,
 * and the process goes on to the next round).
 *
 * The test binary defines malloc/calloc/realloc/posix_memalign itself, so
 * every allocation in the process — ours, libdw's, zlib's, protobuf-c's —
 * goes through the countdown.  Under AddressSanitizer (which owns malloc)
 * the loop cannot run; the sanitizer build covers the same paths through
 * the other tests.
 *
 * One exemption: allocations made directly by libdw/libelf are never
 * failed.  elfutils 0.188 dereferences NULL after some failed allocations
 * (seen in dwarf_child), which no caller can guard against; sonde installs
 * its own libdw out-of-memory handler for the failures libdw does check.
 */
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sonde.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NO_MALLOC_HOOK 1
#endif

#ifndef NO_MALLOC_HOOK
static _Atomic long countdown = -1; /* -1: never fail; else fail when it reaches 0 */
static _Atomic long failures_injected;

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static uintptr_t exempt_lo[4], exempt_hi[4];
static int nexempt;

static int find_exempt(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    if (nexempt >= 4 || !(strstr(info->dlpi_name, "libdw.so") || strstr(info->dlpi_name, "libelf.so")))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && nexempt < 4) {
            exempt_lo[nexempt] = info->dlpi_addr + ph->p_vaddr;
            exempt_hi[nexempt] = exempt_lo[nexempt] + ph->p_memsz;
            nexempt++;
        }
    }
    return 0;
}

static int should_fail_from(uintptr_t caller)
{
    for (int i = 0; i < nexempt; i++)
        if (caller >= exempt_lo[i] && caller < exempt_hi[i])
            return 0;
    long c = atomic_load(&countdown);
    if (c < 0)
        return 0;
    if (atomic_fetch_sub(&countdown, 1) == 0) {
        atomic_fetch_add(&failures_injected, 1);
        return 1;
    }
    return 0;
}

#define should_fail() should_fail_from((uintptr_t)__builtin_return_address(0))

void *malloc(size_t n)
{
    return should_fail() ? NULL : __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    return should_fail() ? NULL : __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    return should_fail() ? NULL : __libc_realloc(p, n);
}
int posix_memalign(void **out, size_t align, size_t n)
{
    if (should_fail())
        return ENOMEM;
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
#endif

#ifndef NO_MALLOC_HOOK
static volatile uint64_t sink;

__attribute__((noinline)) static void burn(double ms)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    do {
        for (int i = 0; i < 10000; i++)
            sink += (uint64_t)i * 2654435761u;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    } while ((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6 < ms);
}

static void *worker(void *arg)
{
    (void)arg;
    burn(15);
    return NULL;
}

/* One round: start, a thread that works, write, stop.  Every call may fail,
 * none may crash. */
static void one_round(const char *path)
{
    sonde_config_t cfg;
    sonde_config_init(&cfg);
    cfg.frequency_hz = 1000;
    cfg.types = SONDE_PROFILE_CPU | SONDE_PROFILE_WALL;
    cfg.ring_slots = 64;
    cfg.max_stacks = 64;
    int rc = sonde_start(&cfg);
    assert_true(rc == 0 || rc < 0);
    pthread_t th;
    int have = pthread_create(&th, NULL, worker, NULL) == 0;
    burn(10);
    if (have)
        pthread_join(th, NULL);
    rc = sonde_write_profile(path, SONDE_FORMAT_PPROF);
    assert_true(rc == 0 || rc < 0);
    rc = sonde_stop();
    assert_true(rc == 0 || rc < 0);
    assert_non_null(sonde_errmsg());
}

#endif

static void test_host_survives_every_failed_allocation(void **state)
{
    (void)state;
#ifdef NO_MALLOC_HOOK
    skip();
#else
    dl_iterate_phdr(find_exempt, NULL);
    char path[] = "/tmp/sonde-allocfail-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    /* Rounds without failure first: the allocations of one round. */
    atomic_store(&countdown, -1);
    one_round(path);
    long rounds = 0, failed_rounds = 0;
    /* Every N up to 300, then a widening stride to keep the run short. */
    for (long n = 0; n < 100000; n += n < 300 ? 1 : n / 8) {
        atomic_store(&failures_injected, 0);
        atomic_store(&countdown, n);
        one_round(path);
        atomic_store(&countdown, -1);
        rounds++;
        if (atomic_load(&failures_injected) == 0)
            break; /* the round needed fewer than n allocations: all covered */
        failed_rounds++;
    }
    /* and the agent still works after all that */
    one_round(path);
    unlink(path);
    print_message("%ld rounds, %ld with an injected allocation failure\n", rounds, failed_rounds);
    assert_true(failed_rounds > 50);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_survives_every_failed_allocation),
    };
    return cmocka_run_group_tests_name("alloc_failure", tests, NULL, NULL);
}
