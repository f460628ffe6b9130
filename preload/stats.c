/*
 * stats.c - the process's counters, and the XIO_STATS line at exit:
 *   xio-stats pid=N accel_conns=N fallback_conns=N tx_bytes=N rx_bytes=N
 *             tx_msgs=N rx_msgs=N doorbells=N
 * (one line; tx/rx count payload over shared memory only). XIO_STATS=1
 * writes it to stderr, XIO_STATS=/path appends it to that file.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "xio/sys.h"

struct xio_shim_stats xio_stats;
static _Atomic uint64_t doorbells;
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

static void print_stats(void)
{
	char line[320];
	int saved = errno;
	fdtab_each(add_live, NULL);
	int n = snprintf(line, sizeof(line),
			 "xio-stats pid=%d accel_conns=%llu fallback_conns=%llu tx_bytes=%llu "
			 "rx_bytes=%llu tx_msgs=%llu rx_msgs=%llu doorbells=%llu\n",
			 (int)xio_sys_getpid(), (unsigned long long)xio_stats.accel_conns,
			 (unsigned long long)xio_stats.fallback_conns,
			 (unsigned long long)xio_stats.tx_bytes,
			 (unsigned long long)xio_stats.rx_bytes,
			 (unsigned long long)xio_stats.tx_msgs,
			 (unsigned long long)xio_stats.rx_msgs, (unsigned long long)doorbells);
	if (n <= 0 || (size_t)n >= sizeof(line))
		return;
	if (!strcmp(stats_to, "1")) {
		xio_sys_write(2, line, (size_t)n);
	} else {
		/* O_APPEND: lines of many processes interleave whole. */
		int fd = (int)XIO__SC(SYS_openat, AT_FDCWD, stats_to,
				      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644, 0, 0);
		if (fd >= 0) {
			xio_sys_write(fd, line, (size_t)n);
			xio_sys_close(fd);
		}
	}
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
