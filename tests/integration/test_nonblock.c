/*
 * test_nonblock.c - non-blocking connections and listeners, waiting on the
 * kernel fd with xio_conn_poll_arm() and the doorbell, the cost of an idle
 * blocked reader, and signals during a blocking read.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"

static struct t_monitor mon;
static xio_listener *lis;

static void setup(void)
{
	t_suite_up(&mon, &lis, 16);
}

static void teardown(void)
{
	t_suite_down(&mon, &lis);
}

TestSuite(nonblock, .init = setup, .fini = teardown);

/* Pipes between the test and its client: to the child and from it. */
struct chat {
	int to[2], from[2];
};

static void chat_open(struct chat *ch)
{
	cr_assert_eq(pipe(ch->to), 0);
	cr_assert_eq(pipe(ch->from), 0);
}

static void chat_close(struct chat *ch)
{
	close(ch->to[0]);
	close(ch->to[1]);
	close(ch->from[0]);
	close(ch->from[1]);
}

static pid_t pair(xio_conn **server, unsigned flags, int (*fn)(xio_conn *, void *), void *arg)
{
	return t_pair_accelerated(lis, server, flags, fn, arg);
}

static void reap(pid_t pid, int timeout_ms)
{
	t_reap(pid, timeout_ms);
}

static int client_wait_eof(xio_conn *c, void *arg)
{
	(void)arg;
	char b;
	ssize_t r = xio_read(c, &b, 1);
	T_CHECK(r == 0, "expected end of file, got %zd (%s)", r, xio_strerror((int)r));
	return 0;
}

/* xio_read on an empty non-blocking connection returns -EAGAIN at once. */
Test(nonblock, read_empty_eagain)
{
	xio_conn *c;
	pid_t pid = pair(&c, XIO_NONBLOCK, client_wait_eof, NULL);
	char buf[16];
	uint64_t t0 = t_now_ms();
	ssize_t r = xio_read(c, buf, sizeof(buf));
	uint64_t ms = t_now_ms() - t0;
	cr_assert_eq(r, -EAGAIN, "xio_read on empty: %zd (%s)", r, xio_strerror((int)r));
	cr_assert_lt(ms, 500, "non-blocking read took %llu ms", (unsigned long long)ms);
	cr_assert_eq(xio_close(c), 0);
	reap(pid, 5000);
}

/* Non-blocking writes of pattern seed 61 until -EAGAIN (bounded); returns
 * the bytes queued. */
static size_t fill_channel(xio_conn *c)
{
	size_t piece = 64 * 1024, total = 0;
	char *buf = malloc(piece);
	ssize_t r = 0;
	for (int i = 0; i < 4096; i++) {
		t_pattern_fill(buf, piece, 61, total);
		r = xio_write(c, buf, piece);
		if (r == -EAGAIN)
			break;
		cr_assert(r > 0 && (size_t)r <= piece,
			  "non-blocking write %d (after %zu bytes): %zd (%s)", i, total, r,
			  xio_strerror((int)r));
		total += (size_t)r;
	}
	free(buf);
	cr_assert_eq(r, -EAGAIN, "no -EAGAIN after %zu bytes queued", total);
	cr_assert(total > 0 && total <= (2u << 20), "queued %zu bytes before -EAGAIN", total);
	return total;
}

#define EXTRA (100 * 1000u)

/* Client: wait for the byte count, read that much (pattern 61), say so,
 * then read EXTRA more and end of file. */
static int client_drain_on_request(xio_conn *c, void *arg)
{
	struct chat *ch = arg;
	uint64_t total;
	T_CHECK(t_await(ch->to[0], 10000), "no go from the test");
	T_CHECK(read(ch->to[0], &total, sizeof(total)) == sizeof(total), "no byte count");
	char *buf = malloc(total + EXTRA);
	ssize_t r = t_read_full(c, buf, total);
	T_CHECK(r == (ssize_t)total, "draining %llu: %zd (%s)", (unsigned long long)total, r,
		xio_strerror((int)r));
	T_CHECK(t_pattern_check(buf, total, 61, 0), "wrong bytes drained");
	t_post(ch->from[1]);
	r = t_read_full(c, buf, EXTRA);
	T_CHECK(r == EXTRA, "reading the rest: %zd (%s)", r, xio_strerror((int)r));
	T_CHECK(t_pattern_check(buf, EXTRA, 61, total), "wrong bytes in the rest");
	r = xio_read(c, buf, 1);
	T_CHECK(r == 0, "expected end of file, got %zd (%s)", r, xio_strerror((int)r));
	free(buf);
	return 0;
}

/* Tell the client to drain total bytes. */
static void request_drain(struct chat *ch, uint64_t total)
{
	t_post(ch->to[1]);
	cr_assert_eq(write(ch->to[1], &total, sizeof(total)), (ssize_t)sizeof(total));
}

/* Write the rest of the EXTRA bytes that follow total (done of them were
 * written already), in blocking mode. */
static void write_extra(xio_conn *c, size_t total, size_t done)
{
	size_t n = EXTRA - done;
	char *buf = malloc(n);
	t_pattern_fill(buf, n, 61, total + done);
	cr_assert_eq(xio_conn_set_nonblock(c, 0), 0);
	ssize_t r = xio_write(c, buf, n);
	cr_assert_eq(r, (ssize_t)n, "blocking write of the rest: %zd (%s)", r,
		     xio_strerror((int)r));
	free(buf);
}

/* Non-blocking xio_write fills the channel then returns -EAGAIN; once the
 * peer has read, writing works again. */
Test(nonblock, write_full_eagain_then_resumes)
{
	struct chat ch;
	chat_open(&ch);
	xio_conn *c;
	pid_t pid = pair(&c, XIO_NONBLOCK, client_drain_on_request, &ch);
	size_t total = fill_channel(c);
	char b = 0;
	ssize_t r = xio_write(c, &b, 1);
	cr_assert_eq(r, -EAGAIN, "write on a full channel: %zd (%s)", r, xio_strerror((int)r));
	request_drain(&ch, total);
	cr_assert(t_await(ch.from[0], 10000), "the client did not drain");
	/* The reader gave every buffer back: room at once. */
	char *buf = malloc(4096);
	t_pattern_fill(buf, 4096, 61, total);
	r = xio_write(c, buf, 4096);
	cr_assert_eq(r, 4096, "write after the peer drained: %zd (%s)", r, xio_strerror((int)r));
	free(buf);
	write_extra(c, total, 4096);
	cr_assert_eq(xio_close(c), 0);
	reap(pid, 10000);
	chat_close(&ch);
}

static int client_write_on_request(xio_conn *c, void *arg)
{
	struct chat *ch = arg;
	T_CHECK(t_await(ch->to[0], 10000), "no go from the test");
	usleep(100 * 1000);
	ssize_t r = xio_write(c, "hello", 5);
	T_CHECK(r == 5, "xio_write: %zd (%s)", r, xio_strerror((int)r));
	struct xio_conn_stats st;
	xio_conn_stats(c, &st);
	T_CHECK(st.doorbells >= 1, "the writer rang no doorbell for an armed reader");
	char b;
	r = xio_read(c, &b, 1);
	T_CHECK(r == 0, "expected end of file, got %zd (%s)", r, xio_strerror((int)r));
	return 0;
}

/* After xio_conn_poll_arm(POLLIN) returns 0 on an empty connection, the fd
 * is not readable; poll(2) on it wakes when the peer writes (the doorbell),
 * and xio_read then returns the data. */
Test(nonblock, poll_arm_in_doorbell_wakes)
{
	struct chat ch;
	chat_open(&ch);
	xio_conn *c;
	pid_t pid = pair(&c, XIO_NONBLOCK, client_write_on_request, &ch);
	int armed = xio_conn_poll_arm(c, POLLIN);
	cr_assert_eq(armed, 0, "poll_arm(POLLIN) on an empty connection: %d", armed);
	struct pollfd p = { .fd = xio_conn_fd(c), .events = POLLIN };
	int n = poll(&p, 1, 0);
	cr_assert_eq(n, 0, "fd readable (revents %#x) before the peer wrote", p.revents);
	t_post(ch.to[1]);
	uint64_t t0 = t_now_ms();
	n = poll(&p, 1, 5000);
	uint64_t ms = t_now_ms() - t0;
	cr_assert_eq(n, 1, "poll: %d after %llu ms (no doorbell)", n, (unsigned long long)ms);
	char buf[16];
	ssize_t r = xio_read(c, buf, sizeof(buf));
	cr_assert_eq(r, 5, "read after the doorbell: %zd (%s)", r, xio_strerror((int)r));
	cr_assert_arr_eq(buf, "hello", 5);
	cr_assert_eq(xio_close(c), 0);
	reap(pid, 5000);
	chat_close(&ch);
}

/* After xio_conn_poll_arm(POLLOUT) returns 0 on a full channel, poll(2) on
 * the fd (for POLLIN: the doorbell is a byte) wakes when the peer drains,
 * and xio_write then makes progress. */
Test(nonblock, poll_arm_out_wakes_when_drained)
{
	struct chat ch;
	chat_open(&ch);
	xio_conn *c;
	pid_t pid = pair(&c, XIO_NONBLOCK, client_drain_on_request, &ch);
	size_t total = fill_channel(c);
	int armed = xio_conn_poll_arm(c, POLLOUT);
	cr_assert_eq(armed, 0, "poll_arm(POLLOUT) on a full channel: %d", armed);
	struct pollfd p = { .fd = xio_conn_fd(c), .events = POLLIN };
	int n = poll(&p, 1, 0);
	cr_assert_eq(n, 0, "fd readable (revents %#x) before the peer drained", p.revents);
	request_drain(&ch, total);
	uint64_t t0 = t_now_ms();
	n = poll(&p, 1, 5000);
	uint64_t ms = t_now_ms() - t0;
	cr_assert_eq(n, 1, "poll: %d after %llu ms (no doorbell from the draining peer)", n,
		     (unsigned long long)ms);
	char *buf = malloc(4096);
	t_pattern_fill(buf, 4096, 61, total);
	ssize_t r = xio_write(c, buf, 4096);
	cr_assert(r > 0, "write after the doorbell: %zd (%s)", r, xio_strerror((int)r));
	free(buf);
	write_extra(c, total, (size_t)r);
	cr_assert(t_await(ch.from[0], 10000), "the client did not drain");
	cr_assert_eq(xio_close(c), 0);
	reap(pid, 10000);
	chat_close(&ch);
}

/* xio_accept on a non-blocking listener with no client returns -EAGAIN at
 * once. */
Test(nonblock, listener_accept_eagain)
{
	xio_listener *l;
	struct sockaddr_in a = t_loopback(0);
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 4, XIO_NONBLOCK);
	cr_assert_eq(r, 0, "xio_listen: %s", xio_strerror(r));
	xio_conn *c = NULL;
	uint64_t t0 = t_now_ms();
	r = xio_accept(l, &c, 0);
	uint64_t ms = t_now_ms() - t0;
	cr_assert_eq(r, -EAGAIN, "xio_accept with no client: %d (%s)", r, xio_strerror(r));
	cr_assert_lt(ms, 500, "non-blocking accept took %llu ms", (unsigned long long)ms);
	cr_assert_eq(xio_listener_close(l), 0);
}

/* --- idle cost ---------------------------------------------------------- */

struct idle_report {
	ssize_t r;
	uint64_t cpu_us, wall_ms, sleeps;
};

static uint64_t cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int client_idle_reader(xio_conn *c, void *arg)
{
	struct chat *ch = arg;
	struct idle_report rep;
	char b;
	t_post(ch->from[1]);
	uint64_t cpu0 = cpu_us(), t0 = t_now_ms();
	rep.r = xio_read(c, &b, 1);
	rep.cpu_us = cpu_us() - cpu0;
	rep.wall_ms = t_now_ms() - t0;
	struct xio_conn_stats st;
	xio_conn_stats(c, &st);
	rep.sleeps = st.sleeps;
	T_CHECK(write(ch->from[1], &rep, sizeof(rep)) == sizeof(rep), "report");
	return 0;
}

/* A reader blocked in xio_read on an idle connection for 1 s uses less
 * than 100 ms of CPU: the adaptive wait goes to sleep in the kernel. */
Test(nonblock, idle_blocked_reader_sleeps)
{
	struct chat ch;
	chat_open(&ch);
	xio_conn *c;
	pid_t pid = pair(&c, 0, client_idle_reader, &ch);
	cr_assert(t_await(ch.from[0], 5000));
	usleep(1000 * 1000);
	cr_assert_eq(xio_write(c, "z", 1), 1);
	struct idle_report rep;
	struct pollfd p = { .fd = ch.from[0], .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 5000), 1, "no report from the reader");
	cr_assert_eq(read(ch.from[0], &rep, sizeof(rep)), (ssize_t)sizeof(rep));
	cr_assert_eq(rep.r, 1, "the blocked read returned %zd (%s)", rep.r,
		     xio_strerror((int)rep.r));
	cr_assert_geq(rep.wall_ms, 900, "the read returned after %llu ms only",
		      (unsigned long long)rep.wall_ms);
	cr_assert_lt(rep.cpu_us, 100000,
		     "an idle reader blocked %llu ms used %llu us of CPU (sleeps %llu)",
		     (unsigned long long)rep.wall_ms, (unsigned long long)rep.cpu_us,
		     (unsigned long long)rep.sleeps);
	cr_assert_geq(rep.sleeps, 1, "the reader never slept in the kernel");
	cr_assert_eq(xio_close(c), 0);
	reap(pid, 5000);
	chat_close(&ch);
}

/* --- signals ------------------------------------------------------------ */

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

static int client_interrupted_reader(xio_conn *c, void *arg)
{
	struct chat *ch = arg;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	T_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
	char b;
	t_post(ch->from[1]);
	ssize_t r = xio_read(c, &b, 1);
	T_CHECK(r == -EINTR, "xio_read interrupted by SIGUSR1 returned %zd (%s), handler ran %d", r,
		xio_strerror((int)r), (int)got_usr1);
	T_CHECK(got_usr1, "the handler did not run");
	/* The connection still works afterwards. */
	t_post(ch->from[1]);
	r = xio_read(c, &b, 1);
	T_CHECK(r == 1 && b == 'q', "read after -EINTR: %zd (%s)", r, xio_strerror((int)r));
	return 0;
}

/* A signal whose handler has no SA_RESTART, delivered to a reader blocked in
 * xio_read, makes it return -EINTR; the connection still works after. */
Test(nonblock, signal_interrupts_blocked_read)
{
	struct chat ch;
	chat_open(&ch);
	xio_conn *c;
	pid_t pid = pair(&c, 0, client_interrupted_reader, &ch);
	cr_assert(t_await(ch.from[0], 5000));
	usleep(200 * 1000); /* asleep in the kernel by now */
	cr_assert_eq(kill(pid, SIGUSR1), 0);
	cr_assert(t_await(ch.from[0], 5000), "the reader did not return from xio_read");
	cr_assert_eq(xio_write(c, "q", 1), 1);
	reap(pid, 5000);
	cr_assert_eq(xio_close(c), 0);
	chat_close(&ch);
}
