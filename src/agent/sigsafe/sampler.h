/*
 * sampler.h — the sampling signal handler and the state it reads: the
 * thread table (lock-free lookup by tid), each thread's stack bounds and
 * CPU-time timer, the sample ring, and the agent's counters.
 *
 * async-signal-safe: everything declared here that the handler touches is
 * read with atomics or written only by the thread the handler runs on.
 * Writers outside the handler (threads.c, agent.c) follow the rules
 * stated beside each field.
 */
#ifndef SONDE_SAMPLER_H
#define SONDE_SAMPLER_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ring.h"
#include "unwind.h"

struct span_rec;

/* si_value of our timers' signals, so a signal that is not ours (sent by
 * someone else with sigqueue, say) is ignored. */
#define SAMPLER_TAG 0x50de

/* si_value of a snapshot request (si_code SI_QUEUE, sent by the task
 * watcher with rt_tgsigqueueinfo to one thread): the handler unwinds the
 * interrupted context into sampler.snapshot. */
#define SNAPSHOT_TAG 0x5a47
#define SNAPSHOT_MAX_FRAMES 64

/* Phases of the snapshot box (the low 2 bits of its state word). */
#define SNAPSHOT_IDLE 0u
#define SNAPSHOT_REQUESTED 1u  /* tid set; waiting for that thread's handler */
#define SNAPSHOT_WRITING 2u    /* claimed by the handler, which writes pcs */
#define SNAPSHOT_WRITTEN 3u    /* pcs ready for the requester */
#define SNAPSHOT_PHASE(state) ((unsigned)((state)&3u))
#define SNAPSHOT_SEQ(state) ((state) >> 2)

/* One stack on demand, for active profiling (task.c).  state = (sequence
 * << 2) | phase.  Transitions: the requester (one thread: the task
 * watcher) moves IDLE -> REQUESTED (new sequence, tid written before,
 * release), and back REQUESTED -> IDLE (CAS) when no answer came in time;
 * the handler of thread tid alone moves REQUESTED -> WRITING (CAS, so at
 * most one handler writes) and WRITING -> WRITTEN (release) once pcs,
 * nframes and truncated hold the stack; the requester copies them and
 * stores IDLE.  A stale signal (its request gone) finds a phase other
 * than REQUESTED, or another tid, and does nothing. */
struct snapshot_box {
    _Atomic uint64_t state;
    _Atomic int tid;
    int nframes;
    int truncated;
    uintptr_t pcs[SNAPSHOT_MAX_FRAMES];
};

/* A pseudo leaf pc: CPU an exiting thread used that no sample reached
 * (threads shorter than a tick).  Export names it UNSAMPLED_NAME, under
 * the thread's start routine, so no real function gets that self time. */
#define SAMPLER_PC_UNSAMPLED ((uintptr_t)1)
#define SAMPLER_UNSAMPLED_NAME "[unsampled thread CPU]"

#define SELFTIME_BUCKETS 4096 /* 20 ns each: up to 82 us, then the last bucket */
#define SELFTIME_NS_PER_BUCKET 20

#define SLOT_FREE 0
#define SLOT_TOMB (-1)

/* Flags of a thread slot. */
#define SLOT_AGENT 1u  /* one of the agent's own threads: never sampled */
#define SLOT_OWN 2u    /* registered by the thread itself (pthread_create
                          wrapper or sonde_start): its exit is seen by a
                          pthread key destructor */

/* One thread of the process.  tid is the key: written (CAS) under the
 * registry mutex, read lock-free by the handler.  stack_lo/hi and timer
 * are written before tid is published or by the thread itself. */
struct thread_slot {
    _Atomic int tid;            /* SLOT_FREE, SLOT_TOMB or the kernel tid */
    _Atomic int timer;          /* kernel timer id, -1 none */
    _Atomic uint32_t flags;
    uint32_t pad;
    _Atomic uintptr_t stack_lo; /* readable stack range, 0 = unknown */
    _Atomic uintptr_t stack_hi;
    uint64_t rng;               /* jitter state, handler of this thread only */
    int64_t armed_ns;           /* it_value last armed, handler only */
    char name[16];              /* comm, kept for threads that exited */
    /* wall sampler (agent thread only) */
    uintptr_t wall_sp, wall_pc;
    uint16_t wall_n;
    uintptr_t *wall_stack;      /* last blocked stack, malloc'ed, UNWIND_MAX_FRAMES */
    /* Exit accounting: CPU-time timers are checked at scheduler ticks, so
     * the CPU a thread burns after its last tick is never signalled.  The
     * handler keeps the thread's CPU clock at its last scheduled expiry
     * (sched_cpu_ns = CPU at arming + every weight since) and its last
     * stack; the exit hook turns the remainder into one final sample. */
    int64_t sched_cpu_ns;
    uintptr_t start_fn;         /* the thread's start routine, if known */
    /* The thread's span record (span_rec.h), so the wall sampler can tag
     * samples of this thread from the agent thread.  Set by the thread
     * itself (at sonde_span_begin, or by its handler); may be stale after
     * the slot or the record changed hands: readers check the record's
     * owner against tid (span_rec_tag_other). */
    struct span_rec *_Atomic span_rec;
    uint16_t last_n;
    uintptr_t last_pcs[UNWIND_MAX_FRAMES];
};

/* Two parallel arrays: keys[i] mirrors slots[i].tid.  Probes and scans
 * read only the dense keys (4 bytes a slot), so the big slot bodies of a
 * mostly empty table stay untouched zero pages. */
struct thread_table {
    _Atomic int *keys;
    struct thread_slot *slots;
    uint32_t mask;              /* capacity - 1 */
};

/* Readable memory ranges that can hold a thread's stack ([stack] and
 * anonymous rw mappings), sorted; the fallback bounds for threads whose
 * exact stack is not known.  Immutable once published. */
struct stack_maps {
    uint32_t n;
    struct { uintptr_t lo, hi; } r[];
};

/* What the handler needs, set up by agent.c before the first timer. */
struct sampler_state {
    _Atomic int running;           /* take samples while nonzero */
    int signo;
    int types;                     /* SONDE_PROFILE_* */
    int max_frames;
    int64_t interval_ns;           /* timer interval */
    struct sample_ring ring;
    struct thread_table threads;
    struct stack_maps *_Atomic stack_maps;
    _Atomic uint64_t samples;
    _Atomic uint64_t truncated;
    _Atomic uint64_t no_slot;      /* signals on threads we do not know */
    int selftime;                  /* measure the handler's own cost */
    uint64_t tsc_mult;             /* ns = (tsc ticks * tsc_mult) >> 32 */
    _Atomic uint64_t selftime_n;
    _Atomic uint32_t selftime_hist[SELFTIME_BUCKETS]; /* SELFTIME_NS_PER_BUCKET ns each; last = overflow */
    struct snapshot_box snapshot;  /* answered whether or not running */
};

extern struct sampler_state sampler;

/* The calling thread's slot, cached (initial-exec TLS). */
extern __thread struct thread_slot *sampler_tls_slot;

/* SA_SIGINFO handler for sampler.signo: a sample for our timers'
 * signals (SI_TIMER, SAMPLER_TAG) while running; a snapshot for a
 * request (SI_QUEUE, SNAPSHOT_TAG) at any time.  async-signal-safe. */
void sampler_handler(int sig, siginfo_t *si, void *ucontext);

/* Lock-free lookup of tid in the thread table; NULL if absent.
 * async-signal-safe. */
struct thread_slot *sampler_find_thread(int tid);

/* Readable stack range of thread t from sp upward: its exact bounds, else
 * the snapshot mapping that holds sp (capped at 8 MiB).  t may be NULL (a
 * thread not in the table): the mapping only.  lo = hi = 0 if unknown.
 * async-signal-safe. */
void sampler_stack_bounds(struct thread_slot *t, uintptr_t sp, uintptr_t *lo, uintptr_t *hi);

/* Arms t's timer through the raw syscalls.  initial: first arming, at a
 * random phase; else re-arming from the handler after an expiry, relative
 * to the kernel's schedule with jitter.  Sets t->armed_ns to what the next
 * sample weighs.  async-signal-safe. */
int sampler_arm_timer(struct thread_slot *t, int64_t interval_ns, int initial);

#endif
