/*
 * test_proc.c - sockets shared by processes and threads, and interrupted
 * by signals: a forked worker serving an accepted connection, a listener
 * shared by forked workers, one socket used by two threads at once, and
 * EINTR versus SA_RESTART.
 */
#include "sem.h"

#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>

#define RESPONSE_LEN 10000

struct fork_serve {
	int l;
	uint16_t port;
	int s;
};

static int fork_serve_client(void *arg)
{
	struct fork_serve *fs = arg;
	static char buf[RESPONSE_LEN + 100];
	close(fs->l);
	int fd = st_connect(fs->port);
	ST_CHECK(fd >= 0, "connect: %s", strerror(errno));
	ST_CHECK(write(fd, "GET /\n", 6) == 6, "request");
	ssize_t n = st_read_to_eof(fd, buf, sizeof(buf));
	ST_CHECK(n == RESPONSE_LEN, "response of %zd bytes (%s)", n, n < 0 ? strerror(errno) : "");
	ST_CHECK(st_pattern_check(buf, RESPONSE_LEN, 20, 0) == -1, "response bytes");
	close(fd);
	return 0;
}

static int fork_serve_worker(void *arg)
{
	struct fork_serve *fs = arg;
	static char buf[RESPONSE_LEN];
	close(fs->l);
	ST_CHECK(st_read_full(fs->s, buf, 6) == 6 && memcmp(buf, "GET /\n", 6) == 0, "request");
	st_pattern_fill(buf, RESPONSE_LEN, 20, 0);
	ST_CHECK(st_write_full(fs->s, buf, RESPONSE_LEN) == RESPONSE_LEN, "response: %s",
		 strerror(errno));
	close(fs->s);
	return 0;
}

/* The parent accepts, forks, and closes its copy; the child serves the
 * connection: the client gets the whole response, then end of file when
 * the child closes. */
ST_TEST(proc, forked_child_serves_accepted_connection)
{
	struct fork_serve fs;
	fs.l = st_listen(&fs.port);
	pid_t client = st_fork(fork_serve_client, &fs);
	fs.s = st_accept(fs.l);
	pid_t worker = st_fork(fork_serve_worker, &fs);
	close(fs.s);
	st_assert_child_ok(worker);
	st_assert_child_ok(client);
	close(fs.l);
}

#define CLIENTS 20
#define QUIT 0xffffffffu

struct workers {
	int l;
	int report_w; /* each worker writes the ids it served (4 bytes each) */
	uint32_t index;
};

static int worker_loop(void *arg)
{
	struct workers *w = arg;
	for (;;) {
		int a = accept(w->l, NULL, NULL);
		ST_CHECK(a >= 0, "accept: %s", strerror(errno));
		uint32_t id, reply[2];
		ST_CHECK(st_read_full(a, &id, 4) == 4, "id");
		if (id == QUIT) {
			/* Leave the listener group before answering: with
			 * SO_REUSEPORT the kernel would otherwise route the next
			 * client to a listener that is about to close. */
			close(w->l);
			ST_CHECK(write(a, "bye!", 4) == 4, "bye");
			close(a);
			return 0;
		}
		reply[0] = id;
		reply[1] = w->index;
		ST_CHECK(write(a, reply, 8) == 8, "reply: %s", strerror(errno));
		ST_CHECK(write(w->report_w, &id, 4) == 4, "report");
		close(a);
	}
}

static void quit_one_worker(uint16_t port)
{
	uint32_t q = QUIT;
	char b[4];
	int fd = st_connect(port);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, &q, 4), 4);
	cr_assert_eq(st_read_full(fd, b, 4), 4, "no worker answered the quit");
	cr_assert_arr_eq(b, "bye!", 4);
	close(fd);
}

/* A listener inherited by two forked workers that both block in accept:
 * 20 clients connected at once are each served exactly once, by one of the
 * workers, with no connection lost or answered twice. */
ST_TEST(proc, listener_shared_by_forked_workers)
{
	uint16_t port;
	int rep[2], fds[CLIENTS];
	pid_t pids[2];
	cr_assert_eq(pipe(rep), 0);
	struct workers w = { .l = st_listen(&port), .report_w = rep[1] };
	for (uint32_t i = 0; i < 2; i++) {
		w.index = i;
		pids[i] = st_fork(worker_loop, &w);
	}
	close(w.l);
	close(rep[1]);
	for (uint32_t i = 0; i < CLIENTS; i++) {
		fds[i] = st_connect(port);
		cr_assert(fds[i] >= 0, "connect %u: %s", i, strerror(errno));
	}
	for (uint32_t i = 0; i < CLIENTS; i++)
		cr_assert_eq(write(fds[i], &i, 4), 4);
	for (uint32_t i = 0; i < CLIENTS; i++) {
		uint32_t reply[2];
		char b;
		cr_assert_eq(st_read_full(fds[i], reply, 8), 8, "client %u got no answer", i);
		cr_assert_eq(reply[0], i, "client %u got the answer for %u", i, reply[0]);
		cr_assert_lt(reply[1], 2);
		cr_assert_eq(read(fds[i], &b, 1), 0, "client %u: more than one answer", i);
		close(fds[i]);
	}
	quit_one_worker(port);
	quit_one_worker(port);
	st_assert_child_ok(pids[0]);
	st_assert_child_ok(pids[1]);
	int served[CLIENTS] = { 0 };
	uint32_t id;
	while (read(rep[0], &id, 4) == 4) {
		cr_assert_lt(id, CLIENTS);
		served[id]++;
	}
	for (int i = 0; i < CLIENTS; i++)
		cr_assert_eq(served[i], 1, "client %d served %d times", i, served[i]);
	close(rep[0]);
}

struct reuse_worker {
	struct workers w;
	uint16_t port;
	int ready_w; /* one byte once listening */
};

static int reuseport_worker(void *arg)
{
	struct reuse_worker *rw = arg;
	int one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(rw->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int l = socket(AF_INET, SOCK_STREAM, 0);
	ST_CHECK(l >= 0, "socket");
	ST_CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0, "SO_REUSEPORT");
	ST_CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s", strerror(errno));
	ST_CHECK(listen(l, 64) == 0, "listen");
	ST_CHECK(write(rw->ready_w, "r", 1) == 1, "ready");
	rw->w.l = l;
	return worker_loop(&rw->w);
}

/* SO_REUSEPORT: two processes each with their own listener on one port;
 * 20 clients are each served exactly once, by one of them. */
ST_TEST(proc, reuseport_listeners_in_two_processes)
{
	int rep[2], ready[2], fds[CLIENTS], one = 1;
	pid_t pids[2];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	cr_assert_eq(pipe(rep), 0);
	cr_assert_eq(pipe(ready), 0);
	/* A first member of the group picks the port; it leaves once the
	 * workers are in. */
	int l0 = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(setsockopt(l0, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
	cr_assert_eq(bind(l0, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(l0, (struct sockaddr *)&a, &al), 0);
	struct reuse_worker rw = { .w = { .report_w = rep[1] }, .port = ntohs(a.sin_port),
				   .ready_w = ready[1] };
	for (uint32_t i = 0; i < 2; i++) {
		rw.w.index = i;
		pids[i] = st_fork(reuseport_worker, &rw);
	}
	for (int i = 0; i < 2; i++) {
		char b;
		cr_assert(st_wait_fd(ready[0], POLLIN, ST_WAIT_MS) & POLLIN, "worker not listening");
		cr_assert_eq(read(ready[0], &b, 1), 1);
	}
	close(l0);
	close(rep[1]);
	for (uint32_t i = 0; i < CLIENTS; i++) {
		fds[i] = st_connect(rw.port);
		cr_assert(fds[i] >= 0, "connect %u: %s", i, strerror(errno));
		cr_assert_eq(write(fds[i], &i, 4), 4);
	}
	for (uint32_t i = 0; i < CLIENTS; i++) {
		uint32_t reply[2];
		char b;
		cr_assert_eq(st_read_full(fds[i], reply, 8), 8, "client %u got no answer", i);
		cr_assert_eq(reply[0], i, "client %u got the answer for %u", i, reply[0]);
		cr_assert_eq(read(fds[i], &b, 1), 0, "client %u: more than one answer", i);
		close(fds[i]);
	}
	quit_one_worker(rw.port);
	quit_one_worker(rw.port);
	st_assert_child_ok(pids[0]);
	st_assert_child_ok(pids[1]);
	int served[CLIENTS] = { 0 };
	uint32_t id;
	while (read(rep[0], &id, 4) == 4) {
		cr_assert_lt(id, CLIENTS);
		served[id]++;
	}
	for (int i = 0; i < CLIENTS; i++)
		cr_assert_eq(served[i], 1, "client %d served %d times", i, served[i]);
	close(rep[0]);
	close(ready[0]);
	close(ready[1]);
}

#define THREAD_BYTES (16u << 20)

static int echo_peer(int fd, void *arg)
{
	(void)arg;
	static char buf[65536];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		ST_CHECK(r >= 0, "read: %s", strerror(errno));
		if (r == 0)
			return 0;
		ST_CHECK(st_write_full(fd, buf, (size_t)r) == r, "write: %s", strerror(errno));
	}
}

struct duplex {
	int fd;
	int err;     /* errno of a failed call, or -1 for bad data */
	size_t done; /* bytes written or read correctly */
};

static void *writer_thread(void *arg)
{
	struct duplex *d = arg;
	static char buf[65536];
	while (d->done < THREAD_BYTES) {
		st_pattern_fill(buf, sizeof(buf), 30, d->done);
		if (st_write_full(d->fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
			d->err = errno;
			return NULL;
		}
		d->done += sizeof(buf);
	}
	if (shutdown(d->fd, SHUT_WR) < 0)
		d->err = errno;
	return NULL;
}

static void *reader_thread(void *arg)
{
	struct duplex *d = arg;
	static char buf[50000]; /* not a divisor of the writes */
	for (;;) {
		ssize_t r = read(d->fd, buf, sizeof(buf));
		if (r < 0) {
			d->err = errno;
			return NULL;
		}
		if (r == 0)
			return NULL;
		if (st_pattern_check(buf, (size_t)r, 30, d->done) != -1) {
			d->err = -1;
			return NULL;
		}
		d->done += (size_t)r;
	}
}

/* One thread writes 16 MiB to a socket while another reads from the same
 * socket what a peer process echoes: every byte comes back in order. */
ST_TEST(proc, two_threads_one_socket)
{
	pid_t pid;
	pthread_t wt, rt;
	int s = st_peer_start(&pid, echo_peer, NULL);
	struct duplex w = { .fd = s }, r = { .fd = s };
	cr_assert_eq(pthread_create(&rt, NULL, reader_thread, &r), 0);
	cr_assert_eq(pthread_create(&wt, NULL, writer_thread, &w), 0);
	pthread_join(wt, NULL);
	pthread_join(rt, NULL);
	cr_assert_eq(w.err, 0, "writer: %s after %zu bytes", strerror(w.err), w.done);
	cr_assert_eq(r.err, 0, "reader: %s after %zu bytes",
		     r.err < 0 ? "wrong data" : strerror(r.err), r.done);
	cr_assert_eq(w.done, THREAD_BYTES);
	cr_assert_eq(r.done, THREAD_BYTES, "read back %zu bytes", r.done);
	st_assert_child_ok(pid);
	close(s);
}

/* --- signals ------------------------------------------------------------ */

static volatile sig_atomic_t sigusr1s;

static void count_sigusr1(int sig)
{
	(void)sig;
	sigusr1s++;
}

static void catch_sigusr1(int flags)
{
	struct sigaction sa = { .sa_handler = count_sigusr1, .sa_flags = flags };
	sigusr1s = 0;
	cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
}

/* The peer: after 100 ms sends this process SIGUSR1; 150 ms later writes
 * "late"; then waits for end of file. */
static int signal_then_write(int fd, void *arg)
{
	(void)arg;
	char b;
	st_sleep_ms(100);
	ST_CHECK(kill(getppid(), SIGUSR1) == 0, "kill: %s", strerror(errno));
	st_sleep_ms(150);
	ST_CHECK(write(fd, "late", 4) == 4, "write");
	ST_CHECK(read(fd, &b, 1) == 0, "want end of file");
	return 0;
}

/* A blocking read interrupted by a signal whose handler was installed
 * without SA_RESTART fails with EINTR (the handler ran once); the data sent
 * later is then read normally. */
ST_TEST(signal, read_eintr_without_sa_restart)
{
	pid_t pid;
	char b[8];
	catch_sigusr1(0);
	int s = st_peer_start(&pid, signal_then_write, NULL);
	ssize_t r = read(s, b, sizeof(b));
	cr_assert_eq(r, -1, "read returned %zd, want EINTR", r);
	cr_assert_eq(errno, EINTR, "read failed with %s", strerror(errno));
	cr_assert_eq(sigusr1s, 1);
	cr_assert_eq(st_read_full(s, b, 4), 4);
	cr_assert_arr_eq(b, "late", 4);
	close(s);
	st_assert_child_ok(pid);
}

/* With SA_RESTART, the blocking read keeps waiting through the signal (the
 * handler ran once) and returns the data sent after it. */
ST_TEST(signal, read_restarts_with_sa_restart)
{
	pid_t pid;
	char b[8];
	catch_sigusr1(SA_RESTART);
	int s = st_peer_start(&pid, signal_then_write, NULL);
	uint64_t t0 = st_now_us();
	ssize_t r = read(s, b, sizeof(b));
	uint64_t took = st_now_us() - t0;
	cr_assert_eq(r, 4, "read returned %zd (%s)", r, r < 0 ? strerror(errno) : "");
	cr_assert_arr_eq(b, "late", 4);
	cr_assert_eq(sigusr1s, 1);
	cr_assert_geq(took, 200000, "read returned after %lu us", (unsigned long)took);
	close(s);
	st_assert_child_ok(pid);
}

/* One kind of wait on a socket that gets no data before the signal. */
typedef int (*sig_wait_fn)(int fd);

static int wait_with_poll(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ST_WAIT_MS);
}

static int wait_with_select(int fd)
{
	fd_set r;
	struct timeval tv = { .tv_sec = ST_WAIT_MS / 1000 };
	FD_ZERO(&r);
	FD_SET(fd, &r);
	return select(fd + 1, &r, NULL, NULL, &tv);
}

static int wait_with_epoll(int fd)
{
	struct epoll_event e = { .events = EPOLLIN };
	int ep = epoll_create1(0);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0)
		return -2;
	int r = epoll_wait(ep, &e, 1, ST_WAIT_MS);
	int err = errno;
	close(ep);
	errno = err;
	return r;
}

static void wait_eintr_rule(sig_wait_fn waitfn, const char *name)
{
	pid_t pid;
	char b[8];
	catch_sigusr1(SA_RESTART);
	int s = st_peer_start(&pid, signal_then_write, NULL);
	uint64_t t0 = st_now_us();
	int r = waitfn(s);
	uint64_t took = st_now_us() - t0;
	cr_assert_eq(r, -1, "%s returned %d, want EINTR", name, r);
	cr_assert_eq(errno, EINTR, "%s failed with %s", name, strerror(errno));
	cr_assert_eq(sigusr1s, 1);
	cr_assert_lt(took, 2000000, "%s returned after %lu us", name, (unsigned long)took);
	cr_assert_eq(st_read_full(s, b, 4), 4);
	close(s);
	st_assert_child_ok(pid);
}

/* poll interrupted by a signal fails with EINTR even with SA_RESTART. */
ST_TEST(signal, poll_eintr_despite_sa_restart)
{
	wait_eintr_rule(wait_with_poll, "poll");
}

/* select interrupted by a signal fails with EINTR even with SA_RESTART. */
ST_TEST(signal, select_eintr_despite_sa_restart)
{
	wait_eintr_rule(wait_with_select, "select");
}

/* epoll_wait interrupted by a signal fails with EINTR even with
 * SA_RESTART. */
ST_TEST(signal, epoll_wait_eintr_despite_sa_restart)
{
	wait_eintr_rule(wait_with_epoll, "epoll_wait");
}
