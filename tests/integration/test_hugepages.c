/*
 * test_hugepages.c - segments on huge pages (`--hugepages on`) and on
 * ordinary pages (`--hugepages off`), as the monitor counts them.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static struct t_monitor mon;

/* Skipped here, before the monitor starts: a test skipped from its body
 * ends without running .fini, which would leave the monitor behind. */
static void setup_on(void)
{
	if (!t_hugepages_free(4))
		cr_skip_test("no hugepages reserved: echo 64 > /proc/sys/vm/nr_hugepages");
	t_monitor_start(&mon, "--hugepages", "on", NULL);
}

static void setup_auto(void)
{
	if (!t_hugepages_free(4))
		cr_skip_test("no hugepages reserved: echo 64 > /proc/sys/vm/nr_hugepages");
	t_monitor_start(&mon, "--hugepages", "auto", NULL);
}

static void setup_off(void)
{
	t_monitor_start(&mon, "--hugepages", "off", NULL);
}

static void teardown(void)
{
	t_monitor_stop(&mon);
}

TestSuite(hugepages_on, .init = setup_on, .fini = teardown);
TestSuite(hugepages_off, .init = setup_off, .fini = teardown);
TestSuite(hugepages_auto, .init = setup_auto, .fini = teardown, .timeout = 60);

/* Bytes each way of one echo: 4 MiB, or what a test sets. */
static size_t BYTES = 4u << 20;

/* Client: BYTES of pattern out, the same back. */
static int client_echo(xio_conn *c, void *arg)
{
	(void)arg;
	char *buf = malloc(BYTES);
	t_pattern_fill(buf, BYTES, 71, 0);
	ssize_t r = xio_write(c, buf, BYTES);
	T_CHECK(r == (ssize_t)BYTES, "xio_write: %zd (%s)", r, xio_strerror((int)r));
	memset(buf, 0, BYTES);
	r = t_read_full(c, buf, BYTES);
	T_CHECK(r == (ssize_t)BYTES, "read back: %zd (%s)", r, xio_strerror((int)r));
	T_CHECK(t_pattern_check(buf, BYTES, 71, 0), "echoed bytes differ");
	return 0;
}

/* One accelerated connection echoing BYTES; returns the monitor's counts
 * before and after. */
static void echo_on(xio_listener *l, struct xio_msg_status *before,
		    struct xio_msg_status *after);

static void accelerated_echo(struct xio_msg_status *before, struct xio_msg_status *after)
{
	xio_listener *l;
	struct sockaddr_in a = t_loopback(0);
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 4, 0);
	cr_assert_eq(r, 0, "xio_listen: %s", xio_strerror(r));
	echo_on(l, before, after);
	xio_listener_close(l);
}

/* The same through listener l (kept open: one server endpoint). */
static void echo_on(xio_listener *l, struct xio_msg_status *before,
		    struct xio_msg_status *after)
{
	struct sockaddr_in a = t_loopback(t_listener_port(l));
	int r;
	*before = t_monitor_status();
	pid_t pid = t_fork_client((struct sockaddr *)&a, sizeof(a), 0, 1, client_echo, NULL);
	xio_conn *c;
	r = t_accept(l, &c, 0, 5000);
	cr_assert_eq(r, 0, "accept: %s", xio_strerror(r));
	struct xio_msg_status mid = t_monitor_status();
	cr_assert(xio_conn_is_accelerated(c),
		  "not accelerated: accel_total %llu -> %llu, fallback_total %llu -> %llu, huge "
		  "%llu, small %llu",
		  (unsigned long long)before->accel_total, (unsigned long long)mid.accel_total,
		  (unsigned long long)before->fallback_total,
		  (unsigned long long)mid.fallback_total, (unsigned long long)mid.segments_huge,
		  (unsigned long long)mid.segments_small);
	char *buf = malloc(BYTES);
	ssize_t n = t_read_full(c, buf, BYTES);
	cr_assert_eq(n, (ssize_t)BYTES, "server read: %zd (%s)", n, xio_strerror((int)n));
	n = xio_write(c, buf, BYTES);
	cr_assert_eq(n, (ssize_t)BYTES, "server write: %zd (%s)", n, xio_strerror((int)n));
	free(buf);
	int st = t_wait(pid, 10000);
	cr_assert_eq(st, 0, "client exited with %d (see its stderr)", st);
	cr_assert_eq(xio_close(c), 0);
	*after = t_monitor_settle(1);
}

/* With `--hugepages on` and free huge pages, a connection is accelerated on
 * a hugepage segment: data flows and segments_huge goes up by one. */
Test(hugepages_on, segment_on_hugepages)
{
	struct xio_msg_status before, after;
	accelerated_echo(&before, &after);
	cr_assert_eq(after.segments_huge, before.segments_huge + 1,
		     "segments_huge %llu -> %llu, segments_small %llu -> %llu",
		     (unsigned long long)before.segments_huge,
		     (unsigned long long)after.segments_huge,
		     (unsigned long long)before.segments_small,
		     (unsigned long long)after.segments_small);
	cr_assert_eq(after.segments_small, before.segments_small, "segments_small %llu -> %llu",
		     (unsigned long long)before.segments_small,
		     (unsigned long long)after.segments_small);
	cr_assert_eq(after.conns, 0, "conns %u", after.conns);
}

/* With `--hugepages off` a connection's segment is on ordinary pages:
 * segments_small goes up and segments_huge stays 0, even when huge pages
 * are free. */
Test(hugepages_off, segment_on_small_pages)
{
	int free_pages = t_hugepages_free(4);
	struct xio_msg_status before, after;
	accelerated_echo(&before, &after);
	cr_assert_eq(after.segments_small, before.segments_small + 1,
		     "segments_small %llu -> %llu (huge pages free: %d)",
		     (unsigned long long)before.segments_small,
		     (unsigned long long)after.segments_small, free_pages);
	cr_assert_eq(after.segments_huge, 0, "segments_huge %llu with --hugepages off (free: %d)",
		     (unsigned long long)after.segments_huge, free_pages);
}

/* With `--hugepages auto` (the default) a hugepage, which is never given
 * back in part, goes only to a service that streams a lot: the first
 * connections to a listener are on ordinary pages; once two of them each
 * moved 64 MiB or more, the next one is on a hugepage (monitor/bulk.c). */
Test(hugepages_auto, only_a_streaming_service_earns_hugepages)
{
	xio_listener *l;
	struct sockaddr_in a = t_loopback(0);
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 4, 0);
	cr_assert_eq(r, 0, "xio_listen: %s", xio_strerror(r));
	struct xio_msg_status before, after;
	BYTES = 1u << 20;
	echo_on(l, &before, &after);
	cr_assert_eq(after.segments_huge, before.segments_huge, "a small connection took one");
	BYTES = 40u << 20; /* 80 MiB moved in all */
	for (int i = 0; i < 2; i++) {
		echo_on(l, &before, &after);
		cr_assert_eq(after.segments_huge, before.segments_huge,
			     "bulk connection %d on a hugepage before the service earned it", i);
	}
	BYTES = 1u << 20;
	echo_on(l, &before, &after);
	cr_assert_eq(after.segments_huge, before.segments_huge + 1,
		     "after two bulk connections the next is not on a hugepage (%llu -> %llu)",
		     (unsigned long long)before.segments_huge,
		     (unsigned long long)after.segments_huge);
	xio_listener_close(l);
	/* A fresh service starts on ordinary pages. */
	BYTES = 1u << 20;
	accelerated_echo(&before, &after);
	cr_assert_eq(after.segments_huge, before.segments_huge, "a new service took one");
}
