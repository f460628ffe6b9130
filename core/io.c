/*
 * io.c - reading and writing an accelerated or fallen-back connection, with
 * per-call flags; shared by the native API (api.c) and the LD_PRELOAD shim.
 * Returns counts or -errno; never touches errno.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include <rte_ring.h>

#include "xio/conn.h"
#include "xio/sys.h"

static size_t iov_total(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* --- kernel fallback ---------------------------------------------------- */

static ssize_t kernel_readv(struct xio_conn *c, const struct iovec *iov, int n, unsigned fl)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
	int f = (fl & XIO_IO_NONBLOCK ? MSG_DONTWAIT : 0) | (fl & XIO_IO_PEEK ? MSG_PEEK : 0) |
		(fl & XIO_IO_WAITALL ? MSG_WAITALL : 0);
	return xio_sys_recvmsg(c->fd, &m, f);
}

static ssize_t kernel_writev(struct xio_conn *c, const struct iovec *iov, int n, unsigned fl)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
	return xio_sys_sendmsg(c->fd, &m, MSG_NOSIGNAL | (fl & XIO_IO_NONBLOCK ? MSG_DONTWAIT : 0));
}

/* --- state checks ------------------------------------------------------- */

void xio__conn_after_release(struct xio_conn *c)
{
	if (xio__chan_flush(&c->rx) > 0)
		xio__conn_doorbell(c);
}

void xio__conn_after_post(struct xio_conn *c)
{
	if (xio__chan_tx_notify(&c->tx))
		xio__conn_doorbell(c);
}

/* The kernel connection's error, reported once as TCP does: afterwards
 * the socket reads as ended. */
static ssize_t take_kernel_error(struct xio_conn *c)
{
	if (c->kernel_errq) {
		int e = 0;
		socklen_t l = sizeof(e);
		xio_sys_getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l); /* clears it */
		c->kernel_errq = 0;
		if (e && !c->kernel_err)
			c->kernel_err = -e;
	}
	ssize_t r = c->kernel_err;
	c->kernel_err = 0;
	c->kernel_eof = 1;
	if (r)
		c->wrote_past_close = 1; /* reset already: no write gets through */
	/* EPIPE is what a socket that had the peer's FIN then gets for a reset:
	 * the peer ended the stream in order and its kernel reset afterwards
	 * (a doorbell byte left unread at its close). A read never returns
	 * EPIPE on Linux; it is end of file. */
	return r == -EPIPE ? 0 : r;
}

/* With the ring empty: 0 at end of file, -errno, or 1 for "nothing yet". */
ssize_t xio__conn_rx_state(struct xio_conn *c)
{
	if (c->rx.err)
		return c->rx.err;
	if (xio__conn_peer_tx_done(c) || c->shut_rd) {
		if (xio__chan_rx_pending(&c->rx))
			return 1;
		/* Gone without an orderly end (the monitor says so), or a
		 * stream the peer had to reset (leave.c: its tx_fin comes after
		 * the RST): a reset the kernel received is the truer answer, as
		 * over TCP. One look at the socket per end of stream. */
		if (!c->shut_rd) {
			xio__conn_drain(c);
			if (c->kernel_err || c->kernel_errq)
				return take_kernel_error(c);
		}
		return 0;
	}
	if (c->kernel_err || c->kernel_errq)
		return xio__chan_rx_pending(&c->rx) ? 1 : take_kernel_error(c);
	if (c->kernel_eof)
		return xio__chan_rx_pending(&c->rx) ? 1 : 0;
	return 1;
}

/* 0 if writing may go on, else the error to return. */
ssize_t xio__conn_tx_state(struct xio_conn *c)
{
	if (c->shut_wr)
		return -EPIPE;
	if (c->tx.err)
		return c->tx.err;
	if (xio__conn_peer_rx_gone(c))
		return -EPIPE;
	if (c->kernel_err || c->kernel_errq)
		return take_kernel_error(c);
	if (c->kernel_eof)
		return -EPIPE; /* the peer closed its socket without telling us */
	return 0;
}

/* --- waiting ------------------------------------------------------------ */

ssize_t xio__conn_rx_wait(struct xio_conn *c, unsigned fl)
{
	ssize_t s = xio__conn_rx_state(c);
	if (s <= 0)
		return s;
	if (fl & XIO_IO_NONBLOCK) {
		/* Look at the kernel socket once: the peer may be gone. */
		xio__conn_drain(c);
		s = xio__conn_rx_state(c);
		return s <= 0 ? s : -EAGAIN;
	}
	int r = xio__conn_wait(c, XIO_WAIT_RX);
	return r < 0 ? r : 1;
}

ssize_t xio__conn_tx_wait(struct xio_conn *c, unsigned fl)
{
	if (fl & XIO_IO_NONBLOCK) {
		/* Look at the kernel socket once, as a non-blocking read does: a
		 * program that writes again on EAGAIN makes no other call that
		 * would see the peer's FIN or RST, and side_gone comes only
		 * once no process holds the peer's socket (a forked child may). */
		xio__conn_drain(c);
		ssize_t s = xio__conn_tx_state(c);
		return s < 0 ? s : -EAGAIN;
	}
	int r = xio__conn_wait(c, XIO_WAIT_TX);
	return r < 0 ? r : 1;
}

/* --- reading ------------------------------------------------------------ */

static ssize_t rx_copy(struct xio_conn *c, const struct iovec *iov, int n, size_t skip,
		       unsigned fl)
{
	size_t got = 0;
	for (int i = 0; i < n; i++) {
		size_t len = iov[i].iov_len, off = 0;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		off = skip;
		skip = 0;
		ssize_t r = fl & XIO_IO_PEEK
				    ? xio__chan_peek(&c->rx, (char *)iov[i].iov_base + off, len - off)
				    : xio__chan_read(&c->rx, (char *)iov[i].iov_base + off, len - off);
		if (r < 0)
			return got ? (ssize_t)got : r;
		got += (size_t)r;
		if ((size_t)r < len - off || (fl & XIO_IO_PEEK))
			break; /* ring drained (peek looks at one stretch only) */
	}
	return (ssize_t)got;
}

/* After leave/follow: the ring's rest first, then the kernel socket. A
 * resend still pending goes on meanwhile (resend.c). */
static ssize_t left_readv(struct xio_conn *c, const struct iovec *iov, int n, unsigned fl)
{
	if (!c->rx_raw) {
		ssize_t r = rx_copy(c, iov, n, 0, fl);
		if (r != 0)
			return r;
		xio__conn_ring_done(c);
	}
	if (xio__conn_resend_pending(c)) {
		if (!(fl & XIO_IO_NONBLOCK))
			return xio__conn_resend_readv(c, iov, n, fl);
		xio__conn_resend_push(c, XIO_IO_NONBLOCK | XIO_IO_TRY);
	}
	return kernel_readv(c, iov, n, fl);
}

/* After leave/follow: behind what is pending of the resend, which goes
 * first, as the head of a full TCP send buffer would (resend.c). */
static ssize_t left_writev(struct xio_conn *c, const struct iovec *iov, int n, unsigned fl)
{
	if (xio__conn_resend_pending(c)) {
		if (c->shut_wr)
			return -EPIPE; /* its FIN waits for the resend */
		ssize_t r = xio__conn_resend_push(c, fl);
		if (r < 0)
			return r;
	}
	return kernel_writev(c, iov, n, fl);
}

ssize_t xio__conn_readv(struct xio_conn *c, const struct iovec *iov, int iovcnt, unsigned fl)
{
	if (!c->accel)
		return kernel_readv(c, iov, iovcnt, fl);
	if (c->left)
		return left_readv(c, iov, iovcnt, fl);
	size_t want = iov_total(iov, iovcnt), got = 0;
	if (want == 0)
		return 0;
	for (;;) {
		if ((xio__conn_peer_left(c) && !xio__chan_rx_pending(&c->rx)) ||
		    xio__conn_sibling_moving(c))
			return got ? (ssize_t)got : XIO__FOLLOW;
		ssize_t r = rx_copy(c, iov, iovcnt, got, fl);
		if (r > 0) {
			if (!(fl & XIO_IO_PEEK)) {
				/* The count before the returns and their doorbell: a
				 * sender woken by it decides POLLOUT by this count
				 * (readiness(), a third free), and would otherwise
				 * sleep again on the old one with nobody to wake it. */
				c->st.rx_bytes += (uint64_t)r;
				c->st.rx_msgs++;
				atomic_store_explicit(&c->rx.g.ctl->rx_bytes, c->st.rx_bytes,
						      memory_order_relaxed);
				atomic_store_explicit(&c->rx.g.ctl->rx_msgs, c->st.rx_msgs,
						      memory_order_relaxed);
				xio__conn_after_release(c);
			}
			got += (size_t)r;
			xio__conn_mem_note(c);
			if (!(fl & XIO_IO_WAITALL) || got == want || (fl & XIO_IO_PEEK))
				return (ssize_t)got;
			continue;
		}
		if (r < 0)
			return got ? (ssize_t)got : r;
		ssize_t w = xio__conn_rx_wait(c, fl);
		if (w <= 0)
			return got ? (ssize_t)got : w;
	}
}

/* --- writing ------------------------------------------------------------ */

static inline __attribute__((always_inline)) ssize_t
ring_writev(struct xio_conn *c, const struct iovec *iov, int iovcnt, unsigned fl);

ssize_t xio__conn_writev(struct xio_conn *c, const struct iovec *iov, int iovcnt, unsigned fl)
{
	if (!c->accel || c->left)
		return left_writev(c, iov, iovcnt, fl);
	if (xio__conn_peer_left(c))
		return XIO__FOLLOW;
	/* The area and ring are touched only inside enter/leave (chan.h):
	 * a receiver may be giving a quiet direction's memory back. */
	ssize_t r = xio__chan_tx_enter(&c->tx);
	if (r == 0)
		r = ring_writev(c, iov, iovcnt, fl);
	xio__chan_tx_leave(&c->tx);
	if (r > 0)
		xio__conn_mem_note(c);
	return r;
}

static inline __attribute__((always_inline)) ssize_t
ring_writev(struct xio_conn *c, const struct iovec *iov, int iovcnt, unsigned fl)
{
	size_t done = 0, want = iov_total(iov, iovcnt);
	int i = 0;
	size_t ioff = 0; /* offset inside iov[i] */

	/*
	 * The first write after the peer has closed in order (close(), both
	 * flags, nothing left unread) succeeds on TCP: the bytes leave, and
	 * the closed peer answers with a reset that makes the next write
	 * fail. So here: the bytes are dropped (nobody will read them), one
	 * byte goes to the kernel socket to draw the same reset from the
	 * peer's kernel, and the next write gets EPIPE. A peer that died or
	 * reset gets no such write.
	 */
	if (want && !c->shut_wr && !c->tx.err && !c->wrote_past_close &&
	    atomic_load_explicit(&c->tx.g.ctl->rx_closed, memory_order_acquire) == 1 &&
	    atomic_load_explicit(&c->rx.g.ctl->tx_fin, memory_order_acquire)) {
		static const char probe = 0;
		c->wrote_past_close = 1;
		xio_sys_send(c->fd, &probe, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		return (ssize_t)want;
	}

	while (done < want) {
		if (xio__conn_peer_left(c) || xio__conn_sibling_moving(c))
			return done ? (ssize_t)done : XIO__FOLLOW;
		ssize_t s = xio__conn_tx_state(c);
		if (s < 0) {
			xio__conn_after_post(c);
			return done ? (ssize_t)done : s;
		}
		size_t left = want - done;
		uint32_t ask = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left, got;
		int64_t off = xio__chan_alloc_upto(&c->tx, ask, &got);
		if (off == -ENOBUFS) {
			xio__conn_after_post(c); /* never wait while the receiver sleeps unwoken */
			ssize_t w = xio__conn_tx_wait(c, fl);
			if (w <= 0)
				return done ? (ssize_t)done : w;
			continue;
		}
		if (off < 0)
			return done ? (ssize_t)done : off;
		/* Gather got bytes from the iovecs into one message. */
		char *dst = xio__chan_tx_ptr(&c->tx, (uint32_t)off);
		size_t copied = 0;
		while (copied < got) {
			size_t take = iov[i].iov_len - ioff;
			if (take > got - copied)
				take = got - copied;
			memcpy(dst + copied, (const char *)iov[i].iov_base + ioff, take);
			copied += take;
			ioff += take;
			if (ioff == iov[i].iov_len) {
				i++;
				ioff = 0;
			}
		}
		int r = xio__chan_post(&c->tx, (uint32_t)off, got);
		if (r < 0)
			return done ? (ssize_t)done : r;
		done += got;
		c->st.tx_bytes += got;
		c->st.tx_msgs++;
		atomic_store_explicit(&c->tx.g.ctl->tx_bytes, c->st.tx_bytes, memory_order_relaxed);
		atomic_store_explicit(&c->tx.g.ctl->tx_msgs, c->st.tx_msgs, memory_order_relaxed);
	}
	xio__conn_after_post(c);
	return (ssize_t)done;
}

/* --- readiness ----------------------------------------------------------- */

/* Bytes we posted that the peer says it has not read (its count is only
 * ever compared, for this connection's own readiness and SIOCOUTQ). */
static inline uint64_t peer_unread(const struct xio_conn *c)
{
	return c->st.tx_bytes - atomic_load_explicit(&c->tx.g.ctl->rx_bytes, memory_order_relaxed);
}

/* What poll(2) would say; looks only, consumes nothing. */
static short readiness(struct xio_conn *c)
{
	short rev = 0;
	int err = c->rx.err || c->tx.err || c->kernel_err || c->kernel_errq;
	int peer_done = xio__conn_peer_tx_done(c) || c->kernel_eof;
	int rx_gone = xio__conn_peer_rx_gone(c);
	/* POLLRDNORM and POLLWRNORM go with POLLIN and POLLOUT, as tcp_poll
	 * reports them (a program may ask for those alone). */
	if (err) /* as a reset TCP socket reports */
		rev |= POLLERR | POLLIN | POLLRDNORM | POLLRDHUP | POLLHUP;
	int have = c->rcvlowat > 1 ? xio__chan_readable_upto(&c->rx, (size_t)c->rcvlowat) >=
					     (size_t)c->rcvlowat
				   : xio__chan_rx_pending(&c->rx) > 0;
	if (have || peer_done || c->shut_rd)
		rev |= POLLIN | POLLRDNORM;
	if (peer_done)
		rev |= POLLRDHUP;
	if (peer_done && (c->shut_wr || rx_gone))
		rev |= POLLHUP;
	/* Unread by the peer, loaded only when needed: the peer writes that
	 * line on every read. */
	uint64_t cap = xio__chan_tx_capacity(&c->tx) / 3 * 2, unread = 0;
	uint64_t out = (uint64_t)xio_bufalloc_used(&c->tx.ba) << c->tx.g.chunk_shift;
	if (c->notsent_lowat || out > cap)
		unread = peer_unread(c);
	int below = !c->notsent_lowat || unread < c->notsent_lowat;
	/* Room, and as tcp_poll has it, a third of what may be in flight
	 * free: a writer woken for a few freed bytes would only fill them and
	 * sleep again. What is out (returns not taken back included) is never
	 * less than what is unread, so below two thirds of it needs no look. */
	int third = out <= cap || unread <= cap;
	if (err || c->shut_wr || rx_gone || c->kernel_eof ||
	    (below && third && xio__chan_tx_room(&c->tx)))
		rev |= POLLOUT | POLLWRNORM;
	return rev;
}

short xio__conn_poll(struct xio_conn *c, short events, uint64_t arm)
{
	if (!c->accel || c->left) {
		/* With a resend pending: room pushes it, and is room for the
		 * program only once it is out (resend.c). */
		struct pollfd p = { .fd = c->fd, .events = xio__conn_left_events(c, events) };
		short rev = xio_sys_poll(&p, 1, 0) > 0 ? p.revents : 0;
		if (xio__conn_resend_pending(c))
			rev = xio__conn_resend_revents(c, events, rev);
		if (c->accel && !c->rx_raw && xio__chan_rx_pending(&c->rx))
			rev |= (short)(events & POLLIN); /* the ring's rest */
		return rev;
	}
	/* The peer left: ready for the read or write that follows it. */
	if (xio__conn_peer_left(c))
		return (short)(events & (POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM));
	const short always = POLLERR | POLLHUP;
	short rev = readiness(c);
	if ((rev & (events | always)) || !arm)
		return rev & (events | always);
	xio__conn_arm(c, events, arm);
	return readiness(c) & (events | always);
}

void xio__conn_arm(struct xio_conn *c, short events, uint64_t token)
{
	/*
	 * Announce the sleep. If the peer had claimed our previous
	 * announcement, it rang a doorbell that is still in the kernel
	 * socket: only then is there a byte to swallow (so the socket does
	 * not stay readable for nothing). An idle connection in an event
	 * loop thus costs no system call per wait.
	 */
	unsigned stale = 0;
	if (c->left)
		return; /* the kernel socket itself wakes the sleep now */
	if (events & (POLLIN | POLLRDNORM | POLLRDHUP))
		stale += (unsigned)xio__conn_arm_locked(c, &c->rx.g.ctl->rx_waiting,
							&c->rx.g.ctl->rx_token, token);
	if (events & (POLLOUT | POLLWRNORM))
		stale += (unsigned)xio__conn_arm_locked(
			c, &c->tx.g.ctl->tx_waiting, &c->tx.g.ctl->tx_token,
			token & XIO_TOKEN_OWN ? token | XIO_TOKEN_TX : token);
	atomic_thread_fence(memory_order_seq_cst);
	if (!stale && atomic_load_explicit(&c->owed_late, memory_order_relaxed))
		xio__conn_take_late(c);
}

void xio__conn_publish_rcvbuf(struct xio_conn *c, uint32_t rcvbuf)
{
	if (c->accel && !c->left)
		atomic_store_explicit(&c->rx.g.ctl->rx_rcvbuf, rcvbuf ? rcvbuf : XIO_RCVBUF_AUTO,
				      memory_order_relaxed);
}

size_t xio__conn_nread(struct xio_conn *c)
{
	if (!c->accel || c->rx_raw)
		return 0;
	/* What the peer says it posted less what we read: the whole ring,
	 * not only what a read has taken off it yet. Its count is only
	 * believed within the area's size, and never below what we hold. */
	size_t have = xio__chan_readable(&c->rx);
	if (c->left || xio__conn_peer_left(c))
		return have; /* the ring's rest; the counts go on over the kernel */
	uint64_t posted = atomic_load_explicit(&c->rx.g.ctl->tx_bytes, memory_order_relaxed);
	uint64_t unread = posted - c->st.rx_bytes;
	if (unread > c->rx.g.buf_bytes)
		return have;
	return unread > have ? (size_t)unread : have;
}

size_t xio__conn_nwrite(struct xio_conn *c)
{
	if (!c->accel || c->left)
		return 0;
	uint64_t unread = peer_unread(c);
	return unread > c->tx.g.buf_bytes ? 0 : (size_t)unread;
}

uint64_t xio__conn_event_sig(struct xio_conn *c)
{
	if (!c->accel || c->left)
		return 0;
	/* Read from the segment, but only ever compared: a peer that fakes it
	 * can only cause a spurious or a missed edge on its own connection. */
	uint64_t s = c->rx.g.data->prod.tail;
	s = s * 1000003u + c->tx.g.free->prod.tail;
	s = s * 31u + (uint64_t)atomic_load(&c->rx.g.ctl->tx_fin) * 2u +
	    (uint64_t)atomic_load(&c->tx.g.ctl->rx_closed) + (uint64_t)c->kernel_eof * 4u +
	    (uint64_t)atomic_load(&c->rx.g.ctl->tx_left) * 8u;
	return s;
}
