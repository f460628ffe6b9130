/*
 * w_fork.c - fork and vfork.
 *
 * A child inherits the fd table, the mapped segments and the shadow epoll
 * sets with the rest of the memory. What it must not inherit: locks held by
 * threads that do not exist in it (re-initialised here) and the parent's
 * control connection (ctl_client.c drops it). Accelerated connections that
 * existed at the fork are marked inherited in both processes: closing one
 * copy then tells the peer nothing (the other process may still use it);
 * the kernel's FIN tells it when the last copy closes.
 * docs/compatibility.md says what is and is not supported after fork.
 */
#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

static void mark(int fd, struct psock *ps, void *child)
{
	(void)fd;
	if (child) {
		pthread_mutex_init(&ps->lock, NULL);
		pthread_mutex_init(&ps->rlock, NULL);
		pthread_mutex_init(&ps->wlock, NULL);
		if (ps->conn) {
			pthread_mutex_init(&ps->conn->wait_mu, NULL);
			pthread_cond_init(&ps->conn->wait_cv, NULL);
			ps->conn->sleeper = 0;
		}
		if (ps->ep)
			xio__epoll_after_fork(ps->ep);
	} else if (ps->ep) {
		xio__epoll_look_all(ps->ep);
	}
	atomic_store(&ps->poll_parked, 0); /* each process looks for itself */
	if (atomic_load(&ps->kind) == PS_CONN) {
		ps->inherited = 1;
		ps->conn->forked = 1;
	}
}

/* Before the fork: whichever of the two processes reads or writes first
 * will own the channel state (leave.c, "shared after fork"). */
static void open_claim(int fd, struct psock *ps, void *arg)
{
	(void)fd;
	(void)arg;
	struct xio_conn *c = ps->conn;
	if (atomic_load(&ps->kind) == PS_CONN && c->accel && !c->left && c->hdr)
		atomic_store(&c->hdr->user[c->side], 0);
}

EXPORT pid_t fork(void)
{
	SHIM_INIT();
	fdtab_each(open_claim, NULL);
	pid_t pid = REAL(fork)();
	if (pid >= 0) {
		int saved = errno;
		fdtab_each(mark, pid == 0 ? (void *)1 : NULL);
		if (pid == 0) { /* the child's line counts what the child does */
			xio__stats_reset();
			xio__shim_pid_reset();
			atomic_store(&xio__shim_sleepers, 0); /* only this thread exists */
			xio__wake_after_fork();
			xio__reclaim_after_fork();
		}
		errno = saved;
	}
	return pid;
}

/* A vfork child shares our stack until it execs; a wrapper cannot return
 * into it safely. fork() gives the same result to every correct program. */
EXPORT pid_t vfork(void)
{
	return fork();
}
