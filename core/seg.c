/*
 * seg.c - creating, checking and mapping connection segments. The format is
 * documented field by field in include/xio/seg.h.
 */
#include "xio/seg.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <string.h>
#include <sys/mman.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "xio/sys.h"

#define HUGE_PAGE (2u << 20)

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
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
	ssize_t dr = rte_ring_get_memsize_elem(sizeof(struct xio_desc), p->ring_slots);
	ssize_t fr = rte_ring_get_memsize_elem(sizeof(uint32_t), p->ring_slots);
	if (dr < 0 || fr < 0)
		return -EINVAL;
	l->data_ring_bytes = (size_t)dr;
	l->free_ring_bytes = (size_t)fr;
	l->buf_bytes = (size_t)p->buf_chunks * p->chunk_size;
	if (p->max_msg > l->buf_bytes / 2 || l->buf_bytes > UINT32_MAX)
		return -EINVAL;

	size_t off = XIO_SEG_HDR_SIZE;
	for (int d = 0; d < 2; d++) {
		l->chan_off[d] = off;
		off = align_up(off + sizeof(struct xio_chan_ctl), XIO_CACHE_LINE);
		l->data_ring_off[d] = off;
		off = align_up(off + l->data_ring_bytes, XIO_CACHE_LINE);
		l->free_ring_off[d] = off;
		off = align_up(off + l->free_ring_bytes, 4096);
		l->buf_off[d] = off;
		off += l->buf_bytes;
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

static int create_memfd(uint64_t size, int huge)
{
	unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB : 0);
	int fd = xio_sys_memfd_create("xio-seg", flags);
	if (fd < 0)
		return fd;
	int r = xio_sys_ftruncate(fd, (off_t)size);
	if (r < 0) {
		xio_sys_close(fd);
		return r;
	}
	return fd;
}

static void init_rings(void *base, const struct xio_seg_params *p, const struct xio_seg_layout *l)
{
	for (int d = 0; d < 2; d++) {
		struct rte_ring *dr = (struct rte_ring *)((char *)base + l->data_ring_off[d]);
		struct rte_ring *fr = (struct rte_ring *)((char *)base + l->free_ring_off[d]);
		/* Single producer, single consumer: each ring has exactly one
		 * writer process and one reader process. */
		rte_ring_init(dr, d ? "xio-data1" : "xio-data0", p->ring_slots,
			      RING_F_SP_ENQ | RING_F_SC_DEQ);
		rte_ring_init(fr, d ? "xio-free1" : "xio-free0", p->ring_slots,
			      RING_F_SP_ENQ | RING_F_SC_DEQ);
	}
}

int xio_seg_create(const struct xio_seg_params *p, uint64_t conn_id, int huge, int *is_huge)
{
	struct xio_seg_layout l;
	int fd = -1, r;

	r = xio_seg_layout(p, &l);
	if (r < 0)
		return r;
	void *base = NULL;
	int use_huge = huge != 0 && (p->seg_size % HUGE_PAGE) == 0;
	if (use_huge) {
		fd = create_memfd(p->seg_size, 1);
		if (fd >= 0) {
			/* hugetlbfs reserves the pages at mmap time, so a machine
			 * without free pages fails here rather than with SIGBUS. */
			base = xio_sys_mmap(NULL, p->seg_size, PROT_READ | PROT_WRITE, MAP_SHARED,
					    fd, 0);
			if (xio_sys_mmap_failed(base)) {
				r = (int)(intptr_t)base;
				xio_sys_close(fd);
				fd = -1;
			}
		} else {
			r = fd;
		}
		if (fd < 0 && huge > 0)
			return r;
	}
	if (fd < 0) {
		use_huge = 0;
		fd = create_memfd(p->seg_size, 0);
		if (fd < 0)
			return fd;
		base = xio_sys_mmap(NULL, p->seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (xio_sys_mmap_failed(base)) {
			r = (int)(intptr_t)base;
			xio_sys_close(fd);
			return r;
		}
	}
	/* The size can never change again: a peer that could shrink the memfd
	 * would make the other side fault on its mapping. */
	r = xio_sys_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	if (r < 0) {
		xio_sys_munmap(base, p->seg_size);
		xio_sys_close(fd);
		return r;
	}
	struct xio_seg_hdr *h = base;
	h->magic = XIO_SEG_MAGIC;
	h->version = XIO_SEG_VERSION;
	h->flags = use_huge ? XIO_SEG_F_HUGE : 0;
	h->conn_id = conn_id;
	h->params = *p;
	h->params.flags = h->flags;
	init_rings(base, p, &l);
	xio_sys_munmap(base, p->seg_size);
	if (is_huge)
		*is_huge = use_huge;
	return fd;
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

int xio_seg_mark_gone(int fd, const struct xio_seg_params *p, unsigned side)
{
	void *base;
	int r;

	if (side > 1)
		return -EINVAL;
	r = xio_seg_map(fd, p, &base);
	if (r < 0)
		return r;
	struct xio_seg_hdr *h = base;
	/* Pairs with the acquire load in chan.c's peer_gone(). */
	atomic_store_explicit(&h->side_gone[side], 1, memory_order_release);
	xio_seg_unmap(base, p);
	return 0;
}
