/*
 * monitor.h - xio-monitor's state: processes, listeners, intents and
 * connections. Control plane only: nothing here is on the data path.
 *
 * Lifetimes: everything a process holds hangs off its struct mon_proc and
 * is reclaimed when its control socket closes (exit or crash).
 */
#ifndef XIO_MONITOR_H
#define XIO_MONITOR_H

#include <stdalign.h>
#include <stdint.h>
#include <sys/types.h>
#include <uthash.h>

#include "config.h"
#include "sockinfo.h"
#include "xio/ctl.h"
#include "xio/seg.h"

#define MON_FIFO 32        /* messages read ahead per process */
#define MON_OWNERS 4       /* processes that may hold one side */
#define MON_FD_RESERVE 256 /* fds kept free for messages in flight and our own */
#define MON_MAP_RESERVE 1024 /* mappings kept for our own (threads, malloc, a segment mapped whole) */

struct mon_msg {
	int fd; /* passed fd or -1 */
	uint32_t len;
	uint32_t uid; /* the sender's uid as it sent it, or XIO_CTL_NO_CRED */
	alignas(8) union {
		struct xio_msg_hdr h;
		char raw[XIO_CTL_MAX_MSG];
	} u;
};

/* What all processes of one uid hold, against the limit-uid-* settings
 * and its share of the monitor (limits.c). Kept once made (one small entry
 * per uid ever seen). */
struct mon_uid {
	uint32_t uid;
	unsigned listeners, pending, conns, sessions;
	unsigned fds;               /* sessions, intents and segments' fds we hold for it */
	unsigned huge_pages;        /* hugepages its segments hold */
	unsigned warned;            /* refusals already logged for this uid */
	uint64_t reaped_ms;         /* when its dead connections were last looked for */
	UT_hash_handle hh;
};

struct mon_proc {
	int sock;          /* control socket; the hash key */
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	struct mon_uid *u;
	/* Held against the limit-process-* settings: registrations, pending
	 * connections (intents, and connections whose server side has not been
	 * answered yet), and connections (the segments of those it connected). */
	unsigned listeners, pending, conns;
	unsigned warned;   /* refusals already logged for this process */
	/* The last INTENT refused for a limit, so that its CONNECTED is told
	 * which limit rather than "unknown intent". */
	uint64_t refused_intent;
	int refused_err;
	int dead;          /* hung up; freed at the end of the loop iteration */
	struct mon_msg fifo[MON_FIFO];
	unsigned fhead, fcount;
	UT_hash_handle hh;
};

/* A listening socket, named by its cookie (diag.c), and the registrations
 * of it: forked workers, or a process that got it by SCM_RIGHTS, each
 * register it in their own name. */
struct mon_listener;
struct mon_lsock {
	uint64_t cookie;
	struct mon_listener *regs;
	/* The uids of processes that accepted from it, registered or not (a
	 * worker after fork and setuid): a client-first segment is on
	 * hugepages only if all of them and all registrants are the client's
	 * uid. acc_many: more uids than fit. */
	uint32_t acc_uid[4];
	unsigned n_acc, acc_many;
	UT_hash_handle hh;
};
struct mon_listener {
	uint64_t id;
	uint64_t netns;
	struct xio_ep ep;          /* where it was bound (for the log) */
	struct mon_proc *proc;
	struct mon_lsock *ls;
	struct mon_listener *next; /* the next registration of the same socket */
	UT_hash_handle hh;         /* by id */
};

struct mon_intent_key {
	uint64_t proc_id;
	uint64_t intent;           /* the client's number for it */
};
struct mon_intent {
	struct mon_intent_key key;
	uint64_t cookie;           /* of the client's socket */
	struct mon_proc *proc;
	int fd;                    /* our copy of the client's socket */
	struct mon_conn *conn;     /* set when the server side paired first */
	int orphaned;              /* ... and that connection is gone already */
	UT_hash_handle hh;         /* by key */
	UT_hash_handle hh_cookie;  /* by cookie */
};

/* Connections, keyed by namespace and 4-tuple (client, server). */
struct mon_ckey {
	uint64_t netns;
	struct xio_ep client, server;
};
struct mon_conn {
	struct mon_ckey key;
	uint64_t id;
	int accel;                  /* 0: both ends are told FALLBACK */
	int reason;                 /* why not, when !accel */
	int err;                    /* XIO_FB_LIMIT: which limit */
	/* The segment: its fd until both sides have had their answer, and
	 * the monitor's own mapping of its start (the header and both
	 * channels' control blocks), which stands for the fd from then on
	 * (seg_access.c). Either is -1 / NULL when there is none. */
	int segfd;
	void *view;
	size_t view_len;
	int huge;
	uint64_t born_ms;           /* CLOCK_MONOTONIC, for xio stat's age */
	uint32_t client_uid;
	uint64_t lcookie;           /* the listening socket it came to; 0 if
				     * the server side was first */
	struct mon_intent *intent;  /* the client's intent, while it waits */
	/* While the server side is unanswered the entry holds a segment:
	 * counted as pending against the client and its uid. */
	struct mon_proc *charged;
	struct mon_uid *charged_uid;
	/* The segment (one of the monitor's connections, its fd while it is
	 * held, and its hugepages) is counted against the client and its uid
	 * for the life of the entry; the process's part ends with the process
	 * (owner NULL), its uid's with the entry. */
	struct mon_proc *owner;
	struct mon_uid *owner_uid;
	unsigned huge_pages;
	/* The processes holding each side: the one that paired it, and others
	 * that proved they hold the socket too (REATTACH after fork + exec). */
	struct mon_proc *side[2][MON_OWNERS];
	uint8_t decided[2];         /* this side has had its answer */
	UT_hash_handle hh;          /* by key */
	UT_hash_handle hh_id;       /* by id */
};

/* A side whose last owner died while its socket was still open: asked
 * about again at due_ms (state.c, mon_gone_check). */
struct mon_gone {
	uint64_t conn_id;
	unsigned side;
	uint32_t wait_ms; /* the interval, doubling up to a second */
	uint64_t due_ms;
};

/* A connection answered FALLBACK, kept for xio stat (table.c): the
 * monitor never sees a TCP connection again, so this is history. */
struct mon_recent {
	uint64_t id;
	int has_key;          /* 0: the socket could not be read */
	struct mon_ckey key;
	pid_t pid[2];
	uid_t uid[2];         /* of pid[side], when answered: who may see it */
	char comm[2][16];
	int reason;           /* enum xio_fallback_reason */
	uint64_t when_ms;
};

struct monitor {
	struct xio_config cfg;
	struct xio_seg_params params;
	int huge;                   /* 1 on, 0 off, -1 try */
	int verbose;
	int lsock, epfd, sigfd;
	int spare_fd;               /* given up to accept and refuse a session at EMFILE */
	const char *sock_path;
	uint64_t next_id;
	struct mon_proc *procs;
	struct mon_uid *uids;
	struct mon_listener *listeners;
	struct mon_lsock *lsocks;
	struct mon_intent *intents, *intents_by_cookie;
	unsigned nintents;
	/* What clients make the monitor hold (all uids): one fd for each
	 * session, intent and segment whose fd is held, against the fd limit
	 * less a reserve; and connections, against a budget of their own (one
	 * mapping each when seg_views, from vm.max_map_count; else one fd
	 * each, the fd budget). And the limits in force, from the
	 * configuration and those budgets (limits.c). */
	unsigned fds_used, fd_budget;
	unsigned conns_used, conn_budget;
	int seg_views;              /* segments are kept as mappings, their fds let go */
	struct {
		unsigned proc_listeners, proc_pending, proc_conns;
		unsigned uid_listeners, uid_pending, uid_conns, uid_sessions;
	} lim;
	unsigned huge_pps;          /* hugepages per segment (0: a segment cannot be huge) */
	struct mon_conn *conns, *conns_by_id;
	struct mon_gone *gone;      /* sides waiting for their socket to close */
	unsigned ngone, gone_cap;
	uint64_t accel_total, fallback_total, huge_total, small_total;
	struct mon_recent recent[XIO_CONNS_RECENT_TCP]; /* a ring; id 0 unused */
	unsigned recent_next;
	unsigned idle_exit;         /* seconds without a process, then stop (0 never) */
};

/* closer.c: sockets clients handed over are closed without any thread of
 * the monitor waiting on one (a lingering close must stall nothing, and
 * hold no fd for long). mon_close_handed closes fd, or queues it if its
 * close could wait; mon_closer_flush passes the queue on, never waiting. */
int mon_closer_start(void);
void mon_close_handed(int fd);
void mon_closer_flush(void);
void mon_closer_stop(void);
/* 1 while the closer could not take everything yet: the loop comes back
 * for it soon (mon_gone_check's timeout) rather than when a client next
 * speaks. */
int mon_closer_backlog(void);

/* seg_access.c: run fn on segment segfd, mapped whole for the call, under
 * a SIGBUS guard (a client may punch a hole in a hugetlb segment and take
 * every free hugepage). Returns fn's result, -EFAULT if the memory vanished
 * under it, or why it could not be mapped. */
typedef int (*mon_seg_fn)(void *base, const struct xio_seg_layout *l, void *arg);
int mon_seg_run(const struct monitor *m, int segfd, mon_seg_fn fn, void *arg);
/* The same on c's segment for fn that touches only its header and the
 * channels' control blocks: on the monitor's view of it if it has one,
 * else mapped from its fd. */
int mon_conn_seg_run(const struct monitor *m, const struct mon_conn *c, mon_seg_fn fn, void *arg);
/* Set side_gone[side] in c's segment (if it has one). */
void mon_seg_mark_gone(const struct monitor *m, const struct mon_conn *c, unsigned side);
/* Whether this monitor may open its own mappings again
 * (/proc/self/map_files: CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE): 0, or
 * why not. Tried once at start: m->seg_views. */
int mon_seg_views_probe(void);
/* Map c's view from c->segfd. Returns 0 or -errno (then c has none). */
int mon_seg_view_map(const struct monitor *m, struct mon_conn *c);
void mon_seg_view_unmap(struct mon_conn *c);
/* A new fd of c's segment, opened from the view (the fd was let go of):
 * the caller closes it. Returns it, or -errno. */
int mon_seg_reopen(const struct mon_conn *c);

/* log.c */
void mon_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
enum { MON_ERR, MON_WARN, MON_INFO, MON_DEBUG };
extern int mon_log_level;

/* diag.c: the cookie of the TCP socket the kernel has at local, talking to
 * remote (remote port 0: the listener that would take a connection from
 * remote's address), in namespace netns, which is ref_fd's. Returns 0,
 * -ENOENT if there is none, or -errno. */
int mon_diag_init(void);
int mon_diag_cookie(int ref_fd, uint64_t netns, const struct xio_ep *local,
		    const struct xio_ep *remote, uint64_t *cookie);
int mon_sock_cookie(int fd, uint64_t *cookie);
/* 1 if a process still holds the TCP socket at local, talking to remote,
 * in namespace netns (its file is open: the kernel has not closed it); 0
 * if it is closed or gone; -errno if the namespace cannot be asked now
 * (-EAGAIN: it is not among the few the monitor keeps a socket for, and
 * none of pids, processes that may be in it, is): not an answer, ask
 * again later. */
int mon_diag_held(uint64_t netns, const pid_t *pids, unsigned npids, const struct xio_ep *local,
		  const struct xio_ep *remote);

/* limits.c: take one listener, pending or connection slot for p (and
 * its uid), or say which limit is in the way: -EMFILE (p's), -EDQUOT (its
 * uid's, or its uid's share of the monitor), -ENFILE (the monitor's fds or
 * connections); the first refusal of each kind is logged with p's pid,
 * uid and the limit. Give back with the matching put (p NULL: the process
 * is gone, its uid's part only). Kinds: a listener (no fd); an intent
 * (pending, and the fd of the client's socket); a client-first connection
 * waiting for its server side (pending; its segment is counted as a
 * connection); a connection (one of the monitor's connections, and its
 * segment's fd: the put gives back the connection only, the fd goes back
 * with mon_limit_fd_put when it is closed). */
enum { MON_LIMIT_LISTENERS, MON_LIMIT_INTENT, MON_LIMIT_WAITING, MON_LIMIT_CONNS };
int mon_limit_take(struct monitor *m, struct mon_proc *p, int kind);
void mon_limit_put(struct monitor *m, struct mon_proc *p, struct mon_uid *u, int kind);
void mon_limit_fd_put(struct monitor *m, struct mon_uid *u);
struct mon_uid *mon_uid_get(struct monitor *m, uint32_t uid);
void mon_uids_free(struct monitor *m); /* at shutdown, after every process */
/* The budgets and limits from the fd limit (after it was raised),
 * vm.max_map_count (when m->seg_views) and the configuration; a configured
 * limit above what a budget allows is lowered, and said. */
void mon_limits_init(struct monitor *m);
/* Take a session for p (just connected): within its uid's limit, its
 * uid's share and the monitor's fds; a refusal is logged (rate-limited).
 * Returns 1 if taken; mon_session_put gives it back. */
int mon_session_take(struct monitor *m, struct mon_proc *p);
void mon_session_put(struct monitor *m, struct mon_uid *u);
/* Whether a new segment for uid u may be on hugepages: 1 if some are free
 * and what its segments hold stays within what is left free for others
 * (issue 15, item 6); 0 if none are free; -EDQUOT if it holds its share. */
int mon_huge_allowed(struct monitor *m, struct mon_uid *u);

/* state.c */
struct mon_proc *mon_proc_add(struct monitor *m, int sock);
void mon_proc_reclaim(struct monitor *m, struct mon_proc *p);
int mon_listener_add(struct monitor *m, struct mon_listener *l, uint64_t cookie);
void mon_listener_remove(struct monitor *m, struct mon_listener *l);
struct mon_lsock *mon_lsock_find(struct monitor *m, uint64_t cookie);
struct mon_intent *mon_intent_find(struct monitor *m, struct mon_proc *p, uint64_t intent);
struct mon_intent *mon_intent_by_cookie(struct monitor *m, uint64_t cookie);
void mon_intent_add(struct monitor *m, struct mon_intent *in);
void mon_intent_drop(struct monitor *m, struct mon_intent *in);
struct mon_conn *mon_conn_new(struct monitor *m, const struct mon_ckey *k);
/* Both sides of c have had their answer: its segment's fd is let go of if
 * the monitor has a view of it (reopened from the view if a side must be
 * given it again, after exec). */
void mon_conn_settle(struct monitor *m, struct mon_conn *c);
/* The server side of c was answered: it no longer counts as pending. */
void mon_conn_uncharge(struct monitor *m, struct mon_conn *c);
/* Free u's connections whose two sockets no process holds any more
 * (closed without CLOSE): nobody can use them. Returns how many. */
unsigned mon_conns_reap(struct monitor *m, struct mon_uid *u);
/* Owners of a side (state.c). */
int mon_side_has(const struct mon_conn *c, unsigned side, const struct mon_proc *p);
int mon_side_any(const struct mon_conn *c, unsigned side);
int mon_side_add(struct mon_conn *c, unsigned side, struct mon_proc *p);
/* p no longer holds side (CLOSE, or it died: crashed = 1). */
void mon_conn_side_gone(struct monitor *m, struct mon_conn *c, unsigned side,
			struct mon_proc *p, int crashed);
void mon_conn_free(struct monitor *m, struct mon_conn *c);
/* bulk.c: with `hugepages auto`, hugepages only for a server endpoint whose
 * recent connections each moved 64 MiB or more (learnt as they end). */
int mon_bulk_wants_huge(const struct xio_ep *server);
void mon_bulk_learn(const struct monitor *m, const struct mon_conn *c);
void mon_bulk_clear(void);
void mon_conn_sweep(struct monitor *m);
/* Mark the sides whose socket has closed since their last owner died
 * (side_gone); returns the milliseconds until the next look (at a side, or
 * at the closer's backlog), or -1 if nothing is waiting. */
int mon_gone_check(struct monitor *m);

/* table.c: the connection table for xio stat (XIO_MSG_CONNS), each
 * asker's own rows (root: all). */
uint64_t mon_now_ms(void);
void mon_recent_tcp(struct monitor *m, const struct mon_ckey *k, struct mon_proc *p,
		    unsigned side, int reason);
void mon_conns_reply(struct monitor *m, struct mon_proc *p, const struct mon_msg *msg);

/* pair.c */
void mon_handle(struct monitor *m, struct mon_proc *p, struct mon_msg *msg);
int mon_intake(struct monitor *m, struct mon_proc *p);
void mon_process(struct monitor *m, struct mon_proc *p);

#endif
