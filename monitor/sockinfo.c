/*
 * sockinfo.c - reading addresses, type and namespace off socket fds.
 */
#include "sockinfo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xio/sys.h"

int xio_sock_check_tcp(int fd, int *listening)
{
	int v;
	socklen_t l = sizeof(v);
	int r = xio_sys_getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l);
	if (r < 0)
		return r;
	if (v != SOCK_STREAM)
		return -EINVAL;
	l = sizeof(v);
	r = xio_sys_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l);
	if (r < 0)
		return r;
	if (v != AF_INET && v != AF_INET6)
		return -EINVAL;
	l = sizeof(v);
	r = xio_sys_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &l);
	if (r < 0)
		return r;
	if (v != IPPROTO_TCP)
		return -EINVAL;
	if (listening) {
		l = sizeof(v);
		r = xio_sys_getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l);
		if (r < 0)
			return r;
		*listening = v != 0;
	}
	return 0;
}

static int to_ep(const struct sockaddr_storage *ss, struct xio_ep *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;
		ep->family = AF_INET;
		ep->port = ntohs(s->sin_port);
		memcpy(ep->addr, &s->sin_addr, 4);
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;
		ep->port = ntohs(s->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
			/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d;
			 * the client's own socket says AF_INET. Make them agree. */
			ep->family = AF_INET;
			memcpy(ep->addr, &s->sin6_addr.s6_addr[12], 4);
		} else {
			ep->family = AF_INET6;
			memcpy(ep->addr, &s->sin6_addr, 16);
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

int xio_sock_local(int fd, struct xio_ep *ep)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	int r = xio_sys_getsockname(fd, (struct sockaddr *)&ss, &l);
	return r < 0 ? r : to_ep(&ss, ep);
}

int xio_sock_peer(int fd, struct xio_ep *ep)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	int r = xio_sys_getpeername(fd, (struct sockaddr *)&ss, &l);
	return r < 0 ? r : to_ep(&ss, ep);
}

int xio_proc_netns(pid_t pid, uint64_t *ns)
{
	char path[64];
	struct stat st;
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	if (stat(path, &st) < 0)
		return -errno;
	*ns = (uint64_t)st.st_ino;
	return 0;
}

int xio_sock_netns(int fd, uint64_t *ns)
{
	/* Only the socket itself can say where it lives. The namespace of the
	 * process that handed it over proves nothing: a socket made in a
	 * private namespace can be passed to a process outside it, with the
	 * 4-tuple of a connection in ours. */
	int nsfd = ioctl(fd, SIOCGSKNS);
	if (nsfd < 0)
		return -errno;
	struct stat st;
	int r = fstat(nsfd, &st);
	int e = errno;
	close(nsfd);
	if (r < 0)
		return -e;
	*ns = (uint64_t)st.st_ino;
	return 0;
}

const char *xio_ep_str(const struct xio_ep *ep, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";
	inet_ntop(ep->family, ep->addr, a, sizeof(a));
	if (ep->family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", a, ep->port);
	else
		snprintf(buf, len, "%s:%u", a, ep->port);
	return buf;
}
