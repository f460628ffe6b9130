/*
 * chan.c - the data path of one direction: descriptors over an SPSC
 * rte_ring, buffers given back over a second one. See include/xio/chan.h
 * and, for the segment format, include/xio/seg.h.
 *
 * Ordering: the payload is written before the descriptor is enqueued, and
 * rte_ring's SP enqueue publishes prod.tail with a release store that pairs
 * with the SC dequeue's acquire load, so a receiver that sees a descriptor
 * sees its payload. The same holds for the free ring in the other direction:
 * the receiver stops touching a buffer before it enqueues its offset.
 */
#include "xio/chan.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "xio/spsc.h"
#include "xio/sys.h"

#include <sys/mman.h>

#define unlikely(x) __builtin_expect(!!(x), 0)

void xio__chan_geom(struct xio_chan_geom *g, void *base, const struct xio_seg_params *p,
		    const struct xio_seg_layout *l, unsigned d)
{
	char *b = base;
	g->ctl = (struct xio_chan_ctl *)(b + l->chan_off[d]);
	g->data = (struct rte_ring *)(b + l->data_ring_off[d]);
	g->free = (struct rte_ring *)(b + l->free_ring_off[d]);
	g->buf = b + l->buf_off[d];
	g->buf_bytes = (uint32_t)l->buf_bytes;
	g->chunk_shift = (uint32_t)__builtin_ctz(p->chunk_size);
	g->max_msg = p->max_msg;
	g->slots = p->ring_slots;
	g->huge = (p->flags & XIO_SEG_F_HUGE) != 0;
	g->win_start = p->win_start ? p->win_start : XIO_WIN_START;
}

/* The four ring sides of a direction, with this process's constants and
 * indices (spsc.h): DPDK's inline paths are not used on shared rings. */
static inline struct xio_spsc data_q(const struct xio_chan_geom *g, uint32_t *mine)
{
	return (struct xio_spsc){ g->data, g->slots - 1, g->slots - 1, sizeof(struct xio_desc),
				  mine };
}

static inline struct xio_spsc free_q(const struct xio_chan_geom *g, uint32_t *mine)
{
	return (struct xio_spsc){ g->free, g->slots - 1, g->slots - 1, sizeof(uint32_t), mine };
}

static inline int desc_ok(const struct xio_chan_geom *g, const struct xio_desc *d)
{
	return d->flags == 0 && d->len != 0 && d->len <= g->max_msg &&
	       (d->off & ((1u << g->chunk_shift) - 1)) == 0 && d->off < g->buf_bytes &&
	       d->len <= g->buf_bytes - d->off;
}

int xio__chan_tx_init(struct xio_chan_tx *tx, const struct xio_chan_geom *g)
{
	tx->g = *g;
	tx->data_prod = tx->free_cons = 0;
	tx->seq = 0;
	tx->err = 0;
	/* The window starts at buffer-start (XIO_WIN_START by default), never
	 * below one largest message, never past the area. */
	uint32_t area = g->buf_bytes >> g->chunk_shift, unit = 1u << g->chunk_shift;
	uint32_t start = g->win_start > g->max_msg ? g->win_start : g->max_msg;
	tx->win_max = area;
	tx->win_min = (start + unit - 1) / unit < area ? (start + unit - 1) / unit : area;
	tx->budget = tx->snd_limit = tx->unposted = 0;
	tx->small = 0;
	return xio_bufalloc_init(&tx->ba, tx->win_min);
}

/*
 * Window and budget. The allocator hands out the first ba.n chunks of the
 * area only, so a direction touches no more memory than its window: it
 * starts at win_min and doubles, up to the whole area, each time a write
 * finds it full with what came back taken back: kept full, as TCP's
 * autotuning grows its buffers (over loopback the kernel takes megabytes
 * for a peer that does not read). It starts over at win_min when the
 * direction is given back after a quiet second (reclaim.c). The budget is
 * the kernel's bound on what one direction holds in flight when the
 * program set both ends' buffers: the sender's SO_SNDBUF plus the
 * receiver's SO_RCVBUF (as getsockopt reports them, doubled; a receiver
 * not accepted yet counts with the kernel's initial receive buffer, as a
 * socket in the accept queue has it). With one of them left to autotuning
 * the kernel's bound is its autotuning, which the window follows. A
 * copying write takes what the budget leaves; a zero-copy message of any
 * size goes when nothing is in flight.
 */
void xio__chan_tx_budget(struct xio_chan_tx *tx)
{
	uint32_t rcv = atomic_load_explicit(&tx->g.ctl->rx_rcvbuf, memory_order_relaxed);
	if (!tx->snd_limit || rcv == XIO_RCVBUF_AUTO) {
		tx->budget = 0;
		return;
	}
	if (rcv == 0) /* not accepted yet: the kernel's initial receive buffer */
		rcv = XIO_WIN_START;
	uint64_t b = ((uint64_t)tx->snd_limit + rcv) >> tx->g.chunk_shift;
	tx->budget = b == 0 ? 1 : b > tx->win_max ? tx->win_max : (uint32_t)b;
}

/* Chunks the budget leaves for a new message now (UINT32_MAX: no bound). */
static inline uint32_t budget_left(const struct xio_chan_tx *tx)
{
	if (!tx->budget)
		return UINT32_MAX;
	return tx->ba.used >= tx->budget ? 0 : tx->budget - tx->ba.used;
}

/* Grow the window if the evidence is there (above); 1 if it grew. */
static int tx_grow(struct xio_chan_tx *tx)
{
	uint32_t n = tx->ba.n;
	if (n >= tx->win_max || (tx->budget && n >= tx->budget))
		return 0;
	n = n > tx->win_max / 2 ? tx->win_max : n * 2;
	return xio_bufalloc_grow(&tx->ba, n) > 0;
}

void xio__chan_tx_fini(struct xio_chan_tx *tx)
{
	xio_bufalloc_fini(&tx->ba);
}

void xio__chan_rx_init(struct xio_chan_rx *rx, const struct xio_chan_geom *g)
{
	memset(rx, 0, sizeof(*rx));
	rx->g = *g;
}

int xio__chan_reclaim(struct xio_chan_tx *tx)
{
	uint32_t offs[64];
	int total = 0;

	if (unlikely(tx->err))
		return tx->err;
	struct xio_spsc q = free_q(&tx->g, &tx->free_cons);
	for (;;) {
		int64_t got = xio_spsc_dequeue(&q, offs, 64);
		if (unlikely(got < 0))
			return tx->err = (int)got;
		unsigned n = (unsigned)got;
		for (unsigned i = 0; i < n; i++) {
			uint32_t off = offs[i];
			if (unlikely((off & ((1u << tx->g.chunk_shift) - 1)) != 0 ||
				     off >= tx->g.buf_bytes))
				return tx->err = -EPROTO;
			if (unlikely(xio_bufalloc_put(&tx->ba, off >> tx->g.chunk_shift) < 0))
				return tx->err = -EPROTO; /* not ours, or returned twice */
		}
		total += (int)n;
		if (n < 64)
			return total;
	}
}

int xio__chan_tx_can_reclaim(struct xio_chan_tx *tx)
{
	struct xio_spsc q = free_q(&tx->g, &tx->free_cons);
	/* An impossible index counts as "something to do": the reclaim that
	 * follows reports it, instead of a writer waiting on it for ever. */
	return xio_spsc_count(&q) != 0;
}

int64_t xio__chan_alloc(struct xio_chan_tx *tx, uint32_t len)
{
	if (unlikely(tx->err))
		return tx->err;
	if (unlikely(len == 0 || len > tx->g.max_msg))
		return -EMSGSIZE;
	uint32_t k = (len + (1u << tx->g.chunk_shift) - 1) >> tx->g.chunk_shift;
	if (unlikely(tx->snd_limit) && tx->ba.used == 0)
		xio__chan_tx_budget(tx); /* the receiver's SO_RCVBUF may be new */
	/* A whole message past the budget only when nothing is in flight. */
	int64_t c = budget_left(tx) >= k || tx->ba.used == 0 ? xio_bufalloc_get(&tx->ba, k)
							     : -ENOBUFS;
	if (c == -ENOBUFS) {
		int r = xio__chan_reclaim(tx);
		if (r < 0)
			return r;
		xio__chan_tx_budget(tx);
		if (budget_left(tx) < k && tx->ba.used)
			return -ENOBUFS;
		c = xio_bufalloc_get(&tx->ba, k);
		if (c == -ENOBUFS && tx_grow(tx))
			c = xio_bufalloc_get(&tx->ba, k);
	}
	if (c >= 0)
		tx->unposted++;
	return c < 0 ? c : c << tx->g.chunk_shift;
}

static inline uint32_t tx_room(const struct xio_chan_tx *tx)
{
	uint32_t room = xio_bufalloc_max_contig(&tx->ba);
	if (unlikely(tx->budget)) {
		uint32_t b = budget_left(tx);
		return room < b ? room : b;
	}
	return room;
}

uint64_t xio__chan_tx_capacity(const struct xio_chan_tx *tx)
{
	uint32_t n = tx->budget && tx->budget < tx->ba.n ? tx->budget : tx->ba.n;
	return (uint64_t)n << tx->g.chunk_shift;
}

int xio__chan_tx_room(struct xio_chan_tx *tx)
{
	/* Returns waiting in the free ring count: the write takes them back. */
	return tx_room(tx) > 0 || xio__chan_tx_can_reclaim(tx);
}

int64_t xio__chan_alloc_upto(struct xio_chan_tx *tx, uint32_t len, uint32_t *got)
{
	if (unlikely(tx->err))
		return tx->err;
	if (len > tx->g.max_msg)
		len = tx->g.max_msg;
	uint32_t want = (len + (1u << tx->g.chunk_shift) - 1) >> tx->g.chunk_shift;
	if (unlikely(tx->snd_limit) && tx->ba.used == 0)
		xio__chan_tx_budget(tx); /* the receiver's SO_RCVBUF may be new */
	uint32_t room = tx_room(tx);
	if (room < want) {
		int r = xio__chan_reclaim(tx);
		if (r < 0)
			return r;
		xio__chan_tx_budget(tx);
		room = tx_room(tx);
		if (room < want && tx_grow(tx))
			room = tx_room(tx);
	}
	if (room == 0)
		return -ENOBUFS;
	if (room < want) {
		want = room;
		len = room << tx->g.chunk_shift;
	}
	int64_t c = xio_bufalloc_get(&tx->ba, want);
	if (c < 0)
		return c;
	tx->unposted++;
	*got = len;
	return c << tx->g.chunk_shift;
}

void xio__chan_unalloc(struct xio_chan_tx *tx, uint32_t off)
{
	if (xio_bufalloc_put(&tx->ba, off >> tx->g.chunk_shift) >= 0 && tx->unposted)
		tx->unposted--;
}

int xio__chan_post(struct xio_chan_tx *tx, uint32_t off, uint32_t len)
{
	struct xio_desc d = { .off = off, .len = len, .flags = 0, .seq = tx->seq++ };

	if (unlikely(tx->err))
		return tx->err;
	/* The ring has more slots than the area has chunks, so it can only be
	 * full if the receiver rewrote its consumer index. */
	struct xio_spsc q = data_q(&tx->g, &tx->data_prod);
	if (unlikely(xio_spsc_enqueue(&q, &d, 1, 1) != 1))
		return tx->err = -EPROTO;
	if (tx->unposted)
		tx->unposted--;
	return 0;
}

/* The sleeps this thread rang a doorbell for lately. A handful is enough:
 * a sender's batch goes to few sleeping processes at a time, and a miss
 * only costs one doorbell more. */
#define RUNG_SLOTS 4
static __thread uint64_t rung[RUNG_SLOTS];
static __thread unsigned rung_next;

int xio__wait_claim_batched(_Atomic uint32_t *w, _Atomic uint64_t *tok)
{
	if (atomic_load_explicit(w, memory_order_acquire) != XIO_WAIT_ARMED)
		return 0;
	/* Pairs with the release of the sleeper's arm: the token of that
	 * sleep, or of a newer one (then we ring: never a missed wake-up). */
	uint64_t t = atomic_load_explicit(tok, memory_order_relaxed);
	if (t)
		for (unsigned i = 0; i < RUNG_SLOTS; i++)
			if (rung[i] == t)
				return 0; /* that sleeper is woken already */
	if (!xio_wait_claim(w))
		return 0;
	if (t)
		rung[rung_next++ % RUNG_SLOTS] = t;
	return 1;
}

/*
 * The last `bytes` bytes posted, in order. The messages the receiver has
 * not read whole are still unreleased, so their payload is intact, and
 * their descriptors are still in the ring slots behind our producer index
 * (at most buf_chunks of them, fewer than the slots). The slots are shared
 * memory: each descriptor is copied and checked before use.
 */
int xio__chan_tx_tail(struct xio_chan_tx *tx, uint64_t bytes,
		      int (*fn)(void *arg, const void *p, size_t len), void *arg)
{
	struct xio_spsc q = data_q(&tx->g, &tx->data_prod);
	uint32_t prod = tx->data_prod, k = 0;
	uint64_t sum = 0;
	struct xio_desc d;
	while (sum < bytes) {
		if (k >= q.capacity)
			return -EPROTO;
		memcpy(&d, xio_spsc_slot(&q, prod - 1 - k), sizeof(d));
		if (!desc_ok(&tx->g, &d))
			return -EPROTO;
		sum += d.len;
		k++;
	}
	uint64_t skip = sum - bytes;
	for (uint32_t i = k; i > 0; i--) {
		memcpy(&d, xio_spsc_slot(&q, prod - i), sizeof(d));
		if (!desc_ok(&tx->g, &d) || skip >= d.len)
			return -EPROTO;
		int r = fn(arg, tx->g.buf + d.off + skip, d.len - skip);
		if (r < 0)
			return r;
		skip = 0;
	}
	return 0;
}

int xio__chan_tx_notify(struct xio_chan_tx *tx)
{
	_Atomic uint32_t *w = &tx->g.ctl->rx_waiting;
	/*
	 * Dekker-style handshake with the receiver's sleep in wait.c: we
	 * published a descriptor (release store of prod.tail), then load
	 * rx_waiting; the receiver stores rx_waiting = 1, then loads
	 * prod.tail. The full fences on both sides make it impossible for
	 * both loads to miss the other's store, so a receiver never sleeps on
	 * a descriptor nobody will ring for.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	/* Claiming it means further posts before the receiver wakes ring
	 * nothing more (one doorbell per sleep: the batched wake-up). */
	return xio__wait_claim_batched(w, &tx->g.ctl->rx_token);
}

/* Take descriptors off the ring into the cache, behind those still in it
 * (moved to the front first), as many as fit. Descriptors are copies in
 * private memory now: each is checked once; the good ones before a bad one
 * are delivered, then the channel fails. */
static inline void rx_take(struct xio_chan_rx *rx)
{
	if (rx->pos > 0) {
		memmove(rx->cache, rx->cache + rx->pos, (rx->n - rx->pos) * sizeof(rx->cache[0]));
		rx->n -= rx->pos;
		rx->pos = 0;
	}
	struct xio_spsc q = data_q(&rx->g, &rx->data_cons);
	int64_t got = xio_spsc_dequeue(&q, rx->cache + rx->n, XIO_RX_BURST - rx->n);
	if (unlikely(got < 0)) {
		rx->err = (int)got;
		return;
	}
	for (unsigned end = rx->n + (unsigned)got; rx->n < end; rx->n++)
		if (unlikely(!desc_ok(&rx->g, &rx->cache[rx->n]))) {
			rx->err = -EPROTO;
			break;
		}
}

/* Make sure cache[pos] is a valid descriptor; 1 if one is there, 0 if the
 * ring is empty, -EPROTO. */
static inline int rx_fill(struct xio_chan_rx *rx)
{
	if (rx->pos < rx->n)
		return 1;
	if (unlikely(rx->err))
		return rx->err;
	rx->pos = rx->n = 0;
	rx->consumed = 0;
	rx_take(rx);
	return rx->n > 0 ? 1 : rx->err;
}

int xio__chan_rx_pending(struct xio_chan_rx *rx)
{
	if (rx->pos < rx->n)
		return 1;
	struct xio_spsc q = data_q(&rx->g, &rx->data_cons);
	/* An impossible index reads as pending: the read that follows
	 * reports -EPROTO, rather than a reader that never sleeps or ends. */
	return xio_spsc_count(&q) != 0;
}

void xio__chan_release(struct xio_chan_rx *rx, uint32_t off)
{
	/* The flush may have claimed a sleeping sender's wake-up (cleared its
	 * tx_waiting): keep the debt, the next xio__chan_flush() reports it. */
	if (rx->nrel == XIO_RX_BURST) {
		if (xio__chan_flush(rx) > 0)
			rx->ring_due = 1;
		rx->look_again = 1; /* the read's count is not published yet */
	}
	if (rx->nrel < XIO_RX_BURST)
		rx->rel[rx->nrel++] = off;
}

int xio__chan_flush(struct xio_chan_rx *rx)
{
	int due = rx->ring_due;
	rx->ring_due = 0;
	if (rx->nrel == 0 && !rx->look_again)
		return due;
	rx->look_again = 0;
	if (rx->nrel == 0) {
		/* Returns went out in the middle of a read (release, above),
		 * before its count: a sender that looked then may have armed
		 * and gone to sleep on the old count. Look for it again. */
		atomic_thread_fence(memory_order_seq_cst);
		return xio__wait_claim_batched(&rx->g.ctl->tx_waiting, &rx->g.ctl->tx_token) || due;
	}
	struct xio_spsc q = free_q(&rx->g, &rx->free_prod);
	int64_t n = xio_spsc_enqueue(&q, rx->rel, rx->nrel, 0);
	if (unlikely(n != (int64_t)rx->nrel)) {
		/* More buffers out than the sender has: it is lying. */
		rx->nrel = 0;
		return rx->err = -EPROTO;
	}
	rx->nrel = 0;
	/* Same handshake as xio__chan_tx_notify, for a sender asleep on a
	 * full channel. */
	_Atomic uint32_t *w = &rx->g.ctl->tx_waiting;
	atomic_thread_fence(memory_order_seq_cst);
	return xio__wait_claim_batched(w, &rx->g.ctl->tx_token) || due;
}

static ssize_t rx_copy(struct xio_chan_rx *rx, void *dst, size_t len, int peek)
{
	size_t copied = 0;
	uint32_t pos = rx->pos, consumed = rx->consumed;

	while (copied < len) {
		if (pos == rx->n) {
			/* Peek sees only what is cached (see xio__chan_peek). */
			if (peek)
				break;
			rx->pos = pos; /* all of the cache is consumed */
			int r = rx_fill(rx);
			pos = rx->pos;
			consumed = rx->consumed;
			if (r <= 0) {
				if (r < 0 && copied == 0)
					return r;
				break;
			}
		}
		const struct xio_desc *d = &rx->cache[pos];
		size_t take = d->len - consumed;
		if (take > len - copied)
			take = len - copied;
		memcpy((char *)dst + copied, rx->g.buf + d->off + consumed, take);
		copied += take;
		consumed += (uint32_t)take;
		if (consumed == d->len) {
			if (!peek)
				xio__chan_release(rx, d->off);
			pos++;
			consumed = 0;
		}
	}
	if (!peek) {
		rx->pos = pos;
		rx->consumed = consumed;
	}
	return (ssize_t)copied;
}

ssize_t xio__chan_read(struct xio_chan_rx *rx, void *dst, size_t len)
{
	return rx_copy(rx, dst, len, 0);
}

/* Peek returns at most what one fill of the cache holds (XIO_RX_BURST
 * messages), which is what MSG_PEEK promises anyway: some of the data. */
ssize_t xio__chan_peek(struct xio_chan_rx *rx, void *dst, size_t len)
{
	if (rx->pos == rx->n) {
		int r = rx_fill(rx);
		if (r <= 0)
			return r;
	}
	return rx_copy(rx, dst, len, 1);
}

int xio__chan_next(struct xio_chan_rx *rx, uint32_t *off, uint32_t *skip, uint32_t *len)
{
	int r = rx_fill(rx);
	if (r <= 0)
		return r;
	const struct xio_desc *d = &rx->cache[rx->pos];
	rx->loans++;
	*off = d->off;
	*skip = rx->consumed; /* a copying read may have taken the start */
	*len = d->len - rx->consumed;
	rx->pos++;
	rx->consumed = 0;
	return 1;
}

size_t xio__chan_readable_upto(struct xio_chan_rx *rx, size_t want)
{
	size_t bytes = xio__chan_readable(rx);
	if (bytes >= want || rx->err || rx->n - rx->pos >= XIO_RX_BURST)
		return bytes;
	/* An SO_RCVLOWAT above what the cached messages hold: more of them. */
	rx_take(rx);
	return xio__chan_readable(rx);
}

size_t xio__chan_readable(struct xio_chan_rx *rx)
{
	size_t bytes = 0;
	for (uint32_t i = rx->pos; i < rx->n; i++)
		bytes += rx->cache[i].len - (i == rx->pos ? rx->consumed : 0);
	if (bytes == 0 && rx_fill(rx) > 0)
		return xio__chan_readable(rx);
	return bytes;
}

/* --- giving memory back (reclaim.c) ------------------------------------- */

#define PAGE 4096u

/* Give back the whole pages of [p, p + len). */
static void punch(char *p, size_t len)
{
	uintptr_t lo = ((uintptr_t)p + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
	uintptr_t hi = ((uintptr_t)p + len) & ~(uintptr_t)(PAGE - 1);
	if (hi > lo)
		xio_sys_madvise((void *)lo, hi - lo, MADV_REMOVE);
}

/* The free ring's slots, but for the pages that hold entries
 * [lo, lo + n) (returns the sender has not taken back yet). */
static void punch_free_ring(const struct xio_chan_geom *g, uint32_t lo, uint32_t n)
{
	char *slots = (char *)(g->free + 1);
	size_t bytes = (size_t)g->slots * sizeof(uint32_t);
	if (n == 0) {
		punch(slots, bytes);
		return;
	}
	uint32_t first = lo & (g->slots - 1), last = (lo + n - 1) & (g->slots - 1);
	size_t a = (size_t)first * sizeof(uint32_t) / PAGE * PAGE;
	size_t b = ((size_t)last * sizeof(uint32_t) / PAGE + 1) * PAGE;
	if (first <= last) { /* live pages [a, b): the rest goes */
		punch(slots, a);
		if (b < bytes)
			punch(slots + b, bytes - b);
	} else if (b < a) { /* live [a, end) and [0, b): [b, a) goes */
		punch(slots + b, a - b);
	}
}

/* Everything of direction g but its headers and the live free entries. */
static void punch_direction(const struct xio_chan_geom *g, uint32_t free_lo, uint32_t free_n)
{
	if (g->huge)
		return; /* a hugepage goes back whole or not at all */
	punch(g->buf, g->buf_bytes);
	punch((char *)(g->data + 1), (size_t)g->slots * sizeof(struct xio_desc));
	punch_free_ring(g, free_lo, free_n);
}

/* Take back what came back; with nothing out then, start the window over
 * at win_min. 1 if it did, 0 if something is still out, or -EPROTO. */
static int tx_start_over(struct xio_chan_tx *tx)
{
	int r = xio__chan_reclaim(tx);
	if (r < 0)
		return r;
	if (tx->ba.used || tx->unposted)
		return 0;
	xio_bufalloc_reset(&tx->ba, tx->win_min);
	return 1;
}

int xio__chan_tx_shrink(struct xio_chan_tx *tx)
{
	_Atomic uint32_t *w = &tx->g.ctl->shrink;
	uint32_t s = atomic_load_explicit(w, memory_order_acquire);
	if (tx->err)
		return tx->err;
	if (tx->small && s == XIO_SHRINK_IDLE)
		return 1;
	/* The receiver gave it back already (DONE), or nobody is at it. */
	if (s != XIO_SHRINK_DONE &&
	    (s != XIO_SHRINK_IDLE ||
	     !atomic_compare_exchange_strong_explicit(w, &s, XIO_SHRINK_SELF, memory_order_acq_rel,
						      memory_order_relaxed)))
		return 0;
	int quiet = tx_start_over(tx);
	if (quiet > 0 && s == XIO_SHRINK_IDLE)
		punch_direction(&tx->g, 0, 0); /* nothing in flight: no live entry */
	else if (quiet > 0 && !tx->g.huge) /* DONE: the receiver kept the page */
		punch_free_ring(&tx->g, 0, 0); /* of our returns, all taken back now */
	if (quiet > 0) {
		tx->small = 1;
		atomic_store_explicit(&tx->g.ctl->tx_small, 1, memory_order_relaxed);
	}
	/* From SELF or DONE back to IDLE: a DONE taken over is settled too. */
	atomic_store_explicit(w, XIO_SHRINK_IDLE, memory_order_release);
	return quiet;
}

int xio__chan_tx_enter_slow(struct xio_chan_tx *tx)
{
	_Atomic uint32_t *w = &tx->g.ctl->shrink;
	if (tx->small) {
		tx->small = 0;
		atomic_store_explicit(&tx->g.ctl->tx_small, 0, memory_order_relaxed);
	}
	/* The receiver decides within microseconds (a membarrier and a few
	 * madvise calls); one that holds the word for a second is broken or
	 * hostile, and only this connection pays. */
	for (unsigned i = 0; i < 4096 + 1000; i++) {
		uint32_t s = atomic_load_explicit(w, memory_order_acquire);
		if (s == XIO_SHRINK_IDLE)
			return 0;
		if (s == XIO_SHRINK_DONE) {
			/* Given back while we were away: start the window over
			 * (what came back is taken first: it is all there is). */
			int r = tx_start_over(tx);
			if (r < 0)
				return r;
			atomic_compare_exchange_strong_explicit(w, &s, XIO_SHRINK_IDLE,
								memory_order_acq_rel,
								memory_order_relaxed);
			atomic_store_explicit(&tx->g.ctl->tx_small, 0, memory_order_relaxed);
			continue;
		}
		if (s != XIO_SHRINK_ASK)
			break; /* SELF is ours, taken only with writes excluded: forged */
		if (i >= 4096)
			xio_sys_sleep_ms(1);
		else if (i >= 64)
			xio_sys_sched_yield(); /* a batch's give-back takes microseconds */
	}
	return tx->err = -EPROTO;
}

int xio__chan_rx_shrink_ask(struct xio_chan_rx *rx)
{
	struct xio_chan_ctl *ctl = rx->g.ctl;
	if (rx->g.huge || rx->err || rx->pos < rx->n || rx->nrel || rx->loans ||
	    !atomic_load_explicit(&ctl->tx_mb, memory_order_relaxed) ||
	    atomic_load_explicit(&ctl->tx_small, memory_order_relaxed) ||
	    atomic_load_explicit(&ctl->tx_active, memory_order_relaxed))
		return 0;
	struct xio_spsc q = data_q(&rx->g, &rx->data_cons);
	if (xio_spsc_count(&q) != 0)
		return 0;
	uint32_t s = XIO_SHRINK_IDLE;
	return atomic_compare_exchange_strong_explicit(&ctl->shrink, &s, XIO_SHRINK_ASK,
						       memory_order_acq_rel, memory_order_relaxed);
}

int xio__chan_rx_shrink_finish(struct xio_chan_rx *rx, int barrier_ok)
{
	struct xio_chan_ctl *ctl = rx->g.ctl;
	/* After the membarrier: a sender that set tx_active before it is
	 * seen here; one that sets it after sees ASK and waits for us. */
	struct xio_spsc q = data_q(&rx->g, &rx->data_cons);
	int go = barrier_ok && atomic_load_explicit(&ctl->tx_active, memory_order_acquire) == 0 &&
		 xio_spsc_count(&q) == 0;
	if (go) {
		/* Returns the sender has not taken back are live: from its
		 * consumer index to ours. */
		uint32_t cons = __atomic_load_n(&rx->g.free->cons.tail, __ATOMIC_ACQUIRE);
		uint32_t live = rx->free_prod - cons;
		if (live < rx->g.slots)
			punch_direction(&rx->g, cons, live);
		else
			go = 0; /* an impossible index: leave it alone */
	}
	if (go)
		atomic_store_explicit(&ctl->tx_small, 1, memory_order_relaxed);
	atomic_store_explicit(&ctl->shrink, go ? XIO_SHRINK_DONE : XIO_SHRINK_IDLE,
			      memory_order_release);
	return go;
}
