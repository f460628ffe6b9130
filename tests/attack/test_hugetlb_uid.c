/*
 * test_hugetlb_uid.c - issue 8, item 3: a peer of another uid cannot make
 * its victim die of SIGBUS. It punches a hole in their shared segment
 * (fallocate PUNCH_HOLE, which the seals allow) and takes every free
 * hugepage: if the segment were hugetlb, the victim's next touch of its
 * mapping would find no page to fault in. The monitor never gives two uids
 * a hugetlb segment; an ordinary page is simply allocated again.
 *
 * The hard case is the client that asks first: its segment is made for the
 * processes registered on the listener, and the one that accepts may be of
 * another uid (a worker after fork and setuid). That acceptor never joins
 * the hugepage segment: the connection moves to TCP, every byte the client
 * wrote before the accept included, and the listener's next client-first
 * connections are made on ordinary pages, so they are accelerated.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "attack.h"

TestSuite(hugetlb_uid, .fini = a_fini);

#define HUGE_2M (2u << 20)

struct scene {
	uint16_t port;
	int port_pipe[2];
	int accepted[2]; /* victim -> test: it has its segment mapped */
	int attacked[2]; /* attacker -> test: hole punched, pages taken */
	int go[2];       /* test -> victim: touch the segment now */
	int done[2];     /* test -> attacker: let the pages go */
};

static int victim_main(void *arg)
{
	struct scene *s = arg;
	xio_listener *l;
	xio_conn *c;
	char buf[64];
	a_become(A_UID_VICTIM);
	struct sockaddr_in a = t_loopback(0);
	T_CHECK(xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 4, 0) == 0, "listen");
	uint16_t port = t_listener_port(l);
	T_CHECK(write(s->port_pipe[1], &port, sizeof(port)) == sizeof(port), "port");
	T_CHECK(t_accept(l, &c, XIO_NONBLOCK, 10000) == 0, "accept");
	t_post(s->accepted[1]);
	t_await(s->go[0], 20000);
	/* Touch the segment: the control block and both channels. */
	for (int i = 0; i < 10; i++)
		(void)xio_read(c, buf, sizeof(buf));
	(void)xio_write(c, "x", 1);
	return 0;
}

static int attacker_main(void *arg)
{
	struct scene *s = arg;
	a_become(A_UID_ATTACKER);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct xio_msg_intent im;
	memset(&im, 0, sizeof(im));
	im.intent = 1;
	T_CHECK(a_ctl_post(ctl, XIO_MSG_INTENT, &im, sizeof(im), fd) == 0, "intent");
	struct sockaddr_in a = t_loopback(s->port);
	T_CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect");
	char reply[XIO_CTL_MAX_MSG];
	int segfd = -1;
	int type = a_ctl_call(ctl, XIO_MSG_CONNECTED, &im, sizeof(im), -1, reply, &segfd, 5000);
	T_CHECK(type == XIO_MSG_ATTACH && segfd >= 0, "not attached (reply %d)", type);
	struct stat st;
	T_CHECK(fstat(segfd, &st) == 0, "fstat");
	fprintf(stderr, "attacker: the segment is %s\n",
		st.st_blksize >= HUGE_2M ? "hugetlb" : "ordinary shared memory");
	t_await(s->accepted[0], 10000);
	/* The attack: drop the segment's pages, then hold every free one. */
	T_CHECK(fallocate(segfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, st.st_size) == 0,
		"punch: %s", strerror(errno));
	unsigned long n = t_hugepages_free_count();
	void *hog = MAP_FAILED;
	while (n > 0 && (hog = mmap(NULL, n * HUGE_2M, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1,
				    0)) == MAP_FAILED)
		n--;
	fprintf(stderr, "attacker: holding %lu hugepages, %lu free\n", n, (unsigned long)t_hugepages_free_count());
	t_post(s->attacked[1]);
	t_await(s->done[0], 20000);
	return 0;
}

/* The victim (another uid) survives its peer's punch and hugepage grab. */
Test(hugetlb_uid, no_sigbus_across_uids)
{
		struct scene s;
	if (!t_hugepages_free(4))
		cr_skip_test("fewer than 4 hugepages free (tools/test reserves some)");
	t_monitor_start(&a_mon, NULL);
	cr_assert_eq(pipe(s.port_pipe), 0);
	cr_assert_eq(pipe(s.accepted), 0);
	cr_assert_eq(pipe(s.attacked), 0);
	cr_assert_eq(pipe(s.go), 0);
	cr_assert_eq(pipe(s.done), 0);
	pid_t victim = a_fork(victim_main, &s);
	cr_assert_eq(read(s.port_pipe[0], &s.port, sizeof(s.port)), (ssize_t)sizeof(s.port));
	/* The victim posts "accepted" for the attacker; pass it on. */
	int relay[2];
	cr_assert_eq(pipe(relay), 0);
	int victim_accepted = s.accepted[0];
	s.accepted[0] = relay[0];
	pid_t attacker = a_fork(attacker_main, &s);
	cr_assert(t_await(victim_accepted, 10000), "the victim did not accept");
	t_post(relay[1]);
	cr_assert(t_await(s.attacked[0], 10000), "the attack did not run");
	t_post(s.go[1]);
	int vst = t_wait(victim, 10000);
	t_post(s.done[1]);
	int ast = t_wait(attacker, 10000);
	if (vst)
		t_monitor_dump_log(&a_mon);
	cr_expect_neq(vst, 128 + SIGBUS, "the victim died of SIGBUS");
	cr_expect_eq(vst, 0, "the victim's exit status %d", vst);
	cr_expect_eq(ast, 0, "the attacker's exit status %d", ast);
	t_monitor_stop(&a_mon);
}

Test(hugetlb_uid, late_acceptor_of_another_uid)
{
	if (!t_hugepages_free(4))
		cr_skip_test("fewer than 4 hugepages free (tools/test reserves some)");
	t_monitor_start(&a_mon, "--hugepages", "on", NULL);
	struct xio_msg_status before = t_monitor_status();
	char rep[2];
	int bytes_ok = a_late_acceptor(A_UID_THIRD, 3u << 20, rep);
	struct xio_msg_status after = t_monitor_status();
	if (!bytes_ok || rep[0] != '0' || rep[1] != '1')
		t_monitor_dump_log(&a_mon);
	cr_expect(bytes_ok, "a byte was lost or changed on the way");
	cr_expect_eq(rep[0], '0',
		     "the worker of uid %u joined a hugepage segment made for uid 0 ('%c')",
		     A_UID_THIRD, rep[0]);
	cr_expect_eq(after.segments_huge - before.segments_huge, 1,
		     "hugepage segments made: %llu (the first connection's only)",
		     (unsigned long long)(after.segments_huge - before.segments_huge));
	cr_expect_eq(rep[1], '1', "the second connection is not accelerated ('%c')", rep[1]);
	cr_expect_eq(after.segments_small - before.segments_small, 1,
		     "the second connection is not on ordinary pages");
	t_monitor_stop(&a_mon);
}
