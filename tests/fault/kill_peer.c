/*
 * kill_peer.c - one end of some TCP connections, written as an ordinary
 * socket program (no xio header), for test_kill_shim.c, which runs two of
 * them under the shim and kills one with SIGKILL.
 *
 *   kill_peer listen|connect PORT NCONN JOB WAIT
 *
 * listen: accept NCONN connections on 127.0.0.1:PORT (0: any port, told as
 * "port P"); connect: make NCONN connections to it. JOB is what the
 * process then does on every connection; WAIT how a survivor waits:
 *   read    blocking read() / write()       recv    blocking recv() / send()
 *   poll    poll()                          select  select()
 *   epoll   epoll_wait, level triggered     epollet epoll_wait, EPOLLET
 *   spin    non-blocking calls in a loop, EAGAIN and again
 * Survivors (their calls end when the peer dies):
 *   sink     read and check every connection's stream until it ends;
 *   sinklate the same, but only once a byte comes on stdin;
 *   sinkleave as sinklate, but first dup2 each socket onto stdout (the
 *            connection leaves shared memory) and read it then;
 *   sinkfork as sink, with a forked child holding the connections
 *            meanwhile (it idles, and is killed at the end);
 *   source   write every connection's stream until a write fails.
 * Victims (the test kills them):
 *   burst B  write B bytes on each connection, then idle;
 *   stream   write for ever;
 *   stall R  read R bytes of each connection, then read no more;
 *   burstr B write B bytes on each connection, then block reading the
 *            first (nothing comes);
 *   forkw B  write B bytes, fork: the child writes on for ever, the parent
 *            idles;
 *   forkr R  read R bytes, fork: the child reads on for ever;
 *   leave B  on each connection: write B bytes, dup2 the socket onto
 *            stdout (the shim moves the connection to kernel TCP), write
 *            B more; then idle;
 *   leavek B as leave, but kill itself right after the first dup2.
 * The stream of connection i is a pattern of (i, position), so that the
 * reader finds any byte lost, duplicated or reordered. Reports go to fd 3,
 * one line per write(2): "port P", "ready", "wrote I POS", "read I POS",
 * "child PID", "bad I POS", "end I T_NS BYTES HOW" (T_NS on
 * CLOCK_MONOTONIC, HOW eof or an errno name), "done". alarm(30) bounds
 * every process.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REPORT_FD 3
#define MAXCONN 512
#define BUF (256 * 1024)
#define PROGRESS (128 * 1024) /* a writer reports at least this often */

enum wait_kind { W_READ, W_RECV, W_POLL, W_SELECT, W_EPOLL, W_EPOLLET, W_SPIN };

struct conn {
	int fd;
	uint64_t pos;      /* bytes read or written */
	uint64_t reported; /* pos last reported */
	int ended;
};

static struct conn conns[MAXCONN];
static int nconn;
static enum wait_kind wait_kind;
static unsigned char buf[BUF];

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof(line) - 1)
		return;
	line[n++] = '\n';
	while (write(REPORT_FD, line, (size_t)n) < 0 && errno == EINTR)
		;
}

static void die(const char *what)
{
	fprintf(stderr, "kill_peer %d: %s: %s\n", (int)getpid(), what, strerror(errno));
	report("fail %s %s", what, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The pattern: 8 bytes per 8-byte block of the stream of connection i. */
static uint64_t block(uint32_t i, uint64_t b)
{
	uint64_t x = b * 0x9e3779b97f4a7c15ull ^ ((uint64_t)i << 40 | 0x5bd1e995u);
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return x;
}

static void fill(uint32_t i, uint64_t pos, unsigned char *p, size_t n)
{
	for (size_t k = 0; k < n; k++, pos++)
		p[k] = (unsigned char)(block(i, pos >> 3) >> ((pos & 7) * 8));
}

/* The offset of the first wrong byte, or -1. */
static int64_t check(uint32_t i, uint64_t pos, const unsigned char *p, size_t n)
{
	for (size_t k = 0; k < n; k++, pos++)
		if (p[k] != (unsigned char)(block(i, pos >> 3) >> ((pos & 7) * 8)))
			return (int64_t)pos;
	return -1;
}

/* Sizes that change from call to call: 1 byte to BUF. */
static size_t next_size(void)
{
	static uint64_t x = 88172645463325292ull;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x % 8 == 0 ? 1 + x % 64 : 1 + x % BUF;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl");
}

static void end_conn(struct conn *c, int i, ssize_t r)
{
	uint64_t t = now_ns();
	const char *how = r == 0 ? "eof" : strerrorname_np(errno);
	c->ended = 1;
	report("end %d %llu %llu %s", i, (unsigned long long)t, (unsigned long long)c->pos,
	       how ? how : "?");
}

/* One read on connection i. Returns 1 if it made progress or ended it, 0
 * on EAGAIN. */
static int read_once(int i, int check_bytes)
{
	struct conn *c = &conns[i];
	size_t want = next_size();
	ssize_t r;
	do
		r = wait_kind == W_RECV ? recv(c->fd, buf, want, 0) : read(c->fd, buf, want);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (r <= 0) {
		end_conn(c, i, r);
		return 1;
	}
	int64_t bad = check_bytes ? check((uint32_t)i, c->pos, buf, (size_t)r) : -1;
	if (bad >= 0) {
		report("bad %d %lld", i, (long long)bad);
		fprintf(stderr, "kill_peer %d: connection %d: wrong byte at %lld\n", (int)getpid(),
			i, (long long)bad);
		exit(2);
	}
	c->pos += (uint64_t)r;
	return 1;
}

/* One write on connection i (at most limit bytes in all). Same returns. */
static int write_once(int i, uint64_t limit)
{
	struct conn *c = &conns[i];
	size_t n = next_size();
	if (n > limit - c->pos)
		n = (size_t)(limit - c->pos);
	fill((uint32_t)i, c->pos, buf, n);
	ssize_t r;
	do
		r = wait_kind == W_RECV ? send(c->fd, buf, n, 0) : write(c->fd, buf, n);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (r <= 0) {
		end_conn(c, i, r);
		return 1;
	}
	c->pos += (uint64_t)r;
	return 1;
}

/* Report a writer's or reader's progress now and then. */
static void progress(int i, const char *what, int force)
{
	struct conn *c = &conns[i];
	if (force || c->pos - c->reported >= PROGRESS) {
		report("%s %d %llu", what, i, (unsigned long long)c->pos);
		c->reported = c->pos;
	}
}

static void idle(void)
{
	for (;;)
		pause();
}

/* The survivor's loop: read (or write) every connection until it ends,
 * waiting as wait_kind says. */
static void survive(int writing)
{
	int live = nconn, ep = -1;
	short ev = writing ? POLLOUT : POLLIN;
	if (wait_kind != W_READ && wait_kind != W_RECV)
		for (int i = 0; i < nconn; i++)
			set_nonblock(conns[i].fd);
	if (wait_kind == W_EPOLL || wait_kind == W_EPOLLET) {
		if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
			die("epoll_create1");
		for (int i = 0; i < nconn; i++) {
			struct epoll_event e = { .events = (writing ? EPOLLOUT : EPOLLIN) |
							   (wait_kind == W_EPOLLET ? EPOLLET : 0),
						 .data.u32 = (uint32_t)i };
			if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &e) < 0)
				die("epoll_ctl");
		}
	}
	static struct pollfd pfd[MAXCONN];
	static int idx[MAXCONN];
	while (live > 0) {
		int i, n;
		switch (wait_kind) {
		case W_READ:
		case W_RECV:
			/* Blocking calls: one connection. */
			for (i = 0; i < nconn; i++)
				if (!conns[i].ended)
					writing ? write_once(i, UINT64_MAX) : read_once(i, 1);
			break;
		case W_SPIN:
			for (i = 0; i < nconn; i++)
				if (!conns[i].ended)
					writing ? write_once(i, UINT64_MAX) : read_once(i, 1);
			break;
		case W_POLL:
			n = 0;
			for (i = 0; i < nconn; i++)
				if (!conns[i].ended) {
					pfd[n] = (struct pollfd){ .fd = conns[i].fd, .events = ev };
					idx[n++] = i;
				}
			if (poll(pfd, (nfds_t)n, 10000) < 0 && errno != EINTR)
				die("poll");
			for (int k = 0; k < n; k++)
				if (pfd[k].revents)
					writing ? write_once(idx[k], UINT64_MAX)
						: read_once(idx[k], 1);
			break;
		case W_SELECT: {
			fd_set set;
			int maxfd = -1;
			FD_ZERO(&set);
			for (i = 0; i < nconn; i++)
				if (!conns[i].ended) {
					FD_SET(conns[i].fd, &set);
					if (conns[i].fd > maxfd)
						maxfd = conns[i].fd;
				}
			struct timeval tv = { 10, 0 };
			if (select(maxfd + 1, writing ? NULL : &set, writing ? &set : NULL, NULL,
				   &tv) < 0 &&
			    errno != EINTR)
				die("select");
			for (i = 0; i < nconn; i++)
				if (!conns[i].ended && FD_ISSET(conns[i].fd, &set))
					writing ? write_once(i, UINT64_MAX) : read_once(i, 1);
			break;
		}
		case W_EPOLL:
		case W_EPOLLET: {
			struct epoll_event evs[64];
			n = epoll_wait(ep, evs, 64, 10000);
			if (n < 0 && errno != EINTR)
				die("epoll_wait");
			for (int k = 0; k < n; k++) {
				i = (int)evs[k].data.u32;
				if (conns[i].ended)
					continue;
				if (wait_kind == W_EPOLL) {
					writing ? write_once(i, UINT64_MAX) : read_once(i, 1);
					continue;
				}
				/* Edge triggered: until EAGAIN, or the end. */
				while (!conns[i].ended &&
				       (writing ? write_once(i, UINT64_MAX) : read_once(i, 1)))
					;
			}
			break;
		}
		}
		live = 0;
		for (i = 0; i < nconn; i++)
			if (!conns[i].ended) {
				live++;
			} else if (conns[i].fd >= 0) {
				if (ep >= 0)
					epoll_ctl(ep, EPOLL_CTL_DEL, conns[i].fd, NULL);
				close(conns[i].fd);
				conns[i].fd = -1;
			}
	}
	if (ep >= 0)
		close(ep);
	report("done");
}

/* Blocking writes of every connection's stream up to limit bytes each
 * (UINT64_MAX: for ever), round robin, reporting progress. */
static void write_upto(uint64_t limit)
{
	for (;;) {
		int all = 1;
		for (int i = 0; i < nconn; i++) {
			if (conns[i].pos >= limit)
				continue;
			all = 0;
			write_once(i, limit);
			if (conns[i].ended) {
				fprintf(stderr, "kill_peer %d: a victim's write failed\n",
					(int)getpid());
				exit(3);
			}
			progress(i, "wrote", conns[i].pos >= limit);
		}
		if (all)
			return;
	}
}

/* Blocking reads (checked) of every connection up to limit bytes each. */
static void read_upto(uint64_t limit)
{
	for (;;) {
		int all = 1;
		for (int i = 0; i < nconn; i++) {
			if (conns[i].pos >= limit)
				continue;
			all = 0;
			/* Never past limit: the rest stays in the channel. */
			size_t want = next_size();
			if (want > limit - conns[i].pos)
				want = (size_t)(limit - conns[i].pos);
			ssize_t r = read(conns[i].fd, buf, want);
			if (r <= 0)
				die("victim read");
			if (check((uint32_t)i, conns[i].pos, buf, (size_t)r) >= 0) {
				report("bad %d %llu", i, (unsigned long long)conns[i].pos);
				exit(2);
			}
			conns[i].pos += (uint64_t)r;
			progress(i, "read", conns[i].pos >= limit);
		}
		if (all)
			return;
	}
}

static void setup(const char *end, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!strcmp(end, "listen")) {
		int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int one = 1;
		socklen_t al = sizeof(a);
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 ||
		    listen(l, MAXCONN) < 0 || getsockname(l, (struct sockaddr *)&a, &al) < 0)
			die("listen");
		report("port %d", ntohs(a.sin_port));
		for (int i = 0; i < nconn; i++)
			if ((conns[i].fd = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
				die("accept");
		close(l);
	} else {
		for (int i = 0; i < nconn; i++) {
			conns[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (conns[i].fd < 0 ||
			    connect(conns[i].fd, (struct sockaddr *)&a, sizeof(a)) < 0)
				die("connect");
		}
	}
	/* Both ends hold every connection once the connect side says ready;
	 * the acceptor's last accept may still be pairing: a first exchange
	 * would hide that, the test asks the monitor instead. */
	report("ready");
}

int main(int argc, char **argv)
{
	static const char *const waits[] = { "read",  "recv",    "poll", "select",
					     "epoll", "epollet", "spin" };
	if (argc < 6) {
		fprintf(stderr, "usage: kill_peer listen|connect PORT NCONN JOB WAIT [N]\n");
		return 64;
	}
	alarm(30);
	signal(SIGPIPE, SIG_IGN); /* as servers do: a write to a dead peer fails */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4 * MAXCONN) {
		rl.rlim_cur = rl.rlim_max < 4 * MAXCONN ? rl.rlim_max : 4 * MAXCONN;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	nconn = atoi(argv[3]);
	if (nconn < 1 || nconn > MAXCONN)
		return 64;
	const char *job = argv[4];
	for (unsigned k = 0; k < sizeof(waits) / sizeof(waits[0]); k++)
		if (!strcmp(argv[5], waits[k]))
			wait_kind = (enum wait_kind)k;
	uint64_t n = argc > 6 ? strtoull(argv[6], NULL, 10) : 0;
	setup(argv[1], atoi(argv[2]));

	if (!strcmp(job, "sink") || !strcmp(job, "sinklate") || !strcmp(job, "sinkleave")) {
		char go;
		if (job[4] && read(0, &go, 1) != 1)
			die("stdin");
		for (int i = 0; job[4] == 'l' && job[5] == 'e' && i < nconn; i++)
			if (dup2(conns[i].fd, 1) < 0) /* the connection leaves shared memory */
				die("dup2");
		survive(0);
	} else if (!strcmp(job, "sinkfork")) {
		/* A child that holds every connection and never uses them (a
		 * redis BGSAVE): the parent's reads are the only ones. */
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0)
			idle();
		survive(0);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	} else if (!strcmp(job, "source")) {
		survive(1);
	} else if (!strcmp(job, "burst")) {
		write_upto(n);
		idle();
	} else if (!strcmp(job, "stream")) {
		write_upto(UINT64_MAX);
	} else if (!strcmp(job, "stall")) {
		read_upto(n);
		idle();
	} else if (!strcmp(job, "burstr")) {
		write_upto(n);
		while (read(conns[0].fd, buf, 1) < 0 && errno == EINTR)
			;
		idle();
	} else if (!strcmp(job, "forkw") || !strcmp(job, "forkr")) {
		int w = job[4] == 'w';
		w ? write_upto(n) : read_upto(n);
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid > 0) {
			report("child %d", (int)pid);
			idle();
		}
		alarm(30);
		w ? write_upto(UINT64_MAX) : read_upto(UINT64_MAX);
	} else if (!strcmp(job, "leave") || !strcmp(job, "leavek")) {
		for (int i = 0; i < nconn; i++) {
			struct conn *c = &conns[i];
			while (c->pos < n)
				write_once(i, n);
			progress(i, "wrote", 1);
			if (dup2(c->fd, 1) < 0) /* stdio bypasses the shim: TCP from now */
				die("dup2");
			if (job[5]) {
				report("kill %llu", (unsigned long long)now_ns());
				raise(SIGKILL);
			}
			while (c->pos < 2 * n && !c->ended)
				write_once(i, 2 * n);
			if (c->ended)
				exit(3);
			progress(i, "wrote", 1);
		}
		idle();
	} else {
		return 64;
	}
	return 0;
}
