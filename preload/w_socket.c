/*
 * w_socket.c - wrappers for creating, connecting, accepting, duplicating
 * and closing sockets. Each one resolves the real function, looks the fd
 * up once, and passes straight through when the shim has nothing to do.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <string.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include "shim.h"
#include "xio/ctl.h"
#include "xio/sys.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT int socket(int domain, int type, int protocol)
{
	SHIM_INIT();
	int fd = REAL(socket)(domain, type, protocol);
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0 || (domain != AF_INET && domain != AF_INET6) || base != SOCK_STREAM ||
	    (protocol != 0 && protocol != IPPROTO_TCP) || atomic_load(&xio__shim_off))
		return fd;
	/* A stale entry (an fd closed behind our back, e.g. by fclose) must
	 * not survive into the new socket. */
	struct psock *old = fdtab_exchange(fd, NULL);
	if (old)
		psock_unref(old, fd);
	psock_new(fd, PS_TCP, !!(type & SOCK_NONBLOCK));
	return fd;
}

static int bound_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_port != 0;
	if (ss->ss_family == AF_INET6)
		return ((const struct sockaddr_in6 *)ss)->sin6_port != 0;
	return 0;
}

/*
 * TCP_DEFER_ACCEPT: the kernel hands a connection to accept() only once
 * its first data has come. The shim's pairing carries that data over
 * shared memory, where the kernel never sees it, so accept() would wait for
 * the whole defer time (Apache's AcceptFilter waits 30 s). Such a listener
 * stays on the kernel: its connections are plain TCP, and accept() keeps
 * the kernel's timing (docs/compatibility.md).
 */
static int defers_accept(int fd)
{
	int v = 0;
	socklen_t l = sizeof(v);
	return xio_sys_getsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, &l) == 0 && v > 0;
}

/*
 * A socket bound to a port is registered before the kernel listens: a
 * client can connect as soon as the kernel listens (one started right
 * after its server, retrying), and must find the listener known to the
 * monitor already, or it would stay on TCP. If the kernel then refuses to
 * listen, the registration is taken back. A socket that listen() binds
 * itself (no bind before) has no port to register until it listens. A
 * listener that no monitor answers for stays a listener: it is registered
 * when a monitor comes (psock_register_listener).
 */
EXPORT int listen(int fd, int backlog)
{
	SHIM_INIT();
	struct psock *ps = fdtab_lookup(fd);
	if (!ps || atomic_load(&ps->kind) != PS_TCP)
		return REAL(listen)(fd, backlog);
	int saved = errno;
	if (defers_accept(fd)) {
		psock_to_kernel(ps);
		errno = saved;
		return REAL(listen)(fd, backlog);
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int named = xio_sys_getsockname(fd, (struct sockaddr *)&ss, &sl) == 0;
	int early = named && bound_port(&ss) && xio__allowed((struct sockaddr *)&ss, sl) &&
		    psock_register_listener(ps, fd) != 0;
	errno = saved;
	int r = REAL(listen)(fd, backlog);
	saved = errno;
	if (r < 0) {
		if (early)
			psock_unlisten(ps);
		errno = saved;
		return r;
	}
	if (early) {
		atomic_store(&ps->kind, PS_LISTENER);
		errno = saved;
		return r;
	}
	sl = sizeof(ss);
	if (xio_sys_getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    xio__allowed((struct sockaddr *)&ss, sl) && psock_register_listener(ps, fd) != 0)
		atomic_store(&ps->kind, PS_LISTENER);
	else
		psock_to_kernel(ps);
	errno = saved;
	return r;
}

/* A listener inherited through fork (nginx workers, pre-forked servers):
 * the process that accepts on it registers it too, before it waits, so
 * that its clients pair even once the parent has closed its copy. */
static void own_listener(struct psock *ps, int fd)
{
	if (ps && atomic_load(&ps->kind) == PS_LISTENER && ps->listener_pid != xio_sys_getpid()) {
		int saved = errno;
		pthread_mutex_lock(&ps->lock);
		if (ps->listener_pid != xio_sys_getpid())
			psock_register_listener(ps, fd);
		pthread_mutex_unlock(&ps->lock);
		errno = saved;
	}
}

static int after_accept(struct psock *lps, int nfd, int flags)
{
	if (nfd < 0 || !lps || atomic_load(&lps->kind) != PS_LISTENER)
		return nfd;
	if (atomic_load(&xio__shim_off)) {
		STAT_ADD(fallback_conns, 1);
		return nfd;
	}
	int saved = errno;
	struct psock *old = fdtab_exchange(nfd, NULL);
	if (old)
		psock_unref(old, nfd);
	struct xio_conn *c = xio__conn_kernel(nfd);
	if (c) {
		xio__conn_pair_accepted(c);
		if (c->accel) {
			struct psock *ps = psock_new(nfd, PS_TCP, !!(flags & SOCK_NONBLOCK));
			if (ps) {
				ps->conn = c;
				c->owner = ps;
				ps->snd_set = lps->snd_set;
				ps->rcv_set = lps->rcv_set;
				psock_apply_bufs(ps);
				atomic_store(&ps->kind, PS_CONN);
				STAT_ADD(accel_conns, 1);
				/* On fds 0-2 stdio may use it behind our back: paired
				 * (its client may have written already), it leaves. */
				if (nfd <= 2)
					xio__shim_leave(ps, XIO_LEAVE_STDIO);
				errno = saved;
				return nfd;
			}
			xio__conn_detach(c);
		}
		xio__conn_free(c);
	}
	STAT_ADD(fallback_conns, 1);
	errno = saved;
	return nfd;
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	SHIM_INIT();
	struct psock *lps = fdtab_lookup(fd);
	own_listener(lps, fd);
	return after_accept(lps, REAL(accept4)(fd, addr, len, flags), flags);
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	SHIM_INIT();
	struct psock *lps = fdtab_lookup(fd);
	own_listener(lps, fd);
	return after_accept(lps, REAL(accept)(fd, addr, len), 0);
}

EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	SHIM_INIT();
	struct psock *ps = fdtab_lookup(fd);
	if (!ps || atomic_load(&ps->kind) != PS_TCP || !sa ||
	    (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return REAL(connect)(fd, sa, len);
	if (!xio__allowed(sa, len) || atomic_load(&xio__shim_off)) {
		psock_to_kernel(ps);
		return REAL(connect)(fd, sa, len);
	}
	uint64_t intent = xio__conn_intent(fd);
	if (!intent) { /* no monitor */
		STAT_ADD(fallback_conns, 1);
		psock_to_kernel(ps);
		return REAL(connect)(fd, sa, len);
	}
	int r = REAL(connect)(fd, sa, len);
	int e = errno;
	if (r == 0) {
		psock_pair_connected(ps, fd, intent);
	} else if (e == EINPROGRESS || e == EINTR || e == EALREADY) {
		/* The kernel goes on connecting; pair when it is done. */
		ps->intent = intent;
		atomic_store(&ps->kind, PS_CONNECTING);
		xio__epoll_sync(ps); /* watch for the connect to finish */
	} else {
		struct xio_conn *tmp = xio__conn_kernel(fd);
		if (tmp) { /* the monitor drops the intent (and its fd) */
			xio__conn_pair_connected(tmp, intent);
			xio__conn_detach(tmp);
			xio__conn_free(tmp);
		}
		psock_to_kernel(ps);
	}
	errno = e;
	return r;
}

EXPORT int close(int fd)
{
	SHIM_INIT();
	struct psock *ps = fdtab_lookup(fd) ? fdtab_exchange(fd, NULL) : NULL;
	if (ps) {
		if (psock_close_later(ps, fd))
			return 0; /* the call in progress closes it when it ends */
		int saved = errno;
		psock_unref(ps, fd);
		errno = saved;
	} else if (psock_closing_fd(fd)) {
		errno = EBADF; /* closed already, as far as the program knows */
		return -1;
	}
	return REAL(close)(fd);
}

EXPORT int shutdown(int fd, int how)
{
	SHIM_INIT();
	struct psock *ps = fdtab_lookup(fd);
	if (ps && atomic_load(&ps->kind) == PS_CONNECTING)
		psock_finish_connect(ps, fd, 0);
	if (!ps || atomic_load(&ps->kind) != PS_CONN)
		return REAL(shutdown)(fd, how);
	return (int)xio_ret(xio_shutdown(ps->conn, how)); /* left: its FIN after the resend */
}

/* newfd now refers to what oldfd does: share the psock. */
static int dup_to(int oldfd, int newfd)
{
	if (newfd < 0)
		return newfd;
	struct psock *ps = fdtab_lookup(oldfd);
	struct psock *prev;
	int saved = errno;
	if (ps && ps != fdtab_lookup(newfd)) {
		psock_ref(ps);
		prev = fdtab_exchange(newfd, ps);
	} else {
		prev = ps ? NULL : fdtab_exchange(newfd, NULL);
	}
	if (prev && prev != ps)
		psock_unref(prev, newfd); /* dup2 closed what newfd was */
	/* On stdin, stdout or stderr the socket meets stdio, whose reads and
	 * writes the shim does not see: the connection leaves shared memory. */
	if (ps && newfd <= 2 && atomic_load(&ps->kind) == PS_CONN)
		xio__shim_leave(ps, XIO_LEAVE_STDIO);
	errno = saved;
	return newfd;
}

EXPORT int dup(int fd)
{
	SHIM_INIT();
	return dup_to(fd, REAL(dup)(fd));
}

/*
 * dup2 onto a socket's last fd while another thread is blocked in a call on
 * it (the JVM closes sockets so: a dead socket dup2()ed over the fd, then
 * close): the kernel keeps the socket until the call returns. The shim
 * moves the socket to a private fd first; the calls go on with it, and the
 * last one closes it, as close() does (psock_close_later).
 */
static void keep_before_replace(int oldfd, int newfd)
{
	struct psock *victim = fdtab_lookup(newfd);
	if (!victim || victim == fdtab_lookup(oldfd))
		return;
	int saved = errno;
	int keep = psock_keep_for_calls(victim, newfd);
	if (keep >= 0) {
		fdtab_exchange(newfd, NULL);
		if (!psock_close_later(victim, keep)) {
			psock_unref(victim, keep);
			REAL(close)(keep);
		}
	}
	errno = saved;
}

EXPORT int dup2(int oldfd, int newfd)
{
	SHIM_INIT();
	if (oldfd == newfd)
		return REAL(dup2)(oldfd, newfd);
	keep_before_replace(oldfd, newfd);
	return dup_to(oldfd, REAL(dup2)(oldfd, newfd));
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	SHIM_INIT();
	if (oldfd != newfd)
		keep_before_replace(oldfd, newfd);
	return dup_to(oldfd, REAL(dup3)(oldfd, newfd, flags));
}

static int do_fcntl(int fd, int cmd, long arg)
{
	SHIM_INIT();
	int r = REAL(fcntl)(fd, cmd, arg);
	struct psock *ps = fdtab_lookup(fd);
	if (r < 0 || !ps)
		return r;
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return dup_to(fd, r);
	if (cmd == F_SETFL)
		atomic_store(&ps->nonblock, !!(arg & O_NONBLOCK));
	return r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long); /* every fcntl argument fits a long */
	va_end(ap);
	return do_fcntl(fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);
	va_end(ap);
	return do_fcntl(fd, cmd, arg);
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	SHIM_INIT();
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	struct psock *ps = fdtab_lookup(fd);
	if (ps && (req == SIOCOUTQ || req == SIOCOUTQNSD) && atomic_load(&ps->kind) == PS_CONN &&
	    ps->conn->accel && !ps->conn->left) {
		/* Written, not read by the peer yet: what the kernel socket
		 * would hold unacknowledged (or unsent) over loopback. */
		pthread_mutex_lock(&ps->wlock);
		size_t n = xio__conn_nwrite(ps->conn);
		pthread_mutex_unlock(&ps->wlock);
		*(int *)arg = n > INT32_MAX ? INT32_MAX : (int)n;
		return 0;
	}
	if (ps && (req == FIONREAD || req == SIOCATMARK) && atomic_load(&ps->kind) == PS_CONN) {
		pthread_mutex_lock(&ps->rlock);
		struct xio_conn *c = ps->conn;
		size_t n = xio__conn_nread(c);
		int left = c->left;
		pthread_mutex_unlock(&ps->rlock);
		/* After a leave the kernel's bytes come after the ring's rest:
		 * the urgent mark is only reached once that is read. */
		if (left && req == SIOCATMARK && n) {
			*(int *)arg = 0;
			return 0;
		}
		if (left) {
			int k = 0;
			int r = REAL(ioctl)(fd, req, &k);
			if (r < 0)
				return r;
			if (req == FIONREAD)
				k = n + (size_t)k > INT32_MAX ? INT32_MAX : (int)(n + (size_t)k);
			*(int *)arg = k;
			return 0;
		}
		if (req == SIOCATMARK) {
			*(int *)arg = 0; /* no urgent data over shared memory */
			return 0;
		}
		*(int *)arg = n > INT32_MAX ? INT32_MAX : (int)n;
		return 0;
	}
	int r = REAL(ioctl)(fd, req, arg);
	if (r == 0 && ps && req == FIONBIO)
		atomic_store(&ps->nonblock, *(int *)arg != 0);
	return r;
}

EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	SHIM_INIT();
	struct psock *ps = fdtab_lookup(fd);
	/* A program learns how its non-blocking connect ended from SO_ERROR:
	 * finish the pairing first, so that its next write goes the right way. */
	if (ps && level == SOL_SOCKET && name == SO_ERROR &&
	    atomic_load(&ps->kind) == PS_CONNECTING)
		psock_finish_connect(ps, fd, 0);
	if (ps && level == SOL_SOCKET && name == SO_RCVLOWAT && val && len && *len >= sizeof(int) &&
	    atomic_load(&ps->kind) == PS_CONN && !ps->conn->left) {
		*(int *)val = ps->conn->rcvlowat; /* the shim applies it (conn.h) */
		*len = sizeof(int);
		return 0;
	}
	int r = REAL(getsockopt)(fd, level, name, val, len);
	/* TCP_NODELAY is on under an accelerated socket for its doorbells
	 * (conn.h); the program sees what it set. */
	if (r == 0 && ps && level == IPPROTO_TCP && name == TCP_NODELAY && len &&
	    *len >= sizeof(int) && atomic_load(&ps->kind) == PS_CONN)
		*(int *)val = ps->conn->app_nodelay;
	return r;
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	SHIM_INIT();
	struct psock *ps = fdtab_lookup(fd);
	if (ps && level == IPPROTO_TCP && name == TCP_NODELAY && val && len >= sizeof(int) &&
	    atomic_load(&ps->kind) == PS_CONN) {
		ps->conn->app_nodelay = *(const int *)val != 0;
		return 0; /* the doorbells keep TCP_NODELAY on */
	}
	if (ps && level == SOL_SOCKET && name == SO_RCVLOWAT && val && len >= sizeof(int) &&
	    atomic_load(&ps->kind) == PS_CONN && !ps->conn->left) {
		/* Kept by the shim: on the kernel socket it would hide the
		 * one-byte doorbells. As the kernel does, 0 means 1. */
		int v = *(const int *)val;
		ps->conn->rcvlowat = v < 1 ? 1 : v;
		return 0;
	}
	if (ps && level == IPPROTO_TCP && name == TCP_NOTSENT_LOWAT && val && len >= sizeof(int) &&
	    atomic_load(&ps->kind) == PS_CONN) {
		int r = REAL(setsockopt)(fd, level, name, val, len);
		if (r == 0) {
			ps->conn->notsent_lowat = xio__notsent_lowat(*(const unsigned *)val);
		}
		return r;
	}
	int r = REAL(setsockopt)(fd, level, name, val, len);
	if (r == 0 && ps && level == SOL_SOCKET &&
	    (name == SO_SNDBUF || name == SO_RCVBUF || name == SO_SNDBUFFORCE ||
	     name == SO_RCVBUFFORCE)) {
		/* What the kernel made of it (doubled, clamped) bounds what
		 * the connection holds in flight, as in the kernel. */
		int saved = errno, v = 0;
		socklen_t l = sizeof(v);
		int snd = name == SO_SNDBUF || name == SO_SNDBUFFORCE;
		if (REAL(getsockopt)(fd, SOL_SOCKET, snd ? SO_SNDBUF : SO_RCVBUF, &v, &l) == 0 &&
		    v > 0) {
			pthread_mutex_lock(&ps->wlock);
			*(snd ? &ps->snd_set : &ps->rcv_set) = v;
			if (atomic_load(&ps->kind) == PS_CONN)
				psock_apply_bufs(ps);
			pthread_mutex_unlock(&ps->wlock);
		}
		errno = saved;
	}
	if (r == 0 && ps && level == IPPROTO_TCP && name == TCP_DEFER_ACCEPT && val &&
	    len >= sizeof(int) && *(const int *)val > 0 && atomic_load(&ps->kind) == PS_LISTENER) {
		/* Set after listen (defers_accept above): no new connection of
		 * this listener pairs from now on. */
		int saved = errno;
		psock_unlisten(ps);
		psock_to_kernel(ps);
		errno = saved;
	}
	return r;
}
