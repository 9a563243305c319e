/*
 * libplugin.c — a plugin loaded and unloaded with dlopen/dlclose by
 * dlopen_loop.c.  Built as $(B)/progs/libplugin.so with debug info, so a
 * profiler can name plugin_compute() and give its file:line.
 */
#include <stdint.h>

/* Some CPU, proportional to rounds (~1 us per 300 rounds). */
__attribute__((noinline, visibility("default"))) uint64_t plugin_compute(uint64_t seed, int rounds)
{
    uint64_t x = seed | 1;
    for (int i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}
