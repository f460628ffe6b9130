/*
 * reclaim.c - the shim's sweep over the connections that may hold memory
 * to give back (docs/design.md, "Memory that follows the traffic").
 *
 * A connection that moved data goes on a list once (core's mem_dirty, via
 * xio__conn_mem_hook), and leaves it once both its directions are small
 * again. A sweep runs at most every SWEEP_NS, from a thread about to
 * sleep in poll, select or epoll_wait (whose sleep it shortens to the
 * next sweep while the list is not empty); it looks at the listed
 * connections only (those that moved something lately, not all of them),
 * without ever waiting for a lock: a connection whose traffic count has
 * not changed for QUIET_NS gives its sending direction back, and its
 * receiving one after one membarrier for the whole batch (core/reclaim.c).
 * Each tick is bounded (VISITS, BATCH) and goes on where the last one
 * stopped, 200 microseconds later, so a sleep is never held up long.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "shim.h"

#define SWEEP_NS 250000000ll
#define MORE_NS 200000ll /* the rest of a sweep that stopped on its bounds */
#define QUIET_NS 1000000000ll
#define BATCH 64   /* give-backs a tick (two or three madvise calls each) */
#define VISITS 512 /* listed connections looked at a tick */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct psock *head;
static struct psock *cursor; /* where the next tick goes on (NULL: the head) */
static _Atomic int64_t due_ns; /* the next sweep; 0: the list is empty */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void unlink_locked(struct psock *ps)
{
	if (cursor == ps)
		cursor = ps->rc_next;
	if (ps->rc_prev)
		ps->rc_prev->rc_next = ps->rc_next;
	else
		head = ps->rc_next;
	if (ps->rc_next)
		ps->rc_next->rc_prev = ps->rc_prev;
	ps->rc_next = ps->rc_prev = NULL;
	atomic_store_explicit(&ps->rc_on, 0, memory_order_relaxed);
}

/* core's hook: c moved data and is not listed. */
static void note(struct xio_conn *c)
{
	struct psock *ps = c->owner;
	if (!ps)
		return;
	pthread_mutex_lock(&mu);
	if (!atomic_load_explicit(&ps->rc_on, memory_order_relaxed)) {
		int64_t now = now_ns();
		ps->rc_prev = NULL;
		ps->rc_next = head;
		if (head)
			head->rc_prev = ps;
		head = ps;
		ps->rc_sig = 0;
		ps->rc_since = now;
		atomic_store_explicit(&ps->rc_on, 1, memory_order_relaxed);
		atomic_store_explicit(&c->mem_dirty, 1, memory_order_relaxed);
		int64_t d = 0;
		atomic_compare_exchange_strong(&due_ns, &d, now + SWEEP_NS);
	}
	pthread_mutex_unlock(&mu);
}

void xio__reclaim_init(void)
{
	xio__conn_mem_hook = note;
}

void xio__reclaim_forget(struct psock *ps)
{
	if (!atomic_load_explicit(&ps->rc_on, memory_order_relaxed))
		return;
	pthread_mutex_lock(&mu);
	if (atomic_load_explicit(&ps->rc_on, memory_order_relaxed))
		unlink_locked(ps);
	pthread_mutex_unlock(&mu);
}

void xio__reclaim_after_fork(void)
{
	pthread_mutex_init(&mu, NULL); /* only this thread exists */
}


static int64_t due(void)
{
	return atomic_load_explicit(&due_ns, memory_order_relaxed);
}

int64_t xio__reclaim_cap_ns(int64_t ns)
{
	int64_t at = due();
	if (!at)
		return ns;
	int64_t left = at - now_ns();
	if (left < 0)
		left = 0;
	return ns < 0 || ns > left ? left : ns;
}

int xio__reclaim_cap_ms(int ms)
{
	int64_t ns = xio__reclaim_cap_ns(-1); /* to the next sweep, or -1 */
	if (ns < 0)
		return ms;
	int64_t left = ns / 1000000 + 1; /* at least 1: a 0 would only look */
	return ms < 0 || ms > left ? (int)left : ms;
}

static void unlock_io(struct psock *ps)
{
	pthread_mutex_unlock(&ps->rlock);
	pthread_mutex_unlock(&ps->wlock);
}

/* Both directions of ps's connection given back (or nothing to give):
 * off the list until it moves data again. */
static void settle(struct psock *ps)
{
	if (xio__conn_small(ps->conn)) {
		unlink_locked(ps);
		atomic_store_explicit(&ps->conn->mem_dirty, 0, memory_order_relaxed);
	}
	unlock_io(ps);
}

/* One listed connection, its locks held: 1 if its receiving direction is
 * asked for (the locks stay held until the batch's barrier is past), else
 * 0 with the locks released. *gives counts the give-backs tried. */
static int visit(struct psock *ps, int64_t now, int may_ask, int *gives)
{
	struct xio_conn *c = ps->conn;
	if (atomic_load(&ps->kind) != PS_CONN || !c) {
		unlink_locked(ps);
		unlock_io(ps);
		return 0;
	}
	uint64_t sig = c->accel ? xio__conn_traffic(c) : 0;
	if (sig != ps->rc_sig || now - ps->rc_since < QUIET_NS) {
		if (sig != ps->rc_sig)
			ps->rc_since = now;
		ps->rc_sig = sig;
		unlock_io(ps);
		return 0;
	}
	int ask = 0, was_small = c->tx.small;
	if (xio__conn_quiet_shrink(c, may_ask, &ask) > 0 && !was_small) {
		STAT_ADD(gave_back_tx, 1);
		(*gives)++;
	}
	if (ask) {
		(*gives)++;
		return 1;
	}
	settle(ps);
	return 0;
}

void xio__reclaim_tick(void)
{
	int64_t at = due();
	if (!at)
		return;
	int64_t now = now_ns();
	if (now < at || pthread_mutex_trylock(&mu) != 0)
		return; /* not yet, or another thread is at it */
	/* Bounded: VISITS entries and BATCH give-backs a tick, from where the
	 * last tick stopped, so that a thread about to sleep spends at most a
	 * few milliseconds here however many connections wait (an event that
	 * comes meanwhile waits for it); the rest follows 200 µs later. */
	struct psock *batch[BATCH];
	int nb = 0, gives = 0, visits = 0;
	struct psock *ps = cursor ? cursor : head;
	while (ps && visits < VISITS && gives < BATCH) {
		struct psock *next = ps->rc_next; /* only ps may leave the list here */
		visits++;
		if (atomic_load(&ps->kind) != PS_CONN) {
			/* Left shared memory: its conn is not ours to touch
			 * (it may be freed under its locks). */
			unlink_locked(ps);
		} else if (pthread_mutex_trylock(&ps->wlock) == 0) {
			if (pthread_mutex_trylock(&ps->rlock) != 0)
				pthread_mutex_unlock(&ps->wlock);
			else if (visit(ps, now, nb < BATCH, &gives))
				batch[nb++] = ps;
		}
		ps = next;
	}
	cursor = ps; /* NULL: the next tick starts at the head */
	if (nb) {
		int ok = xio__reclaim_barrier() == 0;
		for (int i = 0; i < nb; i++) {
			if (xio__chan_rx_shrink_finish(&batch[i]->conn->rx, ok) > 0)
				STAT_ADD(gave_back_rx, 1);
			settle(batch[i]);
		}
	}
	int64_t next_due = cursor || gives >= BATCH ? now + MORE_NS : now + SWEEP_NS;
	atomic_store_explicit(&due_ns, head ? next_due : 0, memory_order_relaxed);
	pthread_mutex_unlock(&mu);
}
