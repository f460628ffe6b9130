/*
 * stats.h - percentiles of latency samples, for the benchmarks in bench/.
 */
#ifndef XIO_BENCH_STATS_H
#define XIO_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

/* stats_sort - sort n samples in place, ascending. */
void stats_sort(uint64_t *v, size_t n);

/*
 * stats_percentile - the p-th percentile (0 < p <= 100) of n sorted samples,
 * by the nearest-rank method: the smallest sample that at least p percent of
 * the samples are less than or equal to. Nearest rank rather than
 * interpolation so that every reported value is one that was measured.
 * Returns 0 when n is 0.
 */
uint64_t stats_percentile(const uint64_t *sorted, size_t n, double p);

#endif /* XIO_BENCH_STATS_H */
