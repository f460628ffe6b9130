/*
 * test_listener_stale.c - issue 8, item 6: a registration counts only
 * while its own socket listens at the address, with its own options. An
 * xio client connecting to an ordinary kernel server must not be
 * "accelerated" into a segment nobody reads because a registration outlived
 * its socket, or because an IPV6_V6ONLY wildcard was taken to cover IPv4.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "attack.h"

TestSuite(listener_stale, .fini = a_fini);

/* An ordinary kernel server on addr:port answers one byte; returns 1 if the
 * client's byte came (bounded waits). */
static int kernel_server_once(int lsock)
{
	struct pollfd p = { .fd = lsock, .events = POLLIN };
	char b;
	if (poll(&p, 1, 5000) != 1)
		return 0;
	int c = accept(lsock, NULL, NULL);
	if (c < 0)
		return 0;
	p.fd = c;
	int ok = poll(&p, 1, 3000) == 1 && read(c, &b, 1) == 1 && write(c, &b, 1) == 1;
	close(c);
	return ok;
}

static void run(int v6only)
{
		struct a_reg r = { .uid = A_UID_ATTACKER, .v6only = v6only };
	uint16_t port;
	t_monitor_start(&a_mon, NULL);
	/* Another user registers a listener, then closes it without a word,
	 * or keeps an IPv6-only one. */
	pid_t reg = a_register(&r, &port);

	/* The ordinary server: on 127.0.0.1:port where the registration's
	 * socket was, or on 0.0.0.0:port beside the IPv6-only one. */
	int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = t_loopback(port);
	if (v6only)
		a.sin_addr.s_addr = htonl(INADDR_ANY);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0, "bind: %s", strerror(errno));
	cr_assert_eq(listen(ls, 16), 0);

	pid_t client = a_client(0, port);
	int answered = kernel_server_once(ls);
	int st = t_wait(client, 15000);
	if (!answered || st != A_CLIENT_TCP)
		t_monitor_dump_log(&a_mon);
	cr_expect(answered, "the kernel server never got the client's byte (it went into a "
			    "segment nobody reads)");
	cr_expect_eq(st, A_CLIENT_TCP, "client exit %d (%d: kernel TCP, %d: accelerated)", st,
		     A_CLIENT_TCP, A_CLIENT_ACCEL);
	close(ls);
	t_post(r.done[1]);
	t_reap(reg, 5000);
	t_monitor_stop(&a_mon);
}

/* A registration whose socket was closed without UNLISTEN does not capture
 * connections to the next, ordinary, server on that address. */
Test(listener_stale, closed_registration_captures_nothing)
{
	run(0);
}

/* An IPv6 wildcard registered with IPV6_V6ONLY does not capture IPv4
 * connections to an ordinary 0.0.0.0 server on the same port. */
Test(listener_stale, v6only_wildcard_takes_no_ipv4)
{
	run(1);
}
