/*
 * test_seg_views.c - issue 16: a paired connection costs the monitor no fd
 * for its life. The monitor held each segment's fd until both sides
 * closed, so its fd limit bounded the connections: a quarter of its fd
 * budget per process (4,936 with this machine's hard limit of 20,000), and
 * one server process could not have 10,001 accelerated connections. Now,
 * once both sides have their answer, it keeps a mapping of the segment's
 * start instead and closes the fd; it opens the segment again from that
 * mapping (/proc/self/map_files) when a process must be given it after
 * exec. A monitor that may not (no CAP_SYS_ADMIN nor
 * CAP_CHECKPOINT_RESTORE) keeps the fds, as before, and says so.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "attack.h"

TestSuite(seg_views, .fini = a_fini, .timeout = 90);

static void fd_limit_256(void)
{
	struct rlimit rl = { 256, 256 };
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* The live accelerated rows of the connection table (xio stat), paged as
 * xio stat pages it, and how many of them counted one byte each way. */
static int stat_rows(int ctl, int *one_byte_each_way)
{
	union {
		struct xio_msg_hdr h;
		struct xio_msg_conn_info ci;
		struct xio_msg_conns_end end;
		char raw[XIO_CTL_MAX_MSG];
	} rep;
	struct xio_msg_conns q;
	int rows = 0;
	*one_byte_each_way = 0;
	memset(&q, 0, sizeof(q));
	for (int page = 0; page < 1000; page++) {
		int type = a_ctl_call(ctl, XIO_MSG_CONNS, &q, sizeof(q), -1, &rep, NULL, 5000);
		for (;;) {
			if (type == XIO_MSG_CONNS_END) {
				if (!rep.end.more)
					return rows;
				q.after = rep.end.last;
				break;
			}
			if (type != XIO_MSG_CONN_INFO)
				return -1;
			if (rep.ci.transport == XIO_CONN_SHM) {
				rows++;
				*one_byte_each_way += rep.ci.bytes[0] == 1 && rep.ci.bytes[1] == 1;
			}
			struct pollfd p = { .fd = ctl, .events = POLLIN };
			int fd = -1;
			if (poll(&p, 1, 5000) != 1 || xio_ctl_recv(ctl, &rep, &fd, 0) <= 0)
				return -1;
			if (fd >= 0)
				close(fd);
			type = rep.h.type;
		}
	}
	return -1;
}

struct many {
	int n;
	int report[2]; /* the child's counts: accelerated, then exchanged */
	int done[2];
};

/* n connections of this process to itself through the native API, both
 * ends kept: each accelerated at both ends, one byte each way. */
static int many_main(void *arg)
{
	struct many *mn = arg;
	struct rlimit rl = { 4096, 4096 }; /* both ends of every connection */
	T_CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit: %s", strerror(errno));
	a_become(A_UID_ATTACKER);
	xio_listener *l;
	struct sockaddr_in a = t_loopback(0);
	T_CHECK(xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 512, 0) == 0, "listen");
	a = t_loopback(t_listener_port(l));
	int accel = 0, exchanged = 0;
	for (int i = 0; i < mn->n; i++) {
		xio_conn *c, *s;
		char b = 'x';
		int r = xio_connect(&c, (struct sockaddr *)&a, sizeof(a), 0);
		T_CHECK(r == 0, "connect %d: %s", i, xio_strerror(r));
		T_CHECK((r = t_accept(l, &s, 0, 5000)) == 0, "accept %d: %s", i, xio_strerror(r));
		accel += xio_conn_is_accelerated(c) && xio_conn_is_accelerated(s);
		exchanged += xio_write(c, &b, 1) == 1 && t_read_full(s, &b, 1) == 1 &&
			     xio_write(s, &b, 1) == 1 && t_read_full(c, &b, 1) == 1;
		/* Never closed: the process's exit ends them all. */
	}
	T_CHECK(write(mn->report[1], &accel, sizeof(accel)) == sizeof(accel), "report");
	T_CHECK(write(mn->report[1], &exchanged, sizeof(exchanged)) == sizeof(exchanged), "report");
	t_await(mn->done[0], 60000);
	return 0;
}

static int read_int(int fd, int timeout_ms)
{
	int v = -1;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, timeout_ms) != 1 || read(fd, &v, sizeof(v)) != sizeof(v))
		return -1;
	return v;
}

/* A monitor with 256 fds (192 for clients: 48 connections per process
 * when each held an fd) accelerates all 400 connections of one process,
 * holds none of their segments' fds, reads every one's counters for
 * STATUS and xio stat, and lets every segment go when the process dies.
 * Before: 48 of 400 were accelerated, the rest told the per-process limit. */
Test(seg_views, connections_outnumber_the_monitors_fds)
{
	enum { N = 400 };
	struct many mn = { .n = N };
	t_monitor_pre_exec = fd_limit_256;
	t_monitor_start(&a_mon, NULL);
	t_monitor_pre_exec = NULL;
	cr_assert_eq(pipe(mn.report), 0);
	cr_assert_eq(pipe(mn.done), 0);
	pid_t pid = a_fork(many_main, &mn);
	int accel = read_int(mn.report[0], 60000), exchanged = read_int(mn.report[0], 1000);
	if (accel != N)
		t_monitor_dump_log(&a_mon);
	cr_assert_eq(accel, N, "%d of %d connections accelerated at both ends", accel, N);
	cr_expect_eq(exchanged, N, "%d of %d connections carried a byte each way", exchanged, N);

	int fds = t_count_fds(a_mon.pid), segfds = a_monitor_seg_fds();
	cr_log_info("the monitor holds %d fds, %d of them segments, for %d connections", fds,
		    segfds, N);
	cr_expect_eq(segfds, 0, "the monitor holds %d segment fds", segfds);
	cr_expect_lt(fds, 64, "the monitor holds %d fds", fds);
	struct xio_msg_status st = t_monitor_status();
	cr_expect_eq(st.conns, N, "STATUS: %u connections", st.conns);
	cr_expect_eq(st.live_tx_bytes, 2 * N, "STATUS: %llu bytes counted in the segments",
		     (unsigned long long)st.live_tx_bytes);
	int ctl = a_ctl_open();
	cr_assert(ctl >= 0, "session: %s", strerror(-ctl));
	int counted, rows = stat_rows(ctl, &counted);
	cr_expect_eq(rows, N, "xio stat lists %d live connections", rows);
	cr_expect_eq(counted, N, "xio stat read one byte each way on %d connections", counted);
	close(ctl);

	/* Its death ends them all: every mapping goes with them. */
	t_post(mn.done[1]);
	t_reap(pid, 20000);
	st = t_monitor_settle(1);
	cr_expect_eq(st.conns, 0, "%u connections left after the process died", st.conns);
	cr_expect_eq(t_count_memfds(a_mon.pid), 0, "the monitor still maps or holds a segment");
	a_monitor_stop();
}

struct peer_arg {
	uint16_t port;
	const char *stats;
};

/* In the child: exec_peer connect PORT under the shim. */
static int exec_peer_main(void *arg)
{
	struct peer_arg *pa = arg;
	char port[16];
	snprintf(port, sizeof(port), "%u", pa->port);
	setenv("LD_PRELOAD", XIO_PRELOAD_SO, 1);
	setenv("XIO_STATS", pa->stats, 1);
#if defined(__SANITIZE_ADDRESS__)
	/* The runtimes are preloaded ahead of the shim, not linked first. */
	const char *a = getenv("ASAN_OPTIONS");
	char opts[512];
	snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", a ? a : "", a && *a ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
#endif
	execl(EXEC_PEER_BIN, EXEC_PEER_BIN, "connect", port, (char *)NULL);
	return 127;
}

/* The value of key= in the last xio-stats line of file (-1: none). */
static long long stats_value(const char *file, const char *key)
{
	FILE *f = fopen(file, "r");
	char line[1024];
	long long v = -1;
	while (f && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, key);
		if (!strncmp(line, "xio-stats ", 10) && p)
			v = atoll(p + strlen(key));
	}
	if (f)
		fclose(f);
	return v;
}

/*
 * A program under the shim connects to us (native API), and once the
 * monitor holds its segment as it will for the connection's life (views:
 * no fd; without them: the fd), execs itself with the connection open. Its
 * new image asks for the segment again (REATTACH) and echoes 256 KiB over
 * shared memory; a segment it could not have would reset the connection.
 * huge: the segment is on hugepages (the view is a whole hugepage).
 */
static void exec_regives(int views, int huge)
{
	char stats[] = "/tmp/xio-exec-stats-XXXXXX";
	int sfd = mkstemp(stats);
	cr_assert(sfd >= 0);
	close(sfd);
	if (!views)
		t_monitor_pre_exec = a_no_map_files;
	t_monitor_start(&a_mon, "--hugepages", huge ? "on" : "off", NULL);
	t_monitor_pre_exec = NULL;
	xio_listener *l;
	struct sockaddr_in a = t_loopback(0);
	cr_assert_eq(xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 8, 0), 0);
	struct peer_arg pa = { .port = t_listener_port(l), .stats = stats };
	pid_t pid = a_fork(exec_peer_main, &pa);
	xio_conn *s;
	int r = t_accept(l, &s, 0, 10000);
	cr_assert_eq(r, 0, "accept: %s", xio_strerror(r));
	cr_assert(xio_conn_is_accelerated(s), "the connection is not accelerated");
	char b;
	cr_assert_eq(t_read_full(s, &b, 1), 1, "no ready from the peer");

	/* Both sides have their answer: the monitor lets the fd go. */
	int segfds = -1;
	for (int i = 0; i < 500 && segfds != !views; i++) {
		segfds = a_monitor_seg_fds();
		if (segfds != !views)
			usleep(10000);
	}
	cr_assert_eq(segfds, !views, "the monitor holds %d segment fds %s", segfds,
		     views ? "after both sides had their answer" : "(it keeps them)");
	cr_assert_eq(t_count_memfds(a_mon.pid), 1, "the monitor does not keep the segment");
	struct xio_msg_status st0 = t_monitor_status();
	cr_assert_eq(st0.segments_huge, (uint64_t)huge, "%llu segments on hugepages",
		     (unsigned long long)st0.segments_huge);

	b = 'g';
	cr_assert_eq(xio_write(s, &b, 1), 1);
	enum { LEN = 256 * 1024, CHUNK = 16384 };
	static char out[LEN], in[LEN];
	t_pattern_fill(out, LEN, 16, 0);
	for (size_t off = 0; off < LEN; off += CHUNK) {
		cr_assert_eq(xio_write(s, out + off, CHUNK), CHUNK, "write at %zu", off);
		ssize_t n = t_read_full(s, in + off, CHUNK);
		cr_assert_eq(n, CHUNK, "the echo at %zu: %zd (%s)", off, n,
			     n < 0 ? xio_strerror((int)n) : "short");
	}
	cr_expect(t_pattern_check(in, LEN, 16, 0), "the echo differs");
	cr_expect(xio_conn_is_accelerated(s), "the connection left shared memory");
	cr_assert_eq(xio_shutdown(s, SHUT_WR), 0);
	cr_expect_eq(xio_read(s, &b, 1), 0, "no end of file after the echo");
	xio_close(s);
	int st = t_wait(pid, 10000);
	cr_expect_eq(st, 0, "exec_peer exited with %d", st);
	long long acc = stats_value(stats, "accel_conns="), rx = stats_value(stats, "rx_bytes=");
	cr_expect_eq(acc, 1, "the new image has %lld accelerated connections", acc);
	cr_expect_eq(rx, LEN, "the new image read %lld bytes over shared memory", rx);
	cr_expect(!a_monitor_log_has("cannot open its segment again"), "a re-give failed");
	if (views)
		cr_expect(!a_monitor_log_has("keeps an fd per connection"),
			  "the monitor says it keeps fds");
	else
		cr_expect(a_monitor_log_has("CAP_CHECKPOINT_RESTORE): the monitor keeps an fd per "
					    "connection"),
			  "the monitor does not say that it keeps an fd per connection");
	xio_listener_close(l);
	unlink(stats);
	t_monitor_settle(1);
	cr_expect_eq(t_count_memfds(a_mon.pid), 0, "the monitor still maps or holds a segment");
	a_monitor_stop();
}

/* After exec a process is given the segment again, opened from the
 * monitor's mapping of it: the fd was let go of long before. */
Test(seg_views, exec_regives_a_segment_whose_fd_was_let_go)
{
	exec_regives(1, 0);
}

/* The same for a segment on hugepages, which the monitor can map only in
 * whole hugepages. */
Test(seg_views, exec_regives_a_hugepage_segment)
{
	if (!t_hugepages_free(4))
		cr_skip_test("fewer than 4 hugepages free (tools/test reserves some)");
	exec_regives(1, 1);
}

/* A monitor that may not open its mappings again keeps the fd, says so at
 * start, and gives the segment again after exec from that fd. */
Test(seg_views, without_map_files_the_fd_is_kept)
{
	exec_regives(0, 0);
}
