/*
 * symbolize.h — turns code addresses of this process into function names,
 * source file:line and inline frames, with libdw (elfutils), at export
 * time.
 *
 * Each module of the list given to symbolizer_new() is opened from its
 * file (never from memory), lazily on the first address that falls in it,
 * with an offline Dwfl: so modules dlclose'd since the samples were taken
 * still symbolize, and separate debug files are found by build id under
 * /usr/lib/debug/.build-id (and through .gnu_debuglink).  Function names
 * come from DWARF when present (inline frames included), else from .symtab
 * or .dynsym; C++ and Rust names are demangled.
 *
 * Not signal-safe (allocates, opens files).  Not thread-safe: one thread
 * uses a symbolizer at a time.
 */
#ifndef SONDE_SYMBOLIZE_H
#define SONDE_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#include "modules.h"

/* One frame of an address.  For an address in inlined code there are
 * several: frames[0] is the innermost inlined function, whose line is the
 * address's own line; each following frame is the function it was inlined
 * into, with the line of the call site (DW_AT_call_line); the last one is
 * the function the code physically belongs to.  Strings are owned by the
 * symbolizer and valid until symbolizer_free(). */
struct sym_frame {
    const char *function;    /* demangled; "" when no symbol covers the address */
    const char *system_name; /* as in the binary (mangled); "" if unknown */
    const char *file;        /* source file; NULL if unknown */
    int line;                /* 0 if unknown */
    int inlined;             /* 1: inlined into the next frame */
    int module_index;        /* index into symbolizer_new's list; -1: none */
    const char *module;      /* the module's path; NULL: in no module */
    uint64_t offset;         /* address - module bias: the ELF virtual address
                                (what addr2line -e MODULE takes); the address
                                itself when in no module */
};

struct symbolizer;

/* A symbolizer for the n modules of mods (copied: the caller may free the
 * list afterwards).  Opens nothing yet.  NULL on ENOMEM. */
struct symbolizer *symbolizer_new(const struct module_info *mods, size_t n);

/* Frees the symbolizer, its Dwfl handles and every string it returned.
 * NULL is a no-op. */
void symbolizer_free(struct symbolizer *s);

/* Symbolizes addr (an exact pc: callers pass return address - 1 for
 * caller frames) into out[0..max), innermost first, and returns the number
 * of frames written: >= 1 when max >= 1 (an address nothing knows gives one
 * frame with function "" — and module NULL when it is in no module).  If
 * the address has more inline levels than max, the outermost ones are
 * dropped.  -EINVAL when max < 1.  Results are cached per address. */
int symbolizer_lookup(struct symbolizer *s, uintptr_t addr, struct sym_frame *out, int max);

/* Demangles a C++ (Itanium "_Z..."), Rust legacy ("_ZN...17h<hash>E",
 * hash dropped) or Rust v0 ("_R...") symbol.  Returns a malloc'ed string
 * the caller frees, or NULL when name is not mangled or cannot be
 * demangled (or on ENOMEM). */
char *symbolize_demangle(const char *name);

#endif
