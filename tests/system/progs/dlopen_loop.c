#define _GNU_SOURCE
/*
 * dlopen_loop.c — a host that loads and unloads a plugin over and over
 * while a profiler samples it (test_dlopen_dlclose_10000_cycles_at_1000hz,
 * test_dlopened_library_frames_named).  A sampler that caches module maps or
 * unwind tables must notice code that comes and goes.
 *
 *   dlopen_loop cycles N            N times: dlopen libplugin.so, dlsym
 *                                   plugin_compute, call it (~20 us of CPU),
 *                                   dlclose
 *   dlopen_loop hold SECONDS        dlopen once, spend SECONDS of CPU in
 *                                   plugin_compute, exit with it loaded
 *   dlopen_loop hold-close SECONDS  the same, then dlclose before exit: the
 *                                   code is unmapped when the profile is
 *                                   written
 * libplugin.so is looked up next to this executable (or $PLUGIN_PATH).
 * stdout: "mode=M cycles=N checksum=C"
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef uint64_t (*plugin_fn)(uint64_t, int);

static double process_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void plugin_path(char *out, size_t len)
{
    const char *env = getenv("PLUGIN_PATH");
    if (env) {
        snprintf(out, len, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0)
        n = 0;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, len, "%s/libplugin.so", slash ? exe : ".");
}

__attribute__((noinline)) static void *load_plugin(const char *path, plugin_fn *fn)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen_loop: %s\n", dlerror());
        return NULL;
    }
    *fn = (plugin_fn)dlsym(h, "plugin_compute");
    if (!*fn) {
        fprintf(stderr, "dlopen_loop: %s\n", dlerror());
        dlclose(h);
        return NULL;
    }
    return h;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: dlopen_loop cycles N | hold SECONDS | hold-close SECONDS\n");
        return 2;
    }
    char path[PATH_MAX + 32];
    plugin_path(path, sizeof path);
    uint64_t sum = 0;
    plugin_fn fn;
    if (strcmp(argv[1], "cycles") == 0) {
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++) {
            void *h = load_plugin(path, &fn);
            if (!h)
                return 1;
            sum += fn((uint64_t)i, 6000);
            if (dlclose(h) != 0) {
                fprintf(stderr, "dlopen_loop: dlclose: %s\n", dlerror());
                return 1;
            }
        }
        printf("mode=cycles cycles=%ld checksum=%llu\n", n, (unsigned long long)(sum & 0xffff));
        return 0;
    }
    if (strcmp(argv[1], "hold") == 0 || strcmp(argv[1], "hold-close") == 0) {
        double seconds = atof(argv[2]);
        void *h = load_plugin(path, &fn);
        if (!h)
            return 1;
        double start = process_cpu_seconds();
        long calls = 0;
        do {
            sum += fn(sum, 300000);
            calls++;
        } while (process_cpu_seconds() - start < seconds);
        if (strcmp(argv[1], "hold-close") == 0 && dlclose(h) != 0) {
            fprintf(stderr, "dlopen_loop: dlclose: %s\n", dlerror());
            return 1;
        }
        printf("mode=%s cycles=1 checksum=%llu\n", argv[1], (unsigned long long)(sum & 0xffff));
        return calls > 0 ? 0 : 1;
    }
    fprintf(stderr, "dlopen_loop: unknown mode '%s'\n", argv[1]);
    return 2;
}
