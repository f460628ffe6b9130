/*
 * ctl_client.c - this process's control connection to xio-monitor.
 *
 * Opened lazily on the first request, so a process that never makes an
 * xio connection never opens a socket. One per process: a forked child
 * closes the inherited one (which still belongs to the parent's session with
 * the monitor) and opens its own. When no monitor answers, requests fail with
 * -ENOTCONN for a quarter of a second before the next try, and callers stay
 * on the kernel.
 *
 * A monitor that dies (kill -9) and comes back on the same socket: a request
 * that finds the session hung up reconnects at once. A process that holds
 * listeners (xio__ctl_keep) also runs a watcher thread that notices the
 * hang-up while the program sleeps in accept or epoll_wait, connects to the
 * new monitor as soon as one answers, and has the listeners registered again,
 * the shim's and the native API's alike (docs/design.md, "A monitor that
 * restarts").
 *
 * A socket handed to the monitor is a copy the monitor can read and write:
 * before the first message on a new connection (and on one inherited
 * across exec), the monitor must be root or of this process's own uid
 * (xio_ctl_peer_trusted). Any other is treated as no monitor at all: the
 * connection is closed without a word and the process stays on the
 * kernel's TCP. Every message carries the effective uid the process acts
 * as (xio_ctl_send_cred), which is the uid the monitor's rules judge.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "xio/ctl.h"
#include "xio/sys.h"
#include "xio/thread.h"

#define REPLY_TIMEOUT_MS 5000
#define RETRY_NS 250000000ull
/* The watcher: how often it tries for a monitor while none answers, and how
 * long it sleeps on a healthy session before it looks again (a hang-up
 * wakes it at once; the timeout only bounds how late it notices a session
 * that another thread replaced). */
#define WATCH_RETRY_MS 250
#define WATCH_IDLE_MS 1000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int sock = -1;
/* What sock is: the program may close or replace the fd number behind our
 * back (closefrom, dup2 over it: sshd does). Checked before every use, so
 * the shim never writes to, hands on at exec, or closes an fd that is not
 * its own. */
static dev_t sock_dev;
static ino_t sock_ino;
static uint32_t seq;
static uint64_t retry_at;
static _Atomic uint64_t intent_ctr;
/* Changes with every new control connection (0: none yet): what was
 * registered under an older session, a monitor that died has forgotten. */
static _Atomic uint32_t session;
/* What re-registers what the process holds, one per kind of holder: the
 * shim's listeners, the native API's listeners (xio__ctl_keep). */
#define RESUME_MAX 4
static void (*resume_fns[RESUME_MAX])(void);
static unsigned nresume;
static pid_t watcher_pid;        /* the process whose watcher runs */
static uint32_t resumed;         /* the session resume_fns last ran for */
/* Set while this thread holds the lock: a signal handler that opens a
 * connection while the code it interrupted talks to the monitor must not
 * wait for a lock its own thread holds. It gets "no monitor" instead, and
 * its connection stays on the kernel. */
static __thread int in_ctl;

/* 1 if fd is still the socket we opened or adopted. */
static int still_mine(int fd)
{
	struct stat st;
	return fd >= 0 && xio_sys_fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
	       st.st_dev == sock_dev && st.st_ino == sock_ino;
}

static void remember(int fd)
{
	struct stat st;
	sock = fd;
	if (xio_sys_fstat(fd, &st) == 0) {
		sock_dev = st.st_dev;
		sock_ino = st.st_ino;
	}
}

static int enter(void)
{
	if (in_ctl)
		return -ENOTCONN;
	pthread_mutex_lock(&lock);
	in_ctl = 1;
	return 0;
}

static void leave(void)
{
	in_ctl = 0;
	pthread_mutex_unlock(&lock);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Locks that order before ours (the listener lists the resume functions
 * walk while they make requests): taken first at fork, released last, so
 * that no child inherits one held by a thread it does not have. */
#define MAX_GUARDS 4
static pthread_mutex_t guards_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t *guards[MAX_GUARDS];
static unsigned nguards;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&guards_mu);
	for (unsigned i = 0; i < nguards; i++)
		pthread_mutex_lock(guards[i]);
	pthread_mutex_lock(&lock);
}

static void release_guards(void)
{
	for (unsigned i = nguards; i-- > 0;)
		pthread_mutex_unlock(guards[i]);
	pthread_mutex_unlock(&guards_mu);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&lock);
	release_guards();
}

/* The child must not speak on its parent's session: drop it, reopen later. */
static void atfork_child(void)
{
	if (still_mine(sock))
		xio_sys_close(sock);
	sock = -1;
	retry_at = 0;
	pthread_mutex_unlock(&lock);
	release_guards();
}

static void register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void xio__ctl_fork_guard(pthread_mutex_t *m)
{
	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&guards_mu);
	unsigned i = 0;
	while (i < nguards && guards[i] != m)
		i++;
	if (i == nguards && nguards < MAX_GUARDS)
		guards[nguards++] = m;
	pthread_mutex_unlock(&guards_mu);
}

/*
 * The control socket lives at a high fd number, close-on-exec, out of the
 * way of programs that expect the lowest free number from their own
 * open() or that dup2 onto small numbers: three quarters of the way up to
 * RLIMIT_NOFILE, and no higher than 768 (the kernel grows a process's fd
 * table to the highest fd in use).
 */
static int move_high(int fd)
{
	struct rlimit rl;
	long target = 768;
	if (XIO__SC(SYS_getrlimit, RLIMIT_NOFILE, &rl, 0, 0, 0, 0) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur * 3 / 4 < target)
		target = (long)rl.rlim_cur * 3 / 4;
	if (target <= fd)
		return fd;
	int hi = xio_sys_fcntl(fd, F_DUPFD_CLOEXEC, (int)target);
	if (hi < 0)
		return fd; /* no room up there: keep the low one */
	xio_sys_close(fd);
	return hi;
}

static void drop_locked(void)
{
	if (still_mine(sock))
		xio_sys_close(sock);
	sock = -1;
	retry_at = now_ns() + RETRY_NS;
}

static int recv_reply_locked(uint32_t want_seq, void *reply, int *reply_fd)
{
	for (;;) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		int r = xio_sys_poll(&p, 1, REPLY_TIMEOUT_MS);
		if (r == -EINTR)
			continue; /* a control exchange is not interruptible */
		if (r <= 0)
			return r == 0 ? -ETIMEDOUT : r;
		int fd;
		ssize_t n = xio_ctl_recv(sock, reply, &fd, MSG_DONTWAIT);
		if (n == -EAGAIN)
			continue;
		if (n <= 0)
			return n == 0 ? -ECONNRESET : (int)n;
		/* Only ATTACH carries an fd: one that this process, at its own
		 * fd limit, could not take. The monitor counts this side as
		 * attached, so the session is given up as a broken one, as
		 * before (the monitor reclaims it; peers see our sides gone). */
		if (fd == XIO_CTL_FD_LOST)
			return -EBADMSG;
		const struct xio_msg_hdr *h = reply;
		if (h->seq == want_seq) {
			if (reply_fd)
				*reply_fd = fd;
			else if (fd >= 0)
				xio_sys_close(fd);
			return 0;
		}
		if (fd >= 0) /* a stale reply to a request that timed out */
			xio_sys_close(fd);
	}
}

int xio_ctl_peer_trusted(int fd, uint32_t *uid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	uid_t r, e, sv;
	if (uid)
		*uid = XIO_CTL_NO_CRED;
	if (xio_sys_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || len < sizeof(cr))
		return 0;
	if (uid)
		*uid = cr.uid;
	if (cr.uid == 0)
		return 1;
	/* A user's monitor serves that user's processes only: not a process
	 * that still holds another uid (a daemon that dropped with seteuid
	 * and can return to root, a set-user-ID program), whose sockets may
	 * carry what the user may not have. */
	if (XIO__SC(SYS_getresuid, &r, &e, &sv, 0, 0, 0) < 0)
		return 0;
	return cr.uid == r && cr.uid == e && cr.uid == sv;
}

static int hello_locked(void)
{
	struct xio_msg_hello m;
	union {
		struct xio_msg_id ok;
		char raw[XIO_CTL_MAX_MSG];
	} rep;

	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_HELLO, ++seq);
	m.pid = (uint32_t)xio_sys_getpid();
	int r = xio_ctl_send_cred(sock, &m, -1, 0);
	if (r == 0)
		r = recv_reply_locked(m.h.seq, &rep, NULL);
	if (r == 0 && rep.ok.h.type != XIO_MSG_OK)
		r = -EPROTO;
	return r;
}

static int ensure_locked(void)
{
	if (sock >= 0 && !still_mine(sock))
		sock = -1; /* closed or replaced by the program: not ours to touch */
	if (sock >= 0)
		return 0;
	if (retry_at && now_ns() < retry_at)
		return -ENOTCONN;
	pthread_once(&atfork_once, register_atfork);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = xio_ctl_sock_path();
	if (strlen(path) >= sizeof(sa.sun_path)) {
		retry_at = now_ns() + RETRY_NS;
		return -ENOTCONN;
	}
	strcpy(sa.sun_path, path);
	int fd = xio_sys_socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		retry_at = now_ns() + RETRY_NS;
		return -ENOTCONN;
	}
	remember(move_high(fd));
	if (xio_sys_connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    !xio_ctl_peer_trusted(sock, NULL) || hello_locked() < 0) {
		drop_locked();
		return -ENOTCONN;
	}
	retry_at = 0;
	uint32_t next = atomic_load(&session) + 1;
	atomic_store(&session, next ? next : 1);
	return 0;
}

/* The session's monitor is gone: closed or reset (it crashed, or was
 * restarted). */
static int peer_gone(int r)
{
	return r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN;
}

/* Send msg on the session, opening one if need be. A session whose monitor
 * died is replaced at once, without waiting for RETRY_NS: a new monitor may
 * already answer, and the connection being made should be served by it. */
static int send_locked(void *msg, int send_fd)
{
	struct xio_msg_hdr *h = msg;
	int r = ensure_locked();
	if (r < 0)
		return r;
	h->seq = ++seq;
	r = xio_ctl_send_cred(sock, msg, send_fd, 0);
	if (peer_gone(r)) {
		if (still_mine(sock))
			xio_sys_close(sock);
		sock = -1;
		r = ensure_locked();
		if (r < 0)
			return r;
		h->seq = ++seq;
		r = xio_ctl_send_cred(sock, msg, send_fd, 0);
	}
	return r;
}

/* A request and its reply; *s (if not NULL) is the session that answered. */
static int request(void *msg, int send_fd, void *reply, int *reply_fd, uint32_t *s)
{
	struct xio_msg_hdr *h = msg;
	int r;

	if (reply_fd)
		*reply_fd = -1;
	if (enter() < 0)
		return -ENOTCONN;
	r = send_locked(msg, send_fd);
	if (r == 0)
		r = recv_reply_locked(h->seq, reply, reply_fd);
	if (r < 0) {
		drop_locked();
		r = -ENOTCONN;
	}
	if (s)
		*s = atomic_load(&session);
	leave();
	return r;
}

int xio__ctl_request(void *msg, int send_fd, void *reply, int *reply_fd)
{
	return request(msg, send_fd, reply, reply_fd, NULL);
}

int xio__ctl_listen(int fd, uint64_t *id, uint32_t *s)
{
	struct xio_msg_id m;
	union {
		struct xio_msg_id ok;
		char raw[XIO_CTL_MAX_MSG];
	} rep;

	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_LISTEN, 0);
	*id = 0;
	int r = request(&m, fd, &rep, NULL, s);
	if (r < 0)
		return r;
	if (rep.ok.h.type != XIO_MSG_OK)
		return 0;
	*id = rep.ok.id;
	return 1;
}

int xio__ctl_post(void *msg, int send_fd)
{
	int r;

	if (enter() < 0)
		return -ENOTCONN;
	r = send_locked(msg, send_fd);
	if (r < 0) {
		drop_locked();
		r = -ENOTCONN;
	}
	leave();
	return r;
}

uint64_t xio__ctl_next_intent(void)
{
	return atomic_fetch_add_explicit(&intent_ctr, 1, memory_order_relaxed) + 1;
}

int xio__ctl_status(struct xio_msg_status *st)
{
	struct xio_msg_hdr m;
	union {
		struct xio_msg_status st;
		char raw[XIO_CTL_MAX_MSG];
	} rep;
	xio_ctl_hdr(&m, XIO_MSG_STATUS, 0);
	int r = xio__ctl_request(&m, -1, &rep, NULL);
	if (r < 0)
		return r;
	if (rep.st.h.type != XIO_MSG_STATUS_REPLY)
		return -EPROTO;
	*st = rep.st;
	return 0;
}

int xio__ctl_sock_fd(void)
{
	if (enter() < 0)
		return -1;
	int fd = ensure_locked() == 0 ? sock : -1;
	leave();
	return fd;
}

void xio__ctl_adopt(int fd)
{
	pthread_once(&atfork_once, register_atfork);
	/* The previous image checked this monitor against its own
	 * credentials; exec may have changed them (set-user-ID). */
	if (!xio_ctl_peer_trusted(fd, NULL)) {
		xio_sys_close(fd);
		return;
	}
	pthread_mutex_lock(&lock);
	if (sock >= 0 && sock != fd && still_mine(sock))
		xio_sys_close(sock);
	remember(fd);
	retry_at = 0;
	uint32_t next = atomic_load(&session) + 1;
	atomic_store(&session, next ? next : 1);
	xio_sys_fcntl(fd, F_SETFD, FD_CLOEXEC);
	pthread_mutex_unlock(&lock);
}

void xio__ctl_reset(void)
{
	pthread_mutex_lock(&lock);
	if (still_mine(sock))
		xio_sys_close(sock);
	sock = -1;
	retry_at = 0;
	pthread_mutex_unlock(&lock);
}

uint32_t xio__ctl_session(void)
{
	return atomic_load(&session);
}

/* One look at the session: the socket to wait on (-1 if there is none and
 * no monitor answers now), and the session it belongs to. */
static int watch_connect(uint32_t *s)
{
	pthread_mutex_lock(&lock);
	in_ctl = 1;
	if (sock >= 0 && !still_mine(sock))
		sock = -1;
	if (sock < 0) {
		retry_at = 0; /* the watcher keeps its own pace */
		ensure_locked();
	}
	int fd = sock;
	*s = atomic_load(&session);
	in_ctl = 0;
	pthread_mutex_unlock(&lock);
	return fd;
}

/*
 * The watcher: sleeps on the control socket for a hang-up (events 0: a
 * reply to another thread's request does not wake it), drops a session
 * whose monitor died, tries for a new monitor every WATCH_RETRY_MS, and on
 * every new session calls the resume functions, so that listeners nobody
 * touches are registered again within a second of the monitor's return.
 */
static void *watch(void)
{
	for (;;) {
		uint32_t s;
		int fd = watch_connect(&s);
		if (fd < 0) {
			xio_sys_poll(NULL, 0, WATCH_RETRY_MS);
			continue;
		}
		if (s != resumed) {
			void (*fns[RESUME_MAX])(void);
			pthread_mutex_lock(&lock);
			unsigned n = nresume;
			memcpy(fns, resume_fns, sizeof(fns));
			pthread_mutex_unlock(&lock);
			resumed = s;
			for (unsigned i = 0; i < n; i++)
				fns[i]();
			continue;
		}
		struct pollfd p = { .fd = fd, .events = 0 };
		if (xio_sys_poll(&p, 1, WATCH_IDLE_MS) <= 0 ||
		    !(p.revents & (POLLHUP | POLLERR | POLLNVAL)))
			continue;
		pthread_mutex_lock(&lock);
		in_ctl = 1;
		if (sock == fd && atomic_load(&session) == s && still_mine(sock)) {
			xio_sys_close(sock);
			sock = -1;
		}
		in_ctl = 0;
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

void xio__ctl_keep(void (*resume)(void))
{
	pthread_mutex_lock(&lock);
	unsigned k = 0;
	while (k < nresume && resume_fns[k] != resume)
		k++;
	if (k == nresume && nresume < RESUME_MAX)
		resume_fns[nresume++] = resume;
	pid_t me = xio_sys_getpid();
	if (watcher_pid == me) {
		pthread_mutex_unlock(&lock);
		return;
	}
	resumed = atomic_load(&session);
	if (xio__thread_start(watch, "xio-ctl-watch", 128 * 1024) == 0)
		watcher_pid = me;
	pthread_mutex_unlock(&lock);
}
