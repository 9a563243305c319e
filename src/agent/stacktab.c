/*
 * stacktab.c — the stack table: a fixed-size hash of distinct stacks with
 * their sample counts and nanoseconds.  Contract in stacktab.h.
 *
 * Layout: entries live back to back in one arena (header + frames, 8-byte
 * aligned), found through a power-of-two bucket array of chain heads
 * (entry offset + 1).  Nothing is ever freed one by one, so a full arena
 * or a full entry count simply refuses new stacks; existing ones keep
 * counting.  Sized at creation: max_stacks entries and an arena of
 * max_stacks x (header + 24 frames), which holds typical stacks; a burst
 * of very deep stacks fills the arena sooner and is counted as dropped.
 */
#include "stacktab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define AVG_FRAMES 24

struct stack_table {
    uint32_t *buckets;   /* chain heads: entry offset / 8 + 1, 0 = empty */
    uint32_t nbuckets;   /* power of two */
    uint8_t *arena;
    size_t arena_size, arena_used;
    size_t max_stacks, count;
    int max_frames;
    uint64_t dropped;
};

static uint32_t hash_stack(uint8_t type, uint8_t state, uint32_t tid, uint32_t span, const uintptr_t *f,
                           int n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ ((uint64_t)type << 40) ^ ((uint64_t)state << 32) ^ tid ^
                 ((uint64_t)span << 48) ^ ((uint64_t)span * 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < n; i++) {
        h ^= f[i];
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return (uint32_t)(h ^ (h >> 32));
}

struct stack_table *stacktab_new(size_t max_stacks, int max_frames)
{
    if (max_stacks == 0 || max_stacks > (1u << 24) || max_frames < 1 || max_frames > 65535)
        return NULL;
    struct stack_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    uint32_t nb = 16;
    while (nb < max_stacks * 2)
        nb <<= 1;
    t->nbuckets = nb;
    t->buckets = calloc(nb, sizeof(uint32_t));
    t->arena_size = max_stacks * (sizeof(struct stack_entry) + AVG_FRAMES * sizeof(uintptr_t));
    /* The arena is addressed in 8-byte units through 32-bit offsets. */
    if (t->arena_size > ((size_t)UINT32_MAX - 1) * 8)
        t->arena_size = ((size_t)UINT32_MAX - 1) * 8;
    t->arena = malloc(t->arena_size);
    if (!t->buckets || !t->arena) {
        stacktab_free(t);
        return NULL;
    }
    t->max_stacks = max_stacks;
    t->max_frames = max_frames;
    return t;
}

void stacktab_free(struct stack_table *t)
{
    if (!t)
        return;
    free(t->buckets);
    free(t->arena);
    free(t);
}

static struct stack_entry *entry_at(const struct stack_table *t, uint32_t ref)
{
    return (struct stack_entry *)(t->arena + (size_t)(ref - 1) * 8);
}

int stacktab_add(struct stack_table *t, uint8_t type, uint8_t state, uint32_t tid, uint32_t span,
                 const uintptr_t *frames, int nframes, uint64_t count, int64_t value_ns)
{
    if (nframes < 0)
        nframes = 0;
    if (nframes > t->max_frames)
        nframes = t->max_frames;
    uint32_t h = hash_stack(type, state, tid, span, frames, nframes);
    uint32_t *head = &t->buckets[h & (t->nbuckets - 1)];
    for (uint32_t ref = *head; ref; ref = entry_at(t, ref)->next) {
        struct stack_entry *e = entry_at(t, ref);
        if (e->hash == h && e->type == type && e->state == state && e->tid == tid && e->span == span &&
            e->nframes == nframes && memcmp(e->frames, frames, (size_t)nframes * sizeof(uintptr_t)) == 0) {
            e->count += count;
            e->value_ns += value_ns;
            return 0;
        }
    }
    size_t need = sizeof(struct stack_entry) + (size_t)nframes * sizeof(uintptr_t);
    need = (need + 7) & ~(size_t)7;
    if (t->count >= t->max_stacks || t->arena_used + need > t->arena_size) {
        t->dropped += count;
        return -ENOSPC;
    }
    struct stack_entry *e = (struct stack_entry *)(t->arena + t->arena_used);
    uint32_t ref = (uint32_t)(t->arena_used / 8 + 1);
    t->arena_used += need;
    t->count++;
    e->count = count;
    e->value_ns = value_ns;
    e->tid = tid;
    e->span = span;
    e->type = type;
    e->state = state;
    e->nframes = (uint16_t)nframes;
    e->hash = h;
    e->next = *head;
    memcpy(e->frames, frames, (size_t)nframes * sizeof(uintptr_t));
    *head = ref;
    return 0;
}

int stacktab_foreach(const struct stack_table *t, stacktab_visit_fn fn, void *arg)
{
    size_t off = 0;
    while (off < t->arena_used) {
        const struct stack_entry *e = (const struct stack_entry *)(t->arena + off);
        int r = fn(e, arg);
        if (r)
            return r;
        size_t sz = sizeof(struct stack_entry) + (size_t)e->nframes * sizeof(uintptr_t);
        off += (sz + 7) & ~(size_t)7;
    }
    return 0;
}

size_t stacktab_count(const struct stack_table *t)
{
    return t->count;
}

uint64_t stacktab_dropped(const struct stack_table *t)
{
    return t->dropped;
}

size_t stacktab_bytes(const struct stack_table *t)
{
    return sizeof *t + t->nbuckets * sizeof(uint32_t) + t->arena_used;
}

void stacktab_clear(struct stack_table *t)
{
    memset(t->buckets, 0, t->nbuckets * sizeof(uint32_t));
    t->arena_used = 0;
    t->count = 0;
    t->dropped = 0;
}
