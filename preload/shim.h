/*
 * shim.h - the shim's socket object and the helpers its wrappers share.
 *
 * Every AF_INET/AF_INET6 stream socket the program creates gets a struct
 * psock in the fd table while it may still become accelerated: PS_TCP
 * (fresh), PS_CONNECTING (non-blocking connect under way, INTENT sent),
 * PS_LISTENER (registered with the monitor), PS_CONN (accelerated). A socket
 * that ends up on the kernel becomes PS_KERNEL and stays so until closed
 * (freeing it earlier would race with other threads' calls); it costs one
 * lookup and one load per call. Epoll instances that watch such sockets are PS_EPOLL
 * entries (epoll.c). dup()ed fds share one psock, as they share one open
 * file description.
 */
#ifndef XIO_PRELOAD_SHIM_H
#define XIO_PRELOAD_SHIM_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "fdtab.h"
#include "real.h"
#include "xio/conn.h"

enum ps_kind { PS_KERNEL = 0, PS_TCP, PS_CONNECTING, PS_LISTENER, PS_CONN, PS_EPOLL };

#define PS_MAX_EPOLL 4 /* epoll sets one socket can be followed in */

struct pepoll;
struct pentry;

struct psock {
	_Atomic int refs;  /* fds that point at it */
	_Atomic int kind;
	_Atomic int nonblock; /* O_NONBLOCK of the open file description */
	int fd;            /* an fd of it, for the monitor and doorbells */
	uint64_t intent;   /* PS_CONNECTING */
	uint64_t listener_id; /* PS_LISTENER; 0 while no monitor knows it */
	pid_t listener_pid;   /* ... registered by this process */
	uint32_t listener_session; /* ... on this control session (ctl.h) */
	struct xio_conn *conn; /* PS_CONN */
	int inherited;     /* the connection came through fork() */
	pthread_mutex_t lock;  /* state changes */
	pthread_mutex_t rlock, wlock; /* one reader, one writer at a time */
	struct pepoll *ep;     /* PS_EPOLL: the shadow set */
	/* Calls in progress on it (reads, writes, polls), and the fd whose
	 * close waits for them to end (-1: none): see psock_call_enter. */
	_Atomic int calls;
	_Atomic int close_fd;
	/* The epoll sets that follow it, and its entry in each (epoll_set.h);
	 * set and cleared under that set's poke_mu. */
	struct pepoll *member_of[PS_MAX_EPOLL];
	struct pentry *ent[PS_MAX_EPOLL];
	/* poll and select park a quiet socket as epoll does (w_poll.c): the
	 * events its words are armed for with a token of its own (0: not
	 * parked; cleared by xio__shim_wake_others), and when a poll last
	 * found it ready. */
	_Atomic int poll_parked;
	_Atomic int64_t poll_ready_ns;
	/* On the list of connections that may hold memory to give back
	 * (reclaim.c), under its lock: links, the traffic count last seen and
	 * since when. */
	/* SO_SNDBUF and SO_RCVBUF as getsockopt reported them after the
	 * program set them (0: not set); an accepted socket inherits its
	 * listener's, as in the kernel. They bound what a connection holds in
	 * flight (psock_apply_bufs, chan.c "budget"). */
	int snd_set, rcv_set;
	struct psock *rc_next, *rc_prev;
	_Atomic int rc_on;
	uint64_t rc_sig;
	int64_t rc_since;
};

/* -1/errno at the POSIX boundary: the only place errno is set. */
static inline long xio_ret(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* Threads of this process asleep in a poll, select or epoll_wait that armed
 * accelerated sockets. While one sleeps, reads leave the words armed (that
 * thread must still be woken); otherwise a read takes its word back, so an
 * awake program's peers make no system call for it (w_io.c). */
extern _Atomic int xio__shim_sleepers;
static inline void xio__sleep_begin(void)
{
	atomic_fetch_add_explicit(&xio__shim_sleepers, 1, memory_order_acq_rel);
}
static inline void xio__sleep_end(void)
{
	atomic_fetch_sub_explicit(&xio__shim_sleepers, 1, memory_order_acq_rel);
}

/* w_leave.c: 1 once the process restricted its system calls (seccomp):
 * nothing new is accelerated. */
extern _Atomic int xio__shim_off;

/* init.c */
void xio__shim_init(void);
#define SHIM_INIT() xio__real_init()
int xio__allowed(const struct sockaddr *sa, socklen_t len);

/* psock.c */
struct psock *psock_new(int fd, int kind, int nonblock);
void psock_ref(struct psock *ps);
/* Drop fd's reference; the last one tears the socket down (without closing
 * fd itself). */
void psock_unref(struct psock *ps, int fd);
/*
 * A thread may close a socket's last fd while another is blocked in a read,
 * write or poll on it. The kernel keeps the socket open until that call
 * returns (it returns what comes, and the peer sees no FIN before); so does
 * the shim: a close with calls in progress leaves the fd open and the
 * socket whole, and the last call to end closes it (psock_close_later).
 */
static inline void psock_call_enter(struct psock *ps)
{
	atomic_fetch_add_explicit(&ps->calls, 1, memory_order_seq_cst);
}
void psock_call_end(struct psock *ps);
static inline void psock_call_exit(struct psock *ps)
{
	if (atomic_fetch_sub_explicit(&ps->calls, 1, memory_order_seq_cst) == 1 &&
	    __builtin_expect(atomic_load_explicit(&ps->close_fd, memory_order_seq_cst) >= 0, 0))
		psock_call_end(ps);
}
/* close(fd) of ps's last fd: 1 if calls are in progress and the close is
 * theirs to finish (fd stays open until then), 0 to close now. */
int psock_close_later(struct psock *ps, int fd);
/* Before dup2 replaces fd, ps's last fd, with calls in progress on it: a
 * private copy of the socket's fd (returned, or -1 if none is needed or
 * can be made) that the calls go on with, closed when they end. */
int psock_keep_for_calls(struct psock *ps, int fd);
/* 1 if fd is such a closed fd, still open for a call in progress. */
int psock_closing_fd(int fd);
/* 1 if an epoll set follows ps (epoll.c). */
static inline int psock_in_epoll(const struct psock *ps)
{
	return ps->member_of[0] || ps->member_of[1] || ps->member_of[2] || ps->member_of[3];
}
/* The socket goes back to the kernel for good. */
void xio__epoll_sync(struct psock *ps);
static inline void psock_to_kernel(struct psock *ps)
{
	atomic_store_explicit(&ps->kind, PS_KERNEL, memory_order_release);
	if (psock_in_epoll(ps))
		xio__epoll_sync(ps);
}
/* For PS_CONNECTING: finish the pairing if the kernel connect completed.
 * wait: block until it completes. Returns the kind afterwards (PS_CONN,
 * PS_CONNECTING), or 0 if the socket went back to the kernel. */
int psock_finish_connect(struct psock *ps, int fd, int wait);
/* Register a bound socket as a listener with the monitor, in this
 * process's name, and keep it registered with any monitor that comes later
 * (after a crash or a restart). Returns 1 if registered now, -1 if no
 * monitor answered (it will be registered when one does), 0 if the monitor
 * refused it. */
int psock_register_listener(struct psock *ps, int fd);
/* Take back ps's registration as a listener (one-way message). */
void psock_unlisten(struct psock *ps);
/* Pair a connected socket (blocking connect done) and install or drop ps. */
void psock_pair_connected(struct psock *ps, int fd, uint64_t intent);

/* leave.c: moving connections back to kernel TCP (core/leave.c).
 * xio__shim_leave: ps leaves shared memory for reason; 0 or -ECONNRESET
 * (the connection was reset rather than cut short). xio__shim_follow: the
 * peer left; do our part. xio__shim_settle: a connection with nothing left
 * in the segment becomes PS_KERNEL; one that left with the channel's rest
 * still to read is registered in its epoll sets for the program's events
 * (call with no epoll set locked).
 * xio__shim_leave_all: every connection (or those on fds 0-2) leaves. */
int xio__shim_leave(struct psock *ps, unsigned reason);
int xio__shim_follow(struct psock *ps);
void xio__shim_settle(struct psock *ps);
void xio__shim_leave_all(unsigned reason, int only_low);
/* Before exec or seccomp, after which this process could not send them:
 * pending resends go out (a second at most), or their connections are
 * reset (core/resend.c, xio__conn_resend_flush). */
void xio__shim_resend_flush_all(void);
/* A connection held by two processes since fork (ps->inherited): make
 * sure this process may use the channel state, or move it to the kernel
 * (claim); enter a call on it as its user, 1 (busy set), or 0 if this
 * process is not the user (claim first); and leave the call. */
void xio__shim_claim(struct psock *ps);
int xio__shim_enter(struct psock *ps);
void xio__shim_leave_call(struct psock *ps);
void xio__shim_pid_reset(void); /* in a forked child */
/* Readiness of an accelerated socket for poll/select/epoll: a peer that
 * left is followed first (it may wait for what we sent and it did not
 * read), so what is reported is the kernel socket's truth from then on. */
static inline short xio__shim_conn_poll(struct psock *ps, short want, uint64_t token)
{
	if (__builtin_expect(ps->inherited, 0))
		xio__shim_claim(ps);
	if (__builtin_expect(xio__conn_peer_left(ps->conn), 0))
		xio__shim_follow(ps);
	return xio__conn_poll(ps->conn, want, token);
}

/* stats.c */
struct xio_shim_stats {
	_Atomic uint64_t accel_conns, fallback_conns;
	_Atomic uint64_t tx_bytes, rx_bytes, tx_msgs, rx_msgs;
	_Atomic uint64_t ep_waits, ep_looks, ep_parks, ep_unparks; /* epoll_set.h */
	_Atomic uint64_t gave_back_tx, gave_back_rx; /* directions given back (reclaim.c) */
};
extern struct xio_shim_stats xio_stats;
void xio__stats_conn_closed(const struct xio_conn *c);
void xio__stats_reset(void); /* in a forked child */
/* A connection left shared memory: count it, and write its line
 * (xio-left pid= fd= reason= tx_off= rx_off=) where XIO_STATS says. */
void xio__stats_left(int fd, const struct xio_conn *c);
#define STAT_ADD(field, v) atomic_fetch_add_explicit(&xio_stats.field, (v), memory_order_relaxed)

/* wake.c: telling the other threads that wait on a socket in poll, select
 * or epoll_wait to look again (installed as core's xio__conn_wake_others).
 * A poll or select lists itself while it sleeps, with its thread's eventfd
 * (returned, or -1 if none could be made: it then sleeps unlisted). */
struct poll_wait {
	struct poll_wait *next;
	int efd; /* this thread's eventfd; -1: not listed */
	struct psock *const *ps;
	size_t n;
};
void xio__shim_wake_others(struct xio_conn *c);
int xio__poll_wait_begin(struct poll_wait *w, struct psock *const *ps, size_t n);
void xio__poll_wait_end(struct poll_wait *w);
void xio__wake_after_fork(void);
int xio__wake_eventfd(void);
void xio__wake_write(int fd);
void xio__wake_read(int fd);

/* epoll.c */
/* Make a thread asleep on ep look at its set again, if one sleeps there. */
void xio__epoll_wake(struct pepoll *ep);
void xio__epoll_forget(struct psock *ps);     /* ps is going away */
void xio__epoll_became_conn(struct psock *ps); /* re-register as xio */
void xio__epoll_sync(struct psock *ps);        /* kind changed: re-register */
void xio__epoll_free(struct pepoll *ep);
void xio__epoll_after_fork(struct pepoll *ep);
/* The parent after fork: every member is looked at by the next wait. */
void xio__epoll_look_all(struct pepoll *ep);
/* Another thread may have taken back the arm of ps's connection: each set
 * that follows it looks at it again at its next wait (epoll_ready.c). */
void xio__epoll_poke(struct psock *ps);
/* Tokens of their own (XIO_TOKEN_OWN) for the members one wait parks,
 * drawn in batches (epoll_ready.c); start with { 0, 0 }. */
struct park_tokens {
	uint64_t next;
	unsigned left;
};
uint64_t xio__park_token(struct park_tokens *t);
/* How long a member stays looked at once it was last found ready
 * (XIO_EPOLL_PARK_US, default 1000 microseconds). */
int64_t xio__epoll_park_ns(void);

/* Give ps's connection the buffer sizes the program set (shim.h). */
void psock_apply_bufs(struct psock *ps);

/* Giving quiet connections' memory back (reclaim.c): the hook installed
 * at start; a psock forgotten before it is freed; after fork, in the
 * child; a sweep if one is due (before a wait sleeps); a sleep of ns or
 * ms (negative: for ever) shortened to reach the next sweep. */
void xio__reclaim_init(void);
void xio__reclaim_forget(struct psock *ps);
void xio__reclaim_after_fork(void);
void xio__reclaim_tick(void);
int64_t xio__reclaim_cap_ns(int64_t ns);
int xio__reclaim_cap_ms(int ms);

#endif
