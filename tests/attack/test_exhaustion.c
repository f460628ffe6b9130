/*
 * test_exhaustion.c - issue 8, item 9: one user cannot exhaust the monitor.
 * Pending connections and listeners are capped per process and per uid, a
 * client over a limit is told which one and stays on TCP, parked intents
 * cost nothing to later pairings, and running out of fds neither spins the
 * monitor nor stops it from serving others, nor cuts off a process whose
 * message lost its fd. Issue 15, item 6: established connections count
 * too, each uid is held to a share of the monitor's fds and of the free
 * hugepages, and the limits come from the monitor's own fd limit, whatever
 * the configuration says.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "attack.h"

TestSuite(exhaustion, .fini = a_fini);


/* Post n INTENTs, numbered from first, each with a fresh TCP socket that
 * never connects (we drop our copies: the monitor holds them). */
static int park_intents(int ctl, uint64_t first, int n)
{
	for (int i = 0; i < n; i++) {
		struct xio_msg_intent im;
		memset(&im, 0, sizeof(im));
		im.intent = first + (uint64_t)i;
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0 || a_ctl_post(ctl, XIO_MSG_INTENT, &im, sizeof(im), s) < 0)
			return -1;
		close(s);
	}
	return 0;
}

/* CONNECTED for intent: the reply's reason and err (FALLBACK), or type. */
static int connected(int ctl, uint64_t intent, int *err)
{
	struct xio_msg_intent im;
	union {
		struct xio_msg_fallback f;
		char raw[XIO_CTL_MAX_MSG];
	} rep;
	memset(&im, 0, sizeof(im));
	im.intent = intent;
	int type = a_ctl_call(ctl, XIO_MSG_CONNECTED, &im, sizeof(im), -1, &rep, NULL, 5000);
	if (type != XIO_MSG_FALLBACK)
		return -type;
	*err = rep.f.err;
	return rep.f.reason;
}

struct parker {
	int n;
	uid_t uid;
	int ready[2], done[2];
};

static int parker_main(void *arg)
{
	struct parker *pk = arg;
	a_become(pk->uid);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	T_CHECK(park_intents(ctl, 1, pk->n) == 0, "park");
	/* A round trip: every INTENT before it was handled. */
	int err;
	connected(ctl, 1u << 30, &err);
	t_post(pk->ready[1]);
	t_await(pk->done[0], 60000);
	return 0;
}

/* The attacker's ACCEPTs of a connection no xio client made: each one made
 * the monitor look at every parked intent, with system calls. */
static int accepter_main(void *arg)
{
	struct parker *pk = arg;
	int c, s;
	a_become(A_UID_ATTACKER);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	T_CHECK(a_kernel_pair(0, 0, &c, &s) == 0, "pair");
	for (int i = 0; i < pk->n; i++) {
		struct xio_msg_hdr h;
		T_CHECK(a_ctl_post(ctl, XIO_MSG_ACCEPT, &h, sizeof(h), s) == 0, "post");
	}
	t_post(pk->ready[1]);
	t_await(pk->done[0], 60000);
	return 0;
}

/* 16,000 parked intents, and a stream of ACCEPTs: a bystander's STATUS is
 * answered promptly, and its own connection is still accelerated. (Seven
 * uids park them: one uid may hold fewer of the monitor's fds, here under
 * 20,000, than are left free.) */
Test(exhaustion, parked_intents_do_not_stall_others, .timeout = 90)
{
	enum { PARKERS = 7, PER = 2286, ACCEPTS = 300 };
	struct parker pk[PARKERS];
	pid_t pids[PARKERS + 1];
	t_monitor_start(&a_mon, NULL);
	cr_assert_eq(pipe(pk[0].ready), 0);
	cr_assert_eq(pipe(pk[0].done), 0);
	for (int i = 0; i < PARKERS; i++) {
		pk[i] = pk[0];
		pk[i].n = PER;
		pk[i].uid = A_UID_VICTIM + (uid_t)i; /* 1001 to 1007 */
		pids[i] = a_fork(parker_main, &pk[i]);
	}
	for (int i = 0; i < PARKERS; i++)
		cr_assert(t_await(pk[0].ready[0], 30000), "parker %d not ready", i);
	struct xio_msg_status st = t_monitor_status();
	cr_assert_geq(st.intents, PARKERS * PER, "only %u intents parked", st.intents);

	struct parker acc = pk[0];
	acc.n = ACCEPTS;
	pids[PARKERS] = a_fork(accepter_main, &acc);
	cr_assert(t_await(pk[0].ready[0], 10000), "accepter not ready");
	unsigned ms = a_status_ms(60000);
	cr_expect_lt(ms, 1000, "a bystander's STATUS took %u ms", ms);

	int rep[2];
	uint16_t port;
	cr_assert_eq(pipe(rep), 0);
	struct a_server s = { .n = 1, .go_fd = -1, .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &port);
	uint64_t t0 = t_now_ms();
	int cst = t_wait(a_client(0, port), 30000);
	cr_expect_eq(cst, A_CLIENT_ACCEL, "the bystander's connection: exit %d", cst);
	cr_expect_lt(t_now_ms() - t0, 2000, "the bystander's connection took %llu ms",
		     (unsigned long long)(t_now_ms() - t0));
	t_reap(srv, 10000);
	for (int i = 0; i <= PARKERS; i++)
		t_post(pk[0].done[1]);
	for (int i = 0; i <= PARKERS; i++)
		t_reap(pids[i], 30000);
	a_monitor_stop();
}

struct limited {
	int n;         /* intents to park before the one that is refused */
	int want_err;  /* what its CONNECTED must say */
	int done[2];
};

static int limited_main(void *arg)
{
	struct limited *l = arg;
	int err = 0;
	a_become(A_UID_ATTACKER);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	T_CHECK(park_intents(ctl, 1, l->n + 1) == 0, "park");
	int reason = connected(ctl, (uint64_t)l->n + 1, &err);
	T_CHECK(reason == XIO_FB_LIMIT && err == l->want_err,
		"intent %d: reason %d err %d, not XIO_FB_LIMIT (%d) with %d", l->n + 1, reason, err,
		XIO_FB_LIMIT, l->want_err);
	t_await(l->done[0], 20000);
	return 0;
}

/* Over its process's limit, then over its uid's, a client is told which
 * (XIO_FB_LIMIT with -EMFILE, -EDQUOT), the monitor logs it with the pid,
 * uid and limit, and another uid still gets accelerated. */
Test(exhaustion, limits_are_told)
{
	a_monitor_with_config("limit-process-pending 8\nlimit-uid-pending 12\n");
	struct limited a = { .n = 8, .want_err = -EMFILE }, b = { .n = 4, .want_err = -EDQUOT };
	cr_assert_eq(pipe(a.done), 0);
	b.done[0] = a.done[0];
	b.done[1] = a.done[1];
	pid_t pa = a_fork(limited_main, &a);
	/* The first holds its 8 before the second asks. */
	struct xio_msg_status st = t_monitor_status();
	for (int i = 0; i < 500 && st.intents < 8; i++) {
		usleep(10000);
		st = t_monitor_status();
	}
	pid_t pb = a_fork(limited_main, &b);
	for (int i = 0; i < 500 && st.intents < 12; i++) {
		usleep(10000);
		st = t_monitor_status();
	}
	int rep[2];
	uint16_t port;
	cr_assert_eq(pipe(rep), 0);
	struct a_server s = { .n = 1, .go_fd = -1, .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &port);
	int cst = t_wait(a_client(0, port), 15000);
	cr_expect_eq(cst, A_CLIENT_ACCEL, "another uid's connection: exit %d", cst);
	t_reap(srv, 10000);
	t_post(a.done[1]);
	t_post(a.done[1]);
	int sa = t_wait(pa, 10000), sb = t_wait(pb, 10000);
	if (sa || sb)
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(sa, 0, "per-process limit not told");
	cr_expect_eq(sb, 0, "per-uid limit not told");
	char want[128];
	snprintf(want, sizeof(want), "process %d (uid %u) is over the per-process limit of 8",
		 (int)pa, A_UID_ATTACKER);
	cr_expect(a_monitor_log_has(want), "no log line '%s'", want);
	snprintf(want, sizeof(want), "process %d (uid %u) is over the per-uid limit of 12", (int)pb,
		 A_UID_ATTACKER);
	cr_expect(a_monitor_log_has(want), "no log line '%s'", want);
	a_monitor_stop();
}

static int pinner_main(void *arg)
{
	int *accelerated = arg;
	xio_listener *l;
	a_become(A_UID_ATTACKER);
	struct sockaddr_in a = t_loopback(0);
	T_CHECK(xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 64, 0) == 0, "listen");
	a = t_loopback(t_listener_port(l));
	int n = 0;
	for (int i = 0; i < 12; i++) {
		xio_conn *c;
		T_CHECK(xio_connect(&c, (struct sockaddr *)&a, sizeof(a), 0) == 0, "connect");
		n += xio_conn_is_accelerated(c);
		/* Never accepted, never closed: each pins a segment. */
	}
	*accelerated = n;
	return n;
}

/* A client that connects and never accepts pins at most its limit of
 * segments; the rest of its connections stay on TCP. */
Test(exhaustion, unaccepted_connections_are_capped)
{
	a_monitor_with_config("limit-process-pending 8\n");
	int n = 0;
	int st = t_wait(a_fork(pinner_main, &n), 15000);
	cr_expect_eq(st, 8, "%d of 12 unaccepted connections were accelerated (limit 8)", st);
	a_monitor_stop();
}

static void low_fd_limit(void)
{
	struct rlimit rl = { 128, 128 };
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* CPU ticks the process has used. */
static unsigned long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, stt = 0;
	/* after ')': state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime */
	sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt);
	return ut + stt;
}

static int hog_main(void *arg)
{
	int *done = arg;
	a_become(A_UID_ATTACKER);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, getenv("XIO_MONITOR_SOCK"));
	for (int i = 0; i < 300; i++) {
		int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			close(s);
	}
	t_post(done[1]);
	t_await(done[0], 20000);
	return 0;
}

/* A monitor out of fds (sessions held open by one user) does not spin on
 * its listening socket, and serves again once they are gone. */
Test(exhaustion, out_of_fds_does_not_spin)
{
	int ready[2], done[2];
	t_monitor_pre_exec = low_fd_limit;
	t_monitor_start(&a_mon, NULL);
	t_monitor_pre_exec = NULL;
	t_monitor_status(); /* the bystander's session, before the hog comes */
	int by = a_ctl_open();
	cr_assert(by >= 0, "bystander session: %s", strerror(-by));
	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(done), 0);
	int hog_fds[2] = { done[0], ready[1] };
	pid_t hog = a_fork(hog_main, hog_fds);
	cr_assert(t_await(ready[0], 10000));
	usleep(200000);
	unsigned long t0 = cpu_ticks(a_mon.pid);
	usleep(1000000);
	unsigned long used = cpu_ticks(a_mon.pid) - t0;
	long hz = sysconf(_SC_CLK_TCK);
	cr_expect_lt(used, (unsigned long)hz / 4, "the monitor used %lu of %ld ticks in 1 s",
		     used, hz);
	unsigned ms = a_status_ms(5000);
	cr_expect_lt(ms, 1000, "a bystander's STATUS took %u ms", ms);
	/* A message carrying an fd still gets through (out of fds, it came
	 * truncated and the bystander was cut off as "malformed"). */
	uint16_t port;
	int ls = a_listen_loopback(0, &port);
	struct xio_msg_id lm;
	char reply[XIO_CTL_MAX_MSG];
	memset(&lm, 0, sizeof(lm));
	int type = a_ctl_call(by, XIO_MSG_LISTEN, &lm, sizeof(lm), ls, reply, NULL, 5000);
	cr_expect_eq(type, XIO_MSG_OK, "the bystander's LISTEN: reply %d", type);
	close(ls);
	close(by);
	t_post(done[1]);
	t_reap(hog, 10000);
	struct xio_msg_status st = t_monitor_settle(1);
	cr_expect_eq(st.procs, 1, "%u sessions left", st.procs);
	a_monitor_stop();
}

/* The monitor's open fds, and the lowest fd number it does not use. */
static int monitor_fds(int *lowest_free)
{
	char path[64];
	unsigned char used[4096] = { 0 };
	int n = 0;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)a_mon.pid);
	DIR *d = opendir(path);
	cr_assert(d, "%s: %s", path, strerror(errno));
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd >= 0 && fd < (int)sizeof(used))
			used[fd] = 1;
		n++;
	}
	closedir(d);
	if (lowest_free) {
		*lowest_free = 0;
		while (*lowest_free < (int)sizeof(used) && used[*lowest_free])
			(*lowest_free)++;
	}
	return n;
}

/* The monitor's fd count once it stops changing (bounded, 5 s). */
static int monitor_fds_settled(void)
{
	int n = monitor_fds(NULL), same = 0;
	for (int i = 0; i < 500 && same < 10; i++) {
		usleep(10000);
		int m = monitor_fds(NULL);
		same = m == n ? same + 1 : 0;
		n = m;
	}
	return n;
}

/* Once the monitor serves procs sessions and its fds stop changing, lower
 * its soft fd limit to its lowest free fd number: it can open no more. */
static void monitor_out_of_fds(unsigned procs)
{
	int lowest;
	struct rlimit lim;
	t_monitor_settle(procs);
	monitor_fds_settled();
	monitor_fds(&lowest);
	cr_assert_eq(prlimit(a_mon.pid, RLIMIT_NOFILE, NULL, &lim), 0);
	lim.rlim_cur = (rlim_t)lowest;
	cr_assert_eq(prlimit(a_mon.pid, RLIMIT_NOFILE, &lim, NULL), 0, "prlimit: %s",
		     strerror(errno));
}

struct bystander {
	int ready[2], go[2];
	uint16_t port;
};

/* A client whose session is open before the monitor runs out of fds: its
 * connection's INTENT loses its fd on the way. */
static int bystander_main(void *arg)
{
	struct bystander *b = arg;
	struct xio_msg_status st;
	xio_conn *c;
	char ch = 'x';
	alarm(20);
	T_CHECK(xio__ctl_status(&st) == 0, "no session");
	uint32_t session = xio__ctl_session();
	t_post(b->ready[1]);
	T_CHECK(t_await(b->go[0], 10000), "no go");
	struct sockaddr_in a = t_loopback(b->port);
	int r = xio_connect(&c, (struct sockaddr *)&a, sizeof(a), 0);
	T_CHECK(r == 0, "xio_connect: %s", strerror(-r));
	T_CHECK(xio_write(c, &ch, 1) == 1, "write");
	T_CHECK(t_read_full(c, &ch, 1) == 1, "no answer");
	T_CHECK(!xio_conn_is_accelerated(c), "accelerated with the monitor out of fds");
	xio_close(c);
	T_CHECK(xio__ctl_status(&st) == 0, "STATUS after the connection failed");
	T_CHECK(xio__ctl_session() == session, "the session was dropped (%u, was %u)",
		xio__ctl_session(), session);
	return A_CLIENT_TCP;
}

/* A message whose fd the monitor could not take (it is at its fd limit:
 * MSG_CTRUNC) is answered as over the monitor's fd limit (XIO_FB_LIMIT or
 * ERROR with -ENFILE); its sender keeps its session, its connections fall
 * back to TCP, and the monitor's fd count comes back to where it was (before,
 * such a sender was disconnected as "malformed"). */
Test(exhaustion, fd_lost_is_over_the_limit)
{
	struct bystander b;
	char reply[XIO_CTL_MAX_MSG];
	int rep[2], go[2], type;
	t_monitor_start(&a_mon, NULL);
	t_monitor_status();
	int before = monitor_fds_settled();
	cr_assert_eq(pipe(rep), 0);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(b.ready), 0);
	cr_assert_eq(pipe(b.go), 0);
	struct a_server s = { .n = 1, .go_fd = go[0], .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &b.port);
	close(rep[1]); /* the server's report, or end of file */
	pid_t cli = a_fork(bystander_main, &b);
	cr_assert(t_await(b.ready[0], 10000), "the bystander did not start");
	int by = a_ctl_open();
	cr_assert(by >= 0, "session: %s", strerror(-by));
	/* Every session is open: now the monitor may open no more fds. */
	struct rlimit old;
	cr_assert_eq(prlimit(a_mon.pid, RLIMIT_NOFILE, NULL, &old), 0);
	monitor_out_of_fds(4);

	/* A real connection whose fds are lost both ways (the client's
	 * INTENT, the server's ACCEPT): TCP, and neither end is cut off. */
	t_post(b.go[1]);
	t_post(go[1]);
	int cst = t_wait(cli, 15000);
	cr_expect_eq(cst, A_CLIENT_TCP, "the bystander's connection: exit %d", cst);
	t_reap(srv, 10000);
	char accel = '?';
	cr_expect(read(rep[0], &accel, 1) == 1 && accel == '0', "the server end: '%c'", accel);

	/* Their sessions are gone, and their fds free: out of fds again. */
	monitor_out_of_fds(2);
	/* An INTENT whose socket was lost: its CONNECTED is told the limit. */
	struct xio_msg_intent im;
	memset(&im, 0, sizeof(im));
	im.intent = 7;
	int sk = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(a_ctl_post(by, XIO_MSG_INTENT, &im, sizeof(im), sk), 0);
	close(sk);
	int err = 0, reason = connected(by, 7, &err);
	cr_expect(reason == XIO_FB_LIMIT && err == -ENFILE,
		  "CONNECTED after a lost INTENT: reason %d err %d", reason, err);
	/* An ACCEPT whose socket was lost falls back, told the limit. */
	int kc, ks;
	cr_assert_eq(a_kernel_pair(0, 0, &kc, &ks), 0);
	struct xio_msg_hdr ah;
	type = a_ctl_call(by, XIO_MSG_ACCEPT, &ah, sizeof(ah), ks, reply, NULL, 5000);
	struct xio_msg_fallback *fb = (void *)reply;
	cr_expect(type == XIO_MSG_FALLBACK && fb->reason == XIO_FB_LIMIT && fb->err == -ENFILE,
		  "ACCEPT with its fd lost: reply %d reason %d err %d", type, fb->reason, fb->err);
	/* So does a REATTACH. */
	struct xio_msg_close ra;
	memset(&ra, 0, sizeof(ra));
	ra.conn_id = 1;
	type = a_ctl_call(by, XIO_MSG_REATTACH, &ra, sizeof(ra), kc, reply, NULL, 5000);
	cr_expect(type == XIO_MSG_FALLBACK && fb->reason == XIO_FB_LIMIT && fb->err == -ENFILE,
		  "REATTACH with its fd lost: reply %d reason %d err %d", type, fb->reason,
		  fb->err);
	close(kc);
	close(ks);
	/* A LISTEN whose socket was lost is refused with the limit. */
	uint16_t port;
	int ls = a_listen_loopback(0, &port);
	struct xio_msg_id lm;
	memset(&lm, 0, sizeof(lm));
	type = a_ctl_call(by, XIO_MSG_LISTEN, &lm, sizeof(lm), ls, reply, NULL, 5000);
	struct xio_msg_error *e = (void *)reply;
	cr_expect(type == XIO_MSG_ERROR && e->err == -ENFILE,
		  "LISTEN with its fd lost: reply %d err %d", type, e->err);
	close(ls);
	/* The session is still served. */
	struct xio_msg_hdr sh;
	type = a_ctl_call(by, XIO_MSG_STATUS, &sh, sizeof(sh), -1, reply, NULL, 5000);
	cr_expect_eq(type, XIO_MSG_STATUS_REPLY, "STATUS on that session: reply %d", type);

	cr_assert_eq(prlimit(a_mon.pid, RLIMIT_NOFILE, &old, NULL), 0);
	close(by);
	struct xio_msg_status st = t_monitor_settle(1);
	cr_expect_eq(st.procs, 1, "%u sessions left", st.procs);
	int after = monitor_fds_settled();
	cr_expect_eq(after, before, "the monitor holds %d fds, %d before", after, before);
	if (a_monitor_log_has("malformed"))
		t_monitor_dump_log(&a_mon);
	cr_expect(!a_monitor_log_has("malformed"), "a sender was cut off as malformed");
	a_monitor_stop();
}

/* --- issue 15, item 6: established connections count too ---------------- */

/* One connection of this process to itself, paired over ctl server side
 * first (INTENT, ACCEPT, CONNECTED) from a fresh kernel connection to the
 * listener lsock. *c, *s: its two ends. Returns 1 if both ends were
 * answered ATTACH (with the client's segment in *seg, or closed if seg is
 * NULL), 0 if both fell back (the client's reason and err), -1 if the
 * answers do not agree. */
static int pair_self(int ctl, int lsock, uint64_t intent, int *c, int *s, int *reason, int *err,
		     int *seg)
{
	char reply[XIO_CTL_MAX_MSG];
	struct sockaddr_in a = t_loopback(a_local_port(lsock));
	*c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*c < 0 || connect(*c, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	*s = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
	if (*s < 0)
		return -1;
	struct xio_msg_intent im;
	memset(&im, 0, sizeof(im));
	im.intent = intent;
	if (a_ctl_post(ctl, XIO_MSG_INTENT, &im, sizeof(im), *c) < 0)
		return -1;
	struct xio_msg_hdr ah;
	int sfd = -1, cfd = -1;
	int t1 = a_ctl_call(ctl, XIO_MSG_ACCEPT, &ah, sizeof(ah), *s, reply, &sfd, 5000);
	if (sfd >= 0)
		close(sfd);
	int t2 = a_ctl_call(ctl, XIO_MSG_CONNECTED, &im, sizeof(im), -1, reply, &cfd, 5000);
	if (t2 == XIO_MSG_FALLBACK) {
		*reason = ((struct xio_msg_fallback *)reply)->reason;
		*err = ((struct xio_msg_fallback *)reply)->err;
	}
	if (t1 == XIO_MSG_ATTACH && t2 == XIO_MSG_ATTACH && cfd >= 0) {
		if (seg)
			*seg = cfd;
		else
			close(cfd);
		return 1;
	}
	if (cfd >= 0)
		close(cfd);
	return t1 == XIO_MSG_FALLBACK && t2 == XIO_MSG_FALLBACK ? 0 : -1;
}

struct selfpair {
	int n;          /* connections to pair */
	int keep;       /* keep both ends open (else close them, without CLOSE) */
	uid_t uid;
	int report[2];  /* accelerated count, then the count told XIO_FB_LIMIT */
	int done[2];
};

static int selfpair_main(void *arg)
{
	struct selfpair *sp = arg;
	/* Room for both ends of every connection kept. */
	struct rlimit rl = { 4096, 4096 };
	setrlimit(RLIMIT_NOFILE, &rl);
	a_become(sp->uid);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	uint16_t port;
	int lsock = a_listen_loopback(0, &port);
	T_CHECK(lsock >= 0, "listen: %s", strerror(-lsock));
	int accel = 0, limited = 0;
	for (int i = 0; i < sp->n; i++) {
		int c, s, reason = 0, err = 0;
		int r = pair_self(ctl, lsock, (uint64_t)i + 1, &c, &s, &reason, &err, NULL);
		T_CHECK(r >= 0, "connection %d: the two ends were answered differently", i);
		accel += r;
		limited += r == 0 && reason == XIO_FB_LIMIT;
		if (!sp->keep) {
			/* No CLOSE: the monitor is not told. */
			close(c);
			close(s);
		}
	}
	T_CHECK(write(sp->report[1], &accel, sizeof(accel)) == sizeof(accel), "report");
	T_CHECK(write(sp->report[1], &limited, sizeof(limited)) == sizeof(limited), "report");
	t_await(sp->done[0], 60000);
	return 0;
}

static void fd_limit_1024(void)
{
	struct rlimit rl = { 1024, 1024 };
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* ... and an fd kept per connection, as every monitor did before issue 16. */
static void fd_limit_1024_no_map_files(void)
{
	fd_limit_1024();
	a_no_map_files();
}

static int read_int(int fd, int timeout_ms)
{
	int v = -1;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, timeout_ms) != 1 || read(fd, &v, sizeof(v)) != sizeof(v))
		return -1;
	return v;
}

/* The case: a monitor with 1,024 fds and limits of 64 and 128
 * pending connections; one process of uid 1002 pairs 1,008 connections
 * with itself, and keeps them (keep) or closes them without CLOSE. The
 * monitor holds at most half of its fds for it, and a process of uid 1003
 * is still accelerated (before, the monitor held 1,023 of its 1,024 fds,
 * and uid 1003 stayed on TCP). A monitor that keeps views (issue 16) holds
 * no fd for a paired connection: its connections are bounded as its fds
 * were, here by limit-connections 768 (the fd budget of 1,024 fds). */
static void self_pairs_bounded(int keep, int views)
{
	struct selfpair sp = { .n = 1008, .keep = keep, .uid = A_UID_ATTACKER };
	t_monitor_pre_exec = views ? fd_limit_1024 : fd_limit_1024_no_map_files;
	a_monitor_with_config(views ? "limit-process-pending 64\nlimit-uid-pending 128\n"
				      "limit-connections 768\n"
				    : "limit-process-pending 64\nlimit-uid-pending 128\n");
	t_monitor_pre_exec = NULL;
	cr_assert(a_monitor_log_has(views ? "768 connections (limit-connections)"
					  : "768 connections (one fd each)"),
		  "the monitor's connections are not bounded as expected");
	cr_assert_eq(pipe(sp.report), 0);
	cr_assert_eq(pipe(sp.done), 0);
	pid_t pid = a_fork(selfpair_main, &sp);
	int accel = read_int(sp.report[0], 60000), limited = read_int(sp.report[0], 1000);
	cr_assert(accel >= 0, "the attacker did not finish");
	int fds = t_count_fds(a_mon.pid), segfds = a_monitor_seg_fds();
	cr_log_info("uid %u: %d of %d accelerated, %d told a limit; the monitor holds %d fds, %d "
		    "of them segments",
		    A_UID_ATTACKER, accel, sp.n, limited, fds, segfds);
	if (views)
		cr_expect_eq(segfds, 0, "the monitor holds %d segments' fds", segfds);
	cr_expect_leq(fds, 512, "the monitor holds %d of its 1024 fds (%d connections of uid %u "
				"accelerated, %d told the limit)",
		      fds, accel, A_UID_ATTACKER, limited);
	if (keep)
		cr_expect(limited > 0, "no connection was told a limit (%d accelerated)", accel);
	else /* the monitor took them back, and paired more (its limit is 192) */
		cr_expect_gt(accel, 192, "only %d accelerated: closed ones were not given back",
			     accel);

	int rep[2];
	uint16_t port;
	cr_assert_eq(pipe(rep), 0);
	struct a_server s = { .uid = A_UID_THIRD, .n = 1, .go_fd = -1, .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &port);
	int cst = t_wait(a_client(A_UID_THIRD, port), 15000);
	cr_expect_eq(cst, A_CLIENT_ACCEL, "uid %u's connection: exit %d (the monitor holds %d fds)",
		     A_UID_THIRD, cst, t_count_fds(a_mon.pid));
	t_reap(srv, 10000);
	if (cst != A_CLIENT_ACCEL)
		t_monitor_dump_log(&a_mon);
	t_post(sp.done[1]);
	t_reap(pid, 20000);
	a_monitor_stop();
}

/* Connections kept open by the one who paired them count against it. */
Test(exhaustion, established_connections_are_bounded, .timeout = 90)
{
	self_pairs_bounded(1, 1);
}

/* Connections closed without CLOSE count until the monitor sees that
 * nobody holds their sockets; they never hold another uid out. */
Test(exhaustion, connections_closed_without_close_are_bounded, .timeout = 90)
{
	self_pairs_bounded(0, 1);
}

/* The same two in a monitor that keeps an fd per connection (it may not
 * open its mappings again): bounded by its fds. */
Test(exhaustion, established_connections_are_bounded_by_fds, .timeout = 90)
{
	self_pairs_bounded(1, 0);
}

Test(exhaustion, connections_closed_without_close_are_bounded_by_fds, .timeout = 90)
{
	self_pairs_bounded(0, 0);
}

/* A limit written above what the monitor's fds allow is lowered to it (a
 * quarter of them per process), and said: with 1,024 fds and
 * "limit-process-pending 1000000", one process's 193rd intent is told
 * -EMFILE (before, a process could fill the monitor). */
Test(exhaustion, configured_limits_are_capped_by_fds, .timeout = 60)
{
	t_monitor_pre_exec = fd_limit_1024;
	a_monitor_with_config("limit-process-pending 1000000\n");
	t_monitor_pre_exec = NULL;
	struct limited l = { .n = 192, .want_err = -EMFILE };
	cr_assert_eq(pipe(l.done), 0);
	pid_t pid = a_fork(limited_main, &l);
	struct xio_msg_status st = t_monitor_status();
	for (int i = 0; i < 500 && st.intents < 192; i++) {
		usleep(10000);
		st = t_monitor_status();
	}
	t_post(l.done[1]);
	int r = t_wait(pid, 20000);
	if (r)
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(r, 0, "the 193rd intent was not told the per-process limit");
	cr_expect(a_monitor_log_has("limit-process-pending 1000000 is more than the monitor's 768 fds "
			  "allow: 192"),
		  "the lowered limit is not said");
	a_monitor_stop();
}

struct capped {
	int n, want_accel, want_err;
	int go[2], report[2];
};

static int capped_main(void *arg)
{
	struct capped *cp = arg;
	a_become(A_UID_ATTACKER);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	T_CHECK(t_await(cp->go[0], 10000), "no go");
	uint16_t port;
	int lsock = a_listen_loopback(0, &port);
	int accel = 0, c, s, reason = 0, err = 0;
	for (int i = 0; i < cp->n; i++) {
		int r = pair_self(ctl, lsock, (uint64_t)i + 1, &c, &s, &reason, &err, NULL);
		T_CHECK(r >= 0, "connection %d: the two ends were answered differently", i);
		accel += r;
		if (i >= cp->want_accel)
			T_CHECK(r == 0 && reason == XIO_FB_LIMIT && err == cp->want_err,
				"connection %d: accelerated %d, reason %d err %d, not XIO_FB_LIMIT "
				"(%d) with %d",
				i, r, reason, err, XIO_FB_LIMIT, cp->want_err);
	}
	T_CHECK(accel == cp->want_accel, "%d accelerated, not %d", accel, cp->want_accel);
	t_post(cp->report[1]);
	t_await(cp->go[0], 20000);
	return 0;
}

/* Live connections are capped per process and per uid (the new settings
 * limit-process-connections and limit-uid-connections): over them a
 * connection falls back, told -EMFILE or -EDQUOT, and it is logged. */
Test(exhaustion, connections_are_capped, .timeout = 60)
{
	a_monitor_with_config("limit-process-connections 8\nlimit-uid-connections 12\n");
	struct capped a = { .n = 10, .want_accel = 8, .want_err = -EMFILE };
	struct capped b = { .n = 6, .want_accel = 4, .want_err = -EDQUOT };
	cr_assert_eq(pipe(a.go), 0);
	cr_assert_eq(pipe(b.go), 0);
	cr_assert_eq(pipe(a.report), 0);
	memcpy(b.report, a.report, sizeof(b.report));
	pid_t pa = a_fork(capped_main, &a);
	t_post(a.go[1]);
	cr_assert(t_await(a.report[0], 20000), "the first process did not finish");
	/* The first keeps its 8 while the second pairs. */
	pid_t pb = a_fork(capped_main, &b);
	t_post(b.go[1]);
	cr_assert(t_await(a.report[0], 20000), "the second process did not finish");
	t_post(a.go[1]);
	t_post(b.go[1]);
	int sa = t_wait(pa, 10000), sb = t_wait(pb, 10000);
	if (sa || sb)
		t_monitor_dump_log(&a_mon);
	cr_expect_eq(sa, 0, "the per-process limit on connections");
	cr_expect_eq(sb, 0, "the per-uid limit on connections");
	char want[128];
	snprintf(want, sizeof(want), "process %d (uid %u) is over the per-process limit of 8 "
				     "connections",
		 (int)pa, A_UID_ATTACKER);
	cr_expect(a_monitor_log_has(want), "no log line '%s'", want);
	snprintf(want, sizeof(want), "process %d (uid %u) is over the per-uid limit of 12 "
				     "connections",
		 (int)pb, A_UID_ATTACKER);
	cr_expect(a_monitor_log_has(want), "no log line '%s'", want);
	a_monitor_stop();
}

#define HUGE_2M (2u << 20)

struct hugepair {
	uid_t uid;
	int n;
	int report[2]; /* how many of its segments are on hugepages */
	int done[2];
};

static int hugepair_main(void *arg)
{
	struct hugepair *hp = arg;
	a_become(hp->uid);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	uint16_t port;
	int lsock = a_listen_loopback(0, &port);
	T_CHECK(lsock >= 0, "listen: %s", strerror(-lsock));
	int huge = 0;
	for (int i = 0; i < hp->n; i++) {
		int c, s, seg = -1, reason = 0, err = 0;
		int r = pair_self(ctl, lsock, (uint64_t)i + 1, &c, &s, &reason, &err, &seg);
		T_CHECK(r == 1, "connection %d not accelerated: reason %d err %d", i, reason, err);
		struct stat st;
		T_CHECK(fstat(seg, &st) == 0, "fstat");
		huge += st.st_blksize == HUGE_2M; /* hugetlbfs gives its page size */
		close(seg);
	}
	T_CHECK(write(hp->report[1], &huge, sizeof(huge)) == sizeof(huge), "report");
	t_await(hp->done[0], 30000);
	return 0;
}

/* Every segment between two processes of one uid may be on hugepages, a
 * pool of the whole machine: one user pairing with itself took all of
 * them. Now a uid's segments go on hugepages only while it holds no more
 * than are left free: the rest of its connections are accelerated on
 * ordinary pages, and another uid still gets hugepages. */
Test(exhaustion, hugepages_shared_fairly, .timeout = 60)
{
	unsigned free0 = t_hugepages_free_count();
	if (free0 < 8)
		cr_skip_test("fewer than 8 hugepages free (%u; tools/test reserves some)", free0);
	/* `on`: with `auto` only a service that streams a lot gets them
	 * (monitor/bulk.c); the fair share holds either way. */
	t_monitor_start(&a_mon, "--hugepages", "on", NULL);
	struct hugepair a = { .uid = A_UID_ATTACKER, .n = (int)free0 + 8 };
	cr_assert_eq(pipe(a.report), 0);
	cr_assert_eq(pipe(a.done), 0);
	pid_t pa = a_fork(hugepair_main, &a);
	int ahuge = read_int(a.report[0], 30000);
	cr_assert(ahuge >= 0, "uid %u did not finish", A_UID_ATTACKER);
	unsigned left = t_hugepages_free_count();
	struct hugepair b = a;
	b.uid = A_UID_THIRD;
	b.n = 1;
	pid_t pb = a_fork(hugepair_main, &b);
	int bhuge = read_int(a.report[0], 30000);
	cr_expect_leq(ahuge, (int)free0 / 2 + 1,
		      "uid %u has %d of %u free hugepages in %d connections", A_UID_ATTACKER, ahuge,
		      free0, a.n);
	cr_expect_eq(bhuge, 1, "uid %u's connection is not on hugepages (%u were free, uid %u "
			       "has %d)",
		     A_UID_THIRD, left, A_UID_ATTACKER, ahuge);
	t_post(a.done[1]);
	t_post(a.done[1]);
	t_reap(pa, 10000);
	t_reap(pb, 10000);
	a_monitor_stop();
}
