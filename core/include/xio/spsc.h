/*
 * spsc.h - single-producer, single-consumer operations on an rte_ring that
 * lives in memory shared with an untrusted peer.
 *
 * The rings stay in rte_ring's format (placed with rte_ring_init, so
 * DPDK's tools read them), but this process does not use DPDK's inline
 * enqueue and dequeue on them: those load the ring's mask and size from
 * the shared header, and load this side's own index back from it, more
 * than once per call. A peer that rewrites the header between two of
 * those loads steers our accesses outside the ring (docs/design.md, "What
 * a peer can do"), and one that moves our own index makes us see entries
 * that are not there. Here:
 *   - the mask and capacity are this process's own copies, computed from
 *     the parameters the monitor sent;
 *   - this side's index is kept in private memory and only written to the
 *     ring (head and tail both, as DPDK's SP/SC paths leave them);
 *   - the peer's index is loaded once per call, and a distance from ours
 *     larger than the capacity is a protocol error (-EPROTO).
 * Memory order as in DPDK's C11 ring: the producer writes the slots, then
 * stores prod.tail with release; the consumer loads prod.tail with
 * acquire, reads the slots, then stores cons.tail with release, which the
 * producer's acquire load of cons.tail pairs with before it reuses them.
 */
#ifndef XIO_CORE_SPSC_H
#define XIO_CORE_SPSC_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <rte_ring.h>

/* One side of one ring, as this process sees it. The ring pointer and the
 * constants are private, computed from trusted parameters; so is mine. */
struct xio_spsc {
	struct rte_ring *r; /* the header, in shared memory */
	uint32_t mask;      /* slots - 1 */
	uint32_t capacity;  /* slots - 1 (rte_ring_init without RING_F_EXACT_SZ) */
	uint32_t esize;     /* bytes of one entry */
	uint32_t *mine;     /* this side's index (prod of a producer, cons of a consumer) */
};

static inline char *xio_spsc_slot(const struct xio_spsc *q, uint32_t i)
{
	return (char *)(q->r + 1) + (size_t)(i & q->mask) * q->esize;
}

/* Entries the consumer may take now: 0..capacity, or -EPROTO. */
static inline int64_t xio_spsc_count(const struct xio_spsc *q)
{
	uint32_t prod = __atomic_load_n(&q->r->prod.tail, __ATOMIC_ACQUIRE);
	uint32_t n = prod - *q->mine;
	return n > q->capacity ? -EPROTO : (int64_t)n;
}

/* Producer: add up to n entries (all or none if bulk). Returns the count
 * added, or -EPROTO if the consumer's index is impossible. */
static inline int64_t xio_spsc_enqueue(const struct xio_spsc *q, const void *src, uint32_t n,
				       int bulk)
{
	uint32_t cons = __atomic_load_n(&q->r->cons.tail, __ATOMIC_ACQUIRE);
	uint32_t prod = *q->mine, used = prod - cons;
	if (used > q->capacity)
		return -EPROTO;
	uint32_t room = q->capacity - used;
	if (n > room)
		n = bulk ? 0 : room;
	for (uint32_t i = 0; i < n; i++)
		memcpy(xio_spsc_slot(q, prod + i), (const char *)src + (size_t)i * q->esize,
		       q->esize);
	*q->mine = prod + n;
	__atomic_store_n(&q->r->prod.head, prod + n, __ATOMIC_RELAXED);
	__atomic_store_n(&q->r->prod.tail, prod + n, __ATOMIC_RELEASE);
	return n;
}

/* Consumer: take up to max entries into dst. Returns the count, or
 * -EPROTO if the producer's index is impossible. The entries are copies in
 * private memory: the caller checks them before use. */
static inline int64_t xio_spsc_dequeue(const struct xio_spsc *q, void *dst, uint32_t max)
{
	int64_t avail = xio_spsc_count(q);
	if (avail < 0)
		return avail;
	uint32_t cons = *q->mine, n = (uint32_t)avail < max ? (uint32_t)avail : max;
	for (uint32_t i = 0; i < n; i++)
		memcpy((char *)dst + (size_t)i * q->esize, xio_spsc_slot(q, cons + i), q->esize);
	*q->mine = cons + n;
	__atomic_store_n(&q->r->cons.head, cons + n, __ATOMIC_RELAXED);
	__atomic_store_n(&q->r->cons.tail, cons + n, __ATOMIC_RELEASE);
	return n;
}

#endif /* XIO_CORE_SPSC_H */
