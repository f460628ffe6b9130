/*
 * resend.c - the resend (docs/design.md, "Leaving shared memory"). A side
 * that follows its peer back to kernel TCP (leave.c, step 5) sends again,
 * over the kernel socket, the part of its ring stream the peer had not
 * read, before anything it writes later. The descriptors behind its
 * producer index still name those bytes (xio__chan_tx_tail), in buffers
 * nobody releases, since the peer reads the ring no more.
 *
 * The kernel takes what fits in its buffer at once: all of it in the
 * common case, at the cost of the sends alone. The rest stays pending
 * (resend_left: the last that many bytes posted) and must never make a
 * call wait that would not wait on TCP (issue 15, item 8: a peer that left
 * and read nothing held a non-blocking writer, and a one-thread event loop
 * with it, for as long as it lived). It is the head of the socket's
 * outgoing stream, as bytes in a full TCP send buffer are, and it goes out
 * as the kernel takes it:
 *   - a thread of the process (xio-resend, started with the first pending
 *     resend, gone once there is none) holds a copy of the socket
 *     (close-on-exec) and pushes whenever the kernel has room, as the
 *     kernel itself sends a socket's queue, whatever the program does;
 *   - a write pushes first, and returns EAGAIN, or waits as a blocking
 *     send on the socket would, while any is left: new bytes never
 *     overtake it;
 *   - poll reports POLLOUT only once it is out (and pushes on room);
 *   - a close hands the connection to the thread, which finishes it and
 *     then closes its copy: the FIN comes after the last byte.
 * One thread pushes at a time (resend_busy). While some is pending the
 * socket has SO_LINGER {1, 0}, so that a process killed before it is out
 * resets the connection rather than end it short; the program's own
 * SO_LINGER is kept and set back once it is out.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "xio/conn.h"
#include "xio/sys.h"
#include "xio/thread.h"

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_pending(int r)
{
	return r == -EAGAIN || r == -EINTR;
}

/* --- the flag ------------------------------------------------------------ */

/* Only writers and the moves in leave.c wait for the flag (poll, reads and
 * the thread take it only if it is free), and the shim serializes writers:
 * whoever holds it is about to let it go, or is pushing for that very
 * writer. It holds the pid of its process: a copy inherited through fork
 * from a thread that held it is nobody's, and is taken over. */
int xio__resend_lock(struct xio_conn *c, int wait)
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

void xio__resend_unlock(struct xio_conn *c)
{
	atomic_store_explicit(&c->resend_busy, 0, memory_order_release);
}

/* The flag, waiting a moment for a holder that only pushes what fits. */
static int lock_brief(struct xio_conn *c)
{
	for (int i = 0; i < 200; i++) {
		if (xio__resend_lock(c, 0))
			return 1;
		xio_sys_sched_yield();
	}
	return 0;
}

/* --- pushing ------------------------------------------------------------- */

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

/* With the flag held: hand the kernel, through fd, what it takes. 0 once
 * all is out, -EAGAIN or -EINTR while some is left, -EPROTO if the ring no
 * longer holds it (the peer wrote over its slots), or the kernel's error. */
static int push_locked(struct xio_conn *c, int fd, unsigned fl)
{
	uint64_t left = atomic_load_explicit(&c->resend_left, memory_order_relaxed);
	if (!left)
		return 0;
	struct push a = { fd, fl & XIO_IO_NONBLOCK ? MSG_DONTWAIT : 0, 0 };
	int r = xio__chan_tx_tail(&c->tx, left, push_piece, &a);
	left -= a.sent < left ? a.sent : left;
	atomic_store_explicit(&c->resend_left, left, memory_order_release);
	if (!left)
		return 0;
	return r == 0 ? -EPROTO : r;
}

/* The same, waiting for room up to ms (0: not at all). A signal ends the
 * wait, as it ends a lingering close. */
static int push_until(struct xio_conn *c, int fd, int64_t ms)
{
	int64_t end = mono_ms() + ms;
	for (;;) {
		int r = push_locked(c, fd, XIO_IO_NONBLOCK);
		int64_t t = end - mono_ms();
		if (r != -EAGAIN || t <= 0)
			return r;
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		if (xio_sys_poll(&p, 1, (int)t) == -EINTR)
			return -EINTR;
	}
}

/* It is out (ok), or can never be (the connection failed): what the
 * follow put off until then, through fd. resend_left is 0 by now: the
 * fence pairs with xio__conn_left_shutdown's and xio__conn_ring_done's,
 * which store shut_wr or rx_raw and then look at resend_left, so that one
 * of each two sees the other. */
static void finish(struct xio_conn *c, int fd, int ok)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (ok) {
		struct linger lg = { .l_onoff = c->app_linger_on, .l_linger = c->app_linger_s };
		xio_sys_setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (c->shut_wr)
			xio_sys_shutdown(fd, SHUT_WR); /* our end of stream, after it */
	}
	xio__conn_tell_siblings(c);
	if (c->rx_raw)
		c->accel = 0; /* nothing of the connection is in the segment now */
}

/* With the flag held, on fd, outside the thread: a push's outcome. An
 * error ends the resend (-EPROTO: with a reset, as nobody can send the
 * rest now). */
static void unwatch(struct xio_conn *c);
static int settle(struct xio_conn *c, int fd, int r)
{
	if (is_pending(r))
		return r;
	if (r == -EPROTO)
		r = xio__conn_gap_reset(c, fd);
	atomic_store_explicit(&c->resend_left, 0, memory_order_release);
	finish(c, fd, r == 0);
	unwatch(c);
	return r;
}

/* --- the thread ------------------------------------------------------------ */

/*
 * Each pending resend of this process has an entry: the connection, the
 * thread's own copy of its socket (an fd the program never sees, so that
 * no close of the program's makes it send into another file), and whether
 * the program closed it (then the connection is the thread's alone, and
 * c->fd is that copy). The thread pins an entry while it pushes, without
 * bg_mu; an entry is taken off, outside the thread, with the connection's
 * flag held (so the thread, which only tries the flag, lets go at once)
 * and once it is not pinned.
 */
struct bg {
	struct xio_conn *c;
	int fd;
	int closed;
	int pinned;
};

#define BG_BATCH 64

static pthread_mutex_t bg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct bg *bgs;
static size_t nbg, bg_cap, bg_next;
static uint32_t bg_pid; /* the process whose thread runs, or 0 */
static pthread_once_t bg_once = PTHREAD_ONCE_INIT;

static struct bg *bg_find(struct xio_conn *c, int fd)
{
	for (size_t i = 0; i < nbg; i++)
		if (bgs[i].c == c && (fd < 0 || bgs[i].fd == fd))
			return &bgs[i];
	return NULL;
}

/* Take e off; its copy of the socket closed here, under bg_mu, so that a
 * fork sees the entry with its fd open, or neither. */
static void bg_drop_locked(struct bg *e)
{
	xio_sys_close(e->fd);
	e->c->resend_bg = 0;
	*e = bgs[--nbg];
}

/* Outside the thread, with c's flag held: c is not pending any more. */
static void unwatch(struct xio_conn *c)
{
	if (!c->resend_bg)
		return;
	pthread_mutex_lock(&bg_mu);
	for (;;) {
		struct bg *e = bg_find(c, -1);
		if (!e || !e->pinned) {
			if (e)
				bg_drop_locked(e);
			break;
		}
		/* The thread tries our flag, fails, and unpins. */
		pthread_mutex_unlock(&bg_mu);
		xio_sys_sched_yield();
		pthread_mutex_lock(&bg_mu);
	}
	pthread_mutex_unlock(&bg_mu);
}

/* The last of a connection the program had closed: its copy closed (a
 * FIN after the resend, or the RST of SO_LINGER {1, 0} if it failed),
 * done with bg_mu held; then the segment is given back. */
static void bg_end(struct xio_conn *c)
{
	xio__conn_detach_quiet(c);
	xio__conn_free(c);
}

/* One ready entry: push, and end it if it is over. */
static void bg_push(struct xio_conn *c, int fd)
{
	pthread_mutex_lock(&bg_mu);
	struct bg *e = bg_find(c, fd);
	if (e)
		e->pinned = 1;
	pthread_mutex_unlock(&bg_mu);
	if (!e)
		return; /* finished, or closed and finished, meanwhile */
	int locked = xio__resend_lock(c, 0), r = -EAGAIN, closed = 0;
	if (locked) {
		r = push_locked(c, fd, XIO_IO_NONBLOCK);
		if (!is_pending(r)) {
			if (r == -EPROTO)
				r = xio__conn_gap_reset(c, fd);
			atomic_store_explicit(&c->resend_left, 0, memory_order_release);
			finish(c, fd, r == 0);
		}
	}
	pthread_mutex_lock(&bg_mu);
	e = bg_find(c, fd); /* still there: nobody takes off a pinned entry */
	e->pinned = 0;
	if (locked && !is_pending(r)) {
		closed = e->closed;
		if (closed && r == 0) {
			/* The program's close returned long ago: this one waits
			 * for nothing either. */
			struct linger lg = { 0, 0 };
			xio_sys_setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		bg_drop_locked(e);
	}
	pthread_mutex_unlock(&bg_mu);
	if (locked)
		xio__resend_unlock(c);
	if (closed)
		bg_end(c);
}

static void *bg_main(void)
{
	for (;;) {
		struct pollfd p[BG_BATCH];
		struct xio_conn *who[BG_BATCH];
		size_t n = 0;
		pthread_mutex_lock(&bg_mu);
		if (!nbg) {
			bg_pid = 0;
			pthread_mutex_unlock(&bg_mu);
			return NULL;
		}
		/* A batch at a time, round robin, when there are many. */
		for (; n < nbg && n < BG_BATCH; n++) {
			struct bg *e = &bgs[(bg_next + n) % nbg];
			who[n] = e->c;
			p[n] = (struct pollfd){ .fd = e->fd, .events = POLLOUT };
		}
		bg_next = (bg_next + n) % nbg;
		pthread_mutex_unlock(&bg_mu);
		/* A new entry waits for the next round: the follow that made it
		 * has just pushed what fitted. */
		xio_sys_poll(p, n, 100);
		for (size_t i = 0; i < n; i++)
			if (p[i].revents)
				bg_push(who[i], p[i].fd);
	}
}

/* A forked child: the thread is not there, and the copies of the sockets
 * and the mappings of closed connections are the parent's business (its
 * copies hold the connections; closing ours closes nothing). The child's
 * copies of the open ones are not the owners of their resends any more
 * (resend_pid): they wait for the parent's. */
static void bg_prepare(void)
{
	pthread_mutex_lock(&bg_mu);
}

static void bg_parent(void)
{
	pthread_mutex_unlock(&bg_mu);
}

static void bg_child(void)
{
	for (size_t i = 0; i < nbg; i++) {
		struct xio_conn *c = bgs[i].c;
		xio_sys_close(bgs[i].fd);
		c->resend_bg = 0;
		if (bgs[i].closed) {
			xio__chan_tx_fini(&c->tx);
			xio_seg_unmap(c->base, &c->params);
			xio__conn_free(c);
		}
	}
	nbg = 0;
	bg_pid = 0;
	pthread_mutex_unlock(&bg_mu);
}

static void bg_register(void)
{
	pthread_atfork(bg_prepare, bg_parent, bg_child);
}

/* Start the thread unless it runs; with bg_mu held. 0 or -errno. */
static int bg_thread_locked(void)
{
	uint32_t me = (uint32_t)xio_sys_getpid();
	if (bg_pid == me)
		return 0;
	int r = xio__thread_start(bg_main, "xio-resend", 64 * 1024);
	if (r == 0)
		bg_pid = me;
	return r;
}

/* With c's flag held: an entry for c, with a copy of its socket, the
 * thread running. closed: the program closed it (c->fd becomes the copy).
 * 0, or -errno (nothing changed). */
static int watch(struct xio_conn *c, int closed)
{
	/* Out of the way of the program's next open(): high, if it can be. */
	int fd = xio_sys_fcntl(c->fd, F_DUPFD_CLOEXEC, 512);
	if (fd < 0)
		fd = xio_sys_fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return fd;
	pthread_once(&bg_once, bg_register);
	pthread_mutex_lock(&bg_mu);
	int r = 0;
	if (nbg == bg_cap) {
		size_t cap = bg_cap ? 2 * bg_cap : 16;
		struct bg *n = realloc(bgs, cap * sizeof(*n));
		if (!n)
			r = -ENOMEM;
		else {
			bgs = n;
			bg_cap = cap;
		}
	}
	if (r == 0)
		r = bg_thread_locked();
	if (r == 0) {
		bgs[nbg++] = (struct bg){ .c = c, .fd = fd, .closed = closed };
		c->resend_bg = 1;
		if (closed)
			c->fd = fd;
	}
	pthread_mutex_unlock(&bg_mu);
	if (r < 0)
		xio_sys_close(fd);
	return r;
}

/* --- for leave.c ---------------------------------------------------------- */

int xio__resend_start(struct xio_conn *c, uint64_t bytes)
{
	c->resend_pid = (uint32_t)xio_sys_getpid();
	atomic_store_explicit(&c->resend_left, bytes, memory_order_release);
	int r = push_locked(c, c->fd, XIO_IO_NONBLOCK);
	if (!is_pending(r)) {
		atomic_store_explicit(&c->resend_left, 0, memory_order_release);
		return r;
	}
	struct linger lg = { 0, 0 };
	socklen_t l = sizeof(lg);
	if (xio_sys_getsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, &l) < 0)
		lg.l_onoff = lg.l_linger = 0;
	c->app_linger_on = lg.l_onoff;
	c->app_linger_s = lg.l_linger;
	lg.l_onoff = 1;
	lg.l_linger = 0;
	xio_sys_setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	/* Without the thread (no fd, no thread to be had), the program's
	 * own calls push it, and poll's (xio__conn_left_events). */
	watch(c, 0);
	return 1;
}

void xio__resend_drop(struct xio_conn *c)
{
	atomic_store_explicit(&c->resend_left, 0, memory_order_release);
	unwatch(c);
	if (c->left && c->rx_raw)
		c->accel = 0;
}

/* --- for reads, writes and poll -------------------------------------------- */

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
			atomic_store_explicit(&c->resend_left, 0, memory_order_release);
			if (c->rx_raw)
				c->accel = 0;
			return 0;
		}
		if (XIO__SC(SYS_kill, (long)c->resend_pid, 0, 0, 0, 0, 0) == -ESRCH) {
			atomic_store_explicit(&c->resend_left, 0, memory_order_release);
			return xio__conn_gap_reset(c, c->fd);
		}
		if (fl & (XIO_IO_NONBLOCK | XIO_IO_TRY))
			return -EAGAIN;
		int r = xio_sys_poll(NULL, 0, 1);
		if (r == -EINTR)
			return r;
	}
}

static int mine(const struct xio_conn *c)
{
	return c->resend_pid == (uint32_t)xio_sys_getpid();
}

int xio__conn_resend_push(struct xio_conn *c, unsigned fl)
{
	if (!xio__conn_resend_pending(c))
		return 0;
	if (!mine(c))
		return foreign_wait(c, fl);
	if (!xio__resend_lock(c, !(fl & XIO_IO_TRY)))
		return -EAGAIN;
	int r = settle(c, c->fd, push_locked(c, c->fd, fl));
	xio__resend_unlock(c);
	return r;
}

/* SO_RCVTIMEO of fd in ms, or -1 for none. */
static int64_t rcvtimeo_ms(int fd)
{
	struct timeval tv = { 0, 0 };
	socklen_t l = sizeof(tv);
	if (xio_sys_getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &l) < 0 ||
	    (!tv.tv_sec && !tv.tv_usec))
		return -1;
	return (int64_t)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
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
 * A blocking read while a resend is pending that no thread pushes (none
 * could be had, or this is a forked copy). Sleeping in the kernel's recv
 * would leave the resend where it is, and a peer that answers only once it
 * has all it was sent would never answer: so the wait is a poll for data
 * and, while this thread may push, for room. SO_RCVTIMEO ends it with
 * EAGAIN as the kernel's would; a signal ends it with EINTR (a poll is not
 * restarted, SA_RESTART or not). Once the resend is out, the read is the
 * kernel's own.
 */
ssize_t xio__conn_resend_readv(struct xio_conn *c, const struct iovec *iov, int iovcnt,
			       unsigned fl)
{
	int peek = fl & XIO_IO_PEEK ? MSG_PEEK : 0, waitall = (fl & XIO_IO_WAITALL) && !peek;
	int64_t timeo = rcvtimeo_ms(c->fd);
	int64_t deadline = timeo < 0 ? -1 : mono_ms() + timeo;
	size_t want = 0, got = 0;
	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	for (;;) {
		struct iovec v[64];
		struct msghdr m = { .msg_iov = v };
		m.msg_iovlen = (size_t)iov_from(iov, iovcnt, got, v, 64);
		int r = xio__conn_resend_push(c, XIO_IO_NONBLOCK | XIO_IO_TRY);
		if (!xio__conn_resend_pending(c) || c->resend_bg) {
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
		int push = r == -EAGAIN && mine(c) &&
			   !atomic_load_explicit(&c->resend_busy, memory_order_relaxed);
		int64_t ms = deadline < 0 ? -1 : deadline - mono_ms();
		if (deadline >= 0 && ms <= 0)
			return got ? (ssize_t)got : -EAGAIN;
		if (!push && (ms < 0 || ms > 10))
			ms = 10;
		struct pollfd p = { .fd = c->fd, .events = (short)(POLLIN | (push ? POLLOUT : 0)) };
		if (xio_sys_poll(&p, 1, (int)ms) == -EINTR)
			return got ? (ssize_t)got : -EINTR;
	}
}

short xio__conn_resend_revents(struct xio_conn *c, short events, short kernel_revents)
{
	/* Room: push, waiting a moment for the thread if it is at it, so that
	 * room it leaves after the last byte is reported now (an
	 * edge-triggered set may hear of it only this once). */
	if (xio__conn_resend_pending(c) && (kernel_revents & (POLLOUT | POLLERR | POLLHUP))) {
		if (!mine(c)) {
			foreign_wait(c, XIO_IO_TRY);
		} else if (lock_brief(c)) {
			settle(c, c->fd, push_locked(c, c->fd, XIO_IO_NONBLOCK));
			xio__resend_unlock(c);
		}
	}
	if (xio__conn_resend_pending(c))
		kernel_revents &= (short)~POLLOUT;
	return (short)(kernel_revents & (events | POLLERR | POLLHUP | POLLNVAL));
}

void xio__conn_ring_done(struct xio_conn *c)
{
	c->rx_raw = 1;
	atomic_thread_fence(memory_order_seq_cst); /* finish() */
	if (!xio__conn_resend_pending(c))
		c->accel = 0; /* nothing of the connection is in the segment now */
}

int xio__conn_left_shutdown(struct xio_conn *c, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	if (how != SHUT_RD && xio__conn_resend_pending(c)) {
		/* The FIN goes after the resend: whoever pushes its last byte
		 * sends it (finish), or we do, if that was just now. */
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

/* --- close, exec, seccomp ----------------------------------------------------- */

/* The close of a socket with a resend pending, as TCP closes one with
 * data queued: the data goes on in the background (SO_LINGER {1, N}: the
 * close waits for it up to N seconds first); SO_LINGER {1, 0}, or data
 * received and not read, resets the connection and drops it. */
int xio__conn_close_resend(struct xio_conn *c)
{
	if (xio__conn_peer_left(c))
		xio__conn_follow(c);
	if (!c->left || !mine(c))
		return 0; /* never had one, or a forked copy: the owner finishes it */
	/* The flag, even if it looks done: the thread may be finishing it,
	 * and c must outlive that. */
	xio__resend_lock(c, 1);
	if (!xio__conn_resend_pending(c)) {
		xio__resend_unlock(c);
		return 0;
	}
	/* SO_LINGER set by the program since the resend began (it is not our
	 * {1, 0} any more) is the one that applies. */
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
	int r;
	if (unread > 0 || (!c->rx_raw && xio__chan_rx_pending(&c->rx)) ||
	    (c->app_linger_on && c->app_linger_s == 0)) {
		/* The socket keeps SO_LINGER {1, 0}: the close aborts. */
		r = settle(c, c->fd, -EPROTO);
	} else {
		int64_t ms = c->app_linger_on ? (int64_t)c->app_linger_s * 1000 : 0;
		r = settle(c, c->fd, push_until(c, c->fd, ms));
	}
	int taken = 0;
	if (is_pending(r)) {
		pthread_mutex_lock(&bg_mu);
		struct bg *e = c->resend_bg ? bg_find(c, -1) : NULL;
		if (e) {
			e->closed = 1;
			c->fd = e->fd;
		}
		pthread_mutex_unlock(&bg_mu);
		taken = e || watch(c, 1) == 0;
		if (!taken) /* nobody to send the rest: a reset, not a short stream */
			settle(c, c->fd, -EPROTO);
	}
	xio__resend_unlock(c);
	return taken;
}

void xio__conn_resend_flush(struct xio_conn *c, int ms)
{
	if (!xio__conn_resend_pending(c) || !mine(c))
		return;
	int64_t end = mono_ms() + ms;
	while (!xio__resend_lock(c, 0)) {
		if (mono_ms() >= end) {
			/* A thread blocked in a write holds it: its send fails now. */
			xio__sock_reset(c->fd);
			return;
		}
		xio_sys_sleep_ms(1);
	}
	int r;
	while ((r = push_until(c, c->fd, end - mono_ms())) == -EINTR && mono_ms() < end)
		;
	settle(c, c->fd, is_pending(r) ? -EPROTO : r);
	xio__resend_unlock(c);
}

void xio__resend_closed_flush(int ms)
{
	/* The thread pushes; this waits for it, then resets what is left (the
	 * thread's next push fails, and it lets that connection go). */
	int64_t end = mono_ms() + ms;
	for (;;) {
		pthread_mutex_lock(&bg_mu);
		size_t n = 0;
		for (size_t i = 0; i < nbg; i++)
			if (bgs[i].closed) {
				n++;
				if (mono_ms() >= end)
					xio__sock_reset(bgs[i].fd);
			}
		pthread_mutex_unlock(&bg_mu);
		if (!n || mono_ms() >= end)
			return;
		xio_sys_sleep_ms(1);
	}
}
