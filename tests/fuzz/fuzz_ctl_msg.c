/*
 * fuzz_ctl_msg.c - libFuzzer harness for the control-message parser
 * (xio_ctl_recv in core/ctl_msg.c), which the monitor runs on every packet
 * any local process sends it.
 *
 * Input: byte 0 says how many fds ride along (bits 0-1: 0..3 copies of
 * /dev/null), whether to send them as one SCM_RIGHTS block or as several
 * (bit 2), and how many fds the receiver may still open (bits 3-4: 1 none,
 * 2 one, else no limit: a receiver at its fd limit gets MSG_CTRUNC); the
 * rest is the packet, sent as is over a SEQPACKET pair. The parser must
 * accept exactly the well-formed messages (the length the type demands, the
 * right version, at most one fd, or fds that were all dropped), hand out
 * the one fd or say it was lost
 * (XIO_CTL_FD_LOST, when none could be installed), and close every fd of a
 * message it refuses: afterwards the lowest free fd number is what it was
 * before the input.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "xio/ctl.h"

static int pair[2] = { -1, -1 };
static int devnull = -1;
static int lowest_free; /* the fd number dup() gives when nothing leaked */

static void setup(void)
{
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
		abort();
	int big = 1 << 20;
	setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	lowest_free = dup(devnull);
	close(lowest_free);
}

static int send_packet(const uint8_t *p, size_t n, int nfds, int split)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 3) * 3];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)p, .iov_len = n };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[3] = { devnull, devnull, devnull };
	memset(&u, 0, sizeof(u));
	if (nfds > 0) {
		m.msg_control = u.buf;
		struct cmsghdr *c = (struct cmsghdr *)u.buf;
		if (split) { /* one control message per fd */
			for (int i = 0; i < nfds; i++) {
				c->cmsg_level = SOL_SOCKET;
				c->cmsg_type = SCM_RIGHTS;
				c->cmsg_len = CMSG_LEN(sizeof(int));
				memcpy(CMSG_DATA(c), &fds[i], sizeof(int));
				m.msg_controllen += CMSG_SPACE(sizeof(int));
				c = (struct cmsghdr *)((char *)c + CMSG_SPACE(sizeof(int)));
			}
		} else {
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
			m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		}
	}
	return sendmsg(pair[0], &m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (pair[0] < 0)
		setup();
	if (size < 1 || size > 4096)
		return 0;
	int nfds = data[0] & 3, split = !!(data[0] & 4), limit = (data[0] >> 3) & 3;
	int room = limit == 1 ? 0 : limit == 2 ? 1 : 3; /* fds the receiver may open */
	if (send_packet(data + 1, size - 1, nfds, split) < 0)
		return 0;

	union {
		struct xio_msg_hdr h;
		char raw[XIO_CTL_MAX_MSG];
	} buf;
	int fd = -3;
	struct rlimit old, rl;
	if (getrlimit(RLIMIT_NOFILE, &old) < 0)
		abort();
	rl = old;
	if (room < 3) {
		rl.rlim_cur = (rlim_t)(lowest_free + room);
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			abort();
	}
	ssize_t r = xio_ctl_recv(pair[1], &buf, &fd, MSG_DONTWAIT);
	if (room < 3 && setrlimit(RLIMIT_NOFILE, &old) < 0)
		abort();
	/* Well formed: exactly a message of its type, with at most one fd, or
	 * with fds none of which could be installed here (their number is
	 * then unknown: the receiver's shortage is not the sender's fault). */
	struct xio_msg_hdr h;
	size_t n = size - 1;
	if (n >= sizeof(h))
		memcpy(&h, data + 1, sizeof(h));
	int good = n >= sizeof(h) && n <= XIO_CTL_MAX_MSG && h.version == XIO_CTL_VERSION &&
		   h.len == (uint32_t)n && xio_ctl_msg_size(h.type) == n &&
		   (nfds <= 1 || room == 0);
	if ((r > 0) != good)
		abort();
	if (r > 0) {
		if ((size_t)r != n || memcmp(&buf, data + 1, n))
			abort();
		int want = nfds == 0 ? -1 : room == 0 ? XIO_CTL_FD_LOST : 0;
		if (want == 0 ? fd < 0 : fd != want)
			abort();
		if (fd >= 0)
			close(fd);
	} else {
		if (fd != -1) /* a refused message hands out no fd */
			abort();
		if (r == 0 && size > 1)
			abort();
		if (r < 0 && r != -EBADMSG)
			abort();
	}
	/* Nothing leaked: every fd that came with the packet was closed. */
	int probe = dup(devnull);
	close(probe);
	if (probe != lowest_free)
		abort();
	return 0;
}
