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
 * Step 5 never blocks (the resend, below): what the kernel does not take
 * at once stays pending, at the head of the socket's outgoing stream, and
 * goes out as the kernel takes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

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

/* Nothing of a resend can go any more (the connection ends). */
static void resend_drop(struct xio_conn *c)
{
	atomic_store_explicit(&c->resend_left, 0, memory_order_release);
	if (c->left && c->rx_raw)
		c->accel = 0;
}

static int reset(struct xio_conn *c)
{
	atomic_store_explicit(&c->rx.g.ctl->rx_closed, XIO_RX_RESET, memory_order_release);
	atomic_store_explicit(&c->tx.g.ctl->tx_fin, 1, memory_order_release);
	xio__sock_reset(c->fd);
	resend_drop(c);
	return -ECONNRESET;
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

/*
 * The resend. Our stream from the offset the peer stopped reading at goes
 * over the kernel before anything we write later: the descriptors behind
 * our producer index still name it (xio__chan_tx_tail), in buffers nobody
 * releases, since the peer reads the ring no more. The kernel takes what
 * fits in its buffer at once, which is all of it in the common case. The
 * rest stays pending (resend_left): it is the head of the socket's
 * outgoing stream, as bytes in a full TCP send buffer are. Every call that
 * could wait for room or for the peer pushes it on: a write first (it
 * returns EAGAIN, or blocks as a blocking send on the socket would, while
 * any is left), a read (a blocking one waits for room too: the peer may
 * answer only once it has it all), a poll that finds room (and reports
 * POLLOUT only once it is out), and after close a thread of ours, as the
 * kernel sends a closed socket's queue.
 *
 * While one is pending, the socket has SO_LINGER {1, 0}: a process killed
 * before it is out resets the connection, and the peer reads ECONNRESET,
 * never a stream cut short by a FIN. (The leave bell does that for a
 * resend that fits at once; a pending one must let reads through, and the
 * bell is ahead of the peer's data.) The program's own SO_LINGER is kept
 * and set back once it is out, and applies to its close.
 */

/* One thread pushes at a time. Only a writer waits for the flag (poll
 * and reads take it only if free), and writers are serialized by their
 * callers: whoever holds it is about to let it go or is pushing for that
 * very writer. The flag is the holder's pid: a copy inherited through
 * fork from a thread that held it is nobody's, and is taken over. */
static int resend_lock(struct xio_conn *c, int wait)
{
	int me = (int)xio_sys_getpid();
	for (;;) {
		int v = 0;
		if (atomic_compare_exchange_strong_explicit(&c->resend_busy, &v, me,
							    memory_order_acquire,
							    memory_order_relaxed))
			return 1;
		if (v != me && atomic_compare_exchange_strong_explicit(
				       &c->resend_busy, &v, me, memory_order_acquire,
				       memory_order_relaxed))
			return 1;
		if (!wait)
			return 0;
		xio_sys_sleep_ms(1);
	}
}

static void resend_unlock(struct xio_conn *c)
{
	atomic_store_explicit(&c->resend_busy, 0, memory_order_release);
}

struct push {
	int fd;
	int flags; /* MSG_DONTWAIT, or 0: wait as the socket does */
	uint64_t sent;
};

/* One piece of the tail, as far as the kernel takes it. Blocking, a short
 * count means that a signal or SO_SNDTIMEO ended a send that had made
 * progress: it goes on; one that makes none returns -EINTR or -EAGAIN. */
static int push_piece(void *arg, const void *p, size_t len)
{
	struct push *a = arg;
	const char *b = p;
	while (len) {
		ssize_t r = xio_sys_send(a->fd, b, len, MSG_NOSIGNAL | a->flags);
		if (r > 0) {
			a->sent += (uint64_t)r;
			b += r;
			len -= (size_t)r;
			continue;
		}
		if (r == -EINTR && a->flags)
			continue;
		return r < 0 ? (int)r : -EAGAIN;
	}
	return 0;
}

/* With the flag held: hand the kernel what it takes. 0 once all is out,
 * -EAGAIN or -EINTR while some is left, or the error that ended the
 * connection (nothing is pending then). */
static int push_locked(struct xio_conn *c, unsigned fl)
{
	uint64_t left = atomic_load_explicit(&c->resend_left, memory_order_relaxed);
	if (!left)
		return 0;
	struct push a = { c->fd, fl & XIO_IO_NONBLOCK ? MSG_DONTWAIT : 0, 0 };
	int r = xio__chan_tx_tail(&c->tx, left, push_piece, &a);
	left -= a.sent < left ? a.sent : left;
	atomic_store_explicit(&c->resend_left, left, memory_order_release);
	if (!left)
		return 0;
	if (r == -EAGAIN || r == -EINTR)
		return r;
	/* The ring no longer holds it (the peer wrote over its slots), or
	 * the kernel connection failed: the rest can never go. */
	if (r == 0 || r == -EPROTO)
		return reset(c);
	resend_drop(c);
	return r;
}

static void tell_siblings(struct xio_conn *c);

/* The resend is out (ok), or can never be: what the follow put off. */
static void resend_finish(struct xio_conn *c, int ok)
{
	/* resend_left is 0: against xio__conn_left_shutdown and
	 * xio__conn_ring_done, which store shut_wr or rx_raw and then look
	 * at resend_left; one of each two sees the other. */
	atomic_thread_fence(memory_order_seq_cst);
	if (ok) {
		struct linger lg = { .l_onoff = c->app_linger_on, .l_linger = c->app_linger_s };
		xio_sys_setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (c->shut_wr)
			xio_sys_shutdown(c->fd, SHUT_WR); /* our end of stream, after it */
	}
	tell_siblings(c);
	if (c->rx_raw)
		c->accel = 0; /* nothing of the connection is in the segment now */
}

/* Step 5: our stream from offset `from` on (what the peer did not read
 * of it) goes over the kernel, ahead of anything we write later. 0: it is
 * out; 1: some is pending (the caller holds resend_busy); -errno. */
static int resend_from(struct xio_conn *c, uint64_t from)
{
	uint64_t posted = c->st.tx_bytes;
	c->left_tx_off = from;
	if (from > posted)
		return -EPROTO;
	if (from == posted)
		return 0;
	c->resend_pid = (uint32_t)xio_sys_getpid();
	atomic_store_explicit(&c->resend_left, posted - from, memory_order_release);
	int r = push_locked(c, XIO_IO_NONBLOCK);
	if (r != -EAGAIN && r != -EINTR)
		return r;
	struct linger lg = { 0, 0 };
	socklen_t l = sizeof(lg);
	if (xio_sys_getsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, &l) < 0)
		lg.l_onoff = lg.l_linger = 0;
	c->app_linger_on = lg.l_onoff;
	c->app_linger_s = lg.l_linger;
	lg.l_onoff = 1;
	lg.l_linger = 0;
	xio_sys_setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	return 1;
}

/*
 * A copy of this side made by fork while its resend was pending. The
 * owner (resend_pid) sends it, and tells every holder once it is out
 * (hdr->left); until then this copy writes nothing, or its bytes would
 * overtake it. An owner that died with some pending leaves a stream
 * nobody can finish: a reset.
 */
static int foreign_wait(struct xio_conn *c, unsigned fl)
{
	for (;;) {
		if (!c->hdr || atomic_load_explicit(&c->hdr->left[c->side], memory_order_acquire)) {
			resend_drop(c);
			return 0;
		}
		if (XIO__SC(SYS_kill, (long)c->resend_pid, 0, 0, 0, 0, 0) == -ESRCH)
			return reset(c);
		if (fl & (XIO_IO_NONBLOCK | XIO_IO_TRY))
			return -EAGAIN;
		int r = xio_sys_poll(NULL, 0, 1);
		if (r == -EINTR)
			return r;
	}
}

int xio__conn_resend_push(struct xio_conn *c, unsigned fl)
{
	if (!xio__conn_resend_pending(c))
		return 0;
	if (c->resend_pid != (uint32_t)xio_sys_getpid())
		return foreign_wait(c, fl);
	if (!resend_lock(c, !(fl & XIO_IO_TRY)))
		return -EAGAIN;
	int r = push_locked(c, fl);
	if (r != -EAGAIN && r != -EINTR)
		resend_finish(c, r == 0);
	resend_unlock(c);
	return r;
}

/* SO_RCVTIMEO or SO_SNDTIMEO of fd in ms, or -1 for none. */
static int64_t sock_timeo_ms(int fd, int name)
{
	struct timeval tv = { 0, 0 };
	socklen_t l = sizeof(tv);
	if (xio_sys_getsockopt(fd, SOL_SOCKET, name, &tv, &l) < 0 || (!tv.tv_sec && !tv.tv_usec))
		return -1;
	return (int64_t)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* iov from byte skip on, into out (at most max entries): how many. */
static int iov_from(const struct iovec *iov, int n, size_t skip, struct iovec *out, int max)
{
	int k = 0;
	for (int i = 0; i < n && k < max; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		out[k].iov_base = (char *)iov[i].iov_base + skip;
		out[k++].iov_len = iov[i].iov_len - skip;
		skip = 0;
	}
	return k;
}

/*
 * A blocking read while a resend is pending. Sleeping in the kernel's
 * recv would leave the resend where it is, and a peer that answers only
 * once it has read all we sent would never answer: so the wait is a poll
 * for data and, while this thread may push, for room. SO_RCVTIMEO ends it
 * with EAGAIN as the kernel's would; a signal ends it with EINTR (a poll
 * is not restarted, SA_RESTART or not). Once the resend is out, the read
 * is the kernel's own.
 */
ssize_t xio__conn_resend_readv(struct xio_conn *c, const struct iovec *iov, int iovcnt,
			       unsigned fl)
{
	int peek = fl & XIO_IO_PEEK ? MSG_PEEK : 0, waitall = (fl & XIO_IO_WAITALL) && !peek;
	int64_t timeo = sock_timeo_ms(c->fd, SO_RCVTIMEO);
	int64_t deadline = timeo < 0 ? -1 : mono_ms() + timeo;
	size_t want = 0, got = 0;
	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	for (;;) {
		struct iovec v[64];
		struct msghdr m = { .msg_iov = v };
		m.msg_iovlen = (size_t)iov_from(iov, iovcnt, got, v, 64);
		int r = xio__conn_resend_push(c, XIO_IO_NONBLOCK | XIO_IO_TRY);
		if (!xio__conn_resend_pending(c)) {
			ssize_t k = xio_sys_recvmsg(c->fd, &m, peek | (waitall ? MSG_WAITALL : 0));
			return k > 0 ? (ssize_t)got + k : got ? (ssize_t)got : k;
		}
		ssize_t k = xio_sys_recvmsg(c->fd, &m, peek | MSG_DONTWAIT);
		if (k > 0) {
			got += (size_t)k;
			if (!waitall || got == want || m.msg_iovlen == 0)
				return (ssize_t)got;
			continue;
		}
		if (k != -EAGAIN)
			return got ? (ssize_t)got : k;
		/* Room is worth waking for only if this thread may push. */
		int mine = r == -EAGAIN && c->resend_pid == (uint32_t)xio_sys_getpid() &&
			   !atomic_load_explicit(&c->resend_busy, memory_order_relaxed);
		int64_t ms = deadline < 0 ? -1 : deadline - mono_ms();
		if (deadline >= 0 && ms <= 0)
			return got ? (ssize_t)got : -EAGAIN;
		if (!mine && (ms < 0 || ms > 10))
			ms = 10;
		struct pollfd p = { .fd = c->fd, .events = (short)(POLLIN | (mine ? POLLOUT : 0)) };
		int pr = xio_sys_poll(&p, 1, (int)ms);
		if (pr == -EINTR)
			return got ? (ssize_t)got : -EINTR;
	}
}

short xio__conn_resend_revents(struct xio_conn *c, short events, short kernel_revents)
{
	if (xio__conn_resend_pending(c) && (kernel_revents & (POLLOUT | POLLERR | POLLHUP)))
		xio__conn_resend_push(c, XIO_IO_NONBLOCK | XIO_IO_TRY);
	if (xio__conn_resend_pending(c))
		kernel_revents &= (short)~POLLOUT;
	return (short)(kernel_revents & (events | POLLERR | POLLHUP | POLLNVAL));
}

void xio__conn_ring_done(struct xio_conn *c)
{
	c->rx_raw = 1;
	/* Against resend_finish, which clears resend_left and then looks at
	 * rx_raw: one of the two sees the other and drops accel. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!xio__conn_resend_pending(c))
		c->accel = 0; /* nothing of the connection is in the segment now */
}

int xio__conn_left_shutdown(struct xio_conn *c, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	if (how != SHUT_RD && xio__conn_resend_pending(c)) {
		/* The FIN goes after the resend: whoever pushes its last byte
		 * sends it (resend_finish), or we do, if that was just now. */
		c->shut_wr = 1;
		atomic_thread_fence(memory_order_seq_cst);
		if (xio__conn_resend_pending(c)) {
			if (how == SHUT_WR)
				return 0;
			how = SHUT_RD;
		}
	}
	return xio_sys_shutdown(c->fd, how);
}

/*
 * Closed with a resend pending. TCP sends a closed socket's queue in the
 * background; here the queue is in the segment, so a thread of ours does
 * it (xio-resend, started for the first such close, gone once it has
 * none): it holds a copy of the socket (close-on-exec) and the mapping,
 * pushes as the kernel has room, and then closes the copy, which sends the
 * FIN after the last byte, and unmaps. A process that ends first resets
 * those connections (SO_LINGER {1, 0}): the peer reads ECONNRESET, never
 * a short stream. A forked child closes its copies of them at once.
 */
#define ORPHAN_BATCH 64

static pthread_mutex_t orphan_mu = PTHREAD_MUTEX_INITIALIZER;
static struct xio_conn **orphans;
static size_t norphans, orphans_cap, orphan_next;
static uint32_t orphan_thread_pid; /* the process whose thread runs, or 0 */
static pthread_once_t orphan_once = PTHREAD_ONCE_INIT;

/* The last of an orphan: off the list, its copy of the socket closed (a
 * FIN after the resend if it is out, else the reset SO_LINGER {1, 0}
 * makes), both under orphan_mu, so that a fork sees it on the list, open,
 * or neither; then the segment is given back. */
static void orphan_end(struct xio_conn *c, int ok)
{
	if (ok) {
		/* The program's close returned long ago: this one waits for
		 * nothing either. */
		struct linger lg = { 0, 0 };
		xio_sys_setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	pthread_mutex_lock(&orphan_mu);
	for (size_t i = 0; i < norphans; i++)
		if (orphans[i] == c) {
			orphans[i] = orphans[--norphans];
			break;
		}
	xio_sys_close(c->fd);
	pthread_mutex_unlock(&orphan_mu);
	xio__conn_detach_quiet(c);
	xio__conn_free(c);
}

/* Push c with the flag held; 1 if it is over (out, or failed). */
static int orphan_push(struct xio_conn *c)
{
	resend_lock(c, 1);
	int r = push_locked(c, XIO_IO_NONBLOCK);
	int over = r != -EAGAIN && r != -EINTR;
	if (over)
		resend_finish(c, r == 0);
	resend_unlock(c);
	if (over)
		orphan_end(c, r == 0);
	return over;
}

static void *orphan_main(void *arg)
{
	atomic_store_explicit((_Atomic int *)arg, 1, memory_order_release);
	for (;;) {
		struct pollfd p[ORPHAN_BATCH];
		struct xio_conn *mine[ORPHAN_BATCH];
		size_t n = 0;
		pthread_mutex_lock(&orphan_mu);
		if (!norphans) {
			orphan_thread_pid = 0;
			pthread_mutex_unlock(&orphan_mu);
			return NULL;
		}
		/* A batch at a time, round robin, when there are many. */
		for (; n < norphans && n < ORPHAN_BATCH; n++) {
			mine[n] = orphans[(orphan_next + n) % norphans];
			p[n] = (struct pollfd){ .fd = mine[n]->fd, .events = POLLOUT };
		}
		orphan_next = (orphan_next + n) % norphans;
		pthread_mutex_unlock(&orphan_mu);
		/* Only this thread takes orphans off the list: mine[] stay. */
		xio_sys_poll(p, n, 1000);
		for (size_t i = 0; i < n; i++)
			if (p[i].revents)
				orphan_push(mine[i]);
	}
}

/* A forked child: the copies of the sockets and the mappings are the
 * parent's business. Closing the copy is no close of the connection (the
 * parent holds it). */
static void orphan_prepare(void)
{
	pthread_mutex_lock(&orphan_mu);
}

static void orphan_parent(void)
{
	pthread_mutex_unlock(&orphan_mu);
}

static void orphan_child(void)
{
	for (size_t i = 0; i < norphans; i++) {
		struct xio_conn *c = orphans[i];
		xio__chan_tx_fini(&c->tx);
		xio_seg_unmap(c->base, &c->params);
		xio_sys_close(c->fd);
		xio__conn_free(c);
	}
	norphans = 0;
	orphan_thread_pid = 0;
	pthread_mutex_unlock(&orphan_mu);
}

static void orphan_register(void)
{
	pthread_atfork(orphan_prepare, orphan_parent, orphan_child);
}

/* Start the thread unless it runs; with orphan_mu held. 0 or -errno. */
static int orphan_thread_locked(void)
{
	uint32_t me = (uint32_t)xio_sys_getpid();
	if (orphan_thread_pid == me)
		return 0;
	/* It takes no signal: the program's handlers run in its threads. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 64 * 1024);
	pthread_t t;
	static _Atomic int up;
	atomic_store(&up, 0);
	int r = pthread_create(&t, &at, orphan_main, (void *)&up);
	if (r == 0) {
		orphan_thread_pid = me;
		pthread_setname_np(t, "xio-resend");
		/* As for the control watcher (ctl_client.c): a fork must not
		 * come while the new thread still holds allocator locks. */
		for (int i = 0; i < 100000 && !atomic_load_explicit(&up, memory_order_acquire); i++)
			xio_sys_sched_yield();
	}
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -r;
}

/* Hand c to the thread. 0, or -errno (c is not taken). */
static int orphan_add(struct xio_conn *c)
{
	pthread_once(&orphan_once, orphan_register);
	pthread_mutex_lock(&orphan_mu);
	int r = 0;
	if (norphans == orphans_cap) {
		size_t cap = orphans_cap ? 2 * orphans_cap : 16;
		struct xio_conn **n = realloc(orphans, cap * sizeof(*n));
		if (!n)
			r = -ENOMEM;
		else {
			orphans = n;
			orphans_cap = cap;
		}
	}
	if (r == 0)
		r = orphan_thread_locked();
	if (r == 0)
		orphans[norphans++] = c;
	pthread_mutex_unlock(&orphan_mu);
	return r;
}

/* Push, waiting for room up to ms (0: not at all). 0 once out, else as
 * push_locked. A signal ends the wait, as it ends a lingering close. */
static int push_until(struct xio_conn *c, int64_t ms)
{
	int64_t end = mono_ms() + ms;
	for (;;) {
		int r = push_locked(c, XIO_IO_NONBLOCK);
		int64_t t = end - mono_ms();
		if (r != -EAGAIN || t <= 0)
			return r;
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		if (xio_sys_poll(&p, 1, (int)t) == -EINTR)
			return -EINTR;
	}
}

/* The close of a socket with a resend pending, as TCP closes one with
 * data queued: the data goes on in the background (SO_LINGER {1, N}: the
 * close waits for it up to N seconds first); SO_LINGER {1, 0}, or data
 * received and not read, resets the connection and drops it. */
int xio__conn_close_resend(struct xio_conn *c)
{
	if (xio__conn_peer_left(c))
		xio__conn_follow(c);
	if (!xio__conn_resend_pending(c) || c->resend_pid != (uint32_t)xio_sys_getpid())
		return 0; /* a forked copy: the owner finishes it */
	resend_lock(c, 1);
	/* SO_LINGER set by the program since the resend began (it is not
	 * our {1, 0} any more) is the one that applies. */
	struct linger lg = { 1, 0 };
	socklen_t l = sizeof(lg);
	if (xio_sys_getsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, &l) == 0 &&
	    !(lg.l_onoff && lg.l_linger == 0)) {
		c->app_linger_on = lg.l_onoff;
		c->app_linger_s = lg.l_linger;
	}
	int unread = 0;
	if (xio_sys_ioctl(c->fd, FIONREAD, &unread) < 0)
		unread = 0;
	if (unread > 0 || (!c->rx_raw && xio__chan_rx_pending(&c->rx)) ||
	    (c->app_linger_on && c->app_linger_s == 0)) {
		reset(c); /* and the socket keeps SO_LINGER {1, 0}: the close aborts */
		resend_unlock(c);
		return 0;
	}
	int r = push_until(c, c->app_linger_on ? (int64_t)c->app_linger_s * 1000 : 0);
	if (r != -EAGAIN && r != -EINTR) {
		resend_finish(c, r == 0);
		resend_unlock(c);
		return 0;
	}
	/* Out of the way of the program's next open(): high, if it can be. */
	int fd = xio_sys_fcntl(c->fd, F_DUPFD_CLOEXEC, 512);
	if (fd < 0)
		fd = xio_sys_fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0) {
		reset(c);
		resend_unlock(c);
		return 0;
	}
	int prog_fd = c->fd;
	c->fd = fd;
	resend_unlock(c);
	if (orphan_add(c) < 0) {
		c->fd = prog_fd;
		xio_sys_close(fd);
		reset(c);
		return 0;
	}
	return 1;
}

void xio__conn_resend_flush(struct xio_conn *c, int ms)
{
	if (!xio__conn_resend_pending(c) || c->resend_pid != (uint32_t)xio_sys_getpid())
		return;
	int64_t end = mono_ms() + ms;
	while (!resend_lock(c, 0)) {
		if (mono_ms() >= end) {
			/* A thread blocked in a write holds it: its send fails now. */
			xio__sock_reset(c->fd);
			return;
		}
		xio_sys_sleep_ms(1);
	}
	int r;
	while ((r = push_until(c, end - mono_ms())) == -EINTR && mono_ms() < end)
		;
	if (r == -EAGAIN || r == -EINTR)
		r = reset(c);
	resend_finish(c, r == 0);
	resend_unlock(c);
}

void xio__resend_orphans_flush(int ms)
{
	/* The thread pushes; this waits for it, then resets what is left
	 * (its next push fails, and it lets that connection go). A copy on
	 * the list is open until the thread takes it off. */
	int64_t end = mono_ms() + ms;
	for (;;) {
		pthread_mutex_lock(&orphan_mu);
		size_t n = norphans;
		if (n && mono_ms() >= end)
			for (size_t i = 0; i < n; i++)
				xio__sock_reset(orphans[i]->fd);
		pthread_mutex_unlock(&orphan_mu);
		if (!n || mono_ms() >= end)
			return;
		xio_sys_sleep_ms(1);
	}
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
static void tell_siblings(struct xio_conn *c)
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
	c->left = reason; /* the other holders are told last (tell_siblings) */
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
	 * from the peer: one that closed or died cannot send it. */
	if (xio__chan_rx_pending(&c->rx) > 0 && (xio__conn_peer_tx_done(c) || peer_closed(c)))
		return reset(c);
	uint64_t delivered = c->st.rx_bytes;
	c->left_rx_off = delivered;
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

/* The flag is held through the whole move: no poll or read of another
 * thread pushes, or finishes, a resend the move has not finished setting
 * up (its bell, tx_left). The other holders are told now, or by whoever
 * pushes the last pending byte. */
int xio__conn_leave(struct xio_conn *c, unsigned reason)
{
	resend_lock(c, 1);
	int r = leave_side(c, reason);
	if (!xio__conn_resend_pending(c))
		tell_siblings(c);
	resend_unlock(c);
	return r;
}

int xio__conn_follow(struct xio_conn *c)
{
	if (c->left)
		return 0; /* followed already (by another thread) */
	resend_lock(c, 1);
	int r = follow_side(c);
	if (!xio__conn_resend_pending(c))
		tell_siblings(c);
	resend_unlock(c);
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
