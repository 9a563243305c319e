/*
 * views.h — what sonded computes from stored profiles: flame graphs,
 * top functions and collapsed stacks of one session, merged over many
 * sessions, and the difference of two selections.
 *
 * Ingest turns each uploaded pprof into a *flame tree blob*: the profile's
 * call tree (root → callers → callees, inline frames expanded, frames
 * named as in pprof.h's top: function name, else "module+0xOFF", else
 * "0xADDR") with one value per sample type at each node, plus the
 * profile's sample types and a table of the frame names it uses.  Merging
 * N sessions then walks N small trees, never re-parsing a pprof: each
 * node maps (merged parent, frame name) to a merged node through a hash
 * table; names are interned once per blob.  The blob format is private to
 * views_blob.c (views.c reads it through views_internal.h), versioned,
 * and checked on load (a bad blob is -EINVAL, never a crash): it is not
 * trusted more than an upload.
 *
 * Label filters (thread=worker-1, endpoint=/api/x) need per-sample
 * labels that the tree does not keep: with a filter, callers feed the
 * original pprofs instead (flame_merge_add_pprof) — slower, same result.
 *
 * Thread-safety: objects are not shared; distinct objects may be used
 * from distinct threads.  Errors: 0 or a negative errno code with a
 * message in err where one is taken.
 */
#ifndef SONDE_VIEWS_H
#define SONDE_VIEWS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/pprof.h"

/* Largest blob flame_tree_build produces / flame_merge_add_blob reads. */
#define FLAME_BLOB_MAX ((size_t)64 << 20)
/* Most nodes one merged tree may hold (memory bound); beyond it the
 * merge answers -E2BIG. */
#define FLAME_MERGE_MAX_NODES ((size_t)4 << 20)

/* Builds the flame tree blob of a decoded profile (*blob malloc'ed).
 * 0, -ENOMEM, -E2BIG (would exceed FLAME_BLOB_MAX). */
int flame_tree_build(const struct pprof_profile *p, uint8_t **blob, size_t *len, char *err,
                     size_t errlen);

/* A label filter: only samples carrying label key with string value. */
struct flame_label {
    const char *key;
    const char *value;
};

struct flame_merge;

/* A new empty merge of sample type `type` ("cpu", "wall", "samples"; the
 * pprof sample type name).  type NULL or "": the default type of the
 * first profile added (pprof's rule: default_sample_type, else the last
 * type).  NULL on ENOMEM. */
struct flame_merge *flame_merge_new(const char *type);
void flame_merge_free(struct flame_merge *m);

/* Adds one session's blob.  A profile without the merge's sample type is
 * skipped and counted (flame_merge_stats).  0, -EINVAL (corrupt blob,
 * message in err), -ENOMEM, -E2BIG. */
int flame_merge_add_blob(struct flame_merge *m, const void *blob, size_t len, char *err,
                         size_t errlen);
/* Adds a decoded profile, keeping only samples that carry every label of
 * labels[0..nlabels) (string labels, exact match).  Same results as
 * add_blob when nlabels == 0. */
int flame_merge_add_pprof(struct flame_merge *m, const struct pprof_profile *p,
                          const struct flame_label *labels, size_t nlabels, char *err,
                          size_t errlen);

struct flame_merge_stats {
    size_t profiles; /* added with the sample type */
    size_t skipped;  /* without it */
    size_t nodes;    /* in the merged tree, root included */
    int64_t total;   /* sum of values */
    const char *type, *unit; /* chosen sample type; "" before any add */
};
void flame_merge_stats(const struct flame_merge *m, struct flame_merge_stats *out);

/* The merged tree as JSON, for d3-flame-graph and the console:
 *   {"name":"root","value":TOTAL,"self":0,"children":[
 *      {"name":"main","value":V,"self":S,"children":[…]}, …]}
 * value = inclusive, self = exclusive; children sorted by name; nodes
 * with value 0 omitted.  New reference (NULL on ENOMEM). */
json_t *flame_merge_tree_json(const struct flame_merge *m);

/* Top functions: [{"name", "self", "total"}, …] sorted by self desc,
 * total desc, name; at most limit rows (0 = all).  total counts a
 * function once per stack however deep its recursion. */
json_t *flame_merge_top_json(const struct flame_merge *m, size_t limit);

/* Collapsed stacks "root;…;leaf VALUE\n" (flamegraph.pl), one line per
 * node with self > 0, sorted by stack.  *text malloc'ed, NUL-terminated.
 * 0 or -ENOMEM. */
int flame_merge_collapsed(const struct flame_merge *m, char **text, size_t *len);

/* The difference of two merges (comparison minus base), per frame:
 *   {"name":"root","base":B,"comparison":C,"delta":C-B,
 *    "base_self":…,"comparison_self":…,"children":[…]}
 * over the union of both trees (a node missing on one side counts 0);
 * children sorted by name.  Both must have the same sample type (else
 * NULL with errno EINVAL).  New reference. */
json_t *flame_diff_tree_json(const struct flame_merge *base, const struct flame_merge *cmp);
/* Per function: [{"name","base_self","comparison_self","delta_self",
 * "base_total","comparison_total","delta_total"}, …] sorted by
 * |delta_self| desc, then name; at most limit rows (0 = all). */
json_t *flame_diff_top_json(const struct flame_merge *base, const struct flame_merge *cmp,
                            size_t limit);

#endif
