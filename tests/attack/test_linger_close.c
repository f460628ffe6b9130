/*
 * test_linger_close.c - issue 8, item 5: nothing a client does may block the
 * monitor's event loop. A client hands over sockets with SO_LINGER {1, N}
 * and data their peer never reads, and drops its own copies: the monitor's
 * close is then the last, and waits up to N seconds. A bystander's STATUS
 * must still be answered at once. And issue 15, item 7: one such socket
 * lingering for an hour stopped the closer thread, and every lingering
 * socket handed over after it stayed open in the monitor until its fds ran
 * out and newcomers were refused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "attack.h"

TestSuite(linger_close, .fini = a_fini);

#define SOCKETS 3
#define LINGER_S 4

struct lingerer {
	int ready[2], done[2];
};

static int lingerer_main(void *arg)
{
	struct lingerer *l = arg;
	int peers[SOCKETS], socks[SOCKETS];
	static char junk[65536];
	a_become(A_UID_ATTACKER);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	for (int i = 0; i < SOCKETS; i++) {
		int c;
		T_CHECK(a_kernel_pair(0, 0, &c, &peers[i]) == 0, "pair");
		/* Fill the connection: the peer never reads. */
		fcntl(c, F_SETFL, O_NONBLOCK);
		while (write(c, junk, sizeof(junk)) > 0)
			;
		fcntl(c, F_SETFL, 0);
		struct linger lg = { .l_onoff = 1, .l_linger = LINGER_S };
		T_CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0, "linger");
		/* An INTENT's socket stays in the monitor until CONNECTED. */
		struct xio_msg_intent im;
		memset(&im, 0, sizeof(im));
		im.intent = (uint64_t)i + 1;
		T_CHECK(a_ctl_post(ctl, XIO_MSG_INTENT, &im, sizeof(im), c) == 0, "intent");
		socks[i] = c;
	}
	char reply[XIO_CTL_MAX_MSG];
	struct xio_msg_status st;
	memset(&st, 0, sizeof(st));
	T_CHECK(a_ctl_call(ctl, XIO_MSG_STATUS, &st, sizeof(st), -1, reply, NULL, 5000) ==
			XIO_MSG_STATUS_REPLY,
		"status"); /* every INTENT was taken */
	/* Our closes return at once (the monitor holds copies); then each
	 * CONNECTED makes the monitor's close the last. */
	for (int i = 0; i < SOCKETS; i++)
		close(socks[i]);
	for (int i = 0; i < SOCKETS; i++) {
		struct xio_msg_intent im;
		memset(&im, 0, sizeof(im));
		im.intent = (uint64_t)i + 1;
		T_CHECK(a_ctl_post(ctl, XIO_MSG_CONNECTED, &im, sizeof(im), -1) == 0, "connected");
	}
	t_post(l->ready[1]);
	t_await(l->done[0], 30000);
	return 0;
}

/* A bystander's STATUS is answered promptly while the monitor closes
 * lingering sockets a client handed over. */
Test(linger_close, bystander_not_stalled)
{
	struct lingerer l;
	t_monitor_start(&a_mon, NULL);
	t_monitor_status(); /* the bystander's session is up */
	cr_assert_eq(pipe(l.ready), 0);
	cr_assert_eq(pipe(l.done), 0);
	pid_t pid = a_fork(lingerer_main, &l);
	cr_assert(t_await(l.ready[0], 10000), "the attacker did not get going");
	unsigned ms = a_status_ms(SOCKETS * LINGER_S * 1000 + 5000);
	cr_expect_lt(ms, 1000, "a bystander's STATUS took %u ms", ms);
	t_post(l.done[1]);
	t_reap(pid, 10000);
	t_monitor_stop(&a_mon);
}

#define MORE 250 /* lingering sockets handed over after the stuck one */

/* A connection whose client end lingers for an hour once closed, its peer
 * never reading; fill: with more unsent data than fits (the close then
 * waits the whole hour). Returns the client end; *peer the other. */
static int lingering_pair(int fill, int *peer)
{
	static char junk[65536];
	int c;
	if (a_kernel_pair(0, 0, &c, peer) < 0)
		return -1;
	if (fill) {
		fcntl(c, F_SETFL, O_NONBLOCK);
		while (write(c, junk, sizeof(junk)) > 0)
			;
		fcntl(c, F_SETFL, 0);
	}
	struct linger lg = { .l_onoff = 1, .l_linger = 3600 };
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	return c;
}

/* Hand the monitor socks[0..n) as INTENTs numbered from first, drop our
 * copies, then send their CONNECTEDs: each close of the monitor's is the
 * last. */
static int hand_over(int ctl, int *socks, int n, uint64_t first)
{
	char reply[XIO_CTL_MAX_MSG];
	struct xio_msg_intent im;
	struct xio_msg_status st;
	for (int i = 0; i < n; i++) {
		memset(&im, 0, sizeof(im));
		im.intent = first + (uint64_t)i;
		T_CHECK(a_ctl_post(ctl, XIO_MSG_INTENT, &im, sizeof(im), socks[i]) == 0, "intent");
	}
	memset(&st, 0, sizeof(st));
	uint64_t t0 = t_now_ms();
	int type = a_ctl_call(ctl, XIO_MSG_STATUS, &st, sizeof(st), -1, reply, NULL, 5000);
	T_CHECK(type == XIO_MSG_STATUS_REPLY, "STATUS after %d INTENTs: %d after %llu ms", n, type,
		(unsigned long long)(t_now_ms() - t0)); /* every INTENT was taken */
	for (int i = 0; i < n; i++)
		close(socks[i]);
	for (int i = 0; i < n; i++) {
		memset(&im, 0, sizeof(im));
		im.intent = first + (uint64_t)i;
		type = a_ctl_call(ctl, XIO_MSG_CONNECTED, &im, sizeof(im), -1, reply, NULL, 5000);
		T_CHECK(type == XIO_MSG_FALLBACK, "CONNECTED %d: %d", i, type);
	}
	return 0;
}

static int stuck_main(void *arg)
{
	struct lingerer *l = arg;
	int stuck_peer, socks[MORE];
	a_become(A_UID_ATTACKER);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	/* The one whose close waits an hour: its peer never reads. */
	int stuck = lingering_pair(1, &stuck_peer);
	T_CHECK(stuck >= 0, "pair");
	if (hand_over(ctl, &stuck, 1, 1))
		return 1;
	/* Then many more that linger, with nothing unsent. */
	for (int i = 0; i < MORE; i++) {
		int peer;
		socks[i] = lingering_pair(0, &peer);
		T_CHECK(socks[i] >= 0, "pair %d", i);
		close(peer);
	}
	if (hand_over(ctl, socks, MORE, 2))
		return 1;
	t_post(l->ready[1]);
	t_await(l->done[0], 30000);
	return 0;
}

static void fd_limit_256(void)
{
	struct rlimit rl = { 256, 256 };
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* The monitor's fd count once it is at most want (bounded, 5 s). */
static int monitor_fds_down_to(int want)
{
	int n = t_count_fds(a_mon.pid);
	for (int i = 0; i < 500 && n > want; i++) {
		usleep(10000);
		n = t_count_fds(a_mon.pid);
	}
	return n;
}

/* After a handed-over socket whose close lingers for an hour (its peer
 * never reads), the monitor closes every later lingering socket as soon as
 * it is done with it: its fd count comes back to where it was, and a
 * newcomer's session and LISTEN (a message with an fd) are served. */
Test(linger_close, stuck_close_holds_nothing, .timeout = 60)
{
	struct lingerer l;
	char reply[XIO_CTL_MAX_MSG];
	t_monitor_pre_exec = fd_limit_256;
	t_monitor_start(&a_mon, NULL);
	t_monitor_pre_exec = NULL;
	t_monitor_status(); /* the bystander's session is up */
	int before = t_count_fds(a_mon.pid);
	cr_assert_eq(pipe(l.ready), 0);
	cr_assert_eq(pipe(l.done), 0);
	pid_t pid = a_fork(stuck_main, &l);
	int going = t_await(l.ready[0], 30000);
	if (!going)
		t_monitor_dump_log(&a_mon);
	cr_assert(going, "the attacker did not get going");
	/* The attacker's session is the only fd it may still cost. */
	int after = monitor_fds_down_to(before + 1);
	cr_expect_leq(after, before + 1, "the monitor holds %d fds (%d before the attacker)", after,
		      before);
	unsigned ms = a_status_ms(5000);
	cr_expect_lt(ms, 1000, "a bystander's STATUS took %u ms", ms);
	int by = a_ctl_open();
	cr_assert(by >= 0, "a newcomer's session: %s", strerror(-by));
	uint16_t port;
	int ls = a_listen_loopback(0, &port);
	struct xio_msg_id lm;
	memset(&lm, 0, sizeof(lm));
	int type = a_ctl_call(by, XIO_MSG_LISTEN, &lm, sizeof(lm), ls, reply, NULL, 5000);
	cr_expect_eq(type, XIO_MSG_OK, "a newcomer's LISTEN: reply %d (err %d)", type,
		     type == XIO_MSG_ERROR ? ((struct xio_msg_error *)reply)->err : 0);
	close(ls);
	close(by);
	t_post(l.done[1]);
	t_reap(pid, 10000);
	a_monitor_stop();
}
