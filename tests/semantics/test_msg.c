/*
 * test_msg.c - the scatter/gather and batch calls on a stream socket:
 * sendmsg/recvmsg, writev/readv, sendmmsg/recvmmsg, and sendfile.
 */
#include "sem.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* sendmsg with 3 iovecs sends their bytes in order; recvmsg scatters them
 * over 3 iovecs, with msg_flags 0 and msg_namelen 0 (no address on a
 * connected stream). */
ST_TEST(msg, sendmsg_recvmsg_three_iovecs)
{
	int c, s;
	st_pair(&c, &s);
	char a[] = "abc", b[] = "defgh", d[] = "ijklmno";
	struct iovec out[3] = { { a, 3 }, { b, 5 }, { d, 7 } };
	struct msghdr m = { .msg_iov = out, .msg_iovlen = 3 };
	cr_assert_eq(sendmsg(c, &m, 0), 15);

	char x[4], y[4], z[100];
	struct sockaddr_storage from;
	struct iovec in[3] = { { x, 4 }, { y, 4 }, { z, 100 } };
	struct msghdr r = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = in,
			    .msg_iovlen = 3, .msg_flags = 0x7fff };
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(recvmsg(s, &r, 0), 15);
	cr_assert_arr_eq(x, "abcd", 4);
	cr_assert_arr_eq(y, "efgh", 4);
	cr_assert_arr_eq(z, "ijklmno", 7);
	cr_assert_eq(r.msg_flags, 0, "msg_flags %#x", r.msg_flags);
	cr_assert_eq(r.msg_namelen, 0, "msg_namelen %u", (unsigned)r.msg_namelen);
	close(c);
	close(s);
}

/* writev of 3 buffers and readv into 2 buffers move the same bytes in
 * order; readv fills the first buffer before the second. */
ST_TEST(msg, writev_readv)
{
	int c, s;
	st_pair(&c, &s);
	char a[1000], b[3000], d[5000];
	st_pattern_fill(a, sizeof(a), 40, 0);
	st_pattern_fill(b, sizeof(b), 40, 1000);
	st_pattern_fill(d, sizeof(d), 40, 4000);
	struct iovec out[3] = { { a, sizeof(a) }, { b, sizeof(b) }, { d, sizeof(d) } };
	cr_assert_eq(writev(c, out, 3), 9000);
	static char x[2000], y[10000];
	struct iovec in[2] = { { x, sizeof(x) }, { y, sizeof(y) } };
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	ssize_t r = readv(s, in, 2);
	cr_assert_gt(r, 0, "readv: %s", r < 0 ? strerror(errno) : "end of file");
	/* If it came in parts, put the rest where one readv would have. */
	for (size_t got = (size_t)r; got < 9000; got += (size_t)r) {
		char *dst = got < 2000 ? x + got : y + (got - 2000);
		size_t room = got < 2000 ? 2000 - got : 9000 - got;
		r = read(s, dst, room);
		cr_assert_gt(r, 0, "read: %s", r < 0 ? strerror(errno) : "end of file");
	}
	cr_assert_eq(st_pattern_check(x, 2000, 40, 0), -1);
	cr_assert_eq(st_pattern_check(y, 7000, 40, 2000), -1);
	close(c);
	close(s);
}

/* sendmmsg of 2 messages sends both (returns 2, msg_len set); recvmmsg with
 * 2 messages fills both in order, each up to its buffer. */
ST_TEST(msg, sendmmsg_recvmmsg)
{
	int c, s;
	st_pair(&c, &s);
	char a[] = "first-msg!", b[] = "second-msg";
	struct iovec o1 = { a, 10 }, o2 = { b, 10 };
	struct mmsghdr out[2] = { { .msg_hdr = { .msg_iov = &o1, .msg_iovlen = 1 } },
				  { .msg_hdr = { .msg_iov = &o2, .msg_iovlen = 1 } } };
	cr_assert_eq(sendmmsg(c, out, 2, 0), 2);
	cr_assert_eq(out[0].msg_len, 10);
	cr_assert_eq(out[1].msg_len, 10);

	char x[10], y[10];
	struct iovec i1 = { x, 10 }, i2 = { y, 10 };
	struct mmsghdr in[2] = { { .msg_hdr = { .msg_iov = &i1, .msg_iovlen = 1 } },
				 { .msg_hdr = { .msg_iov = &i2, .msg_iovlen = 1 } } };
	struct timespec tmo = { .tv_sec = ST_WAIT_MS / 1000 };
	cr_assert(st_wait_fd(s, POLLIN, ST_WAIT_MS) & POLLIN);
	cr_assert_eq(recvmmsg(s, in, 2, 0, &tmo), 2);
	cr_assert_eq(in[0].msg_len, 10);
	cr_assert_eq(in[1].msg_len, 10);
	cr_assert_arr_eq(x, "first-msg!", 10);
	cr_assert_arr_eq(y, "second-msg", 10);
	close(c);
	close(s);
}

#define FILE_LEN (1u << 20)

static int read_and_sum(int fd, void *arg)
{
	(void)arg;
	static char buf[65536];
	uint64_t h = ST_FNV_INIT;
	size_t total = 0;
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		ST_CHECK(r >= 0, "read: %s", strerror(errno));
		if (r == 0)
			break;
		h = st_fnv1a(buf, (size_t)r, h);
		total += (size_t)r;
	}
	ST_CHECK(total == FILE_LEN, "got %zu bytes", total);
	ST_CHECK(write(fd, &h, sizeof(h)) == sizeof(h), "checksum: %s", strerror(errno));
	return 0;
}

/* sendfile from a 1 MiB temporary file into the socket moves the whole
 * file (the offset ends at 1 MiB) and the peer's checksum matches. */
ST_TEST(msg, sendfile_one_mib)
{
	char path[] = "/tmp/xio-sem-sendfile-XXXXXX";
	int f = mkstemp(path);
	cr_assert(f >= 0);
	unlink(path);
	char *buf = malloc(FILE_LEN);
	cr_assert(buf);
	st_pattern_fill(buf, FILE_LEN, 50, 0);
	cr_assert_eq(st_write_full(f, buf, FILE_LEN), (ssize_t)FILE_LEN);
	uint64_t want = st_fnv1a(buf, FILE_LEN, ST_FNV_INIT), got = 0;
	free(buf);

	cr_assert_eq(lseek(f, 0, SEEK_SET), 0);
	pid_t pid;
	int s = st_peer_start(&pid, read_and_sum, NULL);
	off_t off = 0;
	while ((size_t)off < FILE_LEN) {
		ssize_t r = sendfile(s, f, &off, FILE_LEN - (size_t)off);
		cr_assert_gt(r, 0, "sendfile at %ld: %s", (long)off, r < 0 ? strerror(errno) : "0");
	}
	cr_assert_eq(off, (off_t)FILE_LEN);
	cr_assert_eq(lseek(f, 0, SEEK_CUR), 0, "sendfile with an offset moved the file position");
	cr_assert_eq(shutdown(s, SHUT_WR), 0);
	cr_assert_eq(st_read_full(s, &got, sizeof(got)), (ssize_t)sizeof(got));
	cr_assert_eq(got, want, "checksum %#lx, want %#lx", (unsigned long)got, (unsigned long)want);
	st_assert_child_ok(pid);
	close(s);
	close(f);
}
