/*
 * stats.c - percentiles of latency samples.
 */
#include "stats.h"

#include <stdlib.h>

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

void stats_sort(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
}

uint64_t stats_percentile(const uint64_t *sorted, size_t n, double p)
{
	double x;
	size_t rank;

	if (n == 0)
		return 0;
	/* Nearest rank is ceil(p/100 * n), 1-based (ceil by hand, to keep
	 * libm out); clamp for p outside (0, 100]. */
	x = p / 100.0 * (double)n;
	rank = x > 0 ? (size_t)x : 0;
	if ((double)rank < x)
		rank++;
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}
