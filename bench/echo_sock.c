/*
 * echo_sock.c - the kernel baselines of the echo benchmark: plain blocking
 * sockets over TCP on 127.0.0.1 (tcp) and over AF_UNIX SOCK_STREAM (uds),
 * and the socket setup the io_uring transports share with them.
 */
#include "echo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int echo_sock_listen(int family, struct echo_addr *addr)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int fd, err;

	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = 0; /* the kernel picks; reported through the pipe */
		len = sizeof(*sin);
	} else {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;

		sun->sun_family = AF_UNIX;
		if (strlen(addr->path) >= sizeof(sun->sun_path))
			return -ENAMETOOLONG;
		strcpy(sun->sun_path, addr->path);
		len = sizeof(*sun);
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0)
		goto fail;
	if (family == AF_INET) {
		len = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
			goto fail;
		addr->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* Without TCP_NODELAY, Nagle would hold a small echo back until the ACK of
 * the previous one: the benchmark would measure delayed-ACK timers. */
static int set_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ? -errno : 0;
}

int echo_sock_accept(int lfd, int family)
{
	int fd, err;

	do
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR && !echo_timed_out);
	if (fd < 0)
		return errno == EINTR ? -ETIMEDOUT : -errno;
	if (family == AF_INET && (err = set_nodelay(fd)) < 0) {
		close(fd);
		return err;
	}
	return fd;
}

int echo_sock_connect(int family, const struct echo_addr *addr)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int fd, err;

	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons(addr->port);
		len = sizeof(*sin);
	} else {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;

		sun->sun_family = AF_UNIX;
		if (strlen(addr->path) >= sizeof(sun->sun_path))
			return -ENAMETOOLONG;
		strcpy(sun->sun_path, addr->path);
		len = sizeof(*sun);
	}
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A connect interrupted by the time limit is abandoned, not resumed. */
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		err = errno == EINTR ? -ETIMEDOUT : -errno;
		goto fail;
	}
	if (family == AF_INET && (err = set_nodelay(fd)) < 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return err;
}

/* Blocking write of all len bytes. */
static int write_all(int fd, const void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(fd, (const char *)buf + off, len - off);

		if (n < 0) {
			if (errno != EINTR)
				return -errno;
			if (echo_timed_out)
				return -ETIMEDOUT;
			continue;
		}
		off += (size_t)n;
	}
	return 0;
}

/*
 * Blocking read of exactly len bytes. Returns len, 0 if the peer closed
 * before the first byte (the normal end of a connection), -EPIPE if it
 * closed in the middle of a message, or -errno.
 */
static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(fd, (char *)buf + off, len - off);

		if (n == 0)
			return off == 0 ? 0 : -EPIPE;
		if (n < 0) {
			if (errno != EINTR)
				return -errno;
			if (echo_timed_out)
				return -ETIMEDOUT;
			continue;
		}
		off += (size_t)n;
	}
	return (ssize_t)len;
}

struct sock_server {
	const char *name;
	int family;
	int lfd;
	void *buf;    /* one message, received and sent back as it is */
	size_t bufsz; /* grows to the largest size served */
};

struct sock_client {
	const char *name;
	int fd;
	size_t size;
	void *tx, *rx; /* separate, so that the check proves the bytes came back */
};

static int sock_server_listen(void **out, struct echo_addr *addr, int family, const char *name)
{
	struct sock_server *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->name = name;
	s->family = family;
	s->lfd = echo_sock_listen(family, addr);
	if (s->lfd < 0) {
		int err = s->lfd;

		echo_err("%s server: listen: %s", name, echo_strerror(err));
		free(s);
		return err;
	}
	*out = s;
	return 0;
}

static int tcp_server_listen(void **out, struct echo_addr *addr)
{
	return sock_server_listen(out, addr, AF_INET, "tcp");
}

static int uds_server_listen(void **out, struct echo_addr *addr)
{
	return sock_server_listen(out, addr, AF_UNIX, "uds");
}

static int sock_server_serve(void *srv, size_t size)
{
	struct sock_server *s = srv;
	uint64_t seq;
	int fd, err = 0;

	if (echo_buf_reserve(&s->buf, &s->bufsz, size) < 0)
		return -ENOMEM;
	fd = echo_sock_accept(s->lfd, s->family);
	if (fd < 0) {
		echo_err("%s server: accept: %s", s->name, echo_strerror(fd));
		return fd;
	}
	for (seq = ECHO_SEQ_FIRST;; seq++) {
		ssize_t n = read_full(fd, s->buf, size);

		if (n == 0)
			break;
		if (n < 0) {
			err = (int)n;
			echo_err("%s server: read of message %llu: %s", s->name,
				 (unsigned long long)seq, echo_strerror(err));
			break;
		}
		err = echo_msg_check(s->name, "server", s->buf, size, size, seq);
		if (err)
			break;
		err = write_all(fd, s->buf, size);
		if (err) {
			echo_err("%s server: write of message %llu: %s", s->name,
				 (unsigned long long)seq, echo_strerror(err));
			break;
		}
	}
	close(fd);
	return err;
}

static void sock_server_close(void *srv)
{
	struct sock_server *s = srv;

	close(s->lfd);
	free(s->buf);
	free(s);
}

static int sock_client_open(void **out, const struct echo_addr *addr, size_t size, int family,
			    const char *name)
{
	struct sock_client *c = calloc(1, sizeof(*c));
	int err = -ENOMEM;

	if (!c)
		return -ENOMEM;
	c->name = name;
	c->size = size;
	c->tx = echo_buf_alloc(size);
	c->rx = echo_buf_alloc(size);
	if (!c->tx || !c->rx)
		goto fail;
	c->fd = echo_sock_connect(family, addr);
	if (c->fd < 0) {
		err = c->fd;
		echo_err("%s client: connect: %s", name, echo_strerror(err));
		goto fail;
	}
	*out = c;
	return 0;
fail:
	free(c->rx);
	free(c->tx);
	free(c);
	return err;
}

static int tcp_client_open(void **out, const struct echo_addr *addr, size_t size)
{
	return sock_client_open(out, addr, size, AF_INET, "tcp");
}

static int uds_client_open(void **out, const struct echo_addr *addr, size_t size)
{
	return sock_client_open(out, addr, size, AF_UNIX, "uds");
}

static int sock_client_roundtrip(void *cli, uint64_t seq)
{
	struct sock_client *c = cli;
	ssize_t n;
	int err;

	echo_msg_stamp(c->tx, c->size, seq);
	err = write_all(c->fd, c->tx, c->size);
	if (err) {
		echo_err("%s client: write of message %llu: %s", c->name,
			 (unsigned long long)seq, echo_strerror(err));
		return err;
	}
	n = read_full(c->fd, c->rx, c->size);
	if (n <= 0) {
		err = n == 0 ? -EPIPE : (int)n;
		echo_err("%s client: read of echo %llu: %s", c->name, (unsigned long long)seq,
			 n == 0 ? "server closed the connection" : echo_strerror(err));
		return err;
	}
	return echo_msg_check(c->name, "client", c->rx, c->size, c->size, seq);
}

static void sock_client_close(void *cli)
{
	struct sock_client *c = cli;

	close(c->fd);
	free(c->rx);
	free(c->tx);
	free(c);
}

const struct echo_transport echo_tcp = {
	.name = "tcp",
	.server_listen = tcp_server_listen,
	.server_serve = sock_server_serve,
	.server_close = sock_server_close,
	.client_open = tcp_client_open,
	.client_roundtrip = sock_client_roundtrip,
	.client_close = sock_client_close,
};

const struct echo_transport echo_uds = {
	.name = "uds",
	.uses_path = 1,
	.server_listen = uds_server_listen,
	.server_serve = sock_server_serve,
	.server_close = sock_server_close,
	.client_open = uds_client_open,
	.client_roundtrip = sock_client_roundtrip,
	.client_close = sock_client_close,
};
