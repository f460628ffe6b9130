/*
 * test_memory.c - memory that follows the traffic (issue 17): what an
 * accelerated connection holds once it is quiet. The kernel frees a
 * socket's buffers as soon as they are read; xio gives a quiet
 * direction's pages back after a second (docs/design.md, "Memory that
 * follows the traffic"). Over the kernel these rules check the stream
 * only (there is no segment); under the shim they count the pages of the
 * segments this process maps (memfd "xio-seg", asked of mincore): many
 * while the data is in flight, four per connection once it is quiet (five
 * while a sleeping sender has returns it has not taken back).
 */
#include "sem.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>

#define STREAM (768u << 10)

/* Resident pages of every xio segment this process maps; *maps: how many
 * segments. */
static size_t seg_resident(int *maps)
{
	FILE *f = fopen("/proc/self/maps", "r");
	cr_assert(f != NULL);
	char line[512];
	size_t pages = 0;
	*maps = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (!strstr(line, "xio-seg") || sscanf(line, "%lx-%lx", &lo, &hi) != 2)
			continue;
		size_t n = (hi - lo) / 4096;
		unsigned char *v = malloc(n);
		cr_assert(v && mincore((void *)lo, hi - lo, v) == 0);
		for (size_t i = 0; i < n; i++)
			pages += v[i] & 1;
		free(v);
		(*maps)++;
	}
	fclose(f);
	return pages;
}

/* The peer writes STREAM bytes, says so with one byte back from us, then
 * sleeps outside any socket call (a process busy elsewhere): only this
 * side can give its sending direction back. */
static int write_then_sleep(int fd, void *arg)
{
	(void)arg;
	static char buf[STREAM];
	st_pattern_fill(buf, sizeof(buf), 91, 0);
	ST_CHECK(st_write_full(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf), "write: %s",
		 strerror(errno));
	char c;
	ST_CHECK(st_read_full(fd, &c, 1) == 1, "no word back");
	st_sleep_ms(3500);
	return 0;
}

/* A peer that streamed and then sleeps in no socket call: this side read
 * everything, waits in epoll_wait, and within two seconds both directions'
 * pages are back, though the sender never ran again (the receiver gave its
 * direction back after a membarrier). */
ST_TEST(memory, quiet_connection_gives_its_pages_back)
{
	pid_t pid;
	int s = st_peer_start(&pid, write_then_sleep, NULL);
	static char buf[STREAM];
	cr_assert_eq(st_read_full(s, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	cr_assert_eq(st_pattern_check(buf, sizeof(buf), 91, 0), -1, "wrong bytes");
	int maps = 0;
	size_t busy = seg_resident(&maps);
	cr_assert_eq(write(s, "k", 1), 1);
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = s }, got;
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), 0);
	size_t quiet = busy;
	for (int i = 0; i < 30 && quiet > 5u * (unsigned)maps; i++) {
		cr_assert_eq(epoll_wait(ep, &got, 1, 100), 0, "the sleeping peer sent something");
		quiet = seg_resident(&maps);
	}
	if (maps) { /* under the shim: one connection, one segment */
		cr_assert_eq(maps, 1, "%d segments mapped", maps);
		cr_assert_geq(busy, 64, "only %zu pages resident after a %u-byte stream", busy,
			      STREAM);
		/* Four, and the page of the free ring that holds the returns
		 * the sleeping sender has not taken back (they stay valid). */
		cr_assert_leq(quiet, 5, "%zu pages still resident 3 s after the stream (were %zu)",
			      quiet, busy);
	}
	/* And the connection works on, both ways. */
	cr_assert_eq(write(s, "again", 5), 5);
	close(ep);
	close(s);
	st_assert_child_ok(pid);
}
