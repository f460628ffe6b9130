/*
 * attack.h - helpers for the attack tests (issue 8): a raw control session
 * that sends what a hostile process would send, running as another uid, and
 * kernel sockets with a chosen 4-tuple. Prefixed a_ to tell them from the
 * shared t_ helpers they build on.
 */
#ifndef XIO_TEST_ATTACK_H
#define XIO_TEST_ATTACK_H

#include <stdint.h>
#include <sys/types.h>

#include "helpers.h"

/* uids with no account, for processes of "other users" (tests run as root). */
#define A_UID_VICTIM 1001
#define A_UID_ATTACKER 1002
#define A_UID_THIRD 1003

/* The test's monitor; a_fini stops it. */
extern struct t_monitor a_mon;
/* t_fork, and the child is remembered: a_fini kills those still running. */
pid_t a_fork(int (*fn)(void *), void *arg);
/* For TestSuite(.fini): whatever the test's outcome, stop a_mon and kill
 * (SIGKILL, by pid) the children a_fork started that were not reaped. */
void a_fini(void);

/* Drop to uid (and gid = uid, no supplementary groups) for good; exits the
 * process with 99 if that fails. */
void a_become(uid_t uid);

/* A control session of our own on $XIO_MONITOR_SOCK, after HELLO: the
 * socket, or -errno. */
int a_ctl_open(void);
/* Send msg (its type set here) with fd (-1: none). Returns 0 or -errno. */
int a_ctl_post(int sock, uint16_t type, void *msg, size_t len, int fd);
/* Send, then wait at most timeout_ms for the reply (XIO_CTL_MAX_MSG bytes
 * into reply, its fd or -1 into *rfd). Returns the reply's type, or
 * -ETIMEDOUT, -errno. */
int a_ctl_call(int sock, uint16_t type, void *msg, size_t len, int fd, void *reply, int *rfd,
	       int timeout_ms);

/* A kernel TCP listener on 127.0.0.1 (port 0: the kernel's choice), and its
 * port. Returns the fd or -errno. */
int a_listen_loopback(uint16_t port, uint16_t *bound);
/* The local port of a socket. */
uint16_t a_local_port(int fd);
/* In this process's network namespace: a connection 127.0.0.1:client_port
 * -> 127.0.0.1:server_port between two kernel sockets (listener closed).
 * Returns 0 with both ends, or -errno. */
int a_kernel_pair(uint16_t server_port, uint16_t client_port, int *client, int *server);

/* Milliseconds a STATUS took to be answered on this process's session; a
 * failed STATUS, or one slower than timeout_ms, fails the test (and a
 * failed one returns ~0u). */
unsigned a_status_ms(int timeout_ms);

/* Write text to a fresh file under /tmp and return its path (a static
 * buffer; the caller unlinks it). */
const char *a_config_file(const char *text);
/* Start a_mon with a config file holding text; stop it and remove the file. */
void a_monitor_with_config(const char *text);
void a_monitor_stop(void);
/* 1 if a line of a_mon's log holds needle. */
int a_monitor_log_has(const char *needle);
/* For t_monitor_pre_exec: CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE leave
 * the bounding set, so that the root monitor may not open its own mappings
 * again (/proc/self/map_files) and keeps an fd per connection. */
void a_no_map_files(void);
/* How many of a_mon's open fds are connection segments (memfds). */
int a_monitor_seg_fds(void);

/* Pass one fd over a UNIX socket (a one-byte message). Returns 0 / the fd,
 * or -errno. */
int a_send_fd(int sock, int fd);
int a_recv_fd(int sock);

/* A new user and network namespace for this (single-threaded) process, as
 * an unprivileged user may make one, with its loopback up. Returns 0 or
 * -errno. */
int a_private_netns(void);
/* Bring up the loopback of this process's network namespace. */
int a_private_netns_lo_up(void);

/* A client that asks first, and a worker of another uid that accepts: a
 * root registrant listens and forks the worker, which becomes worker_uid
 * and accepts two connections. A root client writes `early` bytes on the
 * first, the worker accepting it after the first 256 KiB (or all of them,
 * if fewer): more than a ring holds makes the client wait for room when the
 * worker accepts. Then 4 KiB on the second; the worker checks
 * and echoes them, and the client checks the echo. rep[i] is '1' if the
 * worker's end of connection i was accelerated, '0' if not ('?': no
 * answer). Returns 1 if every process ended well (every byte right). */
int a_late_acceptor(uid_t worker_uid, size_t early, char rep[2]);

#endif

/* An xio server in a child of uid (0: stay root) on 127.0.0.1:port (0: the
 * kernel's choice): accepts n connections, one at a time (after a byte on
 * go_fd, if it is not -1), answers one byte with one byte, and writes
 * '1' (accelerated) or '0' for each to report_fd. Returns its pid; *port
 * is where it listens. */
struct a_server {
	uid_t uid;
	uint16_t port;
	int any;          /* listen on 0.0.0.0, not 127.0.0.1 */
	int n;
	int go_fd, report_fd;
	int port_pipe[2]; /* internal */
};
pid_t a_server_start(struct a_server *s, uint16_t *port);

/* A process of uid that registers a listener with the monitor over a raw
 * session: [::]:port with IPV6_V6ONLY, kept (v6only), or 127.0.0.1:0,
 * closed at once without UNLISTEN (a registration outliving its socket).
 * Stays until a byte on done; returns its pid and the registered port. */
struct a_reg {
	uid_t uid;
	int v6only;
	uint16_t port;
	int done[2];      /* the test writes a byte to [1] when over */
	int port_pipe[2]; /* internal */
};
pid_t a_register(struct a_reg *r, uint16_t *port);

/* Exit statuses of a_client's child. */
#define A_CLIENT_TCP 10   /* the exchange worked over kernel TCP */
#define A_CLIENT_ACCEL 11 /* ... over shared memory */
/* A child of uid (0: root) that xio_connect()s to 127.0.0.1:port, sends a
 * byte and waits (bounded) for one back. Returns its pid. */
pid_t a_client(uid_t uid, uint16_t port);
