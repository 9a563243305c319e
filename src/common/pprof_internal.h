/*
 * pprof_internal.h — what the pprof files share beyond pprof.h; included
 * only by src/common/pprof_*.c, never by the rest of sonde.
 *
 * pprof.h's implementation is three files along its three parts:
 *   pprof_build.c    builder and encoder
 *   pprof_read.c     decoder, validation and the lookup index by id
 *   pprof_summary.c  collapsed stacks, top functions, value formatting
 * The summaries walk samples by location array index (to use per-location
 * tables), which the reader's index answers without a public lookup.
 */
#ifndef SONDE_PPROF_INTERNAL_H
#define SONDE_PPROF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pprof.h"

/* The index in p->pb->location[] of location id; the id must exist (every
 * location id a sample of a decoded profile names does: pprof_decode
 * validated them).  Valid until pprof_profile_free. */
size_t pprof_location_index(const struct pprof_profile *p, uint64_t id);

#endif
