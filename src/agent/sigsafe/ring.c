/*
 * ring.c — the bounded MPSC sample ring; design in ring.h.
 *
 * async-signal-safe: no malloc, no locks, no stdio, no dynamic loader,
 * errno saved — for ring_claim() and ring_publish(), the only functions the
 * handler calls.  ring_init/destroy/reset run on normal threads and may
 * call mmap/munmap (system calls, not allocator calls).
 */
#include "ring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int ring_init(struct sample_ring *r, size_t nslots)
{
    size_t cap = 16;
    while (cap < nslots && cap < ((size_t)1 << 20))
        cap <<= 1;
    size_t bytes = cap * sizeof(struct sample_slot);
    /* Populated up front: a first touch inside the handler would be a page
     * fault, which costs microseconds on a paravirtualized MMU. */
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    r->slots = p;
    r->mask = cap - 1;
    atomic_store_explicit(&r->head, 0, memory_order_relaxed);
    r->tail = 0;
    atomic_store_explicit(&r->dropped, 0, memory_order_release);
    return 0;
}

void ring_destroy(struct sample_ring *r)
{
    if (r->slots)
        munmap(r->slots, (r->mask + 1) * sizeof(struct sample_slot));
    r->slots = NULL;
}

/* A slot stores its sequence number minus its own index, so that zeroed
 * memory means "slot i free for position i": fresh mmap'd memory needs no
 * initialization pass, and a reset only clears the sequence words. */
static inline uint64_t seq_load(struct sample_ring *r, struct sample_slot *s)
{
    return atomic_load_explicit(&s->seq, memory_order_acquire) + (uint64_t)(s - r->slots);
}

static inline void seq_store(struct sample_ring *r, struct sample_slot *s, uint64_t seq)
{
    atomic_store_explicit(&s->seq, seq - (uint64_t)(s - r->slots), memory_order_release);
}

void ring_reset(struct sample_ring *r)
{
    /* Forgets every slot; the pages stay resident for the handler. */
    for (uint64_t i = 0; i <= r->mask; i++)
        atomic_store_explicit(&r->slots[i].seq, 0, memory_order_relaxed);
    atomic_store_explicit(&r->head, 0, memory_order_relaxed);
    r->tail = 0;
    atomic_store_explicit(&r->dropped, 0, memory_order_release);
}

struct sample_slot *ring_claim(struct sample_ring *r, uint64_t *pos)
{
    uint64_t p = atomic_load_explicit(&r->head, memory_order_relaxed);
    for (;;) {
        struct sample_slot *s = &r->slots[p & r->mask];
        uint64_t seq = seq_load(r, s);
        int64_t dif = (int64_t)(seq - p);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->head, &p, p + 1, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                *pos = p;
                s->span_key = 0; /* a producer that knows no span leaves it so */
                return s;
            }
            /* p was reloaded by the failed CAS */
        } else if (dif < 0) {
            /* The slot still holds an unconsumed sample from one lap ago. */
            atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
            return NULL;
        } else {
            p = atomic_load_explicit(&r->head, memory_order_relaxed);
        }
    }
}

void ring_publish(struct sample_ring *r, struct sample_slot *s, uint64_t pos)
{
    seq_store(r, s, pos + 1);
}

struct sample_slot *ring_peek(struct sample_ring *r)
{
    struct sample_slot *s = &r->slots[r->tail & r->mask];
    if (seq_load(r, s) != r->tail + 1)
        return NULL;
    return s;
}

void ring_release(struct sample_ring *r, struct sample_slot *s)
{
    seq_store(r, s, r->tail + r->mask + 1);
    r->tail++;
}
