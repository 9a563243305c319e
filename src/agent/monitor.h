/*
 * monitor.h — how busy the process is, as a percent of the capacity it
 * really has: the CPU % and memory % the triggers (SPEC A2) and the
 * session metadata use.
 *
 * Capacity: the cgroup's CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us /
 * cpu.cfs_period_us) and memory limit (v2 memory.max, v1
 * memory.limit_in_bytes) of the process's cgroup or the nearest ancestor
 * that sets one, found through /proc/self/cgroup and /proc/self/mountinfo;
 * else the machine's (CPUs the process may run on, MemTotal).  The kernel
 * enforces every ancestor's limit, so when several levels set one the
 * smallest wins (the nearest on ties); a quota or limit above the
 * machine's capacity limits nothing and counts as unset.  v1 controllers
 * win over v2 on hybrid systems.
 *
 * Memory in use is the working set, never page cache: with a cgroup
 * limit, the cgroup's usage minus its inactive file cache (v2
 * memory.current - memory.stat inactive_file; v1 memory.usage_in_bytes -
 * memory.stat total_inactive_file), as container runtimes count it;
 * without one, the process's resident anonymous and shared memory
 * (RssAnon + RssShmem of /proc/self/status) against MemTotal.
 *
 * CPU in use: the process's CPU time (CLOCK_PROCESS_CPUTIME_ID) between
 * two monitor_sample() calls over the wall time between them, as a
 * percent of the CPUs it may use (100 % = the whole quota, or every CPU
 * of its affinity mask).
 *
 * Not thread-safe (one monitor per caller, the agent thread); never from
 * a signal handler.  Reads files only; no allocation after monitor_new.
 */
#ifndef SONDE_MONITOR_H
#define SONDE_MONITOR_H

#include <stdint.h>

struct monitor;

/* Where to read from: "/" for the real system; tests point it at a fake
 * tree holding proc/self/{cgroup,mountinfo,status}, proc/meminfo and the
 * cgroup files under the mount points mountinfo names (prefixed by root).
 * Looks up the cgroup paths once (no cgroup found: the machine's capacity
 * is used, and said in the agent log).  NULL on ENOMEM or a root path too
 * long to use, with sonde_errmsg() set. */
struct monitor *monitor_new(const char *root);
void monitor_free(struct monitor *m);

struct monitor_reading {
    double cpu_pct;          /* since the previous sample; first call: 0 */
    double mem_pct;          /* working set / memory capacity, now */
    double cpu_capacity;     /* CPUs: quota/period, else affinity count */
    uint64_t mem_capacity;   /* bytes: the limit, else MemTotal */
    uint64_t mem_used;       /* bytes: working set as described above */
    int cpu_limited;         /* 1 if a cgroup quota set cpu_capacity */
    int mem_limited;         /* 1 if a cgroup limit set mem_capacity */
};

/* Takes a reading.  now_ns: CLOCK_MONOTONIC; cpu_ns: the process's CPU
 * time (CLOCK_PROCESS_CPUTIME_ID) — passed in so tests can drive it.
 * Limits are re-read each time (they may change at run time).  0, or
 * -errno when the memory in use could not be read at all (out then holds
 * zeros; sonde_errmsg() and the agent log say why, once per new error).
 * Malformed, missing or oversized cgroup files count as "no limit". */
int monitor_sample(struct monitor *m, int64_t now_ns, int64_t cpu_ns, struct monitor_reading *out);

#endif
