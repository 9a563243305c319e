#define _GNU_SOURCE
/*
 * qsort_cmp.c — CPU time spent in a comparator called back from libc's
 * qsort(), used by test_qsort_comparator_stack_is_complete.
 *
 *   qsort_cmp SECONDS      sorts arrays of 100,000 items with qsort() and
 *                          compare_items() until the process has used
 *                          SECONDS of CPU time
 *
 * The interesting frames are inside libc (qsort_r, msort_with_tmp), which
 * Debian builds without frame pointers: a profiler that only walks frame
 * pointers loses main() and everything above qsort.  qsort_cmp_nofp.c
 * builds this same file with -O2 -fomit-frame-pointer (see flags.mk), so
 * the program's own frames have no frame pointers either.
 *
 * stdout: "sorted=N rounds=R checksum=C" (N items checked in order).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#define ITEMS 100000

struct item {
    uint64_t key;
    uint32_t tie;
    uint32_t payload;
};

/* The hot callback.  A little more than a compare so that most samples land
 * here rather than in libc's merge loop. */
__attribute__((noinline)) int compare_items(const void *pa, const void *pb)
{
    const struct item *a = pa, *b = pb;
    uint64_t ka = a->key, kb = b->key;
    for (int i = 0; i < 8; i++) { /* a keyed mix, the same for both sides */
        ka = (ka ^ (ka >> 29)) * 0xBF58476D1CE4E5B9ULL;
        kb = (kb ^ (kb >> 29)) * 0xBF58476D1CE4E5B9ULL;
    }
    if (ka != kb)
        return ka < kb ? -1 : 1;
    return (a->tie > b->tie) - (a->tie < b->tie);
}

static double process_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static void fill_items(struct item *v, size_t n, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        v[i].key = *seed >> 20;
        v[i].tie = (uint32_t)i;
        v[i].payload = (uint32_t)(*seed >> 7);
    }
}

__attribute__((noinline)) static size_t sort_round(struct item *v, size_t n, uint64_t *seed)
{
    fill_items(v, n, seed);
    qsort(v, n, sizeof *v, compare_items);
    size_t ok = 1;
    for (size_t i = 1; i < n; i++)
        ok += compare_items(&v[i - 1], &v[i]) <= 0;
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 2 || !(atof(argv[1]) > 0)) {
        fprintf(stderr, "usage: qsort_cmp SECONDS\n");
        return 2;
    }
    double seconds = atof(argv[1]);
    struct item *v = malloc(ITEMS * sizeof *v);
    if (!v) {
        perror("malloc");
        return 1;
    }
    uint64_t seed = 42, checksum = 0;
    unsigned rounds = 0;
    size_t sorted = 0;
    double start = process_cpu_seconds();
    do {
        sorted = sort_round(v, ITEMS, &seed);
        checksum ^= v[ITEMS / 2].key;
        rounds++;
        if (sorted != ITEMS) {
            fprintf(stderr, "qsort_cmp: array not sorted (%zu of %d in order)\n", sorted, ITEMS);
            return 1;
        }
    } while (process_cpu_seconds() - start < seconds);
    printf("sorted=%zu rounds=%u checksum=%llu\n", sorted, rounds,
           (unsigned long long)(checksum & 0xffffff));
    free(v);
    return 0;
}
