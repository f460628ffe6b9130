/*
 * test_stat_uid.c - issue 15, item 4: the connection table (CONNS, what
 * `xio stat` shows) tells a user only about its own connections: those
 * where the process at either end has its uid, as the monitor recorded it.
 * Root sees them all. Before, any user read every uid's and namespace's
 * 4-tuples, pids, program names and byte counts.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attack.h"

TestSuite(stat_uid, .fini = a_fini);

#define MAX_SEEN 64

/* One end of a connection that stays open until the test is done: the
 * server (xio_listen, accept one) or the client (xio_connect). A client
 * with kernel_port set connects to that port, where a plain kernel
 * listener never runs xio: its connection is a FALLBACK, a "recent" row. */
struct end {
	uid_t uid;
	uint16_t port;     /* the client's destination */
	int kernel_peer;
	const char *name;  /* the client's program name, if set */
	int up[2];         /* -> test: port (server), or '1'/'0' accelerated (client) */
	int done[2];       /* test -> end: close and exit */
};

static int server_main(void *arg)
{
	struct end *e = arg;
	xio_listener *l;
	xio_conn *c;
	char b;
	a_become(e->uid);
	alarm(30);
	struct sockaddr_in a = t_loopback(0);
	T_CHECK(xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 4, 0) == 0, "listen");
	uint16_t port = t_listener_port(l);
	T_CHECK(write(e->up[1], &port, sizeof(port)) == sizeof(port), "port");
	int r = t_accept(l, &c, 0, 10000);
	T_CHECK(r == 0, "accept: %s", strerror(-r));
	T_CHECK(t_read_full(c, &b, 1) == 1, "read");
	T_CHECK(xio_write(c, &b, 1) == 1, "write");
	t_await(e->done[0], 20000);
	xio_close(c);
	xio_listener_close(l);
	return 0;
}

static int client_main(void *arg)
{
	struct end *e = arg;
	xio_conn *c;
	char b = 'x';
	a_become(e->uid);
	alarm(30);
	if (e->name)
		prctl(PR_SET_NAME, e->name, 0, 0, 0);
	struct sockaddr_in a = t_loopback(e->port);
	int r = xio_connect(&c, (struct sockaddr *)&a, sizeof(a), 0);
	T_CHECK(r == 0, "xio_connect: %s", strerror(-r));
	if (!e->kernel_peer) {
		T_CHECK(xio_write(c, &b, 1) == 1, "write");
		T_CHECK(t_read_full(c, &b, 1) == 1, "no answer");
	}
	char rep = xio_conn_is_accelerated(c) ? '1' : '0';
	T_CHECK(write(e->up[1], &rep, 1) == 1, "report");
	t_await(e->done[0], 20000);
	xio_close(c);
	return 0;
}

/* A connection between a client and a server, held open; pid[0] is the
 * client's, pid[1] the server's (0: a kernel server). */
struct held {
	struct end cli, srv;
	pid_t pid[2];
	char accel;
};

/* Wait (bounded) until fd has something to read, without reading it. */
static int readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, timeout_ms) == 1;
}

static void hold_named(struct held *h, uid_t client_uid, uid_t server_uid, const char *name)
{
	memset(h, 0, sizeof(*h));
	h->cli.name = name;
	cr_assert_eq(pipe(h->srv.up), 0);
	cr_assert_eq(pipe(h->srv.done), 0);
	cr_assert_eq(pipe(h->cli.up), 0);
	cr_assert_eq(pipe(h->cli.done), 0);
	h->srv.uid = server_uid;
	h->pid[1] = a_fork(server_main, &h->srv);
	cr_assert(readable(h->srv.up[0], 5000), "the server did not start");
	cr_assert_eq(read(h->srv.up[0], &h->cli.port, 2), 2);
	h->cli.uid = client_uid;
	h->pid[0] = a_fork(client_main, &h->cli);
	cr_assert(readable(h->cli.up[0], 10000), "the client did not connect");
	cr_assert_eq(read(h->cli.up[0], &h->accel, 1), 1);
}

static void hold(struct held *h, uid_t client_uid, uid_t server_uid)
{
	hold_named(h, client_uid, server_uid, NULL);
}

static void hold_to_kernel(struct held *h, uid_t client_uid, uint16_t port)
{
	memset(h, 0, sizeof(*h));
	cr_assert_eq(pipe(h->cli.up), 0);
	cr_assert_eq(pipe(h->cli.done), 0);
	h->cli.uid = client_uid;
	h->cli.port = port;
	h->cli.kernel_peer = 1;
	h->pid[0] = a_fork(client_main, &h->cli);
	cr_assert(readable(h->cli.up[0], 10000), "the client did not connect");
	cr_assert_eq(read(h->cli.up[0], &h->accel, 1), 1);
}

static void release(struct held *h)
{
	t_post(h->cli.done[1]);
	if (h->pid[1])
		t_post(h->srv.done[1]);
	for (int i = 0; i < 2; i++)
		if (h->pid[i])
			cr_expect_eq(t_wait(h->pid[i], 10000), 0, "an end failed");
}

struct query {
	uid_t uid;
	int out[2];
};

/* As uid, read the whole table over a raw session, page by page, and pass
 * the count and the entries to the test. */
static int query_main(void *arg)
{
	struct query *q = arg;
	struct xio_msg_conn_info seen[MAX_SEEN];
	uint32_t n = 0;
	uint64_t after = 0;
	int more = 1;
	a_become(q->uid);
	int s = a_ctl_open();
	T_CHECK(s >= 0, "control session: %s", strerror(-s));
	while (more) {
		struct xio_msg_conns m;
		memset(&m, 0, sizeof(m));
		m.after = after;
		T_CHECK(a_ctl_post(s, XIO_MSG_CONNS, &m, sizeof(m), -1) == 0, "CONNS");
		for (;;) {
			union {
				struct xio_msg_hdr h;
				struct xio_msg_conn_info ci;
				struct xio_msg_conns_end end;
				char raw[XIO_CTL_MAX_MSG];
			} r;
			int fd = -1;
			struct pollfd p = { .fd = s, .events = POLLIN };
			T_CHECK(poll(&p, 1, 5000) == 1, "no answer to CONNS");
			T_CHECK(xio_ctl_recv(s, &r, &fd, 0) > 0, "CONNS answer");
			if (r.h.type == XIO_MSG_CONNS_END) {
				more = r.end.more && r.end.last > after;
				after = r.end.last;
				break;
			}
			T_CHECK(r.h.type == XIO_MSG_CONN_INFO, "answer of type %u", r.h.type);
			if (n < MAX_SEEN)
				seen[n++] = r.ci;
		}
	}
	T_CHECK(write(q->out[1], &n, sizeof(n)) == sizeof(n), "count");
	T_CHECK(write(q->out[1], seen, n * sizeof(seen[0])) == (ssize_t)(n * sizeof(seen[0])),
		"entries");
	return 0;
}

/* The table as uid sees it: *n entries into seen. */
static void table_as(uid_t uid, struct xio_msg_conn_info *seen, uint32_t *n)
{
	struct query q = { .uid = uid };
	cr_assert_eq(pipe(q.out), 0);
	pid_t pid = a_fork(query_main, &q);
	cr_assert_eq(t_wait(pid, 10000), 0, "the query as uid %u failed", (unsigned)uid);
	cr_assert_eq(read(q.out[0], n, sizeof(*n)), (ssize_t)sizeof(*n));
	if (*n)
		cr_assert_eq(read(q.out[0], seen, *n * sizeof(seen[0])),
			     (ssize_t)(*n * sizeof(seen[0])));
	close(q.out[0]);
	close(q.out[1]);
}

static int shows(const struct xio_msg_conn_info *seen, uint32_t n, const struct held *h)
{
	for (uint32_t i = 0; i < n; i++)
		if (seen[i].pid[0] == (uint32_t)h->pid[0] && seen[i].pid[1] == (uint32_t)h->pid[1])
			return 1;
	return 0;
}

/* Users see the rows where either end is theirs, and only those; a user
 * with no connection sees none; root sees every row. The rows: two
 * connections within one uid each, one between the two uids, and one of
 * the second uid's clients to a kernel server (a TCP row). */
Test(stat_uid, a_user_sees_its_own_connections)
{
	struct held own1, own2, mixed, tcp2;
	const uid_t u1 = A_UID_VICTIM, u2 = A_UID_ATTACKER;
	struct xio_msg_conn_info seen[MAX_SEEN];
	uint32_t n;
	uint16_t kport;

	t_monitor_start(&a_mon, NULL);
	int kl = a_listen_loopback(0, &kport);
	cr_assert(kl >= 0);
	hold(&own1, u1, u1);
	hold(&own2, u2, u2);
	hold(&mixed, u1, u2);
	hold_to_kernel(&tcp2, u2, kport);
	cr_assert(own1.accel == '1' && own2.accel == '1' && mixed.accel == '1',
		  "not accelerated: %c %c %c", own1.accel, own2.accel, mixed.accel);
	cr_assert_eq(tcp2.accel, '0');

	table_as(0, seen, &n);
	cr_expect(shows(seen, n, &own1) && shows(seen, n, &own2) && shows(seen, n, &mixed) &&
			  shows(seen, n, &tcp2),
		  "root does not see every row (%u rows)", n);

	table_as(u1, seen, &n);
	cr_expect(shows(seen, n, &own1), "uid %u does not see its own connection", u1);
	cr_expect(shows(seen, n, &mixed), "uid %u does not see its connection to uid %u", u1, u2);
	cr_expect(!shows(seen, n, &own2), "uid %u sees a connection of uid %u alone", u1, u2);
	cr_expect(!shows(seen, n, &tcp2), "uid %u sees a TCP row of uid %u", u1, u2);
	cr_expect_eq(n, 2, "uid %u sees %u rows, not its 2", u1, n);

	table_as(u2, seen, &n);
	cr_expect(shows(seen, n, &own2) && shows(seen, n, &mixed) && shows(seen, n, &tcp2),
		  "uid %u does not see all of its rows", u2);
	cr_expect(!shows(seen, n, &own1), "uid %u sees a connection of uid %u alone", u2, u1);
	cr_expect_eq(n, 3, "uid %u sees %u rows, not its 3", u2, n);

	table_as(A_UID_THIRD, seen, &n);
	cr_expect_eq(n, 0, "uid %u, with no connection, sees %u rows (the first: pids %u and %u)",
		     A_UID_THIRD, n, n ? seen[0].pid[0] : 0, n ? seen[0].pid[1] : 0);

	release(&own1);
	release(&own2);
	release(&mixed);
	release(&tcp2);
	close(kl);
	a_monitor_stop();
}

/* The stdout of `xio stat` (text) as root on a_mon, into out. */
static void xio_stat_text(char *out, size_t len)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		alarm(10);
		execl(XIO_CMD_BIN, "xio", "stat", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	size_t n = 0;
	ssize_t r;
	while (n < len - 1 && (r = read(p[0], out + n, len - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = 0;
	close(p[0]);
	cr_assert_eq(t_wait(pid, 10000), 0, "xio stat failed: %s", out);
}

/* A program name is what the process chose (prctl): one made of terminal
 * escapes reaches `xio stat` as '?', never as bytes the terminal of whoever
 * reads the table (root) would obey. Before, it was printed as it was. */
Test(stat_uid, program_names_do_not_reach_the_terminal)
{
	struct held h;
	static char out[16384];
	t_monitor_start(&a_mon, NULL);
	hold_named(&h, A_UID_ATTACKER, A_UID_ATTACKER, "\033]2;owned\007x");
	cr_assert_eq(h.accel, '1');
	xio_stat_text(out, sizeof(out));
	cr_expect(strchr(out, '\033') == NULL && strchr(out, '\007') == NULL,
		  "xio stat printed a control byte of a program name");
	cr_expect(strstr(out, "?]2;owned?x") != NULL, "the name is not shown tamed:\n%s", out);
	release(&h);
	a_monitor_stop();
}
