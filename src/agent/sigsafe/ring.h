/*
 * ring.h — the sample ring between the signal handler (many producers, on
 * any thread, at any moment) and the agent's drain thread (one consumer).
 *
 * async-signal-safe (producer side): no malloc, no locks, no stdio, no
 * dynamic loader, errno untouched.  Bounded MPSC queue after Dmitry
 * Vyukov's bounded MPMC design: every slot carries a sequence number; a
 * producer claims position p with one CAS on the head when the slot's
 * sequence equals p, fills it in place (the unwinder writes straight into
 * it), then publishes with seq = p + 1.  The consumer takes position p
 * when seq == p + 1 and frees it with seq = p + capacity.  A full ring
 * makes the producer drop the sample and count it — it never waits.
 *
 * A producer interrupted mid-fill (by another signal whose handler also
 * produces) leaves its slot unpublished for a moment; the consumer stops
 * at it and resumes on its next pass, so order is kept and nothing is torn.
 */
#ifndef SONDE_RING_H
#define SONDE_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sonde.h"
#include "unwind.h"

/* One sample.  span_key, interface and trace_id: the span the thread was
 * in (sigsafe/span_rec.h), span_key 0 = none (ring_claim clears it, so a
 * producer that knows of no span leaves it so; the strings are then
 * undefined). */
struct sample_slot {
    _Atomic uint64_t seq;
    uint32_t tid;
    uint8_t types;       /* SONDE_PROFILE_* bits this sample counts for */
    uint8_t state;       /* thread state letter, 'R' for signal samples */
    uint16_t nframes;
    int64_t weight_ns;   /* CPU or wall time this sample stands for */
    uint32_t truncated;
    uint32_t pad;
    uint64_t span_key;
    char interface[SONDE_SPAN_INTERFACE_MAX];
    char trace_id[SONDE_SPAN_TRACE_MAX];
    uintptr_t pcs[UNWIND_MAX_FRAMES];
};

struct sample_ring {
    struct sample_slot *slots;
    uint64_t mask;            /* capacity - 1, capacity a power of two */
    _Atomic uint64_t head;    /* next position to claim */
    uint64_t tail;            /* consumer only */
    _Atomic uint64_t dropped; /* samples refused: ring full */
};

/* Allocates (mmap, outside any handler) a ring of at least nslots slots,
 * rounded up to a power of two.  0 or -ENOMEM. */
int ring_init(struct sample_ring *r, size_t nslots);
void ring_destroy(struct sample_ring *r);

/* Empties the ring.  Only when no producer or consumer can run (after fork
 * in the child, before any thread exists). */
void ring_reset(struct sample_ring *r);

/* Producer: claims a slot, or NULL when full (counted in r->dropped).
 * The slot's span_key is 0; everything else is the producer's to fill.
 * async-signal-safe. */
struct sample_slot *ring_claim(struct sample_ring *r, uint64_t *pos);
/* Producer: publishes the slot claimed at pos.  async-signal-safe. */
void ring_publish(struct sample_ring *r, struct sample_slot *s, uint64_t pos);

/* Consumer: the next published slot, or NULL.  Call ring_release() once
 * done with it before the next ring_peek(). */
struct sample_slot *ring_peek(struct sample_ring *r);
void ring_release(struct sample_ring *r, struct sample_slot *s);

#endif
