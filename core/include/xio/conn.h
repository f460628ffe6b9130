/*
 * conn.h - a connection endpoint inside this process: the kernel socket it
 * is anchored to, and, when accelerated, the mapped segment with the two
 * channels. Shared by the native API (api.c) and the LD_PRELOAD shim.
 */
#ifndef XIO_CORE_CONN_H
#define XIO_CORE_CONN_H

#include <stdatomic.h>
#include <stdint.h>

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
	int kernel_eof;  /* the kernel socket read end of file */
	int kernel_err;  /* ... or this error (negative errno) */
	struct xio_conn_stats st;
};

/* Wait directions for xio__conn_wait. */
#define XIO_WAIT_RX 1
#define XIO_WAIT_TX 2

/* Make a kernel-only connection around fd. Returns NULL on ENOMEM. */
struct xio_conn *xio__conn_kernel(int fd);

/* Accelerate c with the segment the monitor sent (segfd is consumed).
 * Returns 0, or -errno with c left on the kernel. */
int xio__conn_attach(struct xio_conn *c, const struct xio_msg_attach *a, int segfd);

/* Pair a connected (side 0, after xio__conn_intent) or accepted (side 1)
 * kernel socket through the monitor; on any failure c stays on the kernel. */
uint64_t xio__conn_intent(int fd);
void xio__conn_pair_connected(struct xio_conn *c, uint64_t intent);
void xio__conn_pair_accepted(struct xio_conn *c);

/* Tear down: flags to the peer, monitor told, segment unmapped. Does not
 * close c->fd and does not free c. */
void xio__conn_detach(struct xio_conn *c);

/* Adaptive wait for dir (XIO_WAIT_RX/TX): spin, yield, then sleep on the
 * kernel socket with a doorbell armed. Returns 0 to re-check, -EINTR. */
int xio__conn_wait(struct xio_conn *c, int dir);

/* Ring the peer's doorbell: one byte on the kernel socket. */
void xio__conn_doorbell(struct xio_conn *c);

/* Read and discard doorbell bytes; notes kernel end of file or error. */
void xio__conn_drain(struct xio_conn *c);

/* 1 if the peer can no longer receive (closed its read side or died). */
int xio__conn_peer_rx_gone(struct xio_conn *c);
/* 1 if no more data will come from the peer beyond what is queued. */
int xio__conn_peer_tx_done(struct xio_conn *c);

#endif /* XIO_CORE_CONN_H */
