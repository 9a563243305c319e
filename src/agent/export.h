/*
 * export.h — turns the stack table into a profile file: symbolizes every
 * distinct address once (symbolize.h, libdw), then writes pprof
 * (src/common/pprof.h) or collapsed stacks.  Runs on a normal thread (the
 * agent thread, or whoever calls sonde_stop/sonde_write_profile), never in
 * a signal handler.
 */
#ifndef SONDE_EXPORT_H
#define SONDE_EXPORT_H

#include <stdint.h>

#include "stacktab.h"

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
};

/* Writes the profile to path (atomically: a temp file renamed into place).
 * format: SONDE_FORMAT_PPROF or SONDE_FORMAT_COLLAPSED.  0 or -errno; the
 * message in errmsg (size len). */
int export_write(const struct export_request *req, int format, const char *path, char *errmsg,
                 size_t len);

#endif
