/*
 * ctl_msg.c - encoding and checking of control messages (include/xio/ctl.h),
 * shared by the client library and the monitor.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "xio/ctl.h"
#include "xio/sys.h"

size_t xio_ctl_msg_size(uint16_t type)
{
	switch (type) {
	case XIO_MSG_HELLO:
		return sizeof(struct xio_msg_hello);
	case XIO_MSG_STATUS:
		return sizeof(struct xio_msg_hdr);
	case XIO_MSG_LISTEN:
	case XIO_MSG_UNLISTEN:
	case XIO_MSG_OK:
		return sizeof(struct xio_msg_id);
	case XIO_MSG_INTENT:
	case XIO_MSG_CONNECTED:
		return sizeof(struct xio_msg_intent);
	case XIO_MSG_ACCEPT:
		return sizeof(struct xio_msg_hdr);
	case XIO_MSG_CLOSE:
	case XIO_MSG_REATTACH:
		return sizeof(struct xio_msg_close);
	case XIO_MSG_ERROR:
		return sizeof(struct xio_msg_error);
	case XIO_MSG_ATTACH:
		return sizeof(struct xio_msg_attach);
	case XIO_MSG_FALLBACK:
		return sizeof(struct xio_msg_fallback);
	case XIO_MSG_STATUS_REPLY:
		return sizeof(struct xio_msg_status);
	case XIO_MSG_CONNS:
		return sizeof(struct xio_msg_conns);
	case XIO_MSG_CONN_INFO:
		return sizeof(struct xio_msg_conn_info);
	case XIO_MSG_CONNS_END:
		return sizeof(struct xio_msg_conns_end);
	default:
		return 0;
	}
}

const char *xio_fallback_reason_name(int reason)
{
	switch (reason) {
	case XIO_FB_NO_LISTENER: return "no-listener";
	case XIO_FB_ACL: return "acl";
	case XIO_FB_NOT_XIO: return "peer-not-xio";
	case XIO_FB_RESOURCES: return "no-memory";
	case XIO_FB_UNKNOWN_INTENT: return "protocol";
	case XIO_FB_BAD_SOCKET: return "bad-socket";
	case XIO_FB_LIMIT: return "limit";
	case XIO_FB_UID: return "uid";
	default: return "?";
	}
}

void xio_ctl_hdr(struct xio_msg_hdr *h, uint16_t type, uint32_t seq)
{
	h->version = XIO_CTL_VERSION;
	h->type = type;
	h->len = (uint32_t)xio_ctl_msg_size(type);
	h->seq = seq;
	h->reserved = 0;
}

/* cred: attach SCM_CREDENTIALS naming the effective uid and gid (see
 * xio_ctl_send_cred). */
static int send_msg(int sock, const void *msg, int fd, int flags, int cred)
{
	const struct xio_msg_hdr *h = msg;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = h->len };
	union {
		char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0 || cred) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = (fd >= 0 ? CMSG_SPACE(sizeof(int)) : 0) +
				   (cred ? CMSG_SPACE(sizeof(struct ucred)) : 0);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		if (fd >= 0) {
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &fd, sizeof(int));
			c = CMSG_NXTHDR(&m, c);
		}
		if (cred) {
			struct ucred cr = { .pid = xio_sys_getpid(), .uid = geteuid(),
					    .gid = getegid() };
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_CREDENTIALS;
			c->cmsg_len = CMSG_LEN(sizeof(cr));
			memcpy(CMSG_DATA(c), &cr, sizeof(cr));
		}
	}
	for (;;) {
		ssize_t r = xio_sys_sendmsg(sock, &m, flags | MSG_NOSIGNAL);
		if (r == -EINTR)
			continue;
		if (r < 0)
			return (int)r;
		return r == (ssize_t)h->len ? 0 : -EMSGSIZE;
	}
}

int xio_ctl_send(int sock, const void *msg, int fd, int flags)
{
	return send_msg(sock, msg, fd, flags, 0);
}

int xio_ctl_send_cred(int sock, const void *msg, int fd, int flags)
{
	int r = send_msg(sock, msg, fd, flags, 1);
	/* The kernel refuses credentials that do not map into the
	 * receiver's user namespace (-EINVAL: an effective uid or gid with
	 * no mapping, as in a user namespace whose maps were never written)
	 * or that it cannot check (-EPERM). Sent without, the message is
	 * judged by the real uid, which the kernel attaches itself. */
	if (r == -EINVAL || r == -EPERM)
		r = send_msg(sock, msg, fd, flags, 0);
	return r;
}

void (*xio_ctl_close_fd)(int fd);

/* Close every fd a control message carried. */
static void close_passed(struct msghdr *m)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (xio_ctl_close_fd)
				xio_ctl_close_fd(f);
			else
				xio_sys_close(f);
		}
	}
}

ssize_t xio_ctl_recv(int sock, void *buf, int *fd, int flags)
{
	return xio_ctl_recv_cred(sock, buf, fd, flags, NULL);
}

ssize_t xio_ctl_recv_cred(int sock, void *buf, int *fd, int flags, uint32_t *uid)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 4) + CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = buf, .iov_len = XIO_CTL_MAX_MSG };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			    .msg_controllen = sizeof(u.b) };
	ssize_t r;

	*fd = -1;
	if (uid)
		*uid = XIO_CTL_NO_CRED;
	do
		r = xio_sys_recvmsg(sock, &m, flags | MSG_CMSG_CLOEXEC);
	while (r == -EINTR);
	if (r == 0)
		close_passed(&m); /* an empty packet can still carry fds */
	if (r <= 0)
		return r;
	const struct xio_msg_hdr *h = buf;
	int nfds = 0;
	struct cmsghdr *rights = NULL;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_RIGHTS) {
			nfds += (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			rights = c;
		} else if (c->cmsg_type == SCM_CREDENTIALS && uid &&
			   c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
			struct ucred cr;
			memcpy(&cr, CMSG_DATA(c), sizeof(cr));
			/* pid 0: the kernel attached none when the message was
			 * sent (the receiver asked for them later), and the
			 * uid it reports then is nobody's (65534, or 0 on older
			 * kernels), not the sender's. A sender in a pid
			 * namespace the receiver cannot see shows pid 0 too:
			 * it is judged by the uid its session opened with. */
			if (cr.pid != 0)
				*uid = cr.uid;
		}
	}
	/* MSG_CTRUNC: the kernel dropped the fds it could not install here
	 * (we are at our fd limit). One fd came and another was dropped:
	 * more than one was sent, which is malformed. */
	int ctrunc = !!(m.msg_flags & MSG_CTRUNC);
	if ((m.msg_flags & MSG_TRUNC) || (size_t)r < sizeof(*h) || h->version != XIO_CTL_VERSION ||
	    h->len != (uint32_t)r || xio_ctl_msg_size(h->type) != (size_t)r || nfds > 1 ||
	    (ctrunc && nfds > 0)) {
		close_passed(&m);
		return -EBADMSG;
	}
	if (ctrunc) {
		/* The message is whole and its one fd is lost: our shortage,
		 * not the sender's fault. The caller answers it as over a
		 * limit; the sender keeps its session. */
		*fd = XIO_CTL_FD_LOST;
		return r;
	}
	if (nfds == 1)
		memcpy(fd, CMSG_DATA(rights), sizeof(int));
	return r;
}

static char captured[108];

void xio__ctl_capture_env(void)
{
	const char *p = getenv("XIO_MONITOR_SOCK");
	captured[0] = 0;
	if (p && strlen(p) < sizeof(captured))
		memcpy(captured, p, strlen(p) + 1);
	if (!captured[0])
		memcpy(captured, XIO_MONITOR_SOCK_DEFAULT, sizeof(XIO_MONITOR_SOCK_DEFAULT));
}

const char *xio_ctl_sock_path(void)
{
	if (captured[0])
		return captured;
	const char *p = getenv("XIO_MONITOR_SOCK");
	return p && *p ? p : XIO_MONITOR_SOCK_DEFAULT;
}
