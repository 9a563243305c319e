/*
 * exceptions.cc — C++ exceptions thrown and caught in a loop while a
 * profiler samples the process (test_exceptions_unchanged).
 *
 *   exceptions ITERATIONS [THREADS]      default 100000 iterations, 2 threads
 *
 * Each iteration, on every thread:
 *   - throws through five frames of our own (throw_depth_1 .. _5) and
 *     catches at the top;
 *   - catches in the middle, rethrows with `throw;` and catches again;
 *   - captures one with std::current_exception() and rethrows it later
 *     with std::rethrow_exception();
 *   - throws from a destructor-laden frame, so the unwinder runs cleanups.
 * Unwinding is where a sampler's own unwinder can collide with libgcc's
 * (the same CFI lookups, dl_iterate_phdr's lock), so the signal handler
 * runs inside _Unwind_RaiseException often.  Every count is checked; the
 * output is the same with or without a profiler:
 *   "thrown=N caught=N rethrown=N cleanups=N ok"
 */
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <pthread.h>
#include <stdexcept>
#include <string>

struct probe_error : std::runtime_error {
    int depth;
    probe_error(const std::string &what, int d) : std::runtime_error(what), depth(d) {}
};

struct counts {
    uint64_t thrown = 0, caught = 0, rethrown = 0, cleanups = 0;
};

static thread_local counts *tc;

struct cleanup_guard {
    ~cleanup_guard() { tc->cleanups++; }
};

__attribute__((noinline)) void throw_depth_5(int i)
{
    cleanup_guard g;
    tc->thrown++;
    throw probe_error("depth five", 5 + (i & 1));
}
__attribute__((noinline)) void throw_depth_4(int i) { cleanup_guard g; throw_depth_5(i); }
__attribute__((noinline)) void throw_depth_3(int i) { throw_depth_4(i); __asm__ volatile(""); }
__attribute__((noinline)) void throw_depth_2(int i) { cleanup_guard g; throw_depth_3(i); }
__attribute__((noinline)) void throw_depth_1(int i) { throw_depth_2(i); __asm__ volatile(""); }

/* Catch in the middle and rethrow the same object with `throw;`. */
__attribute__((noinline)) void rethrow_middle(int i)
{
    try {
        throw_depth_3(i);
    } catch (const probe_error &) {
        tc->rethrown++;
        throw;
    }
}

__attribute__((noinline)) std::exception_ptr capture_exception(int i)
{
    try {
        throw_depth_4(i);
    } catch (...) {
        return std::current_exception();
    }
    return nullptr;
}

__attribute__((noinline)) int exception_round(int i)
{
    int depth_sum = 0;
    try {
        throw_depth_1(i);
    } catch (const probe_error &e) {
        tc->caught++;
        depth_sum += e.depth;
    }
    try {
        rethrow_middle(i);
    } catch (const probe_error &e) {
        tc->caught++;
        depth_sum += e.depth;
    }
    std::exception_ptr p = capture_exception(i);
    try {
        tc->rethrown++;
        std::rethrow_exception(p);
    } catch (const std::runtime_error &e) {
        tc->caught++;
        depth_sum += e.what()[0] == 'd';
    }
    return depth_sum;
}

struct job {
    int iterations;
    counts c;
    uint64_t depth_sum = 0;
};

static void *run_job(void *arg)
{
    job *j = static_cast<job *>(arg);
    tc = &j->c;
    for (int i = 0; i < j->iterations; i++)
        j->depth_sum += exception_round(i);
    return nullptr;
}

int main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 100000;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    if (iterations < 1 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: exceptions [ITERATIONS [THREADS]]\n");
        return 2;
    }
    job jobs[64];
    pthread_t tids[64];
    for (int t = 0; t < threads; t++) {
        jobs[t].iterations = iterations;
        if (pthread_create(&tids[t], nullptr, run_job, &jobs[t]) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    counts total;
    uint64_t depth_sum = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tids[t], nullptr);
        total.thrown += jobs[t].c.thrown;
        total.caught += jobs[t].c.caught;
        total.rethrown += jobs[t].c.rethrown;
        total.cleanups += jobs[t].c.cleanups;
        depth_sum += jobs[t].depth_sum;
    }
    uint64_t n = (uint64_t)iterations * threads;
    /* Per iteration: 3 throws (depth_5 three times), 3 catches at the top,
     * 2 rethrows, cleanups: round 1 runs 3 guards (5, 4, 2), round 2 runs 2
     * (5, 4), round 3 runs 2 (5, 4) = 7.  Depth: 5 or 6 twice, plus 1. */
    uint64_t want_depth = 0;
    for (int i = 0; i < iterations; i++)
        want_depth += 2 * (5 + (i & 1)) + 1;
    want_depth *= threads;
    bool ok = total.thrown == 3 * n && total.caught == 3 * n && total.rethrown == 2 * n &&
              total.cleanups == 7 * n && depth_sum == want_depth;
    printf("thrown=%llu caught=%llu rethrown=%llu cleanups=%llu %s\n",
           (unsigned long long)total.thrown, (unsigned long long)total.caught,
           (unsigned long long)total.rethrown, (unsigned long long)total.cleanups,
           ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
}
