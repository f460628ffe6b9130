/*
 * stream.c - xio-bench-stream: one-way streaming throughput over one
 * connection.
 *
 *   xio-bench-stream server --listen EP --size N [--ready FILE]
 *   xio-bench-stream client --connect EP --size N [--duration S]
 *
 * The client (the sender) writes messages of N bytes, one write per
 * message as a program that sends records one by one does, for --duration
 * seconds, then shuts down its side. The server (the receiver) reads up to
 * 256 KiB per read, as a receiver that wants throughput does, and checks
 * the sequence number in the first and last 8 bytes of every message. At
 * the end of the stream it writes back the count of messages it received,
 * and the client's clock stops only when that count arrives and matches:
 * the rate covers the bytes delivered and checked, not the bytes buffered.
 *
 * Results (one line on stdout):
 *   role=server msgs=N bytes=N cpu_us=N
 *   role=client size=N msgs=N msgs_per_s=X gb_per_s=X cpu_us=N
 * (gb_per_s: 10^9 bytes per second of payload.)
 */
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MIN_SIZE 16u
#define MAX_SIZE (16u << 20)
#define RX_CHUNK (256u << 10)

struct opts {
	const char *ep, *ready;
	size_t size;
	double duration;
};

static int serve(const struct opts *o)
{
	struct net_ep ep;
	uint64_t seq = 1, bytes = 0, cpu0;
	size_t cap, fill = 0, off;
	uint16_t port;
	char *buf;
	int lfd, fd, err;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	/* Whole messages fit, with room for a read of RX_CHUNK after a partial
	 * one is kept. */
	cap = o->size + (o->size > RX_CHUNK ? o->size : RX_CHUNK);
	buf = malloc(cap);
	if (!buf)
		net_die("out of memory");
	lfd = net_listen(&ep, &port);
	if (o->ready)
		net_ready(o->ready, port);
	fd = net_accept(lfd, ep.family);
	if (fd < 0)
		net_die("accept: %s", strerror(-fd));
	cpu0 = net_cpu_us();
	for (;;) {
		ssize_t n = read(fd, buf + fill, cap - fill);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			net_die("server: read after %llu messages: %s", (unsigned long long)(seq - 1),
				strerror(errno));
		if (n == 0)
			break;
		fill += (size_t)n;
		bytes += (uint64_t)n;
		for (off = 0; fill - off >= o->size; off += o->size, seq++)
			if (net_check("server", buf + off, o->size, seq) < 0)
				exit(1);
		if (off) {
			memmove(buf, buf + off, fill - off);
			fill -= off;
		}
	}
	if (fill)
		net_die("server: the stream ended inside message %llu (%zu of %zu bytes)",
			(unsigned long long)seq, fill, o->size);
	seq--; /* the count of whole messages */
	err = net_write_full(fd, &seq, sizeof(seq));
	if (err)
		net_die("server: writing the count: %s", strerror(-err));
	net_result("role=server msgs=%llu bytes=%llu cpu_us=%llu", (unsigned long long)seq,
		   (unsigned long long)bytes, (unsigned long long)(net_cpu_us() - cpu0));
	close(fd);
	close(lfd);
	if (ep.family == AF_UNIX)
		unlink(ep.path);
	free(buf);
	return 0;
}

static int client(const struct opts *o)
{
	struct net_ep ep;
	uint64_t seq = 1, t0, now, end, cpu0, count = 0, sent;
	size_t got;
	char *buf;
	int fd, err;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	buf = malloc(o->size);
	if (!buf)
		net_die("out of memory");
	for (size_t k = 0; k < o->size; k++)
		buf[k] = (char)(k * 131 + 7);
	fd = net_connect(&ep);
	if (fd < 0)
		net_die("connect %s: %s", o->ep, strerror(-fd));

	cpu0 = net_cpu_us();
	t0 = now = net_now_ns();
	end = t0 + (uint64_t)(o->duration * 1e9);
	/* The clock is read every 64 messages: at 64 B a read per message
	 * would be a noticeable part of what is measured. */
	while (now < end) {
		for (int k = 0; k < 64; k++, seq++) {
			net_stamp(buf, o->size, seq);
			err = net_write_full(fd, buf, o->size);
			if (err)
				net_die("client: writing message %llu: %s", (unsigned long long)seq,
					strerror(-err));
		}
		now = net_now_ns();
	}
	sent = seq - 1;
	if (shutdown(fd, SHUT_WR) < 0)
		net_die("client: shutdown: %s", strerror(errno));
	err = net_read_full(fd, &count, sizeof(count), &got);
	if (err)
		net_die("client: reading the receiver's count: %s", strerror(-err));
	now = net_now_ns();
	if (count != sent)
		net_die("client: sent %llu messages, the receiver counted %llu",
			(unsigned long long)sent, (unsigned long long)count);
	net_result("role=client size=%zu msgs=%llu msgs_per_s=%.1f gb_per_s=%.4f cpu_us=%llu",
		   o->size, (unsigned long long)sent, (double)sent * 1e9 / (double)(now - t0),
		   (double)sent * (double)o->size / (double)(now - t0),
		   (unsigned long long)(net_cpu_us() - cpu0));
	close(fd);
	free(buf);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: xio-bench-stream server --listen EP --size N [--ready FILE]\n"
		"       xio-bench-stream client --connect EP --size N [--duration S]\n"
		"EP is tcp:HOST:PORT or uds:PATH; N is %u..%u bytes; default 1 s.\n",
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
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .duration = 1.0 };
	int ch, is_server;

	net_prog = "xio-bench-stream";
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
		default:
			usage();
		}
	}
	if (!o.ep || !o.size || optind < argc)
		usage();
	return is_server ? serve(&o) : client(&o);
}
