/*
 * seg_access.c - the monitor's touches of connection segments, guarded.
 *
 * The monitor maps a segment for a moment to read its counters (STATUS,
 * CONNS), to mark a side gone, or to move a side to the kernel for a
 * process that may not join it (pair.c). A client holding the segment's fd
 * can punch a hole in it (fallocate; the seals allow it) between our mmap
 * and our touch: on ordinary shared memory the page is simply allocated
 * again, but on hugetlbfs, with every free hugepage taken by that client,
 * the touch would kill the monitor with SIGBUS, and every program with it.
 * So every touch runs under a SIGBUS guard: a fault inside it abandons the
 * touch (-EFAULT) and the monitor carries on; a SIGBUS anywhere else is
 * as fatal as it always was.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "monitor.h"

static _Thread_local sigjmp_buf *guard;
static _Thread_local uintptr_t guard_lo, guard_hi;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	uintptr_t a = (uintptr_t)si->si_addr;
	if (guard && a >= guard_lo && a < guard_hi)
		siglongjmp(*guard, 1);
	/* Not a segment we are touching: die of it, as without the guard
	 * (returning re-runs the faulting access under the default action). */
	signal(sig, SIG_DFL);
}

static void install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

int mon_seg_run(const struct monitor *m, int segfd, mon_seg_fn fn, void *arg)
{
	struct xio_seg_layout l;
	void *base;
	int r;
	if (segfd < 0)
		return -EBADF;
	if ((r = xio_seg_layout(&m->params, &l)) < 0 || (r = xio_seg_map(segfd, &m->params, &base)) < 0)
		return r;
	pthread_once(&guard_once, install);
	sigjmp_buf jb;
	if (sigsetjmp(jb, 1) == 0) {
		guard_lo = (uintptr_t)base;
		guard_hi = guard_lo + m->params.seg_size;
		guard = &jb;
		r = fn(base, &l, arg);
	} else {
		r = -EFAULT;
		mon_log(MON_WARN, "a segment's memory vanished under the monitor (a hole "
				  "punched in it): that touch is abandoned");
	}
	guard = NULL;
	xio_seg_unmap(base, &m->params);
	return r;
}

static int mark_gone(void *base, const struct xio_seg_layout *l, void *arg)
{
	(void)l;
	xio_seg_mark_gone(base, (unsigned)(uintptr_t)arg);
	return 0;
}

void mon_seg_mark_gone(const struct monitor *m, const struct mon_conn *c, unsigned side)
{
	if (c->accel && c->segfd >= 0)
		mon_seg_run(m, c->segfd, mark_gone, (void *)(uintptr_t)side);
}
