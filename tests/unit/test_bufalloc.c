/*
 * test_bufalloc.c - the sender's private circular chunk allocator.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "xio/bufalloc.h"

/* A fresh allocator hands out chunks from 0 upwards, contiguously. */
Test(bufalloc, sequential)
{
	struct xio_bufalloc a;
	cr_assert_eq(xio_bufalloc_init(&a, 16), 0);
	cr_assert_eq(xio_bufalloc_get(&a, 3), 0);
	cr_assert_eq(xio_bufalloc_get(&a, 5), 3);
	cr_assert_eq(xio_bufalloc_used(&a), 8);
	xio_bufalloc_fini(&a);
}

/* When full, get fails with -ENOBUFS, and a put makes room again. */
Test(bufalloc, full_then_room)
{
	struct xio_bufalloc a;
	xio_bufalloc_init(&a, 8);
	cr_assert_eq(xio_bufalloc_get(&a, 8), 0);
	cr_assert_eq(xio_bufalloc_get(&a, 1), -ENOBUFS);
	cr_assert_eq(xio_bufalloc_put(&a, 0), 8);
	cr_assert_eq(xio_bufalloc_used(&a), 0);
	cr_assert_eq(xio_bufalloc_get(&a, 1), 0);
	xio_bufalloc_fini(&a);
}

/* A request larger than the area can never succeed: -EMSGSIZE, not -ENOBUFS. */
Test(bufalloc, too_big)
{
	struct xio_bufalloc a;
	xio_bufalloc_init(&a, 8);
	cr_assert_eq(xio_bufalloc_get(&a, 9), -EMSGSIZE);
	cr_assert_eq(xio_bufalloc_get(&a, 0), -EMSGSIZE);
	xio_bufalloc_fini(&a);
}

/* An allocation that does not fit before the end skips to the start, and
 * the skipped chunks come back with the tail. */
Test(bufalloc, wrap_skips_end)
{
	struct xio_bufalloc a;
	xio_bufalloc_init(&a, 10);
	cr_assert_eq(xio_bufalloc_get(&a, 4), 0);
	cr_assert_eq(xio_bufalloc_get(&a, 4), 4);
	cr_assert_eq(xio_bufalloc_put(&a, 0), 4); /* free [0,4) */
	/* 3 chunks do not fit in [8,10): skip 2, take [0,3). */
	cr_assert_eq(xio_bufalloc_get(&a, 3), 0);
	cr_assert_eq(xio_bufalloc_used(&a), 4 + 2 + 3);
	cr_assert_eq(xio_bufalloc_put(&a, 4), 4);
	/* The tail passed the skipped end: only [0,3) is out. */
	cr_assert_eq(xio_bufalloc_used(&a), 3);
	xio_bufalloc_fini(&a);
}

/* A wrap that would overrun live chunks at the start fails without
 * changing anything. */
Test(bufalloc, wrap_refused_keeps_state)
{
	struct xio_bufalloc a;
	xio_bufalloc_init(&a, 10);
	cr_assert_eq(xio_bufalloc_get(&a, 2), 0);
	cr_assert_eq(xio_bufalloc_get(&a, 6), 2);
	cr_assert_eq(xio_bufalloc_put(&a, 0), 2); /* free [0,2), head at 8 */
	cr_assert_eq(xio_bufalloc_get(&a, 3), -ENOBUFS); /* needs [0,3), [2,8) live */
	cr_assert_eq(xio_bufalloc_used(&a), 6);
	cr_assert_eq(xio_bufalloc_get(&a, 2), 8);
	xio_bufalloc_fini(&a);
}

/* Out-of-order frees are held until the older allocations come back. */
Test(bufalloc, out_of_order_put)
{
	struct xio_bufalloc a;
	xio_bufalloc_init(&a, 12);
	xio_bufalloc_get(&a, 4);
	xio_bufalloc_get(&a, 4);
	xio_bufalloc_get(&a, 4);
	cr_assert_eq(xio_bufalloc_put(&a, 8), 4);
	cr_assert_eq(xio_bufalloc_put(&a, 4), 4);
	cr_assert_eq(xio_bufalloc_used(&a), 12, "tail must wait for chunk 0");
	cr_assert_eq(xio_bufalloc_put(&a, 0), 4);
	cr_assert_eq(xio_bufalloc_used(&a), 0);
	xio_bufalloc_fini(&a);
}

/* Returning an offset that is not an allocation start, or returning one
 * twice, is refused (a hostile receiver cannot cause a double hand-out). */
Test(bufalloc, bad_put_refused)
{
	struct xio_bufalloc a;
	xio_bufalloc_init(&a, 8);
	xio_bufalloc_get(&a, 4);
	cr_assert_eq(xio_bufalloc_put(&a, 1), -EPROTO);
	cr_assert_eq(xio_bufalloc_put(&a, 8), -EPROTO);
	cr_assert_eq(xio_bufalloc_put(&a, 5), -EPROTO);
	cr_assert_eq(xio_bufalloc_put(&a, 0), 4);
	cr_assert_eq(xio_bufalloc_put(&a, 0), -EPROTO);
	xio_bufalloc_fini(&a);
}

/* max_contig is exactly the largest size get() grants, through a long
 * random mix of allocations and in-order frees. */
Test(bufalloc, max_contig_agrees_with_get)
{
	struct xio_bufalloc a;
	uint32_t starts[64];
	unsigned n = 0, first = 0;
	srand(7);
	xio_bufalloc_init(&a, 37);
	for (int step = 0; step < 20000; step++) {
		uint32_t m = xio_bufalloc_max_contig(&a);
		if (m < 37)
			cr_assert_eq(xio_bufalloc_get(&a, m + 1), -ENOBUFS,
				     "step %d: max_contig %u but %u fits", step, m, m + 1);
		if (m > 0 && n < 64 && (rand() % 3)) {
			uint32_t k = 1 + (uint32_t)rand() % m;
			int64_t c = xio_bufalloc_get(&a, k);
			cr_assert(c >= 0, "step %d: max_contig %u but get(%u) = %lld", step, m, k,
				  (long long)c);
			starts[(first + n++) % 64] = (uint32_t)c;
		} else if (n > 0) {
			cr_assert(xio_bufalloc_put(&a, starts[first]) > 0);
			first = (first + 1) % 64;
			n--;
		}
		cr_assert(xio_bufalloc_used(&a) <= 37);
	}
	xio_bufalloc_fini(&a);
}
