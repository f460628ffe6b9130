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
#include <sys/ioctl.h>
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
		/* Below 2^62, so that no count ever reaches XIO_TOKEN_OWN (nor
		 * XIO_TOKEN_TX, which marks the tx word's own token): a
		 * sleep's token that carried it would pass for a parked word's
		 * own, be kept where a fresh one belongs, and replace a real
		 * own token (half of all processes did, by chance of the
		 * draw). */
		r &= 0x3fffffffffffffffull;
		atomic_store_explicit(&token_next, r, memory_order_relaxed);
		atomic_store_explicit(&token_pid, pid, memory_order_release);
	}
	uint64_t t = atomic_fetch_add_explicit(&token_next, 1, memory_order_relaxed);
	return t ? t : atomic_fetch_add_explicit(&token_next, 1, memory_order_relaxed);
}

uint64_t xio__wait_tokens(unsigned n)
{
	/* n consecutive tokens for one getpid: a wait that parks many members
	 * of an epoll set arms each with a token of its own. */
	uint64_t t = xio__wait_token();
	uint64_t more = atomic_fetch_add_explicit(&token_next, n - 1, memory_order_relaxed);
	/* Consecutive unless another thread drew in between, or the range
	 * wraps through 0 (the "no token" value): then one at a time. */
	return more == t + 1 && t + n > t ? t : 0;
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

/*
 * Who reads the doorbells. Several threads of this process may wait on one
 * connection at once: one in a blocking read or write (asleep in recv on
 * the kernel socket), others in poll, select or epoll_wait, others just
 * reading or writing. A doorbell byte wakes every one of them in the
 * kernel, but the first to read it takes it from the rest: a thread asleep
 * in recv that wakes after another thread read its byte finds nothing and
 * sleeps on, for ever (issue 14, the JVM's dispatcher and worker). So:
 *
 *   - every word exchange that can find a claim, and every read of owed
 *     bytes, happens under wait_mu, so that what is owed (owed_late plus
 *     the words CLAIMED) is exact and a byte nobody owes can be told apart
 *     (drop_stray);
 *   - while a thread is the connection's kernel sleeper (c->sleeper, taken
 *     before it arms and kept until it has read its bytes), no other thread
 *     reads doorbells: what they find owed goes to owed_late, and the
 *     sleeper, which the bytes wake, reads them;
 *   - a thread that read doorbells, or took a word back, tells the other
 *     threads that may sleep on the connection in poll, select or
 *     epoll_wait (xio__conn_wake_others, set by the shim): they look again
 *     and arm again, since the word they armed may be the one just taken.
 */
void (*xio__conn_wake_others)(struct xio_conn *c);

/* The connection this thread is the kernel sleeper of, if any. */
static __thread struct xio_conn *sleeping_on;

/* Caller holds wait_mu: 1 if another thread sleeps in the kernel on c's
 * socket, so the doorbell bytes there are its to read. */
static int anothers_bytes(const struct xio_conn *c)
{
	return c->sleeper && sleeping_on != c;
}

/* Caller holds wait_mu: n doorbell bytes are owed for claims it settled
 * (0: only those owed from before, owed_late). Read what is there now,
 * unless another thread sleeps in the kernel for them; a byte still on its
 * way is read when it lands (the socket turns readable: owed_late). Never
 * waited for here: these are the paths of event loops (arming, draining
 * after poll or epoll), and a peer that claims without ringing would
 * otherwise hold the whole loop for as long as it likes, every time. */
static void owe_locked(struct xio_conn *c, unsigned n)
{
	if (anothers_bytes(c)) {
		atomic_fetch_add_explicit(&c->owed_late, n, memory_order_relaxed);
		return;
	}
	xio__conn_take_owed(c, n, 0);
}

void xio__conn_owed_doorbell(struct xio_conn *c)
{
	pthread_mutex_lock(&c->wait_mu);
	owe_locked(c, 1);
	pthread_mutex_unlock(&c->wait_mu);
	xio__conn_tell_waiters(c);
}

void xio__conn_disarm(struct xio_conn *c, _Atomic uint32_t *w)
{
	pthread_mutex_lock(&c->wait_mu);
	if (xio_wait_disarm(w))
		owe_locked(c, 1);
	pthread_mutex_unlock(&c->wait_mu);
	xio__conn_tell_waiters(c);
}

int xio__conn_arm_locked(struct xio_conn *c, _Atomic uint32_t *w, _Atomic uint64_t *tok,
			 uint64_t token)
{
	pthread_mutex_lock(&c->wait_mu);
	/* A word armed with a token of its own (a parked member) stays so: a
	 * sleep's shared token in its place would let a peer that rang for
	 * that token skip this word, and whoever parked it, waiting for its
	 * doorbell alone, would never hear (epoll_set.h). Its own doorbell
	 * wakes every sleeper on the socket anyway. */
	if (!(token & XIO_TOKEN_OWN) &&
	    atomic_load_explicit(w, memory_order_relaxed) == XIO_WAIT_ARMED) {
		uint64_t cur = atomic_load_explicit(tok, memory_order_relaxed);
		if (cur & XIO_TOKEN_OWN)
			token = cur;
	}
	int stale = xio_wait_arm_token(w, tok, token);
	if (stale)
		owe_locked(c, 1);
	pthread_mutex_unlock(&c->wait_mu);
	if (stale)
		xio__conn_tell_waiters(c); /* the claim may have been for another thread's sleep */
	return stale;
}

void xio__conn_take_late(struct xio_conn *c)
{
	pthread_mutex_lock(&c->wait_mu);
	owe_locked(c, 0);
	pthread_mutex_unlock(&c->wait_mu);
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
 * Caller holds wait_mu, has read what was owed and has no claim left to
 * settle: bytes in the socket now are owed to nobody. An honest peer never
 * sends one (it rings only for a claim, which precedes its byte, and every
 * settle and owed count here is under wait_mu), so they are noise from a
 * broken or hostile peer: read and dropped, or the kernel socket would stay
 * readable and every sleep on it would spin. Not once the stream may carry
 * data again: after a leave by either side (the bytes after its doorbells
 * are the program's, or the leave bell), or for a side shared through fork
 * (a sibling settles claims without our lock).
 */
static void drop_stray(struct xio_conn *c)
{
	int avail = 0;
	if (c->left || c->forked || !c->accel ||
	    atomic_load_explicit(&c->leaving, memory_order_acquire) ||
	    atomic_load_explicit(&c->owed_late, memory_order_relaxed))
		return;
	if (xio_sys_ioctl(c->fd, FIONREAD, &avail) < 0 || avail <= 0)
		return;
	/* Looked at after the count: a byte counted was sent after its claim,
	 * and data after a leave is sent after tx_left/rx_left are set. The
	 * peer's own leave flags are its to set (it moves its connection to
	 * the kernel). A word CLAIMED has its byte owed, read at the next look.
	 * Our own words LEFT, or our own rx_left, are written only by a leave
	 * of ours (leaving, above, says whether one began; leave.c reads what
	 * it is owed outside wait_mu). Anything else there is the peer's
	 * forgery: it broke the protocol, and its connection ends as a reset
	 * one does (ECONNRESET, which programs expect of TCP; EPROTO is not
	 * in their vocabulary) with its noise dropped. Skipping the drop for
	 * such values let one stray byte keep the socket readable for ever,
	 * and an event loop spinning on it (issue 16, test_epoll_hostile). */
	uint32_t rw = atomic_load_explicit(&c->rx.g.ctl->rx_waiting, memory_order_acquire);
	uint32_t tw = atomic_load_explicit(&c->tx.g.ctl->tx_waiting, memory_order_acquire);
	if (atomic_load_explicit(&c->rx.g.ctl->tx_left, memory_order_acquire) ||
	    atomic_load_explicit(&c->tx.g.ctl->rx_left, memory_order_acquire) ||
	    rw == XIO_WAIT_CLAIMED || tw == XIO_WAIT_CLAIMED)
		return;
	int ours = (rw != XIO_WAIT_IDLE && rw != XIO_WAIT_ARMED) ||
		   (tw != XIO_WAIT_IDLE && tw != XIO_WAIT_ARMED) ||
		   atomic_load_explicit(&c->rx.g.ctl->rx_left, memory_order_acquire);
	/* Looked at again after those: a leave of ours that wrote them set
	 * leaving first. */
	if (atomic_load_explicit(&c->leaving, memory_order_acquire))
		return;
	if (ours && !c->kernel_err)
		c->kernel_err = -ECONNRESET; /* what TCP says of a peer that broke off */
	char b[64];
	while (avail > 0) {
		ssize_t r = xio_sys_recv(c->fd, b, avail < (int)sizeof(b) ? (size_t)avail : sizeof(b),
					 MSG_DONTWAIT);
		if (r == -EINTR)
			continue;
		if (r <= 0)
			break;
		avail -= (int)r;
		c->stray_bytes += (uint64_t)r;
	}
}

/*
 * The kernel socket has news: read the doorbell bytes owed (one per claim
 * of our words), and note the peer's FIN or an error. Only owed bytes are
 * read: every byte in the socket of an accelerated connection is a
 * doorbell, until the peer leaves shared memory; from then on the bytes
 * after its doorbells are the program's data (leave.c). While another
 * thread sleeps in the kernel on this socket, the bytes are its (above).
 */
void xio__conn_drain_ready(struct xio_conn *c, unsigned revents)
{
	if (revents & POLLERR) {
		c->kernel_errq = 1;
		return;
	}
	int took = 0;
	pthread_mutex_lock(&c->wait_mu);
	if (!anothers_bytes(c)) {
		unsigned owed = settle(&c->rx.g.ctl->rx_waiting) + settle(&c->tx.g.ctl->tx_waiting);
		if (owed || atomic_load_explicit(&c->owed_late, memory_order_relaxed)) {
			xio__conn_take_owed(c, owed, 0); /* never waited for: owe_locked */
			took = 1;
		}
		/* Only on a wake-up with nothing owed: one that had bytes owed
		 * is the common case, and a stray byte beside them is found at
		 * the next look, when the socket is still readable. */
		if ((revents & POLLIN) && !took)
			drop_stray(c);
	}
	pthread_mutex_unlock(&c->wait_mu);
	if (revents & (POLLRDHUP | POLLHUP))
		c->kernel_eof = 1;
	if (took)
		xio__conn_tell_waiters(c);
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
 * reader and a writer thread may both wait): it becomes the sleeper
 * (c->sleeper) before it arms its word, so no other thread reads a byte
 * rung for it, and reads the bytes owed when it wakes. The others arm their
 * own word and wait on wait_cv until it wakes: one byte wakes the sleeper
 * whichever word was claimed, and it settles both. So no doorbell is
 * consumed by one thread while another sleeps on without seeing it.
 */
static int kernel_sleep(struct xio_conn *c)
{
	char b;
	c->st.sleeps++;
	ssize_t r = xio_sys_recv(c->fd, &b, 1, MSG_PEEK);
	if (r > 0)
		xio__conn_drain(c);
	else if (r == 0)
		c->kernel_eof = 1;
	else if (r == -EINTR || r == -EAGAIN)
		return (int)r;
	else if (!c->kernel_err)
		c->kernel_err = (int)r;
	return 0;
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
	uint64_t token = xio__wait_token();
	int r = 0;
	pthread_mutex_lock(&c->wait_mu);
	if (c->sleeper) {
		/* Another thread sleeps in the kernel: arm our word (the other
		 * half of the handshake in chan.c: announce, full fence, look
		 * again) and let its wake-up wake us. */
		if (xio_wait_arm_token(w, tok, token))
			owe_locked(c, 1);
		atomic_thread_fence(memory_order_seq_cst);
		if (!ready(c, dir))
			pthread_cond_wait(&c->wait_cv, &c->wait_mu);
		/* A claim found here is owed whatever woke us: reading it only
		 * on a cut-short sleep left the byte in the socket, the socket
		 * readable for ever, and a byte nobody wrote in the stream once
		 * the peer moved it to TCP (issue 15, item 1). */
		if (xio_wait_disarm(w))
			owe_locked(c, 1);
		pthread_mutex_unlock(&c->wait_mu);
		xio__conn_tell_waiters(c);
		return 0;
	}
	c->sleeper = 1;
	sleeping_on = c;
	if (xio_wait_arm_token(w, tok, token))
		xio__conn_take_owed(c, 1, 10); /* a doorbell owed from before */
	pthread_mutex_unlock(&c->wait_mu);
	atomic_thread_fence(memory_order_seq_cst);
	if (!ready(c, dir))
		r = kernel_sleep(c);
	pthread_mutex_lock(&c->wait_mu);
	/* Whatever ended the sleep, a claim of our word is a byte owed, and so
	 * is what other threads left us meanwhile (owed_late). */
	unsigned owed = xio_wait_disarm(w) ? 1u : 0u;
	if (owed || atomic_load_explicit(&c->owed_late, memory_order_relaxed))
		xio__conn_take_owed(c, owed, r < 0 ? 0 : 10);
	c->sleeper = 0;
	sleeping_on = NULL;
	pthread_cond_broadcast(&c->wait_cv);
	pthread_mutex_unlock(&c->wait_mu);
	xio__conn_tell_waiters(c);
	return r;
}
