/*
 * fuzz_ready.c - libFuzzer harness for an epoll set's entry table, ready
 * list and pokes (preload/epoll_ready.c, epoll_set.h): issue 16's queue.
 *
 * What the set queues comes from the kernel and from this process's own
 * threads, never from a peer (a peer reaches only its own socket), so the
 * danger here is not hostile bytes but a sequence of changes that breaks
 * the lists: an entry lost from the ready list (a member never looked at
 * again: a hang), one listed twice or freed while listed or poked (a crash
 * later). The input is such a sequence, over up to 64 fds and 6 sockets;
 * after every step the whole state is checked against what the operations
 * promise, and any difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "epoll_set.h"

/* epoll_ready.c draws park tokens from core's generator; none is needed
 * here beyond distinct values. */
static uint64_t next_token = 1;
uint64_t xio__wait_token(void)
{
	return next_token++;
}
uint64_t xio__wait_tokens(unsigned n)
{
	uint64_t t = next_token;
	next_token += n;
	return t;
}

#define NFD 64
#define NPS 6

static void check(struct pepoll *ep, struct psock *ps)
{
	unsigned n = 0;
	struct pentry *prev = NULL;
	for (struct pentry *e = ep->act_head; e; prev = e, e = e->anext) {
		if (!e->active || e->aprev != prev || set_find(ep, e->fd) != e || ++n > ep->nentries)
			abort();
	}
	if (prev != ep->act_tail || n != ep->nactive)
		abort();
	unsigned entries = 0, active = 0;
	for (int fd = 0; fd < ep->cap; fd++) {
		struct pentry *e = ep->by_fd[fd];
		if (!e)
			continue;
		entries++;
		active += e->active != 0;
		if (e->fd != fd || e->tagid == 0)
			abort();
		if (e->slot >= 0 && (e->ps->member_of[e->slot] != ep || e->ps->ent[e->slot] != e))
			abort();
	}
	if (entries != ep->nentries || active != ep->nactive)
		abort();
	for (unsigned i = 0; i < ep->npokes; i++) {
		struct pentry *e = ep->pokes[i];
		if (!e->poked || set_find(ep, e->fd) != e)
			abort();
		for (unsigned j = 0; j < i; j++)
			if (ep->pokes[j] == e)
				abort();
	}
	for (int k = 0; k < NPS; k++)
		for (int i = 0; i < PS_MAX_EPOLL; i++)
			if (ps[k].member_of[i] == ep &&
			    (!ps[k].ent[i] || ps[k].ent[i]->ps != &ps[k] || ps[k].ent[i]->slot != i))
				abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct psock ps[NPS];
	struct pepoll ep;
	memset(ps, 0, sizeof(ps));
	memset(&ep, 0, sizeof(ep));
	pthread_mutex_init(&ep.mu, NULL);
	pthread_mutex_init(&ep.poke_mu, NULL);
	for (size_t i = 0; i + 1 < size && i < 4096; i += 2) {
		int op = data[i] & 7, fd = data[i + 1] % NFD;
		struct pentry *e = set_find(&ep, fd);
		switch (op) {
		case 0: /* epoll_ctl ADD: a new entry, on the ready list */
			if (!e && (e = calloc(1, sizeof(*e)))) {
				e->fd = fd;
				e->ps = &ps[data[i + 1] % NPS];
				if (set_insert(&ep, e) < 0) {
					free(e);
					break;
				}
				set_bind_slot(&ep, e);
				act_add(&ep, e);
			}
			break;
		case 1: /* the entry goes (DEL, close) */
			if (e) {
				set_remove(&ep, e);
				if (set_find(&ep, fd) || e->active || e->poked || e->slot >= 0)
					abort();
				free(e);
			}
			break;
		case 2: /* reported by the kernel, changed by the program */
			if (e) {
				act_add(&ep, e);
				if (!e->active)
					abort();
			}
			break;
		case 3: /* parked */
			if (e) {
				act_remove(&ep, e);
				if (e->active)
					abort();
			}
			break;
		case 4: /* a wait filled its events up to e */
			if (e) {
				struct pentry *tail = ep.act_tail;
				act_rotate_after(&ep, e);
				if (e->active && tail && ep.act_tail != e)
					abort();
			}
			break;
		case 5: /* another thread took back the arm of a socket */
			xio__epoll_poke(&ps[data[i + 1] % NPS]);
			break;
		case 6: { /* a wait takes the pokes: each poked entry is listed */
			struct pentry *poked[NFD];
			unsigned np = ep.npokes;
			if (np)
				memcpy(poked, ep.pokes, np * sizeof(*poked));
			act_take_pokes(&ep);
			for (unsigned k = 0; k < np; k++)
				if (!poked[k]->active || poked[k]->poked)
					abort();
			if (ep.npokes)
				abort();
			break;
		}
		default: /* after fork: every member listed */
			act_all(&ep);
			if (ep.nactive != ep.nentries)
				abort();
			break;
		}
		check(&ep, ps);
	}
	for (int fd = 0; fd < ep.cap; fd++)
		if (ep.by_fd[fd]) {
			struct pentry *e = ep.by_fd[fd];
			set_remove(&ep, e);
			free(e);
		}
	free(ep.by_fd);
	free(ep.pokes);
	pthread_mutex_destroy(&ep.mu);
	pthread_mutex_destroy(&ep.poke_mu);
	return 0;
}
