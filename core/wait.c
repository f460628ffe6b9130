/*
 * wait.c - adaptive waiting and doorbells.
 *
 * A side that finds nothing to do polls the ring for a short while (the
 * peer is usually about to answer), then yields the CPU a few times, then
 * arms its "waiting" word in the segment and sleeps in the kernel on its
 * TCP socket. A peer that changes something and sees the word set clears it
 * and writes one byte to its own end of the TCP connection: the doorbell.
 * While the waiter is awake no syscall is made at all, and however many
 * messages are posted while it sleeps, it gets one doorbell.
 *
 * XIO_SPIN_US and XIO_YIELD_US tune the first two phases (defaults 50 and
 * 200 microseconds; no spinning for a process bound to one CPU); an idle
 * connection then costs no CPU.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "xio/conn.h"
#include "xio/sys.h"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield" ::: "memory")
#else
#define cpu_relax() __asm__ volatile("" ::: "memory")
#endif

static uint64_t spin_ns = 50000, yield_ns = 200000;
static int tuned;

/* Spinning only pays when the peer runs on another CPU at the same time.
 * A process allowed on one CPU only would spin away the very time slice
 * its peer needs, so it skips straight to yielding. */
static int single_cpu(void)
{
	cpu_set_t set;
	return sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) == 1;
}

static void tune(void)
{
	if (single_cpu())
		spin_ns = 0;
	const char *s = getenv("XIO_SPIN_US"), *y = getenv("XIO_YIELD_US");
	if (s && *s)
		spin_ns = strtoull(s, NULL, 10) * 1000;
	if (y && *y)
		yield_ns = strtoull(y, NULL, 10) * 1000;
	tuned = 1;
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void xio__conn_doorbell(struct xio_conn *c)
{
	static const char bell = 0;
	/* Never blocks: if the kernel buffer were full the peer would have
	 * bytes to wake on already. */
	xio_sys_send(c->fd, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	c->st.doorbells++;
	atomic_store_explicit(&c->tx.g.ctl->doorbells, c->st.doorbells, memory_order_relaxed);
}

void xio__conn_drain(struct xio_conn *c)
{
	char scratch[256];
	for (int i = 0; i < 64; i++) {
		ssize_t r = xio_sys_recv(c->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
		if (r > 0)
			continue;
		if (r == 0)
			c->kernel_eof = 1;
		else if (r == -EINTR)
			continue;
		else if (r != -EAGAIN && !c->kernel_err)
			c->kernel_err = (int)r;
		return;
	}
}

static int ready(struct xio_conn *c, int dir)
{
	if (c->kernel_eof || c->kernel_err || c->rx.err || c->tx.err)
		return 1;
	if (dir == XIO_WAIT_RX)
		return xio__chan_rx_pending(&c->rx) || xio__conn_peer_tx_done(c);
	return xio__chan_tx_can_reclaim(&c->tx) || xio__conn_peer_rx_gone(c);
}

int xio__conn_wait(struct xio_conn *c, int dir)
{
	if (!tuned)
		tune();
	uint64_t t0 = now_ns();
	do {
		for (int i = 0; i < 64; i++) {
			if (ready(c, dir))
				return 0;
			cpu_relax();
		}
	} while (now_ns() - t0 < spin_ns);
	t0 = now_ns();
	do {
		xio_sys_sched_yield();
		if (ready(c, dir))
			return 0;
	} while (now_ns() - t0 < yield_ns);

	_Atomic uint32_t *w = dir == XIO_WAIT_RX ? &c->rx.g.ctl->rx_waiting
						 : &c->tx.g.ctl->tx_waiting;
	/* The other half of the handshake in chan.c (xio__chan_tx_notify,
	 * xio__chan_flush): announce the sleep, full fence, look again. */
	atomic_store_explicit(w, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	if (ready(c, dir)) {
		atomic_store_explicit(w, 0, memory_order_relaxed);
		return 0;
	}
	c->st.sleeps++;
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int r = xio_sys_poll(&p, 1, -1);
	atomic_store_explicit(w, 0, memory_order_relaxed);
	if (r == -EINTR)
		return -EINTR;
	xio__conn_drain(c);
	return 0;
}
