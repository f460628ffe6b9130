/*
 * test_epoll_hostile.c - issue 16: an epoll server's waits cost O(ready
 * members) because quiet accelerated members are parked, armed with a
 * token of their own, and come back when the kernel reports their doorbell
 * byte (docs/design.md, "Waiting on many connections"). The design claims
 * that a hostile peer reaches only its own connection: garbage on its
 * kernel socket is dropped as stray (core/wait.c drop_stray), and it can
 * neither make another member's events be lost, nor make the waiter spin,
 * nor turn waits into walks of the whole set.
 *
 * The victim is a plain epoll echo server under the shim (epoll_victim.c,
 * uid 1001) holding N_IDLE idle accelerated connections (a native-API
 * holder of uid 1003, each connection used once and then silent), an
 * honest native-API client (uid 1004) that times round trips, and one
 * hostile native-API peer (uid 1002), which attacks through what it can
 * reach: its own kernel socket, past the library (the raw system call),
 * and the words of its own segment. Each test then checks that every
 * honest round trip completed within RT_BOUND_US, that the victim burns
 * little CPU over a quiet second (from /proc/PID/stat), that every 20th
 * idle connection still echoes, that at most the hostile connection broke,
 * and that the victim's shim looked at few members per wake-up (XIO_STATS:
 * epoll_looks / (epoll_waits + epoll_unparks), far below the set's size;
 * the victim runs with XIO_POLL_SPIN_US=0, see exec_victim).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "attack.h"
#include "peer_report.h"
#include "xio/conn.h"

#define UID_HONEST 1004
/* Idle connections beside the honest and the hostile one. */
#define N_IDLE 2000
/* The honest client's round trips, their size, and the time between them
 * (so that they span the attack), and the bound on each. A round trip that
 * waits on a walk of the set or behind a spinning waiter takes
 * milliseconds; this leaves room for a loaded machine and AddressSanitizer. */
#define RTS 100
#define RT_SIZE 64
#define RT_GAP_US 10000
#define RT_BOUND_US 200000
/* Members looked at per wake-up over the victim's whole life (its setup
 * of N_IDLE connections included). A wake-up is a wait the program made or
 * a member the kernel reported back from parked: a peer that rings wakes
 * the set again and again inside one wait of the program, each time for a
 * look at the ready list, as a TCP peer that keeps sending wakes the
 * kernel's epoll. A look that walks the set costs about N_IDLE. */
#define MAX_LOOKS_PER_WAKE 50
/* The victim's CPU over a quiet second, in percent of one CPU. A waiter
 * that spins takes nearly 100. */
#define MAX_QUIET_CPU_PCT 30
/* How long one step may take (the setup of N_IDLE connections included). */
#define STEP_MS 20000

static char stats_path[64];

static void fini(void)
{
	a_fini();
	a_monitor_stop();
	if (stats_path[0])
		unlink(stats_path);
	stats_path[0] = 0;
}

TestSuite(epoll_hostile, .fini = fini, .timeout = 60);

/* A process the test drives: commands in, report lines out. */
struct proc {
	const char *who;
	pid_t pid;
	int rep, cmd;
	char buf[4096];
	size_t n;
};

/* What a forked peer gets. */
struct peer_arg {
	uid_t uid;
	uint16_t port;
	int rep, cmd;
	int kind;  /* HOLDER, HONEST or one of the attacks */
	int ms;    /* how long an attack lasts */
};

enum { HOLDER, HONEST, FLOOD, FORGE, RING, ONE_WORD };

/* --- in the children ---------------------------------------------------- */

/* The next command byte; 'x' when the test is gone (end of file). */
static char command(int fd)
{
	char c;
	ssize_t r;
	while ((r = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	return r == 1 ? c : 'x';
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One round trip of len bytes (pattern seeded by seq): 0, or a negative
 * errno / -EBADMSG for a wrong echo. */
static int round_trip(xio_conn *c, size_t len, uint64_t seq)
{
	unsigned char out[RT_SIZE], in[RT_SIZE];
	t_pattern_fill(out, len, seq, 0);
	ssize_t r = xio_write(c, out, len);
	if (r != (ssize_t)len)
		return r < 0 ? (int)r : -EIO;
	r = t_read_full(c, in, len);
	if (r != (ssize_t)len)
		return r < 0 ? (int)r : -ECONNRESET;
	return memcmp(in, out, len) ? -EBADMSG : 0;
}

static int connect_victim(struct peer_arg *a, xio_conn **c)
{
	struct sockaddr_in sa = t_loopback(a->port);
	return xio_connect(c, (struct sockaddr *)&sa, sizeof(sa), 0);
}

/* N_IDLE connections, each used once, then silent until the test checks
 * some of them ('c') or ends ('x'). */
static int holder(struct peer_arg *a)
{
	static xio_conn *cs[N_IDLE];
	int accel = 0;
	uint64_t t0 = now_us();
	for (int i = 0; i < N_IDLE; i++) {
		int r = connect_victim(a, &cs[i]);
		if (r < 0) {
			peer_say(a->rep, "fail connect %d: %s", i, strerror(-r));
			return 1;
		}
		if ((r = round_trip(cs[i], 1, (uint64_t)i)) < 0) {
			peer_say(a->rep, "fail first round trip %d: %s", i, strerror(-r));
			return 1;
		}
		accel += xio_conn_is_accelerated(cs[i]);
	}
	peer_say(a->rep, "held %d accel %d ms %llu", N_IDLE, accel,
	    (unsigned long long)((now_us() - t0) / 1000));
	char c;
	while ((c = command(a->cmd)) != 'x') {
		/* Every 20th idle connection still echoes. */
		int ok = 0, tried = 0;
		for (int i = 0; i < N_IDLE; i += 20, tried++)
			ok += round_trip(cs[i], 1, (uint64_t)i + 7) == 0;
		peer_say(a->rep, "checked %d ok %d", tried, ok);
	}
	for (int i = 0; i < N_IDLE; i++)
		xio_close(cs[i]);
	return 0;
}

/* 'r': RTS round trips RT_GAP_US apart; 's': 20 at once. Each is timed. */
static int honest(struct peer_arg *a, xio_conn *c)
{
	char cmd;
	uint64_t seq = 1000;
	while ((cmd = command(a->cmd)) != 'x') {
		int n = cmd == 'r' ? RTS : 20, done = 0;
		uint64_t maxus = 0, sumus = 0;
		for (; done < n; done++) {
			uint64_t t0 = now_us();
			int r = round_trip(c, RT_SIZE, seq++);
			uint64_t dt = now_us() - t0;
			if (r < 0) {
				peer_say(a->rep, "fail round trip %d of %d: %s", done, n, strerror(-r));
				return 1;
			}
			maxus = dt > maxus ? dt : maxus;
			sumus += dt;
			if (cmd == 'r')
				usleep(RT_GAP_US);
		}
		peer_say(a->rep, "rt %d maxus %llu avgus %llu", done, (unsigned long long)maxus,
		    (unsigned long long)(sumus / (uint64_t)done));
	}
	return 0;
}

/* The flood: raw bytes onto its own kernel socket, past the library, as
 * fast as the kernel takes them. */
static uint64_t flood(xio_conn *c, uint64_t end)
{
	static unsigned char junk[4096];
	uint64_t sent = 0;
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 151u + 13u);
	int fd = xio_conn_fd(c);
	while (now_us() < end) {
		long r = syscall(SYS_sendto, fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL,
				 NULL, 0);
		if (r > 0) {
			sent += (uint64_t)r;
		} else if (r < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			syscall(SYS_poll, &p, 1, 1);
		} else {
			break; /* the victim dropped us: that is allowed */
		}
	}
	return sent;
}

static void stray(xio_conn *c, unsigned char b)
{
	syscall(SYS_sendto, xio_conn_fd(c), &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL, NULL, 0);
}

/*
 * The forger: rewrites every waiting word and token of its own segment, the
 * victim's (its rx word on our direction, its tx word on its own) and our
 * own (which the victim claims when it echoes to us), with every state and
 * with garbage, tokens with 0, all ones, a counter and values the victim
 * wrote there; now and then a byte on the kernel socket that nothing owes,
 * or real data (which makes the victim read, echo, and claim our words).
 * It stops with the victim's words garbage and stray bytes sent.
 */
static uint64_t forge(xio_conn *xc, uint64_t end)
{
	static const uint32_t vals[] = { XIO_WAIT_IDLE, XIO_WAIT_ARMED, XIO_WAIT_CLAIMED,
					 XIO_WAIT_LEFT, 0xdeadbeefu,    7u,
					 0xffffffffu };
	const unsigned nv = sizeof(vals) / sizeof(vals[0]);
	struct xio_conn *c = (struct xio_conn *)xc;
	/* Side 0: tx is our direction (the victim receives), rx is its. */
	_Atomic uint32_t *v_rx = &c->tx.g.ctl->rx_waiting, *v_tx = &c->rx.g.ctl->tx_waiting;
	_Atomic uint64_t *v_rxtok = &c->tx.g.ctl->rx_token, *v_txtok = &c->rx.g.ctl->tx_token;
	_Atomic uint32_t *o_rx = &c->rx.g.ctl->rx_waiting, *o_tx = &c->tx.g.ctl->tx_waiting;
	_Atomic uint64_t *o_rxtok = &c->rx.g.ctl->rx_token, *o_txtok = &c->tx.g.ctl->tx_token;
	uint64_t seen[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	unsigned nseen = 0;
	uint64_t i = 0;
	unsigned char junk[16];
	memset(junk, 0x5a, sizeof(junk));
	xio_conn_set_nonblock(xc, 1);
	while (now_us() < end) {
		i++;
		uint64_t t = atomic_load(v_rxtok), u = atomic_load(v_txtok);
		if (t > 64 && t != seen[(nseen - 1) % 8])
			seen[nseen++ % 8] = t;
		if (u > 64 && u != seen[(nseen - 1) % 8])
			seen[nseen++ % 8] = u;
		atomic_store(v_rx, vals[i % nv]);
		atomic_store(v_tx, vals[(i / nv) % nv]);
		uint64_t tok = i % 4 == 0 ? 0 : i % 4 == 1 ? seen[(i / 4) % 8] : i % 4 == 2 ? ~0ull : i;
		atomic_store(v_rxtok, tok);
		atomic_store(v_txtok, ~tok);
		atomic_store(o_rxtok, seen[i % 8]);
		atomic_store(o_txtok, tok);
		atomic_store(o_rx, vals[(i / 3) % nv]);
		atomic_store(o_tx, vals[(i / 5) % nv]);
		if (i % 4096 == 0) {
			switch ((i / 4096) % 3) {
			case 0:
				stray(xc, 0x7f);
				break;
			case 1:
				xio_write(xc, junk, sizeof(junk));
				break;
			default:
				xio_read(xc, junk, sizeof(junk)); /* some of the echoes */
				break;
			}
		}
	}
	atomic_store(v_rx, 0xdeadbeefu);
	atomic_store(v_tx, 0xdeadbeefu);
	atomic_store(o_rx, XIO_WAIT_CLAIMED);
	atomic_store(o_tx, 0xdeadbeefu);
	/* More than the victim may count as owed (each claim forged without
	 * a byte is one it waits for, then owes itself): some are stray. */
	for (int k = 0; k < 4096; k++)
		stray(xc, 0x7f);
	return i;
}

/* The ringer: claims the victim's words whenever they are armed, and
 * rings, claimed or not, over and over, without ever posting anything. */
static uint64_t ring(xio_conn *xc, uint64_t end)
{
	struct xio_conn *c = (struct xio_conn *)xc;
	_Atomic uint32_t *v_rx = &c->tx.g.ctl->rx_waiting, *v_tx = &c->rx.g.ctl->tx_waiting;
	uint64_t rings = 0;
	while (now_us() < end) {
		xio_wait_claim(v_rx);
		xio_wait_claim(v_tx);
		unsigned char bell = 0;
		long r = syscall(SYS_sendto, xio_conn_fd(xc), &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL,
				 NULL, 0);
		if (r == 1) {
			rings++;
		} else if (r < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = xio_conn_fd(xc), .events = POLLOUT };
			syscall(SYS_poll, &p, 1, 1);
		} else {
			break;
		}
	}
	return rings;
}

/* One store and one byte: the victim's tx word (which an echo server that
 * never waits for room never arms) set to XIO_WAIT_LEFT, as if a leave of
 * the victim's own were under way, and a byte on the kernel socket that
 * nothing owes. */
static uint64_t one_word(xio_conn *xc)
{
	struct xio_conn *c = (struct xio_conn *)xc;
	atomic_store(&c->rx.g.ctl->tx_waiting, XIO_WAIT_LEFT);
	stray(xc, 0x7f);
	return 1;
}

static int peer_main(void *arg)
{
	struct peer_arg *a = arg;
	a_become(a->uid);
	alarm(60); /* never outlive the test */
	if (a->kind == HOLDER)
		return holder(a);
	xio_conn *c;
	int r = connect_victim(a, &c);
	if (r < 0) {
		peer_say(a->rep, "fail connect: %s", strerror(-r));
		return 1;
	}
	if ((r = round_trip(c, RT_SIZE, 1)) < 0) {
		peer_say(a->rep, "fail first round trip: %s", strerror(-r));
		return 1;
	}
	peer_say(a->rep, "ready accel %d", xio_conn_is_accelerated(c));
	if (a->kind == HONEST) {
		r = honest(a, c);
		xio_close(c);
		return r;
	}
	if (command(a->cmd) != 'g')
		return 0;
	uint64_t end = now_us() + (uint64_t)a->ms * 1000, n;
	if (a->kind == FLOOD)
		n = flood(c, end);
	else if (a->kind == FORGE)
		n = forge(c, end);
	else if (a->kind == ONE_WORD)
		n = one_word(c);
	else
		n = ring(c, end);
	peer_say(a->rep, "done %llu", (unsigned long long)n);
	command(a->cmd); /* stays connected, and quiet, until the end */
	return 0;
}

/* --- in the test ---------------------------------------------------------- */

static void proc_pipes(struct proc *p, const char *who, int child_end[2])
{
	int rep[2], cmd[2];
	memset(p, 0, sizeof(*p));
	p->who = who;
	cr_assert(pipe2(rep, O_CLOEXEC) == 0 && pipe2(cmd, O_CLOEXEC) == 0);
	p->rep = rep[0];
	p->cmd = cmd[1];
	child_end[0] = rep[1];
	child_end[1] = cmd[0];
}

static void peer_start(struct proc *p, const char *who, int kind, uid_t uid, uint16_t port, int ms)
{
	int ends[2];
	proc_pipes(p, who, ends);
	struct peer_arg a = { uid, port, ends[0], ends[1], kind, ms };
	p->pid = a_fork(peer_main, &a);
	close(ends[0]);
	close(ends[1]);
}

struct exec_arg {
	int rep, cmd;
};

/* In the child: fd 3 reports, fd 4 commands, then epoll_victim under the
 * shim as uid 1001, its XIO_STATS line to stats_path. */
static int exec_victim(void *arg)
{
	struct exec_arg *e = arg;
	dup2(e->rep, 3);
	dup2(e->cmd, 4);
	a_become(A_UID_VICTIM);
	setenv("LD_PRELOAD", XIO_PRELOAD_SO, 1);
	setenv("XIO_STATS", stats_path, 1);
	/* No look-before-sleep spin: epoll_looks counts every look at a
	 * member, and a 20 us spin repeats the look at the ready list a
	 * hundred times per wait, whatever the set's size; without it, looks
	 * per wait are the members each look covers, which is the claim. */
	setenv("XIO_POLL_SPIN_US", "0", 1);
#if defined(__SANITIZE_ADDRESS__)
	/* The runtimes are preloaded ahead of the shim, not linked first. */
	const char *o = getenv("ASAN_OPTIONS");
	char opts[512];
	snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", o ? o : "", o && *o ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
#endif
	execl(EPOLL_VICTIM_BIN, EPOLL_VICTIM_BIN, (char *)NULL);
	return 127;
}

static void send_cmd(struct proc *p, char c)
{
	cr_assert_eq(write(p->cmd, &c, 1), 1, "%s: command '%c': %s", p->who, c, strerror(errno));
}

/* The next report line of p, waiting at most ms; NULL if none came. A
 * "fail" line fails the test. */
static const char *next_line(struct proc *p, int ms, char *out, size_t outlen)
{
	uint64_t end = t_now_ms() + (uint64_t)ms;
	for (;;) {
		char *nl = memchr(p->buf, '\n', p->n);
		if (nl) {
			size_t len = (size_t)(nl - p->buf);
			snprintf(out, outlen, "%.*s", (int)len, p->buf);
			memmove(p->buf, nl + 1, p->n - len - 1);
			p->n -= len + 1;
			cr_assert(strncmp(out, "fail", 4), "%s (pid %d): %s", p->who, (int)p->pid,
				  out);
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

static void expect_line(struct proc *p, int ms, const char *what, char *out, size_t outlen)
{
	const char *l = next_line(p, ms, out, outlen);
	cr_assert(l, "%s (pid %d): no \"%s\" within %d ms", p->who, (int)p->pid, what, ms);
	cr_assert(!strncmp(l, what, strlen(what)), "%s (pid %d): \"%s\", expected \"%s\"", p->who,
		  (int)p->pid, l, what);
}

/* CPU time of pid so far (user + system), in clock ticks. */
static unsigned long long cpu_ticks(pid_t pid)
{
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert(f, "%s: %s", path, strerror(errno));
	size_t n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = 0;
	/* After the command's closing parenthesis: state is field 3, utime
	 * and stime are fields 14 and 15. */
	char *p = strrchr(line, ')');
	cr_assert(p, "%s: \"%s\"", path, line);
	unsigned long long ut, st;
	cr_assert_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st),
		     2, "%s: \"%s\"", path, line);
	return ut + st;
}

/* The victim's CPU over the next second, in percent of one CPU. */
static unsigned quiet_cpu_pct(pid_t pid)
{
	long hz = sysconf(_SC_CLK_TCK);
	uint64_t t0 = t_now_ms();
	unsigned long long c0 = cpu_ticks(pid);
	usleep(1000000);
	unsigned long long c1 = cpu_ticks(pid);
	uint64_t ms = t_now_ms() - t0;
	return (unsigned)((c1 - c0) * 1000ull * 100ull / (unsigned long long)hz / ms);
}

struct scene {
	struct proc victim, holder, honest, hostile;
	char line[512];
};

/* The monitor, the victim, its N_IDLE idle connections, the honest client
 * and the hostile peer (kind, attacking for ms once told), all connected
 * and accelerated. */
static void scene_up(struct scene *s, int kind, int ms)
{
	/* Root may raise its own limit: the monitor holds an fd per
	 * connection, and its per-process limit is a share of its fds. */
	struct rlimit rl = { 65536, 65536 };
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		getrlimit(RLIMIT_NOFILE, &rl);
		cr_assert(rl.rlim_cur >= 4 * N_IDLE + 1024, "RLIMIT_NOFILE %llu, cannot raise it: %s",
			  (unsigned long long)rl.rlim_cur, strerror(errno));
	}
	snprintf(stats_path, sizeof(stats_path), "/tmp/xio-epoll-hostile-XXXXXX");
	int fd = mkstemp(stats_path);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	cr_assert_eq(fchown(fd, A_UID_VICTIM, A_UID_VICTIM), 0);
	close(fd);
	/* Small segments: N_IDLE of them are mapped on both sides. */
	a_monitor_with_config("segment-size 256K\nhugepages off\n");

	int ends[2];
	proc_pipes(&s->victim, "victim", ends);
	struct exec_arg e = { ends[0], ends[1] };
	s->victim.pid = a_fork(exec_victim, &e);
	close(ends[0]);
	close(ends[1]);
	expect_line(&s->victim, STEP_MS, "port ", s->line, sizeof(s->line));
	uint16_t port = (uint16_t)strtoul(s->line + 5, NULL, 10);

	peer_start(&s->holder, "holder", HOLDER, A_UID_THIRD, port, 0);
	expect_line(&s->holder, STEP_MS, "held ", s->line, sizeof(s->line));
	int held, accel;
	unsigned long long ms_setup;
	cr_assert_eq(sscanf(s->line, "held %d accel %d ms %llu", &held, &accel, &ms_setup), 3);
	cr_log_info("epoll_hostile: %d idle connections set up in %llu ms", held, ms_setup);
	cr_assert_eq(accel, N_IDLE, "only %d of the %d idle connections were accelerated", accel,
		     N_IDLE);
	peer_start(&s->honest, "honest", HONEST, UID_HONEST, port, 0);
	expect_line(&s->honest, STEP_MS, "ready accel 1", s->line, sizeof(s->line));
	peer_start(&s->hostile, "hostile", kind, A_UID_ATTACKER, port, ms);
	expect_line(&s->hostile, STEP_MS, "ready accel 1", s->line, sizeof(s->line));
}

/* The honest client's report on its round trips: every one came back
 * right (else it reported "fail"), each within RT_BOUND_US. */
static void check_rts(struct scene *s, int want, const char *when)
{
	int n;
	unsigned long long maxus, avgus;
	expect_line(&s->honest, STEP_MS, "rt ", s->line, sizeof(s->line));
	cr_assert_eq(sscanf(s->line, "rt %d maxus %llu avgus %llu", &n, &maxus, &avgus), 3, "%s",
		     s->line);
	cr_log_info("epoll_hostile: %s: %d round trips, slowest %llu us, mean %llu us", when, n,
		    maxus, avgus);
	cr_assert_eq(n, want);
	cr_expect_lt(maxus, RT_BOUND_US, "%s: an honest round trip took %llu us", when, maxus);
}

static void check_quiet_cpu(struct scene *s, const char *when)
{
	unsigned pct = quiet_cpu_pct(s->victim.pid);
	cr_log_info("epoll_hostile: victim CPU %s: %u%%", when, pct);
	cr_expect_lt(pct, MAX_QUIET_CPU_PCT, "the victim took %u%% of a CPU %s: it spins", pct,
		     when);
}

/* After the attack: the honest client still works, every idle connection
 * checked still echoes, at most the hostile connection is gone (broken
 * allowed, or not), and the victim's waits looked at few members each. */
static void scene_down(struct scene *s, int hostile_may_break)
{
	send_cmd(&s->honest, 's');
	check_rts(s, 20, "after the attack");
	send_cmd(&s->holder, 'c');
	expect_line(&s->holder, STEP_MS, "checked ", s->line, sizeof(s->line));
	int tried, ok;
	cr_assert_eq(sscanf(s->line, "checked %d ok %d", &tried, &ok), 2);
	cr_expect_eq(ok, tried, "only %d of %d idle connections still echo", ok, tried);

	send_cmd(&s->victim, 'c');
	expect_line(&s->victim, STEP_MS, "conns ", s->line, sizeof(s->line));
	unsigned long conns, closed;
	unsigned long long dropped;
	cr_assert_eq(sscanf(s->line, "conns %lu closed %lu dropped %llu", &conns, &closed,
			    &dropped),
		     3);
	cr_log_info("epoll_hostile: victim: %s", s->line);
	cr_expect_leq(closed, hostile_may_break ? 1ul : 0ul, "the victim closed %lu connections",
		      closed);
	cr_expect_geq(conns, (unsigned long)N_IDLE + 2 - closed);

	send_cmd(&s->victim, 'x');
	expect_line(&s->victim, STEP_MS, "bye", s->line, sizeof(s->line));
	cr_assert_eq(t_wait(s->victim.pid, STEP_MS), 0, "victim");
	FILE *f = fopen(stats_path, "r");
	cr_assert(f, "%s: %s", stats_path, strerror(errno));
	char line[1024];
	int found = 0;
	unsigned long long acc = 0, waits = 0, looks = 0, parks = 0, unparks = 0;
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "accel_conns=");
		const char *w = strstr(line, "epoll_waits=");
		if (strncmp(line, "xio-stats ", 10) || !p || !w)
			continue;
		found = sscanf(p, "accel_conns=%llu", &acc) == 1 &&
			sscanf(w, "epoll_waits=%llu epoll_looks=%llu epoll_parks=%llu "
				  "epoll_unparks=%llu",
			       &waits, &looks, &parks, &unparks) == 4;
	}
	fclose(f);
	cr_assert(found, "no xio-stats line with the epoll counters in %s", stats_path);
	unsigned long long wakes = waits + unparks;
	cr_log_info("epoll_hostile: victim accel_conns=%llu epoll_waits=%llu epoll_looks=%llu "
		    "epoll_parks=%llu epoll_unparks=%llu: %.1f looks per wait, %.1f per wake-up",
		    acc, waits, looks, parks, unparks, waits ? (double)looks / (double)waits : 0.0,
		    wakes ? (double)looks / (double)wakes : 0.0);
	cr_expect_geq(acc, (unsigned long long)N_IDLE + 2);
	cr_assert_gt(waits, 0ull);
	cr_expect_lt(looks / wakes, (unsigned long long)MAX_LOOKS_PER_WAKE,
		     "the victim looked at %llu members in %llu waits and %llu unparks: its "
		     "waits walk the set",
		     looks, waits, unparks);

	send_cmd(&s->hostile, 'x');
	send_cmd(&s->honest, 'x');
	send_cmd(&s->holder, 'x');
	cr_expect_eq(t_wait(s->hostile.pid, STEP_MS), 0, "hostile");
	cr_expect_eq(t_wait(s->honest.pid, STEP_MS), 0, "honest");
	cr_expect_eq(t_wait(s->holder.pid, STEP_MS), 0, "holder");
	struct proc *all[] = { &s->victim, &s->holder, &s->honest, &s->hostile };
	for (unsigned i = 0; i < 4; i++) {
		close(all[i]->rep);
		close(all[i]->cmd);
	}
}

/* A peer that floods its own kernel socket with stray bytes for a second
 * delays no honest round trip past the bound, leaves the victim quiet once
 * it stops (the bytes were dropped), and makes no wait walk the set. */
Test(epoll_hostile, flood_of_stray_bytes)
{
	struct scene s;
	scene_up(&s, FLOOD, 1000);
	send_cmd(&s.hostile, 'g');
	send_cmd(&s.honest, 'r');
	check_rts(&s, RTS, "during the flood");
	expect_line(&s.hostile, STEP_MS, "done ", s.line, sizeof(s.line));
	cr_log_info("epoll_hostile: flood: %s bytes", s.line + 5);
	cr_assert_gt(strtoull(s.line + 5, NULL, 10), 0ull, "the flood sent nothing");
	check_quiet_cpu(&s, "after the flood");
	scene_down(&s, 0);
}

/* A peer that rewrites every waiting word and token of its segment (every
 * state, garbage, claims without a ring, tokens 0 or the victim's own),
 * with stray bytes and data between, breaks at most its own connection and
 * never makes the victim spin, while it goes on or once it stops. */
Test(epoll_hostile, forged_words)
{
	struct scene s;
	scene_up(&s, FORGE, 3000);
	uint64_t t0 = t_now_ms();
	send_cmd(&s.hostile, 'g');
	send_cmd(&s.honest, 'r');
	check_rts(&s, RTS, "while the words are forged");
	uint64_t spent = t_now_ms() - t0;
	if (spent < 1500)
		usleep((useconds_t)(1500 - spent) * 1000);
	check_quiet_cpu(&s, "while the words are forged");
	expect_line(&s.hostile, STEP_MS, "done ", s.line, sizeof(s.line));
	cr_log_info("epoll_hostile: forger: %s rounds", s.line + 5);
	check_quiet_cpu(&s, "after the forger left its words garbage");
	scene_down(&s, 1);
}

/* A peer that claims and rings over and over without posting anything
 * delays no honest round trip past the bound, and leaves the victim quiet
 * once it stops. */
Test(epoll_hostile, rings_without_data)
{
	struct scene s;
	scene_up(&s, RING, 1500);
	long hz = sysconf(_SC_CLK_TCK);
	unsigned long long c0 = cpu_ticks(s.victim.pid);
	uint64_t t0 = t_now_ms();
	send_cmd(&s.hostile, 'g');
	send_cmd(&s.honest, 'r');
	check_rts(&s, RTS, "while the peer rings");
	expect_line(&s.hostile, STEP_MS, "done ", s.line, sizeof(s.line));
	unsigned long long c1 = cpu_ticks(s.victim.pid);
	cr_log_info("epoll_hostile: %s rings; victim CPU while ringing %llu%%", s.line + 5,
		    (c1 - c0) * 100000ull / (unsigned long long)hz / (t_now_ms() - t0 + 1));
	cr_assert_gt(strtoull(s.line + 5, NULL, 10), 0ull, "the peer never rang");
	check_quiet_cpu(&s, "after the ringing");
	scene_down(&s, 0);
}

/* One forged store (XIO_WAIT_LEFT in the victim's tx word, which an echo
 * server never arms) and one stray byte do not make the victim spin: it
 * drops the byte, or the connection, not keep the socket readable. */
Test(epoll_hostile, forged_word_and_one_stray_byte)
{
	struct scene s;
	scene_up(&s, ONE_WORD, 0);
	send_cmd(&s.hostile, 'g');
	expect_line(&s.hostile, STEP_MS, "done ", s.line, sizeof(s.line));
	usleep(100000); /* the byte is there */
	check_quiet_cpu(&s, "after one forged word and one stray byte");
	send_cmd(&s.honest, 'r');
	check_rts(&s, RTS, "after one forged word and one stray byte");
	scene_down(&s, 1);
}
