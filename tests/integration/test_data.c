/*
 * test_data.c - bytes over an accelerated connection between two processes:
 * echo, long streams with odd read sizes, both directions at once, writes
 * larger than the channel, zero copy, and the per-connection counters.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

static struct t_monitor mon;
static xio_listener *lis;

static void setup(void)
{
	t_suite_up(&mon, &lis, 16);
}

static void teardown(void)
{
	t_suite_down(&mon, &lis);
}

TestSuite(data, .init = setup, .fini = teardown);

#define MIB (1u << 20)

static pid_t pair(xio_conn **server, int (*fn)(xio_conn *, void *), void *arg)
{
	return t_pair_accelerated(lis, server, 0, fn, arg);
}

static void reap(pid_t pid, int timeout_ms)
{
	t_reap(pid, timeout_ms);
}

/* Write len bytes of pattern seed starting at stream position pos, in
 * pieces of at most piece bytes. Returns 0 or the failing result. */
static ssize_t write_pattern(xio_conn *c, uint64_t seed, uint64_t pos, size_t len, size_t piece)
{
	char *buf = malloc(piece);
	ssize_t r = 0;
	for (size_t done = 0; done < len && r >= 0;) {
		size_t n = len - done < piece ? len - done : piece;
		t_pattern_fill(buf, n, seed, pos + done);
		r = xio_write(c, buf, n);
		if (r != (ssize_t)n)
			break;
		done += n;
		r = 0;
	}
	free(buf);
	return r;
}

/* --- echo -------------------------------------------------------------- */

/* Client: send n bytes of pattern, expect them back, then end of file. */
static int client_echo(xio_conn *c, void *arg)
{
	size_t n = *(size_t *)arg;
	char *buf = malloc(n);
	t_pattern_fill(buf, n, 7, 0);
	ssize_t r = xio_write(c, buf, n);
	T_CHECK(r == (ssize_t)n, "write %zu: %zd (%s)", n, r, xio_strerror((int)r));
	memset(buf, 0, n);
	r = t_read_full(c, buf, n);
	T_CHECK(r == (ssize_t)n, "read back %zu: %zd (%s)", n, r, xio_strerror((int)r));
	T_CHECK(t_pattern_check(buf, n, 7, 0), "echoed bytes differ");
	r = xio_read(c, buf, 1);
	T_CHECK(r == 0, "expected end of file, got %zd (%s)", r, xio_strerror((int)r));
	free(buf);
	return 0;
}

static void echo(size_t n)
{
	xio_conn *c;
	pid_t pid = pair(&c, client_echo, &n);
	char *buf = malloc(n);
	ssize_t r = t_read_full(c, buf, n);
	cr_assert_eq(r, (ssize_t)n, "server read %zu: %zd (%s)", n, r, xio_strerror((int)r));
	r = xio_write(c, buf, n);
	cr_assert_eq(r, (ssize_t)n, "server write %zu: %zd (%s)", n, r, xio_strerror((int)r));
	cr_assert_eq(xio_close(c), 0);
	free(buf);
	reap(pid, 10000);
}

/* One byte is echoed intact. */
Test(data, echo_one_byte)
{
	echo(1);
}

/* One MiB is echoed intact. */
Test(data, echo_one_mib)
{
	echo(MIB);
}

/* --- streams ----------------------------------------------------------- */

struct stream {
	uint64_t seed;
	size_t total;
	size_t piece;        /* bytes per xio_write */
	unsigned watchdog_s; /* the writer gives up (SIGALRM) after this long */
};

static int client_stream_writer(xio_conn *c, void *arg)
{
	struct stream *s = arg;
	alarm(s->watchdog_s);
	ssize_t r = write_pattern(c, s->seed, 0, s->total, s->piece);
	T_CHECK(r == 0, "writing %zu in pieces of %zu: %zd (%s)", s->total, s->piece, r,
		xio_strerror((int)r));
	return 0;
}

/* Read s->total bytes with read sizes from next_size(i) and check each
 * against the pattern at its position; then expect end of file. On a failed
 * read, report how the writer (pid) ended and this end's counters. */
static void read_stream(xio_conn *c, const struct stream *s, size_t (*next_size)(unsigned),
			pid_t pid)
{
	size_t cap = 0;
	for (unsigned i = 0; i < 1000; i++)
		cap = next_size(i) > cap ? next_size(i) : cap;
	char *buf = malloc(cap);
	size_t pos = 0;
	unsigned i = 0;
	while (pos < s->total) {
		size_t want = next_size(i++ % 1000);
		ssize_t r = xio_read(c, buf, want);
		if (r <= 0) {
			struct xio_conn_stats st;
			xio_conn_stats(c, &st);
			int ws = t_wait(pid, 15000);
			cr_assert_fail("read at %zu of %zu (asked %zu): %zd (%s); writer exit %d "
				       "(142: stuck, killed by its watchdog); reader rx_bytes %llu "
				       "doorbells %llu sleeps %llu",
				       pos, s->total, want, r, xio_strerror((int)r), ws,
				       (unsigned long long)st.rx_bytes,
				       (unsigned long long)st.doorbells,
				       (unsigned long long)st.sleeps);
		}
		cr_assert_leq((size_t)r, want);
		cr_assert(t_pattern_check(buf, (size_t)r, s->seed, pos),
			  "wrong bytes in [%zu, %zu)", pos, pos + (size_t)r);
		pos += (size_t)r;
	}
	ssize_t r = xio_read(c, buf, cap);
	cr_assert_eq(r, 0, "expected end of file after %zu bytes, got %zd (%s)", pos, r,
		     xio_strerror((int)r));
	free(buf);
}

static size_t odd_size(unsigned i)
{
	return 1 + ((size_t)i * 7919u + (size_t)i * i * 31u) % 70000u;
}

/* 64 MiB in one direction arrive intact and in order when the reader uses
 * odd read sizes from 1 to 70000 bytes (partial descriptors). */
Test(data, stream_64mib_odd_reads)
{
	struct stream s = {
		.seed = 64, .total = 64 * (size_t)MIB, .piece = 256 * 1024, .watchdog_s = 15
	};
	xio_conn *c;
	pid_t pid = pair(&c, client_stream_writer, &s);
	read_stream(c, &s, odd_size, pid);
	xio_close(c);
	reap(pid, 20000);
}

static size_t big_read(unsigned i)
{
	(void)i;
	return 256 * 1024;
}

/* A stream of small writes (300 bytes each, many descriptors queued) read
 * with large reads arrives intact; the writer, blocked on a full channel,
 * is woken by the reader's releases. */
Test(data, small_writes_large_reads)
{
	struct stream s = { .seed = 300, .total = 8 * (size_t)MIB, .piece = 300, .watchdog_s = 5 };
	xio_conn *c;
	pid_t pid = pair(&c, client_stream_writer, &s);
	/* Let the writer fill the channel and go to sleep on it. */
	usleep(200 * 1000);
	read_stream(c, &s, big_read, pid);
	xio_close(c);
	reap(pid, 10000);
}

/* --- both directions at once ------------------------------------------- */

struct duplex {
	xio_conn *c;
	uint64_t seed;
	size_t total;
	ssize_t result; /* 0, or what failed */
};

static void *duplex_writer(void *p)
{
	struct duplex *d = p;
	d->result = write_pattern(d->c, d->seed, 0, d->total, 100 * 1000);
	return NULL;
}

/* Read d->total bytes of pattern d->seed; returns 0, -1 for wrong bytes, or
 * the read error. */
static ssize_t duplex_read(xio_conn *c, uint64_t seed, size_t total)
{
	size_t cap = 48 * 1024 + 17;
	char *buf = malloc(cap);
	size_t pos = 0;
	ssize_t res = 0;
	while (pos < total) {
		ssize_t r = xio_read(c, buf, cap);
		if (r <= 0) {
			res = r == 0 ? -ENODATA : r;
			break;
		}
		if (!t_pattern_check(buf, (size_t)r, seed, pos)) {
			res = -EILSEQ;
			break;
		}
		pos += (size_t)r;
	}
	free(buf);
	return res;
}

#define DUPLEX_BYTES (16 * (size_t)MIB)

static int client_duplex(xio_conn *c, void *arg)
{
	(void)arg;
	struct duplex w = { .c = c, .seed = 1, .total = DUPLEX_BYTES };
	pthread_t t;
	T_CHECK(pthread_create(&t, NULL, duplex_writer, &w) == 0, "pthread_create");
	ssize_t r = duplex_read(c, 2, DUPLEX_BYTES);
	pthread_join(t, NULL);
	T_CHECK(r == 0, "client read: %zd (%s)", r, xio_strerror((int)r));
	T_CHECK(w.result == 0, "client write: %zd (%s)", w.result, xio_strerror((int)w.result));
	return 0;
}

/* 16 MiB each way, both sides writing and reading at the same time (a
 * writer thread and a reader on each end), arrive intact. */
Test(data, bidirectional_16mib)
{
	xio_conn *c;
	pid_t pid = pair(&c, client_duplex, NULL);
	struct duplex w = { .c = c, .seed = 2, .total = DUPLEX_BYTES };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, duplex_writer, &w), 0);
	ssize_t r = duplex_read(c, 1, DUPLEX_BYTES);
	pthread_join(t, NULL);
	cr_assert_eq(r, 0, "server read: %zd (%s)", r, xio_strerror((int)r));
	cr_assert_eq(w.result, 0, "server write: %zd (%s)", w.result, xio_strerror((int)w.result));
	xio_close(c);
	reap(pid, 20000);
}

/* --- a write larger than the channel ----------------------------------- */

#define BIG_WRITE (8 * (size_t)MIB)

/* A slow reader: waits, then reads 64 KiB at a time with pauses. */
static int client_slow_reader(xio_conn *c, void *arg)
{
	(void)arg;
	size_t cap = 64 * 1024, pos = 0;
	char *buf = malloc(cap);
	usleep(200 * 1000);
	for (unsigned i = 0; pos < BIG_WRITE; i++) {
		ssize_t r = xio_read(c, buf, cap);
		T_CHECK(r > 0, "read at %zu: %zd (%s)", pos, r, xio_strerror((int)r));
		T_CHECK(t_pattern_check(buf, (size_t)r, 8, pos), "wrong bytes at %zu", pos);
		pos += (size_t)r;
		if (i % 8 == 0)
			usleep(1000);
	}
	ssize_t r = xio_read(c, buf, cap);
	T_CHECK(r == 0, "expected end of file, got %zd (%s)", r, xio_strerror((int)r));
	free(buf);
	return 0;
}

/* One 8 MiB xio_write (several times the channel) completes, returning the
 * full length, while the reader is slow. */
Test(data, write_larger_than_channel)
{
	xio_conn *c;
	pid_t pid = pair(&c, client_slow_reader, NULL);
	char *buf = malloc(BIG_WRITE);
	t_pattern_fill(buf, BIG_WRITE, 8, 0);
	ssize_t r = xio_write(c, buf, BIG_WRITE);
	cr_assert_eq(r, (ssize_t)BIG_WRITE, "xio_write(8 MiB): %zd (%s)", r, xio_strerror((int)r));
	free(buf);
	xio_close(c);
	reap(pid, 10000);
}

/* --- zero copy --------------------------------------------------------- */

/* The message sizes zero-copy tests use, up to max (xio_max_msg). */
static size_t zc_sizes(size_t max, size_t *out, size_t cap)
{
	static const size_t fixed[] = {
		1, 2, 3, 7, 63, 64, 65, 255, 256, 257, 511, 512, 1000,
		4095, 4096, 4097, 8191, 8192, 12345, 32768, 40000,
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) && n < cap; i++)
		if (fixed[i] <= max)
			out[n++] = fixed[i];
	for (size_t s = 1; n < cap && s <= max; s = s * 3 + 5)
		out[n++] = s;
	if (n < cap)
		out[n++] = max - 1;
	if (n < cap)
		out[n++] = max;
	return n;
}

#define ZC_MAX_SIZES 64
/* Enough rounds to overflow the channel, so the sender cannot finish (and
 * close) before the receiver is paired. */
#define ZC_ROUNDS 8

static int client_zc_sender(xio_conn *c, void *arg)
{
	(void)arg;
	size_t sizes[ZC_MAX_SIZES], max = xio_max_msg(c);
	size_t n = zc_sizes(max, sizes, ZC_MAX_SIZES);
	for (unsigned round = 0; round < ZC_ROUNDS; round++)
		for (size_t i = 0; i < n; i++) {
			struct xio_buf b;
			int r = xio_alloc(c, sizes[i], &b);
			T_CHECK(r == 0, "xio_alloc(%zu): %s", sizes[i], xio_strerror(r));
			T_CHECK(b.cap >= sizes[i] && b.data, "xio_alloc(%zu): cap %u", sizes[i],
				b.cap);
			t_pattern_fill(b.data, sizes[i], sizes[i] + round, 0);
			b.len = (uint32_t)sizes[i];
			ssize_t s = xio_send(c, &b);
			T_CHECK(s == (ssize_t)sizes[i], "xio_send(%zu): %zd (%s)", sizes[i], s,
				xio_strerror((int)s));
		}
	return 0;
}

/* Messages of many sizes from 1 to xio_max_msg sent with xio_alloc/xio_send
 * arrive one per xio_recv, intact, and can be released. */
Test(data, zero_copy_sizes)
{
	xio_conn *c;
	pid_t pid = pair(&c, client_zc_sender, NULL);
	size_t sizes[ZC_MAX_SIZES], max = xio_max_msg(c);
	size_t n = zc_sizes(max, sizes, ZC_MAX_SIZES);
	cr_assert_geq(max, 4096, "xio_max_msg %zu", max);
	for (unsigned round = 0; round < ZC_ROUNDS; round++)
		for (size_t i = 0; i < n; i++) {
			struct xio_buf b;
			ssize_t r = xio_recv(c, &b);
			cr_assert_eq(r, (ssize_t)sizes[i],
				     "round %u message %zu: xio_recv %zd (%s), want %zu", round, i,
				     r, xio_strerror((int)r), sizes[i]);
			cr_assert_eq(b.len, sizes[i]);
			cr_assert(t_pattern_check(b.data, b.len, sizes[i] + round, 0),
				  "round %u: message of %zu bytes corrupted", round, sizes[i]);
			cr_assert_eq(xio_release(c, &b), 0);
		}
	struct xio_buf b;
	ssize_t r = xio_recv(c, &b);
	cr_assert_eq(r, 0, "expected end of file, got %zd (%s)", r, xio_strerror((int)r));
	xio_close(c);
	reap(pid, 10000);
}

#define MIX_BYTES (3 * (size_t)MIB + 12345)

static int client_mix_writer(xio_conn *c, void *arg)
{
	(void)arg;
	ssize_t r = write_pattern(c, 11, 0, MIX_BYTES, 200 * 1000);
	T_CHECK(r == 0, "xio_write: %zd (%s)", r, xio_strerror((int)r));
	return 0;
}

/* Bytes written with xio_write are received intact with xio_recv and
 * xio_release. */
Test(data, write_then_zero_copy_recv)
{
	xio_conn *c;
	pid_t pid = pair(&c, client_mix_writer, NULL);
	size_t pos = 0, max = xio_max_msg(c);
	while (pos < MIX_BYTES) {
		struct xio_buf b;
		ssize_t r = xio_recv(c, &b);
		cr_assert(r > 0, "xio_recv at %zu: %zd (%s)", pos, r, xio_strerror((int)r));
		cr_assert(b.len == (size_t)r && b.len <= max, "len %u, returned %zd, max %zu",
			  b.len, r, max);
		cr_assert(t_pattern_check(b.data, b.len, 11, pos), "wrong bytes in [%zu, %zu)", pos,
			  pos + b.len);
		pos += b.len;
		cr_assert_eq(xio_release(c, &b), 0);
	}
	cr_assert_eq(pos, MIX_BYTES, "received %zu bytes, %zu sent", pos, MIX_BYTES);
	xio_close(c);
	reap(pid, 10000);
}

static int client_mix_sender(xio_conn *c, void *arg)
{
	(void)arg;
	size_t max = xio_max_msg(c), pos = 0;
	for (unsigned i = 0; pos < MIX_BYTES; i++) {
		size_t n = 1 + ((size_t)i * 4099u) % max;
		if (n > MIX_BYTES - pos)
			n = MIX_BYTES - pos;
		struct xio_buf b;
		int r = xio_alloc(c, n, &b);
		T_CHECK(r == 0, "xio_alloc(%zu): %s", n, xio_strerror(r));
		t_pattern_fill(b.data, n, 12, pos);
		b.len = (uint32_t)n;
		ssize_t s = xio_send(c, &b);
		T_CHECK(s == (ssize_t)n, "xio_send(%zu): %zd (%s)", n, s, xio_strerror((int)s));
		pos += n;
	}
	return 0;
}

/* Messages sent with xio_alloc/xio_send are received intact as a byte
 * stream with xio_read of odd sizes. */
Test(data, zero_copy_send_then_read)
{
	struct stream s = { .seed = 12, .total = MIX_BYTES };
	xio_conn *c;
	pid_t pid = pair(&c, client_mix_sender, NULL);
	read_stream(c, &s, odd_size, pid);
	xio_close(c);
	reap(pid, 10000);
}

static int client_wait_eof(xio_conn *c, void *arg)
{
	(void)arg;
	char b;
	ssize_t r = xio_read(c, &b, 1);
	T_CHECK(r == 0, "expected end of file, got %zd (%s)", r, xio_strerror((int)r));
	return 0;
}

/* xio_alloc of more than xio_max_msg fails with -EMSGSIZE. */
Test(data, alloc_too_large)
{
	xio_conn *c;
	pid_t pid = pair(&c, client_wait_eof, NULL);
	struct xio_buf b;
	size_t max = xio_max_msg(c);
	int r = xio_alloc(c, max + 1, &b);
	cr_assert_eq(r, -EMSGSIZE, "xio_alloc(max_msg %zu + 1): %d (%s)", max, r, xio_strerror(r));
	r = xio_alloc(c, 64 * (size_t)MIB, &b);
	cr_assert_eq(r, -EMSGSIZE, "xio_alloc(64 MiB): %d (%s)", r, xio_strerror(r));
	/* The channel is still usable. */
	r = xio_alloc(c, max, &b);
	cr_assert_eq(r, 0, "xio_alloc(max_msg %zu): %s", max, xio_strerror(r));
	cr_assert_eq(xio_release(c, &b), 0);
	xio_close(c);
	reap(pid, 5000);
}

/* --- counters ---------------------------------------------------------- */

#define ST_WRITE (1000 * 1000u)
#define ST_SEND 5000u
#define ST_BACK (300 * 1000u)

static int client_stats(xio_conn *c, void *arg)
{
	(void)arg;
	struct xio_conn_stats st;
	ssize_t r = write_pattern(c, 21, 0, ST_WRITE, 65536);
	T_CHECK(r == 0, "xio_write: %zd (%s)", r, xio_strerror((int)r));
	struct xio_buf b;
	int a = xio_alloc(c, ST_SEND, &b);
	T_CHECK(a == 0, "xio_alloc: %s", xio_strerror(a));
	t_pattern_fill(b.data, ST_SEND, 21, ST_WRITE);
	b.len = ST_SEND;
	r = xio_send(c, &b);
	T_CHECK(r == ST_SEND, "xio_send: %zd (%s)", r, xio_strerror((int)r));
	size_t got = 0;
	while (got < ST_BACK) {
		r = xio_recv(c, &b);
		T_CHECK(r > 0, "xio_recv at %zu: %zd (%s)", got, r, xio_strerror((int)r));
		got += b.len;
		xio_release(c, &b);
	}
	xio_conn_stats(c, &st);
	T_CHECK(st.tx_bytes == ST_WRITE + ST_SEND, "client tx_bytes %llu, sent %u",
		(unsigned long long)st.tx_bytes, ST_WRITE + ST_SEND);
	T_CHECK(st.rx_bytes == ST_BACK, "client rx_bytes %llu, received %u",
		(unsigned long long)st.rx_bytes, ST_BACK);
	return 0;
}

/* xio_conn_stats counts exactly the payload bytes moved: tx_bytes what this
 * end sent (xio_write and xio_send), rx_bytes what it received (xio_read and
 * xio_recv). */
Test(data, stats_count_bytes)
{
	xio_conn *c;
	pid_t pid = pair(&c, client_stats, NULL);
	struct stream s = { .seed = 21, .total = ST_WRITE + ST_SEND };
	size_t pos = 0;
	char *buf = malloc(40000);
	while (pos < s.total) {
		ssize_t r = xio_read(c, buf, 40000);
		cr_assert(r > 0, "read at %zu: %zd (%s)", pos, r, xio_strerror((int)r));
		cr_assert(t_pattern_check(buf, (size_t)r, 21, pos), "wrong bytes at %zu", pos);
		pos += (size_t)r;
	}
	free(buf);
	ssize_t r = write_pattern(c, 22, 0, ST_BACK, 30000);
	cr_assert_eq(r, 0, "xio_write: %zd (%s)", r, xio_strerror((int)r));
	struct xio_conn_stats st;
	cr_assert_eq(xio_conn_stats(c, &st), 0);
	cr_assert_eq(st.rx_bytes, ST_WRITE + ST_SEND, "server rx_bytes %llu, received %u",
		     (unsigned long long)st.rx_bytes, ST_WRITE + ST_SEND);
	cr_assert_eq(st.tx_bytes, ST_BACK, "server tx_bytes %llu, sent %u",
		     (unsigned long long)st.tx_bytes, ST_BACK);
	reap(pid, 10000);
	xio_close(c);
}
