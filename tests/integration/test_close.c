/*
 * test_close.c - the end of accelerated connections: half-close, close with
 * data in flight, writes to a closed peer, peers that die, and what the
 * monitor reclaims.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static struct t_monitor mon;
static xio_listener *lis;

static void setup(void)
{
	t_suite_up(&mon, &lis, 64);
}

static void teardown(void)
{
	t_suite_down(&mon, &lis);
}

TestSuite(close, .init = setup, .fini = teardown);

static pid_t pair(xio_conn **server, int (*fn)(xio_conn *, void *), void *arg)
{
	return t_pair_accelerated(lis, server, 0, fn, arg);
}

static void reap(pid_t pid, int timeout_ms)
{
	t_reap(pid, timeout_ms);
}

/* Read exactly len bytes of pattern seed from position 0, then expect end
 * of file (0) or one of the errors in ok_errs (0-terminated); fails the
 * test otherwise. */
static void expect_data_then_end(xio_conn *c, uint64_t seed, size_t len, const int *ok_errs)
{
	char *buf = malloc(len + 1);
	ssize_t r = t_read_full(c, buf, len);
	cr_assert_eq(r, (ssize_t)len, "read %zu bytes: %zd (%s)", len, r, xio_strerror((int)r));
	cr_assert(t_pattern_check(buf, len, seed, 0), "the data read differs from what was sent");
	r = xio_read(c, buf, len + 1);
	int ok = r == 0;
	for (; ok_errs && *ok_errs; ok_errs++)
		ok |= r == *ok_errs;
	cr_assert(ok, "after the data: read returned %zd (%s), want end of file", r,
		  xio_strerror((int)r));
	free(buf);
}

/* --- half close -------------------------------------------------------- */

#define HALF_OUT (300 * 1000u)
#define HALF_BACK (200 * 1000u)

static int client_half_close(xio_conn *c, void *arg)
{
	(void)arg;
	char *buf = malloc(HALF_OUT);
	t_pattern_fill(buf, HALF_OUT, 31, 0);
	ssize_t r = xio_write(c, buf, HALF_OUT);
	T_CHECK(r == HALF_OUT, "xio_write: %zd (%s)", r, xio_strerror((int)r));
	int s = xio_shutdown(c, SHUT_WR);
	T_CHECK(s == 0, "xio_shutdown(SHUT_WR): %s", xio_strerror(s));
	r = xio_write(c, buf, 1);
	T_CHECK(r == -EPIPE, "xio_write after SHUT_WR: %zd (%s), want -EPIPE", r,
		xio_strerror((int)r));
	/* The other direction still works. */
	r = t_read_full(c, buf, HALF_BACK);
	T_CHECK(r == HALF_BACK, "read back on the half-closed side: %zd (%s)", r,
		xio_strerror((int)r));
	T_CHECK(t_pattern_check(buf, HALF_BACK, 32, 0), "wrong bytes read back");
	r = xio_read(c, buf, 1);
	T_CHECK(r == 0, "expected end of file, got %zd (%s)", r, xio_strerror((int)r));
	free(buf);
	return 0;
}

/* After xio_shutdown(SHUT_WR) the peer reads all the data then end of file,
 * and can still write back to the half-closed side, which reads it. */
Test(close, shutdown_write_half_close)
{
	xio_conn *c;
	pid_t pid = pair(&c, client_half_close, NULL);
	expect_data_then_end(c, 31, HALF_OUT, NULL);
	char *buf = malloc(HALF_BACK);
	t_pattern_fill(buf, HALF_BACK, 32, 0);
	ssize_t r = xio_write(c, buf, HALF_BACK);
	cr_assert_eq(r, (ssize_t)HALF_BACK, "writing to the half-closed peer: %zd (%s)", r,
		     xio_strerror((int)r));
	free(buf);
	cr_assert_eq(xio_close(c), 0);
	reap(pid, 5000);
}

/* --- close with data pending ------------------------------------------- */

#define PENDING (512 * 1024u)

static int client_write_close(xio_conn *c, void *arg)
{
	int *go = arg;
	if (go)
		T_CHECK(t_await(*go, 5000), "no go from the test");
	char *buf = malloc(PENDING);
	t_pattern_fill(buf, PENDING, 41, 0);
	ssize_t r = xio_write(c, buf, PENDING);
	T_CHECK(r == PENDING, "xio_write: %zd (%s)", r, xio_strerror((int)r));
	free(buf);
	return 0; /* t_fork_client closes c, then the process exits */
}

/* xio_close with unread data in the channel: the peer (reading only after
 * the closer exited) gets all the data, then end of file. */
Test(close, close_with_data_pending)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	xio_conn *c;
	pid_t pid = pair(&c, client_write_close, &p[0]);
	t_post(p[1]); /* both ends are paired: write and close now */
	reap(pid, 5000);
	expect_data_then_end(c, 41, PENDING, NULL);
	cr_assert_eq(xio_close(c), 0);
	close(p[0]);
	close(p[1]);
}

/* A client that connects, writes and closes (and exits) before the server
 * has even accepted: the server end is still paired and reads all the data,
 * then end of file. */
Test(close, close_before_accept_keeps_data)
{
	struct sockaddr_in a = t_loopback(t_listener_port(lis));
	pid_t pid = t_fork_client((struct sockaddr *)&a, sizeof(a), 0, 1, client_write_close, NULL);
	reap(pid, 5000);
	struct xio_msg_status st = t_monitor_status();
	xio_conn *c;
	int r = t_accept(lis, &c, 0, 5000);
	cr_assert_eq(r, 0, "accept: %s", xio_strerror(r));
	char *buf = malloc(PENDING);
	ssize_t n = t_read_full(c, buf, PENDING);
	struct xio_msg_status st2 = t_monitor_status();
	cr_assert(xio_conn_is_accelerated(c) && n == (ssize_t)PENDING,
		  "the client's %u bytes are lost: server end accelerated %d, read %zd (%s); "
		  "monitor before accept: conns %u, intents %u; after: conns %u, fallback_total "
		  "%llu -> %llu",
		  PENDING, xio_conn_is_accelerated(c), n, xio_strerror((int)n), st.conns,
		  st.intents, st2.conns, (unsigned long long)st.fallback_total,
		  (unsigned long long)st2.fallback_total);
	cr_assert(t_pattern_check(buf, PENDING, 41, 0), "the data read differs from what was sent");
	n = xio_read(c, buf, 1);
	cr_assert_eq(n, 0, "after the data: read returned %zd (%s), want end of file", n,
		     xio_strerror((int)n));
	free(buf);
	cr_assert_eq(xio_close(c), 0);
}

/* --- write after the peer closed --------------------------------------- */

static int client_close_at_once(xio_conn *c, void *arg)
{
	(void)c;
	T_CHECK(t_await(*(int *)arg, 5000), "no go from the test");
	return 0; /* t_fork_client closes c */
}

/* Writing to a peer that closed fails with -EPIPE within 100 writes (the
 * ones before it succeed fully), and raises no SIGPIPE. */
Test(close, write_after_peer_closed_epipe)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	xio_conn *c;
	pid_t pid = pair(&c, client_close_at_once, &p[0]);
	t_post(p[1]); /* paired on both ends: close now */
	reap(pid, 5000);
	char buf[1024];
	memset(buf, 'x', sizeof(buf));
	ssize_t r = 0;
	int i;
	for (i = 0; i < 100; i++) {
		r = xio_write(c, buf, sizeof(buf));
		if (r < 0)
			break;
		cr_assert_eq(r, (ssize_t)sizeof(buf), "write %d: %zd", i, r);
	}
	cr_assert_eq(r, -EPIPE, "after %d writes: %zd (%s), want -EPIPE", i, r,
		     xio_strerror((int)r));
	cr_assert_eq(xio_close(c), 0);
	close(p[0]);
	close(p[1]);
}

/* --- peer killed ------------------------------------------------------- */

#define KILLED_SENT (256 * 1024u)

static int client_write_then_hang(xio_conn *c, void *arg)
{
	int ready = *(int *)arg;
	char *buf = malloc(KILLED_SENT);
	t_pattern_fill(buf, KILLED_SENT, 51, 0);
	ssize_t r = xio_write(c, buf, KILLED_SENT);
	T_CHECK(r == KILLED_SENT, "xio_write: %zd (%s)", r, xio_strerror((int)r));
	t_post(ready);
	pause(); /* until SIGKILL (or the watchdog) */
	return 0;
}

/* A peer killed (SIGKILL) after writing: the reader gets everything it had
 * sent, then end of file or -ECONNRESET; the monitor then holds no
 * connection and only this process. */
Test(close, peer_killed_mid_stream)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	xio_conn *c;
	pid_t pid = pair(&c, client_write_then_hang, &p[1]);
	cr_assert(t_await(p[0], 5000), "the client did not finish writing");
	cr_assert_eq(kill(pid, SIGKILL), 0);
	int st = t_wait(pid, 5000);
	cr_assert_eq(st, 128 + SIGKILL, "client exit status %d", st);
	static const int reset[] = { -ECONNRESET, 0 };
	expect_data_then_end(c, 51, KILLED_SENT, reset);
	cr_assert_eq(xio_close(c), 0);
	struct xio_msg_status s = t_monitor_settle(1);
	cr_assert(s.conns == 0 && s.procs == 1 && s.intents == 0,
		  "monitor holds conns %u, procs %u (want 1: this process), intents %u", s.conns,
		  s.procs, s.intents);
	close(p[0]);
	close(p[1]);
}

/* --- a blocked reader and the peer's close ----------------------------- */

static int client_blocked_reader(xio_conn *c, void *arg)
{
	(void)arg;
	char b;
	uint64_t t0 = t_now_ms();
	ssize_t r = xio_read(c, &b, 1);
	uint64_t ms = t_now_ms() - t0;
	struct xio_conn_stats st;
	xio_conn_stats(c, &st);
	T_CHECK(r == 0, "blocked read returned %zd (%s) after %llu ms, want end of file", r,
		xio_strerror((int)r), (unsigned long long)ms);
	T_CHECK(st.sleeps >= 1, "the reader never slept in the kernel (sleeps %llu, %llu ms)",
		(unsigned long long)st.sleeps, (unsigned long long)ms);
	T_CHECK(ms < 3000, "woken only after %llu ms", (unsigned long long)ms);
	return 0;
}

/* A reader blocked in xio_read (asleep in the kernel) is woken by the
 * peer's xio_close and returns end of file within a bounded time. */
Test(close, blocked_reader_woken_by_close)
{
	xio_conn *c;
	pid_t pid = pair(&c, client_blocked_reader, NULL);
	usleep(300 * 1000); /* long past the spin and yield phases */
	cr_assert_eq(xio_close(c), 0);
	reap(pid, 5000);
}

/* --- a process holding many connections dies ---------------------------- */

#define MANY 20

struct many {
	uint16_t port;
	int port_pipe; /* the server's listening port goes here */
	int ready;     /* pipe: one byte from each side once all MANY are up */
};

static int server_many(void *arg)
{
	struct many *m = arg;
	xio_conn *c[MANY];
	xio_listener *l;
	alarm(30);
	struct sockaddr_in a = t_loopback(0);
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), MANY, 0);
	T_CHECK(r == 0, "xio_listen: %s", xio_strerror(r));
	uint16_t port = t_listener_port(l);
	T_CHECK(write(m->port_pipe, &port, sizeof(port)) == sizeof(port), "write port");
	for (int i = 0; i < MANY; i++) {
		r = t_accept(l, &c[i], 0, 5000);
		T_CHECK(r == 0, "accept %d: %s", i, xio_strerror(r));
		T_CHECK(xio_conn_is_accelerated(c[i]), "server end %d not accelerated", i);
	}
	t_post(m->ready);
	pause(); /* until SIGKILL */
	return 0;
}

static int client_many(void *arg)
{
	struct many *m = arg;
	struct sockaddr_in a = t_loopback(m->port);
	xio_conn *c[MANY];
	char b;
	alarm(30);
	for (int i = 0; i < MANY; i++) {
		int r = xio_connect(&c[i], (struct sockaddr *)&a, sizeof(a), 0);
		T_CHECK(r == 0, "connect %d: %s", i, xio_strerror(r));
		T_CHECK(xio_conn_is_accelerated(c[i]), "client end %d not accelerated", i);
	}
	t_post(m->ready);
	/* After the server's death every connection ends; then exit without
	 * closing anything, as a crash would. */
	for (int i = 0; i < MANY; i++) {
		ssize_t r = xio_read(c[i], &b, 1);
		T_CHECK(r == 0 || r == -ECONNRESET, "connection %d: read %zd (%s)", i, r,
			xio_strerror((int)r));
		r = xio_write(c[i], &b, 1);
		T_CHECK(r == -EPIPE || r == -ECONNRESET, "connection %d: write %zd (%s)", i, r,
			xio_strerror((int)r));
	}
	return 0;
}

/* SIGKILL of a process holding 20 accelerated connections: its peers see
 * every connection end, and once the peer process is gone too the monitor
 * holds no connection, listener or intent. */
Test(close, killed_process_with_many_connections_reclaimed)
{
	int p[2], pp[2];
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(pipe(pp), 0);
	/* Only the two children take part: no listener of ours. */
	xio_listener_close(lis);
	lis = NULL;
	struct many m = { .port_pipe = pp[1], .ready = p[1] };
	pid_t server = t_fork(server_many, &m);
	struct pollfd pf = { .fd = pp[0], .events = POLLIN };
	cr_assert(poll(&pf, 1, 5000) == 1 && read(pp[0], &m.port, sizeof(m.port)) == sizeof(m.port),
		  "the server child did not say its port");
	pid_t client = t_fork(client_many, &m);
	cr_assert(t_await(p[0], 10000) && t_await(p[0], 10000), "connections not set up");
	struct xio_msg_status s = t_monitor_status();
	cr_assert_eq(s.conns, MANY, "monitor holds %u connections, want %d", s.conns, MANY);
	cr_assert_eq(kill(server, SIGKILL), 0);
	int st = t_wait(server, 5000);
	cr_assert_eq(st, 128 + SIGKILL, "server exit status %d", st);
	st = t_wait(client, 10000);
	cr_assert_eq(st, 0, "client exited with %d (see its stderr)", st);
	s = t_monitor_settle(1);
	cr_assert(s.conns == 0 && s.procs == 1 && s.intents == 0 && s.listeners == 0,
		  "monitor holds conns %u, procs %u (want 1), intents %u, listeners %u", s.conns,
		  s.procs, s.intents, s.listeners);
	close(p[0]);
	close(p[1]);
	close(pp[0]);
	close(pp[1]);
}

/* --- a blocked writer and the peer's end --------------------------------- */

static int client_blocked_writer(xio_conn *c, void *arg)
{
	int ready = *(int *)arg;
	size_t len = 8u << 20; /* several times the channel */
	char *buf = calloc(1, len);
	t_post(ready);
	uint64_t t0 = t_now_ms();
	ssize_t r = xio_write(c, buf, len);
	uint64_t ms = t_now_ms() - t0;
	struct xio_conn_stats st;
	xio_conn_stats(c, &st);
	/* Blocking writes report the bytes queued before the error, if any. */
	T_CHECK(r == -EPIPE || r == -ECONNRESET || (r > 0 && (size_t)r < len),
		"blocked xio_write returned %zd (%s) after %llu ms (tx_bytes %llu, sleeps %llu)", r,
		xio_strerror((int)r), (unsigned long long)ms, (unsigned long long)st.tx_bytes,
		(unsigned long long)st.sleeps);
	T_CHECK(st.sleeps >= 1, "the writer never slept in the kernel");
	/* Whatever the first call returned, the next one fails. */
	r = xio_write(c, buf, 1);
	T_CHECK(r == -EPIPE || r == -ECONNRESET, "second write returned %zd (%s)", r,
		xio_strerror((int)r));
	free(buf);
	return 0;
}

/* A writer asleep on a full channel is woken by the reader's xio_close and
 * fails with -EPIPE (or returns the short count it had queued). */
Test(close, blocked_writer_woken_by_close)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	xio_conn *c;
	pid_t pid = pair(&c, client_blocked_writer, &p[1]);
	cr_assert(t_await(p[0], 5000));
	usleep(300 * 1000); /* the channel is full and the writer asleep */
	cr_assert_eq(xio_close(c), 0);
	reap(pid, 5000);
	close(p[0]);
	close(p[1]);
}

static int client_never_reads(xio_conn *c, void *arg)
{
	(void)c;
	t_post(*(int *)arg);
	pause(); /* never reads; until SIGKILL */
	return 0;
}

/* Kill *arg after 300 ms: long enough for the writer to fill the channel
 * and fall asleep. */
static int kill_later(void *arg)
{
	usleep(300 * 1000);
	return kill(*(pid_t *)arg, SIGKILL) == 0 ? 0 : 1;
}

/* A writer asleep on a full channel is woken when the reading process is
 * killed, and fails with -EPIPE or -ECONNRESET. */
Test(close, blocked_writer_woken_by_peer_death)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	struct sockaddr_in a = t_loopback(t_listener_port(lis));
	/* Here the server end writes and the client process is the one killed. */
	pid_t pid =
		t_fork_client((struct sockaddr *)&a, sizeof(a), 0, 1, client_never_reads, &p[1]);
	xio_conn *c;
	int r = t_accept(lis, &c, 0, 5000);
	cr_assert_eq(r, 0, "accept: %s", xio_strerror(r));
	cr_assert(xio_conn_is_accelerated(c));
	cr_assert(t_await(p[0], 5000));
	pid_t killer = t_fork(kill_later, &pid);
	size_t len = 8u << 20;
	char *buf = calloc(1, len);
	uint64_t t0 = t_now_ms();
	ssize_t w = xio_write(c, buf, len);
	uint64_t ms = t_now_ms() - t0;
	struct xio_conn_stats st;
	xio_conn_stats(c, &st);
	cr_assert(w == -EPIPE || w == -ECONNRESET || (w > 0 && (size_t)w < len),
		  "blocked xio_write returned %zd (%s) after %llu ms (sleeps %llu)", w,
		  xio_strerror((int)w), (unsigned long long)ms, (unsigned long long)st.sleeps);
	w = xio_write(c, buf, 1);
	cr_assert(w == -EPIPE || w == -ECONNRESET, "second write returned %zd (%s)", w,
		  xio_strerror((int)w));
	free(buf);
	int s = t_wait(pid, 5000);
	cr_assert_eq(s, 128 + SIGKILL, "client exit status %d", s);
	cr_assert_eq(t_wait(killer, 5000), 0);
	xio_close(c);
	close(p[0]);
	close(p[1]);
}
