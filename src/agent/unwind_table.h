/*
 * unwind_table.h — builds the compact unwind rows of one loaded module from
 * its .eh_frame (read by eh_frame.c), and the index the walker searches
 * them through, outside the signal handler.  The row and index formats are
 * in sigsafe/unwind.h.  Building from a module reads its mapped memory, so
 * the caller must hold it loaded (a dl_iterate_phdr callback).
 */
#ifndef SONDE_UNWIND_TABLE_H
#define SONDE_UNWIND_TABLE_H

#include <link.h>
#include <stddef.h>
#include <stdint.h>

#include "sigsafe/unwind.h"

/* Parses the module described by info and returns a malloc'ed array of rows
 * sorted by pc_off in *rows (free with free()).  A module with no .eh_frame
 * gives 0 rows and returns 0.  -ENOMEM, or -EINVAL for a malformed
 * .eh_frame (rows parsed before the error are kept only if consistent). */
int unwind_table_build(const struct dl_phdr_info *info, struct unwind_row **rows, size_t *nrows);

/* The same from a raw .eh_frame section image, for tests: eh_frame points at
 * the section's bytes as loaded at address eh_frame_addr, bias is the load
 * bias to subtract from pc values. */
int unwind_table_from_eh_frame(const uint8_t *eh_frame, size_t len, uintptr_t eh_frame_addr,
                               uintptr_t bias, struct unwind_row **rows, size_t *nrows);

/* Builds the index over rows (sorted, strictly increasing pc_off, nrows <=
 * UINT32_MAX) described in sigsafe/unwind.h: a malloc'ed array in *index
 * (free with free()) of *nindex >= 2 entries.  *index is NULL and the
 * return 0 when there are no rows, or when the rows are so sparse that the
 * index would be larger than they are (the walker then searches all
 * rows).  0 or -ENOMEM. */
int unwind_table_index(const struct unwind_row *rows, size_t nrows, uint32_t **index,
                       uint32_t *nindex);

#endif
