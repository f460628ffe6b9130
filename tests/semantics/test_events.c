/*
 * test_events.c - every event bit the kernel reports for a TCP socket in
 * poll, ppoll, select, pselect and epoll (POLLRDNORM and POLLWRNORM with
 * POLLIN and POLLOUT, never POLLRDBAND without urgent data, select's three
 * sets), and the socket options that change when a listener hands a
 * connection to accept (TCP_DEFER_ACCEPT).
 */
#include "sem.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>

static short poll1(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n;
	while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	cr_assert_geq(n, 0, "poll: %s", strerror(errno));
	return n ? p.revents : 0;
}

static short ppoll1(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	struct timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000L };
	sigset_t none;
	sigemptyset(&none);
	int n = ppoll(&p, 1, &ts, &none);
	cr_assert_geq(n, 0, "ppoll: %s", strerror(errno));
	return n ? p.revents : 0;
}

/* poll reports POLLWRNORM on a socket with room and POLLRDNORM once data
 * is there, when asked for those alone (0x100 and 0x40), and POLLRDBAND
 * never. */
ST_TEST(events, poll_rdnorm_wrnorm)
{
	int c, s;
	st_pair(&c, &s);
	cr_assert_eq(poll1(s, POLLWRNORM, 1000), POLLWRNORM);
	cr_assert_eq(poll1(s, POLLRDNORM, 0), 0, "readable with no data");
	cr_assert_eq(write(c, "abc", 3), 3);
	cr_assert_eq(poll1(s, POLLRDNORM, ST_WAIT_MS), POLLRDNORM);
	cr_assert_eq(poll1(s, POLLRDBAND, 0), 0, "POLLRDBAND without urgent data");
	cr_assert_eq(poll1(s, POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM, 0),
		     POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM);
	close(c);
	close(s);
}

/* ppoll asked for POLLRDNORM alone sleeps until the data comes. */
ST_TEST(events, ppoll_rdnorm_waits)
{
	int c, s;
	st_pair(&c, &s);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		usleep(100000);
		_exit(write(c, "x", 1) == 1 ? 0 : 1);
	}
	cr_assert_eq(ppoll1(s, POLLRDNORM, ST_WAIT_MS), POLLRDNORM);
	st_assert_child_ok(pid);
	close(c);
	close(s);
}

/* Ending the stream makes the socket POLLRDNORM too (a read returns 0). */
ST_TEST(events, poll_rdnorm_at_end_of_stream)
{
	int c, s;
	st_pair(&c, &s);
	shutdown(c, SHUT_WR);
	short r = poll1(s, POLLRDNORM | POLLRDHUP, ST_WAIT_MS);
	cr_assert_eq(r, POLLRDNORM | POLLRDHUP, "revents %#x", r);
	close(c);
	close(s);
}

/* epoll reports EPOLLRDNORM and EPOLLWRNORM as asked, and EPOLLRDBAND
 * never. */
ST_TEST(events, epoll_rdnorm_wrnorm)
{
	int c, s, ep = epoll_create1(0);
	st_pair(&c, &s);
	struct epoll_event e = { .events = EPOLLRDNORM | EPOLLWRNORM | EPOLLRDBAND, .data.u64 = 3 };
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s, &e), 0);
	struct epoll_event got;
	cr_assert_eq(epoll_wait(ep, &got, 1, 1000), 1);
	cr_assert_eq(got.events, EPOLLWRNORM, "events %#x", got.events);
	cr_assert_eq(write(c, "x", 1), 1);
	uint64_t t0 = st_now_us();
	uint32_t ev = 0;
	while (!(ev & EPOLLRDNORM) && st_now_us() - t0 < 5000000) {
		cr_assert_eq(epoll_wait(ep, &got, 1, 1000), 1);
		ev = got.events;
	}
	cr_assert_eq(ev, EPOLLRDNORM | EPOLLWRNORM, "events %#x", ev);
	close(c);
	close(s);
	close(ep);
}

/* A thread waiting in epoll for EPOLLRDNORM alone is woken by the data. */
ST_TEST(events, epoll_rdnorm_wakes)
{
	int c, s, ep = epoll_create1(0);
	st_pair(&c, &s);
	struct epoll_event e = { .events = EPOLLRDNORM, .data.u64 = 3 };
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s, &e), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		usleep(100000);
		_exit(write(c, "x", 1) == 1 ? 0 : 1);
	}
	struct epoll_event got;
	int n;
	while ((n = epoll_wait(ep, &got, 1, ST_WAIT_MS)) < 0 && errno == EINTR)
		;
	cr_assert_eq(n, 1, "not woken by the data");
	cr_assert_eq(got.events, EPOLLRDNORM);
	st_assert_child_ok(pid);
	close(c);
	close(s);
	close(ep);
}

/* select: a socket with room is in the write set, with data in the read
 * set, and in the except set only with urgent data (never here); pselect
 * the same. */
ST_TEST(events, select_three_sets)
{
	int c, s;
	st_pair(&c, &s);
	fd_set r, w, x;
	struct timeval tv = { 0, 0 };
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_ZERO(&x);
	FD_SET(s, &r);
	FD_SET(s, &w);
	FD_SET(s, &x);
	cr_assert_eq(select(s + 1, &r, &w, &x, &tv), 1);
	cr_assert(!FD_ISSET(s, &r) && FD_ISSET(s, &w) && !FD_ISSET(s, &x));
	cr_assert_eq(write(c, "y", 1), 1);
	FD_ZERO(&r);
	FD_ZERO(&x);
	FD_SET(s, &r);
	FD_SET(s, &x);
	struct timespec ts = { .tv_sec = ST_WAIT_MS / 1000 };
	cr_assert_eq(pselect(s + 1, &r, NULL, &x, &ts, NULL), 1);
	cr_assert(FD_ISSET(s, &r) && !FD_ISSET(s, &x));
	close(c);
	close(s);
}

/* A non-blocking connect is done when poll reports POLLWRNORM (the proxy
 * that waited for that answered 503 after its connect timeout), and
 * getsockopt(SO_ERROR) then says 0. */
ST_TEST(events, nonblocking_connect_wrnorm)
{
	uint16_t port;
	int l = st_listen(&port);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int r = connect(c, (struct sockaddr *)&a, sizeof(a));
	cr_assert(r == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
	int s = st_accept(l);
	cr_assert_eq(poll1(c, POLLWRNORM, 3500), POLLWRNORM);
	cr_assert_eq(ppoll1(c, POLLWRNORM, 0), POLLWRNORM);
	int err = -1;
	socklen_t len = sizeof(err);
	cr_assert_eq(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	cr_assert_eq(err, 0);
	cr_assert_eq(write(c, "z", 1), 1);
	cr_assert_eq(poll1(s, POLLRDNORM, ST_WAIT_MS), POLLRDNORM);
	close(c);
	close(s);
	close(l);
}

/* --- TCP_DEFER_ACCEPT ---------------------------------------------------- */

static int defer_listener(uint16_t *port, int secs, int before_listen)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	if (before_listen)
		cr_assert_eq(setsockopt(l, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)), 0);
	cr_assert_eq(listen(l, 16), 0);
	if (!before_listen)
		cr_assert_eq(setsockopt(l, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs)), 0);
	socklen_t len = sizeof(a);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return l;
}

/* A listener with TCP_DEFER_ACCEPT (5 s) hands over a connection as soon
 * as its first data has come, not after the defer time (Apache's
 * AcceptFilter): the data is there to read at once. */
static void deferred_accept_with_data(int before_listen)
{
	uint16_t port;
	int l = defer_listener(&port, 5, before_listen);
	int c = st_connect(port);
	cr_assert(c >= 0);
	cr_assert_eq(poll1(l, POLLIN, 300), 0, "accept ready before any data");
	uint64_t t0 = st_now_us();
	cr_assert_eq(write(c, "GET /", 5), 5);
	cr_assert_eq(poll1(l, POLLIN, 4000), POLLIN, "no connection to accept 4 s after its data");
	cr_assert_lt(st_now_us() - t0, 2000000u, "accept ready only after %lu us",
		     (unsigned long)(st_now_us() - t0));
	int s = accept(l, NULL, NULL);
	cr_assert_geq(s, 0);
	char b[5];
	cr_assert_eq(poll1(s, POLLIN, 0), POLLIN, "accepted without its data");
	cr_assert_eq(st_read_full(s, b, 5), 5);
	cr_assert_eq(memcmp(b, "GET /", 5), 0);
	cr_assert_eq(write(s, "ok", 2), 2);
	cr_assert_eq(st_read_full(c, b, 2), 2);
	close(c);
	close(s);
	close(l);
}

ST_TEST(events, defer_accept_data_before_listen)
{
	deferred_accept_with_data(1);
}

ST_TEST(events, defer_accept_data_after_listen)
{
	deferred_accept_with_data(0);
}

/* With a 1 s defer, a client that sends nothing is not handed over at
 * once; one that sends after the defer time is handed over with its data
 * (the kernel accepts it after the defer time in any case). */
ST_TEST(events, defer_accept_data_after_timeout)
{
	uint16_t port;
	int l = defer_listener(&port, 1, 1);
	int c = st_connect(port);
	cr_assert(c >= 0);
	cr_assert_eq(poll1(l, POLLIN, 500), 0, "accept ready before any data or the defer time");
	st_sleep_ms(1500);
	cr_assert_eq(write(c, "late", 4), 4);
	cr_assert_eq(poll1(l, POLLIN, 4000), POLLIN, "no connection to accept");
	int s = accept(l, NULL, NULL);
	cr_assert_geq(s, 0);
	char b[4];
	cr_assert_eq(st_read_full(s, b, 4), 4);
	cr_assert_eq(memcmp(b, "late", 4), 0);
	close(c);
	close(s);
	close(l);
}

/* --- options that change when a socket is ready --------------------------- */

/* SO_RCVLOWAT 10: poll does not call the socket readable with 5 bytes,
 * and does with 10; a non-blocking read still returns the 5 that are
 * there. */
ST_TEST(events, rcvlowat_poll)
{
	int c, s, lowat = 10;
	st_pair(&c, &s);
	cr_assert_eq(setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)), 0);
	cr_assert_eq(write(c, "12345", 5), 5);
	cr_assert_eq(poll1(s, POLLIN, 200), 0, "readable below SO_RCVLOWAT");
	cr_assert_eq(write(c, "67890", 5), 5);
	cr_assert_eq(poll1(s, POLLIN, ST_WAIT_MS), POLLIN, "not readable at SO_RCVLOWAT");
	char b[16];
	cr_assert_eq(st_read_full(s, b, 10), 10);
	cr_assert_eq(memcmp(b, "1234567890", 10), 0);
	cr_assert_eq(write(c, "abc", 3), 3);
	cr_assert_eq(poll1(s, POLLIN, 100), 0, "readable below SO_RCVLOWAT");
	st_set_nonblock(s, 1);
	cr_assert_eq(read(s, b, sizeof(b)), 3, "a non-blocking read below SO_RCVLOWAT");
	close(c);
	close(s);
}

/* SO_RCVLOWAT in epoll: not ready with fewer bytes, ready with enough. */
ST_TEST(events, rcvlowat_epoll)
{
	int c, s, lowat = 8, ep = epoll_create1(0);
	st_pair(&c, &s);
	cr_assert_eq(setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)), 0);
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 1 }, got;
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s, &e), 0);
	cr_assert_eq(write(c, "abc", 3), 3);
	cr_assert_eq(epoll_wait(ep, &got, 1, 200), 0, "ready below SO_RCVLOWAT");
	cr_assert_eq(write(c, "defgh", 5), 5);
	cr_assert_eq(epoll_wait(ep, &got, 1, ST_WAIT_MS), 1, "not ready at SO_RCVLOWAT");
	char b[8];
	cr_assert_eq(st_read_full(s, b, 8), 8);
	close(c);
	close(s);
	close(ep);
}

/* SO_SNDLOWAT cannot be changed on Linux (ENOPROTOOPT), and reads back as
 * 1. */
ST_TEST(events, sndlowat_fixed)
{
	int c, s, v = 4096;
	st_pair(&c, &s);
	cr_assert_eq(setsockopt(s, SOL_SOCKET, SO_SNDLOWAT, &v, sizeof(v)), -1);
	cr_assert_eq(errno, ENOPROTOOPT);
	socklen_t len = sizeof(v);
	cr_assert_eq(getsockopt(s, SOL_SOCKET, SO_SNDLOWAT, &v, &len), 0);
	cr_assert_eq(v, 1);
	close(c);
	close(s);
}

/* TCP_FASTOPEN: a server that allows it and a client that connects with
 * sendto(MSG_FASTOPEN) exchange data as with connect and write. */
ST_TEST(events, tcp_fastopen)
{
	uint16_t port;
	int l = st_listen(&port), qlen = 16;
	cr_assert_eq(setsockopt(l, IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof(qlen)), 0);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ssize_t r = sendto(c, "hello", 5, MSG_FASTOPEN, (struct sockaddr *)&a, sizeof(a));
	cr_assert_eq(r, 5, "sendto(MSG_FASTOPEN): %s", strerror(errno));
	int s = st_accept(l);
	char b[5];
	cr_assert_eq(st_read_full(s, b, 5), 5);
	cr_assert_eq(memcmp(b, "hello", 5), 0);
	cr_assert_eq(write(s, "world", 5), 5);
	cr_assert_eq(st_read_full(c, b, 5), 5);
	cr_assert_eq(memcmp(b, "world", 5), 0);
	close(c);
	close(s);
	close(l);
}

/* TCP_NOTSENT_LOWAT 64 KiB: with more than that written and unread by the
 * peer (192 KiB, far from a full buffer), the socket is not writable; once
 * the peer reads, it is. */
ST_TEST(events, notsent_lowat)
{
	int c, s, lowat = 65536;
	st_pair(&c, &s);
	cr_assert_eq(setsockopt(c, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat)), 0);
	cr_assert_eq(poll1(c, POLLOUT, 0), POLLOUT);
	static char buf[1 << 20];
	st_set_nonblock(c, 1);
	size_t sent = 0;
	for (int i = 0; i < 3; i++) {
		ssize_t r = write(c, buf, 65536);
		if (r < 0)
			break;
		sent += (size_t)r;
	}
	cr_assert_gt(sent, (size_t)lowat, "only %zu bytes written", sent);
	cr_assert_eq(poll1(c, POLLOUT, 100), 0, "writable with %zu bytes unsent", sent);
	for (size_t got = 0; got < sent;) {
		ssize_t r = read(s, buf, sizeof(buf));
		cr_assert_gt(r, 0);
		got += (size_t)r;
	}
	cr_assert_eq(poll1(c, POLLOUT, ST_WAIT_MS), POLLOUT, "not writable once all was read");
	close(c);
	close(s);
}
