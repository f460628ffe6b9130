/*
 * psock.c - the shim's socket objects: creation, sharing between dup()ed
 * fds, pairing through the monitor, listener registration, and teardown.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "xio/ctl.h"
#include "xio/sys.h"

struct psock *psock_new(int fd, int kind, int nonblock)
{
	struct psock *ps = calloc(1, sizeof(*ps));
	if (!ps)
		return NULL;
	atomic_init(&ps->refs, 1);
	atomic_init(&ps->close_fd, -1);
	atomic_init(&ps->kind, kind);
	atomic_init(&ps->nonblock, nonblock);
	ps->fd = fd;
	pthread_mutex_init(&ps->lock, NULL);
	pthread_mutex_init(&ps->rlock, NULL);
	pthread_mutex_init(&ps->wlock, NULL);
	if (fdtab_set(fd, ps) < 0) {
		free(ps);
		return NULL;
	}
	return ps;
}

void psock_ref(struct psock *ps)
{
	atomic_fetch_add_explicit(&ps->refs, 1, memory_order_relaxed);
}

static void psock_free(struct psock *ps)
{
	pthread_mutex_destroy(&ps->lock);
	pthread_mutex_destroy(&ps->rlock);
	pthread_mutex_destroy(&ps->wlock);
	free(ps);
}

struct find_fd {
	struct psock *ps;
	int gone, found;
};

static void find_each(int fd, struct psock *p, void *arg)
{
	struct find_fd *f = arg;
	if (p == f->ps && fd != f->gone && f->found < 0)
		f->found = fd;
}

/* Another fd of ps than gone, or -1. */
static int other_fd(struct psock *ps, int gone)
{
	struct find_fd f = { ps, gone, -1 };
	fdtab_each(find_each, &f);
	return f.found;
}

/* Tell the monitor to drop an intent, and undo a pairing that raced. */
static void drop_intent(int fd, uint64_t intent)
{
	struct xio_conn *tmp = xio__conn_kernel(fd);
	if (!tmp)
		return;
	xio__conn_pair_connected(tmp, intent);
	xio__conn_detach(tmp);
	xio__conn_free(tmp);
}

/* SO_LINGER {1, 0}: the close resets the connection. Then the peer must
 * learn it from the kernel's RST (ECONNRESET), not from an orderly end of
 * stream in the segment. */
static int aborts(int fd)
{
	struct linger lg;
	socklen_t l = sizeof(lg);
	return xio_sys_getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l) == 0 && lg.l_onoff &&
	       lg.l_linger == 0;
}

/*
 * The listeners this process has registered (or tried to, while no monitor
 * ran), so that a new monitor can be told them again: it knows nothing of
 * what the one before it knew. The lock orders before the control client's
 * lock (xio__ctl_fork_guard: taken first at fork); a listener leaves the
 * list before it is freed.
 */
static pthread_mutex_t listeners_lock = PTHREAD_MUTEX_INITIALIZER;
static struct psock **listeners;
static size_t nlisteners, listeners_cap;

static void listeners_add_locked(struct psock *ps)
{
	for (size_t i = 0; i < nlisteners; i++)
		if (listeners[i] == ps)
			return;
	if (nlisteners == listeners_cap) {
		size_t cap = listeners_cap ? 2 * listeners_cap : 16;
		struct psock **n = realloc(listeners, cap * sizeof(*n));
		if (!n)
			return; /* not kept for a later monitor; served by this one */
		listeners = n;
		listeners_cap = cap;
	}
	listeners[nlisteners++] = ps;
}

static void listeners_remove_locked(struct psock *ps)
{
	for (size_t i = 0; i < nlisteners; i++)
		if (listeners[i] == ps) {
			listeners[i] = listeners[--nlisteners];
			return;
		}
}

/* One LISTEN request. The id of an older session means nothing to the
 * monitor now answering (and may name another listener there): it is
 * forgotten whatever the answer. */
static int register_locked(struct psock *ps, int fd)
{
	uint64_t id;
	uint32_t s;
	ps->listener_id = 0;
	int r = xio__ctl_listen(fd, &id, &s);
	if (r <= 0)
		return r < 0 ? -1 : 0;
	ps->listener_id = id;
	ps->listener_pid = xio_sys_getpid();
	ps->listener_session = s;
	return 1;
}

/* Called by the control client's watcher on each new session: register
 * again every listener the monitor of this session has not heard of. */
static void resume_listeners(void)
{
	pthread_mutex_lock(&listeners_lock);
	uint32_t s = xio__ctl_session();
	for (size_t i = 0; i < nlisteners; i++)
		if (listeners[i]->listener_session != s || !listeners[i]->listener_id)
			register_locked(listeners[i], listeners[i]->fd);
	pthread_mutex_unlock(&listeners_lock);
}

int psock_register_listener(struct psock *ps, int fd)
{
	xio__ctl_fork_guard(&listeners_lock);
	pthread_mutex_lock(&listeners_lock);
	int r = register_locked(ps, fd);
	if (r != 0)
		listeners_add_locked(ps);
	pthread_mutex_unlock(&listeners_lock);
	if (r != 0)
		xio__ctl_keep(resume_listeners);
	return r;
}

void psock_unlisten(struct psock *ps)
{
	pthread_mutex_lock(&listeners_lock);
	listeners_remove_locked(ps);
	if (ps->listener_id) {
		struct xio_msg_id m;
		memset(&m, 0, sizeof(m));
		xio_ctl_hdr(&m.h, XIO_MSG_UNLISTEN, 0);
		m.id = ps->listener_id;
		xio__ctl_post(&m, -1);
		ps->listener_id = 0;
	}
	pthread_mutex_unlock(&listeners_lock);
}

static void teardown(struct psock *ps, int fd)
{
	xio__epoll_forget(ps);
	xio__reclaim_forget(ps); /* before its conn is freed: a sweep may look */
	switch (atomic_load(&ps->kind)) {
	case PS_CONN:
		ps->conn->fd = fd; /* still open: the wrapper closes it after us */
		xio__stats_conn_closed(ps->conn);
		if (xio__conn_close_resend(ps->conn))
			break; /* its resend goes on in the background (core/resend.c) */
		if (ps->inherited || aborts(fd))
			xio__conn_detach_quiet(ps->conn);
		else
			xio__conn_detach(ps->conn);
		xio__conn_free(ps->conn);
		break;
	case PS_LISTENER:
		psock_unlisten(ps);
		break;
	case PS_CONNECTING:
		drop_intent(fd, ps->intent);
		break;
	case PS_EPOLL:
		xio__epoll_free(ps->ep);
		break;
	case PS_KERNEL:
		if (ps->conn) { /* left shared memory (leave.c): unmap it now */
			ps->conn->fd = fd;
			xio__conn_detach_quiet(ps->conn);
			xio__conn_free(ps->conn);
		}
		break;
	}
	psock_free(ps);
}

/* The fds whose close waits for a call in progress: closed to the
 * program (a second close is EBADF), open to the kernel until then. */
#define CLOSING_MAX 64
static pthread_mutex_t closing_mu = PTHREAD_MUTEX_INITIALIZER;
static int closing[CLOSING_MAX];
static _Atomic int nclosing;

int psock_closing_fd(int fd)
{
	if (!atomic_load_explicit(&nclosing, memory_order_acquire))
		return 0;
	int found = 0;
	pthread_mutex_lock(&closing_mu);
	for (int i = 0; i < CLOSING_MAX && !found; i++)
		found = closing[i] == fd + 1;
	pthread_mutex_unlock(&closing_mu);
	return found;
}

static int closing_add(int fd)
{
	int ok = 0;
	pthread_mutex_lock(&closing_mu);
	for (int i = 0; i < CLOSING_MAX && !ok; i++)
		if (!closing[i]) {
			closing[i] = fd + 1;
			ok = 1;
		}
	if (ok)
		atomic_fetch_add(&nclosing, 1);
	pthread_mutex_unlock(&closing_mu);
	return ok;
}

static void closing_del(int fd)
{
	pthread_mutex_lock(&closing_mu);
	for (int i = 0; i < CLOSING_MAX; i++)
		if (closing[i] == fd + 1) {
			closing[i] = 0;
			atomic_fetch_sub(&nclosing, 1);
			break;
		}
	pthread_mutex_unlock(&closing_mu);
}

int psock_close_later(struct psock *ps, int fd)
{
	if (atomic_load(&ps->calls) == 0 || atomic_load(&ps->refs) != 1 || !closing_add(fd))
		return 0;
	atomic_store(&ps->close_fd, fd);
	if (atomic_load(&ps->calls) > 0)
		return 1;
	/* The calls ended meanwhile: whoever takes close_fd back closes. */
	int want = fd;
	if (atomic_compare_exchange_strong(&ps->close_fd, &want, -1)) {
		closing_del(fd);
		return 0;
	}
	return 1;
}

int psock_keep_for_calls(struct psock *ps, int fd)
{
	if (atomic_load(&ps->calls) == 0 || atomic_load(&ps->refs) != 1 ||
	    atomic_load(&ps->kind) != PS_CONN)
		return -1;
	int keep = (int)XIO__SC(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 3, 0, 0, 0);
	if (keep < 0)
		return -1;
	pthread_mutex_lock(&ps->lock);
	ps->fd = keep;
	ps->conn->fd = keep;
	pthread_mutex_unlock(&ps->lock);
	return keep;
}

void psock_call_end(struct psock *ps)
{
	int fd = atomic_load(&ps->close_fd);
	if (fd < 0 || !atomic_compare_exchange_strong(&ps->close_fd, &fd, -1))
		return;
	int saved = errno;
	psock_unref(ps, fd);
	REAL(close)(fd);
	closing_del(fd);
	errno = saved;
}

void psock_unref(struct psock *ps, int fd)
{
	if (atomic_fetch_sub_explicit(&ps->refs, 1, memory_order_acq_rel) == 1) {
		teardown(ps, fd);
		return;
	}
	/* Others keep it: make sure doorbells and the monitor use a live fd. */
	pthread_mutex_lock(&ps->lock);
	if (ps->fd == fd) {
		int o = other_fd(ps, fd);
		if (o >= 0) {
			ps->fd = o;
			if (ps->conn)
				ps->conn->fd = o;
		}
	}
	pthread_mutex_unlock(&ps->lock);
}

static void install_conn(struct psock *ps, struct xio_conn *c)
{
	/* Not armed: the program arms the word when it first sleeps in a
	 * call of ours (arm only to sleep), so its first message costs the
	 * peer no doorbell. */
	ps->conn = c;
	c->owner = ps;
	atomic_store_explicit(&ps->kind, PS_CONN, memory_order_release);
	STAT_ADD(accel_conns, 1);
	xio__epoll_became_conn(ps);
}

void psock_apply_bufs(struct psock *ps)
{
	struct xio_conn *c = ps->conn;
	if (!c || !c->accel || c->left)
		return;
	if (ps->snd_set)
		c->tx.snd_limit = (uint32_t)ps->snd_set;
	xio__conn_publish_rcvbuf(c, (uint32_t)ps->rcv_set);
	xio__chan_tx_budget(&c->tx);
}

void psock_pair_connected(struct psock *ps, int fd, uint64_t intent)
{
	struct xio_conn *c = xio__conn_kernel(fd);
	if (c) {
		xio__conn_pair_connected(c, intent);
		if (c->accel) {
			install_conn(ps, c);
			psock_apply_bufs(ps);
			if (fd <= 2) /* stdio may use it behind our back */
				xio__shim_leave(ps, XIO_LEAVE_STDIO);
			return;
		}
		xio__conn_free(c);
	}
	STAT_ADD(fallback_conns, 1);
	psock_to_kernel(ps);
}

int psock_finish_connect(struct psock *ps, int fd, int wait)
{
	int kind;
	pthread_mutex_lock(&ps->lock);
	kind = atomic_load(&ps->kind);
	if (kind != PS_CONNECTING) {
		pthread_mutex_unlock(&ps->lock);
		return kind;
	}
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int r;
	do
		r = xio_sys_poll(&p, 1, wait ? -1 : 0);
	while (r == -EINTR && wait);
	if (r <= 0) {
		pthread_mutex_unlock(&ps->lock);
		return PS_CONNECTING;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	/* getpeername, not SO_ERROR: reading SO_ERROR would clear the error
	 * the program is about to ask for. */
	if (xio_sys_getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
		drop_intent(fd, ps->intent); /* the connect failed */
		psock_to_kernel(ps);
	} else {
		psock_pair_connected(ps, fd, ps->intent);
	}
	kind = atomic_load(&ps->kind);
	pthread_mutex_unlock(&ps->lock);
	return kind;
}
