/*
 * conn.c - setting up and tearing down a connection endpoint: pairing
 * through the monitor, mapping the segment, and the close handshake.
 *
 * The pairing sequence (docs/design.md, "Pairing"):
 *   connecting end: socket -> INTENT(fd) one-way -> kernel connect ->
 *                   CONNECTED -> ATTACH(segment fd) or FALLBACK
 *   accepting end:  kernel accept -> ACCEPT(fd) -> ATTACH or FALLBACK
 * INTENT goes out before connect() so that, by the time the server can
 * accept the connection, the monitor already has the client's socket in its
 * queue and can tell an xio client from a kernel one without waiting.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xio/conn.h"
#include "xio/ctl.h"
#include "xio/sys.h"

struct xio_conn *xio__conn_kernel(int fd)
{
	struct xio_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	pthread_mutex_init(&c->wait_mu, NULL);
	pthread_cond_init(&c->wait_cv, NULL);
	return c;
}

void xio__conn_free(struct xio_conn *c)
{
	pthread_mutex_destroy(&c->wait_mu);
	pthread_cond_destroy(&c->wait_cv);
	free(c);
}

int xio__conn_attach(struct xio_conn *c, const struct xio_msg_attach *a, int segfd)
{
	struct xio_seg_layout l;
	struct xio_chan_geom gtx, grx;
	void *base;
	int r;

	if (a->side > 1) {
		r = -EPROTO;
		goto out_close;
	}
	r = xio_seg_layout(&a->params, &l);
	if (r < 0)
		goto out_close;
	r = xio_seg_map(segfd, &a->params, &base);
	if (r < 0)
		goto out_close;
	/* The mapping keeps the memory alive; the fd would only take a slot
	 * in the application's fd table. */
	xio_sys_close(segfd);
	xio__chan_geom(&gtx, base, &a->params, &l, a->side);
	xio__chan_geom(&grx, base, &a->params, &l, 1 - a->side);
	r = xio__chan_tx_init(&c->tx, &gtx);
	if (r < 0) {
		xio_seg_unmap(base, &a->params);
		return r;
	}
	xio__chan_rx_init(&c->rx, &grx);
	c->base = base;
	c->hdr = base;
	c->params = a->params;
	c->side = a->side;
	c->conn_id = a->conn_id;
	c->accel = 1;
	return 0;
out_close:
	xio_sys_close(segfd);
	return r;
}

/* Handle the monitor's answer to CONNECTED or ACCEPT. */
static void take_reply(struct xio_conn *c, int r, const void *reply, int segfd)
{
	const struct xio_msg_hdr *h = reply;
	if (r == 0 && h->type == XIO_MSG_ATTACH && segfd >= 0) {
		xio__conn_attach(c, reply, segfd);
		return;
	}
	if (segfd >= 0)
		xio_sys_close(segfd);
}

uint64_t xio__conn_intent(int fd)
{
	struct xio_msg_intent m;

	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_INTENT, 0);
	m.intent = xio__ctl_next_intent();
	return xio__ctl_post(&m, fd) == 0 ? m.intent : 0;
}

void xio__conn_pair_connected(struct xio_conn *c, uint64_t intent)
{
	struct xio_msg_intent m;
	union {
		struct xio_msg_attach a;
		char raw[XIO_CTL_MAX_MSG];
	} rep;
	int segfd;

	if (!intent)
		return;
	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_CONNECTED, 0);
	m.intent = intent;
	int r = xio__ctl_request(&m, -1, &rep, &segfd);
	take_reply(c, r, &rep, segfd);
}

void xio__conn_pair_accepted(struct xio_conn *c)
{
	struct xio_msg_hdr m;
	union {
		struct xio_msg_attach a;
		char raw[XIO_CTL_MAX_MSG];
	} rep;
	int segfd;

	xio_ctl_hdr(&m, XIO_MSG_ACCEPT, 0);
	int r = xio__ctl_request(&m, c->fd, &rep, &segfd);
	take_reply(c, r, &rep, segfd);
}

void xio__conn_detach(struct xio_conn *c)
{
	if (!c->accel)
		return;
	/* As close(2) on TCP: the peer reads what is queued, then end of
	 * file; its later writes fail. */
	atomic_store_explicit(&c->tx.g.ctl->tx_fin, 1, memory_order_release);
	atomic_store_explicit(&c->rx.g.ctl->rx_closed, 1, memory_order_release);
	int ring = xio__chan_tx_notify(&c->tx);
	/* A peer asleep on a full channel must learn it can stop. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_exchange_explicit(&c->rx.g.ctl->tx_waiting, 0, memory_order_acq_rel))
		ring = 1;
	if (ring)
		xio__conn_doorbell(c);
	/* Swallow doorbells the peer rang, so that closing the kernel socket
	 * sends FIN rather than RST. */
	xio__conn_drain(c);

	struct xio_msg_close m;
	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_CLOSE, 0);
	m.conn_id = c->conn_id;
	m.side = c->side;
	xio__ctl_post(&m, -1);

	xio__chan_tx_fini(&c->tx);
	xio_seg_unmap(c->base, &c->params);
	c->base = NULL;
	c->hdr = NULL;
	c->accel = 0;
}

void xio__conn_detach_quiet(struct xio_conn *c)
{
	if (!c->accel)
		return;
	xio__chan_tx_fini(&c->tx);
	xio_seg_unmap(c->base, &c->params);
	c->base = NULL;
	c->hdr = NULL;
	c->accel = 0;
}

int xio__conn_peer_rx_gone(struct xio_conn *c)
{
	return atomic_load_explicit(&c->tx.g.ctl->rx_closed, memory_order_acquire) ||
	       atomic_load_explicit(&c->hdr->side_gone[1 - c->side], memory_order_acquire);
}

int xio__conn_peer_tx_done(struct xio_conn *c)
{
	return atomic_load_explicit(&c->rx.g.ctl->tx_fin, memory_order_acquire) ||
	       atomic_load_explicit(&c->hdr->side_gone[1 - c->side], memory_order_acquire);
}
