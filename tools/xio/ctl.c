/*
 * ctl.c - the xio command's own control connection to the monitor: the
 * counts (STATUS) and the connection table (CONNS, page by page). One
 * request at a time, with a receive timeout so that a stuck monitor cannot
 * hang the command.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "xio_tool.h"

#define REPLY_TIMEOUT_S 3

union reply {
	struct xio_msg_hdr h;
	struct xio_msg_id id;
	struct xio_msg_status st;
	struct xio_msg_conn_info ci;
	struct xio_msg_conns_end end;
	char raw[XIO_CTL_MAX_MSG];
};

static uint32_t seq;

int xio_tool_ctl_open(const char *path, uint32_t *mon_uid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = REPLY_TIMEOUT_S };
	if (mon_uid)
		*mon_uid = XIO_CTL_NO_CRED;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	/* The rule of the shim's control client: a monitor the user's
	 * programs would not use is not used here either, and is sent
	 * nothing. */
	uint32_t uid;
	if (!xio_ctl_peer_trusted(fd, &uid)) {
		close(fd);
		if (mon_uid)
			*mon_uid = uid;
		return XIO_TOOL_UNTRUSTED;
	}
	return fd;
}

/* The next message answering request number want; stale ones are skipped. */
static int recv_reply(int fd, uint32_t want, union reply *r)
{
	for (;;) {
		int rfd = -1;
		ssize_t n = xio_ctl_recv(fd, r, &rfd, 0);
		if (rfd >= 0)
			close(rfd);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return n == -EAGAIN ? -ETIMEDOUT : (int)n;
		if (r->h.seq == want)
			return 0;
	}
}

int xio_tool_ctl_hello(int fd)
{
	struct xio_msg_hello m;
	union reply r;
	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_HELLO, ++seq);
	m.pid = (uint32_t)getpid();
	int e = xio_ctl_send_cred(fd, &m, -1, 0);
	if (e == 0)
		e = recv_reply(fd, m.h.seq, &r);
	if (e == 0 && r.h.type != XIO_MSG_OK)
		e = -EPROTO;
	return e;
}

int xio_tool_ctl_status(int fd, struct xio_msg_status *st)
{
	struct xio_msg_hdr m;
	union reply r;
	xio_ctl_hdr(&m, XIO_MSG_STATUS, ++seq);
	int e = xio_ctl_send_cred(fd, &m, -1, 0);
	if (e == 0)
		e = recv_reply(fd, m.seq, &r);
	if (e == 0 && r.h.type != XIO_MSG_STATUS_REPLY)
		e = -EPROTO;
	if (e == 0)
		*st = r.st;
	return e;
}

int xio_tool_ctl_conns(int fd, struct xio_msg_conn_info **out, size_t *n)
{
	struct xio_msg_conn_info *all = NULL;
	size_t len = 0, cap = 0;
	uint64_t after = 0;
	int e = 0, more = 1;

	while (more && e == 0) {
		struct xio_msg_conns m;
		union reply r;
		memset(&m, 0, sizeof(m));
		xio_ctl_hdr(&m.h, XIO_MSG_CONNS, ++seq);
		m.after = after;
		if ((e = xio_ctl_send_cred(fd, &m, -1, 0)) < 0)
			break;
		for (;;) {
			if ((e = recv_reply(fd, m.h.seq, &r)) < 0)
				break;
			if (r.h.type == XIO_MSG_CONNS_END) {
				more = r.end.more && r.end.last > after;
				after = r.end.last;
				break;
			}
			if (r.h.type != XIO_MSG_CONN_INFO) {
				e = -EPROTO;
				break;
			}
			if (len == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				void *p = realloc(all, ncap * sizeof(*all));
				if (!p) {
					e = -ENOMEM;
					break;
				}
				all = p;
				cap = ncap;
			}
			all[len++] = r.ci;
		}
	}
	if (e < 0) {
		free(all);
		return e;
	}
	*out = all;
	*n = len;
	return 0;
}

const char *xio_tool_ep_str(const struct xio_msg_ep *ep, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	if (ep->family == AF_INET && inet_ntop(AF_INET, ep->addr, a, sizeof(a)))
		snprintf(buf, len, "%s:%u", a, ep->port);
	else if (ep->family == AF_INET6 && inet_ntop(AF_INET6, ep->addr, a, sizeof(a)))
		snprintf(buf, len, "[%s]:%u", a, ep->port);
	else
		snprintf(buf, len, "?");
	return buf;
}
