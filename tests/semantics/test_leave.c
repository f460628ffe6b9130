/*
 * test_leave.c - what programs do with a connected socket that bypasses a
 * socket shim (issue 7): stdio on the socket (dup2 onto stdout or stdin,
 * fdopen), exec with the socket as stdin and stdout (with and without the
 * shim in the new program), a seccomp filter installed after connect, one
 * connection written and read by two processes after fork, and urgent
 * data; and waiting for room to write on a connection whose peer has
 * left. Over the kernel these are plain TCP; under the shim each must
 * behave the same, which it can only do by moving the connection back to
 * kernel TCP at the right byte offset.
 *
 * Under run.sh's xio mode, each test also says which process must report a
 * connection moved back to TCP, why, and at which offsets (st_expect_left);
 * run.sh checks those against the shim's xio-left lines. The offsets are
 * the bytes the process had written (tx) and read (rx) through the shim
 * before the move; every test quiesces the connection before the moment
 * of the move, so they are exact.
 */
#include "sem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

extern char **environ;

/* Read exactly len bytes (bounded by the watchdog) and compare. */
static void expect_bytes(int fd, const char *want)
{
	size_t len = strlen(want);
	char buf[512];
	cr_assert(len < sizeof(buf));
	ssize_t r = st_read_full(fd, buf, len);
	cr_assert_eq(r, (ssize_t)len, "read %zd of %zu bytes (%s)", r, len,
		     r < 0 ? strerror(errno) : "end of file");
	buf[len] = 0;
	cr_assert_str_eq(buf, want, "got '%s', want '%s'", buf, want);
}

static void expect_eof(int fd)
{
	char b;
	cr_assert(st_wait_fd(fd, POLLIN, ST_WAIT_MS) & POLLIN, "no end of file within %d ms",
		  ST_WAIT_MS);
	ssize_t r = read(fd, &b, 1);
	cr_assert_eq(r, 0, "want end of file, read returned %zd (%s)", r,
		     r < 0 ? strerror(errno) : "a byte");
}

/* --- stdio on a socket ------------------------------------------------ */

/* The peer of the stdio tests: read everything to end of file and compare
 * it with arg. */
static int read_all_expect(int fd, void *arg)
{
	const char *want = arg;
	char buf[512];
	/* First the one byte that tells the test the peer is there and has
	 * read the bytes written before the switch. */
	ST_CHECK(st_read_full(fd, buf, 6) == 6, "first 6 bytes: %s", strerror(errno));
	ST_CHECK(write(fd, "k", 1) == 1, "ack: %s", strerror(errno));
	ssize_t n = st_read_to_eof(fd, buf + 6, sizeof(buf) - 7);
	ST_CHECK(n >= 0, "read: %s", strerror(errno));
	buf[6 + n] = 0;
	ST_CHECK(strcmp(buf, want) == 0, "got '%s', want '%s'", buf, want);
	return 0;
}

/* A server that does dup2(sock, 1) and printf: the client reads the bytes
 * printf wrote, in order after those written with write() before, and the
 * ones written with write() after. */
ST_TEST(leave, stdio_dup2_stdout_printf)
{
	pid_t pid;
	char k;
	int s = st_peer_start(&pid, read_all_expect, "first:hello 42\nlast\n");
	cr_assert_eq(write(s, "first:", 6), 6);
	cr_assert_eq(st_read_full(s, &k, 1), 1, "the peer's ack");
	fflush(stdout);
	int saved = dup(1);
	cr_assert(saved >= 0);
	cr_assert_eq(dup2(s, 1), 1);
	st_expect_left(getpid(), "stdio", 6, 1);
	printf("hello %d\n", 42);
	cr_assert_eq(fflush(stdout), 0, "fflush: %s", strerror(errno));
	cr_assert_eq(dup2(saved, 1), 1);
	close(saved);
	cr_assert_eq(write(s, "last\n", 5), 5);
	close(s);
	st_assert_child_ok(pid);
}

/* fdopen(sock, "w") and fprintf: the same. */
ST_TEST(leave, stdio_fdopen_fprintf)
{
	pid_t pid;
	char k;
	int s = st_peer_start(&pid, read_all_expect, "begin:n=7 s=seven\nend\n");
	cr_assert_eq(write(s, "begin:", 6), 6);
	cr_assert_eq(st_read_full(s, &k, 1), 1, "the peer's ack");
	FILE *f = fdopen(s, "w");
	cr_assert(f, "fdopen: %s", strerror(errno));
	st_expect_left(getpid(), "stdio", 6, 1);
	cr_assert_gt(fprintf(f, "n=%d s=%s\n", 7, "seven"), 0);
	cr_assert_eq(fflush(f), 0, "fflush: %s", strerror(errno));
	cr_assert_eq(write(s, "end\n", 4), 4);
	cr_assert_eq(fclose(f), 0); /* closes s */
	st_assert_child_ok(pid);
}

/* The peer of stdio_dup2_stdin: send a line at once, then more once told. */
static int send_lines(int fd, void *arg)
{
	(void)arg;
	char buf[64];
	ST_CHECK(write(fd, "line one\n", 9) == 9, "write: %s", strerror(errno));
	ST_CHECK(st_read_full(fd, buf, 13) == 13, "ack: %s", strerror(errno));
	buf[13] = 0;
	ST_CHECK(strcmp(buf, "ack:line one\n") == 0, "got '%s'", buf);
	ST_CHECK(write(fd, "7 8\n", 4) == 4, "write: %s", strerror(errno));
	ST_CHECK(st_read_full(fd, buf, 7) == 7, "sum: %s", strerror(errno));
	buf[7] = 0;
	ST_CHECK(strcmp(buf, "sum=15\n") == 0, "got '%s'", buf);
	ST_CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
	ST_CHECK(read(fd, buf, 1) == 0, "want end of file");
	return 0;
}

/* dup2(sock, 0), then fgets and scanf on stdin: they read what the client
 * sent, including the line it sent before the dup2 (already arrived, not
 * yet read: under the shim, still in the channel). */
ST_TEST(leave, stdio_dup2_stdin_fgets_scanf)
{
	pid_t pid;
	char line[64];
	int a = 0, b = 0;
	int s = st_peer_start(&pid, send_lines, NULL);
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN, "the first line did not come");
	st_sleep_ms(20); /* all 9 bytes of it */
	int saved = dup(0);
	cr_assert(saved >= 0);
	cr_assert_eq(dup2(s, 0), 0);
	st_expect_left(getpid(), "stdio", 0, 0);
	clearerr(stdin);
	cr_assert(fgets(line, sizeof(line), stdin), "fgets: %s", strerror(errno));
	cr_assert_str_eq(line, "line one\n");
	char ack[80];
	snprintf(ack, sizeof(ack), "ack:%s", line);
	cr_assert_eq(write(s, ack, strlen(ack)), (ssize_t)strlen(ack));
	cr_assert_eq(scanf("%d %d", &a, &b), 2, "scanf: %s", strerror(errno));
	cr_assert_eq(a + b, 15, "scanf read %d and %d", a, b);
	cr_assert_eq(write(s, "sum=15\n", 7), 7);
	cr_assert_eq(dup2(saved, 0), 0);
	close(saved);
	clearerr(stdin);
	shutdown(s, SHUT_WR);
	expect_eof(s);
	close(s);
	st_assert_child_ok(pid);
}

/* --- exec with the socket as stdin and stdout -------------------------- */

/* Fork a child that waits until the bytes sent so far have arrived, puts s
 * on its stdin and stdout and execs sh -c script, with LD_PRELOAD kept
 * (with_shim) or removed from its environment. */
static pid_t exec_on_socket(int s, const char *script, int with_shim)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **envp = calloc(n + 1, sizeof(*envp));
	cr_assert(envp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (!strncmp(environ[i], "BXFI_", 5))
			continue; /* not a Criterion worker */
		if (!with_shim && !strncmp(environ[i], "LD_PRELOAD=", 11))
			continue;
		envp[k++] = environ[i];
	}
	envp[k] = NULL;
	pid_t parent = getpid();
	fflush(NULL);
	pid_t p = fork();
	cr_assert(p >= 0);
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		alarm(ST_WATCHDOG_S - 2);
		if (!(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN))
			_exit(98);
		st_sleep_ms(20);
		/* Without the shim in the new program, the kernel must
		 * carry the connection from its first byte on (dup2 onto
		 * stdin and stdout may be what moves it, or the exec). */
		if (!with_shim)
			st_expect_left(getpid(), "stdio|exec", 0, 0);
		if (dup2(s, 0) != 0 || dup2(s, 1) != 1)
			_exit(97);
		close(s);
		char *argv[] = { "sh", "-c", (char *)script, NULL };
		execve("/bin/sh", argv, envp);
		_exit(127);
	}
	free(envp);
	return p;
}

static void exec_both_ways(int with_shim)
{
	int c, s;
	st_pair(&c, &s);
	/* Sent before the exec: the new program must read it. */
	cr_assert_eq(write(c, "before\n", 7), 7);
	pid_t pid = exec_on_socket(s, "read l; echo got:$l; exec cat", with_shim);
	close(s);
	expect_bytes(c, "got:before\n");
	cr_assert_eq(write(c, "after the exec\n", 15), 15);
	expect_bytes(c, "after the exec\n");
	char big[8192];
	st_pattern_fill(big, sizeof(big), 5, 0);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + (unsigned char)big[i] % 26);
	big[sizeof(big) - 1] = '\n';
	cr_assert_eq(st_write_full(c, big, sizeof(big)), (ssize_t)sizeof(big));
	char back[8192];
	cr_assert_eq(st_read_full(c, back, sizeof(back)), (ssize_t)sizeof(back));
	cr_assert_arr_eq(back, big, sizeof(big), "cat's echo of 8 KiB differs");
	cr_assert_eq(shutdown(c, SHUT_WR), 0);
	expect_eof(c);
	close(c);
	int rc = st_wait(pid, ST_WAIT_MS);
	cr_assert_eq(rc, 0, "sh exited with %d", rc);
}

/* exec of sh with the socket as stdin and stdout, the shim loaded in it:
 * it reads the line sent before the exec and answers; cat then echoes both
 * ways until the client's half-close. */
ST_TEST(leave, exec_stdin_stdout_with_shim)
{
	exec_both_ways(1);
}

/* The same with a program started without the shim (LD_PRELOAD removed
 * from its environment): it can only use the kernel socket, so the
 * connection must be back on TCP before the exec, with the line still
 * unread. */
ST_TEST(leave, exec_stdin_stdout_without_shim)
{
	exec_both_ways(0);
}

/* --- seccomp after connect --------------------------------------------- */

#if defined(__x86_64__)
#define ST_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#define KILL_IF(nr)                                                     \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),                \
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS)

/* A filter as sandboxes install them: the socket's own calls and every
 * way to wait on an fd kill the process; read, write and the rest pass. */
static int install_filter(void)
{
#ifdef ST_AUDIT_ARCH
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ST_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		KILL_IF(__NR_sendto),
		KILL_IF(__NR_recvfrom),
		KILL_IF(__NR_sendmsg),
		KILL_IF(__NR_recvmsg),
		KILL_IF(__NR_sendmmsg),
		KILL_IF(__NR_recvmmsg),
		KILL_IF(__NR_ppoll),
		KILL_IF(__NR_pselect6),
		KILL_IF(__NR_epoll_pwait),
		KILL_IF(__NR_epoll_ctl),
#ifdef __NR_poll
		KILL_IF(__NR_poll),
		KILL_IF(__NR_select),
		KILL_IF(__NR_epoll_wait),
#endif
		KILL_IF(__NR_getsockopt),
		KILL_IF(__NR_setsockopt),
		KILL_IF(__NR_shutdown),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
#else
	errno = ENOSYS;
	return -1;
#endif
}

#define ECHO_ROUNDS 20
#define ECHO_LEN 100

/* The seccomp peer: echo ECHO_ROUNDS records, install the filter, echo
 * ECHO_ROUNDS more with read() and write() (the test waits between them, so
 * the reads block), then exit through exit() (so that the shim, if any,
 * writes its statistics) - but not under AddressSanitizer, whose leak check
 * at exit stops the world with calls the filter kills (the process hangs
 * or dies of SIGSYS: not what this rule is about). */
static int echo_then_seccomp(int fd, void *arg)
{
	int *ready = arg; /* a pipe: "the filter is in place" */
	char buf[ECHO_LEN];
	close(ready[0]);
	for (int i = 0; i < ECHO_ROUNDS; i++) {
		ST_CHECK(st_read_full(fd, buf, sizeof(buf)) == sizeof(buf), "read %d", i);
		ST_CHECK(st_write_full(fd, buf, sizeof(buf)) == sizeof(buf), "write %d", i);
	}
	st_expect_left(getpid(), "seccomp", ECHO_ROUNDS * ECHO_LEN, ECHO_ROUNDS * ECHO_LEN);
	ST_CHECK(install_filter() == 0, "seccomp filter: %s", strerror(errno));
	st_post(ready[1]);
	for (int i = 0; i < ECHO_ROUNDS; i++) {
		ST_CHECK(st_read_full(fd, buf, sizeof(buf)) == sizeof(buf), "read %d after", i);
		ST_CHECK(st_write_full(fd, buf, sizeof(buf)) == sizeof(buf), "write %d after", i);
	}
	ST_CHECK(st_read_full(fd, buf, 1) == 0, "want end of file");
	close(fd);
	fflush(NULL);
#if defined(__SANITIZE_ADDRESS__)
	_exit(0);
#else
	exit(0);
#endif
}

/* After connect and some traffic, the process installs a seccomp filter
 * that kills it on sendto, recvfrom, sendmsg, recvmsg, poll and the like,
 * but allows read and write: read and write on the socket keep working
 * both ways, including reads that have to wait. */
ST_TEST(leave, seccomp_after_connect)
{
#ifndef ST_AUDIT_ARCH
	cr_skip_test("no seccomp architecture constant for this machine");
#endif
	pid_t pid;
	char out[ECHO_LEN], in[ECHO_LEN];
	int ready[2];
	cr_assert_eq(pipe(ready), 0);
	int s = st_peer_start(&pid, echo_then_seccomp, ready);
	close(ready[1]);
	for (int i = 0; i < 2 * ECHO_ROUNDS; i++) {
		st_pattern_fill(out, sizeof(out), 11, (uint64_t)i * ECHO_LEN);
		if (i == ECHO_ROUNDS)
			cr_assert(st_await(ready[0], ST_WAIT_MS), "the peer did not install its filter");
		if (i >= ECHO_ROUNDS)
			st_sleep_ms(i % 4 == 0 ? 30 : 1); /* the peer waits in read() */
		cr_assert_eq(st_write_full(s, out, sizeof(out)), (ssize_t)sizeof(out));
		cr_assert_eq(st_read_full(s, in, sizeof(in)), (ssize_t)sizeof(in),
			     "echo %d: %s", i, strerror(errno));
		cr_assert_arr_eq(in, out, sizeof(out), "echo %d differs", i);
	}
	shutdown(s, SHUT_WR);
	close(s);
	close(ready[0]);
	int rc = st_wait(pid, ST_WAIT_MS);
	cr_assert_eq(rc, 0, "the sandboxed peer exited with %d%s", rc,
		     rc == 128 + SIGSYS ? " (SIGSYS: a system call its filter forbids)" : "");
}

/* --- one connection, two processes after fork ------------------------- */

#define REC_LEN 256
#define RECS 400

/* Record i of writer w: "w <w> <i> " then a pattern, then a checksum. */
static void make_record(char *r, int w, int i)
{
	memset(r, 0, REC_LEN);
	int h = snprintf(r, REC_LEN, "w %d %05d ", w, i);
	st_pattern_fill(r + h, REC_LEN - h - 8, (uint64_t)w, (uint64_t)i * REC_LEN);
	uint64_t sum = st_fnv1a(r, REC_LEN - 8, ST_FNV_INIT);
	memcpy(r + REC_LEN - 8, &sum, 8);
}

static int record_ok(const char *r, int *w, int *i)
{
	uint64_t sum;
	memcpy(&sum, r + REC_LEN - 8, 8);
	if (sum != st_fnv1a(r, REC_LEN - 8, ST_FNV_INIT))
		return 0;
	return sscanf(r, "w %d %d ", w, i) == 2;
}

/* The reading peer: every record of both writers, intact and in order per
 * writer; then it sends BACK_BYTES for the two processes to read. */
#define BACK_BYTES (256 * 1024)
static int check_records(int fd, void *arg)
{
	(void)arg;
	char r[REC_LEN];
	int next[2] = { 0, 0 };
	for (int n = 0; n < 2 * RECS; n++) {
		int w, i;
		ST_CHECK(st_read_full(fd, r, REC_LEN) == REC_LEN, "record %d: %s", n, strerror(errno));
		ST_CHECK(record_ok(r, &w, &i), "record %d is torn or mixed: '%.16s'", n, r);
		ST_CHECK(w == 0 || w == 1, "record %d: writer %d", n, w);
		ST_CHECK(i == next[w], "writer %d: record %d after %d", w, i, next[w] - 1);
		next[w]++;
	}
	static char back[BACK_BYTES];
	for (size_t k = 0; k < sizeof(back); k++)
		back[k] = (char)(k * 7 + 3);
	ST_CHECK(st_write_full(fd, back, sizeof(back)) == (ssize_t)sizeof(back), "write back: %s",
		 strerror(errno));
	ST_CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown");
	char b;
	ST_CHECK(read(fd, &b, 1) == 0, "want end of file");
	return 0;
}

/* Write the records of writer w, then read until end of file; report the
 * byte count and byte sum read on pipe wfd. */
static int write_then_read(int s, int w, int wfd)
{
	char r[REC_LEN];
	for (int i = 0; i < RECS; i++) {
		make_record(r, w, i);
		/* One write per record: TCP keeps it contiguous. */
		ST_CHECK(write(s, r, REC_LEN) == REC_LEN, "writer %d record %d: %s", w, i,
			 strerror(errno));
	}
	uint64_t got[2] = { 0, 0 };
	char buf[4096];
	for (;;) {
		ssize_t n = read(s, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		ST_CHECK(n >= 0, "writer %d read: %s", w, strerror(errno));
		if (n == 0)
			break;
		got[0] += (uint64_t)n;
		for (ssize_t k = 0; k < n; k++)
			got[1] += (unsigned char)buf[k];
	}
	ST_CHECK(write(wfd, got, sizeof(got)) == sizeof(got), "report");
	return 0;
}

static int child_writer(void *arg)
{
	int *fds = arg;
	int rc = write_then_read(fds[0], 1, fds[1]);
	fflush(NULL);
	exit(rc); /* through exit(): the shim writes its statistics */
}

/* After fork, parent and child both write numbered records to the same
 * connection at once, and both read from it: the peer gets every record
 * intact and in order per writer, and the bytes it sends back are read
 * once, by one or the other. */
ST_TEST(leave, shared_connection_after_fork)
{
	pid_t peer;
	int p[2];
	int s = st_peer_start(&peer, check_records, NULL);
	cr_assert_eq(pipe(p), 0);
	int args[2] = { s, p[1] };
	pid_t child = st_fork(child_writer, args);
	st_expect_left(-1, "shared", -1, -1);
	int rc = write_then_read(s, 0, p[1]);
	cr_assert_eq(rc, 0);
	uint64_t mine[2], theirs[2];
	cr_assert_eq(read(p[0], mine, sizeof(mine)), (ssize_t)sizeof(mine));
	cr_assert_eq(st_read_full(p[0], theirs, sizeof(theirs)), (ssize_t)sizeof(theirs),
		     "the child's report");
	uint64_t want_sum = 0;
	for (size_t k = 0; k < BACK_BYTES; k++)
		want_sum += (unsigned char)(char)(k * 7 + 3);
	cr_assert_eq(mine[0] + theirs[0], BACK_BYTES, "read %llu + %llu bytes, want %u",
		     (unsigned long long)mine[0], (unsigned long long)theirs[0], BACK_BYTES);
	cr_assert_eq(mine[1] + theirs[1], want_sum, "the bytes read differ from those sent");
	close(s);
	close(p[0]);
	close(p[1]);
	int crc = st_wait(child, ST_WAIT_MS);
	cr_assert_eq(crc, 0, "the child writer exited with %d", crc);
	st_assert_child_ok(peer);
}

/* --- urgent data -------------------------------------------------------- */

/* send(MSG_OOB) of one byte between normal data: the receiver sees POLLPRI,
 * its read stops at the mark, SIOCATMARK says so, recv(MSG_OOB) returns the
 * byte, and the normal bytes come in order without it, as on Linux TCP. */
ST_TEST(leave, urgent_data)
{
	int c, s, mark = -1;
	char buf[16], b;
	st_pair(&c, &s);
	cr_assert_eq(write(c, "abc", 3), 3);
	cr_assert_eq(send(c, "!", 1, MSG_OOB), 1, "send(MSG_OOB): %s", strerror(errno));
	/* The sender moves at the urgent byte, after 3 bytes; its peer (in
	 * this process too) reads those 3 from the channel, then the kernel. */
	st_expect_left(getpid(), "oob", 3, 0);
	st_expect_left(getpid(), "peer", 0, 3);
	cr_assert_eq(write(c, "def", 3), 3);
	short re = st_wait_fd(s, POLLIN | POLLPRI, ST_WAIT_MS);
	cr_assert(re & POLLPRI, "no POLLPRI (revents 0x%x)", re);
	st_sleep_ms(20); /* "def" too */
	cr_assert_eq(ioctl(s, SIOCATMARK, &mark), 0, "SIOCATMARK: %s", strerror(errno));
	cr_assert_eq(mark, 0, "at the mark before reading 'abc'");
	ssize_t n = recv(s, buf, sizeof(buf), 0);
	cr_assert_eq(n, 3, "the read before the mark returned %zd", n);
	cr_assert_arr_eq(buf, "abc", 3);
	cr_assert_eq(ioctl(s, SIOCATMARK, &mark), 0);
	cr_assert_eq(mark, 1, "not at the mark after 'abc'");
	cr_assert_eq(recv(s, &b, 1, MSG_OOB), 1, "recv(MSG_OOB): %s", strerror(errno));
	cr_assert_eq(b, '!');
	cr_assert_eq(recv(s, &b, 1, MSG_OOB), -1, "a second urgent byte");
	cr_assert_eq(errno, EINVAL, "second recv(MSG_OOB): %s", strerror(errno));
	expect_bytes(s, "def");
	/* And back the other way, after the switch: normal data both ways. */
	cr_assert_eq(write(s, "reply", 5), 5);
	expect_bytes(c, "reply");
	close(c);
	expect_eof(s);
	close(s);
}

/* --- waiting for room after the peer left ------------------------------ */

struct room {
	int left[2];  /* peer -> test: it moved to stdio */
	int count[2]; /* test -> peer: how many bytes to read */
};

/* The peer of the room_* rules: two bytes the test leaves unread (under
 * the shim, still in the channel when the connection moves), then
 * dup2(sock, 1), which moves the connection back to TCP; then, when told
 * how many bytes the test wrote, read them all (after a pause), and
 * "last". */
static int send_leave_drain(int fd, void *arg)
{
	struct room *r = arg;
	static char buf[65536];
	size_t total;
	char b[4];
	close(r->left[0]);
	close(r->count[1]);
	ST_CHECK(write(fd, "hi", 2) == 2, "write: %s", strerror(errno));
	st_expect_left(getpid(), "stdio", 2, 0);
	ST_CHECK(dup2(fd, 1) == 1, "dup2: %s", strerror(errno));
	st_post(r->left[1]);
	ST_CHECK(st_wait_fd(r->count[0], POLLIN, ST_WAIT_MS) & POLLIN, "no count");
	ST_CHECK(read(r->count[0], &total, sizeof(total)) == sizeof(total), "count");
	st_sleep_ms(100); /* the test is asleep in its wait by then */
	for (size_t got = 0; got < total;) {
		size_t want = total - got < sizeof(buf) ? total - got : sizeof(buf);
		ssize_t n = read(fd, buf, want);
		ST_CHECK(n > 0, "read after %zu of %zu: %s", got, total,
			 n < 0 ? strerror(errno) : "end of file");
		got += (size_t)n;
	}
	ST_CHECK(st_read_full(fd, b, 4) == 4 && memcmp(b, "last", 4) == 0, "the last write");
	ST_CHECK(read(fd, b, 1) == 0, "want end of file");
	return 0;
}

/* How the room_* rules wait: epoll_wait on the socket's set, epoll_wait on
 * a set that holds that set (nested), poll, select. */
enum room_wait { BY_EPOLL, BY_EPOLL_NESTED, BY_POLL, BY_SELECT };
#define ROOM_FOLLOW_IN_WAIT 0x1 /* wait once before the first write */
#define ROOM_ADD_WHEN_FULL 0x2  /* EPOLL_CTL_ADD after the socket is full */
#define ROOM_TWO_SETS 0x4       /* in a second set too: the last wait is there */

static int room_epoll_set(int fd, uint32_t events)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	cr_assert(ep >= 0, "epoll_create1: %s", strerror(errno));
	struct epoll_event ev = { .events = events, .data.u64 = 70 };
	if (fd >= 0)
		cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0, "ADD: %s", strerror(errno));
	return ep;
}

/* Wait (at most timeout_ms) until room to write s is reported; 1 if it
 * was. ep: the set that holds s, or (nested) the set that holds inner,
 * which holds s. */
static int wait_room(enum room_wait how, int s, int ep, int inner, int timeout_ms)
{
	uint64_t end = st_now_us() + (uint64_t)timeout_ms * 1000;
	for (;;) {
		uint64_t now = st_now_us();
		int left = now >= end ? 0 : (int)((end - now + 999) / 1000);
		int n;
		if (how == BY_EPOLL || how == BY_EPOLL_NESTED) {
			struct epoll_event e;
			n = epoll_wait(ep, &e, 1, left);
			if (n == 1 && how == BY_EPOLL_NESTED && (e.events & EPOLLIN))
				n = epoll_wait(inner, &e, 1, 0);
			if (n == 1 && (e.events & EPOLLOUT))
				return 1;
		} else if (how == BY_POLL) {
			struct pollfd p = { .fd = s, .events = POLLOUT };
			n = poll(&p, 1, left);
			if (n == 1 && (p.revents & POLLOUT))
				return 1;
		} else {
			fd_set w;
			FD_ZERO(&w);
			FD_SET(s, &w);
			struct timeval tv = { left / 1000, (left % 1000) * 1000 };
			n = select(s + 1, NULL, &w, NULL, &tv);
			if (n == 1 && FD_ISSET(s, &w))
				return 1;
		}
		cr_assert(n >= 0 || errno == EINTR, "wait: %s", strerror(errno));
		if (st_now_us() >= end)
			return 0;
	}
}

/* Start a peer running fn that sends, then moves its end to stdio (the
 * connection leaves shared memory), and wait until it has: the socket. */
static int start_leaving_peer(struct room *r, pid_t *pid, st_peer_fn fn)
{
	cr_assert_eq(pipe(r->left), 0);
	cr_assert_eq(pipe(r->count), 0);
	int s = st_peer_start(pid, fn, r);
	close(r->left[1]);
	close(r->count[0]);
	cr_assert(st_await(r->left[0], ST_WAIT_MS), "the peer did not move to stdio");
	st_expect_left(getpid(), "peer", 0, 2);
	return s;
}

/*
 * The peer leaves shared memory (stdio) with two bytes this side has not
 * read; this side fills its socket until EAGAIN and waits for room, as
 * `how` waits, for events (epoll), while the peer drains it: room must be
 * reported. Under the shim this side follows the peer in its first write
 * or, with ROOM_FOLLOW_IN_WAIT, inside the first wait; either way the
 * connection is then on the kernel socket while the two bytes are still in
 * the channel, and it is the kernel's room that must wake the waiter.
 */
static void room_after_peer_left(enum room_wait how, uint32_t events, unsigned flags)
{
	struct room r;
	pid_t pid;
	static char buf[65536];
	int ep = -1, ep2 = -1, outer = -1;
	int s = start_leaving_peer(&r, &pid, send_leave_drain);
	st_set_nonblock(s, 1);
	if (how == BY_EPOLL || how == BY_EPOLL_NESTED)
		ep = room_epoll_set(flags & ROOM_ADD_WHEN_FULL ? -1 : s, events);
	if (flags & ROOM_TWO_SETS)
		ep2 = room_epoll_set(s, events);
	if (how == BY_EPOLL_NESTED)
		outer = room_epoll_set(ep, EPOLLIN);
	int first = outer >= 0 ? outer : ep, last = outer >= 0 ? outer : ep2 >= 0 ? ep2 : ep;
	if (flags & ROOM_FOLLOW_IN_WAIT)
		cr_assert(wait_room(how, s, first, ep, ST_WAIT_MS), "no room before any write");
	size_t total = 0;
	ssize_t n;
	while ((n = write(s, buf, sizeof(buf))) > 0)
		total += (size_t)n;
	cr_assert_eq(errno, EAGAIN, "write failed with %s", strerror(errno));
	cr_assert_eq(st_wait_fd(s, POLLOUT, 0) & POLLOUT, 0, "POLLOUT on a full socket");
	if (flags & ROOM_ADD_WHEN_FULL) {
		struct epoll_event ev = { .events = events, .data.u64 = 70 };
		cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), 0, "ADD: %s", strerror(errno));
	}
	cr_assert_eq(write(r.count[1], &total, sizeof(total)), (ssize_t)sizeof(total));
	cr_assert(wait_room(how, s, last, ep, ST_WAIT_MS),
		  "no room reported within %d ms while the peer drained %zu bytes", ST_WAIT_MS,
		  total);
	cr_assert_eq(write(s, "last", 4), 4, "write after the drain: %s", strerror(errno));
	expect_bytes(s, "hi");
	close(s);
	st_assert_child_ok(pid);
	if (outer >= 0)
		close(outer);
	if (ep2 >= 0)
		close(ep2);
	if (ep >= 0)
		close(ep);
	close(r.left[0]);
	close(r.count[1]);
}

/* Level-triggered EPOLLOUT, registered once the socket is full. */
ST_TEST(leave, room_epollout_after_peer_left)
{
	room_after_peer_left(BY_EPOLL, EPOLLOUT, ROOM_ADD_WHEN_FULL);
}

/* Edge-triggered EPOLLOUT, registered before the peer's bytes were read
 * or any written. */
ST_TEST(leave, room_epollout_et_after_peer_left)
{
	room_after_peer_left(BY_EPOLL, EPOLLOUT | EPOLLET, 0);
}

/* Level-triggered EPOLLOUT, told of room once before the first write. */
ST_TEST(leave, room_epollout_after_peer_left_seen_in_wait)
{
	room_after_peer_left(BY_EPOLL, EPOLLOUT, ROOM_FOLLOW_IN_WAIT);
}

/* Edge-triggered EPOLLIN|EPOLLOUT, told of the unread bytes and of room
 * once before the first write: the room after the drain is a new edge. */
ST_TEST(leave, room_epoll_in_out_et_after_peer_left_seen_in_wait)
{
	room_after_peer_left(BY_EPOLL, EPOLLIN | EPOLLOUT | EPOLLET, ROOM_FOLLOW_IN_WAIT);
}

/* Level-triggered EPOLLOUT in two sets, told of room by the first before
 * the first write and waited for in the second. */
ST_TEST(leave, room_epollout_two_sets_after_peer_left)
{
	room_after_peer_left(BY_EPOLL, EPOLLOUT, ROOM_FOLLOW_IN_WAIT | ROOM_TWO_SETS);
}

/* Level-triggered EPOLLOUT in a set nested in another, which is the one
 * waited on (and told of room once before the first write). */
ST_TEST(leave, room_epollout_nested_after_peer_left)
{
	room_after_peer_left(BY_EPOLL_NESTED, EPOLLOUT, ROOM_FOLLOW_IN_WAIT);
}

/* poll(POLLOUT), told of room once before the first write. */
ST_TEST(leave, room_pollout_after_peer_left)
{
	room_after_peer_left(BY_POLL, 0, ROOM_FOLLOW_IN_WAIT);
}

/* select() for writing. */
ST_TEST(leave, room_select_after_peer_left)
{
	room_after_peer_left(BY_SELECT, 0, 0);
}

/* The peer of new_data_edge_after_peer_left: two bytes, dup2 onto stdout
 * (the connection moves back to TCP), then four more once told. */
static int send_leave_send(int fd, void *arg)
{
	struct room *r = arg;
	char b;
	close(r->left[0]);
	close(r->count[1]);
	ST_CHECK(write(fd, "hi", 2) == 2, "write: %s", strerror(errno));
	st_expect_left(getpid(), "stdio", 2, 0);
	ST_CHECK(dup2(fd, 1) == 1, "dup2: %s", strerror(errno));
	st_post(r->left[1]);
	ST_CHECK(st_await(r->count[0], ST_WAIT_MS), "not told to send");
	ST_CHECK(write(fd, "more", 4) == 4, "write: %s", strerror(errno));
	ST_CHECK(read(fd, &b, 1) == 0, "want end of file");
	return 0;
}

/* Edge-triggered EPOLLIN on a connection whose peer left with two bytes
 * this side has not read: data the peer sends afterwards is a new edge,
 * reported although the two bytes are still unread (under the shim, this
 * side follows the peer inside epoll_wait and reads nothing, so only the
 * set's registration can see the new data come). */
ST_TEST(leave, new_data_edge_after_peer_left)
{
	struct room r;
	pid_t pid;
	int s = start_leaving_peer(&r, &pid, send_leave_send);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	cr_assert(ep >= 0, "epoll_create1: %s", strerror(errno));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = 71 }, got;
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), 0, "ADD: %s", strerror(errno));
	cr_assert_eq(epoll_wait(ep, &got, 1, ST_WAIT_MS), 1, "the first two bytes not reported");
	cr_assert_eq(got.events, EPOLLIN, "events %#x", got.events);
	/* A report more than the kernel makes is allowed (EPOLLET programs
	 * read until EAGAIN), as long as it stops. */
	int quiet = 0;
	for (int i = 0; i < 10 && !quiet; i++)
		quiet = epoll_wait(ep, &got, 1, 50) == 0;
	cr_assert(quiet, "EPOLLIN reported on every wait without new data");
	st_post(r.count[1]);
	cr_assert_eq(epoll_wait(ep, &got, 1, ST_WAIT_MS), 1,
		     "the peer's new data not reported within %d ms", ST_WAIT_MS);
	cr_assert(got.events & EPOLLIN, "events %#x", got.events);
	expect_bytes(s, "himore");
	close(s);
	st_assert_child_ok(pid);
	close(ep);
	close(r.left[0]);
	close(r.count[1]);
}

/* --- a peer that has finished writing ------------------------------------ */

#define HALF_CLOSED_BYTES (256u << 10)

/* The peer of moved_after_peer_finished_writing: it writes its whole
 * stream and ends it (shutdown SHUT_WR), says so on the pipe, then reads
 * what comes back to the end and checks it. */
static int write_all_then_read(int fd, void *arg)
{
	int *pipes = arg;
	static char buf[HALF_CLOSED_BYTES];
	st_pattern_fill(buf, sizeof(buf), 61, 0);
	ST_CHECK(st_write_full(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf), "write: %s",
		 strerror(errno));
	ST_CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
	st_post(pipes[1]);
	ssize_t n = st_read_to_eof(fd, buf, sizeof(buf));
	ST_CHECK(n == (ssize_t)(HALF_CLOSED_BYTES / 2), "read %zd bytes back", n);
	ST_CHECK(st_pattern_check(buf, (size_t)n, 62, 0) == -1, "wrong bytes back");
	return 0;
}

/* This side has read part of what its peer wrote when it moves the
 * connection to TCP (dup2 onto stdout); the peer had already ended its
 * stream (shutdown SHUT_WR) but is alive and reading. The rest of the
 * peer's stream arrives, then its end, and what this side writes after the
 * move reaches the peer. Before, the move took the ended stream for a
 * closed peer and reset the connection, and the peer read a plain end of
 * file after half of what it was sent. */
ST_TEST(leave, moved_after_peer_finished_writing)
{
	pid_t pid;
	int pipes[2];
	cr_assert_eq(pipe(pipes), 0);
	int s = st_peer_start(&pid, write_all_then_read, pipes);
	static char buf[HALF_CLOSED_BYTES];
	cr_assert_eq(st_read_full(s, buf, 60000), 60000);
	cr_assert(st_await(pipes[0], ST_WAIT_MS), "the peer did not end its stream");
	fflush(stdout);
	int saved = dup(1);
	cr_assert(saved >= 0);
	cr_assert_eq(dup2(s, 1), 1);
	st_expect_left(getpid(), "stdio", 0, 60000);
	cr_assert_eq(dup2(saved, 1), 1);
	close(saved);
	ssize_t n = st_read_to_eof(s, buf + 60000, sizeof(buf) - 60000);
	cr_assert_eq(n, (ssize_t)(HALF_CLOSED_BYTES - 60000), "read %zd bytes after the move: %s", n,
		     n < 0 ? strerror(errno) : "");
	cr_assert_eq(st_pattern_check(buf, HALF_CLOSED_BYTES, 61, 0), -1);
	st_pattern_fill(buf, HALF_CLOSED_BYTES / 2, 62, 0);
	cr_assert_eq(st_write_full(s, buf, HALF_CLOSED_BYTES / 2), (ssize_t)(HALF_CLOSED_BYTES / 2));
	close(s);
	st_assert_child_ok(pid);
	close(pipes[0]);
	close(pipes[1]);
}
