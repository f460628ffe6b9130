/*
 * test_netns_caps.c - issue 15, item 9: a monitor with CAP_NET_ADMIN alone
 * (what the docs say it needs) may not enter a network namespace to ask the
 * kernel there (setns needs CAP_SYS_ADMIN). A user pairing from a user and
 * network namespace of its own (`unshare -Urn`) made it fail to enter, fail
 * to come back, and abort(). Now that pairing stays on TCP, and the monitor
 * goes on serving everyone else.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "attack.h"

TestSuite(netns_caps, .fini = a_fini);

#define EXIT_NO_USERNS 77

/* In the monitor's process before exec: every capability but
 * CAP_NET_ADMIN leaves the bounding set, so the root monitor runs with
 * that one alone. */
static void only_net_admin(void)
{
	int last = CAP_LAST_CAP;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	for (int cap = 0; cap <= last; cap++)
		if (cap != CAP_NET_ADMIN)
			prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
}

/* The effective capabilities of pid, from /proc. */
static unsigned long long cap_eff(pid_t pid)
{
	char path[64], line[256];
	unsigned long long eff = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f))
		sscanf(line, "CapEff: %llx", &eff);
	fclose(f);
	return eff;
}

/* A reply's reason if it is a FALLBACK, else minus its type. */
static int fallback_reason(int type, const void *reply)
{
	return type == XIO_MSG_FALLBACK ? ((const struct xio_msg_fallback *)reply)->reason : -type;
}

/* Another user, in a user and network namespace it made itself: pairs a
 * connection there server first (INTENT, ACCEPT, CONNECTED), then one
 * client first (LISTEN, INTENT, CONNECTED). Each answer must be a
 * FALLBACK saying the socket's namespace could not be used. */
static int userns_pairer(void *arg)
{
	(void)arg;
	char reply[XIO_CTL_MAX_MSG];
	a_become(A_UID_ATTACKER);
	if (a_private_netns() < 0)
		return EXIT_NO_USERNS;
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));

	int c, s;
	T_CHECK(a_kernel_pair(0, 0, &c, &s) == 0, "pair");
	struct xio_msg_intent im;
	memset(&im, 0, sizeof(im));
	im.intent = 1;
	T_CHECK(a_ctl_post(ctl, XIO_MSG_INTENT, &im, sizeof(im), c) == 0, "INTENT");
	struct xio_msg_hdr ah;
	int type = a_ctl_call(ctl, XIO_MSG_ACCEPT, &ah, sizeof(ah), s, reply, NULL, 5000);
	int reason = fallback_reason(type, reply);
	T_CHECK(reason == XIO_FB_BAD_SOCKET, "ACCEPT: reason %d (type %d), not XIO_FB_BAD_SOCKET",
		reason, type);
	type = a_ctl_call(ctl, XIO_MSG_CONNECTED, &im, sizeof(im), -1, reply, NULL, 5000);
	reason = fallback_reason(type, reply);
	T_CHECK(reason == XIO_FB_BAD_SOCKET,
		"CONNECTED (server first): reason %d (type %d), not XIO_FB_BAD_SOCKET", reason, type);
	close(c);
	close(s);

	uint16_t port;
	int ls = a_listen_loopback(0, &port);
	T_CHECK(ls >= 0, "listen: %s", strerror(-ls));
	struct xio_msg_id lm;
	memset(&lm, 0, sizeof(lm));
	type = a_ctl_call(ctl, XIO_MSG_LISTEN, &lm, sizeof(lm), ls, reply, NULL, 5000);
	T_CHECK(type == XIO_MSG_OK, "LISTEN answered %d", type);
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	im.intent = 2;
	T_CHECK(a_ctl_post(ctl, XIO_MSG_INTENT, &im, sizeof(im), c) == 0, "INTENT");
	struct sockaddr_in a = t_loopback(port);
	T_CHECK(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s", strerror(errno));
	type = a_ctl_call(ctl, XIO_MSG_CONNECTED, &im, sizeof(im), -1, reply, NULL, 5000);
	reason = fallback_reason(type, reply);
	T_CHECK(reason == XIO_FB_BAD_SOCKET,
		"CONNECTED (client first): reason %d (type %d), not XIO_FB_BAD_SOCKET", reason, type);
	close(c);
	close(ls);
	close(ctl);
	return 0;
}

/* Whether pid runs (neither gone nor a zombie), without reaping it. */
static int running(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* A monitor with CAP_NET_ADMIN alone survives pairings from a user's own
 * user and network namespace: they fall back to TCP (XIO_FB_BAD_SOCKET),
 * the refusal is logged, and a connection in the monitor's own namespace
 * is still accelerated. */
Test(netns_caps, unenterable_namespace_is_refused_not_fatal, .timeout = 60)
{
	t_monitor_pre_exec = only_net_admin;
	t_monitor_start(&a_mon, NULL);
	t_monitor_pre_exec = NULL;
	unsigned long long eff = cap_eff(a_mon.pid);
	cr_assert(eff & (1ull << CAP_NET_ADMIN), "the monitor lacks CAP_NET_ADMIN (%llx)", eff);
	cr_assert(!(eff & (1ull << CAP_SYS_ADMIN)), "the monitor has CAP_SYS_ADMIN (%llx)", eff);

	for (int round = 0; round < 2; round++) {
		int st = t_wait(a_fork(userns_pairer, NULL), 20000);
		if (st == EXIT_NO_USERNS)
			cr_skip_test("unprivileged user namespaces are not allowed here");
		int alive = running(a_mon.pid);
		if (st != 0 || !alive)
			t_monitor_dump_log(&a_mon);
		cr_assert(alive, "the monitor died (round %d)", round);
		cr_expect_eq(st, 0, "the namespace's pairings (round %d): exit %d", round, st);
	}
	cr_expect(a_monitor_log_has("entering it needs CAP_SYS_ADMIN"), "the refusal is not logged");

	int rep[2];
	uint16_t port;
	cr_assert_eq(pipe(rep), 0);
	struct a_server s = { .n = 1, .go_fd = -1, .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &port);
	int cst = t_wait(a_client(0, port), 15000);
	cr_expect_eq(cst, A_CLIENT_ACCEL, "a connection in the monitor's namespace: exit %d", cst);
	t_reap(srv, 10000);
	char accel = '?';
	cr_expect(read(rep[0], &accel, 1) == 1 && accel == '1', "the server end: '%c'", accel);
	a_monitor_stop();
}
