/*
 * main.c - xio-monitor: start-up, the control socket, the event loop and
 * shutdown.
 *
 *   xio-monitor [--socket PATH] [--config FILE] [--hugepages auto|on|off]
 *               [--foreground] [--log FILE] [--pidfile FILE] [--idle-exit SECS]
 *               [--verbose] [--check-config]
 *
 * Without --foreground it detaches once the socket is ready, so a script
 * that starts it can connect as soon as the command returns. SIGTERM or
 * SIGINT stop it cleanly: the socket and the pid file are removed.
 * --idle-exit is for the monitor `xio run` starts when none answers: it
 * stops once no process has been connected for that long.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "monitor.h"
#include "xio/sys.h"

#define CHUNK_SIZE 256u

static void usage(FILE *f)
{
	fprintf(f, "usage: xio-monitor [--socket PATH] [--config FILE] [--hugepages auto|on|off]\n"
		   "                   [--foreground] [--log FILE] [--pidfile FILE]\n"
		   "                   [--idle-exit SECONDS] [--verbose] [--check-config]\n"
		   "       xio-monitor --status [--socket PATH]   counts of a running monitor\n"
		   "The socket path defaults to $XIO_MONITOR_SOCK, then %s.\n",
		XIO_MONITOR_SOCK_DEFAULT);
}

/* Make the parent directory of path if it is missing (one level: /run/xio). */
static void make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		mkdir(dir, 0755);
	}
}

static int open_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "xio-monitor: socket path too long: %s\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	make_parent(path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		/* bound */
	} else if (errno == EADDRINUSE) {
		/* A live monitor answers; a stale socket file does not. */
		int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (probe >= 0)
			close(probe);
		if (live) {
			fprintf(stderr, "xio-monitor: another monitor is running on %s\n", path);
			close(fd);
			return -1;
		}
		unlink(path);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			goto fail;
	} else {
		goto fail;
	}
	/* Any local user may ask; the rules decide what they get. */
	chmod(path, 0666);
	/* Each session inherits SO_PASSCRED when it is accepted: a message
	 * sent between the accept and the session's own setsockopt still
	 * carries its sender's credentials, rather than none (which the
	 * kernel reports as uid 65534, or 0 on older kernels). */
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		goto fail;
	if (listen(fd, 128) < 0)
		goto fail;
	return fd;
fail:
	fprintf(stderr, "xio-monitor: cannot listen on %s: %s\n", path, strerror(errno));
	close(fd);
	return -1;
}

/* xio-monitor --status: ask a running monitor for its counts. */
static int print_status(const char *path)
{
	struct xio_msg_status st;
	setenv("XIO_MONITOR_SOCK", path, 1);
	int r = xio__ctl_status(&st);
	if (r < 0) {
		fprintf(stderr, "xio-monitor: no monitor answers on %s\n", path);
		return 1;
	}
	printf("processes %u\nlisteners %u\nintents %u\nconnections %u\n"
	       "accelerated_total %llu\nfallback_total %llu\nsegments_huge %llu\n"
	       "segments_small %llu\nlive_tx_bytes %llu\nlive_tx_msgs %llu\n"
	       "live_doorbells %llu\n",
	       st.procs, st.listeners, st.intents, st.conns, (unsigned long long)st.accel_total,
	       (unsigned long long)st.fallback_total, (unsigned long long)st.segments_huge,
	       (unsigned long long)st.segments_small, (unsigned long long)st.live_tx_bytes,
	       (unsigned long long)st.live_tx_msgs, (unsigned long long)st.live_doorbells);
	return 0;
}

/* The pid of the process that serves (the detached child), for init
 * scripts and `kill $(cat FILE)`. Returns 0 or -1 with errno. */
static int write_pidfile(const char *path)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (write(fd, buf, (size_t)n) != n) {
		int e = errno;
		close(fd);
		unlink(path);
		errno = e ? e : EIO;
		return -1;
	}
	return close(fd);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	/* Each session and intent costs the monitor an fd, and so does each
	 * connection until both sides have it (for life without views). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Pairing needs the namespace of each socket, which only SIOCGSKNS gives,
 * with CAP_NET_ADMIN. Without it nothing is paired: say so at start. */
static void check_netns_readable(void)
{
	uint64_t ns;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r = s < 0 ? -errno : xio_sock_netns(s, &ns);
	if (s >= 0)
		close(s);
	if (r < 0)
		mon_log(MON_WARN, "cannot read the network namespace of a socket (%s; CAP_NET_ADMIN "
				  "is needed): no connection will be accelerated",
			strerror(-r));
}

/* Out of fds, a connection waiting on the level-triggered listening socket
 * would wake the loop for ever: give up the spare fd to accept it, close it
 * (the process goes on without xio), and take the spare back. Returns 0
 * when no connection was waiting. */
static int refuse_session(struct monitor *m)
{
	static uint64_t refused;
	if (m->spare_fd >= 0)
		close(m->spare_fd);
	int s = accept4(m->lsock, NULL, NULL, SOCK_CLOEXEC);
	if (s >= 0)
		close(s);
	m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (s < 0)
		return 0;
	if (refused++ % 1000 == 0)
		mon_log(MON_WARN, "out of fds: %llu session(s) refused so far",
			(unsigned long long)refused);
	return 1;
}

static void accept_procs(struct monitor *m)
{
	for (;;) {
		int s = accept4(m->lsock, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (s < 0 && (errno == EMFILE || errno == ENFILE)) {
			if (!refuse_session(m))
				return;
			continue;
		}
		if (s < 0)
			return;
		struct mon_proc *p = mon_proc_add(m, s);
		if (!p) {
			close(s);
			continue;
		}

		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = p };
		epoll_ctl(m->epfd, EPOLL_CTL_ADD, s, &ev);
		mon_log(MON_DEBUG, "process %d (uid %u) connected", (int)p->pid, (unsigned)p->uid);
	}
}

/* Whether the monitor has been without a process for idle_exit seconds. */
static int idle_expired(struct monitor *m, uint64_t *busy_ms)
{
	uint64_t now = mon_now_ms();
	if (HASH_COUNT(m->procs) > 0) {
		*busy_ms = now;
		return 0;
	}
	return now - *busy_ms >= (uint64_t)m->idle_exit * 1000u;
}

static int run(struct monitor *m)
{
	struct epoll_event evs[64];
	uint64_t busy_ms = mon_now_ms();
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &m->lsock };
	struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &m->sigfd };
	epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->lsock, &lev);
	epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->sigfd, &sev);
	if (mon_closer_start() < 0)
		mon_log(MON_WARN, "no closer thread: handed sockets are closed on the event loop");
	xio_ctl_close_fd = mon_close_handed;

	for (;;) {
		int tmo = mon_gone_check(m);
		if (m->idle_exit && (tmo < 0 || tmo > 500))
			tmo = 500;
		int n = epoll_wait(m->epfd, evs, 64, tmo);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0 && m->idle_exit && idle_expired(m, &busy_ms)) {
			mon_log(MON_INFO, "no process for %u s: stopping", m->idle_exit);
			return 0;
		}
		for (int i = 0; i < n; i++) {
			void *ptr = evs[i].data.ptr;
			if (ptr == &m->lsock) {
				accept_procs(m);
			} else if (ptr == &m->sigfd) {
				struct signalfd_siginfo si;
				if (read(m->sigfd, &si, sizeof(si)) == sizeof(si)) {
					mon_log(MON_INFO, "signal %u: shutting down", si.ssi_signo);
					return 0;
				}
			} else {
				struct mon_proc *p = ptr;
				if (!p)
					continue; /* reclaimed earlier in this batch */
				/* A hang-up after the last messages: handle those first. */
				mon_intake(m, p);
				mon_process(m, p);
				if (evs[i].events & (EPOLLHUP | EPOLLERR))
					p->dead = 1;
			}
		}
		/* Reclaim outside the dispatch: settle_intents may have read a
		 * hang-up of a process that has an event later in this batch. */
		struct mon_proc *p, *tmp;
		HASH_ITER(hh, m->procs, p, tmp)
		{
			if (!p->dead && p->fcount)
				mon_process(m, p);
			if (p->dead) {
				for (int i = 0; i < n; i++)
					if (evs[i].data.ptr == p)
						evs[i].data.ptr = NULL;
				mon_proc_reclaim(m, p);
			}
		}
		mon_closer_flush();
		if (m->idle_exit)
			idle_expired(m, &busy_ms);
	}
}

static const char *pidfile;

/* The daemon works from /; a relative path given on the command line
 * means one from where it was started. The result is never freed: it lives
 * as long as the process. */
static const char *absolute(const char *path)
{
	char cwd[4096];
	if (!path || path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return path;
	char *abs = malloc(strlen(cwd) + strlen(path) + 2);
	if (!abs)
		return path;
	sprintf(abs, "%s/%s", cwd, path);
	return abs;
}

static void shutdown_all(struct monitor *m)
{
	struct mon_proc *p, *tmp;
	HASH_ITER(hh, m->procs, p, tmp)
	mon_proc_reclaim(m, p);
	mon_uids_free(m);
	mon_bulk_clear();
	free(m->gone);
	close(m->lsock);
	unlink(m->sock_path);
	if (pidfile)
		unlink(pidfile);
	mon_closer_stop();
	xio_config_free(&m->cfg);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, 0, 's' },   { "config", required_argument, 0, 'c' },
		{ "hugepages", required_argument, 0, 'H' }, { "foreground", no_argument, 0, 'f' },
		{ "log", required_argument, 0, 'l' },      { "verbose", no_argument, 0, 'v' },
		{ "check-config", no_argument, 0, 'C' },   { "help", no_argument, 0, 'h' },
		{ "status", no_argument, 0, 'S' },         { "pidfile", required_argument, 0, 'p' },
		{ "idle-exit", required_argument, 0, 'i' },
		{ 0, 0, 0, 0 }
	};
	struct monitor m;
	const char *config = NULL, *hugearg = NULL, *logfile = NULL;
	int foreground = 0, check_only = 0, status = 0, o;
	char err[512];

	memset(&m, 0, sizeof(m));
	m.sock_path = xio_ctl_sock_path();
	/* Ids start at a random point: after a restart, a CLOSE a running
	 * program sends for a connection of the monitor before must not name
	 * a new connection of this one. */
	if (getrandom(&m.next_id, sizeof(m.next_id), 0) != (ssize_t)sizeof(m.next_id))
		m.next_id = (uint64_t)time(NULL) << 20;
	m.next_id >>= 16;
	while ((o = getopt_long(argc, argv, "s:c:H:fl:vChSp:i:", opts, NULL)) != -1) {
		char *end;
		unsigned long v;
		switch (o) {
		case 's': m.sock_path = optarg; break;
		case 'c': config = optarg; break;
		case 'H': hugearg = optarg; break;
		case 'f': foreground = 1; break;
		case 'l': logfile = optarg; break;
		case 'v': mon_log_level = MON_DEBUG; break;
		case 'C': check_only = 1; break;
		case 'S': status = 1; break;
		case 'p': pidfile = optarg; break;
		case 'i':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || errno || v < 1 || v > 86400 || *optarg == '-') {
				fprintf(stderr, "xio-monitor: --idle-exit takes seconds (1..86400), "
						"not '%s'\n", optarg);
				return 2;
			}
			m.idle_exit = (unsigned)v;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "xio-monitor: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (status)
		return print_status(m.sock_path);
	xio_config_defaults(&m.cfg);
	if (config && xio_config_load(&m.cfg, config, err, sizeof(err)) < 0) {
		fprintf(stderr, "xio-monitor: %s\n", err);
		return 2;
	}
	if (hugearg) {
		if (!strcmp(hugearg, "auto"))
			m.cfg.hugepages = XIO_HUGE_AUTO;
		else if (!strcmp(hugearg, "on"))
			m.cfg.hugepages = XIO_HUGE_ON;
		else if (!strcmp(hugearg, "off"))
			m.cfg.hugepages = XIO_HUGE_OFF;
		else {
			fprintf(stderr, "xio-monitor: --hugepages takes auto, on or off, not '%s'\n",
				hugearg);
			xio_config_free(&m.cfg);
			return 2;
		}
	}
	m.huge = m.cfg.hugepages == XIO_HUGE_ON ? 1 : m.cfg.hugepages == XIO_HUGE_OFF ? 0 : -1;
	if (xio_seg_params_init(&m.params, m.cfg.segment_size, CHUNK_SIZE, m.cfg.max_msg) < 0) {
		fprintf(stderr, "xio-monitor: segment-size %zu cannot hold max-msg %u twice\n",
			m.cfg.segment_size, m.cfg.max_msg);
		xio_config_free(&m.cfg);
		return 2;
	}
	m.params.win_start = m.cfg.buffer_start;
	if (check_only) {
		printf("configuration ok: %zu rule(s), segment %zu bytes, %u chunks of %u per "
		       "direction\n",
		       m.cfg.nrules, m.cfg.segment_size, m.params.buf_chunks, CHUNK_SIZE);
		xio_config_free(&m.cfg);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	m.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	m.epfd = epoll_create1(EPOLL_CLOEXEC);
	raise_fd_limit();
	m.sock_path = absolute(m.sock_path); /* unlinked at the end, from / */
	int views = mon_seg_views_probe();
	m.seg_views = views == 0;
	mon_limits_init(&m);
	m.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (mon_diag_init() < 0) {
		fprintf(stderr, "xio-monitor: cannot open our network namespace or a sock_diag socket: %s\n",
			strerror(errno));
		xio_config_free(&m.cfg);
		return 1;
	}
	m.lsock = open_socket(m.sock_path);
	if (m.lsock < 0 || m.sigfd < 0 || m.epfd < 0) {
		xio_config_free(&m.cfg);
		return 1;
	}

	int ready[2] = { -1, -1 };
	pidfile = absolute(pidfile);
	logfile = absolute(logfile);
	if (!foreground) {
		/* Detach; the parent returns once we are up. */
		if (pipe(ready) < 0)
			return 1;
		pid_t pid = fork();
		if (pid < 0)
			return 1;
		if (pid > 0) {
			char b;
			close(ready[1]);
			xio_config_free(&m.cfg);
			return read(ready[0], &b, 1) == 1 ? 0 : 1;
		}
		close(ready[0]);
		setsid();
		if (chdir("/") < 0)
			return 1;
		int nul = open("/dev/null", O_RDWR);
		int logfd = logfile ? open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)
				    : nul;
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(logfd >= 0 ? logfd : nul, 2);
	} else if (logfile) {
		int logfd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (logfd >= 0)
			dup2(logfd, 2);
	}
	if (pidfile && write_pidfile(pidfile) < 0) {
		mon_log(MON_ERR, "cannot write the pid file %s: %s", pidfile, strerror(errno));
		close(m.lsock);
		unlink(m.sock_path);
		xio_config_free(&m.cfg);
		return 1;
	}
	mon_log(MON_INFO, "listening on %s; segments of %zu bytes (%u x %u per direction), "
			  "hugepages %s, %zu rule(s), default %s",
		m.sock_path, (size_t)m.params.seg_size, m.params.buf_chunks, CHUNK_SIZE,
		m.huge > 0 ? "on" : m.huge == 0 ? "off" : "auto", m.cfg.nrules,
		m.cfg.default_allow ? "allow" : "deny");
	check_netns_readable();
	if (views < 0)
		mon_log(MON_WARN, "cannot open a segment again from the monitor's own mapping of "
				  "it (/proc/self/map_files: %s; that needs CAP_SYS_ADMIN or "
				  "CAP_CHECKPOINT_RESTORE): the monitor keeps an fd per connection, and "
				  "its fd limit bounds the connections",
			strerror(-views));
	if (ready[1] >= 0) {
		if (write(ready[1], "r", 1) < 0) {
		}
		close(ready[1]);
	}
	int r = run(&m);
	shutdown_all(&m);
	mon_log(MON_INFO, "stopped");
	return r < 0 ? 1 : 0;
}
