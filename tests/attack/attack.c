/*
 * attack.c - see attack.h.
 */
#include "attack.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct t_monitor a_mon;
static pid_t children[64];
static unsigned nchildren;

pid_t a_fork(int (*fn)(void *), void *arg)
{
	pid_t pid = t_fork(fn, arg);
	if (nchildren < sizeof(children) / sizeof(children[0]))
		children[nchildren++] = pid;
	return pid;
}

void a_fini(void)
{
	for (unsigned i = 0; i < nchildren; i++) {
		/* Only a child not reaped yet is still ours to kill. */
		if (waitpid(children[i], NULL, WNOHANG) == 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
		}
	}
	nchildren = 0;
	if (a_mon.pid > 0)
		t_monitor_stop(&a_mon);
	t_monitor_pre_exec = NULL;
}

void a_become(uid_t uid)
{
	if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0) {
		fprintf(stderr, "cannot become uid %u: %s\n", (unsigned)uid, strerror(errno));
		_exit(99);
	}
}

int a_ctl_post(int sock, uint16_t type, void *msg, size_t len, int fd)
{
	static uint32_t seq;
	struct xio_msg_hdr *h = msg;
	(void)len;
	xio_ctl_hdr(h, type, ++seq);
	return xio_ctl_send(sock, msg, fd, 0);
}

int a_ctl_call(int sock, uint16_t type, void *msg, size_t len, int fd, void *reply, int *rfd,
	       int timeout_ms)
{
	int r = a_ctl_post(sock, type, msg, len, fd);
	if (r < 0)
		return r;
	struct pollfd p = { .fd = sock, .events = POLLIN };
	r = poll(&p, 1, timeout_ms);
	if (r == 0)
		return -ETIMEDOUT;
	if (r < 0)
		return -errno;
	int got = -1;
	ssize_t n = xio_ctl_recv(sock, reply, &got, 0);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : (int)n;
	if (rfd)
		*rfd = got;
	else if (got >= 0)
		close(got);
	return ((struct xio_msg_hdr *)reply)->type;
}

int a_ctl_open(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = getenv("XIO_MONITOR_SOCK");
	if (!path || strlen(path) >= sizeof(sa.sun_path))
		return -EINVAL;
	strcpy(sa.sun_path, path);
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(s);
		return -e;
	}
	struct xio_msg_hello h;
	char reply[XIO_CTL_MAX_MSG];
	memset(&h, 0, sizeof(h));
	h.pid = (uint32_t)getpid();
	int r = a_ctl_call(s, XIO_MSG_HELLO, &h, sizeof(h), -1, reply, NULL, 5000);
	if (r != XIO_MSG_OK) {
		close(s);
		return r < 0 ? r : -EPROTO;
	}
	return s;
}

int a_listen_loopback(uint16_t port, uint16_t *bound)
{
	struct sockaddr_in a = t_loopback(port);
	int one = 1, s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 64) < 0) {
		int e = errno;
		close(s);
		return -e;
	}
	if (bound)
		*bound = a_local_port(s);
	return s;
}

uint16_t a_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
		return 0;
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int a_kernel_pair(uint16_t server_port, uint16_t client_port, int *client, int *server)
{
	int one = 1, l = a_listen_loopback(server_port, &server_port);
	if (l < 0)
		return l;
	struct sockaddr_in ca = t_loopback(client_port), sa = t_loopback(server_port);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r = 0;
	setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (c < 0 || bind(c, (struct sockaddr *)&ca, sizeof(ca)) < 0 ||
	    connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
	} else {
		*server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (*server < 0)
			r = -errno;
	}
	close(l);
	if (r < 0) {
		if (c >= 0)
			close(c);
		return r;
	}
	*client = c;
	return 0;
}

unsigned a_status_ms(int timeout_ms)
{
	struct xio_msg_status st;
	uint64_t t0 = t_now_ms();
	int r = xio__ctl_status(&st);
	uint64_t dt = t_now_ms() - t0;
	cr_expect_eq(r, 0, "STATUS failed after %llu ms: %s", (unsigned long long)dt,
		     strerror(-r));
	cr_expect_leq(dt, (uint64_t)timeout_ms, "STATUS took %llu ms (limit %d)",
		      (unsigned long long)dt, timeout_ms);
	return r == 0 ? (unsigned)dt : ~0u;
}

const char *a_config_file(const char *text)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/xio-attack-conf-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
	size_t n = strlen(text);
	cr_assert_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
	return path;
}

int a_send_fd(int sock, int fd)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	char byte = 'f';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			    .msg_controllen = sizeof(u.b) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, 0) == 1 ? 0 : -errno;
}

int a_recv_fd(int sock)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
			    .msg_controllen = sizeof(u.b) };
	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1)
		return -EIO;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -EIO;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

int a_private_netns(void)
{
	if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
		return -errno;
	return a_private_netns_lo_up();
}

int a_private_netns_lo_up(void)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int r = 0;
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		r = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (r == 0 && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		r = -errno;
	if (s >= 0)
		close(s);
	return r;
}

static int server_main(void *arg)
{
	struct a_server *s = arg;
	xio_listener *l;
	if (s->uid)
		a_become(s->uid);
	struct sockaddr_in a = t_loopback(s->port);
	if (s->any)
		a.sin_addr.s_addr = htonl(INADDR_ANY);
	int r = xio_listen(&l, (struct sockaddr *)&a, sizeof(a), 64, 0);
	T_CHECK(r == 0, "xio_listen: %s", strerror(-r));
	uint16_t port = t_listener_port(l);
	T_CHECK(write(s->port_pipe[1], &port, sizeof(port)) == sizeof(port), "port");
	for (int i = 0; i < s->n; i++) {
		xio_conn *c;
		char b;
		if (s->go_fd >= 0)
			T_CHECK(t_await(s->go_fd, 10000), "no go");
		T_CHECK((r = t_accept(l, &c, 0, 10000)) == 0, "accept: %s", strerror(-r));
		T_CHECK(t_read_full(c, &b, 1) == 1, "read");
		T_CHECK(xio_write(c, &b, 1) == 1, "write");
		char rep = xio_conn_is_accelerated(c) ? '1' : '0';
		T_CHECK(write(s->report_fd, &rep, 1) == 1, "report");
		xio_close(c);
	}
	xio_listener_close(l);
	return 0;
}

pid_t a_server_start(struct a_server *s, uint16_t *port)
{
	cr_assert_eq(pipe(s->port_pipe), 0);
	pid_t pid = a_fork(server_main, s);
	close(s->port_pipe[1]);
	struct pollfd p = { .fd = s->port_pipe[0], .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 5000), 1, "the server did not start");
	cr_assert_eq(read(s->port_pipe[0], port, sizeof(*port)), (ssize_t)sizeof(*port),
		     "the server did not start");
	close(s->port_pipe[0]);
	return pid;
}

static int client_main(void *arg)
{
	uid_t uid = (uid_t)(uintptr_t)arg >> 16;
	uint16_t port = (uint16_t)(uintptr_t)arg;
	xio_conn *c;
	char b = 'x';
	if (uid)
		a_become(uid);
	alarm(10);
	struct sockaddr_in a = t_loopback(port);
	int r = xio_connect(&c, (struct sockaddr *)&a, sizeof(a), 0);
	T_CHECK(r == 0, "xio_connect: %s", strerror(-r));
	T_CHECK(xio_write(c, &b, 1) == 1, "write");
	T_CHECK(t_read_full(c, &b, 1) == 1, "no answer");
	int accel = xio_conn_is_accelerated(c);
	xio_close(c);
	return accel ? A_CLIENT_ACCEL : A_CLIENT_TCP;
}

pid_t a_client(uid_t uid, uint16_t port)
{
	return a_fork(client_main, (void *)(((uintptr_t)uid << 16) | port));
}

static int registrar(void *arg)
{
	struct a_reg *r = arg;
	a_become(r->uid);
	int ctl = a_ctl_open();
	T_CHECK(ctl >= 0, "control session: %s", strerror(-ctl));
	int s;
	uint16_t port;
	if (r->v6only) {
		int one = 1;
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT,
					  .sin6_port = htons(r->port) };
		s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		T_CHECK(setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0, "v6only");
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		T_CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0, "bind [::]: %s",
			strerror(errno));
		T_CHECK(listen(s, 16) == 0, "listen");
		port = a_local_port(s);
	} else {
		s = a_listen_loopback(r->port, &port);
		T_CHECK(s >= 0, "listen: %s", strerror(-s));
	}
	struct xio_msg_id m;
	char reply[XIO_CTL_MAX_MSG];
	memset(&m, 0, sizeof(m));
	int type = a_ctl_call(ctl, XIO_MSG_LISTEN, &m, sizeof(m), s, reply, NULL, 5000);
	T_CHECK(type == XIO_MSG_OK, "LISTEN answered %d", type);
	if (!r->v6only)
		close(s); /* no UNLISTEN: the registration outlives the socket */
	T_CHECK(write(r->port_pipe[1], &port, sizeof(port)) == sizeof(port), "port");
	t_await(r->done[0], 30000);
	return 0;
}

pid_t a_register(struct a_reg *r, uint16_t *port)
{
	cr_assert_eq(pipe(r->port_pipe), 0);
	cr_assert_eq(pipe(r->done), 0);
	pid_t pid = a_fork(registrar, r);
	struct pollfd p = { .fd = r->port_pipe[0], .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 5000), 1, "no registration");
	cr_assert_eq(read(r->port_pipe[0], port, sizeof(*port)), (ssize_t)sizeof(*port));
	return pid;
}

static const char *a_conf;

void a_monitor_with_config(const char *text)
{
	a_conf = a_config_file(text);
	t_monitor_start(&a_mon, "--config", a_conf, NULL);
}

void a_monitor_stop(void)
{
	t_monitor_stop(&a_mon);
	if (a_conf)
		unlink(a_conf);
	a_conf = NULL;
}

int a_monitor_log_has(const char *needle)
{
	FILE *f = fopen(a_mon.log, "r");
	char line[512];
	int found = 0;
	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return found;
}

#ifndef CAP_CHECKPOINT_RESTORE
#define CAP_CHECKPOINT_RESTORE 40
#endif

void a_no_map_files(void)
{
	prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0);
	prctl(PR_CAPBSET_DROP, CAP_CHECKPOINT_RESTORE, 0, 0, 0);
}

int a_monitor_seg_fds(void)
{
	char path[64], link[256];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)a_mon.pid);
	DIR *d = opendir(path);
	for (struct dirent *e; d && (e = readdir(d));) {
		char p[64 + sizeof(e->d_name)];
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		ssize_t l = readlink(p, link, sizeof(link) - 1);
		if (l > 0) {
			link[l] = 0;
			n += strncmp(link, "/memfd:xio-seg", 14) == 0;
		}
	}
	if (d)
		closedir(d);
	return n;
}

/* --- a client-first connection accepted by a worker of another uid --- */

struct worker_scene {
	uid_t worker_uid;
	size_t early; /* bytes of the first connection */
	int port_pipe[2];
	int written[2]; /* client -> worker: the first connection wrote */
	int report[2];  /* worker -> test: '0'/'1' accelerated, per connection */
};

/* The worker: forked by the registrant, then of another uid; echoes what
 * it reads, checked. */
static int echo_checked(xio_conn *c, size_t len, uint64_t seed)
{
	char *b = malloc(len);
	T_CHECK(b, "malloc");
	ssize_t r = t_read_full(c, b, len);
	T_CHECK(r == (ssize_t)len, "worker read %zd of %zu: %s", r, len, r < 0 ? strerror((int)-r) : "");
	T_CHECK(t_pattern_check(b, len, seed, 0), "worker: the bytes differ");
	for (size_t off = 0; off < len;) {
		ssize_t w = xio_write(c, b + off, len - off);
		T_CHECK(w > 0, "worker write: %s", strerror((int)-w));
		off += (size_t)w;
	}
	free(b);
	return 0;
}

struct registrant_arg {
	struct worker_scene s;
	xio_listener *l;
};

static int worker_main(void *arg)
{
	struct registrant_arg *ra = arg;
	struct worker_scene *s = &ra->s;
	xio_listener *l = ra->l;
	a_become(s->worker_uid);
	for (int i = 0; i < 2; i++) {
		xio_conn *c;
		if (i == 0)
			T_CHECK(t_await(s->written[0], 10000), "the client did not write");
		int r = t_accept(l, &c, 0, 10000);
		T_CHECK(r == 0, "accept: %s", strerror(-r));
		char rep = xio_conn_is_accelerated(c) ? '1' : '0';
		if (echo_checked(c, i == 0 ? s->early : 4096, 7 + (uint64_t)i))
			return 1;
		T_CHECK(write(s->report[1], &rep, 1) == 1, "report");
		xio_close(c);
	}
	return 0;
}

static int registrant_main(void *arg)
{
	struct registrant_arg *ra = arg;
	/* Root, as an nginx master, like the client. */
	struct sockaddr_in a = t_loopback(0);
	T_CHECK(xio_listen(&ra->l, (struct sockaddr *)&a, sizeof(a), 4, 0) == 0, "listen");
	uint16_t port = t_listener_port(ra->l);
	pid_t w = t_fork(worker_main, ra);
	T_CHECK(write(ra->s.port_pipe[1], &port, sizeof(port)) == sizeof(port), "port");
	T_CHECK(t_wait(w, 30000) == 0, "the worker failed");
	return 0;
}

static int early_client_main(void *arg)
{
	struct registrant_arg *ra = arg;
	uint16_t port;
	T_CHECK(read(ra->s.port_pipe[0], &port, sizeof(port)) == sizeof(port), "port");
	for (int i = 0; i < 2; i++) {
		size_t len = i == 0 ? ra->s.early : 4096;
		int posted = 0;
		char *b = malloc(len), *back = malloc(len);
		xio_conn *c;
		struct sockaddr_in a = t_loopback(port);
		T_CHECK(b && back && xio_connect(&c, (struct sockaddr *)&a, sizeof(a), 0) == 0,
			"connect");
		/* All of it before the worker accepts: it is in the segment. */
		t_pattern_fill(b, len, 7 + (uint64_t)i, 0);
		for (size_t off = 0; off < len;) {
			size_t n = len - off < (64u << 10) ? len - off : (64u << 10);
			ssize_t w = xio_write(c, b + off, n);
			T_CHECK(w > 0, "client write: %s", strerror((int)-w));
			off += (size_t)w;
			/* More than the ring holds: the worker accepts while
			 * this write waits for room. */
			if (i == 0 && (off >= (256u << 10) || off == len) && !posted) {
				t_post(ra->s.written[1]);
				posted = 1;
			}
		}
		ssize_t r = t_read_full(c, back, len);
		T_CHECK(r == (ssize_t)len, "client read %zd of %zu", r, len);
		T_CHECK(memcmp(b, back, len) == 0, "client: the echo differs");
		xio_close(c);
		free(b);
		free(back);
	}
	return 0;
}

int a_late_acceptor(uid_t worker_uid, size_t early, char rep[2])
{
	struct registrant_arg ra;
	ra.s.worker_uid = worker_uid;
	ra.s.early = early;
	cr_assert_eq(pipe(ra.s.port_pipe), 0);
	cr_assert_eq(pipe(ra.s.written), 0);
	cr_assert_eq(pipe(ra.s.report), 0);
	pid_t reg = a_fork(registrant_main, &ra);
	pid_t cli = a_fork(early_client_main, &ra);
	rep[0] = rep[1] = '?';
	for (int i = 0; i < 2; i++) {
		struct pollfd p = { .fd = ra.s.report[0], .events = POLLIN };
		if (poll(&p, 1, 20000) != 1 || read(ra.s.report[0], &rep[i], 1) != 1)
			break;
	}
	int cst = t_wait(cli, 20000), rst = t_wait(reg, 20000);
	for (int i = 0; i < 2; i++) {
		close(ra.s.port_pipe[i]);
		close(ra.s.written[i]);
		close(ra.s.report[i]);
	}
	return cst == 0 && rst == 0;
}
