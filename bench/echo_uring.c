/*
 * echo_uring.c - the io_uring baselines of the echo benchmark
 * (io_uring-tcp, io_uring-uds): the same kernel sockets as tcp and uds, with
 * every send and recv an SQE.
 *
 * The pattern is the simplest correct one, on purpose: one SQE in flight at
 * a time, io_uring_submit_and_wait() for it, then its CQE; a send that comes
 * back short or a recv that brings less than the whole message is followed
 * by another SQE for the rest. Each process has one ring at a time (queue
 * depth 8): the server one for its whole life, the client one per
 * connection, so that a connection given up with an SQE in flight takes its
 * ring, and the late CQE, with it (io_uring_queue_exit cancels it).
 */
#include "echo.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define URING_DEPTH 8

/*
 * Submit the one prepared SQE and wait for its completion. Returns the
 * CQE's res (a count or -errno), or -ETIMEDOUT if the time limit
 * interrupted the wait.
 */
static int uring_run(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int ret;

	/* -EINTR here means nothing was submitted (the kernel returns the
	 * submitted count when a signal only cut the wait short), so retrying
	 * submits the same SQE once. */
	for (;;) {
		ret = io_uring_submit_and_wait(ring, 1);
		if (ret >= 0)
			break;
		if (ret != -EINTR)
			return ret;
		if (echo_timed_out)
			return -ETIMEDOUT;
	}
	/* Normally the CQE is already there and this makes no system call. */
	for (;;) {
		ret = io_uring_wait_cqe(ring, &cqe);
		if (ret == 0)
			break;
		if (ret != -EINTR)
			return ret;
		if (echo_timed_out)
			return -ETIMEDOUT;
	}
	ret = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return ret;
}

static int uring_send_all(struct io_uring *ring, int fd, const void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		int n;

		if (!sqe)
			return -EBUSY; /* cannot happen: one SQE in flight at a time */
		io_uring_prep_send(sqe, fd, (const char *)buf + off, len - off, 0);
		n = uring_run(ring);
		if (n < 0)
			return n;
		if (n == 0)
			return -EPIPE;
		off += (size_t)n;
	}
	return 0;
}

/* As read_full() in echo_sock.c: len, 0 at a clean end, -EPIPE if the peer
 * closed mid-message, or -errno. */
static ssize_t uring_recv_full(struct io_uring *ring, int fd, void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		int n;

		if (!sqe)
			return -EBUSY;
		io_uring_prep_recv(sqe, fd, (char *)buf + off, len - off, 0);
		n = uring_run(ring);
		if (n < 0)
			return n;
		if (n == 0)
			return off == 0 ? 0 : -EPIPE;
		off += (size_t)n;
	}
	return (ssize_t)len;
}

struct uring_server {
	const char *name;
	int family;
	int lfd;
	struct io_uring ring;
	void *buf;
	size_t bufsz;
};

struct uring_client {
	const char *name;
	int fd;
	size_t size;
	struct io_uring ring;
	void *tx, *rx;
};

static int uring_server_listen(void **out, struct echo_addr *addr, int family, const char *name)
{
	struct uring_server *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->name = name;
	s->family = family;
	err = io_uring_queue_init(URING_DEPTH, &s->ring, 0);
	if (err < 0) {
		echo_err("%s server: io_uring_queue_init: %s", name, echo_strerror(err));
		goto fail_free;
	}
	s->lfd = echo_sock_listen(family, addr);
	if (s->lfd < 0) {
		err = s->lfd;
		echo_err("%s server: listen: %s", name, echo_strerror(err));
		goto fail_ring;
	}
	*out = s;
	return 0;
fail_ring:
	io_uring_queue_exit(&s->ring);
fail_free:
	free(s);
	return err;
}

static int uring_tcp_server_listen(void **out, struct echo_addr *addr)
{
	return uring_server_listen(out, addr, AF_INET, "io_uring-tcp");
}

static int uring_uds_server_listen(void **out, struct echo_addr *addr)
{
	return uring_server_listen(out, addr, AF_UNIX, "io_uring-uds");
}

static int uring_server_serve(void *srv, size_t size)
{
	struct uring_server *s = srv;
	uint64_t seq;
	int fd, err = 0;

	if (echo_buf_reserve(&s->buf, &s->bufsz, size) < 0)
		return -ENOMEM;
	/* Accepting is setup, not measured: a plain accept is enough. */
	fd = echo_sock_accept(s->lfd, s->family);
	if (fd < 0) {
		echo_err("%s server: accept: %s", s->name, echo_strerror(fd));
		return fd;
	}
	for (seq = ECHO_SEQ_FIRST;; seq++) {
		ssize_t n = uring_recv_full(&s->ring, fd, s->buf, size);

		if (n == 0)
			break;
		if (n < 0) {
			err = (int)n;
			echo_err("%s server: recv of message %llu: %s", s->name,
				 (unsigned long long)seq, echo_strerror(err));
			break;
		}
		err = echo_msg_check(s->name, "server", s->buf, size, size, seq);
		if (err)
			break;
		err = uring_send_all(&s->ring, fd, s->buf, size);
		if (err) {
			echo_err("%s server: send of message %llu: %s", s->name,
				 (unsigned long long)seq, echo_strerror(err));
			break;
		}
	}
	close(fd);
	return err;
}

static void uring_server_close(void *srv)
{
	struct uring_server *s = srv;

	close(s->lfd);
	io_uring_queue_exit(&s->ring);
	free(s->buf);
	free(s);
}

static int uring_client_open(void **out, const struct echo_addr *addr, size_t size, int family,
			     const char *name)
{
	struct uring_client *c = calloc(1, sizeof(*c));
	int err = -ENOMEM;

	if (!c)
		return -ENOMEM;
	c->name = name;
	c->size = size;
	c->tx = echo_buf_alloc(size);
	c->rx = echo_buf_alloc(size);
	if (!c->tx || !c->rx)
		goto fail_free;
	err = io_uring_queue_init(URING_DEPTH, &c->ring, 0);
	if (err < 0) {
		echo_err("%s client: io_uring_queue_init: %s", name, echo_strerror(err));
		goto fail_free;
	}
	c->fd = echo_sock_connect(family, addr);
	if (c->fd < 0) {
		err = c->fd;
		echo_err("%s client: connect: %s", name, echo_strerror(err));
		goto fail_ring;
	}
	*out = c;
	return 0;
fail_ring:
	io_uring_queue_exit(&c->ring);
fail_free:
	free(c->rx);
	free(c->tx);
	free(c);
	return err;
}

static int uring_tcp_client_open(void **out, const struct echo_addr *addr, size_t size)
{
	return uring_client_open(out, addr, size, AF_INET, "io_uring-tcp");
}

static int uring_uds_client_open(void **out, const struct echo_addr *addr, size_t size)
{
	return uring_client_open(out, addr, size, AF_UNIX, "io_uring-uds");
}

static int uring_client_roundtrip(void *cli, uint64_t seq)
{
	struct uring_client *c = cli;
	ssize_t n;
	int err;

	echo_msg_stamp(c->tx, c->size, seq);
	err = uring_send_all(&c->ring, c->fd, c->tx, c->size);
	if (err) {
		echo_err("%s client: send of message %llu: %s", c->name,
			 (unsigned long long)seq, echo_strerror(err));
		return err;
	}
	n = uring_recv_full(&c->ring, c->fd, c->rx, c->size);
	if (n <= 0) {
		err = n == 0 ? -EPIPE : (int)n;
		echo_err("%s client: recv of echo %llu: %s", c->name, (unsigned long long)seq,
			 n == 0 ? "server closed the connection" : echo_strerror(err));
		return err;
	}
	return echo_msg_check(c->name, "client", c->rx, c->size, c->size, seq);
}

static void uring_client_close(void *cli)
{
	struct uring_client *c = cli;

	/* Ring first: it may still reference the fd and the buffers. */
	io_uring_queue_exit(&c->ring);
	close(c->fd);
	free(c->rx);
	free(c->tx);
	free(c);
}

const struct echo_transport echo_uring_tcp = {
	.name = "io_uring-tcp",
	.server_listen = uring_tcp_server_listen,
	.server_serve = uring_server_serve,
	.server_close = uring_server_close,
	.client_open = uring_tcp_client_open,
	.client_roundtrip = uring_client_roundtrip,
	.client_close = uring_client_close,
};

const struct echo_transport echo_uring_uds = {
	.name = "io_uring-uds",
	.uses_path = 1,
	.server_listen = uring_uds_server_listen,
	.server_serve = uring_server_serve,
	.server_close = uring_server_close,
	.client_open = uring_uds_client_open,
	.client_roundtrip = uring_client_roundtrip,
	.client_close = uring_client_close,
};
