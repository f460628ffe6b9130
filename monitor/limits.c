/*
 * limits.c - what one process, and all processes of one uid, may hold in
 * the monitor (issue 8, item 9). Each intent and each connection waiting
 * for its server side holds an fd and a segment here; without a bound, one
 * client could pin a segment per connection it never accepts, run the
 * monitor out of fds and break everyone's pairing. A refusal is never an
 * error for the program: the connection falls back to TCP, and the client
 * is told which limit it hit (XIO_FB_LIMIT with -EMFILE, -EDQUOT or
 * -ENFILE; LISTEN's ERROR carries the same).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "monitor.h"

void mon_limits_init(struct monitor *m)
{
	struct rlimit rl;
	/* Sessions and pending entries (one fd each) may use what the fd
	 * limit leaves after a reserve for the messages read ahead (their
	 * fds), segments being handed out, the closer's backlog and our own
	 * few: at the limit a message's fd would be lost (MSG_CTRUNC). */
	rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
	if (n == RLIM_INFINITY || n > 1u << 30)
		n = 1u << 30;
	unsigned reserve = n >= 4 * MON_FD_RESERVE ? MON_FD_RESERVE : (unsigned)n / 4;
	m->fd_budget = (unsigned)n - reserve;
}

/* Sessions and pending entries hold one fd each. */
static int fds_left(const struct monitor *m)
{
	return HASH_COUNT(m->procs) + m->npending < m->fd_budget;
}

int mon_session_allowed(struct monitor *m, struct mon_proc *p)
{
	static uint64_t refused;
	if (!fds_left(m)) {
		if (refused++ % 1000 == 0)
			mon_log(MON_WARN, "process %d (uid %u) refused: the monitor holds its limit of "
					  "%u fds (%llu refused so far)",
				(int)p->pid, (unsigned)p->uid, m->fd_budget,
				(unsigned long long)refused);
		return 0;
	}
	if (p->u->sessions >= m->cfg.limit_uid_sessions) {
		if (!p->u->warned)
			mon_log(MON_WARN, "process %d (uid %u) refused: its uid is at the per-uid "
					  "limit of %u sessions",
				(int)p->pid, (unsigned)p->uid, m->cfg.limit_uid_sessions);
		p->u->warned = 1;
		return 0;
	}
	p->u->warned = 0;
	return 1;
}

struct mon_uid *mon_uid_get(struct monitor *m, uint32_t uid)
{
	struct mon_uid *u;
	HASH_FIND(hh, m->uids, &uid, sizeof(uid), u);
	if (u)
		return u;
	if (!(u = calloc(1, sizeof(*u))))
		return NULL;
	u->uid = uid;
	HASH_ADD(hh, m->uids, uid, sizeof(u->uid), u);
	return u;
}

void mon_uids_free(struct monitor *m)
{
	struct mon_uid *u, *tmp;
	HASH_ITER(hh, m->uids, u, tmp)
	{
		HASH_DEL(m->uids, u);
		free(u);
	}
}

static void refused(struct mon_proc *p, int kind, int err, unsigned limit)
{
	unsigned bit = 1u << (kind * 3 + (err == -EMFILE ? 0 : err == -EDQUOT ? 1 : 2));
	if (p->warned & bit)
		return;
	p->warned |= bit;
	mon_log(MON_WARN, "process %d (uid %u) is over the %s limit of %u %s: falling back to TCP",
		(int)p->pid, (unsigned)p->uid,
		err == -EMFILE ? "per-process" : err == -EDQUOT ? "per-uid" : "monitor's fd",
		limit, kind == MON_LIMIT_LISTENERS ? "listeners" : "pending connections");
}

int mon_limit_take(struct monitor *m, struct mon_proc *p, int kind)
{
	struct mon_uid *u = p->u;
	int listeners = kind == MON_LIMIT_LISTENERS;
	unsigned *pc = listeners ? &p->listeners : &p->pending;
	unsigned *uc = listeners ? &u->listeners : &u->pending;
	unsigned plim = listeners ? m->cfg.limit_process_listeners : m->cfg.limit_process_pending;
	unsigned ulim = listeners ? m->cfg.limit_uid_listeners : m->cfg.limit_uid_pending;
	if (*pc >= plim) {
		refused(p, kind, -EMFILE, plim);
		return -EMFILE;
	}
	if (*uc >= ulim) {
		refused(p, kind, -EDQUOT, ulim);
		return -EDQUOT;
	}
	if (!listeners && !fds_left(m)) {
		refused(p, kind, -ENFILE, m->fd_budget);
		return -ENFILE;
	}
	(*pc)++;
	(*uc)++;
	if (!listeners)
		m->npending++;
	return 0;
}

void mon_limit_put(struct monitor *m, struct mon_proc *p, struct mon_uid *u, int kind)
{
	int listeners = kind == MON_LIMIT_LISTENERS;
	if (p)
		(*(listeners ? &p->listeners : &p->pending))--;
	if (u)
		(*(listeners ? &u->listeners : &u->pending))--;
	if (!listeners)
		m->npending--;
}
