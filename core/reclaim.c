/*
 * reclaim.c - the process's side of giving quiet connections' memory back
 * (docs/design.md, "Memory that follows the traffic"; chan.c does the
 * pages). A sender gives its own direction back when it finds it quiet;
 * a receiver may give back a direction whose sender is away (asleep in a
 * call xio does not see, or busy elsewhere) only once it knows that sender
 * is outside every write: the sender marks its writes with two plain
 * stores (tx_active), and the receiver's membarrier(GLOBAL_EXPEDITED)
 * makes those as good as fenced (the asymmetric Dekker of liburcu and
 * folly). So the hot path pays no fence, and one barrier, of a few
 * microseconds, serves a whole batch of connections.
 *
 * Only processes that registered for that barrier get it: each process
 * registers before its first connection and again in a forked child
 * (whose mm is new), and says so per connection (tx_mb). Where the kernel
 * or a seccomp filter refuses membarrier, the receiver never gives its
 * peer's memory back; the sender's own sweeps still do.
 */
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdatomic.h>

#include "xio/conn.h"
#include "xio/sys.h"

static _Atomic int mb_ok;
static pthread_once_t mb_once = PTHREAD_ONCE_INIT;

static void mb_register(void)
{
	int r = xio_sys_membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0);
	atomic_store(&mb_ok, r == 0);
}

static void mb_first(void)
{
	mb_register();
	pthread_atfork(NULL, NULL, mb_register); /* a child's mm starts unregistered */
}

int xio__reclaim_mb(void)
{
	pthread_once(&mb_once, mb_first);
	return atomic_load(&mb_ok);
}

int xio__reclaim_barrier(void)
{
	return xio_sys_membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0);
}

uint64_t xio__conn_traffic(const struct xio_conn *c)
{
	return c->st.tx_msgs + c->st.rx_msgs +
	       atomic_load_explicit(&c->rx.g.ctl->tx_msgs, memory_order_relaxed) +
	       atomic_load_explicit(&c->tx.g.ctl->rx_msgs, memory_order_relaxed);
}

int xio__conn_quiet_shrink(struct xio_conn *c, int may_ask, int *ask_rx)
{
	*ask_rx = 0;
	if (!c->accel || c->left || c->forked || atomic_load(&c->leaving) ||
	    xio__conn_resend_pending(c))
		return 0;
	int r = xio__chan_tx_shrink(&c->tx);
	if (r < 0)
		return r;
	*ask_rx = may_ask && xio__chan_rx_shrink_ask(&c->rx);
	return r;
}

int xio__conn_small(const struct xio_conn *c)
{
	if (!c->accel || c->left || c->tx.g.huge)
		return 1; /* nothing to give back (a hugepage goes whole) */
	if (!c->tx.small)
		return 0;
	/* Our receiving direction: small once given back, by either side, or
	 * never ours to give back (a sender that took no membarrier). */
	return atomic_load_explicit(&c->rx.g.ctl->tx_small, memory_order_relaxed) ||
	       !atomic_load_explicit(&c->rx.g.ctl->tx_mb, memory_order_relaxed);
}

void (*xio__conn_mem_hook)(struct xio_conn *c);
