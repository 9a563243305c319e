/*
 * hindex.c — the hash index (hindex.h).
 *
 * Linear probing at a load of at most 1/2.  A slot packs the item's 32-bit
 * hash with its index + 1: probing compares hashes before calling the
 * caller's eq(), and growing re-places slots by their stored hash, so the
 * table never needs the items themselves.  Slot position is hash & mask,
 * hence hashes must mix their low bits well (both hashes below do).
 */
#include "hindex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint32_t hindex_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

uint32_t hindex_hash_u64(uint64_t x)
{
    x ^= x >> 30; /* splitmix64 finalizer */
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (uint32_t)x;
}

void hindex_free(struct hindex *h)
{
    free(h->slots);
    memset(h, 0, sizeof *h);
}

int64_t hindex_find(const struct hindex *h, uint32_t hash, hindex_eq_fn eq, const void *ctx,
                    const void *key)
{
    if (h->cap == 0)
        return -1;
    size_t mask = h->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        uint64_t s = h->slots[i];
        if (s == 0)
            return -1; /* the load is <= 1/2: an empty slot always comes */
        if ((uint32_t)(s >> 32) == hash && eq(ctx, (uint32_t)s - 1, key))
            return (uint32_t)s - 1;
    }
}

static void put(uint64_t *slots, size_t cap, uint64_t s)
{
    size_t mask = cap - 1;
    size_t i = (size_t)(s >> 32) & mask;
    while (slots[i] != 0)
        i = (i + 1) & mask;
    slots[i] = s;
}

int hindex_insert(struct hindex *h, uint32_t hash, uint32_t item)
{
    if (item >= HINDEX_MAX_ITEMS)
        return -ENOMEM;
    if ((h->n + 1) * 2 > h->cap) { /* keep the load at most 1/2 */
        size_t ncap = h->cap ? h->cap * 2 : 64;
        if (ncap > SIZE_MAX / sizeof(uint64_t))
            return -ENOMEM;
        uint64_t *ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return -ENOMEM;
        for (size_t i = 0; i < h->cap; i++)
            if (h->slots[i])
                put(ns, ncap, h->slots[i]);
        free(h->slots);
        h->slots = ns;
        h->cap = ncap;
    }
    put(h->slots, h->cap, ((uint64_t)hash << 32) | ((uint64_t)item + 1));
    h->n++;
    return 0;
}
