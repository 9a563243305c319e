/*
 * test_monitor.c — the CPU and memory monitor (src/agent/monitor.c):
 * capacity from cgroup v1 and v2 quotas and limits (nearest or smallest
 * ancestor, namespaced mounts, hybrid systems) or the machine's; memory
 * in use as the working set, page cache left out; CPU % from two
 * samples; no crash on malformed, missing or huge files.
 *
 * Most tests build a fake tree (proc/self/{cgroup,mountinfo,status},
 * proc/meminfo, cgroup files) in a temp directory and point monitor_new at
 * it.  Two use the real system: a sanity reading of "/", and, when this
 * machine lets us create a v1 memory cgroup, a child process under a
 * 256 MiB limit that allocates 100 MiB and then reads a 150 MiB file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "monitor.h"

#define MiB (1024ull * 1024)
#define GiB (1024 * MiB)
#define MEMTOTAL_KB 16777216ull /* the fake machine: 16 GiB */
#define RSS_KB (102400ull + 2048) /* RssAnon + RssShmem of the fake status */

static char tree[64];

/* ---- fake trees ---------------------------------------------------------- */

static void mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
}

/* Writes tree/rel, creating its directories. */
static void put(const char *rel, const char *fmt, ...)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tree, rel);
    mkdirs(path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

/* The machine: 16 GiB, and a process with 100 MiB anonymous + 2 MiB
 * shared resident (its 5 MiB of file-backed pages do not count). */
static void put_machine(void)
{
    put("proc/meminfo", "MemTotal:       %llu kB\nMemFree:         1000 kB\nCached:   9999999 kB\n",
        MEMTOTAL_KB);
    put("proc/self/status", "Name:\tservice\nVmRSS:\t  109568 kB\nRssAnon:\t  102400 kB\n"
                            "RssFile:\t    5120 kB\nRssShmem:\t    2048 kB\nThreads:\t4\n");
}

/* A pure v2 system, the process in cgpath. */
static void put_v2(const char *cgpath)
{
    put_machine();
    put("proc/self/cgroup", "0::%s\n", cgpath);
    put("proc/self/mountinfo",
        "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        "25 22 0:23 / /proc rw,nosuid shared:12 - proc proc rw\n"
        "35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev shared:9 - cgroup2 cgroup2 rw,nsdelegate\n");
}

/* A v1 system: cpu co-mounted with cpuacct, memory on its own. */
static void put_v1(const char *cgpath)
{
    put_machine();
    put("proc/self/cgroup",
        "12:pids:/x\n11:memory:%s\n4:cpu,cpuacct:%s\n3:cpuset:/y\n1:name=systemd:/z\n0::/\n",
        cgpath, cgpath);
    put("proc/self/mountinfo",
        "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        "30 22 0:27 / /sys/fs/cgroup ro,nosuid shared:8 - tmpfs tmpfs ro,mode=755\n"
        "31 30 0:28 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw\n"
        "32 30 0:29 / /sys/fs/cgroup/systemd rw shared:10 - cgroup cgroup rw,xattr,name=systemd\n"
        "33 30 0:30 / /sys/fs/cgroup/cpuset rw shared:11 - cgroup cgroup rw,cpuset\n"
        "34 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct\n"
        "35 30 0:32 / /sys/fs/cgroup/memory rw shared:13 - cgroup cgroup rw,memory\n");
}

static int make_tree(void **state)
{
    (void)state;
    strcpy(tree, "/tmp/test_monitor_XXXXXX");
    assert_non_null(mkdtemp(tree));
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int remove_tree(void **state)
{
    (void)state;
    nftw(tree, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static int affinity_cpus(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    return CPU_COUNT(&set);
}

/* One reading of the fake tree with a fresh monitor. */
static int read_tree(struct monitor_reading *r)
{
    struct monitor *m = monitor_new(tree);
    assert_non_null(m);
    int rc = monitor_sample(m, 1000000000, 0, r);
    monitor_free(m);
    return rc;
}

static void assert_machine_values(const struct monitor_reading *r)
{
    assert_int_equal(r->mem_limited, 0);
    assert_int_equal(r->mem_capacity, MEMTOTAL_KB * 1024);
    assert_int_equal(r->mem_used, RSS_KB * 1024);
    assert_true(r->mem_pct > 0.62 && r->mem_pct < 0.63); /* 102 MiB / 16 GiB */
}

/* ---- fake trees: limits -------------------------------------------------- */

static void test_v2_quota_and_limit_set_the_capacity(void **state)
{
    (void)state;
    put_v2("/app.slice/web.service");
    const char *d = "sys/fs/cgroup/app.slice/web.service";
    char p[256];
#define AT(file) (snprintf(p, sizeof p, "%s/%s", d, file), p)
    put(AT("cpu.max"), "50000 100000\n");
    put(AT("memory.max"), "1073741824\n");
    put(AT("memory.current"), "%llu\n", 600 * MiB);
    put(AT("memory.stat"), "anon 314572800\nfile 419430400\nactive_file 10485760\n"
                           "inactive_file %llu\nslab 1000\n",
        200 * MiB);
    struct monitor_reading r;
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.cpu_limited, 1);
    assert_true(r.cpu_capacity == 0.5);
    assert_int_equal(r.mem_limited, 1);
    assert_int_equal(r.mem_capacity, GiB);
    assert_int_equal(r.mem_used, 400 * MiB); /* 600 in use - 200 inactive cache */
    assert_true(r.mem_pct > 39.06 && r.mem_pct < 39.07);

    /* Reading a 300 MiB file adds only inactive page cache: no change. */
    put(AT("memory.current"), "%llu\n", 900 * MiB);
    put(AT("memory.stat"), "anon 314572800\ninactive_file %llu\n", 500 * MiB);
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_used, 400 * MiB);
    assert_true(r.mem_pct > 39.06 && r.mem_pct < 39.07);

    /* More inactive cache than usage (racy counters): 0, not a wrap. */
    put(AT("memory.stat"), "inactive_file %llu\n", 2 * GiB);
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_used, 0);
#undef AT
}

static void test_v1_quota_and_limit_set_the_capacity(void **state)
{
    (void)state;
    put_v1("/svc");
    put("sys/fs/cgroup/cpu,cpuacct/svc/cpu.cfs_quota_us", "200000\n");
    put("sys/fs/cgroup/cpu,cpuacct/svc/cpu.cfs_period_us", "100000\n");
    put("sys/fs/cgroup/memory/svc/memory.limit_in_bytes", "%llu\n", 512 * MiB);
    put("sys/fs/cgroup/memory/svc/memory.usage_in_bytes", "%llu\n", 300 * MiB);
    /* The hierarchical total_ figure counts, as usage_in_bytes is
     * hierarchical; the local inactive_file comes first and is ignored. */
    put("sys/fs/cgroup/memory/svc/memory.stat",
        "cache 1\nrss 2\ninactive_file 1048576\nactive_file 5\n"
        "hierarchical_memory_limit 536870912\ntotal_cache 3\ntotal_inactive_file %llu\n",
        44 * MiB);
    struct monitor_reading r;
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_limited, 1);
    assert_int_equal(r.mem_capacity, 512 * MiB);
    assert_int_equal(r.mem_used, 256 * MiB);
    assert_true(r.mem_pct == 50.0);
    /* 2 CPUs of quota: a limit only where the process could use more. */
    int ncpu = affinity_cpus();
    assert_int_equal(r.cpu_limited, ncpu >= 2);
    assert_true(r.cpu_capacity == (ncpu >= 2 ? 2.0 : ncpu));
    print_message("v1 quota 2 CPUs on %d CPUs: capacity %.2f, limited %d\n", ncpu, r.cpu_capacity,
                  r.cpu_limited);
}

static void test_a_limit_on_a_parent_is_found(void **state)
{
    (void)state;
    put_v2("/kubepods/pod1/c1");
    put("sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "max 100000\n");
    put("sys/fs/cgroup/kubepods/pod1/c1/memory.max", "max\n");
    put("sys/fs/cgroup/kubepods/pod1/c1/memory.current", "%llu\n", 50 * MiB);
    put("sys/fs/cgroup/kubepods/pod1/cpu.max", "150000 100000\n");
    put("sys/fs/cgroup/kubepods/pod1/memory.max", "%llu\n", 256 * MiB);
    put("sys/fs/cgroup/kubepods/pod1/memory.current", "%llu\n", 128 * MiB);
    put("sys/fs/cgroup/kubepods/pod1/memory.stat", "inactive_file 0\n");
    put("sys/fs/cgroup/kubepods/cpu.max", "max 100000\n");
    put("sys/fs/cgroup/kubepods/memory.max", "max\n");
    struct monitor_reading r;
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_limited, 1);
    assert_int_equal(r.mem_capacity, 256 * MiB);
    assert_int_equal(r.mem_used, 128 * MiB); /* the pod's usage, not c1's */
    assert_true(r.mem_pct == 50.0);
    if (affinity_cpus() >= 2) {
        assert_int_equal(r.cpu_limited, 1);
        assert_true(r.cpu_capacity == 1.5);
    }

    /* A looser limit on the child does not hide the parent's. */
    put("sys/fs/cgroup/kubepods/pod1/c1/memory.max", "%llu\n", 512 * MiB);
    put("sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "400000 100000\n");
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_capacity, 256 * MiB);
    assert_int_equal(r.mem_used, 128 * MiB);
    if (affinity_cpus() >= 2)
        assert_true(r.cpu_capacity == 1.5);

    /* A tighter one on the child wins, with the child's usage. */
    put("sys/fs/cgroup/kubepods/pod1/c1/memory.max", "%llu\n", 100 * MiB);
    put("sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "25000 100000\n");
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_capacity, 100 * MiB);
    assert_int_equal(r.mem_used, 50 * MiB);
    assert_true(r.cpu_capacity == 0.25);
}

static void test_unlimited_means_the_machine(void **state)
{
    (void)state;
    put_v2("/user.slice");
    put("sys/fs/cgroup/user.slice/cpu.max", "max 100000\n");
    put("sys/fs/cgroup/user.slice/memory.max", "max\n");
    put("sys/fs/cgroup/user.slice/memory.current", "%llu\n", 8 * GiB);
    struct monitor_reading r;
    assert_int_equal(read_tree(&r), 0);
    assert_machine_values(&r);
    assert_int_equal(r.cpu_limited, 0);
    assert_true(r.cpu_capacity == affinity_cpus());

    /* A limit above the machine's memory limits nothing. */
    put("sys/fs/cgroup/user.slice/memory.max", "%llu\n", 64 * GiB);
    assert_int_equal(read_tree(&r), 0);
    assert_machine_values(&r);

    /* v1 "unlimited" is 2^63 rounded down to a page. */
    put_v1("/");
    put("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    put("sys/fs/cgroup/memory/memory.usage_in_bytes", "%llu\n", 8 * GiB);
    put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    assert_int_equal(read_tree(&r), 0);
    assert_machine_values(&r);
    assert_int_equal(r.cpu_limited, 0);
}

static void test_a_namespaced_mount_root_is_stripped(void **state)
{
    (void)state;
    put_machine();
    /* The container sees only its own sub-tree, mounted at a path with a
     * space in it (escaped as \040 in mountinfo). */
    put("proc/self/cgroup", "0::/kubepods/pod7/c2/worker\n");
    put("proc/self/mountinfo",
        "22 1 252:1 / / rw shared:1 - overlay overlay rw\n"
        "40 22 0:30 /kubepods/pod7/c2 /sys/fs/cgroup\\040ns ro,nosuid - cgroup2 cgroup2 rw\n");
    put("sys/fs/cgroup ns/worker/memory.max", "max\n");
    put("sys/fs/cgroup ns/memory.max", "%llu\n", 200 * MiB);
    put("sys/fs/cgroup ns/memory.current", "%llu\n", 50 * MiB);
    put("sys/fs/cgroup ns/cpu.max", "50000 100000\n");
    struct monitor_reading r;
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_limited, 1);
    assert_int_equal(r.mem_capacity, 200 * MiB);
    assert_true(r.mem_pct == 25.0);
    assert_true(r.cpu_capacity == 0.5);

    /* With a cgroup namespace, /proc/self/cgroup says "/" too. */
    put("proc/self/cgroup", "0::/\n");
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_capacity, 200 * MiB);

    /* A path outside the namespace ("/../x"): the mount's top. */
    put("proc/self/cgroup", "0::/../../other\n");
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_capacity, 200 * MiB);
}

static void test_hybrid_prefers_v1_controllers(void **state)
{
    (void)state;
    put_v1("/svc");
    /* The unified hierarchy has no controllers here; a memory.max in it
     * must not be taken. */
    put("proc/self/cgroup", "11:memory:/svc\n4:cpu,cpuacct:/svc\n0::/svc\n");
    put("sys/fs/cgroup/unified/svc/memory.max", "%llu\n", 10 * MiB);
    put("sys/fs/cgroup/unified/svc/memory.current", "%llu\n", 5 * MiB);
    put("sys/fs/cgroup/unified/svc/cpu.max", "10000 100000\n");
    put("sys/fs/cgroup/memory/svc/memory.limit_in_bytes", "%llu\n", 400 * MiB);
    put("sys/fs/cgroup/memory/svc/memory.usage_in_bytes", "%llu\n", 100 * MiB);
    struct monitor_reading r;
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_capacity, 400 * MiB);
    assert_int_equal(r.mem_used, 100 * MiB); /* no memory.stat: nothing subtracted */
    assert_int_equal(r.cpu_limited, 0);
    assert_true(r.cpu_capacity == affinity_cpus());
}

/* ---- fake trees: bad input ----------------------------------------------- */

static void test_nothing_readable_is_an_error_with_zeros(void **state)
{
    (void)state;
    struct monitor_reading r;
    memset(&r, 0xff, sizeof r);
    assert_int_equal(read_tree(&r), -ENOENT);
    assert_true(r.cpu_pct == 0 && r.mem_pct == 0 && r.cpu_capacity == 0);
    assert_int_equal(r.mem_capacity, 0);
    assert_int_equal(r.mem_used, 0);
    assert_int_equal(r.mem_limited + r.cpu_limited, 0);

    /* MemTotal but no status: still nothing to measure. */
    put("proc/meminfo", "MemTotal: 1000 kB\n");
    assert_true(read_tree(&r) < 0);
    /* A root that does not exist. */
    struct monitor *m = monitor_new("/nonexistent/sonde/root");
    assert_non_null(m);
    assert_int_equal(monitor_sample(m, 1, 1, &r), -ENOENT);
    assert_int_equal(monitor_sample(m, 2, 2, &r), -ENOENT); /* again: same answer */
    assert_int_equal(r.mem_capacity, 0);
    monitor_free(m);
    monitor_free(NULL);
}

static void test_malformed_files_fall_back(void **state)
{
    (void)state;
    struct monitor_reading r;
    put_v2("/app");
    const char *bad[] = {"", "lots\n", "-5\n", "12abc\n", "99999999999999999999999\n", "0\n",
                         "max max\n", "1 2 3\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put("sys/fs/cgroup/app/memory.max", "%s", bad[i]);
        put("sys/fs/cgroup/app/cpu.max", "%s", bad[i]);
        assert_int_equal(read_tree(&r), 0);
        assert_machine_values(&r);
        assert_int_equal(r.cpu_limited, 0);
    }

    /* A limit but no usage file: the process's own memory against it. */
    put("sys/fs/cgroup/app/memory.max", "%llu\n", GiB);
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_limited, 1);
    assert_int_equal(r.mem_capacity, GiB);
    assert_int_equal(r.mem_used, RSS_KB * 1024);

    /* Garbage in memory.stat: usage taken whole. */
    put("sys/fs/cgroup/app/memory.current", "%llu\n", 300 * MiB);
    put("sys/fs/cgroup/app/memory.stat", "inactive_file\ninactive_fileX 5\ninactive_file -3\n\n::\n");
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_used, 300 * MiB);

    /* Missing mountinfo or cgroup file: the machine. */
    put("proc/self/mountinfo", "garbage\n\n- - -\n1 2 3\n");
    assert_int_equal(read_tree(&r), 0);
    assert_machine_values(&r);
    put_v2("/app");
    put("proc/self/cgroup", "no colons\n1:memory\n::relative\n");
    assert_int_equal(read_tree(&r), 0);
    assert_machine_values(&r);

    /* status without the Rss lines (old kernels), no limit: an error. */
    put_v2("/app");
    put("sys/fs/cgroup/app/memory.max", "max\n");
    put("proc/self/status", "Name:\tx\nVmRSS:\t 1000 kB\n");
    assert_true(read_tree(&r) < 0);
}

/* A file of n bytes: lines of filler, then a last line. */
static void put_big(const char *rel, size_t n, const char *last)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tree, rel);
    mkdirs(path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < n; i += 32)
        fputs("filler_key_that_matches 1234567\n", f);
    fputs(last, f);
    fclose(f);
}

static void test_huge_files_are_read_bounded(void **state)
{
    (void)state;
    struct monitor_reading r;
    put_v2("/app");
    put("sys/fs/cgroup/app/memory.max", "%llu\n", GiB);
    put("sys/fs/cgroup/app/memory.current", "%llu\n", 300 * MiB);

    /* inactive_file past the first 64 KiB of memory.stat is not seen. */
    put_big("sys/fs/cgroup/app/memory.stat", 1 << 20, "inactive_file 104857600\n");
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_used, 300 * MiB);
    /* Within the bound it is, even after a line longer than the line
     * buffer (20 KB). */
    char path[512];
    snprintf(path, sizeof path, "%s/sys/fs/cgroup/app/memory.stat", tree);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("anon ", f);
    for (int i = 0; i < 2000; i++)
        fputs("1234567890", f);
    fputs("\ninactive_file 104857600\n", f);
    fclose(f);
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_used, 200 * MiB);

    /* A memory.max of 1 MiB of digits is not a limit. */
    snprintf(path, sizeof path, "%s/sys/fs/cgroup/app/memory.max", tree);
    f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 100000; i++)
        fputs("1234567890", f);
    fclose(f);
    assert_int_equal(read_tree(&r), 0);
    assert_machine_values(&r);

    /* A long mountinfo (thousands of mounts, one over-long line) is read
     * to the end. */
    put("sys/fs/cgroup/app/memory.max", "%llu\n", GiB);
    snprintf(path, sizeof path, "%s/proc/self/mountinfo", tree);
    f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 20000; i++)
        fprintf(f, "%d 22 0:%d / /run/netns/n%d rw shared:%d - nsfs nsfs rw\n", 100 + i, 50 + i, i, i);
    fputs("99999 22 0:1 / /", f);
    for (int i = 0; i < 2000; i++)
        fputs("very/long/", f);
    fputs(" rw - tmpfs tmpfs rw\n", f);
    fputs("35 25 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n", f);
    fclose(f);
    assert_int_equal(read_tree(&r), 0);
    assert_int_equal(r.mem_limited, 1);
    assert_int_equal(r.mem_capacity, GiB);
}

/* ---- CPU % ---------------------------------------------------------------- */

static void test_cpu_pct_is_of_the_quota(void **state)
{
    (void)state;
    put_v2("/app");
    put("sys/fs/cgroup/app/cpu.max", "50000 100000\n");
    struct monitor *m = monitor_new(tree);
    assert_non_null(m);
    struct monitor_reading r;
    const int64_t s = 1000000000;
    assert_int_equal(monitor_sample(m, 10 * s, 3 * s, &r), 0);
    assert_true(r.cpu_pct == 0); /* first call */
    /* 0.5 s of CPU in 1 s of wall time, with half a CPU: 100 %. */
    assert_int_equal(monitor_sample(m, 11 * s, 3 * s + s / 2, &r), 0);
    assert_true(r.cpu_pct > 99.999 && r.cpu_pct < 100.001);
    /* 0.1 s in 2 s: 10 %. */
    assert_int_equal(monitor_sample(m, 13 * s, 3 * s + 6 * s / 10, &r), 0);
    assert_true(r.cpu_pct > 9.999 && r.cpu_pct < 10.001);
    /* Same instant, or time going backwards: 0, not a division by 0. */
    assert_int_equal(monitor_sample(m, 13 * s, 4 * s, &r), 0);
    assert_true(r.cpu_pct == 0);
    assert_int_equal(monitor_sample(m, 14 * s, 3 * s, &r), 0);
    assert_true(r.cpu_pct == 0);

    /* Without a quota: of every CPU the process may use. */
    put("sys/fs/cgroup/app/cpu.max", "max 100000\n");
    int ncpu = affinity_cpus();
    assert_int_equal(monitor_sample(m, 15 * s, 4 * s, &r), 0);
    assert_true(r.cpu_capacity == ncpu);
    assert_true(r.cpu_pct > 100.0 / ncpu - 0.001 && r.cpu_pct < 100.0 / ncpu + 0.001);
    monitor_free(m);
}

/* ---- the real system ------------------------------------------------------ */

static int64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void test_real_system_reading_is_sane(void **state)
{
    (void)state;
    int fds = open_fds();
    struct monitor *m = monitor_new("/");
    assert_non_null(m);
    struct monitor_reading r;
    for (int i = 0; i < 1000; i++) /* every file closed again */
        assert_int_equal(monitor_sample(m, i, i, &r), 0);
    assert_int_equal(open_fds(), fds);
    assert_int_equal(monitor_sample(m, clock_ns(CLOCK_MONOTONIC), clock_ns(CLOCK_PROCESS_CPUTIME_ID), &r), 0);
    int64_t t0 = clock_ns(CLOCK_MONOTONIC);
    volatile uint64_t x = 0;
    while (clock_ns(CLOCK_MONOTONIC) - t0 < 50000000) /* 50 ms busy */
        x++;
    assert_int_equal(monitor_sample(m, clock_ns(CLOCK_MONOTONIC), clock_ns(CLOCK_PROCESS_CPUTIME_ID), &r), 0);
    print_message("real: cpu %.1f%% of %.2f CPUs (limited %d), mem %.3f%%: %llu of %llu bytes "
                  "(limited %d)\n",
                  r.cpu_pct, r.cpu_capacity, r.cpu_limited, r.mem_pct, (unsigned long long)r.mem_used,
                  (unsigned long long)r.mem_capacity, r.mem_limited);
    assert_true(r.cpu_capacity > 0);
    assert_true(r.mem_capacity > 0);
    assert_true(r.mem_used > 0);
    assert_true(r.mem_pct > 0 && r.mem_pct <= 100);
    assert_true(r.cpu_pct > 0 && r.cpu_pct <= 100.0 * 1.5);
    monitor_free(m);
}

/* The child under a real 256 MiB cgroup reports these through a pipe. */
struct child_report {
    int rc1, rc2;
    struct monitor_reading base;          /* before touching anything */
    struct monitor_reading before, after; /* before / after reading the file */
    uint64_t usage_before, usage_after;   /* memory.usage_in_bytes, raw */
};

static int write_str(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, s, strlen(s));
    int rc = n == (ssize_t)strlen(s) ? 0 : -errno;
    close(fd);
    return rc;
}

static uint64_t read_u64(const char *path)
{
    char buf[64] = "";
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? strtoull(buf, NULL, 10) : 0;
}

/* The process's own v1 memory cgroup directory, or "" (v2-only, none). */
static void own_memory_cgroup(char *dir, size_t cap)
{
    dir[0] = '\0';
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || strncmp(c1 + 1, "memory:", 7) != 0)
            continue;
        line[strcspn(line, "\n")] = '\0';
        snprintf(dir, cap, "/sys/fs/cgroup/memory%s", strcmp(c2 + 1, "/") ? c2 + 1 : "");
    }
    fclose(f);
}

static void child_main(int go_fd, int report_fd, const char *file, const char *cg)
{
    struct child_report rep;
    memset(&rep, 0, sizeof rep);
    char c;
    if (read(go_fd, &c, 1) != 1)
        _exit(2);
    char usage[1200];
    snprintf(usage, sizeof usage, "%s/memory.usage_in_bytes", cg);
    /* A baseline first: what the child already uses (under ASan its
     * runtime's own pages count too), then 100 MiB of touched anonymous
     * memory, charged to the new cgroup. */
    struct monitor *m = monitor_new("/");
    if (!m)
        _exit(4);
    monitor_sample(m, 1, 0, &rep.base);
    size_t n = 100 * MiB;
    /* Fresh pages from mmap, not malloc: a sanitizer's allocator could
     * hand back memory the parent touched (charged elsewhere, copied on
     * write here) or add its own pages. */
    volatile char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(3);
    for (size_t i = 0; i < n; i += 4096)
        p[i] = 0x5a;
    rep.rc1 = monitor_sample(m, 1, 0, &rep.before);
    rep.usage_before = read_u64(usage);
    /* 150 MiB read once: page cache charged to the cgroup. */
    int fd = open(file, O_RDONLY);
    if (fd < 0)
        _exit(5);
    char buf[65536];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    close(fd);
    rep.usage_after = read_u64(usage);
    rep.rc2 = monitor_sample(m, 2, 0, &rep.after);
    monitor_free(m);
    if (write(report_fd, &rep, sizeof rep) != sizeof rep)
        _exit(6);
    /* Stay alive (and charged) until the parent has looked. */
    while (read(go_fd, &c, 1) > 0)
        ;
    p[0] = 0;
    _exit(0);
}

/* A 150 MiB file on a disk file system, not in the page cache. */
static int make_cold_file(char *path, size_t cap)
{
    snprintf(path, cap, "/var/tmp/test_monitor_%d.dat", (int)getpid());
    struct statfs sf;
    if (statfs("/var/tmp", &sf) != 0 || sf.f_type == 0x01021994 /* tmpfs */)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    char buf[1 << 20];
    memset(buf, 0x33, sizeof buf);
    for (int i = 0; i < 150; i++)
        if (write(fd, buf, sizeof buf) != sizeof buf) {
            close(fd);
            unlink(path);
            return -1;
        }
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return 0;
}

static void test_real_cgroup_limit_and_page_cache(void **state)
{
    (void)state;
    char parent[1024], cg[1100], path[1200], file[128];
    own_memory_cgroup(parent, sizeof parent);
    struct stat st;
    if (!parent[0] || stat(parent, &st) != 0) {
        print_message("no v1 memory cgroup of our own: skipping\n");
        skip();
    }
    snprintf(cg, sizeof cg, "%s/sonde_test_monitor_%d", parent, (int)getpid());
    if (mkdir(cg, 0755) != 0) {
        print_message("cannot create %s: %s: skipping\n", cg, strerror(errno));
        skip();
    }
    snprintf(path, sizeof path, "%s/memory.limit_in_bytes", cg);
    if (write_str(path, "268435456") != 0 || make_cold_file(file, sizeof file) != 0) {
        rmdir(cg);
        print_message("cannot set a limit on %s or write a file: skipping\n", cg);
        skip();
    }

    int go[2], rep[2];
    assert_int_equal(pipe2(go, O_CLOEXEC), 0);
    assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
    pid_t pid = fork();
    if (pid < 0) {
        rmdir(cg);
        unlink(file);
        fail_msg("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(go[1]);
        close(rep[0]);
        child_main(go[0], rep[1], file, cg);
    }
    close(go[0]);
    close(rep[1]);

    char pidstr[32];
    snprintf(pidstr, sizeof pidstr, "%d", (int)pid);
    snprintf(path, sizeof path, "%s/cgroup.procs", cg);
    int moved = write_str(path, pidstr);
    struct child_report r;
    ssize_t got = -1;
    if (moved == 0 && write(go[1], "g", 1) == 1) {
        struct pollfd pfd = {.fd = rep[0], .events = POLLIN};
        if (poll(&pfd, 1, 60000) == 1) /* a deadline, not a sleep */
            got = read(rep[0], &r, sizeof r);
    }

    /* Clean up on every path: the child gone, the cgroup empty, removed. */
    close(go[1]);
    close(rep[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    unlink(file);
    int removed = -1;
    for (int64_t t0 = clock_ns(CLOCK_MONOTONIC); clock_ns(CLOCK_MONOTONIC) - t0 < 5000000000;) {
        removed = rmdir(cg);
        if (removed == 0 || errno != EBUSY)
            break;
        sched_yield();
    }

    if (moved != 0) {
        print_message("cannot move the child into %s: %s: skipping\n", cg, strerror(-moved));
        skip();
    }
    assert_int_equal(removed, 0);
    assert_int_equal(got, sizeof r);
    print_message("real cgroup, 100 MiB touched: rc %d, mem %.1f%% = %llu of %llu bytes, limited %d "
                  "(usage_in_bytes %llu)\n",
                  r.rc1, r.before.mem_pct, (unsigned long long)r.before.mem_used,
                  (unsigned long long)r.before.mem_capacity, r.before.mem_limited,
                  (unsigned long long)r.usage_before);
    print_message("after reading 150 MiB: rc %d, mem %.1f%% = %llu bytes (usage_in_bytes %llu)\n", r.rc2,
                  r.after.mem_pct, (unsigned long long)r.after.mem_used, (unsigned long long)r.usage_after);
    assert_int_equal(r.rc1, 0);
    assert_int_equal(r.rc2, 0);
    assert_int_equal(r.before.mem_limited, 1);
    assert_int_equal(r.before.mem_capacity, 256 * MiB);
    /* The 100 MiB show as about 39 % of 256 MiB over the baseline. */
    double grown = r.before.mem_pct - r.base.mem_pct;
    print_message("baseline %.1f%%, grown by %.1f%%\n", r.base.mem_pct, grown);
#ifdef __SANITIZE_THREAD__
    assert_true(grown > 30 && grown < 90); /* TSan shadows every touched page */
#else
    assert_true(grown > 30 && grown < 55);
#endif
    /* The file did go into the cgroup's page cache ... */
    assert_true(r.usage_after > r.usage_before + 50 * MiB);
    /* ... and the working set barely moved. */
    assert_true(r.after.mem_pct < r.before.mem_pct + 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v2_quota_and_limit_set_the_capacity, make_tree, remove_tree),
        cmocka_unit_test_setup_teardown(test_v1_quota_and_limit_set_the_capacity, make_tree, remove_tree),
        cmocka_unit_test_setup_teardown(test_a_limit_on_a_parent_is_found, make_tree, remove_tree),
        cmocka_unit_test_setup_teardown(test_unlimited_means_the_machine, make_tree, remove_tree),
        cmocka_unit_test_setup_teardown(test_a_namespaced_mount_root_is_stripped, make_tree, remove_tree),
        cmocka_unit_test_setup_teardown(test_hybrid_prefers_v1_controllers, make_tree, remove_tree),
        cmocka_unit_test_setup_teardown(test_nothing_readable_is_an_error_with_zeros, make_tree, remove_tree),
        cmocka_unit_test_setup_teardown(test_malformed_files_fall_back, make_tree, remove_tree),
        cmocka_unit_test_setup_teardown(test_huge_files_are_read_bounded, make_tree, remove_tree),
        cmocka_unit_test_setup_teardown(test_cpu_pct_is_of_the_quota, make_tree, remove_tree),
        cmocka_unit_test(test_real_system_reading_is_sane),
        cmocka_unit_test(test_real_cgroup_limit_and_page_cache),
    };
    return cmocka_run_group_tests_name("monitor", tests, NULL, NULL);
}
