/*
 * init.c - start-up and the allowlist.
 *
 * Loading the shim costs the dlsym lookups and a getenv: no thread, no
 * socket, no monitor contact. The allowlist (XIO_ALLOW, docs/allowlist.md)
 * is parsed the first time a TCP socket connects or listens, because its
 * default needs the host's addresses (getifaddrs opens a netlink socket).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allow.h"
#include "shim.h"
#include "xio/sys.h"

static struct xio_allow *allow;
static int allow_ok;
static pthread_once_t allow_once = PTHREAD_ONCE_INIT;

void xio__stats_init(void);

__attribute__((constructor)) static void shim_ctor(void)
{
	xio__real_init();
	xio__stats_init();
}

static void parse_allow(void)
{
	char err[256], line[320];
	int saved = errno;
	if (xio_allow_parse(getenv("XIO_ALLOW"), &allow, err, sizeof(err)) == 0) {
		allow_ok = 1;
	} else {
		int n = snprintf(line, sizeof(line), "xio: %s; this process runs on the kernel\n",
				 err);
		if (n > 0)
			xio_sys_write(2, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line));
	}
	errno = saved;
}

int xio__allowed(const struct sockaddr *sa, socklen_t len)
{
	pthread_once(&allow_once, parse_allow);
	return allow_ok && xio_allow_match(allow, sa, len);
}
