/*
 * fdtab.c - see fdtab.h.
 */
#include "fdtab.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

struct psock *_Atomic *xio_fdtab;
size_t xio_fdtab_size;
static _Atomic size_t fdtab_hi; /* one past the highest fd ever set */
static pthread_mutex_t make_lock = PTHREAD_MUTEX_INITIALIZER;

static int make(void)
{
	struct rlimit rl;
	size_t n = 65536;
	pthread_mutex_lock(&make_lock);
	if (xio_fdtab) {
		pthread_mutex_unlock(&make_lock);
		return 0;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
	    rl.rlim_max > n)
		n = rl.rlim_max;
	if (n > (1u << 24))
		n = 1u << 24;
	void *t = mmap(NULL, n * sizeof(void *), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t == MAP_FAILED) {
		pthread_mutex_unlock(&make_lock);
		return -ENOMEM;
	}
	xio_fdtab_size = n;
#if defined(__SANITIZE_ADDRESS__)
	/* The sockets a process still holds at exit are reachable from here:
	 * LeakSanitizer must look in this mapping, or it calls them leaks. */
	__lsan_register_root_region(t, n * sizeof(void *));
#endif
	/* Publish the size before the pointer: readers test the pointer. */
	atomic_thread_fence(memory_order_release);
	xio_fdtab = t;
	pthread_mutex_unlock(&make_lock);
	return 0;
}

int fdtab_set(int fd, struct psock *ps)
{
	if (!xio_fdtab) {
		if (!ps)
			return 0;
		int r = make();
		if (r < 0)
			return r;
	}
	if (fd < 0 || (size_t)fd >= xio_fdtab_size)
		return -EMFILE;
	atomic_store_explicit(&xio_fdtab[fd], ps, memory_order_release);
	if (ps && (size_t)fd >= atomic_load_explicit(&fdtab_hi, memory_order_relaxed))
		atomic_store_explicit(&fdtab_hi, (size_t)fd + 1, memory_order_relaxed);
	return 0;
}

struct psock *fdtab_exchange(int fd, struct psock *ps)
{
	if (!xio_fdtab && ps && make() < 0)
		return NULL;
	if (!xio_fdtab || fd < 0 || (size_t)fd >= xio_fdtab_size)
		return NULL;
	if (ps && (size_t)fd >= atomic_load_explicit(&fdtab_hi, memory_order_relaxed))
		atomic_store_explicit(&fdtab_hi, (size_t)fd + 1, memory_order_relaxed);
	return atomic_exchange_explicit(&xio_fdtab[fd], ps, memory_order_acq_rel);
}

void fdtab_each(void (*fn)(int fd, struct psock *ps, void *arg), void *arg)
{
	struct psock *_Atomic *t = xio_fdtab;
	if (!t)
		return;
	size_t hi = atomic_load_explicit(&fdtab_hi, memory_order_relaxed);
	for (size_t i = 0; i < hi; i++) {
		struct psock *ps = atomic_load_explicit(&t[i], memory_order_acquire);
		if (ps)
			fn((int)i, ps, arg);
	}
}
