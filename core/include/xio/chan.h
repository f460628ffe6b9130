/*
 * chan.h - one direction of a connection, as seen by its sender (struct
 * xio_chan_tx) or its receiver (struct xio_chan_rx). Pure shared memory:
 * no fds, no syscalls. Whoever must ring the peer's doorbell is told so by
 * the return value of the *_notify functions; conn.c rings it.
 *
 * Everything read from the segment is untrusted (seg.h): ring headers are
 * compared with the values this process computed before every ring call,
 * descriptors are checked before their payload is touched, returned offsets
 * are checked against the sender's private allocator. A violation marks the
 * channel broken (-EPROTO) for good.
 */
#ifndef XIO_CORE_CHAN_H
#define XIO_CORE_CHAN_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "xio/bufalloc.h"
#include "xio/seg.h"

struct rte_ring;

#define XIO_RX_BURST 32

/* Trusted, private copy of what this process expects of one direction. */
struct xio_chan_geom {
	struct xio_chan_ctl *ctl;
	struct rte_ring *data; /* descriptors, sender -> receiver */
	struct rte_ring *free; /* offsets, receiver -> sender */
	char *buf;             /* buffer area */
	uint32_t buf_bytes;
	uint32_t chunk_shift;
	uint32_t max_msg;
	uint32_t slots;
	int huge; /* on hugepages: nothing is given back (reclaim.c) */
	uint32_t win_start; /* bytes the window starts at (params.win_start) */
};

/* The window a direction starts with (and starts over with after it was
 * idle), in bytes, unless the monitor's buffer-start says otherwise: the
 * kernel's initial receive buffer (tcp_rmem[1]). */
#define XIO_WIN_START (128u * 1024u)

struct xio_chan_tx {
	struct xio_chan_geom g;
	struct xio_bufalloc ba;
	/* This side's ring indices, private (spsc.h): never read back from
	 * the segment, where the peer could move them. */
	uint32_t data_prod, free_cons;
	uint32_t seq;
	int err; /* 0, or -EPROTO once the receiver broke the protocol */
	/* What the direction may use (chan.c, "window and budget"): the
	 * allocator hands out ba.n chunks, from win_min up to win_max as the
	 * connection is kept full; budget: chunks in flight that SO_SNDBUF
	 * and the receiver's
	 * SO_RCVBUF allow (0: no bound but the window). snd_limit: the
	 * program's SO_SNDBUF as getsockopt reports it, 0 if not set. */
	uint32_t win_min, win_max, budget, snd_limit;
	uint32_t unposted; /* allocations not posted (or given back) yet */
	int small;         /* gave its memory back; tx_small says so */
};

struct xio_chan_rx {
	struct xio_chan_geom g;
	struct xio_desc cache[XIO_RX_BURST]; /* dequeued, not yet delivered */
	uint32_t pos, n;                     /* next cached descriptor, count */
	uint32_t consumed;                   /* bytes of cache[pos] already read */
	uint32_t rel[XIO_RX_BURST];          /* offsets to give back */
	uint32_t nrel;
	uint32_t data_cons, free_prod;       /* private ring indices (spsc.h) */
	int ring_due; /* a flush inside release() owes the sender a doorbell */
	uint32_t loans; /* messages taken whole (xio__chan_next), not released */
	int look_again; /* returns went out mid-read: the next flush looks for a
			 * sleeping sender even with nothing to return */
	int err;
};

/* Fill the geometry of direction d of a mapped segment. */
void xio__chan_geom(struct xio_chan_geom *g, void *base, const struct xio_seg_params *p,
		    const struct xio_seg_layout *l, unsigned d);

int xio__chan_tx_init(struct xio_chan_tx *tx, const struct xio_chan_geom *g);
void xio__chan_tx_fini(struct xio_chan_tx *tx);
void xio__chan_rx_init(struct xio_chan_rx *rx, const struct xio_chan_geom *g);

/*
 * Sender side.
 * xio__chan_alloc: reserve room for a message of len bytes (1..max_msg);
 *   returns the offset in the buffer area, -ENOBUFS (full now), -EMSGSIZE,
 *   or -EPROTO.
 * xio__chan_alloc_upto: like alloc, but takes less than len if only less
 *   fits now (at least one chunk); *got receives the granted size.
 * xio__chan_post: publish a message at off of len bytes. Returns 0 or -EPROTO.
 * xio__chan_unalloc: give back an allocation that will not be posted.
 * xio__chan_reclaim: take back what the receiver released; returns how
 *   many messages came back, or -EPROTO.
 * xio__chan_tx_notify: after posting, 1 if the receiver sleeps and must be
 *   woken (the flag is cleared, so only one doorbell per sleep).
 */
int64_t xio__chan_alloc(struct xio_chan_tx *tx, uint32_t len);
int64_t xio__chan_alloc_upto(struct xio_chan_tx *tx, uint32_t len, uint32_t *got);
int xio__chan_post(struct xio_chan_tx *tx, uint32_t off, uint32_t len);
void xio__chan_unalloc(struct xio_chan_tx *tx, uint32_t off);
int xio__chan_reclaim(struct xio_chan_tx *tx);
int xio__chan_tx_notify(struct xio_chan_tx *tx);
/* Claim the arm of word w (with its sleep token at tok) unless this thread
 * already rang a doorbell for that sleep (seg.h, sleep tokens): 1 if the
 * caller must ring now. Call after a full fence. */
int xio__wait_claim_batched(_Atomic uint32_t *w, _Atomic uint64_t *tok);
/* Call fn, in order, on the pieces of the last `bytes` bytes posted (the
 * part the receiver did not read, when a connection leaves shared memory).
 * Returns 0, fn's first error, or -EPROTO if the ring no longer holds them. */
int xio__chan_tx_tail(struct xio_chan_tx *tx, uint64_t bytes,
		      int (*fn)(void *arg, const void *p, size_t len), void *arg);
/* 1 if the receiver has released something that reclaim would take back. */
int xio__chan_tx_can_reclaim(struct xio_chan_tx *tx);
static inline void *xio__chan_tx_ptr(const struct xio_chan_tx *tx, uint32_t off)
{
	return tx->g.buf + off;
}

/*
 * The sender's part in giving memory back (reclaim.c): it touches its area
 * and data ring only between xio__chan_tx_enter (0, or the error a write
 * returns) and xio__chan_tx_leave, which ends that only once no
 * allocation is out unposted. Enter is two stores and a load on lines the
 * sender writes anyway; the receiver's membarrier makes that enough.
 */
int xio__chan_tx_enter_slow(struct xio_chan_tx *tx);
static inline int xio__chan_tx_enter(struct xio_chan_tx *tx)
{
	atomic_store_explicit(&tx->g.ctl->tx_active, 1, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	if (__builtin_expect(
		    atomic_load_explicit(&tx->g.ctl->shrink, memory_order_relaxed) != 0 || tx->small,
		    0))
		return xio__chan_tx_enter_slow(tx);
	return 0;
}
static inline void xio__chan_tx_leave(struct xio_chan_tx *tx)
{
	if (tx->unposted == 0)
		atomic_store_explicit(&tx->g.ctl->tx_active, 0, memory_order_release);
}
/* Recompute the budget from snd_limit and the receiver's rx_rcvbuf. */
void xio__chan_tx_budget(struct xio_chan_tx *tx);
/* Chunks a write could take now (window, budget and the free ring's
 * returns considered): poll's POLLOUT. */
int xio__chan_tx_room(struct xio_chan_tx *tx);
/* Bytes the direction may hold in flight now: the window, or the budget
 * if smaller (POLLOUT's "a third of it free", as tcp_poll). */
uint64_t xio__chan_tx_capacity(const struct xio_chan_tx *tx);

/*
 * Giving a quiet direction's memory back (reclaim.c, docs/design.md
 * "Memory that follows the traffic"): whole pages of its area and ring
 * slots go back to the kernel (MADV_REMOVE); the next use faults fresh
 * zero pages in.
 * xio__chan_tx_shrink: by the sender, with every write of the direction
 *   excluded by the caller: 1 if given back (or already small), 0 if
 *   something is in flight or the receiver is at it, -errno.
 * xio__chan_rx_shrink_ask: by the receiver, with its reads excluded: 1 if
 *   it may try (it took the shrink word; a membarrier must follow before
 *   xio__chan_rx_shrink_finish), 0 if there is nothing to do.
 * xio__chan_rx_shrink_finish: after that membarrier (barrier_ok 0: it
 *   failed): 1 if given back, 0 if the sender was at work (the word is
 *   put back).
 */
int xio__chan_tx_shrink(struct xio_chan_tx *tx);
int xio__chan_rx_shrink_ask(struct xio_chan_rx *rx);
int xio__chan_rx_shrink_finish(struct xio_chan_rx *rx, int barrier_ok);

/*
 * Receiver side.
 * xio__chan_read: copy up to len bytes out; returns the count (0 when
 *   nothing is queued) or -EPROTO. Releases consumed messages.
 * xio__chan_peek: like read, but consumes nothing.
 * xio__chan_next: take the next message whole (zero copy): its payload is
 *   at *off + *skip in the buffer area, *len bytes (skip > 0 when copying
 *   reads took its start); returns 1, 0 when nothing is queued, or -EPROTO.
 *   *off must later be given to xio__chan_release.
 * xio__chan_release: queue off for return to the sender.
 * xio__chan_flush: return queued offsets; then 1 if the sender sleeps on a
 *   full channel and must be woken, 0 if not, or -EPROTO.
 * xio__chan_readable: bytes queued now (counting up to max_count messages).
 */
ssize_t xio__chan_read(struct xio_chan_rx *rx, void *dst, size_t len);
ssize_t xio__chan_peek(struct xio_chan_rx *rx, void *dst, size_t len);
int xio__chan_next(struct xio_chan_rx *rx, uint32_t *off, uint32_t *skip, uint32_t *len);
void xio__chan_release(struct xio_chan_rx *rx, uint32_t off);
int xio__chan_flush(struct xio_chan_rx *rx);
int xio__chan_rx_pending(struct xio_chan_rx *rx);
size_t xio__chan_readable(struct xio_chan_rx *rx);
/* The same, taking more descriptors off the ring while fewer than want
 * bytes are cached (SO_RCVLOWAT). */
size_t xio__chan_readable_upto(struct xio_chan_rx *rx, size_t want);
static inline const void *xio__chan_rx_ptr(const struct xio_chan_rx *rx, uint32_t off)
{
	return rx->g.buf + off;
}

#endif /* XIO_CORE_CHAN_H */
