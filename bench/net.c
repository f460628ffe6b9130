/*
 * net.c - plain POSIX socket helpers for the suite's load programs (net.h).
 */
#include "net.h"
#include "stats.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

const char *net_prog = "xio-bench";

int net_role(int argc, char **argv, void (*usage)(void))
{
	if (argc < 2 || (strcmp(argv[1], "server") && strcmp(argv[1], "client")))
		usage();
	optind = 2;
	return !strcmp(argv[1], "server");
}

void net_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", net_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void net_result(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	fflush(stdout);
	if (write(STDOUT_FILENO, line, (size_t)n) != n)
		net_die("writing the result: %s", strerror(errno));
}

int net_parse(const char *spec, struct net_ep *ep)
{
	const char *colon;
	char *end;
	unsigned long port;
	size_t hlen;

	memset(ep, 0, sizeof(*ep));
	if (!strncmp(spec, "uds:", 4)) {
		if (strlen(spec + 4) == 0 || strlen(spec + 4) >= sizeof(ep->path))
			return -EINVAL;
		ep->family = AF_UNIX;
		strcpy(ep->path, spec + 4);
		return 0;
	}
	if (strncmp(spec, "tcp:", 4))
		return -EINVAL;
	spec += 4;
	colon = strrchr(spec, ':');
	if (!colon)
		return -EINVAL;
	hlen = (size_t)(colon - spec);
	if (hlen == 0 || hlen >= sizeof(ep->host))
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port > 65535)
		return -EINVAL;
	memcpy(ep->host, spec, hlen);
	ep->host[hlen] = '\0';
	ep->port = (uint16_t)port;
	ep->family = AF_INET;
	return 0;
}

socklen_t net_ep_addr(const struct net_ep *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ep->family == AF_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;

		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, ep->path, strlen(ep->path) + 1);
		return sizeof(*un);
	}
	struct sockaddr_in *in = (struct sockaddr_in *)ss;

	in->sin_family = AF_INET;
	in->sin_port = htons(ep->port);
	if (inet_pton(AF_INET, ep->host, &in->sin_addr) != 1)
		return 0;
	return sizeof(*in);
}

static void nodelay(int fd)
{
	int one = 1;

	/* Every message is a request the peer waits for: Nagle would only add
	 * delay, as in the programs the suite stands for (redis, memcached). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int net_listen(const struct net_ep *ep, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = net_ep_addr(ep, &ss);
	int fd, one = 1;

	if (!len)
		net_die("bad IPv4 address '%s'", ep->host);
	fd = socket(ep->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		net_die("socket: %s", strerror(errno));
	if (ep->family == AF_INET)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	else
		unlink(ep->path);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		net_die("bind: %s", strerror(errno));
	if (listen(fd, 1024) < 0)
		net_die("listen: %s", strerror(errno));
	*port = 0;
	if (ep->family == AF_INET) {
		len = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
			net_die("getsockname: %s", strerror(errno));
		*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	return fd;
}

int net_accept(int lfd, int family)
{
	int fd;

	do
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -errno;
	if (family == AF_INET)
		nodelay(fd);
	return fd;
}

int net_connect(const struct net_ep *ep)
{
	struct sockaddr_storage ss;
	socklen_t len = net_ep_addr(ep, &ss);
	int fd, err;

	if (!len)
		return -EINVAL;
	fd = socket(ep->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ep->family == AF_INET)
		nodelay(fd);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

void net_ready(const char *path, uint16_t port)
{
	char tmp[4096];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		net_die("ready path too long");
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%u\n", (unsigned)port) < 0 || fclose(f) != 0)
		net_die("writing %s: %s", tmp, strerror(errno));
	if (rename(tmp, path) < 0)
		net_die("rename %s: %s", tmp, strerror(errno));
}

int net_read_full(int fd, void *buf, size_t len, size_t *got)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = read(fd, (char *)buf + off, len - off);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (got)
			*got = off;
		return n == 0 ? -EPIPE : -errno;
	}
	if (got)
		*got = off;
	return 0;
}

int net_write_full(int fd, const void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, (const char *)buf + off, len - off, MSG_NOSIGNAL);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		return -errno;
	}
	return 0;
}

void net_stamp(void *msg, size_t size, uint64_t seq)
{
	/* memcpy: the ends of a message need not be 8-byte aligned. */
	memcpy(msg, &seq, sizeof(seq));
	memcpy((char *)msg + size - sizeof(seq), &seq, sizeof(seq));
}

int net_check(const char *who, const void *msg, size_t size, uint64_t seq)
{
	uint64_t head, tail;

	memcpy(&head, msg, sizeof(head));
	memcpy(&tail, (const char *)msg + size - sizeof(tail), sizeof(tail));
	if (head == seq && tail == seq)
		return 0;
	fprintf(stderr,
		"%s: %s: message %llu of %zu bytes carries sequence numbers %llu (head) and "
		"%llu (tail): the transport lost, reordered or corrupted data\n",
		net_prog, who, (unsigned long long)seq, size, (unsigned long long)head,
		(unsigned long long)tail);
	return -EBADMSG;
}

uint64_t net_cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double net_parse_seconds(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 3600)
		net_die("bad %s '%s' (seconds, > 0)", opt, s);
	return v;
}

long net_parse_long(const char *opt, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		net_die("bad %s '%s' (%ld..%ld)", opt, s, min, max);
	return v;
}

void net_samples_add(struct net_samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 65536;
		uint64_t *v;

		if (s->cap >= NET_MAX_SAMPLES)
			return;
		v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			net_die("out of memory for %zu samples", cap);
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ns;
}

void net_samples_pct(struct net_samples *s, uint64_t *p50, uint64_t *p99)
{
	stats_sort(s->v, s->n);
	*p50 = stats_percentile(s->v, s->n, 50);
	*p99 = stats_percentile(s->v, s->n, 99);
}
