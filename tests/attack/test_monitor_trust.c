/*
 * test_monitor_trust.c - issue 15, item 3: a process hands its sockets only
 * to a monitor run by root or by its own uid. Before, another user who
 * answered first on the socket a victim would use (a directory planted at
 * /tmp/xio-UID, or any path in XIO_MONITOR_SOCK) got a copy of every socket
 * the victim's programs made, and could read and inject into them.
 *
 * The attacker here is a fake monitor of another uid: it answers HELLO and
 * LISTEN, answers every connection FALLBACK (so that the victim still
 * works), and counts the messages and the fds it was handed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attack.h"

TestSuite(monitor_trust, .fini = a_fini);

#define EXIT_NO_USERNS 77
#define XIO_RUN_FAILED_STATUS 125 /* xio run's own failure (tools/xio/xio_tool.h) */

union raw_msg {
	struct xio_msg_hdr h;
	char raw[XIO_CTL_MAX_MSG];
};

struct fake_report {
	unsigned sessions; /* control connections accepted */
	unsigned messages; /* messages received on them */
	unsigned fds;      /* fds that came with them: the victim's sockets */
};

struct fake_mon {
	uid_t uid;          /* the attacker */
	int userns_root;    /* ... as root of a user namespace of its own */
	char dir[96];       /* made by the attacker; the socket is dir/monitor.sock */
	char sock[128];
	int ready[2];       /* fake -> test: listening (or EXIT_NO_USERNS) */
	int done[2];        /* test -> fake: stop and report */
	int report[2];      /* fake -> test: struct fake_report */
};

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Root of a new user namespace whose uid 0 is uid outside. */
static int become_userns_root(uid_t uid)
{
	char map[64];
	if (unshare(CLONE_NEWUSER) < 0)
		return -1;
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)uid);
	if (write_file("/proc/self/setgroups", "deny") < 0 ||
	    write_file("/proc/self/uid_map", map) < 0 || write_file("/proc/self/gid_map", map) < 0)
		return -1;
	return getuid() == 0 ? 0 : -1;
}

/* What a monitor would answer, so that the victim goes on over TCP. */
static void fake_answer(int s, const union raw_msg *in)
{
	union {
		struct xio_msg_hdr h;
		struct xio_msg_id id;
		struct xio_msg_fallback fb;
		struct xio_msg_status st;
		struct xio_msg_conns_end end;
	} out;
	uint16_t type;
	memset(&out, 0, sizeof(out));
	switch (in->h.type) {
	case XIO_MSG_HELLO:
	case XIO_MSG_LISTEN:
		type = XIO_MSG_OK;
		out.id.id = 42;
		break;
	case XIO_MSG_CONNECTED:
	case XIO_MSG_ACCEPT:
	case XIO_MSG_REATTACH:
		type = XIO_MSG_FALLBACK;
		out.fb.reason = XIO_FB_NO_LISTENER;
		break;
	case XIO_MSG_STATUS:
		type = XIO_MSG_STATUS_REPLY;
		break;
	case XIO_MSG_CONNS:
		type = XIO_MSG_CONNS_END;
		break;
	default:
		return; /* INTENT, UNLISTEN, CLOSE: no reply */
	}
	xio_ctl_hdr(&out.h, type, in->h.seq);
	xio_ctl_send(s, &out, -1, MSG_DONTWAIT);
}

static int fake_main(void *arg)
{
	struct fake_mon *f = arg;
	struct fake_report rep = { 0 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pollfd p[34];
	unsigned n = 2;

	a_become(f->uid);
	/* Changing uid made it undumpable: its /proc files are root's, and
	 * it could not write its own uid_map. */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	if (f->userns_root && become_userns_root(f->uid) < 0) {
		char no = 0;
		T_CHECK(write(f->ready[1], &no, 1) == 1, "ready");
		return EXIT_NO_USERNS;
	}
	T_CHECK(mkdir(f->dir, 0755) == 0, "mkdir %s: %s", f->dir, strerror(errno));
	strcpy(sa.sun_path, f->sock);
	int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	T_CHECK(l >= 0 && bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind: %s",
		strerror(errno));
	chmod(f->sock, 0666);
	T_CHECK(listen(l, 16) == 0, "listen");
	t_post(f->ready[1]);
	p[0] = (struct pollfd){ .fd = l, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = f->done[0], .events = POLLIN };
	alarm(60);
	/* Each round takes every waiting connection and message, then looks
	 * whether to stop: what the victim sent before it finished is
	 * counted. */
	for (int stop = 0; !stop;) {
		T_CHECK(poll(p, n, 30000) > 0, "nobody told the fake monitor to stop");
		stop = p[1].revents != 0;
		int s;
		while (n < sizeof(p) / sizeof(p[0]) && (s = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
			rep.sessions++;
			p[n++] = (struct pollfd){ .fd = s, .events = POLLIN };
		}
		for (unsigned i = 2; i < n;) {
			union raw_msg in;
			int fd = -1;
			ssize_t r = xio_ctl_recv(p[i].fd, &in, &fd, MSG_DONTWAIT);
			if (r == -EAGAIN) {
				i++;
				continue;
			}
			if (r <= 0) {
				close(p[i].fd);
				p[i] = p[--n];
				continue;
			}
			rep.messages++;
			if (fd >= 0) {
				rep.fds++;
				close(fd);
			}
			fake_answer(p[i].fd, &in);
		}
	}
	T_CHECK(write(f->report[1], &rep, sizeof(rep)) == sizeof(rep), "report");
	return 0;
}

/* Start the attacker's monitor in a fresh directory of its own under
 * parent. Returns its pid, or 0 if it could not make a user namespace. */
static pid_t fake_start(struct fake_mon *f, uid_t uid, int userns_root, const char *dir)
{
	memset(f, 0, sizeof(*f));
	f->uid = uid;
	f->userns_root = userns_root;
	snprintf(f->dir, sizeof(f->dir), "%s", dir);
	snprintf(f->sock, sizeof(f->sock), "%s/monitor.sock", dir);
	cr_assert_eq(pipe(f->ready), 0);
	cr_assert_eq(pipe(f->done), 0);
	cr_assert_eq(pipe(f->report), 0);
	pid_t pid = a_fork(fake_main, f);
	char b = 0;
	struct pollfd p = { .fd = f->ready[0], .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 5000), 1, "the fake monitor did not start");
	cr_assert_eq(read(f->ready[0], &b, 1), 1, "the fake monitor did not start");
	if (!b) {
		t_wait(pid, 5000);
		return 0;
	}
	return pid;
}

/* Stop it and read what it got. */
static struct fake_report fake_stop(struct fake_mon *f, pid_t pid)
{
	struct fake_report rep;
	t_post(f->done[1]);
	struct pollfd p = { .fd = f->report[0], .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 5000), 1, "the fake monitor did not report");
	cr_assert_eq(read(f->report[0], &rep, sizeof(rep)), (ssize_t)sizeof(rep));
	cr_assert_eq(t_wait(pid, 5000), 0, "the fake monitor failed");
	unlink(f->sock);
	rmdir(f->dir);
	for (int i = 0; i < 2; i++) {
		close(f->ready[i]);
		close(f->done[i]);
		close(f->report[i]);
	}
	return rep;
}

static const char *fresh_dir(void)
{
	static char dir[96];
	static unsigned n;
	snprintf(dir, sizeof(dir), "/tmp/xio-trust-%d-%u", (int)getpid(), n++);
	return dir;
}

/* A server and a client of uid `victim` (0: root), both with the native
 * API, pointed at the fake monitor: their connection must work. Returns
 * what the fake got. */
static struct fake_report victim_pair(uid_t victim, uid_t attacker, int userns_root,
				      char *accel)
{
	struct fake_mon f;
	int rep[2];
	uint16_t port;
	pid_t fake = fake_start(&f, attacker, userns_root, fresh_dir());
	if (!fake)
		cr_skip_test("unprivileged user namespaces are not allowed here");
	setenv("XIO_MONITOR_SOCK", f.sock, 1);
	cr_assert_eq(pipe(rep), 0);
	struct a_server s = { .uid = victim, .n = 1, .go_fd = -1, .report_fd = rep[1] };
	pid_t srv = a_server_start(&s, &port);
	int cst = t_wait(a_client(victim, port), 15000);
	*accel = '?';
	struct pollfd p = { .fd = rep[0], .events = POLLIN };
	if (poll(&p, 1, 10000) != 1 || read(rep[0], accel, 1) != 1)
		*accel = '?';
	cr_expect_eq(cst, A_CLIENT_TCP, "the victim's client: exit %d (%d: it worked over TCP)", cst,
		     A_CLIENT_TCP);
	cr_expect_eq(t_wait(srv, 10000), 0, "the victim's server failed");
	close(rep[0]);
	close(rep[1]);
	return fake_stop(&f, fake);
}

/* A monitor of another uid gets nothing from the victim, not even a HELLO,
 * and the victim's connection works over TCP. Before, it was handed the
 * victim's listening, connecting and accepted sockets. */
Test(monitor_trust, monitor_of_another_uid_gets_nothing)
{
	char accel;
	struct fake_report r = victim_pair(A_UID_VICTIM, A_UID_ATTACKER, 0, &accel);
	cr_expect_eq(accel, '0', "the victim's server says accelerated '%c'", accel);
	cr_expect_eq(r.fds, 0, "the monitor of uid %u was handed %u of the victim's sockets",
		     A_UID_ATTACKER, r.fds);
	cr_expect_eq(r.messages, 0, "the monitor of uid %u got %u messages from the victim",
		     A_UID_ATTACKER, r.messages);
}

/* Root of another user's namespace is not root: a monitor run there is of
 * that user's uid as the victim sees it (SO_PEERCRED translates it), and
 * gets nothing. */
Test(monitor_trust, root_of_a_user_namespace_gets_nothing)
{
	char accel;
	struct fake_report r = victim_pair(A_UID_VICTIM, A_UID_ATTACKER, 1, &accel);
	cr_expect_eq(accel, '0', "the victim's server says accelerated '%c'", accel);
	cr_expect_eq(r.fds, 0, "the namespace's root was handed %u of the victim's sockets", r.fds);
	cr_expect_eq(r.messages, 0, "the namespace's root got %u messages", r.messages);
}

/* A root process never hands its sockets to a user's monitor. */
Test(monitor_trust, root_process_ignores_a_user_monitor)
{
	char accel;
	struct fake_report r = victim_pair(0, A_UID_ATTACKER, 0, &accel);
	cr_expect_eq(r.fds, 0, "the monitor of uid %u was handed %u of root's sockets",
		     A_UID_ATTACKER, r.fds);
	cr_expect_eq(r.messages, 0, "the monitor of uid %u got %u messages from root",
		     A_UID_ATTACKER, r.messages);
}

/* The check refuses only others: a monitor of the process's own uid (what
 * xio run starts for a user) is used. */
Test(monitor_trust, monitor_of_own_uid_is_used)
{
	char accel;
	struct fake_report r = victim_pair(A_UID_VICTIM, A_UID_VICTIM, 0, &accel);
	cr_expect_geq(r.fds, 1, "the user's own monitor was handed no socket (%u messages)",
		      r.messages);
}

/* --- xio run ------------------------------------------------------------ */

struct run_result {
	int status;              /* xio run's exit status, or -1 */
	char err[512];           /* its stderr */
	struct fake_report fake; /* what the attacker's monitor got */
};

/* Run `xio run -- true` as uid with no XDG_RUNTIME_DIR, XIO_MONITOR_SOCK
 * set to sock (NULL: unset); its stderr into r->err. Bounded: 10 s. */
static int xio_run_as(uid_t uid, const char *sock, struct run_result *r)
{
	int errp[2];
	if (pipe(errp) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		a_become(uid);
		dup2(errp[1], 2);
		unsetenv("XDG_RUNTIME_DIR");
		if (sock)
			setenv("XIO_MONITOR_SOCK", sock, 1);
		else
			unsetenv("XIO_MONITOR_SOCK");
		alarm(10);
		execl(XIO_CMD_BIN, "xio", "run", "--", "true", (char *)NULL);
		_exit(127);
	}
	close(errp[1]);
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(r->err) - 1 && (n = read(errp[0], r->err + len, sizeof(r->err) - 1 - len)) > 0)
		len += (size_t)n;
	r->err[len] = 0;
	close(errp[0]);
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

/* An empty /tmp in this mount namespace; a build tree under /tmp (where
 * the xio command, the shim and the monitor are) stays reachable, bound
 * back from the /tmp that was. Returns 0 or -1 with errno. */
static int keep_build_then_empty_tmp(void)
{
	char top[256];
	const char *bin = XIO_CMD_BIN;
	int under_tmp = strncmp(bin, "/tmp/", 5) == 0;
	if (under_tmp) {
		const char *end = strchr(bin + 5, '/');
		snprintf(top, sizeof(top), "%.*s", end ? (int)(end - bin) : (int)strlen(bin), bin);
		if (mount("/tmp", "/mnt", NULL, MS_BIND, NULL) < 0)
			return -1;
	}
	if (mount("tmpfs", "/tmp", "tmpfs", 0, "mode=1777") < 0)
		return -1;
	if (under_tmp) {
		char old[300];
		snprintf(old, sizeof(old), "/mnt%s", top + 4);
		if (mkdir(top, 0755) < 0 || mount(old, top, NULL, MS_BIND, NULL) < 0)
			return -1;
	}
	return 0;
}

struct planted {
	int out[2]; /* scene -> test: struct run_result */
};

/* In a mount namespace of its own, with an empty /tmp and no system
 * monitor (nothing at /run/xio): the attacker makes /tmp/xio-VICTIM first
 * and answers there; then the victim runs `xio run`. */
static int planted_scene(void *arg)
{
	struct planted *pl = arg;
	struct run_result r = { .status = -1 };
	struct fake_mon f;
	char dir[64];
	T_CHECK(unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS): %s", strerror(errno));
	T_CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "private mounts");
	T_CHECK(keep_build_then_empty_tmp() == 0, "an empty /tmp: %s", strerror(errno));
	if (access("/run/xio", F_OK) == 0)
		T_CHECK(mount("tmpfs", "/run/xio", "tmpfs", 0, "mode=755") == 0, "tmpfs on /run/xio");
	snprintf(dir, sizeof(dir), "/tmp/xio-%u", (unsigned)A_UID_VICTIM);
	/* Criterion's asserts cannot run here: the fake is started by hand. */
	memset(&f, 0, sizeof(f));
	f.uid = A_UID_ATTACKER;
	snprintf(f.dir, sizeof(f.dir), "%s", dir);
	snprintf(f.sock, sizeof(f.sock), "%s/monitor.sock", dir);
	T_CHECK(pipe(f.ready) == 0 && pipe(f.done) == 0 && pipe(f.report) == 0, "pipes");
	pid_t fake = fork();
	T_CHECK(fake >= 0, "fork");
	if (fake == 0)
		_exit(fake_main(&f));
	T_CHECK(t_await(f.ready[0], 5000), "the fake monitor did not start");
	T_CHECK(xio_run_as(A_UID_VICTIM, NULL, &r) == 0, "xio run did not finish");
	t_post(f.done[1]);
	struct pollfd rp = { .fd = f.report[0], .events = POLLIN };
	T_CHECK(poll(&rp, 1, 5000) == 1, "the fake monitor did not report");
	T_CHECK(read(f.report[0], &r.fake, sizeof(r.fake)) == sizeof(r.fake), "report");
	waitpid(fake, NULL, 0);
	T_CHECK(write(pl->out[1], &r, sizeof(r)) == sizeof(r), "result");
	return 0;
}

/* The case: no XDG_RUNTIME_DIR and no system monitor, so xio run
 * of the victim picks /tmp/xio-VICTIM, which the attacker made first and
 * answers in. xio run must refuse (125, naming the directory) without
 * connecting there. Before, it used the attacker's monitor and handed it
 * to the program. */
Test(monitor_trust, xio_run_refuses_a_planted_directory)
{
	struct planted pl;
	struct run_result r;
	cr_assert_eq(pipe(pl.out), 0);
	pid_t scene = a_fork(planted_scene, &pl);
	cr_assert_eq(t_wait(scene, 30000), 0, "the scene failed");
	cr_assert_eq(read(pl.out[0], &r, sizeof(r)), (ssize_t)sizeof(r));
	cr_expect_eq(r.status, XIO_RUN_FAILED_STATUS, "xio run exited %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, "/tmp/xio-1001") != NULL, "xio run did not name the directory: %s",
		  r.err);
	cr_expect_eq(r.fake.sessions, 0,
		     "xio run connected %u time(s) to the monitor uid %u planted (%u messages)",
		     r.fake.sessions, A_UID_ATTACKER, r.fake.messages);
}

/* XIO_MONITOR_SOCK named by the user, and a monitor of another uid
 * answers there: xio run refuses it (125) and sends it nothing. Before, it
 * said HELLO and ran the program with it. */
Test(monitor_trust, xio_run_refuses_a_monitor_of_another_uid)
{
	struct fake_mon f;
	struct run_result r = { .status = -1 };
	pid_t fake = fake_start(&f, A_UID_ATTACKER, 0, fresh_dir());
	cr_assert(fake > 0);
	cr_assert_eq(xio_run_as(A_UID_VICTIM, f.sock, &r), 0);
	r.fake = fake_stop(&f, fake);
	cr_expect_eq(r.status, XIO_RUN_FAILED_STATUS, "xio run exited %d: %s", r.status, r.err);
	cr_expect(strstr(r.err, "uid 1002") != NULL, "xio run did not say whose monitor it is: %s",
		  r.err);
	cr_expect_eq(r.fake.messages, 0, "xio run sent %u message(s) to the monitor of uid %u",
		     r.fake.messages, A_UID_ATTACKER);
}
