/*
 * ctl_client.c - this process's control connection to xio-monitor.
 *
 * Opened lazily on the first request, so a process that never makes an
 * xio connection never opens a socket. One per process: a forked child
 * closes the inherited one (which still belongs to the parent's session with
 * the monitor) and opens its own. When no monitor answers, requests fail with
 * -ENOTCONN for a second before the next try, and callers stay on the kernel.
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

#define REPLY_TIMEOUT_MS 5000
#define RETRY_NS 1000000000ull

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

static void atfork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&lock);
}

/* The child must not speak on its parent's session: drop it, reopen later. */
static void atfork_child(void)
{
	if (still_mine(sock))
		xio_sys_close(sock);
	sock = -1;
	retry_at = 0;
	pthread_mutex_unlock(&lock);
}

static void register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
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
	int r = xio_ctl_send(sock, &m, -1, 0);
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
	if (xio_sys_connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0 || hello_locked() < 0) {
		drop_locked();
		return -ENOTCONN;
	}
	retry_at = 0;
	return 0;
}

int xio__ctl_request(void *msg, int send_fd, void *reply, int *reply_fd)
{
	struct xio_msg_hdr *h = msg;
	int r;

	if (reply_fd)
		*reply_fd = -1;
	if (enter() < 0)
		return -ENOTCONN;
	r = ensure_locked();
	if (r == 0) {
		h->seq = ++seq;
		r = xio_ctl_send(sock, msg, send_fd, 0);
		if (r == 0)
			r = recv_reply_locked(h->seq, reply, reply_fd);
		if (r < 0) {
			drop_locked();
			r = -ENOTCONN;
		}
	}
	leave();
	return r;
}

int xio__ctl_post(void *msg, int send_fd)
{
	struct xio_msg_hdr *h = msg;
	int r;

	if (enter() < 0)
		return -ENOTCONN;
	r = ensure_locked();
	if (r == 0) {
		h->seq = ++seq;
		r = xio_ctl_send(sock, msg, send_fd, 0);
		if (r < 0) {
			drop_locked();
			r = -ENOTCONN;
		}
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
	pthread_mutex_lock(&lock);
	if (sock >= 0 && sock != fd && still_mine(sock))
		xio_sys_close(sock);
	remember(fd);
	retry_at = 0;
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
