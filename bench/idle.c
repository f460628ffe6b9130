/*
 * idle.c - xio-bench-idle: what open but idle connections cost, as a
 * server with many quiet keep-alive clients (a connection pool, a cache
 * with idle clients) has them.
 *
 *   xio-bench-idle server --listen EP --conns N [--ready FILE] [--tick-ms T]
 *   xio-bench-idle client --connect EP --conns N [--duration S] [--tick-ms T]
 *
 * The client opens N connections and sends one byte on each, which the
 * server answers with one byte, so that every connection is set up and has
 * carried data both ways. Then neither side sends anything for --duration
 * seconds: both wait in epoll_wait over all N connections with a timeout of
 * T ms (default 100, redis's timer tick; -1 waits without a timeout), as an
 * event loop does. Each side measures its own CPU time (getrusage, all
 * threads) over that quiet time. The client then closes everything; the
 * server's quiet time ends at the first end of stream.
 *
 * Result (one line on stdout):
 *   role=server|client conns=N idle_us=N cpu_us=N
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct opts {
	const char *ep, *ready;
	long conns, tick_ms;
	double duration;
};

/* Add every fd to a new epoll set, for input. */
static int watch_all(const int *fds, long n)
{
	int epfd = epoll_create1(EPOLL_CLOEXEC);

	if (epfd < 0)
		net_die("epoll_create1: %s", strerror(errno));
	for (long i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)i };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fds[i], &ev) < 0)
			net_die("epoll_ctl: %s", strerror(errno));
	}
	return epfd;
}

static int serve(const struct opts *o)
{
	struct epoll_event evs[64];
	struct net_ep ep;
	uint64_t t0, t1 = 0, cpu0, cpu1 = 0;
	long open_conns = o->conns;
	uint16_t port;
	int lfd, epfd, *fds;
	char b;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	fds = calloc((size_t)o->conns, sizeof(*fds));
	if (!fds)
		net_die("out of memory");
	lfd = net_listen(&ep, &port);
	if (o->ready)
		net_ready(o->ready, port);
	for (long i = 0; i < o->conns; i++) {
		int err;

		fds[i] = net_accept(lfd, ep.family);
		if (fds[i] < 0)
			net_die("accept (connection %ld): %s", i + 1, strerror(-fds[i]));
		err = net_read_full(fds[i], &b, 1, NULL);
		if (!err)
			err = net_write_full(fds[i], "s", 1);
		if (err)
			net_die("server: greeting on connection %ld: %s", i + 1, strerror(-err));
	}
	epfd = watch_all(fds, o->conns);
	cpu0 = net_cpu_us();
	t0 = net_now_ns();
	while (open_conns > 0) {
		int n = epoll_wait(epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), (int)o->tick_ms);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			net_die("epoll_wait: %s", strerror(errno));
		for (int k = 0; k < n; k++) {
			long i = (long)evs[k].data.u64;
			ssize_t r = read(fds[i], &b, 1);

			if (r > 0)
				net_die("server: data on connection %ld while idle", i + 1);
			if (r < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (!cpu1) {
				cpu1 = net_cpu_us();
				t1 = net_now_ns();
			}
			epoll_ctl(epfd, EPOLL_CTL_DEL, fds[i], NULL);
			close(fds[i]);
			open_conns--;
		}
	}
	net_result("role=server conns=%ld idle_us=%llu cpu_us=%llu", o->conns,
		   (unsigned long long)((t1 - t0) / 1000), (unsigned long long)(cpu1 - cpu0));
	close(epfd);
	close(lfd);
	if (ep.family == AF_UNIX)
		unlink(ep.path);
	free(fds);
	return 0;
}

static int client(const struct opts *o)
{
	struct epoll_event evs[64];
	struct net_ep ep;
	uint64_t t0, now, end, cpu0, cpu;
	int epfd, *fds;
	char b;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	fds = calloc((size_t)o->conns, sizeof(*fds));
	if (!fds)
		net_die("out of memory");
	for (long i = 0; i < o->conns; i++) {
		int err;

		fds[i] = net_connect(&ep);
		if (fds[i] < 0)
			net_die("connect %s (connection %ld): %s", o->ep, i + 1, strerror(-fds[i]));
		err = net_write_full(fds[i], "c", 1);

		if (err)
			net_die("client: greeting on connection %ld: %s", i + 1, strerror(-err));
	}
	for (long i = 0; i < o->conns; i++) {
		int err = net_read_full(fds[i], &b, 1, NULL);

		if (err)
			net_die("client: greeting reply on connection %ld: %s", i + 1, strerror(-err));
	}
	epfd = watch_all(fds, o->conns);
	cpu0 = net_cpu_us();
	t0 = now = net_now_ns();
	end = t0 + (uint64_t)(o->duration * 1e9);
	while (now < end) {
		int n = epoll_wait(epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), (int)o->tick_ms);

		if (n < 0 && errno != EINTR)
			net_die("epoll_wait: %s", strerror(errno));
		if (n > 0)
			net_die("client: connection %ld became readable while idle",
				(long)evs[0].data.u64 + 1);
		now = net_now_ns();
	}
	cpu = net_cpu_us() - cpu0;
	for (long i = 0; i < o->conns; i++)
		close(fds[i]);
	close(epfd);
	net_result("role=client conns=%ld idle_us=%llu cpu_us=%llu", o->conns,
		   (unsigned long long)((now - t0) / 1000), (unsigned long long)cpu);
	free(fds);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: xio-bench-idle server --listen EP --conns N [--ready FILE] [--tick-ms T]\n"
		"       xio-bench-idle client --connect EP --conns N [--duration S] [--tick-ms T]\n"
		"EP is tcp:HOST:PORT or uds:PATH; defaults: 5 s, ticks of 100 ms (-1: none).\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "ready", required_argument, NULL, 'r' },
		{ "conns", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "tick-ms", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .conns = 100, .tick_ms = 100, .duration = 5.0 };
	int ch, is_server;

	net_prog = "xio-bench-idle";
	is_server = net_role(argc, argv, usage);
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
		case 'c':
			o.ep = optarg;
			break;
		case 'r':
			o.ready = optarg;
			break;
		case 'n':
			o.conns = net_parse_long("--conns", optarg, 1, 100000);
			break;
		case 'd':
			o.duration = net_parse_seconds("--duration", optarg);
			break;
		case 't':
			o.tick_ms = net_parse_long("--tick-ms", optarg, -1, 3600000);
			break;
		default:
			usage();
		}
	}
	if (!o.ep || optind < argc)
		usage();
	return is_server ? serve(&o) : client(&o);
}
