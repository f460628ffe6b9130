/*
 * test_crowd.c - readiness of one connection among thousands of idle ones
 * (issue 16 item 3). A peer process opens CROWD connections to this one;
 * each says its index (two bytes, read here) and then stays silent unless
 * the test tells the peer to act on it. The rules of epoll (level and edge
 * triggered, EPOLLONESHOT, EPOLLRDHUP, EPOLLOUT, one socket in two sets,
 * nested sets, changes by another thread, DEL and ADD again, fork) and of
 * poll must hold for the one connection that becomes ready, however many
 * others sit idle in the same set: a wait that is meant to cost only what
 * is ready must not lose the wake-up of a member it has not looked at for
 * a while.
 *
 * Each round lets the set sit idle for QUIET_MS first (long enough for an
 * implementation to stop looking at its members one by one), and either
 * the peer acts while this side sleeps in the wait, or it acts between two
 * waits and the next wait must find it. The members are picked at random;
 * a failure names the seed.
 */
#include "sem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define CROWD 2000   /* idle connections beside the one under test */
#define WAIT_MS 2000 /* bound on every wait for something that must come */
#define QUIET_MS 50  /* idle time of the set before the peer acts */
#define TAG(i) (0xc0000000ull + (uint64_t)(i))

/* --- the peer and its commands ------------------------------------------- */

enum op {
	OP_WRITE,  /* write one byte (arg) to connection idx */
	OP_CLOSE,  /* close connection idx */
	OP_SHUTWR, /* shutdown(SHUT_WR) connection idx */
	OP_DRAIN,  /* read arg bytes from connection idx */
	OP_BURST,  /* write one byte to each of arg connections chosen by seed */
	OP_END,    /* close every connection and exit */
};

struct cmd {
	int32_t op;
	int32_t idx;
	int32_t delay_ms; /* the peer waits this long before it acts */
	int32_t pad;
	int64_t arg;
	uint64_t seed;
};

struct crowd {
	int n;        /* connections */
	int *fd;      /* this side's socket of connection i (-1: closed) */
	pid_t pid;    /* the peer, which holds the other ends */
	int cmd;      /* commands to the peer (a pipe) */
	int ack;      /* one byte from the peer per command done */
	uint64_t seed;
};

struct peer_arg {
	int n, listener, cmd_r, cmd_w, ack_r, ack_w;
	uint16_t port;
};

static uint64_t next_rand(uint64_t *s)
{
	/* xorshift64*: enough to scatter the members under test. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/* k distinct indices of [0, n) drawn from seed, into out (the peer draws
 * the same ones for OP_BURST). Returns 0, or -1 without memory. */
static int pick(uint64_t seed, int n, int k, int *out)
{
	int *all = malloc((size_t)n * sizeof(int));
	if (!all)
		return -1;
	uint64_t s = seed | 1;
	for (int i = 0; i < n; i++)
		all[i] = i;
	for (int i = 0; i < k; i++) {
		int j = i + (int)(next_rand(&s) % (uint64_t)(n - i));
		int t = all[i];
		all[i] = all[j];
		all[j] = t;
		out[i] = all[i];
	}
	free(all);
	return 0;
}

static int peer_act(int *fd, int n, const struct cmd *c)
{
	static char buf[65536];
	int i = c->idx;
	if (c->op != OP_BURST && c->op != OP_END)
		ST_CHECK(i >= 0 && i < n && fd[i] >= 0, "bad connection %d", i);
	switch (c->op) {
	case OP_WRITE: {
		char b = (char)c->arg;
		ST_CHECK(write(fd[i], &b, 1) == 1, "write to %d: %s", i, strerror(errno));
		return 0;
	}
	case OP_CLOSE:
		ST_CHECK(close(fd[i]) == 0, "close %d: %s", i, strerror(errno));
		fd[i] = -1;
		return 0;
	case OP_SHUTWR:
		ST_CHECK(shutdown(fd[i], SHUT_WR) == 0, "shutdown %d: %s", i, strerror(errno));
		return 0;
	case OP_DRAIN:
		for (int64_t got = 0; got < c->arg;) {
			size_t want = c->arg - got < (int64_t)sizeof(buf) ? (size_t)(c->arg - got)
									 : sizeof(buf);
			ssize_t r = read(fd[i], buf, want);
			ST_CHECK(r > 0, "drain %d after %ld of %ld bytes: %s", i, (long)got,
				 (long)c->arg, r < 0 ? strerror(errno) : "end of file");
			got += r;
		}
		return 0;
	case OP_BURST: {
		int k = (int)c->arg, *which = malloc((size_t)k * sizeof(int));
		ST_CHECK(which && pick(c->seed, n, k, which) == 0, "out of memory");
		for (int j = 0; j < k; j++) {
			char b = (char)which[j];
			ST_CHECK(fd[which[j]] >= 0, "burst to closed %d", which[j]);
			ST_CHECK(write(fd[which[j]], &b, 1) == 1, "burst write to %d: %s", which[j],
				 strerror(errno));
		}
		free(which);
		return 0;
	}
	default:
		ST_CHECK(0, "unknown command %d", c->op);
	}
	return 1;
}

/* The peer: connect n times, say each connection's index, then carry out
 * the test's commands, acknowledging each, until OP_END. */
static int crowd_peer(void *arg)
{
	struct peer_arg *pa = arg;
	close(pa->listener);
	close(pa->cmd_w);
	close(pa->ack_r);
	int *fd = malloc((size_t)pa->n * sizeof(int));
	ST_CHECK(fd, "out of memory");
	for (int i = 0; i < pa->n; i++) {
		uint16_t v = (uint16_t)i;
		fd[i] = st_connect(pa->port);
		ST_CHECK(fd[i] >= 0, "connection %d to 127.0.0.1:%u: %s", i, pa->port,
			 strerror(errno));
		ST_CHECK(write(fd[i], &v, 2) == 2, "index of %d: %s", i, strerror(errno));
	}
	for (;;) {
		struct cmd c;
		ST_CHECK(st_read_full(pa->cmd_r, &c, sizeof(c)) == (ssize_t)sizeof(c),
			 "no command from the test");
		if (c.delay_ms)
			st_sleep_ms(c.delay_ms);
		if (c.op == OP_END)
			break;
		if (peer_act(fd, pa->n, &c))
			return 1;
		st_post(pa->ack_w);
	}
	for (int i = 0; i < pa->n; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	free(fd);
	return 0;
}

/* A listener whose backlog holds the whole crowd while this side accepts. */
static int crowd_listen(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(l >= 0, "socket: %s", strerror(errno));
	cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0, "bind: %s", strerror(errno));
	cr_assert_eq(listen(l, 4096), 0, "listen: %s", strerror(errno));
	cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return l;
}

/* n connections from a new peer process, each with its index read; the
 * soft fd limit raised as far as needed (the peer inherits it). */
static void crowd_open(struct crowd *cr, int n)
{
	struct rlimit rl;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < (rlim_t)n + 256) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	cr_assert_geq(rl.rlim_cur, (rlim_t)n + 256, "RLIMIT_NOFILE %lu: %d connections need more",
		      (unsigned long)rl.rlim_cur, n);
	int cmd[2], ack[2];
	cr_assert_eq(pipe(cmd), 0);
	cr_assert_eq(pipe(ack), 0);
	struct peer_arg pa = {
		.n = n, .cmd_r = cmd[0], .cmd_w = cmd[1], .ack_r = ack[0], .ack_w = ack[1]
	};
	pa.listener = crowd_listen(&pa.port);
	*cr = (struct crowd){ .n = n, .cmd = cmd[1], .ack = ack[0] };
	cr->seed = st_now_us() ^ ((uint64_t)getpid() << 32);
	cr->fd = malloc((size_t)n * sizeof(int));
	cr_assert(cr->fd);
	for (int i = 0; i < n; i++)
		cr->fd[i] = -1;
	cr->pid = st_fork(crowd_peer, &pa);
	close(cmd[0]);
	close(ack[1]);
	int *got = malloc((size_t)n * sizeof(int));
	cr_assert(got);
	for (int k = 0; k < n; k++)
		got[k] = st_accept(pa.listener);
	close(pa.listener);
	for (int k = 0; k < n; k++) {
		uint16_t v;
		cr_assert_eq(st_read_full(got[k], &v, 2), 2, "no index on connection %d", k);
		cr_assert(v < n && cr->fd[v] < 0, "index %u twice, or out of range", v);
		cr->fd[v] = got[k];
	}
	free(got);
}

/* Tell the peer to do op on connection idx after delay_ms. */
static int crowd_tell(int cmd_fd, int op, int idx, int delay_ms, int64_t arg, uint64_t seed)
{
	struct cmd c = { .op = op, .idx = idx, .delay_ms = delay_ms, .arg = arg, .seed = seed };
	return write(cmd_fd, &c, sizeof(c)) == (ssize_t)sizeof(c) ? 0 : -1;
}

static void crowd_do(struct crowd *cr, int op, int idx, int delay_ms, int64_t arg)
{
	cr_assert_eq(crowd_tell(cr->cmd, op, idx, delay_ms, arg, 0), 0, "command: %s",
		     strerror(errno));
}

/* The peer has done the last command it was told. */
static void crowd_done(struct crowd *cr, const char *ctx)
{
	cr_assert(st_await(cr->ack, ST_WAIT_MS), "%s: the peer did not carry out its command",
		  ctx);
}

/* The peer closes its ends and exits; then so do this side's. */
static void crowd_close(struct crowd *cr)
{
	crowd_do(cr, OP_END, 0, 0, 0);
	st_assert_child_ok(cr->pid);
	for (int i = 0; i < cr->n; i++)
		if (cr->fd[i] >= 0)
			close(cr->fd[i]);
	free(cr->fd);
	close(cr->cmd);
	close(cr->ack);
}

/* k distinct members of [0, n) for the rounds of a test. */
static void crowd_pick(struct crowd *cr, int n, int k, int *out)
{
	cr_assert_eq(pick(cr->seed, n, k, out), 0);
}

/* Read member i's one byte and check it. */
static void crowd_read(struct crowd *cr, int i, char want, const char *ctx)
{
	char b;
	cr_assert_eq(read(cr->fd[i], &b, 1), 1, "%s: read: %s", ctx, strerror(errno));
	cr_assert_eq(b, want, "%s: read %#x, want %#x", ctx, b, want);
}

/* --- epoll helpers -------------------------------------------------------- */

/* A new epoll set holding members [from, to) of cr with events, tagged
 * base + index. */
static int crowd_set(struct crowd *cr, int from, int to, uint32_t events, uint64_t base)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	cr_assert(ep >= 0, "epoll_create1: %s", strerror(errno));
	for (int i = from; i < to; i++) {
		struct epoll_event e = { .events = events, .data.u64 = base + (uint64_t)i };
		cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, cr->fd[i], &e), 0, "ADD member %d: %s", i,
			     strerror(errno));
	}
	return ep;
}

static void ep_ctl(int ep, int op, int fd, uint32_t events, uint64_t tag, const char *ctx)
{
	struct epoll_event e = { .events = events, .data.u64 = tag };
	cr_assert_eq(epoll_ctl(ep, op, fd, &e), 0, "%s: epoll_ctl(%d, fd %d): %s", ctx, op, fd,
		     strerror(errno));
}

/* epoll_wait for at most max events and ms; returns the count. */
static int ep_collect(int ep, struct epoll_event *ev, int max, int ms)
{
	uint64_t end = st_now_us() + (uint64_t)ms * 1000;
	for (;;) {
		int n = epoll_wait(ep, ev, max, ms);
		if (n >= 0)
			return n;
		cr_assert_eq(errno, EINTR, "epoll_wait: %s", strerror(errno));
		uint64_t now = st_now_us();
		ms = now >= end ? 0 : (int)((end - now + 999) / 1000);
	}
}

/* One wait of at most ms reports exactly tag, with exactly events (and
 * perhaps some of extra). */
static void expect_one_of(int ep, int ms, uint64_t tag, uint32_t events, uint32_t extra,
			  const char *ctx)
{
	struct epoll_event ev[64];
	int n = ep_collect(ep, ev, 64, ms);
	cr_assert_eq(n, 1, "%s: epoll_wait (%d ms) reported %d events, want 1 (first: tag %#lx, events %#x)",
		     ctx, ms, n, n > 0 ? (unsigned long)ev[0].data.u64 : 0ul,
		     n > 0 ? ev[0].events : 0u);
	cr_assert_eq(ev[0].data.u64, tag, "%s: reported tag %#lx, want %#lx", ctx,
		     (unsigned long)ev[0].data.u64, (unsigned long)tag);
	cr_assert_eq(ev[0].events & ~extra, events, "%s: events %#x, want %#x", ctx, ev[0].events,
		     events);
}

static void expect_one(int ep, int ms, uint64_t tag, uint32_t events, const char *ctx)
{
	expect_one_of(ep, ms, tag, events, 0, ctx);
}

/* A wait of ms reports nothing. */
static void expect_none(int ep, int ms, const char *ctx)
{
	struct epoll_event ev[64];
	int n = ep_collect(ep, ev, 64, ms);
	cr_assert_eq(n, 0, "%s: epoll_wait (%d ms) reported %d events, want none (first: tag %#lx, events %#x)",
		     ctx, ms, n, n > 0 ? (unsigned long)ev[0].data.u64 : 0ul,
		     n > 0 ? ev[0].events : 0u);
}

/* Join t, or fail the test if it has not finished within ms. */
static void join_within(pthread_t t, int ms, const char *what)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	cr_assert_eq(pthread_timedjoin_np(t, NULL, &ts), 0, "%s did not finish within %d ms", what,
		     ms);
}

/* A thread that waits once on a set. */
struct waiter {
	int ep, n;
	struct epoll_event ev[64];
};

static void *wait_once(void *arg)
{
	struct waiter *w = arg;
	do
		w->n = epoll_wait(w->ep, w->ev, 64, WAIT_MS);
	while (w->n < 0 && errno == EINTR);
	return NULL;
}

static pthread_t waiter_start(struct waiter *w, int ep)
{
	pthread_t t;
	*w = (struct waiter){ .ep = ep };
	cr_assert_eq(pthread_create(&t, NULL, wait_once, w), 0);
	return t;
}

/* The waiter reported exactly tag with exactly events. */
static void waiter_told(struct waiter *w, pthread_t t, uint64_t tag, uint32_t events,
			const char *ctx)
{
	join_within(t, WAIT_MS + 1000, "a waiter");
	cr_assert_eq(w->n, 1, "%s: the waiter's epoll_wait reported %d events, want 1 (first: tag %#lx)",
		     ctx, w->n, w->n > 0 ? (unsigned long)w->ev[0].data.u64 : 0ul);
	cr_assert_eq(w->ev[0].data.u64, tag, "%s: the waiter was told of tag %#lx, want %#lx", ctx,
		     (unsigned long)w->ev[0].data.u64, (unsigned long)tag);
	cr_assert_eq(w->ev[0].events, events, "%s: events %#x, want %#x", ctx, w->ev[0].events,
		     events);
}

/*
 * The peer writes byte b to member i in one of two ways, by round r: on odd
 * rounds while this thread sleeps in its next wait (the peer waits
 * QUIET_MS first); on even rounds between two waits, after a wait of
 * QUIET_MS that reports nothing, and the next wait must find it. The
 * caller then waits; crowd_write_done after that.
 */
static void crowd_write(struct crowd *cr, int ep, int r, int i, char b, const char *ctx)
{
	if (r % 2) {
		crowd_do(cr, OP_WRITE, i, QUIET_MS, (unsigned char)b);
	} else {
		expect_none(ep, QUIET_MS, ctx);
		crowd_do(cr, OP_WRITE, i, 0, (unsigned char)b);
		crowd_done(cr, ctx);
	}
}

static void crowd_write_done(struct crowd *cr, int r, const char *ctx)
{
	if (r % 2)
		crowd_done(cr, ctx);
}

#define CTX(buf, r, i, cr)                                                                      \
	snprintf(buf, sizeof(buf), "round %d, member %d of %d, seed %#lx", r, i, (cr)->n,        \
		 (unsigned long)(cr)->seed)

/* --- the rules ------------------------------------------------------------ */

#define ROUNDS 20

/* Level-triggered: a write to one of 2,000 idle members, each in turn of
 * 20 picked at random, is reported, alone and with its tag, by the wait in
 * progress or the next one; again while unread, even after the set sat
 * unwatched for a while; no more once read. Then the same 20 once more, in
 * the reverse order: a member that was active and went idle again is
 * reported again. */
ST_TEST(crowd, level_triggered)
{
	struct crowd cr;
	int pk[ROUNDS];
	char ctx[96];
	crowd_open(&cr, CROWD);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0));
	crowd_pick(&cr, CROWD, ROUNDS, pk);
	for (int r = 0; r < 2 * ROUNDS; r++) {
		int i = pk[r < ROUNDS ? r : 2 * ROUNDS - 1 - r];
		char b = (char)(r + 1);
		CTX(ctx, r, i, &cr);
		crowd_write(&cr, ep, r, i, b, ctx);
		expect_one(ep, WAIT_MS, TAG(i), EPOLLIN, ctx);
		crowd_write_done(&cr, r, ctx);
		expect_one(ep, 0, TAG(i), EPOLLIN, ctx);
		if (r % 4 == 1) {
			st_sleep_ms(QUIET_MS);
			expect_one(ep, 0, TAG(i), EPOLLIN, ctx);
		}
		crowd_read(&cr, i, b, ctx);
		expect_none(ep, 0, ctx);
	}
	crowd_close(&cr);
	close(ep);
}

/* Edge-triggered: a write to an idle member is reported once; not again
 * while its byte sits unread; a second write is a new edge, reported
 * once; once both bytes are read, nothing is reported. */
ST_TEST(crowd, edge_triggered)
{
	struct crowd cr;
	int pk[ROUNDS];
	char ctx[96];
	crowd_open(&cr, CROWD);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN | EPOLLET, TAG(0));
	crowd_pick(&cr, CROWD, ROUNDS, pk);
	for (int r = 0; r < ROUNDS; r++) {
		int i = pk[r];
		CTX(ctx, r, i, &cr);
		crowd_write(&cr, ep, r, i, 'a', ctx);
		expect_one(ep, WAIT_MS, TAG(i), EPOLLIN, ctx);
		crowd_write_done(&cr, r, ctx);
		expect_none(ep, 0, ctx);
		/* The second write, the other way round. */
		crowd_write(&cr, ep, r + 1, i, 'b', ctx);
		expect_one(ep, WAIT_MS, TAG(i), EPOLLIN, ctx);
		crowd_write_done(&cr, r + 1, ctx);
		expect_none(ep, 0, ctx);
		crowd_read(&cr, i, 'a', ctx);
		expect_none(ep, 0, ctx);
		crowd_read(&cr, i, 'b', ctx);
		expect_none(ep, 0, ctx);
	}
	crowd_close(&cr);
	close(ep);
}

/* EPOLLONESHOT: a write to an idle member is reported once; a second
 * write is not reported (the member is disabled) until EPOLL_CTL_MOD
 * re-arms it, and then it is, with the tag given to MOD. */
ST_TEST(crowd, oneshot_rearm)
{
	struct crowd cr;
	int pk[ROUNDS];
	char ctx[96];
	crowd_open(&cr, CROWD);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN | EPOLLONESHOT, TAG(0));
	crowd_pick(&cr, CROWD, ROUNDS, pk);
	for (int r = 0; r < ROUNDS; r++) {
		int i = pk[r];
		CTX(ctx, r, i, &cr);
		crowd_write(&cr, ep, r, i, 'a', ctx);
		expect_one(ep, WAIT_MS, TAG(i), EPOLLIN, ctx);
		crowd_write_done(&cr, r, ctx);
		crowd_read(&cr, i, 'a', ctx);
		/* Disabled: a quiet wait, the write, a wait that finds nothing. */
		expect_none(ep, QUIET_MS, ctx);
		crowd_do(&cr, OP_WRITE, i, 0, 'b');
		crowd_done(&cr, ctx);
		expect_none(ep, 0, ctx);
		ep_ctl(ep, EPOLL_CTL_MOD, cr.fd[i], EPOLLIN | EPOLLONESHOT, TAG(i) + 1000000, ctx);
		expect_one(ep, WAIT_MS, TAG(i) + 1000000, EPOLLIN, ctx);
		expect_none(ep, 0, ctx);
		crowd_read(&cr, i, 'b', ctx);
	}
	crowd_close(&cr);
	close(ep);
}

/* EPOLLRDHUP: the peer closes an idle member, or shuts down its writing;
 * exactly that member is reported, with EPOLLIN|EPOLLRDHUP, and reads end
 * of file. (After a close the shim adds EPOLLHUP, which the kernel reports
 * only once a write of this side has drawn the peer's RST: its writes fail
 * at once. A difference of its own, not what this rule is about, so it is
 * let pass here.) */
ST_TEST(crowd, peer_close_and_shutdown)
{
	struct crowd cr;
	int pk[ROUNDS];
	char ctx[96];
	crowd_open(&cr, CROWD);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN | EPOLLRDHUP, TAG(0));
	crowd_pick(&cr, CROWD, ROUNDS, pk);
	for (int r = 0; r < ROUNDS; r++) {
		int i = pk[r], op = r % 4 < 2 ? OP_CLOSE : OP_SHUTWR;
		uint32_t extra = op == OP_CLOSE ? EPOLLHUP : 0;
		char b;
		CTX(ctx, r, i, &cr);
		if (r % 2) {
			crowd_do(&cr, op, i, QUIET_MS, 0);
		} else {
			expect_none(ep, QUIET_MS, ctx);
			crowd_do(&cr, op, i, 0, 0);
			crowd_done(&cr, ctx);
		}
		expect_one_of(ep, WAIT_MS, TAG(i), EPOLLIN | EPOLLRDHUP, extra, ctx);
		crowd_write_done(&cr, r, ctx);
		expect_one_of(ep, 0, TAG(i), EPOLLIN | EPOLLRDHUP, extra, ctx);
		cr_assert_eq(read(cr.fd[i], &b, 1), 0, "%s: want end of file", ctx);
		/* Closed here too (it would be reported for ever). */
		close(cr.fd[i]);
		cr.fd[i] = -1;
		expect_none(ep, 0, ctx);
	}
	crowd_close(&cr);
	close(ep);
}

/* EPOLLOUT: one member filled until EAGAIN and changed to
 * EPOLLIN|EPOLLOUT is not reported; the set sits idle, then the peer
 * drains that member, and exactly EPOLLOUT is reported for it (three
 * members in turn). */
ST_TEST(crowd, epollout_after_drain)
{
	struct crowd cr;
	int pk[3];
	char ctx[96];
	static char buf[65536];
	crowd_open(&cr, CROWD);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0));
	crowd_pick(&cr, CROWD, 3, pk);
	for (int r = 0; r < 3; r++) {
		int i = pk[r];
		CTX(ctx, r, i, &cr);
		expect_none(ep, QUIET_MS, ctx);
		st_set_nonblock(cr.fd[i], 1);
		int64_t total = 0;
		ssize_t w;
		while ((w = write(cr.fd[i], buf, sizeof(buf))) > 0)
			total += w;
		cr_assert_eq(errno, EAGAIN, "%s: write failed with %s", ctx, strerror(errno));
		ep_ctl(ep, EPOLL_CTL_MOD, cr.fd[i], EPOLLIN | EPOLLOUT, TAG(i), ctx);
		expect_none(ep, 0, ctx);
		if (r % 2) {
			/* Drained while this thread sleeps on the set. */
			crowd_do(&cr, OP_DRAIN, i, QUIET_MS, total);
		} else {
			/* The set sits quiet, full member included; then the drain. */
			expect_none(ep, QUIET_MS, ctx);
			crowd_do(&cr, OP_DRAIN, i, 0, total);
		}
		expect_one(ep, WAIT_MS, TAG(i), EPOLLOUT, ctx);
		crowd_done(&cr, ctx);
		ep_ctl(ep, EPOLL_CTL_MOD, cr.fd[i], EPOLLIN, TAG(i), ctx);
		st_set_nonblock(cr.fd[i], 0);
	}
	crowd_close(&cr);
	close(ep);
}

struct blockread {
	struct crowd *cr;
	int i;
	ssize_t n;
	char b;
	int tell; /* after the read, tell the peer to write 's' after QUIET_MS */
	atomic_int done;
};

static void *read_blocking(void *arg)
{
	struct blockread *r = arg;
	r->n = read(r->cr->fd[r->i], &r->b, 1);
	if (r->tell && crowd_tell(r->cr->cmd, OP_WRITE, r->i, QUIET_MS, 's', 0) < 0)
		r->n = -2;
	atomic_store(&r->done, 1);
	return NULL;
}

/* A member that sat idle in the set, on which another thread then blocks
 * in read until the peer writes, is still reported by the set when the
 * peer writes again: whether the set's thread waited or not meanwhile (in
 * which case it may be told of the first byte too), the second one is
 * reported. */
ST_TEST(crowd, blocking_read_then_set)
{
	struct crowd cr;
	int pk[8];
	char ctx[96];
	crowd_open(&cr, CROWD);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0));
	crowd_pick(&cr, CROWD, 8, pk);
	for (int r = 0; r < 8; r++) {
		int i = pk[r];
		pthread_t t;
		CTX(ctx, r, i, &cr);
		expect_none(ep, QUIET_MS, ctx);
		struct blockread br = { .cr = &cr, .i = i, .n = -3, .tell = r % 4 >= 2 };
		cr_assert_eq(pthread_create(&t, NULL, read_blocking, &br), 0);
		crowd_do(&cr, OP_WRITE, i, QUIET_MS, 'r');
		if (!br.tell) {
			/* Nobody waits on the set during the read. */
			join_within(t, WAIT_MS, "the blocked reader");
			cr_assert_eq(br.n, 1, "%s: read returned %zd", ctx, br.n);
			cr_assert_eq(br.b, 'r');
			crowd_done(&cr, ctx);
			crowd_write(&cr, ep, r, i, 's', ctx);
			expect_one(ep, WAIT_MS, TAG(i), EPOLLIN, ctx);
			crowd_write_done(&cr, r, ctx);
			crowd_read(&cr, i, 's', ctx);
			expect_none(ep, 0, ctx);
			continue;
		}
		/* This thread sleeps on the set while the other reads: it may be
		 * told of 'r' (before the reader took it) but must be told of 's',
		 * which the reader asks for once it has 'r'. */
		uint64_t end = st_now_us() + 3 * WAIT_MS * 1000u;
		for (;;) {
			struct epoll_event ev[64];
			cr_assert_lt(st_now_us(), end, "%s: 's' never reported", ctx);
			int n = ep_collect(ep, ev, 64, WAIT_MS);
			cr_assert_eq(n, 1, "%s: %d events reported within %d ms, want 1 (reader done: %d)",
				     ctx, n, WAIT_MS, atomic_load(&br.done));
			cr_assert_eq(ev[0].data.u64, TAG(i), "%s: tag %#lx reported", ctx,
				     (unsigned long)ev[0].data.u64);
			cr_assert_eq(ev[0].events, EPOLLIN, "%s: events %#x", ctx, ev[0].events);
			if (!atomic_load(&br.done))
				continue;
			char b;
			ssize_t k = recv(cr.fd[i], &b, 1, MSG_DONTWAIT);
			if (k < 0 && errno == EAGAIN)
				continue; /* told of 'r', which the reader took */
			cr_assert_eq(k, 1, "%s: read: %s", ctx, k < 0 ? strerror(errno) : "end of file");
			cr_assert_eq(b, 's', "%s: read %#x", ctx, b);
			break;
		}
		join_within(t, WAIT_MS, "the blocked reader");
		cr_assert_eq(br.n, 1, "%s: read returned %zd", ctx, br.n);
		cr_assert_eq(br.b, 'r');
		crowd_done(&cr, ctx);
		crowd_done(&cr, ctx);
		expect_none(ep, 0, ctx);
	}
	crowd_close(&cr);
	close(ep);
}

/* Every member in two sets, each waited on by its own thread: a write to
 * one idle member wakes both, each reporting it alone with its own tag;
 * level-triggered, both report it again until it is read. */
ST_TEST(crowd, one_socket_two_sets)
{
	struct crowd cr;
	int pk[10];
	char ctx[96];
	crowd_open(&cr, CROWD);
	int ep1 = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0));
	int ep2 = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0) + 1000000);
	crowd_pick(&cr, CROWD, 10, pk);
	for (int r = 0; r < 10; r++) {
		int i = pk[r];
		struct waiter w1, w2;
		pthread_t t1, t2;
		CTX(ctx, r, i, &cr);
		if (r % 2) {
			/* Both asleep when it comes. */
			t1 = waiter_start(&w1, ep1);
			t2 = waiter_start(&w2, ep2);
			crowd_do(&cr, OP_WRITE, i, QUIET_MS, 'x');
		} else {
			/* There before they wait, after both sets were quiet. */
			expect_none(ep1, QUIET_MS, ctx);
			expect_none(ep2, 0, ctx);
			crowd_do(&cr, OP_WRITE, i, 0, 'x');
			crowd_done(&cr, ctx);
			t1 = waiter_start(&w1, ep1);
			t2 = waiter_start(&w2, ep2);
		}
		waiter_told(&w1, t1, TAG(i), EPOLLIN, ctx);
		waiter_told(&w2, t2, TAG(i) + 1000000, EPOLLIN, ctx);
		if (r % 2)
			crowd_done(&cr, ctx);
		expect_one(ep1, 0, TAG(i), EPOLLIN, ctx);
		expect_one(ep2, 0, TAG(i) + 1000000, EPOLLIN, ctx);
		crowd_read(&cr, i, 'x', ctx);
		expect_none(ep1, 0, ctx);
		expect_none(ep2, 0, ctx);
	}
	crowd_close(&cr);
	close(ep1);
	close(ep2);
}

/* Nested: a set of 2,000 idle members inside an outer set. A write to one
 * member makes the outer wait report the inner set (alone); the inner set
 * then reports that member alone; once it is read, neither reports. */
ST_TEST(crowd, nested)
{
	struct crowd cr;
	int pk[10];
	char ctx[96];
	crowd_open(&cr, CROWD);
	int inner = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0));
	int outer = epoll_create1(EPOLL_CLOEXEC);
	cr_assert(outer >= 0);
	ep_ctl(outer, EPOLL_CTL_ADD, inner, EPOLLIN, 77, "outer");
	crowd_pick(&cr, CROWD, 10, pk);
	for (int r = 0; r < 10; r++) {
		int i = pk[r];
		CTX(ctx, r, i, &cr);
		crowd_write(&cr, outer, r, i, 'n', ctx);
		expect_one(outer, WAIT_MS, 77, EPOLLIN, ctx);
		crowd_write_done(&cr, r, ctx);
		expect_one(outer, 0, 77, EPOLLIN, ctx);
		expect_one(inner, 0, TAG(i), EPOLLIN, ctx);
		crowd_read(&cr, i, 'n', ctx);
		expect_none(inner, 0, ctx);
		expect_none(outer, 0, ctx);
	}
	crowd_close(&cr);
	close(outer);
	close(inner);
}

#define HELD_OUT 5

/* A thread sleeps on a set of 2,000 idle members; another adds a
 * connection whose data is already there: the sleeper reports it, alone,
 * with its tag. */
ST_TEST(crowd, add_while_asleep)
{
	struct crowd cr;
	char ctx[96];
	crowd_open(&cr, CROWD + HELD_OUT);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0));
	expect_none(ep, QUIET_MS, "before");
	for (int r = 0; r < HELD_OUT; r++) {
		int i = CROWD + r;
		struct waiter w;
		CTX(ctx, r, i, &cr);
		pthread_t t = waiter_start(&w, ep);
		/* The peer's pause is the sleeper's quiet time. */
		crowd_do(&cr, OP_WRITE, i, QUIET_MS, 'p');
		crowd_done(&cr, ctx);
		ep_ctl(ep, EPOLL_CTL_ADD, cr.fd[i], EPOLLIN, TAG(i), ctx);
		waiter_told(&w, t, TAG(i), EPOLLIN, ctx);
		crowd_read(&cr, i, 'p', ctx);
		expect_none(ep, 0, ctx);
	}
	crowd_close(&cr);
	close(ep);
}

/* EPOLL_CTL_DEL then ADD of an idle member: a write after the ADD is
 * reported with the new tag; a write while it is out of the set is not
 * reported, and is once it is added back (level-triggered). */
ST_TEST(crowd, del_then_add)
{
	struct crowd cr;
	int pk[ROUNDS];
	char ctx[96];
	crowd_open(&cr, CROWD);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0));
	crowd_pick(&cr, CROWD, ROUNDS, pk);
	for (int r = 0; r < ROUNDS; r++) {
		int i = pk[r];
		uint64_t tag = TAG(i) + 1000000;
		CTX(ctx, r, i, &cr);
		expect_none(ep, QUIET_MS, ctx);
		ep_ctl(ep, EPOLL_CTL_DEL, cr.fd[i], 0, 0, ctx);
		if (r % 2) {
			ep_ctl(ep, EPOLL_CTL_ADD, cr.fd[i], EPOLLIN, tag, ctx);
			crowd_write(&cr, ep, r, i, 'd', ctx);
		} else {
			crowd_do(&cr, OP_WRITE, i, 0, 'd');
			crowd_done(&cr, ctx);
			expect_none(ep, QUIET_MS, ctx);
			ep_ctl(ep, EPOLL_CTL_ADD, cr.fd[i], EPOLLIN, tag, ctx);
		}
		expect_one(ep, WAIT_MS, tag, EPOLLIN, ctx);
		crowd_write_done(&cr, r, ctx);
		crowd_read(&cr, i, 'd', ctx);
		expect_none(ep, 0, ctx);
		ep_ctl(ep, EPOLL_CTL_MOD, cr.fd[i], EPOLLIN, TAG(i), ctx);
	}
	crowd_close(&cr);
	close(ep);
}

struct forked {
	struct crowd *cr;
	int ep;
	int *pk;
};

#define FORK_ROUNDS 6

/* The child of set_shared_across_fork: rounds as in level_triggered on
 * the inherited set, telling the peer itself. */
static int child_waits(void *arg)
{
	struct forked *f = arg;
	struct crowd *cr = f->cr;
	for (int r = 0; r < FORK_ROUNDS; r++) {
		int i = f->pk[r], n;
		struct epoll_event ev[64];
		char b;
		if (r % 2 == 0) {
			n = epoll_wait(f->ep, ev, 64, QUIET_MS);
			ST_CHECK(n == 0, "round %d: %d events in the quiet wait", r, n);
		}
		ST_CHECK(crowd_tell(cr->cmd, OP_WRITE, i, r % 2 ? QUIET_MS : 0, 'f', 0) == 0,
			 "command");
		if (r % 2 == 0)
			ST_CHECK(st_await(cr->ack, ST_WAIT_MS), "round %d: no ack", r);
		do
			n = epoll_wait(f->ep, ev, 64, WAIT_MS);
		while (n < 0 && errno == EINTR);
		ST_CHECK(n == 1, "round %d, member %d, seed %#lx: %d events (%s)", r, i,
			 (unsigned long)cr->seed, n, n < 0 ? strerror(errno) : "want 1");
		ST_CHECK(ev[0].data.u64 == TAG(i) && ev[0].events == EPOLLIN,
			 "round %d, member %d: tag %#lx events %#x", r, i,
			 (unsigned long)ev[0].data.u64, ev[0].events);
		ST_CHECK(read(cr->fd[i], &b, 1) == 1 && b == 'f', "round %d: read", r);
		if (r % 2)
			ST_CHECK(st_await(cr->ack, ST_WAIT_MS), "round %d: no ack", r);
		n = epoll_wait(f->ep, ev, 64, 0);
		ST_CHECK(n == 0, "round %d: %d events after the read", r, n);
	}
	return 0;
}

/* A set of 2,000 idle members, waited on once, then inherited through
 * fork: a write to an idle member is reported in the child, which waits
 * on the set; once the child is gone, in the parent too. */
ST_TEST(crowd, set_shared_across_fork)
{
	struct crowd cr;
	int pk[FORK_ROUNDS + 1];
	char ctx[96];
	crowd_open(&cr, CROWD);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0));
	crowd_pick(&cr, CROWD, FORK_ROUNDS + 1, pk);
	expect_none(ep, QUIET_MS, "before the fork");
	struct forked f = { .cr = &cr, .ep = ep, .pk = pk };
	pid_t child = st_fork(child_waits, &f);
	st_assert_child_ok(child);
	int i = pk[FORK_ROUNDS];
	CTX(ctx, FORK_ROUNDS, i, &cr);
	crowd_write(&cr, ep, 1, i, 'g', ctx);
	expect_one(ep, WAIT_MS, TAG(i), EPOLLIN, ctx);
	crowd_write_done(&cr, 1, ctx);
	crowd_read(&cr, i, 'g', ctx);
	expect_none(ep, 0, ctx);
	crowd_close(&cr);
	close(ep);
}

/* poll over 2,000 idle connections: the one the peer writes to is the only
 * one reported, with exactly POLLIN; nothing once it is read. */
ST_TEST(crowd, poll)
{
	struct crowd cr;
	int pk[10];
	char ctx[96];
	crowd_open(&cr, CROWD);
	struct pollfd *p = calloc(CROWD, sizeof(*p));
	cr_assert(p);
	for (int i = 0; i < CROWD; i++)
		p[i] = (struct pollfd){ .fd = cr.fd[i], .events = POLLIN };
	crowd_pick(&cr, CROWD, 10, pk);
	for (int r = 0; r < 10; r++) {
		int i = pk[r], n;
		CTX(ctx, r, i, &cr);
		if (r % 2) {
			crowd_do(&cr, OP_WRITE, i, QUIET_MS, 'q');
		} else {
			n = poll(p, CROWD, QUIET_MS);
			cr_assert_eq(n, 0, "%s: quiet poll returned %d", ctx, n);
			crowd_do(&cr, OP_WRITE, i, 0, 'q');
			crowd_done(&cr, ctx);
		}
		do
			n = poll(p, CROWD, WAIT_MS);
		while (n < 0 && errno == EINTR);
		cr_assert_eq(n, 1, "%s: poll returned %d (%s)", ctx, n, n < 0 ? strerror(errno) : "");
		for (int j = 0; j < CROWD; j++)
			cr_assert_eq(p[j].revents, j == i ? POLLIN : 0, "%s: revents %#x of member %d",
				     ctx, p[j].revents, j);
		crowd_write_done(&cr, r, ctx);
		crowd_read(&cr, i, 'q', ctx);
		n = poll(p, CROWD, 0);
		cr_assert_eq(n, 0, "%s: poll returned %d after the read", ctx, n);
	}
	free(p);
	crowd_close(&cr);
}

#define BURST 500

/* 500 of 2,000 idle members become ready at once (the peer writes to them
 * in one burst while this side sleeps): repeated waits for 64 events at
 * most report every one of them and no other; level-triggered, all stay
 * reported until read (a wait reports 64 of them once the burst is done);
 * read as reported, each read member stops being reported, and at the end
 * nothing is. */
ST_TEST(crowd, burst)
{
	struct crowd cr;
	int pk[BURST];
	char in[CROWD] = { 0 }, seen[CROWD] = { 0 }, done[CROWD] = { 0 };
	struct epoll_event ev[64];
	crowd_open(&cr, CROWD);
	int ep = crowd_set(&cr, 0, CROWD, EPOLLIN, TAG(0));
	crowd_pick(&cr, CROWD, BURST, pk);
	for (int k = 0; k < BURST; k++)
		in[pk[k]] = 1;
	expect_none(ep, QUIET_MS, "before the burst");
	cr_assert_eq(crowd_tell(cr.cmd, OP_BURST, 0, QUIET_MS, BURST, cr.seed), 0);
	/* Seen, not read: each wait must come back with some of the 500, and
	 * all 500 within ST_WAIT_MS (a bound in time, not in waits: those
	 * seen come back at once, level-triggered, so a count of waits only
	 * measured how fast this side spins against how soon the peer, on a
	 * busy machine, gets the CPU to write). */
	int nseen = 0, waits = 0;
	uint64_t t0 = st_now_us();
	while (nseen < BURST) {
		int n = ep_collect(ep, ev, 64, WAIT_MS);
		waits++;
		cr_assert_gt(n, 0, "seed %#lx: %d of %d reported, then nothing for %d ms", (unsigned long)cr.seed,
			     nseen, BURST, WAIT_MS);
		cr_assert_lt(st_now_us() - t0, (uint64_t)ST_WAIT_MS * 1000,
			     "seed %#lx: %d waits in %d ms, only %d of %d reported",
			     (unsigned long)cr.seed, waits, ST_WAIT_MS, nseen, BURST);
		for (int j = 0; j < n; j++) {
			uint64_t m = ev[j].data.u64 - TAG(0);
			cr_assert(m < CROWD && in[m], "seed %#lx: tag %#lx reported, not written to",
				  (unsigned long)cr.seed, (unsigned long)ev[j].data.u64);
			cr_assert_eq(ev[j].events, EPOLLIN, "member %lu: events %#x", (unsigned long)m,
				     ev[j].events);
			nseen += !seen[m];
			seen[m] = 1;
		}
	}
	crowd_done(&cr, "the burst");
	cr_assert_eq(ep_collect(ep, ev, 64, 0), 64, "seed %#lx: fewer than 64 reported with %d ready",
		     (unsigned long)cr.seed, BURST);
	/* Read as reported: a member read is never reported again. */
	int nread = 0;
	while (nread < BURST) {
		int n = ep_collect(ep, ev, 64, WAIT_MS);
		cr_assert_gt(n, 0, "seed %#lx: %d of %d read, the rest not reported",
			     (unsigned long)cr.seed, nread, BURST);
		for (int j = 0; j < n; j++) {
			uint64_t m = ev[j].data.u64 - TAG(0);
			cr_assert(m < CROWD && in[m] && !done[m],
				  "seed %#lx: member %lu reported (written to: %d, read: %d)",
				  (unsigned long)cr.seed, (unsigned long)m, m < CROWD ? in[m] : 0,
				  m < CROWD ? done[m] : 0);
			char b;
			cr_assert_eq(read(cr.fd[m], &b, 1), 1, "member %lu: read: %s", (unsigned long)m,
				     strerror(errno));
			cr_assert_eq(b, (char)m, "member %lu: read %#x", (unsigned long)m, b);
			done[m] = 1;
			nread++;
		}
	}
	expect_none(ep, 0, "after reading all");
	crowd_close(&cr);
	close(ep);
}
