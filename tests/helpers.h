/*
 * helpers.h - test helpers, prefixed t_. A monitor per test (its own socket
 * in a temporary directory), loopback addresses, and segments mapped twice
 * in one process to stand for the two ends of a connection.
 */
#ifndef XIO_TEST_HELPERS_H
#define XIO_TEST_HELPERS_H

#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

#include "xio.h"
#include "xio/chan.h"
#include "xio/ctl.h"
#include "xio/seg.h"

struct t_monitor {
	pid_t pid;
	char dir[64];
	char sock[128];
	char log[128];
};

/* Start xio-monitor --foreground on a fresh socket with extra arguments
 * (NULL-terminated list), point XIO_MONITOR_SOCK at it, and wait until it
 * answers. Fails the test if it does not within 5 s. */
void t_monitor_start(struct t_monitor *m, ...);
/* If set, run in the monitor's process just before exec (a test that must
 * run it without a capability drops it there). */
extern void (*t_monitor_pre_exec)(void);
/* kill -9 the monitor m (that one only, by its pid) and reap it; its
 * socket file stays, as after a crash. */
void t_monitor_kill(struct t_monitor *m);
/* Start a new monitor on the socket of m after t_monitor_kill, with no
 * extra arguments, its log appended to the same file, and wait until it
 * answers (5 s). This process's control session is left as a running
 * program's would be. */
void t_monitor_restart(struct t_monitor *m);
/* SIGTERM it, wait (bounded), remove its directory. */
void t_monitor_stop(struct t_monitor *m);
/* Print the monitor's log (on failure). */
void t_monitor_dump_log(const struct t_monitor *m);
/* The monitor's counts; fails the test if it does not answer. */
struct xio_msg_status t_monitor_status(void);
/* Poll until the monitor has no conns and no intents (bounded, 5 s); return
 * the last status. */
struct xio_msg_status t_monitor_settle(unsigned procs_expected);

/* 127.0.0.1:port */
struct sockaddr_in t_loopback(uint16_t port);
/* Port of an xio listener. */
uint16_t t_listener_port(const xio_listener *l);

/* Fork a child running fn(arg); returns its pid. The child exits with fn's
 * return value. */
pid_t t_fork(int (*fn)(void *), void *arg);
/* waitpid with a bound; returns the exit status (or 128+signal), fails the
 * test on timeout (and kills the child). */
int t_wait(pid_t pid, int timeout_ms);

/* A segment mapped twice, for single-process channel tests. */
struct t_seg {
	struct xio_seg_params p;
	struct xio_seg_layout l;
	int fd;
	void *a, *b; /* the two "processes'" mappings */
};
void t_seg_open(struct t_seg *s, uint64_t seg_size, uint32_t max_msg);
void t_seg_close(struct t_seg *s);

/* Fill / check a buffer with a pattern derived from seed and position. */
void t_pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t pos);
int t_pattern_check(const void *buf, size_t len, uint64_t seed, uint64_t pos);

/* A test suite's monitor and an xio listener on 127.0.0.1 (port 0), for
 * .init / .fini. */
void t_suite_up(struct t_monitor *m, xio_listener **lis, int backlog);
void t_suite_down(struct t_monitor *m, xio_listener **lis);

/* Fork a client running fn on an accelerated connection to lis and accept
 * the server end (flags for it), which must be accelerated too. */
pid_t t_pair_accelerated(xio_listener *lis, xio_conn **server, unsigned flags,
			 int (*fn)(xio_conn *, void *), void *arg);

/* Wait for a client (bounded) and fail the test unless it exited 0. */
void t_reap(pid_t pid, int timeout_ms);

/* Hugepages: 1 if at least n 2 MiB pages are free now. */
int t_hugepages_free(unsigned n);
/* Free 2 MiB hugepages now (machine-wide). */
unsigned t_hugepages_free_count(void);
/* Entries of /proc/PID/fd (pid 0: this process), or -1; and how many of
 * its mappings and fds are memfds (connection segments). */
int t_count_fds(pid_t pid);
int t_count_memfds(pid_t pid);

/* --- helpers for integration tests (forked peers) ----------------------- */

/* In a forked child (where Criterion's asserts do not work): if cond is
 * false, print where and why to stderr and return 1 from the function, which
 * becomes the child's exit status. */
#define T_CHECK(cond, ...)                                                         \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "child %d: %s:%d: check '%s' failed: ",   \
				(int)getpid(), __FILE__, __LINE__, #cond);         \
			fprintf(stderr, __VA_ARGS__);                              \
			fputc('\n', stderr);                                      \
			return 1;                                                  \
		}                                                                  \
	} while (0)

/* Exit statuses of t_fork_client's child when it fails before running fn. */
#define T_EXIT_CONNECT 90   /* xio_connect failed */
#define T_EXIT_NOT_ACCEL 91 /* the connection was not accelerated */

/* Fork a child that xio_connect()s to addr with flags, checks that the
 * connection is accelerated (if want_accel), runs fn(c, arg), closes c and
 * exits with fn's return value. The child kills itself (SIGALRM) after 30 s
 * so that a hung peer cannot outlive its test. */
pid_t t_fork_client(const struct sockaddr *addr, socklen_t addrlen, unsigned flags,
		    int want_accel, int (*fn)(xio_conn *c, void *arg), void *arg);

/* Wait (at most timeout_ms) for a connection on l, then xio_accept() it.
 * Returns 0, -ETIMEDOUT, or xio_accept's error. */
int t_accept(xio_listener *l, xio_conn **c, unsigned flags, int timeout_ms);

/* xio_read() until len bytes came. Returns len, the smaller count read
 * before end of file, or the first error (what was read before it is lost). */
ssize_t t_read_full(xio_conn *c, void *buf, size_t len);

/* One-byte signals between a test and its children over a pipe. t_post
 * writes a byte; t_await waits for one at most timeout_ms and returns 1 if
 * it came, 0 on timeout or end of file. */
void t_post(int fd);
int t_await(int fd, int timeout_ms);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t t_now_ms(void);

#endif
