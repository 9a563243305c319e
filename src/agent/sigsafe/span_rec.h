/*
 * span_rec.h — the record of one thread's open span, as the signal
 * handler (handler.c) and the wall sampler (wall.c) read it to tag a
 * sample with the span it was taken in.  The span API itself (sonde.h,
 * span.h) lives in span.c; this header is the part of it that the
 * handler's world may see.
 *
 * async-signal-safe: the inline readers below use only atomics and plain
 * copies — no malloc, no locks, no stdio, no dynamic loader, errno
 * untouched.
 *
 * The protocol.  A record belongs to one thread at a time (its owner,
 * span_tls_rec on that thread).  Only the owner writes interface and
 * trace_id, and only while key is 0: sonde_span_begin stores key = 0,
 * writes the strings, then publishes the new key with a release store.
 * key is unique over time (record index + generation, never reused), so:
 *  - the handler, running on the owner thread, reads key once: a nonzero
 *    key means the strings are whole and cannot change under it (their
 *    writer is the very thread it interrupted);
 *  - any other thread (the wall sampler) reads seqlock-style: key, the
 *    strings, key again; equal and nonzero means the copy is whole.
 * Other threads may end the span (CAS key -> 0) or set its status and
 * peer; neither touches what the handler reads.
 *
 * Ordering: x86-64 only (as the handler is), where stores become visible
 * in program order and loads are not reordered with older loads, so the
 * seqlock needs no fence instruction — only that the compiler keep the
 * order: SPAN_ORDER() between the key and the strings, on both sides.
 * (An acquire/release atomic_thread_fence emits nothing more on x86, and
 * ThreadSanitizer refuses it.)
 */
#ifndef SONDE_SPAN_REC_H
#define SONDE_SPAN_REC_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "ring.h"
#include "sonde.h"

#define SPAN_ORDER() atomic_signal_fence(memory_order_seq_cst)

struct span_rec {
    /* What the handler reads. */
    _Atomic uint64_t key;      /* the open span's handle, 0 = none */
    _Atomic uint64_t samples;  /* samples tagged with key (reset at begin) */
    _Atomic int owner;         /* tid of the owner thread, 0 = free */
    uint32_t pad;
    char interface[SONDE_SPAN_INTERFACE_MAX]; /* NUL-terminated */
    char trace_id[SONDE_SPAN_TRACE_MAX];      /* NUL-terminated */
    /* The rest: span.c only. */
    _Atomic int64_t start_ns;  /* CLOCK_REALTIME at begin, ns since the epoch;
                                  written before key is published */
    _Atomic int status;        /* response code, 0 = not set */
    uint64_t gen;              /* spans begun on this record, ever (owner) */
    uint64_t rng;              /* trace id generator state, owner only */
    _Atomic uint64_t begun;    /* spans begun (owner writes; stats) */
    _Atomic uint64_t sampled;  /* spans ended with >= 1 sample (stats) */
    _Atomic uint32_t free_next; /* free list link: index + 1, 0 = end */
    char peer[SONDE_SPAN_PEER_MAX]; /* NUL-terminated; racy by contract */
    /* Capture marks (span.h: span_rec_watch; task.c).  The task watcher
     * stores in watched_key the key of a span it may capture; whoever
     * ends that span (sonde_span_end, a later begin, the thread's exit)
     * first stores end_ns, end_status and end_peer, then ended_key =
     * the key (release), and only then clears key.  A span nobody
     * watches costs its end one load of watched_key. */
    _Atomic uint64_t watched_key;
    _Atomic uint64_t ended_key;
    _Atomic int64_t end_ns;     /* CLOCK_REALTIME at the end */
    _Atomic int end_status;     /* status at the end, 0 = not set */
    char end_peer[SONDE_SPAN_PEER_MAX]; /* peer at the end, NUL-terminated */
} __attribute__((aligned(64)));

/* The calling thread's record (NULL until its first sonde_span_begin),
 * initial-exec TLS so the handler reads it without __tls_get_addr. */
extern __thread struct span_rec *span_tls_rec __attribute__((tls_model("initial-exec")));

/* Tags sample slot s with the open span of r, r being the record of the
 * thread the handler interrupted (or the calling thread), and counts the
 * sample in it.  Returns the key tagged, 0 if none.  async-signal-safe. */
static inline uint64_t span_rec_tag_own(struct span_rec *r, struct sample_slot *s)
{
    uint64_t key = atomic_load_explicit(&r->key, memory_order_acquire);
    if (!key)
        return 0;
    memcpy(s->interface, r->interface, sizeof s->interface);
    memcpy(s->trace_id, r->trace_id, sizeof s->trace_id);
    s->interface[sizeof s->interface - 1] = '\0';
    s->trace_id[sizeof s->trace_id - 1] = '\0';
    s->span_key = key;
    atomic_fetch_add_explicit(&r->samples, 1, memory_order_relaxed);
    return key;
}

/* Tags sample slot s with the open span of r, read from another thread
 * (seqlock-style, see the top comment) — only if r still belongs to the
 * thread tid.  Counts the sample in the span.  Returns the key tagged, 0
 * if none (s->span_key is then 0).  async-signal-safe. */
static inline uint64_t span_rec_tag_other(struct span_rec *r, int tid, struct sample_slot *s)
{
    s->span_key = 0;
    uint64_t k1 = atomic_load_explicit(&r->key, memory_order_acquire);
    if (!k1 || atomic_load_explicit(&r->owner, memory_order_relaxed) != tid)
        return 0;
    memcpy(s->interface, r->interface, sizeof s->interface);
    memcpy(s->trace_id, r->trace_id, sizeof s->trace_id);
    SPAN_ORDER();
    if (atomic_load_explicit(&r->key, memory_order_acquire) != k1)
        return 0;
    s->interface[sizeof s->interface - 1] = '\0';
    s->trace_id[sizeof s->trace_id - 1] = '\0';
    s->span_key = k1;
    atomic_fetch_add_explicit(&r->samples, 1, memory_order_relaxed);
    return k1;
}

#endif
