/*
 * epoll.c - epoll over sets that mix kernel fds and accelerated sockets.
 *
 * Each epoll instance the program creates gets a shadow set (struct
 * pepoll) listing the sockets in it that are, or may become, accelerated.
 * Those are registered in the real epoll set under a tagged data value
 * that points at their shadow entry, so the shim can tell their kernel
 * events apart; every other fd is registered exactly as the program asked.
 *
 *   PS_TCP / PS_CONNECTING: registered with the program's events (plus
 *       EPOLLOUT while connecting, to see the connect finish and pair);
 *       the kernel's events are handed on under the program's data.
 *   PS_CONN: registered for EPOLLIN only (doorbells, FIN, RST); readiness
 *       is computed from the channels, with EPOLLET and EPOLLONESHOT
 *       applied by the shim.
 *   PS_CONN whose connection left shared memory (leave.c) but whose
 *       psock still reads the rest of the channel first: registered for
 *       the program's events, edge-triggered, so that the kernel socket's
 *       own readiness (room to write above all) wakes a sleep; readiness
 *       is still computed by the shim (the channel's rest, then the kernel
 *       socket's), with EPOLLET applied from those wakes.
 *   PS_KERNEL (fell back, or left with nothing in the channel): registered
 *       again exactly as the program asked, and dropped from the shadow set.
 *   PS_EPOLL (a nested epoll set): registered as asked; its accelerated
 *       members are looked at too, so it is reported when they are ready.
 *
 * epoll_wait looks at the accelerated members on the set's ready list
 * first (epoll_set.h: those that were ready lately, or that the kernel or
 * another thread pointed at; quiet ones are parked, armed, and come back
 * when the kernel reports their doorbell). If one is ready it adds what
 * the kernel has without waiting; otherwise it arms them and sleeps in the
 * real epoll_wait, so an idle program sleeps in the kernel, and a set with
 * kernel fds and accelerated sockets wakes for either. No wait walks the
 * whole set: its cost follows the members that are ready, as the kernel's
 * does.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "epoll_set.h"
#include "shim.h"
#include "xio/sys.h"

#define EXPORT __attribute__((visibility("default")))
/* An accelerated member's kernel registration carries TAG, its entry's
 * tagid and its fd in the data: an event of a member the set has since
 * dropped (its file is still open elsewhere) names no live entry. */
#define TAG 0x5849000000000000ull /* "XI" in the top bits of the data */
#define TAG_MASK 0xffff000000000000ull
#define TAG_DATA(e) (TAG | (uint64_t)(e)->tagid << 32 | (uint32_t)(e)->fd)
/* The set's kick eventfd (below): tagid 0, which no entry has. */
#define TAG_KICK (TAG | 1u)
#define MAX_NEST 4

/* The set this thread sleeps on (its own wake-ups need no kick). */
static __thread struct pepoll *sleeping_in;
static pthread_mutex_t kick_mu = PTHREAD_MUTEX_INITIALIZER;

/* Make the kick eventfd of ep if it has none; -1 if it cannot be made. */
static int kick_fd(struct pepoll *ep)
{
	int fd = atomic_load(&ep->kickfd);
	if (fd >= 0)
		return fd;
	pthread_mutex_lock(&kick_mu);
	fd = atomic_load(&ep->kickfd);
	if (fd < 0 && (fd = xio__wake_eventfd()) >= 0) {
		/* Edge-triggered: each write is one wake-up of one sleeper,
		 * and an unread count never keeps the set awake. */
		struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = TAG_KICK };
		if (REAL(epoll_ctl)(ep->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) {
			atomic_store(&ep->kickfd, fd);
		} else {
			REAL(close)(fd);
			fd = -1;
		}
	}
	pthread_mutex_unlock(&kick_mu);
	return fd;
}

void xio__epoll_wake(struct pepoll *ep)
{
	int n = atomic_load(&ep->sleepers);
	if (n == 0 || (n == 1 && sleeping_in == ep))
		return;
	int fd = kick_fd(ep);
	if (fd >= 0)
		xio__wake_write(fd);
}

/* This thread is about to arm ep's members and sleep on it; and woke. */
static void sleep_enter(struct pepoll *ep)
{
	atomic_fetch_add(&ep->sleepers, 1);
	sleeping_in = ep;
}

static void sleep_leave(struct pepoll *ep)
{
	sleeping_in = NULL;
	atomic_fetch_sub(&ep->sleepers, 1);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds, rounded up, from now to deadline (ns on CLOCK_MONOTONIC;
 * < 0: none, and -1 is returned), as epoll_wait's timeout takes them. */
static int ms_left(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - now_ns();
	return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

static unsigned os_ratio = 16;
static int64_t os_max_ns = 100000;
static pthread_once_t os_once = PTHREAD_ONCE_INIT;

static void os_tune(void)
{
	const char *r = getenv("XIO_EPOLL_OS_RATIO"), *u = getenv("XIO_EPOLL_OS_US");
	if (r && *r)
		os_ratio = (unsigned)strtoul(r, NULL, 10);
	if (u && *u)
		os_max_ns = (int64_t)strtoll(u, NULL, 10) * 1000;
}

/* With accelerated events ready: must the kernel's part be looked at too? */
static int kernel_due(struct pepoll *ep)
{
	pthread_once(&os_once, os_tune);
	return atomic_fetch_add_explicit(&ep->os_skipped, 1, memory_order_relaxed) + 1 >= os_ratio ||
	       now_ns() - atomic_load_explicit(&ep->os_last_ns, memory_order_relaxed) >= os_max_ns;
}

static struct pepoll *ep_new(int epfd)
{
	struct pepoll *ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	pthread_mutex_init(&ep->mu, NULL);
	pthread_mutex_init(&ep->poke_mu, NULL);
	ep->epfd = epfd;
	atomic_store(&ep->kickfd, -1);
	struct psock *ps = psock_new(epfd, PS_EPOLL, 0);
	if (!ps) {
		free(ep);
		return NULL;
	}
	ps->ep = ep;
	return ep;
}

void xio__epoll_free(struct pepoll *ep)
{
	pthread_mutex_lock(&ep->mu);
	for (int fd = 0; fd < ep->cap; fd++) {
		struct pentry *e = ep->by_fd[fd];
		if (e) {
			set_remove(ep, e);
			free(e);
		}
	}
	pthread_mutex_unlock(&ep->mu);
	free(ep->by_fd);
	free(ep->pokes);
	pthread_mutex_destroy(&ep->mu);
	pthread_mutex_destroy(&ep->poke_mu);
	if (atomic_load(&ep->kickfd) >= 0)
		REAL(close)(atomic_load(&ep->kickfd));
	free(ep);
}

static int shadowed(int kind)
{
	return kind == PS_TCP || kind == PS_CONNECTING || kind == PS_CONN || kind == PS_EPOLL;
}

/* A PS_CONN socket whose connection is on its kernel socket now (it left
 * shared memory, or followed its peer), though its psock may still have
 * the channel's rest to read. */
static int conn_left(struct psock *ps, int kind)
{
	return kind == PS_CONN && ps->conn->left;
}

/* How e is registered in the kernel for its socket's current kind (left:
 * conn_left() of it, as the caller read it and will record in e->left). */
static struct epoll_event kernel_reg(struct pentry *e, int kind, int left)
{
	struct epoll_event ev;
	switch (kind) {
	case PS_CONN:
		/* Accelerated: the doorbells, FIN and RST. Left: what the
		 * program waits for, edge-triggered so that a socket that stays
		 * ready does not keep waking the set; the scan reports it. */
		ev.events = EPOLLIN | EPOLLRDHUP;
		if (left)
			ev.events = ((uint32_t)xio__conn_left_events(e->ps->conn, (short)e->events) &
				     (EPOLLIN | EPOLLRDNORM | EPOLLOUT | EPOLLWRNORM | EPOLLRDHUP |
				      EPOLLPRI)) |
				    EPOLLET;
		ev.data.u64 = TAG_DATA(e);
		break;
	case PS_TCP:
	case PS_CONNECTING:
		ev.events = e->events | (kind == PS_CONNECTING ? EPOLLOUT : 0);
		ev.data.u64 = TAG_DATA(e);
		break;
	default: /* kernel sockets and nested sets: as the program asked */
		ev.events = e->events;
		ev.data = e->data;
		break;
	}
	return ev;
}

static void unlink_entry(struct pepoll *ep, struct pentry *e)
{
	set_remove(ep, e);
	free(e);
}

/* Take a parked entry out of the kernel set for good. Caller holds ep->mu. */
static void park_drop(struct pepoll *ep, struct pentry *e)
{
	REAL(epoll_ctl)(ep->epfd, EPOLL_CTL_DEL, e->fd, NULL);
	unlink_entry(ep, e);
}

/* Re-register e, an entry of ep, for kind: its socket's current kind or
 * the one it is about to take. Caller holds ep->mu; e may be freed. */
static void sync_entry(struct pepoll *ep, struct pentry *e, int kind)
{
	if (e->parked) {
		park_drop(ep, e);
		return;
	}
	int left = conn_left(e->ps, kind);
	if (left && e->left)
		return; /* so registered already */
	struct epoll_event ev = kernel_reg(e, kind, left);
	REAL(epoll_ctl)(ep->epfd, EPOLL_CTL_MOD, e->fd, &ev);
	e->et_seen = 0;
	e->left = left;
	if (!shadowed(kind))
		unlink_entry(ep, e);
	else
		act_add(ep, e); /* its readiness is to be looked at anew */
}

/* The same for every entry of ps in ep (one per fd of it the program
 * added). Caller holds ep->mu. */
static void sync_one(struct pepoll *ep, struct psock *ps, int kind)
{
	struct pentry *mine[PS_MAX_EPOLL];
	int n = 0;
	for (int i = 0; i < PS_MAX_EPOLL; i++)
		if (ps->member_of[i] == ep && ps->ent[i])
			mine[n++] = ps->ent[i];
	for (int i = 0; i < n; i++)
		sync_entry(ep, mine[i], kind); /* may free it */
}

/* Re-register ps in every set that follows it, for its current kind. */
static void sync_ps(struct psock *ps)
{
	int kind = atomic_load(&ps->kind);
	for (int i = 0; i < PS_MAX_EPOLL; i++) {
		struct pepoll *ep = ps->member_of[i];
		if (!ep)
			continue;
		pthread_mutex_lock(&ep->mu);
		sync_one(ep, ps, kind);
		pthread_mutex_unlock(&ep->mu);
	}
}

/* Record that e's connection left shared memory while e is still
 * registered for doorbells: its set must settle it (settle_left) before
 * it sleeps, or a wait for room, which no doorbell announces any more,
 * would never wake. Caller holds ep->mu. */
static void note_left(struct pepoll *ep, struct pentry *e)
{
	if (!e->left && !e->parked && conn_left(e->ps, atomic_load(&e->ps->kind)))
		ep->left_due = 1;
}

/*
 * Members of held whose connection left shared memory (they followed their
 * peer inside a scan, or another thread moved them): those with nothing
 * left in the channel become PS_KERNEL, registered as the program asked,
 * in every set that follows them; the others are registered for the
 * program's events (kernel_reg). Called with held->mu held, which keeps
 * their psocks alive (closing a socket forgets it in each of its sets,
 * under that set's lock, before it is freed). The other sets are only
 * tried (trylock): their lock may be held by a thread that waits for this
 * one (a nested set, or another set settling the same socket). If one is
 * busy, the socket stays PS_CONN, this set tries again at its next scan,
 * and the busy one settles it at its own.
 */
#define SETTLE_BATCH 16
static void settle_left(struct pepoll *held)
{
	struct psock *due[SETTLE_BATCH];
	int ndue = 0, done = 1;
	for (int fd = 0; fd < held->cap; fd++) {
		struct pentry *e = held->by_fd[fd];
		if (!e)
			continue;
		struct psock *ps = e->ps;
		if (e->parked || !conn_left(ps, atomic_load(&ps->kind)) ||
		    (e->left && ps->conn->accel))
			continue;
		int seen = 0;
		for (int i = 0; i < ndue; i++)
			seen |= due[i] == ps;
		if (seen)
			continue;
		if (ndue == SETTLE_BATCH) {
			done = 0; /* the rest at the next scan */
			break;
		}
		due[ndue++] = ps;
	}
	for (int d = 0; d < ndue; d++) {
		struct psock *ps = due[d];
		struct pepoll *other[PS_MAX_EPOLL];
		int nother = 0, all = 1;
		for (int i = 0; i < PS_MAX_EPOLL; i++) {
			struct pepoll *ep = ps->member_of[i];
			int had = !ep || ep == held;
			for (int j = 0; j < nother; j++)
				had |= other[j] == ep;
			if (had)
				continue;
			if (pthread_mutex_trylock(&ep->mu) == 0)
				other[nother++] = ep;
			else
				all = 0;
		}
		int kind = PS_CONN;
		if (all && !ps->conn->accel) {
			/* What xio__shim_settle does, with the sets in hand. */
			kind = PS_KERNEL;
			atomic_store_explicit(&ps->kind, PS_KERNEL, memory_order_release);
		}
		for (int i = 0; i < nother; i++) {
			sync_one(other[i], ps, kind);
			pthread_mutex_unlock(&other[i]->mu);
		}
		sync_one(held, ps, kind);
		done &= all;
	}
	held->left_due = !done;
}

void xio__epoll_became_conn(struct psock *ps)
{
	sync_ps(ps);
	/* A thread asleep on one of its sets armed nothing for it yet. */
	xio__shim_wake_others(ps->conn);
}

void xio__epoll_sync(struct psock *ps)
{
	sync_ps(ps);
}

void xio__epoll_after_fork(struct pepoll *ep)
{
	pthread_mutex_init(&ep->mu, NULL);
	pthread_mutex_init(&ep->poke_mu, NULL);
	atomic_store(&ep->sleepers, 0); /* only this thread exists */
	/* The parent's arms and pokes were the parent's: the child looks at
	 * every member once, and parks them again with its own tokens. */
	for (unsigned i = 0; i < ep->npokes; i++)
		ep->pokes[i]->poked = 0;
	ep->npokes = 0;
	ep->poke_all = 0;
	act_all(ep);
}

/* Its members are inherited by the child now: whichever process uses one
 * first owns it, and the other must find out before the peer's next bytes
 * land in a ring it may no longer read (leave.c, "shared after fork"). So,
 * as the child does, the parent's next wait looks at every member once
 * (xio__shim_claim), not only at those whose doorbell rings. */
void xio__epoll_look_all(struct pepoll *ep)
{
	pthread_mutex_lock(&ep->mu);
	act_all(ep);
	pthread_mutex_unlock(&ep->mu);
}

void xio__epoll_forget(struct psock *ps)
{
	for (int i = 0; i < PS_MAX_EPOLL; i++) {
		struct pepoll *ep = ps->member_of[i];
		if (!ep)
			continue;
		pthread_mutex_lock(&ep->mu);
		if (ps->member_of[i] == ep && ps->ent[i])
			unlink_entry(ep, ps->ent[i]);
		pthread_mutex_unlock(&ep->mu);
	}
}

/* Every epoll instance gets its (empty) shadow set, so that a socket added
 * later, or the instance nested in another, can be followed. */
static int track(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		struct psock *old = fdtab_exchange(fd, NULL);
		if (old)
			psock_unref(old, fd);
		ep_new(fd);
		errno = saved;
	}
	return fd;
}

EXPORT int epoll_create(int size)
{
	SHIM_INIT();
	return track(REAL(epoll_create)(size));
}

EXPORT int epoll_create1(int flags)
{
	SHIM_INIT();
	return track(REAL(epoll_create1)(flags));
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	SHIM_INIT();
	struct psock *eps = fdtab_lookup(epfd);
	struct psock *ps = fdtab_lookup(fd);
	if (!eps || atomic_load(&eps->kind) != PS_EPOLL)
		return REAL(epoll_ctl)(epfd, op, fd, ev);
	struct pepoll *ep = eps->ep;
	int kind = ps ? atomic_load(&ps->kind) : PS_KERNEL;
	if (kind == PS_CONNECTING)
		kind = psock_finish_connect(ps, fd, 0);
	pthread_mutex_lock(&ep->mu);
	struct pentry *e = set_find(ep, fd);
	int r;
	/*
	 * An accelerated socket is registered in the kernel the same way
	 * whatever the program asks (EPOLLIN for doorbells, FIN and RST), so
	 * event loops that change a socket's events on every request (MOD,
	 * or DEL then ADD: redis' ae, libevent) cost no system call: the
	 * shadow entry changes, and a deleted entry is parked in the kernel
	 * set until it is added back, or until a kernel event or a change of
	 * kind shows it must really go (park_drop). Once its connection has
	 * left shared memory, the registration follows the program's events
	 * (kernel_reg), so every change is the kernel's too.
	 */
	int left = ps && conn_left(ps, kind);
	int fast = kind == PS_CONN && !left;
	if (e && e->parked && (!fast || e->ps != ps)) {
		/* Fell back meanwhile, or the fd number is another socket's now:
		 * no longer ours to park. */
		park_drop(ep, e);
		e = NULL;
	}
	if (e && e->parked) {
		if (op == EPOLL_CTL_ADD) {
			e->parked = 0;
			e->events = ev->events;
			e->data = ev->data;
			e->oneshot_off = 0;
			e->et_seen = 0;
			act_add(ep, e);
			r = 0;
		} else {
			errno = ENOENT; /* as the kernel answers for an fd not in the set */
			r = -1;
		}
	} else if (op == EPOLL_CTL_DEL && e && fast) {
		e->parked = 1;
		r = 0;
	} else if (op == EPOLL_CTL_MOD && e && kind == PS_CONN && (ev->events & EPOLLEXCLUSIVE)) {
		errno = EINVAL; /* the kernel refuses MOD with EPOLLEXCLUSIVE */
		r = -1;
	} else if (op == EPOLL_CTL_MOD && e && fast) {
		e->events = ev->events;
		e->data = ev->data;
		e->oneshot_off = 0;
		e->et_seen = 0;
		act_add(ep, e); /* armed, if parked, for the old events */
		r = 0;
	} else if (op == EPOLL_CTL_DEL) {
		r = REAL(epoll_ctl)(epfd, op, fd, ev);
		if (r == 0 && e)
			unlink_entry(ep, e);
	} else if (op == EPOLL_CTL_ADD && shadowed(kind) && !e && ps != eps) {
		e = calloc(1, sizeof(*e));
		if (!e) {
			pthread_mutex_unlock(&ep->mu);
			errno = ENOMEM;
			return -1;
		}
		*e = (struct pentry){
			.fd = fd, .ps = ps, .events = ev->events, .data = ev->data, .left = left
		};
		r = set_insert(ep, e);
		if (r < 0) {
			pthread_mutex_unlock(&ep->mu);
			free(e);
			errno = -r;
			return -1;
		}
		struct epoll_event kev = kernel_reg(e, kind, left);
		r = REAL(epoll_ctl)(epfd, op, fd, &kev);
		if (r == 0) {
			set_bind_slot(ep, e);
			act_add(ep, e);
		} else {
			int saved = errno;
			set_remove(ep, e);
			free(e);
			errno = saved;
		}
	} else if (op == EPOLL_CTL_MOD && e) {
		uint32_t old_ev = e->events;
		epoll_data_t old_data = e->data;
		e->events = ev->events;
		e->data = ev->data;
		struct epoll_event kev = kernel_reg(e, kind, left);
		r = REAL(epoll_ctl)(epfd, op, fd, &kev);
		if (r == 0) {
			e->oneshot_off = 0;
			e->et_seen = 0;
			e->left = left;
			act_add(ep, e);
		} else {
			e->events = old_ev;
			e->data = old_data;
		}
	} else {
		r = REAL(epoll_ctl)(epfd, op, fd, ev);
	}
	pthread_mutex_unlock(&ep->mu);
	/* The kernel wakes a thread asleep on the set when a member it adds
	 * or changes is ready; an accelerated member's readiness is the
	 * channels', so the shim does it: the sleeper looks at the set again
	 * and arms the member before it sleeps on (issue 14, item 2). */
	if (r == 0 && op != EPOLL_CTL_DEL && kind == PS_CONN)
		xio__epoll_wake(ep);
	return r;
}

static int scan(struct pepoll *ep, struct epoll_event *out, int max, uint64_t arm, int depth);

/* Readiness of one shadow entry (without side effects unless arm). */
static uint32_t entry_ready(struct pentry *e, uint64_t arm, int depth)
{
	int kind = atomic_load(&e->ps->kind);
	if (kind == PS_EPOLL) {
		struct epoll_event tmp;
		if (depth >= MAX_NEST || !(e->events & EPOLLIN))
			return 0;
		struct pepoll *inner = e->ps->ep;
		pthread_mutex_lock(&inner->mu);
		int n = scan(inner, &tmp, 1, arm, depth + 1);
		if (inner->left_due)
			settle_left(inner); /* the outer set sleeps on its registrations */
		pthread_mutex_unlock(&inner->mu);
		return n > 0 ? EPOLLIN : 0;
	}
	if (kind != PS_CONN)
		return 0;
	uint32_t want = (e->events & (EPOLLIN | EPOLLRDNORM | EPOLLOUT | EPOLLWRNORM | EPOLLRDHUP |
				      EPOLLPRI)) |
			EPOLLERR | EPOLLHUP;
	return (uint32_t)xio__shim_conn_poll(e->ps, (short)want, arm) & want;
}

/* May e leave the ready list while quiet? Only a member whose doorbell the
 * kernel reports (an accelerated connection, not one that left) and that
 * a poke can reach (it has a slot in its psock). */
static int parkable(const struct pentry *e, int kind)
{
	return kind == PS_CONN && !e->left && e->slot >= 0 && e->ps->conn->accel &&
	       !e->ps->conn->left;
}

/* Report ready accelerated members into out (at most max). Caller holds
 * ep->mu. depth > 0: a nested look, which reports without consuming
 * EPOLLET/EPOLLONESHOT state. Only the ready list is looked at: members
 * quiet for the park interval are armed with a token of their own and
 * leave it (epoll_set.h); with arm (a sleep's token), the others are armed
 * with that token before this thread sleeps. */
static int scan(struct pepoll *ep, struct epoll_event *out, int max, uint64_t arm, int depth)
{
	act_take_pokes(ep);
	int64_t now = now_ns(), park = xio__epoll_park_ns();
	struct park_tokens toks = { 0, 0 };
	unsigned looks = 0, parks = 0;
	int n = 0;
	struct pentry *e, *next, *last = NULL;
	for (e = ep->act_head; e && n < max; e = next) {
		next = e->anext;
		looks++;
		if (e->oneshot_off || e->parked) {
			/* Not the program's to hear of until it changes the entry
			 * (which puts it back here). */
			note_left(ep, e);
			act_remove(ep, e);
			continue;
		}
		int kind = atomic_load(&e->ps->kind);
		if (kind != PS_CONN && kind != PS_EPOLL) {
			act_remove(ep, e); /* the kernel's events report it */
			continue;
		}
		/* The edge's signature is read before the readiness: a change
		 * that lands between the two then shows as a new edge on the
		 * next wait. Read after, it would be recorded as reported
		 * without ever having been seen, and an EPOLLET program would
		 * sleep on data it was never told of. */
		int et = (e->events & EPOLLET) && kind == PS_CONN;
		uint64_t sig = et ? xio__conn_event_sig(e->ps->conn) : 0;
		int parking = parkable(e, kind) && now - e->last_ready >= park;
		uint64_t tok = parking ? xio__park_token(&toks) : arm;
		/* Not ready: armed with tok, and looked at again (conn_poll). */
		uint32_t rev = entry_ready(e, tok, depth);
		note_left(ep, e); /* it may have followed its peer just now */
		if (rev && et && atomic_load(&e->ps->kind) == PS_CONN && e->et_seen &&
		    e->et_sig == sig) {
			/* Reported already, so no report now; but this wait may
			 * sleep, or the entry may park, and either must wake for
			 * the next edge even though something (EPOLLOUT, most
			 * often) is ready: arm, then look at the signature once
			 * more. */
			rev = 0;
			if (tok) {
				xio__conn_arm(e->ps->conn, (short)e->events, tok);
				uint64_t now_sig = xio__conn_event_sig(e->ps->conn);
				if (now_sig != sig) {
					sig = now_sig;
					rev = entry_ready(e, 0, depth);
				}
			}
		}
		if (!rev) {
			if (parking && parkable(e, atomic_load(&e->ps->kind))) {
				act_remove(ep, e);
				parks++;
			}
			continue;
		}
		if (et && atomic_load(&e->ps->kind) == PS_CONN && depth == 0) {
			e->et_seen = 1;
			e->et_sig = sig;
		}
		if (depth == 0 && (e->events & EPOLLONESHOT))
			e->oneshot_off = 1;
		e->last_ready = now;
		out[n].events = rev;
		out[n].data = e->data;
		n++;
		last = e;
	}
	/* A scan that fills out stops there, and the next one starts after
	 * the last member it reported, as the kernel's ready list rotates:
	 * with more members ready than max, each gets its turn (always
	 * starting at the head starved the rest for good; a level-triggered
	 * EPOLLOUT member is nearly always ready). */
	if (depth == 0 && n == max)
		act_rotate_after(ep, last);
	atomic_fetch_add_explicit(&xio_stats.ep_looks, looks, memory_order_relaxed);
	if (parks)
		atomic_fetch_add_explicit(&xio_stats.ep_parks, parks, memory_order_relaxed);
	return n;
}

/* A scan of ep at the top level, under its lock; members found on the
 * kernel are settled before this thread sleeps on their registration. */
static int scan_top(struct pepoll *ep, struct epoll_event *out, int max, uint64_t arm)
{
	pthread_mutex_lock(&ep->mu);
	int n = scan(ep, out, max, arm, 0);
	if (ep->left_due)
		settle_left(ep);
	pthread_mutex_unlock(&ep->mu);
	return n;
}

static struct pentry *tagged(struct pepoll *ep, uint64_t u)
{
	if ((u & TAG_MASK) != TAG)
		return NULL;
	struct pentry *e = set_find(ep, (int)(uint32_t)u);
	return e && TAG_DATA(e) == u ? e : NULL;
}

/* Add the events in[0..m) to out[0..*n) (room for max): merged, never
 * dropped, when one names a member out has already: a rescan may find more
 * of a socket than a wait reports already (EPOLLIN after an EPOLLOUT), and
 * it has recorded that as reported: an EPOLLET program would never hear of
 * it (issue 7, the nginx reverse-proxy stall). A nested set registered in
 * the kernel as the program asked may come both ways too. */
static void merge(struct epoll_event *out, int *n, int max, const struct epoll_event *in, int m)
{
	for (int i = 0; i < m; i++) {
		int dup = 0;
		for (int j = 0; j < *n && !dup; j++)
			if (out[j].data.u64 == in[i].data.u64) {
				out[j].events |= in[i].events;
				dup = 1;
			}
		if (!dup && *n < max)
			out[(*n)++] = in[i];
	}
}

/*
 * The kernel's part of the set: its wait (tmo ms; sleeping: the caller
 * counted itself as a sleeper), then its events taken. A doorbell, FIN or
 * RST of an accelerated member puts that member on the ready list (the
 * rescan reports it; it needs no room in out); a kernel fd's event, or an
 * unpaired socket's, goes to out. At most the room out has left is asked
 * for (64 at most), so no event taken from the kernel is lost. Returns
 * the number of kernel events (0 if none), or -errno.
 */
static int kernel_look(struct pepoll *ep, struct epoll_event *out, int *n, int max, int tmo,
		       const sigset_t *mask)
{
	struct epoll_event kev[64];
	int room = max - *n < 64 ? max - *n : 64;
	if (room <= 0)
		return 0;
	if (tmo)
		xio__sleep_begin();
	int k = REAL(epoll_pwait)(ep->epfd, kev, room, tmo, mask);
	if (tmo)
		xio__sleep_end();
	atomic_store_explicit(&ep->os_last_ns, now_ns(), memory_order_relaxed);
	atomic_store_explicit(&ep->os_skipped, 0, memory_order_relaxed);
	if (k < 0)
		return -errno;
	/* Connects that finished (the kernel reported them): pair them after
	 * this, outside the set's lock, so a program waiting only for EPOLLIN
	 * gets its data. */
	struct psock *pending[64];
	int np = 0;
	unsigned unparks = 0;
	struct epoll_event direct[64];
	int nd = 0;
	pthread_mutex_lock(&ep->mu);
	for (int i = 0; i < k; i++) {
		if (kev[i].data.u64 == TAG_KICK) {
			/* Another thread changed the set or took a wake-up: look
			 * again (the rescan). */
			xio__wake_read(atomic_load(&ep->kickfd));
			continue;
		}
		struct pentry *e = tagged(ep, kev[i].data.u64);
		if (!e && (kev[i].data.u64 & TAG_MASK) == TAG)
			continue; /* a socket we forgot, whose file another process
				   * still holds open: not the program's event */
		if (!e) {
			direct[nd++] = kev[i]; /* a kernel fd, or a nested set */
			continue;
		}
		int kind = atomic_load(&e->ps->kind);
		if (e->parked) {
			/* A doorbell armed before the delete, or the kernel's
			 * FIN: the program no longer watches it. */
			if (kind == PS_CONN)
				xio__conn_drain_ready(e->ps->conn, kev[i].events);
			park_drop(ep, e);
			continue;
		}
		if (kind == PS_CONN) {
			/* A doorbell or the kernel's FIN: swallow it; the channels
			 * say what is ready. The word is not armed again: this
			 * thread is awake, and arms it only before it sleeps next.
			 * After a leave, an edge of the kernel socket itself: what
			 * it reports is new for EPOLLET. A parked member is back on
			 * the ready list. */
			xio__conn_drain_ready(e->ps->conn, kev[i].events);
			if (e->left)
				e->et_seen = 0;
			else
				note_left(ep, e);
			unparks += !e->active;
			act_add(ep, e);
			continue;
		}
		if (kind == PS_CONNECTING)
			pending[np++] = e->ps;
		/* Not paired yet: what the kernel says is the truth, except our
		 * own EPOLLOUT for the connect. */
		uint32_t rev = kev[i].events & (e->events | EPOLLERR | EPOLLHUP);
		if (rev && !e->oneshot_off) {
			if (e->events & EPOLLONESHOT)
				e->oneshot_off = 1;
			direct[nd].events = rev;
			direct[nd].data = e->data;
			nd++;
		}
	}
	if (unparks)
		atomic_fetch_add_explicit(&xio_stats.ep_unparks, unparks, memory_order_relaxed);
	if (ep->left_due)
		settle_left(ep);
	pthread_mutex_unlock(&ep->mu);
	for (int i = 0; i < np; i++)
		psock_finish_connect(pending[i], pending[i]->fd, 0);
	/* The kernel gave at most max - n events: all fit. */
	merge(out, n, max, direct, nd);
	return k;
}

/* Look at the ready list into out after *n events, merging. */
static void rescan(struct pepoll *ep, struct epoll_event *out, int *n, int max)
{
	if (*n == 0) {
		*n = scan_top(ep, out, max, 0);
		return;
	}
	struct epoll_event more[64];
	while (*n < max) {
		int m = scan_top(ep, more, max - *n < 64 ? max - *n : 64, 0);
		int before = *n;
		merge(out, n, max, more, m);
		if (m < 64 || *n == before)
			break;
	}
}

static int xepoll_wait(struct pepoll *ep, struct epoll_event *out, int max, int timeout,
		       const sigset_t *mask)
{
	int64_t deadline = timeout >= 0 ? now_ns() + (int64_t)timeout * 1000000 : -1;
	atomic_fetch_add_explicit(&xio_stats.ep_waits, 1, memory_order_relaxed);

	/*
	 * The kernel's part of the set (kernel fds, doorbells of parked
	 * members, FIN and RST) costs a system call. While the ready list has
	 * events it is looked at only every XIO_EPOLL_OS_RATIO waits or after
	 * XIO_EPOLL_OS_US, as libvma's OS-poll ratio does: a busy set makes no
	 * system call on most waits, and a kernel fd or a parked member that
	 * turned ready is never starved for longer than that bound. It is
	 * looked at first, so that a ready list that fills every wait cannot
	 * starve it.
	 */
	int n = 0;
	if (kernel_due(ep)) {
		int k = kernel_look(ep, out, &n, max, 0, mask);
		if (k < 0)
			return k;
	}

	/* A short look before sleeping: the peer usually answers within
	 * microseconds, and then neither side rings or sleeps. */
	int64_t spin_end = timeout != 0 ? now_ns() + (int64_t)xio__poll_spin_ns() : 0;
	for (;;) {
		rescan(ep, out, &n, max);
		if (n || now_ns() >= spin_end)
			break;
		xio__poll_relax();
	}
	while (!n) {
		/* About to sleep: arm the members on the ready list with this
		 * sleep's token (one doorbell wakes the whole set; parked ones
		 * are armed already). Counted as a sleeper first, so that a
		 * thread that changes the set or takes a word back after our
		 * look wakes us. */
		xio__reclaim_tick();
		sleep_enter(ep);
		n = scan_top(ep, out, max, xio__wait_token());
		int k = n ? 0
			  : kernel_look(ep, out, &n, max, xio__reclaim_cap_ms(ms_left(deadline)),
					mask);
		sleep_leave(ep);
		if (k < 0)
			return n ? n : k;
		if (k > 0)
			rescan(ep, out, &n, max);
		if (!n && deadline >= 0 && now_ns() >= deadline)
			return 0;
	}
	return n;
}

/*
 * A set with no accelerated member: the kernel's wait as is, except that
 * an event tagged for a socket the shim has forgotten (closed by the
 * program, its file still open in another process: a forked child, the
 * monitor's copy on its way to being closed) is not the program's, and is
 * dropped; a wait that only had such events goes on until its timeout.
 * Returns PLAIN_SWITCH when another thread added an accelerated socket
 * meanwhile: the caller waits the shim's way for the time left.
 */
#define PLAIN_SWITCH (-4097)
static int plain_wait(struct pepoll *ep, struct epoll_event *ev, int max, int64_t deadline,
		      const sigset_t *mask)
{
	for (;;) {
		int timeout = ms_left(deadline);
		if (timeout != 0)
			sleep_enter(ep);
		if (timeout != 0 && ep->nentries) {
			sleep_leave(ep);
			return PLAIN_SWITCH;
		}
		int r = REAL(epoll_pwait)(ep->epfd, ev, max, timeout, mask);
		if (timeout != 0)
			sleep_leave(ep);
		if (r <= 0)
			return r;
		int k = 0, kicked = 0;
		for (int i = 0; i < r; i++) {
			if (ev[i].data.u64 == TAG_KICK) {
				xio__wake_read(atomic_load(&ep->kickfd));
				kicked = 1;
			} else if ((ev[i].data.u64 & TAG_MASK) != TAG) {
				ev[k++] = ev[i];
			}
		}
		if (k || timeout == 0)
			return k;
		if (kicked && ep->nentries)
			return PLAIN_SWITCH;
	}
}

/* epoll_pwait's work for a set the shim follows; ms < 0: no timeout. */
static int shim_wait(struct pepoll *ep, struct epoll_event *ev, int max, int ms,
		     const sigset_t *mask)
{
	int64_t deadline = ms >= 0 ? now_ns() + (int64_t)ms * 1000000 : -1;
	if (ep->nentries == 0) {
		int r = plain_wait(ep, ev, max, deadline, mask);
		if (r != PLAIN_SWITCH)
			return r < 0 ? -errno : r;
		ms = ms_left(deadline);
	}
	return xepoll_wait(ep, ev, max, ms, mask);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
		       const sigset_t *mask)
{
	SHIM_INIT();
	struct psock *ps = fdtab_lookup(epfd);
	if (!ps || atomic_load(&ps->kind) != PS_EPOLL || max <= 0)
		return REAL(epoll_pwait)(epfd, ev, max, timeout, mask);
	return (int)xio_ret(shim_wait(ps->ep, ev, max, timeout, mask));
}

EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	return epoll_pwait(epfd, ev, max, timeout, NULL);
}

EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max, const struct timespec *tmo,
			const sigset_t *mask)
{
	SHIM_INIT();
	struct psock *ps = fdtab_lookup(epfd);
	if (!ps || atomic_load(&ps->kind) != PS_EPOLL || max <= 0) {
		/* glibc 2.35+ has it; call through the kernel directly so that
		 * an older libc does not stop the shim from loading. */
		long r = XIO__SC(SYS_epoll_pwait2, epfd, ev, max, tmo, mask, _NSIG / 8);
		return (int)xio_ret(r);
	}
	/* Millisecond resolution, rounded up, as the shim's wait works in. */
	int ms = -1;
	if (tmo) {
		int64_t ns = (int64_t)tmo->tv_sec * 1000000000 + tmo->tv_nsec;
		ms = ns <= 0 ? 0 : (int)((ns + 999999) / 1000000);
	}
	return (int)xio_ret(shim_wait(ps->ep, ev, max, ms, mask));
}
