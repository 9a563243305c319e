/*
 * strtab.h — a string table: distinct strings, each stored once and
 * numbered 0, 1, 2, ... in the order they were first added.
 *
 * Interning is what the pprof builder's string_table needs (equal strings
 * share one index), what the summaries need to merge frames by name and
 * stacks by text, and what the agent's symbolizer needs to hand out one
 * stable copy of each function and file name.  Built on hindex.h.
 *
 * A zero-initialised struct strtab is an empty table.  Each string is its
 * own allocation, so strs[i] stays valid (and at the same address) until
 * strtab_free or strtab_release, however the table grows.  Not
 * async-signal-safe (it allocates); thread-safe on distinct tables.
 */
#ifndef SONDE_STRTAB_H
#define SONDE_STRTAB_H

#include <stddef.h>
#include <stdint.h>

#include "hindex.h"

struct strtab {
    char **strs; /* strs[0 .. n): owned, NUL-terminated, distinct */
    size_t n, cap;
    struct hindex index;
};

/* The index of s in the table, or -1 when it is not there. */
int64_t strtab_find(const struct strtab *t, const char *s);

/* The index of s, adding a copy of it when new (at index n).  -1 on
 * ENOMEM (or HINDEX_MAX_ITEMS strings already), the table unchanged. */
int64_t strtab_intern(struct strtab *t, const char *s);

/* Hands the strings over: returns strs, whose first n entries (n as it
 * was) the caller now owns, and which the caller frees (it may be NULL
 * when the table is empty); leaves an empty table. */
char **strtab_release(struct strtab *t);

/* Frees every string and the table, leaving an empty table. */
void strtab_free(struct strtab *t);

#endif
