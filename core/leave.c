/*
 * leave.c - moving a connection from shared memory back to its kernel TCP
 * socket, at an exact byte offset in each direction, without losing,
 * duplicating or reordering a byte (docs/design.md, "Leaving shared
 * memory").
 *
 * Every accelerated connection is a connected kernel socket that carries
 * only doorbell bytes, each one owed for a claim of a waiting word
 * (seg.h). A side that leaves:
 *   1. stops reading the ring, and publishes how many bytes of the peer's
 *      stream it delivered (rx_left_bytes, then rx_left);
 *   2. turns its waiting words to XIO_WAIT_LEFT, so the peer can never
 *      ring again, and reads the doorbell bytes already owed: after them
 *      the kernel socket holds only the peer's data;
 *   3. publishes tx_left: the ring holds its stream up to tx_left_bytes,
 *      and everything after comes over the kernel socket;
 *   4. wakes the peer (its last doorbells, ahead of any data);
 *   5. if the peer stopped reading the ring too, sends again, over the
 *      kernel, what the peer did not read, before anything else.
 * The peer, when it sees tx_left (xio__conn_follow), does 5 and 2 for its
 * own side, reads what is left in the ring, and then the kernel socket.
 *
 * Where a gap cannot be avoided (the peer closed, or left itself, with
 * data in the ring that this side will not read), the connection is
 * reset: the programs see ECONNRESET, never a silently shortened stream.
 *
 * Step 5 never blocks (resend.c): what the kernel does not take at once
 * stays pending, at the head of the socket's outgoing stream, and goes
 * out as the kernel takes it.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <rte_ring.h>

#include "xio/conn.h"
#include "xio/sys.h"

/* Abort the kernel connection (RST to the peer) and tell the peer's
 * channel side, so that both programs see a reset, not a short stream. */
void xio__sock_reset(int fd)
{
	struct sockaddr sa = { .sa_family = AF_UNSPEC };
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	xio_sys_setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	XIO__SC(SYS_connect, fd, &sa, sizeof(sa), 0, 0, 0); /* disconnects: RST */
}

int xio__conn_gap_reset(struct xio_conn *c, int fd)
{
	/* The RST first: a peer that sees tx_fin then finds the reset on its
	 * socket (xio__conn_rx_state) and reports it, not a plain end of file
	 * after a stream cut short. */
	xio__sock_reset(fd);
	atomic_store_explicit(&c->rx.g.ctl->rx_closed, XIO_RX_RESET, memory_order_release);
	atomic_store_explicit(&c->tx.g.ctl->tx_fin, 1, memory_order_release);
	return -ECONNRESET;
}

/* The same, and nothing of a resend will go any more. */
static int reset(struct xio_conn *c)
{
	int r = xio__conn_gap_reset(c, c->fd);
	xio__resend_drop(c);
	return r;
}

/* Step 2: nobody may claim our words any more; read what is owed (and
 * the peer's leave bell, if bell). The bytes are on their way (a claim is
 * followed by its send): wait for them, boundedly, since the program's
 * data comes right behind. */
static void settle_for_good(struct xio_conn *c, unsigned bell)
{
	unsigned owed = bell;
	owed += atomic_exchange(&c->rx.g.ctl->rx_waiting, XIO_WAIT_LEFT) == XIO_WAIT_CLAIMED;
	owed += atomic_exchange(&c->tx.g.ctl->tx_waiting, XIO_WAIT_LEFT) == XIO_WAIT_CLAIMED;
	for (int i = 0; i < 100 && (owed || atomic_load_explicit(&c->owed_late, memory_order_relaxed)); i++) {
		xio__conn_take_owed(c, owed, 10);
		owed = 0;
	}
}

/* Step 5: our stream from offset `from` on (what the peer did not read
 * of it) goes over the kernel, ahead of anything we write later, as far
 * as the kernel takes it now (resend.c). 0: it is out; 1: some is pending
 * (the caller holds the resend flag); -errno. */
static int resend_from(struct xio_conn *c, uint64_t from)
{
	uint64_t posted = c->st.tx_bytes;
	c->left_tx_off = from;
	if (from > posted)
		return -EPROTO;
	if (from == posted)
		return 0;
	return xio__resend_start(c, posted - from);
}

/* The peer's delivered count if it reads our ring no more, else ~0. */
static uint64_t peer_read_upto(struct xio_conn *c)
{
	struct xio_chan_ctl *out = c->tx.g.ctl;
	if (!atomic_load_explicit(&out->rx_left, memory_order_acquire))
		return UINT64_MAX;
	return atomic_load_explicit(&out->rx_left_bytes, memory_order_relaxed);
}

/* 1 if the peer's socket is closed, so that it can send nothing again
 * over the kernel: the monitor says so (side_gone), or the kernel's FIN or
 * RST came, which is sooner when the peer was killed (the monitor marks a
 * side gone once no process holds its socket). While accelerated, the
 * peer never shuts its kernel socket down: a FIN is its close. Reads
 * nothing from the socket. */
static int peer_closed(struct xio_conn *c)
{
	if (atomic_load_explicit(&c->hdr->side_gone[1 - c->side], memory_order_acquire) ||
	    c->kernel_eof || c->kernel_err || c->kernel_errq)
		return 1;
	struct pollfd p = { .fd = c->fd, .events = POLLRDHUP };
	return xio_sys_poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Another process holding this side since a fork goes to the kernel
 * socket as soon as it sees hdr->left (sibling_left): from then on it reads
 * and writes it. So this is told last, once this side's own bytes of the
 * protocol are through the socket: its doorbells, its leave bell and what
 * it sends again, out, and the peer's doorbells and bell, in. Told sooner,
 * the sibling's data could come before our bell (the peer would take a
 * data byte for it), or the sibling could read the peer's bell as data. */
void xio__conn_tell_siblings(struct xio_conn *c)
{
	if (c->left && c->hdr)
		atomic_store_explicit(&c->hdr->left[c->side], c->left, memory_order_release);
}

/* Our ring stream ends at off: publish it, then never post again. */
static void publish_tx_left(struct xio_conn *c, uint64_t off, unsigned reason)
{
	struct xio_chan_ctl *out = c->tx.g.ctl;
	atomic_store_explicit(&out->tx_left_bytes, off, memory_order_relaxed);
	atomic_store_explicit(&out->tx_left, reason, memory_order_release);
	c->left = reason; /* the other holders are told last (xio__conn_tell_siblings) */
	atomic_thread_fence(memory_order_seq_cst);
}

/* Another process holding this side since a fork left it: this copy
 * goes to the kernel too, with nothing to do (the stream is the same). */
static int sibling_left(struct xio_conn *c)
{
	unsigned r = atomic_load_explicit(&c->hdr->left[c->side], memory_order_acquire);
	if (!r || c->left)
		return 0;
	c->left = r;
	c->rx_raw = 1;
	c->accel = 0;
	return 1;
}

/*
 * Several processes may hold this side (fork): exactly one of them moves
 * it, or two would each send the unread tail again. 1: we do it; 0: another
 * holder did (we are on the kernel now, as it is). A holder that died half
 * way is waited out for two seconds, then we go ahead.
 */
static int take_side(struct xio_conn *c)
{
	_Atomic uint32_t *w = &c->hdr->leaving[c->side];
	uint32_t none = 0, me = (uint32_t)xio_sys_getpid();
	if (atomic_compare_exchange_strong(w, &none, me) || none == me)
		return 1;
	for (int i = 0; i < 2000; i++) {
		if (sibling_left(c))
			return 0;
		xio_sys_sleep_ms(1);
	}
	return 1;
}

int xio__conn_adopt_left(struct xio_conn *c)
{
	return c->accel && c->hdr ? sibling_left(c) : 0;
}

int xio__conn_sibling_moving_slow(const struct xio_conn *c)
{
	if (!c->hdr || c->left)
		return 0;
	uint32_t w = atomic_load_explicit(&c->hdr->leaving[c->side], memory_order_acquire);
	return w && w != (uint32_t)xio_sys_getpid();
}

/* Another holder of this side (fork) is moving it to the kernel: our copy
 * of the channel state is not the current one, so we wait until it is done
 * and go to the kernel with it. One that died half way (2 s) leaves the
 * stream in a state nobody can vouch for: a reset, not a guess. */
static int await_sibling(struct xio_conn *c)
{
	for (int i = 0; i < 2000; i++) {
		if (sibling_left(c))
			return 0;
		xio_sys_sleep_ms(1);
	}
	c->rx_raw = 1;
	c->accel = 0;
	c->left = XIO_LEAVE_SHARED;
	xio__sock_reset(c->fd);
	return -ECONNRESET;
}

int xio__conn_leave_stale(struct xio_conn *c, unsigned reason)
{
	if (!c->accel || c->left || sibling_left(c))
		return 0;
	/* Our private copy of the state is stale: the process that used the
	 * side last published its counts and its producer index, and is not
	 * inside a call on it. Leaving needs no more than those. */
	c->st.rx_bytes = atomic_load_explicit(&c->rx.g.ctl->rx_bytes, memory_order_acquire);
	c->st.tx_bytes = atomic_load_explicit(&c->tx.g.ctl->tx_bytes, memory_order_acquire);
	c->tx.data_prod = __atomic_load_n(&c->tx.g.data->prod.tail, __ATOMIC_ACQUIRE);
	c->rx.pos = c->rx.n = 0;
	c->rx.data_cons = __atomic_load_n(&c->rx.g.data->cons.tail, __ATOMIC_ACQUIRE);
	return xio__conn_leave(c, reason);
}

/*
 * The leave bell. A side that leaves stops reading the ring: what the peer
 * posted and it did not read comes again over the kernel when the peer
 * follows, at its next call. A peer killed before then never sends it,
 * and its kernel would end the connection with a FIN: a shortened stream,
 * read as a plain end of file (perhaps by stdio or another program, which
 * the shim does not see). So the leaver rings the peer once more after its
 * last doorbells; only the follow reads that byte. A peer that dies
 * without following closes its socket with the byte unread, and its
 * kernel resets the connection instead: the leaver's program reads
 * ECONNRESET. The follow reads it last, once what it sends again is out:
 * one killed while it sends leaves it unread too. (One that had nothing
 * to send again costs a reset where a FIN would have done.) A peer leaving
 * at the same moment reads no bell: each leaver stores rx_left, then,
 * after a full fence, rings only if the peer's rx_left is not there, so of
 * two at once at least one does not ring; one that saw the other's
 * rx_left reads the other's bell, if it rings one, after its own step 5.
 */
static unsigned bell_decide(struct xio_conn *c)
{
	struct xio_chan_ctl *in = c->rx.g.ctl, *out = c->tx.g.ctl;
	uint32_t mine =
	    atomic_load_explicit(&out->rx_left, memory_order_acquire) ? XIO_BELL_NO : XIO_BELL_YES;
	atomic_store_explicit(&in->rx_left_bell, mine, memory_order_relaxed); /* before tx_left */
	return mine;
}

/* 1 if the peer rings a leave bell we must read: it is leaving at the same
 * moment and decided to (it decides right after its rx_left, which we
 * saw; one killed meanwhile is waited for 100 ms, then not counted). */
static unsigned bell_owed(struct xio_conn *c, unsigned mine)
{
	_Atomic uint32_t *theirs = &c->tx.g.ctl->rx_left_bell;
	if (mine == XIO_BELL_YES)
		return 0; /* the peer does not leave on its own: it follows */
	for (int i = 0; i < 100 && !atomic_load_explicit(theirs, memory_order_acquire); i++)
		xio_sys_sleep_ms(1);
	return atomic_load_explicit(theirs, memory_order_acquire) == XIO_BELL_YES;
}

static int follow_side(struct xio_conn *c);

static int leave_side(struct xio_conn *c, unsigned reason)
{
	if (!c->accel || c->left || sibling_left(c) || !take_side(c))
		return 0;
	struct xio_chan_ctl *in = c->rx.g.ctl, *out = c->tx.g.ctl;
	if (xio__conn_peer_left(c)) {
		/* It left first: follow; we read on from the kernel alone only
		 * if the ring holds nothing more for us (a gap otherwise). */
		int r = follow_side(c);
		if (r < 0)
			return r;
		return c->accel && !c->rx_raw ? reset(c) : 0;
	}
	/* Step 1. What the peer posted and we did not read must come again
	 * from the peer: one that closed or died cannot send it. One that
	 * only ended its stream (shutdown SHUT_WR: tx_fin without rx_closed)
	 * is alive and follows like any other; taking its end of stream for a
	 * close reset connections whose peer had simply finished writing. */
	if (xio__chan_rx_pending(&c->rx) > 0 &&
	    (atomic_load_explicit(&out->rx_closed, memory_order_acquire) || peer_closed(c)))
		return reset(c);
	uint64_t delivered = c->st.rx_bytes;
	c->left_rx_off = delivered;
	atomic_store_explicit(&c->leaving, 1, memory_order_release);
	atomic_store_explicit(&in->rx_left_bytes, delivered, memory_order_relaxed);
	atomic_store_explicit(&in->rx_left, reason, memory_order_release);
	c->rx_raw = 1;
	atomic_thread_fence(memory_order_seq_cst);
	unsigned bell = bell_decide(c);
	/* Step 2. */
	settle_for_good(c, 0);
	/* Step 3: our ring stream ends where the peer stopped reading it, if
	 * it is leaving too, else at what we posted. */
	uint64_t posted = c->st.tx_bytes, upto = peer_read_upto(c);
	uint64_t end = upto < posted ? upto : posted;
	c->left_tx_off = end;
	publish_tx_left(c, end, reason);
	/* Step 4: the peer may sleep; these doorbells go before any data. */
	unsigned ring = (unsigned)xio_wait_claim(&out->rx_waiting) +
			(unsigned)xio_wait_claim(&in->tx_waiting);
	while (ring--)
		xio__conn_doorbell(c);
	if (bell == XIO_BELL_YES)
		xio__conn_doorbell(c); /* the leave bell, after every owed doorbell */
	/* Step 5. A peer leaving at the same moment may have stopped reading
	 * only now: nothing of ours went to the kernel yet, so it is not too
	 * late to send it the rest. */
	upto = peer_read_upto(c);
	if (upto < end)
		end = upto;
	int r = end < posted ? resend_from(c, end) : 0;
	int pending = r > 0;
	c->accel = pending; /* the segment still holds what is pending */
	if (c->shut_wr && !pending)
		xio_sys_shutdown(c->fd, SHUT_WR); /* our end of stream, for the kernel now */
	if (r < 0 || (upto != UINT64_MAX && upto > posted))
		return reset(c);
	/* Its bell, once ours is sent again, or with SO_LINGER {1, 0} set
	 * while some of it is pending (resend_from). */
	if (bell_owed(c, bell))
		settle_for_good(c, 1);
	/* It left at the same moment and its ring stream runs past what we
	 * delivered, which we will not read: a gap, so a reset. */
	if (atomic_load_explicit(&in->tx_left, memory_order_acquire) &&
	    atomic_load_explicit(&in->tx_left_bytes, memory_order_relaxed) > delivered)
		return reset(c);
	/* It closed at the same moment with data we did not read. Its close
	 * looks for our tx_left after its own fence (xio__conn_fin): if it
	 * saw it, it is sending that data again and says so with its own
	 * tx_left; if it did not, we see its close here, and nobody will
	 * send the data: a gap. */
	if (xio__chan_rx_pending(&c->rx) > 0 &&
	    (atomic_load_explicit(&out->rx_closed, memory_order_acquire) || peer_closed(c))) {
		for (int i = 0; i < 100 && !atomic_load_explicit(&in->tx_left, memory_order_acquire); i++)
			xio_sys_sleep_ms(1);
		if (!atomic_load_explicit(&in->tx_left, memory_order_acquire))
			return reset(c);
	}
	return 0;
}

static int follow_side(struct xio_conn *c)
{
	if (xio__conn_sibling_moving(c))
		return await_sibling(c);
	if (!xio__conn_peer_left(c) || sibling_left(c) || !take_side(c))
		return 0;
	settle_for_good(c, 0);
	/* What the peer did not read of ours goes first; then our writes. */
	uint64_t posted = c->st.tx_bytes, upto = peer_read_upto(c);
	uint64_t end = upto < posted ? upto : posted;
	int r = end < posted ? resend_from(c, end) : 0;
	int pending = r > 0;
	c->left_tx_off = end;
	c->left_rx_off = atomic_load_explicit(&c->rx.g.ctl->tx_left_bytes, memory_order_relaxed);
	publish_tx_left(c, end, XIO_LEAVE_PEER);
	if (c->shut_wr && !pending)
		xio_sys_shutdown(c->fd, SHUT_WR);
	if (r < 0 || (upto != UINT64_MAX && upto > posted)) {
		c->rx_raw = 1;
		c->accel = 0;
		return reset(c);
	}
	/* The leave bell, last: had we died sending again, it would have
	 * been unread, and the peer would have read a reset. (With some of
	 * it pending, SO_LINGER {1, 0} does that now: resend_from.) The
	 * leaver decided on it before its tx_left, which we saw. */
	uint32_t bell = atomic_load_explicit(&c->tx.g.ctl->rx_left_bell, memory_order_relaxed);
	if (bell == XIO_BELL_YES)
		settle_for_good(c, 1);
	/* The rest of the peer's stream in the ring is read first (readv). */
	if (!xio__chan_rx_pending(&c->rx))
		xio__conn_ring_done(c);
	return 0;
}

void xio__conn_give_back_opts(struct xio_conn *c)
{
	if (c->left && c->rcvlowat > 1) {
		xio_sys_setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &c->rcvlowat,
				   sizeof(c->rcvlowat));
		c->rcvlowat = 1;
	}
}

/* The flag is held through the whole move: no poll or read of another
 * thread pushes, or finishes, a resend the move has not finished setting
 * up (its bell, tx_left). The other holders are told now, or by whoever
 * pushes the last pending byte. */
int xio__conn_leave(struct xio_conn *c, unsigned reason)
{
	xio__resend_lock(c, 1);
	int r = leave_side(c, reason);
	if (!xio__conn_resend_pending(c))
		xio__conn_tell_siblings(c);
	xio__resend_unlock(c);
	xio__conn_give_back_opts(c);
	return r;
}

int xio__conn_follow(struct xio_conn *c)
{
	if (c->left)
		return 0; /* followed already (by another thread) */
	xio__resend_lock(c, 1);
	int r = follow_side(c);
	if (!xio__conn_resend_pending(c))
		xio__conn_tell_siblings(c);
	xio__resend_unlock(c);
	xio__conn_give_back_opts(c);
	return r;
}

/*
 * Leaving for a side nobody joined (the monitor, for an acceptor that may
 * not map the segment). It is the protocol above with nothing to count:
 * the side never armed a waiting word, so the peer never rang it and its
 * socket holds only what the peer will send; it delivered and posted
 * nothing, so the peer sends its whole stream again (step 5 on the peer's
 * side, in xio__conn_follow). Every word read here may have been written
 * by the peer: a value the protocol cannot produce ends the connection.
 */
int xio_seg_leave_unjoined(void *base, const struct xio_seg_params *p, unsigned side,
			   unsigned reason, int fd, uint32_t who)
{
	struct xio_seg_layout l;
	if (side > 1 || xio_seg_layout(p, &l) < 0)
		return -EINVAL;
	struct xio_seg_hdr *h = base;
	struct xio_chan_ctl *in = (void *)((char *)base + l.chan_off[1 - side]);
	struct xio_chan_ctl *out = (void *)((char *)base + l.chan_off[side]);
	uint32_t none = 0;
	if (!atomic_compare_exchange_strong(&h->leaving[side], &none, who))
		return -EBUSY;
	/* Step 1: nothing delivered. */
	atomic_store_explicit(&in->rx_left_bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&in->rx_left, reason, memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	/* A client leaving at this very moment would have us wait for its
	 * leave bell, and the monitor never waits on a client (a hostile one
	 * could stall it at will): that one connection is reset instead. */
	if (atomic_load_explicit(&out->rx_left, memory_order_acquire))
		return -ECONNRESET;
	/* The leave bell, as any leaver's: a client killed before it sends
	 * its stream again then resets the acceptor's connection instead of
	 * ending it. */
	atomic_store_explicit(&in->rx_left_bell, XIO_BELL_YES, memory_order_relaxed);
	/* Step 2: never armed, so nothing is owed (else the peer wrote them). */
	int bad = atomic_exchange(&in->rx_waiting, XIO_WAIT_LEFT) != XIO_WAIT_IDLE;
	bad |= atomic_exchange(&out->tx_waiting, XIO_WAIT_LEFT) != XIO_WAIT_IDLE;
	/* Step 3: the ring stream of this side is empty. */
	atomic_store_explicit(&out->tx_left_bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&out->tx_left, reason, memory_order_release);
	atomic_store_explicit(&h->left[side], reason, memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	/* Step 4: a peer asleep on a read or on a full ring wakes and follows. */
	static const char bell = 0;
	unsigned ring = (unsigned)xio_wait_claim(&out->rx_waiting) +
			(unsigned)xio_wait_claim(&in->tx_waiting);
	ring += 1; /* the leave bell, after every doorbell */
	while (ring--)
		xio_sys_send(fd, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (bad)
		return -EPROTO;
	/* A gap: the peer posted into the ring and will not send it again,
	 * because it closed (or died) before it saw this, or left itself
	 * with its stream in the ring. A peer that follows publishes its own
	 * tx_left at offset 0. */
	uint64_t posted = atomic_load_explicit(&in->tx_bytes, memory_order_acquire);
	uint32_t peer_left = atomic_load_explicit(&in->tx_left, memory_order_acquire);
	uint64_t peer_end = atomic_load_explicit(&in->tx_left_bytes, memory_order_relaxed);
	if (peer_left && peer_end > 0)
		return -ECONNRESET;
	struct pollfd q = { .fd = fd, .events = POLLRDHUP };
	if (!peer_left && posted > 0 &&
	    (atomic_load_explicit(&h->side_gone[1 - side], memory_order_acquire) ||
	     atomic_load_explicit(&out->rx_closed, memory_order_acquire) ||
	     (xio_sys_poll(&q, 1, 0) > 0 && (q.revents & (POLLRDHUP | POLLHUP | POLLERR)))))
		return -ECONNRESET; /* closed, or killed (its FIN or RST came) */
	return 0;
}
