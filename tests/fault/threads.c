/*
 * threads.c - several threads on one connection and on one epoll set, as a
 * plain program (no Criterion: it cannot start under ThreadSanitizer,
 * Snaipe/Criterion#274). threads.sh runs it under the shim; tools/test runs
 * it again in build/tsan, where the shim is built with -fsanitize=thread.
 *
 *   1. a writer and a reader thread on each end of one connection, 8 MiB
 *      each way, every byte checked, then end of file both ways;
 *   2. three worker threads share one epoll set of eight connections
 *      (EPOLLONESHOT, re-armed after each event) and echo; every message
 *      comes back whole and in order.
 * Exit status 0 only if both hold.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BYTES_EACH_WAY (8u << 20)
#define NCONN 8
#define NWORKERS 3
#define ROUNDS 300
#define MSG 1000

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "threads: %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                  \
			exit(1);                                               \
		}                                                              \
	} while (0)

static uint8_t pat(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed ^ 0x9e3779b97f4a7c15ull) + i * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint8_t)(x ^ (x >> 17));
}

static int write_full(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* A connected pair on 127.0.0.1 in this process. */
static void pair(int *c, int *s)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 8) == 0 &&
		      getsockname(l, (struct sockaddr *)&a, &al) == 0,
	      "listen: %s", strerror(errno));
	*c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(*c, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s", strerror(errno));
	*s = accept(l, NULL, NULL);
	CHECK(*s >= 0, "accept: %s", strerror(errno));
	close(l);
}

struct stream {
	int fd;
	uint64_t seed;
	size_t done;
};

static void *send_stream(void *arg)
{
	struct stream *s = arg;
	char *buf = malloc(40000);
	while (s->done < BYTES_EACH_WAY) {
		size_t n = BYTES_EACH_WAY - s->done < 40000 ? BYTES_EACH_WAY - s->done : 40000;
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)pat(s->seed, s->done + i);
		CHECK(write_full(s->fd, buf, n) == 0, "write: %s", strerror(errno));
		s->done += n;
	}
	CHECK(shutdown(s->fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
	free(buf);
	return NULL;
}

static void *receive_stream(void *arg)
{
	struct stream *s = arg;
	char *buf = malloc(65536);
	for (;;) {
		ssize_t r = read(s->fd, buf, 65536);
		if (r < 0 && errno == EINTR)
			continue;
		CHECK(r >= 0, "read: %s", strerror(errno));
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			CHECK((uint8_t)buf[i] == pat(s->seed, s->done + (size_t)i),
			      "wrong byte at %zu", s->done + (size_t)i);
		s->done += (size_t)r;
	}
	free(buf);
	return NULL;
}

static void reader_and_writer_on_each_end(void)
{
	int c, s;
	pair(&c, &s);
	struct stream st[4] = { { c, 1, 0 }, { s, 1, 0 }, { s, 2, 0 }, { c, 2, 0 } };
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&t[i], NULL, i % 2 ? receive_stream : send_stream, &st[i]) == 0,
		      "pthread_create");
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 4; i++)
		CHECK(st[i].done == BYTES_EACH_WAY, "thread %d moved %zu bytes", i, st[i].done);
	close(c);
	close(s);
}

struct pool {
	int ep;
	atomic_int stop;
	atomic_long events;
};

static void *worker(void *arg)
{
	struct pool *p = arg;
	char buf[4096];
	while (!atomic_load(&p->stop)) {
		struct epoll_event ev;
		int n = epoll_wait(p->ep, &ev, 1, 50);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n >= 0, "epoll_wait: %s", strerror(errno));
		if (n == 0)
			continue;
		atomic_fetch_add(&p->events, 1);
		int fd = ev.data.fd;
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		CHECK(r >= 0 || errno == EAGAIN, "recv: %s", strerror(errno));
		if (r == 0)
			continue;
		if (r > 0)
			CHECK(write_full(fd, buf, (size_t)r) == 0, "echo: %s", strerror(errno));
		ev.events = EPOLLIN | EPOLLONESHOT;
		CHECK(epoll_ctl(p->ep, EPOLL_CTL_MOD, fd, &ev) == 0, "rearm: %s", strerror(errno));
	}
	return NULL;
}

static void workers_share_one_epoll_set(void)
{
	int cl[NCONN], sv[NCONN];
	struct pool p = { .ep = epoll_create1(0) };
	for (int i = 0; i < NCONN; i++) {
		pair(&cl[i], &sv[i]);
		struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.fd = sv[i] };
		CHECK(epoll_ctl(p.ep, EPOLL_CTL_ADD, sv[i], &ev) == 0, "epoll_ctl");
	}
	pthread_t t[NWORKERS];
	for (int i = 0; i < NWORKERS; i++)
		CHECK(pthread_create(&t[i], NULL, worker, &p) == 0, "pthread_create");
	char out[MSG], in[MSG];
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < NCONN; i++) {
			for (int j = 0; j < MSG; j++)
				out[j] = (char)pat((uint64_t)i, (uint64_t)round * MSG + (uint64_t)j);
			CHECK(write_full(cl[i], out, MSG) == 0, "write: %s", strerror(errno));
		}
		for (int i = 0; i < NCONN; i++) {
			size_t got = 0;
			while (got < MSG) {
				ssize_t r = read(cl[i], in + got, MSG - got);
				CHECK(r > 0, "conn %d round %d: read %zd: %s", i, round, r,
				      strerror(errno));
				got += (size_t)r;
			}
			for (int j = 0; j < MSG; j++)
				CHECK((uint8_t)in[j] == pat((uint64_t)i, (uint64_t)round * MSG + (uint64_t)j),
				      "conn %d round %d: wrong byte %d", i, round, j);
		}
	}
	atomic_store(&p.stop, 1);
	for (int i = 0; i < NWORKERS; i++)
		pthread_join(t[i], NULL);
	CHECK(atomic_load(&p.events) >= ROUNDS, "only %ld events", atomic_load(&p.events));
	for (int i = 0; i < NCONN; i++) {
		close(cl[i]);
		close(sv[i]);
	}
	close(p.ep);
}

int main(void)
{
	alarm(120);
	reader_and_writer_on_each_end();
	workers_share_one_epoll_set();
	printf("threads: 2 passed, 0 failed\n");
	return 0;
}
