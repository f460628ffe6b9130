/*
 * test_netns_evict.c - issue 15, item 10: a user who pairs in many network
 * namespaces of its own must not make the monitor end another's
 * connection. The monitor keeps a sock_diag socket for a few namespaces
 * (16); when the side of a connection dies, it asks the kernel there
 * whether a process (a forked child) still holds the side's socket. The
 * attacker's namespaces evicted the victim's, the lookup answered -ESRCH,
 * and that was read as "not held": the peer was told the side was gone
 * (EPIPE at once) while the child still used the connection.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "attack.h"

TestSuite(netns_evict, .fini = a_fini);

#define NAMESPACES 17 /* more than the monitor keeps sockets for */
#define EXIT_NO_USERNS 77

struct victim {
	int report[2]; /* victim -> test: the client's pid, the child's pid */
	int seg[2];    /* victim -> test: the segment (SCM_RIGHTS) */
};

/* The client: connected, paired as side 0 (INTENT before the server's
 * ACCEPT, CONNECTED after it), then forks a child that keeps the socket
 * but not the control session, and idles until killed. */
static int client_main(void *arg)
{
	struct victim *v = arg;
	char reply[XIO_CTL_MAX_MSG];
	int sv = v->seg[1]; /* a socket to the server process, for the handshake */
	alarm(30);
	int c = a_recv_fd(sv);
	T_CHECK(c >= 0, "no client socket");
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	struct xio_msg_intent im;
	memset(&im, 0, sizeof(im));
	im.intent = 1;
	T_CHECK(a_ctl_post(ctl, XIO_MSG_INTENT, &im, sizeof(im), c) == 0, "INTENT");
	struct xio_msg_hdr sh;
	T_CHECK(a_ctl_call(ctl, XIO_MSG_STATUS, &sh, sizeof(sh), -1, reply, NULL, 5000) ==
			XIO_MSG_STATUS_REPLY,
		"STATUS");
	char b = 'i';
	T_CHECK(write(sv, &b, 1) == 1, "tell the server");
	T_CHECK(read(sv, &b, 1) == 1, "the server did not accept");
	int segfd = -1;
	int type = a_ctl_call(ctl, XIO_MSG_CONNECTED, &im, sizeof(im), -1, reply, &segfd, 5000);
	T_CHECK(type == XIO_MSG_ATTACH && segfd >= 0, "CONNECTED answered %d", type);
	close(segfd);
	pid_t child = fork();
	if (child == 0) {
		/* Holds the connection's socket, unknown to the monitor. */
		close(ctl);
		alarm(30);
		for (;;)
			pause();
	}
	T_CHECK(child > 0, "fork");
	T_CHECK(write(v->report[1], &child, sizeof(child)) == sizeof(child), "report");
	for (;;)
		pause();
}

/* In a network namespace of its own (made by root): the server end,
 * accepted first (ACCEPT), with the client in another process. */
static int victim_main(void *arg)
{
	struct victim *v = arg;
	char reply[XIO_CTL_MAX_MSG];
	int sv[2];
	alarm(30);
	T_CHECK(unshare(CLONE_NEWNET) == 0, "unshare: %s", strerror(errno));
	T_CHECK(a_private_netns_lo_up() == 0, "lo");
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	int test_seg = v->seg[1];
	v->seg[1] = sv[1];
	pid_t cpid = t_fork(client_main, v);
	T_CHECK(write(v->report[1], &cpid, sizeof(cpid)) == sizeof(cpid), "report");
	int c, s;
	T_CHECK(a_kernel_pair(0, 0, &c, &s) == 0, "pair");
	T_CHECK(a_send_fd(sv[0], c) == 0, "pass the client socket");
	close(c);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	char b;
	T_CHECK(read(sv[0], &b, 1) == 1, "the client sent no INTENT");
	struct xio_msg_hdr ah;
	int segfd = -1;
	int type = a_ctl_call(ctl, XIO_MSG_ACCEPT, &ah, sizeof(ah), s, reply, &segfd, 5000);
	T_CHECK(type == XIO_MSG_ATTACH && segfd >= 0, "ACCEPT answered %d", type);
	T_CHECK(write(sv[0], &b, 1) == 1, "tell the client");
	T_CHECK(a_send_fd(test_seg, segfd) == 0, "pass the segment");
	/* The server stays, with its session and socket, until killed. */
	for (;;)
		pause();
}

/* Another user pairs in a user and network namespace of its own: the
 * monitor makes a sock_diag socket there to find the client end. */
static int evictor(void *arg)
{
	(void)arg;
	char reply[XIO_CTL_MAX_MSG];
	a_become(A_UID_ATTACKER);
	if (a_private_netns() < 0)
		return EXIT_NO_USERNS;
	int c, s;
	T_CHECK(a_kernel_pair(0, 0, &c, &s) == 0, "pair");
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "session: %s", strerror(-ctl));
	struct xio_msg_hdr ah;
	int type = a_ctl_call(ctl, XIO_MSG_ACCEPT, &ah, sizeof(ah), s, reply, NULL, 5000);
	T_CHECK(type == XIO_MSG_FALLBACK, "ACCEPT answered %d", type);
	return 0;
}

static pid_t read_pid(int fd)
{
	pid_t pid = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 10000) != 1 || read(fd, &pid, sizeof(pid)) != sizeof(pid))
		return 0;
	return pid;
}

static uint32_t gone0(const struct xio_seg_hdr *h)
{
	return atomic_load_explicit(&h->side_gone[0], memory_order_acquire);
}

/* When the client of a connection in a namespace the attacker's 17 evicted
 * from the monitor's cache dies while its forked child still holds the
 * socket, the side is not marked gone; once the child dies too, it is. */
Test(netns_evict, evicted_namespace_is_asked_again, .timeout = 60)
{
	struct victim v;
	t_monitor_start(&a_mon, NULL);
	cr_assert_eq(pipe(v.report), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, v.seg), 0);
	pid_t vpid = a_fork(victim_main, &v);
	/* Theirs only: a victim that fails ends what the test reads. */
	close(v.report[1]);
	close(v.seg[1]);
	pid_t cpid = read_pid(v.report[0]);
	cr_assert(cpid > 0, "no client");
	int segfd = a_recv_fd(v.seg[0]);
	pid_t child = read_pid(v.report[0]);
	cr_assert(segfd >= 0 && child > 0, "the victim did not pair (segment %d, child %d)", segfd,
		  (int)child);
	struct stat st;
	cr_assert_eq(fstat(segfd, &st), 0);
	const struct xio_seg_hdr *h =
		mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, segfd, 0);
	cr_assert(h != MAP_FAILED, "mmap: %s", strerror(errno));

	for (int i = 0; i < NAMESPACES; i++) {
		int r = t_wait(a_fork(evictor, NULL), 10000);
		if (r == EXIT_NO_USERNS) {
			kill(child, SIGKILL);
			kill(cpid, SIGKILL);
			cr_skip_test("unprivileged user namespaces are not allowed here");
		}
		cr_assert_eq(r, 0, "the attacker's namespace %d: exit %d", i, r);
	}

	kill(cpid, SIGKILL);
	usleep(500000);
	uint32_t early = gone0(h);
	cr_expect_eq(early, 0, "the client's side was marked gone while its child held it");

	kill(child, SIGKILL);
	uint32_t late = 0;
	for (int i = 0; i < 300 && !late; i++) {
		usleep(10000);
		late = gone0(h);
	}
	cr_expect_eq(late, 1, "the client's side was not marked gone after its child died");
	if (early || !late)
		t_monitor_dump_log(&a_mon);
	munmap((void *)h, (size_t)st.st_size);
	close(segfd);
	kill(vpid, SIGKILL);
	waitpid(vpid, NULL, 0);
	a_monitor_stop();
}
