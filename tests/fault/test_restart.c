/*
 * test_restart.c - issue 8 item 10 for the native API: the monitor is
 * killed (kill -9) and a new one started on the same socket while programs
 * that use libxio run. A server sitting in accept makes no call a new
 * monitor could learn its listener from; its process's control watcher
 * (xio__ctl_keep, the one the shim uses too) tells it again, so new
 * connections to it are accelerated within a second, as
 * tests/fault/monitor_restart.py checks for the shim.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define RESUME_MS 1000 /* a new monitor knows the old listeners within */

static struct t_monitor mon;
static pid_t servers[2];

static void fini(void)
{
	for (unsigned i = 0; i < 2; i++)
		if (servers[i] > 0 && waitpid(servers[i], NULL, WNOHANG) == 0) {
			kill(servers[i], SIGKILL);
			waitpid(servers[i], NULL, 0);
		}
	if (mon.dir[0])
		t_monitor_stop(&mon);
}

TestSuite(restart, .fini = fini, .timeout = 60);

struct server {
	int n;            /* connections to accept */
	int port_pipe[2]; /* its port, once it listens */
	int report[2];    /* '1' (accelerated) or '0' for each connection */
};

/* xio_listen on 127.0.0.1, then accept n connections, one byte back for
 * one byte in, each reported. Between connections it only waits in poll
 * on the listening socket: nothing a new monitor could notice. */
static int server_main(void *arg)
{
	struct server *s = arg;
	xio_listener *l;
	alarm(40);
	struct sockaddr_in a = t_loopback(0);
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 16, 0);
	T_CHECK(r == 0, "xio_listen: %s", xio_strerror(r));
	uint16_t port = t_listener_port(l);
	T_CHECK(write(s->port_pipe[1], &port, sizeof(port)) == sizeof(port), "port");
	for (int i = 0; i < s->n; i++) {
		xio_conn *c;
		char b;
		T_CHECK((r = t_accept(l, &c, 0, 30000)) == 0, "accept: %s", xio_strerror(r));
		T_CHECK(t_read_full(c, &b, 1) == 1, "read");
		T_CHECK(xio_write(c, &b, 1) == 1, "write");
		b = xio_conn_is_accelerated(c) ? '1' : '0';
		T_CHECK(write(s->report[1], &b, 1) == 1, "report");
		xio_close(c);
	}
	xio_listener_close(l);
	return 0;
}

static pid_t server_start(struct server *s, uint16_t *port)
{
	cr_assert_eq(pipe(s->port_pipe), 0);
	cr_assert_eq(pipe(s->report), 0);
	pid_t pid = t_fork(server_main, s);
	close(s->port_pipe[1]);
	close(s->report[1]);
	struct pollfd p = { .fd = s->port_pipe[0], .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 5000), 1, "the server did not start");
	cr_assert_eq(read(s->port_pipe[0], port, sizeof(*port)), (ssize_t)sizeof(*port));
	close(s->port_pipe[0]);
	return pid;
}

static int echo_one(xio_conn *c, void *arg)
{
	char b = 'x';
	(void)arg;
	T_CHECK(xio_write(c, &b, 1) == 1, "write");
	T_CHECK(t_read_full(c, &b, 1) == 1, "no answer");
	return 0;
}

/* One connection to port, from a child (which checks it is accelerated if
 * want_accel); returns the server's report of its end. */
static char connect_once(struct server *s, uint16_t port, int want_accel)
{
	struct sockaddr_in a = t_loopback(port);
	int st = t_wait(t_fork_client((struct sockaddr *)&a, sizeof(a), 0, want_accel, echo_one,
				      NULL),
			10000);
	cr_expect_eq(st, 0, "the client to port %u exited with %d (%d: not accelerated)",
		     (unsigned)port, st, T_EXIT_NOT_ACCEL);
	char b = '?';
	struct pollfd p = { .fd = s->report[0], .events = POLLIN };
	if (poll(&p, 1, 10000) == 1 && read(s->report[0], &b, 1) != 1)
		b = '?';
	return b;
}

/* A native listener registered with a monitor that is killed, and one made
 * while no monitor runs: within a second of a new monitor on the same
 * socket, it knows both, and new connections to them are accelerated (the
 * new monitor's own count says so). */
Test(restart, native_listeners_told_again)
{
	struct server old = { .n = 3 }, late = { .n = 1 };
	uint16_t old_port, late_port;
	t_monitor_start(&mon, NULL);
	servers[0] = server_start(&old, &old_port);
	cr_assert_eq(connect_once(&old, old_port, 1), '1', "not accelerated before the kill");

	t_monitor_kill(&mon);
	cr_expect_eq(connect_once(&old, old_port, 0), '0', "accelerated with no monitor");
	servers[1] = server_start(&late, &late_port); /* listens while none runs */

	t_monitor_restart(&mon);
	uint64_t up = t_now_ms(), took = 0;
	struct xio_msg_status st = t_monitor_status();
	while (st.listeners < 2 && (took = t_now_ms() - up) < RESUME_MS) {
		usleep(10000);
		st = t_monitor_status();
	}
	cr_expect_eq(st.listeners, 2, "the new monitor knows %u of 2 listeners after %llu ms",
		     st.listeners, (unsigned long long)took);
	cr_expect_eq(connect_once(&old, old_port, 1), '1',
		     "a new connection to the old listener is not accelerated");
	cr_expect_eq(connect_once(&late, late_port, 1), '1',
		     "a new connection to the listener made without a monitor is not accelerated");
	st = t_monitor_status();
	cr_expect_eq(st.accel_total, 2, "the new monitor accelerated %llu connection(s) of 2",
		     (unsigned long long)st.accel_total);
	t_reap(servers[0], 10000);
	t_reap(servers[1], 10000);
	servers[0] = servers[1] = 0;
	if (st.accel_total != 2)
		t_monitor_dump_log(&mon);
}
