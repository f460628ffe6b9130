/*
 * sem.c - see sem.h. Also the helper programs that some tests exec: when
 * ST_ROLE is set in the environment, a constructor runs that role instead of
 * the test runner, so the tests need no other binary.
 *
 *   ST_ROLE=echo   ST_FD=n              echo on fd n until end of file
 *   ST_ROLE=closed ST_FD=n              check that fd n is not open
 *   ST_ROLE=server ST_FD=n              listen on 127.0.0.1:0, write the port
 *                                       (2 bytes) to fd n, accept one
 *                                       connection and echo until end of file
 *   ST_ROLE=client ST_PORT=p ST_LEN=n   connect, send n pattern bytes in 4 KiB
 *                                       pieces, check each echoed piece, then
 *                                       shut down writing and expect end of file
 *
 * A role exits 0 when all went as expected, 1 otherwise.
 */
#include "sem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

void st_setup(void)
{
	alarm(ST_WATCHDOG_S);
}

static struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* Listener without assertions, for children. */
static int listen_on_loopback(uint16_t *port)
{
	struct sockaddr_in a = loopback(0);
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0)
		return -1;
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 64) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0) {
		int e = errno;
		close(l);
		errno = e;
		return -1;
	}
	*port = ntohs(a.sin_port);
	return l;
}

int st_listen(uint16_t *port)
{
	int l = listen_on_loopback(port);
	cr_assert(l >= 0, "listener on 127.0.0.1: %s", strerror(errno));
	return l;
}

int st_connect(uint16_t port)
{
	struct sockaddr_in a = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int st_accept(int l)
{
	short re = st_wait_fd(l, POLLIN, ST_WAIT_MS);
	cr_assert(re & POLLIN, "no connection to accept within %d ms", ST_WAIT_MS);
	int s = accept(l, NULL, NULL);
	cr_assert(s >= 0, "accept: %s", strerror(errno));
	return s;
}

void st_pair(int *client, int *server)
{
	uint16_t port;
	int l = st_listen(&port);
	*client = st_connect(port);
	cr_assert(*client >= 0, "connect to 127.0.0.1:%u: %s", port, strerror(errno));
	*server = st_accept(l);
	close(l);
}

uint16_t st_closed_port(void)
{
	struct sockaddr_in a = loopback(0);
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind: %s", strerror(errno));
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* In a child just forked from a test: die with the test (a peer must never
 * outlive it, or it would disturb the next test), and time out a little
 * before the test does, so that the test reports which peer hung. */
static void child_guard(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(99);
	alarm(ST_WATCHDOG_S - 2);
}

int st_peer_start(pid_t *pid, st_peer_fn fn, void *arg)
{
	uint16_t port;
	int l = st_listen(&port);
	pid_t self = getpid();
	fflush(NULL);
	pid_t p = fork();
	cr_assert(p >= 0, "fork: %s", strerror(errno));
	if (p == 0) {
		child_guard(self);
		close(l);
		int fd = st_connect(port);
		if (fd < 0) {
			fprintf(stderr, "peer %d: connect to 127.0.0.1:%u: %s\n", (int)getpid(),
				port, strerror(errno));
			_exit(90);
		}
		int rc = fn(fd, arg);
		close(fd);
		fflush(NULL);
		_exit(rc);
	}
	int s = st_accept(l);
	close(l);
	*pid = p;
	return s;
}

pid_t st_fork(int (*fn)(void *), void *arg)
{
	pid_t self = getpid();
	fflush(NULL);
	pid_t p = fork();
	cr_assert(p >= 0, "fork: %s", strerror(errno));
	if (p == 0) {
		child_guard(self);
		int rc = fn(arg);
		fflush(NULL);
		_exit(rc);
	}
	return p;
}

int st_wait(pid_t pid, int timeout_ms)
{
	int st;
	for (int waited = 0;; waited += 5) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		cr_assert(r == 0 || errno == EINTR, "waitpid %d: %s", (int)pid, strerror(errno));
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("process %d did not finish in %d ms", (int)pid, timeout_ms);
		}
		st_sleep_ms(5);
	}
}

extern char **environ;

pid_t st_spawn_role(const char *role, const char *const *env, int with_preload)
{
	size_t n = 0, extra = 0;
	while (environ[n])
		n++;
	while (env && env[extra])
		extra++;
	char **envp = calloc(n + extra + 2, sizeof(*envp));
	char rolevar[64];
	size_t k = 0;
	cr_assert(envp);
	snprintf(rolevar, sizeof(rolevar), "ST_ROLE=%s", role);
	for (size_t i = 0; i < n; i++) {
		/* BXFI_* tells Criterion's sandbox that it is a test worker; the
		 * helper is not one. */
		if (!strncmp(environ[i], "BXFI_", 5) || !strncmp(environ[i], "ST_", 3))
			continue;
		if (!with_preload && !strncmp(environ[i], "LD_PRELOAD=", 11))
			continue;
		envp[k++] = environ[i];
	}
	for (size_t i = 0; i < extra; i++)
		envp[k++] = (char *)env[i];
	envp[k++] = rolevar;
	envp[k] = NULL;

	/* The helper gets stdio and the fd named in ST_FD, not the test
	 * runner's own pipes and shared memory. */
	int keep = -1;
	for (size_t i = 0; i < extra; i++)
		if (!strncmp(env[i], "ST_FD=", 6))
			keep = atoi(env[i] + 6);

	pid_t self = getpid();
	fflush(NULL);
	pid_t p = fork();
	cr_assert(p >= 0, "fork: %s", strerror(errno));
	if (p == 0) {
		char *argv[] = { "test_semantics-helper", NULL };
		child_guard(self); /* the death signal survives execve */
		DIR *d = opendir("/proc/self/fd");
		for (struct dirent *de; d && (de = readdir(d));) {
			int fd = atoi(de->d_name);
			if (fd > 2 && fd != keep && fd != dirfd(d))
				fcntl(fd, F_SETFD, FD_CLOEXEC);
		}
		if (d)
			closedir(d);
		execve("/proc/self/exe", argv, envp);
		fprintf(stderr, "exec /proc/self/exe: %s\n", strerror(errno));
		_exit(127);
	}
	free(envp);
	return p;
}

void st_expect_left(pid_t pid, const char *reason, long tx_off, long rx_off)
{
	const char *path = getenv("ST_LEFT_EXPECT");
	if (!path || !*path)
		return;
	char p[24] = "*", t[24] = "*", r[24] = "*", line[200];
	if (pid >= 0)
		snprintf(p, sizeof(p), "%d", (int)pid);
	if (tx_off >= 0)
		snprintf(t, sizeof(t), "%ld", tx_off);
	if (rx_off >= 0)
		snprintf(r, sizeof(r), "%ld", rx_off);
	int n = snprintf(line, sizeof(line), "pid=%s reason=%s tx_off=%s rx_off=%s\n", p, reason,
			 t, r);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) != n)
		fprintf(stderr, "st_expect_left: short write to %s\n", path);
	close(fd);
}

ssize_t st_read_full(int fd, void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = read(fd, (char *)buf + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

ssize_t st_write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = write(fd, (const char *)buf + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

ssize_t st_read_to_eof(int fd, void *buf, size_t cap)
{
	size_t done = 0;
	for (;;) {
		char scratch[1];
		void *dst = done < cap ? (char *)buf + done : scratch;
		size_t want = done < cap ? cap - done : sizeof(scratch);
		ssize_t r = read(fd, dst, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return (ssize_t)done;
		done += (size_t)r;
	}
}

void st_set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	cr_assert(fl >= 0, "F_GETFL: %s", strerror(errno));
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	cr_assert_eq(fcntl(fd, F_SETFL, fl), 0, "F_SETFL: %s", strerror(errno));
}

short st_wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	uint64_t end = st_now_us() + (uint64_t)timeout_ms * 1000;
	for (;;) {
		uint64_t now = st_now_us();
		int left = now >= end ? 0 : (int)((end - now + 999) / 1000);
		int r = poll(&p, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		return r > 0 ? p.revents : 0;
	}
}

void st_post(int fd)
{
	char b = 1;
	while (write(fd, &b, 1) < 0 && errno == EINTR)
		;
}

int st_await(int fd, int timeout_ms)
{
	if (!(st_wait_fd(fd, POLLIN, timeout_ms) & (POLLIN | POLLHUP)))
		return 0;
	char b;
	ssize_t n;
	while ((n = read(fd, &b, 1)) < 0 && errno == EINTR)
		;
	return n == 1;
}

void st_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

uint64_t st_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t st_cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static inline uint8_t pat(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed ^ 0x9e3779b97f4a7c15ull) + i * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint8_t)(x ^ (x >> 17));
}

void st_pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t pos)
{
	uint8_t *b = buf;
	for (size_t i = 0; i < len; i++)
		b[i] = pat(seed, pos + i);
}

long st_pattern_check(const void *buf, size_t len, uint64_t seed, uint64_t pos)
{
	const uint8_t *b = buf;
	for (size_t i = 0; i < len; i++)
		if (b[i] != pat(seed, pos + i))
			return (long)i;
	return -1;
}

uint64_t st_fnv1a(const void *buf, size_t len, uint64_t h)
{
	const uint8_t *b = buf;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* --- helper programs (ST_ROLE) ------------------------------------------ */

static int echo_until_eof(int fd)
{
	char buf[16384];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		ST_CHECK(r >= 0, "read: %s", strerror(errno));
		if (r == 0)
			return 0;
		ST_CHECK(st_write_full(fd, buf, (size_t)r) == r, "write: %s", strerror(errno));
	}
}

static int role_server(int report_fd)
{
	uint16_t port;
	int l = listen_on_loopback(&port);
	ST_CHECK(l >= 0, "listen: %s", strerror(errno));
	ST_CHECK(write(report_fd, &port, sizeof(port)) == sizeof(port), "report port");
	close(report_fd);
	int s = accept(l, NULL, NULL);
	ST_CHECK(s >= 0, "accept: %s", strerror(errno));
	close(l);
	int rc = echo_until_eof(s);
	close(s);
	return rc;
}

static int role_client(uint16_t port, size_t len)
{
	char out[4096], in[4096];
	int fd = st_connect(port);
	ST_CHECK(fd >= 0, "connect to %u: %s", port, strerror(errno));
	for (size_t pos = 0; pos < len; pos += sizeof(out)) {
		size_t n = len - pos < sizeof(out) ? len - pos : sizeof(out);
		st_pattern_fill(out, n, 7, pos);
		ST_CHECK(st_write_full(fd, out, n) == (ssize_t)n, "write: %s", strerror(errno));
		ST_CHECK(st_read_full(fd, in, n) == (ssize_t)n, "echo of %zu bytes at %zu", n, pos);
		ST_CHECK(memcmp(in, out, n) == 0, "echoed bytes differ at %zu", pos);
	}
	ST_CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
	ST_CHECK(read(fd, in, sizeof(in)) == 0, "want end of file after the echo");
	close(fd);
	return 0;
}

__attribute__((constructor)) static void st_role(void)
{
	const char *role = getenv("ST_ROLE");
	const char *fd = getenv("ST_FD");
	const char *port = getenv("ST_PORT");
	const char *len = getenv("ST_LEN");
	int rc = 2;

	if (!role)
		return;
	alarm(ST_WATCHDOG_S - 2);
	if (!strcmp(role, "echo") && fd)
		rc = echo_until_eof(atoi(fd));
	else if (!strcmp(role, "closed") && fd)
		rc = fcntl(atoi(fd), F_GETFD) == -1 && errno == EBADF ? 0 : 1;
	else if (!strcmp(role, "server") && fd)
		rc = role_server(atoi(fd));
	else if (!strcmp(role, "client") && port && len)
		rc = role_client((uint16_t)atoi(port), (size_t)atol(len));
	else
		fprintf(stderr, "test_semantics: unknown role or missing variables: %s\n", role);
	fflush(NULL);
	_exit(rc);
}
