/*
 * w_leave.c - the calls after which the shim can no longer see every read
 * and write of a socket, so its connections leave shared memory first
 * (leave.c, core/leave.c):
 *   fdopen: stdio on the socket reads and writes through glibc's internal
 *     calls, which no preloaded wrapper sees (dup2 onto fds 0-2 is in
 *     w_socket.c, exec in w_exec.c);
 *   prctl(PR_SET_SECCOMP) and syscall(SYS_seccomp): the filter may forbid
 *     the system calls doorbells and waiting use (OpenSSH's pre-auth child
 *     allows no sendto). Every connection leaves, and no new one is
 *     accelerated in this process afterwards (xio__shim_off).
 */
#include <linux/seccomp.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

_Atomic int xio__shim_off;

EXPORT FILE *fdopen(int fd, const char *mode)
{
	SHIM_INIT();
	struct psock *ps = fdtab_lookup(fd);
	if (ps && atomic_load(&ps->kind) == PS_CONN)
		xio__shim_leave(ps, XIO_LEAVE_STDIO);
	return REAL(fdopen)(fd, mode);
}

static void unlisten_each(int fd, struct psock *ps, void *arg)
{
	(void)fd;
	(void)arg;
	if (atomic_load(&ps->kind) == PS_LISTENER) {
		psock_unlisten(ps);
		psock_to_kernel(ps);
	}
}

/* A connection that left: unmap it and tell the monitor now, while the
 * system calls for that are still allowed (its close may not be). */
static void detach_each(int fd, struct psock *ps, void *arg)
{
	(void)fd;
	(void)arg;
	if (atomic_load(&ps->kind) != PS_KERNEL || !ps->conn)
		return;
	xio__reclaim_forget(ps);
	pthread_mutex_lock(&ps->rlock);
	pthread_mutex_lock(&ps->wlock);
	struct xio_conn *c = ps->conn;
	if (c) {
		ps->conn = NULL;
		xio__conn_detach_quiet(c);
		xio__conn_free(c);
	}
	pthread_mutex_unlock(&ps->wlock);
	pthread_mutex_unlock(&ps->rlock);
}

/* The process is about to restrict its own system calls: its connections
 * leave, and its listeners are taken back, so that no client is paired
 * with an accept that will not talk to the monitor. */
static void before_seccomp(void)
{
	atomic_store(&xio__shim_off, 1);
	xio__shim_leave_all(XIO_LEAVE_SECCOMP, 0);
	xio__shim_resend_flush_all(); /* pushing it may not be allowed later */
	fdtab_each(unlisten_each, NULL);
	fdtab_each(detach_each, NULL);
}

EXPORT int prctl(int option, ...)
{
	va_list ap;
	va_start(ap, option);
	unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
	unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
	va_end(ap);
	SHIM_INIT();
	if (option == PR_SET_SECCOMP)
		before_seccomp();
	return REAL(prctl)(option, a2, a3, a4, a5);
}

EXPORT long syscall(long nr, ...)
{
	va_list ap;
	va_start(ap, nr);
	long a[6];
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	SHIM_INIT();
	if (nr == SYS_seccomp && a[0] == SECCOMP_SET_MODE_FILTER)
		before_seccomp();
	else if (nr == SYS_seccomp && a[0] == SECCOMP_SET_MODE_STRICT)
		before_seccomp();
	return REAL(syscall)(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
