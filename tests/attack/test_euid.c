/*
 * test_euid.c - issue 15, item 5: the uid the rules name is the uid a
 * process acts as, its effective uid, on every message (docs/config.md,
 * "Which uid a rule names"). Before, the kernel's per-message credentials carried the
 * real uid, so a root daemon that dropped with seteuid() was judged as
 * root and escaped a rule naming the uid it had dropped to. And whatever
 * uid a process gives, it can be judged only as a uid it holds.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attack.h"

TestSuite(euid, .fini = a_fini);

/* Effective uid only: the real and saved uids stay root's. */
static int drop_effective(uid_t uid)
{
	return setresuid((uid_t)-1, uid, (uid_t)-1);
}

struct server {
	int port_pipe[2], dropped[2], report[2];
};

/* Listens as root, then seteuid(A_UID_THIRD) (it could switch back), and
 * only then accepts. */
static int euid_server_main(void *arg)
{
	struct server *s = arg;
	xio_listener *l;
	xio_conn *c;
	char b;
	alarm(30);
	struct sockaddr_in a = t_loopback(0);
	T_CHECK(xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 4, 0) == 0, "listen");
	uint16_t port = t_listener_port(l);
	T_CHECK(drop_effective(A_UID_THIRD) == 0, "seteuid: %s", strerror(errno));
	t_post(s->dropped[1]);
	T_CHECK(write(s->port_pipe[1], &port, sizeof(port)) == sizeof(port), "port");
	int r = t_accept(l, &c, 0, 10000);
	T_CHECK(r == 0, "accept: %s", strerror(-r));
	T_CHECK(t_read_full(c, &b, 1) == 1, "read");
	T_CHECK(xio_write(c, &b, 1) == 1, "write");
	char rep = xio_conn_is_accelerated(c) ? '1' : '0';
	T_CHECK(write(s->report[1], &rep, 1) == 1, "report");
	xio_close(c);
	xio_listener_close(l);
	return 0;
}

static char next_report(int fd)
{
	char c = '?';
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 10000) != 1 || read(fd, &c, 1) != 1)
		c = '?';
	return c;
}

/* `deny server-uid N` holds for a root daemon that dropped to N with
 * seteuid after it listened. Before, its messages carried its real uid
 * (root) and it was accelerated. */
Test(euid, server_dropped_with_seteuid_is_judged)
{
	struct server s;
	char text[64];
	uint16_t port;
	snprintf(text, sizeof(text), "deny server-uid %u\n", A_UID_THIRD);
	a_monitor_with_config(text);
	cr_assert_eq(pipe(s.port_pipe), 0);
	cr_assert_eq(pipe(s.dropped), 0);
	cr_assert_eq(pipe(s.report), 0);
	pid_t srv = a_fork(euid_server_main, &s);
	cr_assert(t_await(s.dropped[0], 10000), "the server did not drop its effective uid");
	cr_assert_eq(read(s.port_pipe[0], &port, sizeof(port)), (ssize_t)sizeof(port));
	int cst = t_wait(a_client(0, port), 15000);
	char rep = next_report(s.report[0]);
	if (rep != '0' || cst != A_CLIENT_TCP)
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(rep, '0', "the server with effective uid %u was accelerated ('%c')",
		     A_UID_THIRD, rep);
	cr_expect_eq(cst, A_CLIENT_TCP, "client exit %d", cst);
	t_reap(srv, 5000);
	a_monitor_stop();
}

/* A root client that seteuid()s to N before it connects is judged as N:
 * `deny client-uid N` keeps it on TCP. Before, it was accelerated. */
static int euid_client_main(void *arg)
{
	uint16_t port = *(uint16_t *)arg;
	xio_conn *c;
	char b = 'x';
	alarm(10);
	T_CHECK(drop_effective(A_UID_THIRD) == 0, "seteuid: %s", strerror(errno));
	struct sockaddr_in a = t_loopback(port);
	int r = xio_connect(&c, (struct sockaddr *)&a, sizeof(a), 0);
	T_CHECK(r == 0, "xio_connect: %s", strerror(-r));
	T_CHECK(xio_write(c, &b, 1) == 1, "write");
	T_CHECK(t_read_full(c, &b, 1) == 1, "no answer");
	int accel = xio_conn_is_accelerated(c);
	xio_close(c);
	return accel ? A_CLIENT_ACCEL : A_CLIENT_TCP;
}

Test(euid, client_dropped_with_seteuid_is_judged)
{
	int rep[2];
	char text[64];
	uint16_t port;
	snprintf(text, sizeof(text), "deny client-uid %u\n", A_UID_THIRD);
	a_monitor_with_config(text);
	cr_assert_eq(pipe(rep), 0);
	struct a_server s = { .uid = 0, .n = 1, .go_fd = -1, .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &port);
	int cst = t_wait(a_fork(euid_client_main, &port), 15000);
	char r = next_report(rep[0]);
	if (cst != A_CLIENT_TCP)
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(cst, A_CLIENT_TCP, "the client with effective uid %u: exit %d (%d: TCP)",
		     A_UID_THIRD, cst, A_CLIENT_TCP);
	cr_expect_eq(r, '0', "the server says accelerated '%c'", r);
	t_reap(srv, 5000);
	a_monitor_stop();
}

/* Send one HELLO on sock with credentials {pid, uid, gid} attached.
 * Returns 0 or -errno (the kernel's verdict on the claim). */
static int send_claiming(int sock, uid_t uid, gid_t gid)
{
	struct xio_msg_hello h;
	union {
		char b[CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u;
	memset(&h, 0, sizeof(h));
	xio_ctl_hdr(&h.h, XIO_MSG_HELLO, 1);
	struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			    .msg_controllen = sizeof(u.b) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	struct ucred cr = { .pid = getpid(), .uid = uid, .gid = gid };
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_CREDENTIALS;
	c->cmsg_len = CMSG_LEN(sizeof(cr));
	memcpy(CMSG_DATA(c), &cr, sizeof(cr));
	return sendmsg(sock, &m, MSG_NOSIGNAL) == (ssize_t)sizeof(h) ? 0 : -errno;
}

struct claim {
	int sock;
	int dropped_only; /* seteuid: the real and saved uids stay 0 */
};

/* Exit 0 if the kernel refused the claim of another uid, 1 if it let it
 * through, 2 if it refused the claim of the process's own uids. */
static int claim_main(void *arg)
{
	struct claim *cl = arg;
	if (cl->dropped_only)
		T_CHECK(drop_effective(A_UID_THIRD) == 0, "seteuid");
	else
		a_become(A_UID_THIRD);
	if (send_claiming(cl->sock, A_UID_THIRD, getegid()) < 0)
		return 2;
	return send_claiming(cl->sock, A_UID_VICTIM, getegid()) < 0 ? 0 : 1;
}

/* What the monitor judges by cannot be stretched: a process can be judged
 * only as one of its own real, effective or saved uids (or any, with
 * CAP_SETUID, when it could become any). A uid it does not hold is refused
 * by the kernel, whether it never had more (uid N throughout) or dropped
 * from root with seteuid (root again only by its real and saved uid). */
Test(euid, a_claim_of_a_uid_not_held_is_refused)
{
	int sv[2];
	for (int dropped_only = 0; dropped_only < 2; dropped_only++) {
		cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
		struct claim cl = { .sock = sv[0], .dropped_only = dropped_only };
		int st = t_wait(a_fork(claim_main, &cl), 5000);
		cr_expect_eq(st, 0, "%s: the claim of uid %u %s",
			     dropped_only ? "seteuid" : "setuid", A_UID_VICTIM,
			     st == 1 ? "went through" : "failed, and so did its own");
		close(sv[0]);
		close(sv[1]);
	}
}

/* A message that carries no credentials of the kernel's (queued before
 * the receiver asked for them with SO_PASSCRED, which the monitor does
 * for each session after accepting it) comes with pid 0 and a uid that is
 * nobody's (65534, or 0 on some kernels): xio_ctl_recv_cred reports no
 * credentials rather than that uid. Before, the monitor took 65534 as the
 * sender's uid. */
Test(euid, no_credentials_is_no_uid)
{
	int sv[2];
	struct xio_msg_hello h;
	char buf[XIO_CTL_MAX_MSG];
	int one = 1, fd = -1;
	uint32_t uid = 12345;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	memset(&h, 0, sizeof(h));
	xio_ctl_hdr(&h.h, XIO_MSG_HELLO, 1);
	cr_assert_eq(xio_ctl_send(sv[1], &h, -1, 0), 0);
	cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
	cr_assert_eq(xio_ctl_recv_cred(sv[0], buf, &fd, 0, &uid), (ssize_t)sizeof(h));
	cr_expect_eq(uid, XIO_CTL_NO_CRED, "credentials the kernel never attached read as uid %u",
		     uid);
	close(sv[0]);
	close(sv[1]);
}
