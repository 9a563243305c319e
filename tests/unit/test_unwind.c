/*
 * test_unwind.c — the unwind tables (eh_frame.c, unwind_table.c), the
 * async-signal-safe walker (sigsafe/unwind.c) and the module list that
 * publishes the tables (modules.c): rows from a hand-assembled .eh_frame
 * and from this process's own modules, the .plt rule of every binutils
 * layout (and of a real IBT library), the row index against a full search,
 * real walks through libc (no frame pointers; a frame over 32 KiB) and
 * through frameless and frame-pointer code, the rbp guess for blocked
 * threads, fuzzed .eh_frame images, garbage stacks behind guard pages, and
 * dlopen/dlclose picked up by modules_refresh() -- and only by it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <printf.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>
#include <cmocka.h>

#include "modules.h"
#include "sigsafe/unwind.h"
#include "unwind_table.h"

/* ---- helpers ------------------------------------------------------------- */

/* Bounds of the calling thread's stack. */
static struct unwind_stack own_stack(void)
{
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    assert_int_equal(pthread_getattr_np(pthread_self(), &a), 0);
    assert_int_equal(pthread_attr_getstack(&a, &addr, &size), 0);
    pthread_attr_destroy(&a);
    return (struct unwind_stack){(uintptr_t)addr, (uintptr_t)addr + size, 0};
}

/* This function's own pc, sp and rbp, at the point of use. */
#define CAPTURE_REGS(r)                                                                     \
    do {                                                                                   \
        __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2"             \
                         : "=r"((r)->pc), "=r"((r)->sp), "=r"((r)->fp));                   \
        (r)->fp_known = 1;                                                                 \
    } while (0)

struct walk_result {
    uintptr_t pcs[UNWIND_MAX_FRAMES];
    int n, truncated;
};

static int count_in(const struct walk_result *w, const void *lo, const void *hi)
{
    int k = 0;
    for (int i = 0; i < w->n; i++)
        k += w->pcs[i] >= (uintptr_t)lo && w->pcs[i] < (uintptr_t)hi;
    return k;
}

static int count_in_file(const struct walk_result *w, const char *needle)
{
    int k = 0;
    for (int i = 0; i < w->n; i++) {
        Dl_info di;
        if (dladdr((void *)w->pcs[i], &di) && di.dli_fname && strstr(di.dli_fname, needle))
            k++;
    }
    return k;
}

/* A function's address in libc itself (dlsym(RTLD_DEFAULT) may give a
 * sanitizer's interceptor instead). */
static uintptr_t libc_sym(const char *name)
{
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(h);
    uintptr_t p = (uintptr_t)dlsym(h, name);
    dlclose(h);
    assert_true(p != 0);
    return p;
}

static const char *file_of(uintptr_t pc)
{
    Dl_info di;
    return dladdr((void *)pc, &di) && di.dli_fname ? di.dli_fname : "";
}

/* A byte image being assembled, with pcrel pointers computed against the
 * address the image pretends to be loaded at. */
struct image {
    uint8_t b[1024];
    size_t n;
    uintptr_t addr;
};

static void put8(struct image *im, uint8_t v)
{
    assert_true(im->n < sizeof im->b);
    im->b[im->n++] = v;
}

static void put32(struct image *im, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        put8(im, (uint8_t)(v >> (8 * i)));
}

static void put_bytes(struct image *im, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put8(im, ((const uint8_t *)p)[i]);
}

static void put_pcrel(struct image *im, uintptr_t target)
{
    put32(im, (uint32_t)(target - (im->addr + im->n)));
}

static size_t record_begin(struct image *im)
{
    size_t at = im->n;
    put32(im, 0);
    return at;
}

static void record_end(struct image *im, size_t at)
{
    while ((im->n - at) % 4 != 0)
        put8(im, 0); /* DW_CFA_nop */
    uint32_t len = (uint32_t)(im->n - at - 4);
    memcpy(im->b + at, &len, 4);
}

/* A CIE with code alignment 1, RA column 16, CFA = rsp + 8, RA at CFA - 8,
 * and the given data alignment and augmentation data. */
static size_t put_cie(struct image *im, const char *aug, int8_t data_align, const uint8_t *augdata,
                      size_t auglen)
{
    size_t at = record_begin(im);
    put32(im, 0); /* CIE id */
    put8(im, 1);  /* version */
    put_bytes(im, aug, strlen(aug) + 1);
    put8(im, 1);                               /* code alignment */
    put8(im, (uint8_t)(data_align & 0x7f));    /* data alignment, 1-byte sleb */
    put8(im, 16);                              /* RA column */
    put8(im, (uint8_t)auglen);
    put_bytes(im, augdata, auglen);
    put_bytes(im, "\x0c\x07\x08\x90\x01", 5); /* def_cfa rsp 8; offset r16 cfa-8 */
    record_end(im, at);
    return at;
}

static void put_fde(struct image *im, size_t cie, uintptr_t pc, uint32_t range, const uint8_t *aug,
                    size_t auglen, const uint8_t *insns, size_t n)
{
    size_t at = record_begin(im);
    put32(im, (uint32_t)(im->n - cie)); /* CIE pointer, back from this field */
    put_pcrel(im, pc);
    put32(im, range);
    put8(im, (uint8_t)auglen);
    put_bytes(im, aug, auglen);
    put_bytes(im, insns, n);
    record_end(im, at);
}

#define IMAGE_ADDR 0x100000u

/* The hand-assembled .eh_frame the table tests and the fuzzer start from. */
static void build_image(struct image *im)
{
    memset(im, 0, sizeof *im);
    im->addr = IMAGE_ADDR;

    static const uint8_t zr[] = {0x1b}; /* FDE pointers: pcrel sdata4 */
    size_t cie1 = put_cie(im, "zR", -8, zr, sizeof zr);

    /* A: push rbp; mov rbp,rsp; ...; remember/restore state around an
     * epilogue in the middle of the function. */
    static const uint8_t a[] = {
        0x41,             /* advance 1 */
        0x0e, 0x10,       /* def_cfa_offset 16 */
        0x86, 0x02,       /* offset rbp at cfa-16 */
        0x43,             /* advance 3 */
        0x0d, 0x06,       /* def_cfa_register rbp */
        0x02, 0x20,       /* advance_loc1 0x20 */
        0x0a,             /* remember_state */
        0x0c, 0x07, 0x08, /* def_cfa rsp 8 */
        0xc6,             /* restore rbp */
        0x41,             /* advance 1 */
        0x0b,             /* restore_state */
    };
    put_fde(im, cie1, 0x1000, 0x40, NULL, 0, a, sizeof a);

    /* B, through a "zPLR" CIE: an indirect pcrel personality pointer that
     * points nowhere (must be skipped, not read) and an LSDA pointer. */
    static const uint8_t plr[] = {0x9b, 0xef, 0xbe, 0xad, 0xde, 0x1b, 0x1b};
    size_t cie2 = put_cie(im, "zPLR", -8, plr, sizeof plr);
    static const uint8_t lsda[] = {0x11, 0x22, 0x33, 0x44};
    static const uint8_t b[] = {
        0x41,             /* advance 1 */
        0x13, 0x7d,       /* def_cfa_offset_sf -3 (x -8 = 24) */
        0x42,             /* advance 2 */
        0x11, 0x06, 0x03, /* offset_extended_sf rbp 3 (x -8 = cfa-24) */
        0x2e, 0x10,       /* GNU_args_size 16 */
        0x45,             /* advance 5 */
        0x08, 0x06,       /* same_value rbp */
        0x00,             /* nop */
    };
    put_fde(im, cie2, 0x1040, 0x30, lsda, sizeof lsda, b, sizeof b);

    /* C: a .plt as binutils describes it. */
    static const uint8_t c[] = {
        0x0e, 0x10, 0x46, 0x0e, 0x18, 0x4a, 0x0f, 0x0b, 0x77, 0x08, 0x80,
        0x00, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22,
    };
    put_fde(im, cie1, 0x2000, 0x40, NULL, 0, c, sizeof c);

    /* D: _start: the return address is undefined. */
    static const uint8_t d[] = {0x07, 0x10};
    put_fde(im, cie1, 0x3000, 0x10, NULL, 0, d, sizeof d);

    /* E: stack realignment, CFA = *(rbp - 8): an expression we do not
     * follow. */
    static const uint8_t e[] = {0x44, 0x0f, 0x03, 0x76, 0x78, 0x06};
    put_fde(im, cie1, 0x4000, 0x10, NULL, 0, e, sizeof e);

    /* F, through a CIE with data alignment -4: not x86-64, skipped. */
    size_t cie3 = put_cie(im, "zR", -4, zr, sizeof zr);
    static const uint8_t f[] = {0x41, 0x0e, 0x10};
    put_fde(im, cie3, 0x5000, 0x10, NULL, 0, f, sizeof f);

    /* G: a frame over 32 KiB, as in libc's wide printf to an unbuffered
     * stream: CFA = rsp + 33360, rbp at CFA - 33352. */
    static const uint8_t g[] = {
        0x41,             /* advance 1 */
        0x0e, 0xd0, 0x84, 0x02, /* def_cfa_offset 33360 */
        0x86, 0xc9, 0x20, /* offset rbp at cfa-8*4169 */
    };
    put_fde(im, cie1, 0x6000, 0x10, NULL, 0, g, sizeof g);

    put32(im, 0); /* terminator */
}

#define ROW(pc, c, co, f, fo) {(pc), (co), (fo), (c), (f), 0, 0}
#define GAP(pc) {(pc), 0, 0, UNWIND_CFA_UNDEF, UNWIND_FP_SAME, UNWIND_ROW_GAP, 0}

/* ---- tables -------------------------------------------------------------- */

static void test_hand_assembled_eh_frame_gives_expected_rows(void **state)
{
    (void)state;
    struct image im;
    build_image(&im);
    static const struct unwind_row want[] = {
        ROW(0x1000, UNWIND_CFA_SP, 8, UNWIND_FP_SAME, 0),
        ROW(0x1001, UNWIND_CFA_SP, 16, UNWIND_FP_AT_CFA, -16),
        ROW(0x1004, UNWIND_CFA_FP, 16, UNWIND_FP_AT_CFA, -16),
        ROW(0x1024, UNWIND_CFA_SP, 8, UNWIND_FP_SAME, 0),      /* inside remember */
        ROW(0x1025, UNWIND_CFA_FP, 16, UNWIND_FP_AT_CFA, -16), /* restore_state */
        ROW(0x1040, UNWIND_CFA_SP, 8, UNWIND_FP_SAME, 0),      /* B: no gap before */
        ROW(0x1041, UNWIND_CFA_SP, 24, UNWIND_FP_SAME, 0),
        ROW(0x1043, UNWIND_CFA_SP, 24, UNWIND_FP_AT_CFA, -24),
        ROW(0x1048, UNWIND_CFA_SP, 24, UNWIND_FP_SAME, 0),
        GAP(0x1070),
        ROW(0x2000, UNWIND_CFA_SP, 16, UNWIND_FP_SAME, 0),
        ROW(0x2006, UNWIND_CFA_SP, 24, UNWIND_FP_SAME, 0),
        ROW(0x2010, UNWIND_CFA_PLT, 11, UNWIND_FP_SAME, 0), /* push done at 11 */
        GAP(0x2040),
        ROW(0x3000, UNWIND_CFA_UNDEF, 0, UNWIND_FP_SAME, 0),
        GAP(0x3010),
        ROW(0x4000, UNWIND_CFA_SP, 8, UNWIND_FP_SAME, 0),
        ROW(0x4004, UNWIND_CFA_UNDEF, 0, UNWIND_FP_SAME, 0),
        GAP(0x4010),
        ROW(0x6000, UNWIND_CFA_SP, 8, UNWIND_FP_SAME, 0),
        ROW(0x6001, UNWIND_CFA_SP, 33360, UNWIND_FP_AT_CFA, -33352),
        GAP(0x6010),
    };
    struct unwind_row *rows;
    size_t n;
    assert_int_equal(unwind_table_from_eh_frame(im.b, im.n, im.addr, 0, &rows, &n), 0);
    for (size_t i = 0; i < n && i < sizeof want / sizeof want[0]; i++) {
        const struct unwind_row *g = &rows[i], *w = &want[i];
        if (g->pc_off != w->pc_off || g->cfa != w->cfa || g->cfa_off != w->cfa_off ||
            g->fp != w->fp || g->fp_off != w->fp_off || g->flags != w->flags)
            fail_msg("row %zu: got pc %#x cfa %d%+d fp %d%+d flags %d, want pc %#x cfa %d%+d "
                     "fp %d%+d flags %d", i, g->pc_off, g->cfa, g->cfa_off, g->fp, g->fp_off,
                     g->flags, w->pc_off, w->cfa, w->cfa_off, w->fp, w->fp_off, w->flags);
    }
    assert_int_equal(n, sizeof want / sizeof want[0]);

    /* The lookups the walker makes. */
    struct unwind_module m = {.lo = 0x1000, .hi = 0x7000, .bias = 0, .rows = rows,
                              .nrows = (uint32_t)n};
    assert_null(unwind_find_row(&m, 0xfff));
    assert_int_equal(unwind_find_row(&m, 0x1010)->cfa, UNWIND_CFA_FP);
    assert_int_equal(unwind_find_row(&m, 0x106f)->cfa_off, 24);
    assert_null(unwind_find_row(&m, 0x1070));  /* gap */
    assert_null(unwind_find_row(&m, 0x5008));  /* skipped FDE */
    assert_null(unwind_find_row(&m, 0x9000));  /* past the end */
    assert_int_equal(unwind_find_row(&m, 0x203f)->cfa, UNWIND_CFA_PLT);
    assert_int_equal(unwind_find_row(&m, 0x6008)->cfa_off, 33360);
    /* The same through the index. */
    uint32_t *index;
    assert_int_equal(unwind_table_index(rows, n, &index, &m.nindex), 0);
    assert_non_null(index);
    m.index = index;
    assert_null(unwind_find_row(&m, 0xfff));
    assert_int_equal(unwind_find_row(&m, 0x1010)->cfa, UNWIND_CFA_FP);
    assert_int_equal(unwind_find_row(&m, 0x106f)->cfa_off, 24);
    assert_null(unwind_find_row(&m, 0x1070));
    assert_null(unwind_find_row(&m, 0x5008));
    assert_null(unwind_find_row(&m, 0x9000));
    assert_int_equal(unwind_find_row(&m, 0x203f)->cfa, UNWIND_CFA_PLT);
    assert_int_equal(unwind_find_row(&m, 0x6008)->cfa_off, 33360);
    free(index);
    free(rows);
}

static void test_bias_is_subtracted_and_out_of_range_fdes_are_dropped(void **state)
{
    (void)state;
    struct image im;
    build_image(&im);
    struct unwind_row *rows;
    size_t n;
    /* Bias 0x2000: FDEs A and B start below it and are dropped. */
    assert_int_equal(unwind_table_from_eh_frame(im.b, im.n, im.addr, 0x2000, &rows, &n), 0);
    assert_true(n > 0);
    assert_int_equal(rows[0].pc_off, 0);
    assert_int_equal(rows[0].cfa_off, 16);
    free(rows);
}

static void test_malformed_eh_frame_is_rejected(void **state)
{
    (void)state;
    struct image im;
    build_image(&im);
    struct unwind_row *rows = (void *)1;
    size_t n = 1;
    /* A record length running past the end. */
    uint8_t bad[64];
    memcpy(bad, im.b, sizeof bad);
    bad[0] = 0xff;
    assert_int_equal(unwind_table_from_eh_frame(bad, sizeof bad, im.addr, 0, &rows, &n), -EINVAL);
    assert_null(rows);
    assert_int_equal(n, 0);
    /* Cut inside the first FDE. */
    assert_int_equal(unwind_table_from_eh_frame(im.b, 40, im.addr, 0, &rows, &n), -EINVAL);
    /* restore_state with nothing remembered. */
    struct image bad2 = {.addr = IMAGE_ADDR};
    static const uint8_t zr[] = {0x1b}, insns[] = {0x0b};
    size_t cie = put_cie(&bad2, "zR", -8, zr, 1);
    put_fde(&bad2, cie, 0x1000, 0x10, NULL, 0, insns, sizeof insns);
    assert_int_equal(unwind_table_from_eh_frame(bad2.b, bad2.n, bad2.addr, 0, &rows, &n), -EINVAL);
    /* An empty section is fine. */
    assert_int_equal(unwind_table_from_eh_frame(im.b, 0, im.addr, 0, &rows, &n), 0);
    assert_int_equal(n, 0);
}

struct find_lib {
    const char *needle;
    struct dl_phdr_info info;
    int found;
};

static int find_lib_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct find_lib *f = arg;
    if (info->dlpi_name && strstr(info->dlpi_name, f->needle)) {
        f->info = *info;
        f->found = 1;
        return 1;
    }
    return 0;
}

static void test_libc_table_covers_qsort_with_sorted_rows(void **state)
{
    (void)state;
    struct find_lib f = {.needle = "libc.so.6"};
    dl_iterate_phdr(find_lib_cb, &f);
    assert_true(f.found);
    struct unwind_row *rows;
    size_t n;
    assert_int_equal(unwind_table_build(&f.info, &rows, &n), 0);
    assert_true(n > 1000); /* libc: tens of thousands */
    for (size_t i = 1; i < n; i++)
        assert_true(rows[i - 1].pc_off < rows[i].pc_off);
    struct unwind_module m = {.bias = f.info.dlpi_addr, .rows = rows, .nrows = (uint32_t)n};
    /* qsort's entry: CFA = rsp + 8, like every function's first byte. */
    uintptr_t q = libc_sym("qsort");
    const struct unwind_row *r = unwind_find_row(&m, q);
    assert_non_null(r);
    assert_int_equal(r->cfa, UNWIND_CFA_SP);
    assert_int_equal(r->cfa_off, 8);
    free(rows);
}

/* A lazy .plt's FDE as binutils writes it, with the push done at offset n
 * of each 16-byte entry (DW_OP_lit<n> in the CFA expression). */
static void put_plt_fde(struct image *im, size_t cie, uintptr_t pc, uint8_t n)
{
    const uint8_t insns[] = {
        0x0e, 0x10, 0x46, 0x0e, 0x18, 0x4a, /* PLT0: cfa rsp+16, at +6 rsp+24 */
        0x0f, 0x0b, 0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, (uint8_t)(0x30 + n), 0x2a, 0x33,
        0x24, 0x22, /* from +16: rsp + 8 + (((rip & 15) >= n) << 3) */
    };
    put_fde(im, cie, pc, 0x40, NULL, 0, insns, sizeof insns);
}

/* The walker's view of one fake module of rows, for walks on fake stacks. */
struct fake_set {
    struct unwind_set set;
    struct unwind_module mod;
};

static void test_plt_rule_of_every_binutils_layout_is_followed(void **state)
{
    (void)state;
    static const struct {
        const char *layout;
        uint8_t push_done_at;
    } layouts[] = {{"classic", 11}, {"IBT", 9}, {"MPX", 5}, {"IBT+MPX", 10}};
    const size_t nlayouts = sizeof layouts / sizeof layouts[0];
    struct image im = {.addr = IMAGE_ADDR};
    static const uint8_t zr[] = {0x1b};
    size_t cie = put_cie(&im, "zR", -8, zr, sizeof zr);
    for (size_t i = 0; i < nlayouts; i++)
        put_plt_fde(&im, cie, 0x1000 + 0x100 * i, layouts[i].push_done_at);
    put32(&im, 0);
    struct unwind_row *rows;
    size_t n;
    assert_int_equal(unwind_table_from_eh_frame(im.b, im.n, im.addr, 0, &rows, &n), 0);

    struct fake_set fake = {{.nmodules = 1},
                            {.lo = 0x1000, .hi = 0x2000, .rows = rows, .nrows = (uint32_t)n}};
    /* The stack in a .plt entry: the pushed relocation index (once pushed),
     * then the return address into the caller. */
    uintptr_t stack[4] = {0x7, 0x1f00, 0x1f80, 0};
    struct unwind_stack stk = {(uintptr_t)stack, (uintptr_t)(stack + 4), 0};
    struct unwind_set *saved = atomic_exchange(&unwind_current, &fake.set);
    for (size_t i = 0; i < nlayouts; i++) {
        uintptr_t entry = 0x1000 + 0x100 * i + 0x10; /* the first entry after PLT0 */
        uint8_t at = layouts[i].push_done_at;
        const struct unwind_row *r = unwind_find_row(&fake.mod, entry + 2);
        if (r == NULL || r->cfa != UNWIND_CFA_PLT || r->cfa_off != at) {
            atomic_store(&unwind_current, saved);
            fail_msg("%s .plt: no PLT row with push offset %d", layouts[i].layout, at);
        }
        uintptr_t before[4], after[4];
        struct unwind_regs rb = {.pc = entry + at - 1, .sp = (uintptr_t)(stack + 1)};
        struct unwind_regs ra = {.pc = entry + at, .sp = (uintptr_t)stack};
        int trunc;
        int nb = unwind_walk(&rb, &stk, before, 4, &trunc);
        int na = unwind_walk(&ra, &stk, after, 4, &trunc);
        if (nb < 2 || before[1] != 0x1f00 || na < 2 || after[1] != 0x1f00) {
            atomic_store(&unwind_current, saved);
            fail_msg("%s .plt: return address not found before/after the push",
                     layouts[i].layout);
        }
    }
    atomic_store(&unwind_current, saved);
    free(rows);
}

/* A library built with IBT (-fcf-protection, ld -z ibtplt) by the system's
 * compiler and linker: its lazy .plt gets PLT rows with the IBT layout's
 * push offset, 9. */
static void test_ibt_plt_of_a_real_library_gets_plt_rows(void **state)
{
    (void)state;
    char dir[] = "/tmp/sonde-ibt-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char src[128], lib[128], cmd[512];
    snprintf(src, sizeof src, "%s/ibt.c", dir);
    snprintf(lib, sizeof lib, "%s/libibt.so", dir);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs("#include <stdio.h>\nint ibt_call(const char *s) { return puts(s) + getchar(); }\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "cc -shared -fPIC -O1 -fcf-protection -Wl,-z,ibtplt -Wl,-z,lazy -o '%s' '%s'", lib,
             src);
    assert_int_equal(system(cmd), 0);
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    uintptr_t fn = (uintptr_t)dlsym(h, "ibt_call");
    assert_true(fn != 0);
    assert_int_equal(modules_refresh(), 0);

    const struct unwind_module *m = unwind_find_module(atomic_load(&unwind_current), fn);
    assert_non_null(m);
    int plt_rows = 0, wrong = 0;
    for (uint32_t i = 0; i < m->nrows; i++) {
        if (m->rows[i].cfa == UNWIND_CFA_PLT) {
            plt_rows++;
            wrong += m->rows[i].cfa_off != 9;
        }
    }
    assert_int_equal(plt_rows, 1);
    assert_int_equal(wrong, 0);

    assert_int_equal(dlclose(h), 0);
    assert_int_equal(modules_refresh(), 0);
    unlink(lib);
    unlink(src);
    rmdir(dir);
}

/* What unwind_find_row gives without the index: a search of all rows. */
static const struct unwind_row *find_row_without_index(const struct unwind_module *m, uintptr_t pc)
{
    struct unwind_module plain = *m;
    plain.index = NULL;
    plain.nindex = 0;
    return unwind_find_row(&plain, pc);
}

static void assert_index_agrees(const struct unwind_module *m, uintptr_t pc)
{
    const struct unwind_row *a = unwind_find_row(m, pc), *b = find_row_without_index(m, pc);
    if (a != b)
        fail_msg("module %u, pc %#lx (offset %#lx): index gives row %ld, full search %ld", m->id,
                 (unsigned long)pc, (unsigned long)(pc - m->bias),
                 a ? (long)(a - m->rows) : -1L, b ? (long)(b - m->rows) : -1L);
}

static uint64_t rnd(void);

static void test_index_finds_the_same_rows_as_a_full_search(void **state)
{
    (void)state;
    /* Every module of this process: at, just before and just after every
     * row, and at random pcs in and around the module. */
    struct unwind_set *set = atomic_load(&unwind_current);
    assert_non_null(set);
    int indexed = 0;
    for (uint32_t k = 0; k < set->nmodules; k++) {
        const struct unwind_module *m = &set->mods[k];
        if (m->nrows > 100)
            assert_non_null(m->index); /* compiled code is dense enough */
        if (m->index == NULL)
            continue;
        indexed++;
        for (uint32_t i = 0; i < m->nrows; i++)
            for (int d = -1; d <= 1; d++)
                assert_index_agrees(m, m->bias + m->rows[i].pc_off + (uintptr_t)(intptr_t)d);
        for (int i = 0; i < 20000; i++)
            assert_index_agrees(m, m->lo - 4096 + rnd() % (m->hi - m->lo + 8192));
    }
    assert_true(indexed >= 3); /* the test program, libc, libcmocka at least */

    /* Made-up rows: several in a bucket, empty buckets, a row exactly on a
     * bucket boundary, the end. */
    static const struct unwind_row rows[] = {
        ROW(0x100, UNWIND_CFA_SP, 8, UNWIND_FP_SAME, 0),
        ROW(0x101, UNWIND_CFA_SP, 16, UNWIND_FP_SAME, 0),
        ROW(0x1ff, UNWIND_CFA_SP, 24, UNWIND_FP_SAME, 0),
        ROW(0x200, UNWIND_CFA_SP, 8, UNWIND_FP_SAME, 0),
        ROW(0x4ff, UNWIND_CFA_SP, 16, UNWIND_FP_SAME, 0),
        GAP(0x500),
        ROW(0x900, UNWIND_CFA_SP, 8, UNWIND_FP_SAME, 0),
        GAP(0x1000),
    };
    const size_t nrows = sizeof rows / sizeof rows[0];
    uint32_t *index;
    struct unwind_module m = {.lo = 0, .hi = 0x2000, .bias = 0x10000, .rows = rows,
                              .nrows = (uint32_t)nrows};
    assert_int_equal(unwind_table_index(rows, nrows, &index, &m.nindex), 0);
    assert_non_null(index);
    m.index = index;
    for (uintptr_t off = 0; off < 0x1400; off++)
        assert_index_agrees(&m, m.bias + off);
    free(index);

    /* Rows so far apart that the index would dwarf them: none. */
    static const struct unwind_row sparse[] = {
        ROW(0x0, UNWIND_CFA_SP, 8, UNWIND_FP_SAME, 0),
        GAP(0x40000000),
    };
    assert_int_equal(unwind_table_index(sparse, 2, &index, &m.nindex), 0);
    assert_null(index);
    assert_int_equal(m.nindex, 0);
}

/* ---- walks --------------------------------------------------------------- */

static struct walk_result qsort_walk;

static int compare_and_walk(const void *a, const void *b)
{
    if (qsort_walk.n == 0) {
        struct unwind_regs r;
        CAPTURE_REGS(&r);
        struct unwind_stack stk = own_stack();
        qsort_walk.n = unwind_walk(&r, &stk, qsort_walk.pcs, UNWIND_MAX_FRAMES,
                                   &qsort_walk.truncated);
    }
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The test functions that must show up in walks live in sections of their
 * own, so the linker's __start_/__stop_ symbols bound them exactly. */
extern const char __start_walk_qsort_text[], __stop_walk_qsort_text[];

__attribute__((noinline, section("walk_qsort_text"))) static void
test_walk_through_libc_qsort_reaches_test_and_main(void **state)
{
    (void)state;
    int v[64];
    for (int i = 0; i < 64; i++)
        v[i] = (i * 37) % 64;
    memset(&qsort_walk, 0, sizeof qsort_walk);
    qsort(v, 64, sizeof v[0], compare_and_walk);
    assert_true(qsort_walk.n > 3);
    /* qsort's frames in libc (built without frame pointers) ... */
    assert_true(count_in_file(&qsort_walk, "libc.so") >= 1);
    /* ... then this function ... */
    assert_int_equal(count_in(&qsort_walk, __start_walk_qsort_text, __stop_walk_qsort_text), 1);
    /* ... and on to _start in the main program, the normal end. */
    assert_int_equal(qsort_walk.truncated, 0);
    assert_string_equal(file_of(qsort_walk.pcs[qsort_walk.n - 1]), file_of((uintptr_t)&own_stack));
}

extern const char __start_walk_wide_text[], __stop_walk_wide_text[];
static struct walk_result wide_walk;

/* A printf conversion of our own, %W, that walks from inside printf. */
static int walk_conversion_arginfo(const struct printf_info *info, size_t n, int *types,
                                   int *sizes)
{
    (void)info;
    if (n > 0) {
        types[0] = PA_INT;
        sizes[0] = sizeof(int);
    }
    return 1;
}

static int walk_conversion(FILE *stream, const struct printf_info *info,
                           const void *const *args)
{
    (void)stream;
    (void)info;
    (void)args;
    if (wide_walk.n == 0) {
        struct unwind_regs r;
        CAPTURE_REGS(&r);
        struct unwind_stack stk = own_stack();
        wide_walk.n = unwind_walk(&r, &stk, wide_walk.pcs, UNWIND_MAX_FRAMES,
                                  &wide_walk.truncated);
    }
    return 0; /* prints nothing */
}

/* glibc formats wide output for an unbuffered stream in a 32 KiB buffer on
 * the stack (buffered_vfprintf: CFA = rsp + 33360, past the range of 16-bit
 * offsets), and libc has no frame pointers to fall back on. */
__attribute__((noinline, section("walk_wide_text"))) static void
test_walk_through_libc_frame_over_32k_reaches_test_and_main(void **state)
{
    (void)state;
    assert_int_equal(register_printf_specifier('W', walk_conversion, walk_conversion_arginfo), 0);
    FILE *f = fopen("/dev/null", "w");
    assert_non_null(f);
    assert_int_equal(setvbuf(f, NULL, _IONBF, 0), 0);
    memset(&wide_walk, 0, sizeof wide_walk);
    assert_int_equal(fwprintf(f, L"%d %W\n", 42, 7), 4);
    fclose(f);
    assert_true(wide_walk.n > 3);

    /* The walk went through libc's big frame to this function and on to
     * _start ... */
    assert_int_equal(count_in(&wide_walk, __start_walk_wide_text, __stop_walk_wide_text), 1);
    assert_int_equal(wide_walk.truncated, 0);
    /* ... and the big frame was on the way, unwound by its row. */
    struct unwind_set *set = atomic_load(&unwind_current);
    int big = 0;
    for (int i = 1; i < wide_walk.n; i++) {
        uintptr_t pc = wide_walk.pcs[i] - 1;
        const struct unwind_row *r = unwind_find_row(unwind_find_module(set, pc), pc);
        big += r != NULL && r->cfa == UNWIND_CFA_SP && r->cfa_off > INT16_MAX;
    }
    assert_int_equal(big, 1);
}

extern const char __start_frameless_text[], __stop_frameless_text[];
extern const char __start_walk_frameless_text[], __stop_walk_frameless_text[];
static struct walk_result frameless_walk;

__attribute__((noinline, optimize("omit-frame-pointer"), section("frameless_text"))) static int
frameless(int depth)
{
    volatile int pad[8] = {depth};
    if (depth > 0)
        return frameless(depth - 1) + pad[0]; /* not a tail call */
    struct unwind_regs r;
    CAPTURE_REGS(&r);
    struct unwind_stack stk = own_stack();
    frameless_walk.n = unwind_walk(&r, &stk, frameless_walk.pcs, UNWIND_MAX_FRAMES,
                                   &frameless_walk.truncated);
    return pad[0];
}

__attribute__((noinline, section("walk_frameless_text"))) static void
test_walk_from_frameless_functions_reaches_caller(void **state)
{
    (void)state;
    memset(&frameless_walk, 0, sizeof frameless_walk);
    assert_int_equal(frameless(5), 15);
    /* The leaf pc and five return addresses in frameless(). */
    assert_int_equal(count_in(&frameless_walk, __start_frameless_text, __stop_frameless_text), 6);
    assert_int_equal(count_in(&frameless_walk, __start_walk_frameless_text,
                              __stop_walk_frameless_text), 1);
    assert_int_equal(frameless_walk.truncated, 0);
}

extern const char __start_walk_guess_text[], __stop_walk_guess_text[];
static struct walk_result guess_walk;
static int guess_row_cfa = -1;

__attribute__((noinline, optimize("no-omit-frame-pointer"))) static int with_frame_pointer(int n)
{
    volatile char buf[n]; /* an rbp-based CFA whatever the options */
    buf[0] = (char)n;
    struct unwind_regs r;
    CAPTURE_REGS(&r);
    /* A blocked thread: pc and sp from /proc, rbp unknown. */
    r.fp = 0;
    r.fp_known = 0;
    struct unwind_set *set = atomic_load(&unwind_current);
    const struct unwind_row *row = unwind_find_row(unwind_find_module(set, r.pc), r.pc);
    guess_row_cfa = row ? row->cfa : -1;
    struct unwind_stack stk = own_stack();
    guess_walk.n = unwind_walk(&r, &stk, guess_walk.pcs, UNWIND_MAX_FRAMES, &guess_walk.truncated);
    return buf[0];
}

/* Zeroes the stack below the caller.  The rbp guess is fooled by stale
 * frame records that earlier, deeper calls left in uninitialized locals
 * (see sigsafe/unwind.c); this test shows the guess on a clean stack. */
__attribute__((noinline)) static void scrub_stack(void)
{
    volatile uintptr_t junk[2048];
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        junk[i] = 0;
}

__attribute__((noinline, section("walk_guess_text"))) static void
test_walk_with_unknown_rbp_guesses_frame_record(void **state)
{
    (void)state;
    memset(&guess_walk, 0, sizeof guess_walk);
    scrub_stack();
    assert_int_equal(with_frame_pointer(24), 24);
    assert_int_equal(guess_row_cfa, UNWIND_CFA_FP); /* the guess was needed */
    assert_int_equal(count_in(&guess_walk, __start_walk_guess_text, __stop_walk_guess_text), 1);
    assert_int_equal(guess_walk.truncated, 0);
}

static void test_walk_without_tables_follows_frame_pointers(void **state)
{
    (void)state;
    /* One module without rows (think JIT or no .eh_frame) and a fake stack
     * of two frame records. */
    struct {
        struct unwind_set set;
        struct unwind_module mod;
    } fake = {{.nmodules = 1}, {.lo = 0x1000, .hi = 0x100000, .bias = 0}};
    uintptr_t stack[16] = {0};
    uintptr_t base = (uintptr_t)stack;
    stack[2] = base + 6 * 8; /* record at 2: caller's rbp, return address */
    stack[3] = 0x2000;
    stack[6] = 0; /* outermost record */
    stack[7] = 0x3000;
    struct unwind_regs r = {.pc = 0x10, .sp = base, .fp = base + 2 * 8, .fp_known = 1};
    struct unwind_stack stk = {base, base + sizeof stack, 0};
    uintptr_t pcs[8];
    int trunc = 0;

    struct unwind_set *saved = atomic_exchange(&unwind_current, &fake.set);
    int n = unwind_walk(&r, &stk, pcs, 8, &trunc);
    int n_max = unwind_walk(&r, &stk, pcs + 4, 2, &trunc);
    stack[6] = base; /* a chain going down is not followed */
    uintptr_t down[8];
    int trunc_down = 0;
    int n_down = unwind_walk(&r, &stk, down, 8, &trunc_down);
    atomic_store(&unwind_current, saved);

    assert_int_equal(n, 3);
    assert_int_equal(pcs[0], 0x10);
    assert_int_equal(pcs[1], 0x2000);
    assert_int_equal(pcs[2], 0x3000);
    assert_int_equal(trunc, 1); /* rbp 0 at 0x3000, which has no table */
    assert_int_equal(n_max, 2); /* stopped by max */
    assert_int_equal(n_down, 2);
    assert_int_equal(trunc_down, 1);
}

/* ---- robustness ---------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* The start and length (up to max) of a module's .eh_frame in memory. */
static const uint8_t *module_eh_frame(const struct dl_phdr_info *info, size_t max, size_t *len)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_GNU_EH_FRAME)
            continue;
        const uint8_t *hdr = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        assert_int_equal(hdr[1], 0x1b); /* eh_frame_ptr: pcrel sdata4 */
        int32_t rel;
        memcpy(&rel, hdr + 4, 4);
        const uint8_t *eh = hdr + 4 + rel;
        *len = max;
        for (int k = 0; k < info->dlpi_phnum; k++) {
            const ElfW(Phdr) *l = &info->dlpi_phdr[k];
            uintptr_t lo = info->dlpi_addr + l->p_vaddr;
            if (l->p_type == PT_LOAD && (uintptr_t)eh >= lo && (uintptr_t)eh < lo + l->p_filesz &&
                lo + l->p_filesz - (uintptr_t)eh < *len)
                *len = lo + l->p_filesz - (uintptr_t)eh;
        }
        return eh;
    }
    return NULL;
}

/* Parses a copy of img placed so that the byte after it is unreadable. */
static int parse_guarded(const uint8_t *img, size_t len, uintptr_t addr, uintptr_t bias,
                         uint8_t *page_end)
{
    uint8_t *copy = page_end - len;
    memcpy(copy, img, len);
    struct unwind_row *rows;
    size_t n;
    int rc = unwind_table_from_eh_frame(copy, len, addr, bias, &rows, &n);
    if (rc == 0)
        for (size_t i = 1; i < n; i++)
            assert_true(rows[i - 1].pc_off < rows[i].pc_off);
    free(rows);
    return rc;
}

static void test_fuzzed_eh_frame_images_never_crash(void **state)
{
    (void)state;
    /* Its own seed: the outcome counts below must not depend on how many
     * random numbers the tests before it drew. */
    rng_state = 0x9e3779b97f4a7c15ull;
    struct image im;
    build_image(&im);
    struct find_lib f = {.needle = "libc.so.6"};
    dl_iterate_phdr(find_lib_cb, &f);
    assert_true(f.found);
    size_t libc_len = 0;
    const uint8_t *libc_eh = module_eh_frame(&f.info, 32 << 10, &libc_len);
    assert_non_null(libc_eh);

    /* 64 KiB readable, then a PROT_NONE page. */
    size_t area = 64 << 10;
    uint8_t *map = mmap(NULL, area + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + area, 4096, PROT_NONE), 0);
    uint8_t *end = map + area;

    static uint8_t work[32 << 10];
    int ok = 0, einval = 0;
    for (int it = 0; it < 4000; it++) {
        const uint8_t *src;
        size_t len;
        uintptr_t addr, bias;
        if (it % 3 == 0) {
            src = im.b, len = im.n, addr = im.addr, bias = 0;
        } else {
            src = libc_eh, len = libc_len, addr = (uintptr_t)libc_eh, bias = f.info.dlpi_addr;
        }
        memcpy(work, src, len);
        switch (rnd() % 4) {
        case 0: /* truncated */
            len = rnd() % (len + 1);
            break;
        case 1: /* bit flips */
            for (int k = 1 + (int)(rnd() % 8); k > 0; k--)
                work[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 2: /* random bytes over a range */ {
            size_t at = rnd() % len, n = 1 + rnd() % 64;
            for (size_t k = at; k < len && k < at + n; k++)
                work[k] = (uint8_t)rnd();
            break;
        }
        default: /* garbage, sometimes with plausible lengths */
            len = rnd() % 4096;
            for (size_t k = 0; k < len; k++)
                work[k] = (rnd() % 3) ? (uint8_t)rnd() : (uint8_t)(rnd() % 24);
            break;
        }
        int rc;
        if (it % 2) {
            rc = parse_guarded(work, len, addr, bias, end);
        } else {
            /* An exact-size heap copy, for ASan's redzones on both sides. */
            uint8_t *copy = malloc(len ? len : 1);
            assert_non_null(copy);
            memcpy(copy, work, len);
            struct unwind_row *rows;
            size_t n;
            rc = unwind_table_from_eh_frame(copy, len, addr, bias, &rows, &n);
            free(rows);
            free(copy);
        }
        assert_true(rc == 0 || rc == -EINVAL);
        ok += rc == 0;
        einval += rc == -EINVAL;
    }
    /* Both outcomes were exercised.  Most mutations break the image: about
     * 100 of 4000 parse, varying with the seed and libc's bytes, so the
     * bound for ok is well below that. */
    assert_true(ok > 20);
    assert_true(einval > 100);
    munmap(map, area + 4096);
}

static void test_walker_on_garbage_stays_inside_stack_bounds(void **state)
{
    (void)state;
    /* A 64 KiB fake stack in the middle of 64 MiB of PROT_NONE: a read
     * outside [lo, hi) + delta anywhere near it faults. */
    size_t reserve = 64u << 20, len = 64u << 10;
    uint8_t *map = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    assert_true(map != MAP_FAILED);
    uint8_t *buf = map + reserve / 2;
    assert_int_equal(mprotect(buf, len, PROT_READ | PROT_WRITE), 0);
    uintptr_t *words = (uintptr_t *)buf;
    size_t nwords = len / 8;

    /* The stack lives at a made-up address; delta maps it onto buf. */
    const uintptr_t lo = 0x7f0000000000ull, hi = lo + len;
    struct unwind_stack stk = {lo, hi, (intptr_t)((uintptr_t)buf - lo)};

    /* Code addresses the tables know, so walks get somewhere. */
    struct unwind_set *set = atomic_load(&unwind_current);
    assert_non_null(set);
    uintptr_t code[64];
    for (int i = 0; i < 64; i++) {
        const struct unwind_module *m = &set->mods[rnd() % set->nmodules];
        code[i] = m->lo + rnd() % (m->hi - m->lo);
    }

    for (int it = 0; it < 3000; it++) {
        for (size_t k = 0; k < nwords; k++) {
            switch (rnd() % 6) {
            case 0: words[k] = rnd(); break;
            case 1: words[k] = lo + (rnd() % (len + 64)) - 32; break; /* near/inside */
            case 2: words[k] = code[rnd() % 64]; break;
            case 3: words[k] = 0; break;
            default: words[k] = lo + 8 * (rnd() % nwords); break;
            }
        }
        struct unwind_regs r = {
            .pc = (rnd() % 2) ? code[rnd() % 64] : rnd(),
            .sp = (rnd() % 4) ? lo + (rnd() % len) : rnd(),
            .fp = (rnd() % 2) ? lo + (rnd() % len) : rnd(),
            .fp_known = (int)(rnd() % 2),
        };
        struct walk_result w;
        w.n = unwind_walk(&r, &stk, w.pcs, UNWIND_MAX_FRAMES, &w.truncated);
        assert_true(w.n >= 1 && w.n <= UNWIND_MAX_FRAMES);
        assert_int_equal(w.pcs[0], r.pc);
        /* Every caller pc was read from the stack. */
        for (int i = 1; i < w.n; i++) {
            size_t k = 0;
            while (k < nwords && words[k] != w.pcs[i])
                k++;
            assert_true(k < nwords);
        }
    }
    /* Nonsense bounds read nothing. */
    struct unwind_stack empty = {hi, lo, stk.delta};
    struct unwind_regs r = {.pc = code[0], .sp = lo, .fp = lo, .fp_known = 1};
    uintptr_t pcs[4];
    int trunc;
    assert_int_equal(unwind_walk(&r, &empty, pcs, 4, &trunc), 1);
    assert_int_equal(trunc, 1);
    munmap(map, reserve);
}

/* ---- modules ------------------------------------------------------------- */

static const struct module_info *find_module(const struct module_info *list, size_t n,
                                             const char *needle, int loaded)
{
    for (size_t i = 0; i < n; i++)
        if (strstr(list[i].path, needle) && list[i].loaded == loaded)
            return &list[i];
    return NULL;
}

static int is_hex40(const char *s)
{
    if (strlen(s) != 40)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

static void test_modules_list_finds_libc_main_program_and_vdso(void **state)
{
    (void)state;
    struct module_info *list;
    size_t n;
    assert_int_equal(modules_list(&list, &n), 0);
    const struct module_info *libc = find_module(list, n, "libc.so.6", 1);
    assert_non_null(libc);
    assert_true(is_hex40(libc->build_id));
    assert_true(libc->start < libc->end);
    assert_true(libc->file_offset > 0);
    uintptr_t q = libc_sym("qsort");
    assert_true(q >= libc->start && q < libc->end);

    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(k > 0);
    exe[k] = 0;
    const struct module_info *main_prog = find_module(list, n, exe, 1);
    assert_non_null(main_prog);
    assert_true((uintptr_t)&own_stack >= main_prog->start &&
                (uintptr_t)&own_stack < main_prog->end);
    assert_non_null(find_module(list, n, "[vdso]", 1));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(list[i].id, i);
        assert_true(list[i].path[0] != 0);
    }

    /* The published set has the same modules, sorted and disjoint. */
    struct unwind_set *set = atomic_load(&unwind_current);
    assert_non_null(set);
    for (uint32_t i = 1; i < set->nmodules; i++)
        assert_true(set->mods[i - 1].hi <= set->mods[i].lo);
    const struct unwind_module *m = unwind_find_module(set, q);
    assert_non_null(m);
    assert_int_equal(m->id, libc->id);
    assert_true(m->nrows > 1000);
    modules_list_free(list, n);
}

static void test_refresh_without_changes_keeps_the_published_set(void **state)
{
    (void)state;
    struct unwind_set *before = atomic_load(&unwind_current);
    assert_int_equal(modules_refresh(), 0);
    assert_ptr_equal(atomic_load(&unwind_current), before);
}

/* A library this test binary does not already link. */
static void *open_fresh_library(struct link_map **lm)
{
    static const char *const names[] = {"libcrypt.so.1", "libuuid.so.1", "libexpat.so.1",
                                        "libgmp.so.10", "libffi.so.8"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
        if (h != NULL) {
            dlclose(h);
            continue;
        }
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h != NULL) {
            assert_int_equal(dlinfo(h, RTLD_DI_LINKMAP, lm), 0);
            return h;
        }
    }
    fail_msg("no test library to dlopen");
    return NULL;
}

static const struct module_info *by_bias(const struct module_info *list, size_t n, uintptr_t bias,
                                         int loaded)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].bias == bias && list[i].loaded == loaded)
            return &list[i];
    return NULL;
}

/* Nothing hooks dlopen/dlclose (a wrapper would change the host's library
 * search paths): the published set changes only when modules_refresh()
 * runs. */
static void test_dlopen_alone_leaves_the_set_to_the_next_refresh(void **state)
{
    (void)state;
    struct unwind_set *before = atomic_load(&unwind_current);
    struct module_info *list;
    size_t n;
    struct link_map *lm;
    void *h = open_fresh_library(&lm);
    assert_ptr_equal(atomic_load(&unwind_current), before);
    assert_int_equal(modules_list(&list, &n), 0);
    assert_null(by_bias(list, n, lm->l_addr, 1));
    modules_list_free(list, n);

    assert_int_equal(modules_refresh(), 0);
    struct unwind_set *loaded = atomic_load(&unwind_current);
    assert_true(loaded != before);
    assert_int_equal(modules_list(&list, &n), 0);
    const struct module_info *e = by_bias(list, n, lm->l_addr, 1);
    assert_non_null(e);
    uintptr_t start = e->start;
    uint32_t id = e->id;
    modules_list_free(list, n);
    assert_int_equal(unwind_find_module(loaded, start)->id, id);

    assert_int_equal(dlclose(h), 0);
    assert_ptr_equal(atomic_load(&unwind_current), loaded);
    assert_int_equal(modules_refresh(), 0);
    const struct unwind_module *m = unwind_find_module(atomic_load(&unwind_current), start);
    assert_true(m == NULL || m->id != id);
}

static void test_refresh_publishes_dlopened_module_and_unpublishes_dlclosed_one(void **state)
{
    (void)state;
    struct link_map *lm;
    void *h = open_fresh_library(&lm);
    uintptr_t bias = lm->l_addr;
    assert_int_equal(modules_refresh(), 0);

    struct module_info *list;
    size_t n;
    assert_int_equal(modules_list(&list, &n), 0);
    const struct module_info *e = by_bias(list, n, bias, 1);
    assert_non_null(e);
    assert_string_equal(e->path, lm->l_name);
    uint32_t first_id = e->id;
    uintptr_t start = e->start;
    const struct unwind_module *m = unwind_find_module(atomic_load(&unwind_current), start);
    assert_non_null(m);
    assert_int_equal(m->id, first_id);
    assert_true(m->nrows > 0);
    modules_list_free(list, n);

    assert_int_equal(dlclose(h), 0);
    assert_int_equal(modules_refresh(), 0);
    assert_int_equal(modules_list(&list, &n), 0);
    assert_int_equal(list[first_id].loaded, 0);
    assert_null(by_bias(list, n, bias, 1));
    m = unwind_find_module(atomic_load(&unwind_current), start);
    assert_true(m == NULL || m->id != first_id);
    modules_list_free(list, n);

    /* Loaded again (likely at the same address): a new entry. */
    h = open_fresh_library(&lm);
    assert_int_equal(modules_refresh(), 0);
    assert_int_equal(modules_list(&list, &n), 0);
    e = by_bias(list, n, lm->l_addr, 1);
    assert_non_null(e);
    assert_true(e->id != first_id);
    assert_int_equal(list[first_id].loaded, 0);
    modules_list_free(list, n);
    assert_int_equal(dlclose(h), 0);
    assert_int_equal(modules_refresh(), 0);
}

static void test_retired_set_outlives_an_active_walk(void **state)
{
    (void)state;
    struct unwind_set *old = atomic_load(&unwind_current);
    uint32_t nmods = old->nmodules;
    uintptr_t lo0 = old->mods[0].lo;

    /* A walk that never leaves: the refresh after dlopen must not free the
     * set it replaced, and must give up waiting within about a second. */
    atomic_fetch_add(&sigsafe_active, 1);
    struct timespec t0, t1;
    struct link_map *lm;
    void *h = open_fresh_library(&lm);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(modules_refresh(), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    assert_true(atomic_load(&unwind_current) != old);
    assert_true(s >= 0.9 && s < 5.0);
    /* Still readable (ASan would report a use after free). */
    assert_int_equal(old->nmodules, nmods);
    assert_int_equal(old->mods[0].lo, lo0);
    assert_non_null(unwind_find_module(old, libc_sym("qsort")));
    atomic_fetch_sub(&sigsafe_active, 1);

    /* With no walk active the next change frees it promptly. */
    assert_int_equal(dlclose(h), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(modules_refresh(), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    assert_true(s < 0.5);
}

/* In a child forked while another thread was inside a walk, that walk is
 * gone: after modules_atfork_child() a refresh must not wait for it. */
static void test_fork_child_refreshes_without_waiting_for_vanished_walks(void **state)
{
    (void)state;
    atomic_fetch_add(&sigsafe_active, 1); /* "another thread" mid-walk */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        modules_atfork_child();
        struct timespec t0, t1;
        struct link_map *lm;
        void *h = open_fresh_library(&lm);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = modules_refresh();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        struct module_info *list;
        size_t n;
        int seen = modules_list(&list, &n) == 0 && by_bias(list, n, lm->l_addr, 1) != NULL;
        _exit(h != NULL && rc == 0 && seen && s < 0.5 ? 0 : 1);
    }
    atomic_fetch_sub(&sigsafe_active, 1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_shutdown_unpublishes_and_init_restores(void **state)
{
    (void)state;
    modules_shutdown();
    assert_null(atomic_load(&unwind_current));
    assert_int_equal(modules_refresh(), 0); /* a no-op now */
    assert_null(atomic_load(&unwind_current));
    assert_int_equal(modules_init(), 0);
    assert_non_null(atomic_load(&unwind_current));
}

static int setup_modules(void **state)
{
    (void)state;
    return modules_init();
}

static int teardown_modules(void **state)
{
    (void)state;
    modules_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_assembled_eh_frame_gives_expected_rows),
        cmocka_unit_test(test_bias_is_subtracted_and_out_of_range_fdes_are_dropped),
        cmocka_unit_test(test_malformed_eh_frame_is_rejected),
        cmocka_unit_test(test_libc_table_covers_qsort_with_sorted_rows),
        cmocka_unit_test(test_plt_rule_of_every_binutils_layout_is_followed),
        cmocka_unit_test(test_ibt_plt_of_a_real_library_gets_plt_rows),
        cmocka_unit_test(test_index_finds_the_same_rows_as_a_full_search),
        cmocka_unit_test(test_fuzzed_eh_frame_images_never_crash),
        cmocka_unit_test(test_walk_through_libc_qsort_reaches_test_and_main),
        cmocka_unit_test(test_walk_through_libc_frame_over_32k_reaches_test_and_main),
        cmocka_unit_test(test_walk_from_frameless_functions_reaches_caller),
        cmocka_unit_test(test_walk_with_unknown_rbp_guesses_frame_record),
        cmocka_unit_test(test_walk_without_tables_follows_frame_pointers),
        cmocka_unit_test(test_walker_on_garbage_stays_inside_stack_bounds),
        cmocka_unit_test(test_modules_list_finds_libc_main_program_and_vdso),
        cmocka_unit_test(test_refresh_without_changes_keeps_the_published_set),
        cmocka_unit_test(test_dlopen_alone_leaves_the_set_to_the_next_refresh),
        cmocka_unit_test(test_refresh_publishes_dlopened_module_and_unpublishes_dlclosed_one),
        cmocka_unit_test(test_retired_set_outlives_an_active_walk),
        cmocka_unit_test(test_fork_child_refreshes_without_waiting_for_vanished_walks),
        cmocka_unit_test(test_shutdown_unpublishes_and_init_restores),
    };
    return cmocka_run_group_tests(tests, setup_modules, teardown_modules);
}
