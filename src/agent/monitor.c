/*
 * monitor.c — CPU % and memory % of the capacity the process really has,
 * read once a second by the agent thread for the triggers.  Contract in
 * monitor.h.
 *
 * Finding the cgroup (once, in monitor_new).  /proc/self/cgroup names the
 * process's cgroup per hierarchy: v1 lines "N:cpu,cpuacct:/path", the v2
 * line "0::/path".  /proc/self/mountinfo says where each hierarchy is
 * mounted and which sub-tree the mount shows (field 4, the mount's root):
 * a container with its own cgroup namespace, or a bind mount, may show
 * only "/kubepods/pod1/c1", and then the process's path is made relative
 * to that root.  A v1 mount carries its controllers in the super options
 * ("rw,cpu,cpuacct"); v2 is fstype cgroup2.  On hybrid systems a
 * controller bound to a v1 hierarchy is inactive in v2, so v1 wins when
 * both are there.  The result per controller is one directory,
 * root + mount point + relative path, and the mount point below which the
 * walk never goes.
 *
 * Reading the limit (every sample: limits can change at run time).  The
 * kernel enforces every ancestor's limit, not just the nearest one, so we
 * walk from the process's directory up to the mount point and take the
 * smallest limit on the way (the nearest on ties); memory usage is read
 * from the directory that holds it, since that is the usage the limit
 * bounds.  A limit above the machine's capacity (MemTotal, the CPUs of
 * the affinity mask) limits nothing and counts as unset: a 64 GiB
 * memory.max on a 16 GiB machine would otherwise make 100 % unreachable.
 * A level whose file is missing or malformed sets no limit.
 *
 * Working set, as container runtimes (cAdvisor, the kubelet) count it:
 * usage minus inactive file cache, clamped at 0.  Without a limit, the
 * process's own RssAnon + RssShmem against MemTotal (page cache again
 * left out).  With a limit but no readable usage, the process's own
 * RssAnon + RssShmem against the limit; with no readable memory.stat,
 * the whole usage.
 *
 * Bounded: every file is read through one fixed line buffer (lines longer
 * than it are skipped, files stop at a byte cap), single-value files
 * through a small stack buffer; no allocation after monitor_new and no
 * stdio.
 */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define MON_PATH 4096          /* longest path we build, NUL included */
#define LINE_CAP 8192          /* longest line of any file we parse */
#define KV_FILE_MAX (64 << 10) /* memory.stat, status, meminfo, cgroup */
#define MOUNTINFO_MAX (16 << 20)
#define MOUNTINFO_FIELDS 32       /* 10 fixed + the optional tags */
#define V1_UNLIMITED (1ull << 62) /* v1 "no limit" is ~2^63 rounded to pages */

struct hierarchy {
    int found;
    int v2;
    size_t top;          /* strlen of root + mount point: the walk stops here */
    char dir[MON_PATH];  /* root + mount point + the process's cgroup path */
};

struct line_reader {
    int fd;
    char *buf; /* LINE_CAP bytes */
    size_t start, end;
    size_t total, limit; /* bytes read so far, cap */
    int eof;
    int skipping;  /* inside a line too long for buf: drop it */
    int truncated; /* stopped at the cap: the partial last line is dropped */
};

struct monitor {
    size_t root_len;
    char root[MON_PATH]; /* "" for "/", else without trailing '/' */
    struct hierarchy cpu, mem;
    char walk[MON_PATH]; /* the directory the walk is at */
    char best[MON_PATH]; /* the directory holding the binding memory limit */
    char path[MON_PATH]; /* scratch: a file's full path */
    char line[LINE_CAP];
    int have_prev;
    int64_t prev_now_ns, prev_cpu_ns;
    int last_rc; /* the previous sample's: a failure is reported once */
    /* monitor_new only: the cgroup paths of /proc/self/cgroup and how
     * well the mount found so far matches each (0 none, 1 mount root
     * outside the path, 2 path under the mount root). */
    char cg_cpu[MON_PATH], cg_mem[MON_PATH], cg_v2[MON_PATH];
    int score_cpu, score_mem, score_v2;
    struct hierarchy v2;
};

/* ---- bounded reading ---------------------------------------------------- */

static int lr_open(struct line_reader *lr, const char *path, char *buf, size_t limit)
{
    memset(lr, 0, sizeof *lr);
    lr->buf = buf;
    lr->limit = limit;
    lr->fd = open(path, O_RDONLY | O_CLOEXEC);
    return lr->fd < 0 ? -errno : 0;
}

static void lr_close(struct line_reader *lr)
{
    if (lr->fd >= 0)
        close(lr->fd);
    lr->fd = -1;
}

/* The next line, NUL-terminated, without its '\n'; valid until the next
 * call.  NULL at end of file, on a read error or at the byte cap. */
static char *lr_next(struct line_reader *lr)
{
    for (;;) {
        char *nl = memchr(lr->buf + lr->start, '\n', lr->end - lr->start);
        if (nl) {
            char *line = lr->buf + lr->start;
            *nl = '\0';
            lr->start = (size_t)(nl - lr->buf) + 1;
            if (lr->skipping) {
                lr->skipping = 0;
                continue;
            }
            return line;
        }
        if (lr->eof) {
            if (lr->start < lr->end && !lr->skipping && !lr->truncated) {
                char *line = lr->buf + lr->start;
                lr->buf[lr->end] = '\0';
                lr->start = lr->end;
                return line;
            }
            return NULL;
        }
        if (lr->start > 0) {
            memmove(lr->buf, lr->buf + lr->start, lr->end - lr->start);
            lr->end -= lr->start;
            lr->start = 0;
        }
        if (lr->end == LINE_CAP - 1) { /* a line longer than the buffer */
            lr->skipping = 1;
            lr->end = 0;
        }
        size_t want = LINE_CAP - 1 - lr->end;
        if (want > lr->limit - lr->total)
            want = lr->limit - lr->total;
        if (want == 0) {
            lr->eof = lr->truncated = 1;
            continue;
        }
        ssize_t n = read(lr->fd, lr->buf + lr->end, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            lr->eof = lr->truncated = 1;
            continue;
        }
        if (n == 0)
            lr->eof = 1;
        lr->end += (size_t)n;
        lr->total += (size_t)n;
    }
}

/* Reads a one-value file (memory.max, cpu.max, ...) into buf, NUL
 * terminated.  -EFBIG if it does not fit: such a file is not what we
 * expect and is not parsed half-read. */
static int read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap - 1) {
            char extra;
            ssize_t more = read(fd, &extra, 1);
            if (more > 0) {
                close(fd);
                return -EFBIG;
            }
            break;
        }
    }
    close(fd);
    buf[len] = '\0';
    return (int)len;
}

/* Decimal digits at *s into *v, advancing *s; -ERANGE on overflow,
 * -EINVAL when there is no digit. */
static int parse_u64(const char **s, uint64_t *v)
{
    const char *p = *s;
    uint64_t x = 0;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -ERANGE;
        x = x * 10 + d;
    }
    *s = p;
    *v = x;
    return 0;
}

static const char *skip_blank(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Only trailing blanks / a newline may follow a value. */
static int at_end(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    return *p == '\0';
}

/* Reads a file holding one unsigned number. */
static int read_u64_file(const char *path, uint64_t *v)
{
    char buf[64];
    int rc = read_small(path, buf, sizeof buf);
    if (rc < 0)
        return rc;
    const char *p = skip_blank(buf);
    rc = parse_u64(&p, v);
    if (rc < 0)
        return rc;
    return at_end(p) ? 0 : -EINVAL;
}

struct key {
    const char *name; /* "inactive_file", "MemTotal:" */
    uint64_t value;
    int found;
};

/* Reads "name value [kB]" lines (memory.stat, status, meminfo) and fills
 * the keys found, each value times unit.  The number of keys found, or
 * -errno if the file cannot be opened. */
static int read_keys(struct monitor *m, const char *path, struct key *keys, int nkeys,
                     uint64_t unit)
{
    struct line_reader lr;
    int rc = lr_open(&lr, path, m->line, KV_FILE_MAX);
    if (rc < 0)
        return rc;
    int found = 0;
    for (char *line; found < nkeys && (line = lr_next(&lr));) {
        for (int i = 0; i < nkeys; i++) {
            size_t n = strlen(keys[i].name);
            if (keys[i].found || strncmp(line, keys[i].name, n) != 0)
                continue;
            const char *p = line + n;
            if (*p != ' ' && *p != '\t')
                continue;
            uint64_t v;
            p = skip_blank(p);
            if (parse_u64(&p, &v) < 0 || v > UINT64_MAX / unit)
                continue;
            keys[i].value = v * unit;
            keys[i].found = 1;
            found++;
        }
    }
    lr_close(&lr);
    return found;
}

/* root + rel (+ suffix) into m->path; -ENAMETOOLONG if it does not fit. */
static int build_path(struct monitor *m, const char *dir, const char *file)
{
    int n = snprintf(m->path, sizeof m->path, "%s/%s", dir, file);
    return n < 0 || (size_t)n >= sizeof m->path ? -ENAMETOOLONG : 0;
}

static int root_path(struct monitor *m, const char *rel)
{
    int n = snprintf(m->path, sizeof m->path, "%s%s", m->root, rel);
    return n < 0 || (size_t)n >= sizeof m->path ? -ENAMETOOLONG : 0;
}

/* ---- finding the hierarchies (monitor_new) ------------------------------ */

/* Does the comma-separated list hold the token? */
static int has_token(const char *list, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = list; p;) {
        if (strncmp(p, tok, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return 1;
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return 0;
}

static void copy_path(char *dst, const char *src)
{
    size_t n = strlen(src);
    if (n >= MON_PATH) { /* cannot be used: leave the hierarchy unfound */
        dst[0] = '\0';
        return;
    }
    memcpy(dst, src, n + 1);
}

/* /proc/self/cgroup: the process's path in the cpu, memory and v2
 * hierarchies (empty when absent). */
static void read_cgroup_paths(struct monitor *m)
{
    struct line_reader lr;
    if (root_path(m, "/proc/self/cgroup") < 0 || lr_open(&lr, m->path, m->line, KV_FILE_MAX) < 0)
        return;
    for (char *line; (line = lr_next(&lr));) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/')
            continue;
        *c1 = *c2 = '\0';
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (ctrls[0] == '\0' && strcmp(line, "0") == 0)
            copy_path(m->cg_v2, path);
        if (has_token(ctrls, "cpu"))
            copy_path(m->cg_cpu, path);
        if (has_token(ctrls, "memory"))
            copy_path(m->cg_mem, path);
    }
    lr_close(&lr);
}

/* mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo; decode in place. */
static void unescape_octal(char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
            r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

/* Offers a mount of a hierarchy for the process's cgroup path cg: keeps
 * it in h if it matches better than what h holds.  A mount whose root is
 * the path or one of its ancestors matches (the path is made relative to
 * it); one that shows some other sub-tree, or a path that climbs out of
 * the namespace ("/.."), only as a last resort: its top directory. */
static void offer_mount(struct monitor *m, struct hierarchy *h, int *score, int v2,
                        const char *mroot, const char *mpoint, const char *cg)
{
    if (cg[0] != '/')
        return;
    const char *rel = "";
    int s = 1;
    size_t rn = strlen(mroot);
    if (strcmp(mroot, "/") == 0) {
        rel = cg;
        s = 2;
    } else if (strncmp(cg, mroot, rn) == 0 && (cg[rn] == '/' || cg[rn] == '\0')) {
        rel = cg + rn;
        s = 2;
    }
    if (strncmp(rel, "/..", 3) == 0 && (rel[3] == '/' || rel[3] == '\0')) {
        rel = "";
        s = 1;
    }
    if (s <= *score)
        return;
    size_t mn = strlen(mpoint);
    while (mn > 0 && mpoint[mn - 1] == '/') /* "/" or a trailing slash */
        mn--;
    int n = snprintf(h->dir, sizeof h->dir, "%s%.*s%s", m->root, (int)mn, mpoint, rel);
    if (n < 0 || (size_t)n >= sizeof h->dir) {
        h->found = 0;
        return;
    }
    size_t len = (size_t)n;
    h->top = m->root_len + mn;
    while (len > h->top && h->dir[len - 1] == '/')
        h->dir[--len] = '\0';
    h->found = 1;
    h->v2 = v2;
    *score = s;
}

/* /proc/self/mountinfo: "36 35 98:0 /root /mount/point opts [optional...]
 * - fstype source superopts". */
static void read_mounts(struct monitor *m)
{
    struct line_reader lr;
    if (root_path(m, "/proc/self/mountinfo") < 0 ||
        lr_open(&lr, m->path, m->line, MOUNTINFO_MAX) < 0)
        return;
    for (char *line; (line = lr_next(&lr));) {
        char *f[MOUNTINFO_FIELDS];
        int nf = 0;
        for (char *save = NULL, *t = strtok_r(line, " ", &save); t && nf < MOUNTINFO_FIELDS;
             t = strtok_r(NULL, " ", &save))
            f[nf++] = t;
        int dash = 6;
        while (dash < nf && strcmp(f[dash], "-") != 0)
            dash++;
        if (nf < 6 || dash + 3 > nf)
            continue;
        const char *fstype = f[dash + 1], *superopts = f[dash + 3];
        unescape_octal(f[3]);
        unescape_octal(f[4]);
        if (strcmp(fstype, "cgroup2") == 0) {
            offer_mount(m, &m->v2, &m->score_v2, 1, f[3], f[4], m->cg_v2);
        } else if (strcmp(fstype, "cgroup") == 0) {
            if (has_token(superopts, "cpu") && m->cg_cpu[0])
                offer_mount(m, &m->cpu, &m->score_cpu, 0, f[3], f[4], m->cg_cpu);
            if (has_token(superopts, "memory") && m->cg_mem[0])
                offer_mount(m, &m->mem, &m->score_mem, 0, f[3], f[4], m->cg_mem);
        }
    }
    lr_close(&lr);
    /* v1 controllers are the active ones on hybrid systems. */
    if (!m->cpu.found && m->v2.found)
        m->cpu = m->v2;
    if (!m->mem.found && m->v2.found)
        m->mem = m->v2;
}

struct monitor *monitor_new(const char *root)
{
    if (!root || !root[0])
        root = "/";
    size_t rn = strlen(root);
    while (rn > 0 && root[rn - 1] == '/')
        rn--;
    if (rn >= MON_PATH / 2) {
        agent_error(-ENAMETOOLONG, "monitor: root path too long");
        return NULL;
    }
    struct monitor *m = calloc(1, sizeof *m);
    if (!m) {
        agent_error(-ENOMEM, "monitor: out of memory");
        return NULL;
    }
    memcpy(m->root, root, rn);
    m->root[rn] = '\0';
    m->root_len = rn;
    read_cgroup_paths(m);
    read_mounts(m);
    if (!m->cpu.found || !m->mem.found)
        agent_log("monitor: no cgroup %s%s%s found; using the machine's capacity",
                  m->cpu.found ? "" : "cpu", !m->cpu.found && !m->mem.found ? " or " : "",
                  m->mem.found ? "" : "memory");
    return m;
}

void monitor_free(struct monitor *m)
{
    free(m);
}

/* ---- limits -------------------------------------------------------------- */

/* The memory limit set in dir: 1 and *limit, 0 when none (or unreadable:
 * a level we cannot read limits nothing we could measure). */
static int mem_limit_at(struct monitor *m, const char *dir, int v2, uint64_t *limit)
{
    if (build_path(m, dir, v2 ? "memory.max" : "memory.limit_in_bytes") < 0)
        return 0;
    if (v2) {
        char buf[64];
        if (read_small(m->path, buf, sizeof buf) < 0)
            return 0;
        const char *p = skip_blank(buf);
        if (strncmp(p, "max", 3) == 0 && at_end(p + 3))
            return 0;
        return parse_u64(&p, limit) == 0 && at_end(p);
    }
    return read_u64_file(m->path, limit) == 0 && *limit < V1_UNLIMITED;
}

/* The CPU quota set in dir, in CPUs: 1 and *cpus, 0 when none. */
static int cpu_quota_at(struct monitor *m, const char *dir, int v2, double *cpus)
{
    uint64_t quota, period;
    if (v2) {
        char buf[64];
        if (build_path(m, dir, "cpu.max") < 0 || read_small(m->path, buf, sizeof buf) < 0)
            return 0;
        const char *p = skip_blank(buf);
        if (strncmp(p, "max", 3) == 0 || parse_u64(&p, &quota) < 0)
            return 0;
        p = skip_blank(p);
        if (parse_u64(&p, &period) < 0 || !at_end(p))
            return 0;
    } else {
        char buf[64];
        if (build_path(m, dir, "cpu.cfs_quota_us") < 0 || read_small(m->path, buf, sizeof buf) < 0)
            return 0;
        const char *p = skip_blank(buf);
        if (*p == '-' || parse_u64(&p, &quota) < 0 || !at_end(p)) /* -1: none */
            return 0;
        if (build_path(m, dir, "cpu.cfs_period_us") < 0 || read_u64_file(m->path, &period) < 0)
            return 0;
    }
    if (quota == 0 || period == 0)
        return 0;
    *cpus = (double)quota / (double)period;
    return 1;
}

/* The parent of m->walk, stopping at the hierarchy's top: 0 when there is
 * none. */
static int walk_up(struct monitor *m, const struct hierarchy *h)
{
    size_t len = strlen(m->walk);
    if (len <= h->top)
        return 0;
    char *slash = strrchr(m->walk, '/');
    if (!slash || (size_t)(slash - m->walk) < h->top)
        return 0;
    *slash = '\0';
    return 1;
}

/* The smallest CPU quota below cap from the process's cgroup up. */
static int cpu_quota(struct monitor *m, double cap, double *cpus)
{
    if (!m->cpu.found)
        return 0;
    int found = 0;
    memcpy(m->walk, m->cpu.dir, strlen(m->cpu.dir) + 1);
    do {
        double q;
        if (cpu_quota_at(m, m->walk, m->cpu.v2, &q) && q <= cap && (!found || q < *cpus)) {
            *cpus = q;
            found = 1;
        }
    } while (walk_up(m, &m->cpu));
    return found;
}

/* The smallest memory limit not above cap from the process's cgroup up;
 * its directory into m->best. */
static int mem_limit(struct monitor *m, uint64_t cap, uint64_t *limit)
{
    if (!m->mem.found)
        return 0;
    int found = 0;
    memcpy(m->walk, m->mem.dir, strlen(m->mem.dir) + 1);
    do {
        uint64_t l;
        if (mem_limit_at(m, m->walk, m->mem.v2, &l) && l > 0 && l <= cap && (!found || l < *limit)) {
            *limit = l;
            memcpy(m->best, m->walk, strlen(m->walk) + 1);
            found = 1;
        }
    } while (walk_up(m, &m->mem));
    return found;
}

/* The working set of the cgroup in m->best: usage minus inactive file
 * cache. */
static int cgroup_working_set(struct monitor *m, uint64_t *used)
{
    int v2 = m->mem.v2;
    uint64_t usage;
    int rc = build_path(m, m->best, v2 ? "memory.current" : "memory.usage_in_bytes");
    if (rc == 0)
        rc = read_u64_file(m->path, &usage);
    if (rc < 0)
        return rc;
    /* v1: total_ is the hierarchical figure, as usage_in_bytes is. */
    struct key k[2] = {{v2 ? "inactive_file" : "total_inactive_file", 0, 0}, {"inactive_file", 0, 0}};
    uint64_t inactive = 0;
    if (build_path(m, m->best, "memory.stat") == 0 && read_keys(m, m->path, k, v2 ? 1 : 2, 1) > 0)
        inactive = k[0].found ? k[0].value : k[1].value;
    *used = usage > inactive ? usage - inactive : 0;
    return 0;
}

/* The process's resident anonymous + shared memory, bytes. */
static int process_rss(struct monitor *m, uint64_t *rss)
{
    struct key k[2] = {{"RssAnon:", 0, 0}, {"RssShmem:", 0, 0}};
    int rc = root_path(m, "/proc/self/status");
    if (rc == 0)
        rc = read_keys(m, m->path, k, 2, 1024);
    if (rc < 0)
        return rc;
    if (!k[0].found) /* kernels before 4.5 have no RssAnon */
        return -ENODATA;
    *rss = k[0].value + k[1].value;
    return 0;
}

static int mem_total(struct monitor *m, uint64_t *total)
{
    struct key k = {"MemTotal:", 0, 0};
    int rc = root_path(m, "/proc/meminfo");
    if (rc == 0)
        rc = read_keys(m, m->path, &k, 1, 1024);
    if (rc < 0)
        return rc;
    if (!k.found || k.value == 0)
        return -ENODATA;
    *total = k.value;
    return 0;
}

/* CPUs the process may run on: its affinity mask. */
static double machine_cpus(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN); /* more CPUs than a cpu_set_t holds */
    return n > 0 ? (double)n : 1.0;
}

int monitor_sample(struct monitor *m, int64_t now_ns, int64_t cpu_ns, struct monitor_reading *out)
{
    memset(out, 0, sizeof *out);

    /* CPU. */
    double ncpu = machine_cpus(), quota = 0;
    double cpu_cap = ncpu;
    int cpu_limited = cpu_quota(m, ncpu, &quota);
    if (cpu_limited)
        cpu_cap = quota;
    double cpu_pct = 0;
    if (m->have_prev && now_ns > m->prev_now_ns && cpu_ns > m->prev_cpu_ns)
        cpu_pct = (double)(cpu_ns - m->prev_cpu_ns) / (double)(now_ns - m->prev_now_ns) / cpu_cap * 100.0;
    m->have_prev = 1;
    m->prev_now_ns = now_ns;
    m->prev_cpu_ns = cpu_ns;

    /* Memory. */
    uint64_t total = 0, limit = 0, used = 0, cap;
    int total_rc = mem_total(m, &total);
    int mem_limited = mem_limit(m, total_rc == 0 ? total : UINT64_MAX, &limit);
    int rc;
    if (mem_limited) {
        cap = limit;
        rc = cgroup_working_set(m, &used);
        if (rc < 0) /* usage unreadable: the process's own share of it */
            rc = process_rss(m, &used);
    } else {
        cap = total;
        rc = total_rc < 0 ? total_rc : process_rss(m, &used);
    }
    int reported = rc == m->last_rc;
    m->last_rc = rc;
    if (rc < 0 && reported)
        return rc;
    if (rc < 0)
        return agent_error(rc, "monitor: cannot read the memory in use under %s/: %s", m->root,
                           strerror(-rc));

    out->cpu_pct = cpu_pct;
    out->cpu_capacity = cpu_cap;
    out->cpu_limited = cpu_limited;
    out->mem_capacity = cap;
    out->mem_used = used;
    out->mem_limited = mem_limited;
    out->mem_pct = (double)used / (double)cap * 100.0;
    return 0;
}
