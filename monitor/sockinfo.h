/*
 * sockinfo.h - what the monitor reads off a socket fd a process handed it.
 * Decision 1 of the architecture: the monitor never takes a process's word
 * for an address; it asks the kernel about the fd itself.
 */
#ifndef XIO_MONITOR_SOCKINFO_H
#define XIO_MONITOR_SOCKINFO_H

#include <stdint.h>
#include <sys/types.h>

/* A TCP endpoint address, in a form fit for hashing (zero padding). */
struct xio_ep {
	uint8_t family; /* AF_INET or AF_INET6; v4-mapped v6 becomes AF_INET */
	uint8_t pad;
	uint16_t port;  /* host order */
	uint8_t addr[16];
};

/* 0 if fd is an AF_INET/AF_INET6 TCP stream socket, else -EINVAL/-errno.
 * If listening is not NULL, *listening tells whether it listens. */
int xio_sock_check_tcp(int fd, int *listening);

/* The local (getsockname) or remote (getpeername) end of fd. */
int xio_sock_local(int fd, struct xio_ep *ep);
int xio_sock_peer(int fd, struct xio_ep *ep);

/* The network namespace of the socket (SIOCGSKNS). Returns 0, or -EPERM
 * when the monitor lacks CAP_NET_ADMIN over it: such a socket is never
 * paired (docs/design.md, trust). */
int xio_sock_netns(int fd, uint64_t *ns);
/* The network namespace of process pid (/proc/PID/ns/net). */
int xio_proc_netns(pid_t pid, uint64_t *ns);

/* "127.0.0.1:8080" */
const char *xio_ep_str(const struct xio_ep *ep, char *buf, size_t len);

#endif
