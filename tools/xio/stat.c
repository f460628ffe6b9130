/*
 * stat.c - xio stat [--json] [--watch [--interval SECS] [--count N]]
 *
 * The connection table as the monitor sees it: per connection the
 * 4-tuple, both ends' pids and programs, bytes and messages each way, how
 * full each direction's buffer is, the age, and the transport (shared
 * memory, or TCP and why); then totals per process. --watch redraws it in
 * place, like top.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xio/seg.h"
#include "xio_tool.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: xio stat [--json] [--watch [--interval SECS] [--count N]]\n"
		   "Show the monitor's connection table, then totals per process.\n"
		   "  --json           one JSON document (with --watch: one per line, per refresh)\n"
		   "  --watch          refresh in place, like top (Ctrl-C to stop)\n"
		   "  --interval SECS  time between refreshes (default 1; 0.1 .. 3600)\n"
		   "  --count N        stop after N refreshes (default: never)\n"
		   "Connections on TCP are the last %u the monitor sent back to the kernel,\n"
		   "with the reason; their age is the time since that decision.\n"
		   "Exit status: 0, 1 if no monitor answers, 2 for bad usage.\n",
		XIO_CONNS_RECENT_TCP);
}

struct proc_total {
	uint32_t pid;
	char comm[16];
	unsigned conns, shm, tcp;
	uint64_t out, in;
};

struct table {
	struct xio_msg_status st;
	struct xio_msg_conn_info *c;
	size_t n;
	struct proc_total *p;
	size_t np;
};

static const char *transport_name(const struct xio_msg_conn_info *c)
{
	switch (c->transport) {
	case XIO_CONN_SHM: return "shm";
	case XIO_CONN_TCP: return "tcp";
	case XIO_CONN_MOVED: return "tcp-moved";
	default: return "?";
	}
}

/* Why a connection is on TCP: "acl", "moved:exec", ... ("" on shm). */
static const char *why_tcp(const struct xio_msg_conn_info *c, char *buf, size_t len)
{
	buf[0] = 0;
	if (c->transport == XIO_CONN_TCP)
		snprintf(buf, len, "%s", xio_fallback_reason_name(c->reason));
	else if (c->transport == XIO_CONN_MOVED)
		snprintf(buf, len, "%s", xio_leave_reason_name(c->left[0] ? c->left[0] : c->left[1]));
	return buf;
}

static struct proc_total *proc_slot(struct table *t, uint32_t pid, const char *comm)
{
	for (size_t i = 0; i < t->np; i++)
		if (t->p[i].pid == pid)
			return &t->p[i];
	void *np = realloc(t->p, (t->np + 1) * sizeof(*t->p));
	if (!np)
		return NULL;
	t->p = np;
	struct proc_total *p = &t->p[t->np++];
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	memcpy(p->comm, comm, 15);
	return p;
}

static int by_pid(const void *a, const void *b)
{
	const struct proc_total *x = a, *y = b;
	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static void totals(struct table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct xio_msg_conn_info *c = &t->c[i];
		for (int s = 0; s < 2; s++) {
			if (!c->pid[s])
				continue;
			struct proc_total *p = proc_slot(t, c->pid[s], c->comm[s]);
			if (!p)
				continue;
			p->conns++;
			if (c->transport == XIO_CONN_SHM)
				p->shm++;
			else
				p->tcp++;
			p->out += c->bytes[s];
			p->in += c->bytes[1 - s];
		}
	}
	qsort(t->p, t->np, sizeof(*t->p), by_pid);
}

/* A program name is whatever its process chose to call itself (prctl,
 * /proc/PID/comm): shown, never obeyed. Bytes that are not printable ASCII
 * (an escape sequence aimed at the terminal of whoever runs xio stat,
 * root's included) become '?'. */
static void tame(char name[16])
{
	name[15] = 0;
	for (char *q = name; *q; q++)
		if (*q < 0x20 || *q > 0x7e)
			*q = '?';
}

static int fetch(const char *sock, struct table *t, uint32_t *mon_uid)
{
	memset(t, 0, sizeof(*t));
	int fd = xio_tool_ctl_open(sock, mon_uid);
	if (fd < 0)
		return fd;
	int e = xio_tool_ctl_status(fd, &t->st);
	if (e == 0)
		e = xio_tool_ctl_conns(fd, &t->c, &t->n);
	close(fd);
	for (size_t i = 0; e == 0 && i < t->n; i++)
		for (int s = 0; s < 2; s++)
			tame(t->c[i].comm[s]);
	if (e == 0)
		totals(t);
	return e;
}

static void table_free(struct table *t)
{
	free(t->c);
	free(t->p);
}

/* 1234 -> "1234", 12345 -> "12.1K", ... (powers of 1024, bytes). */
static const char *human(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGTP";
	if (v < 10000) {
		snprintf(buf, len, "%llu", (unsigned long long)v);
		return buf;
	}
	double d = (double)v;
	int u = -1;
	while (d >= 1024 && u < 4) {
		d /= 1024;
		u++;
	}
	snprintf(buf, len, d < 100 ? "%.1f%c" : "%.0f%c", d, units[u]);
	return buf;
}

static const char *age_str(uint64_t ms, char *buf, size_t len)
{
	uint64_t s = ms / 1000;
	if (s < 60)
		snprintf(buf, len, "%llu.%llus", (unsigned long long)s,
			 (unsigned long long)(ms % 1000 / 100));
	else if (s < 3600)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60));
	return buf;
}

static const char *who(uint32_t pid, const char *comm, char *buf, size_t len)
{
	if (!pid)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%u/%.15s", pid, comm[0] ? comm : "?");
	return buf;
}

/* Occupancy of each direction's buffer, in percent: "3%/0%". */
static const char *queue_str(const struct xio_msg_conn_info *c, char *buf, size_t len)
{
	if (c->transport == XIO_CONN_TCP || !c->buf_bytes) {
		snprintf(buf, len, "-");
		return buf;
	}
	unsigned q[2];
	for (int d = 0; d < 2; d++) {
		uint64_t v = c->queued[d] > c->buf_bytes ? c->buf_bytes : c->queued[d];
		q[d] = (unsigned)((v * 100 + c->buf_bytes - 1) / c->buf_bytes);
	}
	snprintf(buf, len, "%u%%/%u%%", q[0], q[1]);
	return buf;
}

static void print_text(FILE *f, const char *sock, const struct table *t)
{
	char a[64], b[64], c1[40], c2[40], h1[16], h2[16], h3[16], h4[16], q[24], age[24], why[32];
	size_t nshm = 0;
	for (size_t i = 0; i < t->n; i++)
		nshm += t->c[i].transport == XIO_CONN_SHM;
	fprintf(f,
		"monitor %s: %u processes, %u listeners, %zu connections on shared memory; "
		"since start %llu accelerated, %llu left on TCP\n\n",
		sock, t->st.procs, t->st.listeners, nshm, (unsigned long long)t->st.accel_total,
		(unsigned long long)t->st.fallback_total);
	fprintf(f, "%-6s %-21s %-21s %-22s %-22s %-22s %8s %7s %8s %7s %9s %8s\n", "ID", "CLIENT",
		"SERVER", "CLIENT PID/PROGRAM", "SERVER PID/PROGRAM", "TRANSPORT", "C>S B", "MSGS",
		"S>C B", "MSGS", "QUEUE", "AGE");
	if (!t->n)
		fprintf(f, "(no connections)\n");
	for (size_t i = 0; i < t->n; i++) {
		const struct xio_msg_conn_info *c = &t->c[i];
		char tr[40];
		why_tcp(c, why, sizeof(why));
		snprintf(tr, sizeof(tr), "%s%s%s", transport_name(c), why[0] ? ":" : "", why);
		int tcp = c->transport == XIO_CONN_TCP;
		fprintf(f, "%-6llu %-21s %-21s %-22s %-22s %-22s %8s %7s %8s %7s %9s %8s%s\n",
			(unsigned long long)c->id, xio_tool_ep_str(&c->client, a, sizeof(a)),
			xio_tool_ep_str(&c->server, b, sizeof(b)),
			who(c->pid[0], c->comm[0], c1, sizeof(c1)),
			who(c->pid[1], c->comm[1], c2, sizeof(c2)), tr,
			tcp ? "-" : human(c->bytes[0], h1, sizeof(h1)),
			tcp ? "-" : human(c->msgs[0], h2, sizeof(h2)),
			tcp ? "-" : human(c->bytes[1], h3, sizeof(h3)),
			tcp ? "-" : human(c->msgs[1], h4, sizeof(h4)), queue_str(c, q, sizeof(q)),
			age_str(c->age_ms, age, sizeof(age)), tcp ? " ago" : "");
	}
	fprintf(f, "\n%-8s %-16s %6s %6s %6s %10s %10s\n", "PID", "PROGRAM", "CONNS", "SHM", "TCP",
		"BYTES OUT", "BYTES IN");
	for (size_t i = 0; i < t->np; i++) {
		const struct proc_total *p = &t->p[i];
		fprintf(f, "%-8u %-16.15s %6u %6u %6u %10s %10s\n", p->pid,
			p->comm[0] ? p->comm : "?", p->conns, p->shm, p->tcp,
			human(p->out, h1, sizeof(h1)), human(p->in, h2, sizeof(h2)));
	}
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_end(FILE *f, const struct xio_msg_conn_info *c, int s)
{
	char a[INET6_ADDRSTRLEN];
	const struct xio_msg_ep *ep = s ? &c->server : &c->client;
	fprintf(f, "{\"address\":");
	if (ep->family && inet_ntop(ep->family, ep->addr, a, sizeof(a)))
		json_str(f, a);
	else
		fprintf(f, "null");
	fprintf(f, ",\"port\":%u,\"pid\":", ep->family ? ep->port : 0);
	if (c->pid[s])
		fprintf(f, "%u,\"program\":", c->pid[s]);
	else
		fprintf(f, "null,\"program\":");
	if (c->pid[s] && c->comm[s][0])
		json_str(f, c->comm[s]);
	else
		fprintf(f, "null");
	fputc('}', f);
}

static void print_json(FILE *f, const char *sock, const struct table *t)
{
	char why[32];
	fprintf(f, "{\"socket\":");
	json_str(f, sock);
	fprintf(f,
		",\"monitor\":{\"processes\":%u,\"listeners\":%u,\"connections\":%u,"
		"\"accelerated_total\":%llu,\"fallback_total\":%llu},\"connections\":[",
		t->st.procs, t->st.listeners, t->st.conns, (unsigned long long)t->st.accel_total,
		(unsigned long long)t->st.fallback_total);
	for (size_t i = 0; i < t->n; i++) {
		const struct xio_msg_conn_info *c = &t->c[i];
		fprintf(f, "%s{\"id\":%llu,\"transport\":\"%s\",\"reason\":", i ? "," : "",
			(unsigned long long)c->id, transport_name(c));
		if (why_tcp(c, why, sizeof(why))[0])
			json_str(f, why);
		else
			fprintf(f, "null");
		fprintf(f, ",\"client\":");
		json_end(f, c, 0);
		fprintf(f, ",\"server\":");
		json_end(f, c, 1);
		fprintf(f,
			",\"bytes\":{\"c2s\":%llu,\"s2c\":%llu},\"msgs\":{\"c2s\":%llu,\"s2c\":%llu},"
			"\"queued\":{\"c2s\":%llu,\"s2c\":%llu},\"buffer_bytes\":%u,"
			"\"hugepages\":%s,\"age_ms\":%llu,\"netns\":%llu}",
			(unsigned long long)c->bytes[0], (unsigned long long)c->bytes[1],
			(unsigned long long)c->msgs[0], (unsigned long long)c->msgs[1],
			(unsigned long long)c->queued[0], (unsigned long long)c->queued[1],
			c->buf_bytes, c->flags & XIO_SEG_F_HUGE ? "true" : "false",
			(unsigned long long)c->age_ms, (unsigned long long)c->netns);
	}
	fprintf(f, "],\"processes\":[");
	for (size_t i = 0; i < t->np; i++) {
		const struct proc_total *p = &t->p[i];
		fprintf(f, "%s{\"pid\":%u,\"program\":", i ? "," : "", p->pid);
		if (p->comm[0])
			json_str(f, p->comm);
		else
			fprintf(f, "null");
		fprintf(f,
			",\"connections\":%u,\"shm\":%u,\"tcp\":%u,\"bytes_out\":%llu,"
			"\"bytes_in\":%llu}",
			p->conns, p->shm, p->tcp, (unsigned long long)p->out,
			(unsigned long long)p->in);
	}
	fprintf(f, "]}\n");
}

static int parse_count(const char *s, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || errno || *s == '-' || v < 1 || v > 1000000)
		return -1;
	*out = v;
	return 0;
}

int xio_cmd_stat(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, 0, 'j' },
					      { "watch", no_argument, 0, 'w' },
					      { "interval", required_argument, 0, 'i' },
					      { "count", required_argument, 0, 'n' },
					      { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	int json = 0, watch = 0, o;
	double interval = 1;
	unsigned long count = 0;
	char *end;

	while ((o = getopt_long(argc, argv, "jwi:n:h", opts, NULL)) != -1) {
		switch (o) {
		case 'j': json = 1; break;
		case 'w': watch = 1; break;
		case 'i':
			errno = 0;
			interval = strtod(optarg, &end);
			if (!*optarg || *end || errno || !isfinite(interval) || interval < 0.1 ||
			    interval > 3600) {
				fprintf(stderr, "xio stat: --interval takes seconds (0.1 .. 3600), "
						"not '%s'\n",
					optarg);
				return XIO_EXIT_USAGE;
			}
			break;
		case 'n':
			if (parse_count(optarg, &count) < 0) {
				fprintf(stderr, "xio stat: --count takes a number (1 .. 1000000), not "
						"'%s'\n",
					optarg);
				return XIO_EXIT_USAGE;
			}
			break;
		case 'h': usage(stdout); return XIO_EXIT_OK;
		default: usage(stderr); return XIO_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "xio stat: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return XIO_EXIT_USAGE;
	}
	if (!watch)
		count = 1;

	const char *sock = xio_tool_sock_path();
	for (unsigned long i = 0; !count || i < count; i++) {
		struct table t;
		if (i > 0) {
			struct timespec ts = { .tv_sec = (time_t)interval };
			ts.tv_nsec = (long)((interval - (double)ts.tv_sec) * 1e9);
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		uint32_t mon_uid;
		int e = fetch(sock, &t, &mon_uid);
		if (e < 0 && mon_uid != XIO_CTL_NO_CRED) {
			fprintf(stderr,
				"xio stat: the monitor on %s runs as uid %u, neither root nor you "
				"(uid %u): your programs do not use it, and it is not asked\n",
				sock, (unsigned)mon_uid, (unsigned)geteuid());
			table_free(&t);
			return XIO_EXIT_PROBLEM;
		}
		if (e < 0) {
			fprintf(stderr,
				"xio stat: no monitor answers on %s (%s): start one with `xio "
				"monitor`, or run a program with `xio run`\n",
				sock, strerror(-e));
			table_free(&t);
			return XIO_EXIT_PROBLEM;
		}
		if (json) {
			print_json(stdout, sock, &t);
		} else {
			if (watch) {
				/* Home and clear below, then the frame: no flicker
				 * of an empty screen. */
				char ts[16];
				time_t now = time(NULL);
				strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&now));
				printf("\033[H\033[J" "xio stat  %s  every %gs (Ctrl-C to stop)\n", ts,
				       interval);
			}
			print_text(stdout, sock, &t);
		}
		fflush(stdout);
		table_free(&t);
	}
	return XIO_EXIT_OK;
}
