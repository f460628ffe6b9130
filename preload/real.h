/*
 * real.h - the libc functions the shim wraps, resolved once with
 * dlsym(RTLD_NEXT) before any wrapper uses them. The shim's own code never
 * calls an interposed name: it calls real.X or core/'s raw syscalls.
 */
#ifndef XIO_PRELOAD_REAL_H
#define XIO_PRELOAD_REAL_H

#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#define XIO_REAL_FUNCS(X)                                                                   \
	X(int, socket, (int, int, int))                                                     \
	X(int, listen, (int, int))                                                          \
	X(int, accept, (int, struct sockaddr *, socklen_t *))                               \
	X(int, accept4, (int, struct sockaddr *, socklen_t *, int))                         \
	X(int, connect, (int, const struct sockaddr *, socklen_t))                          \
	X(ssize_t, read, (int, void *, size_t))                                             \
	X(ssize_t, write, (int, const void *, size_t))                                      \
	X(ssize_t, readv, (int, const struct iovec *, int))                                 \
	X(ssize_t, writev, (int, const struct iovec *, int))                                \
	X(ssize_t, recv, (int, void *, size_t, int))                                        \
	X(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *))    \
	X(ssize_t, recvmsg, (int, struct msghdr *, int))                                    \
	X(int, recvmmsg, (int, struct mmsghdr *, unsigned, int, struct timespec *))         \
	X(ssize_t, send, (int, const void *, size_t, int))                                  \
	X(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t)) \
	X(ssize_t, sendmsg, (int, const struct msghdr *, int))                              \
	X(int, sendmmsg, (int, struct mmsghdr *, unsigned, int))                            \
	X(ssize_t, sendfile, (int, int, off_t *, size_t))                                   \
	X(ssize_t, splice, (int, off_t *, int, off_t *, size_t, unsigned))                  \
	X(int, close, (int))                                                                \
	X(int, shutdown, (int, int))                                                        \
	X(int, dup, (int))                                                                  \
	X(int, dup2, (int, int))                                                            \
	X(int, dup3, (int, int, int))                                                       \
	X(int, fcntl, (int, int, ...))                                                      \
	X(int, ioctl, (int, unsigned long, ...))                                            \
	X(int, getsockopt, (int, int, int, void *, socklen_t *))                            \
	X(int, setsockopt, (int, int, int, const void *, socklen_t))                        \
	X(int, poll, (struct pollfd *, nfds_t, int))                                        \
	X(int, ppoll, (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *)) \
	X(int, select, (int, fd_set *, fd_set *, fd_set *, struct timeval *))               \
	X(int, pselect, (int, fd_set *, fd_set *, fd_set *, const struct timespec *,        \
			 const sigset_t *))                                                 \
	X(int, epoll_create, (int))                                                         \
	X(int, epoll_create1, (int))                                                        \
	X(int, epoll_ctl, (int, int, int, struct epoll_event *))                            \
	X(int, epoll_wait, (int, struct epoll_event *, int, int))                           \
	X(int, epoll_pwait, (int, struct epoll_event *, int, int, const sigset_t *))        \
	X(pid_t, fork, (void))                                                              \
	X(int, execve, (const char *, char *const[], char *const[]))                        \
	X(int, execv, (const char *, char *const[]))                                        \
	X(int, execvp, (const char *, char *const[]))                                       \
	X(int, execvpe, (const char *, char *const[], char *const[]))                       \
	X(int, fexecve, (int, char *const[], char *const[]))                                \
	X(FILE *, fdopen, (int, const char *))                                              \
	X(int, prctl, (int, unsigned long, unsigned long, unsigned long, unsigned long))    \
	X(long, syscall, (long, long, long, long, long, long, long))

struct xio_real {
#define XIO_REAL_FIELD(ret, name, args) ret(*name) args;
	XIO_REAL_FUNCS(XIO_REAL_FIELD)
#undef XIO_REAL_FIELD
};

extern struct xio_real xio_real;

/* Resolve everything once; cheap after the first call. */
void xio__real_init(void);

#define REAL(name) (xio_real.name)

#endif
