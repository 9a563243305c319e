/*
 * span.h — the agent's side of the span API (sonde_span_* in sonde.h):
 * where open spans live, how the signal handler tags a sample with the
 * span of its thread, and the per-session map of spans that got samples.
 *
 * Open spans live in one static array of SPAN_SLOTS records
 * (sigsafe/span_rec.h): a thread takes a record at its first
 * sonde_span_begin and gives it back at exit through a pthread key
 * destructor, so a handle can be ended from any thread without touching
 * memory that may be gone.  The calling thread's record is found through
 * an initial-exec TLS pointer, which the handler reads (sigsafe/handler.c):
 * it copies the span's key, interface and trace id into the sample slot
 * (ring.h) — the strings of a span are written only by its own thread,
 * before the key is published (release), so a handler that interrupts
 * that thread sees either no span or a whole one.  The wall sampler
 * finds a blocked thread's record through its thread slot and reads it
 * seqlock-style.
 *
 * A handle (and a sample's span key) is (generation << SPAN_INDEX_BITS) |
 * record index: unique over the process's life, never 0.  The agent
 * thread drains samples with span_map_add(map, slot->span_key,
 * slot->interface, slot->trace_id) and stores the index it returns in the
 * stack table (stack_entry.span); export turns it into the pprof labels
 * "trace_id" and "interface".
 *
 * Active profiling (task.c) reads open spans from its watcher thread
 * (span_rec_*, below) and marks the ones it captures, so that their end
 * stores the end time, status and peer (sigsafe/span_rec.h).
 *
 * Thread-safety: sonde_span_*, span_count_* and span_rec_* may be called
 * from any thread (not from a signal handler); span_map_* are for one
 * thread at a time (the agent thread).  Cost: sonde_span_begin and _end take no lock,
 * allocate nothing and make no system call, except a thread's first
 * begin (getrandom, pthread_setspecific).
 */
#ifndef SONDE_SPAN_H
#define SONDE_SPAN_H

#include <stddef.h>
#include <stdint.h>

#include "sonde.h"

#define SPAN_SLOTS 4096      /* threads with a span record at once */
#define SPAN_INDEX_BITS 16   /* low bits of a handle: the record index */

/* Counters for sonde_get_stats(), since the process started. */
uint64_t span_count_begun(void);
uint64_t span_count_sampled(void);  /* spans that ended with >= 1 sample
                                       (an end racing a sample on another
                                       thread may miss one: stats only) */
uint64_t span_count_no_slot(void);  /* begins refused: every record in use */

/* ---- open spans, for the task watcher (task.c) ----------------------
 *
 * Records are read from the watcher thread while their owners run:
 * seqlock-style (the key, the fields, the key again), so a read either
 * gets a whole span or -ESRCH.  Not for the signal handler. */

struct span_open {
    uint64_t key;
    int owner;          /* tid of the thread the span is on */
    int64_t start_ns;   /* CLOCK_REALTIME at begin, ns since the epoch */
    char interface[SONDE_SPAN_INTERFACE_MAX];
    char trace_id[SONDE_SPAN_TRACE_MAX];
};

struct span_end {
    int64_t end_ns;     /* CLOCK_REALTIME at the end */
    int status;         /* response code, 0 = not set */
    char peer[SONDE_SPAN_PEER_MAX];
};

/* Records handed out so far: indexes [0, n) may hold open spans. */
uint32_t span_rec_count(void);
/* The open span key of record i (acquire), 0 = none. */
uint64_t span_rec_key(uint32_t i);
/* Copies the open span key (its owner, start, strings).  0, or -ESRCH if
 * key is not open (any more). */
int span_rec_read(uint64_t key, struct span_open *out);
/* Marks span key as watched: whoever ends it will first store its end
 * time, status and peer for span_rec_ended.  An end already under way
 * when the mark lands may miss it (span_rec_ended then says -ESRCH). */
void span_rec_watch(uint64_t key);
/* The end of a watched span: 1 still open; 0 ended, *out filled; -ESRCH
 * ended without a stored end (it ended as it was marked, or the record
 * has since stored the end of a later watched span). */
int span_rec_ended(uint64_t key, struct span_end *out);

/* ---- a session's spans ---------------------------------------------- */

struct span_map;

/* A map for at most max spans (memory grows with use, up to about
 * 100 bytes a span).  NULL on ENOMEM. */
struct span_map *span_map_new(size_t max);
/* Frees m and its strings.  NULL is a no-op. */
void span_map_free(struct span_map *m);

/* The index (>= 1) of the span key (from a sample slot), adding it with
 * its strings if new (copied, at most SONDE_SPAN_INTERFACE_MAX - 1 and
 * SONDE_SPAN_TRACE_MAX - 1 bytes read: the slot's arrays need not be
 * terminated); 0 if key is 0, or the map is full or out of memory
 * (counted in span_map_dropped). */
uint32_t span_map_add(struct span_map *m, uint64_t key, const char *interface, const char *trace_id);

/* Strings of index idx (>= 1), valid until span_map_free; -ENOENT if out
 * of range. */
int span_map_get(const struct span_map *m, uint32_t idx, const char **interface, const char **trace_id);

size_t span_map_count(const struct span_map *m);    /* distinct spans: a session's traces */
uint64_t span_map_dropped(const struct span_map *m); /* samples whose span was not added */

#endif
