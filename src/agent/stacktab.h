/*
 * stacktab.h — the stack table: distinct stacks and what was counted for
 * each (samples and nanoseconds), per sample type, thread and thread state.
 *
 * Filled by the agent's drain thread from the sample ring; read by export.
 * Memory is fixed at creation: a full table refuses new stacks and counts
 * them as dropped (existing stacks still accumulate).
 *
 * Thread-safety: none inside; the agent serializes inserts and reads with
 * its own mutex.  Not signal-safe.
 */
#ifndef SONDE_STACKTAB_H
#define SONDE_STACKTAB_H

#include <stddef.h>
#include <stdint.h>

struct stack_entry {
    uint64_t count;      /* samples */
    int64_t value_ns;    /* CPU or wall nanoseconds these samples weigh */
    uint32_t tid;
    uint8_t type;        /* SONDE_PROFILE_CPU or SONDE_PROFILE_WALL */
    uint8_t state;       /* wall: 'R' running, 'S' sleeping, 'D' uninterruptible,
                            other /proc state letters; cpu: 0 */
    uint16_t nframes;
    uint32_t hash;
    uint32_t next;       /* internal: hash chain (index + 1, 0 = end) */
    uint32_t span;       /* the span the samples were taken in: index in the
                            session's span_map (span.h), 0 = none */
    uint32_t pad;
    uintptr_t frames[];  /* frames[0] = leaf pc; frames[i > 0] = return addresses */
};

struct stack_table;

/* max_stacks distinct stacks, frames of at most max_frames each.  NULL on
 * ENOMEM. */
struct stack_table *stacktab_new(size_t max_stacks, int max_frames);
void stacktab_free(struct stack_table *t);

/* Adds count samples weighing value_ns to the stack of (type, state, tid,
 * span, frames).  frames beyond
 * max_frames are cut (the outermost ones).  0, or -ENOSPC when the stack is
 * new and the table is full (counted in stacktab_dropped()). */
int stacktab_add(struct stack_table *t, uint8_t type, uint8_t state, uint32_t tid, uint32_t span,
                 const uintptr_t *frames, int nframes, uint64_t count, int64_t value_ns);

/* Calls fn for every stack; stops early and returns fn's value if nonzero. */
typedef int (*stacktab_visit_fn)(const struct stack_entry *e, void *arg);
int stacktab_foreach(const struct stack_table *t, stacktab_visit_fn fn, void *arg);

size_t stacktab_count(const struct stack_table *t);   /* distinct stacks */
uint64_t stacktab_dropped(const struct stack_table *t); /* samples refused */
size_t stacktab_bytes(const struct stack_table *t);   /* memory held */

/* Forgets every stack (keeps the memory). */
void stacktab_clear(struct stack_table *t);

#endif
