/*
 * exec_peer.c - the client end of one connection that goes through exec, a
 * plain socket program (no xio header) for test_seg_views.c, which runs it
 * under the shim:
 *
 *   exec_peer connect PORT   connect to 127.0.0.1:PORT, write "r", wait for
 *                            one byte, then exec itself as "echo FD" with
 *                            the connection open on FD
 *   exec_peer echo FD        echo what FD brings until end of file, then
 *                            close it
 *
 * The new image's shim asks the monitor for the segment again (REATTACH);
 * if it cannot have it, it resets the connection. Exits 0 when all went
 * well; alarm(30) bounds it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

static int echo(int fd)
{
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "exec_peer: read: %s\n", strerror(errno));
			return 1;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				fprintf(stderr, "exec_peer: write: %s\n", strerror(errno));
				return 1;
			}
			off += w;
		}
	}
	return close(fd) == 0 ? 0 : 1;
}

static int connect_then_exec(const char *self, unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		fprintf(stderr, "exec_peer: connect: %s\n", strerror(errno));
		return 1;
	}
	char b = 'r';
	if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1) {
		fprintf(stderr, "exec_peer: no go: %s\n", strerror(errno));
		return 1;
	}
	char num[16];
	snprintf(num, sizeof(num), "%d", fd);
	char *argv[] = { (char *)self, "echo", num, NULL };
	execve(self, argv, environ);
	fprintf(stderr, "exec_peer: exec %s: %s\n", self, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	alarm(30);
	if (argc == 3 && !strcmp(argv[1], "connect"))
		return connect_then_exec(argv[0], (unsigned)atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "echo"))
		return echo(atoi(argv[2]));
	fprintf(stderr, "usage: exec_peer connect PORT | echo FD\n");
	return 2;
}
