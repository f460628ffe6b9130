/*
 * mcload.c - xio-bench-mcload: a small memcached load generator (the text
 * protocol), standing in for memtier_benchmark, which Debian does not ship.
 *
 *   xio-bench-mcload --connect EP [--conns N] [--duration S] [--keys K]
 *                    [--value-size V] [--set-every R]
 *
 * First it stores every key once over one connection. Then N connections,
 * served by one thread through epoll as memtier's and redis-benchmark's
 * event loops do, each keep one request outstanding for --duration
 * seconds: every R-th request of a connection is a set, the others are gets
 * of random keys. The value of a key is a pattern derived from its number,
 * so every reply is known in advance byte for byte: a get must return
 * exactly "VALUE key 0 V\r\n<value>\r\nEND\r\n" and a set "STORED\r\n", and
 * anything else (a miss, an error, one wrong byte) stops the run.
 *
 * Result (one line on stdout):
 *   role=client conns=N ops=N gets=N sets=N ops_per_s=X p50_ns=N p99_ns=N cpu_us=N
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_VALUE 4096
#define REQ_CAP (MAX_VALUE + 64)
#define RESP_CAP (MAX_VALUE + 64)
#define STALL_S 10 /* seconds past the end without a reply: stuck */

struct opts {
	const char *ep;
	long conns, keys, value_size, set_every;
	double duration;
};

/* One connection: the request being written, and the reply expected. */
struct conn {
	int fd;
	int done;      /* the time is up and the last reply has come */
	uint64_t rng;  /* xorshift64 state for the key choice */
	uint64_t ops;  /* requests sent on this connection */
	uint64_t sent; /* when the current request was written (ns) */
	char req[REQ_CAP];
	size_t req_len, req_off;
	char exp[RESP_CAP]; /* the reply, byte for byte */
	size_t exp_len, got;
	char in[RESP_CAP];
};

static const struct opts *opt;
static uint64_t gets, sets;

static void value_of(long key, char *v)
{
	for (long i = 0; i < opt->value_size; i++)
		v[i] = (char)('a' + (key + i) % 26);
}

/* Build the next request of c and the reply it must get. */
static void next_request(struct conn *c)
{
	long key;
	int n;

	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	key = (long)(c->rng % (uint64_t)opt->keys);
	if (++c->ops % (uint64_t)opt->set_every == 0) {
		n = snprintf(c->req, sizeof(c->req), "set key:%06ld 0 0 %ld\r\n", key,
			     opt->value_size);
		value_of(key, c->req + n);
		memcpy(c->req + n + opt->value_size, "\r\n", 2);
		c->req_len = (size_t)n + (size_t)opt->value_size + 2;
		memcpy(c->exp, "STORED\r\n", 8);
		c->exp_len = 8;
		sets++;
	} else {
		c->req_len = (size_t)snprintf(c->req, sizeof(c->req), "get key:%06ld\r\n", key);
		n = snprintf(c->exp, sizeof(c->exp), "VALUE key:%06ld 0 %ld\r\n", key,
			     opt->value_size);
		value_of(key, c->exp + n);
		memcpy(c->exp + n + opt->value_size, "\r\nEND\r\n", 7);
		c->exp_len = (size_t)n + (size_t)opt->value_size + 7;
		gets++;
	}
	c->req_off = 0;
	c->got = 0;
}

/* Write what is left of c's request; 1 if all of it went, 0 if the socket
 * is full. Dies on errors. */
static int flush_request(struct conn *c)
{
	while (c->req_off < c->req_len) {
		ssize_t n = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);

		if (n > 0) {
			c->req_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return 0;
		} else {
			net_die("send: %s", n < 0 ? strerror(errno) : "wrote 0 bytes");
		}
	}
	return 1;
}

/* Read what has come of c's reply; 1 when it is complete and right, 0 when
 * more is to come. Any byte that differs from the expected reply ends the
 * run, at once rather than at the time limit. */
static int take_reply(struct conn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->in + c->got, sizeof(c->in) - c->got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n <= 0)
			net_die("read: %s", n < 0 ? strerror(errno) : "memcached closed the connection");
		if (c->got + (size_t)n > c->exp_len ||
		    memcmp(c->in + c->got, c->exp + c->got, (size_t)n) != 0) {
			size_t shown = c->got + (size_t)n;

			net_die("unexpected reply to '%.*s': '%.*s' (expected '%.*s')",
				(int)strcspn(c->req, "\r"), c->req, (int)(shown > 80 ? 80 : shown),
				c->in, (int)(c->exp_len > 80 ? 80 : c->exp_len), c->exp);
		}
		c->got += (size_t)n;
		if (c->got == c->exp_len)
			return 1;
	}
}

/* Store every key once, over c, blocking, before anything is timed. */
static void preload(struct conn *c)
{
	size_t got;
	int err;

	for (long key = 0; key < opt->keys; key++) {
		int n = snprintf(c->req, sizeof(c->req), "set key:%06ld 0 0 %ld\r\n", key,
				 opt->value_size);

		value_of(key, c->req + n);
		memcpy(c->req + n + opt->value_size, "\r\n", 2);
		err = net_write_full(c->fd, c->req, (size_t)n + (size_t)opt->value_size + 2);
		if (!err)
			err = net_read_full(c->fd, c->in, 8, &got);
		if (err)
			net_die("preloading key %ld: %s", key, strerror(-err));
		if (memcmp(c->in, "STORED\r\n", 8))
			net_die("preloading key %ld: '%.8s'", key, c->in);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "conns", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'd' },
		{ "keys", required_argument, NULL, 'k' },
		{ "value-size", required_argument, NULL, 'v' },
		{ "set-every", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .conns = 50, .duration = 2.0, .keys = 1000, .value_size = 64,
			  .set_every = 10 };
	struct epoll_event evs[256];
	struct net_samples s = { 0 };
	struct net_ep ep;
	struct conn *cs;
	uint64_t t0, now, end, cpu0, cpu, p50, p99;
	long live;
	int ch, epfd;

	net_prog = "xio-bench-mcload";
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.ep = optarg;
			break;
		case 'n':
			o.conns = net_parse_long("--conns", optarg, 1, 10000);
			break;
		case 'd':
			o.duration = net_parse_seconds("--duration", optarg);
			break;
		case 'k':
			o.keys = net_parse_long("--keys", optarg, 1, 999999);
			break;
		case 'v':
			o.value_size = net_parse_long("--value-size", optarg, 1, MAX_VALUE);
			break;
		case 's':
			o.set_every = net_parse_long("--set-every", optarg, 1, 1000000);
			break;
		default:
			fprintf(stderr, "usage: xio-bench-mcload --connect EP [--conns N] "
					"[--duration S] [--keys K] [--value-size V] [--set-every R]\n"
					"EP is tcp:HOST:PORT or uds:PATH; defaults: 50 connections, "
					"2 s, 1000 keys, 64-byte values, every 10th request a set.\n");
			return 2;
		}
	}
	if (!o.ep || optind < argc || net_parse(o.ep, &ep) < 0)
		net_die("bad or missing --connect (tcp:HOST:PORT or uds:PATH)");
	opt = &o;

	cs = calloc((size_t)o.conns, sizeof(*cs));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!cs || epfd < 0)
		net_die("setup: %s", strerror(errno));
	for (long i = 0; i < o.conns; i++) {
		cs[i].fd = net_connect(&ep);
		if (cs[i].fd < 0)
			net_die("connect %s (connection %ld): %s", o.ep, i + 1, strerror(-cs[i].fd));
		cs[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
	}
	preload(&cs[0]);

	cpu0 = net_cpu_us();
	t0 = now = net_now_ns();
	end = t0 + (uint64_t)(o.duration * 1e9);
	for (long i = 0; i < o.conns; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cs[i] };

		if (fcntl(cs[i].fd, F_SETFL, O_NONBLOCK) < 0 ||
		    epoll_ctl(epfd, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0)
			net_die("epoll setup: %s", strerror(errno));
		next_request(&cs[i]);
		cs[i].sent = now;
		if (!flush_request(&cs[i]))
			net_die("connection %ld: the first request did not fit the socket", i + 1);
	}
	live = o.conns;
	while (live > 0) {
		int n = epoll_wait(epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), 1000);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			net_die("epoll_wait: %s", strerror(errno));
		now = net_now_ns();
		/* A transport that stops delivering fails here with a reason,
		 * before the suite's timeout kills the run without one. */
		if (n == 0 && now > end + STALL_S * 1000000000ull)
			net_die("no reply for %d s on %ld of %ld connections", STALL_S, live,
				o.conns);
		for (int k = 0; k < n; k++) {
			struct conn *c = evs[k].data.ptr;
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

			if (c->done)
				continue;
			if (c->req_off < c->req_len) {
				/* EPOLLOUT: the rest of a request that did not fit. */
				if (flush_request(c))
					epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
				continue;
			}
			if (!take_reply(c))
				continue;
			net_samples_add(&s, now - c->sent);
			if (now >= end) {
				c->done = 1;
				live--;
				continue;
			}
			next_request(c);
			c->sent = now;
			if (!flush_request(c)) {
				ev.events = EPOLLOUT;
				epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
			}
		}
	}
	now = net_now_ns();
	cpu = net_cpu_us() - cpu0;
	for (long i = 0; i < o.conns; i++)
		close(cs[i].fd);
	close(epfd);
	net_samples_pct(&s, &p50, &p99);
	net_result("role=client conns=%ld ops=%zu gets=%llu sets=%llu ops_per_s=%.1f p50_ns=%llu "
		   "p99_ns=%llu cpu_us=%llu",
		   o.conns, s.n, (unsigned long long)gets, (unsigned long long)sets,
		   (double)s.n * 1e9 / (double)(now - t0), (unsigned long long)p50,
		   (unsigned long long)p99, (unsigned long long)cpu);
	free(s.v);
	free(cs);
	return 0;
}
