/*
 * run.c - xio run [--allow SPEC] [--stats[=FILE]] [--] PROGRAM [ARGS...]
 *
 * Runs PROGRAM with the shim preloaded and pointed at a monitor. When no
 * monitor answers, it starts one that stops by itself once no program uses
 * it (--idle-exit), so a first try needs no set-up. xio run stays as the
 * program's parent and holds a control connection of its own while the
 * program runs: the shim connects only at the program's first socket call,
 * and the monitor must not time out before that.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allow.h"
#include "xio_tool.h"

#define IDLE_EXIT_S 2

static void usage(FILE *f)
{
	fprintf(f,
		"usage: xio run [--allow SPEC] [--stats[=FILE]] [--] PROGRAM [ARGS...]\n"
		"Run PROGRAM (and the programs it starts) with its local TCP connections\n"
		"carried over xio's shared memory, starting a monitor if none answers.\n"
		"  --allow SPEC     the destinations to accelerate (XIO_ALLOW, docs/allowlist.md;\n"
		"                   default: loopback and this host's addresses)\n"
		"  --stats          each process writes its xio-stats line to stderr at exit\n"
		"  --stats=FILE     ... appends it to FILE instead\n"
		"Monitor socket: $XIO_MONITOR_SOCK, else %s, else a monitor of your own\n"
		"in $XDG_RUNTIME_DIR/xio or /tmp/xio-$UID.\n"
		"Exit status: the program's (128+N if killed by signal N); 125 if xio run\n"
		"failed, 126 if PROGRAM cannot be executed, 127 if it is not found.\n",
		XIO_MONITOR_SOCK_DEFAULT);
}

static pid_t child;

static void forward(int sig)
{
	if (child > 0)
		kill(child, sig);
}

/* name=value, with value prepended to an existing colon list (LD_PRELOAD)
 * when prepend is set. */
static int env_set(const char *name, const char *value, int prepend)
{
	const char *old = getenv(name);
	if (!prepend || !old || !*old)
		return setenv(name, value, 1);
	char *v = malloc(strlen(value) + strlen(old) + 2);
	if (!v)
		return -1;
	sprintf(v, "%s:%s", value, old);
	int r = setenv(name, v, 1);
	free(v);
	return r;
}

static int start_child(char **argv)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	child = fork();
	if (child < 0) {
		fprintf(stderr, "xio run: fork: %s\n", strerror(errno));
		return -1;
	}
	if (child == 0) {
		sigaction(SIGINT, &dfl, NULL);
		sigaction(SIGQUIT, &dfl, NULL);
		sigaction(SIGTERM, &dfl, NULL);
		sigaction(SIGHUP, &dfl, NULL);
		execvp(argv[0], argv);
		int e = errno;
		fprintf(stderr, "xio run: cannot run '%s': %s\n", argv[0], strerror(e));
		_exit(e == ENOENT ? XIO_RUN_NOTFOUND : XIO_RUN_NOEXEC);
	}
	return 0;
}

int xio_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = { { "allow", required_argument, 0, 'a' },
					      { "stats", optional_argument, 0, 's' },
					      { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	const char *allow = NULL, *stats = NULL;
	int o;

	/* "+": options end at the program's name. */
	while ((o = getopt_long(argc, argv, "+a:h", opts, NULL)) != -1) {
		switch (o) {
		case 'a': allow = optarg; break;
		case 's': stats = optarg ? optarg : "1"; break;
		case 'h': usage(stdout); return XIO_EXIT_OK;
		default: usage(stderr); return XIO_RUN_FAILED;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "xio run: no program given\n");
		usage(stderr);
		return XIO_RUN_FAILED;
	}
	if (stats && !*stats) {
		fprintf(stderr, "xio run: --stats= needs a file name\n");
		return XIO_RUN_FAILED;
	}
	if (allow) {
		/* The shim would only complain from inside the program and run
		 * it unaccelerated: refuse a bad list here, naming the token. */
		struct xio_allow *a;
		char err[256];
		if (xio_allow_parse(allow, &a, err, sizeof(err)) < 0) {
			fprintf(stderr, "xio run: --allow: %s\n", err);
			return XIO_RUN_FAILED;
		}
		xio_allow_free(a);
	}
	const char *shim = xio_tool_shim_path();
	if (!shim) {
		fprintf(stderr, "xio run: libxio_preload.so not found next to this program nor in "
				"%s\n",
			XIO_BUILD_SHIM);
		return XIO_RUN_FAILED;
	}

	const char *sock = xio_tool_sock_path();
	char why[4200];
	/* Whoever could have put a monitor there first would be handed every
	 * socket the program makes: refuse, rather than run the program
	 * unaccelerated and hide it. */
	if (xio_tool_sock_dir_ok(sock, why, sizeof(why)) < 0) {
		fprintf(stderr,
			"xio run: %s: not using a monitor there (set XIO_MONITOR_SOCK to a path in "
			"a directory of yours)\n",
			why);
		return XIO_RUN_FAILED;
	}
	uint32_t mon_uid;
	int hold = xio_tool_ctl_open(sock, &mon_uid);
	if (hold < 0 && mon_uid == XIO_CTL_NO_CRED) {
		/* Its log next to its socket. */
		char log[4096];
		const char *slash = strrchr(sock, '/');
		snprintf(log, sizeof(log), "%.*s/monitor.log", slash ? (int)(slash - sock) : 1,
			 slash ? sock : ".");
		if (xio_tool_monitor_spawn("xio run", sock, IDLE_EXIT_S, log) < 0)
			return XIO_RUN_FAILED;
		fprintf(stderr,
			"xio run: no monitor answered; started one on %s (it stops %d s after the "
			"last program using it)\n",
			sock, IDLE_EXIT_S);
		hold = xio_tool_ctl_open(sock, &mon_uid);
	}
	if (hold < 0 && mon_uid != XIO_CTL_NO_CRED) {
		fprintf(stderr,
			"xio run: the monitor on %s runs as uid %u, neither root nor you (uid %u): "
			"your programs would not use it (stop it, or set XIO_MONITOR_SOCK to a "
			"path in a directory of yours)\n",
			sock, (unsigned)mon_uid, (unsigned)geteuid());
		return XIO_RUN_FAILED;
	}
	if (hold < 0 || xio_tool_ctl_hello(hold) < 0) {
		fprintf(stderr, "xio run: the monitor on %s does not answer: %s\n", sock,
			strerror(hold < 0 ? -hold : EPROTO));
		return XIO_RUN_FAILED;
	}

	if (env_set("LD_PRELOAD", shim, 1) < 0 || env_set("XIO_MONITOR_SOCK", sock, 0) < 0 ||
	    (allow && env_set("XIO_ALLOW", allow, 0) < 0) ||
	    (stats && env_set("XIO_STATS", stats, 0) < 0)) {
		fprintf(stderr, "xio run: out of memory\n");
		return XIO_RUN_FAILED;
	}

	/* Ctrl-C reaches the program from the terminal by itself; xio run
	 * waits for it to finish. A signal sent to xio run alone is passed on. */
	struct sigaction fwd = { .sa_handler = forward, .sa_flags = SA_RESTART };
	struct sigaction ign = { .sa_handler = SIG_IGN };
	sigaction(SIGINT, &ign, NULL);
	sigaction(SIGQUIT, &ign, NULL);
	sigaction(SIGTERM, &fwd, NULL);
	sigaction(SIGHUP, &fwd, NULL);
	if (start_child(argv + optind) < 0)
		return XIO_RUN_FAILED;
	int st;
	while (waitpid(child, &st, 0) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "xio run: waitpid: %s\n", strerror(errno));
			return XIO_RUN_FAILED;
		}
	}
	close(hold);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}
