/*
 * test_acl_uid.c - the monitor's rules between processes of different
 * uids (docs/config.md), and issue 8, item 7: the server uid a rule judges
 * is that of the process holding the accepted socket, never of whichever
 * registration matched the address.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "attack.h"

TestSuite(acl_uid, .fini = a_fini);


/* The accelerated flag the server reported for its next connection. */
static char next_report(int fd)
{
	char c = '?';
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 10000) == 1 && read(fd, &c, 1) != 1)
		c = '?';
	return c;
}

/* Connect as client_uid and check the outcome on both ends. */
static void expect_pair(uid_t client_uid, uint16_t port, int report_fd, int accel)
{
	int st = t_wait(a_client(client_uid, port), 15000);
	char rep = next_report(report_fd);
	if (st != (accel ? A_CLIENT_ACCEL : A_CLIENT_TCP))
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(st, accel ? A_CLIENT_ACCEL : A_CLIENT_TCP,
		     "uid %u to port %u: client exit %d (%d: TCP, %d: accelerated)",
		     (unsigned)client_uid, port, st, A_CLIENT_TCP, A_CLIENT_ACCEL);
	cr_expect_eq(rep, accel ? '1' : '0', "uid %u to port %u: server says accelerated '%c'",
		     (unsigned)client_uid, port, rep);
}

/* A rule on both uids denies one client uid and not another, against the
 * same server of a third uid. */
Test(acl_uid, client_and_server_uid)
{
	int rep[2];
	uint16_t port;
	char text[128];
	snprintf(text, sizeof(text), "deny client-uid %u server-uid %u\n", A_UID_ATTACKER,
		 A_UID_VICTIM);
	a_monitor_with_config(text);
	cr_assert_eq(pipe(rep), 0);
	struct a_server s = { .uid = A_UID_VICTIM, .n = 2, .go_fd = -1, .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &port);
	expect_pair(A_UID_ATTACKER, port, rep[0], 0);
	expect_pair(A_UID_THIRD, port, rep[0], 1);
	t_reap(srv, 5000);
	a_monitor_stop();
}

/* same-uid with default deny: only a client of the server's own uid. */
Test(acl_uid, same_uid_only)
{
	int rep[2];
	uint16_t port;
	a_monitor_with_config("default deny\nallow same-uid\n");
	cr_assert_eq(pipe(rep), 0);
	struct a_server s = { .uid = A_UID_VICTIM, .n = 2, .go_fd = -1, .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &port);
	expect_pair(A_UID_VICTIM, port, rep[0], 1);
	expect_pair(A_UID_ATTACKER, port, rep[0], 0);
	t_reap(srv, 5000);
	a_monitor_stop();
}

/* A free port now (the kernel's choice; the socket is closed again). */
static uint16_t probe_port(void)
{
	uint16_t port;
	int s = a_listen_loopback(0, &port);
	cr_assert(s >= 0);
	close(s);
	return port;
}

/* A port range denies the servers inside it and not one outside. */
Test(acl_uid, port_range)
{
	int rep[2];
	uint16_t in, out, got;
	char text[128];
	in = probe_port();
	do
		out = probe_port();
	while (out == in);
	if (in < out)
		snprintf(text, sizeof(text), "deny port 1-%u\n", in);
	else
		snprintf(text, sizeof(text), "deny port %u-65535\n", in);
	a_monitor_with_config(text);
	cr_assert_eq(pipe(rep), 0);
	struct a_server s1 = { .uid = A_UID_VICTIM, .port = in, .n = 1, .go_fd = -1,
			       .report_fd = rep[1] };
	struct a_server s2 = s1;
	s2.port = out;
	pid_t p1 = a_server_start(&s1, &got);
	cr_assert_eq(got, in);
	expect_pair(A_UID_ATTACKER, in, rep[0], 0);
	pid_t p2 = a_server_start(&s2, &got);
	cr_assert_eq(got, out);
	expect_pair(A_UID_ATTACKER, out, rep[0], 1);
	t_reap(p1, 5000);
	t_reap(p2, 5000);
	a_monitor_stop();
}

/* Item 7: with "deny server-uid V", a third uid registers [::]:P with
 * IPV6_V6ONLY beside V's 0.0.0.0:P server. An IPv4 client (first to ask)
 * must still be judged against V, the uid that accepts it. */
Test(acl_uid, server_uid_is_the_acceptor)
{
	int rep[2], go[2];
	uint16_t port, rport;
	char text[64];
	snprintf(text, sizeof(text), "deny server-uid %u\n", A_UID_VICTIM);
	a_monitor_with_config(text);
	cr_assert_eq(pipe(rep), 0);
	cr_assert_eq(pipe(go), 0);
	struct a_server s = { .uid = A_UID_VICTIM, .any = 1, .n = 1, .go_fd = go[0],
			      .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &port);
	struct a_reg r = { .uid = A_UID_THIRD, .v6only = 1, .port = port };
	pid_t reg = a_register(&r, &rport);
	cr_assert_eq(rport, port);

	/* The server accepts only once the client's side is decided. */
	pid_t client = a_client(A_UID_ATTACKER, port);
	struct xio_msg_status st = t_monitor_status();
	for (int i = 0; i < 500 && st.conns == 0; i++) {
		usleep(10000);
		st = t_monitor_status();
	}
	t_post(go[1]);
	int cst = t_wait(client, 15000);
	char accel = next_report(rep[0]);
	if (accel != '0' || cst != A_CLIENT_TCP)
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(accel, '0', "the server of uid %u was accelerated despite the rule",
		     A_UID_VICTIM);
	cr_expect_eq(cst, A_CLIENT_TCP, "client exit %d", cst);
	t_post(r.done[1]);
	t_reap(reg, 5000);
	t_reap(srv, 5000);
	a_monitor_stop();
}

/* A client of uid 0 asks first and is decided for the root registrant; the
 * worker of a denied uid accepts. The rule holds (the worker never joins
 * the segment), and it costs no byte: the client wrote 64 KiB into the
 * segment before the accept, and they come over TCP (before, the client
 * was told its peer was gone, and the worker waited for data that never
 * came). */
Test(acl_uid, late_acceptor_refused_loses_nothing)
{
	char text[64], rep[2];
	snprintf(text, sizeof(text), "deny server-uid %u\n", A_UID_THIRD);
	a_monitor_with_config(text);
	int bytes_ok = a_late_acceptor(A_UID_THIRD, 64u << 10, rep);
	if (!bytes_ok || rep[0] != '0' || rep[1] != '0')
		t_monitor_dump_log(&a_mon);
	cr_expect(bytes_ok, "a byte was lost or changed on the way");
	cr_expect_eq(rep[0], '0', "the refused worker joined the segment");
	cr_expect_eq(rep[1], '0', "the refused worker joined the second segment");
	a_monitor_stop();
}

struct dropper {
	int port_pipe[2], dropped[2], report[2];
};

/* Listens as root (its session opens as root), then drops to the denied
 * uid for good, and only then accepts. */
static int dropper_main(void *arg)
{
	struct dropper *d = arg;
	xio_listener *l;
	xio_conn *c;
	char b;
	struct sockaddr_in a = t_loopback(0);
	T_CHECK(xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 4, 0) == 0, "listen");
	uint16_t port = t_listener_port(l);
	a_become(A_UID_THIRD);
	t_post(d->dropped[1]);
	T_CHECK(write(d->port_pipe[1], &port, sizeof(port)) == sizeof(port), "port");
	int r = t_accept(l, &c, 0, 10000);
	T_CHECK(r == 0, "accept: %s", strerror(-r));
	T_CHECK(t_read_full(c, &b, 1) == 1, "read");
	T_CHECK(xio_write(c, &b, 1) == 1, "write");
	char rep = xio_conn_is_accelerated(c) ? '1' : '0';
	T_CHECK(write(d->report[1], &rep, 1) == 1, "report");
	xio_close(c);
	xio_listener_close(l);
	return 0;
}

/* A process is judged as the uid it is when it acts, not the one it had
 * when it opened its session: a server that listened as root and then
 * dropped to a denied uid (as a daemon does) is refused when it accepts.
 * Before, the monitor took the uid once, from SO_PEERCRED, and accelerated
 * it as root. */
Test(acl_uid, uid_dropped_after_listen_is_judged)
{
	struct dropper d;
	char text[64];
	uint16_t port;
	snprintf(text, sizeof(text), "deny server-uid %u\n", A_UID_THIRD);
	a_monitor_with_config(text);
	cr_assert_eq(pipe(d.port_pipe), 0);
	cr_assert_eq(pipe(d.dropped), 0);
	cr_assert_eq(pipe(d.report), 0);
	pid_t srv = a_fork(dropper_main, &d);
	cr_assert(t_await(d.dropped[0], 10000), "the server did not drop its uid");
	cr_assert_eq(read(d.port_pipe[0], &port, sizeof(port)), (ssize_t)sizeof(port));
	int cst = t_wait(a_client(0, port), 15000);
	char rep = next_report(d.report[0]);
	if (rep != '0' || cst != A_CLIENT_TCP)
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(rep, '0', "the server that dropped to uid %u was accelerated ('%c')",
		     A_UID_THIRD, rep);
	cr_expect_eq(cst, A_CLIENT_TCP, "client exit %d", cst);
	t_reap(srv, 5000);
	a_monitor_stop();
}
