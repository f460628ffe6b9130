/*
 * check.c - xio check: diagnose this machine and the set-up. Each check
 * prints one line, "ok", "warn" or "FAIL", and every problem comes with the
 * one thing to do about it. A warning costs speed, never correctness (xio
 * falls back to ordinary TCP); a failure keeps xio from working.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xio_tool.h"

#define FD_LIMIT_WANT 65536u

static unsigned nfail, nwarn;

static void say(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const char *level, const char *fmt, ...)
{
	va_list ap;
	if (!strcmp(level, "FAIL"))
		nfail++;
	else if (!strcmp(level, "warn"))
		nwarn++;
	printf("%-4s  ", level);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void check_monitor(void)
{
	const char *sock = xio_tool_sock_path();
	struct stat st;
	char why[4200];
	if (xio_tool_sock_dir_ok(sock, why, sizeof(why)) < 0) {
		say("FAIL", "monitor: %s, so someone else could answer on %s; do: remove it, or "
			    "set XIO_MONITOR_SOCK to a path in a directory of yours",
		    why, sock);
		return;
	}
	uint32_t mon_uid;
	int fd = xio_tool_ctl_open(sock, &mon_uid);
	if (fd < 0 && mon_uid != XIO_CTL_NO_CRED) {
		say("FAIL", "monitor: the one on %s runs as uid %u, neither root nor you (uid %u): "
			    "your programs do not use it and run on plain TCP; do: stop it, or set "
			    "XIO_MONITOR_SOCK to a monitor of root or of yours",
		    sock, (unsigned)mon_uid, (unsigned)geteuid());
		return;
	}
	if (fd < 0) {
		int e = -fd;
		if (e == ENOENT)
			say("warn", "monitor: none on %s; do: `xio monitor` (or `systemctl start "
				    "xio-monitor`); `xio run` starts one by itself when none answers",
			    sock);
		else if (e == EACCES)
			say("FAIL", "monitor: %s is not reachable by uid %u (permission denied); do: "
				    "make its directory searchable (chmod o+x) or set XIO_MONITOR_SOCK",
			    sock, (unsigned)getuid());
		else if (e == ECONNREFUSED && stat(sock, &st) == 0)
			say("FAIL", "monitor: %s is left over from a monitor that is gone; do: "
				    "`xio monitor` (it replaces the stale file)",
			    sock);
		else
			say("FAIL", "monitor: cannot connect to %s: %s; do: check XIO_MONITOR_SOCK",
			    sock, strerror(e));
		return;
	}
	struct xio_msg_status s;
	int e = xio_tool_ctl_status(fd, &s);
	close(fd);
	if (e < 0) {
		say("FAIL", "monitor: %s accepts but does not answer (%s); do: restart it "
			    "(`systemctl restart xio-monitor`, or stop it and run `xio monitor`)",
		    sock, strerror(-e));
		return;
	}
	say("ok", "monitor: answers on %s (%u processes, %u listeners, %u connections)", sock,
	    s.procs, s.listeners, s.conns);
}

/* The shim loads when a program started with it writes its xio-stats line
 * at exit: ld.so only warns when a preload fails, and the program runs on.
 * The probe is true(1), not sh -c (dash leaves by _exit, skipping exit
 * handlers), and the line goes to a file: coreutils close stderr at exit
 * before the shim's handler runs. */
static void check_shim(void)
{
	const char *shim = xio_tool_shim_path();
	if (!shim) {
		say("FAIL", "shim: libxio_preload.so not found next to xio nor in %s; do: reinstall "
			    "the package (or build the tree)",
		    XIO_BUILD_SHIM);
		return;
	}
	char stats[] = "/tmp/xio-check-XXXXXX";
	int sfd = mkstemp(stats);
	int pfd[2] = { -1, -1 };
	if (sfd < 0 || pipe2(pfd, O_CLOEXEC) < 0) {
		say("FAIL", "shim: cannot make a probe (%s); do: check that /tmp is writable",
		    strerror(errno));
		if (sfd >= 0) {
			close(sfd);
			unlink(stats);
		}
		return;
	}
	close(sfd);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 2);
		setenv("LD_PRELOAD", shim, 1);
		setenv("XIO_STATS", stats, 1);
		execlp("true", "true", (char *)NULL); /* coreutils: exit() runs the handlers */
		_exit(127);
	}
	close(pfd[1]);
	char out[2048], line[512] = "";
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(out) - 1 && (n = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = 0;
	close(pfd[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	FILE *f = fopen(stats, "re");
	if (f) {
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
		fclose(f);
	}
	unlink(stats);
	if (pid > 0 && !strncmp(line, "xio-stats pid=", 14)) {
		say("ok", "shim: %s loads into programs", shim);
		return;
	}
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = 0;
	say("FAIL", "shim: %s does not load (%s); do: reinstall the package, or rebuild it for "
		    "this system",
	    shim, out[0] ? out : "the probe program wrote no counters");
}

static void check_memfd(void)
{
	int fd = memfd_create("xio-check", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		say("FAIL", "memfd: memfd_create failed (%s); do: use Linux 3.17 or later, and in "
			    "a container allow memfd_create in the seccomp profile",
		    strerror(errno));
		return;
	}
	int ok = ftruncate(fd, 1 << 20) == 0 &&
		 fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0;
	void *p = ok ? mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
	if (p == MAP_FAILED) {
		say("FAIL", "memfd: a sealed shared mapping failed (%s); do: allow memfd sealing "
			    "and shared mappings (seccomp, LSM policy)",
		    strerror(errno));
	} else {
		munmap(p, 1 << 20);
		say("ok", "memfd: sealed shared-memory segments work");
	}
	close(fd);
}

static long meminfo(const char *key)
{
	char line[256];
	long v = -1;
	size_t kl = strlen(key);
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static void check_hugepages(void)
{
	long total = meminfo("HugePages_Total"), free_ = meminfo("HugePages_Free");
	long size = meminfo("Hugepagesize");
	if (total <= 0) {
		say("warn", "hugepages: none reserved, segments use ordinary pages (slower under "
			    "load); do: `sysctl -w vm.nr_hugepages=64` (as root)");
		return;
	}
	int fd = memfd_create("xio-check-huge", MFD_CLOEXEC | MFD_HUGETLB);
	if (fd < 0) {
		say("warn", "hugepages: %ld reserved but memfd_create(MFD_HUGETLB) fails (%s); do: "
			    "use Linux 4.14 or later",
		    total, strerror(errno));
		return;
	}
	close(fd);
	if (free_ == 0)
		say("warn", "hugepages: all %ld in use, new segments use ordinary pages; do: "
			    "`sysctl -w vm.nr_hugepages=%ld`",
		    total, total * 2);
	else
		say("ok", "hugepages: %ld of %ld free (%ld kB each)", free_, total, size);
}

static void check_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		say("warn", "fd limit: getrlimit failed: %s", strerror(errno));
		return;
	}
	/* The monitor keeps one fd per live connection and raises its soft
	 * limit to the hard one; the hard limit is what counts. */
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < FD_LIMIT_WANT)
		say("warn", "fd limit: hard limit %llu; a monitor started here serves at most "
			    "about that many connections; do: `ulimit -Hn %u` (or LimitNOFILE= "
			    "in the systemd unit)",
		    (unsigned long long)rl.rlim_max, FD_LIMIT_WANT);
	else
		say("ok", "fd limit: soft %llu, hard %llu", (unsigned long long)rl.rlim_cur,
		    (unsigned long long)rl.rlim_max);
}

static void check_netns(void)
{
	struct stat st;
	if (stat("/proc/self/ns/net", &st) < 0) {
		say("FAIL", "namespaces: /proc/self/ns/net cannot be read (%s); do: mount /proc "
			    "(the monitor keys connections by network namespace)",
		    strerror(errno));
		return;
	}
	say("ok", "namespaces: network namespace %llu; programs are paired only within their "
		  "own namespace",
	    (unsigned long long)st.st_ino);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: xio check\n"
		   "Diagnose this machine and the set-up: monitor reachable, shim loadable,\n"
		   "memfd and hugepages, fd limits, namespace support. Each problem comes\n"
		   "with what to do about it.\n"
		   "Exit status: 0 if nothing failed (warnings allowed), 1 if a check failed,\n"
		   "2 for bad usage.\n");
}

int xio_cmd_check(int argc, char **argv)
{
	static const struct option opts[] = { { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (o == 'h') {
			usage(stdout);
			return XIO_EXIT_OK;
		}
		usage(stderr);
		return XIO_EXIT_USAGE;
	}
	if (optind < argc) {
		fprintf(stderr, "xio check: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return XIO_EXIT_USAGE;
	}
	check_monitor();
	fflush(stdout);
	check_shim();
	check_memfd();
	check_hugepages();
	check_fd_limit();
	check_netns();
	printf("%u failed, %u warning(s)\n", nfail, nwarn);
	return nfail ? XIO_EXIT_PROBLEM : XIO_EXIT_OK;
}
