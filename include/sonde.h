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

#define SONDE_VERSION "0.5.0"

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
    /* Server link (docs/agent-protocol.md).  server "" = no server: the
     * agent only records locally.  With a server, nothing is sampled until
     * a session runs (Profile Now, a trigger, default sampling). */
    char server[512];          /* SONDE_SERVER, e.g. "http://127.0.0.1:7070" */
    char app[128];             /* SONDE_APP; default the program's name */
    char instance[256];        /* SONDE_INSTANCE; default the host name */
    char token[256];           /* SONDE_TOKEN: a token of role agent */
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
    /* Server link (zero without a server). */
    uint64_t sessions;         /* sessions started */
    uint64_t uploads;          /* profiles the server acknowledged */
    uint64_t uploads_dropped;  /* finished profiles dropped: queue full or
                                  the server refused them */
    uint64_t spans;            /* spans begun */
    uint64_t spans_sampled;    /* spans that carried at least one sample */
    /* Active profiling (zero without a server). */
    uint64_t tasks;            /* tasks this agent began watching */
    uint64_t captures;         /* slow calls captured and taken by the
                                  server (slot claimed, snapshots stored) */
    uint64_t captures_refused; /* captures whose claim the server refused:
                                  the task had reached its limit or ended */
    uint64_t snapshots;        /* thread snapshots taken */
} sonde_stats_t;
SONDE_API int sonde_get_stats(sonde_stats_t *out);

/* ---- spans: the requests this process handles ----------------------
 *
 * A span is one request handled by the calling thread: interface (the
 * endpoint, e.g. "GET /checkout"), trace id, start, end, response code,
 * peer address.  While a span is open on a thread, every sample taken on
 * that thread carries its trace id and interface (pprof labels "trace_id"
 * and "interface"), so a session's views filter by endpoint and its
 * *traces* count is the number of spans that got samples.
 *
 * Cheap enough for every request (no allocation, no lock, no system
 * call: tens of ns begin + end), callable whether or not the agent runs,
 * is connected or is profiling, and from any thread (not from a signal
 * handler).
 *
 * One span is open per thread at a time: sonde_span_begin() on a thread
 * that has one open ends it first.  The handle may be used from another
 * thread (an async server finishing a request elsewhere); a handle whose
 * span has ended, or 0, is ignored (-ESRCH). */
typedef uint64_t sonde_span_t;   /* 0: no span */

/* Begins a span on the calling thread.  interface: copied, at most
 * SONDE_SPAN_INTERFACE_MAX - 1 bytes kept; NULL or "" counts as
 * "unknown".  trace_id: copied, at most SONDE_SPAN_TRACE_MAX - 1 bytes
 * kept; NULL or "": sonde makes one (32 random hex digits).  Returns the
 * handle, or 0 when no span slot is free (counted, never blocks). */
#define SONDE_SPAN_INTERFACE_MAX 96
#define SONDE_SPAN_TRACE_MAX 64
#define SONDE_SPAN_PEER_MAX 64
SONDE_API sonde_span_t sonde_span_begin(const char *interface, const char *trace_id);

/* The response code (HTTP status or any integer) of an open span. */
SONDE_API int sonde_span_set_status(sonde_span_t span, int code);

/* The peer address ("10.0.0.7:51234"), copied, at most
 * SONDE_SPAN_PEER_MAX - 1 bytes kept. */
SONDE_API int sonde_span_set_peer(sonde_span_t span, const char *addr);

/* Ends the span.  0, or -ESRCH if it had already ended. */
SONDE_API int sonde_span_end(sonde_span_t span);

/* Copies the span's trace id into buf (NUL-terminated, truncated to len).
 * 0, -ESRCH if the span has ended, -EINVAL for a NULL buf or len 0. */
SONDE_API int sonde_span_trace_id(sonde_span_t span, char *buf, size_t len);

/* The message for the calling thread's last failed call; never NULL. */
SONDE_API const char *sonde_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif /* SONDE_H */
