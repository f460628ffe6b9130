/*
 * wake.c - waking the other threads of this process that wait on an
 * accelerated socket in poll, select or epoll_wait.
 *
 * A thread asleep in the kernel on such a socket is woken by the doorbell
 * byte its armed word makes the peer ring. Two things can take that wake-up
 * away from it, and the kernel would have woken it in both:
 *   - another thread read the doorbell byte, or took the word back (a read
 *     that found the data, a blocking call that ended its own sleep): the
 *     byte never reaches this sleeper, or is never rung (core/wait.c, "who
 *     reads the doorbells", calls xio__shim_wake_others then);
 *   - another thread changed the set it sleeps on (epoll_ctl ADD or MOD of
 *     an accelerated socket, a socket that became accelerated): nothing in
 *     the kernel says the new member is ready, and its word is not armed.
 * Either way the sleeper is told to look again, and it arms again before it
 * sleeps. An epoll set is told through its kick eventfd (epoll.c); a poll
 * or select through an eventfd of its thread, which it adds to the fds it
 * gives the kernel, and which it lists here while it sleeps.
 *
 * Nothing of this costs a single-threaded program more than a few loads:
 * the lists are empty while it is awake.
 */
#include <pthread.h>
#include <sys/eventfd.h>

#include "shim.h"
#include "xio/sys.h"

static pthread_mutex_t polls_mu = PTHREAD_MUTEX_INITIALIZER;
static struct poll_wait *polls;
static _Atomic int npolls;

/* This thread's eventfd for poll and select, made on first use and closed
 * when the thread exits. */
static __thread int thread_efd = -1;
static pthread_key_t efd_key;
static pthread_once_t efd_once = PTHREAD_ONCE_INIT;

static void efd_close(void *p)
{
	int fd = (int)(intptr_t)p - 1;
	if (fd >= 0)
		REAL(close)(fd);
}

static void efd_key_make(void)
{
	pthread_key_create(&efd_key, efd_close);
}

int xio__wake_eventfd(void)
{
	return (int)XIO__SC(SYS_eventfd2, 0, EFD_NONBLOCK | EFD_CLOEXEC, 0, 0, 0, 0);
}

void xio__wake_write(int fd)
{
	uint64_t one = 1;
	XIO__SC(SYS_write, fd, &one, sizeof(one), 0, 0, 0);
}

void xio__wake_read(int fd)
{
	uint64_t v;
	XIO__SC(SYS_read, fd, &v, sizeof(v), 0, 0, 0);
}

int xio__poll_wait_begin(struct poll_wait *w, struct psock *const *ps, size_t n)
{
	w->efd = -1;
	if (thread_efd < 0) {
		pthread_once(&efd_once, efd_key_make);
		int fd = xio__wake_eventfd();
		if (fd < 0)
			return -1;
		thread_efd = fd;
		pthread_setspecific(efd_key, (void *)(intptr_t)(fd + 1));
	}
	/* A wake meant for an earlier wait of this thread is of no use now:
	 * this one looks at everything after it is listed. */
	xio__wake_read(thread_efd);
	*w = (struct poll_wait){ .efd = thread_efd, .ps = ps, .n = n };
	pthread_mutex_lock(&polls_mu);
	w->next = polls;
	polls = w;
	pthread_mutex_unlock(&polls_mu);
	/* Listed before any word is armed: a thread that takes a word back
	 * after this sees the count (both sequentially consistent). */
	atomic_fetch_add(&npolls, 1);
	return thread_efd;
}

void xio__poll_wait_end(struct poll_wait *w)
{
	if (w->efd < 0)
		return; /* never listed */
	atomic_fetch_sub(&npolls, 1);
	pthread_mutex_lock(&polls_mu);
	for (struct poll_wait **pp = &polls; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&polls_mu);
	w->efd = -1;
}

static void wake_polls(struct psock *ps)
{
	pthread_mutex_lock(&polls_mu);
	for (struct poll_wait *w = polls; w; w = w->next) {
		if (w->efd == thread_efd)
			continue; /* this thread is awake */
		for (size_t i = 0; i < w->n; i++)
			if (w->ps[i] == ps) {
				xio__wake_write(w->efd);
				break;
			}
	}
	pthread_mutex_unlock(&polls_mu);
}

void xio__shim_wake_others(struct xio_conn *c)
{
	struct psock *ps = c->owner;
	if (!ps)
		return;
	xio__epoll_poke(ps);
	atomic_store_explicit(&ps->poll_parked, 0, memory_order_release);
	for (int i = 0; i < PS_MAX_EPOLL; i++) {
		struct pepoll *ep = ps->member_of[i];
		if (ep)
			xio__epoll_wake(ep);
	}
	if (atomic_load(&npolls))
		wake_polls(ps);
}

void xio__wake_after_fork(void)
{
	/* Only this thread exists; its eventfd is shared with the parent. */
	if (thread_efd >= 0) {
		REAL(close)(thread_efd);
		thread_efd = -1;
		pthread_setspecific(efd_key, NULL);
	}
	pthread_mutex_init(&polls_mu, NULL);
	polls = NULL; /* the parent's waits, on its threads' stacks */
	atomic_store(&npolls, 0);
}
