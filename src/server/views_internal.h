/*
 * views_internal.h — what views_blob.c (building flame trees, the blob
 * format) and views.c (merging, the outputs) share, and nothing else: the
 * tree of one pprof, a decoded blob ready to merge, and a few small
 * helpers.  Private to those two files; views.h is the contract.
 */
#ifndef SONDE_VIEWS_INTERNAL_H
#define SONDE_VIEWS_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/hindex.h"
#include "common/strtab.h"
#include "server/views.h"

#define NONE UINT32_MAX

static inline void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Values come from uploads: sums saturate instead of overflowing. */
static inline int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* A tree edge: the node named `name` under node `parent`. */
struct edge {
    uint32_t parent, name;
};

static inline uint32_t edge_hash(uint32_t parent, uint32_t name)
{
    return hindex_hash_u64((uint64_t)parent << 32 | name);
}

/* Does (type, unit) name the sample type (want_type, want_unit)?
 * want_unit NULL: any unit.  A type of another unit is another type
 * ("cpu" in samples vs in nanoseconds cannot add up). */
static inline bool sample_type_is(const char *want_type, const char *want_unit, const char *type,
                                  size_t tlen, const char *unit, size_t ulen)
{
    return strlen(want_type) == tlen && !memcmp(want_type, type, tlen) &&
           (!want_unit || (strlen(want_unit) == ulen && !memcmp(want_unit, unit, ulen)));
}

/* The call tree of one pprof.  Node 0 is the root (parent NONE);
 * values[i * width + k] is node i's self value of column k.  Names are
 * the strtab's. */
struct ptree {
    struct strtab names;
    struct edge *edges;
    int64_t *values;
    size_t n, edgecap, valuecap, width;
    struct hindex index; /* (parent, name) → node */
};

/* The call tree of p into *t: every sample type (si < 0) or only column
 * si, samples filtered by labels[0..nlabels).  Samples without locations
 * or without a nonzero value are left out, as pprof_collapse does.
 * 0, -ENOMEM, -E2BIG (over FLAME_MERGE_MAX_NODES) with a message in err;
 * on error *t holds nothing to free. */
int flame_ptree_build(const struct pprof_profile *p, int si, const struct flame_label *labels,
                      size_t nlabels, struct ptree *t, char *err, size_t errlen);
void flame_ptree_free(struct ptree *t);

/* One tree to merge, borrowed: a decoded blob or a ptree.  Node 0 is the
 * root, parent < child; value[i * stride] is node i's self value. */
struct source {
    size_t nnames, n, stride;
    const char *const *name;
    const uint32_t *namelen;
    const struct edge *edges;
    const int64_t *value;
};

/* A string of len bytes, not NUL-terminated. */
struct name_key {
    const char *s;
    size_t len;
};

/* Where flame_blob_decode puts a blob's names, edges and values: arrays
 * reused from one blob to the next (sizes: their caps).  Zeroed is
 * empty. */
struct flame_blob_scratch {
    const char **sname;
    uint32_t *slen;
    struct edge *edges;
    int64_t *values;
    size_t snamecap, slencap, edgecap, valuecap;
};

void flame_blob_scratch_free(struct flame_blob_scratch *sc);

/* Checks the whole blob b[0..len) and decodes it into sc as *s (which
 * borrows sc and b until the next decode), keeping the value column *col
 * of sample type (want_type, want_unit) — the blob's default type when
 * want_type is NULL — or -1 when the blob lacks it (the nodes are still
 * checked); *type and *unit name that column, borrowing b.  0, -EINVAL,
 * -E2BIG, -ENOMEM, with a message in err. */
int flame_blob_decode(struct flame_blob_scratch *sc, const char *want_type, const char *want_unit,
                      const uint8_t *b, size_t len, struct source *s, int64_t *col,
                      struct name_key *type, struct name_key *unit, char *err, size_t errlen);

#endif
