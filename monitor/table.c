/*
 * table.c - the connection table as xio stat sees it (XIO_MSG_CONNS in
 * core/include/xio/ctl.h): the live accelerated connections, read from
 * their segments, and a short history of the connections answered
 * FALLBACK, which stay on the kernel's TCP where the monitor no longer
 * sees them.
 *
 * A process sees its own rows: those where a process at either end has its
 * uid, as the monitor recorded it. Root (uid 0 as the monitor sees it; not
 * the root of another user namespace) sees every row. Others' addresses,
 * pids, program names and byte counts are theirs (docs/design.md, "What
 * each process may see").
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"
#include "xio/sys.h"

uint64_t mon_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The program name of pid, "" if it cannot be read (gone, or hidden). */
static void proc_comm(pid_t pid, char out[16])
{
	char path[32];
	memset(out, 0, 16);
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, out, 15);
	close(fd);
	if (n <= 0) {
		out[0] = 0;
		return;
	}
	out[n] = 0;
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = 0;
}

/* Record a FALLBACK answer. Both ends of one connection are usually
 * answered, one after the other: the second answer completes the first's
 * record instead of taking another slot. */
void mon_recent_tcp(struct monitor *m, const struct mon_ckey *k, struct mon_proc *p,
		    unsigned side, int reason)
{
	struct mon_recent *r = NULL;
	side &= 1;
	if (k)
		for (unsigned i = 0; i < XIO_CONNS_RECENT_TCP; i++) {
			struct mon_recent *q = &m->recent[i];
			if (q->id && q->has_key && !q->pid[side] &&
			    !memcmp(&q->key, k, sizeof(*k))) {
				r = q;
				break;
			}
		}
	if (!r) {
		r = &m->recent[m->recent_next];
		m->recent_next = (m->recent_next + 1) % XIO_CONNS_RECENT_TCP;
		memset(r, 0, sizeof(*r));
		r->id = ++m->next_id;
		r->when_ms = mon_now_ms();
		r->reason = reason;
		if (k) {
			r->has_key = 1;
			r->key = *k;
		}
	}
	r->pid[side] = p->pid;
	r->uid[side] = p->uid;
	proc_comm(p->pid, r->comm[side]);
}

/* A live connection is uid's if its client was of uid when the connection
 * was decided, or if a process holding either side is of uid now (the uid
 * of its last message). */
static int conn_is_of(const struct mon_conn *c, uint32_t uid)
{
	if (c->client_uid == uid)
		return 1;
	for (int s = 0; s < 2; s++)
		for (int i = 0; i < MON_OWNERS; i++)
			if (c->side[s][i] && c->side[s][i]->uid == uid)
				return 1;
	return 0;
}

/* A FALLBACK row is uid's if a process it answered was of uid then. */
static int recent_is_of(const struct mon_recent *r, uint32_t uid)
{
	for (int s = 0; s < 2; s++)
		if (r->pid[s] && r->uid[s] == uid)
			return 1;
	return 0;
}

static void put_ep(struct xio_msg_ep *w, const struct xio_ep *ep)
{
	w->family = ep->family;
	w->port = ep->port;
	memcpy(w->addr, ep->addr, sizeof(w->addr));
}

/* The endpoints write these words; a peer may have scribbled on them,
 * and they are only shown. */
static int read_counts(void *base, const struct xio_seg_layout *l, void *arg)
{
	struct xio_msg_conn_info *ci = arg;
	const struct xio_seg_hdr *h = base;
	for (int s = 0; s < 2; s++) {
		ci->left[s] = atomic_load_explicit(&h->left[s], memory_order_relaxed);
		if (ci->left[s])
			ci->transport = XIO_CONN_MOVED;
	}
	for (int d = 0; d < 2; d++) {
		struct xio_chan_ctl *ctl = (void *)((char *)base + l->chan_off[d]);
		uint64_t tx = atomic_load_explicit(&ctl->tx_bytes, memory_order_relaxed);
		uint64_t rx = atomic_load_explicit(&ctl->rx_bytes, memory_order_relaxed);
		ci->bytes[d] = tx;
		ci->msgs[d] = atomic_load_explicit(&ctl->tx_msgs, memory_order_relaxed);
		ci->queued[d] = tx > rx ? tx - rx : 0;
	}
	return 0;
}

static void fill_live(struct monitor *m, const struct xio_seg_layout *l, struct mon_conn *c,
		      struct xio_msg_conn_info *ci, uint64_t now)
{
	ci->id = c->id;
	ci->age_ms = now - c->born_ms;
	ci->netns = c->key.netns;
	put_ep(&ci->client, &c->key.client);
	put_ep(&ci->server, &c->key.server);
	for (int s = 0; s < 2; s++)
		for (int i = 0; i < MON_OWNERS; i++)
			if (c->side[s][i]) {
				ci->pid[s] = (uint32_t)c->side[s][i]->pid;
				proc_comm(c->side[s][i]->pid, ci->comm[s]);
				break;
			}
	ci->transport = XIO_CONN_SHM;
	ci->flags = c->huge ? XIO_SEG_F_HUGE : 0;
	ci->buf_bytes = (uint32_t)l->buf_bytes;
	mon_conn_seg_run(m, c, read_counts, ci);
}

static void fill_recent(const struct mon_recent *r, struct xio_msg_conn_info *ci, uint64_t now)
{
	ci->id = r->id;
	ci->age_ms = now - r->when_ms;
	ci->transport = XIO_CONN_TCP;
	ci->reason = r->reason;
	if (r->has_key) {
		ci->netns = r->key.netns;
		put_ep(&ci->client, &r->key.client);
		put_ep(&ci->server, &r->key.server);
	}
	for (int s = 0; s < 2; s++) {
		ci->pid[s] = (uint32_t)r->pid[s];
		memcpy(ci->comm[s], r->comm[s], 16);
	}
}

struct entry {
	uint64_t id;
	struct mon_conn *conn;
	const struct mon_recent *recent;
};

static int by_id(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static void send_to(struct mon_proc *p, void *msg, uint16_t type, uint32_t seq)
{
	xio_ctl_hdr(msg, type, seq);
	/* A page fits the socket's buffer; a reader that does not read only
	 * loses its own answer. */
	xio_ctl_send(p->sock, msg, -1, MSG_DONTWAIT);
}

void mon_conns_reply(struct monitor *m, struct mon_proc *p, const struct mon_msg *msg)
{
	const struct xio_msg_conns *req = (const void *)&msg->u;
	uint32_t seq = msg->u.h.seq;
	struct xio_msg_conns_end end;
	struct xio_seg_layout l;
	size_t n = 0, cap = HASH_CNT(hh, m->conns) + XIO_CONNS_RECENT_TCP;
	struct entry *ents = calloc(cap ? cap : 1, sizeof(*ents));

	memset(&end, 0, sizeof(end));
	end.last = req->after;
	if (!ents || xio_seg_layout(&m->params, &l) < 0) {
		free(ents);
		send_to(p, &end, XIO_MSG_CONNS_END, seq);
		return;
	}
	/* The asker as of this very message (mon_handle took its uid). */
	int all = p->uid == 0;
	struct mon_conn *c, *tmp;
	HASH_ITER(hh, m->conns, c, tmp)
	{
		/* An entry not (yet) accelerated is about to be answered
		 * FALLBACK, and will show up among the recent ones. */
		if (c->accel && c->id > req->after && (all || conn_is_of(c, p->uid)))
			ents[n++] = (struct entry){ .id = c->id, .conn = c };
	}
	for (unsigned i = 0; i < XIO_CONNS_RECENT_TCP; i++)
		if (m->recent[i].id > req->after && (all || recent_is_of(&m->recent[i], p->uid)))
			ents[n++] = (struct entry){ .id = m->recent[i].id, .recent = &m->recent[i] };
	qsort(ents, n, sizeof(*ents), by_id);

	uint64_t now = mon_now_ms();
	size_t page = n < XIO_CONNS_PAGE ? n : XIO_CONNS_PAGE;
	for (size_t i = 0; i < page; i++) {
		struct xio_msg_conn_info ci;
		memset(&ci, 0, sizeof(ci));
		if (ents[i].conn)
			fill_live(m, &l, ents[i].conn, &ci, now);
		else
			fill_recent(ents[i].recent, &ci, now);
		send_to(p, &ci, XIO_MSG_CONN_INFO, seq);
		end.last = ents[i].id;
	}
	end.count = (uint32_t)page;
	end.more = n > page;
	free(ents);
	send_to(p, &end, XIO_MSG_CONNS_END, seq);
}
