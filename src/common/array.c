/*
 * array.c — growable arrays (array.h).
 *
 * Capacities double so that appending n elements one by one costs O(n)
 * copies in all; the doubling stops at SIZE_MAX / 2 / size so that
 * ncap * size can never overflow.
 */
#include "array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int array_grow(void *arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / size)
            return -ENOMEM;
        ncap *= 2;
    }
    void *p = realloc(*(void **)arr, ncap * size);
    if (!p)
        return -ENOMEM;
    *(void **)arr = p;
    *cap = ncap;
    return 0;
}
