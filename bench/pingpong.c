/*
 * pingpong.c - xio-bench-pingpong: round-trip latency over one connection
 * with plain blocking read and write, the way a simple RPC client and its
 * server talk.
 *
 *   xio-bench-pingpong server --listen EP --size N [--ready FILE]
 *   xio-bench-pingpong client --connect EP --size N [--duration S] [--warmup N]
 *
 * The client writes a message of N bytes and reads it back from the server,
 * again and again: a warm-up, then for --duration seconds with each round
 * trip timed alone. Every message carries its sequence number in its first
 * and last 8 bytes and both ends check it, so a transport that loses,
 * reorders or corrupts data fails the run instead of giving a number.
 *
 * Results (one line on stdout):
 *   role=server msgs=N cpu_us=N
 *   role=client size=N rts=N p50_ns=N p99_ns=N rt_per_s=X cpu_us=N
 * cpu_us is the process's own CPU time (getrusage): the client's over the
 * timed round trips only, the server's from accept to the client's close,
 * warm-up included, which is why it reports msgs to divide by.
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MIN_SIZE 16u /* two sequence numbers */
#define MAX_SIZE (16u << 20)

struct opts {
	const char *ep, *ready;
	size_t size;
	double duration;
	long warmup;
};

static int serve(const struct opts *o)
{
	struct net_ep ep;
	uint64_t seq = 1, cpu0;
	uint16_t port;
	size_t got;
	char *buf;
	int lfd, fd, err;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	buf = malloc(o->size);
	if (!buf)
		net_die("out of memory");
	lfd = net_listen(&ep, &port);
	if (o->ready)
		net_ready(o->ready, port);
	fd = net_accept(lfd, ep.family);
	if (fd < 0)
		net_die("accept: %s", strerror(-fd));
	cpu0 = net_cpu_us();
	for (;; seq++) {
		err = net_read_full(fd, buf, o->size, &got);
		if (err == -EPIPE && got == 0)
			break; /* the client is done */
		if (err)
			net_die("server: reading message %llu: %s (%zu of %zu bytes)",
				(unsigned long long)seq, strerror(-err), got, o->size);
		if (net_check("server", buf, o->size, seq) < 0)
			exit(1);
		err = net_write_full(fd, buf, o->size);
		if (err)
			net_die("server: writing message %llu: %s", (unsigned long long)seq,
				strerror(-err));
	}
	net_result("role=server msgs=%llu cpu_us=%llu", (unsigned long long)(seq - 1),
		   (unsigned long long)(net_cpu_us() - cpu0));
	close(fd);
	close(lfd);
	if (ep.family == AF_UNIX)
		unlink(ep.path);
	free(buf);
	return 0;
}

/* One round trip of message seq; dies on any error. */
static void roundtrip(int fd, char *buf, size_t size, uint64_t seq)
{
	size_t got;
	int err;

	net_stamp(buf, size, seq);
	err = net_write_full(fd, buf, size);
	if (err)
		net_die("client: writing message %llu: %s", (unsigned long long)seq,
			strerror(-err));
	err = net_read_full(fd, buf, size, &got);
	if (err)
		net_die("client: reading echo %llu: %s (%zu of %zu bytes)",
			(unsigned long long)seq, strerror(-err), got, size);
	if (net_check("client", buf, size, seq) < 0)
		exit(1);
}

static int client(const struct opts *o)
{
	struct net_samples s = { 0 };
	struct net_ep ep;
	uint64_t seq = 1, t0, now, end, cpu0, cpu, p50, p99;
	char *buf;
	long i;
	int fd;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	buf = malloc(o->size);
	if (!buf)
		net_die("out of memory");
	/* A pattern, so that the copying transports move real bytes. */
	for (size_t k = 0; k < o->size; k++)
		buf[k] = (char)(k * 131 + 7);
	fd = net_connect(&ep);
	if (fd < 0)
		net_die("connect %s: %s", o->ep, strerror(-fd));
	for (i = 0; i < o->warmup; i++)
		roundtrip(fd, buf, o->size, seq++);

	cpu0 = net_cpu_us();
	t0 = now = net_now_ns();
	end = t0 + (uint64_t)(o->duration * 1e9);
	while (now < end) {
		uint64_t t = now;

		roundtrip(fd, buf, o->size, seq++);
		now = net_now_ns();
		net_samples_add(&s, now - t);
	}
	cpu = net_cpu_us() - cpu0;
	close(fd);
	net_samples_pct(&s, &p50, &p99);
	net_result("role=client size=%zu rts=%zu p50_ns=%llu p99_ns=%llu rt_per_s=%.1f "
		   "cpu_us=%llu",
		   o->size, s.n, (unsigned long long)p50, (unsigned long long)p99,
		   (double)s.n * 1e9 / (double)(now - t0), (unsigned long long)cpu);
	free(s.v);
	free(buf);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: xio-bench-pingpong server --listen EP --size N [--ready FILE]\n"
		"       xio-bench-pingpong client --connect EP --size N [--duration S] "
		"[--warmup N]\n"
		"EP is tcp:HOST:PORT or uds:PATH; N is %u..%u bytes; defaults: 1 s, 500.\n",
		MIN_SIZE, MAX_SIZE);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "ready", required_argument, NULL, 'r' },
		{ "size", required_argument, NULL, 's' },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .duration = 1.0, .warmup = 500 };
	int ch, is_server;

	net_prog = "xio-bench-pingpong";
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
		case 's':
			o.size = (size_t)net_parse_long("--size", optarg, MIN_SIZE, MAX_SIZE);
			break;
		case 'd':
			o.duration = net_parse_seconds("--duration", optarg);
			break;
		case 'w':
			o.warmup = net_parse_long("--warmup", optarg, 0, 100000000);
			break;
		default:
			usage();
		}
	}
	if (!o.ep || !o.size || optind < argc)
		usage();
	return is_server ? serve(&o) : client(&o);
}
