/*
 * epoll_ready.c - the entry table and the ready list of a shadow epoll set
 * (epoll_set.h says what is active and what is parked, and why).
 *
 * Everything here is O(1) per call except act_all, which runs after fork
 * and when a poke could not be recorded (out of memory): a wait, a change
 * of the set and a poke never walk the members.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "epoll_set.h"

struct pentry *set_find(struct pepoll *ep, int fd)
{
	return fd >= 0 && fd < ep->cap ? ep->by_fd[fd] : NULL;
}

int set_insert(struct pepoll *ep, struct pentry *e)
{
	if (e->fd < 0)
		return -EBADF;
	if (e->fd >= ep->cap) {
		int cap = ep->cap ? ep->cap : 64;
		while (cap <= e->fd)
			cap *= 2;
		struct pentry **t = realloc(ep->by_fd, (size_t)cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		memset(t + ep->cap, 0, (size_t)(cap - ep->cap) * sizeof(*t));
		ep->by_fd = t;
		ep->cap = cap;
	}
	ep->by_fd[e->fd] = e;
	ep->nentries++;
	e->slot = -1;
	/* A tag of 0 never names an entry: the kick eventfd's tag has it. */
	if (++ep->next_tagid == 0)
		ep->next_tagid = 1;
	e->tagid = ep->next_tagid;
	return 0;
}

void set_bind_slot(struct pepoll *ep, struct pentry *e)
{
	struct psock *ps = e->ps;
	pthread_mutex_lock(&ep->poke_mu);
	for (int i = 0; i < PS_MAX_EPOLL; i++)
		if (!ps->member_of[i]) {
			ps->ent[i] = e;
			ps->member_of[i] = ep;
			e->slot = i;
			break;
		}
	pthread_mutex_unlock(&ep->poke_mu);
}

void set_remove(struct pepoll *ep, struct pentry *e)
{
	act_remove(ep, e);
	pthread_mutex_lock(&ep->poke_mu);
	if (e->slot >= 0) {
		e->ps->member_of[e->slot] = NULL;
		e->ps->ent[e->slot] = NULL;
		e->slot = -1;
	}
	if (e->poked) {
		for (unsigned i = 0; i < ep->npokes; i++)
			if (ep->pokes[i] == e) {
				unsigned last = ep->npokes - 1;
				ep->pokes[i] = ep->pokes[last];
				__atomic_store_n(&ep->npokes, last, __ATOMIC_RELEASE);
				break;
			}
		e->poked = 0;
	}
	pthread_mutex_unlock(&ep->poke_mu);
	if (e->fd >= 0 && e->fd < ep->cap && ep->by_fd[e->fd] == e)
		ep->by_fd[e->fd] = NULL;
	ep->nentries--;
}

void act_add(struct pepoll *ep, struct pentry *e)
{
	if (e->active)
		return;
	e->active = 1;
	e->anext = NULL;
	e->aprev = ep->act_tail;
	if (ep->act_tail)
		ep->act_tail->anext = e;
	else
		ep->act_head = e;
	ep->act_tail = e;
	ep->nactive++;
}

void act_remove(struct pepoll *ep, struct pentry *e)
{
	if (!e->active)
		return;
	if (e->aprev)
		e->aprev->anext = e->anext;
	else
		ep->act_head = e->anext;
	if (e->anext)
		e->anext->aprev = e->aprev;
	else
		ep->act_tail = e->aprev;
	e->aprev = e->anext = NULL;
	e->active = 0;
	ep->nactive--;
}

void act_rotate_after(struct pepoll *ep, struct pentry *e)
{
	if (!e || !e->active || !e->anext)
		return; /* e is the tail already: the order stays */
	struct pentry *first = ep->act_head, *rest = e->anext;
	rest->aprev = NULL;
	ep->act_head = rest;
	ep->act_tail->anext = first;
	first->aprev = ep->act_tail;
	e->anext = NULL;
	ep->act_tail = e;
}

void act_all(struct pepoll *ep)
{
	for (int fd = 0; fd < ep->cap; fd++)
		if (ep->by_fd[fd])
			act_add(ep, ep->by_fd[fd]);
}

void act_take_pokes(struct pepoll *ep)
{
	/* Looked at without the lock first: a wait with nothing poked (every
	 * wait of a single-threaded loop between doorbells) takes no lock.
	 * A poke that lands just after is taken by the next look; the poker
	 * kicks a thread that sleeps meanwhile (xio__epoll_wake). */
	if (!__atomic_load_n(&ep->npokes, __ATOMIC_ACQUIRE) &&
	    !__atomic_load_n(&ep->poke_all, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&ep->poke_mu);
	for (unsigned i = 0; i < ep->npokes; i++) {
		ep->pokes[i]->poked = 0;
		act_add(ep, ep->pokes[i]);
	}
	__atomic_store_n(&ep->npokes, 0, __ATOMIC_RELEASE);
	int all = ep->poke_all;
	__atomic_store_n(&ep->poke_all, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&ep->poke_mu);
	if (all)
		act_all(ep);
}

/* Called with no lock held (or from inside a scan of one of ps's sets,
 * which holds that set's mu but never its poke_mu). */
void xio__epoll_poke(struct psock *ps)
{
	for (int i = 0; i < PS_MAX_EPOLL; i++) {
		struct pepoll *ep = ps->member_of[i];
		if (!ep)
			continue;
		pthread_mutex_lock(&ep->poke_mu);
		struct pentry *e = ps->member_of[i] == ep ? ps->ent[i] : NULL;
		if (e && !e->poked) {
			if (ep->npokes == ep->pokes_cap) {
				unsigned cap = ep->pokes_cap ? 2 * ep->pokes_cap : 16;
				struct pentry **t = realloc(ep->pokes, cap * sizeof(*t));
				if (t) {
					ep->pokes = t;
					ep->pokes_cap = cap;
				}
			}
			if (ep->npokes < ep->pokes_cap) {
				e->poked = 1;
				ep->pokes[ep->npokes] = e;
				__atomic_store_n(&ep->npokes, ep->npokes + 1, __ATOMIC_RELEASE);
			} else {
				__atomic_store_n(&ep->poke_all, 1, __ATOMIC_RELEASE);
			}
		}
		pthread_mutex_unlock(&ep->poke_mu);
	}
}

uint64_t xio__park_token(struct park_tokens *t)
{
	if (!t->left) {
		t->next = xio__wait_tokens(64);
		t->left = t->next ? 64 : 0;
		if (!t->left)
			return xio__wait_token() | XIO_TOKEN_OWN;
	}
	t->left--;
	return t->next++ | XIO_TOKEN_OWN;
}

static int64_t park_ns = 1000000;
static pthread_once_t park_once = PTHREAD_ONCE_INIT;

static void park_tune(void)
{
	const char *s = getenv("XIO_EPOLL_PARK_US");
	if (s && *s)
		park_ns = (int64_t)strtoll(s, NULL, 10) * 1000;
}

int64_t xio__epoll_park_ns(void)
{
	pthread_once(&park_once, park_tune);
	return park_ns;
}
