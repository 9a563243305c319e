/*
 * pprof.h — building, encoding, decoding and summarizing pprof profiles
 * (gzipped google/pprof profile.proto), shared by the agent (export), the
 * CLI (record, top, collapse) and the server (upload, views).
 *
 * Three parts:
 *
 *  - The builder collects a profile piece by piece — string table with
 *    deduplication, sample types, mappings, functions (deduplicated),
 *    locations, samples with labels — and encodes it to gzipped bytes.
 *    Failures are sticky: an id-returning call answers 0 on failure and the
 *    first error is reported again by pprof_builder_encode(), so a caller
 *    may add everything and check once.
 *
 *  - The reader decodes gzipped or raw bytes from anywhere (files, the
 *    network) and validates them: sizes are bounded, and every string
 *    index, mapping, location and function id that is referenced exists,
 *    and each sample has one value per sample type.  A profile that passes
 *    can be walked without further checks.
 *
 *  - Summaries of a decoded profile: top functions (flat, cum) and
 *    collapsed stacks in the flamegraph.pl format.  The collapsed-stack
 *    accumulator is public so that other producers (export.c) emit exactly
 *    the same format.
 *
 * One file implements each part: pprof_build.c, pprof_read.c and
 * pprof_summary.c (pprof_internal.h is what they share, nothing more).
 *
 * Thread-safety: objects are not shared; distinct objects may be used from
 * distinct threads.  Nothing here is async-signal-safe (it allocates).
 * Errors: 0 or a negative errno-style code; where an err buffer is taken,
 * it receives a human message naming the problem.
 */
#ifndef SONDE_PPROF_H
#define SONDE_PPROF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "profile.pb-c.h"

/* Largest decompressed (or raw) profile pprof_decode accepts. */
#define PPROF_MAX_DECODED ((size_t)256 << 20)

/* ------------------------------------------------------------------ */
/* Builder                                                             */

struct pprof_builder;

/* One source line of a location: pprof order is innermost first, so
 * lines[0] is the leaf (most inlined) frame and the last line is the
 * function the code physically belongs to. */
struct pprof_line {
    uint64_t function_id; /* from pprof_builder_function(); 0 = none */
    int64_t line;         /* 0 = unknown */
};

/* A sample label: a string label when str != NULL, else a numeric one
 * (num, in num_unit; num_unit may be NULL). */
struct pprof_label {
    const char *key;
    const char *str;
    int64_t num;
    const char *num_unit;
};

/* Mapping flags (pprof_builder_mapping_flags). */
#define PPROF_HAS_FUNCTIONS 1u
#define PPROF_HAS_FILENAMES 2u
#define PPROF_HAS_LINE_NUMBERS 4u
#define PPROF_HAS_INLINE_FRAMES 8u

/* A new empty builder (string table holds ""); NULL on ENOMEM. */
struct pprof_builder *pprof_builder_new(void);
/* Frees the builder and everything it holds.  NULL is a no-op. */
void pprof_builder_free(struct pprof_builder *b);

/* Index of s in the string table, adding it if new (s NULL means "").
 * Returns -1 on ENOMEM (sticky).  The builder keeps its own copy. */
int64_t pprof_builder_string(struct pprof_builder *b, const char *s);

/* Appends a sample type ("cpu", "nanoseconds").  Every sample must carry
 * one value per sample type, so declare all types before the first
 * sample.  0, -EINVAL (after samples were added) or -ENOMEM. */
int pprof_builder_sample_type(struct pprof_builder *b, const char *type, const char *unit);

/* Period type and period (e.g. "cpu", "nanoseconds", 10000000). */
int pprof_builder_period(struct pprof_builder *b, const char *type, const char *unit,
                         int64_t period);
/* The sample type shown by default (a type name given to
 * pprof_builder_sample_type). */
int pprof_builder_default_sample_type(struct pprof_builder *b, const char *type);
void pprof_builder_time(struct pprof_builder *b, int64_t time_nanos, int64_t duration_nanos);
int pprof_builder_comment(struct pprof_builder *b, const char *comment);

/* Adds a mapping: [start, limit) mapped from file offset `offset` of
 * filename (may be NULL), build_id as hex (may be NULL or "").  Returns its
 * id (>= 1), or 0 on ENOMEM (sticky). */
uint64_t pprof_builder_mapping(struct pprof_builder *b, uint64_t start, uint64_t limit,
                               uint64_t offset, const char *filename, const char *build_id);
/* Sets the has_* flags of mapping id (PPROF_HAS_* bits). */
void pprof_builder_mapping_flags(struct pprof_builder *b, uint64_t mapping_id, unsigned flags);

/* Returns the id (>= 1) of the function with these fields, adding it if
 * new: equal arguments give the same id.  Strings may be NULL ("").
 * 0 on ENOMEM (sticky). */
uint64_t pprof_builder_function(struct pprof_builder *b, const char *name,
                                const char *system_name, const char *filename,
                                int64_t start_line);

/* Adds a location at address in mapping_id (0 = none) with n lines,
 * innermost first (lines is copied).  Every id must exist already.
 * Returns the new id (>= 1); 0 on ENOMEM or an unknown id (sticky). */
uint64_t pprof_builder_location(struct pprof_builder *b, uint64_t mapping_id, uint64_t address,
                                const struct pprof_line *lines, size_t n);

/* Adds a sample: n location ids, leaf first; one value per sample type;
 * nlabels labels.  Everything is copied.  0, -EINVAL (unknown location id,
 * no sample types declared) or -ENOMEM; failures are sticky. */
int pprof_builder_sample(struct pprof_builder *b, const uint64_t *loc_ids, size_t n,
                         const int64_t *values, const struct pprof_label *labels,
                         size_t nlabels);

/* Encodes the profile and gzips it into a malloc'ed buffer (*gz, *len),
 * which the caller frees.  Returns the first sticky error of the builder
 * if any, else 0 or -ENOMEM.  The builder stays usable. */
int pprof_builder_encode(struct pprof_builder *b, uint8_t **gz, size_t *len);
/* The same without gzip (raw profile.proto bytes). */
int pprof_builder_encode_raw(struct pprof_builder *b, uint8_t **out, size_t *len);

/* ------------------------------------------------------------------ */
/* Reader                                                              */

struct pprof_index; /* internal: lookup tables by id */

/* A decoded, validated profile.  pb is the protobuf-c message: every index
 * and id it contains is valid (see pprof_decode).  Read-only. */
struct pprof_profile {
    const Perftools__Profiles__Profile *pb;
    struct pprof_index *index;
};

/* Inflates the gzip data in[0..len) (one member, or several back to back
 * as RFC 1952 allows; nothing after the last) into a malloc'ed buffer
 * (*out, *outlen; the caller frees it) of at most max bytes.  0, -EFBIG
 * (it inflates past max), -EINVAL (corrupt, truncated, or followed by
 * garbage) or -ENOMEM, with a message naming the problem in err. */
int pprof_gunzip(const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *outlen,
                 char *err, size_t errlen);

/* Decodes len bytes at buf, gzipped (detected by the gzip magic) or raw.
 * Refuses more than PPROF_MAX_DECODED bytes after decompression and bounds
 * the memory spent decoding.  Validates:
 *   - string_table[0] == "" and every string index is in the table;
 *   - mapping, location and function ids are nonzero and unique;
 *   - every mapping id a location names, function id a line names and
 *     location id a sample names exists;
 *   - each sample has exactly one value per sample type.
 * Returns 0 and *out (free with pprof_profile_free), or -EINVAL (corrupt,
 * too large) / -ENOMEM, with a message naming the problem in err. */
int pprof_decode(const uint8_t *buf, size_t len, struct pprof_profile **out, char *err,
                 size_t errlen);

/* Reads and decodes a file (at most PPROF_MAX_DECODED bytes); the message
 * names the file.  -ENOENT and friends for I/O errors, as pprof_decode
 * otherwise. */
int pprof_load_file(const char *path, struct pprof_profile **out, char *err, size_t errlen);

void pprof_profile_free(struct pprof_profile *p);

/* Lookups; NULL when the id is unknown.  Valid until pprof_profile_free. */
const Perftools__Profiles__Mapping *pprof_mapping(const struct pprof_profile *p, uint64_t id);
const Perftools__Profiles__Location *pprof_location(const struct pprof_profile *p, uint64_t id);
const Perftools__Profiles__Function *pprof_function(const struct pprof_profile *p, uint64_t id);
/* String idx of the table; "" when out of range. */
const char *pprof_string(const struct pprof_profile *p, int64_t idx);

/* The sample index for name: a sample type name ("cpu"), or a decimal
 * index.  name NULL or "": the default (default_sample_type if set, else
 * the last type, as go tool pprof does).  -1 when there is no such type. */
int pprof_sample_index(const struct pprof_profile *p, const char *name);

/* The name of line j of location l (j < l->n_line; any j when n_line is
 * 0): the function's name, else its system name, else
 * "<mapping basename>+0x<offset>", else "0x<address>" — the one naming
 * rule of every view (top, collapsed, the server's flame trees).  A
 * synthesized name is written into buf (len bytes; cut to fit, 512 hold
 * any real one); the result is valid while both the profile and buf
 * live. */
const char *pprof_frame_name(const struct pprof_profile *p, const Perftools__Profiles__Location *l,
                             size_t j, char *buf, size_t len);

/* ------------------------------------------------------------------ */
/* Collapsed stacks ("root;caller;leaf VALUE", flamegraph.pl)          */

struct pprof_stack_line {
    char *stack; /* frames root first, joined with ';' */
    int64_t value;
};

/* An accumulator of collapsed stacks: equal stacks are merged. */
struct pprof_collapsed {
    struct pprof_stack_line *lines; /* sorted by stack after _finish */
    size_t n;
    struct collapsed_state *state; /* internal */
};

struct pprof_collapsed *pprof_collapsed_new(void);
void pprof_collapsed_free(struct pprof_collapsed *c);
/* Adds value to the stack made of frames[0..n) given ROOT FIRST.  Frame
 * names are sanitized (';' and line breaks become '_', "" becomes "?").
 * 0 or -ENOMEM. */
int pprof_collapsed_add(struct pprof_collapsed *c, const char *const *frames, size_t n,
                        int64_t value);
/* Sorts lines by stack (strcmp) and drops lines whose value is 0. */
void pprof_collapsed_finish(struct pprof_collapsed *c);
/* Writes "stack value\n" per line.  0 or -EIO. */
int pprof_collapsed_write(const struct pprof_collapsed *c, FILE *f);

/* Collapsed stacks of a decoded profile at sample index si: locations leaf
 * last, inline frames expanded, merged and sorted.  0, -EINVAL (bad si),
 * -ENOMEM.  Free with pprof_collapsed_free. */
int pprof_collapse(const struct pprof_profile *p, int si, struct pprof_collapsed **out);

/* ------------------------------------------------------------------ */
/* Top functions                                                       */

struct pprof_top_row {
    const char *name; /* owned by the pprof_top */
    int64_t flat;     /* value where the function is the leaf frame */
    int64_t cum;      /* value of samples that contain the function (once
                         per sample, however deep the recursion) */
};

struct pprof_top {
    struct pprof_top_row *rows; /* sorted: flat desc, cum desc, name */
    size_t n;
    int64_t total;     /* sum of |value| over all samples */
    int64_t min_value; /* smallest nonzero |value| of a sample: picks the
                          display unit, as go tool pprof -unit=minimum */
    const char *type, *unit; /* of the sample index; borrowed from the
                                profile, valid while it lives */
};

/* Computes flat and cum per function name at sample index si.  A frame
 * without function name is named "<mapping basename>+0x<offset>" (or
 * "0x<address>" without mapping).  0, -EINVAL (bad si) or -ENOMEM. */
int pprof_top_compute(const struct pprof_profile *p, int si, struct pprof_top **out);
void pprof_top_free(struct pprof_top *t);

/* Formats value in unit the way go tool pprof does ("1.50s", "250ms",
 * "12MB", "42") into buf, in the largest unit in which value is >= 1. */
void pprof_format_value(int64_t value, const char *unit, char *buf, size_t len);
/* The same in the unit that ref would get, so that a table uses one unit
 * ("1958.36ms" next to "10ms"). */
void pprof_format_scaled(int64_t value, const char *unit, int64_t ref, char *buf, size_t len);

#endif
