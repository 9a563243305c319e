/*
 * histogram.h — a log-linear histogram of non-negative 64-bit values
 * (latencies in ns), HdrHistogram-style: values below 2^SUB_BITS are
 * counted exactly; above, each power of two is split into 2^SUB_BITS
 * linear sub-buckets, so any recorded value is known to within
 * 1/2^SUB_BITS of itself (SUB_BITS 7: 0.78 %, the "exact to 1 %" of
 * percentiles).  Fixed memory (HISTOGRAM_BUCKETS counters), no allocation
 * after histogram_new; merging two is adding counters, so per-thread
 * histograms and per-second ones combine freely.
 *
 * Used by the load generator (loadgen.h) in sonded and the CLI.
 * Thread-safety: none inside (one writer; merge under the caller's lock).
 * Not signal-safe.
 */
#ifndef SONDE_HISTOGRAM_H
#define SONDE_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_SUB_BITS 7
#define HISTOGRAM_BUCKETS ((64 - HISTOGRAM_SUB_BITS + 1) << HISTOGRAM_SUB_BITS)

struct histogram {
    uint64_t count;  /* values recorded */
    uint64_t min, max; /* exact; min = UINT64_MAX while empty */
    long double sum; /* for the mean */
    uint64_t buckets[HISTOGRAM_BUCKETS];
};

/* Empties h (it may be a static or stack object: no _new needed). */
void histogram_reset(struct histogram *h);
/* Records value v (n times). */
void histogram_add(struct histogram *h, uint64_t v, uint64_t n);
/* Adds every count of src into dst. */
void histogram_merge(struct histogram *dst, const struct histogram *src);
/* The value at quantile q in [0, 1] (0.99 = p99): the upper bound of the
 * bucket holding the ceil(q * count)-th smallest value, clamped to
 * [min, max] — within 1/2^HISTOGRAM_SUB_BITS of the true value.  q = 1
 * gives max exactly; 0 when empty. */
uint64_t histogram_quantile(const struct histogram *h, double q);
/* Mean (0 when empty). */
double histogram_mean(const struct histogram *h);

#endif
