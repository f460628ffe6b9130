/*
 * echo.c - xio-bench-echo: round-trip latency of an echo, for several
 * message sizes, over xio (zero-copy and socket-like) and over the kernel
 * baselines (TCP, UNIX sockets, both also through io_uring), side by side
 * in one run.
 *
 * For each transport the parent forks a server child, learns the address
 * it listens on through a pipe (the same way for every transport, because
 * an xio listener must be opened by the process that serves it, so its
 * port is only known in the child), then is the client: per size one
 * connection, a warm-up, and N round trips each timed alone with
 * CLOCK_MONOTONIC. The table reports p50 and p99.
 *
 * Bounded: each transport has a wall-clock limit. When it expires, SIGALRM
 * interrupts the parent's blocking call (the handler is installed without
 * SA_RESTART) and kills the child, whose death also ends any wait on the
 * connection; if the parent is still stuck a grace period later, it exits.
 * A child dies with its parent (PR_SET_PDEATHSIG) and by its own alarm.
 */
#include "echo.h"
#include "stats.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "xio-bench-echo"
#define MAX_SIZES 32
#define DEFAULT_WARMUP 1000
#define DEFAULT_ITERS_SMALL 20000 /* sizes up to SMALL_MAX */
#define DEFAULT_ITERS_LARGE 5000
#define SMALL_MAX (16u << 10)
#define DEFAULT_TIME_LIMIT 60 /* seconds per transport */
#define GRACE 10              /* seconds after the limit before giving up on the run */

/* The table's column order, and the order the transports run in. */
static const struct echo_transport *const transports[] = {
	&echo_xio_zc, &echo_xio, &echo_uring_tcp, &echo_uring_uds, &echo_tcp, &echo_uds,
};
#define NTRANSPORTS (sizeof(transports) / sizeof(transports[0]))

struct opts {
	size_t sizes[MAX_SIZES];
	size_t nsizes;
	int selected[NTRANSPORTS];
	long iters;  /* 0: by size */
	long warmup; /* -1: default */
	int quick;
	int csv;
	unsigned time_limit;
};

struct result {
	int ok;
	uint64_t p50, p99; /* ns */
};

volatile sig_atomic_t echo_timed_out;
/* The child the time limit kills; 0 when there is none. */
static volatile pid_t limit_child;

/* One write per message: the server child reports on the same stderr at
 * the same time, and stdio would split a line into several writes. */
void echo_err(const char *fmt, ...)
{
	char line[1024];
	size_t len = sizeof(PROG ": ") - 1;
	va_list ap;
	int n;

	memcpy(line, PROG ": ", len);
	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	len += (size_t)n < sizeof(line) - len - 1 ? (size_t)n : sizeof(line) - len - 2;
	line[len++] = '\n';
	fflush(stderr);
	if (write(STDERR_FILENO, line, len) < 0) {
		/* Nowhere left to report it. */
	}
}

const char *echo_strerror(int err)
{
	if (err == -ETIMEDOUT && echo_timed_out)
		return "time limit reached";
	return strerror(-err);
}

int echo_msg_check(const char *name, const char *side, const void *buf, size_t len, size_t size,
		   uint64_t seq)
{
	uint64_t head, tail;

	if (len != size) {
		echo_err("%s %s: message %llu is %zu bytes long, expected %zu", name, side,
			 (unsigned long long)seq, len, size);
		return -EBADMSG;
	}
	memcpy(&head, buf, sizeof(head));
	memcpy(&tail, (const char *)buf + size - sizeof(tail), sizeof(tail));
	if (head != seq || tail != seq) {
		echo_err("%s %s: message %llu carries sequence numbers %llu (first 8 bytes) "
			 "and %llu (last 8 bytes)",
			 name, side, (unsigned long long)seq, (unsigned long long)head,
			 (unsigned long long)tail);
		return -EBADMSG;
	}
	return 0;
}

void *echo_buf_alloc(size_t size)
{
	unsigned char *p;
	void *mem;
	size_t i;

	if (posix_memalign(&mem, 4096, size) != 0)
		return NULL;
	p = mem;
	for (i = 0; i < size; i++)
		p[i] = (unsigned char)(i * 131 + 7);
	return p;
}

int echo_buf_reserve(void **buf, size_t *bufsz, size_t size)
{
	if (*bufsz >= size)
		return 0;
	free(*buf);
	*bufsz = 0;
	*buf = echo_buf_alloc(size);
	if (!*buf)
		return -ENOMEM;
	*bufsz = size;
	return 0;
}

/* Only async-signal-safe calls in here: kill, alarm, write, _exit. */
static void on_alarm(int sig)
{
	static const char msg[] = PROG ": a transport is stuck past its time limit and "
				  "did not stop; giving up the whole run\n";
	(void)sig;
	if (echo_timed_out) {
		ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);

		(void)n;
		_exit(3);
	}
	echo_timed_out = 1;
	if (limit_child > 0)
		kill(limit_child, SIGKILL);
	alarm(GRACE);
}

static long iters_for(const struct opts *o, size_t size)
{
	long n;

	if (o->iters > 0)
		return o->iters;
	n = size <= SMALL_MAX ? DEFAULT_ITERS_SMALL : DEFAULT_ITERS_LARGE;
	return o->quick ? n / 10 : n;
}

static long warmup_for(const struct opts *o)
{
	if (o->warmup >= 0)
		return o->warmup;
	return o->quick ? DEFAULT_WARMUP / 10 : DEFAULT_WARMUP;
}

/* The child: listen, report the address, serve one connection per size. */
static int server_main(const struct echo_transport *t, const struct opts *o,
		       struct echo_addr addr, int ready_fd, pid_t parent)
{
	void *srv = NULL;
	size_t i;
	int err;

	/* The parent's handler is not for the child: here the alarm kills. */
	signal(SIGALRM, SIG_DFL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		return 1;
	alarm(o->time_limit + GRACE);

	err = t->server_listen(&srv, &addr);
	addr.err = err;
	if (write(ready_fd, &addr, sizeof(addr)) != (ssize_t)sizeof(addr))
		return 1;
	close(ready_fd);
	if (err)
		return 1;
	for (i = 0; i < o->nsizes; i++) {
		err = t->server_serve(srv, o->sizes[i]);
		if (err) {
			echo_err("%s server: gave up at %zu-byte messages", t->name, o->sizes[i]);
			return 1;
		}
	}
	t->server_close(srv);
	return 0;
}

/* Read the child's report; 0, or -errno with the reason printed. */
static int read_ready(const struct echo_transport *t, int fd, struct echo_addr *addr)
{
	size_t off = 0;

	while (off < sizeof(*addr)) {
		ssize_t n = read(fd, (char *)addr + off, sizeof(*addr) - off);

		if (n == 0) {
			echo_err("%s: the server exited before it was listening", t->name);
			return -EPIPE;
		}
		if (n < 0) {
			if (errno == EINTR && !echo_timed_out)
				continue;
			echo_err("%s: waiting for the server to listen: %s", t->name,
				 errno == EINTR ? "time limit reached" : strerror(errno));
			return errno == EINTR ? -ETIMEDOUT : -errno;
		}
		off += (size_t)n;
	}
	if (addr->err) {
		echo_err("%s: the server could not listen: %s", t->name, strerror(-addr->err));
		return addr->err;
	}
	return 0;
}

/*
 * One connection, warm-up and timed round trips for one size. samples has
 * room for iters values. Returns 0 and fills *r, or -errno.
 */
static int measure(const struct echo_transport *t, const struct echo_addr *addr, size_t size,
		   long warmup, long iters, uint64_t *samples, struct result *r)
{
	uint64_t seq = ECHO_SEQ_FIRST;
	void *cli;
	long i;
	int err;

	err = t->client_open(&cli, addr, size);
	if (err)
		return err;
	for (i = 0; i < warmup && !err; i++)
		err = t->client_roundtrip(cli, seq++);
	for (i = 0; i < iters && !err; i++) {
		uint64_t t0 = echo_now_ns();

		err = t->client_roundtrip(cli, seq++);
		samples[i] = echo_now_ns() - t0;
		/* A transport that never blocks never sees EINTR: check here. */
		if (echo_timed_out && !err)
			err = -ETIMEDOUT;
	}
	t->client_close(cli);
	if (err)
		return err;
	stats_sort(samples, (size_t)iters);
	r->ok = 1;
	r->p50 = stats_percentile(samples, (size_t)iters, 50);
	r->p99 = stats_percentile(samples, (size_t)iters, 99);
	return 0;
}

/* Fill res[0..nsizes) for transport t. Returns 0 if every size was measured. */
static int run_transport(const struct echo_transport *t, const struct opts *o, uint64_t *samples,
			 struct result *res)
{
	struct echo_addr addr = { 0 };
	char dir[PATH_MAX] = "";
	int pfd[2], failed = 0, stuck = 0, status;
	size_t i;
	pid_t pid, parent = getpid();

	if (t->uses_path) {
		const char *tmp = getenv("TMPDIR");

		snprintf(dir, sizeof(dir), "%s/" PROG ".XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(dir)) {
			echo_err("%s: mkdtemp(%s): %s", t->name, dir, strerror(errno));
			return -1;
		}
		if ((size_t)snprintf(addr.path, sizeof(addr.path), "%s/echo.sock", dir) >=
		    sizeof(addr.path)) {
			echo_err("%s: socket path %s/echo.sock is too long", t->name, dir);
			rmdir(dir);
			return -1;
		}
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		echo_err("%s: pipe: %s", t->name, strerror(errno));
		failed = 1;
		goto out_dir;
	}
	/* Anything buffered would be written twice, once by each process. */
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		echo_err("%s: fork: %s", t->name, strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		failed = 1;
		goto out_dir;
	}
	if (pid == 0) {
		close(pfd[0]);
		_exit(server_main(t, o, addr, pfd[1], parent));
	}
	close(pfd[1]);

	echo_timed_out = 0;
	limit_child = pid;
	alarm(o->time_limit);

	if (read_ready(t, pfd[0], &addr) < 0) {
		stuck = 1;
	} else {
		for (i = 0; i < o->nsizes; i++) {
			size_t size = o->sizes[i];
			int err = measure(t, &addr, size, warmup_for(o), iters_for(o, size),
					  samples, &res[i]);

			if (err == -EMSGSIZE) {
				failed = 1; /* this size only; the server is in step */
				continue;
			}
			if (err) {
				echo_err("%s: gave up at %zu-byte messages%s", t->name, size,
					 echo_timed_out ? " (time limit reached)" : "");
				stuck = 1;
				break;
			}
		}
	}
	close(pfd[0]);
	/* After giving up, the server may be waiting for a connection that
	 * will not come; otherwise it exits once the last one is closed. */
	if (stuck) {
		failed = 1;
		kill(pid, SIGKILL);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			echo_err("%s: waitpid(%d): %s", t->name, (int)pid, strerror(errno));
			status = 0;
			break;
		}
	}
	alarm(0);
	limit_child = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		echo_err("%s: the server exited with status %d", t->name, WEXITSTATUS(status));
		failed = 1;
	} else if (WIFSIGNALED(status) && !stuck && !echo_timed_out) {
		echo_err("%s: the server was killed by signal %d", t->name, WTERMSIG(status));
		failed = 1;
	}
out_dir:
	if (t->uses_path) {
		unlink(addr.path);
		rmdir(dir);
	}
	return failed ? -1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options]\n"
		"Echo round-trip latency over xio and kernel transports, p50 and p99.\n"
		"  --sizes LIST       message sizes in bytes, e.g. 64,1k,16k,64k (the default);\n"
		"                     at least %u each\n"
		"  --transports LIST  a subset of xio-zc,xio,io_uring-tcp,io_uring-uds,tcp,uds\n"
		"  --iters N          timed round trips per size (default %d up to 16 KiB,\n"
		"                     %d above)\n"
		"  --warmup N         untimed round trips first (default %d)\n"
		"  --quick            a tenth of the default round trips and warm-up\n"
		"  --time-limit S     seconds per transport before it is given up (default %d)\n"
		"  --csv              print scenario,transport,size,metric,value lines only\n"
		"The xio rows need an xio-monitor; the library finds it through\n"
		"XIO_MONITOR_SOCK.\n",
		ECHO_MIN_SIZE, DEFAULT_ITERS_SMALL, DEFAULT_ITERS_LARGE, DEFAULT_WARMUP,
		DEFAULT_TIME_LIMIT);
}

/* A size: digits with an optional k/K/KiB or m/M/MiB suffix. */
static int parse_size(const char *s, size_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	if (!strcasecmp(end, "k") || !strcasecmp(end, "kib"))
		v <<= 10;
	else if (!strcasecmp(end, "m") || !strcasecmp(end, "mib"))
		v <<= 20;
	else if (*end)
		return -1;
	if (v < ECHO_MIN_SIZE || v > ECHO_MAX_SIZE)
		return -1;
	*out = (size_t)v;
	return 0;
}

static int parse_sizes(struct opts *o, const char *arg)
{
	char *copy = strdup(arg), *save = NULL, *tok;
	int err = 0;

	if (!copy)
		return -1;
	o->nsizes = 0;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (o->nsizes == MAX_SIZES || parse_size(tok, &o->sizes[o->nsizes]) < 0) {
			fprintf(stderr, PROG ": bad size '%s' (%u..%u bytes, at most %d sizes)\n",
				tok, ECHO_MIN_SIZE, ECHO_MAX_SIZE, MAX_SIZES);
			err = -1;
			break;
		}
		o->nsizes++;
	}
	free(copy);
	return err || o->nsizes == 0 ? -1 : 0;
}

static int parse_transports(struct opts *o, const char *arg)
{
	char *copy = strdup(arg), *save = NULL, *tok;
	int err = 0, any = 0;
	size_t i;

	if (!copy)
		return -1;
	memset(o->selected, 0, sizeof(o->selected));
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < NTRANSPORTS; i++)
			if (!strcmp(tok, transports[i]->name))
				break;
		if (i == NTRANSPORTS) {
			fprintf(stderr, PROG ": unknown transport '%s'\n", tok);
			err = -1;
			break;
		}
		o->selected[i] = any = 1;
	}
	free(copy);
	return err || !any ? -1 : 0;
}

static int parse_long(const char *s, long min, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min)
		return -1;
	*out = v;
	return 0;
}

static int parse_opts(struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "sizes", required_argument, NULL, 's' },
		{ "transports", required_argument, NULL, 't' },
		{ "iters", required_argument, NULL, 'n' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "quick", no_argument, NULL, 'q' },
		{ "time-limit", required_argument, NULL, 'T' },
		{ "csv", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const size_t default_sizes[] = { 64, 1u << 10, 16u << 10, 64u << 10 };
	long v;
	size_t i;
	int ch;

	memset(o, 0, sizeof(*o));
	for (i = 0; i < sizeof(default_sizes) / sizeof(default_sizes[0]); i++)
		o->sizes[o->nsizes++] = default_sizes[i];
	for (i = 0; i < NTRANSPORTS; i++)
		o->selected[i] = 1;
	o->warmup = -1;
	o->time_limit = DEFAULT_TIME_LIMIT;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			if (parse_sizes(o, optarg) < 0)
				return -1;
			break;
		case 't':
			if (parse_transports(o, optarg) < 0)
				return -1;
			break;
		case 'n':
			if (parse_long(optarg, 1, &o->iters) < 0) {
				fprintf(stderr, PROG ": bad --iters '%s'\n", optarg);
				return -1;
			}
			break;
		case 'w':
			if (parse_long(optarg, 0, &o->warmup) < 0) {
				fprintf(stderr, PROG ": bad --warmup '%s'\n", optarg);
				return -1;
			}
			break;
		case 'q':
			o->quick = 1;
			break;
		case 'T':
			/* alarm() takes unsigned seconds; keep the sum with GRACE sane. */
			if (parse_long(optarg, 1, &v) < 0 || v > 86400) {
				fprintf(stderr, PROG ": bad --time-limit '%s'\n", optarg);
				return -1;
			}
			o->time_limit = (unsigned)v;
			break;
		case 'c':
			o->csv = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return 0;
}

static const char *size_label(size_t size, char *buf, size_t len)
{
	if (size >= (1u << 20) && size % (1u << 20) == 0)
		snprintf(buf, len, "%zu MiB", size >> 20);
	else if (size >= 1024 && size % 1024 == 0)
		snprintf(buf, len, "%zu KiB", size >> 10);
	else
		snprintf(buf, len, "%zu B", size);
	return buf;
}

static int transport_index(const char *name)
{
	size_t i;

	for (i = 0; i < NTRANSPORTS; i++)
		if (!strcmp(transports[i]->name, name))
			return (int)i;
	return -1;
}

/* "a / b" as "N.NNx", or "n/a" when either side was not measured. */
static void print_ratio(const struct result *a, const struct result *b)
{
	if (a->ok && b->ok && b->p50 > 0)
		printf("  %20.2fx", (double)a->p50 / (double)b->p50);
	else
		printf("  %21s", "n/a");
}

static void print_table(const struct opts *o, struct result res[][MAX_SIZES])
{
	int zc = transport_index("xio-zc"), xio = transport_index("xio");
	int ur = transport_index("io_uring-tcp"), tcp = transport_index("tcp");
	char label[32];
	size_t i, k;

	printf("echo round trip, p50 / p99 in microseconds\n\n%-8s", "size");
	for (k = 0; k < NTRANSPORTS; k++)
		if (o->selected[k])
			printf("  %19s", transports[k]->name);
	printf("\n");
	for (i = 0; i < o->nsizes; i++) {
		printf("%-8s", size_label(o->sizes[i], label, sizeof(label)));
		for (k = 0; k < NTRANSPORTS; k++) {
			char cell[48];

			if (!o->selected[k])
				continue;
			if (res[k][i].ok)
				snprintf(cell, sizeof(cell), "%.2f / %.2f", res[k][i].p50 / 1e3,
					 res[k][i].p99 / 1e3);
			else
				snprintf(cell, sizeof(cell), "failed");
			printf("  %19s", cell);
		}
		printf("\n");
	}

	printf("\nratios of p50 (higher: xio faster)\n%-8s  %21s  %21s\n", "size",
	       "io_uring-tcp / xio-zc", "tcp / xio");
	for (i = 0; i < o->nsizes; i++) {
		printf("%-8s", size_label(o->sizes[i], label, sizeof(label)));
		print_ratio(&res[ur][i], &res[zc][i]);
		print_ratio(&res[tcp][i], &res[xio][i]);
		printf("\n");
	}
	if (o->nsizes > 1) {
		size_t lo = 0, hi = 0;
		char l1[32], l2[32];

		for (i = 1; i < o->nsizes; i++) {
			if (o->sizes[i] < o->sizes[lo])
				lo = i;
			if (o->sizes[i] > o->sizes[hi])
				hi = i;
		}
		printf("xio-zc p50 at %s / at %s:", size_label(o->sizes[hi], l1, sizeof(l1)),
		       size_label(o->sizes[lo], l2, sizeof(l2)));
		if (res[zc][hi].ok && res[zc][lo].ok && res[zc][lo].p50 > 0)
			printf(" %.2fx (zero copy: ideally near 1)\n",
			       (double)res[zc][hi].p50 / (double)res[zc][lo].p50);
		else
			printf(" n/a\n");
	}
}

static void print_csv(const struct opts *o, struct result res[][MAX_SIZES])
{
	size_t i, k;

	printf("scenario,transport,size,metric,value\n");
	for (k = 0; k < NTRANSPORTS; k++) {
		if (!o->selected[k])
			continue;
		for (i = 0; i < o->nsizes; i++) {
			if (!res[k][i].ok)
				continue;
			printf("echo,%s,%zu,rtt_p50_ns,%" PRIu64 "\n", transports[k]->name,
			       o->sizes[i], res[k][i].p50);
			printf("echo,%s,%zu,rtt_p99_ns,%" PRIu64 "\n", transports[k]->name,
			       o->sizes[i], res[k][i].p99);
		}
	}
}

int main(int argc, char **argv)
{
	static struct result res[NTRANSPORTS][MAX_SIZES];
	struct sigaction sa = { 0 };
	struct opts o;
	uint64_t *samples;
	long max_iters = 0;
	int failed = 0;
	size_t i, k;

	if (parse_opts(&o, argc, argv) < 0)
		return 2;
	for (i = 0; i < o.nsizes; i++)
		if (iters_for(&o, o.sizes[i]) > max_iters)
			max_iters = iters_for(&o, o.sizes[i]);
	samples = malloc((size_t)max_iters * sizeof(*samples));
	if (!samples) {
		echo_err("out of memory for %ld samples", max_iters);
		return 1;
	}

	/* A peer that dies must show up as an error from write, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	/* No SA_RESTART: the time limit has to interrupt blocking calls. */
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);

	for (k = 0; k < NTRANSPORTS; k++) {
		if (!o.selected[k])
			continue;
		if (run_transport(transports[k], &o, samples, res[k]) < 0)
			failed = 1;
	}
	free(samples);

	if (o.csv)
		print_csv(&o, res);
	else
		print_table(&o, res);
	return failed;
}
