/*
 * bufalloc.h - the sender's allocator for its buffer area.
 *
 * The buffer area of a direction is n chunks. Messages are mostly consumed
 * in order, so allocation is circular: a head that moves forward, and a tail
 * that follows as the oldest allocations come back. A message that does not
 * fit before the end of the area skips the remainder (counted as used and
 * given back with the tail). Frees may arrive out of order (zero-copy
 * receivers release as they like); they are marked and the tail catches up.
 *
 * All state is private to the sending process: the receiver only returns
 * offsets, and every returned offset is checked against this state, so a
 * hostile receiver cannot make the sender hand out a chunk twice.
 */
#ifndef XIO_CORE_BUFALLOC_H
#define XIO_CORE_BUFALLOC_H

#include <stdint.h>

struct xio_bufalloc {
	uint32_t n;     /* chunks in the area */
	uint32_t head;  /* next chunk to hand out, 0..n-1 */
	uint32_t tail;  /* oldest chunk still out, 0..n-1 */
	uint32_t used;  /* chunks out, including skipped ones */
	uint16_t *len;  /* per start chunk: length in chunks, XIO_BA_FREED once back */
};

#define XIO_BA_FREED 0x8000u

/* Returns 0 or -ENOMEM. */
int xio_bufalloc_init(struct xio_bufalloc *a, uint32_t nchunks);
void xio_bufalloc_fini(struct xio_bufalloc *a);

/* Allocate k contiguous chunks. Returns the first chunk index, or -ENOBUFS
 * when they do not fit now, -EMSGSIZE when they never can. */
int64_t xio_bufalloc_get(struct xio_bufalloc *a, uint32_t k);

/* The largest k that xio_bufalloc_get() would grant now. */
uint32_t xio_bufalloc_max_contig(const struct xio_bufalloc *a);

/* Give back the allocation starting at chunk. Returns its length in chunks,
 * or -EPROTO if chunk is not the start of an allocation that is out. */
int xio_bufalloc_put(struct xio_bufalloc *a, uint32_t chunk);

/*
 * The area follows the traffic (chan.c, "window"): the allocator hands out
 * only the first n chunks, n growing while the connection is kept full and
 * starting over small once it has been idle. The length table grows and
 * shrinks with n, so an idle connection holds a small one.
 * xio_bufalloc_grow: n becomes nchunks (> n) if what is out does not wrap
 *   around the end now (the new chunks then simply follow the free space
 *   at the end); 1 if grown, 0 if not now (try at a later full), -ENOMEM.
 * xio_bufalloc_reset: nothing is out: start over with nchunks. 0, -EBUSY
 *   (something is out) or -ENOMEM.
 */
int xio_bufalloc_grow(struct xio_bufalloc *a, uint32_t nchunks);
int xio_bufalloc_reset(struct xio_bufalloc *a, uint32_t nchunks);

/* Chunks out now. */
static inline uint32_t xio_bufalloc_used(const struct xio_bufalloc *a)
{
	return a->used;
}

#endif /* XIO_CORE_BUFALLOC_H */
