/*
 * attack.c - see attack.h.
 */
#include "attack.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void a_become(uid_t uid)
{
	if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0) {
		fprintf(stderr, "cannot become uid %u: %s\n", (unsigned)uid, strerror(errno));
		_exit(99);
	}
}

int a_ctl_post(int sock, uint16_t type, void *msg, size_t len, int fd)
{
	static uint32_t seq;
	struct xio_msg_hdr *h = msg;
	(void)len;
	xio_ctl_hdr(h, type, ++seq);
	return xio_ctl_send(sock, msg, fd, 0);
}

int a_ctl_call(int sock, uint16_t type, void *msg, size_t len, int fd, void *reply, int *rfd,
	       int timeout_ms)
{
	int r = a_ctl_post(sock, type, msg, len, fd);
	if (r < 0)
		return r;
	struct pollfd p = { .fd = sock, .events = POLLIN };
	r = poll(&p, 1, timeout_ms);
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
	int got = -1;
	ssize_t n = xio_ctl_recv(sock, reply, &got, 0);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : (int)n;
	if (rfd)
		*rfd = got;
	else if (got >= 0)
		close(got);
	return ((struct xio_msg_hdr *)reply)->type;
}

int a_ctl_open(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = getenv("XIO_MONITOR_SOCK");
	if (!path || strlen(path) >= sizeof(sa.sun_path))
		return -EINVAL;
	strcpy(sa.sun_path, path);
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(s);
		return -e;
	}
	struct xio_msg_hello h;
	char reply[XIO_CTL_MAX_MSG];
	memset(&h, 0, sizeof(h));
	h.pid = (uint32_t)getpid();
	int r = a_ctl_call(s, XIO_MSG_HELLO, &h, sizeof(h), -1, reply, NULL, 5000);
	if (r != XIO_MSG_OK) {
		close(s);
		return r < 0 ? r : -EPROTO;
	}
	return s;
}

int a_listen_loopback(uint16_t port, uint16_t *bound)
{
	struct sockaddr_in a = t_loopback(port);
	int one = 1, s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 64) < 0) {
		int e = errno;
		close(s);
		return -e;
	}
	if (bound)
		*bound = a_local_port(s);
	return s;
}

uint16_t a_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
		return 0;
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int a_kernel_pair(uint16_t server_port, uint16_t client_port, int *client, int *server)
{
	int one = 1, l = a_listen_loopback(server_port, NULL);
	if (l < 0)
		return l;
	struct sockaddr_in ca = t_loopback(client_port), sa = t_loopback(server_port);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r = 0;
	setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (c < 0 || bind(c, (struct sockaddr *)&ca, sizeof(ca)) < 0 ||
	    connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
	} else {
		*server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (*server < 0)
			r = -errno;
	}
	close(l);
	if (r < 0) {
		if (c >= 0)
			close(c);
		return r;
	}
	*client = c;
	return 0;
}

unsigned a_status_ms(int timeout_ms)
{
	struct xio_msg_status st;
	uint64_t t0 = t_now_ms();
	int r = xio__ctl_status(&st);
	uint64_t dt = t_now_ms() - t0;
	cr_assert_eq(r, 0, "status: %s", strerror(-r));
	cr_assert_leq(dt, (uint64_t)timeout_ms, "STATUS took %llu ms (limit %d)",
		      (unsigned long long)dt, timeout_ms);
	return (unsigned)dt;
}

const char *a_config_file(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/xio-attack-conf-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	size_t n = strlen(text);
	cr_assert_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
	return path;
}

int a_send_fd(int sock, int fd)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	char byte = 'f';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			    .msg_controllen = sizeof(u.b) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, 0) == 1 ? 0 : -errno;
}

int a_recv_fd(int sock)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			    .msg_controllen = sizeof(u.b) };
	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1)
		return -EIO;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -EIO;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

int a_private_netns(void)
{
	if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
		return -errno;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int r = 0;
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		r = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (r == 0 && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		r = -errno;
	if (s >= 0)
		close(s);
	return r;
}
