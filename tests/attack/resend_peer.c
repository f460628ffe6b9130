/*
 * resend_peer.c - the two plain socket programs of test_resend_block.c,
 * each run under the shim (LD_PRELOAD) as a user of its own. Commands come
 * on fd 4, one byte each; reports go to fd 3, one line each.
 *
 *   resend_peer victim MODE
 *     Listens on 127.0.0.1 ("port N"), accepts one connection ("accepted"),
 *     makes its socket non-blocking with a small send buffer. On 'f' it
 *     fills the ring: writes until EAGAIN ("filled N"). On 'w' (its peer
 *     has left shared memory meanwhile and reads nothing) it writes for a
 *     while, each write timed; looks for POLLOUT; reads what the peer sent
 *     after it left, non-blocking, then blocking; and makes one blocking
 *     write with SO_SNDTIMEO ("wrote TOTAL maxus US pollout P read R timeo
 *     ERRNO MS"). Then on 'e', MODE close: closes the socket at once
 *     ("closed TOTAL US"), and stays until 'x'; MODE poll: writes
 *     FINAL_BYTES more, waiting in poll for POLLOUT as an event loop does,
 *     then closes ("closed TOTAL US"); MODE shutdown: shuts down writing
 *     at once, checks that a write then fails with EPIPE ("closed TOTAL
 *     US"), and closes on 'x'.
 *   resend_peer peer PORT
 *     Connects with the default receive buffer ("connected"): with only the
 *     victim's send buffer set, the ring's budget is the window (as the
 *     kernel's is its autotuning) and it holds far more than the kernel
 *     socket takes (about 80 KiB here), the resend's worst case. On 'l' it moves
 *     its side back to TCP (dup2 onto fd 0), writes "pong", and 200 ms
 *     later "ping" ("left"). On 'r' it reads to the end of the stream and
 *     checks every byte against the victim's pattern ("read N ok", or
 *     "read N bad AT").
 *
 * Byte p of the victim's stream is pattern(p): a lost, repeated or
 * reordered piece shows at its first byte.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define REP 3
#include "peer_report.h"
#define CMD 4
#define CHUNK 65536
#define SMALL_BUF 16384
#define TIMED_WRITES 40
#define SNDTIMEO_MS 200
#define FINAL_BYTES (256 * 1024)

static unsigned char pattern(uint64_t p)
{
	return (unsigned char)((p ^ (p >> 8) ^ (p >> 17) ^ (p >> 27)) * 31u + 7u);
}

static void fill(unsigned char *b, size_t n, uint64_t pos)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pattern(pos + i);
}

/* The next command byte; the test ending (end of file) ends us. */
static char command(void)
{
	char c;
	ssize_t r;
	while ((r = read(CMD, &c, 1)) < 0 && errno == EINTR)
		;
	if (r != 1)
		_exit(2);
	return c;
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void set_nonblock(int s, int on)
{
	int fl = fcntl(s, F_GETFL);
	if (fl < 0 || fcntl(s, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
		fail("fcntl");
}

static unsigned char buf[CHUNK];

static int victim(const char *mode)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0)
		fail("listen");
	report("port %u", (unsigned)ntohs(a.sin_port));
	int s = accept(l, NULL, NULL);
	if (s < 0)
		fail("accept");
	close(l);
	int small = SMALL_BUF;
	setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	set_nonblock(s, 1);
	report("accepted");

	/* Everything in flight in the ring: the peer reads none of it. */
	if (command() != 'f')
		_exit(2);
	uint64_t pos = 0;
	for (;;) {
		fill(buf, CHUNK, pos);
		ssize_t n = write(s, buf, CHUNK);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			fail("fill");
		pos += (uint64_t)n;
	}
	report("filled %llu", (unsigned long long)pos);

	/* The peer left, and reads nothing: every write must come back at
	 * once, with EAGAIN or with what the kernel took. */
	if (command() != 'w')
		_exit(2);
	uint64_t maxus = 0;
	for (int i = 0; i < TIMED_WRITES; i++) {
		fill(buf, CHUNK, pos);
		uint64_t t0 = now_us();
		ssize_t n = write(s, buf, CHUNK);
		uint64_t dt = now_us() - t0;
		if (dt > maxus)
			maxus = dt;
		if (n < 0 && errno != EAGAIN)
			fail("timed write");
		if (n > 0)
			pos += (uint64_t)n;
		usleep(5000);
	}
	struct pollfd p = { .fd = s, .events = POLLOUT };
	int pollout = poll(&p, 1, 0) > 0 && (p.revents & POLLOUT);

	/* What the peer wrote after it left is there to read meanwhile:
	 * "pong" without waiting, "ping" with a blocking read. */
	char in[9] = { 0 };
	p.events = POLLIN;
	if (poll(&p, 1, 3000) != 1)
		fail("poll for pong");
	ssize_t n = read(s, in, 4);
	if (n != 4)
		fail("read pong");
	set_nonblock(s, 0);
	for (ssize_t got = 0; got < 4; got += n)
		if ((n = read(s, in + 4 + got, (size_t)(4 - got))) <= 0)
			fail("read ping");

	/* A blocking write ends with EAGAIN once SO_SNDTIMEO is up. */
	struct timeval tv = { 0, SNDTIMEO_MS * 1000 };
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	fill(buf, CHUNK, pos);
	uint64_t t0 = now_us();
	n = write(s, buf, CHUNK);
	int err = n < 0 ? errno : 0;
	uint64_t tms = (now_us() - t0) / 1000;
	if (n > 0)
		pos += (uint64_t)n;
	tv.tv_usec = 0;
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	set_nonblock(s, 1);
	report("wrote %llu maxus %llu pollout %d read %s timeo %d %llu", (unsigned long long)pos,
	       (unsigned long long)maxus, pollout, in, err, (unsigned long long)tms);

	if (command() != 'e')
		_exit(2);
	if (!strcmp(mode, "poll")) {
		/* An event loop: wait for room, write what fits. */
		uint64_t end = pos + FINAL_BYTES;
		while (pos < end) {
			p.events = POLLOUT;
			if (poll(&p, 1, 10000) != 1)
				fail("no POLLOUT while the peer reads");
			size_t want = end - pos < CHUNK ? (size_t)(end - pos) : CHUNK;
			fill(buf, want, pos);
			n = write(s, buf, want);
			if (n < 0 && errno == EAGAIN)
				continue;
			if (n <= 0)
				fail("final write");
			pos += (uint64_t)n;
		}
	}
	t0 = now_us();
	if (!strcmp(mode, "shutdown")) {
		/* The end of the stream, after what is pending. */
		if (shutdown(s, SHUT_WR) < 0)
			fail("shutdown");
		uint64_t dt = now_us() - t0;
		if (send(s, "x", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE)
			fail("a write after shutdown did not fail with EPIPE");
		report("closed %llu %llu", (unsigned long long)pos, (unsigned long long)dt);
		while (command() != 'x')
			;
		close(s);
		return 0;
	}
	close(s);
	report("closed %llu %llu", (unsigned long long)pos, (unsigned long long)(now_us() - t0));
	/* What is pending goes out in the background meanwhile. */
	while (command() != 'x')
		;
	return 0;
}

static int peer(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		fail("connect");
	report("connected");

	if (command() != 'l')
		_exit(2);
	/* On fd 0 stdio may use it behind the shim: the side moves to TCP. */
	if (dup2(s, 0) != 0)
		fail("dup2");
	report("left");
	if (write(s, "pong", 4) != 4)
		fail("write pong");
	usleep(200000);
	if (write(s, "ping", 4) != 4)
		fail("write ping");

	if (command() != 'r')
		_exit(2);
	uint64_t pos = 0;
	for (;;) {
		ssize_t n = read(s, buf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("read");
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pattern(pos + (uint64_t)i)) {
				report("read %llu bad %llu", (unsigned long long)pos,
				       (unsigned long long)(pos + (uint64_t)i));
				return 1;
			}
		pos += (uint64_t)n;
	}
	report("read %llu ok", (unsigned long long)pos);
	return 0;
}

int main(int argc, char **argv)
{
	alarm(60); /* never outlive the test */
	if (argc == 3 && !strcmp(argv[1], "victim"))
		return victim(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "peer"))
		return peer(atoi(argv[2]));
	fprintf(stderr, "usage: resend_peer victim close|poll|shutdown | peer PORT\n");
	return 2;
}
