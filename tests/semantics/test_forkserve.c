/*
 * test_forkserve.c - connections served by forked backends for many
 * request/response rounds, the way PostgreSQL serves them: the postmaster
 * accepts, forks a backend and closes its copy; the backend greets, then
 * reads without blocking until EAGAIN and waits in epoll_wait (a set it
 * made after the fork, holding the socket and a pipe, asked for one event
 * at a time) or in poll; the client (psql, libpq) sends a request and
 * waits for the answer in poll, or in a blocking read, and does a little
 * with each answer before its next request. Every round must be answered,
 * however the waits of the two sides interleave: a backend that sleeps on
 * a request already sent while its client sleeps on the answer hangs both
 * for good (issue 16: compat_postgres hung after some 50 round trips).
 *
 * Each rule serves several connections one after the other, each by a
 * backend of its own, as a postmaster does: a fault that shows in some
 * processes only (those whose wait tokens happen to look one way) then
 * shows in one of them. Pauses of a few milliseconds between some rounds
 * let a shim that parks the quiet members of a wait (XIO_EPOLL_PARK_US,
 * 1 ms by default) do so; a byte on the pipe during a pause (postgres'
 * latch) makes the backend's wait return and wait again while its socket
 * is quiet, which parks it.
 */
#include "sem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#define SESSIONS 8
#define ROUNDS 500
#define MSG_LEN 64
/* The bound on each round, as the client sees it (ms). */
#define ROUND_MS 2000
/* The backend waits a little longer, so that the client reports a hang. */
#define BACKEND_WAIT_MS (ROUND_MS + 1000)
#define REQ_SEED 161
#define ANS_SEED 162
#define GREET_SEED 163
/* Between the greeting and the first request (ms). */
#define FIRST_PAUSE_MS 3
/* What the client does with an answer before its next request (us): more
 * than a wait looks around before it sleeps, so the backend sleeps in
 * every round. */
#define THINK_US 100

struct forkserve {
	int backend_poll;   /* the backend waits in poll, not epoll_wait */
	int client_read;    /* the client waits in a blocking read, not poll */
	int pause_every;    /* a pause of 2-5 ms before every pause_every-th request */
	int latch;          /* ... with a byte on the pipe 2 ms into it */
	int l;              /* the postmaster's listener */
	uint16_t port;
	int port_r, port_w; /* the postmaster says its port */
	int pipe_r, pipe_w; /* the backends' other fd; the client writes it */
	int s;              /* the accepted connection (the backend's) */
	int session;        /* its number, from 0 */
};

/* Before request k: how long the client pauses (ms), 0 for none. */
static int pause_ms(const struct forkserve *fs, int k)
{
	if (!fs->pause_every || k == 0 || k % fs->pause_every)
		return 0;
	return 2 + (k / fs->pause_every) % 4;
}

/* The client's wait for one message from the backend (round k, -1 for the
 * greeting): in poll then read, or in a blocking read. */
static void await_msg(const struct forkserve *fs, int fd, char *buf, int k, uint64_t slowest)
{
	size_t got = 0;
	while (got < MSG_LEN) {
		if (!fs->client_read) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			int n = poll(&pf, 1, ROUND_MS);
			cr_assert(n == 1 && (pf.revents & POLLIN),
				  "session %d round %d: no answer within %d ms (poll returned %d, "
				  "revents %#x, %zu of %d bytes; slowest round before: %lu us)",
				  fs->session, k, ROUND_MS, n, n == 1 ? pf.revents : 0, got,
				  MSG_LEN, (unsigned long)slowest);
		}
		ssize_t r = read(fd, buf + got, MSG_LEN - got);
		cr_assert(r > 0,
			  "session %d round %d: read after %zu of %d bytes: %s (slowest round "
			  "before: %lu us)",
			  fs->session, k, got, MSG_LEN, r < 0 ? strerror(errno) : "end of file",
			  (unsigned long)slowest);
		got += (size_t)r;
	}
}

/* The client of one session, in the test's process (psql is no child of
 * the postmaster): the greeting, then ROUNDS requests, each answered
 * before the next is sent, each answer within ROUND_MS. */
static void client(const struct forkserve *fs, int fd)
{
	char req[MSG_LEN], ans[MSG_LEN];
	if (fs->client_read) {
		struct timeval tv = { .tv_sec = ROUND_MS / 1000 };
		cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0,
			     "SO_RCVTIMEO: %s", strerror(errno));
	}
	uint64_t slowest = 0;
	/* The backend says it is ready (postgres' ReadyForQuery); the first
	 * request comes a little later, so the backend waits for it. */
	await_msg(fs, fd, ans, -1, 0);
	long bad = st_pattern_check(ans, MSG_LEN, GREET_SEED, 0);
	cr_assert_eq(bad, -1, "session %d: wrong greeting byte at %ld", fs->session, bad);
	st_sleep_ms(FIRST_PAUSE_MS);
	for (int k = 0; k < ROUNDS; k++) {
		int p = pause_ms(fs, k);
		if (p && fs->latch) {
			st_sleep_ms(2);
			cr_assert_eq(write(fs->pipe_w, "l", 1), 1, "latch: %s", strerror(errno));
			st_sleep_ms(p - 1);
		} else if (p) {
			st_sleep_ms(p);
		} else if (k > 0) {
			struct timespec ts = { 0, THINK_US * 1000L };
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		st_pattern_fill(req, MSG_LEN, REQ_SEED, (uint64_t)k * MSG_LEN);
		uint64_t t0 = st_now_us();
		cr_assert_eq(write(fd, req, MSG_LEN), MSG_LEN, "session %d round %d: request: %s",
			     fs->session, k, strerror(errno));
		await_msg(fs, fd, ans, k, slowest);
		uint64_t took = st_now_us() - t0;
		cr_assert_lt(took, (uint64_t)ROUND_MS * 1000, "session %d round %d took %lu us",
			     fs->session, k, (unsigned long)took);
		if (took > slowest)
			slowest = took;
		bad = st_pattern_check(ans, MSG_LEN, ANS_SEED, (uint64_t)k * MSG_LEN);
		cr_assert_eq(bad, -1, "session %d round %d: wrong answer byte at %ld", fs->session,
			     k, bad);
	}
}

/* The backend's wait for its socket or its pipe; returns 1 for the
 * socket, 2 for the pipe, 0 on timeout, -1 with errno. */
static int backend_wait(const struct forkserve *fs, int ep)
{
	if (fs->backend_poll) {
		struct pollfd pf[2] = { { .fd = fs->s, .events = POLLIN },
					{ .fd = fs->pipe_r, .events = POLLIN } };
		int n = poll(pf, 2, BACKEND_WAIT_MS);
		if (n <= 0)
			return n;
		return pf[1].revents ? 2 : 1;
	}
	struct epoll_event ev;
	int n = epoll_wait(ep, &ev, 1, BACKEND_WAIT_MS);
	if (n <= 0)
		return n;
	return (int)ev.data.u32;
}

/* The backend: its own wait set, made after the fork; it greets, then
 * reads until EAGAIN and waits, answers each request, and at the end
 * expects end of file. */
static int backend(void *arg)
{
	struct forkserve *fs = arg;
	char buf[8192], ans[MSG_LEN];
	int ep = -1, d = fs->session;
	close(fs->l);
	/* A client that died is reported by the client. */
	signal(SIGPIPE, SIG_IGN);
	ST_CHECK(fcntl(fs->s, F_SETFL, fcntl(fs->s, F_GETFL) | O_NONBLOCK) == 0, "O_NONBLOCK");
	ST_CHECK(fcntl(fs->pipe_r, F_SETFL, fcntl(fs->pipe_r, F_GETFL) | O_NONBLOCK) == 0,
		 "O_NONBLOCK on the pipe");
	if (!fs->backend_poll) {
		struct epoll_event sev = { .events = EPOLLIN, .data.u32 = 1 };
		struct epoll_event pev = { .events = EPOLLIN, .data.u32 = 2 };
		ep = epoll_create1(EPOLL_CLOEXEC);
		ST_CHECK(ep >= 0, "epoll_create1: %s", strerror(errno));
		ST_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fs->s, &sev) == 0, "add the socket: %s",
			 strerror(errno));
		ST_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fs->pipe_r, &pev) == 0, "add the pipe: %s",
			 strerror(errno));
	}
	st_pattern_fill(ans, MSG_LEN, GREET_SEED, 0);
	ST_CHECK(send(fs->s, ans, MSG_LEN, 0) == MSG_LEN, "session %d: greeting: %s", d,
		 strerror(errno));
	size_t have = 0;
	int k = 0, latches = 0;
	for (;;) {
		ssize_t r = recv(fs->s, buf + have, sizeof(buf) - have, 0);
		if (r == 0)
			break;
		if (r > 0) {
			have += (size_t)r;
			ST_CHECK(have <= MSG_LEN, "session %d round %d: %zu bytes in a request", d,
				 k, have);
			if (have < MSG_LEN)
				continue;
			long bad = st_pattern_check(buf, MSG_LEN, REQ_SEED, (uint64_t)k * MSG_LEN);
			ST_CHECK(bad == -1, "session %d round %d: wrong request byte at %ld", d, k,
				 bad);
			st_pattern_fill(ans, MSG_LEN, ANS_SEED, (uint64_t)k * MSG_LEN);
			ST_CHECK(send(fs->s, ans, MSG_LEN, 0) == MSG_LEN,
				 "session %d round %d: answer: %s", d, k, strerror(errno));
			have = 0;
			k++;
			continue;
		}
		ST_CHECK(errno == EAGAIN || errno == EINTR, "session %d round %d: recv: %s", d, k,
			 strerror(errno));
		if (errno == EINTR)
			continue;
		int w;
		do
			w = backend_wait(fs, ep);
		while (w < 0 && errno == EINTR);
		ST_CHECK(w >= 0, "session %d round %d: wait: %s", d, k, strerror(errno));
		ST_CHECK(w > 0, "session %d round %d: no request within %d ms", d, k,
			 BACKEND_WAIT_MS);
		if (w == 2) {
			char b[16];
			ssize_t n = read(fs->pipe_r, b, sizeof(b));
			ST_CHECK(n >= 0 || errno == EAGAIN,
				 "session %d round %d: read the pipe: %s", d, k, strerror(errno));
			latches += n > 0 ? (int)n : 0;
			if (n == 0) {
				/* The client has exited: the end of file on the
				 * socket follows, if it got all its answers. */
				ST_CHECK(k == ROUNDS, "session %d round %d: the client exited", d,
					 k);
				if (ep >= 0)
					epoll_ctl(ep, EPOLL_CTL_DEL, fs->pipe_r, NULL);
				close(fs->pipe_r);
				fs->pipe_r = -1;
			}
		}
	}
	ST_CHECK(have == 0 && k == ROUNDS,
		 "session %d: end of file after %d rounds (%zu bytes more)", d, k, have);
	ST_CHECK(!fs->latch || latches > 0, "session %d: the latch never woke the backend", d);
	if (ep >= 0)
		close(ep);
	close(fs->s);
	if (fs->pipe_r >= 0)
		close(fs->pipe_r);
	return 0;
}

/* The postmaster: accepts SESSIONS connections, forks a backend for each
 * and closes its copy; returns 0 if every backend exited with 0. */
static int postmaster(void *arg)
{
	struct forkserve *fs = arg;
	pid_t be[SESSIONS];
	int rc = 0;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	close(fs->pipe_w);
	close(fs->port_r);
	/* Its own listener: one made by the test's process and closed there
	 * would no longer be the shim's to pair. */
	fs->l = socket(AF_INET, SOCK_STREAM, 0);
	ST_CHECK(fs->l >= 0, "socket: %s", strerror(errno));
	ST_CHECK(bind(fs->l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fs->l, 8) == 0 &&
			 getsockname(fs->l, (struct sockaddr *)&a, &al) == 0,
		 "listen: %s", strerror(errno));
	fs->port = ntohs(a.sin_port);
	ST_CHECK(write(fs->port_w, &fs->port, sizeof(fs->port)) == sizeof(fs->port), "port");
	close(fs->port_w);
	for (fs->session = 0; fs->session < SESSIONS; fs->session++) {
		ST_CHECK(st_wait_fd(fs->l, POLLIN, ST_WAIT_MS) & POLLIN,
			 "session %d: no connection to accept", fs->session);
		fs->s = accept(fs->l, NULL, NULL);
		ST_CHECK(fs->s >= 0, "accept: %s", strerror(errno));
		be[fs->session] = st_fork(backend, fs);
		close(fs->s);
	}
	close(fs->pipe_r);
	close(fs->l);
	/* Bounded by this process's watchdog. */
	for (int i = 0; i < SESSIONS; i++) {
		int st;
		while (waitpid(be[i], &st, 0) < 0)
			ST_CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
		ST_CHECK(WIFEXITED(st), "the backend of session %d died of signal %d", i,
			 WTERMSIG(st));
		if (!rc)
			rc = WEXITSTATUS(st);
	}
	return rc;
}

static void forkserve_rule(struct forkserve fs)
{
	int p[2], q[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0, "pipe: %s", strerror(errno));
	cr_assert_eq(pipe2(q, O_CLOEXEC), 0, "pipe: %s", strerror(errno));
	fs.pipe_r = p[0];
	fs.pipe_w = p[1];
	fs.port_r = q[0];
	fs.port_w = q[1];
	pid_t pm = st_fork(postmaster, &fs);
	close(fs.pipe_r);
	close(fs.port_w);
	cr_assert(st_wait_fd(fs.port_r, POLLIN, ST_WAIT_MS) & POLLIN,
		  "the postmaster never listened");
	cr_assert_eq(read(fs.port_r, &fs.port, sizeof(fs.port)), (ssize_t)sizeof(fs.port),
		     "the postmaster never listened");
	close(fs.port_r);
	for (fs.session = 0; fs.session < SESSIONS; fs.session++) {
		int fd = st_connect(fs.port);
		cr_assert(fd >= 0, "session %d: connect: %s", fs.session, strerror(errno));
		client(&fs, fd);
		close(fd);
	}
	close(fs.pipe_w);
	st_assert_child_ok(pm);
}

/* 8 connections in turn, each 500 rounds of 64-byte request and answer
 * between a client that waits in poll and a forked backend that waits in
 * epoll_wait (a set made after the fork, socket and pipe, one event at a
 * time): every round is answered within 2 s, with the right bytes. */
ST_TEST(forkserve, forked_backend_epoll_client_poll)
{
	forkserve_rule((struct forkserve){ 0 });
}

/* The same with a client that waits for each answer in a blocking read. */
ST_TEST(forkserve, forked_backend_epoll_client_read)
{
	forkserve_rule((struct forkserve){ .client_read = 1 });
}

/* The same with a backend that waits in poll on its socket and pipe. */
ST_TEST(forkserve, forked_backend_poll_client_poll)
{
	forkserve_rule((struct forkserve){ .backend_poll = 1 });
}

/* The epoll backend and the polling client, with a pause of 2 to 5 ms
 * before every 16th request. */
ST_TEST(forkserve, forked_backend_epoll_client_poll_pauses)
{
	forkserve_rule((struct forkserve){ .pause_every = 16 });
}

/* The poll backend and the reading client, with a pause of 2 to 5 ms
 * before every 16th request. */
ST_TEST(forkserve, forked_backend_poll_client_read_pauses)
{
	forkserve_rule(
		(struct forkserve){ .backend_poll = 1, .client_read = 1, .pause_every = 16 });
}

/* The epoll backend with a pause before every 16th request, 2 ms into
 * which a byte on the pipe (postgres' latch) makes its wait return while
 * the socket is quiet, and the backend waits again. */
ST_TEST(forkserve, forked_backend_epoll_latch_during_pauses)
{
	forkserve_rule((struct forkserve){ .pause_every = 16, .latch = 1 });
}

/* The same with the backend waiting in poll. */
ST_TEST(forkserve, forked_backend_poll_latch_during_pauses)
{
	forkserve_rule((struct forkserve){ .backend_poll = 1, .pause_every = 16, .latch = 1 });
}
