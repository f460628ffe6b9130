/*
 * test_netns_forge.c - issue 8, item 8: a monitor that cannot read a
 * socket's network namespace from the socket (no CAP_NET_ADMIN) must not
 * pair it. Before, it took the namespace of the sending process instead, so
 * a socket built in a private namespace with a victim's 4-tuple, handed
 * over by a process in the victim's namespace, got the victim's segment.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "attack.h"

TestSuite(netns_forge, .fini = a_fini);

#define SECRET "the victim's secret"
#define EXIT_NO_USERNS 77
#define EXIT_GOT_SEGMENT 10

static void drop_net_admin(void)
{
	prctl(PR_CAPBSET_DROP, CAP_NET_ADMIN, 0, 0, 0);
}

/* CAP_NET_ADMIN in the effective set of pid, read from /proc. */
static int has_net_admin(pid_t pid)
{
	char path[64], line[256];
	unsigned long long eff = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f))
		sscanf(line, "CapEff: %llx", &eff);
	fclose(f);
	return (eff >> CAP_NET_ADMIN) & 1;
}

struct forge {
	uint16_t server_port, client_port;
};

/* Another user: a child in its own user and network namespace builds the
 * victim's connection there and passes us the server end, which we present
 * to the monitor as a socket we accepted. */
static int attacker(void *arg)
{
	const struct forge *f = arg;
	int sv[2];
	a_become(A_UID_ATTACKER);
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid_t pid = fork();
	if (pid == 0) {
		int c, s;
		if (a_private_netns() < 0)
			_exit(EXIT_NO_USERNS);
		if (a_kernel_pair(f->server_port, f->client_port, &c, &s) < 0)
			_exit(2);
		_exit(a_send_fd(sv[1], s) < 0 ? 3 : 0);
	}
	int st;
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_NO_USERNS)
		return EXIT_NO_USERNS;
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "namespace child: status %d", st);
	int forged = a_recv_fd(sv[0]);
	T_CHECK(forged >= 0, "no forged socket");
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "control session: %s", strerror(-ctl));
	struct xio_msg_hdr acc;
	char reply[XIO_CTL_MAX_MSG];
	int segfd = -1;
	int type = a_ctl_call(ctl, XIO_MSG_ACCEPT, &acc, sizeof(acc), forged, reply, &segfd, 5000);
	T_CHECK(type > 0, "ACCEPT: %s", strerror(-type));
	if (type == XIO_MSG_ATTACH || segfd >= 0) {
		fprintf(stderr, "attacker: got connection %llu's segment (fd %d)\n",
			(unsigned long long)((struct xio_msg_attach *)reply)->conn_id, segfd);
		return EXIT_GOT_SEGMENT;
	}
	T_CHECK(type == XIO_MSG_FALLBACK, "reply type %#x", type);
	return 0;
}

static int victim_client(xio_conn *c, void *arg)
{
	int *go = arg;
	T_CHECK(xio_write(c, SECRET, sizeof(SECRET)) == sizeof(SECRET), "write");
	/* Keep the connection until the attack is over. */
	t_await(go[0], 20000);
	return 0;
}

/* A socket forged in a private namespace with a victim's 4-tuple gets no
 * segment from a monitor without CAP_NET_ADMIN, and the victim's connection
 * keeps working. */
Test(netns_forge, forged_socket_gets_no_segment)
{
		xio_listener *lis;
	xio_conn *srv;
	int go[2];
	t_monitor_pre_exec = drop_net_admin;
	t_monitor_start(&a_mon, NULL);
	t_monitor_pre_exec = NULL;
	cr_assert(!has_net_admin(a_mon.pid), "the monitor still has CAP_NET_ADMIN");

	struct sockaddr_in a = t_loopback(0);
	cr_assert_eq(xio_listen(&lis, (struct sockaddr *)&a, sizeof(a), 16, 0), 0);
	a = t_loopback(t_listener_port(lis));
	cr_assert_eq(pipe(go), 0);
	pid_t client = t_fork_client((struct sockaddr *)&a, sizeof(a), 0, 0, victim_client, go);
	cr_assert_eq(t_accept(lis, &srv, 0, 5000), 0);

	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);
	cr_assert_eq(getpeername(xio_conn_fd(srv), (struct sockaddr *)&peer, &pl), 0);
	struct forge f = { .server_port = t_listener_port(lis), .client_port = ntohs(peer.sin_port) };
	int st = t_wait(a_fork(attacker, &f), 10000);
	if (st == EXIT_NO_USERNS) {
		t_post(go[1]);
		t_reap(client, 5000);
		t_monitor_stop(&a_mon);
		cr_skip_test("no unprivileged user namespaces here");
	}
	if (st)
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(st, 0, "the attacker's exit status %d (%d: it got the victim's segment)", st,
		     EXIT_GOT_SEGMENT);

	char buf[sizeof(SECRET)];
	cr_expect_eq(t_read_full(srv, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	cr_expect_str_eq(buf, SECRET);
	t_post(go[1]);
	t_reap(client, 5000);
	xio_close(srv);
	xio_listener_close(lis);
	t_monitor_stop(&a_mon);
}

static int echo_client(xio_conn *c, void *arg)
{
	char b = 'x';
	(void)arg;
	T_CHECK(xio_write(c, &b, 1) == 1, "write");
	T_CHECK(t_read_full(c, &b, 1) == 1, "read");
	return 0;
}

/* Inside a network namespace of its own, a server and a client are paired
 * (the monitor asks the kernel about their listener in that namespace):
 * exit 0 if accelerated and the byte went both ways. */
static int in_private_netns(void *arg)
{
	xio_listener *l;
	xio_conn *c;
	char b;
	(void)arg;
	T_CHECK(unshare(CLONE_NEWNET) == 0, "unshare: %s", strerror(errno));
	T_CHECK(a_private_netns_lo_up() == 0, "lo up");
	struct sockaddr_in a = t_loopback(0);
	T_CHECK(xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 4, 0) == 0, "listen");
	a = t_loopback(t_listener_port(l));
	pid_t pid = t_fork_client((struct sockaddr *)&a, sizeof(a), 0, 1, echo_client, NULL);
	T_CHECK(t_accept(l, &c, 0, 5000) == 0, "accept");
	T_CHECK(t_read_full(c, &b, 1) == 1 && xio_write(c, &b, 1) == 1, "echo");
	int accel = xio_conn_is_accelerated(c);
	int st;
	waitpid(pid, &st, 0);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client status %d", st);
	return accel ? 0 : 5;
}

/* A monitor with CAP_NET_ADMIN pairs connections inside another network
 * namespace too. */
Test(netns_forge, private_namespace_pairs)
{
	t_monitor_start(&a_mon, NULL);
	int st = t_wait(a_fork(in_private_netns, NULL), 15000);
	if (st)
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(st, 0, "exit %d (5: not accelerated)", st);
	t_monitor_stop(&a_mon);
}
