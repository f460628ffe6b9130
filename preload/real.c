/*
 * real.c - resolving the real libc functions (see real.h).
 *
 * Resolution happens in the library constructor, and again on demand if a
 * wrapper runs before it (another library's constructor may call socket()
 * first). dlsym does not call any function the shim wraps.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>

#include "real.h"

struct xio_real xio_real;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Atomic int resolved;

static void resolve(void)
{
#define XIO_REAL_RESOLVE(ret, name, args)                                                   \
	xio_real.name = (ret(*) args)dlsym(RTLD_NEXT, #name);
	XIO_REAL_FUNCS(XIO_REAL_RESOLVE)
#undef XIO_REAL_RESOLVE
	atomic_store_explicit(&resolved, 1, memory_order_release);
}

void xio__real_init(void)
{
	if (__builtin_expect(atomic_load_explicit(&resolved, memory_order_acquire), 1))
		return;
	pthread_once(&once, resolve);
}
