/*
 * handler.c — the sampling signal handler.
 *
 * async-signal-safe: no malloc, no locks, no stdio, no dynamic loader,
 * errno saved.  It runs on whatever thread a CPU-time timer fired for, in
 * the middle of whatever that thread was doing (inside malloc, holding a
 * lock, in the dynamic loader), so it only: reads the interrupted
 * registers, finds its thread slot (TLS, else a lock-free table probe),
 * re-arms its own timer with jitter through a raw syscall, claims a ring
 * slot and unwinds straight into it, tags it with the thread's open span
 * (span_rec.h), and publishes it.  Everything else — hashing stacks,
 * symbols, files — happens later on the agent thread.
 *
 * The same signal, queued to one thread by the task watcher (si_code
 * SI_QUEUE, SNAPSHOT_TAG), asks for one stack in the snapshot box
 * instead (sampler.h): active profiling of a running thread.
 *
 * Weight: a CPU-time timer on this kernel is checked at scheduler ticks,
 * so at high frequencies one signal stands for several expirations; the
 * kernel reports the missed ones in si_overrun.  A sample therefore weighs
 * (the step since the previous scheduled expiry: the interval, or the
 * jittered one we re-armed) + si_overrun x interval, which keeps the
 * profile's total equal to the CPU time the thread used.
 */
#include <errno.h>
#include <stddef.h>
#include <time.h>
#include <ucontext.h>
#include <x86intrin.h>

#include "sampler.h"
#include "span_rec.h"
#include "sys.h"

struct sampler_state sampler;
__thread struct thread_slot *sampler_tls_slot __attribute__((tls_model("initial-exec")));
__thread struct span_rec *span_tls_rec __attribute__((tls_model("initial-exec")));

static inline uint32_t tid_hash(int tid)
{
    return (uint32_t)tid * 2654435761u;
}

struct thread_slot *sampler_find_thread(int tid)
{
    struct thread_slot *slots = sampler.threads.slots;
    _Atomic int *keys = sampler.threads.keys;
    if (!slots || !keys || tid <= 0)
        return NULL;
    uint32_t mask = sampler.threads.mask;
    uint32_t i = tid_hash(tid) & mask;
    for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
        int v = atomic_load_explicit(&keys[i], memory_order_acquire);
        if (v == tid)
            return &slots[i];
        if (v == SLOT_FREE)
            return NULL;
    }
    return NULL;
}

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

int sampler_arm_timer(struct thread_slot *t, int64_t interval_ns, int initial)
{
    int timer = atomic_load_explicit(&t->timer, memory_order_acquire);
    if (timer < 0)
        return -EINVAL;
    int64_t value, weight;
    if (initial) {
        /* A random phase in (0, interval]: a thread that lives for c ns of
         * CPU gets c / interval samples on average, even when c < interval
         * (short-lived threads are not lost). */
        value = 1 + (int64_t)(xorshift(&t->rng) % (uint64_t)interval_ns);
        weight = interval_ns;
    } else {
        /* The kernel noticed this expiry at a tick, possibly ms after it
         * was due, and already moved the timer to its next scheduled
         * expiry.  Re-arm relative to that schedule (never to now, which
         * would drop the lateness from every sample) with a jitter d in
         * [-0.1, 0.1) x interval, so the next sample weighs interval + d. */
        struct itimerspec cur;
        if (sys_call4(SYS_timer_gettime, timer, (long)&cur, 0, 0) != 0)
            return -EINVAL;
        int64_t remaining = (int64_t)cur.it_value.tv_sec * 1000000000 + cur.it_value.tv_nsec;
        int64_t span = interval_ns / 5;
        int64_t d = span > 0 ? (int64_t)(xorshift(&t->rng) % (uint64_t)span) - interval_ns / 10 : 0;
        value = remaining + d;
        if (value < 1000)
            value = 1000;
        weight = interval_ns + (value - remaining);
    }
    struct itimerspec its;
    its.it_value.tv_sec = value / 1000000000;
    its.it_value.tv_nsec = value % 1000000000;
    its.it_interval.tv_sec = interval_ns / 1000000000;
    its.it_interval.tv_nsec = interval_ns % 1000000000;
    long r = sys_call4(SYS_timer_settime, timer, 0, (long)&its, 0);
    if (r < 0)
        return (int)r;
    t->armed_ns = weight;
    return 0;
}

void sampler_stack_bounds(struct thread_slot *t, uintptr_t sp, uintptr_t *lo, uintptr_t *hi)
{
    uintptr_t l = t ? atomic_load_explicit(&t->stack_lo, memory_order_relaxed) : 0;
    uintptr_t h = t ? atomic_load_explicit(&t->stack_hi, memory_order_relaxed) : 0;
    if (h && sp >= l && sp < h) {
        *lo = sp;
        *hi = h;
        return;
    }
    /* Unknown thread stack (or running on an alternate signal stack):
     * the mapping that holds sp, from the last /proc/self/maps snapshot,
     * capped so a stale merged mapping cannot lead far. */
    *lo = *hi = 0;
    struct stack_maps *m = atomic_load_explicit(&sampler.stack_maps, memory_order_acquire);
    if (!m)
        return;
    uint32_t a = 0, b = m->n;
    while (a < b) {
        uint32_t mid = (a + b) / 2;
        if (sp < m->r[mid].lo)
            b = mid;
        else if (sp >= m->r[mid].hi)
            a = mid + 1;
        else {
            *lo = sp;
            *hi = m->r[mid].hi;
            if (*hi - sp > (8u << 20))
                *hi = sp + (8u << 20);
            return;
        }
    }
}

/* Unwinds the context the signal interrupted (uc) into pcs[0 .. max),
 * within t's stack (or the mapping that holds sp when t is NULL): the
 * walk both the timer's samples and snapshots take.  Frames, or < 0. */
static inline int unwind_interrupted(const ucontext_t *uc, struct thread_slot *t, uintptr_t *pcs,
                                     int max, int *truncated)
{
    struct unwind_regs regs = {
        .pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP],
        .sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP],
        .fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP],
        .fp_known = 1,
    };
    struct unwind_stack stk = {0, 0, 0};
    sampler_stack_bounds(t, regs.sp, &stk.lo, &stk.hi);
    return unwind_walk(&regs, &stk, pcs, max, truncated);
}

/* A snapshot request (sampler.h, struct snapshot_box): if the box waits
 * for this very thread, claim it and unwind the interrupted context into
 * it.  Independent of sampler.running and of the thread table (a thread
 * the table does not know unwinds within the mapping that holds its sp);
 * no ring, no timer. */
static void snapshot_take(const ucontext_t *uc)
{
    struct snapshot_box *b = &sampler.snapshot;
    uint64_t st = atomic_load_explicit(&b->state, memory_order_acquire);
    if (SNAPSHOT_PHASE(st) != SNAPSHOT_REQUESTED)
        return;
    int tid = sys_gettid();
    if (atomic_load_explicit(&b->tid, memory_order_relaxed) != tid)
        return;
    uint64_t base = st & ~(uint64_t)3;
    if (!atomic_compare_exchange_strong_explicit(&b->state, &st, base | SNAPSHOT_WRITING,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return; /* given up by the requester meanwhile */
    struct thread_slot *t = sampler_tls_slot;
    if (!t)
        t = sampler_find_thread(tid);
    int truncated = 0;
    int n = unwind_interrupted(uc, t, b->pcs, SNAPSHOT_MAX_FRAMES, &truncated);
    b->nframes = n < 0 ? 0 : n;
    b->truncated = truncated;
    atomic_store_explicit(&b->state, base | SNAPSHOT_WRITTEN, memory_order_release);
}

void sampler_handler(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    int saved_errno = errno;
    atomic_fetch_add_explicit(&sigsafe_active, 1, memory_order_acq_rel);
    if (si->si_code == SI_QUEUE) {
        /* Not a timer's: a snapshot request, or someone else's signal. */
        if (si->si_value.sival_int == SNAPSHOT_TAG)
            snapshot_take(ucv);
        atomic_fetch_sub_explicit(&sigsafe_active, 1, memory_order_acq_rel);
        errno = saved_errno;
        return;
    }
    uint64_t t0 = sampler.selftime ? __rdtsc() : 0;

    if (si->si_code != SI_TIMER || si->si_value.sival_int != SAMPLER_TAG ||
        !atomic_load_explicit(&sampler.running, memory_order_acquire))
        goto out;

    struct thread_slot *t = sampler_tls_slot;
    if (!t) {
        t = sampler_find_thread(sys_gettid());
        if (!t) {
            atomic_fetch_add_explicit(&sampler.no_slot, 1, memory_order_relaxed);
            goto out;
        }
        sampler_tls_slot = t;
    }
    if (atomic_load_explicit(&t->flags, memory_order_relaxed) & SLOT_AGENT)
        goto out;

    /* This sample stands for the time since the previous scheduled expiry
     * (armed_ns) plus every expiry the kernel folded into this signal. */
    int64_t weight = t->armed_ns + (int64_t)si->si_overrun * sampler.interval_ns;
    t->armed_ns = sampler.interval_ns; /* the periodic timer's next step */
    /* Re-jitter the phase on about one sample in eight: a system call
     * costs 1-2 us on a VM with mitigations, more than the whole walk, so
     * the typical sample makes none; the phase still moves often enough
     * that periodic work cannot stay aligned with the samples. */
    if ((xorshift(&t->rng) & 7) == 0)
        sampler_arm_timer(t, sampler.interval_ns, 0);
    t->sched_cpu_ns += weight;

    uint64_t pos;
    struct sample_slot *s = ring_claim(&sampler.ring, &pos);
    if (!s)
        goto out;
    int truncated = 0;
    int n = unwind_interrupted(ucv, t, s->pcs, sampler.max_frames, &truncated);
    s->tid = (uint32_t)atomic_load_explicit(&t->tid, memory_order_relaxed);
    s->types = (uint8_t)sampler.types;
    s->state = 'R';
    s->nframes = (uint16_t)(n < 0 ? 0 : n);
    s->weight_ns = weight;
    s->truncated = (uint32_t)truncated;
    /* The span this thread is in: its own record, whose strings only this
     * (interrupted) thread writes, so one read of the key suffices.  The
     * slot's pointer to it lets the wall sampler find it too. */
    struct span_rec *sr = span_tls_rec;
    if (sr) {
        span_rec_tag_own(sr, s);
        if (atomic_load_explicit(&t->span_rec, memory_order_relaxed) != sr)
            atomic_store_explicit(&t->span_rec, sr, memory_order_relaxed);
    }
    for (int i = 0; i < n; i++)
        t->last_pcs[i] = s->pcs[i];
    t->last_n = (uint16_t)(n < 0 ? 0 : n);
    ring_publish(&sampler.ring, s, pos);
    atomic_fetch_add_explicit(&sampler.samples, 1, memory_order_relaxed);
    if (truncated)
        atomic_fetch_add_explicit(&sampler.truncated, 1, memory_order_relaxed);

out:
    if (t0) {
        uint64_t ns = (unsigned __int128)(__rdtsc() - t0) * sampler.tsc_mult >> 32;
        uint64_t b = ns / SELFTIME_NS_PER_BUCKET;
        if (b >= SELFTIME_BUCKETS)
            b = SELFTIME_BUCKETS - 1;
        atomic_fetch_add_explicit(&sampler.selftime_n, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&sampler.selftime_hist[b], 1, memory_order_relaxed);
    }
    atomic_fetch_sub_explicit(&sigsafe_active, 1, memory_order_acq_rel);
    errno = saved_errno;
}
