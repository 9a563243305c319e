/*
 * threads.c — the thread registry, the pthread_create interposer and the
 * per-thread CPU-time timers.  Contract in threads.h.
 *
 * Why one POSIX timer per thread on its CPU-time clock, delivered with
 * SIGEV_THREAD_ID: setitimer(ITIMER_PROF) is one process-wide timer whose
 * signal goes to whichever thread the kernel picks, which skews samples
 * toward some threads and caps the rate at the tick.  A timer on each
 * thread's own clock fires on that thread, for that thread's CPU time.
 * The clock of another thread of ours is MAKE_THREAD_CPUCLOCK(tid, SCHED),
 * so the agent thread can create timers for threads it merely discovered.
 *
 * Timers are created with the raw syscall so we hold the kernel's timer id
 * (the handler re-arms it with a raw timer_settime, no libc involved).
 *
 * The table is open-addressed by tid (linear probing, tombstones) so the
 * handler can find a thread it has no TLS pointer for without a lock.
 * Inserts and deletes happen under `reg_lock`.
 */
#include "threads.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sigsafe/sys.h"

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static size_t init_max = 4096;
static int init_rc = 0;
static pthread_key_t exit_key;
static uint64_t seen;
static _Atomic uint32_t live; /* slots holding a thread */
/* Set when a thread got no exact stack bounds: the handler's fallback
 * (the mapping snapshot) must be re-read to cover it. */
static _Atomic int stack_maps_stale = 1;

/* tid -> name, for naming samples of threads that have exited too. */
#define NAMES_CAP 16384
struct name_entry {
    int tid;
    char name[16];
};
static struct name_entry *names;

typedef int (*pthread_create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static pthread_create_fn real_pthread_create;

static pthread_create_fn resolve_pthread_create(void)
{
    pthread_create_fn f = __atomic_load_n(&real_pthread_create, __ATOMIC_ACQUIRE);
    if (!f) {
        f = (pthread_create_fn)dlsym(RTLD_NEXT, "pthread_create");
        if (!f)
            f = (pthread_create_fn)dlsym(RTLD_DEFAULT, "pthread_create");
        __atomic_store_n(&real_pthread_create, f, __ATOMIC_RELEASE);
    }
    return f;
}

static uint32_t tid_hash(int tid)
{
    return (uint32_t)tid * 2654435761u;
}

static void slot_exit(void *p);

static inline int slot_key(uint32_t i)
{
    return atomic_load_explicit(&sampler.threads.keys[i], memory_order_acquire);
}

/* Writes a slot's tid and its dense key together (under reg_lock). */
static inline void set_tid(struct thread_slot *t, int tid)
{
    atomic_store_explicit(&t->tid, tid, memory_order_release);
    atomic_store_explicit(&sampler.threads.keys[t - sampler.threads.slots], tid, memory_order_release);
}

static void main_stack_bounds(uintptr_t *lo, uintptr_t *hi);

static void do_init(void)
{
    size_t cap = 64;
    while (cap < init_max * 2 && cap < (1u << 20))
        cap <<= 1;
    void *m = mmap(NULL, cap * sizeof(struct thread_slot), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *k = mmap(NULL, cap * sizeof(int), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (k == MAP_FAILED) {
        if (m != MAP_FAILED)
            munmap(m, cap * sizeof(struct thread_slot));
        init_rc = -ENOMEM;
        return;
    }
    names = calloc(NAMES_CAP, sizeof(*names));
    if (m == MAP_FAILED || !names || pthread_key_create(&exit_key, slot_exit) != 0) {
        if (m != MAP_FAILED)
            munmap(m, cap * sizeof(struct thread_slot));
        munmap(k, cap * sizeof(int));
        free(names);
        names = NULL;
        init_rc = -ENOMEM;
        return;
    }
    /* Left as zero pages: a slot is only written when a thread takes it
     * (insert_locked sets timer = -1 then), so an idle table costs no
     * memory.  Loops over the table skip SLOT_FREE slots. */
    struct thread_slot *slots = m;
    sampler.threads.mask = (uint32_t)(cap - 1);
    sampler.threads.keys = k;
    atomic_thread_fence(memory_order_release);
    sampler.threads.slots = slots;
}

int threads_init(size_t max_threads)
{
    if (max_threads)
        init_max = max_threads;
    pthread_once(&init_once, do_init);
    return init_rc;
}

void threads_read_name(int tid, char out[16])
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, 15);
    close(fd);
    if (n <= 0)
        return;
    out[n] = 0;
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = 0;
}

static void remember_name(int tid, const char *name)
{
    if (!names || !name[0])
        return;
    uint32_t i = tid_hash(tid) & (NAMES_CAP - 1);
    for (uint32_t n = 0; n < NAMES_CAP; n++, i = (i + 1) & (NAMES_CAP - 1)) {
        if (names[i].tid == tid || names[i].tid == 0) {
            names[i].tid = tid;
            memcpy(names[i].name, name, 16);
            return;
        }
    }
}

const char *threads_name(uint32_t tid)
{
    static __thread char buf[16];
    buf[0] = 0;
    if (!names)
        return buf;
    pthread_mutex_lock(&reg_lock);
    uint32_t i = tid_hash((int)tid) & (NAMES_CAP - 1);
    for (uint32_t n = 0; n < NAMES_CAP; n++, i = (i + 1) & (NAMES_CAP - 1)) {
        if (names[i].tid == (int)tid) {
            memcpy(buf, names[i].name, 16);
            break;
        }
        if (names[i].tid == 0)
            break;
    }
    pthread_mutex_unlock(&reg_lock);
    return buf;
}

/* Under reg_lock.  Returns the slot for tid, inserting it if absent. */
static struct thread_slot *insert_locked(int tid, int *inserted)
{
    struct thread_slot *slots = sampler.threads.slots;
    uint32_t mask = sampler.threads.mask;
    uint32_t i = tid_hash(tid) & mask;
    struct thread_slot *tomb = NULL;
    *inserted = 0;
    for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
        int v = slot_key(i);
        if (v == tid)
            return &slots[i];
        if (v == SLOT_TOMB && !tomb)
            tomb = &slots[i];
        if (v == SLOT_FREE) {
            if (!tomb)
                tomb = &slots[i];
            break;
        }
    }
    if (!tomb)
        return NULL;
    struct thread_slot *t = tomb; /* remove_locked freed its wall stack */
    t->wall_n = 0;
    t->wall_sp = t->wall_pc = 0;
    atomic_store(&t->timer, -1);
    atomic_store(&t->flags, 0);
    atomic_store(&t->stack_lo, 0);
    atomic_store(&t->stack_hi, 0);
    t->rng = ((uint64_t)tid << 32) ^ 0x2545F4914F6CDD1Dull ^ (uint64_t)(uintptr_t)t;
    t->armed_ns = 0;
    t->sched_cpu_ns = 0;
    t->start_fn = 0;
    atomic_store(&t->span_rec, NULL); /* set again by the thread's next span */
    t->last_n = 0;
    memset(t->name, 0, sizeof t->name);
    set_tid(t, tid);
    seen++;
    atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
    *inserted = 1;
    return t;
}

static int timer_start_locked(struct thread_slot *t)
{
    if (atomic_load(&t->timer) >= 0 || (atomic_load(&t->flags) & SLOT_AGENT))
        return 0;
    int tid = atomic_load(&t->tid);
    if (tid <= 0)
        return -EINVAL;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_value.sival_int = SAMPLER_TAG;
    sev.sigev_signo = sampler.signo;
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev._sigev_un._tid = tid;
    clockid_t clk = (clockid_t)((~(unsigned)tid) << 3) | 6; /* MAKE_THREAD_CPUCLOCK(tid, SCHED) */
    int kid = -1;
    long r = syscall(SYS_timer_create, clk, &sev, &kid);
    if (r != 0)
        return -errno;
    struct timespec c0 = {0, 0};
    clock_gettime(clk, &c0);
    t->sched_cpu_ns = (int64_t)c0.tv_sec * 1000000000 + c0.tv_nsec;
    t->last_n = 0;
    atomic_store_explicit(&t->timer, kid, memory_order_release);
    if (sampler_arm_timer(t, sampler.interval_ns, 1) != 0) {
        syscall(SYS_timer_delete, kid);
        atomic_store(&t->timer, -1);
        return -EINVAL;
    }
    return 0;
}

static void timer_stop_locked(struct thread_slot *t)
{
    int kid = atomic_exchange(&t->timer, -1);
    if (kid >= 0)
        syscall(SYS_timer_delete, kid);
}

static void remove_locked(struct thread_slot *t)
{
    timer_stop_locked(t);
    int tid = atomic_load(&t->tid);
    if (tid > 0 && t->name[0])
        remember_name(tid, t->name);
    /* The wall pass uses wall_stack under reg_lock too, so this is safe. */
    free(t->wall_stack);
    t->wall_stack = NULL;
    t->wall_n = 0;
    set_tid(t, SLOT_TOMB);
    atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
}

/* The CPU this exiting thread used since its last scheduled expiry, as one
 * last sample on its last sampled stack (or, if no sample ever reached the
 * thread, on a pseudo frame under its start routine).  Runs on
 * the thread itself with the sampling signal blocked and its timer gone. */
static void account_exit(struct thread_slot *t)
{
    if (!atomic_load(&sampler.running) || !(sampler.types & 1 /* SONDE_PROFILE_CPU */))
        return;
    struct timespec now;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) != 0)
        return;
    int64_t residual = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec - t->sched_cpu_ns;
    if (residual <= 0 || residual > 10 * sampler.interval_ns + 1000000000LL)
        return;
    /* Never sampled: a pseudo leaf under the start routine (+1: callers'
     * frames are return addresses, looked up at address - 1). */
    uintptr_t unsampled[2] = {SAMPLER_PC_UNSAMPLED, t->start_fn + 1};
    const uintptr_t *pcs = t->last_n ? t->last_pcs : unsampled;
    int n = t->last_n ? t->last_n : (t->start_fn ? 2 : 1);
    uint64_t pos;
    struct sample_slot *s = ring_claim(&sampler.ring, &pos);
    if (!s)
        return;
    memcpy(s->pcs, pcs, (size_t)n * sizeof(uintptr_t));
    s->tid = (uint32_t)atomic_load(&t->tid);
    s->types = 1;
    s->state = 'R';
    s->nframes = (uint16_t)n;
    s->weight_ns = residual;
    s->truncated = 0;
    ring_publish(&sampler.ring, s, pos);
}

static void slot_exit(void *p)
{
    struct thread_slot *t = p;
    sigset_t set, old;
    sigemptyset(&set);
    if (sampler.signo > 0)
        sigaddset(&set, sampler.signo);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    sampler_tls_slot = NULL;
    int had_timer = atomic_load(&t->timer) >= 0;
    pthread_mutex_lock(&reg_lock);
    if (atomic_load(&t->tid) == sys_gettid())
        timer_stop_locked(t);
    pthread_mutex_unlock(&reg_lock);
    if (had_timer)
        account_exit(t);
    pthread_mutex_lock(&reg_lock);
    if (atomic_load(&t->tid) == sys_gettid()) {
        threads_read_name(sys_gettid(), t->name);
        remove_locked(t);
    }
    pthread_mutex_unlock(&reg_lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Registers the calling thread with the given stack bounds (0: unknown). */
static struct thread_slot *register_self(uint32_t flags, uintptr_t lo, uintptr_t hi)
{
    if (threads_init(0) != 0)
        return NULL;
    if (sampler_tls_slot)
        return sampler_tls_slot;
    int tid = sys_gettid();
    pthread_mutex_lock(&reg_lock);
    int inserted;
    struct thread_slot *t = insert_locked(tid, &inserted);
    if (t) {
        if (hi) {
            atomic_store(&t->stack_lo, lo);
            atomic_store(&t->stack_hi, hi);
        } else if (!atomic_load(&t->stack_hi)) {
            atomic_store(&stack_maps_stale, 1);
        }
        atomic_fetch_or(&t->flags, flags | SLOT_OWN);
        threads_read_name(tid, t->name);
        remember_name(tid, t->name);
        if (atomic_load(&sampler.running) && !(flags & SLOT_AGENT))
            timer_start_locked(t);
    }
    pthread_mutex_unlock(&reg_lock);
    if (t) {
        sampler_tls_slot = t;
        pthread_setspecific(exit_key, t);
    }
    return t;
}

/* Stack bounds without pthread_getattr_np(), which glibc 2.36 lets crash
 * when one of its internal allocations fails: the main thread's stack is
 * the [stack] mapping; other threads' are found by the pthread_create
 * wrapper, or from the maps snapshot in the handler. */
struct thread_slot *threads_register_self(uint32_t flags)
{
    uintptr_t lo = 0, hi = 0;
    if (sys_gettid() == getpid())
        main_stack_bounds(&lo, &hi);
    return register_self(flags, lo, hi);
}

int threads_start_all(void)
{
    int failed = 0;
    if (!sampler.threads.slots)
        return 0;
    pthread_mutex_lock(&reg_lock);
    for (uint32_t i = 0; i <= sampler.threads.mask; i++) {
        struct thread_slot *t = &sampler.threads.slots[i];
        if (slot_key(i) > 0 && timer_start_locked(t) != 0)
            failed++;
    }
    pthread_mutex_unlock(&reg_lock);
    return failed;
}

void threads_stop_all(void)
{
    if (!sampler.threads.slots)
        return;
    pthread_mutex_lock(&reg_lock);
    for (uint32_t i = 0; i <= sampler.threads.mask; i++)
        if (slot_key(i) != SLOT_FREE)
            timer_stop_locked(&sampler.threads.slots[i]);
    pthread_mutex_unlock(&reg_lock);
}

/* Bounds of the mapping holding [stack] (the main thread's stack). */
static void main_stack_bounds(uintptr_t *lo, uintptr_t *hi)
{
    *lo = *hi = 0;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "[stack]")) {
            unsigned long a, b;
            if (sscanf(line, "%lx-%lx", &a, &b) == 2) {
                *lo = a;
                *hi = b;
            }
            break;
        }
    }
    fclose(f);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

int threads_discover(void)
{
    if (!sampler.threads.slots)
        return -EINVAL;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -errno;
    enum { MAXT = 65536 };
    int *tids = malloc(MAXT * sizeof(int));
    if (!tids) {
        closedir(d);
        return -ENOMEM;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAXT) {
        int tid = atoi(e->d_name);
        if (tid > 0)
            tids[n++] = tid;
    }
    closedir(d);
    qsort(tids, (size_t)n, sizeof(int), cmp_int);

    /* Only threads not in the table yet cost I/O (their name, and the
     * main thread's [stack] bounds); known ones are left as they are. */
    int *fresh = malloc((size_t)(n ? n : 1) * sizeof(int));
    int nfresh = 0;
    for (int i = 0; fresh && i < n; i++)
        if (!sampler_find_thread(tids[i]))
            fresh[nfresh++] = tids[i];
    char (*comm)[16] = nfresh ? calloc((size_t)nfresh, 16) : NULL;
    uintptr_t mlo = 0, mhi = 0;
    int pid = getpid();
    for (int i = 0; i < nfresh; i++) {
        if (comm)
            threads_read_name(fresh[i], comm[i]);
        if (fresh[i] == pid)
            main_stack_bounds(&mlo, &mhi);
    }

    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < nfresh; i++) {
        int inserted;
        struct thread_slot *t = insert_locked(fresh[i], &inserted);
        if (!t || !inserted)
            continue; /* it registered itself meanwhile */
        if (comm && comm[i][0]) {
            memcpy(t->name, comm[i], 16);
            remember_name(fresh[i], t->name);
        }
        if (fresh[i] == pid) {
            atomic_store(&t->stack_lo, mlo);
            atomic_store(&t->stack_hi, mhi);
        }
        if (!atomic_load(&t->stack_hi))
            atomic_store(&stack_maps_stale, 1);
        if (atomic_load(&sampler.running))
            timer_start_locked(t);
    }
    /* Forget threads that are gone and did not tell us (not OWN). */
    for (uint32_t i = 0; i <= sampler.threads.mask; i++) {
        struct thread_slot *t = &sampler.threads.slots[i];
        int tid = slot_key(i);
        if (tid <= 0)
            continue;
        if (!bsearch(&tid, tids, (size_t)n, sizeof(int), cmp_int))
            remove_locked(t);
    }
    pthread_mutex_unlock(&reg_lock);
    free(comm);
    free(fresh);
    free(tids);
    return 0;
}

void threads_refresh_names(void)
{
    if (!sampler.threads.slots)
        return;
    pthread_mutex_lock(&reg_lock);
    for (uint32_t i = 0; i <= sampler.threads.mask; i++) {
        struct thread_slot *t = &sampler.threads.slots[i];
        int tid = slot_key(i);
        if (tid > 0) {
            threads_read_name(tid, t->name);
            remember_name(tid, t->name);
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

void threads_foreach(threads_visit_fn fn, void *arg)
{
    if (!sampler.threads.slots)
        return;
    pthread_mutex_lock(&reg_lock);
    for (uint32_t i = 0; i <= sampler.threads.mask; i++) {
        struct thread_slot *t = &sampler.threads.slots[i];
        if (slot_key(i) > 0 && !(atomic_load(&t->flags) & SLOT_AGENT))
            fn(t, arg);
    }
    pthread_mutex_unlock(&reg_lock);
}

void threads_free_wall_stacks(void)
{
    if (!sampler.threads.slots)
        return;
    pthread_mutex_lock(&reg_lock);
    for (uint32_t i = 0; i <= sampler.threads.mask; i++) {
        struct thread_slot *t = &sampler.threads.slots[i];
        if (slot_key(i) == SLOT_FREE || !t->wall_stack)
            continue;
        free(t->wall_stack);
        t->wall_stack = NULL;
        t->wall_n = 0;
    }
    pthread_mutex_unlock(&reg_lock);
}

uint32_t threads_live(void)
{
    return atomic_load_explicit(&live, memory_order_relaxed);
}

uint64_t threads_seen(void)
{
    pthread_mutex_lock(&reg_lock);
    uint64_t n = seen;
    pthread_mutex_unlock(&reg_lock);
    return n;
}

int threads_wait_quiescent(void)
{
    for (int i = 0; i < 20000; i++) {
        if (atomic_load_explicit(&sigsafe_active, memory_order_acquire) == 0)
            return 0;
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    return -ETIMEDOUT;
}

static int cmp_range(const void *a, const void *b)
{
    const uintptr_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

int threads_refresh_stack_maps(void)
{
    if (!atomic_exchange(&stack_maps_stale, 0))
        return 0;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -errno;
    size_t cap = 256, n = 0;
    struct stack_maps *m = malloc(sizeof *m + cap * sizeof m->r[0]);
    char line[512];
    while (m && fgets(line, sizeof line, f)) {
        unsigned long a, b, off, inode;
        char perms[8];
        int pathpos = 0;
        if (sscanf(line, "%lx-%lx %7s %lx %*s %lu %n", &a, &b, perms, &off, &inode, &pathpos) < 5)
            continue;
        const char *path = pathpos ? line + pathpos : "";
        if (perms[0] != 'r' || perms[1] != 'w')
            continue;
        if (inode != 0 || (path[0] && path[0] != '\n' && strncmp(path, "[stack]", 7) != 0))
            continue;
        if (n == cap) {
            cap *= 2;
            struct stack_maps *m2 = realloc(m, sizeof *m + cap * sizeof m->r[0]);
            if (!m2) {
                free(m);
                m = NULL;
                break;
            }
            m = m2;
        }
        m->r[n].lo = a;
        m->r[n].hi = b;
        n++;
    }
    fclose(f);
    if (!m)
        return -ENOMEM;
    m->n = (uint32_t)n;
    qsort(m->r, n, sizeof m->r[0], cmp_range);
    struct stack_maps *old = atomic_exchange_explicit(&sampler.stack_maps, m, memory_order_acq_rel);
    if (old) {
        if (threads_wait_quiescent() == 0)
            free(old);
        /* else: a handler might still read it; leaking one snapshot is the
         * safe choice. */
    }
    return 0;
}

void threads_atfork_prepare(void)
{
    pthread_mutex_lock(&reg_lock);
}

void threads_atfork_parent(void)
{
    pthread_mutex_unlock(&reg_lock);
}

void threads_atfork_child(void)
{
    pthread_mutex_init(&reg_lock, NULL);
    if (!sampler.threads.slots)
        return;
    /* Only the forking thread exists here, with a new tid; timers are not
     * inherited by fork. */
    struct thread_slot *self = sampler_tls_slot;
    uintptr_t lo = self ? atomic_load(&self->stack_lo) : 0;
    uintptr_t hi = self ? atomic_load(&self->stack_hi) : 0;
    uint32_t flags = self ? atomic_load(&self->flags) : 0;
    for (uint32_t i = 0; i <= sampler.threads.mask; i++) {
        struct thread_slot *t = &sampler.threads.slots[i];
        if (slot_key(i) == SLOT_FREE)
            continue;
        free(t->wall_stack);
        t->wall_stack = NULL;
        atomic_store(&t->timer, -1);
        set_tid(t, SLOT_FREE);
    }
    seen = 0;
    atomic_store(&live, 0);
    if (names)
        memset(names, 0, NAMES_CAP * sizeof(*names));
    sampler_tls_slot = NULL;
    int inserted;
    struct thread_slot *t = insert_locked(sys_gettid(), &inserted);
    if (t) {
        atomic_store(&t->stack_lo, lo);
        atomic_store(&t->stack_hi, hi);
        atomic_store(&t->flags, flags & ~SLOT_AGENT);
        threads_read_name(sys_gettid(), t->name);
        sampler_tls_slot = t;
        if (flags & SLOT_OWN)
            pthread_setspecific(exit_key, t);
    }
}

/* The agent's own threads go straight to libc's pthread_create, past any
 * interceptor.  (Through a preloaded sanitizer's interceptor they would be
 * known to it, but GCC 12's ASan then fails a CHECK or deadlocks on its
 * allocator lock when such a thread is started in a forked child.)  A
 * thread an agent thread creates through the interposer (libcurl's
 * resolver) is marked an agent thread there. */
int threads_create_agent_thread(pthread_t *th, void *(*fn)(void *), void *arg)
{
    pthread_create_fn real = resolve_pthread_create();
    if (!real)
        return ENOSYS;
    return real(th, NULL, fn, arg);
}

/* ---- pthread_create interposer ---------------------------------------- */

struct start_arg {
    void *(*fn)(void *);
    void *arg;
    uintptr_t user_stack;   /* the caller's own stack (attr), or 0 */
    size_t stack_size;      /* its size, or the default thread stack size */
    uint32_t flags;         /* SLOT_AGENT when an agent thread made it (libcurl's
                               resolver threads): never sampled */
};

/* glibc puts a thread's descriptor (pthread_self()) at the top of its stack
 * block, so [sp, pthread_self()) is this thread's stack, all mapped; the
 * block is stack_size long. */
static void *thread_start(void *p)
{
    struct start_arg a = *(struct start_arg *)p;
    free(p);
    uintptr_t hi = (uintptr_t)pthread_self();
    uintptr_t lo = a.user_stack ? a.user_stack : (a.stack_size < hi ? hi - a.stack_size : 0);
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    if (!(a.stack_size && sp > lo && sp < hi))
        lo = hi = 0; /* not the layout we know: fall back to the maps snapshot */
    struct thread_slot *t = register_self(a.flags, lo, hi);
    if (t)
        t->start_fn = (uintptr_t)a.fn;
    return a.fn(a.arg);
}

__attribute__((visibility("default"))) int pthread_create(pthread_t *th, const pthread_attr_t *attr,
                                                          void *(*fn)(void *), void *arg)
{
    pthread_create_fn real = resolve_pthread_create();
    if (!real)
        return EAGAIN;
    if (threads_init(0) != 0)
        return real(th, attr, fn, arg);
    struct start_arg *a = malloc(sizeof *a);
    if (!a)
        return real(th, attr, fn, arg);
    a->fn = fn;
    a->arg = arg;
    a->user_stack = 0;
    a->stack_size = 0;
    struct thread_slot *self = sampler_tls_slot;
    a->flags = self && (atomic_load(&self->flags) & SLOT_AGENT) ? SLOT_AGENT : 0;
    if (attr) {
        void *addr = NULL;
        size_t size = 0;
        if (pthread_attr_getstack(attr, &addr, &size) == 0 && addr)
            a->user_stack = (uintptr_t)addr;
        if (pthread_attr_getstacksize(attr, &size) == 0)
            a->stack_size = size;
    } else {
        pthread_attr_t def;
        size_t size = 0;
        if (pthread_getattr_default_np(&def) == 0) {
            if (pthread_attr_getstacksize(&def, &size) == 0)
                a->stack_size = size;
            pthread_attr_destroy(&def);
        }
    }
    int rc = real(th, attr, thread_start, a);
    if (rc != 0)
        free(a);
    return rc;
}
