/*
 * ctl.h - the control protocol between processes and xio-monitor, over a
 * UNIX SOCK_SEQPACKET socket (one message per packet, fds by SCM_RIGHTS).
 * docs/design.md describes each message and the pairing sequence.
 *
 * Every message starts with struct xio_msg_hdr. A receiver checks the
 * version, that the packet length equals hdr.len, and that hdr.len is the
 * exact size of that type's struct (xio_ctl_recv); fds that arrive with a
 * message that takes none are closed.
 */
#ifndef XIO_CORE_CTL_H
#define XIO_CORE_CTL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "xio/seg.h"

#define XIO_CTL_VERSION 1u
#define XIO_CTL_MAX_MSG 256u
#define XIO_MONITOR_SOCK_DEFAULT "/run/xio/monitor.sock"

enum xio_msg_type {
	/* process -> monitor */
	XIO_MSG_HELLO = 1,  /* first message; reply OK */
	XIO_MSG_LISTEN,     /* + listening fd; reply OK {id} or ERROR */
	XIO_MSG_UNLISTEN,   /* {id}; no reply */
	XIO_MSG_INTENT,     /* + fd about to connect {intent}; no reply */
	XIO_MSG_CONNECTED,  /* {intent}; reply ATTACH + fd, or FALLBACK */
	XIO_MSG_ACCEPT,     /* + accepted fd; reply ATTACH + fd, or FALLBACK */
	XIO_MSG_CLOSE,      /* {conn_id, side}; no reply */
	XIO_MSG_STATUS,     /* reply STATUS_REPLY */
	XIO_MSG_REATTACH,   /* + socket {conn_id, side}: after exec; reply ATTACH or FALLBACK */
	XIO_MSG_CONNS,      /* {after}; reply CONN_INFO per entry, then CONNS_END */
	/* monitor -> process */
	XIO_MSG_OK = 0x100,
	XIO_MSG_ERROR,
	XIO_MSG_ATTACH,
	XIO_MSG_FALLBACK,
	XIO_MSG_STATUS_REPLY,
	XIO_MSG_CONN_INFO,
	XIO_MSG_CONNS_END,
};

struct xio_msg_hdr {
	uint16_t version;
	uint16_t type;
	uint32_t len; /* bytes of the whole message */
	uint32_t seq; /* a reply carries its request's seq */
	uint32_t reserved;
};

/* HELLO, STATUS: the header alone. */
struct xio_msg_hello {
	struct xio_msg_hdr h;
	uint32_t pid; /* informational; the monitor trusts SO_PEERCRED */
	uint32_t flags;
};
struct xio_msg_id { /* LISTEN (0 in request), UNLISTEN, OK */
	struct xio_msg_hdr h;
	uint64_t id;
};
struct xio_msg_intent { /* INTENT, CONNECTED */
	struct xio_msg_hdr h;
	uint64_t intent;
};
struct xio_msg_close {
	struct xio_msg_hdr h;
	uint64_t conn_id;
	uint32_t side;
	uint32_t reserved;
};
struct xio_msg_attach {
	struct xio_msg_hdr h;
	uint64_t conn_id;
	uint32_t side; /* 0 connecting end, 1 accepting end */
	uint32_t reserved;
	struct xio_seg_params params;
};
enum xio_fallback_reason {
	XIO_FB_NO_LISTENER = 1, /* nobody runs xio at that address */
	XIO_FB_ACL,             /* the monitor's rules refuse the pair */
	XIO_FB_NOT_XIO,         /* accepted a client that does not run xio */
	XIO_FB_RESOURCES,       /* no memory for a segment */
	XIO_FB_UNKNOWN_INTENT,  /* protocol misuse */
	XIO_FB_BAD_SOCKET,      /* not a connected TCP socket, or its namespace unknown */
	XIO_FB_LIMIT,           /* over a limit: err is -EMFILE (this process),
				 * -EDQUOT (its uid) or -ENFILE (the monitor) */
	XIO_FB_UID,             /* accepted a connection whose segment is on
				 * hugepages made for another uid: the client
				 * moves it to TCP (core/leave.c) */
};
struct xio_msg_fallback {
	struct xio_msg_hdr h;
	int32_t reason;
	int32_t err; /* XIO_FB_LIMIT: which limit; else 0 */
};
struct xio_msg_error {
	struct xio_msg_hdr h;
	int32_t err; /* negative errno */
	int32_t reserved;
};
struct xio_msg_status {
	struct xio_msg_hdr h;
	uint32_t procs, listeners, intents, conns;
	uint64_t accel_total, fallback_total, segments_huge, segments_small;
	/* Summed over the live accelerated connections, read from their
	 * segments' counters (what the endpoints wrote there). */
	uint64_t live_tx_bytes, live_tx_msgs, live_doorbells;
};

/*
 * The connection table, for xio stat: CONNS asks for the entries whose id
 * is greater than `after`, in id order; the monitor answers with at most
 * XIO_CONNS_PAGE CONN_INFO messages and one CONNS_END, whose `more` says
 * whether to ask again with after = `last`. Pages keep a reply well inside
 * the socket's buffer however many connections there are.
 *
 * The entries are the live accelerated connections, and the last
 * XIO_CONNS_RECENT_TCP connections the monitor answered FALLBACK (once a
 * connection stays on the kernel's TCP the monitor no longer sees it, so
 * those are a history: age is the time since the decision).
 */
#define XIO_CONNS_PAGE 32u
#define XIO_CONNS_RECENT_TCP 64u

struct xio_msg_conns {
	struct xio_msg_hdr h;
	uint64_t after;
};

/* An endpoint on the wire: family AF_INET or AF_INET6 (0: unknown), port
 * in host order, the address in network order (4 or 16 bytes used). */
struct xio_msg_ep {
	uint8_t family;
	uint8_t pad;
	uint16_t port;
	uint8_t addr[16];
};

enum xio_conn_transport {
	XIO_CONN_SHM = 1,   /* bytes go over the shared-memory segment */
	XIO_CONN_TCP,       /* answered FALLBACK: reason says why */
	XIO_CONN_MOVED,     /* was on shared memory, moved back to TCP: left[] */
};

struct xio_msg_conn_info {
	struct xio_msg_hdr h;
	uint64_t id;
	uint64_t age_ms;
	uint64_t netns;
	struct xio_msg_ep client, server;
	uint32_t pid[2];      /* side 0 the connecting end, 1 the accepting end; 0 unknown */
	char comm[2][16];     /* their program names (/proc/PID/comm), "" unknown */
	uint32_t transport;   /* enum xio_conn_transport */
	int32_t reason;       /* XIO_CONN_TCP: enum xio_fallback_reason */
	uint32_t left[2];     /* XIO_CONN_MOVED: enum xio_leave_reason per side */
	uint32_t flags;       /* XIO_SEG_F_HUGE */
	uint32_t buf_bytes;   /* buffer room of one direction */
	/* Direction d carries side d's bytes to side 1 - d. Read from the
	 * segment's counters, which the endpoints write: informational. */
	uint64_t bytes[2], msgs[2];
	uint64_t queued[2];   /* bytes written and not yet read */
};
_Static_assert(sizeof(struct xio_msg_conn_info) <= XIO_CTL_MAX_MSG, "one packet");

struct xio_msg_conns_end {
	struct xio_msg_hdr h;
	uint32_t count; /* CONN_INFO messages sent before this one */
	uint32_t more;  /* 1: entries with ids above last remain */
	uint64_t last;  /* id of the last entry sent */
};

/* A short name for a fallback reason ("no-listener", "acl", ...; "?"). */
const char *xio_fallback_reason_name(int reason);

/* The exact size of a message of type t, or 0 for an unknown type. */
size_t xio_ctl_msg_size(uint16_t type);

/* Fill a header for a message of type t. */
void xio_ctl_hdr(struct xio_msg_hdr *h, uint16_t type, uint32_t seq);

/*
 * xio_ctl_send - send msg (hdr.len bytes) with optional fd (-1: none).
 * Returns 0 or -errno. Never raises SIGPIPE.
 */
int xio_ctl_send(int sock, const void *msg, int fd, int flags);
/*
 * xio_ctl_send_cred - as xio_ctl_send, with the credentials of the uid this
 * process acts as attached (SCM_CREDENTIALS: pid, effective uid and gid).
 * Without them, the kernel attaches the real uid, and a root daemon that
 * dropped to another uid with seteuid() would be judged as root. The
 * kernel lets a process attach only its own real, effective or saved uid
 * (any, with CAP_SETUID). A process whose effective ids have no mapping in
 * the receiver's user namespace sends without (judged by its real uid).
 */
int xio_ctl_send_cred(int sock, const void *msg, int fd, int flags);

/*
 * xio_ctl_recv - receive one message into buf (XIO_CTL_MAX_MSG bytes) and
 * at most one fd into *fd (-1 if none). Checks the message (see above):
 * returns its length, 0 at end of file, -EBADMSG for a malformed one (any
 * fd that came with it is closed), or -errno.
 *
 * A whole message whose one fd the kernel could not hand over (MSG_CTRUNC:
 * the receiver is at its fd limit) is returned with *fd = XIO_CTL_FD_LOST.
 * That is the receiver's shortage, not the sender's fault: the message is
 * answered as one over a limit (the monitor: XIO_FB_LIMIT with -ENFILE),
 * not refused as malformed. A payload cut short (MSG_TRUNC), or more than
 * one fd (one that came and one dropped too), is still malformed, and the
 * fds that came are closed.
 */
#define XIO_CTL_FD_LOST (-2)
ssize_t xio_ctl_recv(int sock, void *buf, int *fd, int flags);
/* As xio_ctl_recv, and *uid is the uid the sender sent the message as
 * (SCM_CREDENTIALS, delivered when the receiver has set SO_PASSCRED: the
 * effective uid the sender attached with xio_ctl_send_cred, else its real
 * uid, attached by the kernel), or XIO_CTL_NO_CRED if none came or the
 * kernel attached none (pid 0). The monitor judges a process by it: a
 * process that dropped privileges after opening its session is the uid it
 * is now, not the one SO_PEERCRED recorded. */
#define XIO_CTL_NO_CRED UINT32_MAX
ssize_t xio_ctl_recv_cred(int sock, void *buf, int *fd, int flags, uint32_t *uid);
/* How xio_ctl_recv closes the fds of a malformed message: NULL, close at
 * once; the monitor passes them to its closer thread (a close may block). */
extern void (*xio_ctl_close_fd)(int fd);

/* The monitor socket path: $XIO_MONITOR_SOCK or the default. */
const char *xio_ctl_sock_path(void);
/* Remember $XIO_MONITOR_SOCK now (the shim, at load time): programs such
 * as nginx workers and setproctitle users clear or overwrite their
 * environment later. */
void xio__ctl_capture_env(void);

/*
 * xio_ctl_peer_trusted - whether the monitor at the other end of the
 * connected control socket sock may be handed this process's sockets: it
 * runs as root, or as the uid this process wholly is (real, effective and
 * saved uid all the same). Its uid is SO_PEERCRED's: the effective uid it
 * had when it listened, as this process's user namespace sees it (root of
 * another user namespace is that namespace owner's uid here; a uid with no
 * mapping here is the overflow uid, 65534). Returns 1 or 0 (0 also when
 * the credentials cannot be read); *uid (if not NULL) is the monitor's
 * uid, or XIO_CTL_NO_CRED if unknown. docs/design.md, "Which monitor a
 * process trusts".
 */
int xio_ctl_peer_trusted(int sock, uint32_t *uid);

/*
 * The client: one control connection per process, opened on first use
 * and reopened in a forked child. Requests are serialised by a mutex.
 * All return -ENOTCONN when no monitor is reachable (callers then stay on
 * the kernel), or -errno.
 */
int xio__ctl_request(void *msg, int send_fd, void *reply, int *reply_fd);
int xio__ctl_post(void *msg, int send_fd); /* one-way message */
uint64_t xio__ctl_next_intent(void);
/* Ask the monitor for its counts (tests, tools). Returns 0 or -errno. */
int xio__ctl_status(struct xio_msg_status *st);
/* Forget the connection (tests; after fork it happens by itself). */
void xio__ctl_reset(void);
/* The control socket (opened if need be), or -1: exec hands it to the
 * new program image. */
int xio__ctl_sock_fd(void);
/* Take over fd as this process's control socket (after exec). */
void xio__ctl_adopt(int fd);
/* The current control session: it changes with every new connection to a
 * monitor (0: never connected). Registrations made under an older one were
 * lost with that monitor. */
uint32_t xio__ctl_session(void);
/*
 * xio__ctl_listen - register the listening (or bound, about to listen)
 * socket fd with the monitor (LISTEN). Returns 1 with the monitor's id for
 * it in *id and the session that id belongs to in *session; 0 if the
 * monitor refused it (a limit, or not a listener; *id is 0); -ENOTCONN if
 * no monitor answers.
 */
int xio__ctl_listen(int fd, uint64_t *id, uint32_t *session);
/*
 * xio__ctl_keep - this process holds registrations a new monitor must be
 * told again (listeners). Starts, once per process, a thread that notices
 * when the monitor dies, connects to the next one as soon as it answers
 * (every 250 ms while none does), and calls every resume function given
 * (up to 4 different ones: the shim's, the native API's) on each new
 * session. They run in that thread and may make requests.
 */
void xio__ctl_keep(void (*resume)(void));
/* m is taken before the control client's lock (a resume function's list
 * lock): the client's fork handlers take it first and release it last, so
 * that no child inherits it held. Idempotent; up to 4 locks. */
void xio__ctl_fork_guard(pthread_mutex_t *m);

#endif /* XIO_CORE_CTL_H */
