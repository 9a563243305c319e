/*
 * wall.c — the wall-clock sampler's pass over blocked threads.
 *
 * A wall profile must cover every thread, running or blocked, but a signal
 * sent to a blocked thread makes epoll_wait/select return EINTR and
 * shortens sleeps the host did not ask to shorten.  So blocked threads are
 * never signalled:
 *   - A thread in state R is on (or waiting for) a CPU; its CPU-time timer
 *     (armed at the wall interval in wall mode) samples it from inside,
 *     tagged as wall with state 'R'.
 *   - Any other thread is blocked.  Its user sp and pc while in a syscall
 *     are in /proc/self/task/TID/syscall; its stack is in our own address
 *     space.  We copy the stack with process_vm_readv (which fails cleanly
 *     if the thread has exited and the memory is gone), check that sp/pc
 *     did not change meanwhile (else the copy may be torn: skip), and
 *     unwind the copy with rbp unknown (the unwinder recovers it from the
 *     callee-saved slots or a frame-record heuristic).  A thread still
 *     blocked at the same sp/pc as last time reuses its last stack.
 * Each such sample weighs the wall time since the thread's last pass, and
 * carries the span the thread is in (sigsafe/span_rec.h), like the
 * handler's samples do.
 * The blocked-thread read (state, registers, stack copy, walk) is
 * wall.h's, shared with the task watcher's snapshots (task.c); the pass
 * itself (wall_pass) runs on the agent thread only.
 */
#include "wall.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "agent.h"
#include "sigsafe/span_rec.h"
#include "threads.h"

static uint8_t copybuf[WALL_COPY_MAX]; /* the agent thread's (wall_pass) */

int wall_read_task_file(int tid, const char *name, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/%s", tid, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    return (int)n;
}

char wall_thread_state(int tid)
{
    char buf[512];
    if (wall_read_task_file(tid, "stat", buf, sizeof buf) < 0)
        return 0;
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return 0;
    return p[2];
}

int wall_blocked_regs(int tid, struct wall_regs *out)
{
    char buf[256];
    if (wall_read_task_file(tid, "syscall", buf, sizeof buf) < 0)
        return -ESRCH;
    if (strncmp(buf, "running", 7) == 0)
        return -EAGAIN;
    /* "NR a1 a2 a3 a4 a5 a6 sp pc", or "-1 sp pc" when blocked outside a
     * syscall. */
    char *tok[9];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, " \n", &save); t && n < 9; t = strtok_r(NULL, " \n", &save))
        tok[n++] = t;
    if (n != 9 && n != 3)
        return -ESRCH;
    out->nr = n == 9 ? strtol(tok[0], NULL, 10) : -1;
    out->sp = (uintptr_t)strtoull(tok[n - 2], NULL, 16);
    out->pc = (uintptr_t)strtoull(tok[n - 1], NULL, 16);
    return out->sp && out->pc ? 0 : -ESRCH;
}

int wall_blocked_stack(int tid, struct thread_slot *t, const struct wall_regs *regs, uint8_t *buf,
                       size_t len, uintptr_t *pcs, int max, int *truncated)
{
    uintptr_t sp = regs->sp, pc = regs->pc;
    uintptr_t lo, hi;
    sampler_stack_bounds(t, sp, &lo, &hi);
    size_t want = hi > sp ? hi - sp : 16384;
    if (want > len)
        want = len;
    if (want > WALL_COPY_MAX)
        want = WALL_COPY_MAX;
    /* Page-sized iovecs: process_vm_readv stops at the first one that
     * faults, so we keep whatever was readable. */
    struct iovec local[WALL_COPY_MAX / 4096 + 1], remote[WALL_COPY_MAX / 4096 + 1];
    size_t niov = 0, off = 0;
    while (off < want) {
        size_t chunk = 4096 - ((sp + off) & 4095);
        if (chunk > want - off)
            chunk = want - off;
        local[niov].iov_base = buf + off;
        local[niov].iov_len = chunk;
        remote[niov].iov_base = (void *)(sp + off);
        remote[niov].iov_len = chunk;
        niov++;
        off += chunk;
    }
    ssize_t got = process_vm_readv(getpid(), local, niov, remote, niov, 0);
    if (got <= 0)
        return -ESRCH;
    struct wall_regs again;
    if (wall_blocked_regs(tid, &again) != 0 || again.sp != sp || again.pc != pc)
        return -EAGAIN; /* it moved while we copied */
    struct unwind_regs ur = {.pc = pc, .sp = sp, .fp = 0, .fp_known = 0};
    struct unwind_stack stk = {.lo = sp, .hi = sp + (uintptr_t)got,
                               .delta = (intptr_t)((uintptr_t)buf - sp)};
    int trunc = 0;
    atomic_fetch_add(&sigsafe_active, 1);
    int n = unwind_walk(&ur, &stk, pcs, max, &trunc);
    atomic_fetch_sub(&sigsafe_active, 1);
    if (truncated)
        *truncated = trunc;
    return n > 0 ? n : -ENOENT;
}

static void push(struct thread_slot *t, char state, int64_t weight)
{
    uint64_t pos;
    struct sample_slot *s = ring_claim(&sampler.ring, &pos);
    if (!s)
        return;
    int n = t->wall_n;
    memcpy(s->pcs, t->wall_stack, (size_t)n * sizeof(uintptr_t));
    s->tid = (uint32_t)atomic_load(&t->tid);
    s->types = SONDE_PROFILE_WALL;
    s->state = (uint8_t)state;
    s->nframes = (uint16_t)n;
    s->weight_ns = weight;
    s->truncated = 0;
    /* The span the thread is blocked in, if any (a request waiting on a
     * database, say): its record, read seqlock-style since its owner may
     * be running again by now. */
    struct span_rec *sr = atomic_load_explicit(&t->span_rec, memory_order_acquire);
    if (sr)
        span_rec_tag_other(sr, (int)s->tid, s);
    ring_publish(&sampler.ring, s, pos);
    atomic_fetch_add_explicit(&sampler.samples, 1, memory_order_relaxed);
}

static void sample_blocked(struct thread_slot *t, void *arg)
{
    (void)arg;
    int tid = atomic_load(&t->tid);
    char st = wall_thread_state(tid);
    if (st == 0 || st == 'R' || st == 'Z' || st == 'X')
        return; /* running: its CPU timer samples it; gone: nothing to do */
    struct wall_regs regs;
    if (wall_blocked_regs(tid, &regs) != 0)
        return;
    int64_t weight = sampler.interval_ns;

    if (!(t->wall_stack && t->wall_sp == regs.sp && t->wall_pc == regs.pc)) {
        if (!t->wall_stack) {
            t->wall_stack = malloc(UNWIND_MAX_FRAMES * sizeof(uintptr_t));
            if (!t->wall_stack)
                return;
        }
        int n = wall_blocked_stack(tid, t, &regs, copybuf, sizeof copybuf, t->wall_stack,
                                   sampler.max_frames, NULL);
        if (n <= 0)
            return;
        t->wall_n = (uint16_t)n;
        t->wall_sp = regs.sp;
        t->wall_pc = regs.pc;
    }
    push(t, st, weight);
}

void wall_pass(int64_t now_ns)
{
    (void)now_ns;
    threads_foreach(sample_blocked, NULL);
}
