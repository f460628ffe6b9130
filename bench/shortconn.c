/*
 * shortconn.c - xio-bench-shortconn: short connections, as an HTTP/1.0
 * client or a health check makes them: connect, one 64-byte request, its
 * 64-byte reply, close.
 *
 *   xio-bench-shortconn server --listen EP [--ready FILE]
 *   xio-bench-shortconn client --connect EP [--duration S]
 *
 * The server is a blocking accept loop in one thread: accept, read the
 * request, check it, write it back, close. The client opens connections one
 * after the other for --duration seconds, each timed from before connect
 * to after close. Request n carries n in its first and last 8 bytes; the
 * server checks that both agree and the client that the reply carries its
 * own n. A last request with the number STOP_SEQ tells the server to report
 * and exit normally (so that the shim writes its counters).
 *
 * Results (one line on stdout):
 *   role=server conns=N cpu_us=N
 *   role=client conns=N conns_per_s=X p50_ns=N p99_ns=N cpu_us=N
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MSG_SIZE 64u
#define STOP_SEQ UINT64_MAX

struct opts {
	const char *ep, *ready;
	double duration;
};

static int serve(const struct opts *o)
{
	struct net_ep ep;
	uint64_t conns = 0, cpu0 = 0, seq;
	char buf[MSG_SIZE];
	uint16_t port;
	size_t got;
	int lfd, fd, err;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	lfd = net_listen(&ep, &port);
	if (o->ready)
		net_ready(o->ready, port);
	for (;;) {
		fd = net_accept(lfd, ep.family);
		if (fd < 0)
			net_die("accept after %llu connections: %s", (unsigned long long)conns,
				strerror(-fd));
		/* From the first connection: the time before it is only waiting
		 * for the client to start. */
		if (conns++ == 0)
			cpu0 = net_cpu_us();
		err = net_read_full(fd, buf, MSG_SIZE, &got);
		if (err)
			net_die("server: reading request %llu: %s (%zu of %u bytes)",
				(unsigned long long)conns, strerror(-err), got, MSG_SIZE);
		memcpy(&seq, buf, sizeof(seq));
		if (net_check("server", buf, MSG_SIZE, seq) < 0)
			exit(1);
		err = net_write_full(fd, buf, MSG_SIZE);
		if (err)
			net_die("server: writing reply %llu: %s", (unsigned long long)conns,
				strerror(-err));
		close(fd);
		if (seq == STOP_SEQ)
			break;
	}
	net_result("role=server conns=%llu cpu_us=%llu", (unsigned long long)conns,
		   (unsigned long long)(net_cpu_us() - cpu0));
	close(lfd);
	if (ep.family == AF_UNIX)
		unlink(ep.path);
	return 0;
}

/* One connection with request seq; dies on any error. */
static void one(const struct net_ep *ep, const char *spec, uint64_t seq)
{
	char buf[MSG_SIZE];
	size_t got;
	int fd, err;

	memset(buf, 'r', sizeof(buf));
	fd = net_connect(ep);
	if (fd < 0)
		net_die("client: connect %s (connection %llu): %s", spec, (unsigned long long)seq,
			strerror(-fd));
	net_stamp(buf, MSG_SIZE, seq);
	err = net_write_full(fd, buf, MSG_SIZE);
	if (err)
		net_die("client: writing request %llu: %s", (unsigned long long)seq,
			strerror(-err));
	err = net_read_full(fd, buf, MSG_SIZE, &got);
	if (err)
		net_die("client: reading reply %llu: %s (%zu of %u bytes)",
			(unsigned long long)seq, strerror(-err), got, MSG_SIZE);
	if (net_check("client", buf, MSG_SIZE, seq) < 0)
		exit(1);
	close(fd);
}

static int client(const struct opts *o)
{
	struct net_samples s = { 0 };
	struct net_ep ep;
	uint64_t seq = 1, t0, now, end, cpu0, cpu, p50, p99;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	cpu0 = net_cpu_us();
	t0 = now = net_now_ns();
	end = t0 + (uint64_t)(o->duration * 1e9);
	while (now < end) {
		uint64_t t = now;

		one(&ep, o->ep, seq++);
		now = net_now_ns();
		net_samples_add(&s, now - t);
	}
	cpu = net_cpu_us() - cpu0;
	one(&ep, o->ep, STOP_SEQ);
	net_samples_pct(&s, &p50, &p99);
	net_result("role=client conns=%zu conns_per_s=%.1f p50_ns=%llu p99_ns=%llu cpu_us=%llu",
		   s.n, (double)s.n * 1e9 / (double)(now - t0), (unsigned long long)p50,
		   (unsigned long long)p99, (unsigned long long)cpu);
	free(s.v);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: xio-bench-shortconn server --listen EP [--ready FILE]\n"
			"       xio-bench-shortconn client --connect EP [--duration S]\n"
			"EP is tcp:HOST:PORT or uds:PATH; default 2 s.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "ready", required_argument, NULL, 'r' },
		{ "duration", required_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .duration = 2.0 };
	int ch, is_server;

	net_prog = "xio-bench-shortconn";
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
		case 'd':
			o.duration = net_parse_seconds("--duration", optarg);
			break;
		default:
			usage();
		}
	}
	if (!o.ep || optind < argc)
		usage();
	return is_server ? serve(&o) : client(&o);
}
