/*
 * array.h — growable arrays: the one capacity-doubling routine behind the
 * "pointer + count + capacity" arrays of the pprof code, the strtab and
 * the agent's exporter and symbolizer.
 *
 * Not async-signal-safe (it allocates); thread-safe on distinct arrays.
 */
#ifndef SONDE_ARRAY_H
#define SONDE_ARRAY_H

#include <stddef.h>

/* Makes the array at *arr (a pointer variable, passed by address; elements
 * of size bytes; capacity *cap elements) hold at least need elements,
 * doubling from 16.  Elements already there keep their values; *arr may
 * move.  0, or -ENOMEM with *arr and *cap unchanged (also when the size
 * would overflow). */
int array_grow(void *arr, size_t *cap, size_t need, size_t size);

#endif
