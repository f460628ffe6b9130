/*
 * test_ctl_msg.c - control messages are versioned and length-checked, and
 * fds that come with a bad message are closed, not leaked.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "xio/ctl.h"

static int sv[2];

static void setup(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
}

static void teardown(void)
{
	close(sv[0]);
	close(sv[1]);
}

TestSuite(ctl_msg, .init = setup, .fini = teardown);

static int fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* A well-formed message with an fd arrives whole, with a working fd. */
Test(ctl_msg, roundtrip_with_fd)
{
	struct xio_msg_intent m, *in;
	char buf[XIO_CTL_MAX_MSG];
	int fd, p[2];
	cr_assert_eq(pipe(p), 0);
	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_INTENT, 7);
	m.intent = 42;
	cr_assert_eq(xio_ctl_send(sv[0], &m, p[0], 0), 0);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), (ssize_t)sizeof(m));
	in = (void *)buf;
	cr_assert_eq(in->intent, 42);
	cr_assert_eq(in->h.seq, 7);
	cr_assert(fd >= 0 && fd != p[0]);
	cr_assert_eq(write(p[1], "x", 1), 1);
	char c;
	cr_assert_eq(read(fd, &c, 1), 1);
	close(fd);
	close(p[0]);
	close(p[1]);
}

static void send_raw(const void *b, size_t len, int fd)
{
	struct iovec iov = { .iov_base = (void *)b, .iov_len = len };
	union {
		char c[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		m.msg_control = u.c;
		m.msg_controllen = sizeof(u.c);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	cr_assert_eq(sendmsg(sv[0], &m, 0), (ssize_t)len);
}

/* Wrong version, wrong length field, a short packet, an unknown type and a
 * length that does not match the type are all -EBADMSG. */
Test(ctl_msg, malformed_rejected)
{
	struct xio_msg_intent m;
	char buf[XIO_CTL_MAX_MSG];
	int fd;

	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_INTENT, 1);
	m.h.version = 99;
	send_raw(&m, sizeof(m), -1);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), -EBADMSG, "version");

	xio_ctl_hdr(&m.h, XIO_MSG_INTENT, 1);
	m.h.len = 4000;
	send_raw(&m, sizeof(m), -1);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), -EBADMSG, "len field");

	send_raw(&m, 5, -1);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), -EBADMSG, "short");

	xio_ctl_hdr(&m.h, 0x7777, 1);
	m.h.len = sizeof(m);
	send_raw(&m, sizeof(m), -1);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), -EBADMSG, "unknown type");

	xio_ctl_hdr(&m.h, XIO_MSG_ATTACH, 1); /* attach is larger than this */
	m.h.len = sizeof(m);
	send_raw(&m, sizeof(m), -1);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), -EBADMSG, "size for type");
}

/* A packet longer than any message is truncated on receive and refused. */
Test(ctl_msg, oversized_rejected)
{
	char big[XIO_CTL_MAX_MSG + 100], buf[XIO_CTL_MAX_MSG];
	int fd;
	memset(big, 0, sizeof(big));
	xio_ctl_hdr((struct xio_msg_hdr *)big, XIO_MSG_HELLO, 1);
	send_raw(big, sizeof(big), -1);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), -EBADMSG);
}

/* The fd that came with a rejected message is closed by the receiver. */
Test(ctl_msg, fd_of_bad_message_closed)
{
	struct xio_msg_intent m;
	char buf[XIO_CTL_MAX_MSG];
	int fd, p[2];
	cr_assert_eq(pipe(p), 0);
	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_INTENT, 1);
	m.h.version = 2;
	send_raw(&m, sizeof(m), p[1]);
	close(p[1]);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), -EBADMSG);
	/* Every write end closed: the read end sees end of file at once. */
	char c;
	cr_assert_eq(read(p[0], &c, 1), 0, "the passed fd leaked");
	close(p[0]);
	cr_assert(!fd_open(fd) || fd == -1);
}

/* The connection-table messages xio stat uses have fixed sizes, fit one
 * packet, and arrive whole; a CONN_INFO cut short is refused. */
Test(ctl_msg, conns_messages)
{
	char buf[XIO_CTL_MAX_MSG];
	int fd;
	struct xio_msg_conns q;
	struct xio_msg_conn_info ci, *got;
	cr_assert_eq(xio_ctl_msg_size(XIO_MSG_CONNS), sizeof(struct xio_msg_conns));
	cr_assert_eq(xio_ctl_msg_size(XIO_MSG_CONN_INFO), sizeof(struct xio_msg_conn_info));
	cr_assert_eq(xio_ctl_msg_size(XIO_MSG_CONNS_END), sizeof(struct xio_msg_conns_end));
	memset(&q, 0, sizeof(q));
	xio_ctl_hdr(&q.h, XIO_MSG_CONNS, 3);
	q.after = 77;
	cr_assert_eq(xio_ctl_send(sv[0], &q, -1, 0), 0);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), (ssize_t)sizeof(q));
	cr_assert_eq(((struct xio_msg_conns *)buf)->after, 77);

	memset(&ci, 0, sizeof(ci));
	xio_ctl_hdr(&ci.h, XIO_MSG_CONN_INFO, 3);
	ci.id = 9;
	ci.bytes[1] = 123456789012ull;
	memcpy(ci.comm[1], "redis-server", 13);
	cr_assert_eq(xio_ctl_send(sv[0], &ci, -1, 0), 0);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), (ssize_t)sizeof(ci));
	got = (void *)buf;
	cr_assert_eq(got->id, 9);
	cr_assert_eq(got->bytes[1], 123456789012ull);
	cr_assert_str_eq(got->comm[1], "redis-server");

	send_raw(&ci, sizeof(ci) - 8, -1);
	cr_assert_eq(xio_ctl_recv(sv[1], buf, &fd, 0), -EBADMSG);
	cr_assert_str_eq(xio_fallback_reason_name(XIO_FB_ACL), "acl");
	cr_assert_str_eq(xio_fallback_reason_name(0), "?");
}

/* The lowest fd number free in this process. */
static int lowest_free(void)
{
	int fd = dup(0);
	cr_assert(fd >= 0);
	close(fd);
	return fd;
}

/* 1 if no read end of the pipe whose write end is wfd is open anywhere. */
static int readers_gone(int wfd)
{
	struct pollfd pf = { .fd = wfd, .events = POLLOUT };
	return poll(&pf, 1, 0) == 1 && (pf.revents & POLLERR);
}

/* Receive with RLIMIT_NOFILE at room fds above the lowest free one. */
static ssize_t recv_with_room(int room, void *buf, int *fd)
{
	struct rlimit old, rl;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	rl = old;
	rl.rlim_cur = (rlim_t)(lowest_free() + room);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	ssize_t r = xio_ctl_recv(sv[1], buf, fd, 0);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	return r;
}

/* A receiver at its fd limit gets the message whole and is told its fd was
 * lost (MSG_CTRUNC), instead of refusing the sender as malformed. */
Test(ctl_msg, fd_lost_at_fd_limit)
{
	struct xio_msg_intent m, *in;
	char buf[XIO_CTL_MAX_MSG];
	int fd, p[2];
	cr_assert_eq(pipe(p), 0);
	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_INTENT, 3);
	m.intent = 42;
	cr_assert_eq(xio_ctl_send(sv[0], &m, p[0], 0), 0);
	int before = lowest_free();
	cr_assert_eq(recv_with_room(0, buf, &fd), (ssize_t)sizeof(m));
	cr_assert_eq(fd, XIO_CTL_FD_LOST, "fd %d", fd);
	in = (void *)buf;
	cr_assert_eq(in->intent, 42);
	cr_assert_eq(lowest_free(), before, "an fd was installed");
	/* The kernel dropped its copy: only ours of the read end is left. */
	close(p[0]);
	cr_assert(readers_gone(p[1]), "the passed fd leaked");
	close(p[1]);
}

/* Of a message with two fds, one of which came: the one that came is closed,
 * and the message is still malformed (more than one fd). */
Test(ctl_msg, fds_of_truncated_message_closed)
{
	struct xio_msg_intent m;
	char buf[XIO_CTL_MAX_MSG];
	int fd, p[2], q[2];
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(pipe(q), 0);
	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_INTENT, 4);
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	union {
		char c[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr a;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.c,
			      .msg_controllen = sizeof(u.c) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(2 * sizeof(int));
	int two[2] = { p[0], q[0] };
	memcpy(CMSG_DATA(c), two, sizeof(two));
	cr_assert_eq(sendmsg(sv[0], &msg, 0), (ssize_t)sizeof(m));
	close(p[0]);
	close(q[0]);
	int before = lowest_free();
	cr_assert_eq(recv_with_room(1, buf, &fd), -EBADMSG);
	cr_assert_eq(lowest_free(), before, "the fd that came leaked");
	cr_assert(readers_gone(p[1]), "the fd that came leaked");
	cr_assert(readers_gone(q[1]), "the fd that did not come leaked");
	close(p[1]);
	close(q[1]);
}

/* At the fd limit, a payload cut short is still malformed. */
Test(ctl_msg, truncated_payload_at_fd_limit_rejected)
{
	char big[XIO_CTL_MAX_MSG + 100], buf[XIO_CTL_MAX_MSG];
	int fd, p[2];
	cr_assert_eq(pipe(p), 0);
	memset(big, 0, sizeof(big));
	xio_ctl_hdr((struct xio_msg_hdr *)big, XIO_MSG_LISTEN, 1);
	send_raw(big, sizeof(big), p[0]);
	close(p[0]);
	cr_assert_eq(recv_with_room(0, buf, &fd), -EBADMSG);
	cr_assert_eq(fd, -1);
	close(p[1]);
}
