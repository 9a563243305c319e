/*
 * hindex.h — a hash index: an open-addressing table from a 32-bit hash to
 * the index of an item that lives in the caller's own array.
 *
 * The table never sees the items: the caller keeps them (strings, pprof
 * functions, address cache entries, ...) in an array of its choosing,
 * hashes a key with hindex_hash_bytes() or hindex_hash_u64(), and passes
 * an equality callback that compares item i of its array with the key.
 * That is what lets one small table serve the pprof builder (strings,
 * functions), the pprof reader (ids), the summaries (names, stacks) and
 * the agent's exporter and symbolizer (addresses), each keyed its own way.
 *
 * Items are numbered from 0 and stay put: the index has no removal, so a
 * caller that reorders its array must drop the index (hindex_free).
 *
 * A zero-initialised struct hindex is an empty index.  Not
 * async-signal-safe (it allocates); thread-safe on distinct indexes.
 */
#ifndef SONDE_HINDEX_H
#define SONDE_HINDEX_H

#include <stddef.h>
#include <stdint.h>

struct hindex {
    uint64_t *slots; /* (hash << 32) | (item + 1); 0 = empty */
    size_t cap;      /* power of two, or 0 */
    size_t n;        /* items indexed */
};

/* Items are numbered 0 .. HINDEX_MAX_ITEMS - 1 (item + 1 fits a slot's
 * 32 low bits, 0 meaning empty). */
#define HINDEX_MAX_ITEMS ((size_t)UINT32_MAX - 1)

/* Nonzero when item (an index into the caller's array, reached through
 * ctx) matches key. */
typedef int (*hindex_eq_fn)(const void *ctx, uint32_t item, const void *key);

/* Hashes for keys: n bytes at p (FNV-1a), or a 64-bit integer such as an
 * id or an address (splitmix64's finalizer).  Pure functions. */
uint32_t hindex_hash_bytes(const void *p, size_t n);
uint32_t hindex_hash_u64(uint64_t x);

/* The item with this hash that eq(ctx, item, key) accepts, or -1. */
int64_t hindex_find(const struct hindex *h, uint32_t hash, hindex_eq_fn eq, const void *ctx,
                    const void *key);

/* Indexes item under hash.  The item must not be indexed already (look it
 * up first).  0, or -ENOMEM (also when item >= HINDEX_MAX_ITEMS) with the
 * index unchanged. */
int hindex_insert(struct hindex *h, uint32_t hash, uint32_t item);

/* Frees the table and leaves an empty index, usable again. */
void hindex_free(struct hindex *h);

#endif
