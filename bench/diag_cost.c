/*
 * diag_cost.c - xio-bench-diag-cost: what the monitor's sock_diag lookups
 * (monitor/diag.c) cost beside what a connection costs anyway.
 *
 * Every pairing asks the kernel once which socket is at an address: the
 * listening socket a client-first connection would land on, or the client
 * end of an accepted one (docs/design.md; issue 8, item 6). This program
 * times, in one run and on the same loopback sockets:
 *   diag_listener  the lookup a client-first pairing makes;
 *   diag_client    the lookup an ACCEPT makes for the client's end;
 *   getsockname    one trivial system call, for scale;
 *   tcp_conn       a kernel TCP connection: socket, connect, accept, close
 *                  of both ends (what every xio connection also is).
 * Each is timed in batches; it prints the median and p99 of the per-call
 * time over the batches, and the lookups as a fraction of tcp_conn.
 *
 *   xio-bench-diag-cost [--batches N] [--per-batch N]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"
#include "sockinfo.h"
#include "stats.h"

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int listen_any_port(struct sockaddr_in *a)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	socklen_t l = sizeof(*a);
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || bind(s, (struct sockaddr *)a, sizeof(*a)) < 0 || listen(s, 128) < 0 ||
	    getsockname(s, (struct sockaddr *)a, &l) < 0) {
		perror("listen");
		exit(1);
	}
	return s;
}

static void tcp_conn(int lis, const struct sockaddr_in *a)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (const struct sockaddr *)a, sizeof(*a)) < 0) {
		perror("connect");
		exit(1);
	}
	int s = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0) {
		perror("accept");
		exit(1);
	}
	close(c);
	close(s);
}

enum { DIAG_LISTENER, DIAG_CLIENT, GETSOCKNAME, TCP_CONN, NKIND };
static const char *const names[NKIND] = { "diag_listener", "diag_client", "getsockname",
					  "tcp_conn" };

int main(int argc, char **argv)
{
	unsigned batches = 200, per = 100;
	static const struct option lo[] = { { "batches", required_argument, 0, 'b' },
					    { "per-batch", required_argument, 0, 'n' },
					    { 0, 0, 0, 0 } };
	for (int o; (o = getopt_long(argc, argv, "b:n:", lo, NULL)) != -1;) {
		if (o == 'b')
			batches = (unsigned)strtoul(optarg, NULL, 10);
		else if (o == 'n')
			per = (unsigned)strtoul(optarg, NULL, 10);
		else {
			fprintf(stderr, "usage: xio-bench-diag-cost [--batches N] [--per-batch N]\n");
			return 2;
		}
	}
	if (!batches || !per) {
		fprintf(stderr, "xio-bench-diag-cost: --batches and --per-batch must be > 0\n");
		return 2;
	}
	int r = mon_diag_init();
	if (r < 0) {
		fprintf(stderr, "xio-bench-diag-cost: sock_diag: %s\n", strerror(-r));
		return 1;
	}
	struct sockaddr_in a;
	int lis = listen_any_port(&a);
	int cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(cli, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		return 1;
	}
	int srv = accept4(lis, NULL, NULL, SOCK_CLOEXEC);
	struct xio_ep local, peer, from;
	uint64_t ns, cookie, want_lis, want_cli;
	if (srv < 0 || xio_sock_local(srv, &local) < 0 || xio_sock_peer(srv, &peer) < 0 ||
	    xio_sock_netns(srv, &ns) < 0 || mon_sock_cookie(lis, &want_lis) < 0 ||
	    mon_sock_cookie(cli, &want_cli) < 0) {
		fprintf(stderr, "xio-bench-diag-cost: cannot read the sockets\n");
		return 1;
	}
	from = peer;
	from.port = 0;
	/* Both lookups must find what the monitor expects, or the figure
	 * would time a failure. */
	if (mon_diag_cookie(srv, ns, &local, &from, &cookie) < 0 || cookie != want_lis ||
	    mon_diag_cookie(srv, ns, &peer, &local, &cookie) < 0 || cookie != want_cli) {
		fprintf(stderr, "xio-bench-diag-cost: a lookup did not find its socket\n");
		return 1;
	}
	uint64_t *v[NKIND];
	for (int k = 0; k < NKIND; k++)
		v[k] = calloc(batches, sizeof(uint64_t));
	/* Interleaved, so that the machine's noise falls on all alike. */
	for (unsigned b = 0; b < batches; b++)
		for (int k = 0; k < NKIND; k++) {
			uint64_t t0 = now_ns();
			for (unsigned i = 0; i < per; i++) {
				struct sockaddr_in sa;
				socklen_t sl = sizeof(sa);
				switch (k) {
				case DIAG_LISTENER: mon_diag_cookie(srv, ns, &local, &from, &cookie); break;
				case DIAG_CLIENT: mon_diag_cookie(srv, ns, &peer, &local, &cookie); break;
				case GETSOCKNAME: getsockname(srv, (struct sockaddr *)&sa, &sl); break;
				default: tcp_conn(lis, &a); break;
				}
			}
			v[k][b] = (now_ns() - t0) / per;
		}
	uint64_t med[NKIND];
	for (int k = 0; k < NKIND; k++) {
		stats_sort(v[k], batches);
		med[k] = stats_percentile(v[k], batches, 50);
		printf("%-14s p50_ns=%llu p99_ns=%llu\n", names[k], (unsigned long long)med[k],
		       (unsigned long long)stats_percentile(v[k], batches, 99));
	}
	printf("diag_listener/tcp_conn=%.3f diag_client/tcp_conn=%.3f diag_listener/getsockname=%.1f\n",
	       (double)med[DIAG_LISTENER] / (double)med[TCP_CONN],
	       (double)med[DIAG_CLIENT] / (double)med[TCP_CONN],
	       (double)med[DIAG_LISTENER] / (double)med[GETSOCKNAME]);
	return 0;
}
