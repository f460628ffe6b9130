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
 * 200 microseconds; a process bound to one CPU yields instead of spinning);
 * an idle connection then costs no CPU. poll, select and epoll_wait look
 * for XIO_POLL_SPIN_US (20) before they sleep.
 */
#include <errno.h>
#include <pthread.h>
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

static uint64_t spin_ns = 50000, yield_ns = 200000, poll_spin_ns = 20000;
/* Once per process, before the first wait: several threads may wait at once. */
static pthread_once_t tune_once = PTHREAD_ONCE_INIT;

/* Spinning only pays when the peer runs on another CPU at the same time.
 * A process allowed on one CPU only would spin away the very time slice
 * its peer needs, so it skips straight to yielding. */
static int single_cpu(void)
{
	cpu_set_t set;
	return sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) == 1;
}

static int one_cpu;

static void tune(void)
{
	one_cpu = single_cpu();
	if (one_cpu)
		spin_ns = 0;
	const char *s = getenv("XIO_SPIN_US"), *y = getenv("XIO_YIELD_US");
	const char *ps = getenv("XIO_POLL_SPIN_US");
	if (ps && *ps)
		poll_spin_ns = strtoull(ps, NULL, 10) * 1000;
	if (s && *s)
		spin_ns = strtoull(s, NULL, 10) * 1000;
	if (y && *y)
		yield_ns = strtoull(y, NULL, 10) * 1000;
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Tokens are a random 64-bit start plus a counter, drawn again when the
 * process id changes (a forked child, even through a raw clone), so no two
 * sleeps on the host share one in practice. Drawn only before a sleep,
 * where a getpid costs nothing next to the sleep itself. */
static _Atomic uint64_t token_next;
static _Atomic int token_pid;

uint64_t xio__wait_token(void)
{
	int pid = (int)xio_sys_getpid();
	if (atomic_load_explicit(&token_pid, memory_order_acquire) != pid) {
		uint64_t r = 0;
		if (XIO__SC(SYS_getrandom, &r, sizeof(r), 0, 0, 0, 0) != (long)sizeof(r))
			r = now_ns() * 0x9e3779b97f4a7c15ull ^ ((uint64_t)pid << 40);
		atomic_store_explicit(&token_next, r, memory_order_relaxed);
		atomic_store_explicit(&token_pid, pid, memory_order_release);
	}
	uint64_t t = atomic_fetch_add_explicit(&token_next, 1, memory_order_relaxed);
	return t ? t : atomic_fetch_add_explicit(&token_next, 1, memory_order_relaxed);
}

void xio__conn_take_owed(struct xio_conn *c, unsigned n, int ms)
{
	/* Exactly n bytes, never more: once the peer has left shared memory
	 * (leave.c), what follows its doorbells in the kernel socket is the
	 * program's data. */
	char b[8];
	n += atomic_exchange_explicit(&c->owed_late, 0, memory_order_relaxed);
	while (n > 0) {
		ssize_t r = xio_sys_recv(c->fd, b, n < sizeof(b) ? n : sizeof(b), MSG_DONTWAIT);
		if (r > 0) {
			n -= (unsigned)r;
			continue;
		}
		if (r == -EINTR)
			continue;
		if (r == 0) {
			c->kernel_eof = 1;
			return;
		}
		if (r != -EAGAIN) {
			if (!c->kernel_err)
				c->kernel_err = (int)r;
			return;
		}
		/* The peer sends right after it claims: this waits microseconds,
		 * bounded in any case; a byte later than that is read next time. */
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (xio_sys_poll(&p, 1, ms) <= 0)
			break;
	}
	if (n)
		atomic_fetch_add_explicit(&c->owed_late, n, memory_order_relaxed);
}

void xio__conn_owed_doorbell(struct xio_conn *c)
{
	xio__conn_take_owed(c, 1, 10);
}

uint64_t xio__poll_spin_ns(void)
{
	pthread_once(&tune_once, tune);
	return poll_spin_ns;
}

/* One step of poll's and epoll_wait's look before they sleep. A process
 * bound to one CPU gives the CPU away at each step: its peer may be bound
 * to the same one (then it runs and answers at once), or not (then the
 * yield comes straight back). Either way the answer is seen without a
 * doorbell, where a pure spin would hold the CPU the peer needs. */
void xio__poll_relax(void)
{
	if (one_cpu)
		xio_sys_sched_yield();
	else
		cpu_relax();
}

void xio__conn_doorbell(struct xio_conn *c)
{
	static const char bell = 0;
	/* Never blocks: if the kernel buffer were full the peer would have
	 * bytes to wake on already. */
	xio_sys_send(c->fd, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	/* A reader and a writer thread of one connection both ring. */
	uint64_t n = __atomic_add_fetch(&c->st.doorbells, 1, __ATOMIC_RELAXED);
	atomic_store_explicit(&c->tx.g.ctl->doorbells, n, memory_order_relaxed);
}

void xio__conn_drain(struct xio_conn *c)
{
	/* Look before reading: a pending error (a reset) stays on the socket,
	 * for SO_ERROR and for the read that reports it (xio__conn_rx_state). */
	struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
	if (xio_sys_poll(&p, 1, 0) <= 0)
		return;
	xio__conn_drain_ready(c, p.revents);
}

/* A word the peer claimed: one doorbell byte is owed for it. Settling it
 * (CLAIMED -> IDLE) makes this thread the one that reads it. */
static unsigned settle(_Atomic uint32_t *w)
{
	uint32_t claimed = XIO_WAIT_CLAIMED;
	return atomic_compare_exchange_strong(w, &claimed, XIO_WAIT_IDLE) ? 1u : 0u;
}

/*
 * The kernel socket has news: read the doorbell bytes owed (one per claim
 * of our words), and note the peer's FIN or an error. Only owed bytes are
 * read: every byte in the socket of an accelerated connection is a
 * doorbell, until the peer leaves shared memory; from then on the bytes
 * after its doorbells are the program's data (leave.c).
 */
void xio__conn_drain_ready(struct xio_conn *c, unsigned revents)
{
	if (revents & POLLERR) {
		c->kernel_errq = 1;
		return;
	}
	unsigned owed = settle(&c->rx.g.ctl->rx_waiting) + settle(&c->tx.g.ctl->tx_waiting);
	if (owed || atomic_load_explicit(&c->owed_late, memory_order_relaxed))
		xio__conn_take_owed(c, owed, 10);
	if (revents & (POLLRDHUP | POLLHUP))
		c->kernel_eof = 1;
}

/* At close: read whatever the kernel socket holds (doorbells rung or on
 * their way), so that closing it sends FIN rather than RST. */
static void swallow(struct xio_conn *c)
{
	char scratch[256];
	for (int i = 0; i < 64; i++) {
		ssize_t r = xio_sys_recv(c->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
		if (r == -EINTR)
			continue;
		if (r < (ssize_t)sizeof(scratch))
			break;
	}
	atomic_store_explicit(&c->owed_late, 0, memory_order_relaxed);
}

void xio__conn_swallow(struct xio_conn *c)
{
	swallow(c);
}

static int ready(struct xio_conn *c, int dir)
{
	if (xio__conn_peer_left(c))
		return 1;
	if (c->kernel_eof || c->kernel_err || c->kernel_errq || c->rx.err || c->tx.err)
		return 1;
	if (dir == XIO_WAIT_RX)
		return xio__chan_rx_pending(&c->rx) || xio__conn_peer_tx_done(c);
	return xio__chan_tx_can_reclaim(&c->tx) || xio__conn_peer_rx_gone(c);
}

/*
 * Sleep until a doorbell byte (or end of file, or an error) reaches the
 * kernel socket. The sleep is a blocking recv(MSG_PEEK) on the socket
 * itself, so the kernel applies its own rules: a signal interrupts it with
 * EINTR or restarts it (SA_RESTART) exactly as for a plain TCP read, and
 * SO_RCVTIMEO ends it with EAGAIN.
 *
 * Only one thread per process sleeps in the kernel for a connection (a
 * reader and a writer thread may both wait): the others wait on wait_cv.
 * The kernel sleeper drains the doorbell bytes when it wakes and wakes the
 * others, who look again and, if they must go on waiting, one of them
 * becomes the kernel sleeper. So no doorbell is consumed by one thread
 * while another sleeps on without seeing it.
 */
#define SLEPT_OTHER 1 /* another thread slept in the kernel for us */

static int kernel_sleep(struct xio_conn *c)
{
	char b;
	int ret = 0;

	pthread_mutex_lock(&c->wait_mu);
	if (c->sleeper) {
		pthread_cond_wait(&c->wait_cv, &c->wait_mu);
		pthread_mutex_unlock(&c->wait_mu);
		return SLEPT_OTHER;
	}
	c->sleeper = 1;
	pthread_mutex_unlock(&c->wait_mu);

	c->st.sleeps++;
	ssize_t r = xio_sys_recv(c->fd, &b, 1, MSG_PEEK);
	if (r > 0)
		xio__conn_drain(c);
	else if (r == 0)
		c->kernel_eof = 1;
	else if (r == -EINTR || r == -EAGAIN)
		ret = (int)r;
	else if (!c->kernel_err)
		c->kernel_err = (int)r;

	pthread_mutex_lock(&c->wait_mu);
	c->sleeper = 0;
	pthread_cond_broadcast(&c->wait_cv);
	pthread_mutex_unlock(&c->wait_mu);
	return ret;
}

int xio__conn_wait(struct xio_conn *c, int dir)
{
	pthread_once(&tune_once, tune);
	uint64_t t0 = now_ns();
	while (now_ns() - t0 < spin_ns) {
		for (int i = 0; i < 64; i++) {
			if (ready(c, dir))
				return 0;
			cpu_relax();
		}
	}
	t0 = now_ns();
	do {
		if (ready(c, dir))
			return 0;
		xio_sys_sched_yield();
	} while (now_ns() - t0 < yield_ns);

	_Atomic uint32_t *w = dir == XIO_WAIT_RX ? &c->rx.g.ctl->rx_waiting
						 : &c->tx.g.ctl->tx_waiting;
	_Atomic uint64_t *tok = dir == XIO_WAIT_RX ? &c->rx.g.ctl->rx_token
						   : &c->tx.g.ctl->tx_token;
	/* The other half of the handshake in chan.c (xio__chan_tx_notify,
	 * xio__chan_flush): announce the sleep, full fence, look again. */
	if (xio_wait_arm_token(w, tok, xio__wait_token()))
		xio__conn_owed_doorbell(c); /* a doorbell owed from before */
	atomic_thread_fence(memory_order_seq_cst);
	if (ready(c, dir)) {
		if (xio_wait_disarm(w))
			xio__conn_owed_doorbell(c);
		return 0;
	}
	int r = kernel_sleep(c);
	/* A wake by a doorbell read it (and settled its claim). Only a sleep
	 * cut short (signal, SO_RCVTIMEO) can leave a claimed byte on its
	 * way; a thread that waited for another thread's sleep leaves the
	 * bytes to that one. */
	if (xio_wait_disarm(w) && r < 0)
		xio__conn_owed_doorbell(c);
	return r == SLEPT_OTHER ? 0 : r;
}
