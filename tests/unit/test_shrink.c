/*
 * test_shrink.c - memory that follows the traffic (chan.c, reclaim.c): a
 * direction's window, its budget from SO_SNDBUF/SO_RCVBUF, and giving a
 * quiet direction's pages back, by its sender or by its receiver. Both
 * ends are in this process on two mappings of one segment; what is
 * resident is asked of the kernel (mincore), so a give-back that only
 * pretends fails here.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"
#include "xio/chan.h"
#include "xio/conn.h"

static struct t_seg seg;
static struct xio_chan_tx tx;
static struct xio_chan_rx rx;

static void setup(void)
{
	struct xio_chan_geom g;
	t_seg_open(&seg, 2u << 20, 65536);
	xio__chan_geom(&g, seg.a, &seg.p, &seg.l, 0);
	cr_assert_eq(xio__chan_tx_init(&tx, &g), 0);
	xio__chan_geom(&g, seg.b, &seg.p, &seg.l, 0);
	xio__chan_rx_init(&rx, &g);
}

static void teardown(void)
{
	xio__chan_tx_fini(&tx);
	t_seg_close(&seg);
}

TestSuite(shrink, .init = setup, .fini = teardown, .timeout = 30);

/* Pages of the whole segment resident now. */
static size_t resident_pages(void)
{
	size_t n = seg.p.seg_size / 4096, count = 0;
	unsigned char v[n];
	cr_assert_eq(mincore(seg.a, seg.p.seg_size, v), 0);
	for (size_t i = 0; i < n; i++)
		count += v[i] & 1;
	return count;
}

/* Write len bytes as messages of up to 64 KiB, reading as we go. */
static void stream(size_t len, int read_too)
{
	static char buf[65536], sink[65536];
	memset(buf, 'x', sizeof(buf));
	while (len) {
		uint32_t got;
		int64_t off = xio__chan_alloc_upto(&tx, len > sizeof(buf) ? sizeof(buf) : (uint32_t)len,
						   &got);
		cr_assert(off >= 0, "alloc: %lld", (long long)off);
		memcpy(xio__chan_tx_ptr(&tx, (uint32_t)off), buf, got);
		cr_assert_eq(xio__chan_post(&tx, (uint32_t)off, got), 0);
		len -= got;
		if (read_too) {
			while (xio__chan_read(&rx, sink, sizeof(sink)) > 0)
				;
			xio__chan_flush(&rx);
		}
	}
}

static void drain(void)
{
	static char sink[65536];
	while (xio__chan_read(&rx, sink, sizeof(sink)) > 0)
		;
	xio__chan_flush(&rx);
}

/* A window kept full grows to the whole area; the pages a busy direction
 * touched are all given back by its sender once it is quiet, down to the
 * page of headers and control blocks and the three ring headers'. */
Test(shrink, sender_gives_its_direction_back)
{
	size_t before = resident_pages();
	for (int i = 0; i < 4; i++) {
		stream(900 << 10, 0); /* the receiver is late: the window fills */
		drain();
	}
	cr_assert_eq(tx.ba.n, tx.win_max, "kept full, the window grew to the area (%u)", tx.ba.n);
	size_t busy = resident_pages();
	cr_assert_gt(busy, before + 200, "the stream touched the area (%zu pages)", busy);
	cr_assert_eq(xio__chan_tx_shrink(&tx), 1);
	size_t after = resident_pages();
	cr_assert_leq(after, 4, "%zu pages resident after the give-back (were %zu)", after, busy);
	cr_assert_eq(tx.ba.n, tx.win_min, "the window starts over");
	cr_assert_eq(atomic_load(&tx.g.ctl->tx_small), 1);
	/* And the direction works on: fresh zero pages fault in. */
	char out[5];
	stream(5, 0);
	cr_assert_eq(xio__chan_read(&rx, out, 5), 5);
	cr_assert_eq(tx.small, 1);
}

/* Nothing is given back while a message is unread, nor while the
 * receiver holds one whole (zero copy). */
Test(shrink, not_while_in_flight)
{
	stream(1000, 0);
	cr_assert_eq(xio__chan_tx_shrink(&tx), 0, "a message is unread");
	uint32_t off, skip, len;
	cr_assert_eq(xio__chan_next(&rx, &off, &skip, &len), 1);
	cr_assert_eq(xio__chan_tx_shrink(&tx), 0, "a message is lent out");
	cr_assert_eq(xio__chan_rx_shrink_ask(&rx), 0, "the receiver holds a loan");
	rx.loans--;
	xio__chan_release(&rx, off);
	xio__chan_flush(&rx);
	cr_assert_eq(xio__chan_tx_shrink(&tx), 1);
}

/* The receiver gives back a sender's quiet direction (the sender is away:
 * tx_active 0, and it answers the barrier); the sender's next write sees
 * DONE, starts its window over, and its data arrives intact. Returns the
 * sender had not taken back stay valid. */
Test(shrink, receiver_gives_a_quiet_senders_direction_back)
{
	cr_assert_eq(xio__chan_tx_enter(&tx), 0);
	stream(800 << 10, 1);
	xio__chan_tx_leave(&tx);
	atomic_store(&tx.g.ctl->tx_mb, 1);
	size_t busy = resident_pages();
	cr_assert_eq(xio__chan_rx_shrink_ask(&rx), 1);
	cr_assert_eq(xio__chan_rx_shrink_finish(&rx, 1), 1);
	size_t after = resident_pages();
	cr_assert_leq(after, 5, "%zu pages resident (were %zu)", after, busy);
	cr_assert_eq(atomic_load(&rx.g.ctl->shrink), XIO_SHRINK_DONE);
	cr_assert_eq(xio__chan_tx_enter(&tx), 0);
	cr_assert_eq(atomic_load(&rx.g.ctl->shrink), XIO_SHRINK_IDLE);
	cr_assert_eq(tx.ba.n, tx.win_min);
	char msg[3000], out[3000];
	t_pattern_fill(msg, sizeof(msg), 7, 0);
	int64_t off = xio__chan_alloc(&tx, sizeof(msg));
	cr_assert(off >= 0);
	memcpy(xio__chan_tx_ptr(&tx, (uint32_t)off), msg, sizeof(msg));
	cr_assert_eq(xio__chan_post(&tx, (uint32_t)off, sizeof(msg)), 0);
	xio__chan_tx_leave(&tx);
	cr_assert_eq(xio__chan_read(&rx, out, sizeof(out)), (ssize_t)sizeof(out));
	cr_assert(t_pattern_check(out, sizeof(out), 7, 0));
}

/* A sender inside a write (tx_active) keeps its pages: the receiver's
 * attempt puts the word back and gives nothing. */
Test(shrink, receiver_backs_off_from_an_active_sender)
{
	stream(300 << 10, 1);
	atomic_store(&tx.g.ctl->tx_mb, 1);
	cr_assert_eq(xio__chan_rx_shrink_ask(&rx), 1);
	atomic_store(&tx.g.ctl->tx_active, 1); /* it entered before the barrier */
	size_t busy = resident_pages();
	cr_assert_eq(xio__chan_rx_shrink_finish(&rx, 1), 0);
	cr_assert_eq(atomic_load(&rx.g.ctl->shrink), XIO_SHRINK_IDLE);
	cr_assert_eq(resident_pages(), busy);
	/* A failed barrier gives nothing back either. */
	atomic_store(&tx.g.ctl->tx_active, 0);
	cr_assert_eq(xio__chan_rx_shrink_ask(&rx), 1);
	cr_assert_eq(xio__chan_rx_shrink_finish(&rx, 0), 0);
	cr_assert_eq(resident_pages(), busy);
}

/* A sender that never said it answers the barrier is never asked. */
Test(shrink, no_barrier_no_receiver_give_back)
{
	stream(300 << 10, 1);
	atomic_store(&tx.g.ctl->tx_mb, 0);
	cr_assert_eq(xio__chan_rx_shrink_ask(&rx), 0);
}

/* A peer that holds the shrink word (ASK) for ever breaks only this
 * direction: the sender's write fails with -EPROTO after about a second. */
Test(shrink, a_stuck_ask_fails_the_write, .timeout = 10)
{
	atomic_store(&rx.g.ctl->shrink, XIO_SHRINK_ASK);
	cr_assert_eq(xio__chan_tx_enter(&tx), -EPROTO);
	xio__chan_tx_leave(&tx);
}

/* SO_SNDBUF plus the receiver's SO_RCVBUF bound what is in flight (the
 * kernel's initial one until the receiver attached); with either left to
 * autotuning there is no bound but the window; a
 * zero-copy message of any size goes when nothing is in flight. */
Test(shrink, budget_from_both_buffers)
{
	static char big[65536];
	tx.snd_limit = 8192;
	xio__chan_tx_budget(&tx);
	cr_assert_eq(tx.budget, (8192 + XIO_WIN_START) / 256,
		     "a receiver not accepted yet counts with the kernel's initial buffer");
	atomic_store(&tx.g.ctl->rx_rcvbuf, XIO_RCVBUF_AUTO);
	xio__chan_tx_budget(&tx);
	cr_assert_eq(tx.budget, 0, "the receiver's buffer autotunes");
	atomic_store(&tx.g.ctl->rx_rcvbuf, 8192);
	xio__chan_tx_budget(&tx);
	cr_assert_eq(tx.budget, 16384 / 256);
	uint32_t got;
	int64_t off = xio__chan_alloc_upto(&tx, sizeof(big), &got);
	cr_assert(off >= 0);
	cr_assert_eq(got, 16384, "the budget caps the message (%u)", got);
	cr_assert_eq(xio__chan_post(&tx, (uint32_t)off, got), 0);
	cr_assert_eq(xio__chan_alloc_upto(&tx, 100, &got), -ENOBUFS);
	cr_assert_eq(xio__chan_tx_room(&tx), 0);
	drain();
	cr_assert_eq(xio__chan_tx_room(&tx), 1);
	/* With nothing in flight a whole largest message goes (zero copy). */
	cr_assert(xio__chan_alloc(&tx, sizeof(big)) >= 0);
}

/* The monitor's buffer-start (params.win_start) sets where a window
 * starts, never below one largest message. */
Test(shrink, window_start_from_the_monitor)
{
	struct xio_chan_geom g;
	struct xio_chan_tx t;
	struct xio_seg_params p = seg.p;
	p.win_start = 256 << 10;
	xio__chan_geom(&g, seg.a, &p, &seg.l, 1);
	cr_assert_eq(xio__chan_tx_init(&t, &g), 0);
	cr_assert_eq(t.ba.n, (256u << 10) / 256);
	xio__chan_tx_fini(&t);
	p.win_start = 16 << 10; /* below max-msg (64K): one largest message */
	xio__chan_geom(&g, seg.a, &p, &seg.l, 1);
	cr_assert_eq(xio__chan_tx_init(&t, &g), 0);
	cr_assert_eq(t.ba.n, seg.p.max_msg / 256);
	xio__chan_tx_fini(&t);
}

/* The receiver gives back a sleeping sender's direction but keeps the
 * page of returns the sender has not taken back; the sender's own sweep
 * later finds DONE, takes them back and gives that page back too. */
Test(shrink, sender_settles_a_receivers_give_back)
{
	static char buf[256], sink[256];
	memset(buf, 'r', sizeof(buf));
	for (int i = 0; i < 300; i++) { /* many small messages: many returns */
		int64_t off = xio__chan_alloc(&tx, sizeof(buf));
		cr_assert(off >= 0);
		memcpy(xio__chan_tx_ptr(&tx, (uint32_t)off), buf, sizeof(buf));
		cr_assert_eq(xio__chan_post(&tx, (uint32_t)off, sizeof(buf)), 0);
	}
	while (xio__chan_read(&rx, sink, sizeof(sink)) > 0)
		;
	xio__chan_flush(&rx);
	atomic_store(&tx.g.ctl->tx_mb, 1);
	cr_assert_eq(xio__chan_rx_shrink_ask(&rx), 1);
	cr_assert_eq(xio__chan_rx_shrink_finish(&rx, 1), 1);
	size_t kept = resident_pages();
	cr_assert_leq(kept, 5, "%zu pages after the receiver's give-back", kept);
	cr_assert_eq(xio__chan_tx_shrink(&tx), 1);
	size_t after = resident_pages();
	cr_assert_leq(after, 4, "%zu pages after the sender settled it (were %zu)", after, kept);
	cr_assert_eq(atomic_load(&tx.g.ctl->shrink), XIO_SHRINK_IDLE);
	cr_assert_eq(tx.ba.n, tx.win_min);
}
