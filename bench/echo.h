/*
 * echo.h - the echo latency benchmark (xio-bench-echo): what echo.c, the
 * driver, shares with the transports in echo_sock.c, echo_uring.c and
 * echo_xio.c.
 *
 * A transport is a server half, run in a forked child, and a client half,
 * run in the parent. The driver forks one child per transport; the child
 * opens a listener, reports its address through a pipe, then serves one
 * connection per message size, in the order of the size list (which it
 * inherited from the parent with the rest of its memory), each until the
 * client closes it. The client connects once per size, does the warm-up and
 * the timed round trips, and closes.
 *
 * Every message carries a 64-bit sequence number, starting at
 * ECHO_SEQ_FIRST on each connection, in its first and its last 8 bytes; both
 * sides check both copies. The rest of a message is whatever the sender's
 * buffer held (filled once for the copying transports, never touched by the
 * zero-copy one), and is not checked.
 *
 * Errors: functions return 0 (or a count) or a negative errno, and print
 * what went wrong to stderr themselves, naming the transport, so that the
 * driver only has to say which measurement was given up.
 */
#ifndef XIO_BENCH_ECHO_H
#define XIO_BENCH_ECHO_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define ECHO_SEQ_FIRST 1u
/* Two sequence numbers per message, and they must not overlap. */
#define ECHO_MIN_SIZE 16u
#define ECHO_MAX_SIZE (64u << 20)

/*
 * What a server child sends the parent through the readiness pipe, once its
 * listener is open: the address to connect to, or why there is none.
 */
struct echo_addr {
	int32_t err;    /* 0, or the -errno that kept the server from listening */
	uint16_t port;  /* 127.0.0.1 port, host order, for TCP-based transports */
	char path[108]; /* socket path for the AF_UNIX ones; set by the parent */
};

/*
 * One transport. Server callbacks run in the child, client ones in the
 * parent; each side keeps its own state behind the void pointer.
 */
struct echo_transport {
	const char *name; /* as printed in the table and the CSV */
	int uses_path;    /* listens on an AF_UNIX path, not on a TCP port */

	/* Open the listener; fill addr->port for TCP (addr->path is preset). */
	int (*server_listen)(void **srv, struct echo_addr *addr);
	/* Accept one connection, echo messages of size bytes until the client
	 * closes it, close it. */
	int (*server_serve)(void *srv, size_t size);
	void (*server_close)(void *srv);

	/* Connect for messages of size bytes. -EMSGSIZE means this size cannot
	 * be measured on this transport but the connection was made and closed,
	 * so the server stays in step and the next size can go on. */
	int (*client_open)(void **cli, const struct echo_addr *addr, size_t size);
	/* One timed unit: send message seq, receive and check its echo. */
	int (*client_roundtrip)(void *cli, uint64_t seq);
	void (*client_close)(void *cli);
};

extern const struct echo_transport echo_tcp, echo_uds;
extern const struct echo_transport echo_uring_tcp, echo_uring_uds;
extern const struct echo_transport echo_xio, echo_xio_zc;

/*
 * Set by the parent's SIGALRM handler when a transport ran past its time
 * limit. Blocking calls then fail with EINTR (the handler is installed
 * without SA_RESTART); loops that see EINTR return -ETIMEDOUT if this is
 * set and retry otherwise.
 */
extern volatile sig_atomic_t echo_timed_out;

/* Print "xio-bench-echo: " and the message to stderr. */
void echo_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * echo_msg_check - check that the message at buf is len == size bytes long
 * and that both copies of its sequence number equal seq. Prints what it
 * found and returns -EBADMSG if not; returns 0 if they do.
 *   name, side: the transport and "client" or "server", for the message.
 */
/* strerror(-err), but "time limit reached" for the -ETIMEDOUT the loops
 * return when the limit interrupted them. */
const char *echo_strerror(int err);

int echo_msg_check(const char *name, const char *side, const void *buf, size_t len, size_t size,
		   uint64_t seq);

/* echo_buf_alloc - a page-aligned buffer of size bytes, filled with a
 * pattern (so that copying transports move real, non-zero pages). */
void *echo_buf_alloc(size_t size);

/* echo_buf_reserve - make *buf (of *bufsz bytes) hold at least size bytes,
 * replacing it with a larger echo_buf_alloc() buffer if needed. Returns 0
 * or -ENOMEM (then *buf is NULL and *bufsz 0). */
int echo_buf_reserve(void **buf, size_t *bufsz, size_t size);

/* Write seq into the first and the last 8 bytes of a message. memcpy
 * because the ends of a message need not be 8-byte aligned. */
static inline void echo_msg_stamp(void *buf, size_t size, uint64_t seq)
{
	memcpy(buf, &seq, sizeof(seq));
	memcpy((char *)buf + size - sizeof(seq), &seq, sizeof(seq));
}

static inline uint64_t echo_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Kernel socket helpers shared by the tcp, uds and io_uring transports
 * (echo_sock.c). family is AF_INET (127.0.0.1, TCP_NODELAY on every
 * connection) or AF_UNIX (SOCK_STREAM on addr->path). Each returns an fd or
 * a negative errno.
 */
int echo_sock_listen(int family, struct echo_addr *addr);
int echo_sock_accept(int lfd, int family);
int echo_sock_connect(int family, const struct echo_addr *addr);

#endif /* XIO_BENCH_ECHO_H */
