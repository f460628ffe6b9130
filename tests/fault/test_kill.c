/*
 * test_kill.c - issue 8 item 11: kill -9 of either end in the middle of a
 * transfer, and 10,000 connect/transfer/close cycles.
 *
 * The killed process is always a child; the survivor is this process. A
 * transfer is an endless stream of patterned bytes (t_pattern_*, by stream
 * position) in writes of changing sizes, so every byte the survivor gets is
 * checked for value and order. After each test the monitor must hold no
 * connection or intent, and as many fds as before the test (no segment
 * kept), within a bounded wait.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define SEED 77
#define KILL_AFTER (4u << 20) /* bytes moved before the kill */
#define DEADLINE_MS 100       /* the survivor learns of the death within */
#define CYCLES 10000

static struct t_monitor mon;
static xio_listener *lis;

/* How much the monitor's RSS may grow over the cycles after the warm-up.
 * Under AddressSanitizer freed blocks sit in a quarantine and its
 * allocator has more overhead: the quarantine is turned off for the
 * monitor, and the bound is wider (a leak of one block per cycle would
 * still be 10,000 blocks). */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_SLACK_KIB 1536
#else
#define RSS_SLACK_KIB 256
#endif

static void setup(void)
{
#if defined(__SANITIZE_ADDRESS__)
	const char *a = getenv("ASAN_OPTIONS");
	char opts[512];
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=0", a ? a : "", a && *a ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
#endif
	t_suite_up(&mon, &lis, 64);
}

static void teardown(void)
{
	t_suite_down(&mon, &lis);
}

TestSuite(kill, .init = setup, .fini = teardown, .timeout = 120);

/* VmRSS of pid in KiB. */
static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* Wait (bounded) for the monitor to hold nothing but this process, and its
 * fd count to come back to want. */
static void expect_monitor_reclaimed(int want_fds)
{
	struct xio_msg_status s = t_monitor_settle(1);
	cr_assert(s.conns == 0 && s.intents == 0 && s.procs == 1,
		  "monitor holds conns %u, intents %u, procs %u", s.conns, s.intents, s.procs);
	int fds = t_count_fds(mon.pid);
	for (int i = 0; i < 200 && fds != want_fds; i++) {
		usleep(10000);
		fds = t_count_fds(mon.pid);
	}
	cr_assert_eq(fds, want_fds, "monitor fds %d, %d before the test", fds, want_fds);
	cr_assert_eq(t_count_memfds(mon.pid), 0, "the monitor still holds a segment");
}

/* The size of the next write: 1 byte to 100 KB, changing every time. */
static size_t next_size(uint64_t *x)
{
	*x = *x * 6364136223846793005ull + 1442695040888963407ull;
	uint64_t r = *x >> 33;
	return (size_t)(r % 8 == 0 ? 1 + r % 16 : 1 + r % 100000);
}

/* Write the stream for ever (until killed). */
static int stream_writer(xio_conn *c)
{
	static char buf[100000];
	uint64_t pos = 0, x = 1;
	for (;;) {
		size_t n = next_size(&x);
		t_pattern_fill(buf, n, SEED, pos);
		ssize_t r = xio_write(c, buf, n);
		T_CHECK(r == (ssize_t)n, "write at %llu: %zd (%s)", (unsigned long long)pos, r,
			xio_strerror((int)r));
		pos += n;
	}
}

/* Read and check the stream for ever (until killed). */
static int stream_reader(xio_conn *c)
{
	static char buf[65536];
	uint64_t pos = 0, x = 3;
	for (;;) {
		size_t want = next_size(&x) % sizeof(buf) + 1;
		ssize_t r = xio_read(c, buf, want);
		T_CHECK(r > 0, "read at %llu: %zd (%s)", (unsigned long long)pos, r,
			xio_strerror((int)r));
		T_CHECK(t_pattern_check(buf, (size_t)r, SEED, pos), "wrong bytes at %llu",
			(unsigned long long)pos);
		pos += (size_t)r;
	}
}

static int client_writes(xio_conn *c, void *arg)
{
	(void)arg;
	return stream_writer(c);
}

static int client_reads(xio_conn *c, void *arg)
{
	(void)arg;
	return stream_reader(c);
}

struct server_job {
	int writes;
};

/* A child that accepts one connection on the suite's listener and plays a
 * role on it. */
static int server_child(void *arg)
{
	struct server_job *j = arg;
	xio_conn *c;
	alarm(30);
	int r = t_accept(lis, &c, 0, 5000);
	T_CHECK(r == 0, "accept: %s", xio_strerror(r));
	T_CHECK(xio_conn_is_accelerated(c), "the accepted end is not accelerated");
	return j->writes ? stream_writer(c) : stream_reader(c);
}

/* This process's end of a connection whose other end is a child playing
 * the writer or the reader; the child is the client or the server. */
static pid_t start_peer(xio_conn **c, int child_is_server, int child_writes)
{
	if (!child_is_server)
		return t_pair_accelerated(lis, c, 0, child_writes ? client_writes : client_reads,
					  NULL);
	struct server_job j = { child_writes };
	pid_t pid = t_fork(server_child, &j);
	struct sockaddr_in a = t_loopback(t_listener_port(lis));
	int r = xio_connect(c, (struct sockaddr *)&a, sizeof(a), 0);
	cr_assert_eq(r, 0, "connect: %s", xio_strerror(r));
	cr_assert(xio_conn_is_accelerated(*c), "the connecting end is not accelerated");
	return pid;
}

/* The child writes; it is killed mid-stream; this process must read only
 * correct bytes in order, then end of file or -ECONNRESET within
 * DEADLINE_MS of the kill. */
static void writer_killed(int child_is_server)
{
	int fds0 = t_count_fds(mon.pid);
	xio_conn *c;
	pid_t pid = start_peer(&c, child_is_server, 1);
	static char buf[65536];
	uint64_t pos = 0, x = 5, killed_at = 0, end_ms = 0;
	ssize_t r;
	for (;;) {
		if (!killed_at && pos >= KILL_AFTER) {
			cr_assert_eq(kill(pid, SIGKILL), 0);
			killed_at = t_now_ms();
		}
		r = xio_read(c, buf, next_size(&x) % sizeof(buf) + 1);
		if (r <= 0)
			break;
		cr_assert(t_pattern_check(buf, (size_t)r, SEED, pos),
			  "wrong bytes at %llu..%llu", (unsigned long long)pos,
			  (unsigned long long)pos + (unsigned long long)r);
		pos += (size_t)r;
	}
	end_ms = t_now_ms();
	cr_assert(killed_at, "the stream ended before the kill at %llu bytes: %zd (%s)",
		  (unsigned long long)pos, r, xio_strerror((int)r));
	cr_assert(r == 0 || r == -ECONNRESET, "after the kill: %zd (%s)", r,
		  xio_strerror((int)r));
	cr_assert(end_ms - killed_at <= DEADLINE_MS, "end of stream %llu ms after the kill",
		  (unsigned long long)(end_ms - killed_at));
	cr_assert_eq(t_wait(pid, 5000), 128 + SIGKILL);
	cr_log_info("writer killed: %llu bytes checked, end %llu ms after the kill",
		    (unsigned long long)pos, (unsigned long long)(end_ms - killed_at));
	cr_assert_eq(xio_close(c), 0);
	expect_monitor_reclaimed(fds0);
}

/* The child reads; it is killed mid-stream; this process's writes must
 * fail with -EPIPE or -ECONNRESET within DEADLINE_MS of the kill. */
static void reader_killed(int child_is_server)
{
	int fds0 = t_count_fds(mon.pid);
	xio_conn *c;
	pid_t pid = start_peer(&c, child_is_server, 0);
	static char buf[100000];
	uint64_t pos = 0, x = 7, killed_at = 0, end_ms = 0;
	ssize_t r;
	for (;;) {
		if (!killed_at && pos >= KILL_AFTER) {
			cr_assert_eq(kill(pid, SIGKILL), 0);
			killed_at = t_now_ms();
		}
		size_t n = next_size(&x);
		t_pattern_fill(buf, n, SEED, pos);
		r = xio_write(c, buf, n);
		if (r < 0)
			break;
		/* A write cut short by the peer's death returns what it wrote;
		 * the next one fails. */
		cr_assert(r == (ssize_t)n || killed_at, "short write %zd of %zu before the kill",
			  r, n);
		pos += (size_t)r;
		cr_assert(!killed_at || t_now_ms() - killed_at < 5000,
			  "writes still succeed 5 s after the reader was killed");
	}
	end_ms = t_now_ms();
	cr_assert(killed_at, "a write failed before the kill at %llu bytes: %zd (%s)",
		  (unsigned long long)pos, r, xio_strerror((int)r));
	cr_assert(r == -EPIPE || r == -ECONNRESET, "after the kill: %zd (%s)", r,
		  xio_strerror((int)r));
	cr_assert(end_ms - killed_at <= DEADLINE_MS, "write failed only %llu ms after the kill",
		  (unsigned long long)(end_ms - killed_at));
	cr_assert_eq(t_wait(pid, 5000), 128 + SIGKILL);
	cr_log_info("reader killed: write error %llu ms after the kill",
		    (unsigned long long)(end_ms - killed_at));
	cr_assert_eq(xio_close(c), 0);
	expect_monitor_reclaimed(fds0);
}

/* kill -9 of the writing client: the server reads correct bytes, then the end. */
Test(kill, writing_client_killed)
{
	writer_killed(0);
}

/* kill -9 of the writing server: the client reads correct bytes, then the end. */
Test(kill, writing_server_killed)
{
	writer_killed(1);
}

/* kill -9 of the reading client: the server's writes fail promptly. */
Test(kill, reading_client_killed)
{
	reader_killed(0);
}

/* kill -9 of the reading server: the client's writes fail promptly. */
Test(kill, reading_server_killed)
{
	reader_killed(1);
}

/* --- 10,000 cycles ------------------------------------------------------ */

#define CYCLE_BYTES 1000
#define WARMUP 500

/* The child: connect, send, read the echo, close, CYCLES times. Its own
 * fds after the last close must be those after the first (the control
 * socket is opened by the first connection). */
static int cycler(void *arg)
{
	(void)arg;
	alarm(100);
	struct sockaddr_in a = t_loopback(t_listener_port(lis));
	char out[CYCLE_BYTES], in[CYCLE_BYTES];
	int fds_after_first = -1, maps0 = t_count_memfds(0);
	for (int i = 0; i < CYCLES; i++) {
		xio_conn *c;
		int r = xio_connect(&c, (struct sockaddr *)&a, sizeof(a), 0);
		T_CHECK(r == 0, "cycle %d: connect: %s", i, xio_strerror(r));
		T_CHECK(xio_conn_is_accelerated(c), "cycle %d: not accelerated", i);
		t_pattern_fill(out, sizeof(out), SEED, (uint64_t)i * CYCLE_BYTES);
		T_CHECK(xio_write(c, out, sizeof(out)) == CYCLE_BYTES, "cycle %d: write", i);
		T_CHECK(t_read_full(c, in, sizeof(in)) == CYCLE_BYTES, "cycle %d: read", i);
		T_CHECK(memcmp(in, out, sizeof(in)) == 0, "cycle %d: echo differs", i);
		T_CHECK(xio_close(c) == 0, "cycle %d: close", i);
		if (i == 0)
			fds_after_first = t_count_fds(0);
	}
	int fds = t_count_fds(0), maps = t_count_memfds(0);
	T_CHECK(fds == fds_after_first, "client fds %d after the cycles, %d after the first", fds,
		fds_after_first);
	T_CHECK(maps == maps0, "client holds %d segment mappings or fds, %d before", maps, maps0);
	return 0;
}

/* 10,000 connect/transfer/close cycles: every one accelerated and echoed;
 * afterwards the monitor holds no more fds and no more than a little more
 * memory than after the first 500, no segment is left in any process, and
 * each process has the fds it started with. */
Test(kill, ten_thousand_cycles_leak_nothing, .timeout = 300)
{
	int mon_fds0 = t_count_fds(mon.pid), my_fds0 = t_count_fds(0), my_maps0 = t_count_memfds(0);
	pid_t pid = t_fork(cycler, NULL);
	char buf[CYCLE_BYTES];
	long rss_warm = 0;
	int fds_warm = 0;
	uint64_t t0 = t_now_ms();
	for (int i = 0; i < CYCLES; i++) {
		xio_conn *c;
		int r = t_accept(lis, &c, 0, 5000);
		cr_assert_eq(r, 0, "cycle %d: accept: %s", i, xio_strerror(r));
		cr_assert(xio_conn_is_accelerated(c), "cycle %d: not accelerated", i);
		cr_assert_eq(t_read_full(c, buf, sizeof(buf)), CYCLE_BYTES, "cycle %d: read", i);
		cr_assert_eq(xio_write(c, buf, sizeof(buf)), CYCLE_BYTES, "cycle %d: write", i);
		cr_assert_eq(xio_close(c), 0);
		if (i == WARMUP) {
			rss_warm = rss_kib(mon.pid);
			fds_warm = t_count_fds(mon.pid);
		}
	}
	t_reap(pid, 60000);
	uint64_t ms = t_now_ms() - t0;
	expect_monitor_reclaimed(mon_fds0);
	long rss_end = rss_kib(mon.pid);
	cr_log_info("%d cycles in %llu ms; monitor RSS %ld KiB after %d, %ld KiB at the end; "
		    "monitor fds %d at start, %d after %d, %d at the end",
		    CYCLES, (unsigned long long)ms, rss_warm, WARMUP, rss_end, mon_fds0, fds_warm,
		    WARMUP, t_count_fds(mon.pid));
	cr_assert(rss_end - rss_warm <= RSS_SLACK_KIB, "monitor RSS grew from %ld to %ld KiB", rss_warm,
		  rss_end);
	cr_assert_eq(t_count_fds(0), my_fds0, "this process has %d fds, %d before", t_count_fds(0),
		     my_fds0);
	cr_assert_eq(t_count_memfds(0), my_maps0, "this process still maps a segment");
}
