/*
 * modules.h — the loaded modules (executable, shared libraries) of this
 * process, their build ids, and the unwind tables built from them.
 *
 * modules.c keeps a list of every module seen since modules_init(),
 * including ones that were dlclose'd since (samples may still point into
 * them, and export must name those frames).  It builds each module's
 * unwind rows and their index once (unwind_table.c) and publishes an
 * unwind_set for the signal handler (sigsafe/unwind.h).
 *
 * Thread-safety: all functions here may be called from any thread except a
 * signal handler; they serialize on an internal mutex.
 */
#ifndef SONDE_MODULES_H
#define SONDE_MODULES_H

#include <stddef.h>
#include <stdint.h>

struct module_info {
    uint32_t id;          /* stable index, also unwind_module.id */
    char *path;           /* file path ("" never: the main program is resolved
                             through /proc/self/exe) */
    uintptr_t bias;       /* load bias (dlpi_addr) */
    uintptr_t start, end; /* absolute range of the executable segment(s) */
    uint64_t file_offset; /* file offset that maps at start */
    char build_id[41];    /* hex, "" if the module has none */
    int loaded;           /* 0 once dlclose'd */
};

/* Scans dl_iterate_phdr, builds tables for every module, publishes the first
 * unwind_set.  0 or -errno. */
int modules_init(void);

/* Rescans and publishes a new set if modules were added or removed since
 * the last scan.  Nothing hooks dlopen/dlclose: the agent thread calls this
 * periodically (every 10 ms), and a library's frames unwind through tables
 * from the first refresh after it was loaded.  Cheap when nothing changed
 * (one dl_iterate_phdr callback comparing ld.so's adds/subs counters, no
 * allocation; ~20 ns).  Does nothing before modules_init() or after
 * modules_shutdown().  0 or -ENOMEM (a later call retries). */
int modules_refresh(void);

/* Copies the list of every module seen (loaded or not).  The caller frees
 * with modules_list_free().  0 or -ENOMEM. */
int modules_list(struct module_info **out, size_t *n);
void modules_list_free(struct module_info *list, size_t n);

/* Unpublishes and frees everything (waits for the handlers' grace period). */
void modules_shutdown(void);

/* After fork in the child: the mutex may be held by a thread that no longer
 * exists; reinitialize it. */
void modules_atfork_child(void);

#endif
