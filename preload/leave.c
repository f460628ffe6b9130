/*
 * leave.c - the shim's side of moving a connection back to kernel TCP
 * (core/leave.c has the protocol). A connection leaves when the shim can
 * no longer see every read and write of its socket (stdio, exec, seccomp;
 * the triggers are in w_stdio.c, w_exec.c and w_restrict.c) or for urgent
 * data (w_io.c); it follows when its peer left. Either way, once nothing
 * of it is left in the segment, its psock becomes PS_KERNEL and every
 * call goes straight to libc.
 */
#include <time.h>

#include "shim.h"
#include "xio/sys.h"

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
	if (atomic_load_explicit(&ps->kind, memory_order_acquire) != PS_CONN || !ps->conn)
		return;
	if (!ps->conn->accel) {
		psock_to_kernel(ps);
	} else if (__builtin_expect(ps->conn->left, 0) && psock_in_epoll(ps)) {
		/* Reads take the channel's rest first, so it stays PS_CONN; but
		 * no doorbell announces room or data any more: an epoll set
		 * must wait on the kernel socket for what the program asked. */
		xio__epoll_sync(ps);
	}
}

/* Leave without turning the psock to PS_KERNEL (callable with an epoll
 * set locked). stale: this copy's state is not the current one (fork). */
static int leave_now(struct psock *ps, unsigned reason, int stale)
{
	if (atomic_load_explicit(&ps->kind, memory_order_acquire) != PS_CONN)
		return 0;
	lock_io(ps);
	struct xio_conn *c = ps->conn;
	int was = c->left, r = 0;
	if (c->accel && !c->left)
		r = stale ? xio__conn_leave_stale(c, reason) : xio__conn_leave(c, reason);
	unlock_io(ps);
	if (!was && c->left)
		xio__stats_left(ps->fd, c);
	return r;
}

/* For a side shared through fork: 1 if this process's copy of the state
 * is not the current one (another process used the side since). */
static int stale_copy(struct psock *ps);

int xio__shim_leave(struct psock *ps, unsigned reason)
{
	int r = leave_now(ps, reason, ps->inherited && stale_copy(ps));
	xio__shim_settle(ps);
	return r;
}

/*
 * Shared after fork. Both processes hold the side, each with a copy of its
 * private state (ring indices, allocator, received descriptors): only one
 * copy can be current. The fork resets hdr->user[side] to 0; the first
 * process to read or write takes it (user = its pid) and goes on at full
 * speed. If the other one reads or writes later, its copy is stale: it
 * waits, briefly, until the user is not inside a call (busy), then moves
 * the connection back to kernel TCP with the counts the user published
 * (XIO_LEAVE_SHARED), which both then use; the user finds the side left
 * at its next call. Nothing is lost or reordered, and the two copies of
 * the state never both drive the channel.
 */
/* This process's pid without a system call per read or write (the fork
 * wrapper resets it in the child). */
static _Atomic uint32_t my_pid;

void xio__shim_pid_reset(void)
{
	atomic_store(&my_pid, (uint32_t)xio_sys_getpid());
}

static uint32_t shim_pid(void)
{
	uint32_t p = atomic_load_explicit(&my_pid, memory_order_relaxed);
	if (!p)
		xio__shim_pid_reset();
	return p ? p : atomic_load(&my_pid);
}

static int stale_copy(struct psock *ps)
{
	struct xio_conn *c = ps->conn;
	if (!c->hdr)
		return 0;
	_Atomic uint32_t *user = &c->hdr->user[c->side];
	uint32_t me = shim_pid(), u = atomic_load(user);
	return !(u == me || (u == 0 && atomic_compare_exchange_strong(user, &u, me)) || u == me);
}

void xio__shim_claim(struct psock *ps)
{
	struct xio_conn *c = ps->conn;
	if (!c->accel || c->left || !c->hdr)
		return;
	if (xio__conn_adopt_left(c))
		return;
	_Atomic uint32_t *user = &c->hdr->user[c->side], *busy = &c->hdr->busy[c->side];
	uint32_t me = shim_pid(), u = atomic_load(user);
	if (u == me || (u == 0 && atomic_compare_exchange_strong(user, &u, me)) || u == me)
		return;
	/* Take the side over, then wait until the old user is outside a
	 * call. It enters one only after it stored busy and, after a full
	 * fence, still found itself the user (xio__shim_enter): of the two,
	 * one sees the other, so its copy is never used again once we go on.
	 * (A third holder may have taken it meanwhile: we leave all the
	 * same, and the side's move is done by one of us, leave.c.) */
	if (atomic_compare_exchange_strong(user, &u, me))
		atomic_thread_fence(memory_order_seq_cst);
	for (int i = 0; i < 100 && u != me && atomic_load(busy) == u; i++)
		xio_sys_sleep_ms(1); /* the user is inside a read or write */
	leave_now(ps, XIO_LEAVE_SHARED, 1);
}

int xio__shim_enter(struct psock *ps)
{
	struct xio_conn *c = ps->conn;
	if (!c->hdr)
		return 0;
	_Atomic uint32_t *user = &c->hdr->user[c->side], *busy = &c->hdr->busy[c->side];
	uint32_t me = shim_pid(), u = atomic_load(user);
	if (u != me && !(u == 0 && atomic_compare_exchange_strong(user, &u, me)))
		return 0; /* not ours: busy is the user's word */
	atomic_store_explicit(busy, me, memory_order_seq_cst);
	if (atomic_load_explicit(user, memory_order_seq_cst) == me)
		return 1;
	xio__shim_leave_call(ps); /* taken over meanwhile: step back out */
	return 0;
}

void xio__shim_leave_call(struct psock *ps)
{
	struct xio_conn *c = ps->conn;
	uint32_t me = shim_pid();
	if (c->hdr) /* only our own mark: another holder's is its own */
		atomic_compare_exchange_strong(&c->hdr->busy[c->side], &me, 0u);
}

int xio__shim_follow(struct psock *ps)
{
	if (atomic_load_explicit(&ps->kind, memory_order_acquire) != PS_CONN)
		return 0;
	if (ps->inherited)
		xio__shim_claim(ps);
	lock_io(ps);
	struct xio_conn *c = ps->conn;
	int was = c->left;
	int r = xio__conn_follow(c);
	unlock_io(ps);
	if (!was && c->left)
		xio__stats_left(ps->fd, c);
	return r;
}

/* Exec: the new program knows nothing of a pending resend (core/resend.c);
 * seccomp: the filter may forbid the calls that push it. So it goes out
 * first, for at most a second in all. */
#define FLUSH_RESEND_MS 1000

static void resend_each(int fd, struct psock *ps, void *arg)
{
	(void)fd;
	int64_t *end = arg;
	if (atomic_load(&ps->kind) != PS_CONN || !xio__conn_resend_pending(ps->conn))
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ms = *end - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	xio__conn_resend_flush(ps->conn, ms > 0 ? (int)ms : 0);
	xio__shim_settle(ps); /* PS_KERNEL, if nothing of it is in the segment now */
}

void xio__shim_resend_flush_all(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t start = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	int64_t end = start + FLUSH_RESEND_MS;
	fdtab_each(resend_each, &end);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ms = end - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	xio__resend_closed_flush(ms > 0 ? (int)ms : 0);
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
