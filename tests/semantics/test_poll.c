/*
 * test_poll.c - poll and select on sockets, their use as sleeps, and
 * readiness sets that mix a socket with a pipe (poll, select and epoll):
 * the right fd is reported, a peer process wakes a sleeping waiter, and a
 * waiter with nothing ready sleeps instead of spinning.
 */
#include "sem.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>

/* Most CPU time a waiter may use while nothing is ready, in percent of the
 * wall-clock time it waited. */
#define IDLE_CPU_PCT 30

/* poll reports exactly POLLIN once data has come, and POLLIN|POLLOUT when
 * asked for both. */
ST_TEST(poll, pollin_when_data)
{
	int c, s;
	st_pair(&c, &s);
	cr_assert_eq(write(c, "d", 1), 1);
	struct pollfd p = { .fd = s, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, ST_WAIT_MS), 1);
	cr_assert_eq(p.revents, POLLIN, "revents %#x", p.revents);
	p.events = POLLIN | POLLOUT;
	cr_assert_eq(poll(&p, 1, 0), 1);
	cr_assert_eq(p.revents, POLLIN | POLLOUT, "revents %#x", p.revents);
	close(c);
	close(s);
}

/* poll on a socket with no data times out after the timeout (not before),
 * returns 0 and clears revents. */
ST_TEST(poll, timeout_when_no_data)
{
	int c, s;
	st_pair(&c, &s);
	struct pollfd p = { .fd = s, .events = POLLIN, .revents = 0x7 };
	uint64_t t0 = st_now_us();
	cr_assert_eq(poll(&p, 1, 100), 0);
	uint64_t took = st_now_us() - t0;
	cr_assert_eq(p.revents, 0);
	cr_assert_geq(took, 95000, "timed out after %lu us", (unsigned long)took);
	close(c);
	close(s);
}

/* poll with no fds and a 50 ms timeout is a sleep of at least 45 ms that
 * does not burn the CPU. */
ST_TEST(poll, poll_as_sleep)
{
	uint64_t t0 = st_now_us(), cpu0 = st_cpu_us();
	cr_assert_eq(poll(NULL, 0, 50), 0);
	uint64_t took = st_now_us() - t0, cpu = st_cpu_us() - cpu0;
	cr_assert_geq(took, 45000, "slept %lu us", (unsigned long)took);
	cr_assert_lt(cpu * 100, took * IDLE_CPU_PCT, "used %lu us CPU in %lu us",
		     (unsigned long)cpu, (unsigned long)took);
}

/* A connected socket with room to write polls exactly POLLOUT. */
ST_TEST(poll, pollout_when_writable)
{
	int c, s;
	st_pair(&c, &s);
	struct pollfd p[2] = { { .fd = c, .events = POLLOUT },
			       { .fd = s, .events = POLLIN | POLLOUT } };
	cr_assert_eq(poll(p, 2, ST_WAIT_MS), 2);
	cr_assert_eq(p[0].revents, POLLOUT, "revents %#x", p[0].revents);
	cr_assert_eq(p[1].revents, POLLOUT, "revents %#x", p[1].revents);
	close(c);
	close(s);
}

/* When the peer shuts down writing, poll reports exactly POLLIN|POLLRDHUP
 * (asked for POLLIN|POLLRDHUP), and the read returns 0. */
ST_TEST(poll, pollrdhup_at_peer_shutdown)
{
	int c, s;
	char b;
	st_pair(&c, &s);
	struct pollfd p = { .fd = s, .events = POLLIN | POLLRDHUP };
	cr_assert_eq(poll(&p, 1, 0), 0);
	cr_assert_eq(shutdown(c, SHUT_WR), 0);
	cr_assert_eq(poll(&p, 1, ST_WAIT_MS), 1);
	cr_assert_eq(p.revents, POLLIN | POLLRDHUP, "revents %#x", p.revents);
	cr_assert_eq(read(s, &b, 1), 0);
	close(c);
	close(s);
}

/* When the peer has closed and this side has shut down writing too, poll
 * reports POLLIN|POLLOUT|POLLRDHUP|POLLHUP. */
ST_TEST(poll, pollhup_when_both_closed)
{
	int c, s;
	st_pair(&c, &s);
	close(c);
	struct pollfd p = { .fd = s, .events = POLLIN | POLLRDHUP };
	cr_assert_eq(poll(&p, 1, ST_WAIT_MS), 1);
	cr_assert_eq(shutdown(s, SHUT_WR), 0);
	p.events = POLLIN | POLLOUT | POLLRDHUP;
	cr_assert_eq(poll(&p, 1, ST_WAIT_MS), 1);
	cr_assert_eq(p.revents, POLLIN | POLLOUT | POLLRDHUP | POLLHUP, "revents %#x", p.revents);
	close(s);
}

/* select with no fds and a 50 ms timeout sleeps at least 45 ms without
 * burning the CPU, and leaves the timeout at zero. */
ST_TEST(poll, select_as_sleep)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 50000 };
	uint64_t t0 = st_now_us(), cpu0 = st_cpu_us();
	cr_assert_eq(select(0, NULL, NULL, NULL, &tv), 0);
	uint64_t took = st_now_us() - t0, cpu = st_cpu_us() - cpu0;
	cr_assert_geq(took, 45000, "slept %lu us", (unsigned long)took);
	cr_assert_lt(cpu * 100, took * IDLE_CPU_PCT, "used %lu us CPU in %lu us",
		     (unsigned long)cpu, (unsigned long)took);
	cr_assert(tv.tv_sec == 0 && tv.tv_usec == 0, "timeout left %ld.%06ld", (long)tv.tv_sec,
		  (long)tv.tv_usec);
}

/* select: no data -> 0 after the timeout with the fd cleared from the set;
 * data -> the socket is in the read set; a connected socket is in the
 * write set. */
ST_TEST(poll, select_readable)
{
	int c, s;
	fd_set r, w;
	st_pair(&c, &s);
	int nfds = (c > s ? c : s) + 1;
	struct timeval tv = { .tv_sec = 0, .tv_usec = 50000 };
	FD_ZERO(&r);
	FD_SET(s, &r);
	cr_assert_eq(select(nfds, &r, NULL, NULL, &tv), 0);
	cr_assert(!FD_ISSET(s, &r));
	cr_assert_eq(write(c, "s", 1), 1);
	FD_ZERO(&r);
	FD_SET(s, &r);
	FD_SET(c, &r);
	FD_ZERO(&w);
	FD_SET(c, &w);
	tv = (struct timeval){ .tv_sec = ST_WAIT_MS / 1000 };
	cr_assert_eq(select(nfds, &r, &w, NULL, &tv), 2);
	cr_assert(FD_ISSET(s, &r));
	cr_assert(!FD_ISSET(c, &r));
	cr_assert(FD_ISSET(c, &w));
	close(c);
	close(s);
}

/* --- mixed sets: a pipe and a socket ------------------------------------ */

struct mixed {
	int pipe_w; /* the pipe the waiter also watches */
	int go_r;   /* the test tells the peer to go on */
};

/* The peer: after a pause writes to the socket; when told, after a pause
 * writes to the pipe; when told, ends. */
static int mixed_peer(int fd, void *arg)
{
	struct mixed *m = arg;
	st_sleep_ms(100);
	ST_CHECK(write(fd, "S", 1) == 1, "write socket");
	ST_CHECK(st_await(m->go_r, ST_WAIT_MS), "no go");
	st_sleep_ms(100);
	ST_CHECK(write(m->pipe_w, "P", 1) == 1, "write pipe");
	ST_CHECK(st_await(m->go_r, ST_WAIT_MS), "no go");
	return 0;
}

/* A waiter over {pipe, socket}: one wait call that returns which of the
 * two is readable (bit 0: pipe, bit 1: socket), or -1 on timeout. */
typedef int (*mixed_wait_fn)(int pipe_r, int sock, int timeout_ms, void *ctx);

static void mixed_rule(mixed_wait_fn waitfn, void *ctx_arg, void (*setup)(int, int, void *))
{
	int p[2], go[2];
	pid_t pid;
	char b;
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(pipe(go), 0);
	struct mixed m = { .pipe_w = p[1], .go_r = go[0] };
	int s = st_peer_start(&pid, mixed_peer, &m);
	if (setup)
		setup(p[0], s, ctx_arg);

	/* Nothing ready yet. */
	cr_assert_eq(waitfn(p[0], s, 0, ctx_arg), -1, "ready before anything was written");

	/* The peer writes the socket while we sleep. */
	uint64_t t0 = st_now_us();
	int which = waitfn(p[0], s, ST_WAIT_MS, ctx_arg);
	uint64_t took = st_now_us() - t0;
	cr_assert_eq(which, 2, "want the socket alone, got %d", which);
	cr_assert_lt(took, 2000000, "woke %lu us after a write 100 ms in", (unsigned long)took);
	cr_assert_eq(read(s, &b, 1), 1);
	cr_assert_eq(b, 'S');

	/* The peer writes the pipe while we sleep. */
	st_post(go[1]);
	t0 = st_now_us();
	which = waitfn(p[0], s, ST_WAIT_MS, ctx_arg);
	took = st_now_us() - t0;
	cr_assert_eq(which, 1, "want the pipe alone, got %d", which);
	cr_assert_lt(took, 2000000, "woke %lu us after a write 100 ms in", (unsigned long)took);
	cr_assert_eq(read(p[0], &b, 1), 1);

	/* We write the pipe ourselves: reported at once, socket not. */
	cr_assert_eq(write(p[1], "p", 1), 1);
	cr_assert_eq(waitfn(p[0], s, 0, ctx_arg), 1);
	cr_assert_eq(read(p[0], &b, 1), 1);
	cr_assert_eq(waitfn(p[0], s, 0, ctx_arg), -1);

	st_post(go[1]);
	st_assert_child_ok(pid);
	close(s);
	close(p[0]);
	close(p[1]);
	close(go[0]);
	close(go[1]);
}

static int wait_poll(int pipe_r, int sock, int timeout_ms, void *ctx)
{
	(void)ctx;
	struct pollfd p[2] = { { .fd = pipe_r, .events = POLLIN }, { .fd = sock, .events = POLLIN } };
	int n = poll(p, 2, timeout_ms);
	cr_assert_geq(n, 0, "poll: %s", strerror(errno));
	if (n == 0)
		return -1;
	cr_assert_eq(p[0].revents & ~POLLIN, 0);
	cr_assert_eq(p[1].revents & ~POLLIN, 0);
	int which = (p[0].revents ? 1 : 0) | (p[1].revents ? 2 : 0);
	cr_assert_eq(n, __builtin_popcount((unsigned)which));
	return which;
}

static int wait_select(int pipe_r, int sock, int timeout_ms, void *ctx)
{
	(void)ctx;
	fd_set r;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	FD_ZERO(&r);
	FD_SET(pipe_r, &r);
	FD_SET(sock, &r);
	int n = select((pipe_r > sock ? pipe_r : sock) + 1, &r, NULL, NULL, &tv);
	cr_assert_geq(n, 0, "select: %s", strerror(errno));
	if (n == 0)
		return -1;
	int which = (FD_ISSET(pipe_r, &r) ? 1 : 0) | (FD_ISSET(sock, &r) ? 2 : 0);
	cr_assert_eq(n, __builtin_popcount((unsigned)which));
	return which;
}

static void epoll_setup(int pipe_r, int sock, void *ctx)
{
	int *ep = ctx;
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 1 };
	*ep = epoll_create1(EPOLL_CLOEXEC);
	cr_assert(*ep >= 0);
	cr_assert_eq(epoll_ctl(*ep, EPOLL_CTL_ADD, pipe_r, &e), 0);
	e.data.u64 = 2;
	cr_assert_eq(epoll_ctl(*ep, EPOLL_CTL_ADD, sock, &e), 0);
}

static int wait_epoll(int pipe_r, int sock, int timeout_ms, void *ctx)
{
	(void)pipe_r;
	(void)sock;
	struct epoll_event ev[4];
	int n = epoll_wait(*(int *)ctx, ev, 4, timeout_ms);
	cr_assert_geq(n, 0, "epoll_wait: %s", strerror(errno));
	if (n == 0)
		return -1;
	int which = 0;
	for (int i = 0; i < n; i++) {
		cr_assert_eq(ev[i].events, EPOLLIN, "events %#x", ev[i].events);
		which |= (int)ev[i].data.u64;
	}
	cr_assert_eq(n, __builtin_popcount((unsigned)which));
	return which;
}

/* poll over a pipe and a socket reports whichever became ready, and a peer
 * process's write wakes it from its sleep. */
ST_TEST(mixed, poll_pipe_and_socket)
{
	mixed_rule(wait_poll, NULL, NULL);
}

/* select over a pipe and a socket reports whichever became ready, and a
 * peer process's write wakes it from its sleep. */
ST_TEST(mixed, select_pipe_and_socket)
{
	mixed_rule(wait_select, NULL, NULL);
}

/* epoll over a pipe and a socket reports whichever became ready, and a
 * peer process's write wakes it from its sleep. */
ST_TEST(mixed, epoll_pipe_and_socket)
{
	int ep = -1;
	mixed_rule(wait_epoll, &ep, epoll_setup);
	close(ep);
}

/* Wait 300 ms over {pipe, socket} with nothing ready: the waiter sleeps for
 * the timeout and uses little CPU (less than IDLE_CPU_PCT of the time). */
static void idle_rule(mixed_wait_fn waitfn, void *ctx, void (*setup)(int, int, void *))
{
	int c, s, p[2];
	st_pair(&c, &s);
	cr_assert_eq(pipe(p), 0);
	/* Some traffic first, so the connection is in its normal state. */
	char b[4];
	cr_assert_eq(write(c, "abc", 3), 3);
	cr_assert_eq(st_read_full(s, b, 3), 3);
	if (setup)
		setup(p[0], s, ctx);
	uint64_t t0 = st_now_us(), cpu0 = st_cpu_us();
	cr_assert_eq(waitfn(p[0], s, 300, ctx), -1);
	uint64_t took = st_now_us() - t0, cpu = st_cpu_us() - cpu0;
	cr_assert_geq(took, 290000, "returned after %lu us", (unsigned long)took);
	cr_assert_lt(cpu * 100, took * IDLE_CPU_PCT, "used %lu us CPU in %lu us (busy waiting)",
		     (unsigned long)cpu, (unsigned long)took);
	close(c);
	close(s);
	close(p[0]);
	close(p[1]);
}

/* A poll over a pipe and a socket with nothing ready sleeps, not spins. */
ST_TEST(mixed, poll_idle_sleeps)
{
	idle_rule(wait_poll, NULL, NULL);
}

/* A select over a pipe and a socket with nothing ready sleeps, not spins. */
ST_TEST(mixed, select_idle_sleeps)
{
	idle_rule(wait_select, NULL, NULL);
}

/* An epoll_wait over a pipe and a socket with nothing ready sleeps, not
 * spins. */
ST_TEST(mixed, epoll_idle_sleeps)
{
	int ep = -1;
	idle_rule(wait_epoll, &ep, epoll_setup);
	close(ep);
}
