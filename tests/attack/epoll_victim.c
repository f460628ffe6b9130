/*
 * epoll_victim.c - the server of test_epoll_hostile.c, run under the shim
 * (LD_PRELOAD) as a user of its own: a plain epoll echo server, as an event
 * loop has one, over thousands of connections, one of them hostile.
 * Commands come on fd 4, one byte each; reports go to fd 3, one line each.
 *
 *   epoll_victim
 *     Listens on 127.0.0.1 ("port N"). One epoll set, level-triggered,
 *     holds the listener, fd 4 and every connection it accepts
 *     (non-blocking). Whatever a connection sends is written back on it at
 *     once; what does not fit (a peer that does not read its echoes) is
 *     dropped and counted. A connection that reads end of file or an error
 *     is closed and counted. Its waits have no timeout: it wakes only for
 *     what its set reports, so every wait the shim counts is one the
 *     connections caused.
 *     On 'c': "conns N closed M dropped D" (connections open, connections
 *     closed, bytes of echo dropped). On 'x': "bye", then it returns from
 *     main, so the shim's XIO_STATS line is written (the test points
 *     XIO_STATS at a file).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define REP 3
#include "peer_report.h"
#define CMD 4
#define MAX_EVENTS 256

static unsigned char buf[65536];

int main(void)
{
	alarm(60); /* never outlive the test */
	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 4096) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0)
		fail("listen");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		fail("epoll_create1");
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = l };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) < 0)
		fail("epoll_ctl listener");
	ev.data.fd = CMD;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, CMD, &ev) < 0)
		fail("epoll_ctl commands");
	report("port %u", (unsigned)ntohs(a.sin_port));

	unsigned long conns = 0, closed = 0;
	unsigned long long dropped = 0;
	struct epoll_event evs[MAX_EVENTS];
	for (;;) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail("epoll_wait");
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == l) {
				int s;
				while ((s = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					ev.events = EPOLLIN;
					ev.data.fd = s;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) < 0)
						fail("epoll_ctl add");
					conns++;
				}
				if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
					fail("accept");
				continue;
			}
			if (fd == CMD) {
				char c;
				ssize_t r = read(CMD, &c, 1);
				if (r != 1 || c == 'x') {
					report("bye");
					return 0; /* through exit: the XIO_STATS line */
				}
				if (c == 'c')
					report("conns %lu closed %lu dropped %llu", conns, closed,
					       dropped);
				continue;
			}
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				close(fd);
				conns--;
				closed++;
				continue;
			}
			ssize_t w = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN && errno != EPIPE && errno != ECONNRESET)
				fail("write");
			if (w < r)
				dropped += (unsigned long long)(r - (w > 0 ? w : 0));
		}
	}
}
