/*
 * unwind.c — the stack walker the sampling signal handler runs (x86-64).
 *
 * async-signal-safe: no malloc, no locks, no stdio, no dynamic loader,
 * errno saved (nothing here can change errno: no system or libc calls).
 *
 * Inputs are the registers of the interrupted (or blocked) thread, the
 * stack range we may read, and the unwind rows modules.c built from each
 * module's .eh_frame and published in unwind_current.  Each step:
 *
 *   1. find the module holding pc (binary search over the set, sorted by
 *      lo; skipped while the pc stays in the last frame's module) and the
 *      row for pc (through the module's index, see unwind.h).  For every
 *      frame but the innermost the pc is a return address, which may point
 *      just past the end of the caller's FDE (a call to a noreturn
 *      function), so we look up pc - 1;
 *   2. CFA = rsp or rbp + offset (or the .plt rule); the return address is
 *      at CFA - 8 (x86-64 psABI); the caller's rbp is either unchanged or
 *      saved at CFA + fp_off; the caller's rsp is the CFA.
 *
 * The walk ends normally (truncated = 0) at a return address of 0 or at a
 * row whose CFA is UNWIND_CFA_UNDEF: _start and thread entry mark their
 * return address undefined.  The tables also use that row for rules they
 * cannot express (stack realignment, signal trampolines), where frame
 * pointers usually still work, so at such a row we first try one
 * frame-pointer step; at _start and thread entry rbp is 0 and it fails.
 * Every other stop (no row and no usable frame record, a read outside the
 * stack, an sp that does not grow, max frames) sets truncated = 1.
 *
 * When pc is in no table (JIT code, a module without .eh_frame, a pc past
 * the end of a table) we take one frame-pointer step instead: [rbp] is the
 * caller's rbp, [rbp + 8] the return address; accepted only if the record
 * is 8-aligned, inside the stack, above sp, the chain grows upward and the
 * return address is inside a known module.
 *
 * Blocked threads are walked from registers read through /proc, which give
 * pc and sp but not rbp (fp_known == 0).  Code compiled with frame pointers
 * then hits a row whose CFA is rbp-based, and we guess rbp by scanning the
 * stack upward from sp (at most SCAN_WORDS words) for the first 8-aligned
 * address a that looks like this frame's frame record under that very row
 * (with the usual prologue: [a] = caller's rbp, [a + 8] = return address):
 *   - the word where the row puts the return address (a + cfa_off - 8) is
 *     inside a known module and, if the module has a table, inside an FDE;
 *   - and the caller's own row, applied to that frame, finds one more
 *     return address in a known module: from its rsp-based CFA, or, if the
 *     caller needs rbp (rbp-based CFA, or no table: a frame-pointer step),
 *     from the saved rbp, which must then be an address in (a, hi); an
 *     outermost caller (undefined return address) is accepted as is.
 * This generalizes "[a + 8] is code and [a] is 0 or a stack address above
 * a", which also accepts a local holding a code pointer next to a null,
 * and which rejects the real record when the caller has no frame pointer
 * (rbp is then a general register and its saved value anything).  Locals
 * can still fool it when two frames' worth of them look right; the walk
 * stays inside [lo, hi) whatever it guesses.
 *
 * Every stack read goes through stack_read(), which checks [lo, hi) and
 * alignment and applies delta, so a garbage sp, rbp or stack range can
 * only end the walk, never fault.  The tables themselves are immutable
 * once published; unwind_walk() counts itself in sigsafe_active around its
 * use of the set, so modules.c frees a retired set only after the walk
 * that might be reading it has left.
 *
 * Speed: a step is a chain of dependent loads -- the return address from
 * the stack, the index entry it selects, the row, the next return address
 * at the row's CFA -- so the code keeps that chain short: one index load
 * and a forward scan of a few contiguous rows instead of a binary search
 * (15 dependent loads in libc), the walk's pc, sp and rbp in registers
 * (the rare paths -- frame-pointer steps, the rbp guess -- are out of line
 * and never see their addresses), and no module search while callers stay
 * in one module.  bench/unwind_cost.c, 64 frames on the development VM
 * (2.1 GHz EPYC), median: ~420 ns with warm caches (1340 with a binary
 * search over all rows), 1.1-1.6 us with the tables flushed from the
 * caches before each walk (2.2-2.7 us).
 */
#include "sigsafe/unwind.h"

struct unwind_set *_Atomic unwind_current;
_Atomic int sigsafe_active;

/* We read other functions' stack frames, which ASan may have poisoned
 * (redzones) or never unpoisoned (a foreign copy of a stack). */
#define WALKER __attribute__((no_sanitize("address")))

/* How far the rbp guess scans above sp, in 8-byte words. */
#define SCAN_WORDS 512

typedef uintptr_t __attribute__((may_alias)) stack_word;

/* The one place the walker reads the stack. */
static inline WALKER int stack_read(const struct unwind_stack *stk, uintptr_t addr,
                                    uintptr_t *out)
{
    if ((addr & 7) != 0 || addr < stk->lo || stk->hi < 8 || addr > stk->hi - 8)
        return 0;
    *out = *(const stack_word *)(addr + (uintptr_t)stk->delta);
    return 1;
}

WALKER const struct unwind_module *unwind_find_module(const struct unwind_set *set, uintptr_t pc)
{
    if (set == NULL || set->nmodules == 0)
        return NULL;
    /* The last module with lo <= pc. */
    uint32_t lo = 0, hi = set->nmodules;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (set->mods[mid].lo <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const struct unwind_module *m = &set->mods[lo - 1];
    return pc < m->hi ? m : NULL;
}

/* The last row in [base, base + n) with pc_off <= off, given that
 * base[0].pc_off <= off.  Branch-free: the loop runs ceil(log2 n) times
 * whatever the data, and the answer stays in the range. */
static inline WALKER const struct unwind_row *last_at_or_before(const struct unwind_row *base,
                                                                uint32_t n, uint32_t off)
{
    while (n > 1) {
        uint32_t half = n / 2;
        base = base[half].pc_off <= off ? base + half : base;
        n -= half;
    }
    return base;
}

/* The row for pc in m (see "The index" in unwind.h); NULL if none. */
static inline __attribute__((always_inline)) WALKER const struct unwind_row *
find_row(const struct unwind_module *m, uintptr_t pc)
{
    if (m == NULL || m->nrows == 0 || pc < m->bias || pc - m->bias > UINT32_MAX)
        return NULL;
    uint32_t off = (uint32_t)(pc - m->bias);
    const struct unwind_row *rows = m->rows, *r;
    if (off < rows[0].pc_off)
        return NULL;
    if (m->index != NULL) {
        uint32_t k = (off - rows[0].pc_off) >> UNWIND_INDEX_SHIFT;
        if (k >= m->nindex - 1) {
            r = rows + m->nrows - 1;
        } else {
            /* A forward scan: a bucket holds a few rows at most, contiguous
             * in memory, and their loads do not wait on each other as a
             * binary search's do. */
            const struct unwind_row *last = rows + m->index[k + 1];
            r = rows + m->index[k];
            while (r < last && r[1].pc_off <= off)
                r++;
        }
    } else {
        r = last_at_or_before(rows, m->nrows, off);
    }
    return (r->flags & UNWIND_ROW_GAP) ? NULL : r;
}

WALKER const struct unwind_row *unwind_find_row(const struct unwind_module *m, uintptr_t pc)
{
    return find_row(m, pc);
}

struct frame {
    uintptr_t pc, sp, fp;
    int fp_known;
};

enum step { STEP_OK, STEP_END, STEP_FAIL };

static inline WALKER int in_code(const struct unwind_set *set, uintptr_t pc)
{
    return set == NULL || set->nmodules == 0 || unwind_find_module(set, pc) != NULL;
}

/* One frame-pointer step; 0 if the frame record does not look valid. */
static WALKER int fp_step(const struct unwind_set *set, const struct unwind_stack *stk,
                          struct frame *f)
{
    uintptr_t next_fp, ra;
    if (!f->fp_known || f->fp < f->sp)
        return 0;
    if (!stack_read(stk, f->fp, &next_fp) || !stack_read(stk, f->fp + 8, &ra))
        return 0;
    if (ra == 0 || (next_fp != 0 && next_fp <= f->fp) || !in_code(set, ra))
        return 0;
    f->pc = ra;
    f->sp = f->fp + 16;
    f->fp = next_fp;
    return 1;
}

/* Whether a guessed frame -- return address ra, CFA cfa, the caller's rbp
 * saved (if have_saved) -- leads on to one more plausible frame: the
 * caller's own rule, applied to what the guess gives it, must find another
 * return address in a known module.  A local that merely holds a code
 * address rarely passes this. */
static WALKER int caller_plausible(const struct unwind_set *set, const struct unwind_stack *stk,
                                   uintptr_t a, uintptr_t ra, uintptr_t cfa, int have_saved,
                                   uintptr_t saved)
{
    const struct unwind_row *r = unwind_find_row(unwind_find_module(set, ra - 1), ra - 1);
    uintptr_t cfa2, ra2;
    if (r != NULL && r->cfa == UNWIND_CFA_UNDEF)
        return 1; /* the caller is the outermost frame */
    if (r != NULL && r->cfa == UNWIND_CFA_SP) {
        cfa2 = cfa + (uintptr_t)(intptr_t)r->cfa_off;
    } else if (r == NULL || r->cfa == UNWIND_CFA_FP) {
        /* The caller needs its rbp: it must be a frame record above us. */
        if (!have_saved || saved <= a || saved >= stk->hi)
            return 0;
        cfa2 = saved + (uintptr_t)(intptr_t)(r != NULL ? r->cfa_off : 16);
    } else {
        return 0;
    }
    return cfa2 > cfa && stack_read(stk, cfa2 - 8, &ra2) && ra2 != 0 &&
           unwind_find_module(set, ra2) != NULL;
}

/* Guesses rbp for a row whose CFA is rbp-based (see the file comment). */
static WALKER int guess_fp(const struct unwind_set *set, const struct unwind_stack *stk,
                           const struct unwind_row *row, struct frame *f)
{
    uintptr_t a = (f->sp + 7) & ~(uintptr_t)7;
    if (a < f->sp)
        return 0;
    for (int i = 0; i < SCAN_WORDS; i++, a += 8) {
        uintptr_t cfa = a + (uintptr_t)(intptr_t)row->cfa_off;
        uintptr_t ra, saved = 0;
        int have_saved = 0;
        if (a >= stk->hi)
            return 0;
        if (cfa <= a || !stack_read(stk, cfa - 8, &ra) || ra == 0)
            continue;
        const struct unwind_module *m = unwind_find_module(set, ra);
        if (m == NULL || (m->nrows > 0 && unwind_find_row(m, ra - 1) == NULL))
            continue;
        if (row->fp == UNWIND_FP_AT_CFA) {
            if (!stack_read(stk, cfa + (uintptr_t)(intptr_t)row->fp_off, &saved))
                continue;
            have_saved = 1;
        }
        if (!caller_plausible(set, stk, a, ra, cfa, have_saved, saved))
            continue;
        f->fp = a;
        f->fp_known = 1;
        return 1;
    }
    return 0;
}

/* The slow paths of a step, out of line, on a frame of their own that
 * step() fills only when it takes them: the walk loop's pc, sp and rbp
 * then never go through memory. */
static __attribute__((noinline)) WALKER enum step step_by_fp(const struct unwind_set *set,
                                                             const struct unwind_stack *stk,
                                                             uintptr_t *pc, uintptr_t *sp,
                                                             uintptr_t *fp, int *fp_known,
                                                             enum step fail)
{
    struct frame f = {*pc, *sp, *fp, *fp_known};
    if (!fp_step(set, stk, &f))
        return fail;
    *pc = f.pc;
    *sp = f.sp;
    *fp = f.fp;
    *fp_known = f.fp_known;
    return STEP_OK;
}

static __attribute__((noinline)) WALKER int guess_fp_slow(const struct unwind_set *set,
                                                          const struct unwind_stack *stk,
                                                          const struct unwind_row *row,
                                                          uintptr_t pc, uintptr_t sp,
                                                          uintptr_t *fp)
{
    struct frame f = {pc, sp, 0, 0};
    if (!guess_fp(set, stk, row, &f))
        return 0;
    *fp = f.fp;
    return 1;
}

/* One step of the walk, from the frame (*pc, *sp, *fp, *fp_known) to its
 * caller's; *mod caches the module of the last lookup. */
static inline __attribute__((always_inline)) WALKER enum step
step(const struct unwind_set *set, const struct unwind_stack *stk, uintptr_t *pc, uintptr_t *sp,
     uintptr_t *fp, int *fp_known, const struct unwind_module **mod, int leaf)
{
    uintptr_t lookup = leaf ? *pc : *pc - 1;
    if (*mod == NULL || lookup < (*mod)->lo || lookup >= (*mod)->hi)
        *mod = unwind_find_module(set, lookup);
    const struct unwind_row *row = find_row(*mod, lookup);
    uintptr_t cfa, ra, next_fp = *fp;
    int next_fp_known = *fp_known;

    if (row == NULL) {
        uintptr_t p = *pc, s = *sp, f = *fp;
        int k = *fp_known;
        enum step r = step_by_fp(set, stk, &p, &s, &f, &k, STEP_FAIL);
        *pc = p, *sp = s, *fp = f, *fp_known = k;
        return r;
    }
    switch (row->cfa) {
    case UNWIND_CFA_SP:
        cfa = *sp + (uintptr_t)(intptr_t)row->cfa_off;
        break;
    case UNWIND_CFA_FP:
        if (!*fp_known) {
            uintptr_t guessed;
            if (!guess_fp_slow(set, stk, row, *pc, *sp, &guessed))
                return STEP_FAIL;
            *fp = next_fp = guessed;
            *fp_known = next_fp_known = 1;
        }
        cfa = *fp + (uintptr_t)(intptr_t)row->cfa_off;
        break;
    case UNWIND_CFA_PLT:
        /* Only ever the innermost frame: a .plt entry jumps, never calls. */
        cfa = *sp + 8 + ((int32_t)(lookup & 15) >= row->cfa_off ? 8 : 0);
        break;
    default: {
        /* The outermost frame (_start, thread entry: the return address is
         * undefined), or a rule the table cannot express (stack
         * realignment, signal trampolines).  Frame pointers usually still
         * work in the second case; in the first rbp is 0 and the step
         * fails, which is the normal end. */
        uintptr_t p = *pc, s = *sp, f = *fp;
        int k = *fp_known;
        enum step r = step_by_fp(set, stk, &p, &s, &f, &k, STEP_END);
        *pc = p, *sp = s, *fp = f, *fp_known = k;
        return r;
    }
    }

    if (!stack_read(stk, cfa - 8, &ra))
        return STEP_FAIL;
    if (row->fp == UNWIND_FP_AT_CFA) {
        if (!stack_read(stk, cfa + (uintptr_t)(intptr_t)row->fp_off, &next_fp))
            return STEP_FAIL;
        next_fp_known = 1;
    }
    if (ra == 0)
        return STEP_END;
    if (cfa <= *sp)
        return STEP_FAIL;
    *pc = ra;
    *sp = cfa;
    *fp = next_fp;
    *fp_known = next_fp_known;
    return STEP_OK;
}

WALKER int unwind_walk(const struct unwind_regs *regs, const struct unwind_stack *stk,
                       uintptr_t *pcs, int max, int *truncated)
{
    int n = 0, trunc = 1;
    if (regs == NULL || stk == NULL || pcs == NULL || max <= 0 || regs->pc == 0) {
        if (truncated != NULL)
            *truncated = 1;
        return 0;
    }

    /* Counted before the set is loaded, both seq_cst: pairs with modules.c's
     * seq_cst exchange of the set and loads of sigsafe_active, so a set
     * this walk may hold is never freed under it.  (On x86 the increment
     * is a locked instruction and the load a plain one.) */
    atomic_fetch_add_explicit(&sigsafe_active, 1, memory_order_seq_cst);
    const struct unwind_set *set = atomic_load_explicit(&unwind_current, memory_order_seq_cst);

    uintptr_t pc = regs->pc, sp = regs->sp, fp = regs->fp;
    int fp_known = regs->fp_known != 0;
    const struct unwind_module *mod = NULL; /* callers are often in the same module */
    pcs[n++] = pc;
    while (n < max) {
        enum step s = step(set, stk, &pc, &sp, &fp, &fp_known, &mod, n == 1);
        if (s == STEP_END) {
            trunc = 0;
            break;
        }
        if (s == STEP_FAIL)
            break;
        pcs[n++] = pc;
    }

    atomic_fetch_sub_explicit(&sigsafe_active, 1, memory_order_release);
    if (truncated != NULL)
        *truncated = trunc;
    return n;
}
