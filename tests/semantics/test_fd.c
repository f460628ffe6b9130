/*
 * test_fd.c - the socket as a file descriptor: flags through fcntl, accept4
 * and ioctl, FIONREAD, the dup family, identity (fstat, fd numbers, no
 * leaks), exec, and peers that run without any socket shim.
 */
#include "sem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* F_GETFL reads back exactly O_RDWR, then O_RDWR|O_NONBLOCK after F_SETFL,
 * and O_RDWR again after clearing it; reads follow the flag. */
ST_TEST(fd, fcntl_nonblock_exact)
{
	int c, s;
	char b[4];
	st_pair(&c, &s);
	int fds[] = { c, s };
	for (int i = 0; i < 2; i++) {
		int fd = fds[i];
		cr_assert_eq(fcntl(fd, F_GETFL), O_RDWR, "fd %d: F_GETFL %#x", fd, fcntl(fd, F_GETFL));
		cr_assert_eq(fcntl(fd, F_SETFL, O_RDWR | O_NONBLOCK), 0);
		cr_assert_eq(fcntl(fd, F_GETFL), O_RDWR | O_NONBLOCK, "F_GETFL %#x",
			     fcntl(fd, F_GETFL));
		cr_assert_eq(read(fd, b, sizeof(b)), -1);
		cr_assert_eq(errno, EAGAIN);
		cr_assert_eq(fcntl(fd, F_SETFL, O_RDWR), 0);
		cr_assert_eq(fcntl(fd, F_GETFL), O_RDWR, "F_GETFL %#x", fcntl(fd, F_GETFL));
		cr_assert_eq(fcntl(fd, F_GETFD), 0);
	}
	close(c);
	close(s);
}

/* TCP_NODELAY reads back as the program set it (off on a fresh socket), on
 * both ends, and data flows after each change. */
ST_TEST(fd, tcp_nodelay_reads_back)
{
	int c, s;
	char b[1];
	st_pair(&c, &s);
	int fds[] = { c, s };
	for (int i = 0; i < 2; i++) {
		int fd = fds[i], peer = fds[1 - i];
		int steps[] = { -1, 1, 0 }; /* -1: as created */
		for (int k = 0; k < 3; k++) {
			if (steps[k] >= 0)
				cr_assert_eq(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &steps[k],
							sizeof(int)), 0);
			int v = -1;
			socklen_t l = sizeof(v);
			cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l), 0);
			cr_assert_eq(l, sizeof(int));
			cr_assert_eq(!!v, steps[k] == 1, "fd %d: TCP_NODELAY reads %d at step %d", fd,
				     v, k);
			cr_assert_eq(write(fd, "x", 1), 1);
			cr_assert_eq(read(peer, b, 1), 1);
		}
	}
	close(c);
	close(s);
}

/* accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) returns a socket whose F_GETFL has
 * O_NONBLOCK and whose F_GETFD is FD_CLOEXEC, and that behaves so. */
ST_TEST(fd, accept4_flags)
{
	uint16_t port;
	char b[4];
	int l = st_listen(&port);
	int c = st_connect(port);
	cr_assert(c >= 0);
	cr_assert(st_wait_fd(l, POLLIN, ST_WAIT_MS) & POLLIN);
	int s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	cr_assert(s >= 0, "accept4: %s", strerror(errno));
	cr_assert_eq(fcntl(s, F_GETFL), O_RDWR | O_NONBLOCK, "F_GETFL %#x", fcntl(s, F_GETFL));
	cr_assert_eq(fcntl(s, F_GETFD), FD_CLOEXEC);
	cr_assert_eq(read(s, b, sizeof(b)), -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(write(c, "ok", 2), 2);
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(read(s, b, sizeof(b)), 2);
	close(c);
	close(s);
	close(l);
}

/* A non-blocking listener: accept fails with EAGAIN when nothing is
 * pending, and the socket it accepts later is blocking (O_NONBLOCK is not
 * inherited from the listener on Linux) and not close-on-exec. */
ST_TEST(fd, accept_from_nonblocking_listener)
{
	uint16_t port;
	int l = st_listen(&port);
	st_set_nonblock(l, 1);
	cr_assert_eq(accept(l, NULL, NULL), -1);
	cr_assert_eq(errno, EAGAIN, "accept failed with %s", strerror(errno));
	int c = st_connect(port);
	cr_assert(c >= 0);
	cr_assert(st_wait_fd(l, POLLIN, ST_WAIT_MS) & POLLIN);
	int s = accept(l, NULL, NULL);
	cr_assert(s >= 0, "accept: %s", strerror(errno));
	cr_assert_eq(fcntl(s, F_GETFL), O_RDWR, "F_GETFL %#x", fcntl(s, F_GETFL));
	cr_assert_eq(fcntl(s, F_GETFD), 0);
	close(c);
	close(s);
	close(l);
}

/* socket(SOCK_NONBLOCK|SOCK_CLOEXEC) makes a socket with exactly those
 * flags, and the connection made from it keeps them. */
ST_TEST(fd, socket_type_flags)
{
	uint16_t port;
	int l = st_listen(&port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert(fd >= 0);
	cr_assert_eq(fcntl(fd, F_GETFL), O_RDWR | O_NONBLOCK);
	cr_assert_eq(fcntl(fd, F_GETFD), FD_CLOEXEC);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	cr_assert(r == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
	cr_assert(st_wait_fd(fd, POLLOUT, ST_WAIT_MS) & POLLOUT);
	int s = st_accept(l);
	cr_assert_eq(fcntl(fd, F_GETFL), O_RDWR | O_NONBLOCK);
	cr_assert_eq(fcntl(fd, F_GETFD), FD_CLOEXEC);
	close(fd);
	close(s);
	close(l);
}

/* ioctl(FIONBIO) sets and clears O_NONBLOCK as F_GETFL sees it. */
ST_TEST(fd, ioctl_fionbio)
{
	int c, s, on = 1, off = 0;
	char b[4];
	st_pair(&c, &s);
	cr_assert_eq(ioctl(s, FIONBIO, &on), 0);
	cr_assert_eq(fcntl(s, F_GETFL), O_RDWR | O_NONBLOCK);
	cr_assert_eq(read(s, b, sizeof(b)), -1);
	cr_assert_eq(errno, EAGAIN);
	cr_assert_eq(ioctl(s, FIONBIO, &off), 0);
	cr_assert_eq(fcntl(s, F_GETFL), O_RDWR);
	close(c);
	close(s);
}

/* ioctl(FIONREAD) equals the bytes waiting to be read, as they are read. */
ST_TEST(fd, ioctl_fionread)
{
	int c, s, n = -1;
	char b[123];
	st_pair(&c, &s);
	cr_assert_eq(ioctl(s, FIONREAD, &n), 0);
	cr_assert_eq(n, 0);
	st_pattern_fill(b, sizeof(b), 10, 0);
	cr_assert_eq(write(c, b, sizeof(b)), 123);
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(ioctl(s, FIONREAD, &n), 0);
	cr_assert_eq(n, 123, "FIONREAD %d", n);
	cr_assert_eq(read(s, b, 23), 23);
	cr_assert_eq(ioctl(s, FIONREAD, &n), 0);
	cr_assert_eq(n, 100, "FIONREAD %d", n);
	cr_assert_eq(st_read_full(s, b, 100), 100);
	cr_assert_eq(ioctl(s, FIONREAD, &n), 0);
	cr_assert_eq(n, 0, "FIONREAD %d", n);
	close(c);
	close(s);
}

/* The dup rule, for one way of duplicating: data written via the duplicate
 * arrives; after closing the original the duplicate still writes and reads;
 * after closing both the peer reads end of file. */
static void dup_rule(int (*dupfn)(int fd), int want_cloexec)
{
	int c, s;
	char b[16];
	st_pair(&c, &s);
	int d = dupfn(c);
	cr_assert(d >= 0 && d != c, "duplicate: %d (%s)", d, strerror(errno));
	cr_assert_eq(fcntl(d, F_GETFD), want_cloexec ? FD_CLOEXEC : 0);
	cr_assert_eq(fcntl(d, F_GETFL), O_RDWR);
	cr_assert_eq(write(d, "via-dup", 7), 7);
	cr_assert_eq(st_read_full(s, b, 7), 7);
	cr_assert_arr_eq(b, "via-dup", 7);
	cr_assert_eq(write(c, "orig", 4), 4);
	cr_assert_eq(st_read_full(s, b, 4), 4);
	cr_assert_arr_eq(b, "orig", 4);
	cr_assert_eq(close(c), 0);
	cr_assert_eq(st_wait_fd(s, POLLIN, 50), 0, "closing one copy ended the connection");
	cr_assert_eq(write(d, "still", 5), 5);
	cr_assert_eq(st_read_full(s, b, 5), 5);
	cr_assert_arr_eq(b, "still", 5);
	cr_assert_eq(write(s, "back", 4), 4);
	cr_assert_eq(st_read_full(d, b, 4), 4);
	cr_assert_arr_eq(b, "back", 4);
	cr_assert_eq(close(d), 0);
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(read(s, b, sizeof(b)), 0, "no end of file after closing both");
	close(s);
}

static int by_dup(int fd)
{
	return dup(fd);
}

/* Target fd for dup2/dup3: an open file, which they must close silently. */
static int open_target(void)
{
	int t = open("/dev/null", O_RDONLY);
	cr_assert(t >= 0);
	return t;
}

static int by_dup2(int fd)
{
	int t = open_target();
	int r = dup2(fd, t);
	cr_assert_eq(r, t);
	return r;
}

static int by_dup3(int fd)
{
	int t = open_target();
	int r = dup3(fd, t, O_CLOEXEC);
	cr_assert_eq(r, t);
	return r;
}

static int by_f_dupfd(int fd)
{
	int r = fcntl(fd, F_DUPFD, 100);
	cr_assert_geq(r, 100, "F_DUPFD 100 gave %d", r);
	return r;
}

static int by_f_dupfd_cloexec(int fd)
{
	int r = fcntl(fd, F_DUPFD_CLOEXEC, 50);
	cr_assert_geq(r, 50, "F_DUPFD_CLOEXEC 50 gave %d", r);
	return r;
}

/* dup: the duplicate carries the connection on its own (see dup_rule). */
ST_TEST(fd, dup)
{
	dup_rule(by_dup, 0);
}

/* dup2 onto an open fd: the duplicate carries the connection on its own. */
ST_TEST(fd, dup2)
{
	dup_rule(by_dup2, 0);
}

/* dup3(O_CLOEXEC): the duplicate is close-on-exec and carries the
 * connection on its own. */
ST_TEST(fd, dup3)
{
	dup_rule(by_dup3, 1);
}

/* fcntl(F_DUPFD, 100): a duplicate numbered >= 100 carries the connection. */
ST_TEST(fd, f_dupfd)
{
	dup_rule(by_f_dupfd, 0);
}

/* fcntl(F_DUPFD_CLOEXEC, 50): likewise, and close-on-exec. */
ST_TEST(fd, f_dupfd_cloexec)
{
	dup_rule(by_f_dupfd_cloexec, 1);
}

/* dup2 onto an fd that holds another connection closes that connection
 * (its peer reads end of file); the target then carries the first one. */
ST_TEST(fd, dup2_onto_open_socket)
{
	int c1, s1, c2, s2;
	char b[8];
	st_pair(&c1, &s1);
	st_pair(&c2, &s2);
	cr_assert_eq(dup2(c1, c2), c2);
	cr_assert(st_wait_fd(s2, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(read(s2, b, sizeof(b)), 0, "the replaced connection did not end");
	cr_assert_eq(write(c2, "one", 3), 3);
	cr_assert_eq(st_read_full(s1, b, 3), 3);
	cr_assert_arr_eq(b, "one", 3);
	cr_assert_eq(dup2(c2, c2), c2, "dup2 onto itself");
	cr_assert_eq(write(c2, "two", 3), 3);
	cr_assert_eq(st_read_full(s1, b, 3), 3);
	close(c1);
	close(c2);
	close(s1);
	close(s2);
}

/* A socket is a real kernel fd: fstat says socket, getsockopt says TCP over
 * IPv4, SO_ACCEPTCONN tells the listener apart. */
ST_TEST(fd, identity)
{
	uint16_t port;
	int l = st_listen(&port);
	int c = st_connect(port);
	cr_assert(c >= 0);
	int s = st_accept(l);
	int fds[] = { l, c, s };
	for (int i = 0; i < 3; i++) {
		struct stat st;
		int v;
		socklen_t len = sizeof(v);
		cr_assert_eq(fstat(fds[i], &st), 0);
		cr_assert(S_ISSOCK(st.st_mode), "fd %d: mode %o", fds[i], st.st_mode);
		cr_assert_lt(fds[i], FD_SETSIZE);
		cr_assert_eq(getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &v, &len), 0);
		cr_assert_eq(v, SOCK_STREAM);
		cr_assert_eq(getsockopt(fds[i], SOL_SOCKET, SO_DOMAIN, &v, &len), 0);
		cr_assert_eq(v, AF_INET);
		cr_assert_eq(getsockopt(fds[i], SOL_SOCKET, SO_PROTOCOL, &v, &len), 0);
		cr_assert_eq(v, IPPROTO_TCP);
		cr_assert_eq(getsockopt(fds[i], SOL_SOCKET, SO_ACCEPTCONN, &v, &len), 0);
		cr_assert_eq(v, i == 0, "SO_ACCEPTCONN %d on fd %d", v, fds[i]);
	}
	close(c);
	close(s);
	close(l);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	cr_assert(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void one_connection(void)
{
	int c, s;
	char b[4];
	st_pair(&c, &s);
	cr_assert_eq(write(c, "abc", 3), 3);
	cr_assert_eq(st_read_full(s, b, 3), 3);
	cr_assert_eq(write(s, "def", 3), 3);
	cr_assert_eq(st_read_full(c, b, 3), 3);
	close(c);
	close(s);
}

/* New sockets take the lowest free fd number, and opening and closing
 * connections leaves no fds behind. */
ST_TEST(fd, lowest_fd_and_no_leak)
{
	one_connection(); /* anything a process sets up once is done now */
	int before = count_fds();
	for (int i = 0; i < 10; i++)
		one_connection();
	int after = count_fds();
	cr_assert_eq(after, before, "%d fds open before 10 connections, %d after", before, after);
	int probe = open("/dev/null", O_RDONLY);
	cr_assert(probe >= 0);
	close(probe);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(fd, probe, "socket() gave fd %d, lowest free is %d", fd, probe);
	close(fd);
}

/* The fds of this process that are open now, as a bitmap of the first 1024. */
static void open_fds(unsigned char map[1024])
{
	memset(map, 0, 1024);
	DIR *d = opendir("/proc/self/fd");
	cr_assert(d);
	int dfd = dirfd(d);
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			int fd = atoi(de->d_name);
			if (fd >= 0 && fd < 1024 && fd != dfd)
				map[fd] = 1;
		}
	closedir(d);
}

/* The small fd numbers are the program's: after a connection is made,
 * nothing the program did not open itself holds a number below 64 (a
 * program that dup2()s onto a small number, or expects open() to return
 * the lowest free one, must not find a stranger there). */
ST_TEST(fd, small_fd_numbers_are_the_programs)
{
	unsigned char before[1024], now[1024];
	int c, s;
	open_fds(before);
	st_pair(&c, &s);
	cr_assert_eq(write(c, "x", 1), 1);
	cr_assert_eq(st_read_full(s, (char[1]){ 0 }, 1), 1);
	open_fds(now);
	for (int fd = 0; fd < 64; fd++)
		cr_assert(!now[fd] || before[fd] || fd == c || fd == s,
			  "fd %d is open and the program did not open it", fd);
	close(c);
	close(s);
}

/* fds the program replaces behind any library's back stay the program's:
 * every fd that appeared with a first connection (and that the program
 * does not know) is replaced with a pipe by dup2, as sshd does over fd
 * numbers it does not know are taken. New connections still carry data
 * both ways, and every replaced fd is still open and still the program's
 * pipe. */
ST_TEST(fd, replaced_fds_stay_the_programs)
{
	unsigned char before[1024], now[1024];
	int c, s, p[2];
	open_fds(before);
	one_connection();
	open_fds(now);
	cr_assert_eq(pipe(p), 0);
	int replaced[16], n = 0;
	for (int fd = 3; fd < 1024 && n < 16; fd++)
		if (now[fd] && !before[fd] && fd != p[0] && fd != p[1]) {
			cr_assert_eq(dup2(p[1], fd), fd, "dup2 onto %d: %s", fd, strerror(errno));
			replaced[n++] = fd;
		}
	for (int i = 0; i < 3; i++)
		one_connection();
	st_pair(&c, &s);
	cr_assert_eq(write(c, "ping", 4), 4);
	char b[5] = { 0 };
	cr_assert_eq(st_read_full(s, b, 4), 4);
	cr_assert_str_eq(b, "ping");
	close(c);
	close(s);
	for (int i = 0; i < n; i++) {
		struct stat st;
		cr_assert_eq(fstat(replaced[i], &st), 0, "fd %d was closed: %s", replaced[i],
			     strerror(errno));
		cr_assert(S_ISFIFO(st.st_mode), "fd %d is no longer the pipe", replaced[i]);
		cr_assert_eq(write(replaced[i], "k", 1), 1);
		cr_assert_eq(read(p[0], b, 1), 1);
		cr_assert_eq(b[0], 'k');
		close(replaced[i]);
	}
	close(p[0]);
	close(p[1]);
}

/* A connected socket survives exec: a program exec'd with it as an fd
 * echoes what arrives, and end of file passes through. */
ST_TEST(fd, socket_survives_exec)
{
	int c, s;
	char var[32], out[4096], in[4096];
	st_pair(&c, &s);
	snprintf(var, sizeof(var), "ST_FD=%d", s);
	const char *env[] = { var, NULL };
	pid_t pid = st_spawn_role("echo", env, 1);
	close(s);
	for (int i = 0; i < 25; i++) {
		st_pattern_fill(out, sizeof(out), 11, 4096u * (unsigned)i);
		cr_assert_eq(st_write_full(c, out, sizeof(out)), (ssize_t)sizeof(out));
		cr_assert_eq(st_read_full(c, in, sizeof(in)), (ssize_t)sizeof(in), "echo %d", i);
		cr_assert_arr_eq(in, out, sizeof(in), "echo %d differs", i);
	}
	cr_assert_eq(shutdown(c, SHUT_WR), 0);
	cr_assert(st_wait_fd(c, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(read(c, in, sizeof(in)), 0);
	st_assert_child_ok(pid);
	close(c);
}

/* A close-on-exec socket is closed by exec: the new program does not have
 * it, and the peer reads end of file once no other copy is left. */
ST_TEST(fd, cloexec_socket_closed_by_exec)
{
	int c, s;
	char var[32], b[4];
	st_pair(&c, &s);
	cr_assert_eq(fcntl(s, F_SETFD, FD_CLOEXEC), 0);
	snprintf(var, sizeof(var), "ST_FD=%d", s);
	const char *env[] = { var, NULL };
	pid_t pid = st_spawn_role("closed", env, 1);
	close(s);
	st_assert_child_ok(pid);
	cr_assert(st_wait_fd(c, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(read(c, b, sizeof(b)), 0);
	close(c);
}

/* A client process without any socket shim (no LD_PRELOAD) is served by
 * this process: 100 kB echoed, then end of file both ways. */
ST_TEST(fd, client_without_shim)
{
	uint16_t port;
	char var[32], buf[16384];
	int l = st_listen(&port);
	snprintf(var, sizeof(var), "ST_PORT=%u", port);
	const char *env[] = { var, "ST_LEN=100000", NULL };
	pid_t pid = st_spawn_role("client", env, 0);
	int s = st_accept(l);
	close(l);
	size_t total = 0;
	for (;;) {
		ssize_t r = read(s, buf, sizeof(buf));
		cr_assert(r >= 0, "read: %s", strerror(errno));
		if (r == 0)
			break;
		cr_assert_eq(st_write_full(s, buf, (size_t)r), r);
		total += (size_t)r;
	}
	cr_assert_eq(total, 100000);
	close(s);
	st_assert_child_ok(pid);
}

/* A server process without any socket shim serves this process: 100 kB in
 * 4 KiB pieces echoed, then end of file. */
ST_TEST(fd, server_without_shim)
{
	int p[2];
	char var[32], out[4096], in[4096];
	uint16_t port;
	cr_assert_eq(pipe(p), 0);
	snprintf(var, sizeof(var), "ST_FD=%d", p[1]);
	const char *env[] = { var, NULL };
	pid_t pid = st_spawn_role("server", env, 0);
	close(p[1]);
	cr_assert(st_wait_fd(p[0], POLLIN, ST_WAIT_MS) & POLLIN, "server did not start");
	cr_assert_eq(read(p[0], &port, sizeof(port)), (ssize_t)sizeof(port));
	close(p[0]);
	int c = st_connect(port);
	cr_assert(c >= 0, "connect: %s", strerror(errno));
	for (size_t pos = 0; pos < 100000; pos += sizeof(out)) {
		size_t n = 100000 - pos < sizeof(out) ? 100000 - pos : sizeof(out);
		st_pattern_fill(out, n, 12, pos);
		cr_assert_eq(st_write_full(c, out, n), (ssize_t)n);
		cr_assert_eq(st_read_full(c, in, n), (ssize_t)n);
		cr_assert_arr_eq(in, out, n);
	}
	cr_assert_eq(shutdown(c, SHUT_WR), 0);
	cr_assert(st_wait_fd(c, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(read(c, in, sizeof(in)), 0);
	close(c);
	st_assert_child_ok(pid);
}
