/*
 * w_exec.c - accelerated connections across exec.
 *
 * File descriptors survive exec, the shim's memory does not. Before exec,
 * for every accelerated socket that stays open (no FD_CLOEXEC), the shim
 * writes the connection's private state (conn.c, "image") into a memfd
 * that stays open, keeps its control socket open too, and passes both fd
 * numbers in XIO_INHERIT. The new program's shim (if it is preloaded as
 * well) reads them at start-up, asks the monitor for each segment again
 * with REATTACH (the monitor checks the socket and that this is the same
 * process), restores the state and carries on. If exec fails, everything
 * is put back. A program started without the shim cannot read the channel:
 * docs/compatibility.md.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shim.h"
#include "xio/ctl.h"
#include "xio/sys.h"

#define EXPORT __attribute__((visibility("default")))
#define INHERIT_MAGIC 0x58494f48u /* "XIOH" */
#define ENV_NAME "XIO_INHERIT"

struct inherit_hdr {
	uint32_t magic, count;
};
struct inherit_ent {
	int32_t fd;
	int32_t alias; /* >= 0: the same connection as that fd's entry */
	uint32_t len;  /* bytes of image that follow (0 for an alias) */
	uint32_t pad;
};

struct collect {
	int memfd;
	uint32_t count;
	int fds[256];
	struct psock *ps[256];
};

static void save_one(int fd, struct psock *ps, void *arg)
{
	struct collect *co = arg;
	if (atomic_load(&ps->kind) != PS_CONN || co->count >= 256)
		return;
	int fl = xio_sys_fcntl(fd, F_GETFD, 0);
	if (fl < 0 || (fl & FD_CLOEXEC))
		return;
	struct inherit_ent e = { .fd = fd, .alias = -1 };
	for (uint32_t i = 0; i < co->count; i++)
		if (co->ps[i] == ps)
			e.alias = co->fds[i];
	void *img = NULL;
	if (e.alias < 0) {
		size_t len = xio__conn_image_size(ps->conn);
		img = malloc(len);
		if (!img || xio__conn_image_save(ps->conn, img, len) < 0) {
			free(img);
			return;
		}
		e.len = (uint32_t)len;
	}
	xio_sys_write(co->memfd, &e, sizeof(e));
	if (img)
		xio_sys_write(co->memfd, img, e.len);
	free(img);
	co->fds[co->count] = fd;
	co->ps[co->count] = ps;
	co->count++;
}

/* 1 if the environment the new program gets preloads the shim. */
static int shim_in(char *const env[])
{
	for (size_t i = 0; env && env[i]; i++)
		if (!strncmp(env[i], "LD_PRELOAD=", 11) && strstr(env[i], "libxio_preload"))
			return 1;
	return 0;
}

struct before {
	int shim, ctl;
};

/*
 * Connections the new program could not carry on over shared memory leave
 * it before exec (leave.c): one on fds 0-2 (stdio, inetd-style services,
 * git daemon's upload-pack), every one when the new program will not load
 * the shim, or when there is no control session to re-attach through.
 */
static void leave_one(int fd, struct psock *ps, void *arg)
{
	struct before *b = arg;
	if (atomic_load(&ps->kind) != PS_CONN)
		return;
	int fl = xio_sys_fcntl(fd, F_GETFD, 0);
	if (fl < 0 || (fl & FD_CLOEXEC))
		return;
	if (fd <= 2)
		xio__shim_leave(ps, XIO_LEAVE_STDIO);
	else if (!b->shim || !b->ctl)
		xio__shim_leave(ps, XIO_LEAVE_EXEC);
}

static void leave_before_exec(char *const env[])
{
	if (!xio_fdtab)
		return;
	struct before b = { shim_in(env), xio__ctl_sock_fd() >= 0 };
	fdtab_each(leave_one, &b);
}

/* Write the state; returns the value for XIO_INHERIT in val, or 0 if
 * there is nothing to hand over. *memfd and *ctl tell what to undo. */
static int prepare(char *val, size_t vlen, int *memfd, int *ctl)
{
	*memfd = *ctl = -1;
	if (!xio_fdtab)
		return 0;
	int ctlfd = xio__ctl_sock_fd();
	if (ctlfd < 0)
		return 0;
	struct collect *co = calloc(1, sizeof(*co));
	if (!co)
		return 0;
	co->memfd = xio_sys_memfd_create("xio-inherit", 0);
	if (co->memfd < 0) {
		free(co);
		return 0;
	}
	struct inherit_hdr h = { INHERIT_MAGIC, 0 };
	xio_sys_write(co->memfd, &h, sizeof(h));
	fdtab_each(save_one, co);
	if (co->count == 0) {
		xio_sys_close(co->memfd);
		free(co);
		return 0;
	}
	h.count = co->count;
	XIO__SC(SYS_pwrite64, co->memfd, &h, sizeof(h), 0, 0, 0);
	*memfd = co->memfd;
	*ctl = ctlfd;
	xio_sys_fcntl(ctlfd, F_SETFD, 0); /* the control session goes along */
	snprintf(val, vlen, "%d,%d", co->memfd, ctlfd);
	free(co);
	return 1;
}

static void undo(int memfd, int ctl)
{
	if (memfd >= 0)
		xio_sys_close(memfd);
	if (ctl >= 0)
		xio_sys_fcntl(ctl, F_SETFD, FD_CLOEXEC);
}

/* envp plus NAME=val (replacing an old one); NULL on ENOMEM. */
static char **with_env(char *const envp[], const char *val, char *slot, size_t slotlen)
{
	size_t n = 0;
	while (envp && envp[n])
		n++;
	char **v = malloc((n + 2) * sizeof(*v));
	if (!v)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(envp[i], ENV_NAME "=", sizeof(ENV_NAME)))
			v[k++] = envp[i];
	snprintf(slot, slotlen, "%s=%s", ENV_NAME, val);
	v[k++] = slot;
	v[k] = NULL;
	return v;
}

enum { VIA_ENVIRON, VIA_ENVP };

static int do_exec(int how, int kind, const char *path, int dirfd, char *const argv[],
		   char *const envp[])
{
	char val[64], slot[96];
	int memfd, ctl, r, saved;
	char **env2 = NULL;
	SHIM_INIT();
	extern char **environ;
	leave_before_exec(how == VIA_ENVIRON ? environ : envp);
	xio__shim_resend_flush_all();
	int have = prepare(val, sizeof(val), &memfd, &ctl);
	if (have) {
		if (how == VIA_ENVIRON)
			setenv(ENV_NAME, val, 1);
		else
			env2 = with_env(envp, val, slot, sizeof(slot));
	}
	char *const *e = env2 ? env2 : envp;
	switch (kind) {
	case 0: r = REAL(execve)(path, argv, e); break;
	case 1: r = REAL(execv)(path, argv); break;
	case 2: r = REAL(execvp)(path, argv); break;
	case 3: r = REAL(execvpe)(path, argv, e); break;
	default: r = REAL(fexecve)(dirfd, argv, e); break;
	}
	saved = errno; /* exec failed: put everything back */
	if (have && how == VIA_ENVIRON)
		unsetenv(ENV_NAME);
	free(env2);
	undo(memfd, ctl);
	errno = saved;
	return r;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	return do_exec(VIA_ENVP, 0, path, -1, argv, envp);
}

EXPORT int execv(const char *path, char *const argv[])
{
	return do_exec(VIA_ENVIRON, 1, path, -1, argv, NULL);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	return do_exec(VIA_ENVIRON, 2, file, -1, argv, NULL);
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return do_exec(VIA_ENVP, 3, file, -1, argv, envp);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	return do_exec(VIA_ENVP, 4, NULL, fd, argv, envp);
}

/* execl and friends: gather the arguments, then as execv/execvp/execve. */
#define GATHER(first, ap, argv, envp_out)                                                   \
	do {                                                                                \
		size_t n_ = 1;                                                              \
		va_list c_;                                                                 \
		va_copy(c_, ap);                                                            \
		while (va_arg(c_, char *))                                                  \
			n_++;                                                               \
		va_end(c_);                                                                 \
		argv = alloca((n_ + 1) * sizeof(char *));                                   \
		argv[0] = (char *)(first);                                                  \
		for (size_t i_ = 1; i_ <= n_; i_++)                                         \
			argv[i_] = va_arg(ap, char *);                                      \
		if (envp_out != NULL)                                                       \
			*(char ***)(envp_out) = va_arg(ap, char **);                        \
	} while (0)

EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	char **argv;
	va_start(ap, arg);
	char ***none = NULL;
	GATHER(arg, ap, argv, none);
	va_end(ap);
	return execv(path, argv);
}

EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	char **argv;
	va_start(ap, arg);
	char ***none = NULL;
	GATHER(arg, ap, argv, none);
	va_end(ap);
	return execvp(file, argv);
}

EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	char **argv, **envp = NULL;
	va_start(ap, arg);
	char ***where = &envp;
	GATHER(arg, ap, argv, where);
	va_end(ap);
	return execve(path, argv, envp);
}

static int is_ctl_socket(int fd)
{
	int v;
	socklen_t l = sizeof(v);
	if (fd < 0 || xio_sys_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) < 0 || v != AF_UNIX)
		return 0;
	l = sizeof(v);
	return xio_sys_getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) == 0 && v == SOCK_SEQPACKET;
}

/* The new image: take the connections back. Runs after init.c. */
__attribute__((constructor(102))) static void inherit(void)
{
	const char *v = getenv(ENV_NAME);
	int memfd, ctl;
	if (!v || sscanf(v, "%d,%d", &memfd, &ctl) != 2)
		return;
	int saved = errno;
	unsetenv(ENV_NAME); /* not for our own children */
	struct stat st;
	char *buf = NULL;
	/* The numbers come from the environment: use (and close) them only if
	 * they still are what the old image left, a memfd and a UNIX
	 * seqpacket socket; anything else belongs to the program. */
	if (xio_sys_fcntl(memfd, F_GET_SEALS, 0) < 0) {
		errno = saved;
		return;
	}
	if (!is_ctl_socket(ctl))
		ctl = -1;
	if (xio_sys_fstat(memfd, &st) < 0 || st.st_size < (off_t)sizeof(struct inherit_hdr) ||
	    !(buf = malloc((size_t)st.st_size)) ||
	    XIO__SC(SYS_pread64, memfd, buf, st.st_size, 0, 0, 0) != st.st_size)
		goto out;
	if (ctl >= 0)
		xio__ctl_adopt(ctl);
	struct inherit_hdr *h = (void *)buf;
	size_t off = sizeof(*h), size = (size_t)st.st_size;
	for (uint32_t i = 0; h->magic == INHERIT_MAGIC && i < h->count; i++) {
		struct inherit_ent e;
		if (off + sizeof(e) > size)
			break;
		memcpy(&e, buf + off, sizeof(e));
		off += sizeof(e);
		if (e.len > size - off)
			break;
		const char *img = buf + off;
		off += e.len;
		if (e.alias >= 0) {
			struct psock *ps = fdtab_lookup(e.alias);
			if (ps) {
				psock_ref(ps);
				fdtab_set(e.fd, ps);
			}
			continue;
		}
		unsigned side;
		uint64_t id = xio__conn_image_id(img, e.len, &side);
		struct xio_conn *c = id ? xio__conn_kernel(e.fd) : NULL;
		if (!c)
			continue;
		if (xio__conn_reattach(c, id, side, img, e.len) < 0) {
			/* The segment is out of reach: the bytes in it cannot be
			 * carried on in order. Reset rather than lose them quietly
			 * (docs/compatibility.md). */
			xio__sock_reset(e.fd);
			xio__conn_free(c);
			continue;
		}
		int fl = xio_sys_fcntl(e.fd, F_GETFL, 0);
		struct psock *ps = psock_new(e.fd, PS_TCP, fl >= 0 && (fl & O_NONBLOCK));
		if (!ps) {
			xio__conn_detach_quiet(c);
			xio__conn_free(c);
			continue;
		}
		ps->conn = c;
		c->owner = ps;
		atomic_store(&ps->kind, PS_CONN);
		STAT_ADD(accel_conns, 1);
	}
out:
	free(buf);
	xio_sys_close(memfd);
	errno = saved;
}
