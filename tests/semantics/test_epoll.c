/*
 * test_epoll.c - epoll on sockets: level- and edge-triggered reports,
 * EPOLLONESHOT, EPOLLRDHUP/EPOLLHUP/EPOLLERR, EPOLLOUT after a full socket
 * drains, one fd in two sets, nested epoll, an epoll fd shared across fork,
 * epoll_ctl errors, and a registration that outlives its fd through a dup.
 */
#include "sem.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static int ep_new(void)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	cr_assert(ep >= 0, "epoll_create1: %s", strerror(errno));
	return ep;
}

static void ep_add(int ep, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event e = { .events = events, .data.u64 = tag };
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e), 0, "EPOLL_CTL_ADD %d: %s", fd,
		     strerror(errno));
}

/* One epoll_wait for at most one event: returns its events (0 if none came
 * within timeout_ms) and checks its tag. */
static uint32_t ep_wait1(int ep, int timeout_ms, uint64_t want_tag)
{
	struct epoll_event e;
	int n;
	while ((n = epoll_wait(ep, &e, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	cr_assert_geq(n, 0, "epoll_wait: %s", strerror(errno));
	if (n == 0)
		return 0;
	cr_assert_eq(e.data.u64, want_tag, "event for tag %lu, want %lu",
		     (unsigned long)e.data.u64, (unsigned long)want_tag);
	return e.events;
}

/* Level-triggered: EPOLLIN is reported on every wait while data remains,
 * and no more once it has all been read. */
ST_TEST(epoll, level_triggered)
{
	int c, s, ep = ep_new();
	char b[10];
	st_pair(&c, &s);
	ep_add(ep, s, EPOLLIN, 7);
	cr_assert_eq(ep_wait1(ep, 0, 7), 0);
	cr_assert_eq(write(c, "0123456789", 10), 10);
	cr_assert_eq(ep_wait1(ep, ST_WAIT_MS, 7), EPOLLIN);
	cr_assert_eq(ep_wait1(ep, 0, 7), EPOLLIN, "not reported again");
	cr_assert_eq(read(s, b, 5), 5);
	cr_assert_eq(ep_wait1(ep, 0, 7), EPOLLIN, "not reported with 5 bytes left");
	cr_assert_eq(read(s, b, 5), 5);
	cr_assert_eq(ep_wait1(ep, 0, 7), 0, "reported with nothing left");
	close(c);
	close(s);
	close(ep);
}

/* Edge-triggered: new data is reported once; not again while it sits
 * there or is partly read; again (once) when more data comes. */
ST_TEST(epoll, edge_triggered)
{
	int c, s, ep = ep_new();
	char b[32];
	st_pair(&c, &s);
	ep_add(ep, s, EPOLLIN | EPOLLET, 8);
	cr_assert_eq(write(c, "0123456789", 10), 10);
	cr_assert_eq(ep_wait1(ep, ST_WAIT_MS, 8), EPOLLIN);
	cr_assert_eq(ep_wait1(ep, 50, 8), 0, "reported twice for one write");
	cr_assert_eq(read(s, b, 5), 5);
	cr_assert_eq(ep_wait1(ep, 50, 8), 0, "reported again after a partial read");
	cr_assert_eq(write(c, "abcde", 5), 5);
	cr_assert_eq(ep_wait1(ep, ST_WAIT_MS, 8), EPOLLIN, "new data not reported");
	cr_assert_eq(ep_wait1(ep, 50, 8), 0, "new data reported twice");
	cr_assert_eq(read(s, b, sizeof(b)), 10);
	close(c);
	close(s);
	close(ep);
}

/* EPOLLONESHOT: reported once, then not at all (even for new data) until
 * EPOLL_CTL_MOD re-arms it, which reports the pending data again. */
ST_TEST(epoll, oneshot)
{
	int c, s, ep = ep_new();
	char b[32];
	st_pair(&c, &s);
	ep_add(ep, s, EPOLLIN | EPOLLONESHOT, 9);
	cr_assert_eq(write(c, "one", 3), 3);
	cr_assert_eq(ep_wait1(ep, ST_WAIT_MS, 9), EPOLLIN);
	cr_assert_eq(ep_wait1(ep, 50, 9), 0, "reported twice");
	cr_assert_eq(write(c, "two", 3), 3);
	cr_assert_eq(ep_wait1(ep, 100, 9), 0, "reported before re-arming");
	struct epoll_event e = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 9 };
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_MOD, s, &e), 0);
	cr_assert_eq(ep_wait1(ep, ST_WAIT_MS, 9), EPOLLIN, "not reported after EPOLL_CTL_MOD");
	cr_assert_eq(ep_wait1(ep, 50, 9), 0, "reported twice after re-arming");
	cr_assert_eq(st_read_full(s, b, 6), 6);
	cr_assert_arr_eq(b, "onetwo", 6);
	close(c);
	close(s);
	close(ep);
}

/* EPOLLRDHUP: when the peer shuts down writing, exactly EPOLLIN|EPOLLRDHUP
 * is reported (asked for EPOLLIN|EPOLLRDHUP). */
ST_TEST(epoll, rdhup_on_peer_shutdown)
{
	int c, s, ep = ep_new();
	char b;
	st_pair(&c, &s);
	ep_add(ep, s, EPOLLIN | EPOLLRDHUP, 10);
	cr_assert_eq(ep_wait1(ep, 0, 10), 0);
	cr_assert_eq(shutdown(c, SHUT_WR), 0);
	uint32_t ev = ep_wait1(ep, ST_WAIT_MS, 10);
	cr_assert_eq(ev, EPOLLIN | EPOLLRDHUP, "events %#x", ev);
	cr_assert_eq(read(s, &b, 1), 0);
	close(c);
	close(s);
	close(ep);
}

/* With the peer closed and this side shut down for writing, epoll reports
 * EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLHUP. */
ST_TEST(epoll, hup_when_both_closed)
{
	int c, s, ep = ep_new();
	st_pair(&c, &s);
	ep_add(ep, s, EPOLLIN | EPOLLOUT | EPOLLRDHUP, 11);
	cr_assert_eq(ep_wait1(ep, 0, 11), EPOLLOUT);
	close(c);
	cr_assert(st_wait_fd(s, POLLRDHUP, ST_WAIT_MS) & POLLRDHUP);
	cr_assert_eq(shutdown(s, SHUT_WR), 0);
	uint32_t ev = ep_wait1(ep, ST_WAIT_MS, 11);
	cr_assert_eq(ev, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLHUP, "events %#x", ev);
	close(s);
	close(ep);
}

/* A peer that resets the connection (SO_LINGER {1, 0}) makes epoll report
 * EPOLLIN|EPOLLRDHUP|EPOLLHUP|EPOLLERR (asked for EPOLLIN|EPOLLRDHUP), and
 * SO_ERROR says ECONNRESET. */
ST_TEST(epoll, err_on_peer_reset)
{
	int c, s, ep = ep_new(), err = 0;
	socklen_t len = sizeof(err);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	st_pair(&c, &s);
	ep_add(ep, s, EPOLLIN | EPOLLRDHUP, 12);
	cr_assert_eq(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(c);
	uint32_t ev = ep_wait1(ep, ST_WAIT_MS, 12);
	cr_assert_eq(ev, EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR, "events %#x", ev);
	cr_assert_eq(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	cr_assert_eq(err, ECONNRESET, "SO_ERROR %d (%s)", err, strerror(err));
	close(s);
	close(ep);
}

struct drain {
	int count_r; /* how many bytes to read, sent by the test */
};

static int drain_when_told(int fd, void *arg)
{
	struct drain *d = arg;
	size_t total;
	static char buf[65536];
	ST_CHECK(st_wait_fd(d->count_r, POLLIN, ST_WAIT_MS) & POLLIN, "no count");
	ST_CHECK(read(d->count_r, &total, sizeof(total)) == sizeof(total), "count");
	for (size_t got = 0; got < total;) {
		size_t want = total - got < sizeof(buf) ? total - got : sizeof(buf);
		ssize_t r = read(fd, buf, want);
		ST_CHECK(r > 0, "read after %zu of %zu: %s", got, total,
			 r < 0 ? strerror(errno) : "end of file");
		got += (size_t)r;
	}
	char b[4];
	ST_CHECK(st_read_full(fd, b, 4) == 4, "last write");
	ST_CHECK(memcmp(b, "last", 4) == 0, "last bytes");
	return 0;
}

/* A socket filled until EAGAIN has no EPOLLOUT; when the peer process
 * drains it, EPOLLOUT wakes the waiter and a write succeeds. */
ST_TEST(epoll, epollout_after_drain)
{
	int cnt[2], ep = ep_new();
	pid_t pid;
	static char buf[65536];
	cr_assert_eq(pipe(cnt), 0);
	struct drain d = { .count_r = cnt[0] };
	int s = st_peer_start(&pid, drain_when_told, &d);
	st_set_nonblock(s, 1);
	size_t total = 0;
	ssize_t r;
	while ((r = write(s, buf, sizeof(buf))) > 0)
		total += (size_t)r;
	cr_assert_eq(errno, EAGAIN, "write failed with %s", strerror(errno));
	ep_add(ep, s, EPOLLOUT, 13);
	cr_assert_eq(ep_wait1(ep, 0, 13), 0, "EPOLLOUT on a full socket");
	cr_assert_eq(write(cnt[1], &total, sizeof(total)), (ssize_t)sizeof(total));
	cr_assert_eq(ep_wait1(ep, ST_WAIT_MS, 13), EPOLLOUT, "no EPOLLOUT after the drain");
	cr_assert_eq(write(s, "last", 4), 4);
	st_assert_child_ok(pid);
	close(s);
	close(ep);
	close(cnt[0]);
	close(cnt[1]);
}

/* One socket in two epoll sets: data is reported by both. */
ST_TEST(epoll, one_fd_two_sets)
{
	int c, s, ep1 = ep_new(), ep2 = ep_new();
	st_pair(&c, &s);
	ep_add(ep1, s, EPOLLIN, 1);
	ep_add(ep2, s, EPOLLIN, 2);
	cr_assert_eq(write(c, "x", 1), 1);
	cr_assert_eq(ep_wait1(ep1, ST_WAIT_MS, 1), EPOLLIN);
	cr_assert_eq(ep_wait1(ep2, ST_WAIT_MS, 2), EPOLLIN);
	close(c);
	close(s);
	close(ep1);
	close(ep2);
}

static int write_after_pause(int fd, void *arg)
{
	(void)arg;
	st_sleep_ms(100);
	ST_CHECK(write(fd, "nested", 6) == 6, "write");
	char b;
	ST_CHECK(read(fd, &b, 1) == 0, "want end of file");
	return 0;
}

/* Nested epoll: an epoll fd inside another epoll set makes the outer one
 * report (and wake) when the socket in the inner set gets data from a peer
 * process; the inner one then reports the socket, and poll sees the inner
 * epoll fd readable. */
ST_TEST(epoll, nested)
{
	int inner = ep_new(), outer = ep_new();
	pid_t pid;
	char b[8];
	int s = st_peer_start(&pid, write_after_pause, NULL);
	ep_add(inner, s, EPOLLIN, 21);
	ep_add(outer, inner, EPOLLIN, 22);
	cr_assert_eq(ep_wait1(outer, 0, 22), 0);
	cr_assert_eq(ep_wait1(outer, ST_WAIT_MS, 22), EPOLLIN, "outer set not woken");
	cr_assert_eq(st_wait_fd(inner, POLLIN, 0), POLLIN);
	cr_assert_eq(ep_wait1(inner, 0, 21), EPOLLIN);
	cr_assert_eq(st_read_full(s, b, 6), 6);
	cr_assert_eq(ep_wait1(outer, 0, 22), 0, "outer still ready after the read");
	close(s);
	st_assert_child_ok(pid);
	close(inner);
	close(outer);
}

struct shared_ep {
	int ep, c, s;
};

static int wait_on_inherited_epoll(void *arg)
{
	struct shared_ep *se = arg;
	struct epoll_event e;
	char b[8];
	close(se->c);
	int n = epoll_wait(se->ep, &e, 1, ST_WAIT_MS);
	ST_CHECK(n == 1, "epoll_wait returned %d (%s)", n, n < 0 ? strerror(errno) : "timeout");
	ST_CHECK(e.events == EPOLLIN && e.data.u64 == 31, "events %#x tag %lu", e.events,
		 (unsigned long)e.data.u64);
	ST_CHECK(st_read_full(se->s, b, 6) == 6 && memcmp(b, "forked", 6) == 0, "data");
	ST_CHECK(write(se->s, "ok", 2) == 2, "reply: %s", strerror(errno));
	return 0;
}

/* An epoll fd shared across fork: the child waits on the parent's epoll fd,
 * is woken by data the parent sends to the registered socket, and reads and
 * answers through its inherited copy of that socket. */
ST_TEST(epoll, shared_across_fork)
{
	int c, s;
	st_pair(&c, &s);
	struct shared_ep se = { .ep = ep_new(), .c = c, .s = s };
	ep_add(se.ep, s, EPOLLIN, 31);
	pid_t pid = st_fork(wait_on_inherited_epoll, &se);
	st_sleep_ms(100);
	cr_assert_eq(write(c, "forked", 6), 6);
	st_assert_child_ok(pid);
	char b[8];
	cr_assert_eq(st_read_full(c, b, 2), 2);
	cr_assert_arr_eq(b, "ok", 2);
	close(c);
	close(s);
	close(se.ep);
}

/* epoll_ctl errors are the kernel's: ADD twice -> EEXIST, MOD or DEL of an
 * fd not in the set -> ENOENT, an epoll fd into itself -> EINVAL, a
 * regular file -> EPERM; DEL then ADD again works. */
ST_TEST(epoll, ctl_bookkeeping)
{
	int c, s, ep = ep_new();
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 41 };
	st_pair(&c, &s);
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_MOD, s, &e), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL), -1);
	cr_assert_eq(errno, ENOENT);
	ep_add(ep, s, EPOLLIN, 41);
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s, &e), -1);
	cr_assert_eq(errno, EEXIST);
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &e), -1);
	cr_assert_eq(errno, EINVAL);
	int f = open("/proc/self/exe", O_RDONLY);
	cr_assert(f >= 0);
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, f, &e), -1);
	cr_assert_eq(errno, EPERM);
	close(f);
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL), 0);
	cr_assert_eq(write(c, "x", 1), 1);
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(ep_wait1(ep, 0, 41), 0, "reported after EPOLL_CTL_DEL");
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL), -1, "deleted twice");
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_MOD, s, &e), -1, "modified after delete");
	cr_assert_eq(errno, ENOENT);
	e.data.u64 = 42;
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s, &e), 0);
	cr_assert_eq(ep_wait1(ep, 0, 42), EPOLLIN, "not reported after re-adding");
	close(c);
	close(s);
	close(ep);
}

/* A registration belongs to the open socket, not the fd number: after
 * closing the registered fd while a dup keeps the socket open, epoll still
 * reports it (with the old tag), and EPOLL_CTL_DEL on the closed fd fails
 * with EBADF. */
ST_TEST(epoll, registration_outlives_fd_via_dup)
{
	int c, s, ep = ep_new();
	st_pair(&c, &s);
	ep_add(ep, s, EPOLLIN, 51);
	int d = dup(s);
	cr_assert(d >= 0);
	cr_assert_eq(close(s), 0);
	cr_assert_eq(write(c, "x", 1), 1);
	cr_assert_eq(ep_wait1(ep, ST_WAIT_MS, 51), EPOLLIN);
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL), -1);
	cr_assert_eq(errno, EBADF);
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 52 };
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, d, &e), 0, "adding the dup: %s",
		     strerror(errno));
	close(d);
	close(c);
	close(ep);
}

/* The peer of event_loop_rounds: rounds of "send a request, wait for the
 * reply", each request after a pause every 16 rounds so that the other
 * side sometimes sleeps in epoll_wait. */
static int request_rounds(int fd, void *arg)
{
	int rounds = *(int *)arg;
	for (int i = 0; i < rounds; i++) {
		uint32_t v = (uint32_t)i, r;
		if (i % 16 == 0)
			st_sleep_ms(2);
		ST_CHECK(st_write_full(fd, &v, 4) == 4, "request %d: %s", i, strerror(errno));
		ST_CHECK(st_read_full(fd, &r, 4) == 4, "reply %d: %s", i, strerror(errno));
		ST_CHECK(r == v + 1, "reply %u to request %u", r, v);
	}
	return 0;
}

/* An event loop that changes a socket's registration on every request, as
 * redis' ae and libevent do (ADD for reading, MOD to writing, DEL when
 * done), is woken for every request, reads it, and its replies arrive in
 * order; a wait after DEL reports nothing. */
ST_TEST(epoll, event_loop_rounds)
{
	int rounds = 400, ep = ep_new();
	pid_t pid;
	int s = st_peer_start(&pid, request_rounds, &rounds);
	for (int i = 0; i < rounds; i++) {
		uint32_t v;
		ep_add(ep, s, EPOLLIN, 50);
		cr_assert_eq(ep_wait1(ep, ST_WAIT_MS, 50), EPOLLIN, "round %d: not woken", i);
		cr_assert_eq(st_read_full(s, &v, 4), 4);
		cr_assert_eq(v, (uint32_t)i);
		struct epoll_event e = { .events = EPOLLOUT, .data.u64 = 51 };
		cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_MOD, s, &e), 0, "MOD: %s", strerror(errno));
		cr_assert_eq(ep_wait1(ep, ST_WAIT_MS, 51), EPOLLOUT, "round %d: not writable", i);
		v++;
		cr_assert_eq(write(s, &v, 4), 4);
		cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL), 0, "DEL: %s", strerror(errno));
		cr_assert_eq(ep_wait1(ep, 0, 0), 0, "round %d: reported after DEL", i);
	}
	close(s);
	st_assert_child_ok(pid);
	close(ep);
}

/* The peer of edge_triggered_in_out: single bytes with short, uneven
 * pauses, so that they land at every point of the other side's wait. */
static int trickle(int fd, void *arg)
{
	int n = *(int *)arg;
	for (int i = 0; i < n; i++) {
		char b = (char)i;
		ST_CHECK(write(fd, &b, 1) == 1, "byte %d: %s", i, strerror(errno));
		uint64_t until = st_now_us() + (uint64_t)(i * 7919 % 23);
		while (st_now_us() < until)
			;
	}
	char ok;
	ST_CHECK(st_read_full(fd, &ok, 1) == 1, "no final answer");
	return 0;
}

/* EPOLLIN|EPOLLOUT|EPOLLET on a socket that is always writable: every
 * byte that arrives after the reader drained the socket is a new EPOLLIN
 * edge, whatever else was reported with or before it. A reader that reads
 * only when told EPOLLIN gets every byte, in order, and never waits a
 * second for one (nginx's upstream stall). */
ST_TEST(epoll, edge_triggered_in_out)
{
	int n = 3000, got = 0, ep = ep_new();
	pid_t pid;
	int s = st_peer_start(&pid, trickle, &n);
	st_set_nonblock(s, 1);
	ep_add(ep, s, EPOLLIN | EPOLLOUT | EPOLLET, 60);
	while (got < n) {
		struct epoll_event e;
		int k = epoll_wait(ep, &e, 1, 1000);
		if (k < 0 && errno == EINTR)
			continue;
		cr_assert_eq(k, 1, "stalled after %d of %d bytes (epoll_wait %d)", got, n, k);
		if (!(e.events & EPOLLIN))
			continue;
		for (;;) {
			char b[64];
			ssize_t r = read(s, b, sizeof(b));
			if (r < 0 && errno == EAGAIN)
				break;
			cr_assert_gt(r, 0, "read: %s", r < 0 ? strerror(errno) : "end of file");
			for (ssize_t i = 0; i < r; i++, got++)
				cr_assert_eq(b[i], (char)got, "byte %d out of order", got);
		}
	}
	st_set_nonblock(s, 0);
	cr_assert_eq(write(s, "k", 1), 1);
	close(s);
	st_assert_child_ok(pid);
	close(ep);
}

#define PP_ROUNDS 4000
#define PP_LEN 64

/* The peer of edge_triggered_reply_after_out: for each message, read it
 * (which frees the sender's buffers: an EPOLLOUT edge there), wait a few
 * microseconds (varied), and reply. */
static int reply_after_a_moment(int fd, void *arg)
{
	(void)arg;
	char b[PP_LEN];
	for (int i = 0; i < PP_ROUNDS; i++) {
		ST_CHECK(st_read_full(fd, b, sizeof(b)) == sizeof(b), "message %d: %s", i,
			 strerror(errno));
		for (volatile int spin = 0; spin < (i * 7919) % 3000; spin++)
			;
		b[0] = (char)~b[0];
		ST_CHECK(st_write_full(fd, b, sizeof(b)) == sizeof(b), "reply %d: %s", i,
			 strerror(errno));
	}
	ST_CHECK(st_read_full(fd, b, 1) == 0, "want end of file");
	return 0;
}

/* EPOLLIN|EPOLLOUT|EPOLLET in a set that also holds an fd that is always
 * ready (a pipe with a byte in it, level-triggered): a reply that comes
 * right after the EPOLLOUT edge of its request being read is a new EPOLLIN
 * edge, reported by a later wait if not by the one that reported EPOLLOUT.
 * Ping-pong of PP_ROUNDS messages; the one-second wait for the reply must
 * never time out (nginx's stall behind a reverse proxy, issue 7 item 5: an
 * event found again after the kernel part of the set was looked at was
 * dropped as a duplicate of the EPOLLOUT already in hand, and recorded as
 * reported). */
ST_TEST(epoll, edge_triggered_reply_after_out)
{
	pid_t pid;
	int p[2], ep = ep_new();
	int s = st_peer_start(&pid, reply_after_a_moment, NULL);
	st_set_nonblock(s, 1);
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	ep_add(ep, p[0], EPOLLIN, 1);
	ep_add(ep, s, EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, 2);
	char msg[PP_LEN], reply[PP_LEN];
	for (int i = 0; i < PP_ROUNDS; i++) {
		st_pattern_fill(msg, sizeof(msg), 3, (uint64_t)i * PP_LEN);
		cr_assert_eq(write(s, msg, sizeof(msg)), (ssize_t)sizeof(msg), "message %d: %s", i,
			     strerror(errno));
		size_t got = 0;
		uint64_t t0 = st_now_us();
		while (got < sizeof(reply)) {
			/* The pipe makes every wait return at once: a reply that
			 * is never reported shows as a round that goes on. */
			cr_assert_lt(st_now_us() - t0, 1000000,
				     "round %d: no EPOLLIN for the reply within a second (%zu of %d bytes read)",
				     i, got, PP_LEN);
			struct epoll_event ev[4];
			int k = epoll_wait(ep, ev, 4, 1000);
			if (k < 0 && errno == EINTR)
				continue;
			cr_assert_geq(k, 0, "epoll_wait: %s", strerror(errno));
			cr_assert_gt(k, 0, "round %d: epoll_wait timed out with a pipe ready", i);
			for (int j = 0; j < k; j++) {
				if (ev[j].data.u64 != 2 || !(ev[j].events & EPOLLIN))
					continue;
				while (got < sizeof(reply)) {
					ssize_t r = read(s, reply + got, sizeof(reply) - got);
					if (r < 0 && errno == EAGAIN)
						break;
					cr_assert_gt(r, 0, "round %d: read: %s", i,
						     r < 0 ? strerror(errno) : "end of file");
					got += (size_t)r;
				}
			}
		}
		msg[0] = (char)~msg[0];
		cr_assert_arr_eq(reply, msg, sizeof(msg), "round %d: wrong reply", i);
	}
	st_set_nonblock(s, 0);
	close(s);
	close(p[0]);
	close(p[1]);
	close(ep);
	st_assert_child_ok(pid);
}
