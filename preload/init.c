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
#include "xio/ctl.h"
#include "xio/sys.h"

_Atomic int xio__shim_sleepers;

static struct xio_allow *allow;
static int allow_ok;
/* Copies taken at load time: the environment may be gone or overwritten by
 * the time the first socket connects (nginx workers, setproctitle). */
static char allow_spec[4096];
static int allow_spec_set, allow_spec_too_long;
static pthread_once_t allow_once = PTHREAD_ONCE_INIT;

void xio__stats_init(void);

/* First of the shim's constructors (w_exec.c runs after it). */
__attribute__((constructor(101))) static void shim_ctor(void)
{
	xio__real_init();
	xio__stats_init();
	xio__conn_wake_others = xio__shim_wake_others;
	xio__reclaim_init();
	xio__ctl_capture_env();
	const char *a = getenv("XIO_ALLOW");
	if (a) {
		allow_spec_set = 1;
		if (strlen(a) < sizeof(allow_spec))
			memcpy(allow_spec, a, strlen(a) + 1);
		else
			allow_spec_too_long = 1;
	}
}

static void parse_allow(void)
{
	char err[256], line[320];
	int saved = errno;
	if (allow_spec_too_long)
		snprintf(err, sizeof(err), "XIO_ALLOW: longer than %zu bytes", sizeof(allow_spec) - 1);
	else if (xio_allow_parse(allow_spec_set ? allow_spec : NULL, &allow, err, sizeof(err)) == 0)
		allow_ok = 1;
	if (!allow_ok) {
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
