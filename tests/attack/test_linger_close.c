/*
 * test_linger_close.c - issue 8, item 5: nothing a client does may block the
 * monitor's event loop. A client hands over sockets with SO_LINGER {1, N}
 * and data their peer never reads, and drops its own copies: the monitor's
 * close is then the last, and waits up to N seconds. A bystander's STATUS
 * must still be answered at once.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
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
