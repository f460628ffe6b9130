/*
 * w_poll.c - poll, ppoll, select and pselect over sets that mix kernel
 * fds and accelerated sockets.
 *
 * Readiness of an accelerated socket comes from its channels, not from the
 * kernel socket (which is always writable and only carries doorbells). So:
 * look at the accelerated ones first; if one is ready, add whatever the
 * kernel says about the others without waiting; if none is, arm their
 * doorbells and let the kernel wait on everything at once, asking it only
 * for POLLIN on the accelerated sockets. A set with no accelerated socket
 * goes straight to libc, so does a set with no fds (poll as a sleep).
 *
 * poll's interface costs O(fds) in the kernel too; what the shim adds per
 * fd is its look at the channels, which touches each connection's shared
 * memory (cache and TLB misses, thousands of them with thousands of fds).
 * So a socket no poll found ready for XIO_EPOLL_PARK_US is parked as epoll
 * parks its quiet members (epoll_set.h): armed with a token of its own,
 * and left to the kernel's ppoll, which every poll makes anyway, until its
 * doorbell (or FIN, or RST) shows there, or a thread of this process takes
 * its arm back (xio__shim_wake_others clears the mark).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shim.h"
#include "xio/sys.h"

#define EXPORT __attribute__((visibility("default")))
#define STACK_FDS 64

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define PARK_EV (POLLIN | POLLRDNORM | POLLRDHUP | POLLOUT | POLLWRNORM)

/* The readiness of ps for want (with token: armed if not ready, for a
 * sleep); a parked socket is not looked at. now: this call's clock. */
static short look(struct psock *ps, short want, uint64_t token, int64_t now,
		  struct park_tokens *toks)
{
	/* Only a connection on shared memory parks: its doorbell is what
	 * the kernel's ppoll will report. */
	int parkable = ps->conn->accel && !ps->conn->left;
	int parked = atomic_load_explicit(&ps->poll_parked, memory_order_acquire);
	if (parkable && parked && !(want & PARK_EV & ~parked))
		return 0;
	int parking = parkable && now - atomic_load_explicit(&ps->poll_ready_ns,
							     memory_order_relaxed) >=
					  xio__epoll_park_ns();
	short rev = xio__shim_conn_poll(ps, want, parking ? xio__park_token(toks) : token) & want;
	if (rev)
		atomic_store_explicit(&ps->poll_ready_ns, now, memory_order_relaxed);
	else if (parking && ps->conn->accel && !ps->conn->left) /* not followed its peer */
		atomic_store_explicit(&ps->poll_parked, (want & PARK_EV) | parked,
				      memory_order_release);
	return rev;
}

static struct psock *pollable(int fd)
{
	struct psock *ps = fdtab_lookup(fd);
	if (!ps)
		return NULL;
	int k = atomic_load(&ps->kind);
	if (k == PS_CONNECTING)
		k = psock_finish_connect(ps, fd, 0);
	return k == PS_CONN ? ps : NULL;
}

/*
 * The shared loop. tmo_ns < 0: forever. sigmask as for ppoll (may be NULL).
 * Returns the count of fds with revents, or -errno.
 */
static int xpoll(struct pollfd *fds, nfds_t n, int64_t tmo_ns, const sigset_t *sigmask)
{
	struct psock *stack_ps[STACK_FDS];
	struct pollfd stack_k[STACK_FDS + 1];
	struct psock **ps = n <= STACK_FDS ? stack_ps : malloc(n * sizeof(*ps));
	/* One more for this thread's eventfd: another thread that takes what
	 * our sleep was armed for tells us through it (wake.c). */
	struct pollfd *k = n <= STACK_FDS ? stack_k : malloc((n + 1) * sizeof(*k));
	int64_t deadline = tmo_ns >= 0 ? now_ns() + tmo_ns : -1;
	struct poll_wait listed = { .efd = -1 };
	int efd = -1;
	int ret = 0;

	if (!ps || !k) {
		ret = -ENOMEM;
		goto out;
	}
	for (nfds_t i = 0; i < n; i++) {
		ps[i] = fds[i].fd >= 0 ? pollable(fds[i].fd) : NULL;
		if (ps[i])
			psock_call_enter(ps[i]); /* kept whole if closed meanwhile */
	}

	/* A short look at the accelerated sockets before anything else: the
	 * peer usually answers within microseconds (see epoll.c). */
	struct park_tokens toks = { 0, 0 };
	int64_t now = now_ns();
	int64_t spin_end = tmo_ns != 0 ? now + (int64_t)xio__poll_spin_ns() : 0;
	for (int found = 0; !found && now < spin_end; xio__poll_relax(), now = now_ns())
		for (nfds_t i = 0; i < n && !found; i++)
			found = ps[i] && look(ps[i], fds[i].events | POLLERR | POLLHUP, 0, now, &toks);

	for (int arm = 0;; arm = 1) {
		int ready = 0;
		/* Listed before the first arming, so that a thread that takes a
		 * word back after our look tells us (wake.c). */
		if (arm && listed.efd < 0)
			efd = xio__poll_wait_begin(&listed, ps, n);
		/* Armed only to sleep, all with one token (seg.h). */
		uint64_t token = arm ? xio__wait_token() : 0;
		now = now_ns();
		for (nfds_t i = 0; i < n; i++) {
			fds[i].revents = 0;
			if (!ps[i])
				continue;
			fds[i].revents = look(ps[i], fds[i].events | POLLERR | POLLHUP, token, now, &toks);
			ready += fds[i].revents != 0;
		}
		memcpy(k, fds, n * sizeof(*k));
		for (nfds_t i = 0; i < n; i++)
			if (ps[i]) /* the doorbell, or the kernel's FIN/RST; after
				    * a leave, what the program asked of the socket */
				k[i].events = ps[i]->conn->left
						      ? xio__conn_left_events(ps[i]->conn, fds[i].events)
						      : POLLIN;
		nfds_t nk = n;
		if (efd >= 0)
			k[nk++] = (struct pollfd){ .fd = efd, .events = POLLIN };
		struct timespec ts, *tp = NULL;
		if (ready || !arm) {
			ts.tv_sec = 0;
			ts.tv_nsec = 0;
			tp = &ts;
		} else {
			/* Asleep until the deadline, or the next sweep of quiet
			 * connections' memory (reclaim.c), whichever is first. */
			xio__reclaim_tick();
			int64_t t = now_ns();
			int64_t left = xio__reclaim_cap_ns(
				deadline >= 0 ? (deadline > t ? deadline - t : 0) : -1);
			if (left >= 0) {
				ts.tv_sec = left / 1000000000;
				ts.tv_nsec = left % 1000000000;
				tp = &ts;
			}
		}
		int sleeps = arm && !ready;
		if (sleeps)
			xio__sleep_begin();
		int r = REAL(ppoll)(k, nk, tp, sigmask);
		if (sleeps)
			xio__sleep_end();
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		if (nk > n && k[n].revents)
			xio__wake_read(efd); /* told to look again: below */
		now = now_ns();
		for (nfds_t i = 0; i < n; i++) {
			if (ps[i]) {
				if (k[i].revents && !fds[i].revents) {
					/* The doorbell, or FIN or RST: parked no more. */
					atomic_store_explicit(&ps[i]->poll_parked, 0,
							      memory_order_release);
					xio__conn_drain(ps[i]->conn);
				}
				/* Look at every accelerated socket again that is not
				 * parked, not only those that rang: a peer rings once
				 * per sleep token, however many of our sockets it
				 * wrote to (a parked one has a token of its own). */
				if (!fds[i].revents) {
					fds[i].revents = look(ps[i], fds[i].events | POLLERR | POLLHUP,
							      0, now, &toks);
					ready += fds[i].revents != 0;
				}
			} else {
				fds[i].revents = k[i].revents;
				ready += k[i].revents != 0;
			}
		}
		if (ready) {
			ret = ready;
			goto out;
		}
		if (arm && deadline >= 0 && now_ns() >= deadline) {
			ret = 0;
			goto out;
		}
	}
out:
	xio__poll_wait_end(&listed);
	for (nfds_t i = 0; ps && k && i < n; i++) /* ps[] filled only if both came */
		if (ps[i])
			psock_call_exit(ps[i]);
	/* A connection that followed its peer in this call is on its kernel
	 * socket: settle it here, where no epoll set is locked, so that an
	 * epoll set that follows it too waits for what its program asked. */
	for (nfds_t i = 0; ps && k && i < n; i++)
		if (ps[i] && ps[i]->conn->left)
			xio__shim_settle(ps[i]);
	if (ps != stack_ps)
		free(ps);
	if (k != stack_k)
		free(k);
	return ret;
}

static int any_accelerated(const struct pollfd *fds, nfds_t n)
{
	if (!xio_fdtab)
		return 0;
	for (nfds_t i = 0; i < n; i++) {
		struct psock *ps = fdtab_lookup(fds[i].fd);
		if (ps) {
			int kd = atomic_load(&ps->kind);
			if (kd == PS_CONN || kd == PS_CONNECTING)
				return 1;
		}
	}
	return 0;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	SHIM_INIT();
	if (!any_accelerated(fds, n))
		return REAL(poll)(fds, n, timeout);
	return (int)xio_ret(xpoll(fds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL));
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		abort();
	return poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *mask)
{
	SHIM_INIT();
	if (!any_accelerated(fds, n))
		return REAL(ppoll)(fds, n, tmo, mask);
	int64_t t = tmo ? (int64_t)tmo->tv_sec * 1000000000 + tmo->tv_nsec : -1;
	return (int)xio_ret(xpoll(fds, n, t, mask));
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *tmo,
		       const sigset_t *mask, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		abort();
	return ppoll(fds, n, tmo, mask);
}

/* select through the poll loop when an accelerated socket is in the sets. */
static int xselect(int nfds, fd_set *r, fd_set *w, fd_set *e, int64_t tmo_ns,
		   const sigset_t *mask, int *handled)
{
	struct pollfd stack[STACK_FDS], *p = stack;
	int n = 0, accel = 0;
	*handled = 0;
	if (!xio_fdtab || nfds <= 0)
		return 0;
	for (int fd = 0; fd < nfds; fd++) {
		if ((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (e && FD_ISSET(fd, e))) {
			struct psock *ps = fdtab_lookup(fd);
			if (ps && (atomic_load(&ps->kind) == PS_CONN ||
				   atomic_load(&ps->kind) == PS_CONNECTING))
				accel = 1;
			n++;
		}
	}
	if (!accel)
		return 0;
	*handled = 1;
	if (n > STACK_FDS && !(p = malloc((size_t)n * sizeof(*p))))
		return -ENOMEM;
	n = 0;
	for (int fd = 0; fd < nfds; fd++) {
		short ev = (short)((r && FD_ISSET(fd, r) ? POLLIN : 0) |
				   (w && FD_ISSET(fd, w) ? POLLOUT : 0) |
				   (e && FD_ISSET(fd, e) ? POLLPRI : 0));
		if (ev)
			p[n++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	int ret = xpoll(p, (nfds_t)n, tmo_ns, mask);
	if (ret >= 0) {
		ret = 0;
		for (int i = 0; i < n; i++) {
			int fd = p[i].fd;
			short rv = p[i].revents;
			if (rv & POLLNVAL) {
				ret = -EBADF;
				break;
			}
			/* select's rules: hang-up and error make a socket readable
			 * and writable. */
			if (r && FD_ISSET(fd, r) && !(rv & (POLLIN | POLLHUP | POLLERR)))
				FD_CLR(fd, r);
			if (w && FD_ISSET(fd, w) && !(rv & (POLLOUT | POLLERR)))
				FD_CLR(fd, w);
			if (e && FD_ISSET(fd, e) && !(rv & POLLPRI))
				FD_CLR(fd, e);
			ret += (r && FD_ISSET(fd, r)) + (w && FD_ISSET(fd, w)) + (e && FD_ISSET(fd, e));
		}
	}
	if (p != stack)
		free(p);
	return ret;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	SHIM_INIT();
	int handled;
	int64_t t = tv ? (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000 : -1;
	int64_t start = tv ? now_ns() : 0;
	int ret = xselect(nfds, r, w, e, t, NULL, &handled);
	if (!handled)
		return REAL(select)(nfds, r, w, e, tv);
	if (tv) { /* Linux reports the time left */
		int64_t left = t - (now_ns() - start);
		if (left < 0)
			left = 0;
		tv->tv_sec = left / 1000000000;
		tv->tv_usec = (left % 1000000000) / 1000;
	}
	return (int)xio_ret(ret);
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		   const sigset_t *mask)
{
	SHIM_INIT();
	int handled;
	int64_t t = ts ? (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec : -1;
	int ret = xselect(nfds, r, w, e, t, mask, &handled);
	if (!handled)
		return REAL(pselect)(nfds, r, w, e, ts, mask);
	return (int)xio_ret(ret);
}
