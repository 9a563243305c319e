/*
 * merge_views.c — what a merged flame graph of 1,000 sessions costs
 * sonded (src/server/views.c): the flame tree blobs ingest stores, merged
 * into one tree and turned into the JSON the API answers.  Goal (issue 4):
 * at most 1 s for 1,000 sessions on the 2-core test machine.
 *
 *   merge_views [SESSIONS [RUNS]]     default 1000 sessions, 7 runs
 *
 * The profiles are generated to look like one service's: ~400 function
 * names; stacks are a request path (main → event loop → one of 30
 * handlers → a walk of 5–25 service functions over a fixed call graph,
 * cut at a random depth) plus, mostly, a library tail (allocator, locks,
 * I/O: chains of up to 8 frames); every tenth function has a frame inlined
 * into it.  Each profile draws ~2,000 distinct stacks from that space with
 * skewed popularity, and 5% of its stacks walk a path of its own, so
 * sessions overlap a lot but not entirely.  Sample types samples/count and
 * cpu/nanoseconds; like the agent's export, one sample per stack and
 * thread, labelled thread and thread_id.  Each profile goes through
 * the real path: pprof builder → gzip → pprof_decode → flame_tree_build.
 *
 * Timed, per run: a new merge of the default type, flame_merge_add_blob of
 * every blob, flame_merge_tree_json, json_dumps (what the server sends).
 * stdout:
 *
 *   profiles: N, pprof gz K KB avg, blob K KB avg, nodes per blob avg
 *   tree build: X ms per profile (median)
 *   merge 1000 sessions: median X ms over N runs (merge A ms, tree json B
 *     ms, dump C ms; D merged nodes, E KB of JSON)
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pprof.h"
#include "server/views.h"

#define NFUNC 400
#define NHANDLER 30
#define FIRST_SERVICE 40
#define FIRST_LIB 300
#define NPATH 120
#define NCALLOUT 3
#define NTAIL 40
#define LEAFPCS 6
#define NSITE 8
#define STACKS 2000
#define MAXDEPTH 48

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* Index in [0, n) with popularity falling off like u^3. */
static unsigned skewed(unsigned n)
{
    double u = unif();
    return (unsigned)(n * u * u * u);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time of this process: on a shared 2-core machine, wall time also
 * counts other people's work. */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The service: function names, a call graph, request paths with the
 * points where they call out, and library tails — the same for every
 * profile. */
static char fname[NFUNC][96];
static unsigned succ[NFUNC][3];
static unsigned path[NPATH][MAXDEPTH], pathlen[NPATH], callout[NPATH][NCALLOUT];
static unsigned tail[NTAIL][8], taillen[NTAIL];

static void make_service(void)
{
    static const char *const ns[] = {"checkout", "cart", "pricing", "inventory", "payments",
                                     "db",       "http", "json",    "cache",     "auth"};
    static const char *const verb[] = {"handle", "apply", "load",  "store",    "encode",
                                       "decode", "parse", "visit", "validate", "compute"};
    static const char *const lib[] = {"malloc", "free",  "memcpy", "pthread_mutex_lock",
                                      "write",  "read",  "epoll_wait", "strlen",
                                      "__memmove_avx_unaligned_erms", "_int_malloc"};
    rng_state = 42;
    snprintf(fname[0], sizeof fname[0], "main");
    snprintf(fname[1], sizeof fname[1], "sonde_demo::Server::run()");
    snprintf(fname[2], sizeof fname[2], "sonde_demo::EventLoop::poll(int)");
    snprintf(fname[3], sizeof fname[3], "sonde_demo::Dispatcher::dispatch(Request const&)");
    for (unsigned f = 4; f < FIRST_LIB; f++)
        snprintf(fname[f], sizeof fname[f], "%s::%s%s_%u(Context&)", ns[f % 10],
                 f < FIRST_SERVICE ? "Handler::" : "", verb[(f / 10) % 10], f);
    for (unsigned f = FIRST_LIB; f < NFUNC; f++) /* the libc entry points, then helpers */
        if (f < FIRST_LIB + 10)
            snprintf(fname[f], sizeof fname[f], "%s", lib[f % 10]);
        else
            snprintf(fname[f], sizeof fname[f], "%s_%u", lib[f % 10], f);
    for (unsigned f = 0; f < NFUNC; f++)
        for (int k = 0; k < 3; k++)
            succ[f][k] = f < FIRST_LIB ? FIRST_SERVICE + rnd() % (FIRST_LIB - FIRST_SERVICE)
                                       : FIRST_LIB + rnd() % (NFUNC - FIRST_LIB);
    for (unsigned p = 0; p < NPATH; p++) {
        unsigned n = 0;
        for (unsigned f = 0; f < 4; f++)
            path[p][n++] = f;
        unsigned f = 4 + p % NHANDLER;
        path[p][n++] = f;
        unsigned len = 8 + rnd() % 28;
        for (unsigned k = 0; k < len; k++)
            path[p][n++] = f = succ[f][skewed(3)];
        pathlen[p] = n;
        callout[p][0] = n; /* the path's end, then two points on the way */
        for (unsigned k = 1; k < NCALLOUT; k++)
            callout[p][k] = n / 2 + rnd() % (n - n / 2);
    }
    for (unsigned t = 0; t < NTAIL; t++) {
        unsigned f = FIRST_LIB + t % 10, n = 0;
        tail[t][n++] = f;
        unsigned len = rnd() % 6;
        for (unsigned k = 0; k < len; k++)
            tail[t][n++] = f = succ[f][skewed(3)];
        taillen[t] = n;
    }
}

/* One profile of the service, gzipped. */
static void make_profile(unsigned id, uint8_t **gz, size_t *len)
{
    struct pprof_builder *b = pprof_builder_new();
    if (!b)
        exit(1);
    pprof_builder_sample_type(b, "samples", "count");
    pprof_builder_sample_type(b, "cpu", "nanoseconds");
    pprof_builder_period(b, "cpu", "nanoseconds", 10000000);
    pprof_builder_default_sample_type(b, "cpu");
    uint64_t exe = pprof_builder_mapping(b, 0x400000, 0x800000, 0, "/srv/checkout/bin/checkout",
                                         "5f1c0a2e9d");
    uint64_t libc = pprof_builder_mapping(b, 0x7f0000000000, 0x7f0000200000, 0,
                                          "/usr/lib/x86_64-linux-gnu/libc.so.6", "a1b2c3");
    pprof_builder_mapping_flags(b, exe, PPROF_HAS_FUNCTIONS | PPROF_HAS_INLINE_FRAMES);
    static uint64_t fid[NFUNC], inl[NFUNC];
    static uint64_t loc[NFUNC][NSITE + LEAFPCS];
    memset(loc, 0, sizeof loc);
    for (unsigned f = 0; f < NFUNC; f++) {
        fid[f] = pprof_builder_function(b, fname[f], fname[f], "checkout.cc", 0);
        if (f % 10 == 5) {
            char in[128];
            snprintf(in, sizeof in, "%s::inlined_helper", fname[f]);
            inl[f] = pprof_builder_function(b, in, in, "checkout.h", 0);
        }
    }
    static const char *const threads[] = {"worker-0", "worker-1", "worker-2", "worker-3",
                                          "io-0",     "io-1",     "timer",    "main"};
    rng_state = 1000003ull * (id + 1);
    unsigned made = 0;
    while (made < STACKS) {
        /* A stack of names: a request path cut where it calls out, mostly
         * with a library tail; 2% of them go somewhere of their own. */
        unsigned stack[MAXDEPTH + 8], n = 0;
        unsigned p = skewed(NPATH), cut = callout[p][rnd() % NCALLOUT];
        unsigned t = unif() < 0.7 ? skewed(NTAIL) : NTAIL;
        memcpy(stack, path[p], cut * sizeof *stack);
        n = cut;
        if (unif() < 0.02)
            for (unsigned k = 1 + rnd() % 3, f = stack[n - 1]; k > 0; k--)
                stack[n++] = f = FIRST_SERVICE + rnd() % (FIRST_LIB - FIRST_SERVICE);
        for (unsigned k = 0; t < NTAIL && k < taillen[t]; k++)
            stack[n++] = tail[t][k];
        /* The same names at 1–6 leaf addresses: distinct pprof stacks. */
        unsigned pcs = 1 + rnd() % 6;
        for (unsigned v = 0; v < pcs && made < STACKS; v++, made++) {
            uint64_t locs[MAXDEPTH + 8];
            for (unsigned k = 0; k < n; k++) { /* leaf first */
                /* A frame's address is where its function calls the next
                 * frame's (8 call sites each), or for the leaf, where it
                 * was interrupted. */
                unsigned f = stack[n - 1 - k];
                unsigned slot = k == 0 ? NSITE + v : stack[n - k] % NSITE;
                if (!loc[f][slot]) {
                    struct pprof_line lines[2] = {{inl[f], 0}, {fid[f], 0}};
                    bool in = f % 10 == 5;
                    uint64_t addr =
                        (f >= FIRST_LIB ? 0x7f0000001000 : 0x401000) + f * 1024 + slot * 24;
                    loc[f][slot] = pprof_builder_location(b, f >= FIRST_LIB ? libc : exe, addr,
                                                          in ? lines : lines + 1, in ? 2 : 1);
                }
                locs[k] = loc[f][slot];
            }
            /* As the agent exports: one sample per (stack, thread). */
            unsigned nthreads = 1 + rnd() % 4, first = rnd() % 8;
            for (unsigned k = 0; k < nthreads; k++) {
                unsigned th = (first + k) % 8;
                int64_t count = 1 + (int64_t)(-log(1 - unif()) * 3);
                int64_t val[2] = {count, count * 10000000};
                struct pprof_label l[2] = {{.key = "thread", .str = threads[th]},
                                           {.key = "thread_id", .num = 4242 + th}};
                pprof_builder_sample(b, locs, n, val, l, 2);
            }
        }
    }
    if (pprof_builder_encode(b, gz, len) != 0) {
        fprintf(stderr, "merge_views: encode failed\n");
        exit(1);
    }
    pprof_builder_free(b);
}

int main(int argc, char **argv)
{
    size_t nprof = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    int runs = argc > 2 ? atoi(argv[2]) : 7;
    if (nprof < 1 || runs < 1) {
        fprintf(stderr, "usage: merge_views [SESSIONS [RUNS]]\n");
        return 2;
    }
    make_service();
    uint8_t **blobs = calloc(nprof, sizeof *blobs);
    size_t *lens = calloc(nprof, sizeof *lens);
    double *build_ms = calloc(nprof, sizeof *build_ms);
    double gz_total = 0, blob_total = 0;
    if (!blobs || !lens || !build_ms)
        return 1;
    for (size_t i = 0; i < nprof; i++) {
        uint8_t *gz;
        size_t gzlen;
        make_profile((unsigned)i, &gz, &gzlen);
        gz_total += gzlen;
        char err[256];
        struct pprof_profile *p;
        if (pprof_decode(gz, gzlen, &p, err, sizeof err) != 0) {
            fprintf(stderr, "merge_views: decode: %s\n", err);
            return 1;
        }
        double t0 = now_ms();
        if (flame_tree_build(p, &blobs[i], &lens[i], err, sizeof err) != 0) {
            fprintf(stderr, "merge_views: flame_tree_build: %s\n", err);
            return 1;
        }
        build_ms[i] = now_ms() - t0;
        blob_total += lens[i];
        pprof_profile_free(p);
        free(gz);
    }
    /* Nodes per blob: one merge of one blob each (not timed). */
    double nodes_total = 0;
    for (size_t i = 0; i < nprof; i += nprof / 50 + 1) {
        struct flame_merge *m = flame_merge_new("cpu");
        char err[256];
        struct flame_merge_stats st;
        flame_merge_add_blob(m, blobs[i], lens[i], err, sizeof err);
        flame_merge_stats(m, &st);
        nodes_total += (double)st.nodes;
        flame_merge_free(m);
    }
    size_t sampled = (nprof + nprof / 50) / (nprof / 50 + 1);
    printf("profiles: %zu, pprof gz %.1f KB avg, blob %.1f KB avg, %.0f nodes per blob avg\n",
           nprof, gz_total / nprof / 1024, blob_total / nprof / 1024, nodes_total / sampled);
    printf("tree build: %.2f ms per profile (median)\n", median(build_ms, nprof));

    double *total = calloc((size_t)runs, sizeof *total);
    double *merge = calloc((size_t)runs, sizeof *merge);
    double *tree = calloc((size_t)runs, sizeof *tree);
    double *dump = calloc((size_t)runs, sizeof *dump);
    double *cpu = calloc((size_t)runs, sizeof *cpu);
    size_t nodes = 0, jsonlen = 0;
    int64_t sum = 0;
    for (int r = 0; r < runs; r++) {
        double c0 = cpu_ms(), t0 = now_ms();
        struct flame_merge *m = flame_merge_new(NULL);
        char err[256];
        for (size_t i = 0; i < nprof; i++)
            if (flame_merge_add_blob(m, blobs[i], lens[i], err, sizeof err) != 0) {
                fprintf(stderr, "merge_views: add_blob: %s\n", err);
                return 1;
            }
        double t1 = now_ms();
        json_t *j = flame_merge_tree_json(m);
        double t2 = now_ms();
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        double t3 = now_ms(), c3 = cpu_ms();
        if (!text) {
            fprintf(stderr, "merge_views: out of memory\n");
            return 1;
        }
        struct flame_merge_stats st;
        flame_merge_stats(m, &st);
        nodes = st.nodes;
        sum = st.total;
        jsonlen = strlen(text);
        free(text);
        json_decref(j);
        flame_merge_free(m);
        merge[r] = t1 - t0;
        tree[r] = t2 - t1;
        dump[r] = t3 - t2;
        total[r] = t3 - t0;
        cpu[r] = c3 - c0;
    }
    printf("merge %zu sessions: median %.1f ms over %d runs (cpu %.1f ms; merge %.1f ms, tree "
           "json %.1f ms, dump %.1f ms; %zu merged nodes, %.0f KB of JSON, total %" PRId64 ")\n",
           nprof, median(total, (size_t)runs), runs, median(cpu, (size_t)runs),
           median(merge, (size_t)runs), median(tree, (size_t)runs), median(dump, (size_t)runs),
           nodes, jsonlen / 1024.0, sum);
    for (size_t i = 0; i < nprof; i++)
        free(blobs[i]);
    free(blobs);
    free(lens);
    free(build_ms);
    free(total);
    free(merge);
    free(tree);
    free(dump);
    free(cpu);
    return 0;
}
