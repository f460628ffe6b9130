/*
 * peer_report.h - how a plain program that an attack test runs under the
 * shim (resend_peer.c, epoll_victim.c) reports to the test: one line per
 * report on fd REP (which the program defines before including this), and
 * a failure as a "fail WHAT: ERRNO" line and exit status 1; peer_say
 * writes such a line on any fd. Only what
 * write(2) does, so that nothing of the shim's is exercised by reporting.
 */
#ifndef XIO_TESTS_PEER_REPORT_H
#define XIO_TESTS_PEER_REPORT_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* One line on fd: also for the children of an attack test, which report
 * on a pipe of their own (test_epoll_hostile.c). */
static void peer_say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static void peer_say(int fd, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(fd, line, (size_t)n) < 0)
		_exit(3);
}

#ifdef REP
#define report(...) peer_say(REP, __VA_ARGS__)

static void fail(const char *what) __attribute__((noreturn));
static void fail(const char *what)
{
	report("fail %s: %s", what, strerror(errno));
	_exit(1);
}
#endif /* REP */

#endif
