/*
 * w_io.c - the data path: read/write, recv/send and their vector, message
 * and fortified forms, sendfile and splice. On an accelerated socket they
 * move bytes through shared memory (core/io.c) and never enter the kernel
 * while the peer keeps up; on anything else they are the libc call.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "xio/sys.h"

#define EXPORT __attribute__((visibility("default")))
#define NOT_MINE (-100000) /* not an accelerated socket: use libc */

/* The psock of fd if it is (or has just become) an accelerated connection. */
static inline struct psock *conn_of(int fd, int may_wait)
{
	struct psock *ps = fdtab_lookup(fd);
	if (__builtin_expect(!ps, 1))
		return NULL;
	int k = atomic_load_explicit(&ps->kind, memory_order_acquire);
	if (k == PS_CONNECTING)
		k = psock_finish_connect(ps, fd, may_wait && !atomic_load(&ps->nonblock));
	return k == PS_CONN ? ps : NULL;
}

static unsigned io_flags(struct psock *ps, int msgflags)
{
	unsigned f = 0;
	if (atomic_load_explicit(&ps->nonblock, memory_order_relaxed) || (msgflags & MSG_DONTWAIT))
		f |= XIO_IO_NONBLOCK;
	if (msgflags & MSG_PEEK)
		f |= XIO_IO_PEEK;
	if (msgflags & MSG_WAITALL)
		f |= XIO_IO_WAITALL;
	return f;
}

/* The read or write found that the peer left shared memory: follow it
 * (both locks, so no other read or write runs meanwhile), then try again. */
static int refollow(struct psock *ps)
{
	int r = xio__shim_follow(ps);
	return r < 0 ? r : 1;
}

/* A side shared since fork: enter the call as the user of its channel
 * state, or take it over first (which moves it to the kernel). Called and
 * returns with lock held; 1 if this call is marked busy. */
static int enter_shared(struct psock *ps, pthread_mutex_t *lock)
{
	struct xio_conn *c = ps->conn;
	for (int i = 0; i < 100 && c->accel && !c->left; i++) {
		if (xio__shim_enter(ps))
			return 1;
		pthread_mutex_unlock(lock);
		xio__shim_claim(ps);
		pthread_mutex_lock(lock);
	}
	return 0;
}

static ssize_t ps_readv_once(struct psock *ps, const struct iovec *iov, int n, int msgflags)
{
	pthread_mutex_lock(&ps->rlock);
	struct xio_conn *c = ps->conn;
	int busy = ps->inherited && enter_shared(ps, &ps->rlock);
	ssize_t r = xio__conn_readv(c, iov, n, io_flags(ps, msgflags));
	if (busy)
		xio__shim_leave_call(ps);
	if (c->left || r == XIO__FOLLOW) {
		/* Its words belong to the protocol of leaving now. */
		pthread_mutex_unlock(&ps->rlock);
		return r;
	}
	/*
	 * Arm only to sleep: a program that reads is awake, so its peer must
	 * not pay a doorbell for the next message. A word left armed by a
	 * poll or epoll_wait that has returned is taken back here, unless
	 * another thread of this process sleeps in one right now (it must
	 * still be woken). At the end of the stream the word is taken back in
	 * any case. A doorbell the peer claimed is read now: an unread byte
	 * would keep the socket readable for nothing, and turn the close's FIN
	 * into a RST.
	 */
	_Atomic uint32_t *w = &c->rx.g.ctl->rx_waiting;
	int ended = r == 0 || (r < 0 && r != -EAGAIN && r != -EINTR);
	if (ended || (!ps->inherited &&
		      atomic_load_explicit(&xio__shim_sleepers, memory_order_acquire) == 0)) {
		if (atomic_load_explicit(w, memory_order_relaxed) != XIO_WAIT_IDLE)
			xio__conn_disarm(c, w);
	} else if (!xio__chan_rx_pending(&c->rx)) {
		/* A copy of this connection in another process (fork), or
		 * another thread here, may sleep on it in a call we cannot
		 * see: stay armed, as a TCP socket would wake them. With the
		 * token it has, which the peer may have rung for already: so
		 * never as a token of its own (XIO_TOKEN_OWN promises one not
		 * rung yet, and a sleep would keep it rather than arm its own,
		 * and sleep for ever: postgres' backends, issue 16). */
		xio__conn_arm_locked(c, w, &c->rx.g.ctl->rx_token,
				     atomic_load_explicit(&c->rx.g.ctl->rx_token,
							  memory_order_relaxed) &
					     ~XIO_TOKEN_OWN);
	}
	pthread_mutex_unlock(&ps->rlock);
	return r;
}

static ssize_t readv_call(struct psock *ps, const struct iovec *iov, int n, int msgflags)
{
	ssize_t r;
	if (msgflags & MSG_OOB) {
		/* Urgent data only ever comes over the kernel socket (a peer
		 * that sent some left shared memory first); with none, the
		 * kernel answers EINVAL as TCP does. */
		struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
		return xio_sys_recvmsg(ps->fd, &m, msgflags);
	}
	/* The counters say what came over shared memory: after a leave the
	 * same call may read from the kernel. */
	if (ps->inherited)
		xio__shim_claim(ps);
	uint64_t b0 = ps->conn->st.rx_bytes, m0 = ps->conn->st.rx_msgs;
	while ((r = ps_readv_once(ps, iov, n, msgflags)) == XIO__FOLLOW)
		if ((r = refollow(ps)) < 0)
			break;
	STAT_ADD(rx_bytes, ps->conn->st.rx_bytes - b0);
	STAT_ADD(rx_msgs, ps->conn->st.rx_msgs - m0);
	xio__shim_settle(ps);
	return r;
}

static ssize_t writev_call(struct psock *ps, const struct iovec *iov, int n, int msgflags)
{
	ssize_t r;
	if (msgflags & MSG_OOB) {
		/* Urgent data is the kernel's: the connection moves to it first,
		 * so the urgent byte keeps its place in the stream. */
		if ((r = xio__shim_leave(ps, XIO_LEAVE_OOB)) < 0)
			return r;
		struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
		r = xio_sys_sendmsg(ps->fd, &m, msgflags | MSG_NOSIGNAL);
	} else {
		if (ps->inherited)
			xio__shim_claim(ps);
		uint64_t b0 = ps->conn->st.tx_bytes;
		for (;;) {
			pthread_mutex_lock(&ps->wlock);
			int busy = ps->inherited && enter_shared(ps, &ps->wlock);
			r = xio__conn_writev(ps->conn, iov, n, io_flags(ps, msgflags));
			if (busy)
				xio__shim_leave_call(ps);
			pthread_mutex_unlock(&ps->wlock);
			if (r != XIO__FOLLOW || (r = refollow(ps)) < 0)
				break;
		}
		STAT_ADD(tx_bytes, ps->conn->st.tx_bytes - b0);
		STAT_ADD(tx_msgs, ps->conn->st.tx_bytes != b0); /* one per call, as before */
		xio__shim_settle(ps);
	}
	if (r == -EPIPE && !(msgflags & MSG_NOSIGNAL)) {
		/* As the kernel does for a write to a closed TCP connection. */
		raise(SIGPIPE);
	}
	return r;
}

/* A call in progress keeps the socket whole if another thread closes its
 * fd meanwhile (psock_call_enter). */
static ssize_t ps_readv(struct psock *ps, const struct iovec *iov, int n, int msgflags)
{
	psock_call_enter(ps);
	ssize_t r = readv_call(ps, iov, n, msgflags);
	psock_call_exit(ps);
	return r;
}

static ssize_t ps_writev(struct psock *ps, const struct iovec *iov, int n, int msgflags)
{
	psock_call_enter(ps);
	ssize_t r = writev_call(ps, iov, n, msgflags);
	psock_call_exit(ps);
	return r;
}

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(read)(fd, buf, len);
	struct iovec v = { buf, len };
	return xio_ret(ps_readv(ps, &v, 1, 0));
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		abort(); /* what glibc's fortified read does */
	return read(fd, buf, len);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(write)(fd, buf, len);
	struct iovec v = { (void *)buf, len };
	return xio_ret(ps_writev(ps, &v, 1, 0));
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(readv)(fd, iov, n);
	return xio_ret(ps_readv(ps, iov, n, 0));
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(writev)(fd, iov, n);
	return xio_ret(ps_writev(ps, iov, n, 0));
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(recv)(fd, buf, len, flags);
	struct iovec v = { buf, len };
	return xio_ret(ps_readv(ps, &v, 1, flags));
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	if (len > buflen)
		abort();
	return recv(fd, buf, len, flags);
}

/* Linux's TCP never reports a source address on receive: the length
 * comes back as 0 and the buffer untouched. */
static void fill_peer(int fd, struct sockaddr *sa, socklen_t *len)
{
	(void)fd;
	if (sa && len)
		*len = 0;
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *sa,
			socklen_t *salen)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(recvfrom)(fd, buf, len, flags, sa, salen);
	struct iovec v = { buf, len };
	ssize_t r = ps_readv(ps, &v, 1, flags);
	if (r >= 0)
		fill_peer(fd, sa, salen);
	return xio_ret(r);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
			      struct sockaddr *sa, socklen_t *salen)
{
	if (len > buflen)
		abort();
	return recvfrom(fd, buf, len, flags, sa, salen);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(recvmsg)(fd, m, flags);
	ssize_t r = ps_readv(ps, m->msg_iov, (int)m->msg_iovlen, flags);
	if (r >= 0) {
		socklen_t l = m->msg_namelen;
		fill_peer(fd, m->msg_name, m->msg_name ? &l : NULL);
		if (m->msg_name)
			m->msg_namelen = l;
		m->msg_controllen = 0; /* TCP carries no ancillary data here */
		m->msg_flags = 0;
	}
	return xio_ret(r);
}

EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *tmo)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(recvmmsg)(fd, v, n, flags, tmo);
	unsigned i;
	for (i = 0; i < n; i++) {
		/* After the first message, take only what is there already. */
		int f = (flags & ~MSG_WAITFORONE) | (i > 0 ? MSG_DONTWAIT : 0);
		ssize_t r = ps_readv(ps, v[i].msg_hdr.msg_iov, (int)v[i].msg_hdr.msg_iovlen, f);
		if (r < 0) {
			if (i == 0)
				return (int)xio_ret(r);
			break;
		}
		v[i].msg_len = (unsigned)r;
		v[i].msg_hdr.msg_controllen = 0;
		v[i].msg_hdr.msg_flags = 0;
		if (r == 0)
			{ i++; break; }
	}
	return (int)i;
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(send)(fd, buf, len, flags);
	struct iovec v = { (void *)buf, len };
	return xio_ret(ps_writev(ps, &v, 1, flags));
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *sa,
		      socklen_t salen)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(sendto)(fd, buf, len, flags, sa, salen);
	struct iovec v = { (void *)buf, len };
	return xio_ret(ps_writev(ps, &v, 1, flags)); /* connected: the address is ignored */
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(sendmsg)(fd, m, flags);
	return xio_ret(ps_writev(ps, m->msg_iov, (int)m->msg_iovlen, flags));
}

EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	SHIM_INIT();
	struct psock *ps = conn_of(fd, 1);
	if (!ps)
		return REAL(sendmmsg)(fd, v, n, flags);
	unsigned i;
	for (i = 0; i < n; i++) {
		ssize_t r = ps_writev(ps, v[i].msg_hdr.msg_iov, (int)v[i].msg_hdr.msg_iovlen, flags);
		if (r < 0) {
			if (i == 0)
				return (int)xio_ret(r);
			break;
		}
		v[i].msg_len = (unsigned)r;
	}
	return (int)i;
}

#define COPY_CHUNK 65536

/* sendfile into an accelerated socket: read the file, write the channel. */
static ssize_t sendfile_xio(struct psock *ps, int in, off_t *off, size_t count)
{
	char *buf = malloc(COPY_CHUNK);
	size_t done = 0;
	ssize_t r = 0;
	if (!buf)
		return -ENOMEM;
	while (done < count) {
		size_t want = count - done < COPY_CHUNK ? count - done : COPY_CHUNK;
		ssize_t got = off ? XIO__SC(SYS_pread64, in, buf, want, *off, 0, 0)
				  : xio_sys_read(in, buf, want);
		if (got <= 0) {
			r = got;
			break;
		}
		struct iovec v = { buf, (size_t)got };
		ssize_t w = ps_writev(ps, &v, 1, 0);
		if (w <= 0) {
			r = w;
			break;
		}
		if (off)
			*off += w;
		else if (w < got) /* give back what the channel did not take */
			XIO__SC(SYS_lseek, in, (long)(w - got), SEEK_CUR, 0, 0, 0);
		done += (size_t)w;
		if (w < got)
			break;
	}
	free(buf);
	return done ? (ssize_t)done : r;
}

EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	SHIM_INIT();
	struct psock *ps = conn_of(out, 1);
	if (!ps)
		return REAL(sendfile)(out, in, off, count);
	return xio_ret(sendfile_xio(ps, in, off, count));
}

EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t count)
{
	return sendfile(out, in, off, count);
}

/*
 * splice with an accelerated socket on one side: a copy through memory.
 * From the socket, bytes are peeked, written out, and only what the target
 * took is consumed, so nothing is lost when the pipe is full. Into the
 * socket, no more is read from the pipe than the channel takes.
 */
EXPORT ssize_t splice(int in, off_t *inoff, int out, off_t *outoff, size_t len, unsigned flags)
{
	SHIM_INIT();
	struct psock *pin = conn_of(in, 1), *pout = conn_of(out, 1);
	if (!pin && !pout)
		return REAL(splice)(in, inoff, out, outoff, len, flags);
	if ((pin && inoff) || (pout && outoff))
		return xio_ret(-ESPIPE);
	size_t want = len < COPY_CHUNK ? len : COPY_CHUNK;
	char *buf = malloc(want ? want : 1);
	ssize_t r;
	if (!buf)
		return xio_ret(-ENOMEM);
	int nb = (flags & SPLICE_F_NONBLOCK) ? MSG_DONTWAIT : 0;
	if (pin) {
		struct iovec v = { buf, want };
		r = ps_readv(pin, &v, 1, MSG_PEEK | nb);
		if (r > 0) {
			ssize_t w = pout ? ps_writev(pout, &(struct iovec){ buf, (size_t)r }, 1, 0)
				    : outoff ? XIO__SC(SYS_pwrite64, out, buf, r, *outoff, 0, 0)
					     : xio_sys_write(out, buf, (size_t)r);
			if (w > 0) {
				struct iovec c = { buf, (size_t)w };
				ps_readv(pin, &c, 1, MSG_DONTWAIT); /* consume what went out */
				if (outoff)
					*outoff += w;
			}
			r = w;
		}
	} else {
		pthread_mutex_lock(&pout->wlock);
		size_t room = (size_t)xio_bufalloc_max_contig(&pout->conn->tx.ba) *
			      pout->conn->params.chunk_size;
		pthread_mutex_unlock(&pout->wlock);
		if (room > 0 && room < want)
			want = room;
		r = inoff ? XIO__SC(SYS_pread64, in, buf, want, *inoff, 0, 0)
			  : xio_sys_read(in, buf, want);
		if (r > 0) {
			if (inoff)
				*inoff += r;
			struct iovec v = { buf, (size_t)r };
			r = ps_writev(pout, &v, 1, 0); /* blocking: all of it goes */
		}
	}
	free(buf);
	return xio_ret(r);
}
