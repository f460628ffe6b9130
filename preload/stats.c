/*
 * stats.c - the process's counters, and the XIO_STATS line at exit:
 *   xio-stats pid=N accel_conns=N fallback_conns=N tx_bytes=N rx_bytes=N
 *             tx_msgs=N rx_msgs=N doorbells=N left_conns=N epoll_waits=N
 *             epoll_looks=N epoll_parks=N epoll_unparks=N
 * (one line; epoll_looks counts the members epoll_wait looked at in shared
 * memory, so looks per wait say whether waits grow with the set (they
 * must not: epoll_set.h); epoll_parks and epoll_unparks count members that
 * went quiet and came back through the kernel; tx/rx count payload over
 * shared memory only), and a line
 *   xio-left pid=N fd=N reason=R tx_off=N rx_off=N [peer=R]
 * when a connection moves back to kernel TCP (at the byte offsets of each
 * direction where it did; peer= when it followed its peer, with why). XIO_STATS=1
 * writes it to stderr, XIO_STATS=/path appends it to that file.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "xio/sys.h"

struct xio_shim_stats xio_stats;
static _Atomic uint64_t doorbells, left_conns;
/* A copy: programs that set their process title (redis, nginx,
 * PostgreSQL) overwrite the original environment strings. */
static char stats_to[1024];

void xio__stats_reset(void)
{
	atomic_store(&xio_stats.accel_conns, 0);
	atomic_store(&xio_stats.fallback_conns, 0);
	atomic_store(&xio_stats.tx_bytes, 0);
	atomic_store(&xio_stats.rx_bytes, 0);
	atomic_store(&xio_stats.tx_msgs, 0);
	atomic_store(&xio_stats.rx_msgs, 0);
	atomic_store(&doorbells, 0);
	atomic_store(&left_conns, 0);
	atomic_store(&xio_stats.ep_waits, 0);
	atomic_store(&xio_stats.ep_looks, 0);
	atomic_store(&xio_stats.ep_parks, 0);
	atomic_store(&xio_stats.ep_unparks, 0);
	atomic_store(&xio_stats.gave_back_tx, 0);
	atomic_store(&xio_stats.gave_back_rx, 0);
}

void xio__stats_conn_closed(const struct xio_conn *c)
{
	atomic_fetch_add_explicit(&doorbells, c->st.doorbells, memory_order_relaxed);
}

static void add_live(int fd, struct psock *ps, void *arg)
{
	(void)fd;
	(void)arg;
	if (atomic_load(&ps->kind) == PS_CONN && ps->conn && ps->fd == fd)
		xio__stats_conn_closed(ps->conn);
}

/* One line to where XIO_STATS says: stderr, or appended to a file (lines
 * of many processes interleave whole with O_APPEND). */
static void emit(const char *line, size_t n)
{
	if (!stats_to[0])
		return;
	if (!strcmp(stats_to, "1")) {
		xio_sys_write(2, line, n);
		return;
	}
	int fd = (int)XIO__SC(SYS_openat, AT_FDCWD, stats_to, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0644, 0, 0);
	if (fd >= 0) {
		xio_sys_write(fd, line, n);
		xio_sys_close(fd);
	}
}

void xio__stats_left(int fd, const struct xio_conn *c)
{
	char line[220];
	atomic_fetch_add_explicit(&left_conns, 1, memory_order_relaxed);
	int n = snprintf(line, sizeof(line), "xio-left pid=%d fd=%d reason=%s tx_off=%llu rx_off=%llu",
			 (int)xio_sys_getpid(), fd, xio_leave_reason_name(c->left),
			 (unsigned long long)c->left_tx_off, (unsigned long long)c->left_rx_off);
	/* A follower names the peer's reason too: a peer that could not write
	 * its own line (sshd's sandbox: no fd to open, no file size) still
	 * shows why the connection moved. */
	if (n > 0 && c->left == XIO_LEAVE_PEER && c->hdr)
		n += snprintf(line + n, sizeof(line) - (size_t)n, " peer=%s",
			      xio_leave_reason_name(atomic_load(&c->hdr->left[1 - c->side])));
	if (n > 0 && (size_t)n < sizeof(line) - 1) {
		line[n++] = '\n';
		emit(line, (size_t)n);
	}
}

static void print_stats(void)
{
	char line[512];
	int saved = errno;
	fdtab_each(add_live, NULL);
	int n = snprintf(line, sizeof(line),
			 "xio-stats pid=%d accel_conns=%llu fallback_conns=%llu tx_bytes=%llu "
			 "rx_bytes=%llu tx_msgs=%llu rx_msgs=%llu doorbells=%llu left_conns=%llu "
			 "epoll_waits=%llu epoll_looks=%llu epoll_parks=%llu epoll_unparks=%llu "
			 "gave_back_tx=%llu gave_back_rx=%llu\n",
			 (int)xio_sys_getpid(), (unsigned long long)xio_stats.accel_conns,
			 (unsigned long long)xio_stats.fallback_conns,
			 (unsigned long long)xio_stats.tx_bytes,
			 (unsigned long long)xio_stats.rx_bytes,
			 (unsigned long long)xio_stats.tx_msgs,
			 (unsigned long long)xio_stats.rx_msgs, (unsigned long long)doorbells,
			 (unsigned long long)left_conns, (unsigned long long)xio_stats.ep_waits,
			 (unsigned long long)xio_stats.ep_looks, (unsigned long long)xio_stats.ep_parks,
			 (unsigned long long)xio_stats.ep_unparks,
			 (unsigned long long)xio_stats.gave_back_tx,
			 (unsigned long long)xio_stats.gave_back_rx);
	if (n > 0 && (size_t)n < sizeof(line))
		emit(line, (size_t)n);
	errno = saved;
}

/* A process that exits with connections open: the kernel closes the
 * sockets, and the peers must see an orderly end as over TCP. Nothing is
 * unmapped (other threads may still run during exit), and connections
 * shared with another process through fork are left to it. */
static void fin_live(int fd, struct psock *ps, void *arg)
{
	(void)arg;
	if (atomic_load(&ps->kind) == PS_CONN && ps->conn && ps->fd == fd && !ps->inherited)
		xio__conn_fin(ps->conn);
}

__attribute__((destructor)) static void shim_exit(void)
{
	int saved = errno;
	fdtab_each(fin_live, NULL);
	errno = saved;
}

void xio__stats_init(void)
{
	const char *s = getenv("XIO_STATS");
	if (s && *s && strcmp(s, "0") && strlen(s) < sizeof(stats_to)) {
		memcpy(stats_to, s, strlen(s) + 1);
		atexit(print_stats);
	}
}
