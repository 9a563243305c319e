/*
 * span.c — spans: the requests this process handles (sonde_span_* in
 * sonde.h), the records the signal handler reads to tag samples with
 * them, and the per-session span map (span.h).
 *
 * Records.  recs[] is a static array of SPAN_SLOTS records
 * (sigsafe/span_rec.h), so a handle stays a valid address forever and may
 * be ended from any thread, even after its thread exited.  A thread takes
 * a record at its first begin — the next never-used one (recs_used), else
 * one from the free list — and keeps it in span_tls_rec; a pthread key
 * destructor ends its open span and gives the record back when the thread
 * exits.  The free list is a Treiber stack of indexes whose head carries
 * a tag bumped by every change, so a pop that raced a pop + push (ABA)
 * fails its CAS.  When every record is taken, begin returns 0 and counts
 * it; a later begin on that thread tries again.
 *
 * Handles.  key = (gen << SPAN_INDEX_BITS) | index, gen counting the
 * spans ever begun on the record (from 1): unique over time, so a stale
 * handle never matches a later span on the same record.  end is a CAS of
 * the record's key from the handle to 0, so of two threads ending one
 * span exactly one wins; set_status/set_peer/trace_id act only while the
 * key still matches.
 *
 * The hot path (begin, end) takes no lock, allocates nothing and makes no
 * system call: CLOCK_REALTIME comes from the vDSO, the tid is cached in
 * the record, trace ids come from a per-record splitmix64 generator
 * seeded once per thread with getrandom.  Counters live in the records
 * (only the owner writes `begun`; `sampled` is bumped by whoever ends the
 * span, on a line it just wrote anyway), so threads beginning spans side
 * by side share no cache line; the stats sum them.
 *
 * Capture marks.  The task watcher (task.c) marks a span it may capture
 * (watched_key); every path that ends a span — sonde_span_end, the next
 * begin on the thread, the thread's exit — checks that mark with one
 * load and, only for a marked span, stores the end time, status and peer
 * (note_end) before clearing the key, so the watcher reads a finished
 * call's figures after its owner has moved on.
 *
 * Benign races, by contract: a set_peer from another thread racing the
 * end of its span (or the owner's next begin) may write the new span's
 * peer — always in bounds and terminated; the handler never reads
 * status or peer.  An end racing a sample taken on another thread (the
 * wall sampler) may miss that sample in span_count_sampled.
 */
#include "span.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "agent.h"
#include "common/array.h"
#include "common/hindex.h"
#include "sigsafe/sampler.h"
#include "sigsafe/span_rec.h"
#include "sigsafe/sys.h"

#define INDEX_MASK ((1u << SPAN_INDEX_BITS) - 1)
_Static_assert(SPAN_SLOTS <= INDEX_MASK + 1, "a record index must fit the handle's low bits");

static struct span_rec recs[SPAN_SLOTS];
static _Atomic uint32_t recs_used;  /* recs[0 .. recs_used) were handed out once */
static _Atomic uint64_t free_head;  /* (tag << 32) | (index + 1); low half 0 = empty */
static _Atomic uint64_t no_slot;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int exit_key_ok;

/* ---- records -------------------------------------------------------- */

static void free_push(struct span_rec *r)
{
    uint32_t item = (uint32_t)(r - recs) + 1;
    uint64_t h = atomic_load_explicit(&free_head, memory_order_relaxed);
    uint64_t nh;
    do {
        atomic_store_explicit(&r->free_next, (uint32_t)h, memory_order_relaxed);
        nh = (((h >> 32) + 1) << 32) | item;
    } while (!atomic_compare_exchange_weak_explicit(&free_head, &h, nh, memory_order_release,
                                                    memory_order_relaxed));
}

static struct span_rec *free_pop(void)
{
    uint64_t h = atomic_load_explicit(&free_head, memory_order_acquire);
    for (;;) {
        uint32_t item = (uint32_t)h;
        if (item == 0 || item > SPAN_SLOTS)
            return NULL;
        /* May be stale if another thread popped item meanwhile: then the
         * head's tag moved on and the CAS fails. */
        uint32_t next = atomic_load_explicit(&recs[item - 1].free_next, memory_order_relaxed);
        uint64_t nh = (((h >> 32) + 1) << 32) | next;
        if (atomic_compare_exchange_weak_explicit(&free_head, &h, nh, memory_order_acquire,
                                                  memory_order_acquire))
            return &recs[item - 1];
    }
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t random_seed(struct span_rec *r)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    /* No entropy yet (early boot) or no getrandom: unique enough for
     * trace ids, which only need to differ. */
    return realtime_ns() ^ ((uint64_t)(uint32_t)sys_gettid() << 32) ^ (uint64_t)(uintptr_t)r;
}

/* splitmix64: one add and a finalizer per 64 bits. */
static inline uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Seqlock copy of bytes another thread may be rewriting (the key check
 * after it tells whether the copy is whole): byte loads through a
 * volatile pointer, not memcpy, and outside ThreadSanitizer's view — the
 * race is the protocol, not a bug. */
__attribute__((no_sanitize_thread, noinline)) static void copy_racy(char *dst, const char *src,
                                                                     size_t n)
{
    const volatile char *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = s[i];
}

/* The span key of r ends and the task watcher marked it (span_rec.h,
 * "Capture marks"): store its end for the watcher before key is cleared.
 * Only for watched spans: everyone else pays the one load of
 * watched_key in the caller. */
static __attribute__((noinline)) void note_end(struct span_rec *r, uint64_t key)
{
    if (atomic_load_explicit(&r->key, memory_order_relaxed) != key)
        return; /* ended already: a late second end must not move the time */
    /* ended_key 0 first, so a reader copying the fields meanwhile sees
     * ended_key change under it (seqlock). */
    atomic_store_explicit(&r->ended_key, 0, memory_order_relaxed);
    SPAN_ORDER();
    atomic_store_explicit(&r->end_ns, (int64_t)realtime_ns(), memory_order_relaxed);
    atomic_store_explicit(&r->end_status, atomic_load_explicit(&r->status, memory_order_relaxed),
                          memory_order_relaxed);
    copy_racy(r->end_peer, r->peer, sizeof r->end_peer);
    r->end_peer[sizeof r->end_peer - 1] = '\0';
    atomic_store_explicit(&r->ended_key, key, memory_order_release);
}

/* Ends r's open span, if any (whoever wins the CAS counts it). */
static void end_open(struct span_rec *r)
{
    uint64_t key = atomic_load_explicit(&r->key, memory_order_relaxed);
    if (!key)
        return;
    if (atomic_load_explicit(&r->watched_key, memory_order_acquire) == key)
        note_end(r, key);
    if (atomic_compare_exchange_strong_explicit(&r->key, &key, 0, memory_order_acq_rel,
                                                memory_order_relaxed) &&
        atomic_load_explicit(&r->samples, memory_order_relaxed) > 0)
        atomic_fetch_add_explicit(&r->sampled, 1, memory_order_relaxed);
}

/* The pthread key destructor: the thread exits, its record goes back. */
static void rec_exit(void *p)
{
    struct span_rec *r = p;
    end_open(r);
    struct thread_slot *t = sampler_tls_slot;
    if (t && atomic_load_explicit(&t->span_rec, memory_order_relaxed) == r)
        atomic_store_explicit(&t->span_rec, NULL, memory_order_relaxed);
    if (span_tls_rec == r)
        span_tls_rec = NULL;
    /* The handler of this thread no longer reaches r once span_tls_rec is
     * NULL; only then may another thread take it. */
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
    free_push(r);
}

/* fork: the child has one thread.  Every record but its own goes back to
 * the free list (their threads do not exist here), and its own one gets
 * the child's tid and a new seed (else parent and child would make the
 * same trace ids). */
static void atfork_child(void)
{
    struct span_rec *mine = span_tls_rec;
    uint32_t used = atomic_load_explicit(&recs_used, memory_order_relaxed);
    atomic_store_explicit(&free_head, 0, memory_order_relaxed);
    for (uint32_t i = used; i-- > 0;) {
        struct span_rec *r = &recs[i];
        if (r == mine)
            continue;
        atomic_store_explicit(&r->key, 0, memory_order_relaxed);
        atomic_store_explicit(&r->owner, 0, memory_order_relaxed);
        free_push(r);
    }
    if (mine) {
        atomic_store_explicit(&mine->owner, sys_gettid(), memory_order_relaxed);
        mine->rng = random_seed(mine);
    }
}

static void init_once(void)
{
    exit_key_ok = pthread_key_create(&exit_key, rec_exit) == 0;
    pthread_atfork(NULL, NULL, atfork_child);
}

/* The calling thread's first begin: takes a record.  NULL (counted) when
 * every record is in use. */
static __attribute__((noinline)) struct span_rec *claim(void)
{
    pthread_once(&once, init_once);
    struct span_rec *r = NULL;
    uint32_t u = atomic_load_explicit(&recs_used, memory_order_relaxed);
    while (u < SPAN_SLOTS) {
        if (atomic_compare_exchange_weak_explicit(&recs_used, &u, u + 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            r = &recs[u];
            break;
        }
    }
    if (!r)
        r = free_pop();
    if (!r) {
        atomic_fetch_add_explicit(&no_slot, 1, memory_order_relaxed);
        return NULL;
    }
    /* Without a key (every pthread key taken by the host) the record is
     * never given back: spans still work, records of exited threads leak
     * until begins are refused. */
    if (exit_key_ok && pthread_setspecific(exit_key, r) != 0) {
        free_push(r);
        atomic_fetch_add_explicit(&no_slot, 1, memory_order_relaxed);
        return NULL;
    }
    r->rng = random_seed(r);
    atomic_store_explicit(&r->owner, sys_gettid(), memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    span_tls_rec = r;
    return r;
}

/* The record a handle names, or NULL (0, or an index out of range). */
static inline struct span_rec *rec_of(sonde_span_t span)
{
    uint32_t i = (uint32_t)(span & INDEX_MASK);
    return span && i < SPAN_SLOTS ? &recs[i] : NULL;
}

static inline void copy_bounded(char *dst, const char *src, size_t max)
{
    size_t n = strnlen(src, max - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void make_trace_id(struct span_rec *r)
{
    static const char hex[16] = "0123456789abcdef";
    uint64_t a = next_random(&r->rng), b = next_random(&r->rng);
    for (int i = 0; i < 16; i++) {
        r->trace_id[i] = hex[(a >> (60 - 4 * i)) & 15];
        r->trace_id[16 + i] = hex[(b >> (60 - 4 * i)) & 15];
    }
    r->trace_id[32] = '\0';
}

static int no_span(const char *fn, sonde_span_t span)
{
    return agent_error_quiet(-ESRCH, "%s: span %#" PRIx64 " is not open (ended, replaced by a later "
                               "sonde_span_begin on its thread, or never begun)",
                       fn, (uint64_t)span);
}

SONDE_API sonde_span_t sonde_span_begin(const char *interface, const char *trace_id)
{
    struct span_rec *r = span_tls_rec;
    if (__builtin_expect(r == NULL, 0) && !(r = claim()))
        return 0;
    end_open(r);
    /* key is 0 now, and only this thread makes it nonzero; readers on
     * other threads (span_rec_tag_other, sonde_span_trace_id) must see
     * that 0 before any of the string writes below (span_rec.h). */
    SPAN_ORDER();
    uint64_t key = (++r->gen << SPAN_INDEX_BITS) | (uint64_t)(r - recs);
    copy_bounded(r->interface, interface && interface[0] ? interface : "unknown",
                 sizeof r->interface);
    if (trace_id && trace_id[0])
        copy_bounded(r->trace_id, trace_id, sizeof r->trace_id);
    else
        make_trace_id(r);
    atomic_store_explicit(&r->start_ns, (int64_t)realtime_ns(), memory_order_relaxed);
    atomic_store_explicit(&r->status, 0, memory_order_relaxed);
    r->peer[0] = '\0';
    atomic_store_explicit(&r->samples, 0, memory_order_relaxed);
    atomic_store_explicit(&r->begun, atomic_load_explicit(&r->begun, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    /* Let the wall sampler find this record from the thread's slot. */
    struct thread_slot *t = sampler_tls_slot;
    if (t && atomic_load_explicit(&t->span_rec, memory_order_relaxed) != r)
        atomic_store_explicit(&t->span_rec, r, memory_order_release);
    atomic_store_explicit(&r->key, key, memory_order_release);
    return key;
}

SONDE_API int sonde_span_end(sonde_span_t span)
{
    struct span_rec *r = rec_of(span);
    if (!r)
        return no_span("sonde_span_end", span);
    /* The one thing a span pays for active profiling: is it watched? */
    if (__builtin_expect(atomic_load_explicit(&r->watched_key, memory_order_acquire) == span, 0))
        note_end(r, span);
    uint64_t expect = span;
    if (!atomic_compare_exchange_strong_explicit(&r->key, &expect, 0, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return no_span("sonde_span_end", span);
    if (atomic_load_explicit(&r->samples, memory_order_relaxed) > 0)
        atomic_fetch_add_explicit(&r->sampled, 1, memory_order_relaxed);
    return 0;
}

SONDE_API int sonde_span_set_status(sonde_span_t span, int code)
{
    struct span_rec *r = rec_of(span);
    if (!r || atomic_load_explicit(&r->key, memory_order_acquire) != span)
        return no_span("sonde_span_set_status", span);
    atomic_store_explicit(&r->status, code, memory_order_relaxed);
    return 0;
}

SONDE_API int sonde_span_set_peer(sonde_span_t span, const char *addr)
{
    struct span_rec *r = rec_of(span);
    if (!r || atomic_load_explicit(&r->key, memory_order_acquire) != span)
        return no_span("sonde_span_set_peer", span);
    copy_bounded(r->peer, addr ? addr : "", sizeof r->peer);
    return 0;
}

SONDE_API int sonde_span_trace_id(sonde_span_t span, char *buf, size_t len)
{
    if (!buf || len == 0)
        return agent_error(-EINVAL, "sonde_span_trace_id: %s", buf ? "len is 0" : "buf is NULL");
    buf[0] = '\0';
    struct span_rec *r = rec_of(span);
    if (!r || atomic_load_explicit(&r->key, memory_order_acquire) != span)
        return no_span("sonde_span_trace_id", span);
    /* Seqlock read: the owner may begin its next span meanwhile. */
    char tmp[SONDE_SPAN_TRACE_MAX];
    memcpy(tmp, r->trace_id, sizeof tmp);
    SPAN_ORDER();
    if (atomic_load_explicit(&r->key, memory_order_acquire) != span)
        return no_span("sonde_span_trace_id", span);
    tmp[sizeof tmp - 1] = '\0';
    size_t n = strlen(tmp);
    if (n >= len)
        n = len - 1;
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    return 0;
}

uint64_t span_count_begun(void)
{
    uint32_t used = atomic_load_explicit(&recs_used, memory_order_relaxed);
    uint64_t n = 0;
    for (uint32_t i = 0; i < used && i < SPAN_SLOTS; i++)
        n += atomic_load_explicit(&recs[i].begun, memory_order_relaxed);
    return n;
}

uint64_t span_count_sampled(void)
{
    uint32_t used = atomic_load_explicit(&recs_used, memory_order_relaxed);
    uint64_t n = 0;
    for (uint32_t i = 0; i < used && i < SPAN_SLOTS; i++)
        n += atomic_load_explicit(&recs[i].sampled, memory_order_relaxed);
    return n;
}

uint64_t span_count_no_slot(void)
{
    return atomic_load_explicit(&no_slot, memory_order_relaxed);
}

/* ---- open spans, for the task watcher ------------------------------- */

uint32_t span_rec_count(void)
{
    uint32_t used = atomic_load_explicit(&recs_used, memory_order_acquire);
    return used < SPAN_SLOTS ? used : SPAN_SLOTS;
}

uint64_t span_rec_key(uint32_t i)
{
    return i < SPAN_SLOTS ? atomic_load_explicit(&recs[i].key, memory_order_acquire) : 0;
}

int span_rec_read(uint64_t key, struct span_open *out)
{
    struct span_rec *r = rec_of(key);
    if (!r || atomic_load_explicit(&r->key, memory_order_acquire) != key)
        return -ESRCH;
    out->owner = atomic_load_explicit(&r->owner, memory_order_relaxed);
    out->start_ns = atomic_load_explicit(&r->start_ns, memory_order_relaxed);
    copy_racy(out->interface, r->interface, sizeof out->interface);
    copy_racy(out->trace_id, r->trace_id, sizeof out->trace_id);
    SPAN_ORDER();
    if (atomic_load_explicit(&r->key, memory_order_acquire) != key)
        return -ESRCH;
    out->interface[sizeof out->interface - 1] = '\0';
    out->trace_id[sizeof out->trace_id - 1] = '\0';
    out->key = key;
    return 0;
}

void span_rec_watch(uint64_t key)
{
    struct span_rec *r = rec_of(key);
    if (r)
        atomic_store_explicit(&r->watched_key, key, memory_order_release);
}

int span_rec_ended(uint64_t key, struct span_end *out)
{
    struct span_rec *r = rec_of(key);
    if (!r)
        return -ESRCH;
    if (atomic_load_explicit(&r->key, memory_order_acquire) == key)
        return 1;
    if (atomic_load_explicit(&r->ended_key, memory_order_acquire) != key)
        return -ESRCH;
    out->end_ns = atomic_load_explicit(&r->end_ns, memory_order_relaxed);
    out->status = atomic_load_explicit(&r->end_status, memory_order_relaxed);
    copy_racy(out->peer, r->end_peer, sizeof out->peer);
    SPAN_ORDER();
    if (atomic_load_explicit(&r->ended_key, memory_order_acquire) != key)
        return -ESRCH;
    out->peer[sizeof out->peer - 1] = '\0';
    return 0;
}

/* ---- the span map ----------------------------------------------------
 *
 * Entries in an array (index = position + 1) found by key through a hash
 * index.  Strings live in chunks that never move (span_map_get's
 * pointers stay valid); interfaces, few and repeated, are stored once. */

#define CHUNK_BYTES 16384

struct chunk {
    struct chunk *next;
    size_t used;
    char data[CHUNK_BYTES];
};

struct map_entry {
    uint64_t key;
    const char *interface;
    const char *trace_id;
};

struct span_map {
    size_t max;
    uint64_t dropped;
    struct map_entry *e;
    size_t n, cap;
    struct hindex bykey;
    const char **ifaces;
    size_t nifaces, capifaces;
    struct hindex byiface;
    struct chunk *chunks; /* newest first */
};

struct span_map *span_map_new(size_t max)
{
    struct span_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->max = max < HINDEX_MAX_ITEMS ? max : HINDEX_MAX_ITEMS;
    return m;
}

void span_map_free(struct span_map *m)
{
    if (!m)
        return;
    free(m->e);
    hindex_free(&m->bykey);
    free(m->ifaces);
    hindex_free(&m->byiface);
    for (struct chunk *c = m->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(m);
}

/* A copy of s[0..n) + NUL that never moves; NULL on ENOMEM. */
static const char *store_string(struct span_map *m, const char *s, size_t n)
{
    struct chunk *c = m->chunks;
    if (!c || CHUNK_BYTES - c->used < n + 1) {
        if (!(c = malloc(sizeof *c)))
            return NULL;
        c->used = 0;
        c->next = m->chunks;
        m->chunks = c;
    }
    char *p = c->data + c->used;
    memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

struct bytes_key {
    const char *p;
    size_t n;
};

static int key_eq(const void *ctx, uint32_t item, const void *key)
{
    return ((const struct span_map *)ctx)->e[item].key == *(const uint64_t *)key;
}

static int iface_eq(const void *ctx, uint32_t item, const void *key)
{
    const struct bytes_key *k = key;
    const char *s = ((const struct span_map *)ctx)->ifaces[item];
    return strncmp(s, k->p, k->n) == 0 && s[k->n] == '\0';
}

static const char *intern_interface(struct span_map *m, const char *s, size_t n)
{
    struct bytes_key k = {s, n};
    uint32_t h = hindex_hash_bytes(s, n);
    int64_t i = hindex_find(&m->byiface, h, iface_eq, m, &k);
    if (i >= 0)
        return m->ifaces[i];
    const char *copy = store_string(m, s, n);
    if (!copy || array_grow(&m->ifaces, &m->capifaces, m->nifaces + 1, sizeof *m->ifaces) != 0 ||
        hindex_insert(&m->byiface, h, (uint32_t)m->nifaces) != 0)
        return NULL;
    m->ifaces[m->nifaces++] = copy;
    return copy;
}

uint32_t span_map_add(struct span_map *m, uint64_t key, const char *interface, const char *trace_id)
{
    if (!m || !key)
        return 0;
    uint32_t h = hindex_hash_u64(key);
    int64_t i = hindex_find(&m->bykey, h, key_eq, m, &key);
    if (i >= 0)
        return (uint32_t)i + 1;
    if (m->n >= m->max)
        goto drop;
    if (!interface)
        interface = "";
    if (!trace_id)
        trace_id = "";
    size_t ni = strnlen(interface, SONDE_SPAN_INTERFACE_MAX - 1);
    size_t nt = strnlen(trace_id, SONDE_SPAN_TRACE_MAX - 1);
    const char *iface = intern_interface(m, interface, ni);
    const char *trace = iface ? store_string(m, trace_id, nt) : NULL;
    if (!trace || array_grow(&m->e, &m->cap, m->n + 1, sizeof *m->e) != 0 ||
        hindex_insert(&m->bykey, h, (uint32_t)m->n) != 0)
        goto drop;
    m->e[m->n] = (struct map_entry){key, iface, trace};
    return (uint32_t)++m->n;
drop:
    m->dropped++;
    return 0;
}

int span_map_get(const struct span_map *m, uint32_t idx, const char **interface, const char **trace_id)
{
    if (!m || idx == 0 || idx > m->n)
        return -ENOENT;
    if (interface)
        *interface = m->e[idx - 1].interface;
    if (trace_id)
        *trace_id = m->e[idx - 1].trace_id;
    return 0;
}

size_t span_map_count(const struct span_map *m)
{
    return m ? m->n : 0;
}

uint64_t span_map_dropped(const struct span_map *m)
{
    return m ? m->dropped : 0;
}
