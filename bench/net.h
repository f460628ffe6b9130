/*
 * net.h - plain POSIX socket helpers for the suite's load programs
 * (pingpong.c, stream.c, shortconn.c, mcload.c, idle.c).
 *
 * These programs stand for the "unmodified programs" of the suite: they use
 * only the socket calls any program uses and never link libxio, so the xio
 * rows measure them exactly as they are, under LD_PRELOAD. The same binary
 * runs the kernel TCP, UNIX socket and xio rows.
 *
 * Endpoints are written "tcp:HOST:PORT" (IPv4, port 0 = any free one, which
 * the server reports through --ready) or "uds:PATH".
 *
 * Results: every program prints one line of key=value pairs on stdout at
 * the end (net_result), which the suite's scripts parse; errors go to
 * stderr as "PROG: message" and the program exits with status 1.
 */
#ifndef XIO_BENCH_NET_H
#define XIO_BENCH_NET_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct net_ep {
	int family; /* AF_INET or AF_UNIX */
	char host[64];
	uint16_t port;
	char path[108];
};

/* The program's name for messages; set once in main. */
extern const char *net_prog;

/* The role word every server/client program starts with: 1 for "server",
 * 0 for "client" (usage() otherwise, which must not return); leaves optind
 * at the first option after it, for getopt_long. */
int net_role(int argc, char **argv, void (*usage)(void));

/* Print "PROG: message" to stderr and exit(1). */
void net_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Print the result line: the words, then a newline, in one write. */
void net_result(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse "tcp:HOST:PORT" or "uds:PATH"; 0 or -EINVAL. */
int net_parse(const char *spec, struct net_ep *ep);

/* Listen on ep (backlog 1024, SO_REUSEADDR for TCP); returns the fd and
 * the bound port in *port (0 for UNIX sockets), or dies. */
int net_listen(const struct net_ep *ep, uint16_t *port);

/* accept(), retried on EINTR; TCP_NODELAY on TCP connections. Returns the
 * fd or -errno. */
int net_accept(int lfd, int family);

/* A blocking connection to ep, TCP_NODELAY for TCP. Returns the fd or
 * -errno. */
int net_connect(const struct net_ep *ep);

/* Write "PORT\n" to path, through a temporary file and rename, so that a
 * script polling for path never reads half a line. Dies on error. */
void net_ready(const char *path, uint16_t port);

/* Read exactly len bytes. 0, -EPIPE if the peer closed first (*got, if not
 * NULL, says how many bytes had come), or -errno. */
int net_read_full(int fd, void *buf, size_t len, size_t *got);

/* Write exactly len bytes (MSG_NOSIGNAL). 0 or -errno. */
int net_write_full(int fd, const void *buf, size_t len);

/* Stamp seq into the first and last 8 bytes of a message of size >= 16
 * bytes, and check it back (0, or -EBADMSG with the finding printed). */
void net_stamp(void *msg, size_t size, uint64_t seq);
int net_check(const char *who, const void *msg, size_t size, uint64_t seq);

/* CPU time of this process (all threads, user + system), microseconds. */
uint64_t net_cpu_us(void);

/* Parse a positive duration in seconds ("1", "0.5"); dies when invalid. */
double net_parse_seconds(const char *opt, const char *s);
/* Parse an integer in [min, max]; dies when invalid. */
long net_parse_long(const char *opt, const char *s, long min, long max);

static inline uint64_t net_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * A growing array of latency samples (ns), for p50/p99. Bounded at
 * NET_MAX_SAMPLES; samples past that are not kept (the percentiles are
 * then those of the first ones), which only happens on runs far longer than
 * the suite's.
 */
#define NET_MAX_SAMPLES (16u << 20)
struct net_samples {
	uint64_t *v;
	size_t n, cap;
};
void net_samples_add(struct net_samples *s, uint64_t ns);
/* Sort, and give p50 and p99 in ns (0 when empty). */
void net_samples_pct(struct net_samples *s, uint64_t *p50, uint64_t *p99);

/* Fill a sockaddr for ep; returns its length, or 0 for a bad host. */
socklen_t net_ep_addr(const struct net_ep *ep, struct sockaddr_storage *ss);

#endif /* XIO_BENCH_NET_H */
