/*
 * wall.h — reading the stack of a thread blocked in the kernel without
 * interrupting it (wall.c): its state and saved registers from
 * /proc/self/task/TID, a copy of its stack with process_vm_readv, and a
 * walk of the copy.  Shared by the wall sampler (wall_pass, agent.h) and
 * the task watcher's snapshots of blocked threads (task.c).
 *
 * Thread-safety: any thread but a signal handler; the caller owns the
 * copy buffer and the output (one buffer per calling thread).  The walk
 * counts itself in sigsafe_active, as the handler does, so module tables
 * are not freed under it.
 */
#ifndef SONDE_WALL_H
#define SONDE_WALL_H

#include <stddef.h>
#include <stdint.h>

#include "sigsafe/sampler.h"

/* Stack bytes copied per blocked thread at most (from its sp up). */
#define WALL_COPY_MAX (128 * 1024)

/* Where a blocked thread waits: /proc/self/task/TID/syscall. */
struct wall_regs {
    long nr;            /* system call number, -1 if blocked outside one */
    uintptr_t sp, pc;   /* user stack pointer and pc */
};

/* Reads /proc/self/task/TID/NAME (name: a short file name such as
 * "stat") into buf, NUL-terminated, at most len - 1 bytes (len >= 2).
 * Bytes read (> 0), or -1 if it cannot be opened or is empty. */
int wall_read_task_file(int tid, const char *name, char *buf, size_t len);

/* The state letter of thread tid from /proc/self/task/TID/stat (R, S,
 * D, T, Z, ...); 0 if it is gone or the file says nothing usable. */
char wall_thread_state(int tid);

/* The registers of tid blocked in the kernel.  0; -EAGAIN if it runs
 * (nothing saved to read); -ESRCH if it is gone or the file is not
 * usable. */
int wall_blocked_regs(int tid, struct wall_regs *out);

/* Copies the stack of tid, blocked at regs (from wall_blocked_regs),
 * into buf (len bytes, at most WALL_COPY_MAX used; stack bounds of t, or
 * of the mapping that holds sp when t is NULL), checks that the thread
 * did not move meanwhile (else the copy may be torn), and unwinds the
 * copy into pcs[0 .. max) (pcs[0] = regs->pc).  Returns the number of
 * frames (>= 1); -ESRCH (gone: the copy failed), -EAGAIN (it moved), or
 * -ENOENT (nothing could be unwound).  *truncated as unwind_walk sets it
 * (may be NULL). */
int wall_blocked_stack(int tid, struct thread_slot *t, const struct wall_regs *regs, uint8_t *buf,
                       size_t len, uintptr_t *pcs, int max, int *truncated);

#endif
