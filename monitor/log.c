/*
 * log.c - one line per event on stderr: time, pid, level, message.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"

int mon_log_level = MON_INFO;

void mon_log(int level, const char *fmt, ...)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	char ts[32];
	struct timespec now;
	struct tm tm;
	va_list ap;

	if (level > mon_log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ xio-monitor[%d] %s: ", ts, now.tv_nsec / 1000000, (int)getpid(),
		names[level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
