/*
 * diag.c - which socket the kernel has at an address, by one exact
 * sock_diag lookup (NETLINK_SOCK_DIAG, the interface of ss(8)), in the
 * network namespace of the socket being judged.
 *
 * The monitor asks it two things (pair.c): which listening socket would
 * take a connection to a server address, so that a registration counts
 * only while its own socket still listens there, with the options it has
 * (IPV6_V6ONLY, an exact address before a wildcard); and which socket is
 * the client end of an accepted connection, so that its INTENT is found by
 * the socket's cookie in one hash lookup, not by asking the kernel about
 * every parked intent. Sockets are named by their cookie (SO_COOKIE):
 * unique for the life of the system, never reused. And (state.c) whether
 * the socket of a side whose last known process died is still open in
 * some process (a forked child): only a side nobody holds is gone.
 *
 * A netlink socket answers for the namespace it was made in: one for ours,
 * made at start, and a few more made on demand by entering another
 * namespace for a moment (setns with the fd SIOCGSKNS gives).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "monitor.h"
#include "xio/sys.h"

#define NS_CACHE 16

static struct {
	uint64_t netns;
	int fd;
} cache[NS_CACHE];
static unsigned ncache, evict;
static int own_nsfd = -1;
static uint64_t own_netns;
static uint32_t seq;

static int open_diag(void)
{
	int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	return s < 0 ? -errno : s;
}

int mon_diag_init(void)
{
	struct stat st;
	own_nsfd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (own_nsfd < 0 || fstat(own_nsfd, &st) < 0)
		return -errno;
	own_netns = (uint64_t)st.st_ino;
	/* Ours is made now, not at the first lookup: the monitor's fd count
	 * stays flat while it runs (tests/fault checks it for leaks). */
	int s = open_diag();
	if (s < 0)
		return s;
	cache[ncache].netns = own_netns;
	cache[ncache++].fd = s;
	return 0;
}

/* A netlink socket in namespace netns, which is ref_fd's. */
static int diag_sock(int ref_fd, uint64_t netns)
{
	for (unsigned i = 0; i < ncache; i++)
		if (cache[i].netns == netns)
			return cache[i].fd;
	int s;
	if (netns == own_netns) {
		s = open_diag();
	} else {
		int nsfd = ioctl(ref_fd, SIOCGSKNS);
		if (nsfd < 0)
			return -errno;
		s = setns(nsfd, CLONE_NEWNET) < 0 ? -errno : open_diag();
		if (setns(own_nsfd, CLONE_NEWNET) < 0) {
			/* Sockets we make later would land in the wrong place. */
			mon_log(MON_ERR, "cannot return to our network namespace: %s",
				strerror(errno));
			abort();
		}
		close(nsfd);
	}
	if (s < 0)
		return s;
	unsigned i;
	if (ncache < NS_CACHE) {
		i = ncache++;
	} else {
		i = 1 + evict++ % (NS_CACHE - 1); /* slot 0 is our own namespace's */
		close(cache[i].fd);
	}
	cache[i].netns = netns;
	cache[i].fd = s;
	return s;
}

static void put_addr(__be32 dst[4], const struct xio_ep *ep)
{
	memcpy(dst, ep->addr, ep->family == AF_INET ? 4 : 16);
}

/* One exact lookup on netlink socket s: the TCP socket at local, talking
 * to remote, into *out. Returns 0, -ENOENT, or -errno. */
static int lookup(int s, const struct xio_ep *local, const struct xio_ep *remote,
		  struct inet_diag_msg *out)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req;
	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST; /* one socket, not a dump */
	req.nlh.nlmsg_seq = ++seq;
	req.r.sdiag_family = local->family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0u;
	req.r.id.idiag_sport = htons(local->port);
	req.r.id.idiag_dport = htons(remote->port);
	put_addr(req.r.id.idiag_src, local);
	put_addr(req.r.id.idiag_dst, remote);
	req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (send(s, &req, sizeof(req), 0) < 0)
		return -errno;
	/* The kernel answers within send(); a reply to an older request we
	 * gave up on may be queued before ours. */
	for (;;) {
		union {
			struct nlmsghdr h;
			char b[1024];
		} u;
		ssize_t n = recv(s, &u, sizeof(u), MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if ((size_t)n < sizeof(u.h) || !NLMSG_OK(&u.h, (size_t)n) || u.h.nlmsg_seq != seq)
			continue;
		if (u.h.nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(&u.h);
			return e->error < 0 ? e->error : -ENOENT;
		}
		if (u.h.nlmsg_type != SOCK_DIAG_BY_FAMILY ||
		    u.h.nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
			return -EPROTO;
		memcpy(out, NLMSG_DATA(&u.h), sizeof(*out));
		return 0;
	}
}

int mon_diag_cookie(int ref_fd, uint64_t netns, const struct xio_ep *local,
		    const struct xio_ep *remote, uint64_t *cookie)
{
	struct inet_diag_msg d;
	int s = diag_sock(ref_fd, netns);
	int r = s < 0 ? s : lookup(s, local, remote, &d);
	if (r == 0)
		*cookie = (uint64_t)d.id.idiag_cookie[0] | (uint64_t)d.id.idiag_cookie[1] << 32;
	return r;
}

int mon_diag_held(uint64_t netns, const struct xio_ep *local, const struct xio_ep *remote)
{
	/* A namespace we have no netlink socket for cannot be entered
	 * without an fd of it; it was asked about when the connection was
	 * paired, so it is in the cache unless evicted since. */
	struct inet_diag_msg d;
	int s = -ESRCH;
	for (unsigned i = 0; i < ncache; i++)
		if (cache[i].netns == netns)
			s = cache[i].fd;
	int r = s < 0 ? s : lookup(s, local, remote, &d);
	if (r == -ENOENT)
		return 0;
	/* A socket no file refers to (closed, lingering in FIN_WAIT or
	 * TIME_WAIT) has no inode. */
	return r < 0 ? r : d.idiag_inode != 0;
}

int mon_sock_cookie(int fd, uint64_t *cookie)
{
	socklen_t l = sizeof(*cookie);
	return xio_sys_getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &l);
}
