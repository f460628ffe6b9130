/*
 * soak.c - the soak test's two programs, plain POSIX sockets (run under the
 * shim by soak.sh):
 *
 *   soak server PORT           echo every byte of every connection back
 *   soak client PORT N SECONDS open N connections at once and, for SECONDS,
 *                              send each a stream of patterned bytes in
 *                              writes of mixed sizes, checking every byte
 *                              that comes back (value and order); then
 *                              drain, close, and print the totals.
 *
 * Both are event loops over one epoll set with non-blocking sockets. The
 * client keeps at most WINDOW bytes in flight per connection, so the server
 * never holds more than it can send. Exit status 0 only if every byte came
 * back right and no call failed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define WINDOW (128u * 1024)
#define MAXW 65536

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint8_t pat(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed ^ 0x9e3779b97f4a7c15ull) + i * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint8_t)(x ^ (x >> 17));
}

static void die(const char *what)
{
	fprintf(stderr, "soak: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Soft RLIMIT_NOFILE up to the hard one: N connections need N fds. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Write all of buf, waiting for room when the socket is full. */
static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t r = write(fd, buf, len);
		if (r < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			if (poll(&p, 1, 10000) <= 0)
				die("server: no room to echo for 10 s");
			continue;
		}
		if (r < 0)
			die("server: write");
		buf += r;
		len -= (size_t)r;
	}
}

static _Noreturn void server(int port)
{
	raise_nofile();
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1024) < 0)
		die("server: listen");
	nonblock(l);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = l };
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
	printf("ready\n");
	fflush(stdout);
	static char buf[MAXW];
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("server: epoll_wait");
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == l) {
				int c;
				while ((c = accept(l, NULL, NULL)) >= 0) {
					nonblock(c);
					struct epoll_event ce = { .events = EPOLLIN, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
				}
				continue;
			}
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r > 0) {
				write_all(fd, buf, (size_t)r);
			} else if (r == 0 || errno != EAGAIN) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
			}
		}
	}
}

struct conn {
	int fd;
	uint64_t seed, tx, rx, lcg;
	size_t next; /* size of the next write */
	int out;     /* EPOLLOUT wanted */
};

static size_t mixed_size(uint64_t *x)
{
	*x = *x * 6364136223846793005ull + 1442695040888963407ull;
	uint64_t r = *x >> 33;
	switch (r % 4) {
	case 0: return 1 + r % 64;        /* tiny */
	case 1: return 1 + r % 1500;      /* packet-sized */
	case 2: return 1 + r % 16384;
	default: return 1 + r % MAXW;     /* up to 64 KiB */
	}
}

static void want_out(int ep, struct conn *c, int on)
{
	if (c->out == on)
		return;
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	c->out = on;
}

static int client(int port, int n, int secs)
{
	raise_nofile();
	struct conn *cs = calloc((size_t)n, sizeof(*cs));
	int ep = epoll_create1(0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	for (int i = 0; i < n; i++) {
		struct conn *c = &cs[i];
		c->fd = socket(AF_INET, SOCK_STREAM, 0);
		if (c->fd < 0)
			die("client: socket");
		if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("client: connect");
		nonblock(c->fd);
		c->seed = (uint64_t)i * 7919 + 1;
		c->lcg = c->seed;
		c->next = mixed_size(&c->lcg);
		c->out = 1;
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	}
	static char buf[MAXW];
	struct epoll_event evs[256];
	uint64_t t0 = now_ms(), stop = t0 + (uint64_t)secs * 1000, idle_since = 0;
	int sending = 1, open = n;
	while (open > 0) {
		uint64_t t = now_ms();
		if (sending && t >= stop) {
			sending = 0; /* drain: wait for every echo */
			for (int i = 0; i < n; i++)
				want_out(ep, &cs[i], 0);
		}
		int k = epoll_wait(ep, evs, 256, 1000);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			die("client: epoll_wait");
		if (k == 0) {
			if (!idle_since)
				idle_since = t;
			else if (t - idle_since > 10000) {
				fprintf(stderr, "soak: client: nothing moved for 10 s\n");
				return 1;
			}
			continue;
		}
		idle_since = 0;
		for (int e = 0; e < k; e++) {
			struct conn *c = evs[e].data.ptr;
			if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				ssize_t r = read(c->fd, buf, sizeof(buf));
				if (r == 0 || (r < 0 && errno != EAGAIN)) {
					fprintf(stderr, "soak: client: conn %ld: %s at %llu\n",
						(long)(c - cs), r == 0 ? "end of file" : strerror(errno),
						(unsigned long long)c->rx);
					return 1;
				}
				for (ssize_t j = 0; j < r; j++)
					if ((uint8_t)buf[j] != pat(c->seed, c->rx + (uint64_t)j)) {
						fprintf(stderr, "soak: client: conn %ld: wrong byte at %llu\n",
							(long)(c - cs), (unsigned long long)(c->rx + (uint64_t)j));
						return 1;
					}
				if (r > 0)
					c->rx += (uint64_t)r;
				if (!sending && c->rx == c->tx && c->fd >= 0) {
					epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
					close(c->fd);
					c->fd = -1;
					open--;
					continue;
				}
			}
			if (sending && (evs[e].events & EPOLLOUT) && c->fd >= 0) {
				if (c->tx + c->next - c->rx > WINDOW) {
					want_out(ep, c, 0); /* wait for echoes first */
					continue;
				}
				for (size_t j = 0; j < c->next; j++)
					buf[j] = (char)pat(c->seed, c->tx + j);
				ssize_t r = write(c->fd, buf, c->next);
				if (r < 0 && errno != EAGAIN) {
					fprintf(stderr, "soak: client: write: %s\n", strerror(errno));
					return 1;
				}
				if (r > 0) {
					c->tx += (uint64_t)r;
					c->next = mixed_size(&c->lcg);
				}
			}
			/* Room in the window again: send more. */
			if (sending && c->fd >= 0 && !c->out && c->tx + c->next - c->rx <= WINDOW)
				want_out(ep, c, 1);
		}
	}
	uint64_t bytes = 0;
	for (int i = 0; i < n; i++)
		bytes += cs[i].rx;
	double s = (double)(now_ms() - t0) / 1000.0;
	printf("soak: %d connections, %.1f s, %llu bytes echoed and checked (%.1f MB/s each way), "
	       "no error\n", n, s, (unsigned long long)bytes, (double)bytes / s / 1e6);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "server") == 0)
		server(atoi(argv[2]));
	if (argc == 5 && strcmp(argv[1], "client") == 0)
		return client(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: soak server PORT | soak client PORT N SECONDS\n");
	return 2;
}
