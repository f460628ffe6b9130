/*
 * state.c - the monitor's tables and their lifetimes. Every object is
 * owned through a process; mon_proc_reclaim() frees all a process held.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "monitor.h"
#include "xio/sys.h"

struct mon_proc *mon_proc_add(struct monitor *m, int sock)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	struct mon_proc *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	if (xio_sys_getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0 ||
	    !(p->u = mon_uid_get(m, cr.uid))) {
		free(p);
		return NULL;
	}
	/* Every message then carries the sender's uid as it sends it. */
	int one = 1;
	xio_sys_setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
	p->sock = sock;
	p->id = ++m->next_id;
	p->pid = cr.pid;
	p->uid = cr.uid;
	p->gid = cr.gid;
	if (!mon_session_take(m, p)) {
		free(p); /* the caller closes sock: the process stays on TCP */
		return NULL;
	}
	HASH_ADD_INT(m->procs, sock, p);
	return p;
}

int mon_listener_add(struct monitor *m, struct mon_listener *l, uint64_t cookie)
{
	struct mon_lsock *ls = mon_lsock_find(m, cookie);
	if (!ls) {
		if (!(ls = calloc(1, sizeof(*ls))))
			return -ENOMEM;
		ls->cookie = cookie;
		HASH_ADD(hh, m->lsocks, cookie, sizeof(ls->cookie), ls);
	}
	l->ls = ls;
	l->next = ls->regs;
	ls->regs = l;
	HASH_ADD(hh, m->listeners, id, sizeof(l->id), l);
	return 0;
}

void mon_listener_remove(struct monitor *m, struct mon_listener *l)
{
	struct mon_lsock *ls = l->ls;
	struct mon_listener **pp = &ls->regs;
	while (*pp != l)
		pp = &(*pp)->next;
	*pp = l->next;
	if (!ls->regs) {
		HASH_DEL(m->lsocks, ls);
		free(ls);
	}
	HASH_DEL(m->listeners, l);
	mon_limit_put(m, l->proc, l->proc->u, MON_LIMIT_LISTENERS);
	free(l);
}

struct mon_lsock *mon_lsock_find(struct monitor *m, uint64_t cookie)
{
	struct mon_lsock *ls;
	HASH_FIND(hh, m->lsocks, &cookie, sizeof(cookie), ls);
	return ls;
}

struct mon_intent *mon_intent_find(struct monitor *m, struct mon_proc *p, uint64_t intent)
{
	struct mon_intent_key k = { .proc_id = p->id, .intent = intent };
	struct mon_intent *in;
	HASH_FIND(hh, m->intents, &k, sizeof(k), in);
	return in;
}

struct mon_intent *mon_intent_by_cookie(struct monitor *m, uint64_t cookie)
{
	struct mon_intent *in;
	HASH_FIND(hh_cookie, m->intents_by_cookie, &cookie, sizeof(cookie), in);
	return in;
}

void mon_intent_add(struct monitor *m, struct mon_intent *in)
{
	HASH_ADD(hh, m->intents, key, sizeof(in->key), in);
	HASH_ADD(hh_cookie, m->intents_by_cookie, cookie, sizeof(in->cookie), in);
	m->nintents++;
}

void mon_intent_drop(struct monitor *m, struct mon_intent *in)
{
	HASH_DELETE(hh, m->intents, in);
	HASH_DELETE(hh_cookie, m->intents_by_cookie, in);
	if (in->conn)
		in->conn->intent = NULL;
	/* Our copy of the client's socket must go at once: while we hold it
	 * the kernel will not send FIN when the client closes. */
	mon_close_handed(in->fd);
	mon_limit_put(m, in->proc, in->proc->u, MON_LIMIT_INTENT);
	m->nintents--;
	free(in);
}

struct mon_conn *mon_conn_new(struct monitor *m, const struct mon_ckey *k)
{
	struct mon_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->key = *k;
	c->id = ++m->next_id;
	c->segfd = -1;
	c->born_ms = mon_now_ms();
	HASH_ADD(hh, m->conns, key, sizeof(c->key), c);
	HASH_ADD(hh_id, m->conns_by_id, id, sizeof(c->id), c);
	return c;
}

/* Close c's segment fd (if it is held) and give it back to its uid. */
static void conn_close_fd(struct monitor *m, struct mon_conn *c)
{
	if (c->segfd < 0)
		return;
	xio_sys_close(c->segfd);
	c->segfd = -1;
	/* Every segment is made after its connection was taken (conn_decide). */
	if (c->owner_uid)
		mon_limit_fd_put(m, c->owner_uid);
}

void mon_conn_settle(struct monitor *m, struct mon_conn *c)
{
	if (c->view && c->decided[0] && c->decided[1])
		conn_close_fd(m, c);
}

void mon_conn_uncharge(struct monitor *m, struct mon_conn *c)
{
	if (!c->charged_uid)
		return;
	mon_limit_put(m, c->charged, c->charged_uid, MON_LIMIT_WAITING);
	c->charged = NULL;
	c->charged_uid = NULL;
}

void mon_conn_free(struct monitor *m, struct mon_conn *c)
{
	if (c->intent) {
		/* The server side paired and is gone already: the client
		 * must not get a fresh segment nobody will read. */
		c->intent->conn = NULL;
		c->intent->orphaned = 1;
	}
	mon_conn_uncharge(m, c);
	conn_close_fd(m, c);
	mon_bulk_learn(m, c);
	mon_seg_view_unmap(c);
	if (c->owner_uid) {
		c->owner_uid->huge_pages -= c->huge_pages;
		mon_limit_put(m, c->owner, c->owner_uid, MON_LIMIT_CONNS);
	}
	HASH_DELETE(hh, m->conns, c);
	HASH_DELETE(hh_id, m->conns_by_id, c);
	free(c);
}

int mon_side_has(const struct mon_conn *c, unsigned side, const struct mon_proc *p)
{
	for (int i = 0; i < MON_OWNERS; i++)
		if (c->side[side][i] == p)
			return 1;
	return 0;
}

int mon_side_any(const struct mon_conn *c, unsigned side)
{
	for (int i = 0; i < MON_OWNERS; i++)
		if (c->side[side][i])
			return 1;
	return 0;
}

int mon_side_add(struct mon_conn *c, unsigned side, struct mon_proc *p)
{
	if (mon_side_has(c, side, p))
		return 0;
	for (int i = 0; i < MON_OWNERS; i++)
		if (!c->side[side][i]) {
			c->side[side][i] = p;
			return 0;
		}
	return -ENOSPC;
}

/* 1 if a process holds the socket of side, 0 if none does, -errno if the
 * kernel cannot be asked now (never taken for "none": a side wrongly
 * marked gone ends a connection that a forked child still uses). The
 * processes that hold either side are in the connection's namespace, or
 * were: through them the monitor can ask there again if its socket for
 * that namespace was given up for others. */
static int side_held(const struct mon_conn *c, unsigned side)
{
	const struct xio_ep *me = side ? &c->key.server : &c->key.client;
	const struct xio_ep *peer = side ? &c->key.client : &c->key.server;
	pid_t pids[2 * MON_OWNERS];
	unsigned n = 0;
	for (unsigned s = 0; s < 2; s++)
		for (unsigned i = 0; i < MON_OWNERS; i++)
			if (c->side[s][i] && !c->side[s][i]->dead)
				pids[n++] = c->side[s][i]->pid;
	return mon_diag_held(c->key.netns, pids, n, me, peer);
}

/* Room for one more waiting side; 0 if memory is short. */
static int gone_room(struct monitor *m)
{
	if (m->ngone < m->gone_cap)
		return 1;
	unsigned cap = m->gone_cap ? 2 * m->gone_cap : 16;
	struct mon_gone *g = realloc(m->gone, cap * sizeof(*g));
	if (!g)
		return 0;
	m->gone = g;
	m->gone_cap = cap;
	return 1;
}

/*
 * The last owner of side died. Its peer is told (side_gone: end of file
 * after what is queued, EPIPE on writes) once no process holds the side's
 * socket: a forked child, which never told us it holds the connection,
 * may go on using it, and its peer must see no end before the child's.
 * The kernel knows who holds it (diag.c), but when the hang-up of the
 * control socket reaches us the dying process's other files are often
 * still being released. So a side still held, or one the kernel cannot be
 * asked about now, is asked about again 1 ms later, then at doubling
 * intervals up to a second, while its entry lives and no owner came back.
 * When no process holds it, the kernel's FIN or RST is on its way to the
 * peer too (and is what the peer goes by while the monitor cannot ask).
 */
static void side_dead(struct monitor *m, struct mon_conn *c, unsigned side)
{
	if (!c->accel || (c->segfd < 0 && !c->view))
		return;
	if (side_held(c, side) == 0 || !gone_room(m)) {
		mon_seg_mark_gone(m, c, side);
		return;
	}
	m->gone[m->ngone++] = (struct mon_gone){
		.conn_id = c->id, .side = side, .wait_ms = 1, .due_ms = mon_now_ms() + 1
	};
}

int mon_gone_check(struct monitor *m)
{
	uint64_t now = mon_now_ms();
	int next = -1;
	for (unsigned i = 0; i < m->ngone;) {
		struct mon_gone *g = &m->gone[i];
		struct mon_conn *c;
		HASH_FIND(hh_id, m->conns_by_id, &g->conn_id, sizeof(g->conn_id), c);
		if (c && g->due_ms <= now) {
			if (mon_side_any(c, g->side)) {
				c = NULL; /* an owner came back (REATTACH after exec) */
			} else if (side_held(c, g->side) == 0) {
				mon_seg_mark_gone(m, c, g->side);
				c = NULL;
			} else {
				g->wait_ms = g->wait_ms < 500 ? 2 * g->wait_ms : 1000;
				g->due_ms = now + g->wait_ms;
			}
		}
		if (!c) { /* done with, or its entry is gone */
			*g = m->gone[--m->ngone];
			continue;
		}
		int left = (int)(g->due_ms - now);
		if (next < 0 || left < next)
			next = left;
		i++;
	}
	/* Sockets the closer thread could not take on the last turn (its
	 * socket was full) are offered again within 10 ms, whether or not a
	 * client speaks meanwhile: they hold fds until then. */
	if (mon_closer_backlog() && (next < 0 || next > 10))
		next = 10;
	return next;
}

/* A side closed (CLOSE) or its process died (crashed = 1). The side is
 * gone with its last owner; the entry goes when no side is held and none
 * is still to be answered. A server that has not accepted yet must still
 * get the segment: the client's data (and its end of stream) are in it and
 * nowhere else. If it never accepts, the entry goes with the last listener
 * on that address (mon_conn_sweep). */
void mon_conn_side_gone(struct monitor *m, struct mon_conn *c, unsigned side,
			struct mon_proc *p, int crashed)
{
	for (int i = 0; i < MON_OWNERS; i++)
		if (c->side[side][i] == p)
			c->side[side][i] = NULL;
	if (mon_side_any(c, side))
		return;
	if (crashed)
		side_dead(m, c, side);
	c->decided[side] = 1;
	if (side == 1)
		mon_conn_uncharge(m, c);
	if (!mon_side_any(c, 1 - side) && c->decided[1 - side])
		mon_conn_free(m, c);
	else
		mon_conn_settle(m, c);
}

/*
 * A connection both of whose sockets are closed, in every process, after
 * both sides were answered: its processes closed them without CLOSE (a
 * raw close(2), close_range, an exec that dropped them), or were never
 * going to say it. Nobody can read or write it, or prove it holds it
 * again; its peer would be told the same at its process's exit. Sides the
 * kernel cannot be asked about now are left alone.
 */
unsigned mon_conns_reap(struct monitor *m, struct mon_uid *u)
{
	struct mon_conn *c, *tmp;
	unsigned n = 0;
	HASH_ITER(hh, m->conns, c, tmp)
	{
		if (c->owner_uid != u || !c->accel || c->intent || !c->decided[0] ||
		    !c->decided[1] || side_held(c, 0) != 0 || side_held(c, 1) != 0)
			continue;
		mon_seg_mark_gone(m, c, 0);
		mon_seg_mark_gone(m, c, 1);
		mon_conn_free(m, c);
		n++;
	}
	if (n)
		mon_log(MON_INFO, "uid %u: %u connection(s) closed without a word, reclaimed",
			(unsigned)u->uid, n);
	return n;
}

/* Free the entries nobody can still ask for: both sides gone or answered,
 * or the server side unanswered with no registration of its listening
 * socket left (lcookie is 0 when the server side came first). */
void mon_conn_sweep(struct monitor *m)
{
	struct mon_conn *c, *tmp;
	HASH_ITER(hh, m->conns, c, tmp)
	{
		/* The client was first and is on its segment, and the listening
		 * socket is gone before any process presented the server end:
		 * nobody will read that segment. Over TCP the kernel resets a
		 * connection left in a closed listener's queue; here the client
		 * learns that its peer is gone (end of file, EPIPE). */
		if (c->accel && c->lcookie && mon_side_any(c, 0) && !mon_side_any(c, 1) &&
		    !c->decided[1] && !mon_lsock_find(m, c->lcookie)) {
			mon_seg_mark_gone(m, c, 1);
			c->decided[1] = 1;
			mon_conn_settle(m, c);
		}
		if (mon_side_any(c, 0) || mon_side_any(c, 1))
			continue;
		/* An entry the server side made first waits for its client's
		 * CONNECTED (the intent), whatever happens to the listener:
		 * the server may have written and closed already. */
		if ((c->decided[0] && c->decided[1]) ||
		    (!c->intent && !mon_lsock_find(m, c->lcookie)))
			mon_conn_free(m, c);
	}
}

void mon_proc_reclaim(struct monitor *m, struct mon_proc *p)
{
	struct mon_listener *l, *ltmp;
	unsigned nlisteners = 0;
	HASH_ITER(hh, m->listeners, l, ltmp)
	if (l->proc == p) {
		mon_listener_remove(m, l);
		nlisteners++;
	}

	struct mon_intent *in, *itmp;
	HASH_ITER(hh, m->intents, in, itmp)
	{
		if (in->proc != p)
			continue;
		/* The server side paired already; this client will never ask. */
		if (in->conn) {
			in->conn->decided[0] = 1;
			mon_conn_settle(m, in->conn);
		}
		mon_intent_drop(m, in);
	}

	struct mon_conn *c, *ctmp;
	unsigned nconns = 0;
	HASH_ITER(hh, m->conns, c, ctmp)
	{
		int mine0 = mon_side_has(c, 0, p), mine1 = mon_side_has(c, 1, p);
		/* Its uid stays charged until the entry goes. */
		if (c->charged == p)
			c->charged = NULL;
		if (c->owner == p)
			c->owner = NULL;
		if (mine0 && mine1) {
			/* Both ends in this process (it connected to itself). */
			for (int i = 0; i < MON_OWNERS; i++)
				if (c->side[0][i] == p)
					c->side[0][i] = NULL;
			if (!mon_side_any(c, 0))
				side_dead(m, c, 0);
			c->decided[0] = 1;
			mon_conn_side_gone(m, c, 1, p, 1);
		} else if (mine0 || mine1) {
			mon_conn_side_gone(m, c, mine0 ? 0 : 1, p, 1);
		}
		nconns += (unsigned)(mine0 || mine1);
	}
	for (unsigned i = 0; i < p->fcount; i++) {
		struct mon_msg *msg = &p->fifo[(p->fhead + i) % MON_FIFO];
		if (msg->fd >= 0)
			mon_close_handed(msg->fd);
	}
	mon_conn_sweep(m);
	/* A process that held nothing (xio stat, a program that never used
	 * TCP) is not worth a line of its own unless asked for. */
	mon_log(nconns || nlisteners ? MON_INFO : MON_DEBUG,
		"process %d (uid %u) gone: %u connection(s) reclaimed", (int)p->pid, (unsigned)p->uid,
		nconns);
	epoll_ctl(m->epfd, EPOLL_CTL_DEL, p->sock, NULL);
	mon_session_put(m, p->u);
	HASH_DEL(m->procs, p);
	xio_sys_close(p->sock);
	free(p);
}
