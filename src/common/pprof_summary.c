/*
 * pprof_summary.c — summaries of a decoded profile (pprof.h, "Collapsed
 * stacks" and "Top functions"): collapsed stacks in the flamegraph.pl
 * format, top functions (flat, cum), and values formatted the way go tool
 * pprof shows them.  What `sonde top` and `sonde collapse` print, and
 * what the agent's collapsed export writes (pprof_collapsed_*).
 *
 * Both summaries start from the frame names of every location (inline
 * frames expanded) computed once per profile, then walk the samples by
 * location array index (pprof_internal.h).  Equal stacks and equal
 * function names merge through a strtab.
 */
#include "pprof.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "pprof_internal.h"
#include "strtab.h"

/* Values come from files and the network: sums saturate instead of
 * overflowing (undefined behaviour in C). */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_abs(int64_t v)
{
    return v == INT64_MIN ? INT64_MAX : v < 0 ? -v : v;
}

/* ------------------------------------------------------------------ */
/* Frame names of a decoded profile                                    */

/* The names of every location's lines, innermost first: location i's
 * names are names[start[i] .. start[i + 1]).  A line without a function
 * name (or a location without lines) gets its system name, else
 * "<mapping basename>+0x<file offset>", else "0x<address>". */
struct frame_names {
    const char **names;
    size_t *start;
    char **owned; /* synthesized names */
    size_t nowned;
};

static void frame_names_free(struct frame_names *fn)
{
    for (size_t i = 0; i < fn->nowned; i++)
        free(fn->owned[i]);
    free(fn->owned);
    free(fn->names);
    free(fn->start);
}

const char *pprof_frame_name(const struct pprof_profile *p, const Perftools__Profiles__Location *l,
                             size_t j, char *buf, size_t len)
{
    if (j < l->n_line) {
        uint64_t fid = l->line[j]->function_id;
        const Perftools__Profiles__Function *f = fid ? pprof_function(p, fid) : NULL;
        const char *name = f ? pprof_string(p, f->name) : "";
        if (!*name && f)
            name = pprof_string(p, f->system_name);
        if (*name)
            return name;
    }
    const Perftools__Profiles__Mapping *m = l->mapping_id ? pprof_mapping(p, l->mapping_id) : NULL;
    const char *file = m ? pprof_string(p, m->filename) : "";
    if (*file) {
        const char *base = strrchr(file, '/');
        base = base ? base + 1 : file;
        uint64_t off = l->address - m->memory_start + m->file_offset;
        snprintf(buf, len, "%s+0x%" PRIx64, base, off);
    } else {
        snprintf(buf, len, "0x%" PRIx64, l->address);
    }
    return buf;
}

/* The name of line j of l, synthesized names kept in fn->owned. */
static const char *frame_name(const struct pprof_profile *p, const Perftools__Profiles__Location *l,
                              size_t j, struct frame_names *fn)
{
    char buf[512];
    const char *name = pprof_frame_name(p, l, j, buf, sizeof buf);
    if (name != buf)
        return name;
    char *s = strdup(buf);
    if (!s)
        return NULL;
    fn->owned[fn->nowned++] = s;
    return s;
}

static int frame_names_build(const struct pprof_profile *p, struct frame_names *fn)
{
    const Perftools__Profiles__Profile *m = p->pb;
    memset(fn, 0, sizeof *fn);
    size_t total = 0;
    for (size_t i = 0; i < m->n_location; i++)
        total += m->location[i]->n_line ? m->location[i]->n_line : 1;
    fn->names = malloc((total ? total : 1) * sizeof *fn->names);
    fn->start = malloc((m->n_location + 1) * sizeof *fn->start);
    fn->owned = malloc((total ? total : 1) * sizeof *fn->owned);
    if (!fn->names || !fn->start || !fn->owned)
        goto oom;
    size_t k = 0;
    for (size_t i = 0; i < m->n_location; i++) {
        const Perftools__Profiles__Location *l = m->location[i];
        fn->start[i] = k;
        size_t n = l->n_line ? l->n_line : 1;
        for (size_t j = 0; j < n; j++)
            if (!(fn->names[k++] = frame_name(p, l, j, fn)))
                goto oom;
    }
    fn->start[m->n_location] = k;
    return 0;
oom:
    frame_names_free(fn);
    return -ENOMEM;
}

/* ------------------------------------------------------------------ */
/* Collapsed stacks                                                    */

/* Until pprof_collapsed_finish, the strtab owns the stacks and lines[i]
 * is the line of stacks.strs[i]; finish hands the strings over to the
 * lines it keeps (it reorders them, which the strtab could not follow). */
struct collapsed_state {
    struct strtab stacks;
    char *scratch;
    size_t scratchcap;
    size_t cap;
    bool finished;
};

struct pprof_collapsed *pprof_collapsed_new(void)
{
    struct pprof_collapsed *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->state = calloc(1, sizeof *c->state);
    if (!c->state) {
        free(c);
        return NULL;
    }
    return c;
}

void pprof_collapsed_free(struct pprof_collapsed *c)
{
    if (!c)
        return;
    if (c->state && c->state->finished)
        for (size_t i = 0; i < c->n; i++)
            free(c->lines[i].stack);
    free(c->lines);
    if (c->state) {
        strtab_free(&c->state->stacks);
        free(c->state->scratch);
        free(c->state);
    }
    free(c);
}

int pprof_collapsed_add(struct pprof_collapsed *c, const char *const *frames, size_t n,
                        int64_t value)
{
    struct collapsed_state *st = c->state;
    if (st->finished)
        return -EINVAL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = frames[i] && *frames[i] ? strlen(frames[i]) : 1;
        if (l > SIZE_MAX / 2 - len)
            return -ENOMEM;
        len += l + 1;
    }
    if (array_grow(&st->scratch, &st->scratchcap, len + 1, 1) != 0)
        return -ENOMEM;
    char *w = st->scratch;
    for (size_t i = 0; i < n; i++) {
        if (i)
            *w++ = ';';
        const char *f = frames[i] && *frames[i] ? frames[i] : "?";
        for (; *f; f++)
            *w++ = (*f == ';' || *f == '\n' || *f == '\r') ? '_' : *f;
    }
    *w = '\0';
    int64_t found = strtab_find(&st->stacks, st->scratch);
    if (found >= 0) {
        c->lines[found].value = sat_add(c->lines[found].value, value);
        return 0;
    }
    /* Room for the line first: a stack interned without its line would
     * break lines[i] <-> stacks.strs[i]. */
    if (array_grow(&c->lines, &st->cap, c->n + 1, sizeof *c->lines) != 0 ||
        strtab_intern(&st->stacks, st->scratch) < 0)
        return -ENOMEM;
    c->lines[c->n].stack = st->stacks.strs[c->n];
    c->lines[c->n].value = value;
    c->n++;
    return 0;
}

static int cmp_stack_line(const void *a, const void *b)
{
    return strcmp(((const struct pprof_stack_line *)a)->stack,
                  ((const struct pprof_stack_line *)b)->stack);
}

void pprof_collapsed_finish(struct pprof_collapsed *c)
{
    if (c->state->finished)
        return;
    free(strtab_release(&c->state->stacks)); /* the lines own the stacks now */
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->lines[i].value == 0)
            free(c->lines[i].stack);
        else
            c->lines[k++] = c->lines[i];
    }
    c->n = k;
    if (c->n > 1)
        qsort(c->lines, c->n, sizeof *c->lines, cmp_stack_line);
    c->state->finished = true;
}

int pprof_collapsed_write(const struct pprof_collapsed *c, FILE *f)
{
    for (size_t i = 0; i < c->n; i++)
        if (fprintf(f, "%s %" PRId64 "\n", c->lines[i].stack, c->lines[i].value) < 0)
            return -EIO;
    return ferror(f) ? -EIO : 0;
}

/* What both summaries start from: a valid sample index si and the frame
 * names (free with frame_names_free).  0, -EINVAL (bad si) or -ENOMEM. */
static int summary_begin(const struct pprof_profile *p, int si, struct frame_names *fn)
{
    if (si < 0 || (size_t)si >= p->pb->n_sample_type)
        return -EINVAL;
    return frame_names_build(p, fn);
}

int pprof_collapse(const struct pprof_profile *p, int si, struct pprof_collapsed **out)
{
    *out = NULL;
    struct frame_names fn;
    int rc = summary_begin(p, si, &fn);
    if (rc != 0)
        return rc;
    const Perftools__Profiles__Profile *m = p->pb;
    struct pprof_collapsed *c = pprof_collapsed_new();
    const char **stack = NULL;
    size_t stackcap = 0;
    if (!c)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < m->n_sample; i++) {
        const Perftools__Profiles__Sample *s = m->sample[i];
        int64_t v = s->value[si];
        if (v == 0 || s->n_location_id == 0)
            continue;
        size_t depth = 0;
        for (size_t j = 0; j < s->n_location_id; j++) {
            size_t li = pprof_location_index(p, s->location_id[j]);
            depth += fn.start[li + 1] - fn.start[li];
        }
        if (array_grow(&stack, &stackcap, depth, sizeof *stack) != 0) {
            rc = -ENOMEM;
            break;
        }
        /* Root first: the last location's last (outermost) line first. */
        size_t k = 0;
        for (size_t j = s->n_location_id; j-- > 0;) {
            size_t li = pprof_location_index(p, s->location_id[j]);
            for (size_t q = fn.start[li + 1]; q-- > fn.start[li];)
                stack[k++] = fn.names[q];
        }
        rc = pprof_collapsed_add(c, stack, k, v);
    }
    free(stack);
    frame_names_free(&fn);
    if (rc != 0) {
        pprof_collapsed_free(c);
        return rc;
    }
    pprof_collapsed_finish(c);
    *out = c;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Top functions                                                       */

static int cmp_top_row(const void *a, const void *b)
{
    const struct pprof_top_row *x = a, *y = b;
    if (x->flat != y->flat)
        return x->flat > y->flat ? -1 : 1;
    if (x->cum != y->cum)
        return x->cum > y->cum ? -1 : 1;
    return strcmp(x->name, y->name);
}

void pprof_top_free(struct pprof_top *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free((char *)t->rows[i].name);
    free(t->rows);
    free(t);
}

int pprof_top_compute(const struct pprof_profile *p, int si, struct pprof_top **out)
{
    *out = NULL;
    struct frame_names fn;
    int rc = summary_begin(p, si, &fn);
    if (rc != 0)
        return rc;
    const Perftools__Profiles__Profile *m = p->pb;
    size_t total_names = fn.start[m->n_location];
    /* One row per distinct name: row r is names.strs[r].  rowof maps a
     * name slot of fn to its row; stamp[r] is the last sample (+ 1) that
     * counted row r in cum. */
    struct strtab names = {0};
    struct pprof_top_row *rows = NULL;
    int64_t *rowof = malloc((total_names ? total_names : 1) * sizeof *rowof);
    size_t *stamp = NULL;
    if (!rowof)
        rc = -ENOMEM;
    for (size_t k = 0; rc == 0 && k < total_names; k++)
        if ((rowof[k] = strtab_intern(&names, fn.names[k])) < 0)
            rc = -ENOMEM;
    size_t nrows = names.n;
    if (rc == 0 && (!(rows = calloc(nrows ? nrows : 1, sizeof *rows)) ||
                    !(stamp = calloc(nrows ? nrows : 1, sizeof *stamp))))
        rc = -ENOMEM;
    int64_t total = 0, min_value = 0;
    for (size_t i = 0; rc == 0 && i < m->n_sample; i++) {
        const Perftools__Profiles__Sample *s = m->sample[i];
        int64_t v = s->value[si];
        int64_t a = sat_abs(v);
        total = sat_add(total, a);
        if (a && (!min_value || a < min_value))
            min_value = a;
        if (v == 0 || s->n_location_id == 0)
            continue;
        size_t leaf = pprof_location_index(p, s->location_id[0]);
        struct pprof_top_row *lr = &rows[rowof[fn.start[leaf]]];
        lr->flat = sat_add(lr->flat, v);
        for (size_t j = 0; j < s->n_location_id; j++) {
            size_t li = pprof_location_index(p, s->location_id[j]);
            for (size_t q = fn.start[li]; q < fn.start[li + 1]; q++) {
                int64_t r = rowof[q];
                if (stamp[r] != i + 1) { /* once per sample: recursion */
                    stamp[r] = i + 1;
                    rows[r].cum = sat_add(rows[r].cum, v);
                }
            }
        }
    }
    free(rowof);
    free(stamp);
    frame_names_free(&fn);
    struct pprof_top *top = rc == 0 ? calloc(1, sizeof *top) : NULL;
    if (!top) {
        strtab_free(&names);
        free(rows);
        return -ENOMEM;
    }
    char **strs = strtab_release(&names); /* the rows own the names now */
    for (size_t r = 0; r < nrows; r++)
        rows[r].name = strs[r];
    free(strs);
    if (nrows > 1)
        qsort(rows, nrows, sizeof *rows, cmp_top_row);
    top->rows = rows;
    top->n = nrows;
    top->total = total;
    top->min_value = min_value;
    top->type = pprof_string(p, m->sample_type[si]->type);
    top->unit = pprof_string(p, m->sample_type[si]->unit);
    *out = top;
    return 0;
}

/* "%.2f" without a ".00" tail, as go tool pprof's measurement package. */
static void scaled(char *buf, size_t len, double v, const char *suffix)
{
    char num[64];
    snprintf(num, sizeof num, "%.2f", v);
    size_t l = strlen(num);
    if (l > 3 && strcmp(num + l - 3, ".00") == 0)
        num[l - 3] = '\0';
    snprintf(buf, len, "%s%s", num, suffix);
}

void pprof_format_value(int64_t value, const char *unit, char *buf, size_t len)
{
    pprof_format_scaled(value, unit, value, buf, len);
}

void pprof_format_scaled(int64_t value, const char *unit, int64_t ref, char *buf, size_t len)
{
    if (value == 0) {
        snprintf(buf, len, "0");
        return;
    }
    double v = (double)value;
    double r = ref < 0 ? -(double)ref : (double)ref;
    if (r == 0)
        r = v < 0 ? -v : v;
    double ns_per = 0;
    if (!strcmp(unit, "nanoseconds") || !strcmp(unit, "ns"))
        ns_per = 1;
    else if (!strcmp(unit, "microseconds") || !strcmp(unit, "us"))
        ns_per = 1e3;
    else if (!strcmp(unit, "milliseconds") || !strcmp(unit, "ms"))
        ns_per = 1e6;
    else if (!strcmp(unit, "seconds") || !strcmp(unit, "s"))
        ns_per = 1e9;
    if (ns_per > 0) {
        v *= ns_per;
        r *= ns_per;
        if (r >= 1e9)
            scaled(buf, len, v / 1e9, "s");
        else if (r >= 1e6)
            scaled(buf, len, v / 1e6, "ms");
        else if (r >= 1e3)
            scaled(buf, len, v / 1e3, "us");
        else
            scaled(buf, len, v, "ns");
        return;
    }
    if (!strcmp(unit, "bytes") || !strcmp(unit, "B")) {
        static const char *const sfx[] = {"B", "kB", "MB", "GB", "TB", "PB"};
        int k = 0;
        while (k < 5 && r >= 1024) {
            r /= 1024;
            v /= 1024;
            k++;
        }
        scaled(buf, len, v, sfx[k]);
        return;
    }
    snprintf(buf, len, "%" PRId64, value);
}
