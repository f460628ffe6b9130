/*
 * test_stream.c - reading and writing a TCP stream: blocking and
 * non-blocking calls, recv flags, SIGPIPE/EPIPE, half-close, peer death,
 * connect errors, addresses, and connections that end around accept.
 */
#include "sem.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>

static volatile sig_atomic_t sigpipes;

static void count_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

static void catch_sigpipe(void)
{
	struct sigaction sa = { .sa_handler = count_sigpipe };
	sigpipes = 0;
	cr_assert_eq(sigaction(SIGPIPE, &sa, NULL), 0);
}

/* Wait until fd has seen the peer's FIN: POLLIN and a read of 0. */
static void await_eof(int fd)
{
	char b;
	cr_assert(st_wait_fd(fd, POLLIN, ST_WAIT_MS) & POLLIN, "no end of file within %d ms",
		  ST_WAIT_MS);
	cr_assert_eq(read(fd, &b, 1), 0, "want end of file");
}

/* A blocking write is read back whole by one blocking read, both ways. */
ST_TEST(stream, blocking_round_trip)
{
	int c, s;
	char buf[64];
	st_pair(&c, &s);
	cr_assert_eq(write(c, "ping", 4), 4);
	cr_assert_eq(read(s, buf, sizeof(buf)), 4);
	cr_assert_arr_eq(buf, "ping", 4);
	cr_assert_eq(write(s, "pong!", 5), 5);
	cr_assert_eq(read(c, buf, sizeof(buf)), 5);
	cr_assert_arr_eq(buf, "pong!", 5);
	close(c);
	close(s);
}

/* One 100-byte write is read as ten 10-byte reads, in order, and nothing
 * is left after them. */
ST_TEST(stream, partial_reads)
{
	int c, s;
	char out[100], in[10];
	st_pair(&c, &s);
	st_pattern_fill(out, sizeof(out), 1, 0);
	cr_assert_eq(write(c, out, sizeof(out)), 100);
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(read(s, in, sizeof(in)), 10, "read %d", i);
		cr_assert_arr_eq(in, out + 10 * i, 10, "read %d has the wrong bytes", i);
	}
	cr_assert_eq(recv(s, in, sizeof(in), MSG_DONTWAIT), -1);
	cr_assert_eq(errno, EAGAIN);
	close(c);
	close(s);
}

#define LARGE (4u << 20)

static int write_large(int fd, void *arg)
{
	(void)arg;
	char *buf = malloc(LARGE);
	ST_CHECK(buf, "malloc");
	st_pattern_fill(buf, LARGE, 2, 0);
	ssize_t n = write(fd, buf, LARGE);
	ST_CHECK(n == (ssize_t)LARGE, "one blocking write of 4 MiB returned %zd (%s)", n,
		 n < 0 ? strerror(errno) : "short");
	free(buf);
	return 0;
}

/* A single blocking write of 4 MiB completes (returns 4 MiB) while the
 * reader takes small bites with pauses, and every byte arrives in order. */
ST_TEST(stream, large_write_slow_reader)
{
	pid_t pid;
	int s = st_peer_start(&pid, write_large, NULL);
	char *buf = malloc(LARGE);
	size_t got = 0;
	int reads = 0;
	cr_assert(buf);
	for (;;) {
		size_t want = LARGE - got < 32768 ? LARGE - got : 32768;
		ssize_t r = read(s, buf + got, want ? want : 1);
		cr_assert(r >= 0, "read: %s", strerror(errno));
		if (r == 0)
			break;
		got += (size_t)r;
		cr_assert(got <= LARGE, "more than was written");
		if (++reads % 4 == 0)
			st_sleep_ms(1);
	}
	cr_assert_eq(got, LARGE, "got %zu bytes", got);
	long bad = st_pattern_check(buf, LARGE, 2, 0);
	cr_assert_eq(bad, -1, "wrong byte at offset %ld", bad);
	free(buf);
	st_assert_child_ok(pid);
	close(s);
}

/* read and recv on an empty non-blocking socket fail with EAGAIN, and
 * return the data once it has come. */
ST_TEST(stream, nonblocking_read_empty)
{
	int c, s;
	char b[8];
	st_pair(&c, &s);
	st_set_nonblock(s, 1);
	cr_assert_eq(read(s, b, sizeof(b)), -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(recv(s, b, sizeof(b), 0), -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(write(c, "x", 1), 1);
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(read(s, b, sizeof(b)), 1);
	cr_assert_eq(b[0], 'x');
	cr_assert_eq(read(s, b, sizeof(b)), -1);
	cr_assert_eq(errno, EAGAIN);
	close(c);
	close(s);
}

/* Non-blocking writes succeed until the connection is full, then fail with
 * EAGAIN; once the peer has read everything the socket polls writable and
 * writes work again. */
ST_TEST(stream, nonblocking_write_full_then_drained)
{
	int c, s;
	enum { CHUNK = 65536 };
	static char buf[CHUNK];
	size_t total = 0;
	ssize_t r;
	st_pair(&c, &s);
	st_set_nonblock(c, 1);
	for (;;) {
		st_pattern_fill(buf, CHUNK, 3, total);
		r = write(c, buf, CHUNK);
		if (r < 0)
			break;
		total += (size_t)r;
		cr_assert(total < (1u << 30), "1 GiB written without EAGAIN");
	}
	cr_assert_eq(errno, EAGAIN, "write failed with %s", strerror(errno));
	cr_assert_gt(total, 0);
	cr_assert_eq(write(c, buf, 1), -1, "a full socket accepted another byte");
	cr_assert_eq(errno, EAGAIN);

	for (size_t got = 0; got < total;) {
		size_t want = total - got < CHUNK ? total - got : CHUNK;
		r = read(s, buf, want);
		cr_assert_gt(r, 0, "read after %zu of %zu bytes: %s", got, total,
			     r < 0 ? strerror(errno) : "end of file");
		long bad = st_pattern_check(buf, (size_t)r, 3, got);
		cr_assert_eq(bad, -1, "wrong byte at %zu", got + (size_t)bad);
		got += (size_t)r;
	}
	cr_assert(st_wait_fd(c, POLLOUT, ST_WAIT_MS) & POLLOUT, "not writable after the drain");
	cr_assert_eq(write(c, "after", 5), 5);
	cr_assert_eq(st_read_full(s, buf, 5), 5);
	cr_assert_arr_eq(buf, "after", 5);
	close(c);
	close(s);
}

/* recv(MSG_PEEK) returns the data without consuming it: the next peek and
 * the next read see the same bytes. */
ST_TEST(stream, msg_peek)
{
	int c, s;
	char b[64];
	st_pair(&c, &s);
	cr_assert_eq(write(c, "hello world", 11), 11);
	cr_assert_eq(recv(s, b, sizeof(b), MSG_PEEK), 11);
	cr_assert_arr_eq(b, "hello world", 11);
	cr_assert_eq(recv(s, b, sizeof(b), MSG_PEEK), 11);
	cr_assert_eq(recv(s, b, 5, 0), 5);
	cr_assert_arr_eq(b, "hello", 5);
	cr_assert_eq(recv(s, b, sizeof(b), MSG_PEEK), 6);
	cr_assert_arr_eq(b, " world", 6);
	cr_assert_eq(read(s, b, sizeof(b)), 6);
	cr_assert_arr_eq(b, " world", 6);
	cr_assert_eq(recv(s, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT), -1);
	cr_assert_eq(errno, EAGAIN);
	close(c);
	close(s);
}

/* MSG_DONTWAIT makes one recv on a blocking socket non-blocking (EAGAIN when
 * empty) without changing the socket's O_NONBLOCK flag. */
ST_TEST(stream, msg_dontwait_on_blocking_socket)
{
	int c, s;
	char b[8];
	st_pair(&c, &s);
	cr_assert_eq(recv(s, b, sizeof(b), MSG_DONTWAIT), -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(fcntl(s, F_GETFL) & O_NONBLOCK, 0, "MSG_DONTWAIT set O_NONBLOCK");
	cr_assert_eq(send(c, "dw", 2, MSG_DONTWAIT), 2);
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(recv(s, b, sizeof(b), MSG_DONTWAIT), 2);
	cr_assert_arr_eq(b, "dw", 2);
	close(c);
	close(s);
}

static int write_three_pieces(int fd, void *arg)
{
	(void)arg;
	char buf[100];
	for (int i = 0; i < 3; i++) {
		st_sleep_ms(40);
		st_pattern_fill(buf, sizeof(buf), 4, 100u * (unsigned)i);
		ST_CHECK(write(fd, buf, sizeof(buf)) == 100, "write %d", i);
	}
	char b;
	ST_CHECK(read(fd, &b, 1) == 0, "want end of file");
	return 0;
}

/* recv(MSG_WAITALL) waits until the full length has come, across several
 * writes spaced in time. */
ST_TEST(stream, msg_waitall)
{
	pid_t pid;
	char buf[300];
	int s = st_peer_start(&pid, write_three_pieces, NULL);
	uint64_t t0 = st_now_us();
	cr_assert_eq(recv(s, buf, sizeof(buf), MSG_WAITALL), 300);
	uint64_t waited = st_now_us() - t0;
	cr_assert_eq(st_pattern_check(buf, sizeof(buf), 4, 0), -1);
	cr_assert_geq(waited, 60000, "returned after %lu us, before the last write",
		      (unsigned long)waited);
	close(s);
	st_assert_child_ok(pid);
}

/* After the peer has closed, send(MSG_NOSIGNAL) soon fails with EPIPE and no
 * SIGPIPE is raised (the first send may still succeed: the peer answers it
 * with a reset). */
ST_TEST(stream, msg_nosignal_epipe)
{
	int c, s, i;
	ssize_t r = 0;
	st_pair(&c, &s);
	catch_sigpipe();
	close(s);
	await_eof(c);
	for (i = 0; i < 100; i++) {
		r = send(c, "x", 1, MSG_NOSIGNAL);
		if (r < 0)
			break;
		st_sleep_ms(5);
	}
	cr_assert_eq(r, -1, "100 sends to a closed peer all succeeded");
	cr_assert_eq(errno, EPIPE, "send failed with %s", strerror(errno));
	cr_assert_eq(sigpipes, 0, "SIGPIPE raised despite MSG_NOSIGNAL");
	close(c);
}

/* After the peer has closed, write soon fails with EPIPE and raises exactly
 * one SIGPIPE (for the failing write). */
ST_TEST(stream, sigpipe_on_write_after_peer_close)
{
	int c, s, i;
	ssize_t r = 0;
	st_pair(&c, &s);
	catch_sigpipe();
	close(s);
	await_eof(c);
	for (i = 0; i < 100; i++) {
		r = write(c, "x", 1);
		if (r < 0)
			break;
		cr_assert_eq(sigpipes, 0, "SIGPIPE on a write that succeeded");
		st_sleep_ms(5);
	}
	cr_assert_eq(r, -1, "100 writes to a closed peer all succeeded");
	cr_assert_eq(errno, EPIPE, "write failed with %s", strerror(errno));
	cr_assert_eq(sigpipes, 1, "%d SIGPIPEs", (int)sigpipes);
	close(c);
}

/* The first write after the peer has closed succeeds, as TCP sends it and
 * the closed peer answers with a reset; the write after that fails with
 * EPIPE. */
ST_TEST(stream, first_write_after_peer_close_succeeds)
{
	int c, s;
	st_pair(&c, &s);
	catch_sigpipe();
	close(s);
	await_eof(c);
	cr_assert_eq(send(c, "first", 5, MSG_NOSIGNAL), 5, "first write after close: %s",
		     strerror(errno));
	cr_assert(st_wait_fd(c, POLLERR | POLLHUP, ST_WAIT_MS) & (POLLERR | POLLHUP),
		  "no reset reported after the first write");
	cr_assert_eq(send(c, "second", 6, MSG_NOSIGNAL), -1, "second write after close");
	cr_assert(errno == EPIPE || errno == ECONNRESET, "second write failed with %s",
		  strerror(errno));
	cr_assert_eq(sigpipes, 0);
	close(c);
}

/* A peer that closes with data it has not read resets the connection: the
 * sender's next read fails with ECONNRESET (then reads end of file), and
 * its writes fail. */
ST_TEST(stream, close_with_unread_data_resets)
{
	int c, s;
	char b[8];
	st_pair(&c, &s);
	catch_sigpipe();
	cr_assert_eq(write(c, "unread!", 7), 7);
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	close(s);
	cr_assert(st_wait_fd(c, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(read(c, b, sizeof(b)), -1, "read after the peer's reset");
	cr_assert_eq(errno, ECONNRESET, "read failed with %s", strerror(errno));
	cr_assert_eq(read(c, b, sizeof(b)), 0);
	cr_assert_eq(send(c, "x", 1, MSG_NOSIGNAL), -1, "write after the peer's reset");
	cr_assert(errno == EPIPE || errno == ECONNRESET, "write failed with %s", strerror(errno));
	close(c);
}

/* The peer of reset_stops_a_streaming_sender: read a little, then close
 * with the rest unread. */
static int read_some_then_close(int fd, void *arg)
{
	(void)arg;
	static char b[65536];
	ST_CHECK(st_read_full(fd, b, sizeof(b)) == (ssize_t)sizeof(b), "read: %s", strerror(errno));
	return 0; /* the socket closes with the child, unread data in it */
}

/* A sender streaming to a peer that closes in the middle of receiving
 * does not finish without an error: within a bounded number of sends one
 * fails with ECONNRESET or EPIPE. */
ST_TEST(stream, reset_stops_a_streaming_sender)
{
	pid_t pid;
	static char b[65536];
	catch_sigpipe();
	int s = st_peer_start(&pid, read_some_then_close, NULL);
	ssize_t r = 0;
	int i;
	for (i = 0; i < 2000; i++) {
		r = send(s, b, sizeof(b), MSG_NOSIGNAL);
		if (r < 0)
			break;
	}
	cr_assert_eq(r, -1, "%d sends of 64 KiB to a peer that closed all succeeded", i);
	cr_assert(errno == EPIPE || errno == ECONNRESET, "send failed with %s", strerror(errno));
	close(s);
	st_assert_child_ok(pid);
}

/* shutdown(SHUT_WR): the peer reads all the data and then end of file; the
 * half-closed side can no longer write (EPIPE) but still reads what the
 * peer sends, and then the peer's end of file. */
ST_TEST(stream, shutdown_wr_half_close)
{
	int c, s;
	char out[1000], in[1000];
	st_pair(&c, &s);
	st_pattern_fill(out, sizeof(out), 5, 0);
	cr_assert_eq(write(c, out, sizeof(out)), 1000);
	cr_assert_eq(shutdown(c, SHUT_WR), 0);
	cr_assert_eq(st_read_full(s, in, sizeof(in)), 1000);
	cr_assert_arr_eq(in, out, 1000);
	cr_assert_eq(read(s, in, sizeof(in)), 0);
	cr_assert_eq(read(s, in, sizeof(in)), 0, "end of file is not sticky");
	cr_assert_eq(send(c, "x", 1, MSG_NOSIGNAL), -1);
	cr_assert_eq(errno, EPIPE);
	cr_assert_eq(write(s, "after", 5), 5);
	cr_assert_eq(st_read_full(c, in, 5), 5);
	cr_assert_arr_eq(in, "after", 5);
	close(s);
	cr_assert_eq(read(c, in, sizeof(in)), 0);
	close(c);
}

/* shutdown(SHUT_RD) with nothing queued: reads return 0 at once. */
ST_TEST(stream, shutdown_rd_reads_eof)
{
	int c, s;
	char b[8];
	st_pair(&c, &s);
	cr_assert_eq(shutdown(s, SHUT_RD), 0);
	cr_assert_eq(read(s, b, sizeof(b)), 0);
	cr_assert_eq(write(s, "w", 1), 1, "writing still works after SHUT_RD");
	cr_assert_eq(read(c, b, sizeof(b)), 1);
	close(c);
	close(s);
}

static int hold_open_until_go(void *arg)
{
	int *go = arg;
	st_await(go[0], ST_WAIT_MS);
	return 0;
}

/* shutdown(SHUT_RDWR) ends the connection for the peer (end of file) even
 * while another process still holds a copy of the socket. */
ST_TEST(stream, shutdown_rdwr_with_copy_in_child)
{
	int c, s, go[2];
	char b[8];
	st_pair(&c, &s);
	cr_assert_eq(pipe(go), 0);
	pid_t pid = st_fork(hold_open_until_go, go);
	cr_assert_eq(shutdown(s, SHUT_RDWR), 0);
	await_eof(c);
	cr_assert_eq(read(s, b, sizeof(b)), 0, "a shut-down socket reads end of file");
	st_post(go[1]);
	st_assert_child_ok(pid);
	close(c);
	close(s);
}

static int write_then_pause(int fd, void *arg)
{
	(void)arg;
	ST_CHECK(write(fd, "alive", 5) == 5, "write");
	for (;;)
		pause();
}

/* When the peer process is killed (SIGKILL), a blocked read returns 0 or
 * fails with ECONNRESET; it does not hang. */
ST_TEST(stream, peer_killed)
{
	pid_t pid;
	char b[8];
	int s = st_peer_start(&pid, write_then_pause, NULL);
	cr_assert_eq(st_read_full(s, b, 5), 5);
	cr_assert_arr_eq(b, "alive", 5);
	cr_assert_eq(kill(pid, SIGKILL), 0);
	cr_assert_eq(st_wait(pid, ST_WAIT_MS), 128 + SIGKILL);
	ssize_t r = read(s, b, sizeof(b));
	cr_assert(r == 0 || (r == -1 && errno == ECONNRESET), "read returned %zd (%s)", r,
		  r < 0 ? strerror(errno) : "data");
	close(s);
}

/* A peer that closes with SO_LINGER {1, 0} resets the connection: a pending
 * read fails with ECONNRESET, then reads return 0. */
ST_TEST(stream, peer_abort_reset)
{
	int c, s;
	char b[8];
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	st_pair(&c, &s);
	cr_assert_eq(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(c);
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(read(s, b, sizeof(b)), -1);
	cr_assert_eq(errno, ECONNRESET, "read failed with %s", strerror(errno));
	cr_assert_eq(read(s, b, sizeof(b)), 0);
	close(s);
}

/* SO_RCVTIMEO: a blocking read with nothing to read fails with EAGAIN after
 * the timeout, not before. */
ST_TEST(stream, so_rcvtimeo)
{
	int c, s;
	char b[8];
	struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
	st_pair(&c, &s);
	cr_assert_eq(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	uint64_t t0 = st_now_us();
	cr_assert_eq(read(s, b, sizeof(b)), -1);
	uint64_t took = st_now_us() - t0;
	cr_assert_eq(errno, EAGAIN, "read failed with %s", strerror(errno));
	cr_assert_geq(took, 95000, "timed out after %lu us", (unsigned long)took);
	cr_assert_lt(took, 2000000, "timed out after %lu us", (unsigned long)took);
	close(c);
	close(s);
}

/* read and write of zero bytes return 0 at once and send nothing. */
ST_TEST(stream, zero_length_io)
{
	int c, s;
	char b[8];
	st_pair(&c, &s);
	cr_assert_eq(write(c, b, 0), 0);
	cr_assert_eq(send(c, b, 0, 0), 0);
	cr_assert_eq(read(s, b, 0), 0, "a zero-length read blocked or failed");
	cr_assert_eq(st_wait_fd(s, POLLIN, 50), 0, "a zero-length write made data");
	cr_assert_eq(write(c, "z", 1), 1);
	cr_assert_eq(read(s, b, sizeof(b)), 1);
	close(c);
	close(s);
}

/* A non-blocking connect to a port with no listener reports EINPROGRESS;
 * poll then says POLLOUT|POLLERR|POLLHUP, SO_ERROR reads ECONNREFUSED
 * once, then 0. */
ST_TEST(stream, nonblocking_connect_refused)
{
	uint16_t port = st_closed_port();
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int err = -1;
	socklen_t len = sizeof(err);
	cr_assert(fd >= 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), -1);
	cr_assert_eq(errno, EINPROGRESS, "connect failed with %s", strerror(errno));
	short re = st_wait_fd(fd, POLLOUT, ST_WAIT_MS);
	cr_assert_eq(re, POLLOUT | POLLERR | POLLHUP, "revents %#x", re);
	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	cr_assert_eq(err, ECONNREFUSED, "SO_ERROR %d (%s)", err, strerror(err));
	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	cr_assert_eq(err, 0, "SO_ERROR is cleared by reading it");
	close(fd);
}

/* A blocking connect to a port with no listener fails with ECONNREFUSED. */
ST_TEST(stream, blocking_connect_refused)
{
	uint16_t port = st_closed_port();
	cr_assert_eq(st_connect(port), -1);
	cr_assert_eq(errno, ECONNREFUSED, "connect failed with %s", strerror(errno));
}

/* A non-blocking connect that succeeds polls writable with SO_ERROR 0. */
ST_TEST(stream, nonblocking_connect_ok)
{
	uint16_t port;
	int l = st_listen(&port);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int err = -1;
	socklen_t len = sizeof(err);
	int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	cr_assert(r == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
	cr_assert_eq(st_wait_fd(fd, POLLOUT, ST_WAIT_MS), POLLOUT);
	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	cr_assert_eq(err, 0);
	int s = st_accept(l);
	cr_assert_eq(write(fd, "nb", 2), 2);
	char b[2];
	cr_assert_eq(st_read_full(s, b, 2), 2);
	close(fd);
	close(s);
	close(l);
}

static int same_addr(const struct sockaddr_in *x, const struct sockaddr_in *y)
{
	return x->sin_family == y->sin_family && x->sin_port == y->sin_port &&
	       x->sin_addr.s_addr == y->sin_addr.s_addr;
}

/* getsockname on one end equals getpeername on the other; the accepted
 * socket has the listener's port; both are 127.0.0.1. */
ST_TEST(stream, names_agree)
{
	uint16_t port;
	int l = st_listen(&port);
	int c = st_connect(port);
	cr_assert(c >= 0);
	struct sockaddr_in peer_from_accept;
	socklen_t plen = sizeof(peer_from_accept);
	cr_assert(st_wait_fd(l, POLLIN, ST_WAIT_MS) & POLLIN);
	int s = accept(l, (struct sockaddr *)&peer_from_accept, &plen);
	cr_assert(s >= 0);
	struct sockaddr_in cs, cp, ss, sp;
	socklen_t n1 = sizeof(cs), n2 = sizeof(cp), n3 = sizeof(ss), n4 = sizeof(sp);
	cr_assert_eq(getsockname(c, (struct sockaddr *)&cs, &n1), 0);
	cr_assert_eq(getpeername(c, (struct sockaddr *)&cp, &n2), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&ss, &n3), 0);
	cr_assert_eq(getpeername(s, (struct sockaddr *)&sp, &n4), 0);
	cr_assert(n1 == sizeof(cs) && n2 == sizeof(cs) && n3 == sizeof(cs) && n4 == sizeof(cs) &&
		  plen == sizeof(cs));
	cr_assert(same_addr(&cs, &sp), "client name != server's peer");
	cr_assert(same_addr(&cp, &ss), "client's peer != server name");
	cr_assert(same_addr(&peer_from_accept, &cs), "accept's address != client name");
	cr_assert_eq(ntohs(ss.sin_port), port);
	cr_assert_eq(ss.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	cr_assert_eq(cs.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	close(c);
	close(s);
	close(l);
}

static int client_banner(int fd, void *arg)
{
	(void)arg;
	char b[32];
	ST_CHECK(st_read_full(fd, b, 11) == 11, "banner");
	ST_CHECK(memcmp(b, "220 hello\r\n", 11) == 0, "banner bytes");
	ST_CHECK(write(fd, "QUIT\r\n", 6) == 6, "write");
	ST_CHECK(read(fd, b, sizeof(b)) == 0, "want end of file");
	return 0;
}

/* A server that speaks first on a freshly accepted connection: the client,
 * which only reads, gets the banner; then the exchange goes on. */
ST_TEST(stream, server_speaks_first)
{
	pid_t pid;
	char b[8];
	int s = st_peer_start(&pid, client_banner, NULL);
	cr_assert_eq(write(s, "220 hello\r\n", 11), 11);
	cr_assert_eq(st_read_full(s, b, 6), 6);
	cr_assert_arr_eq(b, "QUIT\r\n", 6);
	close(s);
	st_assert_child_ok(pid);
}

/* A client that connects, writes and closes before the server accepts: the
 * server still accepts the connection and reads all of it, then end of
 * file. */
ST_TEST(stream, client_gone_before_accept)
{
	uint16_t port;
	char out[5000], in[6000];
	int l = st_listen(&port);
	int c = st_connect(port);
	cr_assert(c >= 0);
	st_pattern_fill(out, sizeof(out), 6, 0);
	cr_assert_eq(write(c, out, sizeof(out)), (ssize_t)sizeof(out));
	close(c);
	st_sleep_ms(20);
	int s = st_accept(l);
	cr_assert_eq(st_read_to_eof(s, in, sizeof(in)), (ssize_t)sizeof(out));
	cr_assert_arr_eq(in, out, sizeof(out));
	close(s);
	close(l);
}

/* A connection still in the accept queue when the listener is closed is
 * reset: the client's read fails with ECONNRESET. */
ST_TEST(stream, listener_closed_with_pending_connection)
{
	uint16_t port;
	char b[8];
	int l = st_listen(&port);
	int c = st_connect(port);
	cr_assert(c >= 0);
	close(l);
	cr_assert(st_wait_fd(c, POLLIN, ST_WAIT_MS) & POLLIN, "client not told");
	cr_assert_eq(read(c, b, sizeof(b)), -1);
	cr_assert_eq(errno, ECONNRESET, "read failed with %s", strerror(errno));
	close(c);
}

struct closing_listener {
	int l;
	uint16_t port;
};

static int connect_while_closing(void *arg)
{
	struct closing_listener *cl = arg;
	char b[8];
	close(cl->l); /* only the parent's copy may keep it open */
	int fd = st_connect(cl->port);
	if (fd < 0) {
		/* Refused (the RST came before the handshake finished), or
		 * reset (it finished, and the listener's RST came before the
		 * blocked connect() returned: Linux then reports ECONNRESET). */
		ST_CHECK(errno == ECONNREFUSED || errno == ECONNRESET, "connect failed with %s",
			 strerror(errno));
		return 0;
	}
	/* One byte: a connection whose handshake the closing listener never
	 * saw through (its ACK dropped) is only reset when it sends. */
	(void)!send(fd, "x", 1, MSG_NOSIGNAL);
	ST_CHECK(st_wait_fd(fd, POLLIN, ST_WAIT_MS) & (POLLIN | POLLHUP | POLLERR),
		 "connection to a closed listener did not end");
	ssize_t r = read(fd, b, sizeof(b));
	ST_CHECK(r == 0 || (r == -1 && (errno == ECONNRESET || errno == EPIPE)),
		 "read returned %zd (%s)", r, r < 0 ? strerror(errno) : "data");
	close(fd);
	return 0;
}

/* Closing a listener while a client is connecting to it: no crash, and the
 * client gets ECONNREFUSED or ECONNRESET from connect, or a connection
 * that ends (0 or ECONNRESET). */
ST_TEST(stream, listener_closed_while_connecting)
{
	for (int i = 0; i < 20; i++) {
		struct closing_listener cl;
		cl.l = st_listen(&cl.port);
		pid_t pid = st_fork(connect_while_closing, &cl);
		if (i % 2)
			st_sleep_ms(1);
		close(cl.l);
		st_assert_child_ok(pid);
	}
}

#define ROUNDS 50

static int request_response_client(void *arg)
{
	struct closing_listener *cl = arg;
	char req[100], resp[1100];
	close(cl->l);
	for (int i = 0; i < ROUNDS; i++) {
		int fd = st_connect(cl->port);
		ST_CHECK(fd >= 0, "round %d: connect: %s", i, strerror(errno));
		st_pattern_fill(req, sizeof(req), 60, (uint64_t)i);
		if (i % 2) /* let the server wait for the request, or not */
			st_sleep_ms(1);
		ST_CHECK(write(fd, req, sizeof(req)) == sizeof(req), "round %d: write", i);
		ssize_t n = st_read_to_eof(fd, resp, sizeof(resp));
		ST_CHECK(n == 1000, "round %d: response of %zd bytes then end of file, want 1000 (%s)",
			 i, n, n < 0 ? strerror(errno) : "short");
		ST_CHECK(st_pattern_check(resp, 1000, 61, (uint64_t)i) == -1, "round %d: bytes", i);
		close(fd);
	}
	return 0;
}

/* A server that has read the whole request closes with a FIN, not a reset:
 * 50 times over, the client gets the whole response and then end of file
 * (0, never ECONNRESET). */
ST_TEST(stream, close_after_reading_all_sends_fin)
{
	struct closing_listener cl;
	char req[100], resp[1000];
	cl.l = st_listen(&cl.port);
	pid_t pid = st_fork(request_response_client, &cl);
	for (int i = 0; i < ROUNDS; i++) {
		int s = st_accept(cl.l);
		cr_assert_eq(st_read_full(s, req, sizeof(req)), (ssize_t)sizeof(req), "round %d", i);
		cr_assert_eq(st_pattern_check(req, sizeof(req), 60, (uint64_t)i), -1, "round %d", i);
		st_pattern_fill(resp, sizeof(resp), 61, (uint64_t)i);
		cr_assert_eq(write(s, resp, sizeof(resp)), (ssize_t)sizeof(resp), "round %d", i);
		close(s);
	}
	st_assert_child_ok(pid);
	close(cl.l);
}
