/*
 * seg_access.c - the monitor's touches of connection segments, guarded.
 *
 * The monitor maps a segment for a moment to read its counters (STATUS,
 * CONNS), to mark a side gone, or to move a side to the kernel for a
 * process that may not join it (pair.c). A client holding the segment's fd
 * can punch a hole in it (fallocate; the seals allow it) between our mmap
 * and our touch: on ordinary shared memory the page is simply allocated
 * again, but on hugetlbfs, with every free hugepage taken by that client,
 * the touch would kill the monitor with SIGBUS, and every program with it.
 * So every touch runs under a SIGBUS guard: a fault inside it abandons the
 * touch (-EFAULT) and the monitor carries on; a SIGBUS anywhere else is
 * as fatal as it always was.
 *
 * Views. Holding each segment's fd for the connection's life made the fd
 * limit bound the connections (a quarter of 20,000 fds per process: 10,001
 * idle connections of one server could not all be accelerated, issue 16).
 * What the monitor does with a segment once both sides have it needs only
 * its start, the header and the two channels' control blocks (marking a
 * side gone, the counters of xio stat), and, after an exec, an fd to give
 * again. So once both sides have had their answer the monitor keeps a
 * mapping of that start (the view; a whole hugepage for a hugetlb
 * segment, which can be mapped no smaller) and closes the fd; to give the
 * segment again it opens the very file it maps through
 * /proc/self/map_files, which needs CAP_SYS_ADMIN or
 * CAP_CHECKPOINT_RESTORE. A monitor without either keeps the fds, as
 * before, and says so at start. A view costs a mapping (vm.max_map_count,
 * limits.c) and its page tables, never an fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "monitor.h"
#include "xio/sys.h"

static _Thread_local sigjmp_buf *guard;
static _Thread_local uintptr_t guard_lo, guard_hi;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	uintptr_t a = (uintptr_t)si->si_addr;
	if (guard && a >= guard_lo && a < guard_hi)
		siglongjmp(*guard, 1);
	/* Not a segment we are touching: die of it, as without the guard
	 * (returning re-runs the faulting access under the default action). */
	signal(sig, SIG_DFL);
}

static void install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

/* fn on [base, base + len), a fault in which abandons it. */
static int guarded(void *base, size_t len, const struct xio_seg_layout *l, mon_seg_fn fn,
		   void *arg)
{
	int r;
	pthread_once(&guard_once, install);
	sigjmp_buf jb;
	if (sigsetjmp(jb, 1) == 0) {
		guard_lo = (uintptr_t)base;
		guard_hi = guard_lo + len;
		guard = &jb;
		r = fn(base, l, arg);
	} else {
		r = -EFAULT;
		mon_log(MON_WARN, "a segment's memory vanished under the monitor (a hole "
				  "punched in it): that touch is abandoned");
	}
	guard = NULL;
	return r;
}

int mon_seg_run(const struct monitor *m, int segfd, mon_seg_fn fn, void *arg)
{
	struct xio_seg_layout l;
	void *base;
	int r;
	if (segfd < 0)
		return -EBADF;
	if ((r = xio_seg_layout(&m->params, &l)) < 0 || (r = xio_seg_map(segfd, &m->params, &base)) < 0)
		return r;
	r = guarded(base, m->params.seg_size, &l, fn, arg);
	xio_seg_unmap(base, &m->params);
	return r;
}

int mon_conn_seg_run(const struct monitor *m, const struct mon_conn *c, mon_seg_fn fn, void *arg)
{
	struct xio_seg_layout l;
	int r;
	if (!c->view)
		return mon_seg_run(m, c->segfd, fn, arg);
	if ((r = xio_seg_layout(&m->params, &l)) < 0)
		return r;
	return guarded(c->view, c->view_len, &l, fn, arg);
}

static int mark_gone(void *base, const struct xio_seg_layout *l, void *arg)
{
	(void)l;
	xio_seg_mark_gone(base, (unsigned)(uintptr_t)arg);
	return 0;
}

void mon_seg_mark_gone(const struct monitor *m, const struct mon_conn *c, unsigned side)
{
	if (c->accel && (c->view || c->segfd >= 0))
		mon_conn_seg_run(m, c, mark_gone, (void *)(uintptr_t)side);
}

/* The name of the view [base, base + len) among our own mappings. */
static void map_files_path(char *path, size_t size, const void *base, size_t len)
{
	snprintf(path, size, "/proc/self/map_files/%lx-%lx", (unsigned long)(uintptr_t)base,
		 (unsigned long)((uintptr_t)base + len));
}

int mon_seg_views_probe(void)
{
	char path[80];
	long page = sysconf(_SC_PAGESIZE);
	size_t len = page > 0 ? (size_t)page : 4096;
	int r = 0, fd = xio_sys_memfd_create("xio-probe", MFD_CLOEXEC);
	if (fd < 0)
		return fd;
	void *base = MAP_FAILED;
	struct stat a, b;
	if ((r = xio_sys_ftruncate(fd, (off_t)len)) < 0 || (r = xio_sys_fstat(fd, &a)) < 0)
		goto out;
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		r = -errno;
		goto out;
	}
	xio_sys_close(fd);
	map_files_path(path, sizeof(path), base, len);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		r = -errno;
	else if ((r = xio_sys_fstat(fd, &b)) == 0 && (a.st_ino != b.st_ino || a.st_dev != b.st_dev))
		r = -ENXIO; /* not the file we mapped: never trust it */
out:
	if (base != MAP_FAILED)
		munmap(base, len);
	if (fd >= 0)
		xio_sys_close(fd);
	return r;
}

int mon_seg_view_map(const struct monitor *m, struct mon_conn *c)
{
	struct xio_seg_layout l;
	struct stat st;
	int r;
	if ((r = xio_seg_layout(&m->params, &l)) < 0 || (r = xio_sys_fstat(c->segfd, &st)) < 0)
		return r;
	/* Up to the end of the second channel's control block, in whole
	 * pages of the segment's own size (a hugetlb file gives its
	 * hugepage size, and cannot be mapped in less). */
	size_t page = st.st_blksize > 0 ? (size_t)st.st_blksize : 4096;
	size_t len = l.chan_off[1] + sizeof(struct xio_chan_ctl);
	len = (len + page - 1) / page * page;
	if (len > m->params.seg_size)
		len = m->params.seg_size;
	void *v = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, c->segfd, 0);
	if (v == MAP_FAILED)
		return -errno;
	c->view = v;
	c->view_len = len;
	return 0;
}

void mon_seg_view_unmap(struct mon_conn *c)
{
	if (c->view)
		munmap(c->view, c->view_len);
	c->view = NULL;
	c->view_len = 0;
}

int mon_seg_reopen(const struct mon_conn *c)
{
	char path[80];
	if (!c->view)
		return -EBADF;
	map_files_path(path, sizeof(path), c->view, c->view_len);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}
