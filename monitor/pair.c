/*
 * pair.c - the monitor's message handlers, and the pairing of the two
 * ends of a connection (docs/design.md, "Pairing").
 *
 * Messages are read ahead into a small per-process FIFO (mon_intake) and
 * handled in order (mon_process). The one exception is the accept race: an
 * ACCEPT whose 4-tuple is unknown may come from a server that accepted an
 * xio client whose INTENT is still unread in that client's socket. The
 * client sent INTENT before connect(), and the server could only accept
 * after connect(), so the INTENT is already queued somewhere: reading every
 * process's socket ahead and applying the INTENTs found (they only record
 * an fd) settles it without waiting.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "monitor.h"
#include "xio/conn.h"
#include "xio/sys.h"

static void reply(struct mon_proc *p, void *msg, uint16_t type, uint32_t seq, int fd)
{
	struct xio_msg_hdr *h = msg;
	xio_ctl_hdr(h, type, seq);
	/* A process that does not read its replies only hurts itself. */
	xio_ctl_send(p->sock, msg, fd, MSG_DONTWAIT);
}

/* k: the connection, when its socket could be read (else NULL); side: the
 * end p holds; err: which limit, for XIO_FB_LIMIT. */
static void reply_fallback_err(struct monitor *m, struct mon_proc *p, uint32_t seq, int reason,
			       int err, const struct mon_ckey *k, unsigned side)
{
	struct xio_msg_fallback f;
	memset(&f, 0, sizeof(f));
	f.reason = reason;
	f.err = err;
	m->fallback_total++;
	mon_recent_tcp(m, k, p, side, reason);
	reply(p, &f, XIO_MSG_FALLBACK, seq, -1);
}

static void reply_fallback(struct monitor *m, struct mon_proc *p, uint32_t seq, int reason,
			   const struct mon_ckey *k, unsigned side)
{
	reply_fallback_err(m, p, seq, reason, 0, k, side);
}

/* Give p side of c's segment: its fd, or, once that was let go of, a new
 * one opened from the monitor's view of it (seg_access.c). Returns 0, or
 * -errno with nothing sent or changed (out of fds for a moment, or no room
 * for another holder of the side): the caller answers FALLBACK. */
static int reply_attach(struct monitor *m, struct mon_proc *p, uint32_t seq, struct mon_conn *c,
			unsigned side)
{
	struct xio_msg_attach a;
	int fd = c->segfd;
	if (fd < 0 && (fd = mon_seg_reopen(c)) < 0) {
		static uint64_t failed;
		if (failed++ % 1000 == 0)
			mon_log(MON_WARN, "connection %llu: cannot open its segment again from the "
					  "monitor's mapping: %s (%llu so far)",
				(unsigned long long)c->id, strerror(-fd),
				(unsigned long long)failed);
		return fd;
	}
	int r = mon_side_add(c, side, p);
	if (r == 0) {
		memset(&a, 0, sizeof(a));
		a.conn_id = c->id;
		a.side = side;
		a.params = m->params;
		if (c->huge) /* the endpoints give nothing back of a hugepage (chan.c) */
			a.params.flags |= XIO_SEG_F_HUGE;
		c->decided[side] = 1;
		if (side == 1)
			mon_conn_uncharge(m, c);
		reply(p, &a, XIO_MSG_ATTACH, seq, fd);
	}
	if (fd != c->segfd)
		xio_sys_close(fd);
	if (r == 0)
		mon_conn_settle(m, c);
	return r;
}

/* reply_attach could not: p stays on TCP, told why (XIO_FB_LIMIT with
 * -ENFILE when the monitor was out of fds). */
static void reply_not_attached(struct monitor *m, struct mon_proc *p, uint32_t seq,
			       struct mon_conn *c, unsigned side, int err)
{
	if (err == -EMFILE || err == -ENFILE)
		reply_fallback_err(m, p, seq, XIO_FB_LIMIT, -ENFILE, &c->key, side);
	else
		reply_fallback(m, p, seq, XIO_FB_RESOURCES, &c->key, side);
}

static int acl_allows(struct monitor *m, const struct mon_ckey *k, uint32_t client_uid,
		      uint32_t server_uid)
{
	struct xio_acl_query q = { .family = k->client.family,
				   .client_port = k->client.port,
				   .server_port = k->server.port,
				   .client_uid = client_uid,
				   .server_uid = server_uid };
	memcpy(q.client_addr, k->client.addr, 16);
	memcpy(q.server_addr, k->server.addr, 16);
	return xio_acl_check(&m->cfg, &q);
}

/* The registrations of the socket the kernel itself would hand a
 * connection to k->server from k->client's address (*ls, NULL if none): a
 * registration counts only while its socket listens there, with its own
 * options (an IPV6_V6ONLY wildcard takes no IPv4 client, an exact address
 * wins over a wildcard). ref_fd is a socket in k's namespace. Returns 0,
 * or -errno if the kernel could not be asked there. */
static int listener_for(struct monitor *m, int ref_fd, const struct mon_ckey *k,
			struct mon_lsock **ls)
{
	struct xio_ep from = k->client;
	uint64_t cookie;
	from.port = 0; /* no established socket has it: the lookup falls to listeners */
	int r = mon_diag_cookie(ref_fd, k->netns, &k->server, &from, &cookie);
	*ls = r == 0 ? mon_lsock_find(m, cookie) : NULL;
	return r == -ENOENT ? 0 : r;
}

/* Decide a new connection between client and the server side: the process
 * that accepted it (server), or, when the client is first, every process
 * registered on the listening socket ls (any of them may accept it, so each
 * must be allowed; the one that does is checked again, on_accept). Never
 * fails to return an entry unless out of memory; !accel entries record
 * why. */
static struct mon_conn *conn_decide(struct monitor *m, const struct mon_ckey *k,
				    struct mon_proc *client, struct mon_proc *server,
				    struct mon_lsock *ls)
{
	char cs[64], ss[64];
	struct mon_conn *c = mon_conn_new(m, k);
	if (!c)
		return NULL;
	c->client_uid = client->uid;
	if (!server && !ls) {
		c->reason = XIO_FB_NO_LISTENER;
		return c;
	}
	int allowed = 1, same_uid = 1;
	if (server) {
		allowed = acl_allows(m, k, client->uid, server->uid);
		same_uid = server->uid == client->uid;
	} else {
		for (struct mon_listener *l = ls->regs; l; l = l->next) {
			allowed &= acl_allows(m, k, client->uid, l->proc->uid);
			same_uid &= l->proc->uid == client->uid;
		}
		/* Those who accepted from it before decide the pages too. */
		same_uid &= !ls->acc_many;
		for (unsigned i = 0; i < ls->n_acc; i++)
			same_uid &= ls->acc_uid[i] == client->uid;
	}
	if (!allowed) {
		c->reason = XIO_FB_ACL;
		mon_log(MON_INFO, "connection %s -> %s refused by the rules",
			xio_ep_str(&k->client, cs, sizeof(cs)),
			xio_ep_str(&k->server, ss, sizeof(ss)));
		return c;
	}
	/* The segment is the client's for the entry's life; until its server
	 * side is answered it is also pending, the client's too. */
	int r = mon_limit_take(m, client, MON_LIMIT_CONNS);
	if (r == 0 && !server && (r = mon_limit_take(m, client, MON_LIMIT_WAITING)) < 0)
		mon_limit_put(m, client, client->u, MON_LIMIT_CONNS);
	if (r < 0) {
		c->reason = XIO_FB_LIMIT;
		c->err = r;
		return c;
	}
	c->owner = client;
	c->owner_uid = client->u;
	if (!server) {
		c->charged = client;
		c->charged_uid = client->u;
		c->lcookie = ls->cookie;
	}
	/* Never hugepages between two uids: a peer could punch a hole in a
	 * hugetlb segment (the seals allow it) and take every free hugepage,
	 * and the other side's next touch would be a SIGBUS. An ordinary
	 * memfd page is simply allocated again. Nor for a uid that holds its
	 * share of them already (limits.c): it gets ordinary pages, as two
	 * uids do. With none free, `on` fails the segment as before. */
	int huge = 0;
	/* With `auto`, only a service whose connections stream a lot gets
	 * them (bulk.c): a hugepage is never given back in part. */
	if (same_uid && (m->huge > 0 || (m->huge < 0 && mon_bulk_wants_huge(&k->server)))) {
		int h = mon_huge_allowed(m, client->u);
		huge = h > 0 || (h == 0 && m->huge > 0) ? m->huge : 0;
	}
	int fd = xio_seg_create(&m->params, c->id, huge, &c->huge);
	if (fd < 0) {
		c->reason = XIO_FB_RESOURCES;
		mon_conn_uncharge(m, c);
		mon_limit_put(m, c->owner, c->owner_uid, MON_LIMIT_CONNS);
		mon_limit_fd_put(m, c->owner_uid);
		c->owner = NULL;
		c->owner_uid = NULL;
		mon_log(MON_WARN, "no segment for %s -> %s: %s",
			xio_ep_str(&k->client, cs, sizeof(cs)),
			xio_ep_str(&k->server, ss, sizeof(ss)), strerror(-fd));
		return c;
	}
	c->segfd = fd;
	/* The view that stands for the fd once both sides have it; without
	 * one (out of mappings) this connection keeps its fd instead. */
	if (m->seg_views && (r = mon_seg_view_map(m, c)) < 0) {
		static uint64_t unmapped;
		if (unmapped++ % 1000 == 0)
			mon_log(MON_WARN, "cannot map a segment: %s; its connection keeps an fd "
					  "(%llu so far)",
				strerror(-r), (unsigned long long)unmapped);
	}
	if (c->huge) {
		c->huge_pages = m->huge_pps;
		client->u->huge_pages += c->huge_pages;
	}
	c->accel = 1;
	m->accel_total++;
	if (c->huge)
		m->huge_total++;
	else
		m->small_total++;
	mon_log(MON_DEBUG, "connection %llu %s -> %s on %s pages", (unsigned long long)c->id,
		xio_ep_str(&k->client, cs, sizeof(cs)), xio_ep_str(&k->server, ss, sizeof(ss)),
		c->huge ? "huge" : "small");
	return c;
}

static int conn_key_from(int fd, int client_side, struct mon_ckey *k)
{
	struct xio_ep local, peer;
	int r;
	memset(k, 0, sizeof(*k));
	if ((r = xio_sock_check_tcp(fd, NULL)) < 0 || (r = xio_sock_local(fd, &local)) < 0 ||
	    (r = xio_sock_peer(fd, &peer)) < 0 || (r = xio_sock_netns(fd, &k->netns)) < 0)
		return r;
	k->client = client_side ? local : peer;
	k->server = client_side ? peer : local;
	return 0;
}

static void on_listen(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	struct xio_msg_error e;
	struct mon_listener *l = NULL;
	uint64_t cookie = 0;
	int listening = 0, r = -EBADF;
	if (msg->fd >= 0)
		r = xio_sock_check_tcp(msg->fd, &listening);
	if (r == 0 && !(l = calloc(1, sizeof(*l))))
		r = -ENOMEM;
	if (r == 0)
		r = xio_sock_local(msg->fd, &l->ep);
	/* Listening, or bound to a port and about to listen: the shim
	 * registers before the kernel listens, so that no client can connect
	 * before the listener is known (it takes the registration back if
	 * listen fails). */
	if (r == 0 && !listening) {
		struct xio_ep peer;
		if (l->ep.port == 0 || xio_sock_peer(msg->fd, &peer) == 0)
			r = -EINVAL; /* unbound, or a connection: never a listener */
	}
	if (r == 0)
		r = xio_sock_netns(msg->fd, &l->netns);
	/* The registration is of this socket, named by its cookie: it counts
	 * only while the kernel finds this very socket at the address. */
	if (r == 0)
		r = mon_sock_cookie(msg->fd, &cookie);
	/* Never keep the listening socket: the port must close with its owner. */
	if (msg->fd >= 0)
		mon_close_handed(msg->fd);
	if (r == 0)
		r = mon_limit_take(m, p, MON_LIMIT_LISTENERS);
	if (r == 0) {
		l->id = ++m->next_id;
		l->proc = p;
		if ((r = mon_listener_add(m, l, cookie)) < 0)
			mon_limit_put(m, p, p->u, MON_LIMIT_LISTENERS);
	}
	if (r < 0) {
		free(l);
		memset(&e, 0, sizeof(e));
		e.err = r;
		reply(p, &e, XIO_MSG_ERROR, msg->u.h.seq, -1);
		return;
	}
	char es[64];
	mon_log(MON_INFO, "process %d listens on %s", (int)p->pid,
		xio_ep_str(&l->ep, es, sizeof(es)));
	struct xio_msg_id ok;
	memset(&ok, 0, sizeof(ok));
	ok.id = l->id;
	reply(p, &ok, XIO_MSG_OK, msg->u.h.seq, -1);
}

static void on_unlisten(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	struct xio_msg_id *u = (void *)&msg->u;
	struct mon_listener *l;
	HASH_FIND(hh, m->listeners, &u->id, sizeof(u->id), l);
	if (l && l->proc == p) {
		mon_listener_remove(m, l);
		mon_conn_sweep(m);
	}
}

static void on_intent(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	struct xio_msg_intent *im = (void *)&msg->u;
	struct mon_intent *in = NULL;
	uint64_t cookie = 0;
	if (msg->fd < 0)
		return;
	int r = xio_sock_check_tcp(msg->fd, NULL);
	if (r == 0)
		r = mon_sock_cookie(msg->fd, &cookie);
	if (r == 0 && (mon_intent_find(m, p, im->intent) || mon_intent_by_cookie(m, cookie)))
		r = -EEXIST; /* the same number or the same socket twice */
	if (r == 0 && (r = mon_limit_take(m, p, MON_LIMIT_INTENT)) < 0) {
		p->refused_intent = im->intent;
		p->refused_err = r;
	}
	if (r == 0 && !(in = calloc(1, sizeof(*in)))) {
		mon_limit_put(m, p, p->u, MON_LIMIT_INTENT);
		r = -ENOMEM;
	}
	if (r < 0) {
		/* No record: both ends will be answered FALLBACK. */
		mon_close_handed(msg->fd);
		msg->fd = -1;
		return;
	}
	in->proc = p;
	in->key.proc_id = p->id;
	in->key.intent = im->intent;
	in->cookie = cookie;
	in->fd = msg->fd;
	msg->fd = -1;
	mon_intent_add(m, in);
}

static void on_connected(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	struct xio_msg_intent *im = (void *)&msg->u;
	uint32_t seq = msg->u.h.seq;
	struct mon_intent *in = mon_intent_find(m, p, im->intent);
	struct mon_ckey k;
	if (!in) {
		if (p->refused_err && p->refused_intent == im->intent)
			reply_fallback_err(m, p, seq, XIO_FB_LIMIT, p->refused_err, NULL, 0);
		else
			reply_fallback(m, p, seq, XIO_FB_UNKNOWN_INTENT, NULL, 0);
		return;
	}
	struct mon_conn *c = in->conn;
	int orphaned = in->orphaned;
	/* Our copy of the socket outlives the intent until the decision: it
	 * names the namespace to ask the kernel in. */
	int fd = in->fd;
	in->fd = -1;
	int r = c || orphaned ? 0 : conn_key_from(fd, 1, &k);
	mon_intent_drop(m, in);
	if (orphaned || r < 0) {
		mon_close_handed(fd);
		reply_fallback(m, p, seq, orphaned ? XIO_FB_NOT_XIO : XIO_FB_BAD_SOCKET, NULL, 0);
		return;
	}
	if (!c)
		HASH_FIND(hh, m->conns, &k, sizeof(k), c);
	if (!c) {
		struct mon_lsock *ls;
		if (listener_for(m, fd, &k, &ls) < 0) {
			/* Its namespace may not be entered (diag.c): this
			 * pairing stays on TCP, nothing else is refused. */
			mon_close_handed(fd);
			reply_fallback(m, p, seq, XIO_FB_BAD_SOCKET, &k, 0);
			return;
		}
		c = conn_decide(m, &k, p, NULL, ls);
	}
	mon_close_handed(fd);
	if (!c) {
		reply_fallback(m, p, seq, XIO_FB_RESOURCES, &k, 0);
		return;
	}
	if (c->accel) {
		if ((r = reply_attach(m, p, seq, c, 0)) < 0)
			reply_not_attached(m, p, seq, c, 0, r);
		return;
	}
	c->decided[0] = 1;
	reply_fallback_err(m, p, seq, c->reason, c->err, &c->key, 0);
	if (c->decided[1] || c->reason == XIO_FB_NO_LISTENER || c->reason == XIO_FB_LIMIT)
		mon_conn_free(m, c); /* nobody else will ask */
}

/* Read ahead every process's queued messages and apply the INTENTs. */
static void settle_intents(struct monitor *m)
{
	struct mon_proc *q, *tmp;
	HASH_ITER(hh, m->procs, q, tmp)
	{
		if (q->dead)
			continue;
		mon_intake(m, q);
		for (unsigned i = 0; i < q->fcount; i++) {
			struct mon_msg *msg = &q->fifo[(q->fhead + i) % MON_FIFO];
			if (msg->u.h.type == XIO_MSG_INTENT && msg->fd >= 0) {
				on_intent(m, q, msg); /* takes the fd; the entry stays a no-op */
				msg->fd = -1;
			}
		}
	}
}

/* The server side presents a connection whose entry exists: the client
 * was first, and the decision was made for the processes registered on the
 * listener. The one that accepted it must be allowed too (it may have
 * registered later, or never): the rules judge the uid of the process that
 * holds the server end, not of a registration. And a segment made on
 * hugepages for registrants of the client's uid is never shared with
 * another uid (a hole punched in it would kill the client with SIGBUS).
 * Returns 0 (it joins), or why the side moves to TCP (XIO_LEAVE_ACL,
 * XIO_LEAVE_UID). */
static unsigned acceptor_verdict(struct monitor *m, const struct mon_conn *c,
				 const struct mon_proc *p)
{
	if (!c->accel)
		return 0;
	if (!acl_allows(m, &c->key, c->client_uid, p->uid))
		return XIO_LEAVE_ACL;
	if (c->huge && p->uid != c->client_uid)
		return XIO_LEAVE_UID;
	return 0;
}

/* Remember who accepts from a listening socket (see conn_decide). */
static void note_acceptor(struct monitor *m, const struct mon_conn *c, const struct mon_proc *p)
{
	struct mon_lsock *ls = c->lcookie ? mon_lsock_find(m, c->lcookie) : NULL;
	if (!ls || ls->acc_many)
		return;
	for (unsigned i = 0; i < ls->n_acc; i++)
		if (ls->acc_uid[i] == p->uid)
			return;
	if (ls->n_acc == sizeof(ls->acc_uid) / sizeof(ls->acc_uid[0]))
		ls->acc_many = 1;
	else
		ls->acc_uid[ls->n_acc++] = p->uid;
}

struct unjoined {
	const struct xio_seg_params *params;
	unsigned reason;
	int fd; /* the accepted socket, to ring the client with */
};

static int leave_unjoined(void *base, const struct xio_seg_layout *l, void *arg)
{
	(void)l;
	struct unjoined *u = arg;
	return xio_seg_leave_unjoined(base, u->params, 1, u->reason, u->fd,
				      (uint32_t)getpid());
}

/*
 * The process that accepted client-first connection c may not join its
 * segment (why: XIO_LEAVE_ACL or XIO_LEAVE_UID). The client may have
 * written into it already, so the side moves to TCP before anyone joins
 * it: the client sends its stream again over the kernel, and the acceptor
 * gets a plain TCP socket (core/leave.c, xio_seg_leave_unjoined). Where the
 * client's data cannot come again (it closed meanwhile), the connection is
 * reset: an error on this one connection, never a shortened stream.
 */
static void move_unjoined(struct monitor *m, struct mon_conn *c, const struct mon_proc *p,
			  unsigned why, int fd)
{
	char cs[64], ss[64];
	int r = -EBUSY;
	if (!mon_side_any(c, 1) && !c->decided[1]) {
		struct unjoined u = { .params = &m->params, .reason = why, .fd = fd };
		r = mon_seg_run(m, c->segfd, leave_unjoined, &u);
		if (r < 0) {
			mon_seg_mark_gone(m, c, 1);
			xio__sock_reset(fd);
		}
		c->decided[1] = 1;
		mon_conn_uncharge(m, c);
		mon_conn_settle(m, c);
	}
	mon_log(r < 0 ? MON_WARN : MON_INFO,
		"connection %s -> %s: process %d (uid %u) that accepted it %s: %s",
		xio_ep_str(&c->key.client, cs, sizeof(cs)), xio_ep_str(&c->key.server, ss, sizeof(ss)),
		(int)p->pid, (unsigned)p->uid,
		why == XIO_LEAVE_ACL ? "is refused by the rules"
				     : "may not share a hugepage segment made for another uid",
		r == 0 ? "moved to TCP" : r == -EBUSY ? "already decided" : "reset");
	if (!mon_side_any(c, 0) && c->decided[0])
		mon_conn_free(m, c);
}

static void on_accept(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	uint32_t seq = msg->u.h.seq;
	struct mon_ckey k;
	struct mon_conn *c = NULL;
	unsigned why;
	int r = msg->fd >= 0 ? conn_key_from(msg->fd, 0, &k) : -EBADF;
	if (r < 0) {
		reply_fallback(m, p, seq, XIO_FB_BAD_SOCKET, NULL, 1);
		goto out;
	}
	HASH_FIND(hh, m->conns, &k, sizeof(k), c);
	if (!c) {
		/* The client end of this connection, as the kernel names it,
		 * and its INTENT, by that name: one lookup each, however many
		 * intents are parked. */
		struct mon_intent *in = NULL;
		uint64_t cookie;
		r = mon_diag_cookie(msg->fd, k.netns, &k.client, &k.server, &cookie);
		if (r == 0) {
			in = mon_intent_by_cookie(m, cookie);
			if (!in) {
				settle_intents(m);
				in = mon_intent_by_cookie(m, cookie);
			}
		} else if (r != -ENOENT) {
			/* The kernel could not be asked in that namespace. */
			reply_fallback(m, p, seq, XIO_FB_BAD_SOCKET, &k, 1);
			goto out;
		}
		if (!in || in->conn) {
			reply_fallback(m, p, seq, XIO_FB_NOT_XIO, &k, 1);
			goto out;
		}
		c = conn_decide(m, &k, in->proc, p, NULL);
		if (!c) {
			reply_fallback(m, p, seq, XIO_FB_RESOURCES, &k, 1);
			goto out;
		}
		in->conn = c;
		c->intent = in;
	} else {
		note_acceptor(m, c, p);
		if ((why = acceptor_verdict(m, c, p)) != 0) {
			move_unjoined(m, c, p, why, msg->fd);
			reply_fallback(m, p, seq, why == XIO_LEAVE_ACL ? XIO_FB_ACL : XIO_FB_UID,
				       &k, 1);
			goto out;
		}
	}
	if (c->accel) {
		if ((r = reply_attach(m, p, seq, c, 1)) < 0)
			reply_not_attached(m, p, seq, c, 1, r);
		goto out;
	}
	c->decided[1] = 1;
	reply_fallback_err(m, p, seq, c->reason, c->err, &c->key, 1);
	if (c->decided[0])
		mon_conn_free(m, c);
out:
	/* Closed after the lookups, which need it for its namespace. */
	if (msg->fd >= 0)
		mon_close_handed(msg->fd);
	msg->fd = -1;
}

static void on_close(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	struct xio_msg_close *cm = (void *)&msg->u;
	struct mon_conn *c;
	HASH_FIND(hh_id, m->conns_by_id, &cm->conn_id, sizeof(cm->conn_id), c);
	if (c && cm->side < 2 && mon_side_has(c, cm->side, p))
		mon_conn_side_gone(m, c, cm->side, p, 0);
}

/* After exec a process asks for the segment of a connection whose socket
 * it holds (it may be a forked child of the one that paired it): it proves
 * it with the socket itself, and becomes one more owner of that side. */
static void on_reattach(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	struct xio_msg_close *rm = (void *)&msg->u;
	struct mon_conn *c;
	struct mon_ckey k;
	int ok = 0;
	HASH_FIND(hh_id, m->conns_by_id, &rm->conn_id, sizeof(rm->conn_id), c);
	if (c && rm->side < 2 && c->accel && msg->fd >= 0 &&
	    conn_key_from(msg->fd, rm->side == 0, &k) == 0 && !memcmp(&k, &c->key, sizeof(k)))
		ok = 1;
	if (msg->fd >= 0)
		mon_close_handed(msg->fd);
	msg->fd = -1;
	int r = ok ? reply_attach(m, p, msg->u.h.seq, c, rm->side) : 0;
	if (!ok)
		reply_fallback(m, p, msg->u.h.seq, XIO_FB_UNKNOWN_INTENT, NULL, rm->side & 1);
	else if (r == -ENOSPC) /* held by as many processes as it may be */
		reply_fallback(m, p, msg->u.h.seq, XIO_FB_UNKNOWN_INTENT, NULL, rm->side & 1);
	else if (r < 0)
		reply_not_attached(m, p, msg->u.h.seq, c, rm->side, r);
}

/* The endpoints keep per-connection counters in each segment; the
 * monitor keeps every live segment (a view, or its fd) and adds them up. */
static int add_counts(void *base, const struct xio_seg_layout *l, void *arg)
{
	struct xio_msg_status *st = arg;
	for (int d = 0; d < 2; d++) {
		struct xio_chan_ctl *ctl = (void *)((char *)base + l->chan_off[d]);
		st->live_tx_bytes += atomic_load(&ctl->tx_bytes);
		st->live_tx_msgs += atomic_load(&ctl->tx_msgs);
		st->live_doorbells += atomic_load(&ctl->doorbells);
	}
	return 0;
}

static void on_status(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	struct xio_msg_status st;
	memset(&st, 0, sizeof(st));
	st.procs = HASH_COUNT(m->procs);
	st.listeners = HASH_COUNT(m->listeners);
	st.intents = m->nintents;
	st.conns = HASH_CNT(hh, m->conns);
	st.accel_total = m->accel_total;
	st.fallback_total = m->fallback_total;
	st.segments_huge = m->huge_total;
	st.segments_small = m->small_total;
	struct mon_conn *c, *tmp;
	HASH_ITER(hh, m->conns, c, tmp)
	if (c->accel)
		mon_conn_seg_run(m, c, add_counts, &st);
	reply(p, &st, XIO_MSG_STATUS_REPLY, msg->u.h.seq, -1);
}

/*
 * A message whose fd the kernel could not hand us: we are at our fd limit
 * (xio_ctl_recv's XIO_CTL_FD_LOST). The sender is not at fault and keeps
 * its session; a message that needed its fd is answered as one over the
 * monitor's fd limit, and the connection or listener stays on TCP. Returns
 * 1 if it answered, 0 for a message that takes no fd (handled as usual).
 */
static int on_fd_lost(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	static uint64_t lost;
	uint32_t seq = msg->u.h.seq;
	msg->fd = -1;
	switch (msg->u.h.type) {
	case XIO_MSG_LISTEN: {
		struct xio_msg_error e;
		memset(&e, 0, sizeof(e));
		e.err = -ENFILE;
		reply(p, &e, XIO_MSG_ERROR, seq, -1);
		break;
	}
	case XIO_MSG_INTENT:
		/* No record: its CONNECTED is told the limit. */
		p->refused_intent = ((struct xio_msg_intent *)&msg->u)->intent;
		p->refused_err = -ENFILE;
		break;
	case XIO_MSG_ACCEPT:
		reply_fallback_err(m, p, seq, XIO_FB_LIMIT, -ENFILE, NULL, 1);
		break;
	case XIO_MSG_REATTACH:
		reply_fallback_err(m, p, seq, XIO_FB_LIMIT, -ENFILE, NULL,
				   ((struct xio_msg_close *)&msg->u)->side & 1);
		break;
	default:
		return 0;
	}
	if (lost++ % 1000 == 0)
		mon_log(MON_WARN, "out of fds: the fd of a message from process %d (uid %u) was "
				  "lost; answered as over the monitor's fd limit (%llu so far)",
			(int)p->pid, (unsigned)p->uid, (unsigned long long)lost);
	return 1;
}

/* The uid a process sends as now: one that dropped privileges after it
 * opened its session (a server that listens as root, then setuid) is
 * judged as what it is now. Its limits stay charged to the uid that opened
 * the session, which gives them back. */
static void take_uid(struct mon_proc *p, const struct mon_msg *msg)
{
	if (msg->uid == XIO_CTL_NO_CRED || msg->uid == p->uid)
		return;
	mon_log(MON_INFO, "process %d is uid %u now (was %u)", (int)p->pid, (unsigned)msg->uid,
		(unsigned)p->uid);
	p->uid = msg->uid;
}

void mon_handle(struct monitor *m, struct mon_proc *p, struct mon_msg *msg)
{
	take_uid(p, msg);
	if (msg->fd == XIO_CTL_FD_LOST && on_fd_lost(m, p, msg))
		return;
	switch (msg->u.h.type) {
	case XIO_MSG_HELLO: {
		struct xio_msg_id ok;
		memset(&ok, 0, sizeof(ok));
		ok.id = p->id;
		reply(p, &ok, XIO_MSG_OK, msg->u.h.seq, -1);
		break;
	}
	case XIO_MSG_LISTEN:
		on_listen(m, p, msg);
		break;
	case XIO_MSG_UNLISTEN:
		on_unlisten(m, p, msg);
		break;
	case XIO_MSG_INTENT:
		on_intent(m, p, msg);
		break;
	case XIO_MSG_CONNECTED:
		on_connected(m, p, msg);
		break;
	case XIO_MSG_ACCEPT:
		on_accept(m, p, msg);
		break;
	case XIO_MSG_CLOSE:
		on_close(m, p, msg);
		break;
	case XIO_MSG_STATUS:
		on_status(m, p, msg);
		break;
	case XIO_MSG_REATTACH:
		on_reattach(m, p, msg);
		break;
	case XIO_MSG_CONNS:
		mon_conns_reply(m, p, msg);
		break;
	default:
		mon_log(MON_WARN, "process %d sent message type %u, which it may not send",
			(int)p->pid, msg->u.h.type);
		break;
	}
	if (msg->fd >= 0) { /* a message that takes no fd came with one */
		mon_close_handed(msg->fd);
		msg->fd = -1;
	}
}

/* Read what p has queued, up to the FIFO's room. Returns -1 when p hung up
 * or broke the protocol (it is then marked dead). */
int mon_intake(struct monitor *m, struct mon_proc *p)
{
	(void)m;
	while (!p->dead && p->fcount < MON_FIFO) {
		struct mon_msg *msg = &p->fifo[(p->fhead + p->fcount) % MON_FIFO];
		ssize_t n = xio_ctl_recv_cred(p->sock, &msg->u, &msg->fd, MSG_DONTWAIT, &msg->uid);
		if (n == -EAGAIN)
			return 0;
		if (n == -EBADMSG) {
			mon_log(MON_WARN, "process %d sent a malformed message: disconnected",
				(int)p->pid);
			p->dead = 1;
			return -1;
		}
		if (n <= 0) {
			p->dead = 1;
			return -1;
		}
		msg->len = (uint32_t)n;
		p->fcount++;
	}
	return 0;
}

void mon_process(struct monitor *m, struct mon_proc *p)
{
	while (p->fcount > 0 && !p->dead) {
		/* Handled from a copy: a handler may read more into the FIFO
		 * (settle_intents), reusing the slot just freed. */
		struct mon_msg msg = p->fifo[p->fhead];
		p->fhead = (p->fhead + 1) % MON_FIFO;
		p->fcount--;
		/* An INTENT applied early by settle_intents has fd -1: no-op
		 * (one whose fd was lost is not, and is answered here). */
		if (msg.u.h.type == XIO_MSG_INTENT && msg.fd == -1)
			continue;
		mon_handle(m, p, &msg);
	}
}
