/*
 * leave.c - the shim's side of moving a connection back to kernel TCP
 * (core/leave.c has the protocol). A connection leaves when the shim can
 * no longer see every read and write of its socket (stdio, exec, seccomp;
 * the triggers are in w_stdio.c, w_exec.c and w_restrict.c) or for urgent
 * data (w_io.c); it follows when its peer left. Either way, once nothing
 * of it is left in the segment, its psock becomes PS_KERNEL and every
 * call goes straight to libc.
 */
#include "shim.h"

/* Both locks: no read or write of ps runs while the protocol does. */
static void lock_io(struct psock *ps)
{
	pthread_mutex_lock(&ps->rlock);
	pthread_mutex_lock(&ps->wlock);
}

static void unlock_io(struct psock *ps)
{
	pthread_mutex_unlock(&ps->wlock);
	pthread_mutex_unlock(&ps->rlock);
}

void xio__shim_settle(struct psock *ps)
{
	if (atomic_load_explicit(&ps->kind, memory_order_acquire) == PS_CONN && ps->conn &&
	    !ps->conn->accel)
		psock_to_kernel(ps);
}

int xio__shim_leave(struct psock *ps, unsigned reason)
{
	if (atomic_load_explicit(&ps->kind, memory_order_acquire) != PS_CONN)
		return 0;
	lock_io(ps);
	struct xio_conn *c = ps->conn;
	int was = c->left, r = 0;
	if (c->accel && !c->left)
		r = xio__conn_leave(c, reason);
	unlock_io(ps);
	if (!was && c->left)
		xio__stats_left(ps->fd, c);
	xio__shim_settle(ps);
	return r;
}

int xio__shim_follow(struct psock *ps)
{
	if (atomic_load_explicit(&ps->kind, memory_order_acquire) != PS_CONN)
		return 0;
	lock_io(ps);
	struct xio_conn *c = ps->conn;
	int was = c->left;
	int r = xio__conn_follow(c);
	unlock_io(ps);
	if (!was && c->left)
		xio__stats_left(ps->fd, c);
	return r;
}

struct leave_arg {
	unsigned reason;
	int only_low; /* only connections on fds 0, 1 and 2 */
};

static void leave_each(int fd, struct psock *ps, void *arg)
{
	struct leave_arg *a = arg;
	if ((!a->only_low || fd <= 2) && atomic_load(&ps->kind) == PS_CONN)
		xio__shim_leave(ps, a->reason);
}

void xio__shim_leave_all(unsigned reason, int only_low)
{
	struct leave_arg a = { reason, only_low };
	fdtab_each(leave_each, &a);
}
