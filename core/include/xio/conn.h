/*
 * conn.h - a connection endpoint inside this process: the kernel socket it
 * is anchored to, and, when accelerated, the mapped segment with the two
 * channels. Shared by the native API (api.c) and the LD_PRELOAD shim.
 */
#ifndef XIO_CORE_CONN_H
#define XIO_CORE_CONN_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

#include "xio.h"
#include "xio/chan.h"
#include "xio/ctl.h"
#include "xio/seg.h"

struct xio_conn {
	int fd;          /* the kernel TCP socket: identity, doorbell, fallback */
	int accel;       /* 1: payload over the segment; 0: kernel TCP */
	int nonblock;
	unsigned side;   /* 0 connecting end, 1 accepting end */
	uint64_t conn_id;
	void *base;      /* the mapped segment */
	struct xio_seg_params params; /* trusted copy, from the monitor */
	struct xio_seg_hdr *hdr;
	struct xio_chan_tx tx;        /* direction side -> peer */
	struct xio_chan_rx rx;        /* direction peer -> side */
	int shut_rd, shut_wr;
	int wrote_past_close; /* the one write TCP lets through after the peer
			       * closed is used up (or a reset came first) */
	int kernel_eof;  /* the kernel socket read end of file */
	int kernel_err;  /* ... or this error (negative errno), taken from it */
	int kernel_errq; /* an error is pending on the socket (left for SO_ERROR) */
	/* TCP_NODELAY as the program set it. While accelerated the kernel
	 * socket carries only doorbells, and has TCP_NODELAY on: otherwise
	 * Nagle's algorithm holds a doorbell behind an unacknowledged one
	 * until the peer's delayed ACK (40 ms). The shim shows the program
	 * its own setting. */
	int app_nodelay;
	/* SO_RCVLOWAT and TCP_NOTSENT_LOWAT as the program set them (1 and 0:
	 * not set): poll and epoll report POLLIN only once that much is there
	 * to read, and POLLOUT only while less than notsent_lowat bytes are
	 * unread by the peer, as tcp_poll does. */
	int rcvlowat;
	unsigned notsent_lowat;
	/* Leaving shared memory (leave.c). left: why this side posts no
	 * more and writes to the kernel socket (enum xio_leave_reason;
	 * XIO_LEAVE_PEER when it followed the peer). Reads take what is left
	 * in the ring, if this side still reads it, then the kernel's; once
	 * nothing is left there accel drops to 0 and base stays mapped until
	 * the connection is freed. */
	unsigned left;
	int rx_raw;         /* this side reads the ring no more */
	int forked;         /* another process may hold this side too (fork):
			     * only then can a sibling move it under us */
	_Atomic int leaving; /* this side's own leave has begun (it set rx_left and
			      * turns its words LEFT): values in the segment that
			      * only such a leave writes are not forged then */
	_Atomic unsigned owed_late; /* doorbell bytes claimed for us that had not
			     * arrived when we looked: read them first */
	uint64_t left_tx_off, left_rx_off; /* where each direction moved (stats) */
	/* The resend (resend.c): what the peer did not read of our ring stream
	 * and the kernel has not taken yet, as many bytes as resend_left, up
	 * to st.tx_bytes. It is the head of the socket's outgoing stream, as
	 * bytes in a full TCP send buffer would be: writes queue behind it,
	 * poll reports room only after it, and it goes out as the kernel takes
	 * it, from the segment's buffers (so accel stays 1, and the segment
	 * mapped, until it is out). resend_busy: one thread pushes it at a
	 * time (the pid of the process it is in); resend_pid: the process
	 * that owns it (a copy made by fork does not); app_linger: the
	 * program's SO_LINGER, while the socket has {1, 0}. */
	_Atomic uint64_t resend_left;
	_Atomic int resend_busy;
	uint32_t resend_pid;
	int resend_bg; /* the resend thread has an entry for it (resend.c) */
	int app_linger_on, app_linger_s;
	struct xio_conn_stats st;
	uint64_t stray_bytes; /* bytes in the kernel socket that no claim
			       * owed (a broken peer's), dropped (wait.c) */
	void *owner;          /* the shim's socket object, for wake_others */
	/* One thread per process sleeps in the kernel for this connection
	 * (sleeper, from before it arms until it has read what it is owed);
	 * others wait on wait_cv until it wakes. wait_mu also orders every
	 * word exchange that may find a claim and every read of owed
	 * doorbells (wait.c, "who reads the doorbells"). */
	pthread_mutex_t wait_mu;
	pthread_cond_t wait_cv;
	int sleeper;
	/* On the shim's list of connections that may hold memory to give
	 * back (reclaim.c); set and cleared by the shim under its lock. */
	_Atomic int mem_dirty;
};

/* TCP_NOTSENT_LOWAT as kept in notsent_lowat: the kernel's "no limit"
 * (its default, UINT_MAX, or anything past INT_MAX) is 0. */
static inline unsigned xio__notsent_lowat(unsigned v)
{
	return v < 0x7fffffffu ? v : 0;
}

/* Flags of xio__conn_read / xio__conn_write. */
#define XIO_IO_NONBLOCK 0x1u /* never wait: -EAGAIN */
#define XIO_IO_PEEK 0x2u     /* read without consuming */
#define XIO_IO_WAITALL 0x4u  /* read: wait for the whole length (or end, error) */

/* Scatter/gather I/O with per-call flags; the shim's read/recv/readv and
 * write/send/writev families all end here. Same returns as xio_read and
 * xio_write. */
ssize_t xio__conn_readv(struct xio_conn *c, const struct iovec *iov, int iovcnt, unsigned flags);
ssize_t xio__conn_writev(struct xio_conn *c, const struct iovec *iov, int iovcnt,
			 unsigned flags);

/* Readiness as poll(2) would report it for the TCP socket: POLLIN, POLLOUT,
 * POLLRDHUP, POLLHUP, POLLERR. With a sleep token (not 0) and none of
 * events ready, arms the doorbell for that sleep so the kernel socket
 * turns readable when that changes. */
short xio__conn_poll(struct xio_conn *c, short events, uint64_t token);

/* Arm the doorbell for events with a sleep token, whatever is ready now
 * (the caller looks again afterwards): for an EPOLLET socket whose ready
 * state was reported already, and must wake its sleep when it changes. */
void xio__conn_arm(struct xio_conn *c, short events, uint64_t token);

/* A token for one sleep, unique on this host (seg.h, sleep tokens). */
uint64_t xio__wait_token(void);
/* The first of n consecutive tokens (n >= 1), or 0 if none could be had
 * at once: then draw them one by one. */
uint64_t xio__wait_tokens(unsigned n);
/* Marks a token armed on one word only (a parked member's): a peer never
 * skips ringing for it, and xio__conn_arm_locked never replaces it with a
 * sleep's shared token while the word stays armed. */
#define XIO_TOKEN_OWN (1ull << 63)
/* ... and the tx word's own token differs from the rx word's by this bit
 * (xio__conn_arm): a peer that rang for one must not skip the other, whose
 * arm is kept until it rings (nginx's EPOLLOUT after a proxied reply). */
#define XIO_TOKEN_TX (1ull << 62)

/* With the receive ring empty: 0 at end of file, -errno, or 1 for
 * "nothing yet". */
ssize_t xio__conn_rx_state(struct xio_conn *c);
/* 0 if writing may go on, else the error a write returns. */
ssize_t xio__conn_tx_state(struct xio_conn *c);
/* With nothing to read (rx) or no room (tx): wait as fl allows. Returns 1
 * to try again, or what the call must return (0 at end of file, -EAGAIN,
 * -EINTR, -errno). */
ssize_t xio__conn_rx_wait(struct xio_conn *c, unsigned fl);
ssize_t xio__conn_tx_wait(struct xio_conn *c, unsigned fl);
/* Give back released buffers / wake a sleeping receiver, ringing the
 * doorbell when the peer sleeps. */
void xio__conn_after_release(struct xio_conn *c);
void xio__conn_after_post(struct xio_conn *c);

/* A value that changes whenever new data, freed room or an end of stream
 * arrives: the shim's EPOLLET edges. */
uint64_t xio__conn_event_sig(struct xio_conn *c);

/* Say what the program set as this side's SO_RCVBUF (0: nothing, it
 * autotunes), for the peer's budget (seg.h, rx_rcvbuf). Called once the
 * connection is attached, and again whenever the program sets it. */
void xio__conn_publish_rcvbuf(struct xio_conn *c, uint32_t rcvbuf);

/* Bytes that a read could return now (FIONREAD), and bytes written that
 * the peer has not read yet (SIOCOUTQ; over loopback nothing else is
 * unacknowledged). */
size_t xio__conn_nread(struct xio_conn *c);
size_t xio__conn_nwrite(struct xio_conn *c);

/*
 * Leaving shared memory for the kernel TCP socket at an exact byte offset
 * in each direction (leave.c, docs/design.md "Leaving shared memory").
 * The caller excludes every other read and write of c while these run.
 *   xio__conn_leave: this side can no longer see all reads and writes of
 *     the socket (stdio, exec, seccomp, urgent data...). From its return
 *     on, reads and writes go to the kernel socket; what the peer had
 *     posted and this side had not read comes again over the kernel.
 *     Returns 0, or -ECONNRESET when that cannot be done without a gap
 *     (the peer closed, or left itself, with data this side never read):
 *     the connection is then reset, never silently cut.
 *   xio__conn_follow: the peer left (xio__conn_peer_left): send again what
 *     it did not read, and write to the kernel from now on.
 * XIO__FOLLOW is what reads and writes return when they find the peer
 * left: follow, then call again.
 */
int xio__conn_leave(struct xio_conn *c, unsigned reason);
/* After a leave or follow: the kernel socket serves the program now, with
 * the thresholds it set (SO_RCVLOWAT). */
void xio__conn_give_back_opts(struct xio_conn *c);
int xio__conn_follow(struct xio_conn *c);
/* A copy of a side shared through fork whose private state is stale: leave
 * with the counts the last user published (it must not be inside a call). */
int xio__conn_leave_stale(struct xio_conn *c, unsigned reason);
/* 1 if another holder of this side (fork) left it: c is on the kernel now. */
int xio__conn_adopt_left(struct xio_conn *c);
/* 1 if another holder of this side (fork) is moving it to the kernel now:
 * this copy must not touch the channel (reads and writes return
 * XIO__FOLLOW, and xio__conn_follow waits until the move is done). */
int xio__conn_sibling_moving_slow(const struct xio_conn *c);
static inline int xio__conn_sibling_moving(const struct xio_conn *c)
{
	return __builtin_expect(c->forked, 0) && xio__conn_sibling_moving_slow(c);
}
#define XIO__FOLLOW (-4096)
static inline int xio__conn_peer_left(const struct xio_conn *c)
{
	return c->accel && !c->left &&
	       atomic_load_explicit(&c->rx.g.ctl->tx_left, memory_order_acquire) != 0;
}
/*
 * The resend (resend.c, docs/design.md "Leaving shared memory"): once this
 * side followed its peer, the part of its ring stream the peer had not
 * read goes over the kernel socket ahead of anything it writes later. The
 * follow hands the kernel what fits at once; the rest stays pending and
 * goes out as the kernel takes it (a thread of the process pushes it), and
 * never makes a call wait that would not wait on TCP:
 *   xio__conn_resend_push: hand the kernel what it takes now (fl has
 *     XIO_IO_NONBLOCK; XIO_IO_TRY: only if no other thread is at it), or
 *     wait as a blocking send on the socket would (its O_NONBLOCK,
 *     SO_SNDTIMEO, signals). 0 once all is out, -EAGAIN, -EINTR, or the
 *     connection's error.
 *   xio__conn_resend_readv: a blocking read while it is pending and no
 *     thread pushes it: waits for data and pushes meanwhile (the peer may
 *     answer only once it has it all).
 *   xio__conn_resend_revents: poll's answer for a connection that left,
 *     given what the kernel said for xio__conn_left_events: POLLOUT only
 *     once the resend is out (pushed here when the kernel has room).
 *   xio__conn_left_events: what to ask the kernel socket of a connection
 *     that left, for the program's events: with POLLOUT while a resend is
 *     pending, so that room wakes a wait that pushes it. Needed only where
 *     no thread could be had; harmless otherwise.
 *   xio__conn_close_resend: the program closes the socket: 1 if c and a
 *     copy of its socket were taken over (the rest goes out in the
 *     background, as TCP sends a closed socket's queue; the caller closes
 *     its own fd only and forgets c), else 0: close as usual.
 *   xio__conn_left_shutdown: shutdown(2) of a connection that left; the
 *     FIN waits for the resend.
 *   xio__conn_ring_done: the ring's rest is read: reads take the kernel's
 *     from now on, and accel drops once the resend is out too.
 * For leave.c: xio__resend_lock/unlock (one thread pushes at a time; the
 * moves hold it throughout), xio__resend_start (step 5 with the flag held:
 * 0 all out, 1 some pending, -errno) and xio__resend_drop (the connection
 * was reset). For resend.c: xio__conn_gap_reset (RST, and the peer's
 * channel side told, through fd; -ECONNRESET) and xio__conn_tell_siblings
 * (other holders of the side, after fork, go to the kernel now).
 */
#define XIO_IO_TRY 0x8u /* resend_push: leave it to a thread already at it */
int xio__conn_resend_push(struct xio_conn *c, unsigned fl);
ssize_t xio__conn_resend_readv(struct xio_conn *c, const struct iovec *iov, int iovcnt,
			       unsigned fl);
short xio__conn_resend_revents(struct xio_conn *c, short events, short kernel_revents);
int xio__conn_close_resend(struct xio_conn *c);
int xio__conn_left_shutdown(struct xio_conn *c, int how);
void xio__conn_ring_done(struct xio_conn *c);
int xio__resend_lock(struct xio_conn *c, int wait);
void xio__resend_unlock(struct xio_conn *c);
int xio__resend_start(struct xio_conn *c, uint64_t bytes);
void xio__resend_drop(struct xio_conn *c);
int xio__conn_gap_reset(struct xio_conn *c, int fd);
void xio__conn_tell_siblings(struct xio_conn *c);
static inline int xio__conn_resend_pending(const struct xio_conn *c)
{
	return __builtin_expect(atomic_load_explicit(&c->resend_left, memory_order_acquire) != 0,
				0);
}
static inline short xio__conn_left_events(const struct xio_conn *c, short events)
{
	return xio__conn_resend_pending(c) ? (short)(events | POLLOUT) : events;
}
/* Before exec, which cannot carry a pending resend into the new program
 * (nor keep this process's copies of closed sockets), or seccomp, whose
 * filter may forbid the calls that push it: push c's, or wait for those of
 * the closed sockets, for at most ms, then reset what is left, so that the
 * peer reads ECONNRESET, not a stream with a hole in it. */
void xio__conn_resend_flush(struct xio_conn *c, int ms);
void xio__resend_closed_flush(int ms);

/* Read n doorbell bytes the peer claimed to send, waiting up to ms for
 * each (what has not come by then is read at the next look). */
void xio__conn_take_owed(struct xio_conn *c, unsigned n, int ms);
/* Reset the kernel TCP connection of fd (RST) and keep the fd: for a
 * connection that cannot go on without a gap in its stream. */
void xio__sock_reset(int fd);

/* Wait directions for xio__conn_wait. */
#define XIO_WAIT_RX 1
#define XIO_WAIT_TX 2

/* Make a kernel-only connection around fd. Returns NULL on ENOMEM. */
struct xio_conn *xio__conn_kernel(int fd);
/* Free c (after xio__conn_detach); does not close c->fd. */
void xio__conn_free(struct xio_conn *c);

/* Accelerate c with the segment the monitor sent (segfd is consumed).
 * Returns 0, or -errno with c left on the kernel. */
int xio__conn_attach(struct xio_conn *c, const struct xio_msg_attach *a, int segfd);

/* Pair a connected (side 0, after xio__conn_intent) or accepted (side 1)
 * kernel socket through the monitor; on any failure c stays on the kernel. */
uint64_t xio__conn_intent(int fd);
void xio__conn_pair_connected(struct xio_conn *c, uint64_t intent);
void xio__conn_pair_accepted(struct xio_conn *c);

/* End the stream as close(2) would (flags, doorbell, swallow doorbells so
 * the kernel sends FIN, not RST) without unmapping anything. */
void xio__conn_fin(struct xio_conn *c);

/* Tear down: flags to the peer, monitor told, segment unmapped. Does not
 * close c->fd and does not free c. */
void xio__conn_detach(struct xio_conn *c);
/* Unmap without telling the peer anything: another process (a forked
 * child or parent) may still hold the connection; the kernel's FIN tells
 * the peer when the last holder closes. */
void xio__conn_detach_quiet(struct xio_conn *c); /* also after a leave */

/* exec: the connection's private state as bytes, and back (conn.c). */
size_t xio__conn_image_size(const struct xio_conn *c);
int xio__conn_image_save(const struct xio_conn *c, void *buf, size_t len);
uint64_t xio__conn_image_id(const void *buf, size_t len, unsigned *side);
int xio__conn_reattach(struct xio_conn *c, uint64_t conn_id, unsigned side, const void *image,
		       size_t len);

/* Adaptive wait for dir (XIO_WAIT_RX/TX): spin, yield, then sleep on the
 * kernel socket with a doorbell armed. Returns 0 to re-check, or -EINTR /
 * -EAGAIN (SO_RCVTIMEO expired) exactly as a blocking recv would. */
int xio__conn_wait(struct xio_conn *c, int dir);

/* Take back word w (rx_waiting or tx_waiting of c), reading the doorbell
 * byte if the peer had claimed it; other waiting threads are told. */
void xio__conn_disarm(struct xio_conn *c, _Atomic uint32_t *w);
/* Arm w for a sleep with token under wait_mu; 1 if a claim was pending
 * (its byte is read, or left to the thread asleep on the socket). */
int xio__conn_arm_locked(struct xio_conn *c, _Atomic uint32_t *w, _Atomic uint64_t *tok,
			 uint64_t token);
/* Read the doorbells owed from before (owed_late), unless another thread
 * sleeps on the socket for them. */
void xio__conn_take_late(struct xio_conn *c);
/* Set by the shim: wake the threads of this process that may sleep on c
 * in poll, select or epoll_wait, so they look again (wait.c). */
extern void (*xio__conn_wake_others)(struct xio_conn *c);
static inline void xio__conn_tell_waiters(struct xio_conn *c)
{
	void (*fn)(struct xio_conn *) = xio__conn_wake_others;
	if (fn)
		fn(c);
}

/*
 * Giving quiet connections' memory back (reclaim.c, chan.c). A connection
 * that moved data is noted once (mem_dirty, xio__conn_mem_hook: the shim
 * keeps the list its sweeps walk); a sweep that excludes its reads and
 * writes and finds xio__conn_traffic unchanged for a second calls
 * xio__conn_quiet_shrink: the sending direction is given back (1) or not
 * (0, -errno), and *ask_rx (only if may_ask) says the receiving one awaits
 * xio__reclaim_barrier() then xio__chan_rx_shrink_finish. Once
 * xio__conn_small, nothing is left to give back until traffic comes.
 * xio__reclaim_mb: 1 if this process answers the barrier (registers
 * once, and again in forked children).
 */
int xio__reclaim_mb(void);
int xio__reclaim_barrier(void);
uint64_t xio__conn_traffic(const struct xio_conn *c);
int xio__conn_quiet_shrink(struct xio_conn *c, int may_ask, int *ask_rx);
int xio__conn_small(const struct xio_conn *c);
extern void (*xio__conn_mem_hook)(struct xio_conn *c);
static inline void xio__conn_mem_note(struct xio_conn *c)
{
	if (__builtin_expect(!atomic_load_explicit(&c->mem_dirty, memory_order_relaxed), 0)) {
		void (*fn)(struct xio_conn *) = xio__conn_mem_hook;
		if (fn)
			fn(c);
	}
}

/* Ring the peer's doorbell: one byte on the kernel socket. */
void xio__conn_doorbell(struct xio_conn *c);

/* Read and discard doorbell bytes; notes kernel end of file or error. */
void xio__conn_drain(struct xio_conn *c);
/* Read the doorbell byte the peer claimed to send (it may still be on its
 * way: waits for it, briefly). */
void xio__conn_owed_doorbell(struct xio_conn *c);
/* Read everything the kernel socket holds (closing: FIN, not RST). */
void xio__conn_swallow(struct xio_conn *c);
/* The same when poll/epoll already reported revents for the socket. */
void xio__conn_drain_ready(struct xio_conn *c, unsigned revents);
/* How long poll/epoll look at accelerated sockets before they sleep
 * (XIO_POLL_SPIN_US, default 20 microseconds). */
uint64_t xio__poll_spin_ns(void);
/* One step of that look: a pause, or a yield for a process bound to one CPU. */
void xio__poll_relax(void);

/* 1 if the peer can no longer receive (closed its read side or died). */
int xio__conn_peer_rx_gone(struct xio_conn *c);
/* 1 if no more data will come from the peer beyond what is queued. */
int xio__conn_peer_tx_done(struct xio_conn *c);

#endif /* XIO_CORE_CONN_H */
