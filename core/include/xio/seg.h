/*
 * seg.h - the connection segment: one memfd per connection, shared by its
 * two endpoints, created by the monitor.
 *
 * Format (all offsets from the start of the segment; no pointers anywhere):
 *
 *   0                    struct xio_seg_hdr            (one 4 KiB page)
 *   chan_off[d]          struct xio_chan_ctl           (d = 0: side 0 -> side 1,
 *                                                        d = 1: side 1 -> side 0)
 *   data_ring_off[d]     rte_ring of struct xio_desc   (ring_slots entries)
 *   free_ring_off[d]     rte_ring of uint32_t offsets  (ring_slots entries)
 *   buf_off[d]           buffer area of direction d    (buf_chunks * chunk_size)
 *
 * Side 0 is the connecting end, side 1 the accepting end. In direction d the
 * sender (side d) owns the buffer area: it allocates chunks privately, writes
 * payload, and enqueues a descriptor {off, len} on the data ring; the
 * receiver reads the payload in place and enqueues the offset on the free
 * ring when done, giving the chunks back.
 *
 * Trust: the layout parameters come from the monitor over the control
 * socket (struct xio_seg_params), never from the segment, and each endpoint
 * computes the layout itself. Everything inside the segment may be rewritten
 * at any time by a hostile or broken peer, so every value read from it is
 * checked before use (see chan.c).
 */
#ifndef XIO_CORE_SEG_H
#define XIO_CORE_SEG_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define XIO_SEG_MAGIC 0x31474553204f4958ull /* "XIO SEG1" little-endian */
#define XIO_SEG_VERSION 2u
#define XIO_SEG_HDR_SIZE 4096u
#define XIO_CACHE_LINE 64u

/* Parameters of a segment, chosen by the monitor and sent in ATTACH. */
struct xio_seg_params {
	uint64_t seg_size;   /* total bytes of the memfd */
	uint32_t chunk_size; /* allocation unit of a buffer area, power of two >= 64 */
	uint32_t buf_chunks; /* chunks per direction */
	uint32_t ring_slots; /* entries of each ring, power of two > buf_chunks */
	uint32_t max_msg;    /* largest payload of one descriptor */
	uint32_t flags;      /* XIO_SEG_F_* */
	uint32_t win_start;  /* bytes a direction's window starts at (0: XIO_WIN_START);
			      * the config's buffer-start */
};

#define XIO_SEG_F_HUGE 0x1u /* backed by hugepages (informational) */

/* Where everything is, computed by xio_seg_layout() from trusted params. */
struct xio_seg_layout {
	size_t chan_off[2];
	size_t data_ring_off[2];
	size_t free_ring_off[2];
	size_t buf_off[2];
	size_t buf_bytes;       /* bytes of one buffer area */
	size_t data_ring_bytes; /* rte_ring_get_memsize_elem(16, ring_slots) */
	size_t free_ring_bytes; /* rte_ring_get_memsize_elem(4, ring_slots) */
	size_t used;            /* end of the last area; <= seg_size */
};

/* The segment header. Written by the monitor at creation; informational for
 * debugging tools afterwards (endpoints never trust it). */
struct xio_seg_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t flags;
	uint64_t conn_id;
	struct xio_seg_params params;
	/* Set by the monitor when the process holding side s is gone, so the
	 * other side's writes fail with EPIPE at once, as TCP's RST would. */
	alignas(XIO_CACHE_LINE) _Atomic uint32_t side_gone[2];
	/* Set by side s when it moved the connection back to kernel TCP
	 * (enum xio_leave_reason): for xio stat and the monitor's counts. */
	_Atomic uint32_t left[2];
	/* A side held by several processes since a fork: the pid whose copy
	 * of the channel state is current (0: any copy, nobody used it since
	 * the fork), and whether it is inside a read or write now
	 * (preload/leave.c, "shared after fork"). */
	_Atomic uint32_t user[2];
	_Atomic uint32_t busy[2];
	/* The pid moving side s off shared memory (leave.c): one holder of
	 * the side does it, the others wait for left[s] and follow suit. */
	_Atomic uint32_t leaving[2];
};
_Static_assert(sizeof(struct xio_seg_hdr) <= XIO_SEG_HDR_SIZE, "header fits its page");

/*
 * One channel's control block. The receiver's line and the sender's line are
 * apart so that neither side's stores invalidate the other's hot line.
 * rx_waiting/tx_waiting implement the sleep/doorbell handshake (wait.c).
 */
struct xio_chan_ctl {
	/* Written by the receiver (and cleared by the sender when it rings). */
	alignas(XIO_CACHE_LINE) _Atomic uint32_t rx_waiting; /* receiver armed to sleep */
	_Atomic uint32_t rx_closed;                           /* receiver will read no more: 1
							       * closed, XIO_RX_RESET reset */
	_Atomic uint64_t rx_token;                            /* ... in this sleep (below) */
	_Atomic uint64_t rx_bytes, rx_msgs;
	/* Leaving shared memory (leave.c): the receiver reads the ring no
	 * more, having delivered rx_left_bytes; the sender must send the rest
	 * again over the kernel socket. */
	_Atomic uint32_t rx_left;
	_Atomic uint64_t rx_left_bytes;
	/* ... and whether it rings the sender once more, after its last
	 * doorbells, with the leave bell (XIO_BELL_*, leave.c): a byte only
	 * the sender's follow reads, so that a sender killed before it sends
	 * the rest again closes its socket with a byte unread, and its kernel
	 * resets the connection instead of ending it. */
	_Atomic uint32_t rx_left_bell;
	/* The receiver's SO_RCVBUF as getsockopt reports it, when the program
	 * set one; XIO_RCVBUF_AUTO when it did not (the buffer follows the
	 * traffic); 0 while the receiver has not attached yet (an accept to
	 * come): part of what the sender may have in flight (chan.c,
	 * "budget"). */
	_Atomic uint32_t rx_rcvbuf;
	/* Giving an idle direction's memory back (reclaim.c): XIO_SHRINK_*.
	 * Either side may take it from IDLE; the receiver's take is only
	 * good once a membarrier shows the sender outside every write. */
	_Atomic uint32_t shrink;
	/* Written by the sender (and cleared by the receiver when it rings). */
	alignas(XIO_CACHE_LINE) _Atomic uint32_t tx_waiting; /* sender armed: blocked on full */
	_Atomic uint32_t tx_fin;                              /* sender will write no more */
	_Atomic uint64_t tx_token;                            /* ... in this sleep (below) */
	_Atomic uint64_t tx_bytes, tx_msgs, doorbells;
	/* The sender posts no more (leave.c): the ring holds the stream up to
	 * tx_left_bytes; what follows comes over the kernel socket. */
	_Atomic uint32_t tx_left;
	_Atomic uint64_t tx_left_bytes;
	/* The sender touches its area or data ring only with tx_active set
	 * (from before it looks at shrink until it holds no allocation); with
	 * tx_mb 1 its process answers membarrier(GLOBAL_EXPEDITED), so the
	 * receiver may give the direction's memory back while it is away
	 * (reclaim.c). tx_small: nothing was touched since the last give-back. */
	_Atomic uint32_t tx_active;
	_Atomic uint32_t tx_mb;
	_Atomic uint32_t tx_small;
};
_Static_assert(offsetof(struct xio_chan_ctl, rx_waiting) % XIO_CACHE_LINE == 0, "rx line");
_Static_assert(offsetof(struct xio_chan_ctl, tx_waiting) % XIO_CACHE_LINE == 0, "tx line");

/*
 * The waiting words (rx_waiting, tx_waiting) take three values:
 *   XIO_WAIT_IDLE    the side is not asleep and owes nothing;
 *   XIO_WAIT_ARMED   the side may sleep in the kernel: wake it;
 *   XIO_WAIT_CLAIMED the other side took the arm and rings (or rang) one
 *                    doorbell byte, which the sleeper must read.
 * Only the side that may sleep arms (IDLE/CLAIMED -> ARMED) or disarms;
 * only the other side claims (ARMED -> CLAIMED, by compare-and-swap). So a
 * side always knows whether a doorbell byte is owed to it, and can read it
 * before it closes: an unread byte would make the kernel reset the
 * connection instead of ending it.
 */
enum { XIO_WAIT_IDLE = 0, XIO_WAIT_ARMED = 1, XIO_WAIT_CLAIMED = 2, XIO_WAIT_LEFT = 3 };
/* XIO_WAIT_LEFT: the side has left shared memory (leave.c); its word can
 * never be claimed again, so no doorbell byte can land in what is now a
 * plain TCP stream. */

#define XIO_RCVBUF_AUTO 0xffffffffu

/* shrink: nobody is giving the direction's memory back; the receiver
 * asks to (the sender must not start a write until it is decided); the
 * receiver gave it back (the sender starts its window over, then sets
 * IDLE); the sender is giving it back itself. */
enum { XIO_SHRINK_IDLE = 0, XIO_SHRINK_ASK = 1, XIO_SHRINK_DONE = 2, XIO_SHRINK_SELF = 3 };

/* rx_left_bell: not decided yet; the leave bell is rung; it is not (the
 * sender is leaving at the same moment, and reads no bell). Decided before
 * tx_left is published. */
enum { XIO_BELL_UNDECIDED = 0, XIO_BELL_YES = 1, XIO_BELL_NO = 2 };

/* Why a connection left shared memory for the kernel's TCP socket
 * (docs/compatibility.md, "Moving back to TCP"). */
enum xio_leave_reason {
	XIO_LEAVE_NONE = 0,
	XIO_LEAVE_STDIO,    /* on fd 0, 1 or 2, or given to fdopen: stdio bypasses the shim */
	XIO_LEAVE_EXEC,     /* an exec would pass it to a program without the shim */
	XIO_LEAVE_REATTACH, /* re-attaching after exec failed */
	XIO_LEAVE_SECCOMP,  /* the process restricts its own system calls */
	XIO_LEAVE_OOB,      /* urgent data (MSG_OOB) */
	XIO_LEAVE_SHARED,   /* two processes used it at once after fork */
	XIO_LEAVE_PEER,     /* the other side left */
	XIO_LEAVE_ACL,      /* the process that accepted it is refused by the rules */
	XIO_LEAVE_UID,      /* it accepted a hugepage segment made for another uid */
	XIO_LEAVE_MAX
};
/* A short name for reason r ("stdio", "exec", ...; "?" if unknown). */
const char *xio_leave_reason_name(unsigned r);

/* rx_closed: 1 after an orderly close or SHUT_RD; XIO_RX_RESET when the
 * receiver closed with data unread (TCP resets the connection then). */
#define XIO_RX_RESET 2u

/* The waker: 1 if it must ring now (it claimed the arm). Call after a full
 * fence that follows the change it announces. */
static inline int xio_wait_claim(_Atomic uint32_t *w)
{
	uint32_t armed = XIO_WAIT_ARMED;
	if (atomic_load_explicit(w, memory_order_relaxed) != XIO_WAIT_ARMED)
		return 0;
	return atomic_compare_exchange_strong_explicit(w, &armed, XIO_WAIT_CLAIMED,
						       memory_order_acq_rel, memory_order_relaxed);
}

/* The sleeper: arm, or disarm. Both return 1 if a doorbell byte had been
 * claimed (it is owed: read it). */
static inline int xio_wait_arm(_Atomic uint32_t *w)
{
	return atomic_exchange_explicit(w, XIO_WAIT_ARMED, memory_order_seq_cst) ==
	       XIO_WAIT_CLAIMED;
}

/*
 * Sleep tokens: one sleep (a poll, select or epoll_wait, or a blocking
 * read) may watch many connections. It arms each of their words with the
 * same token, unique to that sleep (xio__wait_token). A waker that has
 * rung a doorbell for token T this batch need not ring for another
 * connection armed with T: the one wake-up makes the sleeper look at
 * every connection it armed before it returns or sleeps again. So a
 * process asleep on 50 connections costs its peer one system call, not 50
 * (xio__wait_claim_batched). The token is written before the arm (release
 * through the exchange) and read after seeing ARMED (acquire); a token a
 * peer fakes can only cost its own connection a wake-up.
 */
static inline int xio_wait_arm_token(_Atomic uint32_t *w, _Atomic uint64_t *tok, uint64_t token)
{
	atomic_store_explicit(tok, token, memory_order_relaxed);
	return xio_wait_arm(w);
}

static inline int xio_wait_disarm(_Atomic uint32_t *w)
{
	return atomic_exchange_explicit(w, XIO_WAIT_IDLE, memory_order_acq_rel) ==
	       XIO_WAIT_CLAIMED;
}

/* A descriptor on a data ring: one message of payload in the sender's
 * buffer area. Fixed size; offsets, never pointers. */
struct xio_desc {
	uint32_t off;   /* byte offset in the buffer area, a multiple of chunk_size */
	uint32_t len;   /* payload bytes, 1..max_msg, off + len <= buf_bytes */
	uint32_t flags; /* must be 0 in version 1 */
	uint32_t seq;   /* sender's message counter, for debugging */
};
_Static_assert(sizeof(struct xio_desc) == 16, "descriptor is 16 bytes");

/*
 * xio_seg_params_init - fill p for a segment of seg_size bytes with the
 * given chunk size and largest message; the buffer areas take what the
 * header and rings leave. Returns 0 or -EINVAL.
 */
int xio_seg_params_init(struct xio_seg_params *p, uint64_t seg_size, uint32_t chunk_size,
			uint32_t max_msg);

/* Bytes of an rte_ring of count slots of esize bytes (DPDK's formula). */
size_t xio_seg_ring_memsize(unsigned esize, unsigned count);

/*
 * xio_seg_layout - check p and compute where everything is.
 * Returns 0, or -EINVAL if p is inconsistent or does not fit seg_size.
 */
int xio_seg_layout(const struct xio_seg_params *p, struct xio_seg_layout *l);

/*
 * xio_seg_create - create a sealed memfd of p->seg_size bytes (on hugepages
 * when huge is 1 and pages are free; huge 0 never, -1 try then fall back),
 * write the header and initialise the four rings. Returns the fd, or -errno.
 * On success *is_huge tells what backs it.
 */
int xio_seg_create(const struct xio_seg_params *p, uint64_t conn_id, int huge, int *is_huge);

/*
 * xio_seg_map - map a segment fd received from the monitor, after checking
 * it is a sealed memfd of exactly p->seg_size bytes. Returns 0 and *base,
 * or -EINVAL/-errno.
 */
int xio_seg_map(int fd, const struct xio_seg_params *p, void **base);

/* xio_seg_unmap - undo xio_seg_map. */
void xio_seg_unmap(void *base, const struct xio_seg_params *p);

/* xio_seg_mark_gone - set side_gone[side] in the mapped segment (monitor). */
void xio_seg_mark_gone(void *base, unsigned side);

/*
 * xio_seg_leave_unjoined - move side `side` of a mapped segment to its
 * kernel socket on behalf of a process that never joined it and must not
 * (the monitor does it when the process that accepted a client-first
 * connection may not share that segment: core/leave.c). fd is that side's
 * socket, to ring the peer with; who names the mover in hdr->leaving.
 * Returns 0: the peer will send everything again over the kernel, and the
 * socket is a plain TCP socket from its first byte; or -ECONNRESET (the peer
 * closed or left with data in the ring nobody will send again), -EPROTO (the
 * peer rewrote this side's words) or -EBUSY (somebody moved the side
 * already): then the caller resets the connection.
 */
int xio_seg_leave_unjoined(void *base, const struct xio_seg_params *p, unsigned side,
			   unsigned reason, int fd, uint32_t who);

#endif /* XIO_CORE_SEG_H */
