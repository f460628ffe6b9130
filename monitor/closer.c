/*
 * closer.c - closing the sockets clients hand over, off the event loop.
 *
 * The monitor never keeps a client's socket, but closing one can block: a
 * socket with SO_LINGER {1, N} and data its peer does not read makes the
 * last close wait up to N seconds, and a client can hand such a socket
 * over and drop its own copy, so that ours is the last. On the event loop
 * that stalls every other client. So a handed-over socket that lingers is
 * closed by one thread of its own (others are closed at once, below): the loop passes the fd numbers through a
 * non-blocking pipe (at most PIPE_BUF bytes per write, so a write passes
 * all of its fds or none) and never waits; fds the pipe cannot take now
 * wait in a list for the next turn of the loop. A stuck close delays only
 * the closes queued behind it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "monitor.h"
#include "xio/sys.h"

#define PER_WRITE (PIPE_BUF / sizeof(int))

static int pipefd[2] = { -1, -1 };
static int *pending;
static size_t npending, cap;

static void *closer_main(void *arg)
{
	(void)arg;
	int fds[PER_WRITE];
	for (;;) {
		ssize_t n = read(pipefd[0], fds, sizeof(fds));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		for (size_t i = 0; i < (size_t)n / sizeof(int); i++)
			close(fds[i]);
	}
}

int mon_closer_start(void)
{
	pthread_t t;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
	int r = pthread_create(&t, NULL, closer_main, NULL);
	if (r) {
		close(pipefd[0]);
		close(pipefd[1]);
		pipefd[0] = pipefd[1] = -1;
		return -r;
	}
	pthread_detach(t);
	return 0;
}

void mon_closer_flush(void)
{
	size_t done = 0;
	while (done < npending) {
		size_t n = npending - done < PER_WRITE ? npending - done : PER_WRITE;
		ssize_t w = write(pipefd[1], pending + done, n * sizeof(int));
		if (w < 0 && errno == EINTR)
			continue;
		if (w != (ssize_t)(n * sizeof(int)))
			break; /* full (the thread is stuck in a close): next turn */
		done += n;
	}
	if (done == 0)
		return;
	memmove(pending, pending + done, (npending - done) * sizeof(int));
	npending -= done;
}

/* Only a close with SO_LINGER {1, N > 0} can wait; every other socket is
 * closed here and now, exactly when it was closed before (a listener's
 * port must not outlive its owner's close by the closer thread's delay).
 * A holder of the same socket can turn lingering on after this look only
 * while it still holds it (then our close is not the last and does not
 * wait), unless it also drops its copy within the few instructions before
 * our close: a residual window. */
static int may_linger(int fd)
{
	struct linger lg;
	socklen_t l = sizeof(lg);
	return xio_sys_getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l) == 0 && lg.l_onoff &&
	       lg.l_linger > 0;
}

void mon_close_handed(int fd)
{
	if (fd < 0)
		return;
	if (pipefd[1] < 0 || !may_linger(fd)) {
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
	/* Shutting down: what is still queued is closed by the exit. */
	free(pending);
	pending = NULL;
	npending = cap = 0;
}
