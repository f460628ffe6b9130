/*
 * limits.c - what one process, and all processes of one uid, may make the
 * monitor hold (issue 8, item 9; issue 15, item 6; issue 16).
 *
 * Every session and every intent holds an fd here, from its start to its
 * end. Every connection holds its segment from pairing until both sides
 * closed (the monitor marks a dead side gone in it, gives it again after
 * exec, reads its counters for xio stat), not only while its server side
 * is awaited: as an fd until both sides have had their answer, then as a
 * mapping of its start (seg_access.c, "Views"), or as the fd for its whole
 * life in a monitor that may not reopen its mappings. Uncounted, one user
 * who paired with itself and closed without CLOSE held 1,023 of the
 * monitor's 1,024 fds, and nobody else was accelerated. So:
 *
 *  - the monitor has two budgets: fds, its fd limit less a reserve
 *    (messages in flight, the closer's batches, a segment being given
 *    again, its own few); and connections, vm.max_map_count less the
 *    mappings it has at start and a reserve (threads, malloc, a segment
 *    mapped whole for a moment), or the fd budget when each connection
 *    holds an fd; limit-connections may lower the latter;
 *  - a uid takes one more fd, or one more connection, only while it holds
 *    fewer than are left free: whatever it does, others keep at least as
 *    many as it holds, and a second uid as greedy leaves a third a
 *    quarter, and so on;
 *  - fixed caps on top, from the configuration or, by default, from the
 *    budgets (a process a quarter of one, a uid half), so that no setting
 *    lets one process take what the others need;
 *  - hugepages, a pool of the whole machine, follow the same rule: a uid's
 *    segments go on hugepages only while what it holds stays within what
 *    is left free (else on ordinary pages, which every uid has).
 *
 * A refusal is never an error for the program: the connection falls back
 * to TCP, and the client is told which limit it hit (XIO_FB_LIMIT with
 * -EMFILE, -EDQUOT or -ENFILE; LISTEN's ERROR carries the same); the
 * fallback is counted (fallback_total, xio stat's recent table) and the
 * first of each kind per process is logged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "monitor.h"

#define REAP_EVERY_MS 1000 /* a uid's dead connections are looked for at most this often */

/* Hugepages of the size memfd_create(MFD_HUGETLB) uses: free and not
 * promised to a mapping already (HugePages_Free - HugePages_Rsvd), and the
 * page size in bytes. Returns 0 or -errno. */
static int meminfo_hugepages(unsigned long *avail, unsigned long *size)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	unsigned long free_pages = 0, rsvd = 0, kb = 0;
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "HugePages_Free: %lu", &free_pages);
		sscanf(line, "HugePages_Rsvd: %lu", &rsvd);
		sscanf(line, "Hugepagesize: %lu kB", &kb);
	}
	fclose(f);
	*avail = free_pages > rsvd ? free_pages - rsvd : 0;
	*size = kb * 1024;
	return 0;
}

/* The same two counts for that size, from sysfs: cheaper than meminfo,
 * for every pairing that could be on hugepages. */
static char huge_dir[96];

static int read_count(const char *name, unsigned long *v)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", huge_dir, name);
	FILE *f = fopen(path, "re");
	int ok = f && fscanf(f, "%lu", v) == 1;
	if (f)
		fclose(f);
	return ok ? 0 : -ENOENT;
}

static int hugepages_avail(unsigned long *avail)
{
	unsigned long free_pages, rsvd, size;
	if (huge_dir[0] && read_count("free_hugepages", &free_pages) == 0 &&
	    read_count("resv_hugepages", &rsvd) == 0) {
		*avail = free_pages > rsvd ? free_pages - rsvd : 0;
		return 0;
	}
	return meminfo_hugepages(avail, &size);
}

static unsigned cap_limit(const char *name, unsigned configured, unsigned cap, unsigned budget,
			  const char *unit)
{
	if (!configured)
		return cap;
	if (configured > cap) {
		mon_log(MON_WARN, "%s %u is more than the monitor's %u %s allow: %u", name,
			configured, budget, unit, cap);
		return cap;
	}
	return configured;
}

/* A quarter and a half of a budget, never 0. */
static unsigned quarter(unsigned b)
{
	return b / 4 ? b / 4 : 1;
}

static unsigned half(unsigned b)
{
	return b / 2 ? b / 2 : 1;
}

/* Lines of /proc/self/maps: the mappings we have now. */
static unsigned maps_now(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned n = 0;
	int ch;
	if (!f)
		return 0;
	while ((ch = getc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

/* How many views the monitor may keep: the kernel's limit of mappings per
 * process (mmap fails with ENOMEM past it, malloc's too) less those we
 * have and a reserve for our own. *max_maps: that limit, for the log. */
static unsigned view_budget(unsigned long *max_maps)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	unsigned long v = 65530; /* the kernel's default */
	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 65530;
		fclose(f);
	}
	*max_maps = v;
	unsigned long used = maps_now() + MON_MAP_RESERVE;
	if (v > 1ul << 30)
		v = 1ul << 30;
	return v > used ? (unsigned)(v - used) : 0;
}

void mon_limits_init(struct monitor *m)
{
	struct rlimit rl;
	/* Sessions, intents and segments' fds (one each) may use what the fd
	 * limit leaves after a reserve for the messages read ahead (their
	 * fds), segments being handed out, the closer's batches and our own
	 * few: at the limit a message's fd would be lost (MSG_CTRUNC). */
	rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
	if (n == RLIM_INFINITY || n > 1u << 30)
		n = 1u << 30;
	unsigned reserve = n >= 4 * MON_FD_RESERVE ? MON_FD_RESERVE : (unsigned)n / 4;
	unsigned b = m->fd_budget = (unsigned)n - reserve;
	const struct xio_config *c = &m->cfg;
	/* Connections: one mapping each once paired (and an fd for a moment,
	 * counted with the fds), or one fd each for life. */
	unsigned long max_maps = 0;
	unsigned cb = b;
	if (m->seg_views) {
		cb = view_budget(&max_maps);
		if (!cb) {
			mon_log(MON_WARN, "vm.max_map_count (%lu) leaves no room for segments' "
					  "mappings: the monitor keeps an fd per connection",
				max_maps);
			m->seg_views = 0;
			cb = b;
		}
	}
	const char *cunit = m->seg_views ? "mappings" : "fds";
	if (c->limit_connections && c->limit_connections <= cb) {
		cb = c->limit_connections;
		cunit = "connections (limit-connections)";
	} else if (c->limit_connections > cb) {
		mon_log(MON_WARN, "limit-connections %u is more than the monitor's %u %s allow: %u",
			c->limit_connections, cb, cunit, cb);
	}
	m->conn_budget = cb;
	m->lim.proc_listeners = c->limit_process_listeners;
	m->lim.uid_listeners = c->limit_uid_listeners;
	m->lim.proc_pending =
		cap_limit("limit-process-pending", c->limit_process_pending, quarter(b), b, "fds");
	m->lim.proc_conns = cap_limit("limit-process-connections", c->limit_process_connections,
				      quarter(cb), cb, cunit);
	m->lim.uid_pending =
		cap_limit("limit-uid-pending", c->limit_uid_pending, half(b), b, "fds");
	m->lim.uid_conns = cap_limit("limit-uid-connections", c->limit_uid_connections, half(cb),
				     cb, cunit);
	m->lim.uid_sessions =
		cap_limit("limit-uid-sessions", c->limit_uid_sessions, half(b), b, "fds");
	unsigned long avail, size;
	m->huge_pps = 0;
	if (meminfo_hugepages(&avail, &size) == 0 && size && m->params.seg_size % size == 0) {
		m->huge_pps = (unsigned)(m->params.seg_size / size);
		snprintf(huge_dir, sizeof(huge_dir), "/sys/kernel/mm/hugepages/hugepages-%lukB",
			 size / 1024);
	}
	char why[96];
	if (c->limit_connections == cb)
		snprintf(why, sizeof(why), "limit-connections");
	else if (m->seg_views)
		snprintf(why, sizeof(why), "one mapping each, vm.max_map_count %lu", max_maps);
	else
		snprintf(why, sizeof(why), "one fd each");
	mon_log(MON_INFO, "limits: %u fds for clients, %u connections (%s); per process %u "
			  "pending, %u connections; per uid %u pending, %u connections, %u "
			  "sessions, and never more than are left free",
		b, cb, why, m->lim.proc_pending, m->lim.proc_conns, m->lim.uid_pending,
		m->lim.uid_conns, m->lim.uid_sessions);
}

/* Whether one more of a budget may be taken for a uid that holds mine of
 * it: the monitor has one left, and the uid holds fewer than would be left
 * free for everyone else. Returns 0, -ENFILE or -EDQUOT. */
static int share_for(unsigned used, unsigned budget, unsigned mine)
{
	if (used >= budget)
		return -ENFILE;
	if (mine >= budget - used - 1)
		return -EDQUOT;
	return 0;
}

int mon_session_take(struct monitor *m, struct mon_proc *p)
{
	static uint64_t refused;
	struct mon_uid *u = p->u;
	int err = 0;
	if (u->sessions >= m->lim.uid_sessions)
		err = -EDQUOT;
	else
		err = share_for(m->fds_used, m->fd_budget, u->fds);
	if (err) {
		if (refused++ % 1000 == 0)
			mon_log(MON_WARN, "process %d (uid %u) refused: %s (%llu refused so far)",
				(int)p->pid, (unsigned)p->uid,
				err == -ENFILE ? "the monitor holds its limit of fds"
				: u->sessions >= m->lim.uid_sessions
					? "its uid is at the per-uid limit of sessions"
					: "its uid holds its share of the monitor's fds",
				(unsigned long long)refused);
		return 0;
	}
	u->sessions++;
	u->fds++;
	m->fds_used++;
	return 1;
}

void mon_session_put(struct monitor *m, struct mon_uid *u)
{
	u->sessions--;
	u->fds--;
	m->fds_used--;
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

static const char *kind_name(int kind)
{
	return kind == MON_LIMIT_LISTENERS ? "listeners"
	       : kind == MON_LIMIT_CONNS   ? "connections"
				           : "pending connections";
}

/* Which budget of the monitor a refusal was for (0: a fixed limit). */
enum { BUDGET_NONE, BUDGET_FDS, BUDGET_CONNS };

static void refused(struct monitor *m, struct mon_proc *p, int kind, int err, unsigned limit,
		    int budget)
{
	int share = budget && err == -EDQUOT;
	unsigned bit = 1u << (kind * 4 + (err == -EMFILE ? 0 : err == -ENFILE ? 1 : share ? 2 : 3));
	const char *what = budget == BUDGET_CONNS ? "connections" : "fds";
	if (p->warned & bit)
		return;
	p->warned |= bit;
	if (share)
		mon_log(MON_WARN, "process %d (uid %u) is over its uid's share of the monitor's "
				  "%s (the uid holds %u, %u are free): %s fall back to TCP",
			(int)p->pid, (unsigned)p->uid, what,
			budget == BUDGET_CONNS ? p->u->conns : p->u->fds,
			budget == BUDGET_CONNS ? m->conn_budget - m->conns_used
					       : m->fd_budget - m->fds_used,
			kind_name(kind));
	else if (err == -ENFILE)
		mon_log(MON_WARN, "process %d (uid %u): the monitor holds all of its %u %s: %s "
				  "fall back to TCP",
			(int)p->pid, (unsigned)p->uid, limit, what, kind_name(kind));
	else
		mon_log(MON_WARN, "process %d (uid %u) is over the %s limit of %u %s: falling back "
				  "to TCP",
			(int)p->pid, (unsigned)p->uid, err == -EMFILE ? "per-process" : "per-uid",
			limit, kind_name(kind));
}

/* The counters and limits of one kind, and what of the monitor's budgets
 * it takes: an fd, a connection. */
struct slot {
	unsigned *pc, *uc;
	unsigned plim, ulim;
	int fd, conn;
};

static struct slot slot_of(struct monitor *m, struct mon_proc *p, struct mon_uid *u, int kind)
{
	static unsigned none;
	struct slot s = { &none, &none, 0, 0, 0, 0 };
	switch (kind) {
	case MON_LIMIT_LISTENERS:
		s = (struct slot){ p ? &p->listeners : &none, &u->listeners, m->lim.proc_listeners,
				   m->lim.uid_listeners, 0, 0 };
		break;
	case MON_LIMIT_INTENT:
	case MON_LIMIT_WAITING:
		s = (struct slot){ p ? &p->pending : &none, &u->pending, m->lim.proc_pending,
				   m->lim.uid_pending, kind == MON_LIMIT_INTENT, 0 };
		break;
	case MON_LIMIT_CONNS:
		s = (struct slot){ p ? &p->conns : &none, &u->conns, m->lim.proc_conns,
				   m->lim.uid_conns, 1, 1 };
		break;
	}
	return s;
}

/* Why kind cannot be taken for p now (0: it can); *limit and *budget for
 * the log. */
static int over(struct monitor *m, struct mon_proc *p, int kind, unsigned *limit, int *budget)
{
	struct slot s = slot_of(m, p, p->u, kind);
	int err;
	*budget = BUDGET_NONE;
	if (*s.pc >= s.plim) {
		*limit = s.plim;
		return -EMFILE;
	}
	if (*s.uc >= s.ulim) {
		*limit = s.ulim;
		return -EDQUOT;
	}
	/* A uid's connections are its count of that kind (*s.uc). */
	if (s.conn && (err = share_for(m->conns_used, m->conn_budget, *s.uc)) < 0) {
		*limit = m->conn_budget;
		*budget = BUDGET_CONNS;
		return err;
	}
	if (s.fd && (err = share_for(m->fds_used, m->fd_budget, p->u->fds)) < 0) {
		*limit = m->fd_budget;
		*budget = BUDGET_FDS;
		return err;
	}
	return 0;
}

int mon_limit_take(struct monitor *m, struct mon_proc *p, int kind)
{
	unsigned limit = 0;
	int budget, err = over(m, p, kind, &limit, &budget);
	/* Connections its processes closed without a word (CLOSE) hold
	 * nothing anybody can use: the uid gets them back before it is
	 * refused (looked for at most once a second: it costs a kernel
	 * lookup per connection of the uid). */
	uint64_t now;
	if (err && err != -ENFILE && kind == MON_LIMIT_CONNS &&
	    (now = mon_now_ms()) - p->u->reaped_ms >= REAP_EVERY_MS) {
		p->u->reaped_ms = now;
		if (mon_conns_reap(m, p->u))
			err = over(m, p, kind, &limit, &budget);
	}
	if (err) {
		refused(m, p, kind, err, limit, budget);
		return err;
	}
	struct slot s = slot_of(m, p, p->u, kind);
	(*s.pc)++;
	(*s.uc)++;
	if (s.fd) {
		p->u->fds++;
		m->fds_used++;
	}
	if (s.conn)
		m->conns_used++;
	return 0;
}

void mon_limit_put(struct monitor *m, struct mon_proc *p, struct mon_uid *u, int kind)
{
	struct slot s = slot_of(m, p, u, kind);
	if (p)
		(*s.pc)--;
	(*s.uc)--;
	/* A connection's fd is given back when it is closed (mon_limit_fd_put). */
	if (s.fd && !s.conn)
		mon_limit_fd_put(m, u);
	if (s.conn)
		m->conns_used--;
}

void mon_limit_fd_put(struct monitor *m, struct mon_uid *u)
{
	u->fds--;
	m->fds_used--;
}

int mon_huge_allowed(struct monitor *m, struct mon_uid *u)
{
	unsigned long avail;
	unsigned pps = m->huge_pps;
	if (!pps || hugepages_avail(&avail) < 0 || avail < pps)
		return 0;
	/* It holds no more than is left free once this segment is made. */
	if (u->huge_pages <= avail - pps) {
		u->warned &= ~1u;
		return 1;
	}
	if (!(u->warned & 1u)) {
		u->warned |= 1u;
		mon_log(MON_INFO, "uid %u holds %u hugepages, %lu are free: its next segments are "
				  "on ordinary pages",
			(unsigned)u->uid, u->huge_pages, avail);
	}
	return -EDQUOT;
}
