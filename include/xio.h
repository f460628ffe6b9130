/*
 * xio.h - the native xio API: TCP between processes on one host, carried
 * over shared-memory rte_ring channels.
 *
 * Every xio connection is also a real kernel TCP connection (see
 * docs/design.md): xio_connect() and xio_accept() go through the kernel and
 * are then paired, through the xio-monitor, with a shared-memory segment.
 * When pairing is not possible (no monitor, the peer does not run xio, an
 * ACL refuses it) the connection stays on kernel TCP and every call below
 * still works on it; xio_conn_is_accelerated() tells which one you got.
 *
 * Two ways to move bytes:
 *   - socket-like:  xio_read() / xio_write() copy once, into or out of the
 *                   connection's shared memory;
 *   - zero-copy:    xio_alloc() a buffer in shared memory, fill it in place,
 *                   xio_send() it as a descriptor; the peer xio_recv()s a
 *                   pointer into the same memory and xio_release()s it.
 *
 * Error convention (one for the whole API): a call returns 0, a count, or a
 * negative errno value (-EAGAIN, -EPIPE, ...). No call sets errno, and no
 * call changes the caller's errno.
 *
 * Threads: a connection may be used by one reader and one writer thread at
 * a time; xio_read/xio_recv/xio_release must not run concurrently with each
 * other on one connection, nor xio_write/xio_alloc/xio_send.
 */
#ifndef XIO_H
#define XIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define XIO_EXPORT __attribute__((visibility("default")))
#else
#define XIO_EXPORT
#endif

#define XIO_VERSION_MAJOR 0
#define XIO_VERSION_MINOR 1

/* Flags for xio_listen(), xio_accept(), xio_connect(). */
#define XIO_NONBLOCK 0x1u /* calls on the object return -EAGAIN instead of waiting */

typedef struct xio_listener xio_listener;
typedef struct xio_conn xio_conn;

/*
 * A buffer in a connection's shared memory. xio_alloc() and xio_recv() fill
 * it; the caller reads data and len and may lower len before xio_send().
 * The other fields belong to the library.
 */
struct xio_buf {
	void *data;     /* start of the buffer, in this process's mapping */
	uint32_t len;   /* bytes of payload */
	uint32_t cap;   /* bytes available at data (xio_alloc) */
	uint32_t token; /* library-private: which shared buffer this is */
	uint32_t flags; /* library-private */
};

/*
 * xio_listen - open a TCP listening socket on addr and register it with the
 * monitor so that xio clients connecting to it are paired.
 *   out:     receives the listener.
 *   addr:    an AF_INET or AF_INET6 address (port 0 picks a free port).
 *   backlog: as for listen(2).
 *   flags:   0 or XIO_NONBLOCK (xio_accept() then returns -EAGAIN).
 * Returns 0, or -errno from socket/bind/listen (-EADDRINUSE, -EACCES...).
 * A monitor that refuses is not an error: the listener then only produces
 * kernel connections. Nor is one that is absent or dies: the process starts
 * one helper thread (all signals blocked), which registers its listeners
 * with each monitor that comes up on the socket, within about 250 ms; until
 * then the listener produces kernel connections.
 */
XIO_EXPORT int xio_listen(xio_listener **out, const struct sockaddr *addr,
			  socklen_t addrlen, int backlog, unsigned flags);

/*
 * xio_listener_fd - the kernel listening fd, to wait for POLLIN on.
 */
XIO_EXPORT int xio_listener_fd(const xio_listener *l);

/*
 * xio_listener_addr - the address the listener is bound to (its port when
 * 0 was asked for). Returns 0 or -errno.
 */
XIO_EXPORT int xio_listener_addr(const xio_listener *l, struct sockaddr_storage *ss,
				 socklen_t *len);

/*
 * xio_accept - accept one connection.
 *   flags: 0 or XIO_NONBLOCK for the new connection's own calls.
 * Returns 0 and *out, -EAGAIN when the listener is non-blocking and no
 * connection waits, -EINTR when a signal interrupted the wait, or -errno.
 */
XIO_EXPORT int xio_accept(xio_listener *l, xio_conn **out, unsigned flags);

/*
 * xio_listener_close - stop listening and free the listener. Connections
 * already accepted are not affected. Returns 0 or -errno.
 */
XIO_EXPORT int xio_listener_close(xio_listener *l);

/*
 * xio_connect - connect to addr (blocking until the kernel handshake and the
 * pairing are done; pairing costs one monitor round trip).
 *   flags: 0 or XIO_NONBLOCK for the connection's later calls.
 * Returns 0 and *out, or -errno from connect(2) (-ECONNREFUSED...).
 */
XIO_EXPORT int xio_connect(xio_conn **out, const struct sockaddr *addr, socklen_t addrlen,
			   unsigned flags);

/*
 * xio_read - copy up to len received bytes into buf.
 * Returns the count (>0), 0 at end of file (the peer closed or shut down
 * writing and everything before has been read), -EAGAIN (non-blocking and
 * nothing to read), -EINTR, -ECONNRESET (the kernel reset the connection,
 * e.g. the peer died with unread data; a peer that dies otherwise reads as
 * end of file, as over TCP), -EPROTO (the peer wrote garbage into the
 * shared segment; the connection is broken for good).
 */
XIO_EXPORT ssize_t xio_read(xio_conn *c, void *buf, size_t len);

/*
 * xio_write - copy len bytes from buf to the peer. Blocking: returns len
 * once all are queued. Non-blocking: returns how many were queued, or
 * -EAGAIN if none could be. -EPIPE after the peer closed its read side,
 * -ECONNRESET, -EPROTO as for xio_read.
 */
XIO_EXPORT ssize_t xio_write(xio_conn *c, const void *buf, size_t len);

/*
 * xio_alloc - get a buffer of at least len bytes (len <= xio_max_msg(c)) in
 * the connection's shared memory, to be filled in place and xio_send()t.
 * Blocking connections wait for the peer to release buffers; non-blocking
 * ones return -EAGAIN. -EMSGSIZE if len is too large, -EPIPE, -ECONNRESET,
 * -EPROTO as for xio_write. On a kernel (not accelerated) connection the
 * buffer is private memory and xio_send() copies it to the socket.
 */
XIO_EXPORT int xio_alloc(xio_conn *c, size_t len, struct xio_buf *b);

/*
 * xio_send - hand b (from xio_alloc, with b->len set, 0 < len <= cap) to the
 * peer as one descriptor; no byte is copied. b belongs to xio afterwards.
 * Returns b->len or -errno as for xio_write (on error b is freed).
 */
XIO_EXPORT ssize_t xio_send(xio_conn *c, struct xio_buf *b);

/*
 * xio_recv - get the next received buffer without copying: b->data points
 * into shared memory and stays valid until xio_release(c, b).
 * Returns b->len (>0), 0 at end of file, or -errno as for xio_read.
 * The bytes are in memory the peer can also write: parse them once.
 */
XIO_EXPORT ssize_t xio_recv(xio_conn *c, struct xio_buf *b);

/*
 * xio_release - give a buffer from xio_recv back to its sender, or drop one
 * from xio_alloc that will not be sent. Returns 0 or -EINVAL.
 */
XIO_EXPORT int xio_release(xio_conn *c, struct xio_buf *b);

/*
 * xio_max_msg - the largest buffer xio_alloc() can return on c.
 */
XIO_EXPORT size_t xio_max_msg(const xio_conn *c);

/*
 * xio_shutdown - SHUT_WR sends end of file after all queued data; SHUT_RD
 * makes the peer's further writes fail with -EPIPE; SHUT_RDWR both.
 * Returns 0 or -EINVAL/-ENOTCONN.
 */
XIO_EXPORT int xio_shutdown(xio_conn *c, int how);

/*
 * xio_close - close the connection (as close(2) on a socket: the peer reads
 * the remaining data, then end of file) and free c. Returns 0 or -errno.
 */
XIO_EXPORT int xio_close(xio_conn *c);

/*
 * xio_conn_fd - the kernel socket under c. Wait on it with poll/epoll after
 * xio_conn_poll_arm() returned 0.
 */
XIO_EXPORT int xio_conn_fd(const xio_conn *c);

/*
 * xio_conn_poll_arm - prepare to sleep on xio_conn_fd(c) for events
 * (POLLIN and/or POLLOUT). Returns the subset of events that is ready now
 * (then do not sleep), or 0 after asking the peer to ring the kernel socket
 * when it changes something. Then wait for POLLIN on the fd (the doorbell
 * is a byte arriving, also when you wait to write: the kernel socket itself
 * is always writable) and call the I/O functions, which return -EAGAIN if
 * the wake-up was for something else.
 */
XIO_EXPORT int xio_conn_poll_arm(xio_conn *c, short events);

/*
 * xio_conn_is_accelerated - 1 if c runs over shared memory, 0 if over the
 * kernel's TCP.
 */
XIO_EXPORT int xio_conn_is_accelerated(const xio_conn *c);

/*
 * xio_conn_set_nonblock - switch c between blocking (0) and non-blocking
 * (1). Returns 0 or -errno.
 */
XIO_EXPORT int xio_conn_set_nonblock(xio_conn *c, int on);

/*
 * Per-connection counters (this process's view).
 */
struct xio_conn_stats {
	uint64_t tx_bytes, rx_bytes;    /* payload moved over shared memory */
	uint64_t tx_msgs, rx_msgs;      /* descriptors sent and received */
	uint64_t doorbells;             /* kernel wake-ups this side rang */
	uint64_t sleeps;                /* times this side slept in the kernel */
};

/*
 * xio_conn_stats - copy c's counters into *st. Returns 0.
 */
XIO_EXPORT int xio_conn_stats(const xio_conn *c, struct xio_conn_stats *st);

/*
 * xio_strerror - a message for a value returned by the calls above.
 */
XIO_EXPORT const char *xio_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* XIO_H */
