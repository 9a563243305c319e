/*
 * test_sigsafe_fence.c — the fence around the signal handler's world: no
 * object file built from src/agent/sigsafe/ may call anything that is not
 * async-signal-safe (allocation, stdio, locks, the dynamic loader, exit
 * paths).  Checked on the compiled objects with `nm -u`, so it holds for
 * what the compiler actually emitted, inlined helpers included.
 * Sanitizer builds add __asan_* / __ubsan_* calls; those are allowed.
 */
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#ifndef SONDE_BUILD_DIR
#define SONDE_BUILD_DIR "build"
#endif

static const char *const banned_exact[] = {
    "malloc", "calloc", "realloc", "free", "reallocarray", "posix_memalign", "aligned_alloc",
    "memalign", "valloc", "pvalloc", "strdup", "strndup", "asprintf", "vasprintf",
    "puts", "putchar", "fputs", "fputc", "putc", "fopen", "fopen64", "fdopen", "fclose",
    "fwrite", "fread", "fflush", "fgets", "perror", "setvbuf",
    "dlopen", "dlmopen", "dlsym", "dlvsym", "dladdr", "dladdr1", "dlclose", "dlerror",
    "dlinfo", "dl_iterate_phdr", "_dl_find_object",
    "syslog", "vsyslog", "openlog", "abort", "exit", "atexit", "__assert_fail",
    "__stack_chk_fail", "qsort", "getenv", "localtime", "gmtime", "strerror",
    "pthread_once", "pthread_create", "pthread_join", "pthread_key_create",
    "pthread_getspecific", "pthread_setspecific", "pthread_getattr_np",
    "__tls_get_addr", "backtrace", "_Unwind_Backtrace",
};

static const char *const banned_prefix[] = {
    "pthread_mutex_", "pthread_rwlock_", "pthread_cond_", "pthread_spin_",
    "__cxa_", "__libc_malloc", "__libc_free", "_IO_", "__printf_chk", "__fprintf_chk",
    "__sprintf_chk", "__snprintf_chk", "__vsnprintf_chk", "__vfprintf_chk",
};

static const char *const allowed_prefix[] = {"__asan_", "__ubsan_", "__sanitizer_", "__tsan_"};

static int starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static int ends_with(const char *s, const char *p)
{
    size_t n = strlen(s), m = strlen(p);
    return n >= m && strcmp(s + n - m, p) == 0;
}

/* 1 if the undefined symbol sym may not be called from a signal handler. */
static int is_banned(const char *sym)
{
    for (size_t i = 0; i < sizeof allowed_prefix / sizeof allowed_prefix[0]; i++)
        if (starts_with(sym, allowed_prefix[i]))
            return 0;
    for (size_t i = 0; i < sizeof banned_exact / sizeof banned_exact[0]; i++)
        if (strcmp(sym, banned_exact[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof banned_prefix / sizeof banned_prefix[0]; i++)
        if (starts_with(sym, banned_prefix[i]))
            return 1;
    /* The printf family: printf, fprintf, snprintf, vsnprintf, dprintf... */
    return ends_with(sym, "printf") || ends_with(sym, "printf_chk") ||
           ends_with(sym, "scanf");
}

/* Appends "object: symbol" for every banned undefined symbol of obj to out
 * (size len); returns how many were found, -1 if nm could not run. */
static int banned_calls(const char *obj, char *out, size_t len)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "nm -u '%s' 2>&1", obj);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    char line[512];
    int found = 0, lines = 0;
    while (fgets(line, sizeof line, p)) {
        lines++;
        line[strcspn(line, "\n")] = 0;
        /* "                 U name" (possibly "name@VERSION") */
        char *sym = strrchr(line, ' ');
        sym = sym ? sym + 1 : line;
        char *at = strchr(sym, '@');
        if (at)
            *at = 0;
        if (*sym && is_banned(sym)) {
            found++;
            size_t used = strlen(out);
            snprintf(out + used, len - used, "%s: %s\n", obj, sym);
        }
    }
    int status = pclose(p);
    (void)lines;
    return status == 0 ? found : -1;
}

static void test_sigsafe_objects_call_nothing_unsafe(void **state)
{
    (void)state;
    glob_t g;
    int rc = glob(SONDE_BUILD_DIR "/obj/src/agent/sigsafe/*.o", 0, NULL, &g);
    assert_int_equal(rc, 0);
    assert_true(g.gl_pathc >= 1);
    int have_unwind = 0;
    char report[8192] = "";
    int total = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        int n = banned_calls(g.gl_pathv[i], report, sizeof report);
        if (n < 0)
            fail_msg("nm -u %s failed", g.gl_pathv[i]);
        total += n;
        have_unwind |= ends_with(g.gl_pathv[i], "/unwind.o");
    }
    globfree(&g);
    assert_true(have_unwind);
    if (total > 0)
        fail_msg("async-signal-unsafe calls in src/agent/sigsafe:\n%s", report);
}

/* The check itself: an object that calls malloc and printf is caught, one
 * that only uses its own code and sanitizer hooks passes. */
static void test_fence_catches_malloc_and_printf(void **state)
{
    (void)state;
    char dir[] = "/tmp/sonde-fence-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char src[128], obj[128], cmd[512];
    snprintf(src, sizeof src, "%s/bad.c", dir);
    snprintf(obj, sizeof obj, "%s/bad.o", dir);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs("#include <stdio.h>\n#include <stdlib.h>\n"
          "void *bad(int n) { printf(\"%d\\n\", n); return malloc((size_t)n); }\n"
          "extern void __asan_report_load8(unsigned long);\n"
          "void ok(unsigned long a) { __asan_report_load8(a); }\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -O0 -c '%s' -o '%s'", src, obj);
    assert_int_equal(system(cmd), 0);
    char report[1024] = "";
    assert_int_equal(banned_calls(obj, report, sizeof report), 2);
    assert_non_null(strstr(report, ": malloc\n"));
    assert_non_null(strstr(report, ": printf\n"));
    assert_null(strstr(report, "__asan"));
    unlink(src);
    unlink(obj);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigsafe_objects_call_nothing_unsafe),
        cmocka_unit_test(test_fence_catches_malloc_and_printf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
