/*
 * sonde.h — the public API of the sonde agent, libsonde.so.
 *
 * This is the only public header.  A program gets the agent either with no
 * code change (LD_PRELOAD=libsonde.so, configured by SONDE_* environment
 * variables, see README.md) or by linking -lsonde and calling sonde_start().
 *
 * Promises:
 *  - Every function returns 0 or a negative errno-style code; the human
 *    message for the last error of the calling thread is sonde_errmsg().
 *  - No function calls exit() or abort(); a failure leaves the host running.
 *  - All functions are thread-safe.  None is async-signal-safe.
 */
#ifndef SONDE_H
#define SONDE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SONDE_API __attribute__((visibility("default")))
#else
#define SONDE_API
#endif

#define SONDE_VERSION "0.1.0"

/* What the sampler records.  CPU: on-CPU time, per-thread CPU-time timers.
 * WALL: every thread at a fixed wall-clock interval, running or blocked. */
typedef enum sonde_profile_type {
    SONDE_PROFILE_CPU = 1,
    SONDE_PROFILE_WALL = 2
} sonde_profile_type_t;

typedef enum sonde_format {
    SONDE_FORMAT_PPROF = 0,     /* gzipped profile.proto */
    SONDE_FORMAT_COLLAPSED = 1  /* flamegraph.pl "a;b;c N" lines */
} sonde_format_t;

/* Settings.  Fill with sonde_config_init() (defaults, then SONDE_* from the
 * environment), then change what you need. */
typedef struct sonde_config {
    int frequency_hz;          /* samples per second per thread, 1..10000; default 100 */
    int types;                 /* SONDE_PROFILE_CPU and/or _WALL bits; default CPU */
    int signal;                /* signal number used to sample; default SIGRTMIN+3 */
    sonde_format_t format;     /* output format; default pprof */
    char output[4096];         /* file written by sonde_stop(); "" = none */
    size_t ring_slots;         /* sample slots between handler and drain; default 2048 */
    size_t max_stacks;         /* distinct stacks kept; default 65536 */
    int max_frames;            /* frames kept per stack, 1..128; default 128 */
    int follow_fork;           /* nonzero: a forked child profiles itself into
                                  OUTPUT.<pid>; default 0 */
} sonde_config_t;

/* Defaults, then every SONDE_* environment variable that is set.  Returns
 * -EINVAL (message in sonde_errmsg()) for a malformed variable; the config
 * then holds the defaults for that field. */
SONDE_API int sonde_config_init(sonde_config_t *cfg);

/* Starts profiling this process with cfg (NULL: sonde_config_init()).
 * -EALREADY if running. */
SONDE_API int sonde_start(const sonde_config_t *cfg);

/* Stops sampling and, if the config names an output, writes it.  Safe to
 * call when not running (returns 0). */
SONDE_API int sonde_stop(void);

/* Writes what has been recorded so far to path in the given format, while
 * sampling goes on.  path NULL: the configured output. */
SONDE_API int sonde_write_profile(const char *path, sonde_format_t format);

/* Counters: samples recorded, and samples dropped (ring full, stack table
 * full, unwind failure) since start. */
typedef struct sonde_stats {
    uint64_t samples;
    uint64_t dropped_ring;
    uint64_t dropped_table;
    uint64_t truncated;        /* stacks cut at max_frames or unwind stop */
    uint64_t threads;          /* threads seen */
} sonde_stats_t;
SONDE_API int sonde_get_stats(sonde_stats_t *out);

/* The message for the calling thread's last failed call; never NULL. */
SONDE_API const char *sonde_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif /* SONDE_H */
