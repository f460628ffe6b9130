/*
 * scale.c - xio-bench-scale: many connections, each moving a little, then
 * held at rest: the two ends of the suite's "scale" scenario
 * (bench/suite/scale.sh, issue 17), which measures what N connections cost
 * in time and in memory over kernel TCP, UNIX sockets and xio.
 *
 *   xio-bench-scale server --listen EP --conns N [--size BYTES] [--verify]
 *                   [--ready FILE]
 *   xio-bench-scale client --connect EP --conns N [--size BYTES]
 *                   [--write BYTES] [--hold SECS] [--holding FILE]
 *                   [--stall SECS]
 *
 * server: one epoll set over its listener and every connection, as an
 * event loop has. It greets each connection it accepts with "hello\n",
 * reads and discards what comes, and after each --size bytes (default 256
 * KiB) received on a connection writes "ok\n" back. It exits by itself
 * once N connections were accepted and all of them closed; with an error
 * (status 1) if one of them ended short of a multiple of --size, or its
 * stream was not what the client sends (below).
 *
 * client: opens N connections all at once (non-blocking connects, one
 * epoll set over all of them) and waits until every one of them has its
 * greeting, so that the server has accepted them all ("connect" phase).
 * Then it writes --size bytes on each in writes of --write bytes (default
 * 64 KiB), interleaved across connections: a queue of the connections
 * with room takes one write each in turn, and a connection whose write
 * came back short or EAGAIN leaves the queue until epoll says EPOLLOUT;
 * it waits for every connection's "ok\n" ("traffic" phase). Then it holds
 * all N connections open and silent for --hold seconds (default 3) in
 * epoll_wait, an event loop at rest, having written the --holding file at
 * the start of the hold so that a script can look at the memory of both
 * ends meanwhile; any event on a connection during the hold (an end of
 * stream, a reset, data nobody asked for) counts as a dropped connection.
 * Then it closes them all and exits, with status 1 if any was dropped.
 * If neither a connection nor a byte moves for --stall seconds (default
 * 60) during the connect or traffic phases, it gives up, saying where it
 * stood.
 *
 * The stream is checked, so that a transport that loses, reorders or
 * mixes up bytes fails instead of giving a figure: every 64 KiB unit of a
 * connection's stream starts and ends with an 8-byte stamp naming the
 * client's connection and the unit's number; the server checks every
 * stamp (the connection's number must stay the same and be no other
 * connection's), and with --verify also every byte between them (a fixed
 * pattern, at some CPU cost on the server).
 *
 * Both raise their soft RLIMIT_NOFILE to what N needs, within the hard
 * limit, and say so if that is not enough.
 *
 * Output on stdout, machine-readable lines (key=value):
 *   client: phase=connect ms=N conns=N
 *           phase=traffic ms=N bytes=N
 *           phase=hold secs=S              (then the --holding file)
 *           phase=held ms=N dropped=N
 *           role=client conns=N size=N connect_us=N traffic_us=N hold_us=N
 *             close_us=N dropped=N cpu_us=N hwm_kib=N
 *   server: role=server conns=N bytes=N acks=N bad=N cpu_us=N hwm_kib=N
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

/* The unit of the stream's stamps; --size must be a multiple of it. */
#define UNIT (64u << 10)
#define STAMP 8u
#define READ_SIZE (64u << 10)
#define MAX_WRITE (1u << 20)
/* At most 3 pieces per unit a write touches (head stamp, pattern, tail
 * stamp), and a write of MAX_WRITE touches at most 17 units. */
#define MAX_IOV 64

static const char greeting[] = "hello\n";
static const char ack[] = "ok\n";
#define GREETING_LEN (sizeof(greeting) - 1)
#define ACK_LEN (sizeof(ack) - 1)

struct opts {
	const char *ep, *ready, *holding;
	long conns;
	long size, wsize;
	double hold, stall;
	int verify;
};

/* The bytes between the stamps: byte i of every unit is pat[i]. */
static unsigned char pat[UNIT];

static void pattern_init(void)
{
	for (uint32_t i = 0; i < UNIT; i++)
		pat[i] = (unsigned char)((i * 131u + (i >> 9)) & 0xff);
}

/* The stamp at the head (tail 0) or the tail (tail 1) of unit u of
 * connection id's stream. */
static uint64_t stamp_of(uint64_t id, uint64_t u, int tail)
{
	return (uint64_t)(tail ? 0x7a11u : 0x4eadu) << 48 | (id & 0xffffffu) << 24 | (u & 0xffffffu);
}

/* This process's VmHWM (peak RSS) in KiB, 0 when unknown. */
static long hwm_kib(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[128];
	long v = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* Raise the soft RLIMIT_NOFILE to need, within the hard limit; die,
 * naming both, when the hard limit is below it. Returns the soft limit. */
static long nofile_raise(long need, const char *who)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		net_die("getrlimit: %s", strerror(errno));
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)need) {
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)need)
			net_die("%s needs %ld descriptors; the hard RLIMIT_NOFILE is %llu", who, need,
				(unsigned long long)rl.rlim_max);
		rl.rlim_cur = (rlim_t)need;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			net_die("setrlimit RLIMIT_NOFILE %ld: %s", need, strerror(errno));
	}
	return rl.rlim_cur == RLIM_INFINITY ? need : (long)rl.rlim_cur;
}

static void nodelay(int fd)
{
	int one = 1;

	/* The acks are small and waited for: Nagle would only delay them. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void watch(int epfd, int op, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };

	if (epoll_ctl(epfd, op, fd, &ev) < 0)
		net_die("epoll_ctl (fd %d): %s", fd, strerror(errno));
}

/* ---- server ---- */

/* One accepted connection, indexed by its fd. */
struct sconn {
	uint64_t rcvd;      /* bytes received */
	uint64_t stamp;     /* the stamp being gathered (it may span reads) */
	uint32_t id;        /* the client's number for it, from its first stamp */
	uint8_t open, has_id;
	uint8_t broken;     /* its stream was found wrong: checked no further */
	uint8_t outlen;     /* bytes of out not yet written */
	uint8_t want_out;   /* EPOLLOUT is in its interest */
	char out[16];       /* greeting and acks still to write */
};

struct server {
	const struct opts *o;
	int epfd;
	struct sconn *c;
	long nc;
	unsigned char *claimed; /* one bit per client connection number */
	long accepted, open, acks, bad;
	uint64_t bytes;
};

static void srv_bad(struct server *s, int fd, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A connection whose stream is wrong: said on stderr (the first few), and
 * counted; the server then exits with status 1. */
static void srv_bad(struct server *s, int fd, const char *fmt, ...)
{
	struct sconn *c = &s->c[fd];
	va_list ap;

	/* One finding per connection: what follows a wrong byte says
	 * nothing more. */
	if (c->broken)
		return;
	c->broken = 1;
	if (s->bad++ < 10) {
		fprintf(stderr, "%s: server: connection on fd %d", net_prog, fd);
		if (c->has_id)
			fprintf(stderr, " (the client's connection %u)", c->id + 1);
		fputs(": ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
}

/* Write what is queued for fd; EPOLLOUT in its interest while some is
 * left. */
static void srv_flush(struct server *s, int fd)
{
	struct sconn *c = &s->c[fd];

	while (c->outlen > 0) {
		ssize_t w = send(fd, c->out, c->outlen, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0) {
			/* The client is gone; its end of stream will say so. */
			c->outlen = 0;
			break;
		}
		memmove(c->out, c->out + w, c->outlen - (size_t)w);
		c->outlen = (uint8_t)(c->outlen - w);
	}
	if (!!c->outlen != c->want_out) {
		c->want_out = !!c->outlen;
		watch(s->epfd, EPOLL_CTL_MOD, fd, EPOLLIN | (c->want_out ? EPOLLOUT : 0), (uint64_t)fd);
	}
}

static void srv_queue(struct server *s, int fd, const char *p, size_t len)
{
	struct sconn *c = &s->c[fd];

	/* Room for the greeting and a few acks: more piles up only when the
	 * client sends without reading, which this protocol's never does. */
	if (c->outlen + len > sizeof(c->out)) {
		srv_bad(s, fd, "the client sends more than it reads (%u bytes of answers waiting)",
			(unsigned)c->outlen);
		return;
	}
	memcpy(c->out + c->outlen, p, len);
	c->outlen = (uint8_t)(c->outlen + len);
	srv_flush(s, fd);
}

/* One stamp of connection fd complete: unit u's head or tail. */
static void srv_stamp(struct server *s, int fd, uint64_t u, int tail)
{
	struct sconn *c = &s->c[fd];
	uint64_t v = c->stamp, id = v >> 24 & 0xffffff;

	if (!c->has_id) {
		if (v >> 48 != 0x4eadu || (v & 0xffffff) != 0 || (long)id >= s->o->conns) {
			srv_bad(s, fd, "the stream does not start with a stamp of unit 0 (0x%016llx)",
				(unsigned long long)v);
			return;
		}
		if (s->claimed[id / 8] & (1u << (id % 8))) {
			srv_bad(s, fd, "a second connection carries the client's connection %llu's stream",
				(unsigned long long)id + 1);
			return;
		}
		s->claimed[id / 8] |= (unsigned char)(1u << (id % 8));
		c->id = (uint32_t)id;
		c->has_id = 1;
	}
	if (v != stamp_of(c->id, u, tail))
		srv_bad(s, fd, "unit %llu's %s stamp is 0x%016llx, not 0x%016llx: the transport lost, "
			       "reordered or mixed up bytes",
			(unsigned long long)u, tail ? "tail" : "head", (unsigned long long)v,
			(unsigned long long)stamp_of(c->id, u, tail));
}

/* Check len bytes received on fd at stream offset off: gather the stamps
 * they hold, and with --verify compare the rest with the pattern. */
static void srv_check(struct server *s, int fd, const unsigned char *p, uint64_t off, size_t len)
{
	struct sconn *c = &s->c[fd];
	uint64_t pos = off, end = off + len;

	while (pos < end && !c->broken) {
		uint64_t u = pos / UNIT, in = pos % UNIT, ws, n;
		int tail;

		if (in >= STAMP && in < UNIT - STAMP) {
			/* Pattern up to the tail stamp. */
			n = UNIT - STAMP - in;
			if (n > end - pos)
				n = end - pos;
			if (s->o->verify && memcmp(p + (pos - off), pat + in, n) != 0)
				srv_bad(s, fd, "bytes %llu..%llu differ from what was sent",
					(unsigned long long)pos, (unsigned long long)(pos + n));
			pos += n;
			continue;
		}
		tail = in >= STAMP;
		ws = u * UNIT + (tail ? UNIT - STAMP : 0);
		n = ws + STAMP - pos;
		if (n > end - pos)
			n = end - pos;
		memcpy((unsigned char *)&c->stamp + (pos - ws), p + (pos - off), n);
		pos += n;
		if (pos == ws + STAMP)
			srv_stamp(s, fd, u, tail);
	}
}

static void srv_accept(struct server *s, int lfd, int family)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0 && errno == EINTR)
			continue;
		if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (fd < 0)
			net_die("accept (connection %ld): %s", s->accepted + 1, strerror(errno));
		if (fd >= s->nc)
			net_die("accept: fd %d is past the table of %ld", fd, s->nc);
		if (family == AF_INET)
			nodelay(fd);
		s->accepted++;
		s->open++;
		memset(&s->c[fd], 0, sizeof(s->c[fd]));
		s->c[fd].open = 1;
		watch(s->epfd, EPOLL_CTL_ADD, fd, EPOLLIN, (uint64_t)fd);
		if (s->accepted > s->o->conns)
			srv_bad(s, fd, "connection %ld, more than the %ld expected", s->accepted,
				s->o->conns);
		srv_queue(s, fd, greeting, GREETING_LEN);
	}
}

static void srv_close(struct server *s, int fd, const char *why)
{
	struct sconn *c = &s->c[fd];

	if (why || c->rcvd == 0 || c->rcvd % (uint64_t)s->o->size != 0)
		srv_bad(s, fd, "ended (%s) after %llu bytes, not a multiple of %ld", why ? why : "end of stream",
			(unsigned long long)c->rcvd, s->o->size);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
	c->open = 0;
	s->open--;
}

/* Read what fd has, up to 4 reads at a time so that one connection does
 * not hold the loop (the set is level-triggered and comes back to it). */
static void srv_read(struct server *s, int fd, unsigned char *buf)
{
	struct sconn *c = &s->c[fd];

	for (int k = 0; k < 4; k++) {
		ssize_t r = read(fd, buf, READ_SIZE);
		uint64_t before;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r < 0) {
			srv_close(s, fd, strerror(errno));
			return;
		}
		if (r == 0) {
			srv_close(s, fd, NULL);
			return;
		}
		srv_check(s, fd, buf, c->rcvd, (size_t)r);
		before = c->rcvd / (uint64_t)s->o->size;
		c->rcvd += (uint64_t)r;
		s->bytes += (uint64_t)r;
		for (uint64_t a = before; a < c->rcvd / (uint64_t)s->o->size; a++) {
			s->acks++;
			srv_queue(s, fd, ack, ACK_LEN);
		}
		if ((size_t)r < READ_SIZE)
			return;
	}
}

static int serve(const struct opts *o)
{
	struct epoll_event evs[256];
	struct server s = { .o = o };
	struct net_ep ep;
	unsigned char *buf;
	uint16_t port;
	uint64_t cpu0;
	int lfd, backlog;
	FILE *f;

	if (net_parse(o->ep, &ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	s.nc = nofile_raise(o->conns + 64, "the server");
	s.c = calloc((size_t)s.nc, sizeof(*s.c));
	s.claimed = calloc((size_t)o->conns / 8 + 1, 1);
	buf = malloc(READ_SIZE);
	if (!s.c || !s.claimed || !buf)
		net_die("out of memory");
	lfd = net_listen(&ep, &port);
	/* A backlog for all N at once, up to the system's cap
	 * (net.core.somaxconn): a full accept queue drops the handshake's
	 * last ACK and costs TCP a retransmit of a second or more. listen()
	 * again only changes the backlog. */
	backlog = 4096;
	f = fopen("/proc/sys/net/core/somaxconn", "re");
	if (f) {
		if (fscanf(f, "%d", &backlog) != 1)
			backlog = 4096;
		fclose(f);
	}
	if (backlog > o->conns)
		backlog = (int)o->conns;
	if (backlog > 1024 && listen(lfd, backlog) < 0)
		net_die("listen: %s", strerror(errno));
	if (fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) < 0)
		net_die("fcntl O_NONBLOCK: %s", strerror(errno));
	s.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s.epfd < 0)
		net_die("epoll_create1: %s", strerror(errno));
	/* data -1 marks the listener. */
	watch(s.epfd, EPOLL_CTL_ADD, lfd, EPOLLIN, (uint64_t)-1);
	if (o->ready)
		net_ready(o->ready, port);
	cpu0 = net_cpu_us();
	while (s.accepted < o->conns || s.open > 0) {
		/* No timeout: at rest the loop sleeps, as an event loop does;
		 * the client's closing is what ends it. */
		int n = epoll_wait(s.epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			net_die("epoll_wait: %s", strerror(errno));
		for (int k = 0; k < n; k++) {
			int fd = (int)evs[k].data.u64;

			if (evs[k].data.u64 == (uint64_t)-1) {
				srv_accept(&s, lfd, ep.family);
				continue;
			}
			if (!s.c[fd].open)
				continue; /* closed earlier in this batch */
			if (evs[k].events & EPOLLOUT)
				srv_flush(&s, fd);
			if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				srv_read(&s, fd, buf);
		}
	}
	net_result("role=server conns=%ld bytes=%llu acks=%ld bad=%ld cpu_us=%llu hwm_kib=%ld",
		   s.accepted, (unsigned long long)s.bytes, s.acks, s.bad,
		   (unsigned long long)(net_cpu_us() - cpu0), hwm_kib());
	close(s.epfd);
	close(lfd);
	if (ep.family == AF_UNIX)
		unlink(ep.path);
	free(buf);
	free(s.claimed);
	free(s.c);
	return s.bad ? 1 : 0;
}

/* ---- client ---- */

/* A client connection's life, in order: its connect is under way (or to
 * be retried: a UNIX listener's full backlog), it waits for the greeting,
 * it sends, it waits for the ack, it is held. */
enum cstate { C_RETRY, C_CONNECTING, C_GREETING, C_SENDING, C_ACK, C_HELD };

struct cconn {
	int fd;
	uint8_t state;
	uint8_t got;       /* bytes of the greeting or ack read */
	uint8_t queued;    /* in the queue of connections with room to write */
	uint32_t events;   /* its interest in the epoll set */
	uint64_t sent;     /* bytes of its stream written */
};

struct client {
	const struct opts *o;
	struct net_ep ep;
	struct sockaddr_storage addr;
	socklen_t alen;
	int epfd;
	struct cconn *c;
	long *q, qhead, qlen;    /* ring of connections with room to write */
	long *retry, nretry;     /* connects to try again */
	long greeted, acked;
	uint64_t progress_ns;    /* when a connection or a byte last moved */
};

static void cli_interest(struct client *cl, long i, uint32_t events)
{
	struct cconn *c = &cl->c[i];

	if (c->events == events)
		return;
	watch(cl->epfd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, events, (uint64_t)i);
	c->events = events;
}

static void cli_enqueue(struct client *cl, long i)
{
	if (cl->c[i].queued)
		return;
	cl->q[(cl->qhead + cl->qlen) % cl->o->conns] = i;
	cl->qlen++;
	cl->c[i].queued = 1;
}

static void cli_connect(struct client *cl, long i)
{
	struct cconn *c = &cl->c[i];
	int fd = socket(cl->ep.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		net_die("socket (connection %ld): %s", i + 1, strerror(errno));
	if (cl->ep.family == AF_INET)
		nodelay(fd);
	c->fd = fd;
	c->events = 0;
	if (connect(fd, (struct sockaddr *)&cl->addr, cl->alen) == 0) {
		/* A UNIX socket connects at once when the backlog has room. */
		c->state = C_GREETING;
		cli_interest(cl, i, EPOLLIN);
		return;
	}
	if (errno == EINPROGRESS) {
		c->state = C_CONNECTING;
		cli_interest(cl, i, EPOLLOUT);
		return;
	}
	if (errno == EAGAIN) {
		/* A UNIX listener's backlog is full: again once the server
		 * has accepted some. */
		close(fd);
		c->fd = -1;
		c->state = C_RETRY;
		cl->retry[cl->nretry++] = i;
		return;
	}
	net_die("connect %s (connection %ld of %ld): %s", cl->o->ep, i + 1, cl->o->conns,
		strerror(errno));
}

/* Read the rest of the greeting or the ack on connection i; 1 when all of
 * it is in. */
static int cli_read_line(struct client *cl, long i, const char *want, size_t len)
{
	struct cconn *c = &cl->c[i];
	char b[32];

	while (c->got < len) {
		ssize_t r = read(c->fd, b, sizeof(b));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (r <= 0)
			net_die("connection %ld: %s while waiting for \"%.*s\" (%llu bytes sent)", i + 1,
				r == 0 ? "the server closed it" : strerror(errno), (int)len - 1, want,
				(unsigned long long)c->sent);
		/* Nothing comes past the line this connection waits for. */
		if (c->got + (size_t)r > len || memcmp(b, want + c->got, (size_t)r) != 0)
			net_die("connection %ld: unexpected answer \"%.*s\" (waiting for \"%.*s\")", i + 1,
				(int)r, b, (int)len - 1, want);
		c->got = (uint8_t)(c->got + r);
	}
	c->got = 0;
	return 1;
}

/* The pieces of connection id's stream from offset off, len bytes long:
 * the pattern with each unit's stamps laid over it. stamps holds the
 * stamps' values for the length of the call. Returns the count. */
static int build_iov(struct iovec *iov, uint64_t *stamps, uint64_t id, uint64_t off, size_t len)
{
	uint64_t pos = off, end = off + len;
	int n = 0, ns = 0;

	while (pos < end) {
		uint64_t u = pos / UNIT, in = pos % UNIT, piece;

		if (in >= STAMP && in < UNIT - STAMP) {
			piece = UNIT - STAMP - in;
			if (piece > end - pos)
				piece = end - pos;
			iov[n++] = (struct iovec){ pat + in, piece };
		} else {
			int tail = in >= STAMP;
			uint64_t at = in - (tail ? UNIT - STAMP : 0);

			piece = STAMP - at;
			if (piece > end - pos)
				piece = end - pos;
			stamps[ns] = stamp_of(id, u, tail);
			iov[n++] = (struct iovec){ (unsigned char *)&stamps[ns] + at, piece };
			ns++;
		}
		pos += piece;
	}
	return n;
}

/* One write on connection i: the next --write bytes of its stream (less at
 * its end). Returns 1 when the connection still has room and more to
 * write, 0 otherwise. */
static int cli_write(struct client *cl, long i)
{
	struct cconn *c = &cl->c[i];
	struct iovec iov[MAX_IOV];
	uint64_t stamps[MAX_IOV];
	uint64_t left = (uint64_t)cl->o->size - c->sent;
	size_t len = left < (uint64_t)cl->o->wsize ? (size_t)left : (size_t)cl->o->wsize;
	int n = build_iov(iov, stamps, (uint64_t)i, c->sent, len);
	ssize_t w;

	do
		w = writev(c->fd, iov, n);
	while (w < 0 && errno == EINTR);
	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		cli_interest(cl, i, EPOLLIN | EPOLLOUT);
		return 0;
	}
	if (w <= 0)
		net_die("connection %ld: write at byte %llu: %s", i + 1, (unsigned long long)c->sent,
			w < 0 ? strerror(errno) : "wrote nothing");
	c->sent += (uint64_t)w;
	cl->progress_ns = net_now_ns();
	if (c->sent == (uint64_t)cl->o->size) {
		c->state = C_ACK;
		cli_interest(cl, i, EPOLLIN);
		return 0;
	}
	if ((size_t)w < len) {
		/* Short: the socket is full; on when it has room. */
		cli_interest(cl, i, EPOLLIN | EPOLLOUT);
		return 0;
	}
	return 1;
}

static void cli_event(struct client *cl, long i, uint32_t ev)
{
	struct cconn *c = &cl->c[i];

	switch (c->state) {
	case C_CONNECTING: {
		int err = 0;
		socklen_t el = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err)
			net_die("connect %s (connection %ld of %ld): %s", cl->o->ep, i + 1, cl->o->conns,
				strerror(err));
		if (!(ev & EPOLLOUT))
			return;
		c->state = C_GREETING;
		cli_interest(cl, i, EPOLLIN);
		return;
	}
	case C_GREETING:
		if (cli_read_line(cl, i, greeting, GREETING_LEN)) {
			c->state = C_SENDING;
			cl->greeted++;
			cl->progress_ns = net_now_ns();
		}
		return;
	case C_SENDING:
	case C_ACK:
		if ((ev & EPOLLOUT) && c->state == C_SENDING) {
			cli_interest(cl, i, EPOLLIN);
			cli_enqueue(cl, i);
		}
		if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && cli_read_line(cl, i, ack, ACK_LEN)) {
			if (c->state != C_ACK)
				net_die("connection %ld: an ack after %llu of its %ld bytes", i + 1,
					(unsigned long long)c->sent, cl->o->size);
			c->state = C_HELD;
			cl->acked++;
			cl->progress_ns = net_now_ns();
		}
		return;
	default:
		return;
	}
}

/* Wait for events and handle them; ms as epoll_wait's. Dies, saying where
 * the client stood, when nothing moved for --stall seconds. */
static void cli_poll(struct client *cl, int ms, const char *phase)
{
	struct epoll_event evs[256];
	int n = epoll_wait(cl->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), ms);

	if (n < 0 && errno == EINTR)
		return;
	if (n < 0)
		net_die("epoll_wait: %s", strerror(errno));
	for (int k = 0; k < n; k++)
		cli_event(cl, (long)evs[k].data.u64, evs[k].events);
	if ((double)(net_now_ns() - cl->progress_ns) > cl->o->stall * 1e9)
		net_die("%s phase: nothing moved for %.0f s: %ld of %ld connections greeted, %ld acked, "
			"%ld connects to retry, %ld connections with room to write",
			phase, cl->o->stall, cl->greeted, cl->o->conns, cl->acked, cl->nretry, cl->qlen);
}

static int client(const struct opts *o)
{
	struct client cl = { .o = o };
	uint64_t t0, t1, t2, t3, t4, cpu0;
	long dropped = 0, n = o->conns;

	if (net_parse(o->ep, &cl.ep) < 0)
		net_die("bad endpoint '%s'", o->ep);
	cl.alen = net_ep_addr(&cl.ep, &cl.addr);
	if (!cl.alen)
		net_die("bad IPv4 address '%s'", cl.ep.host);
	nofile_raise(n + 64, "the client");
	cl.c = calloc((size_t)n, sizeof(*cl.c));
	cl.q = calloc((size_t)n, sizeof(*cl.q));
	cl.retry = calloc((size_t)n, sizeof(*cl.retry));
	if (!cl.c || !cl.q || !cl.retry)
		net_die("out of memory");
	cl.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (cl.epfd < 0)
		net_die("epoll_create1: %s", strerror(errno));
	cpu0 = net_cpu_us();

	/* Connect: all N at once, then every greeting. */
	t0 = cl.progress_ns = net_now_ns();
	for (long i = 0; i < n; i++)
		cli_connect(&cl, i);
	while (cl.greeted < n) {
		cli_poll(&cl, cl.nretry ? 1 : 1000, "connect");
		if (cl.nretry) {
			long *r = cl.retry, k = cl.nretry;

			/* cli_connect refills the list with those still refused. */
			cl.retry = calloc((size_t)n, sizeof(*cl.retry));
			if (!cl.retry)
				net_die("out of memory");
			cl.nretry = 0;
			for (long j = 0; j < k; j++)
				cli_connect(&cl, r[j]);
			free(r);
		}
	}
	t1 = net_now_ns();
	net_result("phase=connect ms=%.3f conns=%ld", (double)(t1 - t0) / 1e6, n);

	/* Traffic: one write per connection with room, in turn, until every
	 * connection has sent its bytes and has its ack. */
	cl.progress_ns = t1;
	for (long i = 0; i < n; i++)
		cli_enqueue(&cl, i);
	while (cl.acked < n) {
		for (long k = cl.qlen; k > 0; k--) {
			long i = cl.q[cl.qhead];

			cl.qhead = (cl.qhead + 1) % n;
			cl.qlen--;
			cl.c[i].queued = 0;
			if (cli_write(&cl, i))
				cli_enqueue(&cl, i);
		}
		cli_poll(&cl, cl.qlen ? 0 : 1000, "traffic");
	}
	t2 = net_now_ns();
	net_result("phase=traffic ms=%.3f bytes=%llu", (double)(t2 - t1) / 1e6,
		   (unsigned long long)n * (unsigned long long)o->size);

	/* Hold: every connection open and silent, the loop at rest in
	 * epoll_wait; anything that happens on one of them is a drop. */
	net_result("phase=hold secs=%g", o->hold);
	if (o->holding)
		net_ready(o->holding, 0);
	for (;;) {
		struct epoll_event evs[256];
		int64_t left = (int64_t)(o->hold * 1e9) - (int64_t)(net_now_ns() - t2);
		int k;

		if (left <= 0)
			break;
		k = epoll_wait(cl.epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])),
			       (int)((left + 999999) / 1000000));
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			net_die("epoll_wait: %s", strerror(errno));
		for (int j = 0; j < k; j++) {
			long i = (long)evs[j].data.u64;

			if (dropped++ < 10)
				fprintf(stderr, "%s: connection %ld: %s%s%s during the hold\n", net_prog, i + 1,
					evs[j].events & EPOLLIN ? "readable (closed, reset or sent to)" : "",
					evs[j].events & EPOLLHUP ? " hang-up" : "",
					evs[j].events & EPOLLERR ? " error" : "");
			epoll_ctl(cl.epfd, EPOLL_CTL_DEL, cl.c[i].fd, NULL);
		}
	}
	t3 = net_now_ns();
	net_result("phase=held ms=%.3f dropped=%ld", (double)(t3 - t2) / 1e6, dropped);

	for (long i = 0; i < n; i++)
		close(cl.c[i].fd);
	t4 = net_now_ns();
	net_result("role=client conns=%ld size=%ld connect_us=%llu traffic_us=%llu hold_us=%llu "
		   "close_us=%llu dropped=%ld cpu_us=%llu hwm_kib=%ld",
		   n, o->size, (unsigned long long)((t1 - t0) / 1000),
		   (unsigned long long)((t2 - t1) / 1000), (unsigned long long)((t3 - t2) / 1000),
		   (unsigned long long)((t4 - t3) / 1000), dropped,
		   (unsigned long long)(net_cpu_us() - cpu0), hwm_kib());
	close(cl.epfd);
	free(cl.retry);
	free(cl.q);
	free(cl.c);
	if (dropped)
		net_die("%ld of the %ld connections were closed, reset or written to during the hold",
			dropped, n);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: xio-bench-scale server --listen EP --conns N [--size BYTES] [--verify] "
		"[--ready FILE]\n"
		"       xio-bench-scale client --connect EP --conns N [--size BYTES] [--write BYTES]\n"
		"                       [--hold SECS] [--holding FILE] [--stall SECS]\n"
		"EP is tcp:HOST:PORT or uds:PATH. --size (default 262144) is a multiple of 65536;\n"
		"--write (default 65536) is at most 1048576.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "ready", required_argument, NULL, 'r' },
		{ "conns", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 'z' },
		{ "write", required_argument, NULL, 'w' },
		{ "hold", required_argument, NULL, 'h' },
		{ "holding", required_argument, NULL, 'H' },
		{ "stall", required_argument, NULL, 's' },
		{ "verify", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .conns = 0, .size = 256 << 10, .wsize = 64 << 10, .hold = 3, .stall = 60 };
	int ch, is_server;

	net_prog = "xio-bench-scale";
	is_server = net_role(argc, argv, usage);
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
		case 'c':
			if ((ch == 'l') != is_server)
				usage();
			o.ep = optarg;
			break;
		case 'r':
			o.ready = optarg;
			break;
		case 'n':
			o.conns = net_parse_long("--conns", optarg, 1, 1000000);
			break;
		case 'z':
			o.size = net_parse_long("--size", optarg, UNIT, 64L << 20);
			if (o.size % UNIT)
				net_die("bad --size '%s' (a multiple of %u)", optarg, UNIT);
			break;
		case 'w':
			o.wsize = net_parse_long("--write", optarg, 1, MAX_WRITE);
			break;
		case 'h':
			o.hold = net_parse_seconds("--hold", optarg);
			break;
		case 'H':
			o.holding = optarg;
			break;
		case 's':
			o.stall = net_parse_seconds("--stall", optarg);
			break;
		case 'v':
			o.verify = 1;
			break;
		default:
			usage();
		}
	}
	if (!o.ep || !o.conns || optind < argc)
		usage();
	if (is_server && (o.holding || o.wsize != 64 << 10))
		usage();
	if (!is_server && (o.ready || o.verify))
		usage();
	pattern_init();
	/* A write to a connection the server closed is an error to report,
	 * not a signal that ends the client unreported. */
	signal(SIGPIPE, SIG_IGN);
	return is_server ? serve(&o) : client(&o);
}
