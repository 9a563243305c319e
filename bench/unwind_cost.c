#define _GNU_SOURCE
/*
 * unwind_cost.c — what one stack walk costs the signal handler, measured on
 * the real walker (sigsafe/unwind.c) over the real tables modules_init()
 * publishes, and what the agent thread's periodic modules_refresh() costs
 * when no module was loaded or unloaded.
 *
 *   unwind_cost [WALKS]       default 20000 timed walks per figure
 *
 * Walks start in a leaf under a recursion of frameless() -- built without
 * frame pointers, so every step needs the unwind rows -- and are cut at 20
 * and at 64 frames.  A second recursion goes through libc's qsort at every
 * level (its frames have no frame pointers either, and libc's table is the
 * largest one a typical process has), so each step changes module and
 * searches a big table.  Each walk is timed alone with the TSC (the timer's
 * own cost subtracted).  Walks repeated back to back run with warm caches
 * and trained branch predictors, which flatters them: the handler runs
 * after the program has had the CPU for milliseconds.  So the 64-frame
 * walks are timed again ("_cold") with 32 MiB of other memory read
 * between walks, and then the stack (hot when a signal interrupts a
 * thread) read again.  modules_refresh() is timed in batches of 100 calls.
 * stdout, one line per figure:
 *
 *   unwind_20_frames_ns_median=M p99=P
 *   unwind_64_frames_ns_median=M p99=P
 *   unwind_64_frames_cold_ns_median=M p99=P
 *   unwind_64_frames_libc_ns_median=M p99=P
 *   unwind_64_frames_libc_cold_ns_median=M p99=P
 *   modules_refresh_unchanged_ns_median=M p99=P
 *
 * Built by the Makefile with the agent's internals linked in (bench/
 * flags.mk: BENCH_FLAGS_unwind_cost / BENCH_LIBS_unwind_cost); without
 * them it builds a stub that says so and exits 2.  A machine with other
 * load gives noisy p99s: compare medians.
 */
#if __has_include("sigsafe/unwind.h")

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "modules.h"
#include "sigsafe/unwind.h"

#define DEPTH 80 /* recursion levels: more than the longest walk needs */
#define COLD_WALKS 300
#define EVICT_BYTES (32u << 20)
#define STACK_WARM_BYTES (32u << 10) /* more than 64 frames of the recursions use */

static int nwalks = 20000;
static double ns_per_tick;
static uint64_t timer_ticks; /* the median cost of an empty measurement */

static inline uint64_t ticks_begin(void)
{
    _mm_lfence();
    return __rdtsc();
}

static inline uint64_t ticks_end(void)
{
    unsigned aux;
    uint64_t t = __rdtscp(&aux);
    _mm_lfence();
    return t;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t quantile(uint64_t *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    int k = (int)(q * (n - 1) + 0.5);
    return v[k];
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void calibrate(void)
{
    double t0 = now_s();
    uint64_t c0 = __rdtsc();
    while (now_s() - t0 < 0.1)
        ;
    double t1 = now_s();
    uint64_t c1 = __rdtsc();
    ns_per_tick = (t1 - t0) * 1e9 / (double)(c1 - c0);

    static uint64_t v[20000];
    for (int i = 0; i < 20000; i++) {
        uint64_t a = ticks_begin();
        v[i] = ticks_end() - a;
    }
    timer_ticks = quantile(v, 20000, 0.5);
}

static void print_figure(const char *name, uint64_t *ticks, int n)
{
    for (int i = 0; i < n; i++)
        ticks[i] = ticks[i] > timer_ticks ? ticks[i] - timer_ticks : 0;
    double med = (double)quantile(ticks, n, 0.5) * ns_per_tick;
    double p99 = (double)quantile(ticks, n, 0.99) * ns_per_tick;
    printf("%s_ns_median=%.0f p99=%.0f\n", name, med, p99);
}

static struct unwind_stack own_stack(void)
{
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) != 0 ||
        pthread_attr_getstack(&a, &addr, &size) != 0) {
        fprintf(stderr, "unwind_cost: cannot find the stack\n");
        exit(1);
    }
    pthread_attr_destroy(&a);
    return (struct unwind_stack){(uintptr_t)addr, (uintptr_t)addr + size, 0};
}

/* The functions whose frames fill the walks live in sections of their own,
 * so the linker's __start_/__stop_ symbols bound them for the checks. */
extern const char __start_unwind_cost_rec[], __stop_unwind_cost_rec[];

static int in_rec(uintptr_t pc)
{
    return pc >= (uintptr_t)__start_unwind_cost_rec && pc < (uintptr_t)__stop_unwind_cost_rec;
}

/* Reads EVICT_BYTES of other memory: the caches then hold none of the
 * tables (reads, so that no write-back traffic overlaps the walk). */
static void evict_caches(void)
{
    static const volatile uint8_t *junk;
    if (junk == NULL) {
        uint8_t *p = malloc(EVICT_BYTES);
        if (p == NULL)
            exit(1);
        memset(p, 1, EVICT_BYTES);
        junk = p;
    }
    uint8_t sum = 0;
    for (size_t i = 0; i < EVICT_BYTES; i += 64)
        sum += junk[i];
    __asm__ volatile("" : : "r"(sum) : "memory");
}

/* Reads the stack the walk will read: the handler interrupts a thread
 * whose stack is in the cache, while our tables, after milliseconds of the
 * program's own work, are not. */
__attribute__((no_sanitize("address"))) /* other frames' redzones */
static void warm_stack(const struct unwind_regs *r, const struct unwind_stack *stk)
{
    uintptr_t sum = 0;
    for (uintptr_t a = r->sp & ~(uintptr_t)7; a < stk->hi && a < r->sp + STACK_WARM_BYTES; a += 8)
        sum += *(const volatile uintptr_t *)a;
    __asm__ volatile("" : : "r"(sum) : "memory");
}

/* Times nwalks walks of at most max frames from the caller's own frame
 * (and COLD_WALKS after evicting the caches, if cold); checks that each
 * gives max frames, min_rec of them in the recursion. */
static __attribute__((noinline)) void time_walks(const char *name, int max, int min_rec, int cold)
{
    struct unwind_regs r;
    __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2"
                     : "=r"(r.pc), "=r"(r.sp), "=r"(r.fp));
    r.fp_known = 1;
    struct unwind_stack stk = own_stack();
    uintptr_t pcs[UNWIND_MAX_FRAMES];
    int trunc;

    int n = unwind_walk(&r, &stk, pcs, max, &trunc);
    int rec = 0;
    for (int i = 0; i < n; i++)
        rec += in_rec(pcs[i]);
    if (n != max || rec < min_rec) {
        fprintf(stderr, "unwind_cost: %s: walk gave %d frames (%d in the recursion), want %d\n",
                name, n, rec, max);
        exit(1);
    }

    uint64_t *ticks = malloc((size_t)nwalks * sizeof *ticks);
    if (ticks == NULL)
        exit(1);
    for (int i = 0; i < nwalks / 10; i++) /* warm the caches and predictors */
        unwind_walk(&r, &stk, pcs, max, &trunc);
    for (int i = 0; i < nwalks; i++) {
        uint64_t t0 = ticks_begin();
        unwind_walk(&r, &stk, pcs, max, &trunc);
        ticks[i] = ticks_end() - t0;
    }
    print_figure(name, ticks, nwalks);
    if (cold) {
        for (int i = 0; i < COLD_WALKS; i++) {
            evict_caches();
            warm_stack(&r, &stk);
            uint64_t t0 = ticks_begin();
            unwind_walk(&r, &stk, pcs, max, &trunc);
            ticks[i] = ticks_end() - t0;
        }
        char cold_name[64];
        snprintf(cold_name, sizeof cold_name, "%s_cold", name);
        print_figure(cold_name, ticks, COLD_WALKS);
    }
    free(ticks);
}

static void measure_own(void)
{
    time_walks("unwind_20_frames", 20, 19, 0);
    time_walks("unwind_64_frames", 64, 63, 1);
}

/* Frameless recursion: -fomit-frame-pointer whatever the build's flags,
 * and a local array so that each frame has a real CFA offset. */
__attribute__((noinline, optimize("omit-frame-pointer"), section("unwind_cost_rec"))) static int
frameless(int depth)
{
    volatile int pad[4] = {depth};
    if (depth > 0)
        return frameless(depth - 1) + pad[0]; /* not a tail call */
    measure_own();
    return pad[0];
}

/* Recursion through qsort: each level sorts two ints, and the one
 * comparison qsort makes goes one level deeper. */
static int qsort_depth;

static void via_qsort(int depth);

__attribute__((noinline, optimize("omit-frame-pointer"), section("unwind_cost_rec"))) static int
cmp_deeper(const void *a, const void *b)
{
    if (qsort_depth > 0)
        via_qsort(qsort_depth - 1);
    qsort_depth = -1; /* the deepest level measured; the rest just compare */
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

__attribute__((noinline, optimize("omit-frame-pointer"), section("unwind_cost_rec"))) static void
via_qsort(int depth)
{
    volatile int v[2] = {2, 1};
    if (depth == 0) {
        time_walks("unwind_64_frames_libc", 64, 20, 1);
        return;
    }
    qsort_depth = depth;
    qsort((int *)v, 2, sizeof v[0], cmp_deeper);
}

/* modules_refresh() costs about as much as the timer itself: timed in
 * batches of REFRESH_BATCH calls, each figure per call. */
#define REFRESH_BATCH 100

static void measure_refresh(void)
{
    int nbatches = nwalks / REFRESH_BATCH > 100 ? nwalks / REFRESH_BATCH : 100;
    uint64_t *ticks = malloc((size_t)nbatches * sizeof *ticks);
    if (ticks == NULL)
        exit(1);
    for (int i = 0; i < 1000; i++)
        modules_refresh();
    for (int i = 0; i < nbatches; i++) {
        int rc = 0;
        uint64_t t0 = ticks_begin();
        for (int k = 0; k < REFRESH_BATCH; k++)
            rc |= modules_refresh();
        ticks[i] = ticks_end() - t0;
        if (rc != 0) {
            fprintf(stderr, "unwind_cost: modules_refresh: %d\n", rc);
            exit(1);
        }
    }
    for (int i = 0; i < nbatches; i++) /* per call, the timer's cost shared out */
        ticks[i] = (ticks[i] - timer_ticks) / REFRESH_BATCH + timer_ticks;
    print_figure("modules_refresh_unchanged", ticks, nbatches);
    free(ticks);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        nwalks = atoi(argv[1]);
    if (nwalks < 100) {
        fprintf(stderr, "usage: unwind_cost [WALKS >= 100]\n");
        return 2;
    }
    int rc = modules_init();
    if (rc != 0) {
        fprintf(stderr, "unwind_cost: modules_init: %d\n", rc);
        return 1;
    }
    calibrate();
    frameless(DEPTH);
    via_qsort(DEPTH);
    measure_refresh();
    modules_shutdown();
    return 0;
}

#else /* built without the agent's headers */

#include <stdio.h>

int main(void)
{
    fprintf(stderr, "unwind_cost: built without BENCH_FLAGS_unwind_cost (see bench/flags.mk)\n");
    return 2;
}

#endif
