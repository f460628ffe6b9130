/*
 * closer.c - closing the sockets clients hand over, without ever waiting
 * on one.
 *
 * The monitor never keeps a client's socket, but closing one can block: a
 * socket with SO_LINGER {1, N} and data its peer does not read (or a peer
 * that never acknowledges our FIN) makes the last close wait up to N
 * seconds, and a client can hand such a socket over and drop its own copy,
 * so that ours is the last. On the event loop that stalls every client; on
 * a closer thread that closes them one by one, one socket lingering for an
 * hour stopped every close after it, and the monitor's fds ran out (issue
 * 15, item 7).
 *
 * The kernel waits in such a close only for a task that is not exiting
 * (inet_release: no linger timeout under PF_EXITING), and the last
 * reference to a file can be dropped by a thread's exit, from an fd table
 * of its own. So no thread of the monitor ever drops the last reference to
 * a socket that may linger:
 *
 *  - the event loop closes at once every socket that cannot linger. The
 *    others it sends (SCM_RIGHTS, never waiting) to the closer thread in a
 *    batch ('f'), closes its own copies (the message holds the files, or
 *    the closer does once it has read it: not the last either way), and
 *    then says so ('d');
 *  - the closer thread has an fd table of its own (unshare(CLONE_FILES) at
 *    start, keeping nothing but its socket). It holds a batch until its
 *    'd', then starts a thread that copies that table (unshare again),
 *    closes its own copies (not the last) and lets the thread exit: that
 *    exit drops the last references, without waiting.
 *
 * A batch costs one short-lived thread copying a table of a few fds. The
 * loop sends a batch only once the one before it has its 'd', so the
 * closer's table never holds more than one batch, sized to fit under the
 * fd limit (past it the kernel would drop fds in the closer's hands, and
 * the last of those could wait there). Fds the socket cannot take now wait
 * in a list for the next turn of the loop.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "monitor.h"
#include "xio/sys.h"

#define PER_MSG 128 /* fds per batch, under the kernel's SCM_MAX_FD (253) */

static int tx = -1;  /* the event loop's end */
static int owe_done; /* a batch was sent, its 'd' not yet */
static int *pending;
static size_t npending, cap;

/* Close every fd of this thread's own table but keep. */
static void close_all_but(int keep)
{
	if (keep > 0 && close_range(0, (unsigned)keep - 1, 0) < 0) {
		for (int fd = 0; fd < keep; fd++)
			close(fd);
	}
	if (close_range((unsigned)keep + 1, ~0u, 0) < 0) {
		struct rlimit rl;
		int top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1u << 20)
				  ? (int)rl.rlim_cur
				  : 1 << 20;
		for (int fd = keep + 1; fd < top; fd++)
			close(fd);
	}
}

struct dropper {
	sem_t copied, go;
	int ok;
};

/* Holds a copy of the closer's table until the closer has dropped its
 * own, then exits: the last references go with it, unwaited. */
static void *dropper_main(void *arg)
{
	struct dropper *d = arg;
	d->ok = unshare(CLONE_FILES) == 0;
	sem_post(&d->copied);
	if (d->ok)
		sem_wait(&d->go);
	return NULL;
}

/* Let go of fds[0..n) (in the closer's table) without waiting on any.
 * Returns 0, or -errno if no thread could take them now. */
static int drop_batch(const int *fds, size_t n)
{
	struct dropper d;
	pthread_t t;
	sem_init(&d.copied, 0, 0);
	sem_init(&d.go, 0, 0);
	d.ok = 0;
	int r = pthread_create(&t, NULL, dropper_main, &d);
	if (r == 0) {
		while (sem_wait(&d.copied) < 0 && errno == EINTR)
			;
		if (d.ok)
			for (size_t i = 0; i < n; i++)
				close(fds[i]); /* the dropper holds them: not the last */
		sem_post(&d.go);
		/* Returns once the thread no longer touches d (before its
		 * files are let go of, which never waits). */
		pthread_join(t, NULL);
		r = d.ok ? 0 : -ENOMEM;
	} else {
		r = -r;
	}
	sem_destroy(&d.copied);
	sem_destroy(&d.go);
	return r;
}

struct closer_start {
	int rx;
	sem_t ready;
	int ok;
};

static void *closer_main(void *arg)
{
	struct closer_start *st = arg;
	int rx = st->rx;
	int held[2 * PER_MSG];
	size_t nheld = 0;
	/* A table of our own, holding only our socket: the loop may close its
	 * copies of anything from now on. */
	st->ok = unshare(CLONE_FILES) == 0;
	if (st->ok)
		close_all_but(rx);
	sem_post(&st->ready); /* st is the starter's: not touched again */
	if (!st->ok)
		return NULL;
	for (;;) {
		union {
			char b[CMSG_SPACE(PER_MSG * sizeof(int))];
			struct cmsghdr align;
		} u;
		char what = 0;
		struct iovec iov = { .iov_base = &what, .iov_len = 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				    .msg_controllen = sizeof(u.b) };
		ssize_t n = recvmsg(rx, &m, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the loop closed its end: shutting down */
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k && nheld < sizeof(held) / sizeof(held[0]); i++)
				memcpy(&held[nheld++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
		if (what != 'd' || nheld == 0)
			continue;
		/* The loop has closed its copies of all we hold. Out of
		 * threads or memory for a moment: try again, rather than
		 * close one here and wait. */
		while (drop_batch(held, nheld) < 0)
			usleep(100000);
		nheld = 0;
	}
	close(rx);
	return NULL;
}

int mon_closer_start(void)
{
	int sv[2];
	pthread_t t;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	struct closer_start st = { .rx = sv[1] };
	sem_init(&st.ready, 0, 0);
	int r = pthread_create(&t, NULL, closer_main, &st);
	if (r == 0) {
		pthread_detach(t);
		while (sem_wait(&st.ready) < 0 && errno == EINTR)
			;
		r = st.ok ? 0 : EPERM;
	}
	sem_destroy(&st.ready);
	close(sv[1]); /* the closer has its own copy */
	if (r) {
		close(sv[0]);
		return -r;
	}
	tx = sv[0];
	return 0;
}

/* Send the closer what ('f' with fds[0..n), or 'd' with none), never
 * waiting. Returns 0, or -errno (-EAGAIN: its socket is full for now). */
static int send_closer(char what, const int *fds, size_t n)
{
	union {
		char b[CMSG_SPACE(PER_MSG * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = &what, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (n) {
		memset(u.b, 0, sizeof(u.b));
		m.msg_control = u.b;
		m.msg_controllen = CMSG_SPACE(n * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	}
	for (;;) {
		ssize_t w = sendmsg(tx, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w == 1)
			return 0;
		if (w < 0 && errno == EINTR)
			continue;
		return w < 0 ? -errno : -EIO;
	}
}

/* The most fds one batch may carry: the closer receives it into its own
 * table, under the same fd limit as ours (which can be lowered while we
 * run). */
static size_t batch_max(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= 4 * PER_MSG)
		return PER_MSG;
	return rl.rlim_cur >= 8 ? (size_t)rl.rlim_cur / 4 : 1;
}

void mon_closer_flush(void)
{
	static uint64_t failed;
	size_t done = 0, max = npending || owe_done ? batch_max() : 0;
	int r = 0;
	while (r == 0 && (owe_done || done < npending)) {
		if (owe_done) {
			if ((r = send_closer('d', NULL, 0)) == 0)
				owe_done = 0;
			continue;
		}
		size_t n = npending - done < max ? npending - done : max;
		if ((r = send_closer('f', pending + done, n)) < 0)
			break;
		/* The message, or the closer once it read it, holds them:
		 * our closes are not the last. Then it may let them go. */
		for (size_t i = 0; i < n; i++)
			xio_sys_close(pending[done + i]);
		done += n;
		owe_done = 1;
	}
	/* Full: the next turn. Anything else (the closer is gone) keeps them
	 * too, and is said. */
	if (r < 0 && r != -EAGAIN && failed++ % 1000 == 0)
		mon_log(MON_WARN, "cannot pass %zu socket(s) to the closer thread: %s",
			npending - done, strerror(-r));
	if (done == 0)
		return;
	memmove(pending, pending + done, (npending - done) * sizeof(int));
	npending -= done;
}

int mon_closer_backlog(void)
{
	return npending > 0 || owe_done;
}

/* Only a close of an inet socket with SO_LINGER {1, N > 0} can wait;
 * every other fd is closed here and now, exactly when it was closed before
 * (a listener's port must not outlive its owner's close by a thread's
 * delay). A holder of the same socket can turn lingering on after this look
 * only while it still holds it (then our close is not the last and does
 * not wait), unless it also drops its copy within the few instructions
 * before our close: a residual window. */
static int may_linger(int fd)
{
	struct linger lg;
	int domain;
	socklen_t l = sizeof(lg), dl = sizeof(domain);
	return xio_sys_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) == 0 &&
	       (domain == AF_INET || domain == AF_INET6) &&
	       xio_sys_getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l) == 0 && lg.l_onoff &&
	       lg.l_linger > 0;
}

void mon_close_handed(int fd)
{
	if (fd < 0)
		return;
	if (tx < 0 || !may_linger(fd)) {
		xio_sys_close(fd);
		return;
	}
	if (npending == cap) {
		size_t ncap = cap ? cap * 2 : 64;
		int *p = realloc(pending, ncap * sizeof(int));
		if (!p) {
			xio_sys_close(fd); /* out of memory: better late than leaked */
			return;
		}
		pending = p;
		cap = ncap;
	}
	pending[npending++] = fd;
}

void mon_closer_stop(void)
{
	/* Shutting down: the closer sees its socket close and ends; what is
	 * still queued is let go of by the exit, which never waits. */
	if (tx >= 0)
		close(tx);
	tx = -1;
	free(pending);
	pending = NULL;
	npending = cap = 0;
}
