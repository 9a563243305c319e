/*
 * export.h — turns the stack table into a profile file: symbolizes every
 * distinct address once (symbolize.h, libdw), then writes pprof
 * (src/common/pprof.h) or collapsed stacks, or returns the pprof bytes in
 * memory (for the server uplink).  Runs on a normal thread (the agent
 * thread, or whoever calls sonde_stop/sonde_write_profile), never in a
 * signal handler.
 */
#ifndef SONDE_EXPORT_H
#define SONDE_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "stacktab.h"

struct span_map;

struct export_request {
    const struct stack_table *tab;
    int types;               /* SONDE_PROFILE_* bits recorded */
    int64_t period_ns;       /* sampling interval */
    int64_t time_nanos;      /* profile start, ns since the epoch */
    int64_t duration_nanos;
    /* Name of thread tid ("" if unknown); the string is copied before the
     * next call. */
    const char *(*thread_name)(uint32_t tid, void *arg);
    void *arg;
    /* The spans that stack_entry.span indexes (span.h); NULL = none.  A
     * pprof sample of a stack with span != 0 gets the labels "trace_id"
     * and "interface"; collapsed stacks ignore spans (merged). */
    const struct span_map *spans;
};

/* Writes the profile to path (atomically: a temp file renamed into place).
 * format: SONDE_FORMAT_PPROF or SONDE_FORMAT_COLLAPSED.  0 or -errno; the
 * message in errmsg (size len). */
int export_write(const struct export_request *req, int format, const char *path, char *errmsg,
                 size_t len);

/* The same gzipped pprof bytes export_write writes for SONDE_FORMAT_PPROF,
 * in memory (for the server uplink): *buf is malloc'ed, the caller frees
 * it; *len its size.  0 or -errno with the message in errmsg (size
 * errlen); *buf is then NULL. */
int export_pprof_gz(const struct export_request *req, void **buf, size_t *len, char *errmsg,
                    size_t errlen);

#endif
