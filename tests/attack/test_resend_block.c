/*
 * test_resend_block.c - issue 15, item 8: a peer that moves its side of a
 * connection back to TCP and never reads must not block the other side.
 * When a side leaves shared memory, its peer follows: it sends again, over
 * the kernel, what the leaver had not read of its ring. That used to be a
 * loop that waited for the kernel to take it all, whatever the socket's
 * O_NONBLOCK: a peer of uid 1002 that left and read nothing held a
 * non-blocking writer (and a one-thread event loop with it) for as long as
 * it lived.
 *
 * Two plain programs under the shim (resend_peer.c): a victim of uid 1001
 * with its ring full of data the peer never read, and a peer of uid 1002
 * that leaves (dup2 onto stdin) and then reads nothing until told. Each of
 * the victim's non-blocking writes must come back within a few ms, poll
 * must not report room, what the peer sent meanwhile must be readable, a
 * blocking write with SO_SNDTIMEO must end with EAGAIN after its timeout;
 * and once the peer reads, every byte must arrive, in order, once, whether
 * the victim writes on from an event loop or closes the socket at once.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attack.h"

TestSuite(resend_block, .fini = a_fini, .timeout = 90);

/* Bounds. A write that blocks on the peer misses WRITE_WATCHDOG_MS by
 * far (it waited for the peer forever); one that does not takes
 * microseconds, and MAX_WRITE_US leaves room for a loaded machine and for
 * AddressSanitizer. */
#define WRITE_WATCHDOG_MS 5000
#define MAX_WRITE_US 50000
#define SNDTIMEO_MS 200
#define STEP_MS 10000

struct prog {
	pid_t pid;
	int rep; /* its reports (its fd 3) */
	int cmd; /* its commands (its fd 4) */
	char buf[4096];
	size_t n;
};

struct exec_arg {
	uid_t uid;
	int rep, cmd;
	const char *a1, *a2;
};

/* In the child: fd 3 reports, fd 4 commands, then resend_peer under the
 * shim as uid. */
static int exec_peer(void *arg)
{
	struct exec_arg *e = arg;
	dup2(e->rep, 3);
	dup2(e->cmd, 4);
	a_become(e->uid);
	setenv("LD_PRELOAD", XIO_PRELOAD_SO, 1);
#if defined(__SANITIZE_ADDRESS__)
	/* The runtimes are preloaded ahead of the shim, not linked first. */
	const char *a = getenv("ASAN_OPTIONS");
	char opts[512];
	snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", a ? a : "", a && *a ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
#endif
	execl(RESEND_PEER_BIN, RESEND_PEER_BIN, e->a1, e->a2, (char *)NULL);
	return 127;
}

/* Start resend_peer victim|peer (a_fini kills it if the test fails). */
static void spawn(struct prog *p, uid_t uid, const char *a1, const char *a2)
{
	int rep[2], cmd[2];
	memset(p, 0, sizeof(*p));
	cr_assert(pipe2(rep, O_CLOEXEC) == 0 && pipe2(cmd, O_CLOEXEC) == 0);
	struct exec_arg e = { uid, rep[1], cmd[0], a1, a2 };
	p->pid = a_fork(exec_peer, &e);
	close(rep[1]);
	close(cmd[0]);
	p->rep = rep[0];
	p->cmd = cmd[1];
}

static void send_cmd(struct prog *p, char c)
{
	cr_assert_eq(write(p->cmd, &c, 1), 1, "command '%c': %s", c, strerror(errno));
}

/* The next report line of p (without its newline), waiting at most ms;
 * NULL if none came. A "fail" line fails the test. */
static const char *next_line(struct prog *p, int ms, char *out, size_t outlen)
{
	uint64_t end = t_now_ms() + (uint64_t)ms;
	for (;;) {
		char *nl = memchr(p->buf, '\n', p->n);
		if (nl) {
			size_t len = (size_t)(nl - p->buf);
			snprintf(out, outlen, "%.*s", (int)len, p->buf);
			memmove(p->buf, nl + 1, p->n - len - 1);
			p->n -= len + 1;
			cr_assert(strncmp(out, "fail", 4), "pid %d: %s", (int)p->pid, out);
			return out;
		}
		uint64_t now = t_now_ms();
		if (now >= end || p->n == sizeof(p->buf))
			return NULL;
		struct pollfd q = { .fd = p->rep, .events = POLLIN };
		if (poll(&q, 1, (int)(end - now)) <= 0)
			continue;
		ssize_t r = read(p->rep, p->buf + p->n, sizeof(p->buf) - p->n);
		if (r <= 0)
			return NULL;
		p->n += (size_t)r;
	}
}

static void expect_line(struct prog *p, int ms, const char *what, char *out, size_t outlen)
{
	const char *l = next_line(p, ms, out, outlen);
	cr_assert(l, "pid %d: no \"%s\" within %d ms", (int)p->pid, what, ms);
	cr_assert(!strncmp(l, what, strlen(what)), "pid %d: \"%s\", expected \"%s\"", (int)p->pid,
		  l, what);
}

static void run(const char *mode)
{
	struct prog v, p;
	char line[256], port[16];
	unsigned long long filled, total, maxus, tms, closed, closed_us, got;
	int pollout, err;
	char read_back[16];

	t_monitor_start(&a_mon, "--hugepages", "off", NULL);
	spawn(&v, A_UID_VICTIM, "victim", mode);
	expect_line(&v, STEP_MS, "port ", line, sizeof(line));
	snprintf(port, sizeof(port), "%u", (unsigned)strtoul(line + 5, NULL, 10));
	spawn(&p, A_UID_ATTACKER, "peer", port);
	expect_line(&p, STEP_MS, "connected", line, sizeof(line));
	expect_line(&v, STEP_MS, "accepted", line, sizeof(line));
	struct xio_msg_status st = t_monitor_status();
	for (int i = 0; i < 200 && st.accel_total < 1; i++) {
		usleep(10000);
		st = t_monitor_status();
	}
	cr_assert_eq(st.accel_total, 1, "the connection was not accelerated (%llu)",
		     (unsigned long long)st.accel_total);

	send_cmd(&v, 'f');
	expect_line(&v, STEP_MS, "filled ", line, sizeof(line));
	filled = strtoull(line + 7, NULL, 10);
	cr_assert(filled >= 256 * 1024, "only %llu bytes in flight in the ring", filled);
	send_cmd(&p, 'l');
	expect_line(&p, STEP_MS, "left", line, sizeof(line));

	/* The watchdog: a write that waits for the peer never reports. */
	send_cmd(&v, 'w');
	const char *l = next_line(&v, WRITE_WATCHDOG_MS + 2000, line, sizeof(line));
	if (!l)
		send_cmd(&p, 'r'); /* let it unwind before the kill */
	cr_assert(l, "the victim's non-blocking writes did not come back within %d ms "
		     "while the peer that left read nothing (the resend blocked them)",
		  WRITE_WATCHDOG_MS);
	cr_assert_eq(sscanf(l, "wrote %llu maxus %llu pollout %d read %15s timeo %d %llu", &total,
			    &maxus, &pollout, read_back, &err, &tms),
		     6, "report \"%s\"", l);
	cr_log_info("resend_block %s: %llu in the ring, %llu written in all, slowest write %llu us, "
		    "SO_SNDTIMEO write %llu ms",
		    mode, filled, total, maxus, tms);
	cr_expect_lt(maxus, MAX_WRITE_US, "a non-blocking write took %llu us", maxus);
	cr_expect_eq(pollout, 0, "POLLOUT reported while the resend could not go out");
	cr_expect_str_eq(read_back, "pongping", "what the peer sent after it left");
	cr_expect_eq(err, EAGAIN, "the blocking write with SO_SNDTIMEO ended with %d (%s)", err,
		     strerror(err));
	cr_expect(tms >= SNDTIMEO_MS * 3 / 4 && tms < SNDTIMEO_MS * 10,
		  "the blocking write with SO_SNDTIMEO %d ms came back after %llu ms", SNDTIMEO_MS,
		  tms);

	if (strcmp(mode, "poll")) {
		/* Closed, or shut down, at once with the resend still pending:
		 * it goes on in the background, then the end of the stream. */
		send_cmd(&v, 'e');
		expect_line(&v, STEP_MS, "closed ", line, sizeof(line));
		cr_assert_eq(sscanf(line, "closed %llu %llu", &closed, &closed_us), 2);
		cr_expect_lt(closed_us, MAX_WRITE_US, "the %s took %llu us", mode, closed_us);
		send_cmd(&p, 'r');
	} else {
		/* The peer reads; the victim's event loop writes on. */
		send_cmd(&p, 'r');
		send_cmd(&v, 'e');
		expect_line(&v, STEP_MS, "closed ", line, sizeof(line));
		cr_assert_eq(sscanf(line, "closed %llu %llu", &closed, &closed_us), 2);
	}
	expect_line(&p, STEP_MS, "read ", line, sizeof(line));
	cr_assert(strstr(line, " ok"), "the peer read a wrong stream: \"%s\" (victim wrote %llu)",
		  line, closed);
	got = strtoull(line + 5, NULL, 10);
	cr_expect_eq(got, closed, "the peer read %llu bytes, the victim wrote %llu", got, closed);
	send_cmd(&v, 'x');
	cr_expect_eq(t_wait(v.pid, STEP_MS), 0, "victim");
	cr_expect_eq(t_wait(p.pid, STEP_MS), 0, "peer");
	close(v.rep);
	close(v.cmd);
	close(p.rep);
	close(p.cmd);
}

/* A non-blocking writer whose peer left and reads nothing is never held:
 * its writes return EAGAIN or what the kernel took, and once the peer
 * reads, an event loop's writes all arrive, in order, once. */
Test(resend_block, event_loop_writes_on)
{
	run("poll");
}

/* The same, and the victim closes its socket at once with the resend
 * pending: the close does not wait, and the rest arrives all the same. */
Test(resend_block, close_with_resend_pending)
{
	run("close");
}

/* The same, and the victim shuts down writing at once with the resend
 * pending: its writes fail with EPIPE from then on, and the end of the
 * stream reaches the peer after the rest, not before. */
Test(resend_block, shutdown_with_resend_pending)
{
	run("shutdown");
}
