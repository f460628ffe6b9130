/*
 * crowd.c - xio-bench-crowd: many connections each doing a little, the
 * client of the suite's "crowd-many" rows (bench/suite/crowd.sh, issue
 * 16): a pool of clients that each send a few large values, all open at
 * once against one redis-server.
 *
 *   xio-bench-crowd client --connect EP --conns N [--sets K] [--size BYTES]
 *                   [--keys M]
 *
 * Opens N connections to a redis server, one after the other (blocking
 * connects, as a pool fills), so that all N are open at once; then every
 * connection sends K SETs of a BYTES-byte value (default 4 of 64 KiB), one
 * at a time, each after the "+OK" of the one before, all N connections in
 * flight together in one epoll loop (non-blocking sockets, level-
 * triggered); then closes them all. Connection i writes key "crowd:(i mod
 * M)" (M = 16 by default): the keys are overwritten rather than kept, so
 * that what redis stores stays small (M values) and its memory after the
 * run shows what the connections cost rather than what they stored.
 *
 * Any answer but "+OK\r\n", or a connection the server closes, ends the
 * program with an error: the row is then not a measurement.
 *
 * Result (one line on stdout):
 *   role=client conns=N sets=K size=BYTES connect_us=N work_us=N close_us=N
 *   total_us=N hwm_kib=N   (hwm_kib: this process's VmHWM, its peak RSS)
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

static const char ok[] = "+OK\r\n";
#define OK_LEN (sizeof(ok) - 1)

struct opts {
	const char *ep;
	long conns, sets, size, keys;
};

/* One request, as it goes on the wire. */
struct req {
	char *p;
	size_t len;
};

/* One connection: whether it is writing a request (and waits for room) or
 * reading its "+OK", how far it got in either, and how many SETs are
 * done. */
struct conn {
	int fd;
	int sending;
	size_t off;
	long done;
};

/* The RESP request "SET crowd:K <value>" for every key K < M. */
static struct req *build_requests(const struct opts *o)
{
	struct req *req = calloc((size_t)o->keys, sizeof(*req));

	if (!req)
		net_die("out of memory");
	for (long k = 0; k < o->keys; k++) {
		char head[96];
		int kl = snprintf(head, sizeof(head), "crowd:%ld", k);
		size_t hl = (size_t)snprintf(head, sizeof(head), "*3\r\n$3\r\nSET\r\n$%d\r\ncrowd:%ld\r\n$%ld\r\n",
					    kl, k, o->size);

		req[k].len = hl + (size_t)o->size + 2;
		req[k].p = malloc(req[k].len);
		if (!req[k].p)
			net_die("out of memory");
		memcpy(req[k].p, head, hl);
		for (long i = 0; i < o->size; i++)
			req[k].p[hl + (size_t)i] = (char)('a' + (k + i) % 26);
		memcpy(req[k].p + hl + (size_t)o->size, "\r\n", 2);
	}
	return req;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		net_die("fcntl O_NONBLOCK: %s", strerror(errno));
}

/* Write what is left of connection i's request. 1 when all of it has
 * gone, 0 when the socket is full (the rest waits for EPOLLOUT). */
static int send_some(struct conn *c, long i, const struct req *r)
{
	while (c->off < r->len) {
		ssize_t w = send(c->fd, r->p + c->off, r->len - c->off, MSG_NOSIGNAL);

		if (w > 0) {
			c->off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		net_die("connection %ld: SET %ld: send: %s", i + 1, c->done + 1,
			w < 0 ? strerror(errno) : "wrote nothing");
	}
	return 1;
}

/* Read what has come of connection i's answer. 1 when all of "+OK\r\n"
 * is in, 0 when more is to come. */
static int read_some(struct conn *c, long i)
{
	char b[64];

	while (c->off < OK_LEN) {
		ssize_t r = read(c->fd, b, sizeof(b));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (r <= 0)
			net_die("connection %ld: SET %ld: %s before the answer", i + 1, c->done + 1,
				r == 0 ? "the server closed the connection" : strerror(errno));
		/* One request in flight, so nothing may come past its "+OK". */
		if (c->off + (size_t)r > OK_LEN || memcmp(b, ok + c->off, (size_t)r) != 0)
			net_die("connection %ld: SET %ld: unexpected answer \"%.*s\"", i + 1,
				c->done + 1, (int)r, b);
		c->off += (size_t)r;
	}
	return 1;
}

/* Interest in output while sending, in input while waiting for the
 * answer. */
static void watch(int epfd, int op, struct conn *c, long i)
{
	struct epoll_event ev = { .events = c->sending ? EPOLLOUT : EPOLLIN, .data.u64 = (uint64_t)i };

	if (epoll_ctl(epfd, op, c->fd, &ev) < 0)
		net_die("epoll_ctl (connection %ld): %s", i + 1, strerror(errno));
}

/* Begin connection i's next SET: write it, and wait for room or for the
 * answer. op is EPOLL_CTL_ADD the first time, else EPOLL_CTL_MOD (only
 * when the interest changes). */
static void begin_set(int epfd, int op, struct conn *c, long i, const struct req *r)
{
	int was = c->sending;

	c->sending = 1;
	c->off = 0;
	if (send_some(c, i, r)) {
		c->sending = 0;
		c->off = 0;
	}
	if (op == EPOLL_CTL_ADD || was != c->sending)
		watch(epfd, op, c, i);
}

/* This process's VmHWM (peak RSS) in KiB, 0 when unknown. */
static long hwm_kib(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[128];
	long v = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

static int run(const struct opts *o)
{
	struct epoll_event evs[256];
	struct net_ep ep;
	struct req *req;
	struct conn *c;
	uint64_t t0, t1, t2, t3;
	long finished = 0;
	int epfd;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	req = build_requests(o);
	c = calloc((size_t)o->conns, sizeof(*c));
	if (!c)
		net_die("out of memory");
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		net_die("epoll_create1: %s", strerror(errno));

	t0 = net_now_ns();
	for (long i = 0; i < o->conns; i++) {
		c[i].fd = net_connect(&ep);
		if (c[i].fd < 0)
			net_die("connect %s (connection %ld of %ld): %s", o->ep, i + 1, o->conns,
				strerror(-c[i].fd));
		set_nonblock(c[i].fd);
	}
	t1 = net_now_ns();

	for (long i = 0; i < o->conns; i++)
		begin_set(epfd, EPOLL_CTL_ADD, &c[i], i, &req[i % o->keys]);
	while (finished < o->conns) {
		int n = epoll_wait(epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			net_die("epoll_wait: %s", strerror(errno));
		for (int k = 0; k < n; k++) {
			long i = (long)evs[k].data.u64;
			struct conn *x = &c[i];
			const struct req *r = &req[i % o->keys];

			if (x->sending) {
				if (send_some(x, i, r)) {
					x->sending = 0;
					x->off = 0;
					watch(epfd, EPOLL_CTL_MOD, x, i);
				}
				continue;
			}
			if (!read_some(x, i))
				continue;
			if (++x->done < o->sets) {
				begin_set(epfd, EPOLL_CTL_MOD, x, i, r);
				continue;
			}
			/* Done, but kept open until every connection is: all N
			 * stay open at once to the end of the work. */
			if (epoll_ctl(epfd, EPOLL_CTL_DEL, x->fd, NULL) < 0)
				net_die("epoll_ctl DEL (connection %ld): %s", i + 1, strerror(errno));
			finished++;
		}
	}
	t2 = net_now_ns();

	for (long i = 0; i < o->conns; i++)
		close(c[i].fd);
	t3 = net_now_ns();

	net_result("role=client conns=%ld sets=%ld size=%ld connect_us=%llu work_us=%llu "
		   "close_us=%llu total_us=%llu hwm_kib=%ld",
		   o->conns, o->sets, o->size, (unsigned long long)((t1 - t0) / 1000),
		   (unsigned long long)((t2 - t1) / 1000), (unsigned long long)((t3 - t2) / 1000),
		   (unsigned long long)((t3 - t0) / 1000), hwm_kib());
	close(epfd);
	for (long k = 0; k < o->keys; k++)
		free(req[k].p);
	free(req);
	free(c);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: xio-bench-crowd client --connect EP --conns N [--sets K] [--size BYTES] "
		"[--keys M]\n"
		"EP is tcp:HOST:PORT or uds:PATH; the server is redis.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "conns", required_argument, NULL, 'n' },
		{ "sets", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 'z' },
		{ "keys", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .conns = 1, .sets = 4, .size = 64 << 10, .keys = 16 };
	int ch;

	net_prog = "xio-bench-crowd";
	if (net_role(argc, argv, usage))
		usage();
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.ep = optarg;
			break;
		case 'n':
			o.conns = net_parse_long("--conns", optarg, 1, 1000000);
			break;
		case 's':
			o.sets = net_parse_long("--sets", optarg, 1, 1000000);
			break;
		case 'z':
			o.size = net_parse_long("--size", optarg, 1, 64L << 20);
			break;
		case 'k':
			o.keys = net_parse_long("--keys", optarg, 1, 1000000);
			break;
		default:
			usage();
		}
	}
	if (!o.ep || optind < argc)
		usage();
	return run(&o);
}
