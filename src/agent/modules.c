/*
 * modules.c — the loaded modules of this process (executable, shared
 * libraries, vdso), their build ids and unwind tables, and the unwind_set
 * the signal handler's walker reads (sigsafe/unwind.h).
 *
 * The list
 * --------
 * One entry per module ever seen since modules_init(), in order of
 * discovery; an entry's index is its id and never changes.  A module is
 * identified by (path, bias) while loaded; once dlclose'd its entry stays
 * (loaded = 0) so old samples can still be symbolized, and a module loaded
 * again later, even at the same address, gets a new entry.  At most
 * MODULES_MAX entries: modules beyond that are not tracked (their frames
 * are walked by frame pointers only and symbolized as unknown).
 *
 * Refresh
 * -------
 * We do not hook dlopen/dlclose.  A wrapper would be a guest changing its
 * host's behaviour: glibc picks the search path of a dlopen (the calling
 * object's DT_RUNPATH/DT_RPATH, $ORIGIN) and the link namespace from the
 * return address of the call, which through a wrapper is libsonde.so's.
 * Instead the agent thread calls modules_refresh() every 10 ms, so it must
 * be nearly free when nothing changed: dl_iterate_phdr reports dlpi_adds /
 * dlpi_subs, counters of every load and unload the dynamic linker has
 * done, and the callback compares them with the last scan's on the first
 * module and stops the iteration at once if they have not moved -- one
 * lock round-trip inside ld.so, no allocation, nothing else touched
 * (15-25 ns on the development VM; bench/unwind_cost.c).  Otherwise the scan matches each
 * module against the loaded entries, parses .eh_frame only for new ones
 * (unwind_table.c; inside the callback, while ld.so guarantees the module
 * stays mapped), marks entries that were not seen as unloaded, and
 * publishes a new set.
 *
 * Until the next refresh, a library loaded since the last one has no rows
 * (its frames are walked by frame pointers, which often stops the walk
 * there), and one unloaded since still has its rows in the set; neither
 * can make the walker read anything but the stack and our own tables.
 *
 * Each module's rows come with their index (unwind_table_index(), the
 * format in sigsafe/unwind.h), built once with the rows and freed with
 * them.  A module whose index could not be allocated, or would be too
 * sparse, is published without one and searched the slow way.
 *
 * Publication and the grace period (RCU in miniature)
 * ---------------------------------------------------
 * A set is immutable.  A new one is malloc'ed, filled, then swapped into
 * unwind_current.  The old one may still be in use by a walk that loaded
 * the pointer before the store, so it is freed only after
 * sigsafe_active (incremented by every walk before it loads the pointer)
 * has been seen at 0 once after the store: any walk that could hold the old
 * pointer had then left.  The store and the loads of sigsafe_active are
 * seq_cst, as are the walker's increment and its load of the pointer, so
 * neither side's store can pass its later load (x86 would allow it with
 * weaker orders).  We poll every 50 µs for at most GRACE_MAX_NS; if a
 * walk never seems to leave (a thread stopped inside the handler, or walks
 * that never pause), the old set and the rows of unloaded modules are
 * parked in a small retired list and freed after a later grace period, or
 * leaked if that list is full.  A leak is bounded by the number of
 * refreshes and much better than a handler reading freed memory.
 */
#include "modules.h"

#include <elf.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

#include "sigsafe/unwind.h"
#include "unwind_table.h"

/* Most processes have tens of modules; plugin hosts a few hundred. */
#define MODULES_MAX 4096
/* How long a refresh waits for walks to leave a retired set. */
#define GRACE_MAX_NS 1000000000L
#define GRACE_POLL_NS 50000L
/* Retired sets waiting for a grace period; beyond this they leak. */
#define RETIRED_MAX 64

struct module_entry {
    struct module_info info; /* path owned */
    struct unwind_row *rows; /* owned; NULL once freed after unload */
    size_t nrows;
    uint32_t *index;         /* owned, freed with rows; NULL if none */
    uint32_t nindex;
    int seen; /* found by the current scan */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct module_entry *entries;
static size_t nentries, capentries;
static int scanned;           /* a scan has completed since init */
static int active;            /* between modules_init and modules_shutdown */
static unsigned long long last_adds, last_subs;
static char *exe_path;        /* /proc/self/exe, resolved once */
static struct unwind_set *retired[RETIRED_MAX];
static size_t nretired;

/* ---- module identity ----------------------------------------------------- */

static int is_vdso(const struct dl_phdr_info *info)
{
    uintptr_t ehdr = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (ehdr == 0)
        return 0;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)ehdr;
    return (uintptr_t)info->dlpi_phdr == ehdr + eh->e_phoff;
}

static const char *module_path(const struct dl_phdr_info *info)
{
    if (is_vdso(info))
        return "[vdso]";
    if (info->dlpi_name != NULL && info->dlpi_name[0] != 0)
        return info->dlpi_name;
    return exe_path; /* glibc names the main program "" */
}

/* The executable PT_LOAD segments' range; 0 if there is none. */
static int exec_range(const struct dl_phdr_info *info, uintptr_t *start, uintptr_t *end,
                      uint64_t *file_offset)
{
    int found = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || ph->p_memsz == 0)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (!found || lo < *start) {
            *start = lo;
            *file_offset = ph->p_offset;
        }
        if (!found || hi > *end)
            *end = hi;
        found = 1;
    }
    return found;
}

/* The GNU build id from the PT_NOTE segments, as hex ("" if none). */
static void read_build_id(const struct dl_phdr_info *info, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    out[0] = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        size_t align = ph->p_align == 8 ? 8 : 4;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        size_t len = ph->p_memsz, off = 0;
        while (len - off >= sizeof(ElfW(Nhdr))) {
            ElfW(Nhdr) nh;
            memcpy(&nh, p + off, sizeof nh);
            off += sizeof nh;
            size_t name_sz = (nh.n_namesz + align - 1) & ~(align - 1);
            size_t desc_sz = (nh.n_descsz + align - 1) & ~(align - 1);
            if (name_sz < nh.n_namesz || name_sz > len - off ||
                desc_sz < nh.n_descsz || desc_sz > len - off - name_sz)
                break;
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                memcmp(p + off, "GNU", 4) == 0 && nh.n_descsz > 0) {
                const uint8_t *d = p + off + name_sz;
                size_t n = nh.n_descsz < 20 ? nh.n_descsz : 20;
                for (size_t k = 0; k < n; k++) {
                    out[2 * k] = hex[d[k] >> 4];
                    out[2 * k + 1] = hex[d[k] & 15];
                }
                out[2 * n] = 0;
                return;
            }
            off += name_sz + desc_sz;
        }
    }
}

/* ---- scanning ------------------------------------------------------------ */

struct scan {
    int first;
    int unchanged; /* the counters had not moved: nothing else was done */
    int added;
    int err;       /* first -ENOMEM */
    size_t hint;   /* where the next module is likely in entries */
    unsigned long long adds, subs;
};

static struct module_entry *find_loaded(const char *path, uintptr_t bias, size_t hint)
{
    for (size_t k = 0; k < nentries; k++) {
        struct module_entry *e = &entries[(hint + k) % nentries];
        if (e->info.loaded && e->info.bias == bias && strcmp(e->info.path, path) == 0)
            return e;
    }
    return NULL;
}

static int add_entry(struct dl_phdr_info *info, const char *path, uintptr_t start,
                     uintptr_t end, uint64_t file_offset)
{
    if (nentries == MODULES_MAX)
        return 0; /* not tracked: see the file comment */
    if (nentries == capentries) {
        size_t cap = capentries ? capentries * 2 : 32;
        struct module_entry *v = realloc(entries, cap * sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        entries = v;
        capentries = cap;
    }
    struct module_entry *e = &entries[nentries];
    memset(e, 0, sizeof *e);
    e->info.path = strdup(path);
    if (e->info.path == NULL)
        return -ENOMEM;
    e->info.id = (uint32_t)nentries;
    e->info.bias = info->dlpi_addr;
    e->info.start = start;
    e->info.end = end;
    e->info.file_offset = file_offset;
    e->info.loaded = 1;
    e->seen = 1;
    read_build_id(info, e->info.build_id);
    /* Out of memory: not added, so that the next refresh tries again (the
     * counters are not updated either).  A module whose .eh_frame is
     * missing or broken is listed without rows: its frames fall back to
     * frame pointers. */
    int err = unwind_table_build(info, &e->rows, &e->nrows);
    if (err == -ENOMEM) {
        free(e->info.path);
        return -ENOMEM;
    }
    if (err < 0) {
        e->rows = NULL;
        e->nrows = 0;
    }
    if (e->nrows > UINT32_MAX) {
        free(e->rows);
        e->rows = NULL;
        e->nrows = 0;
    }
    /* Without memory for the index the rows still work, only slower. */
    if (unwind_table_index(e->rows, e->nrows, &e->index, &e->nindex) < 0) {
        e->index = NULL;
        e->nindex = 0;
    }
    nentries++;
    return 0;
}

static void free_rows(struct module_entry *e)
{
    free(e->rows);
    free(e->index);
    e->rows = NULL;
    e->nrows = 0;
    e->index = NULL;
    e->nindex = 0;
}

static int scan_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct scan *sc = arg;
    if (sc->first) {
        sc->first = 0;
        if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
            sc->adds = info->dlpi_adds;
            sc->subs = info->dlpi_subs;
            if (scanned && sc->adds == last_adds && sc->subs == last_subs) {
                sc->unchanged = 1;
                return 1; /* stops dl_iterate_phdr */
            }
        }
        /* Something changed (or the counters are missing): a full scan. */
        for (size_t i = 0; i < nentries; i++)
            entries[i].seen = 0;
    }

    uintptr_t start = 0, end = 0;
    uint64_t file_offset = 0;
    const char *path = module_path(info);
    if (path == NULL || !exec_range(info, &start, &end, &file_offset))
        return 0;
    struct module_entry *e = find_loaded(path, info->dlpi_addr, sc->hint);
    if (e != NULL) {
        e->seen = 1;
        sc->hint = (size_t)(e - entries) + 1; /* ld.so keeps its order */
        return 0;
    }
    int err = add_entry(info, path, start, end, file_offset);
    if (err < 0 && sc->err == 0)
        sc->err = err;
    sc->added++;
    return 0;
}

/* ---- publication --------------------------------------------------------- */

static int cmp_mod(const void *a, const void *b)
{
    const struct unwind_module *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* A set of the loaded modules, sorted by lo, overlaps dropped. */
static struct unwind_set *make_set(void)
{
    size_t n = 0;
    for (size_t i = 0; i < nentries; i++)
        n += entries[i].info.loaded != 0;
    struct unwind_set *set = malloc(sizeof *set + n * sizeof set->mods[0]);
    if (set == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < nentries; i++) {
        const struct module_entry *e = &entries[i];
        if (!e->info.loaded)
            continue;
        set->mods[k++] = (struct unwind_module){
            .lo = e->info.start, .hi = e->info.end, .bias = e->info.bias,
            .rows = e->rows, .index = e->index, .nrows = (uint32_t)e->nrows,
            .nindex = e->nindex, .id = e->info.id,
        };
    }
    qsort(set->mods, k, sizeof set->mods[0], cmp_mod);
    size_t out = 0;
    for (size_t i = 0; i < k; i++) {
        if (out > 0 && set->mods[i].lo < set->mods[out - 1].hi)
            continue; /* overlaps the previous one: keep the first */
        set->mods[out++] = set->mods[i];
    }
    set->nmodules = (uint32_t)out;
    return set;
}

/* Waits until no walk can still hold a pointer loaded before the caller's
 * last store to unwind_current.  1 if so, 0 on timeout.  The exchange in
 * publish() and these loads are seq_cst, like the walker's increment and
 * its load of the set, so they cannot be reordered (x86 would otherwise
 * let this load pass the store). */
static int grace_period(void)
{
    struct timespec t0, now, nap = {0, GRACE_POLL_NS};
    if (atomic_load_explicit(&sigsafe_active, memory_order_seq_cst) == 0)
        return 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        nanosleep(&nap, NULL);
        if (atomic_load_explicit(&sigsafe_active, memory_order_seq_cst) == 0)
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ns = (now.tv_sec - t0.tv_sec) * 1000000000L + (now.tv_nsec - t0.tv_nsec);
        if (ns >= GRACE_MAX_NS)
            return 0;
    }
}

/* Swaps in set (may be NULL) and frees what no walk can reach any more. */
static void publish(struct unwind_set *set)
{
    struct unwind_set *old = atomic_exchange_explicit(&unwind_current, set, memory_order_seq_cst);
    if (old != NULL) {
        if (nretired < RETIRED_MAX)
            retired[nretired++] = old;
        /* else: leaked, see the file comment */
    }
    if (!grace_period())
        return; /* retired sets and unloaded rows wait for the next one */
    for (size_t i = 0; i < nretired; i++)
        free(retired[i]);
    nretired = 0;
    /* Rows of unloaded modules are in no set any more. */
    for (size_t i = 0; i < nentries; i++) {
        struct module_entry *e = &entries[i];
        if (!e->info.loaded && e->rows != NULL)
            free_rows(e);
    }
}

/* Scans and publishes if anything changed.  Caller holds lock. */
static int refresh_locked(void)
{
    struct scan sc = {.first = 1};
    dl_iterate_phdr(scan_cb, &sc);
    if (sc.unchanged)
        return 0;
    if (sc.first) {
        /* Never called back (no module at all): everything is gone. */
        for (size_t i = 0; i < nentries; i++)
            entries[i].seen = 0;
    }

    int changed = !scanned || sc.added > 0;
    for (size_t i = 0; i < nentries; i++) {
        struct module_entry *e = &entries[i];
        if (e->info.loaded && !e->seen) {
            e->info.loaded = 0;
            changed = 1;
        }
    }
    if (changed) {
        struct unwind_set *set = make_set();
        if (set == NULL) {
            /* Keep the counters stale so that the next refresh retries. */
            return -ENOMEM;
        }
        publish(set);
    }
    if (sc.err < 0)
        return sc.err; /* some module could not be added: retry next time */
    last_adds = sc.adds;
    last_subs = sc.subs;
    scanned = 1;
    return 0;
}

/* ---- public -------------------------------------------------------------- */

int modules_init(void)
{
    pthread_mutex_lock(&lock);
    if (exe_path == NULL) {
        char buf[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
        if (n <= 0)
            n = (ssize_t)strlen(strcpy(buf, "[exe]"));
        buf[n] = 0;
        exe_path = strdup(buf);
        if (exe_path == NULL) {
            pthread_mutex_unlock(&lock);
            return -ENOMEM;
        }
    }
    active = 1;
    int err = refresh_locked();
    pthread_mutex_unlock(&lock);
    return err;
}

/* Before modules_init or after modules_shutdown this does nothing, so a
 * refresh racing with shutdown cannot bring the tables back. */
int modules_refresh(void)
{
    pthread_mutex_lock(&lock);
    int err = active ? refresh_locked() : 0;
    pthread_mutex_unlock(&lock);
    return err;
}

int modules_list(struct module_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&lock);
    struct module_info *list = calloc(nentries ? nentries : 1, sizeof *list);
    if (list == NULL) {
        pthread_mutex_unlock(&lock);
        return -ENOMEM;
    }
    for (size_t i = 0; i < nentries; i++) {
        list[i] = entries[i].info;
        list[i].path = strdup(entries[i].info.path);
        if (list[i].path == NULL) {
            pthread_mutex_unlock(&lock);
            modules_list_free(list, i);
            return -ENOMEM;
        }
    }
    *out = list;
    *n = nentries;
    pthread_mutex_unlock(&lock);
    return 0;
}

void modules_list_free(struct module_info *list, size_t n)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i].path);
    free(list);
}

void modules_shutdown(void)
{
    pthread_mutex_lock(&lock);
    active = 0;
    publish(NULL);
    /* publish() freed every retired set if the grace period ended; if not,
     * a walk may still read the rows, so they are leaked with the sets. */
    int quiet = nretired == 0;
    for (size_t i = 0; i < nentries; i++) {
        if (quiet)
            free_rows(&entries[i]);
        free(entries[i].info.path);
    }
    free(entries);
    entries = NULL;
    nentries = capentries = 0;
    nretired = 0;
    scanned = 0;
    last_adds = last_subs = 0;
    pthread_mutex_unlock(&lock);
}

void modules_atfork_child(void)
{
    /* Only the forking thread exists in the child: whoever held the lock or
     * was inside a walk is gone, so both are reset rather than waited on. */
    pthread_mutex_init(&lock, NULL);
    atomic_store_explicit(&sigsafe_active, 0, memory_order_relaxed);
}
