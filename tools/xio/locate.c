/*
 * locate.c - where the xio command finds the shim, the monitor binary and
 * the monitor's socket, and how xio run starts a monitor of its own.
 *
 * Installed, xio sits in BINDIR next to xio-monitor, and the shim is in
 * LIBDIR: both found relative to /proc/self/exe, so a package unpacked
 * anywhere works. From a build tree, the paths CMake baked in at build time.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "xio_tool.h"

static int exists(const char *p)
{
	return access(p, F_OK) == 0;
}

/* dirname of this program, resolved through symbolic links. */
static int exe_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *slash = strrchr(buf, '/');
	if (!slash)
		return -1;
	*slash = 0;
	return 0;
}

static const char *find(const char *rel_to_bindir, const char *built)
{
	static char path[2][PATH_MAX];
	static int which;
	char dir[PATH_MAX - 64];
	char *p = path[which++ & 1];
	if (exe_dir(dir, sizeof(dir)) == 0) {
		int n = snprintf(p, PATH_MAX, "%s/%s", dir, rel_to_bindir);
		if (n > 0 && n < PATH_MAX && exists(p))
			return p;
	}
	return exists(built) ? built : NULL;
}

const char *xio_tool_shim_path(void)
{
	return find(XIO_REL_LIBDIR "/libxio_preload.so", XIO_BUILD_SHIM);
}

const char *xio_tool_monitor_path(void)
{
	return find("xio-monitor", XIO_BUILD_MONITOR);
}

int xio_tool_monitor_answers(const char *path)
{
	int fd = xio_tool_ctl_open(path, NULL);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/* The user's own socket: a private directory of theirs (which
 * xio_tool_sock_dir_ok checks before it is used). */
static const char *user_sock(void)
{
	static char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *rt = getenv("XDG_RUNTIME_DIR");
	if (rt && rt[0] == '/' && strlen(rt) + 20 < sizeof(path))
		snprintf(path, sizeof(path), "%s/xio/monitor.sock", rt);
	else
		snprintf(path, sizeof(path), "/tmp/xio-%u/monitor.sock", (unsigned)getuid());
	return path;
}

const char *xio_tool_sock_path(void)
{
	const char *env = getenv("XIO_MONITOR_SOCK");
	if (env && *env)
		return env;
	if (getuid() == 0 || xio_tool_monitor_answers(XIO_MONITOR_SOCK_DEFAULT))
		return XIO_MONITOR_SOCK_DEFAULT;
	return user_sock();
}

/* The directory of the socket path, or "" for one in the current directory
 * or in /. */
static void sock_dir(const char *sock, char *dir, size_t len)
{
	snprintf(dir, len, "%s", sock);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		dir[0] = 0;
	else
		*slash = 0;
}

/* Whoever owns the socket's directory, or may write to it, could have put
 * a monitor of theirs there first (/tmp/xio-UID made by another user). Only
 * the user and root may. Searchable by all: programs that drop privileges
 * (nginx's workers) must reach the socket. A directory swapped after this
 * look is caught by the monitor's own credentials, checked on every
 * connection (xio_tool_ctl_open, and the shim's control client). */
int xio_tool_sock_dir_ok(const char *path, char *why, size_t len)
{
	char dir[PATH_MAX];
	struct stat st;
	sock_dir(path, dir, sizeof(dir));
	if (!dir[0])
		return 0;
	if (lstat(dir, &st) < 0) {
		if (errno == ENOENT)
			return 0; /* made when a monitor is started there */
		snprintf(why, len, "cannot look at %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, len, "%s is not a directory", dir);
		return -1;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(why, len, "%s belongs to uid %u, not to you (uid %u) nor to root", dir,
			 (unsigned)st.st_uid, (unsigned)geteuid());
		return -1;
	}
	if (st.st_mode & 0022) {
		snprintf(why, len, "%s may be written to by others (mode %03o)", dir,
			 (unsigned)(st.st_mode & 0777));
		return -1;
	}
	return 0;
}

/* The socket's directory must exist and pass xio_tool_sock_dir_ok. */
static int ensure_dir(const char *who, const char *sock)
{
	char dir[PATH_MAX], why[PATH_MAX + 128];
	sock_dir(sock, dir, sizeof(dir));
	if (dir[0] && mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "%s: cannot create %s: %s\n", who, dir, strerror(errno));
		return -1;
	}
	if (xio_tool_sock_dir_ok(sock, why, sizeof(why)) < 0) {
		fprintf(stderr,
			"%s: %s: not starting a monitor there (set XIO_MONITOR_SOCK to a path "
			"in a directory of yours)\n",
			who, why);
		return -1;
	}
	return 0;
}

int xio_tool_monitor_spawn(const char *who, const char *path, unsigned idle_secs,
			   const char *log_path)
{
	const char *mon = xio_tool_monitor_path();
	char idle[16];
	if (!mon) {
		fprintf(stderr, "%s: xio-monitor not found next to this program nor in %s\n", who,
			XIO_BUILD_MONITOR);
		return -1;
	}
	if (ensure_dir(who, path) < 0)
		return -1;
	snprintf(idle, sizeof(idle), "%u", idle_secs);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "%s: fork: %s\n", who, strerror(errno));
		return -1;
	}
	if (pid == 0) {
		/* Without --foreground the monitor detaches and its first
		 * process exits once the socket is ready. */
		execl(mon, "xio-monitor", "--socket", path, "--idle-exit", idle, "--log", log_path,
		      (char *)NULL);
		fprintf(stderr, "%s: cannot run %s: %s\n", who, mon, strerror(errno));
		_exit(XIO_RUN_FAILED);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	/* Exit 1 with "another monitor is running": one started in between
	 * (another xio run); it answers, and that is all we need. */
	for (int i = 0; i < 100; i++) {
		if (xio_tool_monitor_answers(path))
			return 0;
		nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
	}
	fprintf(stderr, "%s: the monitor did not start on %s (see %s)\n", who, path, log_path);
	return -1;
}
