/*
 * monitor.c - xio monitor [OPTIONS]: the control-plane daemon. It is the
 * xio-monitor program installed next to xio, run with the same options
 * (xio monitor --help lists them): --config FILE, --foreground,
 * --pidfile FILE, --socket PATH, ... SIGTERM stops it cleanly.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "xio_tool.h"

int xio_cmd_monitor(int argc, char **argv)
{
	const char *mon = xio_tool_monitor_path();
	(void)argc;
	if (!mon) {
		fprintf(stderr, "xio monitor: xio-monitor not found next to xio nor in %s\n",
			XIO_BUILD_MONITOR);
		return XIO_EXIT_PROBLEM;
	}
	argv[0] = "xio-monitor";
	execv(mon, argv);
	fprintf(stderr, "xio monitor: cannot run %s: %s\n", mon, strerror(errno));
	return XIO_EXIT_PROBLEM;
}
