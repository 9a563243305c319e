/*
 * symbolize.c — addresses to function, file:line and inline frames with
 * libdw (symbolize.h).  Runs at export time on the agent's thread (or the
 * caller of sonde_write_profile), never in a signal handler.
 *
 * Design
 *
 * One offline Dwfl per module, opened lazily.  A single Dwfl holding every
 * module would refuse overlapping ranges, and overlap is real here: a
 * module dlclose'd during the session and one dlopen'ed later may have
 * occupied the same addresses.  Per-module Dwfl handles sidestep that
 * (module_for() chooses: a loaded module first, else the most recent one)
 * and cost nothing for modules no sample touched.  Each module is reported
 * with dwfl_report_elf(path, bias), i.e. read from its file on disk, so a
 * module that is gone from memory still symbolizes; when the file's build
 * id differs from the one recorded at load time (the file was replaced),
 * its symbols would lie, so we use none and the frame shows module+offset.
 *
 * Inline frames.  dwfl_module_addrdie gives the CU, dwarf_getscopes the
 * innermost scope at the pc.  dwarf_getscopes continues, past an inlined
 * subroutine, through the *abstract* definition's scopes, which is not the
 * physical nesting; so, as eu-addr2line -i does, we take only its
 * innermost scope and walk the real parents with dwarf_getscopes_die.
 * Every DW_TAG_inlined_subroutine on the way is a frame, the first
 * DW_TAG_subprogram is the last one.  Lines: the innermost frame's line is
 * the pc's own line (line table); the line of frame k+1 is where frame k
 * was inlined, DW_AT_call_file/DW_AT_call_line of frame k's DIE.
 *
 * Names: DW_AT_linkage_name (demangled) else DW_AT_name, both through
 * abstract origins and specifications (dwarf_attr_integrate), so clones
 * such as foo.constprop.0 are named foo; without DWARF, the ELF symbol
 * from .symtab or .dynsym (dwfl_module_addrinfo).
 *
 * Demangling uses libiberty's callback demanglers: they write into our own
 * buffer (no xmalloc, which would exit() on failure in someone else's
 * process).  Rust is tried first because legacy Rust symbols are valid
 * Itanium C++ names too; without DMGL_VERBOSE the "::h<hash>" goes.
 *
 * Results are cached per address (stacks repeat), and every string is
 * interned once, owned by the symbolizer.
 *
 * Out of memory inside libdw.  libdw's default reaction to a failed
 * malloc in its internal allocator is error(EXIT_FAILURE): it would end
 * the host.  We install our own handler on every Dwarf we use; it
 * longjmps back to symbolizer_lookup, which answers without symbols.  The
 * libdw state that the jump abandoned may be inconsistent, so the module's
 * Dwfl is leaked (never touched again) and the symbolizer stops using
 * libdw altogether: the rest of the export names frames module+offset.
 */
#include "symbolize.h"

#include <ctype.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <libiberty/demangle.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/array.h"
#include "common/hindex.h"
#include "common/strtab.h"

#define MAX_INLINE 64           /* inline levels kept per address */
/* Longer names are shown mangled: libiberty's demangler keeps ~70 bytes
 * of stack per input byte (VLAs), and export may run on a host thread
 * with a small stack. */
#define MAX_DEMANGLE_LEN 2048

struct sym_module {
    struct module_info info; /* path owned */
    Dwfl *dwfl;
    Dwfl_Module *mod; /* NULL: no symbols (file missing, replaced, ...) */
    bool opened;
};

struct cached {
    uintptr_t addr;
    uint32_t first, n; /* frames[first .. first + n) */
};

struct symbolizer {
    struct sym_module *mods;
    size_t nmods;

    struct cached *entries;
    size_t nentries, capentries;
    struct hindex byaddr; /* address -> entries index */

    struct sym_frame *frames;
    size_t nframes, capframes;

    struct strtab strings; /* interned names and files */

    bool libdw_failed; /* libdw ran out of memory once: no more libdw */
};

/* ------------------------------------------------------------------ */
/* Demangling                                                          */

struct dbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void dbuf_append(const char *s, size_t n, void *opaque)
{
    struct dbuf *b = opaque;
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 128;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Drops a Rust legacy "::h" + 16 hex digits tail, should a demangler have
 * kept it. */
static void strip_rust_hash(char *s, size_t len)
{
    if (len < 19)
        return;
    char *h = s + len - 19;
    if (memcmp(h, "::h", 3) != 0)
        return;
    for (int i = 3; i < 19; i++)
        if (!isxdigit((unsigned char)h[i]))
            return;
    *h = '\0';
}

char *symbolize_demangle(const char *name)
{
    if (!name || name[0] != '_' || (name[1] != 'Z' && name[1] != 'R'))
        return NULL;
    if (strnlen(name, MAX_DEMANGLE_LEN + 1) > MAX_DEMANGLE_LEN)
        return NULL;
    const int opts = DMGL_PARAMS | DMGL_ANSI;
    struct dbuf b = {0};
    int ok = rust_demangle_callback(name, opts, dbuf_append, &b);
    if (!ok || b.oom) {
        free(b.p);
        memset(&b, 0, sizeof b);
        ok = name[1] == 'Z' && cplus_demangle_v3_callback(name, opts, dbuf_append, &b);
    }
    if (!ok || b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    strip_rust_hash(b.p, b.len);
    return b.p;
}

/* ------------------------------------------------------------------ */
/* Strings and the address cache                                       */

/* The symbolizer's copy of str; NULL on ENOMEM. */
static const char *intern(struct symbolizer *s, const char *str)
{
    int64_t i = strtab_intern(&s->strings, str);
    return i < 0 ? NULL : s->strings.strs[i];
}

static int cached_addr_eq(const void *ctx, uint32_t item, const void *key)
{
    return ((const struct symbolizer *)ctx)->entries[item].addr == *(const uintptr_t *)key;
}

static const struct cached *cache_find(const struct symbolizer *s, uintptr_t addr)
{
    int64_t i = hindex_find(&s->byaddr, hindex_hash_u64(addr), cached_addr_eq, s, &addr);
    return i < 0 ? NULL : &s->entries[i];
}

/* Caches frames f[0..n) (interned already) for addr.  0 or -ENOMEM. */
static int cache_put(struct symbolizer *s, uintptr_t addr, const struct sym_frame *f, int n)
{
    if (s->nentries >= HINDEX_MAX_ITEMS || s->nframes > UINT32_MAX - (size_t)n ||
        array_grow(&s->entries, &s->capentries, s->nentries + 1, sizeof *s->entries) != 0 ||
        array_grow(&s->frames, &s->capframes, s->nframes + (size_t)n, sizeof *s->frames) != 0 ||
        hindex_insert(&s->byaddr, hindex_hash_u64(addr), (uint32_t)s->nentries) != 0)
        return -ENOMEM;
    memcpy(&s->frames[s->nframes], f, (size_t)n * sizeof *f);
    s->entries[s->nentries] = (struct cached){addr, (uint32_t)s->nframes, (uint32_t)n};
    s->nentries++;
    s->nframes += (size_t)n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Modules                                                             */

static char *debuginfo_path; /* NULL: libdw's default ":.debug:/usr/lib/debug" */

/* Where libdw_oom jumps to: set around every libdw call of this thread. */
static __thread jmp_buf *oom_target;

__attribute__((noreturn)) static void libdw_oom(void)
{
    /* Every libdw call is made under a target (symbolizer_lookup); if one
     * ever were not, spinning beats both returning into libdw (which would
     * dereference NULL) and exiting the host. */
    for (;;)
        if (oom_target)
            longjmp(*oom_target, 1);
}

static const Dwfl_Callbacks offline_callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

struct symbolizer *symbolizer_new(const struct module_info *mods, size_t n)
{
    struct symbolizer *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->mods = calloc(n ? n : 1, sizeof *s->mods);
    if (!s->mods) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        s->mods[i].info = mods[i];
        s->mods[i].info.build_id[sizeof mods[i].build_id - 1] = '\0';
        s->mods[i].info.path = strdup(mods[i].path ? mods[i].path : "");
        s->nmods = i + 1;
        if (!s->mods[i].info.path) {
            symbolizer_free(s);
            return NULL;
        }
    }
    return s;
}

void symbolizer_free(struct symbolizer *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nmods; i++) {
        if (s->mods[i].dwfl)
            dwfl_end(s->mods[i].dwfl);
        free(s->mods[i].info.path);
    }
    free(s->mods);
    free(s->entries);
    hindex_free(&s->byaddr);
    free(s->frames);
    strtab_free(&s->strings);
    free(s);
}

/* The module holding addr: a loaded one first, else the most recently
 * seen (highest id) of those unloaded since.  -1 if none. */
static int module_for(const struct symbolizer *s, uintptr_t addr)
{
    int best = -1;
    for (size_t i = 0; i < s->nmods; i++) {
        const struct module_info *m = &s->mods[i].info;
        if (addr < m->start || addr >= m->end)
            continue;
        if (best < 0)
            best = (int)i;
        else {
            const struct module_info *b = &s->mods[best].info;
            if ((m->loaded && !b->loaded) || (m->loaded == b->loaded && m->id > b->id))
                best = (int)i;
        }
    }
    return best;
}

static void hex(const unsigned char *bits, int len, char *out, size_t outlen)
{
    size_t k = 0;
    for (int i = 0; i < len && k + 2 < outlen; i++, k += 2)
        snprintf(out + k, 3, "%02x", bits[i]);
    out[k] = '\0';
}

static Dwfl_Module *module_open(struct sym_module *m)
{
    if (m->opened)
        return m->mod;
    m->opened = true;
    if (!m->info.path[0])
        return NULL;
    m->dwfl = dwfl_begin(&offline_callbacks);
    if (!m->dwfl)
        return NULL;
    const char *base = strrchr(m->info.path, '/');
    base = base ? base + 1 : m->info.path;
    dwfl_report_begin(m->dwfl);
    Dwfl_Module *mod = dwfl_report_elf(m->dwfl, base, m->info.path, -1, m->info.bias, false);
    dwfl_report_end(m->dwfl, NULL, NULL);
    if (mod) { /* load DWARF now, to install our OOM handler on it */
        Dwarf_Addr dbias;
        Dwarf *dw = dwfl_module_getdwarf(mod, &dbias);
        if (dw) {
            dwarf_new_oom_handler(dw, libdw_oom);
            Dwarf *alt = dwarf_getalt(dw);
            if (alt)
                dwarf_new_oom_handler(alt, libdw_oom);
        }
    }
    if (mod && m->info.build_id[0]) {
        const unsigned char *bits;
        GElf_Addr vaddr;
        int len = dwfl_module_build_id(mod, &bits, &vaddr);
        char file_id[sizeof m->info.build_id];
        if (len > 0) {
            hex(bits, len, file_id, sizeof file_id);
            if (strcasecmp(file_id, m->info.build_id) != 0)
                mod = NULL; /* the file on disk is not what was loaded */
        }
    }
    m->mod = mod;
    return mod;
}

/* ------------------------------------------------------------------ */
/* Lookup                                                              */

/* A frame before interning: strings borrowed from libdw or owned (the
 * demangled names, freed after interning). */
struct raw_frame {
    const char *system_name; /* linkage / symbol name, may be NULL */
    char *demangled;         /* malloc'ed, may be NULL */
    const char *plain;       /* DW_AT_name, may be NULL */
    const char *file;
    int line;
};

static void raw_name(struct raw_frame *f, const char *linkage, const char *plain)
{
    f->system_name = linkage;
    f->plain = plain;
    f->demangled = linkage ? symbolize_demangle(linkage) : NULL;
}

static const char *die_linkage_name(Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    const char *n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
    if (!n)
        n = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr));
    return n;
}

/* Inline chain at addr from DWARF into f[]; returns the count (0: no
 * DWARF scope covers addr). */
static int dwarf_frames(Dwfl_Module *mod, uintptr_t addr, struct raw_frame *f, int max)
{
    Dwarf_Addr bias = 0;
    Dwarf_Die *cudie = dwfl_module_addrdie(mod, addr, &bias);
    if (!cudie)
        return 0;
    Dwarf_Die *scopes = NULL;
    int n = dwarf_getscopes(cudie, addr - bias, &scopes);
    if (n <= 0) {
        free(scopes);
        return 0;
    }
    Dwarf_Die innermost = scopes[0];
    free(scopes);
    scopes = NULL;
    n = dwarf_getscopes_die(&innermost, &scopes);
    if (n <= 0) {
        free(scopes);
        return 0;
    }
    Dwarf_Files *files = NULL;
    size_t nfiles = 0;
    if (dwarf_getsrcfiles(cudie, &files, &nfiles) != 0)
        files = NULL;

    /* f[k] is prepared (zeroed, with its call-site line when k > 0)
     * before the DIE that names it is found. */
    int k = 0;
    memset(&f[0], 0, sizeof f[0]);
    for (int i = 0; i < n && k < max; i++) {
        Dwarf_Die *die = &scopes[i];
        int tag = dwarf_tag(die);
        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram &&
            tag != DW_TAG_entry_point)
            continue;
        raw_name(&f[k], die_linkage_name(die), dwarf_diename(die));
        k++;
        if (tag != DW_TAG_inlined_subroutine)
            break; /* the physical function: outermost */
        if (k < max) { /* the caller's line is where this one was inlined */
            Dwarf_Attribute attr;
            Dwarf_Word v;
            memset(&f[k], 0, sizeof f[k]);
            if (files && dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &v) == 0 &&
                v < nfiles)
                f[k].file = dwarf_filesrc(files, v, NULL, NULL);
            if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &v) == 0)
                f[k].line = (int)v;
        }
    }
    free(scopes);
    return k;
}

/* Resolves addr into raw frames; returns the count (>= 1). */
static int resolve(struct symbolizer *s, int mi, uintptr_t addr, struct raw_frame *f, int max)
{
    memset(&f[0], 0, sizeof f[0]);
    if (mi < 0)
        return 1;
    Dwfl_Module *mod = s->libdw_failed ? NULL : module_open(&s->mods[mi]);
    if (!mod)
        return 1;
    int n = dwarf_frames(mod, addr, f, max);
    if (n == 0) {
        memset(&f[0], 0, sizeof f[0]);
        n = 1;
    }
    /* The outermost frame without a DWARF name: the ELF symbol. */
    struct raw_frame *outer = &f[n - 1];
    if (!outer->system_name && !outer->plain) {
        GElf_Off off;
        GElf_Sym sym;
        const char *name = dwfl_module_addrinfo(mod, addr, &off, &sym, NULL, NULL, NULL);
        if (name)
            raw_name(outer, name, NULL);
    }
    /* The leaf's line: the pc's own row in the line table. */
    Dwfl_Line *line = dwfl_module_getsrc(mod, addr);
    if (line) {
        int lineno = 0;
        const char *file = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
        if (file) {
            f[0].file = file;
            f[0].line = lineno;
        }
    }
    return n;
}

/* resolve() with libdw_oom's landing point around it; -1 when libdw ran
 * out of memory.  A function of its own so that nothing the caller keeps
 * in registers lives across setjmp. */
__attribute__((noinline)) static int resolve_guarded(struct symbolizer *s, int mi, uintptr_t addr,
                                                     struct raw_frame *raw)
{
    jmp_buf env;
    jmp_buf *volatile saved = oom_target;
    if (setjmp(env) != 0) {
        oom_target = saved;
        return -1;
    }
    oom_target = &env;
    int n = resolve(s, mi, addr, raw, MAX_INLINE);
    oom_target = saved;
    return n;
}

static void fallback_frame(struct symbolizer *s, int mi, uintptr_t addr, struct sym_frame *out)
{
    memset(out, 0, sizeof *out);
    out->function = "";
    out->system_name = "";
    out->module_index = mi;
    out->offset = addr;
    if (mi >= 0) {
        out->module = s->mods[mi].info.path;
        out->offset = addr - s->mods[mi].info.bias;
    }
}

int symbolizer_lookup(struct symbolizer *s, uintptr_t addr, struct sym_frame *out, int max)
{
    if (max < 1)
        return -EINVAL;
    const struct cached *c = cache_find(s, addr);
    if (c) {
        int n = (int)c->n < max ? (int)c->n : max;
        /* Keep the leaf and drop outer levels only if max is small. */
        memcpy(out, &s->frames[c->first], (size_t)n * sizeof *out);
        return n;
    }

    int mi = module_for(s, addr);
    struct raw_frame raw[MAX_INLINE];
    int n = resolve_guarded(s, mi, addr, raw);
    if (n < 0) {
        /* libdw ran out of memory (libdw_oom): abandon its state. */
        s->libdw_failed = true;
        if (mi >= 0) {
            s->mods[mi].dwfl = NULL; /* leaked on purpose, see the top */
            s->mods[mi].mod = NULL;
        }
        fallback_frame(s, mi, addr, &out[0]);
        return 1;
    }

    struct sym_frame frames[MAX_INLINE];
    bool oom = false;
    for (int i = 0; i < n; i++) {
        struct sym_frame *fr = &frames[i];
        fallback_frame(s, mi, addr, fr);
        fr->inlined = i + 1 < n;
        const char *name = raw[i].demangled ? raw[i].demangled
                           : raw[i].plain   ? raw[i].plain
                           : raw[i].system_name;
        const char *sys = raw[i].system_name ? raw[i].system_name : name;
        if (name && !(fr->function = intern(s, name)))
            oom = true;
        if (sys && !(fr->system_name = intern(s, sys)))
            oom = true;
        if (raw[i].file && !(fr->file = intern(s, raw[i].file)))
            oom = true;
        fr->line = raw[i].line;
        free(raw[i].demangled);
    }
    if (oom) { /* answer without names rather than not at all */
        fallback_frame(s, mi, addr, &out[0]);
        return 1;
    }
    (void)cache_put(s, addr, frames, n); /* uncached on ENOMEM: still correct */
    int k = n < max ? n : max;
    memcpy(out, frames, (size_t)k * sizeof *out);
    return k;
}
