/*
 * seg_create.c - building a connection segment: the only code that calls
 * into DPDK's library (rte_ring_init), linked into the monitor alone.
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

	/* Our copy of DPDK's size formula must agree with DPDK itself. */
	if (rte_ring_get_memsize_elem(sizeof(struct xio_desc), p->ring_slots) !=
		    (ssize_t)xio_seg_ring_memsize(sizeof(struct xio_desc), p->ring_slots) ||
	    rte_ring_get_memsize_elem(sizeof(uint32_t), p->ring_slots) !=
		    (ssize_t)xio_seg_ring_memsize(sizeof(uint32_t), p->ring_slots))
		return -ENOTSUP;
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

