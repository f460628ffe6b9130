/*
 * test_stray_byte.c - issue 15, item 2: a peer that writes bytes on its
 * kernel socket that no doorbell claim owes (a broken or hostile peer: the
 * shim never does it) must not make the other side's blocking read spin.
 * Every byte on the kernel socket of an accelerated connection is a
 * doorbell owed for a claim; a byte owed to nobody is dropped as noise,
 * and the read sleeps until real data comes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "xio.h"

static struct t_monitor mon;
static xio_listener *lis;

static void up(void)
{
	t_suite_up(&mon, &lis, 16);
}

static void down(void)
{
	t_suite_down(&mon, &lis);
}

TestSuite(stray_byte, .init = up, .fini = down, .timeout = 30);

static uint64_t cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The hostile client: a few bytes straight onto its kernel socket (the
 * raw system call, past any library), then, 400 ms later, real data. */
static int stray_then_data(xio_conn *c, void *arg)
{
	(void)arg;
	usleep(100000);
	int fd = xio_conn_fd(c);
	if (syscall(SYS_sendto, fd, "\x7f\x00\x7f", 3, 0, NULL, 0) != 3)
		return 1;
	usleep(400000);
	if (xio_write(c, "data", 4) != 4)
		return 2;
	char ok;
	return t_read_full(c, &ok, 1) == 1 ? 0 : 3;
}

/* A blocking read that finds the stray bytes sleeps on until the data
 * comes (little CPU over the 400 ms wait), then reads exactly that data,
 * and the connection goes on working. */
Test(stray_byte, blocking_read_does_not_spin)
{
	xio_conn *c;
	pid_t pid = t_pair_accelerated(lis, &c, 0, stray_then_data, NULL);
	char b[8];
	uint64_t cpu0 = cpu_us(), t0 = t_now_ms();
	ssize_t r = t_read_full(c, b, 4);
	uint64_t cpu = cpu_us() - cpu0, wall = (t_now_ms() - t0) * 1000;
	cr_assert_eq(r, 4, "read: %s", xio_strerror((int)r));
	cr_assert_eq(memcmp(b, "data", 4), 0, "read %02x %02x %02x %02x", b[0], b[1], b[2], b[3]);
	cr_assert_gt(wall, 300000u, "the data came after only %lu us", (unsigned long)wall);
	cr_assert_lt(cpu, wall / 4, "%lu us of CPU while waiting %lu us: the read spun",
		     (unsigned long)cpu, (unsigned long)wall);
	cr_assert_eq(xio_write(c, "k", 1), 1);
	t_reap(pid, 5000);
	xio_close(c);
}
