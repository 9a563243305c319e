/*
 * test_symbolize.c — the symbolizer (src/agent/symbolize.c) on this very
 * test binary, libc, a library dlclose'd before symbolization, inline
 * frames and mangled names.
 *
 * Module lists are built here from dl_iterate_phdr (modules.c is tested on
 * its own), the way modules.c describes them in modules.h.
 */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "symbolize.h"

/* ------------------------------------------------------------------ */
/* Module list from dl_iterate_phdr                                    */

struct modlist {
    struct module_info *mods;
    size_t n, cap;
};

static void note_build_id(const struct dl_phdr_info *info, const ElfW(Phdr) *ph, char *out)
{
    const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
    const unsigned char *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
        const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
        const unsigned char *name = p + sizeof *nh;
        const unsigned char *desc = name + ((nh->n_namesz + 3) & ~3u);
        if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(name, "GNU", 4)) {
            size_t k = 0;
            for (size_t i = 0; i < nh->n_descsz && k + 2 < 41; i++, k += 2)
                snprintf(out + k, 3, "%02x", desc[i]);
            out[k] = '\0';
            return;
        }
        p = desc + ((nh->n_descsz + 3) & ~3u);
    }
}

static int add_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct modlist *l = arg;
    struct module_info m;
    memset(&m, 0, sizeof m);
    m.start = UINTPTR_MAX;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
            if (lo < m.start) {
                m.start = lo;
                m.file_offset = ph->p_offset;
            }
            if (lo + ph->p_memsz > m.end)
                m.end = lo + ph->p_memsz;
        } else if (ph->p_type == PT_NOTE && !m.build_id[0]) {
            note_build_id(info, ph, m.build_id);
        }
    }
    if (m.start == UINTPTR_MAX)
        return 0;
    const char *name = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : "/proc/self/exe";
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->mods = realloc(l->mods, l->cap * sizeof *l->mods);
        assert_non_null(l->mods);
    }
    m.id = (uint32_t)l->n;
    m.path = strdup(name);
    m.bias = info->dlpi_addr;
    m.loaded = 1;
    l->mods[l->n++] = m;
    return 0;
}

static struct modlist current_modules(void)
{
    struct modlist l = {0};
    dl_iterate_phdr(add_module, &l);
    return l;
}

static void modlist_free(struct modlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->mods[i].path);
    free(l->mods);
}

static const char *base(const char *path)
{
    const char *s = path ? strrchr(path, '/') : NULL;
    return s ? s + 1 : path;
}

/* ------------------------------------------------------------------ */
/* Code to symbolize                                                   */

enum { TARGET_FIRST_LINE = __LINE__ + 1 };
__attribute__((noinline)) int symbolize_target_fn(volatile int *p)
{
    int s = 0;
    for (int i = 0; i < *p; i++)
        s += i * *p;
    return s;
}
enum { TARGET_LAST_LINE = __LINE__ - 1 };

enum { LEAF_FIRST_LINE = __LINE__ + 1 };
static inline __attribute__((always_inline)) int inline_leaf(volatile int *p)
{
    int v = *p;
    *p = v * 3 + 1;
    return *p ^ 0x55;
}
enum { LEAF_LAST_LINE = __LINE__ - 1 };

enum { INLINE_CALL_LINE = __LINE__ + 4 };
__attribute__((noinline)) int inline_outer(volatile int *p)
{
    int before = *p + 11;
    int r = inline_leaf(p);
    *p = before;
    return r;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_function_of_this_binary_has_name_file_and_line(void **state)
{
    (void)state;
    struct modlist l = current_modules();
    struct symbolizer *s = symbolizer_new(l.mods, l.n);
    assert_non_null(s);
    volatile int x = 3;
    assert_int_equal(symbolize_target_fn(&x), 9);

    struct sym_frame f[8];
    uintptr_t addr = (uintptr_t)&symbolize_target_fn;
    int n = symbolizer_lookup(s, addr + 1, f, 8);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].function, "symbolize_target_fn");
    assert_non_null(f[0].file);
    assert_string_equal(base(f[0].file), "test_symbolize.c");
    assert_in_range(f[0].line, TARGET_FIRST_LINE, TARGET_LAST_LINE);
    assert_non_null(f[0].module);
    assert_int_equal(f[0].inlined, 0);
    assert_true(f[0].module_index >= 0);
    const struct module_info *m = &l.mods[f[0].module_index];
    assert_int_equal(f[0].offset, addr + 1 - m->bias);

    /* The cached answer is the same. */
    struct sym_frame g[8];
    assert_int_equal(symbolizer_lookup(s, addr + 1, g, 8), 1);
    assert_ptr_equal(g[0].function, f[0].function);
    assert_int_equal(g[0].line, f[0].line);

    symbolizer_free(s);
    modlist_free(&l);
}

static void test_libc_function_is_named(void **state)
{
    (void)state;
    /* Ask libc itself: a sanitizer runtime may interpose qsort. */
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(libc);
    void *qs = dlsym(libc, "qsort");
    assert_non_null(qs);
    struct modlist l = current_modules();
    struct symbolizer *s = symbolizer_new(l.mods, l.n);
    struct sym_frame f[8];
    int n = symbolizer_lookup(s, (uintptr_t)qs, f, 8);
    assert_true(n >= 1);
    assert_string_equal(f[n - 1].function, "qsort");
    assert_non_null(strstr(f[n - 1].module, "libc"));
    symbolizer_free(s);
    modlist_free(&l);
    dlclose(libc);
}

/* libthread_db ships with libc6 and nothing loads it; RTLD_LAZY because
 * its ps_* imports are meant to come from a debugger. */
static void test_dlclosed_module_still_symbolizes(void **state)
{
    (void)state;
    void *h = dlopen("libthread_db.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!h) {
        print_message("dlopen libthread_db.so.1: %s\n", dlerror());
        skip();
    }
    void *fn = dlsym(h, "td_ta_new");
    assert_non_null(fn);
    struct modlist l = current_modules();
    dlclose(h);
    for (size_t i = 0; i < l.n; i++)
        if (strstr(l.mods[i].path, "libthread_db"))
            l.mods[i].loaded = 0;
    struct symbolizer *s = symbolizer_new(l.mods, l.n);
    struct sym_frame f[8];
    int n = symbolizer_lookup(s, (uintptr_t)fn, f, 8);
    assert_true(n >= 1);
    assert_string_equal(f[n - 1].function, "td_ta_new");
    assert_non_null(strstr(f[0].module, "libthread_db"));
    symbolizer_free(s);
    modlist_free(&l);
}

static void test_inline_frame_comes_first_with_call_line(void **state)
{
    (void)state;
    volatile int x = 5;
    (void)inline_outer(&x);
    struct modlist l = current_modules();
    struct symbolizer *s = symbolizer_new(l.mods, l.n);
    int found = 0;
    /* Walk the function's bytes until the next function begins. */
    for (size_t off = 0; off < 4096 && !found; off++) {
        struct sym_frame f[8];
        int n = symbolizer_lookup(s, (uintptr_t)&inline_outer + off, f, 8);
        assert_true(n >= 1);
        if (strcmp(f[n - 1].function, "inline_outer") != 0)
            break;
        if (n == 1)
            continue;
        found = 1;
        assert_int_equal(n, 2);
        assert_string_equal(f[0].function, "inline_leaf");
        assert_int_equal(f[0].inlined, 1);
        assert_int_equal(f[1].inlined, 0);
        assert_string_equal(base(f[0].file), "test_symbolize.c");
        assert_in_range(f[0].line, LEAF_FIRST_LINE, LEAF_LAST_LINE);
        /* The caller's line is the call site, not the leaf's line. */
        assert_string_equal(base(f[1].file), "test_symbolize.c");
        assert_int_equal(f[1].line, INLINE_CALL_LINE);
        /* max 1 keeps the innermost frame only. */
        struct sym_frame one;
        assert_int_equal(symbolizer_lookup(s, (uintptr_t)&inline_outer + off, &one, 1), 1);
        assert_string_equal(one.function, "inline_leaf");
    }
    assert_true(found);
    symbolizer_free(s);
    modlist_free(&l);
}

static void test_address_in_no_module_has_empty_name(void **state)
{
    (void)state;
    struct modlist l = current_modules();
    struct symbolizer *s = symbolizer_new(l.mods, l.n);
    struct sym_frame f[4];
    assert_int_equal(symbolizer_lookup(s, 0x10, f, 4), 1);
    assert_string_equal(f[0].function, "");
    assert_null(f[0].module);
    assert_null(f[0].file);
    assert_int_equal(f[0].line, 0);
    assert_int_equal(f[0].module_index, -1);
    assert_int_equal(symbolizer_lookup(s, 0x10, f, 0), -EINVAL);
    symbolizer_free(s);
    symbolizer_free(NULL);
    modlist_free(&l);
}

static void test_missing_module_file_keeps_module_and_offset(void **state)
{
    (void)state;
    struct module_info m;
    memset(&m, 0, sizeof m);
    m.path = "/nonexistent/libgone.so";
    m.bias = 0x7f0000000000;
    m.start = 0x7f0000001000;
    m.end = 0x7f0000009000;
    m.loaded = 0;
    struct symbolizer *s = symbolizer_new(&m, 1);
    struct sym_frame f[4];
    assert_int_equal(symbolizer_lookup(s, 0x7f0000001234, f, 4), 1);
    assert_string_equal(f[0].function, "");
    assert_string_equal(f[0].module, "/nonexistent/libgone.so");
    assert_int_equal(f[0].offset, 0x1234);
    symbolizer_free(s);
}

static void expect_demangled(const char *mangled, const char *want)
{
    char *d = symbolize_demangle(mangled);
    if (!want) {
        assert_null(d);
        return;
    }
    assert_non_null(d);
    assert_string_equal(d, want);
    free(d);
}

static void test_demangles_cpp_and_rust(void **state)
{
    (void)state;
    expect_demangled("_ZN3foo3barEi", "foo::bar(int)");
    expect_demangled("_ZNSt6vectorIiSaIiEE9push_backEOi", "std::vector<int, std::allocator<int> >::push_back(int&&)");
    /* Rust legacy: the ::h<hash> disappears. */
    expect_demangled("_ZN4core3fmt5write17h0123456789abcdefE", "core::fmt::write");
    expect_demangled("_ZN5hello4main17h8bd3df8d4c4cd1a4E", "hello::main");
    /* Rust v0. */
    expect_demangled("_RNvNtCs1234_7mycrate3foo3bar", "mycrate::foo::bar");
    expect_demangled("_RNvCs15kBYyAo9fc_7mycrate7example", "mycrate::example");
    /* Not mangled, or garbage. */
    expect_demangled("main", NULL);
    expect_demangled("_Zgarbage", NULL);
    expect_demangled("", NULL);
    expect_demangled(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_function_of_this_binary_has_name_file_and_line),
        cmocka_unit_test(test_libc_function_is_named),
        cmocka_unit_test(test_dlclosed_module_still_symbolizes),
        cmocka_unit_test(test_inline_frame_comes_first_with_call_line),
        cmocka_unit_test(test_address_in_no_module_has_empty_name),
        cmocka_unit_test(test_missing_module_file_keeps_module_and_offset),
        cmocka_unit_test(test_demangles_cpp_and_rust),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
