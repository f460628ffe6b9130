/*
 * thread.c - the library's own threads (the control client's watcher, the
 * resend pusher): started with every signal blocked, since the program's
 * handlers belong to its own threads, as they would without xio; detached,
 * named, on a small stack. The starter waits, boundedly, until the new
 * thread runs: a program that forks right after (a pre-fork server after
 * listen()) must not fork while the thread is still starting and holds
 * allocator locks, which the child would inherit locked (AddressSanitizer's
 * allocator has no fork handlers: a child hung in its eighth calloc).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "xio/sys.h"
#include "xio/thread.h"

struct start {
	void *(*fn)(void);
	_Atomic int up;
	_Atomic int refs; /* the starter's and the thread's: the last frees */
};

static void drop(struct start *s)
{
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		free(s);
}

static void *trampoline(void *arg)
{
	struct start *s = arg;
	void *(*fn)(void) = s->fn;
	/* Its start-up (the thread library's allocations, or a sanitizer's)
	 * is over: tell the starter. */
	atomic_store_explicit(&s->up, 1, memory_order_release);
	drop(s);
	return fn();
}

int xio__thread_start(void *(*fn)(void), const char *name, size_t stack)
{
	struct start *s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fn = fn;
	atomic_init(&s->up, 0);
	atomic_init(&s->refs, 2);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, stack);
	pthread_t t;
	int r = pthread_create(&t, &at, trampoline, s);
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		free(s);
		return -r;
	}
	pthread_setname_np(t, name);
	for (int i = 0; i < 100000 && !atomic_load_explicit(&s->up, memory_order_acquire); i++)
		xio_sys_sched_yield();
	drop(s);
	return 0;
}
