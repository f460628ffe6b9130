/*
 * fuzz_chan.c - libFuzzer harness for descriptor and ring-index validation
 * (core/chan.c, core/include/xio/spsc.h): both ends of one direction in
 * this process, on two mappings of one small segment, each between
 * PROT_NONE guard pages, while the input plays a hostile peer that can
 * write anything into the shared control block and rings.
 *
 * Input: a script of operations, 4 bytes each: op, then 3 bytes of
 * argument. Honest operations (post, read, zero-copy next/release, flush,
 * reclaim, and giving a quiet direction's pages back by either side,
 * issue 17) mix with raw writes of the input's own bytes at any offset of
 * the control block or the rings: the shrink word, the receiver's
 * SO_RCVBUF and the sender's flags are the peer's to forge too. Whatever the peer writes, no access may
 * leave the segment (a guard page would fault), every length handed out
 * must lie inside the buffer area, and a broken channel stays broken.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "xio/chan.h"
#include "xio/seg.h"

#define SEG_SIZE (64u * 1024)
#define MAX_MSG 1024u
#define GUARD 65536u

static struct xio_seg_params params;
static struct xio_seg_layout layout;
static void *pristine;      /* the segment as the monitor made it */
static char *side_a, *side_b; /* the sender's and the receiver's mapping */

static char *map_guarded(int fd)
{
	char *r = mmap(NULL, SEG_SIZE + 2 * GUARD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED)
		abort();
	void *m = mmap(r + GUARD, SEG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	if (m != r + GUARD)
		abort();
	return m;
}

static void setup(void)
{
	if (xio_seg_params_init(&params, SEG_SIZE, 64, MAX_MSG) < 0 ||
	    xio_seg_layout(&params, &layout) < 0)
		abort();
	int fd = xio_seg_create(&params, 1, 0, NULL);
	if (fd < 0)
		abort();
	side_a = map_guarded(fd);
	side_b = map_guarded(fd);
	close(fd);
	pristine = malloc(SEG_SIZE);
	memcpy(pristine, side_a, SEG_SIZE);
}

/* The part of the segment a peer may scribble on: direction 0's control
 * block and both of its rings (everything before its buffer area). */
static void hostile_write(const uint8_t *arg, const uint8_t *bytes, size_t n)
{
	uint32_t lo = (uint32_t)layout.chan_off[0];
	uint32_t hi = (uint32_t)layout.buf_off[0];
	uint32_t span = hi > lo ? hi - lo : 1;
	uint32_t off = lo + (((uint32_t)arg[0] << 8 | arg[1]) * 8u) % span;
	if (n > hi - off)
		n = hi - off;
	memcpy(side_a + off, bytes, n);
}

static void check_next(const struct xio_chan_rx *rx, uint32_t off, uint32_t skip, uint32_t len)
{
	if ((uint64_t)off + skip + len > rx->g.buf_bytes || len == 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char scratch[MAX_MSG * 2];
	if (!pristine)
		setup();
	memcpy(side_a, pristine, SEG_SIZE);

	struct xio_chan_geom g;
	struct xio_chan_tx tx;
	struct xio_chan_rx rx;
	xio__chan_geom(&g, side_a, &params, &layout, 0);
	if (xio__chan_tx_init(&tx, &g) < 0)
		abort();
	xio__chan_geom(&g, side_b, &params, &layout, 0);
	xio__chan_rx_init(&rx, &g);

	uint32_t held[8];
	unsigned nheld = 0;
	for (size_t i = 0; i + 4 <= size && i < 4 * 512; i += 4) {
		const uint8_t *a = data + i + 1;
		uint32_t len = ((uint32_t)a[0] << 8 | a[1]) % (MAX_MSG + 2);
		int64_t off;
		ssize_t n;
		uint32_t o, skip, l;
		switch (data[i] % 12) {
		case 0: /* an honest message */
			off = xio__chan_alloc(&tx, len ? len : 1);
			if (off >= 0) {
				if ((uint64_t)off + (len ? len : 1) > tx.g.buf_bytes)
					abort();
				memset(xio__chan_tx_ptr(&tx, (uint32_t)off), a[2], len ? len : 1);
				xio__chan_post(&tx, (uint32_t)off, len ? len : 1);
			}
			break;
		case 1: /* a copying read */
			n = xio__chan_read(&rx, scratch, len % sizeof(scratch));
			if (n > (ssize_t)(len % sizeof(scratch)))
				abort();
			break;
		case 2:
			n = xio__chan_peek(&rx, scratch, len % sizeof(scratch));
			if (n > (ssize_t)(len % sizeof(scratch)))
				abort();
			break;
		case 3: /* zero copy: take a message and touch all of it */
			if (nheld < 8 && xio__chan_next(&rx, &o, &skip, &l) == 1) {
				check_next(&rx, o, skip, l);
				const volatile char *p = xio__chan_rx_ptr(&rx, o);
				(void)p[skip];
				(void)p[skip + l - 1];
				held[nheld++] = o;
			}
			break;
		case 4:
			if (nheld) {
				if (rx.loans)
					rx.loans--;
				xio__chan_release(&rx, held[--nheld]);
			}
			xio__chan_flush(&rx);
			break;
		case 5:
			xio__chan_reclaim(&tx);
			break;
		case 6: /* the peer writes the rest of this op's 3 bytes and more */
			hostile_write(a, data + i + 3, size - i - 3 < 16 ? size - i - 3 : 16);
			i += 16;
			break;
		case 7: /* the peer writes one word anywhere in the metadata */
			hostile_write(a, a + 2, 1);
			break;
		case 9: /* the sender gives its quiet direction back */
			xio__chan_tx_shrink(&tx);
			break;
		case 10: /* the receiver does, the barrier said ok or not */
			if (xio__chan_rx_shrink_ask(&rx))
				xio__chan_rx_shrink_finish(&rx, a[2] & 1);
			break;
		case 11: /* a write's bracket, and the budget from what the peer says;
			  * a forged ASK would only make it wait a second, then fail */
			tx.snd_limit = a[2] & 1 ? 4608u * (a[1] & 3) : 0;
			xio__chan_tx_budget(&tx);
			if (atomic_load_explicit(&tx.g.ctl->shrink, memory_order_relaxed) != XIO_SHRINK_ASK) {
				xio__chan_tx_enter(&tx);
				xio__chan_tx_leave(&tx);
			}
			if (xio__chan_tx_capacity(&tx) > tx.g.buf_bytes)
				abort();
			xio__chan_tx_room(&tx);
			break;
		case 8:
			xio__chan_readable(&rx);
			xio__chan_rx_pending(&rx);
			xio__chan_tx_can_reclaim(&tx);
			off = xio__chan_alloc_upto(&tx, len ? len : 1, &l);
			if (off >= 0) {
				if (l == 0 || (uint64_t)off + l > tx.g.buf_bytes)
					abort();
				xio__chan_unalloc(&tx, (uint32_t)off);
			}
			break;
		}
	}
	xio__chan_tx_fini(&tx);
	return 0;
}
