/*
 * busyidle.c - xio-bench-busyidle: the two ends of the suite's "busyidle"
 * scenario (bench/suite/busyidle.sh), one busy connection beside many idle
 * ones on the same server, as a server with keep-alive clients, pools or
 * subscribers has them.
 *
 *   xio-bench-busyidle server --listen EP [--poll] [--ready FILE]
 *   xio-bench-busyidle hold --connect EP --conns N [--proto echo|redis|http] [--ready FILE]
 *
 * server: an echo server with one epoll set over its listener and all its
 * connections (--poll: one poll() over all of them, as libevent's or
 * curl's poll back-ends and older servers wait), as an event loop has:
 * whatever a connection sends comes
 * back on it. Unlike bench/pingpong.c's server (one connection, blocking
 * reads) every wait covers every connection, so the cost of a wait that
 * grows with the idle ones shows. It runs until SIGTERM or SIGINT (so that
 * the suite can read its CPU time and memory after the busy client has
 * gone, even when that was its only client), then closes everything and
 * exits normally. Its waits time out every 100 ms, as redis's timer tick
 * does, which is when it sees the stop. The busy connection is
 * bench/pingpong.c's client, whose messages carry sequence numbers it
 * checks.
 *
 * hold: opens N connections, one after the other, sends a greeting on each
 * and reads its answer (echo: one byte back; redis: "PING\r\n" answered by
 * "+PONG\r\n"; http: one keep-alive "GET /" answered by a 200 response,
 * read to the end of its body as Content-Length gives it), so that every
 * connection is set up and has carried data both ways; writes the ready
 * file; then keeps them all open and silent until SIGTERM or SIGINT. Then
 * it looks, without waiting, at whether any of them has something to read
 * (one poll over all): a held connection has nothing, so one that does was
 * closed or reset by the server (an HTTP server's keep-alive timeout, a
 * client limit) or was sent data it never asked for, and the idle load the
 * suite meant to hold was not there to the end. It closes them all and
 * exits normally (so that the shim's counters are written).
 *
 * Results (one line on stdout):
 *   role=server conns=N cpu_us=N   (connections accepted in all)
 *   role=hold conns=N setup_us=N dropped=N   (dropped: found readable at the stop)
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define BUF_SIZE (64u << 10)

enum proto { PROTO_ECHO, PROTO_REDIS, PROTO_HTTP };

struct opts {
	const char *ep, *ready;
	long conns;
	enum proto proto;
	int use_poll;
};

/* What the server waits on: one epoll set, or (--poll) one poll array
 * whose first entry is the listener. */
struct waitset {
	int epfd;
	struct pollfd *pf;
	long npf, cap;
};

static void ws_add(struct waitset *w, int fd, long nth)
{
	if (w->epfd >= 0) {
		/* data.fd -1 marks the listener (nth 0). */
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = nth ? fd : -1 };

		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			net_die("epoll_ctl (connection %ld): %s", nth, strerror(errno));
		return;
	}
	if (w->npf == w->cap) {
		w->cap = w->cap ? 2 * w->cap : 1024;
		w->pf = realloc(w->pf, (size_t)w->cap * sizeof(*w->pf));
		if (!w->pf)
			net_die("out of memory");
	}
	w->pf[w->npf++] = (struct pollfd){ .fd = fd, .events = POLLIN };
}

static void ws_del(struct waitset *w, int fd)
{
	if (w->epfd >= 0) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
		return;
	}
	for (long i = 1; i < w->npf; i++)
		if (w->pf[i].fd == fd) {
			w->pf[i] = w->pf[--w->npf];
			break;
		}
}

/* Wait up to ms; the ready fds into fds (-1: the listener), at most max. */
static int ws_wait(struct waitset *w, int *fds, int max, int ms)
{
	if (w->epfd >= 0) {
		struct epoll_event evs[256];
		int n = epoll_wait(w->epfd, evs, max < 256 ? max : 256, ms);

		for (int k = 0; k < n; k++)
			fds[k] = evs[k].data.fd;
		return n;
	}
	int n = poll(w->pf, (nfds_t)w->npf, ms), k = 0;

	for (long i = 0; n > 0 && i < w->npf && k < max; i++)
		if (w->pf[i].revents)
			fds[k++] = i ? w->pf[i].fd : -1;
	return n < 0 ? n : k;
}

static volatile sig_atomic_t stop_now;

static void on_stop(int sig)
{
	(void)sig;
	stop_now = 1;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		net_die("fcntl O_NONBLOCK: %s", strerror(errno));
}

/* Write all of len bytes on a non-blocking connection, waiting for room
 * with poll when it is full. 0 or -errno. */
static int write_all_nb(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w > 0) {
			p += w;
			len -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
				return -errno;
			continue;
		}
		return w < 0 ? -errno : -EIO;
	}
	return 0;
}

static int serve(const struct opts *o)
{
	int ready[256];
	struct net_ep ep;
	struct sigaction sa = { .sa_handler = on_stop };
	struct waitset ws = { .epfd = -1 };
	long accepted = 0;
	uint64_t cpu0;
	uint16_t port;
	int lfd;
	char *buf;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	buf = malloc(BUF_SIZE);
	if (!buf)
		net_die("out of memory");
	lfd = net_listen(&ep, &port);
	set_nonblock(lfd);
	if (!o->use_poll && (ws.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		net_die("epoll_create1: %s", strerror(errno));
	ws_add(&ws, lfd, 0);
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		net_die("sigaction: %s", strerror(errno));
	if (o->ready)
		net_ready(o->ready, port);
	cpu0 = net_cpu_us();
	while (!stop_now) {
		int n = ws_wait(&ws, ready, (int)(sizeof(ready) / sizeof(ready[0])), 100);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			net_die("%s: %s", o->use_poll ? "poll" : "epoll_wait", strerror(errno));
		for (int k = 0; k < n; k++) {
			int fd = ready[k];

			if (fd < 0) {
				for (;;) {
					int c = net_accept(lfd, ep.family);

					if (c == -EAGAIN || c == -EWOULDBLOCK)
						break;
					if (c < 0)
						net_die("accept (connection %ld): %s", accepted + 1,
							strerror(-c));
					set_nonblock(c);
					ws_add(&ws, c, accepted + 1);
					accepted++;
				}
				continue;
			}
			for (;;) {
				ssize_t r = read(fd, buf, BUF_SIZE);
				int err;

				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0 && errno == EAGAIN)
					break;
				if (r <= 0) {
					/* End of stream, or a reset: this client is done. */
					ws_del(&ws, fd);
					close(fd);
					break;
				}
				err = write_all_nb(fd, buf, (size_t)r);
				if (err)
					net_die("server: echo on fd %d: %s", fd, strerror(-err));
				if ((size_t)r < BUF_SIZE)
					break;
			}
		}
	}
	net_result("role=server conns=%ld cpu_us=%llu", accepted,
		   (unsigned long long)(net_cpu_us() - cpu0));
	/* The clients' connections still open close with the process. */
	if (ws.epfd >= 0)
		close(ws.epfd);
	free(ws.pf);
	close(lfd);
	if (ep.family == AF_UNIX)
		unlink(ep.path);
	free(buf);
	return 0;
}

/* Read one HTTP response to a GET on fd (blocking): a "200" status, the
 * head up to its blank line, then exactly the Content-Length bytes of the
 * body, so that nothing of it is left unread to make the connection look
 * readable at the stop. Dies, saying what came, on anything else. */
static void http_answer(int fd, long i)
{
	char head[4096], *end, *cl;
	size_t got = 0, body, have;
	long len;

	for (;;) {
		ssize_t r = read(fd, head + got, sizeof(head) - 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			net_die("hold: connection %ld: %s before the end of the response's head", i + 1,
				r == 0 ? "end of stream" : strerror(errno));
		got += (size_t)r;
		head[got] = '\0';
		if ((end = strstr(head, "\r\n\r\n")))
			break;
		if (got == sizeof(head) - 1)
			net_die("hold: connection %ld: no end of the response's head in %zu bytes", i + 1,
				got);
	}
	if (strncmp(head, "HTTP/1.1 200 ", 13) && strncmp(head, "HTTP/1.0 200 ", 13))
		net_die("hold: connection %ld: the answer is not a 200 response: %.40s", i + 1, head);
	*end = '\0';
	cl = strcasestr(head, "\r\nContent-Length:");
	if (!cl || (len = strtol(cl + 17, NULL, 10)) < 0 || len > 1 << 20)
		net_die("hold: connection %ld: no usable Content-Length in the response", i + 1);
	body = (size_t)len;
	have = got - (size_t)(end + 4 - head);
	if (have > body)
		net_die("hold: connection %ld: %zu bytes past the response's body", i + 1,
			have - body);
	while (have < body) {
		size_t n = body - have < sizeof(head) ? body - have : sizeof(head);
		int err = net_read_full(fd, head, n, NULL);

		if (err)
			net_die("hold: connection %ld: reading the response's body: %s", i + 1,
				strerror(-err));
		have += n;
	}
}

/* How many of the n connections have something to read (an end of
 * stream, a reset or data), found with one poll that does not wait. */
static long count_readable(const int *fds, long n)
{
	struct pollfd *p = calloc((size_t)n + 1, sizeof(*p));
	long bad = 0;
	int r;

	if (!p)
		net_die("out of memory");
	for (long i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN | POLLRDHUP };
	do
		r = poll(p, (nfds_t)n, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		net_die("hold: poll over %ld connections: %s", n, strerror(errno));
	for (long i = 0; i < n; i++)
		bad += p[i].revents != 0;
	free(p);
	return bad;
}

static int hold(const struct opts *o)
{
	static const char ping[] = "PING\r\n", pong[] = "+PONG\r\n";
	static const char get[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	const char *greet = o->proto == PROTO_REDIS ? ping : o->proto == PROTO_HTTP ? get : "h";
	const char *expect = o->proto == PROTO_REDIS ? pong : "h";
	size_t glen = strlen(greet), elen = strlen(expect);
	struct net_ep ep;
	uint64_t t0, setup_us;
	sigset_t stop;
	int *fds, sig;
	long dropped;
	char b[16];

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	/* Blocked before anything else, so that a stop that comes during the
	 * set-up waits for sigwait rather than killing the process unreported. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	if (sigprocmask(SIG_BLOCK, &stop, NULL) < 0)
		net_die("sigprocmask: %s", strerror(errno));
	fds = calloc((size_t)o->conns + 1, sizeof(*fds));
	if (!fds)
		net_die("out of memory");
	t0 = net_now_ns();
	for (long i = 0; i < o->conns; i++) {
		int err;

		fds[i] = net_connect(&ep);
		if (fds[i] < 0)
			net_die("connect %s (connection %ld): %s", o->ep, i + 1, strerror(-fds[i]));
		err = net_write_full(fds[i], greet, glen);
		if (err)
			net_die("hold: greeting on connection %ld: %s", i + 1, strerror(-err));
		if (o->proto == PROTO_HTTP) {
			http_answer(fds[i], i);
			continue;
		}
		err = net_read_full(fds[i], b, elen, NULL);
		if (err)
			net_die("hold: greeting on connection %ld: %s", i + 1, strerror(-err));
		if (memcmp(b, expect, elen) != 0)
			net_die("hold: connection %ld: unexpected answer to the greeting", i + 1);
	}
	setup_us = (net_now_ns() - t0) / 1000;
	if (o->ready)
		net_ready(o->ready, (uint16_t)0);
	while (sigwait(&stop, &sig) != 0) {
		/* sigwait only fails on a bad set; the set is fixed. */
	}
	dropped = count_readable(fds, o->conns);
	for (long i = 0; i < o->conns; i++)
		close(fds[i]);
	net_result("role=hold conns=%ld setup_us=%llu dropped=%ld", o->conns,
		   (unsigned long long)setup_us, dropped);
	free(fds);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: xio-bench-busyidle server --listen EP [--poll] [--ready FILE]\n"
		"       xio-bench-busyidle hold --connect EP --conns N [--proto echo|redis|http] "
		"[--ready FILE]\n"
		"EP is tcp:HOST:PORT or uds:PATH.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "ready", required_argument, NULL, 'r' },
		{ "conns", required_argument, NULL, 'n' },
		{ "proto", required_argument, NULL, 'p' },
		{ "poll", no_argument, NULL, 'P' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .conns = 1 };
	int ch, is_server;

	net_prog = "xio-bench-busyidle";
	/* "hold" is this program's client (net_role knows only "server" and
	 * "client"). */
	if (argc < 2 || (strcmp(argv[1], "server") && strcmp(argv[1], "hold")))
		usage();
	is_server = !strcmp(argv[1], "server");
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			if (!is_server)
				usage();
			o.ep = optarg;
			break;
		case 'c':
			if (is_server)
				usage();
			o.ep = optarg;
			break;
		case 'r':
			o.ready = optarg;
			break;
		case 'P':
			if (!is_server)
				usage();
			o.use_poll = 1;
			break;
		case 'n':
			if (is_server)
				usage();
			o.conns = net_parse_long("--conns", optarg, 0, 1000000);
			break;
		case 'p':
			if (strcmp(optarg, "redis") == 0)
				o.proto = PROTO_REDIS;
			else if (strcmp(optarg, "http") == 0)
				o.proto = PROTO_HTTP;
			else if (strcmp(optarg, "echo") != 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (!o.ep || optind < argc)
		usage();
	return is_server ? serve(&o) : hold(&o);
}
