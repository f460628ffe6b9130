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
 * made at start, and a few more made on demand in another namespace. Only
 * a short-lived thread enters that namespace (setns with the fd SIOCGSKNS
 * gives, which needs CAP_SYS_ADMIN there), makes the socket and exits: the
 * event loop's thread never leaves ours, so a namespace the monitor may not
 * enter (a monitor with CAP_NET_ADMIN alone, and a namespace a user made
 * with `unshare -Urn`) costs that one pairing, which stays on TCP, never
 * the monitor (issue 15, item 9: it failed to enter, then failed to come
 * back, and aborted).
 *
 * The cache holds a few such sockets. A namespace evicted from it is
 * entered again through a process known to be in it (/proc/PID/ns/net,
 * checked to be that very namespace); when none is, the question has no
 * answer now, which is never taken for "no" (issue 15, item 10).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
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
	if (stat("/proc/self/ns/net", &st) < 0)
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

struct ns_open {
	int nsfd;
	int result; /* the netlink socket, or -errno */
};

static void *open_in_ns(void *arg)
{
	struct ns_open *o = arg;
	/* This thread alone moves; it ends here, and its namespace with it. */
	o->result = setns(o->nsfd, CLONE_NEWNET) < 0 ? -errno : open_diag();
	return NULL;
}

/* A netlink socket made in the namespace nsfd refers to. */
static int open_diag_in(int nsfd)
{
	static uint64_t refused;
	struct ns_open o = { .nsfd = nsfd, .result = -EAGAIN };
	pthread_t t;
	int r = pthread_create(&t, NULL, open_in_ns, &o);
	if (r)
		return -r;
	pthread_join(t, NULL);
	if (o.result < 0 && refused++ % 1000 == 0)
		mon_log(MON_WARN, "cannot ask the kernel in another network namespace (%s%s): its "
				  "connections stay on TCP (%llu so far)",
			strerror(-o.result),
			o.result == -EPERM ? "; entering it needs CAP_SYS_ADMIN" : "",
			(unsigned long long)refused);
	return o.result;
}

static int cache_find(uint64_t netns)
{
	for (unsigned i = 0; i < ncache; i++)
		if (cache[i].netns == netns)
			return cache[i].fd;
	return -ESRCH;
}

static int cache_put(uint64_t netns, int s)
{
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

/* A netlink socket in namespace netns, which is ref_fd's. */
static int diag_sock(int ref_fd, uint64_t netns)
{
	int s = cache_find(netns);
	if (s >= 0)
		return s;
	if (netns == own_netns) {
		s = open_diag();
	} else {
		int nsfd = ioctl(ref_fd, SIOCGSKNS);
		if (nsfd < 0)
			return -errno;
		s = open_diag_in(nsfd);
		close(nsfd);
	}
	return s < 0 ? s : cache_put(netns, s);
}

/* A netlink socket in namespace netns, entered through the first of pids
 * found in it; -EAGAIN if none is (or none may be looked at). */
static int diag_sock_via(uint64_t netns, const pid_t *pids, unsigned npids)
{
	int s = cache_find(netns); /* ours is always there (slot 0) */
	if (s >= 0)
		return s;
	for (unsigned i = 0; i < npids; i++) {
		char path[64];
		struct stat st;
		if (pids[i] <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pids[i]);
		int nsfd = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0)
			continue;
		/* The pid may have been reused by a process elsewhere: only
		 * that very namespace will do. */
		if (fstat(nsfd, &st) == 0 && (uint64_t)st.st_ino == netns)
			s = open_diag_in(nsfd);
		close(nsfd);
		if (s >= 0)
			return cache_put(netns, s);
	}
	return -EAGAIN;
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

int mon_diag_held(uint64_t netns, const pid_t *pids, unsigned npids, const struct xio_ep *local,
		  const struct xio_ep *remote)
{
	struct inet_diag_msg d;
	int s = diag_sock_via(netns, pids, npids);
	int r = s < 0 ? s : lookup(s, local, remote, &d);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	/* With no socket of that connection left, the kernel's lookup falls
	 * back to the listener at local: that one is not the side's. */
	if (d.idiag_state == TCP_LISTEN || d.id.idiag_dport != htons(remote->port))
		return 0;
	/* A socket no file refers to (closed, lingering in FIN_WAIT or
	 * TIME_WAIT) has no inode. */
	return d.idiag_inode != 0;
}

int mon_sock_cookie(int fd, uint64_t *cookie)
{
	socklen_t l = sizeof(*cookie);
	return xio_sys_getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &l);
}
