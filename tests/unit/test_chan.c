/*
 * test_chan.c - one direction of a connection, both ends in this process on
 * two mappings of one segment. Most tests here play the hostile peer: they
 * write garbage into the ring, the descriptors or the free ring, and check
 * that the other end reports -EPROTO and never touches memory outside its
 * segment (the reader's mapping has PROT_NONE guard pages on both sides, so
 * a stray access crashes the test).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "helpers.h"
#include "xio/chan.h"

#define GUARD 65536

static struct t_seg seg;
static void *guarded; /* the receiver's mapping, with guards */
static struct xio_chan_tx tx;
static struct xio_chan_rx rx;

static void *map_guarded(int fd, size_t size)
{
	char *r = mmap(NULL, size + 2 * GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(r != MAP_FAILED);
	void *m = mmap(r + GUARD, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	cr_assert(m == r + GUARD);
	return m;
}

static void setup(void)
{
	struct xio_chan_geom g;
	t_seg_open(&seg, 2u << 20, 65536);
	guarded = map_guarded(seg.fd, seg.p.seg_size);
	xio__chan_geom(&g, seg.a, &seg.p, &seg.l, 0);
	cr_assert_eq(xio__chan_tx_init(&tx, &g), 0);
	xio__chan_geom(&g, guarded, &seg.p, &seg.l, 0);
	xio__chan_rx_init(&rx, &g);
}

static void teardown(void)
{
	xio__chan_tx_fini(&tx);
	munmap((char *)guarded - GUARD, seg.p.seg_size + 2 * GUARD);
	t_seg_close(&seg);
}

TestSuite(chan, .init = setup, .fini = teardown, .timeout = 30);

static void send_bytes(const void *p, uint32_t len)
{
	int64_t off = xio__chan_alloc(&tx, len);
	cr_assert(off >= 0, "alloc %u: %lld", len, (long long)off);
	memcpy(xio__chan_tx_ptr(&tx, (uint32_t)off), p, len);
	cr_assert_eq(xio__chan_post(&tx, (uint32_t)off, len), 0);
}

/* The data ring as the sender's mapping sees it (the peer's view). */
static struct rte_ring *data_ring(void)
{
	return (struct rte_ring *)((char *)seg.a + seg.l.data_ring_off[0]);
}

static struct rte_ring *free_ring(void)
{
	return (struct rte_ring *)((char *)seg.a + seg.l.free_ring_off[0]);
}

/* Enqueue a hand-made descriptor, as a hostile sender would. */
static void post_raw(uint32_t off, uint32_t len, uint32_t flags)
{
	struct xio_desc d = { .off = off, .len = len, .flags = flags };
	cr_assert_eq(rte_ring_sp_enqueue_bulk_elem(data_ring(), &d, sizeof(d), 1, NULL), 1u);
}

/* Bytes posted by the sender come out of the receiver in order. */
Test(chan, roundtrip)
{
	char buf[64];
	send_bytes("hello, ", 7);
	send_bytes("world", 5);
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), 12);
	cr_assert_arr_eq(buf, "hello, world", 12);
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), 0);
}

/* A read smaller than a message takes its start; the rest stays queued. */
Test(chan, partial_reads)
{
	char msg[1000], out[1000];
	t_pattern_fill(msg, sizeof(msg), 1, 0);
	send_bytes(msg, sizeof(msg));
	size_t got = 0;
	while (got < sizeof(msg)) {
		ssize_t n = xio__chan_read(&rx, out + got, 7);
		cr_assert(n > 0);
		got += (size_t)n;
	}
	cr_assert(t_pattern_check(out, sizeof(out), 1, 0));
}

/* Peek returns data without consuming it. */
Test(chan, peek_does_not_consume)
{
	char a[8], b[8];
	send_bytes("abcdef", 6);
	cr_assert_eq(xio__chan_peek(&rx, a, 4), 4);
	cr_assert_eq(xio__chan_read(&rx, b, 8), 6);
	cr_assert_arr_eq(a, "abcd", 4);
	cr_assert_arr_eq(b, "abcdef", 6);
}

/* The area fills up, and buffers given back by the receiver make room. */
Test(chan, full_then_reclaim)
{
	static char big[65536], sink[65536];
	unsigned posted = 0, first = 0;
	cr_assert_eq(tx.ba.n * 256u, XIO_WIN_START, "the window starts at XIO_WIN_START");
	/* Fill, drain, again: the window grows as it is kept full. */
	for (int round = 0; round < 8; round++) {
		posted = 0;
		for (;;) {
			int64_t off = xio__chan_alloc(&tx, sizeof(big));
			if (off == -ENOBUFS)
				break;
			cr_assert(off >= 0);
			cr_assert_eq(xio__chan_post(&tx, (uint32_t)off, sizeof(big)), 0);
			posted++;
		}
		if (round == 0)
			first = posted;
		while (xio__chan_read(&rx, sink, sizeof(sink)) > 0)
			;
		xio__chan_flush(&rx);
	}
	(void)first;
	cr_assert_eq(tx.ba.n, tx.win_max, "kept full, the window grew to the area");
	cr_assert_geq(posted, 10, "a 2 MiB segment grows to at least 10 x 64 KiB per direction");
	cr_assert(xio__chan_alloc(&tx, sizeof(big)) >= 0);
	cr_assert_eq(xio_bufalloc_used(&tx.ba), sizeof(big) / 256);
}

/* Zero-copy: next() points into the segment; release returns the chunks. */
Test(chan, zero_copy_next_release)
{
	uint32_t off, skip, len;
	send_bytes("zero-copy", 9);
	cr_assert_eq(xio__chan_next(&rx, &off, &skip, &len), 1);
	cr_assert_eq(len, 9);
	cr_assert_arr_eq((const char *)xio__chan_rx_ptr(&rx, off) + skip, "zero-copy", 9);
	cr_assert_neq(xio_bufalloc_used(&tx.ba), 0);
	xio__chan_release(&rx, off);
	xio__chan_flush(&rx);
	cr_assert_eq(xio__chan_reclaim(&tx), 1);
	cr_assert_eq(xio_bufalloc_used(&tx.ba), 0);
}

/* The doorbell handshake: notify says "ring" only when the receiver armed,
 * and only once per arming (batched wake-up). */
Test(chan, one_doorbell_per_sleep)
{
	send_bytes("x", 1);
	cr_assert_eq(xio__chan_tx_notify(&tx), 0, "receiver awake: no doorbell");
	atomic_store(&rx.g.ctl->rx_waiting, XIO_WAIT_ARMED);
	send_bytes("y", 1);
	cr_assert_eq(xio__chan_tx_notify(&tx), 1);
	send_bytes("z", 1);
	cr_assert_eq(xio__chan_tx_notify(&tx), 0, "second post, same sleep: no doorbell");
	cr_assert_eq(atomic_load(&rx.g.ctl->rx_waiting), XIO_WAIT_CLAIMED, "the byte is owed");
}

/* A descriptor pointing past the buffer area is refused. */
Test(chan, desc_offset_out_of_area)
{
	char buf[16];
	post_raw(seg.l.buf_bytes, 16, 0);
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), -EPROTO);
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), -EPROTO, "broken for good");
}

/* A descriptor whose end wraps past the area (off + len overflow) is refused. */
Test(chan, desc_length_overflows)
{
	char buf[16];
	post_raw(seg.l.buf_bytes - 256, 65536, 0);
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), -EPROTO);
}

/* Zero length, over max_msg, a misaligned offset and unknown flags are each
 * refused. */
Test(chan, desc_fields_checked)
{
	struct {
		uint32_t off, len, flags;
	} bad[] = { { 0, 0, 0 }, { 0, 65537, 0 }, { 17, 8, 0 }, { 0, 8, 1 }, { 0xffffff00u, 8, 0 } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct xio_chan_geom g = rx.g;
		char buf[16];
		xio__chan_rx_init(&rx, &g);
		post_raw(bad[i].off, bad[i].len, bad[i].flags);
		cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), -EPROTO, "case %zu", i);
	}
}

/* Good messages queued before a bad descriptor are delivered first. */
Test(chan, good_data_before_bad_desc)
{
	char buf[16];
	send_bytes("good", 4);
	post_raw(1u << 30, 4, 0);
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), 4);
	cr_assert_arr_eq(buf, "good", 4);
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), -EPROTO);
}

/* A ring header whose size, mask or capacity was rewritten changes
 * nothing: both ends index the slots with their own constants. */
Test(chan, ring_header_rewritten)
{
	char buf[16];
	send_bytes("data", 4);
	data_ring()->mask = 0xffffffffu;
	data_ring()->size = 1u << 31;
	data_ring()->capacity = 0xffffffffu;
	free_ring()->mask = 0xffffffffu;
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), 4);
	cr_assert_eq(memcmp(buf, "data", 4), 0);
	cr_assert_eq(xio__chan_flush(&rx), 0);
	cr_assert_eq(xio__chan_reclaim(&tx), 1, "the buffer came back");
}

/* Attack (issue 8, item 1): the peer moves the receiver's own consumer
 * index back by one in the segment and goes away. The receiver's "is
 * there data" answer comes from its private index: nothing is pending, a
 * read returns nothing, and it can sleep (it did not spin on a phantom
 * message before). */
Test(chan, consumer_index_moved_by_peer)
{
	char buf[16];
	send_bytes("data", 4);
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), 4);
	data_ring()->cons.tail = data_ring()->cons.head - 1;
	cr_assert_eq(xio__chan_rx_pending(&rx), 0, "a phantom message is pending");
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), 0);
	send_bytes("more", 4); /* the sender sees the moved index: it may not fill */
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), 4);
	cr_assert_eq(memcmp(buf, "more", 4), 0);
}

/* Attack (issue 8, item 4): the peer moves the sender's own consumer index
 * of the free ring. A writer waiting for room must not see room that never
 * comes back (it spun before): nothing to reclaim means "sleep". */
Test(chan, free_ring_index_moved_by_peer)
{
	free_ring()->cons.tail = free_ring()->cons.head - 1;
	free_ring()->cons.head -= 1;
	cr_assert_eq(xio__chan_tx_can_reclaim(&tx), 0, "phantom buffers to reclaim");
	cr_assert_eq(xio__chan_reclaim(&tx), 0);
}

static _Atomic int flipping;

static void *flip_mask(void *arg)
{
	(void)arg;
	uint32_t good = data_ring()->mask;
	while (atomic_load(&flipping)) {
		data_ring()->mask = 0xffffffffu;
		data_ring()->cons.head += 0x40000000u; /* and move our index far out */
		data_ring()->mask = good;
		data_ring()->cons.head -= 0x40000000u;
	}
	return NULL;
}

/* Attack (issue 8, item 2): a peer flips the data ring's mask and the
 * receiver's index in the segment while valid messages flow. Every read
 * gets its message intact (the receiver never takes a size, mask or its
 * own index from the segment); before, it read 64 GiB past the segment
 * within seconds. */
Test(chan, mask_flipped_while_reading)
{
	pthread_t t;
	char buf[64];
	atomic_store(&flipping, 1);
	cr_assert_eq(pthread_create(&t, NULL, flip_mask, NULL), 0);
	for (uint32_t i = 0; i < 200000; i++) {
		send_bytes(&i, sizeof(i));
		uint32_t v = ~i;
		ssize_t r = xio__chan_read(&rx, buf, sizeof(buf));
		memcpy(&v, buf, sizeof(v));
		cr_assert(r == 4 && v == i, "message %u: read %zd, value %u", i, r, v);
		xio__chan_flush(&rx);
		xio__chan_reclaim(&tx);
	}
	atomic_store(&flipping, 0);
	pthread_join(t, NULL);
}

/* The producer index thrown far ahead makes the reader see garbage slots:
 * it must fail cleanly, not run off the ring. */
Test(chan, producer_index_garbage)
{
	char buf[4096];
	data_ring()->prod.tail += 1000000;
	data_ring()->prod.head += 1000000;
	ssize_t r = xio__chan_read(&rx, buf, sizeof(buf));
	cr_assert(r == -EPROTO || r >= 0, "got %zd", r);
}

/* A receiver that returns an offset it never got, or one twice, breaks
 * the sender's side with -EPROTO instead of a double hand-out. */
Test(chan, free_ring_lies)
{
	uint32_t bogus = 256 * 3; /* chunk-aligned, inside, but never allocated */
	cr_assert_eq(rte_ring_sp_enqueue_bulk_elem(free_ring(), &bogus, 4, 1, NULL), 1u);
	cr_assert_eq(xio__chan_reclaim(&tx), -EPROTO);
	cr_assert_eq(xio__chan_alloc(&tx, 10), -EPROTO, "sender side stays broken");
}

/* A returned offset outside the area or misaligned is refused too. */
Test(chan, free_ring_out_of_area)
{
	uint32_t bogus[] = { 0xfffffff0u, 300 };
	for (int i = 0; i < 2; i++) {
		struct xio_chan_geom g = tx.g;
		xio__chan_tx_fini(&tx);
		xio__chan_tx_init(&tx, &g);
		cr_assert_eq(rte_ring_sp_enqueue_bulk_elem(free_ring(), &bogus[i], 4, 1, NULL), 1u);
		cr_assert_eq(xio__chan_reclaim(&tx), -EPROTO, "offset %u", bogus[i]);
	}
}

/* Random garbage over the whole control block, ring and descriptors, many
 * times: every read returns data or -EPROTO, never crashes or hangs. */
Test(chan, fuzz_segment_garbage)
{
	char buf[70000];
	srand(12345);
	for (int round = 0; round < 2000; round++) {
		struct xio_chan_geom g = rx.g;
		xio__chan_rx_init(&rx, &g);
		/* Legit traffic first, then a burst of garbage somewhere in the
		 * direction's control block and rings. */
		send_bytes("ok", 2);
		char *start = (char *)seg.a + seg.l.chan_off[0];
		size_t span = seg.l.buf_off[0] - seg.l.chan_off[0];
		int n = 1 + rand() % 64;
		for (int i = 0; i < n; i++)
			start[(size_t)rand() % span] = (char)rand();
		for (int i = 0; i < 8; i++) {
			ssize_t r = xio__chan_read(&rx, buf, sizeof(buf));
			cr_assert(r == -EPROTO || r >= 0, "round %d: %zd", round, r);
			if (r <= 0)
				break;
		}
		/* Start the next round from a clean ring. */
		rte_ring_init(data_ring(), "t", seg.p.ring_slots, RING_F_SP_ENQ | RING_F_SC_DEQ);
		rte_ring_init(free_ring(), "t", seg.p.ring_slots, RING_F_SP_ENQ | RING_F_SC_DEQ);
		struct xio_chan_geom tg = tx.g;
		xio__chan_tx_fini(&tx);
		xio__chan_tx_init(&tx, &tg);
	}
}

/* A read that consumes more messages than one release burst still owes a
 * sleeping sender its doorbell (the flush inside release() took the
 * sender's waiting flag; the final flush must report it). */
Test(chan, burst_release_keeps_doorbell_debt)
{
	char buf[64 * 40];
	for (int i = 0; i < 40; i++)
		send_bytes("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", 64);
	atomic_store(&tx.g.ctl->tx_waiting, XIO_WAIT_ARMED); /* the sender went to sleep */
	cr_assert_eq(xio__chan_read(&rx, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	cr_assert_eq(xio__chan_flush(&rx), 1, "the wake-up was lost");
	cr_assert_eq(atomic_load(&tx.g.ctl->tx_waiting), XIO_WAIT_CLAIMED);
}

/* Our copy of DPDK's ring size formula agrees with rte_ring_get_memsize_elem
 * for every element size and ring size the segments use. */
Test(chan, ring_memsize_matches_dpdk)
{
	for (unsigned count = 2; count <= (1u << 20); count <<= 1) {
		cr_assert_eq(xio_seg_ring_memsize(16, count),
			     (size_t)rte_ring_get_memsize_elem(16, count), "count %u", count);
		cr_assert_eq(xio_seg_ring_memsize(4, count),
			     (size_t)rte_ring_get_memsize_elem(4, count), "count %u", count);
	}
}
