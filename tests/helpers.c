/*
 * helpers.c - see helpers.h.
 */
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

void (*t_monitor_pre_exec)(void);

/* Fork and exec the monitor with argv, its stderr to m->log (opened with
 * mode: O_TRUNC, or O_APPEND to keep the log of the one before). */
static void spawn(struct t_monitor *m, const char **argv, int mode)
{
	m->pid = fork();
	cr_assert(m->pid >= 0);
	if (m->pid == 0) {
		int fd = open(m->log, O_WRONLY | O_CREAT | mode, 0644);
		if (fd >= 0)
			dup2(fd, 2);
		if (t_monitor_pre_exec)
			t_monitor_pre_exec();
		execv(argv[0], (char **)argv);
		_exit(127);
	}
}

/* Wait until the monitor m started answers on its socket (5 s). */
static void wait_up(struct t_monitor *m)
{
	for (int i = 0; i < 500; i++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		strcpy(sa.sun_path, m->sock);
		int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		int ok = connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(s);
		if (ok)
			return;
		int st;
		if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
			t_monitor_dump_log(m);
			cr_assert_fail("xio-monitor exited at start (status %d)", st);
		}
		sleep_ms(10);
	}
	t_monitor_dump_log(m);
	cr_assert_fail("xio-monitor did not come up in 5 s");
}

void t_monitor_start(struct t_monitor *m, ...)
{
	const char *argv[32];
	int argc = 0;
	va_list ap;

	snprintf(m->dir, sizeof(m->dir), "/tmp/xio-test-XXXXXX");
	cr_assert(mkdtemp(m->dir), "mkdtemp: %s", strerror(errno));
	chmod(m->dir, 0755); /* reachable by processes that drop privileges */
	snprintf(m->sock, sizeof(m->sock), "%s/monitor.sock", m->dir);
	snprintf(m->log, sizeof(m->log), "%s/monitor.log", m->dir);
	argv[argc++] = XIO_MONITOR_BIN;
	argv[argc++] = "--foreground";
	argv[argc++] = "--verbose";
	argv[argc++] = "--socket";
	argv[argc++] = m->sock;
	va_start(ap, m);
	for (const char *a; (a = va_arg(ap, const char *)) && argc < 31;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	spawn(m, argv, O_TRUNC);
	setenv("XIO_MONITOR_SOCK", m->sock, 1);
	xio__ctl_reset();
	wait_up(m);
}

void t_monitor_kill(struct t_monitor *m)
{
	cr_assert(m->pid > 0, "no monitor of this test to kill");
	kill(m->pid, SIGKILL);
	t_wait(m->pid, 5000);
	m->pid = 0;
}

void t_monitor_restart(struct t_monitor *m)
{
	const char *argv[] = { XIO_MONITOR_BIN, "--foreground", "--verbose", "--socket", m->sock,
			       NULL };
	/* The socket file is still there, as after a crash: the new monitor
	 * finds nobody answering on it and takes it over. */
	spawn(m, argv, O_APPEND);
	wait_up(m);
}

void t_monitor_dump_log(const struct t_monitor *m)
{
	FILE *f = fopen(m->log, "r");
	char line[512];
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "  monitor| %s", line);
	fclose(f);
}

void t_monitor_stop(struct t_monitor *m)
{
	if (m->pid > 0) {
		kill(m->pid, SIGTERM);
		t_wait(m->pid, 5000);
		m->pid = 0;
	}
	xio__ctl_reset();
	unlink(m->sock);
	unlink(m->log);
	rmdir(m->dir);
}

struct xio_msg_status t_monitor_status(void)
{
	struct xio_msg_status st;
	int r = xio__ctl_status(&st);
	cr_assert_eq(r, 0, "monitor status: %s", strerror(-r));
	return st;
}

struct xio_msg_status t_monitor_settle(unsigned procs_expected)
{
	struct xio_msg_status st = t_monitor_status();
	for (int i = 0; i < 500 && (st.conns || st.intents || st.procs != procs_expected); i++) {
		sleep_ms(10);
		st = t_monitor_status();
	}
	return st;
}

struct sockaddr_in t_loopback(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

uint16_t t_listener_port(const xio_listener *l)
{
	struct sockaddr_storage ss;
	socklen_t len;
	cr_assert_eq(xio_listener_addr(l, &ss, &len), 0);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

pid_t t_fork(int (*fn)(void *), void *arg)
{
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		/* The child has its own session with the monitor. */
		_exit(fn(arg));
	}
	return pid;
}

int t_wait(pid_t pid, int timeout_ms)
{
	int st;
	for (int waited = 0;; waited += 5) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("process %d did not finish in %d ms", (int)pid, timeout_ms);
		}
		sleep_ms(5);
	}
}

void t_seg_open(struct t_seg *s, uint64_t seg_size, uint32_t max_msg)
{
	cr_assert_eq(xio_seg_params_init(&s->p, seg_size, 256, max_msg), 0);
	cr_assert_eq(xio_seg_layout(&s->p, &s->l), 0);
	s->fd = xio_seg_create(&s->p, 1, 0, NULL);
	cr_assert(s->fd >= 0, "xio_seg_create: %s", strerror(-s->fd));
	cr_assert_eq(xio_seg_map(s->fd, &s->p, &s->a), 0);
	cr_assert_eq(xio_seg_map(s->fd, &s->p, &s->b), 0);
}

void t_seg_close(struct t_seg *s)
{
	xio_seg_unmap(s->a, &s->p);
	xio_seg_unmap(s->b, &s->p);
	close(s->fd);
}

static inline uint8_t pat(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed ^ 0x9e3779b97f4a7c15ull) + i * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint8_t)(x ^ (x >> 17));
}

void t_pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t pos)
{
	uint8_t *b = buf;
	for (size_t i = 0; i < len; i++)
		b[i] = pat(seed, pos + i);
}

int t_pattern_check(const void *buf, size_t len, uint64_t seed, uint64_t pos)
{
	const uint8_t *b = buf;
	for (size_t i = 0; i < len; i++)
		if (b[i] != pat(seed, pos + i))
			return 0;
	return 1;
}

unsigned t_hugepages_free_count(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
	unsigned v = 0;
	if (f && fscanf(f, "%u", &v) != 1)
		v = 0;
	if (f)
		fclose(f);
	return v;
}

int t_hugepages_free(unsigned n)
{
	return t_hugepages_free_count() >= n;
}

/* Entries of /proc/PID/fd (pid 0: this process), or -1. */
int t_count_fds(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), pid ? "/proc/%d/fd" : "/proc/self/fd", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - (pid ? 0 : 1); /* not the directory's own fd */
}

/* Lines of /proc/PID/maps or fds of /proc/PID/fd that are memfd segments. */
int t_count_memfds(pid_t pid)
{
	char path[64], link[256], line[512];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/%d/maps", pid ? (int)pid : (int)getpid());
	FILE *f = fopen(path, "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			n += strstr(line, "/memfd:") != NULL;
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/fd", pid ? (int)pid : (int)getpid());
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char p[64 + sizeof(e->d_name)];
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		ssize_t l = readlink(p, link, sizeof(link) - 1);
		if (l > 0) {
			link[l] = 0;
			n += strncmp(link, "/memfd:", 7) == 0;
		}
	}
	if (d)
		closedir(d);
	return n;
}

/* --- helpers for integration tests (forked peers) ----------------------- */

struct client_job {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned flags;
	int want_accel;
	int (*fn)(xio_conn *c, void *arg);
	void *arg;
};

static int client_main(void *p)
{
	struct client_job *j = p;
	xio_conn *c;
	alarm(30);
	int r = xio_connect(&c, (struct sockaddr *)&j->addr, j->addrlen, j->flags);
	if (r < 0) {
		fprintf(stderr, "child %d: xio_connect: %s\n", (int)getpid(), xio_strerror(r));
		return T_EXIT_CONNECT;
	}
	if (j->want_accel && !xio_conn_is_accelerated(c)) {
		fprintf(stderr, "child %d: connection is not accelerated\n", (int)getpid());
		xio_close(c);
		return T_EXIT_NOT_ACCEL;
	}
	r = j->fn(c, j->arg);
	xio_close(c);
	return r;
}

pid_t t_fork_client(const struct sockaddr *addr, socklen_t addrlen, unsigned flags,
		    int want_accel, int (*fn)(xio_conn *c, void *arg), void *arg)
{
	/* The child gets a copy of this frame: the pointer stays valid there. */
	struct client_job j = { .addrlen = addrlen, .flags = flags, .want_accel = want_accel,
				.fn = fn, .arg = arg };
	cr_assert(addrlen <= sizeof(j.addr));
	memcpy(&j.addr, addr, addrlen);
	return t_fork(client_main, &j);
}

int t_accept(xio_listener *l, xio_conn **c, unsigned flags, int timeout_ms)
{
	struct pollfd p = { .fd = xio_listener_fd(l), .events = POLLIN };
	int r;
	while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	if (r <= 0)
		return -ETIMEDOUT;
	return xio_accept(l, c, flags);
}

ssize_t t_read_full(xio_conn *c, void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = xio_read(c, (char *)buf + done, len - done);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

void t_post(int fd)
{
	char b = 1;
	while (write(fd, &b, 1) < 0 && errno == EINTR)
		;
}

int t_await(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t end = t_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		uint64_t now = t_now_ms();
		int left = now >= end ? 0 : (int)(end - now);
		int r = poll(&p, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		char b;
		ssize_t n = read(fd, &b, 1);
		if (n < 0 && errno == EINTR)
			continue;
		return n == 1;
	}
}

uint64_t t_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void t_suite_up(struct t_monitor *m, xio_listener **lis, int backlog)
{
	t_monitor_start(m, NULL);
	struct sockaddr_in a = t_loopback(0);
	int r = xio_listen(lis, (struct sockaddr *)&a, sizeof(a), backlog, 0);
	cr_assert_eq(r, 0, "xio_listen: %s", xio_strerror(r));
}

void t_suite_down(struct t_monitor *m, xio_listener **lis)
{
	if (*lis)
		xio_listener_close(*lis);
	*lis = NULL;
	t_monitor_stop(m);
}

pid_t t_pair_accelerated(xio_listener *lis, xio_conn **server, unsigned flags,
			 int (*fn)(xio_conn *, void *), void *arg)
{
	struct sockaddr_in a = t_loopback(t_listener_port(lis));
	pid_t pid = t_fork_client((struct sockaddr *)&a, sizeof(a), 0, 1, fn, arg);
	int r = t_accept(lis, server, flags, 5000);
	cr_assert_eq(r, 0, "accept: %s", xio_strerror(r));
	cr_assert(xio_conn_is_accelerated(*server), "server end is not accelerated");
	return pid;
}

void t_reap(pid_t pid, int timeout_ms)
{
	int st = t_wait(pid, timeout_ms);
	cr_assert_eq(st, 0, "client exited with %d (see its stderr)", st);
}
