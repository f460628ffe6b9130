/*
 * main.c - the xio command: run a program under xio, run the monitor, look
 * at the live connections, check a set-up.
 *
 *   xio run [--allow SPEC] [--stats[=FILE]] [--] PROGRAM [ARGS...]
 *   xio monitor [--config FILE] [--foreground] [--pidfile FILE] [...]
 *   xio stat [--json] [--watch [--interval SECS] [--count N]]
 *   xio check
 *
 * Exit codes are listed in xio_tool.h and by `xio --help`.
 */
#include <stdio.h>
#include <string.h>

#include "xio_tool.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: xio COMMAND [OPTIONS]\n"
		"  run [--allow SPEC] [--stats[=FILE]] [--] PROGRAM [ARGS...]\n"
		"                 run PROGRAM with its local TCP over shared memory\n"
		"                 (starts a monitor if none answers)\n"
		"  monitor [--config FILE] [--foreground] [--pidfile FILE] [...]\n"
		"                 the control-plane daemon\n"
		"  stat [--json] [--watch]\n"
		"                 the live connections and totals per process\n"
		"  check          diagnose this machine and the set-up\n"
		"  help [COMMAND] this text, or a command's\n"
		"Every command takes --help. Exit status: 0 success; 1 a problem was found\n"
		"(no monitor answers, a check failed); 2 bad usage. xio run exits with the\n"
		"program's status, or 125 (xio failed), 126 (cannot execute), 127 (not found).\n"
		"Documentation: docs/configuration.md.\n");
}

static const struct {
	const char *name;
	int (*fn)(int, char **);
} cmds[] = {
	{ "run", xio_cmd_run },
	{ "monitor", xio_cmd_monitor },
	{ "stat", xio_cmd_stat },
	{ "check", xio_cmd_check },
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return XIO_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		usage(stdout);
		return XIO_EXIT_OK;
	}
	if (!strcmp(cmd, "--version")) {
		printf("xio %s\n", XIO_VERSION);
		return XIO_EXIT_OK;
	}
	if (!strcmp(cmd, "help")) {
		if (argc < 3) {
			usage(stdout);
			return XIO_EXIT_OK;
		}
		cmd = argv[2];
		argv[1] = (char *)cmd;
		argv[2] = "--help";
		argc = 3;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmd, cmds[i].name)) {
			/* getopt names the program in its own messages
			 * ("xio stat: unrecognized option '--x'"). */
			char name[32];
			snprintf(name, sizeof(name), "xio %s", cmds[i].name);
			argv[1] = name;
			return cmds[i].fn(argc - 1, argv + 1);
		}
	fprintf(stderr, "xio: unknown command '%s'\n", cmd);
	usage(stderr);
	return XIO_EXIT_USAGE;
}
