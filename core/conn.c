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
#include <netinet/in.h>
#include <netinet/tcp.h>
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
	/* This side's process answers the receiver's membarrier (reclaim.c);
	 * the flag is ours to write, and a lie would only cost this
	 * connection. */
	atomic_store_explicit(&gtx.ctl->tx_mb, (uint32_t)xio__reclaim_mb(), memory_order_relaxed);
	int on = 1;
	socklen_t ol = sizeof(c->app_nodelay);
	if (xio_sys_getsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &c->app_nodelay, &ol) < 0)
		c->app_nodelay = 0;
	xio_sys_setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	/* The program's readiness thresholds are the shim's to apply while
	 * the kernel socket carries one-byte doorbells: with SO_RCVLOWAT above
	 * 1 it would never call a doorbell readable. Given back to the kernel
	 * socket if the connection leaves (xio__conn_give_back_opts). */
	int v = 0;
	ol = sizeof(v);
	c->rcvlowat = 1;
	if (xio_sys_getsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, &ol) == 0 && v > 1) {
		c->rcvlowat = v;
		xio_sys_setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &on, sizeof(on));
	}
	unsigned nl = 0;
	ol = sizeof(nl);
	c->notsent_lowat = 0;
	if (xio_sys_getsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &nl, &ol) == 0)
		c->notsent_lowat = xio__notsent_lowat(nl);
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

void xio__conn_fin(struct xio_conn *c)
{
	/* The peer left: what it did not read of ours must still reach it,
	 * over the kernel, before the kernel's FIN. */
	if (xio__conn_peer_left(c))
		xio__conn_follow(c);
	if (!c->accel || c->left)
		return;
	/* As close(2) on TCP: the peer reads what is queued, then end of
	 * file; its later writes fail. */
	atomic_store_explicit(&c->tx.g.ctl->tx_fin, 1, memory_order_release);
	atomic_store_explicit(&c->rx.g.ctl->rx_closed, 1, memory_order_release);
	int ring = xio__chan_tx_notify(&c->tx);
	/* A peer asleep on a full channel must learn it can stop. */
	atomic_thread_fence(memory_order_seq_cst);
	/* The peer may have left while we closed, without seeing our end
	 * (leave.c looks for it after publishing its own): what it did not
	 * read of ours goes over the kernel now, ahead of the kernel's FIN. */
	if (xio__conn_peer_left(c)) {
		xio__conn_follow(c);
		return;
	}
	if (xio_wait_claim(&c->rx.g.ctl->tx_waiting))
		ring = 1;
	if (ring)
		xio__conn_doorbell(c);
	/* Read the doorbells the peer rang or is ringing, so that closing the
	 * kernel socket sends FIN rather than RST. */
	xio__conn_disarm(c, &c->rx.g.ctl->rx_waiting);
	xio__conn_disarm(c, &c->tx.g.ctl->tx_waiting);
	xio__conn_swallow(c);
}

/*
 * A TCP socket closed with data it has not read resets the connection, so
 * that the sender learns its data was lost: the kernel socket is closed
 * with SO_LINGER {1, 0} (its RST reaches the peer as ECONNRESET, as for an
 * abort), and rx_closed says "reset" rather than "closed", so the peer's
 * writes fail at once instead of the one write TCP lets through after an
 * orderly close.
 */
static void reset_unread(struct xio_conn *c)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	xio_sys_setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	atomic_store_explicit(&c->rx.g.ctl->rx_closed, XIO_RX_RESET, memory_order_release);
}

void xio__conn_detach(struct xio_conn *c)
{
	if (xio__conn_peer_left(c))
		xio__conn_follow(c);
	if (c->left) {
		xio__conn_detach_quiet(c);
		return;
	}
	if (!c->accel)
		return;
	if (xio__chan_rx_pending(&c->rx))
		reset_unread(c);
	else
		xio__conn_fin(c);
	xio__conn_detach_quiet(c);
}

void xio__conn_detach_quiet(struct xio_conn *c)
{
	/* After a leave (leave.c) accel is 0 but the segment is mapped. */
	if (c->left ? !c->base : !c->accel)
		return;
	/* This process lets go of its side; the monitor keeps the side alive
	 * while another process holds it. */
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

/*
 * Handing a connection to a new program image (exec). The segment mapping
 * dies with the old image, but what the process knows privately must not:
 * which of its buffers are out (the allocator) and the descriptors it has
 * taken off the ring but not yet read. The image is written before exec
 * and read back by the new image's shim, which maps the segment again.
 */
#define IMAGE_MAGIC 0x58494f49u /* "XIOI" */

struct conn_image {
	uint32_t magic, size;
	uint64_t conn_id;
	uint32_t side, tx_seq;
	struct xio_seg_params params;
	int32_t shut_rd, shut_wr, kernel_eof, kernel_err, kernel_errq, ring_due, app_nodelay;
	uint32_t ba_n, ba_head, ba_tail, ba_used, snd_limit;
	uint32_t rx_pos, rx_n, rx_consumed, rx_nrel;
	uint32_t tx_data_prod, tx_free_cons, rx_data_cons, rx_free_prod;
	struct xio_desc rx_cache[XIO_RX_BURST];
	uint32_t rx_rel[XIO_RX_BURST];
	uint16_t ba_len[]; /* ba_n entries */
};

size_t xio__conn_image_size(const struct xio_conn *c)
{
	return sizeof(struct conn_image) + (size_t)c->tx.ba.n * sizeof(uint16_t);
}

int xio__conn_image_save(const struct xio_conn *c, void *buf, size_t len)
{
	struct conn_image *im = buf;
	if (!c->accel || len < xio__conn_image_size(c))
		return -EINVAL;
	memset(im, 0, sizeof(*im));
	im->magic = IMAGE_MAGIC;
	im->size = (uint32_t)xio__conn_image_size(c);
	im->conn_id = c->conn_id;
	im->side = c->side;
	im->tx_seq = c->tx.seq;
	im->params = c->params;
	im->shut_rd = c->shut_rd;
	im->shut_wr = c->shut_wr;
	im->kernel_eof = c->kernel_eof;
	im->kernel_err = c->kernel_err;
	im->kernel_errq = c->kernel_errq;
	im->ring_due = c->rx.ring_due;
	im->app_nodelay = c->app_nodelay;
	im->ba_n = c->tx.ba.n;
	im->ba_head = c->tx.ba.head;
	im->ba_tail = c->tx.ba.tail;
	im->ba_used = c->tx.ba.used;
	im->snd_limit = c->tx.snd_limit;
	im->rx_pos = c->rx.pos;
	im->rx_n = c->rx.n;
	im->rx_consumed = c->rx.consumed;
	im->rx_nrel = c->rx.nrel;
	im->tx_data_prod = c->tx.data_prod;
	im->tx_free_cons = c->tx.free_cons;
	im->rx_data_cons = c->rx.data_cons;
	im->rx_free_prod = c->rx.free_prod;
	memcpy(im->rx_cache, c->rx.cache, sizeof(im->rx_cache));
	memcpy(im->rx_rel, c->rx.rel, sizeof(im->rx_rel));
	memcpy(im->ba_len, c->tx.ba.len, (size_t)c->tx.ba.n * sizeof(uint16_t));
	return (int)im->size;
}

uint64_t xio__conn_image_id(const void *buf, size_t len, unsigned *side)
{
	const struct conn_image *im = buf;
	if (len < sizeof(*im) || im->magic != IMAGE_MAGIC)
		return 0;
	*side = im->side;
	return im->conn_id;
}

int xio__conn_image_restore(struct xio_conn *c, const void *buf, size_t len,
			    const struct xio_msg_attach *a, int segfd)
{
	const struct conn_image *im = buf;
	if (len < sizeof(*im) || im->magic != IMAGE_MAGIC || im->size > len ||
	    im->conn_id != a->conn_id || im->side != a->side ||
	    memcmp(&im->params, &a->params, sizeof(im->params))) {
		xio_sys_close(segfd);
		return -EINVAL;
	}
	int r = xio__conn_attach(c, a, segfd);
	if (r < 0)
		return r;
	/* The window the old image had grown to (its allocator's size). */
	if (im->ba_n == 0 || im->ba_n > c->tx.win_max ||
	    xio_bufalloc_reset(&c->tx.ba, im->ba_n) < 0) {
		xio__conn_detach_quiet(c);
		return -EINVAL;
	}
	if (im->ba_n != c->tx.ba.n || im->size != xio__conn_image_size(c) ||
	    im->rx_n > XIO_RX_BURST || im->rx_pos > im->rx_n || im->rx_nrel > XIO_RX_BURST) {
		xio__conn_detach_quiet(c);
		return -EINVAL;
	}
	c->tx.seq = im->tx_seq;
	c->shut_rd = im->shut_rd;
	c->shut_wr = im->shut_wr;
	c->kernel_eof = im->kernel_eof;
	c->kernel_err = im->kernel_err;
	c->kernel_errq = im->kernel_errq;
	c->rx.ring_due = im->ring_due;
	c->app_nodelay = im->app_nodelay;
	c->tx.ba.head = im->ba_head;
	c->tx.ba.tail = im->ba_tail;
	c->tx.ba.used = im->ba_used;
	c->tx.snd_limit = im->snd_limit;
	memcpy(c->tx.ba.len, im->ba_len, (size_t)im->ba_n * sizeof(uint16_t));
	c->rx.pos = im->rx_pos;
	c->rx.n = im->rx_n;
	c->rx.consumed = im->rx_consumed;
	c->rx.nrel = im->rx_nrel;
	c->tx.data_prod = im->tx_data_prod;
	c->tx.free_cons = im->tx_free_cons;
	c->rx.data_cons = im->rx_data_cons;
	c->rx.free_prod = im->rx_free_prod;
	memcpy(c->rx.cache, im->rx_cache, sizeof(im->rx_cache));
	memcpy(c->rx.rel, im->rx_rel, sizeof(im->rx_rel));
	return 0;
}

/* Ask the monitor for the segment again (same process, after exec). */
int xio__conn_reattach(struct xio_conn *c, uint64_t conn_id, unsigned side, const void *image,
		       size_t len)
{
	struct xio_msg_close m;
	union {
		struct xio_msg_attach a;
		char raw[XIO_CTL_MAX_MSG];
	} rep;
	int segfd;
	memset(&m, 0, sizeof(m));
	xio_ctl_hdr(&m.h, XIO_MSG_REATTACH, 0);
	m.conn_id = conn_id;
	m.side = side;
	int r = xio__ctl_request(&m, c->fd, &rep, &segfd);
	if (r < 0)
		return r;
	if (rep.a.h.type != XIO_MSG_ATTACH || segfd < 0) {
		if (segfd >= 0)
			xio_sys_close(segfd);
		return -ENOENT;
	}
	return xio__conn_image_restore(c, image, len, &rep.a, segfd);
}
