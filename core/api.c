/*
 * api.c - the native API of include/xio.h on top of conn.c and chan.c.
 * Calls return 0, a count or -errno and leave errno alone (see xio.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "xio.h"
#include "xio/conn.h"
#include "xio/ctl.h"
#include "xio/sys.h"

#define BUF_TX 1u   /* xio_buf from xio_alloc on an accelerated conn */
#define BUF_RX 2u   /* from xio_recv on an accelerated conn */
#define BUF_HEAP 3u /* private memory, on a kernel conn */

struct xio_listener {
	int fd;
	int nonblock;
	/* The monitor's id for it (0: not registered) and the control session
	 * that gave it: written by the watcher thread when a new monitor is
	 * told again, read by xio_accept. */
	_Atomic uint64_t id;
	uint32_t session;
	struct xio_listener *next; /* in the list of kept listeners */
};

/* --- listeners --------------------------------------------------------- */

/*
 * The listeners a new monitor must be told again (it knows nothing of what
 * the one before it knew): the control client's watcher thread calls
 * resume_listeners on every new session, as it does for the shim's. The
 * lock is taken before the control client's (xio__ctl_fork_guard: first at
 * fork); a listener leaves the list before it is freed.
 */
static pthread_mutex_t listeners_lock = PTHREAD_MUTEX_INITIALIZER;
static struct xio_listener *listeners;

/* LISTEN for l. An id of an older session means nothing to the monitor now
 * answering (it may name another listener there): it is forgotten whatever
 * the answer. Returns as xio__ctl_listen. */
static int register_locked(struct xio_listener *l)
{
	uint64_t id;
	int r = xio__ctl_listen(l->fd, &id, &l->session);
	atomic_store_explicit(&l->id, id, memory_order_relaxed);
	return r;
}

static void resume_listeners(void)
{
	pthread_mutex_lock(&listeners_lock);
	uint32_t s = xio__ctl_session();
	for (struct xio_listener *l = listeners; l; l = l->next)
		if (l->session != s || !atomic_load_explicit(&l->id, memory_order_relaxed))
			register_locked(l);
	pthread_mutex_unlock(&listeners_lock);
}

int xio_listen(xio_listener **out, const struct sockaddr *addr, socklen_t addrlen, int backlog,
	       unsigned flags)
{
	int one = 1, fd, r;

	if (!out || !addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
		return -EINVAL;
	struct xio_listener *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	fd = xio_sys_socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC |
				     ((flags & XIO_NONBLOCK) ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0) {
		r = fd;
		goto err_free;
	}
	xio_sys_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	r = xio_sys_bind(fd, addr, addrlen);
	if (r < 0)
		goto err_close;
	r = xio_sys_listen(fd, backlog);
	if (r < 0)
		goto err_close;
	l->fd = fd;
	l->nonblock = !!(flags & XIO_NONBLOCK);

	/* Register with the monitor. A listener it refused (a limit) stays
	 * on TCP; one no monitor answered for is kept all the same, like
	 * every registered one, and told to each new monitor. */
	xio__ctl_fork_guard(&listeners_lock);
	pthread_mutex_lock(&listeners_lock);
	r = register_locked(l);
	if (r != 0) {
		l->next = listeners;
		listeners = l;
	}
	pthread_mutex_unlock(&listeners_lock);
	if (r != 0)
		xio__ctl_keep(resume_listeners);
	*out = l;
	return 0;
err_close:
	xio_sys_close(fd);
err_free:
	free(l);
	return r;
}

int xio_listener_fd(const xio_listener *l)
{
	return l->fd;
}

int xio_listener_addr(const xio_listener *l, struct sockaddr_storage *ss, socklen_t *len)
{
	*len = sizeof(*ss);
	return xio_sys_getsockname(l->fd, (struct sockaddr *)ss, len);
}

static void set_nodelay(int fd)
{
	int one = 1;
	xio_sys_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int xio_accept(xio_listener *l, xio_conn **out, unsigned flags)
{
	int fd;

	fd = xio_sys_accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return fd; /* -EAGAIN only when the listener is non-blocking */
	struct xio_conn *c = xio__conn_kernel(fd);
	if (!c) {
		xio_sys_close(fd);
		return -ENOMEM;
	}
	set_nodelay(fd);
	c->nonblock = !!(flags & XIO_NONBLOCK);
	if (atomic_load_explicit(&l->id, memory_order_relaxed))
		xio__conn_pair_accepted(c);
	xio__conn_publish_rcvbuf(c, 0);
	*out = c;
	return 0;
}

int xio_listener_close(xio_listener *l)
{
	if (!l)
		return -EINVAL;
	pthread_mutex_lock(&listeners_lock);
	for (struct xio_listener **pp = &listeners; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	uint64_t id = atomic_load_explicit(&l->id, memory_order_relaxed);
	if (id && l->session == xio__ctl_session()) {
		/* An id of an older session names nothing of ours now. */
		struct xio_msg_id m;
		memset(&m, 0, sizeof(m));
		xio_ctl_hdr(&m.h, XIO_MSG_UNLISTEN, 0);
		m.id = id;
		xio__ctl_post(&m, -1);
	}
	pthread_mutex_unlock(&listeners_lock);
	int r = xio_sys_close(l->fd);
	free(l);
	return r;
}

/* --- connections ------------------------------------------------------- */

int xio_connect(xio_conn **out, const struct sockaddr *addr, socklen_t addrlen, unsigned flags)
{
	int fd, r;

	if (!out || !addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
		return -EINVAL;
	fd = xio_sys_socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	uint64_t intent = xio__conn_intent(fd);
	r = xio_sys_connect(fd, addr, addrlen);
	if (r == -EINTR) {
		/* The handshake goes on in the kernel; wait for it as a
		 * blocking connect() that was restarted would. */
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int e = 0;
		socklen_t el = sizeof(e);
		while ((r = xio_sys_poll(&p, 1, -1)) == -EINTR)
			;
		if (r >= 0 && xio_sys_getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0)
			r = -e;
	}
	struct xio_conn *c = r == 0 ? xio__conn_kernel(fd) : NULL;
	if (!c) {
		/* Let the monitor drop its copy of the socket now. */
		struct xio_conn tmp = { .fd = fd };
		xio__conn_pair_connected(&tmp, intent);
		xio_sys_close(fd);
		return r < 0 ? r : -ENOMEM;
	}
	set_nodelay(fd);
	c->nonblock = !!(flags & XIO_NONBLOCK);
	xio__conn_pair_connected(c, intent);
	xio__conn_publish_rcvbuf(c, 0);
	*out = c;
	return 0;
}

int xio_conn_fd(const xio_conn *c)
{
	return c->fd;
}

int xio_conn_is_accelerated(const xio_conn *c)
{
	return c->accel;
}

int xio_conn_set_nonblock(xio_conn *c, int on)
{
	c->nonblock = !!on;
	return 0;
}

size_t xio_max_msg(const xio_conn *c)
{
	return c->accel ? c->params.max_msg : 65536;
}

int xio_conn_stats(const xio_conn *c, struct xio_conn_stats *st)
{
	*st = c->st;
	return 0;
}

/* --- socket-like I/O --------------------------------------------------- */

static unsigned io_flags(const xio_conn *c)
{
	return c->nonblock ? XIO_IO_NONBLOCK : 0;
}

/* The peer left shared memory (leave.c): do our part, and tell the
 * caller to call again. A reset is returned as it is. */
static ssize_t follow(xio_conn *c)
{
	int r = xio__conn_follow(c);
	return r < 0 ? r : XIO__FOLLOW;
}

/* After a leave, the ring's rest is read first; once it is empty the
 * connection is the kernel socket's alone. */
static void left_settle(xio_conn *c)
{
	if (xio__conn_peer_left(c))
		xio__conn_follow(c);
	if (c->accel && c->left && !xio__chan_rx_pending(&c->rx))
		xio__conn_ring_done(c); /* accel stays while a resend is pending */
}

ssize_t xio_read(xio_conn *c, void *buf, size_t len)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };
	ssize_t r;
	while ((r = xio__conn_readv(c, &v, 1, io_flags(c))) == XIO__FOLLOW)
		if ((r = follow(c)) != XIO__FOLLOW)
			break;
	return r;
}

ssize_t xio_write(xio_conn *c, const void *buf, size_t len)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
	left_settle(c);
	if ((!c->accel || c->left) && !c->nonblock) {
		/* A blocking write returns when all is written, as promised. */
		size_t done = 0;
		while (done < len) {
			v.iov_base = (char *)buf + done;
			v.iov_len = len - done;
			ssize_t r = xio__conn_writev(c, &v, 1, 0);
			if (r == -EINTR && done)
				continue;
			if (r < 0)
				return done ? (ssize_t)done : r;
			done += (size_t)r;
		}
		return (ssize_t)done;
	}
	ssize_t r;
	while ((r = xio__conn_writev(c, &v, 1, io_flags(c))) == XIO__FOLLOW)
		if ((r = follow(c)) != XIO__FOLLOW)
			break;
	return r;
}

/* --- zero copy --------------------------------------------------------- */

int xio_alloc(xio_conn *c, size_t len, struct xio_buf *b)
{
	if (len == 0 || len > xio_max_msg(c))
		return -EMSGSIZE;
	if (!c->accel) {
		b->data = malloc(len);
		if (!b->data)
			return -ENOMEM;
		b->len = 0;
		b->cap = (uint32_t)len;
		b->token = 0;
		b->flags = BUF_HEAP;
		return 0;
	}
	for (;;) {
		ssize_t s = xio__conn_tx_state(c);
		if (s < 0)
			return (int)s;
		/* Held (tx_active) until the allocation is posted or given
		 * back: a receiver may be giving quiet memory back (chan.h). */
		int e = xio__chan_tx_enter(&c->tx);
		int64_t off = e < 0 ? e : xio__chan_alloc(&c->tx, (uint32_t)len);
		xio__chan_tx_leave(&c->tx);
		if (off >= 0) {
			uint32_t chunk = c->params.chunk_size;
			uint32_t cap = ((uint32_t)len + chunk - 1) & ~(chunk - 1);
			b->data = xio__chan_tx_ptr(&c->tx, (uint32_t)off);
			b->len = 0;
			b->cap = cap > c->params.max_msg ? c->params.max_msg : cap;
			b->token = (uint32_t)off;
			b->flags = BUF_TX;
			return 0;
		}
		if (off != -ENOBUFS)
			return (int)off;
		xio__conn_after_post(c);
		ssize_t w = xio__conn_tx_wait(c, io_flags(c));
		if (w <= 0)
			return (int)w;
	}
}

ssize_t xio_send(xio_conn *c, struct xio_buf *b)
{
	if (b->len == 0 || b->len > b->cap)
		return -EINVAL;
	if (b->flags == BUF_HEAP) {
		ssize_t r = xio_write(c, b->data, b->len);
		free(b->data);
		b->data = NULL;
		return r;
	}
	if (b->flags == BUF_TX && (c->left || xio__conn_peer_left(c))) {
		/* Off shared memory now: the payload goes over the kernel. */
		left_settle(c);
		ssize_t r = xio_write(c, xio__chan_tx_ptr(&c->tx, b->token), b->len);
		xio__chan_unalloc(&c->tx, b->token);
		xio__chan_tx_leave(&c->tx);
		b->flags = 0;
		return r;
	}
	if (b->flags != BUF_TX || !c->accel)
		return -EINVAL;
	ssize_t s = xio__conn_tx_state(c);
	if (s < 0) {
		xio__chan_unalloc(&c->tx, b->token);
		xio__chan_tx_leave(&c->tx);
		return s;
	}
	int r = xio__chan_post(&c->tx, b->token, b->len);
	xio__chan_tx_leave(&c->tx);
	if (r < 0)
		return r;
	xio__conn_mem_note(c);
	c->st.tx_bytes += b->len;
	c->st.tx_msgs++;
	xio__conn_after_post(c);
	b->flags = 0;
	return b->len;
}

ssize_t xio_recv(xio_conn *c, struct xio_buf *b)
{
	left_settle(c);
	if (!c->accel) {
		size_t cap = xio_max_msg(c);
		void *p = malloc(cap);
		if (!p)
			return -ENOMEM;
		ssize_t r = xio_read(c, p, cap);
		if (r <= 0) {
			free(p);
			return r;
		}
		b->data = p;
		b->len = (uint32_t)r;
		b->cap = (uint32_t)cap;
		b->token = 0;
		b->flags = BUF_HEAP;
		return r;
	}
	for (;;) {
		uint32_t off, skip, len;
		int r = xio__chan_next(&c->rx, &off, &skip, &len);
		if (r > 0) {
			b->data = (char *)xio__chan_rx_ptr(&c->rx, off) + skip;
			b->len = len;
			b->cap = len;
			b->token = off;
			b->flags = BUF_RX;
			c->st.rx_bytes += len;
			c->st.rx_msgs++;
			/* The sender's POLLOUT and SIOCOUTQ go by it (io.c). */
			atomic_store_explicit(&c->rx.g.ctl->rx_bytes, c->st.rx_bytes,
					      memory_order_relaxed);
			return len;
		}
		if (r < 0)
			return r;
		if (xio__conn_peer_left(c) || c->left)
			return xio_recv(c, b); /* the ring is done: the kernel's turn */
		ssize_t w = xio__conn_rx_wait(c, io_flags(c));
		if (w <= 0)
			return w;
	}
}

int xio_release(xio_conn *c, struct xio_buf *b)
{
	switch (b->flags) {
	case BUF_HEAP:
		free(b->data);
		break;
	case BUF_RX:
		if (!c->accel)
			return -EINVAL;
		if (c->rx.loans)
			c->rx.loans--;
		xio__chan_release(&c->rx, b->token);
		xio__conn_after_release(c);
		break;
	case BUF_TX:
		if (!c->accel)
			return -EINVAL;
		xio__chan_unalloc(&c->tx, b->token);
		xio__chan_tx_leave(&c->tx);
		break;
	default:
		return -EINVAL;
	}
	b->flags = 0;
	b->data = NULL;
	return 0;
}

/* --- shutdown, close, poll --------------------------------------------- */

int xio_shutdown(xio_conn *c, int how)
{
	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return -EINVAL;
	if (!c->accel)
		return xio_sys_shutdown(c->fd, how);
	if (c->left)
		return xio__conn_left_shutdown(c, how);
	if (how != SHUT_RD && !c->shut_wr) {
		c->shut_wr = 1;
		/* Ordered after every descriptor we posted: the reader that sees
		 * tx_fin looks at the ring once more before reporting the end. */
		atomic_store_explicit(&c->tx.g.ctl->tx_fin, 1, memory_order_release);
		xio__conn_after_post(c);
	}
	if (how != SHUT_WR && !c->shut_rd) {
		c->shut_rd = 1;
		atomic_store_explicit(&c->rx.g.ctl->rx_closed, 1, memory_order_release);
		atomic_thread_fence(memory_order_seq_cst);
		if (xio_wait_claim(&c->rx.g.ctl->tx_waiting))
			xio__conn_doorbell(c);
	}
	/* Threads of this process waiting on the socket are woken, as the
	 * kernel wakes them: one asleep in a read through the kernel socket
	 * itself (both ways shut, no doorbell is needed any more), those in
	 * poll, select or epoll_wait through the shim. */
	if (how == SHUT_RDWR)
		xio_sys_shutdown(c->fd, SHUT_RDWR);
	xio__conn_tell_waiters(c);
	return 0;
}

int xio_close(xio_conn *c)
{
	if (!c)
		return -EINVAL;
	int fd = c->fd;
	if (xio__conn_close_resend(c))
		return xio_sys_close(fd); /* the resend goes on in the background */
	xio__conn_detach(c);
	int r = xio_sys_close(c->fd);
	xio__conn_free(c);
	return r;
}

int xio_conn_poll_arm(xio_conn *c, short events)
{
	left_settle(c);
	if (!c->accel)
		return 0; /* the kernel socket tells the truth by itself */
	return xio__conn_poll(c, events, xio__wait_token());
}

const char *xio_strerror(int err)
{
	if (err == -EPROTO)
		return "xio: the peer broke the shared-memory protocol";
	return strerror(err < 0 ? -err : err);
}
