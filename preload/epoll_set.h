/*
 * epoll_set.h - the shadow of an epoll set (epoll.c) and its ready list
 * (epoll_ready.c), shared by the two files.
 *
 * A wait must cost O(ready members), as the kernel's epoll does, not
 * O(members) (issue 16). So the members of a set are in one of two states:
 *
 *   active  on the set's ready list (act_head): looked at by every wait, in
 *           shared memory, without a system call. New and changed members,
 *           members the kernel reported, members another thread poked, and
 *           members that were ready within the last park interval.
 *   parked  (not on the list) quiet for longer than that: their waiting
 *           words are armed with a token of their own (never a sleep's
 *           shared token, which lets a peer ring once for several
 *           connections), so the first change the peer makes rings their
 *           doorbell, and the kernel's own epoll, where their socket is
 *           registered for EPOLLIN, puts them on its ready list. A wait
 *           looks at them only when the kernel reports them.
 *
 * A parked member's arm can be taken back by this process without the
 * kernel hearing of it (a blocking read on the socket, another set or a
 * poll arming it, a thread that read its doorbell): every such path tells
 * the shim (xio__shim_wake_others), which pokes the member back onto the
 * ready list of each set that follows it (xio__epoll_poke). docs/design.md,
 * "Waiting on many connections", has the whole argument.
 */
#ifndef XIO_PRELOAD_EPOLL_SET_H
#define XIO_PRELOAD_EPOLL_SET_H

#include <stdint.h>
#include <sys/epoll.h>

#include "shim.h"

struct pentry {
	int fd;
	struct psock *ps;
	uint32_t events; /* as the program asked */
	epoll_data_t data;
	int oneshot_off; /* EPOLLONESHOT fired; until EPOLL_CTL_MOD */
	int parked;      /* deleted by the program, still in the kernel set */
	int et_seen;     /* EPOLLET: reported since the last change */
	uint64_t et_sig; /* ... with this state */
	int left;        /* PS_CONN registered for a connection that left */
	int slot;        /* its index in ps->member_of/ps->ent, or -1 */
	uint16_t tagid;  /* in its kernel registration's data (epoll.c) */
	int active;      /* on the ready list */
	int poked;       /* on the poke list (under poke_mu) */
	int64_t last_ready; /* when a wait last found it ready (ns) */
	struct pentry *aprev, *anext; /* the ready list */
};

struct pepoll {
	pthread_mutex_t mu;
	int epfd;
	/* Every entry, by fd (an fd is in a set once): by_fd[fd], cap slots. */
	struct pentry **by_fd;
	int cap;
	unsigned nentries; /* sockets that are or may become accelerated, and
			    * nested sets: 0 for a set the kernel waits on alone */
	uint16_t next_tagid;
	/* The ready list (above), under mu. */
	struct pentry *act_head, *act_tail;
	unsigned nactive;
	/* Members poked by other threads (xio__epoll_poke), taken onto the
	 * ready list by the next wait; poke_all: the list could not grow, so
	 * every member goes back on the ready list. Under poke_mu, which is
	 * taken with nothing else held, or inside mu. */
	pthread_mutex_t poke_mu;
	struct pentry **pokes;
	unsigned npokes, pokes_cap;
	int poke_all;
	int left_due; /* a member left shared memory: settle_left */
	/* When the kernel part of the set was last looked at, and how many
	 * waits since have been answered from the channels alone. */
	_Atomic int64_t os_last_ns;
	_Atomic unsigned os_skipped;
	/* Threads in an epoll_wait on this set, from before they arm its
	 * members until their kernel wait returns; and the eventfd that makes
	 * one of them look again (xio__epoll_wake), registered in the kernel
	 * set under TAG_KICK the first time it is needed. */
	_Atomic int sleepers;
	_Atomic int kickfd;
};

/* epoll_ready.c: the entry table and the ready list. Caller holds ep->mu,
 * except for xio__epoll_poke (none). */
struct pentry *set_find(struct pepoll *ep, int fd);
int set_insert(struct pepoll *ep, struct pentry *e); /* 0 or -ENOMEM */
void set_remove(struct pepoll *ep, struct pentry *e);
/* e follows ps in ep: the slot pokes find it by (-1: all slots taken). */
void set_bind_slot(struct pepoll *ep, struct pentry *e);
void act_add(struct pepoll *ep, struct pentry *e);
void act_remove(struct pepoll *ep, struct pentry *e);
/* Move the entries from the head up to and including e to the tail: the
 * next wait starts after the last member this one reported. */
void act_rotate_after(struct pepoll *ep, struct pentry *e);
/* Take the poked members onto the ready list. */
void act_take_pokes(struct pepoll *ep);
/* Every entry back on the ready list (after fork, or a poke that could
 * not be recorded). */
void act_all(struct pepoll *ep);

#endif
