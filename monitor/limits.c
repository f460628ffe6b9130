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
	/* Pending entries may use what the fd limit leaves after a reserve
	 * for sessions, the messages read ahead and the closer's backlog. */
	rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
	if (n == RLIM_INFINITY || n > 1u << 30)
		n = 1u << 30;
	m->max_pending = n > 2 * MON_FD_RESERVE ? (unsigned)(n - MON_FD_RESERVE) : (unsigned)n / 2;
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
	if (!listeners && m->npending >= m->max_pending) {
		refused(p, kind, -ENFILE, m->max_pending);
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
