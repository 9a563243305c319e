/*
 * export.c — writes the stack table as a pprof profile or as collapsed
 * stacks (export.h).  Runs on a normal thread, never in a signal handler.
 *
 * Every distinct address is symbolized once (symbolize.c caches too, but
 * here one address also becomes one pprof location and one list of frame
 * names).  frames[0] of a stack is the exact pc where the thread was;
 * frames[i > 0] are return addresses, which point after the call
 * instruction — possibly at the next line, or past the end of the
 * function for a call to a noreturn function — so they are looked up as
 * addr - 1, inside the call.
 *
 * pprof layout (what go tool pprof, speedscope and Pyroscope read):
 *   sample types  samples/count, then cpu/nanoseconds and/or
 *                 wall/nanoseconds, one column per recorded type;
 *   period        the first of cpu/wall, period_ns; default sample type
 *                 the same;
 *   labels        thread (name), thread_id (num), state for wall samples,
 *                 trace_id and interface for samples taken in a span;
 *   mappings      one per module (path, build id, executable range);
 *   functions     demangled name, mangled system name, source file; a
 *                 frame without symbol is named "<module basename>+0x<off>"
 *                 (off = ELF virtual address, as addr2line -e takes it).
 *
 * Collapsed stacks: "root;...;leaf SAMPLES" lines, inline frames
 * expanded, merged and sorted (pprof_collapsed, shared with the CLI);
 * stacks that differ only by thread or span are merged.
 * When both CPU and wall were recorded, only the CPU samples are written
 * (adding the two kinds of samples would mean nothing).
 *
 * The file appears atomically: written to PATH.tmp.<pid>.<n> in the same
 * directory, flushed, fsync'ed, renamed over PATH.
 *
 * A capture of active profiling (task.c) becomes a pprof of its own:
 * one sample per snapshot, in order, with the same symbols and mappings
 * (export_capture_pprof_gz; the layout is in export.h).
 */
#include "export.h"
#include "sigsafe/sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/array.h"
#include "common/hindex.h"
#include "common/pprof.h"
#include "modules.h"
#include "sonde.h"
#include "span.h"
#include "symbolize.h"

#define MAX_INLINE 64 /* frames per address kept (symbolize.c caps alike) */

struct addr_entry {
    uintptr_t addr;
    uint64_t loc_id;   /* pprof location; 0 when writing collapsed */
    uint32_t first;    /* names[first .. first + n), innermost first */
    uint32_t n;
};

struct exporter {
    const struct export_request *req;
    struct symbolizer *sym;
    const struct module_info *mods;
    size_t nmods;
    struct pprof_builder *b;       /* pprof only */
    uint64_t *mapping_ids;         /* per module; pprof only */
    unsigned *mapping_flags;       /* PPROF_HAS_* per module */
    struct pprof_collapsed *coll;  /* collapsed only */
    int coll_type;                 /* collapsed: the entry type written */
    int cpu_col, wall_col;         /* value columns, -1 if absent */

    struct addr_entry *entries;
    size_t nentries, capentries;
    struct hindex byaddr; /* addr -> entries index */
    const char **names;
    size_t nnames, capnames;
    char **owned; /* synthesized names */
    size_t nowned, capowned;

    /* per-stack scratch */
    uint64_t *locs;   /* location ids, leaf first */
    size_t caplocs;
    uint32_t *idx;    /* entry indexes, leaf first */
    size_t capidx;
    const char **stack; /* collapsed: names, root first */
    size_t capstack;
    int err;
};

static void errf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static int entry_addr_eq(const void *ctx, uint32_t item, const void *key)
{
    return ((const struct exporter *)ctx)->entries[item].addr == *(const uintptr_t *)key;
}

static struct addr_entry *entry_find(const struct exporter *ex, uintptr_t addr)
{
    int64_t i = hindex_find(&ex->byaddr, hindex_hash_u64(addr), entry_addr_eq, ex, &addr);
    return i < 0 ? NULL : &ex->entries[i];
}

static int entry_add(struct exporter *ex, const struct addr_entry *e)
{
    if (ex->nentries >= HINDEX_MAX_ITEMS ||
        array_grow(&ex->entries, &ex->capentries, ex->nentries + 1, sizeof *ex->entries) != 0 ||
        hindex_insert(&ex->byaddr, hindex_hash_u64(e->addr), (uint32_t)ex->nentries) != 0)
        return -ENOMEM;
    ex->entries[ex->nentries++] = *e;
    return 0;
}

/* The name a frame shows: its function, else "<module>+0x<off>", else
 * "0x<addr>".  NULL on ENOMEM. */
static const char *frame_name(struct exporter *ex, const struct sym_frame *f)
{
    if (f->function && f->function[0])
        return f->function;
    char buf[320];
    if (f->module) {
        const char *base = strrchr(f->module, '/');
        base = base ? base + 1 : f->module;
        snprintf(buf, sizeof buf, "%.255s+0x%" PRIx64, base, f->offset);
    } else {
        snprintf(buf, sizeof buf, "0x%" PRIx64, f->offset);
    }
    if (array_grow(&ex->owned, &ex->capowned, ex->nowned + 1, sizeof *ex->owned) != 0)
        return NULL;
    char *s = strdup(buf);
    if (s)
        ex->owned[ex->nowned++] = s;
    return s;
}

/* Symbolizes addr once: its names and, for pprof, its location.  Returns
 * the entry's index (entries move as the array grows), -1 on ENOMEM. */
static int64_t resolve(struct exporter *ex, uintptr_t addr)
{
    const struct addr_entry *found = entry_find(ex, addr);
    if (found)
        return found - ex->entries;
    struct sym_frame fr[MAX_INLINE];
    int n;
    if (addr == SAMPLER_PC_UNSAMPLED) {
        memset(&fr[0], 0, sizeof fr[0]);
        fr[0].function = fr[0].system_name = SAMPLER_UNSAMPLED_NAME;
        fr[0].module_index = -1;
        n = 1;
    } else {
        n = symbolizer_lookup(ex->sym, addr, fr, MAX_INLINE);
    }
    if (n < 1 || ex->nnames > UINT32_MAX - (size_t)n ||
        array_grow(&ex->names, &ex->capnames, ex->nnames + (size_t)n, sizeof *ex->names) != 0)
        return -1;
    struct addr_entry e = {addr, 0, (uint32_t)ex->nnames, (uint32_t)n};
    for (int i = 0; i < n; i++)
        if (!(ex->names[e.first + i] = frame_name(ex, &fr[i])))
            return -1;

    if (ex->b) {
        struct pprof_line lines[MAX_INLINE];
        unsigned flags = 0;
        for (int i = 0; i < n; i++) {
            lines[i].function_id = pprof_builder_function(ex->b, ex->names[e.first + i],
                                                          fr[i].system_name, fr[i].file, 0);
            lines[i].line = fr[i].line;
            if (lines[i].function_id == 0)
                return -1;
            if (fr[i].function[0])
                flags |= PPROF_HAS_FUNCTIONS;
            if (fr[i].file)
                flags |= PPROF_HAS_FILENAMES;
            if (fr[i].line > 0) /* line info comes from DWARF, inlines too */
                flags |= PPROF_HAS_LINE_NUMBERS | PPROF_HAS_INLINE_FRAMES;
        }
        int mi = fr[0].module_index;
        uint64_t mapping = 0;
        if (mi >= 0 && (size_t)mi < ex->nmods) {
            mapping = ex->mapping_ids[mi];
            ex->mapping_flags[mi] |= flags;
        }
        e.loc_id = pprof_builder_location(ex->b, mapping, addr, lines, (size_t)n);
        if (e.loc_id == 0)
            return -1;
    }
    ex->nnames += (size_t)n;
    if (entry_add(ex, &e) != 0)
        return -1;
    return (int64_t)ex->nentries - 1;
}

static const char *state_name(uint8_t state, char *buf)
{
    switch (state) {
    case 'R':
        return "running";
    case 'S':
        return "sleeping";
    case 'D':
        return "disk";
    default:
        buf[0] = (char)state;
        buf[1] = '\0';
        return buf;
    }
}

/* Symbolizes one stack, frames[0 .. n) leaf first: its locations into
 * ex->locs and their entries into ex->idx (leaf first, zeros skipped).
 * Returns how many, with the number of names (inline frames expanded)
 * in *depth; -ENOMEM. */
static int64_t resolve_stack(struct exporter *ex, const uintptr_t *frames, int n, size_t *depth)
{
    size_t need = n > 0 ? (size_t)n : 1;
    if (array_grow(&ex->locs, &ex->caplocs, need, sizeof *ex->locs) != 0 ||
        array_grow(&ex->idx, &ex->capidx, need, sizeof *ex->idx) != 0)
        return -ENOMEM;
    size_t nlocs = 0;
    *depth = 0;
    for (int i = 0; i < n; i++) {
        uintptr_t a = frames[i];
        if (a == 0)
            continue;
        if (i > 0)
            a -= 1; /* inside the call instruction, see the top comment */
        int64_t e = resolve(ex, a);
        if (e < 0)
            return -ENOMEM;
        ex->idx[nlocs] = (uint32_t)e;
        ex->locs[nlocs++] = ex->entries[e].loc_id;
        *depth += ex->entries[e].n;
    }
    return (int64_t)nlocs;
}

static int visit(const struct stack_entry *se, void *arg)
{
    struct exporter *ex = arg;
    if (ex->coll && ex->coll_type && se->type != ex->coll_type)
        return 0;
    size_t depth;
    int64_t got = resolve_stack(ex, se->frames, se->nframes, &depth);
    if (got < 0)
        goto oom;
    size_t nlocs = (size_t)got;

    if (ex->coll) {
        if (nlocs == 0)
            return 0;
        if (array_grow(&ex->stack, &ex->capstack, depth, sizeof *ex->stack) != 0)
            goto oom;
        size_t k = 0;
        for (size_t j = nlocs; j-- > 0;) { /* root first, outermost inline level first */
            const struct addr_entry *e = &ex->entries[ex->idx[j]];
            for (uint32_t q = e->n; q-- > 0;)
                ex->stack[k++] = ex->names[e->first + q];
        }
        if (pprof_collapsed_add(ex->coll, ex->stack, k, (int64_t)se->count) != 0)
            goto oom;
        return 0;
    }

    int64_t values[3] = {(int64_t)se->count, 0, 0};
    if (se->type == SONDE_PROFILE_CPU && ex->cpu_col > 0)
        values[ex->cpu_col] = se->value_ns;
    if (se->type == SONDE_PROFILE_WALL && ex->wall_col > 0)
        values[ex->wall_col] = se->value_ns;
    struct pprof_label labels[5];
    size_t nl = 0;
    const char *tname = ex->req->thread_name ? ex->req->thread_name(se->tid, ex->req->arg) : NULL;
    if (tname && tname[0])
        labels[nl++] = (struct pprof_label){.key = "thread", .str = tname};
    labels[nl++] = (struct pprof_label){.key = "thread_id", .num = se->tid};
    char letter[2];
    if (se->type == SONDE_PROFILE_WALL && se->state)
        labels[nl++] = (struct pprof_label){.key = "state", .str = state_name(se->state, letter)};
    const char *iface, *trace;
    if (se->span && ex->req->spans && span_map_get(ex->req->spans, se->span, &iface, &trace) == 0) {
        labels[nl++] = (struct pprof_label){.key = "trace_id", .str = trace};
        labels[nl++] = (struct pprof_label){.key = "interface", .str = iface};
    }
    int rc = pprof_builder_sample(ex->b, ex->locs, nlocs, values, labels, nl);
    if (rc != 0)
        ex->err = rc;
    return rc;
oom:
    ex->err = -ENOMEM;
    return -ENOMEM;
}

static void exporter_free(struct exporter *ex)
{
    symbolizer_free(ex->sym);
    pprof_builder_free(ex->b);
    pprof_collapsed_free(ex->coll);
    free(ex->mapping_ids);
    free(ex->mapping_flags);
    free(ex->entries);
    hindex_free(&ex->byaddr);
    free(ex->names);
    for (size_t i = 0; i < ex->nowned; i++)
        free(ex->owned[i]);
    free(ex->owned);
    free(ex->locs);
    free(ex->idx);
    free(ex->stack);
}

/* A pprof builder in ex with room for one mapping id per module. */
static int pprof_new(struct exporter *ex)
{
    if (!(ex->b = pprof_builder_new()))
        return -ENOMEM;
    ex->mapping_ids = calloc(ex->nmods ? ex->nmods : 1, sizeof *ex->mapping_ids);
    ex->mapping_flags = calloc(ex->nmods ? ex->nmods : 1, sizeof *ex->mapping_flags);
    return ex->mapping_ids && ex->mapping_flags ? 0 : -ENOMEM;
}

/* One pprof mapping per module. */
static int pprof_mappings(struct exporter *ex)
{
    for (size_t i = 0; i < ex->nmods; i++) {
        const struct module_info *m = &ex->mods[i];
        ex->mapping_ids[i] = pprof_builder_mapping(ex->b, m->start, m->end, m->file_offset,
                                                   m->path, m->build_id);
        if (ex->mapping_ids[i] == 0)
            return -ENOMEM;
    }
    return 0;
}

/* Sets up the pprof header and one mapping per module. */
static int pprof_begin(struct exporter *ex)
{
    const struct export_request *req = ex->req;
    int rc = pprof_new(ex);
    if (rc != 0)
        return rc;
    int col = 1;
    ex->cpu_col = ex->wall_col = -1;
    pprof_builder_sample_type(ex->b, "samples", "count");
    if (req->types & SONDE_PROFILE_CPU) {
        pprof_builder_sample_type(ex->b, "cpu", "nanoseconds");
        ex->cpu_col = col++;
    }
    if (req->types & SONDE_PROFILE_WALL) {
        pprof_builder_sample_type(ex->b, "wall", "nanoseconds");
        ex->wall_col = col++;
    }
    const char *period = ex->cpu_col > 0 ? "cpu" : ex->wall_col > 0 ? "wall" : NULL;
    if (period) {
        pprof_builder_period(ex->b, period, "nanoseconds", req->period_ns);
        pprof_builder_default_sample_type(ex->b, period);
    }
    pprof_builder_time(ex->b, req->time_nanos, req->duration_nanos);
    pprof_builder_comment(ex->b, "sonde " SONDE_VERSION);
    uint64_t dropped = stacktab_dropped(req->tab);
    if (dropped) {
        char c[96];
        snprintf(c, sizeof c, "%" PRIu64 " samples dropped: stack table full", dropped);
        pprof_builder_comment(ex->b, c);
    }
    return pprof_mappings(ex);
}

typedef int (*emit_fn)(FILE *f, void *arg);

struct bytes {
    const uint8_t *p;
    size_t len;
};

static int emit_bytes(FILE *f, void *arg)
{
    const struct bytes *b = arg;
    return fwrite(b->p, 1, b->len, f) == b->len ? 0 : -EIO;
}

static int emit_collapsed(FILE *f, void *arg)
{
    return pprof_collapsed_write(arg, f);
}

/* Writes through a temporary file in path's directory, renamed into
 * place: readers see the old file or the whole new one. */
static int write_atomic(const char *path, emit_fn emit, void *arg, char *errmsg, size_t len)
{
    static atomic_uint seq;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 64);
    if (!tmp) {
        errf(errmsg, len, "out of memory");
        return -ENOMEM;
    }
    snprintf(tmp, plen + 64, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&seq, 1));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        errf(errmsg, len, "cannot create %s: %s", tmp, strerror(e));
        free(tmp);
        return -e;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errf(errmsg, len, "cannot write %s: %s", tmp, strerror(e));
        free(tmp);
        return -e;
    }
    int rc = emit(f, arg);
    if (rc == 0 && fflush(f) != 0)
        rc = -errno;
    if (rc == 0 && fsync(fileno(f)) != 0 && errno != EINVAL) /* EINVAL: not a real file */
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        errf(errmsg, len, "cannot write %s: %s", path, strerror(rc == -EIO ? EIO : -rc));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* The modules loaded now and a symbolizer over them.  The caller frees
 * with exporter_free and modules_list_free(*mods, *nmods). */
static int exporter_open(struct exporter *ex, struct module_info **mods, size_t *nmods, char *errmsg,
                         size_t len)
{
    int rc = modules_list(mods, nmods);
    if (rc != 0) {
        errf(errmsg, len, "cannot list modules: %s", strerror(-rc));
        return rc;
    }
    ex->mods = *mods;
    ex->nmods = *nmods;
    ex->sym = symbolizer_new(*mods, *nmods);
    if (!ex->sym) {
        errf(errmsg, len, "cannot build the profile: %s", strerror(ENOMEM));
        return -ENOMEM;
    }
    return 0;
}

/* The start of every export into memory: errmsg cleared, *buf and *len
 * zeroed.  -EINVAL (message set) if there is nowhere to put the bytes. */
static int out_begin(void **buf, size_t *len, char *errmsg, size_t errlen)
{
    if (errmsg && errlen)
        errmsg[0] = '\0';
    if (!buf || !len) {
        errf(errmsg, errlen, "no buffer to export into");
        return -EINVAL;
    }
    *buf = NULL;
    *len = 0;
    return 0;
}

/* Marks each module's mapping with what was resolved in it, and encodes
 * the profile built in ex->b (the caller frees *bytes). */
static int pprof_end(struct exporter *ex, size_t nmods, uint8_t **bytes, size_t *nbytes)
{
    for (size_t i = 0; i < nmods; i++)
        pprof_builder_mapping_flags(ex->b, ex->mapping_ids[i], ex->mapping_flags[i]);
    return pprof_builder_encode(ex->b, bytes, nbytes);
}

/* Symbolizes the table and builds the profile in ex (ex->b for pprof,
 * to be finished with pprof_end; ex->coll for collapsed, finished).
 * The caller frees with exporter_free and modules_list_free(*mods,
 * *nmods). */
static int build(struct exporter *ex, const struct export_request *req, int format,
                 struct module_info **mods, size_t *nmods, char *errmsg, size_t len)
{
    memset(ex, 0, sizeof *ex);
    *mods = NULL;
    *nmods = 0;
    if (format != SONDE_FORMAT_PPROF && format != SONDE_FORMAT_COLLAPSED) {
        errf(errmsg, len, "unknown output format %d (0 = pprof, 1 = collapsed)", format);
        return -EINVAL;
    }
    int rc = exporter_open(ex, mods, nmods, errmsg, len);
    if (rc != 0)
        return rc;
    ex->req = req;

    if (rc == 0 && format == SONDE_FORMAT_PPROF)
        rc = pprof_begin(ex);
    if (rc == 0 && format == SONDE_FORMAT_COLLAPSED) {
        ex->coll_type = (req->types & SONDE_PROFILE_CPU) ? SONDE_PROFILE_CPU
                        : (req->types & SONDE_PROFILE_WALL) ? SONDE_PROFILE_WALL
                                                            : -1;
        if (!(ex->coll = pprof_collapsed_new()))
            rc = -ENOMEM;
    }
    if (rc == 0 && ex->coll && ex->coll_type < 0) {
        /* No type recorded: write everything there is. */
        ex->coll_type = 0;
    }
    if (rc == 0)
        rc = stacktab_foreach(req->tab, visit, ex);
    if (rc == 0 && ex->err)
        rc = ex->err;
    if (rc == 0 && ex->coll)
        pprof_collapsed_finish(ex->coll);
    if (rc != 0)
        errf(errmsg, len, "cannot build the profile: %s", strerror(-rc));
    return rc;
}

int export_write(const struct export_request *req, int format, const char *path, char *errmsg,
                 size_t len)
{
    if (errmsg && len)
        errmsg[0] = '\0';
    if (!req || !req->tab || !path || !path[0]) {
        errf(errmsg, len, "no %s to export", !path || !path[0] ? "output path" : "stack table");
        return -EINVAL;
    }
    struct exporter ex;
    struct module_info *mods;
    size_t nmods;
    int rc = build(&ex, req, format, &mods, &nmods, errmsg, len);
    uint8_t *bytes = NULL;
    size_t nbytes = 0;
    if (rc == 0 && ex.b) {
        rc = pprof_end(&ex, nmods, &bytes, &nbytes);
        if (rc != 0)
            errf(errmsg, len, "cannot build the profile: %s", strerror(-rc));
    }
    if (rc == 0 && ex.b) {
        struct bytes b = {bytes, nbytes};
        rc = write_atomic(path, emit_bytes, &b, errmsg, len);
    } else if (rc == 0) {
        rc = write_atomic(path, emit_collapsed, ex.coll, errmsg, len);
    }
    free(bytes);
    exporter_free(&ex);
    modules_list_free(mods, nmods);
    return rc;
}

int export_pprof_gz(const struct export_request *req, void **buf, size_t *len, char *errmsg,
                    size_t errlen)
{
    int rc = out_begin(buf, len, errmsg, errlen);
    if (rc != 0)
        return rc;
    if (!req || !req->tab) {
        errf(errmsg, errlen, "no stack table to export");
        return -EINVAL;
    }
    struct exporter ex;
    struct module_info *mods;
    size_t nmods;
    rc = build(&ex, req, SONDE_FORMAT_PPROF, &mods, &nmods, errmsg, errlen);
    uint8_t *bytes = NULL;
    size_t nbytes = 0;
    if (rc == 0) {
        rc = pprof_end(&ex, nmods, &bytes, &nbytes);
        if (rc != 0)
            errf(errmsg, errlen, "cannot build the profile: %s", strerror(-rc));
    }
    if (rc == 0) {
        *buf = bytes;
        *len = nbytes;
    }
    exporter_free(&ex);
    modules_list_free(mods, nmods);
    return rc;
}

/* ---- captures (active profiling) ------------------------------------ */

const char *export_syscall_name(long nr, char *buf, size_t len)
{
    static const struct {
        long nr;
        const char *name;
    } names[] = {
        {SYS_read, "read"}, {SYS_write, "write"}, {SYS_open, "open"}, {SYS_close, "close"},
        {SYS_poll, "poll"}, {SYS_mmap, "mmap"}, {SYS_ioctl, "ioctl"}, {SYS_pread64, "pread64"},
        {SYS_pwrite64, "pwrite64"}, {SYS_readv, "readv"}, {SYS_writev, "writev"},
        {SYS_select, "select"}, {SYS_sched_yield, "sched_yield"}, {SYS_pause, "pause"},
        {SYS_nanosleep, "nanosleep"}, {SYS_sendfile, "sendfile"}, {SYS_connect, "connect"},
        {SYS_accept, "accept"}, {SYS_sendto, "sendto"}, {SYS_recvfrom, "recvfrom"},
        {SYS_sendmsg, "sendmsg"}, {SYS_recvmsg, "recvmsg"}, {SYS_wait4, "wait4"},
        {SYS_msgrcv, "msgrcv"}, {SYS_semop, "semop"}, {SYS_flock, "flock"}, {SYS_fsync, "fsync"},
        {SYS_fdatasync, "fdatasync"}, {SYS_rt_sigsuspend, "rt_sigsuspend"},
        {SYS_rt_sigtimedwait, "rt_sigtimedwait"}, {SYS_futex, "futex"},
        {SYS_io_getevents, "io_getevents"}, {SYS_epoll_wait, "epoll_wait"},
        {SYS_semtimedop, "semtimedop"}, {SYS_clock_nanosleep, "clock_nanosleep"},
        {SYS_waitid, "waitid"}, {SYS_openat, "openat"}, {SYS_pselect6, "pselect6"},
        {SYS_ppoll, "ppoll"}, {SYS_splice, "splice"}, {SYS_sync_file_range, "sync_file_range"},
        {SYS_epoll_pwait, "epoll_pwait"}, {SYS_accept4, "accept4"}, {SYS_recvmmsg, "recvmmsg"},
        {SYS_sendmmsg, "sendmmsg"}, {SYS_copy_file_range, "copy_file_range"},
        {SYS_preadv2, "preadv2"}, {SYS_pwritev2, "pwritev2"}, {SYS_io_uring_enter, "io_uring_enter"},
        {441 /* SYS_epoll_pwait2 */, "epoll_pwait2"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].nr == nr)
            return names[i].name;
    snprintf(buf, len, "nr %ld", nr);
    return buf;
}

/* Header of a capture's profile: samples/count and wall/nanoseconds,
 * period = the snapshot interval, one mapping per module. */
static int capture_begin(struct exporter *ex, const struct export_capture *c)
{
    int rc = pprof_new(ex);
    if (rc != 0)
        return rc;
    pprof_builder_sample_type(ex->b, "samples", "count");
    pprof_builder_sample_type(ex->b, "wall", "nanoseconds");
    pprof_builder_period(ex->b, "wall", "nanoseconds", c->interval_ns);
    pprof_builder_default_sample_type(ex->b, "samples");
    pprof_builder_time(ex->b, c->time_nanos, c->duration_nanos);
    pprof_builder_comment(ex->b, "sonde " SONDE_VERSION " capture");
    return pprof_mappings(ex);
}

static int capture_sample(struct exporter *ex, const struct export_capture *c, size_t i)
{
    const struct export_snapshot *s = &c->snaps[i];
    size_t depth;
    int64_t nlocs = resolve_stack(ex, s->pcs, s->nframes, &depth);
    if (nlocs < 0)
        return -ENOMEM;
    int64_t values[2] = {1, c->interval_ns};
    struct pprof_label labels[6];
    size_t nl = 0;
    char letter[2], nrbuf[32];
    labels[nl++] = (struct pprof_label){.key = "snapshot", .num = (int64_t)i + 1};
    labels[nl++] = (struct pprof_label){.key = "offset", .num = s->offset_ns, .num_unit = "nanoseconds"};
    labels[nl++] = (struct pprof_label){.key = "state", .str = state_name((uint8_t)s->state, letter)};
    if (s->state != 'R' && s->syscall >= 0)
        labels[nl++] = (struct pprof_label){
            .key = "syscall", .str = export_syscall_name(s->syscall, nrbuf, sizeof nrbuf)};
    if (c->thread && c->thread[0])
        labels[nl++] = (struct pprof_label){.key = "thread", .str = c->thread};
    labels[nl++] = (struct pprof_label){.key = "thread_id", .num = c->tid};
    return pprof_builder_sample(ex->b, ex->locs, (size_t)nlocs, values, labels, nl);
}

int export_capture_pprof_gz(const struct export_capture *c, void **buf, size_t *len, char *errmsg,
                            size_t errlen)
{
    int rc = out_begin(buf, len, errmsg, errlen);
    if (rc != 0)
        return rc;
    if (!c || (c->n && !c->snaps) || c->interval_ns <= 0) {
        errf(errmsg, errlen, "no capture to export");
        return -EINVAL;
    }
    struct exporter ex;
    memset(&ex, 0, sizeof ex);
    struct module_info *mods = NULL;
    size_t nmods = 0;
    rc = exporter_open(&ex, &mods, &nmods, errmsg, errlen);
    if (rc == 0)
        rc = capture_begin(&ex, c);
    for (size_t i = 0; rc == 0 && i < c->n; i++)
        rc = capture_sample(&ex, c, i);
    uint8_t *bytes = NULL;
    size_t nbytes = 0;
    if (rc == 0)
        rc = pprof_end(&ex, nmods, &bytes, &nbytes);
    if (rc == 0) {
        *buf = bytes;
        *len = nbytes;
    } else if (!errmsg || !errmsg[0]) {
        errf(errmsg, errlen, "cannot build the capture's profile: %s", strerror(-rc));
    }
    exporter_free(&ex);
    modules_list_free(mods, nmods);
    return rc;
}
