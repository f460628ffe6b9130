/*
 * test_seg_access.c - the monitor's touches of a segment survive a client
 * that punches a hole in a hugetlb segment under them and takes every free
 * hugepage (issue 8, item 3, for the monitor): the touch is abandoned with
 * -EFAULT instead of a SIGBUS that would stop the monitor for everyone.
 * A SIGBUS outside a guarded touch still kills, as it should.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "monitor.h"

#define HUGE_2M (2ul << 20)

static void *hog = MAP_FAILED;
static size_t hog_len;

/* Take every free hugepage. */
static void take_all(void)
{
	for (unsigned long n = 64; n > 0; n--) {
		hog = mmap(NULL, n * HUGE_2M, PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
		if (hog != MAP_FAILED) {
			hog_len = n * HUGE_2M;
			return;
		}
	}
}

static void give_back(void)
{
	if (hog != MAP_FAILED)
		munmap(hog, hog_len);
	hog = MAP_FAILED;
}

/* What the hostile client does between the monitor's mmap and its touch. */
static int punch_then_touch(void *base, const struct xio_seg_layout *l, void *arg)
{
	(void)l;
	int fd = *(int *)arg;
	cr_assert_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, HUGE_2M), 0,
		     "punch: %s", strerror(errno));
	take_all();
	((volatile struct xio_seg_hdr *)base)->side_gone[0] = 1; /* a fault here */
	return 0;
}

static int make_huge_segment(struct monitor *m)
{
	memset(m, 0, sizeof(*m));
	cr_assert_eq(xio_seg_params_init(&m->params, HUGE_2M, 256, 16384), 0);
	int huge = 0, fd = xio_seg_create(&m->params, 1, 1, &huge);
	cr_assert(fd >= 0 && huge, "no hugepage segment: %s", fd < 0 ? strerror(-fd) : "small");
	return fd;
}

Test(seg_access, hole_punched_under_a_touch)
{
	struct monitor m;
	if (!t_hugepages_free(4))
		cr_skip_test("fewer than 4 hugepages free (tools/test reserves some)");
	int fd = make_huge_segment(&m);
	int r = mon_seg_run(&m, fd, punch_then_touch, &fd);
	give_back();
	cr_expect_eq(r, -EFAULT, "the touch returned %d instead of -EFAULT", r);
	/* And the guard is off again: a later touch of a live segment works. */
	struct monitor m2;
	int fd2 = make_huge_segment(&m2);
	mon_seg_mark_gone(&m2, &(struct mon_conn){ .accel = 1, .segfd = fd2 }, 1);
	void *base;
	cr_assert_eq(xio_seg_map(fd2, &m2.params, &base), 0);
	cr_expect_eq(atomic_load(&((struct xio_seg_hdr *)base)->side_gone[1]), 1);
	xio_seg_unmap(base, &m2.params);
	close(fd);
	close(fd2);
}

/* The same through the monitor's view of a segment whose fd it let go of
 * (issue 16): the view is one whole hugepage, the segment opened again
 * from it is the same file, and a hole punched under a touch of the view
 * abandons the touch. */
Test(seg_access, hole_punched_under_a_view)
{
	struct monitor m;
	if (!t_hugepages_free(4))
		cr_skip_test("fewer than 4 hugepages free (tools/test reserves some)");
	int fd = make_huge_segment(&m);
	struct mon_conn c = { .accel = 1, .segfd = fd };
	cr_assert_eq(mon_seg_view_map(&m, &c), 0);
	cr_expect_eq(c.view_len, HUGE_2M, "a view of %zu bytes", c.view_len);
	close(fd);
	c.segfd = -1;
	int again = mon_seg_reopen(&c);
	cr_assert(again >= 0, "reopen: %s", strerror(-again));
	void *base;
	cr_assert_eq(xio_seg_map(again, &m.params, &base), 0, "the reopened fd is not the segment");
	cr_expect_eq(((struct xio_seg_hdr *)base)->magic, XIO_SEG_MAGIC);
	xio_seg_unmap(base, &m.params);
	int r = mon_conn_seg_run(&m, &c, punch_then_touch, &again);
	give_back();
	cr_expect_eq(r, -EFAULT, "the touch returned %d instead of -EFAULT", r);
	mon_seg_view_unmap(&c);
	close(again);
}

/* A SIGBUS that is not in a guarded touch is not swallowed. */
Test(seg_access, other_sigbus_still_kills)
{
	struct monitor m;
	if (!t_hugepages_free(4))
		cr_skip_test("fewer than 4 hugepages free (tools/test reserves some)");
	int fd = make_huge_segment(&m);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		int r = mon_seg_run(&m, fd, punch_then_touch, &fd); /* installs the guard */
		give_back();
		if (r != -EFAULT)
			_exit(2);
		char *p = mmap(NULL, HUGE_2M, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			_exit(3);
		p[0] = 1; /* the page is there; the punch takes it away */
		fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, HUGE_2M);
		take_all();
		p[0] = 1; /* unguarded: SIGBUS */
		_exit(4);
	}
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "the child ended with status %#x", st);
	close(fd);
}
