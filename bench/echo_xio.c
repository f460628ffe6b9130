/*
 * echo_xio.c - the xio rows of the echo benchmark, through the native API
 * in include/xio.h:
 *   xio     the socket-like path: xio_write() the whole message, xio_read()
 *           until all of it is back (one copy each way);
 *   xio-zc  the zero-copy path: xio_alloc() a buffer in shared memory,
 *           write only the two sequence numbers into it, xio_send() it; the
 *           peer xio_recv()s a pointer to the same memory, and the server
 *           answers with a buffer of its own before releasing the one it got.
 *
 * Both refuse to run on a connection that is not accelerated, on either
 * side: xio falls back to kernel TCP silently, by design, and the benchmark
 * must not print kernel TCP latencies under the xio name.
 */
#include "echo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <xio.h>

struct xio_server {
	const char *name;
	int zc;
	xio_listener *l;
	void *buf; /* the socket-like path's message buffer */
	size_t bufsz;
};

struct xio_client {
	const char *name;
	int zc;
	xio_conn *c;
	size_t size;
	void *tx, *rx; /* socket-like path only */
};

/* Printed when a connection is not accelerated, to point at the usual
 * cause rather than leave the reader to guess. */
static void report_not_accelerated(const char *name, const char *side)
{
	const char *sock = getenv("XIO_MONITOR_SOCK");

	echo_err("%s %s: the connection runs over kernel TCP, not xio shared memory; "
		 "refusing to report kernel latencies as %s (is xio-monitor running, and "
		 "XIO_MONITOR_SOCK=%s its socket?)",
		 name, side, name, sock ? sock : "(unset)");
}

/* xio_strerror(), except for the -ETIMEDOUT that the time limit causes. */
static const char *xstrerror(int err)
{
	return err == -ETIMEDOUT && echo_timed_out ? "time limit reached" : xio_strerror(err);
}

static void loopback(struct sockaddr_in *sin, uint16_t port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons(port);
}

/* xio_write() blocks until all of len is queued, but a short count is not
 * ruled out by a signal, so loop as for write(2). */
static int xwrite_all(xio_conn *c, const void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = xio_write(c, (const char *)buf + off, len - off);

		if (n < 0) {
			if (n != -EINTR)
				return (int)n;
			if (echo_timed_out)
				return -ETIMEDOUT;
			continue;
		}
		off += (size_t)n;
	}
	return 0;
}

/* len, 0 at a clean end, -EPIPE if the peer closed mid-message, or -errno. */
static ssize_t xread_full(xio_conn *c, void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = xio_read(c, (char *)buf + off, len - off);

		if (n == 0)
			return off == 0 ? 0 : -EPIPE;
		if (n < 0) {
			if (n != -EINTR)
				return n;
			if (echo_timed_out)
				return -ETIMEDOUT;
			continue;
		}
		off += (size_t)n;
	}
	return (ssize_t)len;
}

/* xio_recv() with the EINTR policy of the loops above. */
static ssize_t xrecv(xio_conn *c, struct xio_buf *b)
{
	for (;;) {
		ssize_t n = xio_recv(c, b);

		if (n != -EINTR)
			return n;
		if (echo_timed_out)
			return -ETIMEDOUT;
	}
}

/* xio_alloc() is not documented to return -EINTR, but treat it like the
 * others in case it does, rather than report a spurious failure. */
static int xalloc(xio_conn *c, size_t size, struct xio_buf *b)
{
	for (;;) {
		int err = xio_alloc(c, size, b);

		if (err != -EINTR)
			return err;
		if (echo_timed_out)
			return -ETIMEDOUT;
	}
}

static int xio_server_listen_common(void **out, struct echo_addr *addr, int zc, const char *name)
{
	struct xio_server *s = calloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	struct sockaddr_in sin;
	socklen_t len = sizeof(ss);
	int err;

	if (!s)
		return -ENOMEM;
	s->name = name;
	s->zc = zc;
	/* Port 0, from this (the child) process: the listener registers with
	 * the monitor as belonging to the process that calls xio_listen(). */
	loopback(&sin, 0);
	err = xio_listen(&s->l, (struct sockaddr *)&sin, sizeof(sin), 16, 0);
	if (err < 0) {
		echo_err("%s server: xio_listen: %s", name, xstrerror(err));
		goto fail_free;
	}
	err = xio_listener_addr(s->l, &ss, &len);
	if (err < 0) {
		echo_err("%s server: xio_listener_addr: %s", name, xstrerror(err));
		goto fail_close;
	}
	if (ss.ss_family != AF_INET) {
		echo_err("%s server: xio_listener_addr: family %d, not AF_INET", name,
			 ss.ss_family);
		err = -EAFNOSUPPORT;
		goto fail_close;
	}
	addr->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	*out = s;
	return 0;
fail_close:
	xio_listener_close(s->l);
fail_free:
	free(s);
	return err;
}

static int xio_server_listen(void **out, struct echo_addr *addr)
{
	return xio_server_listen_common(out, addr, 0, "xio");
}

static int xio_zc_server_listen(void **out, struct echo_addr *addr)
{
	return xio_server_listen_common(out, addr, 1, "xio-zc");
}

static int serve_copy(struct xio_server *s, xio_conn *c, size_t size)
{
	uint64_t seq;
	int err;

	for (seq = ECHO_SEQ_FIRST;; seq++) {
		ssize_t n = xread_full(c, s->buf, size);

		if (n == 0)
			return 0;
		if (n < 0) {
			echo_err("%s server: xio_read of message %llu: %s", s->name,
				 (unsigned long long)seq, xstrerror((int)n));
			return (int)n;
		}
		err = echo_msg_check(s->name, "server", s->buf, size, size, seq);
		if (err)
			return err;
		err = xwrite_all(c, s->buf, size);
		if (err) {
			echo_err("%s server: xio_write of message %llu: %s", s->name,
				 (unsigned long long)seq, xstrerror(err));
			return err;
		}
	}
}

/*
 * The zero-copy echo: the received buffer is checked where it lies, and the
 * answer is a fresh buffer with only its two sequence numbers written, sent
 * before the received one is released (as a server that builds its reply
 * from the request would).
 */
static int serve_zc(struct xio_server *s, xio_conn *c, size_t size)
{
	uint64_t seq;
	int err;

	for (seq = ECHO_SEQ_FIRST;; seq++) {
		struct xio_buf in, out;
		ssize_t n = xrecv(c, &in);
		ssize_t sent;

		if (n == 0)
			return 0;
		if (n < 0) {
			echo_err("%s server: xio_recv of message %llu: %s", s->name,
				 (unsigned long long)seq, xstrerror((int)n));
			return (int)n;
		}
		err = echo_msg_check(s->name, "server", in.data, in.len, size, seq);
		if (err) {
			xio_release(c, &in);
			return err;
		}
		err = xalloc(c, size, &out);
		if (err < 0) {
			echo_err("%s server: xio_alloc(%zu) for echo %llu: %s", s->name, size,
				 (unsigned long long)seq, xstrerror(err));
			xio_release(c, &in);
			return err;
		}
		echo_msg_stamp(out.data, size, seq);
		out.len = (uint32_t)size;
		sent = xio_send(c, &out);
		if (sent < 0) {
			echo_err("%s server: xio_send of echo %llu: %s", s->name,
				 (unsigned long long)seq, xstrerror((int)sent));
			xio_release(c, &in);
			return (int)sent;
		}
		err = xio_release(c, &in);
		if (err < 0) {
			echo_err("%s server: xio_release of message %llu: %s", s->name,
				 (unsigned long long)seq, xstrerror(err));
			return err;
		}
	}
}

static int xio_server_serve(void *srv, size_t size)
{
	struct xio_server *s = srv;
	xio_conn *c;
	int err;

	if (!s->zc && echo_buf_reserve(&s->buf, &s->bufsz, size) < 0)
		return -ENOMEM;
	/* The child has no SIGALRM handler (the time limit kills it), so
	 * -EINTR cannot come back here. */
	err = xio_accept(s->l, &c, 0);
	if (err < 0) {
		echo_err("%s server: xio_accept: %s", s->name, xstrerror(err));
		return err;
	}
	if (!xio_conn_is_accelerated(c)) {
		report_not_accelerated(s->name, "server");
		xio_close(c);
		return -EOPNOTSUPP;
	}
	err = s->zc ? serve_zc(s, c, size) : serve_copy(s, c, size);
	xio_close(c);
	return err;
}

static void xio_server_close(void *srv)
{
	struct xio_server *s = srv;

	xio_listener_close(s->l);
	free(s->buf);
	free(s);
}

static int xio_client_open_common(void **out, const struct echo_addr *addr, size_t size, int zc,
				  const char *name)
{
	struct xio_client *k = calloc(1, sizeof(*k));
	struct sockaddr_in sin;
	int err = -ENOMEM;

	if (!k)
		return -ENOMEM;
	k->name = name;
	k->zc = zc;
	k->size = size;
	if (!zc) {
		k->tx = echo_buf_alloc(size);
		k->rx = echo_buf_alloc(size);
		if (!k->tx || !k->rx)
			goto fail_free;
	}
	loopback(&sin, addr->port);
	err = xio_connect(&k->c, (struct sockaddr *)&sin, sizeof(sin), 0);
	if (err < 0) {
		echo_err("%s client: xio_connect to 127.0.0.1:%u: %s", name, addr->port,
			 xstrerror(err));
		goto fail_free;
	}
	if (!xio_conn_is_accelerated(k->c)) {
		report_not_accelerated(name, "client");
		err = -EOPNOTSUPP;
		goto fail_close;
	}
	/* Checked after connecting so that the server, which expects one
	 * connection per size, sees this one open and close and stays in step. */
	if (zc && size > xio_max_msg(k->c)) {
		echo_err("%s client: %zu-byte messages are larger than xio_max_msg() = %zu; "
			 "skipping this size",
			 name, size, xio_max_msg(k->c));
		err = -EMSGSIZE;
		goto fail_close;
	}
	*out = k;
	return 0;
fail_close:
	xio_close(k->c);
fail_free:
	free(k->rx);
	free(k->tx);
	free(k);
	return err;
}

static int xio_client_open(void **out, const struct echo_addr *addr, size_t size)
{
	return xio_client_open_common(out, addr, size, 0, "xio");
}

static int xio_zc_client_open(void **out, const struct echo_addr *addr, size_t size)
{
	return xio_client_open_common(out, addr, size, 1, "xio-zc");
}

static int xio_client_roundtrip(void *cli, uint64_t seq)
{
	struct xio_client *k = cli;
	ssize_t n;
	int err;

	echo_msg_stamp(k->tx, k->size, seq);
	err = xwrite_all(k->c, k->tx, k->size);
	if (err) {
		echo_err("%s client: xio_write of message %llu: %s", k->name,
			 (unsigned long long)seq, xstrerror(err));
		return err;
	}
	n = xread_full(k->c, k->rx, k->size);
	if (n <= 0) {
		err = n == 0 ? -EPIPE : (int)n;
		echo_err("%s client: xio_read of echo %llu: %s", k->name, (unsigned long long)seq,
			 n == 0 ? "server closed the connection" : xstrerror(err));
		return err;
	}
	return echo_msg_check(k->name, "client", k->rx, k->size, k->size, seq);
}

static int xio_zc_client_roundtrip(void *cli, uint64_t seq)
{
	struct xio_client *k = cli;
	struct xio_buf b, r;
	ssize_t n;
	int err;

	err = xalloc(k->c, k->size, &b);
	if (err < 0) {
		echo_err("%s client: xio_alloc(%zu) for message %llu: %s", k->name, k->size,
			 (unsigned long long)seq, xstrerror(err));
		return err;
	}
	if (b.cap < k->size) {
		echo_err("%s client: xio_alloc(%zu) returned a buffer of %u bytes", k->name,
			 k->size, b.cap);
		xio_release(k->c, &b);
		return -EPROTO;
	}
	/* Only the sequence numbers: the payload is produced in place, and
	 * whatever the rest of the buffer holds is what the peer gets. */
	echo_msg_stamp(b.data, k->size, seq);
	b.len = (uint32_t)k->size;
	n = xio_send(k->c, &b);
	if (n < 0) {
		echo_err("%s client: xio_send of message %llu: %s", k->name,
			 (unsigned long long)seq, xstrerror((int)n));
		return (int)n;
	}
	n = xrecv(k->c, &r);
	if (n <= 0) {
		err = n == 0 ? -EPIPE : (int)n;
		echo_err("%s client: xio_recv of echo %llu: %s", k->name, (unsigned long long)seq,
			 n == 0 ? "server closed the connection" : xstrerror(err));
		return err;
	}
	err = echo_msg_check(k->name, "client", r.data, r.len, k->size, seq);
	xio_release(k->c, &r);
	return err;
}

static void xio_client_close(void *cli)
{
	struct xio_client *k = cli;

	xio_close(k->c);
	free(k->rx);
	free(k->tx);
	free(k);
}

const struct echo_transport echo_xio = {
	.name = "xio",
	.server_listen = xio_server_listen,
	.server_serve = xio_server_serve,
	.server_close = xio_server_close,
	.client_open = xio_client_open,
	.client_roundtrip = xio_client_roundtrip,
	.client_close = xio_client_close,
};

const struct echo_transport echo_xio_zc = {
	.name = "xio-zc",
	.server_listen = xio_zc_server_listen,
	.server_serve = xio_server_serve,
	.server_close = xio_server_close,
	.client_open = xio_zc_client_open,
	.client_roundtrip = xio_zc_client_roundtrip,
	.client_close = xio_client_close,
};
