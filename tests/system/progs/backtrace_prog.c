#define _GNU_SOURCE
/*
 * backtrace_prog.c — glibc backtrace() and backtrace_symbols_fd() called
 * over and over while a profiler samples (test_backtrace_unchanged).
 *
 *   backtrace_prog ITERATIONS         default 20000
 *
 * backtrace() dlopens libgcc_s on first use and then walks CFI with
 * _Unwind_Backtrace — the same machinery a sampler may use — and
 * backtrace_symbols_fd() resolves names with dladdr.  Each iteration calls
 * them from bt_level_3 <- bt_level_2 <- bt_level_1 <- main (built with
 * -rdynamic, see flags.mk), writes the symbols into a memfd and checks that
 * all four names appear, innermost first.  Between calls it burns a little
 * CPU in bt_spin() so CPU sampling hits both.  Output (the same with or
 * without a profiler): "iterations=N found=N"; exit 1 if any walk missed a
 * frame.
 */
#include <execinfo.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int memfd;

__attribute__((noinline)) uint64_t bt_spin(uint64_t x)
{
    for (int i = 0; i < 20000; i++)
        x = x * 6364136223846793005ULL + 1;
    return x;
}

/* 1 if the symbol text of one walk names our frames in order. */
static int frames_in_order(const char *text)
{
    static const char *const want[] = {"(bt_level_3+", "(bt_level_2+", "(bt_level_1+", "(main+"};
    const char *at = text;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        at = strstr(at, want[i]);
        if (!at)
            return 0;
        at++;
    }
    return 1;
}

__attribute__((noinline)) int bt_level_3(void)
{
    void *pcs[64];
    int n = backtrace(pcs, 64);
    if (n <= 0)
        return 0;
    if (ftruncate(memfd, 0) < 0 || lseek(memfd, 0, SEEK_SET) < 0)
        return 0;
    backtrace_symbols_fd(pcs, n, memfd);
    static char text[16384];
    ssize_t len = pread(memfd, text, sizeof text - 1, 0);
    if (len <= 0)
        return 0;
    text[len] = '\0';
    int ok = frames_in_order(text);
    if (!ok && getenv("BT_DEBUG"))
        fprintf(stderr, "walk missed a frame:\n%s\n", text);
    return ok;
}

__attribute__((noinline)) int bt_level_2(void)
{
    int r = bt_level_3();
    __asm__ volatile("" ::: "memory"); /* not a tail call */
    return r;
}

__attribute__((noinline)) int bt_level_1(void)
{
    int r = bt_level_2();
    __asm__ volatile("" ::: "memory");
    return r;
}

int main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 20000;
    if (iterations < 1) {
        fprintf(stderr, "usage: backtrace_prog [ITERATIONS]\n");
        return 2;
    }
    memfd = memfd_create("backtrace", MFD_CLOEXEC);
    if (memfd < 0) {
        perror("memfd_create");
        return 1;
    }
    int found = 0;
    uint64_t x = 1;
    for (int i = 0; i < iterations; i++) {
        found += bt_level_1();
        x = bt_spin(x);
    }
    printf("iterations=%d found=%d\n", iterations, found);
    if (x == 42)
        printf("unlikely\n");
    return found == iterations ? 0 : 1;
}
