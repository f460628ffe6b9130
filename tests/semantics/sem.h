/*
 * sem.h - helpers for the semantic tests, prefixed st_.
 *
 * test_semantics checks the TCP behaviour that programs rely on with nothing
 * but POSIX socket calls on 127.0.0.1. It knows nothing about xio: run.sh
 * runs it once over kernel TCP and once under LD_PRELOAD=libxio_preload.so,
 * and both runs must pass, which shows that the two agree. It does not use
 * tests/helpers.{c,h} because those link libxio.
 *
 * Every test arms a watchdog (alarm) and bounds every wait, so a call that
 * blocks forever fails the test instead of hanging the run. Peers that are
 * other processes are forked; in them, use ST_CHECK instead of cr_assert and
 * return the status. A peer times out 2 s before its test (so the test says
 * which peer hung) and is killed if its test dies (so it cannot disturb the
 * next test).
 */
#ifndef XIO_TESTS_SEM_H
#define XIO_TESTS_SEM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

/* Seconds before SIGALRM kills a test (or a forked peer) that hangs. */
#define ST_WATCHDOG_S 10
/* Bound on any single wait for something that should happen (ms). */
#define ST_WAIT_MS 5000

/* Arm the watchdog; the .init of every test. */
void st_setup(void);
#define ST_TEST(suite, name) Test(suite, name, .init = st_setup)

/* A listener on 127.0.0.1, port chosen by the kernel (returned in *port),
 * backlog 64. */
int st_listen(uint16_t *port);
/* A blocking socket connected to 127.0.0.1:port. */
int st_connect(uint16_t port);
/* Accept on l, waiting at most ST_WAIT_MS; fails the test otherwise. */
int st_accept(int l);
/* A connected pair in this process: *client from connect(), *server from
 * accept(). The listener is closed. */
void st_pair(int *client, int *server);
/* A port on 127.0.0.1 where nothing listens (bound once, then released). */
uint16_t st_closed_port(void);

/* A peer process: fork a child that closes the listener, connects to it and
 * returns fn(its socket, arg) as its exit status. Returns this side's
 * accepted socket; *pid is the child. */
typedef int (*st_peer_fn)(int fd, void *arg);
int st_peer_start(pid_t *pid, st_peer_fn fn, void *arg);
/* Fork a child returning fn(arg) as its exit status (watchdog armed). */
pid_t st_fork(int (*fn)(void *), void *arg);
/* waitpid with a bound; returns the exit status, or 128+signal. Kills the
 * child and fails the test on timeout. */
int st_wait(pid_t pid, int timeout_ms);
/* Wait for a child and assert that it exited with status 0. */
#define st_assert_child_ok(pid)                                                           \
	do {                                                                              \
		int st_rc_ = st_wait((pid), ST_WAIT_MS * 2);                              \
		cr_assert_eq(st_rc_, 0, "peer process %d exited with %d (see its stderr)", \
			     (int)(pid), st_rc_);                                         \
	} while (0)

/* Exec this test binary as a helper program in a child (see sem.c for the
 * roles). env: NULL-terminated "NAME=value" strings added to the
 * environment; with_preload 0 removes LD_PRELOAD, so that the helper runs
 * without any socket shim. Returns the child's pid. */
pid_t st_spawn_role(const char *role, const char *const *env, int with_preload);

/* Under run.sh's xio mode (ST_LEFT_EXPECT names a file): record that
 * process pid (-1: any) must report, at its exit, a connection moved back
 * to kernel TCP (issue 7) with this reason (one name, or several as
 * "stdio|exec") at these stream offsets (-1: any): tx_off bytes it sent
 * and rx_off bytes it received through the shim before the kernel took
 * over. run.sh matches every record with the shim's xio-left lines.
 * Nothing happens over the kernel. */
void st_expect_left(pid_t pid, const char *reason, long tx_off, long rx_off);

/* read()/write() until len bytes moved; retries EINTR. Returns len, the
 * smaller count before end of file, or -1 with errno. */
ssize_t st_read_full(int fd, void *buf, size_t len);
ssize_t st_write_full(int fd, const void *buf, size_t len);
/* Read until end of file (at most cap bytes); returns the count or -1. */
ssize_t st_read_to_eof(int fd, void *buf, size_t cap);

/* O_NONBLOCK on or off through F_SETFL. */
void st_set_nonblock(int fd, int on);
/* poll() one fd for events, at most timeout_ms; returns revents (0 on
 * timeout). Retries EINTR. */
short st_wait_fd(int fd, short events, int timeout_ms);

/* One-byte signals between processes over a pipe: st_post writes a byte,
 * st_await waits at most timeout_ms and returns 1 if one came. */
void st_post(int fd);
int st_await(int fd, int timeout_ms);

void st_sleep_ms(int ms);
/* CLOCK_MONOTONIC in microseconds. */
uint64_t st_now_us(void);
/* User + system CPU time of this process (all threads), microseconds. */
uint64_t st_cpu_us(void);

/* A buffer filled from a pattern derived from seed and position, and its
 * check (returns the offset of the first wrong byte, or -1). */
void st_pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t pos);
long st_pattern_check(const void *buf, size_t len, uint64_t seed, uint64_t pos);
/* FNV-1a, to compare what was sent with what came. */
uint64_t st_fnv1a(const void *buf, size_t len, uint64_t h);
#define ST_FNV_INIT 0xcbf29ce484222325ull

/* In a forked peer: if cond is false, say where and why on stderr and return
 * 1, which becomes the child's exit status. */
#define ST_CHECK(cond, ...)                                                        \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "peer %d: %s:%d: check '%s' failed: ",    \
				(int)getpid(), __FILE__, __LINE__, #cond);         \
			fprintf(stderr, __VA_ARGS__);                              \
			fputc('\n', stderr);                                      \
			return 1;                                                  \
		}                                                                  \
	} while (0)

#endif
