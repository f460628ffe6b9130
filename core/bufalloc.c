/*
 * bufalloc.c - circular chunk allocator; see include/xio/bufalloc.h.
 */
#include "xio/bufalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int xio_bufalloc_init(struct xio_bufalloc *a, uint32_t nchunks)
{
	a->n = nchunks;
	a->head = a->tail = a->used = 0;
	a->len = calloc(nchunks, sizeof(*a->len));
	return a->len ? 0 : -ENOMEM;
}

static int resize_len(struct xio_bufalloc *a, uint32_t nchunks)
{
	uint16_t *l = realloc(a->len, (size_t)nchunks * sizeof(*l));
	if (!l)
		return -ENOMEM;
	if (nchunks > a->n)
		memset(l + a->n, 0, (size_t)(nchunks - a->n) * sizeof(*l));
	a->len = l;
	return 0;
}

int xio_bufalloc_grow(struct xio_bufalloc *a, uint32_t nchunks)
{
	if (nchunks <= a->n)
		return 0;
	uint32_t old = a->n;
	if (a->used == 0) {
		a->head = a->tail = 0;
	} else if (a->head == 0) {
		/* What is out ends exactly at the end: [tail, n). The next
		 * allocation goes right after it, into the new chunks. */
	} else if (a->tail >= a->head) {
		return 0; /* out: [tail, n) then [0, head): wraps */
	}
	int r = resize_len(a, nchunks);
	if (r < 0)
		return r;
	if (a->used && a->head == 0)
		a->head = old;
	a->n = nchunks;
	return 1;
}

int xio_bufalloc_reset(struct xio_bufalloc *a, uint32_t nchunks)
{
	if (a->used)
		return -EBUSY;
	int r = resize_len(a, nchunks);
	if (r < 0)
		return r;
	memset(a->len, 0, (size_t)nchunks * sizeof(*a->len));
	a->n = nchunks;
	a->head = a->tail = 0;
	return 0;
}

void xio_bufalloc_fini(struct xio_bufalloc *a)
{
	free(a->len);
	a->len = NULL;
}

uint32_t xio_bufalloc_max_contig(const struct xio_bufalloc *a)
{
	uint32_t free_chunks = a->n - a->used;
	if (a->used == 0)
		return a->n < 0x7fff ? a->n : 0x7fff; /* get() starts over at 0 */
	if (free_chunks == 0)
		return 0;
	/* Free space is [head, tail) when it does not wrap; otherwise
	 * [head, n) then [0, tail), and only one of the two can be used. */
	if (a->head < a->tail)
		return free_chunks;
	uint32_t at_end = a->n - a->head, at_start = a->tail;
	return at_end > at_start ? at_end : at_start;
}

int64_t xio_bufalloc_get(struct xio_bufalloc *a, uint32_t k)
{
	if (k == 0 || k > a->n || k > 0x7fff)
		return -EMSGSIZE;
	if (a->used == 0)
		a->head = a->tail = 0; /* empty: start over, nothing to skip */
	if (a->used + k > a->n)
		return -ENOBUFS;
	if (a->head + k > a->n) {
		/* Does not fit before the end: skip the rest of the area,
		 * provided the allocation then fits at the start. */
		uint32_t skip = a->n - a->head;
		if (a->used + skip + k > a->n)
			return -ENOBUFS;
		a->len[a->head] = (uint16_t)(skip | XIO_BA_FREED);
		a->used += skip;
		a->head = 0;
	}
	uint32_t start = a->head;
	a->len[start] = (uint16_t)k;
	a->used += k;
	a->head = start + k == a->n ? 0 : start + k;
	return start;
}

int xio_bufalloc_put(struct xio_bufalloc *a, uint32_t chunk)
{
	if (chunk >= a->n)
		return -EPROTO;
	uint16_t l = a->len[chunk];
	if (l == 0 || (l & XIO_BA_FREED))
		return -EPROTO; /* not an allocation start, or already back */
	a->len[chunk] = (uint16_t)(l | XIO_BA_FREED);
	/* Move the tail over everything that is back, oldest first. */
	while (a->used > 0 && (a->len[a->tail] & XIO_BA_FREED)) {
		uint32_t k = a->len[a->tail] & ~XIO_BA_FREED;
		a->len[a->tail] = 0;
		a->used -= k;
		a->tail = a->tail + k >= a->n ? 0 : a->tail + k;
	}
	return l;
}
