/*
 * fdtab.h - the shim's per-process table from fd number to its socket
 * object. A call on an fd the shim does not handle costs one load of the
 * table pointer and, once the table exists, one array load.
 *
 * The table is one virtual reservation sized from RLIMIT_NOFILE's hard
 * limit (at least 64 Ki entries), mapped MAP_NORESERVE: pages are only
 * backed once an fd in them is used. An fd beyond it (the limit was raised
 * later) is simply never accelerated.
 */
#ifndef XIO_PRELOAD_FDTAB_H
#define XIO_PRELOAD_FDTAB_H

#include <stdatomic.h>
#include <stddef.h>

struct psock;

extern struct psock *_Atomic *xio_fdtab;
extern size_t xio_fdtab_size;

static inline struct psock *fdtab_lookup(int fd)
{
	struct psock *_Atomic *t = xio_fdtab;
	if (__builtin_expect(t == NULL || (unsigned)fd >= xio_fdtab_size, 1))
		return NULL;
	return atomic_load_explicit(&t[fd], memory_order_acquire);
}

/* Set fd's entry (NULL clears it). Returns 0, or -EMFILE if fd is beyond
 * the table, -ENOMEM if the table cannot be made. */
int fdtab_set(int fd, struct psock *ps);

/* Swap in ps for fd and return what was there. */
struct psock *fdtab_exchange(int fd, struct psock *ps);

/* Call fn for each fd with an entry (fork handling, exit statistics). */
void fdtab_each(void (*fn)(int fd, struct psock *ps, void *arg), void *arg);

#endif
