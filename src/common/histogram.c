/*
 * histogram.c — the log-linear latency histogram of histogram.h.
 *
 * Bucket layout (SUB = 2^HISTOGRAM_SUB_BITS = 128):
 *   values 0 .. SUB-1           bucket v                (exact)
 *   values 2^e .. 2^(e+1)-1     buckets (e-6)*SUB + sub, e = 7 .. 63,
 *                               sub = (v >> (e-7)) - SUB, a linear split
 *                               of the power of two into SUB slices
 * so a bucket of the range starting at 2^e is 2^(e-7) wide: at most
 * 1/128 (0.78 %) of any value it holds.  Group 1 (e = 7) is still exact
 * (width 1); the last bucket ends at UINT64_MAX.
 *
 * Used by the load generator (loadgen*.c) in sonded and the CLI; not
 * part of libsonde.so.
 */
#include "common/histogram.h"

#include <string.h>

#define SUB ((uint64_t)1 << HISTOGRAM_SUB_BITS)

static size_t bucket_of(uint64_t v)
{
    if (v < SUB)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* HISTOGRAM_SUB_BITS .. 63 */
    unsigned shift = e - HISTOGRAM_SUB_BITS;
    return ((size_t)(e - HISTOGRAM_SUB_BITS + 1) << HISTOGRAM_SUB_BITS) + (size_t)((v >> shift) - SUB);
}

/* The largest value bucket i holds. */
static uint64_t bucket_upper(size_t i)
{
    if (i < SUB)
        return i;
    size_t group = i >> HISTOGRAM_SUB_BITS; /* 1 .. 57 */
    unsigned shift = (unsigned)group - 1;
    uint64_t lower = (SUB + (i & (SUB - 1))) << shift;
    return lower + (((uint64_t)1 << shift) - 1);
}

void histogram_reset(struct histogram *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void histogram_add(struct histogram *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    h->buckets[bucket_of(v)] += n;
    h->count += n;
    h->sum += (long double)v * (long double)n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void histogram_merge(struct histogram *dst, const struct histogram *src)
{
    if (src->count == 0)
        return;
    for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t histogram_quantile(const struct histogram *h, double q)
{
    if (h->count == 0)
        return 0;
    if (!(q > 0)) /* also NaN */
        return h->min;
    if (q >= 1)
        return h->max;
    double r = q * (double)h->count; /* double, as callers who check compute it */
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++; /* ceil */
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = bucket_upper(i);
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

double histogram_mean(const struct histogram *h)
{
    if (h->count == 0)
        return 0;
    return (double)(h->sum / (long double)h->count);
}
