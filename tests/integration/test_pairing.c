/*
 * test_pairing.c - which connections the monitor pairs over shared memory,
 * and that every other one still works over the kernel's TCP.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static struct t_monitor mon;

static void setup(void)
{
	t_monitor_start(&mon, NULL);
}

static void teardown(void)
{
	t_monitor_stop(&mon);
}

TestSuite(pairing, .init = setup, .fini = teardown);

static const char PING[] = "ping from the client";
static const char PONG[] = "pong from the server";

/* Client side of the ping/pong exchange; arg points to the int the
 * connection's acceleration must equal. */
static int client_ping(xio_conn *c, void *arg)
{
	int want = *(int *)arg;
	char buf[64];
	T_CHECK(xio_conn_is_accelerated(c) == want, "accelerated %d, want %d",
		xio_conn_is_accelerated(c), want);
	ssize_t r = xio_write(c, PING, sizeof(PING));
	T_CHECK(r == (ssize_t)sizeof(PING), "xio_write: %zd (%s)", r, xio_strerror((int)r));
	r = t_read_full(c, buf, sizeof(PONG));
	T_CHECK(r == (ssize_t)sizeof(PONG), "read: %zd (%s)", r, xio_strerror((int)r));
	T_CHECK(!memcmp(buf, PONG, sizeof(PONG)), "wrong reply '%.*s'", (int)sizeof(PONG), buf);
	r = xio_read(c, buf, sizeof(buf));
	T_CHECK(r == 0, "expected end of file, got %zd (%s)", r, xio_strerror((int)r));
	return 0;
}

/* Server side: read the ping, answer, close. */
static void server_pong(xio_conn *c)
{
	char buf[64];
	ssize_t r = t_read_full(c, buf, sizeof(PING));
	cr_assert_eq(r, (ssize_t)sizeof(PING), "server read: %zd (%s)", r, xio_strerror((int)r));
	cr_assert_arr_eq(buf, PING, sizeof(PING));
	r = xio_write(c, PONG, sizeof(PONG));
	cr_assert_eq(r, (ssize_t)sizeof(PONG), "server write: %zd (%s)", r, xio_strerror((int)r));
	cr_assert_eq(xio_close(c), 0);
}

/* An xio listener on 127.0.0.1 (any port). */
static xio_listener *listen_loopback(void)
{
	xio_listener *l;
	struct sockaddr_in a = t_loopback(0);
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 16, 0);
	cr_assert_eq(r, 0, "xio_listen: %s", xio_strerror(r));
	return l;
}

/* Run one ping/pong over a fresh connection to l; both ends must have
 * acceleration `want`. */
static void ping_pong(xio_listener *l, int want)
{
	struct sockaddr_in a = t_loopback(t_listener_port(l));
	pid_t pid = t_fork_client((struct sockaddr *)&a, sizeof(a), 0, 0, client_ping, &want);
	xio_conn *c;
	int r = t_accept(l, &c, 0, 5000);
	cr_assert_eq(r, 0, "accept: %s", xio_strerror(r));
	cr_assert_eq(xio_conn_is_accelerated(c), want, "server end accelerated %d, want %d",
		     xio_conn_is_accelerated(c), want);
	server_pong(c);
	int st = t_wait(pid, 5000);
	cr_assert_eq(st, 0, "client exited with %d (see its stderr)", st);
}

/* Restart the monitor with a configuration file holding text. */
static void restart_with_config(const char *text)
{
	char path[] = "/tmp/xio-test-conf-XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	t_monitor_stop(&mon);
	t_monitor_start(&mon, "--config", path, NULL);
	unlink(path); /* read once at start-up */
}

/* A free TCP port on 127.0.0.1 right now. */
static uint16_t free_port(void)
{
	struct sockaddr_in a = t_loopback(0);
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(s >= 0);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0, "bind: %s", strerror(errno));
	cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
	close(s);
	return ntohs(a.sin_port);
}

/* Two xio ends on loopback are both accelerated and the monitor counts one
 * accelerated connection. */
Test(pairing, both_ends_accelerated)
{
	xio_listener *l = listen_loopback();
	struct xio_msg_status before = t_monitor_status();
	ping_pong(l, 1);
	struct xio_msg_status after = t_monitor_settle(1);
	cr_assert_eq(after.accel_total, before.accel_total + 1,
		     "accel_total %llu -> %llu (fallback_total %llu -> %llu)",
		     (unsigned long long)before.accel_total, (unsigned long long)after.accel_total,
		     (unsigned long long)before.fallback_total,
		     (unsigned long long)after.fallback_total);
	cr_assert_eq(after.conns, 0, "conns %u after both ends closed", after.conns);
	xio_listener_close(l);
}

static int plain_client(void *arg)
{
	uint16_t port = *(uint16_t *)arg;
	struct sockaddr_in a = t_loopback(port);
	char buf[sizeof(PONG)];
	size_t got = 0;
	alarm(30);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	T_CHECK(s >= 0, "socket: %s", strerror(errno));
	T_CHECK(connect(s, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s", strerror(errno));
	T_CHECK(send(s, PING, sizeof(PING), 0) == (ssize_t)sizeof(PING), "send: %s",
		strerror(errno));
	while (got < sizeof(buf)) {
		ssize_t r = recv(s, buf + got, sizeof(buf) - got, 0);
		T_CHECK(r > 0, "recv: %zd (%s)", r, strerror(errno));
		got += (size_t)r;
	}
	T_CHECK(!memcmp(buf, PONG, sizeof(PONG)), "wrong reply '%.*s'", (int)sizeof(buf), buf);
	T_CHECK(recv(s, buf, sizeof(buf), 0) == 0, "expected end of file");
	close(s);
	return 0;
}

/* A plain kernel TCP client (libc only) gets a working kernel connection
 * to an xio listener, whose end is not accelerated. */
Test(pairing, kernel_client_to_xio_listener)
{
	xio_listener *l = listen_loopback();
	uint16_t port = t_listener_port(l);
	struct xio_msg_status before = t_monitor_status();
	pid_t pid = t_fork(plain_client, &port);
	xio_conn *c;
	int r = t_accept(l, &c, 0, 5000);
	cr_assert_eq(r, 0, "accept: %s", xio_strerror(r));
	cr_assert_eq(xio_conn_is_accelerated(c), 0, "accepted a kernel client as accelerated");
	server_pong(c);
	int st = t_wait(pid, 5000);
	cr_assert_eq(st, 0, "plain client exited with %d (see its stderr)", st);
	struct xio_msg_status after = t_monitor_settle(1);
	cr_assert_eq(after.accel_total, before.accel_total, "accel_total %llu -> %llu",
		     (unsigned long long)before.accel_total, (unsigned long long)after.accel_total);
	cr_assert_eq(after.conns, 0, "conns %u", after.conns);
	xio_listener_close(l);
}

/* An xio client to a plain kernel listener (libc socket/bind/listen/accept)
 * works over the kernel and is not accelerated. */
Test(pairing, xio_client_to_kernel_listener)
{
	struct sockaddr_in a = t_loopback(0);
	socklen_t alen = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(ls >= 0);
	cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0, "bind: %s", strerror(errno));
	cr_assert_eq(listen(ls, 4), 0);
	cr_assert_eq(getsockname(ls, (struct sockaddr *)&a, &alen), 0);

	int want = 0;
	pid_t pid = t_fork_client((struct sockaddr *)&a, sizeof(a), 0, 0, client_ping, &want);
	struct pollfd p = { .fd = ls, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 5000), 1, "no connection in 5 s");
	int s = accept(ls, NULL, NULL);
	cr_assert(s >= 0, "accept: %s", strerror(errno));
	char buf[sizeof(PING)];
	size_t got = 0;
	while (got < sizeof(buf)) {
		ssize_t r = recv(s, buf + got, sizeof(buf) - got, 0);
		cr_assert(r > 0, "recv: %zd (%s)", r, strerror(errno));
		got += (size_t)r;
	}
	cr_assert_arr_eq(buf, PING, sizeof(PING));
	cr_assert_eq(send(s, PONG, sizeof(PONG), 0), (ssize_t)sizeof(PONG));
	close(s);
	int st = t_wait(pid, 5000);
	cr_assert_eq(st, 0, "xio client exited with %d (see its stderr)", st);
	close(ls);
	struct xio_msg_status after = t_monitor_settle(1);
	cr_assert_eq(after.conns, 0, "conns %u", after.conns);
	cr_assert_eq(after.intents, 0, "intents %u", after.intents);
}

/* Without a monitor (nothing listens on XIO_MONITOR_SOCK) both ends work
 * over the kernel, neither accelerated. */
Test(pairing, no_monitor_falls_back)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/nobody-here.sock", mon.dir);
	setenv("XIO_MONITOR_SOCK", path, 1);
	xio__ctl_reset();
	xio_listener *l = listen_loopback();
	ping_pong(l, 0);
	xio_listener_close(l);
}

/* With `default deny` both ends fall back (neither accelerated), data flows,
 * and the monitor answered both with FALLBACK. */
Test(pairing, acl_default_deny_falls_back)
{
	restart_with_config("default deny\n");
	xio_listener *l = listen_loopback();
	struct xio_msg_status before = t_monitor_status();
	ping_pong(l, 0);
	struct xio_msg_status after = t_monitor_settle(1);
	cr_assert_eq(after.accel_total, before.accel_total, "accel_total %llu -> %llu",
		     (unsigned long long)before.accel_total, (unsigned long long)after.accel_total);
	cr_assert_eq(after.fallback_total, before.fallback_total + 2,
		     "fallback_total %llu -> %llu (one answer per end expected)",
		     (unsigned long long)before.fallback_total,
		     (unsigned long long)after.fallback_total);
	cr_assert_eq(after.conns, 0, "conns %u", after.conns);
	xio_listener_close(l);
}

/* A listener on port P (with only the ports around P allowed)
 * falls back on both ends. */
Test(pairing, acl_port_range_excluding_listener_falls_back)
{
	uint16_t port = free_port();
	char conf[128];
	snprintf(conf, sizeof(conf), "default deny\nallow port 1-%u\nallow port %u-65535\n",
		 (unsigned)port - 1, (unsigned)port + 1);
	restart_with_config(conf);
	xio_listener *l;
	struct sockaddr_in a = t_loopback(port);
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 16, 0);
	cr_assert_eq(r, 0, "xio_listen on %u: %s", (unsigned)port, xio_strerror(r));
	struct xio_msg_status before = t_monitor_status();
	ping_pong(l, 0);
	struct xio_msg_status after = t_monitor_settle(1);
	cr_assert_eq(after.accel_total, before.accel_total, "accel_total %llu -> %llu with\n%s",
		     (unsigned long long)before.accel_total, (unsigned long long)after.accel_total,
		     conf);
	xio_listener_close(l);
}

/* A listener on port P with `default deny` and an allowed range starting at P
 * is accelerated (the control for the test above). */
Test(pairing, acl_port_range_including_listener_accelerates)
{
	uint16_t port = free_port();
	char conf[128];
	snprintf(conf, sizeof(conf), "default deny\nallow port %u-%u\n", (unsigned)port,
		 port > 65525 ? 65535u : (unsigned)port + 10);
	restart_with_config(conf);
	xio_listener *l;
	struct sockaddr_in a = t_loopback(port);
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 16, 0);
	cr_assert_eq(r, 0, "xio_listen on %u: %s", (unsigned)port, xio_strerror(r));
	struct xio_msg_status before = t_monitor_status();
	ping_pong(l, 1);
	struct xio_msg_status after = t_monitor_settle(1);
	cr_assert_eq(after.accel_total, before.accel_total + 1, "accel_total %llu -> %llu with\n%s",
		     (unsigned long long)before.accel_total, (unsigned long long)after.accel_total,
		     conf);
	xio_listener_close(l);
}

#define NSEQ 50

/* Client of the sequential test: NSEQ connections, one after the other,
 * each accelerated, one byte each way. */
static int client_sequential(void *arg)
{
	uint16_t port = *(uint16_t *)arg;
	struct sockaddr_in a = t_loopback(port);
	alarm(30);
	for (int i = 0; i < NSEQ; i++) {
		xio_conn *c;
		char b = (char)i;
		int r = xio_connect(&c, (struct sockaddr *)&a, sizeof(a), 0);
		T_CHECK(r == 0, "connection %d: xio_connect: %s", i, xio_strerror(r));
		T_CHECK(xio_conn_is_accelerated(c), "connection %d is not accelerated", i);
		T_CHECK(xio_write(c, &b, 1) == 1, "connection %d: write", i);
		ssize_t n = xio_read(c, &b, 1);
		T_CHECK(n == 1 && b == (char)(i + 1), "connection %d: read %zd (%s), byte %d", i, n,
			xio_strerror((int)n), b);
		T_CHECK(xio_close(c) == 0, "connection %d: close", i);
	}
	return 0;
}

/* 50 sequential connections are each accelerated, and the monitor holds no
 * connection once all are closed. */
Test(pairing, sequential_connections_reclaimed)
{
	xio_listener *l = listen_loopback();
	uint16_t port = t_listener_port(l);
	struct xio_msg_status before = t_monitor_status();
	pid_t pid = t_fork(client_sequential, &port);
	for (int i = 0; i < NSEQ; i++) {
		xio_conn *c;
		char b;
		int r = t_accept(l, &c, 0, 5000);
		cr_assert_eq(r, 0, "connection %d: accept: %s", i, xio_strerror(r));
		cr_assert(xio_conn_is_accelerated(c), "connection %d: server end not accelerated",
			  i);
		ssize_t n = xio_read(c, &b, 1);
		cr_assert_eq(n, 1, "connection %d: read %zd (%s)", i, n, xio_strerror((int)n));
		b++;
		cr_assert_eq(xio_write(c, &b, 1), 1);
		cr_assert_eq(xio_close(c), 0);
	}
	int st = t_wait(pid, 10000);
	cr_assert_eq(st, 0, "client exited with %d (see its stderr)", st);
	struct xio_msg_status after = t_monitor_settle(1);
	cr_assert_eq(after.accel_total, before.accel_total + NSEQ, "accel_total %llu -> %llu",
		     (unsigned long long)before.accel_total, (unsigned long long)after.accel_total);
	cr_assert_eq(after.conns, 0, "conns %u, intents %u, procs %u after all closed", after.conns,
		     after.intents, after.procs);
	cr_assert_eq(after.intents, 0, "intents %u", after.intents);
	xio_listener_close(l);
}

/* An xio listener on [::1] pairs an xio client: both ends accelerated. */
Test(pairing, ipv6_loopback_accelerated)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int s = socket(AF_INET6, SOCK_STREAM, 0);
	int usable = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (s >= 0)
		close(s);
	if (!usable)
		cr_skip_test("::1 is not usable here (IPv6 disabled or no loopback address)");

	xio_listener *l;
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 16, 0);
	cr_assert_eq(r, 0, "xio_listen [::1]: %s", xio_strerror(r));
	struct sockaddr_storage ss;
	socklen_t sl;
	cr_assert_eq(xio_listener_addr(l, &ss, &sl), 0);
	a.sin6_port = ((struct sockaddr_in6 *)&ss)->sin6_port;

	struct xio_msg_status before = t_monitor_status();
	int want = 1;
	pid_t pid = t_fork_client((struct sockaddr *)&a, sizeof(a), 0, 0, client_ping, &want);
	xio_conn *c;
	r = t_accept(l, &c, 0, 5000);
	cr_assert_eq(r, 0, "accept: %s", xio_strerror(r));
	cr_assert(xio_conn_is_accelerated(c), "server end of [::1] connection not accelerated");
	server_pong(c);
	int st = t_wait(pid, 5000);
	cr_assert_eq(st, 0, "client exited with %d (see its stderr)", st);
	struct xio_msg_status after = t_monitor_settle(1);
	cr_assert_eq(after.accel_total, before.accel_total + 1, "accel_total %llu -> %llu",
		     (unsigned long long)before.accel_total, (unsigned long long)after.accel_total);
	xio_listener_close(l);
}
