/*
 * unwind_table.c — turns a loaded module's .eh_frame into the compact rows
 * the signal handler's walker reads (sigsafe/unwind.h), and builds the
 * index it searches them through.  eh_frame.c reads the records; this file
 * runs their CFA programs.  Runs on a normal thread (modules.c, under its
 * mutex), never in a signal handler.
 *
 * Design
 * ------
 * The walker only ever needs three things per pc on x86-64: how to find the
 * CFA (rsp or rbp plus an offset, or the .plt rule), where the caller's rbp
 * is (unchanged, or saved at CFA + off), and the return address, which the
 * psABI puts at CFA - 8.  So instead of interpreting DWARF in the handler,
 * we run every FDE's CFA program here, once per module, and keep one
 * 16-byte row per address range where those three rules change.
 *
 *   1. eh_frame.c finds .eh_frame and hands over each FDE with its CIE.
 *   2. Each CIE's initial instructions run once (cached by offset, when its
 *      first FDE comes); each FDE's program then runs from that state with
 *      a small state machine that tracks only the CFA, rbp (DWARF register
 *      6) and the return address column (16).  A row is emitted for each
 *      location the program advances past, and a GAP row at the FDE's end.
 *   3. Sort all rows by pc_off (GAP rows before real rows at the same pc, so
 *      an FDE that starts exactly where the previous one ends wins), keep
 *      the last row at each pc, and merge consecutive identical rows.
 *
 * What cannot be expressed becomes a row the walker will not follow:
 *   - a CFA in another register or a DWARF expression (other than the .plt
 *     one, below) -> UNWIND_CFA_UNDEF;
 *   - a return address that is undefined (_start, thread entry: the normal
 *     end of a stack) or not at CFA - 8 -> UNWIND_CFA_UNDEF;
 *   - rbp kept in another register or given by an expression -> treated as
 *     UNWIND_FP_SAME (rare; only matters if a caller then uses rbp as its
 *     CFA, and the walker bounds-checks everything it reads anyway);
 *   - offsets that do not fit the row's int32 fields -> UNDEF / SAME (no
 *     real frame is 2 GiB);
 *   - FDEs whose CIE is not x86-64's (RA column 16, data alignment -8), or
 *     whose range does not fit 32-bit offsets from the bias -> no rows.
 *
 * The .plt expression
 * -------------------
 * A lazy .plt entry pushes its relocation index and jumps to PLT0, so the
 * CFA is rsp + 8 before the push and rsp + 16 after it.  binutils (bfd/
 * elf64-x86-64.c, elf_x86_64_eh_frame_*_plt) describes every entry with one
 * expression, CFA = rsp + 8 + (((rip & 15) >= N) << 3), where N is the
 * offset of the instruction after the push in the 16-byte entry:
 *   N = 11  classic:    jmp *GOT(%rip) (6); push $i (5); jmp PLT0
 *   N =  9  IBT:        endbr64 (4); push $i (5); jmp PLT0
 *   N =  5  MPX:        push $i (5); bnd jmp PLT0
 *   N = 10  IBT + MPX:  endbr64 (4); push $i (5); bnd jmp PLT0 (the push
 *                       ends at 9; binutils says 10, and so do we, like
 *                       every unwinder that evaluates the expression)
 * Only N differs, so the expression is accepted with any DW_OP_lit<N> in
 * that place (it means exactly the same rule) and N goes into the row.
 * IBT entries come from `ld -z ibtplt`, or when every input object carries
 * the IBT property (-fcf-protection, which is not Debian's default); MPX
 * ones from the obsolete `ld -z bndplt`.  Those layouts send calls through
 * a second PLT, .plt.sec (endbr64 and an indirect jmp, no push), whose FDE,
 * like those of .plt.got and of non-lazy PLTs, keeps the CIE's plain rule
 * (CFA = rsp + 8) and needs nothing special.
 *
 * Robustness: the input may be garbage (tests fuzz it).  eh_frame.c bounds
 * every read; here all arithmetic on values from the input is
 * overflow-checked and the remember/restore stack is bounded.  Malformed
 * input gives -EINVAL and no rows -- with one exception in
 * unwind_table_build(): bytes that fail to parse after as many FDEs as
 * .eh_frame_hdr counts are taken for whatever follows an unterminated
 * section in its segment.  A CIE's initial instructions run only when an
 * FDE uses it, so a broken CIE that no FDE uses does not reject the rest.
 *
 * Checked against `readelf --debug-dump=frames-interp` for libc, libstdc++,
 * libm, ld.so, libdw and libcmocka.
 */
#include "unwind_table.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eh_frame.h"

/* DWARF register numbers on x86-64. */
#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16

/* Depth of the DW_CFA_remember_state stack; GCC needs 1 or 2. */
#define STATE_STACK 8

/* ---- the CFA state machine ---------------------------------------------- */

enum rule { RULE_UNSET, RULE_SAME, RULE_UNDEF, RULE_OFFSET, RULE_OTHER };
enum cfa_how { CFA_REG, CFA_PLT, CFA_EXPR };

/* Offsets that overflowed or are meaningless are kept as OFF_BAD, which no
 * int32 row field can hold, so the row says "cannot follow". */
#define OFF_BAD INT64_MIN

struct cfa_state {
    int64_t cfa_off;
    uint64_t cfa_reg;
    int64_t rbp_off, ra_off; /* for RULE_OFFSET: the value is at CFA + off */
    uint8_t cfa_how;         /* enum cfa_how */
    uint8_t plt_push_at;     /* CFA_PLT: N of the .plt expression */
    uint8_t rbp;             /* enum rule */
    uint8_t ra;              /* enum rule */
};

/* A row being collected, with its emission order for a stable sort. */
struct row_rec {
    struct unwind_row row;
    uint32_t seq;
};

struct rowvec {
    struct row_rec *v;
    size_t n, cap;
    uint32_t seq;
};

/* Where the program runs: inside an FDE (rows emitted) or a CIE's initial
 * instructions (fde == 0: location instructions are ignored). */
struct program {
    const struct eh_frame_image *img;
    const struct eh_frame_cie *cie;
    int fde;
    uint64_t loc, end;    /* absolute pcs */
    uintptr_t bias;
    struct rowvec *rv;
    size_t fde_first;     /* index of this FDE's first row in rv */
};

static int64_t factored(int64_t v, int64_t f)
{
    int64_t r;
    if (v == OFF_BAD || __builtin_mul_overflow(v, f, &r) || r == OFF_BAD)
        return OFF_BAD;
    return r;
}

static int64_t uleb_factored(uint64_t v, int64_t f)
{
    if (v > (uint64_t)INT64_MAX)
        return OFF_BAD;
    return factored((int64_t)v, f);
}

static int fits32(int64_t v)
{
    return v >= INT32_MIN && v <= INT32_MAX;
}

static void state_to_row(const struct cfa_state *s, uint32_t pc_off, struct unwind_row *r)
{
    memset(r, 0, sizeof *r);
    r->pc_off = pc_off;
    r->cfa = UNWIND_CFA_UNDEF;
    r->fp = UNWIND_FP_SAME;

    /* The return address: the psABI default (unset) and the usual CIE rule
     * both put it at CFA - 8; anything else we cannot follow.  Undefined is
     * how _start and thread entry mark the outermost frame. */
    if (!(s->ra == RULE_UNSET || (s->ra == RULE_OFFSET && s->ra_off == -8)))
        return;
    if (s->cfa_how == CFA_PLT) {
        r->cfa = UNWIND_CFA_PLT;
        r->cfa_off = s->plt_push_at;
    } else if (s->cfa_how == CFA_REG && fits32(s->cfa_off) &&
               (s->cfa_reg == REG_RSP || s->cfa_reg == REG_RBP)) {
        r->cfa = s->cfa_reg == REG_RSP ? UNWIND_CFA_SP : UNWIND_CFA_FP;
        r->cfa_off = (int32_t)s->cfa_off;
    } else {
        return;
    }
    if (s->rbp == RULE_OFFSET && fits32(s->rbp_off)) {
        r->fp = UNWIND_FP_AT_CFA;
        r->fp_off = (int32_t)s->rbp_off;
    }
}
static int rowvec_push(struct rowvec *rv, const struct unwind_row *row)
{
    if (rv->n == rv->cap) {
        size_t cap = rv->cap ? rv->cap * 2 : 1024;
        if (cap > SIZE_MAX / sizeof *rv->v || rv->seq == UINT32_MAX)
            return -ENOMEM;
        struct row_rec *v = realloc(rv->v, cap * sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        rv->v = v;
        rv->cap = cap;
    }
    rv->v[rv->n].row = *row;
    rv->v[rv->n].seq = rv->seq++;
    rv->n++;
    return 0;
}

/* The state s holds from pr->loc on.  A later row at the same location
 * replaces it (a zero advance, or several rule changes at one pc). */
static int emit(struct program *pr, const struct cfa_state *s)
{
    if (!pr->fde || pr->loc >= pr->end)
        return 0;
    struct unwind_row row;
    state_to_row(s, (uint32_t)(pr->loc - pr->bias), &row);
    if (pr->rv->n > pr->fde_first && pr->rv->v[pr->rv->n - 1].row.pc_off == row.pc_off) {
        pr->rv->v[pr->rv->n - 1].row = row;
        return 0;
    }
    return rowvec_push(pr->rv, &row);
}

static int advance(struct program *pr, const struct cfa_state *s, uint64_t delta)
{
    uint64_t d;
    if (!pr->fde)
        return 0;
    if (__builtin_mul_overflow(delta, pr->cie->code_align, &d))
        return -EINVAL;
    int err = emit(pr, s);
    if (err < 0)
        return err;
    if (__builtin_add_overflow(pr->loc, d, &pr->loc))
        return -EINVAL;
    return 0;
}

static void set_rule(struct cfa_state *s, uint64_t reg, uint8_t rule, int64_t off)
{
    if (reg == REG_RBP) {
        s->rbp = rule;
        s->rbp_off = off;
    } else if (reg == REG_RA) {
        s->ra = rule;
        s->ra_off = off;
    }
}

static void restore_rule(struct cfa_state *s, const struct cfa_state *init, uint64_t reg)
{
    if (reg == REG_RBP) {
        s->rbp = init->rbp;
        s->rbp_off = init->rbp_off;
    } else if (reg == REG_RA) {
        s->ra = init->ra;
        s->ra_off = init->ra_off;
    }
}

/* The .plt CFA expression (see the file comment); N, the byte at
 * PLT_EXPR_N, is DW_OP_lit<N>. */
static const uint8_t plt_expr[] = {
    0x77, 0x08, /* DW_OP_breg7 (rsp) 8 */
    0x80, 0x00, /* DW_OP_breg16 (rip) 0 */
    0x3f,       /* DW_OP_lit15 */
    0x1a,       /* DW_OP_and */
    0x3b,       /* DW_OP_lit<N>: 0x30 + N, here N = 11 */
    0x2a,       /* DW_OP_ge */
    0x33,       /* DW_OP_lit3 */
    0x24,       /* DW_OP_shl */
    0x22        /* DW_OP_plus */
};
#define PLT_EXPR_N 6
#define DW_OP_LIT0 0x30
#define DW_OP_LIT31 0x4f

/* 1 and *n if the len bytes at p are the .plt expression for some N. */
static int is_plt_expr(const uint8_t *p, uint64_t len, uint8_t *n)
{
    if (len != sizeof plt_expr)
        return 0;
    for (size_t i = 0; i < sizeof plt_expr; i++) {
        if (i == PLT_EXPR_N) {
            if (p[i] < DW_OP_LIT0 || p[i] > DW_OP_LIT31)
                return 0;
        } else if (p[i] != plt_expr[i]) {
            return 0;
        }
    }
    *n = (uint8_t)(p[PLT_EXPR_N] - DW_OP_LIT0);
    return 1;
}

/* Runs the CFA instructions in c over state s.  init is the state after the
 * CIE's initial instructions (for DW_CFA_restore). */
static int run_program(struct program *pr, struct eh_frame_cursor c, struct cfa_state *s,
                       const struct cfa_state *init)
{
    struct cfa_state stack[STATE_STACK];
    int depth = 0;
    const int64_t daf = pr->cie->data_align;

    while (c.p < c.end) {
        uint8_t op, b;
        uint64_t reg, u, reg2;
        int64_t sv;
        uint16_t u16;
        uint32_t u32;
        int err = 0;

        if (eh_frame_read_u8(&c, &op) < 0)
            return -EINVAL;
        switch (op & 0xc0) {
        case 0x40: /* DW_CFA_advance_loc */
            err = advance(pr, s, op & 0x3f);
            if (err < 0)
                return err;
            continue;
        case 0x80: /* DW_CFA_offset */
            if (eh_frame_read_uleb(&c, &u) < 0)
                return -EINVAL;
            set_rule(s, op & 0x3f, RULE_OFFSET, uleb_factored(u, daf));
            continue;
        case 0xc0: /* DW_CFA_restore */
            restore_rule(s, init, op & 0x3f);
            continue;
        }
        switch (op) {
        case 0x00: /* DW_CFA_nop */
        case 0x2d: /* DW_CFA_GNU_window_save (SPARC; no operands) */
            break;
        case 0x01: { /* DW_CFA_set_loc */
            uint64_t loc;
            if (eh_frame_read_encoded(pr->img, &c, pr->cie->fde_enc, 0, &loc) < 0)
                return -EINVAL;
            if (pr->fde) {
                if (loc < pr->loc)
                    return -EINVAL;
                if ((err = emit(pr, s)) < 0)
                    return err;
                pr->loc = loc;
            }
            break;
        }
        case 0x02: /* DW_CFA_advance_loc1 */
            if (eh_frame_read_u8(&c, &b) < 0)
                return -EINVAL;
            err = advance(pr, s, b);
            break;
        case 0x03: /* DW_CFA_advance_loc2 */
            if (eh_frame_read_bytes(&c, &u16, 2) < 0)
                return -EINVAL;
            err = advance(pr, s, u16);
            break;
        case 0x04: /* DW_CFA_advance_loc4 */
            if (eh_frame_read_bytes(&c, &u32, 4) < 0)
                return -EINVAL;
            err = advance(pr, s, u32);
            break;
        case 0x05: /* DW_CFA_offset_extended */
            if (eh_frame_read_uleb(&c, &reg) < 0 || eh_frame_read_uleb(&c, &u) < 0)
                return -EINVAL;
            set_rule(s, reg, RULE_OFFSET, uleb_factored(u, daf));
            break;
        case 0x06: /* DW_CFA_restore_extended */
            if (eh_frame_read_uleb(&c, &reg) < 0)
                return -EINVAL;
            restore_rule(s, init, reg);
            break;
        case 0x07: /* DW_CFA_undefined */
            if (eh_frame_read_uleb(&c, &reg) < 0)
                return -EINVAL;
            set_rule(s, reg, RULE_UNDEF, 0);
            break;
        case 0x08: /* DW_CFA_same_value */
            if (eh_frame_read_uleb(&c, &reg) < 0)
                return -EINVAL;
            set_rule(s, reg, RULE_SAME, 0);
            break;
        case 0x09: /* DW_CFA_register */
            if (eh_frame_read_uleb(&c, &reg) < 0 || eh_frame_read_uleb(&c, &reg2) < 0)
                return -EINVAL;
            set_rule(s, reg, reg == reg2 ? RULE_SAME : RULE_OTHER, 0);
            break;
        case 0x0a: /* DW_CFA_remember_state: the whole row, CFA included,
                      as libgcc and LLVM's libunwind do */
            if (depth == STATE_STACK)
                return -EINVAL;
            stack[depth++] = *s;
            break;
        case 0x0b: /* DW_CFA_restore_state */
            if (depth == 0)
                return -EINVAL;
            *s = stack[--depth];
            break;
        case 0x0c: /* DW_CFA_def_cfa */
            if (eh_frame_read_uleb(&c, &reg) < 0 || eh_frame_read_uleb(&c, &u) < 0)
                return -EINVAL;
            s->cfa_how = CFA_REG;
            s->cfa_reg = reg;
            s->cfa_off = u > INT64_MAX ? OFF_BAD : (int64_t)u;
            break;
        case 0x0d: /* DW_CFA_def_cfa_register */
            if (eh_frame_read_uleb(&c, &reg) < 0)
                return -EINVAL;
            if (s->cfa_how != CFA_REG)
                s->cfa_off = OFF_BAD; /* no offset to keep: invalid per DWARF */
            s->cfa_how = CFA_REG;
            s->cfa_reg = reg;
            break;
        case 0x0e: /* DW_CFA_def_cfa_offset */
            if (eh_frame_read_uleb(&c, &u) < 0)
                return -EINVAL;
            s->cfa_off = u > INT64_MAX ? OFF_BAD : (int64_t)u;
            break;
        case 0x0f: /* DW_CFA_def_cfa_expression */
            if (eh_frame_read_uleb(&c, &u) < 0)
                return -EINVAL;
            if (u > (uint64_t)(c.end - c.p))
                return -EINVAL;
            s->cfa_how = is_plt_expr(c.p, u, &s->plt_push_at) ? CFA_PLT : CFA_EXPR;
            c.p += u;
            break;
        case 0x10: /* DW_CFA_expression */
        case 0x16: /* DW_CFA_val_expression */
            if (eh_frame_read_uleb(&c, &reg) < 0 || eh_frame_read_uleb(&c, &u) < 0 ||
                eh_frame_skip(&c, u) < 0)
                return -EINVAL;
            set_rule(s, reg, RULE_OTHER, 0);
            break;
        case 0x11: /* DW_CFA_offset_extended_sf */
            if (eh_frame_read_uleb(&c, &reg) < 0 || eh_frame_read_sleb(&c, &sv) < 0)
                return -EINVAL;
            set_rule(s, reg, RULE_OFFSET, factored(sv, daf));
            break;
        case 0x12: /* DW_CFA_def_cfa_sf */
            if (eh_frame_read_uleb(&c, &reg) < 0 || eh_frame_read_sleb(&c, &sv) < 0)
                return -EINVAL;
            s->cfa_how = CFA_REG;
            s->cfa_reg = reg;
            s->cfa_off = factored(sv, daf);
            break;
        case 0x13: /* DW_CFA_def_cfa_offset_sf */
            if (eh_frame_read_sleb(&c, &sv) < 0)
                return -EINVAL;
            s->cfa_off = factored(sv, daf);
            break;
        case 0x14: /* DW_CFA_val_offset */
            if (eh_frame_read_uleb(&c, &reg) < 0 || eh_frame_read_uleb(&c, &u) < 0)
                return -EINVAL;
            set_rule(s, reg, RULE_OTHER, 0);
            break;
        case 0x15: /* DW_CFA_val_offset_sf */
            if (eh_frame_read_uleb(&c, &reg) < 0 || eh_frame_read_sleb(&c, &sv) < 0)
                return -EINVAL;
            set_rule(s, reg, RULE_OTHER, 0);
            break;
        case 0x2e: /* DW_CFA_GNU_args_size */
            if (eh_frame_read_uleb(&c, &u) < 0)
                return -EINVAL;
            break;
        case 0x2f: /* DW_CFA_GNU_negative_offset_extended */
            if (eh_frame_read_uleb(&c, &reg) < 0 || eh_frame_read_uleb(&c, &u) < 0)
                return -EINVAL;
            set_rule(s, reg, RULE_OFFSET,
                     u > INT64_MAX ? OFF_BAD : factored(-(int64_t)u, daf));
            break;
        default:
            return -EINVAL;
        }
        if (err < 0)
            return err;
    }
    return 0;
}

/* ---- FDEs to rows -------------------------------------------------------- */

struct build {
    uintptr_t bias;
    struct rowvec rv;
    /* The CIE whose initial state is cached: FDEs mostly share one. */
    size_t cie_off;
    int cie_usable; /* RA column 16, data alignment -8, code alignment >= 1 */
    struct cfa_state cie_init;
};

/* Runs the CIE's initial instructions into b->cie_init (once per CIE). */
static int load_cie(const struct eh_frame_image *img, const struct eh_frame_cie *cie,
                    struct build *b)
{
    if (b->cie_off == cie->off)
        return 0;
    b->cie_off = SIZE_MAX;
    b->cie_usable = cie->ra_column == REG_RA && cie->data_align == -8 && cie->code_align >= 1;
    memset(&b->cie_init, 0, sizeof b->cie_init);
    b->cie_init.cfa_how = CFA_EXPR; /* no CFA rule until def_cfa */
    struct program pr = {.img = img, .cie = cie, .fde = 0};
    struct cfa_state empty = b->cie_init;
    if (run_program(&pr, cie->insns, &b->cie_init, &empty) < 0)
        return -EINVAL;
    b->cie_off = cie->off;
    return 0;
}

static int add_fde(const struct eh_frame_image *img, const struct eh_frame_cie *cie,
                   const struct eh_frame_fde *fde, void *arg)
{
    struct build *b = arg;
    uint64_t pc_begin = fde->pc_begin, pc_range = fde->pc_range;
    int err = load_cie(img, cie, b);
    if (err < 0)
        return err;
    /* Only FDEs whose range fits the rows' 32-bit offsets from the bias. */
    if (!b->cie_usable || pc_range == 0 || pc_begin < b->bias ||
        pc_begin - b->bias > UINT32_MAX || pc_range > UINT32_MAX - (pc_begin - b->bias))
        return 0;

    struct program pr = {
        .img = img, .cie = cie, .fde = 1, .loc = pc_begin, .end = pc_begin + pc_range,
        .bias = b->bias, .rv = &b->rv, .fde_first = b->rv.n,
    };
    struct cfa_state s = b->cie_init;
    if ((err = run_program(&pr, fde->insns, &s, &b->cie_init)) < 0)
        return err;
    if ((err = emit(&pr, &s)) < 0)
        return err;
    struct unwind_row gap = {.pc_off = (uint32_t)(pr.end - b->bias), .flags = UNWIND_ROW_GAP};
    return rowvec_push(&b->rv, &gap);
}

static int cmp_rec(const void *a, const void *b)
{
    const struct row_rec *x = a, *y = b;
    if (x->row.pc_off != y->row.pc_off)
        return x->row.pc_off < y->row.pc_off ? -1 : 1;
    /* At one pc a GAP sorts first, so an FDE starting there wins. */
    int xg = x->row.flags & UNWIND_ROW_GAP, yg = y->row.flags & UNWIND_ROW_GAP;
    if (xg != yg)
        return xg ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int same_rule(const struct unwind_row *a, const struct unwind_row *b)
{
    return a->cfa == b->cfa && a->cfa_off == b->cfa_off && a->fp == b->fp &&
           a->fp_off == b->fp_off && a->flags == b->flags;
}

/* Sorts, keeps the last row at each pc, merges identical neighbours, and
 * hands the result to the caller.  Consumes rv. */
static int finish_rows(struct rowvec *rv, struct unwind_row **rows, size_t *nrows)
{
    *rows = NULL;
    *nrows = 0;
    if (rv->n == 0) {
        free(rv->v);
        return 0;
    }
    qsort(rv->v, rv->n, sizeof *rv->v, cmp_rec);
    struct unwind_row *out = malloc(rv->n * sizeof *out);
    if (out == NULL) {
        free(rv->v);
        return -ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < rv->n; i++) {
        const struct unwind_row *r = &rv->v[i].row;
        if (i + 1 < rv->n && rv->v[i + 1].row.pc_off == r->pc_off)
            continue;
        if (n > 0 && same_rule(&out[n - 1], r))
            continue;
        if (n == 0 && (r->flags & UNWIND_ROW_GAP))
            continue; /* nothing before it to end */
        out[n++] = *r;
    }
    free(rv->v);
    if (n == 0) {
        free(out);
        return 0;
    }
    struct unwind_row *shrunk = realloc(out, n * sizeof *out);
    *rows = shrunk ? shrunk : out;
    *nrows = n;
    return 0;
}

/* Rows from img; fde_count as for eh_frame_locate (0: unknown). */
static int build_rows(const struct eh_frame_image *img, uintptr_t bias, size_t fde_count,
                      struct unwind_row **rows, size_t *nrows)
{
    struct build b = {.bias = bias, .cie_off = SIZE_MAX};
    size_t fdes;
    *rows = NULL;
    *nrows = 0;
    int err = eh_frame_for_each_fde(img, add_fde, &b, &fdes);
    /* Without a terminator the segment's tail is not .eh_frame: bytes that
     * fail to parse after every FDE the header lists are not an error. */
    if (err == -EINVAL && fde_count > 0 && fdes >= fde_count)
        err = 0;
    if (err < 0) {
        free(b.rv.v);
        return err;
    }
    return finish_rows(&b.rv, rows, nrows);
}

int unwind_table_from_eh_frame(const uint8_t *eh_frame, size_t len, uintptr_t eh_frame_addr,
                               uintptr_t bias, struct unwind_row **rows, size_t *nrows)
{
    struct eh_frame_image img = {eh_frame, len, eh_frame_addr, NULL};
    *rows = NULL;
    *nrows = 0;
    if (eh_frame == NULL || len > EH_FRAME_MAX)
        return -EINVAL;
    return build_rows(&img, bias, 0, rows, nrows);
}

int unwind_table_build(const struct dl_phdr_info *info, struct unwind_row **rows, size_t *nrows)
{
    struct eh_frame_image img;
    size_t fde_count;
    *rows = NULL;
    *nrows = 0;
    int found = eh_frame_locate(info, &img, &fde_count);
    if (found <= 0)
        return found; /* 0: no .eh_frame, no rows */
    return build_rows(&img, info->dlpi_addr, fde_count, rows, nrows);
}

/* ---- the index ----------------------------------------------------------- */

/* An index may cost at most this many entries per row (plus a little):
 * compiled code has a row every 60 bytes or so (libc), and across 280
 * Debian libraries no module came near this bound; rows spread thinner
 * (huge gaps without CFI, or garbage FDEs far apart) are searched without
 * an index. */
#define INDEX_PER_ROW 4
#define INDEX_SLACK 1024

int unwind_table_index(const struct unwind_row *rows, size_t nrows, uint32_t **index,
                       uint32_t *nindex)
{
    *index = NULL;
    *nindex = 0;
    if (nrows == 0 || nrows > UINT32_MAX)
        return 0;
    uint32_t base = rows[0].pc_off;
    uint64_t buckets = ((uint64_t)(rows[nrows - 1].pc_off - base) >> UNWIND_INDEX_SHIFT) + 1;
    if (buckets > (uint64_t)nrows * INDEX_PER_ROW + INDEX_SLACK)
        return 0;
    uint32_t *ix = malloc((size_t)(buckets + 1) * sizeof *ix);
    if (ix == NULL)
        return -ENOMEM;
    /* One pass: j only moves forward, to the last row at or before each
     * bucket's start. */
    size_t j = 0;
    for (uint64_t k = 0; k < buckets; k++) {
        uint64_t start = base + (k << UNWIND_INDEX_SHIFT);
        while (j + 1 < nrows && rows[j + 1].pc_off <= start)
            j++;
        ix[k] = (uint32_t)j;
    }
    ix[buckets] = (uint32_t)(nrows - 1);
    *index = ix;
    *nindex = (uint32_t)(buckets + 1);
    return 0;
}
