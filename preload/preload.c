/*
 * preload.c - libxio_preload.so, for now a skeleton: it resolves the real
 * socket functions once and passes every call through to them unchanged.
 * The interposition proper (fd table, dispatch to core/) lands with the
 * LD_PRELOAD issue; the layout it will follow is in docs/design.md.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>

static int (*real_socket)(int, int, int);
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

static void resolve(void)
{
	real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
}

__attribute__((visibility("default"))) int socket(int domain, int type, int protocol)
{
	pthread_once(&resolve_once, resolve);
	if (!real_socket) {
		errno = ENOSYS;
		return -1;
	}
	return real_socket(domain, type, protocol);
}
