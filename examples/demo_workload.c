/*
 * demo_workload.c — a small CPU-bound program for `make run`: a few worker
 * threads parse, compress and checksum synthetic requests, so the profile
 * has a recognisable shape (compress_block > checksum_block >
 * parse_request).
 *
 *   demo_workload [SECONDS] [THREADS]     (default 3 s, 2 threads)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double seconds = 3.0;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static uint64_t parse_request(uint8_t *buf, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)(seed >> 56);
    }
    return seed;
}

__attribute__((noinline)) static uint64_t compress_block(const uint8_t *buf, size_t n)
{
    uint64_t h = 0;
    for (int round = 0; round < 6; round++)
        for (size_t i = 1; i < n; i++)
            h = (h << 5 | h >> 59) ^ (uint64_t)(buf[i] ^ buf[i - 1]) * 0x9e3779b97f4a7c15ull;
    return h;
}

__attribute__((noinline)) static uint32_t checksum_block(const uint8_t *buf, size_t n)
{
    uint32_t a = 1, b = 0;
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < n; i++) {
            a = (a + buf[i]) % 65521;
            b = (b + a) % 65521;
        }
    return b << 16 | a;
}

__attribute__((noinline)) static uint64_t handle_request(uint8_t *buf, size_t n, uint64_t seed)
{
    seed = parse_request(buf, n, seed);
    return compress_block(buf, n) ^ checksum_block(buf, n) ^ seed;
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg, acc = 0, requests = 0;
    uint8_t buf[4096];
    double end = now() + seconds;
    while (now() < end) {
        acc ^= handle_request(buf, sizeof buf, seed + requests);
        requests++;
    }
    printf("worker %lu: %lu requests (%016lx)\n", (unsigned long)(uintptr_t)arg, (unsigned long)requests,
           (unsigned long)acc);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 2;
    if (argc > 1)
        seconds = atof(argv[1]);
    if (argc > 2)
        threads = atoi(argv[2]);
    if (seconds <= 0 || threads < 1 || threads > 64) {
        fprintf(stderr, "usage: demo_workload [SECONDS] [THREADS 1..64]\n");
        return 2;
    }
    pthread_t th[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    return 0;
}
