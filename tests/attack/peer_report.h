/*
 * peer_report.h - how a plain program that an attack test runs under the
 * shim (resend_peer.c, epoll_victim.c) reports to the test: one line per
 * report on fd REP (which the program defines before including this), and
 * a failure as a "fail WHAT: ERRNO" line and exit status 1. Only what
 * write(2) does, so that nothing of the shim's is exercised by reporting.
 */
#ifndef XIO_TESTS_PEER_REPORT_H
#define XIO_TESTS_PEER_REPORT_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef REP
#error "define REP (the report fd) before including peer_report.h"
#endif

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
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
	if (write(REP, line, (size_t)n) < 0)
		_exit(3);
}

static void fail(const char *what) __attribute__((noreturn));
static void fail(const char *what)
{
	report("fail %s: %s", what, strerror(errno));
	_exit(1);
}

#endif
