/*
 * sys.h — raw system calls for the signal handler.
 *
 * async-signal-safe: no malloc, no locks, no stdio, no dynamic loader,
 * errno untouched (these never go through libc, so they cannot trigger lazy
 * PLT binding inside a handler and never write errno).
 */
#ifndef SONDE_SIGSAFE_SYS_H
#define SONDE_SIGSAFE_SYS_H

#include <stdint.h>
#include <sys/syscall.h>

static inline long sys_call1(long n, long a)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a) : "rcx", "r11", "memory");
    return r;
}

static inline long sys_call4(long n, long a, long b, long c, long d)
{
    long r;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return r;
}

static inline int sys_gettid(void)
{
    return (int)sys_call1(SYS_gettid, 0);
}

#endif
