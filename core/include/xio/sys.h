/*
 * sys.h - the system calls core/ makes, as raw syscalls returning -errno.
 *
 * Why raw: core/ is linked into libxio_preload.so, which interposes
 * socket(), send(), poll()... A libc call from core/ would land in the shim's
 * own wrappers (recursion), and libc's wrappers set errno, which core/ must
 * never change (see docs/design.md, "Errors"). So core/ talks to the kernel
 * directly. Only the calls core/ and monitor/ need are here.
 */
#ifndef XIO_CORE_SYS_H
#define XIO_CORE_SYS_H

#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
static inline long xio__syscall6(long n, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#else
#include <errno.h>
/* Portable fallback: libc's syscall(), with errno saved and restored. */
static inline long xio__syscall6(long n, long a, long b, long c, long d, long e, long f)
{
	int saved = errno;
	long ret = syscall(n, a, b, c, d, e, f);
	if (ret == -1)
		ret = -errno;
	errno = saved;
	return ret;
}
#endif

#define XIO__SC(n, a, b, c, d, e, f)                                                        \
	xio__syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

static inline ssize_t xio_sys_read(int fd, void *buf, size_t len)
{
	return XIO__SC(SYS_read, fd, buf, len, 0, 0, 0);
}
static inline ssize_t xio_sys_write(int fd, const void *buf, size_t len)
{
	return XIO__SC(SYS_write, fd, buf, len, 0, 0, 0);
}
static inline ssize_t xio_sys_send(int fd, const void *buf, size_t len, int flags)
{
	return XIO__SC(SYS_sendto, fd, buf, len, flags, 0, 0);
}
static inline ssize_t xio_sys_recv(int fd, void *buf, size_t len, int flags)
{
	return XIO__SC(SYS_recvfrom, fd, buf, len, flags, 0, 0);
}
static inline ssize_t xio_sys_sendmsg(int fd, const struct msghdr *m, int flags)
{
	return XIO__SC(SYS_sendmsg, fd, m, flags, 0, 0, 0);
}
static inline ssize_t xio_sys_recvmsg(int fd, struct msghdr *m, int flags)
{
	return XIO__SC(SYS_recvmsg, fd, m, flags, 0, 0, 0);
}
static inline int xio_sys_close(int fd)
{
	return (int)XIO__SC(SYS_close, fd, 0, 0, 0, 0, 0);
}
static inline int xio_sys_socket(int domain, int type, int proto)
{
	return (int)XIO__SC(SYS_socket, domain, type, proto, 0, 0, 0);
}
static inline int xio_sys_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return (int)XIO__SC(SYS_connect, fd, sa, len, 0, 0, 0);
}
static inline int xio_sys_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	return (int)XIO__SC(SYS_bind, fd, sa, len, 0, 0, 0);
}
static inline int xio_sys_listen(int fd, int backlog)
{
	return (int)XIO__SC(SYS_listen, fd, backlog, 0, 0, 0, 0);
}
static inline int xio_sys_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	return (int)XIO__SC(SYS_accept4, fd, sa, len, flags, 0, 0);
}
static inline int xio_sys_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	return (int)XIO__SC(SYS_getsockname, fd, sa, len, 0, 0, 0);
}
static inline int xio_sys_getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
	return (int)XIO__SC(SYS_getpeername, fd, sa, len, 0, 0, 0);
}
static inline int xio_sys_getsockopt(int fd, int lvl, int name, void *v, socklen_t *len)
{
	return (int)XIO__SC(SYS_getsockopt, fd, lvl, name, v, len, 0);
}
static inline int xio_sys_setsockopt(int fd, int lvl, int name, const void *v, socklen_t len)
{
	return (int)XIO__SC(SYS_setsockopt, fd, lvl, name, v, len, 0);
}
static inline int xio_sys_fcntl(int fd, int cmd, long arg)
{
	return (int)XIO__SC(SYS_fcntl, fd, cmd, arg, 0, 0, 0);
}
static inline int xio_sys_ioctl(int fd, unsigned long req, void *arg)
{
	return (int)XIO__SC(SYS_ioctl, fd, req, arg, 0, 0, 0);
}
static inline int xio_sys_shutdown(int fd, int how)
{
	return (int)XIO__SC(SYS_shutdown, fd, how, 0, 0, 0, 0);
}
/* ppoll with a relative timeout in milliseconds (-1: forever). */
static inline int xio_sys_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
	struct timespec ts, *tp = NULL;
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tp = &ts;
	}
	return (int)XIO__SC(SYS_ppoll, fds, n, tp, 0, _NSIG / 8, 0);
}
static inline int xio_sys_sched_yield(void)
{
	return (int)XIO__SC(SYS_sched_yield, 0, 0, 0, 0, 0, 0);
}
static inline int xio_sys_memfd_create(const char *name, unsigned flags)
{
	return (int)XIO__SC(SYS_memfd_create, name, flags, 0, 0, 0, 0);
}
static inline int xio_sys_ftruncate(int fd, off_t len)
{
	return (int)XIO__SC(SYS_ftruncate, fd, len, 0, 0, 0, 0);
}
static inline void *xio_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)XIO__SC(SYS_mmap, addr, len, prot, flags, fd, off);
}
/* mmap's error values are the last page of the address space. */
static inline int xio_sys_mmap_failed(const void *p)
{
	return (uintptr_t)p > (uintptr_t)-4096;
}
static inline int xio_sys_munmap(void *addr, size_t len)
{
	return (int)XIO__SC(SYS_munmap, addr, len, 0, 0, 0, 0);
}
static inline int xio_sys_madvise(void *addr, size_t len, int advice)
{
	return (int)XIO__SC(SYS_madvise, addr, len, advice, 0, 0, 0);
}
static inline int xio_sys_membarrier(int cmd, unsigned flags)
{
	return (int)XIO__SC(SYS_membarrier, cmd, flags, 0, 0, 0, 0);
}
static inline int xio_sys_fstat(int fd, struct stat *st)
{
	return (int)XIO__SC(SYS_fstat, fd, st, 0, 0, 0, 0);
}
static inline pid_t xio_sys_getpid(void)
{
	return (pid_t)XIO__SC(SYS_getpid, 0, 0, 0, 0, 0, 0);
}

/* Sleep ms milliseconds (a signal may cut it short). */
static inline void xio_sys_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	XIO__SC(SYS_nanosleep, &ts, NULL, 0, 0, 0, 0);
}

#endif /* XIO_CORE_SYS_H */
