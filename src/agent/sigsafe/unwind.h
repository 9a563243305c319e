/*
 * unwind.h — the stack walker the sampling signal handler runs, and the
 * compact unwind tables it reads.
 *
 * async-signal-safe: no malloc, no locks, no stdio, no dynamic loader,
 * errno saved.  The walker reads only (a) the published unwind tables,
 * which are immutable once published, and (b) stack memory inside the
 * [lo, hi) range the caller gives, so it never touches unmapped memory.
 *
 * The tables are built outside the handler (src/agent/unwind_table.c) from
 * each module's .eh_frame: one row per address range where the rule to find
 * the caller's frame changes.  x86-64 only for now.
 */
#ifndef SONDE_UNWIND_H
#define SONDE_UNWIND_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define UNWIND_MAX_FRAMES 128

/* How the canonical frame address (CFA, the caller's sp) is found. */
enum unwind_cfa {
    UNWIND_CFA_UNDEF = 0, /* end of stack (e.g. _start), or a rule we cannot follow */
    UNWIND_CFA_SP = 1,    /* CFA = rsp + cfa_off */
    UNWIND_CFA_FP = 2,    /* CFA = rbp + cfa_off */
    UNWIND_CFA_PLT = 3    /* lazy .plt entries: CFA = rsp + 8, and 8 more once the
                             entry has pushed its index: if (pc & 15) >= cfa_off */
};

/* How the caller's rbp is found. */
enum unwind_fp {
    UNWIND_FP_SAME = 0,   /* rbp unchanged */
    UNWIND_FP_AT_CFA = 1  /* rbp saved at CFA + fp_off */
};

/*
 * The table format
 * ----------------
 * One row: from pc_off (relative to the module's load bias) up to the next
 * row's pc_off the rules hold.  Rows of a module are sorted by pc_off,
 * strictly increasing; a row with cfa == UNWIND_CFA_UNDEF and the flag
 * UNWIND_ROW_GAP ends an FDE's range (pcs there have no rule at all).
 * Offsets are 32-bit: a few real functions (libc's buffered_vfprintf, two in
 * libdw) have frames over 32 KiB.  For UNWIND_CFA_PLT, cfa_off holds the
 * entry offset at which the push has happened (binutils: 11 for the
 * classic lazy .plt, 9 with IBT, 5 with MPX's BND prefix, 10 with both).
 */
struct unwind_row {
    uint32_t pc_off;
    int32_t cfa_off;
    int32_t fp_off;
    uint8_t cfa;   /* enum unwind_cfa */
    uint8_t fp;    /* enum unwind_fp */
    uint8_t flags;
    uint8_t pad;
};
#define UNWIND_ROW_GAP 1

_Static_assert(sizeof(struct unwind_row) == 16, "unwind rows are 16 bytes, 4 per cache line");

/*
 * The index: a binary search over libc's ~28k rows is 15 dependent loads,
 * which made the row search most of a walk's cost.  So each module's rows
 * come with an index over its code in buckets of 1 << UNWIND_INDEX_SHIFT
 * bytes, counted from the first row's pc_off (base):
 *
 *   index[k] = the last row whose pc_off <= base + (k << UNWIND_INDEX_SHIFT)
 *              for 0 <= k < nindex - 1, and index[nindex - 1] = nrows - 1.
 *
 * The row for an offset off in bucket k = (off - base) >> UNWIND_INDEX_SHIFT
 * is then one of rows[index[k]] .. rows[index[k + 1]], which the walker
 * scans forward: one or two rows usually, at most 1 << UNWIND_INDEX_SHIFT
 * (pc_offs are distinct), in one or two cache lines found right after the
 * index entry.  An offset past the last bucket belongs to the last row.
 * Buckets of 64 bytes walk faster than 256 (bench/unwind_cost.c: ~400
 * against ~550 ns for 64 frames) and cost 4 bytes per 64 bytes of code,
 * about a fifth of the rows' own size.  A module may have no index (index NULL: it would
 * have been far larger than its rows, or there was no memory for it);
 * lookups then binary-search all rows.  Built by unwind_table_index().
 */
#define UNWIND_INDEX_SHIFT 6

/* One loaded module's executable range and its rows. */
struct unwind_module {
    uintptr_t lo, hi;   /* absolute addresses of its executable segments */
    uintptr_t bias;     /* load bias: absolute = bias + pc_off */
    const struct unwind_row *rows;
    const uint32_t *index; /* see "The index"; NULL if none */
    uint32_t nrows;
    uint32_t nindex;
    uint32_t id;        /* index into the module list (modules.h) */
};

/* An immutable set of modules sorted by lo.  Published by modules.c with an
 * atomic store; a retired set is freed only after a grace period in which
 * no handler could still be reading it (see sigsafe_active). */
struct unwind_set {
    uint32_t nmodules;
    struct unwind_module mods[];
};

/* The set in use; NULL before the first build.  Readers: atomic_load with
 * acquire. */
extern struct unwind_set *_Atomic unwind_current; /* defined in unwind.c */

/* Number of threads currently inside the sampling handler or a blocked-
 * thread walk; modules.c waits for it to read 0 once after swapping
 * unwind_current before freeing the old set. */
extern _Atomic int sigsafe_active; /* defined in unwind.c */

struct unwind_regs {
    uintptr_t pc, sp, fp;
    int fp_known;       /* 0: rbp unknown (blocked thread read from /proc) */
};

/* Readable stack memory.  Addresses in [lo, hi) may be read; the bytes are
 * at address + delta (delta 0 for the live stack, nonzero when the stack
 * was copied into a buffer). */
struct unwind_stack {
    uintptr_t lo, hi;
    intptr_t delta;
};

/* Walks from regs, writing pcs[0] = regs->pc and then each caller's return
 * address, up to max entries.  Returns the number written (>= 1 when
 * regs->pc != 0).  *truncated is set to 1 if the walk stopped for a reason
 * other than reaching the outermost frame.  async-signal-safe. */
int unwind_walk(const struct unwind_regs *regs, const struct unwind_stack *stk, uintptr_t *pcs,
                int max, int *truncated);

/* Finds the module whose executable range holds pc in set; NULL if none.
 * async-signal-safe. */
const struct unwind_module *unwind_find_module(const struct unwind_set *set, uintptr_t pc);

/* Finds the row for pc in m; NULL if pc is in no FDE.  async-signal-safe. */
const struct unwind_row *unwind_find_row(const struct unwind_module *m, uintptr_t pc);

#endif
