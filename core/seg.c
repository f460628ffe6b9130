/*
 * seg.c - the layout of connection segments, and checking and mapping
 * them at the endpoints (seg_create.c builds them, in the monitor). The
 * format is documented field by field in include/xio/seg.h.
 */
#include "xio/seg.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

#include <rte_ring.h>

#include "xio/sys.h"


/*
 * The bytes an rte_ring of count slots of esize bytes takes: DPDK's own
 * formula (rte_ring_get_memsize_elem: the header, then the slots, rounded
 * to a cache line), computed here so that endpoints need no DPDK library at
 * run time, only its inline ring functions. seg_create.c checks it against
 * DPDK's function before it builds a segment, and a unit test does too.
 */
size_t xio_seg_ring_memsize(unsigned esize, unsigned count)
{
	size_t sz = sizeof(struct rte_ring) + (size_t)count * esize;
	return (sz + RTE_CACHE_LINE_SIZE - 1) & ~((size_t)RTE_CACHE_LINE_SIZE - 1);
}

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Where a ring that must not start before off goes: its slots on a page
 * boundary, its header just before. */
static size_t ring_place(size_t off)
{
	return align_up(off + sizeof(struct rte_ring), 4096) - sizeof(struct rte_ring);
}

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

int xio_seg_layout(const struct xio_seg_params *p, struct xio_seg_layout *l)
{
	if (!is_pow2(p->chunk_size) || p->chunk_size < 64 || !is_pow2(p->ring_slots) ||
	    p->buf_chunks == 0 || p->ring_slots <= p->buf_chunks || p->max_msg == 0 ||
	    p->seg_size < XIO_SEG_HDR_SIZE)
		return -EINVAL;
	/* The allocator records a message's length in chunks in 15 bits. */
	if ((p->max_msg + p->chunk_size - 1) / p->chunk_size > 0x7fff)
		return -EINVAL;
	l->data_ring_bytes = xio_seg_ring_memsize(sizeof(struct xio_desc), p->ring_slots);
	l->free_ring_bytes = xio_seg_ring_memsize(sizeof(uint32_t), p->ring_slots);
	l->buf_bytes = (size_t)p->buf_chunks * p->chunk_size;
	if (p->max_msg > l->buf_bytes / 2 || l->buf_bytes > UINT32_MAX)
		return -EINVAL;

	/* Page 0: the header, both control blocks and the first ring's
	 * header. Every ring's slots start on a page of their own and every
	 * area too, so that the memory a quiet direction gives back is whole
	 * pages (reclaim.c), and what stays of an idle connection is four
	 * pages: this one and the other three ring headers'. */
	size_t off = align_up(sizeof(struct xio_seg_hdr), XIO_CACHE_LINE);
	for (int d = 0; d < 2; d++) {
		l->chan_off[d] = off;
		off = align_up(off + sizeof(struct xio_chan_ctl), XIO_CACHE_LINE);
	}
	for (int d = 0; d < 2; d++) {
		l->data_ring_off[d] = ring_place(off);
		off = l->data_ring_off[d] + l->data_ring_bytes;
		l->free_ring_off[d] = ring_place(off);
		off = align_up(l->free_ring_off[d] + l->free_ring_bytes, 4096);
		l->buf_off[d] = off;
		off = align_up(off + l->buf_bytes, 4096);
	}
	l->used = off;
	return off <= p->seg_size ? 0 : -EINVAL;
}

int xio_seg_params_init(struct xio_seg_params *p, uint64_t seg_size, uint32_t chunk_size,
			uint32_t max_msg)
{
	struct xio_seg_layout l;

	memset(p, 0, sizeof(*p));
	p->seg_size = seg_size;
	p->chunk_size = chunk_size;
	p->max_msg = max_msg;
	if (!is_pow2(chunk_size) || chunk_size < 64 || seg_size < 64 * 1024 ||
	    seg_size > (1ull << 31))
		return -EINVAL;
	/* Start from all the space for buffers and shrink until the rings
	 * (which grow with the number of chunks) fit beside them. */
	uint64_t chunks = (seg_size - XIO_SEG_HDR_SIZE) / 2 / chunk_size;
	for (; chunks > 0; chunks -= chunks > 64 ? chunks / 64 : 1) {
		uint32_t slots = 1;
		while (slots <= chunks)
			slots <<= 1;
		p->buf_chunks = (uint32_t)chunks;
		p->ring_slots = slots;
		if (xio_seg_layout(p, &l) == 0)
			return 0;
	}
	return -EINVAL;
}

int xio_seg_map(int fd, const struct xio_seg_params *p, void **base)
{
	struct xio_seg_layout l;
	struct stat st;
	int r;

	r = xio_seg_layout(p, &l);
	if (r < 0)
		return r;
	r = xio_sys_fstat(fd, &st);
	if (r < 0)
		return r;
	if ((uint64_t)st.st_size != p->seg_size)
		return -EINVAL;
	int seals = xio_sys_fcntl(fd, F_GET_SEALS, 0);
	if (seals < 0)
		return seals;
	if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
		return -EINVAL;
	void *m = xio_sys_mmap(NULL, p->seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (xio_sys_mmap_failed(m))
		return (int)(intptr_t)m;
	*base = m;
	return 0;
}

void xio_seg_unmap(void *base, const struct xio_seg_params *p)
{
	if (base)
		xio_sys_munmap(base, p->seg_size);
}

void xio_seg_mark_gone(void *base, unsigned side)
{
	struct xio_seg_hdr *h = base;
	/* Pairs with the acquire load in chan.c's peer_gone(). */
	if (side < 2)
		atomic_store_explicit(&h->side_gone[side], 1, memory_order_release);
}

const char *xio_leave_reason_name(unsigned r)
{
	static const char *const names[XIO_LEAVE_MAX] = {
		[XIO_LEAVE_NONE] = "none",	   [XIO_LEAVE_STDIO] = "stdio",
		[XIO_LEAVE_EXEC] = "exec",	   [XIO_LEAVE_REATTACH] = "reattach",
		[XIO_LEAVE_SECCOMP] = "seccomp", [XIO_LEAVE_OOB] = "oob",
		[XIO_LEAVE_SHARED] = "shared",   [XIO_LEAVE_PEER] = "peer",
		[XIO_LEAVE_ACL] = "acl",	   [XIO_LEAVE_UID] = "uid",
	};
	return r < XIO_LEAVE_MAX ? names[r] : "?";
}
