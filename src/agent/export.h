/*
 * export.h — turns the stack table into a profile file: symbolizes every
 * distinct address once (symbolize.h, libdw), then writes pprof
 * (src/common/pprof.h) or collapsed stacks, or returns the pprof bytes in
 * memory (for the server uplink); also a capture's snapshots (active
 * profiling) as a pprof of their own.  Runs on a normal thread (the agent
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

/* ---- captures (active profiling, task.c) ---------------------------- */

/* One snapshot of a capture: the thread's stack at one instant. */
struct export_snapshot {
    int64_t offset_ns;     /* since the call's start */
    const uintptr_t *pcs;  /* leaf first: the exact pc, then return addresses */
    int nframes;
    char state;            /* /proc state letter: R, S, D, ... */
    long syscall;          /* the system call it was blocked in, -1 = none */
};

struct export_capture {
    const struct export_snapshot *snaps;  /* in snapshot order */
    size_t n;
    int64_t interval_ns;    /* the task's frequency: each sample's wall value */
    int64_t time_nanos;     /* the call's start, ns since the epoch */
    int64_t duration_nanos; /* the call's total time */
    const char *thread;     /* the thread's name; NULL or "" = unknown */
    uint32_t tid;
};

/* The capture as gzipped pprof (docs: design "capture"): one sample per
 * snapshot in order, values samples/count = 1 and wall/nanoseconds =
 * interval_ns, labels snapshot (1-based), offset (ns), state (running,
 * sleeping, disk or the letter), syscall (name or "nr N"; not for a
 * running thread or none), thread, thread_id.  *buf is malloc'ed, the
 * caller frees it.  0 or -errno with the message in errmsg. */
int export_capture_pprof_gz(const struct export_capture *c, void **buf, size_t *len, char *errmsg,
                            size_t errlen);

/* A system call's name for labels ("poll"), else "nr N" written into buf
 * (len bytes; 32 suffice). */
const char *export_syscall_name(long nr, char *buf, size_t len);

#endif
