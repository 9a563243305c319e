/*
 * unwind_table.h — builds the compact unwind rows of one loaded module from
 * its .eh_frame (found through PT_GNU_EH_FRAME / .eh_frame_hdr), outside
 * the signal handler.  Reads the module's mapped memory, so the caller must
 * hold it loaded (dl_iterate_phdr callback or the dlopen hook).
 */
#ifndef SONDE_UNWIND_TABLE_H
#define SONDE_UNWIND_TABLE_H

#include <link.h>
#include <stddef.h>

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

#endif
