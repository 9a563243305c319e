#define _GNU_SOURCE
/*
 * deep64.c — CPU time spent 64 frames deep, for the per-sample handler cost
 * at 64 frames (SONDE_SELFTIME=1).
 *
 *   deep64 [SECONDS]          default 2: burns SECONDS of CPU in deep_leaf()
 *                             under 62 frames of deep_frame() and main
 *
 * The leaf checks the process CPU clock only every few ms so that nearly
 * every sample has the full depth.  stdout: "depth=64 checksum=C".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) uint64_t deep_leaf(uint64_t x)
{
    double end = cpu_now() + seconds;
    do {
        for (int i = 0; i < 2000000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    } while (cpu_now() < end);
    return x;
}

/* depth counts down to 1; not a tail call, so each level keeps a frame. */
__attribute__((noinline)) uint64_t deep_frame(int depth, uint64_t x)
{
    uint64_t r = depth <= 1 ? deep_leaf(x) : deep_frame(depth - 1, x + (uint64_t)depth);
    __asm__ volatile("" : "+r"(r));
    return r ^ (uint64_t)depth;
}

int main(int argc, char **argv)
{
    seconds = argc > 1 ? atof(argv[1]) : 2.0;
    if (!(seconds > 0)) {
        fprintf(stderr, "usage: deep64 [SECONDS]\n");
        return 2;
    }
    /* main + 62 deep_frame + deep_leaf = 64 frames of ours (libc's start
     * frames come on top). */
    uint64_t x = deep_frame(62, 1);
    printf("depth=64 checksum=%llu\n", (unsigned long long)(x & 0xffff));
    return 0;
}
